// SPDX-License-Identifier: GPL-2.0

//! Raw netlink: a kernel socket for a protocol unit, and the messages it
//! receives and sends.
//!
//! A module that serves a netlink unit creates a [`Socket`] with an [`Input`]
//! implementation. Every datagram that userspace sends to the unit reaches
//! [`Input::input`] as a [`RecvSkBuff`], whose [`messages`] are iterated with
//! every length checked. Replies are built in a [`NetlinkSkBuff`] and sent
//! with [`SocketRef::unicast`], or through [`Replies`], which can coalesce
//! them; acks and errors with [`Message::ack`]. A [`Message`] can be copied
//! ([`MessageCopy`]) for answering later, from another thread; both are
//! [`Received`] messages.
//!
//! The socket may have multicast groups ([`Config::groups`]): a message for
//! their listeners goes out with [`SocketRef::broadcast`], when
//! [`SocketRef::has_listeners`].
//!
//! A unit is served in the initial network namespace by one [`Socket`], or
//! in every namespace by [`Sockets`]: one kernel socket per namespace,
//! created when the namespace appears and released when it goes, as
//! rtnetlink does ([`crate::net::namespace`]). A userspace socket reaches
//! the kernel socket of its own namespace only, so replies and broadcasts
//! never leave it; a [`MessageCopy`] holds a reference to the requester's
//! namespace, whose socket [`SocketsRegistration::socket`] finds.
//!
//! Upstream has no raw netlink abstraction: this module is ours, named so
//! that it does not collide with upstream's generic netlink one
//! ([`crate::net::netlink`]), whose [`NetlinkSkBuff`] it shares.
//!
//! C headers: [`include/linux/netlink.h`](srctree/include/linux/netlink.h),
//! [`include/net/netlink.h`](srctree/include/net/netlink.h).
//!
//! [`messages`]: RecvSkBuff::messages

use crate::{
    alloc::{flags::GFP_KERNEL, Flags, KBox},
    bindings,
    error::{code::*, to_result, Error, Result},
    net::namespace::{self, Namespace, NetRef, Operations, Subsys},
    net::netlink::NetlinkSkBuff,
    str::CStr,
    sync::Arc,
    types::Opaque,
    ThisModule,
};
use core::{
    ffi::{c_int, c_void},
    mem::size_of,
    ops::Deref,
    ptr,
    ptr::NonNull,
};

/// Alignment of netlink messages and of their payload (`NLMSG_ALIGNTO`).
pub const NLMSG_ALIGNTO: usize = bindings::NLMSG_ALIGNTO as usize;

/// Rounds `len` up to the netlink alignment (`NLMSG_ALIGN()`).
///
/// `len` must be below `usize::MAX - NLMSG_ALIGNTO`; lengths read from the
/// wire are `u32`, so they always are.
///
/// # Examples
///
/// ```
/// use kernel::net::raw_netlink::{nlmsg_align, NLMSG_HDRLEN};
///
/// assert_eq!(nlmsg_align(0), 0);
/// assert_eq!(nlmsg_align(13), 16);
/// assert_eq!(NLMSG_HDRLEN, 16);
/// ```
#[inline]
pub const fn nlmsg_align(len: usize) -> usize {
    (len + NLMSG_ALIGNTO - 1) & !(NLMSG_ALIGNTO - 1)
}

/// Length of the netlink message header, padded (`NLMSG_HDRLEN`).
pub const NLMSG_HDRLEN: usize = nlmsg_align(size_of::<bindings::nlmsghdr>());

/// Control message: nothing (`NLMSG_NOOP`).
pub const NLMSG_NOOP: u16 = bindings::NLMSG_NOOP as u16;
/// Control message: an error or an acknowledgement (`NLMSG_ERROR`).
pub const NLMSG_ERROR: u16 = bindings::NLMSG_ERROR as u16;
/// Control message: end of a multipart message (`NLMSG_DONE`).
pub const NLMSG_DONE: u16 = bindings::NLMSG_DONE as u16;
/// Control message: data lost (`NLMSG_OVERRUN`).
pub const NLMSG_OVERRUN: u16 = bindings::NLMSG_OVERRUN as u16;
/// The first message type that is not reserved for control messages
/// (`NLMSG_MIN_TYPE`).
pub const NLMSG_MIN_TYPE: u16 = bindings::NLMSG_MIN_TYPE as u16;

/// Flag: the message is a request (`NLM_F_REQUEST`).
pub const NLM_F_REQUEST: u16 = bindings::NLM_F_REQUEST as u16;
/// Flag: the sender asks for an acknowledgement (`NLM_F_ACK`).
pub const NLM_F_ACK: u16 = bindings::NLM_F_ACK as u16;
/// Flag of an `NLMSG_ERROR`: the request is not copied in full
/// (`NLM_F_CAPPED`).
pub const NLM_F_CAPPED: u16 = bindings::NLM_F_CAPPED as u16;

/// Payload size of an `NLMSG_ERROR` whose request is capped to its header:
/// `struct nlmsgerr`.
pub const NLMSGERR_SIZE: usize = size_of::<bindings::nlmsgerr>();

/// A copy of a netlink message header (`struct nlmsghdr`).
#[derive(Clone, Copy)]
pub struct Header {
    /// Length of the message, header included (`nlmsg_len`).
    pub len: u32,
    /// Message type (`nlmsg_type`).
    pub ty: u16,
    /// Flags (`nlmsg_flags`).
    pub flags: u16,
    /// Sequence number (`nlmsg_seq`).
    pub seq: u32,
    /// Port id the sender wrote (`nlmsg_pid`); see [`RecvSkBuff::portid`].
    pub pid: u32,
}

impl Header {
    #[inline]
    fn to_raw(self) -> bindings::nlmsghdr {
        bindings::nlmsghdr {
            nlmsg_len: self.len,
            nlmsg_type: self.ty,
            nlmsg_flags: self.flags,
            nlmsg_seq: self.seq,
            nlmsg_pid: self.pid,
        }
    }
}

/// Handles the datagrams sent to a kernel netlink [`Socket`].
///
/// The implementing type is the socket's data: [`Socket::new`] takes it, and
/// every call gets a reference to it. Data shared with other code, such as
/// a queue that a kernel thread drains, goes in an [`Arc`], which implements
/// `Input` when its content does.
pub trait Input: Send + Sync + 'static {
    /// Handles one datagram.
    ///
    /// Runs synchronously in the sender's context, inside its `sendmsg()`,
    /// and may sleep. The netlink core frees `skb` as soon as this returns:
    /// copy out whatever must outlive the call ([`Message::copy`]).
    fn input(&self, skb: &RecvSkBuff);
}

impl<T: Input> Input for Arc<T> {
    fn input(&self, skb: &RecvSkBuff) {
        T::input(self, skb)
    }
}

/// A kernel netlink socket, borrowed: what replies are sent through.
///
/// # Invariants
///
/// The wrapped `struct sock` is a kernel netlink socket created by
/// `__netlink_kernel_create()`, valid for the lifetime of the reference.
#[repr(transparent)]
pub struct SocketRef(Opaque<bindings::sock>);

// SAFETY: `netlink_unicast()`, the only operation exposed, may be called on a
// kernel netlink socket from any thread, concurrently.
unsafe impl Sync for SocketRef {}

