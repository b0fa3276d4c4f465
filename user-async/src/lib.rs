//! # user-async: netlink from a tokio service
//!
//! The fourth client column: how a Rust daemon that lives in a tokio
//! runtime talks to the project's modules, with the rust-netlink
//! organisation's async crates. It shows:
//!
//! - **the connection**: a netlink-sys `TokioSocket` (bound, with
//!   `NETLINK_EXT_ACK` and `NETLINK_CAP_ACK` set through netlink-sys) run
//!   by a netlink-proto 0.14.1 `Connection`, a task that owns the socket;
//!   requests go through its `ConnectionHandle`, which any number of
//!   futures share (`&self`), and netlink-proto numbers them (from 1) and
//!   routes each answer to its request by sequence number and port;
//! - **the raw units** (31, 25 and the C twins' 30, 29) through
//!   [`RawClient`], with [`RawMsg`]: the message type netlink-proto needs,
//!   ours since no crate models the units;
//! - **`my_genl`** (and the C twin's `c_genl`) through [`GenlClient`]:
//!   genetlink 0.3.0's resolver finds the family id and its multicast
//!   groups ([`resolve`]), and the echo is a
//!   `netlink_packet_generic::GenlMessage<EchoGenl>` ([`EchoGenl`]: the
//!   command and the attributes, parsed and emitted with
//!   netlink-packet-core's `Nla` machinery);
//! - **many requests in flight** ([`echo_many`], `--in-flight N`);
//! - **dumps as a stream** ([`GenlClient::dump_stream`]: an entry as each
//!   message arrives, then `NLMSG_DONE` with its `NLM_F_DUMP_INTR`) and
//!   **notifications as a stream** ([`Subscriber`]: netlink-proto's
//!   unsolicited messages, on a socket that joined the group before its
//!   task started).
//!
//! Run it inside the project VM (`src/main.rs` is the CLI, with the
//! switches and the lines of the other three clients, plus `--in-flight`):
//!
//! ```text
//! cargo xtask vm --modules raw -- target/debug/user-async "hello"
//! cargo xtask vm --modules genl -- target/release/user-async --module genl --count 2000 --size 16
//! ```
//!
//! which printed, in one run (portids and the family id are the
//! kernel's; the rate is the emulated VM's):
//!
//! ```text
//! module raw: netlink unit 31, portid 303
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//!
//! module genl: family my_genl id 26, portid 2682285413
//! echo seq 1: sent 16 bytes, received 16 bytes: "abcdefghijklmnop"
//! 2000 round trips of 16 bytes in 0.383 s: 5225 round trips/s
//! ```
//!
//! ## What the async stack costs
//!
//! Measured in the project VM (QEMU TCG, one vCPU, a busy 2-core host),
//! with `benches/roundtrip.rs`' interleaved ratios (21 rounds of 40 ms a
//! side, 16-byte echoes; medians) and `strace -f -c` of its probe over
//! 2000 round trips (the process's setup included, a few hundred calls):
//!
//! | | µs per round trip | ratio | syscalls per round trip |
//! |---|---:|---:|---:|
//! | kmod-raw, `user-raw` (blocking) | 13 | 1 | 2.1 (`sendto`, `recvfrom`) |
//! | kmod-raw, async, one at a time | 133 | 8.8 × user-raw | 5.1 |
//! | kmod-raw, async, 64 in flight | 59 | 2.45 × faster than one at a time | 2.3 |
//! | kmod-raw, async, 64 in flight on netlink-proto's own task | 194 | 0.97 × (lockstep; quartiles 0.82 to 1.52) | |
//! | kmod-kthread, async one at a time / user-raw | | 3.5 × | |
//! | kmod-genl, async one at a time / user-raw | | 5.6 × | |
//!
//! One request at a time, the runtime costs about 120 µs per round trip
//! here: 3 more syscalls (the task's `epoll_wait` for the reply, and the
//! `recvfrom` that returns `EAGAIN` after it, which tokio needs to clear
//! the socket's readiness), two channel hand-offs (request to the
//! connection task, reply back), a timer for the timeout, and the
//! allocations of each request (its channel, the message, the copied
//! payload), all of which an emulated CPU makes dear. The issue's target
//! for one request at a time, ≤ 1.3 × user-raw, is not met, by far; the
//! ratio is smaller where the module costs more (kthread, genl). The
//! target for 64 in flight, ≥ 1.5 × its own one-at-a-time rate, is met
//! (2.45 ×), but only with [`driver::Driver`] below.
//!
//! ## What the crates cannot do, and what this crate does about it
//!
//! 1. **netlink-proto sends one request per wake-up** of its task:
//!    `Connection::poll` calls `poll_send_messages`, which sends one queued
//!    message and returns. Many requests in flight go out one per reply:
//!    measured, 64 in flight ran at 0.97 × the one-at-a-time rate. The
//!    steps of that poll are public, so [`driver::Driver`] polls them in
//!    the same order and repeats the send step until nothing more goes
//!    out (the socket counts its sends): 2.45 ×.
//! 2. **Its codec splits a datagram at `nlmsg_len`**, not at
//!    `NLMSG_ALIGN(nlmsg_len)`: after a raw reply of unaligned length, the
//!    next message of the datagram is read 3 bytes early and the rest of
//!    the datagram is dropped (kmod-raw with `coalesce=1` puts many
//!    replies in one datagram; `codec::tests` and the VM test
//!    `raw_coalesced_replies_of_unaligned_length` show it). [`Codec`], the
//!    codec the connection takes as a type parameter, steps over the
//!    padding.
//! 3. **A reply it cannot parse is logged and dropped**: a truncated
//!    message, a length that does not frame, a payload the message type
//!    refuses. The request it answered then waits for ever (here: until
//!    the timeout). [`Codec`] hands the bytes on, with the header it could
//!    read, so that netlink-proto routes them by sequence number to the
//!    waiting request, which fails with [`Error::Malformed`] and
//!    [`diagnose`]'s text ("truncated message: nlmsg_len 27, but the
//!    datagram holds 20 bytes of it"). The codec trait is generic over the
//!    message type, so the bytes travel as the one payload of
//!    netlink-packet-core that holds any bytes, `NetlinkPayload::Overrun`.
//!    netlink-sys receives into netlink-proto's 64 KiB buffer without
//!    `MSG_TRUNC`: a longer datagram (the kernel sends at most 32 KiB
//!    here) would be cut short without a word, and reach the request as a
//!    truncated message.
//! 4. **Extended acks are bytes**: netlink-packet-core 0.9 keeps what
//!    follows an `NLMSG_ERROR`'s code as `ErrorMessage::header` and
//!    netlink-proto's `NetlinkProtoError` shows it as `{:?}`; the extack's
//!    text is found here ([`extack_message`]: the copied request, capped
//!    thanks to `NETLINK_CAP_ACK`, then the TLVs). `NLMSG_DONE`'s are in
//!    `DoneMessage::extended_ack`.
//! 5. **ENOBUFS reaches no request**: netlink-proto 0.14 turns it into an
//!    `NLMSG_OVERRUN` message with sequence number 0, which goes to the
//!    unsolicited messages; the requests whose replies the kernel dropped
//!    would wait for ever. A task of ours drains the unsolicited messages
//!    of a request connection and fails every request waiting at an
//!    overrun ([`Error::Overrun`], the VM test
//!    `raw_enobufs_fails_the_requests_in_flight_then_the_client_goes_on`);
//!    a [`Subscriber`] reports it as [`Notice::Lost`] and goes on.
//!    netlink-proto keeps the dropped requests in its table of pending
//!    requests for the life of the connection.
//! 6. **genetlink 0.3.0 runs on netlink-proto 0.13.0** (so the build has
//!    both versions) and makes its connection with netlink-proto's default
//!    codec: limits 2 and 3 cannot be fixed through it, and 0.13 does not
//!    forward overruns either (its `forward_responses` has
//!    `unimplemented!("overrun is not handled yet")` for one routed to a
//!    request, which only the kernel, which never sends `NLMSG_OVERRUN`,
//!    could address). genetlink is therefore used for what its resolver
//!    does, on a connection of its own that ends with the lookup
//!    ([`resolve`]); the echoes, dumps and notifications of the family run
//!    on a netlink-proto 0.14.1 connection with [`Codec`] and
//!    `GenlMessage<EchoGenl>`. (genetlink's `GenlFamily` names a family by
//!    a type, `family_name() -> &'static str`; its `Resolver` takes a
//!    name, which serves `my_genl` and `c_genl` alike.)
//! 7. **Multicast is by sequence number too**: netlink-proto tells a
//!    notification from a reply only by finding no pending request with
//!    its (sequence number, port) (`Protocol::handle_message`, by its
//!    code). A raw unit's copy of another socket's
//!    echo carries that echo's sequence number, so on a socket that both
//!    sends requests and listens, a copy can be taken for a reply. The
//!    subscribers here send no requests.
//! 8. No strict checking to ask for: `NETLINK_GET_STRICT_CHK` (netlink-sys
//!    has `set_netlink_get_strict_chk`) applies to rtnetlink's dumps, and
//!    the modules validate every request with their policies anyway.
//!
//! The parser fuzz tests (`src/parser_fuzz.rs`, with the shared
//! generators of `rosetta-fuzzgen`) feed [`Codec`], netlink-packet-core's
//! parsers and ours with lying lengths: no panic so far.

