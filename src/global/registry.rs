//! Which addresses are this configuration's: one bit per span-sized granule of the
//! address space, set while a mapping of ours that may hold a block's start covers it.
//! It answers `owns(ptr)` — whether `ptr` can be a block of this allocator — which the C
//! ABI needs before it trusts a pointer handed to `free` (one from another allocator:
//! the dynamic loader's early blocks, memory allocated before the library was loaded).
//! Nothing on the Rust API's paths reads it: `GlobalAlloc` callers promise their
//! pointers.
//!
//! Every mapping of ours starts span-aligned (span mappings at their master, huge blocks
//! at their header), so a granule is never shared between two of our mappings. A span
//! mapping marks all its granules (a run, hence a block, may start in any span of it); a
//! huge block only the two where its start can be (the header's span, and the next for
//! a block aligned to the span size or more), since nothing else in it is a block start.
//! Bits are set before a mapping's memory is handed out and cleared before it is
//! unmapped, so a live block always reads as ours.
//!
//! Two levels, as mimalloc's segment map: a table of [`TOP_ENTRIES`] pointers (one per
//! 4 GiB of a 48-bit address space) to leaves of one bit per granule of those 4 GiB,
//! each mapped from the OS when first needed (a mapping is never marked in a leaf that
//! could not be made: the mapping is refused instead). The table itself is mapped on first
//! use (512 KiB of address space, of which the pages touched are a few), so the registry
//! costs nothing until then and is no `static` array (which Miri would retag whole at
//! each use).

use crate::os;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// The address bits the registry covers: user addresses on x86-64 and AArch64 (without
/// 5-level paging, which Linux gives only to programs that ask for addresses above).
const ADDRESS_BITS: u32 = 48;
/// The address bits one leaf covers (4 GiB).
const LEAF_BITS: u32 = 32;
/// Leaves in the table.
const TOP_ENTRIES: usize = 1 << (ADDRESS_BITS - LEAF_BITS);

/// The granules of this configuration's mappings (see the module doc).
pub(crate) struct Registry {
    /// The table of [`TOP_ENTRIES`] leaf pointers (null until the first mark).
    top: AtomicPtr<AtomicPtr<AtomicU64>>,
}

impl Registry {
    /// An empty registry (no table mapped yet).
    pub(crate) const fn new() -> Self {
        Registry {
            top: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The bytes of one leaf for granules of `span_size` bytes (whole pages).
    fn leaf_bytes(span_size: usize) -> usize {
        ((1usize << LEAF_BITS) / span_size / 8).next_multiple_of(os::page_size())
    }

    /// The table, mapped on first use; null when the OS refuses.
    fn table(&self) -> *mut AtomicPtr<AtomicU64> {
        let top = self.top.load(Ordering::Acquire);
        if !top.is_null() {
            return top;
        }
        let bytes = TOP_ENTRIES * size_of::<AtomicPtr<AtomicU64>>();
        let fresh =
            os::map_aligned(bytes, os::page_size(), 0, false).cast::<AtomicPtr<AtomicU64>>();
        if fresh.is_null() {
            return ptr::null_mut();
        }
        match self
            .top
            .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: our own fresh mapping of `bytes`, never published.
                unsafe { os::unmap(fresh.cast(), bytes) };
                theirs
            }
        }
    }