impl SocketRef {
    /// Creates a reference from a raw pointer.
    ///
    /// # Safety
    ///
    /// `sk` must be a kernel netlink socket that stays valid for `'a`.
    #[inline]
    pub(crate) unsafe fn from_raw<'a>(sk: *mut bindings::sock) -> &'a Self {
        // SAFETY: `SocketRef` is a transparent wrapper of `struct sock`, and
        // the caller guarantees that `sk` is valid for `'a`.
        unsafe { &*sk.cast() }
    }

    #[inline]
    fn as_raw(&self) -> *mut bindings::sock {
        self.0.get()
    }

    /// Sends `skb` to the userspace socket bound to `portid`
    /// (`nlmsg_unicast()`).
    ///
    /// Never blocks, and may be called in any context: if the receiver's
    /// buffer is full, the netlink core drops the message, returns `EAGAIN`,
    /// and reports `ENOBUFS` to the receiver on its next `recvmsg()`.
    /// `ECONNREFUSED` means that the receiver is gone.
    #[inline]
    pub fn unicast(&self, skb: NetlinkSkBuff, portid: u32) -> Result {
        // SAFETY: By the type invariant, `self` is a valid kernel netlink
        // socket. `netlink_unicast()` takes over the skb in every case, so
        // ownership passes to it through `into_raw()`; as `nlmsg_unicast()`
        // does, it does not wait for room (`MSG_DONTWAIT`).
        let sent = unsafe {
            bindings::netlink_unicast(
                self.as_raw(),
                skb.into_raw(),
                portid,
                bindings::MSG_DONTWAIT as c_int,
            )
        };
        // The bytes sent, or an error.
        to_result(sent.min(0))
    }

    /// Whether a userspace socket listens to multicast group `group`
    /// (`netlink_has_listeners()`); `false` for a group the socket does not
    /// have (0, or above [`Config::groups`]). The core keeps one set of
    /// groups per unit, for every namespace: `true` may mean a listener in
    /// another namespace only, to which [`SocketRef::broadcast`] sends
    /// nothing. A hint that spares building unwanted messages.
    #[inline]
    pub fn has_listeners(&self, group: u32) -> bool {
        // SAFETY: By the type invariant, `self` is a valid kernel netlink
        // socket; the core checks `group` against the unit's groups.
        unsafe { bindings::netlink_has_listeners(self.as_raw(), group) != 0 }
    }

    /// Sends `skb` to every listener of multicast group `group` but
    /// `portid` (`nlmsg_multicast()`: `netlink_broadcast()`, with the group
    /// recorded, so that the listeners' `recvmsg()` reports it in
    /// `nl_groups`, as it does for the core's own notifications). Never
    /// blocks with `GFP_ATOMIC`: a
    /// listener whose buffer is full loses the message and gets `ENOBUFS`
    /// on its next `recvmsg()`, unless it set `NETLINK_NO_ENOBUFS`.
    /// `ESRCH` means that nobody listens.
    pub fn broadcast(&self, skb: NetlinkSkBuff, portid: u32, group: u32, flags: Flags) -> Result {
        // SAFETY: By the type invariant, `self` is a valid kernel netlink
        // socket. `nlmsg_multicast()` takes over the skb in every case and
        // ignores a group that the unit does not have.
        to_result(unsafe {
            bindings::nlmsg_multicast(self.as_raw(), skb.into_raw(), portid, group, flags.as_raw())
        })
    }
}

impl SocketRef {
    /// Reports `err` to every listener of multicast group `group` but
    /// `portid` (`netlink_set_err()`): their next `recvmsg()` fails with it.
    /// For a message to the group that could not be built, so that its
    /// listeners know they missed one; `ENOBUFS` spares the listeners that
    /// set `NETLINK_NO_ENOBUFS`.
    pub fn set_err(&self, portid: u32, group: u32, err: Error) {
        // SAFETY: By the type invariant, `self` is a valid kernel netlink
        // socket; the core ignores a group that the unit does not have.
        unsafe { bindings::netlink_set_err(self.as_raw(), portid, group, err.to_errno()) };
    }
}

/// How a raw netlink [`Socket`] is set up (`struct netlink_kernel_cfg`).
#[derive(Clone, Copy)]
pub struct Config {
    /// The protocol unit, below `MAX_LINKS` (32).
    pub unit: i32,
    /// How many multicast groups the unit has: userspace may join groups
    /// `1..=groups`. At most 32.
    pub groups: u32,
    /// Whether sockets without `CAP_NET_ADMIN` may join the groups
    /// (`NL_CFG_F_NONROOT_RECV`).
    pub nonroot_recv: bool,
}

/// A kernel netlink socket for one protocol unit, in one network namespace
/// (`netlink_kernel_create()`), released on drop: made by [`Socket::new`]
/// in the initial namespace, or by [`Sockets`] in every namespace.
///
/// The unit must not be registered by anybody else: a kernel socket of
/// another module or of code built into the kernel serves it (in any
/// namespace), or it is `NETLINK_USERSOCK` (2), which the kernel registers at
/// boot for userspace-to-userspace messages. On such a unit the core would
/// only count the new socket, and the userspace sockets of the unit would
/// not pin the module. (A check, then the creation: a module that takes the
/// unit in between wins, and ours only bumps its count.)
///
/// A socket in a namespace other than the initial one must be released
/// before the namespace is freed (kernel sockets hold no reference to their
/// namespace, so that a namespace can go): only [`Sockets`] creates one,
/// and releases it in the namespace's `exit`.
///
/// Dropping the socket waits for every input callback in flight: when
/// `drop` returns, no code of [`Input`] runs any more, and none will, even
/// for a sender that found the socket just before it went. The netlink core
/// calls a function built into the kernel, which calls [`Input::input`]
/// only inside an SRCU read-side critical section; `drop` unpublishes the
/// data and waits for that section with `synchronize_srcu()`.
///
/// # Examples
///
/// ```
/// use kernel::net::raw_netlink::{Config, Input, Received, RecvSkBuff, Socket};
///
/// struct Quiet;
///
/// impl Input for Quiet {
///     fn input(&self, skb: &RecvSkBuff) {
///         for msg in skb.messages() {
///             pr_info!("type {} from port {}\n", msg.ty(), skb.portid());
///         }
///     }
/// }
///
/// # // SAFETY: Code built into the kernel, as this example is, has no module:
/// # // its `THIS_MODULE` is NULL.
/// # static THIS_MODULE: kernel::ThisModule =
/// #     unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) };
/// // Unit 30 is unused in the test kernel.
/// let config = Config { unit: 30, groups: 1, nonroot_recv: false };
/// let socket = Socket::new(&config, &THIS_MODULE, Quiet)?;
/// assert!(!socket.has_listeners(1));
/// // A second socket for the same unit is refused,
/// assert_eq!(Socket::new(&config, &THIS_MODULE, Quiet).err(), Some(EBUSY));
/// // and so is NETLINK_USERSOCK, registered at boot.
/// let usersock = Config { unit: 2, ..config };
/// assert_eq!(Socket::new(&usersock, &THIS_MODULE, Quiet).err(), Some(EBUSY));
/// drop(socket);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// - `sk` is a kernel netlink socket created by `__netlink_kernel_create()`
///   with `netlink_input()` as its input, owned by this object.
/// - `handler` comes from `KBox::into_raw()`, is published in
///   `sk->sk_user_data` for `netlink_input()`, and is freed only after it
///   was unpublished and `netlink_input_sync()` returned.
pub struct Socket<T: Input> {
    sk: NonNull<bindings::sock>,
    handler: NonNull<Published<T>>,
}

