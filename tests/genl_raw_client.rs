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
    assert_eq!(family.maxattr, u32::from(proto::GENL_ATTR_MAX));
    let ops: Vec<u32> = family.ops.iter().map(|op| op.id).collect();
    assert_eq!(
        ops,
        [
            u32::from(proto::GENL_CMD_ECHO),
            u32::from(proto::GENL_CMD_GET)
        ],
        "ECHO and GET are the ops (EVENT is a notification)"
    );
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