    /// The leaf of the granule at address `addr`, made if `create`; null when absent (or
    /// refused).
    fn leaf(&self, addr: usize, span_size: usize, create: bool) -> *mut AtomicU64 {
        let index = addr >> LEAF_BITS;
        if index >= TOP_ENTRIES {
            return ptr::null_mut();
        }
        let top = if create {
            self.table()
        } else {
            self.top.load(Ordering::Acquire)
        };
        if top.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: `index < TOP_ENTRIES`, inside the table mapped with that many entries
        // (zeroed: null pointers), which is never unmapped.
        let slot = unsafe { &*top.add(index) };
        let leaf = slot.load(Ordering::Acquire);
        if !leaf.is_null() || !create {
            return leaf;
        }
        let bytes = Self::leaf_bytes(span_size);
        let fresh = os::map_aligned(bytes, os::page_size(), 0, false).cast::<AtomicU64>();
        if fresh.is_null() {
            return ptr::null_mut();
        }
        match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: our own fresh mapping of `bytes`, never published.
                unsafe { os::unmap(fresh.cast(), bytes) };
                theirs
            }
        }
    }

    /// Sets (`on`) or clears the bits of the granules of `[start, start + len)`, a word
    /// (up to 64 granules) at a time; false (nothing left changed) when a leaf could not
    /// be made. `start` is span-aligned; `span_size` a power of two.
    #[cold]
    fn update(&self, start: usize, len: usize, span_size: usize, on: bool) -> bool {
        let shift = span_size.trailing_zeros();
        let leaf_shift = LEAF_BITS - shift;
        let first = start >> shift;
        let end = (start + len + span_size - 1) >> shift;
        let mut granule = first;
        while granule < end {
            let leaf_end = ((granule >> leaf_shift) + 1) << leaf_shift;
            let stop = end.min(leaf_end);
            let leaf = self.leaf(granule << shift, span_size, on);
            if leaf.is_null() {
                if on {
                    // Undo what this call marked: a refused mapping leaves no trace.
                    self.update(start, (granule - first) << shift, span_size, false);
                    return false;
                }
                // Clearing where no leaf was ever made: nothing was marked there.
                granule = stop;
                continue;
            }
            while granule < stop {
                let bit = granule & ((1 << leaf_shift) - 1);
                let word_end = stop.min(granule - bit % 64 + 64);
                let count = word_end - granule;
                let mask = if count == 64 {
                    u64::MAX
                } else {
                    ((1u64 << count) - 1) << (bit % 64)
                };
                // SAFETY: `bit / 64` is below the leaf's words (one bit per granule of the
                // leaf, rounded up to whole pages), inside the leaf, never unmapped.
                let word = unsafe { &*leaf.add(bit / 64) };
                if on {
                    word.fetch_or(mask, Ordering::Release);
                } else {
                    word.fetch_and(!mask, Ordering::Release);
                }
                granule = word_end;
            }
        }
        true
    }

    /// The word holding every granule of `[start, start + len)` and their bits in it,
    /// when they share one word of an existing leaf (a huge block's two granules, most
    /// span mappings): the common case, in a few loads.
    #[inline]
    fn one_word(&self, start: usize, len: usize, span_size: usize) -> Option<(&AtomicU64, u64)> {
        let shift = span_size.trailing_zeros();
        let first = start >> shift;
        let end = (start + len + span_size - 1) >> shift;
        // Leaves hold whole words (2^14 granules or more each), so one word is one leaf.
        if len == 0 || first >> 6 != (end - 1) >> 6 {
            return None;
        }
        let index = start >> LEAF_BITS;
        let top = self.top.load(Ordering::Acquire);
        if index >= TOP_ENTRIES || top.is_null() {
            return None;
        }
        // SAFETY: `index < TOP_ENTRIES`, inside the table (as in `leaf`).
        let leaf = unsafe { &*top.add(index) }.load(Ordering::Acquire);
        if leaf.is_null() {
            return None;
        }
        let bit = first & ((1 << (LEAF_BITS - shift)) - 1);
        let count = end - first;
        let mask = if count == 64 {
            u64::MAX
        } else {
            ((1u64 << count) - 1) << (bit % 64)
        };
        // SAFETY: a word inside a live leaf (as in `update`).
        Some((unsafe { &*leaf.add(bit / 64) }, mask))
    }

    /// Marks `[start, start + len)` (span-aligned `start`) as ours; false when the OS
    /// refused memory for the registry (the caller then gives the mapping back and fails).
    #[inline]
    pub(crate) fn mark(&self, start: *mut u8, len: usize, span_size: usize) -> bool {
        match self.one_word(start.addr(), len, span_size) {
            Some((word, mask)) => {
                word.fetch_or(mask, Ordering::Release);
                true
            }
            None => self.update(start.addr(), len, span_size, true),
        }
    }

    /// Unmarks `[start, start + len)` (span-aligned `start`), before it is unmapped.
    #[inline]
    pub(crate) fn unmark(&self, start: *mut u8, len: usize, span_size: usize) {
        match self.one_word(start.addr(), len, span_size) {
            Some((word, mask)) => {
                word.fetch_and(!mask, Ordering::Release);
            }
            None => {
                self.update(start.addr(), len, span_size, false);
            }
        }
    }

    /// Whether `ptr` lies in a granule one of our live mappings marked.
    #[inline]
    pub(crate) fn owns(&self, ptr: *const u8, span_size: usize) -> bool {
        // Three loads (table, leaf, word), inline: this runs on every C `free`.
        let addr = ptr.addr();
        let index = addr >> LEAF_BITS;
        let top = self.top.load(Ordering::Acquire);
        if index >= TOP_ENTRIES || top.is_null() {
            return false;
        }
        // SAFETY: `index < TOP_ENTRIES`, inside the table (as in `leaf`).
        let leaf = unsafe { &*top.add(index) }.load(Ordering::Acquire);
        if leaf.is_null() {
            return false;
        }
        let bit = (addr & ((1usize << LEAF_BITS) - 1)) >> span_size.trailing_zeros();
        // SAFETY: as in `update`: a word inside a live leaf.
        let word = unsafe { &*leaf.add(bit / 64) };
        word.load(Ordering::Acquire) & (1u64 << (bit % 64)) != 0
    }
}
