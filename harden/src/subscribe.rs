//! Multicast under load, and unloading with listeners and dumps attached.
//!
//! - [`flood_subscribers`]: a client echoes N times while three listeners
//!   of the module's group (kmod-genl's `events`, the raw units' group 1)
//!   are attached: one drains on its own thread and must see every
//!   notification, in order; two never read during the echoes and have a
//!   small receive buffer, one of them with `NETLINK_NO_ENOBUFS`. The slow
//!   ones must get a prefix of the notifications, and the rest counted as
//!   dropped by the kernel; the first must be told (ENOBUFS), the second
//!   not. The echo client must get every reply.
//! - [`unload_subscribed`]: `delete_module()` with a listener attached and,
//!   for kmod-genl, in the middle of a dump: what pins the module and what
//!   does not.

use crate::clients::{kmod, raw_socket, Module};
use crate::flood::socket_drops;
use crate::mcast::{dump_log, dump_request, parse_entry, Entry, Group, Listener};
use crate::stress::{delete_module, in_use, rmmod_eventually};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use user_raw::{messages, GenlMsg, GenlMsgHdr, NlMsgHdr};

/// The small receive buffer of the slow listeners (`SO_RCVBUF`; the
/// kernel doubles it): room for a handful of notifications.
const SMALL_RCVBUF: usize = 4096;

/// One notification as a listener received it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Note {
    /// A raw unit's copy of an echo reply.
    Raw { hdr: NlMsgHdr, payload: Vec<u8> },
    /// kmod-genl's EVENT.
    Event {
        hdr: NlMsgHdr,
        cmd: u8,
        entry: Entry,
    },
}

fn parse_notes(group: &Group, datagram: &[u8], out: &mut Vec<Note>) -> Result<()> {
    for msg in messages(datagram) {
        let (hdr, body) = msg?;
        out.push(match group.family {
            None => Note::Raw {
                hdr,
                payload: body.to_vec(),
            },
            Some(_) => {
                let msg = GenlMsg::parse(hdr, body)?;
                Note::Event {
                    hdr,
                    cmd: msg.genl.cmd,
                    entry: parse_entry(&msg.attrs)?,
                }
            }
        });
    }
    Ok(())
}

/// What a listener read: its notifications and how many times `recv`
/// reported ENOBUFS.
#[derive(Default)]
struct Read {
    notes: Vec<Note>,
    enobufs: u64,
}

/// Reads `listener` until `want` notifications came or nothing came for
/// `quiet`.
fn drain(listener: &Listener, group: &Group, want: usize, quiet: Duration) -> Result<Read> {
    let mut read = Read::default();
    let mut buf = vec![0u8; 64 << 10];
    while read.notes.len() < want {
        match listener.recv(&mut buf, quiet) {
            Ok(Some(n)) => parse_notes(group, &buf[..n], &mut read.notes)?,
            Ok(None) => break,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => read.enobufs += 1,
            Err(e) => return Err(e).context("recv on a listener"),
        }
    }
    Ok(read)
}

/// The notification that echo `i` of `texts` (request seq `seqs[i]`, from
/// `portid`) must produce; for genl, `first_id` is the id of echo 0.
fn expected(group: &Group, text: &[u8], seq: u32, portid: u32, id: u32) -> Note {
    match group.family {
        None => Note::Raw {
            hdr: NlMsgHdr {
                nlmsg_len: (user_raw::NLMSG_HDRLEN + text.len()) as u32,
                nlmsg_type: proto::ECHO_MSG_TYPE,
                nlmsg_flags: 0,
                nlmsg_seq: seq,
                nlmsg_pid: portid,
            },
            payload: text.to_vec(),
        },
        Some(family) => Note::Event {
            hdr: NlMsgHdr {
                nlmsg_len: 0, // not compared
                nlmsg_type: family,
                nlmsg_flags: 0,
                nlmsg_seq: 0,
                nlmsg_pid: 0,
            },
            cmd: proto::GENL_CMD_EVENT,
            entry: Entry {
                id,
                msg: text.to_vec(),
                portid,
            },
        },
    }
}

/// Whether `got` is `want`, `nlmsg_len` aside (whether the kernel pads a
/// message's length is its own business).
fn same(got: &Note, want: &Note) -> bool {
    let key = |h: &NlMsgHdr| (h.nlmsg_type, h.nlmsg_flags, h.nlmsg_seq, h.nlmsg_pid);
    match (got, want) {
        (
            Note::Event {
                hdr: a,
                cmd: ca,
                entry: ea,
            },
            Note::Event {
                hdr: b,
                cmd: cb,
                entry: eb,
            },
        ) => (key(a), ca, ea) == (key(b), cb, eb),
        (
            Note::Raw {
                hdr: a,
                payload: pa,
            },
            Note::Raw {
                hdr: b,
                payload: pb,
            },
        ) => (key(a), pa) == (key(b), pb),
        _ => false,
    }
}

