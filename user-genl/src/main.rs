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
//! uses `NlSocketHandle` synchronously and numbers them from 1. For genl the
//! family lookup is request 0 (router) or 1 (socket), the echo the next one.
//! `--ack` adds `ack seq 1: ok`; `--count 10000` adds
//! `10000 round trips of 5 bytes in 0.512 s: 19531 round trips/s`;
//! `--json` prints one JSON object instead (with `"client":"neli"` and
//! `"mode"`). Errors go to stderr as `user-genl: error: <message>` with exit
//! status 1 (2 for usage errors).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use user_genl::{GenlClient, Mode, RawClient};

/// Echo a message through a netlink-rosetta kernel module (neli).
#[derive(Parser)]
#[command(name = "user-genl", version)]
struct Args {
    /// Which module to talk to.
    #[arg(long, value_enum, default_value_t = Module::Raw)]
    module: Module,
    /// Override the netlink unit number of the module (raw and kthread only).
    #[arg(long)]
    unit: Option<i32>,
    /// Number of echoes to do (each reply is checked); prints the rate.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Send BYTES bytes of a repeating a..z pattern instead of MESSAGE.
    #[arg(long, value_name = "BYTES", conflicts_with = "message")]
    size: Option<usize>,
    /// Request an ack (NLM_F_ACK) for each echo and wait for it.
    #[arg(long)]
    ack: bool,
    /// Print one line of JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How long to wait for each reply, in milliseconds (0: forever).
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    timeout_ms: u64,
    /// Which neli API: router (NlRouter, a thread matches replies) or
    /// socket (NlSocketHandle, synchronous send and receive).
    #[arg(long, value_enum, default_value_t = ModeArg::Router)]
    mode: ModeArg,
    /// The message to echo.
    #[arg(default_value = "hello netlink")]
    message: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Module {
    Raw,
    Kthread,
    Genl,
}

impl Module {
    fn name(self) -> &'static str {
        match self {
            Module::Raw => "raw",
            Module::Kthread => "kthread",
            Module::Genl => "genl",
        }
    }
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

/// One of the library's two clients.
enum Client {
    Raw(RawClient),
    Genl(GenlClient),
}

impl Client {
    fn echo(&mut self, payload: &[u8], ack: bool) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            Client::Raw(c) if ack => c.echo_with_ack(payload)?,
            Client::Raw(c) => c.echo(payload)?,
            Client::Genl(c) => {
                // MESSAGE is a String and --size is ASCII: always UTF-8.
                let msg = std::str::from_utf8(payload).context("MSG must be UTF-8")?;
                let reply = if ack {
                    c.echo_with_ack(msg)?
                } else {
                    c.echo(msg)?
                };
                reply.into_bytes()
            }
        })
    }

    fn last_seq(&self) -> u32 {
        match self {
            Client::Raw(c) => c.last_seq(),
            Client::Genl(c) => c.last_seq(),
        }
    }
}