use std::fmt::Debug;
use std::io;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt};
use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_generic::{GenlHeader, GenlMessage};
use netlink_proto::sys::{AsyncSocket, SocketAddr};
use netlink_proto::ConnectionHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod codec;
pub mod driver;
pub mod msg;

pub use codec::{diagnose, Codec};
pub use driver::Driving;
pub use msg::{extack_message, EchoAttr, EchoGenl, RawMsg};
/// An entry of the echo log, a notification and what a subscriber
/// receives next: the types the CLIs print (`rosetta-cli`).
pub use rosetta_cli::{Entry, Event, Notice};

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Everything that can go wrong; each message names the fix where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink unit {unit} not available: is {} loaded?", proto::module_for_unit(*unit))]
    UnitUnavailable { unit: i32 },
    #[error(
        "generic netlink family {family} not found: is {} loaded?",
        proto::module_for_family(family)
    )]
    FamilyNotFound { family: String },
    #[error("{call} failed: {source}")]
    Os {
        call: &'static str,
        source: io::Error,
    },
    #[error("no reply from the kernel within {} ms: is the module answering? (raise the timeout if it is just slow)", timeout.as_millis())]
    Timeout { timeout: Duration },
    /// An `NLMSG_ERROR` (or an `NLMSG_DONE`) with a non-zero error;
    /// `errno` is positive (90, not -90).
    #[error("kernel replied {} (errno {errno}): {}", errno_name(*errno), kernel_detail(*errno, extack))]
    Kernel { errno: i32, extack: Option<String> },
    /// A reply that [`Codec`] could not parse: [`diagnose`]'s text.
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("receive buffer overrun (ENOBUFS): the kernel dropped messages for this socket; lower --in-flight, or raise the receive buffer (net.core.rmem_default)")]
    Overrun,
    #[error("the netlink connection task ended (the socket failed)")]
    Closed,
    #[error("the kernel acked request seq {seq} without sending a reply")]
    NoReply { seq: u32 },
    #[error("the reply differs from the request (sent {sent} bytes, received {received} bytes)")]
    Differs { sent: usize, received: usize },
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    #[error("the message contains a NUL byte: the MSG attribute is a NUL-terminated string")]
    NulInMessage,
    /// genetlink's resolver failed for another reason than an unknown name.
    #[error("genetlink: {0}")]
    Genetlink(String),
}

