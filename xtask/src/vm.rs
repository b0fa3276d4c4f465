//! `cargo xtask vm`: runs a command in a VM booted from the project's kernel,
//! with kernel modules inserted, using virtme-ng under QEMU TCG.
//!
//! virtme-ng shares the host's root filesystem read-only with the guest, so
//! host binaries and paths work as they are. The runner writes a small guest
//! script that inserts the modules, runs the command, removes the modules and
//! saves the kernel log; the host then fails the run if the log shows a
//! panic, Oops, BUG, WARNING, KASAN, lockdep or KUnit failure, even when the
//! command succeeded.
//!
//! The log must be whole for that verdict to mean anything: the guest copies
//! it record by record from `/dev/kmsg` (with a copy of this binary, see
//! [`guest_kmsg`]), and the host fails the run when the copy failed or is
//! missing, or when the sequence numbers show that records were lost (the
//! ring buffer wrapped: the oldest record left is not record 0 from the
//! boot, or numbers are skipped).

use crate::kernel::{Flavour, Kernel};
use crate::util::{root, show, step};
use anyhow::{bail, Context, Result};
use netlink_rosetta::splats;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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
    /// QEMU's icount mode (`-icount shift=0,sleep=off`): the guest's clock
    /// advances one nanosecond per guest instruction executed, so a time
    /// measured in the guest is an instruction count (see `bench.rs`).
    pub icount: bool,
    /// A QEMU TCG plugin and its arguments (`-plugin`): `path,arg=value`.
    pub plugin: Option<String>,
}

/// QEMU's options for [`VmRun::icount`]: one guest nanosecond per
/// instruction (`shift=0`), and no waiting for the host's clock when the
/// guest idles (`sleep=off`: the clock jumps to the next timer instead).
pub const ICOUNT_QEMU_OPTS: &str = "-icount shift=0,sleep=off";

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

