// SPDX-License-Identifier: GPL-2.0
/*
 * itm_bench_nf - the anchor of the dispatch benchmark: a bare netfilter
 * hook at IPv4 forward in the initial namespace that accepts everything.
 */
#include <linux/module.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <net/net_namespace.h>

static unsigned int bench_nf_hook(void *priv, struct sk_buff *skb,
				  const struct nf_hook_state *state)
{
	return NF_ACCEPT;
}

static const struct nf_hook_ops bench_nf_ops = {
	.hook = bench_nf_hook,
	.pf = NFPROTO_IPV4,
	.hooknum = NF_INET_FORWARD,
	.priority = NF_IP_PRI_MANGLE + 10,
};

static int __init bench_nf_init(void)
{
	return nf_register_net_hook(&init_net, &bench_nf_ops);
}

static void __exit bench_nf_exit(void)
{
	nf_unregister_net_hook(&init_net, &bench_nf_ops);
}

module_init(bench_nf_init);
module_exit(bench_nf_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("benchmark anchor: a bare netfilter hook that accepts");
