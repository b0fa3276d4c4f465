// SPDX-License-Identifier: GPL-2.0
//
// The netlink-rosetta wire contract. Plain constants with no attributes, no
// `use` and no dependencies: `proto/src/lib.rs` includes this file for the
// userspace clients, and the kernel crates include it with `#[path]`.

/// Netlink protocol unit of `kmod-raw`: the input callback replies directly.
pub const RAW_UNIT: i32 = 31;

/// Netlink protocol unit of `kmod-kthread`: a kernel thread sends the replies.
pub const KTHREAD_UNIT: i32 = 25;

/// Name of the generic netlink family registered by `kmod-genl`.
pub const GENL_FAMILY_NAME: &str = "my_genl";

/// Version of the generic netlink family.
pub const GENL_FAMILY_VERSION: u8 = 1;

/// Generic netlink command: echo the `MSG` attribute (`EXMPL_C_ECHO`).
pub const GENL_CMD_ECHO: u8 = 1;

/// Generic netlink attribute: a NUL-terminated string (`EXMPL_A_MSG`).
pub const GENL_ATTR_MSG: u16 = 1;

/// Generic netlink command: read the echo log (`GET`).
///
/// As a `do` request with an [`GENL_ATTR_ID`] attribute it returns that
/// entry (command `GET`, attributes `ID`, `MSG`, `PORTID`), or -ENOENT with
/// an extended-ack message naming the entry when the log no longer (or not
/// yet) holds it; without `ID`, -EINVAL with the missing-attribute extended
/// ack. As a dump (`NLM_F_DUMP`) it returns every entry of the log, oldest
/// first, one message each, flagged `NLM_F_MULTI`, then `NLMSG_DONE`; the
/// messages built after the log changed during the dump carry
/// `NLM_F_DUMP_INTR`.
pub const GENL_CMD_GET: u8 = 2;

/// Generic netlink command of the notifications sent to the
/// [`GENL_MCGRP_EVENTS`] group after each echo: attributes `ID`, `MSG`,
/// `PORTID` of the new log entry.
pub const GENL_CMD_EVENT: u8 = 3;

/// Generic netlink attribute: the id of an echo log entry (u32). Ids start
/// at 1 and increase by one with each echo.
pub const GENL_ATTR_ID: u16 = 2;

/// Generic netlink attribute: the port id of the socket that sent the echo
/// (u32).
pub const GENL_ATTR_PORTID: u16 = 3;

/// Highest attribute number of the family (`EXMPL_A_MAX` was 1: the
/// articles' client parses only `MSG`, which keeps its number).
pub const GENL_ATTR_MAX: u16 = GENL_ATTR_PORTID;

/// Name of the multicast group of the family: a notification
/// ([`GENL_CMD_EVENT`]) after each echo.
pub const GENL_MCGRP_EVENTS: &str = "events";

/// How many echoes the echo log of the generic netlink family keeps: the
/// last ones, the oldest dropped first.
pub const ECHO_LOG_LEN: usize = 1024;

/// Multicast group of the raw units (`NETLINK_ADD_MEMBERSHIP` takes this
/// number, `bind()`'s `nl_groups` the mask `1 << (RAW_GROUP - 1)`):
/// after each echo, a copy of the reply (same type, payload and sequence
/// number, flags 0, `nlmsg_pid` the requester's port id) goes to the unit's
/// listeners. Unprivileged sockets may listen.
pub const RAW_GROUP: u32 = 1;

/// The message type the project's clients send to the raw units.
///
/// `NLMSG_MIN_TYPE` (0x10): the types below it are reserved for netlink
/// control messages (`NLMSG_NOOP` 1 to `NLMSG_OVERRUN` 4 so far).
pub const ECHO_MSG_TYPE: u16 = 0x10;

/// The message type the original articles' C clients send to the raw
/// units: 0, with no flags (a plain `sendmsg()`) or with `NLM_F_REQUEST |
/// NLM_F_ACK` (libnl's `nl_send_simple()`).
pub const ARTICLES_MSG_TYPE: u16 = 0;

/// Whether a raw unit echoes a message of type `ty` with flags `flags`.
///
/// What `netlink_rcv_skb()` hands to its callback: a request
/// (`NLM_F_REQUEST`, 0x1) of a type that is not reserved (at least
/// `NLMSG_MIN_TYPE`, 0x10); and, for the original articles' clients,
/// [`ARTICLES_MSG_TYPE`] whatever its flags. Every other message is only
/// acknowledged, when it asks for it (`NLM_F_ACK`), as `netlink_rcv_skb()`
/// does.
pub const fn raw_echoes(ty: u16, flags: u16) -> bool {
    ty == ARTICLES_MSG_TYPE || (ty >= 0x10 && flags & 0x1 != 0)
}

/// Largest payload, in bytes, of one raw echo request. Longer payloads are
/// answered with `NLMSG_ERROR` -EMSGSIZE.
pub const MAX_PAYLOAD: usize = 16384;

/// Longest `MSG` string of a generic netlink echo, in characters, not
/// counting the terminating NUL. The same limit as [`MAX_PAYLOAD`].
pub const MAX_MSG_LEN: usize = MAX_PAYLOAD;
