// SPDX-License-Identifier: GPL-2.0
/*
 * runlist.c - the run lists of every namespace, and the netfilter hooks
 * that exist only while a run list is not empty.
 *
 * In a namespace where itm_mod is active, each (family, hook) has a run
 * list: the applications registered there (for that namespace or for
 * every one) whose interest admits the family, in priority order, split
 * by transport protocol.  Every change builds new lists and publishes
 * them with RCU; a list that becomes empty takes its netfilter hook with
 * it, and one that stops being empty registers it first.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include "itm_core.h"

static bool init_netns = true;
module_param(init_netns, bool, 0444);
MODULE_PARM_DESC(init_netns, "run applications in the initial network namespace from load on");

static bool all_netns;
module_param(all_netns, bool, 0444);
MODULE_PARM_DESC(all_netns, "run applications in every network namespace when it is created");

/* active namespaces, under itm_lock */
LIST_HEAD(itm_nets);

static unsigned int itm_net_id __read_mostly;
static int itm_nf_priority;

static const unsigned int itm_nf_hooknum[ITM_NUM_HOOKS] = {
	[ITM_PRE_ROUTING] = NF_INET_PRE_ROUTING,
	[ITM_IP_IN] = NF_INET_LOCAL_IN,
	[ITM_IP_FORWARD] = NF_INET_FORWARD,
	[ITM_IP_OUT] = NF_INET_LOCAL_OUT,
	[ITM_POST_ROUTING] = NF_INET_POST_ROUTING,
};

static const u8 itm_nfproto[ITM_NUM_PF] = {
	[ITM_PF_IPV4] = NFPROTO_IPV4,
	[ITM_PF_IPV6] = NFPROTO_IPV6,
};

/**
 * itm_net() - itm_mod's state of a namespace
 * @net: the namespace
 *
 * Return: the state (it lives as long as the namespace).
 */
struct itm_net *itm_net(const struct net *net)
{
	return net_generic(net, itm_net_id);
}

/**
 * itm_app_targets() - do an application's packets come from a namespace?
 * @app: the application
 * @in: an active namespace
 *
 * Return: true when @app is registered for every namespace or for @in's.
 */
bool itm_app_targets(const struct itm_app *app, const struct itm_net *in)
{
	return !app->netns || net_eq(app->netns, in->net);
}

static bool itm_app_wants(const struct itm_app *app, const struct itm_net *in,
			  enum itm_hook where, int pf)
{
	u8 family = app->interest.family;

	if (app->hook != where || !itm_app_targets(app, in))
		return false;
	if (family == AF_INET6 && pf == ITM_PF_IPV4)
		return false;
	if (family == AF_INET && pf == ITM_PF_IPV6)
		return false;
	return true;
}

static bool itm_class_wants(u8 protocol, int class)
{
	if (!protocol)
		return true;
	switch (class) {
	case ITM_RUN_TCP:
		return protocol == IPPROTO_TCP;
	case ITM_RUN_UDP:
		return protocol == IPPROTO_UDP;
	}
	return protocol != IPPROTO_TCP && protocol != IPPROTO_UDP;
}

static int itm_app_cmp(const void *a, const void *b)
{
	const struct itm_app *x = *(struct itm_app * const *)a;
	const struct itm_app *y = *(struct itm_app * const *)b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return 0;
}

/*
 * The run list of one hook point, or NULL when no application wants it
 * (then nothing is allocated and nothing can fail).
 */
static struct itm_run *itm_run_build(const struct itm_net *in,
				     enum itm_hook where, int pf, int *err)
{
	struct itm_app **sorted, **slot;
	struct itm_run *run;
	struct itm_app *app;
	unsigned int n = 0, i;
	int c;

	*err = 0;
	if (!in->active)
		return NULL;
	list_for_each_entry(app, &itm_apps, node)
		if (itm_app_wants(app, in, where, pf))
			n++;
	if (!n)
		return NULL;
	/* the classes' lists, then the sorted candidates */
	run = kzalloc(struct_size(run, slots, (ITM_NUM_RUN_CLASSES + 1) * n),
		      GFP_KERNEL);
	if (!run) {
		*err = -ENOMEM;
		return NULL;
	}
	sorted = &run->slots[ITM_NUM_RUN_CLASSES * n];
	i = 0;
	list_for_each_entry(app, &itm_apps, node)
		if (itm_app_wants(app, in, where, pf))
			sorted[i++] = app;
	sort(sorted, n, sizeof(sorted[0]), itm_app_cmp, NULL);
	slot = run->slots;
	for (c = 0; c < ITM_NUM_RUN_CLASSES; c++) {
		run->list[c] = slot;
		for (i = 0; i < n; i++)
			if (itm_class_wants(sorted[i]->interest.protocol, c))
				run->list[c][run->n[c]++] = sorted[i];
		slot += run->n[c];
	}
	return run;
}

