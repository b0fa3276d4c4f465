//! Network namespaces: every module serves each namespace on its own, and
//! nothing crosses between them. Inside the VM: `cargo xtask test`.
//!
//! Each test makes fresh namespaces ([`Netns`]: `unshare(CLONE_NEWNET)` on
//! a thread) and opens its sockets inside them; the test process itself
//! stays in the initial namespace, which is checked like any other. Every
//! test runs against the Rust modules and their C twins:
//! - the raw units (kmod-raw 31, kmod-kthread 25, kmod_c_raw 30,
//!   kmod_c_kthread 29): an echo in each namespace, the same port id in two
//!   namespaces without a crossed reply, group copies that stay home;
//! - the families (`my_genl`, `c_genl`): an echo log per namespace (a fresh
//!   namespace starts at id 1), events that stay home;
//! - all of them: loading a module serves the namespaces that exist, 100
//!   namespaces created and destroyed while a client echoes in the initial
//!   one, and afterwards no namespace is left ([`no_namespace_left`]: a
//!   reference that a module leaked would keep one), and kmod-kthread's
//!   requests still queued when their namespace goes;
//! - the client CLIs, Rust and C, unchanged inside a namespace.

use netlink_rosetta::{
    c_client, mask, no_namespace_left, with_module_unloaded, workspace_bin, HoldOff, Kmod, Netns,
    C_GENL, C_GENL_FAMILY, C_KTHREAD, C_RAW, GENL, KTHREAD, RAW,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use user_raw::{Error, Socket};

/// A raw unit and the module that serves it.
#[derive(Clone, Copy)]
struct Unit {
    kmod: Kmod,
    unit: i32,
}

/// A generic netlink family and the module that registers it.
#[derive(Clone, Copy)]
struct Genl {
    kmod: Kmod,
    name: &'static str,
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
const MY_GENL: Genl = Genl {
    kmod: GENL,
    name: proto::GENL_FAMILY_NAME,
};
const C_GENL_FAMILY_: Genl = Genl {
    kmod: C_GENL,
    name: C_GENL_FAMILY,
};

/// How long a socket waits for what must not come.
const NOTHING: Duration = Duration::from_millis(300);

/// Namespaces that the churn tests create and destroy, per module.
const CHURN: usize = 100;

/// How long the kernel may take to free namespaces (it dismantles them on
/// a workqueue, in batches).
const FREED_WITHIN: Duration = Duration::from_secs(30);

/// Declares each test for `$x`: `fn name() { super::name($x) }`.
macro_rules! tests_of {
    ($x:ident: $($test:ident),* $(,)?) => {
        $(
            #[test]
            #[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
            fn $test() {
                super::$test(super::$x)
            }
        )*
    };
}

macro_rules! raw_tests {
    ($u:ident) => {
        tests_of!($u:
            raw_each_namespace_echoes_with_the_same_portid,
            raw_group_copies_stay_in_their_namespace,
            raw_loading_serves_the_namespaces_that_exist,
            raw_churn_leaves_no_namespace_behind,
        );
    };
}

mod raw {
    raw_tests!(RAW_UNIT);
}
mod kthread {
    raw_tests!(KTHREAD_UNIT);
    tests_of!(KTHREAD_UNIT: kthread_namespace_goes_while_its_requests_are_queued);
}
mod c_raw {
    raw_tests!(C_RAW_UNIT);
}
mod c_kthread {
    raw_tests!(C_KTHREAD_UNIT);
    tests_of!(C_KTHREAD_UNIT: kthread_namespace_goes_while_its_requests_are_queued);
}

macro_rules! genl_tests {
    ($g:ident) => {
        tests_of!($g:
            genl_each_namespace_has_its_own_echo_log,
            genl_events_stay_in_their_namespace,
            genl_loading_serves_the_namespaces_that_exist,
            genl_churn_leaves_no_namespace_behind,
        );
    };
}

mod genl {
    genl_tests!(MY_GENL);
}
mod c_genl {
    genl_tests!(C_GENL_FAMILY_);
}

fn new_netns() -> Netns {
    Netns::new().unwrap_or_else(|e| panic!("a new network namespace: {e}"))
}

fn connect(u: Unit) -> Socket {
    Socket::connect(u.unit)
        .unwrap_or_else(|e| panic!("{} answers on unit {}: {e}", u.kmod.name(), u.unit))
}

/// A socket of `u` opened inside `ns`.
fn connect_in(ns: &Netns, u: Unit) -> Socket {
    ns.run(|| connect(u))
}

fn raw_each_namespace_echoes_with_the_same_portid(u: Unit) {
    let (a, b) = (new_netns(), new_netns());
    assert_ne!(a.inode(), b.inode());
    let mut sa = connect_in(&a, u);
    let mut sb = connect_in(&b, u);
    let mut home = connect(u);
    // Port ids are per namespace: the first socket of this process on the
    // unit gets the process id as its port id in each fresh namespace.
    assert_eq!(sa.portid(), sb.portid(), "the same port id in both");
    assert_eq!(sa.portid(), std::process::id());
    let batch = |tag: &str| -> Vec<Vec<u8>> {
        (0..20).map(|i| format!("{tag} {i}").into_bytes()).collect()
    };
    let (pa, pb) = (batch("in a"), batch("in b"));
    let requests = |p: &[Vec<u8>]| -> Vec<(u16, u16, Vec<u8>)> {
        p.iter()
            .map(|m| (proto::ECHO_MSG_TYPE, 0, m.clone()))
            .collect()
    };
    // Both in flight at once, to the same port id in two namespaces.
    for (sock, payloads) in [(&mut sa, &pa), (&mut sb, &pb)] {
        let reqs = requests(payloads);
        let reqs: Vec<(u16, u16, &[u8])> = reqs
            .iter()
            .map(|(t, f, p)| (*t, *f, p.as_slice()))
            .collect();
        sock.send_batch(&reqs).unwrap();
    }
    for (sock, payloads) in [(&mut sa, &pa), (&mut sb, &pb)] {
        let got = recv_payloads(sock, payloads.len());
        assert_eq!(
            &got, payloads,
            "each namespace gets its own replies, in order"
        );
        sock.set_timeout(NOTHING).unwrap();
        assert!(matches!(
            sock.recv(&mut [0; 64]),
            Err(Error::Timeout { .. })
        ));
    }
    assert_eq!(home.echo(b"at home").unwrap(), b"at home");
}

/// Receives `n` replies and returns their payloads.
fn recv_payloads(sock: &mut Socket, n: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0; user_raw::RECV_BUF_LEN];
    let mut got = Vec::new();
    while got.len() < n {
        let len = sock.recv(&mut buf).expect("a reply");
        for msg in user_raw::messages(&buf[..len]) {
            let (_, body) = msg.expect("decodes");
            got.push(body.to_vec());
        }
    }
    got
}

/// A listener of the unit's group 1.
fn listen(mut sock: Socket) -> Socket {
    sock.add_membership(proto::RAW_GROUP).expect("join group 1");
    sock
}

/// Asserts that `listener` gets nothing within [`NOTHING`].
fn hears_nothing(listener: &mut Socket, what: &str) {
    listener.set_timeout(NOTHING).unwrap();
    match listener.recv(&mut [0; 256]) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("{what}: expected nothing, got {other:?}"),
    }
}

