/* SPDX-License-Identifier: GPL-2.0 */
/*
 * itm_route.h - itmRoute's kernel data path: shared definitions.
 *
 * The itmRoute daemon (itmroute/) probes the overlay's paths and chooses
 * one per destination; itm_route carries the packets.  Per network
 * namespace the daemon sets a configuration (overlay address, port, key,
 * tunnel MTU) and one route per overlay prefix.  itm_route registers three
 * itm_mod applications in that namespace: at ITM_IP_OUT and ITM_IP_FORWARD
 * it tunnels packets to a prefix whose route goes through a relay, at
 * ITM_IP_IN it relays or delivers the tunnelled packets of other ITMs.
 * The datagrams are itmroute/wire.py's DATA, sealed as itmroute/auth.py
 * seals them (a Poly1305 tag under the sender's key, its counter the nonce,
 * and a per-sender replay window).
 */
#ifndef _ITM_ROUTE_H
#define _ITM_ROUTE_H

#include <linux/in6.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/spinlock.h>
#include <linux/u64_stats_sync.h>
#include <net/net_namespace.h>
#include <crypto/blake2s.h>
#include <crypto/chacha20poly1305.h>
#include <itm.h>
#include <uapi/linux/itm_route_netlink.h>

#define ITMR_MAGIC	0x4952	/* "IR" */
#define ITMR_VERSION	4
#define ITMR_DATA	1
#define ITMR_RELAYED	0x80	/* DATA: sent through a relay */
#define ITMR_V6		0x40
#define ITMR_TAG_LEN	16
#define ITMR_NO_RECEIPT	0xff
#define ITMR_WINDOW	64
#define ITMR_MAX_AGE_US	(60ULL * USEC_PER_SEC)
#define ITMR_PEERS	256	/* replay windows kept per namespace */

/* counters of a namespace (the stats nest of spec/itm_route.yaml) */
enum itmr_counter {
	ITMR_C_TUNNELLED,
	ITMR_C_DIRECT,
	ITMR_C_DECAPSULATED,
	ITMR_C_RELAYED,
	ITMR_C_AUTH_FAILED,
	ITMR_C_REPLAYED,
	ITMR_C_BAD,
	ITMR_C_TO_DAEMON,
	ITMR_C_TOO_BIG,
	ITMR_C_MSS_CLAMPED,
	ITMR_C_SEND_ERRORS,
	ITMR_C_NO_ROUTE,
	ITMR_C_NUM,
};

/**
 * struct itmr_conf - a namespace's configuration; replaced whole, under RCU
 * @key: the overlay key
 * @keylen: its length (ITMR_KEY_MIN..ITMR_KEY_MAX)
 * @data_key: the key of this ITM's DATA (itmr_sender_key() of @me)
 * @me: this ITM's overlay address (IPv4 in the first word)
 * @v6: the overlay's ITMs talk IPv6
 * @port: the overlay's UDP port, network order
 * @mark: firewall mark of the daemon's packets and of what itm_route sends
 * @mtu: the tunnel MTU: the largest inner packet tunnelled
 * @gen: which configuration of the namespace this is (1, 2, ...): the sender
 *	keys cached in the replay windows were derived under one
 * @rcu: for call_rcu() (freed with kfree_sensitive(): it holds the keys)
 */
struct itmr_conf {
	u8 key[ITMR_KEY_MAX];
	u8 keylen;
	u8 data_key[CHACHA20POLY1305_KEY_SIZE];
	struct in6_addr me;
	bool v6;
	__be16 port;
	u32 mark;
	u16 mtu;
	u64 gen;
	struct rcu_head rcu;
};

/**
 * struct itmr_path - where a route's packets go; replaced whole, under RCU
 * @via: the relay's overlay address (all zero: direct)
 * @target: the overlay address of the ITM serving the prefix
 * @direct: @via is zero
 * @tag: the path's number in the daemon's table (DATA's tag)
 * @receipt: DATA's receipt byte (%ITMR_NO_RECEIPT: none)
 * @rcu: for kfree_rcu()
 */
struct itmr_path {
	struct in6_addr via;
	struct in6_addr target;
	bool direct;
	u8 tag;
	u8 receipt;
	struct rcu_head rcu;
};

