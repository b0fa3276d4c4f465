//! # user-raw: netlink with nothing but libc
//!
//! The lowest of the three netlink-rosetta clients. It talks to the raw
//! kernel modules (`kmod-raw` on unit [`proto::RAW_UNIT`], `kmod-kthread` on
//! unit [`proto::KTHREAD_UNIT`]) using only `socket(2)`, `bind(2)`,
//! `getsockname(2)`, `setsockopt(2)`, `sendmsg(2)` and `recvmsg(2)`, and it
//! builds and parses every `struct nlmsghdr` by hand, byte by byte, the way
//! `man 7 netlink` and `<linux/netlink.h>` describe them. No libnl, no
//! netlink crate: what you read here is what goes on the wire.
//!
//! Run it inside the project VM, where the module is loaded:
//!
//! ```text
//! cargo xtask vm --modules raw -- target/debug/user-raw "hello"
//! ```
//!
//! which prints (the portid is whatever the kernel assigned):
//!
//! ```text
//! module raw: netlink unit 31, portid 1234
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//! ```
//!
//! One echo is: [`Socket::connect`] (socket + bind + getsockname), then
//! [`Socket::send`] one `nlmsghdr` + payload to the kernel (portid 0), then
//! [`Socket::recv`] datagrams and walk them with [`messages`] until the reply
//! with our sequence number arrives. [`Socket::echo`] does all of it.
//!
//! ## Generic netlink, by hand too
//!
//! The [`genl`] module speaks generic netlink to `kmod-genl` (family
//! [`proto::GENL_FAMILY_NAME`]) with the same socket code, on unit
//! `NETLINK_GENERIC`, building `struct genlmsghdr` and the `struct nlattr`
//! TLVs of [`attr`] by hand:
//!
//! ```text
//! cargo xtask vm --modules genl -- target/debug/user-raw --module genl "hello netlink"
//! ```
//!
//! ```text
//! module genl: family my_genl id 25, portid 1234
//! echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
//! ```
//!
//! In code: [`Socket::connect_genl`], then [`Socket::resolve_family`]
//! (`CTRL_CMD_GETFAMILY` to the controller, which answers with the id the
//! kernel gave the family), then [`Socket::genl_echo`] with that id (ECHO
//! with the NUL-terminated MSG attribute). A kernel error carries the
//! extended ack's message and missing-attribute type: `kernel replied
//! EINVAL (errno 22): missing attribute MSG (missing attribute type 1)`.
//! [`Socket::genl_request`] sends any command with any attributes, for the
//! error paths.
//!
//! ## Dumps and multicast groups, by hand too
//!
//! [`Socket::genl_dump`] sends `GET` with `NLM_F_DUMP` and reads datagram
//! after datagram, each walked by [`genl::multipart_datagram`]: messages
//! flagged `NLM_F_MULTI`, `NLM_F_DUMP_INTR` noted, until `NLMSG_DONE`, whose
//! `int` is the dump's result. [`Socket::genl_get`] is the same `GET` as a
//! `do`. [`Socket::add_membership`] joins a group with
//! `NETLINK_ADD_MEMBERSHIP`: a raw unit's [`proto::RAW_GROUP`], or a generic
//! netlink group whose id [`Family::mcast_group`] found in the controller's
//! nested `CTRL_ATTR_MCAST_GROUPS`; [`Socket::recv_genl_events`] and
//! [`Socket::recv_raw_events`] then read the notifications.
//!
//! Every parser of received bytes is fuzzed on the host with proptest
//! (`src/parser_fuzz.rs`, `cargo test -p user-raw parser_fuzz`): any bytes
//! give `Ok` or `Err`, never a panic or an allocation sized by a length field.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub mod attr;
pub mod genl;

pub use attr::{attrs, find_attr, nla_align, put_attr, put_nul_string, Attr, Attrs, NLA_HDRLEN};
pub use genl::{Dump, Entry, Family, GenlMsg, GenlMsgHdr, McastGroup, Op, GENL_HDRLEN};

