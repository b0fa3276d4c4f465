//! `cargo xtask kernel`: the guest kernel, built once and cached.
//!
//! Debian's `linux-source-6.12` is unpacked into the cache, our netlink
//! abstraction (`kernel/tree/` copied over the tree, `kernel/patches/`
//! applied) is added, the tree is configured from `kernel/config.fragment` on
//! top of `tinyconfig`, and built with the Debian rustc.
//!
//! Two cache levels keep rebuilds short:
//! - the tree directory is keyed by everything that forces a build from
//!   scratch: package version, config fragment, toolchain versions, this
//!   recipe's version;
//! - inside it, a stamp records the hash of `kernel/tree` and
//!   `kernel/patches`. When they change, the touched files are restored from
//!   pristine copies, the overlay is applied again, and `make` rebuilds only
//!   what depends on them (seconds to a minute, not minutes).

use crate::deps::{self, KERNEL_PACKAGE, KERNEL_PACKAGE_VERSION, RUSTC, RUSTDOC};
use crate::util::{cache_dir, output, root, run, run_logged, step, Hasher};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Bump when the build recipe below changes in a way the inputs do not show.
const RECIPE_VERSION: &str = "1";

/// A built kernel tree, and how to run `make` in it.
pub struct Kernel {
    pub tree: PathBuf,
    bindgen: PathBuf,
    /// The Debian rustc's std sources (`deps::rust_lib_src`).
    rust_lib_src: PathBuf,
    pub flavour: Flavour,
}

impl Kernel {
    /// The toolchain variables every `make` in the tree, and every
    /// out-of-tree module build, needs.
    pub fn make_vars(&self) -> Vec<String> {
        vec![
            "LLVM=1".into(),
            format!("RUSTC={RUSTC}"),
            format!("RUSTDOC={RUSTDOC}"),
            format!("BINDGEN={}", self.bindgen.display()),
            format!("RUST_LIB_SRC={}", self.rust_lib_src.display()),
        ]
    }

    /// `make -C <tree> <vars> args...`.
    pub fn make(&self) -> Command {
        let mut cmd = Command::new("make");
        cmd.arg("-C").arg(&self.tree).args(self.make_vars());
        cmd
    }

    pub fn bzimage(&self) -> PathBuf {
        self.tree.join("arch/x86/boot/bzImage")
    }
}

fn kernel_dir() -> PathBuf {
    root().join("kernel")
}

