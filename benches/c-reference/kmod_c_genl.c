// SPDX-License-Identifier: GPL-2.0
/*
 * kmod_c_genl: kmod-genl written in C, for the benchmarks only.
 *
 * The same behaviour as kmod-genl (kmod-genl/kmod_genl.rs), under the family
 * name "c_genl": version 1, one command ECHO (1) whose NUL-terminated string
 * attribute MSG (1, at most 16384 characters) is validated strictly by the
 * core and returned with genlmsg_reply(); a missing MSG gets -EINVAL with an
 * extended-ack message. `cargo xtask bench` measures the Rust abstraction
 * against it in the same boot ("anchor" group, client "c-genl").
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

static const struct nla_policy echo_policy[C_GENL_A_MAX + 1] = {
	[C_GENL_A_MSG] = { .type = NLA_NUL_STRING, .len = MAX_MSG_LEN },
};

static struct genl_family family;

static int echo_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *attr = info->attrs[C_GENL_A_MSG];
	struct sk_buff *reply;
	void *hdr;

	if (!attr) {
		NL_SET_ERR_MSG(info->extack, "missing attribute MSG");
		return -EINVAL;
	}
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
}

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

	if (!err)
		pr_info("registered generic netlink family %s\n", family.name);
	return err;
}

static void __exit c_genl_exit(void)
{
	genl_unregister_family(&family);
}

module_init(c_genl_init);
module_exit(c_genl_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Generic netlink echo in C: the benchmarks' reference for kmod-genl");
