//! Parser fuzz tests for what the async client parses: every datagram goes
//! through [`Codec::decode`] (netlink-packet-core's `NetlinkMessage`
//! parser, with [`RawMsg`] or `GenlMessage<EchoGenl>` as the payload),
//! then through what the client does with each message: [`diagnose`] of
//! the bytes the codec could not parse, the extended ack
//! ([`extack_message`]), a dump's items ([`dump_item`]) and the entries of
//! `GET` and `EVENT`. Each must answer `Ok` or `Err`: no panic, and
//! nothing parsed longer than its input. The generators are the shared
//! ones (`rosetta-fuzzgen`), as for the three other clients.
//!
//! `cargo test -p user-async parser_fuzz` runs them.

use bytes::BytesMut;
use netlink_proto::NetlinkMessageCodec;
use proptest::prelude::*;
use rosetta_fuzzgen::{
    attrs_or_noise, config, datagram_or_noise, dump_or_noise, payload_or_noise, Favoured,
};

use super::*;

/// The family id and sequence number the receive paths see.
const FAMILY: u16 = 0x1a;
const SEQ: u32 = 1;

const FAVOURED: Favoured = Favoured {
    types: &[FAMILY],
    flags: &[],
    seq: SEQ,
};

/// Every message [`Codec`] reads from `datagram` as a `NetlinkMessage<P>`;
/// it must consume the datagram and never return more bytes than it holds.
fn decode_all<P>(datagram: &[u8]) -> Vec<NetlinkMessage<P>>
where
    P: NetlinkDeserializable + Debug,
{
    let mut src = BytesMut::from(datagram);
    let mut out = Vec::new();
    loop {
        let before = src.len();
        match Codec::decode::<P>(&mut src) {
            Ok(Some(m)) => {
                assert!(src.len() < before, "the codec consumed nothing");
                if let NetlinkPayload::Overrun(bytes) = &m.payload {
                    assert!(bytes.len() <= datagram.len());
                    assert!(!diagnose::<P>(bytes).is_empty());
                }
                out.push(m);
            }
            Ok(None) => break,
            Err(e) => panic!("the codec failed: {e}"),
        }
    }
    assert!(src.is_empty());
    out
}

/// Everything the client does with a message of a datagram.
fn as_our_client(datagram: &[u8]) {
    for m in decode_all::<RawMsg>(datagram) {
        if let NetlinkPayload::InnerMessage(raw) = &m.payload {
            assert!(raw.payload.len() <= datagram.len());
        }
        if let NetlinkPayload::Error(e) = &m.payload {
            if let Some(text) = extack_message(m.header.flags, &e.header) {
                assert!(text.len() <= datagram.len());
            }
        }
    }
    for m in decode_all::<GenlMsg>(datagram) {
        if let NetlinkPayload::InnerMessage(g) = &m.payload {
            assert!(g.payload.msg().map_or(0, <[u8]>::len) <= datagram.len());
            for cmd in [proto::GENL_CMD_GET, proto::GENL_CMD_EVENT] {
                let _ = entry_of(g, cmd);
            }
        }
        let _ = dump_item(m);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parser_fuzz_datagrams(buf in datagram_or_noise(FAVOURED)) {
        as_our_client(&buf);
    }

    #[test]
    fn parser_fuzz_dumps(buf in dump_or_noise(FAVOURED)) {
        as_our_client(&buf);
    }

    #[test]
    fn parser_fuzz_nlmsgerr(buf in payload_or_noise(), flags in any::<u16>()) {
        if let Some(text) = extack_message(flags, &buf) {
            prop_assert!(text.len() <= buf.len());
        }
    }

    #[test]
    fn parser_fuzz_attributes(buf in attrs_or_noise(), cmd in any::<u8>()) {
        let header = GenlHeader { cmd, version: 1 };
        if let Ok(p) = <EchoGenl as netlink_packet_core::ParseableParametrized<[u8], GenlHeader>>::parse_with_param(&buf, header) {
            prop_assert!(p.msg().map_or(0, <[u8]>::len) <= buf.len());
        }
        let _ = msg::tlv_message(&buf);
    }
}
