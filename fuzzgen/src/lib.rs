//! # rosetta-fuzzgen: netlink messages whose lengths lie
//!
//! proptest strategies that build netlink and generic netlink messages
//! whose length fields lie, shared by the clients' parser fuzz tests
//! (`user-raw`, `user-libnl-style`, `user-genl` and `user-async`, each in
//! its `src/parser_fuzz.rs`). The shapes are well formed (headers, attributes,
//! nesting, error bodies) so that the parsers get past their first checks;
//! then a length field is shorter than its header, past the end, huge,
//! unaligned or anything (see [`lie`]), and a datagram may be cut short.
//!
//! The crate encodes the headers itself, in host byte order, and depends on
//! no client: the bytes do not come from the code they test. What differs
//! between the clients, which message types and flags their receive paths
//! look at and the sequence number they wait for, is a [`Favoured`] they
//! pass in.
//!
//! ```
//! use proptest::prelude::*;
//! use rosetta_fuzzgen::{config, datagram_or_noise, Favoured};
//!
//! const FAVOURED: Favoured = Favoured { types: &[0x1a], flags: &[], seq: 1 };
//!
//! # fn my_parser(_: &[u8]) -> Result<(), ()> { Ok(()) }
//! proptest! {
//!     #![proptest_config(config())]
//!     // #[test], in a client's src/parser_fuzz.rs
//!     fn parser_fuzz_datagrams(buf in datagram_or_noise(FAVOURED)) {
//!         let _ = my_parser(&buf); // Ok or Err, and no panic
//!     }
//! }
//! # parser_fuzz_datagrams();
//! ```

use proptest::collection::vec;
use proptest::prelude::*;

/// Cases per property: enough to reach every branch of the clients' small
/// parsers many times, within a few seconds in a debug build.
pub const CASES: u32 = 2000;

/// The clients' proptest configuration: [`CASES`] cases, and failures not
/// persisted to `proptest-regressions/`: a failing input is pinned as a
/// plain `#[test]` with its bytes, which reads better than a seed file.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The wire format (uapi/linux/netlink.h, genetlink.h): what the headers hold
// ---------------------------------------------------------------------------