// ---------------------------------------------------------------------------
// Wire format (<linux/netlink.h>, man 7 netlink)
// ---------------------------------------------------------------------------

/// Netlink messages start on 4-byte boundaries (`NLMSG_ALIGNTO`).
pub const NLMSG_ALIGNTO: usize = 4;

/// `NLMSG_ALIGN(len)`: round `len` up to the next multiple of 4.
/// `len` must be below `usize::MAX - 3`; every caller here passes a length
/// already bounded by a buffer size.
pub const fn nlmsg_align(len: usize) -> usize {
    (len + NLMSG_ALIGNTO - 1) & !(NLMSG_ALIGNTO - 1)
}

/// `NLMSG_HDRLEN`: the aligned size of `struct nlmsghdr`, 16 bytes.
pub const NLMSG_HDRLEN: usize = nlmsg_align(size_of::<NlMsgHdr>());

/// Control message types (`nlmsg_type` 1..=4); the kernel reserves all
/// types below `NLMSG_MIN_TYPE` (0x10).
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

/// `nlmsg_flags` bits used here.
pub const NLM_F_REQUEST: u16 = 0x01; // "must be set on all request messages"
pub const NLM_F_MULTI: u16 = 0x02; // part of a multipart answer (a dump)
pub const NLM_F_ACK: u16 = 0x04; // "request an acknowledgement on success"
pub const NLM_F_DUMP_INTR: u16 = 0x10; // the dump's data changed while it ran
pub const NLM_F_DUMP: u16 = 0x300; // NLM_F_ROOT | NLM_F_MATCH: "return everything"
pub const NLM_F_CAPPED: u16 = 0x100; // NLMSG_ERROR: request payload left out
pub const NLM_F_ACK_TLVS: u16 = 0x200; // NLMSG_ERROR: extended ack TLVs follow

/// Extended ack attribute carrying a human-readable message (`NLMSGERR_ATTR_MSG`).
pub const NLMSGERR_ATTR_MSG: u16 = 1;

/// Extended ack attribute: the type of a missing attribute, a u32
/// (`NLMSGERR_ATTR_MISS_TYPE`, linux/netlink.h; libc does not define it).
pub const NLMSGERR_ATTR_MISS_TYPE: u16 = 5;

/// Receive buffer size. The kernel advises max(page size, 8192) (see
/// `man 7 netlink`), but our largest reply is an echo of [`proto::MAX_PAYLOAD`]
/// bytes plus its header, so size it from that: 16 KiB of payload plus
/// 8 KiB for headers, an error's copy of the request header and extack TLVs.
pub const RECV_BUF_LEN: usize = nlmsg_align(proto::MAX_PAYLOAD) + 8192;

/// `struct nlmsghdr`, field for field. Netlink uses host byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsgHdr {
    /// Length of the message including this header (not counting padding).
    pub nlmsg_len: u32,
    pub nlmsg_type: u16,
    pub nlmsg_flags: u16,
    pub nlmsg_seq: u32,
    /// Sender portid: 0 for the kernel.
    pub nlmsg_pid: u32,
}

const _: () = assert!(size_of::<NlMsgHdr>() == 16);

impl NlMsgHdr {
    /// Serialise in host byte order, as the kernel lays the struct out.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.nlmsg_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.nlmsg_type.to_ne_bytes());
        b[6..8].copy_from_slice(&self.nlmsg_flags.to_ne_bytes());
        b[8..12].copy_from_slice(&self.nlmsg_seq.to_ne_bytes());
        b[12..16].copy_from_slice(&self.nlmsg_pid.to_ne_bytes());
        b
    }

    /// Parse the first 16 bytes of `b`, or `None` if `b` is shorter.
    pub fn from_bytes(b: &[u8]) -> Option<NlMsgHdr> {
        Some(NlMsgHdr {
            nlmsg_len: ne_u32(b, 0)?,
            nlmsg_type: ne_u16(b, 4)?,
            nlmsg_flags: ne_u16(b, 6)?,
            nlmsg_seq: ne_u32(b, 8)?,
            nlmsg_pid: ne_u32(b, 12)?,
        })
    }
}

