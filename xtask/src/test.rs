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
//!    debug kernel, then `rosetta-harden --quick` (see `harden.rs`); on the
//!    normal kernel, the book's commands, whose outputs must match what its
//!    pages show (see `book.rs`: the book is built and checked in headless
//!    Chromium first).
//!    On the debug kernel the binaries of [`NORMAL_KERNEL_ONLY`] are
//!    skipped, each with a line that says so and why.
//! 3. Every VM test binary must have passed all its VM tests, and at least
//!    as many as [`VM_TESTS`] expects: a binary that ran no test, or fewer
//!    than it has, fails the run instead of passing silently.
//! 4. On the normal kernel, a second boot with QEMU's icount guards the
//!    Rust modules' instructions per round trip against their C twins'
//!    (`bench::icount_pass`).

use crate::util::{root, run, step};
use crate::vm::{self, sh_quote};
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
    step("the YNL spec: valid, and the generated files committed (cargo xtask spec --check)");
    crate::ynl::generate(&crate::ynl::Tools::of(&kernel)?, false)?;
    step("host tests: cargo test --workspace");
    run(Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["test", "--workspace"]))?;

    step("compiling the VM integration tests");
    let debug = flavour == crate::kernel::Flavour::Debug;
    let (binaries, skipped): (Vec<_>, Vec<_>) = vm_test_binaries()?
        .into_iter()
        .partition(|b| !debug || normal_kernel_only(&b.src).is_none());
    for b in &skipped {
        step(format!(
            "SKIPPED on the debug kernel: {} ({} VM tests, run on the normal kernel): {}",
            b.src,
            b.tests,
            normal_kernel_only(&b.src).unwrap_or_default()
        ));
    }
    let bench = crate::bench::bench_binary()?;
    // Each binary's standard output goes to a file too (`tee`), for the
    // count of passed tests; its exit status through another file, as a
    // pipeline's status is that of `tee`.
    let results = root()
        .join("target/rosetta/test")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&results);
    std::fs::create_dir_all(&results)?;
    let mut script = binaries
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let out = sh_quote(&results.join(format!("{i}.out")).to_string_lossy());
            let rc = sh_quote(&results.join(format!("{i}.rc")).to_string_lossy());
            format!(
                "echo '==> {src}' && {{ {exe} --ignored --test-threads=1; echo $? > {rc}; }} | tee {out} && [ \"$(cat {rc})\" = 0 ]",
                src = b.src,
                exe = sh_quote(&b.executable.to_string_lossy()),
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    // Every benchmark once (criterion's test mode), so that they never rot.
    script += &format!(
        " && echo '==> benches in test mode' && CRITERION_HOME=/tmp/criterion {} --test",
        bench.display()
    );
    let book_dir = crate::book::run_dir();
    if debug {
        // The hardening's quick mode, in the same (slow to boot) VM.
        script += &format!(
            " && echo '==> harden --quick' && {}",
            crate::harden::guest_command(true, None)?
        );
    } else {
        // The book's commands, whose outputs its pages show (on the normal
        // kernel only: the debug kernel's timings and log differ).
        step("the book: sources, links and every page in headless Chromium");
        crate::book::check_without_vm()?;
        script += &format!(
            " && echo '==> the commands of the book' && {}",
            crate::book::guest_command(&book_dir)?
        );
    }
    step(format!(
        "VM integration tests: {} test binaries, {} tests{}",
        binaries.len(),
        binaries.iter().map(|b| b.tests).sum::<usize>(),
        if debug { ", then harden --quick" } else { "" }
    ));
    let rc = vm::run(&vm::VmRun {
        kernel: &kernel,
        modules: vm::all_kmods().map(|m| m.0.to_string()).collect(),
        cmd: vec!["sh".into(), "-c".into(), script],
        // A KASAN kernel under TCG boots in minutes and runs slowly. On the
        // normal one, tests/ynl.rs alone takes about 4 minutes (19 runs of
        // ynl, a Python program, at about 12 s each under TCG).
        timeout: Duration::from_secs(if debug { 3600 } else { 1200 }),
        cpus: 2,
        rw_dirs: if debug {
            vec![results.clone(), crate::harden::run_dir()]
        } else {
            vec![results.clone(), book_dir.clone()]
        },
        verbose: false,
        icount: false,
        plugin: None,
    })?;
    if debug {
        if let Ok(report) = crate::harden::collect() {
            step(format!("hardening report: {}", report.display()));
        }
    }
    if rc != 0 {
        bail!("VM integration tests failed (exit status {rc})");
    }
    if !debug {
        crate::book::check_outputs(&book_dir)?;
    }
    for (i, b) in binaries.iter().enumerate() {
        let out = results.join(format!("{i}.out"));
        let text = std::fs::read_to_string(&out)
            .with_context(|| format!("{}: no output from the VM ({})", b.src, out.display()))?;
        let passed = passed(&text).with_context(|| {
            format!(
                "{}: no `test result: ok.` line in its VM output ({})",
                b.src,
                out.display()
            )
        })?;
        if passed != b.tests {
            bail!(
                "{} passed {passed} tests in the VM, but has {} VM tests (`--ignored --list`): \
                 every VM test must run and pass",
                b.src,
                b.tests
            );
        }
        eprintln!("    {}: {passed} VM tests passed", b.src);
    }
    if !debug {
        crate::bench::icount_pass(&kernel)?;
    }
    step("all tests passed");
    Ok(0)
}

