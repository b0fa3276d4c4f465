//! Concurrency and lifecycle: many clients at once, load/unload cycles
//! while clients come and go, and kmod-kthread unloaded with a full queue.

use crate::clients::{kmod, Client, Fail, Lib, Module};
use crate::klog::Kmsg;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Several clients of every library, each on its own thread and socket,
/// echo `requests` distinct messages each at the same module at once; each
/// must get exactly its own answers back.
pub fn concurrency(module: Module, per_lib: usize, requests: usize) -> Result<Value> {
    let threads: Vec<_> = Lib::ALL
        .iter()
        .flat_map(|&lib| (0..per_lib).map(move |t| (lib, t)))
        .map(|(lib, t)| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut client = Client::connect(lib, module).map_err(|e| e.to_string())?;
                for i in 0..requests {
                    let text = format!("{} client {} #{t} request {i}", module.name(), lib.name());
                    client
                        .echo(&text)
                        .map_err(|e| format!("{}: {e}", lib.name()))?;
                }
                Ok(())
            })
        })
        .collect();
    let clients = threads.len();
    let mut failures = Vec::new();
    for t in threads {
        if let Err(e) = t
            .join()
            .map_err(|_| "a client thread panicked".to_string())
            .and_then(|r| r)
        {
            failures.push(e);
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {clients} concurrent clients failed: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(json!({ "clients": clients, "echoes": clients * requests }))
}

/// Clients that connect, echo once and close, over and over, until told
/// to stop; the module may be absent at any moment, but every answer that
/// comes must be right.
struct Churn {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    absent: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Churn {
    fn start(module: Module) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let absent = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(Mutex::new(None));
        let threads = [Lib::Raw, Lib::Neli]
            .into_iter()
            .enumerate()
            .map(|(t, lib)| {
                let (stop, ok, absent, failure) =
                    (stop.clone(), ok.clone(), absent.clone(), failure.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let text = format!("churn {t} #{i}");
                        match Client::connect(lib, module).and_then(|mut c| c.echo(&text)) {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(Fail::Absent(_)) => absent.fetch_add(1, Ordering::Relaxed),
                            Err(Fail::Other(e)) => {
                                failure
                                    .lock()
                                    .unwrap()
                                    .get_or_insert(format!("{}: {e}", lib.name()));
                                return;
                            }
                        };
                        // Leave rmmod windows with no socket open.
                        std::thread::sleep(Duration::from_millis(i * 7 % 11));
                    }
                })
            })
            .collect();
        Churn {
            stop,
            ok,
            absent,
            failure,
            threads,
        }
    }

    fn finish(self) -> Result<Value> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("a churn client panicked"))?;
        }
        if let Some(e) = self.failure.lock().unwrap().take() {
            bail!("a client failed during the load cycles: {e}");
        }
        Ok(json!({
            "echoes": self.ok.load(Ordering::Relaxed),
            "module_absent": self.absent.load(Ordering::Relaxed),
        }))
    }
}

/// Unloads `module`, retrying while clients still hold it (every
/// userspace socket of a raw unit pins its module); returns how many times
/// the kernel refused.
pub fn rmmod_eventually(module: Module) -> Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    loop {
        match delete_module(&kmod(module).name()) {
            Ok(()) => return Ok(refused),
            Err(e) if in_use(&e) && Instant::now() < deadline => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => bail!("unloading {}: {e}", kmod(module).name()),
        }
    }
}

