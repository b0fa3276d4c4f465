//! The messages, as the rust-netlink crates want them: a type that
//! implements `NetlinkSerializable` and `NetlinkDeserializable` for the raw
//! units ([`RawMsg`]), and a generic netlink family payload
//! ([`EchoGenl`], inside `netlink_packet_generic::GenlMessage`) for
//! `my_genl`; then the parts of an `NLMSG_ERROR` that netlink-packet-core
//! leaves as bytes (the extended ack, [`extack_message`]).

use std::convert::Infallible;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable,
    Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized, NLM_F_ACK_TLVS, NLM_F_CAPPED,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

// ---------------------------------------------------------------------------
// The raw units
// ---------------------------------------------------------------------------

/// A message of a raw unit: its type and its payload bytes. The units
/// answer [`proto::ECHO_MSG_TYPE`] with the same type and payload.
///
/// netlink-proto needs a message type to run a connection; the raw units
/// have no crate of their own, so this is ours: every payload parses (the
/// bytes are the message), and `finalize()` sets `nlmsg_len` to
/// `16 + payload`, unpadded, as the kernel's `nlmsg_put()` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMsg {
    pub ty: u16,
    pub payload: Vec<u8>,
}

impl NetlinkSerializable for RawMsg {
    fn message_type(&self) -> u16 {
        self.ty
    }
    fn buffer_len(&self) -> usize {
        self.payload.len()
    }
    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..self.payload.len()].copy_from_slice(&self.payload);
    }
}

impl NetlinkDeserializable for RawMsg {
    type Error = Infallible;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<RawMsg, Infallible> {
        Ok(RawMsg {
            ty: header.message_type,
            payload: payload.to_vec(),
        })
    }
}

// ---------------------------------------------------------------------------
// Generic netlink: the my_genl family
// ---------------------------------------------------------------------------

/// The payload of a `my_genl` message after its `struct genlmsghdr`: the
/// command, and the attributes. In a `GenlMessage<EchoGenl>`, which
/// netlink-packet-generic serialises (family id as `nlmsg_type`, then
/// `cmd` and `version`) and parses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoGenl {
    pub cmd: u8,
    pub attrs: Vec<EchoAttr>,
}

/// The attributes of `my_genl` (`EXMPL_A_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EchoAttr {
    /// `MSG`, an `NLA_NUL_STRING`: sent with its NUL, read up to it.
    Msg(Vec<u8>),
    /// `ID`, a u32: the id of an echo log entry.
    Id(u32),
    /// `PORTID`, a u32: the port id of the socket that sent the echo.
    Portid(u32),
    /// Any other attribute, kept as it came.
    Other(DefaultNla),
}

impl Nla for EchoAttr {
    fn value_len(&self) -> usize {
        match self {
            EchoAttr::Msg(msg) => msg.len() + 1,
            EchoAttr::Id(_) | EchoAttr::Portid(_) => 4,
            EchoAttr::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            EchoAttr::Msg(_) => proto::GENL_ATTR_MSG,
            EchoAttr::Id(_) => proto::GENL_ATTR_ID,
            EchoAttr::Portid(_) => proto::GENL_ATTR_PORTID,
            EchoAttr::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            EchoAttr::Msg(msg) => {
                buffer[..msg.len()].copy_from_slice(msg);
                buffer[msg.len()] = 0;
            }
            EchoAttr::Id(v) | EchoAttr::Portid(v) => buffer[..4].copy_from_slice(&v.to_ne_bytes()),
            EchoAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for EchoAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<EchoAttr, DecodeError> {
        let value = buf.value();
        let u32_of = |what: &str| -> Result<u32, DecodeError> {
            let bytes: [u8; 4] = value.try_into().map_err(|_| {
                DecodeError::from(format!("{what} of {} bytes, not 4", value.len()))
            })?;
            Ok(u32::from_ne_bytes(bytes))
        };
        Ok(match buf.kind() {
            proto::GENL_ATTR_MSG => {
                let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                EchoAttr::Msg(value[..end].to_vec())
            }
            proto::GENL_ATTR_ID => EchoAttr::Id(u32_of("ID")?),
            proto::GENL_ATTR_PORTID => EchoAttr::Portid(u32_of("PORTID")?),
            _ => EchoAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl GenlFamily for EchoGenl {
    /// The name genetlink's resolver would look up for this type; the
    /// clients resolve by name instead (`my_genl`, or the C twin's
    /// `c_genl`) and set the id on each message.
    fn family_name() -> &'static str {
        proto::GENL_FAMILY_NAME
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        proto::GENL_FAMILY_VERSION
    }
}

impl Emitable for EchoGenl {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for EchoGenl {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<EchoGenl, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| EchoAttr::parse(&nla?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EchoGenl {
            cmd: header.cmd,
            attrs,
        })
    }
}

impl EchoGenl {
    /// The `MSG` attribute, without its NUL.
    pub fn msg(&self) -> Option<&[u8]> {
        self.attrs.iter().find_map(|a| match a {
            EchoAttr::Msg(m) => Some(m.as_slice()),
            _ => None,
        })
    }
    pub fn id(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            EchoAttr::Id(v) => Some(*v),
            _ => None,
        })
    }
    pub fn portid(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            EchoAttr::Portid(v) => Some(*v),
            _ => None,
        })
    }
}

// ---------------------------------------------------------------------------
// NLMSG_ERROR and NLMSG_DONE: the extended ack
// ---------------------------------------------------------------------------

/// `NLMSGERR_ATTR_MSG`: the extended ack's text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The text of an `NLMSG_ERROR`'s extended ack (`NLMSGERR_ATTR_MSG`), if
/// it has one. netlink-packet-core keeps everything after the error code
/// as bytes (`ErrorMessage::header`): the request the kernel copied back
/// (its header only with `NLM_F_CAPPED`, which the clients' sockets ask
/// for with `NETLINK_CAP_ACK`), then with `NLM_F_ACK_TLVS` the
/// attributes. `flags` are the error message's `nlmsg_flags`.
pub fn extack_message(flags: u16, after_code: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let copied = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let len = after_code.get(..4)?;
        let len = u32::from_ne_bytes(len.try_into().ok()?) as usize;
        len.checked_next_multiple_of(4)?
    };
    tlv_message(after_code.get(copied..)?)
}

/// `NLMSGERR_ATTR_MSG` among the attributes `tlvs` (an `NLMSG_ERROR`'s
/// after the copied request, or an `NLMSG_DONE`'s after its code).
pub fn tlv_message(tlvs: &[u8]) -> Option<String> {
    NlasIterator::new(tlvs)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let v = nla.value();
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
}