/// The errno's name for the errors the modules return, else "error".
fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EINVAL => "EINVAL",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ENOENT => "ENOENT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOMEM => "ENOMEM",
        libc::ENOBUFS => "ENOBUFS",
        libc::EPERM => "EPERM",
        _ => "error",
    }
}

/// The extended ack's text if there is one, else the errno's description.
fn kernel_detail(errno: i32, extack: &Option<String>) -> String {
    match extack {
        Some(text) => text.clone(),
        None => io::Error::from_raw_os_error(errno).to_string(),
    }
}

// ---------------------------------------------------------------------------
// The connection
// ---------------------------------------------------------------------------

/// What waits for answers: netlink-proto's handle, the connection task,
/// and what the task's unsolicited messages said.
struct Conn<P: Debug> {
    handle: ConnectionHandle<P>,
    unit: i32,
    portid: u32,
    timeout: Duration,
    /// Bumped by the drain task at each ENOBUFS (netlink-proto's overrun).
    overruns: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl<P: Debug> Drop for Conn<P> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A message's kind once [`Codec`] has read it.
type Unsolicited<P> = UnboundedReceiver<(NetlinkMessage<P>, SocketAddr)>;

/// Open a socket of `unit` with netlink-sys, bind it, set its options, join
/// `groups`, and run netlink-proto's connection on it as a tokio task.
/// Returns the connection and the receiver of its unsolicited messages.
fn open<P>(
    unit: i32,
    groups: &[u32],
    timeout: Duration,
    driving: Driving,
) -> Result<(Conn<P>, Unsolicited<P>), Error>
where
    P: Debug + NetlinkSerializable + NetlinkDeserializable + Unpin + Send + 'static,
{
    let mut socket = match <driver::CountingSocket as AsyncSocket>::new(unit as isize) {
        Ok(socket) => socket,
        Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {
            return Err(Error::UnitUnavailable { unit })
        }
        Err(source) => {
            return Err(Error::Os {
                call: "socket(AF_NETLINK)",
                source,
            })
        }
    };
    let os = |call| move |source| Error::Os { call, source };
    let sock = socket.socket_mut();
    let portid = sock.bind_auto().map_err(os("bind"))?.port_number();
    // Extended acks, and errors that copy only the request's header back.
    sock.set_ext_ack(true)
        .map_err(os("setsockopt(NETLINK_EXT_ACK)"))?;
    sock.set_cap_ack(true)
        .map_err(os("setsockopt(NETLINK_CAP_ACK)"))?;
    for &group in groups {
        sock.add_membership(group)
            .map_err(os("setsockopt(NETLINK_ADD_MEMBERSHIP)"))?;
    }
    let (mut connection, handle, unsolicited) =
        netlink_proto::from_socket_with_codec::<P, driver::CountingSocket, Codec>(socket);
    // Forward the acks (for `--ack`) and NLMSG_DONE (its flags and error).
    connection.set_forward_ack(true);
    connection.set_forward_done(true);
    let (_, overruns) = watch::channel(0);
    let conn = Conn {
        handle,
        unit,
        portid,
        timeout,
        overruns,
        tasks: vec![tokio::spawn(driver::Driver {
            conn: connection,
            driving,
        })],
    };
    Ok((conn, unsolicited))
}

impl<P> Conn<P>
where
    P: Debug + NetlinkSerializable + NetlinkDeserializable + Unpin + Send + 'static,
{
    /// A connection for requests: its unsolicited messages are drained by a
    /// task that counts netlink-proto's overruns (ENOBUFS), so that the
    /// requests waiting when replies were dropped fail instead of waiting.
    fn for_requests(unit: i32, timeout: Duration, driving: Driving) -> Result<Conn<P>, Error> {
        let (mut conn, mut unsolicited) = open::<P>(unit, &[], timeout, driving)?;
        let (overran, overruns) = watch::channel(0u64);
        conn.overruns = overruns;
        conn.tasks.push(tokio::spawn(async move {
            while let Some((message, _)) = unsolicited.next().await {
                if matches!(&message.payload, NetlinkPayload::Overrun(b) if b.is_empty()) {
                    overran.send_modify(|n| *n += 1);
                }
            }
        }));
        Ok(conn)
    }

    /// Send `message` (netlink-proto numbers it) and return the stream of
    /// its answers, which ends after the last one.
    fn send(
        &self,
        payload: P,
        flags: u16,
    ) -> Result<impl Stream<Item = NetlinkMessage<P>> + use<P>, Error> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
        message.finalize();
        self.handle
            .request(message, SocketAddr::new(0, 0))
            .map_err(|_| Error::Closed)
    }

