//! The echo log of `kmod-genl` and the notifications, through neli: `GET`
//! as a `do` ([`GenlClient::get`]) and as a dump ([`GenlClient::dump`]:
//! `NlmF::DUMP`, then neli's receive iterator until `NLMSG_DONE`), and the
//! multicast groups ([`GenlClient::subscribe`], [`RawClient::subscribe`]:
//! `NlRouter::resolve_nl_mcast_group`, `add_mcast_membership`, and the
//! multicast handle that `NlRouter::connect` returns).
//!
//! neli quirks of this part (neli 0.7.5):
//!
//! 8. **The router's multicast handle needs `nl_groups`.** The router
//!    thread sends a message to the multicast handle when `recvfrom()`'s
//!    address has a non-zero `nl_groups`; the kernel puts the group's bit
//!    there only for groups 1 to 32. A notification of a generic netlink
//!    group above 32 would go to the request handles instead (as a
//!    `BadSeqOrPid`), and the subscription would never see it.
//!    [`GenlClient::subscribe`] refuses such a group in router mode. The
//!    same happens to a raw unit's copies when the kernel sends them with a
//!    bare `netlink_broadcast()`, which leaves `NETLINK_CB(skb).dst_group`
//!    (and so `nl_groups`) 0; `nlmsg_multicast()` and generic netlink's
//!    `genlmsg_multicast()` set it. Socket mode does not look at it.
//! 9. **The router hides lost events.** An ENOBUFS from `recvfrom()` goes
//!    to the pending requests only; the multicast handle never hears of it.
//!    In router mode a subscriber cannot report lost events; socket mode
//!    receives itself and reports them ([`Error::Overrun`]).
//! 10. A dump's `NLMSG_DONE` comes out of neli as
//!     `NlPayload::DumpExtAck`, whose `error()` is the dump's result: the
//!     router does not turn a negative one into an error, so we do.

use std::io::{self, Cursor};
use std::sync::Arc;

use neli::consts::genl::{CtrlAttr, CtrlAttrMcastGrp, Index};
use neli::consts::nl::{GenlId, NlmF, Nlmsg};
use neli::consts::socket::Msg;
use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, NlattrBuilder, NoUserHeader};
use neli::nl::{NlPayload, Nlmsghdr};
use neli::router::synchronous::{NlRouter, NlRouterReceiverHandle};
use neli::types::{Buffer, GenlBuffer};
use neli::utils::Groups;
use neli::FromBytesWithInput;

use crate::{
    getfamily_request, kernel_error, neli_error, neli_parse, next_message, router_error,
    set_recv_timeout, until_nul, Conn, CtrlMsg, Error, GenlClient, MyGenlAttr, MyGenlCmd,
    MyGenlMsg, RawClient, RequestError, SocketConn, Transport,
};

/// The multicast receiver of `NlRouter::connect`.
pub(crate) type MulticastHandle = NlRouterReceiverHandle<u16, Genlmsghdr<u8, u16, NoUserHeader>>;

/// One entry of the echo log, as `GET` and `EVENT` carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    /// The port id of the socket that sent the echo.
    pub portid: u32,
    /// `MSG` up to its NUL.
    pub msg: Vec<u8>,
}

/// What [`GenlClient::dump`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDump {
    /// The sequence number of the dump request.
    pub seq: u32,
    pub entries: Vec<Entry>,
    /// A message carried `NlmF::DUMP_INTR`: the log changed during the
    /// dump, entries may be missing or repeated; run it again.
    pub interrupted: bool,
}

/// A notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A generic netlink `EVENT`: the new log entry.
    Genl(Entry),
    /// A raw unit's copy of an echo reply: its seq, `nlmsg_pid` (the
    /// requester) and payload.
    Raw {
        seq: u32,
        portid: u32,
        payload: Vec<u8>,
    },
}

