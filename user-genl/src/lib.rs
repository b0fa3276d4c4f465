//! # user-genl: netlink with neli
//!
//! The highest of the three netlink-rosetta clients. It talks to every
//! project module through the [`neli`] crate (0.7): `kmod-raw` (unit
//! [`proto::RAW_UNIT`]) and `kmod-kthread` (unit [`proto::KTHREAD_UNIT`])
//! with [`RawClient`], and the generic netlink family
//! [`proto::GENL_FAMILY_NAME`] of `kmod-genl` with [`GenlClient`]. Requests
//! are built with neli's typed builders (`NlmsghdrBuilder`,
//! `GenlmsghdrBuilder`, `NlattrBuilder`), the family id comes from
//! `resolve_genl_family`, and the raw units, which neli has no name for,
//! are `NlFamily::UnrecognizedConst(31)` with a plain byte payload.
//!
//! Despite its name, this crate is not the counterpart of the original
//! article's libnl-genl client: that is `echo_genl` in `user-libnl-style`.
//! This one shows the same exchanges through a Rust netlink library.
//!
//! Build and run it inside the project VM, where the modules are loaded:
//!
//! ```text
//! cargo xtask vm --modules raw -- target/debug/user-genl "hello"
//! cargo xtask vm --modules raw -- target/debug/user-genl --mode socket "hello"
//! cargo xtask vm --modules genl -- target/debug/user-genl --module genl "hello"
//! ```
//!
//! which print (the portid and family id are whatever the kernel assigned;
//! neli's router numbers requests from 0, the socket mode from 1):
//!
//! ```text
//! module raw: netlink unit 31, portid 1234
//! echo seq 0: sent 5 bytes, received 5 bytes: "hello"
//!
//! module raw: netlink unit 31, portid 1235
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//!
//! module genl: family my_genl id 34, portid 1236
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//! ```
//!
//! ## Two ways through neli: [`Mode::Router`] and [`Mode::Socket`]
//!
//! - [`Mode::Router`] is what neli's documentation recommends:
//!   `neli::router::synchronous::NlRouter`. It spawns a thread that owns the
//!   (non-blocking) socket, parses every datagram and hands each message
//!   over an mpsc channel to the `NlRouterReceiverHandle` of the request
//!   with that seq and portid. It numbers requests itself (0, 1, 2, ...),
//!   checks the portid, and knows when a request is finished (reply, then
//!   ack if `NlmF::ACK` was set). Cost: one thread hand-off per message.
//!   The handle has no timeout; see "Hangs" below for how we bound it.
//! - [`Mode::Socket`] is `neli::socket::NlSocket`, neli's low-level
//!   socket: blocking, `send` of the bytes neli serialised
//!   (`Nlmsghdr::to_bytes`), then `recv` of one datagram into a buffer that
//!   the connection owns, which neli parses into typed messages
//!   (`Nlmsghdr::from_bytes`, one message after the other, as the iterator
//!   of `NlSocketHandle::recv` does). Sequence numbers, matching and "am I
//!   done" are ours (the same loop as `user-raw`); `SO_RCVTIMEO` bounds each
//!   wait. No extra thread.
//!
//! Both modes build and parse the same typed messages; they differ in who
//! waits and where, and in the receive buffer. Socket mode does not use
//! neli's own blocking socket, `neli::socket::synchronous::NlSocketHandle`,
//! because of what its `recv` costs (quirk 7). It receives into a buffer of
//! neli's `BufferPool`, and when the `BufferPoolGuard` drops, neli re-zeroes
//! the whole 32 KiB buffer: `impl Drop for BufferPoolGuard` in neli 0.7.5's
//! `src/utils.rs` does `vec.resize(..., 0)` back to `MAX_NL_LENGTH`. Socket
//! mode allocates its buffers once per connection and never zeroes them
//! again: the kernel overwrites the bytes it delivers, and neli parses only
//! those. The router receives through `NlSocketHandle::recv` on its thread,
//! so it still pays the re-zeroing.
//!
//! ## Dumps and groups
//!
//! [`GenlClient::dump`] sends `GET` with `NlmF::DUMP`: in router mode the
//! handle of `NlRouter::send` yields every message until `NLMSG_DONE`; in
//! socket mode our loop parses each datagram with neli. [`GenlClient::get`]
//! is the `do`. [`GenlClient::subscribe`] resolves the group with
//! `NlRouter::resolve_nl_mcast_group` (router) or the same request by hand
//! (socket), joins it with `add_mcast_membership`, and returns a
//! [`Subscriber`]: the router's multicast handle, or our own receive.
//! [`RawClient::subscribe`] joins a raw unit's group 1. Quirks 8 to 10 are
//! in `src/log.rs`.
//!
//! ## neli quirks you will see here (neli 0.7.5)
//!
//! 1. **`nlmsg_len` is always padded.** `NlmsghdrBuilder::build()` sets
//!    `nl_len` to `NLMSG_ALIGN(16 + payload)`, where the kernel's
//!    `nlmsg_put()` and `user-raw` use the unpadded `NLMSG_LENGTH()`. For
//!    attribute payloads (genl) that is the same number; for a raw payload
//!    of 13 bytes the kernel sees `nlmsg_len` 32, i.e. a 16-byte payload
//!    ending in 3 NULs, and our modules echo all 16. There is no setter for
//!    `nl_len`. [`RawClient::echo`] removes exactly that padding from the
//!    reply ([`strip_neli_padding`]); [`RawClient::request`] shows the reply
//!    as it came.
//! 2. **The router drops extended acks.** The router thread parses an
//!    `NLMSG_ERROR` with its `ext_ack` TLVs, but `Nlmsgerr::to_typed()`
//!    rebuilds the error without them, so in [`Mode::Router`] the extack
//!    message (`NLMSGERR_ATTR_MSG`) never reaches the caller: errors carry
//!    the errno only. [`Mode::Socket`] gets the text.
//! 3. **The router cannot time out.** `NlRouterReceiverHandle::next()` is a
//!    blocking `mpsc::Receiver::recv()`; a request the kernel never answers
//!    blocks its caller forever (the host test
//!    `router_without_timeout_waits_forever` shows it). With a timeout,
//!    [`Mode::Router`] therefore runs each request on a helper thread and
//!    waits for it with `recv_timeout` (see [`Error::RouterStuck`]).
//! 4. **No `NETLINK_CAP_ACK`.** neli parses the request copied into an
//!    `NLMSG_ERROR` using its `nlmsg_len`; with capped acks that copy is
//!    only the header and parsing fails. So the kernel copies whole
//!    requests into errors. The router receives into neli's fixed 32 KiB
//!    (`MAX_NL_LENGTH`), and socket mode into its own buffer of the same
//!    size, so that both accept the same requests: at most
//!    [`MAX_REQUEST_PAYLOAD`] bytes. neli's `recv` cuts a longer datagram
//!    short without a word, and the router reports the parse error that
//!    follows to the requests pending at that moment. Socket mode receives
//!    with `MSG_TRUNC`, which makes the kernel report the datagram's full
//!    length, and turns a datagram that did not fit into
//!    [`Error::Unexpected`] ("datagram of N bytes truncated ...").
//! 5. neli's `String` attribute parser drops the last byte blindly (and
//!    underflows on an empty attribute), so the `MSG` string is read as
//!    bytes up to its NUL here.
//! 6. **neli panics on some malformed datagrams** (an `nlmsg_len` below 16,
//!    an `NLMSG_ERROR` whose copied request does not fit, ...): it subtracts
//!    header sizes from length fields unchecked. The kernel never sends
//!    them, but any process can send a datagram to our portid. Our calls
//!    into neli's parsers catch the panic and return [`Error::NeliPanic`]
//!    (see `neli_parse` in the source). In [`Mode::Router`] the first parse happens on
//!    neli's router thread, which the panic ends: the pending request then
//!    times out ([`Error::Timeout`], then [`Error::RouterStuck`]), or, with
//!    no timeout, waits forever. The parser fuzz tests
//!    (`src/parser_fuzz.rs`, `cargo test -p user-genl parser_fuzz`) pin the
//!    inputs.
//! 7. **Every receive re-zeroes 32 KiB.** `NlSocketHandle::recv` takes a
//!    32 KiB buffer from neli's `BufferPool` and shrinks it to the datagram;
//!    when the returned iterator (and with it the `BufferPoolGuard`) drops,
//!    `impl Drop for BufferPoolGuard` (neli 0.7.5, `src/utils.rs`) puts it
//!    back to `MAX_NL_LENGTH` with `vec.resize(..., 0)`. On every receive,
//!    that writes zeros over the whole buffer except the datagram.
//!    Callgrind on the release CLIs in the VM counted 35 697 userspace
//!    instructions per 16-byte echo through `NlSocketHandle`, 91% of them
//!    `memset` (user-raw: 717). That is why [`Mode::Socket`] receives into
//!    its own buffer with `NlSocket::recv`: 2 394 instructions per echo,
//!    counted the same way. On any host, `examples/ack_round_trips.rs`
//!    (acks from `NETLINK_GENERIC`, no module needed) shows the same: 35 268
//!    instructions per round trip through `NlSocketHandle`, 1 894 now.
//!    [`Mode::Router`] stays as neli ships it and pays the re-zeroing on
//!    its thread (45 300 there). `NELI-UPSTREAM.md` is the report for neli,
//!    with a fix.

