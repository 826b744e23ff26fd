// SPDX-License-Identifier: GPL-2.0
/*
 * flows.c - the flow table: one entry per direction of every TCP flow,
 * in every network namespace, with its packet count.
 *
 * A fixed array of buckets (sized from max_flows at load) of RCU hash
 * lists: lookups are lock-free, inserts and removals take the bucket's
 * spinlock with bottom halves off (the collector runs in softirq).
 * Memory is bounded: an entry is counted from its allocation until the
 * RCU callback frees it, and no entry is allocated past max_flows.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bits.h>
#include <linux/jhash.h>
#include <linux/jiffies.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/random.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include "qos.h"

/* a flow that saw FIN or RST leaves after this much silence */
#define QOS_CLOSE_GRACE HZ

#define QOS_MIN_BUCKETS 256U
#define QOS_MAX_BUCKETS BIT(20)

/**
 * struct qos_flow - one direction of one TCP flow
 * @node: entry in its bucket (RCU)
 * @key: the flow
 * @packets: wire packets seen so far
 * @last: jiffies of the last packet
 * @closing: the flow sent FIN or RST
 * @rcu: for freeing after readers are done
 */
struct qos_flow {
	struct hlist_node node;
	struct qos_key key;
	atomic64_t packets;
	unsigned long last;
	bool closing;
	struct rcu_head rcu;
};

struct qos_bucket {
	spinlock_t lock;	/* writers of head */
	struct hlist_head head;
};

static struct qos_bucket *qos_buckets;
static unsigned int qos_nbuckets;
static u32 qos_hash_seed __read_mostly;
static struct kmem_cache *qos_flow_cache;
/* entries in the table */
static atomic_t qos_ntable = ATOMIC_INIT(0);
/* entries allocated and not yet freed (the memory bound) */
static atomic_t qos_nobjs = ATOMIC_INIT(0);

static struct qos_bucket *qos_bucket(const struct qos_key *key)
{
	u32 h = jhash2((const u32 *)key, sizeof(*key) / sizeof(u32),
		       qos_hash_seed);

	return &qos_buckets[h & (qos_nbuckets - 1)];
}

/*
 * Two keys are equal: compared as six words, inline (a memcmp() call
 * compared them a byte at a time and was a seventh of qos_mod's time).
 */
static bool qos_key_equal(const struct qos_key *a, const struct qos_key *b)
{
	const u64 *x = (const u64 *)a, *y = (const u64 *)b;

	BUILD_BUG_ON(sizeof(struct qos_key) != 6 * sizeof(u64));
	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) |
		 (x[3] ^ y[3]) | (x[4] ^ y[4]) | (x[5] ^ y[5]));
}

/* Context: RCU read side or the bucket's lock. */
static struct qos_flow *qos_find(struct qos_bucket *b, const struct qos_key *key)
{
	struct qos_flow *f;

	hlist_for_each_entry_rcu(f, &b->head, node, lockdep_is_held(&b->lock))
		if (qos_key_equal(&f->key, key))
			return f;
	return NULL;
}

static void qos_flow_account(struct qos_flow *f, const struct qos_pkt *p)
{
	atomic64_add(p->segs, &f->packets);
	WRITE_ONCE(f->last, jiffies);
	if ((p->fin || p->rst) && !READ_ONCE(f->closing))
		WRITE_ONCE(f->closing, true);
}

static void qos_flow_free(struct rcu_head *head)
{
	kmem_cache_free(qos_flow_cache, container_of(head, struct qos_flow, rcu));
	atomic_dec(&qos_nobjs);
}

/* Context: the bucket's lock held. */
static void qos_flow_remove(struct qos_flow *f)
{
	hlist_del_rcu(&f->node);
	atomic_dec(&qos_ntable);
	call_rcu(&f->rcu, qos_flow_free);
}

/**
 * qos_class_of_segments() - the class of a buffer of wire packets
 * @seen: the flow's wire packets before this buffer
 * @segs: the buffer's wire packets (gso_segs of a GSO buffer, else 1)
 * @limit: the last SHORT packet number
 * @fin: the buffer carries FIN (in its last segment)
 *
 * The buffer's wire packets are seen + 1 .. seen + @segs; packet n is
 * SHORT while n <= @limit, and the FIN segment is SHORT.  One TOS byte
 * goes to every segment, so the buffer gets the class of at least half of
 * its segments: a buffer that straddles the threshold, or a bulk buffer
 * whose last segment has FIN, marks fewer than half of its segments
 * differently from the rule (docs/qos_mod.md).  A single packet is
 * classified exactly by the rule.
 *
 * Return: %QOS_SHORT or %QOS_LONG.
 */
