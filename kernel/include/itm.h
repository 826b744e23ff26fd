/* SPDX-License-Identifier: GPL-2.0 */
/*
 * itm.h - the public kernel API of itmBench's itm_mod.
 *
 * An Internet Traffic Manager application registers a struct itm_info at
 * one of five hook points and receives, for every packet that matches its
 * interest, five callbacks in this order:
 *
 *   class_func -> log_func -> process_func -> update_func -> control_func
 *
 * class_func returns the packet's class; class 0 means "not classified"
 * and process_func is then not called.  process_func returns the verdict.
 * Any callback may be NULL.  Applications at one hook run in priority
 * order (lower value first, ties in registration order) and each can be
 * enabled or disabled at run time through itm_mod's generic netlink family.
 *
 * See docs/kernel-api.md for the port of the 2004 itmBench API.
 */
#ifndef _ITM_H
#define _ITM_H

#include <linux/build_bug.h>
#include <linux/types.h>
#include <linux/in6.h>
#include <linux/skbuff.h>
#include <linux/timer.h>
#include <linux/netfilter.h>
#include <uapi/linux/itm_netlink.h>

/**
 * enum itm_hook - where an application sees packets
 * @ITM_PRE_ROUTING: every incoming packet, before routing
 * @ITM_IP_IN: packets for this host (local in)
 * @ITM_IP_FORWARD: packets routed through this host
 * @ITM_IP_OUT: packets sent by this host (local out)
 * @ITM_POST_ROUTING: every outgoing packet, after routing
 * @ITM_NUM_HOOKS: number of hook points
 * @PRE_ROUTE: the paper's name of %ITM_PRE_ROUTING
 * @IP_IN: the paper's name of %ITM_IP_IN
 * @IP_FORWARD: the paper's name of %ITM_IP_FORWARD
 * @IP_OUT: the paper's name of %ITM_IP_OUT
 * @IP_POST_ROUTE: the paper's name of %ITM_POST_ROUTING
 *
 * The values are the uapi ITM_HOOK_* values shared with user space.
 */
enum itm_hook {
	ITM_PRE_ROUTING = ITM_HOOK_PRE_ROUTING,
	ITM_IP_IN = ITM_HOOK_IP_IN,
	ITM_IP_FORWARD = ITM_HOOK_IP_FORWARD,
	ITM_IP_OUT = ITM_HOOK_IP_OUT,
	ITM_POST_ROUTING = ITM_HOOK_POST_ROUTING,
	ITM_NUM_HOOKS,

	/* the 2004 paper's names of the same five points */
	PRE_ROUTE = ITM_PRE_ROUTING,
	IP_IN = ITM_IP_IN,
	IP_FORWARD = ITM_IP_FORWARD,
	IP_OUT = ITM_IP_OUT,
	IP_POST_ROUTE = ITM_POST_ROUTING,
};

/**
 * enum itm_verdict - what process_func decides for a packet
 * @ITM_DROP: drop the packet; later applications do not see it
 * @ITM_ACCEPT: pass the packet on to the next application, then the stack
 * @ITM_STOLEN: the application took ownership of the skb (it must free or
 *	reinject it); update_func and control_func are not called
 * @ITM_QUEUE: hand the packet to the user-space application that owns
 *	itm_info->queue_num (used by itm_queue; fail-open when nobody listens).
 *	When user space answers NF_REPEAT, the packet goes on with the next
 *	application after this one (see docs/kernel-api.md, "itm_queue").
 *
 * The values are netfilter's (NF_DROP, NF_ACCEPT, NF_STOLEN, NF_QUEUE), so
 * process_func may return those; any other value is logged and accepted.
 */
enum itm_verdict {
	ITM_DROP = ITM_VERDICT_DROP,
	ITM_ACCEPT = ITM_VERDICT_ACCEPT,
	ITM_STOLEN = ITM_VERDICT_STOLEN,
	ITM_QUEUE = ITM_VERDICT_QUEUE,
};

