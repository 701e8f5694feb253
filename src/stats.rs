//! Statistics: where an allocator instance's memory is. With `enable_statistics` off every
//! update is behind a `false` constant and compiles to nothing.
//!
//! Every byte mapped is in exactly one of six places, each counted where it changes:
//! spans, runs and mappings that hold blocks (`in_use`), the thread caches, the global
//! cache, the heaps' reserves, runs given back whose mapping is still mapped (`released`),
//! and the heap records; so `mapped` is their sum whenever no thread is between two
//! updates. `live` counts the bytes the program asked for and has not freed.
//!
//! Counters a thread changes for its own heap (blocks it allocates or frees, spans it takes
//! or gives back, its reserve) are per heap and written only by that thread — relaxed loads
//! and stores, no read-modify-write — and `statistics()` sums them over every heap. Those
//! of threads without a heap, and of the global structures, are shared atomics.

use crate::size_class::MAX_CLASS_COUNT;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A snapshot of one allocator instance's memory (`FastAlloc.statistics()`).
///
/// `mapped` is the sum of `in_use`, `thread_cache`, `global_cache`, `reserve`, `released`
/// and `heap_records` (exactly, when no other thread is allocating or freeing while the
/// snapshot is taken).
///
/// ```
/// use rpmalloc::define_rpmalloc;
/// use std::alloc::{GlobalAlloc, Layout};
///
/// define_rpmalloc!(Counted, < enable_statistics: true >);
///
/// let layout = Layout::from_size_align(1000, 8).unwrap();
/// // SAFETY: a non-zero size.
/// let p = unsafe { Counted.alloc(layout) };
/// let s = Counted.statistics().unwrap();
/// assert_eq!(s.live, 1000);
/// assert_eq!(
///     s.mapped,
///     s.in_use + s.thread_cache + s.global_cache + s.reserve + s.released + s.heap_records
/// );
/// // The 1000-byte block is in a 1008-byte size class.
/// assert_eq!(s.classes.iter().find(|c| c.blocks > 0).unwrap().block_size, 1008);
/// // SAFETY: `p` came from `Counted` with this layout.
/// unsafe { Counted.dealloc(p, layout) };
/// assert_eq!(Counted.statistics().unwrap().live, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Bytes currently mapped from the OS (address space: not all of it is resident, see
    /// [`Statistics::resident_estimate`]).
    pub mapped: usize,
    /// Highest value `mapped` has had.
    pub mapped_peak: usize,
    /// Bytes mapped over the instance's life.
    pub mapped_total: usize,
    /// Bytes unmapped over the instance's life.
    pub unmapped_total: usize,
    /// Bytes of the blocks the program holds, as requested (`Layout::size`).
    pub live: usize,
    /// Bytes of the spans, runs and mappings that hold those blocks: size-class spans in
    /// use (with their free blocks), large blocks' runs, huge blocks' mappings.
    /// `in_use - live` is what the blocks cost beyond their size: span headers, rounding up
    /// to a size class or a span, and free blocks waiting in partly used spans.
    pub in_use: usize,
    /// Bytes of free spans and runs in the thread caches, spare spans included, and in
    /// the caches of first-class heaps ([`crate::Heap`]), which keep them until dropped.
    pub thread_cache: usize,
    /// Bytes of free spans and runs in the global cache.
    pub global_cache: usize,
    /// Bytes of the heaps' span reserves: spans mapped with others and never used yet
    /// (never touched, so not resident).
    pub reserve: usize,
    /// Bytes of spans given back to the OS (their pages released) whose mapping stays
    /// mapped because other spans of it are still in use or cached: address space only.
    pub released: usize,
    /// Bytes of heap records (one per thread that allocated, reused after it exits).
    pub heap_records: usize,
    /// Thread heaps created.
    pub heaps: usize,
    /// Blocks in use per size class.
    pub classes: ClassTable,
}

impl Statistics {
    /// Bytes that may be resident: `mapped` without the reserves (never touched) and the
    /// released spans (pages given back). An upper bound: fresh spans are touched only as
    /// far as blocks were carved from them.
    pub fn resident_estimate(&self) -> usize {
        self.mapped.saturating_sub(self.reserve + self.released)
    }

