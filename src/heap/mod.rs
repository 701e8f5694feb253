//! The per-thread heap: size-class bins, partial spans, the thread span cache, the span
//! reserve, and the notices of spans other threads freed into.
//!
//! - this file: the heap record (owner part and shared part), its creation and the ways
//!   to reach it, the clock ticks and decay sweeps that run from a heap;
//! - `small.rs`: the small-span state machine (its transition table in its doc);
//! - `spans.rs`: span sourcing and release, large blocks;
//! - `orphan.rs`: the heap at thread exit, orphaning and adoption.
//!
//! A heap is used by one thread at a time: the thread that owns it, or — once that thread
//! has exited and the heap is orphaned — whoever holds the global orphan lock. Nothing in a
//! heap is atomic except the notice list (pushed by other threads) and the orphaned flag;
//! in a span, only its remote-free word ([`RemoteList`](crate::remote::RemoteList)).
//!
//! Blocks freed by other threads wait on their span's remote list. The owner takes a
//! span's whole list in O(1), without touching the blocks, when that span runs dry. Spans
//! in none of the heap's lists (full ones) are *armed*: the first remote free sends the
//! span to the heap as a notice, and the heap puts it back into use. Partial spans are
//! *watched* the same way, so the one other threads empty is released.
//!
//! Small spans: the bin of a size class holds the class's *active* span and a free list
//! taken from it, which the fast path pops without touching the span header. Span headers
//! sit at span-size-aligned addresses, so they all share a few cache sets: a fast path
//! that read the header of a random class's span missed the L2 cache on most allocations
//! (perf: 17 % of the allocation fast path's samples, rpbench std1). A span's `used`
//! counts its blocks out of its own free list — with users or in the bin — so a span whose
//! blocks sit in the bin is never seen as empty, and the free path's one test
//! `used == 0 || state == Full` catches every state change.

use crate::bins::{Bin, Bins, Ticks};
use crate::global::Sweep;
use crate::instance::Instance;
use crate::params::Params;
use crate::size_class::MAX_CLASS_COUNT;
use crate::span::{Span, LARGE_CLASS_COUNT};
use crate::stats::{HeapCounters, Writer};
use crate::thread_cache::HeapShared;
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::Ordering;

mod orphan;
mod private;
mod small;
mod spans;

pub(crate) use private::Mappings;

/// A heap's record: the owner part first (so a `*mut Bins` from the thread slot is also
/// the record's address), then the part other threads reach. Mapped once, never
/// unmapped.
#[repr(C)]
pub(crate) struct HeapRecord<C> {
    /// What only the heap's user touches.
    heap: Heap<C>,
    /// What other threads touch too.
    shared: HeapShared,
}

/// The owner part of a thread heap of configuration `C`: what only the heap's *user*
/// touches — its thread, or, while it is orphaned, whoever holds the global orphan lock.
/// Its methods take `&mut self`; other threads never form a reference to it, and reach
/// the heap only through its [`HeapShared`] (notices, flags, locks, the thread cache),
/// which lies outside this struct. `bins` comes first so a `*mut Bins` taken from the
/// thread slot is also the heap's address.
#[repr(C)]
pub(crate) struct Heap<C> {
    /// The fast-path view.
    pub bins: Bins,
    /// Partial spans per size class.
    partial: [*mut Span; MAX_CLASS_COUNT],
    /// The record this is part of, as mapped: the heap's identity in span headers and the
    /// way to its shared part. Derived from the mapping, never from a reference, so other
    /// threads may use it while the user holds `&mut` to this part.
    record: *mut HeapRecord<C>,
    /// Unused spans left over from the last mapping.
    reserve: *mut Span,
    /// Spans in the reserve.
    reserve_count: usize,
    /// Master of the reserve's mapping.
    reserve_master: *mut Span,
    /// Next heap on the orphan list (written under the orphan lock).
    pub(crate) next_orphan: *mut Heap<C>,
    /// A first-class heap (`rpmalloc::Heap`, see `private.rs`): the owner's copy of
    /// `HeapShared::private`.
    private: bool,
    /// A first-class heap's mappings (empty for a thread heap).
    mappings: Mappings,
    /// Spans of each count this heap has handed out and not taken back (adaptive cache).
    span_in_use: [u32; LARGE_CLASS_COUNT],
    /// Highest `span_in_use` seen (adaptive cache).
    span_peak: [u32; LARGE_CLASS_COUNT],
    _config: PhantomData<C>,
    /// Allocator events of this heap (bin refills, spans acquired) left until it next
    /// reads the clock for a decay sweep; last, beside the shared part's `notices`, which
    /// the inline refill reads too, so the refill's count touches no other cache line.
    pub ticks: Ticks,
}

