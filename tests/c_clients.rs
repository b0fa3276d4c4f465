//! The C clients (`c/clients/`) against the Rust modules and their C twins,
//! inside the VM: `cargo xtask test`.
//!
//! Each C client prints what the Rust client CLI of its kind prints, so
//! the tests run both with the same arguments and compare their lines:
//! - `raw_client` (socket, bind, sendmsg, recvmsg) and `user-raw`, on the
//!   raw units 31 (kmod-raw), 25 (kmod-kthread), 30 (kmod_c_raw) and 29
//!   (kmod_c_kthread): the same lines but for the port id, which is each
//!   process's own;
//! - `libnl_client` (libnl-3, `nl_send_simple()` of type 0 with libnl's
//!   auto-ack) and `user-libnl-style --ack`, on the same units: the same
//!   lines but for the port id and the sequence numbers, which libnl starts
//!   from the time where the Rust clients start at 1;
//! - `libnl_genl_client` (libnl-genl-3) and `user-libnl-style --module genl
//!   --ack` on `my_genl`, and on kmod_c_genl's `c_genl`, which the Rust
//!   CLIs do not address (they take the family from proto): there, the lines
//!   are checked against the family id that the controller gives.
//!
//! `cargo xtask build` builds the C clients into `target/c-clients/` (the
//! VM runner exports it as `ROSETTA_C_CLIENTS`) and the Rust CLIs next to
//! this test's binary.

use netlink_rosetta::{c_client, mask, C_GENL_FAMILY};
use std::path::PathBuf;
use std::process::Command;

/// Where a client went and what it said.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run(program: PathBuf, args: &[&str]) -> Run {
    let out = Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    Run {
        status: out.status.code().expect("the client exited"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 output"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 output"),
    }
}

/// A Rust client CLI of the workspace, built next to this test binary
/// (`target/debug/deps/..`).
fn rust_cli(name: &str) -> PathBuf {
    netlink_rosetta::workspace_bin(name)
}

/// The numbers after `word ` in `text`.
fn numbers_after(text: &str, word: &str) -> Vec<u64> {
    let needle = format!("{word} ");
    text.match_indices(&needle)
        .filter_map(|(at, _)| {
            let tail = &text[at + needle.len()..];
            let end = tail
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(tail.len());
            tail[..end].parse().ok()
        })
        .collect()
}

/// The raw units, as the switches that both kinds of client take.
const UNITS: [&[&str]; 4] = [
    &["--module", "raw"],
    &["--module", "kthread"],
    &["--unit", "30"],
    &["--module", "kthread", "--unit", "29"],
];

/// Messages that show the output's escaping and shortening, and the
/// largest echo.
fn messages() -> Vec<String> {
    vec![
        "hello netlink".into(),
        "tab\there, \"quoted\", it's é: more than forty characters".into(),
        ('a'..='z').cycle().take(proto::MAX_PAYLOAD).collect(),
    ]
}

fn args<'a>(switches: &[&'a str], message: &'a str) -> Vec<&'a str> {
    switches.iter().copied().chain([message]).collect()
}

