// SPDX-License-Identifier: GPL-2.0
/*
 * paper_qos - the 2004 paper's qos_mod in the shape of its Figures 8-11.
 *
 * A test module: it is what a reader who knows only the paper writes, with
 * no more change than today's kernel asks for (docs/kernel-api.md, "Porting
 * a 2004 itmBench module"): the figures' names (IP_POST_ROUTE, NF_ACCEPT,
 * class_func/log_func/process_func with `where` first), the figures'
 * counting and nothing the paper does not have (IPv4 only, one table for
 * every namespace, no expiry).  The VM tier checks its marks on the wire
 * against the figures' rule: a new connection's entry starts at pkt_cnt 0
 * and is counted after classification, so with THRESHOLD 20 packets
 * 2..22 of each direction and every FIN are SHORT, packet 1 goes as sent.
 * The real application is qos_mod (docs/qos_mod.md).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ip.h>
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/tcp.h>
#include <net/dsfield.h>
#include <net/ip.h>
#include "itm.h"

#define THRESHOLD 20
#define SHORT 1
#define LONG 2
#define MAX_CONNS 1024

static unsigned int threshold = THRESHOLD;
module_param(threshold, uint, 0444);
MODULE_PARM_DESC(threshold,
		 "the figures' THRESHOLD: SHORT while pkt_cnt <= threshold, i.e. packets 2..threshold+2 (default 20)");

/* one direction of a TCP connection and its packet count */
struct conn {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	u32 pkt_cnt;
};

static struct conn conns[MAX_CONNS];
static unsigned int nconns;
static DEFINE_SPINLOCK(conns_lock);

static const struct tcphdr *tcp_of(struct sk_buff *skb, struct tcphdr *buf)
{
	return skb_header_pointer(skb, ip_hdrlen(skb), sizeof(*buf), buf);
}

/* Context: conns_lock held. */
static struct conn *lookup(const struct iphdr *iph, const struct tcphdr *th)
{
	unsigned int i;

	for (i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];

		if (c->saddr == iph->saddr && c->daddr == iph->daddr &&
		    c->sport == th->source && c->dport == th->dest)
			return c;
	}
	return NULL;
}

/* Figure 9: the class of a packet from its connection's count */
static int qos_class(enum itm_hook where, struct sk_buff *skb,
		     const struct itm_ctx *ctx)
{
	const struct tcphdr *th;
	struct tcphdr buf;
	struct conn *entry;
	int class;

	th = tcp_of(skb, &buf);
	if (!th)
		return 0;
	spin_lock_bh(&conns_lock);
	entry = lookup(ip_hdr(skb), th);
	if (!entry)
		class = 0;			/* not classified */
	else if (entry->pkt_cnt <= threshold || th->fin)
		class = SHORT;
	else
		class = LONG;
	spin_unlock_bh(&conns_lock);
	return class;
}

/* Figure 10: a new connection gets an entry, a known one is counted */
static void qos_log(enum itm_hook where, int class, struct sk_buff *skb,
		    const struct itm_ctx *ctx)
{
	const struct iphdr *iph = ip_hdr(skb);
	const struct tcphdr *th;
	struct tcphdr buf;
	struct conn *entry;

	th = tcp_of(skb, &buf);
	if (!th)
		return;
	spin_lock_bh(&conns_lock);
	entry = lookup(iph, th);
	if (class == 0 && !entry && nconns < MAX_CONNS)
		conns[nconns++] = (struct conn){
			.saddr = iph->saddr, .daddr = iph->daddr,
			.sport = th->source, .dport = th->dest, .pkt_cnt = 0,
		};
	else if (entry)
		entry->pkt_cnt++;
	spin_unlock_bh(&conns_lock);
}

/* Figure 11: set or clear Minimize-Delay, fix the checksum, accept */
static unsigned int qos_process(enum itm_hook where, int class,
				struct sk_buff *skb, const struct itm_ctx *ctx)
{
	if (skb_ensure_writable(skb, sizeof(struct iphdr)))
		return NF_ACCEPT;
	ipv4_change_dsfield(ip_hdr(skb), (u8)~IPTOS_LOWDELAY,
			    class == SHORT ? IPTOS_LOWDELAY : 0);
	return NF_ACCEPT;
}

static struct itm_info data;

/* Figure 8: fill in the registration, register at post-routing */
static int __init qos_init(void)
{
	strscpy(data.label, "paper_qos", sizeof(data.label));	/* data.label = "paper_qos"; */
	data.type = ITM_TYPE_KERNEL;
	data.interest.family = AF_INET;
	data.interest.protocol = IPPROTO_TCP;
	data.owner = THIS_MODULE;
	data.class_func = qos_class;
	data.log_func = qos_log;
	data.process_func = qos_process;
	return itm_register_hook(IP_POST_ROUTE, &data);
}

static void __exit qos_exit(void)
{
	itm_unregister_hook(&data);
}

module_init(qos_init);
module_exit(qos_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("The paper's qos_mod in the shape of its Figures 8-11 (a test module)");