/// Read a host-order u16 at `at`, if `b` is long enough.
fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Read a host-order u32 at `at`, if `b` is long enough.
fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

// ANCHOR: encode
/// Append one message (header + payload) to `buf`.
///
/// `nlmsg_len` is `NLMSG_LENGTH(payload.len())` = 16 + payload length,
/// *unpadded*, like the kernel's `nlmsg_put()`: the receiver takes the
/// payload length from it, so padding it would make the module echo the pad
/// bytes. `buf` itself is then zero-padded to `NLMSG_ALIGN` so a following
/// message in the same datagram starts aligned.
pub fn encode(
    buf: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &[u8],
) -> Result<(), Error> {
    let too_large = || Error::PayloadTooLarge { len: payload.len() };
    let len = NLMSG_HDRLEN
        .checked_add(payload.len())
        .ok_or_else(too_large)?;
    let hdr = NlMsgHdr {
        nlmsg_len: u32::try_from(len).map_err(|_| too_large())?,
        nlmsg_type: ty,
        nlmsg_flags: flags,
        nlmsg_seq: seq,
        nlmsg_pid: 0, // "the kernel takes care of it" for messages we send
    };
    buf.extend_from_slice(&hdr.to_bytes());
    buf.extend_from_slice(payload);
    buf.resize(nlmsg_align(buf.len()), 0);
    Ok(())
}
// ANCHOR_END: encode

/// Iterate the messages of a received datagram: see [`messages`].
pub struct Messages<'a> {
    buf: &'a [u8],
    offset: usize,
}

/// Walk a datagram like `NLMSG_OK`/`NLMSG_NEXT`, but with every length
/// checked: a header that does not fit, an `nlmsg_len` below 16 or past the
/// end of the datagram, or trailing bytes that are not a whole header, all
/// yield one [`Error::Decode`] and end the iteration.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { buf, offset: 0 }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(NlMsgHdr, &'a [u8]), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.offset..).filter(|r| !r.is_empty())?;
        let at = self.offset;
        self.offset = self.buf.len(); // on any error, stop after this item
        let Some(hdr) = NlMsgHdr::from_bytes(rest) else {
            return Some(Err(Error::decode(
                at,
                "trailing bytes shorter than a header",
            )));
        };
        let len = hdr.nlmsg_len as usize;
        if len < NLMSG_HDRLEN {
            return Some(Err(Error::decode(at, "nlmsg_len smaller than the header")));
        }
        let Some(payload) = rest.get(NLMSG_HDRLEN..len) else {
            return Some(Err(Error::decode(
                at,
                "nlmsg_len beyond the end of the datagram",
            )));
        };
        // The next message starts at NLMSG_ALIGN(nlmsg_len); the kernel may
        // or may not have sent the padding after the last one.
        self.offset = at + nlmsg_align(len).min(rest.len());
        Some(Ok((hdr, payload)))
    }
}

/// The payload of an `NLMSG_ERROR` message (`struct nlmsgerr` + extras).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlMsgErr {
    /// 0 for an ack, otherwise a negative errno.
    pub error: i32,
    /// The header of the request this answers.
    pub request: NlMsgHdr,
    /// `NLMSGERR_ATTR_MSG`, if the kernel attached one.
    pub extack: Option<String>,
    /// `NLMSGERR_ATTR_MISS_TYPE`: the attribute the request lacked, if the
    /// handler said which (`NL_SET_ERR_ATTR_MISS()`).
    pub missing_attr: Option<u16>,
}

