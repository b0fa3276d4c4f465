//! user-raw against the raw units, inside the VM: `cargo xtask test`.
//!
//! On the host these tests are ignored (the host kernel cannot load the
//! modules); `cargo xtask test` boots the project's kernel with the modules
//! loaded and runs them with `--ignored --test-threads=1` (some load and
//! unload modules, which must not overlap with the others).

use netlink_rosetta::{Kmod, RAW};
use std::time::Duration;
use user_raw::{
    messages, parse_error, Error, Socket, NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK, RECV_BUF_LEN,
};

const UNIT: i32 = proto::RAW_UNIT;

/// `n` bytes of a pattern that shows misplaced bytes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn connect() -> Socket {
    Socket::connect(UNIT).expect("kmod-raw answers on its unit")
}

/// Receives one datagram and returns its messages as (type, seq, payload).
fn recv_all(sock: &mut Socket) -> Result<Vec<(u16, u32, Vec<u8>)>, Error> {
    let mut buf = vec![0; RECV_BUF_LEN];
    let n = sock.recv(&mut buf)?;
    messages(&buf[..n])
        .map(|m| m.map(|(hdr, body)| (hdr.nlmsg_type, hdr.nlmsg_seq, body.to_vec())))
        .collect()
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn echo_sizes_byte_for_byte() {
    let mut sock = connect();
    for size in [0, 1, 3, 1024, proto::MAX_PAYLOAD] {
        let payload = pattern(size);
        let reply = sock
            .echo(&payload)
            .unwrap_or_else(|e| panic!("echo of {size} bytes: {e}"));
        assert_eq!(reply.len(), size, "reply length for {size} bytes");
        assert!(
            reply == payload,
            "reply of {size} bytes differs from the request"
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn reply_carries_seq_type_and_portid() {
    let mut sock = connect();
    let seq = sock.send(proto::ECHO_MSG_TYPE, 0, b"abc").unwrap();
    let mut buf = vec![0; RECV_BUF_LEN];
    let n = sock.recv(&mut buf).unwrap();
    let msgs: Vec<_> = messages(&buf[..n]).collect::<Result<_, _>>().unwrap();
    assert_eq!(msgs.len(), 1, "one reply message");
    let (hdr, body) = msgs[0];
    assert_eq!(hdr.nlmsg_type, proto::ECHO_MSG_TYPE);
    assert_eq!(hdr.nlmsg_seq, seq);
    assert_eq!(
        hdr.nlmsg_pid,
        sock.portid(),
        "nlmsg_pid is the requester's portid"
    );
    assert_eq!(body, b"abc");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn ack_follows_the_reply() {
    let mut sock = connect();
    assert_eq!(sock.echo_with_ack(b"with ack").unwrap(), b"with ack");
    // And in order: the reply first, then NLMSG_ERROR 0 with the same seq.
    let seq = sock.send(proto::ECHO_MSG_TYPE, NLM_F_ACK, b"x").unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(recv_all(&mut sock).unwrap());
    }
    assert_eq!(
        (got[0].0, got[0].1, got[0].2.as_slice()),
        (proto::ECHO_MSG_TYPE, seq, &b"x"[..])
    );
    assert_eq!((got[1].0, got[1].1), (NLMSG_ERROR, seq));
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn replies_match_their_requests_in_a_batch() {
    let mut sock = connect();
    let payloads: Vec<Vec<u8>> = (0..8)
        .map(|i| format!("request {i}").into_bytes())
        .collect();
    let requests: Vec<(u16, u16, &[u8])> = payloads
        .iter()
        .map(|p| (proto::ECHO_MSG_TYPE, 0, p.as_slice()))
        .collect();
    let seqs = sock.send_batch(&requests).unwrap();
    let mut got = Vec::new();
    while got.len() < seqs.len() {
        got.extend(recv_all(&mut sock).unwrap());
    }
    for ((ty, seq, body), (want_seq, want_body)) in got.iter().zip(seqs.iter().zip(&payloads)) {
        assert_eq!(
            (*ty, *seq, body),
            (proto::ECHO_MSG_TYPE, *want_seq, want_body)
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn oversize_payload_gets_emsgsize_with_extack() {
    let mut sock = connect();
    match sock.echo(&pattern(proto::MAX_PAYLOAD + 1)) {
        Err(Error::Kernel { errno, extack }) => {
            assert_eq!(errno, libc::EMSGSIZE);
            assert_eq!(extack.as_deref(), Some("payload longer than 16384 bytes"));
        }
        other => panic!("expected EMSGSIZE, got {other:?}"),
    }
    // The socket is still usable.
    assert_eq!(sock.echo(b"after").unwrap(), b"after");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn article_client_type_0_without_flags_is_answered() {
    // The original articles' C clients send type 0 with flags 0.
    let mut sock = connect();
    let mut datagram = Vec::new();
    user_raw::encode(&mut datagram, 0, 0, 77, b"Hello from user").unwrap();
    sock.send_datagram(&datagram).unwrap();
    let got = recv_all(&mut sock).unwrap();
    assert_eq!(got, vec![(0, 77, b"Hello from user".to_vec())]);
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn control_messages_are_ignored() {
    let mut sock = connect();
    sock.send(NLMSG_NOOP, NLM_F_ACK, b"noop").unwrap();
    sock.set_timeout(Duration::from_millis(300)).unwrap();
    assert!(
        matches!(recv_all(&mut sock), Err(Error::Timeout { .. })),
        "no answer to NLMSG_NOOP"
    );
    sock.set_timeout(user_raw::DEFAULT_TIMEOUT).unwrap();
    assert_eq!(sock.echo(b"still here").unwrap(), b"still here");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn malformed_datagrams_are_dropped_then_echo_works() {
    let mut sock = connect();
    let good = {
        let mut d = Vec::new();
        user_raw::encode(&mut d, proto::ECHO_MSG_TYPE, 0, 900, b"good").unwrap();
        d
    };
    let mut garbage_tail = good.clone();
    garbage_tail.extend_from_slice(&[0xff; 7]);
    let mut short_len = good.clone();
    short_len[..4].copy_from_slice(&8u32.to_ne_bytes()); // nlmsg_len below the header
    let mut long_len = good.clone();
    long_len[..4].copy_from_slice(&4096u32.to_ne_bytes()); // beyond the datagram
                                                           // The netlink core itself refuses an empty datagram.
    match sock.send_datagram(&[]) {
        Err(Error::Os { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::ENODATA)),
        other => panic!("an empty datagram: expected ENODATA, got {other:?}"),
    }
    for bad in [&[1, 2, 3][..], &short_len, &long_len, &[0xa5; 64][..]] {
        sock.send_datagram(bad).unwrap();
    }
    // A good message followed by garbage: the good one is answered.
    sock.send_datagram(&garbage_tail).unwrap();
    let got = recv_all(&mut sock).unwrap();
    assert_eq!(got, vec![(proto::ECHO_MSG_TYPE, 900, b"good".to_vec())]);
    assert_eq!(sock.echo(b"after garbage").unwrap(), b"after garbage");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn concurrent_clients_get_only_their_own_replies() {
    let clients: Vec<_> = (0..2)
        .map(|c| {
            std::thread::spawn(move || {
                let mut sock = connect();
                for i in 0..2000 {
                    let payload = format!("client {c} request {i}").into_bytes();
                    assert_eq!(sock.echo(&payload).unwrap(), payload);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn error_message_of_an_unloaded_unit_names_the_module() {
    with_module_unloaded(RAW, || match Socket::connect(UNIT) {
        Err(e @ Error::UnitUnavailable { .. }) => {
            assert_eq!(
                e.to_string(),
                "netlink unit 31 not available: is kmod-raw loaded?"
            )
        }
        Err(e) => panic!("expected UnitUnavailable, got {e}"),
        Ok(_) => panic!("unit 31 still answers after rmmod"),
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn insmod_rmmod_twice() {
    for round in 0..2 {
        with_module_unloaded(RAW, || {});
        let mut sock = connect();
        assert_eq!(
            sock.echo(format!("round {round}").as_bytes()).unwrap(),
            format!("round {round}").as_bytes()
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn rmmod_is_refused_while_a_client_socket_is_open() {
    let sock = connect();
    let err = RAW
        .rmmod()
        .expect_err("rmmod must fail while a socket of the unit is open");
    assert!(err.contains("in use"), "rmmod's message: {err}");
    assert!(RAW.is_loaded());
    drop(sock);
    with_module_unloaded(RAW, || {});
}

/// Unloads `module`, runs `f`, and loads the module again, even if `f` panics.
fn with_module_unloaded(module: Kmod, f: impl FnOnce()) {
    module.rmmod().unwrap();
    assert!(!module.is_loaded());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    module.insmod().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn error_replies_parse() {
    // An NLMSG_ERROR from the module decodes with the shared parser.
    let mut sock = connect();
    sock.send(proto::ECHO_MSG_TYPE, 0, &pattern(proto::MAX_PAYLOAD + 1))
        .unwrap();
    let mut buf = vec![0; RECV_BUF_LEN];
    let n = sock.recv(&mut buf).unwrap();
    let (hdr, body) = messages(&buf[..n]).next().unwrap().unwrap();
    assert_eq!(hdr.nlmsg_type, NLMSG_ERROR);
    assert_eq!(parse_error(&hdr, body).unwrap().error, -libc::EMSGSIZE);
}
