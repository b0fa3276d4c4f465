//! Host tests against the host's real kernel. The project's units 31 and 25
//! do not exist here (no module), but NETLINK_GENERIC with its controller
//! `nlctrl` and NETLINK_ROUTE do, and both work unprivileged.

use std::time::Duration;
use user_libnl_style::{
    Error, NlCb, NlCbAction, NlCbType, NlMsg, NlSock, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME,
    CTRL_CMD_GETFAMILY, GENL_ID_CTRL,
};

const NLM_F_DUMP: u16 = 0x300;
/// An rtnetlink message type above RTM_MAX: rtnetlink answers EOPNOTSUPP.
const UNKNOWN_RTM_TYPE: u16 = 0x3ff;

fn genl() -> NlSock {
    NlSock::genl_connect().expect("NETLINK_GENERIC socket")
}

#[test]
fn missing_units_name_their_module() {
    for (unit, module) in [
        (proto::RAW_UNIT, "kmod-raw"),
        (proto::KTHREAD_UNIT, "kmod-kthread"),
    ] {
        match NlSock::connect(unit) {
            Err(e @ Error::UnitUnavailable { .. }) => assert_eq!(
                e.to_string(),
                format!("netlink unit {unit} not available: is {module} loaded?")
            ),
            Err(e) => panic!("unit {unit}: unexpected error {e}"),
            Ok(_) => panic!("unit {unit} exists on this host: is a module loaded?"),
        }
    }
}

#[test]
fn nlctrl_resolves_to_0x10_with_and_without_auto_ack() {
    let mut sk = genl();
    assert_ne!(sk.portid(), 0);
    assert_eq!(sk.last_seq(), 0);
    assert_eq!(sk.genl_ctrl_resolve("nlctrl").unwrap(), 0x10);
    assert_eq!(sk.last_seq(), 1, "sequence numbers start at 1");
    sk.disable_auto_ack();
    assert_eq!(sk.genl_ctrl_resolve("nlctrl").unwrap(), 0x10);
    sk.enable_auto_ack();
    assert_eq!(sk.genl_ctrl_resolve("nlctrl").unwrap(), 0x10);
    assert_eq!(sk.last_seq(), 3);
}

#[test]
fn missing_family_is_enoent() {
    let mut sk = genl();
    let err = sk.genl_ctrl_resolve("no_such_fam").unwrap_err();
    assert!(
        matches!(&err, Error::FamilyNotFound { name } if name == "no_such_fam"),
        "{err:?}"
    );
    assert_eq!(err.errno(), Some(libc::ENOENT));
    let err = sk.genl_ctrl_resolve(proto::GENL_FAMILY_NAME).unwrap_err();
    assert_eq!(
        err.to_string(),
        "generic netlink family \"my_genl\" not found (ENOENT): is kmod-genl loaded?"
    );
    // The socket is still usable afterwards.
    assert_eq!(sk.genl_ctrl_resolve("nlctrl").unwrap(), 0x10);
}

/// nlctrl's policy allows 15 characters: the kernel's policy validation
/// answers EINVAL with an extended ack message.
#[test]
fn policy_violation_carries_the_extack_message() {
    let mut sk = genl();
    match sk.genl_ctrl_resolve("a_family_name_too_long") {
        Err(Error::Kernel { errno, extack, .. }) => {
            assert_eq!(errno, libc::EINVAL);
            let text = extack.expect("NETLINK_EXT_ACK gives a message");
            assert!(!text.is_empty());
        }
        other => panic!("expected EINVAL, got {other:?}"),
    }
}

