// SPDX-License-Identifier: GPL-2.0
/*
 * itm_test_app - a configurable application for itm_mod's tests.
 *
 * Loaded with a description of several applications, for example
 *
 *   insmod itm_test_app.ko \
 *     apps="label=a,hook=post,prio=5,proto=udp,dport=5000-5001,class=1;label=b,..."
 *
 * it registers each one and records what its callbacks saw in debugfs:
 *   /sys/kernel/debug/itm_test_app/events  callback calls in order
 *	(one line "label callback class"; write anything to clear)
 *   /sys/kernel/debug/itm_test_app/stats   per-application call counts
 *   /sys/kernel/debug/itm_test_app/timers_off  write to stop every timer
 *
 * Keys: label, hook (pre|in|fwd|out|post), prio, family (0|4|6),
 * proto (tcp|udp|icmp|icmpv6|number), src and dst (address[/prefix]),
 * sport and dport (port or lo-hi), class (what class_func returns),
 * verdict (accept|drop|stolen), null (callbacks left NULL, joined with
 * '+': class+log+process+update+control), timer (period in ms).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/inet.h>
#include <linux/in.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include "itm.h"

#define TA_MAX_APPS 16
#define TA_RING 1024

enum ta_cb { TA_CLASS, TA_LOG, TA_PROCESS, TA_UPDATE, TA_CONTROL, TA_TIMER, TA_NCB };
static const char * const ta_cb_names[TA_NCB] = {
	"class", "log", "process", "update", "control", "timer"
};

struct ta_app {
	struct itm_info info;
	struct itm_timer timer;
	int class;
	unsigned int verdict;
	bool timer_on;
	atomic64_t calls[TA_NCB];
};

struct ta_event {
	u8 app;
	u8 cb;
	int class;
};

static char *apps;
module_param(apps, charp, 0444);
MODULE_PARM_DESC(apps, "the applications to register (see the file's header)");

static struct ta_app *ta_apps;
static int ta_napps;
static struct dentry *ta_dir;
static DEFINE_SPINLOCK(ta_lock);
static struct ta_event ta_ring[TA_RING];
static unsigned int ta_head, ta_count;

static void ta_record(const struct itm_ctx *ctx, enum ta_cb cb, int class)
{
	struct ta_app *app = container_of(ctx->info, struct ta_app, info);
	unsigned long flags;

	atomic64_inc(&app->calls[cb]);
	spin_lock_irqsave(&ta_lock, flags);
	ta_ring[ta_head] = (struct ta_event){ app - ta_apps, cb, class };
	ta_head = (ta_head + 1) % TA_RING;
	if (ta_count < TA_RING)
		ta_count++;
	spin_unlock_irqrestore(&ta_lock, flags);
}

static int ta_class(enum itm_hook where, struct sk_buff *skb,
		    const struct itm_ctx *ctx)
{
	int class = container_of(ctx->info, struct ta_app, info)->class;

	ta_record(ctx, TA_CLASS, class);
	return class;
}

static void ta_log(enum itm_hook where, int class, struct sk_buff *skb,
		   const struct itm_ctx *ctx)
{
	ta_record(ctx, TA_LOG, class);
}

static unsigned int ta_process(enum itm_hook where, int class,
			       struct sk_buff *skb, const struct itm_ctx *ctx)
{
	unsigned int verdict = container_of(ctx->info, struct ta_app, info)->verdict;

	ta_record(ctx, TA_PROCESS, class);
	if (verdict == ITM_STOLEN)
		kfree_skb(skb);
	return verdict;
}

static void ta_update(enum itm_hook where, int class, struct sk_buff *skb,
		      const struct itm_ctx *ctx)
{
	ta_record(ctx, TA_UPDATE, class);
}

static void ta_control(enum itm_hook where, int class, struct sk_buff *skb,
		       const struct itm_ctx *ctx)
{
	ta_record(ctx, TA_CONTROL, class);
}

static void ta_timer_fn(struct itm_timer *t)
{
	struct ta_app *app = container_of(t, struct ta_app, timer);
	const struct itm_ctx ctx = { .info = &app->info };

	ta_record(&ctx, TA_TIMER, 0);
}

static int ta_parse_hook(const char *v, enum itm_hook *hook)
{
	static const char * const names[ITM_NUM_HOOKS] = {
		"pre", "in", "fwd", "out", "post"
	};
	int i = match_string(names, ITM_NUM_HOOKS, v);

	if (i < 0)
		return -EINVAL;
	*hook = i;
	return 0;
}

static int ta_parse_proto(const char *v, u8 *proto)
{
	if (!strcmp(v, "tcp"))
		*proto = IPPROTO_TCP;
	else if (!strcmp(v, "udp"))
		*proto = IPPROTO_UDP;
	else if (!strcmp(v, "icmp"))
		*proto = IPPROTO_ICMP;
	else if (!strcmp(v, "icmpv6"))
		*proto = IPPROTO_ICMPV6;
	else
		return kstrtou8(v, 0, proto);
	return 0;
}

static int ta_parse_ports(char *v, u16 *lo, u16 *hi)
{
	char *dash = strchr(v, '-');
	int err;

	if (dash)
		*dash++ = '\0';
	err = kstrtou16(v, 0, lo);
	if (err)
		return err;
	return dash ? kstrtou16(dash, 0, hi) : (*hi = *lo, 0);
}

/* "address[/prefix]" for the interest's family (set family first) */
static int ta_parse_addr(char *v, u8 family, struct in6_addr *addr,
			 struct in6_addr *mask)
{
	char *slash = strchr(v, '/');
	unsigned int plen, bits, i;
	int err;

