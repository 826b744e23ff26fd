// SPDX-License-Identifier: GPL-2.0
/*
 * timer.c - periodic events for applications (the paper's
 * itm_register_timer), on top of kernel timers.
 */
#include <linux/module.h>
#include <linux/jiffies.h>
#include "itm.h"

static void itm_timer_fire(struct timer_list *tl)
{
	struct itm_timer *t = container_of(tl, struct itm_timer, timer);
	unsigned long next;

	t->func(t);
	if (READ_ONCE(t->stopping))
		return;
	/* Keep the period without drifting; skip missed beats. */
	next = t->timer.expires + t->period;
	if (time_before_eq(next, jiffies))
		next = jiffies + t->period;
	mod_timer(&t->timer, next);
}

/**
 * itm_register_timer() - start a periodic event
 * @t: the timer, embedded in the application's state
 * @func: called with @t every @timeout jiffies, in softirq context
 * @timeout: the period in jiffies, at least 1
 *
 * The first call comes @timeout jiffies from now.
 *
 * Context: any context.
 * Return: 0, or -EINVAL for a NULL @func or a zero @timeout.
 */
int itm_register_timer(struct itm_timer *t, void (*func)(struct itm_timer *t),
		       unsigned long timeout)
{
	if (!t || !func || !timeout || timeout > MAX_JIFFY_OFFSET)
		return -EINVAL;
	t->func = func;
	t->period = timeout;
	t->stopping = false;
	timer_setup(&t->timer, itm_timer_fire, 0);
	mod_timer(&t->timer, jiffies + timeout);
	return 0;
}
EXPORT_SYMBOL_GPL(itm_register_timer);

/**
 * itm_unregister_timer() - stop a periodic event
 * @t: a timer started with itm_register_timer()
 *
 * When this returns, @t's function is not running and will not run again.
 *
 * Context: process context; may sleep.  Not from @t's own function.
 */
void itm_unregister_timer(struct itm_timer *t)
{
	WRITE_ONCE(t->stopping, true);
	timer_shutdown_sync(&t->timer);
}
EXPORT_SYMBOL_GPL(itm_unregister_timer);
