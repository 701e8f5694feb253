//! The per-thread slot of one configuration: the thread's heap (or the shared empty
//! bins), its status, and its count of allocator events towards the next clock read.
//!
//! Each `define_rpmalloc!` expansion declares its own `thread_local!` holding a
//! [`ThreadState`] with a `const` initialiser. The type has no `Drop`, so the standard
//! library compiles it to a bare `#[thread_local]` static: reading it is one
//! `fs`-relative load, with no lazy-init test and no destructor registration, and it stays
//! readable while the thread's other destructors run. Setup and thread exit are in
//! `thread.rs`.

use crate::heap::{empty_bins, Bins};
use crate::params::TICKS_PER_CLOCK_READ;
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

/// A count of allocator events towards the next read of the clock for decay sweeps (see
/// `global.rs`), kept by its one user.
pub(crate) struct Ticks(Cell<u32>);

impl Ticks {
    /// A full count.
    pub(crate) const fn new() -> Ticks {
        Ticks(Cell::new(TICKS_PER_CLOCK_READ))
    }

    /// Counts an event: true every `TICKS_PER_CLOCK_READ` events, when the caller reads
    /// the clock (`Global::clock_tick`).
    #[inline(always)]
    pub(crate) fn tick(&self) -> bool {
        let left = self.0.get();
        if left > 1 {
            self.0.set(left - 1);
            return false;
        }
        self.0.set(TICKS_PER_CLOCK_READ);
        true
    }

    /// The inline refill's tick: counts the event and says true, or says false (counting
    /// nothing) when the clock is due, for the slow path to tick and read it.
    #[inline(always)]
    pub(crate) fn quiet_tick(&self) -> bool {
        let left = self.0.get();
        if left > 1 {
            self.0.set(left - 1);
            return true;
        }
        false
    }
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
