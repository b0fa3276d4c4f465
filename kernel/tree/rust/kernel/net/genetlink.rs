// SPDX-License-Identifier: GPL-2.0

//! Generic netlink: a family with `doit` commands, attribute policies, and
//! replies.
//!
//! A module describes its family in a [`Family`] (a `const` of plain data:
//! name, version, attributes, commands with their policies), implements
//! [`Handler`], and keeps the [`Registration`] that [`Registration::new`]
//! returns: dropping it unregisters the family. Each request reaches
//! [`Handler::doit`] as an [`Info`] whose attributes the generic netlink core
//! has already parsed and validated against the command's policy (strictly:
//! unknown attributes are rejected). Replies are built with
//! [`NetlinkSkBuff::genlmsg_new`] and [`NetlinkSkBuff::genlmsg_put_reply`]
//! and sent with [`GenlMsg::reply`].
//!
//! Names follow upstream's generic netlink abstraction (Linux 7.3, multicast
//! only: `Family`, `Registration`, `GenlMsg`, `NetlinkSkBuff`); this one
//! covers unicast commands.
//!
//! C header: [`include/net/genetlink.h`](srctree/include/net/genetlink.h).

use crate::{
    alloc::{Flags, KBox, KVec},
    bindings,
    error::{code::*, to_result, Result},
    net::netlink::{NetlinkSkBuff, MAX_SKB_SIZE, NLMSG_HDRLEN},
    prelude::*,
    str::CStr,
    types::Opaque,
    ThisModule,
};
use core::{ffi::c_void, marker::PhantomData, mem::size_of, ptr, ptr::NonNull};

/// Length of an attribute header, padded (`NLA_HDRLEN`).
pub const NLA_HDRLEN: usize = crate::net::netlink::nlmsg_align(size_of::<bindings::nlattr>());

/// Room an attribute with `payload` bytes takes in a message, padding
/// included (`nla_total_size()`).
///
/// `payload` must be below `usize::MAX - NLA_HDRLEN - NLMSG_ALIGNTO`; an
/// attribute payload is at most [`MAX_ATTR_PAYLOAD`] bytes.
pub const fn nla_total_size(payload: usize) -> usize {
    crate::net::netlink::nlmsg_align(NLA_HDRLEN + payload)
}

/// The largest attribute payload: `nla_len`, which counts the header too, is
/// 16 bits wide.
pub const MAX_ATTR_PAYLOAD: usize = u16::MAX as usize - NLA_HDRLEN;

/// Length of the generic netlink header (`GENL_HDRLEN`).
pub const GENL_HDRLEN: usize = crate::net::netlink::nlmsg_align(size_of::<bindings::genlmsghdr>());