use std::fmt::{Debug, Display};
use std::io::{self, Cursor};
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use neli::consts::genl::{CtrlAttr, CtrlCmd};
use neli::consts::nl::{GenlId, NlmF, NlmsgerrAttr};
use neli::consts::socket::{Msg, NlFamily};
use neli::err::{Nlmsgerr, RouterError, SerError, SocketError};
use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, NlattrBuilder};
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::router::synchronous::NlRouter;
use neli::socket::NlSocket;
use neli::types::{Buffer, GenlBuffer};
use neli::utils::Groups;
use neli::{neli_enum, FromBytes, FromBytesWithInput, Size, ToBytes};

// ---------------------------------------------------------------------------
// The protocol, as neli types
// ---------------------------------------------------------------------------

/// The commands of `my_genl` (`EXMPL_C_*`). neli wants an enum that
/// serialises to the `cmd` byte of `struct genlmsghdr`; any other value
/// becomes `MyGenlCmd::UnrecognizedConst(n)`.
#[neli_enum(serialized_type = "u8")]
pub enum MyGenlCmd {
    Unspec = 0,
    Echo = proto::GENL_CMD_ECHO,
    Get = proto::GENL_CMD_GET,
    Event = proto::GENL_CMD_EVENT,
}
impl neli::consts::genl::Cmd for MyGenlCmd {}

