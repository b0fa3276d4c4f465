//! `cargo xtask`: netlink-rosetta's build, VM and test driver.
//!
//! ```text
//! cargo xtask kernel [--debug]       build (or reuse from the cache) the guest kernel
//! cargo xtask build                  kernel, kernel modules (zero warnings), clients
//! cargo xtask vm [--modules raw] -- CMD ARGS...
//!                                    run CMD in a VM with the modules inserted
//! cargo xtask test [--debug]         host tests, then the VM integration tests
//! cargo xtask demo                   every client against every module: a table
//! cargo xtask bench [--quick] [--icount]
//!                                    criterion benches in the VM, with a summary;
//!                                    --icount: guest instructions instead of time
//! cargo xtask profile ID... [--count N]
//!                                    guest instructions per function of benchmarks
//! cargo xtask harden [--quick]       fuzz, flood and unload every module (debug kernel)
//! cargo xtask book [--check]         the book into target/book/; --check verifies it
//! cargo xtask spec [--check]         from the YNL spec: the C header and the reference page
//! ```
//!
//! Everything it needs (Debian packages, bindgen, virtme-ng, the YNL tools'
//! Python packages) it installs
//! itself; expensive outputs live in the cache (`~/.cache/netlink-rosetta`).

mod bench;
mod book;
mod demo;
mod deps;
mod harden;
mod kernel;
mod kmod;
mod profile;
mod test;
mod util;
mod vm;
mod ynl;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::time::Duration;

#[derive(Parser)]
#[command(about = "netlink-rosetta's build, VM and test driver")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the guest kernel with the netlink abstraction, or reuse the
    /// cached build; also writes its rust-project.json.
    Kernel {
        /// The debug kernel: KASAN, lockdep, kmemleak, list and object
        /// debugging (kernel/config-debug.fragment), cached separately.
        #[arg(long)]
        debug: bool,
    },
    /// Build the kernel, the kernel modules (warnings are errors) with their
    /// rust-project.json, and the userspace clients.
    Build,
    /// Run a command in a VM booted from the project's kernel (builds the
    /// kernel and the modules first, not the command: `cargo build` does).
    Vm {
        /// Kernel modules to insert first, comma-separated (raw).
        #[arg(long, value_delimiter = ',')]
        modules: Vec<String>,
        /// Kill the VM after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Guest vCPUs. One is steadier for measurements under TCG.
        #[arg(long, default_value_t = 1)]
        cpus: u32,
        /// Show the guest's console (kernel messages) while it runs.
        #[arg(long)]
        verbose: bool,
        /// QEMU's icount mode: the guest's clock counts its instructions
        /// (one nanosecond each), so times measured inside are exact
        /// instruction counts.
        #[arg(long)]
        icount: bool,
        /// Boot the debug kernel (KASAN, lockdep, kmemleak); the run also
        /// fails on kmemleak reports that involve our modules or netlink.
        #[arg(long)]
        debug: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Run the host tests, then the VM integration tests.
    Test {
        /// Run the VM tests on the debug kernel (much slower), followed by
        /// `harden --quick` in the same boot.
        #[arg(long)]
        debug: bool,
    },
    /// Run every client against every module in the VM, print a table and
    /// write target/rosetta/demo.json.
    Demo,
    /// Run the criterion benches in the VM; write criterion's report to
    /// target/criterion/ and a summary to target/rosetta/bench-summary.*.
    Bench {
        /// Short measurements: a few minutes in all, for smoke runs.
        #[arg(long)]
        quick: bool,
        /// Count instructions instead of timing: the VM boots with QEMU's
        /// icount, so every figure is guest instructions per round trip,
        /// exact whatever the host is doing; the targets are then the
        /// instruction ratios (the Rust modules against their C twins).
        #[arg(long)]
        icount: bool,
    },
    /// Where a benchmark's guest instructions go, per kernel function (user
    /// space as one bucket): a QEMU plugin counts them in a VM booted with
    /// icount.
    /// Pairs of ids also print their difference (a Rust module and its C
    /// twin: the first and second id, the third and fourth, ...).
    Profile {
        /// Benchmark ids (`<group>/<client>/<mode>/<bytes>`, e.g.
        /// raw/raw/single/16 c-raw/raw/single/16), profiled in one boot.
        ids: Vec<String>,
        /// Round trips per benchmark.
        #[arg(long, default_value_t = 20000)]
        count: u64,
    },
    /// Fuzz, flood, hammer and unload every module in a VM on the debug
    /// kernel; print a table and write target/rosetta/harden.json.
    Harden {
        /// A few thousand messages and 10 load cycles per module.
        #[arg(long)]
        quick: bool,
        /// The fuzzing seed, to replay a failure (decimal or 0x hex).
        #[arg(long)]
        seed: Option<String>,
    },
    /// Inside the VM only: copy the kernel log from /dev/kmsg into FILE,
    /// with its sequence numbers (the VM runner's guest script runs this).
    #[command(hide = true)]
    GuestKmsg { file: std::path::PathBuf },
    /// Build the book (book/) into target/book/, readable offline.
    Book {
        /// Also check it: includes and anchors, links and images, every
        /// shown output against a VM run, and every page in headless
        /// Chromium (screenshots in target/book/screenshots/).
        #[arg(long)]
        check: bool,
    },
    /// Validate the YNL spec (proto/spec/my_genl.yaml) with the pinned
    /// kernel's tools/net/ynl, and write what it generates: the C uAPI
    /// header (c/include/linux/my_genl.h) and the reference page
    /// (proto/spec/my_genl.rst).
    Spec {
        /// Write nothing: fail unless the committed files are what the
        /// spec generates (`cargo xtask test` runs this).
        #[arg(long)]
        check: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    match dispatch(cli.cmd) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<i32> {
    // In the guest: no cache, no lock (the filesystem is read-only there).
    if let Cmd::GuestKmsg { file } = &cmd {
        vm::guest_kmsg(file)?;
        return Ok(0);
    }
    let _lock = util::lock()?;
    match cmd {
        Cmd::Kernel { debug } => {
            let kernel = kernel::ensure(flavour(debug))?;
            println!("{}", kernel.tree.display());
            Ok(0)
        }
        Cmd::Build => {
            kmod::build_all(kernel::Flavour::Normal)?;
            Ok(0)
        }
        Cmd::Vm {
            modules,
            timeout,
            cpus,
            verbose,
            icount,
            debug,
            cmd,
        } => {
            // Only what the VM needs: the command is the user's to build.
            let kernel = kmod::build_modules(flavour(debug))?;
            vm::run(&vm::VmRun {
                kernel: &kernel,
                modules,
                cmd,
                timeout: Duration::from_secs(timeout),
                cpus,
                rw_dirs: Vec::new(),
                verbose,
                icount,
                plugin: None,
            })
        }
        Cmd::Test { debug } => test::run_tests(flavour(debug)),
        Cmd::Demo => demo::run_demo(),
        Cmd::Bench { quick, icount } => bench::run_bench(quick, icount),
        Cmd::Profile { ids, count } => profile::run_profile(&ids, count),
        Cmd::Harden { quick, seed } => harden::run_harden(quick, seed),
        Cmd::GuestKmsg { .. } => unreachable!("handled before taking the lock"),
        Cmd::Book { check } => book::run_book(check),
        Cmd::Spec { check } => ynl::run_spec(check),
    }
}

fn flavour(debug: bool) -> kernel::Flavour {
    if debug {
        kernel::Flavour::Debug
    } else {
        kernel::Flavour::Normal
    }
}
