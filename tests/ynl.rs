//! The kernel's YNL command line (`tools/net/ynl/cli.py` of the pinned
//! tree, `ynl` on the guest's PATH) driven by the family's spec
//! (`proto/spec/my_genl.yaml`), against kmod-genl (`my_genl`) and its C
//! twin kmod_c_genl (`c_genl`), inside the VM: `cargo xtask test`.
//!
//! Each test runs on both families; c_genl gets a copy of the spec that
//! differs in the family's name only (the C twin registers `c_genl` so as
//! to run beside `my_genl` in one boot). The tests check ynl's JSON output
//! (`--output-json`) for `--do echo`, `--do get`, `--dump get` and
//! `--subscribe events`, the extended acks it decodes, and that what the
//! kernel enforces is what the spec says: the policies the kernel reports
//! (`nlctrl` `getpolicy`, through the kernel's own `nlctrl.yaml`) and the
//! `max-len` of `msg` at its edge.
//!
//! ynl runs with `--no-schema`: `cargo xtask spec --check` validated the
//! spec on the host with the same code, and the validation costs seconds a
//! run under TCG. The numbers compared are `proto`'s, which
//! `proto/tests/spec.rs` checks against the spec.

use netlink_rosetta::{c_client, Kmod, C_GENL, C_GENL_FAMILY, GENL};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The families, and the modules that register them.
const FAMILIES: [(&str, Kmod); 2] = [(proto::GENL_FAMILY_NAME, GENL), (C_GENL_FAMILY, C_GENL)];

