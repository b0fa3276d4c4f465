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
//! The switches and the lines are those of all three clients, in the
//! `rosetta_cli` crate; this file holds what is particular to the library:
//! connecting, the echo, and how its errors map.

use std::process::ExitCode;

use clap::Parser;
use rosetta_cli::{echo_many, Echo, Module, Output, Target};
use user_raw::Socket;

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
    if cli.args.module == Module::Genl && cli.args.unit.is_some() {
        return out.usage_error(
            "--unit does not apply to --module genl: generic netlink families are found by name",
        );
    }
    out.finish(connect(&cli).and_then(|mut client| echo_many(&cli.args, &mut client)))
}

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

    #[test]
    fn the_switches_are_rosetta_clis() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["user-raw", "--size", "3", "hi"]).is_err());
        let cli =
            Cli::try_parse_from(["user-raw", "--module", "genl", "--ack", "hi"]).expect("parses");
        assert!(cli.args.module == Module::Genl && cli.args.ack);
    }
}