fn raw_group_copies_stay_in_their_namespace(u: Unit) {
    let (a, b) = (new_netns(), new_netns());
    let mut la = listen(connect_in(&a, u));
    let mut lb = listen(connect_in(&b, u));
    let mut home = listen(connect(u));
    let mut sa = connect_in(&a, u);
    let mut sb = connect_in(&b, u);
    assert_eq!(sa.echo(b"news from a").unwrap(), b"news from a");
    let events = la.recv_raw_events().expect("a's listener hears a");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, b"news from a");
    assert_eq!(events[0].portid, sa.portid());
    hears_nothing(&mut lb, "b's listener after an echo in a");
    hears_nothing(
        &mut home,
        "the initial namespace's listener after an echo in a",
    );
    assert_eq!(sb.echo(b"news from b").unwrap(), b"news from b");
    let events = lb.recv_raw_events().expect("b's listener hears b");
    assert_eq!(events[0].payload, b"news from b");
    hears_nothing(&mut la, "a's listener after an echo in b");
    hears_nothing(
        &mut home,
        "the initial namespace's listener after an echo in b",
    );
}

fn raw_loading_serves_the_namespaces_that_exist(u: Unit) {
    // Namespaces made while the module is out get their socket when it
    // loads, as do those made before.
    let before = new_netns();
    let mut during = None;
    with_module_unloaded(u.kmod, || {
        let ns = new_netns();
        let refused = ns.run(|| Socket::connect(u.unit).map(|_| ()));
        assert!(
            matches!(refused, Err(Error::UnitUnavailable { .. })),
            "{refused:?}"
        );
        during = Some(ns);
    });
    for ns in [&before, during.as_ref().unwrap()] {
        let mut sock = connect_in(ns, u);
        assert_eq!(sock.echo(b"served").unwrap(), b"served");
    }
}

