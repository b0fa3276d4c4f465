//! The wire contract of netlink-rosetta, shared by every kernel module and
//! every client.
//!
//! The constants live in `proto/src/wire.rs`, a file with
//! no attributes and no dependencies, so that the kernel crates include it by
//! path (`#[path = "../proto/src/wire.rs"] mod proto;`) while the userspace
//! clients depend on this crate. Changing a number here changes it everywhere.
//!
//! The values keep the original articles' C programs working unchanged: raw
//! units 31 and 25, and the generic netlink family `my_genl` version 1 with
//! `EXMPL_C_ECHO` = 1 and `EXMPL_A_MSG` = 1.
#![no_std]

include!("wire.rs");

/// The project module that serves raw netlink unit `unit`, for messages such
/// as "is kmod-raw loaded?"; `"its module"` for any other unit.
pub fn module_for_unit(unit: i32) -> &'static str {
    match unit {
        RAW_UNIT => "kmod-raw",
        KTHREAD_UNIT => "kmod-kthread",
        _ => "its module",
    }
}

/// The project module that registers generic netlink family `family`;
/// `"its module"` for any other family.
pub fn module_for_family(family: &str) -> &'static str {
    match family {
        GENL_FAMILY_NAME => "kmod-genl",
        _ => "its module",
    }
}
