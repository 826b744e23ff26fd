// SPDX-License-Identifier: GPL-2.0
/*
 * hooks.c - the netfilter side: per-namespace hooks, interest matching
 * and the dispatch of the five callbacks.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/random.h>
#include <linux/sched/clock.h>
#include <linux/siphash.h>
#include <linux/stddef.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include "itm_core.h"

static bool init_netns = true;
module_param(init_netns, bool, 0444);
MODULE_PARM_DESC(init_netns, "attach the hooks to the initial network namespace at load");

static bool all_netns;
module_param(all_netns, bool, 0444);
MODULE_PARM_DESC(all_netns, "attach the hooks to every network namespace when it is created");

/**
 * struct itm_net - itm_mod's state in one network namespace
 * @active: whether the hooks are registered here (under itm_lock)
 * @key: secret of the re-entry cookies of this namespace
 */
struct itm_net {
	bool active;
	hsiphash_key_t key;
};

static unsigned int itm_net_id __read_mostly;

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

static u32 itm_cookie_tag(const struct nf_hook_state *state, enum itm_hook where,
			  s32 priority, u32 order)
{
	const struct itm_net *in = net_generic(state->net, itm_net_id);

	return hsiphash_3u32((u32)priority, order, where, &in->key);
}

static void itm_cookie_set(struct sk_buff *skb, const struct nf_hook_state *state,
			   enum itm_hook where, const struct itm_app *app)
{
	struct itm_cookie *c = itm_cookie(skb);

	c->magic = ITM_COOKIE_MAGIC;
	c->priority = app->info->priority;
	c->order = app->order;
	c->tag = itm_cookie_tag(state, where, c->priority, c->order);
}

/* A valid cookie: consume it and say after which application to go on. */
static bool itm_cookie_take(struct sk_buff *skb, const struct nf_hook_state *state,
			    enum itm_hook where, s32 *priority, u32 *order)
{
	struct itm_cookie *c = itm_cookie(skb);
	bool valid;

	if (likely(c->magic != ITM_COOKIE_MAGIC))
		return false;
	valid = c->tag == itm_cookie_tag(state, where, c->priority, c->order);
	*priority = c->priority;
	*order = c->order;
	memset(c, 0, sizeof(*c));
	return valid;
}

/* The index of the first application after (priority, order). */
static unsigned int itm_resume_index(const struct itm_hook_apps *run,
				     s32 priority, u32 order)
{
	unsigned int i;

	for (i = 0; i < run->n; i++) {
		const struct itm_app *app = run->apps[i];
		s32 p = app->info->priority;

		if (p > priority || (p == priority && app->order > order))
			break;
	}
	return i;
}

static bool account_time = true;
module_param(account_time, bool, 0644);
MODULE_PARM_DESC(account_time,
		 "count the time each application spends (two clock reads per matched packet)");

/**
 * struct itm_pkt - what interest matching needs of a packet, parsed once
 * @parsed: the fields below are filled in
 * @valid: the IP header could be read
 * @has_ports: @sport and @dport are valid
 * @family: AF_INET or AF_INET6
 * @proto: transport protocol
 * @sport: source port, host order
 * @dport: destination port, host order
 * @saddr: source address (IPv4 in the first word)
 * @daddr: destination address
 */
struct itm_pkt {
	bool parsed;
	bool valid;
	bool has_ports;
	u8 family;
	u8 proto;
	u16 sport;
	u16 dport;
	struct in6_addr saddr;
	struct in6_addr daddr;
};

static bool itm_proto_has_ports(u8 proto)
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

