//! `cargo xtask vm`: runs a command in a VM booted from the project's kernel,
//! with kernel modules inserted, using virtme-ng under QEMU TCG.
//!
//! virtme-ng shares the host's root filesystem read-only with the guest, so
//! host binaries and paths work as they are. The runner writes a small guest
//! script that inserts the modules, runs the command, removes the modules and
//! saves the kernel log; the host then fails the run if the log shows a
//! panic, Oops, BUG, WARNING, KASAN, lockdep or KUnit failure, even when the
//! command succeeded.

use crate::kernel::{Flavour, Kernel};
use crate::util::{root, show, step};
use anyhow::{bail, Context, Result};
use netlink_rosetta::splats;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The project's kernel modules: short name, crate directory, module name.
pub const KMODS: &[(&str, &str, &str)] = &[
    ("raw", "kmod-raw", "kmod_raw"),
    ("kthread", "kmod-kthread", "kmod_kthread"),
    ("genl", "kmod-genl", "kmod_genl"),
];

/// Their C twins (`c/modules/`), on their own units (30, 29) and family
/// (`c_genl`), so that they run beside the Rust modules in one boot: the
/// VM tests run against both, and the benches measure the Rust modules
/// against them.
pub const C_KMODS: &[(&str, &str, &str)] = &[
    ("c-raw", "c/modules", "kmod_c_raw"),
    ("c-kthread", "c/modules", "kmod_c_kthread"),
    ("c-genl", "c/modules", "kmod_c_genl"),
];

/// Where `cargo xtask build` puts the C clients (`c/clients/`); the guest
/// finds them in `ROSETTA_C_CLIENTS`.
pub fn c_clients_dir() -> PathBuf {
    root().join("target/c-clients")
}

/// Every module xtask builds: the Rust modules and their C twins.
pub fn all_kmods() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    KMODS.iter().chain(C_KMODS)
}

/// What a VM run needs.
pub struct VmRun<'a> {
    pub kernel: &'a Kernel,
    /// Short names from [`KMODS`], inserted in this order.
    pub modules: Vec<String>,
    pub cmd: Vec<String>,
    pub timeout: Duration,
    pub cpus: u32,
    /// Directories the guest may write to (everything else is read-only).
    pub rw_dirs: Vec<PathBuf>,
    /// Show the guest's console (kernel messages) as it boots and runs.
    pub verbose: bool,
}

/// The `.ko` of a module by short name.
pub fn ko_path(short: &str) -> Result<PathBuf> {
    let (_, dir, name) = all_kmods()
        .find(|(s, _, _)| *s == short)
        .with_context(|| format!("unknown module `{short}`: known are {}", known()))?;
    Ok(root().join(dir).join(format!("{name}.ko")))
}

fn module_name(short: &str) -> &'static str {
    all_kmods()
        .find(|(s, _, _)| *s == short)
        .map_or("", |m| m.2)
}

