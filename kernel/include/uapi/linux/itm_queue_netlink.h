/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/* Do not edit directly: generated from spec/itm_queue.yaml by tools/itmtool/nlgen.py */

#ifndef _UAPI_LINUX_ITM_QUEUE_NETLINK_H
#define _UAPI_LINUX_ITM_QUEUE_NETLINK_H

#define ITMQ_FAMILY_NAME	"itm_queue"
#define ITMQ_FAMILY_VERSION	1

/* first queue number itm_queue assigns by default (0x7000) */
#define ITMQ_QUEUE_DEFAULT_BASE	28672

/* the family's top-level attributes (one registration) */
enum {
	ITMQ_A_UNSPEC,
	ITMQ_A_LABEL,
	ITMQ_A_HOOK,
	ITMQ_A_PRIORITY,
	ITMQ_A_INTEREST,
	ITMQ_A_QUEUE_NUM,
	ITMQ_A_PID,
	ITMQ_A_QUEUE_COUNT,
	ITMQ_A_OBSERVER,

	__ITMQ_A_MAX,
	ITMQ_A_MAX = (__ITMQ_A_MAX - 1)
};

/* which packets the application wants (the layout of itm's interest) */
enum {
	ITMQ_A_INTEREST_UNSPEC,
	ITMQ_A_INTEREST_FAMILY,
	ITMQ_A_INTEREST_PROTOCOL,
	ITMQ_A_INTEREST_SADDR,
	ITMQ_A_INTEREST_SMASK,
	ITMQ_A_INTEREST_DADDR,
	ITMQ_A_INTEREST_DMASK,
	ITMQ_A_INTEREST_SPORT_MIN,
	ITMQ_A_INTEREST_SPORT_MAX,
	ITMQ_A_INTEREST_DPORT_MIN,
	ITMQ_A_INTEREST_DPORT_MAX,

	__ITMQ_A_INTEREST_MAX,
	ITMQ_A_INTEREST_MAX = (__ITMQ_A_INTEREST_MAX - 1)
};

enum {
	ITMQ_CMD_UNSPEC,
	ITMQ_CMD_REGISTER,
	ITMQ_CMD_UNREGISTER,

	__ITMQ_CMD_MAX,
	ITMQ_CMD_MAX = (__ITMQ_CMD_MAX - 1)
};

#endif /* _UAPI_LINUX_ITM_QUEUE_NETLINK_H */
