// SPDX-License-Identifier: GPL-2.0
/*
 * kmod_c_raw: kmod-raw written in C, for the benchmarks only.
 *
 * The same behaviour as kmod-raw (kmod-raw/kmod_raw.rs): for every request
 * of a datagram (NLM_F_REQUEST and a type of at least NLMSG_MIN_TYPE, or
 * type 0 with any flags, as proto::raw_echoes says), a reply with the same
 * type, sequence number and payload, addressed to the sender's port id; an
 * ack after it for NLM_F_ACK; -EMSGSIZE above 16384 bytes, with an extended
 * ack; other messages only acked, for NLM_F_ACK. It serves unit 30 by
 * default, so that `cargo xtask bench` can measure the Rust abstraction
 * against plain C in the same boot ("anchor" group, client "c-module").
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/netlink.h>
#include <net/net_namespace.h>
#include <net/netlink.h>
#include <net/sock.h>

static int unit = 30;
module_param(unit, int, 0444);
MODULE_PARM_DESC(unit, "Netlink protocol unit to serve");

#define MAX_PAYLOAD 16384
#define ARTICLES_MSG_TYPE 0

/* proto::raw_echoes */
static bool echoes(const struct nlmsghdr *nlh)
{
	return nlh->nlmsg_type == ARTICLES_MSG_TYPE ||
	       (nlh->nlmsg_type >= NLMSG_MIN_TYPE &&
		(nlh->nlmsg_flags & NLM_F_REQUEST));
}

static struct sock *nl_sock;

static int echo(struct sk_buff *in, const struct nlmsghdr *nlh)
{
	u32 portid = NETLINK_CB(in).portid;
	int len = nlmsg_len(nlh);
	struct sk_buff *skb;
	struct nlmsghdr *rep;

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
	return nlmsg_unicast(in->sk, skb, portid);
}

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

static int __init c_raw_init(void)
{
	struct netlink_kernel_cfg cfg = { .input = input };

	nl_sock = netlink_kernel_create(&init_net, unit, &cfg);
	if (!nl_sock)
		return -EBUSY;
	pr_info("echo on netlink unit %d\n", unit);
	return 0;
}

static void __exit c_raw_exit(void)
{
	netlink_kernel_release(nl_sock);
}

module_init(c_raw_init);
module_exit(c_raw_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Raw netlink echo in C: the benchmarks' reference for kmod-raw");
