//! The three client libraries behind one interface, so that the floods,
//! the concurrency runs and the load cycles use every one of them.

use proto::GENL_FAMILY_NAME;
use std::time::Duration;
use user_genl::{GenlClient, Mode, RawClient};
use user_libnl_style::{echo_genl, echo_raw, NlSock};

pub use rosetta_cli::Module;

/// The module's `.ko`, to load and unload it.
pub fn kmod(module: Module) -> netlink_rosetta::Kmod {
    netlink_rosetta::Kmod(module.name())
}

/// A user-raw socket to `module`; for genl, with the family id resolved.
pub fn raw_socket(module: Module) -> Result<(user_raw::Socket, Option<u16>), user_raw::Error> {
    match module.unit() {
        Some(unit) => Ok((user_raw::Socket::connect(unit)?, None)),
        None => {
            let mut sock = user_raw::Socket::connect_genl()?;
            let family = sock.resolve_family(GENL_FAMILY_NAME)?.id;
            Ok((sock, Some(family)))
        }
    }
}

/// The client libraries: `user-raw`, `user-libnl-style`, and `user-genl`
/// (neli) through its router and through its plain socket.
#[derive(Clone, Copy, Debug)]
pub enum Lib {
    Raw,
    LibnlStyle,
    Neli,
    NeliSocket,
}

impl Lib {
    pub const ALL: [Lib; 4] = [Lib::Raw, Lib::LibnlStyle, Lib::Neli, Lib::NeliSocket];

    pub fn name(self) -> &'static str {
        match self {
            Lib::Raw => "raw",
            Lib::LibnlStyle => "libnl-style",
            Lib::Neli => "neli",
            Lib::NeliSocket => "neli-socket",
        }
    }
}

/// Why an echo failed: the module is not there (not loaded, or unloaded
/// under us), or anything else, which is a finding.
#[derive(Debug)]
pub enum Fail {
    Absent(String),
    Other(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Absent(e) => write!(f, "module absent: {e}"),
            Fail::Other(e) => f.write_str(e),
        }
    }
}

/// Sorts a client library's error: the three name the same cases alike.
macro_rules! sort_error {
    ($name:ident, $error:ty) => {
        fn $name(e: $error) -> Fail {
            type E = $error;
            match e {
                E::UnitUnavailable { .. }
                | E::FamilyNotFound { .. }
                | E::Kernel {
                    errno: libc::ENOENT,
                    ..
                } => Fail::Absent(e.to_string()),
                _ => Fail::Other(e.to_string()),
            }
        }
    };
}

sort_error!(from_raw, user_raw::Error);
sort_error!(from_libnl, user_libnl_style::Error);
sort_error!(from_neli, user_genl::Error);

/// A connected client of one library to one module.
pub enum Client {
    Raw(user_raw::Socket),
    RawGenl(user_raw::Socket, u16),
    Libnl(NlSock),
    LibnlGenl(NlSock, u16),
    Neli(RawClient),
    NeliGenl(GenlClient),
}

/// How long a client waits for an answer: generous, for the debug kernel.
pub const TIMEOUT: Duration = Duration::from_secs(20);

impl Client {
    /// Opens the socket and, for genl, resolves the family.
    pub fn connect(lib: Lib, module: Module) -> Result<Client, Fail> {
        let mode = |lib| match lib {
            Lib::NeliSocket => Mode::Socket,
            _ => Mode::Router,
        };
        let mut client = match (lib, module.unit()) {
            (Lib::Raw, _) => match raw_socket(module).map_err(from_raw)? {
                (sock, None) => Client::Raw(sock),
                (sock, Some(family)) => Client::RawGenl(sock, family),
            },
            (Lib::LibnlStyle, Some(unit)) => {
                Client::Libnl(NlSock::connect(unit).map_err(from_libnl)?)
            }
            (Lib::LibnlStyle, None) => {
                let mut sk = NlSock::genl_connect().map_err(from_libnl)?;
                let family = sk.genl_ctrl_resolve(GENL_FAMILY_NAME).map_err(from_libnl)?;
                Client::LibnlGenl(sk, family)
            }
            (Lib::Neli | Lib::NeliSocket, Some(unit)) => {
                Client::Neli(RawClient::connect(unit, mode(lib), TIMEOUT).map_err(from_neli)?)
            }
            (Lib::Neli | Lib::NeliSocket, None) => Client::NeliGenl(
                GenlClient::connect(GENL_FAMILY_NAME, mode(lib), TIMEOUT).map_err(from_neli)?,
            ),
        };
        client.set_timeout()?;
        Ok(client)
    }

    fn set_timeout(&mut self) -> Result<(), Fail> {
        match self {
            Client::Raw(s) | Client::RawGenl(s, _) => s.set_timeout(TIMEOUT).map_err(from_raw),
            Client::Libnl(s) | Client::LibnlGenl(s, _) => {
                s.set_timeout(TIMEOUT).map_err(from_libnl)
            }
            Client::Neli(_) | Client::NeliGenl(_) => Ok(()), // given to connect
        }
    }

    /// Echoes `text` and checks that the answer is exactly it.
    pub fn echo(&mut self, text: &str) -> Result<(), Fail> {
        let reply = match self {
            Client::Raw(s) => s.echo(text.as_bytes()).map_err(from_raw)?,
            Client::RawGenl(s, family) => {
                s.genl_echo(*family, text.as_bytes()).map_err(from_raw)?
            }
            Client::Libnl(s) => echo_raw(s, text.as_bytes()).map_err(from_libnl)?,
            Client::LibnlGenl(s, family) => echo_genl(s, *family, text)
                .map_err(from_libnl)?
                .into_bytes(),
            Client::Neli(c) => c.echo(text.as_bytes()).map_err(from_neli)?,
            Client::NeliGenl(c) => c.echo(text).map_err(from_neli)?.into_bytes(),
        };
        if reply != text.as_bytes() {
            return Err(Fail::Other(format!(
                "sent {text:?}, got back {:?}: another request's answer?",
                String::from_utf8_lossy(&reply)
            )));
        }
        Ok(())
    }
}