fn want_entry(n: &Note) -> &Entry {
    match n {
        Note::Event { entry, .. } => entry,
        Note::Raw { .. } => unreachable!("genl only"),
    }
}

/// A slow listener's books: it must have received a prefix of the
/// notifications, with the rest counted in the kernel's drop counter.
fn slow_books(
    name: &str,
    listener: &Listener,
    group: &Group,
    wanted: &[Note],
    read: &Read,
    failures: &mut Vec<String>,
) -> Result<Value> {
    let got = read.notes.len();
    let drops = socket_drops(group.unit, listener.portid)?;
    let prefix = read
        .notes
        .iter()
        .zip(wanted)
        .take_while(|(g, w)| same(g, w))
        .count();
    if prefix != got {
        failures.push(format!(
            "{name}: notification {prefix} of {got} is not the echo's: {:?}",
            read.notes[prefix]
        ));
    }
    let missing = (wanted.len() - got.min(wanted.len())) as u64;
    if drops < missing {
        failures.push(format!(
            "{name}: {missing} notifications missing, only {drops} drops counted"
        ));
    }
    if missing == 0 {
        failures.push(format!(
            "{name}: got every notification: its small buffer never filled"
        ));
    }
    Ok(
        json!({ "received": got, "missing": missing, "kernel_drops": drops, "enobufs_reports": read.enobufs }),
    )
}

/// A client echoes `echoes` times while a reading listener, a slow one and
/// a slow one with `NETLINK_NO_ENOBUFS` are subscribed.
pub fn flood_subscribers(module: Module, echoes: u32) -> Result<Value> {
    let group = Group::of(module)?;
    let slow = Listener::subscribe(&group, Some(SMALL_RCVBUF), false)?;
    let quiet = Listener::subscribe(&group, Some(SMALL_RCVBUF), true)?;
    let reader = Listener::subscribe(&group, None, false)?;
    let want = echoes as usize;
    let reading = std::thread::spawn(move || {
        let read = drain(&reader, &group, want, Duration::from_secs(10));
        (reader, read)
    });

    // The echo client: every reply must come, right.
    let (mut sock, family) = raw_socket(module)?;
    let portid = sock.portid();
    let texts: Vec<Vec<u8>> = (0..echoes)
        .map(|i| format!("subscribed echo {i}").into_bytes())
        .collect();
    let mut seqs = Vec::new();
    let start = Instant::now();
    for text in &texts {
        let reply = match family {
            None => sock.echo(text),
            Some(family) => sock.genl_echo(family, text),
        }
        .with_context(|| format!("the echo client, after {} echoes", seqs.len()))?;
        ensure!(reply == *text, "the echo client got {reply:?} for {text:?}");
        seqs.push(sock.last_seq());
    }
    let echo_secs = start.elapsed().as_secs_f64();
    let (reader, read) = reading
        .join()
        .map_err(|_| anyhow::anyhow!("the reading listener panicked"))?;
    let read = read?;

    let mut failures = Vec::new();
    // The reader: every notification, in order, and no ENOBUFS.
    let ours: Vec<&Note> = read
        .notes
        .iter()
        .filter(|n| match n {
            Note::Raw { hdr, .. } => hdr.nlmsg_pid == portid,
            Note::Event { entry, .. } => entry.portid == portid,
        })
        .collect();
    let first_id = match ours.first() {
        Some(Note::Event { entry, .. }) => entry.id,
        _ => 0,
    };
    let wanted: Vec<Note> = texts
        .iter()
        .zip(&seqs)
        .enumerate()
        .map(|(i, (t, &seq))| expected(&group, t, seq, portid, first_id.wrapping_add(i as u32)))
        .collect();
    if ours.len() != wanted.len() || read.enobufs > 0 {
        failures.push(format!(
            "the reading listener got {} of {} notifications ({} ENOBUFS reports)",
            ours.len(),
            wanted.len(),
            read.enobufs
        ));
    }
    if let Some(i) = ours.iter().zip(&wanted).position(|(g, w)| !same(g, w)) {
        failures.push(format!(
            "the reading listener's notification {i}: {:?}, expected {:?}",
            ours[i], wanted[i]
        ));
    }
    // For genl, the log agrees with the events: GET the last one.
    if let (Some(family), Some(last)) = (family, wanted.last()) {
        let last = want_entry(last);
        let mut attrs = Vec::new();
        user_raw::put_attr(&mut attrs, proto::GENL_ATTR_ID, &last.id.to_ne_bytes())?;
        let reply = sock.genl_request(
            family,
            0,
            GenlMsgHdr::new(proto::GENL_CMD_GET, proto::GENL_FAMILY_VERSION),
            &attrs,
        )?;
        let entry = parse_entry(&reply.attrs)?;
        if entry != *last || reply.genl.cmd != proto::GENL_CMD_GET {
            failures.push(format!(
                "GET {} returned {entry:?}, the event said {last:?}",
                last.id
            ));
        }
    }
    drop(sock);
    drop(reader);

    // The slow listeners, read only now.
    let slow_read = drain(&slow, &group, want, Duration::from_millis(500))?;
    let slow_report = slow_books(
        "the slow listener",
        &slow,
        &group,
        &wanted,
        &slow_read,
        &mut failures,
    )?;
    if slow_read.enobufs != 1 {
        failures.push(format!(
            "the slow listener got {} ENOBUFS reports, expected 1",
            slow_read.enobufs
        ));
    }
    let quiet_read = drain(&quiet, &group, want, Duration::from_millis(500))?;
    let quiet_report = slow_books(
        "the NETLINK_NO_ENOBUFS listener",
        &quiet,
        &group,
        &wanted,
        &quiet_read,
        &mut failures,
    )?;
    if quiet_read.enobufs != 0 {
        failures.push(format!(
            "the NETLINK_NO_ENOBUFS listener got {} ENOBUFS reports",
            quiet_read.enobufs
        ));
    }
    Ok(json!({
        "echoes": echoes,
        "echo_seconds": echo_secs,
        "group": group.group,
        "reader": { "received": ours.len(), "foreign": read.notes.len() - ours.len(), "enobufs_reports": read.enobufs },
        "slow": slow_report,
        "slow_no_enobufs": quiet_report,
        "failures": failures,
    }))
}