/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct nlattr)`.
pub const NLA_HDRLEN: usize = 4;
/// `NLA_F_NESTED`: the value is a run of attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
// The control message types.
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
/// The generic netlink controller's family id.
pub const GENL_ID_CTRL: u16 = 0x10;
// The `nlmsg_flags` the receive paths read.
pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_CAPPED: u16 = 0x100;
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// Netlink pads every header, attribute and message to 4 bytes.
pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// `struct nlmsghdr` (the port id is 0: from the kernel).
pub fn nlmsghdr(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut b = len.to_ne_bytes().to_vec();
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// `struct genlmsghdr`: command, version, two reserved bytes.
pub fn genlmsghdr(cmd: u8, version: u8) -> Vec<u8> {
    vec![cmd, version, 0, 0]
}

// ---------------------------------------------------------------------------
// Lengths that lie
// ---------------------------------------------------------------------------

/// How a length field lies: `.0` chooses the case (0..=5: it tells the
/// truth), `.1` the value within it. [`lie_choice`] generates them.
pub type LieChoice = (u8, u64);

/// A length field that tells the truth.
pub const TRUTH: LieChoice = (0, 0);

/// A length field: mostly `correct`, else 0..min, just past the end, huge,
/// unaligned, or anything up to `max`.
pub fn lie(correct: usize, min: usize, max: u64, (pick, x): LieChoice) -> u64 {
    let correct = correct as u64;
    match pick {
        0..=5 => correct,
        6 => x % min as u64,      // shorter than its own header
        7 => correct + 1 + x % 8, // past the end of the buffer
        8 => max - x % 16,        // huge: 0xffff_fff0 and up
        9 => correct + 1 + x % 3, // unaligned
        _ => x % (max + 1),       // anything
    }
    .min(max)
}

/// The pieces [`lie`] needs, as a strategy.
pub fn lie_choice() -> impl Strategy<Value = LieChoice> {
    (0u8..11, any::<u64>())
}

// ---------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------

/// An attribute value: an integer, a string with or without its NUL (or
/// with one inside), or any bytes.
pub fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u16>().prop_map(|v| v.to_ne_bytes().to_vec()),
        any::<u32>().prop_map(|v| v.to_ne_bytes().to_vec()),
        "[a-z_]{0,12}".prop_map(|s| [s.as_bytes(), b"\0"].concat()),
        "[a-z_]{0,12}".prop_map(String::into_bytes), // no NUL
        "[a-z]{1,4}\0[a-z]{0,4}\0?".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..16),
    ]
}

/// One `struct nlattr` with its value and padding; `nla_len` lies as `lie`
/// says.
pub fn tlv(ty: u16, value: &[u8], lie_how: LieChoice) -> Vec<u8> {
    let len = lie(NLA_HDRLEN + value.len(), NLA_HDRLEN, 0xffff, lie_how) as u16;
    let mut b = [len.to_ne_bytes(), ty.to_ne_bytes()].concat();
    b.extend_from_slice(value);
    b.resize(align4(b.len()), 0);
    b
}

/// A run of 0..5 attributes: small types (so that the parsers' own types
/// 1..6 are hit), maybe a lying `nla_len`, maybe nested (3 levels).
pub fn attr_run() -> impl Strategy<Value = Vec<u8>> {
    let leaf = (0u16..8, value(), lie_choice()).prop_map(|(ty, v, l)| tlv(ty, &v, l));
    let one = leaf.prop_recursive(3, 48, 4, |inner| {
        (0u16..8, vec(inner, 0..4), lie_choice())
            .prop_map(|(ty, attrs, l)| tlv(ty | NLA_F_NESTED, &attrs.concat(), l))
    });
    vec(one, 0..5).prop_map(|attrs| attrs.concat())
}

/// Up to 128 arbitrary bytes, or a run of attributes.
pub fn attrs_or_noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..128), attr_run()]
}

// ---------------------------------------------------------------------------
// Messages and datagrams
// ---------------------------------------------------------------------------

/// An `NLMSG_ERROR` body (`struct nlmsgerr`): the error, the request's
/// header (an echo, seq 1) with its own lying length, the copied request,
/// padding, then the TLVs (extended ack).
pub fn nlmsgerr(error: i32, request_len: LieChoice, copied: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let len = lie(
        NLMSG_HDRLEN + copied.len(),
        NLMSG_HDRLEN,
        u32::MAX.into(),
        request_len,
    );
    let mut b = error.to_ne_bytes().to_vec();
    let request = nlmsghdr(len as u32, proto::ECHO_MSG_TYPE, NLM_F_REQUEST, 1);
    b.extend_from_slice(&request);
    b.extend_from_slice(copied);
    b.resize(align4(b.len()), 0);
    b.extend_from_slice(tlvs);
    b
}

/// A message payload: generic netlink (header + attributes), an
/// `NLMSG_ERROR` body, or any bytes.
pub fn payload() -> impl Strategy<Value = Vec<u8>> {
    let genl = (0u8..4, any::<u8>(), attr_run())
        .prop_map(|(cmd, version, attrs)| [genlmsghdr(cmd, version), attrs].concat());
    let error = (
        prop_oneof![Just(0i32), Just(-libc::EINVAL), any::<i32>()],
        lie_choice(),
        vec(any::<u8>(), 0..12),
        attr_run(),
    )
        .prop_map(|(error, l, copied, tlvs)| nlmsgerr(error, l, &copied, &tlvs));
    prop_oneof![genl, error, vec(any::<u8>(), 0..40)]
}

/// Up to 96 arbitrary bytes, or a payload.
pub fn payload_or_noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..96), payload()]
}

/// One message: its header (`nlmsg_len` lying as `len` says), the payload,
/// padding.
pub fn message(ty: u16, flags: u16, seq: u32, payload: &[u8], len: LieChoice) -> Vec<u8> {
    let len = lie(
        NLMSG_HDRLEN + payload.len(),
        NLMSG_HDRLEN,
        u32::MAX.into(),
        len,
    );
    let mut b = nlmsghdr(len as u32, ty, flags, seq);
    b.extend_from_slice(payload);
    b.resize(align4(b.len()), 0);
    b
}

/// What a client's receive paths look at, so that the generators pick it
/// more often than chance would.
#[derive(Clone, Copy, Debug)]
pub struct Favoured {
    /// Message types besides the control types and the echo type: the
    /// family id the paths are called with, the controller's id.
    pub types: &'static [u16],
    /// `nlmsg_flags` besides 0, `NLM_F_ACK_TLVS` and `NLM_F_ACK_TLVS |
    /// NLM_F_CAPPED`.
    pub flags: &'static [u16],
    /// The sequence number the paths wait for.
    pub seq: u32,
}

