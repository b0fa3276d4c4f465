//! Parser fuzz tests: every function that reads bytes from the kernel gets
//! arbitrary bytes, and well-formed messages with broken lengths, and must
//! answer `Ok` or `Err`: no panic, and nothing returned longer than its input
//! (no allocation sized by a length field).
//!
//! `cargo test -p user-raw parser_fuzz` runs them. Failures are not persisted
//! to `proptest-regressions/`: a failing input is pinned as a plain `#[test]`
//! with its bytes, which reads better than proptest's seed file.

use proptest::prelude::*;
use rosetta_fuzzgen::{
    attrs_or_noise, config, datagram_or_noise, dump_or_noise, mcast_groups_attr, payload_or_noise,
    tlv, Favoured, TRUTH,
};

use super::*;
use crate::attr::NLA_F_NESTED;
use crate::genl::{
    dump_datagram, echo_reply_string, genl_datagram, genl_events, multipart_datagram, Dump,
    CTRL_ATTR_OPS,
};

/// The family id and sequence number the receive paths are called with.
const FAMILY: u16 = 0x1a;
const SEQ: u32 = 1;

/// What the generators favour: messages of our family, replies to `SEQ`.
const FAVOURED: Favoured = Favoured {
    types: &[FAMILY],
    flags: &[],
    seq: SEQ,
};

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

/// The dump and notification paths: the echo-log dump, a multipart answer
/// of the controller, the genl and raw events.
fn dump_paths(buf: &[u8]) {
    for done in [false, true] {
        let mut dump = Dump::new(SEQ);
        dump.done = done;
        let _ = dump_datagram(FAMILY, buf, &mut dump);
        assert!(dump.entries.iter().map(|e| e.msg.len()).sum::<usize>() <= buf.len());
        assert!(dump.entries.len() <= buf.len() / NLMSG_HDRLEN);
    }
    let mut dump = Dump::new(SEQ);
    let mut families = 0;
    let _ = multipart_datagram(FAMILY, buf, &mut dump, |msg| {
        families += usize::from(Family::parse(&msg.attrs).is_ok());
        Ok(())
    });
    assert!(families <= buf.len() / NLMSG_HDRLEN);
    if let Ok(events) = genl_events(FAMILY, buf) {
        assert!(events.iter().map(|e| e.msg.len()).sum::<usize>() <= buf.len());
    }
    if let Ok(events) = raw_events(buf) {
        assert!(events.iter().map(|e| e.payload.len()).sum::<usize>() <= buf.len());
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parser_fuzz_dumps(buf in dump_or_noise(FAVOURED)) {
        dump_paths(&buf);
        parse_everything(&buf);
    }

    #[test]
    fn parser_fuzz_mcast_groups(groups in mcast_groups_attr(), rest in attrs_or_noise()) {
        let buf = [groups, rest].concat();
        if let Ok(family) = Family::parse(&buf) {
            assert!(family.mcast_groups.len() <= buf.len() / NLA_HDRLEN);
            assert!(family.mcast_groups.iter().map(|g| g.name.len()).sum::<usize>() <= 3 * buf.len());
        }
    }

    #[test]
    fn parser_fuzz_datagrams(buf in datagram_or_noise(FAVOURED)) {
        parse_everything(&buf);
        receive_paths(&buf);
    }

    #[test]
    fn parser_fuzz_attributes(buf in attrs_or_noise()) {
        parse_attributes(&buf);
        let _ = Family::parse(&buf);
        if let Some(Ok(ops)) = attrs(&buf).next() {
            let _ = Family::parse(&tlv(CTRL_ATTR_OPS | NLA_F_NESTED, ops.value, TRUTH));
        }
    }

    #[test]
    fn parser_fuzz_nlmsgerr(flags in any::<u16>(), body in payload_or_noise()) {
        let hdr = NlMsgHdr { nlmsg_len: 0, nlmsg_type: NLMSG_ERROR, nlmsg_flags: flags, nlmsg_seq: SEQ, nlmsg_pid: 0 };
        if let Ok(err) = parse_error(&hdr, &body) {
            assert!(err.extack.map_or(0, |s| s.len()) <= 3 * body.len());
        }
    }
}
