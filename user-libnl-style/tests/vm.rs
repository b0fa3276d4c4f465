//! user-libnl-style against the kernel modules, inside the VM.
//!
//! On the host these tests are ignored (the host kernel cannot load the
//! modules). In the VM, with kmod-raw and kmod-genl loaded:
//!
//! ```text
//! cargo test -p user-libnl-style --no-run
//! cargo xtask vm --modules raw,genl -- target/debug/deps/vm-<hash> --ignored --test-threads=1
//! ```

use std::time::Duration;

use user_libnl_style::{
    dump_log, echo_genl, echo_raw, get_entry, recv_events, Entry, Error, Event, NlCb, NlCbAction,
    NlCbType, NlMsg, NlSock, RawEvent, NLMSG_ERROR, NLM_F_DUMP,
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

// ---------------------------------------------------------------------------
// The echo log (dump, GET) and the groups
// ---------------------------------------------------------------------------

/// `n` messages of `len` characters, each starting with `tag` and its index.
fn messages_of(tag: &str, n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let head = format!("{tag} {i:04} ");
            let pad = text(len.saturating_sub(head.len()));
            head + &pad
        })
        .collect()
}

fn echo_all(sk: &mut NlSock, id: u16, msgs: &[String]) {
    sk.disable_auto_ack();
    for msg in msgs {
        assert_eq!(&echo_genl(sk, id, msg).expect("echo"), msg);
    }
}

