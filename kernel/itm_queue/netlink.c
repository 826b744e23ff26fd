// SPDX-License-Identifier: GPL-2.0
/*
 * netlink.c - the "itm_queue" generic netlink family: register and
 * unregister user-space applications.  Described by spec/itm_queue.yaml.
 */
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/module.h>
#include <linux/socket.h>
#include <net/genetlink.h>
#include <net/netlink.h>
#include "itm_queue.h"

static const struct nla_policy itmq_interest_policy[ITMQ_A_INTEREST_MAX + 1] = {
	[ITMQ_A_INTEREST_FAMILY] = { .type = NLA_U8 },
	[ITMQ_A_INTEREST_PROTOCOL] = { .type = NLA_U8 },
	[ITMQ_A_INTEREST_SADDR] = NLA_POLICY_EXACT_LEN(sizeof(struct in6_addr)),
	[ITMQ_A_INTEREST_SMASK] = NLA_POLICY_EXACT_LEN(sizeof(struct in6_addr)),
	[ITMQ_A_INTEREST_DADDR] = NLA_POLICY_EXACT_LEN(sizeof(struct in6_addr)),
	[ITMQ_A_INTEREST_DMASK] = NLA_POLICY_EXACT_LEN(sizeof(struct in6_addr)),
	[ITMQ_A_INTEREST_SPORT_MIN] = { .type = NLA_U16 },
	[ITMQ_A_INTEREST_SPORT_MAX] = { .type = NLA_U16 },
	[ITMQ_A_INTEREST_DPORT_MIN] = { .type = NLA_U16 },
	[ITMQ_A_INTEREST_DPORT_MAX] = { .type = NLA_U16 },
};

static const struct nla_policy itmq_policy[ITMQ_A_MAX + 1] = {
	[ITMQ_A_LABEL] = { .type = NLA_NUL_STRING, .len = ITM_LABEL_MAX - 1 },
	[ITMQ_A_HOOK] = NLA_POLICY_MAX(NLA_U8, ITM_NUM_HOOKS - 1),
	[ITMQ_A_PRIORITY] = { .type = NLA_S32 },
	[ITMQ_A_INTEREST] = NLA_POLICY_NESTED(itmq_interest_policy),
	[ITMQ_A_QUEUE_COUNT] = NLA_POLICY_RANGE(NLA_U16, 1, ITMQ_MAX_QUEUES),
	[ITMQ_A_OBSERVER] = NLA_POLICY_MAX(NLA_U8, 1),
};

static struct genl_family itmq_genl_family;

static bool itmq_ports_ok(u8 proto)
{
	switch (proto) {
	case 0:
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case IPPROTO_DCCP:
		return true;
	}
	return false;
}

static void itmq_get_addr(struct nlattr *attr, struct in6_addr *addr)
{
	if (attr)
		nla_memcpy(addr, attr, sizeof(*addr));
}

static bool itmq_v4_only(const struct in6_addr *a)
{
	return !a->s6_addr32[1] && !a->s6_addr32[2] && !a->s6_addr32[3];
}

static int itmq_parse_interest(struct nlattr *nest, struct itm_interest *in,
			       struct netlink_ext_ack *extack)
{
	struct nlattr *tb[ITMQ_A_INTEREST_MAX + 1];
	struct nlattr *a;
	int err;

