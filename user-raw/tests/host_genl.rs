//! Host tests of the generic netlink pieces against the host's own kernel:
//! the controller (nlctrl) is in every kernel and answers unprivileged
//! users. `kmod-genl` is not loaded here, so `my_genl` is not found.

use user_raw::genl::{CTRL_ATTR_FAMILY_NAME, CTRL_CMD_GETFAMILY, CTRL_VERSION, GENL_ID_CTRL};
use user_raw::{put_attr, put_nul_string, Error, Family, GenlMsgHdr, Socket, NLM_F_ACK};

fn connect() -> Socket {
    Socket::connect_genl().expect("NETLINK_GENERIC socket")
}

fn getfamily() -> GenlMsgHdr {
    GenlMsgHdr::new(CTRL_CMD_GETFAMILY, CTRL_VERSION)
}

/// The kernel error of `r`, as (errno, extack, missing attribute).
fn kernel_error<T: std::fmt::Debug>(r: Result<T, Error>) -> (i32, Option<String>, Option<u16>) {
    match r {
        Err(Error::Kernel {
            errno,
            extack,
            missing_attr,
        }) => (errno, extack, missing_attr),
        other => panic!("expected a kernel error, got {other:?}"),
    }
}

#[test]
fn resolve_the_controller_itself() {
    let mut sock = connect();
    let nlctrl: Family = sock.resolve_family("nlctrl").expect("nlctrl resolves");
    assert_eq!(nlctrl.id, 0x10);
    assert_eq!(nlctrl.id, GENL_ID_CTRL);
    assert_eq!(nlctrl.name, "nlctrl");
    assert!(nlctrl.version >= 1, "version {}", nlctrl.version);
    assert!(nlctrl.has_op(CTRL_CMD_GETFAMILY), "ops {:?}", nlctrl.ops);
    assert_eq!(sock.last_seq(), 1);
    // Twice on the same socket: the sequence numbers keep them apart.
    assert_eq!(sock.resolve_family("nlctrl").unwrap(), nlctrl);
    assert_eq!(sock.last_seq(), 2);
}

#[test]
fn missing_families_are_a_clear_error() {
    let mut sock = connect();
    let cases = [
        (
            proto::GENL_FAMILY_NAME,
            "generic netlink family my_genl not found: is kmod-genl loaded?",
        ),
        (
            "no_such_fam",
            "generic netlink family no_such_fam not found: is its module loaded?",
        ),
    ];
    for (name, text) in cases {
        match sock.resolve_family(name) {
            Err(e @ Error::FamilyNotFound { .. }) => assert_eq!(e.to_string(), text),
            other => panic!("family {name}: expected FamilyNotFound, got {other:?}"),
        }
    }
    // The socket is still usable.
    assert_eq!(sock.resolve_family("nlctrl").unwrap().id, 0x10);
}

#[test]
fn reply_then_ack() {
    let mut sock = connect();
    let mut attrs = Vec::new();
    put_nul_string(&mut attrs, CTRL_ATTR_FAMILY_NAME, b"nlctrl").unwrap();
    let reply = sock
        .genl_request(GENL_ID_CTRL, NLM_F_ACK, getfamily(), &attrs)
        .expect("reply and ack");
    assert_eq!(reply.nlmsg.nlmsg_type, GENL_ID_CTRL);
    assert_eq!(reply.nlmsg.nlmsg_pid, sock.portid());
    assert_eq!(Family::parse(&reply.attrs).unwrap().id, 0x10);
}

