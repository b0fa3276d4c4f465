//! Generic netlink by hand: `struct genlmsghdr`, the controller (nlctrl)
//! and the echo of `kmod-genl`.
//!
//! Generic netlink multiplexes many *families* over one netlink unit,
//! `NETLINK_GENERIC` (16). A request is an ordinary netlink message whose
//! `nlmsg_type` is the family's id, followed by a `genlmsghdr` and the
//! command's attributes ([`crate::attr`]). The kernel assigns the id when the
//! module registers the family, so a client first asks the controller,
//! family `nlctrl` with the fixed id `GENL_ID_CTRL` (0x10), with
//! `CTRL_CMD_GETFAMILY` and the name ([`Socket::resolve_family`]).
//!
//! The ECHO request for `"hi"`, byte by byte (host byte order; this is what
//! [`Socket::genl_echo`] sends, checked by a unit test):
//!
//! ```text
//! offset  bytes        field
//!      0  1c 00 00 00  nlmsghdr.nlmsg_len   = 28 = 16 + 4 + 8 (attribute padding included)
//!      4  id id        nlmsghdr.nlmsg_type  = the family id, e.g. 0x0016
//!      6  01 00        nlmsghdr.nlmsg_flags = NLM_F_REQUEST
//!      8  seq          nlmsghdr.nlmsg_seq
//!     12  00 00 00 00  nlmsghdr.nlmsg_pid   = 0, the kernel fills it in
//!     16  01           genlmsghdr.cmd       = ECHO (1)
//!     17  01           genlmsghdr.version   = 1
//!     18  00 00        genlmsghdr.reserved  = 0
//!     20  07 00        nlattr.nla_len       = 4 + 3 ("hi" and its NUL, unpadded)
//!     22  01 00        nlattr.nla_type      = MSG (1)
//!     24  68 69 00     'h' 'i' NUL
//!     27  00           padding to NLA_ALIGN(7) = 8
//! ```
//!
//! The reply has the same shape: `nlmsg_type` the family id, `nlmsg_seq`
//! ours, `nlmsg_pid` our portid, `cmd` ECHO and the same MSG. An error is
//! an `NLMSG_ERROR` as for the raw units, now often with extended-ack
//! details from the generic netlink core's policy checks.

use crate::attr::{attrs, find_attr, nla_align, put_nul_string, Attr, Attrs, NLA_HDRLEN};
use crate::{
    messages, recv_from_kernel, reply_event, EchoEvent, Error, NlMsgHdr, Socket, NLM_F_ACK,
    NLM_F_REQUEST,
};

/// `GENL_HDRLEN`: the aligned size of `struct genlmsghdr`, 4 bytes.
pub const GENL_HDRLEN: usize = 4;

/// The controller's fixed family id (`GENL_ID_CTRL` = `NLMSG_MIN_TYPE`).
pub const GENL_ID_CTRL: u16 = libc::GENL_ID_CTRL as u16;

/// Controller commands: the reply to GETFAMILY is a NEWFAMILY message.
pub const CTRL_CMD_NEWFAMILY: u8 = libc::CTRL_CMD_NEWFAMILY as u8;
pub const CTRL_CMD_GETFAMILY: u8 = libc::CTRL_CMD_GETFAMILY as u8;

/// The `version` we put in controller requests (libnl's `genl_ctrl_resolve`
/// sends 1; the controller does not check it).
pub const CTRL_VERSION: u8 = 1;

/// Controller attributes (`enum CTRL_ATTR_*`, linux/genetlink.h).
pub const CTRL_ATTR_FAMILY_ID: u16 = libc::CTRL_ATTR_FAMILY_ID as u16; // u16
pub const CTRL_ATTR_FAMILY_NAME: u16 = libc::CTRL_ATTR_FAMILY_NAME as u16; // NUL string
pub const CTRL_ATTR_VERSION: u16 = libc::CTRL_ATTR_VERSION as u16; // u32
pub const CTRL_ATTR_HDRSIZE: u16 = libc::CTRL_ATTR_HDRSIZE as u16; // u32
pub const CTRL_ATTR_MAXATTR: u16 = libc::CTRL_ATTR_MAXATTR as u16; // u32
pub const CTRL_ATTR_OPS: u16 = libc::CTRL_ATTR_OPS as u16; // nested, see below
pub const CTRL_ATTR_MCAST_GROUPS: u16 = libc::CTRL_ATTR_MCAST_GROUPS as u16; // nested, see below