/// The entry of a `GET` reply or dump message, or of an `EVENT` (`cmd`),
/// with neli's attribute handle: all three attributes are required.
pub(crate) fn entry_of(msg: &MyGenlMsg, cmd: MyGenlCmd) -> Result<Entry, Error> {
    if *msg.cmd() != cmd {
        return Err(Error::Unexpected(format!(
            "message with command {:?}, expected {cmd:?}",
            msg.cmd()
        )));
    }
    let attrs = msg.attrs().get_attr_handle();
    let u32_of = |attr: MyGenlAttr| {
        attrs
            .get_attr_payload_as::<u32>(attr)
            .map_err(|e| Error::Unexpected(format!("log entry: attribute {attr:?}: {e}")))
    };
    let msg = attrs
        .get_attribute(MyGenlAttr::Msg)
        .ok_or_else(|| Error::Unexpected("log entry without a MSG attribute".into()))?;
    Ok(Entry {
        id: u32_of(MyGenlAttr::Id)?,
        portid: u32_of(MyGenlAttr::Portid)?,
        msg: until_nul(msg.nla_payload().as_ref()).to_vec(),
    })
}

fn get_entry_of(reply: &MyGenlMsg) -> Result<Entry, Error> {
    entry_of(reply, MyGenlCmd::Get)
}

/// `GET` with `ID` if given (a `do`), or nothing (a dump's request).
fn get_request(id: Option<u32>) -> Result<MyGenlMsg, Error> {
    let mut attrs = GenlBuffer::new();
    if let Some(id) = id {
        let attr = NlattrBuilder::default()
            .nla_type(
                AttrTypeBuilder::default()
                    .nla_type(MyGenlAttr::Id)
                    .build()
                    .map_err(neli_error)?,
            )
            .nla_payload(id)
            .build()
            .map_err(neli_error)?;
        attrs.push(attr);
    }
    GenlmsghdrBuilder::default()
        .cmd(MyGenlCmd::Get)
        .version(proto::GENL_FAMILY_VERSION)
        .attrs(attrs)
        .build()
        .map_err(neli_error)
}

/// One message of a dump, as both modes see it: an entry, the end, or
/// something to skip. Notes `NlmF::DUMP_INTR` in `dump`.
pub(crate) fn dump_message(
    message: &Nlmsghdr<u16, MyGenlMsg>,
    dump: &mut LogDump,
) -> Result<bool, Error> {
    dump.interrupted |= message.nl_flags().contains(NlmF::DUMP_INTR);
    match message.nl_payload() {
        NlPayload::Payload(p) => {
            dump.entries.push(entry_of(p, MyGenlCmd::Get)?);
            Ok(false)
        }
        // NLMSG_DONE with its int: the dump's result (quirk 10).
        NlPayload::DumpExtAck(done) if *done.error() != 0 => Err(kernel_error(done)),
        NlPayload::DumpExtAck(_) => Ok(true),
        NlPayload::Empty => Ok(*message.nl_type() == u16::from(Nlmsg::Done)),
        NlPayload::Err(err) => Err(kernel_error(err)),
        NlPayload::Ack(_) => Ok(false),
    }
}

// ANCHOR: router_dump
/// [`crate::Mode::Router`]: `NlRouter::send` with `NlmF::DUMP`; its handle
/// yields every message of the dump, `NLMSG_DONE` last (the router ends
/// the handle there), each parsed as a `my_genl` message.
fn router_dump(
    router: &NlRouter,
    seq: u32,
    family_id: u16,
    request: MyGenlMsg,
) -> Result<LogDump, RequestError<MyGenlMsg>> {
    let mut answers = router
        .send::<u16, MyGenlMsg, u16, MyGenlMsg>(family_id, NlmF::DUMP, NlPayload::Payload(request))
        .map_err(RequestError::Router)?;
    let mut dump = LogDump {
        seq,
        entries: Vec::new(),
        interrupted: false,
    };
    let mut done = false;
    while let Some(message) = neli_parse(|| answers.next())? {
        let message = message.map_err(RequestError::Router)?;
        done |= dump_message(&message, &mut dump)?;
    }
    if !done {
        return Err(Error::Unexpected("the dump ended without NLMSG_DONE".into()).into());
    }
    Ok(dump)
}
// ANCHOR_END: router_dump

impl SocketConn {
    /// [`crate::Mode::Socket`]: send the dump request with `self.seq`, then
    /// receive datagrams and parse them with neli until `NLMSG_DONE`.
    fn dump(
        &mut self,
        family_id: u16,
        request: MyGenlMsg,
        each: &mut dyn FnMut(&Entry),
    ) -> Result<LogDump, RequestError<MyGenlMsg>> {
        let seq = self.send_request(family_id, NlmF::DUMP, request)?;
        let mut dump = LogDump {
            seq,
            entries: Vec::new(),
            interrupted: false,
        };
        loop {
            let len = self.recv_datagram()?;
            let mut datagram = Cursor::new(&self.recv_buf[..len]);
            while let Some(message) = next_message::<MyGenlMsg>(&mut datagram)? {
                if *message.nl_seq() != seq {
                    continue;
                }
                let before = dump.entries.len();
                let done = dump_message(&message, &mut dump)?;
                dump.entries[before..].iter().for_each(&mut *each);
                if done {
                    return Ok(dump);
                }
            }
        }
    }
}

