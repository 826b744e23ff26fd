// SPDX-License-Identifier: GPL-2.0
/*
 * itm_queue - user-space applications registered with itm_mod.
 *
 * A process registers an application over the "itm_queue" generic netlink
 * family (netlink.c).  Each registration becomes a struct itm_info of type
 * user with a queue number of its own; its callbacks classify every packet
 * of the interest and return ITM_QUEUE, so itm_mod hands the packet to
 * nfnetlink_queue on that number, with the bypass flag: when nobody
 * listens, the packet passes.  An observer (an application that only
 * watches) gets a copy of each packet through nfnetlink_log instead, in
 * the group of the same number, and the packet goes on at once.  The
 * registration belongs to the netlink socket that made it and goes away
 * when that socket is released (the process exits or is killed), when its
 * network namespace goes away, or when this module is unloaded.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/ctype.h>
#include <linux/kmod.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <net/netfilter/nf_log.h>
#include <net/netns/generic.h>
#include "itm_queue.h"

static unsigned int queue_base = ITMQ_QUEUE_DEFAULT_BASE;
module_param(queue_base, uint, 0444);
MODULE_PARM_DESC(queue_base, "first nfqueue number assigned to applications (default 0x7000)");

static unsigned int queue_count = 1024;
module_param(queue_count, uint, 0444);
MODULE_PARM_DESC(queue_count, "how many queue numbers (and so applications) per network namespace");

/* serialises the registrations; taken before itm_mod's own lock */
static DEFINE_MUTEX(itmq_lock);
static LIST_HEAD(itmq_regs);

/*
 * Queue numbers are per network namespace, as nfnetlink_queue's queues
 * are: what one namespace takes, another still has.  A registration takes
 * a run of consecutive numbers (one per worker), so they are a bitmap of
 * queue_count bits (bit i: queue_base + i), under itmq_lock.
 */
static unsigned int itmq_net_id __read_mostly;

struct itmq_net {
	unsigned long *used;
};

static unsigned long *itmq_used(const struct net *net)
{
	struct itmq_net *qn = net_generic(net, itmq_net_id);

	return qn->used;
}

/* The first of @n free consecutive queues of @net, or -ENOSPC. */
static int itmq_take_queues(const struct net *net, unsigned int n)
{
	unsigned long *used = itmq_used(net);
	unsigned long i;

	lockdep_assert_held(&itmq_lock);
	i = bitmap_find_next_zero_area(used, queue_count, 0, n, 0);
	if (i >= queue_count)
		return -ENOSPC;
	bitmap_set(used, i, n);
	return queue_base + i;
}

static void itmq_put_queues(const struct itm_info *info)
{
	lockdep_assert_held(&itmq_lock);
	bitmap_clear(itmq_used(info->netns), info->queue_num - queue_base,
		     info->queue_count);
}

static int itmq_class(enum itm_hook where, struct sk_buff *skb,
		      const struct itm_ctx *ctx)
{
	/* itm_mod matched the interest: every such packet goes to user space */
	return 1;
}

static unsigned int itmq_process(enum itm_hook where, int class,
				 struct sk_buff *skb, const struct itm_ctx *ctx)
{
	return ITM_QUEUE;
}

/*
 * An observer's class_func: a copy to its nfnetlink_log group, prefixed with
 * its label, then class 0, so that itm_mod goes on with the packet.
 */
static int itmq_observe(enum itm_hook where, struct sk_buff *skb,
			const struct itm_ctx *ctx)
{
	const struct nf_hook_state *st = ctx->state;
	struct nf_loginfo li = {
		.type = NF_LOG_TYPE_ULOG,
		.u.ulog.group = ctx->info->queue_num,
	};

	if (st)
		nf_log_packet(st->net, st->pf, st->hook, skb, st->in, st->out,
			      &li, "%s", ctx->info->label);
	return 0;
}

static const u8 itmq_log_pf[] = { NFPROTO_IPV4, NFPROTO_IPV6 };

/* Hold the nfnetlink_log logger of each family the interest takes. */
static int itmq_get_loggers(struct itmq_reg *reg)
{
	u8 family = reg->info.interest.family;
	int i, err;

	for (i = 0; i < ARRAY_SIZE(itmq_log_pf); i++) {
		if ((family == AF_INET && i) || (family == AF_INET6 && !i))
			continue;
		err = nf_logger_find_get(itmq_log_pf[i], NF_LOG_TYPE_ULOG);
		if (err == -ENOENT) {
			request_module("nf-logger-%u-%u", itmq_log_pf[i],
				       NF_LOG_TYPE_ULOG);
			err = nf_logger_find_get(itmq_log_pf[i], NF_LOG_TYPE_ULOG);
		}
		if (err)
			return err;
		reg->loggers |= BIT(i);
	}
	return 0;
}