/// Message types worth hitting: the control types, the echo type, the
/// `favoured` ones (each as likely as a control type), anything.
pub fn msg_type(favoured: &[u16]) -> impl Strategy<Value = u16> {
    let mut types = vec![
        NLMSG_NOOP,
        NLMSG_ERROR,
        NLMSG_DONE,
        NLMSG_OVERRUN,
        proto::ECHO_MSG_TYPE,
    ];
    types.extend_from_slice(favoured);
    let weight = types.len() as u32;
    prop_oneof![weight => prop::sample::select(types), 1 => any::<u16>()]
}

/// `nlmsg_flags` worth hitting: none, extended acks (capped or not), the
/// `favoured` ones, anything.
pub fn msg_flags(favoured: &[u16]) -> impl Strategy<Value = u16> {
    let mut flags = vec![0, NLM_F_ACK_TLVS, NLM_F_ACK_TLVS | NLM_F_CAPPED];
    flags.extend_from_slice(favoured);
    let weight = flags.len() as u32;
    prop_oneof![weight => prop::sample::select(flags), 1 => any::<u16>()]
}

/// A datagram of 1..4 messages with lying `nlmsg_len`s, then cut short
/// (or not).
pub fn datagram(favoured: Favoured) -> impl Strategy<Value = Vec<u8>> {
    let message = (
        msg_type(favoured.types),
        msg_flags(favoured.flags),
        prop_oneof![Just(favoured.seq), any::<u32>()],
        payload(),
        lie_choice(),
    )
        .prop_map(|(ty, flags, seq, payload, l)| message(ty, flags, seq, &payload, l));
    (vec(message, 1..4), any::<prop::sample::Index>(), 0u8..4).prop_map(|(msgs, cut, how)| {
        let all = msgs.concat();
        match how {
            0 => all[..cut.index(all.len() + 1)].to_vec(), // truncated anywhere
            _ => all,
        }
    })
}

/// Up to 256 arbitrary bytes, or a datagram.
pub fn datagram_or_noise(favoured: Favoured) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..256), datagram(favoured)]
}

// ---------------------------------------------------------------------------
// Dumps and notifications: the echo log's entries, NLMSG_DONE, multicast
// groups (proto's GET, EVENT, ID, MSG, PORTID)
// ---------------------------------------------------------------------------

/// `NLM_F_DUMP_INTR`: the dumped data changed during the dump.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// The controller's `CTRL_ATTR_MCAST_GROUPS` and the two attributes of
/// each group's nest.
pub const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
pub const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
pub const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;