	if (slash)
		*slash++ = '\0';
	memset(addr, 0, sizeof(*addr));
	memset(mask, 0, sizeof(*mask));
	if (family == AF_INET) {
		if (!in4_pton(v, -1, addr->s6_addr, -1, NULL))
			return -EINVAL;
		bits = 32;
	} else if (family == AF_INET6) {
		if (!in6_pton(v, -1, addr->s6_addr, -1, NULL))
			return -EINVAL;
		bits = 128;
	} else {
		return -EINVAL;
	}
	plen = bits;
	if (slash) {
		err = kstrtouint(slash, 10, &plen);
		if (err || plen > bits)
			return -EINVAL;
	}
	for (i = 0; i < plen; i++)
		mask->s6_addr[i / 8] |= 0x80 >> (i % 8);
	return 0;
}

static int ta_parse_null(char *v, struct itm_info *info)
{
	char *name;

	while ((name = strsep(&v, "+"))) {
		if (!strcmp(name, "class"))
			info->class_func = NULL;
		else if (!strcmp(name, "log"))
			info->log_func = NULL;
		else if (!strcmp(name, "process"))
			info->process_func = NULL;
		else if (!strcmp(name, "update"))
			info->update_func = NULL;
		else if (!strcmp(name, "control"))
			info->control_func = NULL;
		else
			return -EINVAL;
	}
	return 0;
}

static int ta_parse_kv(struct ta_app *app, char *key, char *v)
{
	struct itm_info *info = &app->info;
	struct itm_interest *in = &info->interest;
	unsigned int ms;
	int err = 0;

	if (!strcmp(key, "label"))
		err = strscpy(info->label, v, sizeof(info->label)) < 0 ? -E2BIG : 0;
	else if (!strcmp(key, "hook"))
		err = ta_parse_hook(v, &info->hook);
	else if (!strcmp(key, "prio"))
		err = kstrtos32(v, 0, &info->priority);
	else if (!strcmp(key, "family"))
		err = kstrtou8(v, 0, &in->family) ?:
		      (in->family = in->family == 4 ? AF_INET :
				    in->family == 6 ? AF_INET6 : in->family, 0);
	else if (!strcmp(key, "proto"))
		err = ta_parse_proto(v, &in->protocol);
	else if (!strcmp(key, "src"))
		err = ta_parse_addr(v, in->family, &in->saddr, &in->smask);
	else if (!strcmp(key, "dst"))
		err = ta_parse_addr(v, in->family, &in->daddr, &in->dmask);
	else if (!strcmp(key, "sport"))
		err = ta_parse_ports(v, &in->sport_min, &in->sport_max);
	else if (!strcmp(key, "dport"))
		err = ta_parse_ports(v, &in->dport_min, &in->dport_max);
	else if (!strcmp(key, "class"))
		err = kstrtoint(v, 0, &app->class);
	else if (!strcmp(key, "verdict"))
		err = !strcmp(v, "accept") ? (app->verdict = ITM_ACCEPT, 0) :
		      !strcmp(v, "drop") ? (app->verdict = ITM_DROP, 0) :
		      !strcmp(v, "stolen") ? (app->verdict = ITM_STOLEN, 0) :
		      -EINVAL;
	else if (!strcmp(key, "null"))
		err = ta_parse_null(v, info);
	else if (!strcmp(key, "timer"))
		err = kstrtouint(v, 0, &ms) ?:
		      (app->timer.period = msecs_to_jiffies(ms), app->timer_on = ms > 0, 0);
	else
		err = -EINVAL;
	if (err)
		pr_err("bad value for %s: %s\n", key, v);
	return err;
}

static int ta_parse_app(struct ta_app *app, char *desc)
{
	char *kv;
	int err;

	app->info.type = ITM_TYPE_KERNEL;
	app->info.owner = THIS_MODULE;
	app->info.hook = ITM_POST_ROUTING;
	app->info.class_func = ta_class;
	app->info.log_func = ta_log;
	app->info.process_func = ta_process;
	app->info.update_func = ta_update;
	app->info.control_func = ta_control;
	app->class = 1;
	app->verdict = ITM_ACCEPT;
	while ((kv = strsep(&desc, ","))) {
		char *v = strchr(kv, '=');

		if (!v) {
			pr_err("expected key=value, got '%s'\n", kv);
			return -EINVAL;
		}
		*v++ = '\0';
		err = ta_parse_kv(app, kv, v);
		if (err)
			return err;
	}
	return 0;
}

