//! Kernel-side fuzzing: seeded datagrams of well-formed, mutated and
//! malformed messages, and every answer checked against a model of what the
//! module owes.
//!
//! The generator ([`Gen`]) mixes: every message type (control types 1..4,
//! type 0, the echo type, random ones; for genl our family, unknown family
//! ids and control types), every combination of `NLM_F_REQUEST`, `ACK`,
//! `ECHO` and `DUMP` plus random flag bits, spoofed `nlmsg_pid`s, payloads
//! up to just past the 16 KiB limit, several messages per datagram, an
//! `nlmsg_len` below the header, past the datagram, unaligned or swallowing
//! the next message, and garbage tails. For genl it also builds the
//! attribute abuse: missing, empty, oversized, non-terminated or duplicated
//! `MSG`, unknown and zero attribute types, `NLA_F_NESTED` garbage, bad
//! `nla_len`s, leftover bytes, unknown commands, other family versions.
//!
//! The model ([`expect`]) walks each datagram the way `netlink_rcv_skb()`
//! does and predicts, message by message, the exact answers: an echo, an
//! ack, or an `NLMSG_ERROR` with its errno and extended-ack text (for genl,
//! those of the core's strict attribute validation). A received datagram
//! that differs, a missing answer or an extra one is a finding: the run
//! stops and prints the seed and the datagram, so that it replays.

use crate::mcast::Entry;
use anyhow::{bail, Context, Result};
use proto::{
    ECHO_LOG_LEN, ECHO_MSG_TYPE, GENL_ATTR_ID, GENL_ATTR_MAX, GENL_ATTR_MSG, GENL_ATTR_PORTID,
    GENL_CMD_ECHO, GENL_CMD_GET, MAX_MSG_LEN, MAX_PAYLOAD,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use user_raw::{
    messages, nla_align, nlmsg_align, parse_error, NlMsgHdr, Socket, NLMSG_ERROR, NLMSG_HDRLEN,
};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_ECHO: u16 = 0x8;
const NLM_F_DUMP: u16 = 0x300; // NLM_F_ROOT | NLM_F_MATCH
const NLM_F_MULTI: u16 = 0x2;
const NLMSG_MIN_TYPE: u16 = 0x10;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
/// Family ids no family has (ids are allocated from 0x10 up to 1023).
const UNKNOWN_FAMILIES: [u16; 3] = [0x7ff0, 0xfffe, 0xffff];

/// What is being fuzzed: a raw unit answered from the input callback
/// (kmod-raw), a raw unit answered by a thread (kmod-kthread), or the
/// generic netlink family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Raw,
    /// Like `Raw`, except the order: the callback answers what it rejects
    /// (EMSGSIZE, a full queue) at once, while echoes and acks wait in the
    /// queue, so an error can overtake the answers to earlier requests.
    /// Each request's own answers still come in order.
    Queued,
    Genl {
        family: u16,
    },
}

/// One answer the module owes, in the order it must arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Raw echo: the request's type, seq and payload, flags 0.
    Echo { ty: u16, seq: u32, payload: Vec<u8> },
    /// Genl echo: command ECHO with `MSG` = these bytes (up to the NUL).
    GenlEcho { seq: u32, msg: Vec<u8> },
    /// `NLMSG_ERROR` with error 0 for the request with this header.
    Ack { request: NlMsgHdr },
    /// `NLMSG_ERROR` with `-errno`, and this extended-ack text if `Some`.
    Error {
        request: NlMsgHdr,
        errno: i32,
        extack: Option<String>,
    },
    /// Genl GET: an entry of the echo log, as the reply to a `do` (flags
    /// 0) or as one message of a dump (`NLM_F_MULTI`).
    GenlEntry {
        family: u16,
        seq: u32,
        entry: Entry,
        multi: bool,
    },
    /// The `NLMSG_DONE` that ends a dump, error 0.
    Done { seq: u32 },
}

impl Expect {
    /// Whether this answer is part of a dump: the kernel sends a dump's
    /// first datagram from `sendmsg()` and the others from `recvmsg()`, so
    /// the answers to the requests after it in the same datagram may come
    /// between them. Each stream keeps its own order.
    fn in_dump(&self) -> bool {
        matches!(
            self,
            Expect::GenlEntry { multi: true, .. } | Expect::Done { .. }
        )
    }
}

/// kmod-genl's echo log, as the model keeps it: the last
/// `proto::ECHO_LOG_LEN` echoes, oldest first, and the id of the next.
#[derive(Clone, Debug)]
pub struct EchoLog {
    pub entries: VecDeque<Entry>,
    pub next_id: u32,
}

impl EchoLog {
    /// The log as a dump read it: ids are consecutive, so the next one
    /// follows the last (1 for an empty log: nothing was ever echoed).
    pub fn from_dump(entries: Vec<Entry>) -> EchoLog {
        let next_id = entries.last().map_or(1, |e| e.id.wrapping_add(1));
        EchoLog {
            entries: entries.into(),
            next_id,
        }
    }

    fn push(&mut self, msg: Vec<u8>, portid: u32) {
        self.entries.push_back(Entry {
            id: self.next_id,
            msg,
            portid,
        });
        if self.entries.len() > ECHO_LOG_LEN {
            self.entries.pop_front();
        }
        self.next_id = self.next_id.wrapping_add(1).max(1);
    }

    fn get(&self, id: u32) -> Option<&Entry> {
        let first = self.entries.front()?.id;
        self.entries.get(id.checked_sub(first)? as usize)
    }
}

/// The model with its state: for genl, the echo log (the fuzzing client
/// must be its only writer) and the fuzzing socket's port id, which the
/// log records.
pub struct Model {
    pub target: Target,
    pub log: EchoLog,
    pub portid: u32,
}

/// The messages of a datagram as `netlink_rcv_skb()` walks them: a message
/// whose `nlmsg_len` is below the header or past the datagram ends the
/// walk; the next message starts at `NLMSG_ALIGN(nlmsg_len)`, or nowhere if
/// that is past the end.
fn walk(datagram: &[u8]) -> impl Iterator<Item = (NlMsgHdr, &[u8])> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let header = NlMsgHdr::from_bytes(rest)?;
        let len = header.nlmsg_len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        rest = &rest[nlmsg_align(len).min(rest.len())..];
        Some((header, payload))
    })
}

