// SPDX-License-Identifier: GPL-2.0

//! kmod-kthread: an echo server on raw netlink unit 25, whose input callback
//! queues the requests for a kernel thread that sends the replies.
//!
//! The replies are those of kmod-raw: for every message of a datagram that is
//! not a netlink control message, the same type, sequence number and payload,
//! addressed to the sender's port id as the netlink core recorded it; an
//! acknowledgement after the reply for `NLM_F_ACK`; -EMSGSIZE for a payload
//! longer than 16384 bytes. The callback copies what the reply needs out of
//! the skb (which is freed when it returns) into a bounded queue, and wakes
//! the thread; a full queue answers at once with -ENOBUFS. The thread sleeps
//! until there is work or a stop request: no polling. Errors found in the
//! callback (-EMSGSIZE, -ENOBUFS) can therefore overtake the answers to
//! earlier requests that are still queued. At unload, requests still queued
//! are dropped (their senders are gone) and counted in the kernel log:
//! `kmod_kthread: stopping: 64 queued requests dropped`.
//!
//! Each reply and ack is a datagram of its own. With `coalesce=1` the
//! answers that the thread sends in a row to the same port travel together,
//! in as few datagrams as fit ([`Replies`]).
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

use kernel::c_str;
use kernel::kthread::{Context, Run, Thread};
use kernel::net::netlink::{Header, Input, Message, RecvSkBuff, Replies, Socket, NLM_F_ACK};
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
            default: 25,
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

struct KmodKthread {
    unit: i32,
    // Dropping the thread stops it first (`kthread_stop()` returns once it
    // has exited), then drops its `Worker`: the socket is released, then the
    // queue with whatever is still in it. No input arrives meanwhile: every
    // userspace socket of the unit pins the module, so none is left.
    _thread: Thread<Worker>,
}

/// A request, copied out of the skb: what the reply needs.
struct Request {
    portid: u32,
    header: Header,
    payload: KVec<u8>,
}

impl Request {
    fn seq(&self) -> u32 {
        self.header.seq
    }

    fn ty(&self) -> u16 {
        self.header.ty
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn wants_ack(&self) -> bool {
        self.header.flags & NLM_F_ACK != 0
    }
}

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
    requests: KVec<Request>,
    stopping: bool,
}

impl Input for Queue {
    fn input(&self, skb: &RecvSkBuff) {
        for request in skb.messages().filter(|msg| !msg.is_control()) {
            // The thread answers queued requests, acks included.
            if let Err(e) = self.push(skb.portid(), &request) {
                request.ack(Err(e), reason(e));
            }
        }
    }
}

impl Queue {
    /// Copies `request` into the queue and wakes the thread.
    fn push(&self, portid: u32, request: &Message<'_>) -> Result {
        let payload = request.payload();
        if payload.len() > proto::MAX_PAYLOAD {
            return Err(EMSGSIZE);
        }
        let mut copy = KVec::with_capacity(payload.len(), GFP_KERNEL)?;
        copy.extend_from_slice(payload, GFP_KERNEL)?;
        let mut state = self.state.lock();
        if state.stopping {
            return Err(EAGAIN);
        }
        if state.requests.len() >= self.capacity {
            return Err(ENOBUFS);
        }
        let request = Request {
            portid,
            header: request.header(),
            payload: copy,
        };
        state.requests.push(request, GFP_KERNEL)?;
        self.work.notify_one();
        Ok(())
    }

    /// Sleeps until there are requests, and takes them all; `None` once the
    /// module is stopping.
    fn pop_all(&self) -> Option<KVec<Request>> {
        let mut state = self.state.lock();
        while state.requests.is_empty() && !state.stopping {
            // A kernel thread has no signals: this returns on a notification.
            let _ = self.work.wait_interruptible(&mut state);
        }
        if state.stopping {
            return None;
        }
        Some(core::mem::replace(&mut state.requests, KVec::new()))
    }

    /// Ends `pop_all` for good. The requests still queued are dropped
    /// unanswered: their senders are gone, as every userspace socket of the
    /// unit pins the module.
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

/// What the thread owns: the socket it replies through, and the queue.
struct Worker {
    socket: Socket<Queue>,
    queue: Arc<Queue>,
    coalesce: bool,
}

impl Run for Worker {
    fn run(&self, _thread: &Context<'_>) {
        while let Some(requests) = self.queue.pop_all() {
            let mut replies = Replies::new(&self.socket, self.coalesce);
            for request in requests.iter() {
                if let Err(e) = answer(&mut replies, request.portid, request) {
                    // If even the error cannot be sent, the client's socket
                    // is full and netlink reports ENOBUFS to it, or memory
                    // ran out.
                    let _ = replies.put_ack(request.portid, &request.header, Err(e));
                }
            }
            // A lost datagram is reported to its receiver (ENOBUFS).
            let _ = replies.flush();
        }
    }

    fn request_stop(&self) {
        self.queue.stop();
    }
}

/// Echoes `request` with its own type, sequence number and payload, then
/// acks it if asked to. The skb of the request is gone: the thread builds
/// the ack from the header it copied.
fn answer(replies: &mut Replies<'_>, portid: u32, request: &Request) -> Result {
    let payload = request.payload();
    replies.put(portid, request.seq(), request.ty(), 0, payload)?;
    if request.wants_ack() {
        // As with `netlink_ack()`, a lost ack is reported to the receiver
        // only (ENOBUFS).
        let _ = replies.put_ack(portid, &request.header, Ok(()));
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
        let socket = Socket::new(unit, module, queue.clone())?;
        let thread = Thread::spawn(
            c_str!("kmod_kthread"),
            Worker {
                socket,
                queue,
                coalesce,
            },
            GFP_KERNEL,
        )?;
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

impl Drop for KmodKthread {
    fn drop(&mut self) {
        // The thread stops right after this, when the field drops.
        pr_info!("releasing netlink unit {}\n", self.unit);
    }
}
