// SPDX-License-Identifier: GPL-2.0
/*
 * apps.c - registration of applications.
 *
 * Every change (register, unregister, priority) rebuilds the run lists of
 * the hook concerned in the namespaces concerned (runlist.c) and publishes
 * them with RCU: the packet path reads arrays and takes no lock.  Only
 * removals wait for a grace period, one for a whole batch.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <net/net_namespace.h>
#include "itm_core.h"

/* serialises registration, the run lists and namespace activation */
DEFINE_MUTEX(itm_lock);
LIST_HEAD(itm_apps);
struct kmem_cache *itm_app_cache;
static u32 itm_seq;

/*
 * What a removed application's entries become when no memory is left for
 * new run lists: disabled, so the packet path passes over it.
 */
struct itm_app itm_app_gone = {
	.priority = S32_MIN,
};

/**
 * itm_gc_init() - start collecting what waits for a grace period
 * @gc: the collection
 */
void itm_gc_init(struct itm_gc *gc)
{
	gc->runs = NULL;
	INIT_LIST_HEAD(&gc->apps);
}

static void itm_run_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct itm_run, rcu));
}

static void itm_app_free(struct itm_app *app)
{
	free_percpu(app->stats);
	kmem_cache_free(itm_app_cache, app);
}

/**
 * itm_gc_finish() - free what was collected, after readers are done
 * @gc: the collection
 *
 * With applications removed, waits for one RCU grace period (so that no
 * callback of theirs runs when this returns) and frees everything.  With
 * only run lists replaced, it does not wait: they go with call_rcu().
 *
 * Context: process context, itm_lock not needed; may sleep.
 */
void itm_gc_finish(struct itm_gc *gc)
{
	struct itm_app *app, *tmp;
	struct itm_run *run;

	if (list_empty(&gc->apps)) {
		while ((run = gc->runs)) {
			gc->runs = run->gc_next;
			call_rcu(&run->rcu, itm_run_free_rcu);
		}
		return;
	}
	synchronize_rcu();
	while ((run = gc->runs)) {
		gc->runs = run->gc_next;
		kfree(run);
	}
	list_for_each_entry_safe(app, tmp, &gc->apps, node) {
		list_del(&app->node);
		itm_app_free(app);
	}
}

/* Publish one hook of every namespace the application's packets come from. */
static int itm_publish_app(const struct itm_app *app, struct itm_gc *gc)
{
	struct itm_net *in;
	int err;

	list_for_each_entry(in, &itm_nets, node) {
		if (!itm_app_targets(app, in))
			continue;
		err = itm_publish(in, app->hook, gc);
		if (err)
			return err;
	}
	return 0;
}

/**
 * itm_app_set_priority() - change an application's place in its run lists
 * @app: the application
 * @priority: the new priority
 *
 * Context: process context, itm_lock held.
 * Return: 0 or -ENOMEM (the old priority then stays).
 */
int itm_app_set_priority(struct itm_app *app, s32 priority)
{
	s32 old = app->priority;
	struct itm_gc gc;
	int err;

	lockdep_assert_held(&itm_lock);
	if (priority == old)
		return 0;
	itm_gc_init(&gc);
	WRITE_ONCE(app->priority, priority);
	err = itm_publish_app(app, &gc);
	if (err) {
		WRITE_ONCE(app->priority, old);
		/* lists already reordered go back; each is an order only */
		itm_publish_app(app, &gc);
	}
	itm_gc_finish(&gc);
	return err;
}

/**
 * itm_find_app() - look an application up by label, as a namespace sees it
 * @net: the namespace of the caller
 * @label: the label
 *
 * Labels are per network namespace: an application of @net has the
 * label first, then an application of every namespace (netns NULL).
 *
 * Context: itm_lock held.
 * Return: the application or NULL.
 */
struct itm_app *itm_find_app(const struct net *net, const char *label)
{
	struct itm_app *app, *global = NULL;

	lockdep_assert_held(&itm_lock);
	list_for_each_entry(app, &itm_apps, node) {
		if (strcmp(app->info->label, label))
			continue;
		if (app->netns == net)
			return app;
		if (!app->netns)
			global = app;
	}
	return global;
}

/*
 * Whether @label is taken for an application of @net (NULL: of every
 * namespace).  An application of every namespace and one of the initial
 * namespace share labels (the initial namespace's tools show both as
 * one list); other namespaces have labels of their own, so that nothing
 * registered in a container can take a label from the host.
 */
