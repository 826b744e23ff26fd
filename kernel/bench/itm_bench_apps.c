// SPDX-License-Identifier: GPL-2.0
/*
 * itm_bench_apps - n no-op itm applications at IP_FORWARD for the dispatch
 * benchmark: with callbacks=1 every callback is present and does nothing
 * (class 1, accept); with callbacks=0 they are all NULL (interest only).
 * With tcp_apps=N the last N applications want TCP only: the benchmark's
 * UDP packet does not interest them.
 */
#include <linux/module.h>
#include <linux/in.h>
#include <linux/slab.h>
#include "itm.h"

static unsigned int n_apps = 1;
module_param(n_apps, uint, 0444);
MODULE_PARM_DESC(n_apps, "how many no-op applications to register (1..64)");

static bool callbacks = true;
module_param(callbacks, bool, 0444);
MODULE_PARM_DESC(callbacks, "give the applications their five (empty) callbacks");

static unsigned int tcp_apps;
module_param(tcp_apps, uint, 0444);
MODULE_PARM_DESC(tcp_apps, "how many of them (the last ones) want TCP only");

static struct itm_info *bench_apps;
static struct itm_info **bench_infos;
static unsigned int bench_registered;

static int bench_class(enum itm_hook where, struct sk_buff *skb,
		       const struct itm_ctx *ctx)
{
	return 1;
}

static void bench_nop(enum itm_hook where, int class, struct sk_buff *skb,
		      const struct itm_ctx *ctx)
{
}

static unsigned int bench_process(enum itm_hook where, int class,
				  struct sk_buff *skb, const struct itm_ctx *ctx)
{
	return ITM_ACCEPT;
}

/* all at once: one RCU grace period for all of them */
static void bench_unregister(void)
{
	itm_unregister_hooks(bench_infos, bench_registered);
	bench_registered = 0;
}

static int __init bench_apps_init(void)
{
	unsigned int i;
	int err;

	if (!n_apps || n_apps > 64 || tcp_apps > n_apps)
		return -EINVAL;
	bench_apps = kcalloc(n_apps, sizeof(*bench_apps), GFP_KERNEL);
	bench_infos = kcalloc(n_apps, sizeof(*bench_infos), GFP_KERNEL);
	if (!bench_apps || !bench_infos) {
		kfree(bench_apps);
		kfree(bench_infos);
		return -ENOMEM;
	}
	for (i = 0; i < n_apps; i++) {
		struct itm_info *info = &bench_apps[i];

		snprintf(info->label, sizeof(info->label), "bench-%u", i);
		info->type = ITM_TYPE_KERNEL;
		info->owner = THIS_MODULE;
		if (i >= n_apps - tcp_apps)
			info->interest.protocol = IPPROTO_TCP;
		if (callbacks) {
			info->class_func = bench_class;
			info->log_func = bench_nop;
			info->process_func = bench_process;
			info->update_func = bench_nop;
			info->control_func = bench_nop;
		}
		err = itm_register_hook(ITM_IP_FORWARD, info);
		if (err) {
			bench_unregister();
			kfree(bench_infos);
			kfree(bench_apps);
			return err;
		}
		bench_infos[bench_registered++] = info;
	}
	return 0;
}

static void __exit bench_apps_exit(void)
{
	bench_unregister();
	kfree(bench_infos);
	kfree(bench_apps);
}

module_init(bench_apps_init);
module_exit(bench_apps_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("benchmark: no-op itm applications");