impl Conn {
    /// A dump of the echo log, in either mode, as [`Conn::request`] does a
    /// request.
    fn dump(&mut self, family_id: u16, each: &mut dyn FnMut(&Entry)) -> Result<LogDump, Error> {
        let (unit, timeout) = (self.unit, self.timeout);
        let request = get_request(None)?;
        if let Transport::Socket(conn) = &mut self.transport {
            conn.seq = conn.seq.checked_add(1).unwrap_or(1);
            self.last_seq = conn.seq;
            return conn
                .dump(family_id, request, each)
                .map_err(|e| e.into_error(unit, timeout));
        }
        let dump = self.on_router(move |router, seq| {
            router_dump(router, seq, family_id, request).map_err(|e| e.into_error(unit, timeout))
        })?;
        dump.entries.iter().for_each(each);
        Ok(dump)
    }

    /// Join multicast group `group` and turn the connection into a
    /// [`Subscriber`] of `family`'s events (`None`: a raw unit's).
    fn subscribe(self, group: u32, family: Option<u16>) -> Result<Subscriber, Error> {
        let (unit, portid) = (self.unit, self.portid);
        let timeout = self.timeout;
        let source = match self.transport {
            Transport::Router {
                router,
                mut multicast,
                ..
            } => {
                router
                    .add_mcast_membership(Groups::new_groups(&[group]))
                    .map_err(|e| router_error(e, unit, timeout))?;
                let events = multicast
                    .take()
                    .ok_or_else(|| neli_error("the router's multicast handle is gone"))?;
                Source::Router {
                    _router: router,
                    events,
                }
            }
            Transport::Socket(conn) => {
                conn.sock
                    .add_mcast_membership(Groups::new_groups(&[group]))
                    .map_err(|source| Error::Os {
                        call: "setsockopt(NETLINK_ADD_MEMBERSHIP)",
                        source,
                    })?;
                set_recv_timeout(&conn.sock, std::time::Duration::ZERO)?; // wait for ever
                Source::Socket(conn)
            }
        };
        Ok(Subscriber {
            source,
            family,
            portid,
            group,
        })
    }
}

/// `CTRL_ATTR_MCAST_GROUPS` of the controller's reply, with neli's nested
/// attribute handles (as `NlRouter::resolve_nl_mcast_group` reads them):
/// (name, id) of each group.
pub(crate) fn mcast_groups_of(reply: &CtrlMsg) -> Result<Vec<(String, u32)>, Error> {
    // neli parses the nests here, lazily: through neli_parse (quirk 6).
    neli_parse(|| mcast_groups_unguarded(reply))?
}

fn mcast_groups_unguarded(reply: &CtrlMsg) -> Result<Vec<(String, u32)>, Error> {
    let attrs = reply.attrs().get_attr_handle();
    let Ok(groups) = attrs.get_nested_attributes::<Index>(CtrlAttr::McastGroups) else {
        return Ok(Vec::new()); // a family without groups
    };
    let mut out = Vec::new();
    for group in groups.iter() {
        let fields = group
            .get_attr_handle::<CtrlAttrMcastGrp>()
            .map_err(neli_error)?;
        let name = fields
            .get_attr_payload_as_with_len::<String>(CtrlAttrMcastGrp::Name)
            .map_err(neli_error)?;
        let id = fields
            .get_attr_payload_as::<u32>(CtrlAttrMcastGrp::Id)
            .map_err(neli_error)?;
        out.push((name, id));
    }
    Ok(out)
}

impl GenlClient {
    /// `GET` one entry of the echo log (`do`): `Some(id)` sends `ID`;
    /// `None` sends no attribute, which the family refuses (EINVAL).
    pub fn get(&mut self, id: Option<u32>) -> Result<Entry, Error> {
        let request = get_request(id)?;
        self.conn
            .request(self.family_id, NlmF::empty(), request, get_entry_of)
    }