fn raw_churn_leaves_no_namespace_behind(u: Unit) {
    let answered = churn(
        u.kmod,
        || connect(u).echo(b"home").map(|_| ()),
        |ns, i| {
            let mut sock = connect_in(ns, u);
            let mut listener = listen(connect_in(ns, u));
            let msg = format!("namespace {i}");
            assert_eq!(sock.echo(msg.as_bytes()).unwrap(), msg.as_bytes());
            let events = listener.recv_raw_events().expect("the group copy");
            assert_eq!(events[0].payload, msg.as_bytes());
            // Closed with requests in flight: the replies find nobody.
            sock.send_batch(&[(proto::ECHO_MSG_TYPE, 0, b"unread")])
                .unwrap();
        },
    );
    eprintln!(
        "{}: {CHURN} namespaces, {answered} echoes in the initial one meanwhile",
        u.kmod.name()
    );
}

/// Creates and destroys [`CHURN`] namespaces, running `each` in every one,
/// while another thread runs `home` in the initial namespace; then checks
/// that the module still answers, that no namespace is left, and that the
/// module unloads and loads. Returns how many `home` calls succeeded.
fn churn(
    kmod: Kmod,
    home: impl Fn() -> Result<(), Error> + Sync,
    each: impl Fn(&Netns, usize) + Sync,
) -> usize {
    let done = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                home().unwrap_or_else(|e| panic!("the initial namespace: {e}"));
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
        for i in 0..CHURN {
            let ns = new_netns();
            each(&ns, i);
        }
        done.store(true, Ordering::Relaxed);
        worker.join().unwrap();
    });
    home().unwrap();
    no_namespace_left(FREED_WITHIN).unwrap_or_else(|e| panic!("after the churn: {e}"));
    with_module_unloaded(kmod, || {});
    home().unwrap();
    answered.into_inner()
}