/// Quotes `s` for the guest's `sh`.
pub fn sh_quote(s: &str) -> String {
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
    // The guest reads its kernel log with this very binary (`xtask
    // guest-kmsg`), copied: cargo may replace target/debug/xtask while we run.
    let reader = RemovedOnDrop(work.join("xtask"));
    std::fs::copy("/proc/self/exe", &reader.0)
        .with_context(|| format!("cannot copy this program to {}", reader.0.display()))?;

    let mut s = String::from("#!/bin/sh\n# Written by `cargo xtask vm`; runs inside the guest.\n");
    s += &format!("out={}\n", sh_quote(&work.to_string_lossy()));
    // The kernel log, and the reader's exit status, which the host checks.
    s += "klog() { \"$out/xtask\" guest-kmsg \"$out/kmsg\"; echo $? > \"$out/kmsg-status\"; }\n";
    s += "export ROSETTA_VM=1\n";
    s += &format!(
        "export ROSETTA_C_CLIENTS={}\n",
        sh_quote(&c_clients_dir().to_string_lossy())
    );
    s += &crate::ynl::guest_env(vm.kernel, &work)?;
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
            "insmod {ko} || {{ echo 'xtask vm: insmod {short} failed' >&2; klog; echo insmod > \"$out/status\"; exit 125; }}\n",
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
    s += "klog\necho \"$rc $rmmod_failed\" > \"$out/status\"\nexit $rc\n";
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
    .arg(format!("--rwdir={}", work.display()))
    // A kernel log of 4 MiB instead of the configured 128 KiB: the runner
    // fails a run whose log wrapped, and a debug run (KASAN, fault
    // injection, hundreds of module loads) logs far more than a normal one.
    .args(["--append", "log_buf_len=4M"]);
    for dir in &vm.rw_dirs {
        cmd.arg(format!("--rwdir={}", dir.display()));
    }
    if vm.verbose {
        cmd.arg("--verbose");
    }
    let mut qemu_opts = Vec::new();
    if vm.icount {
        qemu_opts.push(ICOUNT_QEMU_OPTS.to_string());
    }
    if let Some(plugin) = &vm.plugin {
        qemu_opts.push(format!("-plugin {plugin}"));
    }
    if !qemu_opts.is_empty() {
        // One argument: vng passes it on to QEMU split at spaces.
        cmd.arg(format!("--qemu-opts={}", qemu_opts.join(" ")));
    }
    cmd.arg("--").arg("sh").arg(&script).process_group(0);
    step(format!(
        "booting the VM (QEMU TCG{}, {} vCPU; about 10 s) with modules [{}]: {}",
        if vm.icount { " with icount" } else { "" },
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

    let guest_status = std::fs::read_to_string(&status_file).with_context(|| {
        format!(
            "the guest did not finish its script ({status}): did the kernel crash? `cargo xtask vm --verbose ...` shows the console; files in {}",
            work.display()
        )
    })?;
    let log = kernel_log(&work)?;
    std::fs::write(&dmesg_file, &log.text)?;
    let found = splats(&log.text);
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
        "    VM run finished in {:.1} s, command exit status {rc}; kernel log whole from the boot: {} records, {} KiB of text",
        start.elapsed().as_secs_f64(),
        log.records,
        log.text_bytes.div_ceil(1024)
    );
    Ok(rc)
}

/// Runs in the guest, as `xtask guest-kmsg FILE` from the guest script:
/// copies every record of the kernel log from `/dev/kmsg` into FILE as the
/// kernel renders them ("prio,seq,usec,flags;message", then continuation
/// lines that start with a space). A reader of `/dev/kmsg` starts at the
/// oldest record still in the ring buffer and, unlike `dmesg`, sees the
/// sequence numbers, so the host can tell a whole log from a wrapped one
/// ([`parse_kmsg`]).
pub fn guest_kmsg(file: &Path) -> Result<()> {
    // O_NONBLOCK on x86-64 (and arm64) Linux; xtask does not link libc.
    const O_NONBLOCK: i32 = 0o4000;
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open("/dev/kmsg")
        .context("cannot open /dev/kmsg")?;
    let mut text = Vec::new();
    // One read returns one record; a buffer shorter than the record is
    // EINVAL, and the kernel renders at most 8 KiB (CONSOLE_EXT_LOG_MAX).
    let mut record = vec![0u8; 16 * 1024];
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&record[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // Records were overwritten since the last read: the next read
            // returns the oldest one left, and the host sees the gap.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(e).context("reading /dev/kmsg"),
        }
    }
    std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))
}

/// The copy of this program the guest runs, removed after the run.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The guest's kernel log, whole.
struct KernelLog {
    /// As `dmesg` shows it.
    text: String,
    records: usize,
    /// The bytes of the messages, which the kernel's ring buffer holds
    /// (`1 << CONFIG_LOG_BUF_SHIFT` of them, in 1/32 as many records).
    text_bytes: usize,
}

/// The kernel log the guest copied (see [`guest_kmsg`]); fails unless the
/// copy succeeded and is whole.
fn kernel_log(work: &Path) -> Result<KernelLog> {
    let status_file = work.join("kmsg-status");
    let kmsg_file = work.join("kmsg");
    let status = std::fs::read_to_string(&status_file).with_context(|| {
        format!(
            "the guest script did not read the kernel log ({} is missing); without it a splat would go unseen",
            status_file.display()
        )
    })?;
    if status.trim() != "0" {
        bail!(
            "reading the guest's kernel log from /dev/kmsg failed (exit status {}; its error is above): without the log a splat would go unseen",
            status.trim()
        );
    }
    let raw = std::fs::read(&kmsg_file)
        .with_context(|| format!("cannot read the guest's kernel log {}", kmsg_file.display()))?;
    parse_kmsg(&String::from_utf8_lossy(&raw))
        .with_context(|| format!("the guest's kernel log {}", kmsg_file.display()))
}

