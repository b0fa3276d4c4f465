//! # user-async: the tokio netlink echo client
//!
//! Sends a message to a netlink-rosetta kernel module with the rust-netlink
//! async crates (see the `user_async` library for every step) and prints
//! the echo. The switches and the output are those of `user-raw`, plus
//! `--in-flight N`. Run it inside the project VM, where the modules are
//! loaded:
//!
//! ```text
//! cargo xtask vm --modules kthread -- target/debug/user-async --ack --module kthread "hello"
//! cargo xtask vm --modules raw -- target/release/user-async --count 2000 --in-flight 1 --size 16
//! ```
//!
//! which printed, in one run (the rate is the emulated VM's):
//!
//! ```text
//! module kthread: netlink unit 25, portid 304
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//! ack seq 1: ok
//!
//! module raw: netlink unit 31, portid 307
//! echo seq 1: sent 16 bytes, received 16 bytes: "abcdefghijklmnop"
//! 2000 round trips of 16 bytes in 0.372 s: 5383 round trips/s
//! ```
//!
//! netlink-proto numbers the requests of each connection from 1; for genl
//! the family lookup runs on genetlink's own connection, so the echo is
//! seq 1 there too. `--in-flight N` keeps N echoes outstanding (the
//! `echo seq` line is the first request's); `--json` prints one JSON
//! object (with `"client":"async"` and `"in_flight"`). `--dump` and
//! `--subscribe` print the lines of the other clients. Errors go to stderr
//! as `user-async: error: <message>` with exit status 1 (2 for usage
//! errors).

use std::process::ExitCode;

use clap::Parser;
use rosetta_cli::{check_usage, Dump, Fields, Group, Notice, Output, Report, Subscription, Target};
use user_async::{echo_many, GenlClient, GenlMsg, RawClient, RawMsg, Subscriber};

/// Echo a message through a netlink-rosetta kernel module (tokio,
/// netlink-proto, genetlink).
#[derive(Parser)]
#[command(name = "user-async", version)]
struct Cli {
    #[command(flatten)]
    args: rosetta_cli::Args,
    /// Keep N echoes outstanding at once, each reply matched to its
    /// request by sequence number (with --count).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=65536),
          conflicts_with_all = ["dump", "subscribe"])]
    in_flight: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new("user-async", "async", &cli.args);
    let unit_message = "--unit applies to the raw modules; genl uses NETLINK_GENERIC";
    if let Err(message) = check_usage(&cli.args, unit_message) {
        return out.usage_error(&message);
    }
    // One thread: the connection tasks and the requests share it, as in a
    // service's current-thread runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return out.error(anyhow::Error::new(e).context("starting the tokio runtime")),
    };
    if cli.args.subscribe {
        // Joined inside the runtime; then each notification is one
        // `block_on`, which also runs the connection task.
        return match runtime.block_on(subscribe(&cli)) {
            Ok((header, mut subscriber)) => {
                out.subscribed(&header);
                out.follow(|| Ok(runtime.block_on(subscriber.next())?))
            }
            Err(err) => out.error(err),
        };
    }
    runtime.block_on(async {
        if cli.args.dump {
            return out.finish_dump(dump(&cli).await);
        }
        out.finish(echo(&cli).await)
    })
}

/// The echoes: `--count` of them (one without it), `--in-flight` at once.
async fn echo(cli: &Cli) -> anyhow::Result<Report> {
    let args = &cli.args;
    let payload = args.payload();
    let count = args.count.unwrap_or(1);
    let in_flight = cli.in_flight as usize;
    let timeout = args.timeout();
    let (target, json, portid, run) = match args.raw_unit() {
        Some(unit) => {
            let client = RawClient::connect(unit, timeout)?;
            let run = echo_many(count, in_flight, payload.as_bytes(), || {
                client.echo(payload.as_bytes(), args.ack)
            })
            .await;
            let json = Fields::new().num("unit", unit);
            (Target::Unit(unit), json, client.portid(), run)
        }
        None => {
            let client = GenlClient::connect(proto::GENL_FAMILY_NAME, timeout).await?;
            let run = echo_many(count, in_flight, payload.as_bytes(), || {
                client.echo(&payload, args.ack)
            })
            .await;
            let json = genl_json(&client);
            (
                Target::Family(client.family_id()),
                json,
                client.portid(),
                run,
            )
        }
    };
    let run = run.map_err(|(seq, e)| anyhow::Error::new(e).context(format!("echo seq {seq}")))?;
    Ok(Report {
        target,
        json_target: json.num("in_flight", cli.in_flight),
        portid,
        first_seq: run.first.seq,
        sent: payload.len(),
        reply: run.first.payload,
        round_trips: count,
        elapsed: run.elapsed,
    })
}

