//! Host unit tests: attributes, `genlmsghdr`, controller and echo replies
//! built by hand, no kernel.

use super::*;
use crate::attr::{put_attr, NLA_F_NESTED};

/// The decode error's reason, or a panic.
fn reason<T: std::fmt::Debug>(r: Result<T, Error>) -> &'static str {
    match r {
        Err(Error::Decode { reason, .. }) => reason,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

/// Decode every attribute of `buf`, expecting an error after `good` good ones.
fn attrs_error(buf: &[u8], good: usize) -> &'static str {
    let mut it = attrs(buf);
    for i in 0..good {
        assert!(matches!(it.next(), Some(Ok(_))), "attribute {i} is good");
    }
    let err = reason(it.next().expect("an error item"));
    assert!(it.next().is_none(), "iteration stops after an error");
    err
}

#[test]
fn genlmsghdr_layout() {
    let h = GenlMsgHdr::new(proto::GENL_CMD_ECHO, 1);
    assert_eq!(h.to_bytes(), [1, 1, 0, 0]);
    assert_eq!(GenlMsgHdr::from_bytes(&h.to_bytes()), Some(h));
    assert_eq!(GenlMsgHdr::from_bytes(&[1, 2, 3]), None);
    assert_eq!(GENL_HDRLEN, 4);
    assert_eq!(GENL_ID_CTRL, 0x10);
}

#[test]
fn nul_string_attribute_alignment() {
    for n in 0..=5usize {
        let s: Vec<u8> = (b'a'..).take(n).collect();
        let mut buf = Vec::new();
        put_nul_string(&mut buf, proto::GENL_ATTR_MSG, &s).unwrap();
        let nla_len = 4 + n + 1;
        assert_eq!(buf.len(), nla_align(nla_len), "padded, length {n}");
        assert_eq!(buf.len() % 4, 0);
        assert_eq!(
            &buf[0..2],
            &(nla_len as u16).to_ne_bytes(),
            "nla_len unpadded"
        );
        assert_eq!(&buf[2..4], &1u16.to_ne_bytes());
        assert_eq!(&buf[4..4 + n], &s[..]);
        assert!(
            buf[4 + n..].iter().all(|&b| b == 0),
            "NUL then zero padding"
        );
        let all: Vec<_> = attrs(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].ty, all[0].flags, all[0].offset), (1, 0, 0));
        assert_eq!(all[0].value.len(), n + 1);
        assert_eq!(all[0].nul_string().unwrap(), &s[..]);
    }
}

#[test]
fn raw_attributes_in_a_run() {
    let mut buf = Vec::new();
    for n in 0..=5u8 {
        put_attr(&mut buf, u16::from(n) + 1, &vec![n; usize::from(n)]).unwrap();
    }
    assert_eq!(buf.len(), 4 + 8 + 8 + 8 + 8 + 12);
    let all: Vec<_> = attrs(&buf).collect::<Result<_, _>>().unwrap();
    let got: Vec<(u16, usize, Vec<u8>)> = all
        .iter()
        .map(|a| (a.ty, a.offset, a.value.to_vec()))
        .collect();
    let offsets = [0, 4, 12, 20, 28, 36];
    for (n, (ty, offset, value)) in got.into_iter().enumerate() {
        assert_eq!(ty, n as u16 + 1);
        assert_eq!(offset, offsets[n]);
        assert_eq!(value, vec![n as u8; n]);
    }
    // The kernel may leave out the last attribute's padding.
    buf.truncate(buf.len() - 3);
    assert_eq!(attrs(&buf).count(), 6);
    assert!(attrs(&buf).all(|a| a.is_ok()));
    assert_eq!(attrs(&[]).count(), 0);
}

#[test]
fn truncated_attribute_is_an_error() {
    assert_eq!(
        attrs_error(&[8, 0, 1], 0),
        "trailing bytes shorter than an attribute header"
    );
    let mut buf = Vec::new();
    put_attr(&mut buf, 1, b"abcd").unwrap();
    buf.extend_from_slice(&[5, 0]); // half a header after a good attribute
    assert_eq!(
        attrs_error(&buf, 1),
        "trailing bytes shorter than an attribute header"
    );
    // A whole header whose value was cut off.
    let mut buf = Vec::new();
    put_attr(&mut buf, 1, b"abcdefgh").unwrap();
    buf.truncate(9);
    assert_eq!(
        attrs_error(&buf, 0),
        "nla_len beyond the end of the attributes"
    );
}