/// Parse an `NLMSG_ERROR` message: `int error; struct nlmsghdr msg;` then,
/// unless `NLM_F_CAPPED`, the rest of the request, then (if
/// `NLM_F_ACK_TLVS`) extended ack attributes, each an aligned
/// `struct nlattr { u16 nla_len; u16 nla_type; }` + value (see [`attr`]).
pub fn parse_error(hdr: &NlMsgHdr, payload: &[u8]) -> Result<NlMsgErr, Error> {
    let short = || Error::decode(0, "NLMSG_ERROR shorter than struct nlmsgerr");
    let error = ne_u32(payload, 0).ok_or_else(short)? as i32; // C `int`
    let request = payload
        .get(4..)
        .and_then(NlMsgHdr::from_bytes)
        .ok_or_else(short)?;
    let (mut extack, mut missing_attr) = (None, None);
    if hdr.nlmsg_flags & NLM_F_ACK_TLVS != 0 {
        // TLVs start after `struct nlmsgerr` (20 bytes) and, unless capped,
        // after the copy of the request's payload.
        let bad = || Error::decode(4, "NLMSG_ERROR: bad length of the copied request");
        let copied = match hdr.nlmsg_flags & NLM_F_CAPPED {
            0 => (request.nlmsg_len as usize)
                .checked_sub(NLMSG_HDRLEN)
                .ok_or_else(bad)?,
            _ => 0,
        };
        let start = copied
            .checked_add(4 + NLMSG_HDRLEN)
            .filter(|&s| s <= payload.len());
        let start = nlmsg_align(start.ok_or_else(bad)?).min(payload.len());
        // Every TLV is length-checked; we use two of them and skip the
        // others (OFFS, COOKIE, POLICY, MISS_NEST).
        for tlv in attrs(&payload[start..]) {
            let tlv = tlv?;
            match tlv.ty {
                NLMSGERR_ATTR_MSG => {
                    let text = tlv.value.split(|&b| b == 0).next().unwrap_or_default();
                    extack = Some(String::from_utf8_lossy(text).into_owned());
                }
                NLMSGERR_ATTR_MISS_TYPE => {
                    let ty = u16::try_from(tlv.u32()?).map_err(|_| {
                        Error::decode(tlv.offset, "NLMSGERR_ATTR_MISS_TYPE above u16::MAX")
                    })?;
                    missing_attr = Some(ty);
                }
                _ => {}
            }
        }
    }
    Ok(NlMsgErr {
        error,
        request,
        extack,
        missing_attr,
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Everything that can go wrong; each message names the fix where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink unit {unit} not available: is {} loaded?", proto::module_for_unit(*unit))]
    UnitUnavailable { unit: i32 },
    #[error("{call} failed: {source}")]
    Os {
        call: &'static str,
        source: io::Error,
    },
    #[error("no reply from the kernel within {} ms: is the module answering? (raise the timeout if it is just slow)", timeout.as_millis())]
    Timeout { timeout: Duration },
    #[error("receive buffer overrun (ENOBUFS): the kernel dropped messages for this socket; read replies faster or send smaller batches")]
    Overrun,
    #[error("reply truncated (MSG_TRUNC): the datagram was longer than the {buf_len}-byte receive buffer")]
    Truncated { buf_len: usize },
    #[error("payload of {len} bytes does not fit in a netlink message (nlmsg_len is a u32)")]
    PayloadTooLarge { len: usize },
    #[error("malformed netlink message at byte {offset}: {reason}")]
    Decode { offset: usize, reason: &'static str },
    #[error("unexpected message type {ty:#x} with our sequence number {seq}")]
    Unexpected { ty: u16, seq: u32 },
    /// An `NLMSG_ERROR` with a non-zero error; `errno` is positive (90, not
    /// -90); `extack` and `missing_attr` are the extended ack's
    /// `NLMSGERR_ATTR_MSG` and `NLMSGERR_ATTR_MISS_TYPE`.
    #[error("kernel replied {} (errno {errno}): {}", errno_name(*errno), kernel_detail(*errno, extack, *missing_attr))]
    Kernel {
        errno: i32,
        extack: Option<String>,
        missing_attr: Option<u16>,
    },
    /// The controller (nlctrl) answered ENOENT to `CTRL_CMD_GETFAMILY`.
    #[error(
        "generic netlink family {name} not found: is {} loaded?",
        proto::module_for_family(name)
    )]
    FamilyNotFound { name: String },
    #[error("attribute type {ty} with a {len}-byte value does not fit (nla_len is a u16)")]
    AttrTooLarge { ty: u16, len: usize },
    #[error("the string has a NUL byte at offset {offset}: a NUL-terminated string attribute cannot carry it")]
    NulInString { offset: usize },
    /// A well-formed reply to our request that is not the answer we expect.
    #[error("reply to seq {seq}: {reason}")]
    BadReply { seq: u32, reason: String },
}

impl Error {
    fn decode(offset: usize, reason: &'static str) -> Error {
        Error::Decode { offset, reason }
    }
    fn last_os(call: &'static str) -> Error {
        Error::Os {
            call,
            source: io::Error::last_os_error(),
        }
    }
}

/// The extack message if the kernel sent one, else strerror(errno); then
/// the missing attribute's type, if the kernel named one.
fn kernel_detail(errno: i32, extack: &Option<String>, missing_attr: Option<u16>) -> String {
    let mut text = match extack {
        Some(text) => text.clone(),
        None => {
            let text = io::Error::from_raw_os_error(errno).to_string();
            let suffix = format!(" (os error {errno})");
            text.strip_suffix(&suffix).unwrap_or(&text).to_string()
        }
    };
    if let Some(ty) = missing_attr {
        text.push_str(&format!(" (missing attribute type {ty})"));
    }
    text
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
// The socket
// ---------------------------------------------------------------------------

/// A bound `AF_NETLINK` socket talking to one netlink unit. Closed on drop.
pub struct Socket {
    fd: OwnedFd,
    unit: i32,
    portid: u32,
    seq: u32,
    timeout: Duration,
    buf: Vec<u8>,
}

/// Default receive timeout (`SO_RCVTIMEO`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A `sockaddr_nl` for `nl_pid` (0 = the kernel, or "assign me one" in bind).
fn sockaddr_nl(pid: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain integers (and padding); all-zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_pid = pid;
    addr
}

const SOCKADDR_NL_LEN: libc::socklen_t = size_of::<libc::sockaddr_nl>() as libc::socklen_t;

impl Socket {
    // ANCHOR: connect
    /// Open, bind and configure a netlink socket on `unit` (the `protocol`
    /// argument of `socket(2)`, e.g. [`proto::RAW_UNIT`]).
    pub fn connect(unit: i32) -> Result<Socket, Error> {
        // 1. socket(AF_NETLINK, SOCK_RAW, unit). Netlink is datagram
        //    oriented; SOCK_RAW and SOCK_DGRAM are equivalent (man 7 netlink).
        // SAFETY: plain syscall with integer arguments.
        let raw =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, unit) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            // No kernel code registered this unit (netlink_kernel_create()).
            if err.raw_os_error() == Some(libc::EPROTONOSUPPORT) {
                return Err(Error::UnitUnavailable { unit });
            }
            return Err(Error::Os {
                call: "socket(AF_NETLINK)",
                source: err,
            });
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // 2. bind() with nl_pid 0: the kernel assigns us a unique portid.
        let addr = sockaddr_nl(0);
        // SAFETY: `addr` is a valid sockaddr_nl and we pass its exact size.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), SOCKADDR_NL_LEN) };
        if rc < 0 {
            return Err(Error::last_os("bind(AF_NETLINK)"));
        }

        // 3. getsockname() tells us which portid we got.
        let mut addr = sockaddr_nl(0);
        let mut len = SOCKADDR_NL_LEN;
        // SAFETY: `addr`/`len` are valid for writes of a sockaddr_nl.
        let rc = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &mut len) };
        if rc < 0 {
            return Err(Error::last_os("getsockname"));
        }

        let mut sock = Socket {
            fd,
            unit,
            portid: addr.nl_pid,
            seq: 0,
            timeout: DEFAULT_TIMEOUT,
            buf: vec![0; RECV_BUF_LEN],
        };
        // 4. Ask for extended acks (error strings) and capped error messages
        //    (NLM_F_CAPPED: no copy of a too-large request in NLMSG_ERROR, so
        //    the error fits our buffer). Old kernels answer ENOPROTOOPT: fine.
        sock.set_netlink_flag(libc::NETLINK_EXT_ACK, "setsockopt(NETLINK_EXT_ACK)")?;
        sock.set_netlink_flag(libc::NETLINK_CAP_ACK, "setsockopt(NETLINK_CAP_ACK)")?;
        // 5. A receive timeout, so a silent module is an error, not a hang.
        sock.set_timeout(DEFAULT_TIMEOUT)?;
        Ok(sock)
    }
    // ANCHOR_END: connect

    fn set_netlink_flag(&self, opt: libc::c_int, call: &'static str) -> Result<(), Error> {
        let on: libc::c_int = 1;
        // SAFETY: `on` is a valid c_int and we pass its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                opt,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOPROTOOPT) {
            return Err(Error::last_os(call));
        }
        Ok(())
    }

    /// Set the receive timeout (`SO_RCVTIMEO`). Zero means wait forever.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: timeout.subsec_micros() as libc::suseconds_t, // < 1_000_000
        };
        // SAFETY: `tv` is a valid timeval and we pass its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(Error::last_os("setsockopt(SO_RCVTIMEO)"));
        }
        self.timeout = timeout;
        Ok(())
    }

    /// The portid the kernel assigned to this socket.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// The netlink unit (protocol) this socket talks to.
    pub fn unit(&self) -> i32 {
        self.unit
    }

    /// The sequence number of the last request sent (0 before the first).
    pub fn last_seq(&self) -> u32 {
        self.seq
    }

    /// Next sequence number: 1, 2, ... u32::MAX, then 1 again. 0 is skipped
    /// so it never matches, as kernel notifications use seq 0.
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.checked_add(1).unwrap_or(1);
        self.seq
    }

    // ANCHOR: send
    /// Send one request to the kernel; returns its sequence number.
    /// `NLM_F_REQUEST` is always added to `flags`.
    pub fn send(&mut self, ty: u16, flags: u16, payload: &[u8]) -> Result<u32, Error> {
        let mut datagram = Vec::with_capacity(NLMSG_HDRLEN + payload.len() + 3);
        let seq = self.next_seq();
        encode(&mut datagram, ty, flags | NLM_F_REQUEST, seq, payload)?;
        self.send_datagram(&datagram)?;
        Ok(seq)
    }

    /// Send several requests in ONE datagram; returns their sequence numbers.
    /// The kernel's `netlink_rcv_skb()` walks them one after the other.
    pub fn send_batch(&mut self, requests: &[(u16, u16, &[u8])]) -> Result<Vec<u32>, Error> {
        let mut datagram = Vec::new();
        let mut seqs = Vec::with_capacity(requests.len());
        for &(ty, flags, payload) in requests {
            let seq = self.next_seq();
            encode(&mut datagram, ty, flags | NLM_F_REQUEST, seq, payload)?;
            seqs.push(seq);
        }
        self.send_datagram(&datagram)?;
        Ok(seqs)
    }

    /// `sendmsg(2)` one datagram to the kernel (destination nl_pid 0), as it
    /// is: [`Socket::send`] builds well-formed ones, tests also send
    /// hand-made and malformed ones.
    pub fn send_datagram(&self, datagram: &[u8]) -> Result<(), Error> {
        let mut dest = sockaddr_nl(0);
        // iov_base is `*mut` in C, but sendmsg only reads through it.
        let mut iov = libc::iovec {
            iov_base: datagram.as_ptr().cast_mut().cast(),
            iov_len: datagram.len(),
        };
        // SAFETY: msghdr is plain integers and pointers; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut dest).cast();
        msg.msg_namelen = SOCKADDR_NL_LEN;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        loop {
            // SAFETY: `msg` points at `dest` and `iov`, which point at live
            // buffers of the given sizes, all outliving the call.
            if unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) } >= 0 {
                return Ok(()); // a datagram is sent whole or not at all
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(Error::last_os("sendmsg"));
            }
        }
    }
    // ANCHOR_END: send

    // ANCHOR: membership
    /// Join multicast group `group` of the socket's unit
    /// (`setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP)`, the group's
    /// number as an int): from now on the kernel's broadcasts to it are
    /// queued on this socket too, with `nlmsg_seq` of whoever caused them
    /// and the sender address nl_pid 0, `nl_groups` its bit (groups 1..32).
    /// Unlike `bind()`'s `nl_groups` bitmask, this reaches groups above 32,
    /// where generic netlink's ids may land.
    pub fn add_membership(&mut self, group: u32) -> Result<(), Error> {
        self.membership(
            libc::NETLINK_ADD_MEMBERSHIP,
            group,
            "setsockopt(NETLINK_ADD_MEMBERSHIP)",
        )
    }

    /// Leave multicast group `group` (`NETLINK_DROP_MEMBERSHIP`).
    pub fn drop_membership(&mut self, group: u32) -> Result<(), Error> {
        self.membership(
            libc::NETLINK_DROP_MEMBERSHIP,
            group,
            "setsockopt(NETLINK_DROP_MEMBERSHIP)",
        )
    }
    // ANCHOR_END: membership

    fn membership(
        &mut self,
        opt: libc::c_int,
        group: u32,
        call: &'static str,
    ) -> Result<(), Error> {
        // SAFETY: `group` is a valid u32 and we pass its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                opt,
                (&raw const group).cast(),
                size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(Error::last_os(call));
        }
        Ok(())
    }

    /// Receive one datagram of a raw unit's group and return the events in
    /// it: the copies of echo replies that the unit broadcasts
    /// ([`proto::RAW_GROUP`]). ENOBUFS (events lost) is [`Error::Overrun`];
    /// the socket then goes on.
    pub fn recv_raw_events(&mut self) -> Result<Vec<RawEvent>, Error> {
        let n = recv_from_kernel(&self.fd, &mut self.buf, self.timeout)?;
        raw_events(&self.buf[..n])
    }

    /// Receive one datagram from the kernel into `buf`; returns its length.
    /// Walk it with [`messages`]. Datagrams from other senders (nl_pid != 0)
    /// are ignored. Use a buffer of at least [`RECV_BUF_LEN`] bytes.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        recv_from_kernel(&self.fd, buf, self.timeout)
    }

    /// Echo `payload` through the module and return the reply's payload.
    pub fn echo(&mut self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.echo_inner(payload, false)
    }

    /// Like [`Socket::echo`], but sets `NLM_F_ACK` and also waits for the
    /// ack (`NLMSG_ERROR` with error 0) that follows the reply.
    pub fn echo_with_ack(&mut self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.echo_inner(payload, true)
    }

    // ANCHOR: echo
    fn echo_inner(&mut self, payload: &[u8], ack: bool) -> Result<Vec<u8>, Error> {
        let flags = if ack { NLM_F_ACK } else { 0 };
        let seq = self.send(proto::ECHO_MSG_TYPE, flags, payload)?;
        let (mut reply, mut acked) = (None, false);
        while reply.is_none() || (ack && !acked) {
            let n = recv_from_kernel(&self.fd, &mut self.buf, self.timeout)?;
            echo_datagram(seq, &self.buf[..n], &mut reply, &mut acked)?;
        }
        Ok(reply.unwrap_or_default())
    }
    // ANCHOR_END: echo
}

