//! # user-libnl-style: the shape of libnl, in Rust, on `netlink-sys`
//!
//! The middle of the netlink-rosetta clients. `user-raw` spells out every
//! syscall and every byte; this crate does the same exchanges with the API
//! shape of libnl (libnl-3 and libnl-genl-3), the C library the original
//! articles' clients use, so that a reader who knows libnl finds every call.
//! The socket comes from the `netlink-sys` crate; message building, attribute
//! parsing and the receive loop are here, without libnl's caches and objects.
//!
//! | libnl | here |
//! |---|---|
//! | `nl_socket_alloc()` + `nl_connect(sk, unit)` | [`NlSock::connect`] |
//! | `nl_socket_alloc()` + `genl_connect(sk)` | [`NlSock::genl_connect`] |
//! | `nl_socket_disable_auto_ack(sk)` | [`NlSock::disable_auto_ack`] |
//! | `nl_socket_use_seq(sk)`, `nl_socket_get_local_port(sk)` | [`NlSock::use_seq`], [`NlSock::portid`] |
//! | `nl_socket_set_msg_buf_size(sk, size)` | [`NlSock::set_msg_buf_size`] |
//! | `nl_send_simple(sk, type, flags, buf, size)` | [`NlSock::send_simple`] |
//! | `nlmsg_alloc_simple(type, flags)`, `nlmsg_append()`, `nl_send_auto()` | [`NlMsg::alloc_simple`], [`NlMsg::append`], [`NlSock::send_auto`] |
//! | `nlmsg_alloc()` + `genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, flags, cmd, version)` | [`NlMsg::genlmsg_put`] |
//! | `nla_put_string()`, `nla_put_u32()`, ... | [`NlMsg::nla_put_string`], [`NlMsg::nla_put_u32`], ... |
//! | `nl_cb_alloc(NL_CB_DEFAULT)`, `nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, f, arg)`, `nl_cb_err()` | [`NlCb::new`], [`NlCb::set`], [`NlCb::err`] |
//! | `nl_socket_modify_cb(sk, NL_CB_VALID, ...)` + `nl_recvmsgs_default(sk)` | `cb.set(NlCbType::Valid, ...)` + [`NlSock::recvmsgs`]`(&mut cb)` |
//! | `nl_socket_modify_cb(sk, NL_CB_MSG_IN, ...)`, as the articles' clients do: called for every message received, acks and errors included, before the per-type callbacks | none: `NlCbType::Valid` gets the replies, `NlCbType::Ack` and [`NlCb::err`] the acks and errors |
//! | `NL_OK`, `NL_SKIP`, `NL_STOP` | [`NlCbAction`] |
//! | `nla_parse(tb, maxtype, head, len, policy)`, `struct nla_policy` | [`nla_parse`], [`NlaPolicy`] |
//! | `genlmsg_hdr()`, `genlmsg_parse(nlh, 0, tb, maxtype, policy)` | [`NlMsgRef::genlmsg_hdr`], [`NlMsgRef::genlmsg_parse`] |
//! | `genl_ctrl_resolve(sk, name)` | [`NlSock::genl_ctrl_resolve`] |
//! | `genl_ctrl_resolve_grp(sk, family, group)` | [`NlSock::genl_ctrl_resolve_grp`] |
//! | `nl_socket_add_membership(sk, group)`, `nl_socket_drop_membership()` | [`NlSock::add_membership`], [`NlSock::drop_membership`] |
//! | `nl_socket_disable_seq_check(sk)` (for notifications, whose seq is not ours) | [`NlSock::disable_seq_check`] |
//! | `nl_cb_set(cb, NL_CB_FINISH, ...)`: the end of a dump (`NLMSG_DONE`) | `cb.set(NlCbType::Finish, ...)` |
//! | `nl_cb_set(cb, NL_CB_DUMP_INTR, ...)`; without it `nl_recvmsgs()` fails with `-NLE_DUMP_INTR` after the dump | `cb.set(NlCbType::DumpIntr, ...)`; without it [`Error::DumpInterrupted`] |
//!
//! The callbacks live beside the socket, in an [`NlCb`] passed to
//! [`NlSock::recvmsgs`], not inside it as `nl_socket_modify_cb()` puts them:
//! a closure can then borrow the caller's variables, which is what libnl's
//! `void *arg` is for, and the socket needs no lifetime.
//!
//! ## Auto-ack: on by default, as in libnl
//!
//! `nl_send_auto()` adds `NLM_F_ACK` to every request unless
//! `nl_socket_disable_auto_ack()` was called; so does [`NlSock::send_auto`]
//! unless [`NlSock::disable_auto_ack`] was. Every request then costs one more
//! message from the kernel (an `NLMSG_ERROR` with error 0 after the reply) and
//! one more `recvmsg`: the benchmarks show the price. The CLI disables it
//! unless `--ack` is given, so that its default exchange is the same as
//! `user-raw`'s.
//!
//! ## Sequence numbers
//!
//! Each request gets the next number from [`NlSock::use_seq`]: 1, 2, 3, ...
//! (libnl starts from the time of day; we start at 1 because every socket
//! gets a fresh portid anyway, and the output is reproducible), skipping 0
//! after wrapping, as notifications use 0. [`NlSock::recvmsgs`] handles only
//! the messages that carry the sequence number of the last request sent and
//! skips the others: they are late answers to earlier requests, e.g. the ack
//! of a request whose loop ended at `NL_STOP`. libnl instead fails with
//! `NLE_SEQ_MISMATCH` (when auto-ack is on).
//!
//! ## One `recvmsg` per datagram: no `MSG_PEEK`
//!
//! libnl's `nl_recv()` first peeks at each datagram (`MSG_PEEK|MSG_TRUNC`) to
//! learn its length, grows its buffer, then reads it: two `recvmsg` per
//! datagram (unless `nl_socket_set_msg_buf_size()` was called). We size the
//! buffer once, at connect, to the largest datagram our peers send
//! ([`RECV_BUF_LEN`], at least the page size, as `man 7 netlink` advises for
//! max(page size, 8192)), and read with `MSG_TRUNC` in the flags, so that
//! `recvfrom` returns the datagram's full length: a datagram longer than the
//! buffer is reported as [`Error::Truncated`], never silently cut.
//!
//! ## When [`NlSock::recvmsgs`] returns
//!
//! It reads datagrams and hands each message of our request to a callback:
//! `NLMSG_ERROR` with error 0 to *ack*, `NLMSG_DONE` to *finish*,
//! `NLMSG_ERROR` with an errno to *err*, any other non-control type to
//! *valid*. It returns
//!
//! - `Ok` as soon as a callback returns [`NlCbAction::Stop`] (the default of
//!   *ack* and *finish*, so an ack or the end of a dump ends the loop);
//! - `Ok` at the end of a datagram that carried a message of our request, if
//!   nothing more is expected: no dump in progress (`NLM_F_MULTI` until
//!   `NLMSG_DONE`) and no ack pending (requested with `NLM_F_ACK` and not yet
//!   received). Without auto-ack that is libnl's rule, "after one datagram
//!   unless multipart"; with auto-ack we also read the ack, which libnl
//!   leaves queued when the reply came in its own datagram;
//! - [`Error::Kernel`] on an `NLMSG_ERROR` with an errno, unless the *err*
//!   callback returns `Ok` or `Skip` (ignore it); any error a callback returns.
//!
//! ## Errors
//!
//! The socket asks for extended acks (`NETLINK_EXT_ACK`) and capped errors
//! (`NETLINK_CAP_ACK`: the kernel does not copy our request into its error,
//! so a 16 KiB request still gets a small error). [`Error::Kernel`] carries
//! the errno, the extack message (`NLMSGERR_ATTR_MSG`) and the missing
//! attribute (`NLMSGERR_ATTR_MISS_TYPE`). libnl's error callback gets the bare
//! `struct nlmsgerr` and leaves the TLVs to the caller.
//!
//! ## Running it
//!
//! ```text
//! cargo xtask vm --modules raw -- target/debug/user-libnl-style "hello"
//! ```
//!
//! prints (the portid is whatever the kernel assigned):
//!
//! ```text
//! module raw: netlink unit 31, portid 1234
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//! ```
//!
//! [`echo_raw`] and [`echo_genl`] are the article's two libnl clients (its
//! libnl client of unit 31 and its libnl-genl client of `my_genl`), written
//! with this API: the libnl-genl counterpart is `echo_genl` here, not the
//! `user-genl` crate, which is a client on neli. The wire format and message building are in `msg.rs`, the
//! attributes and `nla_parse` in `attr.rs`; this file has the errors, the
//! callbacks, the socket and the clients. Every parser of received bytes is
//! fuzzed on the host with proptest (`src/parser_fuzz.rs`, `cargo test -p
//! user-libnl-style parser_fuzz`).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{protocols, Socket, SocketAddr};

