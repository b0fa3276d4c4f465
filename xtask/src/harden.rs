//! `cargo xtask harden`: fuzzing, floods, concurrency and unload-under-load
//! of every module, on the debug kernel (KASAN, lockdep, kmemleak).
//!
//! The work happens in the guest, in `rosetta-harden` (the `harden/`
//! crate, built in release mode: the fuzzing generator is 20× slower
//! unoptimised). It prints progress and a table and writes its JSON report
//! into the run directory; this copies the report to
//! `target/rosetta/harden.json`. The VM runner adds its own verdict on the
//! whole run: any splat in the kernel log, any kmemleak report involving our
//! modules or netlink, or a failed rmmod at the end fails the command.
//!
//! `cargo xtask test --debug` runs the quick mode in the same boot as the
//! debug integration tests (see `test.rs`), so that CI has it.

use crate::util::{root, run, step};
use crate::vm;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The run directory the guest writes the report into.
pub fn run_dir() -> PathBuf {
    root().join("target/rosetta/harden-run")
}

/// Builds `rosetta-harden` (release) and returns the guest's command line.
pub fn guest_command(quick: bool, seed: Option<&str>) -> Result<String> {
    step("building rosetta-harden (cargo build --release -p rosetta-harden)");
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "rosetta-harden",
    ]))?;
    let exe = root().join("target/release/rosetta-harden");
    let dir = run_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut cmd = format!("{} --out {}/harden.json", exe.display(), dir.display());
    if quick {
        cmd += " --quick";
    }
    if let Some(seed) = seed {
        cmd += &format!(" --seed {seed}");
    }
    Ok(cmd)
}

/// Copies the guest's report to `target/rosetta/harden.json`.
pub fn collect() -> Result<PathBuf> {
    let out = root().join("target/rosetta/harden.json");
    std::fs::copy(run_dir().join("harden.json"), &out)
        .context("the guest wrote no harden.json: see its output above")?;
    Ok(out)
}

pub fn run_harden(quick: bool, seed: Option<String>) -> Result<i32> {
    let kernel = crate::kmod::build_modules(crate::kernel::Flavour::Debug)?;
    let cmd = guest_command(quick, seed.as_deref())?;
    step(format!(
        "hardening every module on the debug kernel ({}; the KASAN kernel boots in about 3 minutes)",
        if quick {
            "quick: about 10 minutes"
        } else {
            "full: 100 000 fuzzed messages and 100 load cycles per module, about 25 minutes"
        }
    ));
    let rc = vm::run(&vm::VmRun {
        kernel: &kernel,
        modules: vm::KMODS.iter().map(|m| m.0.to_string()).collect(),
        cmd: vec!["sh".into(), "-c".into(), cmd],
        timeout: Duration::from_secs(if quick { 2400 } else { 3 * 3600 }),
        cpus: 2,
        rw_dirs: vec![run_dir()],
        verbose: false,
        icount: false,
        plugin: None,
    });
    // The report is worth keeping even when the run failed.
    let report = collect();
    let rc = rc?;
    let report = report?;
    if rc != 0 {
        bail!(
            "hardening failed (exit status {rc}); report: {}",
            report.display()
        );
    }
    step(format!(
        "hardening passed: no splat, no kmemleak report; report: {}",
        report.display()
    ));
    Ok(0)
}