fn kthread_namespace_goes_while_its_requests_are_queued(u: Unit) {
    let ns = new_netns();
    let requests: Vec<(u16, u16, &[u8])> = (0..100)
        .map(|_| {
            (
                proto::ECHO_MSG_TYPE,
                0,
                &b"for a namespace that is gone"[..],
            )
        })
        .collect();
    {
        // The thread cannot run while we hold it off: the requests wait
        // in its queue when their socket and namespace go.
        let _hold = HoldOff::thread_of(u.kmod);
        let mut sock = connect_in(&ns, u);
        sock.send_batch(&requests).unwrap();
        drop(sock);
        drop(ns);
    }
    // The thread answers nobody; the requests let go of the namespace.
    no_namespace_left(FREED_WITHIN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(connect(u).echo(b"still here").unwrap(), b"still here");
}

/// A generic netlink socket, in the current namespace, and the family id.
fn connect_genl(g: Genl) -> (Socket, user_raw::Family) {
    let mut sock = Socket::connect_genl().expect("NETLINK_GENERIC socket");
    let family = sock
        .resolve_family(g.name)
        .unwrap_or_else(|e| panic!("{} resolves: {e}", g.name));
    (sock, family)
}

fn connect_genl_in(ns: &Netns, g: Genl) -> (Socket, user_raw::Family) {
    ns.run(|| connect_genl(g))
}

/// The entries of a dump, as (id, msg).
fn dump(sock: &mut Socket, family: u16) -> Vec<(u32, Vec<u8>)> {
    let dump = sock.genl_dump(family).expect("dump");
    assert!(dump.done && !dump.interrupted);
    dump.entries.into_iter().map(|e| (e.id, e.msg)).collect()
}

fn genl_each_namespace_has_its_own_echo_log(g: Genl) {
    let (a, b) = (new_netns(), new_netns());
    let (mut sa, fa) = connect_genl_in(&a, g);
    let (mut sb, fb) = connect_genl_in(&b, g);
    let (mut home, fh) = connect_genl(g);
    assert_eq!(fa.id, fh.id, "one family, the same id everywhere");
    // Messages that name their namespace, unique to this run.
    let msg = |tag: &str, ns: &Netns| format!("{tag} in net:[{}]", ns.inode()).into_bytes();
    let (a1, a2, b1) = (msg("a1", &a), msg("a2", &a), msg("b1", &b));
    for m in [&a1, &a2] {
        assert_eq!(&sa.genl_echo(fa.id, m).unwrap(), m);
    }
    assert_eq!(sb.genl_echo(fb.id, &b1).unwrap(), b1);
    // A fresh namespace's log starts at id 1, and holds its own echoes only.
    assert_eq!(dump(&mut sa, fa.id), [(1, a1.clone()), (2, a2.clone())]);
    assert_eq!(dump(&mut sb, fb.id), [(1, b1.clone())]);
    match sb.genl_get(fb.id, Some(2)) {
        Err(Error::Kernel { errno, extack, .. }) => {
            assert_eq!(errno, libc::ENOENT);
            assert_eq!(extack.as_deref(), Some("no entry 2 in the echo log"));
        }
        other => panic!("b has no entry 2: got {other:?}"),
    }
    assert_eq!(sa.genl_get(fa.id, Some(2)).unwrap().msg, a2);
    let home_log = dump(&mut home, fh.id);
    assert!(
        home_log.iter().all(|(_, m)| ![&a1, &a2, &b1].contains(&m)),
        "the initial namespace's log has none of their echoes"
    );
}

fn genl_events_stay_in_their_namespace(g: Genl) {
    let (a, b) = (new_netns(), new_netns());
    let subscribe = |(mut sock, family): (Socket, user_raw::Family)| {
        let group = family
            .mcast_group(proto::GENL_MCGRP_EVENTS)
            .expect("the events group");
        sock.add_membership(group).expect("join events");
        (sock, family)
    };
    let (mut la, fa) = subscribe(connect_genl_in(&a, g));
    let (mut lb, _) = subscribe(connect_genl_in(&b, g));
    let (mut home, _) = subscribe(connect_genl(g));
    let (mut sa, _) = connect_genl_in(&a, g);
    assert_eq!(sa.genl_echo(fa.id, b"only in a").unwrap(), b"only in a");
    let events = la.recv_genl_events(fa.id).expect("a's subscriber hears a");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].id, events[0].msg.as_slice()),
        (1, &b"only in a"[..])
    );
    assert_eq!(events[0].portid, sa.portid());
    hears_nothing(&mut lb, "b's subscriber after an echo in a");
    hears_nothing(
        &mut home,
        "the initial namespace's subscriber after an echo in a",
    );
}