mod attr;
mod msg;

pub use attr::{nla_parse, Attr, Attrs, NlaPolicy};
pub use msg::*;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Everything that can go wrong; each message names the fix where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink unit {unit} not available: is {} loaded?", proto::module_for_unit(*unit))]
    UnitUnavailable { unit: i32 },
    #[error(
        "generic netlink family {name:?} not found (ENOENT): is {} loaded?",
        proto::module_for_family(name)
    )]
    FamilyNotFound { name: String },
    #[error("{call} failed: {source}")]
    Os {
        call: &'static str,
        source: io::Error,
    },
    #[error("no reply from the kernel within {} ms: is the module answering? (raise the timeout if it is just slow)", timeout.as_millis())]
    Timeout { timeout: Duration },
    #[error("receive buffer overrun (ENOBUFS): the kernel dropped messages for this socket")]
    Overrun,
    #[error(
        "reply truncated: a {len}-byte datagram does not fit the {buf_len}-byte receive buffer"
    )]
    Truncated { len: usize, buf_len: usize },
    #[error("{what} of {len} bytes is too large for its length field")]
    TooLarge { what: &'static str, len: usize },
    #[error("malformed netlink message: {reason}")]
    Decode { reason: &'static str },
    #[error("attribute {ty}: {reason}")]
    Attr { ty: u16, reason: &'static str },
    #[error("generic netlink calls need a NETLINK_GENERIC socket (NlSock::genl_connect)")]
    NotGeneric,
    #[error("the kernel acknowledged the request without replying to it")]
    NoReply,
    /// libnl's `-NLE_DUMP_INTR`: a message of the dump carried
    /// `NLM_F_DUMP_INTR` and no `NlCbType::DumpIntr` callback took it. The
    /// dump was read to its end; run it again.
    #[error(
        "the dump was interrupted (NLM_F_DUMP_INTR): the data changed while it ran; run it again"
    )]
    DumpInterrupted,
    #[error("generic netlink family {family:?} has no multicast group {group:?}")]
    GroupNotFound { family: String, group: String },
    /// An `NLMSG_ERROR` with an errno; `errno` is positive (22, not -22).
    #[error("kernel replied {} (errno {errno}): {}{}", errno_name(*errno), kernel_detail(*errno, extack), missing(missing_attr))]
    Kernel {
        errno: i32,
        extack: Option<String>,
        missing_attr: Option<u32>,
    },
}

