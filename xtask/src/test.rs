//! `cargo xtask test`: the host tests, then the VM integration tests.
//!
//! 1. `cargo test --workspace` on the host: unit tests of every crate, and
//!    the host-side socket tests. The VM tests show up there as ignored,
//!    with the reason.
//! 2. The kernel and the modules are built, the integration test binaries
//!    of the root package are compiled, and one VM boot runs all of them
//!    with `--ignored --test-threads=1` (some tests unload and reload
//!    modules, which must not overlap with the others), every module loaded,
//!    then runs every benchmark once (criterion's `--test` mode); on the
//!    debug kernel, then `rosetta-harden --quick` (see `harden.rs`).

use crate::util::{root, run, step};
use crate::vm;
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Duration;

pub fn run_tests(flavour: crate::kernel::Flavour) -> Result<i32> {
    step("formatting and lints: cargo fmt --check, cargo clippy -D warnings");
    run(Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["fmt", "--all", "--", "--check"]))
    .context("run `cargo fmt --all`")?;
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("formatting of the kernel-side Rust: rustfmt --check with the kernel's .rustfmt.toml");
    let kernel = crate::kmod::build_all(flavour)?;
    let mut kernel_rust = Vec::new();
    for dir in ["kmod-raw", "kmod-kthread", "kmod-genl", "kernel/tree"] {
        kernel_rust.extend(
            crate::util::files_under(&root().join(dir))?
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "rs")),
        );
    }
    run(Command::new("rustfmt")
        .args(["--check", "--edition", "2021", "--config-path"])
        .arg(kernel.tree.join(".rustfmt.toml"))
        .args(&kernel_rust))
    .context("format them with the same command without --check")?;
    step("host tests: cargo test --workspace");
    run(Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["test", "--workspace"]))?;

    step("compiling the VM integration tests");
    let binaries = test_binaries()?;
    if binaries.is_empty() {
        bail!("no integration test binaries found in the workspace");
    }
    let bench = crate::bench::bench_binary()?;
    let mut script = binaries
        .iter()
        .map(|b| format!("echo '==> {b}' && {b} --ignored --test-threads=1", b = b))
        .collect::<Vec<_>>()
        .join(" && ");
    // Every benchmark once (criterion's test mode), so that they never rot.
    script += &format!(
        " && echo '==> benches in test mode' && CRITERION_HOME=/tmp/criterion {} --test",
        bench.display()
    );
    let debug = flavour == crate::kernel::Flavour::Debug;
    if debug {
        // The hardening's quick mode, in the same (slow to boot) VM.
        script += &format!(
            " && echo '==> harden --quick' && {}",
            crate::harden::guest_command(true, None)?
        );
    }
    step(format!(
        "VM integration tests: {} test binaries{}",
        binaries.len(),
        if debug { ", then harden --quick" } else { "" }
    ));
    let rc = vm::run(&vm::VmRun {
        kernel: &kernel,
        modules: vm::all_kmods().map(|m| m.0.to_string()).collect(),
        cmd: vec!["sh".into(), "-c".into(), script],
        // A KASAN kernel under TCG boots in minutes and runs slowly.
        timeout: Duration::from_secs(if debug { 3600 } else { 900 }),
        cpus: 2,
        rw_dirs: if debug {
            vec![crate::harden::run_dir()]
        } else {
            Vec::new()
        },
        verbose: false,
    })?;
    if debug {
        if let Ok(report) = crate::harden::collect() {
            step(format!("hardening report: {}", report.display()));
        }
    }
    if rc != 0 {
        bail!("VM integration tests failed (exit status {rc})");
    }
    step("all tests passed");
    Ok(0)
}

/// The integration test executables of the workspace (`tests/*.rs` of every
/// package; their VM tests are the ignored ones).
fn test_binaries() -> Result<Vec<String>> {
    let exes = crate::util::cargo_executables(&["test", "--workspace", "--tests"], "test")?;
    Ok(exes.iter().map(|e| e.display().to_string()).collect())
}
