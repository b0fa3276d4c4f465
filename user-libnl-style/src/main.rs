//! # user-libnl-style: the libnl-style netlink echo client
//!
//! Sends a message to a netlink-rosetta kernel module with the libnl-shaped
//! API of the `user_libnl_style` library (`NlSock::connect`, `send_simple`,
//! `recvmsgs` with a VALID callback; for genl `genl_connect`,
//! `genl_ctrl_resolve`, `genlmsg_put` + `nla_put_string`) and prints the
//! echo. Same switches and output as `user-raw` (`--module genl` included).
//! Run it inside the project VM, where the module is loaded:
//!
//! ```text
//! cargo xtask vm --modules raw -- target/debug/user-libnl-style "hello"
//! ```
//!
//! ```text
//! module raw: netlink unit 31, portid 1234
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//! ```
//!
//! With `--module genl` it resolves `my_genl` with `genl_ctrl_resolve()`,
//! then sends ECHO with the NUL-terminated MSG attribute; the byte counts
//! leave out the NUL:
//!
//! ```text
//! cargo xtask vm --modules genl -- target/debug/user-libnl-style --module genl "hello netlink"
//! ```
//!
//! ```text
//! module genl: family my_genl id 34, portid 1234
//! echo seq 1: sent 13 bytes, received 13 bytes: "hello netlink"
//! ```
//!
//! `--ack` keeps libnl's auto-ack (without it the client calls
//! `disable_auto_ack()`, so that the exchange is the same as `user-raw`'s)
//! and adds `ack seq 1: ok`; `--count 10000` adds
//! `10000 round trips of 5 bytes in 0.512 s: 19531 round trips/s`;
//! `--json` prints one JSON object instead (with `"unit"`, or with
//! `"family_id"` for genl). Errors go to stderr as
//! `user-libnl-style: error: <message>` with exit status 1 (2 for usage
//! errors).
//!
//! `--dump` (generic netlink only) prints the echo log of `kmod-genl`,
//! oldest first, then the end of the dump (the `done` seq is the dump
//! request's); `--subscribe` prints the notifications (genl: the "events"
//! group; raw and kthread: group 1 of the unit) until `--count` were seen,
//! its first line printed once the group is joined:
//!
//! ```text
//! cargo xtask vm --modules genl -- sh -c 'target/debug/user-libnl-style --module genl hello; target/debug/user-libnl-style --module genl --dump'
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
//! connecting, the echo, the dump (`dump_log`: VALID, DUMP_INTR and FINISH
//! callbacks), the subscription (`genl_ctrl_resolve_grp`,
//! `nl_socket_add_membership`, `nl_socket_disable_seq_check`), and how its
//! errors map.

use std::process::ExitCode;

use clap::Parser;
use std::collections::VecDeque;

use rosetta_cli::{
    check_usage, echo_many, Dump, Echo, Entry, Event, Group, Notice, Output, Subscription, Target,
};
use user_libnl_style::{dump_log, echo_genl, echo_raw, recv_events, Error, NlSock};