    /// Wait for the next answer of `answers`, within the timeout, failing
    /// on an overrun of the socket.
    async fn next(
        &self,
        answers: &mut (impl Stream<Item = NetlinkMessage<P>> + Unpin),
        overruns: &mut watch::Receiver<u64>,
    ) -> Result<Option<NetlinkMessage<P>>, Error> {
        let wait = async {
            tokio::select! {
                next = answers.next() => Ok(next),
                // An overrun, or the drain task ended with the connection.
                changed = overruns.changed() => match changed {
                    Ok(()) => Err(Error::Overrun),
                    Err(_) => Err(Error::Closed),
                },
            }
        };
        if self.timeout.is_zero() {
            return wait.await;
        }
        tokio::time::timeout(self.timeout, wait)
            .await
            .map_err(|_| Error::Timeout {
                timeout: self.timeout,
            })?
    }

    /// One request and its reply: the reply's sequence number and payload.
    /// With `ack`, `NLM_F_ACK` is set and the ack must follow the reply.
    async fn request(&self, payload: P, ack: bool) -> Result<(u32, P), Error> {
        let mut overruns = self.overruns.clone();
        overruns.mark_unchanged();
        let flags = NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 };
        let mut answers = self.send(payload, flags)?;
        let mut reply = None;
        let mut acked = None;
        while let Some(answer) = self.next(&mut answers, &mut overruns).await? {
            let seq = answer.header.sequence_number;
            match answer.payload {
                NetlinkPayload::InnerMessage(p) if reply.is_none() => reply = Some((seq, p)),
                NetlinkPayload::InnerMessage(p) => {
                    return Err(Error::Unexpected(format!(
                        "a second reply to seq {seq}: {p:?}"
                    )))
                }
                NetlinkPayload::Error(e) if e.code.is_none() => acked = Some(seq),
                NetlinkPayload::Error(e) => {
                    return Err(Error::Kernel {
                        errno: -e.raw_code(),
                        extack: extack_message(answer.header.flags, &e.header),
                    })
                }
                NetlinkPayload::Overrun(bytes) => return Err(answered_overrun::<P>(&bytes)),
                NetlinkPayload::Done(_) => {
                    return Err(Error::Unexpected(format!("NLMSG_DONE for seq {seq}")))
                }
                NetlinkPayload::Noop => {}
                other => return Err(Error::Unexpected(format!("{other:?}"))),
            }
        }
        match (reply, acked) {
            (Some(reply), Some(_)) => Ok(reply),
            (Some(reply), None) if !ack => Ok(reply),
            (Some((seq, _)), None) => Err(Error::Unexpected(format!(
                "no ack after the reply to seq {seq}"
            ))),
            (None, Some(seq)) => Err(Error::NoReply { seq }),
            // The stream ended without an answer: the task dropped it.
            (None, None) => Err(Error::Closed),
        }
    }
}

