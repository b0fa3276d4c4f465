//! `cargo xtask build`: the kernel modules, out of tree (`make -C <tree>
//! M=<dir>`), with zero warnings, and the userspace clients.

use crate::kernel::{self, Flavour, Kernel};
use crate::util::{root, run, show, step};
use crate::vm::all_kmods;
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Builds the kernel (if needed) and every kernel module against it.
pub fn build_modules(flavour: Flavour) -> Result<Kernel> {
    let kernel = kernel::ensure(flavour)?;
    let mut dirs: Vec<&str> = all_kmods().map(|m| m.1).collect();
    dirs.dedup(); // the C twins share c/modules
    for dir in dirs {
        build_kmod(&kernel, dir)?;
    }
    Ok(kernel)
}

/// Builds the kernel (if needed), every kernel module and the clients.
pub fn build_all(flavour: Flavour) -> Result<Kernel> {
    let kernel = build_modules(flavour)?;
    step("building the userspace clients (cargo build --workspace --bins)");
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "build",
        "--quiet",
        "--workspace",
        "--bins",
    ]))?;
    Ok(kernel)
}

fn build_kmod(kernel: &Kernel, dir: &str) -> Result<()> {
    let src = root().join(dir);
    let mut cmd = kernel.make();
    cmd.arg(format!("M={}", src.display()));
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(&cmd)))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let built = text
        .lines()
        .any(|l| l.contains(" RUSTC ") || l.contains(" LD [M]"));
    if !out.status.success() {
        eprintln!("{text}");
        bail!("building {dir} failed: `{}`", show(&cmd));
    }
    if text.contains("warning") {
        eprintln!("{text}");
        bail!("{dir} built with warnings; the kernel modules must build warning-free");
    }
    if built {
        step(format!("built {dir}"));
    }
    // rust-project.json for rust-analyzer, next to a Rust crate.
    let is_rust = crate::util::files_under(&src)?
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "rs"));
    if !is_rust {
        return Ok(());
    }
    let mut ra = kernel.make();
    ra.arg(format!("M={}", src.display()))
        .arg("-s")
        .arg("rust-analyzer");
    run(&mut ra).with_context(|| format!("generating {dir}/rust-project.json"))?;
    Ok(())
}
