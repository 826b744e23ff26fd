// SPDX-License-Identifier: GPL-2.0
/*
 * netlink.c - the "itm" generic netlink family: list the applications
 * with their counters, enable/disable them, change their priority, and
 * attach the hooks to a network namespace.  Described by spec/itm.yaml.
 */
#include <linux/module.h>
#include <net/genetlink.h>
#include <net/netlink.h>
#include <net/sock.h>
#include "itm_core.h"

static const struct nla_policy itm_policy[ITM_A_MAX + 1] = {
	[ITM_A_LABEL] = { .type = NLA_NUL_STRING, .len = ITM_LABEL_MAX - 1 },
	[ITM_A_PRIORITY] = { .type = NLA_S32 },
	[ITM_A_ENABLED] = NLA_POLICY_MAX(NLA_U8, 1),
	[ITM_A_NETNS_ACTIVE] = NLA_POLICY_MAX(NLA_U8, 1),
};

static struct genl_family itm_genl_family;

static int itm_put_interest(struct sk_buff *skb, const struct itm_interest *in)
{
	struct nlattr *nest = nla_nest_start(skb, ITM_A_INTEREST);

	if (!nest)
		return -EMSGSIZE;
	if (nla_put_u8(skb, ITM_A_INTEREST_FAMILY, in->family) ||
	    nla_put_u8(skb, ITM_A_INTEREST_PROTOCOL, in->protocol) ||
	    nla_put_in6_addr(skb, ITM_A_INTEREST_SADDR, &in->saddr) ||
	    nla_put_in6_addr(skb, ITM_A_INTEREST_SMASK, &in->smask) ||
	    nla_put_in6_addr(skb, ITM_A_INTEREST_DADDR, &in->daddr) ||
	    nla_put_in6_addr(skb, ITM_A_INTEREST_DMASK, &in->dmask) ||
	    nla_put_u16(skb, ITM_A_INTEREST_SPORT_MIN, in->sport_min) ||
	    nla_put_u16(skb, ITM_A_INTEREST_SPORT_MAX, in->sport_max) ||
	    nla_put_u16(skb, ITM_A_INTEREST_DPORT_MIN, in->dport_min) ||
	    nla_put_u16(skb, ITM_A_INTEREST_DPORT_MAX, in->dport_max)) {
		nla_nest_cancel(skb, nest);
		return -EMSGSIZE;
	}
	nla_nest_end(skb, nest);
	return 0;
}

static int itm_put_stats(struct sk_buff *skb, const struct itm_app *app)
{
	struct itm_app_totals s;
	struct nlattr *nest;

	itm_app_stats_sum(app, &s);
	nest = nla_nest_start(skb, ITM_A_STATS);
	if (!nest)
		return -EMSGSIZE;
	if (nla_put_u64_64bit(skb, ITM_A_STATS_SEEN, s.seen, ITM_A_STATS_PAD) ||
	    nla_put_u64_64bit(skb, ITM_A_STATS_MATCHED, s.matched, ITM_A_STATS_PAD) ||
	    nla_put_u64_64bit(skb, ITM_A_STATS_CLASSIFIED, s.classified,
			      ITM_A_STATS_PAD) ||
	    nla_put_u64_64bit(skb, ITM_A_STATS_ACCEPT, s.verdict[ITM_ACCEPT],
			      ITM_A_STATS_PAD) ||
	    nla_put_u64_64bit(skb, ITM_A_STATS_DROP, s.verdict[ITM_DROP],
			      ITM_A_STATS_PAD) ||
	    nla_put_u64_64bit(skb, ITM_A_STATS_STOLEN, s.verdict[ITM_STOLEN],
			      ITM_A_STATS_PAD) ||
	    nla_put_u64_64bit(skb, ITM_A_STATS_QUEUE, s.verdict[ITM_QUEUE],
			      ITM_A_STATS_PAD) ||
	    nla_put_u64_64bit(skb, ITM_A_STATS_BYTES, s.bytes, ITM_A_STATS_PAD) ||
	    nla_put_u64_64bit(skb, ITM_A_STATS_TIME_NS, s.time_ns,
			      ITM_A_STATS_PAD)) {
		nla_nest_cancel(skb, nest);
		return -EMSGSIZE;
	}
	nla_nest_end(skb, nest);
	return 0;
}