/// `delete_module()`'s answer while the module's use count is not zero.
pub fn in_use(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// `cycles` unload/load cycles while churning clients come and go. In each:
/// a client opens and echoes; a raw unit's module must refuse rmmod while
/// it is open (every userspace socket of the unit pins the module), while
/// genl's may go (the socket pins genetlink, not the family: the client's
/// next request gets ENOENT); the client closes, rmmod succeeds, a new
/// client finds the module absent, and insmod brings it back.
pub fn lifecycle(module: Module, cycles: u32) -> Result<Value> {
    let kmod = kmod(module);
    let churn = Churn::start(module);
    let mut refused_while_held = 0;
    let mut refused_for_churn = 0;
    let mut gone_under_open_client = 0;
    let result = (|| -> Result<()> {
        for cycle in 0..cycles {
            let context = || format!("{} cycle {cycle}", module.name());
            let mut holder = Client::connect(Lib::Raw, module)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(context)?;
            holder
                .echo("held")
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(context)?;
            if module.unit().is_some() {
                match delete_module(&kmod.name()) {
                    Err(e) if in_use(&e) => refused_while_held += 1,
                    Err(e) => bail!("{}: rmmod with a client open: {e}", context()),
                    Ok(()) => bail!(
                        "{}: rmmod succeeded while a client held the unit",
                        context()
                    ),
                }
                drop(holder);
                refused_for_churn += rmmod_eventually(module).with_context(context)?;
            } else {
                refused_for_churn += rmmod_eventually(module).with_context(context)?;
                match holder.echo("after rmmod") {
                    Err(Fail::Absent(_)) => gone_under_open_client += 1,
                    Err(Fail::Other(e)) => bail!("{}: after rmmod: {e}", context()),
                    Ok(()) => bail!("{}: the family answered after rmmod", context()),
                }
            }
            match Client::connect(Lib::Raw, module).and_then(|mut c| c.echo("nobody")) {
                Err(Fail::Absent(_)) => {}
                Err(Fail::Other(e)) => bail!("{}: with the module unloaded: {e}", context()),
                Ok(()) => bail!("{}: an echo with the module unloaded", context()),
            }
            kmod.insmod()
                .map_err(anyhow::Error::msg)
                .with_context(context)?;
            // Let the churning clients find it loaded for a moment.
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })();
    let churned = churn.finish();
    if !kmod.is_loaded() {
        kmod.insmod().map_err(anyhow::Error::msg)?;
    }
    result?;
    Ok(json!({
        "cycles": cycles,
        "rmmod_refused_while_held": refused_while_held,
        "rmmod_retried_for_churn": refused_for_churn,
        "unloaded_under_open_client": gone_under_open_client,
        "churn": churned?,
    }))
}

/// Keeps kmod-kthread's thread off the CPU: it and the calling thread are
/// pinned to CPU 0, and the calling thread runs `SCHED_FIFO`, so the
/// kernel thread (`SCHED_OTHER`) cannot run until this is dropped or the
/// caller sleeps. Requests then pile up in its queue.
pub struct HoldOff {
    kthread: libc::pid_t,
}

impl HoldOff {
    pub fn kthread() -> Result<HoldOff> {
        let kthread = find_task("kmod_kthread")?;
        set_affinity(kthread, Some(0)).context("pinning the kernel thread")?;
        set_affinity(0, Some(0)).context("pinning ourselves")?;
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain syscall; `param` is a valid sched_param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            bail!(
                "sched_setscheduler(SCHED_FIFO): {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(HoldOff { kthread })
    }
}

impl Drop for HoldOff {
    fn drop(&mut self) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall; `param` is a valid sched_param.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        let _ = set_affinity(0, None);
        let _ = set_affinity(self.kthread, None); // it may be gone
    }
}

/// Pins `pid` (0: the calling thread) to `cpu`, or lets it run anywhere.
fn set_affinity(pid: libc::pid_t, cpu: Option<usize>) -> Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for c in 0..cpus {
        if cpu.is_none_or(|only| only == c) {
            // SAFETY: `c` is below the number of CPUs, within the set.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        bail!(
            "sched_setaffinity({pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// `delete_module(2)`, as rmmod calls it (`O_NONBLOCK`: fail with
/// EWOULDBLOCK rather than wait for users to go), without rmmod's own
/// checks, process start and file reads.
pub fn delete_module(name: &str) -> std::io::Result<()> {
    let name = std::ffi::CString::new(name)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    if unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The pid of the task whose `comm` is `name`.
pub fn find_task(name: &str) -> Result<libc::pid_t> {
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        if std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == name) {
            return Ok(pid);
        }
    }
    bail!("no task named {name}: is kmod_kthread loaded?")
}

/// Reloads `module` with `params` (e.g. `"coalesce=1"`) for `f`, then with
/// its defaults, which later phases expect.
pub fn with_params(
    module: Module,
    params: &[&str],
    f: impl FnOnce() -> Result<Value>,
) -> Result<Value> {
    let kmod = kmod(module);
    rmmod_eventually(module)?;
    kmod.insmod_with(params).map_err(anyhow::Error::msg)?;
    let result = f();
    rmmod_eventually(module)?;
    kmod.insmod().map_err(anyhow::Error::msg)?;
    result
}

/// kmod-kthread unloaded with its queue full, `reps` times: with the thread
/// held off the CPU, a client queues `2 × capacity` requests (the second
/// half answered ENOBUFS at once), closes, and rmmod runs; the module must
/// report the full queue dropped, with no leak or splat.
pub fn kthread_unload_full(reps: u32, capacity: u32) -> Result<Value> {
    let kmod = kmod(Module::Kthread);
    let mut kmsg = Kmsg::now()?;
    let mut dropped = Vec::new();
    let result = (|| -> Result<()> {
        for _ in 0..reps {
            if kmod.is_loaded() {
                rmmod_eventually(Module::Kthread)?;
            }
            kmod.insmod_with(&[&format!("capacity={capacity}")])
                .map_err(anyhow::Error::msg)?;
            let hold = HoldOff::kthread()?;
            let mut sock = user_raw::Socket::connect(proto::KTHREAD_UNIT)?;
            let payload = [0x5a; 64];
            let batch: Vec<(u16, u16, &[u8])> = vec![(proto::ECHO_MSG_TYPE, 0, &payload[..]); 32];
            for _ in 0..(2 * capacity).div_ceil(32) {
                sock.send_batch(&batch)?;
            }
            drop(sock);
            // Not the rmmod program: it would sleep on its way (exec, file
            // reads), and the thread would drain the queue meanwhile.
            delete_module("kmod_kthread").context("unloading with a full queue")?;
            drop(hold);
            let lines = kmsg.new_lines()?;
            let n = lines
                .iter()
                .find_map(|l| {
                    l.strip_prefix("kmod_kthread: stopping: ")?
                        .split(' ')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0);
            dropped.push(n);
        }
        Ok(())
    })();
    if kmod.is_loaded() {
        rmmod_eventually(Module::Kthread)?;
    }
    kmod.insmod().map_err(anyhow::Error::msg)?;
    result?;
    if dropped.iter().any(|&n| n != u64::from(capacity)) {
        bail!("the queue of {capacity} was not full at unload: the module dropped {dropped:?}");
    }
    Ok(json!({ "unloads": reps, "capacity": capacity, "dropped_at_unload": dropped }))
}