impl Error {
    fn decode(reason: &'static str) -> Error {
        Error::Decode { reason }
    }

    fn os(call: &'static str, source: io::Error) -> Error {
        Error::Os { call, source }
    }

    /// The errno behind the error, if the kernel or a syscall gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::FamilyNotFound { .. } => Some(libc::ENOENT),
            Error::UnitUnavailable { .. } => Some(libc::EPROTONOSUPPORT),
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
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

fn missing(attr: &Option<u32>) -> String {
    attr.map(|ty| format!(" (missing attribute {ty})"))
        .unwrap_or_default()
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

// ---------------------------------------------------------------------------
// Callbacks: struct nl_cb
// ---------------------------------------------------------------------------

/// What a callback tells the receive loop (libnl's `enum nl_cb_action`).
/// A callback can also return an `Err`, which ends the loop with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlCbAction {
    /// `NL_OK`: go on with the next message.
    Ok,
    /// `NL_SKIP`: skip the rest of this message's processing; for an error
    /// message, ignore the error. (For the other callbacks, the same as `Ok`:
    /// each is the last step of its message.)
    Skip,
    /// `NL_STOP`: end the loop now; for an error message, return the error.
    Stop,
}

/// Which message callback [`NlCb::set`] installs (libnl's `enum nl_cb_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlCbType {
    /// `NL_CB_VALID`: every non-control message. Default: `Ok`.
    Valid,
    /// `NL_CB_ACK`: an `NLMSG_ERROR` with error 0. Default: `Stop`.
    Ack,
    /// `NL_CB_FINISH`: `NLMSG_DONE`, the end of a dump. Default: `Stop`.
    Finish,
    /// `NL_CB_DUMP_INTR`: a message with `NLM_F_DUMP_INTR`, before its own
    /// callback. Default: remember it, read the dump to its end, then fail
    /// with [`Error::DumpInterrupted`], as libnl does.
    DumpIntr,
}

type MsgFn<'a> = Box<dyn FnMut(&NlMsgRef<'_>) -> Result<NlCbAction, Error> + 'a>;
type ErrFn<'a> = Box<dyn FnMut(&NlMsgErr) -> Result<NlCbAction, Error> + 'a>;

/// A set of callbacks (libnl's `struct nl_cb`), for [`NlSock::recvmsgs`].
/// Closures may borrow the caller's variables for as long as the `NlCb` lives.
#[derive(Default)]
pub struct NlCb<'a> {
    valid: Option<MsgFn<'a>>,
    ack: Option<MsgFn<'a>>,
    finish: Option<MsgFn<'a>>,
    dump_intr: Option<MsgFn<'a>>,
    err: Option<ErrFn<'a>>,
}

impl<'a> NlCb<'a> {
    /// `nl_cb_alloc(NL_CB_DEFAULT)`: every callback at its default.
    pub fn new() -> NlCb<'a> {
        NlCb::default()
    }

    /// `nl_cb_set(cb, ty, NL_CB_CUSTOM, f, arg)`.
    pub fn set(
        &mut self,
        ty: NlCbType,
        f: impl FnMut(&NlMsgRef<'_>) -> Result<NlCbAction, Error> + 'a,
    ) -> &mut Self {
        let slot = match ty {
            NlCbType::Valid => &mut self.valid,
            NlCbType::Ack => &mut self.ack,
            NlCbType::Finish => &mut self.finish,
            NlCbType::DumpIntr => &mut self.dump_intr,
        };
        *slot = Some(Box::new(f));
        self
    }

    /// `nl_cb_err(cb, NL_CB_CUSTOM, f, arg)`: called for an `NLMSG_ERROR`
    /// with an errno. Default: `Stop`, i.e. [`NlSock::recvmsgs`] returns it.
    pub fn err(&mut self, f: impl FnMut(&NlMsgErr) -> Result<NlCbAction, Error> + 'a) -> &mut Self {
        self.err = Some(Box::new(f));
        self
    }
}

