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
    put_attr(&mut buf, 7, b"mcast groups: skipped").unwrap();
    buf
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
        }
    );
    assert!(f.has_op(proto::GENL_CMD_ECHO) && !f.has_op(2));
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
