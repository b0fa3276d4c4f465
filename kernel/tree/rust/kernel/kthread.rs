// SPDX-License-Identifier: GPL-2.0

//! Kernel threads: a thread that runs a [`Run`] implementation, stopped and
//! joined on drop.
//!
//! A thread can be created first and started later ([`Thread::create`],
//! [`NewThread::start`]), as C's `kthread_create()` and `wake_up_process()`:
//! creating is what can fail, starting cannot. A module that needs both a
//! thread and a resource that userspace can reach at once, such as a netlink
//! socket, creates the thread, then the resource, then starts the thread, so
//! that nothing fails once userspace can reach it.
//!
//! C header: [`include/linux/kthread.h`](srctree/include/linux/kthread.h).

use crate::{
    alloc::{Flags, KBox},
    bindings,
    error::{code::*, from_err_ptr, Result},
    str::CStr,
};
use core::{
    ffi::c_void,
    marker::PhantomData,
    mem::{ManuallyDrop, MaybeUninit},
    ptr::NonNull,
};

/// The work of a kernel [`Thread`].
pub trait Run: Send + Sync + Sized + 'static {
    /// The body of the thread. It should return soon after
    /// [`Run::request_stop`] was called, or when `thread.should_stop()`
    /// becomes true.
    fn run(&self, thread: &Context<'_>);

    /// Asks [`Run::run`] to return; called by [`Thread`]'s drop before
    /// `kthread_stop()`.
    ///
    /// `kthread_stop()` wakes the thread with `wake_up_process()`, but a
    /// thread about to sleep on a wait queue can miss that wakeup (it checked
    /// `should_stop()` just before it). A thread that sleeps on its own
    /// condition, such as a [`CondVar`](crate::sync::CondVar), must set a
    /// flag under its lock here and notify the condition.
    fn request_stop(&self);
}

/// Evidence that the code runs on the kernel thread itself.
///
/// # Invariants
///
/// A `Context` exists only on a kernel thread, inside its thread function:
/// it is created by `thread_main()` alone and cannot be sent to another
/// thread.
pub struct Context<'a> {
    _not_send: PhantomData<*const ()>,
    _lifetime: PhantomData<&'a ()>,
}

impl Context<'_> {
    /// Whether `kthread_stop()` was called on this thread
    /// (`kthread_should_stop()`).
    pub fn should_stop(&self) -> bool {
        // SAFETY: By the type invariant, this runs on a kernel thread, in
        // its thread function.
        unsafe { bindings::kthread_should_stop() }
    }
}

/// A running kernel thread (`kthread_run()`), stopped and joined on drop
/// (`kthread_stop()`), after which its data is freed.
///
/// # Examples
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use kernel::c_str;
/// use kernel::kthread::{Context, Run, Thread};
///
/// struct Once {
///     runs: AtomicU32,
/// }
///
/// impl Run for Once {
///     fn run(&self, _thread: &Context<'_>) {
///         self.runs.fetch_add(1, Ordering::Relaxed);
///     }
///
///     fn request_stop(&self) {}
/// }
///
/// let thread = Thread::spawn(c_str!("rust_kthread_ex"), Once { runs: AtomicU32::new(0) }, GFP_KERNEL)?;
/// // Stops and joins the thread, then frees its data, even if it never ran.
/// drop(thread);
///
/// // Created, never started: dropping it stops the thread before it runs.
/// let created = Thread::<Once>::create(c_str!("rust_kthread_ex"), GFP_KERNEL)?;
/// drop(created);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `task` is a kernel thread created by `kthread_create_on_node()` running
/// `thread_main::<T>`, on which we hold a reference (`get_task_struct()`);
/// `data` comes from `KBox::<MaybeUninit<T>>::into_raw`, was initialised
/// before the thread was woken, and is the thread's argument, alive until
/// the thread is stopped.
pub struct Thread<T: Run> {
    task: NonNull<bindings::task_struct>,
    data: NonNull<T>,
}

// SAFETY: The thread may be stopped from any thread, and `T` is `Send + Sync`.
unsafe impl<T: Run> Send for Thread<T> {}

// SAFETY: `Thread` exposes nothing through a shared reference.
unsafe impl<T: Run> Sync for Thread<T> {}

impl<T: Run> Thread<T> {
    /// Creates and wakes a kernel thread named `name` that runs `data`.
    pub fn spawn(name: &CStr, data: T, flags: Flags) -> Result<Self> {
        Ok(Self::create(name, flags)?.start(data))
    }