fn call(
    f: &mut Option<MsgFn<'_>>,
    msg: &NlMsgRef<'_>,
    default: NlCbAction,
) -> Result<NlCbAction, Error> {
    match f {
        Some(f) => f(msg),
        None => Ok(default),
    }
}

// ---------------------------------------------------------------------------
// The socket: struct nl_sock
// ---------------------------------------------------------------------------

/// A connected netlink socket (libnl's `struct nl_sock`). Closed on drop.
pub struct NlSock {
    sock: Socket,
    protocol: i32,
    portid: u32,
    /// The next sequence number to use.
    seq_next: u32,
    /// The sequence number of the last request: recvmsgs handles its answers.
    seq_expect: u32,
    /// `nl_socket_disable_seq_check()`: recvmsgs handles every message.
    seq_check: bool,
    auto_ack: bool,
    /// The last request asked for an ack that has not arrived yet.
    ack_pending: bool,
    timeout: Duration,
    buf: Vec<u8>,
}

/// Accept ENOPROTOOPT: a kernel older than the option works without it.
fn optional(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(()),
        other => other,
    }
}

impl NlSock {
    // ANCHOR: connect
    /// `nl_socket_alloc()` + `nl_connect(sk, protocol)`: open a socket on a
    /// netlink unit (e.g. [`proto::RAW_UNIT`]), let the kernel pick our port
    /// id, and configure it (extended and capped acks, timeout).
    pub fn connect(protocol: i32) -> Result<NlSock, Error> {
        let mut sock = Socket::new(protocol as isize).map_err(|e| {
            match e.raw_os_error() {
                // Nothing in the kernel created this unit (netlink_kernel_create).
                Some(libc::EPROTONOSUPPORT) => Error::UnitUnavailable { unit: protocol },
                _ => Error::os("socket(AF_NETLINK)", e),
            }
        })?;
        let addr = sock.bind_auto().map_err(|e| Error::os("bind", e))?;
        optional(sock.set_ext_ack(true))
            .map_err(|e| Error::os("setsockopt(NETLINK_EXT_ACK)", e))?;
        optional(sock.set_cap_ack(true))
            .map_err(|e| Error::os("setsockopt(NETLINK_CAP_ACK)", e))?;
        // SAFETY: sysconf() has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let mut sk = NlSock {
            sock,
            protocol,
            portid: addr.port_number(),
            seq_next: 1,
            seq_expect: 0,
            seq_check: true,
            auto_ack: true,
            ack_pending: false,
            timeout: DEFAULT_TIMEOUT,
            buf: vec![0; usize::try_from(page).unwrap_or(0).max(RECV_BUF_LEN)],
        };
        sk.set_timeout(DEFAULT_TIMEOUT)?;
        Ok(sk)
    }
    // ANCHOR_END: connect

    /// `genl_connect(sk)`: a socket on `NETLINK_GENERIC`.
    pub fn genl_connect() -> Result<NlSock, Error> {
        NlSock::connect(protocols::NETLINK_GENERIC as i32)
    }

    /// Set the receive timeout (`SO_RCVTIMEO`); zero waits forever.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        // netlink-sys has no call for SO_RCVTIMEO: setsockopt() on its fd.
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: timeout.subsec_micros() as libc::suseconds_t, // < 1_000_000
        };
        // SAFETY: `tv` is a valid timeval and we pass its size.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(Error::os(
                "setsockopt(SO_RCVTIMEO)",
                io::Error::last_os_error(),
            ));
        }
        self.timeout = timeout;
        Ok(())
    }

    /// `nl_socket_disable_seq_check()`: hand every message to the
    /// callbacks, whatever its sequence number. For a socket that receives
    /// notifications, which carry the sequence number of whoever caused
    /// them (0, or another socket's request), not ours.
    pub fn disable_seq_check(&mut self) {
        self.seq_check = false;
    }

    // ANCHOR: membership
    /// `nl_socket_add_membership(sk, group)`: join a multicast group
    /// (`setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP)`); for generic
    /// netlink, the id from [`NlSock::genl_ctrl_resolve_grp`].
    pub fn add_membership(&mut self, group: u32) -> Result<(), Error> {
        self.sock
            .add_membership(group)
            .map_err(|e| Error::os("setsockopt(NETLINK_ADD_MEMBERSHIP)", e))
    }
    // ANCHOR_END: membership

    /// `nl_socket_drop_membership(sk, group)`: leave a multicast group.
    pub fn drop_membership(&mut self, group: u32) -> Result<(), Error> {
        self.sock
            .drop_membership(group)
            .map_err(|e| Error::os("setsockopt(NETLINK_DROP_MEMBERSHIP)", e))
    }

    /// `nl_socket_disable_auto_ack()`: stop adding `NLM_F_ACK` to requests.
    pub fn disable_auto_ack(&mut self) {
        self.auto_ack = false;
    }

    /// `nl_socket_enable_auto_ack()`: add `NLM_F_ACK` to requests (the default).
    pub fn enable_auto_ack(&mut self) {
        self.auto_ack = true;
    }

    /// `nl_socket_set_msg_buf_size()`: the receive buffer's size in bytes.
    pub fn set_msg_buf_size(&mut self, size: usize) {
        self.buf = vec![0; size];
    }

    /// `nl_socket_get_local_port()`: the port id the kernel gave us.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// The sequence number of the last request sent (0 before the first).
    pub fn last_seq(&self) -> u32 {
        self.seq_expect
    }

    /// `nl_socket_use_seq()`: take the next sequence number (never 0).
    pub fn use_seq(&mut self) -> u32 {
        let seq = self.seq_next;
        self.seq_next = seq.checked_add(1).unwrap_or(1);
        seq
    }

    /// `nl_send_auto()`: complete `msg` (our port id, the next sequence
    /// number, `NLM_F_REQUEST`, and `NLM_F_ACK` with auto-ack) and send it to
    /// the kernel. Returns the sequence number.
    pub fn send_auto(&mut self, msg: &mut NlMsg) -> Result<u32, Error> {
        let seq = self.use_seq();
        let ack = if self.auto_ack { NLM_F_ACK } else { 0 };
        // libnl puts our port id in nlmsg_pid; the kernel ignores it.
        let datagram = msg.complete(self.portid, seq, NLM_F_REQUEST | ack)?;
        let kernel = SocketAddr::new(0, 0);
        loop {
            match self.sock.send_to(datagram, &kernel, 0) {
                Ok(_) => break, // a datagram is sent whole or not at all
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::os("sendto", e)),
            }
        }
        self.seq_expect = seq;
        self.ack_pending = msg.nlmsg_hdr().nlmsg_flags & NLM_F_ACK != 0;
        Ok(seq)
    }

    /// `nl_send_simple()`: send a message of `ty` with `flags` and `payload`.
    pub fn send_simple(&mut self, ty: u16, flags: u16, payload: &[u8]) -> Result<u32, Error> {
        self.send_auto(NlMsg::alloc_simple(ty, flags).append(payload))
    }

    /// `nl_recv()`: one datagram from the kernel into `self.buf`.
    fn recv_datagram(&mut self) -> Result<usize, Error> {
        loop {
            // With MSG_TRUNC in the flags, netlink returns the datagram's real
            // length even when it did not fit (netlink-sys passes it through).
            let mut space: &mut [u8] = &mut self.buf;
            match self.sock.recv_from(&mut space, libc::MSG_TRUNC) {
                Ok((len, _)) if len > self.buf.len() => {
                    let buf_len = self.buf.len();
                    return Err(Error::Truncated { len, buf_len });
                }
                Ok((len, from)) if from.port_number() == 0 => return Ok(len),
                Ok(_) => continue, // not from the kernel: another process
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // EAGAIN (== EWOULDBLOCK): SO_RCVTIMEO expired.
                    Some(libc::EAGAIN) => {
                        return Err(Error::Timeout {
                            timeout: self.timeout,
                        })
                    }
                    Some(libc::ENOBUFS) => return Err(Error::Overrun),
                    _ => return Err(Error::os("recvfrom", e)),
                },
            }
        }
    }

    /// `nl_recvmsgs(sk, cb)`: receive the answer to the last request and hand
    /// its messages to `cb`. When it returns is in the crate docs.
    pub fn recvmsgs(&mut self, cb: &mut NlCb<'_>) -> Result<(), Error> {
        let mut state = RecvState {
            seq_expect: self.seq_check.then_some(self.seq_expect),
            ack_pending: self.ack_pending,
            multipart: false,
            interrupted: false,
        };
        let result = loop {
            let len = match self.recv_datagram() {
                Ok(len) => len,
                Err(e) => break Err(e),
            };
            match handle_datagram(&self.buf[..len], &mut state, cb) {
                Ok(false) => continue,
                Ok(true) if state.interrupted => break Err(Error::DumpInterrupted),
                Ok(true) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.ack_pending = state.ack_pending;
        result
    }

    /// `nl_recvmsgs_default()` with no callback modified, which is also what
    /// `nl_wait_for_ack()` does: wait for the ack (or the error).
    pub fn recvmsgs_default(&mut self) -> Result<(), Error> {
        self.recvmsgs(&mut NlCb::new())
    }

    // ANCHOR: resolve
    /// `genl_ctrl_resolve(sk, name)`: ask `nlctrl` (`CTRL_CMD_GETFAMILY` with
    /// `CTRL_ATTR_FAMILY_NAME`) for a family's id (`CTRL_ATTR_FAMILY_ID`).
    pub fn genl_ctrl_resolve(&mut self, name: &str) -> Result<u16, Error> {
        if self.protocol != protocols::NETLINK_GENERIC as i32 {
            return Err(Error::NotGeneric);
        }
        let mut msg = NlMsg::genlmsg_put(GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, 1);
        msg.nla_put_string(CTRL_ATTR_FAMILY_NAME, name)?;
        self.send_auto(&mut msg)?;
        const POLICY: &[(u16, NlaPolicy)] = &[
            (CTRL_ATTR_FAMILY_ID, NlaPolicy::U16),
            (
                CTRL_ATTR_FAMILY_NAME,
                NlaPolicy::NulString {
                    max_len: GENL_NAMSIZ - 1,
                },
            ),
        ];
        let mut id = None;
        let mut cb = NlCb::new();
        cb.set(NlCbType::Valid, |reply| {
            let tb = reply.genlmsg_parse(CTRL_ATTR_FAMILY_NAME, POLICY)?;
            id = Some(tb.require(CTRL_ATTR_FAMILY_ID)?.nla_get_u16()?);
            Ok(NlCbAction::Ok)
        });
        match self.recvmsgs(&mut cb) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                let name = name.to_owned();
                return Err(Error::FamilyNotFound { name });
            }
            result => result?,
        }
        drop(cb); // ends the closure's borrow of `id`
        id.ok_or(Error::NoReply)
    }
    // ANCHOR_END: resolve

    // ANCHOR: resolve_grp
    /// `genl_ctrl_resolve_grp(sk, family, group)`: the id of a family's
    /// multicast group, from the controller's `CTRL_ATTR_MCAST_GROUPS`
    /// (one nest per group, each with `CTRL_ATTR_MCAST_GRP_NAME` and
    /// `CTRL_ATTR_MCAST_GRP_ID`), for [`NlSock::add_membership`].
    pub fn genl_ctrl_resolve_grp(&mut self, family: &str, group: &str) -> Result<u32, Error> {
        if self.protocol != protocols::NETLINK_GENERIC as i32 {
            return Err(Error::NotGeneric);
        }
        let mut msg = NlMsg::genlmsg_put(GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, 1);
        msg.nla_put_string(CTRL_ATTR_FAMILY_NAME, family)?;
        self.send_auto(&mut msg)?;
        const POLICY: &[(u16, NlaPolicy)] = &[(CTRL_ATTR_MCAST_GROUPS, NlaPolicy::Nested)];
        const GRP_POLICY: &[(u16, NlaPolicy)] = &[
            (
                CTRL_ATTR_MCAST_GRP_NAME,
                NlaPolicy::NulString {
                    max_len: GENL_NAMSIZ - 1,
                },
            ),
            (CTRL_ATTR_MCAST_GRP_ID, NlaPolicy::U32),
        ];
        let mut id = None;
        let mut cb = NlCb::new();
        cb.set(NlCbType::Valid, |reply| {
            let tb = reply.genlmsg_parse(CTRL_ATTR_MCAST_GROUPS, POLICY)?;
            let Some(groups) = tb.get(CTRL_ATTR_MCAST_GROUPS) else {
                return Ok(NlCbAction::Ok); // a family without groups
            };
            for nest in groups.nested_attrs() {
                let grp = nest?.nla_parse_nested(CTRL_ATTR_MCAST_GRP_ID, GRP_POLICY)?;
                let name = grp.require(CTRL_ATTR_MCAST_GRP_NAME)?.nla_get_string()?;
                if name == group {
                    id = Some(grp.require(CTRL_ATTR_MCAST_GRP_ID)?.nla_get_u32()?);
                }
            }
            Ok(NlCbAction::Ok)
        });
        match self.recvmsgs(&mut cb) {
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                let name = family.to_owned();
                return Err(Error::FamilyNotFound { name });
            }
            result => result?,
        }
        drop(cb);
        id.ok_or_else(|| Error::GroupNotFound {
            family: family.into(),
            group: group.into(),
        })
    }
    // ANCHOR_END: resolve_grp
}