/// What a [`Socket`] publishes for `netlink_input()` (`rust/helpers/netlink.c`),
/// which calls `input` with a pointer to this.
#[repr(C)]
struct Published<T> {
    /// First, as the C side expects.
    input: unsafe extern "C" fn(*mut c_void, *mut bindings::sk_buff),
    data: T,
}

// SAFETY: The socket may be used and released from any thread, and `T` is
// `Send + Sync` (required by `Input`).
unsafe impl<T: Input> Send for Socket<T> {}

// SAFETY: `Socket` only exposes `&SocketRef`, which is `Sync`.
unsafe impl<T: Input> Sync for Socket<T> {}

impl<T: Input> Socket<T> {
    /// Creates the kernel socket of the netlink unit of `config`, with
    /// `data` as the input handler.
    ///
    /// Fails with `EINVAL` for a unit outside `0..MAX_LINKS` or more than 32
    /// groups, with `EBUSY`
    /// when the unit is registered by anybody else, or when the C function
    /// returns no socket (memory ran out, or the namespace has a kernel
    /// socket for the unit already), and with `ENOMEM`.
    ///
    /// Userspace can send to the unit as soon as this returns, so a module
    /// creates its socket as the last step of its initialisation that can
    /// fail: a module whose `init` fails is freed at once, whatever
    /// userspace sockets of the unit took a reference on it meanwhile.
    pub fn new(config: &Config, module: &'static ThisModule, data: T) -> Result<Self> {
        Self::create(Namespace::init_ns(), config, module, data)
    }

    /// Creates the socket in `net`.
    ///
    /// The caller must release the socket (drop it) before `net` is
    /// dismantled: in the `exit` of per-namespace operations, or never for
    /// the initial namespace.
    fn create(
        net: &Namespace,
        config: &Config,
        module: &'static ThisModule,
        data: T,
    ) -> Result<Self> {
        let unit = config.unit;
        if !(0..bindings::MAX_LINKS as i32).contains(&unit) || config.groups > 32 {
            return Err(EINVAL);
        }
        // SAFETY: `unit` is within `0..MAX_LINKS`, the size of `nl_table`,
        // and `module` is valid.
        if unsafe { bindings::netlink_unit_taken(unit, module.as_ptr()) } {
            return Err(EBUSY);
        }
        let handler = KBox::new(
            Published {
                input: input_callback::<T>,
                data,
            },
            GFP_KERNEL,
        )?;
        let mut cfg = bindings::netlink_kernel_cfg {
            groups: config.groups,
            flags: if config.nonroot_recv {
                bindings::NL_CFG_F_NONROOT_RECV
            } else {
                0
            },
            input: Some(bindings::netlink_input),
            ..Default::default()
        };
        // SAFETY: `net` is valid, and the socket is released before it is
        // dismantled (the caller's duty). `cfg` is valid for the duration of
        // the call (the C function copies what it keeps), and `module` is
        // this module's `THIS_MODULE`, which `netlink_create()` pins for
        // every userspace socket of the unit (the unit was not registered,
        // or by this module, which the core recorded).
        let sk = unsafe {
            bindings::__netlink_kernel_create(net.as_raw(), unit, module.as_ptr(), &mut cfg)
        };
        // The handler is freed on failure, as it was never published.
        let sk = NonNull::new(sk).ok_or(EBUSY)?;
        let handler = NonNull::from(KBox::leak(handler));
        // SAFETY: `sk` is valid. Publication pairs with `srcu_dereference()`
        // in `netlink_input()`: until now it saw NULL and answered "try
        // again".
        unsafe { bindings::netlink_set_input(sk.as_ptr(), handler.as_ptr().cast()) };
        // INVARIANT: `sk` was just created with `netlink_input()`, and
        // `handler`, from `KBox::leak()`, is published in its
        // `sk_user_data`.
        Ok(Self { sk, handler })
    }
}

impl<T: Input> Deref for Socket<T> {
    type Target = SocketRef;

    fn deref(&self) -> &SocketRef {
        // SAFETY: By the type invariants, `sk` is a kernel netlink socket that
        // lives as long as `self`.
        unsafe { SocketRef::from_raw(self.sk.as_ptr()) }
    }
}

impl<T: Input> Drop for Socket<T> {
    /// Releases the socket. Sleeps: it waits for the input callbacks in
    /// flight.
    fn drop(&mut self) {
        let sk = self.sk.as_ptr();
        // SAFETY: `sk` is valid. Unpublish the handler first: input that
        // arrives from now on finds NULL and gets "try again".
        unsafe { bindings::netlink_set_input(sk, ptr::null_mut()) };
        // SAFETY: No lock is held, and this may sleep. When it returns, every
        // `netlink_input()` that found the handler has returned from it.
        unsafe { bindings::netlink_input_sync() };
        // SAFETY: `sk` was created by `__netlink_kernel_create()` and is
        // released exactly once, here. A sender that still holds it finds no
        // handler.
        unsafe { bindings::netlink_kernel_release(sk) };
        // SAFETY: `handler` came from `KBox::leak()` (type invariant) and is
        // no longer reachable: it was unpublished, and nothing that found it
        // before still runs.
        drop(unsafe { KBox::from_raw(self.handler.as_ptr()) });
    }
}

/// The input handler of a unit served in every network namespace by
/// [`Sockets`]: each namespace's socket gets a clone of the registration's.
pub trait PernetInput: Input + Clone {
    /// The static that serves the unit (the C callbacks of namespaces
    /// find the registration there).
    fn sockets() -> &'static Sockets<Self>;
}

/// A netlink unit served in every network namespace (ours), declared as a
/// `static` and registered with [`Sockets::register`]: one kernel
/// [`Socket`] per namespace, created for every namespace there is and for
/// every new one, and released when its namespace goes, or when the
/// registration is dropped. As `rtnetlink` does in C with
/// `register_pernet_subsys()`.
///
/// # Examples
///
/// ```
/// use kernel::net::namespace::Namespace;
/// use kernel::net::raw_netlink::{Config, Input, PernetInput, RecvSkBuff, Sockets};
///
/// #[derive(Clone)]
/// struct Quiet;
///
/// impl Input for Quiet {
///     fn input(&self, _skb: &RecvSkBuff) {}
/// }
///
/// impl PernetInput for Quiet {
///     fn sockets() -> &'static Sockets<Self> {
///         &SOCKETS
///     }
/// }
///
/// static SOCKETS: Sockets<Quiet> = Sockets::new();
///
/// # // SAFETY: Code built into the kernel, as this example is, has no module:
/// # // its `THIS_MODULE` is NULL.
/// # static THIS_MODULE: kernel::ThisModule =
/// #     unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) };
/// // Unit 30 is unused in the test kernel.
/// let config = Config { unit: 30, groups: 1, nonroot_recv: false };
/// let sockets = SOCKETS.register(&config, &THIS_MODULE, Quiet)?;
/// let socket = sockets.socket(Namespace::init_ns()).ok_or(EINVAL)?;
/// assert!(!socket.has_listeners(1));
/// // NETLINK_USERSOCK is refused, in the first namespace already.
/// drop(sockets);
/// let usersock = Config { unit: 2, ..config };
/// assert_eq!(SOCKETS.register(&usersock, &THIS_MODULE, Quiet).err(), Some(EBUSY));
/// # Ok::<(), Error>(())
/// ```
pub struct Sockets<T: PernetInput> {
    subsys: Subsys<Unit<T>>,
}

