//! Parser fuzz tests: every function that reads bytes from the kernel
//! (`messages`, `NlMsgErr::parse`, `nla_parse` with each policy type, the
//! `nla_get_*` getters, the genl accessors, and `recvmsgs`' handling of a
//! datagram) gets arbitrary bytes, and well-formed messages with broken
//! lengths, and must answer `Ok` or `Err`: no panic, and nothing returned
//! longer than its input (no allocation sized by a length field).
//!
//! `cargo test -p user-libnl-style parser_fuzz` runs them. Failures are not
//! persisted to `proptest-regressions/`: a failing input is pinned as a
//! plain `#[test]` with its bytes, which reads better than proptest's seed
//! file.

use proptest::prelude::*;
use rosetta_fuzzgen::{
    attrs_or_noise, config, datagram_or_noise, dump_or_noise, mcast_groups_attr, Favoured,
};

use super::*;

/// The family id and sequence number the receive paths are called with.
const FAMILY: u16 = 0x1a;
const SEQ: u32 = 1;

/// What the generators favour: the controller's replies
/// (`genl_ctrl_resolve`) and our family's, replies to `SEQ`.
const FAVOURED: Favoured = Favoured {
    types: &[GENL_ID_CTRL, FAMILY],
    flags: &[],
    seq: SEQ,
};

// ---------------------------------------------------------------------------
// What every parser is asked
// ---------------------------------------------------------------------------

/// Every policy type, for every attribute type the generators produce.
const POLICIES: [NlaPolicy; 8] = [
    NlaPolicy::Unspec,
    NlaPolicy::U8,
    NlaPolicy::U16,
    NlaPolicy::U32,
    NlaPolicy::String { max_len: 4 },
    NlaPolicy::NulString { max_len: 4 },
    NlaPolicy::Flag,
    NlaPolicy::Nested,
];

/// `nla_parse` with each policy (and none) on `buf`, then every getter on
/// what it found, and `nla_parse_nested` on each attribute.
fn parse_attributes(buf: &[u8], depth: u32) {
    for maxtype in [0, 3, 7] {
        let _ = nla_parse(buf, maxtype, &[]);
    }
    for pol in POLICIES {
        let policy: Vec<(u16, NlaPolicy)> = (0..8).map(|ty| (ty, pol)).collect();
        let Ok(tb) = nla_parse(buf, 7, &policy) else {
            continue;
        };
        for ty in 0..9 {
            let _ = tb.require(ty);
            let Some(attr) = tb.get(ty) else { continue };
            assert!(attr.nla_data().len() <= buf.len());
            let _ = (attr.nla_get_u8(), attr.nla_get_u16(), attr.nla_get_u32());
            if let Ok(s) = attr.nla_get_string() {
                assert!(s.len() <= attr.nla_data().len());
            }
            if depth < 3 {
                let _ = attr.nla_parse_nested(7, &policy);
                parse_attributes(attr.nla_data(), depth + 1);
            }
        }
    }
}

/// Walk a datagram with `messages` and parse each message as everything it
/// could be: an `NLMSG_ERROR`, a generic netlink message, a reply of the
/// controller or of `my_genl`.
fn parse_everything(buf: &[u8]) {
    let _ = NlMsgHdr::from_bytes(buf);
    let mut count = 0;
    for msg in messages(buf) {
        let Ok(msg) = msg else { continue };
        count += 1;
        let data = msg.nlmsg_data();
        assert!(data.len() <= buf.len());
        if let Ok(err) = NlMsgErr::parse(&msg) {
            assert!(err.extack.as_ref().map_or(0, String::len) <= 3 * data.len()); // lossy UTF-8
            let _ = err.to_error().to_string();
        }
        let _ = msg.genlmsg_hdr();
        if let Ok(attrs) = msg.genlmsg_attrdata() {
            assert!(attrs.len() <= data.len());
            parse_attributes(attrs, 0);
        }
        let _ = msg.genlmsg_parse(proto::GENL_ATTR_MAX, ECHO_POLICY);
    }
    assert!(count <= buf.len() / NLMSG_HDRLEN);
}

