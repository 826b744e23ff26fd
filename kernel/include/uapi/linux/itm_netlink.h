/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/* Do not edit directly: generated from spec/itm.yaml by tools/itmtool/nlgen.py */

#ifndef _UAPI_LINUX_ITM_NETLINK_H
#define _UAPI_LINUX_ITM_NETLINK_H

#define ITM_FAMILY_NAME	"itm"
#define ITM_FAMILY_VERSION	1

/* size of a label including its terminating NUL */
#define ITM_LABEL_MAX	32

/* hook points, as in the 2004 paper */
enum {
	ITM_HOOK_PRE_ROUTING,
	ITM_HOOK_IP_IN,
	ITM_HOOK_IP_FORWARD,
	ITM_HOOK_IP_OUT,
	ITM_HOOK_POST_ROUTING,
};

/* netfilter's values (NF_DROP 0, NF_ACCEPT 1, NF_STOLEN 2, NF_QUEUE 3) */
enum {
	ITM_VERDICT_DROP = 0,
	ITM_VERDICT_ACCEPT = 1,
	ITM_VERDICT_STOLEN = 2,
	ITM_VERDICT_QUEUE = 3,
};

/* who provides the callbacks */
enum {
	ITM_TYPE_KERNEL,
	ITM_TYPE_USER,
};

/* the family's top-level attributes (an application, or a namespace's state) */
enum {
	ITM_A_UNSPEC,
	ITM_A_LABEL,
	ITM_A_TYPE,
	ITM_A_HOOK,
	ITM_A_PRIORITY,
	ITM_A_ENABLED,
	ITM_A_PID,
	ITM_A_OWNER,
	ITM_A_QUEUE_NUM,
	ITM_A_ORDER,
	ITM_A_INTEREST,
	ITM_A_STATS,
	ITM_A_PAD,
	ITM_A_NETNS_ACTIVE,
	ITM_A_QUEUE_COUNT,
	ITM_A_NETNS_HOOKS,

	__ITM_A_MAX,
	ITM_A_MAX = (__ITM_A_MAX - 1)
};

/* which packets an application wants */
enum {
	ITM_A_INTEREST_UNSPEC,
	ITM_A_INTEREST_FAMILY,
	ITM_A_INTEREST_PROTOCOL,
	ITM_A_INTEREST_SADDR,
	ITM_A_INTEREST_SMASK,
	ITM_A_INTEREST_DADDR,
	ITM_A_INTEREST_DMASK,
	ITM_A_INTEREST_SPORT_MIN,
	ITM_A_INTEREST_SPORT_MAX,
	ITM_A_INTEREST_DPORT_MIN,
	ITM_A_INTEREST_DPORT_MAX,

	__ITM_A_INTEREST_MAX,
	ITM_A_INTEREST_MAX = (__ITM_A_INTEREST_MAX - 1)
};

/* per-application counters, summed over CPUs */
enum {
	ITM_A_STATS_UNSPEC,
	ITM_A_STATS_SEEN,
	ITM_A_STATS_MATCHED,
	ITM_A_STATS_CLASSIFIED,
	ITM_A_STATS_ACCEPT,
	ITM_A_STATS_DROP,
	ITM_A_STATS_STOLEN,
	ITM_A_STATS_QUEUE,
	ITM_A_STATS_BYTES,
	ITM_A_STATS_TIME_NS,
	ITM_A_STATS_PAD,

	__ITM_A_STATS_MAX,
	ITM_A_STATS_MAX = (__ITM_A_STATS_MAX - 1)
};

enum {
	ITM_CMD_UNSPEC,
	ITM_CMD_APP_GET,
	ITM_CMD_APP_SET,
	ITM_CMD_NETNS_GET,
	ITM_CMD_NETNS_SET,

	__ITM_CMD_MAX,
	ITM_CMD_MAX = (__ITM_CMD_MAX - 1)
};

#endif /* _UAPI_LINUX_ITM_NETLINK_H */
