//! What the allocation fast path reads: a heap's bins (one per size class: a free list
//! and the class's active span) and the count of allocator events towards the next clock
//! read. A thread slot points at its heap's bins, or at [`EMPTY_BINS`] before setup and
//! after exit, so the fast path needs no test for a missing heap.

use crate::block::Block;
use crate::params::TICKS_PER_CLOCK_READ;
use crate::size_class::MAX_CLASS_COUNT;
use crate::span::Span;
use core::cell::Cell;
use core::ptr;

/// One size class's allocation state.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Bin {
    /// Free blocks of `span`, popped by the fast path; counted in the span's `used`.
    pub free: *mut Block,
    /// The class's active span, or null.
    pub span: *mut Span,
}

impl Bin {
    /// No active span, no blocks.
    pub(crate) const EMPTY: Bin = Bin {
        free: ptr::null_mut(),
        span: ptr::null_mut(),
    };
}

/// The part of a heap the allocation fast path reads: one bin per size class.
#[repr(C)]
pub(crate) struct Bins {
    /// Bin per size class.
    pub bin: [Bin; MAX_CLASS_COUNT],
}

/// The bins of a thread without a heap: every class empty, so the fast path falls through
/// to the slow path, which sets the thread up. Never written. Transparent, so the static's
/// address is its bins' (an initial-exec thread slot names the static in assembly).
#[repr(transparent)]
pub struct SyncBins(Bins);
// SAFETY: never written (only real heaps' bins are stored to).
unsafe impl Sync for SyncBins {}

/// The one set of empty bins every thread slot without a heap points at.
pub static EMPTY_BINS: SyncBins = SyncBins(Bins {
    bin: [Bin::EMPTY; MAX_CLASS_COUNT],
});

/// Pointer to [`EMPTY_BINS`].
#[inline(always)]
pub(crate) const fn empty_bins() -> *mut Bins {
    (&raw const EMPTY_BINS.0).cast_mut()
}

/// A count of allocator events towards the next read of the clock for decay sweeps (see
/// `global.rs`), kept by its one user. Transparent: a thread slot's initial image in
/// assembly writes it as a 32-bit integer (`thread_state.rs`).
#[repr(transparent)]
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

    /// Events left before the next clock read (for tests).
    #[cfg(test)]
    pub(crate) fn left(&self) -> u32 {
        self.0.get()
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