fn version_of(program: &str, arg: &str) -> Result<String> {
    Ok(output(Command::new(program).arg(arg))?
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// Which kernel: the normal one, or the debug one (KASAN, lockdep,
/// kmemleak...) that `--debug` selects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Normal,
    Debug,
}

impl Flavour {
    /// The config fragments, merged in this order onto tinyconfig.
    fn fragments(self) -> Vec<PathBuf> {
        let mut fragments = vec![kernel_dir().join("config.fragment")];
        if self == Flavour::Debug {
            fragments.push(kernel_dir().join("config-debug.fragment"));
        }
        fragments
    }
}

/// The hash of everything that forces a build from scratch.
fn base_key(bindgen: &Path, flavour: Flavour) -> Result<String> {
    let mut h = Hasher::default();
    h.add("recipe", RECIPE_VERSION.as_bytes());
    h.add(
        "package",
        format!("{KERNEL_PACKAGE}={KERNEL_PACKAGE_VERSION}").as_bytes(),
    );
    for (i, fragment) in flavour.fragments().iter().enumerate() {
        // The first keeps its historical name, so that adding the debug
        // flavour did not change the normal kernel's key.
        let name = if i == 0 {
            "fragment".to_string()
        } else {
            format!("fragment{i}")
        };
        h.add(
            &name,
            &std::fs::read(fragment)
                .with_context(|| format!("cannot read {}", fragment.display()))?,
        );
    }
    for (name, program, arg) in [
        ("rustc", RUSTC, "--version"),
        (
            "bindgen",
            bindgen.to_str().unwrap_or("bindgen"),
            "--version",
        ),
        ("clang", "clang", "--version"),
        ("ld.lld", "ld.lld", "--version"),
    ] {
        h.add(name, version_of(program, arg)?.as_bytes());
    }
    Ok(h.short())
}

/// The hash of our additions to the tree.
fn overlay_key() -> Result<String> {
    let mut h = Hasher::default();
    h.add_dir(&kernel_dir().join("tree"))?;
    h.add_dir(&kernel_dir().join("patches"))?;
    Ok(h.short())
}

/// Builds the kernel if the cache has no build for the current inputs, and
/// returns it.
pub fn ensure(flavour: Flavour) -> Result<Kernel> {
    deps::ensure_packages()?;
    let bindgen = deps::ensure_bindgen()?;
    // Not part of the key: it follows from the rustc version, which is.
    let rust_lib_src = deps::rust_lib_src()?;
    let base = cache_dir()?.join(format!("kernel/{}", base_key(&bindgen, flavour)?));
    let tree = base.join("linux-source-6.12");
    let kernel = Kernel {
        tree: tree.clone(),
        bindgen,
        rust_lib_src,
        flavour,
    };
    let overlay = overlay_key()?;
    let built_stamp = base.join("built");
    if std::fs::read_to_string(&built_stamp).ok().as_deref() == Some(overlay.as_str()) {
        return Ok(kernel);
    }

    if !base.join("configured").exists() {
        unpack(&base)?;
        configure(&kernel)?;
        std::fs::write(base.join("configured"), "")?;
    }
    let applied_stamp = base.join("overlay");
    if std::fs::read_to_string(&applied_stamp).ok().as_deref() != Some(overlay.as_str()) {
        let _ = std::fs::remove_file(&built_stamp);
        let _ = std::fs::remove_file(&applied_stamp);
        apply_overlay(&base, &tree)?;
        std::fs::write(&applied_stamp, &overlay)?;
    }

    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    step(format!(
        "building the kernel in {} with {jobs} jobs (from scratch: about 9 minutes on 2 cores, the debug kernel longer; after a change to kernel/: under a minute)",
        tree.display()
    ));
    run_logged(
        kernel.make().arg(format!("-j{jobs}")),
        "kernel build",
        &base.join("build.log"),
        Duration::from_secs(20),
    )?;
    step("generating rust-project.json for rust-analyzer");
    run(kernel.make().arg("-s").arg("rust-analyzer"))?;
    std::fs::write(&built_stamp, &overlay)?;
    step(format!("kernel ready: {}", kernel.bzimage().display()));
    Ok(kernel)
}

fn unpack(base: &Path) -> Result<()> {
    let tarball = format!("/usr/src/{KERNEL_PACKAGE}.tar.xz");
    step(format!(
        "unpacking {tarball} into {} (about 30 s)",
        base.display()
    ));
    // The tarball always unpacks to ./linux-source-6.12: unpack into a fresh
    // scratch directory, then move it into place.
    let scratch = base.join("unpack");
    if base.exists() {
        std::fs::remove_dir_all(base)
            .with_context(|| format!("cannot clean {}", base.display()))?;
    }
    std::fs::create_dir_all(&scratch)?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&scratch))?;
    std::fs::rename(
        scratch.join("linux-source-6.12"),
        base.join("linux-source-6.12"),
    )?;
    std::fs::remove_dir(&scratch)?;
    Ok(())
}

fn configure(kernel: &Kernel) -> Result<()> {
    let fragments = kernel.flavour.fragments();
    let names: Vec<String> = fragments.iter().map(|f| f.display().to_string()).collect();
    step(format!("configuring: tinyconfig + {}", names.join(" + ")));
    run(kernel.make().arg("-s").arg("tinyconfig"))?;
    run(
        Command::new(kernel.tree.join("scripts/kconfig/merge_config.sh"))
            .current_dir(&kernel.tree)
            .args(["-m", "-Q", ".config"])
            .args(&fragments)
            .stdout(std::process::Stdio::null()),
    )?;
    run(kernel.make().arg("-s").arg("olddefconfig"))?;
    run(kernel.make().arg("-s").arg("rustavailable"))
        .context("the kernel does not accept the Rust toolchain")?;
    for fragment in &fragments {
        check_config(&kernel.tree.join(".config"), fragment)?;
    }
    Ok(())
}