impl<T: PernetInput> Sockets<T> {
    /// An unregistered unit, for a `static`.
    #[inline]
    pub const fn new() -> Self {
        Self {
            subsys: Subsys::new(),
        }
    }

    /// Serves the unit of `config` in every network namespace, each socket
    /// with a clone of `data` as its input handler.
    ///
    /// Fails as [`Socket::new`] does in any namespace (`EBUSY` for a unit
    /// that somebody else serves), and with `EBUSY` if the static is
    /// registered already. As with [`Socket::new`], userspace can send to
    /// the unit as soon as the first socket exists: register last.
    ///
    /// For code built into the kernel (no module), only the initial
    /// namespace can be served: the unit is then taken by "the kernel" in
    /// every other one.
    pub fn register(
        &'static self,
        config: &Config,
        module: &'static ThisModule,
        data: T,
    ) -> Result<SocketsRegistration<T>> {
        self.subsys.register(Unit {
            config: *config,
            module,
            data,
        })
    }
}

impl<T: PernetInput> Default for Sockets<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The registration data of a [`Sockets`] unit: what each namespace's
/// socket is made of.
pub struct Unit<T: PernetInput> {
    config: Config,
    module: &'static ThisModule,
    data: T,
}

impl<T: PernetInput> Operations for Unit<T> {
    type State = Socket<T>;

    fn subsys() -> &'static Subsys<Self> {
        &T::sockets().subsys
    }

    fn init(&self, net: &Namespace) -> Result<Socket<T>> {
        // The socket is the namespace's state: it is dropped in the
        // namespace's `exit`, before the namespace is freed.
        Socket::create(net, &self.config, self.module, self.data.clone())
    }
}

/// A [`Sockets`] unit being served, from [`Sockets::register`]: every
/// socket is released when this is dropped.
pub type SocketsRegistration<T> = namespace::Registration<Unit<T>>;

impl<T: PernetInput> namespace::Registration<Unit<T>> {
    /// The kernel socket of the unit in `net`: where a reply to a request
    /// from `net` goes. `None` only for a namespace whose socket is being
    /// created.
    #[inline]
    pub fn socket<'a>(&'a self, net: &'a Namespace) -> Option<&'a SocketRef> {
        self.state(net).map(|socket| &**socket)
    }

    /// The input handler the sockets were registered with (each socket has
    /// a clone of it).
    #[inline]
    pub fn data(&self) -> &T {
        &self.data
    }
}

/// The input function of every [`Socket<T>`], called by `netlink_input()`
/// with the handler it found in `sk_user_data`.
///
/// # Safety
///
/// `handler` must be the published [`Published<T>`] of a [`Socket<T>`], called
/// inside the SRCU read-side critical section that keeps it alive, with the
/// skb that the netlink core passed to the kernel socket's input callback.
unsafe extern "C" fn input_callback<T: Input>(handler: *mut c_void, skb: *mut bindings::sk_buff) {
    // SAFETY: The handler is alive for the duration of the call, and
    // nothing mutates it (the caller's guarantee).
    let handler = unsafe { &*handler.cast::<Published<T>>() };
    // SAFETY: The netlink core passes a valid skb, delivered to a kernel
    // socket, which it frees only after the callback returns.
    let skb = unsafe { RecvSkBuff::from_raw(skb) };
    handler.data.input(skb);
}

/// A datagram received by a kernel netlink socket, borrowed for the duration
/// of [`Input::input`].
///
/// # Invariants
///
/// The wrapped `struct sk_buff` is valid for the lifetime of the reference.
/// The netlink core delivered it to a kernel socket's input callback, so
/// `skb->sk` is that kernel socket, `NETLINK_CB(skb)` describes the sender,
/// and nothing modifies its data while it is borrowed.
#[repr(transparent)]
pub struct RecvSkBuff(Opaque<bindings::sk_buff>);

impl RecvSkBuff {
    /// Creates a reference from a raw pointer.
    ///
    /// # Safety
    ///
    /// `skb` must satisfy the type invariants for `'a`.
    #[inline]
    unsafe fn from_raw<'a>(skb: *mut bindings::sk_buff) -> &'a Self {
        // SAFETY: `RecvSkBuff` is a transparent wrapper of `struct sk_buff`,
        // and the caller guarantees that `skb` is valid for `'a`.
        unsafe { &*skb.cast() }
    }

    #[inline]
    fn as_raw(&self) -> *mut bindings::sk_buff {
        self.0.get()
    }

    /// The port id of the sending socket, as recorded by the netlink core
    /// (`NETLINK_CB(skb).portid`).
    ///
    /// Reply to this, not to the `nlmsg_pid` header field, which the sender
    /// wrote and may have forged.
    #[inline]
    pub fn portid(&self) -> u32 {
        // SAFETY: By the type invariant, the skb is valid and its control
        // block is a `struct netlink_skb_parms` filled in by the netlink core.
        unsafe { (*netlink_cb(self.as_raw())).portid }
    }

    /// The kernel socket that received the datagram.
    #[inline]
    pub fn socket(&self) -> &SocketRef {
        // SAFETY: By the type invariant, `skb->sk` is the receiving kernel
        // socket, which holds the skb, so it outlives the borrow of `self`.
        unsafe { SocketRef::from_raw((*self.as_raw()).sk) }
    }

    /// The bytes of the datagram: the linear part of the skb.
    ///
    /// Netlink allocates the skbs of userspace datagrams linear, so this is
    /// the whole datagram.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let skb = self.as_raw();
        // SAFETY: By the type invariant, the skb is valid and not modified.
        let (data, headlen) = unsafe { ((*skb).data, (*skb).len.saturating_sub((*skb).data_len)) };
        if data.is_null() || headlen == 0 {
            return &[];
        }
        // SAFETY: `skb->data` points to `skb_headlen(skb)` initialised bytes,
        // which stay unmodified while `self` is borrowed.
        unsafe { core::slice::from_raw_parts(data, headlen as usize) }
    }

    /// Iterates over the netlink messages of the datagram.
    ///
    /// Like `netlink_rcv_skb()`, the iteration stops at the first header
    /// that is too short or claims more bytes than remain: the rest of the
    /// datagram is garbage and is skipped.
    #[inline]
    pub fn messages(&self) -> Messages<'_> {
        Messages {
            skb: self,
            rest: self.data(),
        }
    }
}

/// Iterator over the messages of a [`RecvSkBuff`], from
/// [`RecvSkBuff::messages`].
pub struct Messages<'a> {
    skb: &'a RecvSkBuff,
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    #[inline]
    fn next(&mut self) -> Option<Message<'a>> {
        if self.rest.len() < NLMSG_HDRLEN {
            return None;
        }
        // SAFETY: `rest` holds at least `NLMSG_HDRLEN` bytes, and any bit
        // pattern is a valid `nlmsghdr`. The read makes no alignment
        // assumption.
        let header =
            unsafe { ptr::read_unaligned(self.rest.as_ptr().cast::<bindings::nlmsghdr>()) };
        let len = header.nlmsg_len as usize;
        if len < NLMSG_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let (bytes, rest) = self.rest.split_at(len);
        // The last message of a datagram may come without its padding.
        self.rest = rest.get(nlmsg_align(len) - len..).unwrap_or(&[]);
        // INVARIANT: `bytes` is the `len = nlmsg_len >= NLMSG_HDRLEN` bytes
        // of the message inside the skb's data, and `header` a copy of its
        // first bytes.
        Some(Message {
            skb: self.skb,
            header,
            bytes,
        })
    }
}

