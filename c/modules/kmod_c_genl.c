// SPDX-License-Identifier: GPL-2.0
/*
 * kmod_c_genl: kmod-genl (kmod-genl/kmod_genl.rs) in C, the twin to read
 * beside it: a generic netlink family with one command, ECHO (1), that
 * returns its string attribute MSG (1).
 *
 * MSG is a NUL-terminated string of at most 16384 characters; the generic
 * netlink core validates it against the command's policy before the handler
 * runs, and rejects unknown attributes (strict validation, the default for
 * a new family). The reply goes through genlmsg_reply() with command ECHO
 * and the same MSG, the request's sequence number and the requester's port
 * id. A missing MSG gets -EINVAL with an extended-ack message naming it; an
 * unknown command gets -EOPNOTSUPP from the core.
 *
 * The family is called "c_genl" (version 1), so that it runs beside
 * kmod-genl's "my_genl" in one boot. Run it with the C client
 * (c/clients/libnl_genl_client.c):
 *
 *   $ cargo xtask build
 *   $ cargo xtask vm --modules c-genl -- \
 *         target/c-clients/libnl_genl_client --family c_genl "hello netlink"
 *   module genl: family c_genl id 25, portid 1583734903
 *   echo seq 1764355246: sent 13 bytes, received 13 bytes: "hello netlink"
 *   ack seq 1764355246: ok
 *
 * and the kernel log shows "kmod_c_genl: registered generic netlink family
 * c_genl". `cargo xtask bench` measures kmod-genl against it (anchor
 * "c-genl").
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <net/genetlink.h>

enum {
	C_GENL_A_UNSPEC,
	C_GENL_A_MSG,
	__C_GENL_A_MAX,
};
#define C_GENL_A_MAX (__C_GENL_A_MAX - 1)

#define C_GENL_C_ECHO 1
#define MAX_MSG_LEN 16384

static struct genl_family family;

/* ANCHOR: receive */
/* The ECHO handler: the core has validated the attributes already. */
static int echo_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *attr;
	struct sk_buff *reply;
	void *hdr;

	if (GENL_REQ_ATTR_CHECK(info, C_GENL_A_MSG)) {
		NL_SET_ERR_MSG(info->extack, "missing attribute MSG");
		return -EINVAL;
	}
	attr = info->attrs[C_GENL_A_MSG];
	/* ANCHOR_END: receive */
	/* ANCHOR: reply */
	reply = genlmsg_new(nla_total_size(nla_len(attr)), GFP_KERNEL);
	if (!reply)
		return -ENOMEM;
	hdr = genlmsg_put_reply(reply, info, &family, 0, C_GENL_C_ECHO);
	if (!hdr || nla_put_string(reply, C_GENL_A_MSG, nla_data(attr))) {
		nlmsg_free(reply);
		return -EMSGSIZE;
	}
	genlmsg_end(reply, hdr);
	return genlmsg_reply(reply, info);
	/* ANCHOR_END: reply */
}

/* ANCHOR: create */
static const struct nla_policy echo_policy[C_GENL_A_MAX + 1] = {
	[C_GENL_A_MSG] = { .type = NLA_NUL_STRING, .len = MAX_MSG_LEN },
};

static const struct genl_ops ops[] = {
	{
		.cmd = C_GENL_C_ECHO,
		.doit = echo_doit,
		.policy = echo_policy,
		.maxattr = C_GENL_A_MAX,
	},
};

static struct genl_family family = {
	.name = "c_genl",
	.version = 1,
	.maxattr = C_GENL_A_MAX,
	.netnsok = true,
	.parallel_ops = true,
	.ops = ops,
	.n_ops = ARRAY_SIZE(ops),
	.module = THIS_MODULE,
};

static int __init c_genl_init(void)
{
	int err = genl_register_family(&family);

	if (err)
		return err;
	pr_info("registered generic netlink family %s\n", family.name);
	return 0;
}
/* ANCHOR_END: create */

/* ANCHOR: teardown */
static void __exit c_genl_exit(void)
{
	pr_info("unregistering generic netlink family %s\n", family.name);
	genl_unregister_family(&family);
}
/* ANCHOR_END: teardown */

module_init(c_genl_init);
module_exit(c_genl_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Generic netlink echo in C: family c_genl, command ECHO");
