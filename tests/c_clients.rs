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

use netlink_rosetta::{c_client, C_GENL_FAMILY};
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
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo xtask test`",
        path.display()
    );
    path
}

/// `text` with the number after each `word ` replaced by `N`.
fn mask(text: &str, word: &str) -> String {
    let needle = format!("{word} ");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let (head, tail) = rest.split_at(at + needle.len());
        out += head;
        let digits = tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('N');
        }
        rest = &tail[digits..];
    }
    out + rest
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
