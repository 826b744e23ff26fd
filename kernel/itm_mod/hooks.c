// SPDX-License-Identifier: GPL-2.0
/*
 * hooks.c - the packet path: one parse per packet, interest matching
 * over the pre-filtered run list, and the dispatch of the five callbacks.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netfilter.h>
#include <linux/sched/clock.h>
#include <linux/siphash.h>
#include <linux/stddef.h>
#include <linux/tcp.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/tcp.h>
#include "itm_core.h"

/*
 * The re-entry cookie.  When an application's verdict is ITM_QUEUE, the
 * packet leaves through nfnetlink_queue; if user space answers NF_REPEAT,
 * nf_reinject() calls this hook function again with the same packet.  To
 * go on after the queueing application (instead of running the run list
 * from its start), the position is written into the last 16 bytes of
 * skb->cb, which neither IPCB nor IP6CB uses while the packet is at a
 * netfilter hook, together with a tag keyed by a per-namespace secret and
 * the hook.  The cookie is consumed (zeroed) on the next pass through an
 * itm_mod hook, valid or not.  See docs/kernel-api.md for the limits.
 */
#define ITM_COOKIE_MAGIC 0x17e0c0deU
#define ITM_COOKIE_OFF (sizeof_field(struct sk_buff, cb) - sizeof(struct itm_cookie))

/**
 * struct itm_cookie - where to resume a queued packet
 * @magic: %ITM_COOKIE_MAGIC
 * @tag: hsiphash of @priority, @order and the hook under the namespace key
 * @priority: priority of the application that queued the packet
 * @order: registration order of that application
 */
struct itm_cookie {
	u32 magic;
	u32 tag;
	s32 priority;
	u32 order;
};

static struct itm_cookie *itm_cookie(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct inet_skb_parm) > ITM_COOKIE_OFF);
	BUILD_BUG_ON(sizeof(struct inet6_skb_parm) > ITM_COOKIE_OFF);
	return (struct itm_cookie *)(skb->cb + ITM_COOKIE_OFF);
}

static u32 itm_cookie_tag(const struct itm_hookpoint *hp, s32 priority, u32 order)
{
	return hsiphash_3u32((u32)priority, order, hp->where, &hp->in->key);
}

static void itm_cookie_set(struct sk_buff *skb, const struct itm_hookpoint *hp,
			   const struct itm_app *app)
{
	struct itm_cookie *c = itm_cookie(skb);

	c->magic = ITM_COOKIE_MAGIC;
	c->priority = READ_ONCE(app->priority);
	c->order = app->order;
	c->tag = itm_cookie_tag(hp, c->priority, c->order);
}

/* A valid cookie: consume it and say after which application to go on. */
static bool itm_cookie_take(struct sk_buff *skb, const struct itm_hookpoint *hp,
			    s32 *priority, u32 *order)
{
	struct itm_cookie *c = itm_cookie(skb);
	bool valid;

	if (likely(c->magic != ITM_COOKIE_MAGIC))
		return false;
	valid = c->tag == itm_cookie_tag(hp, c->priority, c->order);
	*priority = c->priority;
	*order = c->order;
	memset(c, 0, sizeof(*c));
	return valid;
}

/* The index of the first application after (priority, order). */
static unsigned int itm_resume_index(struct itm_app * const *list, unsigned int n,
				     s32 priority, u32 order)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		const struct itm_app *app = READ_ONCE(list[i]);
		s32 p = READ_ONCE(app->priority);

		if (p > priority || (p == priority && app->order > order))
			break;
	}
	return i;
}

static bool account_time = true;
module_param(account_time, bool, 0644);
MODULE_PARM_DESC(account_time,
		 "estimate the time each application spends (one matched packet in 64 is timed)");

/* Does a transport protocol carry ports?  TCP, UDP, UDP-Lite, SCTP, DCCP */
static __always_inline bool itm_proto_has_ports(u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case IPPROTO_DCCP:
		return true;
	}
	return false;
}

/*
 * skb_header_pointer() with its common case (the header in the linear
 * part) inline whatever the compiler's inlining choices (-Os kernels).
 */
static __always_inline const void *itm_header(const struct sk_buff *skb,
					      int off, int len, void *buf)
{
	if (likely(off >= 0 && len <= (int)skb_headlen(skb) - off))
		return skb->data + off;
	return skb_header_pointer(skb, off, len, buf);
}

