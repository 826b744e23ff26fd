/* SPDX-License-Identifier: GPL-2.0 */
/*
 * itm_core.h - itm_mod's internal state, shared by its files.
 *
 * A network namespace is a structure: each one where itm_mod is active
 * has, per family and hook, a run list of the applications that may want
 * its packets, already split by transport protocol.  A netfilter hook is
 * registered for a (namespace, family, hook) only while its run list is
 * not empty.
 */
#ifndef _ITM_CORE_H
#define _ITM_CORE_H

#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include <linux/siphash.h>
#include <linux/u64_stats_sync.h>
#include "itm.h"

#define ITM_NUM_VERDICTS (ITM_QUEUE + 1)

/* families: run lists and hooks per family */
enum itm_pf {
	ITM_PF_IPV4,
	ITM_PF_IPV6,
	ITM_NUM_PF,
};

/*
 * The run list of a hook is split by transport protocol: a TCP packet
 * walks only the applications that want TCP or any protocol.
 */
enum itm_run_class {
	ITM_RUN_TCP,
	ITM_RUN_UDP,
	ITM_RUN_OTHER,
	ITM_NUM_RUN_CLASSES,
};

/* one packet in this many is timed (a power of two) */
#define ITM_TIME_SAMPLE 64

/**
 * struct itm_app_stats - per-CPU counters of one application
 * @syncp: makes the 64-bit counters whole for readers on 32-bit CPUs
 * @missed: packets that reached it while it was enabled (their family
 *	and protocol class let them) but did not match its interest; the
 *	packets it saw are @missed plus the matched ones
 * @classified: packets whose class was not 0
 * @verdict: process_func verdicts, indexed by enum itm_verdict; every
 *	matched packet gets exactly one, so their sum is the matched count
 * @bytes: bytes of matched packets
 * @time_ns: nanoseconds spent in the callbacks, estimated: one matched
 *	packet in %ITM_TIME_SAMPLE is timed and counts that many times
 * @tick: matched packets on this CPU, to pick the timed ones
 *
 * Written only by this CPU, with bottom halves off (itm_nf_hook()).
 */
struct itm_app_stats {
	struct u64_stats_sync syncp;
	u64_stats_t missed;
	u64_stats_t classified;
	u64_stats_t verdict[ITM_NUM_VERDICTS];
	u64_stats_t bytes;
	u64_stats_t time_ns;
	u32 tick;
};

/**
 * struct itm_app_totals - an application's counters summed over the CPUs
 * @seen: packets that reached it while it was enabled
 * @matched: packets that matched its interest
 * @classified: see &struct itm_app_stats
 * @verdict: see &struct itm_app_stats
 * @bytes: see &struct itm_app_stats
 * @time_ns: see &struct itm_app_stats
 */
struct itm_app_totals {
	u64 seen;
	u64 matched;
	u64 classified;
	u64 verdict[ITM_NUM_VERDICTS];
	u64 bytes;
	u64 time_ns;
};

/**
 * struct itm_app - itm_mod's state of one registered application
 * @class_func: the application's callbacks, copied at registration
 * @log_func: see &struct itm_info
 * @process_func: see &struct itm_info
 * @update_func: see &struct itm_info
 * @control_func: see &struct itm_info
 * @stats: per-CPU counters
 * @info: the application's registration, never written by itm_mod
 * @netns: the only namespace it sees, or NULL for every active one
 * @interest: the interest with the addresses already masked
 * @priority: run order at the hook (lower first); itm_mod's own copy,
 *	changed through netlink
 * @order: registration sequence number (ties in priority run FIFO)
 * @hook: the hook point
 * @queue_num: nfqueue number for %ITM_QUEUE
 * @queue_count: queues from @queue_num on that flows are spread over (>= 1)
 * @enabled: whether the application runs (read locklessly)
 * @match_addrs: the interest restricts addresses
 * @match_ports: the interest restricts ports
 * @rewrites_headers: parse the packet again after this application
 * @node: entry in itm_apps under itm_lock; on the removal list after
 */