/// Inside `CTRL_ATTR_MCAST_GROUPS`: one nested attribute per group (types
/// 1, 2, ... are indexes), each holding its name and id.
pub const CTRL_ATTR_MCAST_GRP_NAME: u16 = libc::CTRL_ATTR_MCAST_GRP_NAME as u16; // NUL string
pub const CTRL_ATTR_MCAST_GRP_ID: u16 = libc::CTRL_ATTR_MCAST_GRP_ID as u16; // u32

/// Inside `CTRL_ATTR_OPS`: one nested attribute per command (types 1, 2,
/// ... are just indexes), each holding these two.
pub const CTRL_ATTR_OP_ID: u16 = libc::CTRL_ATTR_OP_ID as u16; // u32
pub const CTRL_ATTR_OP_FLAGS: u16 = libc::CTRL_ATTR_OP_FLAGS as u16; // u32

/// `struct genlmsghdr`, field for field: it follows the `nlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenlMsgHdr {
    /// The family's command number.
    pub cmd: u8,
    /// The family's interface version.
    pub version: u8,
    /// Always 0.
    pub reserved: u16,
}

impl GenlMsgHdr {
    /// A header for `cmd` of interface `version`, `reserved` 0.
    pub fn new(cmd: u8, version: u8) -> GenlMsgHdr {
        GenlMsgHdr {
            cmd,
            version,
            reserved: 0,
        }
    }

    /// Serialise: cmd, version, then `reserved` in host byte order.
    pub fn to_bytes(&self) -> [u8; GENL_HDRLEN] {
        let [r0, r1] = self.reserved.to_ne_bytes();
        [self.cmd, self.version, r0, r1]
    }

    /// Parse the first 4 bytes of `b`, or `None` if `b` is shorter.
    pub fn from_bytes(b: &[u8]) -> Option<GenlMsgHdr> {
        Some(GenlMsgHdr {
            cmd: *b.first()?,
            version: *b.get(1)?,
            reserved: crate::ne_u16(b, 2)?,
        })
    }
}

/// A generic netlink message as received: headers and raw attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenlMsg {
    pub nlmsg: NlMsgHdr,
    pub genl: GenlMsgHdr,
    /// The attributes after the `genlmsghdr`, as received: walk them with
    /// [`GenlMsg::attrs`].
    pub attrs: Vec<u8>,
}

impl GenlMsg {
    /// Split a netlink message's payload into `genlmsghdr` and attributes.
    pub fn parse(nlmsg: NlMsgHdr, payload: &[u8]) -> Result<GenlMsg, Error> {
        let genl = GenlMsgHdr::from_bytes(payload).ok_or(Error::Decode {
            offset: 0,
            reason: "generic netlink message shorter than struct genlmsghdr",
        })?;
        Ok(GenlMsg {
            nlmsg,
            genl,
            attrs: payload[GENL_HDRLEN..].to_vec(),
        })
    }

    /// Walk the attributes, every length checked.
    pub fn attrs(&self) -> Attrs<'_> {
        attrs(&self.attrs)
    }
}

/// A generic netlink family, as the controller describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// `CTRL_ATTR_FAMILY_ID`: the `nlmsg_type` of its messages.
    pub id: u16,
    /// `CTRL_ATTR_FAMILY_NAME`.
    pub name: String,
    /// `CTRL_ATTR_VERSION`.
    pub version: u32,
    /// `CTRL_ATTR_HDRSIZE`: bytes of family header after the `genlmsghdr`.
    pub hdrsize: u32,
    /// `CTRL_ATTR_MAXATTR`: its highest attribute type.
    pub maxattr: u32,
    /// `CTRL_ATTR_OPS`: its commands.
    pub ops: Vec<Op>,
    /// `CTRL_ATTR_MCAST_GROUPS`: its multicast groups.
    pub mcast_groups: Vec<McastGroup>,
}