/// One netlink message of a received datagram: a checked header and its
/// payload.
///
/// # Invariants
///
/// `bytes` is the whole message, header included, inside the data of `skb`,
/// `header` is a copy of its header, and `bytes.len() == header.nlmsg_len >=
/// NLMSG_HDRLEN`.
pub struct Message<'a> {
    skb: &'a RecvSkBuff,
    header: bindings::nlmsghdr,
    bytes: &'a [u8],
}

/// A message received from userspace, borrowed ([`Message`]) or copied
/// ([`MessageCopy`]): what a reply and an acknowledgement need of it.
pub trait Received {
    /// A copy of the header.
    fn header(&self) -> Header;

    /// The payload: the bytes after the header, without padding.
    fn payload(&self) -> &[u8];

    /// The port id of the sender, as the netlink core recorded it
    /// (`NETLINK_CB(skb).portid`).
    ///
    /// Reply to this, not to the `nlmsg_pid` header field, which the sender
    /// wrote and may have forged.
    fn portid(&self) -> u32;

    /// Whether the sender asked for error messages without a copy of the
    /// request (`NETLINK_CAP_ACK`), as `netlink_ack()` reads it.
    fn caps_acks(&self) -> bool;

    /// Tells the sender that an answer to it was lost: its next `recvmsg()`
    /// fails with `ENOBUFS`. What `netlink_ack()` does when it cannot
    /// allocate its answer; [`Replies::put_ack`] does it too.
    fn report_loss(&self);

    /// The message type (`nlmsg_type`).
    #[inline]
    fn ty(&self) -> u16 {
        self.header().ty
    }

    /// The message flags (`nlmsg_flags`).
    #[inline]
    fn flags(&self) -> u16 {
        self.header().flags
    }

    /// The sequence number chosen by the sender (`nlmsg_seq`).
    #[inline]
    fn seq(&self) -> u32 {
        self.header().seq
    }

    /// Whether the sender asked for an acknowledgement (`NLM_F_ACK`).
    #[inline]
    fn wants_ack(&self) -> bool {
        self.flags() & NLM_F_ACK != 0
    }

    /// Whether `netlink_rcv_skb()` would hand the message to its callback:
    /// it has `NLM_F_REQUEST`, and its type is not below `NLMSG_MIN_TYPE`
    /// (0x10), the types that netlink reserves for control messages.
    #[inline]
    fn is_request(&self) -> bool {
        self.flags() & NLM_F_REQUEST != 0 && self.ty() >= NLMSG_MIN_TYPE
    }
}

impl<'a> Message<'a> {
    /// Sends an `NLMSG_ERROR` for this message to its sender
    /// (`netlink_ack()`): an acknowledgement for `Ok(())`, an error
    /// otherwise, with `msg` as the extended-ack message (`NL_SET_ERR_MSG`)
    /// when the receiving socket enabled `NETLINK_EXT_ACK`.
    ///
    /// An error carries a copy of the request unless the sender set
    /// `NETLINK_CAP_ACK`. If the answer cannot be allocated, the core
    /// reports `ENOBUFS` to the sender instead.
    pub fn ack(&self, result: Result, msg: Option<&CStr>) {
        // SAFETY: All-zeroes is the empty extended ack, as C's `= {}`.
        let mut extack: bindings::netlink_ext_ack = unsafe { core::mem::zeroed() };
        if let Some(msg) = msg {
            extack._msg = msg.as_char_ptr();
        }
        let err = match result {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
        // SAFETY: By the type invariants, `skb` is the received skb and
        // `bytes` a complete message inside it, which `netlink_ack()` only
        // reads (`nlmsg_len` bytes, checked against the datagram). `extack`
        // and the string it points to outlive the call, which copies them.
        unsafe {
            bindings::netlink_ack(
                self.skb.as_raw(),
                self.bytes.as_ptr().cast_mut().cast(),
                err,
                &extack,
            )
        };
    }

    /// Keeps what an answer needs beyond the input callback, after which
    /// the netlink core lets go of the skb: for answering later, from
    /// another thread. Allocates nothing: the header is copied, and the
    /// payload stays in the datagram, on which the copy holds a reference
    /// (`skb_get()`), as a C module that queues requests does. So a copy
    /// keeps its whole datagram until it is dropped.
    ///
    /// Fails with `EINVAL` if the netlink core recorded no sender (it
    /// always does).
    pub fn copy(&self) -> Result<MessageCopy> {
        // The core always sets the sender: no socket is not ours to answer.
        let sender = NonNull::new(self.sender()).ok_or(EINVAL)?;
        let receiver = self.skb.socket().as_raw();
        // SAFETY: The kernel socket that received the skb is alive during
        // the input callback, and so is its namespace, which is the
        // sender's: a userspace sender holds a counted reference on it.
        let net = unsafe { Namespace::from_raw(bindings::sock_net(receiver)) };
        // SAFETY: As above, the namespace is set up and referenced.
        let net = unsafe { net.get() };
        // SAFETY: `sender` is the sender's socket, valid during the input
        // callback (see `Message::sender`), and `receiver` the kernel socket
        // that holds the skb; the references taken keep them valid until
        // `MessageCopy::drop`. The skb is valid during the callback (type
        // invariant of `RecvSkBuff`); the reference taken keeps it, and its
        // data, which nobody modifies once it was delivered, until then.
        unsafe {
            bindings::sock_hold(sender.as_ptr());
            bindings::sock_hold(receiver);
            bindings::skb_get(self.skb.as_raw());
        }
        let skb = NonNull::from(self.skb).cast::<bindings::sk_buff>();
        let payload = self.payload();
        // INVARIANT: We hold a reference on `sender`, on `skb` and on the
        // kernel socket that the skb is charged to; `payload` is inside the
        // skb's data.
        Ok(MessageCopy {
            header: self.header(),
            skb,
            payload: NonNull::from(payload),
            portid: self.portid(),
            sender,
            net,
        })
    }

    /// The sender's socket (`NETLINK_CB(skb).sk`): valid while the input
    /// callback runs, as the sender waits in its `sendmsg()`, but not
    /// referenced by the skb.
    #[inline]
    fn sender(&self) -> *mut bindings::sock {
        // SAFETY: By the type invariant of `RecvSkBuff`, the skb is valid and
        // its control block was filled in by the netlink core, which sets
        // `sk` to the sending socket before calling the input callback.
        unsafe { (*netlink_cb(self.skb.as_raw())).sk }
    }
}

impl Received for Message<'_> {
    #[inline]
    fn header(&self) -> Header {
        Header {
            len: self.header.nlmsg_len,
            ty: self.header.nlmsg_type,
            flags: self.header.nlmsg_flags,
            seq: self.header.nlmsg_seq,
            pid: self.header.nlmsg_pid,
        }
    }

    #[inline]
    fn payload(&self) -> &[u8] {
        // By the type invariant, the message holds at least a header.
        self.bytes.get(NLMSG_HDRLEN..).unwrap_or(&[])
    }

    #[inline]
    fn portid(&self) -> u32 {
        self.skb.portid()
    }

