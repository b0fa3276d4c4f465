// SPDX-License-Identifier: GPL-2.0
/*
 * kmod_c_kthread: kmod-kthread (kmod-kthread/kmod_kthread.rs) in C, the twin
 * to read beside it: an echo server on a raw netlink unit whose input
 * callback queues the requests for a kernel thread that sends the replies.
 *
 * The answers are kmod_c_raw's: for every request of a datagram
 * (proto::raw_echoes), the same type, sequence number and payload,
 * addressed to the sender's port id as the netlink core recorded it; an ack
 * after the reply for NLM_F_ACK; -EMSGSIZE for a payload longer than 16384
 * bytes; other messages only acked if they ask for it. The callback puts
 * each request in a bounded queue and wakes the thread; a full queue
 * answers at once with -ENOBUFS ("request queue full, try again"). The
 * thread sleeps on a wait queue until there is work or kthread_stop(): no
 * polling. What the callback answers itself (-EMSGSIZE, -ENOBUFS, acks of
 * messages that are not requests) can therefore overtake the answers to
 * earlier requests that are still queued. At unload, requests still queued
 * are dropped (their senders are gone) and counted in the kernel log:
 * "kmod_c_kthread: stopping: 64 queued requests dropped". Each reply and ack
 * is a datagram of its own: the Rust twin's coalesce=1 has no C counterpart.
 *
 * After each echo, the thread sends the listeners of multicast group 1
 * (proto::RAW_GROUP) a copy of the reply, as kmod_c_raw does: the same
 * type, payload and sequence number, flags 0, and the requester's port id
 * in nlmsg_pid. Unprivileged sockets may listen (NL_CFG_F_NONROOT_RECV).
 *
 * It serves unit 29 by default, so that it runs beside kmod-kthread (25) in
 * one boot; the unit and the queue's capacity are module parameters:
 * `insmod kmod_c_kthread.ko unit=28 capacity=16`. Run it with the C
 * client (c/clients/raw_client.c; user-raw prints the same):
 *
 *   $ cargo xtask build
 *   $ cargo xtask vm --modules c-kthread -- \
 *         target/c-clients/raw_client --module kthread --unit 29 "hello netlink"
 *   module kthread: netlink unit 29, portid 118
 *   echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
 *
 * and the kernel log shows "kmod_c_kthread: echo on netlink unit 29, queue
 * of 256". A unit that another module serves fails the load with EBUSY and
 * logs "kmod_c_kthread: cannot serve netlink unit 25: error -16".
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kthread.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/netlink.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <net/net_namespace.h>
#include <net/netlink.h>
#include <net/netns/generic.h>
#include <net/sock.h>

static int unit = 29;
module_param(unit, int, 0444);
MODULE_PARM_DESC(unit, "Netlink protocol unit to serve");

static unsigned int capacity = 256;
module_param(capacity, uint, 0444);
MODULE_PARM_DESC(capacity, "How many requests may wait for the thread");

#define MAX_PAYLOAD 16384
#define ARTICLES_MSG_TYPE 0
#define RAW_GROUP 1

/* ANCHOR: pernet */
/* The unit's kernel socket in each network namespace. */
struct c_kthread_net {
	struct sock *sk;
};

static unsigned int c_kthread_net_id;
/* ANCHOR_END: pernet */

static struct task_struct *thread;

/* proto::raw_echoes */
static bool echoes(const struct nlmsghdr *nlh)
{
	return nlh->nlmsg_type == ARTICLES_MSG_TYPE ||
	       (nlh->nlmsg_type >= NLMSG_MIN_TYPE &&
		(nlh->nlmsg_flags & NLM_F_REQUEST));
}

/* ANCHOR: queue */
/*
 * A request waiting for the thread. The callback's skb is freed when the
 * callback returns, so the request must outlive it: the queue keeps the skb
 * itself (skb_get()), as the Rust twin's MessageCopy does, and a reference
 * on the sender's socket, which netlink_ack() reads (for NETLINK_CAP_ACK),
 * and the thread calls netlink_ack() as kmod_c_raw does: its acks and
 * errors are the same bytes by construction, and it echoes straight from
 * the skb. The price: a queued request holds its whole datagram and the
 * sender's socket until it is answered; the capacity bounds how many do.
 * The skb is charged to the kernel socket that received it (skb->sk), which
 * it must not outlive: the requests are freed before the sockets are
 * released (c_kthread_exit()); the Rust twin holds a reference on that
 * socket instead. A request also holds its network namespace, as the Rust
 * twin's MessageCopy does: the namespace's kernel socket (which the thread
 * replies through) stays until the request is answered, even if the
 * namespace's last process is gone.
 */
struct request {
	struct list_head list;
	struct sk_buff *skb;	/* the datagram, held with skb_get() */
	struct nlmsghdr *nlh;	/* the request, inside it */
	struct net *net;	/* its namespace, held with get_net_track() */
	netns_tracker ns_tracker;
};

