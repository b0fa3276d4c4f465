//! [`Codec`]: netlink-proto's `NetlinkCodec` with two fixes, and
//! [`diagnose`], which says what was wrong with the bytes it could not
//! parse.

use std::fmt::Debug;
use std::io;

use bytes::BytesMut;
use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_proto::{NetlinkCodec, NetlinkMessageCodec};

/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;

/// The codec of every connection of this crate.
///
/// netlink-proto 0.14.1's `NetlinkCodec::decode` differs from the kernel's
/// `nlmsg_next()` in two ways, and this codec, which the connection takes
/// as a type parameter (`netlink_proto::from_socket_with_codec`), fixes
/// both:
///
/// 1. It splits a datagram at `nlmsg_len`, not at `NLMSG_ALIGN(nlmsg_len)`:
///    after a message whose length is not a multiple of 4 (a raw echo of 5
///    bytes is 21), the next message of the same datagram is read 3 bytes
///    early. The raw units put several replies in one datagram when loaded
///    with `coalesce=1`. This codec steps over the padding.
/// 2. A message it cannot parse (a length that does not frame, an
///    `NLMSG_ERROR` shorter than its code, a payload our type refuses) is
///    logged and dropped, or drops the rest of its datagram, and the
///    request it answered waits for ever. This codec hands it on instead,
///    with the header it could read, so that netlink-proto routes it by its
///    sequence number to the request that waits for it, which reports it
///    ([`crate::Error::Malformed`], with [`diagnose`]'s text).
///
/// The codec trait is generic over the message type (`decode<T>`), so it
/// cannot build a `T` of its own to carry the bytes: they travel as the one
/// payload of netlink-packet-core that holds any bytes,
/// `NetlinkPayload::Overrun(bytes)`. The kernel never sends
/// `NLMSG_OVERRUN`, and netlink-proto's own overrun (ENOBUFS) has no bytes
/// and sequence number 0; the clients tell the two apart by that.
pub struct Codec;

impl NetlinkMessageCodec for Codec {
    fn decode<T>(src: &mut BytesMut) -> io::Result<Option<NetlinkMessage<T>>>
    where
        T: NetlinkDeserializable + Debug,
    {
        if src.is_empty() {
            return Ok(None);
        }
        let claimed = match src.get(..4) {
            Some(len) => u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize,
            None => 0,
        };
        if (NLMSG_HDRLEN..=src.len()).contains(&claimed) {
            let take = claimed.next_multiple_of(4).min(src.len());
            let bytes = src.split_to(take);
            let message = &bytes[..claimed];
            return Ok(Some(
                NetlinkMessage::deserialize(message).unwrap_or_else(|_| undecodable(message)),
            ));
        }
        // A length that does not frame: the rest of the datagram, as one.
        let rest = src.split();
        Ok(Some(undecodable(&rest)))
    }

    fn encode<T>(msg: NetlinkMessage<T>, buf: &mut BytesMut) -> io::Result<()>
    where
        T: NetlinkSerializable + Debug,
    {
        NetlinkCodec::encode(msg, buf)
    }
}

/// `bytes` as `NetlinkPayload::Overrun(bytes)`, with the header fields
/// that could be read (all zero if fewer than 16 bytes came).
fn undecodable<T>(bytes: &[u8]) -> NetlinkMessage<T> {
    let mut header = NetlinkHeader::default();
    if let Some(h) = bytes.get(..NLMSG_HDRLEN) {
        let u32_at = |at: usize| u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        header.length = u32_at(0);
        header.message_type = u16::from_ne_bytes([h[4], h[5]]);
        header.flags = u16::from_ne_bytes([h[6], h[7]]);
        header.sequence_number = u32_at(8);
        header.port_number = u32_at(12);
    }
    NetlinkMessage::new(header, NetlinkPayload::Overrun(bytes.to_vec()))
}

/// What is wrong with `bytes`, a message that [`Codec`] could not parse as
/// a `NetlinkMessage<T>`.
pub fn diagnose<T>(bytes: &[u8]) -> String
where
    T: NetlinkDeserializable + Debug,
{
    let Some(len) = bytes.get(..4) else {
        return format!(
            "a message of {} bytes, shorter than a netlink header",
            bytes.len()
        );
    };
    let claimed = u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if claimed < NLMSG_HDRLEN {
        return format!("nlmsg_len {claimed} is shorter than the 16-byte header");
    }
    if claimed > bytes.len() {
        return format!(
            "truncated message: nlmsg_len {claimed}, but the datagram holds {} bytes of it",
            bytes.len()
        );
    }
    match NetlinkMessage::<T>::deserialize(&bytes[..claimed]) {
        Ok(_) => "a message that parses now (it did not before)".into(),
        Err(e) => {
            let ty = u16::from_ne_bytes([bytes[4], bytes[5]]);
            format!("message of type {ty} and {claimed} bytes: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::RawMsg;

    /// A raw echo reply of `payload`, with nlmsg_len unpadded, then the
    /// padding up to 4 bytes, as the kernel lays out a datagram.
    fn reply(seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut m = Vec::new();
        m.extend((len as u32).to_ne_bytes());
        m.extend(proto::ECHO_MSG_TYPE.to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend(seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(payload);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    fn all<C: NetlinkMessageCodec>(datagram: &[u8]) -> Vec<NetlinkMessage<RawMsg>> {
        let mut src = BytesMut::from(datagram);
        let mut out = Vec::new();
        while let Ok(Some(m)) = C::decode::<RawMsg>(&mut src) {
            out.push(m);
        }
        out
    }

    fn payloads(messages: &[NetlinkMessage<RawMsg>]) -> Vec<Result<Vec<u8>, String>> {
        messages
            .iter()
            .map(|m| match &m.payload {
                NetlinkPayload::InnerMessage(r) => Ok(r.payload.clone()),
                NetlinkPayload::Overrun(b) => Err(diagnose::<RawMsg>(b)),
                other => Err(format!("{other:?}")),
            })
            .collect()
    }

    /// Crate limit 1, measured: netlink-proto's own codec reads the second
    /// of two coalesced replies 3 bytes early; ours reads both.
    #[test]
    fn coalesced_replies_of_unaligned_length() {
        let datagram = [reply(1, b"hello"), reply(2, b"world")].concat();
        let ours = all::<Codec>(&datagram);
        assert_eq!(
            payloads(&ours),
            [Ok(b"hello".to_vec()), Ok(b"world".to_vec())]
        );
        assert_eq!(ours[1].header.sequence_number, 2);
        let theirs = all::<NetlinkCodec>(&datagram);
        // The second message starts inside the first one's padding: its
        // nlmsg_len is read from bytes 21..25, 0x15000000 and more, which
        // does not frame, and the rest of the datagram is dropped.
        assert_eq!(theirs.len(), 1, "{theirs:?}");
    }

    /// Crate limit 2: a truncated reply reaches its request (by its seq).
    #[test]
    fn a_truncated_reply_keeps_its_sequence_number() {
        let mut datagram = reply(7, b"hello world");
        datagram.truncate(20);
        let ours = all::<Codec>(&datagram);
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].header.sequence_number, 7);
        assert_eq!(
            payloads(&ours),
            [Err(
                "truncated message: nlmsg_len 27, but the datagram holds 20 bytes of it".into()
            )]
        );
        assert!(all::<NetlinkCodec>(&datagram).is_empty(), "dropped");
        assert_eq!(
            payloads(&all::<Codec>(&[1, 2, 3])),
            [Err(
                "a message of 3 bytes, shorter than a netlink header".into()
            )]
        );
    }
}
