//! Parser fuzz tests: every function that reads bytes from the kernel gets
//! arbitrary bytes, and well-formed messages with broken lengths, and must
//! answer `Ok` or `Err`: no panic, and nothing returned longer than its input
//! (no allocation sized by a length field).
//!
//! `cargo test -p user-raw parser_fuzz` runs them. Failures are not persisted
//! to `proptest-regressions/`: a failing input is pinned as a plain `#[test]`
//! with its bytes, which reads better than proptest's seed file.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::attr::NLA_F_NESTED;
use crate::genl::{echo_reply_string, genl_datagram, CTRL_ATTR_OPS};

/// Cases per property: enough to reach every branch of these small parsers
/// many times, within a few seconds in a debug build.
const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Generators: well-formed shapes with lengths that lie
// ---------------------------------------------------------------------------

/// A length field: mostly `correct`, else 0..min, just past the end, huge,
/// or anything. `pick` chooses the case, `x` the value within it.
fn lie(correct: usize, min: usize, max: u64, pick: u8, x: u64) -> u64 {
    let correct = correct as u64;
    match pick {
        0..=5 => correct,
        6 => x % min as u64,      // shorter than its own header
        7 => correct + 1 + x % 8, // past the end of the buffer
        8 => max - x % 16,        // huge: 0xffff_fff0 and up
        9 => correct + 1 + x % 3, // unaligned
        _ => x % (max + 1),       // anything
    }
    .min(max)
}

/// The pieces `lie` needs, as a strategy.
fn lie_choice() -> impl Strategy<Value = (u8, u64)> {
    (0u8..11, any::<u64>())
}

/// An attribute value: an integer, a string with or without its NUL (or
/// with one inside), or any bytes.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u16>().prop_map(|v| v.to_ne_bytes().to_vec()),
        any::<u32>().prop_map(|v| v.to_ne_bytes().to_vec()),
        "[a-z_]{0,12}".prop_map(|s| [s.as_bytes(), b"\0"].concat()),
        "[a-z_]{0,12}".prop_map(String::into_bytes), // no NUL
        "[a-z]{1,4}\0[a-z]{0,4}\0?".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..16),
    ]
}

/// One `struct nlattr` with its padding: small types (so that the parsers'
/// own types 1..6 are hit), maybe a lying `nla_len`, maybe nested.
fn attr_run() -> impl Strategy<Value = Vec<u8>> {
    let leaf = (0u16..8, value(), lie_choice()).prop_map(|(ty, v, l)| tlv(ty, &v, l));
    let one = leaf.prop_recursive(3, 48, 4, |inner| {
        (0u16..8, vec(inner, 0..4), lie_choice())
            .prop_map(|(ty, attrs, l)| tlv(ty | NLA_F_NESTED, &attrs.concat(), l))
    });
    vec(one, 0..5).prop_map(|attrs| attrs.concat())
}

fn tlv(ty: u16, value: &[u8], (pick, x): (u8, u64)) -> Vec<u8> {
    let len = lie(NLA_HDRLEN + value.len(), NLA_HDRLEN, 0xffff, pick, x) as u16;
    let mut b = [len.to_ne_bytes(), ty.to_ne_bytes()].concat();
    b.extend_from_slice(value);
    b.resize(nla_align(b.len()), 0);
    b
}

/// A message payload: generic netlink (header + attributes), an
/// `NLMSG_ERROR` body (error, request header with its own lying length,
/// copied request, TLVs), or any bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let genl = (0u8..4, any::<u8>(), attr_run())
        .prop_map(|(cmd, version, attrs)| [vec![cmd, version, 0, 0], attrs].concat());
    let error = (
        prop_oneof![Just(0i32), Just(-libc::EINVAL), any::<i32>()],
        lie_choice(),
        vec(any::<u8>(), 0..12),
        attr_run(),
    )
        .prop_map(|(error, l, copied, tlvs)| {
            let inner = NlMsgHdr {
                nlmsg_len: lie(
                    NLMSG_HDRLEN + copied.len(),
                    NLMSG_HDRLEN,
                    u32::MAX.into(),
                    l.0,
                    l.1,
                ) as u32,
                nlmsg_type: 0x10,
                nlmsg_flags: NLM_F_REQUEST,
                nlmsg_seq: 1,
                nlmsg_pid: 0,
            };
            let mut b = error.to_ne_bytes().to_vec();
            b.extend_from_slice(&inner.to_bytes());
            b.extend_from_slice(&copied);
            b.resize(nlmsg_align(b.len()), 0);
            b.extend_from_slice(&tlvs);
            b
        });
    prop_oneof![genl, error, vec(any::<u8>(), 0..40)]
}

/// Message types worth hitting: the control types, the echo type, the
/// controller's id, a family id, anything.
fn msg_type() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(NLMSG_NOOP),
        Just(NLMSG_ERROR),
        Just(NLMSG_DONE),
        Just(NLMSG_OVERRUN),
        Just(proto::ECHO_MSG_TYPE),
        Just(FAMILY),
        any::<u16>(),
    ]
}

/// The family id and sequence number the receive paths are called with.
const FAMILY: u16 = 0x1a;
const SEQ: u32 = 1;