fn assert_consecutive(entries: &[Entry]) {
    for pair in entries.windows(2) {
        assert_eq!(pair[1].id, pair[0].id + 1, "ids of consecutive entries");
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_returns_the_last_echoes_oldest_first() {
    let (mut sk, id) = genl();
    let msgs = messages_of("dump", 3, 0);
    echo_all(&mut sk, id, &msgs);
    let dump = dump_log(&mut sk, id).expect("dump");
    assert!(!dump.interrupted);
    assert_eq!(dump.seq, sk.last_seq());
    let n = dump.entries.len();
    assert!((3..=proto::ECHO_LOG_LEN).contains(&n));
    assert_consecutive(&dump.entries);
    for (e, msg) in dump.entries[n - 3..].iter().zip(&msgs) {
        assert_eq!((&e.msg, e.portid), (msg, sk.portid()));
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_larger_than_a_receive_buffer() {
    let (mut sk, id) = genl();
    let msgs = messages_of("big", proto::ECHO_LOG_LEN, 1000);
    echo_all(&mut sk, id, &msgs);
    let dump = dump_log(&mut sk, id).expect("dump");
    assert_eq!(dump.entries.len(), proto::ECHO_LOG_LEN);
    assert_consecutive(&dump.entries);
    assert!(dump.entries.iter().zip(&msgs).all(|(e, m)| e.msg == *m));
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_into_a_too_small_buffer_is_truncated() {
    let (mut sk, id) = genl();
    echo_all(&mut sk, id, &messages_of("small", 4, 100));
    sk.set_msg_buf_size(64);
    match dump_log(&mut sk, id) {
        Err(e @ Error::Truncated { buf_len: 64, .. }) => {
            assert!(
                e.to_string()
                    .ends_with("does not fit the 64-byte receive buffer"),
                "{e}"
            )
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_socket_closed_in_a_dump_then_the_module_unloads() {
    let (mut sk, id) = genl();
    echo_all(&mut sk, id, &messages_of("fill", 200, 500));
    // Stop at the first entry: the rest of the dump is never read.
    let mut msg = NlMsg::genlmsg_put(id, NLM_F_DUMP, proto::GENL_CMD_GET, 1);
    sk.send_auto(&mut msg).unwrap();
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |_| Ok(NlCbAction::Stop));
    sk.recvmsgs(&mut cb).unwrap();
    drop(cb);
    drop(sk);
    netlink_rosetta::with_module_unloaded(netlink_rosetta::GENL, || {});
    let (mut sk, id) = genl();
    echo_all(&mut sk, id, &["after".to_string()]);
    assert_eq!(
        dump_log(&mut sk, id).unwrap().entries.len(),
        1,
        "a fresh log"
    );
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_dump_intr_when_an_echo_comes_between_two_datagrams() {
    let (mut sk, id) = genl();
    echo_all(&mut sk, id, &messages_of("fill", 200, 500));
    let (mut other, _) = genl();
    other.disable_auto_ack();
    // An echo from the first VALID callback: the kernel built the first
    // datagram at the request, builds the next one when we read again.
    let mut msg = NlMsg::genlmsg_put(id, NLM_F_DUMP, proto::GENL_CMD_GET, 1);
    sk.disable_auto_ack();
    sk.send_auto(&mut msg).unwrap();
    let (mut echoed, mut entries) = (false, 0);
    let mut cb = NlCb::new();
    cb.set(NlCbType::Valid, |_| {
        if !echoed {
            echo_genl(&mut other, id, "in between")?;
            echoed = true;
        }
        entries += 1;
        Ok(NlCbAction::Ok)
    });
    // No DUMP_INTR callback: libnl's default, the error after the dump.
    match sk.recvmsgs(&mut cb) {
        Err(e @ Error::DumpInterrupted) => assert!(e.to_string().contains("NLM_F_DUMP_INTR")),
        other => panic!("expected DumpInterrupted, got {other:?}"),
    }
    drop(cb);
    assert!(entries > 1);
    // dump_log notes it instead, and a dump run again is consistent.
    let again = dump_log(&mut sk, id).unwrap();
    assert!(!again.interrupted);
    assert_eq!(again.entries.last().unwrap().msg, "in between");
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_get_one_entry_a_missing_one_and_none() {
    let (mut sk, id) = genl();
    echo_all(&mut sk, id, &["get me".to_string()]);
    let last = dump_log(&mut sk, id).unwrap().entries.pop().unwrap();
    assert_eq!(get_entry(&mut sk, id, Some(last.id)).unwrap(), last);
    let extack = kernel_error(get_entry(&mut sk, id, Some(u32::MAX)), libc::ENOENT)
        .expect("an extack message");
    assert!(extack.contains(&u32::MAX.to_string()), "{extack}");
    match get_entry(&mut sk, id, None) {
        Err(Error::Kernel {
            errno,
            extack,
            missing_attr,
        }) => {
            assert_eq!(errno, libc::EINVAL);
            assert_eq!(extack.as_deref(), Some("missing attribute ID"));
            assert_eq!(missing_attr, Some(u32::from(proto::GENL_ATTR_ID)));
        }
        other => panic!("expected EINVAL, got {other:?}"),
    }
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn log_subscriber_sees_exactly_the_echoes_after_it_joined() {
    let (mut sk, id) = genl();
    echo_all(&mut sk, id, &["before".to_string()]);
    let group = sk
        .genl_ctrl_resolve_grp(proto::GENL_FAMILY_NAME, proto::GENL_MCGRP_EVENTS)
        .unwrap();
    let mut listener = NlSock::genl_connect().unwrap();
    listener.add_membership(group).unwrap();
    listener.disable_seq_check();
    let msgs = messages_of("event", 3, 0);
    echo_all(&mut sk, id, &msgs);
    let mut events = Vec::new();
    while events.len() < 3 {
        events.extend(recv_events(&mut listener, Some(id)).unwrap());
    }
    let got: Vec<Entry> = events
        .into_iter()
        .map(|e| match e {
            Event::Genl(e) => e,
            other => panic!("a raw event on genl: {other:?}"),
        })
        .collect();
    assert_consecutive(&got);
    for (e, msg) in got.iter().zip(&msgs) {
        assert_eq!((&e.msg, e.portid), (msg, sk.portid()));
    }
    listener.set_timeout(Duration::from_millis(300)).unwrap();
    assert!(matches!(
        recv_events(&mut listener, Some(id)),
        Err(Error::Timeout { .. })
    ));
}

#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn raw_group_listener_sees_the_copies_of_echoes_after_it_joined() {
    for unit in [proto::RAW_UNIT, proto::KTHREAD_UNIT] {
        let mut sk = NlSock::connect(unit).unwrap();
        sk.disable_auto_ack();
        echo_raw(&mut sk, b"before").unwrap();
        let mut listener = NlSock::connect(unit).unwrap();
        listener.add_membership(proto::RAW_GROUP).unwrap();
        listener.disable_seq_check();
        echo_raw(&mut sk, b"hello").unwrap();
        let events = recv_events(&mut listener, None).unwrap();
        assert_eq!(
            events,
            [Event::Raw(RawEvent {
                seq: sk.last_seq(),
                portid: sk.portid(),
                payload: b"hello".to_vec()
            })],
            "unit {unit}"
        );
    }
}

/// The CLI: `--dump` lines, and `--subscribe` after its header.
#[test]
#[ignore = "needs the VM with the kernel modules: run `cargo xtask test`"]
fn cli_dump_and_subscribe() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_user-libnl-style"));
    let (mut sk, id) = genl();
    echo_all(&mut sk, id, &["cli".to_string()]);
    let out = std::process::Command::new(bin)
        .args(["--module", "genl", "--dump"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("module genl: family my_genl id {id}, portid ")));
    let n = lines.len() - 2;
    assert_eq!(lines[n + 1], format!("done seq 1: {n} entries"));
    assert!(
        lines[n].ends_with(&format!(" portid {}: \"cli\"", sk.portid())),
        "{stdout}"
    );

    let group = sk
        .genl_ctrl_resolve_grp(proto::GENL_FAMILY_NAME, proto::GENL_MCGRP_EVENTS)
        .unwrap();
    let listener = netlink_rosetta::Listener::start(
        bin,
        &["--module", "genl", "--subscribe", "--count", "1", "--json"],
    );
    let head =
        format!("{{\"client\":\"libnl-style\",\"module\":\"genl\",\"family_id\":{id},\"portid\":");
    assert!(listener.header.starts_with(&head), "{}", listener.header);
    assert!(
        listener.header.ends_with(&format!(
            ",\"ok\":true,\"group\":{{\"name\":\"events\",\"id\":{group}}}}}"
        )),
        "{}",
        listener.header
    );
    echo_all(&mut sk, id, &["hello".to_string()]);
    let (status, lines, stderr) = listener.finish(Duration::from_secs(10));
    assert_eq!((status, stderr.as_str()), (Some(0), ""));
    let last = dump_log(&mut sk, id).unwrap().entries.pop().unwrap();
    assert_eq!(
        lines,
        [format!(
            "{{\"event\":{{\"id\":{},\"portid\":{},\"msg\":\"hello\"}}}}",
            last.id,
            sk.portid()
        )]
    );

    let listener = netlink_rosetta::Listener::start(
        bin,
        &["--module", "kthread", "--subscribe", "--count", "1"],
    );
    let header = format!(
        "module kthread: netlink unit {}, group 1, portid ",
        proto::KTHREAD_UNIT
    );
    assert!(listener.header.starts_with(&header), "{}", listener.header);
    let mut raw = NlSock::connect(proto::KTHREAD_UNIT).unwrap();
    raw.disable_auto_ack();
    echo_raw(&mut raw, b"hello").unwrap();
    let (status, lines, _) = listener.finish(Duration::from_secs(10));
    assert_eq!(status, Some(0));
    assert_eq!(
        lines,
        [format!(
            "event seq {} portid {}: \"hello\"",
            raw.last_seq(),
            raw.portid()
        )]
    );
}
