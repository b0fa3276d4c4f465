// SPDX-License-Identifier: GPL-2.0
/*
 * netlink-rosetta: wrappers of the network-namespace static inlines that
 * `kernel::net::namespace` calls.
 */

#ifdef CONFIG_NET

#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>

struct net *rust_helper_get_net_track(struct net *net, netns_tracker *tracker,
				      gfp_t gfp)
{
	return get_net_track(net, tracker, gfp);
}

void rust_helper_put_net_track(struct net *net, netns_tracker *tracker)
{
	put_net_track(net, tracker);
}

struct net *rust_helper_sock_net(const struct sock *sk)
{
	return sock_net(sk);
}

/*
 * net_generic(), which trusts `id`, checked: NULL when the namespace's array
 * has no slot `id` yet, or when the pernet operations with that id have not
 * been initialised for it (their area is assigned just before their init).
 * Never NULL for a namespace whose init of those operations ran.
 */
void *rust_helper_net_generic_checked(const struct net *net, unsigned int id)
{
	struct net_generic *ng;
	void *ptr = NULL;

	rcu_read_lock();
	ng = rcu_dereference(net->gen);
	if (id < ng->s.len)
		ptr = ng->ptr[id];
	rcu_read_unlock();
	return ptr;
}

#endif /* CONFIG_NET */