/// Echo a message through a netlink-rosetta kernel module (libnl-style API).
#[derive(Parser)]
#[command(name = "user-libnl-style", version)]
struct Cli {
    #[command(flatten)]
    args: rosetta_cli::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new("user-libnl-style", "libnl-style", &cli.args);
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

/// `genl_ctrl_resolve()` on a socket of its own, as `connect` does.
fn resolve(cli: &Cli) -> anyhow::Result<u16> {
    let mut ctrl = NlSock::genl_connect()?;
    ctrl.set_timeout(cli.args.timeout())?;
    Ok(ctrl.genl_ctrl_resolve(proto::GENL_FAMILY_NAME)?)
}

fn entry(e: user_libnl_style::Entry) -> Entry {
    Entry {
        id: e.id,
        portid: e.portid,
        msg: e.msg.into_bytes(),
    }
}

// ANCHOR: dump
/// `--dump`: [`dump_log`], the VALID, DUMP_INTR and FINISH callbacks.
fn dump(cli: &Cli) -> anyhow::Result<Dump> {
    let id = resolve(cli)?;
    let mut sk = NlSock::genl_connect()?;
    sk.set_timeout(cli.args.timeout())?;
    sk.disable_auto_ack(); // no ack follows a dump anyway
    let dump = dump_log(&mut sk, id)?;
    let target = Target::Family(id);
    Ok(Dump {
        target,
        json_target: target.json(),
        portid: sk.portid(),
        seq: dump.seq,
        entries: dump.entries.into_iter().map(entry).collect(),
        interrupted: dump.interrupted,
    })
}
// ANCHOR_END: dump

/// A subscribed socket and the events of its last datagram not yet shown.
struct Listener {
    sk: NlSock,
    family: Option<u16>,
    pending: VecDeque<Event>,
}

impl Listener {
    fn next(&mut self) -> anyhow::Result<Notice> {
        while self.pending.is_empty() {
            match recv_events(&mut self.sk, self.family) {
                Ok(events) => self.pending.extend(events.into_iter().map(|e| match e {
                    user_libnl_style::Event::Genl(e) => Event::Genl(entry(e)),
                    user_libnl_style::Event::Raw(e) => Event::Raw {
                        seq: e.seq,
                        portid: e.portid,
                        payload: e.payload,
                    },
                })),
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
/// `--subscribe`: `genl_ctrl_resolve_grp()` and `nl_socket_add_membership()`
/// (or group 1 of the raw unit), `nl_socket_disable_seq_check()`, no timeout.
fn subscribe(cli: &Cli) -> anyhow::Result<(Subscription, Listener)> {
    let (target, group, mut sk, family) = match cli.args.raw_unit() {
        Some(unit) => {
            let mut sk = NlSock::connect(unit)?;
            sk.add_membership(proto::RAW_GROUP)?;
            (Target::Unit(unit), Group::Raw(proto::RAW_GROUP), sk, None)
        }
        None => {
            let mut ctrl = NlSock::genl_connect()?;
            ctrl.set_timeout(cli.args.timeout())?;
            let family = ctrl.genl_ctrl_resolve(proto::GENL_FAMILY_NAME)?;
            let name = proto::GENL_MCGRP_EVENTS;
            let id = ctrl.genl_ctrl_resolve_grp(proto::GENL_FAMILY_NAME, name)?;
            drop(ctrl);
            let mut sk = NlSock::genl_connect()?;
            sk.add_membership(id)?;
            let group = Group::Genl {
                name: name.into(),
                id,
            };
            (Target::Family(family), group, sk, Some(family))
        }
    };
    sk.disable_seq_check(); // notifications carry the seq of whoever caused them
    sk.set_timeout(std::time::Duration::ZERO)?; // wait for events for ever
    let header = Subscription {
        target,
        json_target: target.json(),
        portid: sk.portid(),
        group,
    };
    let pending = VecDeque::new();
    Ok((
        header,
        Listener {
            sk,
            family,
            pending,
        },
    ))
}
// ANCHOR_END: subscribe

/// The echo socket and where its echoes go.
struct Client {
    sk: NlSock,
    target: Target,
}

// ANCHOR: connect
/// Connect to the unit of a raw module, or for genl `genl_connect()` and
/// `genl_ctrl_resolve()` the family.
fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let timeout = cli.args.timeout();
    let (target, mut sk) = match cli.args.raw_unit() {
        Some(unit) => (Target::Unit(unit), NlSock::connect(unit)?),
        None => {
            // libnl programs usually resolve on the socket they then send on;
            // we resolve on one of its own only so that the echo's sequence
            // numbers start at 1, as for the raw units and in user-raw.
            let mut ctrl = NlSock::genl_connect()?;
            ctrl.set_timeout(timeout)?;
            let id = ctrl.genl_ctrl_resolve(proto::GENL_FAMILY_NAME)?;
            (Target::Family(id), NlSock::genl_connect()?)
        }
    };
    sk.set_timeout(timeout)?;
    if !cli.args.ack {
        sk.disable_auto_ack(); // on by default, as in libnl: see the crate docs
    }
    Ok(Client { sk, target })
}
// ANCHOR_END: connect

impl Echo for Client {
    fn target(&self) -> Target {
        self.target
    }

    fn portid(&self) -> u32 {
        self.sk.portid()
    }

    /// `--ack` is libnl's auto-ack, left on or turned off in `connect`.
    fn echo_once(&mut self, payload: &str, _ack: bool) -> anyhow::Result<Vec<u8>> {
        Ok(match self.target {
            Target::Unit(_) => echo_raw(&mut self.sk, payload.as_bytes())?,
            Target::Family(id) => echo_genl(&mut self.sk, id, payload)?.into_bytes(),
        })
    }

    fn last_seq(&self) -> u32 {
        self.sk.last_seq()
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
        assert!(Cli::try_parse_from(["user-libnl-style", "--size", "3", "hi"]).is_err());
        let cli = Cli::try_parse_from(["user-libnl-style", "--module", "genl", "--ack", "hi"])
            .expect("parses");
        assert!(cli.args.module == Module::Genl && cli.args.ack);
    }
}