    /// Dump the echo log: `GET` with `NlmF::DUMP`, every message until
    /// `NLMSG_DONE`.
    pub fn dump(&mut self) -> Result<LogDump, Error> {
        self.conn.dump(self.family_id, &mut |_| {})
    }

    /// [`GenlClient::dump`], calling `each` on every entry: in socket mode
    /// as each datagram is parsed, before the next is received (the kernel
    /// builds the next datagram of a dump when the previous one is read);
    /// in router mode at the end, since the router's thread reads the
    /// datagrams as they come.
    pub fn dump_each(&mut self, mut each: impl FnMut(&Entry)) -> Result<LogDump, Error> {
        self.conn.dump(self.family_id, &mut each)
    }

    /// [`crate::Mode::Socket`] only: receive into a buffer of `len` bytes
    /// instead of neli's 32 KiB; a datagram that does not fit is an error
    /// naming the buffer's size. The router receives into neli's own
    /// buffer, which cannot be changed.
    pub fn set_recv_buffer_len(&mut self, len: usize) -> Result<(), Error> {
        match &mut self.conn.transport {
            Transport::Socket(conn) => {
                conn.recv_buf = vec![0; len].into_boxed_slice();
                Ok(())
            }
            Transport::Router { .. } => Err(Error::Unexpected(
                "the router receives into neli's own buffer".into(),
            )),
        }
    }

    // ANCHOR: subscribe
    /// The id of the family's multicast group `group`: in router mode
    /// neli's `NlRouter::resolve_nl_mcast_group`; in socket mode the same
    /// `CTRL_CMD_GETFAMILY` and the same nested attributes, by hand.
    pub fn resolve_group(&mut self, group: &str) -> Result<u32, Error> {
        let family = self.family.clone();
        let groups = match self.conn.mode() {
            crate::Mode::Router => {
                let (family, group) = (family.clone(), group.to_string());
                let timeout = self.conn.timeout;
                return self.conn.on_router(move |router, _seq| {
                    neli_parse(|| router.resolve_nl_mcast_group(&family, &group))?
                        .map_err(|e| router_error(e, libc::NETLINK_GENERIC, timeout))
                });
            }
            crate::Mode::Socket => {
                let request = getfamily_request(&family)?;
                self.conn
                    .request(GenlId::Ctrl.into(), NlmF::empty(), request, mcast_groups_of)?
            }
        };
        groups
            .into_iter()
            .find(|(name, _)| name == group)
            .map(|(_, id)| id)
            .ok_or_else(|| {
                Error::Unexpected(format!("family {family} has no multicast group {group}"))
            })
    }

    /// Join multicast group `group` of the family (`add_mcast_membership`)
    /// and return the [`Subscriber`] of its `EVENT`s.
    pub fn subscribe(mut self, group: &str) -> Result<Subscriber, Error> {
        let id = self.resolve_group(group)?;
        if self.conn.mode() == crate::Mode::Router && id > 32 {
            return Err(Error::Unexpected(format!(
                "group {group} has id {id}: neli's router hands only groups 1 to 32 to its multicast handle (use --mode socket)"
            )));
        }
        self.conn.subscribe(id, Some(self.family_id))
    }
    // ANCHOR_END: subscribe
}

impl RawClient {
    /// Join the unit's group ([`proto::RAW_GROUP`]) and return the
    /// [`Subscriber`] of its copies of echo replies.
    pub fn subscribe(self) -> Result<Subscriber, Error> {
        self.conn.subscribe(proto::RAW_GROUP, None)
    }
}

/// Where a [`Subscriber`] gets its messages.
enum Source {
    /// The router's multicast handle; the router itself is kept alive.
    Router {
        _router: Arc<NlRouter>,
        events: MulticastHandle,
    },
    /// Our own receive on neli's low-level socket.
    Socket(SocketConn),
}

/// A socket that joined a multicast group: [`Subscriber::next_events`].
pub struct Subscriber {
    source: Source,
    /// `Some(id)`: a generic netlink family's `EVENT`s; `None`: a raw unit's.
    family: Option<u16>,
    portid: u32,
    group: u32,
}

