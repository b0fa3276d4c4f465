//! `cargo xtask build`: the kernel modules, out of tree (`make -C <tree>
//! M=<dir>`), with zero warnings, and the userspace clients: the Rust
//! workspace's and the C clients (`c/clients/`, gcc, warnings are errors).

use crate::kernel::{self, Flavour, Kernel};
use crate::util::{root, run, show, step};
use crate::vm::{all_kmods, c_clients_dir};
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
    build_c_clients()?;
    Ok(kernel)
}

/// Builds the C clients into `target/c-clients/` with `c/clients/Makefile`:
/// gcc, `-Wall -Wextra -Werror`, Debian's libnl-3 and libnl-genl-3.
pub fn build_c_clients() -> Result<()> {
    let out_dir = c_clients_dir();
    std::fs::create_dir_all(&out_dir)?;
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(root().join("c/clients"))
        .arg(format!("OUT={}", out_dir.display()));
    let (ok, text) = make_output(&mut cmd)?;
    if !ok || text.contains("warning") {
        eprintln!("{text}");
        bail!("building the C clients failed or warned: `{}`", show(&cmd));
    }
    if text.contains("gcc ") {
        step(format!("built the C clients into {}", out_dir.display()));
    }
    Ok(())
}

fn build_kmod(kernel: &Kernel, dir: &str) -> Result<()> {
    let src = root().join(dir);
    let mut cmd = kernel.make();
    cmd.arg(format!("M={}", src.display()));
    let (ok, text) = make_output(&mut cmd)?;
    let built = text
        .lines()
        .any(|l| l.contains(" RUSTC ") || l.contains(" LD [M]"));
    if !ok {
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

/// Runs a `make`, and returns whether it succeeded and all it printed, for
/// the callers to fail on warnings.
fn make_output(cmd: &mut Command) -> Result<(bool, String)> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}