/*
 * The network header: family, protocol, addresses, transport offset.
 * Every field of @p is written (the caller's copy is not zeroed first).
 * The header buffers are used only when the header is not in the linear
 * part: they need no zeroing on every packet.
 */
static __always_inline bool itm_parse_net(const struct sk_buff *skb, u8 pf,
					  struct itm_pkt *p)
{
	int nhoff = skb_network_offset(skb);

	p->nhoff = nhoff;
	p->thoff = 0;
	p->sport = 0;
	p->dport = 0;
	p->has_ports = false;
	p->transport = false;
	p->fragment = false;
	p->tcp_flags = 0;
	p->segs = skb_is_gso(skb) ? max_t(u32, skb_shinfo(skb)->gso_segs, 1) : 1;
	if (pf == NFPROTO_IPV4) {
		struct iphdr _iph __uninitialized;
		const struct iphdr *iph;

		iph = itm_header(skb, nhoff, sizeof(_iph), &_iph);
		if (!iph || iph->ihl < 5)
			return false;
		p->family = AF_INET;
		p->proto = iph->protocol;
		ipv6_addr_set(&p->saddr, iph->saddr, 0, 0, 0);
		ipv6_addr_set(&p->daddr, iph->daddr, 0, 0, 0);
		p->thoff = nhoff + iph->ihl * 4;
		if (unlikely(iph->frag_off & htons(IP_MF | IP_OFFSET))) {
			p->fragment = true;
			if (iph->frag_off & htons(IP_OFFSET))
				return true;
		}
	} else {
		struct ipv6hdr _ip6h __uninitialized;
		const struct ipv6hdr *ip6h;
		__be16 frag_off = 0;
		u8 nexthdr;
		int thoff;

		ip6h = itm_header(skb, nhoff, sizeof(_ip6h), &_ip6h);
		if (!ip6h)
			return false;
		p->family = AF_INET6;
		p->saddr = ip6h->saddr;
		p->daddr = ip6h->daddr;
		nexthdr = ip6h->nexthdr;
		thoff = ipv6_skip_exthdr(skb, nhoff + sizeof(_ip6h), &nexthdr,
					 &frag_off);
		p->proto = nexthdr;
		if (thoff < 0)
			return true;
		p->thoff = thoff;
		if (unlikely(frag_off)) {
			p->fragment = true;
			if (ntohs(frag_off) & ~0x7)
				return true;
		}
	}
	p->transport = true;
	return true;
}

/* The ports (and TCP's flags) of a packet whose transport header is there. */
static __always_inline void itm_parse_ports(const struct sk_buff *skb,
					    struct itm_pkt *p)
{
	if (!p->transport || !itm_proto_has_ports(p->proto))
		return;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr _th __uninitialized;
		const struct tcphdr *th;

		th = itm_header(skb, p->thoff, sizeof(_th), &_th);
		if (!th)
			return;
		p->sport = ntohs(th->source);
		p->dport = ntohs(th->dest);
		p->tcp_flags = tcp_flag_byte(th);
	} else {
		__be16 _ports[2] __uninitialized;
		const __be16 *ports;

		ports = itm_header(skb, p->thoff, sizeof(_ports), _ports);
		if (!ports)
			return;
		p->sport = ntohs(ports[0]);
		p->dport = ntohs(ports[1]);
	}
	p->has_ports = true;
}

static bool itm_parse(const struct sk_buff *skb, u8 pf, struct itm_pkt *p)
{
	if (!itm_parse_net(skb, pf, p))
		return false;
	itm_parse_ports(skb, p);
	return true;
}

static bool itm_addr_match(const struct itm_pkt *p, const struct in6_addr *addr,
			   const struct in6_addr *want,
			   const struct in6_addr *mask)
{
	int i;

	if (p->family == AF_INET)
		return (addr->s6_addr32[0] & mask->s6_addr32[0]) == want->s6_addr32[0];
	for (i = 0; i < 4; i++)
		if ((addr->s6_addr32[i] & mask->s6_addr32[i]) != want->s6_addr32[i])
			return false;
	return true;
}

