// SPDX-License-Identifier: GPL-2.0
/*
 * itm_route - itmRoute's kernel data path: configuration per network
 * namespace, its owner, and the module.
 *
 * The configuration of a namespace belongs to the netlink socket that set
 * it (the itmRoute daemon's).  When that socket goes - the daemon exits or
 * is killed - the configuration, the routes and the itm_mod applications
 * go with it, and packets go direct again (fail-open).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/netlink.h>
#include <linux/notifier.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include <net/ipv6.h>
#include <net/netns/generic.h>
#include "itm_route.h"

static unsigned int itmr_net_id __read_mostly;

/**
 * itmr_net() - itm_route's state in a namespace
 * @net: the namespace
 *
 * Return: the state (allocated with the namespace).
 */
struct itmr_net *itmr_net(struct net *net)
{
	return net_generic(net, itmr_net_id);
}

static bool itmr_owned_by_other(struct itmr_net *rn, u32 portid,
				struct netlink_ext_ack *extack)
{
	if (!rcu_access_pointer(rn->conf) || rn->owner == portid)
		return false;
	/* the owner's pid is in the dump (NL_SET_ERR_MSG_FMT is 6.2+) */
	NL_SET_ERR_MSG(extack,
		       "another socket owns this namespace's itmRoute data path (see its pid in the dump)");
	return true;
}

/* A configuration holds the overlay key: its memory is zeroed when freed. */
static void itmr_conf_free(struct rcu_head *head)
{
	kfree_sensitive(container_of(head, struct itmr_conf, rcu));
}

/* Drop the configuration and every route; rn->lock held. */
static void itmr_clear(struct itmr_net *rn)
{
	struct itm_info *infos[] = { &rn->apps[0], &rn->apps[1], &rn->apps[2] };
	struct itmr_route *r;
	struct itmr_conf *conf;
	unsigned int i;

	if (rn->registered) {
		/* waits until no packet runs the applications' callbacks */
		itm_unregister_hooks(infos, ARRAY_SIZE(infos));
		rn->registered = false;
	}
	for (i = 0; i < rn->nroutes; i++) {
		r = rcu_replace_pointer(rn->routes[i], NULL,
					lockdep_is_held(&rn->lock));
		if (!r)
			continue;
		kfree_rcu(rcu_dereference_protected(r->path, true), rcu);
		kfree_rcu(r, rcu);
	}
	rn->nroutes = 0;
	conf = rcu_replace_pointer(rn->conf, NULL, lockdep_is_held(&rn->lock));
	if (conf)
		call_rcu(&conf->rcu, itmr_conf_free);
	rn->owner = 0;
	rn->owner_pid = 0;
	spin_lock_bh(&rn->win_lock);
	memset(rn->windows, 0, sizeof(rn->windows));
	spin_unlock_bh(&rn->win_lock);
}

/**
 * itmr_configure() - set a namespace's configuration
 * @net: the namespace
 * @portid: the calling socket, which owns the data path from now on
 * @conf: the configuration (copied)
 * @extack: for the reason of a refusal
 *
 * The first call registers itm_route's itm_mod applications in @net;
 * later calls from the owner replace the configuration and keep the routes.
 *
 * Return: 0, -EBUSY when another socket owns the namespace's data path,
 * -ENOMEM, or itm_register_hook()'s error.
 */
int itmr_configure(struct net *net, u32 portid, const struct itmr_conf *conf,
		   struct netlink_ext_ack *extack)
{
	struct itmr_net *rn = itmr_net(net);
	struct itmr_conf *new, *old;
	unsigned int i;
	int err = 0;

	new = kmemdup(conf, sizeof(*conf), GFP_KERNEL);
	if (!new)
		return -ENOMEM;
	mutex_lock(&rn->lock);
	if (itmr_owned_by_other(rn, portid, extack)) {
		err = -EBUSY;
		goto out_free;
	}
	if (!rn->registered) {
		for (i = 0; i < ARRAY_SIZE(rn->apps); i++) {
			err = itm_register_hook(rn->apps[i].hook, &rn->apps[i]);
			if (err) {
				NL_SET_ERR_MSG(extack,
					       "itm_mod refused an itm_route application (its label taken?)");
				while (i--)
					itm_unregister_hook(&rn->apps[i]);
				goto out_free;
			}
		}
		rn->registered = true;
	}
	new->gen = ++rn->conf_gen;
	old = rcu_replace_pointer(rn->conf, new, lockdep_is_held(&rn->lock));
	if (old)
		call_rcu(&old->rcu, itmr_conf_free);
	rn->owner = portid;
	rn->owner_pid = task_tgid_vnr(current);
	mutex_unlock(&rn->lock);
	return 0;

out_free:
	mutex_unlock(&rn->lock);
	kfree_sensitive(new);
	return err;
}

