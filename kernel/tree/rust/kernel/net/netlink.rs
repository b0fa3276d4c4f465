// SPDX-License-Identifier: GPL-2.0

//! Netlink: a kernel socket for a protocol unit, and the messages it receives
//! and sends.
//!
//! A module that serves a netlink unit creates a [`Socket`] with an [`Input`]
//! implementation. Every datagram that userspace sends to the unit reaches
//! [`Input::input`] as a [`RecvSkBuff`], whose [`messages`] are iterated with
//! every length checked. Replies are built in a [`NetlinkSkBuff`] and sent
//! with [`SocketRef::unicast`]; acks and errors with [`Message::ack`].
//!
//! Scope of this slice: one kernel socket in the initial network namespace,
//! unicast only. Names and shapes follow upstream's generic netlink
//! abstraction (`rust/kernel/net/netlink.rs`, Linux 7.3) where they overlap.
//!
//! C headers: [`include/linux/netlink.h`](srctree/include/linux/netlink.h),
//! [`include/net/netlink.h`](srctree/include/net/netlink.h).
//!
//! [`messages`]: RecvSkBuff::messages

use crate::{
    alloc::{flags::GFP_KERNEL, Flags},
    bindings,
    error::{code::*, to_result, Result},
    str::CStr,
    sync::Arc,
    types::{ForeignOwnable, Opaque},
    ThisModule,
};
use core::{ffi::c_void, mem::size_of, ops::Deref, ptr, ptr::NonNull};

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
/// use kernel::net::netlink::{nlmsg_align, NLMSG_HDRLEN};
///
/// assert_eq!(nlmsg_align(0), 0);
/// assert_eq!(nlmsg_align(13), 16);
/// assert_eq!(NLMSG_HDRLEN, 16);
/// ```
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
/// The implementing type is the socket's data: [`Socket::new`] takes it in an
/// [`Arc`], and every call gets a reference to it.
pub trait Input: Send + Sync + Sized + 'static {
    /// Handles one datagram.
    ///
    /// Runs synchronously in the sender's context, inside its `sendmsg()`,
    /// and may sleep. The netlink core frees `skb` as soon as this returns:
    /// copy out whatever must outlive the call.
    fn input(&self, skb: &RecvSkBuff);
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
    unsafe fn from_raw<'a>(sk: *mut bindings::sock) -> &'a Self {
        // SAFETY: `SocketRef` is a transparent wrapper of `struct sock`, and
        // the caller guarantees that `sk` is valid for `'a`.
        unsafe { &*sk.cast() }
    }

    fn as_raw(&self) -> *mut bindings::sock {
        self.0.get()
    }

    /// Sends `skb` to the userspace socket bound to `portid`
    /// (`nlmsg_unicast()`).
    ///
    /// Never blocks: if the receiver's buffer is full, the netlink core drops
    /// the message, returns `EAGAIN`, and reports `ENOBUFS` to the receiver
    /// on its next `recvmsg()`. `ECONNREFUSED` means that the receiver is
    /// gone.
    pub fn unicast(&self, skb: NetlinkSkBuff, portid: u32) -> Result {
        // SAFETY: By the type invariant, `self` is a valid kernel netlink
        // socket. `nlmsg_unicast()` takes over the skb in every case, so
        // ownership passes to it through `into_raw()`.
        to_result(unsafe { bindings::nlmsg_unicast(self.as_raw(), skb.into_raw(), portid) })
    }
}

/// A kernel netlink socket for one protocol unit, in the initial network
/// namespace (`netlink_kernel_create()`), released on drop.
///
/// Every userspace socket of the unit takes a reference on `module`, so the
/// module cannot be unloaded while userspace can still send to it.
///
/// # Examples
///
/// ```
/// use kernel::net::netlink::{Input, RecvSkBuff, Socket};
/// use kernel::sync::Arc;
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
/// let socket = Socket::new(30, &THIS_MODULE, Arc::new(Quiet, GFP_KERNEL)?)?;
/// // A second socket for the same unit is refused.
/// assert!(Socket::new(30, &THIS_MODULE, Arc::new(Quiet, GFP_KERNEL)?).is_err());
/// drop(socket);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// - `sk` is a kernel netlink socket created by `__netlink_kernel_create()`
///   with `input_callback::<T>` as its input, owned by this object.
/// - `data` comes from `Arc::<T>::into_foreign()`, and is published in
///   `sk->sk_user_data` for the input callback. That published reference is
///   owned by this object.
pub struct Socket<T: Input> {
    sk: NonNull<bindings::sock>,
    data: *const c_void,
    _input: core::marker::PhantomData<Arc<T>>,
}

