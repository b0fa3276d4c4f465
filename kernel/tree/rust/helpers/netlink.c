// SPDX-License-Identifier: GPL-2.0
/*
 * netlink-rosetta: wrappers of the netlink static inlines and macros that
 * `kernel::net::raw_netlink` calls, and the input callback of every Rust kernel
 * netlink socket. Where an inline is one call to an exported function
 * (nlmsg_unicast(), nlmsg_put() after its room check, nlmsg_new()) or a
 * cast (NETLINK_CB(), nlmsg_data()), the Rust side does it itself: a
 * wrapper here is a call that C does not make, on every message.
 */

#ifdef CONFIG_NET

#include <linux/netlink.h>
#include <linux/srcu.h>
#include <net/netlink.h>
#include <net/sock.h>

/*
 * `nl_table` and `nl_table_lock` are exported, but `struct netlink_table`
 * is private to net/netlink/: its header is the only way to read whether a
 * unit is registered.
 */
#include "../../net/netlink/af_netlink.h"

int rust_helper_nlmsg_multicast(struct sock *sk, struct sk_buff *skb,
				u32 portid, unsigned int group, gfp_t flags)
{
	return nlmsg_multicast(sk, skb, portid, group, flags);
}

void rust_helper_nlmsg_free(struct sk_buff *skb)
{
	nlmsg_free(skb);
}

unsigned int rust_helper_skb_tailroom(const struct sk_buff *skb)
{
	return skb_tailroom(skb);
}

unsigned int rust_helper_skb_end_offset(const struct sk_buff *skb)
{
	return skb_end_offset(skb);
}

/*
 * Whether netlink unit `unit` is registered by anybody but `module`: a kernel
 * socket of another module (in any network namespace), code built into the
 * kernel (whose module is NULL), or the boot-time registration without a
 * socket (NETLINK_USERSOCK). A kernel socket created for a unit registered
 * by somebody else only bumps the count: it neither records its module (so
 * userspace sockets of the unit would not pin it) nor its configuration.
 * A module's own sockets in other namespaces do not count.
 */
bool rust_helper_netlink_unit_taken(int unit, struct module *module)
{
	unsigned long flags;
	bool taken;

	read_lock_irqsave(&nl_table_lock, flags);
	taken = nl_table[unit].registered &&
		(!module || nl_table[unit].module != module);
	read_unlock_irqrestore(&nl_table_lock, flags);
	return taken;
}

/*
 * Whether the userspace socket `sk` asked for capped error messages
 * (NETLINK_CAP_ACK), as netlink_ack() reads it.
 */
bool rust_helper_netlink_caps_acks(const struct sock *sk)
{
	return nlk_test_bit(CAP_ACK, (struct sock *)sk);
}

/*
 * Tells the userspace socket `sk` that an answer for it was lost: its next
 * recvmsg() fails with ENOBUFS. What netlink_ack() does when it cannot
 * allocate the answer.
 */
void rust_helper_netlink_report_loss(struct sock *sk)
{
	WRITE_ONCE(sk->sk_err, ENOBUFS);
	sk_error_report(sk);
}

struct sk_buff *rust_helper_skb_get(struct sk_buff *skb)
{
	return skb_get(skb);
}

#ifndef CONFIG_TRACEPOINTS
/* A function of its own with tracepoints, an inline without. */
void rust_helper_consume_skb(struct sk_buff *skb)
{
	consume_skb(skb);
}
#endif

void rust_helper_sock_hold(struct sock *sk)
{
	sock_hold(sk);
}

void rust_helper_sock_put(struct sock *sk)
{
	sock_put(sk);
}

/*
 * The input callback of every Rust kernel netlink socket.
 *
 * The netlink core may call a kernel socket's input callback after the
 * socket was released (a sender that looked it up holds a reference), and
 * senders of a unit whose module is not recorded (see above) do not pin the
 * module. So the core never calls module code directly: it calls this
 * function, built into the kernel, which finds the handler in
 * `sk_user_data` and calls it only inside an SRCU read-side critical
 * section. The owner unpublishes the handler, then waits with
 * rust_helper_netlink_input_sync() before freeing it or letting its module
 * go.
 *
 * The handler is a pointer to a function pointer, called with that pointer:
 * Rust publishes a struct whose first field is the function.
 */
typedef void (*rust_netlink_input_fn)(void *handler, struct sk_buff *skb);

DEFINE_STATIC_SRCU(rust_netlink_srcu);

static int rust_netlink_not_ready(struct sk_buff *skb, struct nlmsghdr *nlh,
				  struct netlink_ext_ack *extack)
{
	NL_SET_ERR_MSG(extack, "netlink unit not ready, try again");
	return -EAGAIN;
}

void rust_helper_netlink_input(struct sk_buff *skb)
{
	rust_netlink_input_fn *handler;
	int idx;

	idx = srcu_read_lock(&rust_netlink_srcu);
	handler = srcu_dereference(__sk_user_data(skb->sk), &rust_netlink_srcu);
	if (handler)
		(*handler)(handler, skb);
	else
		/* Being created or released: answer as the core would. */
		netlink_rcv_skb(skb, rust_netlink_not_ready);
	srcu_read_unlock(&rust_netlink_srcu, idx);
}

void rust_helper_netlink_set_input(struct sock *sk, void *handler)
{
	rcu_assign_pointer(__sk_user_data(sk), handler);
}

/* Waits until no handler unpublished before the call is running. */
void rust_helper_netlink_input_sync(void)
{
	synchronize_srcu(&rust_netlink_srcu);
}

#endif /* CONFIG_NET */