/* The values are netfilter's: a paper port's "return NF_ACCEPT;" accepts. */
static_assert(ITM_DROP == NF_DROP);
static_assert(ITM_ACCEPT == NF_ACCEPT);
static_assert(ITM_STOLEN == NF_STOLEN);
static_assert(ITM_QUEUE == NF_QUEUE);

/**
 * struct itm_interest - which packets an application wants
 * @family: %AF_INET, %AF_INET6, or %AF_UNSPEC for both (then the address
 *	fields must be zero)
 * @protocol: IP protocol number (IPPROTO_*), or 0 for any
 * @saddr: source address, compared under @smask
 * @smask: source mask (all zero: any source)
 * @daddr: destination address, compared under @dmask
 * @dmask: destination mask (all zero: any destination)
 * @sport_min: lowest source port (host order); with @sport_max 0..0 = any
 * @sport_max: highest source port (host order)
 * @dport_min: lowest destination port (host order); 0..0 = any
 * @dport_max: highest destination port (host order)
 *
 * IPv4 addresses live in the first word of the in6_addr (s6_addr32[0]).
 * Port ranges only make sense with TCP, UDP, UDP-Lite, SCTP or DCCP;
 * a packet without ports (other protocols, later fragments) never matches
 * an interest that restricts ports.
 */
struct itm_interest {
	u8 family;
	u8 protocol;
	struct in6_addr saddr;
	struct in6_addr smask;
	struct in6_addr daddr;
	struct in6_addr dmask;
	u16 sport_min;
	u16 sport_max;
	u16 dport_min;
	u16 dport_max;
};

struct itm_info;

/**
 * struct itm_pkt - a packet's headers as itm_mod parsed them, once per hook
 * @saddr: source address (IPv4 in the first word, the rest zero)
 * @daddr: destination address
 * @nhoff: offset of the network header from skb->data
 * @thoff: offset of the transport header from skb->data; valid with
 *	@transport
 * @segs: wire packets the buffer stands for: skb_shinfo(skb)->gso_segs of
 *	a GSO buffer (at least 1), else 1
 * @sport: source port, host order; valid with @has_ports
 * @dport: destination port, host order; valid with @has_ports
 * @family: %AF_INET or %AF_INET6
 * @proto: transport protocol (IPPROTO_*; for IPv6 after the extension
 *	headers)
 * @tcp_flags: the flags byte of the TCP header (TCPHDR_FIN, TCPHDR_SYN,
 *	...) when @proto is TCP and @has_ports, else 0
 * @fragment: the packet is a fragment, the first or a later one
 * @transport: the packet holds its transport header at @thoff (not a
 *	later fragment, extension headers readable)
 * @has_ports: @sport and @dport were read (TCP, UDP, UDP-Lite, SCTP,
 *	DCCP with a readable header)
 *
 * itm_mod reads the headers once when the packet reaches the hook and
 * hands the result to every application through &struct itm_ctx.  An
 * application whose callbacks change addresses, ports or the protocol
 * sets &itm_info.rewrites_headers; itm_mod then parses the packet again
 * before the next application.  Changing the TOS/traffic class or the
 * payload needs no new parse.
 */
struct itm_pkt {
	struct in6_addr saddr;
	struct in6_addr daddr;
	int nhoff;
	int thoff;
	u32 segs;
	u16 sport;
	u16 dport;
	u8 family;
	u8 proto;
	u8 tcp_flags;
	bool fragment;
	bool transport;
	bool has_ports;
};

/**
 * struct itm_ctx - the context of one callback
 * @info: the application's registration (use container_of() to reach
 *	the application's own state)
 * @where: the hook point the packet is at
 * @state: netfilter's hook state (network namespace, devices, okfn)
 * @pkt: the packet's headers, parsed once by itm_mod
 */
struct itm_ctx {
	struct itm_info *info;
	enum itm_hook where;
	const struct nf_hook_state *state;
	struct itm_pkt pkt;
};

/* The callbacks' types: class_func, process_func, and the other three. */
typedef int (*itm_class_func_t)(enum itm_hook where, struct sk_buff *skb,
				const struct itm_ctx *ctx);
typedef unsigned int (*itm_process_func_t)(enum itm_hook where, int class,
					   struct sk_buff *skb,
					   const struct itm_ctx *ctx);