/* The run list already matched the family and the protocol's class. */
static bool itm_match(const struct itm_app *app, const struct itm_pkt *p)
{
	const struct itm_interest *in = &app->interest;

	if (in->protocol && in->protocol != p->proto)
		return false;
	if (app->match_addrs &&
	    (!itm_addr_match(p, &p->saddr, &in->saddr, &in->smask) ||
	     !itm_addr_match(p, &p->daddr, &in->daddr, &in->dmask)))
		return false;
	if (app->match_ports) {
		if (!p->has_ports)
			return false;
		if (in->sport_max &&
		    (p->sport < in->sport_min || p->sport > in->sport_max))
			return false;
		if (in->dport_max &&
		    (p->dport < in->dport_min || p->dport > in->dport_max))
			return false;
	}
	return true;
}

static bool itm_mask_zero(const struct in6_addr *mask, int from)
{
	int i;

	for (i = from; i < 4; i++)
		if (mask->s6_addr32[i])
			return false;
	return true;
}

/**
 * itm_interest_valid() - check an interest before it is registered
 * @in: the interest
 *
 * Return: true when the family is known, the masks fit the family and
 * the port ranges are ordered.
 */
bool itm_interest_valid(const struct itm_interest *in)
{
	switch (in->family) {
	case AF_UNSPEC:
		if (!itm_mask_zero(&in->smask, 0) || !itm_mask_zero(&in->dmask, 0))
			return false;
		break;
	case AF_INET:
		if (!itm_mask_zero(&in->smask, 1) || !itm_mask_zero(&in->dmask, 1))
			return false;
		break;
	case AF_INET6:
		break;
	default:
		return false;
	}
	if (in->sport_min > in->sport_max || in->dport_min > in->dport_max)
		return false;
	if ((in->sport_max || in->dport_max) && in->protocol &&
	    !itm_proto_has_ports(in->protocol))
		return false;
	return true;
}

/*
 * Run the five callbacks of one application and count the packet; returns
 * an enum itm_verdict.  No softirq runs on this CPU meanwhile (see
 * itm_nf_hook()): nothing else writes this CPU's counters.
 */
static unsigned int itm_run_app(const struct itm_app *app, struct sk_buff *skb,
				const struct itm_ctx *ctx)
{
	struct itm_app_stats *st = this_cpu_ptr(app->stats);
	enum itm_hook where = ctx->where;
	unsigned int len = skb->len;	/* a stolen skb may be gone after */
	unsigned int verdict = ITM_ACCEPT;
	bool timed = false;
	u64 start = 0;
	int class = 0;

	if (READ_ONCE(account_time) && !(++st->tick & (ITM_TIME_SAMPLE - 1))) {
		timed = true;
		start = local_clock();
	}
	if (app->class_func)
		class = app->class_func(where, skb, ctx);
	if (app->log_func)
		app->log_func(where, class, skb, ctx);
	if (class && app->process_func) {
		verdict = app->process_func(where, class, skb, ctx);
		if (unlikely(verdict >= ITM_NUM_VERDICTS)) {
			pr_warn_ratelimited("%s: process_func returned %u, accepting\n",
					    app->info->label, verdict);
			verdict = ITM_ACCEPT;
		}
	}
	/* A stolen skb is the application's now: no more callbacks on it. */
	if (verdict != ITM_STOLEN) {
		if (app->update_func)
			app->update_func(where, class, skb, ctx);
		if (app->control_func)
			app->control_func(where, class, skb, ctx);
	}
	u64_stats_update_begin(&st->syncp);
	u64_stats_add(&st->bytes, len);
	if (class)
		u64_stats_inc(&st->classified);
	u64_stats_inc(&st->verdict[verdict]);
	if (timed)
		u64_stats_add(&st->time_ns,
			      (local_clock() - start) * ITM_TIME_SAMPLE);
	u64_stats_update_end(&st->syncp);
	return verdict;
}

/* Not matched: the packet reached the application but is not for it. */
static void itm_count_missed(const struct itm_app *app)
{
	struct itm_app_stats *st = this_cpu_ptr(app->stats);

	u64_stats_update_begin(&st->syncp);
	u64_stats_inc(&st->missed);
	u64_stats_update_end(&st->syncp);
}

static int itm_run_class(u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return ITM_RUN_TCP;
	case IPPROTO_UDP:
		return ITM_RUN_UDP;
	}
	return ITM_RUN_OTHER;
}

/*
 * The queue of a packet for an application with several: a keyed hash of
 * the flow, the same for both directions (the two ends ordered), so that
 * one worker process sees the whole of a flow.  A fragment has no ports
 * to read: it goes by its addresses and protocol.
 */