/// `delete_module()` once: `Ok(true)` if it unloaded, `Ok(false)` if the
/// module was in use (EWOULDBLOCK).
fn try_unload(module: Module) -> Result<bool> {
    match delete_module(&kmod(module).name()) {
        Ok(()) => Ok(true),
        Err(e) if in_use(&e) => Ok(false),
        Err(e) => bail!("delete_module({}): {e}", kmod(module).name()),
    }
}

fn reload(module: Module) -> Result<()> {
    if !kmod(module).is_loaded() {
        kmod(module).insmod().map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Echoes `text` once through a fresh client.
fn echo_once(module: Module, text: &[u8]) -> Result<()> {
    let (mut sock, family) = raw_socket(module)?;
    let reply = match family {
        None => sock.echo(text)?,
        Some(family) => sock.genl_echo(family, text)?,
    };
    ensure!(reply == text, "echoed {reply:?} for {text:?}");
    Ok(())
}

/// Unloads `module` with listeners attached and, for kmod-genl, during
/// dumps; asserts what really happens (see the book's hardening page):
/// - raw units: a listener is a userspace socket of the unit, and each
///   pins the module: `delete_module()` says EWOULDBLOCK until it closes;
/// - genl: a listener's socket belongs to `NETLINK_GENERIC`, not to the
///   family: the module unloads under it, its membership is cleared with
///   the family's groups, and it gets nothing from the reloaded module;
/// - genl: a dump that has started holds a reference on the family's
///   module (`netlink_dump_start()` takes it for the dump's callbacks):
///   EWOULDBLOCK while the requester does not read it to its end; closing
///   the socket ends the dump and unpins the module at once, as does
///   reading it to `NLMSG_DONE`.
pub fn unload_subscribed(module: Module) -> Result<Value> {
    let result = unload_inner(module);
    reload(module)?;
    result
}

fn unload_inner(module: Module) -> Result<Value> {
    reload(module)?;
    let group = Group::of(module)?;
    let mut buf = vec![0u8; 64 << 10];
    let listener = Listener::subscribe(&group, None, false)?;
    echo_once(module, b"before the unload")?;
    let mut notes = Vec::new();
    let n = listener
        .recv(&mut buf, Duration::from_secs(10))?
        .context("the listener got no notification of the echo")?;
    parse_notes(&group, &buf[..n], &mut notes)?;
    if group.family.is_none() {
        // A raw unit: the listener pins the module.
        ensure!(
            !try_unload(module)?,
            "{}: delete_module() succeeded with a listener of the unit open",
            module.name()
        );
        drop(listener);
        let refused = rmmod_eventually(module)?;
        ensure!(
            refused == 0,
            "{}: the module stayed in use {refused} times after its listener closed",
            module.name()
        );
        reload(module)?;
        echo_once(module, b"after the reload")?;
        return Ok(json!({
            "with_listener": "EWOULDBLOCK (the listener's socket pins the module)",
            "after_close": "unloaded",
        }));
    }
    // genl: the listener does not pin the module.
    ensure!(
        try_unload(module)?,
        "genl: delete_module() refused with only a listener attached"
    );
    let after_unload = listener.recv(&mut buf, Duration::from_millis(300))?;
    ensure!(
        after_unload.is_none(),
        "genl: the listener got a message at the unload: {:?}",
        user_raw::NlMsgHdr::from_bytes(&buf)
    );
    reload(module)?;
    let regroup = Group::of(module)?;
    let fresh = Listener::subscribe(&regroup, None, false)?;
    echo_once(module, b"after the reload")?;
    ensure!(
        fresh.recv(&mut buf, Duration::from_secs(10))?.is_some(),
        "genl: a new listener got no event after the reload"
    );
    let old = listener.recv(&mut buf, Duration::from_millis(300))?;
    ensure!(
        old.is_none(),
        "genl: the listener of the unloaded module still got an event (group {} then {})",
        group.group,
        regroup.group
    );
    drop((listener, fresh));

    // A dump in progress pins the module. Fill the log so that the dump
    // needs several datagrams.
    // (Each registration gets a new family id: idr_alloc_cyclic().)
    let (mut sock, family) = raw_socket(module)?;
    let family = family.context("genl has a family id")?;
    // About 240 bytes an entry: a dump of the full log takes about ten
    // datagrams.
    let texts: Vec<Vec<u8>> = (0..proto::ECHO_LOG_LEN)
        .map(|i| format!("log entry {i:<190}").into_bytes())
        .collect();
    for t in &texts {
        sock.genl_echo(family, t)?;
    }
    let portid = sock.portid();
    drop(sock);
    // Read to the end: every entry, in order, and the module free again.
    let reader = Listener::open(libc::NETLINK_GENERIC, None)?;
    let (entries, intr) = dump_log(&reader, family)?;
    ensure!(
        !intr,
        "a dump of an unchanging log was flagged NLM_F_DUMP_INTR"
    );
    ensure!(
        entries.len() == proto::ECHO_LOG_LEN,
        "the dump returned {} entries, the log holds {}",
        entries.len(),
        proto::ECHO_LOG_LEN
    );
    for (i, (e, t)) in entries.iter().zip(&texts).enumerate() {
        let ok = e.msg == *t && e.portid == portid && e.id == entries[0].id + i as u32;
        ensure!(ok, "dump entry {i}: {e:?}, expected {t:?} from {portid}");
    }
    let dumped_then_unloaded = try_unload(module)?;
    ensure!(
        dumped_then_unloaded,
        "genl: delete_module() refused after a dump was read to its end"
    );
    drop(reader);
    reload(module)?;
    let (mut sock, family) = raw_socket(module)?;
    let family = family.context("genl has a family id")?;
    for t in &texts {
        sock.genl_echo(family, t)?;
    }
    drop(sock);
    // Start a dump and stop reading: in use until the socket closes.
    let stalled = Listener::open(libc::NETLINK_GENERIC, None)?;
    stalled.send(&dump_request(family, 7)?)?;
    let mut refusals = 0;
    for _ in 0..2 {
        ensure!(
            !try_unload(module)?,
            "genl: delete_module() succeeded during a dump"
        );
        refusals += 1;
        // One more datagram of the dump, not the last.
        stalled
            .recv(&mut buf, Duration::from_secs(10))?
            .context("the stalled dump sent nothing")?;
        ensure!(
            messages(&buf).next().is_some(),
            "an empty datagram from the dump"
        );
    }
    drop(stalled);
    let refused_after_close = rmmod_eventually(module)?;
    ensure!(
        refused_after_close == 0,
        "genl: delete_module() refused {refused_after_close} times after the dumping socket closed"
    );
    Ok(json!({
        "with_listener": "unloaded (the listener's socket pins genetlink, not the family)",
        "listener_after_reload": "nothing (its membership was cleared with the family's groups)",
        "dump_read_to_done": "unloaded at once",
        "dump_stalled": format!("EWOULDBLOCK {refusals} times, unloaded at once after close"),
        "dumped_entries": entries.len(),
    }))
}
