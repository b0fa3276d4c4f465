//! user-async against the host's kernel, where no module of the project
//! is loaded: what the client says when a unit or a family is missing,
//! genetlink's resolver on the controller itself, and requests in flight
//! on `NETLINK_GENERIC`, which answers any malformed request with an
//! error and its extended ack. `cargo test -p user-async` runs them.

use std::time::Duration;

use user_async::{echo_many, resolve, Error, GenlClient, RawClient};

const TIMEOUT: Duration = Duration::from_secs(5);

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

#[test]
fn a_unit_without_its_module_names_the_module() {
    run(async {
        match RawClient::connect(proto::RAW_UNIT, TIMEOUT) {
            Err(e @ Error::UnitUnavailable { .. }) => assert_eq!(
                e.to_string(),
                "netlink unit 31 not available: is kmod-raw loaded?"
            ),
            Err(e) => panic!("expected UnitUnavailable, got {e}"),
            // The host has the module (a VM, or a developer's machine).
            Ok(_) => eprintln!("unit 31 is served here: nothing to check"),
        }
    });
}

#[test]
fn genetlink_resolves_the_controller_and_a_missing_family_names_its_module() {
    run(async {
        let nlctrl = resolve("nlctrl", TIMEOUT).await.expect("nlctrl");
        assert_eq!(nlctrl.id, 0x10, "GENL_ID_CTRL");
        assert!(nlctrl.multicast_groups.contains_key("notify"));
        let err = GenlClient::connect("no_such_family", TIMEOUT)
            .await
            .err()
            .expect("no such family");
        assert_eq!(
            err.to_string(),
            "generic netlink family no_such_family not found: is its module loaded?"
        );
    });
}

/// `NETLINK_GENERIC` as a raw unit: a message of type 0x10 (the
/// controller) without a `genlmsghdr` is refused with EINVAL, and each of
/// 64 in flight gets its own error, by sequence number.
#[test]
fn errors_of_requests_in_flight_reach_each_request() {
    run(async {
        let client = RawClient::connect(libc::NETLINK_GENERIC, TIMEOUT).expect("NETLINK_GENERIC");
        let requests = (0..64).map(|_| client.request(0x10, b"", false));
        for result in futures::future::join_all(requests).await {
            match result {
                Err(Error::Kernel { errno, .. }) => assert_eq!(errno, libc::EINVAL),
                other => panic!("expected EINVAL, got {other:?}"),
            }
        }
        let run = echo_many(8, 8, b"", || client.request(0x10, b"", true)).await;
        match run {
            Err((1, Error::Kernel { errno, .. })) => assert_eq!(errno, libc::EINVAL),
            other => panic!(
                "expected EINVAL for the first, got {:?}",
                other.map(|r| r.first)
            ),
        }
    });
}