/// The spec, with the family's name `family`: the spec itself for
/// `my_genl`, a copy in a temporary file for `c_genl`.
fn spec(family: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/spec/my_genl.yaml");
    if family == proto::GENL_FAMILY_NAME {
        return path;
    }
    let text = std::fs::read_to_string(&path).expect("the spec");
    let name = format!("name: {}", proto::GENL_FAMILY_NAME);
    assert_eq!(text.lines().filter(|l| *l == name).count(), 1, "{name}");
    let renamed: String = text
        .lines()
        .map(|l| {
            if l == name {
                format!("name: {family}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let copy = std::env::temp_dir().join(format!("{family}-{}.yaml", std::process::id()));
    std::fs::write(&copy, renamed).expect("a copy of the spec");
    copy
}

/// What a `ynl` run printed, and its exit status.
struct Run {
    status: i32,
    stdout: String,
}

fn ynl_command(spec: &PathBuf, args: &[&str]) -> Command {
    let mut cmd = Command::new("ynl");
    cmd.arg("--spec")
        .arg(spec)
        .arg("--no-schema")
        .args(args)
        .arg("--output-json");
    cmd
}

fn ynl(spec: &PathBuf, args: &[&str]) -> Run {
    let out = ynl_command(spec, args).output().unwrap_or_else(|e| {
        panic!("cannot run ynl ({e}): `cargo xtask test` or `cargo xtask vm` puts it on PATH")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Traceback"),
        "ynl {args:?} crashed:\n{stderr}"
    );
    Run {
        status: out.status.code().expect("ynl exited"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 output"),
    }
}

/// The JSON ynl printed, after a run that must succeed.
fn ynl_json(spec: &PathBuf, args: &[&str]) -> Value {
    let run = ynl(spec, args);
    assert_eq!(run.status, 0, "ynl {args:?} failed:\n{}", run.stdout);
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("ynl {args:?}: not JSON ({e}):\n{}", run.stdout))
}

/// Runs ynl, which must fail with `errno` and print an extended ack that
/// contains `extack` (ynl's rendering of its attributes).
fn ynl_fails(spec: &PathBuf, args: &[&str], errno: i32, extack: &str) {
    let run = ynl(spec, args);
    let spec = spec.display();
    assert_eq!(run.status, 1, "ynl --spec {spec} {args:?}: {}", run.stdout);
    assert!(
        run.stdout.contains(&format!("error: {errno}\n")) && run.stdout.contains(extack),
        "ynl --spec {spec} {args:?}: no error {errno} with {extack:?}:\n{}",
        run.stdout
    );
}

/// A message no other test echoes.
fn unique(what: &str, family: &str) -> String {
    format!("ynl {what} {family} {}", std::process::id())
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn echo_get_and_dump() {
    for (family, module) in FAMILIES {
        // An empty echo log: the dump below is then exactly our echo. (The
        // pinned ynl decodes string attributes as ASCII, and other tests
        // leave UTF-8 messages in the log, on which its dump would fail.)
        module.rmmod().unwrap();
        module.insmod().unwrap();
        let spec = spec(family);
        let msg = unique("echo", family);
        let request = json!({ "msg": msg }).to_string();
        let reply = ynl_json(&spec, &["--do", "echo", "--json", &request]);
        assert_eq!(reply, json!({ "msg": msg }), "{family}: the echo's reply");

        // The dump: the log's one entry, id 1, with the echo's port id.
        let dump = ynl_json(&spec, &["--dump", "get"]);
        let entries = dump.as_array().expect("a dump is a list");
        assert_eq!(entries.len(), 1, "{family}: {dump}");
        let entry = &entries[0];
        assert_eq!(entry["id"], json!(1), "{family}: {entry}");
        assert_eq!(entry["msg"], json!(msg), "{family}: {entry}");
        assert!(
            entry["portid"].as_u64().is_some_and(|p| p > 0),
            "{family}: {entry}"
        );
        assert_eq!(
            entry.as_object().map(|o| o.len()),
            Some(3),
            "{family}: {entry}"
        );

        // GET of id 1: the same entry.
        let got = ynl_json(&spec, &["--do", "get", "--json", r#"{"id": 1}"#]);
        assert_eq!(&got, entry, "{family}: GET of the dumped entry");
    }
}

/// Waits until the process `pid` holds a generic netlink socket (protocol
/// 16 in `/proc/net/netlink`) that joined a multicast group.
fn wait_for_membership(pid: u32, timeout: Duration) {
    let start = Instant::now();
    loop {
        let table = std::fs::read_to_string("/proc/net/netlink").expect("/proc/net/netlink");
        // sk Eth Pid Groups ...: the port id of a process's first netlink
        // socket is its pid; Groups is the bitmap of groups 1 to 32.
        let joined = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == "16" && f[2] == pid.to_string() && f[3] != "00000000"
        });
        if joined {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "ynl (pid {pid}) did not join a group within {timeout:?}:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn subscribe_events() {
    for (family, _) in FAMILIES {
        let spec = spec(family);
        // ynl subscribes, sleeps, then prints what came. (With `--do` in
        // the same run, the pinned cli.py fails on a notification that
        // arrives during the request: a separate listener it is.)
        let listener = ynl_command(&spec, &["--subscribe", "events", "--sleep", "5"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("ynl");
        wait_for_membership(listener.id(), Duration::from_secs(120));
        let msg = unique("event", family);
        let client = Command::new(c_client("libnl_genl_client"))
            .args(["--family", family, &msg])
            .output()
            .expect("libnl_genl_client");
        assert!(client.status.success(), "{family}: {client:?}");
        let out = listener.wait_with_output().expect("ynl");
        assert!(out.status.success(), "{family}: ynl --subscribe: {out:?}");
        let events: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let events = events.as_array().expect("a list of notifications");
        assert_eq!(events.len(), 1, "{family}: {events:?}");
        let event = &events[0];
        assert_eq!(event["name"], json!("event"), "{family}: {event}");
        assert_eq!(event["msg"]["msg"], json!(msg), "{family}: {event}");
        assert!(event["msg"]["id"].as_u64().is_some_and(|id| id > 0));
        assert!(event["msg"]["portid"].as_u64().is_some_and(|p| p > 0));
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn errors_come_with_the_extended_ack() {
    for (family, _) in FAMILIES {
        let spec = spec(family);
        ynl_fails(
            &spec,
            &["--do", "get", "--json", r#"{"id": 4000000000}"#],
            -2,
            "'msg': 'no entry 4000000000 in the echo log', 'bad-attr': '.id'",
        );
        // ynl names the missing attribute from the spec, with its doc.
        ynl_fails(
            &spec,
            &["--do", "echo"],
            -22,
            "'miss-type': 'msg', 'miss-type-doc': 'The echoed string",
        );
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn the_kernel_enforces_the_spec() {
    let nlctrl = match std::env::var_os("ROSETTA_YNL_DOCS") {
        Some(dir) => PathBuf::from(dir).join("specs/nlctrl.yaml"),
        None => panic!("ROSETTA_YNL_DOCS is not set: run the VM tests with `cargo xtask test`"),
    };
    for (family, _) in FAMILIES {
        // The policies the kernel registered, as its controller reports
        // them: ECHO's and GET's (do and dump), one attribute each.
        let request = json!({ "family-name": family }).to_string();
        let dump = ynl_json(&nlctrl, &["--dump", "getpolicy", "--json", &request]);
        let mut ops = Vec::new();
        let mut policies = Vec::new();
        for m in dump.as_array().expect("a list") {
            if let Some(op) = m.get("op-policy") {
                ops.push(op.clone());
            }
            if let Some(p) = m.get("policy") {
                policies.push(p.clone());
            }
        }
        assert_eq!(
            ops,
            [
                json!({ "op-id": proto::GENL_CMD_ECHO, "do": 0 }),
                json!({ "op-id": proto::GENL_CMD_GET, "do": 1, "dump": 1 }),
            ],
            "{family}"
        );
        assert_eq!(
            policies,
            [
                json!({ "policy-id": 0, "attr-id": proto::GENL_ATTR_MSG,
                        "type": "nul-string", "max-length": proto::MAX_MSG_LEN }),
                json!({ "policy-id": 1, "attr-id": proto::GENL_ATTR_ID, "type": "u32",
                        "min-value-u": 0, "max-value-u": u32::MAX }),
            ],
            "{family}"
        );

        // max-len at its edge: max-msg-len characters pass, one more not.
        let spec = spec(family);
        let longest = "x".repeat(proto::MAX_MSG_LEN);
        let reply = ynl_json(
            &spec,
            &[
                "--do",
                "echo",
                "--json",
                &json!({ "msg": longest }).to_string(),
            ],
        );
        assert_eq!(
            reply["msg"].as_str().map(str::len),
            Some(proto::MAX_MSG_LEN)
        );
        let too_long = json!({ "msg": format!("{longest}x") }).to_string();
        ynl_fails(
            &spec,
            &["--do", "echo", "--json", &too_long],
            -22,
            "'bad-attr': '.msg'",
        );
    }
}