impl Model {
    pub fn new(target: Target, log: EchoLog, portid: u32) -> Model {
        Model {
            target,
            log,
            portid,
        }
    }

    /// What the target answers to one datagram, message by message in the
    /// order of [`walk`]; the echoes it makes enter the log.
    pub fn expect(&mut self, datagram: &[u8]) -> Vec<Expect> {
        let mut answers = Vec::new();
        for (request, payload) in walk(datagram) {
            match self.target {
                Target::Raw | Target::Queued => expect_raw(&request, payload, &mut answers),
                Target::Genl { family } => {
                    self.expect_genl(family, &request, payload, &mut answers)
                }
            }
        }
        answers
    }
}

/// kmod-raw and kmod-kthread: requests as `netlink_rcv_skb()` sees them
/// (`NLM_F_REQUEST`, type 0x10 or above) and type 0 whatever its flags (the
/// articles' clients) are echoed, followed by an ack with `NLM_F_ACK`; a
/// payload over 16 KiB is EMSGSIZE. Any other message is only acked, with
/// `NLM_F_ACK` (`proto::raw_echoes`).
fn expect_raw(request: &NlMsgHdr, payload: &[u8], answers: &mut Vec<Expect>) {
    if !proto::raw_echoes(request.nlmsg_type, request.nlmsg_flags) {
        if request.nlmsg_flags & NLM_F_ACK != 0 {
            answers.push(Expect::Ack { request: *request });
        }
        return;
    }
    if payload.len() > MAX_PAYLOAD {
        answers.push(Expect::Error {
            request: *request,
            errno: libc::EMSGSIZE,
            extack: Some("payload longer than 16384 bytes".into()),
        });
        return;
    }
    answers.push(Expect::Echo {
        ty: request.nlmsg_type,
        seq: request.nlmsg_seq,
        payload: payload.to_vec(),
    });
    if request.nlmsg_flags & NLM_F_ACK != 0 {
        answers.push(Expect::Ack { request: *request });
    }
}

impl Model {
    /// kmod-genl, behind the generic netlink core: non-requests and control
    /// types are only acked (with `NLM_F_ACK`); unknown families ENOENT;
    /// then `genl_family_rcv_msg()`'s checks, the strict attribute
    /// validation of the command's policy (ECHO: `MSG`, a NUL-terminated
    /// string of at most 16384 bytes; GET: `ID`, a u32), and the handlers:
    /// ECHO logs and echoes, GET returns an entry or, as a dump, the whole
    /// log and `NLMSG_DONE`.
    fn expect_genl(
        &mut self,
        family: u16,
        request: &NlMsgHdr,
        payload: &[u8],
        answers: &mut Vec<Expect>,
    ) {
        let flags = request.nlmsg_flags;
        let error = |errno, extack: Option<&str>| Expect::Error {
            request: *request,
            errno,
            extack: extack.map(str::to_string),
        };
        if flags & NLM_F_REQUEST == 0 || request.nlmsg_type < NLMSG_MIN_TYPE {
            if flags & NLM_F_ACK != 0 {
                answers.push(Expect::Ack { request: *request });
            }
            return;
        }
        // genl_header_check(): for a family with resv_start_op 0, as ours,
        // every command's header is checked; the two DUMP bits count as one.
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let loose_flags = flags
            & !(if dump { NLM_F_DUMP } else { 0 })
            & !(NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO);
        let seq = request.nlmsg_seq;
        let answer = if request.nlmsg_type != family {
            error(libc::ENOENT, None)
        } else if payload.len() < user_raw::GENL_HDRLEN {
            error(libc::EINVAL, None)
        } else if payload[2..4] != [0, 0] {
            error(libc::EINVAL, Some("genlmsghdr.reserved field is not 0"))
        } else if loose_flags != 0 {
            error(
                libc::EINVAL,
                Some("ambiguous or reserved bits set in nlmsg_flags"),
            )
        } else {
            let attrs = &payload[user_raw::GENL_HDRLEN..];
            match (payload[0], dump) {
                (GENL_CMD_ECHO, false) => match validate_attrs(attrs, GENL_ATTR_MSG) {
                    Err((errno, text)) => error(errno, Some(text)),
                    Ok(None) => error(libc::EINVAL, Some("missing attribute MSG")),
                    Ok(Some(msg)) => {
                        let msg = msg.split(|&b| b == 0).next().unwrap_or_default().to_vec();
                        self.log.push(msg.clone(), self.portid);
                        Expect::GenlEcho { seq, msg }
                    }
                },
                (GENL_CMD_GET, false) => match validate_attrs(attrs, GENL_ATTR_ID) {
                    Err((errno, text)) => error(errno, Some(text)),
                    Ok(None) => error(libc::EINVAL, Some("missing attribute ID")),
                    Ok(Some(id)) => {
                        let id = u32::from_ne_bytes(id.try_into().expect("validated: 4 bytes"));
                        match self.log.get(id) {
                            Some(entry) => Expect::GenlEntry {
                                family,
                                seq,
                                entry: entry.clone(),
                                multi: false,
                            },
                            None => Expect::Error {
                                request: *request,
                                errno: libc::ENOENT,
                                extack: Some(format!("no entry {id} in the echo log")),
                            },
                        }
                    }
                },
                (GENL_CMD_GET, true) => match validate_attrs(attrs, GENL_ATTR_ID) {
                    Err((errno, text)) => error(errno, Some(text)),
                    // The dump ignores ID; it never acks (netlink_dump_start()
                    // returns -EINTR to netlink_rcv_skb()).
                    Ok(_) => {
                        answers.extend(self.log.entries.iter().map(|e| Expect::GenlEntry {
                            family,
                            seq,
                            entry: e.clone(),
                            multi: true,
                        }));
                        answers.push(Expect::Done { seq });
                        return;
                    }
                },
                // No such command, or no dumpit for it.
                _ => error(libc::EOPNOTSUPP, None),
            }
        };
        let replied = matches!(answer, Expect::GenlEcho { .. } | Expect::GenlEntry { .. });
        answers.push(answer);
        if replied && flags & NLM_F_ACK != 0 {
            answers.push(Expect::Ack { request: *request });
        }
    }
}