impl<C> HeapRecord<C> {
    // A template written once into each new heap record, never shared.
    #[allow(clippy::declare_interior_mutable_const)]
    const NEW: Self = HeapRecord {
        heap: Heap {
            bins: Bins {
                bin: [Bin::EMPTY; MAX_CLASS_COUNT],
            },
            partial: [ptr::null_mut(); MAX_CLASS_COUNT],
            record: ptr::null_mut(),
            reserve: ptr::null_mut(),
            reserve_count: 0,
            reserve_master: ptr::null_mut(),
            next_orphan: ptr::null_mut(),
            private: false,
            mappings: Mappings::EMPTY,
            span_in_use: [0; LARGE_CLASS_COUNT],
            span_peak: [0; LARGE_CLASS_COUNT],
            _config: PhantomData,
            ticks: Ticks::new(),
        },
        shared: HeapShared::new(),
    };
}

impl<C: Instance> Heap<C> {
    /// Maps and initialises a new heap; null when the OS refuses. Heaps are never unmapped:
    /// an exited thread's heap waits on the orphan list for the next thread.
    ///
    /// The record is mapped with `memmap2`: it needs no alignment beyond a page and is
    /// never partially unmapped, which is exactly what that crate offers.
    #[cold]
    pub(crate) fn create() -> *mut Heap<C> {
        Self::create_record(false)
    }

    /// [`Heap::create`] for a thread heap (`private` false) or a first-class heap
    /// (`private` true: the flag is set before the record is published to the
    /// configuration's list, so sweeps never see it otherwise, and it never changes).
    #[cold]
    pub(super) fn create_record(private: bool) -> *mut Heap<C> {
        let len = core::mem::size_of::<HeapRecord<C>>();
        let record = crate::os::map_record(len).cast::<HeapRecord<C>>();
        if record.is_null() {
            return ptr::null_mut();
        }
        let global = C::global();
        // SAFETY: a fresh page-aligned mapping of at least size_of::<HeapRecord<C>>()
        // bytes, never unmapped; the shared part is registered once, here.
        unsafe {
            // From a constant template (one copy; a literal with the pointer in it was
            // built on the stack first: 2 000 instructions more per thread).
            record.write(HeapRecord::NEW);
            (*record).heap.record = record;
            (*record).heap.private = private;
            (*record).shared.private = private;
            global.register(&raw mut (*record).shared);
        }
        global.count(|s| s.heap_created(len.next_multiple_of(crate::os::page_size())));
        record.cast()
    }

    /// The heap whose bins are at `bins`, for its user.
    ///
    /// # Safety
    /// `bins` came from a real heap of this configuration (not [`EMPTY_BINS`](crate::bins::EMPTY_BINS)); the
    /// caller is that heap's user (its thread, the holder of the orphan lock while the
    /// heap is orphaned, or the holder of a first-class heap's `rpmalloc::Heap`) and forms no other reference to the heap's owner part while the
    /// returned one is in use (callers use it for one call).
    #[inline(always)]
    pub(crate) unsafe fn from_bins<'a>(bins: *mut Bins) -> &'a mut Heap<C> {
        // SAFETY: bins is the first field of a #[repr(C)] Heap<C>; exclusive per the
        // contract (other threads touch only the shared part, outside this struct).
        unsafe { &mut *bins.cast::<Heap<C>>() }
    }