    /// Creates a kernel thread named `name` that does not run yet
    /// (`kthread_create()`): [`NewThread::start`] gives it its data and
    /// wakes it.
    pub fn create(name: &CStr, flags: Flags) -> Result<NewThread<T>> {
        let data = KBox::new(MaybeUninit::<T>::uninit(), flags)?;
        let data = NonNull::new(KBox::into_raw(data)).ok_or(ENOMEM)?;
        // SAFETY: `thread_main::<T>` matches the thread function signature and
        // takes `data` as a `T`, which it reads only once it runs, that is,
        // after `NewThread::start` has written it. "%s" with a valid C
        // string is a valid format.
        let task = unsafe {
            bindings::kthread_create_on_node(
                Some(thread_main::<T>),
                data.as_ptr().cast(),
                bindings::NUMA_NO_NODE,
                crate::c_str!("%s").as_char_ptr(),
                name.as_char_ptr(),
            )
        };
        let task = match from_err_ptr(task).and_then(|task| NonNull::new(task).ok_or(ENOMEM)) {
            Ok(task) => task,
            Err(e) => {
                // SAFETY: The thread was not created, so nothing else has
                // `data`: take it back.
                drop(unsafe { KBox::from_raw(data.as_ptr()) });
                return Err(e);
            }
        };
        // SAFETY: `task` is a valid task. The reference keeps it valid for
        // `kthread_stop()` even if the thread function returns on its own.
        unsafe { bindings::get_task_struct(task.as_ptr()) };
        // INVARIANT: `task` was created to run `thread_main::<T>` on `data`,
        // is not woken, and we hold a reference on it.
        Ok(NewThread { task, data })
    }
}

/// A kernel thread that is created but not started ([`Thread::create`]).
/// Dropping it stops the thread before its function ever runs.
///
/// # Invariants
///
/// `task` is a kernel thread created by `kthread_create_on_node()` to run
/// `thread_main::<T>` on `data`, not woken yet, on which we hold a reference
/// (`get_task_struct()`); `data` comes from `KBox::<MaybeUninit<T>>::into_raw`
/// and is uninitialised.
pub struct NewThread<T: Run> {
    task: NonNull<bindings::task_struct>,
    data: NonNull<MaybeUninit<T>>,
}

// SAFETY: The thread may be started or stopped from any thread, and `T` is
// `Send + Sync`.
unsafe impl<T: Run> Send for NewThread<T> {}

// SAFETY: `NewThread` exposes nothing through a shared reference.
unsafe impl<T: Run> Sync for NewThread<T> {}

impl<T: Run> NewThread<T> {
    /// Gives the thread its data and wakes it (`wake_up_process()`).
    pub fn start(self, data: T) -> Thread<T> {
        let this = ManuallyDrop::new(self);
        // SAFETY: By the type invariant, `data` is a valid allocation that the
        // thread does not read before it is woken, below.
        let data = unsafe { (*this.data.as_ptr()).write(data) };
        let data = NonNull::from(data);
        // SAFETY: `task` was created and not woken (type invariant); this
        // starts it. The wakeup orders the write above before the thread's
        // first read.
        unsafe { bindings::wake_up_process(this.task.as_ptr()) };
        // INVARIANT: `task` runs `thread_main::<T>` on `data`, now
        // initialised, and the reference we held moves to the `Thread`.
        Thread {
            task: this.task,
            data,
        }
    }
}

impl<T: Run> Drop for NewThread<T> {
    /// Stops the thread, which never ran its function. Sleeps until it has
    /// exited.
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `task` is a kernel thread that was
        // never woken, on which we hold a reference. `kthread_stop_put()`
        // marks it to stop and wakes it: `kthread()` then exits without
        // calling `thread_main::<T>`. It waits for the exit and drops the
        // reference.
        unsafe { bindings::kthread_stop_put(self.task.as_ptr()) };
        // SAFETY: The thread has exited without reading `data`, which came
        // from `KBox::into_raw` (type invariant) and holds no `T` to drop.
        drop(unsafe { KBox::from_raw(self.data.as_ptr()) });
    }
}

impl<T: Run> Drop for Thread<T> {
    /// Stops the thread and frees its data. Sleeps until the thread has
    /// exited.
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `data` is alive until the thread
        // is stopped.
        unsafe { self.data.as_ref() }.request_stop();
        // SAFETY: By the type invariant, `task` is a kernel thread on which we
        // hold a reference; `kthread_stop_put()` waits until it has exited
        // (or makes sure it never runs, if it has not started yet) and drops
        // that reference.
        unsafe { bindings::kthread_stop_put(self.task.as_ptr()) };
        // SAFETY: The thread has exited or will never run, so nothing else
        // uses `data`, an initialised `T` in an allocation from
        // `KBox::into_raw` (type invariant); `MaybeUninit<T>` and `T` have
        // the same layout.
        drop(unsafe { KBox::from_raw(self.data.as_ptr()) });
    }
}

/// The thread function of every [`Thread<T>`].
///
/// # Safety
///
/// Called by the kthread core only, on the new thread, with the `data` given
/// to `kthread_create_on_node()` in [`Thread::spawn`].
unsafe extern "C" fn thread_main<T: Run>(data: *mut c_void) -> core::ffi::c_int {
    // SAFETY: `data` is the `T` of a `Thread<T>`, initialised before the
    // thread was woken, which frees it only after this thread has exited.
    let data = unsafe { &*data.cast::<T>() };
    // INVARIANT: This is the thread function, on the kernel thread.
    data.run(&Context {
        _not_send: PhantomData,
        _lifetime: PhantomData,
    });
    0
}