static void itm_parse(const struct sk_buff *skb, u8 pf, struct itm_pkt *p)
{
	int nhoff = skb_network_offset(skb);
	bool first_frag = true;
	int thoff;

	p->parsed = true;
	p->valid = false;
	p->has_ports = false;
	if (pf == NFPROTO_IPV4) {
		const struct iphdr *iph;
		struct iphdr _iph;

		iph = skb_header_pointer(skb, nhoff, sizeof(_iph), &_iph);
		if (!iph || iph->ihl < 5)
			return;
		p->family = AF_INET;
		p->proto = iph->protocol;
		memset(&p->saddr, 0, sizeof(p->saddr));
		memset(&p->daddr, 0, sizeof(p->daddr));
		p->saddr.s6_addr32[0] = iph->saddr;
		p->daddr.s6_addr32[0] = iph->daddr;
		thoff = nhoff + iph->ihl * 4;
		first_frag = !(iph->frag_off & htons(IP_OFFSET));
	} else {
		const struct ipv6hdr *ip6h;
		struct ipv6hdr _ip6h;
		__be16 frag_off = 0;
		u8 nexthdr;

		ip6h = skb_header_pointer(skb, nhoff, sizeof(_ip6h), &_ip6h);
		if (!ip6h)
			return;
		p->family = AF_INET6;
		p->saddr = ip6h->saddr;
		p->daddr = ip6h->daddr;
		nexthdr = ip6h->nexthdr;
		thoff = ipv6_skip_exthdr(skb, nhoff + sizeof(_ip6h), &nexthdr,
					 &frag_off);
		p->proto = nexthdr;
		if (thoff < 0) {
			p->valid = true;
			return;
		}
		first_frag = !(ntohs(frag_off) & ~0x7);
	}
	p->valid = true;
	if (first_frag && itm_proto_has_ports(p->proto)) {
		const __be16 *ports;
		__be16 _ports[2];

		ports = skb_header_pointer(skb, thoff, sizeof(_ports), _ports);
		if (ports) {
			p->sport = ntohs(ports[0]);
			p->dport = ntohs(ports[1]);
			p->has_ports = true;
		}
	}
}

static bool itm_addr_match(const struct in6_addr *addr,
			   const struct in6_addr *want,
			   const struct in6_addr *mask)
{
	int i;

	for (i = 0; i < 4; i++)
		if ((addr->s6_addr32[i] & mask->s6_addr32[i]) != want->s6_addr32[i])
			return false;
	return true;
}

