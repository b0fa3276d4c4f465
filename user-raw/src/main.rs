//! # user-raw: the raw libc netlink echo client
//!
//! Sends a message to a netlink-rosetta kernel module over a raw netlink
//! socket (see the `user_raw` library for every step) and prints the echo.
//! Run it inside the project VM, where the module is loaded:
//!
//! ```text
//! cargo xtask vm --modules raw -- target/debug/user-raw "hello"
//! ```
//!
//! ```text
//! module raw: netlink unit 31, portid 1234
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//! ```
//!
//! With `--module genl` it speaks generic netlink to `kmod-genl`: it first
//! resolves the family `my_genl` with the controller (`CTRL_CMD_GETFAMILY`,
//! on a socket of its own, as `genl ctrl get name my_genl` would), then
//! echoes the message as the NUL-terminated MSG attribute of an ECHO
//! request. The byte counts leave out the NUL:
//!
//! ```text
//! cargo xtask vm --modules genl -- target/debug/user-raw --module genl "hello netlink"
//! ```
//!
//! ```text
//! module genl: family my_genl id 25, portid 1234
//! echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
//! ```
//!
//! `--ack` adds `ack seq 1: ok`; `--count 10000` adds
//! `10000 round trips of 5 bytes in 0.512 s: 19531 round trips/s`;
//! `--json` prints one JSON object instead (with `"unit"`, or with
//! `"family_id"` for genl). Errors go to stderr as
//! `user-raw: error: <message>` with exit status 1 (2 for usage errors).
//!
//! `--dump` (generic netlink only) prints the echo log of `kmod-genl`,
//! oldest first, then the end of the dump (the `done` seq is the dump
//! request's); `--subscribe` prints the notifications (genl: the "events"
//! group; raw and kthread: group 1 of the unit) until `--count` were seen,
//! its first line printed once the group is joined:
//!
//! ```text
//! cargo xtask vm --modules genl -- sh -c 'target/debug/user-raw --module genl hello; target/debug/user-raw --module genl --dump'
//! ```
//!
//! ```text
//! module genl: family my_genl id 25, portid 1234
//! entry id 1 portid 1230: "hello"
//! done seq 1: 1 entries
//!
//! module genl: family my_genl id 25, group events id 26, portid 1234
//! event id 3 portid 1240: "hello"
//!
//! module raw: netlink unit 31, group 1, portid 1234
//! event seq 5 portid 1240: "hello"
//! ```
//!
//! A dump during which the log changed (`NLM_F_DUMP_INTR`) ends its `done`
//! line with `, interrupted`, then says so on stderr, exit status 1.
//! Events lost to a full receive buffer (ENOBUFS) are a line on stderr,
//! and the subscription goes on.
//!
//! The switches and the lines are those of all three clients, in the
//! `rosetta_cli` crate; this file holds what is particular to the library:
//! connecting, the echo, the dump (`Socket::genl_dump`: multipart parsing
//! by hand), the subscription (`NETLINK_ADD_MEMBERSHIP` with the group id
//! found by hand in the controller's `CTRL_ATTR_MCAST_GROUPS`), and how its
//! errors map.

use std::process::ExitCode;

use clap::Parser;
use std::collections::VecDeque;

use rosetta_cli::{
    check_usage, echo_many, Dump, Echo, Entry, Event, Group, Notice, Output, Subscription, Target,
};
use user_raw::{Error, Family, Socket};

/// Echo a message through a netlink-rosetta kernel module (raw netlink).
#[derive(Parser)]
#[command(name = "user-raw", version)]
struct Cli {
    #[command(flatten)]
    args: rosetta_cli::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new("user-raw", "raw", &cli.args);
    let unit_message =
        "--unit does not apply to --module genl: generic netlink families are found by name";
    if let Err(message) = check_usage(&cli.args, unit_message) {
        return out.usage_error(&message);
    }
    if cli.args.dump {
        return out.finish_dump(dump(&cli));
    }
    if cli.args.subscribe {
        return match subscribe(&cli) {
            Ok((header, mut listener)) => {
                out.subscribed(&header);
                out.follow(|| listener.next())
            }
            Err(err) => out.error(err),
        };
    }
    out.finish(connect(&cli).and_then(|mut client| echo_many(&cli.args, &mut client)))
}

/// Resolve `my_genl` on a controller socket of its own, closed before the
/// caller opens its socket: that one then gets the process id as its
/// portid, not one the kernel makes up (netlink_autobind()).
fn resolve(cli: &Cli) -> anyhow::Result<Family> {
    let mut ctrl = Socket::connect_genl()?;
    ctrl.set_timeout(cli.args.timeout())?;
    Ok(ctrl.resolve_family(proto::GENL_FAMILY_NAME)?)
}

