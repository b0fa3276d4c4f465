//! user-raw speaking generic netlink by hand to kmod-genl (family
//! `my_genl`) and to its C twin kmod_c_genl (family `c_genl`), inside the
//! VM: `cargo xtask test`. Both answer alike, so every test runs against
//! each (`my_genl::name`, `c_genl::name`).
//!
//! On the host these tests are ignored (the host kernel cannot load the
//! modules); `cargo xtask test` boots the project's kernel with the modules
//! loaded and runs them with `--ignored --test-threads=1` (one of them
//! unloads and reloads the module, which must not overlap with the others).
//!
//! The error tests pin what the generic netlink core answers for each
//! malformed request: its policy checks run before the module's handler and
//! explain themselves in the extended ack.

use netlink_rosetta::{with_module_unloaded, Kmod, GENL};
use user_raw::genl::GENL_ID_CTRL;
use user_raw::{
    messages, put_attr, put_nul_string, Error, Family, GenlMsg, GenlMsgHdr, Socket, NLMSG_ERROR,
    NLM_F_ACK, RECV_BUF_LEN,
};

/// `n` characters of a..z: a string without NULs.
fn text(n: usize) -> Vec<u8> {
    (b'a'..=b'z').cycle().take(n).collect()
}

/// A generic netlink family and the module that registers it.
#[derive(Clone, Copy)]
struct Genl {
    kmod: Kmod,
    name: &'static str,
}

const MY_GENL: Genl = Genl {
    kmod: GENL,
    name: proto::GENL_FAMILY_NAME,
};
const C_GENL: Genl = Genl {
    kmod: netlink_rosetta::C_GENL,
    name: netlink_rosetta::C_GENL_FAMILY,
};

/// Declares each test once per family: `my_genl::name` and `c_genl::name`.
macro_rules! for_both_families {
    ($($test:ident),* $(,)?) => {
        mod my_genl {
            $(
                #[test]
                #[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
                fn $test() {
                    super::$test(super::MY_GENL)
                }
            )*
        }
        mod c_genl {
            $(
                #[test]
                #[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
                fn $test() {
                    super::$test(super::C_GENL)
                }
            )*
        }
    };
}

for_both_families!(
    echo_sizes_byte_for_byte,
    reply_carries_seq_cmd_portid_and_msg,
    missing_msg_is_einval_naming_the_attribute,
    over_long_msg_fails_the_policy,
    msg_without_its_nul_fails_the_policy,
    unknown_attribute_is_rejected_by_strict_validation,
    truncated_attribute_is_rejected_by_the_core,
    unknown_command_is_eopnotsupp,
    family_is_visible_to_the_controller,
    ack_follows_the_reply,
    replies_match_their_requests_in_a_batch,
    insmod_rmmod_twice,
    dump_returns_the_last_echoes_oldest_first,
    dump_larger_than_a_receive_buffer,
    dump_into_a_too_small_buffer_is_truncated,
    enobufs_during_a_dump_is_an_overrun,
    socket_closed_in_a_dump_then_the_module_unloads,
    dump_intr_when_an_echo_comes_between_two_datagrams,
    get_returns_one_entry,
    get_of_a_missing_entry_is_enoent_with_extack,
    get_without_id_is_einval_naming_the_attribute,
    subscriber_sees_exactly_the_echoes_after_it_joined,
);

/// A generic netlink socket and the family, resolved on it.
fn connect(g: Genl) -> (Socket, Family) {
    let mut sock = Socket::connect_genl().expect("NETLINK_GENERIC socket");
    let family = sock
        .resolve_family(g.name)
        .unwrap_or_else(|e| panic!("{} resolves: {e}", g.name));
    (sock, family)
}

/// An ECHO header, as the family's version 1.
fn echo_hdr() -> GenlMsgHdr {
    GenlMsgHdr::new(proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION)
}

/// The kernel error of `r`, as (errno, extack, missing attribute).
fn kernel_error(r: Result<GenlMsg, Error>) -> (i32, Option<String>, Option<u16>) {
    match r {
        Err(Error::Kernel {
            errno,
            extack,
            missing_attr,
        }) => (errno, extack, missing_attr),
        other => panic!("expected a kernel error, got {other:?}"),
    }
}

