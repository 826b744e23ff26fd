// SPDX-License-Identifier: GPL-2.0
/*
 * sch_rio - RED with In and Out, the core router of Clark and Fang,
 * "Explicit allocation of best-effort packet delivery service" (1998),
 * which Guo and Matta's size-aware edge marking (qos_mod) assumes.
 *
 * One FIFO, so nothing is reordered.  Two averages: of the "in" packets
 * queued (updated when an "in" packet arrives) and of all packets queued
 * (updated on every arrival).  Two RED profiles: an "in" packet is judged
 * by the "in" profile against the "in" average, an "out" packet by the
 * "out" profile against the total average.  A packet is "in" when its TOS
 * has the Minimize-Delay bit (0x10), or, with TCA_RIO_DSCP, when its DSCP
 * is that value; IPv4 and IPv6 alike, anything else is "out".  A change
 * keeps what it does not name; TCA_RIO_CLEAR takes the DSCP and the idle
 * damping table back to their defaults.
 *
 * The RED arithmetic is the kernel's own (include/net/red.h); queue
 * lengths are in packets.  See docs/sch_rio.md.
 */
#include <linux/module.h>
#include <linux/skbuff.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <net/dsfield.h>
#include <net/inet_ecn.h>
#include <net/netlink.h>
#include <net/pkt_sched.h>
#include <net/red.h>
#include <uapi/linux/sch_rio.h>

#define RIO_DEFAULT_LIMIT	1000
#define RIO_DEFAULT_WLOG	9
#define RIO_DEFAULT_SCELL_LOG	10
/* a probability num/den as a fraction of 2^32 */
#define RIO_PROB(num, den)	((u32)div_u64((u64)(num) << 32, (den)))

/**
 * struct rio_profile - the RED parameters of one class of packets
 * @min: min threshold, packets
 * @max: max threshold, packets
 * @max_p: max probability, times 2^32
 */
struct rio_profile {
	u32 min;
	u32 max;
	u32 max_p;
};

struct rio_sched_data {
	u32 limit;
	u32 flags;
	s16 dscp;		/* -1: TOS bit 0x10 marks "in" */
	u8 wlog;
	u8 scell_log;
	bool has_stab;
	u8 stab[TC_RIO_STAB_SIZE];	/* all zero without a table */
	struct rio_profile in_prof;
	struct rio_profile out_prof;
	struct red_parms in_parms;
	struct red_parms out_parms;
	struct red_vars in_vars;	/* average of "in" packets queued */
	struct red_vars all_vars;	/* average of all packets queued */
	u32 in_qlen;
	struct tc_rio_xstats stats;
};

struct rio_skb_cb {
	bool in;
};

static struct rio_skb_cb *rio_cb(struct sk_buff *skb)
{
	qdisc_cb_private_validate(skb, sizeof(struct rio_skb_cb));
	return (struct rio_skb_cb *)qdisc_skb_cb(skb)->data;
}

/* the packet's DS field, or -1 when it is not IPv4 or IPv6 */
static int rio_dsfield(struct sk_buff *skb)
{
	switch (skb_protocol(skb, true)) {
	case htons(ETH_P_IP):
		if (!pskb_network_may_pull(skb, sizeof(struct iphdr)))
			return -1;
		return ipv4_get_dsfield(ip_hdr(skb));
	case htons(ETH_P_IPV6):
		if (!pskb_network_may_pull(skb, sizeof(struct ipv6hdr)))
			return -1;
		return ipv6_get_dsfield(ipv6_hdr(skb));
	default:
		return -1;
	}
}

static bool rio_is_in(const struct rio_sched_data *q, struct sk_buff *skb)
{
	int ds = rio_dsfield(skb);

	if (ds < 0)
		return false;
	if (q->dscp >= 0)
		return (ds >> 2) == q->dscp;
	return ds & 0x10;
}

static void rio_end_idle(const struct red_parms *p, struct red_vars *v,
			 unsigned int backlog)
{
	v->qavg = red_calc_qavg(p, v, backlog);
	if (red_is_idling(v))
		red_end_of_idle_period(v);
}

static int rio_enqueue(struct sk_buff *skb, struct Qdisc *sch,
		       struct sk_buff **to_free)
{
	struct rio_sched_data *q = qdisc_priv(sch);
	bool in = rio_is_in(q, skb);
	struct red_parms *p = in ? &q->in_parms : &q->out_parms;
	struct red_vars *v = in ? &q->in_vars : &q->all_vars;

	rio_end_idle(&q->out_parms, &q->all_vars, sch->q.qlen);
	if (in)
		rio_end_idle(&q->in_parms, &q->in_vars, q->in_qlen);