#[test]
fn nla_len_below_the_header_is_an_error() {
    for nla_len in 0u16..4 {
        let mut buf = Vec::new();
        put_attr(&mut buf, 1, b"abcd").unwrap();
        buf[0..2].copy_from_slice(&nla_len.to_ne_bytes());
        assert_eq!(
            attrs_error(&buf, 0),
            "nla_len smaller than the attribute header",
            "nla_len {nla_len}"
        );
    }
}

#[test]
fn nla_len_beyond_the_buffer_is_an_error() {
    for nla_len in [9u16, 12, 200, u16::MAX] {
        let mut buf = Vec::new();
        put_attr(&mut buf, 2, b"ab").unwrap(); // 8 bytes
        put_attr(&mut buf, 1, b"abcd").unwrap(); // 8 more
        buf[8..10].copy_from_slice(&nla_len.to_ne_bytes());
        assert_eq!(
            attrs_error(&buf, 1),
            "nla_len beyond the end of the attributes",
            "nla_len {nla_len}"
        );
    }
}

#[test]
fn type_flags_are_masked() {
    let mut buf = Vec::new();
    put_attr(&mut buf, CTRL_ATTR_OPS | NLA_F_NESTED, &[]).unwrap();
    let a = attrs(&buf).next().unwrap().unwrap();
    assert_eq!((a.ty, a.flags), (CTRL_ATTR_OPS, NLA_F_NESTED));
}

#[test]
fn typed_values_are_length_checked() {
    let a = |value| Attr {
        ty: 1,
        flags: 0,
        value,
        offset: 0,
    };
    assert_eq!(a(&[1, 0]).u16().unwrap(), u16::from_ne_bytes([1, 0]));
    assert_eq!(
        reason(a(&[1, 0, 0]).u16()),
        "u16 attribute whose value is not 2 bytes"
    );
    assert_eq!(
        a(&[2, 0, 0, 0]).u32().unwrap(),
        u32::from_ne_bytes([2, 0, 0, 0])
    );
    assert_eq!(
        reason(a(&[2, 0]).u32()),
        "u32 attribute whose value is not 4 bytes"
    );
    assert_eq!(a(b"hi\0").nul_string().unwrap(), b"hi");
    assert_eq!(a(b"\0").nul_string().unwrap(), b"");
    for bad in [&b""[..], b"hi", b"h\0i"] {
        assert!(a(bad).nul_string().is_err(), "{bad:?}");
    }
}

#[test]
fn building_rejects_what_cannot_be_encoded() {
    let mut buf = Vec::new();
    assert!(matches!(
        put_nul_string(&mut buf, 1, b"ab\0c"),
        Err(Error::NulInString { offset: 2 })
    ));
    assert!(matches!(
        put_attr(&mut buf, 1, &vec![0; 65532]),
        Err(Error::AttrTooLarge { ty: 1, len: 65532 })
    ));
    assert!(buf.is_empty(), "nothing written on error");
    put_attr(&mut buf, 1, &vec![0; 65531]).unwrap(); // nla_len 65535
    assert_eq!(&buf[0..2], &u16::MAX.to_ne_bytes());
}

/// The ECHO request for "hi", exactly as the module documentation shows it.
#[test]
fn echo_request_bytes() {
    let mut attrs = Vec::new();
    put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, b"hi").unwrap();
    let mut buf = Vec::new();
    let echo = GenlMsgHdr::new(proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION);
    encode_genl(&mut buf, 0x16, NLM_F_REQUEST, 5, echo, &attrs).unwrap();
    let mut want = Vec::new();
    want.extend(28u32.to_ne_bytes()); // nlmsg_len
    want.extend(0x16u16.to_ne_bytes()); // nlmsg_type: the family id
    want.extend(NLM_F_REQUEST.to_ne_bytes()); // nlmsg_flags
    want.extend(5u32.to_ne_bytes()); // nlmsg_seq
    want.extend(0u32.to_ne_bytes()); // nlmsg_pid
    want.extend([1, 1, 0, 0]); // genlmsghdr: cmd ECHO, version 1, reserved
    want.extend(7u16.to_ne_bytes()); // nla_len
    want.extend(1u16.to_ne_bytes()); // nla_type MSG
    want.extend(b"hi\0\0"); // value, NUL, padding
    assert_eq!(buf, want);
}