/// `recvmsgs`' handling of one datagram, with the VALID callbacks of
/// `echo_raw`, `echo_genl` and `genl_ctrl_resolve` (their parsing, as
/// they do it) and an ERR callback, for each state of the loop.
fn receive_paths(buf: &[u8]) {
    let states = [
        (false, false, Some(SEQ)),
        (true, false, Some(SEQ)),
        (true, true, Some(SEQ)),
        (false, false, None),
    ];
    for (ack_pending, multipart, seq_expect) in states {
        let mut state = RecvState {
            seq_expect,
            ack_pending,
            multipart,
            interrupted: false,
        };
        let mut kept = Vec::new();
        let mut cb = NlCb::new();
        cb.set(NlCbType::Valid, |msg| {
            kept.push(msg.nlmsg_data().len()); // echo_raw
            let tb = msg.genlmsg_parse(proto::GENL_ATTR_MAX, ECHO_POLICY)?; // echo_genl
            let text = tb.require(proto::GENL_ATTR_MSG)?.nla_get_string()?;
            assert!(text.len() <= buf.len());
            Ok(NlCbAction::Ok)
        });
        cb.err(|err| {
            assert!(err.extack.as_ref().map_or(0, String::len) <= 3 * buf.len());
            Ok(NlCbAction::Skip)
        });
        let _ = handle_datagram(buf, &mut state, &mut cb);
        drop(cb);
        assert!(kept.iter().all(|&len| len <= buf.len()));

        // genl_ctrl_resolve's callback, with the default err callback.
        let mut cb = NlCb::new();
        cb.set(NlCbType::Valid, |reply| {
            let policy = [
                (CTRL_ATTR_FAMILY_ID, NlaPolicy::U16),
                (
                    CTRL_ATTR_FAMILY_NAME,
                    NlaPolicy::NulString {
                        max_len: GENL_NAMSIZ - 1,
                    },
                ),
            ];
            let tb = reply.genlmsg_parse(CTRL_ATTR_FAMILY_NAME, &policy)?;
            tb.require(CTRL_ATTR_FAMILY_ID)?.nla_get_u16()?;
            Ok(NlCbAction::Ok)
        });
        let _ = handle_datagram(buf, &mut state, &mut cb);

        // dump_log's and recv_events' callbacks, and a DUMP_INTR callback.
        let mut cb = NlCb::new();
        cb.set(NlCbType::Valid, |msg| {
            if let Ok(e) = parse_entry(msg, proto::GENL_CMD_GET) {
                assert!(e.msg.len() <= buf.len());
            }
            let _ = parse_entry(msg, proto::GENL_CMD_EVENT);
            Ok(NlCbAction::Ok)
        });
        cb.set(NlCbType::DumpIntr, |_| Ok(NlCbAction::Ok));
        cb.set(NlCbType::Finish, |msg| {
            let _ = NlMsgErr::parse_done(msg);
            Ok(NlCbAction::Stop)
        });
        let _ = handle_datagram(buf, &mut state, &mut cb);
    }
}

/// `genl_ctrl_resolve_grp`'s parsing of the controller's reply: the
/// groups' nests, each parsed with its policy.
fn resolve_grp_parsing(attrs: &[u8]) {
    let Ok(tb) = nla_parse(
        attrs,
        CTRL_ATTR_MCAST_GROUPS,
        &[(CTRL_ATTR_MCAST_GROUPS, NlaPolicy::Nested)],
    ) else {
        return;
    };
    let Some(groups) = tb.get(CTRL_ATTR_MCAST_GROUPS) else {
        return;
    };
    let policy = [
        (
            CTRL_ATTR_MCAST_GRP_NAME,
            NlaPolicy::NulString {
                max_len: GENL_NAMSIZ - 1,
            },
        ),
        (CTRL_ATTR_MCAST_GRP_ID, NlaPolicy::U32),
    ];
    let mut count = 0;
    for nest in groups.nested_attrs() {
        let Ok(nest) = nest else { continue };
        count += 1;
        if let Ok(grp) = nest.nla_parse_nested(CTRL_ATTR_MCAST_GRP_ID, &policy) {
            let _ = grp
                .get(CTRL_ATTR_MCAST_GRP_NAME)
                .map(|n| n.nla_get_string());
            let _ = grp.get(CTRL_ATTR_MCAST_GRP_ID).map(|n| n.nla_get_u32());
        }
    }
    assert!(count <= attrs.len() / NLA_HDRLEN);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parser_fuzz_dumps(buf in dump_or_noise(FAVOURED)) {
        parse_everything(&buf);
        receive_paths(&buf);
        for msg in messages(&buf).flatten() {
            let _ = NlMsgErr::parse_done(&msg);
        }
    }

    #[test]
    fn parser_fuzz_mcast_groups(groups in mcast_groups_attr(), rest in attrs_or_noise()) {
        resolve_grp_parsing(&[groups, rest].concat());
    }

    #[test]
    fn parser_fuzz_datagrams(buf in datagram_or_noise(FAVOURED)) {
        parse_everything(&buf);
        receive_paths(&buf);
    }

    #[test]
    fn parser_fuzz_attributes(buf in attrs_or_noise()) {
        parse_attributes(&buf, 0);
    }
}
