//! Unit tests: message building, datagram walking, error and attribute
//! parsing, all on byte arrays (the socket tests are in `tests/host.rs`).

use super::*;

/// One attribute's bytes: header, value, padding.
fn nla(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&((NLA_HDRLEN + value.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(value);
    b.resize(align4(b.len()), 0);
    b
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn simple_message_is_exact_and_unpadded() {
    let mut msg = NlMsg::alloc_simple(0x10, 0);
    msg.append(b"hello netlink");
    let bytes = msg
        .complete(1234, 7, NLM_F_REQUEST | NLM_F_ACK)
        .unwrap()
        .to_vec();
    assert_eq!(bytes.len(), 16 + 13, "no padding after the payload");
    let hdr = NlMsgHdr::from_bytes(&bytes).unwrap();
    assert_eq!(
        hdr,
        NlMsgHdr {
            nlmsg_len: 29,
            nlmsg_type: 0x10,
            nlmsg_flags: NLM_F_REQUEST | NLM_F_ACK,
            nlmsg_seq: 7,
            nlmsg_pid: 1234,
        }
    );
    assert_eq!(&bytes[16..], b"hello netlink");
    assert_eq!(msg.nlmsg_hdr(), &hdr);
}

#[test]
fn genl_message_layout() {
    let mut msg = NlMsg::genlmsg_put(34, 0, 1, 1);
    msg.nla_put_string(1, "hi").unwrap();
    msg.nla_put_u32(2, 0xdead_beef).unwrap();
    msg.nla_put_flag(3).unwrap();
    let bytes = msg.complete(0, 1, NLM_F_REQUEST).unwrap().to_vec();
    let expected = concat(&[
        NlMsgHdr {
            nlmsg_len: 40,
            nlmsg_type: 34,
            nlmsg_flags: NLM_F_REQUEST,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        }
        .to_bytes()
        .to_vec(),
        vec![1, 1, 0, 0],                       // genlmsghdr: cmd 1, version 1
        nla(1, b"hi\0"),                        // 4 + 3, padded to 8
        nla(2, &0xdead_beef_u32.to_ne_bytes()), // 8
        nla(3, b""),                            // 4
    ]);
    assert_eq!(bytes, expected);
}

#[test]
fn attributes_after_an_odd_payload_are_aligned() {
    let mut msg = NlMsg::alloc_simple(0x10, 0);
    msg.append(b"abc").nla_put_u8(1, 9).unwrap();
    let bytes = msg.complete(0, 1, 0).unwrap();
    assert_eq!(
        &bytes[16..],
        &concat(&[b"abc\0".to_vec(), nla(1, &[9])])[..]
    );
}

#[test]
fn oversize_attributes_and_nul_in_strings_are_errors() {
    let mut msg = NlMsg::alloc_simple(0x10, 0);
    let big = vec![0u8; 65536];
    assert!(matches!(
        msg.nla_put(1, &big),
        Err(Error::TooLarge {
            what: "attribute",
            len: 65540
        })
    ));
    assert!(matches!(
        msg.nla_put_string(1, "a\0b"),
        Err(Error::Attr { ty: 1, .. })
    ));
    // 65531 bytes of value is the most an attribute can hold.
    assert!(msg.nla_put(1, &big[..65531]).is_ok());
}

#[test]
fn datagrams_are_walked_with_checked_lengths() {
    let mut one = NlMsg::alloc_simple(0x10, 0);
    one.append(b"abc");
    let mut datagram = one.complete(0, 1, 0).unwrap().to_vec();
    datagram.push(0); // the padding before the next message
    let mut two = NlMsg::alloc_simple(0x11, 0);
    datagram.extend_from_slice(two.complete(0, 2, 0).unwrap());
    let msgs: Vec<_> = messages(&datagram).collect::<Result<_, _>>().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].nlmsg_data(), b"abc");
    assert_eq!((msgs[1].hdr.nlmsg_type, msgs[1].hdr.nlmsg_seq), (0x11, 2));

    for bad_len in [0u32, 15, 100] {
        let mut d = datagram.clone();
        d[0..4].copy_from_slice(&bad_len.to_ne_bytes());
        let results: Vec<_> = messages(&d).collect();
        assert_eq!(
            results.len(),
            1,
            "nlmsg_len {bad_len}: one error, then stop"
        );
        assert!(matches!(results[0], Err(Error::Decode { .. })));
    }
    let tail: Vec<_> = messages(&datagram[..datagram.len() - 4]).collect();
    assert!(matches!(tail.last(), Some(Err(Error::Decode { .. }))));
}

/// An NLMSG_ERROR as the kernel builds it for a capped, extended ack.
fn nlmsgerr(error: i32, tlvs: &[u8], flags: u16) -> Vec<u8> {
    let request = NlMsgHdr {
        nlmsg_len: 16 + 5,
        nlmsg_type: 0x10,
        nlmsg_flags: NLM_F_REQUEST,
        nlmsg_seq: 9,
        nlmsg_pid: 0,
    };
    let mut payload = error.to_ne_bytes().to_vec();
    payload.extend_from_slice(&request.to_bytes());
    if flags & NLM_F_CAPPED == 0 {
        payload.extend_from_slice(b"hello\0\0\0"); // the copied request, padded
    }
    payload.extend_from_slice(tlvs);
    let mut msg = NlMsg::alloc_simple(NLMSG_ERROR, flags);
    msg.append(&payload);
    msg.complete(42, 9, 0).unwrap().to_vec()
}

fn parse_err(bytes: &[u8]) -> Result<NlMsgErr, Error> {
    let msg = messages(bytes).next().unwrap()?;
    NlMsgErr::parse(&msg)
}

#[test]
fn acks_and_errors_with_extack() {
    let ack = parse_err(&nlmsgerr(0, &[], NLM_F_CAPPED)).unwrap();
    assert_eq!((ack.error, ack.request.nlmsg_seq, ack.extack), (0, 9, None));

    let tlvs = concat(&[
        nla(NLMSGERR_ATTR_MSG, b"missing attribute MSG\0"),
        nla(2, &20u32.to_ne_bytes()), // NLMSGERR_ATTR_OFFS: not read
        nla(NLMSGERR_ATTR_MISS_TYPE, &1u32.to_ne_bytes()),
    ]);
    for capped in [NLM_F_CAPPED, 0] {
        let err = parse_err(&nlmsgerr(-libc::EINVAL, &tlvs, NLM_F_ACK_TLVS | capped)).unwrap();
        assert_eq!(err.error, -libc::EINVAL);
        assert_eq!(err.extack.as_deref(), Some("missing attribute MSG"));
        assert_eq!(err.missing_attr, Some(1));
        assert_eq!(
            err.to_error().to_string(),
            "kernel replied EINVAL (errno 22): missing attribute MSG (missing attribute 1)"
        );
    }
    let plain = parse_err(&nlmsgerr(-libc::EMSGSIZE, &[], NLM_F_CAPPED)).unwrap();
    assert_eq!(plain.to_error().errno(), Some(libc::EMSGSIZE));
    assert_eq!(
        plain.to_error().to_string(),
        "kernel replied EMSGSIZE (errno 90): Message too long"
    );
}

#[test]
fn malformed_errors_are_errors() {
    let short = nlmsgerr(0, &[], NLM_F_CAPPED);
    let mut cut = short[..16 + 10].to_vec();
    cut[0..4].copy_from_slice(&26u32.to_ne_bytes());
    assert!(matches!(parse_err(&cut), Err(Error::Decode { .. })));
    // Extack TLVs whose nla_len runs past the end.
    let mut bad_tlv = nla(NLMSGERR_ATTR_MSG, b"x\0");
    bad_tlv[0] = 200;
    let bytes = nlmsgerr(-libc::EINVAL, &bad_tlv, NLM_F_ACK_TLVS | NLM_F_CAPPED);
    assert!(matches!(parse_err(&bytes), Err(Error::Decode { .. })));
}

const POLICY: &[(u16, NlaPolicy)] = &[
    (1, NlaPolicy::U8),
    (2, NlaPolicy::U16),
    (3, NlaPolicy::U32),
    (4, NlaPolicy::String { max_len: 5 }),
    (5, NlaPolicy::NulString { max_len: 5 }),
    (6, NlaPolicy::Flag),
    (7, NlaPolicy::Nested),
];

#[test]
fn nla_parse_valid_attributes() {
    let data = concat(&[
        nla(1, &[7]),
        nla(2, &0x1234u16.to_ne_bytes()),
        nla(3, &0x1234_5678u32.to_ne_bytes()),
        nla(4, b"hello"), // NLA_STRING needs no NUL
        nla(5, b"world\0"),
        nla(6, b""),
        nla(7 | 0x8000, &nla(1, &0x55u16.to_ne_bytes())), // with NLA_F_NESTED
        nla(9, b"no policy entry: anything goes"),
        nla(50, b"above maxtype: skipped"),
    ]);
    let tb = nla_parse(&data, 9, POLICY).unwrap();
    assert_eq!(tb.require(1).unwrap().nla_get_u8().unwrap(), 7);
    assert_eq!(tb.require(2).unwrap().nla_get_u16().unwrap(), 0x1234);
    assert_eq!(tb.require(3).unwrap().nla_get_u32().unwrap(), 0x1234_5678);
    assert_eq!(tb.require(4).unwrap().nla_get_string().unwrap(), "hello");
    assert_eq!(tb.require(5).unwrap().nla_get_string().unwrap(), "world");
    assert!(tb.get(6).is_some(), "a flag is its presence");
    let nested = tb
        .require(7)
        .unwrap()
        .nla_parse_nested(1, &[(1, NlaPolicy::U16)]);
    assert_eq!(
        nested.unwrap().require(1).unwrap().nla_get_u16().unwrap(),
        0x55
    );
    assert_eq!(tb.require(9).unwrap().nla_type(), 9);
    assert!(tb.get(50).is_none());
    assert!(matches!(
        tb.require(0),
        Err(Error::Attr {
            ty: 0,
            reason: "missing"
        })
    ));
    // Empty input: no attributes, no error.
    assert!(nla_parse(&[], 3, POLICY).unwrap().get(1).is_none());
}

#[test]
fn nla_parse_rejects_truncated_attributes() {
    let good = nla(3, &1u32.to_ne_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header cut", good[..2].to_vec()),
        ("value cut", good[..6].to_vec()),
        ("nla_len < 4", {
            let mut b = good.clone();
            b[0..2].copy_from_slice(&2u16.to_ne_bytes());
            b
        }),
        ("nla_len past the end", {
            let mut b = good.clone();
            b[0..2].copy_from_slice(&100u16.to_ne_bytes());
            b
        }),
        ("trailing bytes", concat(&[good.clone(), vec![1, 0]])),
    ];
    for (what, data) in cases {
        assert!(
            matches!(nla_parse(&data, 8, POLICY), Err(Error::Decode { .. })),
            "{what}"
        );
    }
}

#[test]
fn nla_parse_rejects_mistyped_attributes() {
    let cases: Vec<(u16, Vec<u8>)> = vec![
        (1, nla(1, &[1, 2])),       // u8 with 2 bytes
        (2, nla(2, &[1])),          // u16 with 1 byte
        (3, nla(3, &[1, 2])),       // u32 with 2 bytes
        (3, nla(3, &[0; 8])),       // u32 with 8 bytes
        (4, nla(4, b"")),           // empty string
        (4, nla(4, b"toolong")),    // string over max_len
        (5, nla(5, b"world")),      // nul-string without NUL
        (5, nla(5, b"toolong\0")),  // NUL past max_len + 1
        (5, nla(5, b"abc\0defgh")), // 9 bytes, no trailing NUL, > 5
        (6, nla(6, &[1])),          // flag with a value
        (7, nla(7, &[1, 2])),       // nested, shorter than a header
    ];
    for (ty, data) in cases {
        match nla_parse(&data, 8, POLICY) {
            Err(Error::Attr { ty: t, .. }) if t == ty => {}
            other => panic!("attribute {ty} {data:?}: {other:?}"),
        }
    }
    // The exact limits pass: 5 characters with or without the NUL.
    assert!(nla_parse(&nla(4, b"12345\0"), 8, POLICY).is_ok());
    assert!(nla_parse(&nla(5, b"12345\0"), 8, POLICY).is_ok());
}

#[test]
fn getters_check_lengths_without_a_policy() {
    let data = nla(1, &[1, 2]);
    let tb = nla_parse(&data, 1, &[]).unwrap();
    let attr = tb.require(1).unwrap();
    assert!(matches!(attr.nla_get_u32(), Err(Error::Attr { ty: 1, .. })));
    assert!(attr.nla_get_u16().is_ok());
    let data = nla(1, &[0xff, 0xfe, 0]);
    let tb = nla_parse(&data, 1, &[]).unwrap();
    assert!(
        tb.require(1).unwrap().nla_get_string().is_err(),
        "not UTF-8"
    );
}

#[test]
fn genl_headers_are_checked() {
    let mut msg = NlMsg::genlmsg_put(GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, 1);
    msg.nla_put_u16(CTRL_ATTR_FAMILY_ID, 0x10).unwrap();
    let bytes = msg.complete(0, 1, 0).unwrap().to_vec();
    let m = messages(&bytes).next().unwrap().unwrap();
    assert_eq!(
        m.genlmsg_hdr().unwrap(),
        GenlMsgHdr {
            cmd: CTRL_CMD_GETFAMILY,
            version: 1
        }
    );
    let tb = m.genlmsg_parse(CTRL_ATTR_FAMILY_ID, &[]).unwrap();
    assert_eq!(
        tb.require(CTRL_ATTR_FAMILY_ID)
            .unwrap()
            .nla_get_u16()
            .unwrap(),
        0x10
    );

    let mut short = NlMsg::alloc_simple(GENL_ID_CTRL, 0);
    short.append(&[3, 1]);
    let bytes = short.complete(0, 1, 0).unwrap().to_vec();
    let m = messages(&bytes).next().unwrap().unwrap();
    assert!(matches!(m.genlmsg_parse(1, &[]), Err(Error::Decode { .. })));
}

// ---------------------------------------------------------------------------
// Dumps, DUMP_INTR, notifications, multicast groups
// ---------------------------------------------------------------------------

const FAMILY: u16 = 0x19;

/// One message: header (exact `nlmsg_len`) + payload, padded.
fn message(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let hdr = NlMsgHdr {
        nlmsg_len: (NLMSG_HDRLEN + payload.len()) as u32,
        nlmsg_type: ty,
        nlmsg_flags: flags,
        nlmsg_seq: seq,
        nlmsg_pid: 0,
    };
    let mut b = hdr.to_bytes().to_vec();
    b.extend_from_slice(payload);
    b.resize(align4(b.len()), 0);
    b
}

/// A log entry as GET (or EVENT, `cmd`) carries it.
fn entry_msg(cmd: u8, flags: u16, seq: u32, id: u32, text: &str) -> Vec<u8> {
    let mut text0 = text.as_bytes().to_vec();
    text0.push(0);
    let payload = concat(&[
        vec![cmd, 1, 0, 0],
        nla(proto::GENL_ATTR_ID, &id.to_ne_bytes()),
        nla(proto::GENL_ATTR_MSG, &text0),
        nla(proto::GENL_ATTR_PORTID, &(1000 + id).to_ne_bytes()),
    ]);
    message(FAMILY, flags, seq, &payload)
}

fn dump_msg(seq: u32, extra: u16, id: u32, text: &str) -> Vec<u8> {
    entry_msg(proto::GENL_CMD_GET, NLM_F_MULTI | extra, seq, id, text)
}

fn done(seq: u32, extra: u16, errno: i32, tlvs: &[u8]) -> Vec<u8> {
    let payload = concat(&[errno.to_ne_bytes().to_vec(), tlvs.to_vec()]);
    message(NLMSG_DONE, NLM_F_MULTI | extra, seq, &payload)
}

fn state(seq: u32) -> RecvState {
    RecvState {
        seq_expect: Some(seq),
        ack_pending: false,
        multipart: false,
        interrupted: false,
    }
}

/// `dump_log`'s callbacks on the given datagrams, one `recvmsgs` round
/// each; returns the entries, whether DUMP_INTR was seen, and the result
/// (loop done or error) after each datagram.
fn run_dump(
    datagrams: &[Vec<u8>],
    with_intr_cb: bool,
) -> (Vec<Entry>, bool, Vec<Result<bool, String>>) {
    let (mut entries, mut intr) = (Vec::new(), false);
    let mut results = Vec::new();
    let mut st = state(5);
    {
        let mut cb = NlCb::new();
        cb.set(NlCbType::Valid, |m| {
            entries.push(parse_entry(m, proto::GENL_CMD_GET)?);
            Ok(NlCbAction::Ok)
        });
        if with_intr_cb {
            cb.set(NlCbType::DumpIntr, |_| {
                intr = true;
                Ok(NlCbAction::Ok)
            });
        }
        for d in datagrams {
            results.push(handle_datagram(d, &mut st, &mut cb).map_err(|e| e.to_string()));
        }
    }
    (entries, intr || st.interrupted, results)
}

fn entry(id: u32, text: &str) -> Entry {
    Entry {
        id,
        portid: 1000 + id,
        msg: text.into(),
    }
}

#[test]
fn a_multipart_dump_goes_on_until_done() {
    let first = concat(&[
        dump_msg(5, 0, 1, "hello"),
        dump_msg(5, 0, 2, "hello netlink"),
    ]);
    let second = concat(&[
        dump_msg(4, 0, 9, "stale"),
        dump_msg(5, 0, 3, ""),
        done(5, 0, 0, &[]),
    ]);
    let (entries, intr, results) = run_dump(&[first, second], true);
    assert_eq!(results, [Ok(false), Ok(true)], "not done until NLMSG_DONE");
    assert_eq!(
        entries,
        [entry(1, "hello"), entry(2, "hello netlink"), entry(3, "")]
    );
    assert!(!intr);
}

#[test]
fn dump_intr_goes_to_its_callback_or_is_remembered() {
    let datagram = concat(&[
        dump_msg(5, 0, 1, "a"),
        dump_msg(5, NLM_F_DUMP_INTR, 2, "b"),
        done(5, 0, 0, &[]),
    ]);
    let (entries, intr, results) = run_dump(std::slice::from_ref(&datagram), true);
    assert_eq!((entries.len(), intr, results), (2, true, vec![Ok(true)]));
    // Without the callback the loop state remembers it: recvmsgs then
    // fails with DumpInterrupted after NLMSG_DONE, as libnl does.
    let mut st = state(5);
    assert!(handle_datagram(&datagram, &mut st, &mut NlCb::new()).unwrap());
    assert!(st.interrupted);
}

#[test]
fn a_done_with_an_errno_is_the_dumps_error() {
    let mut text = b"the log is busy".to_vec();
    text.push(0);
    let tlvs = nla(NLMSGERR_ATTR_MSG, &text);
    let (_, _, results) = run_dump(&[done(5, NLM_F_ACK_TLVS, -libc::EBUSY, &tlvs)], true);
    assert_eq!(
        results,
        [Err(
            "kernel replied EBUSY (errno 16): the log is busy".into()
        )]
    );
    // A DONE without its int (old kernels) is a success.
    let bare = message(NLMSG_DONE, NLM_F_MULTI, 5, &[]);
    assert_eq!(run_dump(&[bare], true).2, [Ok(true)]);
}

#[test]
fn truncated_dump_datagrams_and_bad_entries_are_errors() {
    let datagram = concat(&[dump_msg(5, 0, 1, "hello"), dump_msg(5, 0, 2, "world")]);
    let cut = datagram[..datagram.len() - 6].to_vec();
    let (entries, _, results) = run_dump(&[cut], true);
    assert_eq!(entries, [entry(1, "hello")]);
    assert_eq!(
        results,
        [Err(
            "malformed netlink message: nlmsg_len below 16 or past the datagram".into()
        )]
    );
    let no_id = message(
        FAMILY,
        NLM_F_MULTI,
        5,
        &concat(&[vec![2, 1, 0, 0], nla(proto::GENL_ATTR_MSG, b"x\0")]),
    );
    assert_eq!(
        run_dump(&[no_id], true).2,
        [Err("attribute 2: missing".into())]
    );
}

#[test]
fn without_the_seq_check_notifications_reach_the_callbacks() {
    let datagram = concat(&[
        entry_msg(proto::GENL_CMD_EVENT, 0, 0, 3, "hello"),
        entry_msg(proto::GENL_CMD_EVENT, 0, 77, 4, "hi"),
    ]);
    let mut got = Vec::new();
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |m| {
        got.push(parse_entry(m, proto::GENL_CMD_EVENT)?);
        Ok(NlCbAction::Ok)
    });
    let mut st = state(1);
    assert!(
        !handle_datagram(&datagram, &mut st, &mut cb).unwrap(),
        "not ours"
    );
    st.seq_expect = None; // nl_socket_disable_seq_check()
    assert!(handle_datagram(&datagram, &mut st, &mut cb).unwrap());
    drop(cb);
    assert_eq!(got, [entry(3, "hello"), entry(4, "hi")]);
}

