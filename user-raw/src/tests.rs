//! Host unit tests: encoding, decoding and NLMSG_ERROR parsing, no kernel.

use super::*;

/// One message as the kernel would build it, optionally without padding.
fn msg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    encode(&mut buf, ty, flags, seq, payload).expect("small payload encodes");
    buf
}

/// An NLMSG_ERROR answering `req`: `struct nlmsgerr`, the request's payload
/// unless `capped`, then the given TLVs.
fn error_msg(error: i32, req: &[u8], capped: bool, tlvs: &[u8]) -> (NlMsgHdr, Vec<u8>) {
    let mut body = error.to_ne_bytes().to_vec();
    body.extend_from_slice(if capped { &req[..NLMSG_HDRLEN] } else { req });
    body.resize(nlmsg_align(body.len()), 0);
    body.extend_from_slice(tlvs);
    let mut flags = if capped { NLM_F_CAPPED } else { 0 };
    if !tlvs.is_empty() {
        flags |= NLM_F_ACK_TLVS;
    }
    let hdr = NlMsgHdr {
        nlmsg_len: 0,
        nlmsg_type: NLMSG_ERROR,
        nlmsg_flags: flags,
        nlmsg_seq: 7,
        nlmsg_pid: 0,
    };
    (hdr, body)
}

/// A `NLMSGERR_ATTR_MSG` TLV with a NUL-terminated string, padded.
fn extack_tlv(text: &str) -> Vec<u8> {
    let len = (4 + text.len() + 1) as u16;
    let mut tlv = [len.to_ne_bytes(), NLMSGERR_ATTR_MSG.to_ne_bytes()].concat();
    tlv.extend_from_slice(text.as_bytes());
    tlv.push(0);
    tlv.resize(nlmsg_align(tlv.len()), 0);
    tlv
}

#[test]
fn header_matches_the_c_struct() {
    assert_eq!(NLMSG_HDRLEN, 16);
    assert_eq!(size_of::<NlMsgHdr>(), size_of::<libc::nlmsghdr>());
    let h = NlMsgHdr {
        nlmsg_len: 21,
        nlmsg_type: 0x10,
        nlmsg_flags: 5,
        nlmsg_seq: 9,
        nlmsg_pid: 1234,
    };
    assert_eq!(NlMsgHdr::from_bytes(&h.to_bytes()), Some(h));
    assert_eq!(NlMsgHdr::from_bytes(&[0; 15]), None);
}

#[test]
fn alignment() {
    let aligned: Vec<usize> = [0, 1, 3, 4, 5, 16, 17].map(nlmsg_align).to_vec();
    assert_eq!(aligned, [0, 4, 4, 4, 8, 16, 20]);
}

#[test]
fn encode_decode_round_trip() {
    for size in [0usize, 1, 3, 4, 5] {
        let payload: Vec<u8> = (0..size as u8).map(|i| b'a' + i).collect();
        let buf = msg(proto::ECHO_MSG_TYPE, NLM_F_REQUEST, 42, &payload);
        assert_eq!(
            buf.len(),
            nlmsg_align(16 + size),
            "datagram padded, size {size}"
        );
        let all: Vec<_> = messages(&buf).collect::<Result<_, _>>().expect("decodes");
        assert_eq!(all.len(), 1);
        let (hdr, body) = all[0];
        assert_eq!(hdr.nlmsg_len as usize, 16 + size, "nlmsg_len unpadded");
        assert_eq!(
            (hdr.nlmsg_type, hdr.nlmsg_flags, hdr.nlmsg_seq),
            (0x10, NLM_F_REQUEST, 42)
        );
        assert_eq!(body, &payload[..]);
    }
}

#[test]
fn decode_batch_and_missing_final_padding() {
    let mut buf = msg(0x10, 0, 1, b"a");
    buf.extend(msg(0x10, 0, 2, b"abc"));
    buf.extend(msg(0x10, 0, 3, b"abcde"));
    buf.truncate(buf.len() - 3); // the kernel may omit the last message's padding
    let seqs: Vec<u32> = messages(&buf)
        .map(|m| m.expect("decodes").0.nlmsg_seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(messages(&[]).count(), 0);
}

/// Decode `buf` and return the error, checking iteration stops after it.
fn decode_error(buf: &[u8]) -> &'static str {
    let mut it = messages(buf);
    let err = loop {
        match it.next() {
            Some(Ok(_)) => continue,
            Some(Err(Error::Decode { reason, .. })) => break reason,
            other => panic!("expected a decode error, got {other:?}"),
        }
    };
    assert!(it.next().is_none(), "iteration stops after an error");
    err
}