/// Where [`NlSock::recvmsgs`]'s loop stands between two datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecvState {
    /// The sequence number of the request; `None` after
    /// [`NlSock::disable_seq_check`]: every message is handled.
    seq_expect: Option<u32>,
    /// The request asked for an ack that has not come yet.
    ack_pending: bool,
    /// A message of a dump came (`NLM_F_MULTI`), and not yet its `NLMSG_DONE`.
    multipart: bool,
    /// A message carried `NLM_F_DUMP_INTR` and no `DumpIntr` callback took it.
    interrupted: bool,
}

/// One datagram of [`NlSock::recvmsgs`]'s loop: hand the messages of the
/// request to `cb`; returns whether the loop is done. No socket here, so
/// the parser fuzz tests can feed it any bytes.
fn handle_datagram(
    datagram: &[u8],
    state: &mut RecvState,
    cb: &mut NlCb<'_>,
) -> Result<bool, Error> {
    let mut ours = false;
    for msg in messages(datagram) {
        let msg = msg?;
        if state.seq_expect.is_some_and(|seq| msg.hdr.nlmsg_seq != seq) {
            continue; // a late answer to an earlier request
        }
        ours = true;
        state.multipart |= msg.hdr.nlmsg_flags & NLM_F_MULTI != 0;
        if msg.hdr.nlmsg_flags & NLM_F_DUMP_INTR != 0 {
            match cb.dump_intr.as_mut() {
                Some(f) => {
                    if f(&msg)? == NlCbAction::Stop {
                        return Ok(true);
                    }
                }
                // libnl: "continue reading to clear all messages until a
                // NLMSG_DONE is received and report the inconsistency".
                None => state.interrupted = true,
            }
        }
        let action = match msg.hdr.nlmsg_type {
            NLMSG_NOOP => NlCbAction::Skip,
            NLMSG_OVERRUN => return Err(Error::Overrun),
            NLMSG_DONE => {
                // The end of a dump; no ack follows it, even if asked.
                (state.multipart, state.ack_pending) = (false, false);
                // Its int is the dump's result: a negative errno is an
                // error (libnl leaves that to the FINISH callback).
                let err = NlMsgErr::parse_done(&msg)?;
                if err.error != 0 {
                    return Err(err.to_error());
                }
                call(&mut cb.finish, &msg, NlCbAction::Stop)?
            }
            NLMSG_ERROR => {
                let err = NlMsgErr::parse(&msg)?;
                state.ack_pending = false; // an error replaces the ack
                if err.error == 0 {
                    call(&mut cb.ack, &msg, NlCbAction::Stop)?
                } else {
                    let action = match cb.err.as_mut() {
                        Some(f) => f(&err)?,
                        None => NlCbAction::Stop,
                    };
                    if action == NlCbAction::Stop {
                        return Err(err.to_error());
                    }
                    action
                }
            }
            _ => call(&mut cb.valid, &msg, NlCbAction::Ok)?,
        };
        if action == NlCbAction::Stop {
            return Ok(true);
        }
    }
    Ok(ours && !state.multipart && !state.ack_pending)
}

