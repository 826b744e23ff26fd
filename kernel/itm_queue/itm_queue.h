/* SPDX-License-Identifier: GPL-2.0 */
/*
 * itm_queue.h - itm_queue's internal state, shared by its files.
 */
#ifndef _ITM_QUEUE_H
#define _ITM_QUEUE_H

#include <linux/list.h>
#include <net/net_namespace.h>
#include <net/netlink.h>
#include "itm.h"
#include <uapi/linux/itm_queue_netlink.h>

/**
 * struct itmq_reg - one user-space application registered through itm_queue
 * @info: its registration with itm_mod (type user, pid, queue number,
 *	network namespace)
 * @node: entry in the list of registrations, under itmq_lock
 * @portid: netlink port of the socket that owns the registration
 * @loggers: for an observer, the NFPROTO_* families whose nfnetlink_log
 *	logger it holds (bit 0: IPv4, bit 1: IPv6)
 */
struct itmq_reg {
	struct itm_info info;
	struct list_head node;
	u32 portid;
	u8 loggers;
};

/**
 * struct itmq_request - what a register command asks for
 * @label: the application's label
 * @hook: the hook point
 * @priority: run order at the hook
 * @interest: the packets it wants
 * @queue_count: how many consecutive queues (one per worker process)
 * @observer: the application only watches: it gets copies through
 *	nfnetlink_log, group queue number, and the packets go on at once
 */
struct itmq_request {
	const char *label;
	enum itm_hook hook;
	s32 priority;
	struct itm_interest interest;
	u16 queue_count;
	bool observer;
};

/* the most queues one registration takes (libitm's most workers) */
#define ITMQ_MAX_QUEUES 64

/* main.c */
int itmq_register(struct net *net, u32 portid, const struct itmq_request *req,
		  u16 *queue_num, pid_t *pid, struct netlink_ext_ack *extack);
int itmq_unregister(struct net *net, u32 portid, const char *label);

/* netlink.c */
int itmq_genl_init(void);
void itmq_genl_exit(void);

#endif /* _ITM_QUEUE_H */