/// The attributes of `my_genl` (`EXMPL_A_*`), the `nla_type` of each `nlattr`.
#[neli_enum(serialized_type = "u16")]
pub enum MyGenlAttr {
    Unspec = 0,
    Msg = proto::GENL_ATTR_MSG,
    Id = proto::GENL_ATTR_ID,
    Portid = proto::GENL_ATTR_PORTID,
}
impl neli::consts::genl::NlAttrType for MyGenlAttr {}

/// A `my_genl` message: `struct genlmsghdr` + attributes.
type MyGenlMsg = Genlmsghdr<MyGenlCmd, MyGenlAttr>;

/// A message of the generic netlink controller (`nlctrl`, id `GENL_ID_CTRL`).
type CtrlMsg = Genlmsghdr<CtrlCmd, CtrlAttr>;

/// `CTRL_VERSION`, the controller's protocol version (neli uses it too).
const CTRL_VERSION: u8 = 2;

/// The receive buffer of [`Mode::Socket`], allocated once per connection:
/// as large as the one neli's router receives into (`MAX_NL_LENGTH`,
/// 32 KiB, set when neli is compiled), so that both modes accept the same
/// requests and replies.
const RECV_BUFFER_LEN: usize = neli::consts::MAX_NL_LENGTH;

/// Largest raw payload or `MSG` string sent. Both modes receive into
/// 32 KiB (neli's `MAX_NL_LENGTH` for the router, a buffer of that size
/// for the socket mode), and an `NLMSG_ERROR` carries a full copy of the
/// request (see quirk 4): keep 1 KiB for its headers and extended-ack
/// attributes.
pub const MAX_REQUEST_PAYLOAD: usize = RECV_BUFFER_LEN - 1024;

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
    /// [`Mode::Router`] only: an earlier request timed out, and its helper
    /// thread may wait inside neli for ever, since a router request cannot
    /// be cancelled. The client refuses further requests.
    #[error("an earlier request timed out and neli's router is still waiting for its answer: open a new client")]
    RouterStuck,
    /// An `NLMSG_ERROR` with a non-zero error; `errno` is positive (90, not -90).
    #[error("kernel replied {} (errno {errno}): {}", errno_name(*errno), kernel_detail(*errno, extack))]
    Kernel { errno: i32, extack: Option<String> },
    #[error("payload of {len} bytes is too long: neli receives into {} bytes, at most {MAX_REQUEST_PAYLOAD} can be sent", neli::consts::MAX_NL_LENGTH)]
    PayloadTooLarge { len: usize },
    #[error("the message contains a NUL byte: the MSG attribute is a NUL-terminated string")]
    NulInMessage,
    #[error("the kernel acked request seq {seq} without sending a reply")]
    NoReply { seq: u32 },
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    #[error("receive buffer overrun (ENOBUFS): the kernel dropped messages for this socket")]
    Overrun,
    /// An error of neli itself: building, parsing, or its router thread.
    #[error("neli: {0}")]
    Neli(String),
    /// neli panicked while parsing a received datagram: it was malformed in
    /// a way neli 0.7.5 does not check (crate quirk 6).
    #[error("neli panicked parsing a received message, which must be malformed: {0}")]
    NeliPanic(String),
}

/// Wrap an error that neli reports (builder, parser or router message).
fn neli_error(e: impl Display) -> Error {
    Error::Neli(e.to_string())
}

/// Run one of neli's parsers of received bytes, turning a panic inside it
/// into [`Error::NeliPanic`]. neli 0.7.5 subtracts header sizes from length
/// fields without checking them: an `nlmsg_len` below 16, or an
/// `NLMSG_ERROR` whose copied request claims more than the error holds,
/// panics: in debug builds on the subtraction's overflow, in release builds
/// (where it wraps) when the `nlmsg_len` below 16 becomes a `vec![0; ~2^64]`
/// ("capacity overflow"). The kernel never sends such bytes;
/// another process can, to our portid. The README ("Client-side
/// robustness") lists the inputs. Socket mode wraps each
/// `Nlmsghdr::from_bytes` ([`next_message`]); the router's handle parses
/// lazily, inside `next()`, so that is what router mode wraps. The panic
/// message still goes to the panic hook (stderr), as for any caught panic.
fn neli_parse<T>(parse: impl FnOnce() -> T) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).map_err(|panic| {
        let text = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
            (Some(text), _) => text.to_string(),
            (None, Some(text)) => text.clone(),
            (None, None) => "a panic without a message".to_string(),
        };
        Error::NeliPanic(text)
    })
}

/// The extack message if the kernel sent one, else strerror(errno).
fn kernel_detail(errno: i32, extack: &Option<String>) -> String {
    if let Some(text) = extack {
        return text.clone();
    }
    let text = io::Error::from_raw_os_error(errno).to_string();
    let suffix = format!(" (os error {errno})");
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

/// The symbolic name of the errnos a netlink kernel module plausibly returns.
fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ENOMEM => "ENOMEM",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ERANGE => "ERANGE",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOBUFS => "ENOBUFS",
        _ => return format!("error {errno}"),
    };
    name.to_string()
}

/// An `NLMSG_ERROR` as neli parsed it: errno and `NLMSGERR_ATTR_MSG`.
fn kernel_error<M>(err: &Nlmsgerr<M>) -> Error {
    let extack = err
        .ext_ack()
        .iter()
        .find(|attr| *attr.nla_type().nla_type() == NlmsgerrAttr::Msg)
        .map(|attr| String::from_utf8_lossy(until_nul(attr.nla_payload().as_ref())).into_owned());
    Error::Kernel {
        errno: err.error().saturating_neg(), // NLMSG_ERROR carries -errno
        extack,
    }
}

