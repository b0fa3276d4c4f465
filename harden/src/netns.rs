//! The namespace phase ([`churn`]): network namespaces created and
//! destroyed, from two threads at once, while every client library echoes
//! inside each; then the module unloaded and loaded while namespaces are
//! alive, which must serve them again; and at the end no namespace may be
//! left: a reference that the module leaked (a queued request, a dump, a
//! socket) would keep one ([`netlink_rosetta::no_namespace_left`]).

use crate::clients::{kmod, Client, Lib, Module};
use crate::stress::rmmod_eventually;
use anyhow::{anyhow, Context, Result};
use netlink_rosetta::Netns;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the kernel may take to dismantle the namespaces (on a
/// workqueue, in batches; slower on the debug kernel).
const FREED_WITHIN: Duration = Duration::from_secs(60);

/// Creates and destroys `namespaces` namespaces, echoing in each with every
/// client library; for kmod-kthread, each namespace also goes with a burst
/// of requests still unanswered.
pub fn churn(module: Module, namespaces: usize) -> Result<Value> {
    let start = Instant::now();
    let echoes = AtomicU64::new(0);
    let one = |i: usize| -> Result<()> {
        let ns = Netns::new().map_err(anyhow::Error::msg)?;
        ns.run(|| -> Result<()> {
            for lib in Lib::ALL {
                let mut client =
                    Client::connect(lib, module).map_err(|e| anyhow!("{}: {e}", lib.name()))?;
                client
                    .echo(&format!("namespace {i}"))
                    .map_err(|e| anyhow!("{}: {e}", lib.name()))?;
                echoes.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(unit) = module.unit() {
                // Requests nobody reads: the namespace goes with them in
                // flight (or queued, for kmod-kthread).
                let mut sock = user_raw::Socket::connect(unit)?;
                let burst: Vec<(u16, u16, &[u8])> = (0..32)
                    .map(|_| (proto::ECHO_MSG_TYPE, 0, &b"unread"[..]))
                    .collect();
                sock.send_batch(&burst)?;
            }
            Ok(())
        })
        .with_context(|| format!("namespace {i}"))
    };
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..2)
            .map(|w| scope.spawn(move || (w..namespaces).step_by(2).try_for_each(one)))
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow!("a namespace worker panicked"))??;
        }
        Ok(())
    })?;
    // Unload and load with namespaces alive: each gets its socket (or log)
    // again.
    let alive = (0..3)
        .map(|_| Netns::new().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    rmmod_eventually(module)?;
    kmod(module).insmod().map_err(anyhow::Error::msg)?;
    for ns in &alive {
        ns.run(|| Client::connect(Lib::Raw, module).and_then(|mut c| c.echo("reloaded")))
            .map_err(|e| anyhow!("after the reload, in a namespace that was alive: {e}"))?;
    }
    drop(alive);
    let seconds = start.elapsed().as_secs_f64();
    netlink_rosetta::no_namespace_left(FREED_WITHIN).map_err(anyhow::Error::msg)?;
    let result = json!({
        "namespaces": namespaces + 3,
        "echoes": echoes.into_inner(),
        "left": 0,
        "seconds": (seconds * 10.0).round() / 10.0,
    });
    println!("    {result}");
    Ok(result)
}
