//! The wire format: constants, `struct nlmsghdr`, messages being built
//! ([`NlMsg`], libnl's `struct nl_msg`), received messages ([`NlMsgRef`]) and
//! `NLMSG_ERROR` with its extended ack ([`NlMsgErr`]). Netlink uses host byte
//! order throughout.

use std::time::Duration;

use crate::attr::{nla_parse, Attrs, NlaPolicy};
use crate::Error;

// ---------------------------------------------------------------------------
// Wire constants (<linux/netlink.h>, <linux/genetlink.h>), host byte order
// ---------------------------------------------------------------------------

/// `NLMSG_HDRLEN`: `struct nlmsghdr` is 16 bytes.
pub const NLMSG_HDRLEN: usize = 16;
/// `NLA_HDRLEN`: `struct nlattr { u16 nla_len; u16 nla_type; }`.
pub const NLA_HDRLEN: usize = 4;
/// `GENL_HDRLEN`: `struct genlmsghdr { u8 cmd; u8 version; u16 reserved; }`.
pub const GENL_HDRLEN: usize = 4;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02; // part of a dump: NLMSG_DONE ends it
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_DUMP_INTR: u16 = 0x10; // the dumped data changed during the dump
pub const NLM_F_DUMP: u16 = 0x300; // NLM_F_ROOT | NLM_F_MATCH
pub const NLM_F_CAPPED: u16 = 0x100; // NLMSG_ERROR: request payload left out
pub const NLM_F_ACK_TLVS: u16 = 0x200; // NLMSG_ERROR: extended ack TLVs follow

/// `nla_type` without its flag bits (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// Extended ack attributes of `NLMSG_ERROR` (`enum nlmsgerr_attrs`).
pub const NLMSGERR_ATTR_MSG: u16 = 1;
pub const NLMSGERR_ATTR_MISS_TYPE: u16 = 5;

/// The generic netlink controller, `nlctrl`: its fixed family id, the command
/// that looks a family up, and the attributes we use.
pub const GENL_ID_CTRL: u16 = 0x10;
pub const CTRL_CMD_GETFAMILY: u8 = 3;
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// The family's multicast groups: nested, one nest per group (types 1, 2,
/// ... are indexes) with the group's name and id.
pub const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
pub const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
pub const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
/// `GENL_NAMSIZ`: family names are at most 15 characters plus the NUL.
pub const GENL_NAMSIZ: usize = 16;

/// `NLMSG_ALIGN` / `NLA_ALIGN`: round up to a multiple of 4. `len` is always
/// a buffer length here, far below `usize::MAX`.
pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Receive buffer: the largest reply is an echo of [`proto::MAX_PAYLOAD`]
/// bytes (as a raw payload or as a genl `MSG` attribute) plus headers; 8 KiB
/// more leaves room for errors and extack TLVs. The socket uses the page size
/// instead if that is larger.
pub const RECV_BUF_LEN: usize = align4(proto::MAX_PAYLOAD) + 8192;

/// Default receive timeout (`SO_RCVTIMEO`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `struct nlmsghdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NlMsgHdr {
    /// Length of the message including this header.
    pub nlmsg_len: u32,
    pub nlmsg_type: u16,
    pub nlmsg_flags: u16,
    pub nlmsg_seq: u32,
    pub nlmsg_pid: u32,
}

impl NlMsgHdr {
    pub fn to_bytes(&self) -> [u8; NLMSG_HDRLEN] {
        let mut b = [0; NLMSG_HDRLEN];
        b[0..4].copy_from_slice(&self.nlmsg_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.nlmsg_type.to_ne_bytes());
        b[6..8].copy_from_slice(&self.nlmsg_flags.to_ne_bytes());
        b[8..12].copy_from_slice(&self.nlmsg_seq.to_ne_bytes());
        b[12..16].copy_from_slice(&self.nlmsg_pid.to_ne_bytes());
        b
    }

