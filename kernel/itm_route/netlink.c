// SPDX-License-Identifier: GPL-2.0
/*
 * netlink.c - the "itm_route" generic netlink family: the itmRoute
 * daemon configures the kernel data path and reads it back.  Described by
 * spec/itm_route.yaml.
 */
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/socket.h>
#include <net/genetlink.h>
#include <net/ipv6.h>
#include <net/netlink.h>
#include "itm_route.h"

static const struct nla_policy itmr_route_policy[ITMR_A_ROUTE_MAX + 1] = {
	[ITMR_A_ROUTE_FAMILY] = { .type = NLA_U8 },
	[ITMR_A_ROUTE_PREFIX] = NLA_POLICY_EXACT_LEN(sizeof(struct in6_addr)),
	[ITMR_A_ROUTE_PREFIX_LEN] = NLA_POLICY_MAX(NLA_U8, 128),
	[ITMR_A_ROUTE_VIA] = NLA_POLICY_EXACT_LEN(sizeof(struct in6_addr)),
	[ITMR_A_ROUTE_TARGET] = NLA_POLICY_EXACT_LEN(sizeof(struct in6_addr)),
	[ITMR_A_ROUTE_TAG] = { .type = NLA_U8 },
	[ITMR_A_ROUTE_RECEIPT] = { .type = NLA_U8 },
};

static const struct nla_policy itmr_policy[ITMR_A_MAX + 1] = {
	[ITMR_A_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
	[ITMR_A_MARK] = { .type = NLA_U32 },
	[ITMR_A_KEY] = { .type = NLA_BINARY, .len = ITMR_KEY_MAX },
	[ITMR_A_ADDR] = NLA_POLICY_EXACT_LEN(sizeof(struct in6_addr)),
	[ITMR_A_FAMILY] = { .type = NLA_U8 },
	[ITMR_A_MTU] = NLA_POLICY_MIN(NLA_U16, 68),
	[ITMR_A_ROUTE] = NLA_POLICY_NESTED(itmr_route_policy),
};

static struct genl_family itmr_genl_family;

static const u32 itmr_required[] = {
	ITMR_A_PORT, ITMR_A_MARK, ITMR_A_KEY, ITMR_A_ADDR, ITMR_A_FAMILY,
	ITMR_A_MTU,
};

static int itmr_nl_config_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct netlink_ext_ack *extack = info->extack;
	struct nlattr **tb = info->attrs;
	struct itmr_conf conf = {};
	unsigned int i;
	u8 family;
	int err;

	for (i = 0; i < ARRAY_SIZE(itmr_required); i++) {
		if (!tb[itmr_required[i]]) {
			NL_SET_ERR_MSG(extack,
				       "port, mark, key, addr, family and mtu are required");
			return -EINVAL;
		}
	}
	family = nla_get_u8(tb[ITMR_A_FAMILY]);
	if (family != AF_INET && family != AF_INET6) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_FAMILY],
				    "family must be AF_INET or AF_INET6");
		return -EINVAL;
	}
	conf.keylen = nla_len(tb[ITMR_A_KEY]);
	if (conf.keylen < ITMR_KEY_MIN) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_KEY],
				    "the key has 16 to 32 bytes");
		return -EINVAL;
	}
	nla_memcpy(conf.key, tb[ITMR_A_KEY], sizeof(conf.key));
	nla_memcpy(&conf.me, tb[ITMR_A_ADDR], sizeof(conf.me));
	conf.v6 = family == AF_INET6;
	if (!conf.v6 && !itmr_v4_only(&conf.me)) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_ADDR],
				    "an IPv4 address uses only its first 4 bytes");
		return -EINVAL;
	}
	if (ipv6_addr_any(&conf.me)) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_ADDR],
				    "the overlay address must not be zero");
		return -EINVAL;
	}
	conf.port = htons(nla_get_u16(tb[ITMR_A_PORT]));
	/* the data path tells the daemon's packets by it: 0 is every other packet */
	conf.mark = nla_get_u32(tb[ITMR_A_MARK]);
	if (!conf.mark || conf.mark > 0xffff) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_MARK],
				    "the mark is 1..0xffff");
		return -EINVAL;
	}
	conf.mtu = nla_get_u16(tb[ITMR_A_MTU]);
	itmr_sender_key(&conf, (const u8 *)&conf.me, conf.data_key);
	err = itmr_configure(genl_info_net(info), info->snd_portid, &conf,
			     extack);
	memzero_explicit(&conf, sizeof(conf));
	return err;
}

