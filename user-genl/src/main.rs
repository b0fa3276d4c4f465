//! # user-genl: the neli netlink echo client
//!
//! Sends a message to a netlink-rosetta kernel module with the `neli` crate
//! (see the `user_genl` library for every step) and prints the echo. The
//! switches and the output are those of `user-raw`, plus `--mode`. Run it
//! inside the project VM, where the modules are loaded:
//!
//! ```text
//! cargo xtask vm --modules raw -- target/debug/user-genl "hello"
//! cargo xtask vm --modules genl -- target/debug/user-genl --module genl --mode socket "hello"
//! ```
//!
//! ```text
//! module raw: netlink unit 31, portid 1234
//! echo seq 0: sent 5 bytes, received 5 bytes: "hello"
//!
//! module genl: family my_genl id 34, portid 1235
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//! ```
//!
//! `--mode router` (the default) uses neli's `NlRouter`, whose thread
//! matches replies to requests, and numbers requests from 0; `--mode socket`
//! uses neli's low-level `NlSocket` synchronously, with a receive buffer of
//! its own, and numbers them from 1. For genl the
//! family lookup is request 0 (router) or 1 (socket), the echo the next one.
//! `--ack` adds `ack seq 1: ok`; `--count 10000` adds
//! `10000 round trips of 5 bytes in 0.512 s: 19531 round trips/s`;
//! `--json` prints one JSON object instead (with `"client":"neli"` and
//! `"mode"`). Errors go to stderr as `user-genl: error: <message>` with exit
//! status 1 (2 for usage errors).
//!
//! `--dump` (generic netlink only) prints the echo log of `kmod-genl`,
//! oldest first, then the end of the dump (the `done` seq is the dump
//! request's); `--subscribe` prints the notifications (genl: the "events"
//! group; raw and kthread: group 1 of the unit) until `--count` were seen,
//! its first line printed once the group is joined:
//!
//! ```text
//! cargo xtask vm --modules genl -- sh -c 'target/debug/user-genl --module genl hello; target/debug/user-genl --module genl --dump'
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
//! connecting, the echo, the dump (`GenlClient::dump`: `NlmF::DUMP`), the
//! subscription (`resolve_nl_mcast_group`, `add_mcast_membership`, the
//! router's multicast handle), and how its errors map. The router numbers
//! the family lookup 0, so a dump's `done` line says `seq 1` (socket mode:
//! `seq 2`).

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use std::collections::VecDeque;

use rosetta_cli::{
    check_usage, echo_many, Dump, Echo, Entry, Event, Fields, Group, Notice, Output, Subscription,
    Target,
};
use user_genl::{GenlClient, Mode, RawClient, Subscriber};