/// A C string's bytes: everything before the first NUL.
fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// An I/O error inside a neli socket call. `unit` turns EPROTONOSUPPORT
/// (no kernel code registered the unit) into [`Error::UnitUnavailable`],
/// `timeout` turns EAGAIN (`SO_RCVTIMEO` expired) into [`Error::Timeout`].
fn socket_error(call: &'static str, e: SocketError, unit: i32, timeout: Duration) -> Error {
    let SocketError::Io(io_err) = e else {
        return neli_error(e);
    };
    match io_err.raw_os_error() {
        Some(libc::EPROTONOSUPPORT) => Error::UnitUnavailable { unit },
        Some(libc::EAGAIN) => Error::Timeout { timeout },
        // The Arc'd io::Error cannot be moved out: rebuild it from the errno.
        Some(errno) => Error::Os {
            call,
            source: io::Error::from_raw_os_error(errno),
        },
        None => Error::Os {
            call,
            source: io::Error::new(io_err.kind(), io_err.to_string()),
        },
    }
}

/// An error from `NlRouter`: the kernel's `NLMSG_ERROR`, a socket error
/// (from `connect`, or broadcast by the router thread), or neli's own.
fn router_error<T: Debug, P: Debug>(e: RouterError<T, P>, unit: i32, timeout: Duration) -> Error {
    match e {
        RouterError::Nlmsgerr(err) => kernel_error(&err),
        RouterError::Socket(err) => socket_error("netlink socket (NlRouter)", err, unit, timeout),
        other => neli_error(other),
    }
}

// ---------------------------------------------------------------------------
// Mode and connection
// ---------------------------------------------------------------------------

/// Which neli API carries the requests; see the crate documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `NlRouter`: a background thread matches replies to requests.
    #[default]
    Router,
    /// `NlSocket`, neli's low-level socket: synchronous send and receive
    /// on the caller's thread, into a buffer the connection owns.
    Socket,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Router => "router",
            Mode::Socket => "socket",
        }
    }
}

/// A netlink socket on one unit, driven by neli's router or by us.
struct Conn {
    transport: Transport,
    unit: i32,
    portid: u32,
    timeout: Duration,
    last_seq: u32,
}

enum Transport {
    Router {
        router: Arc<NlRouter>,
        /// Created on the first request with a timeout; see [`Waiter`].
        waiter: Option<Waiter>,
        /// The seq of the router's next request. `NlRouter` keeps its
        /// counter private; it starts at 0 and adds 1 per `send`, and every
        /// reply is checked against this copy.
        next_seq: u32,
        /// A request timed out: see [`Error::RouterStuck`].
        stuck: bool,
        /// What `NlRouter::connect` returned beside the router: the
        /// messages its thread received with a non-zero `nl_groups`
        /// (multicast), for [`Subscriber`]. Kept, or the thread's sends
        /// to it fail.
        multicast: Option<MulticastHandle>,
    },
    Socket(SocketConn),
}

/// [`Mode::Socket`]: neli's low-level socket and the two buffers that
/// every request of the connection reuses.
struct SocketConn {
    sock: NlSocket,
    /// The seq of the last request.
    seq: u32,
    /// The last request as neli serialised it; cleared, not freed, for the
    /// next one.
    send_buf: Cursor<Vec<u8>>,
    /// One received datagram. Allocated and zeroed once, with the
    /// connection: each `recv` overwrites the bytes it delivers, and only
    /// those are parsed, so nothing needs clearing between requests
    /// (unlike neli's pooled buffer: crate quirk 7).
    recv_buf: Box<[u8]>,
}

impl Conn {
    // ANCHOR: connect
    fn connect(unit: i32, mode: Mode, timeout: Duration) -> Result<Conn, Error> {
        // Units 31 and 25 are not among neli's names: from(31) gives
        // NlFamily::UnrecognizedConst(31), passed to socket(2) as it is.
        let family = NlFamily::from(unit);
        // Portid None: bind(2) with nl_pid 0, the kernel assigns one.
        let (transport, portid) = match mode {
            Mode::Router => {
                // The second value receives the multicast messages, once
                // the socket joins a group (see `Subscriber`).
                let (router, multicast) = NlRouter::connect(family, None, Groups::empty())
                    .map_err(|e| router_error(e, unit, timeout))?;
                router
                    .enable_ext_ack(true)
                    .map_err(|e| router_error(e, unit, timeout))?;
                let portid = router.pid();
                let transport = Transport::Router {
                    router: Arc::new(router),
                    waiter: None,
                    next_seq: 0,
                    stuck: false,
                    multicast: Some(multicast),
                };
                (transport, portid)
            }
            Mode::Socket => {
                let os_error = |call, e: io::Error| socket_error(call, e.into(), unit, timeout);
                // socket(2) and bind(2); the socket is blocking.
                let sock = NlSocket::connect(family, None, Groups::empty())
                    .map_err(|e| os_error("socket(AF_NETLINK)", e))?;
                sock.enable_ext_ack(true)
                    .map_err(|e| os_error("setsockopt(NETLINK_EXT_ACK)", e))?;
                set_recv_timeout(&sock, timeout)?;
                let portid = sock.pid().map_err(|e| os_error("getsockname", e))?;
                let conn = SocketConn {
                    sock,
                    seq: 0,
                    send_buf: Cursor::new(Vec::new()),
                    recv_buf: vec![0; RECV_BUFFER_LEN].into_boxed_slice(),
                };
                (Transport::Socket(conn), portid)
            }
        };
        Ok(Conn {
            transport,
            unit,
            portid,
            timeout,
            last_seq: 0,
        })
    }
    // ANCHOR_END: connect

