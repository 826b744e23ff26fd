// SPDX-License-Identifier: GPL-2.0
/*
 * itm_mod - the Internet Traffic Manager core.
 *
 * It alone touches netfilter: it hooks the five points of a network
 * namespace where, and while, applications want them, and runs the
 * registered applications there in priority order.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/slab.h>
#include <linux/netfilter_ipv4.h>
#include <net/genetlink.h>
#include "itm_core.h"

static int nf_priority = NF_IP_PRI_MANGLE + 10;
module_param(nf_priority, int, 0444);
MODULE_PARM_DESC(nf_priority,
		 "netfilter priority of the ITM hooks (default: after mangle, before NAT and filter)");

static int __init itm_init(void)
{
	int err;

	/* its own cache: a leaked application shows when the cache goes */
	itm_app_cache = KMEM_CACHE(itm_app, 0);
	if (!itm_app_cache)
		return -ENOMEM;
	err = itm_runlist_init(nf_priority);
	if (err)
		goto err_cache;
	err = itm_genl_init();
	if (err)
		goto err_hooks;
	pr_info("ready (netfilter priority %d)\n", nf_priority);
	return 0;

err_hooks:
	itm_runlist_exit();
err_cache:
	kmem_cache_destroy(itm_app_cache);
	return err;
}

static void __exit itm_exit(void)
{
	itm_genl_exit();
	itm_runlist_exit();
	WARN_ON(!list_empty(&itm_apps));
	rcu_barrier();	/* run lists freed with call_rcu() */
	kmem_cache_destroy(itm_app_cache);
}

module_init(itm_init);
module_exit(itm_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("itmBench developers");
MODULE_DESCRIPTION("Internet Traffic Manager core: applications at five netfilter hooks");
MODULE_ALIAS_GENL_FAMILY(ITM_FAMILY_NAME);
