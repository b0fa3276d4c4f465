// SPDX-License-Identifier: GPL-2.0

//! Generic netlink: a family with commands, dumps and multicast groups.
//!
//! A module describes its family in a `static` [`Family`]
//! ([`Family::const_new`]: name, version, [`MulticastGroup`]s) and registers
//! it, keeping the [`Registration`]: dropping it unregisters the family. A
//! family with commands registers with [`Family::register_with`], which takes
//! the commands as plain data ([`Ops`]: numbers, attribute policies, which
//! ones dump) and a [`Handler`]:
//!
//! - each request reaches [`Handler::doit`] as an [`Info`] whose attributes
//!   the core has already parsed and validated against the command's
//!   policy (strictly: unknown attributes are rejected); the reply is built
//!   with [`NetlinkSkBuff::new`] and [`NetlinkSkBuff::genlmsg_put_reply`]
//!   and sent with [`GenlMsg::reply`];
//! - a dump request (`NLM_F_DUMP`) reaches [`Handler::start`], which returns
//!   the dump's state, a [`Handler::Cursor`]; then [`Handler::dumpit`] fills
//!   one buffer after the other with [`Dump::genlmsg_put`] until it returns
//!   `Ok(())`, each time with the same cursor; the cursor is dropped when
//!   the dump ends or its socket closes (`done`);
//! - notifications are built with [`NetlinkSkBuff::genlmsg_put`] and sent
//!   with [`GenlMsg::multicast`], when [`Family::has_listeners`].
//!
//! Families are `netnsok`: requests come from every network namespace, and
//! each namespace has its own listeners. A request's namespace is
//! [`Info::net`] (a dump's, [`Dump::net`]); a family that keeps data per
//! namespace finds it there ([`crate::net::namespace`]), and notifies the
//! listeners of that namespace only with [`GenlMsg::multicast_netns`],
//! [`Family::has_listeners_netns`] and [`Family::set_err`]
//! (`genlmsg_multicast()` and upstream's `multicast` reach the initial
//! namespace only).
//!
//! Names and shapes are those of upstream's generic netlink abstraction
//! (`rust/kernel/net/netlink.rs`, Linux 7.x, which exposes multicast
//! groups only), so that a forward port is mechanical. Each public item:
//!
//! | item | upstream |
//! |---|---|
//! | [`GENLMSG_DEFAULT_SIZE`] | same |
//! | [`NetlinkSkBuff`], [`NetlinkSkBuff::new`] | same (`genlmsg_new()`); fails with `Error` (`EMSGSIZE`, `ENOMEM`), not `AllocError` |
//! | [`NetlinkSkBuff::genlmsg_put`] | same; fails with `EMSGSIZE` |
//! | [`NetlinkSkBuff::genlmsg_put_reply`] | ours |
//! | [`GenlMsg`]: `put_u32`, `put_string`, `put_flag`, `multicast`, cancelled on drop | same; `put_*` check the attribute type and the tailroom, `multicast` checks the group |
//! | [`GenlMsg::reply`] | ours |
//! | [`Family`]: `const_new`, `has_listeners`, `as_raw`, `register` | same; `has_listeners` is `false` for a group the family does not have |
//! | [`Family::register_with`], [`Family::set_err`], [`Family::has_listeners_netns`], [`GenlMsg::multicast_netns`], [`Ops`], [`Command`], [`Policy`], [`Handler`] | ours |
//! | [`MulticastGroup`], [`MulticastGroup::const_new`] | same |
//! | [`Registration`] | same, with a type parameter for the handler (`()` for [`Family::register`]) |
//! | [`Info`], [`Attr`], [`Dump`], [`DumpMsg`], [`PutAttr`], [`NLA_HDRLEN`], [`nla_total_size`], [`MAX_ATTR_PAYLOAD`], [`GENL_HDRLEN`] | ours |
//!
//! Raw netlink (a kernel socket for a protocol unit of its own) is in
//! [`crate::net::raw_netlink`]; it builds its messages in the same
//! [`NetlinkSkBuff`].
//!
//! C header: [`include/net/genetlink.h`](srctree/include/net/genetlink.h).

use crate::{
    alloc::{Flags, KBox, KVec},
    bindings,
    error::{code::*, to_result, Error, Result},
    net::namespace::Namespace,
    net::raw_netlink::{nlmsg_align, SocketRef, MAX_SKB_SIZE, NLMSG_HDRLEN},
    prelude::*,
    str::CStr,
    sync::{Arc, ArcBorrow},
    types::Opaque,
    ThisModule,
};
use core::{
    ffi::{c_int, c_void},
    fmt,
    marker::PhantomData,
    mem::{size_of, ManuallyDrop},
    ptr,
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicPtr, Ordering},
};

/// The default size of a generic netlink message buffer
/// (`GENLMSG_DEFAULT_SIZE`).
pub const GENLMSG_DEFAULT_SIZE: usize = bindings::NLMSG_DEFAULT_SIZE - GENL_HDRLEN;

/// Length of an attribute header, padded (`NLA_HDRLEN`).
pub const NLA_HDRLEN: usize = nlmsg_align(size_of::<bindings::nlattr>());

/// Room an attribute with `payload` bytes takes in a message, padding
/// included (`nla_total_size()`).
///
/// `payload` must be below `usize::MAX - NLA_HDRLEN - NLMSG_ALIGNTO`; an
/// attribute payload is at most [`MAX_ATTR_PAYLOAD`] bytes.
#[inline]
pub const fn nla_total_size(payload: usize) -> usize {
    nlmsg_align(NLA_HDRLEN + payload)
}

/// The largest attribute payload: `nla_len`, which counts the header too, is
/// 16 bits wide.
pub const MAX_ATTR_PAYLOAD: usize = u16::MAX as usize - NLA_HDRLEN;

/// Length of the generic netlink header (`GENL_HDRLEN`).
pub const GENL_HDRLEN: usize = nlmsg_align(size_of::<bindings::genlmsghdr>());

/// A buffer for netlink messages (`struct sk_buff`), owned until it is sent.
///
/// Generic netlink messages are started in it with
/// [`genlmsg_put`](Self::genlmsg_put); raw netlink messages with the methods
/// of [`crate::net::raw_netlink`].
///
/// # Invariants
///
/// `skb` points to a valid `struct sk_buff` for netlink messages that this
/// object owns exclusively: allocated by `nlmsg_new()` (or `genlmsg_new()`),
/// neither sent nor freed.
pub struct NetlinkSkBuff {
    skb: NonNull<bindings::sk_buff>,
}

// SAFETY: An skb that nothing else references may be used and freed on any
// thread.
unsafe impl Send for NetlinkSkBuff {}

