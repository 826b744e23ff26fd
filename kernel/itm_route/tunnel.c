// SPDX-License-Identifier: GPL-2.0
/*
 * tunnel.c - itm_route's data path: tunnel packets to the overlay, relay
 * other ITMs' tunnelled packets, deliver those meant for this ITM.
 *
 * A tunnelled packet travels whole in a DATA datagram of itmroute/wire.py:
 *
 *   outer IP | UDP | 'IR' ver type sender counter | target tag receipt |
 *   inner packet | MAC (16)
 *
 * The MAC is the Poly1305 tag that ChaCha20-Poly1305 gives an empty message
 * whose associated data is everything from 'IR' to the inner packet's end,
 * under the sender's DATA key (a keyed BLAKE2s of the overlay key over
 * "itmroute-3-D" and the sender's address), the counter its nonce: about a
 * quarter of a keyed BLAKE2s's cost per byte.  A receiver checks it, then the
 * counter against the sender's replay
 * window (itmroute/auth.py's rule: the 64 below the highest accepted,
 * nothing more than 60 s off the wall clock).  The sender sets the relayed
 * bit on DATA it sends through a relay.  A relay checks the sender's MAC
 * and counter, then sends the datagram on to its target as it came, sender,
 * counter and MAC unchanged: it writes nothing that the MAC covers, so one
 * MAC is computed per hop, not two.  The target checks the same MAC, takes
 * one off the inner TTL or hop limit of relayed DATA (the router's rule
 * for the relay's hop, made where the packet may be written) and hands the
 * inner packet to the stack as if it had arrived on the device it came in
 * by.  What itm_route does not handle - probes, acknowledgements, notices,
 * DATA whose inner TTL runs out at a relay - goes on to the daemon's socket.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/jhash.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <net/checksum.h>
#include <net/dsfield.h>
#include <net/icmp.h>
#include <net/inet_ecn.h>
#include <net/ip.h>
#include <net/ip6_checksum.h>
#include <net/ip6_route.h>
#include <net/ipv6.h>
#include <net/route.h>
#include <net/tcp.h>
#include <net/udp.h>
#include "itm_route.h"

/* Big-endian fields of the header, at any alignment. */
static u16 itmr_get_be16(const u8 *p)
{
	return (p[0] << 8) | p[1];
}

static void itmr_put_be16(u16 v, u8 *p)
{
	p[0] = v >> 8;
	p[1] = v;
}

static u64 itmr_get_be64(const u8 *p)
{
	__be64 v;

	memcpy(&v, p, sizeof(v));
	return be64_to_cpu(v);
}

static void itmr_put_be64(u64 v, u8 *p)
{
	__be64 b = cpu_to_be64(v);

	memcpy(p, &b, sizeof(b));
}

static unsigned int itmr_alen(const struct itmr_conf *c)
{
	return c->v6 ? sizeof(struct in6_addr) : sizeof(__be32);
}

/* 'IR', version, type, sender, counter */
static unsigned int itmr_hdr_len(const struct itmr_conf *c)
{
	return 4 + itmr_alen(c) + sizeof(u64);
}

/* DATA's target, tag, receipt */
static unsigned int itmr_head_len(const struct itmr_conf *c)
{
	return itmr_alen(c) + 2;
}

static unsigned int itmr_outer_len(const struct itmr_conf *c)
{
	return (c->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) +
	       sizeof(struct udphdr);
}

/* The longest prefix holding @addr, or NULL.  Under RCU. */
static struct itmr_route *itmr_lookup(struct itmr_net *rn, u8 family,
				      const struct in6_addr *addr)
{
	unsigned int i, n = READ_ONCE(rn->nroutes);
	struct itmr_route *r, *best = NULL;

	for (i = 0; i < n; i++) {
		r = rcu_dereference(rn->routes[i]);
		if (!r || r->family != family || (best && best->plen >= r->plen))
			continue;
		if (!ipv6_masked_addr_cmp(addr, &r->mask, &r->prefix))
			best = r;
	}
	return best;
}

/* The next counter to seal: the wall clock in microseconds, or one more. */
static u64 itmr_next_counter(struct itmr_net *rn)
{
	s64 now = div_u64(ktime_get_real_ns(), NSEC_PER_USEC);
	s64 old = atomic64_read(&rn->counter);
	s64 new;

	do {
		new = max(old + 1, now);
	} while (!atomic64_try_cmpxchg(&rn->counter, &old, new));
	return new;
}