    fn mode(&self) -> Mode {
        match self.transport {
            Transport::Router { .. } => Mode::Router,
            Transport::Socket { .. } => Mode::Socket,
        }
    }

    fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        if let Transport::Socket(conn) = &self.transport {
            set_recv_timeout(&conn.sock, timeout)?;
        }
        self.timeout = timeout;
        Ok(())
    }

    /// Send one request and wait for its reply (and its ack, with
    /// `NlmF::ACK`); `extract` takes what the caller wants from the reply.
    /// `P` is the payload type of both the request and the reply.
    fn request<P, R>(
        &mut self,
        nl_type: u16,
        flags: NlmF,
        payload: P,
        extract: fn(&P) -> Result<R, Error>,
    ) -> Result<R, Error>
    where
        P: Size + ToBytes + FromBytesWithInput<Input = usize> + Debug + Send + 'static,
        R: Send + 'static,
    {
        let (unit, timeout) = (self.unit, self.timeout);
        if let Transport::Socket(conn) = &mut self.transport {
            // 1, 2, ... u32::MAX, then 1 again: 0 is what notifications use.
            conn.seq = conn.seq.checked_add(1).unwrap_or(1);
            self.last_seq = conn.seq;
            return conn
                .request(nl_type, flags, payload, extract)
                .map_err(|e| e.into_error(unit, timeout));
        }
        self.on_router(move |router, seq| {
            router_request(router, seq, nl_type, flags, payload, extract)
                .map_err(|e| e.into_error(unit, timeout))
        })
    }

    /// Run `job` with the router and the seq it will use: on this thread if
    /// there is no timeout, else on the [`Waiter`] thread, for at most
    /// `timeout`.
    fn on_router<R: Send + 'static>(
        &mut self,
        job: impl FnOnce(&NlRouter, u32) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let Transport::Router {
            router,
            waiter,
            next_seq,
            stuck,
            ..
        } = &mut self.transport
        else {
            return Err(Error::Unexpected("not a router connection".into()));
        };
        if *stuck {
            return Err(Error::RouterStuck);
        }
        let seq = *next_seq;
        *next_seq = next_seq.wrapping_add(1);
        self.last_seq = seq;
        if self.timeout.is_zero() {
            return job(router, seq); // "wait forever": neli's own blocking call
        }
        let waiter = match waiter {
            Some(waiter) => waiter,
            None => waiter.insert(Waiter::spawn(Arc::clone(router))?),
        };
        let result = waiter.run(self.timeout, move |router| job(router, seq));
        if matches!(result, Err(Error::Timeout { .. })) {
            *stuck = true;
        }
        result
    }
}

/// `setsockopt(SO_RCVTIMEO)`: neli has no call for it. Zero: wait forever.
fn set_recv_timeout(sock: &NlSocket, timeout: Duration) -> Result<(), Error> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: timeout.subsec_micros() as libc::suseconds_t, // < 1_000_000
    };
    // SAFETY: `tv` is an initialised timeval that outlives the call and we
    // pass its exact size; the descriptor belongs to `sock`, borrowed here.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(Error::Os {
            call: "setsockopt(SO_RCVTIMEO)",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// An error inside a request, before we know the unit and timeout to
/// report: neli's socket and router errors need them to become an [`Error`].
enum RequestError<P> {
    Socket(SocketError),
    Router(RouterError<u16, P>),
    Done(Error),
}

impl<P: Debug> RequestError<P> {
    fn into_error(self, unit: i32, timeout: Duration) -> Error {
        match self {
            RequestError::Socket(e) => socket_error("netlink socket", e, unit, timeout),
            RequestError::Router(e) => router_error(e, unit, timeout),
            RequestError::Done(e) => e,
        }
    }
}

impl<P> From<Error> for RequestError<P> {
    fn from(e: Error) -> Self {
        RequestError::Done(e)
    }
}

impl SocketConn {
    /// Builds the message with seq `self.seq` (`NLM_F_REQUEST` added to
    /// `flags`), serialises and `send`s it; returns the seq.
    pub(crate) fn send_request<P>(
        &mut self,
        nl_type: u16,
        flags: NlmF,
        payload: P,
    ) -> Result<u32, RequestError<P>>
    where
        P: Size + ToBytes + FromBytesWithInput<Input = usize> + Debug,
    {
        let seq = self.seq;
        let request = NlmsghdrBuilder::default()
            .nl_type(nl_type)
            .nl_flags(flags | NlmF::REQUEST) // "must be set on all request messages"
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .map_err(neli_error)?;
        serialise(&request, &mut self.send_buf).map_err(|e| RequestError::Socket(e.into()))?;
        self.sock
            .send(self.send_buf.get_ref(), Msg::empty())
            .map_err(|e| RequestError::Socket(e.into()))?;
        Ok(seq)
    }