/// `__nla_validate_parse()` with `NL_VALIDATE_STRICT` and the policy of a
/// command that takes one attribute, `wanted` (`MSG`: an `NLA_NUL_STRING`
/// of at most 16384 bytes; `ID`: an `NLA_U32`). The family's `maxattr` is
/// [`GENL_ATTR_MAX`]; the other attributes up to it are `NLA_UNSPEC` in the
/// policy, "Unsupported attribute" under strict validation. The last
/// `wanted` wins, as in `nla_parse()`.
fn validate_attrs(mut rem: &[u8], wanted: u16) -> Result<Option<&[u8]>, (i32, &'static str)> {
    const POLICY: &str = "Attribute failed policy validation";
    let mut found = None;
    while rem.len() >= 4 {
        let nla_len = usize::from(u16::from_ne_bytes([rem[0], rem[1]]));
        let nla_type = u16::from_ne_bytes([rem[2], rem[3]]);
        if nla_len < 4 || nla_len > rem.len() {
            break;
        }
        let ty = nla_type & NLA_TYPE_MASK;
        if ty == 0 || ty > GENL_ATTR_MAX {
            return Err((libc::EINVAL, "Unknown attribute type"));
        }
        let value = &rem[4..nla_len];
        if ty != wanted {
            // NLA_UNSPEC: no length or NLA_F_NESTED check comes first.
            return Err((libc::EINVAL, "Unsupported attribute"));
        }
        if wanted == GENL_ATTR_ID && value.len() != 4 {
            return Err((libc::EINVAL, "invalid attribute length"));
        }
        if nla_type & NLA_F_NESTED != 0 {
            return Err((libc::EINVAL, "NLA_F_NESTED not expected"));
        }
        if wanted == GENL_ATTR_MSG {
            let minlen = value.len().min(MAX_MSG_LEN + 1);
            if minlen == 0 || !value[..minlen].contains(&0) {
                return Err((libc::EINVAL, POLICY));
            }
            let len = value.len() - usize::from(value[value.len() - 1] == 0);
            if len > MAX_MSG_LEN {
                return Err((libc::ERANGE, POLICY));
            }
        }
        found = Some(value);
        rem = &rem[nla_align(nla_len).min(rem.len())..];
    }
    if !rem.is_empty() {
        return Err((libc::EINVAL, "bytes leftover after parsing attributes"));
    }
    Ok(found)
}

/// The seeded generator of fuzz datagrams.
pub struct Gen {
    rng: ChaCha8Rng,
    target: Target,
    seq: u32,
    /// Messages generated so far; also cycles the 16 flag combinations.
    pub messages: u64,
    /// For genl: the id the next echo will get (the model's), so that GET
    /// asks for ids around those in the log. The run sets it before each
    /// datagram.
    pub log_next: u32,
}

impl Gen {
    pub fn new(seed: u64, target: Target) -> Gen {
        Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            target,
            seq: 0,
            messages: 0,
            log_next: 1,
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.rng.fill_bytes(&mut v);
        v
    }

    /// One datagram: 1 to 12 messages, sometimes a bad length in one of
    /// them, sometimes a garbage tail.
    pub fn datagram(&mut self) -> Vec<u8> {
        let n = match self.rng.random_range(0..10) {
            0..=4 => 1,
            5..=7 => self.rng.random_range(2..=4),
            _ => self.rng.random_range(5..=12),
        };
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        for _ in 0..n {
            let msg = self.message();
            // A GET dump ends the datagram: the echoes of requests after it
            // would change the log between the dump's datagrams.
            let dump = self.is_get_dump(&msg);
            msgs.push(msg);
            if dump {
                break;
            }
        }
        let n = msgs.len();
        if self.rng.random_ratio(1, 6) {
            let i = self.rng.random_range(0..n);
            self.mutate_len(&mut msgs, i);
        }
        let mut datagram = Vec::new();
        for (i, msg) in msgs.iter().enumerate() {
            datagram.extend_from_slice(msg);
            // The last message goes with or without its padding; the pad
            // bytes are not always zero (nobody may read them).
            if i + 1 < n || self.rng.random_bool(0.5) {
                let pad = nlmsg_align(datagram.len()) - datagram.len();
                let pad = if self.rng.random_bool(0.8) {
                    vec![0; pad]
                } else {
                    self.bytes(pad)
                };
                datagram.extend_from_slice(&pad);
            }
        }
        if self.rng.random_ratio(1, 8) {
            let tail = self.rng.random_range(1..=40);
            let mut tail = self.bytes(tail);
            if tail.len() >= 4 && self.rng.random_bool(0.5) {
                // A plausible header: a length that might fit.
                let len = self.rng.random_range(0..=64u32);
                tail[..4].copy_from_slice(&len.to_ne_bytes());
            }
            datagram.extend_from_slice(&tail);
        }
        datagram
    }

    /// Whether `msg` is a GET dump request to our family.
    fn is_get_dump(&self, msg: &[u8]) -> bool {
        let Target::Genl { family } = self.target else {
            return false;
        };
        let hdr = NlMsgHdr::from_bytes(msg).expect("a whole header");
        hdr.nlmsg_type == family
            && hdr.nlmsg_flags & NLM_F_DUMP == NLM_F_DUMP
            && msg.get(NLMSG_HDRLEN) == Some(&GENL_CMD_GET)
    }

    /// Rewrites `nlmsg_len` of message `i`: below the header, past the
    /// datagram, unaligned, or swallowing the next message.
    fn mutate_len(&mut self, msgs: &mut [Vec<u8>], i: usize) {
        let own = msgs[i].len();
        let after: usize = msgs[i..].iter().map(|m| nlmsg_align(m.len())).sum();
        let len = match self.rng.random_range(0..5) {
            0 => self.rng.random_range(0..NLMSG_HDRLEN),
            // Past the end, whatever tail follows (at most 40 bytes).
            1 if self.rng.random_bool(0.2) => u32::MAX as usize,
            1 => after + 41 + self.rng.random_range(0..64),
            2 if own > NLMSG_HDRLEN + 3 => own - self.rng.random_range(1..=3),
            3 if i + 1 < msgs.len() => nlmsg_align(own) + msgs[i + 1].len(),
            _ => own + self.rng.random_range(1..=3),
        };
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        msgs[i][..4].copy_from_slice(&len.to_ne_bytes());
    }

