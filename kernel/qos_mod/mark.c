// SPDX-License-Identifier: GPL-2.0
/*
 * mark.c - reading a packet's flow and writing its mark.
 *
 * The mark is written the kernel's way (net/netfilter/xt_DSCP.c): make the
 * IP header writable, then ipv4_change_dsfield() (which fixes the header
 * checksum incrementally) or ipv6_change_dsfield().
 */
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netfilter.h>
#include <linux/tcp.h>
#include <net/tcp.h>
#include <net/dsfield.h>
#include <net/inet_ecn.h>
#include <net/ip.h>
#include <net/ipv6.h>
#include "qos.h"

/* the paper's Minimize-Delay bit (RFC 1349) */
#define QOS_TOS_LOWDELAY 0x10

/**
 * qos_parse() - the flow and the TCP flags of a packet, from itm_mod's parse
 * @ctx: the callback's context (ctx->pkt holds the parsed headers)
 * @p: filled in
 *
 * Return: false for what qos_mod leaves alone: not TCP, a fragment other
 * than the first, a truncated header.
 */
bool qos_parse(const struct itm_ctx *ctx, struct qos_pkt *p)
{
	const struct itm_pkt *pkt = &ctx->pkt;

	if (pkt->proto != IPPROTO_TCP || !pkt->has_ports)
		return false;
	/* every byte is written: keys are compared and hashed as memory */
	p->key = (struct qos_key) {
		.net = ctx->state->net,
		.saddr = pkt->saddr,
		.daddr = pkt->daddr,
		.sport = htons(pkt->sport),
		.dport = htons(pkt->dport),
		.family = pkt->family,
		.proto = IPPROTO_TCP,
	};
	p->fin = pkt->tcp_flags & TCPHDR_FIN;
	p->rst = pkt->tcp_flags & TCPHDR_RST;
	/* count wire packets: a GSO buffer stands for gso_segs of them */
	p->segs = pkt->segs;
	return true;
}

/**
 * qos_mark() - write the mark of a class into a packet
 * @skb: the packet
 * @pf: NFPROTO_IPV4 or NFPROTO_IPV6
 * @class: %QOS_SHORT or %QOS_LONG
 *
 * In tos mode SHORT sets the Minimize-Delay bit and LONG clears it; in
 * dscp mode the DSCP becomes short_dscp or long_dscp.  The precedence bits
 * (tos mode) and the two ECN bits (both modes) are kept.  A packet that
 * cannot be made writable passes unchanged.
 *
 * Context: packet context; does not sleep.
 */
void qos_mark(struct sk_buff *skb, u8 pf, int class)
{
	int nhoff = skb_network_offset(skb);
	u8 mask, value;

	if (READ_ONCE(qos_mode) == QOS_MODE_DSCP) {
		unsigned int dscp = class == QOS_SHORT ? READ_ONCE(qos_short_dscp) :
							 READ_ONCE(qos_long_dscp);

		mask = INET_ECN_MASK;
		value = (dscp & 0x3f) << 2;
	} else {
		mask = (u8)~QOS_TOS_LOWDELAY;
		value = class == QOS_SHORT ? QOS_TOS_LOWDELAY : 0;
	}
	/* the IP header is in the linear part from the IP layer on */
	if (pf == NFPROTO_IPV4) {
		u8 old = ipv4_get_dsfield(ip_hdr(skb));

		if (((old & mask) | value) == old ||
		    skb_ensure_writable(skb, nhoff + sizeof(struct iphdr)))
			return;
		ipv4_change_dsfield(ip_hdr(skb), mask, value);
	} else {
		u8 old = ipv6_get_dsfield(ipv6_hdr(skb));

		if (((old & mask) | value) == old ||
		    skb_ensure_writable(skb, nhoff + sizeof(struct ipv6hdr)))
			return;
		ipv6_change_dsfield(ipv6_hdr(skb), mask, value);
	}
}
