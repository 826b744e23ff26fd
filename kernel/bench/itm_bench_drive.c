// SPDX-License-Identifier: GPL-2.0
/*
 * itm_bench_drive - push one UDP packet through the IPv4 forward hooks of
 * the initial namespace in a loop and time it.
 *
 *   echo 1000000 > /sys/kernel/debug/itm_bench/run
 *   cat /sys/kernel/debug/itm_bench/run     -> "<iterations> <nanoseconds>"
 *
 * Whatever is hooked at forward (nothing, a bare netfilter hook, itm_mod with
 * its applications) runs once per iteration, with bottom halves disabled as
 * on the real forward path.
 */
#include <linux/debugfs.h>
#include <linux/ip.h>
#include <linux/module.h>
#include <linux/netfilter.h>
#include <linux/sched.h>
#include <linux/skbuff.h>
#include <linux/udp.h>
#include <linux/uaccess.h>
#include <net/net_namespace.h>

#define BENCH_CHUNK 1000

static struct dentry *bench_dir;
static DEFINE_MUTEX(bench_lock);	/* one run at a time; guards the result */
static u64 bench_iters, bench_ns;

static int bench_okfn(struct net *net, struct sock *sk, struct sk_buff *skb)
{
	return 0;
}

static struct sk_buff *bench_packet(void)
{
	struct sk_buff *skb = alloc_skb(LL_MAX_HEADER + 64, GFP_KERNEL);
	struct udphdr *uh;
	struct iphdr *iph;

	if (!skb)
		return NULL;
	skb_reserve(skb, LL_MAX_HEADER);
	skb_reset_network_header(skb);
	iph = skb_put_zero(skb, sizeof(*iph));
	iph->version = 4;
	iph->ihl = 5;
	iph->ttl = 64;
	iph->protocol = IPPROTO_UDP;
	iph->saddr = htonl(0x0a4d0102);
	iph->daddr = htonl(0x0a4d0202);
	iph->tot_len = htons(sizeof(*iph) + sizeof(*uh) + 18);
	skb_set_transport_header(skb, sizeof(*iph));
	uh = skb_put_zero(skb, sizeof(*uh) + 18);
	uh->source = htons(4000);
	uh->dest = htons(5000);
	uh->len = htons(sizeof(*uh) + 18);
	skb->protocol = htons(ETH_P_IP);
	skb->dev = init_net.loopback_dev;
	return skb;
}

static int bench_run(u64 iters)
{
	struct net_device *dev = init_net.loopback_dev;
	struct sk_buff *skb = bench_packet();
	u64 done = 0, start;
	int ret = 0;

	if (!skb)
		return -ENOMEM;
	start = ktime_get_ns();
	while (done < iters) {
		u64 chunk = min_t(u64, iters - done, BENCH_CHUNK);
		u64 i;

		local_bh_disable();
		rcu_read_lock();
		for (i = 0; i < chunk; i++) {
			ret = nf_hook(NFPROTO_IPV4, NF_INET_FORWARD, &init_net, NULL,
				      skb, dev, dev, bench_okfn);
			if (ret != 1)
				break;
		}
		rcu_read_unlock();
		local_bh_enable();
		if (ret != 1) {
			/* a hook took or dropped the packet: it is gone */
			return -EBADMSG;
		}
		done += chunk;
		cond_resched();
	}
	bench_ns = ktime_get_ns() - start;
	bench_iters = iters;
	kfree_skb(skb);
	return 0;
}

static ssize_t bench_write(struct file *file, const char __user *buf,
			   size_t len, loff_t *ppos)
{
	u64 iters;
	int err;

	err = kstrtou64_from_user(buf, len, 10, &iters);
	if (err)
		return err;
	if (!iters || iters > 100000000ULL)
		return -EINVAL;
	mutex_lock(&bench_lock);
	err = bench_run(iters);
	mutex_unlock(&bench_lock);
	return err ?: len;
}

static ssize_t bench_read(struct file *file, char __user *buf, size_t len,
			  loff_t *ppos)
{
	char text[48];
	int n;

	mutex_lock(&bench_lock);
	n = scnprintf(text, sizeof(text), "%llu %llu\n", bench_iters, bench_ns);
	mutex_unlock(&bench_lock);
	return simple_read_from_buffer(buf, len, ppos, text, n);
}

static const struct file_operations bench_fops = {
	.owner = THIS_MODULE,
	.read = bench_read,
	.write = bench_write,
};

static int __init bench_drive_init(void)
{
	bench_dir = debugfs_create_dir("itm_bench", NULL);
	debugfs_create_file("run", 0600, bench_dir, NULL, &bench_fops);
	return 0;
}

static void __exit bench_drive_exit(void)
{
	debugfs_remove(bench_dir);
}

module_init(bench_drive_init);
module_exit(bench_drive_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("benchmark driver: time the IPv4 forward hooks");