    /// One message with a correct `nlmsg_len` (unpadded).
    fn message(&mut self) -> Vec<u8> {
        self.messages += 1;
        // Every other message cycles through the 16 combinations of the
        // four flags; the others are requests (most answers come from
        // requests), half of them with an ack.
        let mut flags = if self.messages.is_multiple_of(2) {
            let combo = (self.messages / 2 % 16) as u16;
            [NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP]
                .iter()
                .enumerate()
                .filter(|(bit, _)| combo & (1 << bit) != 0)
                .fold(0, |acc, (_, f)| acc | f)
        } else if self.rng.random_bool(0.5) {
            NLM_F_REQUEST | NLM_F_ACK
        } else {
            NLM_F_REQUEST
        };
        if self.rng.random_ratio(1, 10) {
            flags |= self.rng.random::<u16>();
        }
        let (ty, payload) = match self.target {
            Target::Raw | Target::Queued => (self.raw_type(), self.raw_payload()),
            Target::Genl { family } => {
                let ty = match self.rng.random_range(0..10) {
                    0..=6 => family,
                    7 => self.rng.random_range(0..=4),
                    8 => self.rng.random_range(5..NLMSG_MIN_TYPE),
                    _ => UNKNOWN_FAMILIES[self.rng.random_range(0..UNKNOWN_FAMILIES.len())],
                };
                (ty, self.genl_payload(flags))
            }
        };
        self.seq = self.seq.wrapping_add(1);
        let header = NlMsgHdr {
            nlmsg_len: u32::try_from(NLMSG_HDRLEN + payload.len()).expect("small payload"),
            nlmsg_type: ty,
            nlmsg_flags: flags,
            nlmsg_seq: self.seq,
            // The kernel must answer the real sender, whatever this says.
            nlmsg_pid: if self.rng.random_bool(0.5) {
                0
            } else {
                self.rng.random()
            },
        };
        let mut msg = header.to_bytes().to_vec();
        msg.extend_from_slice(&payload);
        msg
    }

    fn raw_type(&mut self) -> u16 {
        match self.rng.random_range(0..10) {
            0..=3 => ECHO_MSG_TYPE,
            4 => 0,
            5 => self.rng.random_range(1..=4),
            6 => self.rng.random_range(5..NLMSG_MIN_TYPE),
            _ => self.rng.random(),
        }
    }

    /// A length near every boundary: empty, small, pages, the limit, past it.
    fn payload_len(&mut self) -> usize {
        match self.rng.random_range(0..20) {
            0..=5 => self.rng.random_range(0..=16),
            6..=11 => self.rng.random_range(17..=256),
            12..=15 => self.rng.random_range(257..=4096),
            16 => self.rng.random_range(4097..MAX_PAYLOAD),
            17 => MAX_PAYLOAD,
            _ => self.rng.random_range(MAX_PAYLOAD + 1..=MAX_PAYLOAD + 64),
        }
    }

    fn raw_payload(&mut self) -> Vec<u8> {
        let len = self.payload_len();
        self.bytes(len)
    }

    /// A `genlmsghdr` and attributes: half of them a clean ECHO request,
    /// the others with the command, version or attributes abused.
    fn genl_payload(&mut self, flags: u16) -> Vec<u8> {
        if self.rng.random_ratio(1, 30) {
            let len = self.rng.random_range(0..user_raw::GENL_HDRLEN);
            return self.bytes(len); // shorter than the genl header
        }
        // A dump of the full log costs about as much as 1000 echoes: one
        // GET in ten with the dump flags stays one.
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let cmd = match self.rng.random_range(0..20) {
            0..=12 => GENL_CMD_ECHO,
            13..=16 if dump && !self.rng.random_ratio(1, 10) => GENL_CMD_ECHO,
            13..=16 => GENL_CMD_GET,
            _ => self.rng.random(),
        };
        let version = if self.rng.random_ratio(7, 10) {
            proto::GENL_FAMILY_VERSION
        } else {
            self.rng.random()
        };
        let reserved = if self.rng.random_ratio(4, 5) {
            0
        } else {
            self.rng.random()
        };
        let mut p = vec![cmd, version];
        p.extend_from_slice(&u16::to_ne_bytes(reserved));
        if cmd == GENL_CMD_GET {
            self.get_attrs(&mut p);
            return p;
        }
        if self.rng.random_bool(0.5) {
            let text = self.text();
            put_attr(&mut p, GENL_ATTR_MSG, &nul_terminated(text));
            return p;
        }
        for _ in 0..self.rng.random_range(0..=4) {
            self.abused_attr(&mut p);
        }
        p
    }

    /// An id near the log's: mostly in it, some evicted, some not yet
    /// given, 0, and any u32.
    fn log_id(&mut self) -> u32 {
        let next = self.log_next;
        match self.rng.random_range(0..10) {
            0..=5 => next.saturating_sub(self.rng.random_range(1..=ECHO_LOG_LEN as u32 + 80)),
            6 => next.wrapping_add(self.rng.random_range(0..3)),
            7 => 0,
            8 => self.rng.random(),
            _ => next.wrapping_sub(1),
        }
    }