    #[inline]
    fn caps_acks(&self) -> bool {
        // SAFETY: The sender's socket is a userspace netlink socket, valid
        // while the callback runs (see `Message::sender`), which the core
        // always sets.
        unsafe { bindings::netlink_caps_acks(self.sender()) }
    }

    #[inline]
    fn report_loss(&self) {
        // SAFETY: As above.
        unsafe { bindings::netlink_report_loss(self.sender()) }
    }
}

/// A received message kept beyond the input callback ([`Message::copy`]),
/// for code that answers after the netlink core let go of the skb, such as a
/// kernel thread. It holds a reference on the datagram, whose data holds
/// the payload, on the kernel socket that the datagram is charged to (its
/// destructor uncharges it: the socket must outlive it, even if its owner
/// released it meanwhile), on the sender's socket, as what `netlink_ack()`
/// reads and reports lives there, and on the namespace the message came
/// from ([`MessageCopy::net`]): while it lives, the namespace, and so the
/// socket that [`Sockets`] keeps there, stays.
///
/// # Invariants
///
/// - `skb` is the datagram the message came in, delivered to a kernel
///   socket (`skb->sk`); this object holds a reference on both
///   (`skb_get()`, `sock_hold()`).
/// - `payload` is the message's payload, inside the skb's data, which
///   nobody modifies.
/// - `sender` is the userspace netlink socket that sent the message, on
///   which this object holds a reference (`sock_hold()`).
pub struct MessageCopy {
    header: Header,
    skb: NonNull<bindings::sk_buff>,
    payload: NonNull<[u8]>,
    portid: u32,
    sender: NonNull<bindings::sock>,
    net: NetRef,
}

impl MessageCopy {
    /// The network namespace the message came from, that of the kernel
    /// socket that received it: the answer goes through that namespace's
    /// socket ([`SocketsRegistration::socket`]).
    #[inline]
    pub fn net(&self) -> &Namespace {
        &self.net
    }
}

// SAFETY: The references on the skb and the sockets may be used and
// dropped on any thread (atomic counts); the payload is only read.
unsafe impl Send for MessageCopy {}

// SAFETY: Shared references only read the payload and the socket's flags,
// or report a loss (`WRITE_ONCE()` and a wakeup), which are safe from any
// thread.
unsafe impl Sync for MessageCopy {}

impl Drop for MessageCopy {
    #[inline]
    fn drop(&mut self) {
        let skb = self.skb.as_ptr();
        // SAFETY: By the type invariant, we hold a reference on the skb and
        // on its kernel socket, and one on `sender`. The skb goes first: its
        // destructor uncharges the kernel socket, which our reference keeps.
        unsafe {
            let receiver = (*skb).sk;
            bindings::consume_skb(skb);
            bindings::sock_put(receiver);
            bindings::sock_put(self.sender.as_ptr());
        }
    }
}

impl Received for MessageCopy {
    #[inline]
    fn header(&self) -> Header {
        self.header
    }

    #[inline]
    fn payload(&self) -> &[u8] {
        // SAFETY: By the type invariant, the payload is inside the data of
        // the skb we hold, which nobody modifies.
        unsafe { self.payload.as_ref() }
    }

    #[inline]
    fn portid(&self) -> u32 {
        self.portid
    }

    #[inline]
    fn caps_acks(&self) -> bool {
        // SAFETY: By the type invariant, `sender` is a userspace netlink
        // socket on which we hold a reference.
        unsafe { bindings::netlink_caps_acks(self.sender.as_ptr()) }
    }

    #[inline]
    fn report_loss(&self) {
        // SAFETY: As above.
        unsafe { bindings::netlink_report_loss(self.sender.as_ptr()) }
    }
}

/// The largest buffer a [`NetlinkSkBuff`] may have, in bytes: a quarter of
/// what a C `int` holds, so that the skb code's own additions (alignment,
/// `struct skb_shared_info`) cannot overflow it. A netlink receiver's buffer
/// is far smaller anyway.
pub const MAX_SKB_SIZE: usize = (i32::MAX / 4) as usize;

/// Room a message with `payload` bytes takes, header and padding included
/// (`nlmsg_total_size()`), if it is within [`MAX_SKB_SIZE`].
#[inline]
fn nlmsg_total_size(payload: usize) -> Result<usize> {
    match payload.checked_add(NLMSG_HDRLEN + NLMSG_ALIGNTO) {
        Some(size) if size <= MAX_SKB_SIZE => Ok(nlmsg_align(NLMSG_HDRLEN + payload)),
        _ => Err(EMSGSIZE),
    }
}

/// The payload of the message that `nlh` heads (`nlmsg_data()`): the
/// header is `NLMSG_HDRLEN` bytes, padding included.
#[inline]
fn nlmsg_data(nlh: NonNull<bindings::nlmsghdr>) -> *mut u8 {
    // The payload follows the header inside the message's buffer.
    nlh.as_ptr().cast::<u8>().wrapping_add(NLMSG_HDRLEN)
}

/// The netlink core's record of a datagram in the skb's control block
/// (`NETLINK_CB(skb)`). The pointer is valid as long as `skb` is.
#[inline]
pub(crate) fn netlink_cb(skb: *mut bindings::sk_buff) -> *mut bindings::netlink_skb_parms {
    // `NETLINK_CB(skb)` is `skb->cb`, seen as a `struct netlink_skb_parms`;
    // no memory is read here.
    skb.wrapping_byte_add(core::mem::offset_of!(bindings::sk_buff, cb))
        .cast()
}

/// Raw netlink messages in a [`NetlinkSkBuff`].
///
/// Every length is checked here, in Rust, before C sees it: against the
/// room left in the buffer and against the width of the C field or
/// parameter it goes into, so that no size arithmetic in C can overflow.
///
/// # Examples
///
/// ```
/// use kernel::net::netlink::NetlinkSkBuff;
///
/// let mut skb = NetlinkSkBuff::nlmsg_new(5, GFP_KERNEL)?;
/// skb.put(42, 1, 0x10, 0, b"hello")?;
/// // Allocation rounds up, but not to a page: this one does not fit.
/// assert_eq!(skb.put(42, 2, 0x10, 0, &[0; 4096]), Err(EMSGSIZE));
/// // Until the buffer grows.
/// skb.grow(16 + 4096, GFP_KERNEL)?;
/// skb.put(42, 2, 0x10, 0, &[0; 4096])?;
/// // Sizes that C's `int` arithmetic would overflow are refused up front.
/// assert_eq!(NetlinkSkBuff::nlmsg_new(usize::MAX, GFP_KERNEL).err(), Some(EMSGSIZE));
/// assert_eq!(skb.grow(i32::MAX as usize, GFP_KERNEL), Err(EMSGSIZE));
/// # Ok::<(), Error>(())
/// ```
impl NetlinkSkBuff {
    /// Allocates a buffer with room for one message of `payload` bytes
    /// (`nlmsg_new()`). Fails with `EMSGSIZE` when the message would exceed
    /// [`MAX_SKB_SIZE`], and with `ENOMEM`.
    #[inline]
    pub fn nlmsg_new(payload: usize, flags: Flags) -> Result<Self> {
        let size = nlmsg_total_size(payload)?;
        // SAFETY: `__alloc_skb()` may be called with any flags, and `size`
        // is within `MAX_SKB_SIZE`. It returns NULL on failure. This is
        // `nlmsg_new()`: `alloc_skb(nlmsg_total_size(payload), flags)`.
        let skb = unsafe {
            bindings::__alloc_skb(size as u32, flags.as_raw(), 0, bindings::NUMA_NO_NODE)
        };
        // SAFETY: The skb was just allocated, and nothing else has it.
        Ok(unsafe { Self::from_raw(NonNull::new(skb).ok_or(ENOMEM)?) })
    }