/// The socket's unit, then the family by name and id.
fn genl_json(c: &GenlClient) -> Fields {
    Fields::new()
        .num("unit", c.unit())
        .str("family", c.family())
        .num("family_id", c.family_id())
}

// ANCHOR: dump
/// `--dump`: `GenlClient::dump`, the stream of the dump's messages,
/// collected.
async fn dump(cli: &Cli) -> anyhow::Result<Dump> {
    let client = GenlClient::connect(proto::GENL_FAMILY_NAME, cli.args.timeout()).await?;
    let dump = client.dump().await?;
    Ok(Dump {
        target: Target::Family(client.family_id()),
        json_target: genl_json(&client),
        portid: client.portid(),
        seq: dump.seq,
        entries: dump.entries,
        interrupted: dump.interrupted,
    })
}
// ANCHOR_END: dump

/// A subscribed socket of a raw unit or of the family.
enum Listener {
    Raw(Subscriber<RawMsg>),
    Genl(Subscriber<GenlMsg>),
}

impl Listener {
    async fn next(&mut self) -> Result<Notice, user_async::Error> {
        match self {
            Listener::Raw(s) => s.next().await,
            Listener::Genl(s) => s.next().await,
        }
    }
}

// ANCHOR: subscribe
/// `--subscribe`: genetlink resolves the family and its groups, and the
/// socket of a connection of our own joins "events" before the task
/// starts; or group 1 of the raw unit. Notifications are netlink-proto's
/// unsolicited messages.
async fn subscribe(cli: &Cli) -> anyhow::Result<(Subscription, Listener)> {
    Ok(match cli.args.raw_unit() {
        Some(unit) => {
            let subscriber = Subscriber::<RawMsg>::raw(unit)?;
            let header = Subscription {
                target: Target::Unit(unit),
                json_target: Fields::new().num("unit", unit),
                portid: subscriber.portid(),
                group: Group::Raw(subscriber.group()),
            };
            (header, Listener::Raw(subscriber))
        }
        None => {
            let name = proto::GENL_MCGRP_EVENTS;
            let (family, subscriber) =
                Subscriber::<GenlMsg>::genl(proto::GENL_FAMILY_NAME, name, cli.args.timeout())
                    .await?;
            let header = Subscription {
                target: Target::Family(family.id),
                json_target: Fields::new()
                    .num("unit", libc::NETLINK_GENERIC)
                    .str("family", &family.name)
                    .num("family_id", family.id),
                portid: subscriber.portid(),
                group: Group::Genl {
                    name: name.into(),
                    id: subscriber.group(),
                },
            };
            (header, Listener::Genl(subscriber))
        }
    })
}
// ANCHOR_END: subscribe

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_switches_are_rosetta_clis_plus_in_flight() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["user-async", "--count", "9", "--in-flight", "8", "hi"])
            .expect("parses");
        assert_eq!((cli.in_flight, cli.args.count), (8, Some(9)));
        assert_eq!(Cli::try_parse_from(["user-async"]).unwrap().in_flight, 1);
        for bad in [
            &["--in-flight", "0"][..],
            &["--in-flight", "2", "--dump", "--module", "genl"],
            &["--in-flight", "2", "--subscribe"],
        ] {
            let argv = std::iter::once("user-async").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
