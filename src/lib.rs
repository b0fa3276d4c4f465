//! netlink-rosetta: side-by-side reference implementations of Linux kernel
//! <-> userspace netlink, in Rust.
//!
//! This root package owns the integration tests (`tests/`) of every kernel
//! module x client pair and the benches (`benches/`). This library is what
//! they share: where the kernel modules are, and how to load and unload them
//! inside the VM. See the README for the tour, and `cargo xtask --help`.
//!
//! The tests that need the kernel modules are `#[ignore]`d with the reason
//! "needs the VM": `cargo test` on the host lists them as ignored, and
//! `cargo xtask test` runs them inside the VM with `--ignored`.

use std::path::PathBuf;
use std::process::Command;

/// The reason every VM-only test gives for being ignored on the host.
pub const NEEDS_VM: &str = "needs the VM with the kernel modules: run `cargo xtask test`";

/// A kernel module of the project: its short name (`raw`, `kthread`,
/// `genl`), as the `--modules` switch of `cargo xtask vm` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kmod(pub &'static str);

impl Kmod {
    /// The name the kernel knows the module by (`kmod_raw`).
    pub fn name(self) -> String {
        format!("kmod_{}", self.0)
    }

    /// The `.ko` file, as `cargo xtask vm` exports it to the guest in
    /// `ROSETTA_KMOD_<NAME>`.
    pub fn ko(self) -> PathBuf {
        let var = format!("ROSETTA_KMOD_{}", self.0.to_uppercase());
        match std::env::var_os(&var) {
            Some(path) => PathBuf::from(path),
            None => panic!("{var} is not set: run the VM tests with `cargo xtask test`"),
        }
    }

    /// Loads the module (`insmod`); the error carries insmod's message.
    pub fn insmod(self) -> Result<(), String> {
        run(Command::new("insmod").arg(self.ko()))
    }

    /// Unloads the module (`rmmod`); the error carries rmmod's message, e.g.
    /// "Module kmod_raw is in use".
    pub fn rmmod(self) -> Result<(), String> {
        run(Command::new("rmmod").arg(self.name()))
    }

    /// Whether the module is loaded (listed in `/proc/modules`).
    pub fn is_loaded(self) -> bool {
        let name = self.name();
        std::fs::read_to_string("/proc/modules")
            .map(|m| {
                m.lines()
                    .any(|l| l.split(' ').next() == Some(name.as_str()))
            })
            .unwrap_or(false)
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `kmod-raw`: raw unit 31, replies from the input callback.
pub const RAW: Kmod = Kmod("raw");

/// `kmod-kthread`: raw unit 25, replies from a kernel thread.
pub const KTHREAD: Kmod = Kmod("kthread");

/// `kmod-genl`: generic netlink family `my_genl`.
pub const GENL: Kmod = Kmod("genl");

/// Unloads `module`, runs `f`, and loads the module again, even if `f`
/// panics.
pub fn with_module_unloaded(module: Kmod, f: impl FnOnce()) {
    module.rmmod().unwrap();
    assert!(!module.is_loaded());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    module.insmod().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Raises the default receive buffer of new sockets (as root, in the VM), so
/// that tests which put hundreds of replies in flight measure the module,
/// not the socket's default limit.
pub fn big_receive_buffers() {
    for knob in [
        "/proc/sys/net/core/rmem_max",
        "/proc/sys/net/core/rmem_default",
    ] {
        std::fs::write(knob, "16777216").unwrap_or_else(|e| panic!("cannot write {knob}: {e}"));
    }
}
