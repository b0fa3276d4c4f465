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
/// `genl`, or `c-raw` for a C twin), as the `--modules` switch of
/// `cargo xtask vm` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kmod(pub &'static str);

impl Kmod {
    /// The name the kernel knows the module by (`kmod_raw`, `kmod_c_raw`).
    pub fn name(self) -> String {
        format!("kmod_{}", self.0.replace('-', "_"))
    }

    /// Whether it is a C twin (`c/modules/`).
    pub fn is_c(self) -> bool {
        self.0.starts_with("c-")
    }

    /// The `.ko` file, as `cargo xtask vm` exports it to the guest in
    /// `ROSETTA_KMOD_<NAME>` (`ROSETTA_KMOD_C_RAW`).
    pub fn ko(self) -> PathBuf {
        let var = format!("ROSETTA_KMOD_{}", self.0.to_uppercase().replace('-', "_"));
        match std::env::var_os(&var) {
            Some(path) => PathBuf::from(path),
            None => panic!("{var} is not set: run the VM tests with `cargo xtask test`"),
        }
    }

    /// Loads the module (`insmod`); the error carries insmod's message.
    pub fn insmod(self) -> Result<(), String> {
        self.insmod_with(&[])
    }

    /// Loads the module with parameters such as `"capacity=16"`.
    pub fn insmod_with(self, params: &[&str]) -> Result<(), String> {
        run(Command::new("insmod").arg(self.ko()).args(params))
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

/// `c/modules/kmod_c_raw.c`, kmod-raw's C twin: raw unit [`C_RAW_UNIT`].
pub const C_RAW: Kmod = Kmod("c-raw");

/// `c/modules/kmod_c_kthread.c`, kmod-kthread's C twin: raw unit
/// [`C_KTHREAD_UNIT`].
pub const C_KTHREAD: Kmod = Kmod("c-kthread");

/// `c/modules/kmod_c_genl.c`, kmod-genl's C twin: family [`C_GENL_FAMILY`].
pub const C_GENL: Kmod = Kmod("c-genl");

/// The raw unit of kmod_c_raw (a module parameter, `unit`).
pub const C_RAW_UNIT: i32 = 30;

/// The raw unit of kmod_c_kthread (a module parameter, `unit`).
pub const C_KTHREAD_UNIT: i32 = 29;

/// The generic netlink family of kmod_c_genl.
pub const C_GENL_FAMILY: &str = "c_genl";

/// The C clients (`c/clients/`), as `cargo xtask build` builds them and
/// `cargo xtask vm` exports their directory to the guest in
/// `ROSETTA_C_CLIENTS`: `c_client("raw_client")`.
pub fn c_client(name: &str) -> PathBuf {
    match std::env::var_os("ROSETTA_C_CLIENTS") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => panic!("ROSETTA_C_CLIENTS is not set: run the VM tests with `cargo xtask test`"),
    }
}

/// Unloads `module`, runs `f`, and loads the module again, even if `f`
/// panics.
pub fn with_module_unloaded(module: Kmod, f: impl FnOnce()) {
    module.rmmod().unwrap();
    assert!(!module.is_loaded());
    finally_reload(module, f);
}

/// Reloads `module` with `params` (e.g. `"coalesce=1"`), runs `f`, then
/// reloads it with its defaults, even if `f` panics. `f` must close its
/// sockets of the module's unit, or the last reload fails.
pub fn with_module_params(module: Kmod, params: &[&str], f: impl FnOnce()) {
    module.rmmod().unwrap();
    module.insmod_with(params).unwrap();
    finally_reload(module, || {
        f();
        module.rmmod().unwrap();
    });
}

/// Runs `f`, then loads `module` with its defaults, even if `f` panics.
fn finally_reload(module: Kmod, f: impl FnOnce()) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    if result.is_err() && module.is_loaded() {
        let _ = module.rmmod();
    }
    module.insmod().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Raises the default receive buffer of new sockets (as root, in the VM), so
/// that tests which put hundreds of replies in flight measure the module,
/// not the socket's default limit.
pub fn big_receive_buffers() {
    set_receive_buffers(16 << 20).unwrap_or_else(|e| panic!("{e}"));
}

/// Sets the receive buffer that new sockets get (`net.core.rmem_default`,
/// and `rmem_max` to match), as root.
pub fn set_receive_buffers(bytes: usize) -> Result<(), String> {
    for knob in [
        "/proc/sys/net/core/rmem_max",
        "/proc/sys/net/core/rmem_default",
    ] {
        std::fs::write(knob, bytes.to_string()).map_err(|e| format!("cannot write {knob}: {e}"))?;
    }
    Ok(())
}

/// Kernel log lines that fail a VM run. (kmemleak's reports are read from
/// its debugfs file instead: see [`kmemleak_reports`].)
pub const SPLATS: &[&str] = &[
    "Kernel panic",
    "Oops:",
    "BUG:",
    "WARNING:",
    "KASAN:",
    "UBSAN:",
    "possible recursive locking",
    "possible circular locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "general protection fault",
    "Call Trace:",
    "blocked for more than",
    "rcu: INFO:",
];

/// What `rosetta-harden` writes to the kernel log before it injects
/// allocation failures (its `faults` phase), and after.
pub const FAULTS_ON: &str = "rosetta-harden: fault injection on";
/// See [`FAULTS_ON`].
pub const FAULTS_OFF: &str = "rosetta-harden: fault injection off";

/// How the kernel reports a failed allocation, with a stack dump after it
/// ("Call Trace:"): between [`FAULTS_ON`] and [`FAULTS_OFF`], the expected
/// consequence of an injected failure, not a splat.
pub const ALLOCATION_FAILURES: &[&str] = &[
    "page allocation failure:",
    "vmalloc error:",
    "percpu: allocation failed",
    "FAULT_INJECTION: forcing a failure",
];

/// The lines of a kernel log that show a problem: a [`SPLATS`] line or a
/// failed KUnit test ("not ok 3 - rust_doctest_..."). Between [`FAULTS_ON`]
/// and [`FAULTS_OFF`], the "Call Trace:" that follows an
/// [`ALLOCATION_FAILURES`] report is not one (every other line still is).
pub fn splats(log: &str) -> Vec<&str> {
    let (mut injecting, mut dump_follows) = (false, false);
    log.lines()
        .filter(|l| {
            if l.contains(FAULTS_ON) {
                injecting = true;
            } else if l.contains(FAULTS_OFF) {
                (injecting, dump_follows) = (false, false);
            }
            if injecting && ALLOCATION_FAILURES.iter().any(|r| l.contains(r)) {
                dump_follows = true;
            } else if dump_follows && l.contains("Call Trace:") {
                dump_follows = false;
                return false;
            }
            SPLATS.iter().any(|s| l.contains(s)) || is_kunit_failure(l)
        })
        .collect()
}

fn is_kunit_failure(line: &str) -> bool {
    line.split("not ok ")
        .nth(1)
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// Splits the text of `/sys/kernel/debug/kmemleak` into its reports, and
/// returns how many there are and those that involve our modules or
/// netlink (a backtrace through `kmod_*`, `netlink`, `genl` or Rust code).
/// The others are boot-time allocations of other subsystems.
pub fn kmemleak_reports(text: &str) -> (usize, Vec<String>) {
    let reports: Vec<&str> = text.split("unreferenced object").skip(1).collect();
    let ours = reports
        .iter()
        .filter(|r| {
            ["kmod_", "netlink", "genl", "rust_"]
                .iter()
                .any(|k| r.contains(k))
        })
        .map(|r| format!("unreferenced object{r}"))
        .collect();
    (reports.len(), ours)
}

/// A client CLI started with `--subscribe`, its stdout read line by line
/// on a thread of its own. Killed on drop if it is still running.
pub struct Listener {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// The first line: the CLI prints it once it joined the group, so the
    /// events sent after [`Listener::start`] returns reach it.
    pub header: String,
}

impl Listener {
    /// Start `program` with `args` and wait (at most 20 s) for its first
    /// line. Panics with its stderr if it exits before.
    pub fn start(program: &std::path::Path, args: &[&str]) -> Listener {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listener = Listener {
            child,
            lines,
            header: String::new(),
        };
        match listener.next_line(std::time::Duration::from_secs(20)) {
            Some(header) => listener.header = header,
            None => {
                let _ = listener.child.kill();
                let out = listener.child.wait_with_output_now();
                panic!("{} {args:?} printed no header: {out}", program.display());
            }
        }
        listener
    }

    /// The next line of stdout, within `timeout`.
    pub fn next_line(&mut self, timeout: std::time::Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Wait (at most `timeout`) for the CLI to exit; returns its exit
    /// status (`None` if it had to be killed), the rest of its stdout and
    /// its stderr.
    pub fn finish(mut self, timeout: std::time::Duration) -> (Option<i32>, Vec<String>, String) {
        let start = std::time::Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                _ if start.elapsed() > timeout => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(std::time::Duration::from_millis(500)) {
            rest.push(line);
        }
        let stderr = self.child.wait_with_output_now();
        (status, rest, stderr)
    }
}

trait StderrNow {
    fn wait_with_output_now(&mut self) -> String;
}

impl StderrNow for std::process::Child {
    /// The child's stderr, once it has exited.
    fn wait_with_output_now(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut text = String::new();
        if let Some(mut err) = self.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A network namespace made for a test: `unshare(CLONE_NEWNET)` on a thread
/// of its own, kept by a file descriptor of it (`/proc/thread-self/ns/net`).
/// It lives as long as this, or a socket opened in it, does; then the
/// kernel dismantles it (asynchronously, on a workqueue).
pub struct Netns {
    fd: std::fs::File,
}

impl Netns {
    /// A new network namespace (root only: `CAP_SYS_ADMIN`).
    pub fn new() -> Result<Netns, String> {
        std::thread::spawn(|| {
            // SAFETY: plain syscall; it moves this thread only, which ends
            // right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "unshare(CLONE_NEWNET): {}",
                    std::io::Error::last_os_error()
                ));
            }
            std::fs::File::open("/proc/thread-self/ns/net")
                .map(|fd| Netns { fd })
                .map_err(|e| format!("cannot open /proc/thread-self/ns/net: {e}"))
        })
        .join()
        .expect("the unshare thread does not panic")
    }

    /// The namespace the test process runs in: the initial one, in the VM.
    pub fn current() -> Netns {
        let fd = std::fs::File::open("/proc/self/ns/net").expect("/proc/self/ns/net");
        Netns { fd }
    }

    /// Runs `f` on a thread inside the namespace: the sockets it opens
    /// belong to the namespace wherever they are used afterwards.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                self.enter().unwrap_or_else(|e| panic!("{e}"));
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `program` as a command that runs inside the namespace (it enters
    /// it between `fork()` and `exec()`): a client CLI, unchanged.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = self.fd.as_raw_fd();
        let mut cmd = Command::new(program);
        // SAFETY: `setns()` is a plain system call, safe between `fork()`
        // and `exec()`; `fd` stays open in the child until `exec()`.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            })
        };
        cmd
    }

    /// The namespace's inode number, which tells namespaces apart (as
    /// `readlink /proc/self/ns/net` shows it: `net:[4026531840]`).
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        self.fd.metadata().expect("fstat of a namespace").ino()
    }