static LIST_HEAD(requests);
static unsigned int queued;
static DEFINE_SPINLOCK(lock);
static DECLARE_WAIT_QUEUE_HEAD(work);

/* Queues nlh, a message of the datagram skb, and wakes the thread. */
static int push(struct sk_buff *skb, struct nlmsghdr *nlh)
{
	struct request *req;

	if (nlmsg_len(nlh) > MAX_PAYLOAD)
		return -EMSGSIZE;
	req = kmalloc(sizeof(*req), GFP_KERNEL);
	if (!req)
		return -ENOMEM;
	spin_lock(&lock);
	if (queued >= capacity) {
		spin_unlock(&lock);
		kfree(req);
		return -ENOBUFS;
	}
	/* The sender waits in its sendmsg(): its socket is alive. */
	sock_hold(NETLINK_CB(skb).sk);
	req->net = get_net_track(sock_net(skb->sk), &req->ns_tracker, GFP_ATOMIC);
	req->skb = skb_get(skb);
	req->nlh = nlh;
	list_add_tail(&req->list, &requests);
	queued++;
	spin_unlock(&lock);
	wake_up(&work);
	return 0;
}

static void free_request(struct request *req)
{
	sock_put(NETLINK_CB(req->skb).sk);
	consume_skb(req->skb);
	put_net_track(req->net, &req->ns_tracker);
	kfree(req);
}
/* ANCHOR_END: queue */

/* ANCHOR: receive */
/* The input callback: it runs in the sender's sendmsg(). It walks the
 * datagram as netlink_rcv_skb() does.
 */
static void input(struct sk_buff *skb)
{
	while (skb->len >= NLMSG_HDRLEN) {
		struct nlmsghdr *nlh = nlmsg_hdr(skb);
		u32 msglen;
		int err;

		if (nlh->nlmsg_len < NLMSG_HDRLEN || skb->len < nlh->nlmsg_len)
			return;
		if (echoes(nlh)) {
			struct netlink_ext_ack extack = {};

			/* The thread answers queued requests, acks included. */
			err = push(skb, nlh);
			if (err == -EMSGSIZE)
				NL_SET_ERR_MSG(&extack, "payload longer than 16384 bytes");
			else if (err == -ENOBUFS)
				NL_SET_ERR_MSG(&extack, "request queue full, try again");
			if (err)
				netlink_ack(skb, nlh, err, &extack);
		} else if (nlh->nlmsg_flags & NLM_F_ACK) {
			netlink_ack(skb, nlh, 0, NULL);
		}
		msglen = NLMSG_ALIGN(nlh->nlmsg_len);
		if (msglen > skb->len)
			msglen = skb->len;
		skb_pull(skb, msglen);
	}
}
/* ANCHOR_END: receive */

/* ANCHOR: broadcast */
/*
 * From the thread: sends the listeners of RAW_GROUP a copy of the reply to nlh, a request
 * from portid: the same type, sequence number and payload, flags 0, and
 * the requester's port id in nlmsg_pid. Built only if someone listens.
 */
static void broadcast(struct sock *sk, u32 portid, const struct nlmsghdr *nlh)
{
	int len = nlmsg_len(nlh);
	struct sk_buff *skb;
	struct nlmsghdr *copy;

	if (!netlink_has_listeners(sk, RAW_GROUP))
		return;
	skb = nlmsg_new(len, GFP_KERNEL);
	if (!skb)
		goto lost;
	copy = nlmsg_put(skb, portid, nlh->nlmsg_seq, nlh->nlmsg_type, len, 0);
	if (!copy) {
		nlmsg_free(skb);
		goto lost;
	}
	memcpy(nlmsg_data(copy), nlmsg_data(nlh), len);
	/*
	 * nlmsg_multicast(): netlink_broadcast() with the group recorded, which
	 * the listeners' recvmsg() reports in nl_groups. -ESRCH: the last
	 * listener left meanwhile.
	 */
	nlmsg_multicast(sk, skb, 0, RAW_GROUP, GFP_KERNEL);
	return;
lost:
	/* The listeners learn of the loss: their next recvmsg() fails with ENOBUFS. */
	netlink_set_err(sk, 0, RAW_GROUP, -ENOBUFS);
}
/* ANCHOR_END: broadcast */

/* ANCHOR: reply */

/* Echoes nlh, a message of the datagram in, with its own type, sequence
 * number and payload: kmod_c_raw's echo(), less the length check, which
 * push() made.
 */