    /// [`Mode::Socket`]: build the message with seq `self.seq`, serialise
    /// and `send` it, then `recv` datagrams until the reply with our seq
    /// (and the ack, if asked for) arrived.
    fn request<P, R>(
        &mut self,
        nl_type: u16,
        flags: NlmF,
        payload: P,
        extract: fn(&P) -> Result<R, Error>,
    ) -> Result<R, RequestError<P>>
    where
        P: Size + ToBytes + FromBytesWithInput<Input = usize> + Debug,
    {
        let seq = self.send_request(nl_type, flags, payload)?;

        let want_ack = flags.contains(NlmF::ACK);
        let (mut reply, mut acked) = (None, false);
        while reply.is_none() || (want_ack && !acked) {
            let len = self.recv_datagram()?;
            // Exactly the received bytes: neli tells an empty NLMSG_DONE
            // by the end of the cursor.
            let mut datagram = Cursor::new(&self.recv_buf[..len]);
            while let Some(message) = next_message::<P>(&mut datagram)? {
                if *message.nl_seq() != seq {
                    continue; // a late answer to an earlier request that timed out
                }
                match message.nl_payload() {
                    NlPayload::Payload(p) => reply = Some(extract(p)?),
                    NlPayload::Err(err) => return Err(kernel_error(err).into()),
                    // The ack comes last: an ack before the reply means no reply.
                    NlPayload::Ack(_) if reply.is_none() => {
                        return Err(Error::NoReply { seq }.into())
                    }
                    NlPayload::Ack(_) => acked = true,
                    NlPayload::DumpExtAck(_) | NlPayload::Empty => {}
                }
            }
        }
        reply.ok_or_else(|| Error::NoReply { seq }.into())
    }

    /// Receive one datagram into `recv_buf` and return its length.
    /// `MSG_TRUNC` makes the kernel return the datagram's full length even
    /// when it is longer than the buffer, so a datagram that was cut short
    /// becomes an error instead of being parsed as if it were whole (its
    /// rest is lost either way).
    fn recv_datagram<P>(&mut self) -> Result<usize, RequestError<P>> {
        loop {
            match self.sock.recv(&mut *self.recv_buf, Msg::TRUNC) {
                Ok((len, _groups)) if len <= self.recv_buf.len() => return Ok(len),
                Ok((len, _groups)) => {
                    let text = format!(
                        "datagram of {len} bytes truncated to the {} bytes of the receive buffer",
                        self.recv_buf.len()
                    );
                    return Err(Error::Unexpected(text).into());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RequestError::Socket(e.into())),
            }
        }
    }
}

/// Serialise `message` with neli (`ToBytes`) into `buf`, over whatever
/// request it held before: the bytes `NlSocketHandle::send` would send.
fn serialise<P: Size + ToBytes + Debug>(
    message: &Nlmsghdr<u16, P>,
    buf: &mut Cursor<Vec<u8>>,
) -> Result<(), SerError> {
    buf.get_mut().clear();
    buf.set_position(0);
    message.to_bytes(buf)
}

/// The next message of a received datagram, or `None` at its end: neli's
/// own parser, `Nlmsghdr::from_bytes`, called as `NlSocketHandle::recv`'s
/// `NlBufferIter` calls it (neli 0.7.5, `src/iter.rs`), through
/// [`neli_parse`]. A parse error ends the datagram: the caller returns it.
/// `datagram` must span exactly the received bytes.
fn next_message<P>(datagram: &mut Cursor<&[u8]>) -> Result<Option<Nlmsghdr<u16, P>>, Error>
where
    P: Size + FromBytesWithInput<Input = usize> + Debug,
{
    if datagram.position() >= datagram.get_ref().len() as u64 {
        return Ok(None);
    }
    neli_parse(|| Nlmsghdr::from_bytes(datagram))?
        .map(Some)
        .map_err(|e| neli_error(SocketError::from(e))) // the text NlSocketHandle's errors have
}

/// [`Mode::Router`]: `NlRouter::send` builds, numbers and sends the message
/// and returns a handle that yields the messages with its seq: the reply,
/// then the ack with `NlmF::ACK`, and then `None`. An `NLMSG_ERROR` comes
/// out as `Err(RouterError::Nlmsgerr)`. Each `next()` blocks until the
/// router thread hands it a message.
fn router_request<P, R>(
    router: &NlRouter,
    seq: u32,
    nl_type: u16,
    flags: NlmF,
    payload: P,
    extract: fn(&P) -> Result<R, Error>,
) -> Result<R, RequestError<P>>
where
    P: Size + ToBytes + FromBytesWithInput<Input = usize> + Debug,
{
    let mut answers = router
        .send::<u16, P, u16, P>(nl_type, flags, NlPayload::Payload(payload))
        .map_err(RequestError::Router)?;
    let mut reply = None;
    // The router thread parsed the datagram; `next()` parses the payload
    // as `P` here.
    while let Some(answer) = neli_parse(|| answers.next())? {
        let answer = answer.map_err(RequestError::Router)?;
        if *answer.nl_seq() != seq {
            let msg = format!(
                "neli's router used seq {} for our request {seq}",
                answer.nl_seq()
            );
            return Err(Error::Unexpected(msg).into());
        }
        if let NlPayload::Payload(p) = answer.nl_payload() {
            reply = Some(extract(p)?);
        }
    }
    reply.ok_or_else(|| Error::NoReply { seq }.into())
}

/// The helper thread that makes [`Mode::Router`] time out.
///
/// `NlRouterReceiverHandle` has no timeout and cannot be woken, so each
/// request runs here while the caller waits on a channel with
/// `recv_timeout`. After a timeout the thread may stay blocked inside neli
/// until an answer comes, possibly for ever; the connection then refuses
/// new requests ([`Error::RouterStuck`]), and the thread ends with its
/// last job, or with the process.
struct Waiter {
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&NlRouter) + Send>;