    /// Moves the calling thread into the namespace (`setns()`).
    fn enter(&self) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a namespace descriptor we own; it moves
        // the calling thread only.
        if unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "setns(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            ))
        }
    }
}

/// Waits (at most `timeout`) until every network namespace but the
/// initial one has been freed, and fails if one is left: a reference that
/// somebody (a module) never dropped keeps its namespace forever.
///
/// The kernel counts the namespaces of each user (`ucounts`), and refuses a
/// new one past `/proc/sys/user/max_net_namespaces` with `ENOSPC`: with the
/// limit at 1, creating one succeeds exactly when no other is left. (That
/// probe namespace is then freed in turn.) Root only; the limit is restored.
pub fn no_namespace_left(timeout: std::time::Duration) -> Result<(), String> {
    const LIMIT: &str = "/proc/sys/user/max_net_namespaces";
    let saved = std::fs::read_to_string(LIMIT).map_err(|e| format!("cannot read {LIMIT}: {e}"))?;
    std::fs::write(LIMIT, "1").map_err(|e| format!("cannot write {LIMIT}: {e}"))?;
    let start = std::time::Instant::now();
    let result = loop {
        match Netns::new() {
            Ok(_probe) => break Ok(()),
            Err(e) if !e.contains("No space left") => break Err(e),
            Err(_) if start.elapsed() > timeout => {
                break Err(format!(
                    "a network namespace is still there {:.1} s after its last user went: a reference was leaked",
                    timeout.as_secs_f64()
                ))
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    std::fs::write(LIMIT, saved.trim()).map_err(|e| format!("cannot restore {LIMIT}: {e}"))?;
    result
}

/// Keeps a kthread module's thread off the CPU while it lives: the thread
/// and the caller are pinned to CPU 0, and the caller runs `SCHED_FIFO`, so
/// the kernel thread (`SCHED_OTHER`) runs only when the caller sleeps.
pub struct HoldOff {
    kthread: libc::pid_t,
}

impl HoldOff {
    /// The thread of `kmod`, which bears the module's name.
    pub fn thread_of(kmod: Kmod) -> HoldOff {
        let name = kmod.name();
        let kthread = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
            })
            .unwrap_or_else(|| panic!("the {name} thread runs"));
        set_affinity(kthread, Some(0));
        set_affinity(0, Some(0));
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain syscall; `param` is a valid sched_param.
        let ret = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        assert_eq!(
            ret,
            0,
            "sched_setscheduler: {}",
            std::io::Error::last_os_error()
        );
        HoldOff { kthread }
    }
}

impl Drop for HoldOff {
    fn drop(&mut self) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall; `param` is a valid sched_param.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        set_affinity(0, None);
        // The thread is gone if the module was unloaded meanwhile.
        if std::path::Path::new(&format!("/proc/{}", self.kthread)).exists() {
            set_affinity(self.kthread, None);
        }
    }
}