/// The VM test binaries that run on the normal kernel only, and why: the
/// debug kernel is there for the kernel code's memory and locking errors,
/// and these exercise no kernel path that the others do not.
const NORMAL_KERNEL_ONLY: &[(&str, &str)] = &[(
    "tests/ynl.rs",
    "it drives the kernel's ynl tool, a Python program that takes about 12 s a run under TCG \
     and several times that under KASAN, through the same generic netlink paths as \
     tests/genl_raw_client.rs",
)];

/// Why `src` runs on the normal kernel only, if it does.
fn normal_kernel_only(src: &str) -> Option<&'static str> {
    NORMAL_KERNEL_ONLY
        .iter()
        .find(|(s, _)| *s == src)
        .map(|(_, why)| *why)
}

/// The VM test binaries, and the fewest VM tests each must have: the
/// number it had when this was last updated.
///
/// Why a table, on top of counting: the VM tests are the ignored ones,
/// and `--ignored --list` on the host says how many each binary has; the
/// VM run must then pass exactly that many ("0 passed" is no longer
/// success). But a count taken from the binary cannot notice tests that
/// vanished from it (a `cfg` or a macro gone wrong, `#[ignore]` lost, a
/// binary no longer built); this table can. Removing VM tests, or a VM
/// test binary, therefore means lowering a number here, on purpose; adding
/// tests needs no change, and a new VM test binary must be added.
const VM_TESTS: &[(&str, usize)] = &[
    ("tests/raw_client.rs", 89),
    ("tests/genl_raw_client.rs", 46),
    ("tests/c_clients.rs", 13),
    ("tests/netns.rs", 28),
    ("user-genl/tests/vm.rs", 17),
    ("user-libnl-style/tests/vm.rs", 17),
    ("user-async/tests/vm.rs", 22),
    ("tests/ynl.rs", 4),
];

/// An integration test executable with VM tests.
struct VmTestBinary {
    /// Its source file, relative to the workspace root.
    src: String,
    executable: std::path::PathBuf,
    /// How many VM (ignored) tests it has.
    tests: usize,
}

/// The integration test executables of the workspace that have VM tests
/// (the ignored ones), checked against [`VM_TESTS`]. The others have only
/// host tests, which `cargo test` ran.
fn vm_test_binaries() -> Result<Vec<VmTestBinary>> {
    let targets = crate::util::cargo_targets(&["test", "--workspace", "--tests"], "test")?;
    let mut binaries = Vec::new();
    for target in targets {
        let listing = crate::util::output(Command::new(&target.executable).args([
            "--ignored",
            "--list",
            "--format",
            "terse",
        ]))?;
        let tests = listing.lines().filter(|l| l.ends_with(": test")).count();
        let expected = VM_TESTS.iter().find(|(src, _)| *src == target.src);
        match expected {
            None if tests == 0 => continue,
            None => bail!(
                "{} has {tests} VM tests but is not in VM_TESTS (xtask/src/test.rs): add it",
                target.src
            ),
            Some((_, min)) if tests < *min => bail!(
                "{} has {tests} VM tests, fewer than the {min} that VM_TESTS (xtask/src/test.rs) \
                 expects: were tests lost? If they were removed on purpose, lower the number",
                target.src
            ),
            Some(_) => {}
        }
        binaries.push(VmTestBinary {
            src: target.src,
            executable: target.executable,
            tests,
        });
    }
    for (src, _) in VM_TESTS {
        if !binaries.iter().any(|b| b.src == *src) {
            bail!(
                "{src} has no VM tests, or was not built, but VM_TESTS (xtask/src/test.rs) lists it"
            );
        }
    }
    Ok(binaries)
}

/// The number of passed tests in libtest's summary line,
/// "test result: ok. 44 passed; 0 failed; 0 ignored; 0 measured; ...":
/// `None` without one, or when it is not "ok".
fn passed(output: &str) -> Option<usize> {
    let summary = output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("test result: "))?;
    summary
        .strip_prefix("ok. ")?
        .split_once(" passed;")?
        .0
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::passed;

    #[test]
    fn only_an_ok_summary_counts() {
        let ok = "running 2 tests\ntest a ... ok\n\n\
                  test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 5 filtered out; finished in 0.01s\n";
        assert_eq!(passed(ok), Some(2));
        let none = "running 0 tests\n\n\
                    test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 7 filtered out; finished in 0.00s\n";
        assert_eq!(passed(none), Some(0));
        let failed =
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(passed(failed), None);
        assert_eq!(passed("killed\n"), None);
    }
}
