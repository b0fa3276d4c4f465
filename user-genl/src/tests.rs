//! Unit tests: encoding, decoding and error text, without a kernel.

use std::io::Cursor;

use neli::nl::Nlmsghdr;
use neli::FromBytes;

use super::*;

/// Serialise a message the way socket mode sends it.
fn wire<P: Size + ToBytes + Debug>(msg: &Nlmsghdr<u16, P>) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    serialise(msg, &mut buf).expect("serialises");
    buf.into_inner()
}

fn raw_message(payload: &[u8]) -> Nlmsghdr<u16, Buffer> {
    NlmsghdrBuilder::default()
        .nl_type(proto::ECHO_MSG_TYPE)
        .nl_flags(NlmF::REQUEST)
        .nl_seq(1)
        .nl_payload(NlPayload::Payload(Buffer::from(payload)))
        .build()
        .expect("builds")
}

/// Quirk 1, pinned: neli writes the padded length into nlmsg_len.
#[test]
fn neli_pads_nlmsg_len() {
    let bytes = wire(&raw_message(b"hello netlink"));
    assert_eq!(bytes.len(), 32);
    assert_eq!(
        &bytes[0..4],
        &32u32.to_ne_bytes(),
        "NLMSG_ALIGN(16 + 13), not 29"
    );
    assert_eq!(&bytes[16..29], b"hello netlink");
    assert_eq!(&bytes[29..], &[0, 0, 0]);
    // An empty payload is exactly the header.
    assert_eq!(wire(&raw_message(b"")).len(), 16);
}

/// Socket mode serialises each request over the last one: a short request
/// after a long one is exactly its own bytes, as `NlSocketHandle::send`'s
/// fresh buffer would hold them.
#[test]
fn the_send_buffer_is_reused_without_leftovers() {
    let mut buf = Cursor::new(Vec::new());
    serialise(&raw_message(&[0xaa; 1000]), &mut buf).expect("serialises");
    let capacity = buf.get_ref().capacity();
    serialise(&raw_message(b"hi"), &mut buf).expect("serialises");
    assert_eq!(buf.get_ref(), &wire(&raw_message(b"hi")));
    assert_eq!(buf.get_ref().capacity(), capacity, "reallocated");
    let mut fresh = Cursor::new(vec![0; raw_message(b"hi").padded_size()]);
    raw_message(b"hi").to_bytes(&mut fresh).expect("serialises");
    assert_eq!(buf.get_ref(), fresh.get_ref());
}

/// The raw bytes of one netlink message as the kernel writes it:
/// `nlmsg_len` unpadded, the payload padded to 4 bytes.
fn message_bytes(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&4321u32.to_ne_bytes());
    msg.extend_from_slice(payload);
    msg.resize(msg.len().next_multiple_of(4), 0);
    msg
}

/// Socket mode's receive loop: every message of the datagram, then `None`.
#[test]
fn next_message_walks_a_datagram() {
    let mut datagram = message_bytes(proto::ECHO_MSG_TYPE, 0, 7, b"one");
    datagram.extend(message_bytes(proto::ECHO_MSG_TYPE, 0, 8, b"second"));
    datagram.extend(message_bytes(3, 0, 9, b"")); // NLMSG_DONE, empty, last
    let mut cursor = Cursor::new(&datagram[..]);
    let mut next = || next_message::<Buffer>(&mut cursor).expect("parses");
    let first = next().expect("a first message");
    assert_eq!(*first.nl_seq(), 7);
    assert!(matches!(first.nl_payload(), NlPayload::Payload(p) if p.as_ref() == b"one"));
    let second = next().expect("a second message");
    assert!(matches!(second.nl_payload(), NlPayload::Payload(p) if p.as_ref() == b"second"));
    // neli tells an empty NLMSG_DONE by the end of the cursor: the cursor
    // spans the received bytes only.
    let done = next().expect("NLMSG_DONE");
    assert!(matches!(done.nl_payload(), NlPayload::Empty), "{done:?}");
    assert!(next().is_none());
    assert!(next().is_none());
}

/// A message cut short is neli's parse error, with the text it had through
/// `NlSocketHandle`.
#[test]
fn next_message_reports_neli_errors() {
    let datagram = message_bytes(proto::ECHO_MSG_TYPE, 0, 7, b"cut short");
    let mut cursor = Cursor::new(&datagram[..20]);
    let err = next_message::<Buffer>(&mut cursor).expect_err("20 bytes of 28");
    assert!(
        matches!(&err, Error::Neli(text) if text.starts_with("Deserialization error")),
        "{err:?}"
    );
}

#[test]
fn echoed_padding_is_stripped_exactly() {
    assert_eq!(
        strip_neli_padding(13, b"hello netlink\0\0\0".to_vec()),
        b"hello netlink"
    );
    assert_eq!(strip_neli_padding(1, b"x\0\0\0".to_vec()), b"x");
    assert_eq!(strip_neli_padding(0, Vec::new()), b"");
    assert_eq!(strip_neli_padding(4, b"abcd".to_vec()), b"abcd");
    // Not the padded length, or not zeros: left as it came.
    assert_eq!(strip_neli_padding(1, b"x\0".to_vec()), b"x\0");
    assert_eq!(strip_neli_padding(1, b"xyz\0".to_vec()), b"xyz\0");
    assert_eq!(strip_neli_padding(2, b"x".to_vec()), b"x");
}

