//! user-genl against the project's modules, inside the VM: `cargo xtask test`.
//!
//! On the host these tests are ignored (the host kernel cannot load the
//! modules). By hand:
//!
//! ```text
//! cargo test -p user-genl --no-run     # prints the path of target/debug/deps/vm-<hash>
//! cargo xtask vm --modules raw -- target/debug/deps/vm-<hash> --ignored --test-threads=1 raw_
//! cargo xtask vm --modules genl -- target/debug/deps/vm-<hash> --ignored --test-threads=1 genl_
//! ```
//!
//! Every test runs in both modes and bounds its waits: an error the module
//! answers must arrive as that error, well before the timeout.

use std::time::{Duration, Instant};

use user_genl::{Entry, Error, Event, GenlClient, Mode, RawClient, Subscriber};

const MODES: [Mode; 2] = [Mode::Router, Mode::Socket];
const TIMEOUT: Duration = Duration::from_secs(5);

/// `n` bytes of a pattern that shows misplaced bytes (and contains NULs).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// `n` characters of a..z, for the MSG string.
fn text(n: usize) -> String {
    (b'a'..=b'z').cycle().take(n).map(char::from).collect()
}

/// Run `f`, failing if it took more than half the timeout.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = f();
    let took = start.elapsed();
    assert!(took < TIMEOUT / 2, "{what}: took {took:?}");
    result
}

fn raw(mode: Mode) -> RawClient {
    RawClient::connect(proto::RAW_UNIT, mode, TIMEOUT).unwrap_or_else(|e| panic!("{mode:?}: {e}"))
}

fn genl(mode: Mode) -> GenlClient {
    GenlClient::connect(proto::GENL_FAMILY_NAME, mode, TIMEOUT)
        .unwrap_or_else(|e| panic!("{mode:?}: {e}"))
}

