/* SPDX-License-Identifier: GPL-2.0 */
/*
 * itm_core.h - itm_mod's internal state, shared by its files.
 */
#ifndef _ITM_CORE_H
#define _ITM_CORE_H

#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include "itm.h"

#define ITM_NUM_VERDICTS (ITM_QUEUE + 1)

/**
 * struct itm_app_stats - per-CPU counters of one application
 * @seen: packets that reached the application while it was enabled
 * @matched: packets that matched its interest
 * @classified: packets whose class was not 0
 * @verdict: process_func verdicts, indexed by enum itm_verdict
 * @bytes: bytes of matched packets
 * @time_ns: nanoseconds spent in the callbacks
 */
struct itm_app_stats {
	u64 seen;
	u64 matched;
	u64 classified;
	u64 verdict[ITM_NUM_VERDICTS];
	u64 bytes;
	u64 time_ns;
};

/**
 * struct itm_app - itm_mod's state of one registered application
 * @info: the application's registration
 * @node: entry in itm_apps, under itm_lock
 * @interest: the interest with the addresses already masked
 * @order: registration sequence number (ties in priority run FIFO)
 * @enabled: whether the application runs (read locklessly)
 * @stats: per-CPU counters
 */
struct itm_app {
	struct itm_info *info;
	struct list_head node;
	struct itm_interest interest;
	u32 order;
	bool enabled;
	struct itm_app_stats __percpu *stats;
};

/**
 * struct itm_hook_apps - the run list of one hook, rebuilt on every change
 * @n: number of applications
 * @apps: the applications in run order
 */
struct itm_hook_apps {
	unsigned int n;
	struct itm_app *apps[];
};

extern struct mutex itm_lock;
extern struct list_head itm_apps;
extern struct kmem_cache *itm_app_cache;
extern struct itm_hook_apps __rcu *itm_hook_apps[ITM_NUM_HOOKS];

/* apps.c */
int itm_rebuild_hook(enum itm_hook where, gfp_t gfp);
struct itm_app *itm_find_app(const struct net *net, const char *label);
void itm_app_stats_sum(const struct itm_app *app, struct itm_app_stats *sum);

/* hooks.c */
int itm_hooks_init(int nf_priority);
void itm_hooks_exit(void);
bool itm_interest_valid(const struct itm_interest *in);
bool itm_netns_active(struct net *net);
int itm_netns_set(struct net *net, bool active);

/* netlink.c */
int itm_genl_init(void);
void itm_genl_exit(void);

#endif /* _ITM_CORE_H */
