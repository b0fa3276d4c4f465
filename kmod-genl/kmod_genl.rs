// SPDX-License-Identifier: GPL-2.0

//! kmod-genl: a generic netlink family, `my_genl` version 1, with one
//! command, ECHO (1), that returns its string attribute MSG (1).
//!
//! MSG is a NUL-terminated string of at most 16384 characters; the generic
//! netlink core validates it against the command's policy before the handler
//! runs, and rejects unknown attributes (strict validation, the default for a
//! new family). The reply goes through `genlmsg_reply()` with command ECHO and
//! the same MSG, the request's sequence number and the requester's port id.
//! A missing MSG gets -EINVAL with an extended-ack message naming it; an
//! unknown command gets -EOPNOTSUPP from the core. The original article's
//! libnl-genl client (`EXMPL_C_ECHO` = 1, `EXMPL_A_MSG` = 1) works unchanged.
//!
//! Run it (the VM boots the project's kernel, inserts the module, runs the
//! command, removes the module):
//!
//! ```text
//! $ cargo xtask vm --modules genl -- genl ctrl get name my_genl
//! Name: my_genl
//!     ID: 0x19  Version: 0x1  header size: 0  max attribs: 1
//!     commands supported:
//!         #1:  ID-0x1
//! ```
//!
//! and the kernel log shows `kmod_genl: registered generic netlink family my_genl`.

use kernel::c_str;
use kernel::net::genetlink::{
    nla_total_size, Command, Family, Handler, Info, Policy, Registration,
};
use kernel::net::netlink::NetlinkSkBuff;
use kernel::prelude::*;

/// The wire contract, shared with the clients (`proto/src/wire.rs`).
#[path = "../proto/src/wire.rs"]
pub mod proto;

module! {
    type: KmodGenl,
    name: "kmod_genl",
    author: "netlink-rosetta",
    description: "Generic netlink echo: family my_genl, command ECHO",
    license: "GPL",
}

static_assert!(proto::MAX_MSG_LEN <= u16::MAX as usize);

// ANCHOR: receive
/// The family: its name is `proto::GENL_FAMILY_NAME`.
const FAMILY: Family = Family {
    name: c_str!("my_genl"),
    version: proto::GENL_FAMILY_VERSION,
    maxattr: proto::GENL_ATTR_MAX,
    netnsok: true,
    commands: &[Command {
        cmd: proto::GENL_CMD_ECHO,
        policy: &[(
            proto::GENL_ATTR_MSG,
            Policy::NulString {
                max_len: proto::MAX_MSG_LEN as u16,
            },
        )],
        admin_perm: false,
    }],
};

struct KmodGenl {
    _registration: Registration<Echo>,
}

/// The command handler: it needs no state.
struct Echo;

impl Handler for Echo {
    fn doit(&self, request: &Info<'_>) -> Result {
        // Only ECHO is registered: the core answers other commands itself.
        echo(request)
    }
}
// ANCHOR_END: receive

// ANCHOR: reply
/// Replies to `request` with its own MSG.
fn echo(request: &Info<'_>) -> Result {
    let msg = request
        .required_attr(proto::GENL_ATTR_MSG, c_str!("missing attribute MSG"))?
        .nul_string()?;
    let size = nla_total_size(msg.len_with_nul());
    let mut reply = NetlinkSkBuff::genlmsg_new(size, GFP_KERNEL)?
        .genlmsg_put_reply(request, proto::GENL_CMD_ECHO)?;
    reply.put_string(proto::GENL_ATTR_MSG, msg)?;
    reply.reply(request)
}
// ANCHOR_END: reply

// ANCHOR: create
impl kernel::Module for KmodGenl {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let registration = Registration::new(&FAMILY, Echo, module)?;
        pr_info!("registered generic netlink family {}\n", FAMILY.name);
        Ok(Self {
            _registration: registration,
        })
    }
}
// ANCHOR_END: create

// ANCHOR: teardown
impl Drop for KmodGenl {
    fn drop(&mut self) {
        // The family is unregistered right after this, when the field drops.
        pr_info!("unregistering generic netlink family {}\n", FAMILY.name);
    }
}
// ANCHOR_END: teardown