impl Subscriber {
    /// The socket's port id.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// The group joined: the generic netlink group's id, or the raw unit's
    /// group number.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// Wait for the next notification(s): one datagram in socket mode, one
    /// message in router mode. ENOBUFS (events lost) is [`Error::Overrun`]
    /// in socket mode; the socket goes on (quirk 9 for the router).
    pub fn next_events(&mut self) -> Result<Vec<Event>, Error> {
        let family = self.family;
        match &mut self.source {
            Source::Router { events, .. } => {
                let message = neli_parse(|| events.next_typed::<u16, Buffer>())?
                    .ok_or_else(|| neli_error("the router's multicast channel closed"))?
                    .map_err(neli_error)?;
                Ok(event_of(&message, family)?.into_iter().collect())
            }
            Source::Socket(conn) => {
                let len = loop {
                    match conn.sock.recv(&mut *conn.recv_buf, Msg::TRUNC) {
                        Ok((len, _)) if len <= conn.recv_buf.len() => break len,
                        Ok((len, _)) => {
                            return Err(Error::Unexpected(format!(
                                "datagram of {len} bytes truncated to the {} bytes of the receive buffer",
                                conn.recv_buf.len()
                            )))
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            return Err(Error::Overrun)
                        }
                        Err(source) => {
                            return Err(Error::Os {
                                call: "recvfrom",
                                source,
                            })
                        }
                    }
                };
                events_of_datagram(&conn.recv_buf[..len], family)
            }
        }
    }
}

/// The events of one received datagram, parsed with neli.
pub(crate) fn events_of_datagram(
    datagram: &[u8],
    family: Option<u16>,
) -> Result<Vec<Event>, Error> {
    let mut cursor = Cursor::new(datagram);
    let mut events = Vec::new();
    while let Some(message) = next_message::<Buffer>(&mut cursor)? {
        events.extend(event_of(&message, family)?);
    }
    Ok(events)
}