struct itm_app {
	itm_class_func_t class_func;
	itm_note_func_t log_func;
	itm_process_func_t process_func;
	itm_note_func_t update_func;
	itm_note_func_t control_func;
	struct itm_app_stats __percpu *stats;
	struct itm_info *info;
	/* what every packet reads shares the callbacks' cache line */
	u16 queue_num;
	u16 queue_count;
	bool enabled;
	bool match_addrs;
	bool match_ports;
	bool rewrites_headers;
	struct net *netns;
	struct itm_interest interest;
	s32 priority;
	u32 order;
	enum itm_hook hook;
	struct list_head node;
};

/**
 * struct itm_run - the run list of one (namespace, family, hook)
 * @gc_next: next list waiting for the grace period (itm_gc)
 * @rcu: for freeing it without waiting
 * @n: number of applications of each protocol class
 * @list: the applications of each class in run order (into @slots)
 * @slots: storage of the lists
 *
 * Published with RCU; never changed once published, except that a removed
 * application's entries may be replaced by itm_app_gone when no memory
 * was left for a new list.
 */
struct itm_run {
	struct itm_run *gc_next;
	struct rcu_head rcu;
	unsigned int n[ITM_NUM_RUN_CLASSES];
	struct itm_app **list[ITM_NUM_RUN_CLASSES];
	struct itm_app *slots[];
};

struct itm_net;

/**
 * struct itm_hookpoint - one (namespace, family, hook) of itm_mod
 * @run: the run list, NULL when empty
 * @in: the namespace's state
 * @where: the hook point
 * @registered: @ops is registered with netfilter (under itm_lock)
 * @ops: the netfilter hook, its priv pointing here
 */
struct itm_hookpoint {
	struct itm_run __rcu *run;
	struct itm_net *in;
	enum itm_hook where;
	bool registered;
	struct nf_hook_ops ops;
};

/**
 * struct itm_net - itm_mod's state in one network namespace
 * @net: the namespace
 * @node: entry in itm_nets while active (under itm_lock)
 * @active: whether itm_mod runs applications here (under itm_lock)
 * @key: secret of the re-entry cookies and of the flow hash that spreads
 *	packets over an application's queues in this namespace
 * @hp: the hook points, per family and hook
 */
struct itm_net {
	struct net *net;
	struct list_head node;
	bool active;
	hsiphash_key_t key;
	struct itm_hookpoint hp[ITM_NUM_PF][ITM_NUM_HOOKS];
};

/**
 * struct itm_gc - what waits for the next RCU grace period
 * @runs: run lists replaced
 * @apps: applications removed
 *
 * Many changes (a namespace's hooks, several applications) share one
 * grace period: itm_gc_finish() waits once and frees everything.
 */
struct itm_gc {
	struct itm_run *runs;
	struct list_head apps;
};

extern struct mutex itm_lock;
extern struct list_head itm_apps;
extern struct list_head itm_nets;
extern struct kmem_cache *itm_app_cache;
extern struct itm_app itm_app_gone;

/* apps.c */
struct itm_app *itm_find_app(const struct net *net, const char *label);
void itm_app_stats_sum(const struct itm_app *app, struct itm_app_totals *sum);
int itm_app_set_priority(struct itm_app *app, s32 priority);
void itm_gc_init(struct itm_gc *gc);
void itm_gc_finish(struct itm_gc *gc);

/* runlist.c */
int itm_publish(struct itm_net *in, enum itm_hook where, struct itm_gc *gc);
void itm_publish_removal(struct itm_net *in, enum itm_hook where,
			 struct itm_gc *gc);
bool itm_app_targets(const struct itm_app *app, const struct itm_net *in);
struct itm_net *itm_net(const struct net *net);
bool itm_netns_active(struct net *net);
u32 itm_netns_hooks(struct net *net);
int itm_netns_set(struct net *net, bool active);
int itm_runlist_init(int nf_priority);
void itm_runlist_exit(void);

/* hooks.c */
bool itm_interest_valid(const struct itm_interest *in);
unsigned int itm_nf_hook(void *priv, struct sk_buff *skb,
			 const struct nf_hook_state *state);

/* netlink.c */
int itm_genl_init(void);
void itm_genl_exit(void);

#endif /* _ITM_CORE_H */
