//! Round-trip benchmarks: every module × client, plus anchors.
//!
//! They need the kernel modules, so they run inside the VM:
//!
//! ```text
//! $ cargo xtask bench            # full run, about 22 minutes
//! $ cargo xtask bench --quick    # a few minutes
//! ```
//!
//! which writes criterion's report to `target/criterion/` and a summary to
//! `target/rosetta/bench-summary.{json,md,svg}`. A group whose module is not
//! loaded is skipped with a message on stderr, never silently.
//!
//! Groups: `raw`, `kthread`, `genl` (one per Rust module), `c-raw`,
//! `c-kthread`, `c-genl` (their C twins in `c/modules/`, with the raw-libc
//! client only: the bar the Rust modules are measured against) and
//! `anchor` (a socket pair's round trip, nlctrl's answers). Benchmark
//! ids are `<client>/<mode>/<payload bytes>`, e.g. `raw/single/16`: modes are
//! `single` (one request at a time), `pipelined-8` and `pipelined-64` (N
//! requests in flight before reading) and `batched-N` (N requests in one
//! datagram). With `ROSETTA_COALESCED` set (the raw units' modules loaded
//! with `coalesce=1`), the raw units' pipelined and batched modes are named
//! `...-coalesced`. Throughput is counted in round trips. The async client
//! (`user-async`, tokio) has `async/single`, `async/pipelined-8` and
//! `async/pipelined-64` in every module's group, N echoes outstanding on
//! one connection, and `async-stock/pipelined-N`: the same on
//! netlink-proto's connection future as it ships.
//!
//! With `ROSETTA_PROBE=<group>/<client>/<mode>/<bytes>:<count>` the binary
//! runs that benchmark's loop `count` times without criterion and exits:
//! `cargo xtask bench` runs it under `strace -c` to count syscalls per round
//! trip. `ROSETTA_PROBE=list` prints every id. With `ROSETTA_PROFILE` set
//! too, the loop runs between two marker instructions, after a warm-up:
//! `cargo xtask profile` counts the guest's instructions between them.
//!
//! With `ROSETTA_RATIOS=<rounds>:<ms>:<file>` it measures the pairs of ids
//! listed in `file` (one `<a> <b>` per line) interleaved: each round runs `a`
//! and `b` for about `ms` milliseconds each, in alternating order, and
//! prints `<a> <b> <round> <ns per round trip of a> <ns per round trip of
//! b>`, with `a` and `b` as the file names them. Ratios taken this way see the same machine state on both sides;
//! `cargo xtask bench` takes the targets' ratios from them. An id ending in
//! `/*` matches any payload size.
//!
//! Dumps and multicast (issue 16): `genl/raw/dump-1024/16` dumps kmod-genl's
//! echo log of 1024 16-byte entries (refilled before it is measured) and
//! counts entries, not round trips; its anchor `anchor/nlctrl/dump/20` is
//! nlctrl's `CTRL_CMD_GETFAMILY` dump, counted in families.
//! `<module>/raw/subscribers-N/16` is the one-at-a-time echo while N
//! listeners of the module's group (kmod-genl's `events`, the raw units'
//! group 1) drain it on their own threads; they exist only while their
//! benchmark is measured, so the other benchmarks run with no listener.
//!
//! Namespaces (issue 17): `<module>/raw/netns/16` is the one-at-a-time echo
//! from a socket opened in a fresh network namespace, which the module
//! serves with a kernel socket (or echo log) of its own.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::any::Any;
use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use user_raw::genl::GenlMsgHdr;
use user_raw::{messages, Socket, NLM_F_REQUEST, RECV_BUF_LEN};

const SIZES: [usize; 3] = [16, 1024, 16384];

/// A payload of `n` bytes: letters only, so that it is also a valid MSG
/// string for the generic netlink family.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// One benchmark: an id and a closure doing `per_iter` round trips.
struct Case {
    group: &'static str,
    client: &'static str,
    mode: String,
    bytes: usize,
    per_iter: u64,
    run: Box<dyn FnMut()>,
    /// Run before the benchmark is measured (not timed): what it returns
    /// stays alive while it is measured (see [`activate`]).
    prepare: Option<Box<dyn FnMut() -> Box<dyn Any + Send>>>,
}

/// What the benchmark being measured prepared: kept until the next one is
/// activated.
static PREPARED: Mutex<Option<Box<dyn Any + Send>>> = Mutex::new(None);

/// Readies `case` for measuring: drops what the previous one prepared
/// (its listeners stop), then runs its own `prepare`.
fn activate(case: &mut Case) {
    let mut prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    drop(prepared.take());
    if let Some(prepare) = &mut case.prepare {
        *prepared = Some(prepare());
    }
}

impl Case {
    fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.group, self.client, self.mode, self.bytes
        )
    }
}

