//! `cargo xtask demo`: every client against every module, in one VM boot.
//!
//! Each client CLI runs `--json --count 10000` against each module; the
//! table shows whether the echo came back intact, a sample reply, and the
//! round trips per second. The same rows go to `target/rosetta/demo.json`.

use crate::util::{root, run, step};
use crate::vm::{self, KMODS};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// The client CLIs: name in the table, binary, and switches of its own
/// (the async client one request at a time, then 8 and 64 in flight).
const CLIENTS: &[(&str, &str, &str)] = &[
    ("raw", "user-raw", ""),
    ("libnl-style", "user-libnl-style", ""),
    ("neli", "user-genl", ""),
    ("async", "user-async", ""),
    ("async/8", "user-async", " --in-flight 8"),
    ("async/64", "user-async", " --in-flight 64"),
];

/// Round trips per pair.
const COUNT: u32 = 10_000;
const MESSAGE: &str = "hello netlink";

pub fn run_demo() -> Result<i32> {
    let kernel = crate::kmod::build_all(crate::kernel::Flavour::Normal)?;
    step("building the clients in release mode, for honest rates");
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "build",
        "--quiet",
        "--release",
        "--workspace",
        "--bins",
    ]))?;

    let out_dir = root().join("target/rosetta/demo-run");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir)?;
    let mut script = String::new();
    for (module, _, _) in KMODS {
        for (client, bin, own) in CLIENTS {
            let exe = root().join("target/release").join(bin);
            let file = client.replace('/', "-");
            script += &format!(
                "{}{own} --module {module} --count {COUNT} --json '{MESSAGE}' > {}/{module}-{file}.json 2>&1\n",
                exe.display(),
                out_dir.display()
            );
        }
    }
    let rc = vm::run(&vm::VmRun {
        kernel: &kernel,
        modules: KMODS.iter().map(|m| m.0.to_string()).collect(),
        cmd: vec!["sh".into(), "-c".into(), script],
        timeout: Duration::from_secs(600),
        cpus: 1,
        rw_dirs: vec![out_dir.clone()],
        verbose: false,
        icount: false,
        plugin: None,
    })?;
    if rc != 0 {
        eprintln!("demo: some client exited with status {rc}; its row says why");
    }

    let mut rows = Vec::new();
    for (module, _, _) in KMODS {
        for (client, _, _) in CLIENTS {
            let file = out_dir.join(format!("{module}-{}.json", client.replace('/', "-")));
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("no output in {}", file.display()))?;
            rows.push(row(module, client, &text));
        }
    }
    print_table(&rows);
    let json_path = root().join("target/rosetta/demo.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&rows)? + "\n")?;
    step(format!("wrote {}", json_path.display()));
    if rows.iter().any(|r| r["ok"] != true) {
        bail!("some pairs failed");
    }
    Ok(0)
}

/// One row from a client's `--json` line (or its error output).
fn row(module: &str, client: &str, text: &str) -> Value {
    let parsed = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok());
    match parsed {
        Some(v) if v["ok"] == true && v["reply"] == MESSAGE => json!({
            "module": module,
            "client": client,
            "ok": true,
            "reply": v["reply"],
            "round_trips_per_s": v["round_trips_per_s"],
        }),
        Some(v) => json!({
            "module": module, "client": client, "ok": false,
            "reply": v["reply"].as_str().unwrap_or(""),
            "round_trips_per_s": 0.0,
            "error": v["error"].as_str().map_or_else(|| format!("unexpected reply {}", v["reply"]), str::to_string),
        }),
        None => json!({
            "module": module, "client": client, "ok": false, "reply": "",
            "round_trips_per_s": 0.0, "error": text.trim(),
        }),
    }
}

fn print_table(rows: &[Value]) {
    println!();
    println!(
        "{:<8} {:<12} {:<5} {:<20} {:>16}",
        "module", "client", "ok", "reply", "round trips/s"
    );
    for r in rows {
        let ok = if r["ok"] == true { "ok" } else { "FAIL" };
        let reply = format!("{:?}", r["reply"].as_str().unwrap_or(""));
        let rate = r["round_trips_per_s"].as_f64().unwrap_or(0.0);
        println!(
            "{:<8} {:<12} {:<5} {:<20} {:>16.0}",
            r["module"].as_str().unwrap_or(""),
            r["client"].as_str().unwrap_or(""),
            ok,
            reply,
            rate
        );
        if let Some(err) = r["error"].as_str() {
            println!("         error: {err}");
        }
    }
    println!();
}