    /// Bytes of free memory the caches hold: what `collect()` gives back, at most.
    pub fn cached(&self) -> usize {
        self.thread_cache + self.global_cache
    }
}

/// The blocks in use in one size class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassUse {
    /// The class's block size in bytes.
    pub block_size: usize,
    /// Blocks of the class the program holds.
    pub blocks: usize,
}

/// Blocks in use per size class, smallest class first ([`ClassTable::iter`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClassTable {
    classes: [ClassUse; MAX_CLASS_COUNT],
    len: usize,
}

impl Default for ClassTable {
    fn default() -> Self {
        ClassTable {
            classes: [ClassUse::default(); MAX_CLASS_COUNT],
            len: 0,
        }
    }
}

impl core::fmt::Debug for ClassTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Only the classes in use: the table has about 90 entries.
        f.debug_list()
            .entries(self.iter().filter(|c| c.blocks != 0))
            .finish()
    }
}

impl ClassTable {
    /// Every size class of the configuration, smallest first.
    pub fn iter(&self) -> impl Iterator<Item = &ClassUse> {
        self.classes[..self.len].iter()
    }

    /// Bytes of the blocks in use in size classes (each counted at its class's size).
    pub fn bytes(&self) -> usize {
        self.iter().map(|c| c.block_size * c.blocks).sum()
    }

    /// Appends a class (for `Global::statistics`).
    pub(crate) fn push(&mut self, class: ClassUse) {
        self.classes[self.len] = class;
        self.len += 1;
    }
}

/// Counters one thread changes for the heap it uses (see the module doc). Wrapping
/// arithmetic: a thread may free more than it allocated; only the sum over heaps is
/// meaningful.
pub(crate) struct HeapCounters {
    live: AtomicUsize,
    in_use: AtomicUsize,
    reserve: AtomicUsize,
    class_blocks: [AtomicUsize; MAX_CLASS_COUNT],
}

/// How a counter is changed: by its one writer, or by any thread.
#[derive(Clone, Copy)]
pub(crate) enum Writer {
    /// Only the calling thread writes it (a heap's counters): a load and a store.
    Owner,
    /// Any thread may (the counters of threads without a heap): a read-modify-write.
    Shared,
}

impl HeapCounters {
    pub(crate) const fn new() -> Self {
        HeapCounters {
            live: AtomicUsize::new(0),
            in_use: AtomicUsize::new(0),
            reserve: AtomicUsize::new(0),
            class_blocks: [const { AtomicUsize::new(0) }; MAX_CLASS_COUNT],
        }
    }