/* what a sender's DATA key is derived from (itmroute/auth.py's key_label) */
#define ITMR_LABEL	"itmroute-3-D"
#define ITMR_LABEL_LEN	(sizeof(ITMR_LABEL) - 1)

/**
 * itmr_sender_key() - the key of an ITM's DATA datagrams
 * @c: the namespace's configuration (the overlay key, the address family)
 * @sender: the ITM's overlay address (4 or 16 bytes, as @c says)
 * @out: the key
 */
void itmr_sender_key(const struct itmr_conf *c, const u8 *sender,
		     u8 out[CHACHA20POLY1305_KEY_SIZE])
{
	u8 label[ITMR_LABEL_LEN + sizeof(struct in6_addr)];
	unsigned int alen = itmr_alen(c);

	memcpy(label, ITMR_LABEL, ITMR_LABEL_LEN);
	memcpy(label + ITMR_LABEL_LEN, sender, alen);
	blake2s(out, label, c->key, CHACHA20POLY1305_KEY_SIZE,
		ITMR_LABEL_LEN + alen, c->keylen);
}

/* The MAC of the @len bytes at @data, sealed by us with @counter, to @out. */
static void itmr_seal(const struct itmr_conf *c, const u8 *data,
		      unsigned int len, u64 counter, u8 *out)
{
	chacha20poly1305_encrypt(out, NULL, 0, data, len, counter, c->data_key);
}

/* Whether the last ITMR_TAG_LEN of the @len bytes at @msg are the MAC under @key. */
static bool itmr_verify(const u8 *key, const u8 *msg, unsigned int len,
			u64 counter)
{
	u8 none[1];

	return chacha20poly1305_decrypt(none, msg + len - ITMR_TAG_LEN,
					ITMR_TAG_LEN, msg, len - ITMR_TAG_LEN,
					counter, key);
}

static void itmr_put_header(u8 *p, const struct itmr_conf *c, u8 type,
			    u64 counter)
{
	unsigned int alen = itmr_alen(c);

	itmr_put_be16(ITMR_MAGIC, p);
	p[2] = ITMR_VERSION;
	p[3] = type | (c->v6 ? ITMR_V6 : 0);
	memcpy(p + 4, &c->me, alen);
	itmr_put_be64(counter, p + 4 + alen);
}

/* The DSCP of the IPv4 or IPv6 packet at @p (ECN bits clear). */
static u8 itmr_dscp(const u8 *p)
{
	if (p[0] >> 4 == 4)
		return p[1] & ~INET_ECN_MASK;
	return ipv6_get_dsfield((const struct ipv6hdr *)p) & ~INET_ECN_MASK;
}

/* The route of the outer datagrams to one ITM, looked up once per buffer. */
struct itmr_outer {
	struct dst_entry *dst;
	union {
		struct flowi4 fl4;
		struct flowi6 fl6;
	};
};

/* Look up the route to @to, port to port; 0, or the lookup's error. */
static int itmr_outer_route(struct net *net, const struct itmr_conf *c,
			    const struct in6_addr *to, struct itmr_outer *o)
{
	struct rtable *rt;

	if (c->v6) {
		memset(&o->fl6, 0, sizeof(o->fl6));
		o->fl6.daddr = *to;
		o->fl6.flowi6_mark = c->mark;
		o->fl6.flowi6_proto = IPPROTO_UDP;
		o->fl6.fl6_sport = c->port;
		o->fl6.fl6_dport = c->port;
		return ip6_dst_lookup(net, NULL, &o->dst, &o->fl6);
	}
	memset(&o->fl4, 0, sizeof(o->fl4));
	o->fl4.daddr = to->s6_addr32[0];
	o->fl4.flowi4_mark = c->mark;
	o->fl4.flowi4_proto = IPPROTO_UDP;
	o->fl4.fl4_sport = c->port;
	o->fl4.fl4_dport = c->port;
	rt = ip_route_output_key(net, &o->fl4);
	if (IS_ERR(rt))
		return PTR_ERR(rt);
	o->dst = &rt->dst;
	return 0;
}