impl NetlinkSkBuff {
    /// Allocates a buffer for one generic netlink message with `size` bytes
    /// of attributes (`genlmsg_new()`). Fails with `EMSGSIZE` when the
    /// message would exceed [`MAX_SKB_SIZE`], and with `ENOMEM`.
    #[inline]
    pub fn new(size: usize, flags: Flags) -> Result<NetlinkSkBuff> {
        if size > MAX_SKB_SIZE - GENL_HDRLEN - 2 * NLMSG_HDRLEN {
            return Err(EMSGSIZE);
        }
        // `genlmsg_new()`: a netlink message with room for the generic
        // netlink header and `size` bytes (`genlmsg_total_size()`).
        Self::nlmsg_new(nlmsg_align(GENL_HDRLEN + size), flags)
    }

    /// Starts a message of `family` with command `cmd` (`genlmsg_put()`):
    /// `portid` and `seq` go into the netlink header (for a notification,
    /// 0 and 0). Fails with `EMSGSIZE` when the headers do not fit.
    pub fn genlmsg_put(
        self,
        portid: u32,
        seq: u32,
        family: &'static Family,
        cmd: u8,
    ) -> Result<GenlMsg> {
        // SAFETY: The skb is ours; `family` is a valid, static family.
        let hdr =
            unsafe { bindings::genlmsg_put(self.as_raw(), portid, seq, family.as_raw(), 0, cmd) };
        let hdr = NonNull::new(hdr).ok_or(EMSGSIZE)?;
        // INVARIANT: `hdr` is the user header of the message just started.
        Ok(GenlMsg { skb: self, hdr })
    }

    /// Starts the reply to `info` with command `cmd`
    /// (`genlmsg_put_reply()`): the headers carry the request's sequence
    /// number, the requester's port id, and the family's id and version.
    #[inline]
    pub fn genlmsg_put_reply(self, info: &Info<'_>, cmd: u8) -> Result<GenlMsg> {
        // SAFETY: The skb is ours, and `info` is a valid `genl_info` whose
        // `family` is registered. This is `genlmsg_put_reply()`.
        let hdr = unsafe {
            let info = info.raw;
            bindings::genlmsg_put(
                self.as_raw(),
                (*info).snd_portid,
                (*info).snd_seq,
                (*info).family,
                0,
                cmd,
            )
        };
        let hdr = NonNull::new(hdr).ok_or(EMSGSIZE)?;
        // INVARIANT: `hdr` is the user header of the message just started.
        Ok(GenlMsg { skb: self, hdr })
    }

    /// Takes ownership of an skb.
    ///
    /// # Safety
    ///
    /// `skb` must be a valid skb for netlink messages that nothing else
    /// references.
    #[inline]
    pub(crate) unsafe fn from_raw(skb: NonNull<bindings::sk_buff>) -> Self {
        // INVARIANT: The caller passes a valid skb that is exclusively ours.
        Self { skb }
    }

    #[inline]
    pub(crate) fn as_raw(&self) -> *mut bindings::sk_buff {
        self.skb.as_ptr()
    }

    /// Gives up ownership of the skb, for a C function that consumes it.
    #[inline]
    pub(crate) fn into_raw(self) -> *mut bindings::sk_buff {
        ManuallyDrop::new(self).skb.as_ptr()
    }
}

impl Drop for NetlinkSkBuff {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant, the skb is ours and was never sent.
        unsafe { bindings::nlmsg_free(self.skb.as_ptr()) };
    }
}

/// Appends an attribute to the last message of `skb` (`nla_put()`). Fails
/// with `EINVAL` for an attribute type above 16 bits, and with `EMSGSIZE`,
/// leaving the buffer as it was, when `data` is longer than an attribute can
/// say ([`MAX_ATTR_PAYLOAD`]) or does not fit.
///
/// # Safety
///
/// `skb` must be a valid skb that the caller may write to.
#[inline]
unsafe fn nla_put(skb: *mut bindings::sk_buff, attrtype: c_int, data: &[u8]) -> Result {
    if u16::try_from(attrtype).is_err() {
        return Err(EINVAL);
    }
    if data.len() > MAX_ATTR_PAYLOAD {
        return Err(EMSGSIZE);
    }
    // SAFETY: The caller guarantees that the skb is valid and writable.
    // `nla_put()` checks the room, failing with `-EMSGSIZE` and changing
    // nothing if the attribute does not fit, then copies `data.len()`
    // bytes, which fit its `int` and the 16-bit `nla_len`, from `data`
    // (none for an empty slice).
    to_result(unsafe {
        bindings::nla_put(skb, attrtype, data.len() as c_int, data.as_ptr().cast())
    })
}

/// A generic netlink message being built in a [`NetlinkSkBuff`]; cancelled
/// (`genlmsg_cancel()`) and freed if dropped unsent.
///
/// # Invariants
///
/// `hdr` points to the user header (after `genlmsghdr`) of the last message
/// started in `skb`.
pub struct GenlMsg {
    skb: NetlinkSkBuff,
    hdr: NonNull<c_void>,
}

impl GenlMsg {
    /// Appends a 32-bit unsigned attribute (`nla_put_u32()`).
    #[inline]
    pub fn put_u32(&mut self, attrtype: c_int, value: u32) -> Result {
        // SAFETY: The skb is ours (`NetlinkSkBuff`'s invariant).
        unsafe { nla_put(self.skb.as_raw(), attrtype, &value.to_ne_bytes()) }
    }

    /// Appends a string attribute, NUL included (`nla_put_string()`).
    #[inline]
    pub fn put_string(&mut self, attrtype: c_int, value: &CStr) -> Result {
        // SAFETY: The skb is ours (`NetlinkSkBuff`'s invariant).
        unsafe { nla_put(self.skb.as_raw(), attrtype, value.as_bytes_with_nul()) }
    }

    /// Appends a flag attribute, with no payload (`nla_put_flag()`).
    pub fn put_flag(&mut self, attrtype: c_int) -> Result {
        // SAFETY: The skb is ours (`NetlinkSkBuff`'s invariant).
        unsafe { nla_put(self.skb.as_raw(), attrtype, &[]) }
    }

    /// Ends the message (`genlmsg_end()`) and gives back its buffer.
    #[inline]
    fn end(self) -> NetlinkSkBuff {
        let me = ManuallyDrop::new(self);
        // SAFETY: By the type invariant, `hdr` is the user header of the
        // message in the skb, which is ours.
        unsafe { bindings::genlmsg_end(me.skb.as_raw(), me.hdr.as_ptr()) };
        // SAFETY: `me` is never dropped: the skb is moved out exactly once.
        unsafe { ptr::read(&me.skb) }
    }

    /// Ends the message and sends it to the listeners of `family`'s
    /// multicast group `group` (its index in the family's groups) in the
    /// initial network namespace, but not to `portid`
    /// (`genlmsg_multicast()`, which is [`GenlMsg::multicast_netns`] in
    /// `init_net`). `ESRCH` means that nobody listens; `EINVAL` that the
    /// family has no such group.
    pub fn multicast(
        self,
        family: &'static Family,
        portid: u32,
        group: u32,
        flags: Flags,
    ) -> Result {
        self.multicast_netns(family, Namespace::init_ns(), portid, group, flags)
    }