/// One multicast group of a family (`CTRL_ATTR_MCAST_GRP_NAME`,
/// `CTRL_ATTR_MCAST_GRP_ID`). The id is global to `NETLINK_GENERIC`: it is
/// what `NETLINK_ADD_MEMBERSHIP` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McastGroup {
    pub name: String,
    pub id: u32,
}

/// One command of a family (`CTRL_ATTR_OP_ID`, `CTRL_ATTR_OP_FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub id: u32,
    /// `GENL_ADMIN_PERM`, `GENL_CMD_CAP_DO`, ... (linux/genetlink.h).
    pub flags: u32,
}

impl Family {
    /// Parse the attributes of a `CTRL_CMD_NEWFAMILY` message. The id and
    /// name are required; attributes we do not use (multicast groups,
    /// policies) are length-checked and skipped.
    pub fn parse(buf: &[u8]) -> Result<Family, Error> {
        let (mut id, mut name) = (None, None);
        let mut family = Family {
            id: 0,
            name: String::new(),
            version: 0,
            hdrsize: 0,
            maxattr: 0,
            ops: Vec::new(),
            mcast_groups: Vec::new(),
        };
        for attr in attrs(buf) {
            let attr = attr?;
            match attr.ty {
                CTRL_ATTR_FAMILY_ID => id = Some(attr.u16()?),
                CTRL_ATTR_FAMILY_NAME => {
                    name = Some(String::from_utf8_lossy(attr.nul_string()?).into_owned())
                }
                CTRL_ATTR_VERSION => family.version = attr.u32()?,
                CTRL_ATTR_HDRSIZE => family.hdrsize = attr.u32()?,
                CTRL_ATTR_MAXATTR => family.maxattr = attr.u32()?,
                CTRL_ATTR_OPS => family.ops = parse_ops(attr)?,
                CTRL_ATTR_MCAST_GROUPS => family.mcast_groups = parse_mcast_groups(attr)?,
                _ => {}
            }
        }
        let missing = |reason| Error::Decode { offset: 0, reason };
        family.id = id.ok_or_else(|| missing("family without CTRL_ATTR_FAMILY_ID"))?;
        family.name = name.ok_or_else(|| missing("family without CTRL_ATTR_FAMILY_NAME"))?;
        Ok(family)
    }

    /// Whether the family has command `cmd`.
    pub fn has_op(&self, cmd: u8) -> bool {
        self.ops.iter().any(|op| op.id == u32::from(cmd))
    }

    /// The id of the multicast group called `name`, if the family has one.
    pub fn mcast_group(&self, name: &str) -> Option<u32> {
        self.mcast_groups
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.id)
    }
}

// ANCHOR: mcast_groups
/// `CTRL_ATTR_MCAST_GROUPS`: nested attributes 1..n, each nesting
/// `CTRL_ATTR_MCAST_GRP_NAME` and `CTRL_ATTR_MCAST_GRP_ID`:
///
/// ```text
/// nla_len nla_type=CTRL_ATTR_MCAST_GROUPS|NLA_F_NESTED
///   nla_len nla_type=1|NLA_F_NESTED              the first group
///     nla_len nla_type=CTRL_ATTR_MCAST_GRP_ID    u32, e.g. 26
///     nla_len nla_type=CTRL_ATTR_MCAST_GRP_NAME  "events\0"
///   nla_len nla_type=2|NLA_F_NESTED              the next group ...
/// ```
fn parse_mcast_groups(groups: Attr<'_>) -> Result<Vec<McastGroup>, Error> {
    let mut out = Vec::new();
    for group in groups.nested() {
        let group = group?;
        let (mut name, mut id) = (None, None);
        for field in group.nested() {
            let field = field?;
            match field.ty {
                CTRL_ATTR_MCAST_GRP_NAME => {
                    name = Some(String::from_utf8_lossy(field.nul_string()?).into_owned())
                }
                CTRL_ATTR_MCAST_GRP_ID => id = Some(field.u32()?),
                _ => {}
            }
        }
        let bad = |reason| Error::Decode {
            offset: group.offset,
            reason,
        };
        out.push(McastGroup {
            name: name.ok_or_else(|| bad("multicast group without CTRL_ATTR_MCAST_GRP_NAME"))?,
            id: id.ok_or_else(|| bad("multicast group without CTRL_ATTR_MCAST_GRP_ID"))?,
        });
    }
    Ok(out)
}
// ANCHOR_END: mcast_groups

