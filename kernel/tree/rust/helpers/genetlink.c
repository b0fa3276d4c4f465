// SPDX-License-Identifier: GPL-2.0
/*
 * netlink-rosetta: wrappers of the generic netlink static inlines that
 * `kernel::net::genetlink` calls.
 */

#ifdef CONFIG_NET

#include <net/genetlink.h>

struct sk_buff *rust_helper_genlmsg_new(size_t payload, gfp_t flags)
{
	return genlmsg_new(payload, flags);
}

void *rust_helper_genlmsg_put_reply(struct sk_buff *skb, struct genl_info *info,
				    const struct genl_family *family, int flags,
				    u8 cmd)
{
	return genlmsg_put_reply(skb, info, family, flags, cmd);
}

void rust_helper_genlmsg_end(struct sk_buff *skb, void *hdr)
{
	genlmsg_end(skb, hdr);
}

int rust_helper_genlmsg_reply(struct sk_buff *skb, struct genl_info *info)
{
	return genlmsg_reply(skb, info);
}

#endif /* CONFIG_NET */