	switch (red_action(p, v, v->qavg)) {
	case RED_DONT_MARK:
		break;
	case RED_PROB_MARK:
		qdisc_qstats_overlimit(sch);
		if ((q->flags & TC_RIO_ECN) && INET_ECN_set_ce(skb)) {
			q->stats.ecn_marked++;
			break;
		}
		if (in)
			q->stats.in_early++;
		else
			q->stats.out_early++;
		goto congestion_drop;
	case RED_HARD_MARK:
		qdisc_qstats_overlimit(sch);
		if (in)
			q->stats.in_forced++;
		else
			q->stats.out_forced++;
		goto congestion_drop;
	}

	if (unlikely(sch->q.qlen >= q->limit)) {
		q->stats.limit_drops++;
		return qdisc_drop(skb, sch, to_free);
	}
	rio_cb(skb)->in = in;
	if (in) {
		q->in_qlen++;
		q->stats.in_enqueued++;
	} else {
		q->stats.out_enqueued++;
	}
	return qdisc_enqueue_tail(skb, sch);

congestion_drop:
	qdisc_drop(skb, sch, to_free);
	return NET_XMIT_CN;
}

/* a packet left the FIFO: the "in" count, and idle periods */
static void rio_left(struct rio_sched_data *q, struct Qdisc *sch,
		     struct sk_buff *skb)
{
	if (rio_cb(skb)->in && --q->in_qlen == 0 &&
	    !red_is_idling(&q->in_vars))
		red_start_of_idle_period(&q->in_vars);
	if (!sch->q.qlen && !red_is_idling(&q->all_vars))
		red_start_of_idle_period(&q->all_vars);
}

static struct sk_buff *rio_dequeue(struct Qdisc *sch)
{
	struct rio_sched_data *q = qdisc_priv(sch);
	struct sk_buff *skb = qdisc_dequeue_head(sch);

	if (skb)
		rio_left(q, sch, skb);
	return skb;
}

static void rio_reset(struct Qdisc *sch)
{
	struct rio_sched_data *q = qdisc_priv(sch);

	qdisc_reset_queue(sch);
	q->in_qlen = 0;
	red_restart(&q->in_vars);
	red_restart(&q->all_vars);
}

static const struct nla_policy rio_policy[TCA_RIO_MAX + 1] = {
	[TCA_RIO_LIMIT]		= NLA_POLICY_MIN(NLA_U32, 1),
	[TCA_RIO_WLOG]		= NLA_POLICY_MAX(NLA_U8, 31),
	[TCA_RIO_IN_MIN]	= { .type = NLA_U32 },
	[TCA_RIO_IN_MAX]	= { .type = NLA_U32 },
	[TCA_RIO_IN_MAX_P]	= { .type = NLA_U32 },
	[TCA_RIO_OUT_MIN]	= { .type = NLA_U32 },
	[TCA_RIO_OUT_MAX]	= { .type = NLA_U32 },
	[TCA_RIO_OUT_MAX_P]	= { .type = NLA_U32 },
	[TCA_RIO_DSCP]		= NLA_POLICY_MAX(NLA_U8, 63),
	[TCA_RIO_FLAGS]		= NLA_POLICY_MASK(NLA_U32, TC_RIO_ECN),
	[TCA_RIO_SCELL_LOG]	= NLA_POLICY_MAX(NLA_U8, 31),
	[TCA_RIO_STAB]		= NLA_POLICY_EXACT_LEN(TC_RIO_STAB_SIZE),
	[TCA_RIO_CLEAR]		= NLA_POLICY_MASK(NLA_U32, TC_RIO_CLEAR_DSCP |
							   TC_RIO_CLEAR_STAB),
};

static void rio_get_u32(u32 *dst, struct nlattr *attr)
{
	if (attr)
		*dst = nla_get_u32(attr);
}

static void rio_get_u8(u8 *dst, struct nlattr *attr)
{
	if (attr)
		*dst = nla_get_u8(attr);
}

/* the table is checked on its own (rio_stab_ok), so that its errors name it */
static bool rio_profile_ok(const struct rio_profile *prof, u8 wlog,
			   u8 scell_log)
{
	return prof->max_p && red_check_params(prof->min, prof->max, wlog,
					       scell_log, NULL);
}

/* each entry of an idle damping table is a shift of a 32-bit average */
static bool rio_stab_ok(const u8 *stab)
{
	int i;

	for (i = 0; i < TC_RIO_STAB_SIZE; i++)
		if (stab[i] >= 32)
			return false;
	return true;
}

static void rio_apply(struct red_parms *p, const struct rio_profile *prof,
		      u8 wlog, u8 scell_log, u8 *stab)
{
	red_set_parms(p, prof->min, prof->max, wlog, 0, scell_log, stab,
		      prof->max_p);
}