static int itm_fill_app(struct sk_buff *skb, const struct itm_app *app,
			u32 portid, u32 seq, int flags)
{
	const struct itm_info *info = app->info;
	void *hdr;

	hdr = genlmsg_put(skb, portid, seq, &itm_genl_family, flags,
			  ITM_CMD_APP_GET);
	if (!hdr)
		return -EMSGSIZE;
	if (nla_put_string(skb, ITM_A_LABEL, info->label) ||
	    nla_put_u8(skb, ITM_A_TYPE, info->type) ||
	    nla_put_u8(skb, ITM_A_HOOK, app->hook) ||
	    nla_put_s32(skb, ITM_A_PRIORITY, READ_ONCE(app->priority)) ||
	    nla_put_u8(skb, ITM_A_ENABLED, READ_ONCE(app->enabled)) ||
	    nla_put_u32(skb, ITM_A_PID, info->pid) ||
	    nla_put_string(skb, ITM_A_OWNER,
			   info->owner ? module_name(info->owner) : "") ||
	    nla_put_u16(skb, ITM_A_QUEUE_NUM, app->queue_num) ||
	    nla_put_u16(skb, ITM_A_QUEUE_COUNT, app->queue_count) ||
	    nla_put_u32(skb, ITM_A_ORDER, app->order) ||
	    itm_put_interest(skb, &info->interest) ||
	    itm_put_stats(skb, app)) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

/*
 * A caller that sees every namespace in a dump (see itm_dump_shows()) also
 * reaches another namespace's application by its label, when no other
 * application has that label.
 */
static struct itm_app *itm_find_app_anywhere(const char *label)
{
	struct itm_app *app, *found = NULL;

	list_for_each_entry(app, &itm_apps, node) {
		if (strcmp(app->info->label, label))
			continue;
		if (found)
			return ERR_PTR(-ENOTUNIQ);
		found = app;
	}
	return found ?: ERR_PTR(-ENOENT);
}

static struct itm_app *itm_app_from_info(struct sk_buff *skb,
					 struct genl_info *info)
{
	struct nlattr *attr = info->attrs[ITM_A_LABEL];
	struct net *net = genl_info_net(info);
	struct itm_app *app;

	if (!attr) {
		NL_SET_ERR_ATTR_MISS(info->extack, NULL, ITM_A_LABEL);
		NL_SET_ERR_MSG(info->extack, "an application label is required");
		return ERR_PTR(-EINVAL);
	}
	app = itm_find_app(net, nla_data(attr));
	if (app)
		return app;
	if (net_eq(net, &init_net) && netlink_capable(skb, CAP_NET_ADMIN))
		app = itm_find_app_anywhere(nla_data(attr));
	else
		app = ERR_PTR(-ENOENT);
	if (PTR_ERR(app) == -ENOTUNIQ)
		NL_SET_ERR_MSG_ATTR(info->extack, attr,
				    "the label is used in several namespaces");
	else if (IS_ERR(app))
		NL_SET_ERR_MSG_ATTR(info->extack, attr,
				    "no application with this label");
	return app;
}

static int itm_nl_app_get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct itm_app *app;
	struct sk_buff *msg;
	int err;

	msg = nlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	mutex_lock(&itm_lock);
	app = itm_app_from_info(skb, info);
	if (IS_ERR(app))
		err = PTR_ERR(app);
	else
		err = itm_fill_app(msg, app, info->snd_portid, info->snd_seq, 0);
	mutex_unlock(&itm_lock);
	if (err) {
		nlmsg_free(msg);
		return err;
	}
	return genlmsg_reply(msg, info);
}

/*
 * What a dump shows: a namespace sees its own applications and those of
 * every namespace (kernel modules, pid 0); only a caller with
 * CAP_NET_ADMIN over the initial user namespace, itself in the initial
 * network namespace, sees every namespace's (other containers' labels and
 * pids are not another container's business).
 */
static bool itm_dump_shows(const struct net *net, const struct itm_app *app,
			   bool all)
{
	const struct net *netns = app->netns;

	return all || !netns || net_eq(netns, net);
}

/*
 * The dump resumes after the registration order of the last application it
 * sent (cb->args[0]), not at an index: the list is in registration order
 * (new applications go to its tail), so an application removed or added
 * between two parts of a dump neither repeats one already sent nor hides
 * one that stayed registered all along.
 */
static int itm_nl_app_get_dumpit(struct sk_buff *skb,
				 struct netlink_callback *cb)
{
	struct net *net = sock_net(skb->sk);
	u32 after = cb->args[0];
	struct itm_app *app;
	int sent = 0, err = 0;
	bool all;

	all = net_eq(net, &init_net) &&
	      netlink_capable(cb->skb, CAP_NET_ADMIN);
	mutex_lock(&itm_lock);
	list_for_each_entry(app, &itm_apps, node) {
		if (app->order <= after || !itm_dump_shows(net, app, all))
			continue;
		err = itm_fill_app(skb, app, NETLINK_CB(cb->skb).portid,
				   cb->nlh->nlmsg_seq, NLM_F_MULTI);
		if (err)
			break;
		cb->args[0] = app->order;
		sent++;
	}
	mutex_unlock(&itm_lock);
	/* A full skb ends this part of the dump; the next one goes on. */
	if (err == -EMSGSIZE && sent)
		err = 0;
	return err ?: skb->len;
}

