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

/// Highest attribute number of the family (`EXMPL_A_MAX`).
pub const GENL_ATTR_MAX: u16 = GENL_ATTR_MSG;

/// The message type the project's clients send to the raw units.
///
/// `NLMSG_MIN_TYPE` (0x10), the first type that is not a netlink control
/// message. The raw modules echo any non-control type, including type 0 that
/// the original articles' C clients send.
pub const ECHO_MSG_TYPE: u16 = 0x10;

/// Largest payload, in bytes, of one raw echo request. Longer payloads are
/// answered with `NLMSG_ERROR` -EMSGSIZE.
pub const MAX_PAYLOAD: usize = 16384;

/// Longest `MSG` string of a generic netlink echo, in characters, not
/// counting the terminating NUL. The same limit as [`MAX_PAYLOAD`].
pub const MAX_MSG_LEN: usize = MAX_PAYLOAD;