#[test]
fn my_genl_request_bytes() {
    let msg = NlmsghdrBuilder::default()
        .nl_type(34u16)
        .nl_flags(NlmF::REQUEST)
        .nl_seq(5)
        .nl_payload(NlPayload::Payload(
            my_genl_request(MyGenlCmd::Echo, Some("hello")).expect("builds"),
        ))
        .build()
        .expect("builds");
    let bytes = wire(&msg);
    let mut expected = Vec::new();
    expected.extend_from_slice(&32u32.to_ne_bytes()); // 16 + 4 + NLA_ALIGN(4 + 6)
    expected.extend_from_slice(&34u16.to_ne_bytes());
    expected.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    expected.extend_from_slice(&5u32.to_ne_bytes());
    expected.extend_from_slice(&0u32.to_ne_bytes());
    expected.extend_from_slice(&[proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION, 0, 0]);
    expected.extend_from_slice(&10u16.to_ne_bytes()); // nla_len: unpadded
    expected.extend_from_slice(&proto::GENL_ATTR_MSG.to_ne_bytes());
    expected.extend_from_slice(b"hello\0\0\0");
    assert_eq!(bytes, expected);
}

#[test]
fn unknown_commands_and_missing_msg_can_be_built() {
    let req = my_genl_request(MyGenlCmd::from(99), None).expect("builds");
    assert_eq!(*req.cmd(), MyGenlCmd::UnrecognizedConst(99));
    assert!(req.attrs().is_empty());
}

#[test]
fn bad_messages_are_refused_before_sending() {
    assert!(matches!(
        my_genl_request(MyGenlCmd::Echo, Some("a\0b")),
        Err(Error::NulInMessage)
    ));
    let long = "x".repeat(MAX_REQUEST_PAYLOAD + 1);
    assert!(matches!(
        my_genl_request(MyGenlCmd::Echo, Some(&long)),
        Err(Error::PayloadTooLarge { .. })
    ));
}

/// An ECHO reply as the kernel would send it, parsed by neli.
fn parse_reply(attrs: &[(u16, &[u8])]) -> MyGenlMsg {
    let mut body = vec![proto::GENL_CMD_ECHO, 1, 0, 0];
    for (ty, value) in attrs {
        let len = 4 + value.len();
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&ty.to_ne_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let len = body.len();
    MyGenlMsg::from_bytes_with_input(&mut Cursor::new(body), len).expect("parses")
}

#[test]
fn msg_is_read_up_to_its_nul() {
    let msg = |attrs: &[(u16, &[u8])]| msg_of(&parse_reply(attrs));
    assert_eq!(msg(&[(1, b"hello\0")]).expect("MSG"), b"hello");
    // An empty attribute: neli's String parser would underflow here.
    assert_eq!(msg(&[(1, b"")]).expect("MSG"), b"");
    assert!(matches!(msg(&[(2, b"x\0")]), Err(Error::Unexpected(_))));
}

/// An NLMSG_ERROR with an extack message, as the kernel builds it
/// without NETLINK_CAP_ACK: error, the whole request, then the TLVs.
fn parse_error_message(errno: i32, text: &str) -> Nlmsghdr<u16, Buffer> {
    let request = wire(&raw_message(b"abcd"));
    let mut body = Vec::new();
    body.extend_from_slice(&(-errno).to_ne_bytes());
    body.extend_from_slice(&request);
    let attr_len = 4 + text.len() + 1;
    body.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    body.extend_from_slice(&1u16.to_ne_bytes()); // NLMSGERR_ATTR_MSG
    body.extend_from_slice(text.as_bytes());
    body.push(0);
    body.resize(body.len().next_multiple_of(4), 0);
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
    msg.extend_from_slice(&0x200u16.to_ne_bytes()); // NLM_F_ACK_TLVS, not NLM_F_CAPPED
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&4321u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    Nlmsghdr::from_bytes(&mut Cursor::new(msg)).expect("parses")
}

#[test]
fn kernel_errors_carry_errno_and_extack() {
    let msg = parse_error_message(libc::EMSGSIZE, "payload longer than 16384 bytes");
    let NlPayload::Err(err) = msg.nl_payload() else {
        panic!("not an error: {msg:?}");
    };
    let err = kernel_error(err);
    assert!(
        matches!(&err, Error::Kernel { errno: libc::EMSGSIZE, extack: Some(t) } if t == "payload longer than 16384 bytes"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "kernel replied EMSGSIZE (errno 90): payload longer than 16384 bytes"
    );
}

#[test]
fn error_messages_name_the_fix() {
    let cases = [
        (
            Error::UnitUnavailable { unit: 31 },
            "netlink unit 31 not available: is kmod-raw loaded?",
        ),
        (
            Error::UnitUnavailable { unit: 25 },
            "netlink unit 25 not available: is kmod-kthread loaded?",
        ),
        (
            Error::FamilyNotFound {
                family: "my_genl".into(),
            },
            "generic netlink family my_genl not found: is kmod-genl loaded?",
        ),
        (
            Error::FamilyNotFound {
                family: "other".into(),
            },
            "generic netlink family other not found: is its module loaded?",
        ),
        (
            Error::Kernel {
                errno: libc::EOPNOTSUPP,
                extack: None,
            },
            "kernel replied EOPNOTSUPP (errno 95): Operation not supported",
        ),
    ];
    for (err, text) in cases {
        assert_eq!(err.to_string(), text);
    }
}

#[test]
fn io_errors_become_typed_errors() {
    let io = |errno| SocketError::Io(Arc::new(io::Error::from_raw_os_error(errno)));
    let timeout = Duration::from_millis(20);
    assert!(matches!(
        socket_error("socket", io(libc::EPROTONOSUPPORT), 31, timeout),
        Error::UnitUnavailable { unit: 31 }
    ));
    assert!(matches!(
        socket_error("recv", io(libc::EAGAIN), 31, timeout),
        Error::Timeout { .. }
    ));
    assert!(matches!(
        socket_error("recv", io(libc::ENOBUFS), 31, timeout),
        Error::Os { call: "recv", .. }
    ));
}