/// An `Overrun` payload routed to a request: [`Codec`]'s unparsable bytes,
/// or an `NLMSG_OVERRUN` (which the kernel never sends) if empty.
fn answered_overrun<P: NetlinkDeserializable + Debug>(bytes: &[u8]) -> Error {
    if bytes.is_empty() {
        Error::Overrun
    } else {
        Error::Malformed(diagnose::<P>(bytes))
    }
}

// ---------------------------------------------------------------------------
// The raw units
// ---------------------------------------------------------------------------

/// A client of a raw netlink unit ([`proto::RAW_UNIT`],
/// [`proto::KTHREAD_UNIT`], or a C twin's).
pub struct RawClient {
    conn: Conn<RawMsg>,
}

/// One echo's answer: the sequence number netlink-proto gave the request,
/// and the reply's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Echoed {
    pub seq: u32,
    pub payload: Vec<u8>,
}

impl RawClient {
    /// Open a socket of `unit` and start its connection task; `timeout`
    /// bounds each reply (zero: wait forever). Must run inside a tokio
    /// runtime.
    pub fn connect(unit: i32, timeout: Duration) -> Result<RawClient, Error> {
        RawClient::connect_with(unit, timeout, Driving::Batched)
    }

    /// [`RawClient::connect`], with the connection task polled as
    /// `driving` says ([`Driving::Stock`]: as netlink-proto ships it).
    pub fn connect_with(
        unit: i32,
        timeout: Duration,
        driving: Driving,
    ) -> Result<RawClient, Error> {
        Ok(RawClient {
            conn: Conn::for_requests(unit, timeout, driving)?,
        })
    }

    pub fn unit(&self) -> i32 {
        self.conn.unit
    }

    /// The portid the kernel assigned to the socket.
    pub fn portid(&self) -> u32 {
        self.conn.portid
    }

    // ANCHOR: raw_echo
    /// Echo `payload` through the module, with `NLM_F_ACK` if `ack`.
    /// Takes `&self`: any number of echoes may be in flight at once, each
    /// matched to its reply by netlink-proto (sequence number and port).
    pub async fn echo(&self, payload: &[u8], ack: bool) -> Result<Echoed, Error> {
        self.request(proto::ECHO_MSG_TYPE, payload, ack).await
    }

    /// Send one message of type `ty` with `payload`; its reply as it came.
    pub async fn request(&self, ty: u16, payload: &[u8], ack: bool) -> Result<Echoed, Error> {
        let msg = RawMsg {
            ty,
            payload: payload.to_vec(),
        };
        let (seq, reply) = self.conn.request(msg, ack).await?;
        Ok(Echoed {
            seq,
            payload: reply.payload,
        })
    }
    // ANCHOR_END: raw_echo

    /// Echo every payload of `payloads` with one datagram
    /// (netlink-proto's `request_batch`); the replies, by sequence number.
    /// With `coalesce=1`, the raw units answer a batch in shared datagrams.
    pub async fn echo_batch(&self, payloads: &[&[u8]]) -> Result<Vec<Echoed>, Error> {
        let messages = payloads.iter().map(|p| {
            let raw = RawMsg {
                ty: proto::ECHO_MSG_TYPE,
                payload: p.to_vec(),
            };
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST;
            let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(raw));
            m.finalize();
            m
        });
        let mut answers = self
            .conn
            .handle
            .request_batch(messages, SocketAddr::new(0, 0))
            .map_err(|_| Error::Closed)?;
        let mut overruns = self.conn.overruns.clone();
        overruns.mark_unchanged();
        let mut replies = Vec::new();
        while replies.len() < payloads.len() {
            let answer = self
                .conn
                .next(&mut answers, &mut overruns)
                .await?
                .ok_or(Error::Closed)?;
            let seq = answer.header.sequence_number;
            match answer.payload {
                NetlinkPayload::InnerMessage(r) => replies.push(Echoed {
                    seq,
                    payload: r.payload,
                }),
                NetlinkPayload::Error(e) => {
                    return Err(Error::Kernel {
                        errno: -e.raw_code(),
                        extack: extack_message(answer.header.flags, &e.header),
                    })
                }
                NetlinkPayload::Overrun(bytes) => return Err(answered_overrun::<RawMsg>(&bytes)),
                other => return Err(Error::Unexpected(format!("{other:?}"))),
            }
        }
        replies.sort_by_key(|r| r.seq);
        Ok(replies)
    }
}

// ---------------------------------------------------------------------------
// Generic netlink
// ---------------------------------------------------------------------------

/// A generic netlink family as genetlink's resolver found it: its id and
/// its multicast groups.
pub type Family = genetlink::resolver::Family;