static int itmr_send4(struct net *net, struct sk_buff *skb,
		      const struct itmr_outer *o, u8 tos)
{
	struct iphdr *iph;
	int err;

	udp_set_csum(false, skb, o->fl4.saddr, o->fl4.daddr, skb->len);
	iph = skb_push(skb, sizeof(*iph));
	skb_reset_network_header(skb);
	iph->version = 4;
	iph->ihl = sizeof(*iph) >> 2;
	iph->tos = tos;
	iph->frag_off = htons(IP_DF);
	iph->ttl = ip4_dst_hoplimit(o->dst);
	iph->protocol = IPPROTO_UDP;
	iph->saddr = o->fl4.saddr;
	iph->daddr = o->fl4.daddr;
	skb->protocol = htons(ETH_P_IP);
	memset(IPCB(skb), 0, sizeof(*IPCB(skb)));
	ip_select_ident(net, skb, NULL);
	/* ip_local_out() sets tot_len and the header checksum */
	err = ip_local_out(net, NULL, skb);
	/* net_xmit_eval() evaluates its argument twice: not the call */
	return net_xmit_eval(err);
}

static int itmr_send6(struct net *net, struct sk_buff *skb,
		      const struct itmr_outer *o, u8 tclass)
{
	struct ipv6hdr *ip6h;
	int err;

	udp6_set_csum(false, skb, &o->fl6.saddr, &o->fl6.daddr, skb->len);
	ip6h = skb_push(skb, sizeof(*ip6h));
	skb_reset_network_header(skb);
	ip6_flow_hdr(ip6h, tclass, 0);
	ip6h->nexthdr = IPPROTO_UDP;
	ip6h->hop_limit = ip6_dst_hoplimit(o->dst);
	ip6h->saddr = o->fl6.saddr;
	ip6h->daddr = o->fl6.daddr;
	skb->protocol = htons(ETH_P_IPV6);
	memset(IP6CB(skb), 0, sizeof(*IP6CB(skb)));
	/* ip6_local_out() sets payload_len */
	err = ip6_local_out(net, NULL, skb);
	return net_xmit_eval(err);
}

/*
 * Send the sealed datagram at skb->data along @o, port to port, with
 * @dsfield in the outer header.  Consumes @skb; @o keeps its route.
 */
static int itmr_send(struct net *net, const struct itmr_conf *c,
		     struct sk_buff *skb, const struct itmr_outer *o,
		     u8 dsfield)
{
	struct udphdr *uh;

	skb_scrub_packet(skb, false);
	skb->mark = c->mark;
	skb->ip_summed = CHECKSUM_NONE;
	skb_clear_hash(skb);
	skb_dst_set(skb, dst_clone(o->dst));
	uh = skb_push(skb, sizeof(*uh));
	skb_reset_transport_header(skb);
	uh->source = c->port;
	uh->dest = c->port;
	uh->len = htons(skb->len);
	uh->check = 0;
	if (c->v6)
		return itmr_send6(net, skb, o, dsfield);
	return itmr_send4(net, skb, o, dsfield);
}

/* Seal one whole inner packet (skb->data on it) and send it on @p. */
static void itmr_encap_one(struct net *net, struct itmr_net *rn,
			   const struct itmr_conf *c, struct itmr_route *r,
			   const struct itmr_path *p,
			   const struct itmr_outer *o, struct sk_buff *skb)
{
	unsigned int alen = itmr_alen(c), hlen = itmr_hdr_len(c);
	unsigned int need = hlen + itmr_head_len(c) + itmr_outer_len(c) +
			    LL_MAX_HEADER;
	int head = 0, tail = 0;
	unsigned int len;
	u64 counter;
	u8 *h, dscp;

	if (skb->ip_summed == CHECKSUM_PARTIAL && skb_checksum_help(skb))
		goto drop;
	if (skb_linearize(skb))
		goto drop;
	if (skb_headroom(skb) < need)
		head = need - skb_headroom(skb);
	if (skb_tailroom(skb) < ITMR_TAG_LEN)
		tail = ITMR_TAG_LEN - skb_tailroom(skb);
	/* our own copy of the data: a TCP skb is a clone of the queued one */
	if ((head || tail || skb_cloned(skb)) &&
	    pskb_expand_head(skb, head, tail, GFP_ATOMIC))
		goto drop;
	dscp = itmr_dscp(skb->data);
	h = skb_push(skb, itmr_head_len(c));
	memcpy(h, &p->target, alen);
	h[alen] = p->tag;
	h[alen + 1] = p->receipt;
	h = skb_push(skb, hlen);
	counter = itmr_next_counter(rn);
	itmr_put_header(h, c, ipv6_addr_equal(&p->via, &p->target) ?
			ITMR_DATA : ITMR_DATA | ITMR_RELAYED, counter);
	len = skb->len;
	itmr_seal(c, skb->data, len, counter, skb_put(skb, ITMR_TAG_LEN));
	if (itmr_send(net, c, skb, o, dscp)) {
		itmr_count(rn, ITMR_C_SEND_ERRORS);
		return;
	}
	atomic64_inc(&r->tunnelled);
	itmr_count(rn, ITMR_C_TUNNELLED);
	return;
drop:
	itmr_count(rn, ITMR_C_SEND_ERRORS);
	kfree_skb(skb);
}