/// The attributes of a CTRL_CMD_NEWFAMILY for `my_genl` with op `ops`.
fn newfamily(ops: &[u32]) -> Vec<u8> {
    let mut buf = Vec::new();
    put_nul_string(&mut buf, CTRL_ATTR_FAMILY_NAME, b"my_genl").unwrap();
    put_attr(&mut buf, CTRL_ATTR_FAMILY_ID, &0x16u16.to_ne_bytes()).unwrap();
    put_attr(&mut buf, CTRL_ATTR_VERSION, &1u32.to_ne_bytes()).unwrap();
    put_attr(&mut buf, CTRL_ATTR_HDRSIZE, &0u32.to_ne_bytes()).unwrap();
    put_attr(&mut buf, CTRL_ATTR_MAXATTR, &1u32.to_ne_bytes()).unwrap();
    let mut nest = Vec::new();
    for (i, &id) in ops.iter().enumerate() {
        let mut op = Vec::new();
        put_attr(&mut op, CTRL_ATTR_OP_ID, &id.to_ne_bytes()).unwrap();
        put_attr(&mut op, CTRL_ATTR_OP_FLAGS, &0xau32.to_ne_bytes()).unwrap();
        put_attr(&mut nest, i as u16 + 1, &op).unwrap();
    }
    put_attr(&mut buf, CTRL_ATTR_OPS, &nest).unwrap();
    put_attr(
        &mut buf,
        CTRL_ATTR_MCAST_GROUPS | NLA_F_NESTED,
        &mcast_groups(&[("events", 26), ("other", 27)]),
    )
    .unwrap();
    put_attr(&mut buf, 99, b"unknown attributes: skipped").unwrap();
    buf
}

/// A `CTRL_ATTR_MCAST_GROUPS` nest of (name, id), as nlctrl builds it:
/// indexes 1, 2, ..., each nesting the id then the name.
fn mcast_groups(groups: &[(&str, u32)]) -> Vec<u8> {
    let mut nest = Vec::new();
    for (i, (name, id)) in groups.iter().enumerate() {
        let mut group = Vec::new();
        put_attr(&mut group, CTRL_ATTR_MCAST_GRP_ID, &id.to_ne_bytes()).unwrap();
        put_nul_string(&mut group, CTRL_ATTR_MCAST_GRP_NAME, name.as_bytes()).unwrap();
        put_attr(&mut nest, (i as u16 + 1) | NLA_F_NESTED, &group).unwrap();
    }
    nest
}

#[test]
fn family_parse() {
    let f = Family::parse(&newfamily(&[1, 4])).unwrap();
    assert_eq!(
        f,
        Family {
            id: 0x16,
            name: "my_genl".into(),
            version: 1,
            hdrsize: 0,
            maxattr: 1,
            ops: vec![Op { id: 1, flags: 0xa }, Op { id: 4, flags: 0xa }],
            mcast_groups: vec![
                McastGroup {
                    name: "events".into(),
                    id: 26
                },
                McastGroup {
                    name: "other".into(),
                    id: 27
                },
            ],
        }
    );
    assert!(f.has_op(proto::GENL_CMD_ECHO) && !f.has_op(2));
    assert_eq!(f.mcast_group(proto::GENL_MCGRP_EVENTS), Some(26));
    assert_eq!(f.mcast_group("other"), Some(27));
    assert_eq!(f.mcast_group("none"), None);
}