	memset(in, 0, sizeof(*in));
	if (!nest)
		return 0;
	err = nla_parse_nested(tb, ITMQ_A_INTEREST_MAX, nest,
			       itmq_interest_policy, extack);
	if (err)
		return err;
	if (tb[ITMQ_A_INTEREST_FAMILY])
		in->family = nla_get_u8(tb[ITMQ_A_INTEREST_FAMILY]);
	if (tb[ITMQ_A_INTEREST_PROTOCOL])
		in->protocol = nla_get_u8(tb[ITMQ_A_INTEREST_PROTOCOL]);
	itmq_get_addr(tb[ITMQ_A_INTEREST_SADDR], &in->saddr);
	itmq_get_addr(tb[ITMQ_A_INTEREST_SMASK], &in->smask);
	itmq_get_addr(tb[ITMQ_A_INTEREST_DADDR], &in->daddr);
	itmq_get_addr(tb[ITMQ_A_INTEREST_DMASK], &in->dmask);
	if (tb[ITMQ_A_INTEREST_SPORT_MIN])
		in->sport_min = nla_get_u16(tb[ITMQ_A_INTEREST_SPORT_MIN]);
	if (tb[ITMQ_A_INTEREST_SPORT_MAX])
		in->sport_max = nla_get_u16(tb[ITMQ_A_INTEREST_SPORT_MAX]);
	if (tb[ITMQ_A_INTEREST_DPORT_MIN])
		in->dport_min = nla_get_u16(tb[ITMQ_A_INTEREST_DPORT_MIN]);
	if (tb[ITMQ_A_INTEREST_DPORT_MAX])
		in->dport_max = nla_get_u16(tb[ITMQ_A_INTEREST_DPORT_MAX]);
	/* a lower end alone: the range goes up to the last port */
	if (tb[ITMQ_A_INTEREST_SPORT_MIN] && !tb[ITMQ_A_INTEREST_SPORT_MAX])
		in->sport_max = U16_MAX;
	if (tb[ITMQ_A_INTEREST_DPORT_MIN] && !tb[ITMQ_A_INTEREST_DPORT_MAX])
		in->dport_max = U16_MAX;

	switch (in->family) {
	case AF_UNSPEC:
		a = tb[ITMQ_A_INTEREST_SADDR] ?: tb[ITMQ_A_INTEREST_SMASK] ?:
		    tb[ITMQ_A_INTEREST_DADDR] ?: tb[ITMQ_A_INTEREST_DMASK];
		if (a) {
			NL_SET_ERR_MSG_ATTR(extack, a,
					    "addresses need a family (AF_INET or AF_INET6)");
			return -EINVAL;
		}
		break;
	case AF_INET:
		if (!itmq_v4_only(&in->saddr) || !itmq_v4_only(&in->smask) ||
		    !itmq_v4_only(&in->daddr) || !itmq_v4_only(&in->dmask)) {
			NL_SET_ERR_MSG_ATTR(extack, nest,
					    "an IPv4 address or mask uses only its first 4 bytes");
			return -EINVAL;
		}
		break;
	case AF_INET6:
		break;
	default:
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMQ_A_INTEREST_FAMILY],
				    "family must be 0 (both), AF_INET or AF_INET6");
		return -EINVAL;
	}
	if (in->sport_min > in->sport_max) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMQ_A_INTEREST_SPORT_MIN],
				    "sport-min is above sport-max");
		return -EINVAL;
	}
	if (in->dport_min > in->dport_max) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMQ_A_INTEREST_DPORT_MIN],
				    "dport-min is above dport-max");
		return -EINVAL;
	}
	if ((in->sport_max || in->dport_max) && !itmq_ports_ok(in->protocol)) {
		NL_SET_ERR_MSG_ATTR(extack, tb[ITMQ_A_INTEREST_PROTOCOL],
				    "ports need TCP, UDP, UDP-Lite, SCTP, DCCP or protocol 0");
		return -EINVAL;
	}
	return 0;
}