/**
 * itmr_unconfigure() - remove a namespace's configuration and routes
 * @net: the namespace
 * @portid: the calling socket
 *
 * Return: 0, -ENOENT when the namespace is not configured, -EBUSY when
 * another socket owns it.
 */
int itmr_unconfigure(struct net *net, u32 portid)
{
	struct itmr_net *rn = itmr_net(net);
	int err = 0;

	mutex_lock(&rn->lock);
	if (!rcu_access_pointer(rn->conf))
		err = -ENOENT;
	else if (rn->owner != portid)
		err = -EBUSY;
	else
		itmr_clear(rn);
	mutex_unlock(&rn->lock);
	return err;
}

static bool itmr_same_prefix(const struct itmr_route *a,
			     const struct itmr_route *b)
{
	return a->family == b->family && a->plen == b->plen &&
	       ipv6_addr_equal(&a->prefix, &b->prefix);
}

static int itmr_check_owner(struct itmr_net *rn, u32 portid,
			    struct netlink_ext_ack *extack)
{
	if (!rcu_access_pointer(rn->conf)) {
		NL_SET_ERR_MSG(extack, "the namespace has no itmRoute configuration");
		return -ENOENT;
	}
	if (itmr_owned_by_other(rn, portid, extack))
		return -EBUSY;
	return 0;
}

/* A path's addresses are the overlay's: of its family, the target not zero. */
static int itmr_check_path(const struct itmr_conf *conf,
			   const struct itmr_path *p,
			   struct netlink_ext_ack *extack)
{
	if (ipv6_addr_any(&p->target)) {
		NL_SET_ERR_MSG(extack, "the target ITM's address must not be zero");
		return -EINVAL;
	}
	if (!conf->v6 && (!itmr_v4_only(&p->target) || !itmr_v4_only(&p->via))) {
		NL_SET_ERR_MSG(extack,
			       "an IPv4 overlay's target and via use only their first 4 bytes");
		return -EINVAL;
	}
	return 0;
}

/**
 * itmr_route_set() - add or change the route of a prefix
 * @net: the namespace
 * @portid: the calling socket (must own the namespace's data path)
 * @r: the prefix (family, prefix, mask, plen)
 * @p: its path (copied)
 * @extack: for the reason of a refusal
 *
 * A changed route keeps its times and counters.
 *
 * Return: 0, -ENOENT (not configured), -EBUSY (another owner), -EINVAL (a
 * target of zero, an address beyond 4 bytes in an IPv4 overlay), -ENOSPC
 * (%ITMR_MAX_ROUTES routes already), -ENOMEM.
 */