/// The attributes of an echo-log entry (`ID`, `MSG`, `PORTID`), each with a
/// value that may have the wrong size or lack its NUL, each maybe left out
/// or lying about its length, in any order, sometimes with an extra one.
pub fn entry_attrs() -> impl Strategy<Value = Vec<u8>> {
    let one = |ty: u16| {
        (prop::option::weighted(0.85, value_for(ty)), lie_choice())
            .prop_map(move |(v, l)| v.map(|v| tlv(ty, &v, l)).unwrap_or_default())
    };
    (
        one(proto::GENL_ATTR_ID),
        one(proto::GENL_ATTR_MSG),
        one(proto::GENL_ATTR_PORTID),
        prop::option::weighted(0.1, attr_run()),
        any::<bool>(),
    )
        .prop_map(|(id, msg, portid, extra, reverse)| {
            let mut attrs = [id, msg, portid, extra.unwrap_or_default()];
            if reverse {
                attrs.reverse();
            }
            attrs.concat()
        })
}

/// A value for attribute `ty` of the family: mostly of the right shape (a
/// u32, a NUL-terminated string), else any [`value`].
fn value_for(ty: u16) -> impl Strategy<Value = Vec<u8>> {
    let right = match ty {
        proto::GENL_ATTR_MSG => "[a-z ]{0,24}"
            .prop_map(|s| [s.as_bytes(), b"\0"].concat())
            .boxed(),
        _ => any::<u32>().prop_map(|v| v.to_ne_bytes().to_vec()).boxed(),
    };
    prop_oneof![4 => right, 1 => value()]
}

/// The payload of a log entry message (`GET` or `EVENT` most of the time).
pub fn entry_payload() -> impl Strategy<Value = Vec<u8>> {
    let cmd = prop_oneof![
        Just(proto::GENL_CMD_GET),
        Just(proto::GENL_CMD_EVENT),
        any::<u8>()
    ];
    (cmd, entry_attrs()).prop_map(|(cmd, attrs)| [genlmsghdr(cmd, 1), attrs].concat())
}

/// The payload of an `NLMSG_DONE`: nothing (old kernels), or its `int` (0
/// or a negative errno), maybe followed by extended-ack TLVs, or noise.
pub fn done_payload() -> impl Strategy<Value = Vec<u8>> {
    let errno = prop_oneof![Just(0i32), Just(-libc::ENOMEM), any::<i32>()];
    prop_oneof![
        Just(Vec::new()),
        (errno, prop::option::of(attr_run())).prop_map(|(e, tlvs)| {
            [e.to_ne_bytes().to_vec(), tlvs.unwrap_or_default()].concat()
        }),
        vec(any::<u8>(), 0..12),
    ]
}

/// A datagram of a dump or of notifications: 0..5 entry messages of one of
/// `favoured.types` (flags `NLM_F_MULTI`, sometimes `NLM_F_DUMP_INTR`,
/// sometimes anything), then maybe an `NLMSG_DONE`, lengths lying, and the
/// whole maybe cut short.
pub fn dump_datagram(favoured: Favoured) -> impl Strategy<Value = Vec<u8>> {
    let flags = prop_oneof![
        4 => Just(NLM_F_MULTI),
        1 => Just(NLM_F_MULTI | NLM_F_DUMP_INTR),
        1 => Just(0),
        1 => any::<u16>(),
    ];
    let seq = prop_oneof![4 => Just(favoured.seq), 1 => Just(0), 1 => any::<u32>()];
    let ty = prop::sample::select(if favoured.types.is_empty() {
        vec![proto::ECHO_MSG_TYPE]
    } else {
        favoured.types.to_vec()
    });
    let entry = (
        ty,
        flags.clone(),
        seq.clone(),
        entry_payload(),
        lie_choice(),
    )
        .prop_map(|(ty, flags, seq, p, l)| message(ty, flags, seq, &p, l));
    let done = (flags, seq, done_payload(), lie_choice())
        .prop_map(|(flags, seq, p, l)| message(NLMSG_DONE, flags, seq, &p, l));
    (
        vec(entry, 0..5),
        prop::option::weighted(0.7, done),
        any::<prop::sample::Index>(),
        0u8..4,
    )
        .prop_map(|(entries, done, cut, how)| {
            let all = [entries.concat(), done.unwrap_or_default()].concat();
            match how {
                0 => all[..cut.index(all.len() + 1)].to_vec(),
                _ => all,
            }
        })
}