    /// Ends the message and sends it to the listeners of `family`'s
    /// multicast group `group` in network namespace `net`, but not to
    /// `portid` (`genlmsg_multicast_netns()`): a notification about
    /// something that happened in `net`. `ESRCH` means that nobody listens
    /// there; `EINVAL` that the family has no such group.
    pub fn multicast_netns(
        self,
        family: &'static Family,
        net: &Namespace,
        portid: u32,
        group: u32,
        flags: Flags,
    ) -> Result {
        if group >= family.n_mcgrps() {
            return Err(EINVAL);
        }
        let skb = self.end().into_raw();
        // SAFETY: `family` is valid and has group `group` (checked above),
        // `net` is valid; `genlmsg_multicast_netns()` takes over the skb in
        // every other case.
        to_result(unsafe {
            bindings::genlmsg_multicast_netns(
                family.as_raw(),
                net.as_raw(),
                skb,
                portid,
                group,
                flags.as_raw(),
            )
        })
    }

    /// Ends the message (`genlmsg_end()`) and sends it to the requester of
    /// `info` (`genlmsg_reply()`).
    #[inline]
    pub fn reply(self, info: &Info<'_>) -> Result {
        let skb = self.end();
        // What `genlmsg_reply()` does, without the two calls it is in C: a
        // unicast to the sender, through the generic netlink socket of the
        // request's namespace.
        // SAFETY: The namespace is alive while the request runs (see
        // `Info::net`), and every namespace's init created its generic
        // netlink socket, which its exit releases.
        let socket = unsafe { SocketRef::from_raw((*info.net().as_raw()).genl_sock) };
        socket.unicast(skb, info.snd_portid())
    }
}

/// Appending attributes to a message being built, a [`GenlMsg`] or a
/// [`DumpMsg`] alike (ours): for code that fills both.
pub trait PutAttr {
    /// Appends a 32-bit unsigned attribute (`nla_put_u32()`).
    fn put_u32(&mut self, attrtype: c_int, value: u32) -> Result;

    /// Appends a string attribute, NUL included (`nla_put_string()`).
    fn put_string(&mut self, attrtype: c_int, value: &CStr) -> Result;
}

impl PutAttr for GenlMsg {
    #[inline]
    fn put_u32(&mut self, attrtype: c_int, value: u32) -> Result {
        GenlMsg::put_u32(self, attrtype, value)
    }

    #[inline]
    fn put_string(&mut self, attrtype: c_int, value: &CStr) -> Result {
        GenlMsg::put_string(self, attrtype, value)
    }
}

impl Drop for GenlMsg {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `hdr` is the user header of the last
        // message in the skb, which is ours; the skb is freed right after.
        unsafe { bindings::genlmsg_cancel(self.skb.as_raw(), self.hdr.as_ptr()) };
    }
}

/// A multicast group of a [`Family`] (`struct genl_multicast_group`).
#[repr(transparent)]
pub struct MulticastGroup {
    group: bindings::genl_multicast_group,
}

// SAFETY: Plain data that nothing modifies: the core copies what it needs.
unsafe impl Sync for MulticastGroup {}

impl MulticastGroup {
    /// A group called `name`. For `const` context: panics (a build error
    /// there) when the name is longer than `GENL_NAMSIZ - 1` bytes.
    pub const fn const_new(name: &CStr) -> MulticastGroup {
        // SAFETY: All-zeroes is a valid `genl_multicast_group`, as C's `{}`.
        let mut group: bindings::genl_multicast_group = unsafe { core::mem::zeroed() };
        let name = name.as_bytes_with_nul();
        if group.name.len() < name.len() {
            panic!("genl_multicast_group name too long");
        }
        let mut i = 0;
        while i < name.len() {
            group.name[i] = name[i] as _;
            i += 1;
        }
        MulticastGroup { group }
    }
}

/// A generic netlink family: a `static`, registered in place.
///
/// # Examples
///
/// The flags that [`Family::const_new`] sets by hand (`netnsok` and
/// `parallel_ops`: bindgen's setters are not `const`) are the bits that C
/// sets:
///
/// ```
/// use kernel::net::netlink::Family;
///
/// # // SAFETY: Code built into the kernel, as this example is, has no module:
/// # // its `THIS_MODULE` is NULL.
/// # static THIS_MODULE: kernel::ThisModule =
/// #     unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) };
/// static FAMILY: Family = Family::const_new(&THIS_MODULE, b"example\0", 1, &[]);
/// // SAFETY: Nothing registers `FAMILY`: reading it races with no writer.
/// let raw = unsafe { &*FAMILY.as_raw() };
/// assert_eq!((raw.netnsok(), raw.parallel_ops(), raw.version), (1, 1, 1));
/// ```
///
/// # Invariants
///
/// `handler`, when not NULL, points to the handler of the registration in
/// force, which `inner`'s ops were set up for; `registered` is `true` while
/// a [`Registration`] of the family exists.
#[repr(C)]
pub struct Family {
    /// First: the core's `struct genl_family *` is also a pointer to this.
    inner: Opaque<bindings::genl_family>,
    /// Ours: claimed by a registration, so that one at a time sets the ops.
    registered: AtomicBool,
    /// Ours: what the ops' callbacks call, a `T: Handler` from
    /// `Arc::into_raw()`.
    handler: AtomicPtr<c_void>,
}

// SAFETY: The core serialises its own accesses to the family; the Rust side
// writes only while it holds the `registered` claim, before registration.
unsafe impl Sync for Family {}

