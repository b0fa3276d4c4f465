//! Host tests with real netlink sockets. The project's units 31 and 25 do
//! not exist on the host (no module), but NETLINK_ROUTE (unit 0) does.

use std::time::Duration;
use user_raw::{messages, parse_error, Error, Socket, NLMSG_ERROR, NLM_F_ACK, RECV_BUF_LEN};

#[test]
fn missing_units_name_their_module() {
    let cases = [
        (
            proto::RAW_UNIT,
            "netlink unit 31 not available: is kmod-raw loaded?",
        ),
        (
            proto::KTHREAD_UNIT,
            "netlink unit 25 not available: is kmod-kthread loaded?",
        ),
        (30, "netlink unit 30 not available: is its module loaded?"),
    ];
    for (unit, text) in cases {
        match Socket::connect(unit) {
            Err(e @ Error::UnitUnavailable { .. }) => assert_eq!(e.to_string(), text),
            Err(e) => panic!("unit {unit}: unexpected error {e}"),
            Ok(_) => panic!("unit {unit} exists on this host: is a module loaded?"),
        }
    }
}

#[test]
fn route_socket_gets_a_portid() {
    let sock = Socket::connect(libc::NETLINK_ROUTE).expect("NETLINK_ROUTE socket");
    assert_ne!(sock.portid(), 0);
    assert_eq!(sock.unit(), libc::NETLINK_ROUTE);
}

/// rtnetlink answers a type above RTM_MAX with NLMSG_ERROR -EOPNOTSUPP:
/// exercises sendmsg, recvmsg, the decoder and the error parser for real.
#[test]
fn route_socket_error_round_trip() {
    let mut sock = Socket::connect(libc::NETLINK_ROUTE).expect("NETLINK_ROUTE socket");
    let seqs = sock
        .send_batch(&[(0x3ff, NLM_F_ACK, b"a"), (0x3ff, NLM_F_ACK, b"abcde")])
        .expect("send");
    assert_eq!(seqs, [1, 2]);
    let mut buf = vec![0; RECV_BUF_LEN];
    for seq in seqs {
        let n = sock.recv(&mut buf).expect("recv");
        let (hdr, body) = messages(&buf[..n])
            .next()
            .expect("one message")
            .expect("decodes");
        assert_eq!(
            (hdr.nlmsg_type, hdr.nlmsg_seq, hdr.nlmsg_pid),
            (NLMSG_ERROR, seq, sock.portid())
        );
        let err = parse_error(&hdr, body).expect("parses");
        assert_eq!((err.error, err.request.nlmsg_seq), (-libc::EOPNOTSUPP, seq));
    }
}

#[test]
fn truncated_datagram_is_an_error() {
    let mut sock = Socket::connect(libc::NETLINK_ROUTE).expect("NETLINK_ROUTE socket");
    sock.send(0x3ff, NLM_F_ACK, b"hello").expect("send");
    let mut small = [0u8; 20];
    assert!(matches!(
        sock.recv(&mut small),
        Err(Error::Truncated { buf_len: 20 })
    ));
}

#[test]
fn silence_is_a_timeout() {
    let mut sock = Socket::connect(libc::NETLINK_ROUTE).expect("NETLINK_ROUTE socket");
    sock.set_timeout(Duration::from_millis(50))
        .expect("SO_RCVTIMEO");
    let mut buf = vec![0; RECV_BUF_LEN];
    let err = sock
        .recv(&mut buf)
        .expect_err("nothing was sent, nothing arrives");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("no reply from the kernel within 50 ms"));
}

/// `--dump` on a raw module is a usage error (exit 2), before any socket.
#[test]
fn dump_of_a_raw_module_is_a_usage_error() {
    for module in ["raw", "kthread"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_user-raw"))
            .args(["--module", module, "--dump"])
            .output()
            .expect("the CLI runs");
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "user-raw: error: --dump applies to generic netlink only: the raw units keep no log\n"
        );
        assert!(out.stdout.is_empty());
    }
}
