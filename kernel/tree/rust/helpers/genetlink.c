// SPDX-License-Identifier: GPL-2.0
/*
 * netlink-rosetta: wrappers of the generic netlink static inlines that
 * `kernel::net::netlink` (generic netlink) calls. Those that are one call
 * to an exported function (genlmsg_new(), genlmsg_put_reply(),
 * genlmsg_reply(), genl_has_listeners()) the Rust side makes itself.
 */

#ifdef CONFIG_NET

#include <net/genetlink.h>

void rust_helper_genlmsg_end(struct sk_buff *skb, void *hdr)
{
	genlmsg_end(skb, hdr);
}

void rust_helper_genlmsg_cancel(struct sk_buff *skb, void *hdr)
{
	genlmsg_cancel(skb, hdr);
}

int rust_helper_genlmsg_multicast_netns(const struct genl_family *family,
					struct net *net, struct sk_buff *skb,
					u32 portid, unsigned int group,
					gfp_t flags)
{
	return genlmsg_multicast_netns(family, net, skb, portid, group, flags);
}

struct net *rust_helper_genl_info_net(const struct genl_info *info)
{
	return genl_info_net(info);
}

int rust_helper_genl_set_err(const struct genl_family *family,
			     struct net *net, u32 portid, u32 group, int code)
{
	return genl_set_err(family, net, portid, group, code);
}

const struct genl_info *rust_helper_genl_info_dump(struct netlink_callback *cb)
{
	return genl_info_dump(cb);
}

void rust_helper_genl_dump_check_consistent(struct netlink_callback *cb,
					    void *user_hdr)
{
	genl_dump_check_consistent(cb, user_hdr);
}

#endif /* CONFIG_NET */