/* Let a packet to @r's prefix go direct, counted. */
static unsigned int itmr_go_direct(struct itmr_net *rn, struct itmr_route *r)
{
	atomic64_inc(&r->direct);
	itmr_count(rn, ITMR_C_DIRECT);
	return ITM_ACCEPT;
}

/* Lower the MSS option of a TCP SYN to what fits the tunnel. */
static void itmr_clamp_mss(struct itmr_net *rn, const struct itmr_conf *c,
			   struct sk_buff *skb, const struct itm_pkt *pkt)
{
	unsigned int over = pkt->family == AF_INET ? 40 : 60;
	unsigned int thoff = pkt->thoff, optlen, i;
	struct tcphdr *th;
	u16 mss, old;
	u8 *opt;

	if (c->mtu <= over + 8)
		return;
	mss = c->mtu - over;
	if (skb_ensure_writable(skb, thoff + sizeof(*th)))
		return;
	th = (struct tcphdr *)(skb->data + thoff);
	optlen = th->doff * 4;
	if (optlen <= sizeof(*th) || skb_ensure_writable(skb, thoff + optlen))
		return;
	th = (struct tcphdr *)(skb->data + thoff);
	opt = (u8 *)th;
	for (i = sizeof(*th); i + TCPOLEN_MSS <= optlen;) {
		if (opt[i] == TCPOPT_EOL)
			return;
		if (opt[i] == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (opt[i + 1] < 2 || i + opt[i + 1] > optlen)
			return;
		if (opt[i] == TCPOPT_MSS && opt[i + 1] == TCPOLEN_MSS) {
			old = itmr_get_be16(opt + i + 2);
			if (old <= mss)
				return;
			itmr_put_be16(mss, opt + i + 2);
			inet_proto_csum_replace2(&th->check, skb, htons(old),
						 htons(mss), false);
			itmr_count(rn, ITMR_C_MSS_CLAMPED);
			return;
		}
		i += opt[i + 1];
	}
}

/* The wire length of the packets of @skb (of each segment when GSO). */
static unsigned int itmr_wire_len(struct sk_buff *skb,
				  const struct itm_pkt *pkt)
{
	unsigned int th;

	if (!skb_is_gso(skb))
		return skb->len - pkt->nhoff;
	th = pkt->proto == IPPROTO_TCP ? tcp_hdrlen(skb) : sizeof(struct udphdr);
	return pkt->thoff - pkt->nhoff + th + skb_shinfo(skb)->gso_size;
}

/*
 * A packet above the tunnel MTU: answer as a router whose next link is the
 * tunnel (ICMP "fragmentation needed" for IPv4 with DF, ICMPv6 "packet too
 * big"), or let it go direct (IPv4 without DF; an MTU below IPv6's minimum).
 */
static unsigned int itmr_too_big(struct itmr_net *rn, const struct itmr_conf *c,
				 struct itmr_route *r, struct sk_buff *skb,
				 const struct itm_pkt *pkt)
{
	if (pkt->family == AF_INET6 && c->mtu >= IPV6_MIN_MTU) {
		if (!skb->dev && skb_dst(skb))
			skb->dev = skb_dst(skb)->dev;
		icmpv6_send(skb, ICMPV6_PKT_TOOBIG, 0, c->mtu);
		itmr_count(rn, ITMR_C_TOO_BIG);
		return ITM_DROP;
	}
	if (pkt->family == AF_INET && (ip_hdr(skb)->frag_off & htons(IP_DF))) {
		icmp_send(skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, htonl(c->mtu));
		itmr_count(rn, ITMR_C_TOO_BIG);
		return ITM_DROP;
	}
	return itmr_go_direct(rn, r);
}

static unsigned int itmr_tunnel(struct net *net, struct itmr_net *rn,
				const struct itmr_conf *c, struct itmr_route *r,
				const struct itmr_path *p, struct sk_buff *skb,
				const struct itm_pkt *pkt)
{
	struct sk_buff *segs, *seg, *next;
	struct itmr_outer o;

	if (itmr_wire_len(skb, pkt) > c->mtu)
		return itmr_too_big(rn, c, r, skb, pkt);
	/*
	 * No route to the relay: the packet goes direct, as the daemon's own
	 * data path does (fail open; the daemon's probes find the path down).
	 */
	if (itmr_outer_route(net, c, &p->via, &o)) {
		itmr_count(rn, ITMR_C_NO_ROUTE);
		return itmr_go_direct(rn, r);
	}
	if (pkt->nhoff)
		skb_pull(skb, pkt->nhoff);
	if (!skb_is_gso(skb)) {
		itmr_encap_one(net, rn, c, r, p, &o, skb);
		goto out;
	}
	/* each wire packet in a datagram of its own, checksums computed */
	segs = skb_gso_segment(skb, 0);
	if (IS_ERR_OR_NULL(segs)) {
		itmr_count(rn, ITMR_C_SEND_ERRORS);
		kfree_skb(skb);
		goto out;
	}
	consume_skb(skb);
	skb_list_walk_safe(segs, seg, next) {
		skb_mark_not_on_list(seg);
		itmr_encap_one(net, rn, c, r, p, &o, seg);
	}
out:
	dst_release(o.dst);
	return ITM_STOLEN;
}

/* ITM_IP_OUT and ITM_IP_FORWARD: tunnel what goes to a relayed prefix. */
static unsigned int itmr_out(enum itm_hook where, int class,
			     struct sk_buff *skb, const struct itm_ctx *ctx)
{
	struct net *net = ctx->state->net;
	struct itmr_net *rn = itmr_net(net);
	const struct itm_pkt *pkt = &ctx->pkt;
	const struct itmr_conf *c = rcu_dereference(rn->conf);
	const struct itmr_path *p;
	struct itmr_route *r;

