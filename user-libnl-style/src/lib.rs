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
        let mut multipart = false;
        loop {
            let len = self.recv_datagram()?;
            let (seq, ack_pending) = (self.seq_expect, &mut self.ack_pending);
            if handle_datagram(&self.buf[..len], seq, ack_pending, &mut multipart, cb)? {
                return Ok(());
            }
        }
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
}

/// One datagram of [`NlSock::recvmsgs`]'s loop: hand the messages of request
/// `seq_expect` to `cb`; returns whether the loop is done. No socket here,
/// so the parser fuzz tests can feed it any bytes.
fn handle_datagram(
    datagram: &[u8],
    seq_expect: u32,
    ack_pending: &mut bool,
    multipart: &mut bool,
    cb: &mut NlCb<'_>,
) -> Result<bool, Error> {
    let mut ours = false;
    for msg in messages(datagram) {
        let msg = msg?;
        if msg.hdr.nlmsg_seq != seq_expect {
            continue; // a late answer to an earlier request
        }
        ours = true;
        *multipart |= msg.hdr.nlmsg_flags & NLM_F_MULTI != 0;
        let action = match msg.hdr.nlmsg_type {
            NLMSG_NOOP => NlCbAction::Skip,
            NLMSG_OVERRUN => return Err(Error::Overrun),
            NLMSG_DONE => {
                // The end of a dump; no ack follows it, even if asked.
                (*multipart, *ack_pending) = (false, false);
                call(&mut cb.finish, &msg, NlCbAction::Stop)?
            }
            NLMSG_ERROR => {
                let err = NlMsgErr::parse(&msg)?;
                *ack_pending = false; // an error replaces the ack
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
    Ok(ours && !*multipart && !*ack_pending)
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

#[cfg(test)]
mod parser_fuzz;
#[cfg(test)]
mod tests;