/// Receives one datagram and returns its messages as (type, seq, payload).
fn recv_all(sock: &mut Socket) -> Vec<(u16, u32, Vec<u8>)> {
    let mut buf = vec![0; RECV_BUF_LEN];
    let n = sock.recv(&mut buf).expect("recv");
    messages(&buf[..n])
        .map(|m| m.map(|(hdr, body)| (hdr.nlmsg_type, hdr.nlmsg_seq, body.to_vec())))
        .collect::<Result<_, _>>()
        .expect("decodes")
}

fn echo_sizes_byte_for_byte(g: Genl) {
    let (mut sock, family) = connect(g);
    for size in [0, 1, 1024, proto::MAX_MSG_LEN] {
        let msg = text(size);
        let reply = sock
            .genl_echo(family.id, &msg)
            .unwrap_or_else(|e| panic!("echo of {size} characters: {e}"));
        assert_eq!(reply.len(), size, "reply length for {size} characters");
        assert!(
            reply == msg,
            "reply of {size} characters differs from the request"
        );
    }
}

fn reply_carries_seq_cmd_portid_and_msg(g: Genl) {
    let (mut sock, family) = connect(g);
    let mut attrs = Vec::new();
    put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, b"abc").unwrap();
    let seq = sock.genl_send(family.id, 0, echo_hdr(), &attrs).unwrap();
    let reply = sock.genl_recv(family.id, seq, false).unwrap();
    assert_eq!(reply.nlmsg.nlmsg_type, family.id);
    assert_eq!(reply.nlmsg.nlmsg_seq, seq);
    assert_eq!(
        reply.nlmsg.nlmsg_pid,
        sock.portid(),
        "nlmsg_pid is the requester's portid"
    );
    assert_eq!(
        reply.genl,
        GenlMsgHdr::new(proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION)
    );
    // Exactly one attribute, MSG, with the string and its NUL.
    let all: Vec<_> = reply.attrs().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].ty, all[0].value),
        (proto::GENL_ATTR_MSG, &b"abc\0"[..])
    );
}

fn missing_msg_is_einval_naming_the_attribute(g: Genl) {
    let (mut sock, family) = connect(g);
    let err = sock.genl_request(family.id, 0, echo_hdr(), &[]);
    let (errno, extack, missing) = kernel_error(err);
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(extack.as_deref(), Some("missing attribute MSG"));
    assert_eq!(missing, Some(proto::GENL_ATTR_MSG));
    let shown = Error::Kernel {
        errno,
        extack,
        missing_attr: missing,
    };
    assert_eq!(
        shown.to_string(),
        "kernel replied EINVAL (errno 22): missing attribute MSG (missing attribute type 1)"
    );
    assert_eq!(sock.genl_echo(family.id, b"after").unwrap(), b"after");
}

fn over_long_msg_fails_the_policy(g: Genl) {
    let (mut sock, family) = connect(g);
    match sock.genl_echo(family.id, &text(proto::MAX_MSG_LEN + 1)) {
        Err(Error::Kernel {
            errno,
            extack,
            missing_attr,
        }) => {
            assert_eq!(errno, libc::EINVAL);
            assert_eq!(
                extack.as_deref(),
                Some("Attribute failed policy validation")
            );
            assert_eq!(missing_attr, None);
        }
        other => panic!("expected EINVAL, got {other:?}"),
    }
    assert_eq!(sock.genl_echo(family.id, b"after").unwrap(), b"after");
}

fn msg_without_its_nul_fails_the_policy(g: Genl) {
    let (mut sock, family) = connect(g);
    let mut attrs = Vec::new();
    put_attr(&mut attrs, proto::GENL_ATTR_MSG, b"no terminator").unwrap();
    let (errno, extack, missing) =
        kernel_error(sock.genl_request(family.id, 0, echo_hdr(), &attrs));
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(
        extack.as_deref(),
        Some("Attribute failed policy validation")
    );
    assert_eq!(missing, None);
    assert_eq!(sock.genl_echo(family.id, b"after").unwrap(), b"after");
}