impl Waiter {
    fn spawn(router: Arc<NlRouter>) -> Result<Waiter, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("neli-router-wait".into())
            .spawn(move || {
                for job in queue {
                    job(&router);
                }
            })
            .map_err(|source| Error::Os {
                call: "spawning the router wait thread",
                source,
            })?;
        Ok(Waiter { jobs })
    }

    fn run<R: Send + 'static>(
        &self,
        timeout: Duration,
        job: impl FnOnce(&NlRouter) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let (done, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |router| {
            let _ = done.send(job(router)); // fails only if the caller gave up
        });
        let ended = || neli_error("the router wait thread ended (a panic inside neli?)");
        self.jobs.send(job).map_err(|_| ended())?;
        match result.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout { timeout }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ended()),
        }
    }
}

// ---------------------------------------------------------------------------
// The raw units: kmod-raw and kmod-kthread
// ---------------------------------------------------------------------------

/// A client of a raw netlink unit ([`proto::RAW_UNIT`], [`proto::KTHREAD_UNIT`]).
pub struct RawClient {
    conn: Conn,
}

impl RawClient {
    /// Open and bind a netlink socket on `unit`, with extended acks on and
    /// `timeout` for each reply (zero: wait forever).
    pub fn connect(unit: i32, mode: Mode, timeout: Duration) -> Result<RawClient, Error> {
        Ok(RawClient {
            conn: Conn::connect(unit, mode, timeout)?,
        })
    }

    /// The netlink unit (protocol) this client talks to.
    pub fn unit(&self) -> i32 {
        self.conn.unit
    }

    /// The portid the kernel assigned to the socket.
    pub fn portid(&self) -> u32 {
        self.conn.portid
    }

    pub fn mode(&self) -> Mode {
        self.conn.mode()
    }

    /// The sequence number of the last request (0 before the first).
    pub fn last_seq(&self) -> u32 {
        self.conn.last_seq
    }

    /// Set the wait for each reply. Zero means wait forever; in router mode
    /// it also means no helper thread: neli's own blocking call.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.conn.set_timeout(timeout)
    }

    // ANCHOR: echo
    /// Echo `payload` through the module and return the reply's payload,
    /// without the padding neli added to the request (crate quirk 1).
    pub fn echo(&mut self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let reply = self.request(proto::ECHO_MSG_TYPE, false, payload)?;
        Ok(strip_neli_padding(payload.len(), reply))
    }

    /// Like [`RawClient::echo`], but sets `NLM_F_ACK` and also waits for the
    /// ack (`NLMSG_ERROR` with error 0) that follows the reply.
    pub fn echo_with_ack(&mut self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let reply = self.request(proto::ECHO_MSG_TYPE, true, payload)?;
        Ok(strip_neli_padding(payload.len(), reply))
    }

    /// Send one message of type `ty` with `payload` and return the payload
    /// of the reply exactly as the kernel sent it.
    pub fn request(&mut self, ty: u16, ack: bool, payload: &[u8]) -> Result<Vec<u8>, Error> {
        if payload.len() > MAX_REQUEST_PAYLOAD {
            return Err(Error::PayloadTooLarge { len: payload.len() });
        }
        let flags = if ack { NlmF::ACK } else { NlmF::empty() };
        let bytes = |reply: &Buffer| Ok(reply.as_ref().to_vec());
        self.conn.request(ty, flags, Buffer::from(payload), bytes)
    }
    // ANCHOR_END: echo
}

/// neli sends `nlmsg_len` = `NLMSG_ALIGN(16 + len)` (crate quirk 1), so a
/// module that echoes `nlmsg_len - 16` bytes returns our payload followed
/// by up to 3 NULs. Remove exactly those: only if the reply has the padded
/// length and the extra bytes are zero, otherwise return it unchanged.
pub fn strip_neli_padding(sent: usize, mut reply: Vec<u8>) -> Vec<u8> {
    let padded = sent.next_multiple_of(4);
    if reply.len() == padded && reply[sent..].iter().all(|&b| b == 0) {
        reply.truncate(sent);
    }
    reply
}

// ---------------------------------------------------------------------------
// Generic netlink: kmod-genl
// ---------------------------------------------------------------------------

/// A client of a generic netlink family, by default `my_genl` of `kmod-genl`.
pub struct GenlClient {
    conn: Conn,
    family: String,
    family_id: u16,
}

impl GenlClient {
    // ANCHOR: resolve
    /// Open a `NETLINK_GENERIC` socket and resolve `family` to its id with
    /// the controller (`CTRL_CMD_GETFAMILY`), within `timeout` (zero: wait
    /// forever), which then applies to each reply.
    pub fn connect(family: &str, mode: Mode, timeout: Duration) -> Result<GenlClient, Error> {
        let mut conn = Conn::connect(libc::NETLINK_GENERIC, mode, timeout)?;
        let resolved = match mode {
            // neli's own call, through the router.
            Mode::Router => {
                let name = family.to_string();
                conn.on_router(move |router, _seq| {
                    neli_parse(|| router.resolve_genl_family(&name))?
                        .map_err(|e| router_error(e, libc::NETLINK_GENERIC, timeout))
                })
            }
            // The same request, built by hand: NlSocket has no resolver.
            Mode::Socket => {
                let request = getfamily_request(family)?;
                conn.request(GenlId::Ctrl.into(), NlmF::empty(), request, family_id_of)
            }
        };
        let family_id = match resolved {
            Ok(id) => id,
            // The controller's answer to an unknown name.
            Err(Error::Kernel {
                errno: libc::ENOENT,
                ..
            }) => {
                return Err(Error::FamilyNotFound {
                    family: family.into(),
                })
            }
            Err(e) => return Err(e),
        };
        Ok(GenlClient {
            conn,
            family: family.to_string(),
            family_id,
        })
    }
    // ANCHOR_END: resolve