static int itm_nl_app_set_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *enabled = info->attrs[ITM_A_ENABLED];
	struct nlattr *prio = info->attrs[ITM_A_PRIORITY];
	struct itm_app *app;
	int err = 0;

	if (!enabled && !prio) {
		NL_SET_ERR_MSG(info->extack,
			       "nothing to change: give enabled and/or priority");
		return -EINVAL;
	}
	mutex_lock(&itm_lock);
	app = itm_app_from_info(skb, info);
	if (IS_ERR(app)) {
		err = PTR_ERR(app);
		goto out;
	}
	/* one namespace's operator does not switch every namespace's traffic */
	if (!app->netns && !net_eq(genl_info_net(info), &init_net)) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[ITM_A_LABEL],
				    "the application serves every namespace: change it from the initial network namespace");
		err = -EPERM;
		goto out;
	}
	if (prio) {
		err = itm_app_set_priority(app, nla_get_s32(prio));
		if (err) {
			NL_SET_ERR_MSG(info->extack, "out of memory for the run list");
			goto out;
		}
	}
	if (enabled)
		WRITE_ONCE(app->enabled, nla_get_u8(enabled));
out:
	mutex_unlock(&itm_lock);
	return err;
}

static int itm_nl_netns_get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct sk_buff *msg;
	bool active;
	void *hdr;
	u32 hooks;

	msg = nlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	hdr = genlmsg_put(msg, info->snd_portid, info->snd_seq,
			  &itm_genl_family, 0, ITM_CMD_NETNS_GET);
	if (!hdr)
		goto nospace;
	mutex_lock(&itm_lock);
	active = itm_netns_active(genl_info_net(info));
	hooks = itm_netns_hooks(genl_info_net(info));
	mutex_unlock(&itm_lock);
	if (nla_put_u8(msg, ITM_A_NETNS_ACTIVE, active) ||
	    nla_put_u32(msg, ITM_A_NETNS_HOOKS, hooks))
		goto nospace;
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);
nospace:
	nlmsg_free(msg);
	return -EMSGSIZE;
}

static int itm_nl_netns_set_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *attr = info->attrs[ITM_A_NETNS_ACTIVE];
	int err;

	if (!attr) {
		NL_SET_ERR_ATTR_MISS(info->extack, NULL, ITM_A_NETNS_ACTIVE);
		NL_SET_ERR_MSG(info->extack, "netns-active (0 or 1) is required");
		return -EINVAL;
	}
	mutex_lock(&itm_lock);
	err = itm_netns_set(genl_info_net(info), nla_get_u8(attr));
	mutex_unlock(&itm_lock);
	if (err)
		NL_SET_ERR_MSG(info->extack, "netfilter refused the hooks");
	return err;
}

static const struct genl_small_ops itm_genl_ops[] = {
	{
		.cmd = ITM_CMD_APP_GET,
		.doit = itm_nl_app_get_doit,
		.dumpit = itm_nl_app_get_dumpit,
	},
	{
		.cmd = ITM_CMD_APP_SET,
		.doit = itm_nl_app_set_doit,
		.flags = GENL_ADMIN_PERM,
	},
	{
		.cmd = ITM_CMD_NETNS_GET,
		.doit = itm_nl_netns_get_doit,
	},
	{
		.cmd = ITM_CMD_NETNS_SET,
		.doit = itm_nl_netns_set_doit,
		.flags = GENL_ADMIN_PERM,
	},
};

static struct genl_family itm_genl_family __ro_after_init = {
	.name = ITM_FAMILY_NAME,
	.version = ITM_FAMILY_VERSION,
	.maxattr = ITM_A_MAX,
	.policy = itm_policy,
	.netnsok = true,
	.parallel_ops = true,
	.module = THIS_MODULE,
	.small_ops = itm_genl_ops,
	.n_small_ops = ARRAY_SIZE(itm_genl_ops),
	/* every command validates strictly: no unknown attributes */
	.resv_start_op = ITM_CMD_NETNS_SET + 1,
};

/**
 * itm_genl_init() - register the generic netlink family
 *
 * Return: 0 or the error of genl_register_family().
 */
int itm_genl_init(void)
{
	return genl_register_family(&itm_genl_family);
}

/**
 * itm_genl_exit() - unregister the generic netlink family
 */
void itm_genl_exit(void)
{
	genl_unregister_family(&itm_genl_family);
}