fn unknown_attribute_is_rejected_by_strict_validation(g: Genl) {
    let (mut sock, family) = connect(g);
    let mut attrs = Vec::new();
    put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, b"hello").unwrap();
    put_attr(&mut attrs, proto::GENL_ATTR_MAX + 1, &1u32.to_ne_bytes()).unwrap();
    let (errno, extack, missing) =
        kernel_error(sock.genl_request(family.id, 0, echo_hdr(), &attrs));
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(extack.as_deref(), Some("Unknown attribute type"));
    assert_eq!(missing, None);
    assert_eq!(sock.genl_echo(family.id, b"after").unwrap(), b"after");
}

fn truncated_attribute_is_rejected_by_the_core(g: Genl) {
    let (mut sock, family) = connect(g);
    let mut attrs = Vec::new();
    put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, b"hello").unwrap();
    attrs.extend_from_slice(&[3, 0, 1, 0]); // nla_len 3: below the header
    let (errno, extack, _) = kernel_error(sock.genl_request(family.id, 0, echo_hdr(), &attrs));
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(
        extack.as_deref(),
        Some("bytes leftover after parsing attributes")
    );
    assert_eq!(sock.genl_echo(family.id, b"after").unwrap(), b"after");
}

fn unknown_command_is_eopnotsupp(g: Genl) {
    let (mut sock, family) = connect(g);
    let mut attrs = Vec::new();
    put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, b"hello").unwrap();
    let unknown = GenlMsgHdr::new(99, proto::GENL_FAMILY_VERSION);
    let (errno, extack, missing) = kernel_error(sock.genl_request(family.id, 0, unknown, &attrs));
    assert_eq!(errno, libc::EOPNOTSUPP);
    assert_eq!((extack, missing), (None, None), "the core says no more");
    assert_eq!(sock.genl_echo(family.id, b"after").unwrap(), b"after");
}

fn family_is_visible_to_the_controller(g: Genl) {
    let (_, family) = connect(g);
    assert_eq!(family.name, g.name);
    assert_ne!(family.id, GENL_ID_CTRL);
    assert!(family.id > GENL_ID_CTRL, "dynamic ids come after nlctrl's");
    assert_eq!(family.version, u32::from(proto::GENL_FAMILY_VERSION));
    assert_eq!(family.hdrsize, 0);
    let ops: Vec<u32> = family.ops.iter().map(|op| op.id).collect();
    let groups: Vec<&str> = family
        .mcast_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(family.maxattr, u32::from(proto::GENL_ATTR_MAX));
    assert_eq!(
        ops,
        [proto::GENL_CMD_ECHO, proto::GENL_CMD_GET].map(u32::from),
        "ECHO and GET"
    );
    assert_eq!(groups, [proto::GENL_MCGRP_EVENTS]);
    assert!(family.mcast_groups[0].id > 0);
    assert!(family.has_op(proto::GENL_CMD_ECHO));
}

fn ack_follows_the_reply(g: Genl) {
    let (mut sock, family) = connect(g);
    assert_eq!(
        sock.genl_echo_with_ack(family.id, b"with ack").unwrap(),
        b"with ack"
    );
    // And in order: the reply first, then NLMSG_ERROR 0 with the same seq.
    let mut attrs = Vec::new();
    put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, b"x").unwrap();
    let seq = sock
        .genl_send(family.id, NLM_F_ACK, echo_hdr(), &attrs)
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(recv_all(&mut sock));
    }
    assert_eq!((got[0].0, got[0].1), (family.id, seq));
    assert_eq!(&got[0].2[..4], &echo_hdr().to_bytes());
    assert_eq!(&got[0].2[4..], &attrs[..]);
    assert_eq!((got[1].0, got[1].1), (NLMSG_ERROR, seq));
    assert_eq!(&got[1].2[..4], &0i32.to_ne_bytes(), "error 0: an ack");
}

