//! user-raw against the raw units, kmod-raw (31) and kmod-kthread (25), and
//! their C twins kmod_c_raw (30) and kmod_c_kthread (29), inside the VM:
//! `cargo xtask test`.
//!
//! On the host these tests are ignored (the host kernel cannot load the
//! modules); `cargo xtask test` boots the project's kernel with the modules
//! loaded and runs them with `--ignored --test-threads=1` (some load and
//! unload modules, which must not overlap with the others). The four
//! modules answer alike, so every test runs against each (`raw::name`,
//! `kthread::name`, `c_raw::name`, `c_kthread::name`); the queue's tests
//! run against both kthread modules. Two things are the Rust modules' own,
//! and their tests run against them only: `coalesce=1` (the C twins send
//! each answer in a datagram of its own, and have no such parameter), and
//! refusing a unit registered without a kernel socket (C cannot see that:
//! see `taken_units_are_refused`).

use netlink_rosetta::{
    big_receive_buffers, with_module_params, with_module_unloaded, HoldOff, Kmod, C_KTHREAD, C_RAW,
    KTHREAD, RAW,
};
use std::time::Duration;
use user_raw::{
    messages, parse_error, Error, Socket, NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK, NLM_F_REQUEST,
    RECV_BUF_LEN,
};

/// A raw unit and the module that serves it.
#[derive(Clone, Copy)]
struct Unit {
    kmod: Kmod,
    unit: i32,
}

const RAW_UNIT: Unit = Unit {
    kmod: RAW,
    unit: proto::RAW_UNIT,
};
const KTHREAD_UNIT: Unit = Unit {
    kmod: KTHREAD,
    unit: proto::KTHREAD_UNIT,
};
const C_RAW_UNIT: Unit = Unit {
    kmod: C_RAW,
    unit: netlink_rosetta::C_RAW_UNIT,
};
const C_KTHREAD_UNIT: Unit = Unit {
    kmod: C_KTHREAD,
    unit: netlink_rosetta::C_KTHREAD_UNIT,
};

/// Declares each test for the unit `$u`: `fn name() { super::name($u) }`.
macro_rules! tests_of {
    ($u:ident: $($test:ident),* $(,)?) => {
        $(
            #[test]
            #[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
            fn $test() {
                super::$test(super::$u)
            }
        )*
    };
}

/// What every raw unit does, Rust or C.
macro_rules! common_tests {
    ($u:ident) => {
        tests_of!($u:
            echo_sizes_byte_for_byte,
            reply_carries_seq_type_and_portid,
            ack_follows_the_reply,
            replies_match_their_requests_in_a_batch,
            many_requests_in_flight_answered_in_order,
            oversize_payload_gets_emsgsize_with_extack,
            error_replies_parse,
            article_client_type_0_without_flags_is_answered,
            article_libnl_client_type_0_is_echoed_then_acked,
            messages_that_are_not_requests_are_only_acked,
            malformed_datagrams_are_dropped_then_echo_works,
            concurrent_clients_get_only_their_own_replies,
            error_message_of_an_unloaded_unit_names_the_module,
            insmod_rmmod_twice,
            rmmod_is_refused_while_a_client_socket_is_open,
            taken_units_are_refused,
        );
    };
}

/// `coalesce=1`, which only the Rust modules have.
macro_rules! coalesce_tests {
    ($u:ident) => {
        tests_of!($u:
            coalesce_must_be_a_boolean,
            coalesce_without_a_value_is_true,
            coalesced_answers_to_a_batch_share_datagrams,
            coalesced_replies_split_where_a_datagram_is_full,
        );
    };
}

/// The queue between the input callback and the thread.
macro_rules! queue_tests {
    ($u:ident) => {
        tests_of!($u:
            full_queue_answers_enobufs_then_recovers,
            a_queue_of_zero_refuses_every_request,
            rmmod_with_requests_still_queued_is_clean,
            rmmod_drops_and_counts_the_queued_requests,
        );
    };
}

mod raw {
    common_tests!(RAW_UNIT);
    coalesce_tests!(RAW_UNIT);
}