impl Family {
    /// A family called `name` (NUL-terminated: bindgen's constants are
    /// `&[u8]`), version `version`, with multicast groups `mcgrps`, serving
    /// every network namespace and handling requests in parallel (without
    /// `genl_mutex`). For `const` context: panics (a build error there) on a
    /// name that is not NUL-terminated or longer than `GENL_NAMSIZ - 1`
    /// bytes, or on more than 255 groups.
    pub const fn const_new(
        module: &ThisModule,
        name: &[u8],
        version: u32,
        mcgrps: &'static [MulticastGroup],
    ) -> Family {
        let n_mcgrps = mcgrps.len() as u8;
        if n_mcgrps as usize != mcgrps.len() {
            panic!("too many mcgrps");
        }
        // SAFETY: All-zeroes is an empty `genl_family`, as C's `{}`.
        let mut family: bindings::genl_family = unsafe { core::mem::zeroed() };
        family.version = version;
        // `netnsok` is bit 0, `parallel_ops` bit 1 (see the example).
        family._bitfield_1 = bindings::__BindgenBitfieldUnit::new([0b11]);
        family.module = module.as_ptr();
        family.mcgrps = mcgrps.as_ptr().cast();
        family.n_mcgrps = n_mcgrps;
        if CStr::from_bytes_with_nul(name).is_err() {
            panic!("genl_family name not nul-terminated");
        }
        if family.name.len() < name.len() {
            panic!("genl_family name too long");
        }
        let mut i = 0;
        while i < name.len() {
            family.name[i] = name[i] as _;
            i += 1;
        }
        Family {
            inner: Opaque::new(family),
            registered: AtomicBool::new(false),
            handler: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Whether anybody listens to multicast group `group` (its index in
    /// the family's groups) in the initial network namespace
    /// (`genl_has_listeners()`); `false` for a group the family does not
    /// have.
    #[inline]
    pub fn has_listeners(&self, group: u32) -> bool {
        self.has_listeners_netns(Namespace::init_ns(), group)
    }

    /// Whether anybody listens to multicast group `group` in network
    /// namespace `net` (`genl_has_listeners()`); `false` for a group the
    /// family does not have.
    #[inline]
    pub fn has_listeners_netns(&self, net: &Namespace, group: u32) -> bool {
        if group >= self.n_mcgrps() {
            return false;
        }
        // What `genl_has_listeners()` does: the family's groups are
        // numbered from its `mcgrp_offset` in the generic netlink socket of
        // the namespace.
        // SAFETY: The family is valid (its fields are only read); `net` is
        // valid, and so is its generic netlink socket (see
        // `GenlMsg::reply`). `netlink_has_listeners()` checks the group
        // against the socket's (any number is `false` beyond them).
        unsafe {
            let group = (*self.as_raw()).mcgrp_offset as u32 + group;
            bindings::netlink_has_listeners((*net.as_raw()).genl_sock, group) != 0
        }
    }

    /// Reports `err` to every listener of multicast group `group` in network
    /// namespace `net` but `portid` (`genl_set_err()`): their next
    /// `recvmsg()` fails with it. For a notification that could not be
    /// built, so that the listeners know they missed one; `ENOBUFS` spares
    /// those that set `NETLINK_NO_ENOBUFS`. Does nothing for a group the
    /// family does not have.
    pub fn set_err(&self, net: &Namespace, portid: u32, group: u32, err: Error) {
        if group >= self.n_mcgrps() {
            return;
        }
        // SAFETY: The family is valid and has the group; `net` is valid.
        unsafe {
            bindings::genl_set_err(self.as_raw(), net.as_raw(), portid, group, err.to_errno())
        };
    }

    /// The C family.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::genl_family {
        self.inner.get()
    }

    #[inline]
    fn n_mcgrps(&self) -> u32 {
        // SAFETY: `n_mcgrps` is set by `const_new` and never written again.
        unsafe { (*self.as_raw()).n_mcgrps }.into()
    }

    /// Registers the family, with no commands (`genl_register_family()`).
    pub fn register(&'static self) -> Result<Registration> {
        self.register_with(&Ops::NONE, Arc::new((), GFP_KERNEL)?)
    }

    /// Registers the family with the commands `ops`, handled by `handler`
    /// (`genl_register_family()`). The handler is shared: the registration
    /// keeps a reference, and so does each running dump.
    ///
    /// Fails with `EBUSY` while another registration of the family exists,
    /// with `EINVAL` when the description is invalid (an attribute above
    /// `maxattr`, too many commands, a string policy of length 0), and with
    /// the core's error otherwise, e.g. `EEXIST` when the name is taken.
    pub fn register_with<T: Handler>(
        &'static self,
        ops: &Ops,
        handler: Arc<T>,
    ) -> Result<Registration<T>> {
        let tables = Tables::new::<T>(ops)?;
        if self.registered.swap(true, Ordering::Acquire) {
            return Err(EBUSY);
        }
        let handler = Arc::into_raw(handler);
        self.handler
            .store(handler.cast_mut().cast(), Ordering::Release);
        // SAFETY: The family is not registered, and this registration has the
        // claim: nothing else reads or writes these fields now.
        unsafe {
            let raw = self.as_raw();
            (*raw).ops = tables.ops.as_ptr();
            (*raw).n_ops = tables.ops.len() as u8;
            (*raw).maxattr = ops.maxattr.into();
        }
        // INVARIANT: The claim is held, and `handler` is the handler that the
        // ops just set call.
        let registration = Registration {
            family: self,
            tables,
            handler,
        };
        // SAFETY: The family is valid, static, and set up above.
        if let Err(e) = to_result(unsafe { bindings::genl_register_family(self.as_raw()) }) {
            registration.forget_registered();
            return Err(e);
        }
        Ok(registration)
    }
}

/// How the core validates one attribute (`struct nla_policy`).
#[derive(Clone, Copy)]
pub enum Policy {
    /// A NUL-terminated string of at most `max_len` characters before the
    /// NUL (`NLA_NUL_STRING` with `.len = max_len`).
    ///
    /// `max_len` must not be 0: in C, 0 means "no limit", not "empty", and
    /// [`Family::register_with`] refuses it.
    NulString {
        /// Longest string, NUL not counted; at least 1.
        max_len: u16,
    },
    /// A 32-bit unsigned integer (`NLA_U32`).
    U32,
    /// A flag: present or not, no payload (`NLA_FLAG`).
    Flag,
}

impl Policy {
    /// The C policy; `EINVAL` for a description that C would read otherwise.
    fn to_raw(self) -> Result<bindings::nla_policy> {
        // SAFETY: All-zeroes is `NLA_UNSPEC` with no limits, as C's `{}`.
        let mut raw: bindings::nla_policy = unsafe { core::mem::zeroed() };
        let (ty, len) = match self {
            Policy::NulString { max_len: 0 } => return Err(EINVAL),
            Policy::NulString { max_len } => (bindings::NLA_NUL_STRING, max_len),
            Policy::U32 => (bindings::NLA_U32, 0),
            Policy::Flag => (bindings::NLA_FLAG, 0),
        };
        raw.type_ = ty as u8;
        raw.len = len;
        Ok(raw)
    }
}

/// One command of a family: its number, the policy of the attributes it
/// accepts, and whether it dumps.
pub struct Command {
    /// The command number (`genlmsghdr.cmd`).
    pub cmd: u8,
    /// The attributes the command accepts; any other is rejected.
    pub policy: &'static [(u16, Policy)],
    /// Whether only `CAP_NET_ADMIN` may send it (`GENL_ADMIN_PERM`).
    pub admin_perm: bool,
    /// Whether the command also dumps (`NLM_F_DUMP`): [`Handler::start`]
    /// and [`Handler::dumpit`] serve it. Otherwise the core answers a dump
    /// request with `EOPNOTSUPP`.
    pub dump: bool,
}

/// The commands of a family, as plain data.
pub struct Ops {
    /// The highest attribute number. Every policy table is sized
    /// `maxattr + 1`, indexed by attribute number.
    pub maxattr: u16,
    /// The commands.
    pub commands: &'static [Command],
}

impl Ops {
    /// No commands.
    pub const NONE: Ops = Ops {
        maxattr: 0,
        commands: &[],
    };
}

/// Handles the commands of a registered family.
///
/// # Examples
///
/// ```
/// use kernel::c_str;
/// use kernel::net::netlink::{Command, Family, Handler, Info, Ops, Policy};
/// use kernel::sync::Arc;
///
/// # // SAFETY: Code built into the kernel, as this example is, has no module:
/// # // its `THIS_MODULE` is NULL.
/// # static THIS_MODULE: kernel::ThisModule =
/// #     unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) };
/// static FAMILY: Family = Family::const_new(&THIS_MODULE, b"example\0", 1, &[]);
///
/// struct Refuse;
///
/// impl Handler for Refuse {
///     type Cursor = ();
///
///     fn doit(&self, _info: &Info<'_>) -> Result {
///         Err(EOPNOTSUPP)
///     }
/// }
///
/// const OPS: Ops = Ops {
///     maxattr: 2,
///     commands: &[Command {
///         cmd: 1,
///         policy: &[(1, Policy::NulString { max_len: 64 }), (2, Policy::U32)],
///         admin_perm: false,
///         dump: false,
///     }],
/// };
/// let registration = FAMILY.register_with(&OPS, Arc::new(Refuse, GFP_KERNEL)?)?;
/// // One registration at a time.
/// assert_eq!(FAMILY.register().err(), Some(EBUSY));
/// drop(registration);
///
/// // A string of at most 0 characters would mean "no limit" to C: refused.
/// const UNLIMITED: Ops = Ops {
///     commands: &[Command {
///         cmd: 1,
///         policy: &[(1, Policy::NulString { max_len: 0 })],
///         admin_perm: false,
///         dump: false,
///     }],
///     ..OPS
/// };
/// assert_eq!(FAMILY.register_with(&UNLIMITED, Arc::new(Refuse, GFP_KERNEL)?).err(), Some(EINVAL));
/// // So is an attribute above `maxattr`.
/// const ABOVE: Ops = Ops { maxattr: 1, ..OPS };
/// assert_eq!(FAMILY.register_with(&ABOVE, Arc::new(Refuse, GFP_KERNEL)?).err(), Some(EINVAL));
/// # Ok::<(), Error>(())
/// ```
pub trait Handler: Send + Sync + Sized + 'static {
    /// The state of a dump between two [`dumpit`](Self::dumpit) calls,
    /// dropped when the dump ends or its socket closes (`done`).
    type Cursor: Send;

    /// The room, in bytes, that each [`dumpit`](Self::dumpit) call gets at
    /// least (`cb->min_dump_alloc`): the largest message that a dump
    /// sends, so that each fits in a buffer of its own. The core's default
    /// is `NLMSG_GOODSIZE`, about a page; it gives more to a requester that
    /// reads with a larger buffer, but only from its first `recvmsg()` on.
    const MIN_DUMP_ALLOC: usize = 0;

    /// Handles one request whose attributes passed the command's policy.
    ///
    /// Runs in the sender's context and may sleep. Returning an error makes
    /// the core answer `NLMSG_ERROR` with it (and the extended-ack message
    /// set on `info`); returning `Ok(())` acknowledges only if the request
    /// asked for it (`NLM_F_ACK`).
    fn doit(&self, info: &Info<'_>) -> Result;

    /// Starts a dump of a command with [`Command::dump`]: checks the
    /// request, whose attributes passed the policy, and returns the
    /// cursor. An error is the answer to the request, as for `doit`.
    fn start(&self, _info: &Info<'_>) -> Result<Self::Cursor> {
        Err(EOPNOTSUPP)
    }

    /// Fills `dump`'s buffer with the next messages of a dump, from
    /// `cursor` on, and moves `cursor` past them.
    ///
    /// Returns `Ok(())` when everything is dumped: the core then ends the
    /// dump with `NLMSG_DONE`. A message that does not fit fails with
    /// `EMSGSIZE`: pass it on, and `dumpit` runs again, with the same
    /// cursor, when the requester has read this buffer. (`EMSGSIZE` with
    /// nothing in the buffer, and any other error, ends the dump with that
    /// error.) Runs in the requester's `recvmsg()` (the first time in its
    /// `sendmsg()`) and may sleep; the dumps of one socket never run
    /// concurrently.
    fn dumpit(&self, _cursor: &mut Self::Cursor, _dump: &mut Dump<'_>) -> Result {
        Err(EOPNOTSUPP)
    }
}

impl Handler for () {
    type Cursor = ();

    fn doit(&self, _info: &Info<'_>) -> Result {
        Err(EOPNOTSUPP)
    }
}

/// The C tables of a family's commands: they must stay in place while the
/// family is registered.
struct Tables {
    ops: KVec<bindings::genl_ops>,
    /// Indexed like `ops`; each `maxattr + 1` entries. The tables live in
    /// the heap buffers of the inner vectors, which do not move.
    _policies: KVec<KVec<bindings::nla_policy>>,
}

impl Tables {
    fn new<T: Handler>(desc: &Ops) -> Result<Self> {
        if u8::try_from(desc.commands.len()).is_err() {
            return Err(EINVAL);
        }
        let mut ops = KVec::with_capacity(desc.commands.len(), GFP_KERNEL)?;
        let mut policies = KVec::with_capacity(desc.commands.len(), GFP_KERNEL)?;
        for command in desc.commands {
            // Indexed by attribute number: `maxattr + 1` entries.
            let mut policy = KVec::with_capacity(usize::from(desc.maxattr) + 1, GFP_KERNEL)?;
            for _ in 0..=desc.maxattr {
                // SAFETY: All-zeroes is `NLA_UNSPEC`: the attribute is unused.
                policy.push(unsafe { core::mem::zeroed() }, GFP_KERNEL)?;
            }
            for &(attr, p) in command.policy {
                *policy.get_mut(usize::from(attr)).ok_or(EINVAL)? = p.to_raw()?;
            }
            // SAFETY: All-zeroes is a `genl_ops` with no callbacks, as C's `{}`.
            let mut op: bindings::genl_ops = unsafe { core::mem::zeroed() };
            op.cmd = command.cmd;
            op.doit = Some(doit_callback::<T>);
            if command.dump {
                op.start = Some(start_callback::<T>);
                op.dumpit = Some(dumpit_callback::<T>);
                op.done = Some(done_callback::<T>);
            }
            op.maxattr = desc.maxattr.into();
            op.policy = policy.as_ptr();
            if command.admin_perm {
                op.flags = bindings::GENL_ADMIN_PERM as u8;
            }
            ops.push(op, GFP_KERNEL)?;
            policies.push(policy, GFP_KERNEL)?;
        }
        Ok(Self {
            ops,
            _policies: policies,
        })
    }
}

/// The registration of a generic netlink family; unregisters it on drop.
///
/// # Invariants
///
/// `family` is registered, with the ops of `tables`, and this registration
/// holds its claim; `handler` comes from `Arc::into_raw()` and is published
/// in `family.handler`.
pub struct Registration<T: Handler = ()> {
    family: &'static Family,
    tables: Tables,
    handler: *const T,
}

// SAFETY: The registration only unregisters and frees, which may happen on
// any thread; `T` is `Send + Sync` (required by `Handler`).
unsafe impl<T: Handler> Send for Registration<T> {}

// SAFETY: `Registration` exposes nothing through a shared reference.
unsafe impl<T: Handler> Sync for Registration<T> {}

impl<T: Handler> Registration<T> {
    /// Undoes what `register_with` did before `genl_register_family()`:
    /// for a registration that failed.
    fn forget_registered(self) {
        let me = ManuallyDrop::new(self);
        me.unpublish();
        // SAFETY: `me` is never dropped: `tables` is moved out exactly once.
        drop(unsafe { ptr::read(&me.tables) });
    }

    /// Clears the ops and the handler, releases the claim, and drops this
    /// registration's reference to the handler.
    fn unpublish(&self) {
        // SAFETY: The family is not registered (any more), and this
        // registration has the claim: nothing else reads or writes these.
        unsafe {
            let raw = self.family.as_raw();
            (*raw).ops = ptr::null();
            (*raw).n_ops = 0;
        }
        self.family
            .handler
            .store(ptr::null_mut(), Ordering::Relaxed);
        self.family.registered.store(false, Ordering::Release);
        // SAFETY: `handler` comes from `Arc::into_raw()` (type invariant),
        // and is no longer published: the core calls no `doit` or `start`
        // any more, and running dumps hold references of their own.
        drop(unsafe { Arc::from_raw(self.handler) });
    }
}

impl<T: Handler> Drop for Registration<T> {
    /// Unregisters the family. Sleeps: it waits for the requests in flight.
    ///
    /// A dump may outlive the registration (its socket reads on after
    /// `genl_unregister_family()`): it holds its own reference to the
    /// handler, and the core pins the module until the dump ends.
    fn drop(&mut self) {
        // SAFETY: By the type invariant the family is registered.
        // Unregistering takes the core's `cb_lock` for writing, so it waits
        // for every `doit` and `start` in flight, and none starts afterwards.
        unsafe { bindings::genl_unregister_family(self.family.as_raw()) };
        self.unpublish();
    }
}

/// The handler of the registration in force of the family of `info`.
///
/// # Safety
///
/// `info` must be the `genl_info` of a `doit` or `start` call of the ops
/// that a `Registration<T>` set up, during the call.
unsafe fn handler_of<'a, T: Handler>(info: *const bindings::genl_info) -> &'a T {
    // SAFETY: `family` is the first field of a `#[repr(C)] Family`, static.
    let family = unsafe { &*(*info).family.cast::<Family>() };
    // SAFETY: While the ops run, the registration that set them up exists
    // (its drop waits for them), and its handler, a `T`, is published.
    unsafe { &*family.handler.load(Ordering::Acquire).cast::<T>() }
}

/// The `doit` of every command of a [`Registration<T>`].
///
/// # Safety
///
/// Called by the generic netlink core only, with the request skb and a valid
/// `info` whose `family` is registered by a `Registration<T>`.
unsafe extern "C" fn doit_callback<T: Handler>(
    _skb: *mut bindings::sk_buff,
    info: *mut bindings::genl_info,
) -> c_int {
    // SAFETY: The core calls this during a `doit` of the registration's ops.
    let handler = unsafe { handler_of::<T>(info) };
    // SAFETY: The core passes the `genl_info` of this `doit`, whose attribute
    // table it sized by the ops' `maxattr` (or left NULL when it is 0) and
    // validated against the command's policy, and whose `extack` is valid.
    let info = unsafe { Info::from_raw(info) };
    match handler.doit(&info) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// What a running dump keeps in `cb->args[0]`: its own reference to the
/// handler, and the cursor.
struct DumpState<T: Handler> {
    handler: Arc<T>,
    cursor: T::Cursor,
}

/// The `start` of every dumping command of a [`Registration<T>`].
///
/// # Safety
///
/// Called by the generic netlink core only, with the callback of a dump
/// being started for a family registered by a `Registration<T>`.
unsafe extern "C" fn start_callback<T: Handler>(cb: *mut bindings::netlink_callback) -> c_int {
    // SAFETY: The core set up `cb->data` (`genl_start()`) before this call:
    // a `genl_info` with the parsed, validated attributes and the extack
    // of the request, valid during the call.
    let raw = unsafe { bindings::genl_info_dump(cb) }.cast_mut();
    // SAFETY: `start` runs under the core's `cb_lock`, as `doit` does.
    let handler = unsafe { handler_of::<T>(raw) };
    // SAFETY: As for `doit`.
    let info = unsafe { Info::from_raw(raw) };
    let min_dump_alloc = u32::try_from(T::MIN_DUMP_ALLOC.min(MAX_SKB_SIZE)).unwrap_or(0);
    // SAFETY: `cb` is valid; the core reads `min_dump_alloc` after `start`.
    unsafe { (*cb).min_dump_alloc = (*cb).min_dump_alloc.max(min_dump_alloc) };
    let result = handler.start(&info).and_then(|cursor| {
        // SAFETY: `handler` is the data of an `Arc` (`Registration`'s
        // invariant) that the registration keeps alive during the call.
        let handler = unsafe { ArcBorrow::from_raw(handler) }.into();
        Ok(KBox::new(DumpState { handler, cursor }, GFP_KERNEL)?)
    });
    match result {
        Ok(state) => {
            // SAFETY: `cb` is valid; `args` is ours while the dump runs.
            unsafe { (*cb).__bindgen_anon_1.args[0] = KBox::into_raw(state) as _ };
            0
        }
        // The core calls no `done` after a failed `start`.
        Err(e) => e.to_errno(),
    }
}

/// The state that `start_callback` stored in `cb`.
///
/// # Safety
///
/// `cb` must be the callback of a dump whose `start_callback::<T>`
/// succeeded and whose `done_callback::<T>` has not run.
unsafe fn dump_state<T: Handler>(cb: *mut bindings::netlink_callback) -> *mut DumpState<T> {
    // SAFETY: `cb` is valid, and `args[0]` holds the state (the caller's
    // guarantee).
    unsafe { (*cb).__bindgen_anon_1.args[0] as *mut DumpState<T> }
}

/// The `dumpit` of every dumping command of a [`Registration<T>`].
///
/// # Safety
///
/// Called by the netlink core only, with the buffer to fill and the callback
/// of a dump started by `start_callback::<T>`.
unsafe extern "C" fn dumpit_callback<T: Handler>(
    skb: *mut bindings::sk_buff,
    cb: *mut bindings::netlink_callback,
) -> c_int {
    // SAFETY: `start` succeeded; `done` runs only after the last `dumpit`,
    // and the core runs the dumps of a socket one at a time (`nl_cb_mutex`).
    let state = unsafe { &mut *dump_state::<T>(cb) };
    // INVARIANT: The core passes its buffer for this call and the dump's
    // callback, set up by `genl_start()`.
    let mut dump = Dump {
        skb,
        cb,
        _lifetime: PhantomData,
    };
    match state.handler.dumpit(&mut state.cursor, &mut dump) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// The `done` of every dumping command of a [`Registration<T>`].
///
/// # Safety
///
/// Called by the netlink core only, once, at the end of a dump started by
/// `start_callback::<T>`.
unsafe extern "C" fn done_callback<T: Handler>(cb: *mut bindings::netlink_callback) -> c_int {
    // SAFETY: `start` succeeded, so the state is there, from
    // `KBox::into_raw()`; no `dumpit` runs any more.
    drop(unsafe { KBox::from_raw(dump_state::<T>(cb)) });
    0
}

/// A request to a generic netlink family, borrowed for the duration of
/// [`Handler::doit`] or [`Handler::start`].
///
/// # Invariants
///
/// `raw` is the valid `genl_info` of the running `doit` or `start`: its
/// attribute table is NULL (the ops have `maxattr == 0`) or has
/// `maxattr + 1` entries, each NULL or an attribute of the request that
/// passed the command's policy, and its `extack` is valid.
pub struct Info<'a> {
    raw: *mut bindings::genl_info,
    _lifetime: PhantomData<&'a bindings::genl_info>,
}

impl<'a> Info<'a> {
    /// # Safety
    ///
    /// `raw` must satisfy the type invariants for `'a`.
    #[inline]
    unsafe fn from_raw(raw: *mut bindings::genl_info) -> Self {
        // INVARIANT: The caller guarantees the invariants.
        Self {
            raw,
            _lifetime: PhantomData,
        }
    }

    #[inline]
    fn maxattr(&self) -> u16 {
        // SAFETY: By the type invariant, `raw` and its family are valid; the
        // registration set the family's `maxattr`, that of every command,
        // from a `u16` (`Ops::maxattr`).
        unsafe { (*(*self.raw).family).maxattr as u16 }
    }

    /// The network namespace of the request (`genl_info_net()`): that of
    /// its sender, which holds it for the duration of the request.
    #[inline]
    pub fn net(&self) -> &'a Namespace {
        // SAFETY: By the type invariant, `raw` is valid; the core set its
        // namespace to that of the socket the request came through, which
        // the sender's socket keeps alive while the request runs.
        unsafe { Namespace::from_raw(bindings::genl_info_net(self.raw)) }
    }

    /// The command of the request.
    pub fn cmd(&self) -> u8 {
        // SAFETY: By the type invariant, `raw` and its `genlhdr` are valid.
        unsafe { (*(*self.raw).genlhdr).cmd }
    }

    /// The port id of the sender, as the netlink core recorded it.
    #[inline]
    pub fn snd_portid(&self) -> u32 {
        // SAFETY: By the type invariant, `raw` is valid.
        unsafe { (*self.raw).snd_portid }
    }

    /// Attribute `attr` of the request, if present.
    #[inline]
    pub fn attr(&self, attr: u16) -> Option<Attr<'a>> {
        if attr > self.maxattr() {
            return None;
        }
        // SAFETY: By the type invariant, `raw` is valid.
        let attrs = unsafe { (*self.raw).attrs };
        if attrs.is_null() {
            // No attributes: the core parses none.
            return None;
        }
        // SAFETY: By the type invariant, a non-NULL table has `maxattr + 1`
        // entries, and `attr <= maxattr`.
        let nla = unsafe { *attrs.add(usize::from(attr)) };
        // INVARIANT: A non-NULL entry is an attribute inside the request,
        // valid while the request is; its length passed validation.
        // SAFETY: Hence it satisfies `Attr`'s invariants for `'a`.
        NonNull::new(nla).map(|nla| unsafe { Attr::from_raw(nla) })
    }

    /// Attribute `attr`, which the command requires. When it is missing,
    /// reports it in the extended ack (`NL_SET_ERR_ATTR_MISS`, with `msg` as
    /// the message) and returns `EINVAL`.
    #[inline]
    pub fn required_attr(&self, attr: u16, msg: &'static CStr) -> Result<Attr<'a>> {
        self.attr(attr).ok_or_else(|| {
            // SAFETY: By the type invariant, `extack` is valid; the core
            // reads it after `doit` returns, and `msg` is static.
            unsafe {
                let extack = (*self.raw).extack;
                (*extack).miss_type = attr;
                (*extack).miss_nest = ptr::null();
                (*extack)._msg = msg.as_char_ptr();
            }
            EINVAL
        })
    }

    /// Sets the extended-ack message of the answer (`GENL_SET_ERR_MSG`).
    pub fn set_err_msg(&self, msg: &'static CStr) {
        // SAFETY: By the type invariant, `extack` is valid, and `msg` is
        // static.
        unsafe { (*(*self.raw).extack)._msg = msg.as_char_ptr() };
    }

    /// Sets a formatted extended-ack message (`NL_SET_ERR_MSG_FMT`), cut at
    /// `NETLINK_MAX_FMTMSG_LEN - 1` bytes, as C's `snprintf()` cuts it.
    pub fn set_err_msg_fmt(&self, args: fmt::Arguments<'_>) {
        let mut buf = MsgBuf {
            buf: [0; bindings::NETLINK_MAX_FMTMSG_LEN as usize],
            len: 0,
        };
        // `MsgBuf` never fails: it cuts.
        let _ = fmt::write(&mut buf, args);
        // SAFETY: By the type invariant, `extack` is valid and ours during
        // the call; the message points into its own buffer, NUL-terminated
        // (`buf` keeps its last byte 0).
        unsafe {
            let extack = (*self.raw).extack;
            for (dst, &src) in (*extack)._msg_buf.iter_mut().zip(buf.buf.iter()) {
                *dst = src as _;
            }
            (*extack)._msg = (*extack)._msg_buf.as_ptr();
        }
    }

    /// Points the extended ack at `attr`, an attribute of this request, as
    /// the one in error (`NL_SET_BAD_ATTR`): the answer carries its offset.
    pub fn set_bad_attr(&self, attr: &Attr<'a>) {
        // SAFETY: By the type invariant, `extack` is valid; `attr` lies in
        // this request (it has the request's lifetime `'a`).
        unsafe {
            let extack = (*self.raw).extack;
            (*extack).bad_attr = attr.nla.as_ptr();
            (*extack).policy = ptr::null();
        }
    }
}

/// A message buffer that cuts what does not fit, keeping a final NUL.
struct MsgBuf {
    buf: [u8; bindings::NETLINK_MAX_FMTMSG_LEN as usize],
    len: usize,
}

impl fmt::Write for MsgBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// An attribute of a request, validated by its policy.
///
/// # Invariants
///
/// `nla` points to a valid attribute whose payload of
/// `nla_len - NLA_HDRLEN` bytes follows it, alive for `'a`.
pub struct Attr<'a> {
    nla: NonNull<bindings::nlattr>,
    _lifetime: PhantomData<&'a bindings::nlattr>,
}

impl<'a> Attr<'a> {
    /// # Safety
    ///
    /// `nla` must satisfy the type invariants for `'a`.
    #[inline]
    unsafe fn from_raw(nla: NonNull<bindings::nlattr>) -> Self {
        // INVARIANT: The caller guarantees the invariants.
        Self {
            nla,
            _lifetime: PhantomData,
        }
    }