/// How the core validates one attribute (`struct nla_policy`).
#[derive(Clone, Copy)]
pub enum Policy {
    /// A NUL-terminated string of at most `max_len` characters before the
    /// NUL (`NLA_NUL_STRING` with `.len = max_len`).
    ///
    /// `max_len` must not be 0: in C, 0 means "no limit", not "empty", and
    /// [`Registration::new`] refuses it.
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

/// One command of a family: its number, and the policy of the attributes it
/// accepts.
pub struct Command {
    /// The command number (`genlmsghdr.cmd`).
    pub cmd: u8,
    /// The attributes the command accepts; any other is rejected.
    pub policy: &'static [(u16, Policy)],
    /// Whether only `CAP_NET_ADMIN` may send it (`GENL_ADMIN_PERM`).
    pub admin_perm: bool,
}

/// A generic netlink family, described as plain data.
///
/// # Examples
///
/// ```
/// use kernel::c_str;
/// use kernel::net::genetlink::{Command, Family, Handler, Info, Policy, Registration};
///
/// const FAMILY: Family = Family {
///     name: c_str!("example"),
///     version: 1,
///     maxattr: 2,
///     netnsok: true,
///     commands: &[Command {
///         cmd: 1,
///         policy: &[(1, Policy::NulString { max_len: 64 }), (2, Policy::U32)],
///         admin_perm: false,
///     }],
/// };
/// assert_eq!(FAMILY.commands[0].policy.len(), 2);
///
/// struct Refuse;
///
/// impl Handler for Refuse {
///     fn doit(&self, _info: &Info<'_>) -> Result {
///         Err(EOPNOTSUPP)
///     }
/// }
///
/// # // SAFETY: Code built into the kernel, as this example is, has no module:
/// # // its `THIS_MODULE` is NULL.
/// # static THIS_MODULE: kernel::ThisModule =
/// #     unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) };
/// // A string of at most 0 characters would mean "no limit" to C: refused.
/// const UNLIMITED: Family = Family {
///     commands: &[Command {
///         cmd: 1,
///         policy: &[(1, Policy::NulString { max_len: 0 })],
///         admin_perm: false,
///     }],
///     ..FAMILY
/// };
/// assert_eq!(Registration::new(&UNLIMITED, Refuse, &THIS_MODULE).err(), Some(EINVAL));
/// // So is an attribute above `maxattr`.
/// const ABOVE: Family = Family { maxattr: 1, ..FAMILY };
/// assert_eq!(Registration::new(&ABOVE, Refuse, &THIS_MODULE).err(), Some(EINVAL));
/// # Ok::<(), Error>(())
/// ```
pub struct Family {
    /// The family name, at most `GENL_NAMSIZ - 1` bytes.
    pub name: &'static CStr,
    /// The family version (`genlmsghdr.version` of replies).
    pub version: u8,
    /// The highest attribute number. Every policy table is sized
    /// `maxattr + 1`, indexed by attribute number.
    pub maxattr: u16,
    /// Whether the family serves every network namespace, not only the
    /// initial one.
    pub netnsok: bool,
    /// The commands.
    pub commands: &'static [Command],
}

/// Handles the commands of a registered family.
pub trait Handler: Send + Sync + Sized + 'static {
    /// Handles one request whose attributes passed the command's policy.
    ///
    /// Runs in the sender's context and may sleep. Returning an error makes
    /// the core answer `NLMSG_ERROR` with it (and the extended-ack message
    /// set on `info`); returning `Ok(())` acknowledges only if the request
    /// asked for it (`NLM_F_ACK`).
    fn doit(&self, info: &Info<'_>) -> Result;
}

/// The registration of a generic netlink family; unregisters it on drop.
///
/// # Invariants
///
/// `inner` comes from `KBox::into_raw` and points to a `Registered<T>`
/// whose family is registered with the generic netlink core.
pub struct Registration<T: Handler> {
    inner: NonNull<Registered<T>>,
}

/// What the core points to while the family is registered. `family` comes
/// first, so that a `struct genl_family *` from the core is also a pointer
/// to this.
#[repr(C)]
struct Registered<T> {
    family: Opaque<bindings::genl_family>,
    ops: KVec<bindings::genl_ops>,
    policies: KVec<KVec<bindings::nla_policy>>,
    maxattr: u16,
    handler: T,
}

// SAFETY: The registration only unregisters and frees, which may happen on
// any thread; `T` is `Send + Sync` (required by `Handler`).
unsafe impl<T: Handler> Send for Registration<T> {}

// SAFETY: `Registration` exposes nothing through a shared reference.
unsafe impl<T: Handler> Sync for Registration<T> {}

impl<T: Handler> Registration<T> {
    /// Registers `family` with `handler` for its commands
    /// (`genl_register_family()`).
    ///
    /// Fails with `EINVAL` when the description is invalid (a name too long,
    /// an attribute above `maxattr`, too many commands, a string policy of
    /// length 0) and with the core's error otherwise, e.g. `EEXIST` when the
    /// name is taken.
    pub fn new(family: &Family, handler: T, module: &'static ThisModule) -> Result<Self> {
        let name = family.name.as_bytes_with_nul();
        let n_ops = u8::try_from(family.commands.len()).map_err(|_| EINVAL)?;
        let mut ops = KVec::with_capacity(family.commands.len(), GFP_KERNEL)?;
        let mut policies = KVec::with_capacity(family.commands.len(), GFP_KERNEL)?;
        for command in family.commands {
            // Indexed by attribute number: `maxattr + 1` entries.
            let mut policy = KVec::with_capacity(usize::from(family.maxattr) + 1, GFP_KERNEL)?;
            for _ in 0..=family.maxattr {
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
            op.maxattr = family.maxattr.into();
            if command.admin_perm {
                op.flags = bindings::GENL_ADMIN_PERM as u8;
            }
            ops.push(op, GFP_KERNEL)?;
            policies.push(policy, GFP_KERNEL)?;
        }
        // The policy tables live in the heap buffers of `policies`, which do
        // not move when the outer vector or the box moves.
        for (op, policy) in ops.iter_mut().zip(policies.iter()) {
            op.policy = policy.as_ptr();
        }

        // SAFETY: All-zeroes is an empty `genl_family`, as C's `{}`.
        let mut raw: bindings::genl_family = unsafe { core::mem::zeroed() };
        if name.len() > raw.name.len() {
            return Err(EINVAL);
        }
        for (dst, &src) in raw.name.iter_mut().zip(name) {
            *dst = src as _;
        }
        raw.version = family.version.into();
        raw.maxattr = family.maxattr.into();
        raw.set_netnsok(family.netnsok.into());
        // Requests are handled concurrently, without `genl_mutex`; each one
        // gets its own attribute table.
        raw.set_parallel_ops(1);
        raw.ops = ops.as_ptr();
        raw.n_ops = n_ops;
        raw.module = module.as_ptr();

        let inner = KBox::new(
            Registered {
                family: Opaque::new(raw),
                ops,
                policies,
                maxattr: family.maxattr,
                handler,
            },
            GFP_KERNEL,
        )?;
        let inner = NonNull::new(KBox::into_raw(inner)).ok_or(ENOMEM)?;
        // SAFETY: `inner` is a valid, exclusively owned allocation that stays
        // in place until `drop`, with its family, ops and policy tables set
        // up above.
        let ret = unsafe { bindings::genl_register_family((*inner.as_ptr()).family.get()) };
        if let Err(e) = to_result(ret) {
            // SAFETY: Registration failed, so the core keeps no pointer to
            // `inner`: take it back and free it.
            drop(unsafe { KBox::from_raw(inner.as_ptr()) });
            return Err(e);
        }
        // INVARIANT: `inner` comes from `KBox::into_raw`, and its family is
        // registered.
        Ok(Self { inner })
    }
}

impl<T: Handler> Drop for Registration<T> {
    /// Unregisters the family. Sleeps: it waits for the requests in flight.
    fn drop(&mut self) {
        let inner = self.inner.as_ptr();
        // SAFETY: By the type invariant the family is registered. Unregistering
        // takes the core's `cb_lock` for writing, so it waits for every
        // `doit` in flight, and no new one starts afterwards.
        unsafe { bindings::genl_unregister_family((*inner).family.get()) };
        // SAFETY: `inner` comes from `KBox::into_raw` (type invariant), and
        // the core no longer refers to it.
        drop(unsafe { KBox::from_raw(inner) });
    }
}

/// The `doit` of every command of a [`Registration<T>`].
///
/// # Safety
///
/// Called by the generic netlink core only, with the request skb and a valid
/// `info` whose `family` is the family of a live `Registration<T>`.
unsafe extern "C" fn doit_callback<T: Handler>(
    _skb: *mut bindings::sk_buff,
    info: *mut bindings::genl_info,
) -> core::ffi::c_int {
    // SAFETY: The core passes a valid `info` for the duration of the call.
    let family = unsafe { (*info).family };
    // SAFETY: `family` is the first field of a `#[repr(C)] Registered<T>`,
    // which stays alive while its family is registered, that is, while any
    // `doit` of it runs (see `Registration::drop`).
    let registered = unsafe { &*family.cast::<Registered<T>>() };
    // INVARIANT: The core passes the `genl_info` of this `doit`, whose
    // attribute table it sized by the family's `maxattr` (or left NULL for
    // a family without attributes) and validated against the command's
    // policy, and whose `extack` is valid.
    let info = Info {
        raw: info,
        maxattr: registered.maxattr,
        _lifetime: PhantomData,
    };
    match registered.handler.doit(&info) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// A request to a generic netlink family, borrowed for the duration of
/// [`Handler::doit`].
///
/// # Invariants
///
/// `raw` is the valid `genl_info` of the running `doit`: its attribute table
/// is NULL (the family has `maxattr == 0`) or has `maxattr + 1` entries, each
/// NULL or an attribute that passed the command's policy, and its `extack`
/// is valid.
pub struct Info<'a> {
    raw: *mut bindings::genl_info,
    maxattr: u16,
    _lifetime: PhantomData<&'a bindings::genl_info>,
}

impl<'a> Info<'a> {
    /// The command of the request.
    pub fn cmd(&self) -> u8 {
        // SAFETY: By the type invariant, `raw` and its `genlhdr` are valid.
        unsafe { (*(*self.raw).genlhdr).cmd }
    }

