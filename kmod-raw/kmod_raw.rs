// SPDX-License-Identifier: GPL-2.0

//! kmod-raw: an echo server on raw netlink unit 31, whose input callback
//! replies directly.
//!
//! For every message of a datagram that is not a netlink control message, the
//! module replies with the same type, the same sequence number and the same
//! payload, addressed to the sender's port id as the netlink core recorded it.
//! `NLM_F_ACK` adds an acknowledgement after the reply; a payload longer than
//! 16384 bytes gets `NLMSG_ERROR` -EMSGSIZE instead. Type 0 with no flags, as
//! the original articles' C clients send, is answered too.
//!
//! The unit is a module parameter: `insmod kmod_raw.ko unit=30`.
//!
//! Run it (the VM boots the project's kernel, inserts the module, runs the
//! command, removes the module):
//!
//! ```text
//! $ cargo xtask vm --modules raw -- target/debug/user-raw "hello netlink"
//! module raw: netlink unit 31, portid 118
//! echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
//! ```
//!
//! and the kernel log shows `kmod_raw: echo on netlink unit 31`.

use kernel::c_str;
use kernel::net::netlink::{Input, Message, NetlinkSkBuff, RecvSkBuff, Socket, SocketRef};
use kernel::prelude::*;
use kernel::sync::Arc;

/// The wire contract, shared with the clients (`proto/src/wire.rs`).
#[path = "../proto/src/wire.rs"]
pub mod proto;

module! {
    type: KmodRaw,
    name: "kmod_raw",
    author: "netlink-rosetta",
    description: "Raw netlink echo: the input callback replies directly",
    license: "GPL",
    params: {
        unit: i32 {
            default: 31,
            description: "Netlink protocol unit to serve (proto::RAW_UNIT)",
        },
    },
}

struct KmodRaw {
    _socket: Socket<Echo>,
    unit: i32,
}

/// The input handler: it needs no state.
struct Echo;

impl Input for Echo {
    fn input(&self, skb: &RecvSkBuff) {
        for request in skb.messages().filter(|msg| !msg.is_control()) {
            let result = match echo(skb.socket(), skb.portid(), &request) {
                Ok(()) if request.wants_ack() => Ok(()),
                Ok(()) => continue,
                Err(e) => Err(e),
            };
            request.ack(result, result.err().and_then(reason));
        }
    }
}

/// Replies to `request` with its own type, sequence number and payload.
fn echo(socket: &SocketRef, portid: u32, request: &Message<'_>) -> Result {
    let payload = request.payload();
    if payload.len() > proto::MAX_PAYLOAD {
        return Err(EMSGSIZE);
    }
    let mut reply = NetlinkSkBuff::new(payload.len(), GFP_KERNEL)?;
    reply.put(portid, request.seq(), request.ty(), 0, payload)?;
    socket.unicast(reply, portid)
}

/// The extended-ack message that goes with an error.
fn reason(err: Error) -> Option<&'static CStr> {
    static_assert!(proto::MAX_PAYLOAD == 16384);
    (err == EMSGSIZE).then_some(c_str!("payload longer than 16384 bytes"))
}

impl kernel::Module for KmodRaw {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let unit = module_parameters::unit.value();
        let socket = Socket::new(unit, module, Arc::new(Echo, GFP_KERNEL)?)?;
        pr_info!("echo on netlink unit {}\n", unit);
        Ok(Self {
            _socket: socket,
            unit,
        })
    }
}

impl Drop for KmodRaw {
    fn drop(&mut self) {
        // The socket is released right after this, when the field drops.
        pr_info!("releasing netlink unit {}\n", self.unit);
    }
}
