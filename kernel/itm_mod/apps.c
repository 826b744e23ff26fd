// SPDX-License-Identifier: GPL-2.0
/*
 * apps.c - registration of applications and their run lists.
 *
 * Every change (register, unregister, priority) rebuilds the run list of
 * the hook concerned and publishes it with RCU: the packet path reads one
 * array and takes no lock.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <net/net_namespace.h>
#include "itm_core.h"

/* serialises registration, the run lists and namespace attachment */
DEFINE_MUTEX(itm_lock);
LIST_HEAD(itm_apps);
struct itm_hook_apps __rcu *itm_hook_apps[ITM_NUM_HOOKS];
struct kmem_cache *itm_app_cache;
static u32 itm_seq;

static int itm_app_cmp(const void *a, const void *b)
{
	const struct itm_app *x = *(struct itm_app * const *)a;
	const struct itm_app *y = *(struct itm_app * const *)b;

	if (x->info->priority != y->info->priority)
		return x->info->priority < y->info->priority ? -1 : 1;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return 0;
}

/**
 * itm_rebuild_hook() - publish a new run list for one hook
 * @where: the hook
 * @gfp: allocation flags for the new list
 *
 * The old list is freed after an RCU grace period, waited for here: when
 * this returns, no packet sees the old list any more.  (Not kfree_rcu():
 * kmem_cache_destroy() waits for every pending kfree_rcu() batch, which
 * made each unload of itm_mod wait seconds.)
 *
 * Context: process context, itm_lock held; sleeps.
 * Return: 0, or -ENOMEM (the old list then stays in place).
 */
int itm_rebuild_hook(enum itm_hook where, gfp_t gfp)
{
	struct itm_hook_apps *new = NULL, *old;
	struct itm_app *app;
	unsigned int n = 0;

	lockdep_assert_held(&itm_lock);
	list_for_each_entry(app, &itm_apps, node)
		if (app->info->hook == where)
			n++;
	if (n) {
		new = kzalloc(struct_size(new, apps, n), gfp);
		if (!new)
			return -ENOMEM;
		list_for_each_entry(app, &itm_apps, node)
			if (app->info->hook == where)
				new->apps[new->n++] = app;
		sort(new->apps, n, sizeof(new->apps[0]), itm_app_cmp, NULL);
	}
	old = rcu_replace_pointer(itm_hook_apps[where], new,
				  lockdep_is_held(&itm_lock));
	synchronize_rcu();
	kfree(old);
	return 0;
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
		if (app->info->netns == net)
			return app;
		if (!app->info->netns)
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
		const struct net *other = app->info->netns;

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
void itm_app_stats_sum(const struct itm_app *app, struct itm_app_stats *sum)
{
	int cpu, v;

	memset(sum, 0, sizeof(*sum));
	for_each_possible_cpu(cpu) {
		const struct itm_app_stats *s = per_cpu_ptr(app->stats, cpu);

		sum->seen += READ_ONCE(s->seen);
		sum->matched += READ_ONCE(s->matched);
		sum->classified += READ_ONCE(s->classified);
		for (v = 0; v < ITM_NUM_VERDICTS; v++)
			sum->verdict[v] += READ_ONCE(s->verdict[v]);
		sum->bytes += READ_ONCE(s->bytes);
		sum->time_ns += READ_ONCE(s->time_ns);
	}
}

static void itm_mask_addr(struct in6_addr *addr, const struct in6_addr *mask)
{
	int i;

	for (i = 0; i < 4; i++)
		addr->s6_addr32[i] &= mask->s6_addr32[i];
}

/**
 * itm_register_hook() - register an application at a hook point
 * @where: the hook point (enum itm_hook)
 * @info: the application; @info->label must be unique in @info->netns
 *	(the initial namespace when NULL) and not empty, @info->interest
 *	valid; @info->priority orders the applications at @where (lower
 *	first, ties in registration order)
 *
 * The application starts enabled.  @info must stay valid until
 * itm_unregister_hook() has returned.
 *
 * Context: process context; may sleep.
 * Return: 0; -EINVAL for a bad hook, label or interest; -EEXIST when the
 * label is taken in the application's namespace; -EBUSY when @info is
 * already registered; -ENOMEM.
 */
int itm_register_hook(enum itm_hook where, struct itm_info *info)
{
	struct itm_app *app;
	int err;

	if (!info || (unsigned int)where >= ITM_NUM_HOOKS)
		return -EINVAL;
	if (!info->label[0] || strnlen(info->label, ITM_LABEL_MAX) == ITM_LABEL_MAX)
		return -EINVAL;
	if (info->type != ITM_TYPE_KERNEL && info->type != ITM_TYPE_USER)
		return -EINVAL;
	if (!itm_interest_valid(&info->interest))
		return -EINVAL;
	if (info->app)
		return -EBUSY;

	app = kmem_cache_zalloc(itm_app_cache, GFP_KERNEL);
	if (!app)
		return -ENOMEM;
	app->stats = alloc_percpu(struct itm_app_stats);
	if (!app->stats) {
		kmem_cache_free(itm_app_cache, app);
		return -ENOMEM;
	}
	app->info = info;
	app->interest = info->interest;
	itm_mask_addr(&app->interest.saddr, &app->interest.smask);
	itm_mask_addr(&app->interest.daddr, &app->interest.dmask);
	app->enabled = true;

	mutex_lock(&itm_lock);
	if (itm_label_taken(info->netns, info->label)) {
		err = -EEXIST;
		goto err_unlock;
	}
	info->hook = where;
	app->order = ++itm_seq;
	info->app = app;
	list_add_tail(&app->node, &itm_apps);
	err = itm_rebuild_hook(where, GFP_KERNEL);
	if (err) {
		list_del(&app->node);
		info->app = NULL;
		goto err_unlock;
	}
	mutex_unlock(&itm_lock);
	pr_debug("registered %s at hook %d, priority %d\n",
		 info->label, where, info->priority);
	return 0;

err_unlock:
	mutex_unlock(&itm_lock);
	free_percpu(app->stats);
	kmem_cache_free(itm_app_cache, app);
	return err;
}
EXPORT_SYMBOL_GPL(itm_register_hook);

/**
 * itm_unregister_hook() - remove an application
 * @info: an application registered with itm_register_hook()
 *
 * When this returns, none of @info's callbacks is running or will run
 * again, so the caller may free what they use.  Unregistering an
 * application that is not registered does nothing.
 *
 * Context: process context; sleeps (waits for an RCU grace period).
 */
void itm_unregister_hook(struct itm_info *info)
{
	struct itm_app *app;

	mutex_lock(&itm_lock);
	app = info->app;
	if (!app) {
		mutex_unlock(&itm_lock);
		return;
	}
	list_del(&app->node);
	/*
	 * The application must be gone when we return: this cannot fail, and
	 * it waits for every hook (they run under rcu_read_lock()) that may
	 * still see the application to finish.
	 */
	itm_rebuild_hook(info->hook, GFP_KERNEL | __GFP_NOFAIL);
	mutex_unlock(&itm_lock);
	info->app = NULL;
	free_percpu(app->stats);
	kmem_cache_free(itm_app_cache, app);
	pr_debug("unregistered %s\n", info->label);
}
EXPORT_SYMBOL_GPL(itm_unregister_hook);
