//! # rosetta-harden: fuzzing, floods and unload-under-load, in the VM
//!
//! Reference code is copied into production, so every module of the
//! project must survive what production, kernel CI and syzkaller throw at
//! it. For each module (kmod-raw, kmod-kthread, kmod-genl) this program
//! runs, in the VM where the modules are loaded:
//!
//! 1. **fuzz** ([`fuzz`]): seeded datagrams of malformed and mutated
//!    messages, every answer checked against a model of the netlink core
//!    and the module; then a normal echo must still work. The raw units
//!    are fuzzed again with `coalesce=1` and the same datagrams: the same
//!    answers must come, in fewer datagrams;
//! 2. **flood** ([`flood`]): send without reading, with a small receive
//!    buffer and with a large one (for kmod-kthread, with its thread held
//!    off the CPU so that its queue fills); every request ends counted;
//!    **subscribers** ([`subscribe::flood_subscribers`]): a client echoes
//!    while listeners of the module's multicast group are attached, one
//!    draining, two slow (small buffer, never reading; one with
//!    `NETLINK_NO_ENOBUFS`): every notification seen or counted dropped;
//! 3. **concurrency** ([`stress::concurrency`]): two clients of each of
//!    the four client libraries, on their own threads, at once;
//! 4. **lifecycle** ([`stress::lifecycle`]): unload/load cycles while
//!    clients come and go; **unload-subscribed**
//!    ([`subscribe::unload_subscribed`]): rmmod with a listener attached
//!    and, for genl, during a dump; for kmod-kthread also unloads with a
//!    full queue; **netns** ([`netns::churn`]): namespaces created and
//!    destroyed while every library echoes inside them, an unload/load
//!    with namespaces alive, and no namespace left afterwards;
//! 5. **faults** ([`faults`]): the n-th allocation of a request's
//!    `sendmsg()`, or of the module's load, fails, for n = 1, 2, ... until
//!    it goes through: every request must end answered or with a reported
//!    error, every load working or leaving nothing behind;
//! 6. the kernel's verdict: new kernel log lines that show a splat, and
//!    kmemleak's reports (on the debug kernel) involving our modules or
//!    netlink.
//!
//! It prints one table and writes the same data as JSON. Run it with
//! `cargo xtask harden [--quick] [--seed N]`, which boots the debug kernel
//! (KASAN, lockdep, kmemleak), or by hand:
//!
//! ```text
//! $ cargo build --release -p rosetta-harden
//! $ cargo xtask vm --debug --cpus 2 --modules raw,kthread,genl -- \
//!       target/release/rosetta-harden --quick --modules raw
//! harden: seed 0x18eab54f31fdc39b (replay: --seed 0x18eab54f31fdc39b)
//! ==> raw: fuzz
//!     Raw, seed 0x18eab54f31fdc39b, 4000 messages
//!     2.9 s: {"answers":{"ack":1608,"echo":3068,"error EMSGSIZE":313},...}
//! ...
//! module    fuzzed splats leaks cycles echoes  flood, 64 KiB rcvbuf   flood, 64 MiB rcvbuf   result
//! raw         4001      0     0     10    400  2000=68+0+1932         2000=2000+0+0          ok
//! ```
//!
//! (The lines of a real quick run, shortened; the README has a full run.)

mod clients;
mod faults;
mod flood;
mod fuzz;
mod klog;
mod mcast;
mod netns;
mod stress;
mod subscribe;