	if (!c || skb->mark == c->mark)
		return ITM_ACCEPT;
	if (where == ITM_IP_FORWARD) {
		r = itmr_lookup(rn, pkt->family, &pkt->saddr);
		if (r)
			WRITE_ONCE(r->in_at, jiffies);
	}
	r = itmr_lookup(rn, pkt->family, &pkt->daddr);
	if (!r)
		return ITM_ACCEPT;
	WRITE_ONCE(r->out_at, jiffies);
	if (pkt->proto == IPPROTO_TCP && (pkt->tcp_flags & TCPHDR_SYN) &&
	    pkt->transport)
		itmr_clamp_mss(rn, c, skb, pkt);
	p = rcu_dereference(r->path);
	if (p->direct)
		return itmr_go_direct(rn, r);
	return itmr_tunnel(net, rn, c, r, p, skb, pkt);
}

/* The window of @s, or the free slot for it (NULL: the table is full). */
static struct itmr_window *itmr_window_find(struct itmr_net *rn,
					    const struct in6_addr *s)
{
	unsigned int h = jhash(s, sizeof(*s), 0) % ITMR_PEERS, i;
	struct itmr_window *w;

	lockdep_assert_held(&rn->win_lock);
	for (i = 0; i < ITMR_PEERS; i++) {
		w = &rn->windows[(h + i) % ITMR_PEERS];
		if (!w->used || ipv6_addr_equal(&w->sender, s))
			return w;
	}
	return NULL;
}

/*
 * @sender's DATA key, to @key: the one its window keeps when it was derived
 * under configuration @c, else derived now (two BLAKE2s blocks).
 */
static void itmr_peer_key(struct itmr_net *rn, const struct itmr_conf *c,
			  const u8 *sender, u8 *key)
{
	struct in6_addr s = {};
	struct itmr_window *w;
	bool cached = false;

	memcpy(&s, sender, itmr_alen(c));
	spin_lock_bh(&rn->win_lock);
	w = itmr_window_find(rn, &s);
	if (w && w->used && w->key_gen == c->gen) {
		memcpy(key, w->key, CHACHA20POLY1305_KEY_SIZE);
		cached = true;
	}
	spin_unlock_bh(&rn->win_lock);
	if (!cached)
		itmr_sender_key(c, sender, key);
}

/*
 * Accept @counter of @sender once (itmroute/auth.py's ReplayWindow); its
 * window keeps @key, which verified the datagram under configuration @c.
 */
static bool itmr_window_accept(struct itmr_net *rn, const struct itmr_conf *c,
			       const u8 *sender, u64 counter, const u8 *key)
{
	struct in6_addr s = {};
	struct itmr_window *w;
	bool ok = true;
	u64 back;

	memcpy(&s, sender, itmr_alen(c));
	spin_lock_bh(&rn->win_lock);
	w = itmr_window_find(rn, &s);
	if (!w) {
		/* full: start afresh, as the daemon does (then its slot is free) */
		memset(rn->windows, 0, sizeof(rn->windows));
		w = itmr_window_find(rn, &s);
	}
	if (w->key_gen != c->gen) {
		memcpy(w->key, key, CHACHA20POLY1305_KEY_SIZE);
		w->key_gen = c->gen;
	}
	if (!w->used) {
		w->used = true;
		w->sender = s;
		w->highest = counter;
		w->seen = 1;
	} else if (counter > w->highest) {
		back = counter - w->highest;
		w->seen = back < ITMR_WINDOW ? (w->seen << back) | 1 : 1;
		w->highest = counter;
	} else {
		back = w->highest - counter;
		if (back >= ITMR_WINDOW || (w->seen >> back) & 1)
			ok = false;
		else
			w->seen |= 1ULL << back;
	}
	spin_unlock_bh(&rn->win_lock);
	return ok;
}

static bool itmr_fresh(u64 counter)
{
	u64 now = div_u64(ktime_get_real_ns(), NSEC_PER_USEC);

	return (counter > now ? counter - now : now - counter) <= ITMR_MAX_AGE_US;
}

/* The inner packet at @p, @len bytes, is plausible: its length in @len. */
static bool itmr_inner_ok(const u8 *p, unsigned int len, unsigned int *own)
{
	const struct iphdr *iph = (const struct iphdr *)p;

	if (len >= sizeof(struct iphdr) && iph->version == 4 &&
	    iph->ihl >= 5 && ntohs(iph->tot_len) >= iph->ihl * 4 &&
	    ntohs(iph->tot_len) <= len) {
		*own = ntohs(iph->tot_len);
		return true;
	}
	if (len >= sizeof(struct ipv6hdr) && p[0] >> 4 == 6 &&
	    sizeof(struct ipv6hdr) +
	    ntohs(((const struct ipv6hdr *)p)->payload_len) <= len) {
		*own = sizeof(struct ipv6hdr) +
		       ntohs(((const struct ipv6hdr *)p)->payload_len);
		return true;
	}
	return false;
}

/* Note, on the route of the inner source, the DATA delivered here. */
static void itmr_note_peer(struct itmr_net *rn, const u8 *inner, bool relayed,
			   const struct sk_buff *skb, u8 tag, u8 receipt)
{
	struct in6_addr src = {}, via = {};
	struct itmr_route *r;
	u8 family;

	if (inner[0] >> 4 == 4) {
		family = AF_INET;
		memcpy(&src, inner + 12, 4);
	} else {
		family = AF_INET6;
		memcpy(&src, inner + 8, 16);
	}
	r = itmr_lookup(rn, family, &src);
	if (!r)
		return;
	if (relayed) {
		if (skb->protocol == htons(ETH_P_IP))
			via.s6_addr32[0] = ip_hdr(skb)->saddr;
		else
			via = ipv6_hdr(skb)->saddr;
	}
	spin_lock_bh(&r->peer_lock);
	r->peer_via = via;
	r->peer_tag = tag;
	spin_unlock_bh(&r->peer_lock);
	WRITE_ONCE(r->peer_at, jiffies);
	atomic64_inc(&r->peer_packets);
	if (receipt != ITMR_NO_RECEIPT) {
		WRITE_ONCE(r->heard_receipt, receipt);
		WRITE_ONCE(r->heard_at, jiffies);
	}
}

/* Hand the inner packet at @inner (@len bytes) to the stack. */
static void itmr_deliver(struct itmr_net *rn, const struct itmr_conf *c,
			 struct sk_buff *skb, const u8 *inner, unsigned int len)
{
	bool v4 = inner[0] >> 4 == 4;