static u16 itm_queue_of(const struct itm_hookpoint *hp,
			const struct itm_app *app, const struct itm_pkt *p)
{
	u32 a, b, ports = 0;

	if (likely(app->queue_count <= 1))
		return app->queue_num;
	a = (__force u32)(p->saddr.s6_addr32[0] ^ p->saddr.s6_addr32[1] ^
			  p->saddr.s6_addr32[2] ^ p->saddr.s6_addr32[3]);
	b = (__force u32)(p->daddr.s6_addr32[0] ^ p->daddr.s6_addr32[1] ^
			  p->daddr.s6_addr32[2] ^ p->daddr.s6_addr32[3]);
	if (p->has_ports && !p->fragment)
		ports = p->sport < p->dport ? (u32)p->sport << 16 | p->dport :
					      (u32)p->dport << 16 | p->sport;
	if (a > b)
		swap(a, b);
	return app->queue_num +
	       reciprocal_scale(hsiphash_4u32(a, b, ports, p->proto, &hp->in->key),
				app->queue_count);
}

/*
 * Walk the run list from index @i on.  No softirq runs on this CPU until
 * it returns (see itm_nf_hook()): the per-CPU counters are written
 * without further protection.
 */
static unsigned int itm_walk(const struct itm_hookpoint *hp,
			     struct sk_buff *skb, struct itm_ctx *ctx,
			     struct itm_app * const *list, unsigned int i,
			     unsigned int n)
{
	for (; i < n; i++) {
		struct itm_app *app = READ_ONCE(list[i]);

		if (!READ_ONCE(app->enabled))
			continue;
		if (!itm_match(app, &ctx->pkt)) {
			itm_count_missed(app);
			continue;
		}
		ctx->info = app->info;
		switch (itm_run_app(app, skb, ctx)) {
		case ITM_DROP:
			return NF_DROP;
		case ITM_STOLEN:
			return NF_STOLEN;
		case ITM_QUEUE:
			itm_cookie_set(skb, hp, app);
			return NF_QUEUE_NR(itm_queue_of(hp, app, &ctx->pkt)) |
			       NF_VERDICT_FLAG_QUEUE_BYPASS;
		}
		/* it said it may have rewritten addresses, ports or protocol */
		if (unlikely(app->rewrites_headers) &&
		    !itm_parse(skb, ctx->state->pf, &ctx->pkt))
			return NF_ACCEPT;
	}
	return NF_ACCEPT;
}

/**
 * itm_nf_hook() - the netfilter hook of one (namespace, family, hook)
 * @priv: the &struct itm_hookpoint
 * @skb: the packet
 * @state: netfilter's hook state
 *
 * Registered only while the hook point's run list is not empty.
 *
 * Return: a netfilter verdict.
 */
unsigned int itm_nf_hook(void *priv, struct sk_buff *skb,
			 const struct nf_hook_state *state)
{
	const struct itm_hookpoint *hp = priv;
	struct itm_app * const *list;
	const struct itm_run *run;
	/* every field is written before use: no zeroing per packet */
	struct itm_ctx ctx __uninitialized;
	unsigned int i, n, verdict;
	bool resume;
	s32 priority;
	u32 order;

	resume = itm_cookie_take(skb, hp, &priority, &order);
	/* netfilter calls hooks under rcu_read_lock() */
	run = rcu_dereference(hp->run);
	if (unlikely(!run) || unlikely(!itm_parse_net(skb, state->pf, &ctx.pkt)))
		return NF_ACCEPT;
	i = itm_run_class(ctx.pkt.proto);
	list = run->list[i];
	n = run->n[i];
	if (!n)
		return NF_ACCEPT;
	itm_parse_ports(skb, &ctx.pkt);
	ctx.where = hp->where;
	ctx.state = state;
	/* back from user space (NF_REPEAT): go on after the queueing app */
	i = unlikely(resume) ? itm_resume_index(list, n, priority, order) : 0;
	/*
	 * Per-CPU counters need no softirq to run in the middle of an update.
	 * In a softirq (input, forward), with BH or interrupts off, none can.
	 * In process context (LOCAL_OUT, POST_ROUTING of a local packet) one
	 * could: turn them off, as ipt_do_table() does.
	 */
	if (irq_count() || irqs_disabled())
		return itm_walk(hp, skb, &ctx, list, i, n);
	local_bh_disable();
	verdict = itm_walk(hp, skb, &ctx, list, i, n);
	local_bh_enable();
	return verdict;
}