    /// The payload (`nla_data()`, `nla_len()`).
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        // SAFETY: By the type invariant, the header is valid.
        let len = usize::from(unsafe { (*self.nla.as_ptr()).nla_len });
        let len = len.saturating_sub(NLA_HDRLEN);
        // SAFETY: By the type invariant, `len` payload bytes follow the
        // header, alive and unmodified for `'a`.
        unsafe { core::slice::from_raw_parts(self.nla.as_ptr().cast::<u8>().add(NLA_HDRLEN), len) }
    }

    /// The string of an `NLA_NUL_STRING` attribute, NUL included: the
    /// policy guarantees a NUL within the payload.
    #[inline]
    pub fn nul_string(&self) -> Result<&'a CStr> {
        let data = self.data();
        let nul = data.iter().position(|&b| b == 0).ok_or(EINVAL)?;
        // SAFETY: `data[..=nul]` ends with its first NUL, so it has no
        // other: what `CStr::from_bytes_with_nul()` would scan it for again.
        Ok(unsafe { CStr::from_bytes_with_nul_unchecked(&data[..=nul]) })
    }

    /// The value of an `NLA_U32` attribute.
    #[inline]
    pub fn u32(&self) -> Result<u32> {
        let bytes = self.data().get(..4).ok_or(EINVAL)?;
        Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

/// The buffer that one [`Handler::dumpit`] call fills, and its dump.
///
/// # Invariants
///
/// `skb` is the core's buffer for this `dumpit` call, and `cb` the dump's
/// callback, set up by `genl_start()`; both are valid for `'a`.
pub struct Dump<'a> {
    skb: *mut bindings::sk_buff,
    cb: *mut bindings::netlink_callback,
    _lifetime: PhantomData<&'a mut bindings::sk_buff>,
}

