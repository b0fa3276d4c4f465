//! # rosetta-cli: the shared switches and output of the three client CLIs
//!
//! `user-raw`, `user-libnl-style` and `user-genl` are twins: they take the
//! same switches (`--module raw|kthread|genl`, `--unit`, `--count`,
//! `--size`, `--ack`, `--json`, `--timeout-ms`, MESSAGE) and print the same
//! lines, so that `cargo xtask demo` can read any of them and a reader can
//! put their `main.rs` side by side. This crate holds that common part once:
//! the switches ([`Args`], flattened into each client's own clap struct),
//! the echo loop that checks every reply and times the run ([`echo_many`]),
//! and the output ([`Output`]: the text lines, the `--count` rate line, the
//! `--json` line, the errors and the exit statuses).
//!
//! `--dump` and `--subscribe` share the same way: each client fills a
//! [`Dump`], or a [`Subscription`] and then [`Notice`]s, and
//! [`Output::finish_dump`], [`Output::subscribed`] and [`Output::follow`]
//! print them (the `entry`, `done`, `event` lines and their JSON), with
//! [`check_usage`] for what clap cannot check (`--dump` on a raw module).
//!
//! The netlink code stays in each client: its `main.rs` connects with its
//! own library, implements [`Echo`] (one echo, its sequence number, where it
//! goes) and maps the library's errors, which is what differs between them.
//!
//! ```text
//! module raw: netlink unit 31, portid 1234
//! echo seq 1: sent 5 bytes, received 5 bytes: "hello"
//! ack seq 1: ok
//! 10000 round trips of 5 bytes in 0.512 s: 19531 round trips/s
//! ```
//!
//! ```text
//! {"client":"raw","module":"raw","unit":31,"ok":true,"reply":"hello","bytes":5,"round_trips":1,"seconds":0.000,"round_trips_per_s":9174.3}
//! {"client":"raw","module":"raw","ok":false,"error":"netlink unit 31 not available: is kmod-raw loaded?"}
//! ```
//!
//! ```text
//! module genl: family my_genl id 25, portid 1234
//! entry id 1 portid 1230: "hello"
//! done seq 1: 1 entries
//! {"client":"raw","module":"genl","family_id":25,"portid":1234,"ok":true,"seq":1,"entries":[{"id":1,"portid":1230,"msg":"hello"}],"interrupted":false}
//! module genl: family my_genl id 25, group events id 26, portid 1234
//! event id 3 portid 1240: "hello"
//! {"client":"raw","module":"genl","family_id":25,"portid":1234,"ok":true,"group":{"name":"events","id":26}}
//! {"event":{"id":3,"portid":1240,"msg":"hello"}}
//! {"event":{"seq":5,"portid":1240,"msg":"hello"}}
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::ValueEnum;

/// The switches of every client. Each client flattens them into its own
/// `#[derive(Parser)]` struct (`#[command(flatten)]`), which names the
/// command and may add switches of its own (`user-genl`'s `--mode`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which module to talk to.
    #[arg(long, value_enum, default_value_t = Module::Raw)]
    pub module: Module,
    /// Override the netlink unit number of the module (raw and kthread).
    #[arg(long)]
    pub unit: Option<i32>,
    /// Number of echoes to do (each reply is checked); prints the rate.
    /// With --subscribe: how many events to print before exiting.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Send BYTES bytes of a repeating a..z pattern instead of MESSAGE
    /// (for genl: a string of BYTES characters).
    #[arg(long, value_name = "BYTES", conflicts_with = "message")]
    pub size: Option<usize>,
    /// Request an ack (NLM_F_ACK) for each echo and wait for it.
    #[arg(long)]
    pub ack: bool,
    /// Print one line of JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each reply, in milliseconds (0: forever).
    /// A subscription waits for events without a limit.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Print every entry of the module's echo log (a generic netlink dump,
    /// NLM_F_DUMP), then the end of the dump.
    #[arg(long, conflicts_with_all = ["subscribe", "count", "size", "ack", "message"])]
    pub dump: bool,
    /// Print the module's notifications (genl: the "events" group; raw and
    /// kthread: group 1 of the unit) until --count have been seen, or until
    /// interrupted.
    #[arg(long, conflicts_with_all = ["size", "ack", "message"])]
    pub subscribe: bool,
    /// The message to echo.
    #[arg(default_value = "hello netlink")]
    pub message: String,
}

