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
//! The switches and the lines are those of all three clients, in the
//! `rosetta_cli` crate; this file holds what is particular to the library:
//! connecting, the echo, and how its errors map.

use std::process::ExitCode;

use clap::Parser;
use rosetta_cli::{echo_many, Echo, Module, Output, Target};
use user_libnl_style::{echo_genl, echo_raw, NlSock};

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
    if cli.args.module == Module::Genl && cli.args.unit.is_some() {
        return out.usage_error(
            "--unit does not apply to --module genl: generic netlink families are found by name",
        );
    }
    out.finish(connect(&cli).and_then(|mut client| echo_many(&cli.args, &mut client)))
}

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

    #[test]
    fn the_switches_are_rosetta_clis() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["user-libnl-style", "--size", "3", "hi"]).is_err());
        let cli = Cli::try_parse_from(["user-libnl-style", "--module", "genl", "--ack", "hi"])
            .expect("parses");
        assert!(cli.args.module == Module::Genl && cli.args.ack);
    }
}