/* The prefix of a route nest; with @path, the path too (route-set). */
static int itmr_parse_route(struct nlattr *nest, struct itmr_route *r,
			    struct itmr_path *path, struct netlink_ext_ack *extack)
{
	struct nlattr *tb[ITMR_A_ROUTE_MAX + 1];
	struct in6_addr masked;
	unsigned int bits;
	int err;

	if (!nest) {
		NL_SET_ERR_MSG(extack, "a route is required");
		return -EINVAL;
	}
	err = nla_parse_nested(tb, ITMR_A_ROUTE_MAX, nest, itmr_route_policy,
			       extack);
	if (err)
		return err;
	if (!tb[ITMR_A_ROUTE_FAMILY] || !tb[ITMR_A_ROUTE_PREFIX] ||
	    !tb[ITMR_A_ROUTE_PREFIX_LEN]) {
		NL_SET_ERR_MSG_ATTR(extack, nest,
				    "a route needs family, prefix and prefix-len");
		return -EINVAL;
	}
	memset(r, 0, sizeof(*r));
	r->family = nla_get_u8(tb[ITMR_A_ROUTE_FAMILY]);
	r->plen = nla_get_u8(tb[ITMR_A_ROUTE_PREFIX_LEN]);
	nla_memcpy(&r->prefix, tb[ITMR_A_ROUTE_PREFIX], sizeof(r->prefix));
	if (r->family == AF_INET) {
		bits = 32;
		if (!itmr_v4_only(&r->prefix)) {
			NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_ROUTE_PREFIX],
					    "an IPv4 prefix uses only its first 4 bytes");
			return -EINVAL;
		}
	} else if (r->family == AF_INET6) {
		bits = 128;
	} else {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_ROUTE_FAMILY],
				    "family must be AF_INET or AF_INET6");
		return -EINVAL;
	}
	if (r->plen > bits) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_ROUTE_PREFIX_LEN],
				    "prefix-len above the family's address length");
		return -EINVAL;
	}
	/* ipv6_addr_prefix() zeroes its destination first: not in place */
	memset(&masked, 0xff, sizeof(masked));
	ipv6_addr_prefix(&r->mask, &masked, r->plen);
	ipv6_addr_prefix(&masked, &r->prefix, r->plen);
	if (!ipv6_addr_equal(&masked, &r->prefix)) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMR_A_ROUTE_PREFIX],
				    "the prefix has bits set beyond prefix-len");
		return -EINVAL;
	}
	if (!path)
		return 0;
	memset(path, 0, sizeof(*path));
	if (!tb[ITMR_A_ROUTE_TARGET]) {
		NL_SET_ERR_MSG_ATTR(extack, nest, "a route needs its target ITM");
		return -EINVAL;
	}
	nla_memcpy(&path->target, tb[ITMR_A_ROUTE_TARGET], sizeof(path->target));
	if (tb[ITMR_A_ROUTE_VIA])
		nla_memcpy(&path->via, tb[ITMR_A_ROUTE_VIA], sizeof(path->via));
	path->direct = ipv6_addr_any(&path->via);
	if (tb[ITMR_A_ROUTE_TAG])
		path->tag = nla_get_u8(tb[ITMR_A_ROUTE_TAG]);
	path->receipt = ITMR_NO_RECEIPT;
	if (tb[ITMR_A_ROUTE_RECEIPT])
		path->receipt = nla_get_u8(tb[ITMR_A_ROUTE_RECEIPT]);
	return 0;
}

static int itmr_nl_route_set_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct itmr_route r;
	struct itmr_path p;
	int err;

	err = itmr_parse_route(info->attrs[ITMR_A_ROUTE], &r, &p, info->extack);
	if (err)
		return err;
	return itmr_route_set(genl_info_net(info), info->snd_portid, &r, &p,
			      info->extack);
}

static int itmr_nl_route_del_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct itmr_route r;
	int err;

	err = itmr_parse_route(info->attrs[ITMR_A_ROUTE], &r, NULL,
			       info->extack);
	if (err)
		return err;
	err = itmr_route_del(genl_info_net(info), info->snd_portid, &r);
	if (err == -ENOENT)
		NL_SET_ERR_MSG(info->extack, "no route of this prefix");
	else if (err == -EBUSY)
		NL_SET_ERR_MSG(info->extack,
			       "another socket owns this namespace's itmRoute data path");
	return err;
}