    /// Reserves a message (`nlmsg_put()`) with a payload of `len` bytes,
    /// whose padding is zeroed, and returns its header. Fails with
    /// `EMSGSIZE`, leaving the buffer as it was, when it does not fit.
    #[inline]
    fn nlmsg_put(
        &mut self,
        portid: u32,
        seq: u32,
        ty: u16,
        flags: u16,
        len: usize,
    ) -> Result<NonNull<bindings::nlmsghdr>> {
        if nlmsg_total_size(len)? > self.tailroom() {
            return Err(EMSGSIZE);
        }
        // The total size fits in `MAX_SKB_SIZE`, so the length fits an `int`.
        let len = len as i32;
        // SAFETY: By the type invariant, the skb is valid and ours, with room
        // for the message (checked above, which is all that `nlmsg_put()`
        // adds). `__nlmsg_put()` reserves `nlmsg_total_size(len)` bytes,
        // writes the header and zeroes the padding.
        let nlh = unsafe {
            bindings::__nlmsg_put(self.as_raw(), portid, seq, ty.into(), len, flags.into())
        };
        NonNull::new(nlh).ok_or(EMSGSIZE)
    }

    /// Appends a message: `nlmsg_put()` and a copy of `payload`.
    ///
    /// `portid` goes into `nlmsg_pid`: by convention the port id of the
    /// requester that this answers. Fails with `EMSGSIZE`, leaving the
    /// buffer as it was, when the message does not fit.
    ///
    /// `nlmsg_len` is exact, `NLMSG_LENGTH(payload.len())`, as `nlmsg_put()`
    /// writes it: the payload is raw bytes, so the receiver learns its length
    /// from the header. (`nlmsg_end()`, made for attribute payloads, would
    /// round it up to 4 bytes.) The padding after the payload is zeroed.
    #[inline]
    pub fn put(&mut self, portid: u32, seq: u32, ty: u16, flags: u16, payload: &[u8]) -> Result {
        let nlh = self.nlmsg_put(portid, seq, ty, flags, payload.len())?;
        // SAFETY: `nlh` starts a message with room for `payload.len()`
        // payload bytes, which cannot overlap `payload`, a slice the caller
        // owns.
        unsafe { ptr::copy_nonoverlapping(payload.as_ptr(), nlmsg_data(nlh), payload.len()) };
        Ok(())
    }

    /// Appends the `NLMSG_ERROR` that `netlink_ack()` would send for
    /// `request`, with no extended ack: an acknowledgement for `Ok(())`, an
    /// error otherwise. An acknowledgement copies the request's header only
    /// (`NLM_F_CAPPED`); an error copies the whole request, unless the
    /// sender set `NETLINK_CAP_ACK`.
    ///
    /// For code that answers after the request skb is gone, such as a kernel
    /// thread; an input callback uses [`Message::ack`].
    pub fn put_ack(&mut self, request: &impl Received, result: Result) -> Result {
        let error = result.err().map_or(0, |e| e.to_errno());
        let capped = error == 0 || request.caps_acks();
        let (copied, flags) = if capped {
            (&[][..], NLM_F_CAPPED)
        } else {
            (request.payload(), 0)
        };
        let len = NLMSGERR_SIZE
            .checked_add(nlmsg_align(copied.len()))
            .ok_or(EMSGSIZE)?;
        let nlh = self.nlmsg_put(request.portid(), request.seq(), NLMSG_ERROR, flags, len)?;
        let errmsg = bindings::nlmsgerr {
            error,
            msg: request.header().to_raw(),
        };
        // SAFETY: The payload of the message just put has room for a
        // `struct nlmsgerr` followed by the copy and its padding (checked
        // above). The writes make no alignment assumption.
        unsafe {
            let data = nlmsg_data(nlh);
            ptr::write_unaligned(data.cast(), errmsg);
            let copy = data.add(NLMSGERR_SIZE);
            ptr::copy_nonoverlapping(copied.as_ptr(), copy, copied.len());
            ptr::write_bytes(
                copy.add(copied.len()),
                0,
                nlmsg_align(copied.len()) - copied.len(),
            );
        }
        Ok(())
    }

    /// How many more bytes fit (`skb_tailroom()`).
    #[inline]
    pub fn tailroom(&self) -> usize {
        // SAFETY: By the type invariant, the skb is valid.
        unsafe { bindings::skb_tailroom(self.as_raw()) as usize }
    }

    /// Makes room for `extra` more bytes at the end (`pskb_expand_head()`):
    /// the data moves to a larger buffer. Fails with `EMSGSIZE` past
    /// [`MAX_SKB_SIZE`] and with `ENOMEM`, leaving the buffer as it was.
    pub fn grow(&mut self, extra: usize, flags: Flags) -> Result {
        // SAFETY: By the type invariant, the skb is valid.
        let end = unsafe { bindings::skb_end_offset(self.as_raw()) } as usize;
        if extra > MAX_SKB_SIZE.saturating_sub(end) {
            return Err(EMSGSIZE);
        }
        // SAFETY: By the type invariant, the skb is valid, ours alone (not
        // shared, not cloned) and never sent, as `pskb_expand_head()`
        // requires; `end + extra` is far below `INT_MAX` (checked above). On
        // failure it changes nothing.
        to_result(unsafe {
            bindings::pskb_expand_head(self.as_raw(), 0, extra as i32, flags.as_raw())
        })
    }
}

/// Payload room of a reply datagram that [`Replies`] coalesces into
/// (`NLMSG_DEFAULT_SIZE`): the data of one page, less the skb's own overhead
/// and a message header.
pub const NLMSG_DEFAULT_SIZE: usize = bindings::NLMSG_DEFAULT_SIZE;