/// `CTRL_ATTR_OPS`: nested attributes 1..n, each nesting OP_ID and OP_FLAGS.
fn parse_ops(ops: Attr<'_>) -> Result<Vec<Op>, Error> {
    let mut out = Vec::new();
    for op in ops.nested() {
        let (mut id, mut flags) = (None, 0);
        let op = op?;
        for field in op.nested() {
            let field = field?;
            match field.ty {
                CTRL_ATTR_OP_ID => id = Some(field.u32()?),
                CTRL_ATTR_OP_FLAGS => flags = field.u32()?,
                _ => {}
            }
        }
        let id = id.ok_or(Error::Decode {
            offset: op.offset,
            reason: "CTRL_ATTR_OPS entry without CTRL_ATTR_OP_ID",
        })?;
        out.push(Op { id, flags });
    }
    Ok(out)
}

/// Append one generic netlink request to `buf`: `nlmsghdr` (type `family`),
/// `genlmsghdr`, then `attrs`, already encoded (with [`crate::put_attr`] or
/// by hand). `nlmsg_len` covers the attributes' padding, as the kernel's
/// `nlmsg_end()` does.
pub fn encode_genl(
    buf: &mut Vec<u8>,
    family: u16,
    flags: u16,
    seq: u32,
    genl: GenlMsgHdr,
    attrs: &[u8],
) -> Result<(), Error> {
    let mut payload = Vec::with_capacity(GENL_HDRLEN + attrs.len());
    payload.extend_from_slice(&genl.to_bytes());
    payload.extend_from_slice(attrs);
    crate::encode(buf, family, flags, seq, &payload)
}

/// The string of an ECHO reply: command ECHO with a MSG attribute.
pub(crate) fn echo_reply_string(seq: u32, reply: &GenlMsg) -> Result<Vec<u8>, Error> {
    let bad = |reason: String| Error::BadReply { seq, reason };
    if reply.genl.cmd != proto::GENL_CMD_ECHO {
        return Err(bad(format!(
            "generic netlink command {}, expected ECHO ({})",
            reply.genl.cmd,
            proto::GENL_CMD_ECHO
        )));
    }
    match find_attr(&reply.attrs, proto::GENL_ATTR_MSG)? {
        Some(msg) => Ok(msg.nul_string()?.to_vec()),
        None => Err(bad("ECHO reply without a MSG attribute".into())),
    }
}

