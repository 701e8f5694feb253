//! The OS layer: anonymous mappings that are aligned, partially unmapped, decommitted and
//! moved. Everything here is a thin, checked wrapper over `mmap`, `munmap`, `madvise` and
//! `mremap` from `libc`; `memmap2` cannot align a mapping, unmap part of one or move one.
//!
//! Every function reports failure as a null pointer or `false`: the allocator turns that
//! into a null return to the caller, never a panic.

use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The huge page size assumed for `MAP_HUGETLB` (x86-64 and aarch64 default).
const HUGE_PAGE_SIZE: usize = 2 << 20;

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// A coarse monotonic clock in milliseconds (`CLOCK_MONOTONIC_COARSE`: a vDSO read, no
/// syscall), for ageing cached spans.
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; the clock exists on every Linux this builds for. On
    // failure `ts` stays zero: stamps of 0 are expired at once, so ageing is simply off
    // and memory goes back as before.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The OS page size, read once.
#[inline]
pub(crate) fn page_size() -> usize {
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    read_page_size()
}

#[cold]
fn read_page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = if raw > 0 { raw as usize } else { 4096 };
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// Rounds `value` up to a multiple of the power of two `align`; `None` on overflow.
#[inline]
pub(crate) const fn align_up(value: usize, align: usize) -> Option<usize> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Rounds `value` up to a multiple of the power of two `align` (a mask, not a division:
/// `usize::next_multiple_of` with a runtime divisor compiles to `div`). The caller knows
/// it cannot overflow.
#[inline(always)]
pub(crate) const fn align_up_pow2(value: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    (value + align - 1) & !(align - 1)
}

/// Maps `len` bytes of fresh zeroed read-write memory at an address `r` such that
/// `(r + offset) % align == 0`, trimming the over-mapping. `len` must be a multiple of the
/// page size, `align` a power of two and `offset` a multiple of the page size.
/// Returns null when the OS refuses.
pub(crate) fn map_aligned(len: usize, align: usize, offset: usize, huge_pages: bool) -> *mut u8 {
    map_padded(len, align, offset, huge_pages, true).start
}

/// An aligned mapping that may keep its alignment slack mapped: `head` bytes before
/// `start` and `tail` bytes after `start + len` belong to it.
pub(crate) struct Mapping {
    /// The aligned address; null when the OS refused.
    pub start: *mut u8,
    /// Mapped bytes before `start`.
    pub head: usize,
    /// Mapped bytes after the requested length.
    pub tail: usize,
}

/// As [`map_aligned`]; with `trim` false the slack stays mapped (untouched, so it costs
/// address space only), which saves a `munmap` per mapping for blocks that are mapped and
/// unmapped whole.
pub(crate) fn map_padded(
    len: usize,
    align: usize,
    offset: usize,
    huge_pages: bool,
    trim: bool,
) -> Mapping {
    let refused = Mapping {
        start: ptr::null_mut(),
        head: 0,
        tail: 0,
    };
    let page = page_size();
    debug_assert!(
        len.is_multiple_of(page) && offset.is_multiple_of(page) && align.is_power_of_two()
    );
    if huge_pages && align <= HUGE_PAGE_SIZE && offset == 0 && len.is_multiple_of(HUGE_PAGE_SIZE) {
        // MAP_HUGETLB mappings are huge-page aligned already; when the system has no
        // reserved huge pages this fails and we fall back quietly.
        let p = raw_map(len, libc::MAP_HUGETLB);
        if !p.is_null() {
            return Mapping {
                start: p,
                head: 0,
                tail: 0,
            };
        }
    }
    let slack = align.saturating_sub(page);
    let Some(total) = len.checked_add(slack) else {
        return refused;
    };
    let base = raw_map(total, 0);
    if base.is_null() {
        return refused;
    }
    let base_addr = base as usize;
    // `total` covers `len` bytes from the first suitably aligned address at or after base.
    let start = match align_up(base_addr + offset, align) {
        Some(a) => a - offset,
        None => base_addr,
    };
    let mut head = start - base_addr;
    let mut tail = total - head - len;
    if trim {
        if head > 0 {
            unmap(base, head);
        }
        if tail > 0 {
            unmap((start + len) as *mut u8, tail);
        }
        head = 0;
        tail = 0;
    }
    let p = start as *mut u8;
    if huge_pages {
        advise_huge(p, len);
    }
    Mapping {
        start: p,
        head,
        tail,
    }
}

fn raw_map(len: usize, extra_flags: libc::c_int) -> *mut u8 {
    #[cfg(test)]
    if fault::refuse(len) {
        return ptr::null_mut();
    }
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

fn advise_huge(p: *mut u8, len: usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: advice on a range we own; failure (no THP support) is harmless and ignored.
    unsafe {
        libc::madvise(p.cast(), len, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (p, len);
}

/// Unmaps `len` bytes at `p`, which must be a page-aligned range this allocator mapped and
/// no longer uses.
pub(crate) fn unmap(p: *mut u8, len: usize) {
    // SAFETY: the caller owns the range and hands it back; nothing references it afterwards.
    let rc = unsafe { libc::munmap(p.cast(), len) };
    debug_assert_eq!(rc, 0, "munmap failed");
}

/// Gives the physical pages of `[p, p + len)` back to the OS while keeping the address
/// range mapped. Only whole pages inside the range are released.
pub(crate) fn decommit(p: *mut u8, len: usize) {
    let page = page_size();
    let start = (p as usize).next_multiple_of(page);
    let end = (p as usize + len) & !(page - 1);
    if end <= start {
        return;
    }
    // SAFETY: MADV_DONTNEED on pages this allocator owns and no longer uses; they read back
    // as zero. (MADV_FREE would leave them counted as resident until memory pressure.)
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

/// Resizes the mapping `[p, p + old_len)` to `new_len` bytes, moving it if needed to an
/// address that is `align`-aligned; contents are kept without copying. Returns the new
/// address, or null (with the old mapping untouched) when the OS refuses.
#[cfg(target_os = "linux")]
pub(crate) fn remap(p: *mut u8, old_len: usize, new_len: usize, align: usize) -> *mut u8 {
    #[cfg(test)]
    if new_len > old_len && fault::refuse(new_len) {
        return ptr::null_mut();
    }
    // SAFETY: resizing in place (no MAYMOVE) either succeeds on our own mapping or fails
    // leaving it untouched.
    let r = unsafe { libc::mremap(p.cast(), old_len, new_len, 0) };
    if r != libc::MAP_FAILED {
        return p;
    }
    // Reserve an aligned window, then move the pages there: MREMAP_FIXED replaces the
    // reservation atomically, so no other mapping can land in between.
    let Some(total) = new_len.checked_add(align) else {
        return ptr::null_mut();
    };
    // SAFETY: a fresh PROT_NONE reservation, checked below.
    let res = unsafe {
        libc::mmap(
            ptr::null_mut(),
            total,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if res == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let res = res as usize;
    let target = (res + align - 1) & !(align - 1);
    // SAFETY: the target window lies inside our reservation; on failure the old mapping is
    // untouched and we drop the reservation.
    let moved = unsafe {
        libc::mremap(
            p.cast(),
            old_len,
            new_len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        unmap(res as *mut u8, total);
        return ptr::null_mut();
    }
    if target > res {
        unmap(res as *mut u8, target - res);
    }
    let tail = res + total - (target + new_len);
    if tail > 0 {
        unmap((target + new_len) as *mut u8, tail);
    }
    target as *mut u8
}

/// Without `mremap` the caller falls back to allocate, copy and free.
#[cfg(not(target_os = "linux"))]
pub(crate) fn remap(_p: *mut u8, _old_len: usize, _new_len: usize, _align: usize) -> *mut u8 {
    ptr::null_mut()
}

/// Test-only fault injection: make this thread's mappings fail, to check that the allocator
/// returns null, keeps live blocks, leaks nothing and recovers.
#[cfg(test)]
pub(crate) mod fault {
    use core::cell::Cell;

    std::thread_local! {
        /// (mappings still allowed, refuse mappings larger than this)
        static PLAN: Cell<(usize, usize)> = const { Cell::new((usize::MAX, usize::MAX)) };
    }

    /// Lets `allowed` more mappings through on this thread, then refuses all.
    pub(crate) fn fail_after(allowed: usize) {
        PLAN.with(|p| p.set((allowed, usize::MAX)));
    }

    /// Refuses this thread's mappings larger than `bytes`.
    pub(crate) fn fail_above(bytes: usize) {
        PLAN.with(|p| p.set((usize::MAX, bytes)));
    }

    /// Stops injecting failures on this thread.
    pub(crate) fn reset() {
        PLAN.with(|p| p.set((usize::MAX, usize::MAX)));
    }

    /// Whether the mapping of `len` bytes about to be made should fail.
    pub(super) fn refuse(len: usize) -> bool {
        PLAN.with(|p| {
            let (allowed, above) = p.get();
            if len > above || allowed == 0 {
                return true;
            }
            if allowed != usize::MAX {
                p.set((allowed - 1, above));
            }
            false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_mapping_honours_alignment_and_offset() {
        let page = page_size();
        for &(align, offset) in &[(65536usize, 0usize), (1 << 21, 0), (1 << 20, 65536)] {
            let len = 4 * page;
            let p = map_aligned(len, align, offset, false);
            assert!(!p.is_null());
            assert_eq!((p as usize + offset) % align, 0);
            // SAFETY: p is a fresh mapping of len bytes.
            unsafe {
                assert_eq!(*p.add(len - 1), 0);
                p.write_bytes(0xAB, len);
            }
            unmap(p, len);
        }
    }

    #[test]
    fn refused_mapping_is_null() {
        assert!(map_aligned(1 << 46, 65536, 0, false).is_null());
        assert!(map_aligned(usize::MAX & !0xFFFF, 65536, 0, false).is_null());
    }

    #[test]
    fn remap_keeps_contents_and_alignment() {
        let page = page_size();
        let align = 1 << 16;
        let p = map_aligned(4 * page, align, 0, false);
        // SAFETY: p is ours, 4 pages.
        unsafe { p.write_bytes(7, 4 * page) };
        let q = remap(p, 4 * page, 1 << 22, align);
        assert!(!q.is_null());
        assert_eq!(q as usize % align, 0);
        // SAFETY: q now maps 4 MiB with the first 4 pages moved from p.
        unsafe {
            assert_eq!(*q.add(4 * page - 1), 7);
            assert_eq!(*q.add((1 << 22) - 1), 0);
        }
        unmap(q, 1 << 22);
    }
}
