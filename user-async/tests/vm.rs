//! user-async against the project's modules and their C twins, inside the
//! VM: `cargo xtask test`.
//!
//! On the host these tests are ignored (the host kernel cannot load the
//! modules). By hand:
//!
//! ```text
//! cargo test -p user-async --no-run     # prints the path of target/debug/deps/vm-<hash>
//! cargo xtask vm --modules raw,kthread,genl,c-raw,c-kthread,c-genl -- sh -c "target/debug/deps/vm-<hash> --ignored --test-threads=1"
//! ```
//!
//! Each test runs against every module it applies to: the raw units 31
//! and 25 and their C twins' 30 and 29, the families `my_genl` and
//! `c_genl`. Every wait is bounded: an error the module answers must
//! arrive as that error, well before the timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use netlink_rosetta::{C_GENL_FAMILY, C_KTHREAD_UNIT, C_RAW_UNIT, GENL, KTHREAD, RAW};
use user_async::{
    echo_many, Entry, Error, Event, GenlClient, GenlMsg, Notice, RawClient, RawMsg, Subscriber,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Every raw unit: the Rust modules' and the C twins'.
const UNITS: [i32; 4] = [
    proto::RAW_UNIT,
    proto::KTHREAD_UNIT,
    C_RAW_UNIT,
    C_KTHREAD_UNIT,
];

/// Every echo family: kmod-genl's and its C twin's.
const FAMILIES: [&str; 2] = [proto::GENL_FAMILY_NAME, C_GENL_FAMILY];

/// Run `f` on a current-thread runtime, as the CLI does.
fn run<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

/// Await `f`, failing if it took more than half the timeout.
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let result = f.await;
    let took = start.elapsed();
    assert!(took < TIMEOUT / 2, "{what}: took {took:?}");
    result
}

/// `n` bytes of a pattern that shows misplaced bytes (and contains NULs).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// `n` characters of a..z, for the MSG string.
fn text(n: usize) -> String {
    (b'a'..=b'z').cycle().take(n).map(char::from).collect()
}

fn raw(unit: i32) -> RawClient {
    RawClient::connect(unit, TIMEOUT).unwrap_or_else(|e| panic!("unit {unit}: {e}"))
}

