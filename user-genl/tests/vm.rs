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

use user_genl::{Error, GenlClient, Mode, RawClient};

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
