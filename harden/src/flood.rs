//! Floods: a client sends without reading, then reads everything back, and
//! every request must end counted exactly once.
//!
//! A request ends as one of:
//! - **replied**: its echo arrived;
//! - **errored**: an `NLMSG_ERROR` arrived for it instead (kmod-kthread's
//!   ENOBUFS when its queue is full; EAGAIN when the module could not
//!   deliver the echo but could deliver the error later);
//! - **overrun**: netlink dropped its answer because our receive queue was
//!   full, and said so: `recvmsg` failed with ENOBUFS, and the kernel's own
//!   drop counter for the socket (`Drops` in `/proc/net/netlink`) covers it.
//!
//! sent = replied + errored + overrun, where "overrun" is only accepted with
//! ENOBUFS reported and at least as many drops counted by the kernel. A
//! request with no answer that the kernel did not count as dropped would
//! have vanished: that fails the run, as do duplicate or foreign answers.

use crate::clients::Module;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use user_raw::{messages, parse_error, GenlMsgHdr, NLMSG_ERROR};

/// How a flood is run.
pub struct Flood {
    pub module: Module,
    pub requests: u32,
    /// `net.core.rmem_default` for the flooding socket.
    pub rcvbuf: usize,
    /// Hold kmod-kthread's thread off the CPU while sending, so that its
    /// queue fills (see [`crate::stress::HoldOff`]).
    pub hold_off_thread: bool,
}

#[derive(Default)]
struct Tally {
    replied: u64,
    errored: BTreeMap<String, u64>,
    enobufs_reports: u64,
    foreign: u64,
}

pub fn run(flood: &Flood) -> Result<Value> {
    netlink_rosetta::set_receive_buffers(flood.rcvbuf).map_err(anyhow::Error::msg)?;
    let result = run_inner(flood);
    netlink_rosetta::big_receive_buffers();
    result
}

fn run_inner(flood: &Flood) -> Result<Value> {
    let (mut sock, family) = crate::clients::raw_socket(flood.module)?;
    let unit = flood.module.unit().unwrap_or(libc::NETLINK_GENERIC);
    let text = |i: u32| format!("flood {i}");

    // 1. Send everything, reading nothing.
    let hold = if flood.hold_off_thread {
        Some(crate::stress::HoldOff::kthread()?)
    } else {
        None
    };
    let mut first_seq = None;
    for i in 0..flood.requests {
        let seq = match family {
            None => sock.send(proto::ECHO_MSG_TYPE, 0, text(i).as_bytes())?,
            Some(family) => {
                let mut attrs = Vec::new();
                user_raw::put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, text(i).as_bytes())?;
                let echo = GenlMsgHdr::new(proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION);
                sock.genl_send(family, 0, echo, &attrs)?
            }
        };
        first_seq.get_or_insert(seq);
    }
    drop(hold);
    let first_seq = first_seq.context("a flood of no requests")?;

    // 2. Read until the module has been quiet for a while.
    let mut answered: BTreeMap<u32, &'static str> = BTreeMap::new();
    let mut tally = Tally::default();
    let mut buf = vec![0u8; user_raw::RECV_BUF_LEN];
    sock.set_timeout(Duration::from_secs(3))?;
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(user_raw::Error::Overrun) => {
                tally.enobufs_reports += 1;
                continue;
            }
            Err(user_raw::Error::Timeout { .. }) => break,
            Err(e) => return Err(e).context("reading the flood's answers"),
        };
        for msg in messages(&buf[..n]) {
            let (hdr, body) = msg?;
            let index = hdr.nlmsg_seq.wrapping_sub(first_seq);
            if index >= flood.requests {
                tally.foreign += 1;
                continue;
            }
            let what = if hdr.nlmsg_type == NLMSG_ERROR {
                let err = parse_error(&hdr, body)?;
                if err.error == 0 {
                    bail!("an ack for seq {}, which asked for none", hdr.nlmsg_seq);
                }
                *tally
                    .errored
                    .entry(crate::fuzz::errno_name(-err.error).to_string())
                    .or_default() += 1;
                "error"
            } else {
                let echoed = match family {
                    None => body.to_vec(),
                    Some(_) => {
                        let reply = user_raw::GenlMsg::parse(hdr, body)?;
                        user_raw::find_attr(&reply.attrs, proto::GENL_ATTR_MSG)?
                            .context("a genl echo without MSG")?
                            .nul_string()?
                            .to_vec()
                    }
                };
                if echoed != text(index).as_bytes() {
                    bail!(
                        "the echo of seq {} carries another request's payload",
                        hdr.nlmsg_seq
                    );
                }
                tally.replied += 1;
                "echo"
            };
            if let Some(before) = answered.insert(hdr.nlmsg_seq, what) {
                bail!(
                    "seq {} answered twice ({before}, then {what})",
                    hdr.nlmsg_seq
                );
            }
        }
    }
    let drops = socket_drops(unit, sock.portid())?;
    drop(sock);

    // 3. The books must balance.
    let errored: u64 = tally.errored.values().sum();
    let sent = u64::from(flood.requests);
    let overrun = sent - tally.replied - errored; // answered <= sent: seqs are unique
    let balanced = overrun <= drops && (overrun == 0 || tally.enobufs_reports > 0);
    let report = json!({
        "sent": sent,
        "replied": tally.replied,
        "errored": tally.errored,
        "overrun": overrun,
        "kernel_drops": drops,
        "enobufs_reports": tally.enobufs_reports,
        "foreign": tally.foreign,
        "rcvbuf": flood.rcvbuf,
        "thread_held_off": flood.hold_off_thread,
        "balanced": balanced,
    });
    if tally.foreign > 0 {
        bail!("answers to requests this client never sent: {report}");
    }
    if !balanced {
        bail!("requests vanished: neither answered nor dropped with ENOBUFS: {report}");
    }
    Ok(report)
}

/// The kernel's count of messages dropped for the socket with `portid` on
/// `unit` because its receive queue was full: the `Drops` column of
/// `/proc/net/netlink` (`sk_drops`, counted in `netlink_overrun()`).
pub fn socket_drops(unit: i32, portid: u32) -> Result<u64> {
    let table = std::fs::read_to_string("/proc/net/netlink")?;
    let mut lines = table.lines();
    let head: Vec<&str> = lines
        .next()
        .context("empty /proc/net/netlink")?
        .split_whitespace()
        .collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .with_context(|| format!("no {name} column in /proc/net/netlink"))
    };
    let (eth, pid, drops) = (col("Eth")?, col("Pid")?, col("Drops")?);
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(eth) == Some(&unit.to_string().as_str())
            && f.get(pid) == Some(&portid.to_string().as_str())
        {
            return f
                .get(drops)
                .context("short line")?
                .parse()
                .context("Drops column");
        }
    }
    bail!("socket {portid} of unit {unit} is not in /proc/net/netlink")
}