mod kthread {
    common_tests!(KTHREAD_UNIT);
    coalesce_tests!(KTHREAD_UNIT);
    queue_tests!(KTHREAD_UNIT);
    tests_of!(KTHREAD_UNIT: coalesced_loss_of_one_client_is_not_blamed_on_the_next);
}

mod c_raw {
    common_tests!(C_RAW_UNIT);
}

mod c_kthread {
    common_tests!(C_KTHREAD_UNIT);
    queue_tests!(C_KTHREAD_UNIT);
}

/// `n` bytes of a pattern that shows misplaced bytes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn connect(u: Unit) -> Socket {
    Socket::connect(u.unit)
        .unwrap_or_else(|e| panic!("{} answers on unit {}: {e}", u.kmod.name(), u.unit))
}

/// Echo requests, one per payload, for `Socket::send_batch`.
fn echo_requests(payloads: &[Vec<u8>]) -> Vec<(u16, u16, &[u8])> {
    payloads
        .iter()
        .map(|p| (proto::ECHO_MSG_TYPE, 0, p.as_slice()))
        .collect()
}

/// A received message: (type, seq, payload).
type Received = (u16, u32, Vec<u8>);

/// Receives one datagram and returns its messages.
fn recv_all(sock: &mut Socket) -> Result<Vec<Received>, Error> {
    recv_datagram(sock).map(|(_, msgs)| msgs)
}

/// Receives one datagram; returns its length and its messages.
fn recv_datagram(sock: &mut Socket) -> Result<(usize, Vec<Received>), Error> {
    let mut buf = vec![0; RECV_BUF_LEN];
    let n = sock.recv(&mut buf)?;
    let msgs = messages(&buf[..n])
        .map(|m| m.map(|(hdr, body)| (hdr.nlmsg_type, hdr.nlmsg_seq, body.to_vec())))
        .collect::<Result<_, _>>()?;
    Ok((n, msgs))
}

/// Receives until `n` messages have arrived.
fn recv_n(sock: &mut Socket, n: usize) -> Vec<(u16, u32, Vec<u8>)> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(
            recv_all(sock).unwrap_or_else(|e| panic!("after {} of {n} messages: {e}", got.len())),
        );
    }
    got
}

