// SPDX-License-Identifier: GPL-2.0

//! kmod-raw: an echo server on raw netlink unit 31, whose input callback
//! replies directly.
//!
//! For every request of a datagram, the module replies with the same type,
//! the same sequence number and the same payload, addressed to the sender's
//! port id as the netlink core recorded it. `NLM_F_ACK` adds an
//! acknowledgement after the reply; a payload longer than 16384 bytes gets
//! `NLMSG_ERROR` -EMSGSIZE instead. A request is what `netlink_rcv_skb()`
//! would hand to its callback (`NLM_F_REQUEST`, a type of at least 0x10),
//! and type 0 with any flags, which the original articles' C clients send
//! (`proto::raw_echoes`). Other messages (the reserved types below 0x10,
//! messages without `NLM_F_REQUEST`) are only acknowledged, if they ask for
//! it, as `netlink_rcv_skb()` does. Errors carry a copy of the request
//! unless the client set `NETLINK_CAP_ACK`, and the extended-ack message
//! for `NETLINK_EXT_ACK` clients.
//!
//! Each reply and ack is a datagram of its own, as `netlink_rcv_skb()` sends
//! acks. With `coalesce=1` the answers to one request datagram travel back
//! together, in as few datagrams as fit ([`Replies`]): a client that batches
//! requests then needs one `recvmsg()` for many replies.
//!
//! After each echo, a copy of it goes to the unit's multicast group 1
//! (`proto::RAW_GROUP`), if anybody listens: same type, payload and
//! sequence number, flags 0, and the requester's port id in `nlmsg_pid`.
//! Unprivileged sockets may listen (`NL_CFG_F_NONROOT_RECV`).
//!
//! The unit is served in every network namespace, with a kernel socket of
//! its own in each ([`Sockets`]), created when the namespace appears and
//! released when it goes: a client reaches the socket of its namespace, and
//! replies and group copies never leave it.
//!
//! The unit and the coalescing are module parameters:
//! `insmod kmod_raw.ko unit=30 coalesce=1`.
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
//! and the kernel log shows `kmod_raw: echo on netlink unit 31, coalesce=0`.
//! A unit that is taken (by another module, or `NETLINK_USERSOCK`, 2) fails
//! the load with EBUSY and logs `kmod_raw: cannot serve netlink unit 2: error -16`.

use kernel::c_str;
use kernel::net::netlink::NetlinkSkBuff;
use kernel::net::raw_netlink::{
    Config, Input, Message, PernetInput, Received, RecvSkBuff, Replies, SocketRef, Sockets,
    SocketsRegistration,
};
use kernel::prelude::*;

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
            default: 31, // proto::RAW_UNIT, checked below
            description: "Netlink protocol unit to serve (proto::RAW_UNIT)",
        },
        coalesce: bool {
            default: false,
            description: "Send the answers to a datagram together, in as few datagrams as fit",
        },
    },
}

static_assert!(proto::RAW_UNIT == 31);

struct KmodRaw {
    _sockets: SocketsRegistration<Echo>,
    unit: i32,
}

// ANCHOR: receive
/// The input handler of every namespace's socket.
#[derive(Clone)]
struct Echo {
    coalesce: bool,
}

impl Input for Echo {
    fn input(&self, skb: &RecvSkBuff) {
        let mut replies = Replies::new(skb.socket(), self.coalesce, GFP_KERNEL);
        for request in skb.messages() {
            if !proto::raw_echoes(request.ty(), request.flags()) {
                if request.wants_ack() {
                    let _ = replies.flush();
                    request.ack(Ok(()), None);
                }
                continue;
            }
            match answer(&mut replies, &request) {
                Ok(()) => broadcast(skb.socket(), &request),
                Err(e) => {
                    // An error goes with its extended-ack message, which only
                    // `Message::ack` sends; what is pending goes first.
                    let _ = replies.flush();
                    request.ack(Err(e), reason(e));
                }
            }
        }
        // A lost datagram is reported to its receiver (ENOBUFS).
        let _ = replies.flush();
    }
}
// ANCHOR_END: receive

// ANCHOR: reply
/// Echoes `request` with its own type, sequence number and payload, then
/// acks it if asked to.
fn answer(replies: &mut Replies<'_>, request: &Message<'_>) -> Result {
    let payload = request.payload();
    if payload.len() > proto::MAX_PAYLOAD {
        return Err(EMSGSIZE);
    }
    replies.put(request.portid(), request.seq(), request.ty(), 0, payload)?;
    if request.wants_ack() {
        // As with `netlink_ack()`, a lost ack is reported to the receiver
        // only (ENOBUFS).
        let _ = replies.put_ack(request, Ok(()));
    }
    Ok(())
}

/// The extended-ack message that goes with an error.
fn reason(err: Error) -> Option<&'static CStr> {
    static_assert!(proto::MAX_PAYLOAD == 16384);
    (err == EMSGSIZE).then_some(c_str!("payload longer than 16384 bytes"))
}
// ANCHOR_END: reply

// ANCHOR: broadcast
/// Sends a copy of the echo of `request` to the unit's group, if anybody
/// listens: the requester's port id in `nlmsg_pid`, flags 0.
fn broadcast(socket: &SocketRef, request: &impl Received) {
    if !socket.has_listeners(proto::RAW_GROUP) {
        return;
    }
    let payload = request.payload();
    let copy = NetlinkSkBuff::nlmsg_new(payload.len(), GFP_KERNEL).and_then(|mut skb| {
        skb.put(request.portid(), request.seq(), request.ty(), 0, payload)?;
        Ok(skb)
    });
    match copy {
        // ESRCH: the listeners left meanwhile. A listener whose buffer is
        // full gets ENOBUFS from the core.
        Ok(skb) => drop(socket.broadcast(skb, 0, proto::RAW_GROUP, GFP_KERNEL)),
        // The listeners learn that they missed one.
        Err(_) => socket.set_err(0, proto::RAW_GROUP, ENOBUFS),
    }
}
// ANCHOR_END: broadcast

// ANCHOR: pernet
/// The unit's kernel sockets, one per network namespace.
static SOCKETS: Sockets<Echo> = Sockets::new();

impl PernetInput for Echo {
    fn sockets() -> &'static Sockets<Echo> {
        &SOCKETS
    }
}
// ANCHOR_END: pernet

// ANCHOR: create
impl kernel::Module for KmodRaw {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let unit = module_parameters::unit.value();
        let coalesce = module_parameters::coalesce.value();
        let config = Config {
            unit,
            groups: proto::RAW_GROUP,
            nonroot_recv: true,
        };
        // Last, as nothing may fail once userspace can reach the unit: a
        // socket in every namespace there is, then in every new one.
        let sockets = SOCKETS
            .register(&config, module, Echo { coalesce })
            .inspect_err(|e| {
                pr_err!(
                    "cannot serve netlink unit {}: error {}\n",
                    unit,
                    e.to_errno()
                )
            })?;
        pr_info!(
            "echo on netlink unit {}, coalesce={}\n",
            unit,
            u32::from(coalesce)
        );
        Ok(Self {
            _sockets: sockets,
            unit,
        })
    }
}
// ANCHOR_END: create

// ANCHOR: teardown
impl Drop for KmodRaw {
    fn drop(&mut self) {
        // The sockets are released right after this, when the field drops.
        pr_info!("releasing netlink unit {}\n", self.unit);
    }
}
// ANCHOR_END: teardown
