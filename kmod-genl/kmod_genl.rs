// SPDX-License-Identifier: GPL-2.0

//! kmod-genl: a generic netlink family, `my_genl` version 1: ECHO (1)
//! returns its string attribute MSG (1); GET (2) reads the log of the last
//! 1024 echoes, one entry or all of them (a dump); each echo is announced
//! to the multicast group `events` (command EVENT, 3).
//!
//! MSG is a NUL-terminated string of at most 16384 characters; the generic
//! netlink core validates the attributes against each command's policy
//! before the handler runs, and rejects unknown ones (strict validation, the
//! default for a new family). The ECHO reply goes through `genlmsg_reply()`
//! with command ECHO and the same MSG, the request's sequence number and
//! the requester's port id. A missing MSG gets -EINVAL with an extended-ack
//! message naming it; an unknown command gets -EOPNOTSUPP from the core. The
//! original article's libnl-genl client (`EXMPL_C_ECHO` = 1, `EXMPL_A_MSG` =
//! 1) works unchanged.
//!
//! Each echo enters the log with an ID (1, 2, ...), its MSG and the
//! requester's PORTID. GET with an ID returns that entry, or -ENOENT with an
//! extended ack naming it; GET with `NLM_F_DUMP` returns every entry, oldest
//! first, in as many `recvmsg()` calls as the requester's buffer needs, and
//! flags the messages built after the log changed with `NLM_F_DUMP_INTR`.
//! The EVENT notification (ID, MSG, PORTID) is built only when somebody
//! listens.
//!
//! The family serves every network namespace (`netnsok`), and each
//! namespace has its own echo log ([`Logs`], created when the namespace
//! appears, dropped when it goes): a dump shows the namespace's own
//! echoes, and an EVENT reaches the listeners of the namespace it happened
//! in only.
//!
//! Run it (the VM boots the project's kernel, inserts the module, runs the
//! command, removes the module):
//!
//! ```text
//! $ cargo xtask vm --modules genl -- genl ctrl get name my_genl
//! Name: my_genl
//!     ID: 0x1a  Version: 0x1  header size: 0  max attribs: 3
//!     commands supported:
//!         #1:  ID-0x1
//!         #2:  ID-0x2
//!
//!     multicast groups:
//!         #1:  ID-0x7  name: events
//! ```
//!
//! and the kernel log shows `kmod_genl: registered generic netlink family my_genl`.

use core::pin::Pin;
use kernel::c_str;
use kernel::net::namespace::{Namespace, Operations, Registration as Pernet, Subsys};
use kernel::net::netlink::{
    nla_total_size, Command, Dump, Family, Handler, Info, MulticastGroup, NetlinkSkBuff, Ops,
    Policy, PutAttr, Registration, GENL_HDRLEN,
};
use kernel::net::raw_netlink::NLMSG_HDRLEN;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{new_mutex, Arc, Mutex};

/// The wire contract, shared with the clients (`proto/src/wire.rs`).
#[path = "../proto/src/wire.rs"]
pub mod proto;

module! {
    type: KmodGenl,
    name: "kmod_genl",
    author: "netlink-rosetta",
    description: "Generic netlink echo: family my_genl, commands ECHO and GET, group events",
    license: "GPL",
}

static_assert!(proto::MAX_MSG_LEN <= u16::MAX as usize);

// ANCHOR: family
/// The family: its name is `proto::GENL_FAMILY_NAME`, its groups
/// `proto::GENL_MCGRP_EVENTS`, at index [`EVENTS`].
static FAMILY: Family = Family::const_new(
    &THIS_MODULE,
    b"my_genl\0",
    proto::GENL_FAMILY_VERSION as u32,
    &GROUPS,
);
static GROUPS: [MulticastGroup; 1] = [MulticastGroup::const_new(c_str!("events"))];
const EVENTS: u32 = 0;

const OPS: Ops = Ops {
    maxattr: proto::GENL_ATTR_MAX,
    commands: &[
        Command {
            cmd: proto::GENL_CMD_ECHO,
            policy: &[(
                proto::GENL_ATTR_MSG,
                Policy::NulString {
                    max_len: proto::MAX_MSG_LEN as u16,
                },
            )],
            admin_perm: false,
            dump: false,
        },
        Command {
            cmd: proto::GENL_CMD_GET,
            policy: &[(proto::GENL_ATTR_ID, Policy::U32)],
            admin_perm: false,
            dump: true,
        },
    ],
};

