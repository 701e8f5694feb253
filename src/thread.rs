//! A thread's life with one configuration: setup on first allocation, exit (its heap
//! orphaned for the next thread), the fork hooks, the count of its allocator events
//! towards the next clock read.
//!
//! The per-thread slot ([`ThreadState`], `thread_state.rs`) is a `thread_local!` of each
//! `define_rpmalloc!` expansion. (The `thread_local` crate cannot serve here: it allocates
//! its per-thread buckets through the global allocator — that is, through us — and guards
//! its thread ids with a mutex.)
//!
//! Thread exit is caught with the OS layer's exit key (a pthread key destructor on Unix,
//! a fiber-local storage callback on Windows), created once per configuration. glibc
//! runs pthread key destructors after the Rust/C++ thread-local destructors, so those
//! still allocate from the thread's own heap; Windows runs fiber-local callbacks before
//! them. After ours ran, the slot is marked dead and any later allocation or free goes
//! through an orphaned heap under the orphan lock, so either order is correct.

use crate::bins::empty_bins;
use crate::heap::Heap;
use crate::instance::Instance;
use crate::os::{self, ForkHandlers, ThreadExit};
use crate::thread_state::{ThreadState, DEAD, LIVE, UNINIT};
use core::marker::PhantomData;
use core::sync::atomic::Ordering;

/// Gives the calling thread a heap (adopting an orphaned one if any). False when the OS
/// refused memory for a new heap.
///
/// # Safety
/// `state` is the calling thread's slot of configuration `C`, with status `UNINIT`.
#[cold]
pub(crate) unsafe fn init_thread<C: Instance>(state: &ThreadState) -> bool {
    // The hooks may allocate — when the allocator is a C program's `malloc`, glibc's
    // `pthread_atfork` grows its handler list with it, and `pthread_setspecific` makes a
    // key's second-level array with `calloc` — so they are installed before the heap and
    // the key's value set after it: a nested allocation during the first sets this thread
    // up itself (checked below), during the second finds the heap live.
    let key = exit_key::<C>();
    if state.status.get() != UNINIT {
        return true;
    }
    let heap = Heap::<C>::adopt_or_create();
    if heap.is_null() {
        return false;
    }
    state.heap.set(heap.cast());
    state.status.set(LIVE);
    if let Some(key) = key {
        // SAFETY: a key made by `exit_key` and never deleted; the non-null value makes
        // its hook run when this thread exits.
        unsafe { os::exit_key_set(key, heap.cast()) };
    }
    true
}

/// Creates the thread-exit key and installs the fork handlers of configuration `C`, if
/// not done yet (for first-class heaps, which need the fork handlers without a thread
/// heap).
#[cold]
pub(crate) fn install_hooks<C: Instance>() {
    let _ = exit_key::<C>();
}

/// The thread-exit key whose hook orphans the heap, created on first use (with the fork
/// handlers).
fn exit_key<C: Instance>() -> Option<usize> {
    let global = C::global();
    let stored = global.exit_key.load(Ordering::Acquire);
    if stored != 0 {
        return Some(stored - 1);
    }
    // Out of keys: the thread's heap is then never orphaned (it stays mapped).
    let key = os::exit_key_create::<Exit<C>>()?;
    match global
        .exit_key
        .compare_exchange(0, key + 1, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {
            os::at_fork::<Fork<C>>();
            Some(key)
        }
        Err(existing) => {
            // Another thread won the race; drop ours.
            // SAFETY: our own key, never given a value nor used again.
            unsafe { os::exit_key_delete(key) };
            Some(existing - 1)
        }
    }
}

/// Gives the calling thread's heap of configuration `C` back now, as its exit would (for
/// `rpmalloc_thread_finalize`): the heap is orphaned for another thread to adopt, and
/// this thread is set up again (adopting a heap) if it allocates later.
pub fn thread_finalize<C: Instance>() {
    let state = C::slot();
    if state.status.get() != LIVE {
        return;
    }
    let bins = state.heap.replace(empty_bins());
    state.status.set(UNINIT);
    if let Some(key) = exit_key::<C>() {
        // SAFETY: a key made by `exit_key`, never deleted; a null value means no hook
        // runs at exit for the heap given back here.
        unsafe { os::exit_key_set(key, core::ptr::null_mut()) };
    }
    // SAFETY: the heap of this thread until now, with the slot's provenance; the slot no
    // longer points to it.
    unsafe { Heap::<C>::orphan(bins.cast()) };
}

/// Thread exit for configuration `C`: orphans the exiting thread's heap.
struct Exit<C>(PhantomData<C>);

impl<C: Instance> ThreadExit for Exit<C> {
    unsafe fn on_exit(value: *mut u8) {
        // SAFETY: the slot is a destructor-less thread-local, still readable while the
        // platform's exit hooks run.
        let state = unsafe { &*C::thread_state() };
        if state.heap.get().cast::<u8>() != value {
            // Not this thread's heap: on Windows, a fiber deleted on another thread than
            // the one that gave it its value. (A fiber deleted on its own thread carries
            // that thread's heap: the heap is orphaned and the thread, still running,
            // goes on through the after-exit path, correct but slower.)
            return;
        }
        let bins = state.heap.replace(empty_bins());
        state.status.set(DEAD);
        if bins != empty_bins() {
            // SAFETY: a real heap of this configuration, owned by this thread until now,
            // with the slot's (the record's) provenance; the slot no longer points to it.
            unsafe { Heap::<C>::orphan(bins.cast()) };
        }
    }
}

/// The fork handlers of configuration `C`: before `fork`, let the notices in flight land
/// and take every lock, so the child never inherits a structure mid-update or a notice
/// that will never arrive; after it, release them (parent) or reset them (child, where
/// only this thread exists).
struct Fork<C>(PhantomData<C>);

impl<C: Instance> ForkHandlers for Fork<C> {
    fn prepare() {
        C::global().prepare_fork();
    }

    unsafe fn parent() {
        // SAFETY: `prepare` ran on this thread (the contract).
        unsafe { C::global().parent_after_fork() };
    }

    unsafe fn child() {
        // SAFETY: in the child, just after a fork that `prepare` prepared (the contract).
        unsafe { C::global().child_after_fork() };
    }
}

/// Counts an allocator event of the calling thread (a large or huge block, or a block of
/// another thread's), reading the clock for decay every `TICKS_PER_CLOCK_READ` events.
#[inline]
pub(crate) fn tick<C: Instance>() {
    if C::slot().ticks.tick() {
        Heap::<C>::clock_tick();
    }
}