impl Args {
    /// The unit of `--module raw|kthread`: `--unit`, or the module's own;
    /// `None` for genl, whose family is found by name.
    pub fn raw_unit(&self) -> Option<i32> {
        self.module.unit().map(|own| self.unit.unwrap_or(own))
    }

    /// `--timeout-ms` (zero: wait forever).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// What each echo sends: MESSAGE, or `--size` characters of a..z.
    pub fn payload(&self) -> String {
        match self.size {
            Some(size) => ('a'..='z').cycle().take(size).collect(),
            None => self.message.clone(),
        }
    }
}

/// The kernel module to talk to (`--module`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Module {
    Raw,
    Kthread,
    Genl,
}

impl Module {
    pub const ALL: [Module; 3] = [Module::Raw, Module::Kthread, Module::Genl];

    /// The module's own raw unit; `None` for genl, whose family is found by
    /// name.
    pub fn unit(self) -> Option<i32> {
        match self {
            Module::Raw => Some(proto::RAW_UNIT),
            Module::Kthread => Some(proto::KTHREAD_UNIT),
            Module::Genl => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Module::Raw => "raw",
            Module::Kthread => "kthread",
            Module::Genl => "genl",
        }
    }
}

/// Where the echoes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A raw netlink unit: the socket's protocol.
    Unit(i32),
    /// The generic netlink family [`proto::GENL_FAMILY_NAME`], by the id
    /// the controller gave.
    Family(u16),
}

impl Target {
    /// `"unit":N` or `"family_id":N`: the default of [`Echo::json_target`].
    pub fn json(self) -> Fields {
        match self {
            Target::Unit(unit) => Fields::new().num("unit", unit),
            Target::Family(id) => Fields::new().num("family_id", id),
        }
    }
}

/// A client's connected socket, as [`echo_many`] drives it. Each client's
/// `main.rs` implements it with its library.
pub trait Echo {
    /// Where the echoes go.
    fn target(&self) -> Target;
    /// The socket's portid.
    fn portid(&self) -> u32;
    /// Echo `payload` once, with `NLM_F_ACK` if `ack`, and return the
    /// payload of the reply.
    fn echo_once(&mut self, payload: &str, ack: bool) -> anyhow::Result<Vec<u8>>;
    /// The sequence number of the last request sent.
    fn last_seq(&self) -> u32;
    /// The JSON fields naming the target, after `"module"`.
    fn json_target(&self) -> Fields {
        self.target().json()
    }
}

/// What one run measured.
pub struct Report {
    pub target: Target,
    /// From [`Echo::json_target`].
    pub json_target: Fields,
    pub portid: u32,
    pub first_seq: u32,
    pub sent: usize,
    pub reply: Vec<u8>,
    pub round_trips: u64,
    pub elapsed: Duration,
}

impl Report {
    fn rate(&self) -> f64 {
        self.round_trips as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Do `--count` echoes (one without it) of [`Args::payload`], checking
/// every reply byte for byte.
pub fn echo_many(args: &Args, client: &mut impl Echo) -> anyhow::Result<Report> {
    let payload = args.payload();
    let round_trips = args.count.unwrap_or(1);
    let mut first: Option<(u32, Vec<u8>)> = None;
    let start = Instant::now();
    for _ in 0..round_trips {
        let reply = client.echo_once(&payload, args.ack);
        let seq = client.last_seq();
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
        target: client.target(),
        json_target: client.json_target(),
        portid: client.portid(),
        first_seq,
        sent: payload.len(),
        reply,
        round_trips,
        elapsed,
    })
}

// ---------------------------------------------------------------------------
// Dumps and subscriptions
// ---------------------------------------------------------------------------

/// One entry of the generic netlink family's echo log: a message of a dump
/// or a `GET` reply (command `GET`, attributes `ID`, `MSG`, `PORTID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `GENL_ATTR_ID`: 1 for the first echo since the module was loaded.
    pub id: u32,
    /// `GENL_ATTR_PORTID`: the port id of the socket that sent the echo.
    pub portid: u32,
    /// `GENL_ATTR_MSG`, without its NUL.
    pub msg: Vec<u8>,
}