static int itmq_nl_register_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct itmq_request req = {};
	struct sk_buff *msg;
	u16 queue_num;
	void *hdr;
	pid_t pid;
	int err;

	if (GENL_REQ_ATTR_CHECK(info, ITMQ_A_LABEL)) {
		NL_SET_ERR_MSG(info->extack, "a label is required");
		return -EINVAL;
	}
	if (GENL_REQ_ATTR_CHECK(info, ITMQ_A_HOOK)) {
		NL_SET_ERR_MSG(info->extack, "a hook (0..4) is required");
		return -EINVAL;
	}
	req.label = nla_data(info->attrs[ITMQ_A_LABEL]);
	req.hook = nla_get_u8(info->attrs[ITMQ_A_HOOK]);
	if (info->attrs[ITMQ_A_PRIORITY])
		req.priority = nla_get_s32(info->attrs[ITMQ_A_PRIORITY]);
	req.queue_count = 1;
	if (info->attrs[ITMQ_A_QUEUE_COUNT])
		req.queue_count = nla_get_u16(info->attrs[ITMQ_A_QUEUE_COUNT]);
	if (info->attrs[ITMQ_A_OBSERVER])
		req.observer = nla_get_u8(info->attrs[ITMQ_A_OBSERVER]);
	err = itmq_parse_interest(info->attrs[ITMQ_A_INTEREST], &req.interest,
				  info->extack);
	if (err)
		return err;

	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	err = itmq_register(genl_info_net(info), info->snd_portid, &req,
			    &queue_num, &pid, info->extack);
	if (err)
		goto err_free;
	/* the registration stands even if the reply cannot be sent */
	hdr = genlmsg_put_reply(msg, info, &itmq_genl_family, 0,
				ITMQ_CMD_REGISTER);
	if (!hdr)
		goto nospace;
	if (nla_put_string(msg, ITMQ_A_LABEL, req.label) ||
	    nla_put_u8(msg, ITMQ_A_HOOK, req.hook) ||
	    nla_put_s32(msg, ITMQ_A_PRIORITY, req.priority) ||
	    nla_put_u16(msg, ITMQ_A_QUEUE_NUM, queue_num) ||
	    nla_put_u32(msg, ITMQ_A_PID, pid) ||
	    nla_put_u16(msg, ITMQ_A_QUEUE_COUNT, req.queue_count) ||
	    nla_put_u8(msg, ITMQ_A_OBSERVER, req.observer))
		goto nospace;
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);

nospace:
	err = -EMSGSIZE;
err_free:
	nlmsg_free(msg);
	return err;
}

static int itmq_nl_unregister_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *label = info->attrs[ITMQ_A_LABEL];
	int err;

	if (GENL_REQ_ATTR_CHECK(info, ITMQ_A_LABEL)) {
		NL_SET_ERR_MSG(info->extack, "a label is required");
		return -EINVAL;
	}
	err = itmq_unregister(genl_info_net(info), info->snd_portid,
			      nla_data(label));
	if (err)
		NL_SET_ERR_MSG_ATTR(info->extack, label,
				    "this socket registered no application with this label");
	return err;
}

static const struct genl_small_ops itmq_genl_ops[] = {
	{
		.cmd = ITMQ_CMD_REGISTER,
		.doit = itmq_nl_register_doit,
		/* CAP_NET_ADMIN where the socket's namespace belongs, as nfqueue */
		.flags = GENL_UNS_ADMIN_PERM,
	},
	{
		.cmd = ITMQ_CMD_UNREGISTER,
		.doit = itmq_nl_unregister_doit,
		.flags = GENL_UNS_ADMIN_PERM,
	},
};

static struct genl_family itmq_genl_family __ro_after_init = {
	.name = ITMQ_FAMILY_NAME,
	.version = ITMQ_FAMILY_VERSION,
	.maxattr = ITMQ_A_MAX,
	.policy = itmq_policy,
	.netnsok = true,
	.parallel_ops = true,
	.module = THIS_MODULE,
	.small_ops = itmq_genl_ops,
	.n_small_ops = ARRAY_SIZE(itmq_genl_ops),
	/* every command validates strictly: no unknown attributes */
	.resv_start_op = ITMQ_CMD_UNREGISTER + 1,
};

/**
 * itmq_genl_init() - register the generic netlink family
 *
 * Return: 0 or the error of genl_register_family().
 */
int itmq_genl_init(void)
{
	return genl_register_family(&itmq_genl_family);
}

/**
 * itmq_genl_exit() - unregister the generic netlink family
 */
void itmq_genl_exit(void)
{
	genl_unregister_family(&itmq_genl_family);
}