	skb_pull(skb, inner - skb->data);
	skb_trim(skb, len);
	skb_scrub_packet(skb, false);
	skb_reset_network_header(skb);
	skb_reset_mac_header(skb);
	skb->mac_len = 0;
	skb->protocol = v4 ? htons(ETH_P_IP) : htons(ETH_P_IPV6);
	skb->ip_summed = CHECKSUM_NONE;
	skb->mark = c->mark;	/* never taken for traffic to tunnel */
	skb_clear_hash(skb);
	netif_rx(skb);
	itmr_count(rn, ITMR_C_DECAPSULATED);
}

/* The inner packet's TTL or hop limit. */
static u8 itmr_ttl(const u8 *inner)
{
	return inner[0] >> 4 == 4 ? ((const struct iphdr *)inner)->ttl :
				    ((const struct ipv6hdr *)inner)->hop_limit;
}

/* Take one off the inner TTL or hop limit; false when it runs out. */
static bool itmr_hop(u8 *inner)
{
	struct iphdr *iph = (struct iphdr *)inner;
	struct ipv6hdr *ip6h = (struct ipv6hdr *)inner;

	if (iph->version == 4) {
		if (iph->ttl <= 1)
			return false;
		ip_decrease_ttl(iph);
		return true;
	}
	if (ip6h->hop_limit <= 1)
		return false;
	ip6h->hop_limit--;
	return true;
}

/* A DATA datagram for this ITM's port: check it, then deliver or relay. */
static unsigned int itmr_receive(struct net *net, struct itmr_net *rn,
				 const struct itmr_conf *c, struct sk_buff *skb,
				 const struct itm_pkt *pkt)
{
	unsigned int alen = itmr_alen(c), hlen = itmr_hdr_len(c);
	unsigned int off = pkt->thoff + sizeof(struct udphdr);
	unsigned int mlen, ulen, ilen, own;
	struct in6_addr target = {};
	u8 first[4], *msg, *body, *inner;
	u8 key[CHACHA20POLY1305_KEY_SIZE];
	struct itmr_outer o;
	const u8 *peek;
	bool relayed;
	u64 counter;
	int err;

	peek = skb_header_pointer(skb, off, sizeof(first), first);
	if (!peek || itmr_get_be16(peek) != ITMR_MAGIC ||
	    peek[2] != ITMR_VERSION ||
	    (peek[3] & ~(ITMR_RELAYED | ITMR_V6)) != ITMR_DATA)
		return ITM_ACCEPT;	/* probes and the rest: the daemon's */
	if (!!(peek[3] & ITMR_V6) != c->v6) {
		itmr_count(rn, ITMR_C_TO_DAEMON);
		return ITM_ACCEPT;
	}
	relayed = peek[3] & ITMR_RELAYED;
	/* written in place below: our own linear copy */
	if (skb_linearize(skb) || skb_unclone(skb, GFP_ATOMIC)) {
		itmr_count(rn, ITMR_C_BAD);
		return ITM_DROP;
	}
	ulen = ntohs(udp_hdr(skb)->len);
	if (ulen < sizeof(struct udphdr) || pkt->thoff + ulen > skb->len ||
	    ulen - sizeof(struct udphdr) <
	    hlen + itmr_head_len(c) + ITMR_TAG_LEN + sizeof(struct iphdr)) {
		itmr_count(rn, ITMR_C_BAD);
		return ITM_DROP;
	}
	msg = skb->data + off;
	mlen = ulen - sizeof(struct udphdr);
	counter = itmr_get_be64(msg + 4 + alen);
	itmr_peer_key(rn, c, msg + 4, key);
	if (!itmr_verify(key, msg, mlen, counter)) {
		itmr_count(rn, ITMR_C_AUTH_FAILED);
		return ITM_DROP;
	}
	if (!itmr_fresh(counter) ||
	    !itmr_window_accept(rn, c, msg + 4, counter, key)) {
		itmr_count(rn, ITMR_C_REPLAYED);
		return ITM_DROP;
	}
	body = msg + hlen;
	inner = body + itmr_head_len(c);
	ilen = mlen - hlen - itmr_head_len(c) - ITMR_TAG_LEN;
	if (!itmr_inner_ok(inner, ilen, &own)) {
		itmr_count(rn, ITMR_C_BAD);
		return ITM_DROP;
	}
	memcpy(&target, body, alen);
	if (ipv6_addr_equal(&target, &c->me)) {
		/* the relay's hop; it checked that the TTL allows one */
		if (relayed && !itmr_hop(inner)) {
			itmr_count(rn, ITMR_C_BAD);
			return ITM_DROP;
		}
		itmr_note_peer(rn, inner, relayed, skb, body[alen],
			       body[alen + 1]);
		itmr_deliver(rn, c, skb, inner, own);
		return ITM_STOLEN;
	}
	if (!relayed) {
		itmr_count(rn, ITMR_C_BAD);	/* not sent to be relayed */
		return ITM_DROP;
	}
	if (itmr_ttl(inner) <= 1) {
		/* the daemon answers with ICMP time exceeded */
		itmr_count(rn, ITMR_C_TO_DAEMON);
		return ITM_ACCEPT;
	}
	if (itmr_outer_route(net, c, &target, &o)) {
		itmr_count(rn, ITMR_C_NO_ROUTE);
		return ITM_DROP;
	}
	/* on as it came: the sender's header, counter and MAC */
	skb_pull(skb, off);
	skb_trim(skb, mlen);
	err = itmr_send(net, c, skb, &o, itmr_dscp(inner));
	dst_release(o.dst);
	if (err) {
		itmr_count(rn, ITMR_C_SEND_ERRORS);
		return ITM_STOLEN;
	}
	itmr_count(rn, ITMR_C_RELAYED);
	return ITM_STOLEN;
}

/* ITM_IP_IN: DATA for this ITM's port, and the traffic coming back. */
static unsigned int itmr_in(enum itm_hook where, int class,
			    struct sk_buff *skb, const struct itm_ctx *ctx)
{
	struct itmr_net *rn = itmr_net(ctx->state->net);
	const struct itm_pkt *pkt = &ctx->pkt;
	const struct itmr_conf *c = rcu_dereference(rn->conf);
	struct itmr_route *r;