static void itmq_put_loggers(struct itmq_reg *reg)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(itmq_log_pf); i++)
		if (reg->loggers & BIT(i))
			nf_logger_put(itmq_log_pf[i], NF_LOG_TYPE_ULOG);
	reg->loggers = 0;
}

static void itmq_free(struct itmq_reg *reg)
{
	itmq_put_loggers(reg);
	kfree(reg);
}

static bool itmq_label_valid(const char *label)
{
	const char *p;

	if (!*label)
		return false;
	for (p = label; *p; p++)
		if (!isalnum(*p) && *p != '_' && *p != '.' && *p != '-')
			return false;
	return true;
}

/**
 * itmq_register() - register a user-space application with itm_mod
 * @net: network namespace of the registering socket
 * @portid: netlink port of the registering socket (the owner)
 * @req: label, hook, priority and interest
 * @queue_num: where to write the first queue number assigned
 * @pid: where to write the pid recorded for the application
 * @extack: for the error message
 *
 * Labels and queue numbers are per network namespace: a registration in
 * one namespace can neither take a label nor a queue number from another.
 * An application drained by several worker processes asks for
 * @req->queue_count queues: it gets that many consecutive numbers from
 * *@queue_num on, and itm_mod spreads its packets over them by flow.  An
 * observer (@req->observer) gets copies in nfnetlink_log group *@queue_num
 * (loaded on demand) and its packets go on at once.
 *
 * Context: process context (the registering process); sleeps.
 * Return: 0, -EINVAL (bad label, interest or queue count), -EEXIST (label
 * taken in @net), -ENOSPC (not enough consecutive queue numbers left in
 * @net), -ENOENT (an observer, and no nfnetlink_log) or -ENOMEM.
 */
int itmq_register(struct net *net, u32 portid, const struct itmq_request *req,
		  u16 *queue_num, pid_t *pid, struct netlink_ext_ack *extack)
{
	struct itmq_reg *reg;
	int err, q;

	if (!itmq_label_valid(req->label)) {
		NL_SET_ERR_MSG(extack,
			       "label: letters, digits, '_', '.' and '-' only, not empty");
		return -EINVAL;
	}
	/* charged to the caller's memory cgroup: it may be in a container */
	if (!req->queue_count || req->queue_count > ITMQ_MAX_QUEUES) {
		NL_SET_ERR_MSG(extack, "queue-count: 1 to 64 queues");
		return -EINVAL;
	}
	if (req->observer && req->queue_count > 1) {
		NL_SET_ERR_MSG(extack, "an observer has one log group, not several queues");
		return -EINVAL;
	}
	reg = kzalloc(sizeof(*reg), GFP_KERNEL_ACCOUNT);
	if (!reg)
		return -ENOMEM;
	strscpy(reg->info.label, req->label, sizeof(reg->info.label));
	reg->info.type = ITM_TYPE_USER;
	reg->info.interest = req->interest;
	reg->info.pid = task_tgid_nr(current);
	reg->info.priority = req->priority;
	reg->info.queue_count = req->queue_count;
	reg->info.netns = net;
	reg->info.owner = THIS_MODULE;
	if (req->observer) {
		reg->info.class_func = itmq_observe;
		err = itmq_get_loggers(reg);
		if (err) {
			itmq_free(reg);
			NL_SET_ERR_MSG(extack,
				       "an observer needs nfnetlink_log, which is not available");
			return err;
		}
	} else {
		reg->info.class_func = itmq_class;
		reg->info.process_func = itmq_process;
	}
	reg->portid = portid;

	mutex_lock(&itmq_lock);
	q = itmq_take_queues(net, req->queue_count);
	if (q < 0) {
		mutex_unlock(&itmq_lock);
		itmq_free(reg);
		NL_SET_ERR_MSG(extack,
			       "not enough free queue numbers in this namespace (module parameter queue_count)");
		return q;
	}
	reg->info.queue_num = q;
	err = itm_register_hook(req->hook, &reg->info);
	if (!err)
		list_add_tail(&reg->node, &itmq_regs);
	else
		itmq_put_queues(&reg->info);
	mutex_unlock(&itmq_lock);
	switch (err) {
	case 0:
		*queue_num = q;
		*pid = reg->info.pid;
		pr_debug("%s registered at hook %d, queue %d, portid %u\n",
			 req->label, req->hook, q, portid);
		return 0;
	case -EEXIST:
		NL_SET_ERR_MSG(extack, "an application with this label is registered already");
		break;
	case -EINVAL:
		NL_SET_ERR_MSG(extack, "itm_mod refused the interest");
		break;
	default:
		NL_SET_ERR_MSG(extack, "itm_mod could not register the application");
	}
	itmq_free(reg);
	return err;
}