    /// The header at the start of `b`, or `None` if `b` is too short.
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

// ---------------------------------------------------------------------------
// Building messages: struct nl_msg
// ---------------------------------------------------------------------------

/// A message being built (libnl's `struct nl_msg`): a header, then the payload.
/// The port id, sequence number and `nlmsg_len` are filled in when it is sent
/// ([`NlSock::send_auto`](crate::NlSock::send_auto)), as `NL_AUTO_PORT` / `NL_AUTO_SEQ` ask in libnl.
#[derive(Debug, Clone)]
pub struct NlMsg {
    hdr: NlMsgHdr,
    /// The whole message: room for the header, then the payload.
    buf: Vec<u8>,
}

impl NlMsg {
    /// `nlmsg_alloc_simple(type, flags)`: a message with an empty payload.
    pub fn alloc_simple(ty: u16, flags: u16) -> NlMsg {
        let hdr = NlMsgHdr {
            nlmsg_type: ty,
            nlmsg_flags: flags,
            ..NlMsgHdr::default()
        };
        NlMsg {
            hdr,
            buf: vec![0; NLMSG_HDRLEN],
        }
    }

    /// `nlmsg_alloc()` + `genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family,
    /// 0, flags, cmd, version)`: a generic netlink message, whose
    /// `nlmsg_type` is the family id, starting with `struct genlmsghdr`.
    pub fn genlmsg_put(family: u16, flags: u16, cmd: u8, version: u8) -> NlMsg {
        let mut msg = NlMsg::alloc_simple(family, flags);
        msg.buf.extend_from_slice(&[cmd, version, 0, 0]);
        msg
    }

    /// `nlmsg_append(msg, data, len, 0)`: append raw payload bytes. Unlike
    /// `nl_send_simple()`, which appends with `NLMSG_ALIGNTO` padding counted
    /// in `nlmsg_len`, nothing is padded: a raw module echoing the payload
    /// sends back exactly these bytes (13 for "hello netlink", not 16).
    pub fn append(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }

    /// `nla_put(msg, type, len, data)`: append one attribute, padded to 4.
    pub fn nla_put(&mut self, ty: u16, value: &[u8]) -> Result<&mut Self, Error> {
        self.nla_put_parts(ty, &[value])
    }

    pub fn nla_put_u8(&mut self, ty: u16, v: u8) -> Result<&mut Self, Error> {
        self.nla_put(ty, &[v])
    }

    pub fn nla_put_u16(&mut self, ty: u16, v: u16) -> Result<&mut Self, Error> {
        self.nla_put(ty, &v.to_ne_bytes())
    }

    pub fn nla_put_u32(&mut self, ty: u16, v: u32) -> Result<&mut Self, Error> {
        self.nla_put(ty, &v.to_ne_bytes())
    }

    /// `nla_put_flag()`: an attribute with no value; its presence is the flag.
    pub fn nla_put_flag(&mut self, ty: u16) -> Result<&mut Self, Error> {
        self.nla_put(ty, &[])
    }

    /// `nla_put_string()`: the string and its terminating NUL (an
    /// `NLA_NUL_STRING` for the kernel). A string with a NUL inside is an
    /// error (libnl would silently cut it at the first NUL).
    pub fn nla_put_string(&mut self, ty: u16, s: &str) -> Result<&mut Self, Error> {
        if s.contains('\0') {
            return Err(Error::Attr {
                ty,
                reason: "string contains a NUL byte",
            });
        }
        self.nla_put_parts(ty, &[s.as_bytes(), b"\0"])
    }

