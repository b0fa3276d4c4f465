// SPDX-License-Identifier: GPL-2.0

//! kmod-kthread: an echo server on raw netlink unit 25, whose input callback
//! queues the requests for a kernel thread that sends the replies.
//!
//! The answers are those of kmod-raw: for every request of a datagram
//! (`proto::raw_echoes`), the same type, sequence number and payload,
//! addressed to the sender's port id as the netlink core recorded it; an
//! acknowledgement after the reply for `NLM_F_ACK`; -EMSGSIZE for a payload
//! longer than 16384 bytes; other messages only acknowledged if they ask for
//! it. An error from the thread is built as `netlink_ack()` builds kmod-raw's:
//! with a copy of the request unless the client set `NETLINK_CAP_ACK`. The
//! callback keeps what the reply needs beyond its return, when the netlink
//! core lets go of the skb (a `MessageCopy`: the header, and a reference on
//! the datagram that holds the payload), in a bounded queue, and wakes the
//! thread; a full queue
//! answers at once with -ENOBUFS. The thread sleeps until there is work or a
//! stop request: no polling. What the callback answers itself (-EMSGSIZE,
//! -ENOBUFS, acks of messages that are not requests) can therefore overtake
//! the answers to earlier requests that are still queued. At unload,
//! requests still queued are dropped (their senders are gone) and counted in
//! the kernel log: `kmod_kthread: stopping: 64 queued requests dropped`.
//!
//! Each reply and ack is a datagram of its own. With `coalesce=1` the
//! answers that the thread sends in a row to the same port travel together,
//! in as few datagrams as fit ([`Replies`]).
//!
//! After each echo, the thread sends a copy of it to the unit's multicast
//! group 1 (`proto::RAW_GROUP`), if anybody listens, as kmod-raw does.
//!
//! The unit is served in every network namespace, with a kernel socket of
//! its own in each ([`Sockets`]); one thread and one queue serve them all.
//! A queued request holds its namespace ([`MessageCopy::net`]): the thread
//! answers it through that namespace's socket, and a namespace whose last
//! process went away while its requests wait stays until they are answered
//! (to nobody) and dropped.
//!
//! The unit, the queue's capacity and the coalescing are module parameters:
//! `insmod kmod_kthread.ko unit=24 capacity=16 coalesce=1`.
//!
//! Run it (the VM boots the project's kernel, inserts the module, runs the
//! command, removes the module):
//!
//! ```text
//! $ cargo xtask vm --modules kthread -- target/debug/user-raw --module kthread "hello netlink"
//! module kthread: netlink unit 25, portid 118
//! echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
//! ```
//!
//! and the kernel log shows
//! `kmod_kthread: echo on netlink unit 25, queue of 256, coalesce=0`.
//! A unit that is taken (by another module, or `NETLINK_USERSOCK`, 2) fails
//! the load with EBUSY and logs `kmod_kthread: cannot serve netlink unit 2: error -16`.

use kernel::c_str;
use kernel::kthread::{Context, Run, Thread};
use kernel::net::netlink::NetlinkSkBuff;
use kernel::net::raw_netlink::{
    Config, Input, Message, MessageCopy, PernetInput, Received, RecvSkBuff, Replies, SocketRef,
    Sockets, SocketsRegistration,
};
use kernel::prelude::*;
use kernel::sync::{new_condvar, new_mutex, Arc, CondVar, Mutex};

/// The wire contract, shared with the clients (`proto/src/wire.rs`).
#[path = "../proto/src/wire.rs"]
pub mod proto;

module! {
    type: KmodKthread,
    name: "kmod_kthread",
    author: "netlink-rosetta",
    description: "Raw netlink echo: a kernel thread sends the replies",
    license: "GPL",
    params: {
        unit: i32 {
            default: 25, // proto::KTHREAD_UNIT, checked below
            description: "Netlink protocol unit to serve (proto::KTHREAD_UNIT)",
        },
        capacity: u32 {
            default: 256,
            description: "How many requests may wait for the thread",
        },
        coalesce: bool {
            default: false,
            description: "Send the answers the thread sends in a row to a port together",
        },
    },
}

static_assert!(proto::KTHREAD_UNIT == 25);

// ANCHOR: teardown
struct KmodKthread {
    unit: i32,
    // Dropping the thread stops it first (`kthread_stop()` returns once it
    // has exited), then drops its `Worker`: the sockets are released (input
    // in flight meanwhile finds the queue stopping and gets EAGAIN), then
    // the queue with whatever is still in it.
    _thread: Thread<Worker>,
}
// ANCHOR_END: teardown

// ANCHOR: queue
/// The queue between the input callback and the thread.
#[pin_data]
struct Queue {
    #[pin]
    state: Mutex<State>,
    #[pin]
    work: CondVar,
    capacity: usize,
}

struct State {
    requests: KVec<MessageCopy>,
    stopping: bool,
}

// ANCHOR: receive
/// The input handler of every namespace's socket: they share the queue.
#[derive(Clone)]
struct Requests {
    queue: Arc<Queue>,
}

impl Input for Requests {
    fn input(&self, skb: &RecvSkBuff) {
        for request in skb.messages() {
            if !proto::raw_echoes(request.ty(), request.flags()) {
                if request.wants_ack() {
                    request.ack(Ok(()), None);
                }
                continue;
            }
            // The thread answers queued requests, acks included.
            if let Err(e) = self.queue.push(&request) {
                request.ack(Err(e), reason(e));
            }
        }
    }
}
// ANCHOR_END: receive