typedef void (*itm_note_func_t)(enum itm_hook where, int class,
				struct sk_buff *skb, const struct itm_ctx *ctx);

/**
 * struct itm_info - an application's registration with itm_mod
 * @label: unique name shown by itmtool (at most %ITM_LABEL_MAX - 1 chars);
 *	from a string at run time: strscpy(info.label, "name", ITM_LABEL_MAX)
 * @type: %ITM_TYPE_KERNEL or %ITM_TYPE_USER
 * @interest: the packets the application wants
 * @pid: owning process for user-space applications, 0 for kernel ones
 * @hook: for the application's own use; itm_mod runs it at the @where
 *	given to itm_register_hook() and never writes this structure
 * @priority: run order at the hook, lower first; ties run in
 *	registration order.  Read once, by itm_register_hook(); later changes
 *	(itmtool prio) live in itm_mod and are not written back here
 * @queue_num: nfqueue number used with %ITM_QUEUE (user applications)
 * @queue_count: how many queues, from @queue_num on, %ITM_QUEUE spreads
 *	the packets over (0 or 1: @queue_num alone).  Both directions of a
 *	flow (addresses, ports, protocol) go to the same queue; a fragment
 *	goes by its addresses and protocol alone.  itm_queue sets it for an
 *	application run by several worker processes.
 * @netns: the only network namespace whose packets the application sees,
 *	or NULL for every namespace where itm_mod's hooks run.  itm_queue
 *	sets it to the namespace of the registering socket (nfqueue
 *	instances are per namespace).  The namespace must outlive the
 *	registration: unregister the application before it goes away.
 * @owner: the module providing the callbacks (THIS_MODULE)
 * @rewrites_headers: the callbacks may change the packet's addresses,
 *	ports or protocol: itm_mod parses the headers again after this
 *	application (see &struct itm_pkt)
 * @class_func: classify; return the class, 0 for "not classified"
 * @log_func: log data, update class structures
 * @process_func: act on the packet (only when the class is not 0);
 *	returns an enum itm_verdict
 * @update_func: class update
 * @control_func: controller update
 *
 * Every callback gets the paper's arguments in the paper's order - @where
 * first, then the class (all but class_func), then the packet - and the
 * context last.  A NULL callback costs nothing.  itm_mod reads the
 * structure at registration and never writes it: it keeps its own copy
 * of the interest, the priority and the callbacks.
 *
 * The callbacks run in softirq or process context, under RCU, and no
 * softirq runs on their CPU meanwhile (in process context itm_mod turns
 * bottom halves off): they must not sleep.
 * They may modify the packet after making it writable (for example with
 * skb_ensure_writable()).
 */
struct itm_info {
	char label[ITM_LABEL_MAX];
	u8 type;
	struct itm_interest interest;
	pid_t pid;
	enum itm_hook hook;
	s32 priority;
	u16 queue_num;
	u16 queue_count;
	struct net *netns;
	struct module *owner;
	bool rewrites_headers;

	itm_class_func_t class_func;
	itm_note_func_t log_func;
	itm_process_func_t process_func;
	itm_note_func_t update_func;
	itm_note_func_t control_func;
};

int itm_register_hook(enum itm_hook where, struct itm_info *info);
void itm_unregister_hook(struct itm_info *info);
void itm_unregister_hooks(struct itm_info * const *infos, unsigned int n);

/**
 * struct itm_timer - a periodic event for an application
 * @func: called every @period jiffies in softirq context; must not sleep
 * @period: the period in jiffies (at least 1)
 * @timer: the underlying kernel timer; do not touch
 * @stopping: set while itm_unregister_timer() runs; do not touch
 *
 * Embed it in the application's state and reach that with container_of()
 * from @func: the timer carries its own data argument.
 */
struct itm_timer {
	void (*func)(struct itm_timer *t);
	unsigned long period;
	struct timer_list timer;
	bool stopping;
};

int itm_register_timer(struct itm_timer *t,
		       void (*func)(struct itm_timer *t),
		       unsigned long timeout);
void itm_unregister_timer(struct itm_timer *t);

#endif /* _ITM_H */