/// Echo a message through a netlink-rosetta kernel module (neli).
#[derive(Parser)]
#[command(name = "user-genl", version)]
// user-genl's own wording of two of the shared switches.
#[command(
    mut_arg("unit", |a| a.help("Override the netlink unit number of the module (raw and kthread only)")),
    mut_arg("size", |a| a.help("Send BYTES bytes of a repeating a..z pattern instead of MESSAGE")),
)]
struct Cli {
    #[command(flatten)]
    args: rosetta_cli::Args,
    /// Which neli API: router (NlRouter, a thread matches replies) or
    /// socket (NlSocket, synchronous send and receive).
    #[arg(long, value_enum, default_value_t = ModeArg::Router)]
    mode: ModeArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Router,
    Socket,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Router => Mode::Router,
            ModeArg::Socket => Mode::Socket,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out =
        Output::new("user-genl", "neli", &cli.args).with_field("mode", Mode::from(cli.mode).name());
    let unit_message = "--unit applies to the raw modules; genl uses NETLINK_GENERIC";
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

fn entry(e: user_genl::Entry) -> Entry {
    Entry {
        id: e.id,
        portid: e.portid,
        msg: e.msg,
    }
}

/// The socket's unit, then the family by name and id (as the echo's JSON).
fn genl_json(c: &GenlClient) -> Fields {
    Fields::new()
        .num("unit", c.unit())
        .str("family", c.family())
        .num("family_id", c.family_id())
}

// ANCHOR: dump
/// `--dump`: `GenlClient::dump`, neli's `NlmF::DUMP` and its receive
/// iterator (router) or our receive loop over neli's parser (socket).
fn dump(cli: &Cli) -> anyhow::Result<Dump> {
    let timeout = cli.args.timeout();
    let mut client = GenlClient::connect(proto::GENL_FAMILY_NAME, Mode::from(cli.mode), timeout)?;
    let dump = client.dump()?;
    Ok(Dump {
        target: Target::Family(client.family_id()),
        json_target: genl_json(&client),
        portid: client.portid(),
        seq: dump.seq,
        entries: dump.entries.into_iter().map(entry).collect(),
        interrupted: dump.interrupted,
    })
}
// ANCHOR_END: dump

/// A subscribed client and the events of its last receive not yet shown.
struct Listener {
    subscriber: Subscriber,
    pending: VecDeque<Event>,
}

impl Listener {
    fn next(&mut self) -> anyhow::Result<Notice> {
        while self.pending.is_empty() {
            match self.subscriber.next_events() {
                Ok(events) => self.pending.extend(events.into_iter().map(|e| match e {
                    user_genl::Event::Genl(e) => Event::Genl(entry(e)),
                    user_genl::Event::Raw {
                        seq,
                        portid,
                        payload,
                    } => Event::Raw {
                        seq,
                        portid,
                        payload,
                    },
                })),
                Err(user_genl::Error::Overrun) => return Ok(Notice::Lost),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Notice::Event(
            self.pending.pop_front().unwrap_or_else(|| unreachable!()),
        ))
    }
}

// ANCHOR: subscribe
/// `--subscribe`: neli resolves the "events" group and joins it
/// (`resolve_nl_mcast_group`, `add_mcast_membership`), or group 1 of the
/// raw unit.
fn subscribe(cli: &Cli) -> anyhow::Result<(Subscription, Listener)> {
    let mode = Mode::from(cli.mode);
    let timeout = cli.args.timeout();
    let (target, json_target, subscriber, group) = match cli.args.raw_unit() {
        Some(unit) => {
            let client = RawClient::connect(unit, mode, timeout)?;
            let json = Fields::new().num("unit", unit);
            let subscriber = client.subscribe()?;
            (
                Target::Unit(unit),
                json,
                subscriber,
                Group::Raw(proto::RAW_GROUP),
            )
        }
        None => {
            let client = GenlClient::connect(proto::GENL_FAMILY_NAME, mode, timeout)?;
            let (target, json) = (Target::Family(client.family_id()), genl_json(&client));
            let name = proto::GENL_MCGRP_EVENTS;
            let subscriber = client.subscribe(name)?;
            let group = Group::Genl {
                name: name.into(),
                id: subscriber.group(),
            };
            (target, json, subscriber, group)
        }
    };
    let header = Subscription {
        target,
        json_target,
        portid: subscriber.portid(),
        group,
    };
    let pending = VecDeque::new();
    Ok((
        header,
        Listener {
            subscriber,
            pending,
        },
    ))
}
// ANCHOR_END: subscribe

/// One of the library's two clients.
enum Client {
    Raw(RawClient),
    Genl(GenlClient),
}

/// Connect to the unit of a raw module, or for genl to NETLINK_GENERIC and
/// resolve the family, through neli's router or its socket (`--mode`).
fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let mode = Mode::from(cli.mode);
    let timeout = cli.args.timeout();
    Ok(match cli.args.raw_unit() {
        Some(unit) => Client::Raw(RawClient::connect(unit, mode, timeout)?),
        None => Client::Genl(GenlClient::connect(proto::GENL_FAMILY_NAME, mode, timeout)?),
    })
}

impl Echo for Client {
    fn target(&self) -> Target {
        match self {
            Client::Raw(c) => Target::Unit(c.unit()),
            Client::Genl(c) => Target::Family(c.family_id()),
        }
    }

    fn portid(&self) -> u32 {
        match self {
            Client::Raw(c) => c.portid(),
            Client::Genl(c) => c.portid(),
        }
    }

    fn echo_once(&mut self, payload: &str, ack: bool) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            Client::Raw(c) if ack => c.echo_with_ack(payload.as_bytes())?,
            Client::Raw(c) => c.echo(payload.as_bytes())?,
            Client::Genl(c) if ack => c.echo_with_ack(payload)?.into_bytes(),
            Client::Genl(c) => c.echo(payload)?.into_bytes(),
        })
    }

    fn last_seq(&self) -> u32 {
        match self {
            Client::Raw(c) => c.last_seq(),
            Client::Genl(c) => c.last_seq(),
        }
    }

    /// The socket's unit for every module (NETLINK_GENERIC for genl), then
    /// the family by name and id.
    fn json_target(&self) -> Fields {
        match self {
            Client::Raw(c) => Fields::new().num("unit", c.unit()),
            Client::Genl(c) => genl_json(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use rosetta_cli::Module;

    #[test]
    fn the_switches_are_rosetta_clis_plus_mode() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["user-genl", "--size", "3", "hi"]).is_err());
        let cli = Cli::try_parse_from(["user-genl", "--module", "genl", "--mode", "socket", "hi"])
            .expect("parses");
        assert!(cli.args.module == Module::Genl);
        assert_eq!(Mode::from(cli.mode), Mode::Socket);
        let cli = Cli::try_parse_from(["user-genl"]).expect("parses");
        assert_eq!(Mode::from(cli.mode), Mode::Router);
        assert_eq!(cli.args.message, "hello netlink");
    }
}
