//! The primitives under Miri, which has no `madvise`, no `mremap`, and whose `munmap`
//! takes only a whole region one `mmap` returned: mappings are allocations of
//! [`std::alloc::System`] (page-aligned, zeroed), with a table of regions so that parts of
//! one can be "unmapped" separately; the allocation is freed when every byte of it is.
//! Everything above this layer runs unchanged. Decommitted pages are zeroed, as
//! `MADV_DONTNEED` leaves them. Huge pages are refused (the callers fall back), and
//! `remap` always refuses (the callers copy).

use super::Primitives;
use core::ptr;
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
        let Some(slot) = regions.iter_mut().find(|r| r.len == 0) else {
            return ptr::null_mut();
        };
        // SAFETY: a non-zero size.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            *slot = Region {
                base: p,
                len,
                unmapped: 0,
            };
        }
        p
    }

    fn map_record(len: usize) -> *mut u8 {
        Self::map(len.next_multiple_of(PAGE), false)
    }

    unsafe fn unmap(p: *mut u8, len: usize) {
        let start = p.addr();
        let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
        let region = regions
            .iter_mut()
            .find(|r| r.len != 0 && r.base.addr() <= start && start < r.base.addr() + r.len)
            .expect("unmap of memory that was not mapped");
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