/// `netdev` (Linux 6.2+) answers DEV_GET without NETDEV_A_DEV_IFINDEX with
/// EINVAL and NLMSGERR_ATTR_MISS_TYPE; skipped on older host kernels.
#[test]
fn missing_attribute_is_reported() {
    let mut sk = genl();
    let family = match sk.genl_ctrl_resolve("netdev") {
        Ok(id) => id,
        Err(Error::FamilyNotFound { .. }) => {
            eprintln!("skipped: this host kernel has no netdev genl family");
            return;
        }
        Err(e) => panic!("resolving netdev: {e}"),
    };
    let mut msg = NlMsg::genlmsg_put(family, 0, 1, 1); // NETDEV_CMD_DEV_GET
    sk.send_auto(&mut msg).unwrap();
    match sk.recvmsgs_default() {
        Err(e @ Error::Kernel { .. }) => {
            assert_eq!(e.errno(), Some(libc::EINVAL));
            assert!(
                matches!(
                    e,
                    Error::Kernel {
                        missing_attr: Some(1),
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().ends_with("(missing attribute 1)"), "{e}");
        }
        other => panic!("expected EINVAL, got {other:?}"),
    }
}

#[test]
fn callbacks_see_the_reply_then_the_ack() {
    let mut sk = genl();
    let mut msg = NlMsg::genlmsg_put(GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, 1);
    msg.nla_put_string(CTRL_ATTR_FAMILY_NAME, "nlctrl").unwrap();
    let seq = sk.send_auto(&mut msg).unwrap();
    let log = std::cell::RefCell::new(Vec::new());
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |m| {
        let tb = m.genlmsg_parse(CTRL_ATTR_FAMILY_NAME, &[])?;
        let id = tb.require(CTRL_ATTR_FAMILY_ID)?.nla_get_u16()?;
        log.borrow_mut()
            .push(format!("valid seq {} id {id:#x}", m.hdr.nlmsg_seq));
        Ok(NlCbAction::Ok)
    });
    cb.set(NlCbType::Ack, |m| {
        log.borrow_mut()
            .push(format!("ack seq {}", m.hdr.nlmsg_seq));
        Ok(NlCbAction::Stop)
    });
    sk.recvmsgs(&mut cb).unwrap();
    drop(cb);
    assert_eq!(
        log.into_inner(),
        [format!("valid seq {seq} id 0x10"), format!("ack seq {seq}")]
    );
}

#[test]
fn a_dump_ends_at_nlmsg_done() {
    let mut sk = genl();
    let mut msg = NlMsg::genlmsg_put(GENL_ID_CTRL, NLM_F_DUMP, CTRL_CMD_GETFAMILY, 1);
    sk.send_auto(&mut msg).unwrap(); // with NLM_F_ACK: no ack follows a dump
    let (mut names, mut finished) = (Vec::new(), false);
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |m| {
        let tb = m.genlmsg_parse(CTRL_ATTR_FAMILY_NAME, &[])?;
        names.push(
            tb.require(CTRL_ATTR_FAMILY_NAME)?
                .nla_get_string()?
                .to_owned(),
        );
        Ok(NlCbAction::Ok)
    });
    cb.set(NlCbType::Finish, |_| {
        finished = true;
        Ok(NlCbAction::Ok) // not Stop: the loop still ends, nothing more is expected
    });
    sk.recvmsgs(&mut cb).unwrap();
    drop(cb);
    assert!(finished);
    assert!(names.iter().any(|n| n == "nlctrl"), "{names:?}");
}

#[test]
fn kernel_errors_end_the_loop_unless_the_err_callback_skips_them() {
    let mut sk = NlSock::connect(libc::NETLINK_ROUTE).unwrap();
    sk.send_simple(UNKNOWN_RTM_TYPE, 0, b"x").unwrap();
    match sk.recvmsgs_default() {
        Err(e) => assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}"),
        Ok(()) => panic!("rtnetlink accepted an unknown type"),
    }
    sk.send_simple(UNKNOWN_RTM_TYPE, 0, b"x").unwrap();
    let mut seen = None;
    let mut cb = NlCb::new();
    cb.err(|e| {
        seen = Some((e.error, e.request.nlmsg_type));
        Ok(NlCbAction::Skip)
    });
    sk.recvmsgs(&mut cb).unwrap();
    drop(cb);
    assert_eq!(seen, Some((-libc::EOPNOTSUPP, UNKNOWN_RTM_TYPE)));
}