static int ta_events_show(struct seq_file *m, void *v)
{
	unsigned int i, start;
	unsigned long flags;
	struct ta_event *copy;
	unsigned int n;

	copy = kmalloc_array(TA_RING, sizeof(*copy), GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	spin_lock_irqsave(&ta_lock, flags);
	n = ta_count;
	start = (ta_head + TA_RING - n) % TA_RING;
	for (i = 0; i < n; i++)
		copy[i] = ta_ring[(start + i) % TA_RING];
	spin_unlock_irqrestore(&ta_lock, flags);
	for (i = 0; i < n; i++)
		seq_printf(m, "%s %s %d\n", ta_apps[copy[i].app].info.label,
			   ta_cb_names[copy[i].cb], copy[i].class);
	kfree(copy);
	return 0;
}

static int ta_events_open(struct inode *inode, struct file *file)
{
	return single_open(file, ta_events_show, NULL);
}

static ssize_t ta_events_write(struct file *file, const char __user *buf,
			       size_t len, loff_t *ppos)
{
	unsigned long flags;

	spin_lock_irqsave(&ta_lock, flags);
	ta_head = 0;
	ta_count = 0;
	spin_unlock_irqrestore(&ta_lock, flags);
	return len;
}

static const struct file_operations ta_events_fops = {
	.owner = THIS_MODULE,
	.open = ta_events_open,
	.read = seq_read,
	.write = ta_events_write,
	.llseek = seq_lseek,
	.release = single_release,
};

static int ta_stats_show(struct seq_file *m, void *v)
{
	int i, cb;

	for (i = 0; i < ta_napps; i++) {
		seq_printf(m, "%s", ta_apps[i].info.label);
		for (cb = 0; cb < TA_NCB; cb++)
			seq_printf(m, " %s=%lld", ta_cb_names[cb],
				   (long long)atomic64_read(&ta_apps[i].calls[cb]));
		seq_putc(m, '\n');
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(ta_stats);

static DEFINE_MUTEX(ta_timer_lock);	/* timer_on against timers_off */

static void ta_stop_timer(struct ta_app *app)
{
	mutex_lock(&ta_timer_lock);
	if (app->timer_on)
		itm_unregister_timer(&app->timer);
	app->timer_on = false;
	mutex_unlock(&ta_timer_lock);
}

static ssize_t ta_timers_off_write(struct file *file, const char __user *buf,
				   size_t len, loff_t *ppos)
{
	int i;

	for (i = 0; i < ta_napps; i++)
		ta_stop_timer(&ta_apps[i]);
	return len;
}

static const struct file_operations ta_timers_off_fops = {
	.owner = THIS_MODULE,
	.write = ta_timers_off_write,
};

static void ta_unregister(int n)
{
	while (n-- > 0) {
		ta_stop_timer(&ta_apps[n]);
		itm_unregister_hook(&ta_apps[n].info);
	}
}

static int __init ta_init(void)
{
	char *copy, *cur, *desc;
	int err = 0;

	if (!apps || !*apps) {
		pr_err("nothing to do: give apps=\"label=...;...\"\n");
		return -EINVAL;
	}
	ta_apps = kcalloc(TA_MAX_APPS, sizeof(*ta_apps), GFP_KERNEL);
	copy = kstrdup(apps, GFP_KERNEL);
	if (!ta_apps || !copy) {
		err = -ENOMEM;
		goto out;
	}
	cur = copy;
	while ((desc = strsep(&cur, ";"))) {
		struct ta_app *app;

		if (!*desc)
			continue;
		if (ta_napps == TA_MAX_APPS) {
			err = -E2BIG;
			break;
		}
		app = &ta_apps[ta_napps];
		err = ta_parse_app(app, desc);
		if (err)
			break;
		err = itm_register_hook(app->info.hook, &app->info);
		if (err) {
			pr_err("itm_register_hook(%s): %d\n", app->info.label, err);
			break;
		}
		ta_napps++;
		if (app->timer_on) {
			err = itm_register_timer(&app->timer, ta_timer_fn,
						 app->timer.period);
			if (err) {
				app->timer_on = false;
				break;
			}
		}
	}
	if (err) {
		ta_unregister(ta_napps);
		goto out;
	}
	ta_dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	debugfs_create_file("events", 0600, ta_dir, NULL, &ta_events_fops);
	debugfs_create_file("stats", 0400, ta_dir, NULL, &ta_stats_fops);
	debugfs_create_file("timers_off", 0200, ta_dir, NULL, &ta_timers_off_fops);
out:
	kfree(copy);
	if (err)
		kfree(ta_apps);
	return err;
}

static void __exit ta_exit(void)
{
	debugfs_remove(ta_dir);
	ta_unregister(ta_napps);
	kfree(ta_apps);
}

module_init(ta_init);
module_exit(ta_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("itm_mod test application (records its callbacks)");