fn replies_match_their_requests_in_a_batch(g: Genl) {
    let (mut sock, family) = connect(g);
    let mut datagram = Vec::new();
    let mut want = Vec::new();
    for i in 0..8u32 {
        let msg = format!("request {i}").into_bytes();
        let mut attrs = Vec::new();
        put_nul_string(&mut attrs, proto::GENL_ATTR_MSG, &msg).unwrap();
        let seq = 1000 + i;
        user_raw::genl::encode_genl(
            &mut datagram,
            family.id,
            user_raw::NLM_F_REQUEST,
            seq,
            echo_hdr(),
            &attrs,
        )
        .unwrap();
        want.push((
            family.id,
            seq,
            [&echo_hdr().to_bytes()[..], &attrs].concat(),
        ));
    }
    sock.send_datagram(&datagram).unwrap();
    let mut got = Vec::new();
    while got.len() < want.len() {
        got.extend(recv_all(&mut sock));
    }
    assert_eq!(got, want);
}

fn insmod_rmmod_twice(g: Genl) {
    for round in 0..2 {
        let (mut sock, family) = connect(g);
        with_module_unloaded(g.kmod, || {
            // The family is gone: the controller no longer knows the name...
            // (The C twin's family is not in proto: "is its module loaded?")
            match sock.resolve_family(g.name) {
                Err(e @ Error::FamilyNotFound { .. }) => assert_eq!(
                    e.to_string(),
                    format!(
                        "generic netlink family {} not found: is {} loaded?",
                        g.name,
                        proto::module_for_family(g.name)
                    )
                ),
                other => panic!("round {round}: expected FamilyNotFound, got {other:?}"),
            }
            // ...and the core answers requests to the stale id with ENOENT.
            match sock.genl_echo(family.id, b"anyone?") {
                Err(Error::Kernel { errno, .. }) => assert_eq!(errno, libc::ENOENT),
                other => panic!("round {round}: expected ENOENT, got {other:?}"),
            }
        });
        let (mut sock, family) = connect(g);
        let msg = format!("round {round}").into_bytes();
        assert_eq!(sock.genl_echo(family.id, &msg).unwrap(), msg);
    }
}

// ---------------------------------------------------------------------------
// The echo log: GET (do and dump) and the "events" group
// ---------------------------------------------------------------------------

/// Declares each test of the CLI's dump and subscription for `my_genl`
/// (`log::name`): user-raw knows no other family.
macro_rules! log_tests {
    ($($test:ident),* $(,)?) => {
        mod log {
            $(
                #[test]
                #[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
                fn $test() {
                    super::$test(super::MY_GENL)
                }
            )*
        }
    };
}

log_tests!(
    cli_dump_prints_every_entry_then_done,
    cli_subscribe_prints_the_events_after_its_header,
);

/// Echo each of `msgs`; returns them.
fn echo_all(sock: &mut Socket, family: u16, msgs: &[Vec<u8>]) {
    for msg in msgs {
        assert_eq!(&sock.genl_echo(family, msg).expect("echo"), msg);
    }
}

/// `n` messages of `len` characters, each starting with `tag` and its index.
fn messages_of(tag: &str, n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut m = format!("{tag} {i:04} ").into_bytes();
            m.extend(text(len.saturating_sub(m.len())));
            m
        })
        .collect()
}

/// The ids of a dump follow each other: the log keeps the last echoes in
/// order, oldest first.
fn assert_consecutive(entries: &[user_raw::Entry]) {
    for pair in entries.windows(2) {
        assert_eq!(pair[1].id, pair[0].id + 1, "ids of consecutive entries");
    }
}

fn dump_returns_the_last_echoes_oldest_first(g: Genl) {
    let (mut sock, family) = connect(g);
    let msgs = messages_of("dump", 3, 0);
    echo_all(&mut sock, family.id, &msgs);
    let dump = sock.genl_dump(family.id).expect("dump");
    assert!(dump.done && !dump.interrupted);
    let n = dump.entries.len();
    assert!((3..=proto::ECHO_LOG_LEN).contains(&n), "{n} entries");
    assert_consecutive(&dump.entries);
    for (entry, msg) in dump.entries[n - 3..].iter().zip(&msgs) {
        assert_eq!(&entry.msg, msg);
        assert_eq!(entry.portid, sock.portid());
    }
    assert_eq!(dump.seq, sock.last_seq());
}

