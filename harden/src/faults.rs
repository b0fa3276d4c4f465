//! Fault injection, the way syzkaller does it: writing n to
//! `/proc/thread-self/fail-nth` makes the n-th allocation of the thread's
//! next system calls fail (every slab and page allocation counts; the phase
//! turns off failslab's and fail_page_alloc's exemptions, so that
//! `GFP_KERNEL` allocations fail too), and reading it back after the call
//! tells whether the failure was injected (0) or the call made fewer than n
//! allocations (not 0).
//!
//! For every path, n goes 1, 2, ... until a request (or a load) goes
//! through with nothing injected:
//!
//! - **plain**, **ack**, **batched** (three messages in one datagram, the
//!   second with `NLM_F_ACK`) and, for genl, **attrs** (ECHO with two `MSG`
//!   attributes, the second, of 2 KiB, wins): the n-th allocation of the
//!   `sendmsg()` fails. Every message must end as its answers, as an
//!   `NLMSG_ERROR` ENOMEM in their place, or lost with the loss reported to
//!   the client (`sendmsg()` failed, or `recvmsg()` reported ENOBUFS).
//!   Silence (nothing within [`SILENCE`], nothing reported) is a failure, as
//!   is any other answer. Then a request without faults must echo on the
//!   same socket, with nothing stray before its answer. kmod-kthread's
//!   replies come from its kernel thread, which fail-nth (per task) does
//!   not reach: there, only its input callback's allocations fail.
//! - **load**: `init_module()` of the module's image (read beforehand, so
//!   that the shared filesystem stays out of the count) with the n-th
//!   allocation failing. Each attempt must either load a working module
//!   (it echoes; then it is unloaded) or fail with an errno and leave
//!   nothing behind: not in `/proc/modules`, its unit not served (`socket()`
//!   fails with EPROTONOSUPPORT) or its family unknown, no kernel thread
//!   `kmod_kthread`. Meanwhile, for a raw unit, a second thread keeps
//!   opening sockets on the unit ([`Prober`]): a socket it opened during a
//!   load that then failed holds a reference (`try_module_get()` in
//!   `netlink_create()`) on a module that the failed load freed. Such a
//!   socket is kept open until the end of the run ([`close_pinned`]) and
//!   fails the phase. Quick mode does not try every n for the loads (a
//!   load makes hundreds of allocations): 8 spread over the loader, then
//!   the last [`QUICK_LOAD_TAIL`] before the load goes through, which cover
//!   the module's `init` and what follows it.
//!
//!   The guest kernel has one CPU and no preemption: the prober runs only
//!   when the loading thread sleeps, and a fail-nth failure in `init` comes
//!   without a sleep after the socket's creation. So, for a raw unit, the
//!   path also makes [`killed_loads`]: a child process loads the module
//!   and the parent kills it (SIGKILL) as soon as its own `socket()` on the
//!   unit succeeds, i.e. while `init` sleeps with the unit served. A kill
//!   that lands there fails `init` (EINTR from `kthread_create_on_node()`'s
//!   killable wait, for kmod-kthread): the same checks apply.
//!
//! The kernel log must show no splat. The allocator's own reports of the
//! injected failures ("vmalloc error: ...", "page allocation failure: ..."
//! and the stack dump that follows) are expected: the phase writes
//! [`netlink_rosetta::FAULTS_ON`] and `FAULTS_OFF` to the kernel log around
//! its work, and [`netlink_rosetta::splats`] skips those dumps between the
//! two. Leaks are kmemleak's, checked after the module's phases.

use crate::clients::{kmod, Module};
use crate::klog::Kmsg;
use crate::stress::{find_task, rmmod_eventually};
use anyhow::{Context, Result};
use proto::{ECHO_MSG_TYPE, GENL_ATTR_MSG, GENL_CMD_ECHO, GENL_FAMILY_NAME, GENL_FAMILY_VERSION};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use user_raw::{messages, parse_error, GenlMsgHdr, NlMsgHdr, Socket, NLMSG_ERROR};

/// How long a client waits for an owed answer before calling it silence.
pub const SILENCE: Duration = Duration::from_secs(3);
/// After an ENOBUFS report, how long to wait for answers still on their way.
const QUIET: Duration = Duration::from_millis(300);
/// A path stops after this many failed attempts.
const MAX_FAILURES: usize = 10;
/// Quick mode's loads: this many n before the first that goes through.
pub const QUICK_LOAD_TAIL: u32 = 64;
/// A request or load that still fails after this many more allocations
/// than counted is a failure (it never goes through).
const RUNAWAY: u32 = 2000;

/// The paths, as the report names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Plain,
    Ack,
    Batched,
    Attrs,
    Load,
}

impl Path {
    pub const ALL: [Path; 5] = [
        Path::Plain,
        Path::Ack,
        Path::Batched,
        Path::Attrs,
        Path::Load,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Path::Plain => "plain",
            Path::Ack => "ack",
            Path::Batched => "batched",
            Path::Attrs => "attrs",
            Path::Load => "load",
        }
    }

    /// Whether `module` has this path: attrs is genl's.
    fn applies(self, module: Module) -> bool {
        self != Path::Attrs || module.unit().is_none()
    }
}

