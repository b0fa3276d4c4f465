// SPDX-License-Identifier: GPL-2.0

//! Network namespaces: the namespace a request came from, a counted
//! reference to it, and state that a module keeps in every namespace.
//!
//! A module that serves userspace in every network namespace keeps its
//! state per namespace, the way C code does with `register_pernet_subsys()`
//! and `net_generic()`: an [`Operations`] implementation creates the state
//! of a namespace when the namespace appears ([`Operations::init`]), the
//! state is dropped when the namespace goes (or when the registration
//! does), and [`Registration::state`] finds the state of a namespace. A
//! raw netlink unit keeps its kernel socket there, as rtnetlink does; a
//! generic netlink family its data.
//!
//! A [`Namespace`] is borrowed from the context that has it: the request of
//! a generic netlink command ([`crate::net::netlink::Info::net`]), a dump
//! ([`crate::net::netlink::Dump::net`]), a copied raw netlink message
//! ([`crate::net::raw_netlink::MessageCopy::net`], which holds a [`NetRef`]
//! for that), or the initial namespace ([`Namespace::init_ns`]).
//!
//! Upstream has no such abstraction yet (Linux 7.x); the names follow the
//! C ones (`pernet_operations`, `net_generic()`, `get_net_track()`), and
//! `Namespace` / `init_ns()` those of the Rust-for-Linux `rust` branch.
//!
//! C headers: [`include/net/net_namespace.h`](srctree/include/net/net_namespace.h),
//! [`include/net/netns/generic.h`](srctree/include/net/netns/generic.h).

use crate::{
    alloc::{flags::GFP_KERNEL, KBox},
    bindings,
    error::{code::*, to_result, Error, Result},
    types::Opaque,
};
use core::{
    ffi::{c_int, c_uint},
    marker::PhantomData,
    ops::Deref,
    ptr::{self, NonNull},
    sync::atomic::{AtomicBool, AtomicPtr, Ordering},
};

/// A network namespace (`struct net`), borrowed.
///
/// # Invariants
///
/// The wrapped `struct net` is valid for the lifetime of the reference, and
/// its pernet initialisation ran or is running (it is never a namespace
/// being dismantled: no borrow of one is handed out).
#[repr(transparent)]
pub struct Namespace(Opaque<bindings::net>);

// SAFETY: A `struct net` may be read from any thread; the only operations
// exposed take references that are valid on any thread.
unsafe impl Sync for Namespace {}

impl Namespace {
    /// Creates a reference from a raw pointer.
    ///
    /// # Safety
    ///
    /// `net` must satisfy the type invariants for `'a`.
    #[inline]
    pub(crate) unsafe fn from_raw<'a>(net: *mut bindings::net) -> &'a Self {
        // SAFETY: `Namespace` is a transparent wrapper of `struct net`, and
        // the caller guarantees that `net` is valid for `'a`.
        unsafe { &*net.cast() }
    }

    /// The initial network namespace (`init_net`), which lives forever.
    #[inline]
    pub fn init_ns() -> &'static Self {
        // SAFETY: `init_net` is set up before any module or initcall that
        // networking code runs in, and never dismantled.
        unsafe { Self::from_raw(ptr::addr_of_mut!(bindings::init_net)) }
    }

    /// The C `struct net`.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::net {
        self.0.get()
    }

    /// Whether this is the initial network namespace.
    #[inline]
    pub fn is_init(&self) -> bool {
        self == Self::init_ns()
    }

    /// Takes a counted reference (`get_net_track()`), for a namespace that
    /// is known to be alive: a request's, whose sender holds one.
    ///
    /// # Safety
    ///
    /// The namespace's reference count must not be zero: it is set up, and
    /// something holds a counted reference for the duration of the call.
    #[inline]
    pub(crate) unsafe fn get(&self) -> NetRef {
        let tracker = Opaque::uninit();
        // SAFETY: The namespace is valid and referenced (the caller's
        // guarantee). `get_net_track()` writes the tracker, and a failed
        // tracker allocation only leaves the reference untracked.
        unsafe { bindings::get_net_track(self.as_raw(), tracker.get(), GFP_KERNEL.as_raw()) };
        // INVARIANT: We took a counted reference, tracked by `tracker`.
        NetRef {
            net: NonNull::from(self).cast(),
            tracker,
        }
    }
}