static int echo(struct sk_buff *in, const struct nlmsghdr *nlh)
{
	u32 portid = NETLINK_CB(in).portid;
	int len = nlmsg_len(nlh);
	struct sk_buff *skb;
	struct nlmsghdr *rep;
	int err;

	skb = nlmsg_new(len, GFP_KERNEL);
	if (!skb)
		return -ENOMEM;
	rep = nlmsg_put(skb, portid, nlh->nlmsg_seq, nlh->nlmsg_type, len, 0);
	if (!rep) {
		nlmsg_free(skb);
		return -EMSGSIZE;
	}
	memcpy(nlmsg_data(rep), nlmsg_data(nlh), len);
	/* A receiver that is full learns of the loss (ENOBUFS). */
	err = nlmsg_unicast(in->sk, skb, portid);
	/* Echoed: the listeners hear of it even if the reply was lost. */
	broadcast(in->sk, portid, nlh);
	return err;
}

/* Echoes a request, then acks it if asked to. */
static void answer(struct request *req)
{
	int err = echo(req->skb, req->nlh);

	/*
	 * If even the error cannot be sent, the client's socket is full
	 * and netlink reports ENOBUFS to it, or memory ran out.
	 */
	if (err || (req->nlh->nlmsg_flags & NLM_F_ACK))
		netlink_ack(req->skb, req->nlh, err, NULL);
}
/* ANCHOR_END: reply */

/* ANCHOR: thread */
static int thread_fn(void *data)
{
	struct request *req, *next;
	LIST_HEAD(batch);

	for (;;) {
		/* Sleeps until there are requests, or kthread_stop(). */
		wait_event_interruptible(work, !list_empty(&requests) || kthread_should_stop());
		if (kthread_should_stop())
			return 0;
		/* Takes them all. */
		spin_lock(&lock);
		list_splice_init(&requests, &batch);
		queued = 0;
		spin_unlock(&lock);
		list_for_each_entry_safe(req, next, &batch, list) {
			list_del(&req->list);
			answer(req);
			free_request(req);
		}
	}
}
/* ANCHOR_END: thread */

/* ANCHOR: create */
/* A namespace appears (or exists when the module loads): its socket. */
static int __net_init c_kthread_net_init(struct net *net)
{
	struct c_kthread_net *kn = net_generic(net, c_kthread_net_id);
	struct netlink_kernel_cfg cfg = {
		.input = input,
		.groups = RAW_GROUP,
		/* Unprivileged sockets may join the group. */
		.flags = NL_CFG_F_NONROOT_RECV,
	};

	/*
	 * Every userspace socket of the unit pins this module, so no sender is
	 * left when it unloads. (C cannot refuse a unit registered without a
	 * kernel socket, as NETLINK_USERSOCK (2) is: see kmod_c_raw.c.)
	 */
	kn->sk = netlink_kernel_create(net, unit, &cfg);
	/* It gives no reason; a unit that another module serves is the usual one. */
	return kn->sk ? 0 : -EBUSY;
}

/* A namespace goes (or the module unloads): its socket goes first. */
static void __net_exit c_kthread_net_exit(struct net *net)
{
	struct c_kthread_net *kn = net_generic(net, c_kthread_net_id);

	netlink_kernel_release(kn->sk);
}

static struct pernet_operations c_kthread_net_ops = {
	.init = c_kthread_net_init,
	.exit = c_kthread_net_exit,
	.id = &c_kthread_net_id,
	.size = sizeof(struct c_kthread_net),
};

static int __init c_kthread_init(void)
{
	int err;

	/* Created asleep: it runs once the sockets exist. */
	thread = kthread_create(thread_fn, NULL, "kmod_c_kthread");
	if (IS_ERR(thread))
		return PTR_ERR(thread);
	/*
	 * Last, as nothing may fail once userspace can reach the unit: a
	 * socket in every namespace there is, then in every new one.
	 */
	err = register_pernet_subsys(&c_kthread_net_ops);
	if (err) {
		kthread_stop(thread);
		pr_err("cannot serve netlink unit %d: error %d\n", unit, err);
		return err;
	}
	wake_up_process(thread);
	pr_info("echo on netlink unit %d, queue of %u\n", unit, capacity);
	return 0;
}
/* ANCHOR_END: create */

/* ANCHOR: teardown */
static void __exit c_kthread_exit(void)
{
	struct request *req, *next;
	unsigned int dropped = 0;

	pr_info("releasing netlink unit %d\n", unit);
	/* Returns once the thread has exited. */
	kthread_stop(thread);
	/*
	 * The requests still queued are dropped unanswered: their senders are
	 * gone, as every userspace socket of the unit pins the module. Before
	 * the sockets are released: each skb is charged to one.
	 */
	list_for_each_entry_safe(req, next, &requests, list) {
		list_del(&req->list);
		free_request(req);
		dropped++;
	}
	if (dropped)
		pr_info("stopping: %u queued requests dropped\n", dropped);
	/* Every namespace's socket is released. */
	unregister_pernet_subsys(&c_kthread_net_ops);
}
/* ANCHOR_END: teardown */

module_init(c_kthread_init);
module_exit(c_kthread_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Raw netlink echo in C: a kernel thread sends the replies");