// SAFETY: The socket may be used and released from any thread, and `T` is
// `Send + Sync` (required by `Input`).
unsafe impl<T: Input> Send for Socket<T> {}

// SAFETY: `Socket` only exposes `&SocketRef`, which is `Sync`.
unsafe impl<T: Input> Sync for Socket<T> {}

impl<T: Input> Socket<T> {
    /// Creates the kernel socket of netlink unit `unit`, with `data` as the
    /// input handler.
    ///
    /// Fails with `EINVAL` for a unit outside `0..MAX_LINKS`, and with
    /// `EBUSY` when the C function returns no socket: the unit already has a
    /// kernel socket (or memory ran out).
    pub fn new(unit: i32, module: &'static ThisModule, data: Arc<T>) -> Result<Self> {
        if !(0..bindings::MAX_LINKS as i32).contains(&unit) {
            return Err(EINVAL);
        }
        let mut cfg = bindings::netlink_kernel_cfg {
            input: Some(input_callback::<T>),
            ..Default::default()
        };
        // SAFETY: `init_net` lives forever, `cfg` is valid for the duration
        // of the call (the C function copies what it keeps), and `module` is
        // this module's `THIS_MODULE`, which `netlink_create()` pins for
        // every userspace socket of the unit.
        let sk = unsafe {
            bindings::__netlink_kernel_create(
                ptr::addr_of_mut!(bindings::init_net),
                unit,
                module.as_ptr(),
                &mut cfg,
            )
        };
        let sk = NonNull::new(sk).ok_or(EBUSY)?;
        let data = data.into_foreign();
        // SAFETY: `sk` is valid. Publication pairs with the RCU read side in
        // `input_callback()`: until now the callback saw NULL and answered
        // "try again".
        unsafe { bindings::netlink_set_user_data(sk.as_ptr(), data.cast_mut()) };
        // INVARIANT: `sk` was just created with `input_callback::<T>`, and
        // `data` from `into_foreign()` is published in its `sk_user_data`.
        Ok(Self {
            sk,
            data,
            _input: core::marker::PhantomData,
        })
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
    fn drop(&mut self) {
        let sk = self.sk.as_ptr();
        // SAFETY: `sk` is valid. Unpublish the data first: input that
        // arrives from now on finds NULL and gets "try again".
        unsafe { bindings::netlink_set_user_data(sk, ptr::null_mut()) };
        // SAFETY: No lock is held; this may sleep. After a grace period, no
        // input callback is between reading the pointer and taking its own
        // reference.
        unsafe { bindings::synchronize_rcu() };
        // SAFETY: `data` came from `into_foreign()` (type invariant) and is no
        // longer reachable through `sk_user_data`; this gives back the
        // published reference. Callbacks still running hold their own.
        drop(unsafe { Arc::<T>::from_foreign(self.data) });
        // SAFETY: `sk` was created by `__netlink_kernel_create()` and is
        // released exactly once, here. When a module drops its socket in its
        // exit path, no input can be running: each userspace socket of the
        // unit pins the module, so none exists any more.
        unsafe { bindings::netlink_kernel_release(sk) };
    }
}

/// The `input` function of every [`Socket<T>`].
///
/// # Safety
///
/// Called by the netlink core only (`netlink_unicast_kernel()`), with a valid
/// skb that it owns until this returns and whose `sk` is a kernel socket
/// created by [`Socket::<T>::new`].
unsafe extern "C" fn input_callback<T: Input>(skb: *mut bindings::sk_buff) {
    // SAFETY: The netlink core passes a valid skb, delivered to a kernel
    // socket, which it frees only after we return.
    let skb = unsafe { RecvSkBuff::from_raw(skb) };
    let sk = skb.socket().as_raw();

    // SAFETY: Reads of `sk_user_data` happen under `rcu_read_lock()`; the
    // reference is taken before `rcu_read_unlock()`.
    unsafe { bindings::rcu_read_lock() };
    // SAFETY: `sk` is valid, and the RCU read lock is held.
    let ptr = unsafe { bindings::netlink_user_data(sk) };
    let data = if ptr.is_null() {
        None
    } else {
        // SAFETY: A non-NULL `sk_user_data` of a `Socket<T>` comes from
        // `Arc::<T>::into_foreign()`, and `Socket::drop` gives that reference
        // back only after unpublishing it and waiting for a grace period, so
        // it is alive here. The borrow becomes our own reference.
        Some(Arc::<T>::from(unsafe { Arc::<T>::borrow(ptr) }))
    };
    // SAFETY: Pairs with the `rcu_read_lock()` above.
    unsafe { bindings::rcu_read_unlock() };

    match data {
        Some(data) => data.input(skb),
        // The socket is being created or released: say so instead of
        // dropping the requests silently.
        None => {
            for msg in skb.messages().filter(|msg| !msg.is_control()) {
                msg.ack(
                    Err(EAGAIN),
                    Some(crate::c_str!("netlink unit not ready, try again")),
                );
            }
        }
    }
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
    unsafe fn from_raw<'a>(skb: *mut bindings::sk_buff) -> &'a Self {
        // SAFETY: `RecvSkBuff` is a transparent wrapper of `struct sk_buff`,
        // and the caller guarantees that `skb` is valid for `'a`.
        unsafe { &*skb.cast() }
    }

    fn as_raw(&self) -> *mut bindings::sk_buff {
        self.0.get()
    }

    /// The port id of the sending socket, as recorded by the netlink core
    /// (`NETLINK_CB(skb).portid`).
    ///
    /// Reply to this, not to the `nlmsg_pid` header field, which the sender
    /// wrote and may have forged.
    pub fn portid(&self) -> u32 {
        // SAFETY: By the type invariant, the skb is valid and its control
        // block is a `struct netlink_skb_parms` filled in by the netlink core.
        unsafe { (*bindings::NETLINK_CB(self.as_raw())).portid }
    }

    /// The kernel socket that received the datagram.
    pub fn socket(&self) -> &SocketRef {
        // SAFETY: By the type invariant, `skb->sk` is the receiving kernel
        // socket, which holds the skb, so it outlives the borrow of `self`.
        unsafe { SocketRef::from_raw((*self.as_raw()).sk) }
    }

    /// The bytes of the datagram: the linear part of the skb.
    ///
    /// Netlink allocates the skbs of userspace datagrams linear, so this is
    /// the whole datagram.
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

impl<'a> Message<'a> {
    /// The message type (`nlmsg_type`).
    pub fn ty(&self) -> u16 {
        self.header.nlmsg_type
    }

    /// The message flags (`nlmsg_flags`).
    pub fn flags(&self) -> u16 {
        self.header.nlmsg_flags
    }

    /// The sequence number chosen by the sender (`nlmsg_seq`).
    pub fn seq(&self) -> u32 {
        self.header.nlmsg_seq
    }

    /// A copy of the header.
    pub fn header(&self) -> Header {
        Header {
            len: self.header.nlmsg_len,
            ty: self.header.nlmsg_type,
            flags: self.header.nlmsg_flags,
            seq: self.header.nlmsg_seq,
            pid: self.header.nlmsg_pid,
        }
    }

    /// The payload: the bytes after the header, without padding.
    pub fn payload(&self) -> &'a [u8] {
        // By the type invariant, the message holds at least a header.
        self.bytes.get(NLMSG_HDRLEN..).unwrap_or(&[])
    }

    /// Whether the sender asked for an acknowledgement (`NLM_F_ACK`).
    pub fn wants_ack(&self) -> bool {
        self.flags() & NLM_F_ACK != 0
    }

    /// Whether this is a netlink control message, `NLMSG_NOOP` to
    /// `NLMSG_OVERRUN`, which is never answered.
    pub fn is_control(&self) -> bool {
        (NLMSG_NOOP..=NLMSG_OVERRUN).contains(&self.ty())
    }

    /// Sends an `NLMSG_ERROR` for this message to its sender
    /// (`netlink_ack()`): an acknowledgement for `Ok(())`, an error
    /// otherwise, with `msg` as the extended-ack message (`NL_SET_ERR_MSG`)
    /// when the receiving socket enabled `NETLINK_EXT_ACK`.
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
}

/// A socket buffer for netlink messages that the kernel sends, owned until it
/// is sent.
///
/// # Examples
///
/// ```
/// use kernel::net::netlink::NetlinkSkBuff;
///
/// let mut skb = NetlinkSkBuff::new(5, GFP_KERNEL)?;
/// skb.put(42, 1, 0x10, 0, b"hello")?;
/// // Allocation rounds up, but not to a page: this one does not fit.
/// assert_eq!(skb.put(42, 2, 0x10, 0, &[0; 4096]), Err(EMSGSIZE));
/// // Until the buffer grows.
/// skb.grow(16 + 4096, GFP_KERNEL)?;
/// skb.put(42, 2, 0x10, 0, &[0; 4096])?;
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `skb` points to a valid `struct sk_buff` that this object owns
/// exclusively: allocated by `nlmsg_new()`, neither sent nor freed.
pub struct NetlinkSkBuff {
    skb: NonNull<bindings::sk_buff>,
}

// SAFETY: An skb that nothing else references may be used and freed on any
// thread.
unsafe impl Send for NetlinkSkBuff {}

impl NetlinkSkBuff {
    /// Allocates a buffer with room for one message of `payload` bytes
    /// (`nlmsg_new()`).
    pub fn new(payload: usize, flags: Flags) -> Result<Self> {
        // SAFETY: `nlmsg_new()` may be called with any size and flags; it
        // returns NULL on failure.
        let skb = unsafe { bindings::nlmsg_new(payload, flags.as_raw()) };
        // INVARIANT: The skb was just allocated, and nothing else has it.
        Ok(Self {
            skb: NonNull::new(skb).ok_or(ENOMEM)?,
        })
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
    pub fn put(&mut self, portid: u32, seq: u32, ty: u16, flags: u16, payload: &[u8]) -> Result {
        let len = i32::try_from(payload.len()).map_err(|_| EMSGSIZE)?;
        let skb = self.skb.as_ptr();
        // SAFETY: By the type invariant, `skb` is valid and ours. On success
        // `nlmsg_put()` reserved `nlmsg_total_size(len)` bytes and zeroed the
        // padding; it returns NULL, changing nothing, when they do not fit.
        let nlh = unsafe { bindings::nlmsg_put(skb, portid, seq, ty.into(), len, flags.into()) };
        if nlh.is_null() {
            return Err(EMSGSIZE);
        }
        // SAFETY: `nlh` starts a message with room for `len` payload bytes,
        // which cannot overlap `payload`, a slice the caller owns.
        unsafe {
            ptr::copy_nonoverlapping(
                payload.as_ptr(),
                bindings::nlmsg_data(nlh).cast::<u8>(),
                payload.len(),
            )
        };
        Ok(())
    }

    /// Appends an `NLMSG_ERROR` answering `request`: an acknowledgement for
    /// `Ok(())`, an error otherwise. Only the request's header is copied
    /// (`NLM_F_CAPPED`), as `netlink_ack()` does for acknowledgements.
    ///
    /// For code that answers after the request skb is gone, such as a kernel
    /// thread; an input callback uses [`Message::ack`].
    pub fn put_ack(&mut self, portid: u32, request: &Header, result: Result) -> Result {
        let skb = self.skb.as_ptr();
        let len = NLMSGERR_SIZE as i32;
        // SAFETY: By the type invariant, `skb` is valid and ours; on success
        // `nlmsg_put()` reserved room for a `struct nlmsgerr`.
        let nlh = unsafe {
            bindings::nlmsg_put(
                skb,
                portid,
                request.seq,
                NLMSG_ERROR.into(),
                len,
                NLM_F_CAPPED.into(),
            )
        };
        if nlh.is_null() {
            return Err(EMSGSIZE);
        }
        let errmsg = bindings::nlmsgerr {
            error: result.err().map_or(0, |e| e.to_errno()),
            msg: request.to_raw(),
        };
        // SAFETY: The payload of the message just put has room for a
        // `struct nlmsgerr`; the write makes no alignment assumption.
        unsafe { ptr::write_unaligned(bindings::nlmsg_data(nlh).cast(), errmsg) };
        Ok(())
    }

    /// How many more bytes fit (`skb_tailroom()`).
    pub fn tailroom(&self) -> usize {
        // SAFETY: By the type invariant, the skb is valid.
        unsafe { bindings::skb_tailroom(self.skb.as_ptr()) as usize }
    }

    /// Makes room for `extra` more bytes at the end (`pskb_expand_head()`):
    /// the data moves to a larger buffer. Fails with `ENOMEM`, leaving the
    /// buffer as it was.
    pub fn grow(&mut self, extra: usize, flags: Flags) -> Result {
        let extra = i32::try_from(extra).map_err(|_| ENOMEM)?;
        // SAFETY: By the type invariant, the skb is valid, ours alone (not
        // shared, not cloned) and never sent, as `pskb_expand_head()`
        // requires; on failure it changes nothing.
        to_result(unsafe {
            bindings::pskb_expand_head(self.skb.as_ptr(), 0, extra, flags.as_raw())
        })
    }

    /// Takes ownership of an skb.
    ///
    /// # Safety
    ///
    /// `skb` must be a valid skb for netlink messages that nothing else
    /// references.
    pub(crate) unsafe fn from_raw(skb: NonNull<bindings::sk_buff>) -> Self {
        // INVARIANT: The caller passes a valid skb that is exclusively ours.
        Self { skb }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::sk_buff {
        self.skb.as_ptr()
    }

    /// Gives up ownership of the skb, for a C function that consumes it.
    pub(crate) fn into_raw(self) -> *mut bindings::sk_buff {
        core::mem::ManuallyDrop::new(self).skb.as_ptr()
    }
}

impl Drop for NetlinkSkBuff {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, the skb is ours and was never sent.
        unsafe { bindings::nlmsg_free(self.skb.as_ptr()) };
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
/// An error from sending the pending datagram is returned by the call that
/// sent it, and that call's own message is not added. Dropping sends what is
/// still pending and ignores errors, like `std`'s `BufWriter`; call
/// [`flush`] to see them.
///
/// # Examples
///
/// ```
/// use kernel::net::netlink::{Input, Replies, RecvSkBuff, Socket};
/// use kernel::sync::Arc;
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
/// let socket = Socket::new(30, &THIS_MODULE, Arc::new(Quiet, GFP_KERNEL)?)?;
/// // No userspace socket has port id 0x7fff_fff0.
/// let nobody = 0x7fff_fff0;
///
/// // One datagram per message: sent, and refused, at once.
/// let mut replies = Replies::new(&socket, false);
/// assert_eq!(replies.put(nobody, 1, 0x10, 0, b"hello"), Err(ECONNREFUSED));
///
/// // Coalesced: nothing is sent until the datagram is flushed.
/// let mut replies = Replies::new(&socket, true);
/// replies.put(nobody, 1, 0x10, 0, b"hello")?;
/// replies.put(nobody, 2, 0x10, 0, b"again")?;
/// assert_eq!(replies.flush(), Err(ECONNREFUSED));
/// assert_eq!(replies.flush(), Ok(()));
///
/// // A datagram grows to about a page; the first message that does not fit
/// // sends it (refused here: that call reports it) and is not added.
/// let mut added = 0;
/// while replies.put(nobody, added, 0x10, 0, &[0; 1024]).is_ok() {
///     added += 1;
/// }
/// assert_eq!(added, 3);
/// assert_eq!(replies.flush(), Ok(()));
/// # Ok::<(), Error>(())
/// ```
///
/// [`put`]: Replies::put
/// [`put_ack`]: Replies::put_ack
/// [`flush`]: Replies::flush
pub struct Replies<'a> {
    socket: &'a SocketRef,
    coalesce: bool,
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
    /// Replies sent through `socket`, coalesced if `coalesce`.
    pub fn new(socket: &'a SocketRef, coalesce: bool) -> Self {
        Self {
            socket,
            coalesce,
            pending: None,
        }
    }

    /// Adds a message for `portid`, as [`NetlinkSkBuff::put`] builds it.
    pub fn put(&mut self, portid: u32, seq: u32, ty: u16, flags: u16, payload: &[u8]) -> Result {
        self.add(portid, payload.len(), |skb| {
            skb.put(portid, seq, ty, flags, payload)
        })
    }

    /// Adds an `NLMSG_ERROR` answering `request` for `portid`, as
    /// [`NetlinkSkBuff::put_ack`] builds it.
    pub fn put_ack(&mut self, portid: u32, request: &Header, result: Result) -> Result {
        self.add(portid, NLMSGERR_SIZE, |skb| {
            skb.put_ack(portid, request, result)
        })
    }

    /// Sends the pending datagram, if there is one.
    pub fn flush(&mut self) -> Result {
        match self.pending.take() {
            Some(pending) => self.socket.unicast(pending.skb, pending.portid),
            None => Ok(()),
        }
    }

    /// Adds a message of `payload` bytes that `put` writes into an skb.
    fn add(
        &mut self,
        portid: u32,
        payload: usize,
        put: impl Fn(&mut NetlinkSkBuff) -> Result,
    ) -> Result {
        let size = nlmsg_align(NLMSG_HDRLEN.saturating_add(payload));
        if let Some(pending) = self.pending.as_mut() {
            if pending.portid == portid && pending.put(size, &put)? {
                return Ok(());
            }
            self.flush()?;
        }
        let mut skb = NetlinkSkBuff::new(payload, GFP_KERNEL)?;
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
    fn put(&mut self, size: usize, put: impl Fn(&mut NetlinkSkBuff) -> Result) -> Result<bool> {
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
            if extra > 0 && self.skb.grow(extra, GFP_KERNEL).is_ok() {
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
    fn drop(&mut self) {
        // The receiver learns of a lost datagram from the netlink core
        // (`ENOBUFS`); there is nobody else to tell.
        let _ = self.flush();
    }
}