static int rio_change(struct Qdisc *sch, struct nlattr *opt,
		      struct netlink_ext_ack *extack)
{
	struct rio_sched_data *q = qdisc_priv(sch);
	struct nlattr *tb[TCA_RIO_MAX + 1] = {};
	struct rio_profile in_prof = q->in_prof;
	struct rio_profile out_prof = q->out_prof;
	u8 wlog = q->wlog, scell_log = q->scell_log;
	u32 limit = q->limit, flags = q->flags, clear = 0;
	unsigned int dropped_pkts = 0, dropped_bytes = 0;
	int err;

	if (opt) {
		err = nla_parse_nested(tb, TCA_RIO_MAX, opt, rio_policy, extack);
		if (err < 0)
			return err;
	}
	rio_get_u32(&clear, tb[TCA_RIO_CLEAR]);
	if ((clear & TC_RIO_CLEAR_DSCP) && tb[TCA_RIO_DSCP]) {
		NL_SET_ERR_MSG_ATTR(extack, tb[TCA_RIO_CLEAR],
				    "sch_rio: TCA_RIO_DSCP given and cleared at once");
		return -EINVAL;
	}
	if ((clear & TC_RIO_CLEAR_STAB) && tb[TCA_RIO_STAB]) {
		NL_SET_ERR_MSG_ATTR(extack, tb[TCA_RIO_CLEAR],
				    "sch_rio: TCA_RIO_STAB given and cleared at once");
		return -EINVAL;
	}
	if (tb[TCA_RIO_STAB] && !rio_stab_ok(nla_data(tb[TCA_RIO_STAB]))) {
		NL_SET_ERR_MSG_ATTR(extack, tb[TCA_RIO_STAB],
				    "sch_rio: bad idle table TCA_RIO_STAB: an entry is >= 32");
		return -EINVAL;
	}
	if (clear & TC_RIO_CLEAR_STAB)
		scell_log = RIO_DEFAULT_SCELL_LOG;
	rio_get_u32(&limit, tb[TCA_RIO_LIMIT]);
	rio_get_u8(&wlog, tb[TCA_RIO_WLOG]);
	rio_get_u8(&scell_log, tb[TCA_RIO_SCELL_LOG]);
	rio_get_u32(&flags, tb[TCA_RIO_FLAGS]);
	rio_get_u32(&in_prof.min, tb[TCA_RIO_IN_MIN]);
	rio_get_u32(&in_prof.max, tb[TCA_RIO_IN_MAX]);
	rio_get_u32(&in_prof.max_p, tb[TCA_RIO_IN_MAX_P]);
	rio_get_u32(&out_prof.min, tb[TCA_RIO_OUT_MIN]);
	rio_get_u32(&out_prof.max, tb[TCA_RIO_OUT_MAX]);
	rio_get_u32(&out_prof.max_p, tb[TCA_RIO_OUT_MAX_P]);

	if (!rio_profile_ok(&in_prof, wlog, scell_log)) {
		NL_SET_ERR_MSG_MOD(extack,
				   "bad \"in\" profile: need min <= max, max_p > 0, thresholds that fit wlog");
		return -EINVAL;
	}
	if (!rio_profile_ok(&out_prof, wlog, scell_log)) {
		NL_SET_ERR_MSG_MOD(extack,
				   "bad \"out\" profile: need min <= max, max_p > 0, thresholds that fit wlog");
		return -EINVAL;
	}

	sch_tree_lock(sch);
	q->limit = limit;
	q->flags = flags;
	q->wlog = wlog;
	q->scell_log = scell_log;
	if (tb[TCA_RIO_DSCP])
		q->dscp = nla_get_u8(tb[TCA_RIO_DSCP]);
	else if (clear & TC_RIO_CLEAR_DSCP)
		q->dscp = -1;
	if (tb[TCA_RIO_STAB]) {
		memcpy(q->stab, nla_data(tb[TCA_RIO_STAB]), TC_RIO_STAB_SIZE);
		q->has_stab = true;
	} else if (clear & TC_RIO_CLEAR_STAB) {
		memset(q->stab, 0, TC_RIO_STAB_SIZE);
		q->has_stab = false;
	}
	q->in_prof = in_prof;
	q->out_prof = out_prof;
	/*
	 * Always hand over q->stab: red_set_parms() keeps the parms' old
	 * table when given none, and without a table it must be all zero.
	 */
	rio_apply(&q->in_parms, &in_prof, wlog, scell_log, q->stab);
	rio_apply(&q->out_parms, &out_prof, wlog, scell_log, q->stab);
	red_set_vars(&q->in_vars);
	red_set_vars(&q->all_vars);