fn genl_loading_serves_the_namespaces_that_exist(g: Genl) {
    let before = new_netns();
    let (mut sock, family) = connect_genl_in(&before, g);
    assert_eq!(
        sock.genl_echo(family.id, b"first life").unwrap(),
        b"first life"
    );
    drop(sock);
    let mut during = None;
    with_module_unloaded(g.kmod, || during = Some(new_netns()));
    // The reloaded module has a fresh, empty log in every namespace.
    for ns in [&before, during.as_ref().unwrap()] {
        let (mut sock, family) = connect_genl_in(ns, g);
        assert_eq!(dump(&mut sock, family.id), []);
        assert_eq!(sock.genl_echo(family.id, b"served").unwrap(), b"served");
        assert_eq!(dump(&mut sock, family.id), [(1, b"served".to_vec())]);
    }
}

fn genl_churn_leaves_no_namespace_behind(g: Genl) {
    let home = || {
        let (mut sock, family) = connect_genl(g);
        sock.genl_echo(family.id, b"home").map(|_| ())
    };
    let answered = churn(g.kmod, home, |ns, i| {
        let (mut sock, family) = connect_genl_in(ns, g);
        let group = family.mcast_group(proto::GENL_MCGRP_EVENTS).unwrap();
        let (mut listener, _) = connect_genl_in(ns, g);
        listener.add_membership(group).unwrap();
        let msg = format!("namespace {i}");
        assert_eq!(
            sock.genl_echo(family.id, msg.as_bytes()).unwrap(),
            msg.as_bytes()
        );
        assert_eq!(dump(&mut sock, family.id), [(1, msg.clone().into_bytes())]);
        assert_eq!(
            listener.recv_genl_events(family.id).unwrap()[0].msg,
            msg.as_bytes()
        );
        // A dump left unread when the namespace goes.
        sock.genl_dump_start(family.id, proto::GENL_CMD_GET, &[])
            .unwrap();
    });
    eprintln!(
        "{}: {CHURN} namespaces, {answered} echoes in the initial one meanwhile",
        g.kmod.name()
    );
}

/// A client and its switches for one module, for the CLI test.
struct Cli {
    program: std::path::PathBuf,
    args: Vec<&'static str>,
}

fn clis() -> Vec<Cli> {
    let cli = |program: std::path::PathBuf, args: &[&'static str]| Cli {
        program,
        args: args.to_vec(),
    };
    let mut clis = Vec::new();
    let raw_units: [&[&str]; 4] = [
        &["--module", "raw"],
        &["--module", "kthread"],
        &["--unit", "30"],
        &["--module", "kthread", "--unit", "29"],
    ];
    for name in ["user-raw", "user-libnl-style", "user-genl"] {
        for units in raw_units {
            clis.push(cli(workspace_bin(name), units));
        }
        clis.push(cli(workspace_bin(name), &["--module", "genl"]));
    }
    for units in raw_units {
        clis.push(cli(c_client("raw_client"), units));
        clis.push(cli(c_client("libnl_client"), units));
    }
    clis.push(cli(c_client("libnl_genl_client"), &[]));
    clis.push(cli(
        c_client("libnl_genl_client"),
        &["--family", C_GENL_FAMILY],
    ));
    clis
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn clients_work_unchanged_inside_a_namespace() {
    let home = Netns::current();
    for cli in clis() {
        let args: Vec<&str> = cli.args.iter().copied().chain(["hello netlink"]).collect();
        let run = |ns: &Netns| {
            let out = ns
                .command(&cli.program)
                .args(&args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.program.display()));
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{} {args:?}: {}\n{stdout}{}",
                cli.program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            // Port ids are each process's own; libnl numbers its requests
            // from the time.
            mask(&mask(&stdout, "portid"), "seq")
        };
        let fresh = new_netns();
        assert_eq!(
            run(&fresh),
            run(&home),
            "{} {args:?}: the same output in a fresh namespace",
            cli.program.display()
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn no_namespace_left_sees_a_namespace_that_is_alive() {
    // The check that the churn tests rely on, against a namespace that a
    // test keeps: it must say so, then pass once the namespace is gone.
    let kept = new_netns();
    let found = no_namespace_left(Duration::from_secs(2));
    assert!(
        found.as_ref().is_err_and(|e| e.contains("still there")),
        "{found:?}"
    );
    drop(kept);
    no_namespace_left(FREED_WITHIN).unwrap();
}