    /// The attributes of a GET: a clean ID most of the time, else none,
    /// the wrong length or flags, the other attributes of the family,
    /// unknown types, two IDs, leftovers, or the abuse ECHO gets.
    fn get_attrs(&mut self, p: &mut Vec<u8>) {
        match self.rng.random_range(0..20) {
            0..=9 => {
                let id = self.log_id();
                put_attr(p, GENL_ATTR_ID, &id.to_ne_bytes());
            }
            10 => {} // no ID
            11 => {
                let len = [0, 1, 2, 3, 5, 8][self.rng.random_range(0..6)];
                let value = self.bytes(len);
                put_attr(p, GENL_ATTR_ID, &value);
            }
            12 => {
                let id = self.log_id();
                put_attr(p, GENL_ATTR_ID | NLA_F_NESTED, &id.to_ne_bytes());
            }
            13 => {
                let id = self.log_id();
                put_attr(p, GENL_ATTR_ID | NLA_F_NET_BYTEORDER, &id.to_ne_bytes());
            }
            14 => {
                let text = self.text();
                put_attr(p, GENL_ATTR_MSG, &nul_terminated(text));
                if self.rng.random_bool(0.5) {
                    let id = self.log_id();
                    put_attr(p, GENL_ATTR_ID, &id.to_ne_bytes());
                }
            }
            15 => {
                let id = self.log_id();
                put_attr(p, GENL_ATTR_ID, &id.to_ne_bytes());
                put_attr(p, GENL_ATTR_PORTID, &self.rng.random::<u32>().to_ne_bytes());
            }
            16 => {
                for _ in 0..2 {
                    let id = self.log_id();
                    put_attr(p, GENL_ATTR_ID, &id.to_ne_bytes());
                }
            }
            17 => {
                let ty = if self.rng.random_bool(0.3) {
                    0
                } else {
                    self.rng.random_range(GENL_ATTR_MAX + 1..=NLA_TYPE_MASK)
                };
                let id = self.log_id();
                put_attr(p, ty, &id.to_ne_bytes());
            }
            18 => {
                let id = self.log_id();
                put_attr(p, GENL_ATTR_ID, &id.to_ne_bytes());
                let n = self.rng.random_range(1..=3);
                let junk = self.bytes(n);
                p.extend(junk);
            }
            _ => {
                for _ in 0..self.rng.random_range(1..=3) {
                    self.abused_attr(p);
                }
            }
        }
    }

    /// A string without NULs, of a length near every boundary.
    fn text(&mut self) -> Vec<u8> {
        let len = self.payload_len();
        let mut text = self.bytes(len);
        for b in text.iter_mut().filter(|b| **b == 0) {
            *b = b'0';
        }
        text
    }

    fn abused_attr(&mut self, p: &mut Vec<u8>) {
        match self.rng.random_range(0..12) {
            0 => {
                let text = self.text();
                put_attr(p, GENL_ATTR_MSG, &nul_terminated(text));
            }
            1 => {
                let text = self.text(); // not NUL-terminated
                put_attr(p, GENL_ATTR_MSG, &text);
            }
            2 => put_attr(p, GENL_ATTR_MSG, &[]),
            3 => {
                let len = self.rng.random_range(MAX_MSG_LEN + 1..=MAX_MSG_LEN + 16);
                put_attr(p, GENL_ATTR_MSG, &nul_terminated(vec![b'x'; len]));
            }
            4 => {
                let mut text = self.text();
                text.push(0);
                text.extend(self.text()); // an embedded NUL
                put_attr(p, GENL_ATTR_MSG, &nul_terminated(text));
            }
            5 => {
                let ty = if self.rng.random_bool(0.3) {
                    0
                } else {
                    self.rng.random_range(2..=NLA_TYPE_MASK)
                };
                let value = self.raw_payload_small();
                put_attr(p, ty, &value);
            }
            6 => {
                let flag = if self.rng.random_bool(0.5) {
                    NLA_F_NESTED
                } else {
                    NLA_F_NET_BYTEORDER
                };
                let text = self.text();
                put_attr(p, GENL_ATTR_MSG | flag, &nul_terminated(text));
            }
            7 => {
                // Nested garbage: attributes inside attributes, with junk.
                let mut inner = Vec::new();
                for _ in 0..self.rng.random_range(0..=3) {
                    self.abused_attr(&mut inner);
                }
                inner.extend(self.raw_payload_small());
                let ty = self.rng.random_range(0..=2) | NLA_F_NESTED;
                put_attr(p, ty, &inner);
            }
            8 => {
                // nla_len below the attribute header, or past the message.
                let value = self.raw_payload_small();
                let start = p.len();
                put_attr(p, GENL_ATTR_MSG, &value);
                let bad = if self.rng.random_bool(0.5) {
                    self.rng.random_range(0..4)
                } else {
                    u16::try_from(4 + value.len())
                        .unwrap_or(u16::MAX)
                        .saturating_add(self.rng.random_range(1..=200))
                };
                p[start..start + 2].copy_from_slice(&bad.to_ne_bytes());
            }
            9 => {
                let n = self.rng.random_range(1..=3);
                let junk = self.bytes(n); // leftover bytes
                p.extend(junk);
            }
            _ => {
                // The same valid MSG twice, or two different ones.
                let text = self.text();
                put_attr(p, GENL_ATTR_MSG, &nul_terminated(text.clone()));
                let second = if self.rng.random_bool(0.5) {
                    text
                } else {
                    self.text()
                };
                put_attr(p, GENL_ATTR_MSG, &nul_terminated(second));
            }
        }
    }

    fn raw_payload_small(&mut self) -> Vec<u8> {
        let len = self.rng.random_range(0..=32);
        self.bytes(len)
    }
}

fn nul_terminated(mut text: Vec<u8>) -> Vec<u8> {
    text.push(0);
    text
}

/// Appends an attribute and its padding; a value too long for `nla_len`
/// is cut (the generator only makes values up to about 33 KiB).
fn put_attr(p: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let value = &value[..value.len().min(usize::from(u16::MAX) - 4)];
    let len = u16::try_from(4 + value.len()).expect("cut above");
    p.extend_from_slice(&len.to_ne_bytes());
    p.extend_from_slice(&ty.to_ne_bytes());
    p.extend_from_slice(value);
    p.resize(nla_align(p.len()), 0);
}

/// Checks one received message against the answer the model expects.
fn check(expected: &Expect, hdr: &NlMsgHdr, body: &[u8], portid: u32) -> Result<(), String> {
    check_inner(expected, hdr, body, portid).map_err(|e| match parse_error(hdr, body) {
        Ok(err) if hdr.nlmsg_type == NLMSG_ERROR => format!(
            "{e}; received NLMSG_ERROR {} extack {:?} for {:?}",
            err.error, err.extack, err.request
        ),
        _ => e,
    })
}