// ANCHOR: resolve
/// Resolve `family` with genetlink (`CTRL_CMD_GETFAMILY`, on a connection
/// of its own that ends here): its id and its groups.
pub async fn resolve(family: &'static str, timeout: Duration) -> Result<Family, Error> {
    let (connection, handle, _) = genetlink::new_connection().map_err(|source| Error::Os {
        call: "socket(NETLINK_GENERIC)",
        source,
    })?;
    let task = tokio::spawn(connection);
    let query = async {
        genetlink::resolver::Resolver::new()
            .query_family(&handle, family)
            .await
    };
    let resolved = match timeout.is_zero() {
        true => Ok(query.await),
        false => tokio::time::timeout(timeout, query).await,
    };
    task.abort();
    match resolved {
        Err(_) => Err(Error::Timeout { timeout }),
        Ok(Ok(family)) => Ok(family),
        Ok(Err(genetlink::GenetlinkError::NetlinkError(e)))
            if e.raw_os_error() == Some(libc::ENOENT) =>
        {
            Err(Error::FamilyNotFound {
                family: family.into(),
            })
        }
        Ok(Err(e)) => Err(Error::Genetlink(e.to_string())),
    }
}
// ANCHOR_END: resolve

/// A `my_genl` message (or `c_genl`'s: the same commands and attributes).
pub type GenlMsg = GenlMessage<EchoGenl>;

/// The entry of a `GET` reply, a dump message or an `EVENT` (command
/// `cmd`): its `ID`, `PORTID` and `MSG`.
fn entry_of(reply: &GenlMsg, cmd: u8) -> Result<Entry, Error> {
    let p = &reply.payload;
    if p.cmd != cmd {
        return Err(Error::Unexpected(format!(
            "command {} where {cmd} was expected",
            p.cmd
        )));
    }
    match (p.id(), p.portid(), p.msg()) {
        (Some(id), Some(portid), Some(msg)) => Ok(Entry {
            id,
            portid,
            msg: msg.to_vec(),
        }),
        _ => Err(Error::Unexpected(
            "an entry without ID, PORTID or MSG".into(),
        )),
    }
}

/// What a dump received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogDump {
    /// The sequence number of the dump request (and of its messages).
    pub seq: u32,
    pub entries: Vec<Entry>,
    /// Whether a message carried `NLM_F_DUMP_INTR`.
    pub interrupted: bool,
}

/// One item of [`GenlClient::dump_stream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DumpItem {
    /// An entry, and whether its message carried `NLM_F_DUMP_INTR`.
    Entry(Entry, bool),
    /// `NLMSG_DONE`: the dump's sequence number, and whether it carried
    /// `NLM_F_DUMP_INTR`.
    Done(u32, bool),
}

/// A client of a generic netlink family with `my_genl`'s commands.
pub struct GenlClient {
    conn: Conn<GenlMsg>,
    family: Family,
}

impl GenlClient {
    /// Resolve `family` with genetlink, then open the connection of the
    /// requests. Must run inside a tokio runtime.
    pub async fn connect(family: &'static str, timeout: Duration) -> Result<GenlClient, Error> {
        GenlClient::connect_with(family, timeout, Driving::Batched).await
    }

    /// [`GenlClient::connect`], with the connection task polled as
    /// `driving` says.
    pub async fn connect_with(
        family: &'static str,
        timeout: Duration,
        driving: Driving,
    ) -> Result<GenlClient, Error> {
        let family = resolve(family, timeout).await?;
        Ok(GenlClient {
            conn: Conn::for_requests(libc::NETLINK_GENERIC, timeout, driving)?,
            family,
        })
    }

    pub fn family(&self) -> &str {
        &self.family.name
    }

    pub fn family_id(&self) -> u16 {
        self.family.id
    }

    /// `NETLINK_GENERIC`.
    pub fn unit(&self) -> i32 {
        self.conn.unit
    }

    pub fn portid(&self) -> u32 {
        self.conn.portid
    }

    /// The id of multicast group `name`, as the resolver found it.
    pub fn group(&self, name: &str) -> Option<u32> {
        self.family.multicast_groups.get(name).copied()
    }

    /// A message of the family: `cmd` and its attributes.
    fn message(&self, cmd: u8, attrs: Vec<EchoAttr>) -> GenlMsg {
        let header = GenlHeader {
            cmd,
            version: proto::GENL_FAMILY_VERSION,
        };
        GenlMessage::new(header, EchoGenl { cmd, attrs }, self.family.id)
    }

    // ANCHOR: genl_echo
    /// `ECHO` with `msg` as `MSG`; the reply's `MSG`.
    pub async fn echo(&self, msg: &str, ack: bool) -> Result<Echoed, Error> {
        self.command(proto::GENL_CMD_ECHO, Some(msg), ack).await
    }

