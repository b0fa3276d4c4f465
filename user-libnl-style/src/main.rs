//! # user-libnl-style: the libnl-style netlink echo client
//!
//! Sends a message to a netlink-rosetta kernel module with the libnl-shaped
//! API of the `user_libnl_style` library (`NlSock::connect`, `send_simple`,
//! `recvmsgs` with a VALID callback; for genl `genl_connect`,
//! `genl_ctrl_resolve`, `genlmsg_put` + `nla_put_string`) and prints the
//! echo. Same switches and output as `user-raw`, plus `--module genl`.
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

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use user_libnl_style::{echo_genl, echo_raw, NlSock};

const CLIENT: &str = "libnl-style";

/// Echo a message through a netlink-rosetta kernel module (libnl-style API).
#[derive(Parser)]
#[command(name = "user-libnl-style", version)]
struct Args {
    /// Which module to talk to.
    #[arg(long, value_enum, default_value_t = Module::Raw)]
    module: Module,
    /// Override the netlink unit number of the module (raw and kthread).
    #[arg(long)]
    unit: Option<i32>,
    /// Number of echoes to do (each reply is checked); prints the rate.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Send BYTES bytes of a repeating a..z pattern instead of MESSAGE
    /// (for genl: a string of BYTES characters).
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
    /// The message to echo.
    #[arg(default_value = "hello netlink")]
    message: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
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

/// Where the echoes go.
#[derive(Clone, Copy)]
enum Target {
    /// A raw netlink unit: the socket's protocol.
    Unit(i32),
    /// A generic netlink family, by the id `genl_ctrl_resolve` gave us.
    Family(u16),
}

/// What one run measured.
struct Report {
    target: Target,
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
    let unit = match args.module {
        Module::Raw => Some(args.unit.unwrap_or(proto::RAW_UNIT)),
        Module::Kthread => Some(args.unit.unwrap_or(proto::KTHREAD_UNIT)),
        Module::Genl if args.unit.is_some() => {
            fail(&args, "--unit does not apply to --module genl: generic netlink families are found by name");
            return ExitCode::from(2);
        }
        Module::Genl => None,
    };
    match run(&args, unit) {
        Ok(report) if args.json => println!("{}", json_ok(module, &report)),
        Ok(report) => print_text(&args, module, &report),
        Err(err) => {
            fail(&args, &format!("{err:#}"));
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Connect (to `unit`, or to generic netlink when it is `None`), then do
/// `--count` echoes, checking every reply byte for byte.
fn run(args: &Args, unit: Option<i32>) -> anyhow::Result<Report> {
    let payload: String = match args.size {
        Some(size) => ('a'..='z').cycle().take(size).collect(),
        None => args.message.clone(),
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let (target, mut sk) = match unit {
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
    if !args.ack {
        sk.disable_auto_ack(); // on by default, as in libnl: see the crate docs
    }
    let round_trips = args.count.unwrap_or(1);
    let mut first: Option<(u32, Vec<u8>)> = None;
    let start = Instant::now();
    for _ in 0..round_trips {
        let reply = match target {
            Target::Unit(_) => echo_raw(&mut sk, payload.as_bytes()),
            Target::Family(id) => echo_genl(&mut sk, id, &payload).map(String::into_bytes),
        };
        let seq = sk.last_seq();
        let reply = reply.with_context(|| format!("echo seq {seq}"))?;
        if reply != payload.as_bytes() {
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
        target,
        portid: sk.portid(),
        first_seq,
        sent: payload.len(),
        reply,
        round_trips,
        elapsed,
    })
}

fn print_text(args: &Args, module: &str, r: &Report) {
    match r.target {
        Target::Unit(unit) => println!("module {module}: netlink unit {unit}, portid {}", r.portid),
        Target::Family(id) => println!(
            "module {module}: family {} id {id}, portid {}",
            proto::GENL_FAMILY_NAME,
            r.portid
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

fn json_ok(module: &str, r: &Report) -> String {
    let target = match r.target {
        Target::Unit(unit) => format!("\"unit\":{unit}"),
        Target::Family(id) => format!("\"family_id\":{id}"),
    };
    format!(
        "{{\"client\":\"{CLIENT}\",\"module\":\"{module}\",{target},\"ok\":true,\"reply\":{},\"bytes\":{},\"round_trips\":{},\"seconds\":{:.3},\"round_trips_per_s\":{:.1}}}",
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
        let module = args.module.name();
        println!(
            "{{\"client\":\"{CLIENT}\",\"module\":\"{module}\",\"ok\":false,\"error\":{}}}",
            json_string(message)
        );
    } else {
        eprintln!("user-libnl-style: error: {message}");
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
    }

    #[test]
    fn switches_are_user_raws() {
        assert!(Args::try_parse_from(["user-libnl-style", "--size", "3", "hi"]).is_err());
        assert!(Args::try_parse_from(["user-libnl-style", "--count", "0"]).is_err());
        let args = Args::try_parse_from([
            "user-libnl-style",
            "--module",
            "genl",
            "--count",
            "2",
            "--ack",
            "--json",
            "--timeout-ms",
            "10",
            "hi",
        ])
        .expect("all of user-raw's switches parse");
        assert!(args.module == Module::Genl && args.ack && args.json);
    }

    #[test]
    fn json_names_the_unit_or_the_family() {
        let report = |target| Report {
            target,
            portid: 7,
            first_seq: 1,
            sent: 2,
            reply: b"hi".to_vec(),
            round_trips: 1,
            elapsed: Duration::from_millis(1),
        };
        let raw = json_ok("raw", &report(Target::Unit(31)));
        assert!(
            raw.starts_with(r#"{"client":"libnl-style","module":"raw","unit":31,"ok":true,"reply":"hi","bytes":2,"round_trips":1,"#),
            "{raw}"
        );
        let genl = json_ok("genl", &report(Target::Family(25)));
        assert!(
            genl.starts_with(r#"{"client":"libnl-style","module":"genl","family_id":25,"ok":true,"reply":"hi","bytes":2,"#),
            "{genl}"
        );
    }
}