// ---------------------------------------------------------------------------
// The articles' two clients
// ---------------------------------------------------------------------------

// ANCHOR: echo_raw
/// The raw client: `nl_send_simple()` of the payload, then `nl_recvmsgs()`
/// with a VALID callback that keeps the echo. Works on units 31 and 25.
pub fn echo_raw(sk: &mut NlSock, payload: &[u8]) -> Result<Vec<u8>, Error> {
    sk.send_simple(proto::ECHO_MSG_TYPE, 0, payload)?;
    let mut reply = None;
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |msg| {
        reply = Some(msg.nlmsg_data().to_vec());
        Ok(NlCbAction::Ok)
    });
    sk.recvmsgs(&mut cb)?;
    drop(cb);
    reply.ok_or(Error::NoReply)
}
// ANCHOR_END: echo_raw

// ANCHOR: echo_genl
/// The `MSG` attribute's policy, the same as kmod-genl's.
pub const ECHO_POLICY: &[(u16, NlaPolicy)] = &[(
    proto::GENL_ATTR_MSG,
    NlaPolicy::NulString {
        max_len: proto::MAX_MSG_LEN,
    },
)];

/// The genl client: `genlmsg_put()` ECHO with `nla_put_string(MSG)`,
/// `nl_send_auto()`, then `nl_recvmsgs()` with a VALID callback that
/// `genlmsg_parse()`s the reply's MSG. `family` is from
/// [`NlSock::genl_ctrl_resolve`].
pub fn echo_genl(sk: &mut NlSock, family: u16, text: &str) -> Result<String, Error> {
    let mut msg = NlMsg::genlmsg_put(family, 0, proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION);
    msg.nla_put_string(proto::GENL_ATTR_MSG, text)?;
    sk.send_auto(&mut msg)?;
    let mut reply = None;
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |msg| {
        if msg.genlmsg_hdr()?.cmd != proto::GENL_CMD_ECHO {
            return Err(Error::decode("genl reply with a command other than ECHO"));
        }
        let tb = msg.genlmsg_parse(proto::GENL_ATTR_MAX, ECHO_POLICY)?;
        reply = Some(
            tb.require(proto::GENL_ATTR_MSG)?
                .nla_get_string()?
                .to_owned(),
        );
        Ok(NlCbAction::Ok)
    });
    sk.recvmsgs(&mut cb)?;
    drop(cb);
    reply.ok_or(Error::NoReply)
}
// ANCHOR_END: echo_genl