/// One received datagram of [`Socket::genl_recv`]'s loop: walk its
/// messages and note the reply to request `seq` from `family` and the ack.
/// No socket here, so the parser fuzz tests can feed it any bytes.
pub(crate) fn genl_datagram(
    family: u16,
    seq: u32,
    datagram: &[u8],
    reply: &mut Option<GenlMsg>,
    acked: &mut bool,
) -> Result<(), Error> {
    for msg in messages(datagram) {
        let (hdr, body) = msg?;
        match reply_event(seq, family, &hdr, body)? {
            EchoEvent::Reply(body) => *reply = Some(GenlMsg::parse(hdr, body)?),
            EchoEvent::Ack if reply.is_none() => {
                return Err(Error::BadReply {
                    seq,
                    reason: "acked without a reply".into(),
                })
            }
            EchoEvent::Ack => *acked = true,
            EchoEvent::Ignore => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The echo log: GET (do and dump) and the EVENT notifications
// ---------------------------------------------------------------------------

/// One entry of `kmod-genl`'s echo log, as `GET` and `EVENT` carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `GENL_ATTR_ID` (u32).
    pub id: u32,
    /// `GENL_ATTR_PORTID` (u32): the socket that sent the echo.
    pub portid: u32,
    /// `GENL_ATTR_MSG`, without its NUL.
    pub msg: Vec<u8>,
}

impl Entry {
    /// The entry of a `GET` reply or dump message, or of an `EVENT`
    /// (`cmd`): all three attributes are required.
    pub fn parse(msg: &GenlMsg, cmd: u8) -> Result<Entry, Error> {
        let seq = msg.nlmsg.nlmsg_seq;
        let bad = |reason: String| Error::BadReply { seq, reason };
        if msg.genl.cmd != cmd {
            return Err(bad(format!(
                "generic netlink command {}, expected {cmd}",
                msg.genl.cmd
            )));
        }
        let (mut id, mut portid, mut text) = (None, None, None);
        for attr in msg.attrs() {
            let attr = attr?;
            match attr.ty {
                proto::GENL_ATTR_ID => id = Some(attr.u32()?),
                proto::GENL_ATTR_PORTID => portid = Some(attr.u32()?),
                proto::GENL_ATTR_MSG => text = Some(attr.nul_string()?.to_vec()),
                _ => {}
            }
        }
        let missing = |name: &str| bad(format!("log entry without a {name} attribute"));
        Ok(Entry {
            id: id.ok_or_else(|| missing("ID"))?,
            portid: portid.ok_or_else(|| missing("PORTID"))?,
            msg: text.ok_or_else(|| missing("MSG"))?,
        })
    }
}

/// A dump of the echo log in progress, or done: what
/// [`Socket::genl_dump_recv`] has collected so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    /// The sequence number of the dump request.
    pub seq: u32,
    /// The entries received so far, in order.
    pub entries: Vec<Entry>,
    /// A message carried `NLM_F_DUMP_INTR`: the log changed while the dump
    /// ran, so entries may be missing or repeated. Run it again.
    pub interrupted: bool,
    /// `NLMSG_DONE` arrived: the dump is complete.
    pub done: bool,
}

impl Dump {
    /// A dump of request `seq`, before its first datagram.
    pub fn new(seq: u32) -> Dump {
        Dump {
            seq,
            entries: Vec::new(),
            interrupted: false,
            done: false,
        }
    }
}

// ANCHOR: multipart
/// One datagram of a dump (a multipart answer) of request `seq` to
/// `family`: every message of ours goes to `each`, as a [`GenlMsg`]; the
/// flags of every message go into `dump` (`NLM_F_DUMP_INTR`), and
/// `NLMSG_DONE` ends it (`dump.done`). The `int` after the `NLMSG_DONE`
/// header is the dump's result: a negative errno is [`Error::Kernel`], with
/// the extended ack's message if `NLM_F_ACK_TLVS` says TLVs follow it. No
/// socket here, so the tests can feed it any bytes.
pub fn multipart_datagram(
    family: u16,
    datagram: &[u8],
    dump: &mut Dump,
    mut each: impl FnMut(&GenlMsg) -> Result<(), Error>,
) -> Result<(), Error> {
    for msg in messages(datagram) {
        let (hdr, body) = msg?;
        if hdr.nlmsg_seq != dump.seq {
            continue; // a stale answer to an earlier request
        }
        if dump.done {
            return Err(Error::BadReply {
                seq: dump.seq,
                reason: "a message after NLMSG_DONE".into(),
            });
        }
        dump.interrupted |= hdr.nlmsg_flags & crate::NLM_F_DUMP_INTR != 0;
        match hdr.nlmsg_type {
            crate::NLMSG_DONE => {
                dump.done = true;
                done_result(&hdr, body)?;
            }
            crate::NLMSG_ERROR => match crate::parse_error(&hdr, body)? {
                // An ack: only if asked for, and then after NLMSG_DONE.
                crate::NlMsgErr { error: 0, .. } => {}
                err => {
                    return Err(Error::Kernel {
                        errno: err.error.saturating_neg(),
                        extack: err.extack,
                        missing_attr: err.missing_attr,
                    })
                }
            },
            crate::NLMSG_NOOP => {}
            crate::NLMSG_OVERRUN => return Err(Error::Overrun),
            ty if ty == family => each(&GenlMsg::parse(hdr, body)?)?,
            ty => return Err(Error::Unexpected { ty, seq: dump.seq }),
        }
    }
    Ok(())
}

/// The result of a dump: the `int` that follows the `NLMSG_DONE` header
/// (0, or a negative errno), then, with `NLM_F_ACK_TLVS`, the extended
/// ack's TLVs. An old kernel may send no `int` at all: that is 0.
fn done_result(hdr: &NlMsgHdr, body: &[u8]) -> Result<(), Error> {
    let Some(errno) = crate::ne_u32(body, 0).map(|e| e as i32) else {
        return Ok(());
    };
    if errno == 0 {
        return Ok(());
    }
    let mut extack = None;
    if hdr.nlmsg_flags & crate::NLM_F_ACK_TLVS != 0 {
        for tlv in attrs(&body[4..]) {
            let tlv = tlv?;
            if tlv.ty == crate::NLMSGERR_ATTR_MSG {
                let text = tlv.value.split(|&b| b == 0).next().unwrap_or_default();
                extack = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    Err(Error::Kernel {
        errno: errno.saturating_neg(),
        extack,
        missing_attr: None,
    })
}
// ANCHOR_END: multipart

/// One datagram of an echo-log dump: [`multipart_datagram`], each message
/// a `GET` entry ([`Entry::parse`]).
pub fn dump_datagram(family: u16, datagram: &[u8], dump: &mut Dump) -> Result<(), Error> {
    let mut entries = Vec::new();
    let result = multipart_datagram(family, datagram, dump, |msg| {
        entries.push(Entry::parse(msg, proto::GENL_CMD_GET)?);
        Ok(())
    });
    dump.entries.append(&mut entries);
    result
}

/// The `EVENT`s of `family` in one datagram received on the "events"
/// group; other messages (other families' notifications on a shared
/// socket) are skipped.
pub fn genl_events(family: u16, datagram: &[u8]) -> Result<Vec<Entry>, Error> {
    let mut events = Vec::new();
    for msg in messages(datagram) {
        let (hdr, body) = msg?;
        if hdr.nlmsg_type != family {
            continue;
        }
        let msg = GenlMsg::parse(hdr, body)?;
        if msg.genl.cmd == proto::GENL_CMD_EVENT {
            events.push(Entry::parse(&msg, proto::GENL_CMD_EVENT)?);
        }
    }
    Ok(events)
}

impl Socket {
    /// Open a socket on `NETLINK_GENERIC`, the unit of every generic
    /// netlink family.
    pub fn connect_genl() -> Result<Socket, Error> {
        Socket::connect(libc::NETLINK_GENERIC)
    }

    /// Send one generic netlink request to `family` (an id); returns its
    /// sequence number. `attrs` go as they are: well-formed from
    /// [`crate::put_attr`], or anything a test wants to try.
    /// `NLM_F_REQUEST` is always added to `flags`.
    pub fn genl_send(
        &mut self,
        family: u16,
        flags: u16,
        genl: GenlMsgHdr,
        attrs: &[u8],
    ) -> Result<u32, Error> {
        let mut datagram = Vec::with_capacity(crate::NLMSG_HDRLEN + GENL_HDRLEN + attrs.len());
        let seq = self.next_seq();
        encode_genl(
            &mut datagram,
            family,
            flags | NLM_F_REQUEST,
            seq,
            genl,
            attrs,
        )?;
        self.send_datagram(&datagram)?;
        Ok(seq)
    }

    /// Wait for the reply to request `seq` from `family` and, with `ack`,
    /// the ack after it. An `NLMSG_ERROR` with an error is
    /// [`Error::Kernel`].
    ///
    /// A generic netlink `doit` handler sends its reply before it returns,
    /// and the core acks after that: an ack that comes first means no reply
    /// is coming, which is an [`Error::BadReply`] rather than a timeout.
    pub fn genl_recv(&mut self, family: u16, seq: u32, ack: bool) -> Result<GenlMsg, Error> {
        let (mut reply, mut acked) = (None, false);
        while reply.is_none() || (ack && !acked) {
            let n = recv_from_kernel(&self.fd, &mut self.buf, self.timeout)?;
            genl_datagram(family, seq, &self.buf[..n], &mut reply, &mut acked)?;
        }
        reply.ok_or(Error::BadReply {
            seq,
            reason: "no reply".into(),
        })
    }

    /// [`Socket::genl_send`], then [`Socket::genl_recv`] (waiting for the ack
    /// too if `flags` has `NLM_F_ACK`).
    pub fn genl_request(
        &mut self,
        family: u16,
        flags: u16,
        genl: GenlMsgHdr,
        attrs: &[u8],
    ) -> Result<GenlMsg, Error> {
        let seq = self.genl_send(family, flags, genl, attrs)?;
        self.genl_recv(family, seq, flags & NLM_F_ACK != 0)
    }

    // ANCHOR: resolve
    /// Ask the controller for the family called `name`:
    /// `CTRL_CMD_GETFAMILY` to `GENL_ID_CTRL` with `CTRL_ATTR_FAMILY_NAME`.
    /// The controller's ENOENT becomes [`Error::FamilyNotFound`].
    pub fn resolve_family(&mut self, name: &str) -> Result<Family, Error> {
        let mut attrs = Vec::with_capacity(nla_align(NLA_HDRLEN + name.len() + 1));
        put_nul_string(&mut attrs, CTRL_ATTR_FAMILY_NAME, name.as_bytes())?;
        let request = GenlMsgHdr::new(CTRL_CMD_GETFAMILY, CTRL_VERSION);
        let reply = match self.genl_request(GENL_ID_CTRL, 0, request, &attrs) {
            Err(Error::Kernel {
                errno: libc::ENOENT,
                ..
            }) => {
                return Err(Error::FamilyNotFound {
                    name: name.to_string(),
                })
            }
            reply => reply?,
        };
        let seq = reply.nlmsg.nlmsg_seq;
        if reply.genl.cmd != CTRL_CMD_NEWFAMILY {
            return Err(Error::BadReply {
                seq,
                reason: format!(
                    "controller command {}, expected CTRL_CMD_NEWFAMILY ({CTRL_CMD_NEWFAMILY})",
                    reply.genl.cmd
                ),
            });
        }
        let family = Family::parse(&reply.attrs)?;
        if family.name != name {
            return Err(Error::BadReply {
                seq,
                reason: format!("the controller described family {}", family.name),
            });
        }
        Ok(family)
    }
    // ANCHOR_END: resolve

    /// Echo `msg` through `kmod-genl` (family id `family`): ECHO with MSG,
    /// a NUL-terminated string, so `msg` must not contain a NUL. Returns the
    /// reply's MSG without its NUL.
    pub fn genl_echo(&mut self, family: u16, msg: &[u8]) -> Result<Vec<u8>, Error> {
        self.genl_echo_inner(family, msg, false)
    }

    /// Like [`Socket::genl_echo`], but sets `NLM_F_ACK` and also waits for
    /// the ack that follows the reply.
    pub fn genl_echo_with_ack(&mut self, family: u16, msg: &[u8]) -> Result<Vec<u8>, Error> {
        self.genl_echo_inner(family, msg, true)
    }

    // ANCHOR: echo
    fn genl_echo_inner(&mut self, family: u16, msg: &[u8], ack: bool) -> Result<Vec<u8>, Error> {
        let mut attrs = Vec::with_capacity(nla_align(NLA_HDRLEN + msg.len() + 1));
        put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, msg)?;
        let flags = if ack { NLM_F_ACK } else { 0 };
        let echo = GenlMsgHdr::new(proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION);
        let seq = self.genl_send(family, flags, echo, &attrs)?;
        let reply = self.genl_recv(family, seq, ack)?;
        echo_reply_string(seq, &reply)
    }
    // ANCHOR_END: echo

    // ANCHOR: dump
    /// Start a dump: `cmd` to `family` with `NLM_F_DUMP` (and `attrs`, which
    /// a dump may take as filters). Returns the [`Dump`] to pass to
    /// [`Socket::genl_dump_recv`]. The kernel builds the first datagram
    /// of the answer right away, the next one each time we have read the
    /// previous: a dump never floods the receive queue.
    pub fn genl_dump_start(&mut self, family: u16, cmd: u8, attrs: &[u8]) -> Result<Dump, Error> {
        let request = GenlMsgHdr::new(cmd, proto::GENL_FAMILY_VERSION);
        let seq = self.genl_send(family, crate::NLM_F_DUMP, request, attrs)?;
        Ok(Dump::new(seq))
    }

    /// Receive the next datagram of an echo-log dump into `buf` and add its
    /// entries to `dump`. A buffer too small for the datagram is
    /// [`Error::Truncated`] (`MSG_TRUNC`): the kernel dropped its rest, so
    /// the dump cannot go on; run it again with a larger one.
    pub fn genl_dump_recv(
        &mut self,
        family: u16,
        dump: &mut Dump,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        let n = recv_from_kernel(&self.fd, buf, self.timeout)?;
        dump_datagram(family, &buf[..n], dump)
    }

    /// Dump `kmod-genl`'s echo log: `GET` with `NLM_F_DUMP`, then every
    /// datagram until `NLMSG_DONE`. An interrupted dump
    /// (`NLM_F_DUMP_INTR`) is returned whole, with `interrupted` set.
    pub fn genl_dump(&mut self, family: u16) -> Result<Dump, Error> {
        let mut dump = self.genl_dump_start(family, proto::GENL_CMD_GET, &[])?;
        let mut buf = std::mem::take(&mut self.buf);
        let mut result = Ok(());
        while !dump.done && result.is_ok() {
            result = self.genl_dump_recv(family, &mut dump, &mut buf);
        }
        self.buf = buf;
        result.map(|()| dump)
    }
    // ANCHOR_END: dump

    /// `GET` one entry of the echo log (a `do` request): with `Some(id)`,
    /// the `ID` attribute; `None` sends none, which the family refuses
    /// (EINVAL, missing attribute `ID`). A missing entry is ENOENT with an
    /// extended-ack message.
    pub fn genl_get(&mut self, family: u16, id: Option<u32>) -> Result<Entry, Error> {
        let mut attrs = Vec::new();
        if let Some(id) = id {
            crate::put_attr(&mut attrs, proto::GENL_ATTR_ID, &id.to_ne_bytes())?;
        }
        let get = GenlMsgHdr::new(proto::GENL_CMD_GET, proto::GENL_FAMILY_VERSION);
        let reply = self.genl_request(family, 0, get, &attrs)?;
        Entry::parse(&reply, proto::GENL_CMD_GET)
    }

    /// Receive one datagram of the family's "events" group (joined with
    /// [`Socket::add_membership`] and the id of [`Family::mcast_group`])
    /// and return its `EVENT`s. ENOBUFS (events lost) is
    /// [`Error::Overrun`]; the socket then goes on.
    pub fn recv_genl_events(&mut self, family: u16) -> Result<Vec<Entry>, Error> {
        let n = recv_from_kernel(&self.fd, &mut self.buf, self.timeout)?;
        genl_events(family, &self.buf[..n])
    }
}

#[cfg(test)]
mod tests;