use anyhow::{Context, Result};
use clap::Parser;
use clients::Module;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Fuzz, flood and unload the project's kernel modules (run inside the VM)")]
struct Args {
    /// A few minutes in all: fewer messages, cycles and repetitions.
    #[arg(long)]
    quick: bool,
    /// The fuzzing seed (decimal or 0x hex); random if not given. Each
    /// module fuzzes with seed + its index (raw 0, kthread 1, genl 2).
    #[arg(long, value_parser = parse_seed)]
    seed: Option<u64>,
    /// Modules to harden, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "raw,kthread,genl"
    )]
    modules: Vec<Module>,
    /// Fuzzed messages per module (default: 100000, quick 4000).
    #[arg(long)]
    messages: Option<u64>,
    /// Unload/load cycles per module (default: 100, quick 10).
    #[arg(long)]
    cycles: Option<u32>,
    /// Only the fuzzing (to replay a seed quickly).
    #[arg(long)]
    fuzz_only: bool,
    /// Only these phases, comma-separated, by the report's names: fuzz,
    /// fuzz-coalesced, flood-small-rcvbuf, flood-large-rcvbuf, subscribers,
    /// concurrency, lifecycle, unload-subscribed, netns, unload-full-queue, faults.
    #[arg(long, value_delimiter = ',')]
    phases: Vec<String>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "harden.json")]
    out: PathBuf,
}

fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("not a number: {e}"))
}