fn dump_larger_than_a_receive_buffer(g: Genl) {
    let (mut sock, family) = connect(g);
    let msgs = messages_of("big", proto::ECHO_LOG_LEN, 1000);
    echo_all(&mut sock, family.id, &msgs);
    // 1024 entries of about 1 KiB: some 45 datagrams of our 24 KiB buffer.
    let dump = sock.genl_dump(family.id).expect("dump");
    assert!(dump.done && !dump.interrupted);
    assert_eq!(dump.entries.len(), proto::ECHO_LOG_LEN, "the log is full");
    assert_consecutive(&dump.entries);
    for (entry, msg) in dump.entries.iter().zip(&msgs) {
        assert!(entry.msg == *msg, "entry {} differs", entry.id);
    }
}

fn dump_into_a_too_small_buffer_is_truncated(g: Genl) {
    let (mut sock, family) = connect(g);
    echo_all(&mut sock, family.id, &messages_of("small", 4, 100));
    let mut dump = sock
        .genl_dump_start(family.id, proto::GENL_CMD_GET, &[])
        .unwrap();
    let mut buf = vec![0; 64];
    match sock.genl_dump_recv(family.id, &mut dump, &mut buf) {
        Err(e @ Error::Truncated { buf_len: 64 }) => assert_eq!(
            e.to_string(),
            "reply truncated (MSG_TRUNC): the datagram was longer than the 64-byte receive buffer"
        ),
        other => panic!("expected MSG_TRUNC, got {other:?}"),
    }
}

fn enobufs_during_a_dump_is_an_overrun(g: Genl) {
    let (mut sock, family) = connect(g);
    let events = family
        .mcast_group(proto::GENL_MCGRP_EVENTS)
        .expect("the events group");
    // A socket with the smallest receive buffer, which joins the events
    // group and does not read: a few notifications fill its buffer.
    let default = std::fs::read_to_string("/proc/sys/net/core/rmem_default").unwrap();
    let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap();
    netlink_rosetta::set_receive_buffers(4096).unwrap();
    let full = Socket::connect_genl();
    std::fs::write("/proc/sys/net/core/rmem_max", max).unwrap();
    std::fs::write("/proc/sys/net/core/rmem_default", default).unwrap();
    let mut full = full.expect("NETLINK_GENERIC socket");
    full.add_membership(events).unwrap();
    echo_all(&mut sock, family.id, &messages_of("fill", 16, 1000));
    // Its dump's first buffer does not fit: the core answers the request
    // with ENOBUFS, which does not fit either, so the socket learns of the
    // loss on its next recvmsg().
    let mut dump = full
        .genl_dump_start(family.id, proto::GENL_CMD_GET, &[])
        .unwrap();
    let mut buf = vec![0; RECV_BUF_LEN];
    match full.genl_dump_recv(family.id, &mut dump, &mut buf) {
        Err(e @ Error::Overrun) => assert!(e.to_string().contains("ENOBUFS"), "{e}"),
        other => panic!("expected ENOBUFS, got {other:?}"),
    }
    // Nothing was broken meanwhile: a fresh socket dumps the whole log.
    let dump = sock.genl_dump(family.id).unwrap();
    assert!(dump.entries.len() >= 16 && !dump.interrupted);
}

/// Enough echoes of 500 characters that a dump takes several datagrams.
fn fill_the_log(sock: &mut Socket, family: u16) {
    echo_all(sock, family, &messages_of("fill", 200, 500));
}