// ---------------------------------------------------------------------------
// The echo log of kmod-genl: GET (do and dump), EVENT notifications
// ---------------------------------------------------------------------------

/// One entry of `kmod-genl`'s echo log, as `GET` and `EVENT` carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    /// The port id of the socket that sent the echo.
    pub portid: u32,
    pub msg: String,
}

/// The policy of a log entry's attributes, the same as kmod-genl's.
pub const ENTRY_POLICY: &[(u16, NlaPolicy)] = &[
    (proto::GENL_ATTR_ID, NlaPolicy::U32),
    (
        proto::GENL_ATTR_MSG,
        NlaPolicy::NulString {
            max_len: proto::MAX_MSG_LEN,
        },
    ),
    (proto::GENL_ATTR_PORTID, NlaPolicy::U32),
];

/// `genlmsg_parse()` a `GET` reply or dump message, or an `EVENT` (`cmd`):
/// ID, MSG and PORTID are all required.
pub fn parse_entry(msg: &NlMsgRef<'_>, cmd: u8) -> Result<Entry, Error> {
    if msg.genlmsg_hdr()?.cmd != cmd {
        return Err(Error::decode("genl message with an unexpected command"));
    }
    let tb = msg.genlmsg_parse(proto::GENL_ATTR_MAX, ENTRY_POLICY)?;
    Ok(Entry {
        id: tb.require(proto::GENL_ATTR_ID)?.nla_get_u32()?,
        portid: tb.require(proto::GENL_ATTR_PORTID)?.nla_get_u32()?,
        msg: tb
            .require(proto::GENL_ATTR_MSG)?
            .nla_get_string()?
            .to_owned(),
    })
}