/// What one run measured.
struct Report {
    unit: i32,
    /// Generic netlink family name and id.
    family: Option<(String, u16)>,
    portid: u32,
    first_seq: u32,
    sent: usize,
    reply: Vec<u8>,
    round_trips: u64,
    elapsed: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let module = args.module.name();
    let unit = match (args.module, args.unit) {
        (Module::Genl, Some(_)) => {
            fail(
                &args,
                "--unit applies to the raw modules; genl uses NETLINK_GENERIC",
            );
            return ExitCode::from(2);
        }
        (Module::Genl, None) => libc::NETLINK_GENERIC,
        (Module::Raw, unit) => unit.unwrap_or(proto::RAW_UNIT),
        (Module::Kthread, unit) => unit.unwrap_or(proto::KTHREAD_UNIT),
    };
    match run(&args, unit) {
        Ok(report) if args.json => println!("{}", json_ok(&args, module, &report)),
        Ok(report) => print_text(&args, module, &report),
        Err(err) => {
            fail(&args, &format!("{err:#}"));
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Connect, then do `--count` echoes, checking every reply byte for byte.
fn run(args: &Args, unit: i32) -> anyhow::Result<Report> {
    let payload: Vec<u8> = match args.size {
        Some(size) => (b'a'..=b'z').cycle().take(size).collect(),
        None => args.message.as_bytes().to_vec(),
    };
    let mode = Mode::from(args.mode);
    let timeout = Duration::from_millis(args.timeout_ms);
    let (mut client, family, portid) = match args.module {
        Module::Genl => {
            let c = GenlClient::connect(proto::GENL_FAMILY_NAME, mode, timeout)?;
            let family = Some((c.family().to_string(), c.family_id()));
            let portid = c.portid();
            (Client::Genl(c), family, portid)
        }
        Module::Raw | Module::Kthread => {
            let c = RawClient::connect(unit, mode, timeout)?;
            let portid = c.portid();
            (Client::Raw(c), None, portid)
        }
    };
    let round_trips = args.count.unwrap_or(1);
    let mut first: Option<(u32, Vec<u8>)> = None;
    let start = Instant::now();
    for _ in 0..round_trips {
        let reply = client.echo(&payload, args.ack);
        let seq = client.last_seq();
        let reply = reply.with_context(|| format!("echo seq {seq}"))?;
        if reply != payload {
            bail!(
                "echo seq {seq}: the reply differs from the request (sent {} bytes, received {} bytes)",
                payload.len(),
                reply.len()
            );
        }
        first.get_or_insert((seq, reply));
    }
    let elapsed = start.elapsed();
    let (first_seq, reply) = first.unwrap_or_default(); // round_trips >= 1
    Ok(Report {
        unit,
        family,
        portid,
        first_seq,
        sent: payload.len(),
        reply,
        round_trips,
        elapsed,
    })
}

fn print_text(args: &Args, module: &str, r: &Report) {
    match &r.family {
        Some((name, id)) => println!(
            "module {module}: family {name} id {id}, portid {}",
            r.portid
        ),
        None => println!(
            "module {module}: netlink unit {}, portid {}",
            r.unit, r.portid
        ),
    }
    println!(
        "echo seq {}: sent {} bytes, received {} bytes: {}",
        r.first_seq,
        r.sent,
        r.reply.len(),
        shorten(&r.reply)
    );
    if args.ack {
        println!("ack seq {}: ok", r.first_seq);
    }
    if args.count.is_some() {
        println!(
            "{} round trips of {} bytes in {:.3} s: {:.0} round trips/s",
            r.round_trips,
            r.sent,
            r.elapsed.as_secs_f64(),
            rate(r)
        );
    }
}

/// The reply as a quoted, escaped string; past 40 characters cut with `...`.
fn shorten(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let head: String = text.chars().take(40).collect();
    let more = if text.chars().nth(40).is_some() {
        "..."
    } else {
        ""
    };
    format!("\"{}\"{more}", head.escape_debug())
}

fn rate(r: &Report) -> f64 {
    r.round_trips as f64 / r.elapsed.as_secs_f64().max(1e-9)
}

fn json_ok(args: &Args, module: &str, r: &Report) -> String {
    let family = match &r.family {
        Some((name, id)) => format!(",\"family\":{},\"family_id\":{id}", json_string(name)),
        None => String::new(),
    };
    format!(
        "{{\"client\":\"neli\",\"mode\":\"{}\",\"module\":\"{module}\",\"unit\":{}{family},\"ok\":true,\"reply\":{},\"bytes\":{},\"round_trips\":{},\"seconds\":{:.3},\"round_trips_per_s\":{:.1}}}",
        Mode::from(args.mode).name(),
        r.unit,
        json_string(&String::from_utf8_lossy(&r.reply)),
        r.reply.len(),
        r.round_trips,
        r.elapsed.as_secs_f64(),
        rate(r)
    )
}

/// Report an error: a JSON line on stdout with `--json`, else on stderr.
fn fail(args: &Args, message: &str) {
    if args.json {
        println!(
            "{{\"client\":\"neli\",\"mode\":\"{}\",\"module\":\"{}\",\"ok\":false,\"error\":{}}}",
            Mode::from(args.mode).name(),
            args.module.name(),
            json_string(message)
        );
    } else {
        eprintln!("user-genl: error: {message}");
    }
}

/// A JSON string literal (RFC 8259): quote, backslash and control characters escaped.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}é"), r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn long_replies_are_shortened() {
        assert_eq!(shorten(b"hi\n"), r#""hi\n""#);
        let long: Vec<u8> = (b'a'..=b'z').cycle().take(41).collect();
        assert_eq!(
            shorten(&long),
            format!("\"{}\"...", String::from_utf8_lossy(&long[..40]))
        );
        assert_eq!(shorten(&long[..40]).len(), 42);
    }

    #[test]
    fn switches_are_those_of_user_raw_plus_mode() {
        assert!(Args::try_parse_from(["user-genl", "--size", "3", "hi"]).is_err());
        assert!(Args::try_parse_from(["user-genl", "--count", "0"]).is_err());
        let args = Args::try_parse_from([
            "user-genl",
            "--module",
            "kthread",
            "--unit",
            "30",
            "--count",
            "2",
            "--ack",
            "--json",
            "--timeout-ms",
            "0",
            "--mode",
            "socket",
            "hi",
        ])
        .expect("parses");
        assert_eq!(Mode::from(args.mode), Mode::Socket);
        let args = Args::try_parse_from(["user-genl"]).expect("parses");
        assert_eq!(Mode::from(args.mode), Mode::Router);
        assert_eq!(args.message, "hello netlink");
    }

    #[test]
    fn json_lines() {
        let args = Args::try_parse_from(["user-genl", "--module", "genl"]).expect("parses");
        let report = Report {
            unit: 16,
            family: Some(("my_genl".into(), 34)),
            portid: 1,
            first_seq: 1,
            sent: 2,
            reply: b"hi".to_vec(),
            round_trips: 1,
            elapsed: Duration::from_millis(2),
        };
        assert_eq!(
            json_ok(&args, "genl", &report),
            r#"{"client":"neli","mode":"router","module":"genl","unit":16,"family":"my_genl","family_id":34,"ok":true,"reply":"hi","bytes":2,"round_trips":1,"seconds":0.002,"round_trips_per_s":500.0}"#
        );
    }
}