fn socket_closed_in_a_dump_then_the_module_unloads(g: Genl) {
    let (mut sock, family) = connect(g);
    fill_the_log(&mut sock, family.id);
    let mut dump = sock
        .genl_dump_start(family.id, proto::GENL_CMD_GET, &[])
        .unwrap();
    let mut buf = vec![0; RECV_BUF_LEN];
    sock.genl_dump_recv(family.id, &mut dump, &mut buf)
        .expect("the first datagram");
    assert!(!dump.done && !dump.entries.is_empty());
    drop(sock); // in the middle of the dump: the core ends it
    with_module_unloaded(g.kmod, || {}); // rmmod succeeds, then insmod
    let (mut sock, family) = connect(g);
    assert_eq!(sock.genl_echo(family.id, b"after").unwrap(), b"after");
    let dump = sock.genl_dump(family.id).unwrap();
    assert_eq!(dump.entries.len(), 1, "a fresh log");
    assert_eq!(dump.entries[0].id, 1, "ids start at 1 again");
}

fn dump_intr_when_an_echo_comes_between_two_datagrams(g: Genl) {
    let (mut sock, family) = connect(g);
    fill_the_log(&mut sock, family.id);
    let (mut other, _) = connect(g);
    let mut dump = sock
        .genl_dump_start(family.id, proto::GENL_CMD_GET, &[])
        .unwrap();
    let mut buf = vec![0; RECV_BUF_LEN];
    sock.genl_dump_recv(family.id, &mut dump, &mut buf)
        .expect("the first datagram");
    assert!(!dump.done && !dump.interrupted, "built before the echo");
    let first = dump.entries.len();
    // The kernel builds the next datagram when we read this one: after
    // this echo, which changes the log.
    assert_eq!(
        other.genl_echo(family.id, b"in between").unwrap(),
        b"in between"
    );
    while !dump.done {
        sock.genl_dump_recv(family.id, &mut dump, &mut buf)
            .expect("the rest of the dump");
    }
    assert!(dump.interrupted, "NLM_F_DUMP_INTR after {first} entries");
    // Run again: a consistent dump, with the echo in it.
    let again = sock.genl_dump(family.id).unwrap();
    assert!(!again.interrupted);
    assert_eq!(again.entries.last().unwrap().msg, b"in between");
    assert_consecutive(&again.entries);
}

fn get_returns_one_entry(g: Genl) {
    let (mut sock, family) = connect(g);
    echo_all(&mut sock, family.id, &[b"get me".to_vec()]);
    let last = sock.genl_dump(family.id).unwrap().entries.pop().unwrap();
    assert_eq!(last.msg, b"get me");
    let got = sock.genl_get(family.id, Some(last.id)).expect("GET");
    assert_eq!(got, last);
    assert_eq!(got.portid, sock.portid());
}

fn get_of_a_missing_entry_is_enoent_with_extack(g: Genl) {
    let (mut sock, family) = connect(g);
    match sock.genl_get(family.id, Some(u32::MAX)) {
        Err(Error::Kernel {
            errno,
            extack,
            missing_attr,
        }) => {
            assert_eq!(errno, libc::ENOENT);
            let extack = extack.expect("an extack message");
            assert!(extack.contains(&u32::MAX.to_string()), "{extack}");
            assert_eq!(missing_attr, None);
        }
        other => panic!("expected ENOENT, got {other:?}"),
    }
    assert_eq!(sock.genl_echo(family.id, b"after").unwrap(), b"after");
}

fn get_without_id_is_einval_naming_the_attribute(g: Genl) {
    let (mut sock, family) = connect(g);
    match sock.genl_get(family.id, None) {
        Err(Error::Kernel {
            errno,
            extack,
            missing_attr,
        }) => {
            assert_eq!(errno, libc::EINVAL);
            assert_eq!(extack.as_deref(), Some("missing attribute ID"));
            assert_eq!(missing_attr, Some(proto::GENL_ATTR_ID));
        }
        other => panic!("expected EINVAL, got {other:?}"),
    }
}