#[test]
fn mcast_groups_parse_rejects_malformed() {
    let family = |nest: &[u8]| {
        let mut buf = newfamily(&[1]);
        put_attr(&mut buf, CTRL_ATTR_MCAST_GROUPS | NLA_F_NESTED, nest).unwrap();
        Family::parse(&buf)
    };
    // No groups at all: an empty list.
    assert_eq!(family(&[]).unwrap().mcast_groups, []);
    // A group without its id, or without its name.
    let mut nest = Vec::new();
    let mut group = Vec::new();
    put_nul_string(&mut group, CTRL_ATTR_MCAST_GRP_NAME, b"events").unwrap();
    put_attr(&mut nest, 1 | NLA_F_NESTED, &group).unwrap();
    assert_eq!(
        reason(family(&nest)),
        "multicast group without CTRL_ATTR_MCAST_GRP_ID"
    );
    let mut nest = Vec::new();
    put_attr(&mut nest, 1 | NLA_F_NESTED, &[8, 0, 2, 0, 26, 0, 0, 0]).unwrap();
    assert_eq!(
        reason(family(&nest)),
        "multicast group without CTRL_ATTR_MCAST_GRP_NAME"
    );
    // An id that is not a u32, a name without its NUL, a group nest
    // whose nla_len runs past the list.
    let mut nest = Vec::new();
    put_attr(&mut nest, 1 | NLA_F_NESTED, &[6, 0, 2, 0, 26, 0, 0, 0]).unwrap();
    assert_eq!(
        reason(family(&nest)),
        "u32 attribute whose value is not 4 bytes"
    );
    let mut nest = Vec::new();
    let mut group = Vec::new();
    put_attr(&mut group, CTRL_ATTR_MCAST_GRP_ID, &26u32.to_ne_bytes()).unwrap();
    put_attr(&mut group, CTRL_ATTR_MCAST_GRP_NAME, b"events").unwrap();
    put_attr(&mut nest, 1 | NLA_F_NESTED, &group).unwrap();
    assert_eq!(
        reason(family(&nest)),
        "string attribute without a terminating NUL"
    );
    assert_eq!(
        reason(family(&[200, 0, 1, 0x80])),
        "nla_len beyond the end of the attributes"
    );
}

#[test]
fn family_parse_rejects_malformed() {
    // No id.
    let mut buf = Vec::new();
    put_nul_string(&mut buf, CTRL_ATTR_FAMILY_NAME, b"my_genl").unwrap();
    assert_eq!(
        reason(Family::parse(&buf)),
        "family without CTRL_ATTR_FAMILY_ID"
    );
    // An id of the wrong size.
    put_attr(&mut buf, CTRL_ATTR_FAMILY_ID, &0x16u32.to_ne_bytes()).unwrap();
    assert!(Family::parse(&buf).is_err());
    // An op entry without its id.
    let mut buf = newfamily(&[]);
    let mut nest = Vec::new();
    put_attr(&mut nest, 1, &[8, 0, 2, 0, 0, 0, 0, 0]).unwrap(); // only OP_FLAGS
    put_attr(&mut buf, CTRL_ATTR_OPS, &nest).unwrap();
    assert_eq!(
        reason(Family::parse(&buf)),
        "CTRL_ATTR_OPS entry without CTRL_ATTR_OP_ID"
    );
    // Garbage inside the nest, or after the last attribute.
    let mut buf = newfamily(&[1]);
    let mut nest = Vec::new();
    put_attr(&mut nest, 1, &[200, 0, 1, 0]).unwrap(); // nla_len past the nest
    put_attr(&mut buf, CTRL_ATTR_OPS, &nest).unwrap();
    assert!(Family::parse(&buf).is_err());
    let mut buf = newfamily(&[1]);
    buf.extend_from_slice(&[1, 0]);
    assert!(Family::parse(&buf).is_err());
}

fn reply(cmd: u8, attrs: &[u8]) -> GenlMsg {
    let nlmsg = NlMsgHdr {
        nlmsg_len: 0,
        nlmsg_type: 0x16,
        nlmsg_flags: 0,
        nlmsg_seq: 3,
        nlmsg_pid: 99,
    };
    let mut body = GenlMsgHdr::new(cmd, 1).to_bytes().to_vec();
    body.extend_from_slice(attrs);
    GenlMsg::parse(nlmsg, &body).unwrap()
}