    /// The shared part of the heap whose record is at `heap` (a heap id as spans record
    /// it, or the bins pointer of a thread slot).
    ///
    /// # Safety
    /// `heap` is the address of a heap record of this configuration, with the provenance
    /// of its mapping (a stored id or slot pointer, not one derived from a reference to
    /// the owner part).
    #[inline(always)]
    pub(crate) unsafe fn shared_of(heap: *mut u8) -> &'static HeapShared {
        // SAFETY: per the contract; records are never unmapped, and the shared part is
        // only ever reached through shared references.
        unsafe { &(*heap.cast::<HeapRecord<C>>()).shared }
    }

    /// The tick count of the heap whose bins are at `bins`, reached without a reference
    /// to the owner part (for the inline refill, which writes the bins through `bins`).
    ///
    /// # Safety
    /// `bins` is a thread slot's pointer to a real heap of this configuration, used by
    /// the calling thread.
    #[inline(always)]
    pub(crate) unsafe fn ticks_of<'a>(bins: *mut Bins) -> &'a Ticks {
        // SAFETY: per the contract; `ticks` is a `Cell` of the heap's user, which is us.
        unsafe { &(*bins.cast::<Heap<C>>()).ticks }
    }

    /// This heap's shared part.
    #[inline(always)]
    pub(crate) fn shared(&self) -> &'static HeapShared {
        // SAFETY: `record` is this heap's record, as mapped.
        unsafe { Self::shared_of(self.record.cast()) }
    }

    /// The type-erased address spans record as their owner (with the record's
    /// provenance: other threads reach the shared part through it).
    #[inline(always)]
    pub(super) fn id(&self) -> *mut u8 {
        self.record.cast()
    }

    /// This heap's statistics counters, for its current user (its thread, or the holder of
    /// the orphan lock).
    #[inline(always)]
    pub(crate) fn counters(&self) -> &'static HeapCounters {
        &self.shared().counters
    }

    /// Counts `bytes` of spans that start (or, as `wrapping_neg`, stop) holding blocks. A
    /// read-modify-write: a decay sweep releases the spans of an idle heap's notices.
    #[inline(always)]
    pub(super) fn count_in_use(shared: &HeapShared, bytes: usize) {
        if C::ENABLE_STATISTICS {
            shared.counters.in_use(bytes, Writer::Shared);
        }
    }

    /// Publishes the reserve's size to the statistics.
    #[inline(always)]
    pub(super) fn count_reserve(&self) {
        if C::ENABLE_STATISTICS {
            self.counters()
                .set_reserve(self.reserve_count * C::SPAN_SIZE);
        }
    }

    /// Counts an allocator event of this heap; every `TICKS_PER_CLOCK_READ` events, reads
    /// the clock and runs a decay sweep if one is due. Call it holding no lock but the
    /// orphan lock and this heap's lock.
    #[inline]
    pub(super) fn tick(&self) {
        if self.ticks.tick() {
            Self::clock_tick();
        }
    }

    /// Reads the clock and, if a decay sweep is due, runs it (see `global.rs`): idle
    /// heaps' notices first (the spans other threads emptied go back to the caches or the
    /// OS), then every cache's old runs. Call it holding no lock but the orphan lock and
    /// the calling heap's lock.
    #[cold]
    pub(crate) fn clock_tick() {
        if let Some(sweep) = C::global().clock_tick() {
            Self::sweep(&sweep);
        }
    }

    /// Runs a sweep: settles the notices of every heap not in use, then gives back the
    /// caches' old runs ([`Global::sweep_caches`](crate::global::Global::sweep_caches)).
    pub(super) fn sweep(sweep: &Sweep<'_>) {
        let global = C::global();
        // Idle heaps' notices: the spans other threads emptied, released though the heap's
        // thread does not allocate. A heap taking its notices (its lock held) is skipped;
        // orphaned heaps settle theirs at each notice.
        for heap in global.heaps() {
            // First-class heaps settle their notices when used (or dropped): their spans
            // must not leave them.
            if heap.notices.is_empty_relaxed()
                || heap.orphaned.load(Ordering::Relaxed)
                || heap.private
            {
                continue;
            }
            let Some(_lock) = heap.lock.try_lock() else {
                continue;
            };
            if !heap.orphaned.load(Ordering::Relaxed) {
                // SAFETY: a heap of this configuration (the list is `global`'s), not
                // orphaned, and we hold its heap lock.
                unsafe { Self::sweep_notices(heap) };
            }
        }
        global.sweep_caches(sweep);
    }

    /// `collect()` (see `api::collect`): every orphaned heap's part ([`Heap::collect`]),
    /// then a sweep that gives back everything cached.
    pub(crate) fn collect_all() {
        let global = C::global();
        let sweep = global.collect_sweep();
        {
            let orphans = global.orphans.lock();
            let mut heap = (*orphans).cast::<Heap<C>>();
            while !heap.is_null() {
                // SAFETY: orphaned heaps are used only under the orphan lock, which we hold.
                unsafe {
                    (*heap).collect();
                    heap = (*heap).next_orphan;
                }
            }
        }
        Self::sweep(&sweep);
    }
}