/// A datagram of 1..4 messages with lying `nlmsg_len`s, then cut short
/// (or not).
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let message = (
        msg_type(),
        prop_oneof![
            Just(0u16),
            Just(NLM_F_ACK_TLVS),
            Just(NLM_F_ACK_TLVS | NLM_F_CAPPED),
            any::<u16>()
        ],
        prop_oneof![Just(SEQ), any::<u32>()],
        payload(),
        lie_choice(),
    )
        .prop_map(|(ty, flags, seq, payload, (pick, x))| {
            let hdr = NlMsgHdr {
                nlmsg_len: lie(
                    NLMSG_HDRLEN + payload.len(),
                    NLMSG_HDRLEN,
                    u32::MAX.into(),
                    pick,
                    x,
                ) as u32,
                nlmsg_type: ty,
                nlmsg_flags: flags,
                nlmsg_seq: seq,
                nlmsg_pid: 0,
            };
            let mut b = hdr.to_bytes().to_vec();
            b.extend_from_slice(&payload);
            b.resize(nlmsg_align(b.len()), 0);
            b
        });
    (vec(message, 1..4), any::<prop::sample::Index>(), 0u8..4).prop_map(|(msgs, cut, how)| {
        let all = msgs.concat();
        match how {
            0 => all[..cut.index(all.len() + 1)].to_vec(), // truncated anywhere
            _ => all,
        }
    })
}

/// Arbitrary bytes, or a structured datagram.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..256), datagram()]
}

// ---------------------------------------------------------------------------
// What every parser is asked
// ---------------------------------------------------------------------------

/// Walk a datagram the way the receive paths do, and parse each message as
/// everything it could be. Checks the bounds of what comes back.
fn parse_everything(buf: &[u8]) {
    let _ = NlMsgHdr::from_bytes(buf);
    for msg in messages(buf) {
        let Ok((hdr, body)) = msg else { continue };
        assert!(body.len() <= buf.len());
        assert_eq!(body.len(), hdr.nlmsg_len as usize - NLMSG_HDRLEN);
        if let Ok(err) = parse_error(&hdr, body) {
            assert!(err.extack.map_or(0, |s| s.len()) <= 3 * body.len()); // lossy UTF-8: up to 3 bytes per byte
        }
        parse_attributes(body);
        if let Ok(genl) = GenlMsg::parse(hdr, body) {
            assert!(genl.attrs.len() <= body.len());
            parse_attributes(&genl.attrs);
            if let Ok(family) = Family::parse(&genl.attrs) {
                assert!(family.name.len() <= 3 * genl.attrs.len());
                assert!(family.ops.len() <= genl.attrs.len() / NLA_HDRLEN);
            }
            if let Ok(msg) = echo_reply_string(SEQ, &genl) {
                assert!(msg.len() <= genl.attrs.len());
            }
        }
    }
}

/// Every attribute accessor on every attribute, nested ones too.
fn parse_attributes(buf: &[u8]) {
    for ty in 0..8 {
        let _ = find_attr(buf, ty);
    }
    let mut count = 0;
    for attr in attrs(buf) {
        let Ok(attr) = attr else { continue };
        count += 1;
        assert!(attr.value.len() <= buf.len());
        let _ = (attr.u16(), attr.u32());
        if let Ok(s) = attr.nul_string() {
            assert!(s.len() < attr.value.len());
        }
        parse_attributes(attr.value); // as if nested: the value is a run
    }
    assert!(count <= buf.len() / NLA_HDRLEN);
}

/// The two receive paths, as the sockets run them on each datagram.
fn receive_paths(buf: &[u8]) {
    for ack in [false, true] {
        let (mut reply, mut acked) = (None, ack);
        if echo_datagram(SEQ, buf, &mut reply, &mut acked).is_ok() {
            assert!(reply.map_or(0, |r| r.len()) <= buf.len());
        }
        let (mut reply, mut acked) = (None, ack);
        if genl_datagram(FAMILY, SEQ, buf, &mut reply, &mut acked).is_ok() {
            assert!(reply.map_or(0, |r| r.attrs.len()) <= buf.len());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parser_fuzz_datagrams(buf in bytes()) {
        parse_everything(&buf);
        receive_paths(&buf);
    }

    #[test]
    fn parser_fuzz_attributes(buf in prop_oneof![vec(any::<u8>(), 0..128), attr_run()]) {
        parse_attributes(&buf);
        let _ = Family::parse(&buf);
        if let Some(Ok(ops)) = attrs(&buf).next() {
            let _ = Family::parse(&tlv(CTRL_ATTR_OPS | NLA_F_NESTED, ops.value, (0, 0)));
        }
    }

    #[test]
    fn parser_fuzz_nlmsgerr(flags in any::<u16>(), body in prop_oneof![vec(any::<u8>(), 0..96), payload()]) {
        let hdr = NlMsgHdr { nlmsg_len: 0, nlmsg_type: NLMSG_ERROR, nlmsg_flags: flags, nlmsg_seq: SEQ, nlmsg_pid: 0 };
        if let Ok(err) = parse_error(&hdr, &body) {
            assert!(err.extack.map_or(0, |s| s.len()) <= 3 * body.len());
        }
    }
}
