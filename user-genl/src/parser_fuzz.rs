//! Parser fuzz tests for what neli parses for us: the three message types
//! our client receives (`Nlmsghdr<u16, P>` with `P` = `Buffer` for
//! [`RawClient`], `Genlmsghdr<MyGenlCmd, MyGenlAttr>` for [`GenlClient`],
//! `Genlmsghdr<CtrlCmd, CtrlAttr>` for the family lookup), parsed one by one
//! from a datagram by the socket mode's own loop ([`next_message`], which
//! calls neli's parser as `NlSocketHandle::recv`'s iterator does), the router's
//! second step (`to_typed`), `Nlmsgerr`, and our own post-processing
//! (`msg_of`, `family_id_of`, `kernel_error`, `strip_neli_padding`).
//!
//! neli 0.7.5 panics on some of these inputs (see [`neli_parse`] and the
//! regression tests at the end, which pin the exact bytes). The properties
//! check that (1) through [`neli_parse`], as our client calls neli, every
//! input gives `Ok` or `Err`; (2) nothing parsed is longer than its input;
//! (3) when neli itself panics, it is the known kind of panic, unchecked
//! length arithmetic: any other panic is a new finding and fails the test.
//!
//! `cargo test -p user-genl parser_fuzz` runs them. Failures are not
//! persisted to `proptest-regressions/`: a failing input is pinned as a
//! plain `#[test]` with its bytes, which reads better than proptest's seed
//! file.

use std::io::Cursor;

use neli::err::NlmsghdrErr;
use neli::nl::Nlmsghdr;
use neli::FromBytes;
use proptest::prelude::*;
use rosetta_fuzzgen::{
    attrs_or_noise, config, datagram_or_noise, dump_or_noise, genlmsghdr, mcast_groups_attr,
    message, payload_or_noise, Favoured, NLA_HDRLEN, NLMSG_HDRLEN, NLM_F_MULTI, TRUTH,
};

use super::*;

/// The family id and sequence number the receive paths are called with.
const FAMILY: u16 = 0x1a;
const SEQ: u32 = 1;

/// What the generators favour: messages of our family, multipart ones
/// (neli's `NLMSG_DONE` handling), replies to `SEQ`.
const FAVOURED: Favoured = Favoured {
    types: &[FAMILY],
    flags: &[NLM_F_MULTI],
    seq: SEQ,
};

// ---------------------------------------------------------------------------
// neli, as our client calls it
// ---------------------------------------------------------------------------

/// The messages of one datagram, parsed as the socket mode parses them:
/// [`next_message`] (neli's `Nlmsghdr::from_bytes` through [`neli_parse`])
/// until the datagram's end or the first error. A panic inside neli is
/// `Err`; a parse error ends the list, as it ends `SocketConn::request`.
fn neli_messages<P>(datagram: &[u8]) -> Result<Vec<Nlmsghdr<u16, P>>, Error>
where
    P: Size + FromBytesWithInput<Input = usize> + Debug,
{
    let mut cursor = Cursor::new(datagram);
    let mut messages = Vec::new();
    loop {
        match next_message::<P>(&mut cursor) {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => break,
            Err(e @ Error::NeliPanic(_)) => return Err(e),
            Err(_) => break,
        }
    }
    Ok(messages)
}

/// Run `parse` as neli itself would, with no guard, and report a panic:
/// `Err(message)`.
fn raw<T>(parse: impl FnOnce() -> T) -> Result<T, String> {
    neli_parse(parse).map_err(|e| match e {
        Error::NeliPanic(text) => text,
        other => other.to_string(),
    })
}

/// The kind of panic neli 0.7.5 is known for: length arithmetic on
/// unchecked header fields (overflow in debug builds; in release builds the
/// wrapped length then fails to allocate). Anything else is a new finding.
fn is_known_neli_panic(text: &str) -> bool {
    text.contains("attempt to subtract with overflow")
        || text.contains("attempt to add with overflow")
        || text.contains("capacity overflow")
}