/// The attribute numbers, as the message builders take them.
const MSG: i32 = proto::GENL_ATTR_MSG as i32;
const ID: i32 = proto::GENL_ATTR_ID as i32;
const PORTID: i32 = proto::GENL_ATTR_PORTID as i32;
// ANCHOR_END: family

struct KmodGenl {
    _registration: Registration<EchoLogs>,
}

// ANCHOR: log
/// One echo: its id, its MSG and who sent it.
struct Entry {
    id: u32,
    msg: CString,
    portid: u32,
}

/// The last `proto::ECHO_LOG_LEN` echoes. Ids are consecutive, so the entry
/// with id `i` is in slot `(i - 1) % ECHO_LOG_LEN`.
struct Log {
    entries: KVec<Entry>,
    /// The id of the next echo; also the log's generation for dumps.
    next_id: u32,
}

impl Log {
    /// Adds an echo, replacing the oldest entry once the log is full, and
    /// returns its id.
    fn push(&mut self, msg: CString, portid: u32) -> Result<u32> {
        let id = self.next_id;
        let entry = Entry { id, msg, portid };
        let slot = (id as usize - 1) % proto::ECHO_LOG_LEN;
        match self.entries.get_mut(slot) {
            Some(oldest) => *oldest = entry,
            None => self.entries.push(entry, GFP_KERNEL)?,
        }
        self.next_id = id.wrapping_add(1).max(1);
        Ok(id)
    }

    /// The entry with id `id`, if the log still (or already) has it.
    fn get(&self, id: u32) -> Option<&Entry> {
        let slot = (id as usize).checked_sub(1)? % proto::ECHO_LOG_LEN;
        self.entries.get(slot).filter(|entry| entry.id == id)
    }

    /// The entries from id `first` on, oldest first.
    fn since(&self, first: u32) -> impl Iterator<Item = &Entry> {
        let oldest = self.next_id.saturating_sub(self.entries.len() as u32);
        (first.max(oldest)..self.next_id).filter_map(|id| self.get(id))
    }
}

/// The largest message with an entry: headers, ID, PORTID and the longest MSG.
const MAX_ENTRY_SIZE: usize = 2 * nla_total_size(4) + nla_total_size(proto::MAX_MSG_LEN + 1);

/// Appends the attributes of `entry` to a reply, a dump or a notification.
fn put_entry(msg: &mut impl PutAttr, entry: &Entry) -> Result {
    msg.put_u32(ID, entry.id)?;
    msg.put_string(MSG, &entry.msg)?;
    msg.put_u32(PORTID, entry.portid)
}
// ANCHOR_END: log

// ANCHOR: pernet
/// The echo logs: one in every network namespace.
struct Logs;

static LOGS: Subsys<Logs> = Subsys::new();

impl Operations for Logs {
    type State = Pin<KBox<Mutex<Log>>>;

    fn subsys() -> &'static Subsys<Logs> {
        &LOGS
    }

    fn init(&self, _net: &Namespace) -> Result<Self::State> {
        KBox::pin_init(
            new_mutex!(Log {
                entries: KVec::new(),
                next_id: 1
            }),
            GFP_KERNEL,
        )
    }
}
// ANCHOR_END: pernet

// ANCHOR: receive
/// The command handler: the echo logs.
struct EchoLogs {
    logs: Pernet<Logs>,
}

impl EchoLogs {
    /// The echo log of namespace `net`. Every namespace that can send has
    /// one: the logs are registered before the family.
    fn log<'a>(&'a self, net: &'a Namespace) -> Result<&'a Mutex<Log>> {
        self.logs.state(net).map(|log| &**log).ok_or(EAGAIN)
    }
}

impl Handler for EchoLogs {
    /// A dump's cursor: the id of the next entry to send.
    type Cursor = u32;

    const MIN_DUMP_ALLOC: usize = NLMSG_HDRLEN + GENL_HDRLEN + MAX_ENTRY_SIZE;

    fn doit(&self, request: &Info<'_>) -> Result {
        // Only ECHO and GET are registered: the core answers others itself.
        match request.cmd() {
            proto::GENL_CMD_ECHO => self.echo(request),
            _ => self.get(request),
        }
    }

    // ANCHOR: dump
    fn start(&self, _request: &Info<'_>) -> Result<u32> {
        Ok(0)
    }

