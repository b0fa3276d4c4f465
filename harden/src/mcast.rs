//! Multicast listeners and dumps with plain libc sockets: the raw units'
//! group 1 (`proto::RAW_GROUP`) and kmod-genl's `events` group, whose id
//! comes from nlctrl (`CTRL_ATTR_MCAST_GROUPS`); and kmod-genl's GET dump.
//!
//! The client crates have no subscription or dump API of their own yet, so
//! the harness keeps this small one (socket, `NETLINK_ADD_MEMBERSHIP`,
//! `NETLINK_NO_ENOBUFS`, `SO_RCVBUF`, `poll` + `recv`).

use crate::clients::Module;
use anyhow::{bail, Context, Result};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;
use user_raw::genl::{GenlMsgHdr, CTRL_ATTR_FAMILY_NAME, CTRL_CMD_GETFAMILY, GENL_ID_CTRL};
use user_raw::{find_attr, put_nul_string, Socket, NLM_F_REQUEST};

/// `CTRL_ATTR_MCAST_GROUPS` and the attributes of each group in it.
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;

/// `NLM_F_MULTI` and `NLM_F_DUMP_INTR` (`include/uapi/linux/netlink.h`).
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP: u16 = 0x300;

/// Where `module` multicasts after each echo: the unit and the group
/// number (`NETLINK_ADD_MEMBERSHIP`'s argument). For genl, also the
/// family id.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    pub unit: i32,
    pub group: u32,
    pub family: Option<u16>,
}

impl Group {
    pub fn of(module: Module) -> Result<Group> {
        match module.unit() {
            Some(unit) => Ok(Group {
                unit,
                group: proto::RAW_GROUP,
                family: None,
            }),
            None => {
                let (family, group) = genl_events_group()?;
                Ok(Group {
                    unit: libc::NETLINK_GENERIC,
                    group,
                    family: Some(family),
                })
            }
        }
    }
}

/// kmod-genl's family id and the id of its `events` group, from nlctrl.
pub fn genl_events_group() -> Result<(u16, u32)> {
    let mut sock = Socket::connect_genl()?;
    let mut attrs = Vec::new();
    put_nul_string(
        &mut attrs,
        CTRL_ATTR_FAMILY_NAME,
        proto::GENL_FAMILY_NAME.as_bytes(),
    )?;
    let reply = sock.genl_request(
        GENL_ID_CTRL,
        0,
        GenlMsgHdr::new(CTRL_CMD_GETFAMILY, user_raw::genl::CTRL_VERSION),
        &attrs,
    )?;
    let family = find_attr(&reply.attrs, user_raw::genl::CTRL_ATTR_FAMILY_ID)?
        .context("GETFAMILY without a family id")?
        .u16()?;
    let groups = find_attr(&reply.attrs, CTRL_ATTR_MCAST_GROUPS)?
        .context("my_genl has no multicast groups")?;
    for group in groups.nested() {
        let group = group?;
        let name = find_attr(group.value, CTRL_ATTR_MCAST_GRP_NAME)?
            .context("a group without a name")?
            .nul_string()?;
        if name == proto::GENL_MCGRP_EVENTS.as_bytes() {
            let id = find_attr(group.value, CTRL_ATTR_MCAST_GRP_ID)?
                .context("a group without an id")?
                .u32()?;
            return Ok((family, id));
        }
    }
    bail!("my_genl has no group {:?}", proto::GENL_MCGRP_EVENTS)
}

/// A netlink socket of plain libc calls: a listener, or a client that
/// dumps.
pub struct Listener {
    fd: OwnedFd,
    pub portid: u32,
}

fn check(rc: libc::c_int, what: &str) -> Result<()> {
    if rc < 0 {
        bail!("{what}: {}", io::Error::last_os_error());
    }
    Ok(())
}