#[test]
fn decode_rejects_bad_lengths() {
    for bad_len in [0u32, 8, 15] {
        let mut buf = msg(0x10, 0, 1, b"abcd");
        buf[0..4].copy_from_slice(&bad_len.to_ne_bytes());
        assert_eq!(decode_error(&buf), "nlmsg_len smaller than the header");
    }
    let mut buf = msg(0x10, 0, 1, b"abcd");
    buf[0..4].copy_from_slice(&21u32.to_ne_bytes());
    assert_eq!(
        decode_error(&buf),
        "nlmsg_len beyond the end of the datagram"
    );
    buf[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(
        decode_error(&buf),
        "nlmsg_len beyond the end of the datagram"
    );
    assert_eq!(
        decode_error(&[1, 2, 3]),
        "trailing bytes shorter than a header"
    );
}

#[test]
fn decode_rejects_garbage_tail() {
    let mut buf = msg(0x10, 0, 1, b"hello");
    buf.extend_from_slice(b"junk!");
    let mut it = messages(&buf);
    assert_eq!(it.next().expect("first").expect("good message").1, b"hello");
    assert!(matches!(
        it.next(),
        Some(Err(Error::Decode { offset: 24, .. }))
    ));
    assert!(it.next().is_none());
}

#[test]
fn parse_ack() {
    let req = msg(0x10, NLM_F_REQUEST | NLM_F_ACK, 7, b"hello");
    let (hdr, body) = error_msg(0, &req, true, &[]);
    let err = parse_error(&hdr, &body).expect("parses");
    assert_eq!((err.error, err.request.nlmsg_seq, err.extack), (0, 7, None));
}

#[test]
fn parse_error_with_extack() {
    let req = msg(0x10, NLM_F_REQUEST, 7, b"hello");
    for capped in [false, true] {
        let (hdr, body) = error_msg(
            -libc::EMSGSIZE,
            &req,
            capped,
            &extack_tlv("payload too long"),
        );
        let err = parse_error(&hdr, &body).expect("parses");
        assert_eq!(err.error, -libc::EMSGSIZE);
        assert_eq!(err.request.nlmsg_len, 21);
        assert_eq!(
            err.extack.as_deref(),
            Some("payload too long"),
            "capped {capped}"
        );
    }
}

#[test]
fn parse_error_without_extack_ignores_copied_payload() {
    let req = msg(0x10, NLM_F_REQUEST, 7, b"hello");
    let (hdr, body) = error_msg(-libc::EINVAL, &req, false, &[]);
    assert_eq!(parse_error(&hdr, &body).expect("parses").extack, None);
}

#[test]
fn parse_error_rejects_malformed() {
    let req = msg(0x10, NLM_F_REQUEST, 7, b"hello");
    let (hdr, body) = error_msg(-libc::EMSGSIZE, &req, true, &extack_tlv("x"));
    assert!(matches!(
        parse_error(&hdr, &body[..19]),
        Err(Error::Decode { .. })
    ));
    let mut bad_tlv = body.clone();
    bad_tlv[20..22].copy_from_slice(&2u16.to_ne_bytes()); // nla_len < 4
    assert!(matches!(
        parse_error(&hdr, &bad_tlv),
        Err(Error::Decode { .. })
    ));
    bad_tlv[20..22].copy_from_slice(&200u16.to_ne_bytes()); // past the end
    assert!(matches!(
        parse_error(&hdr, &bad_tlv),
        Err(Error::Decode { .. })
    ));
    let uncapped = NlMsgHdr {
        nlmsg_flags: NLM_F_ACK_TLVS,
        ..hdr
    };
    let mut long_copy = body.clone();
    long_copy[4..8].copy_from_slice(&100u32.to_ne_bytes()); // copied request's nlmsg_len
    assert!(matches!(
        parse_error(&uncapped, &long_copy),
        Err(Error::Decode { .. })
    ));
    long_copy[4..8].copy_from_slice(&3u32.to_ne_bytes());
    assert!(matches!(
        parse_error(&uncapped, &long_copy),
        Err(Error::Decode { .. })
    ));
}

/// A `NLMSGERR_ATTR_MISS_TYPE` TLV: a u32, as `netlink_ack()` puts it.
fn miss_type_tlv(ty: u32) -> Vec<u8> {
    let mut tlv = [8u16.to_ne_bytes(), NLMSGERR_ATTR_MISS_TYPE.to_ne_bytes()].concat();
    tlv.extend_from_slice(&ty.to_ne_bytes());
    tlv
}

#[test]
fn parse_error_with_missing_attribute() {
    let req = msg(0x10, NLM_F_REQUEST, 7, b"\x01\x01\0\0");
    let mut tlvs = extack_tlv("missing attribute MSG");
    tlvs.extend(miss_type_tlv(1));
    for capped in [false, true] {
        let (hdr, body) = error_msg(-libc::EINVAL, &req, capped, &tlvs);
        let err = parse_error(&hdr, &body).expect("parses");
        assert_eq!(err.error, -libc::EINVAL);
        assert_eq!(err.extack.as_deref(), Some("missing attribute MSG"));
        assert_eq!(err.missing_attr, Some(1), "capped {capped}");
    }
    // Only the missing type, no message.
    let (hdr, body) = error_msg(-libc::EINVAL, &req, true, &miss_type_tlv(3));
    let err = parse_error(&hdr, &body).expect("parses");
    assert_eq!((err.extack, err.missing_attr), (None, Some(3)));
    // A MISS_TYPE that is not a u32, or does not fit an nla_type.
    let mut short = miss_type_tlv(1);
    short.truncate(6);
    short[0..2].copy_from_slice(&6u16.to_ne_bytes());
    short.resize(8, 0);
    let (hdr, body) = error_msg(-libc::EINVAL, &req, true, &short);
    assert!(matches!(
        parse_error(&hdr, &body),
        Err(Error::Decode { .. })
    ));
    let (hdr, body) = error_msg(-libc::EINVAL, &req, true, &miss_type_tlv(0x1_0000));
    assert!(matches!(
        parse_error(&hdr, &body),
        Err(Error::Decode { .. })
    ));
}

#[test]
fn kernel_error_display_with_missing_attribute() {
    let e = Error::Kernel {
        errno: libc::EINVAL,
        extack: Some("missing attribute MSG".into()),
        missing_attr: Some(1),
    };
    assert_eq!(
        e.to_string(),
        "kernel replied EINVAL (errno 22): missing attribute MSG (missing attribute type 1)"
    );
    let e = Error::Kernel {
        errno: libc::EINVAL,
        extack: None,
        missing_attr: Some(1),
    };
    assert_eq!(
        e.to_string(),
        "kernel replied EINVAL (errno 22): Invalid argument (missing attribute type 1)"
    );
}

#[test]
fn family_not_found_names_the_module() {
    let e = Error::FamilyNotFound {
        name: proto::GENL_FAMILY_NAME.into(),
    };
    assert_eq!(
        e.to_string(),
        "generic netlink family my_genl not found: is kmod-genl loaded?"
    );
    let e = Error::FamilyNotFound { name: "x".into() };
    assert_eq!(
        e.to_string(),
        "generic netlink family x not found: is its module loaded?"
    );
}

#[test]
fn kernel_error_display() {
    let e = Error::Kernel {
        errno: libc::EMSGSIZE,
        extack: Some("payload too long".into()),
        missing_attr: None,
    };
    assert_eq!(
        e.to_string(),
        "kernel replied EMSGSIZE (errno 90): payload too long"
    );
    let e = Error::Kernel {
        errno: libc::EMSGSIZE,
        extack: None,
        missing_attr: None,
    };
    assert_eq!(
        e.to_string(),
        "kernel replied EMSGSIZE (errno 90): Message too long"
    );
    let e = Error::Kernel {
        errno: 200,
        extack: None,
        missing_attr: None,
    };
    assert!(e
        .to_string()
        .starts_with("kernel replied error 200 (errno 200): "));
}

#[test]
fn echo_events_match_the_sequence_number() {
    let reply = NlMsgHdr {
        nlmsg_len: 21,
        nlmsg_type: 0x10,
        nlmsg_flags: 0,
        nlmsg_seq: 7,
        nlmsg_pid: 99,
    };
    assert_eq!(
        reply_event(7, 0x10, &reply, b"hello").ok(),
        Some(EchoEvent::Reply(&b"hello"[..]))
    );
    assert_eq!(
        reply_event(8, 0x10, &reply, b"hello").ok(),
        Some(EchoEvent::Ignore),
        "stale seq"
    );
    let req = msg(0x10, NLM_F_REQUEST | NLM_F_ACK, 7, b"hello");
    let (ack, body) = error_msg(0, &req, true, &[]);
    assert_eq!(reply_event(7, 0x10, &ack, &body).ok(), Some(EchoEvent::Ack));
    let (err, body) = error_msg(-libc::EMSGSIZE, &req, false, &extack_tlv("too long"));
    match reply_event(7, 0x10, &err, &body) {
        Err(Error::Kernel { errno, extack, .. }) => {
            assert_eq!((errno, extack.as_deref()), (90, Some("too long")))
        }
        other => panic!("expected a kernel error, got {other:?}"),
    }
    let odd = NlMsgHdr {
        nlmsg_type: 0x11,
        ..reply
    };
    assert!(matches!(
        reply_event(7, 0x10, &odd, b""),
        Err(Error::Unexpected { ty: 0x11, seq: 7 })
    ));
}

#[test]
fn sequence_numbers_wrap_past_zero() {
    let mut sock = Socket::connect(libc::NETLINK_ROUTE).expect("NETLINK_ROUTE socket");
    assert_eq!(sock.last_seq(), 0);
    assert_eq!((sock.next_seq(), sock.next_seq()), (1, 2));
    sock.seq = u32::MAX - 1;
    assert_eq!((sock.next_seq(), sock.next_seq()), (u32::MAX, 1));
}
