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
 *
 * The second file pushes TCP segments of a number of flows through the three
 * hooks a forwarded packet meets (pre-routing, forward, post-routing), so
 * that connection tracking and marking rule sets see a stream of packets of
 * established flows, as they would on a router:
 *
 *   echo "1000000 1000 10000" > /sys/kernel/debug/itm_bench/forward_tcp
 *   cat /sys/kernel/debug/itm_bench/forward_tcp -> "<iterations> <nanoseconds>"
 *
 * Iteration i sends a segment of flow i % flows: its source port is the third
 * number (default 10000) plus that, so a run can start with flows nobody has
 * seen yet;
 * the TOS byte is reset to 0 and the packet's conntrack reference dropped
 * before each pass, as for a packet that just arrived.
 */
#include <linux/debugfs.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/module.h>
#include <linux/netfilter.h>
#include <linux/sched.h>
#include <linux/skbuff.h>
#include <linux/udp.h>
#include <linux/uaccess.h>
#include <net/ip.h>
#include <net/net_namespace.h>

#define BENCH_CHUNK 1000

#define BENCH_TCP_PAYLOAD 64
#define BENCH_SPORT_BASE 10000
#define BENCH_MAX_FLOWS 60000

static struct dentry *bench_dir;
static DEFINE_MUTEX(bench_lock);	/* one run at a time; guards the results */

/* the last run of one file: how many packets, how long */
struct bench_result {
	u64 iters;
	u64 ns;
};

static struct bench_result udp_result, tcp_result;

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
	udp_result.ns = ktime_get_ns() - start;
	udp_result.iters = iters;
	kfree_skb(skb);
	return 0;
}

static struct sk_buff *bench_tcp_packet(void)
{
	unsigned int len = sizeof(struct iphdr) + sizeof(struct tcphdr) +
			   BENCH_TCP_PAYLOAD;
	struct sk_buff *skb = alloc_skb(LL_MAX_HEADER + len, GFP_KERNEL);
	struct tcphdr *th;
	struct iphdr *iph;

	if (!skb)
		return NULL;
	skb_reserve(skb, LL_MAX_HEADER);
	skb_reset_network_header(skb);
	iph = skb_put_zero(skb, sizeof(*iph));
	iph->version = 4;
	iph->ihl = 5;
	iph->ttl = 64;
	iph->protocol = IPPROTO_TCP;
	iph->saddr = htonl(0x0a4d0102);
	iph->daddr = htonl(0x0a4d0202);
	iph->tot_len = htons(len);
	skb_set_transport_header(skb, sizeof(*iph));
	th = skb_put_zero(skb, sizeof(*th) + BENCH_TCP_PAYLOAD);
	th->dest = htons(5001);
	th->seq = htonl(1);
	th->ack_seq = htonl(1);
	th->doff = sizeof(*th) / 4;
	th->ack = 1;
	th->psh = 1;
	th->window = htons(65535);
	skb->protocol = htons(ETH_P_IP);
	skb->dev = init_net.loopback_dev;
	/* as if the NIC had verified it: conntrack does not recompute it */
	skb->ip_summed = CHECKSUM_UNNECESSARY;
	return skb;
}

/* one forwarded packet: the three hooks in order, 1 if all accepted it */
static int bench_forward_once(struct sk_buff *skb, struct net_device *dev)
{
	int ret;

	ret = nf_hook(NFPROTO_IPV4, NF_INET_PRE_ROUTING, &init_net, NULL, skb,
		      dev, NULL, bench_okfn);
	if (ret == 1)
		ret = nf_hook(NFPROTO_IPV4, NF_INET_FORWARD, &init_net, NULL,
			      skb, dev, dev, bench_okfn);
	if (ret == 1)
		ret = nf_hook(NFPROTO_IPV4, NF_INET_POST_ROUTING, &init_net,
			      NULL, skb, NULL, dev, bench_okfn);
	return ret;
}

static int bench_run_tcp(u64 iters, u32 flows, u32 base)
{
	struct net_device *dev = init_net.loopback_dev;
	struct sk_buff *skb = bench_tcp_packet();
	u64 done = 0, start;
	int ret = 1;

	if (!skb)
		return -ENOMEM;
	start = ktime_get_ns();
	while (done < iters) {
		u64 chunk = min_t(u64, iters - done, BENCH_CHUNK);
		u64 i;

		local_bh_disable();
		rcu_read_lock();
		for (i = 0; i < chunk; i++) {
			struct iphdr *iph = ip_hdr(skb);

			tcp_hdr(skb)->source =
				htons(base + (done + i) % flows);
			iph->tos = 0;
			ip_send_check(iph);
			nf_reset_ct(skb);
			ret = bench_forward_once(skb, dev);
			if (ret != 1)
				break;
		}
		rcu_read_unlock();
		local_bh_enable();
		if (ret != 1)
			return -EBADMSG;	/* a hook took or dropped it */
		done += chunk;
		cond_resched();
	}
	tcp_result.ns = ktime_get_ns() - start;
	tcp_result.iters = iters;
	nf_reset_ct(skb);
	kfree_skb(skb);
	return 0;
}

static ssize_t tcp_write(struct file *file, const char __user *buf,
			 size_t len, loff_t *ppos)
{
	char text[48];
	u32 flows, base = BENCH_SPORT_BASE;
	u64 iters;
	int err;

	if (len >= sizeof(text))
		return -EINVAL;
	if (copy_from_user(text, buf, len))
		return -EFAULT;
	text[len] = 0;
	if (sscanf(text, "%llu %u %u", &iters, &flows, &base) < 2)
		return -EINVAL;
	if (!iters || iters > 100000000ULL || !flows || flows > BENCH_MAX_FLOWS ||
	    base < 1024 || base + flows > 65536)
		return -EINVAL;
	mutex_lock(&bench_lock);
	err = bench_run_tcp(iters, flows, base);
	mutex_unlock(&bench_lock);
	return err ?: len;
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

/* both files read back "<iterations> <nanoseconds>" of their last run */
static ssize_t bench_read(struct file *file, char __user *buf, size_t len,
			  loff_t *ppos)
{
	const struct bench_result *r = file->private_data;
	char text[48];
	int n;

	mutex_lock(&bench_lock);
	n = scnprintf(text, sizeof(text), "%llu %llu\n", r->iters, r->ns);
	mutex_unlock(&bench_lock);
	return simple_read_from_buffer(buf, len, ppos, text, n);
}

static const struct file_operations bench_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = bench_read,
	.write = bench_write,
};

static const struct file_operations tcp_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = bench_read,
	.write = tcp_write,
};

static int __init bench_drive_init(void)
{
	bench_dir = debugfs_create_dir("itm_bench", NULL);
	debugfs_create_file("run", 0600, bench_dir, &udp_result, &bench_fops);
	debugfs_create_file("forward_tcp", 0600, bench_dir, &tcp_result,
			    &tcp_fops);
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