impl PartialEq for Namespace {
    /// Whether both are the same namespace (`net_eq()`).
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.as_raw(), other.as_raw())
    }
}

impl Eq for Namespace {}

/// A counted reference to a network [`Namespace`] (`get_net_track()`),
/// dropped with `put_net_track()`: the namespace is not dismantled, and no
/// [`Operations::init`] state of it dropped by the namespace going, while
/// this lives. On a kernel with `CONFIG_NET_NS_REFCNT_TRACKER`, each one is
/// tracked with the stack that took it.
///
/// # Invariants
///
/// We hold a counted reference on `net`, tracked by `tracker`.
pub struct NetRef {
    net: NonNull<bindings::net>,
    tracker: Opaque<bindings::netns_tracker>,
}

// SAFETY: A reference may be dropped on any thread (`put_net()` defers the
// dismantling to a workqueue).
unsafe impl Send for NetRef {}

// SAFETY: Shared references only give `&Namespace`, which is `Sync`.
unsafe impl Sync for NetRef {}

impl Deref for NetRef {
    type Target = Namespace;

    fn deref(&self) -> &Namespace {
        // SAFETY: By the type invariant, the reference keeps the namespace
        // valid, set up and not dismantled as long as `self` lives.
        unsafe { Namespace::from_raw(self.net.as_ptr()) }
    }
}

impl Drop for NetRef {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant, we hold the reference that
        // `tracker` tracks; it is given up exactly once, here.
        unsafe { bindings::put_net_track(self.net.as_ptr(), self.tracker.get()) };
    }
}

/// State kept in every network namespace: what [`Subsys::register`] needs.
///
/// The implementing type is the registration's data. A `static` [`Subsys`]
/// of it registers it: the C callbacks (`pernet_operations`) get the
/// namespace only, so they find the registration through that static,
/// which [`Operations::subsys`] names.
pub trait Operations: Send + Sync + Sized + 'static {
    /// What every namespace gets. Dropped when the namespace goes (before
    /// the namespace is freed, as a C `exit` callback runs), or when the
    /// registration is dropped, whichever comes first.
    type State: Send + Sync;

    /// The static that registers this type.
    fn subsys() -> &'static Subsys<Self>;

    /// Creates the state of namespace `net`: for every namespace that
    /// exists when the registration is made, then for every new one.
    ///
    /// A failure fails the registration (every state created so far is
    /// dropped) or, for a namespace created later, the creation of the
    /// namespace (`unshare(CLONE_NEWNET)` gets the error). May sleep.
    fn init(&self, net: &Namespace) -> Result<Self::State>;
}

/// Per-namespace operations (`struct pernet_operations`), declared as a
/// `static` and registered with [`Subsys::register`] (ours).
///
/// The state of each namespace lives in the namespace's generic area
/// (`net_generic()`, at the id the core gives this subsystem) as a pointer
/// to a box, set once `init` has created it.
///
/// # Examples
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use kernel::net::namespace::{Namespace, Operations, Subsys};
///
/// struct Counter {
///     created: AtomicU32,
/// }
///
/// impl Operations for Counter {
///     type State = u32;
///
///     fn subsys() -> &'static Subsys<Self> {
///         &COUNTER
///     }
///
///     fn init(&self, _net: &Namespace) -> Result<u32> {
///         Ok(self.created.fetch_add(1, Ordering::Relaxed))
///     }
/// }
///
/// static COUNTER: Subsys<Counter> = Subsys::new();
///
/// let registration = COUNTER.register(Counter { created: AtomicU32::new(0) })?;
/// // The initial namespace got its state at once.
/// assert!(registration.state(Namespace::init_ns()).is_some());
/// assert!(registration.created.load(Ordering::Relaxed) >= 1);
/// // One registration at a time.
/// assert_eq!(
///     COUNTER.register(Counter { created: AtomicU32::new(0) }).err(),
///     Some(EBUSY)
/// );
/// drop(registration);
/// // Every state was dropped; the static can be registered again.
/// let again = COUNTER.register(Counter { created: AtomicU32::new(0) })?;
/// drop(again);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// - While `registered` is true, exactly one [`Registration`] owns the
///   static, and `data` points to its data (a leaked `KBox<T>`).
/// - While `ops` is registered with the core, its `init` and `exit` are
///   `init_callback::<T>` and `exit_callback::<T>`, its `id` points to `id`
///   and its `size` is that of a pointer, and the slot of every namespace
///   (`net_generic(net, id)`) is an `AtomicPtr<T::State>`: NULL, or a
///   leaked `KBox<T::State>` that `init_callback` stored.
pub struct Subsys<T: Operations> {
    ops: Opaque<bindings::pernet_operations>,
    id: Opaque<c_uint>,
    registered: AtomicBool,
    data: AtomicPtr<T>,
}