// ---------------------------------------------------------------------------
// kmod-raw, unit 31
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_echo_sizes_byte_for_byte() {
    for mode in MODES {
        let mut client = raw(mode);
        for size in [0, 1, 1024, proto::MAX_PAYLOAD] {
            let payload = pattern(size);
            for ack in [false, true] {
                let reply = bounded("echo", || {
                    if ack {
                        client.echo_with_ack(&payload)
                    } else {
                        client.echo(&payload)
                    }
                })
                .unwrap_or_else(|e| panic!("{mode:?}, {size} bytes, ack {ack}: {e}"));
                assert_eq!(reply.len(), size, "{mode:?}, ack {ack}");
                assert!(reply == payload, "{mode:?}: reply of {size} bytes differs");
            }
        }
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_sequence_numbers_follow_each_mode() {
    for (mode, first) in [(Mode::Router, 0), (Mode::Socket, 1)] {
        let mut client = raw(mode);
        for n in 0..100 {
            client
                .echo(b"seq")
                .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            assert_eq!(client.last_seq(), first + n, "{mode:?}");
        }
    }
}

/// Crate quirk 1 against the real module: neli's padded nlmsg_len makes
/// kmod-raw see, and echo, a 4-byte payload for a 1-byte request.
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_module_echoes_nelis_padding() {
    for mode in MODES {
        let reply = raw(mode)
            .request(proto::ECHO_MSG_TYPE, false, b"x")
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(reply, b"x\0\0\0", "{mode:?}");
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_oversize_is_emsgsize() {
    for mode in MODES {
        let mut client = raw(mode);
        for ack in [false, true] {
            let payload = pattern(proto::MAX_PAYLOAD + 1);
            let err = bounded("oversize", || {
                if ack {
                    client.echo_with_ack(&payload)
                } else {
                    client.echo(&payload)
                }
            })
            .expect_err("more than MAX_PAYLOAD is refused");
            let Error::Kernel { errno, extack } = err else {
                panic!("{mode:?}, ack {ack}: {err:?}");
            };
            assert_eq!(errno, libc::EMSGSIZE, "{mode:?}, ack {ack}");
            match mode {
                Mode::Socket => assert_eq!(
                    extack.as_deref(),
                    Some("payload longer than 16384 bytes"),
                    "ack {ack}"
                ),
                // neli 0.7.5's router drops extended acks (crate quirk 2).
                Mode::Router => assert_eq!(extack, None, "neli's router now keeps extacks"),
            }
            // The error ended the request cleanly: the next echo works.
            let reply = bounded("echo after error", || client.echo(b"after"));
            assert_eq!(reply.expect("echo after the error"), b"after");
        }
    }
}

// ---------------------------------------------------------------------------
// kmod-genl, family my_genl
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_echo() {
    for mode in MODES {
        let mut client = genl(mode);
        assert_ne!(client.family_id(), 0);
        for msg in [String::new(), "hello".to_string(), text(proto::MAX_MSG_LEN)] {
            for ack in [false, true] {
                let reply = bounded("echo", || {
                    if ack {
                        client.echo_with_ack(&msg)
                    } else {
                        client.echo(&msg)
                    }
                })
                .unwrap_or_else(|e| panic!("{mode:?}, {} chars, ack {ack}: {e}", msg.len()));
                assert!(
                    reply == msg,
                    "{mode:?}: reply of {} chars differs",
                    msg.len()
                );
            }
        }
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_missing_msg_is_einval() {
    for mode in MODES {
        let mut client = genl(mode);
        let err = bounded("no MSG", || {
            client.command(proto::GENL_CMD_ECHO, None, false)
        })
        .expect_err("ECHO without MSG is refused");
        let Error::Kernel { errno, extack } = err else {
            panic!("{mode:?}: {err:?}");
        };
        assert_eq!(errno, libc::EINVAL, "{mode:?}");
        match mode {
            Mode::Socket => assert!(
                extack.as_deref().is_some_and(|t| t.contains("MSG")),
                "extack: {extack:?}"
            ),
            Mode::Router => assert_eq!(extack, None, "neli's router now keeps extacks"),
        }
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_overlong_msg_is_einval() {
    for mode in MODES {
        let mut client = genl(mode);
        let msg = text(proto::MAX_MSG_LEN + 1);
        let err = bounded("long MSG", || client.echo(&msg)).expect_err("too long for the policy");
        assert!(
            matches!(
                err,
                Error::Kernel {
                    errno: libc::EINVAL,
                    ..
                }
            ),
            "{mode:?}: {err:?}"
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_unknown_command_is_eopnotsupp() {
    for mode in MODES {
        let mut client = genl(mode);
        for ack in [false, true] {
            let err = bounded("command 99", || client.command(99, Some("x"), ack))
                .expect_err("command 99 does not exist");
            assert!(
                matches!(
                    err,
                    Error::Kernel {
                        errno: libc::EOPNOTSUPP,
                        ..
                    }
                ),
                "{mode:?}, ack {ack}: {err:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The echo log (dump, GET) and the groups
// ---------------------------------------------------------------------------

/// `n` messages of `len` characters, each starting with `tag` and its index.
fn messages_of(tag: &str, n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let head = format!("{tag} {i:04} ");
            let pad = text(len.saturating_sub(head.len()));
            head + &pad
        })
        .collect()
}

fn echo_all(client: &mut GenlClient, msgs: &[String]) {
    for msg in msgs {
        assert_eq!(&client.echo(msg).expect("echo"), msg);
    }
}

/// `subscriber.next_events()`, within [`TIMEOUT`]: a missing event fails
/// the test instead of blocking it (a subscriber waits for ever).
fn next_events_within(subscriber: Subscriber, what: &str) -> (Subscriber, Vec<Event>) {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut subscriber = subscriber;
        let events = subscriber.next_events();
        let _ = done.send((subscriber, events));
    });
    match result.recv_timeout(TIMEOUT) {
        Ok((subscriber, events)) => (subscriber, events.unwrap_or_else(|e| panic!("{what}: {e}"))),
        Err(_) => panic!("{what}: no event within {TIMEOUT:?}"),
    }
}

fn assert_consecutive(entries: &[Entry]) {
    for pair in entries.windows(2) {
        assert_eq!(pair[1].id, pair[0].id + 1, "ids of consecutive entries");
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_returns_the_last_echoes_oldest_first() {
    for mode in MODES {
        let mut client = genl(mode);
        let msgs = messages_of("dump", 3, 0);
        echo_all(&mut client, &msgs);
        let dump = bounded("dump", || client.dump()).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(!dump.interrupted);
        assert_eq!(dump.seq, client.last_seq(), "{mode:?}");
        let n = dump.entries.len();
        assert!((3..=proto::ECHO_LOG_LEN).contains(&n));
        assert_consecutive(&dump.entries);
        for (e, msg) in dump.entries[n - 3..].iter().zip(&msgs) {
            assert_eq!(
                (e.msg.as_slice(), e.portid),
                (msg.as_bytes(), client.portid())
            );
        }
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_larger_than_a_receive_buffer() {
    for mode in MODES {
        let mut client =
            GenlClient::connect(proto::GENL_FAMILY_NAME, mode, Duration::from_secs(60)).unwrap();
        let msgs = messages_of("big", proto::ECHO_LOG_LEN, 1000);
        echo_all(&mut client, &msgs);
        let dump = client.dump().unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(dump.entries.len(), proto::ECHO_LOG_LEN, "{mode:?}");
        assert_consecutive(&dump.entries);
        assert!(dump
            .entries
            .iter()
            .zip(&msgs)
            .all(|(e, m)| e.msg == m.as_bytes()));
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_into_a_too_small_buffer_is_an_error_naming_it() {
    let mut client = genl(Mode::Socket);
    echo_all(&mut client, &messages_of("small", 4, 100));
    client.set_recv_buffer_len(64).unwrap();
    let err = client.dump().unwrap_err();
    assert!(
        err.to_string()
            .ends_with("truncated to the 64 bytes of the receive buffer"),
        "{err}"
    );
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_socket_closed_in_a_dump_then_the_module_unloads() {
    for mode in MODES {
        let mut client = genl(mode);
        echo_all(&mut client, &messages_of("fill", 200, 500));
        // In socket mode the dump stops at its first datagram, which does
        // not fit a 64-byte buffer: the rest stays in the kernel until the
        // socket closes. The router reads the whole dump on its thread.
        if mode == Mode::Socket {
            client.set_recv_buffer_len(64).unwrap();
            assert!(client.dump().is_err(), "truncated");
        } else {
            client.dump().unwrap();
        }
        drop(client);
        netlink_rosetta::with_module_unloaded(netlink_rosetta::GENL, || {});
        let mut client = genl(mode);
        echo_all(&mut client, &["after".to_string()]);
        assert_eq!(client.dump().unwrap().entries.len(), 1, "a fresh log");
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_intr_when_an_echo_comes_between_two_datagrams() {
    let mut client = genl(Mode::Socket);
    echo_all(&mut client, &messages_of("fill", 200, 500));
    let mut other = genl(Mode::Socket);
    let mut echoed = false;
    let dump = client
        .dump_each(|_| {
            if !echoed {
                other.echo("in between").expect("echo");
                echoed = true;
            }
        })
        .unwrap();
    assert!(dump.interrupted, "NLM_F_DUMP_INTR after the echo");
    let again = client.dump().unwrap();
    assert!(!again.interrupted);
    assert_eq!(again.entries.last().unwrap().msg, b"in between");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_get_one_entry_a_missing_one_and_none() {
    for mode in MODES {
        let mut client = genl(mode);
        echo_all(&mut client, &["get me".to_string()]);
        let last = client.dump().unwrap().entries.pop().unwrap();
        assert_eq!(client.get(Some(last.id)).unwrap(), last, "{mode:?}");
        for (id, errno) in [(Some(u32::MAX), libc::ENOENT), (None, libc::EINVAL)] {
            match bounded("get", || client.get(id)) {
                Err(Error::Kernel { errno: got, extack }) => {
                    assert_eq!(got, errno, "{mode:?}");
                    // The router drops the extended ack (quirk 2).
                    if mode == Mode::Socket {
                        let extack = extack.expect("an extack message");
                        match id {
                            Some(id) => assert!(extack.contains(&id.to_string()), "{extack}"),
                            None => assert_eq!(extack, "missing attribute ID"),
                        }
                    }
                }
                other => panic!("{mode:?}: expected errno {errno}, got {other:?}"),
            }
        }
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_subscriber_sees_exactly_the_echoes_after_it_joined() {
    for mode in MODES {
        let mut client = genl(mode);
        echo_all(&mut client, &["before".to_string()]);
        let mut subscriber = genl(mode)
            .subscribe(proto::GENL_MCGRP_EVENTS)
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        let msgs = messages_of("event", 3, 0);
        echo_all(&mut client, &msgs);
        let mut events = Vec::new();
        while events.len() < 3 {
            let got;
            (subscriber, got) = next_events_within(subscriber, &format!("{mode:?}"));
            for e in got {
                match e {
                    Event::Genl(e) => events.push(e),
                    other => panic!("{mode:?}: {other:?}"),
                }
            }
        }
        assert_eq!(events.len(), 3, "{mode:?}");
        assert_consecutive(&events);
        for (e, msg) in events.iter().zip(&msgs) {
            assert_eq!(
                (e.msg.as_slice(), e.portid),
                (msg.as_bytes(), client.portid())
            );
        }
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_group_listener_sees_the_copies_of_echoes_after_it_joined() {
    // Router mode tells a notification from a reply by the sender address's
    // nl_groups: the units send with nlmsg_multicast(), which sets it.
    for mode in [Mode::Socket, Mode::Router] {
        for unit in [proto::RAW_UNIT, proto::KTHREAD_UNIT] {
            let mut client = RawClient::connect(unit, mode, TIMEOUT).unwrap();
            client.echo(b"before").unwrap();
            let subscriber = RawClient::connect(unit, mode, TIMEOUT)
                .unwrap()
                .subscribe()
                .unwrap();
            assert_eq!(subscriber.group(), proto::RAW_GROUP);
            client.echo(b"hello").unwrap();
            let (_, events) = next_events_within(subscriber, &format!("{mode:?}, unit {unit}"));
            // neli pads the request (quirk 1): the copy is the reply, padded too.
            assert_eq!(
                events,
                [Event::Raw {
                    seq: client.last_seq(),
                    portid: client.portid(),
                    payload: b"hello\0\0\0".to_vec()
                }],
                "{mode:?}, unit {unit}"
            );
        }
    }
}

/// The CLI: `--dump` lines, and `--subscribe` after its header.
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn cli_dump_and_subscribe() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_user-genl"));
    let mut client = genl(Mode::Socket);
    echo_all(&mut client, &["cli".to_string()]);
    for (mode, seq) in [("router", 1), ("socket", 2)] {
        let out = std::process::Command::new(bin)
            .args(["--module", "genl", "--dump", "--mode", mode])
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let lines: Vec<&str> = stdout.lines().collect();
        let id = client.family_id();
        assert!(lines[0].starts_with(&format!("module genl: family my_genl id {id}, portid ")));
        let n = lines.len() - 2;
        assert_eq!(
            lines[n + 1],
            format!("done seq {seq}: {n} entries"),
            "{mode}"
        );
        assert!(lines[n].ends_with(&format!(" portid {}: \"cli\"", client.portid())));
    }
    for mode in ["router", "socket"] {
        let listener = netlink_rosetta::Listener::start(
            bin,
            &[
                "--module",
                "genl",
                "--subscribe",
                "--count",
                "1",
                "--mode",
                mode,
            ],
        );
        let head = format!(
            "module genl: family my_genl id {}, group events id ",
            client.family_id()
        );
        assert!(listener.header.starts_with(&head), "{}", listener.header);
        echo_all(&mut client, &["hello".to_string()]);
        let (status, lines, stderr) = listener.finish(Duration::from_secs(10));
        assert_eq!((status, stderr.as_str()), (Some(0), ""), "{mode}");
        let last = client.dump().unwrap().entries.pop().unwrap();
        assert_eq!(
            lines,
            [format!(
                "event id {} portid {}: \"hello\"",
                last.id,
                client.portid()
            )]
        );
    }
}
