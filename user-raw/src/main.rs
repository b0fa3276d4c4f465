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

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use user_raw::Socket;

/// Echo a message through a netlink-rosetta kernel module (raw netlink).
#[derive(Parser)]
#[command(name = "user-raw", version)]
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

/// Where the echoes go.
#[derive(Clone, Copy)]
enum Target {
    /// A raw netlink unit: the socket's protocol.
    Unit(i32),
    /// A generic netlink family, by the id the controller gave us.
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
    let payload: Vec<u8> = match args.size {
        Some(size) => (b'a'..=b'z').cycle().take(size).collect(),
        None => args.message.as_bytes().to_vec(),
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let (target, mut sock) = match unit {
        Some(unit) => (Target::Unit(unit), Socket::connect(unit)?),
        None => {
            // Resolve on a controller socket of its own, so the echo
            // socket's sequence numbers start at 1 as for the raw units.
            // Close it first: the echo socket then gets the process id as
            // its portid, not one the kernel makes up (netlink_autobind()).
            let mut ctrl = Socket::connect_genl()?;
            ctrl.set_timeout(timeout)?;
            let family = ctrl.resolve_family(proto::GENL_FAMILY_NAME)?;
            drop(ctrl);
            (Target::Family(family.id), Socket::connect_genl()?)
        }
    };
    sock.set_timeout(timeout)?;
    let round_trips = args.count.unwrap_or(1);
    let mut first: Option<(u32, Vec<u8>)> = None;
    let start = Instant::now();
    for _ in 0..round_trips {
        let reply = match (target, args.ack) {
            (Target::Unit(_), false) => sock.echo(&payload),
            (Target::Unit(_), true) => sock.echo_with_ack(&payload),
            (Target::Family(id), false) => sock.genl_echo(id, &payload),
            (Target::Family(id), true) => sock.genl_echo_with_ack(id, &payload),
        };
        let seq = sock.last_seq();
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
        target,
        portid: sock.portid(),
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
        "{{\"client\":\"raw\",\"module\":\"{module}\",{target},\"ok\":true,\"reply\":{},\"bytes\":{},\"round_trips\":{},\"seconds\":{:.3},\"round_trips_per_s\":{:.1}}}",
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
            "{{\"client\":\"raw\",\"module\":\"{module}\",\"ok\":false,\"error\":{}}}",
            json_string(message)
        );
    } else {
        eprintln!("user-raw: error: {message}");
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
            raw.starts_with(r#"{"client":"raw","module":"raw","unit":31,"ok":true,"reply":"hi","bytes":2,"round_trips":1,"#),
            "{raw}"
        );
        let genl = json_ok("genl", &report(Target::Family(25)));
        assert!(
            genl.starts_with(r#"{"client":"raw","module":"genl","family_id":25,"ok":true,"reply":"hi","bytes":2,"#),
            "{genl}"
        );
    }

    #[test]
    fn size_conflicts_with_message() {
        assert!(Args::try_parse_from(["user-raw", "--size", "3", "hi"]).is_err());
        assert!(Args::try_parse_from(["user-raw", "--count", "0"]).is_err());
    }
}