fn check_inner(expected: &Expect, hdr: &NlMsgHdr, body: &[u8], portid: u32) -> Result<(), String> {
    if hdr.nlmsg_pid != portid {
        return Err(format!(
            "nlmsg_pid {} is not our portid {portid}",
            hdr.nlmsg_pid
        ));
    }
    let want_error = |request: &NlMsgHdr, errno: i32, extack: Option<&str>| {
        if hdr.nlmsg_type != NLMSG_ERROR {
            return Err(format!("type {:#x}, expected NLMSG_ERROR", hdr.nlmsg_type));
        }
        let err = parse_error(hdr, body).map_err(|e| format!("bad NLMSG_ERROR: {e}"))?;
        if err.error != -errno || err.request != *request {
            return Err(format!(
                "NLMSG_ERROR {} for {:?}, expected {} for {:?}",
                err.error, err.request, -errno, request
            ));
        }
        if extack.is_some() && err.extack.as_deref() != extack {
            return Err(format!("extack {:?}, expected {:?}", err.extack, extack));
        }
        Ok(())
    };
    match expected {
        Expect::Echo { ty, seq, payload } => {
            if (hdr.nlmsg_type, hdr.nlmsg_seq, hdr.nlmsg_flags) != (*ty, *seq, 0) {
                return Err(format!(
                    "header {hdr:?}, expected an echo of type {ty:#x} seq {seq}"
                ));
            }
            if body != payload.as_slice() {
                return Err(format!(
                    "echo payload of {} bytes differs from the {} sent",
                    body.len(),
                    payload.len()
                ));
            }
            Ok(())
        }
        Expect::GenlEcho { seq, msg } => {
            if hdr.nlmsg_seq != *seq || hdr.nlmsg_type == NLMSG_ERROR {
                return Err(format!(
                    "header {hdr:?}, expected the genl echo of seq {seq}"
                ));
            }
            let reply = user_raw::GenlMsg::parse(*hdr, body).map_err(|e| e.to_string())?;
            let got = user_raw::find_attr(&reply.attrs, GENL_ATTR_MSG)
                .map_err(|e| e.to_string())?
                .ok_or("the echo has no MSG")?
                .nul_string()
                .map_err(|e| e.to_string())?;
            if reply.genl.cmd != GENL_CMD_ECHO || got != msg.as_slice() {
                return Err(format!(
                    "echo cmd {} with {} bytes of MSG, expected ECHO with {}",
                    reply.genl.cmd,
                    got.len(),
                    msg.len()
                ));
            }
            Ok(())
        }
        Expect::Ack { request } => want_error(request, 0, None),
        Expect::Error {
            request,
            errno,
            extack,
        } => want_error(request, *errno, extack.as_deref()),
        Expect::GenlEntry {
            family,
            seq,
            entry,
            multi,
        } => {
            // Never NLM_F_DUMP_INTR: nothing else writes to the log.
            let flags = if *multi { NLM_F_MULTI } else { 0 };
            if (hdr.nlmsg_type, hdr.nlmsg_seq, hdr.nlmsg_flags) != (*family, *seq, flags) {
                return Err(format!(
                    "header {hdr:?}, expected entry {} of the log, seq {seq}, flags {flags:#x}",
                    entry.id
                ));
            }
            let reply = user_raw::GenlMsg::parse(*hdr, body).map_err(|e| e.to_string())?;
            let (cmd, version) = (reply.genl.cmd, reply.genl.version);
            if (cmd, version) != (GENL_CMD_GET, proto::GENL_FAMILY_VERSION) {
                return Err(format!("command {cmd} version {version}, expected GET 1"));
            }
            let got = crate::mcast::parse_entry(&reply.attrs).map_err(|e| format!("{e:#}"))?;
            if got != *entry {
                return Err(format!(
                    "entry {} ({} bytes of MSG, portid {}), expected {} ({} bytes, portid {})",
                    got.id,
                    got.msg.len(),
                    got.portid,
                    entry.id,
                    entry.msg.len(),
                    entry.portid
                ));
            }
            Ok(())
        }
        Expect::Done { seq } => {
            let done = (user_raw::NLMSG_DONE, *seq, NLM_F_MULTI);
            if (hdr.nlmsg_type, hdr.nlmsg_seq, hdr.nlmsg_flags) != done || body != [0; 4] {
                return Err(format!(
                    "header {hdr:?} and {} bytes, expected NLMSG_DONE, seq {seq}, error 0",
                    body.len()
                ));
            }
            Ok(())
        }
    }
}

/// How much fuzzing to do, and with which seed.
pub struct Plan {
    pub seed: u64,
    pub messages: u64,
}

