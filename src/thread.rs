//! A thread's life with one configuration: setup on first allocation, exit (its heap
//! orphaned for the next thread), the fork hooks, the count of its allocator events
//! towards the next clock read.
//!
//! The per-thread slot ([`ThreadState`], `thread_state.rs`) is a `thread_local!` of each
//! `define_rpmalloc!` expansion. (The `thread_local` crate cannot serve here: it allocates
//! its per-thread buckets through the global allocator — that is, through us — and guards
//! its thread ids with a mutex.)
//!
//! Thread exit is caught with a pthread key destructor, created once per configuration.
//! glibc runs pthread key destructors after the Rust/C++ thread-local destructors, so
//! those still allocate from the thread's own heap. After ours ran, the slot is marked
//! dead and any later allocation goes through an orphaned heap under the orphan lock.

use crate::bins::empty_bins;
use crate::heap::Heap;
use crate::instance::Instance;
use crate::thread_state::{ThreadState, DEAD, LIVE};
use core::sync::atomic::Ordering;

/// Gives the calling thread a heap (adopting an orphaned one if any). False when the OS
/// refused memory for a new heap.
///
/// # Safety
/// `state` is the calling thread's slot of configuration `C`, with status `UNINIT`.
#[cold]
pub(crate) unsafe fn init_thread<C: Instance>(state: &ThreadState) -> bool {
    let heap = Heap::<C>::adopt_or_create();
    if heap.is_null() {
        return false;
    }
    if let Some(key) = exit_key::<C>() {
        // SAFETY: a key we created; a non-null value makes its destructor run at exit.
        unsafe { libc::pthread_setspecific(key, heap.cast()) };
    }
    state.heap.set(heap.cast());
    state.status.set(LIVE);
    true
}

/// The pthread key whose destructor orphans the heap, created on first use.
fn exit_key<C: Instance>() -> Option<libc::pthread_key_t> {
    let global = C::global();
    let stored = global.exit_key.load(Ordering::Acquire);
    if stored != 0 {
        return Some((stored - 1) as libc::pthread_key_t);
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creating a key with a valid destructor function.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit::<C>)) } != 0 {
        // Out of keys: the thread's heap is then never orphaned (it stays mapped).
        return None;
    }
    match global
        .exit_key
        .compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {
            // SAFETY: handlers are plain functions that only take and release locks.
            unsafe {
                libc::pthread_atfork(
                    Some(fork_prepare::<C>),
                    Some(fork_parent::<C>),
                    Some(fork_child::<C>),
                );
            }
            Some(key)
        }
        Err(existing) => {
            // Another thread won the race; drop ours.
            // SAFETY: our own key, never used.
            unsafe { libc::pthread_key_delete(key) };
            Some((existing - 1) as libc::pthread_key_t)
        }
    }
}

/// pthread key destructor: orphans the exiting thread's heap.
unsafe extern "C" fn on_thread_exit<C: Instance>(_value: *mut libc::c_void) {
    // SAFETY: the slot is a destructor-less thread-local, still readable while pthread
    // key destructors run.
    let state = unsafe { &*C::thread_state() };
    let bins = state.heap.replace(empty_bins());
    state.status.set(DEAD);
    if bins != empty_bins() {
        // SAFETY: a real heap of this configuration, owned by this thread until now, with
        // the slot's (the record's) provenance; the slot no longer points to it.
        unsafe { Heap::<C>::orphan(bins.cast()) };
    }
}

/// Before `fork`: let the notices in flight land and take every lock, so the child never
/// inherits a structure mid-update or a notice that will never arrive.
extern "C" fn fork_prepare<C: Instance>() {
    C::global().prepare_fork();
}

/// After `fork`, in the parent: release them.
extern "C" fn fork_parent<C: Instance>() {
    // SAFETY: fork_prepare ran on this thread.
    unsafe { C::global().parent_after_fork() };
}

/// After `fork`, in the child: only this thread exists; reset the locks.
extern "C" fn fork_child<C: Instance>() {
    // SAFETY: in the child, just after a fork that fork_prepare prepared.
    unsafe { C::global().child_after_fork() };
}

/// Counts an allocator event of the calling thread (a large or huge block, or a block of
/// another thread's), reading the clock for decay every `TICKS_PER_CLOCK_READ` events.
#[inline]
pub(crate) fn tick<C: Instance>() {
    if C::slot().ticks.tick() {
        Heap::<C>::clock_tick();
    }
}