/// The faults phase for `module`: every path, then the module loaded again
/// with its defaults. Failures are in the value's `failures`, next to the
/// counts.
pub fn run(module: Module, quick: bool) -> Result<Value> {
    let start = Instant::now();
    let fail = FailNth::open()?;
    crate::klog::mount_debugfs();
    let _knobs = Knobs::set(&[
        ("/sys/kernel/debug/failslab/ignore-gfp-wait", "N"),
        ("/sys/kernel/debug/failslab/verbose", "0"),
        ("/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N"),
        ("/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N"),
        ("/sys/kernel/debug/fail_page_alloc/min-order", "0"),
        ("/sys/kernel/debug/fail_page_alloc/verbose", "0"),
        // A socket() on a unit nobody serves runs modprobe otherwise (our
        // modules are not installed): the load checks and the prober make
        // thousands of them.
        ("/proc/sys/kernel/modprobe", ""),
    ])?;
    let _marker = Marker::on()?;
    let mut kmsg = Kmsg::now()?;
    let mut paths = Map::new();
    let mut failures = Vec::new();
    for path in Path::ALL.into_iter().filter(|p| p.applies(module)) {
        let path_start = Instant::now();
        let mut report = match path {
            Path::Load => load_path(&fail, module, quick, &mut kmsg)?,
            _ => echo_path(&fail, module, path, &mut kmsg)?,
        };
        report.seconds = path_start.elapsed().as_secs_f64();
        println!("    {:<8} {}", path.name(), report.summary());
        for f in &report.failures {
            println!("      FAILED {f}");
            failures.push(format!("{}: {f}", path.name()));
        }
        paths.insert(path.name().into(), report.to_json());
    }
    if !kmod(module).is_loaded() {
        kmod(module).insmod().map_err(anyhow::Error::msg)?;
    }
    Ok(json!({
        "paths": paths,
        "failures": failures,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}

/// What one path found.
#[derive(Default)]
struct PathReport {
    /// Attempts whose failure was injected.
    injected: u64,
    /// What those attempts ended as ("NLMSG_ERROR ENOMEM", "loaded", ...).
    outcomes: BTreeMap<String, u64>,
    /// Allocations of the request (load) that went through with nothing
    /// injected: the last n tried, minus one.
    allocations: Option<u32>,
    /// The n values tried, in order, as ranges ("1..=40").
    tried: Vec<(u32, u32)>,
    /// Load path: the last n whose load failed (the allocations after it,
    /// up to `allocations`, come after the module's init).
    last_refused: Option<u32>,
    /// The allocator's expected reports in the kernel log.
    allocation_failure_reports: u64,
    failures: Vec<String>,
    /// Load path: what the prober found.
    prober: Option<Value>,
    /// Load path: what the killed loads ended as.
    killed: BTreeMap<String, u64>,
    seconds: f64,
}

impl PathReport {
    fn tried(&mut self, n: u32) {
        match self.tried.last_mut() {
            Some((_, last)) if *last + 1 == n => *last = n,
            _ => self.tried.push((n, n)),
        }
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    fn stopped(&self) -> bool {
        self.failures.len() >= MAX_FAILURES
    }

    /// Reads the kernel log since the last look: splats are failures (of
    /// the attempt named `attempt`, if given).
    fn check_log(&mut self, kmsg: &mut Kmsg, attempt: Option<&str>) -> Result<()> {
        let lines = kmsg.new_lines()?;
        self.allocation_failure_reports += lines
            .iter()
            .filter(|l| {
                netlink_rosetta::ALLOCATION_FAILURES
                    .iter()
                    .any(|r| l.contains(r))
            })
            .count() as u64;
        // These lines lie between the phase's two markers.
        let log = format!("{}\n{}", netlink_rosetta::FAULTS_ON, lines.join("\n"));
        for splat in netlink_rosetta::splats(&log) {
            match attempt {
                Some(a) => self.fail(format!("{a}: kernel: {splat}")),
                None => self.fail(format!("kernel: {splat}")),
            }
        }
        Ok(())
    }

    fn tried_text(&self) -> String {
        self.tried
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}..={b}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn summary(&self) -> String {
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let mut s = format!(
            "{} injected (n = {}; {} allocations without faults): {}",
            self.injected,
            self.tried_text(),
            self.allocations
                .map_or_else(|| "?".to_string(), |a| a.to_string()),
            outcomes.join(", "),
        );
        if let Some(n) = self.last_refused {
            s += &format!("; the last load refused: n={n}");
        }
        if let Some(p) = &self.prober {
            s += &format!("; prober: {p}");
        }
        if !self.killed.is_empty() {
            let killed: Vec<String> = self
                .killed
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            s += &format!("; loads killed once a client got in: {}", killed.join(", "));
        }
        s += &format!("; {:.1} s", self.seconds);
        s
    }

    fn to_json(&self) -> Value {
        json!({
            "injected": self.injected,
            "outcomes": self.outcomes,
            "allocations": self.allocations,
            "n_tried": self.tried_text(),
            "last_refused": self.last_refused,
            "allocation_failure_reports": self.allocation_failure_reports,
            "prober": self.prober,
            "killed_loads": self.killed,
            "failures": self.failures,
            "seconds": self.seconds,
        })
    }
}

// ---------------------------------------------------------------------------
// fail-nth and the knobs
// ---------------------------------------------------------------------------

/// `/proc/thread-self/fail-nth` of the calling thread, opened once, so that
/// arming and reading it allocate nothing in the kernel.
struct FailNth(File);

impl FailNth {
    fn open() -> Result<FailNth> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .context(
                "opening /proc/thread-self/fail-nth: this kernel has no fault injection \
                 (CONFIG_FAULT_INJECTION: use the debug kernel)",
            )?;
        Ok(FailNth(file))
    }

    /// Runs `call` with the n-th allocation of this thread failing; returns
    /// its result and whether the failure was injected. Nothing may run
    /// between arming and `call`, or between `call` and the read: page
    /// faults and system calls would count too.
    fn inject<T>(&self, n: u32, call: impl FnOnce() -> T) -> Result<(T, bool)> {
        let (result, left) = self.armed(n, call)?;
        Ok((result, left == 0))
    }

    /// Runs `call` with fail-nth armed so far away that nothing fails;
    /// returns its result and what fail-nth went down to.
    fn count<T>(&self, call: impl FnOnce() -> T) -> Result<(T, u32)> {
        let (result, left) = self.armed(u32::MAX, call)?;
        anyhow::ensure!(left != 0, "a call made 4 billion allocations?");
        Ok((result, left))
    }

    /// Runs `call` with fail-nth armed with `n`; returns its result and
    /// fail-nth's value afterwards.
    fn armed<T>(&self, n: u32, call: impl FnOnce() -> T) -> Result<(T, u32)> {
        let armed = n.to_string();
        let mut left = [0u8; 16];
        self.0
            .write_at(armed.as_bytes(), 0)
            .context("arming fail-nth")?;
        let result = call();
        let read = self.0.read_at(&mut left, 0);
        // Disarm even if the read failed: the next system call must not fail.
        self.0.write_at(b"0", 0).context("disarming fail-nth")?;
        let read = read.context("reading fail-nth back")?;
        let left: u32 = std::str::from_utf8(&left[..read])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .with_context(|| format!("fail-nth read back {:?}", &left[..read]))?;
        Ok((result, left))
    }
}

/// Files (debugfs knobs, sysctls) set for the phase, restored on drop.
struct Knobs(Vec<(&'static str, String)>);

impl Knobs {
    fn set(knobs: &[(&'static str, &str)]) -> Result<Knobs> {
        let mut saved = Knobs(Vec::new());
        for &(path, value) in knobs {
            let old = std::fs::read_to_string(path).with_context(|| {
                format!("reading {path}: the debug kernel has the fault-injection knobs")
            })?;
            std::fs::write(path, format!("{value}\n"))
                .with_context(|| format!("writing {value:?} to {path}"))?;
            saved.0.push((path, old.trim_end().to_string()));
        }
        Ok(saved)
    }
}

impl Drop for Knobs {
    fn drop(&mut self) {
        for (path, old) in self.0.iter().rev() {
            if let Err(e) = std::fs::write(path, format!("{old}\n")) {
                println!("    warning: could not restore {path} to {old:?}: {e}");
            }
        }
    }
}

/// The markers around the phase in the kernel log, between which
/// [`netlink_rosetta::splats`] expects allocation-failure reports.
struct Marker;

impl Marker {
    fn on() -> Result<Marker> {
        kmsg_write(netlink_rosetta::FAULTS_ON)?;
        Ok(Marker)
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        if let Err(e) = kmsg_write(netlink_rosetta::FAULTS_OFF) {
            println!("    warning: {e:#}");
        }
    }
}

fn kmsg_write(line: &str) -> Result<()> {
    std::fs::write("/dev/kmsg", format!("{line}\n"))
        .with_context(|| format!("writing {line:?} to /dev/kmsg"))
}

/// errno's name, for the outcomes.
fn errno(e: i32) -> String {
    match crate::fuzz::errno_name(e) {
        "other" => match e {
            libc::EPROTONOSUPPORT => "EPROTONOSUPPORT".into(),
            libc::EFAULT => "EFAULT".into(),
            libc::EEXIST => "EEXIST".into(),
            libc::EBUSY => "EBUSY".into(),
            libc::ENOEXEC => "ENOEXEC".into(),
            libc::ENOSPC => "ENOSPC".into(),
            _ => format!("errno {e}"),
        },
        name => name.into(),
    }
}

fn os_errno(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), errno)
}

// ---------------------------------------------------------------------------
// The echo paths
// ---------------------------------------------------------------------------

/// Where requests go: a raw unit, or the genl family (by id).
#[derive(Clone, Copy)]
enum Dest {
    Unit(i32),
    Family(u16),
}

impl Dest {
    fn of(module: Module) -> Result<Dest> {
        Ok(match module.unit() {
            Some(unit) => Dest::Unit(unit),
            None => {
                let mut sock = Socket::connect_genl()?;
                Dest::Family(sock.resolve_family(GENL_FAMILY_NAME)?.id)
            }
        })
    }

    fn connect(self) -> Result<Socket> {
        Ok(match self {
            Dest::Unit(unit) => Socket::connect(unit)?,
            Dest::Family(_) => Socket::connect_genl()?,
        })
    }
}

/// Where one message of a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Its echo is owed.
    Echo,
    /// Echoed; its ack is owed.
    Ack,
    Answered,
    /// An `NLMSG_ERROR` with this errno came instead.
    Errored(i32),
    /// Never answered, the loss reported (ENOBUFS).
    Lost,
}

/// One message sent, and what it is owed.
struct Owed {
    seq: u32,
    ack: bool,
    /// What its echo must carry: the payload, or genl's `MSG` (no NUL).
    echo: Vec<u8>,
    state: State,
}

impl Owed {
    fn pending(&self) -> bool {
        matches!(self.state, State::Echo | State::Ack)
    }

    fn describe(&self) -> String {
        match self.state {
            State::Echo if self.ack => format!("echo and ack of seq {}", self.seq),
            State::Echo => format!("echo of seq {}", self.seq),
            _ => format!("ack of seq {}", self.seq),
        }
    }

    /// Takes one received message for this request.
    fn take(&mut self, dest: Dest, hdr: &NlMsgHdr, body: &[u8]) -> Result<(), String> {
        let seq = self.seq;
        if hdr.nlmsg_type == NLMSG_ERROR {
            let err = parse_error(hdr, body).map_err(|e| format!("bad NLMSG_ERROR: {e}"))?;
            self.state = match (self.state, -err.error) {
                (State::Ack, 0) => State::Answered,
                (State::Echo, e @ (libc::ENOMEM | libc::ENOBUFS)) => State::Errored(e),
                (state, 0) => return Err(format!("an ack of seq {seq} while {state:?} was owed")),
                (state, e) => {
                    return Err(format!(
                        "NLMSG_ERROR {} (extack {:?}) for seq {seq} while {state:?} was owed",
                        errno(e),
                        err.extack
                    ))
                }
            };
            return Ok(());
        }
        if self.state != State::Echo {
            return Err(format!(
                "an echo of seq {seq} (type {:#x}) while {:?} was owed",
                hdr.nlmsg_type, self.state
            ));
        }
        let echoed = match dest {
            Dest::Unit(_) if hdr.nlmsg_type == ECHO_MSG_TYPE => body.to_vec(),
            Dest::Family(family) if hdr.nlmsg_type == family => {
                let reply = user_raw::GenlMsg::parse(*hdr, body).map_err(|e| e.to_string())?;
                if reply.genl.cmd != GENL_CMD_ECHO {
                    return Err(format!("genl command {} for seq {seq}", reply.genl.cmd));
                }
                user_raw::find_attr(&reply.attrs, GENL_ATTR_MSG)
                    .map_err(|e| e.to_string())?
                    .ok_or(format!("the genl echo of seq {seq} has no MSG"))?
                    .nul_string()
                    .map_err(|e| e.to_string())?
                    .to_vec()
            }
            _ => return Err(format!("type {:#x} for seq {seq}", hdr.nlmsg_type)),
        };
        if echoed != self.echo {
            return Err(format!(
                "the echo of seq {seq} carries {} bytes, not the {} sent",
                echoed.len(),
                self.echo.len()
            ));
        }
        self.state = if self.ack {
            State::Ack
        } else {
            State::Answered
        };
        Ok(())
    }
}

/// The datagram of one request on `path`, and its messages.
fn request(dest: Dest, path: Path, seq: &mut u32, tag: &str) -> Result<(Vec<u8>, Vec<Owed>)> {
    // (ack, MSG attributes before the one that is echoed)
    let messages: &[(bool, bool)] = match path {
        Path::Plain => &[(false, false)],
        Path::Ack => &[(true, false)],
        Path::Batched => &[(false, false), (true, false), (false, false)],
        Path::Attrs => &[(false, true)],
        Path::Load => unreachable!("not an echo path"),
    };
    let mut datagram = Vec::new();
    let mut owed = Vec::new();
    for (i, &(ack, extra_attr)) in messages.iter().enumerate() {
        *seq += 1;
        let mut text = format!("{tag} #{i}").into_bytes();
        if extra_attr {
            // The second MSG wins: 2 KiB, so the reply is larger too.
            text.resize(2048, b'x');
        }
        let flags = user_raw::NLM_F_REQUEST | if ack { user_raw::NLM_F_ACK } else { 0 };
        match dest {
            Dest::Unit(_) => user_raw::encode(&mut datagram, ECHO_MSG_TYPE, flags, *seq, &text)?,
            Dest::Family(family) => {
                let mut attrs = Vec::new();
                if extra_attr {
                    user_raw::put_nul_string(&mut attrs, GENL_ATTR_MSG, b"the first MSG")?;
                }
                user_raw::put_nul_string(&mut attrs, GENL_ATTR_MSG, &text)?;
                let echo = GenlMsgHdr::new(GENL_CMD_ECHO, GENL_FAMILY_VERSION);
                user_raw::genl::encode_genl(&mut datagram, family, flags, *seq, echo, &attrs)?;
            }
        }
        owed.push(Owed {
            seq: *seq,
            ack,
            echo: text,
            state: State::Echo,
        });
    }
    Ok((datagram, owed))
}

/// Receives the answers to `owed`; whether `recvmsg()` reported ENOBUFS.
/// Err: silence, or an answer that is not one of those owed.
fn collect(sock: &mut Socket, dest: Dest, owed: &mut [Owed], buf: &mut [u8]) -> Result<bool> {
    let mut enobufs = false;
    sock.set_timeout(SILENCE)?;
    while owed.iter().any(Owed::pending) {
        let n = match sock.recv(buf) {
            Ok(n) => n,
            Err(user_raw::Error::Overrun) => {
                enobufs = true;
                sock.set_timeout(QUIET)?;
                continue;
            }
            Err(user_raw::Error::Timeout { .. }) if enobufs => {
                for o in owed.iter_mut().filter(|o| o.pending()) {
                    o.state = State::Lost;
                }
                break;
            }
            Err(user_raw::Error::Timeout { .. }) => {
                let pending: Vec<String> = owed
                    .iter()
                    .filter(|o| o.pending())
                    .map(Owed::describe)
                    .collect();
                anyhow::bail!(
                    "silence: the {} never came within {} s, and no error was reported",
                    pending.join(", "),
                    SILENCE.as_secs()
                );
            }
            Err(e) => return Err(e).context("recvmsg"),
        };
        for msg in messages(&buf[..n]) {
            let (hdr, body) = msg.context("the kernel sent a malformed message")?;
            let o = owed
                .iter_mut()
                .find(|o| o.seq == hdr.nlmsg_seq)
                .with_context(|| {
                    format!("an answer to a request not (or no longer) owed: {hdr:?}")
                })?;
            o.take(dest, &hdr, body).map_err(anyhow::Error::msg)?;
        }
    }
    Ok(enobufs)
}

/// One path: n = 1, 2, ... until a request goes through with nothing
/// injected.
fn echo_path(fail: &FailNth, module: Module, path: Path, kmsg: &mut Kmsg) -> Result<PathReport> {
    let dest = Dest::of(module)?;
    let mut report = PathReport::default();
    let mut buf = vec![0u8; user_raw::RECV_BUF_LEN];
    let mut n = 0;
    loop {
        n += 1;
        report.tried(n);
        let tag = format!("faults {} {} n={n}", module.name(), path.name());
        let attempt = echo_attempt(fail, dest, path, n, &tag, &mut buf)?;
        if attempt.injected {
            report.injected += 1;
        }
        match attempt.verdict {
            Ok(_) if !attempt.injected => {
                report.allocations = Some(n - 1);
                break;
            }
            Ok(outcome) => *report.outcomes.entry(outcome).or_default() += 1,
            Err(e) => report.fail(format!("n={n}: {e:#}")),
        }
        if report.stopped() {
            report.fail(format!("stopped after {MAX_FAILURES} failures"));
            break;
        }
        if n >= RUNAWAY {
            report.fail(format!(
                "still injecting at n={n}: the request never went through"
            ));
            break;
        }
    }
    report.check_log(kmsg, None)?;
    Ok(report)
}

struct Attempt {
    injected: bool,
    /// What the request ended as, or why that is wrong.
    verdict: Result<String>,
}

/// One request on a fresh socket with the n-th allocation of its
/// `sendmsg()` failing, then one without faults.
fn echo_attempt(
    fail: &FailNth,
    dest: Dest,
    path: Path,
    n: u32,
    tag: &str,
    buf: &mut [u8],
) -> Result<Attempt> {
    let mut sock = dest.connect()?;
    let mut seq = 0;
    let (datagram, mut owed) = request(dest, path, &mut seq, tag)?;
    let (sent, injected) = fail.inject(n, || sock.send_datagram(&datagram))?;
    let verdict = (|| -> Result<String> {
        let mut effects = Vec::new();
        match sent {
            Ok(()) => {
                if collect(&mut sock, dest, &mut owed, buf)? {
                    effects.push("recvmsg ENOBUFS".to_string());
                }
                let mut errors: Vec<String> = owed
                    .iter()
                    .filter_map(|o| match o.state {
                        State::Errored(e) => Some(format!("NLMSG_ERROR {}", errno(e))),
                        _ => None,
                    })
                    .collect();
                errors.dedup();
                effects.extend(errors);
            }
            Err(user_raw::Error::Os { source, .. })
                if matches!(source.raw_os_error(), Some(libc::ENOMEM | libc::ENOBUFS)) =>
            {
                effects.push(format!("sendmsg {}", os_errno(&source)));
            }
            Err(e) => anyhow::bail!("sendmsg: {e}"),
        }
        if effects.is_empty() {
            effects.push("no visible effect".into());
        } else if !injected {
            anyhow::bail!("nothing was injected, yet: {}", effects.join(" + "));
        }
        // The next request, without faults, must echo, and nothing stray
        // may come first.
        let (datagram, mut owed) = request(dest, Path::Plain, &mut seq, &format!("{tag} after"))?;
        sock.send_datagram(&datagram)
            .context("the request after, without faults")?;
        if collect(&mut sock, dest, &mut owed, buf).context("the request after, without faults")? {
            anyhow::bail!("the request after, without faults: recvmsg reported ENOBUFS");
        }
        if owed.iter().any(|o| o.state != State::Answered) {
            anyhow::bail!("the request after, without faults, was answered with an error");
        }
        Ok(effects.join(" + "))
    })();
    Ok(Attempt { injected, verdict })
}

// ---------------------------------------------------------------------------
// The load path
// ---------------------------------------------------------------------------

/// Sockets that pinned a module whose load then failed: closing one
/// `module_put()`s freed memory, so they stay open until [`close_pinned`].
static PINNED: Mutex<Vec<(String, OwnedFd)>> = Mutex::new(Vec::new());

/// `init_module(2)` of an image in memory, with no parameters.
fn init_module(image: &[u8]) -> std::io::Result<()> {
    // SAFETY: `image` is valid for reads of its length, and the parameters
    // are a NUL-terminated string; both outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            c"".as_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn load_path(fail: &FailNth, module: Module, quick: bool, kmsg: &mut Kmsg) -> Result<PathReport> {
    let kmod = kmod(module);
    let image =
        std::fs::read(kmod.ko()).with_context(|| format!("reading {}", kmod.ko().display()))?;
    if kmod.is_loaded() {
        rmmod_eventually(module)?;
    }
    let mut report = PathReport::default();
    let counted = count_allocations(fail, &image, module)?;
    let samples: Vec<u32> = if quick {
        let mut s: Vec<u32> = (0..8).map(|i| 1 + i * counted / 8).collect();
        s.dedup();
        s.retain(|&n| n + QUICK_LOAD_TAIL < counted);
        s
    } else {
        Vec::new()
    };
    let tail_start = if quick {
        counted.saturating_sub(QUICK_LOAD_TAIL).max(1)
    } else {
        1
    };
    let pinned_before = PINNED.lock().unwrap().len();
    let prober = module.unit().map(Prober::start);
    let mut prober_in_loads = 0u64;
    let mut loads = 0u64;
    let result = (|| -> Result<()> {
        let mut schedule = samples.into_iter().chain(tail_start..);
        loop {
            let n = schedule.next().expect("endless");
            report.tried(n);
            let attempt = load_attempt(fail, module, &image, n, prober.as_ref())?;
            if attempt.injected {
                report.injected += 1;
            }
            if attempt.loaded {
                loads += 1;
                prober_in_loads += u64::from(attempt.prober_got_in);
            }
            let mut verdict = attempt.verdict;
            report.check_log(kmsg, Some(&format!("n={n}")))?;
            match verdict.as_mut() {
                Ok(_) if !attempt.injected && n >= tail_start => {
                    report.allocations = Some(n - 1);
                    return Ok(());
                }
                Ok(outcome) => {
                    if !attempt.loaded {
                        report.last_refused = Some(n);
                    }
                    if attempt.injected {
                        *report.outcomes.entry(std::mem::take(outcome)).or_default() += 1;
                    }
                }
                Err(e) => {
                    if !attempt.loaded {
                        report.last_refused = Some(n);
                    }
                    report.fail(format!("n={n}: {e:#}"));
                }
            }
            if report.stopped() {
                report.fail(format!("stopped after {MAX_FAILURES} failures"));
                return Ok(());
            }
            if n >= counted.saturating_add(RUNAWAY) {
                report.fail(format!(
                    "still injecting at n={n}, {RUNAWAY} past the {counted} allocations counted"
                ));
                return Ok(());
            }
        }
    })();
    drop(prober);
    let result = result.and_then(|()| match module.unit() {
        Some(unit) if !report.stopped() => {
            let count = if quick { 3 } else { 20 };
            killed_loads(module, unit, &image, count, &mut report, kmsg)
        }
        _ => Ok(()),
    });
    if !kmod.is_loaded() {
        kmod.insmod().map_err(anyhow::Error::msg)?;
    }
    result?;
    if quick && report.last_refused.is_none_or(|n| n < tail_start) {
        report.fail(format!(
            "no load failed in the quick tail (n >= {tail_start}): it does not reach the \
             module's init; widen QUICK_LOAD_TAIL"
        ));
    }
    if module.unit().is_some() {
        report.prober = Some(json!({
            "loads": loads,
            "loads_it_got_into": prober_in_loads,
            "sockets_pinning_freed_modules": PINNED.lock().unwrap().len() - pinned_before,
        }));
    }
    Ok(report)
}

/// The allocations of one load without faults (fail-nth, armed with
/// `u32::MAX`, goes down by one per allocation); leaves the module
/// unloaded.
fn count_allocations(fail: &FailNth, image: &[u8], module: Module) -> Result<u32> {
    let (loaded, left) = fail.count(|| init_module(image))?;
    loaded.with_context(|| format!("loading {} without faults", kmod(module).name()))?;
    let works = check_loaded(module);
    rmmod_eventually(module)?;
    works.context("the load without faults")?;
    Ok(u32::MAX - left)
}

struct LoadAttempt {
    injected: bool,
    loaded: bool,
    prober_got_in: bool,
    verdict: Result<String>,
}

/// One load with the n-th allocation failing, and its checks; leaves the
/// module unloaded.
fn load_attempt(
    fail: &FailNth,
    module: Module,
    image: &[u8],
    n: u32,
    prober: Option<&Prober>,
) -> Result<LoadAttempt> {
    let kmod = kmod(module);
    anyhow::ensure!(
        !kmod.is_loaded(),
        "{} is loaded before the attempt",
        kmod.name()
    );
    if let Some(p) = prober {
        p.arm();
    }
    let (loaded, injected) = fail.inject(n, || init_module(image))?;
    let held = prober.and_then(Prober::disarm);
    let prober_got_in = held.is_some();
    let verdict = match &loaded {
        Ok(()) => {
            let works = check_loaded(module);
            drop(held);
            rmmod_eventually(module)?;
            works.map(|()| "loaded".to_string())
        }
        Err(e) => {
            let errno = os_errno(e);
            let mut problems = left_behind(module);
            if let Some(socket) = held {
                problems.push(format!(
                    "a client's socket() on unit {} succeeded during this load, which then \
                     failed: that socket holds a reference (try_module_get() in \
                     netlink_create()) on the module the failed load freed; it stays open \
                     until the end of the run",
                    module.unit().unwrap_or_default()
                ));
                PINNED
                    .lock()
                    .unwrap()
                    .push((format!("{} n={n}", kmod.name()), socket));
            }
            if problems.is_empty() {
                Ok(format!("failed {errno}"))
            } else {
                Err(anyhow::anyhow!(
                    "init_module failed with {errno} and left trouble behind: {}",
                    problems.join("; ")
                ))
            }
        }
    };
    Ok(LoadAttempt {
        injected,
        loaded: loaded.is_ok(),
        prober_got_in,
        verdict,
    })
}

/// `count` loads of `module` in a child process, each killed (SIGKILL) as
/// soon as a `socket()` of ours on `unit` succeeds: the unit is served, so
/// `init` has created its socket, and the child sleeps (on this kernel,
/// the only way we get to run meanwhile). A kill that lands before `init`
/// returns fails it; either way the module must end loaded and working, or
/// gone with nothing left behind, and our socket must not pin a module
/// that was freed.
fn killed_loads(
    module: Module,
    unit: i32,
    image: &[u8],
    count: u32,
    report: &mut PathReport,
    kmsg: &mut Kmsg,
) -> Result<()> {
    let kmod = kmod(module);
    for attempt in 1..=count {
        anyhow::ensure!(
            !kmod.is_loaded(),
            "{} is loaded before a killed load",
            kmod.name()
        );
        // SAFETY: the child makes only async-signal-safe calls (a system
        // call and _exit) on memory it inherited.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // Real-time below the parent: once killed, the child runs
            // before the kernel thread that would complete its wait.
            let param = libc::sched_param { sched_priority: 5 };
            // SAFETY: plain syscalls; `param` is a valid sched_param.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_init_module,
                    image.as_ptr(),
                    image.len(),
                    c"".as_ptr(),
                )
            };
            let code = if rc == 0 {
                0
            } else {
                // SAFETY: errno of this thread.
                unsafe { *libc::__errno_location() }
            };
            // SAFETY: ends the child without running the parent's atexit
            // handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        anyhow::ensure!(child > 0, "fork: {}", std::io::Error::last_os_error());
        // Real-time while the child loads: woken from each short sleep, we
        // run at the next schedule(), before kthreadd and the thread it
        // creates (SCHED_OTHER), so the kill can land while init waits.
        let realtime = Realtime::raise()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut held, mut status, mut exited) = (None, 0, false);
        while Instant::now() < deadline {
            // SAFETY: plain syscall with integer arguments.
            let fd = unsafe {
                libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, unit)
            };
            if fd >= 0 {
                // SAFETY: a fresh descriptor that nothing else owns.
                held = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                // SAFETY: `child` is our child, not yet reaped.
                unsafe { libc::kill(child, libc::SIGKILL) };
                break;
            }
            // SAFETY: `status` is a valid int to write.
            if unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child {
                exited = true;
                break;
            }
            // Let the child run.
            std::thread::sleep(Duration::from_micros(100));
        }
        if !exited {
            if held.is_none() {
                // SAFETY: as above.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
            // SAFETY: `status` is a valid int to write.
            unsafe { libc::waitpid(child, &mut status, 0) };
        }
        drop(realtime);
        let ended = if libc::WIFSIGNALED(status) {
            "killed".to_string()
        } else {
            match libc::WEXITSTATUS(status) {
                0 => "exited".to_string(),
                e => format!("failed {}", errno(e)),
            }
        };
        let context = format!(
            "killed load {attempt} (the child {ended}{})",
            if held.is_some() {
                ", after our socket() on the unit succeeded"
            } else {
                ", our socket() never succeeded"
            }
        );
        let verdict = if kmod.is_loaded() {
            let works = check_loaded(module);
            drop(held);
            rmmod_eventually(module)?;
            works.map(|()| format!("loaded (the child {ended})"))
        } else {
            let mut problems = left_behind(module);
            if let Some(socket) = held {
                problems.push(format!(
                    "our socket() on unit {unit} succeeded during this load, which then failed: \
                     that socket holds a reference (try_module_get() in netlink_create()) on \
                     the module the failed load freed; it stays open until the end of the run"
                ));
                PINNED
                    .lock()
                    .unwrap()
                    .push((format!("{} killed load {attempt}", kmod.name()), socket));
            }
            if problems.is_empty() {
                Ok(format!("not loaded ({ended})"))
            } else {
                Err(anyhow::anyhow!(
                    "the load failed and left trouble behind: {}",
                    problems.join("; ")
                ))
            }
        };
        report.check_log(kmsg, Some(&format!("killed load {attempt}")))?;
        match verdict {
            Ok(outcome) => *report.killed.entry(outcome).or_default() += 1,
            Err(e) => {
                *report.killed.entry("left trouble".into()).or_default() += 1;
                report.fail(format!("{context}: {e:#}"));
            }
        }
    }
    Ok(())
}

/// The calling thread at `SCHED_FIFO` priority 10, back to `SCHED_OTHER`
/// on drop.
struct Realtime;

impl Realtime {
    fn raise() -> Result<Realtime> {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain syscall; `param` is a valid sched_param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            anyhow::bail!(
                "sched_setscheduler(SCHED_FIFO): {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Realtime)
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall; `param` is a valid sched_param.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
    }
}

/// After a load that succeeded: the module is listed and echoes.
fn check_loaded(module: Module) -> Result<()> {
    anyhow::ensure!(
        kmod(module).is_loaded(),
        "init_module succeeded, yet the module is not in /proc/modules"
    );
    let (mut sock, family) =
        crate::clients::raw_socket(module).context("a client after the load")?;
    let text = b"loaded under fault injection";
    let echoed = match family {
        None => sock.echo(text),
        Some(family) => sock.genl_echo(family, text),
    }
    .context("an echo after the load")?;
    anyhow::ensure!(echoed == text, "the echo after the load differs");
    if module == Module::Kthread {
        find_task("kmod_kthread").context("after the load")?;
    }
    Ok(())
}

/// After a load that failed: what it left behind.
fn left_behind(module: Module) -> Vec<String> {
    let mut problems = Vec::new();
    if kmod(module).is_loaded() {
        problems.push("the module is in /proc/modules".to_string());
    }
    match module.unit() {
        Some(unit) => match Socket::connect(unit) {
            Err(user_raw::Error::UnitUnavailable { .. }) => {}
            Ok(_) => problems.push(format!("unit {unit} is still served")),
            Err(e) => problems.push(format!("a client of unit {unit}: {e}")),
        },
        None => match Socket::connect_genl().and_then(|mut s| s.resolve_family(GENL_FAMILY_NAME)) {
            Err(user_raw::Error::FamilyNotFound { .. }) => {}
            Ok(f) => problems.push(format!(
                "family {GENL_FAMILY_NAME} is registered (id {})",
                f.id
            )),
            Err(e) => problems.push(format!("resolving {GENL_FAMILY_NAME}: {e}")),
        },
    }
    if module == Module::Kthread && find_task("kmod_kthread").is_ok() {
        problems.push("a kernel thread kmod_kthread is left".to_string());
    }
    problems
}

/// A client that keeps opening sockets on a raw unit while a load is under
/// way, and holds the first it gets until the load's checks are done.
struct Prober {
    shared: Arc<(Mutex<Probe>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Probe {
    armed: bool,
    quit: bool,
    in_socket_call: bool,
    held: Option<OwnedFd>,
}

impl Prober {
    fn start(unit: i32) -> Prober {
        let shared = Arc::new((Mutex::new(Probe::default()), Condvar::new()));
        let theirs = shared.clone();
        let thread = std::thread::spawn(move || probe(unit, &theirs));
        Prober {
            shared,
            thread: Some(thread),
        }
    }

    fn arm(&self) {
        let (probe, changed) = &*self.shared;
        probe.lock().unwrap().armed = true;
        changed.notify_all();
    }

    /// Stops probing; the socket it opened meanwhile, if any.
    fn disarm(&self) -> Option<OwnedFd> {
        let (probe, changed) = &*self.shared;
        let mut p = probe.lock().unwrap();
        p.armed = false;
        while p.in_socket_call {
            p = changed.wait(p).unwrap();
        }
        p.held.take()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let (probe, changed) = &*self.shared;
        probe.lock().unwrap().quit = true;
        changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn probe(unit: i32, shared: &(Mutex<Probe>, Condvar)) {
    let (probe, changed) = shared;
    loop {
        {
            let mut p = probe.lock().unwrap();
            while !p.quit && (!p.armed || p.held.is_some()) {
                p = changed.wait(p).unwrap();
            }
            if p.quit {
                return;
            }
            p.in_socket_call = true;
        }
        // SAFETY: plain syscall with integer arguments.
        let fd =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, unit) };
        let mut p = probe.lock().unwrap();
        p.in_socket_call = false;
        if fd >= 0 {
            // SAFETY: a fresh descriptor that nothing else owns.
            p.held = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        drop(p);
        changed.notify_all();
        if fd < 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Closes the sockets that pinned a freed module (each `module_put()`s
/// freed memory), on a thread of its own in case the kernel kills it, and
/// returns what the kernel log showed; `None` if there were none.
pub fn close_pinned(kmsg: &mut Kmsg) -> Result<Option<Value>> {
    let pinned = std::mem::take(&mut *PINNED.lock().unwrap());
    if pinned.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = pinned.iter().map(|(n, _)| n.clone()).collect();
    println!(
        "==> closing {} sockets that pin freed modules ({})",
        pinned.len(),
        names.join(", ")
    );
    // The use counts of our modules (third column) show where the
    // module_put()s of freed modules land.
    let before = our_modules();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(pinned);
        let _ = done.send(());
    });
    let closed = finished.recv_timeout(Duration::from_secs(30)).is_ok();
    std::thread::sleep(Duration::from_secs(1));
    let after = our_modules();
    println!("    /proc/modules before: {before:?}");
    println!("    /proc/modules after:  {after:?}");
    let use_count = |line: &str| -> Option<(String, i64)> {
        let mut f = line.split(' ');
        Some((f.next()?.to_string(), f.nth(1)?.parse().ok()?))
    };
    let was: BTreeMap<String, i64> = before.iter().filter_map(|l| use_count(l)).collect();
    for (name, now) in after.iter().filter_map(|l| use_count(l)) {
        if let Some(&then) = was.get(&name).filter(|&&then| then != now) {
            println!(
                "    {name}'s use count went from {then} to {now}: a module_put() of a freed \
                 module landed on the module loaded at its address since"
            );
        }
    }
    let lines = kmsg.new_lines()?;
    for l in &lines {
        println!("    kernel: {l}");
    }
    Ok(Some(json!({
        "sockets": names,
        "closed": closed,
        "proc_modules_before": before,
        "proc_modules_after": after,
        "kernel_log": lines,
    })))
}

/// Our modules' lines of `/proc/modules`.
fn our_modules() -> Vec<String> {
    std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("kmod_"))
        .map(String::from)
        .collect()
}