    fn dumpit(&self, next: &mut u32, dump: &mut Dump<'_>) -> Result {
        let log = self.log(dump.net())?.lock();
        // Messages built after the log changed are flagged NLM_F_DUMP_INTR.
        dump.set_generation(log.next_id);
        for entry in log.since(*next) {
            // EMSGSIZE: the buffer is full; the dump goes on in the next one.
            let mut msg = dump.genlmsg_put(proto::GENL_CMD_GET)?;
            put_entry(&mut msg, entry)?;
            msg.end();
            *next = entry.id.wrapping_add(1);
        }
        Ok(())
    }
    // ANCHOR_END: dump
}
// ANCHOR_END: receive

// ANCHOR: reply
impl EchoLogs {
    /// Replies to `request` with its own MSG, logs the echo and announces it.
    fn echo(&self, request: &Info<'_>) -> Result {
        let msg = request
            .required_attr(proto::GENL_ATTR_MSG, c_str!("missing attribute MSG"))?
            .nul_string()?;
        let size = nla_total_size(msg.len_with_nul());
        let mut reply = NetlinkSkBuff::new(size, GFP_KERNEL)?
            .genlmsg_put_reply(request, proto::GENL_CMD_ECHO)?;
        reply.put_string(MSG, msg)?;
        let net = request.net();
        let id = self
            .log(net)?
            .lock()
            .push(CString::try_from(msg)?, request.snd_portid())?;
        let sent = reply.reply(request);
        notify(net, id, msg, request.snd_portid());
        sent
    }

    // ANCHOR_END: reply
    // ANCHOR: get
    /// Replies to `request` with the entry whose ID it gives.
    fn get(&self, request: &Info<'_>) -> Result {
        let attr = request.required_attr(proto::GENL_ATTR_ID, c_str!("missing attribute ID"))?;
        let id = attr.u32()?;
        let log = self.log(request.net())?.lock();
        let Some(entry) = log.get(id) else {
            request.set_bad_attr(&attr);
            request.set_err_msg_fmt(kernel::fmt!("no entry {} in the echo log", id));
            return Err(ENOENT);
        };
        let size = 2 * nla_total_size(4) + nla_total_size(entry.msg.len_with_nul());
        let mut reply = NetlinkSkBuff::new(size, GFP_KERNEL)?
            .genlmsg_put_reply(request, proto::GENL_CMD_GET)?;
        put_entry(&mut reply, entry)?;
        drop(log);
        reply.reply(request)
    }
    // ANCHOR_END: get
}

// ANCHOR: notify
/// Announces echo `id` to the `events` group of namespace `net`, if
/// anybody listens there.
fn notify(net: &Namespace, id: u32, msg: &CStr, portid: u32) {
    if !FAMILY.has_listeners_netns(net, EVENTS) {
        return;
    }
    let send = |size| -> Result {
        let mut event = NetlinkSkBuff::new(size, GFP_KERNEL)?.genlmsg_put(
            0,
            0,
            &FAMILY,
            proto::GENL_CMD_EVENT,
        )?;
        event.put_u32(ID, id)?;
        event.put_string(MSG, msg)?;
        event.put_u32(PORTID, portid)?;
        event.multicast_netns(&FAMILY, net, 0, EVENTS, GFP_KERNEL)
    };
    match send(2 * nla_total_size(4) + nla_total_size(msg.len_with_nul())) {
        // ESRCH: the listeners left meanwhile. A listener whose buffer is
        // full gets ENOBUFS from the core.
        Ok(()) | Err(ESRCH) => {}
        // The notification could not be built: the listeners learn that
        // they missed one.
        Err(_) => FAMILY.set_err(net, 0, EVENTS, ENOBUFS),
    }
}
// ANCHOR_END: notify

// ANCHOR: create
impl kernel::Module for KmodGenl {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // A log in every namespace there is, then in every new one; then
        // the family, whose requests find them.
        let logs = Arc::new(
            EchoLogs {
                logs: LOGS.register(Logs)?,
            },
            GFP_KERNEL,
        )?;
        let registration = FAMILY.register_with(&OPS, logs)?;
        pr_info!(
            "registered generic netlink family {}\n",
            proto::GENL_FAMILY_NAME
        );
        Ok(Self {
            _registration: registration,
        })
    }
}
// ANCHOR_END: create

// ANCHOR: teardown
impl Drop for KmodGenl {
    fn drop(&mut self) {
        // The family is unregistered right after this, when the field drops.
        pr_info!(
            "unregistering generic netlink family {}\n",
            proto::GENL_FAMILY_NAME
        );
    }
}
// ANCHOR_END: teardown