#[test]
fn mcast_groups_are_a_list_of_nests() {
    let group = |id: u32, name: &str| {
        let mut name0 = name.as_bytes().to_vec();
        name0.push(0);
        concat(&[
            nla(CTRL_ATTR_MCAST_GRP_ID, &id.to_ne_bytes()),
            nla(CTRL_ATTR_MCAST_GRP_NAME, &name0),
        ])
    };
    let groups = concat(&[
        nla(1 | 0x8000, &group(26, "events")),
        nla(2 | 0x8000, &group(27, "x")),
    ]);
    let payload = concat(&[
        vec![1, 2, 0, 0],
        nla(CTRL_ATTR_MCAST_GROUPS | 0x8000, &groups),
    ]);
    let msg = message(GENL_ID_CTRL, 0, 1, &payload);
    let msg = messages(&msg).next().unwrap().unwrap();
    let tb = msg
        .genlmsg_parse(
            CTRL_ATTR_MCAST_GROUPS,
            &[(CTRL_ATTR_MCAST_GROUPS, NlaPolicy::Nested)],
        )
        .unwrap();
    let found: Vec<(String, u32)> = tb
        .require(CTRL_ATTR_MCAST_GROUPS)
        .unwrap()
        .nested_attrs()
        .map(|nest| {
            let grp = nest.unwrap().nla_parse_nested(2, &[]).unwrap();
            (
                grp.require(CTRL_ATTR_MCAST_GRP_NAME)
                    .unwrap()
                    .nla_get_string()
                    .unwrap()
                    .to_owned(),
                grp.require(CTRL_ATTR_MCAST_GRP_ID)
                    .unwrap()
                    .nla_get_u32()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(found, [("events".into(), 26), ("x".into(), 27)]);
    // A nest whose length runs past the list: one error, then the end.
    let bad = nla(CTRL_ATTR_MCAST_GROUPS, &[200, 0, 1, 0]);
    let tb = nla_parse(&bad, 7, &[]).unwrap();
    let mut it = tb.require(CTRL_ATTR_MCAST_GROUPS).unwrap().nested_attrs();
    assert!(matches!(it.next(), Some(Err(Error::Decode { .. }))));
    assert!(it.next().is_none());
}