static bool itm_match(const struct itm_interest *in, const struct itm_pkt *p)
{
	if (in->family && in->family != p->family)
		return false;
	if (in->protocol && in->protocol != p->proto)
		return false;
	if (in->family &&
	    (!itm_addr_match(&p->saddr, &in->saddr, &in->smask) ||
	     !itm_addr_match(&p->daddr, &in->daddr, &in->dmask)))
		return false;
	if (in->sport_max &&
	    (!p->has_ports || p->sport < in->sport_min || p->sport > in->sport_max))
		return false;
	if (in->dport_max &&
	    (!p->has_ports || p->dport < in->dport_min || p->dport > in->dport_max))
		return false;
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

/* Run the five callbacks of one application; returns an enum itm_verdict. */
static unsigned int itm_run_app(struct itm_app *app, enum itm_hook where,
				struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	struct itm_info *info = app->info;
	struct itm_app_stats __percpu *st = app->stats;
	const struct itm_ctx ctx = { .info = info, .where = where, .state = state };
	bool timed = READ_ONCE(account_time);
	unsigned int verdict = ITM_ACCEPT;
	u64 start = timed ? local_clock() : 0;
	int class = 0;

	this_cpu_inc(st->matched);
	this_cpu_add(st->bytes, skb->len);
	if (info->class_func)
		class = info->class_func(where, skb, &ctx);
	if (class)
		this_cpu_inc(st->classified);
	if (info->log_func)
		info->log_func(where, class, skb, &ctx);
	if (class && info->process_func) {
		verdict = info->process_func(where, class, skb, &ctx);
		if (unlikely(verdict >= ITM_NUM_VERDICTS)) {
			pr_warn_ratelimited("%s: process_func returned %u, accepting\n",
					    info->label, verdict);
			verdict = ITM_ACCEPT;
		}
	}
	this_cpu_inc(st->verdict[verdict]);
	/* A stolen skb is the application's now: no more callbacks on it. */
	if (verdict != ITM_STOLEN) {
		if (info->update_func)
			info->update_func(where, class, skb, &ctx);
		if (info->control_func)
			info->control_func(where, class, skb, &ctx);
	}
	if (timed)
		this_cpu_add(st->time_ns, local_clock() - start);
	return verdict;
}

static unsigned int itm_nf_hook(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	enum itm_hook where = (enum itm_hook)(unsigned long)priv;
	struct itm_hook_apps *run;
	bool resume;
	struct itm_pkt pkt;
	unsigned int i = 0;
	s32 priority;
	u32 order;

	resume = itm_cookie_take(skb, state, where, &priority, &order);
	/* netfilter calls hooks under rcu_read_lock() */
	run = rcu_dereference(itm_hook_apps[where]);
	if (!run)
		return NF_ACCEPT;
	/* back from user space (NF_REPEAT): go on after the queueing app */
	if (resume)
		i = itm_resume_index(run, priority, order);
	pkt.parsed = false;
	for (; i < run->n; i++) {
		struct itm_app *app = run->apps[i];
		const struct net *netns = app->info->netns;

		if (netns && !net_eq(netns, state->net))
			continue;
		if (!READ_ONCE(app->enabled))
			continue;
		this_cpu_inc(app->stats->seen);
		if (!pkt.parsed)
			itm_parse(skb, state->pf, &pkt);
		if (!pkt.valid || !itm_match(&app->interest, &pkt))
			continue;
		switch (itm_run_app(app, where, skb, state)) {
		case ITM_DROP:
			return NF_DROP;
		case ITM_STOLEN:
			return NF_STOLEN;
		case ITM_QUEUE:
			itm_cookie_set(skb, state, where, app);
			return NF_QUEUE_NR(app->info->queue_num) |
			       NF_VERDICT_FLAG_QUEUE_BYPASS;
		}
		/* The application may have rewritten addresses or ports. */
		pkt.parsed = false;
	}
	return NF_ACCEPT;
}

static const unsigned int itm_nf_hooknum[ITM_NUM_HOOKS] = {
	[ITM_PRE_ROUTING] = NF_INET_PRE_ROUTING,
	[ITM_IP_IN] = NF_INET_LOCAL_IN,
	[ITM_IP_FORWARD] = NF_INET_FORWARD,
	[ITM_IP_OUT] = NF_INET_LOCAL_OUT,
	[ITM_POST_ROUTING] = NF_INET_POST_ROUTING,
};

/* IPv4 then IPv6, five hooks each; filled in by itm_hooks_init() */
static struct nf_hook_ops itm_nf_ops[2 * ITM_NUM_HOOKS];

/**
 * itm_netns_active() - are the hooks attached to a namespace?
 * @net: the namespace
 *
 * Context: itm_lock held.
 * Return: true when attached.
 */
bool itm_netns_active(struct net *net)
{
	struct itm_net *in = net_generic(net, itm_net_id);

	lockdep_assert_held(&itm_lock);
	return in->active;
}

/**
 * itm_netns_set() - attach the hooks to a namespace or detach them
 * @net: the namespace
 * @active: attach (true) or detach (false)
 *
 * Context: process context, itm_lock held.
 * Return: 0 or the error of nf_register_net_hooks().
 */
int itm_netns_set(struct net *net, bool active)
{
	struct itm_net *in = net_generic(net, itm_net_id);
	int err;

	lockdep_assert_held(&itm_lock);
	if (in->active == active)
		return 0;
	if (active) {
		err = nf_register_net_hooks(net, itm_nf_ops, ARRAY_SIZE(itm_nf_ops));
		if (err)
			return err;
	} else {
		nf_unregister_net_hooks(net, itm_nf_ops, ARRAY_SIZE(itm_nf_ops));
	}
	in->active = active;
	return 0;
}

static int __net_init itm_net_init(struct net *net)
{
	struct itm_net *in = net_generic(net, itm_net_id);
	int err = 0;

	get_random_bytes(&in->key, sizeof(in->key));
	if (all_netns || (init_netns && net_eq(net, &init_net))) {
		mutex_lock(&itm_lock);
		err = itm_netns_set(net, true);
		mutex_unlock(&itm_lock);
	}
	return err;
}

static void __net_exit itm_net_exit(struct net *net)
{
	mutex_lock(&itm_lock);
	itm_netns_set(net, false);
	mutex_unlock(&itm_lock);
}

static struct pernet_operations itm_net_ops = {
	.init = itm_net_init,
	.exit = itm_net_exit,
	.id = &itm_net_id,
	.size = sizeof(struct itm_net),
};

/**
 * itm_hooks_init() - prepare the hooks and attach them to the namespaces
 * @nf_priority: netfilter priority of every hook
 *
 * Return: 0 or an error from register_pernet_subsys().
 */
int itm_hooks_init(int nf_priority)
{
	int h;

	for (h = 0; h < ITM_NUM_HOOKS; h++) {
		struct nf_hook_ops *v4 = &itm_nf_ops[h];
		struct nf_hook_ops *v6 = &itm_nf_ops[ITM_NUM_HOOKS + h];

		v4->hook = itm_nf_hook;
		v4->pf = NFPROTO_IPV4;
		v4->hooknum = itm_nf_hooknum[h];
		v4->priority = nf_priority;
		v4->priv = (void *)(unsigned long)h;
		*v6 = *v4;
		v6->pf = NFPROTO_IPV6;
	}
	return register_pernet_subsys(&itm_net_ops);
}

/**
 * itm_hooks_exit() - detach the hooks from every namespace
 */
void itm_hooks_exit(void)
{
	unregister_pernet_subsys(&itm_net_ops);
}