/// What a `--dump` received.
#[derive(Clone, Debug)]
pub struct Dump {
    pub target: Target,
    /// From [`Echo::json_target`], or [`Target::json`].
    pub json_target: Fields,
    pub portid: u32,
    /// The sequence number of the dump request (and of its messages).
    pub seq: u32,
    /// Every entry, in the order received (oldest first).
    pub entries: Vec<Entry>,
    /// Whether a message carried `NLM_F_DUMP_INTR`: the log changed during
    /// the dump, which may have skipped or repeated entries.
    pub interrupted: bool,
}

/// The multicast group a `--subscribe` joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Group {
    /// A generic netlink group: its name and the id the controller gave it.
    Genl { name: String, id: u32 },
    /// A raw unit's group number ([`proto::RAW_GROUP`]).
    Raw(u32),
}

/// Where a `--subscribe` listens, printed once the membership is joined.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub target: Target,
    /// From [`Echo::json_target`], or [`Target::json`].
    pub json_target: Fields,
    pub portid: u32,
    pub group: Group,
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Generic netlink `EVENT`: the new log entry.
    Genl(Entry),
    /// A raw unit's copy of an echo reply: its sequence number, the
    /// requester's port id (`nlmsg_pid`) and the payload.
    Raw {
        seq: u32,
        portid: u32,
        payload: Vec<u8>,
    },
}

/// What a subscribed socket received next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Event(Event),
    /// `recvmsg` failed with ENOBUFS: the receive queue overflowed and
    /// events were dropped. The socket goes on.
    Lost,
}

/// The usage errors of `--dump` and `--subscribe` that clap does not check,
/// and of `--unit` with genl (`unit_message`: each client words it).
pub fn check_usage(args: &Args, unit_message: &str) -> Result<(), String> {
    if args.module == Module::Genl && args.unit.is_some() {
        return Err(unit_message.to_string());
    }
    if args.dump && args.module != Module::Genl {
        return Err("--dump applies to generic netlink only: the raw units keep no log".into());
    }
    Ok(())
}

/// Members of a JSON object, in order, each written as `,"key":value`.
/// Keys are plain ASCII names, written as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(String);

impl Fields {
    pub fn new() -> Fields {
        Fields::default()
    }

    /// Add `"key":"value"`, the value escaped.
    pub fn str(mut self, key: &str, value: &str) -> Fields {
        self.0 += &format!(",\"{key}\":{}", json_string(value));
        self
    }

    /// Add `"key":value` for an integer.
    pub fn num(mut self, key: &str, value: impl Into<i64>) -> Fields {
        self.0 += &format!(",\"{key}\":{}", value.into());
        self
    }
}

/// How a client prints its report or its error, and with which exit status.
pub struct Output<'a> {
    bin: &'static str,
    client: &'static str,
    fields: Fields,
    args: &'a Args,
}

impl<'a> Output<'a> {
    /// `bin` starts the error lines on stderr (`user-raw: error: ...`);
    /// `client` is the `"client"` of the JSON lines.
    pub fn new(bin: &'static str, client: &'static str, args: &'a Args) -> Output<'a> {
        Output {
            bin,
            client,
            fields: Fields::new(),
            args,
        }
    }

    /// Add `"key":"value"` after `"client"` to every JSON line (user-genl's
    /// `"mode"`).
    pub fn with_field(mut self, key: &str, value: &str) -> Output<'a> {
        self.fields = self.fields.str(key, value);
        self
    }

