//! What the project needs from outside, installed by the project itself:
//! Debian packages (apt), bindgen-cli (cargo install), virtme-ng and the
//! YNL tools' Python packages (pip venvs), the last three into the project
//! cache.

use crate::util::{cache_dir, output, root, run, step};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// The pinned kernel source package and its version.
pub const KERNEL_PACKAGE: &str = "linux-source-6.12";
pub const KERNEL_PACKAGE_VERSION: &str = "6.12.117-1~deb12u1";

/// Debian packages: the kernel source, the Debian rustc that the kernel
/// builds with (the rustup toolchain has no `rust-src`), LLVM, QEMU, and what
/// a kernel build and virtme-ng need (`udev`: without `systemd-udevd` the
/// guest has no virtio console and the exit status of commands is lost).
const PACKAGES: &[&str] = &[
    "rustc-web",
    "rust-web-src",
    "clang",
    "lld",
    "llvm",
    "libclang-dev",
    "qemu-system-x86",
    "busybox-static",
    "udev",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "xz-utils",
    "make",
    "patch",
    "kmod",
    "iproute2",
    "strace",
    "python3-venv",
    // The C clients (c/clients/).
    "gcc",
    "libnl-3-dev",
    "libnl-genl-3-dev",
];

/// The Debian rustc and its rustdoc (the std sources: [`rust_lib_src`]).
pub const RUSTC: &str = "/usr/bin/rustc";
pub const RUSTDOC: &str = "/usr/bin/rustdoc";

const BINDGEN_VERSION: &str = "0.71.1";
const VIRTME_NG_VERSION: &str = "1.42";

fn installed_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\t${Version}", package])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, version) = text.split_once('\t')?;
    status.ends_with(" installed").then(|| version.to_string())
}

/// Installs the missing Debian packages when run as root; otherwise stops
/// with the exact command to run.
pub fn ensure_packages() -> Result<()> {
    let kernel_pin = format!("{KERNEL_PACKAGE}={KERNEL_PACKAGE_VERSION}");
    let mut missing: Vec<String> = PACKAGES
        .iter()
        .filter(|p| installed_version(p).is_none())
        .map(|p| p.to_string())
        .collect();
    if installed_version(KERNEL_PACKAGE).as_deref() != Some(KERNEL_PACKAGE_VERSION) {
        missing.push(kernel_pin);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    let uid = output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        bail!("missing Debian packages; run as root:\n    apt-get update && {install}");
    }
    step(format!("installing Debian packages: {}", missing.join(" ")));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("sh")
        .arg("-c")
        .arg(&install)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| {
        format!("is {KERNEL_PACKAGE} {KERNEL_PACKAGE_VERSION} still in the archive? `apt-cache policy {KERNEL_PACKAGE}` lists the versions; the pin is in xtask/src/deps.rs")
    })
}

/// The std sources of the Debian rustc, which the kernel build takes as
/// `RUST_LIB_SRC`: `rust-web-src` installs them in
/// `/usr/src/rustc-<version>/library`, the version being rustc's own. It is
/// read from `rustc --version` rather than written here, so that a Debian
/// point release of `rustc-web` does not break a fresh build; a rustc and
/// std sources of different versions stop the build with the fix.
pub fn rust_lib_src() -> Result<PathBuf> {
    let line = output(Command::new(RUSTC).arg("--version"))
        .with_context(|| format!("cannot run {RUSTC}: is rustc-web installed?"))?;
    // "rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)"
    let version = line
        .split_whitespace()
        .nth(1)
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .with_context(|| format!("unexpected `{RUSTC} --version`: {}", line.trim()))?;
    let dir = PathBuf::from(format!("/usr/src/rustc-{version}/library"));
    if !dir.join("core/src/lib.rs").is_file() {
        let installed = |p| installed_version(p).unwrap_or_else(|| "not installed".into());
        bail!(
            "{RUSTC} is rustc {version}, but its standard library sources are not in {} \
             (rustc-web: {}, rust-web-src: {}); the two packages must have the same version: \
             run as root `apt-get update && apt-get install -y rustc-web rust-web-src`",
            dir.display(),
            installed("rustc-web"),
            installed("rust-web-src"),
        );
    }
    Ok(dir)
}

/// bindgen-cli, installed with `cargo install` into the cache (Debian's
/// bindgen is too old for the kernel). Returns the binary.
pub fn ensure_bindgen() -> Result<PathBuf> {
    let prefix = cache_dir()?.join(format!("tools/bindgen-cli-{BINDGEN_VERSION}"));
    let bin = prefix.join("bin/bindgen");
    if !bin.exists() {
        step(format!(
            "installing bindgen-cli {BINDGEN_VERSION} into {} (about a minute)",
            prefix.display()
        ));
        run(Command::new("cargo")
            .args([
                "install",
                "--locked",
                "--quiet",
                "bindgen-cli",
                "--version",
                BINDGEN_VERSION,
                "--root",
            ])
            .arg(&prefix))?;
    }
    Ok(bin)
}

/// virtme-ng in a venv in the cache. Returns the venv's `bin/` directory,
/// which must be on PATH for `vng` to find `virtme-run`.
pub fn ensure_virtme_ng() -> Result<PathBuf> {
    ensure_venv(
        &format!("virtme-ng {VIRTME_NG_VERSION}"),
        &format!("virtme-ng-{VIRTME_NG_VERSION}"),
        "xtask/virtme-ng-requirements.txt",
        "vng",
    )
}

/// The Python packages of the kernel's YNL tools (`tools/net/ynl/` of the
/// pinned tree: PyYAML, jsonschema) and docutils, in a venv in the cache.
/// Returns the venv's `bin/` directory (its `python3` runs the tools).
pub fn ensure_ynl_python() -> Result<PathBuf> {
    ensure_venv(
        "the YNL tools' Python packages",
        "ynl-python",
        "xtask/ynl-requirements.txt",
        "python3",
    )
}

/// A venv `tools/<dir>` in the cache with the pinned `requirements` (a
/// file of the workspace) installed; reinstalled when the file changes.
/// Returns its `bin/` directory, once it holds `program`.
fn ensure_venv(what: &str, dir: &str, requirements: &str, program: &str) -> Result<PathBuf> {
    let requirements = root().join(requirements);
    let venv = cache_dir()?.join("tools").join(dir);
    let bin = venv.join("bin");
    let stamp = venv.join(".requirements");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
        && bin.join(program).exists()
    {
        return Ok(bin);
    }
    step(format!("installing {what} into {}", venv.display()));
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        .context("python3 -m venv failed: is python3-venv installed?")?;
    run(Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted)?;
    Ok(bin)
}