    fn nla_put_parts(&mut self, ty: u16, parts: &[&[u8]]) -> Result<&mut Self, Error> {
        let len = parts
            .iter()
            .fold(NLA_HDRLEN, |sum, p| sum.saturating_add(p.len()));
        let too_large = Error::TooLarge {
            what: "attribute",
            len,
        };
        let nla_len = u16::try_from(len).map_err(|_| too_large)?;
        self.buf.resize(align4(self.buf.len()), 0); // after an unpadded append
        self.buf.extend_from_slice(&nla_len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.buf.resize(align4(self.buf.len()), 0);
        Ok(self)
    }

    /// `nlmsg_hdr()`: the header as it was (or will be) sent.
    pub fn nlmsg_hdr(&self) -> &NlMsgHdr {
        &self.hdr
    }

    /// `nl_complete_msg()`: fill in the header; returns the datagram.
    /// `nlmsg_len` is the exact length, never padded past the payload.
    pub fn complete(&mut self, portid: u32, seq: u32, flags: u16) -> Result<&[u8], Error> {
        let len = self.buf.len();
        self.hdr.nlmsg_len = u32::try_from(len).map_err(|_| Error::TooLarge {
            what: "message",
            len,
        })?;
        self.hdr.nlmsg_pid = portid;
        self.hdr.nlmsg_seq = seq;
        self.hdr.nlmsg_flags |= flags;
        // `buf` starts with NLMSG_HDRLEN bytes reserved at construction.
        self.buf[..NLMSG_HDRLEN].copy_from_slice(&self.hdr.to_bytes());
        Ok(&self.buf)
    }
}

// ---------------------------------------------------------------------------
// Received messages
// ---------------------------------------------------------------------------

/// A received message, borrowed from the receive buffer: what libnl's
/// callbacks get as `struct nl_msg *`.
#[derive(Debug, Clone, Copy)]
pub struct NlMsgRef<'a> {
    pub hdr: NlMsgHdr,
    data: &'a [u8],
}

/// `struct genlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenlMsgHdr {
    pub cmd: u8,
    pub version: u8,
}

impl<'a> NlMsgRef<'a> {
    /// `nlmsg_data()`: the payload, `nlmsg_len - 16` bytes.
    pub fn nlmsg_data(&self) -> &'a [u8] {
        self.data
    }

    /// `genlmsg_hdr()`: the generic netlink header after the netlink header.
    pub fn genlmsg_hdr(&self) -> Result<GenlMsgHdr, Error> {
        match self.data {
            [cmd, version, _, _, ..] => Ok(GenlMsgHdr {
                cmd: *cmd,
                version: *version,
            }),
            _ => Err(Error::decode("message shorter than a genl header")),
        }
    }

    /// `genlmsg_attrdata(gnlh, 0)`: the attributes after the genl header.
    pub fn genlmsg_attrdata(&self) -> Result<&'a [u8], Error> {
        self.genlmsg_hdr()?;
        Ok(&self.data[GENL_HDRLEN..])
    }

    /// `genlmsg_parse(nlh, 0, tb, maxtype, policy)`.
    pub fn genlmsg_parse(
        &self,
        maxtype: u16,
        policy: &[(u16, NlaPolicy)],
    ) -> Result<Attrs<'a>, Error> {
        nla_parse(self.genlmsg_attrdata()?, maxtype, policy)
    }
}

/// The messages of one datagram, like `nlmsg_ok()`/`nlmsg_next()` with every
/// length checked: a bad `nlmsg_len` or trailing garbage yields one error and
/// ends the walk.
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = Result<NlMsgRef<'_>, Error>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some(hdr) = NlMsgHdr::from_bytes(rest) else {
            rest = &[];
            return Some(Err(Error::decode("trailing bytes shorter than a header")));
        };
        let len = hdr.nlmsg_len as usize;
        let Some(data) = rest.get(NLMSG_HDRLEN..len) else {
            rest = &[];
            return Some(Err(Error::decode(
                "nlmsg_len below 16 or past the datagram",
            )));
        };
        // The next message starts at NLMSG_ALIGN(nlmsg_len); the padding
        // after the last one may be missing.
        rest = &rest[align4(len).min(rest.len())..];
        Some(Ok(NlMsgRef { hdr, data }))
    })
}