impl Listener {
    /// A socket on `unit`, bound, with `rcvbuf` (`SO_RCVBUF`; the kernel
    /// doubles it) if given.
    pub fn open(unit: i32, rcvbuf: Option<usize>) -> Result<Listener> {
        // SAFETY: plain syscall with integer arguments.
        let raw =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, unit) };
        check(raw, "socket(AF_NETLINK)")?;
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut l = Listener { fd, portid: 0 };
        if let Some(bytes) = rcvbuf {
            l.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes as libc::c_int)?;
        }
        // SAFETY: all-zero is a valid sockaddr_nl.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
        check(
            unsafe { libc::bind(l.fd.as_raw_fd(), (&raw const addr).cast(), len) },
            "bind",
        )?;
        let mut len = len;
        // SAFETY: `addr`/`len` are valid for writes of a sockaddr_nl.
        check(
            unsafe { libc::getsockname(l.fd.as_raw_fd(), (&raw mut addr).cast(), &mut len) },
            "getsockname",
        )?;
        l.portid = addr.nl_pid;
        Ok(l)
    }

    /// [`Listener::open`], then joins `group` (and, with `no_enobufs`, sets
    /// `NETLINK_NO_ENOBUFS`).
    pub fn subscribe(group: &Group, rcvbuf: Option<usize>, no_enobufs: bool) -> Result<Listener> {
        let l = Listener::open(group.unit, rcvbuf)?;
        l.setsockopt(
            libc::SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            group.group as libc::c_int,
        )?;
        if no_enobufs {
            l.setsockopt(libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1)?;
        }
        Ok(l)
    }

    fn setsockopt(&self, level: libc::c_int, opt: libc::c_int, value: libc::c_int) -> Result<()> {
        // SAFETY: `value` is a valid c_int and we pass its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                opt,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        check(rc, &format!("setsockopt({level}, {opt})"))
    }

    /// Sends one datagram to the kernel.
    pub fn send(&self, datagram: &[u8]) -> Result<()> {
        // SAFETY: all-zero is a valid sockaddr_nl (the kernel, nl_pid 0).
        let mut dest: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        dest.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `datagram` and `dest` are valid for the sizes passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&raw const dest).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            bail!("sendto: {}", io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram within `timeout`: `Ok(Some(len))`, `Ok(None)`
    /// when nothing came, or the error `recv` gave (ENOBUFS: the socket
    /// overran).
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `pfd` is one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Ok(None);
            }
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR | libc::EAGAIN) => continue,
                    _ => return Err(e),
                }
            }
            if n as usize > buf.len() {
                return Err(io::Error::other(format!(
                    "a datagram of {n} bytes truncated to {}",
                    buf.len()
                )));
            }
            return Ok(Some(n as usize));
        }
    }
}

/// One entry of kmod-genl's echo log, as GET and EVENT carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    pub msg: Vec<u8>,
    pub portid: u32,
}

/// The `ID`, `MSG` and `PORTID` of a GET reply, dump message or EVENT.
pub fn parse_entry(attrs: &[u8]) -> Result<Entry> {
    let u32_of = |ty| -> Result<u32> {
        Ok(find_attr(attrs, ty)?
            .with_context(|| format!("no attribute {ty}"))?
            .u32()?)
    };
    Ok(Entry {
        id: u32_of(proto::GENL_ATTR_ID)?,
        msg: find_attr(attrs, proto::GENL_ATTR_MSG)?
            .context("no MSG")?
            .nul_string()?
            .to_vec(),
        portid: u32_of(proto::GENL_ATTR_PORTID)?,
    })
}

/// The datagram of a GET dump request of kmod-genl (`family`), seq `seq`.
pub fn dump_request(family: u16, seq: u32) -> Result<Vec<u8>> {
    let mut request = Vec::new();
    user_raw::genl::encode_genl(
        &mut request,
        family,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        GenlMsgHdr::new(proto::GENL_CMD_GET, proto::GENL_FAMILY_VERSION),
        &[],
    )?;
    Ok(request)
}

/// Dumps kmod-genl's echo log through `sock` to its end: the entries,
/// oldest first, and whether any message carried `NLM_F_DUMP_INTR`.
pub fn dump_log(sock: &Listener, family: u16) -> Result<(Vec<Entry>, bool)> {
    sock.send(&dump_request(family, 1)?)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut entries = Vec::new();
    let mut intr = false;
    loop {
        let n = sock
            .recv(&mut buf, Duration::from_secs(20))?
            .context("the dump stopped before NLMSG_DONE")?;
        for msg in user_raw::messages(&buf[..n]) {
            let (hdr, body) = msg?;
            intr |= hdr.nlmsg_flags & NLM_F_DUMP_INTR != 0;
            match hdr.nlmsg_type {
                user_raw::NLMSG_DONE => return Ok((entries, intr)),
                user_raw::NLMSG_ERROR => {
                    let err = user_raw::parse_error(&hdr, body)?;
                    bail!("the dump failed: {} {:?}", err.error, err.extack)
                }
                ty if ty == family => {
                    if hdr.nlmsg_flags & NLM_F_MULTI == 0 {
                        bail!("a dump message without NLM_F_MULTI: {hdr:?}");
                    }
                    let msg = user_raw::GenlMsg::parse(hdr, body)?;
                    if msg.genl.cmd != proto::GENL_CMD_GET {
                        bail!("a dump message of command {}", msg.genl.cmd);
                    }
                    entries.push(parse_entry(&msg.attrs)?);
                }
                ty => bail!("a message of type {ty} in the dump"),
            }
        }
    }
}