    /// Print the report (text, or JSON with `--json`) and exit with 0, or
    /// the error and exit with 1.
    pub fn finish(&self, result: anyhow::Result<Report>) -> ExitCode {
        match result {
            Ok(report) if self.args.json => println!("{}", self.json_ok(&report)),
            Ok(report) => print!("{}", self.text(&report)),
            Err(err) => {
                self.fail(&format!("{err:#}"));
                return ExitCode::FAILURE;
            }
        }
        ExitCode::SUCCESS
    }

    /// Print a dump (text, or JSON with `--json`) and exit with 0; with 1
    /// if it was interrupted (`NLM_F_DUMP_INTR`: the entries are printed,
    /// then the error) or failed.
    pub fn finish_dump(&self, result: anyhow::Result<Dump>) -> ExitCode {
        let dump = match result {
            Ok(dump) => dump,
            Err(err) => {
                self.fail(&format!("{err:#}"));
                return ExitCode::FAILURE;
            }
        };
        if self.args.json {
            println!("{}", self.json_dump(&dump));
        } else {
            print!("{}", self.dump_text(&dump));
        }
        if dump.interrupted {
            if !self.args.json {
                eprintln!("{}: error: {DUMP_INTR_ERROR}", self.bin);
            }
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    }

    /// The text lines of a dump: where it went, each entry, the end.
    pub fn dump_text(&self, d: &Dump) -> String {
        let mut out = self.header(d.target, d.portid, None);
        for e in &d.entries {
            out += &entry_line("entry", e);
        }
        let interrupted = if d.interrupted { ", interrupted" } else { "" };
        out += &format!(
            "done seq {}: {} entries{interrupted}\n",
            d.seq,
            d.entries.len()
        );
        out
    }

    /// The `--json` line of a dump. Interrupted, it has `"ok":false` and
    /// the error after `"interrupted":true`.
    pub fn json_dump(&self, d: &Dump) -> String {
        let entries: Vec<String> = d
            .entries
            .iter()
            .map(|e| {
                format!(
                    "{{\"id\":{},\"portid\":{},\"msg\":{}}}",
                    e.id,
                    e.portid,
                    json_bytes(&e.msg)
                )
            })
            .collect();
        let error = match d.interrupted {
            true => format!(",\"error\":{}", json_string(DUMP_INTR_ERROR)),
            false => String::new(),
        };
        format!(
            "{}{},\"portid\":{},\"ok\":{},\"seq\":{},\"entries\":[{}],\"interrupted\":{}{error}}}",
            self.json_head(),
            d.json_target.0,
            d.portid,
            !d.interrupted,
            d.seq,
            entries.join(","),
            d.interrupted
        )
    }

    /// Print the subscription's header and flush it: the client calls this
    /// once it has joined the group, so that whoever reads the output knows
    /// that the events sent from then on will be seen.
    pub fn subscribed(&self, s: &Subscription) {
        if self.args.json {
            let group = match &s.group {
                Group::Genl { name, id } => {
                    format!("{{\"name\":{},\"id\":{id}}}", json_string(name))
                }
                Group::Raw(n) => n.to_string(),
            };
            println!(
                "{}{},\"portid\":{},\"ok\":true,\"group\":{group}}}",
                self.json_head(),
                s.json_target.0,
                s.portid
            );
        } else {
            print!("{}", self.header(s.target, s.portid, Some(&s.group)));
        }
        flush();
    }

    /// The line of one event (text or JSON), with its newline.
    pub fn event_line(&self, event: &Event) -> String {
        match (event, self.args.json) {
            (Event::Genl(e), false) => entry_line("event", e),
            (
                Event::Raw {
                    seq,
                    portid,
                    payload,
                },
                false,
            ) => {
                format!("event seq {seq} portid {portid}: {}\n", shorten(payload))
            }
            (Event::Genl(e), true) => format!(
                "{{\"event\":{{\"id\":{},\"portid\":{},\"msg\":{}}}}}\n",
                e.id,
                e.portid,
                json_bytes(&e.msg)
            ),
            (
                Event::Raw {
                    seq,
                    portid,
                    payload,
                },
                true,
            ) => format!(
                "{{\"event\":{{\"seq\":{seq},\"portid\":{portid},\"msg\":{}}}}}\n",
                json_bytes(payload)
            ),
        }
    }

    /// The subscription loop, once [`Output::subscribed`] was printed: print
    /// each event (flushed) until `--count` were seen, forever without it.
    /// A lost-events notice is a line on stderr, and the loop goes on; an
    /// error ends it (exit 1).
    pub fn follow(&self, mut next: impl FnMut() -> anyhow::Result<Notice>) -> ExitCode {
        let mut seen = 0u64;
        while self.args.count.is_none_or(|count| seen < count) {
            match next() {
                Ok(Notice::Event(event)) => {
                    print!("{}", self.event_line(&event));
                    flush();
                    seen += 1;
                }
                Ok(Notice::Lost) => eprintln!("{}: {LOST_EVENTS}", self.bin),
                Err(err) => {
                    self.fail(&format!("{err:#}"));
                    return ExitCode::FAILURE;
                }
            }
        }
        ExitCode::SUCCESS
    }

    /// Print an error (a failed connection or subscription) and exit with 1.
    pub fn error(&self, err: anyhow::Error) -> ExitCode {
        self.fail(&format!("{err:#}"));
        ExitCode::FAILURE
    }

    /// `module genl: family my_genl id 25, group events id 26, portid 1234`
    /// and the other header lines.
    fn header(&self, target: Target, portid: u32, group: Option<&Group>) -> String {
        let module = self.args.module.name();
        let group = match group {
            None => String::new(),
            Some(Group::Genl { name, id }) => format!(", group {name} id {id}"),
            Some(Group::Raw(n)) => format!(", group {n}"),
        };
        match target {
            Target::Unit(unit) => {
                format!("module {module}: netlink unit {unit}{group}, portid {portid}\n")
            }
            Target::Family(id) => format!(
                "module {module}: family {} id {id}{group}, portid {portid}\n",
                proto::GENL_FAMILY_NAME
            ),
        }
    }

    /// Print a usage error that clap does not check and exit with 2, as
    /// clap does for its own.
    pub fn usage_error(&self, message: &str) -> ExitCode {
        self.fail(message);
        ExitCode::from(2)
    }

    /// The text lines: where the echoes went, the first echo, its ack with
    /// `--ack`, the rate with `--count`.
    pub fn text(&self, r: &Report) -> String {
        let module = self.args.module.name();
        let mut out = match r.target {
            Target::Unit(unit) => format!(
                "module {module}: netlink unit {unit}, portid {}\n",
                r.portid
            ),
            Target::Family(id) => format!(
                "module {module}: family {} id {id}, portid {}\n",
                proto::GENL_FAMILY_NAME,
                r.portid
            ),
        };
        out += &format!(
            "echo seq {}: sent {} bytes, received {} bytes: {}\n",
            r.first_seq,
            r.sent,
            r.reply.len(),
            shorten(&r.reply)
        );
        if self.args.ack {
            out += &format!("ack seq {}: ok\n", r.first_seq);
        }
        if self.args.count.is_some() {
            out += &format!(
                "{} round trips of {} bytes in {:.3} s: {:.0} round trips/s\n",
                r.round_trips,
                r.sent,
                r.elapsed.as_secs_f64(),
                r.rate()
            );
        }
        out
    }

    /// The `--json` line of a report.
    pub fn json_ok(&self, r: &Report) -> String {
        format!(
            "{}{},\"ok\":true,\"reply\":{},\"bytes\":{},\"round_trips\":{},\"seconds\":{:.3},\"round_trips_per_s\":{:.1}}}",
            self.json_head(),
            r.json_target.0,
            json_string(&String::from_utf8_lossy(&r.reply)),
            r.reply.len(),
            r.round_trips,
            r.elapsed.as_secs_f64(),
            r.rate()
        )
    }

    /// The `--json` line of an error.
    pub fn json_error(&self, message: &str) -> String {
        format!(
            "{},\"ok\":false,\"error\":{}}}",
            self.json_head(),
            json_string(message)
        )
    }

    /// `{"client":...` and the client's fields, then `"module"`.
    fn json_head(&self) -> String {
        format!(
            "{{\"client\":{}{},\"module\":{}",
            json_string(self.client),
            self.fields.0,
            json_string(self.args.module.name())
        )
    }

    /// Report an error: a JSON line on stdout with `--json`, else on stderr.
    fn fail(&self, message: &str) {
        if self.args.json {
            println!("{}", self.json_error(message));
        } else {
            eprintln!("{}: error: {message}", self.bin);
        }
    }
}

/// The error of an interrupted dump (after its `done` line).
pub const DUMP_INTR_ERROR: &str =
    "the echo log changed during the dump (NLM_F_DUMP_INTR): run it again";

/// The stderr line (after `<bin>: `) when a subscribed socket lost events.
pub const LOST_EVENTS: &str = "lost events: the receive buffer overflowed (ENOBUFS)";

/// `entry id 1 portid 1230: "hello"` (or `event ...`), with its newline.
fn entry_line(word: &str, e: &Entry) -> String {
    format!(
        "{word} id {} portid {}: {}\n",
        e.id,
        e.portid,
        shorten(&e.msg)
    )
}

/// Bytes as a JSON string (lossy UTF-8, like the echo's `"reply"`).
fn json_bytes(b: &[u8]) -> String {
    json_string(&String::from_utf8_lossy(b))
}

fn flush() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// The reply as a quoted, escaped string; past 40 characters cut with `...`.
pub fn shorten(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let head: String = text.chars().take(40).collect();
    let more = if text.chars().nth(40).is_some() {
        "..."
    } else {
        ""
    };
    format!("\"{}\"{more}", head.escape_debug())
}

/// A JSON string literal (RFC 8259): quote, backslash and control characters escaped.
pub fn json_string(s: &str) -> String {
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
    use clap::Parser;

    /// A client's clap struct, as in the three main.rs.
    #[derive(Parser)]
    #[command(name = "user-test")]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        let argv = std::iter::once("user-test").chain(argv.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    fn report(target: Target) -> Report {
        Report {
            target,
            json_target: target.json(),
            portid: 7,
            first_seq: 1,
            sent: 2,
            reply: b"hi".to_vec(),
            round_trips: 1,
            elapsed: Duration::from_millis(2),
        }
    }

