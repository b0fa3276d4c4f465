// SPDX-License-Identifier: GPL-2.0
/* netlink-rosetta: the RCU read-side helpers that Linux 6.13 added upstream. */

#include <linux/rcupdate.h>

void rust_helper_rcu_read_lock(void)
{
	rcu_read_lock();
}

void rust_helper_rcu_read_unlock(void)
{
	rcu_read_unlock();
}