/// Pins `pid` (0: the calling thread) to `cpu`, or lets it run anywhere.
pub fn set_affinity(pid: libc::pid_t, cpu: Option<usize>) {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for c in (0..cpus).filter(|c| cpu.is_none_or(|only| only == *c)) {
        // SAFETY: `c` is below the number of CPUs, within the set.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let ret = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(
        ret,
        0,
        "sched_setaffinity({pid}): {}",
        std::io::Error::last_os_error()
    );
}

/// `text` with the number after each `word ` replaced by `N`: for
/// comparing outputs whose port ids or sequence numbers differ.
pub fn mask(text: &str, word: &str) -> String {
    let needle = format!("{word} ");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let (head, tail) = rest.split_at(at + needle.len());
        out += head;
        let digits = tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push('N');
        }
        rest = &tail[digits..];
    }
    out + rest
}

/// A client CLI of the workspace, built next to the running test binary
/// (`target/<profile>/deps/..`): `workspace_bin("user-raw")`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo xtask test`",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_injected_allocation_failure_dump_is_no_splat_between_the_markers() {
        let dump = "[ 9.1] harden: vmalloc error: size 8192, failed to allocate pages, mode:0xcc0(GFP_KERNEL)\n\
                    [ 9.1] CPU: 1 UID: 0 PID: 80 Comm: harden Not tainted 6.12.57 #1\n\
                    [ 9.1] Call Trace:\n\
                    [ 9.1] BUG: KASAN: use-after-free in module_put\n\
                    [ 9.1] Call Trace:\n";
        // Outside the markers, as before: both traces and the BUG.
        assert_eq!(splats(dump).len(), 3);
        let marked = format!("{FAULTS_ON}\n{dump}{FAULTS_OFF}\n{dump}");
        let found = splats(&marked);
        // Inside: the BUG and its own trace; after the end marker, all three.
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].contains("BUG: KASAN"));
    }
}