#[test]
fn stale_answers_are_skipped() {
    // Request 1 is answered (error) but never read; recvmsgs for request 2
    // skips it and returns request 2's answer.
    let mut sk = NlSock::connect(libc::NETLINK_ROUTE).unwrap();
    sk.send_simple(UNKNOWN_RTM_TYPE, 0, b"one").unwrap();
    let seq = sk.send_simple(UNKNOWN_RTM_TYPE, 0, b"two").unwrap();
    let mut answered = None;
    let mut cb = NlCb::new();
    cb.err(|e| {
        answered = Some(e.request.nlmsg_seq);
        Ok(NlCbAction::Ok)
    });
    sk.recvmsgs(&mut cb).unwrap();
    drop(cb);
    assert_eq!(answered, Some(seq));
}

#[test]
fn truncated_datagram_is_an_error() {
    let mut sk = NlSock::connect(libc::NETLINK_ROUTE).unwrap();
    sk.set_msg_buf_size(20);
    sk.send_simple(UNKNOWN_RTM_TYPE, 0, b"hello").unwrap();
    match sk.recvmsgs_default() {
        Err(Error::Truncated { len, buf_len: 20 }) => assert!(len > 20),
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn silence_is_a_timeout() {
    let mut sk = NlSock::connect(libc::NETLINK_ROUTE).unwrap();
    sk.set_timeout(Duration::from_millis(50)).unwrap();
    match sk.recvmsgs_default() {
        Err(e @ Error::Timeout { .. }) => assert!(e.to_string().contains("50 ms")),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn genl_calls_need_a_genl_socket() {
    let mut sk = NlSock::connect(libc::NETLINK_ROUTE).unwrap();
    assert!(matches!(
        sk.genl_ctrl_resolve("nlctrl"),
        Err(Error::NotGeneric)
    ));
}

#[test]
fn genl_ctrl_resolve_grp_finds_nlctrls_notify_group() {
    let mut sk = genl();
    sk.disable_auto_ack();
    assert_eq!(sk.genl_ctrl_resolve_grp("nlctrl", "notify").unwrap(), 0x10);
    match sk.genl_ctrl_resolve_grp("nlctrl", "events") {
        Err(e @ Error::GroupNotFound { .. }) => assert_eq!(
            e.to_string(),
            "generic netlink family \"nlctrl\" has no multicast group \"events\""
        ),
        other => panic!("expected GroupNotFound, got {other:?}"),
    }
    assert!(matches!(
        sk.genl_ctrl_resolve_grp("no_such_fam", "events"),
        Err(Error::FamilyNotFound { .. })
    ));
    let mut listener = genl();
    listener.add_membership(0x10).expect("unprivileged join");
    listener.drop_membership(0x10).expect("leave");
}

#[test]
fn a_dump_into_a_too_small_buffer_is_truncated() {
    let mut sk = genl();
    sk.disable_auto_ack();
    sk.set_msg_buf_size(64);
    let mut msg = NlMsg::genlmsg_put(GENL_ID_CTRL, NLM_F_DUMP, CTRL_CMD_GETFAMILY, 1);
    sk.send_auto(&mut msg).unwrap();
    match sk.recvmsgs_default() {
        Err(e @ Error::Truncated { buf_len: 64, .. }) => assert!(
            e.to_string()
                .ends_with("does not fit the 64-byte receive buffer"),
            "{e}"
        ),
        other => panic!("expected Truncated, got {other:?}"),
    }
}

/// `--dump` on a raw module is a usage error (exit 2), before any socket.
#[test]
fn dump_of_a_raw_module_is_a_usage_error() {
    for module in ["raw", "kthread"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_user-libnl-style"))
            .args(["--module", module, "--dump"])
            .output()
            .expect("the CLI runs");
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "user-libnl-style: error: --dump applies to generic netlink only: the raw units keep no log\n"
        );
        assert!(out.stdout.is_empty());
    }
}