fn subscriber_sees_exactly_the_echoes_after_it_joined(g: Genl) {
    let (mut sock, family) = connect(g);
    let group = family
        .mcast_group(proto::GENL_MCGRP_EVENTS)
        .expect("the family has its events group");
    echo_all(&mut sock, family.id, &[b"before".to_vec()]);
    let mut listener = Socket::connect_genl().unwrap();
    listener.add_membership(group).expect("join");
    let msgs = messages_of("event", 3, 0);
    echo_all(&mut sock, family.id, &msgs);
    let mut events = Vec::new();
    while events.len() < 3 {
        events.extend(listener.recv_genl_events(family.id).expect("events"));
    }
    assert_eq!(events.len(), 3);
    for (event, msg) in events.iter().zip(&msgs) {
        assert_eq!((&event.msg, event.portid), (msg, sock.portid()));
    }
    assert_consecutive(&events);
    let last = sock.genl_dump(family.id).unwrap().entries.pop().unwrap();
    assert_eq!(&last, events.last().unwrap(), "the event is the log entry");
    // Nothing else is queued: not "before", nor anything twice.
    listener
        .set_timeout(std::time::Duration::from_millis(300))
        .unwrap();
    assert!(matches!(
        listener.recv_genl_events(family.id),
        Err(Error::Timeout { .. })
    ));
    listener.drop_membership(group).unwrap();
}

/// Runs the user-raw CLI; returns (exit status, stdout, stderr).
fn user_raw_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(netlink_rosetta::workspace_bin("user-raw"))
        .args(args)
        .output()
        .expect("user-raw runs");
    (
        out.status.code().expect("exited"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn cli_dump_prints_every_entry_then_done(g: Genl) {
    let (mut sock, family) = connect(g);
    echo_all(&mut sock, family.id, &[b"cli dump".to_vec()]);
    let (status, stdout, stderr) = user_raw_cli(&["--module", "genl", "--dump"]);
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let header = format!("module genl: family my_genl id {}, portid ", family.id);
    assert!(lines[0].starts_with(&header), "{}", lines[0]);
    let entries = &lines[1..lines.len() - 1];
    assert!(
        entries.iter().all(|l| l.starts_with("entry id ")),
        "{stdout}"
    );
    assert_eq!(
        lines[lines.len() - 1],
        format!("done seq 1: {} entries", entries.len())
    );
    let last = entries.last().unwrap();
    assert!(
        last.ends_with(&format!(" portid {}: \"cli dump\"", sock.portid())),
        "{last}"
    );
    let (status, json, _) = user_raw_cli(&["--module", "genl", "--dump", "--json"]);
    assert_eq!(status, 0);
    let head = format!(
        "{{\"client\":\"raw\",\"module\":\"genl\",\"family_id\":{},\"portid\":",
        family.id
    );
    assert!(json.starts_with(&head), "{json}");
    assert!(
        json.contains(&format!(
            "{{\"id\":{},\"portid\":{},\"msg\":\"cli dump\"}}],\"interrupted\":false}}",
            sock.genl_dump(family.id).unwrap().entries.pop().unwrap().id,
            sock.portid()
        )),
        "{json}"
    );
}

fn cli_subscribe_prints_the_events_after_its_header(g: Genl) {
    let (mut sock, family) = connect(g);
    let group = family.mcast_group(proto::GENL_MCGRP_EVENTS).unwrap();
    echo_all(&mut sock, family.id, &[b"not seen".to_vec()]);
    let listener = netlink_rosetta::Listener::start(
        &netlink_rosetta::workspace_bin("user-raw"),
        &["--module", "genl", "--subscribe", "--count", "2"],
    );
    let header = format!(
        "module genl: family my_genl id {}, group events id {group}, portid ",
        family.id
    );
    assert!(listener.header.starts_with(&header), "{}", listener.header);
    echo_all(&mut sock, family.id, &[b"hello".to_vec(), b"hi".to_vec()]);
    let (status, lines, stderr) = listener.finish(std::time::Duration::from_secs(10));
    assert_eq!((status, stderr.as_str()), (Some(0), ""), "{lines:?}");
    let entries = sock.genl_dump(family.id).unwrap().entries;
    let ids: Vec<u32> = entries[entries.len() - 2..].iter().map(|e| e.id).collect();
    let p = sock.portid();
    assert_eq!(
        lines,
        [
            format!("event id {} portid {p}: \"hello\"", ids[0]),
            format!("event id {} portid {p}: \"hi\"", ids[1]),
        ]
    );
}