int itmr_route_set(struct net *net, u32 portid, const struct itmr_route *r,
		   const struct itmr_path *p, struct netlink_ext_ack *extack)
{
	struct itmr_net *rn = itmr_net(net);
	struct itmr_route *cur, *nr = NULL;
	struct itmr_path *np, *old;
	int i, free_slot = -1;
	int err;

	np = kmemdup(p, sizeof(*p), GFP_KERNEL);
	if (!np)
		return -ENOMEM;
	mutex_lock(&rn->lock);
	err = itmr_check_owner(rn, portid, extack);
	if (err)
		goto out_free;
	err = itmr_check_path(rcu_dereference_protected(rn->conf,
							lockdep_is_held(&rn->lock)),
			      p, extack);
	if (err)
		goto out_free;
	for (i = 0; i < ITMR_MAX_ROUTES; i++) {
		cur = rcu_dereference_protected(rn->routes[i],
						lockdep_is_held(&rn->lock));
		if (!cur) {
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (itmr_same_prefix(cur, r)) {
			old = rcu_replace_pointer(cur->path, np,
						  lockdep_is_held(&rn->lock));
			kfree_rcu(old, rcu);
			goto out_ok;
		}
	}
	if (free_slot < 0) {
		NL_SET_ERR_MSG(extack, "too many routes (ITMR_MAX_ROUTES)");
		err = -ENOSPC;
		goto out_free;
	}
	nr = kzalloc(sizeof(*nr), GFP_KERNEL);
	if (!nr) {
		err = -ENOMEM;
		goto out_free;
	}
	nr->prefix = r->prefix;
	nr->mask = r->mask;
	nr->family = r->family;
	nr->plen = r->plen;
	spin_lock_init(&nr->peer_lock);
	/* "never": far enough in the past for any age to saturate */
	nr->out_at = jiffies - MAX_JIFFY_OFFSET;
	nr->in_at = nr->out_at;
	nr->peer_at = nr->out_at;
	nr->heard_at = nr->out_at;
	RCU_INIT_POINTER(nr->path, np);
	rcu_assign_pointer(rn->routes[free_slot], nr);
	if (free_slot >= rn->nroutes)
		rn->nroutes = free_slot + 1;
out_ok:
	mutex_unlock(&rn->lock);
	return 0;

out_free:
	mutex_unlock(&rn->lock);
	kfree(np);
	return err;
}

/**
 * itmr_route_del() - remove the route of a prefix
 * @net: the namespace
 * @portid: the calling socket (must own the namespace's data path)
 * @r: the prefix (family, prefix, plen)
 *
 * Return: 0, -ENOENT (no such route, or not configured), -EBUSY.
 */
int itmr_route_del(struct net *net, u32 portid, const struct itmr_route *r)
{
	struct itmr_net *rn = itmr_net(net);
	struct itmr_route *cur;
	unsigned int i;
	int err;

	mutex_lock(&rn->lock);
	err = itmr_check_owner(rn, portid, NULL);
	if (err)
		goto out;
	err = -ENOENT;
	for (i = 0; i < rn->nroutes; i++) {
		cur = rcu_dereference_protected(rn->routes[i],
						lockdep_is_held(&rn->lock));
		if (!cur || !itmr_same_prefix(cur, r))
			continue;
		RCU_INIT_POINTER(rn->routes[i], NULL);
		kfree_rcu(rcu_dereference_protected(cur->path, true), rcu);
		kfree_rcu(cur, rcu);
		err = 0;
		break;
	}
out:
	mutex_unlock(&rn->lock);
	return err;
}

/*
 * The configuring socket went away: drop what it set.  Called from
 * netlink_release() through a blocking notifier chain, so sleeping (the
 * mutex, itm_mod's grace period) is allowed.
 */
static int itmr_netlink_event(struct notifier_block *nb, unsigned long event,
			      void *ptr)
{
	struct netlink_notify *n = ptr;
	struct itmr_net *rn;

	if (event != NETLINK_URELEASE || n->protocol != NETLINK_GENERIC ||
	    !n->portid)
		return NOTIFY_DONE;
	rn = itmr_net(n->net);
	mutex_lock(&rn->lock);
	if (rcu_access_pointer(rn->conf) && rn->owner == n->portid)
		itmr_clear(rn);
	mutex_unlock(&rn->lock);
	return NOTIFY_DONE;
}

static struct notifier_block itmr_netlink_notifier = {
	.notifier_call = itmr_netlink_event,
};

static int __net_init itmr_net_init(struct net *net)
{
	struct itmr_net *rn = itmr_net(net);

	mutex_init(&rn->lock);
	spin_lock_init(&rn->win_lock);
	rn->net = net;
	itmr_init_apps(rn);
	return 0;
}

static void __net_exit itmr_net_exit(struct net *net)
{
	struct itmr_net *rn = itmr_net(net);

	mutex_lock(&rn->lock);
	itmr_clear(rn);
	mutex_unlock(&rn->lock);
}

static struct pernet_operations itmr_net_ops = {
	.init = itmr_net_init,
	.exit = itmr_net_exit,
	.id = &itmr_net_id,
	.size = sizeof(struct itmr_net),
};

static int __init itmr_init(void)
{
	int err;

	err = register_pernet_subsys(&itmr_net_ops);
	if (err)
		return err;
	err = netlink_register_notifier(&itmr_netlink_notifier);
	if (err)
		goto err_pernet;
	err = itmr_genl_init();
	if (err)
		goto err_notifier;
	return 0;

err_notifier:
	netlink_unregister_notifier(&itmr_netlink_notifier);
err_pernet:
	unregister_pernet_subsys(&itmr_net_ops);
	return err;
}

static void __exit itmr_exit(void)
{
	itmr_genl_exit();
	netlink_unregister_notifier(&itmr_netlink_notifier);
	unregister_pernet_subsys(&itmr_net_ops);
	rcu_barrier();	/* configurations (call_rcu) and routes (kfree_rcu) freed */
}

module_init(itmr_init);
module_exit(itmr_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("itmBench developers");
MODULE_DESCRIPTION("Internet Traffic Manager: itmRoute's overlay data path (tunnel, relay, delivery)");
MODULE_ALIAS_GENL_FAMILY(ITMR_FAMILY_NAME);