/// Fails, naming the options, when the final `.config` lost a setting of the
/// fragment (Kconfig drops options whose dependencies are missing).
fn check_config(config: &Path, fragment: &Path) -> Result<()> {
    let config = std::fs::read_to_string(config)?;
    let have: Vec<&str> = config.lines().collect();
    let mut lost = Vec::new();
    for line in std::fs::read_to_string(fragment)?.lines() {
        let line = line.trim();
        let wanted = line.starts_with("CONFIG_")
            || (line.starts_with("# CONFIG_") && line.ends_with(" is not set"));
        if wanted && !have.contains(&line) {
            let name = line
                .trim_start_matches("# ")
                .split([' ', '='])
                .next()
                .unwrap_or(line);
            // "is not set" is satisfied by the option being absent.
            let absent = !have.iter().any(|l| l.starts_with(&format!("{name}=")));
            if !(line.ends_with(" is not set") && absent) {
                lost.push(line.to_string());
            }
        }
    }
    if !lost.is_empty() {
        bail!(
            "the kernel configuration lost settings of {} (missing dependencies?):\n    {}",
            fragment.display(),
            lost.join("\n    ")
        );
    }
    Ok(())
}

/// Restores the files an earlier overlay touched, then copies `kernel/tree`
/// over the tree and applies `kernel/patches`, saving pristine copies first.
fn apply_overlay(base: &Path, tree: &Path) -> Result<()> {
    let pristine = base.join("pristine");
    let manifest = pristine.join("MANIFEST");
    // Each manifest line is "saved <path>" or "absent <path>".
    let old = std::fs::read_to_string(&manifest).unwrap_or_default();
    for line in old.lines() {
        let (state, rel) = line.split_once(' ').context("corrupt pristine MANIFEST")?;
        let target = tree.join(rel);
        match state {
            "saved" => {
                std::fs::copy(pristine.join(rel), &target)?;
            }
            _ => {
                let _ = std::fs::remove_file(&target);
            }
        }
    }
    let overlay = kernel_dir().join("tree");
    let patches: Vec<PathBuf> = crate::util::files_under(&kernel_dir().join("patches"))?;
    let mut touched: Vec<String> = crate::util::files_under(&overlay)?
        .iter()
        .map(|f| Ok(f.strip_prefix(&overlay)?.to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    for patch in &patches {
        for line in std::fs::read_to_string(patch)?.lines() {
            // `+++ b/<path>`, maybe followed by a tab and a timestamp.
            if let Some(path) = line.strip_prefix("+++ b/") {
                let path = path.split(['\t', ' ']).next().unwrap_or(path);
                touched.push(path.trim().to_string());
            }
        }
    }
    touched.sort();
    touched.dedup();
    let mut lines = String::new();
    for rel in &touched {
        let target = tree.join(rel);
        if target.exists() {
            let saved = pristine.join(rel);
            if !saved.exists() {
                std::fs::create_dir_all(saved.parent().expect("relative path has a parent"))?;
                std::fs::copy(&target, &saved)?;
            }
            lines.push_str(&format!("saved {rel}\n"));
        } else {
            lines.push_str(&format!("absent {rel}\n"));
        }
    }
    std::fs::create_dir_all(&pristine)?;
    std::fs::write(&manifest, lines)?;

    step("adding the netlink abstraction (kernel/tree, kernel/patches) to the tree");
    for file in crate::util::files_under(&overlay)? {
        let target = tree.join(file.strip_prefix(&overlay)?);
        std::fs::create_dir_all(target.parent().expect("file has a parent"))?;
        std::fs::copy(&file, &target)?;
    }
    for patch in &patches {
        run(Command::new("patch")
            .current_dir(tree)
            .args(["-p1", "--forward", "--batch", "--quiet", "-i"])
            .arg(patch))
        .with_context(|| {
            format!(
                "{} does not apply to {KERNEL_PACKAGE} {KERNEL_PACKAGE_VERSION}",
                patch.display()
            )
        })?;
    }
    Ok(())
}