/// What [`dump_log`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDump {
    /// The sequence number of the dump request.
    pub seq: u32,
    pub entries: Vec<Entry>,
    /// A message carried `NLM_F_DUMP_INTR` (seen by the `DumpIntr`
    /// callback): the log changed during the dump; run it again.
    pub interrupted: bool,
}

// ANCHOR: dump
/// Dump the echo log: `genlmsg_put(GET)` with `NLM_F_DUMP`, then
/// `nl_recvmsgs()` with a VALID callback that parses each entry, a
/// DUMP_INTR callback that notes the interruption (instead of libnl's
/// `-NLE_DUMP_INTR`, so that the entries are still returned) and a FINISH
/// callback at `NLMSG_DONE`. The datagrams must fit the socket's buffer
/// ([`NlSock::set_msg_buf_size`]), or it is [`Error::Truncated`].
pub fn dump_log(sk: &mut NlSock, family: u16) -> Result<LogDump, Error> {
    let mut msg = NlMsg::genlmsg_put(
        family,
        NLM_F_DUMP,
        proto::GENL_CMD_GET,
        proto::GENL_FAMILY_VERSION,
    );
    let seq = sk.send_auto(&mut msg)?;
    let (mut entries, mut interrupted, mut finished) = (Vec::new(), false, false);
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |msg| {
        entries.push(parse_entry(msg, proto::GENL_CMD_GET)?);
        Ok(NlCbAction::Ok)
    });
    cb.set(NlCbType::DumpIntr, |_| {
        interrupted = true;
        Ok(NlCbAction::Ok)
    });
    cb.set(NlCbType::Finish, |_| {
        finished = true;
        Ok(NlCbAction::Stop)
    });
    sk.recvmsgs(&mut cb)?;
    drop(cb);
    if !finished {
        return Err(Error::decode("a dump that ended without NLMSG_DONE"));
    }
    Ok(LogDump {
        seq,
        entries,
        interrupted,
    })
}
// ANCHOR_END: dump

/// `GET` one entry (a `do` request): `ID` if given; without it the family
/// answers EINVAL (missing attribute ID), for a missing entry ENOENT.
pub fn get_entry(sk: &mut NlSock, family: u16, id: Option<u32>) -> Result<Entry, Error> {
    let mut msg = NlMsg::genlmsg_put(family, 0, proto::GENL_CMD_GET, proto::GENL_FAMILY_VERSION);
    if let Some(id) = id {
        msg.nla_put_u32(proto::GENL_ATTR_ID, id)?;
    }
    sk.send_auto(&mut msg)?;
    let mut entry = None;
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |msg| {
        entry = Some(parse_entry(msg, proto::GENL_CMD_GET)?);
        Ok(NlCbAction::Ok)
    });
    sk.recvmsgs(&mut cb)?;
    drop(cb);
    entry.ok_or(Error::NoReply)
}

/// A raw unit's notification: the copy of an echo reply sent to its group
/// ([`proto::RAW_GROUP`]): the reply's sequence number and payload, and
/// `nlmsg_pid` the port id of the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub seq: u32,
    pub portid: u32,
    pub payload: Vec<u8>,
}

/// A notification: a generic netlink `EVENT` or a raw unit's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Genl(Entry),
    Raw(RawEvent),
}

// ANCHOR: events
/// `nl_recvmsgs()` on a socket that joined a group (and called
/// [`NlSock::disable_seq_check`]): one datagram, each message to a VALID
/// callback. With `Some(family)`, the `EVENT`s of that generic netlink
/// family; with `None`, a raw unit's copies of echo replies (every message
/// that is not a control message). ENOBUFS (events were lost) is
/// [`Error::Overrun`]; the socket goes on.
pub fn recv_events(sk: &mut NlSock, family: Option<u16>) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |msg| {
        match family {
            Some(id) if msg.hdr.nlmsg_type != id => {} // another family's
            Some(_) if msg.genlmsg_hdr()?.cmd != proto::GENL_CMD_EVENT => {}
            Some(_) => events.push(Event::Genl(parse_entry(msg, proto::GENL_CMD_EVENT)?)),
            None => events.push(Event::Raw(RawEvent {
                seq: msg.hdr.nlmsg_seq,
                portid: msg.hdr.nlmsg_pid,
                payload: msg.nlmsg_data().to_vec(),
            })),
        }
        Ok(NlCbAction::Ok)
    });
    sk.recvmsgs(&mut cb)?;
    drop(cb);
    Ok(events)
}
// ANCHOR_END: events

#[cfg(test)]
mod parser_fuzz;
#[cfg(test)]
mod tests;