/// One received datagram of [`Socket::echo`]'s loop: walk its messages and
/// note our reply and our ack. No socket here, so the parser fuzz tests can
/// feed it any bytes.
fn echo_datagram(
    seq: u32,
    datagram: &[u8],
    reply: &mut Option<Vec<u8>>,
    acked: &mut bool,
) -> Result<(), Error> {
    for msg in messages(datagram) {
        let (hdr, body) = msg?;
        match reply_event(seq, proto::ECHO_MSG_TYPE, &hdr, body)? {
            EchoEvent::Reply(data) => *reply = Some(data.to_vec()),
            EchoEvent::Ack => *acked = true,
            EchoEvent::Ignore => {}
        }
    }
    Ok(())
}

/// What one received message means to the request `seq`.
#[derive(Debug, PartialEq, Eq)]
enum EchoEvent<'a> {
    Reply(&'a [u8]),
    Ack,
    Ignore,
}

/// Sort one received message: our reply (of type `reply_type`: the echo
/// type for the raw units, the family id for generic netlink), our ack, our
/// error, or not ours.
fn reply_event<'a>(
    seq: u32,
    reply_type: u16,
    hdr: &NlMsgHdr,
    body: &'a [u8],
) -> Result<EchoEvent<'a>, Error> {
    if hdr.nlmsg_seq != seq {
        return Ok(EchoEvent::Ignore); // a stale reply to an earlier, timed-out request
    }
    match hdr.nlmsg_type {
        NLMSG_ERROR => match parse_error(hdr, body)? {
            NlMsgErr { error: 0, .. } => Ok(EchoEvent::Ack),
            NlMsgErr {
                error,
                extack,
                missing_attr,
                ..
            } => {
                let errno = error.saturating_neg(); // NLMSG_ERROR carries -errno
                Err(Error::Kernel {
                    errno,
                    extack,
                    missing_attr,
                })
            }
        },
        NLMSG_NOOP | NLMSG_DONE | NLMSG_OVERRUN => Ok(EchoEvent::Ignore),
        ty if ty == reply_type => Ok(EchoEvent::Reply(body)),
        ty => Err(Error::Unexpected { ty, seq }),
    }
}