/// Renders `/dev/kmsg` records as `dmesg` does ("[    1.234567] message").
/// Fails on an empty log, and on a log that lost records: the first must be
/// record 0 (the boot's first message) and the numbers must follow one
/// another, or the ring buffer wrapped and a splat may have been
/// overwritten before anyone saw it.
fn parse_kmsg(raw: &str) -> Result<KernelLog> {
    let mut out = String::new();
    let mut next_seq = 0u64;
    let mut records = 0usize;
    let mut text_bytes = 0usize;
    for line in raw.lines() {
        if line.starts_with(' ') || line.is_empty() {
            continue; // a continuation line: "SUBSYSTEM=...", "DEVICE=..."
        }
        let (meta, message) = line
            .split_once(';')
            .with_context(|| format!("not a /dev/kmsg record: {line:?}"))?;
        let mut fields = meta.split(',');
        let (Some(seq), Some(usec)) = (
            fields.nth(1).and_then(|f| f.parse::<u64>().ok()),
            fields.next().and_then(|f| f.parse::<u64>().ok()),
        ) else {
            bail!("not a /dev/kmsg record: {line:?}");
        };
        if seq != next_seq {
            if records == 0 {
                bail!(
                    "the kernel log wrapped: its oldest record is number {seq}, so the {seq} records before it, from the boot on, were overwritten; the log buffer is too small for this run: raise CONFIG_LOG_BUF_SHIFT in kernel/config.fragment"
                );
            }
            bail!(
                "the kernel log lost records {next_seq} to {} (overwritten while the guest read them); the log buffer is too small for this run: raise CONFIG_LOG_BUF_SHIFT in kernel/config.fragment",
                seq.saturating_sub(1)
            );
        }
        next_seq = seq + 1;
        records += 1;
        let message = unescape_kmsg(message);
        text_bytes += message.len();
        let stamp = format!("[{:5}.{:06}] ", usec / 1_000_000, usec % 1_000_000);
        for text in message.lines() {
            out += &stamp;
            out += text;
            out.push('\n');
        }
    }
    if records == 0 {
        bail!("it is empty: the boot's messages at least should be there");
    }
    Ok(KernelLog {
        text: out,
        records,
        text_bytes,
    })
}

/// Undoes /dev/kmsg's escaping of `\` and unprintable bytes as `\xNN`
/// (a message with several lines has its newlines escaped so).
fn unescape_kmsg(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x');
        match escaped
            .then(|| message.get(i + 2..i + 4))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

#[cfg(test)]
mod tests {
    use super::parse_kmsg;

    #[test]
    fn a_whole_log_renders_as_dmesg() {
        let raw = "6,0,0,-;Linux version 6.12\n SUBSYSTEM=x\n\
                   4,1,1500000,-;WARNING: CPU: 0 PID: 1\n\
                   6,2,2000001,c;two\\x0alines \\x5c kept\n";
        assert_eq!(
            parse_kmsg(raw).unwrap().text,
            "[    0.000000] Linux version 6.12\n\
             [    1.500000] WARNING: CPU: 0 PID: 1\n\
             [    2.000001] two\n\
             [    2.000001] lines \\ kept\n"
        );
    }

    #[test]
    fn a_wrapped_or_broken_log_is_an_error() {
        let wrapped = parse_kmsg("6,7,0,-;late\n6,8,1,-;later\n").err().unwrap();
        assert!(
            wrapped.to_string().starts_with(
                "the kernel log wrapped: its oldest record is number 7, so the 7 records"
            ),
            "{wrapped}"
        );
        let gap = parse_kmsg("6,0,0,-;a\n6,1,0,-;b\n6,5,0,-;c\n")
            .err()
            .unwrap();
        assert!(
            gap.to_string()
                .starts_with("the kernel log lost records 2 to 4"),
            "{gap}"
        );
        assert!(parse_kmsg("").is_err());
        assert!(parse_kmsg("no record\n").is_err());
    }
}