/// Sends `plan.messages` fuzzed messages to `target` through `sock`
/// (connected to its unit), checking every answer; returns the counts.
pub fn run(sock: &mut Socket, target: Target, plan: &Plan) -> Result<Value> {
    let mut generator = Gen::new(plan.seed, target);
    let mut buf = vec![0u8; user_raw::RECV_BUF_LEN];
    let portid = sock.portid();
    // For genl, the echo log as it is now (earlier tests wrote to it):
    // from here on, the fuzzing socket is its only writer.
    let log = match target {
        Target::Genl { family } => {
            let reader = crate::mcast::Listener::open(libc::NETLINK_GENERIC, None)?;
            let (entries, _) = crate::mcast::dump_log(&reader, family)
                .context("dumping the echo log before the fuzzing")?;
            EchoLog::from_dump(entries)
        }
        _ => EchoLog::from_dump(Vec::new()),
    };
    let initial_log = log.entries.len();
    let mut model = Model::new(target, log, portid);
    let (mut datagrams, mut answers) = (0u64, BTreeMap::<String, u64>::new());
    // Datagrams the answers came in: fewer than the answers when the module
    // coalesces them.
    let mut answer_datagrams = 0u64;
    let mut walked = 0u64;
    let (send_limit, mut refused) = (send_buffer()? - 32, 0u64);
    // Messages in datagrams that the kernel took.
    let mut sent = 0u64;
    while sent < plan.messages {
        let before = generator.messages;
        generator.log_next = model.log.next_id;
        let datagram = generator.datagram();
        datagrams += 1;
        let expected;
        let fail = |what: String| {
            anyhow::anyhow!(
                "{what}\n  seed {} datagram #{datagrams} ({} bytes): {}",
                plan.seed,
                datagram.len(),
                hex(&datagram, 96)
            )
        };
        // netlink_sendmsg() refuses a datagram longer than sk_sndbuf - 32.
        let too_long = datagram.len() > send_limit;
        match sock.send_datagram(&datagram) {
            Err(user_raw::Error::Os { source, .. })
                if too_long && source.raw_os_error() == Some(libc::EMSGSIZE) =>
            {
                refused += 1;
                continue;
            }
            Err(e) => return Err(fail(e.to_string())),
            Ok(()) if too_long => {
                return Err(fail(format!(
                    "sendmsg took a datagram longer than sk_sndbuf - 32 = {send_limit}"
                )))
            }
            Ok(()) => {
                sent += generator.messages - before;
                walked += walk(&datagram).count() as u64;
                // Only now: a refused datagram changes nothing.
                expected = model.expect(&datagram);
            }
        }
        let mut pending: Vec<Option<&Expect>> = expected.iter().map(Some).collect();
        let mut received = 0;
        while received < expected.len() {
            let n = sock
                .recv(&mut buf)
                .map_err(|e| fail(format!("answer {received} of {}: {e}", expected.len())))?;
            answer_datagrams += 1;
            for msg in messages(&buf[..n]) {
                let (hdr, body) =
                    msg.map_err(|e| fail(format!("the kernel sent a malformed message: {e}")))?;
                // In order; for a queued target, the first answer still
                // owed to the request with this seq; for genl, a dump's
                // messages and the other answers each in their own order.
                let slot = match target {
                    Target::Queued => pending
                        .iter()
                        .position(|p| p.is_some_and(|e| seq_of(e) == hdr.nlmsg_seq)),
                    Target::Genl { .. } => {
                        let dump_part = hdr.nlmsg_flags & NLM_F_MULTI != 0
                            || hdr.nlmsg_type == user_raw::NLMSG_DONE;
                        pending
                            .iter()
                            .position(|p| p.is_some_and(|e| e.in_dump() == dump_part))
                    }
                    Target::Raw => pending.iter().position(Option::is_some),
                };
                let want = slot.and_then(|i| pending[i].take()).ok_or_else(|| {
                    fail(format!(
                        "an unexpected message (answers owed: {}): {hdr:?}",
                        expected.len() - received
                    ))
                })?;
                check(want, &hdr, body, portid).map_err(|e| {
                    fail(format!(
                        "answer {received}: {e}\n  expected {}",
                        brief(want)
                    ))
                })?;
                *answers.entry(kind(want)).or_default() += 1;
                received += 1;
            }
        }
    }
    // Nothing may follow the last answer.
    sock.set_timeout(Duration::from_millis(300))?;
    match sock.recv(&mut buf) {
        Err(user_raw::Error::Timeout { .. }) => {}
        Ok(n) => bail!(
            "an extra datagram after the last expected answer: {}",
            hex(&buf[..n], 64)
        ),
        Err(e) => return Err(e).context("draining after the fuzzing"),
    }
    sock.set_timeout(user_raw::DEFAULT_TIMEOUT)?;
    Ok(json!({
        "seed": plan.seed,
        "datagrams": datagrams,
        "messages": sent,
        "messages_parsed_by_kernel": walked,
        "datagrams_refused_as_too_long": refused,
        "answers": answers,
        "answer_datagrams": answer_datagrams,
        "echo_log": match target {
            Target::Genl { .. } => json!({
                "entries_before": initial_log,
                "entries_after": model.log.entries.len(),
                "next_id": model.log.next_id,
            }),
            _ => Value::Null,
        },
    }))
}

/// The send buffer a new socket gets (`net.core.wmem_default`).
fn send_buffer() -> Result<usize> {
    let text = std::fs::read_to_string("/proc/sys/net/core/wmem_default")?;
    text.trim().parse().context("net.core.wmem_default")
}

/// The sequence number of the request an answer is for.
fn seq_of(e: &Expect) -> u32 {
    match e {
        Expect::Echo { seq, .. } | Expect::GenlEcho { seq, .. } => *seq,
        Expect::Ack { request } | Expect::Error { request, .. } => request.nlmsg_seq,
        Expect::GenlEntry { seq, .. } | Expect::Done { seq } => *seq,
    }
}

fn kind(e: &Expect) -> String {
    match e {
        Expect::Echo { .. } | Expect::GenlEcho { .. } => "echo".into(),
        Expect::Ack { .. } => "ack".into(),
        Expect::Error { errno, .. } => format!("error {}", errno_name(*errno)),
        Expect::GenlEntry { multi: false, .. } => "get".into(),
        Expect::GenlEntry { multi: true, .. } => "dump entry".into(),
        Expect::Done { .. } => "dump done".into(),
    }
}

fn brief(e: &Expect) -> String {
    match e {
        Expect::Echo { ty, seq, payload } => {
            format!("echo type {ty:#x} seq {seq}, {} bytes", payload.len())
        }
        Expect::GenlEcho { seq, msg } => format!("genl echo seq {seq}, MSG of {} bytes", msg.len()),
        Expect::GenlEntry {
            seq, entry, multi, ..
        } => format!(
            "entry {} (MSG of {} bytes) seq {seq}{}",
            entry.id,
            entry.msg.len(),
            if *multi { ", in a dump" } else { "" }
        ),
        other => format!("{other:?}"),
    }
}

pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::ERANGE => "ERANGE",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOBUFS => "ENOBUFS",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::ECONNREFUSED => "ECONNREFUSED",
        _ => "other",
    }
}