static void itmq_remove(struct itmq_reg *reg)
{
	lockdep_assert_held(&itmq_lock);
	list_del(&reg->node);
	itm_unregister_hook(&reg->info);
	pr_debug("%s unregistered (queues %u, %u of them)\n", reg->info.label,
		 reg->info.queue_num, reg->info.queue_count);
	itmq_put_queues(&reg->info);
	itmq_free(reg);
}

/**
 * itmq_unregister() - remove an application registered on a socket
 * @net: network namespace of the socket
 * @portid: netlink port of the socket
 * @label: the application's label
 *
 * Context: process context; sleeps.
 * Return: 0, or -ENOENT when the socket owns no application @label.
 */
int itmq_unregister(struct net *net, u32 portid, const char *label)
{
	struct itmq_reg *reg;
	int err = -ENOENT;

	mutex_lock(&itmq_lock);
	list_for_each_entry(reg, &itmq_regs, node) {
		if (net_eq(reg->info.netns, net) && reg->portid == portid &&
		    !strcmp(reg->info.label, label)) {
			itmq_remove(reg);
			err = 0;
			break;
		}
	}
	mutex_unlock(&itmq_lock);
	return err;
}

/* Remove the registrations of one socket, of one namespace (!portid), or all (!net). */
static void itmq_remove_owned(const struct net *net, u32 portid)
{
	struct itmq_reg *reg, *tmp;

	mutex_lock(&itmq_lock);
	list_for_each_entry_safe(reg, tmp, &itmq_regs, node) {
		if (net && !net_eq(reg->info.netns, net))
			continue;
		if (portid && reg->portid != portid)
			continue;
		itmq_remove(reg);
	}
	mutex_unlock(&itmq_lock);
}

/*
 * A netlink socket went away.  Called in process context from
 * netlink_release() through a blocking notifier chain, so sleeping (the
 * RCU grace period of itm_unregister_hook()) is allowed.
 */
static int itmq_netlink_event(struct notifier_block *nb, unsigned long event,
			      void *ptr)
{
	struct netlink_notify *n = ptr;

	if (event != NETLINK_URELEASE || n->protocol != NETLINK_GENERIC ||
	    !n->portid)
		return NOTIFY_DONE;
	itmq_remove_owned(n->net, n->portid);
	return NOTIFY_DONE;
}

static struct notifier_block itmq_netlink_notifier = {
	.notifier_call = itmq_netlink_event,
};

static int __net_init itmq_net_init(struct net *net)
{
	struct itmq_net *qn = net_generic(net, itmq_net_id);

	qn->used = bitmap_zalloc(queue_count, GFP_KERNEL_ACCOUNT);
	return qn->used ? 0 : -ENOMEM;
}

static void __net_exit itmq_net_exit(struct net *net)
{
	struct itmq_net *qn = net_generic(net, itmq_net_id);

	itmq_remove_owned(net, 0);
	bitmap_free(qn->used);
}

static struct pernet_operations itmq_net_ops = {
	.init = itmq_net_init,
	.exit = itmq_net_exit,
	.id = &itmq_net_id,
	.size = sizeof(struct itmq_net),
};

static int __init itmq_init(void)
{
	int err;

	if (!queue_count || queue_base + queue_count - 1 > U16_MAX ||
	    queue_base + queue_count < queue_base) {
		pr_err("queue_base %u + queue_count %u must stay within 0..65535\n",
		       queue_base, queue_count);
		return -EINVAL;
	}
	err = register_pernet_subsys(&itmq_net_ops);
	if (err)
		return err;
	err = netlink_register_notifier(&itmq_netlink_notifier);
	if (err)
		goto err_pernet;
	err = itmq_genl_init();
	if (err)
		goto err_notifier;
	pr_info("ready (queues %u..%u)\n", queue_base, queue_base + queue_count - 1);
	return 0;

err_notifier:
	netlink_unregister_notifier(&itmq_netlink_notifier);
err_pernet:
	unregister_pernet_subsys(&itmq_net_ops);
	return err;
}

static void __exit itmq_exit(void)
{
	/*
	 * No new registration, then no socket event; the exit of every
	 * namespace then removes what is left there.
	 */
	itmq_genl_exit();
	netlink_unregister_notifier(&itmq_netlink_notifier);
	unregister_pernet_subsys(&itmq_net_ops);
}

module_init(itmq_init);
module_exit(itmq_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("itmBench developers");
MODULE_DESCRIPTION("Internet Traffic Manager: user-space applications through nfnetlink_queue");
MODULE_ALIAS_GENL_FAMILY(ITMQ_FAMILY_NAME);