impl<'a> Dump<'a> {
    /// Records the generation of the dumped data (`cb->seq`). When it
    /// differs from the one of the previous message, the next message that
    /// ends ([`DumpMsg::end`]) carries `NLM_F_DUMP_INTR`, telling the
    /// requester that the data changed during the dump
    /// (`genl_dump_check_consistent()`). Set it before putting the messages
    /// of each call.
    pub fn set_generation(&mut self, generation: u32) {
        // SAFETY: By the type invariant, `cb` is valid, and ours in the call.
        unsafe { (*self.cb).seq = generation };
    }

    /// The network namespace of the dump (`genl_info_net()` of the dump's
    /// info): that of the socket that asked for it, which holds it while
    /// the dump runs.
    #[inline]
    pub fn net(&self) -> &'a Namespace {
        // SAFETY: By the type invariant, `cb` is valid and `genl_start()`
        // set up its info, whose namespace is that of the requesting
        // socket; that socket is reading the dump, so it keeps the
        // namespace alive for the call.
        unsafe { Namespace::from_raw(bindings::genl_info_net(bindings::genl_info_dump(self.cb))) }
    }

    /// Starts the next message of the dump, with command `cmd`: the
    /// requester's port id and sequence number, `NLM_F_MULTI`
    /// (`genlmsg_put()`). Fails with `EMSGSIZE` when the headers do not
    /// fit.
    pub fn genlmsg_put(&mut self, cmd: u8) -> Result<DumpMsg<'_>> {
        // SAFETY: By the type invariant, `cb`, its request skb and header,
        // and the `genl_info` that `genl_start()` set up are valid; the
        // family is the static one whose ops run.
        let hdr = unsafe {
            let cb = self.cb;
            bindings::genlmsg_put(
                self.skb,
                (*crate::net::raw_netlink::netlink_cb((*cb).skb)).portid,
                (*(*cb).nlh).nlmsg_seq,
                (*bindings::genl_info_dump(cb)).family,
                bindings::NLM_F_MULTI as c_int,
                cmd,
            )
        };
        let hdr = NonNull::new(hdr).ok_or(EMSGSIZE)?;
        // INVARIANT: `hdr` is the user header of the last message of `skb`.
        Ok(DumpMsg {
            skb: self.skb,
            cb: self.cb,
            hdr,
            _lifetime: PhantomData,
        })
    }
}