static void itm_gc_add_run(struct itm_gc *gc, struct itm_run *run)
{
	if (run) {
		run->gc_next = gc->runs;
		gc->runs = run;
	}
}

/**
 * itm_publish() - publish new run lists for one hook of a namespace
 * @in: the namespace
 * @where: the hook
 * @gc: collects the replaced lists
 *
 * Registers the netfilter hook of a family whose list stops being empty
 * (before the list appears) and unregisters it when the list becomes
 * empty.  Publishing empty lists allocates nothing and cannot fail.
 *
 * Context: process context, itm_lock held.
 * Return: 0, -ENOMEM or netfilter's error; nothing changed on error.
 */
int itm_publish(struct itm_net *in, enum itm_hook where, struct itm_gc *gc)
{
	struct itm_run *new[ITM_NUM_PF];
	unsigned int added = 0;
	int pf, err = 0;

	lockdep_assert_held(&itm_lock);
	for (pf = 0; pf < ITM_NUM_PF; pf++) {
		new[pf] = itm_run_build(in, where, pf, &err);
		if (err)
			goto free;
	}
	/* a hook registered before its list appears accepts meanwhile */
	for (pf = 0; pf < ITM_NUM_PF; pf++) {
		struct itm_hookpoint *hp = &in->hp[pf][where];

		if (!new[pf] || hp->registered)
			continue;
		err = nf_register_net_hook(in->net, &hp->ops);
		if (err)
			goto unhook;
		hp->registered = true;
		added |= BIT(pf);
	}
	for (pf = 0; pf < ITM_NUM_PF; pf++) {
		struct itm_hookpoint *hp = &in->hp[pf][where];

		itm_gc_add_run(gc, rcu_replace_pointer(hp->run, new[pf],
						       lockdep_is_held(&itm_lock)));
		if (!new[pf] && hp->registered) {
			/* netfilter frees its entries after a grace period */
			nf_unregister_net_hook(in->net, &hp->ops);
			hp->registered = false;
		}
	}
	return 0;

unhook:
	for (pf = 0; pf < ITM_NUM_PF; pf++) {
		if (added & BIT(pf)) {
			nf_unregister_net_hook(in->net, &in->hp[pf][where].ops);
			in->hp[pf][where].registered = false;
		}
	}
	pf = ITM_NUM_PF;
free:
	while (pf--)
		kfree(new[pf]);
	return err;
}

/**
 * itm_publish_removal() - publish a hook's lists after applications left
 * @in: the namespace
 * @where: the hook
 * @gc: collects the replaced lists; its apps are the applications gone
 *
 * Cannot fail: without memory for new lists, the entries of the removed
 * applications in the published lists become itm_app_gone (disabled), so
 * that no packet reaches them after the grace period.
 *
 * Context: process context, itm_lock held.
 */
void itm_publish_removal(struct itm_net *in, enum itm_hook where,
			 struct itm_gc *gc)
{
	int pf, c;

	if (!itm_publish(in, where, gc))
		return;
	for (pf = 0; pf < ITM_NUM_PF; pf++) {
		struct itm_run *run;

		run = rcu_dereference_protected(in->hp[pf][where].run,
						lockdep_is_held(&itm_lock));
		if (!run)
			continue;
		for (c = 0; c < ITM_NUM_RUN_CLASSES; c++) {
			unsigned int i;

			for (i = 0; i < run->n[c]; i++) {
				struct itm_app *app = run->list[c][i], *gone;

				list_for_each_entry(gone, &gc->apps, node)
					if (app == gone)
						WRITE_ONCE(run->list[c][i], &itm_app_gone);
			}
		}
	}
}

/**
 * itm_netns_active() - does itm_mod run applications in a namespace?
 * @net: the namespace
 *
 * Context: itm_lock held.
 * Return: true when active.
 */
bool itm_netns_active(struct net *net)
{
	lockdep_assert_held(&itm_lock);
	return itm_net(net)->active;
}