static bool itm_label_taken(const struct net *net, const char *label)
{
	const struct net *init = &init_net;
	struct itm_app *app;

	lockdep_assert_held(&itm_lock);
	list_for_each_entry(app, &itm_apps, node) {
		const struct net *other = app->netns;

		if (strcmp(app->info->label, label))
			continue;
		if (other == net || (!other && net == init) ||
		    (!net && other == init))
			return true;
	}
	return false;
}

/**
 * itm_app_stats_sum() - add up an application's per-CPU counters
 * @app: the application
 * @sum: where to write the totals
 */
void itm_app_stats_sum(const struct itm_app *app, struct itm_app_totals *sum)
{
	int cpu, v;

	memset(sum, 0, sizeof(*sum));
	for_each_possible_cpu(cpu) {
		const struct itm_app_stats *s = per_cpu_ptr(app->stats, cpu);
		struct itm_app_totals c;
		unsigned int seq;

		do {
			seq = u64_stats_fetch_begin(&s->syncp);
			c.seen = u64_stats_read(&s->missed);
			c.classified = u64_stats_read(&s->classified);
			for (v = 0; v < ITM_NUM_VERDICTS; v++)
				c.verdict[v] = u64_stats_read(&s->verdict[v]);
			c.bytes = u64_stats_read(&s->bytes);
			c.time_ns = u64_stats_read(&s->time_ns);
		} while (u64_stats_fetch_retry(&s->syncp, seq));
		sum->seen += c.seen;
		sum->classified += c.classified;
		for (v = 0; v < ITM_NUM_VERDICTS; v++)
			sum->verdict[v] += c.verdict[v];
		sum->bytes += c.bytes;
		sum->time_ns += c.time_ns;
	}
	/* every matched packet gets exactly one verdict */
	for (v = 0; v < ITM_NUM_VERDICTS; v++)
		sum->matched += sum->verdict[v];
	sum->seen += sum->matched;
}

static void itm_mask_addr(struct in6_addr *addr, const struct in6_addr *mask)
{
	int i;

	for (i = 0; i < 4; i++)
		addr->s6_addr32[i] &= mask->s6_addr32[i];
}

static bool itm_addr_any(const struct in6_addr *mask)
{
	return !(mask->s6_addr32[0] | mask->s6_addr32[1] | mask->s6_addr32[2] |
		 mask->s6_addr32[3]);
}

/* Context: itm_lock held. */
static struct itm_app *itm_app_of(const struct itm_info *info)
{
	struct itm_app *app;

	list_for_each_entry(app, &itm_apps, node)
		if (app->info == info)
			return app;
	return NULL;
}

static struct itm_app *itm_app_new(enum itm_hook where, struct itm_info *info)
{
	struct itm_app *app;
	int cpu;

	app = kmem_cache_zalloc(itm_app_cache, GFP_KERNEL);
	if (!app)
		return NULL;
	app->stats = alloc_percpu(struct itm_app_stats);
	if (!app->stats) {
		kmem_cache_free(itm_app_cache, app);
		return NULL;
	}
	for_each_possible_cpu(cpu)
		u64_stats_init(&per_cpu_ptr(app->stats, cpu)->syncp);
	app->class_func = info->class_func;
	app->log_func = info->log_func;
	app->process_func = info->process_func;
	app->update_func = info->update_func;
	app->control_func = info->control_func;
	app->info = info;
	app->netns = info->netns;
	app->interest = info->interest;
	itm_mask_addr(&app->interest.saddr, &app->interest.smask);
	itm_mask_addr(&app->interest.daddr, &app->interest.dmask);
	app->match_addrs = !itm_addr_any(&app->interest.smask) ||
			   !itm_addr_any(&app->interest.dmask);
	app->match_ports = app->interest.sport_max || app->interest.dport_max;
	app->priority = info->priority;
	app->hook = where;
	app->queue_num = info->queue_num;
	app->queue_count = info->queue_count ?: 1;
	app->rewrites_headers = info->rewrites_headers;
	app->enabled = true;
	return app;
}

/**
 * itm_register_hook() - register an application at a hook point
 * @where: the hook point (enum itm_hook)
 * @info: the application; @info->label must be unique in @info->netns
 *	(the initial namespace when NULL) and not empty, @info->interest
 *	valid; @info->priority orders the applications at @where (lower
 *	first, ties in registration order)
 *
 * The application starts enabled.  itm_mod copies what it needs of @info
 * and never writes it; @info must stay valid until itm_unregister_hook()
 * has returned (callbacks get it as ctx->info).  The netfilter hooks of
 * @where are registered in each active namespace the application's
 * packets come from, if they were not already.  Does not wait for an RCU
 * grace period.
 *
 * Context: process context; may sleep.
 * Return: 0; -EINVAL for a bad hook, label or interest; -EEXIST when the
 * label is taken in the application's namespace; -EBUSY when @info is
 * already registered; -ENOMEM, or netfilter's error.
 */