/// The sizes of one run.
struct Sizes {
    messages: u64,
    cycles: u32,
    flood_requests: u32,
    concurrent_requests: usize,
    full_queue_unloads: u32,
    /// Echoes while listeners are subscribed.
    subscribed_echoes: u32,
    /// Network namespaces created and destroyed.
    namespaces: usize,
    /// Faults: loads with every n (full) or a sample (quick).
    quick: bool,
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("harden: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> Result<bool> {
    let seed = args.seed.unwrap_or_else(random_seed);
    let sizes = Sizes {
        messages: args
            .messages
            .unwrap_or(if args.quick { 4000 } else { 100_000 }),
        cycles: args.cycles.unwrap_or(if args.quick { 10 } else { 100 }),
        flood_requests: if args.quick { 2000 } else { 20_000 },
        concurrent_requests: if args.quick { 50 } else { 500 },
        full_queue_unloads: if args.quick { 2 } else { 10 },
        subscribed_echoes: if args.quick { 300 } else { 3000 },
        namespaces: if args.quick { 20 } else { 200 },
        quick: args.quick,
    };
    let known = Module::ALL
        .iter()
        .flat_map(|&m| phases(m, false, &sizes, 0))
        .map(|(name, _)| name)
        .collect::<Vec<_>>();
    if let Some(unknown) = args.phases.iter().find(|p| !known.contains(&p.as_str())) {
        anyhow::bail!(
            "unknown phase {unknown:?}: the phases are {}",
            known.join(", ")
        );
    }
    println!("harden: seed {seed:#x} (replay: --seed {seed:#x})");
    netlink_rosetta::big_receive_buffers();
    let mut kmsg = klog::Kmsg::now()?;
    let kmemleak = klog::Kmemleak::start()?;
    if kmemleak.is_none() {
        println!("harden: no kmemleak in this kernel: leaks are NOT checked (use the debug kernel: cargo xtask harden)");
    }
    let mut rows = Vec::new();
    for &module in &args.modules {
        // The module's place in the full list, not in --modules: `--seed S
        // --modules genl` replays genl's fuzzing of a full run with seed S.
        let index = Module::ALL.iter().position(|&m| m == module).unwrap_or(0);
        let module_seed = seed.wrapping_add(index as u64);
        let mut row = Map::new();
        row.insert("module".into(), json!(module.name()));
        let phases = phases(module, args.fuzz_only, &sizes, module_seed);
        let mut failures = Vec::new();
        for (phase, f) in phases {
            if !args.phases.is_empty() && !args.phases.iter().any(|p| p == phase) {
                continue;
            }
            println!("==> {}: {phase}", module.name());
            let start = Instant::now();
            if !clients::kmod(module).is_loaded() {
                clients::kmod(module).insmod().map_err(anyhow::Error::msg)?;
            }
            match f() {
                // A phase that reports its own failures keeps its counts.
                Ok(value) if value["failures"].as_array().is_some_and(|f| !f.is_empty()) => {
                    println!("    FAILED after {:.1} s", start.elapsed().as_secs_f64());
                    for f in value["failures"].as_array().into_iter().flatten() {
                        failures.push(format!("{phase}: {}", f.as_str().unwrap_or_default()));
                    }
                    row.insert(phase.to_string(), value);
                }
                Ok(value) => {
                    println!("    {:.1} s: {value}", start.elapsed().as_secs_f64());
                    row.insert(phase.to_string(), value);
                }
                Err(e) => {
                    println!("    FAILED: {e:#}");
                    failures.push(format!("{phase}: {e:#}"));
                    row.insert(phase.to_string(), json!({ "error": format!("{e:#}") }));
                }
            }
        }
        let log = kmsg.new_lines()?.join("\n");
        let splats: Vec<&str> = netlink_rosetta::splats(&log);
        for s in &splats {
            println!("    kernel: {s}");
        }
        row.insert("splats".into(), json!(splats.len()));
        match &kmemleak {
            Some(k) => {
                let leaks = k.reports()?;
                for l in &leaks {
                    println!("    kmemleak: {l}");
                }
                row.insert("leak_reports".into(), json!(leaks.len()));
                if !leaks.is_empty() {
                    failures.push(format!("{} kmemleak reports", leaks.len()));
                }
            }
            None => {
                row.insert("leak_reports".into(), Value::Null);
            }
        }
        if !splats.is_empty() {
            failures.push(format!("{} kernel log splats", splats.len()));
        }
        row.insert("failures".into(), json!(failures));
        rows.push(Value::Object(row));
    }
    // Sockets that the faults phase found pinning freed modules: closing
    // them shows what the kernel makes of it (they failed the run already).
    let pinned = faults::close_pinned(&mut kmsg)?;
    let ok = rows
        .iter()
        .all(|r| r["failures"].as_array().is_some_and(|f| f.is_empty()));
    let report = json!({
        "seed": format!("{seed:#x}"),
        "quick": args.quick,
        "kmemleak": kmemleak.is_some(),
        "ok": ok,
        "modules": rows,
        "pinned_sockets_closed": pinned,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    print!("{}", table(&rows));
    print!("{}", subscribers_table(&rows));
    print!("{}", netns_table(&rows));
    print!("{}", faults_table(&rows));
    println!(
        "harden: {} (seed {seed:#x}); report: {}",
        if ok { "all passed" } else { "FAILED" },
        args.out.display()
    );
    Ok(ok)
}

type Phase<'a> = (&'static str, Box<dyn FnOnce() -> Result<Value> + 'a>);

/// Fuzzes `module` with the datagrams of `seed`, then checks that every
/// client library still gets its echo.
fn fuzz(module: Module, seed: u64, sizes: &Sizes) -> Result<Value> {
    let (mut sock, family) = clients::raw_socket(module)?;
    let target = match (module, family) {
        (_, Some(family)) => fuzz::Target::Genl { family },
        (Module::Kthread, None) => fuzz::Target::Queued,
        _ => fuzz::Target::Raw,
    };
    println!(
        "    {target:?}, seed {seed:#x}, {} messages",
        sizes.messages
    );
    let plan = fuzz::Plan {
        seed,
        messages: sizes.messages,
    };
    let mut stats = fuzz::run(&mut sock, target, &plan)?;
    // Still a working echo server afterwards, for every library.
    for lib in clients::Lib::ALL {
        clients::Client::connect(lib, module)
            .and_then(|mut c| c.echo("still there after the fuzzing"))
            .map_err(|e| anyhow::anyhow!("after the fuzzing, {}: {e}", lib.name()))?;
    }
    stats["echo_after"] = json!("ok");
    Ok(stats)
}

/// The phases for `module`, in order.
fn phases<'a>(module: Module, fuzz_only: bool, sizes: &'a Sizes, seed: u64) -> Vec<Phase<'a>> {
    let mut phases: Vec<Phase<'a>> = vec![("fuzz", Box::new(move || fuzz(module, seed, sizes)))];
    if module.unit().is_some() {
        // The same datagrams, with the answers coalesced: the same answers,
        // in fewer datagrams.
        phases.push((
            "fuzz-coalesced",
            Box::new(move || {
                stress::with_params(module, &["coalesce=1"], || fuzz(module, seed, sizes))
            }),
        ));
    }
    if fuzz_only {
        return phases;
    }
    for (name, rcvbuf, hold) in [
        ("flood-small-rcvbuf", 64 << 10, false),
        ("flood-large-rcvbuf", 64 << 20, module == Module::Kthread),
    ] {
        phases.push((
            name,
            Box::new(move || {
                flood::run(&flood::Flood {
                    module,
                    requests: sizes.flood_requests,
                    rcvbuf,
                    hold_off_thread: hold,
                })
            }),
        ));
    }
    phases.push((
        "subscribers",
        Box::new(move || subscribe::flood_subscribers(module, sizes.subscribed_echoes)),
    ));
    phases.push((
        "concurrency",
        Box::new(move || stress::concurrency(module, 2, sizes.concurrent_requests)),
    ));
    phases.push((
        "lifecycle",
        Box::new(move || stress::lifecycle(module, sizes.cycles)),
    ));
    phases.push((
        "unload-subscribed",
        Box::new(move || subscribe::unload_subscribed(module)),
    ));
    phases.push((
        "netns",
        Box::new(move || netns::churn(module, sizes.namespaces)),
    ));
    if module == Module::Kthread {
        phases.push((
            "unload-full-queue",
            Box::new(move || stress::kthread_unload_full(sizes.full_queue_unloads, 64)),
        ));
    }
    phases.push(("faults", Box::new(move || faults::run(module, sizes.quick))));
    phases
}

/// The summary table: one row per module. The floods read
/// sent = replied + errored + overrun.
fn table(rows: &[Value]) -> String {
    let line = |c: [&str; 9]| {
        format!(
            "{:<8} {:>7} {:>6} {:>5} {:>6} {:>6}  {:<22} {:<22} {}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
        )
    };
    let mut out = String::from("\n");
    out += &line([
        "module",
        "fuzzed",
        "splats",
        "leaks",
        "cycles",
        "echoes",
        "flood, 64 KiB rcvbuf",
        "flood, 64 MiB rcvbuf",
        "result",
    ]);
    for r in rows {
        let cell = |v: &Value| match v {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let flood = |k: &str| {
            let f = &r[k];
            if f["sent"].is_null() {
                return "-".to_string();
            }
            let errored: u64 = f["errored"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            format!(
                "{}={}+{}+{}",
                f["sent"], f["replied"], errored, f["overrun"]
            )
        };
        let ok = r["failures"].as_array().is_some_and(Vec::is_empty);
        out += &line([
            &cell(&r["module"]),
            &cell(&r["fuzz"]["messages"]),
            &cell(&r["splats"]),
            &cell(&r["leak_reports"]),
            &cell(&r["lifecycle"]["cycles"]),
            &cell(&r["concurrency"]["echoes"]),
            &flood("flood-small-rcvbuf"),
            &flood("flood-large-rcvbuf"),
            if ok { "ok" } else { "FAILED" },
        ]);
    }
    out += "floods: sent = replied + errored + overrun; cycles: unload/load cycles; \
            echoes: by 8 concurrent clients; \"-\": not run (leaks: no kmemleak)\n";
    out
}

/// The namespace phase's table: one row per module.
fn netns_table(rows: &[Value]) -> String {
    if rows.iter().all(|r| r["netns"].is_null()) {
        return String::new();
    }
    let mut out = format!(
        "\n{:<8} {:>10} {:>7} {:>5} {:>8}\n",
        "netns", "namespaces", "echoes", "left", "seconds"
    );
    for r in rows {
        let n = &r["netns"];
        let cell = |k: &str| n[k].to_string().replace("null", "-");
        out += &format!(
            "{:<8} {:>10} {:>7} {:>5} {:>8}\n",
            r["module"].as_str().unwrap_or_default(),
            cell("namespaces"),
            cell("echoes"),
            cell("left"),
            cell("seconds")
        );
    }
    out += "netns: namespaces created and destroyed (two threads, every library echoing in each, \
            an unload/load with three alive); left: namespaces not freed afterwards\n";
    out
}

/// The multicast phases' table: one row per module.
fn subscribers_table(rows: &[Value]) -> String {
    if rows
        .iter()
        .all(|r| r["subscribers"].is_null() && r["unload-subscribed"].is_null())
    {
        return String::new();
    }
    let line = |c: [&str; 6]| {
        format!(
            "{:<8} {:>7} {:>8}  {:<18} {:<18} {}\n",
            c[0], c[1], c[2], c[3], c[4], c[5]
        )
    };
    let mut out = String::from("\n");
    out += &line([
        "subscr.",
        "echoes",
        "reader",
        "slow",
        "slow, NO_ENOBUFS",
        "rmmod with a listener / during a dump",
    ]);
    for r in rows {
        let s = &r["subscribers"];
        let slow = |k: &str| {
            let v = &s[k];
            if v["received"].is_null() {
                return "-".to_string();
            }
            format!(
                "{}+{} {}xENOBUFS",
                v["received"], v["missing"], v["enobufs_reports"]
            )
        };
        let u = &r["unload-subscribed"];
        let text = |v: &Value| {
            v.as_str()
                .unwrap_or("-")
                .split(' ')
                .next()
                .unwrap_or("-")
                .to_string()
        };
        let unload = match u["dump_stalled"].as_str() {
            Some(d) => format!(
                "{} / {}",
                text(&u["with_listener"]),
                d.split(',').next().unwrap_or(d)
            ),
            None => text(&u["with_listener"]),
        };
        out += &line([
            r["module"].as_str().unwrap_or_default(),
            &s["echoes"].to_string().replace("null", "-"),
            &s["reader"]["received"].to_string().replace("null", "-"),
            &slow("slow"),
            &slow("slow_no_enobufs"),
            &unload,
        ]);
    }
    out += "subscr.: a client echoes while listeners are subscribed; reader: notifications seen by the \
            draining listener; slow: received+dropped by a listener that never read (4 KiB rcvbuf)\n";
    out
}

/// The faults phase's table: one row per module, the injected failures per
/// path; "(k failed)" after a path's count when k of its attempts failed.
fn faults_table(rows: &[Value]) -> String {
    let line = |c: &[String]| {
        let mut l = format!("{:<8}", c[0]);
        for cell in &c[1..] {
            l += &format!(" {cell:>14}");
        }
        l + "\n"
    };
    if rows.iter().all(|r| r["faults"]["paths"].is_null()) {
        return String::new();
    }
    let mut head = vec!["faults".to_string()];
    head.extend(faults::Path::ALL.iter().map(|p| p.name().to_string()));
    let mut out = String::from("\n") + &line(&head);
    for r in rows {
        let mut cells = vec![r["module"].as_str().unwrap_or_default().to_string()];
        for p in faults::Path::ALL {
            let path = &r["faults"]["paths"][p.name()];
            cells.push(match path["injected"].as_u64() {
                None => "-".into(),
                Some(n) => match path["failures"].as_array().map_or(0, Vec::len) {
                    0 => n.to_string(),
                    k => format!("{n} ({k} failed)"),
                },
            });
        }
        out += &line(&cells);
    }
    out += "faults: failures injected per path (n-th allocation of the sendmsg or the load, \
            until it goes through); \"-\": not run\n";
    out
}

/// A seed from the clock and the pid: different every run, printed so that
/// a failure replays.
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}