fn check<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The suffix of the pipelined and batched modes of a module that can
/// coalesce (the Rust raw units'): `-coalesced` when `ROSETTA_COALESCED`
/// says that they were loaded with `coalesce=1` (one reply datagram for
/// many answers).
fn coalesced_suffix(coalescing: bool) -> &'static str {
    if coalescing && std::env::var_os("ROSETTA_COALESCED").is_some() {
        "-coalesced"
    } else {
        ""
    }
}

/// The raw-libc client on a raw unit: one, N in flight, or N in a datagram.
/// `coalescing`: whether the module serving it has `coalesce=1` (the Rust
/// ones; their C twins always send a datagram per answer).
fn raw_cases(group: &'static str, unit: i32, coalescing: bool, cases: &mut Vec<Case>) {
    if let Err(e) = Socket::connect(unit) {
        eprintln!("SKIPPED group {group}: {e}");
        return;
    }
    let suffix = coalesced_suffix(coalescing);
    for bytes in SIZES {
        let mut sock = check("connect", Socket::connect(unit));
        let data = payload(bytes);
        cases.push(Case {
            group,
            client: "raw",
            mode: "single".into(),
            bytes,
            per_iter: 1,
            prepare: None,
            run: Box::new(move || {
                black_box(check("echo", sock.echo(&data)));
            }),
        });
    }
    for n in [8usize, 64] {
        let mut sock = check("connect", Socket::connect(unit));
        let data = payload(16);
        let mut buf = vec![0; RECV_BUF_LEN];
        cases.push(Case {
            group,
            client: "raw",
            mode: format!("pipelined-{n}{suffix}"),
            bytes: 16,
            per_iter: n as u64,
            prepare: None,
            run: Box::new(move || {
                for _ in 0..n {
                    check("send", sock.send(proto::ECHO_MSG_TYPE, 0, &data));
                }
                recv_replies(&mut sock, &mut buf, n);
            }),
        });
    }
    let n = 64;
    let mut sock = check("connect", Socket::connect(unit));
    let data = payload(16);
    let mut buf = vec![0; RECV_BUF_LEN];
    cases.push(Case {
        group,
        client: "raw",
        mode: format!("batched-{n}{suffix}"),
        bytes: 16,
        per_iter: n as u64,
        prepare: None,
        run: Box::new(move || {
            let requests: Vec<(u16, u16, &[u8])> = (0..n)
                .map(|_| (proto::ECHO_MSG_TYPE, 0, &data[..]))
                .collect();
            check("send_batch", sock.send_batch(&requests));
            recv_replies(&mut sock, &mut buf, n);
        }),
    });
    for listeners in SUBSCRIBERS {
        let mut sock = check("connect", Socket::connect(unit));
        let data = payload(16);
        cases.push(Case {
            group,
            client: "raw",
            mode: format!("subscribers-{listeners}"),
            bytes: 16,
            per_iter: 1,
            prepare: Some(Box::new(move || {
                Box::new(Drainers::start(unit, proto::RAW_GROUP, listeners))
            })),
            run: Box::new(move || {
                black_box(check("echo", sock.echo(&data)));
            }),
        });
    }
    // The plain echo from inside a fresh network namespace, through the
    // unit's kernel socket there.
    let ns = check("a network namespace", netlink_rosetta::Netns::new());
    let mut sock = ns.run(|| check("connect in the namespace", Socket::connect(unit)));
    let data = payload(16);
    cases.push(Case {
        group,
        client: "raw",
        mode: "netns".into(),
        bytes: 16,
        per_iter: 1,
        prepare: None,
        run: Box::new(move || {
            black_box(check("echo", sock.echo(&data)));
        }),
    });
}

/// How many listeners drain the module's group in the `subscribers-N`
/// benchmarks.
const SUBSCRIBERS: [usize; 3] = [0, 1, 8];

/// Listeners of a multicast group, each on its own thread, reading
/// everything until dropped: they measure the broadcast, not ENOBUFS (which
/// they count, and report on stderr).
struct Drainers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    received: Arc<AtomicU64>,
    overruns: Arc<AtomicU64>,
}