/// An `NLMSG_ERROR`: `struct nlmsgerr` and its extended ack attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlMsgErr {
    /// 0 for an ack, otherwise a negative errno.
    pub error: i32,
    /// The header of the request it answers.
    pub request: NlMsgHdr,
    /// `NLMSGERR_ATTR_MSG`.
    pub extack: Option<String>,
    /// `NLMSGERR_ATTR_MISS_TYPE`: the attribute the request lacked.
    pub missing_attr: Option<u32>,
}

/// What we read among the extended ack attributes.
const EXTACK_POLICY: &[(u16, NlaPolicy)] = &[
    (NLMSGERR_ATTR_MSG, NlaPolicy::NulString { max_len: 0 }),
    (NLMSGERR_ATTR_MISS_TYPE, NlaPolicy::U32),
];

impl NlMsgErr {
    /// Parse `int error; struct nlmsghdr msg;`, then the rest of the request
    /// unless `NLM_F_CAPPED`, then, with `NLM_F_ACK_TLVS`, the TLVs.
    pub fn parse(msg: &NlMsgRef<'_>) -> Result<NlMsgErr, Error> {
        let short = || Error::decode("NLMSG_ERROR shorter than struct nlmsgerr");
        let error = ne_u32(msg.data, 0).ok_or_else(short)? as i32; // a C int
        let request = NlMsgHdr::from_bytes(&msg.data[4..]).ok_or_else(short)?;
        let mut err = NlMsgErr {
            error,
            request,
            extack: None,
            missing_attr: None,
        };
        if msg.hdr.nlmsg_flags & NLM_F_ACK_TLVS != 0 {
            let copied = match msg.hdr.nlmsg_flags & NLM_F_CAPPED {
                0 => (request.nlmsg_len as usize).saturating_sub(NLMSG_HDRLEN),
                _ => 0,
            };
            let tlvs = align4(4 + NLMSG_HDRLEN + copied); // 4 + 16 + copied request
            let tlvs = msg
                .data
                .get(tlvs..)
                .ok_or_else(|| Error::decode("NLMSG_ERROR shorter than the request it copies"))?;
            let tb = nla_parse(tlvs, NLMSGERR_ATTR_MISS_TYPE, EXTACK_POLICY)?;
            if let Some(text) = tb.get(NLMSGERR_ATTR_MSG) {
                err.extack = Some(String::from_utf8_lossy(text.c_str()).into_owned());
            }
            if let Some(ty) = tb.get(NLMSGERR_ATTR_MISS_TYPE) {
                err.missing_attr = Some(ty.nla_get_u32()?);
            }
        }
        Ok(err)
    }

    /// The `int` that follows an `NLMSG_DONE` header, the dump's result (0
    /// or a negative errno), then, with `NLM_F_ACK_TLVS`, the extended
    /// ack. `request` is left empty: a DONE does not copy the request. An
    /// old kernel may send a DONE without the `int`: that is 0.
    pub fn parse_done(msg: &NlMsgRef<'_>) -> Result<NlMsgErr, Error> {
        let mut err = NlMsgErr {
            error: ne_u32(msg.data, 0).map_or(0, |e| e as i32),
            request: NlMsgHdr::default(),
            extack: None,
            missing_attr: None,
        };
        if err.error != 0 && msg.hdr.nlmsg_flags & NLM_F_ACK_TLVS != 0 {
            let tb = nla_parse(&msg.data[4..], NLMSGERR_ATTR_MISS_TYPE, EXTACK_POLICY)?;
            if let Some(text) = tb.get(NLMSGERR_ATTR_MSG) {
                err.extack = Some(String::from_utf8_lossy(text.c_str()).into_owned());
            }
            if let Some(ty) = tb.get(NLMSGERR_ATTR_MISS_TYPE) {
                err.missing_attr = Some(ty.nla_get_u32()?);
            }
        }
        Ok(err)
    }

    /// As an [`Error::Kernel`], errno made positive.
    pub fn to_error(&self) -> Error {
        Error::Kernel {
            errno: self.error.saturating_neg(),
            extack: self.extack.clone(),
            missing_attr: self.missing_attr,
        }
    }
}