/**
 * itm_netns_hooks() - the netfilter hooks itm_mod has registered in a namespace
 * @net: the namespace
 *
 * Context: itm_lock held.
 * Return: bit (family * %ITM_NUM_HOOKS + hook) set for each registered hook
 * point (family %ITM_PF_IPV4 or %ITM_PF_IPV6, hook an enum itm_hook).
 */
u32 itm_netns_hooks(struct net *net)
{
	struct itm_net *in = itm_net(net);
	u32 mask = 0;
	int pf, h;

	lockdep_assert_held(&itm_lock);
	BUILD_BUG_ON(ITM_NUM_PF * ITM_NUM_HOOKS > 32);
	for (pf = 0; pf < ITM_NUM_PF; pf++)
		for (h = 0; h < ITM_NUM_HOOKS; h++)
			if (in->hp[pf][h].registered)
				mask |= BIT(pf * ITM_NUM_HOOKS + h);
	return mask;
}

/* Empty every list of an active namespace; cannot fail.  itm_lock held. */
static void itm_netns_clear(struct itm_net *in, struct itm_gc *gc)
{
	int h;

	in->active = false;
	list_del_init(&in->node);
	for (h = 0; h < ITM_NUM_HOOKS; h++)
		WARN_ON(itm_publish(in, h, gc));
}

/**
 * itm_netns_set() - make itm_mod run applications in a namespace, or stop
 * @net: the namespace
 * @active: run (true) or stop (false)
 *
 * The netfilter hooks follow the run lists: activating a namespace where
 * no application is registered registers no hook.
 *
 * Context: process context, itm_lock held; sleeps.
 * Return: 0, -ENOMEM or netfilter's error (the namespace stays inactive).
 */
int itm_netns_set(struct net *net, bool active)
{
	struct itm_net *in = itm_net(net);
	struct itm_gc gc;
	int h, err = 0;

	lockdep_assert_held(&itm_lock);
	if (in->active == active)
		return 0;
	itm_gc_init(&gc);
	if (active) {
		in->active = true;
		list_add_tail(&in->node, &itm_nets);
		for (h = 0; h < ITM_NUM_HOOKS && !err; h++)
			err = itm_publish(in, h, &gc);
		if (err)
			itm_netns_clear(in, &gc);
	} else {
		itm_netns_clear(in, &gc);
	}
	itm_gc_finish(&gc);
	return err;
}

static int __net_init itm_net_init(struct net *net)
{
	struct itm_net *in = itm_net(net);
	int pf, h, err = 0;

	in->net = net;
	INIT_LIST_HEAD(&in->node);
	get_random_bytes(&in->key, sizeof(in->key));
	for (pf = 0; pf < ITM_NUM_PF; pf++) {
		for (h = 0; h < ITM_NUM_HOOKS; h++) {
			struct itm_hookpoint *hp = &in->hp[pf][h];

			hp->in = in;
			hp->where = h;
			hp->ops.hook = itm_nf_hook;
			hp->ops.pf = itm_nfproto[pf];
			hp->ops.hooknum = itm_nf_hooknum[h];
			hp->ops.priority = itm_nf_priority;
			hp->ops.priv = hp;
		}
	}
	if (all_netns || (init_netns && net_eq(net, &init_net))) {
		mutex_lock(&itm_lock);
		err = itm_netns_set(net, true);
		mutex_unlock(&itm_lock);
	}
	return err;
}

/* Namespaces that go together (and module unload) wait for one grace period. */
static void __net_exit itm_net_exit_batch(struct list_head *net_exit_list)
{
	struct itm_gc gc;
	struct net *net;

	itm_gc_init(&gc);
	mutex_lock(&itm_lock);
	list_for_each_entry(net, net_exit_list, exit_list) {
		struct itm_net *in = itm_net(net);

		if (in->active)
			itm_netns_clear(in, &gc);
	}
	mutex_unlock(&itm_lock);
	itm_gc_finish(&gc);
}

static struct pernet_operations itm_net_ops = {
	.init = itm_net_init,
	.exit_batch = itm_net_exit_batch,
	.id = &itm_net_id,
	.size = sizeof(struct itm_net),
};

/**
 * itm_runlist_init() - set up the per-namespace state
 * @nf_priority: netfilter priority of every hook
 *
 * Return: 0 or an error from register_pernet_subsys().
 */
int itm_runlist_init(int nf_priority)
{
	itm_nf_priority = nf_priority;
	return register_pernet_subsys(&itm_net_ops);
}

/**
 * itm_runlist_exit() - remove every hook and list of every namespace
 */
void itm_runlist_exit(void)
{
	unregister_pernet_subsys(&itm_net_ops);
}