/// Everything our client does with the messages of a received datagram,
/// for each payload type it receives; with size checks.
fn parse_as_our_client(datagram: &[u8]) {
    let len = datagram.len();
    // RawClient: the payload as bytes, then the padding we strip.
    if let Ok(messages) = neli_messages::<Buffer>(datagram) {
        assert!(messages.len() <= len / NLMSG_HDRLEN);
        for message in &messages {
            match message.nl_payload() {
                NlPayload::Payload(p) => {
                    assert!(p.len() <= len);
                    for sent in [0, 1, p.len().saturating_sub(3), p.len()] {
                        assert!(strip_neli_padding(sent, p.as_ref().to_vec()).len() <= p.len());
                    }
                }
                NlPayload::Err(err) => check_kernel_error(err, len),
                NlPayload::Ack(_) | NlPayload::DumpExtAck(_) | NlPayload::Empty => {}
            }
            // Router mode: the router thread parsed it as Buffer; the
            // receiver handle's next() makes it typed on our side.
            if let Ok(Ok(typed)) = neli_parse(|| message.clone().to_typed::<u16, MyGenlMsg>()) {
                check_genl(typed.nl_payload(), len);
            }
            if let Ok(Ok(typed)) = neli_parse(|| message.clone().to_typed::<u16, CtrlMsg>()) {
                check_ctrl(typed.nl_payload(), len);
            }
        }
    }
    // GenlClient, and its family lookup in socket mode.
    if let Ok(messages) = neli_messages::<MyGenlMsg>(datagram) {
        for message in &messages {
            check_genl(message.nl_payload(), len);
        }
    }
    if let Ok(messages) = neli_messages::<CtrlMsg>(datagram) {
        for message in &messages {
            check_ctrl(message.nl_payload(), len);
        }
    }
}

fn check_kernel_error<P>(err: &Nlmsgerr<P>, len: usize) {
    assert!(err.ext_ack().len() <= len / NLA_HDRLEN);
    if let Error::Kernel { extack, .. } = kernel_error(err) {
        assert!(extack.map_or(0, |s| s.len()) <= 3 * len); // lossy UTF-8
    }
}

fn check_genl(payload: &NlPayload<u16, MyGenlMsg>, len: usize) {
    match payload {
        NlPayload::Payload(reply) => {
            assert!(reply.attrs().len() <= len / NLA_HDRLEN);
            if let Ok(msg) = msg_of(reply) {
                assert!(msg.len() <= len);
            }
        }
        NlPayload::Err(err) => check_kernel_error(err, len),
        _ => {}
    }
}

fn check_ctrl(payload: &NlPayload<u16, CtrlMsg>, len: usize) {
    match payload {
        NlPayload::Payload(reply) => {
            assert!(reply.attrs().len() <= len / NLA_HDRLEN);
            let _ = family_id_of(reply);
        }
        NlPayload::Err(err) => check_kernel_error(err, len),
        _ => {}
    }
}