/**
 * struct itmr_route - one overlay prefix
 * @prefix: the prefix, host bits zero
 * @mask: its mask
 * @family: AF_INET or AF_INET6
 * @plen: prefix length
 * @path: the path its packets take now
 * @out_at: jiffies of the last packet to the prefix
 * @in_at: jiffies of the last packet from it
 * @peer_at: jiffies of the last DATA from it delivered here
 * @heard_at: jiffies of the last receipt in such DATA
 * @peer_via: the relay that DATA came through (zero: direct)
 * @peer_tag: its tag
 * @heard_receipt: its last receipt
 * @peer_lock: keeps @peer_via and @peer_tag together
 * @tunnelled: packets to the prefix sent into the tunnel
 * @direct: packets to the prefix let go direct
 * @peer_packets: DATA from the prefix delivered here
 * @rcu: for kfree_rcu()
 *
 * The times and counters are written by the data path without a lock
 * (WRITE_ONCE, atomic64) and read by the dump: approximate by design.
 */
struct itmr_route {
	struct in6_addr prefix;
	struct in6_addr mask;
	u8 family;
	u8 plen;
	struct itmr_path __rcu *path;
	unsigned long out_at;
	unsigned long in_at;
	unsigned long peer_at;
	unsigned long heard_at;
	struct in6_addr peer_via;
	u8 peer_tag;
	u8 heard_receipt;
	spinlock_t peer_lock;	/* keeps peer_via and peer_tag together */
	atomic64_t tunnelled;
	atomic64_t direct;
	atomic64_t peer_packets;
	struct rcu_head rcu;
};

/**
 * struct itmr_window - the replay window of one sender's DATA
 * @sender: the sender's overlay address
 * @used: the slot holds a sender
 * @highest: the highest counter accepted
 * @seen: bit i: counter @highest - i accepted
 * @key: the sender's DATA key (itmr_sender_key()), derived once
 * @key_gen: the configuration @key was derived under (0: none)
 */
struct itmr_window {
	struct in6_addr sender;
	bool used;
	u64 highest;
	u64 seen;
	u8 key[CHACHA20POLY1305_KEY_SIZE];
	u64 key_gen;
};

/**
 * struct itmr_net - itm_route's state in one network namespace
 * @lock: serialises configuration changes
 * @conf: the configuration (NULL: not configured, packets pass)
 * @routes: the routes, %NULL where unused
 * @nroutes: the highest used index of @routes plus one
 * @owner: netlink port id of the socket that configured the namespace
 * @owner_pid: its process
 * @apps: the itm_mod applications (out, forward, in)
 * @registered: @apps are registered
 * @counter: the last counter sealed into a datagram
 * @conf_gen: the last configuration's @gen
 * @win_lock: protects @windows
 * @windows: replay windows, by a hash of the sender
 * @stats: the counters
 * @net: the namespace
 */
struct itmr_net {
	struct mutex lock;	/* serialises configuration changes */
	struct itmr_conf __rcu *conf;
	struct itmr_route __rcu *routes[ITMR_MAX_ROUTES];
	unsigned int nroutes;
	u32 owner;
	pid_t owner_pid;
	struct itm_info apps[3];
	bool registered;
	atomic64_t counter;
	u64 conf_gen;
	spinlock_t win_lock;	/* protects windows */
	struct itmr_window windows[ITMR_PEERS];
	atomic64_t stats[ITMR_C_NUM];
	struct net *net;
};

struct itmr_net *itmr_net(struct net *net);
int itmr_configure(struct net *net, u32 portid, const struct itmr_conf *conf,
		   struct netlink_ext_ack *extack);
int itmr_unconfigure(struct net *net, u32 portid);
int itmr_route_set(struct net *net, u32 portid, const struct itmr_route *r,
		   const struct itmr_path *p, struct netlink_ext_ack *extack);
int itmr_route_del(struct net *net, u32 portid, const struct itmr_route *r);

int itmr_genl_init(void);
void itmr_genl_exit(void);

void itmr_init_apps(struct itmr_net *rn);
void itmr_sender_key(const struct itmr_conf *c, const u8 *sender,
		     u8 out[CHACHA20POLY1305_KEY_SIZE]);

/* True when @a holds an IPv4 address: nothing beyond its first 4 bytes. */
static inline bool itmr_v4_only(const struct in6_addr *a)
{
	return !a->s6_addr32[1] && !a->s6_addr32[2] && !a->s6_addr32[3];
}

static inline void itmr_count(struct itmr_net *rn, enum itmr_counter c)
{
	atomic64_inc(&rn->stats[c]);
}

#endif /* _ITM_ROUTE_H */