/// A notification, if `message` is one: of `family` with command `EVENT`,
/// or, for a raw unit, any message that is not a control message.
fn event_of(message: &Nlmsghdr<u16, Buffer>, family: Option<u16>) -> Result<Option<Event>, Error> {
    let NlPayload::Payload(payload) = message.nl_payload() else {
        return Ok(None); // control messages
    };
    let ty = *message.nl_type();
    if (1..=4).contains(&ty) {
        return Ok(None); // NLMSG_NOOP .. NLMSG_OVERRUN
    }
    let Some(family) = family else {
        return Ok(Some(Event::Raw {
            seq: *message.nl_seq(),
            portid: *message.nl_pid(),
            payload: payload.as_ref().to_vec(),
        }));
    };
    if ty != family {
        return Ok(None);
    }
    let bytes = payload.as_ref();
    let genl =
        neli_parse(|| MyGenlMsg::from_bytes_with_input(&mut Cursor::new(bytes), bytes.len()))?
            .map_err(neli_error)?;
    if *genl.cmd() != MyGenlCmd::Event {
        return Ok(None);
    }
    entry_of(&genl, MyGenlCmd::Event).map(|e| Some(Event::Genl(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosetta_fuzzgen::{genlmsghdr, message, tlv, NLMSG_DONE, NLM_F_MULTI, TRUTH};

    const FAMILY: u16 = 0x19;

    fn entry_attrs(id: u32, text: &str) -> Vec<u8> {
        [
            tlv(proto::GENL_ATTR_ID, &id.to_ne_bytes(), TRUTH),
            tlv(
                proto::GENL_ATTR_MSG,
                &[text.as_bytes(), b"\0"].concat(),
                TRUTH,
            ),
            tlv(proto::GENL_ATTR_PORTID, &(1000 + id).to_ne_bytes(), TRUTH),
        ]
        .concat()
    }

    fn genl(cmd: u8, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
        message(
            FAMILY,
            flags,
            seq,
            &[genlmsghdr(cmd, 1), attrs.to_vec()].concat(),
            TRUTH,
        )
    }

    fn entry(id: u32, text: &str) -> Entry {
        Entry {
            id,
            portid: 1000 + id,
            msg: text.as_bytes().to_vec(),
        }
    }

    /// The dump loop of socket mode on crafted datagrams: `dump_message` on
    /// each message of `seq` that neli parses.
    fn dump_of(datagrams: &[Vec<u8>], seq: u32) -> (LogDump, Result<bool, String>) {
        let mut dump = LogDump {
            seq,
            entries: Vec::new(),
            interrupted: false,
        };
        for d in datagrams {
            let mut cursor = Cursor::new(&d[..]);
            loop {
                match next_message::<MyGenlMsg>(&mut cursor) {
                    Ok(None) => break,
                    Ok(Some(m)) if *m.nl_seq() != seq => continue,
                    Ok(Some(m)) => match dump_message(&m, &mut dump) {
                        Ok(true) => return (dump, Ok(true)),
                        Ok(false) => {}
                        Err(e) => return (dump, Err(e.to_string())),
                    },
                    Err(e) => return (dump, Err(e.to_string())),
                }
            }
        }
        (dump, Ok(false))
    }

    fn done(seq: u32, flags: u16, errno: i32) -> Vec<u8> {
        message(
            NLMSG_DONE,
            NLM_F_MULTI | flags,
            seq,
            &errno.to_ne_bytes(),
            TRUTH,
        )
    }

    #[test]
    fn a_dump_over_two_datagrams_until_done() {
        let first = [
            genl(2, NLM_F_MULTI, 3, &entry_attrs(1, "hello")),
            genl(2, NLM_F_MULTI, 3, &entry_attrs(2, "hello netlink")),
        ]
        .concat();
        let second = [
            genl(2, NLM_F_MULTI, 2, &entry_attrs(9, "stale")),
            genl(2, NLM_F_MULTI | 0x10, 3, &entry_attrs(3, "")),
            done(3, 0, 0),
        ]
        .concat();
        let (dump, result) = dump_of(std::slice::from_ref(&first), 3);
        assert_eq!((dump.entries.len(), result), (2, Ok(false)));
        let (dump, result) = dump_of(&[first, second], 3);
        assert_eq!(result, Ok(true));
        assert_eq!(
            dump.entries,
            [entry(1, "hello"), entry(2, "hello netlink"), entry(3, "")]
        );
        assert!(dump.interrupted, "NLM_F_DUMP_INTR on the third message");
    }

    #[test]
    fn a_done_with_an_errno_fails_the_dump() {
        let (_, result) = dump_of(&[done(3, 0, -libc::ENOMEM)], 3);
        assert_eq!(
            result,
            Err("kernel replied ENOMEM (errno 12): Cannot allocate memory".into())
        );
        let (dump, result) = dump_of(&[done(3, 0x10, 0)], 3);
        assert_eq!(result, Ok(true));
        assert!(dump.interrupted);
    }

    #[test]
    fn truncated_dumps_and_incomplete_entries_are_errors() {
        let whole = genl(2, NLM_F_MULTI, 3, &entry_attrs(1, "hello"));
        let (_, result) = dump_of(&[whole[..whole.len() - 8].to_vec()], 3);
        assert!(result.is_err(), "{result:?}");
        let no_portid = [
            tlv(proto::GENL_ATTR_ID, &1u32.to_ne_bytes(), TRUTH),
            tlv(proto::GENL_ATTR_MSG, b"x\0", TRUTH),
        ]
        .concat();
        let (_, result) = dump_of(&[genl(2, NLM_F_MULTI, 3, &no_portid)], 3);
        assert!(result
            .unwrap_err()
            .starts_with("unexpected reply: log entry: attribute Portid"));
        let (_, result) = dump_of(&[genl(1, NLM_F_MULTI, 3, &entry_attrs(1, "x"))], 3);
        assert_eq!(
            result,
            Err("unexpected reply: message with command Echo, expected Get".into())
        );
    }

    #[test]
    fn events_of_the_family_and_raw_copies() {
        let datagram = [
            genl(3, 0, 0, &entry_attrs(3, "hello")),
            message(0x33, 0, 0, &genlmsghdr(3, 1), TRUTH), // another family
            genl(1, 0, 0, &[]),                            // not an EVENT
            genl(3, 0, 0, &entry_attrs(4, "hi")),
        ]
        .concat();
        assert_eq!(
            events_of_datagram(&datagram, Some(FAMILY)).unwrap(),
            [Event::Genl(entry(3, "hello")), Event::Genl(entry(4, "hi"))]
        );
        let raw = message(proto::ECHO_MSG_TYPE, 0, 5, b"hello", TRUTH);
        assert_eq!(
            events_of_datagram(&raw, None).unwrap(),
            [Event::Raw {
                seq: 5,
                portid: 0,
                payload: b"hello".to_vec()
            }]
        );
        assert!(events_of_datagram(&raw[..raw.len() - 4], None).is_err());
    }
}
