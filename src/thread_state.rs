//! The per-thread slot of one configuration: the thread's heap (or the shared empty
//! bins), its status, and its count of allocator events towards the next clock read.
//!
//! Each `define_rpmalloc!` expansion declares its own `thread_local!` holding a
//! [`ThreadState`] with a `const` initialiser. The type has no `Drop`, so the standard
//! library compiles it to a bare `#[thread_local]` static: reading it is one
//! `fs`-relative load, with no lazy-init test and no destructor registration, and it stays
//! readable while the thread's other destructors run. Setup and thread exit are in
//! `thread.rs`.

use crate::bins::{empty_bins, Bins, Ticks};
use core::cell::Cell;

/// No heap yet; the next slow-path allocation sets one up.
pub(crate) const UNINIT: u8 = 0;
/// The thread owns the heap in `heap`.
pub(crate) const LIVE: u8 = 1;
/// The thread's heap has been orphaned at thread exit.
pub(crate) const DEAD: u8 = 2;

/// The per-thread slot of one allocator instance (used by `define_rpmalloc!`).
pub struct ThreadState {
    /// The thread's heap, or the shared empty bins before setup and after exit.
    pub(crate) heap: Cell<*mut Bins>,
    /// [`UNINIT`], [`LIVE`] or [`DEAD`].
    pub(crate) status: Cell<u8>,
    /// Allocator events outside a heap (large blocks of other threads freed, huge blocks)
    /// left until this thread next reads the clock: a thread without a heap (one that only
    /// frees) ticks too. A heap counts its own events (`Heap::ticks`).
    pub(crate) ticks: Ticks,
}

impl ThreadState {
    /// The state of a thread that has not allocated yet.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        ThreadState {
            heap: Cell::new(empty_bins()),
            status: Cell::new(UNINIT),
            ticks: Ticks::new(),
        }
    }
}