// SAFETY: The C parts are only written by the one registration (claimed
// atomically) before they are shared, and read by the core under its own
// locks; `data` is an atomic.
unsafe impl<T: Operations> Sync for Subsys<T> {}

impl<T: Operations> Subsys<T> {
    /// An unregistered subsystem, for a `static`.
    pub const fn new() -> Self {
        Self {
            ops: Opaque::uninit(),
            id: Opaque::new(0),
            registered: AtomicBool::new(false),
            data: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Registers the operations with `data` (`register_pernet_subsys()`):
    /// `data.init()` runs for every namespace there is, before this returns,
    /// and for every namespace created from then on, until the
    /// registration is dropped.
    ///
    /// Fails with `EBUSY` if the static is registered already, and with
    /// the error of an `init`.
    pub fn register(&'static self, data: T) -> Result<Registration<T>> {
        if self.registered.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        let data = match KBox::new(data, GFP_KERNEL) {
            Ok(data) => KBox::into_raw(data),
            Err(e) => {
                self.registered.store(false, Ordering::Release);
                return Err(e.into());
            }
        };
        self.data.store(data, Ordering::Release);
        // SAFETY: All-zeroes is a valid `pernet_operations` (no callbacks),
        // and the static is ours (claimed above): nothing reads it until it
        // is registered below.
        unsafe {
            let ops = self.ops.get();
            ops.write(core::mem::zeroed());
            (*ops).init = Some(init_callback::<T>);
            (*ops).exit = Some(exit_callback::<T>);
            (*ops).id = self.id.get();
            (*ops).size = core::mem::size_of::<AtomicPtr<T::State>>();
        }
        // SAFETY: `ops` is a valid, fully initialised `pernet_operations` in
        // a static, which stays registered until `Registration::drop`
        // unregisters it.
        let registered = to_result(unsafe { bindings::register_pernet_subsys(self.ops.get()) });
        if let Err(e) = registered {
            // The core called `exit` for every namespace whose `init`
            // succeeded: no state is left.
            self.release();
            return Err(e);
        }
        // INVARIANT: We claimed the static, published `data` and registered
        // `ops` as the invariants describe.
        Ok(Registration {
            subsys: self,
            _data: PhantomData,
        })
    }

    /// Frees the data and gives up the claim, once `ops` is not registered.
    fn release(&self) {
        let data = self.data.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: `data` came from `KBox::into_raw()` in `register`, and no
        // callback can read it any more: the operations are not registered.
        drop(unsafe { KBox::from_raw(data) });
        self.registered.store(false, Ordering::Release);
    }

    /// The slot of `net`'s state: `None` if the operations have no area in
    /// `net` yet (a namespace that is being set up, and whose turn has not
    /// come).
    ///
    /// # Safety
    ///
    /// The operations must be registered, and `net` valid and not
    /// dismantled for `'a`.
    unsafe fn slot<'a>(&self, net: *mut bindings::net) -> Option<&'a AtomicPtr<T::State>> {
        // SAFETY: `net` is valid, and `id` is the registered operations'
        // (the caller's guarantee). The helper checks `id` against the
        // size of the namespace's generic array.
        let area = unsafe { bindings::net_generic_checked(net, *self.id.get()) };
        // SAFETY: A non-NULL area at `id` is the one the core allocated for
        // these operations (zeroed before `init` ran), freed only after
        // their `exit` ran for `net`, which is not before `'a`: by the type
        // invariant, an `AtomicPtr<T::State>`.
        (!area.is_null()).then(|| unsafe { &*area.cast() })
    }
}

impl<T: Operations> Default for Subsys<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The `init` callback of `Subsys<T>`: creates the namespace's state.
///
/// # Safety
///
/// Called by the core, with the operations of `T::subsys()` registered, for
/// a namespace being set up.
unsafe extern "C" fn init_callback<T: Operations>(net: *mut bindings::net) -> c_int {
    let subsys = T::subsys();
    // SAFETY: The operations are registered (the caller's guarantee), so by
    // the type invariant `data` points to the registration's data, which
    // is freed only after they are unregistered.
    let data = unsafe { &*subsys.data.load(Ordering::Acquire) };
    // SAFETY: The core calls `init` with a valid namespace being set up.
    let net = unsafe { Namespace::from_raw(net) };
    // SAFETY: The operations are registered and `net` is being set up.
    let Some(slot) = (unsafe { subsys.slot(net.as_raw()) }) else {
        // The core assigns the area before it calls `init`.
        return EINVAL.to_errno();
    };
    // The box first, `init` last: nothing may fail once `init` has made
    // something that userspace can reach (a kernel socket), or a failed
    // module load would leave userspace holding a reference on a module
    // that is freed.
    let state = match KBox::<T::State>::new_uninit(GFP_KERNEL) {
        Ok(uninit) => uninit,
        Err(e) => return Error::from(e).to_errno(),
    };
    let state = match data.init(net) {
        Ok(init) => KBox::write(state, init),
        Err(e) => return e.to_errno(),
    };
    slot.store(KBox::into_raw(state), Ordering::Release);
    0
}

/// The `exit` callback of `Subsys<T>`: drops the namespace's state. It
/// never makes a [`Namespace`] of the namespace going away.
///
/// # Safety
///
/// Called by the core, with the operations of `T::subsys()` registered,
/// for a namespace whose `init` succeeded, once.
unsafe extern "C" fn exit_callback<T: Operations>(net: *mut bindings::net) {
    // SAFETY: The operations are registered and `net` is valid; its area
    // is freed after this returns.
    let Some(slot) = (unsafe { T::subsys().slot(net) }) else {
        return;
    };
    let state = slot.swap(ptr::null_mut(), Ordering::AcqRel);
    if !state.is_null() {
        // SAFETY: `init_callback` stored a leaked box; it was taken out of
        // the slot just now, so it is freed once. Nothing borrows it: a
        // borrow (`Registration::state`) needs the registration, which is
        // not being dropped, or this is its drop, and a live namespace, which
        // this one is not any more.
        drop(unsafe { KBox::from_raw(state) });
    }
}

/// A registration of per-namespace [`Operations`], from
/// [`Subsys::register`]: unregistered on drop (`unregister_pernet_subsys()`),
/// which drops the state of every namespace, then the data.
///
/// # Invariants
///
/// `subsys` is registered, owned by this registration (see [`Subsys`]).
pub struct Registration<T: Operations> {
    subsys: &'static Subsys<T>,
    _data: PhantomData<T>,
}

impl<T: Operations> Registration<T> {
    /// The state of namespace `net`; `None` before its `init` has run
    /// (a namespace that already existed, during [`Subsys::register`]).
    ///
    /// The state lives as long as both borrows: the registration is not
    /// dropped meanwhile, and a namespace that can be borrowed is not
    /// being dismantled.
    #[inline]
    pub fn state<'a>(&'a self, net: &'a Namespace) -> Option<&'a T::State> {
        // SAFETY: By the type invariant, the operations are registered; by
        // the invariant of `Namespace`, `net` is valid and not dismantled
        // while borrowed.
        let state = unsafe { self.subsys.slot(net.as_raw()) }?.load(Ordering::Acquire);
        // SAFETY: A non-NULL slot holds a box that `exit_callback` frees
        // only when the namespace is dismantled (it is borrowed: it is not)
        // or the operations are unregistered (the registration is borrowed:
        // it is not dropped).
        (!state.is_null()).then(|| unsafe { &*state })
    }
}

impl<T: Operations> Deref for Registration<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariants, `data` is the registration's data,
        // freed only when the registration is dropped.
        unsafe { &*self.subsys.data.load(Ordering::Acquire) }
    }
}

impl<T: Operations> Drop for Registration<T> {
    /// Unregisters the operations: the state of every namespace is dropped
    /// before this returns. Sleeps.
    fn drop(&mut self) {
        // SAFETY: By the type invariant, the operations are registered, by
        // this registration alone.
        unsafe { bindings::unregister_pernet_subsys(self.subsys.ops.get()) };
        self.subsys.release();
    }
}
