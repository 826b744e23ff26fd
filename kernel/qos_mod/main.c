// SPDX-License-Identifier: GPL-2.0
/*
 * qos_mod - size-aware differentiation of TCP flows, the itmBench
 * paper's own application, written against itm.h only.
 *
 * At post-routing, for every TCP packet:
 *   class_func    the flow's class from its packet count: SHORT for a flow
 *                 not in the table yet (0 with mark_first=N), SHORT while the
 *                 count (this packet included) is at most `threshold` or
 *                 for a FIN, LONG after;
 *   log_func      enters an unseen flow in the table, counts the packet;
 *   process_func  marks SHORT packets with the Minimize-Delay TOS bit and
 *                 clears it on LONG ones (or writes a DSCP in dscp mode).
 *
 * Parameters live in /sys/module/qos_mod/parameters, counters in
 * /sys/module/qos_mod/stats/.  See docs/qos_mod.md.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sysfs.h>
#include <net/net_namespace.h>
#include "qos.h"

/* the collector's period: flows leave at most this long after expiring */
#define QOS_GC_PERIOD (HZ / 2)

unsigned int qos_threshold = 20;
unsigned int qos_max_flows = 65536;
unsigned int qos_idle_timeout = 30;
unsigned int qos_short_dscp = 18;	/* AF21, low-latency data (RFC 4594) */
unsigned int qos_long_dscp = 10;	/* AF11, high-throughput data */
enum qos_mode qos_mode = QOS_MODE_TOS;
struct qos_stats __percpu *qos_stats;

module_param_named(threshold, qos_threshold, uint, 0644);
MODULE_PARM_DESC(threshold,
		 "packet n of a flow direction is SHORT while n <= threshold (n counts from 1, this packet included; packet 1 only with mark_first), LONG after; FINs are SHORT. The figures' THRESHOLD T marks packets 2..T+2: figures=1 threshold=T (default 20)");

bool qos_mark_first = true;
module_param_named(mark_first, qos_mark_first, bool, 0644);
MODULE_PARM_DESC(mark_first,
		 "mark a flow's first packet (the SYN) too, as the paper's text says (default Y); N: class 0, unmarked, Figures 9-10 read literally");

bool qos_figures;
module_param_named(figures, qos_figures, bool, 0644);
MODULE_PARM_DESC(figures,
		 "count as Figures 9-10 do: packet 1 class 0 (unmarked, whatever mark_first), then SHORT while the packets counted after it are at most threshold, i.e. packets 2..threshold+2 (default N)");

static int qos_set_max_flows(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 1, 1U << 24);
}

static const struct kernel_param_ops qos_max_flows_ops = {
	.set = qos_set_max_flows,
	.get = param_get_uint,
};

module_param_cb(max_flows, &qos_max_flows_ops, &qos_max_flows, 0444);
MODULE_PARM_DESC(max_flows,
		 "most flow directions tracked at once; more pass unmarked (default 65536)");

static int qos_set_idle(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 1, 86400);
}

static const struct kernel_param_ops qos_idle_ops = {
	.set = qos_set_idle,
	.get = param_get_uint,
};

module_param_cb(idle_timeout, &qos_idle_ops, &qos_idle_timeout, 0644);
MODULE_PARM_DESC(idle_timeout,
		 "seconds without a packet after which a flow is forgotten (default 30)");

static int qos_set_dscp(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 0, 63);
}

static const struct kernel_param_ops qos_dscp_ops = {
	.set = qos_set_dscp,
	.get = param_get_uint,
};

module_param_cb(short_dscp, &qos_dscp_ops, &qos_short_dscp, 0644);
MODULE_PARM_DESC(short_dscp, "DSCP of SHORT packets in dscp mode (default 18, AF21)");
module_param_cb(long_dscp, &qos_dscp_ops, &qos_long_dscp, 0644);
MODULE_PARM_DESC(long_dscp, "DSCP of LONG packets in dscp mode (default 10, AF11)");

static const char * const qos_mode_names[] = {
	[QOS_MODE_TOS] = "tos",
	[QOS_MODE_DSCP] = "dscp",
};

static int qos_set_mode(const char *val, const struct kernel_param *kp)
{
	int i = sysfs_match_string(qos_mode_names, val);

	if (i < 0)
		return -EINVAL;
	WRITE_ONCE(qos_mode, i);
	return 0;
}

static int qos_get_mode(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", qos_mode_names[READ_ONCE(qos_mode)]);
}

static const struct kernel_param_ops qos_mode_ops = {
	.set = qos_set_mode,
	.get = qos_get_mode,
};

module_param_cb(mode, &qos_mode_ops, NULL, 0444);
MODULE_PARM_DESC(mode,
		 "tos: set/clear the Minimize-Delay bit 0x10 (default); dscp: write short_dscp/long_dscp");

/* counters: /sys/module/qos_mod/stats/<name> */

static u64 qos_stat_sum(size_t offset)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += *(u64 *)((char *)per_cpu_ptr(qos_stats, cpu) + offset);
	return sum;
}

#define QOS_STAT_ATTR(name, field)					\
static ssize_t name##_show(struct kobject *kobj,			\
			   struct kobj_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%llu\n",				\
			  qos_stat_sum(offsetof(struct qos_stats, field))); \
}									\
static struct kobj_attribute qos_attr_##name = __ATTR_RO(name)