impl Queue {
    /// Copies `request` into the queue and wakes the thread.
    fn push(&self, request: &Message<'_>) -> Result {
        if request.payload().len() > proto::MAX_PAYLOAD {
            return Err(EMSGSIZE);
        }
        let copy = request.copy()?;
        let mut state = self.state.lock();
        if state.stopping {
            return Err(EAGAIN);
        }
        if state.requests.len() >= self.capacity {
            return Err(ENOBUFS);
        }
        state.requests.push(copy, GFP_KERNEL)?;
        self.work.notify_one();
        Ok(())
    }

    /// Sleeps until there are requests, and takes them all: they are
    /// swapped into `batch`, which is empty, and the queue keeps `batch`'s
    /// buffer, so that once both buffers have grown nothing allocates.
    /// `false` once the module is stopping.
    fn pop_all(&self, batch: &mut KVec<MessageCopy>) -> bool {
        let mut state = self.state.lock();
        while state.requests.is_empty() && !state.stopping {
            // Returns on a notification, or at once once `kthread_stop()`
            // marked the thread (`TIF_NOTIFY_SIGNAL`), which happens only
            // after `stop()` set `stopping`.
            let _ = self.work.wait_interruptible(&mut state);
        }
        if state.stopping {
            return false;
        }
        core::mem::swap(&mut state.requests, batch);
        true
    }

    /// Ends `pop_all` for good. The requests still queued are dropped
    /// unanswered: their senders are gone, as every userspace socket of the
    /// unit pins the module, which is unloading.
    fn stop(&self) {
        let mut state = self.state.lock();
        state.stopping = true;
        let unanswered = state.requests.len();
        drop(state);
        self.work.notify_all();
        if unanswered > 0 {
            pr_info!("stopping: {} queued requests dropped\n", unanswered);
        }
    }
}
// ANCHOR_END: queue

// ANCHOR: thread
/// What the thread owns: the sockets it replies through, and through
/// them the queue.
struct Worker {
    sockets: SocketsRegistration<Requests>,
    coalesce: bool,
}

impl Run for Worker {
    fn run(&self, _thread: &Context<'_>) {
        let queue = &self.sockets.data().queue;
        let mut requests = KVec::new();
        while queue.pop_all(&mut requests) {
            // The requests of one namespace go through its socket, which is
            // there: each request holds its namespace.
            for batch in requests.chunk_by(|a, b| a.net() == b.net()) {
                let first = batch.first().map(MessageCopy::net);
                let Some(socket) = first.and_then(|net| self.sockets.socket(net)) else {
                    continue;
                };
                let mut replies = Replies::new(socket, self.coalesce, GFP_KERNEL);
                for request in batch {
                    match answer(&mut replies, request) {
                        Ok(()) => broadcast(socket, request),
                        // If even the error cannot be sent, the client's
                        // socket is full and netlink reports ENOBUFS to it,
                        // or memory ran out.
                        Err(e) => drop(replies.put_ack(request, Err(e))),
                    }
                }
                // A lost datagram is reported to its receiver (ENOBUFS).
                let _ = replies.flush();
            }
            // Answered: their references go, their buffer stays.
            requests.clear();
        }
    }

    fn request_stop(&self) {
        self.sockets.data().queue.stop();
    }
}
// ANCHOR_END: thread

// ANCHOR: reply
/// Echoes `request` with its own type, sequence number and payload, then
/// acks it if asked to. The skb of the request is gone: the thread builds
/// the ack from the header it copied.
fn answer(replies: &mut Replies<'_>, request: &MessageCopy) -> Result {
    let payload = request.payload();
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
    if err == EMSGSIZE {
        Some(c_str!("payload longer than 16384 bytes"))
    } else if err == ENOBUFS {
        Some(c_str!("request queue full, try again"))
    } else {
        None
    }
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
static SOCKETS: Sockets<Requests> = Sockets::new();

impl PernetInput for Requests {
    fn sockets() -> &'static Sockets<Requests> {
        &SOCKETS
    }
}
// ANCHOR_END: pernet

// ANCHOR: create
impl kernel::Module for KmodKthread {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let unit = module_parameters::unit.value();
        let capacity = module_parameters::capacity.value();
        let capacity = usize::try_from(capacity)?;
        let coalesce = module_parameters::coalesce.value();
        let queue = Arc::pin_init(
            pin_init!(Queue {
                state <- new_mutex!(State { requests: KVec::new(), stopping: false }),
                work <- new_condvar!(),
                capacity,
            }),
            GFP_KERNEL,
        )?;
        let thread = Thread::create(c_str!("kmod_kthread"), GFP_KERNEL)?;
        // Last, as nothing may fail once userspace can reach the unit: a
        // socket in every namespace there is, then in every new one.
        let config = Config {
            unit,
            groups: proto::RAW_GROUP,
            nonroot_recv: true,
        };
        let sockets = SOCKETS
            .register(&config, module, Requests { queue })
            .inspect_err(|e| {
                pr_err!(
                    "cannot serve netlink unit {}: error {}\n",
                    unit,
                    e.to_errno()
                )
            })?;
        let thread = thread.start(Worker { sockets, coalesce });
        pr_info!(
            "echo on netlink unit {}, queue of {}, coalesce={}\n",
            unit,
            capacity,
            u32::from(coalesce)
        );
        Ok(Self {
            unit,
            _thread: thread,
        })
    }
}
// ANCHOR_END: create

impl Drop for KmodKthread {
    fn drop(&mut self) {
        // The thread stops right after this, when the field drops.
        pr_info!("releasing netlink unit {}\n", self.unit);
    }
}
