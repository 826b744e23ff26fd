/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qos.h - qos_mod's internal state, shared by its files.
 *
 * qos_mod is the paper's size-aware differentiation: it counts the packets
 * of every TCP flow (one entry per direction) and marks the packets of a
 * flow SHORT while it has sent at most `threshold` packets (or when the
 * packet carries FIN), LONG after that.
 */
#ifndef _QOS_H
#define _QOS_H

#include <linux/in6.h>
#include <linux/percpu.h>
#include <linux/skbuff.h>
#include <linux/types.h>
#include "itm.h"

/* The classes class_func returns (0 is "not classified"). */
#define QOS_SHORT 1
#define QOS_LONG 2

/* How packets are marked. */
enum qos_mode {
	QOS_MODE_TOS,
	QOS_MODE_DSCP,
};

/**
 * struct qos_key - one direction of one flow in one network namespace
 * @net: the namespace; compared, never dereferenced
 * @saddr: source address (IPv4 in the first word, the rest zero)
 * @daddr: destination address
 * @sport: source port
 * @dport: destination port
 * @family: AF_INET or AF_INET6
 * @proto: IPPROTO_TCP
 * @pad: zero
 *
 * Keys are compared and hashed as memory: every byte, @pad included, is set
 * (a compound literal zeroes the fields it does not name).
 */
struct qos_key {
	const void *net;
	struct in6_addr saddr;
	struct in6_addr daddr;
	__be16 sport;
	__be16 dport;
	u8 family;
	u8 proto;
	u8 pad[2];
};

/**
 * struct qos_pkt - what qos_mod reads of a packet
 * @key: the flow the packet belongs to
 * @segs: wire packets it stands for (gso_segs of a GSO buffer, else 1)
 * @fin: the TCP header has FIN
 * @rst: the TCP header has RST
 */
struct qos_pkt {
	struct qos_key key;
	u32 segs;
	bool fin;
	bool rst;
};

struct qos_bucket;
struct qos_flow;

/**
 * struct qos_lookup - where a packet's flow was looked for, for its count
 * @bucket: the flow's bucket
 * @flow: the flow's entry, or NULL when it was not in the table
 *
 * Filled in by qos_flows_classify() and handed to qos_flows_log() for the
 * same packet, so that the flow is hashed and looked up once per packet.
 * Valid only under the RCU read side in which it was filled in.
 */
struct qos_lookup {
	struct qos_bucket *bucket;
	struct qos_flow *flow;
};

/**
 * struct qos_stats - per-CPU counters
 * @created: flows entered in the table
 * @short_pkts: wire packets marked SHORT
 * @long_pkts: wire packets marked LONG
 * @table_full: packets of an unseen flow not entered because the table
 *	was full (passed unmarked)
 * @collected: flows removed by the timer (idle, or closed by FIN/RST)
 */
struct qos_stats {
	u64 created;
	u64 short_pkts;
	u64 long_pkts;
	u64 table_full;
	u64 collected;
};

/* main.c: parameters and counters */
extern unsigned int qos_threshold;
extern unsigned int qos_max_flows;
extern unsigned int qos_idle_timeout;
extern unsigned int qos_short_dscp;
extern unsigned int qos_long_dscp;
extern bool qos_mark_first;
extern bool qos_figures;
extern enum qos_mode qos_mode;
extern struct qos_stats __percpu *qos_stats;

/* flows.c: the flow table */
int qos_flows_init(void);
void qos_flows_exit(void);
void qos_flows_flush_net(const struct net *net);
unsigned int qos_flows_count(void);
int qos_flows_classify(const struct qos_pkt *p, struct qos_lookup *l);
void qos_flows_log(const struct qos_pkt *p, const struct qos_lookup *l);
void qos_flows_gc(void);

/* mark.c: packets */
bool qos_parse(const struct itm_ctx *ctx, struct qos_pkt *p);
void qos_mark(struct sk_buff *skb, u8 pf, int class);

#endif /* _QOS_H */