int itm_register_hook(enum itm_hook where, struct itm_info *info)
{
	struct itm_app *app;
	struct itm_gc gc;
	int err;

	if (!info || (unsigned int)where >= ITM_NUM_HOOKS)
		return -EINVAL;
	if (!info->label[0] || strnlen(info->label, ITM_LABEL_MAX) == ITM_LABEL_MAX)
		return -EINVAL;
	if (info->type != ITM_TYPE_KERNEL && info->type != ITM_TYPE_USER)
		return -EINVAL;
	if (!itm_interest_valid(&info->interest))
		return -EINVAL;
	if (info->queue_count > 1 &&
	    info->queue_num + info->queue_count - 1 > U16_MAX)
		return -EINVAL;

	app = itm_app_new(where, info);
	if (!app)
		return -ENOMEM;

	itm_gc_init(&gc);
	mutex_lock(&itm_lock);
	if (itm_app_of(info)) {
		err = -EBUSY;
		goto err_unlock;
	}
	if (itm_label_taken(info->netns, info->label)) {
		err = -EEXIST;
		goto err_unlock;
	}
	app->order = ++itm_seq;
	list_add_tail(&app->node, &itm_apps);
	err = itm_publish_app(app, &gc);
	if (err) {
		struct itm_net *in;

		/* the namespaces published already lose it again */
		list_move(&app->node, &gc.apps);
		list_for_each_entry(in, &itm_nets, node)
			if (itm_app_targets(app, in))
				itm_publish_removal(in, where, &gc);
		mutex_unlock(&itm_lock);
		itm_gc_finish(&gc);	/* frees app */
		return err;
	}
	mutex_unlock(&itm_lock);
	itm_gc_finish(&gc);
	pr_debug("registered %s at hook %d, priority %d\n",
		 info->label, where, app->priority);
	return 0;

err_unlock:
	mutex_unlock(&itm_lock);
	itm_app_free(app);
	return err;
}
EXPORT_SYMBOL_GPL(itm_register_hook);

/**
 * itm_unregister_hooks() - remove several applications at once
 * @infos: applications registered with itm_register_hook(); entries that
 *	are not registered (or NULL) are passed over
 * @n: how many
 *
 * When this returns, none of their callbacks is running or will run
 * again, so the caller may free what they use.  All of them wait for the
 * same single RCU grace period.  Cannot fail and allocates nothing it
 * cannot do without.  A hook point whose run list becomes empty loses its
 * netfilter hook.
 *
 * Context: process context; sleeps (waits for an RCU grace period).
 */
void itm_unregister_hooks(struct itm_info * const *infos, unsigned int n)
{
	unsigned long hooks = 0;
	struct itm_app *app;
	struct itm_net *in;
	struct itm_gc gc;
	unsigned int i;
	int h;

	itm_gc_init(&gc);
	mutex_lock(&itm_lock);
	for (i = 0; i < n; i++) {
		app = infos[i] ? itm_app_of(infos[i]) : NULL;
		if (!app)
			continue;
		list_move(&app->node, &gc.apps);
		hooks |= BIT(app->hook);
	}
	list_for_each_entry(in, &itm_nets, node) {
		bool targets = false;

		list_for_each_entry(app, &gc.apps, node)
			targets |= itm_app_targets(app, in);
		if (!targets)
			continue;
		for_each_set_bit(h, &hooks, ITM_NUM_HOOKS)
			itm_publish_removal(in, h, &gc);
	}
	mutex_unlock(&itm_lock);
	list_for_each_entry(app, &gc.apps, node)
		pr_debug("unregistered %s\n", app->info->label);
	itm_gc_finish(&gc);
}
EXPORT_SYMBOL_GPL(itm_unregister_hooks);

/**
 * itm_unregister_hook() - remove an application
 * @info: an application registered with itm_register_hook()
 *
 * When this returns, none of @info's callbacks is running or will run
 * again, so the caller may free what they use.  Unregistering an
 * application that is not registered does nothing.  To remove several,
 * itm_unregister_hooks() waits once for all of them.
 *
 * Context: process context; sleeps (waits for an RCU grace period).
 */
void itm_unregister_hook(struct itm_info *info)
{
	itm_unregister_hooks(&info, 1);
}
EXPORT_SYMBOL_GPL(itm_unregister_hook);
