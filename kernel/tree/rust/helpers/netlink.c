// SPDX-License-Identifier: GPL-2.0
/*
 * netlink-rosetta: wrappers of the netlink static inlines and macros that
 * `kernel::net::netlink` calls. Each one is the C it wraps, nothing more.
 */

#include <linux/netlink.h>
#include <linux/rcupdate.h>
#include <net/netlink.h>
#include <net/sock.h>

struct netlink_skb_parms *rust_helper_NETLINK_CB(struct sk_buff *skb)
{
	return &NETLINK_CB(skb);
}

struct sk_buff *rust_helper_nlmsg_new(size_t payload, gfp_t flags)
{
	return nlmsg_new(payload, flags);
}

struct nlmsghdr *rust_helper_nlmsg_put(struct sk_buff *skb, u32 portid,
				       u32 seq, int type, int payload,
				       int flags)
{
	return nlmsg_put(skb, portid, seq, type, payload, flags);
}

void *rust_helper_nlmsg_data(const struct nlmsghdr *nlh)
{
	return nlmsg_data(nlh);
}

int rust_helper_nlmsg_unicast(struct sock *sk, struct sk_buff *skb, u32 portid)
{
	return nlmsg_unicast(sk, skb, portid);
}

void rust_helper_nlmsg_free(struct sk_buff *skb)
{
	nlmsg_free(skb);
}

/*
 * The data of a kernel netlink socket's input callback, published in
 * `sk_user_data` with RCU: readers take a reference inside an RCU read-side
 * critical section, the owner unpublishes it and waits for a grace period
 * before it drops its own reference.
 */
void rust_helper_netlink_set_user_data(struct sock *sk, void *data)
{
	rcu_assign_sk_user_data(sk, data);
}

void *rust_helper_netlink_user_data(const struct sock *sk)
{
	return rcu_dereference_sk_user_data(sk);
}

unsigned int rust_helper_skb_tailroom(const struct sk_buff *skb)
{
	return skb_tailroom(skb);
}