	while (sch->q.qlen > q->limit) {
		struct sk_buff *skb = __qdisc_dequeue_head(&sch->q);

		dropped_pkts++;
		dropped_bytes += qdisc_pkt_len(skb);
		if (rio_cb(skb)->in)
			q->in_qlen--;
		q->stats.limit_drops++;
		qdisc_qstats_backlog_dec(sch, skb);
		rtnl_qdisc_drop(skb, sch);
	}
	qdisc_tree_reduce_backlog(sch, dropped_pkts, dropped_bytes);
	sch_tree_unlock(sch);
	return 0;
}

static int rio_init(struct Qdisc *sch, struct nlattr *opt,
		    struct netlink_ext_ack *extack)
{
	struct rio_sched_data *q = qdisc_priv(sch);

	/* defaults: docs/sch_rio.md */
	q->limit = RIO_DEFAULT_LIMIT;
	q->wlog = RIO_DEFAULT_WLOG;
	q->scell_log = RIO_DEFAULT_SCELL_LOG;
	q->dscp = -1;
	q->in_prof = (struct rio_profile){ 40, 70, RIO_PROB(2, 100) };
	q->out_prof = (struct rio_profile){ 10, 30, RIO_PROB(1, 10) };
	red_set_vars(&q->in_vars);
	red_set_vars(&q->all_vars);
	return rio_change(sch, opt, extack);
}

static int rio_put_profile(struct sk_buff *skb, const struct rio_profile *prof,
			   int min_type)
{
	/* min, max and max_p follow each other in both profiles */
	if (nla_put_u32(skb, min_type, prof->min) ||
	    nla_put_u32(skb, min_type + 1, prof->max) ||
	    nla_put_u32(skb, min_type + 2, prof->max_p))
		return -EMSGSIZE;
	return 0;
}

static int rio_dump(struct Qdisc *sch, struct sk_buff *skb)
{
	struct rio_sched_data *q = qdisc_priv(sch);
	struct nlattr *opts = nla_nest_start_noflag(skb, TCA_OPTIONS);

	if (!opts)
		goto nla_put_failure;
	if (nla_put_u32(skb, TCA_RIO_LIMIT, q->limit) ||
	    nla_put_u8(skb, TCA_RIO_WLOG, q->wlog) ||
	    nla_put_u8(skb, TCA_RIO_SCELL_LOG, q->scell_log) ||
	    nla_put_u32(skb, TCA_RIO_FLAGS, q->flags) ||
	    rio_put_profile(skb, &q->in_prof, TCA_RIO_IN_MIN) ||
	    rio_put_profile(skb, &q->out_prof, TCA_RIO_OUT_MIN))
		goto nla_put_failure;
	if (q->dscp >= 0 && nla_put_u8(skb, TCA_RIO_DSCP, q->dscp))
		goto nla_put_failure;
	if (q->has_stab &&
	    nla_put(skb, TCA_RIO_STAB, TC_RIO_STAB_SIZE, q->stab))
		goto nla_put_failure;
	return nla_nest_end(skb, opts);

nla_put_failure:
	nla_nest_cancel(skb, opts);
	return -EMSGSIZE;
}

static int rio_dump_stats(struct Qdisc *sch, struct gnet_dump *d)
{
	struct rio_sched_data *q = qdisc_priv(sch);
	struct tc_rio_xstats st = q->stats;

	st.qavg_in = q->in_vars.qavg >> q->wlog;
	st.qavg_all = q->all_vars.qavg >> q->wlog;
	st.in_qlen = q->in_qlen;
	st.qlen = sch->q.qlen;
	return gnet_stats_copy_app(d, &st, sizeof(st));
}

static struct Qdisc_ops rio_qdisc_ops __read_mostly = {
	.id		= TC_RIO_KIND,
	.priv_size	= sizeof(struct rio_sched_data),
	.enqueue	= rio_enqueue,
	.dequeue	= rio_dequeue,
	.peek		= qdisc_peek_head,
	.init		= rio_init,
	.reset		= rio_reset,
	.change		= rio_change,
	.dump		= rio_dump,
	.dump_stats	= rio_dump_stats,
	.owner		= THIS_MODULE,
};

static int __init rio_module_init(void)
{
	return register_qdisc(&rio_qdisc_ops);
}

static void __exit rio_module_exit(void)
{
	unregister_qdisc(&rio_qdisc_ops);
}

module_init(rio_module_init);
module_exit(rio_module_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("RIO: RED with In and Out on one FIFO (Clark and Fang, 1998)");
MODULE_ALIAS("net-sch-rio");
