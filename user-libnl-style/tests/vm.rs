//! user-libnl-style against the kernel modules, inside the VM.
//!
//! On the host these tests are ignored (the host kernel cannot load the
//! modules). In the VM, with kmod-raw and kmod-genl loaded:
//!
//! ```text
//! cargo test -p user-libnl-style --no-run
//! cargo xtask vm --modules raw,genl -- target/debug/deps/vm-<hash> --ignored --test-threads=1
//! ```

use user_libnl_style::{
    echo_genl, echo_raw, Error, NlCb, NlCbAction, NlCbType, NlMsg, NlSock, NLMSG_ERROR,
};

/// `n` characters of a..z: a payload that shows misplaced bytes, and a
/// string without NULs.
fn text(n: usize) -> String {
    ('a'..='z').cycle().take(n).collect()
}

fn raw() -> NlSock {
    NlSock::connect(proto::RAW_UNIT).expect("kmod-raw answers on its unit")
}

/// A generic netlink socket, and `my_genl`'s id resolved on it.
fn genl() -> (NlSock, u16) {
    let mut sk = NlSock::genl_connect().expect("NETLINK_GENERIC socket");
    let id = sk
        .genl_ctrl_resolve(proto::GENL_FAMILY_NAME)
        .expect("kmod-genl registered my_genl");
    (sk, id)
}

/// Expect a kernel error with `errno`; returns its extack message.
fn kernel_error<T: std::fmt::Debug>(result: Result<T, Error>, errno: i32) -> Option<String> {
    match result {
        Err(Error::Kernel {
            errno: got, extack, ..
        }) if got == errno => extack,
        other => panic!("expected errno {errno}, got {other:?}"),
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_echo_sizes_with_and_without_auto_ack() {
    let mut sk = raw();
    for auto_ack in [true, false] {
        if !auto_ack {
            sk.disable_auto_ack();
        }
        for size in [0, 1, 1024, proto::MAX_PAYLOAD] {
            let payload = text(size);
            let reply = echo_raw(&mut sk, payload.as_bytes())
                .unwrap_or_else(|e| panic!("echo of {size} bytes (auto-ack {auto_ack}): {e}"));
            assert_eq!(reply.len(), size, "reply length for {size} bytes");
            assert!(reply == payload.as_bytes(), "reply of {size} bytes differs");
        }
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_oversize_is_emsgsize_with_extack() {
    let mut sk = raw();
    let extack = kernel_error(
        echo_raw(&mut sk, text(proto::MAX_PAYLOAD + 1).as_bytes()),
        libc::EMSGSIZE,
    );
    assert_eq!(extack.as_deref(), Some("payload longer than 16384 bytes"));
    // The socket still works.
    assert_eq!(echo_raw(&mut sk, b"after").unwrap(), b"after");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_auto_ack_follows_the_reply() {
    let mut sk = raw();
    let seq = sk.send_simple(proto::ECHO_MSG_TYPE, 0, b"acked").unwrap();
    let log = std::cell::RefCell::new(Vec::new());
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |m| {
        let data = String::from_utf8_lossy(m.nlmsg_data()).into_owned();
        log.borrow_mut().push(format!(
            "valid type {:#x} seq {} pid {} {data}",
            m.hdr.nlmsg_type, m.hdr.nlmsg_seq, m.hdr.nlmsg_pid
        ));
        Ok(NlCbAction::Ok)
    });
    cb.set(NlCbType::Ack, |m| {
        log.borrow_mut().push(format!(
            "ack type {} seq {}",
            m.hdr.nlmsg_type, m.hdr.nlmsg_seq
        ));
        Ok(NlCbAction::Stop)
    });
    sk.recvmsgs(&mut cb).unwrap();
    drop(cb);
    assert_eq!(
        log.into_inner(),
        [
            format!("valid type 0x10 seq {seq} pid {} acked", sk.portid()),
            format!("ack type {NLMSG_ERROR} seq {seq}"),
        ]
    );
    // The ack was consumed: the next echo gets its own reply.
    assert_eq!(echo_raw(&mut sk, b"next").unwrap(), b"next");
    assert_eq!(sk.last_seq(), seq + 1);
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_echo_hello() {
    let (mut sk, id) = genl();
    assert_eq!(echo_genl(&mut sk, id, "hello").unwrap(), "hello");
    sk.disable_auto_ack();
    assert_eq!(echo_genl(&mut sk, id, "hello").unwrap(), "hello");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_echo_of_the_longest_msg() {
    let (mut sk, id) = genl();
    let long = text(proto::MAX_MSG_LEN);
    assert_eq!(echo_genl(&mut sk, id, &long).unwrap(), long);
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_missing_msg_is_einval_naming_msg() {
    let (mut sk, id) = genl();
    let mut msg = NlMsg::genlmsg_put(id, 0, proto::GENL_CMD_ECHO, proto::GENL_FAMILY_VERSION);
    sk.send_auto(&mut msg).unwrap();
    let result = sk.recvmsgs_default();
    if let Err(Error::Kernel { missing_attr, .. }) = &result {
        assert_eq!(*missing_attr, Some(u32::from(proto::GENL_ATTR_MSG)));
    }
    let extack = kernel_error(result, libc::EINVAL).expect("an extack message");
    assert!(extack.contains("MSG"), "{extack}");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_msg_over_the_policy_is_einval() {
    let (mut sk, id) = genl();
    kernel_error(
        echo_genl(&mut sk, id, &text(proto::MAX_MSG_LEN + 1)),
        libc::EINVAL,
    );
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn genl_unknown_command_is_eopnotsupp() {
    let (mut sk, id) = genl();
    let mut msg = NlMsg::genlmsg_put(id, 0, 99, proto::GENL_FAMILY_VERSION);
    msg.nla_put_string(proto::GENL_ATTR_MSG, "hello").unwrap();
    sk.send_auto(&mut msg).unwrap();
    kernel_error(sk.recvmsgs_default(), libc::EOPNOTSUPP);
}