/// The dump and notification paths of `log.rs` on a datagram: each
/// message of a dump through `dump_message`, the events of a genl family
/// and of a raw unit.
fn log_paths(datagram: &[u8]) {
    let len = datagram.len();
    if let Ok(messages) = neli_messages::<MyGenlMsg>(datagram) {
        let mut dump = LogDump {
            seq: SEQ,
            entries: Vec::new(),
            interrupted: false,
        };
        for message in &messages {
            let _ = log::dump_message(message, &mut dump);
        }
        assert!(dump.entries.iter().map(|e| e.msg.len()).sum::<usize>() <= len);
    }
    for family in [Some(FAMILY), None] {
        if let Ok(events) = log::events_of_datagram(datagram, family) {
            assert!(events.len() <= len / NLMSG_HDRLEN);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parser_fuzz_dumps(buf in dump_or_noise(FAVOURED)) {
        parse_as_our_client(&buf);
        log_paths(&buf);
    }

    /// The controller's reply with multicast groups, as `resolve_group`
    /// reads it in socket mode (and neli's resolver in router mode).
    #[test]
    fn parser_fuzz_mcast_groups(groups in mcast_groups_attr(), rest in attrs_or_noise()) {
        let payload = [genlmsghdr(1, 2), groups, rest].concat();
        let datagram = message(0x10, 0, SEQ, &payload, TRUTH);
        if let Ok(messages) = neli_messages::<CtrlMsg>(&datagram) {
            for m in &messages {
                if let NlPayload::Payload(reply) = m.nl_payload() {
                    if let Ok(groups) = log::mcast_groups_of(reply) {
                        prop_assert!(groups.len() <= datagram.len() / NLA_HDRLEN);
                    }
                }
            }
        }
    }

    /// Through `neli_parse`, as the client calls neli: `Ok` or `Err`, and
    /// bounded sizes.
    #[test]
    fn parser_fuzz_neli_as_our_client(buf in datagram_or_noise(FAVOURED)) {
        parse_as_our_client(&buf);
    }

    /// neli unguarded: a panic must be of the known kind.
    #[test]
    fn parser_fuzz_neli_panics_only_as_known(buf in datagram_or_noise(FAVOURED)) {
        let mut cursor = Cursor::new(&buf[..]);
        while (cursor.position() as usize) < buf.len() {
            match raw(|| Nlmsghdr::<u16, Buffer>::from_bytes(&mut cursor)) {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => break,
                Err(panic) => {
                    prop_assert!(is_known_neli_panic(&panic), "new neli panic {panic:?} on {buf:02x?}");
                    break;
                }
            }
        }
    }

    /// `Nlmsgerr` on its own, as `NlPayload` parses it after the errno.
    #[test]
    fn parser_fuzz_neli_nlmsgerr(buf in payload_or_noise()) {
        let parsed = raw(|| {
            Nlmsgerr::<NlmsghdrErr<u16, Buffer>>::from_bytes_with_input(&mut Cursor::new(&buf[..]), buf.len())
        });
        match parsed {
            Ok(Ok(err)) => check_kernel_error(&err, buf.len()),
            Ok(Err(_)) => {}
            Err(panic) => prop_assert!(is_known_neli_panic(&panic), "new neli panic {panic:?} on {buf:02x?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// neli 0.7.5's panics, pinned with their exact bytes (x86_64: little endian)
// ---------------------------------------------------------------------------

/// Decode a hex string (spaces ignored), as the README lists the inputs.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
}

/// The inputs on which neli panics (debug builds), with what it computes.
const NELI_PANICS: [(&str, &str); 4] = [
    // nlmsg_len 0 (< 16): `nl_len - header_size()` in Nlmsghdr::from_bytes.
    ("00000000 1000 0000 01000000 00000000", "nlmsg_len below 16"),
    // NLMSG_ERROR, error -22, copied request with nlmsg_len 0:
    // `nl_len - header_size()` in NlmsghdrErr::from_bytes.
    (
        "24000000 0200 0000 01000000 00000000 eaffffff 00000000 1000 0000 01000000 00000000",
        "NLMSG_ERROR whose copied request has nlmsg_len below 16",
    ),
    // NLMSG_ERROR (nlmsg_len 36), error -22, copied request claiming 20
    // bytes, 4 more than the error holds, and 4 bytes after it in the
    // datagram: `input - 4 - nlmsg.padded_size()` in NlPayload.
    (
        "24000000 0200 0000 01000000 00000000 eaffffff 14000000 1000 0000 01000000 00000000 00000000",
        "NLMSG_ERROR whose copied request runs past the error",
    ),
    // NLMSG_DONE with NLM_F_MULTI and no payload (nlmsg_len 16), not last in
    // the datagram: neli reads an errno from the next message, then
    // `input - 4` in Nlmsgerr::<()>::from_bytes_with_input.
    (
        "10000000 0300 0200 01000000 00000000 10000000 0300 0000 01000000 00000000",
        "empty NLMSG_DONE with NLM_F_MULTI followed by another message",
    ),
];

/// neli panics on each input: this fails once neli checks its lengths,
/// and then the README's list and [`neli_parse`] can go.
#[test]
fn neli_panics_on_the_known_inputs() {
    for (input, what) in NELI_PANICS {
        let datagram = hex(input);
        let mut cursor = Cursor::new(&datagram[..]);
        let mut result = Ok(Ok(None));
        while (cursor.position() as usize) < datagram.len() {
            result = raw(|| Nlmsghdr::<u16, Buffer>::from_bytes(&mut cursor).map(Some));
            if !matches!(result, Ok(Ok(_))) {
                break;
            }
        }
        if cfg!(debug_assertions) {
            let panic = result.expect_err(what);
            assert!(is_known_neli_panic(&panic), "{what}: {panic}");
        }
    }
}

/// Our client turns each of them into an error, for every payload type.
#[test]
fn our_client_returns_an_error_on_the_known_inputs() {
    for (input, what) in NELI_PANICS {
        let datagram = hex(input);
        parse_as_our_client(&datagram); // no panic escapes
        if cfg!(debug_assertions) {
            for result in [
                neli_messages::<Buffer>(&datagram).map(|_| ()),
                neli_messages::<MyGenlMsg>(&datagram).map(|_| ()),
                neli_messages::<CtrlMsg>(&datagram).map(|_| ()),
            ] {
                let err = result.expect_err(what);
                assert!(matches!(err, Error::NeliPanic(_)), "{what}: {err:?}");
                assert!(
                    err.to_string().starts_with("neli panicked parsing"),
                    "{err}"
                );
            }
        }
    }
}