    /// Command `cmd` with an optional `MSG` attribute; the reply's `MSG`.
    /// Other commands and a missing `MSG` are for testing the module's
    /// errors.
    pub async fn command(&self, cmd: u8, msg: Option<&str>, ack: bool) -> Result<Echoed, Error> {
        let mut attrs = Vec::new();
        if let Some(msg) = msg {
            if msg.contains('\0') {
                return Err(Error::NulInMessage);
            }
            attrs.push(EchoAttr::Msg(msg.as_bytes().to_vec()));
        }
        let (seq, reply) = self.conn.request(self.message(cmd, attrs), ack).await?;
        let msg = reply
            .payload
            .msg()
            .ok_or_else(|| Error::Unexpected("reply without a MSG attribute".into()))?;
        Ok(Echoed {
            seq,
            payload: msg.to_vec(),
        })
    }
    // ANCHOR_END: genl_echo

    /// `GET` with `ID` if given (a `do`): that entry of the log.
    pub async fn get(&self, id: Option<u32>) -> Result<Entry, Error> {
        let attrs = id.map(EchoAttr::Id).into_iter().collect();
        let (_, reply) = self
            .conn
            .request(self.message(proto::GENL_CMD_GET, attrs), false)
            .await?;
        entry_of(&reply, proto::GENL_CMD_GET)
    }

    // ANCHOR: dump
    /// `GET` with `NLM_F_DUMP`: the echo log as a stream, an entry at a
    /// time as netlink-proto hands the messages over, then
    /// [`DumpItem::Done`]. An error ends it.
    pub fn dump_stream(&self) -> Result<impl Stream<Item = Result<DumpItem, Error>> + '_, Error> {
        let request = self.message(proto::GENL_CMD_GET, Vec::new());
        let answers = Box::pin(self.conn.send(request, NLM_F_REQUEST | NLM_F_DUMP)?);
        let mut overruns = self.conn.overruns.clone();
        overruns.mark_unchanged();
        let state = (answers, overruns, false);
        Ok(futures::stream::unfold(
            state,
            move |(mut answers, mut overruns, ended)| async move {
                if ended {
                    return None;
                }
                let item = match self.conn.next(&mut answers, &mut overruns).await {
                    Ok(Some(answer)) => dump_item(answer),
                    Ok(None) => Err(Error::Closed),
                    Err(e) => Err(e),
                };
                let ended = !matches!(item, Ok(DumpItem::Entry(..)));
                Some((item, (answers, overruns, ended)))
            },
        ))
    }

    /// [`GenlClient::dump_stream`], collected.
    pub async fn dump(&self) -> Result<LogDump, Error> {
        let mut items = std::pin::pin!(self.dump_stream()?);
        let mut dump = LogDump {
            seq: 0,
            entries: Vec::new(),
            interrupted: false,
        };
        while let Some(item) = items.next().await {
            match item? {
                DumpItem::Entry(e, intr) => {
                    dump.entries.push(e);
                    dump.interrupted |= intr;
                }
                DumpItem::Done(seq, intr) => {
                    dump.seq = seq;
                    dump.interrupted |= intr;
                }
            }
        }
        Ok(dump)
    }
    // ANCHOR_END: dump
}

/// One answer of a dump.
fn dump_item(answer: NetlinkMessage<GenlMsg>) -> Result<DumpItem, Error> {
    let intr = answer.header.flags & NLM_F_DUMP_INTR != 0;
    match answer.payload {
        NetlinkPayload::InnerMessage(m) => {
            Ok(DumpItem::Entry(entry_of(&m, proto::GENL_CMD_GET)?, intr))
        }
        NetlinkPayload::Done(done) if done.code == 0 => {
            Ok(DumpItem::Done(answer.header.sequence_number, intr))
        }
        NetlinkPayload::Done(done) => Err(Error::Kernel {
            errno: -done.code,
            extack: msg::tlv_message(&done.extended_ack),
        }),
        NetlinkPayload::Error(e) => Err(Error::Kernel {
            errno: -e.raw_code(),
            extack: extack_message(answer.header.flags, &e.header),
        }),
        NetlinkPayload::Overrun(bytes) => Err(answered_overrun::<GenlMsg>(&bytes)),
        other => Err(Error::Unexpected(format!("{other:?} in a dump"))),
    }
}

// ---------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------

/// A socket that joined a multicast group, and the stream of what it
/// receives: netlink-proto's unsolicited messages.
pub struct Subscriber<P: Debug> {
    conn: Conn<P>,
    unsolicited: Unsolicited<P>,
    group: u32,
}

impl<P: Debug> Subscriber<P> {
    /// The group id (raw units: the group number) it joined.
    pub fn group(&self) -> u32 {
        self.group
    }
    pub fn portid(&self) -> u32 {
        self.conn.portid
    }
}