    #[inline]
    fn add(counter: &AtomicUsize, delta: usize, writer: Writer) {
        match writer {
            Writer::Owner => counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(delta),
                Ordering::Relaxed,
            ),
            Writer::Shared => {
                counter.fetch_add(delta, Ordering::Relaxed);
            }
        }
    }

    /// Sets every counter to zero (a first-class heap dropped with its blocks: they were
    /// counted here alone).
    pub(crate) fn clear(&self) {
        self.live.store(0, Ordering::Relaxed);
        self.in_use.store(0, Ordering::Relaxed);
        self.reserve.store(0, Ordering::Relaxed);
        for c in &self.class_blocks {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// A block of `size` requested bytes handed out, in size class `class` if any.
    #[inline]
    pub(crate) fn allocated(&self, size: usize, class: Option<usize>, writer: Writer) {
        Self::add(&self.live, size, writer);
        if let Some(class) = class {
            Self::add(&self.class_blocks[class], 1, writer);
        }
    }

    /// A block of `size` requested bytes freed, in size class `class` if any.
    #[inline]
    pub(crate) fn freed(&self, size: usize, class: Option<usize>, writer: Writer) {
        Self::add(&self.live, size.wrapping_neg(), writer);
        if let Some(class) = class {
            Self::add(&self.class_blocks[class], usize::MAX, writer);
        }
    }

    /// A block's requested size changed in place by `realloc`.
    #[inline]
    pub(crate) fn resized(&self, old: usize, new: usize, writer: Writer) {
        Self::add(&self.live, new.wrapping_sub(old), writer);
    }

    /// `bytes` of spans started (positive) or stopped (`wrapping_neg`) holding blocks.
    #[inline]
    pub(crate) fn in_use(&self, bytes: usize, writer: Writer) {
        Self::add(&self.in_use, bytes, writer);
    }

    /// The heap's reserve now holds `bytes`.
    #[inline]
    pub(crate) fn set_reserve(&self, bytes: usize) {
        self.reserve.store(bytes, Ordering::Relaxed);
    }

    /// Adds these counters to `totals` (`live`, `in_use`, `reserve`, per-class blocks).
    pub(crate) fn sum_into(&self, totals: &mut Totals) {
        totals.live = totals.live.wrapping_add(self.live.load(Ordering::Relaxed));
        totals.in_use = totals
            .in_use
            .wrapping_add(self.in_use.load(Ordering::Relaxed));
        totals.reserve += self.reserve.load(Ordering::Relaxed);
        for (total, blocks) in totals.class_blocks.iter_mut().zip(&self.class_blocks) {
            *total = total.wrapping_add(blocks.load(Ordering::Relaxed));
        }
    }
}

/// Sums of [`HeapCounters`] over heaps.
pub(crate) struct Totals {
    pub(crate) live: usize,
    pub(crate) in_use: usize,
    pub(crate) reserve: usize,
    pub(crate) class_blocks: [usize; MAX_CLASS_COUNT],
}

impl Totals {
    pub(crate) const ZERO: Totals = Totals {
        live: 0,
        in_use: 0,
        reserve: 0,
        class_blocks: [0; MAX_CLASS_COUNT],
    };
}

/// The shared counters of one instance.
pub(crate) struct Counters {
    mapped: AtomicUsize,
    mapped_peak: AtomicUsize,
    mapped_total: AtomicUsize,
    unmapped_total: AtomicUsize,
    heaps: AtomicUsize,
    heap_records: AtomicUsize,
    huge: AtomicUsize,
    released: AtomicUsize,
    /// The counters of threads without a heap (before their first allocation, after
    /// their exit).
    pub(crate) heapless: HeapCounters,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            mapped: AtomicUsize::new(0),
            mapped_peak: AtomicUsize::new(0),
            mapped_total: AtomicUsize::new(0),
            unmapped_total: AtomicUsize::new(0),
            heaps: AtomicUsize::new(0),
            heap_records: AtomicUsize::new(0),
            huge: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            heapless: HeapCounters::new(),
        }
    }

    #[inline]
    pub(crate) fn mapped(&self, bytes: usize) {
        let now = self.mapped.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.mapped_peak.fetch_max(now, Ordering::Relaxed);
        self.mapped_total.fetch_add(bytes, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn unmapped(&self, bytes: usize) {
        self.mapped.fetch_sub(bytes, Ordering::Relaxed);
        self.unmapped_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A heap record of `bytes` mapped.
    pub(crate) fn heap_created(&self, bytes: usize) {
        self.heaps.fetch_add(1, Ordering::Relaxed);
        self.heap_records.fetch_add(bytes, Ordering::Relaxed);
        self.mapped(bytes);
    }

    /// `bytes` of huge mappings added (positive) or removed (`wrapping_neg`).
    #[inline]
    pub(crate) fn huge(&self, bytes: usize) {
        self.huge.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` of runs given back to the OS inside a mapping that stays (positive), or
    /// leaving with their mapping (`wrapping_neg`).
    #[inline]
    pub(crate) fn released(&self, bytes: usize) {
        self.released.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The snapshot of these counters and `totals` (the heaps' sums); the caches and
    /// classes are filled in by the caller.
    pub(crate) fn snapshot(&self, totals: &Totals) -> Statistics {
        Statistics {
            mapped: self.mapped.load(Ordering::Relaxed),
            mapped_peak: self.mapped_peak.load(Ordering::Relaxed),
            mapped_total: self.mapped_total.load(Ordering::Relaxed),
            unmapped_total: self.unmapped_total.load(Ordering::Relaxed),
            live: totals.live,
            in_use: totals
                .in_use
                .wrapping_add(self.huge.load(Ordering::Relaxed)),
            thread_cache: 0,
            global_cache: 0,
            reserve: totals.reserve,
            released: self.released.load(Ordering::Relaxed),
            heap_records: self.heap_records.load(Ordering::Relaxed),
            heaps: self.heaps.load(Ordering::Relaxed),
            classes: ClassTable::default(),
        }
    }
}