#[test]
fn echo_reply_checks() {
    let mut msg = Vec::new();
    put_nul_string(&mut msg, proto::GENL_ATTR_MSG, b"hello").unwrap();
    assert_eq!(echo_reply_string(3, &reply(1, &msg)).unwrap(), b"hello");
    let e = echo_reply_string(3, &reply(2, &msg)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "reply to seq 3: generic netlink command 2, expected ECHO (1)"
    );
    let e = echo_reply_string(3, &reply(1, &[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "reply to seq 3: ECHO reply without a MSG attribute"
    );
    let mut no_nul = Vec::new();
    put_attr(&mut no_nul, proto::GENL_ATTR_MSG, b"hello").unwrap();
    assert_eq!(
        reason(echo_reply_string(3, &reply(1, &no_nul))),
        "string attribute without a terminating NUL"
    );
    let mut garbage = msg.clone();
    garbage.extend_from_slice(&[3, 0, 1, 0]);
    assert_eq!(
        reason(echo_reply_string(3, &reply(1, &garbage))),
        "nla_len smaller than the attribute header"
    );
    let nlmsg = reply(1, &[]).nlmsg;
    assert_eq!(
        reason(GenlMsg::parse(nlmsg, &[1, 1, 0])),
        "generic netlink message shorter than struct genlmsghdr"
    );
}

// ---------------------------------------------------------------------------
// The echo log: entries, dumps, events
// ---------------------------------------------------------------------------

const FAMILY: u16 = 0x19;

/// The attributes of a log entry.
fn entry_attrs(id: u32, portid: u32, msg: &[u8]) -> Vec<u8> {
    let mut attrs = Vec::new();
    put_attr(&mut attrs, proto::GENL_ATTR_ID, &id.to_ne_bytes()).unwrap();
    put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, msg).unwrap();
    put_attr(&mut attrs, proto::GENL_ATTR_PORTID, &portid.to_ne_bytes()).unwrap();
    attrs
}

/// One generic netlink message of `FAMILY` as the kernel sends it.
fn genl_msg(cmd: u8, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_genl(&mut buf, FAMILY, flags, seq, GenlMsgHdr::new(cmd, 1), attrs).unwrap();
    buf
}

/// A dump message: GET, NLM_F_MULTI (and `extra` flags).
fn dump_msg(seq: u32, extra: u16, id: u32, msg: &[u8]) -> Vec<u8> {
    let attrs = entry_attrs(id, 1000 + id, msg);
    genl_msg(proto::GENL_CMD_GET, crate::NLM_F_MULTI | extra, seq, &attrs)
}

/// `NLMSG_DONE` with its `int` and, if any, extended ack TLVs.
fn done_msg(seq: u32, extra: u16, errno: i32, tlvs: &[u8]) -> Vec<u8> {
    let mut body = errno.to_ne_bytes().to_vec();
    body.extend_from_slice(tlvs);
    let mut buf = Vec::new();
    crate::encode(
        &mut buf,
        crate::NLMSG_DONE,
        crate::NLM_F_MULTI | extra,
        seq,
        &body,
    )
    .unwrap();
    buf
}

fn entry(id: u32, msg: &[u8]) -> Entry {
    Entry {
        id,
        portid: 1000 + id,
        msg: msg.to_vec(),
    }
}

#[test]
fn entries_parse_and_need_all_three_attributes() {
    let get = reply(proto::GENL_CMD_GET, &entry_attrs(7, 1234, b"hello"));
    assert_eq!(
        Entry::parse(&get, proto::GENL_CMD_GET).unwrap(),
        Entry {
            id: 7,
            portid: 1234,
            msg: b"hello".to_vec()
        }
    );
    assert_eq!(
        Entry::parse(&get, proto::GENL_CMD_EVENT)
            .unwrap_err()
            .to_string(),
        "reply to seq 3: generic netlink command 2, expected 3"
    );
    for (leave_out, name) in [
        (proto::GENL_ATTR_ID, "ID"),
        (proto::GENL_ATTR_MSG, "MSG"),
        (proto::GENL_ATTR_PORTID, "PORTID"),
    ] {
        let mut attrs = Vec::new();
        for attr in attrs_of(&entry_attrs(7, 1234, b"hello")) {
            if attr.0 != leave_out {
                put_attr(&mut attrs, attr.0, &attr.1).unwrap();
            }
        }
        let e = Entry::parse(&reply(proto::GENL_CMD_GET, &attrs), proto::GENL_CMD_GET);
        assert_eq!(
            e.unwrap_err().to_string(),
            format!("reply to seq 3: log entry without a {name} attribute")
        );
    }
    // An ID of the wrong size.
    let mut attrs = entry_attrs(7, 1234, b"hello");
    put_attr(&mut attrs, proto::GENL_ATTR_ID, &[1, 2]).unwrap();
    assert_eq!(
        reason(Entry::parse(&reply(2, &attrs), 2)),
        "u32 attribute whose value is not 4 bytes"
    );
}

/// (type, value) of each attribute of a run.
fn attrs_of(buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
    attrs(buf)
        .map(|a| a.map(|a| (a.ty, a.value.to_vec())).unwrap())
        .collect()
}

#[test]
fn a_dump_in_several_datagrams_until_done() {
    let mut dump = Dump::new(5);
    let first = [
        dump_msg(5, 0, 1, b"hello"),
        dump_msg(5, 0, 2, b"hello netlink"),
    ]
    .concat();
    dump_datagram(FAMILY, &first, &mut dump).unwrap();
    assert!(!dump.done);
    // A stale message of another request in the middle is skipped.
    let second = [
        dump_msg(4, 0, 99, b"stale"),
        dump_msg(5, 0, 3, b""),
        done_msg(5, 0, 0, &[]),
    ]
    .concat();
    dump_datagram(FAMILY, &second, &mut dump).unwrap();
    assert_eq!(
        dump,
        Dump {
            seq: 5,
            entries: vec![
                entry(1, b"hello"),
                entry(2, b"hello netlink"),
                entry(3, b"")
            ],
            interrupted: false,
            done: true,
        }
    );
    // Nothing of ours may follow NLMSG_DONE.
    let e = dump_datagram(FAMILY, &dump_msg(5, 0, 4, b"late"), &mut dump).unwrap_err();
    assert_eq!(e.to_string(), "reply to seq 5: a message after NLMSG_DONE");
}

#[test]
fn an_empty_dump_is_done_alone_with_or_without_its_int() {
    let mut dump = Dump::new(1);
    dump_datagram(FAMILY, &done_msg(1, 0, 0, &[]), &mut dump).unwrap();
    assert!(dump.done && dump.entries.is_empty());
    let mut dump = Dump::new(1);
    let mut bare = Vec::new();
    crate::encode(&mut bare, crate::NLMSG_DONE, crate::NLM_F_MULTI, 1, &[]).unwrap();
    dump_datagram(FAMILY, &bare, &mut dump).unwrap();
    assert!(dump.done);
}

#[test]
fn dump_intr_on_any_message_marks_the_dump() {
    let mut dump = Dump::new(2);
    let datagram = [
        dump_msg(2, 0, 1, b"a"),
        dump_msg(2, crate::NLM_F_DUMP_INTR, 2, b"b"),
        dump_msg(2, 0, 3, b"c"),
    ]
    .concat();
    dump_datagram(FAMILY, &datagram, &mut dump).unwrap();
    assert!(dump.interrupted && !dump.done);
    assert_eq!(dump.entries.len(), 3, "the entries are kept");
    // On NLMSG_DONE alone too (the log changed after the last entry).
    let mut dump = Dump::new(2);
    let datagram = [
        dump_msg(2, 0, 1, b"a"),
        done_msg(2, crate::NLM_F_DUMP_INTR, 0, &[]),
    ]
    .concat();
    dump_datagram(FAMILY, &datagram, &mut dump).unwrap();
    assert!(dump.interrupted && dump.done);
}

#[test]
fn a_failed_dump_is_the_errno_of_done_with_its_extack() {
    let mut tlvs = Vec::new();
    put_nul_string(&mut tlvs, crate::NLMSGERR_ATTR_MSG, b"the log is busy").unwrap();
    let datagram = done_msg(3, crate::NLM_F_ACK_TLVS, -libc::EBUSY, &tlvs);
    match dump_datagram(FAMILY, &datagram, &mut Dump::new(3)) {
        Err(e @ Error::Kernel { .. }) => {
            assert_eq!(
                e.to_string(),
                "kernel replied EBUSY (errno 16): the log is busy"
            )
        }
        other => panic!("expected a kernel error, got {other:?}"),
    }
    let datagram = done_msg(3, 0, -libc::ENOMEM, &[]);
    match dump_datagram(FAMILY, &datagram, &mut Dump::new(3)) {
        Err(Error::Kernel { errno, extack, .. }) => {
            assert_eq!((errno, extack), (libc::ENOMEM, None))
        }
        other => panic!("expected a kernel error, got {other:?}"),
    }
}

#[test]
fn a_refused_dump_is_its_nlmsg_error() {
    // What the core answers a family without a dumpit: EOPNOTSUPP.
    let mut body = (-libc::EOPNOTSUPP).to_ne_bytes().to_vec();
    body.extend_from_slice(&genl_msg(proto::GENL_CMD_GET, crate::NLM_F_DUMP, 4, &[])[..16]);
    let mut datagram = Vec::new();
    crate::encode(
        &mut datagram,
        crate::NLMSG_ERROR,
        crate::NLM_F_CAPPED,
        4,
        &body,
    )
    .unwrap();
    match dump_datagram(FAMILY, &datagram, &mut Dump::new(4)) {
        Err(Error::Kernel { errno, .. }) => assert_eq!(errno, libc::EOPNOTSUPP),
        other => panic!("expected a kernel error, got {other:?}"),
    }
}

#[test]
fn truncated_or_foreign_dump_messages_are_errors() {
    // A datagram cut inside its second message.
    let datagram = [dump_msg(6, 0, 1, b"hello"), dump_msg(6, 0, 2, b"world")].concat();
    let cut = &datagram[..datagram.len() - 6];
    let mut dump = Dump::new(6);
    let e = dump_datagram(FAMILY, cut, &mut dump).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "malformed netlink message at byte {}: nlmsg_len beyond the end of the datagram",
            crate::nlmsg_align(dump_msg(6, 0, 1, b"hello").len())
        )
    );
    assert_eq!(
        dump.entries,
        [entry(1, b"hello")],
        "the whole message was kept"
    );
    // A message of ours with another type, or a GET without its MSG.
    let mut other = Vec::new();
    crate::encode(&mut other, 0x42, crate::NLM_F_MULTI, 6, &[1, 1, 0, 0]).unwrap();
    let e = dump_datagram(FAMILY, &other, &mut Dump::new(6)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unexpected message type 0x42 with our sequence number 6"
    );
    let mut attrs = Vec::new();
    put_attr(&mut attrs, proto::GENL_ATTR_ID, &1u32.to_ne_bytes()).unwrap();
    let no_msg = genl_msg(proto::GENL_CMD_GET, crate::NLM_F_MULTI, 6, &attrs);
    let e = dump_datagram(FAMILY, &no_msg, &mut Dump::new(6)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "reply to seq 6: log entry without a PORTID attribute"
    );
}

