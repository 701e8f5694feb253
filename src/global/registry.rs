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

    /// Sets (`on`) or clears the bits of the granules of `[start, start + len)`; false
    /// (nothing changed) when a leaf could not be made. `start` is span-aligned.
    fn update(&self, start: usize, len: usize, span_size: usize, on: bool) -> bool {
        let first = start / span_size;
        let end = (start + len).div_ceil(span_size);
        let per_leaf = (1usize << LEAF_BITS) / span_size;
        // Marking: make (or find) every leaf first, so a refusal leaves nothing half
        // marked. (Clearing needs no leaf that is missing: nothing was marked there.)
        let mut granule = first;
        while on && granule < end {
            if self.leaf(granule * span_size, span_size, true).is_null() {
                return false;
            }
            granule = (granule / per_leaf + 1) * per_leaf;
        }
        for granule in first..end {
            let leaf = self.leaf(granule * span_size, span_size, false);
            if leaf.is_null() {
                continue;
            }
            let bit = granule % per_leaf;
            // SAFETY: `bit / 64` is below the leaf's `per_leaf / 64` words (at least one),
            // inside the leaf, which is never unmapped.
            let word = unsafe { &*leaf.add(bit / 64) };
            let mask = 1u64 << (bit % 64);
            if on {
                word.fetch_or(mask, Ordering::Release);
            } else {
                word.fetch_and(!mask, Ordering::Release);
            }
        }
        true
    }

    /// Marks `[start, start + len)` (span-aligned `start`) as ours; false when the OS
    /// refused memory for the registry (the caller then gives the mapping back and fails).
    #[cold]
    pub(crate) fn mark(&self, start: *mut u8, len: usize, span_size: usize) -> bool {
        self.update(start.addr(), len, span_size, true)
    }

    /// Unmarks `[start, start + len)` (span-aligned `start`), before it is unmapped.
    #[cold]
    pub(crate) fn unmark(&self, start: *mut u8, len: usize, span_size: usize) {
        self.update(start.addr(), len, span_size, false);
    }

    /// Whether `ptr` lies in a granule one of our live mappings marked.
    #[inline]
    pub(crate) fn owns(&self, ptr: *const u8, span_size: usize) -> bool {
        let addr = ptr.addr();
        let leaf = self.leaf(addr, span_size, false);
        if leaf.is_null() {
            return false;
        }
        let bit = (addr % (1usize << LEAF_BITS)) / span_size;
        // SAFETY: as in `update`: a word inside a live leaf.
        let word = unsafe { &*leaf.add(bit / 64) };
        word.load(Ordering::Acquire) & (1u64 << (bit % 64)) != 0
    }
}
