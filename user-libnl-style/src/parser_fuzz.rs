//! Parser fuzz tests: every function that reads bytes from the kernel
//! (`messages`, `NlMsgErr::parse`, `nla_parse` with each policy type, the
//! `nla_get_*` getters, the genl accessors, and `recvmsgs`' handling of a
//! datagram) gets arbitrary bytes, and well-formed messages with broken
//! lengths, and must answer `Ok` or `Err`: no panic, and nothing returned
//! longer than its input (no allocation sized by a length field).
//!
//! `cargo test -p user-libnl-style parser_fuzz` runs them. Failures are not
//! persisted to `proptest-regressions/`: a failing input is pinned as a
//! plain `#[test]` with its bytes, which reads better than proptest's seed
//! file.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

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

/// `NLA_F_NESTED`: the value is a run of attributes.
const NLA_F_NESTED: u16 = 0x8000;

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
    b.resize(align4(b.len()), 0);
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
            b.resize(align4(b.len()), 0);
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
        Just(GENL_ID_CTRL),
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
            b.resize(align4(b.len()), 0);
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

/// Every policy type, for every attribute type the generators produce.
const POLICIES: [NlaPolicy; 8] = [
    NlaPolicy::Unspec,
    NlaPolicy::U8,
    NlaPolicy::U16,
    NlaPolicy::U32,
    NlaPolicy::String { max_len: 4 },
    NlaPolicy::NulString { max_len: 4 },
    NlaPolicy::Flag,
    NlaPolicy::Nested,
];

/// `nla_parse` with each policy (and none) on `buf`, then every getter on
/// what it found, and `nla_parse_nested` on each attribute.
fn parse_attributes(buf: &[u8], depth: u32) {
    for maxtype in [0, 3, 7] {
        let _ = nla_parse(buf, maxtype, &[]);
    }
    for pol in POLICIES {
        let policy: Vec<(u16, NlaPolicy)> = (0..8).map(|ty| (ty, pol)).collect();
        let Ok(tb) = nla_parse(buf, 7, &policy) else {
            continue;
        };
        for ty in 0..9 {
            let _ = tb.require(ty);
            let Some(attr) = tb.get(ty) else { continue };
            assert!(attr.nla_data().len() <= buf.len());
            let _ = (attr.nla_get_u8(), attr.nla_get_u16(), attr.nla_get_u32());
            if let Ok(s) = attr.nla_get_string() {
                assert!(s.len() <= attr.nla_data().len());
            }
            if depth < 3 {
                let _ = attr.nla_parse_nested(7, &policy);
                parse_attributes(attr.nla_data(), depth + 1);
            }
        }
    }
}

/// Walk a datagram with `messages` and parse each message as everything it
/// could be: an `NLMSG_ERROR`, a generic netlink message, a reply of the
/// controller or of `my_genl`.
fn parse_everything(buf: &[u8]) {
    let _ = NlMsgHdr::from_bytes(buf);
    let mut count = 0;
    for msg in messages(buf) {
        let Ok(msg) = msg else { continue };
        count += 1;
        let data = msg.nlmsg_data();
        assert!(data.len() <= buf.len());
        if let Ok(err) = NlMsgErr::parse(&msg) {
            assert!(err.extack.as_ref().map_or(0, String::len) <= 3 * data.len()); // lossy UTF-8
            let _ = err.to_error().to_string();
        }
        let _ = msg.genlmsg_hdr();
        if let Ok(attrs) = msg.genlmsg_attrdata() {
            assert!(attrs.len() <= data.len());
            parse_attributes(attrs, 0);
        }
        let _ = msg.genlmsg_parse(proto::GENL_ATTR_MAX, ECHO_POLICY);
    }
    assert!(count <= buf.len() / NLMSG_HDRLEN);
}

/// `recvmsgs`' handling of one datagram, with the VALID callbacks of
/// `echo_raw`, `echo_genl` and `genl_ctrl_resolve` (their parsing, as
/// they do it) and an ERR callback, for each state of the loop.
fn receive_paths(buf: &[u8]) {
    for (ack_pending, multipart) in [(false, false), (true, false), (true, true)] {
        let (mut ack_pending, mut multipart) = (ack_pending, multipart);
        let mut kept = Vec::new();
        let mut cb = NlCb::new();
        cb.set(NlCbType::Valid, |msg| {
            kept.push(msg.nlmsg_data().len()); // echo_raw
            let tb = msg.genlmsg_parse(proto::GENL_ATTR_MAX, ECHO_POLICY)?; // echo_genl
            let text = tb.require(proto::GENL_ATTR_MSG)?.nla_get_string()?;
            assert!(text.len() <= buf.len());
            Ok(NlCbAction::Ok)
        });
        cb.err(|err| {
            assert!(err.extack.as_ref().map_or(0, String::len) <= 3 * buf.len());
            Ok(NlCbAction::Skip)
        });
        let _ = handle_datagram(buf, SEQ, &mut ack_pending, &mut multipart, &mut cb);
        drop(cb);
        assert!(kept.iter().all(|&len| len <= buf.len()));

        // genl_ctrl_resolve's callback, with the default err callback.
        let mut cb = NlCb::new();
        cb.set(NlCbType::Valid, |reply| {
            let policy = [
                (CTRL_ATTR_FAMILY_ID, NlaPolicy::U16),
                (
                    CTRL_ATTR_FAMILY_NAME,
                    NlaPolicy::NulString {
                        max_len: GENL_NAMSIZ - 1,
                    },
                ),
            ];
            let tb = reply.genlmsg_parse(CTRL_ATTR_FAMILY_NAME, &policy)?;
            tb.require(CTRL_ATTR_FAMILY_ID)?.nla_get_u16()?;
            Ok(NlCbAction::Ok)
        });
        let _ = handle_datagram(buf, SEQ, &mut ack_pending, &mut multipart, &mut cb);
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
        parse_attributes(&buf, 0);
    }
}