#[test]
fn events_of_the_family_only() {
    let event = |id, msg: &[u8]| {
        genl_msg(
            proto::GENL_CMD_EVENT,
            0,
            0,
            &entry_attrs(id, 1000 + id, msg),
        )
    };
    let mut other_family = Vec::new();
    encode_genl(&mut other_family, 0x33, 0, 0, GenlMsgHdr::new(3, 1), &[]).unwrap();
    let other_cmd = genl_msg(proto::GENL_CMD_ECHO, 0, 0, &[]);
    let datagram = [event(3, b"hello"), other_family, other_cmd, event(4, b"hi")].concat();
    assert_eq!(
        genl_events(FAMILY, &datagram).unwrap(),
        [entry(3, b"hello"), entry(4, b"hi")]
    );
    assert!(genl_events(FAMILY, &event(3, b"x")[..20]).is_err());
}

#[test]
fn raw_events_are_the_non_control_messages() {
    let mut datagram = Vec::new();
    crate::encode(&mut datagram, proto::ECHO_MSG_TYPE, 0, 5, b"hello").unwrap();
    crate::encode(&mut datagram, crate::NLMSG_NOOP, 0, 0, &[]).unwrap();
    crate::encode(&mut datagram, proto::ARTICLES_MSG_TYPE, 0, 6, b"type 0").unwrap();
    // nlmsg_pid: the requester's portid, which `encode` leaves 0; set it.
    datagram[12..16].copy_from_slice(&1240u32.to_ne_bytes());
    let events = crate::raw_events(&datagram).unwrap();
    assert_eq!(
        events,
        [
            crate::RawEvent {
                seq: 5,
                portid: 1240,
                ty: proto::ECHO_MSG_TYPE,
                payload: b"hello".to_vec()
            },
            crate::RawEvent {
                seq: 6,
                portid: 0,
                ty: proto::ARTICLES_MSG_TYPE,
                payload: b"type 0".to_vec()
            },
        ]
    );
    assert!(
        crate::raw_events(&datagram[..datagram.len() - 3]).is_err(),
        "cut inside the last message"
    );
}