static int qos_class_of_segments(u64 seen, u32 segs, u64 limit, bool fin)
{
	u64 short_segs = seen >= limit ? 0 : min_t(u64, limit - seen, segs);

	if (fin && seen + segs > limit)
		short_segs++;
	return 2 * short_segs >= segs ? QOS_SHORT : QOS_LONG;
}

/**
 * qos_flows_classify() - the class of a packet from its flow's count
 * @p: the parsed packet
 * @l: filled in with the packet's bucket and flow (or none), for
 *	qos_flows_log() on the same packet under the same RCU read side
 *
 * Context: packet context, under RCU.
 * Return: 0 for a flow not in the table (unless mark_first is set, figures
 * is not, and the table has room for it: then it is classified as its
 * first packet), %QOS_SHORT while the flow's packets up to and including
 * this one are at most the threshold (with figures: threshold + 2, the
 * figures' pkt_cnt starting at 0 after the first packet) or for a FIN,
 * %QOS_LONG after; a GSO buffer by the majority of its wire packets.
 */
int qos_flows_classify(const struct qos_pkt *p, struct qos_lookup *l)
{
	bool figures = READ_ONCE(qos_figures);
	u64 limit = READ_ONCE(qos_threshold);
	struct qos_flow *f;
	u64 seen = 0;

	l->bucket = qos_bucket(&p->key);
	f = qos_find(l->bucket, &p->key);
	l->flow = f;
	if (f)
		seen = atomic64_read(&f->packets);
	/*
	 * A flow log_func cannot enter (full table) stays class 0 so that it
	 * is never marked, as without mark_first.
	 */
	else if (figures || !READ_ONCE(qos_mark_first) ||
		 atomic_read(&qos_nobjs) >= READ_ONCE(qos_max_flows))
		return 0;
	/* Figures 9-10: SHORT while pkt_cnt = seen - 1 <= THRESHOLD */
	if (figures)
		limit += 2;
	return qos_class_of_segments(seen, p->segs, limit, p->fin);
}

/**
 * qos_flows_log() - count a packet; enter an unseen flow in the table
 * @p: the parsed packet
 * @l: what qos_flows_classify() found for this packet under the same RCU
 *	read side, or NULL to look the flow up here
 *
 * When the table is full the flow is not entered and the event counted:
 * its packets pass unmarked.  A flow that the collector removed since @l
 * was filled in is still counted (in the entry RCU keeps alive), as when
 * the collector runs just after the count: its next packet starts anew.
 *
 * Context: packet context, under RCU; does not sleep.
 */
void qos_flows_log(const struct qos_pkt *p, const struct qos_lookup *l)
{
	struct qos_bucket *b;
	struct qos_flow *f;

	if (l) {
		b = l->bucket;
		f = l->flow;
	} else {
		b = qos_bucket(&p->key);
		f = qos_find(b, &p->key);
	}
	if (likely(f)) {
		qos_flow_account(f, p);
		return;
	}
	/* a full table (a flood of new flows) must not cost a lock per packet */
	if (atomic_read(&qos_nobjs) >= READ_ONCE(qos_max_flows)) {
		this_cpu_inc(qos_stats->table_full);
		return;
	}
	spin_lock_bh(&b->lock);
	f = qos_find(b, &p->key);	/* another CPU may have entered it */
	if (f) {
		qos_flow_account(f, p);
		goto out;
	}
	if (atomic_inc_return(&qos_nobjs) > READ_ONCE(qos_max_flows)) {
		atomic_dec(&qos_nobjs);
		this_cpu_inc(qos_stats->table_full);
		goto out;
	}
	f = kmem_cache_alloc(qos_flow_cache, GFP_ATOMIC);
	if (!f) {
		atomic_dec(&qos_nobjs);
		this_cpu_inc(qos_stats->table_full);
		goto out;
	}
	f->key = p->key;
	atomic64_set(&f->packets, p->segs);
	f->last = jiffies;
	f->closing = p->fin || p->rst;
	hlist_add_head_rcu(&f->node, &b->head);
	atomic_inc(&qos_ntable);
	this_cpu_inc(qos_stats->created);
out:
	spin_unlock_bh(&b->lock);
}