impl Drainers {
    fn start(unit: i32, group: u32, n: usize) -> Drainers {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let overruns = Arc::new(AtomicU64::new(0));
        let threads = (0..n)
            .map(|_| {
                let fd = listener(unit, group);
                let (stop, received, overruns) = (stop.clone(), received.clone(), overruns.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: `buf` is valid for writes of its length.
                        let n = unsafe {
                            libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                        };
                        if n > 0 {
                            received.fetch_add(1, Ordering::Relaxed);
                        } else if std::io::Error::last_os_error().raw_os_error()
                            == Some(libc::ENOBUFS)
                        {
                            overruns.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Drainers {
            stop,
            threads,
            received,
            overruns,
        }
    }
}

impl Drop for Drainers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let overruns = self.overruns.load(Ordering::Relaxed);
        if overruns > 0 {
            eprintln!(
                "WARNING: the listeners overran {overruns} times (received {} datagrams)",
                self.received.load(Ordering::Relaxed)
            );
        }
    }
}

fn setsockopt(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: `value` is a valid c_int and we pass its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// A socket of `unit` that has joined `group`, with a 4 MiB receive buffer
/// if we may (root) and a receive timeout of 50 ms, so that its thread sees
/// the stop flag.
fn listener(unit: i32, group: u32) -> OwnedFd {
    // SAFETY: plain syscall with integer arguments.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, unit) };
    assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: `tv` is a valid timeval and we pass its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    // SAFETY: all-zero is a valid sockaddr_nl (nl_pid 0: the kernel assigns one).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    assert!(
        setsockopt(
            &fd,
            libc::SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            group as libc::c_int
        ),
        "NETLINK_ADD_MEMBERSHIP {group}: {}",
        std::io::Error::last_os_error()
    );
    fd
}

/// The id of the `events` group of `family` (kmod-genl's or its C twin's),
/// from nlctrl (`CTRL_ATTR_MCAST_GROUPS`: nested groups of
/// `CTRL_ATTR_MCAST_GRP_NAME` and `CTRL_ATTR_MCAST_GRP_ID`).
fn events_group(sock: &mut Socket, family: &str) -> u32 {
    const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
    const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
    const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
    let mut attrs = Vec::new();
    check(
        "attr",
        user_raw::put_nul_string(
            &mut attrs,
            user_raw::genl::CTRL_ATTR_FAMILY_NAME,
            family.as_bytes(),
        ),
    );
    let reply = check(
        "GETFAMILY",
        sock.genl_request(
            user_raw::genl::GENL_ID_CTRL,
            0,
            GenlMsgHdr::new(
                user_raw::genl::CTRL_CMD_GETFAMILY,
                user_raw::genl::CTRL_VERSION,
            ),
            &attrs,
        ),
    );
    let groups = check(
        "attrs",
        user_raw::find_attr(&reply.attrs, CTRL_ATTR_MCAST_GROUPS),
    )
    .unwrap_or_else(|| panic!("{family} has no multicast groups"));
    for group in groups.nested() {
        let group = check("group", group);
        let name = check(
            "name",
            user_raw::find_attr(group.value, CTRL_ATTR_MCAST_GRP_NAME),
        );
        if name.and_then(|n| n.nul_string().ok()) == Some(proto::GENL_MCGRP_EVENTS.as_bytes()) {
            let id = check(
                "id",
                user_raw::find_attr(group.value, CTRL_ATTR_MCAST_GRP_ID),
            );
            return check("id", id.expect("a group id").u32());
        }
    }
    panic!("{family} has no group {}", proto::GENL_MCGRP_EVENTS)
}

/// Sends the dump request `request` and reads the dump to its
/// `NLMSG_DONE`; returns the number of messages before it.
fn dump(sock: &mut Socket, request: &[u8], buf: &mut [u8]) -> u64 {
    check("send", sock.send_datagram(request));
    let mut entries = 0;
    loop {
        let n = check("recv", sock.recv(buf));
        for msg in messages(&buf[..n]) {
            let (hdr, _) = check("dump message", msg);
            match hdr.nlmsg_type {
                user_raw::NLMSG_DONE => return entries,
                user_raw::NLMSG_ERROR => panic!("the dump failed: {hdr:?}"),
                _ => entries += 1,
            }
        }
    }
}

/// A dump request (`NLM_F_DUMP`) to `family`, command `cmd`, no attributes.
fn dump_request(family: u16, cmd: u8, version: u8) -> Vec<u8> {
    let mut request = Vec::new();
    check(
        "encode",
        user_raw::genl::encode_genl(
            &mut request,
            family,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            GenlMsgHdr::new(cmd, version),
            &[],
        ),
    );
    request
}

/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;

/// A client's one-at-a-time echo at every size: `connect` opens a fresh
/// client and returns its echo; a module that is not loaded skips the client
/// with a message.
fn single_cases<F>(group: &'static str, client: &'static str, connect: F, cases: &mut Vec<Case>)
where
    F: Fn() -> Result<Box<dyn FnMut(&[u8])>, String>,
{
    for bytes in SIZES {
        let mut echo = match connect() {
            Ok(echo) => echo,
            Err(e) => {
                eprintln!("SKIPPED {group}/{client}: {e}");
                return;
            }
        };
        let data = payload(bytes);
        cases.push(Case {
            group,
            client,
            mode: "single".into(),
            bytes,
            per_iter: 1,
            prepare: None,
            run: Box::new(move || echo(&data)),
        });
    }
}

/// The libnl-style client on a raw unit, without and with auto-ack (libnl's
/// default: every request asks for an ack, which costs a second message).
fn libnl_raw_cases(group: &'static str, unit: i32, cases: &mut Vec<Case>) {
    for (client, auto_ack) in [("libnl-style", false), ("libnl-style-autoack", true)] {
        single_cases(
            group,
            client,
            || {
                let mut sk = user_libnl_style::NlSock::connect(unit).map_err(|e| e.to_string())?;
                if !auto_ack {
                    sk.disable_auto_ack();
                }
                Ok(Box::new(move |data: &[u8]| {
                    black_box(check(
                        "libnl-style echo",
                        user_libnl_style::echo_raw(&mut sk, data),
                    ));
                }))
            },
            cases,
        );
    }
}

/// The libnl-style client on the generic netlink family.
fn libnl_genl_cases(cases: &mut Vec<Case>) {
    for (client, auto_ack) in [("libnl-style", false), ("libnl-style-autoack", true)] {
        single_cases(
            "genl",
            client,
            || {
                let family = user_libnl_style::NlSock::genl_connect()
                    .and_then(|mut sk| sk.genl_ctrl_resolve(proto::GENL_FAMILY_NAME))
                    .map_err(|e| e.to_string())?;
                let mut sk = user_libnl_style::NlSock::genl_connect().map_err(|e| e.to_string())?;
                if !auto_ack {
                    sk.disable_auto_ack();
                }
                Ok(Box::new(move |data: &[u8]| {
                    let text = std::str::from_utf8(data).expect("letters");
                    black_box(check(
                        "libnl-style genl echo",
                        user_libnl_style::echo_genl(&mut sk, family, text),
                    ));
                }))
            },
            cases,
        );
    }
}

/// The neli client, through its router (neli's recommended API) and through
/// its lower-level synchronous socket. The router runs as neli ships it:
/// timeout zero turns off user-genl's hang guard, which would run every
/// request on a helper thread of its own.
const NELI_MODES: [(&str, user_genl::Mode, Duration); 2] = [
    ("neli", user_genl::Mode::Router, Duration::ZERO),
    (
        "neli-socket",
        user_genl::Mode::Socket,
        Duration::from_secs(5),
    ),
];

/// The neli client on a raw unit.
fn neli_raw_cases(group: &'static str, unit: i32, cases: &mut Vec<Case>) {
    for (client, mode, timeout) in NELI_MODES {
        single_cases(
            group,
            client,
            || {
                let mut c = user_genl::RawClient::connect(unit, mode, timeout)
                    .map_err(|e| e.to_string())?;
                Ok(Box::new(move |data: &[u8]| {
                    black_box(check("neli echo", c.echo(data)));
                }))
            },
            cases,
        );
    }
}

/// The neli client on the generic netlink family.
fn neli_genl_cases(cases: &mut Vec<Case>) {
    for (client, mode, timeout) in NELI_MODES {
        single_cases(
            "genl",
            client,
            || {
                let mut c = user_genl::GenlClient::connect(proto::GENL_FAMILY_NAME, mode, timeout)
                    .map_err(|e| e.to_string())?;
                Ok(Box::new(move |data: &[u8]| {
                    let text = std::str::from_utf8(data).expect("letters");
                    black_box(check("neli genl echo", c.echo(text)));
                }))
            },
            cases,
        );
    }
}

/// The async client (`user-async`) on a raw unit or the family: one
/// request at a time, and 8 or 64 in flight (one `echo_many` of N echoes
/// per iteration, N outstanding); `async-stock` is the same with
/// netlink-proto's own connection future, which sends one queued request
/// per wake-up (see `user-async/src/driver.rs`). Each case owns a
/// current-thread runtime and its client; an iteration is one `block_on`.
fn async_cases(group: &'static str, unit: Option<i32>, cases: &mut Vec<Case>) {
    use user_async::{echo_many, Driving, GenlClient, RawClient};
    /// A runtime and an echo of `data` on a fresh client of `group`.
    type Echo = Box<
        dyn Fn(
            Vec<u8>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<user_async::Echoed, user_async::Error>>>,
        >,
    >;
    let connect = |driving: Driving| -> Result<(tokio::runtime::Runtime, Echo), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(5);
        let echo: Echo = match unit {
            Some(unit) => {
                let _guard = rt.enter();
                let c = std::rc::Rc::new(
                    RawClient::connect_with(unit, timeout, driving).map_err(|e| e.to_string())?,
                );
                Box::new(move |data| {
                    let c = c.clone();
                    Box::pin(async move { c.echo(&data, false).await })
                })
            }
            None => {
                let c = rt
                    .block_on(GenlClient::connect_with(
                        proto::GENL_FAMILY_NAME,
                        timeout,
                        driving,
                    ))
                    .map_err(|e| e.to_string())?;
                let c = std::rc::Rc::new(c);
                Box::new(move |data| {
                    let c = c.clone();
                    Box::pin(async move {
                        let text = String::from_utf8(data).expect("letters");
                        c.echo(&text, false).await
                    })
                })
            }
        };
        Ok((rt, echo))
    };
    if let Err(e) = connect(Driving::Batched) {
        eprintln!("SKIPPED {group}/async: {e}");
        return;
    }
    for bytes in SIZES {
        let (rt, echo) = check("connect", connect(Driving::Batched));
        let data = payload(bytes);
        cases.push(Case {
            group,
            client: "async",
            mode: "single".into(),
            bytes,
            per_iter: 1,
            prepare: None,
            run: Box::new(move || {
                black_box(check("async echo", rt.block_on(echo(data.clone()))));
            }),
        });
    }
    for (client, driving) in [("async", Driving::Batched), ("async-stock", Driving::Stock)] {
        for n in [8usize, 64] {
            let (rt, echo) = check("connect", connect(driving));
            let data = payload(16);
            cases.push(Case {
                group,
                client,
                mode: format!("pipelined-{n}"),
                bytes: 16,
                per_iter: n as u64,
                prepare: None,
                run: Box::new(move || {
                    let run = rt.block_on(echo_many(n as u64, n, &data, || echo(data.clone())));
                    black_box(run.unwrap_or_else(|(i, e)| panic!("async echo {i}: {e}")));
                }),
            });
        }
    }
}

/// Receives `n` reply messages, whatever datagrams they come in.
fn recv_replies(sock: &mut Socket, buf: &mut [u8], n: usize) {
    let mut got = 0;
    while got < n {
        let len = check("recv", sock.recv(buf));
        for msg in messages(&buf[..len]) {
            let (hdr, _) = check("reply", msg);
            assert_eq!(hdr.nlmsg_type, proto::ECHO_MSG_TYPE, "an echo reply");
            got += 1;
        }
    }
}

/// The raw-libc client on a generic netlink family: kmod-genl's `my_genl`
/// (group `genl`) or its C twin's `c_genl` (group `c-genl`).
fn genl_cases(group: &'static str, name: &str, cases: &mut Vec<Case>) {
    let family = match Socket::connect_genl().and_then(|mut s| s.resolve_family(name)) {
        Ok(family) => family.id,
        Err(e) => {
            eprintln!("SKIPPED group {group}: {e}");
            return;
        }
    };
    for bytes in SIZES {
        let mut sock = check("connect", Socket::connect_genl());
        let data = payload(bytes);
        cases.push(Case {
            group,
            client: "raw",
            mode: "single".into(),
            bytes,
            per_iter: 1,
            prepare: None,
            run: Box::new(move || {
                black_box(check("genl echo", sock.genl_echo(family, &data)));
            }),
        });
    }
    let hdr = GenlMsgHdr::new(proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION);
    let mut attrs = Vec::new();
    check(
        "attr",
        user_raw::put_attr(&mut attrs, proto::GENL_ATTR_MSG, b"abcdefghijklmno\0"),
    );
    for n in [8usize, 64] {
        let mut sock = check("connect", Socket::connect_genl());
        let attrs = attrs.clone();
        cases.push(Case {
            group,
            client: "raw",
            mode: format!("pipelined-{n}"),
            bytes: 16,
            per_iter: n as u64,
            prepare: None,
            run: Box::new(move || {
                let seqs: Vec<u32> = (0..n)
                    .map(|_| check("send", sock.genl_send(family, 0, hdr, &attrs)))
                    .collect();
                for seq in seqs {
                    check("recv", sock.genl_recv(family, seq, false));
                }
            }),
        });
    }
    let events = events_group(&mut check("connect", Socket::connect_genl()), name);
    for listeners in SUBSCRIBERS {
        let mut sock = check("connect", Socket::connect_genl());
        let data = payload(16);
        cases.push(Case {
            group,
            client: "raw",
            mode: format!("subscribers-{listeners}"),
            bytes: 16,
            per_iter: 1,
            prepare: Some(Box::new(move || {
                Box::new(Drainers::start(libc::NETLINK_GENERIC, events, listeners))
            })),
            run: Box::new(move || {
                black_box(check("genl echo", sock.genl_echo(family, &data)));
            }),
        });
    }
    // The plain echo from inside a fresh network namespace, with that
    // namespace's echo log.
    let ns = check("a network namespace", netlink_rosetta::Netns::new());
    let mut sock = ns.run(|| check("connect in the namespace", Socket::connect_genl()));
    let data = payload(16);
    cases.push(Case {
        group,
        client: "raw",
        mode: "netns".into(),
        bytes: 16,
        per_iter: 1,
        prepare: None,
        run: Box::new(move || {
            black_box(check("genl echo", sock.genl_echo(family, &data)));
        }),
    });
    // The echo log, full of 16-byte entries (the echo benchmarks leave
    // bigger ones in it: it is refilled before each measurement).
    let mut filler = check("connect", Socket::connect_genl());
    let mut sock = check("connect", Socket::connect_genl());
    let request = dump_request(family, proto::GENL_CMD_GET, proto::GENL_FAMILY_VERSION);
    let mut buf = vec![0; RECV_BUF_LEN];
    let entries = proto::ECHO_LOG_LEN as u64;
    cases.push(Case {
        group,
        client: "raw",
        mode: format!("dump-{entries}"),
        bytes: 16,
        per_iter: entries,
        prepare: Some(Box::new(move || {
            let data = payload(16);
            for _ in 0..entries {
                check("genl echo", filler.genl_echo(family, &data));
            }
            Box::new(())
        })),
        run: Box::new(move || {
            let got = dump(&mut sock, &request, &mut buf);
            assert_eq!(got, entries, "entries in the dump of the echo log");
        }),
    });
}

/// The anchors: what any round trip costs at least, and the kernel's own C
/// generic netlink answers (nlctrl).
fn anchor_cases(cases: &mut Vec<Case>) {
    for bytes in SIZES {
        let (a, b) = socketpair();
        let data = payload(bytes);
        let mut buf = vec![0u8; bytes.max(1)];
        cases.push(Case {
            group: "anchor",
            client: "unix-floor",
            mode: "single".into(),
            bytes,
            per_iter: 1,
            prepare: None,
            run: Box::new(move || {
                send(&a, &data);
                recv(&b, &mut buf);
            }),
        });
    }
    for bytes in SIZES {
        let (a, child) = ping_pong_child(bytes);
        let data = payload(bytes);
        let mut buf = vec![0u8; bytes.max(1)];
        cases.push(Case {
            group: "anchor",
            client: "unix-pingpong",
            mode: "single".into(),
            bytes,
            per_iter: 1,
            prepare: None,
            run: Box::new(move || {
                let _keep = &child;
                send(&a, &data);
                recv(&a, &mut buf);
            }),
        });
    }
    // nlctrl answering CTRL_CMD_GETFAMILY for itself.
    let mut sock = check("connect", Socket::connect_genl());
    let mut attrs = Vec::new();
    check(
        "attr",
        user_raw::put_attr(
            &mut attrs,
            user_raw::genl::CTRL_ATTR_FAMILY_NAME,
            b"nlctrl\0",
        ),
    );
    let mut request = Vec::new();
    let hdr = GenlMsgHdr::new(
        user_raw::genl::CTRL_CMD_GETFAMILY,
        user_raw::genl::CTRL_VERSION,
    );
    check(
        "encode",
        user_raw::genl::encode_genl(
            &mut request,
            user_raw::genl::GENL_ID_CTRL,
            NLM_F_REQUEST,
            1,
            hdr,
            &attrs,
        ),
    );
    let mut buf = vec![0; RECV_BUF_LEN];
    cases.push(Case {
        group: "anchor",
        client: "nlctrl",
        mode: "single".into(),
        bytes: request.len(),
        per_iter: 1,
        prepare: None,
        run: Box::new(move || {
            check("send", sock.send_datagram(&request));
            black_box(check("recv", sock.recv(&mut buf)));
        }),
    });
    // nlctrl's dump of every family: the kernel's own C dump.
    let mut sock = check("connect", Socket::connect_genl());
    let request = dump_request(
        user_raw::genl::GENL_ID_CTRL,
        user_raw::genl::CTRL_CMD_GETFAMILY,
        user_raw::genl::CTRL_VERSION,
    );
    let mut buf = vec![0; RECV_BUF_LEN];
    let families = dump(&mut sock, &request, &mut buf);
    cases.push(Case {
        group: "anchor",
        client: "nlctrl",
        mode: "dump".into(),
        bytes: request.len(),
        per_iter: families,
        prepare: None,
        run: Box::new(move || {
            let got = dump(&mut sock, &request, &mut buf);
            assert_eq!(got, families, "families in nlctrl's dump");
        }),
    });
    // A family id that does not exist: the core answers -ENOENT.
    let mut sock = check("connect", Socket::connect_genl());
    let mut request = Vec::new();
    check(
        "encode",
        user_raw::genl::encode_genl(
            &mut request,
            u16::MAX,
            NLM_F_REQUEST,
            1,
            GenlMsgHdr::new(1, 1),
            &[],
        ),
    );
    let mut buf = vec![0; RECV_BUF_LEN];
    cases.push(Case {
        group: "anchor",
        client: "genl-unknown",
        mode: "single".into(),
        bytes: request.len(),
        per_iter: 1,
        prepare: None,
        run: Box::new(move || {
            check("send", sock.send_datagram(&request));
            black_box(check("recv", sock.recv(&mut buf)));
        }),
    });
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: Both descriptors are fresh and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn send(fd: &OwnedFd, data: &[u8]) {
    // SAFETY: `data` is valid for reads of its length.
    let n = unsafe { libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
    assert_eq!(
        n,
        data.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert!(n >= 0, "recv: {}", std::io::Error::last_os_error());
    n as usize
}

/// A child process that echoes every datagram on its end of a socketpair
/// until it gets an empty one; returns our end and a guard that stops and
/// reaps it.
fn ping_pong_child(bytes: usize) -> (OwnedFd, Child) {
    let (a, b) = socketpair();
    // SAFETY: The child only uses async-signal-safe calls (recv, send,
    // _exit) on memory it owns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        drop(a);
        let mut buf = vec![0u8; bytes.max(1)];
        loop {
            let n = recv(&b, &mut buf);
            if n == 0 {
                // SAFETY: Ends the child without running the parent's
                // destructors.
                unsafe { libc::_exit(0) };
            }
            send(&b, &buf[..n]);
        }
    }
    drop(b);
    let stop = a.try_clone().expect("dup");
    (a, Child { pid, stop })
}

struct Child {
    pid: libc::pid_t,
    stop: OwnedFd,
}

impl Drop for Child {
    fn drop(&mut self) {
        send(&self.stop, &[]);
        // SAFETY: Reaps our own child.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }
}

/// Every benchmark whose group and client `want` accepts (`want` sees the
/// client's family name: `raw`, `libnl-style`, `neli`, `async` or, for the anchors,
/// `anchor`), so that a probe sets up only what it runs.
fn all_cases(want: impl Fn(&str, &str) -> bool) -> Vec<Case> {
    let mut cases = Vec::new();
    for (group, unit) in [("raw", proto::RAW_UNIT), ("kthread", proto::KTHREAD_UNIT)] {
        if want(group, "raw") {
            raw_cases(group, unit, true, &mut cases);
        }
        if want(group, "libnl-style") {
            libnl_raw_cases(group, unit, &mut cases);
        }
        if want(group, "neli") {
            neli_raw_cases(group, unit, &mut cases);
        }
        if want(group, "async") {
            async_cases(group, Some(unit), &mut cases);
        }
    }
    if want("genl", "raw") {
        genl_cases("genl", proto::GENL_FAMILY_NAME, &mut cases);
    }
    if want("genl", "libnl-style") {
        libnl_genl_cases(&mut cases);
    }
    if want("genl", "neli") {
        neli_genl_cases(&mut cases);
    }
    if want("genl", "async") {
        async_cases("genl", None, &mut cases);
    }
    // The C twins (c/modules/), with the raw-libc client only: what the
    // Rust abstractions cost, compared with the same design in plain C.
    for (group, unit) in [
        ("c-raw", netlink_rosetta::C_RAW_UNIT),
        ("c-kthread", netlink_rosetta::C_KTHREAD_UNIT),
    ] {
        if want(group, "raw") {
            raw_cases(group, unit, false, &mut cases);
        }
    }
    if want("c-genl", "raw") {
        genl_cases("c-genl", netlink_rosetta::C_GENL_FAMILY, &mut cases);
    }
    if want("anchor", "anchor") {
        anchor_cases(&mut cases);
    }
    cases
}

/// Accepts the group and client family of the benchmark ids in `ids`.
fn wanted(ids: &[&str]) -> impl Fn(&str, &str) -> bool {
    let keys: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let mut parts = id.split('/');
            let group = parts.next().unwrap_or("").to_string();
            let client = parts.next().unwrap_or("");
            let family = if group == "anchor" {
                "anchor"
            } else if client.starts_with("libnl-style") {
                "libnl-style"
            } else if client.starts_with("neli") {
                "neli"
            } else if client.starts_with("async") {
                "async"
            } else {
                client
            };
            (group, family.to_string())
        })
        .collect();
    move |group, family| keys.iter().any(|(g, f)| g == group && f == family)
}

/// Every group, in the order criterion measures them.
const GROUPS: [&str; 7] = [
    "raw",
    "kthread",
    "genl",
    "c-raw",
    "c-kthread",
    "c-genl",
    "anchor",
];

fn main() {
    if let Ok(spec) = std::env::var("ROSETTA_PROBE") {
        probe(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("ROSETTA_RATIOS") {
        ratios(&spec);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    let mut cases = all_cases(|_, _| true);
    for group_name in GROUPS {
        let mut group = criterion.benchmark_group(group_name);
        for case in cases.iter_mut().filter(|c| c.group == group_name) {
            group.throughput(Throughput::Elements(case.per_iter));
            activate(case);
            let id = BenchmarkId::new(format!("{}/{}", case.client, case.mode), case.bytes);
            group.bench_function(id, |b| b.iter(&mut case.run));
        }
        group.finish();
    }
    drop(PREPARED.lock().unwrap_or_else(|e| e.into_inner()).take());
    criterion.final_summary();
}

/// The index of the case with `id`; `group/client/mode/*` matches any size.
fn find_case(cases: &[Case], id: &str) -> usize {
    cases
        .iter()
        .position(|c| match id.strip_suffix("/*") {
            Some(prefix) => c.id().rsplit_once('/').is_some_and(|(p, _)| p == prefix),
            None => c.id() == id,
        })
        .unwrap_or_else(|| panic!("no benchmark {id}"))
}

/// Runs `case` `iters` times; returns the nanoseconds per round trip.
fn time_case(case: &mut Case, iters: u64) -> f64 {
    activate(case);
    let start = Instant::now();
    for _ in 0..iters {
        (case.run)();
    }
    start.elapsed().as_nanos() as f64 / (iters * case.per_iter) as f64
}

/// How many iterations of `case` take about `budget`, after a warm-up.
fn calibrate(case: &mut Case, budget: Duration) -> u64 {
    activate(case);
    let mut iters = 1;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            (case.run)();
        }
        let took = start.elapsed();
        if took >= budget / 4 || iters >= 1 << 20 {
            let per = took.as_secs_f64() / iters as f64;
            return ((budget.as_secs_f64() / per).ceil() as u64).max(1);
        }
        iters *= 2;
    }
}

/// `ROSETTA_RATIOS=<rounds>:<ms>:<file>`: see the crate docs.
fn ratios(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (Some(rounds), Some(ms), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("ROSETTA_RATIOS=<rounds>:<ms>:<file>, not {spec}");
    };
    let rounds: u32 = rounds.parse().expect("a number of rounds");
    let budget = Duration::from_millis(ms.parse().expect("milliseconds per side"));
    let pairs = check("pairs file", std::fs::read_to_string(file));
    let ids: Vec<&str> = pairs.split_whitespace().collect();
    let mut cases = all_cases(wanted(&ids));
    for line in pairs.lines().filter(|l| !l.trim().is_empty()) {
        let (a_id, b_id) = line.split_once(' ').expect("<a> <b>");
        let (a, b) = (find_case(&cases, a_id), find_case(&cases, b_id.trim()));
        let iters = [
            calibrate(&mut cases[a], budget),
            calibrate(&mut cases[b], budget),
        ];
        eprintln!("interleaving {a_id} with {b_id}: {rounds} rounds");
        for round in 0..rounds {
            let mut ns = [0.0; 2];
            // Alternate who goes first, so that neither always runs on the
            // other's leftovers.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let index = [a, b][side];
                ns[side] = time_case(&mut cases[index], iters[side]);
            }
            println!("{a_id} {b_id} {round} {:.1} {:.1}", ns[0], ns[1]);
        }
    }
}

/// `ROSETTA_PROBE=list` or `<id>:<count>`: see the crate docs.
fn probe(spec: &str) {
    if spec == "list" {
        let cases = all_cases(|_, _| true);
        for case in &cases {
            println!("{} {}", case.id(), case.per_iter);
        }
        return;
    }
    let (id, count) = spec.rsplit_once(':').expect("ROSETTA_PROBE=<id>:<count>");
    let count: u64 = count.parse().expect("a count");
    let mut cases = all_cases(wanted(&[id]));
    let case = cases
        .iter_mut()
        .find(|c| c.id() == id)
        .unwrap_or_else(|| panic!("no benchmark {id}"));
    activate(case);
    let iters = count.div_ceil(case.per_iter);
    let profiling = std::env::var_os("ROSETTA_PROFILE").is_some();
    if profiling {
        // Warm up outside the window, which then holds only the loop.
        for _ in 0..iters.div_ceil(10) {
            (case.run)();
        }
        profile_window(true);
    }
    for _ in 0..iters {
        (case.run)();
    }
    if profiling {
        profile_window(false);
    }
}

/// Opens or closes the window in which `cargo xtask profile`'s QEMU plugin
/// (`xtask/profile/rosetta_profile.c`) counts the guest's instructions: it
/// recognises `xchg rbx, rbx` and `xchg rcx, rcx`, which change nothing and
/// which no compiler emits.
#[cfg(target_arch = "x86_64")]
fn profile_window(open: bool) {
    // SAFETY: exchanging a register with itself changes no register, no
    // flag and no memory.
    unsafe {
        if open {
            std::arch::asm!("xchg rbx, rbx", options(nomem, nostack, preserves_flags));
        } else {
            std::arch::asm!("xchg rcx, rcx", options(nomem, nostack, preserves_flags));
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn profile_window(_open: bool) {
    panic!("ROSETTA_PROFILE: the profiling plugin knows x86-64 only");
}