// ANCHOR: dump
/// `--dump`: `GET` with `NLM_F_DUMP`, every datagram until `NLMSG_DONE`.
fn dump(cli: &Cli) -> anyhow::Result<Dump> {
    let family = resolve(cli)?;
    let mut sock = Socket::connect_genl()?;
    sock.set_timeout(cli.args.timeout())?;
    let dump = sock.genl_dump(family.id)?;
    let target = Target::Family(family.id);
    Ok(Dump {
        target,
        json_target: target.json(),
        portid: sock.portid(),
        seq: dump.seq,
        entries: dump.entries.into_iter().map(entry).collect(),
        interrupted: dump.interrupted,
    })
}
// ANCHOR_END: dump

fn entry(e: user_raw::Entry) -> Entry {
    Entry {
        id: e.id,
        portid: e.portid,
        msg: e.msg,
    }
}

/// A subscribed socket and the events of its last datagram not yet shown.
struct Listener {
    sock: Socket,
    /// `Some(id)`: the genl family's EVENTs; `None`: a raw unit's copies.
    family: Option<u16>,
    pending: VecDeque<Event>,
}

impl Listener {
    /// The next event, or ENOBUFS as [`Notice::Lost`].
    fn next(&mut self) -> anyhow::Result<Notice> {
        while self.pending.is_empty() {
            let events = match self.family {
                Some(id) => self
                    .sock
                    .recv_genl_events(id)
                    .map(|events| events.into_iter().map(|e| Event::Genl(entry(e))).collect()),
                None => self.sock.recv_raw_events().map(|events| {
                    let raw = |e: user_raw::RawEvent| Event::Raw {
                        seq: e.seq,
                        portid: e.portid,
                        payload: e.payload,
                    };
                    events.into_iter().map(raw).collect::<Vec<_>>()
                }),
            };
            match events {
                Ok(events) => self.pending.extend(events),
                Err(Error::Overrun) => return Ok(Notice::Lost),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Notice::Event(
            self.pending.pop_front().unwrap_or_else(|| unreachable!()),
        ))
    }
}

// ANCHOR: subscribe
/// `--subscribe`: join the "events" group (its id found in the
/// controller's `CTRL_ATTR_MCAST_GROUPS`) or the raw unit's group 1 with
/// `NETLINK_ADD_MEMBERSHIP`, then wait for events without a timeout.
fn subscribe(cli: &Cli) -> anyhow::Result<(Subscription, Listener)> {
    let (target, group, mut sock, family) = match cli.args.raw_unit() {
        Some(unit) => {
            let mut sock = Socket::connect(unit)?;
            sock.add_membership(proto::RAW_GROUP)?;
            (Target::Unit(unit), Group::Raw(proto::RAW_GROUP), sock, None)
        }
        None => {
            let family = resolve(cli)?;
            let name = proto::GENL_MCGRP_EVENTS;
            let id = family.mcast_group(name).ok_or_else(|| {
                anyhow::anyhow!("family {} has no multicast group {name}", family.name)
            })?;
            let mut sock = Socket::connect_genl()?;
            sock.add_membership(id)?;
            let group = Group::Genl {
                name: name.into(),
                id,
            };
            (Target::Family(family.id), group, sock, Some(family.id))
        }
    };
    sock.set_timeout(std::time::Duration::ZERO)?; // wait for events for ever
    let header = Subscription {
        target,
        json_target: target.json(),
        portid: sock.portid(),
        group,
    };
    let pending = VecDeque::new();
    Ok((
        header,
        Listener {
            sock,
            family,
            pending,
        },
    ))
}
// ANCHOR_END: subscribe

/// The echo socket and where its echoes go.
struct Client {
    sock: Socket,
    target: Target,
}

/// Connect to the unit of a raw module, or for genl resolve the family and
/// connect to generic netlink.
fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let timeout = cli.args.timeout();
    let (target, mut sock) = match cli.args.raw_unit() {
        Some(unit) => (Target::Unit(unit), Socket::connect(unit)?),
        None => {
            // Resolve on a controller socket of its own, so the echo
            // socket's sequence numbers start at 1 as for the raw units.
            let family = resolve(cli)?;
            (Target::Family(family.id), Socket::connect_genl()?)
        }
    };
    sock.set_timeout(timeout)?;
    Ok(Client { sock, target })
}

impl Echo for Client {
    fn target(&self) -> Target {
        self.target
    }

    fn portid(&self) -> u32 {
        self.sock.portid()
    }

    fn echo_once(&mut self, payload: &str, ack: bool) -> anyhow::Result<Vec<u8>> {
        let payload = payload.as_bytes();
        Ok(match (self.target, ack) {
            (Target::Unit(_), false) => self.sock.echo(payload)?,
            (Target::Unit(_), true) => self.sock.echo_with_ack(payload)?,
            (Target::Family(id), false) => self.sock.genl_echo(id, payload)?,
            (Target::Family(id), true) => self.sock.genl_echo_with_ack(id, payload)?,
        })
    }

    fn last_seq(&self) -> u32 {
        self.sock.last_seq()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use rosetta_cli::Module;

    #[test]
    fn the_switches_are_rosetta_clis() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["user-raw", "--size", "3", "hi"]).is_err());
        let cli =
            Cli::try_parse_from(["user-raw", "--module", "genl", "--ack", "hi"]).expect("parses");
        assert!(cli.args.module == Module::Genl && cli.args.ack);
    }
}