/// The first `max` bytes of `b` in hex.
pub fn hex(b: &[u8], max: usize) -> String {
    let mut s: String = b.iter().take(max).map(|x| format!("{x:02x}")).collect();
    if b.len() > max {
        s += "...";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model with an empty log and port id 0.
    fn expect(target: Target, datagram: &[u8]) -> Vec<Expect> {
        Model::new(target, EchoLog::from_dump(Vec::new()), 0).expect(datagram)
    }

    fn msg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        user_raw::encode(&mut v, ty, flags, seq, payload).unwrap();
        v
    }

    #[test]
    fn raw_model_walks_like_netlink_rcv_skb() {
        let raw = Target::Raw;
        let mut d = msg(0x10, NLM_F_REQUEST | NLM_F_ACK, 1, b"abc");
        d.extend(msg(3, NLM_F_ACK, 2, b"")); // NLMSG_DONE: only acked
        d.extend(msg(0, 0, 3, &[7; MAX_PAYLOAD + 1])); // the articles' type
        d.extend(msg(0x10, NLM_F_ACK, 6, b"no")); // not a request: acked
        d.extend(msg(7, NLM_F_REQUEST, 7, b"no")); // reserved: skipped
        let mut bad = msg(0x10, 0, 4, b"x");
        bad[..4].copy_from_slice(&15u32.to_ne_bytes()); // ends the walk
        d.extend(&bad);
        d.extend(msg(0x10, 0, 5, b"never"));
        let e = expect(raw, &d);
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(matches!(&e[0], Expect::Echo { seq: 1, payload, .. } if payload == b"abc"));
        assert!(matches!(&e[1], Expect::Ack { request } if request.nlmsg_seq == 1));
        assert!(matches!(&e[2], Expect::Ack { request } if request.nlmsg_seq == 2));
        assert!(matches!(
            &e[3],
            Expect::Error {
                errno: libc::EMSGSIZE,
                ..
            }
        ));
        assert!(matches!(&e[4], Expect::Ack { request } if request.nlmsg_seq == 6));
    }

    #[test]
    fn genl_model_validates_like_the_core() {
        let g = Target::Genl { family: 30 };
        let genl = |attrs: &[u8]| {
            let mut p = vec![GENL_CMD_ECHO, 1, 0, 0];
            p.extend_from_slice(attrs);
            p
        };
        let mut ok = Vec::new();
        put_attr(&mut ok, GENL_ATTR_MSG, b"hi\0");
        let mut unknown = ok.clone();
        put_attr(&mut unknown, 2, b"");
        let mut no_nul = Vec::new();
        put_attr(&mut no_nul, GENL_ATTR_MSG, b"hi");
        let cases: [(Vec<u8>, u16, Option<i32>); 6] = [
            (genl(&ok), NLM_F_REQUEST, None),
            (genl(&unknown), NLM_F_REQUEST, Some(libc::EINVAL)),
            (genl(&no_nul), NLM_F_REQUEST, Some(libc::EINVAL)),
            (genl(&[]), NLM_F_REQUEST, Some(libc::EINVAL)),
            (
                genl(&ok),
                NLM_F_REQUEST | NLM_F_DUMP,
                Some(libc::EOPNOTSUPP),
            ),
            (vec![1, 1], NLM_F_REQUEST, Some(libc::EINVAL)),
        ];
        for (payload, flags, errno) in cases {
            let e = expect(g, &msg(30, flags, 9, &payload));
            match errno {
                None => assert!(matches!(&e[..], [Expect::GenlEcho { msg, .. }] if msg == b"hi")),
                Some(want) => {
                    assert!(
                        matches!(&e[..], [Expect::Error { errno, .. }] if *errno == want),
                        "{e:?}"
                    )
                }
            }
        }
        // Not a request: only an ack, and only if asked for.
        assert!(matches!(
            &expect(g, &msg(30, NLM_F_ACK, 1, &genl(&ok)))[..],
            [Expect::Ack { .. }]
        ));
        assert!(expect(g, &msg(30, 0, 1, &genl(&ok))).is_empty());
    }

    #[test]
    fn genl_model_keeps_the_echo_log() {
        let g = Target::Genl { family: 30 };
        let mut model = Model::new(g, EchoLog::from_dump(Vec::new()), 77);
        let genl = |cmd, attrs: &[u8]| {
            let mut p = vec![cmd, 1, 0, 0];
            p.extend_from_slice(attrs);
            p
        };
        let mut echo = Vec::new();
        put_attr(&mut echo, GENL_ATTR_MSG, b"one\0");
        let get = |id: u32| {
            let mut a = Vec::new();
            put_attr(&mut a, GENL_ATTR_ID, &id.to_ne_bytes());
            a
        };
        // Two echoes, then GET 2, GET 3 (not yet), a GET without ID, an
        // ID of the wrong length and a MSG given to GET.
        let mut d = msg(30, NLM_F_REQUEST, 1, &genl(GENL_CMD_ECHO, &echo));
        d.extend(msg(30, NLM_F_REQUEST, 2, &genl(GENL_CMD_ECHO, &echo)));
        d.extend(msg(
            30,
            NLM_F_REQUEST | NLM_F_ACK,
            3,
            &genl(GENL_CMD_GET, &get(2)),
        ));
        d.extend(msg(30, NLM_F_REQUEST, 4, &genl(GENL_CMD_GET, &get(3))));
        d.extend(msg(30, NLM_F_REQUEST, 5, &genl(GENL_CMD_GET, &[])));
        let mut short = Vec::new();
        put_attr(&mut short, GENL_ATTR_ID, &[1, 0]);
        d.extend(msg(30, NLM_F_REQUEST, 6, &genl(GENL_CMD_GET, &short)));
        d.extend(msg(30, NLM_F_REQUEST, 7, &genl(GENL_CMD_GET, &echo)));
        let e = model.expect(&d);
        let errors: Vec<_> = e
            .iter()
            .filter_map(|x| match x {
                Expect::Error { extack, .. } => extack.clone(),
                _ => None,
            })
            .collect();
        assert!(
            matches!(&e[2], Expect::GenlEntry { entry, multi: false, .. } if entry.id == 2 && entry.portid == 77)
        );
        assert!(matches!(&e[3], Expect::Ack { .. }));
        assert_eq!(
            errors,
            [
                "no entry 3 in the echo log",
                "missing attribute ID",
                "invalid attribute length",
                "Unsupported attribute"
            ]
        );
        // A dump: both entries, then NLMSG_DONE, and no ack.
        let dump = model.expect(&msg(
            30,
            NLM_F_REQUEST | NLM_F_DUMP | NLM_F_ACK,
            8,
            &genl(GENL_CMD_GET, &[]),
        ));
        assert_eq!(dump.len(), 3, "{dump:?}");
        assert!(dump.iter().all(Expect::in_dump));
        // The log keeps the last 1024.
        for _ in 0..ECHO_LOG_LEN {
            model.expect(&msg(30, NLM_F_REQUEST, 9, &genl(GENL_CMD_ECHO, &echo)));
        }
        assert_eq!(model.log.entries.len(), ECHO_LOG_LEN);
        assert_eq!(model.log.entries[0].id, 3);
        assert!(model.log.get(2).is_none() && model.log.get(1026).is_some());
    }

    #[test]
    fn the_generator_replays_from_its_seed() {
        let target = Target::Genl { family: 30 };
        let (mut a, mut b) = (Gen::new(7, target), Gen::new(7, target));
        for _ in 0..200 {
            assert_eq!(a.datagram(), b.datagram());
        }
    }
}