/// A message of a dump being built; cancelled (`genlmsg_cancel()`) if
/// dropped before [`end`](Self::end).
///
/// # Invariants
///
/// `hdr` points to the user header of the last message started in `skb`,
/// the buffer of the running `dumpit`, and `cb` is the dump's callback;
/// both are valid for `'a`.
pub struct DumpMsg<'a> {
    skb: *mut bindings::sk_buff,
    cb: *mut bindings::netlink_callback,
    hdr: NonNull<c_void>,
    _lifetime: PhantomData<&'a mut bindings::sk_buff>,
}

impl PutAttr for DumpMsg<'_> {
    #[inline]
    fn put_u32(&mut self, attrtype: c_int, value: u32) -> Result {
        // SAFETY: By the type invariant, the skb is the dump's buffer.
        unsafe { nla_put(self.skb, attrtype, &value.to_ne_bytes()) }
    }

    #[inline]
    fn put_string(&mut self, attrtype: c_int, value: &CStr) -> Result {
        // SAFETY: By the type invariant, the skb is the dump's buffer.
        unsafe { nla_put(self.skb, attrtype, value.as_bytes_with_nul()) }
    }
}

impl DumpMsg<'_> {
    /// Ends the message: it stays in the buffer (`genlmsg_end()`), flagged
    /// `NLM_F_DUMP_INTR` if the generation changed since the previous
    /// message (`genl_dump_check_consistent()`). The check comes last, so
    /// that a message cancelled for want of room does not take the flag
    /// with it: the core flags only the first message after a change.
    #[inline]
    pub fn end(self) {
        let me = ManuallyDrop::new(self);
        // SAFETY: By the type invariant, `hdr` is the user header of the
        // last message in the skb, and `cb` the dump's callback.
        unsafe {
            bindings::genl_dump_check_consistent(me.cb, me.hdr.as_ptr());
            bindings::genlmsg_end(me.skb, me.hdr.as_ptr());
        }
    }
}

impl Drop for DumpMsg<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `hdr` is the user header of the last
        // message in the skb: removing it leaves the earlier ones.
        unsafe { bindings::genlmsg_cancel(self.skb, self.hdr.as_ptr()) };
    }
}