/// Up to 256 arbitrary bytes, a datagram of any messages, or a dump.
pub fn dump_or_noise(favoured: Favoured) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        1 => datagram(favoured),
        3 => dump_datagram(favoured),
    ]
}

/// A `CTRL_ATTR_MCAST_GROUPS` attribute as the controller nests it: 0..4
/// groups (indexes 1, 2, ...), each a nest of an id (u32) and a name (a
/// NUL-terminated string), either maybe missing or malformed, every
/// length maybe lying.
pub fn mcast_groups_attr() -> impl Strategy<Value = Vec<u8>> {
    let group = (
        prop::option::weighted(0.9, any::<u32>().prop_map(|v| v.to_ne_bytes().to_vec())),
        prop::option::weighted(0.9, value_for(proto::GENL_ATTR_MSG)),
        lie_choice(),
        lie_choice(),
        lie_choice(),
    )
        .prop_map(|(id, name, l1, l2, l3)| {
            let id = id.map(|v| tlv(CTRL_ATTR_MCAST_GRP_ID, &v, l1));
            let name = name.map(|v| tlv(CTRL_ATTR_MCAST_GRP_NAME, &v, l2));
            (id.unwrap_or_default(), name.unwrap_or_default(), l3)
        });
    (vec(group, 0..4), lie_choice()).prop_map(|(groups, l)| {
        let nests: Vec<u8> = groups
            .into_iter()
            .enumerate()
            .flat_map(|(i, (id, name, l3))| {
                tlv((i as u16 + 1) | NLA_F_NESTED, &[id, name].concat(), l3)
            })
            .collect();
        tlv(CTRL_ATTR_MCAST_GROUPS | NLA_F_NESTED, &nests, l)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_in_host_byte_order() {
        let hdr = nlmsghdr(20, NLMSG_ERROR, NLM_F_ACK_TLVS, 7);
        assert_eq!(hdr.len(), NLMSG_HDRLEN);
        assert_eq!(hdr[0..4], 20u32.to_ne_bytes());
        assert_eq!(hdr[4..6], NLMSG_ERROR.to_ne_bytes());
        assert_eq!(hdr[6..8], NLM_F_ACK_TLVS.to_ne_bytes());
        assert_eq!(hdr[8..12], 7u32.to_ne_bytes());
        assert_eq!(hdr[12..16], [0; 4]);
    }

    #[test]
    fn truthful_lengths_are_exact_and_padded() {
        let attr = tlv(1, b"ab\0", TRUTH);
        let expected = [&7u16.to_ne_bytes()[..], &1u16.to_ne_bytes(), b"ab\0", &[0]].concat();
        assert_eq!(attr, expected);

        let msg = message(NLMSG_DONE, 0, 1, &[1, 2, 3], TRUTH);
        assert_eq!(msg.len(), 20);
        assert_eq!(msg[0..4], 19u32.to_ne_bytes());

        let err = nlmsgerr(-libc::EINVAL, TRUTH, &[9; 4], &attr);
        assert_eq!(err[0..4], (-libc::EINVAL).to_ne_bytes());
        assert_eq!(err[4..8], 20u32.to_ne_bytes());
        assert_eq!(err[24..], attr[..]);
    }

    proptest! {
        #[test]
        fn lies_stay_below_max(correct in 0usize..64, how in lie_choice()) {
            prop_assert!(lie(correct, NLA_HDRLEN, 0xffff, how) <= 0xffff);
            if how.0 <= 5 {
                prop_assert_eq!(lie(correct, NLA_HDRLEN, 0xffff, how), correct as u64);
            }
        }
    }
}
