/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/*
 * sch_rio - RED with In and Out (Clark and Fang, 1998): the netlink options
 * of the "rio" queueing discipline, nested in TCA_OPTIONS of RTM_NEWQDISC.
 * libitm/control/rio.py speaks the same attributes.
 */
#ifndef _UAPI_LINUX_SCH_RIO_H
#define _UAPI_LINUX_SCH_RIO_H

#include <linux/types.h>

#define TC_RIO_KIND	"rio"

/* flags (TCA_RIO_FLAGS) */
#define TC_RIO_ECN	0x1	/* early "drops" of ECN-capable packets mark CE */

/*
 * what a change takes back to its default (TCA_RIO_CLEAR); a request that
 * both sets an option and clears it is refused
 */
#define TC_RIO_CLEAR_DSCP	0x1	/* "in" is the TOS bit 0x10 again */
#define TC_RIO_CLEAR_STAB	0x2	/* no idle damping table; default scell_log */

/* size of TCA_RIO_STAB, the idle-time damping table (as tc red's stab) */
#define TC_RIO_STAB_SIZE	256

/*
 * A change of an existing qdisc keeps what it does not name; TCA_RIO_CLEAR
 * takes TCA_RIO_DSCP and TCA_RIO_STAB back to their defaults.  A dump has
 * every attribute but TCA_RIO_CLEAR; TCA_RIO_DSCP and TCA_RIO_STAB only
 * when the qdisc has them.
 */
enum {
	TCA_RIO_UNSPEC,
	TCA_RIO_LIMIT,		/* u32: packets the FIFO holds */
	TCA_RIO_WLOG,		/* u8: the averages' weight is 2^-wlog */
	TCA_RIO_IN_MIN,		/* u32: "in" RED min threshold, packets */
	TCA_RIO_IN_MAX,		/* u32: "in" RED max threshold, packets */
	TCA_RIO_IN_MAX_P,	/* u32: "in" max probability, times 2^32 */
	TCA_RIO_OUT_MIN,	/* u32: "out" RED min threshold, packets */
	TCA_RIO_OUT_MAX,	/* u32: "out" RED max threshold, packets */
	TCA_RIO_OUT_MAX_P,	/* u32: "out" max probability, times 2^32 */
	TCA_RIO_DSCP,		/* u8: this DSCP is "in"; absent: TOS bit 0x10 */
	TCA_RIO_FLAGS,		/* u32: TC_RIO_ECN */
	TCA_RIO_SCELL_LOG,	/* u8: idle-time cell, 2^scell_log us */
	TCA_RIO_STAB,		/* binary, TC_RIO_STAB_SIZE: idle damping */
	TCA_RIO_CLEAR,		/* u32: TC_RIO_CLEAR_*, in a change */
	__TCA_RIO_MAX,
};

#define TCA_RIO_MAX	(__TCA_RIO_MAX - 1)

/* the qdisc's own statistics (TCA_STATS_APP of its dump) */
struct tc_rio_xstats {
	__u64	in_enqueued;	/* "in" packets accepted into the FIFO */
	__u64	out_enqueued;	/* "out" packets accepted into the FIFO */
	__u64	in_early;	/* "in" packets dropped early (RED probability) */
	__u64	out_early;	/* "out" packets dropped early */
	__u64	in_forced;	/* "in" packets dropped above the max threshold */
	__u64	out_forced;	/* "out" packets dropped above the max threshold */
	__u64	ecn_marked;	/* packets marked CE instead of an early drop */
	__u64	limit_drops;	/* packets dropped because the FIFO was full */
	__u32	qavg_in;	/* current average of "in" packets queued */
	__u32	qavg_all;	/* current average of all packets queued */
	__u32	in_qlen;	/* "in" packets in the FIFO now */
	__u32	qlen;		/* packets in the FIFO now */
};

#endif /* _UAPI_LINUX_SCH_RIO_H */