static int itmr_nl_unconfig_doit(struct sk_buff *skb, struct genl_info *info)
{
	int err = itmr_unconfigure(genl_info_net(info), info->snd_portid);

	if (err == -ENOENT)
		NL_SET_ERR_MSG(info->extack,
			       "the namespace has no itmRoute configuration");
	else if (err == -EBUSY)
		NL_SET_ERR_MSG(info->extack,
			       "another socket owns this namespace's itmRoute data path");
	return err;
}

/* Milliseconds since @at (read once by the caller), ITMR_NEVER for "never". */
static u32 itmr_age(unsigned long at)
{
	unsigned long d = jiffies - at;
	u64 ms;

	if (d >= MAX_JIFFY_OFFSET / 2)
		return ITMR_NEVER;
	ms = div_u64((u64)d * MSEC_PER_SEC, HZ);
	return min_t(u64, ms, ITMR_NEVER - 1);
}

static int itmr_put_stats(struct sk_buff *msg, struct itmr_net *rn)
{
	struct nlattr *nest = nla_nest_start(msg, ITMR_A_STATS);
	unsigned int c;

	if (!nest)
		return -EMSGSIZE;
	/* the stats attributes follow enum itmr_counter, from 1 */
	BUILD_BUG_ON(ITMR_A_STATS_TUNNELLED + ITMR_C_NUM - 1 !=
		     ITMR_A_STATS_NO_ROUTE);
	for (c = 0; c < ITMR_C_NUM; c++) {
		if (nla_put_u64_64bit(msg, ITMR_A_STATS_TUNNELLED + c,
				      atomic64_read(&rn->stats[c]),
				      ITMR_A_STATS_PAD))
			return -EMSGSIZE;
	}
	nla_nest_end(msg, nest);
	return 0;
}

static int itmr_put_route(struct sk_buff *msg, struct itmr_route *r)
{
	struct itmr_path *p = rcu_dereference_protected(r->path, true);
	struct nlattr *nest = nla_nest_start(msg, ITMR_A_ROUTE);
	struct in6_addr peer_via;
	u8 peer_tag;

	if (!nest)
		return -EMSGSIZE;
	spin_lock_bh(&r->peer_lock);
	peer_via = r->peer_via;
	peer_tag = r->peer_tag;
	spin_unlock_bh(&r->peer_lock);
	if (nla_put_u8(msg, ITMR_A_ROUTE_FAMILY, r->family) ||
	    nla_put_in6_addr(msg, ITMR_A_ROUTE_PREFIX, &r->prefix) ||
	    nla_put_u8(msg, ITMR_A_ROUTE_PREFIX_LEN, r->plen) ||
	    nla_put_in6_addr(msg, ITMR_A_ROUTE_VIA, &p->via) ||
	    nla_put_in6_addr(msg, ITMR_A_ROUTE_TARGET, &p->target) ||
	    nla_put_u8(msg, ITMR_A_ROUTE_TAG, p->tag) ||
	    nla_put_u8(msg, ITMR_A_ROUTE_RECEIPT, p->receipt) ||
	    nla_put_u32(msg, ITMR_A_ROUTE_OUT_AGE, itmr_age(READ_ONCE(r->out_at))) ||
	    nla_put_u32(msg, ITMR_A_ROUTE_IN_AGE, itmr_age(READ_ONCE(r->in_at))) ||
	    nla_put_u32(msg, ITMR_A_ROUTE_PEER_AGE, itmr_age(READ_ONCE(r->peer_at))) ||
	    nla_put_u8(msg, ITMR_A_ROUTE_PEER_TAG, peer_tag) ||
	    nla_put_in6_addr(msg, ITMR_A_ROUTE_PEER_VIA, &peer_via) ||
	    nla_put_u32(msg, ITMR_A_ROUTE_HEARD_AGE, itmr_age(READ_ONCE(r->heard_at))) ||
	    nla_put_u8(msg, ITMR_A_ROUTE_HEARD_RECEIPT,
		       READ_ONCE(r->heard_receipt)) ||
	    nla_put_u64_64bit(msg, ITMR_A_ROUTE_TUNNELLED,
			      atomic64_read(&r->tunnelled), ITMR_A_ROUTE_PAD) ||
	    nla_put_u64_64bit(msg, ITMR_A_ROUTE_DIRECT,
			      atomic64_read(&r->direct), ITMR_A_ROUTE_PAD) ||
	    nla_put_u64_64bit(msg, ITMR_A_ROUTE_PEER_PACKETS,
			      atomic64_read(&r->peer_packets), ITMR_A_ROUTE_PAD))
		return -EMSGSIZE;
	nla_nest_end(msg, nest);
	return 0;
}

