//! Round trips that run on any Linux host, for counting instructions:
//! `NLMSG_NOOP` with `NLM_F_ACK` to the host's `NETLINK_GENERIC`, which
//! the kernel answers with an ack alone (so each request ends in
//! [`Error::NoReply`]: one send, one receive, one parse per round trip).
//!
//! ```text
//! cargo build --release -p user-genl --example ack_round_trips
//! valgrind --tool=callgrind target/release/examples/ack_round_trips socket 1000
//! valgrind --tool=callgrind target/release/examples/ack_round_trips socket 2000
//! ```
//!
//! The difference of the two totals, divided by 1000, is the userspace
//! instructions of one round trip. The first argument is `socket` or
//! `router`, the second the count (default 1000).

use std::time::Duration;

use user_genl::{Error, Mode, RawClient};

/// `NLMSG_NOOP`: answered only with `NLM_F_ACK`, by the ack.
const NLMSG_NOOP: u16 = 1;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        None | Some("socket") => Mode::Socket,
        Some("router") => Mode::Router,
        Some(other) => panic!("mode {other:?}: socket or router"),
    };
    let count: u32 = args.next().map_or(1000, |n| n.parse().expect("a count"));
    let mut client = RawClient::connect(libc::NETLINK_GENERIC, mode, Duration::from_secs(2))
        .expect("NETLINK_GENERIC");
    for _ in 0..count {
        match client.request(NLMSG_NOOP, true, b"") {
            Err(Error::NoReply { .. }) => {}
            other => panic!("expected the ack alone, got {other:?}"),
        }
    }
    println!("{count} ack round trips in {} mode", mode.name());
}