	if (!c)
		return ITM_ACCEPT;
	if (pkt->proto == IPPROTO_UDP && pkt->has_ports &&
	    htons(pkt->dport) == c->port)
		return itmr_receive(ctx->state->net, rn, c, skb, pkt);
	r = itmr_lookup(rn, pkt->family, &pkt->saddr);
	if (r)
		WRITE_ONCE(r->in_at, jiffies);
	return ITM_ACCEPT;
}

static int itmr_class(enum itm_hook where, struct sk_buff *skb,
		      const struct itm_ctx *ctx)
{
	return 1;
}

/**
 * itmr_init_apps() - fill in a namespace's itm_mod applications
 * @rn: the namespace's state
 *
 * They are registered when the namespace is configured: at ITM_IP_OUT and
 * ITM_IP_FORWARD late (priority 1000, after markers such as qos_mod, whose
 * DSCP the outer header takes), at ITM_IP_IN early (-1000).
 */
void itmr_init_apps(struct itmr_net *rn)
{
	static const char * const labels[] = {
		"itmroute-out", "itmroute-fwd", "itmroute-in",
	};
	static const enum itm_hook hooks[] = {
		ITM_IP_OUT, ITM_IP_FORWARD, ITM_IP_IN,
	};
	struct itm_info *info;
	unsigned int i;

	BUILD_BUG_ON(ARRAY_SIZE(labels) != ARRAY_SIZE(rn->apps));
	for (i = 0; i < ARRAY_SIZE(rn->apps); i++) {
		info = &rn->apps[i];
		memset(info, 0, sizeof(*info));
		strscpy(info->label, labels[i], ITM_LABEL_MAX);
		info->type = ITM_TYPE_KERNEL;
		info->hook = hooks[i];
		info->priority = hooks[i] == ITM_IP_IN ? -1000 : 1000;
		info->netns = rn->net;
		info->owner = THIS_MODULE;
		info->class_func = itmr_class;
		info->process_func = hooks[i] == ITM_IP_IN ? itmr_in : itmr_out;
	}
}
