//! Small helpers shared by the xtask commands: paths, running commands,
//! progress output, hashing.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Where expensive outputs live, outside the clone: `$NETLINK_ROSETTA_CACHE`,
/// else `$XDG_CACHE_HOME/netlink-rosetta`, else `~/.cache/netlink-rosetta`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("NETLINK_ROSETTA_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("netlink-rosetta"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set: set NETLINK_ROSETTA_CACHE")?;
    Ok(PathBuf::from(home).join(".cache/netlink-rosetta"))
}

/// Prints a step of a long command, so the user sees what is going on.
pub fn step(msg: impl AsRef<str>) {
    eprintln!("==> {}", msg.as_ref());
}

/// Renders a command line for messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited output; fails, naming it, unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output; fails with its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a long command with its output going to `log`, printing a progress
/// line every `every`: elapsed time, lines so far, and the latest line. On
/// failure, shows the end of the log.
pub fn run_logged(cmd: &mut Command, what: &str, log: &Path, every: Duration) -> Result<()> {
    let start = Instant::now();
    let mut file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    writeln!(file, "$ {}", show(cmd))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    // Merge stderr into the same stream through a thread.
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut lines, mut last, mut next) = (0u64, String::new(), start + every);
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                writeln!(file, "{line}")?;
                lines += 1;
                last = line;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next {
            next += every;
            eprintln!(
                "    [{}] {what}: {lines} lines of output, latest: {}",
                elapsed(start),
                last.trim()
            );
        }
    }
    let status = child.wait()?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("    | {line}");
        }
        bail!("{what} failed ({status}); full log: {}", log.display());
    }
    eprintln!("    [{}] {what}: done", elapsed(start));
    Ok(())
}

/// `m:ss` since `start`.
pub fn elapsed(start: Instant) -> String {
    let s = start.elapsed().as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// A SHA-256 over named parts, for cache keys.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn add(&mut self, name: &str, bytes: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Adds every file under `dir`, in sorted order, with its relative path.
    pub fn add_dir(&mut self, dir: &Path) -> Result<()> {
        for file in files_under(dir)? {
            let rel = file.strip_prefix(dir)?.to_string_lossy().into_owned();
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            self.add(&rel, &bytes);
        }
        Ok(())
    }

    /// The first 16 hex digits of the digest.
    pub fn short(self) -> String {
        self.0
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Every regular file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Takes the project-wide lock for the duration of one xtask command: two
/// commands must not build the same kernel tree or module directory, or boot
/// VMs from a tree being rebuilt, at the same time. Waits, saying so, when
/// another command holds it.
pub fn lock() -> Result<std::fs::File> {
    let dir = cache_dir()?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("xtask.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            step(format!(
                "waiting for another `cargo xtask` to finish (lock {})",
                path.display()
            ));
            file.lock()?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    Ok(file)
}

/// Runs `cargo <args> --no-run --quiet --message-format=json` and returns the
/// executables it built whose target kind is `kind` (`test`, `bench`).
pub fn cargo_executables(args: &[&str], kind: &str) -> Result<Vec<PathBuf>> {
    Ok(cargo_targets(args, kind)?
        .into_iter()
        .map(|t| t.executable)
        .collect())
}

/// An executable cargo built, and the source file of its target.
pub struct CargoTarget {
    /// The target's root source file, relative to the workspace root
    /// (`tests/raw_client.rs`, `user-genl/tests/vm.rs`).
    pub src: String,
    pub executable: PathBuf,
}

/// Like [`cargo_executables`], with each executable's source file.
pub fn cargo_targets(args: &[&str], kind: &str) -> Result<Vec<CargoTarget>> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root())
        .args(args)
        .args(["--no-run", "--quiet", "--message-format=json"]);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(&cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed:\n{}",
            show(&cmd),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let root = root();
    let mut targets = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let kinds = msg["target"]["kind"].as_array();
        if let (true, Some(exe)) = (
            kinds.is_some_and(|k| k.iter().any(|k| k == kind)),
            msg["executable"].as_str(),
        ) {
            let src = Path::new(msg["target"]["src_path"].as_str().unwrap_or_default());
            targets.push(CargoTarget {
                src: src.strip_prefix(&root).unwrap_or(src).display().to_string(),
                executable: PathBuf::from(exe),
            });
        }
    }
    Ok(targets)
}