    /// The port id of the sender, as the netlink core recorded it.
    pub fn snd_portid(&self) -> u32 {
        // SAFETY: By the type invariant, `raw` is valid.
        unsafe { (*self.raw).snd_portid }
    }

    /// Attribute `attr` of the request, if present.
    pub fn attr(&self, attr: u16) -> Option<Attr<'a>> {
        if attr > self.maxattr {
            return None;
        }
        // SAFETY: By the type invariant, `raw` is valid.
        let attrs = unsafe { (*self.raw).attrs };
        if attrs.is_null() {
            // A family without attributes: the core parses none.
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
    unsafe fn from_raw(nla: NonNull<bindings::nlattr>) -> Self {
        // INVARIANT: The caller guarantees the invariants.
        Self {
            nla,
            _lifetime: PhantomData,
        }
    }

    /// The payload (`nla_data()`, `nla_len()`).
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
    pub fn nul_string(&self) -> Result<&'a CStr> {
        let data = self.data();
        let nul = data.iter().position(|&b| b == 0).ok_or(EINVAL)?;
        CStr::from_bytes_with_nul(&data[..=nul]).map_err(|_| EINVAL)
    }

    /// The value of an `NLA_U32` attribute.
    pub fn u32(&self) -> Result<u32> {
        let bytes = self.data().get(..4).ok_or(EINVAL)?;
        Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

impl NetlinkSkBuff {
    /// Allocates a buffer for one generic netlink message with `payload`
    /// bytes of attributes (`genlmsg_new()`). Fails with `EMSGSIZE` when the
    /// message would exceed [`MAX_SKB_SIZE`], and with `ENOMEM`.
    pub fn genlmsg_new(payload: usize, flags: Flags) -> Result<Self> {
        if payload > MAX_SKB_SIZE - GENL_HDRLEN - 2 * NLMSG_HDRLEN {
            return Err(EMSGSIZE);
        }
        // SAFETY: `genlmsg_new()` may be called with any flags; `payload` is
        // small enough for its `int` arithmetic. It returns NULL on failure.
        let skb = unsafe { bindings::genlmsg_new(payload, flags.as_raw()) };
        // SAFETY: A non-NULL result is a new skb that nothing else has.
        Ok(unsafe { Self::from_raw(NonNull::new(skb).ok_or(ENOMEM)?) })
    }

    /// Starts the reply to `info` with command `cmd`
    /// (`genlmsg_put_reply()`): the headers carry the request's sequence
    /// number, the requester's port id, and the family's id and version.
    pub fn genlmsg_put_reply(self, info: &Info<'_>, cmd: u8) -> Result<GenlMsg> {
        // SAFETY: The skb is ours, and `info` is a valid `genl_info` whose
        // `family` is registered.
        let hdr = unsafe {
            bindings::genlmsg_put_reply(self.as_raw(), info.raw, (*info.raw).family, 0, cmd)
        };
        if hdr.is_null() {
            return Err(EMSGSIZE);
        }
        // INVARIANT: `hdr` is the user header of the message just started.
        Ok(GenlMsg { skb: self, hdr })
    }
}

/// A generic netlink message being built in a [`NetlinkSkBuff`].
///
/// # Invariants
///
/// `hdr` points to the user header (after `genlmsghdr`) of the last message
/// started in `skb`.
pub struct GenlMsg {
    skb: NetlinkSkBuff,
    hdr: *mut c_void,
}

impl GenlMsg {
    /// Appends a string attribute, NUL included (`nla_put_string()`).
    pub fn put_string(&mut self, attr: u16, value: &CStr) -> Result {
        self.put(attr, value.as_bytes_with_nul())
    }

    /// Appends a 32-bit unsigned attribute (`nla_put_u32()`).
    pub fn put_u32(&mut self, attr: u16, value: u32) -> Result {
        self.put(attr, &value.to_ne_bytes())
    }

    /// Appends an attribute (`nla_put()`). Fails with `EMSGSIZE`, leaving
    /// the message as it was, when `data` is longer than an attribute can
    /// say ([`MAX_ATTR_PAYLOAD`]) or does not fit in the buffer.
    fn put(&mut self, attr: u16, data: &[u8]) -> Result {
        if data.len() > MAX_ATTR_PAYLOAD || nla_total_size(data.len()) > self.skb.tailroom() {
            return Err(EMSGSIZE);
        }
        // SAFETY: The skb is ours, with room for the attribute (checked
        // above); `nla_put()` copies `data.len()` bytes, which fit its `int`
        // and the 16-bit `nla_len`, from `data`.
        to_result(unsafe {
            bindings::nla_put(
                self.skb.as_raw(),
                attr.into(),
                data.len() as i32,
                data.as_ptr().cast(),
            )
        })
    }

    /// Ends the message (`genlmsg_end()`) and sends it to the requester of
    /// `info` (`genlmsg_reply()`).
    pub fn reply(self, info: &Info<'_>) -> Result {
        let GenlMsg { skb, hdr } = self;
        // SAFETY: By the type invariant, `hdr` is the user header of the
        // message in `skb`.
        unsafe { bindings::genlmsg_end(skb.as_raw(), hdr) };
        // SAFETY: `genlmsg_reply()` takes over the skb in every case; `info`
        // is valid.
        to_result(unsafe { bindings::genlmsg_reply(skb.into_raw(), info.raw) })
    }
}