/// Replies on their way to userspace: one datagram per message, or
/// coalesced.
///
/// A netlink datagram may carry several messages, and receivers walk them
/// all. With `coalesce` false, [`put`] and [`put_ack`] send every message at
/// once in a datagram of its own, as `netlink_rcv_skb()` does with its acks.
/// With `coalesce` true, consecutive messages to the same port share a
/// datagram, which is sent when the next message does not fit, goes to
/// another port, or on [`flush`]: the receiver then needs one `recvmsg()`
/// for many replies. A coalesced datagram holds at most
/// [`NLMSG_DEFAULT_SIZE`] bytes of messages; a larger message travels
/// alone, as it would without coalescing. So a receiver never needs a
/// larger buffer than for one message or a page. A datagram starts with
/// the room of its first message, as without coalescing (a lone reply costs
/// no more, and a large buffer would only be trimmed again by
/// `netlink_unicast()`), and grows once, to that page's worth, when a
/// message does not fit.
///
/// [`put`] and [`put_ack`] report what happened to their own message only:
/// `ENOMEM` or `EMSGSIZE` when it could not be built, and, without
/// coalescing, the error of sending it. A coalesced datagram that fails to
/// go when a later message pushes it out is the loss of its own receiver,
/// which the netlink core tells (`ENOBUFS`): the later message goes on.
/// Dropping sends what is still pending and ignores errors, like `std`'s
/// `BufWriter`; call [`flush`] to see them.
///
/// Buffers are allocated with the `flags` given to [`Replies::new`]; with
/// `GFP_KERNEL`, [`put`] and [`put_ack`] may sleep.
///
/// # Examples
///
/// ```
/// use kernel::net::raw_netlink::{
///     nlmsg_align, Config, Input, RecvSkBuff, Replies, Socket, NLMSG_DEFAULT_SIZE, NLMSG_HDRLEN,
/// };
///
/// struct Quiet;
///
/// impl Input for Quiet {
///     fn input(&self, _skb: &RecvSkBuff) {}
/// }
///
/// # // SAFETY: Code built into the kernel, as this example is, has no module:
/// # // its `THIS_MODULE` is NULL.
/// # static THIS_MODULE: kernel::ThisModule =
/// #     unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) };
/// let config = Config { unit: 30, groups: 0, nonroot_recv: false };
/// let socket = Socket::new(&config, &THIS_MODULE, Quiet)?;
/// // No userspace socket has port id 0x7fff_fff0.
/// let nobody = 0x7fff_fff0;
///
/// // One datagram per message: sent, and refused, at once.
/// let mut replies = Replies::new(&socket, false, GFP_KERNEL);
/// assert_eq!(replies.put(nobody, 1, 0x10, 0, b"hello"), Err(ECONNREFUSED));
///
/// // Coalesced: nothing is sent until the datagram is flushed.
/// let mut replies = Replies::new(&socket, true, GFP_KERNEL);
/// replies.put(nobody, 1, 0x10, 0, b"hello")?;
/// replies.put(nobody, 2, 0x10, 0, b"again")?;
/// assert_eq!(replies.pending(), 2 * nlmsg_align(NLMSG_HDRLEN + 5));
/// assert_eq!(replies.flush(), Err(ECONNREFUSED));
/// assert_eq!(replies.flush(), Ok(()));
///
/// // A datagram grows to `NLMSG_DEFAULT_SIZE` (about a page, whatever the
/// // page size); the message that does not fit starts the next one, even
/// // though sending the full one failed.
/// let size = NLMSG_HDRLEN + 1024;
/// let fit = NLMSG_DEFAULT_SIZE / size;
/// for seq in 0..fit {
///     replies.put(nobody, seq as u32, 0x10, 0, &[0; 1024])?;
/// }
/// assert_eq!(replies.pending(), fit * size);
/// replies.put(nobody, fit as u32, 0x10, 0, &[0; 1024])?;
/// assert_eq!(replies.pending(), size);
/// assert_eq!(replies.flush(), Err(ECONNREFUSED));
/// # Ok::<(), Error>(())
/// ```
///
/// [`put`]: Replies::put
/// [`put_ack`]: Replies::put_ack
/// [`flush`]: Replies::flush
pub struct Replies<'a> {
    socket: &'a SocketRef,
    coalesce: bool,
    flags: Flags,
    pending: Option<Pending>,
}

/// The datagram that [`Replies`] is filling.
struct Pending {
    portid: u32,
    skb: NetlinkSkBuff,
    /// Bytes of the messages put so far.
    used: usize,
}

impl<'a> Replies<'a> {
    /// Replies sent through `socket`, coalesced if `coalesce`, in buffers
    /// allocated with `flags`.
    #[inline]
    pub fn new(socket: &'a SocketRef, coalesce: bool, flags: Flags) -> Self {
        Self {
            socket,
            coalesce,
            flags,
            pending: None,
        }
    }

    /// Adds a message for `portid`, as [`NetlinkSkBuff::put`] builds it.
    #[inline]
    pub fn put(&mut self, portid: u32, seq: u32, ty: u16, flags: u16, payload: &[u8]) -> Result {
        self.add(portid, payload.len(), |skb| {
            skb.put(portid, seq, ty, flags, payload)
        })
    }

    /// Adds the `NLMSG_ERROR` answering `request`, as
    /// [`NetlinkSkBuff::put_ack`] builds it. If it cannot be allocated, the
    /// sender is told (`ENOBUFS`), as `netlink_ack()` does.
    pub fn put_ack(&mut self, request: &impl Received, result: Result) -> Result {
        let copied = match result {
            Err(_) if !request.caps_acks() => nlmsg_align(request.payload().len()),
            _ => 0,
        };
        let added = self.add(
            request.portid(),
            NLMSGERR_SIZE.saturating_add(copied),
            |skb| skb.put_ack(request, result),
        );
        // A failed send is reported by the core already (an overrun), or
        // has nobody to tell (the receiver is gone).
        if added == Err(ENOMEM) {
            request.report_loss();
        }
        added
    }

    /// Sends the pending datagram, if there is one.
    #[inline]
    pub fn flush(&mut self) -> Result {
        match self.pending.take() {
            Some(pending) => self.socket.unicast(pending.skb, pending.portid),
            None => Ok(()),
        }
    }

    /// Bytes of the messages in the datagram being filled: 0 when nothing
    /// is pending.
    pub fn pending(&self) -> usize {
        self.pending.as_ref().map_or(0, |pending| pending.used)
    }

    /// Adds a message of `payload` bytes that `put` writes into an skb.
    #[inline]
    fn add(
        &mut self,
        portid: u32,
        payload: usize,
        put: impl Fn(&mut NetlinkSkBuff) -> Result,
    ) -> Result {
        let size = nlmsg_total_size(payload)?;
        if let Some(pending) = self.pending.as_mut() {
            if pending.portid == portid && pending.put(size, &put, self.flags)? {
                return Ok(());
            }
            // The earlier receiver learns of a failure from the core.
            let _ = self.flush();
        }
        let mut skb = NetlinkSkBuff::nlmsg_new(payload, self.flags)?;
        put(&mut skb)?;
        if !self.coalesce {
            return self.socket.unicast(skb, portid);
        }
        self.pending = Some(Pending {
            portid,
            skb,
            used: size,
        });
        Ok(())
    }
}

impl Pending {
    /// Puts a message of `size` bytes, growing the datagram to a page's
    /// worth if needed (once: after that, whatever is within the budget
    /// fits); `false` when it is full.
    #[inline]
    fn put(
        &mut self,
        size: usize,
        put: impl Fn(&mut NetlinkSkBuff) -> Result,
        flags: Flags,
    ) -> Result<bool> {
        if self.used.saturating_add(size) > NLMSG_DEFAULT_SIZE {
            // Over a page: not even into the slack of a large message's
            // buffer, which `kmalloc()` rounds up.
            return Ok(false);
        }
        let mut result = put(&mut self.skb);
        if result == Err(EMSGSIZE) {
            // To a page's worth of messages (no headroom: the data starts
            // at the head).
            let capacity = self.used + self.skb.tailroom();
            let extra = NLMSG_DEFAULT_SIZE.saturating_sub(capacity);
            if extra > 0 && self.skb.grow(extra, flags).is_ok() {
                result = put(&mut self.skb);
            }
        }
        match result {
            Ok(()) => {
                self.used += size;
                Ok(true)
            }
            Err(e) if e == EMSGSIZE => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Replies<'_> {
    #[inline]
    fn drop(&mut self) {
        // The receiver learns of a lost datagram from the netlink core
        // (`ENOBUFS`); there is nobody else to tell.
        let _ = self.flush();
    }
}