    /// The family name given to [`GenlClient::connect`].
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The family id the controller assigned (the `nlmsg_type` of its messages).
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    /// `NETLINK_GENERIC`.
    pub fn unit(&self) -> i32 {
        self.conn.unit
    }

    /// The portid the kernel assigned to the socket.
    pub fn portid(&self) -> u32 {
        self.conn.portid
    }

    pub fn mode(&self) -> Mode {
        self.conn.mode()
    }

    /// The sequence number of the last request (the family lookup is one).
    pub fn last_seq(&self) -> u32 {
        self.conn.last_seq
    }

    /// Set the wait for each reply. Zero means wait forever; in router mode
    /// it also means no helper thread: neli's own blocking call.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.conn.set_timeout(timeout)
    }

    /// `EXMPL_C_ECHO` with `msg` as `EXMPL_A_MSG`; returns the reply's `MSG`.
    pub fn echo(&mut self, msg: &str) -> Result<String, Error> {
        self.command(proto::GENL_CMD_ECHO, Some(msg), false)
    }

    /// Like [`GenlClient::echo`], with `NLM_F_ACK`: also waits for the ack.
    pub fn echo_with_ack(&mut self, msg: &str) -> Result<String, Error> {
        self.command(proto::GENL_CMD_ECHO, Some(msg), true)
    }

    /// Send command `cmd` with an optional `MSG` attribute; returns the
    /// `MSG` of the reply. Other commands and a missing `MSG` are for
    /// testing the module's errors.
    pub fn command(&mut self, cmd: u8, msg: Option<&str>, ack: bool) -> Result<String, Error> {
        let request = my_genl_request(MyGenlCmd::from(cmd), msg)?;
        let flags = if ack { NlmF::ACK } else { NlmF::empty() };
        let reply = self.conn.request(self.family_id, flags, request, msg_of)?;
        String::from_utf8(reply).map_err(|_| Error::Unexpected("MSG is not UTF-8".into()))
    }
}

/// `CTRL_CMD_GETFAMILY` with `CTRL_ATTR_FAMILY_NAME`, as neli's resolver builds it.
fn getfamily_request(family: &str) -> Result<CtrlMsg, Error> {
    let name = NlattrBuilder::default()
        .nla_type(
            AttrTypeBuilder::default()
                .nla_type(CtrlAttr::FamilyName)
                .build()
                .map_err(neli_error)?,
        )
        .nla_payload(family) // a &str is written with its NUL
        .build()
        .map_err(neli_error)?;
    GenlmsghdrBuilder::default()
        .cmd(CtrlCmd::Getfamily)
        .version(CTRL_VERSION)
        .attrs(std::iter::once(name).collect::<GenlBuffer<_, _>>())
        .build()
        .map_err(neli_error)
}

/// `CTRL_ATTR_FAMILY_ID` of the controller's reply.
fn family_id_of(reply: &CtrlMsg) -> Result<u16, Error> {
    reply
        .attrs()
        .get_attr_handle()
        .get_attr_payload_as::<u16>(CtrlAttr::FamilyId)
        .map_err(neli_error)
}

// ANCHOR: request
/// A `my_genl` request: `cmd`, version 1, and `MSG` if given, an
/// `NLA_NUL_STRING`: the text and its terminating NUL.
fn my_genl_request(cmd: MyGenlCmd, msg: Option<&str>) -> Result<MyGenlMsg, Error> {
    let mut attrs = GenlBuffer::new();
    if let Some(msg) = msg {
        if msg.contains('\0') {
            return Err(Error::NulInMessage);
        }
        if msg.len() > MAX_REQUEST_PAYLOAD {
            return Err(Error::PayloadTooLarge { len: msg.len() });
        }
        let attr = NlattrBuilder::default()
            .nla_type(
                AttrTypeBuilder::default()
                    .nla_type(MyGenlAttr::Msg)
                    .build()
                    .map_err(neli_error)?,
            )
            .nla_payload(msg) // a &str is written with its NUL
            .build()
            .map_err(neli_error)?;
        attrs.push(attr);
    }
    GenlmsghdrBuilder::default()
        .cmd(cmd)
        .version(proto::GENL_FAMILY_VERSION)
        .attrs(attrs)
        .build()
        .map_err(neli_error)
}
// ANCHOR_END: request

/// The `MSG` of an `ECHO` reply, up to its NUL.
fn msg_of(reply: &MyGenlMsg) -> Result<Vec<u8>, Error> {
    if *reply.cmd() != MyGenlCmd::Echo {
        return Err(Error::Unexpected(format!(
            "reply with command {:?}",
            reply.cmd()
        )));
    }
    let attrs = reply.attrs().get_attr_handle();
    let msg = attrs
        .get_attribute(MyGenlAttr::Msg)
        .ok_or_else(|| Error::Unexpected("reply without a MSG attribute".into()))?;
    Ok(until_nul(msg.nla_payload().as_ref()).to_vec())
}

mod log;
use log::MulticastHandle;
pub use log::{Entry, Event, LogDump, Subscriber};

#[cfg(test)]
mod parser_fuzz;
#[cfg(test)]
mod tests;