pub fn known() -> String {
    all_kmods().map(|m| m.0).collect::<Vec<_>>().join(", ")
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs the command in the VM; returns its exit status, after checking the
/// kernel log and the module removal.
pub fn run(vm: &VmRun) -> Result<i32> {
    let vng_bin = crate::deps::ensure_virtme_ng()?;
    let work = root()
        .join("target/rosetta/vm")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let script = work.join("guest.sh");
    let status_file = work.join("status");
    let dmesg_file = work.join("dmesg");

    let mut s = String::from("#!/bin/sh\n# Written by `cargo xtask vm`; runs inside the guest.\n");
    s += &format!("out={}\n", sh_quote(&work.to_string_lossy()));
    s += "export ROSETTA_VM=1\n";
    s += &format!(
        "export ROSETTA_C_CLIENTS={}\n",
        sh_quote(&c_clients_dir().to_string_lossy())
    );
    let mut kos = Vec::new();
    for short in &vm.modules {
        let ko = ko_path(short)?;
        if !ko.exists() {
            bail!("{} is not built: run `cargo xtask build`", ko.display());
        }
        s += &format!(
            "export ROSETTA_KMOD_{}={}\n",
            short.to_uppercase().replace('-', "_"),
            sh_quote(&ko.to_string_lossy())
        );
        kos.push((short.clone(), ko));
    }
    for (short, ko) in &kos {
        s += &format!(
            "insmod {ko} || {{ echo 'xtask vm: insmod {short} failed' >&2; dmesg > \"$out/dmesg\"; echo insmod > \"$out/status\"; exit 125; }}\n",
            ko = sh_quote(&ko.to_string_lossy())
        );
    }
    s += &format!(
        "cd {}\n",
        sh_quote(&std::env::current_dir()?.to_string_lossy())
    );
    s += &vm
        .cmd
        .iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    s += "\nrc=$?\nrmmod_failed=\n";
    for (short, _) in kos.iter().rev() {
        let name = module_name(short);
        s += &format!(
            "if grep -q '^{name} ' /proc/modules; then rmmod {name} || rmmod_failed=\"$rmmod_failed {name}\"; fi\n"
        );
    }
    if vm.kernel.flavour == Flavour::Debug {
        // kmemleak reports objects unreferenced for 5 s or more: wait, then
        // scan twice, as its documentation advises.
        s += "mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug\n\
              if [ -e /sys/kernel/debug/kmemleak ]; then sleep 6; \
              echo scan > /sys/kernel/debug/kmemleak; echo scan > /sys/kernel/debug/kmemleak; \
              cat /sys/kernel/debug/kmemleak > \"$out/kmemleak\"; fi\n";
    }
    s += "dmesg > \"$out/dmesg\"\necho \"$rc $rmmod_failed\" > \"$out/status\"\nexit $rc\n";
    std::fs::write(&script, s)?;

    let mut cmd = Command::new(vng_bin.join("vng"));
    cmd.env(
        "PATH",
        format!(
            "{}:{}",
            vng_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    )
    .arg("--run")
    .arg(vm.kernel.bzimage())
    .args([
        "--disable-kvm",
        "--cpus",
        &vm.cpus.to_string(),
        "--memory",
        "1G",
        "--user",
        "root",
    ])
    .arg(format!("--rwdir={}", work.display()));
    for dir in &vm.rw_dirs {
        cmd.arg(format!("--rwdir={}", dir.display()));
    }
    if vm.verbose {
        cmd.arg("--verbose");
    }
    cmd.arg("--").arg("sh").arg(&script).process_group(0);
    step(format!(
        "booting the VM (QEMU TCG, {} vCPU; about 10 s) with modules [{}]: {}",
        vm.cpus,
        vm.modules.join(","),
        vm.cmd.join(" ")
    ));
    let start = Instant::now();
    // The guest's output reaches ours through pipes: QEMU reopens its
    // standard output, which would truncate a file the user redirected our
    // output to (and lose everything printed before the VM started).
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", show(&cmd)))?;
    let forwarders = [
        forward(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            false,
        ),
        forward(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            true,
        ),
    ];
    let status = loop {
        if let Some(status) = child.try_wait()? {
            for forwarder in forwarders {
                let _ = forwarder.join();
            }
            break status;
        }
        if start.elapsed() > vm.timeout {
            // vng runs QEMU as a child: end the whole process group.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.wait();
            bail!(
                "the VM did not finish within {} s and was killed; the guest log, if any, is in {}",
                vm.timeout.as_secs(),
                work.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    let log = std::fs::read_to_string(&dmesg_file).unwrap_or_default();
    let found = splats(&log);
    if !found.is_empty() {
        eprintln!(
            "xtask vm: the kernel log shows problems ({}):",
            dmesg_file.display()
        );
        for line in &found {
            eprintln!("    {line}");
        }
        bail!(
            "kernel splat during the VM run (full log: {})",
            dmesg_file.display()
        );
    }
    if vm.kernel.flavour == Flavour::Debug {
        check_kmemleak(&work.join("kmemleak"))?;
    }
    let guest_status = std::fs::read_to_string(&status_file).with_context(|| {
        format!(
            "the guest did not finish its script ({status}): did the kernel crash? `cargo xtask vm --verbose ...` shows the console; files in {}",
            work.display()
        )
    })?;
    if guest_status.trim() == "insmod" {
        bail!(
            "inserting the modules failed; kernel log: {}",
            dmesg_file.display()
        );
    }
    let mut fields = guest_status.split_whitespace();
    let rc: i32 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .context("malformed guest status")?;
    let rmmod_failed: Vec<&str> = fields.collect();
    if !rmmod_failed.is_empty() {
        bail!(
            "rmmod failed at the end of the run for: {}",
            rmmod_failed.join(" ")
        );
    }
    eprintln!(
        "    VM run finished in {:.1} s, command exit status {rc}",
        start.elapsed().as_secs_f64()
    );
    Ok(rc)
}

/// Fails on a kmemleak report that involves our modules or netlink; counts
/// the others (boot-time allocations of other subsystems).
fn check_kmemleak(file: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "no kmemleak report at {}: is CONFIG_DEBUG_KMEMLEAK on?",
            file.display()
        )
    })?;
    let (reports, ours) = netlink_rosetta::kmemleak_reports(&text);
    eprintln!(
        "    kmemleak: {} reports, {} involving our modules or netlink ({})",
        reports,
        ours.len(),
        file.display()
    );
    if !ours.is_empty() {
        for r in &ours {
            eprintln!("{r}");
        }
        bail!(
            "kmemleak found leaks involving our modules or netlink: {}",
            file.display()
        );
    }
    Ok(())
}

/// Copies a child's output to ours as it comes, in a thread.
fn forward(pipe: Option<Box<dyn Read + Send>>, to_stderr: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(mut pipe) = pipe else { return };
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = if to_stderr {
                let mut err = std::io::stderr().lock();
                err.write_all(&buf[..n]).and_then(|()| err.flush())
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf[..n]).and_then(|()| out.flush())
            };
        }
    })
}