static int itmr_put_conf(struct sk_buff *msg, struct itmr_net *rn,
			 const struct itmr_conf *conf)
{
	if (nla_put_u16(msg, ITMR_A_PORT, ntohs(conf->port)) ||
	    nla_put_u32(msg, ITMR_A_MARK, conf->mark) ||
	    nla_put_in6_addr(msg, ITMR_A_ADDR, &conf->me) ||
	    nla_put_u8(msg, ITMR_A_FAMILY, conf->v6 ? AF_INET6 : AF_INET) ||
	    nla_put_u16(msg, ITMR_A_MTU, conf->mtu) ||
	    nla_put_u32(msg, ITMR_A_PID, rn->owner_pid))
		return -EMSGSIZE;
	return itmr_put_stats(msg, rn);
}

/*
 * The dump: one message with the configuration and the counters, then one
 * per route.  cb->args[0]: the first message went; cb->args[1]: the next
 * route slot.
 */
static int itmr_nl_get_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct itmr_net *rn = itmr_net(sock_net(skb->sk));
	const struct itmr_conf *conf;
	unsigned int i = cb->args[1];
	struct itmr_route *r;
	void *hdr;

	mutex_lock(&rn->lock);
	conf = rcu_dereference_protected(rn->conf, lockdep_is_held(&rn->lock));
	if (!conf)
		goto out;
	if (!cb->args[0]) {
		hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid,
				  cb->nlh->nlmsg_seq, &itmr_genl_family,
				  NLM_F_MULTI, ITMR_CMD_GET);
		if (!hdr)
			goto out;
		if (itmr_put_conf(skb, rn, conf)) {
			genlmsg_cancel(skb, hdr);
			goto out;
		}
		genlmsg_end(skb, hdr);
		cb->args[0] = 1;
	}
	for (; i < rn->nroutes; i++) {
		r = rcu_dereference_protected(rn->routes[i],
					      lockdep_is_held(&rn->lock));
		if (!r)
			continue;
		hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid,
				  cb->nlh->nlmsg_seq, &itmr_genl_family,
				  NLM_F_MULTI, ITMR_CMD_GET);
		if (!hdr)
			break;
		if (itmr_put_route(skb, r)) {
			genlmsg_cancel(skb, hdr);
			break;
		}
		genlmsg_end(skb, hdr);
	}
	cb->args[1] = i;
out:
	mutex_unlock(&rn->lock);
	return skb->len;
}

static const struct genl_small_ops itmr_genl_ops[] = {
	{
		.cmd = ITMR_CMD_CONFIG,
		.doit = itmr_nl_config_doit,
		/* CAP_NET_ADMIN where the socket's namespace belongs */
		.flags = GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd = ITMR_CMD_ROUTE_SET,
		.doit = itmr_nl_route_set_doit,
		.flags = GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd = ITMR_CMD_ROUTE_DEL,
		.doit = itmr_nl_route_del_doit,
		.flags = GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd = ITMR_CMD_GET,
		.dumpit = itmr_nl_get_dumpit,
	},
	{
		.cmd = ITMR_CMD_UNCONFIG,
		.doit = itmr_nl_unconfig_doit,
		.flags = GENL_UNS_ADMIN_PERM,
	},
};

static struct genl_family itmr_genl_family __ro_after_init = {
	.name = ITMR_FAMILY_NAME,
	.version = ITMR_FAMILY_VERSION,
	.maxattr = ITMR_A_MAX,
	.policy = itmr_policy,
	.netnsok = true,
	.parallel_ops = true,
	.module = THIS_MODULE,
	.small_ops = itmr_genl_ops,
	.n_small_ops = ARRAY_SIZE(itmr_genl_ops),
	/* every command validates strictly: no unknown attributes */
	.resv_start_op = ITMR_CMD_UNCONFIG + 1,
};

/**
 * itmr_genl_init() - register the generic netlink family
 *
 * Return: 0 or the error of genl_register_family().
 */
int itmr_genl_init(void)
{
	return genl_register_family(&itmr_genl_family);
}

/**
 * itmr_genl_exit() - unregister the generic netlink family
 */
void itmr_genl_exit(void)
{
	genl_unregister_family(&itmr_genl_family);
}