#[test]
fn mask_and_numbers_after() {
    let text = "module raw: netlink unit 31, portid 1234\necho seq 17: sent 5 bytes";
    assert_eq!(
        mask(&mask(text, "portid"), "seq"),
        "module raw: netlink unit 31, portid N\necho seq N: sent 5 bytes"
    );
    assert_eq!(numbers_after(text, "seq"), [17]);
    assert_eq!(numbers_after(text, "portid"), [1234]);
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_client_prints_what_user_raw_prints() {
    for units in UNITS {
        for message in messages() {
            let c = run(c_client("raw_client"), &args(units, &message));
            let rust = run(rust_cli("user-raw"), &args(units, &message));
            assert_eq!(
                (c.status, rust.status),
                (0, 0),
                "{units:?}: {c:?}\n{rust:?}"
            );
            assert_eq!(
                mask(&c.stdout, "portid"),
                mask(&rust.stdout, "portid"),
                "{units:?}"
            );
            assert!(c.stdout.contains(&format!(
                "echo seq 1: sent {n} bytes, received {n} bytes: ",
                n = message.len()
            )));
        }
    }
    let c = run(c_client("raw_client"), &["--unit", "30"]);
    assert_eq!(
        mask(&c.stdout, "portid"),
        "module raw: netlink unit 30, portid N\n\
         echo seq 1: sent 13 bytes, received 13 bytes: \"hello netlink\"\n"
    );
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_client_errors_read_as_user_raws() {
    let too_long: String = "x".repeat(proto::MAX_PAYLOAD + 1);
    for units in UNITS {
        let c = run(c_client("raw_client"), &args(units, &too_long));
        let rust = run(rust_cli("user-raw"), &args(units, &too_long));
        assert_eq!((c.status, rust.status), (1, 1), "{units:?}");
        assert_eq!(
            c.stderr,
            "raw_client: error: echo seq 1: kernel replied EMSGSIZE (errno 90): \
             payload longer than 16384 bytes\n"
        );
        assert_eq!(c.stderr.replacen("raw_client", "user-raw", 1), rust.stderr);
    }
    // A unit that nothing serves.
    let c = run(c_client("raw_client"), &["--unit", "28"]);
    let rust = run(rust_cli("user-raw"), &["--unit", "28"]);
    assert_eq!((c.status, rust.status), (1, 1));
    assert_eq!(
        c.stderr,
        "raw_client: error: netlink unit 28 not available: is its module loaded?\n"
    );
    assert_eq!(c.stderr.replacen("raw_client", "user-raw", 1), rust.stderr);
    // Usage errors exit with 2, as clap's do.
    assert_eq!(run(c_client("raw_client"), &["--module", "genl"]).status, 2);
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn libnl_client_prints_what_user_libnl_style_prints_with_ack() {
    for units in UNITS {
        for message in messages() {
            let c = run(c_client("libnl_client"), &args(units, &message));
            let mut rust_args = vec!["--ack"];
            rust_args.extend(args(units, &message));
            let rust = run(rust_cli("user-libnl-style"), &rust_args);
            assert_eq!(
                (c.status, rust.status),
                (0, 0),
                "{units:?}: {c:?}\n{rust:?}"
            );
            assert_eq!(
                mask(&mask(&c.stdout, "portid"), "seq"),
                mask(&mask(&rust.stdout, "portid"), "seq"),
                "{units:?}"
            );
            // The echo and the ack answer the same request.
            let seqs = numbers_after(&c.stdout, "seq");
            assert!(seqs.len() == 2 && seqs[0] == seqs[1], "{}", c.stdout);
        }
    }
    let too_long: String = "x".repeat(proto::MAX_PAYLOAD + 1);
    let c = run(c_client("libnl_client"), &[&too_long]);
    assert_eq!(c.status, 1);
    assert_eq!(
        mask(&c.stderr, "seq"),
        "libnl_client: error: echo seq N: kernel replied EMSGSIZE (errno 90)\n"
    );
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn libnl_genl_client_prints_what_user_libnl_style_prints_with_ack() {
    for message in messages() {
        let c = run(c_client("libnl_genl_client"), &[&message]);
        let rust = run(
            rust_cli("user-libnl-style"),
            &["--module", "genl", "--ack", &message],
        );
        assert_eq!((c.status, rust.status), (0, 0), "{c:?}\n{rust:?}");
        assert_eq!(
            mask(&mask(&c.stdout, "portid"), "seq"),
            mask(&mask(&rust.stdout, "portid"), "seq")
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn libnl_genl_client_echoes_through_the_c_family() {
    let id = user_raw::Socket::connect_genl()
        .and_then(|mut sock| sock.resolve_family(C_GENL_FAMILY))
        .expect("c_genl resolves: kmod_c_genl is loaded")
        .id;
    for message in messages() {
        let c = run(
            c_client("libnl_genl_client"),
            &["--family", C_GENL_FAMILY, &message],
        );
        assert_eq!(c.status, 0, "{c:?}");
        let lines: Vec<&str> = c.stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{}", c.stdout);
        assert_eq!(
            mask(lines[0], "portid"),
            format!("module genl: family c_genl id {id}, portid N")
        );
        let n = message.len();
        let seq = numbers_after(&c.stdout, "seq");
        assert!(lines[1].starts_with(&format!(
            "echo seq {}: sent {n} bytes, received {n} bytes: \"",
            seq[0]
        )));
        assert_eq!(lines[2], format!("ack seq {}: ok", seq[0]));
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn libnl_genl_client_errors() {
    // MSG longer than the policy allows: the core refuses it.
    let too_long: String = "x".repeat(proto::MAX_MSG_LEN + 1);
    for family in [proto::GENL_FAMILY_NAME, C_GENL_FAMILY] {
        let c = run(
            c_client("libnl_genl_client"),
            &["--family", family, &too_long],
        );
        assert_eq!(c.status, 1);
        assert_eq!(
            mask(&c.stderr, "seq"),
            "libnl_genl_client: error: echo seq N: kernel replied EINVAL (errno 22)\n"
        );
    }
    let c = run(c_client("libnl_genl_client"), &["--family", "no_such"]);
    assert_eq!(c.status, 1);
    assert_eq!(
        c.stderr,
        "libnl_genl_client: error: generic netlink family no_such not found \
         (Object not found): is its module loaded?\n"
    );
}

// ---------------------------------------------------------------------------
// Dumps and multicast (issue 16): the echo log of kmod_c_genl, its events
// group, and the group 1 of the raw C twins.
// ---------------------------------------------------------------------------

use netlink_rosetta::{C_GENL, C_KTHREAD_UNIT, C_RAW_UNIT};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use user_raw::{
    attrs, messages as nl_messages, put_attr, put_nul_string, GenlMsg, GenlMsgHdr, Socket,
};

const NLM_F_MULTI: u16 = libc::NLM_F_MULTI as u16;
const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
const NLM_F_DUMP_INTR: u16 = libc::NLM_F_DUMP_INTR as u16;
const NLMSGERR_ATTR_OFFS: u16 = 2;
/// How long a test waits for a client's line or exit before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Reloads kmod_c_genl, so that its echo log is empty: the next echo gets
/// id 1. Returns the family's id.
fn fresh_c_genl() -> u16 {
    C_GENL.rmmod().unwrap();
    C_GENL.insmod().unwrap();
    c_genl_id()
}

fn c_genl_id() -> u16 {
    Socket::connect_genl()
        .and_then(|mut sock| sock.resolve_family(C_GENL_FAMILY))
        .expect("c_genl resolves: kmod_c_genl is loaded")
        .id
}

/// An entry of the echo log, as a GET reply, a dump or an event carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: u32,
    portid: u32,
    msg: String,
}

fn entry(msg: &GenlMsg) -> Entry {
    let (mut id, mut portid, mut text) = (None, None, None);
    for attr in msg.attrs() {
        let attr = attr.unwrap();
        match attr.ty {
            proto::GENL_ATTR_ID => id = Some(attr.u32().unwrap()),
            proto::GENL_ATTR_PORTID => portid = Some(attr.u32().unwrap()),
            proto::GENL_ATTR_MSG => {
                text = Some(String::from_utf8(attr.nul_string().unwrap().to_vec()).unwrap())
            }
            other => panic!("unexpected attribute {other}"),
        }
    }
    Entry {
        id: id.expect("ID"),
        portid: portid.expect("PORTID"),
        msg: text.expect("MSG"),
    }
}

/// Echoes `msg` through c_genl from `sock`.
fn genl_echo(sock: &mut Socket, family: u16, msg: &str) {
    assert_eq!(
        sock.genl_echo(family, msg.as_bytes()).unwrap(),
        msg.as_bytes()
    );
}

/// What a dump through a plain socket received: every message's flags and
/// entry, in order, the sequence number of NLMSG_DONE and its flags, and
/// how many datagrams it took.
#[derive(Debug)]
struct RawDump {
    entries: Vec<(u16, Entry)>,
    done: (u32, u16),
    datagrams: usize,
}

/// Sends GET with NLM_F_DUMP; returns its sequence number.
fn start_dump(sock: &mut Socket, family: u16) -> u32 {
    let get = GenlMsgHdr::new(proto::GENL_CMD_GET, proto::GENL_FAMILY_VERSION);
    sock.genl_send(family, NLM_F_DUMP, get, &[]).unwrap()
}

/// Receives one datagram of a dump into `dump`; true at NLMSG_DONE.
fn recv_dump(sock: &mut Socket, family: u16, seq: u32, dump: &mut RawDump) -> bool {
    let mut buf = vec![0; user_raw::RECV_BUF_LEN];
    let n = sock.recv(&mut buf).unwrap();
    dump.datagrams += 1;
    for msg in nl_messages(&buf[..n]) {
        let (hdr, body) = msg.unwrap();
        assert_eq!(hdr.nlmsg_seq, seq, "{hdr:?}");
        match hdr.nlmsg_type {
            user_raw::NLMSG_DONE => {
                dump.done = (hdr.nlmsg_seq, hdr.nlmsg_flags);
                return true;
            }
            ty if ty == family => {
                let msg = GenlMsg::parse(hdr, body).unwrap();
                assert_eq!(msg.genl.cmd, proto::GENL_CMD_GET);
                dump.entries.push((hdr.nlmsg_flags, entry(&msg)));
            }
            ty => panic!("message of type {ty} in a dump: {hdr:?}"),
        }
    }
    false
}

/// A whole dump of the echo log through a plain socket.
fn raw_dump(family: u16) -> RawDump {
    let mut sock = Socket::connect_genl().unwrap();
    let seq = start_dump(&mut sock, family);
    let mut dump = RawDump {
        entries: Vec::new(),
        done: (0, 0),
        datagrams: 0,
    };
    while !recv_dump(&mut sock, family, seq, &mut dump) {}
    assert_eq!(dump.done.0, seq);
    dump
}

/// The lines `libnl_genl_client --dump` prints for `entries`, after its
/// first line.
fn entry_lines(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| format!("entry id {} portid {}: {}", e.id, e.portid, quoted(&e.msg)))
        .collect()
}

/// What the clients print for a string: quoted, escaped, shortened after
/// 40 characters (rosetta-cli's shorten(), output.h's print_quoted()).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars().take(40) {
        out.extend(c.escape_debug());
    }
    out.push('"');
    if s.chars().count() > 40 {
        out += "...";
    }
    out
}

#[test]
fn quoted_shortens_as_the_clients_do() {
    assert_eq!(quoted("hi"), "\"hi\"");
    assert_eq!(quoted("tab\there"), "\"tab\\there\"");
    assert_eq!(
        quoted(&"a".repeat(41)),
        format!("\"{}\"...", "a".repeat(40))
    );
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn dump_lists_the_echoes_oldest_first() {
    let family = fresh_c_genl();
    // Echoes from the C client, each from a process of its own.
    let mut expected = Vec::new();
    for (i, message) in messages().into_iter().enumerate() {
        let c = run(
            c_client("libnl_genl_client"),
            &["--family", C_GENL_FAMILY, &message],
        );
        assert_eq!(c.status, 0, "{c:?}");
        expected.push(Entry {
            id: i as u32 + 1,
            portid: numbers_after(&c.stdout, "portid")[0] as u32,
            msg: message,
        });
    }
    let c = run(
        c_client("libnl_genl_client"),
        &["--family", C_GENL_FAMILY, "--dump"],
    );
    assert_eq!((c.status, c.stderr.as_str()), (0, ""), "{c:?}");
    let lines: Vec<&str> = c.stdout.lines().collect();
    assert_eq!(lines.len(), 2 + expected.len(), "{}", c.stdout);
    assert_eq!(
        mask(lines[0], "portid"),
        format!("module genl: family c_genl id {family}, portid N")
    );
    assert_eq!(lines[1..4], entry_lines(&expected)[..]);
    let seq = numbers_after(lines[4], "seq")[0];
    assert_eq!(lines[4], format!("done seq {seq}: 3 entries"));
    // The same through a plain socket: NLM_F_MULTI on each, NLMSG_DONE
    // with the request's sequence number, no NLM_F_DUMP_INTR.
    let dump = raw_dump(family);
    let got: Vec<Entry> = dump.entries.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(got, expected);
    assert!(
        dump.entries.iter().all(|(f, _)| *f == NLM_F_MULTI),
        "{dump:?}"
    );
    assert_eq!(dump.done.1 & NLM_F_DUMP_INTR, 0);
    // An empty log: only the done line.
    let family = fresh_c_genl();
    let c = run(
        c_client("libnl_genl_client"),
        &["--family", C_GENL_FAMILY, "--dump"],
    );
    assert_eq!(c.status, 0, "{c:?}");
    assert_eq!(
        mask(&mask(&c.stdout, "portid"), "seq"),
        format!("module genl: family c_genl id {family}, portid N\ndone seq N: 0 entries\n")
    );
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn dump_spans_many_receive_buffers_and_skips_evicted_entries() {
    let family = fresh_c_genl();
    let mut sock = Socket::connect_genl().unwrap();
    // 6 more than the log holds: ids 1 to 6 are evicted.
    let total = proto::ECHO_LOG_LEN + 6;
    let text = |id: usize| format!("{id:04}{}", "x".repeat(996));
    for id in 1..=total {
        genl_echo(&mut sock, family, &text(id));
    }
    let expected: Vec<Entry> = (7..=total)
        .map(|id| Entry {
            id: id as u32,
            portid: sock.portid(),
            msg: text(id),
        })
        .collect();
    let dump = raw_dump(family);
    assert!(dump.datagrams > 10, "{} datagrams", dump.datagrams);
    let got: Vec<Entry> = dump.entries.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(got.len(), proto::ECHO_LOG_LEN);
    assert!(got == expected, "the dump differs from the log");
    let c = run(
        c_client("libnl_genl_client"),
        &["--family", C_GENL_FAMILY, "--dump"],
    );
    assert_eq!((c.status, c.stderr.as_str()), (0, ""));
    let lines: Vec<&str> = c.stdout.lines().collect();
    assert_eq!(lines.len(), proto::ECHO_LOG_LEN + 2);
    assert!(lines[1..=proto::ECHO_LOG_LEN] == entry_lines(&expected)[..]);
    assert!(lines[proto::ECHO_LOG_LEN + 1].ends_with(": 1024 entries"));
    // The longest MSG in the log: a dump skb always has room for one entry.
    let longest = "y".repeat(proto::MAX_MSG_LEN);
    genl_echo(&mut sock, family, &longest);
    let dump = raw_dump(family);
    assert_eq!(dump.entries.len(), proto::ECHO_LOG_LEN);
    assert_eq!(dump.entries.last().unwrap().1.msg, longest);
    let c = run(
        c_client("libnl_genl_client"),
        &["--family", C_GENL_FAMILY, "--dump"],
    );
    assert_eq!(c.status, 0, "{}", c.stderr);
    assert!(c.stdout.ends_with(": 1024 entries\n"));
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn get_returns_an_entry_or_enoent_with_the_extack() {
    let family = fresh_c_genl();
    let mut sock = Socket::connect_genl().unwrap();
    for msg in ["first", "second"] {
        genl_echo(&mut sock, family, msg);
    }
    let get = GenlMsgHdr::new(proto::GENL_CMD_GET, proto::GENL_FAMILY_VERSION);
    let id_attr = |id: u32| {
        let mut attrs = Vec::new();
        put_attr(&mut attrs, proto::GENL_ATTR_ID, &id.to_ne_bytes()).unwrap();
        attrs
    };
    let reply = sock.genl_request(family, 0, get, &id_attr(2)).unwrap();
    assert_eq!(reply.genl.cmd, proto::GENL_CMD_GET);
    assert_eq!(
        entry(&reply),
        Entry {
            id: 2,
            portid: sock.portid(),
            msg: "second".into()
        }
    );
    // An id the log does not hold (yet): ENOENT, the message, the attribute.
    for missing in [0, 3, u32::MAX] {
        let seq = sock.genl_send(family, 0, get, &id_attr(missing)).unwrap();
        let (errno, extack, offset) = recv_error(&mut sock, seq);
        assert_eq!(errno, libc::ENOENT);
        assert_eq!(extack, format!("no entry {missing} in the echo log"));
        // The ID attribute: after the nlmsghdr (16) and the genlmsghdr (4).
        assert_eq!(offset, Some(20));
    }
    // No ID: EINVAL, with the missing attribute named.
    match sock.genl_request(family, 0, get, &[]) {
        Err(user_raw::Error::Kernel {
            errno: libc::EINVAL,
            extack,
            missing_attr: Some(proto::GENL_ATTR_ID),
        }) => assert_eq!(extack.as_deref(), Some("missing attribute ID")),
        other => panic!("{other:?}"),
    }
    // Strict validation: MSG is not GET's, ID is not ECHO's.
    let mut msg_attr = Vec::new();
    put_nul_string(&mut msg_attr, proto::GENL_ATTR_MSG, b"x").unwrap();
    let echo = GenlMsgHdr::new(proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION);
    let mut both = msg_attr.clone();
    both.extend(id_attr(1));
    for (hdr, attrs) in [(get, &msg_attr), (echo, &both)] {
        match sock.genl_request(family, 0, hdr, attrs) {
            Err(user_raw::Error::Kernel {
                errno: libc::EINVAL,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Receives the NLMSG_ERROR for `seq`: its errno, extended-ack message and
/// the offset of the attribute it blames.
fn recv_error(sock: &mut Socket, seq: u32) -> (i32, String, Option<u32>) {
    let mut buf = vec![0; user_raw::RECV_BUF_LEN];
    let n = sock.recv(&mut buf).unwrap();
    let (hdr, body) = nl_messages(&buf[..n]).next().unwrap().unwrap();
    assert_eq!(
        (hdr.nlmsg_type, hdr.nlmsg_seq),
        (user_raw::NLMSG_ERROR, seq)
    );
    let err = user_raw::parse_error(&hdr, body).unwrap();
    // The TLVs after the error and the request's header (NETLINK_CAP_ACK).
    assert!(hdr.nlmsg_flags & user_raw::NLM_F_CAPPED != 0);
    let offset = attrs(&body[4 + 16..])
        .map(|a| a.unwrap())
        .find(|a| a.ty == NLMSGERR_ATTR_OFFS)
        .map(|a| a.u32().unwrap());
    (-err.error, err.extack.unwrap_or_default(), offset)
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn a_dump_interrupted_by_an_echo_is_flagged() {
    let family = fresh_c_genl();
    let mut echoer = Socket::connect_genl().unwrap();
    // Enough for many datagrams: the kernel builds one per recvmsg().
    for i in 0..300 {
        genl_echo(&mut echoer, family, &format!("{i:03}{}", "z".repeat(500)));
    }
    let mut sock = Socket::connect_genl().unwrap();
    let seq = start_dump(&mut sock, family);
    let mut dump = RawDump {
        entries: Vec::new(),
        done: (0, 0),
        datagrams: 0,
    };
    assert!(!recv_dump(&mut sock, family, seq, &mut dump));
    let before = dump.entries.len();
    assert!(dump.entries.iter().all(|(f, _)| f & NLM_F_DUMP_INTR == 0));
    // The log changes between two recvmsg() calls.
    genl_echo(&mut echoer, family, "meanwhile");
    while !recv_dump(&mut sock, family, seq, &mut dump) {}
    let flagged: Vec<u32> = dump
        .entries
        .iter()
        .filter(|(f, _)| f & NLM_F_DUMP_INTR != 0)
        .map(|(_, e)| e.id)
        .collect();
    assert!(
        !flagged.is_empty() && flagged[0] as usize > before,
        "flagged {flagged:?}, {before} entries before the change"
    );
    // The cursor went on to the end: the new entry is in it, once each.
    let ids: Vec<u32> = dump.entries.iter().map(|(_, e)| e.id).collect();
    assert_eq!(ids, (1..=301).collect::<Vec<u32>>());

    // The C client says so, and fails: echoes race with its dump until one
    // lands inside it (each try has about 40 chances).
    for i in 0..proto::ECHO_LOG_LEN {
        genl_echo(&mut echoer, family, &format!("{i:04}{}", "w".repeat(996)));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sock = Socket::connect_genl().unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                genl_echo(&mut sock, family, "race");
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut interrupted = None;
    for _ in 0..20 {
        let c = run(
            c_client("libnl_genl_client"),
            &["--family", C_GENL_FAMILY, "--dump"],
        );
        if c.status != 0 {
            interrupted = Some(c);
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    racer.join().unwrap();
    let c = interrupted.expect("no dump of 20 was interrupted");
    assert_eq!(c.status, 1, "{c:?}");
    let last = c.stdout.lines().last().unwrap();
    assert!(
        last.starts_with("done seq ") && last.ends_with(" entries, interrupted"),
        "{last}"
    );
    assert_eq!(
        c.stderr,
        "libnl_genl_client: error: the echo log changed during the dump \
         (NLM_F_DUMP_INTR): run it again\n"
    );
}

/// A client that runs on while the test goes on: its output lines as they
/// come, its exit awaited with a deadline. Killed if dropped running.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Background {
    fn spawn(cmd: &mut Command) -> Background {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Background {
            child,
            lines,
            stderr,
        }
    }

    /// Its next line of output.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("no line from the client within {PATIENCE:?}: {e}"))
    }

    /// Waits for its exit: its status, the lines it printed since the last
    /// `line()`, its standard error.
    fn finish(mut self) -> (i32, Vec<String>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the client did not exit within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let lines = std::iter::from_fn(|| self.lines.recv_timeout(PATIENCE).ok()).collect();
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        (
            status.code().expect("exited"),
            lines,
            stderr.join().unwrap(),
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command that runs a C client, as root or as nobody (uid 65534, no
/// capabilities).
fn client_cmd(client: &str, as_nobody: bool) -> Command {
    if !as_nobody {
        return Command::new(c_client(client));
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(c_client(client));
    cmd
}

/// The multicast group id of c_genl's "events", as `genl ctrl` shows it.
fn events_group_id() -> u32 {
    let out = Command::new("genl")
        .args(["ctrl", "get", "name", C_GENL_FAMILY])
        .output()
        .expect("genl (iproute2) runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let groups = text
        .split_once("multicast groups:")
        .unwrap_or_else(|| panic!("no multicast groups in:\n{text}"))
        .1;
    let line = groups
        .lines()
        .find(|l| l.contains("name: events"))
        .unwrap_or_else(|| panic!("no group events in:\n{text}"));
    let hex = line
        .split("ID-0x")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next();
    u32::from_str_radix(hex.unwrap(), 16).unwrap()
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_subscriber_sees_the_echoes_after_it_joined() {
    let family = fresh_c_genl();
    let group = events_group_id();
    let mut sock = Socket::connect_genl().unwrap();
    genl_echo(&mut sock, family, "before");
    for as_nobody in [false, true] {
        let mut cmd = client_cmd("libnl_genl_client", as_nobody);
        cmd.args(["--family", C_GENL_FAMILY, "--subscribe", "--count", "2"]);
        let sub = Background::spawn(&mut cmd);
        let header = sub.line();
        assert_eq!(
            mask(&header, "portid"),
            format!("module genl: family c_genl id {family}, group events id {group}, portid N")
        );
        let first_id = if as_nobody { 4 } else { 2 };
        genl_echo(&mut sock, family, "hello");
        let mut other = Socket::connect_genl().unwrap();
        let long = "tab\there, \"quoted\", it's é: more than forty characters";
        genl_echo(&mut other, family, long);
        let (status, lines, stderr) = sub.finish();
        assert_eq!((status, stderr.as_str()), (0, ""), "as nobody: {as_nobody}");
        assert_eq!(
            lines,
            [
                format!("event id {first_id} portid {}: \"hello\"", sock.portid()),
                format!(
                    "event id {} portid {}: {}",
                    first_id + 1,
                    other.portid(),
                    quoted(long)
                ),
            ],
            "as nobody: {as_nobody}"
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_subscribers_see_the_echoes_after_they_joined() {
    for (module, unit) in [("raw", C_RAW_UNIT), ("kthread", C_KTHREAD_UNIT)] {
        let unit_arg = unit.to_string();
        let switches = ["--module", module, "--unit", &unit_arg];
        let mut sock = Socket::connect(unit).unwrap();
        assert_eq!(sock.echo(b"before").unwrap(), b"before");
        for (client, as_nobody) in [
            ("raw_client", false),
            ("libnl_client", false),
            ("raw_client", true),
        ] {
            let mut cmd = client_cmd(client, as_nobody);
            cmd.args(switches).args(["--subscribe", "--count", "2"]);
            let sub = Background::spawn(&mut cmd);
            assert_eq!(
                mask(&sub.line(), "portid"),
                format!("module {module}: netlink unit {unit}, group 1, portid N")
            );
            // Not echoed (no NLM_F_REQUEST), only acked: no event.
            let mut datagram = Vec::new();
            user_raw::encode(
                &mut datagram,
                proto::ECHO_MSG_TYPE,
                user_raw::NLM_F_ACK,
                77,
                b"not echoed",
            )
            .unwrap();
            sock.send_datagram(&datagram).unwrap();
            let mut buf = vec![0; user_raw::RECV_BUF_LEN];
            let n = sock.recv(&mut buf).unwrap();
            let (hdr, _) = nl_messages(&buf[..n]).next().unwrap().unwrap();
            assert_eq!((hdr.nlmsg_type, hdr.nlmsg_seq), (user_raw::NLMSG_ERROR, 77));
            let seq1 = sock.last_seq() + 1;
            assert_eq!(sock.echo(b"hello").unwrap(), b"hello");
            assert_eq!(sock.echo(b"quote\"d").unwrap(), b"quote\"d");
            let (status, lines, stderr) = sub.finish();
            assert_eq!(
                (status, stderr.as_str()),
                (0, ""),
                "{client} on {unit}, as nobody: {as_nobody}"
            );
            let portid = sock.portid();
            assert_eq!(
                lines,
                [
                    format!("event seq {seq1} portid {portid}: \"hello\""),
                    format!("event seq {} portid {portid}: \"quote\\\"d\"", seq1 + 1),
                ],
                "{client} on {unit}, as nobody: {as_nobody}"
            );
        }
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn dump_and_subscribe_usage() {
    for client in ["raw_client", "libnl_client"] {
        let c = run(c_client(client), &["--unit", "30", "--dump"]);
        assert_eq!(c.status, 2, "{c:?}");
        assert!(
            c.stderr.starts_with(&format!(
                "{client}: error: --dump applies to generic netlink only: \
                 the raw units keep no log\nusage: "
            )),
            "{}",
            c.stderr
        );
        assert_eq!(run(c_client(client), &["--count", "2"]).status, 2);
        assert_eq!(run(c_client(client), &["--subscribe", "hi"]).status, 2);
    }
    let genl = c_client("libnl_genl_client");
    assert_eq!(run(genl.clone(), &["--dump", "--subscribe"]).status, 2);
    assert_eq!(run(genl.clone(), &["--dump", "hi"]).status, 2);
    assert_eq!(run(genl, &["--subscribe", "--count", "0"]).status, 2);
}
