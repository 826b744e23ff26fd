// SPDX-License-Identifier: GPL-2.0
/*
 * bugmod: a throw-away module with three deliberate bugs, one per load, that
 * the debug kernel's detectors must catch by name (tests/vm/test_debug_selftest.py).
 * Built and loaded only by that self-test, never with the project's modules.
 *
 *   insmod bugmod.ko bug=oob    a one-byte read past a kmalloc'ed buffer (KASAN)
 *   insmod bugmod.ko bug=rcu    rcu_dereference() outside rcu_read_lock() (lockdep)
 *   insmod bugmod.ko bug=leak   allocations whose pointers are dropped (kmemleak)
 */
#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/string.h>

static char *bug = "";
module_param(bug, charp, 0444);
MODULE_PARM_DESC(bug, "which bug to commit at load: oob, rcu or leak");

#define BUGMOD_SIZE 8
#define BUGMOD_LEAKS 8

struct bugmod_val {
	int v;
};

static struct bugmod_val __rcu *bugmod_ptr;

static noinline int bugmod_oob(void)
{
	size_t len = BUGMOD_SIZE;
	char *buf = kmalloc(len, GFP_KERNEL);
	char c;

	if (!buf)
		return -ENOMEM;
	memset(buf, 0, len);
	OPTIMIZER_HIDE_VAR(len);
	c = READ_ONCE(buf[len]);	/* one byte past the end */
	kfree(buf);
	return c == 0x7f;
}

static noinline int bugmod_rcu(void)
{
	struct bugmod_val *val = kzalloc(sizeof(*val), GFP_KERNEL);
	int v;

	if (!val)
		return -ENOMEM;
	rcu_assign_pointer(bugmod_ptr, val);
	v = rcu_dereference(bugmod_ptr)->v;	/* no rcu_read_lock() */
	RCU_INIT_POINTER(bugmod_ptr, NULL);
	synchronize_rcu();
	kfree(val);
	return v;
}

static noinline int bugmod_leak(void)
{
	int i;

	for (i = 0; i < BUGMOD_LEAKS; i++) {
		void *p = kmalloc(64 + i, GFP_KERNEL);

		if (!p)
			return -ENOMEM;
		memset(p, 0xa5, 64 + i);
		OPTIMIZER_HIDE_VAR(p);	/* and forgotten */
	}
	return 0;
}

static int __init bugmod_init(void)
{
	int ret = -EINVAL;

	if (!strcmp(bug, "oob"))
		ret = bugmod_oob();
	else if (!strcmp(bug, "rcu"))
		ret = bugmod_rcu();
	else if (!strcmp(bug, "leak"))
		ret = bugmod_leak();
	pr_info("bugmod: committed bug '%s'\n", bug);
	return ret < 0 ? ret : 0;
}

static void __exit bugmod_exit(void)
{
}

module_init(bugmod_init);
module_exit(bugmod_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Deliberate bugs for the debug kernel's self-test");
