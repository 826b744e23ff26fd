// SPDX-License-Identifier: GPL-2.0
/*
 * itm_bench_qosnf - the anchor of the qos_cost benchmark: qos_mod's exact
 * marking (its flow table and its mark, the same source files) in a bare
 * netfilter hook at IPv4 post-routing, without itm_mod.  The hook parses
 * the IPv4 and TCP headers by hand and calls qos_mod's classify, log and
 * mark in the order itm_mod would.
 *
 *   cat /sys/module/itm_bench_qosnf/parameters/marked -> "<short> <long>"
 */
#include <linux/ip.h>
#include <linux/module.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/tcp.h>
#include <net/ip.h>
#include <net/net_namespace.h>
#include <net/tcp.h>
#include "../qos_mod/qos.h"

/* qos_mod's parameters at their defaults, fixed */
unsigned int qos_threshold = 20;
unsigned int qos_max_flows = 65536;
unsigned int qos_idle_timeout = 30;
unsigned int qos_short_dscp = 18;
unsigned int qos_long_dscp = 10;
bool qos_mark_first = true;
bool qos_figures;
enum qos_mode qos_mode = QOS_MODE_TOS;
struct qos_stats __percpu *qos_stats;

module_param_named(threshold, qos_threshold, uint, 0444);
MODULE_PARM_DESC(threshold, "qos_mod's threshold (default 20)");

static int qosnf_get_marked(char *buf, const struct kernel_param *kp)
{
	u64 s = 0, l = 0;
	int cpu;

	for_each_possible_cpu(cpu) {
		s += per_cpu_ptr(qos_stats, cpu)->short_pkts;
		l += per_cpu_ptr(qos_stats, cpu)->long_pkts;
	}
	return sysfs_emit(buf, "%llu %llu\n", s, l);
}

static const struct kernel_param_ops qosnf_marked_ops = {
	.get = qosnf_get_marked,
};

module_param_cb(marked, &qosnf_marked_ops, NULL, 0444);
MODULE_PARM_DESC(marked, "wire packets marked short and long");

static unsigned int qosnf_hook(void *priv, struct sk_buff *skb,
			       const struct nf_hook_state *state)
{
	struct itm_ctx ctx = { .state = state };
	struct itm_pkt *pkt = &ctx.pkt;
	const struct tcphdr *th;
	const struct iphdr *iph;
	struct qos_lookup l;
	struct qos_pkt p;
	struct tcphdr _th;
	int class;

	/* the IP header is in the linear part at post-routing */
	iph = ip_hdr(skb);
	if (iph->protocol != IPPROTO_TCP || (iph->frag_off & htons(IP_OFFSET)))
		return NF_ACCEPT;
	th = skb_header_pointer(skb, skb_network_offset(skb) + iph->ihl * 4,
				sizeof(_th), &_th);
	if (!th)
		return NF_ACCEPT;
	pkt->family = AF_INET;
	pkt->proto = IPPROTO_TCP;
	pkt->saddr.s6_addr32[0] = iph->saddr;
	pkt->daddr.s6_addr32[0] = iph->daddr;
	pkt->sport = ntohs(th->source);
	pkt->dport = ntohs(th->dest);
	pkt->tcp_flags = tcp_flag_byte(th);
	pkt->has_ports = true;
	pkt->segs = skb_is_gso(skb) ? max_t(u32, skb_shinfo(skb)->gso_segs, 1) : 1;
	if (!qos_parse(&ctx, &p))
		return NF_ACCEPT;
	class = qos_flows_classify(&p, &l);
	qos_flows_log(&p, &l);
	if (class) {
		qos_mark(skb, NFPROTO_IPV4, class);
		if (class == QOS_SHORT)
			this_cpu_add(qos_stats->short_pkts, p.segs);
		else
			this_cpu_add(qos_stats->long_pkts, p.segs);
	}
	return NF_ACCEPT;
}

static const struct nf_hook_ops qosnf_ops = {
	.hook = qosnf_hook,
	.pf = NFPROTO_IPV4,
	.hooknum = NF_INET_POST_ROUTING,
	.priority = NF_IP_PRI_MANGLE + 10,
};

static int __init qosnf_init(void)
{
	int err = qos_flows_init();

	if (err)
		return err;
	err = nf_register_net_hook(&init_net, &qosnf_ops);
	if (err)
		qos_flows_exit();
	return err;
}

static void __exit qosnf_exit(void)
{
	nf_unregister_net_hook(&init_net, &qosnf_ops);
	synchronize_net();
	qos_flows_exit();
}

module_init(qosnf_init);
module_exit(qosnf_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("benchmark anchor: qos_mod's marking in a bare netfilter hook");
