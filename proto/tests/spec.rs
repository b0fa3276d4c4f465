//! The wire contract against the family's YNL spec: every generic netlink
//! number, name and limit of `proto/src/wire.rs` must be the spec's
//! (`proto/spec/my_genl.yaml`), so that a change to one without the other
//! fails here. The C side includes the header the spec generates (`cargo
//! xtask spec --check` keeps it current); the VM test `tests/ynl.rs` checks
//! the kernel's policies against the same numbers.
//!
//! Run: `cargo test -p proto --test spec`.

use proto::*;
use yaml_rust2::{Yaml, YamlLoader};

const SPEC: &str = include_str!("../spec/my_genl.yaml");

fn spec() -> Yaml {
    YamlLoader::load_from_str(SPEC)
        .expect("proto/spec/my_genl.yaml is YAML")
        .remove(0)
}

/// The entries of a list, keyed by their `name`, with the value each
/// stands for on the wire: its `value`, or one more than the entry before
/// it (the first is 1), as the YNL tools number attributes and operations.
fn numbered(list: &Yaml) -> Vec<(String, i64, Yaml)> {
    let mut next = 1;
    let mut out = Vec::new();
    for item in list.as_vec().expect("a list") {
        let value = item["value"].as_i64().unwrap_or(next);
        let name = item["name"].as_str().expect("a name").to_string();
        out.push((name, value, item.clone()));
        next = value + 1;
    }
    out
}

fn definition(spec: &Yaml, name: &str) -> i64 {
    spec["definitions"]
        .as_vec()
        .expect("definitions")
        .iter()
        .find(|d| d["name"].as_str() == Some(name))
        .and_then(|d| d["value"].as_i64())
        .unwrap_or_else(|| panic!("the spec defines no const `{name}`"))
}

#[test]
fn family_name_and_version() {
    let spec = spec();
    assert_eq!(spec["name"].as_str(), Some(GENL_FAMILY_NAME));
    // The `genetlink` level has no version: the family's is 1
    // (ynl-gen-c.py writes MY_GENL_FAMILY_VERSION 1).
    assert_eq!(spec["protocol"].as_str(), Some("genetlink"));
    assert_eq!(GENL_FAMILY_VERSION, 1);
}

#[test]
fn limits() {
    let spec = spec();
    assert_eq!(definition(&spec, "max-msg-len"), MAX_MSG_LEN as i64);
    assert_eq!(definition(&spec, "echo-log-len"), ECHO_LOG_LEN as i64);
}

#[test]
fn attributes() {
    let spec = spec();
    let sets = spec["attribute-sets"].as_vec().expect("attribute-sets");
    assert_eq!(sets.len(), 1, "one attribute set");
    let attrs = numbered(&sets[0]["attributes"]);
    let seen: Vec<(&str, i64, &str)> = attrs
        .iter()
        .map(|(name, value, a)| (name.as_str(), *value, a["type"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        seen,
        [
            ("msg", GENL_ATTR_MSG as i64, "string"),
            ("id", GENL_ATTR_ID as i64, "u32"),
            ("portid", GENL_ATTR_PORTID as i64, "u32"),
        ]
    );
    let max = attrs.iter().map(|a| a.1).max();
    assert_eq!(max, Some(GENL_ATTR_MAX as i64));
    // The kernel's policy: NLA_NUL_STRING of at most MAX_MSG_LEN characters.
    let msg = &attrs[0].2;
    assert_eq!(msg["checks"]["max-len"].as_str(), Some("max-msg-len"));
    assert!(msg["checks"]["unterminated-ok"].is_badvalue());
}

#[test]
fn operations_and_group() {
    let spec = spec();
    let ops = numbered(&spec["operations"]["list"]);
    let seen: Vec<(&str, i64)> = ops.iter().map(|(n, v, _)| (n.as_str(), *v)).collect();
    assert_eq!(
        seen,
        [
            ("echo", GENL_CMD_ECHO as i64),
            ("get", GENL_CMD_GET as i64),
            ("event", GENL_CMD_EVENT as i64),
        ]
    );
    let (echo, get, event) = (&ops[0].2, &ops[1].2, &ops[2].2);
    let attrs = |y: &Yaml| -> Vec<String> {
        y["attributes"]
            .as_vec()
            .map(|v| {
                v.iter()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(attrs(&echo["do"]["request"]), ["msg"]);
    assert_eq!(attrs(&echo["do"]["reply"]), ["msg"]);
    assert!(echo["dump"].is_badvalue(), "ECHO has no dump");
    assert_eq!(attrs(&get["do"]["request"]), ["id"]);
    assert_eq!(attrs(&get["do"]["reply"]), ["id", "msg", "portid"]);
    assert_eq!(attrs(&get["dump"]["reply"]), ["id", "msg", "portid"]);
    assert_eq!(attrs(&event["event"]), ["id", "msg", "portid"]);
    assert_eq!(event["mcgrp"].as_str(), Some(GENL_MCGRP_EVENTS));
    let groups: Vec<&str> = spec["mcast-groups"]["list"]
        .as_vec()
        .expect("mcast-groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(groups, [GENL_MCGRP_EVENTS]);
}

/// The spec documents what it describes: the family, every definition,
/// attribute and operation (the `genetlink` schema has no `doc` for a
/// multicast group: the EVENT operation's documents it).
#[test]
fn everything_has_doc() {
    let spec = spec();
    let has_doc = |y: &Yaml| y["doc"].as_str().is_some_and(|d| !d.trim().is_empty());
    assert!(has_doc(&spec), "the family has no doc");
    let lists = [
        &spec["definitions"],
        &spec["attribute-sets"][0]["attributes"],
        &spec["operations"]["list"],
    ];
    for list in lists {
        for item in list.as_vec().expect("a list") {
            assert!(has_doc(item), "{:?} has no doc", item["name"]);
        }
    }
}