QOS_STAT_ATTR(created, created);
QOS_STAT_ATTR(short_packets, short_pkts);
QOS_STAT_ATTR(long_packets, long_pkts);
QOS_STAT_ATTR(table_full, table_full);
QOS_STAT_ATTR(collected, collected);

static ssize_t flows_show(struct kobject *kobj, struct kobj_attribute *attr,
			  char *buf)
{
	return sysfs_emit(buf, "%u\n", qos_flows_count());
}

static struct kobj_attribute qos_attr_flows = __ATTR_RO(flows);

static struct attribute *qos_stat_attrs[] = {
	&qos_attr_flows.attr,
	&qos_attr_created.attr,
	&qos_attr_short_packets.attr,
	&qos_attr_long_packets.attr,
	&qos_attr_table_full.attr,
	&qos_attr_collected.attr,
	NULL,
};

static const struct attribute_group qos_stat_group = {
	.name = "stats",
	.attrs = qos_stat_attrs,
};

/* the paper's callbacks */

/*
 * What class_func parsed and looked up, for log_func on the same packet:
 * itm_mod calls the two back to back for each packet, on one CPU with
 * bottom halves off and under one RCU read side, so the flow is parsed,
 * hashed and found once per packet.  @skb says which packet it is for.
 */
struct qos_seen {
	const struct sk_buff *skb;
	struct qos_pkt pkt;
	struct qos_lookup lookup;
};

static DEFINE_PER_CPU(struct qos_seen, qos_seen);

static int qos_class(enum itm_hook where, struct sk_buff *skb,
		     const struct itm_ctx *ctx)
{
	struct qos_seen *s = this_cpu_ptr(&qos_seen);

	if (!qos_parse(ctx, &s->pkt)) {
		s->skb = NULL;
		return 0;
	}
	s->skb = skb;
	return qos_flows_classify(&s->pkt, &s->lookup);
}

static void qos_log(enum itm_hook where, int class, struct sk_buff *skb,
		    const struct itm_ctx *ctx)
{
	struct qos_seen *s = this_cpu_ptr(&qos_seen);
	struct qos_pkt p;

	if (s->skb == skb) {
		s->skb = NULL;
		qos_flows_log(&s->pkt, &s->lookup);
		return;
	}
	/* not what class_func just saw (it does not happen today): anew */
	if (qos_parse(ctx, &p))
		qos_flows_log(&p, NULL);
}

static unsigned int qos_process(enum itm_hook where, int class,
				struct sk_buff *skb, const struct itm_ctx *ctx)
{
	u32 segs = ctx->pkt.segs;

	qos_mark(skb, ctx->state->pf, class);
	/* itm_mod runs callbacks with bottom halves off: a plain per-CPU add */
	if (class == QOS_SHORT)
		__this_cpu_add(qos_stats->short_pkts, segs);
	else
		__this_cpu_add(qos_stats->long_pkts, segs);
	return ITM_ACCEPT;
}

static struct itm_info qos_info = {
	.label = "qos_mod",
	.type = ITM_TYPE_KERNEL,
	.interest = {
		.family = AF_UNSPEC,
		.protocol = IPPROTO_TCP,
	},
	.owner = THIS_MODULE,
	.class_func = qos_class,
	.log_func = qos_log,
	.process_func = qos_process,
};

static struct itm_timer qos_timer;

static void qos_timer_fn(struct itm_timer *t)
{
	qos_flows_gc();
}

/*
 * A namespace's flows go with it: its devices are gone when this runs
 * (subsystems exit after devices), so no packet can bring them back.
 */
static void __net_exit qos_net_exit(struct net *net)
{
	qos_flows_flush_net(net);
}

static struct pernet_operations qos_net_ops = {
	.exit = qos_net_exit,
};

static int __init qos_init(void)
{
	int err;

	err = qos_flows_init();
	if (err)
		return err;
	err = register_pernet_subsys(&qos_net_ops);
	if (err)
		goto err_flows;
	err = sysfs_create_group(&THIS_MODULE->mkobj.kobj, &qos_stat_group);
	if (err)
		goto err_pernet;
	err = itm_register_timer(&qos_timer, qos_timer_fn, QOS_GC_PERIOD);
	if (err)
		goto err_sysfs;
	err = itm_register_hook(ITM_POST_ROUTING, &qos_info);
	if (err)
		goto err_timer;
	pr_info("marking with %s, threshold %u, up to %u flows\n",
		qos_mode_names[qos_mode], qos_threshold, qos_max_flows);
	return 0;

err_timer:
	itm_unregister_timer(&qos_timer);
err_sysfs:
	sysfs_remove_group(&THIS_MODULE->mkobj.kobj, &qos_stat_group);
err_pernet:
	unregister_pernet_subsys(&qos_net_ops);
err_flows:
	qos_flows_exit();
	return err;
}

static void __exit qos_exit(void)
{
	/* no packet and no collector runs once these return */
	itm_unregister_hook(&qos_info);
	itm_unregister_timer(&qos_timer);
	sysfs_remove_group(&THIS_MODULE->mkobj.kobj, &qos_stat_group);
	unregister_pernet_subsys(&qos_net_ops);
	qos_flows_exit();
}

module_init(qos_init);
module_exit(qos_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("itmBench developers");
MODULE_DESCRIPTION("ITM application: size-aware differentiation of TCP flows (TOS/DSCP marking)");
