//! The kernel's own evidence: new kernel log records since the last look
//! (`/dev/kmsg`, by sequence number, so a wrapped ring buffer is noticed,
//! not miscounted), and kmemleak's reports.

use anyhow::{Context, Result};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// Reads the kernel log records newer than the last one it returned.
pub struct Kmsg {
    last_seq: Option<u64>,
}

impl Kmsg {
    /// Starts after the records that are in the log now.
    pub fn now() -> Result<Kmsg> {
        let mut k = Kmsg { last_seq: None };
        k.new_lines()?;
        Ok(k)
    }

    /// The messages of the records logged since the last call.
    pub fn new_lines(&mut self) -> Result<Vec<String>> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .context("cannot open /dev/kmsg")?;
        let mut lines = Vec::new();
        let mut record = vec![0u8; 8192];
        loop {
            // One read, one record: "prio,seq,usec,flags;message\n...".
            let n = match f.read(&mut record) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before we read them.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) => return Err(e).context("reading /dev/kmsg"),
            };
            let text = String::from_utf8_lossy(&record[..n]);
            let Some((meta, message)) = text.split_once(';') else {
                continue;
            };
            let seq: u64 = meta
                .split(',')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if self.last_seq.is_some_and(|last| seq <= last) {
                continue;
            }
            self.last_seq = Some(seq);
            lines.push(message.lines().next().unwrap_or_default().to_string());
        }
        Ok(lines)
    }
}

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// Mounts debugfs (kmemleak's and fault injection's files) where it is not
/// mounted yet, quietly: a kernel without it has neither.
pub fn mount_debugfs() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if !mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/sys/kernel/debug"))
    {
        let _ = std::process::Command::new("mount")
            .args(["-t", "debugfs", "none", "/sys/kernel/debug"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// kmemleak, if this is the debug kernel.
pub struct Kmemleak;

impl Kmemleak {
    /// `None` on a kernel without kmemleak. Forgets the suspects found so
    /// far (boot-time allocations of other subsystems).
    pub fn start() -> Result<Option<Kmemleak>> {
        mount_debugfs();
        if !Path::new(KMEMLEAK).exists() {
            return Ok(None);
        }
        std::fs::write(KMEMLEAK, "scan").context("kmemleak scan")?;
        std::fs::write(KMEMLEAK, "clear").context("kmemleak clear")?;
        Ok(Some(Kmemleak))
    }

    /// Scans (an object must be unreferenced for 5 s to be reported, and
    /// its documentation advises two scans), returns the reports that
    /// involve our modules or netlink, then forgets all of them.
    pub fn reports(&self) -> Result<Vec<String>> {
        std::thread::sleep(Duration::from_secs(6));
        for _ in 0..2 {
            std::fs::write(KMEMLEAK, "scan").context("kmemleak scan")?;
        }
        let text = std::fs::read_to_string(KMEMLEAK).context("reading kmemleak")?;
        std::fs::write(KMEMLEAK, "clear").context("kmemleak clear")?;
        Ok(netlink_rosetta::kmemleak_reports(&text).1)
    }
}