static bool qos_expired(const struct qos_flow *f, unsigned long now,
			unsigned long idle)
{
	unsigned long last = READ_ONCE(f->last);

	if (READ_ONCE(f->closing) && time_after(now, last + QOS_CLOSE_GRACE))
		return true;
	return time_after(now, last + idle);
}

/*
 * Remove the entries for which match() holds; returns how many.
 * Context: softirq or process context; takes bucket locks with BH off.
 */
static unsigned int qos_flows_sweep(bool (*match)(const struct qos_flow *f,
						  const void *arg),
				    const void *arg)
{
	unsigned int i, n = 0;

	for (i = 0; i < qos_nbuckets; i++) {
		struct qos_bucket *b = &qos_buckets[i];
		struct hlist_node *tmp;
		struct qos_flow *f;

		if (hlist_empty(&b->head))
			continue;
		spin_lock_bh(&b->lock);
		hlist_for_each_entry_safe(f, tmp, &b->head, node) {
			if (match(f, arg)) {
				qos_flow_remove(f);
				n++;
			}
		}
		spin_unlock_bh(&b->lock);
	}
	return n;
}

struct qos_gc_arg {
	unsigned long now;
	unsigned long idle;
};

static bool qos_gc_match(const struct qos_flow *f, const void *arg)
{
	const struct qos_gc_arg *a = arg;

	return qos_expired(f, a->now, a->idle);
}

/**
 * qos_flows_gc() - remove idle flows and closed ones past their grace
 *
 * Context: the periodic timer (softirq).
 */
void qos_flows_gc(void)
{
	struct qos_gc_arg a = {
		.now = jiffies,
		.idle = max(1U, READ_ONCE(qos_idle_timeout)) * HZ,
	};
	unsigned int n;

	if (!atomic_read(&qos_ntable))
		return;
	n = qos_flows_sweep(qos_gc_match, &a);
	if (n)
		this_cpu_add(qos_stats->collected, n);
}

static bool qos_net_match(const struct qos_flow *f, const void *net)
{
	return f->key.net == net;
}

/**
 * qos_flows_flush_net() - remove every flow of a network namespace
 * @net: the namespace (only compared)
 *
 * Context: process context.
 */
void qos_flows_flush_net(const struct net *net)
{
	if (atomic_read(&qos_ntable))
		qos_flows_sweep(qos_net_match, net);
}

/**
 * qos_flows_count() - entries in the table now
 *
 * Return: the number of flows tracked.
 */
unsigned int qos_flows_count(void)
{
	return atomic_read(&qos_ntable);
}

/**
 * qos_flows_init() - allocate the counters and the table for max_flows entries
 *
 * Return: 0 or -ENOMEM.
 */
int qos_flows_init(void)
{
	unsigned int i, n;

	BUILD_BUG_ON(sizeof(struct qos_key) % sizeof(u32));
	qos_stats = alloc_percpu(struct qos_stats);
	if (!qos_stats)
		return -ENOMEM;
	n = clamp(qos_max_flows, QOS_MIN_BUCKETS, QOS_MAX_BUCKETS);
	qos_nbuckets = roundup_pow_of_two(n);
	qos_buckets = kvcalloc(qos_nbuckets, sizeof(*qos_buckets), GFP_KERNEL);
	if (!qos_buckets)
		goto err_stats;
	for (i = 0; i < qos_nbuckets; i++) {
		spin_lock_init(&qos_buckets[i].lock);
		INIT_HLIST_HEAD(&qos_buckets[i].head);
	}
	/* its own cache: its active objects show the table's memory */
	qos_flow_cache = KMEM_CACHE(qos_flow, 0);
	if (!qos_flow_cache)
		goto err_buckets;
	qos_hash_seed = get_random_u32();
	return 0;

err_buckets:
	kvfree(qos_buckets);
err_stats:
	free_percpu(qos_stats);
	return -ENOMEM;
}

static bool qos_all_match(const struct qos_flow *f, const void *arg)
{
	return true;
}

/**
 * qos_flows_exit() - free every flow, the table and the counters
 *
 * Context: process context, after the hook and the timer are gone.
 */
void qos_flows_exit(void)
{
	qos_flows_sweep(qos_all_match, NULL);
	rcu_barrier();	/* every qos_flow_free() has run */
	WARN_ON(atomic_read(&qos_nobjs));
	kmem_cache_destroy(qos_flow_cache);
	kvfree(qos_buckets);
	free_percpu(qos_stats);
}