    #[test]
    fn the_switches_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert!(parse(&["--size", "3", "hi"]).is_err());
        assert!(parse(&["--count", "0"]).is_err());
        let args = parse(&[
            "--module",
            "kthread",
            "--unit",
            "30",
            "--count",
            "2",
            "--ack",
            "--json",
            "--timeout-ms",
            "10",
            "hi",
        ])
        .expect("all the switches parse");
        assert!(args.module == Module::Kthread && args.ack && args.json);
        assert_eq!(args.raw_unit(), Some(30));
        assert_eq!(args.timeout(), Duration::from_millis(10));
        assert_eq!(args.payload(), "hi");
    }

    #[test]
    fn defaults() {
        let args = parse(&[]).expect("parses");
        assert_eq!(args.module, Module::Raw);
        assert_eq!(args.raw_unit(), Some(proto::RAW_UNIT));
        assert_eq!(args.payload(), "hello netlink");
        assert_eq!(args.timeout(), Duration::from_secs(5));
        let args = parse(&["--module", "kthread"]).expect("parses");
        assert_eq!(args.raw_unit(), Some(proto::KTHREAD_UNIT));
        let args = parse(&["--module", "genl", "--size", "28"]).expect("parses");
        assert_eq!(args.raw_unit(), None);
        assert_eq!(args.payload(), "abcdefghijklmnopqrstuvwxyzab");
    }

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
        let args = parse(&[]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        assert_eq!(
            out.json_ok(&report(Target::Unit(31))),
            r#"{"client":"raw","module":"raw","unit":31,"ok":true,"reply":"hi","bytes":2,"round_trips":1,"seconds":0.002,"round_trips_per_s":500.0}"#
        );
        let args = parse(&["--module", "genl"]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        let genl = out.json_ok(&report(Target::Family(25)));
        assert!(
            genl.starts_with(r#"{"client":"raw","module":"genl","family_id":25,"ok":true,"reply":"hi","bytes":2,"#),
            "{genl}"
        );
    }

    #[test]
    fn json_lines_with_fields_of_the_client() {
        let args = parse(&["--module", "genl"]).expect("parses");
        let out = Output::new("user-genl", "neli", &args).with_field("mode", "router");
        let mut r = report(Target::Family(34));
        r.json_target = Fields::new()
            .num("unit", 16)
            .str("family", "my_genl")
            .num("family_id", 34u16);
        assert_eq!(
            out.json_ok(&r),
            r#"{"client":"neli","mode":"router","module":"genl","unit":16,"family":"my_genl","family_id":34,"ok":true,"reply":"hi","bytes":2,"round_trips":1,"seconds":0.002,"round_trips_per_s":500.0}"#
        );
        assert_eq!(
            out.json_error("a \"quoted\"\nerror"),
            r#"{"client":"neli","mode":"router","module":"genl","ok":false,"error":"a \"quoted\"\nerror"}"#
        );
    }

    #[test]
    fn text_lines() {
        let args = parse(&["--module", "genl", "--ack", "--count", "1"]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        assert_eq!(
            out.text(&report(Target::Family(25))),
            "module genl: family my_genl id 25, portid 7\n\
             echo seq 1: sent 2 bytes, received 2 bytes: \"hi\"\n\
             ack seq 1: ok\n\
             1 round trips of 2 bytes in 0.002 s: 500 round trips/s\n"
        );
        let args = parse(&[]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        assert_eq!(
            out.text(&report(Target::Unit(31))),
            "module raw: netlink unit 31, portid 7\n\
             echo seq 1: sent 2 bytes, received 2 bytes: \"hi\"\n"
        );
    }

    fn dump(interrupted: bool) -> Dump {
        Dump {
            target: Target::Family(25),
            json_target: Target::Family(25).json(),
            portid: 1234,
            seq: 1,
            entries: vec![
                Entry {
                    id: 1,
                    portid: 1230,
                    msg: b"hello".to_vec(),
                },
                Entry {
                    id: 2,
                    portid: 1231,
                    msg: b"hello \"netlink\"".to_vec(),
                },
            ],
            interrupted,
        }
    }

    #[test]
    fn dump_and_subscribe_switches() {
        let args = parse(&["--module", "genl", "--dump"]).expect("parses");
        assert!(args.dump && check_usage(&args, "unit").is_ok());
        let args = parse(&["--dump"]).expect("parses");
        assert_eq!(
            check_usage(&args, "unit").unwrap_err(),
            "--dump applies to generic netlink only: the raw units keep no log"
        );
        let args = parse(&["--module", "genl", "--unit", "3"]).expect("parses");
        assert_eq!(check_usage(&args, "unit").unwrap_err(), "unit");
        for bad in [
            &["--dump", "--subscribe"][..],
            &["--dump", "--count", "2"],
            &["--dump", "hi"],
            &["--dump", "--ack"],
            &["--subscribe", "--size", "3"],
            &["--subscribe", "hi"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let args = parse(&["--subscribe", "--count", "2", "--module", "kthread"]).expect("parses");
        assert!(args.subscribe && args.count == Some(2));
    }

    #[test]
    fn dump_lines() {
        let args = parse(&["--module", "genl", "--dump"]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        assert_eq!(
            out.dump_text(&dump(false)),
            "module genl: family my_genl id 25, portid 1234\n\
             entry id 1 portid 1230: \"hello\"\n\
             entry id 2 portid 1231: \"hello \\\"netlink\\\"\"\n\
             done seq 1: 2 entries\n"
        );
        assert!(out
            .dump_text(&dump(true))
            .ends_with("done seq 1: 2 entries, interrupted\n"));
        assert_eq!(
            out.json_dump(&dump(false)),
            r#"{"client":"raw","module":"genl","family_id":25,"portid":1234,"ok":true,"seq":1,"entries":[{"id":1,"portid":1230,"msg":"hello"},{"id":2,"portid":1231,"msg":"hello \"netlink\""}],"interrupted":false}"#
        );
        assert!(out.json_dump(&dump(true)).ends_with(
            r#""interrupted":true,"error":"the echo log changed during the dump (NLM_F_DUMP_INTR): run it again"}"#
        ));
    }

    #[test]
    fn subscription_lines() {
        let args = parse(&["--module", "genl", "--subscribe"]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        let group = Group::Genl {
            name: "events".into(),
            id: 26,
        };
        assert_eq!(
            out.header(Target::Family(25), 1234, Some(&group)),
            "module genl: family my_genl id 25, group events id 26, portid 1234\n"
        );
        let event = Event::Genl(Entry {
            id: 3,
            portid: 1240,
            msg: b"hello".to_vec(),
        });
        assert_eq!(
            out.event_line(&event),
            "event id 3 portid 1240: \"hello\"\n"
        );
        let raw = Event::Raw {
            seq: 5,
            portid: 1240,
            payload: b"hello".to_vec(),
        };
        assert_eq!(out.event_line(&raw), "event seq 5 portid 1240: \"hello\"\n");
        let args = parse(&["--subscribe"]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        assert_eq!(
            out.header(Target::Unit(31), 1234, Some(&Group::Raw(1))),
            "module raw: netlink unit 31, group 1, portid 1234\n"
        );
        let args = parse(&["--subscribe", "--json"]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        assert_eq!(
            out.event_line(&event),
            "{\"event\":{\"id\":3,\"portid\":1240,\"msg\":\"hello\"}}\n"
        );
        assert_eq!(
            out.event_line(&raw),
            "{\"event\":{\"seq\":5,\"portid\":1240,\"msg\":\"hello\"}}\n"
        );
    }

    #[test]
    fn follow_stops_after_count_and_goes_on_after_lost_events() {
        let args = parse(&["--subscribe", "--count", "2"]).expect("parses");
        let out = Output::new("user-raw", "raw", &args);
        let raw = |seq| {
            Notice::Event(Event::Raw {
                seq,
                portid: 1,
                payload: Vec::new(),
            })
        };
        let mut notices = vec![raw(1), Notice::Lost, raw(2), raw(3)].into_iter();
        let mut calls = 0;
        let code = out.follow(|| {
            calls += 1;
            Ok(notices.next().expect("no more than asked for"))
        });
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(calls, 3, "two events and the lost notice");
        let code = out.follow(|| anyhow::bail!("gone"));
        assert_eq!(code, ExitCode::FAILURE);
    }

    /// A client whose echo returns what it is given, or garbles it.
    struct Loopback {
        seq: u32,
        garble_at: u32,
    }

    impl Echo for Loopback {
        fn target(&self) -> Target {
            Target::Unit(31)
        }
        fn portid(&self) -> u32 {
            9
        }
        fn echo_once(&mut self, payload: &str, _ack: bool) -> anyhow::Result<Vec<u8>> {
            self.seq += 1;
            match self.seq {
                seq if seq == self.garble_at => Ok(b"x".to_vec()),
                _ => Ok(payload.as_bytes().to_vec()),
            }
        }
        fn last_seq(&self) -> u32 {
            self.seq
        }
    }

    #[test]
    fn echo_many_checks_every_reply() {
        let args = parse(&["--count", "3", "--size", "5"]).expect("parses");
        let mut ok = Loopback {
            seq: 0,
            garble_at: 0,
        };
        let r = echo_many(&args, &mut ok).expect("echoes");
        assert_eq!((r.first_seq, r.sent, r.round_trips), (1, 5, 3));
        assert_eq!((r.reply.as_slice(), r.portid), (&b"abcde"[..], 9));
        assert_eq!(r.json_target, Fields::new().num("unit", 31));
        let mut bad = Loopback {
            seq: 0,
            garble_at: 2,
        };
        let err = echo_many(&args, &mut bad).err().expect("fails");
        assert_eq!(
            format!("{err:#}"),
            "echo seq 2: the reply differs from the request (sent 5 bytes, received 1 bytes)"
        );
    }
}