#[test]
fn controller_errors() {
    let mut sock = connect();
    // Unknown command: the generic netlink core answers EOPNOTSUPP.
    let (errno, _, _) =
        kernel_error(sock.genl_request(GENL_ID_CTRL, 0, GenlMsgHdr::new(99, 1), &[]));
    assert_eq!(errno, libc::EOPNOTSUPP);
    // GETFAMILY without a name or id.
    let (errno, _, _) = kernel_error(sock.genl_request(GENL_ID_CTRL, 0, getfamily(), &[]));
    assert_eq!(errno, libc::EINVAL);
    // A name without its NUL fails CTRL_ATTR_FAMILY_NAME's NLA_NUL_STRING
    // policy, and the core says so in the extended ack.
    let mut attrs = Vec::new();
    put_attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, b"nlctrl").unwrap();
    let (errno, extack, missing) =
        kernel_error(sock.genl_request(GENL_ID_CTRL, 0, getfamily(), &attrs));
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(
        extack.as_deref(),
        Some("Attribute failed policy validation")
    );
    assert_eq!(missing, None);
    // A name longer than GENL_NAMSIZ - 1 (15) characters: the same policy
    // check, so EINVAL rather than ENOENT.
    let (errno, extack, _) = kernel_error(sock.resolve_family("sixteen_chars_xx"));
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(
        extack.as_deref(),
        Some("Attribute failed policy validation")
    );
    // Still usable.
    assert_eq!(sock.resolve_family("nlctrl").unwrap().id, 0x10);
}

#[test]
fn names_with_a_nul_are_refused_before_sending() {
    let mut sock = connect();
    assert!(matches!(
        sock.resolve_family("nl\0ctrl"),
        Err(Error::NulInString { offset: 2 })
    ));
    assert_eq!(sock.last_seq(), 0, "nothing was sent");
}

/// The controller's own multicast group, "notify", from its
/// `CTRL_ATTR_MCAST_GROUPS`: the same parsing as my_genl's "events".
#[test]
fn the_controllers_notify_group_resolves_and_can_be_joined() {
    let mut sock = connect();
    let nlctrl = sock.resolve_family("nlctrl").expect("nlctrl resolves");
    let notify = nlctrl.mcast_group("notify").expect("nlctrl has notify");
    assert_eq!(notify, 0x10, "GENL_ID_CTRL's group has the same number");
    assert_eq!(nlctrl.mcast_group("events"), None);
    let mut listener = connect();
    listener.add_membership(notify).expect("unprivileged join");
    listener.drop_membership(notify).expect("leave");
}

/// A real multipart answer: the controller dumps every family
/// (`CTRL_CMD_GETFAMILY` with `NLM_F_DUMP`), with the same loop as the
/// echo-log dump.
#[test]
fn the_controller_dumps_every_family_until_done() {
    let mut sock = connect();
    let mut dump = sock
        .genl_dump_start(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &[])
        .unwrap();
    let mut names = Vec::new();
    let mut buf = vec![0; user_raw::RECV_BUF_LEN];
    while !dump.done {
        let n = sock.recv(&mut buf).expect("recv");
        user_raw::genl::multipart_datagram(GENL_ID_CTRL, &buf[..n], &mut dump, |msg| {
            assert_ne!(msg.nlmsg.nlmsg_flags & user_raw::NLM_F_MULTI, 0);
            names.push(Family::parse(&msg.attrs)?.name);
            Ok(())
        })
        .expect("a well-formed dump");
    }
    assert!(names.contains(&"nlctrl".to_string()), "{names:?}");
    assert!(!dump.interrupted);
}

/// A buffer too small for the first datagram of a dump: MSG_TRUNC, named.
#[test]
fn a_dump_into_a_too_small_buffer_is_truncated() {
    let mut sock = connect();
    let mut dump = sock
        .genl_dump_start(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &[])
        .unwrap();
    let mut buf = vec![0; 64];
    match sock.genl_dump_recv(GENL_ID_CTRL, &mut dump, &mut buf) {
        Err(e @ Error::Truncated { buf_len: 64 }) => assert_eq!(
            e.to_string(),
            "reply truncated (MSG_TRUNC): the datagram was longer than the 64-byte receive buffer"
        ),
        other => panic!("expected Truncated, got {other:?}"),
    }
}
