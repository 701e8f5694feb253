//! The primitives under Miri, which has no `madvise`, no `mremap`, and whose `munmap`
//! takes only a whole region one `mmap` returned: mappings are allocations of
//! [`std::alloc::System`] (page-aligned, zeroed), with a table of regions so that parts of
//! one can be "unmapped" separately; the allocation is freed when every byte of it is.
//! Everything above this layer runs unchanged. Decommitted pages are zeroed, as
//! `MADV_DONTNEED` leaves them. Huge pages are refused (the callers fall back), and
//! `remap` always refuses (the callers copy).

use super::Primitives;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Page size reported (and mapping alignment).
const PAGE: usize = 4096;

/// Regions live at once; tests under Miri are scaled to stay far below.
const MAX_REGIONS: usize = 4096;

/// The largest mapping granted, as an OS with a small address space would: Miri aborts
/// (it does not return null) on an allocation it cannot make, and the tests' 64 TiB
/// requests must be refused, not abort the run.
const MAX_MAP: usize = 1 << 32;

/// One `map`ped allocation and how many of its bytes were unmapped since.
#[derive(Clone, Copy)]
struct Region {
    base: *mut u8,
    len: usize,
    unmapped: usize,
}

// SAFETY: `base` is only an address to free, reached under the table's lock.
unsafe impl Send for Region {}

/// Live regions (`len == 0`: a free slot).
static REGIONS: Mutex<[Region; MAX_REGIONS]> = Mutex::new(
    [Region {
        base: ptr::null_mut(),
        len: 0,
        unmapped: 0,
    }; MAX_REGIONS],
);

/// The live regions' bases and lengths again, read without the lock by [`root_at`]
/// (slot `i` mirrors `REGIONS[i]`; a length of 0 is a free slot). Relaxed atomics: a
/// lookup is for an address the caller obtained through the allocator's own
/// synchronization, which orders the region's entry before it, and a lock here would add
/// happens-before edges between every two frees that would hide real data races from
/// Miri.
static ROOTS: [(AtomicPtr<u8>, AtomicUsize); MAX_REGIONS] =
    [const { (AtomicPtr::new(ptr::null_mut()), AtomicUsize::new(0)) }; MAX_REGIONS];

/// Slots of `ROOTS` ever used (lookups scan these).
static ROOTS_USED: AtomicUsize = AtomicUsize::new(0);

/// The base pointer of the live mapping holding `addr`, as `map` returned it (with the
/// allocation's own provenance), if `addr` is in one.
///
/// The allocator finds a span header by masking a block's address. The block pointer a
/// program frees carries the program's provenance — under Tree Borrows a tag of the
/// program's own references, which other frees' writes to the header may have disabled —
/// so the header must be reached with the mapping's provenance instead (in other builds
/// the same comes from exposed provenance, see `addr.rs`).
pub(crate) fn root_at(addr: usize) -> Option<*mut u8> {
    std::thread_local! {
        /// The slot of this thread's last hit: most lookups fall in the same mapping, and
        /// Miri interprets every step of a scan.
        static LAST: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }
    let hit = |i: usize| {
        let (base, len) = &ROOTS[i];
        let len = len.load(Ordering::Relaxed);
        let base = base.load(Ordering::Relaxed);
        (len != 0 && base.addr() <= addr && addr < base.addr() + len).then_some(base)
    };
    let last = LAST.with(|l| l.get());
    if let Some(base) = hit(last) {
        return Some(base);
    }
    let used = ROOTS_USED.load(Ordering::Relaxed);
    let i = (0..used).find(|&i| hit(i).is_some())?;
    LAST.with(|l| l.set(i));
    hit(i)
}

/// Mappings as `System` allocations.
pub(crate) struct Miri;

impl Primitives for Miri {
    fn map(len: usize, huge_pages: bool) -> *mut u8 {
        if huge_pages || len == 0 || len > MAX_MAP {
            return ptr::null_mut();
        }
        let Ok(layout) = Layout::from_size_align(len, PAGE) else {
            return ptr::null_mut();
        };
        let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = regions.iter().position(|r| r.len == 0) else {
            return ptr::null_mut();
        };
        // SAFETY: a non-zero size.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            regions[i] = Region {
                base: p,
                len,
                unmapped: 0,
            };
            ROOTS[i].0.store(p, Ordering::Relaxed);
            ROOTS[i].1.store(len, Ordering::Relaxed);
            ROOTS_USED.fetch_max(i + 1, Ordering::Relaxed);
        }
        p
    }

    fn map_record(len: usize) -> *mut u8 {
        Self::map(len.next_multiple_of(PAGE), false)
    }

    unsafe fn unmap(p: *mut u8, len: usize) {
        let start = p.addr();
        let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
        let i = regions
            .iter()
            .position(|r| r.len != 0 && r.base.addr() <= start && start < r.base.addr() + r.len)
            .expect("unmap of memory that was not mapped");
        let region = &mut regions[i];
        assert!(
            start + len <= region.base.addr() + region.len,
            "unmap beyond a mapping"
        );
        region.unmapped += len;
        assert!(region.unmapped <= region.len, "a range unmapped twice");
        if region.unmapped == region.len {
            let base = region.base;
            let layout = Layout::from_size_align(region.len, PAGE).expect("mapped layout");
            region.len = 0;
            ROOTS[i].1.store(0, Ordering::Relaxed);
            // SAFETY: the allocation `map` made with this layout; every byte of it is
            // unmapped now, so nothing uses it.
            unsafe { System.dealloc(base, layout) };
        }
    }

    unsafe fn decommit(p: *mut u8, len: usize) {
        // SAFETY: per the contract the pages are ours and unused; they read back as zero.
        unsafe { p.write_bytes(0, len) };
    }

    fn advise_huge(_p: *mut u8, _len: usize) {}

    unsafe fn remap(_p: *mut u8, _old_len: usize, _new_len: usize, _align: usize) -> *mut u8 {
        ptr::null_mut()
    }

    fn page_size() -> usize {
        PAGE
    }

    fn now_ms() -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_millis() as u64
    }
}