async fn genl(family: &'static str) -> GenlClient {
    GenlClient::connect(family, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{family}: {e}"))
}

fn kernel_error<T: std::fmt::Debug>(result: Result<T, Error>, errno: i32) -> Option<String> {
    match result {
        Err(Error::Kernel { errno: got, extack }) if got == errno => extack,
        other => panic!("expected errno {errno}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The raw units
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_echo_sizes_byte_for_byte() {
    run(async {
        for unit in UNITS {
            let client = raw(unit);
            for size in [0, 1, 5, 1024, proto::MAX_PAYLOAD] {
                let payload = pattern(size);
                for ack in [false, true] {
                    let reply = bounded("echo", client.echo(&payload, ack))
                        .await
                        .unwrap_or_else(|e| panic!("unit {unit}, {size} bytes, ack {ack}: {e}"));
                    // netlink-packet-core sends nlmsg_len 16 + size, unpadded.
                    assert_eq!(reply.payload.len(), size, "unit {unit}, ack {ack}");
                    assert!(reply.payload == payload, "unit {unit}: reply differs");
                }
            }
        }
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_sequence_numbers_count_from_one() {
    run(async {
        for unit in UNITS {
            let client = raw(unit);
            for n in 1..=100 {
                let reply = client.echo(b"seq", n % 2 == 0).await.unwrap();
                assert_eq!(reply.seq, n, "unit {unit}");
            }
        }
    });
}

/// 64 echoes of distinct payloads at once: each reply reaches its own
/// request, whatever order they complete in; then 1000 with 64 in flight.
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_in_flight_replies_reach_their_requests() {
    run(async {
        for unit in UNITS {
            let client = raw(unit);
            let payloads: Vec<Vec<u8>> = (0..64)
                .map(|i| format!("echo {i:04}").into_bytes())
                .collect();
            let replies =
                futures::future::join_all(payloads.iter().map(|p| client.echo(p, false))).await;
            let mut seqs = Vec::new();
            for (reply, payload) in replies.into_iter().zip(&payloads) {
                let reply = reply.unwrap_or_else(|e| panic!("unit {unit}: {e}"));
                assert_eq!(reply.payload, *payload, "unit {unit}");
                seqs.push(reply.seq);
            }
            seqs.sort_unstable();
            assert_eq!(seqs, (1..=64).collect::<Vec<u32>>(), "unit {unit}");
            let run = echo_many(1000, 64, b"pipelined", || client.echo(b"pipelined", true))
                .await
                .unwrap_or_else(|(n, e)| panic!("unit {unit}, echo {n}: {e}"));
            assert_eq!(run.first.seq, 65, "unit {unit}");
        }
    });
}

/// kmod-raw with `coalesce=1` answers a batch in one datagram, replies of
/// 16 + 5 bytes one after the other with their padding: read as the
/// kernel lays them out (netlink-proto's own codec reads the second 3
/// bytes early; see `src/codec.rs`).
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_coalesced_replies_of_unaligned_length() {
    netlink_rosetta::with_module_params(RAW, &["coalesce=1"], || {
        run(async {
            let client = raw(proto::RAW_UNIT);
            let payloads: Vec<Vec<u8>> = (0..32).map(|i| format!("e{i:03}").into_bytes()).collect();
            let batch: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let replies = bounded("batch", client.echo_batch(&batch)).await.unwrap();
            let got: Vec<Vec<u8>> = replies.into_iter().map(|r| r.payload).collect();
            assert_eq!(got, payloads);
        });
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_oversize_is_emsgsize_with_extack() {
    run(async {
        for unit in UNITS {
            let client = raw(unit);
            for ack in [false, true] {
                let payload = pattern(proto::MAX_PAYLOAD + 1);
                let result = bounded("oversize", client.echo(&payload, ack)).await;
                let extack = kernel_error(result, libc::EMSGSIZE);
                assert_eq!(
                    extack.as_deref(),
                    Some("payload longer than 16384 bytes"),
                    "unit {unit}, ack {ack}"
                );
                // The error ended the request cleanly: the next echo works.
                let reply = bounded("echo after error", client.echo(b"after", false)).await;
                assert_eq!(reply.unwrap().payload, b"after");
            }
        }
    });
}

/// Runs `f` with the kernel's default receive buffer for new sockets
/// (208 KiB: other test binaries raise it), then puts back what was set.
fn with_default_receive_buffers(f: impl FnOnce()) {
    let knobs = [
        "/proc/sys/net/core/rmem_max",
        "/proc/sys/net/core/rmem_default",
    ];
    let before: Vec<String> = knobs
        .iter()
        .map(|k| std::fs::read_to_string(k).unwrap())
        .collect();
    netlink_rosetta::set_receive_buffers(212_992).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for (knob, value) in knobs.iter().zip(&before) {
        std::fs::write(knob, value.trim()).unwrap();
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// 64 echoes of 16 KiB in flight overflow the default receive buffer of
/// 208 KiB: the requests waiting fail with the overrun, and the client
/// goes on once the module has sent what it had queued.
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_enobufs_fails_the_requests_in_flight_then_the_client_goes_on() {
    with_default_receive_buffers(|| {
        run(async {
            for unit in [proto::KTHREAD_UNIT, C_KTHREAD_UNIT] {
                let client = raw(unit);
                let payload = pattern(proto::MAX_PAYLOAD);
                let run = echo_many(256, 64, &payload, || client.echo(&payload, false)).await;
                match run {
                    Err((_, Error::Overrun)) => {}
                    other => panic!(
                        "unit {unit}: expected ENOBUFS, got {:?}",
                        other.map(|r| r.first.seq)
                    ),
                }
                // The thread still sends the replies it had queued, which
                // may overflow the socket again: an echo meanwhile fails
                // the same way, and once they are through, echoes work.
                let mut tries = 0;
                let reply = loop {
                    match client.echo(b"after", false).await {
                        Err(Error::Overrun) if tries < 20 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => break other,
                    }
                };
                assert_eq!(reply.unwrap().payload, b"after", "unit {unit}");
            }
        })
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_module_not_loaded_names_it() {
    netlink_rosetta::with_module_unloaded(RAW, || {
        run(async {
            let err = RawClient::connect(proto::RAW_UNIT, TIMEOUT)
                .err()
                .expect("no unit 31");
            assert_eq!(
                err.to_string(),
                "netlink unit 31 not available: is kmod-raw loaded?"
            );
        });
    });
}

// ---------------------------------------------------------------------------
// Generic netlink
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_echo() {
    run(async {
        for family in FAMILIES {
            let client = genl(family).await;
            assert_ne!(client.family_id(), 0);
            assert_eq!(client.family(), family);
            for msg in [String::new(), "hello".to_string(), text(proto::MAX_MSG_LEN)] {
                for ack in [false, true] {
                    let reply = bounded("echo", client.echo(&msg, ack))
                        .await
                        .unwrap_or_else(|e| {
                            panic!("{family}, {} chars, ack {ack}: {e}", msg.len())
                        });
                    assert!(reply.payload == msg.as_bytes(), "{family}: reply differs");
                }
            }
            // The lookup ran on genetlink's connection: echoes count from 1.
            let again = client.echo("seq", false).await.unwrap();
            assert_eq!(again.seq, 7, "{family}");
        }
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_missing_msg_is_einval_with_extack() {
    run(async {
        for family in FAMILIES {
            let client = genl(family).await;
            for ack in [false, true] {
                let result =
                    bounded("no MSG", client.command(proto::GENL_CMD_ECHO, None, ack)).await;
                let extack = kernel_error(result, libc::EINVAL);
                assert!(
                    extack.as_deref().is_some_and(|t| t.contains("MSG")),
                    "{family}: {extack:?}"
                );
            }
        }
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_overlong_msg_is_einval() {
    run(async {
        for family in FAMILIES {
            let client = genl(family).await;
            let msg = text(proto::MAX_MSG_LEN + 1);
            let result = bounded("long MSG", client.echo(&msg, false)).await;
            let extack = kernel_error(result, libc::EINVAL);
            assert!(extack.is_some(), "{family}: the policy's extack");
        }
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_unknown_command_is_eopnotsupp() {
    run(async {
        for family in FAMILIES {
            let client = genl(family).await;
            for ack in [false, true] {
                let result = bounded("command 99", client.command(99, Some("x"), ack)).await;
                kernel_error(result, libc::EOPNOTSUPP);
            }
        }
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_family_missing_names_the_module() {
    run(async {
        let err = GenlClient::connect("no_such_family", TIMEOUT)
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "generic netlink family no_such_family not found: is its module loaded?"
        );
    });
    netlink_rosetta::with_module_unloaded(GENL, || {
        run(async {
            let err = GenlClient::connect(proto::GENL_FAMILY_NAME, TIMEOUT)
                .await
                .err()
                .expect("my_genl is gone");
            assert_eq!(
                err.to_string(),
                "generic netlink family my_genl not found: is kmod-genl loaded?"
            );
        });
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_in_flight_replies_reach_their_requests() {
    run(async {
        for family in FAMILIES {
            let client = genl(family).await;
            let msgs: Vec<String> = (0..64).map(|i| format!("genl {i:04}")).collect();
            let replies =
                futures::future::join_all(msgs.iter().map(|m| client.echo(m, false))).await;
            for (reply, msg) in replies.into_iter().zip(&msgs) {
                assert_eq!(reply.unwrap().payload, msg.as_bytes(), "{family}");
            }
        }
    });
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

async fn echo_all(client: &GenlClient, msgs: &[String]) {
    for msg in msgs {
        assert_eq!(
            client.echo(msg, false).await.expect("echo").payload,
            msg.as_bytes()
        );
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
    run(async {
        for family in FAMILIES {
            let client = genl(family).await;
            let msgs = messages_of("dump", 3, 0);
            echo_all(&client, &msgs).await;
            let dump = bounded("dump", client.dump()).await.unwrap();
            assert!(!dump.interrupted);
            assert_eq!(
                dump.seq, 4,
                "{family}: the fourth request of the connection"
            );
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
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_larger_than_a_receive_buffer() {
    run(async {
        for family in FAMILIES {
            let client = GenlClient::connect(family, Duration::from_secs(60))
                .await
                .unwrap();
            let msgs = messages_of("big", proto::ECHO_LOG_LEN, 1000);
            echo_all(&client, &msgs).await;
            let dump = client.dump().await.unwrap();
            assert_eq!(dump.entries.len(), proto::ECHO_LOG_LEN, "{family}");
            assert_consecutive(&dump.entries);
            assert!(dump
                .entries
                .iter()
                .zip(&msgs)
                .all(|(e, m)| e.msg == m.as_bytes()));
        }
    });
}

/// netlink-proto reads a whole dump in one wake-up of its task (the kernel
/// builds the next datagram inside each `recvmsg`), so an echo from the
/// same thread cannot come between two datagrams: echoes from another
/// thread race the dumps until one is interrupted.
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_intr_when_echoes_race_the_dump() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echoer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            run(async {
                let client = genl(proto::GENL_FAMILY_NAME).await;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    client.echo("racing", false).await.unwrap();
                }
            })
        })
    };
    let interrupted = run(async {
        let client = genl(proto::GENL_FAMILY_NAME).await;
        echo_all(&client, &messages_of("fill", 200, 500)).await;
        for _ in 0..200 {
            let dump = client.dump().await.unwrap();
            if dump.interrupted {
                return true;
            }
            assert_consecutive(&dump.entries);
        }
        false
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    echoer.join().unwrap();
    assert!(interrupted, "no dump of 200 saw NLM_F_DUMP_INTR");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_get_one_entry_a_missing_one_and_none() {
    run(async {
        for family in FAMILIES {
            let client = genl(family).await;
            echo_all(&client, &["get me".to_string()]).await;
            let last = client.dump().await.unwrap().entries.pop().unwrap();
            assert_eq!(client.get(Some(last.id)).await.unwrap(), last, "{family}");
            let extack = kernel_error(
                bounded("get", client.get(Some(u32::MAX))).await,
                libc::ENOENT,
            );
            let extack = extack.expect("an extack message");
            assert!(extack.contains(&u32::MAX.to_string()), "{family}: {extack}");
            let extack = kernel_error(bounded("get", client.get(None)).await, libc::EINVAL);
            assert_eq!(extack.as_deref(), Some("missing attribute ID"), "{family}");
        }
    });
}

/// `subscriber.next()`, within [`TIMEOUT`].
async fn next_within(next: impl Future<Output = Result<Notice, Error>>, what: &str) -> Notice {
    match tokio::time::timeout(TIMEOUT, next).await {
        Ok(notice) => notice.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => panic!("{what}: no event within {TIMEOUT:?}"),
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_subscriber_sees_exactly_the_echoes_after_it_joined() {
    run(async {
        for family in FAMILIES {
            let client = genl(family).await;
            echo_all(&client, &["before".to_string()]).await;
            let (found, mut subscriber) =
                Subscriber::<GenlMsg>::genl(family, proto::GENL_MCGRP_EVENTS, TIMEOUT)
                    .await
                    .unwrap();
            assert_eq!(found.id, client.family_id());
            let msgs = messages_of("event", 3, 0);
            echo_all(&client, &msgs).await;
            let mut events = Vec::new();
            for _ in 0..3 {
                match next_within(subscriber.next(), family).await {
                    Notice::Event(Event::Genl(e)) => events.push(e),
                    other => panic!("{family}: {other:?}"),
                }
            }
            assert_consecutive(&events);
            for (e, msg) in events.iter().zip(&msgs) {
                assert_eq!(
                    (e.msg.as_slice(), e.portid),
                    (msg.as_bytes(), client.portid())
                );
            }
        }
    });
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_group_listener_sees_the_copies_of_echoes_after_it_joined() {
    run(async {
        for unit in UNITS {
            let client = raw(unit);
            client.echo(b"before", false).await.unwrap();
            let mut subscriber = Subscriber::<RawMsg>::raw(unit).unwrap();
            assert_eq!(subscriber.group(), proto::RAW_GROUP);
            let reply = client.echo(b"hello", false).await.unwrap();
            let notice = next_within(subscriber.next(), &format!("unit {unit}")).await;
            assert_eq!(
                notice,
                Notice::Event(Event::Raw {
                    seq: reply.seq,
                    portid: client.portid(),
                    payload: b"hello".to_vec()
                }),
                "unit {unit}"
            );
        }
    });
}

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

fn cli(bin: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(netlink_rosetta::workspace_bin(bin))
        .args(args)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// The lines with the numbers that differ between runs (portids, sequence
/// numbers, times, rates) replaced by N.
fn shape(lines: &str) -> String {
    let mut out = String::new();
    let mut digits = false;
    for c in lines.chars() {
        if c.is_ascii_digit() || (digits && c == '.') {
            if !digits {
                out.push('N');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

/// The same switches print the same lines as user-raw's, for every module
/// (numbers aside), and the same JSON keys plus "in_flight".
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn cli_prints_the_lines_of_user_raw() {
    for module in ["raw", "kthread", "genl"] {
        for extra in [&[][..], &["--ack"], &["--count", "50", "--size", "20"]] {
            let mut args = vec!["--module", module];
            args.extend_from_slice(extra);
            let (code, ours, err) = cli("user-async", &args);
            assert_eq!((code, err.as_str()), (Some(0), ""), "{args:?}");
            let (_, theirs, _) = cli("user-raw", &args);
            assert_eq!(shape(&ours), shape(&theirs), "{args:?}");
            assert!(
                ours.lines().nth(1).unwrap().starts_with("echo seq 1: "),
                "{ours}"
            );
        }
        let (code, json, _) = cli(
            "user-async",
            &[
                "--module",
                module,
                "--json",
                "--in-flight",
                "8",
                "--count",
                "64",
                "hi",
            ],
        );
        assert_eq!(code, Some(0));
        assert!(
            json.starts_with(&format!(
                "{{\"client\":\"async\",\"module\":\"{module}\",\"unit\":"
            )),
            "{json}"
        );
        assert!(
            json.contains(
                ",\"in_flight\":8,\"ok\":true,\"reply\":\"hi\",\"bytes\":2,\"round_trips\":64,"
            ),
            "{json}"
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn cli_errors_as_the_other_clients() {
    let (code, out, err) = cli("user-async", &["--size", "16385"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(err, "user-async: error: echo seq 1: kernel replied EMSGSIZE (errno 90): payload longer than 16384 bytes\n");
    let (code, _, err) = cli("user-async", &["--dump"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "user-async: error: --dump applies to generic netlink only: the raw units keep no log\n"
    );
    netlink_rosetta::with_module_unloaded(KTHREAD, || {
        let (code, json, err) = cli("user-async", &["--module", "kthread", "--json"]);
        assert_eq!((code, err.as_str()), (Some(1), ""));
        assert_eq!(
            json,
            "{\"client\":\"async\",\"module\":\"kthread\",\"ok\":false,\"error\":\"netlink unit 25 not available: is kmod-kthread loaded?\"}\n"
        );
    });
}

/// `--dump` lines, and `--subscribe` after its header.
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn cli_dump_and_subscribe() {
    let bin = netlink_rosetta::workspace_bin("user-async");
    run(async {
        let client = genl(proto::GENL_FAMILY_NAME).await;
        echo_all(&client, &["cli".to_string()]).await;
        let (code, stdout, _) = cli("user-async", &["--module", "genl", "--dump"]);
        assert_eq!(code, Some(0), "{stdout}");
        let lines: Vec<&str> = stdout.lines().collect();
        let id = client.family_id();
        assert!(lines[0].starts_with(&format!("module genl: family my_genl id {id}, portid ")));
        let n = lines.len() - 2;
        assert_eq!(lines[n + 1], format!("done seq 1: {n} entries"));
        assert!(lines[n].ends_with(&format!(" portid {}: \"cli\"", client.portid())));

        let listener = netlink_rosetta::Listener::start(
            &bin,
            &["--module", "genl", "--subscribe", "--count", "1"],
        );
        let head = format!("module genl: family my_genl id {id}, group events id ");
        assert!(listener.header.starts_with(&head), "{}", listener.header);
        echo_all(&client, &["hello".to_string()]).await;
        let (status, lines, stderr) = listener.finish(Duration::from_secs(10));
        assert_eq!((status, stderr.as_str()), (Some(0), ""));
        let last = client.dump().await.unwrap().entries.pop().unwrap();
        assert_eq!(
            lines,
            [format!(
                "event id {} portid {}: \"hello\"",
                last.id,
                client.portid()
            )]
        );

        let listener =
            netlink_rosetta::Listener::start(&bin, &["--subscribe", "--count", "1", "--json"]);
        let raw = raw(proto::RAW_UNIT);
        let reply = raw.echo(b"hello", false).await.unwrap();
        let (status, lines, stderr) = listener.finish(Duration::from_secs(10));
        assert_eq!((status, stderr.as_str()), (Some(0), ""));
        assert_eq!(
            lines,
            [format!(
                "{{\"event\":{{\"seq\":{},\"portid\":{},\"msg\":\"hello\"}}}}",
                reply.seq,
                raw.portid()
            )]
        );
    });
}
