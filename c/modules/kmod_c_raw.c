// SPDX-License-Identifier: GPL-2.0
/*
 * kmod_c_raw: kmod-raw (kmod-raw/kmod_raw.rs) in C, the twin to read beside
 * it: an echo server on a raw netlink unit whose input callback replies
 * directly.
 *
 * For every request of a datagram, a reply with the same type, sequence
 * number and payload, addressed to the sender's port id as the netlink core
 * recorded it (NETLINK_CB(skb).portid, not the nlmsg_pid the sender wrote);
 * an ack after it for NLM_F_ACK; -EMSGSIZE with an extended ack for a
 * payload longer than 16384 bytes. A request is what netlink_rcv_skb()
 * would hand to its callback (NLM_F_REQUEST, a type of at least
 * NLMSG_MIN_TYPE), and type 0 with any flags, which the original articles'
 * clients send (proto::raw_echoes in proto/src/wire.rs). Other messages are
 * only acked, if they ask for it. Each reply and ack is a datagram of its
 * own: the Rust twin's coalesce=1 has no C counterpart here.
 *
 * After each echo, the listeners of multicast group 1 (proto::RAW_GROUP)
 * get a copy of the reply: the same type, payload and sequence number,
 * flags 0, and the requester's port id in nlmsg_pid. Unprivileged sockets
 * may listen (NL_CFG_F_NONROOT_RECV); the copy is built only if one does.
 *
 * It serves unit 30 by default, so that it runs beside kmod-raw (31) in one
 * boot; `insmod kmod_c_raw.ko unit=28` picks another. Run it with the C
 * client (c/clients/raw_client.c; user-raw prints the same):
 *
 *   $ cargo xtask build
 *   $ cargo xtask vm --modules c-raw -- target/c-clients/raw_client --unit 30 "hello netlink"
 *   module raw: netlink unit 30, portid 118
 *   echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
 *
 * (`raw_client --unit 30 --subscribe` prints the copies: "event seq 1
 * portid 118: "hello netlink"") and the kernel log shows "kmod_c_raw: echo
 * on netlink unit 30". A unit
 * that another module serves fails the load with EBUSY and logs
 * "kmod_c_raw: cannot serve netlink unit 31: error -16". `cargo xtask bench`
 * measures kmod-raw against it (anchor "c-module").
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/netlink.h>
#include <net/net_namespace.h>
#include <net/netlink.h>
#include <net/netns/generic.h>
#include <net/sock.h>

static int unit = 30;
module_param(unit, int, 0444);
MODULE_PARM_DESC(unit, "Netlink protocol unit to serve");

#define MAX_PAYLOAD 16384
#define ARTICLES_MSG_TYPE 0
#define RAW_GROUP 1

/* ANCHOR: pernet */
/* The unit's kernel socket in each network namespace. */
struct c_raw_net {
	struct sock *sk;
};

static unsigned int c_raw_net_id;
/* ANCHOR_END: pernet */

/* proto::raw_echoes */
static bool echoes(const struct nlmsghdr *nlh)
{
	return nlh->nlmsg_type == ARTICLES_MSG_TYPE ||
	       (nlh->nlmsg_type >= NLMSG_MIN_TYPE &&
		(nlh->nlmsg_flags & NLM_F_REQUEST));
}

/* ANCHOR: broadcast */
/*
 * Sends the listeners of RAW_GROUP a copy of the reply to nlh, a request
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
 * number and payload.
 */
static int echo(struct sk_buff *in, const struct nlmsghdr *nlh)
{
	u32 portid = NETLINK_CB(in).portid;
	int len = nlmsg_len(nlh);
	struct sk_buff *skb;
	struct nlmsghdr *rep;
	int err;

	if (len > MAX_PAYLOAD)
		return -EMSGSIZE;
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
/* ANCHOR_END: reply */

/* ANCHOR: receive */
/* The input callback: it runs in the sender's sendmsg(), and the skb is
 * freed when it returns. It walks the datagram as netlink_rcv_skb() does.
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

			err = echo(skb, nlh);
			if (err == -EMSGSIZE)
				NL_SET_ERR_MSG(&extack, "payload longer than 16384 bytes");
			if (err || (nlh->nlmsg_flags & NLM_F_ACK))
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

/* ANCHOR: create */
/* A namespace appears (or exists when the module loads): its socket. */
static int __net_init c_raw_net_init(struct net *net)
{
	struct c_raw_net *rn = net_generic(net, c_raw_net_id);
	struct netlink_kernel_cfg cfg = {
		.input = input,
		.groups = RAW_GROUP,
		/* Unprivileged sockets may join the group. */
		.flags = NL_CFG_F_NONROOT_RECV,
	};

	/*
	 * Every userspace socket of the unit pins this module (THIS_MODULE,
	 * which netlink_kernel_create() passes on), so no sender is left when
	 * it unloads. Unlike the Rust twin, C cannot refuse a unit registered
	 * without a kernel socket, as NETLINK_USERSOCK (2) is (struct
	 * netlink_table is private to net/netlink/): it would serve it unpinned.
	 */
	rn->sk = netlink_kernel_create(net, unit, &cfg);
	/* It gives no reason; a unit that another module serves is the usual one. */
	return rn->sk ? 0 : -EBUSY;
}

/* A namespace goes (or the module unloads): its socket goes first. */
static void __net_exit c_raw_net_exit(struct net *net)
{
	struct c_raw_net *rn = net_generic(net, c_raw_net_id);

	netlink_kernel_release(rn->sk);
}

static struct pernet_operations c_raw_net_ops = {
	.init = c_raw_net_init,
	.exit = c_raw_net_exit,
	.id = &c_raw_net_id,
	.size = sizeof(struct c_raw_net),
};

static int __init c_raw_init(void)
{
	/*
	 * Last, as nothing may fail once userspace can reach the unit: a
	 * socket in every namespace there is, then in every new one.
	 */
	int err = register_pernet_subsys(&c_raw_net_ops);

	if (err) {
		pr_err("cannot serve netlink unit %d: error %d\n", unit, err);
		return err;
	}
	pr_info("echo on netlink unit %d\n", unit);
	return 0;
}
/* ANCHOR_END: create */

/* ANCHOR: teardown */
static void __exit c_raw_exit(void)
{
	pr_info("releasing netlink unit %d\n", unit);
	/* Every namespace's socket is released. */
	unregister_pernet_subsys(&c_raw_net_ops);
}
/* ANCHOR_END: teardown */

module_init(c_raw_init);
module_exit(c_raw_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Raw netlink echo in C: the input callback replies directly");