impl Subscriber<RawMsg> {
    // ANCHOR: subscribe_raw
    /// Join group [`proto::RAW_GROUP`] of a raw unit.
    pub fn raw(unit: i32) -> Result<Subscriber<RawMsg>, Error> {
        let group = proto::RAW_GROUP;
        let (conn, unsolicited) = open(unit, &[group], Duration::ZERO, Driving::Batched)?;
        Ok(Subscriber {
            conn,
            unsolicited,
            group,
        })
    }
    // ANCHOR_END: subscribe_raw

    /// The next notification: a copy of an echo reply.
    pub async fn next(&mut self) -> Result<Notice, Error> {
        let (message, _) = self.unsolicited.next().await.ok_or(Error::Closed)?;
        let header = message.header;
        match message.payload {
            NetlinkPayload::InnerMessage(raw) => Ok(Notice::Event(Event::Raw {
                seq: header.sequence_number,
                portid: header.port_number,
                payload: raw.payload,
            })),
            NetlinkPayload::Overrun(b) if b.is_empty() => Ok(Notice::Lost),
            NetlinkPayload::Overrun(b) => Err(Error::Malformed(diagnose::<RawMsg>(&b))),
            other => Err(Error::Unexpected(format!("{other:?} in a group"))),
        }
    }
}

impl Subscriber<GenlMsg> {
    // ANCHOR: subscribe_genl
    /// Join the multicast group `name` of `family`, which the resolver
    /// found (its id and groups come with the family).
    pub async fn genl(
        family: &'static str,
        name: &str,
        timeout: Duration,
    ) -> Result<(Family, Subscriber<GenlMsg>), Error> {
        let found = resolve(family, timeout).await?;
        let group = *found.multicast_groups.get(name).ok_or_else(|| {
            Error::Unexpected(format!("family {family} has no multicast group {name}"))
        })?;
        let (conn, unsolicited) = open(
            libc::NETLINK_GENERIC,
            &[group],
            Duration::ZERO,
            Driving::Batched,
        )?;
        let subscriber = Subscriber {
            conn,
            unsolicited,
            group,
        };
        Ok((found, subscriber))
    }
    // ANCHOR_END: subscribe_genl

    /// The next notification: an `EVENT`.
    pub async fn next(&mut self) -> Result<Notice, Error> {
        let (message, _) = self.unsolicited.next().await.ok_or(Error::Closed)?;
        match message.payload {
            NetlinkPayload::InnerMessage(m) => Ok(Notice::Event(Event::Genl(entry_of(
                &m,
                proto::GENL_CMD_EVENT,
            )?))),
            NetlinkPayload::Overrun(b) if b.is_empty() => Ok(Notice::Lost),
            NetlinkPayload::Overrun(b) => Err(Error::Malformed(diagnose::<GenlMsg>(&b))),
            other => Err(Error::Unexpected(format!("{other:?} in a group"))),
        }
    }
}

// ---------------------------------------------------------------------------
// Many echoes in flight
// ---------------------------------------------------------------------------

/// What [`echo_many`] measured.
#[derive(Clone, Debug)]
pub struct EchoRun {
    /// The first request's sequence number, and its reply.
    pub first: Echoed,
    pub elapsed: Duration,
}

// ANCHOR: in_flight
/// `count` echoes of `payload`, at most `in_flight` outstanding at once,
/// each reply checked byte for byte. netlink-proto numbers the requests
/// and routes each reply to its request by sequence number; the futures
/// complete in any order. An error carries the failed request's number,
/// from 1 (its sequence number on a fresh connection), or for a reply
/// that differs, the reply's sequence number.
pub async fn echo_many<F, Fut>(
    count: u64,
    in_flight: usize,
    payload: &[u8],
    echo: F,
) -> Result<EchoRun, (u64, Error)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Echoed, Error>>,
{
    let start = Instant::now();
    let mut first = None;
    let mut replies = futures::stream::iter(1..=count)
        .map(|n| {
            let reply = echo();
            async move { (n, reply.await) }
        })
        .buffered(in_flight.max(1));
    while let Some((n, reply)) = replies.next().await {
        let reply = reply.map_err(|e| (n, e))?;
        if reply.payload != payload {
            let e = Error::Differs {
                sent: payload.len(),
                received: reply.payload.len(),
            };
            return Err((u64::from(reply.seq), e));
        }
        if n == 1 {
            first = Some(reply);
        }
    }
    let elapsed = start.elapsed();
    Ok(EchoRun {
        first: first.unwrap_or_else(|| Echoed {
            seq: 0,
            payload: Vec::new(),
        }),
        elapsed,
    })
}
// ANCHOR_END: in_flight

#[cfg(test)]
mod parser_fuzz;