fn echo_sizes_byte_for_byte(u: Unit) {
    let mut sock = connect(u);
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

fn reply_carries_seq_type_and_portid(u: Unit) {
    let mut sock = connect(u);
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
    assert_eq!(
        hdr.nlmsg_len as usize,
        user_raw::NLMSG_HDRLEN + 3,
        "nlmsg_len is exact"
    );
    assert_eq!(body, b"abc");
}

fn ack_follows_the_reply(u: Unit) {
    let mut sock = connect(u);
    assert_eq!(sock.echo_with_ack(b"with ack").unwrap(), b"with ack");
    // In order: the reply first, then NLMSG_ERROR 0 with the same seq.
    let seq = sock.send(proto::ECHO_MSG_TYPE, NLM_F_ACK, b"x").unwrap();
    let got = recv_n(&mut sock, 2);
    assert_eq!(
        (got[0].0, got[0].1, got[0].2.as_slice()),
        (proto::ECHO_MSG_TYPE, seq, &b"x"[..])
    );
    assert_eq!((got[1].0, got[1].1), (NLMSG_ERROR, seq));
    assert_eq!(&got[1].2[..4], &0i32.to_ne_bytes(), "error 0: an ack");
}

fn replies_match_their_requests_in_a_batch(u: Unit) {
    // Eight requests in one datagram.
    let mut sock = connect(u);
    let payloads: Vec<Vec<u8>> = (0..8)
        .map(|i| format!("request {i}").into_bytes())
        .collect();
    let requests = echo_requests(&payloads);
    let seqs = sock.send_batch(&requests).unwrap();
    let got = recv_n(&mut sock, seqs.len());
    for ((ty, seq, body), (want_seq, want_body)) in got.iter().zip(seqs.iter().zip(&payloads)) {
        assert_eq!(
            (*ty, *seq, body),
            (proto::ECHO_MSG_TYPE, *want_seq, want_body)
        );
    }
}

fn many_requests_in_flight_answered_in_order(u: Unit) {
    // 200 requests sent one by one before reading any reply: fewer than
    // kmod-kthread's queue holds, so all are answered, in order.
    big_receive_buffers();
    let mut sock = connect(u);
    let seqs: Vec<u32> = (0..200)
        .map(|i| {
            sock.send(proto::ECHO_MSG_TYPE, 0, format!("in flight {i}").as_bytes())
                .unwrap()
        })
        .collect();
    let got = recv_n(&mut sock, seqs.len());
    for (i, ((_, seq, body), want)) in got.iter().zip(&seqs).enumerate() {
        assert_eq!(*seq, *want, "reply {i} out of order");
        assert_eq!(body, format!("in flight {i}").as_bytes());
    }
}

fn oversize_payload_gets_emsgsize_with_extack(u: Unit) {
    let mut sock = connect(u);
    match sock.echo(&pattern(proto::MAX_PAYLOAD + 1)) {
        Err(Error::Kernel { errno, extack, .. }) => {
            assert_eq!(errno, libc::EMSGSIZE);
            assert_eq!(extack.as_deref(), Some("payload longer than 16384 bytes"));
        }
        other => panic!("expected EMSGSIZE, got {other:?}"),
    }
    // The socket is still usable.
    assert_eq!(sock.echo(b"after").unwrap(), b"after");
}

fn error_replies_parse(u: Unit) {
    // An NLMSG_ERROR from the module decodes with the shared parser.
    let mut sock = connect(u);
    sock.send(proto::ECHO_MSG_TYPE, 0, &pattern(proto::MAX_PAYLOAD + 1))
        .unwrap();
    let mut buf = vec![0; RECV_BUF_LEN];
    let n = sock.recv(&mut buf).unwrap();
    let (hdr, body) = messages(&buf[..n]).next().unwrap().unwrap();
    assert_eq!(hdr.nlmsg_type, NLMSG_ERROR);
    assert_eq!(parse_error(&hdr, body).unwrap().error, -libc::EMSGSIZE);
}

fn article_client_type_0_without_flags_is_answered(u: Unit) {
    // The original articles' C clients send type 0 with flags 0.
    let mut sock = connect(u);
    let mut datagram = Vec::new();
    user_raw::encode(&mut datagram, 0, 0, 77, b"Hello from user").unwrap();
    sock.send_datagram(&datagram).unwrap();
    let got = recv_all(&mut sock).unwrap();
    assert_eq!(got, vec![(0, 77, b"Hello from user".to_vec())]);
}

fn article_libnl_client_type_0_is_echoed_then_acked(u: Unit) {
    // The second article's libnl client sends type 0 with `nl_send_simple()`,
    // which adds NLM_F_REQUEST | NLM_F_ACK.
    let mut sock = connect(u);
    let seq = sock.send(0, NLM_F_ACK, b"Hello libnl!").unwrap();
    let got = recv_n(&mut sock, 2);
    assert_eq!(got[0], (0, seq, b"Hello libnl!".to_vec()));
    assert_eq!((got[1].0, got[1].1), (NLMSG_ERROR, seq));
    assert_eq!(&got[1].2[..4], &0i32.to_ne_bytes(), "error 0: an ack");
}

fn messages_that_are_not_requests_are_only_acked(u: Unit) {
    // As netlink_rcv_skb() answers them: a control or reserved type (below
    // NLMSG_MIN_TYPE, type 0 aside) and a message without NLM_F_REQUEST get
    // an ack if they ask for one, and nothing else.
    let mut sock = connect(u);
    let mut datagram = Vec::new();
    let (noop, reserved, not_a_request, echo) = (11, 12, 13, 14);
    user_raw::encode(
        &mut datagram,
        NLMSG_NOOP,
        NLM_F_REQUEST | NLM_F_ACK,
        noop,
        b"noop",
    )
    .unwrap();
    user_raw::encode(&mut datagram, 7, NLM_F_REQUEST, reserved, b"quiet").unwrap();
    let ty = proto::ECHO_MSG_TYPE;
    user_raw::encode(&mut datagram, ty, NLM_F_ACK, not_a_request, b"no").unwrap();
    user_raw::encode(&mut datagram, ty, NLM_F_REQUEST, echo, b"yes").unwrap();
    sock.send_datagram(&datagram).unwrap();
    let mut got = recv_n(&mut sock, 3);
    // kmod-kthread acks from its input callback, before its thread echoes.
    got.sort_by_key(|m| m.1);
    assert_eq!((got[0].0, got[0].1), (NLMSG_ERROR, noop));
    assert_eq!((got[1].0, got[1].1), (NLMSG_ERROR, not_a_request));
    for ack in &got[..2] {
        assert_eq!(&ack.2[..4], &0i32.to_ne_bytes(), "error 0: an ack");
    }
    assert_eq!(got[2], (ty, echo, b"yes".to_vec()));
    sock.set_timeout(Duration::from_millis(300)).unwrap();
    assert!(
        matches!(recv_all(&mut sock), Err(Error::Timeout { .. })),
        "nothing for the reserved type"
    );
}

fn malformed_datagrams_are_dropped_then_echo_works(u: Unit) {
    let mut sock = connect(u);
    let good = {
        let mut d = Vec::new();
        user_raw::encode(&mut d, proto::ECHO_MSG_TYPE, NLM_F_REQUEST, 900, b"good").unwrap();
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

fn concurrent_clients_get_only_their_own_replies(u: Unit) {
    let clients: Vec<_> = (0..2)
        .map(|c| {
            std::thread::spawn(move || {
                let mut sock = connect(u);
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

fn error_message_of_an_unloaded_unit_names_the_module(u: Unit) {
    // The project's units name their module ("is kmod-raw loaded?"); the
    // C twins' units are not in proto ("is its module loaded?").
    with_module_unloaded(u.kmod, || match Socket::connect(u.unit) {
        Err(e @ Error::UnitUnavailable { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "netlink unit {} not available: is {} loaded?",
                u.unit,
                proto::module_for_unit(u.unit)
            )
        ),
        Err(e) => panic!("expected UnitUnavailable, got {e}"),
        Ok(_) => panic!("unit {} still answers after rmmod", u.unit),
    });
}

fn insmod_rmmod_twice(u: Unit) {
    for round in 0..2 {
        with_module_unloaded(u.kmod, || {});
        let mut sock = connect(u);
        let payload = format!("round {round}").into_bytes();
        assert_eq!(sock.echo(&payload).unwrap(), payload);
    }
}

fn rmmod_is_refused_while_a_client_socket_is_open(u: Unit) {
    let sock = connect(u);
    let err = u
        .kmod
        .rmmod()
        .expect_err("rmmod must fail while a socket of the unit is open");
    assert!(err.contains("in use"), "rmmod's message: {err}");
    assert!(u.kmod.is_loaded());
    drop(sock);
    with_module_unloaded(u.kmod, || {});
}

// `coalesce=1`: answers travel back together.

fn coalesce_must_be_a_boolean(u: Unit) {
    with_module_unloaded(u.kmod, || {
        for bad in ["coalesce=maybe", "coalesce=2", "coalesce="] {
            let err = u.kmod.insmod_with(&[bad]).unwrap_err();
            // kmod names the EINVAL of a parameter that does not parse this
            // way.
            assert!(err.contains("Invalid parameters"), "insmod {bad}: {err}");
            assert!(!u.kmod.is_loaded());
        }
    });
}

fn coalesce_without_a_value_is_true(u: Unit) {
    // As C's bool parameters: `insmod kmod_raw.ko coalesce` means true.
    with_module_params(u.kmod, &["coalesce"], || {
        let started = last_log_line(&format!("{}: echo on netlink unit", u.kmod.name()));
        assert!(started.ends_with("coalesce=1"), "{started}");
        let mut sock = connect(u);
        let payloads: Vec<Vec<u8>> = (0..8).map(|i| vec![i; 16]).collect();
        sock.send_batch(&echo_requests(&payloads)).unwrap();
        let (got, datagrams) = recv_counting(&mut sock, 8);
        assert_eq!(got.len(), 8);
        if u.kmod == RAW {
            assert_eq!(datagrams, 1, "kmod-raw coalesces a batch's answers");
        }
    });
}

fn taken_units_are_refused(u: Unit) {
    // NETLINK_USERSOCK (2) is registered at boot without a kernel socket,
    // and the other raw unit by the other module: both are refused, and the
    // failed load leaves nothing behind. The C twins are only tried on the
    // other module's unit: netlink_kernel_create() accepts a unit that is
    // registered without a kernel socket, and whether one is lives in
    // `struct netlink_table`, private to net/netlink/ (the Rust abstraction
    // reads it in a helper built into the kernel).
    let other = match u.kmod {
        RAW => KTHREAD_UNIT,
        KTHREAD => RAW_UNIT,
        C_RAW => C_KTHREAD_UNIT,
        _ => C_RAW_UNIT,
    };
    let taken = if u.kmod.is_c() {
        vec![other.unit]
    } else {
        vec![2, other.unit]
    };
    with_module_unloaded(u.kmod, || {
        for unit in taken {
            let err = u.kmod.insmod_with(&[&format!("unit={unit}")]).unwrap_err();
            assert!(
                err.contains("Device or resource busy"),
                "unit {unit}: {err}"
            );
            assert!(!u.kmod.is_loaded());
            let refused = last_log_line(&format!("{}: cannot serve netlink unit", u.kmod.name()));
            assert!(
                refused.ends_with(&format!("unit {unit}: error {}", -libc::EBUSY)),
                "{refused}"
            );
        }
        assert_eq!(connect(other).echo(b"unharmed").unwrap(), b"unharmed");
    });
}

/// The last kernel log line (`dmesg`) that contains `text`.
fn last_log_line(text: &str) -> String {
    find_log_line(text).unwrap_or_else(|| panic!("no kernel log line with {text:?}"))
}

/// The last kernel log line (`dmesg`) that contains `text`, if any.
fn find_log_line(text: &str) -> Option<String> {
    let out = std::process::Command::new("dmesg")
        .output()
        .expect("dmesg runs");
    assert!(out.status.success(), "dmesg failed");
    let log = String::from_utf8_lossy(&out.stdout);
    log.lines().rfind(|l| l.contains(text)).map(str::to_string)
}

/// Receives datagrams until `n` messages have arrived; returns them and
/// the number of datagrams they came in. A datagram of several messages
/// must fit a page: coalescing never makes a receiver need a larger buffer
/// than one message does.
fn recv_counting(sock: &mut Socket, n: usize) -> (Vec<(u16, u32, Vec<u8>)>, usize) {
    let (mut got, mut datagrams) = (Vec::new(), 0);
    while got.len() < n {
        let (len, msgs) =
            recv_datagram(sock).unwrap_or_else(|e| panic!("after {} of {n}: {e}", got.len()));
        assert!(
            msgs.len() == 1 || len <= 4096,
            "a datagram of {} messages and {len} bytes",
            msgs.len()
        );
        got.extend(msgs);
        datagrams += 1;
    }
    (got, datagrams)
}

fn coalesced_answers_to_a_batch_share_datagrams(u: Unit) {
    with_module_params(u.kmod, &["coalesce=1"], || {
        let mut sock = connect(u);
        // 64 small echoes in one datagram, every fourth with an ack: 80
        // answers of 32 or 36 bytes, 2624 in all, which fit one page.
        let payloads: Vec<Vec<u8>> = (0..64).map(|i| format!("{i:016}").into_bytes()).collect();
        let requests: Vec<(u16, u16, &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let flags = if i % 4 == 0 { NLM_F_ACK } else { 0 };
                (proto::ECHO_MSG_TYPE, flags, p.as_slice())
            })
            .collect();
        let seqs = sock.send_batch(&requests).unwrap();
        let (got, datagrams) = recv_counting(&mut sock, 80);
        let mut expected = Vec::new();
        for (i, seq) in seqs.iter().enumerate() {
            expected.push((proto::ECHO_MSG_TYPE, *seq));
            if i % 4 == 0 {
                expected.push((NLMSG_ERROR, *seq));
            }
        }
        let answers: Vec<(u16, u32)> = got.iter().map(|(ty, seq, _)| (*ty, *seq)).collect();
        assert_eq!(answers, expected, "every echo, then its ack, in order");
        for (i, (_, _, body)) in got
            .iter()
            .filter(|m| m.0 == proto::ECHO_MSG_TYPE)
            .enumerate()
        {
            assert_eq!(body, &payloads[i]);
        }
        if u.kmod == RAW {
            // The input callback answers the whole datagram at once.
            assert_eq!(datagrams, 1, "kmod-raw coalesces the 80 answers");
        } else {
            // The thread coalesces what it takes from the queue at once,
            // which depends on when it runs.
            assert!(
                datagrams < 80,
                "some answers shared a datagram ({datagrams} datagrams)"
            );
        }
        assert_eq!(sock.echo(b"one more").unwrap(), b"one more");
    });
}

fn coalesced_replies_split_where_a_datagram_is_full(u: Unit) {
    with_module_params(u.kmod, &["coalesce=1"], || {
        big_receive_buffers();
        let mut sock = connect(u);
        // 1 KiB replies fill a page-sized datagram after a few; the 16 KiB
        // ones, larger than a page, travel alone (`recv_counting` checks).
        let mut payloads: Vec<Vec<u8>> = (0..12).map(|i| vec![b'a' + i as u8; 1024]).collect();
        payloads.insert(6, pattern(proto::MAX_PAYLOAD));
        payloads.insert(7, pattern(proto::MAX_PAYLOAD));
        payloads.insert(3, pattern(100));
        let seqs = sock.send_batch(&echo_requests(&payloads)).unwrap();
        let (got, datagrams) = recv_counting(&mut sock, payloads.len());
        let order: Vec<u32> = got.iter().map(|m| m.1).collect();
        assert_eq!(order, seqs, "every reply, in order");
        for ((ty, _, body), sent) in got.iter().zip(&payloads) {
            assert_eq!(*ty, proto::ECHO_MSG_TYPE);
            assert_eq!(body, sent, "byte for byte");
        }
        assert!(
            datagrams > 1,
            "more than a page of replies needs several datagrams"
        );
        assert!(
            datagrams < payloads.len(),
            "replies shared datagrams ({datagrams})"
        );
    });
}

// The kthread modules' queue.

fn full_queue_answers_enobufs_then_recovers(u: Unit) {
    big_receive_buffers();
    let mut sock = connect(u);
    // 2000 requests in one datagram: the input callback queues them all
    // before it returns, faster than the thread drains them, so the queue
    // (256) fills. Every request must end as a reply or an ENOBUFS error.
    let payloads: Vec<Vec<u8>> = (0..2000)
        .map(|i| format!("burst {i}").into_bytes())
        .collect();
    let requests = echo_requests(&payloads);
    let seqs = sock.send_batch(&requests).unwrap();
    let got = recv_n(&mut sock, seqs.len());
    let (mut replies, mut enobufs) = (Vec::new(), 0);
    for (ty, seq, body) in &got {
        if *ty == NLMSG_ERROR {
            assert_eq!(
                &body[..4],
                &(-libc::ENOBUFS).to_ne_bytes(),
                "seq {seq}: only ENOBUFS"
            );
            enobufs += 1;
        } else {
            replies.push(*seq);
        }
    }
    assert!(enobufs > 0, "a burst of 2000 must overflow a queue of 256");
    assert!(
        replies.len() >= 256,
        "at least a full queue is answered, got {}",
        replies.len()
    );
    assert!(replies.windows(2).all(|w| w[0] < w[1]), "replies in order");
    assert_eq!(
        replies.len() + enobufs,
        seqs.len(),
        "every request answered exactly once"
    );
    // And the module recovers.
    assert_eq!(sock.echo(b"after the burst").unwrap(), b"after the burst");
}

fn a_queue_of_zero_refuses_every_request(u: Unit) {
    with_module_params(u.kmod, &["capacity=0"], || {
        let started = last_log_line(&format!("{}: echo on netlink unit", u.kmod.name()));
        assert!(started.contains(", queue of 0"), "{started}");
        let mut sock = connect(u);
        for _ in 0..2 {
            match sock.echo(b"no room") {
                Err(Error::Kernel { errno, extack, .. }) => {
                    assert_eq!(errno, libc::ENOBUFS);
                    assert_eq!(extack.as_deref(), Some("request queue full, try again"));
                }
                other => panic!("expected ENOBUFS, got {other:?}"),
            }
        }
    });
}

fn rmmod_with_requests_still_queued_is_clean(u: Unit) {
    // Queue a burst, close the socket at once (which allows rmmod), and
    // unload while the thread may still be working: the VM runner fails
    // the run on any splat in the kernel log.
    for _ in 0..3 {
        let mut sock = connect(u);
        let payload = pattern(1024);
        let requests: Vec<(u16, u16, &[u8])> = (0..150)
            .map(|_| (proto::ECHO_MSG_TYPE, 0, &payload[..]))
            .collect();
        sock.send_batch(&requests).unwrap();
        drop(sock);
        with_module_unloaded(u.kmod, || {});
    }
    assert_eq!(connect(u).echo(b"fresh").unwrap(), b"fresh");
}

fn rmmod_drops_and_counts_the_queued_requests(u: Unit) {
    // The thread cannot run while we hold it off. We unload the module
    // ourselves (delete_module, as rmmod does), still holding it off: the
    // thread runs only once the module's exit waits for it to stop, and
    // then stops without answering. (An rmmod process would sleep on the
    // way, reading its binary, and let the thread drain the queue.)
    let mut sock = connect(u);
    let requests: Vec<(u16, u16, &[u8])> = (0..100)
        .map(|_| (proto::ECHO_MSG_TYPE, NLM_F_REQUEST, &b"never answered"[..]))
        .collect();
    let unloaded = {
        let _hold = HoldOff::thread_of(u.kmod);
        sock.send_batch(&requests).unwrap();
        drop(sock); // which allows the unload
        delete_module(u.kmod)
    };
    let dropped = find_log_line(&format!("{}: stopping:", u.kmod.name()));
    u.kmod.insmod().unwrap();
    unloaded.unwrap_or_else(|e| panic!("delete_module({}): {e}", u.kmod.name()));
    let dropped = dropped.expect("a kernel log line for the dropped requests");
    assert!(
        dropped.ends_with("stopping: 100 queued requests dropped"),
        "{dropped}"
    );
    assert_eq!(connect(u).echo(b"reloaded").unwrap(), b"reloaded");
}

/// Unloads `kmod` from this thread: `delete_module(2)`, as rmmod calls it.
fn delete_module(kmod: Kmod) -> std::io::Result<()> {
    let name = std::ffi::CString::new(kmod.name()).expect("no NUL in a module name");
    // SAFETY: `name` is a NUL-terminated string that outlives the call,
    // which only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn coalesced_loss_of_one_client_is_not_blamed_on_the_next(u: Unit) {
    // With coalesce=1, the thread fills a datagram for client A, and sends
    // it when client B's answer comes next. If A's receive buffer is full,
    // that send fails: A learns of it (ENOBUFS), and B still gets its echo.
    with_module_params(u.kmod, &["coalesce=1"], || {
        let default = std::fs::read_to_string("/proc/sys/net/core/rmem_default").unwrap();
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap();
        // A gets the smallest receive buffer: one page-sized datagram fills it.
        netlink_rosetta::set_receive_buffers(4096).unwrap();
        let mut a = connect(u);
        std::fs::write("/proc/sys/net/core/rmem_max", max).unwrap();
        std::fs::write("/proc/sys/net/core/rmem_default", default).unwrap();
        let mut b = connect(u);
        let payload = pattern(100);
        let requests: Vec<(u16, u16, &[u8])> = (0..100)
            .map(|_| (proto::ECHO_MSG_TYPE, 0, &payload[..]))
            .collect();
        let b_seq = {
            // Both requests wait in the queue together: the thread cannot
            // run until we sleep in `recv`.
            let _hold = HoldOff::thread_of(u.kmod);
            a.send_batch(&requests).unwrap();
            b.send(proto::ECHO_MSG_TYPE, 0, b"for B").unwrap()
        };
        let got = recv_n(&mut b, 1);
        assert_eq!(got, vec![(proto::ECHO_MSG_TYPE, b_seq, b"for B".to_vec())]);
        // A got what fitted, then learns that the rest was lost.
        let mut buf = vec![0; RECV_BUF_LEN];
        a.set_timeout(Duration::from_millis(500)).unwrap();
        let mut lost = false;
        while !lost {
            match a.recv(&mut buf) {
                Ok(_) => {}
                Err(Error::Overrun) => lost = true,
                Err(e) => panic!("A must learn of its loss (ENOBUFS), got {e}"),
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Group 1: a copy of each echo reply to the unit's listeners
// ---------------------------------------------------------------------------

/// The group tests, for every unit.
macro_rules! group_tests {
    ($u:ident) => {
        tests_of!($u:
            group_listener_sees_exactly_the_echoes_after_it_joined,
            cli_subscribe_prints_the_copies_after_its_header,
        );
    };
}

mod raw_group {
    group_tests!(RAW_UNIT);
}

mod kthread_group {
    group_tests!(KTHREAD_UNIT);
}

mod c_raw_group {
    group_tests!(C_RAW_UNIT);
}

mod c_kthread_group {
    group_tests!(C_KTHREAD_UNIT);
}

fn group_listener_sees_exactly_the_echoes_after_it_joined(u: Unit) {
    let mut sock = connect(u);
    assert_eq!(sock.echo(b"before").unwrap(), b"before");
    let mut listener = connect(u);
    listener
        .add_membership(proto::RAW_GROUP)
        .expect("join group 1");
    let mut sent = Vec::new();
    for msg in [&b"first"[..], b"second", b""] {
        assert_eq!(sock.echo(msg).unwrap(), msg);
        sent.push((sock.last_seq(), msg.to_vec()));
    }
    let mut events = Vec::new();
    while events.len() < sent.len() {
        events.extend(listener.recv_raw_events().expect("events"));
    }
    let got: Vec<(u32, Vec<u8>)> = events.iter().map(|e| (e.seq, e.payload.clone())).collect();
    assert_eq!(got, sent, "the copies, in order, with the requests' seqs");
    for e in &events {
        assert_eq!(e.portid, sock.portid(), "nlmsg_pid: the requester");
        assert_eq!(e.ty, proto::ECHO_MSG_TYPE, "the reply's type");
    }
    // Nothing more for the listener; and nothing after it left.
    listener.set_timeout(Duration::from_millis(300)).unwrap();
    assert!(matches!(
        listener.recv_raw_events(),
        Err(user_raw::Error::Timeout { .. })
    ));
    listener.drop_membership(proto::RAW_GROUP).unwrap();
    assert_eq!(sock.echo(b"after leaving").unwrap(), b"after leaving");
    assert!(matches!(
        listener.recv_raw_events(),
        Err(user_raw::Error::Timeout { .. })
    ));
}

fn cli_subscribe_prints_the_copies_after_its_header(u: Unit) {
    let mut sock = connect(u);
    assert_eq!(sock.echo(b"not seen").unwrap(), b"not seen");
    // The C twins are reached with `--unit`: the module name says which
    // twin's design the unit has.
    let module = if u.unit == RAW_UNIT.unit || u.unit == C_RAW_UNIT.unit {
        "raw"
    } else {
        "kthread"
    };
    let unit = u.unit.to_string();
    let listener = netlink_rosetta::Listener::start(
        &netlink_rosetta::workspace_bin("user-raw"),
        &[
            "--module",
            module,
            "--unit",
            &unit,
            "--subscribe",
            "--count",
            "1",
        ],
    );
    let header = format!("module {module}: netlink unit {}, group 1, portid ", u.unit);
    assert!(listener.header.starts_with(&header), "{}", listener.header);
    assert_eq!(sock.echo(b"hello").unwrap(), b"hello");
    let (status, lines, stderr) = listener.finish(Duration::from_secs(10));
    assert_eq!((status, stderr.as_str()), (Some(0), ""), "{lines:?}");
    assert_eq!(
        lines,
        [format!(
            "event seq {} portid {}: \"hello\"",
            sock.last_seq(),
            sock.portid()
        )]
    );
}