/// A raw unit's notification: the copy of an echo reply that it sends to
/// its group ([`proto::RAW_GROUP`]): the reply's type, payload and sequence
/// number, flags 0, and `nlmsg_pid` the port id of the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub seq: u32,
    /// The requester's port id (`nlmsg_pid`).
    pub portid: u32,
    pub ty: u16,
    pub payload: Vec<u8>,
}

/// The events of one datagram received on a raw unit's group: every
/// message that is not a control message (type 1..=4). No socket here, so
/// the tests can feed it any bytes.
pub fn raw_events(datagram: &[u8]) -> Result<Vec<RawEvent>, Error> {
    let mut events = Vec::new();
    for msg in messages(datagram) {
        let (hdr, body) = msg?;
        match hdr.nlmsg_type {
            NLMSG_NOOP | NLMSG_ERROR | NLMSG_DONE | NLMSG_OVERRUN => {}
            ty => events.push(RawEvent {
                seq: hdr.nlmsg_seq,
                portid: hdr.nlmsg_pid,
                ty,
                payload: body.to_vec(),
            }),
        }
    }
    Ok(events)
}

// ANCHOR: receive
/// `recvmsg(2)` one datagram whose sender is the kernel (nl_pid 0).
fn recv_from_kernel(fd: &OwnedFd, buf: &mut [u8], timeout: Duration) -> Result<usize, Error> {
    loop {
        let mut from = sockaddr_nl(0);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain integers and pointers; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = SOCKADDR_NL_LEN;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: `msg` points at `from` and `iov`, which point at live,
        // writable buffers of the given sizes, all outliving the call.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // EAGAIN == EWOULDBLOCK on Linux: SO_RCVTIMEO expired.
                Some(libc::EAGAIN) => return Err(Error::Timeout { timeout }),
                // The socket's receive queue overflowed (man 7 netlink).
                Some(libc::ENOBUFS) => return Err(Error::Overrun),
                _ => {
                    return Err(Error::Os {
                        call: "recvmsg",
                        source: err,
                    })
                }
            }
        }
        // MSG_TRUNC: the datagram did not fit and the rest is lost.
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(Error::Truncated { buf_len: buf.len() });
        }
        if from.nl_pid != 0 {
            continue; // not from the kernel: some other process, ignore it
        }
        return Ok(n as usize); // n >= 0 was checked above
    }
}
// ANCHOR_END: receive

#[cfg(test)]
mod parser_fuzz;
#[cfg(test)]
mod tests;
