//! The OS layer: anonymous mappings that are aligned, partially unmapped, decommitted and
//! moved, and a coarse clock.
//!
//! The platform's calls are behind two traits, [`Primitives`] (memory and the clock) and
//! [`Hooks`] (thread exit and `fork`), with one implementation per platform: `unix.rs`
//! (`mmap`, `munmap`, `madvise`, `mremap` on Linux, pthread keys, `pthread_atfork`),
//! `windows.rs` (`VirtualAlloc` and `VirtualFree`, fiber-local storage for thread exit)
//! and, for the memory under Miri, `miri.rs` (whole-region bookkeeping over
//! `std::alloc::System`, since Miri's `munmap` takes only a whole region and it has no
//! `madvise`). This module builds what the
//! allocator needs on top — aligned mappings, the page size read once, test-only fault
//! injection — the same for every platform.
//!
//! Every function reports failure as a null pointer or `false`: the allocator turns that
//! into a null return to the caller, never a panic.

use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

pub(crate) mod addr;
#[cfg(miri)]
mod miri;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(not(any(unix, windows)))]
compile_error!("rpmalloc supports Unix (Linux, macOS, the BSDs) and Windows");

/// The platform's memory primitives.
#[cfg(all(unix, not(miri)))]
type Sys = unix::Unix;
/// The platform's memory primitives.
#[cfg(all(windows, not(miri)))]
type Sys = windows::Windows;
/// The platform's memory primitives: under Miri, its own (see `miri.rs`).
#[cfg(miri)]
type Sys = miri::Miri;

/// The platform's thread-exit and fork hooks (Miri emulates pthread keys and
/// `pthread_atfork`, so the Unix ones serve under it too).
#[cfg(unix)]
type SysHooks = unix::Unix;
/// The platform's thread-exit and fork hooks.
#[cfg(windows)]
type SysHooks = windows::Windows;

/// What a thread's exit runs (see [`exit_key_create`]).
pub(crate) trait ThreadExit {
    /// Called once as a thread that gave its exit key a value exits, after the thread's
    /// own code, with that value. (On Windows also when a fiber that has a value is
    /// deleted, with the fiber's value, which may not be the calling thread's: the hook
    /// checks.)
    ///
    /// # Safety
    /// Only the platform's exit hook calls this, on the exiting thread (or the thread
    /// deleting a fiber), with a non-null value some thread set.
    unsafe fn on_exit(value: *mut u8);
}

/// What a `fork` runs around it (see [`at_fork`]). The handlers may only take, release
/// and reset locks and wait for other threads: between `fork` and `exec` a child may
/// call only async-signal-safe functions.
#[cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
pub(crate) trait ForkHandlers {
    /// Before the fork, in the forking thread.
    fn prepare();
    /// After the fork, in the parent.
    ///
    /// # Safety
    /// [`ForkHandlers::prepare`] ran on this thread just before.
    unsafe fn parent();
    /// After the fork, in the child (whose only thread is the one that forked).
    ///
    /// # Safety
    /// Called in the child right after a fork that [`ForkHandlers::prepare`] prepared.
    unsafe fn child();
}

/// The platform's hooks on thread exit and `fork`.
pub(crate) trait Hooks {
    /// A new thread-exit key whose hook runs `H::on_exit` in every exiting thread that
    /// gave the key a non-null value; `None` when the platform has no key left.
    fn exit_key_create<H: ThreadExit>() -> Option<usize>;

    /// Gives the calling thread's `key` the value `value`.
    ///
    /// # Safety
    /// `key` came from [`Hooks::exit_key_create`] and was not deleted.
    unsafe fn exit_key_set(key: usize, value: *mut u8);

    /// Deletes a key no thread has given a value.
    ///
    /// # Safety
    /// `key` came from [`Hooks::exit_key_create`], was never given a value and is not
    /// used again.
    unsafe fn exit_key_delete(key: usize);

    /// Installs `F`'s handlers around every later `fork` (nothing where there is no
    /// `fork`).
    fn at_fork<F: ForkHandlers>();
}

/// A new thread-exit key running `H::on_exit` (see [`Hooks::exit_key_create`]).
pub(crate) fn exit_key_create<H: ThreadExit>() -> Option<usize> {
    SysHooks::exit_key_create::<H>()
}

/// Gives the calling thread's `key` the value `value`.
///
/// # Safety
/// `key` came from [`exit_key_create`] and was not deleted.
pub(crate) unsafe fn exit_key_set(key: usize, value: *mut u8) {
    // SAFETY: the caller's contract, which the platform's function has too.
    unsafe { SysHooks::exit_key_set(key, value) }
}

/// Deletes a key no thread has given a value.
///
/// # Safety
/// `key` came from [`exit_key_create`], was never given a value and is not used again.
pub(crate) unsafe fn exit_key_delete(key: usize) {
    // SAFETY: the caller's contract, which the platform's function has too.
    unsafe { SysHooks::exit_key_delete(key) }
}

/// Installs `F`'s handlers around every later `fork`.
pub(crate) fn at_fork<F: ForkHandlers>() {
    SysHooks::at_fork::<F>()
}

/// What the allocator needs from the operating system. One implementation per platform;
/// everything above this layer uses the functions of this module, never the trait's.
pub(crate) trait Primitives {
    /// Maps `len` bytes (a non-zero multiple of the page size) of zeroed read-write memory
    /// at a page-aligned address, backed by huge pages with `huge_pages` (which the
    /// platform may refuse); null when the OS refuses.
    fn map(len: usize, huge_pages: bool) -> *mut u8;

    /// Maps `len` bytes of zeroed read-write memory for a heap record, which is never
    /// unmapped; null when the OS refuses.
    fn map_record(len: usize) -> *mut u8;

    /// Unmaps `[p, p + len)`.
    ///
    /// # Safety
    /// The range is page-aligned, lies inside memory [`Primitives::map`] returned, has not
    /// been unmapped before, and nothing uses it any more.
    unsafe fn unmap(p: *mut u8, len: usize);

    /// Gives the physical pages of `[p, p + len)` back to the OS while keeping the
    /// address range (their contents are lost; on Windows they are not even readable).
    ///
    /// # Safety
    /// The range is whole pages of a live mapping of ours that nothing uses, and nothing
    /// touches it again before it is unmapped.
    unsafe fn decommit(p: *mut u8, len: usize);

    /// Asks for huge pages under `[p, p + len)`: a hint, which may be ignored.
    fn advise_huge(p: *mut u8, len: usize);

    /// Resizes the mapping `[p, p + old_len)` to `new_len` bytes, moving it if needed to
    /// an `align`-aligned address, keeping its contents. Null (the mapping untouched) when
    /// the OS refuses or cannot.
    ///
    /// # Safety
    /// `[p, p + old_len)` is one whole mapping of ours (one [`Primitives::map`] or
    /// `remap`, with nothing of it unmapped), `align` a power of two, `new_len` a multiple
    /// of the page size; on success the old range is no longer ours.
    unsafe fn remap(p: *mut u8, old_len: usize, new_len: usize, align: usize) -> *mut u8;

    /// The page size.
    fn page_size() -> usize;

    /// A coarse monotonic clock in milliseconds, for ageing cached spans.
    fn now_ms() -> u64;
}

/// The huge page size assumed for huge-page mappings (x86-64 and aarch64 default).
const HUGE_PAGE_SIZE: usize = 2 << 20;

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// A coarse monotonic clock in milliseconds, for ageing cached spans.
#[inline]
pub(crate) fn now_ms() -> u64 {
    Sys::now_ms()
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
    let size = Sys::page_size();
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
        let p = raw_map(len, true);
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
    let base = raw_map(total, false);
    if base.is_null() {
        return refused;
    }
    let base_addr = base.addr();
    // `total` covers `len` bytes from the first suitably aligned address at or after base.
    let start = match align_up(base_addr + offset, align) {
        Some(a) => a - offset,
        None => base_addr,
    };
    let mut head = start - base_addr;
    let mut tail = total - head - len;
    if trim {
        if head > 0 {
            // SAFETY: the slack before the aligned start, ours and unused.
            unsafe { unmap(base, head) };
        }
        if tail > 0 {
            // SAFETY: the slack after the aligned range, ours and unused.
            unsafe { unmap(addr::with_addr(base, start + len), tail) };
        }
        head = 0;
        tail = 0;
    }
    let p = addr::with_addr(base, start);
    if huge_pages {
        Sys::advise_huge(p, len);
    }
    Mapping {
        start: p,
        head,
        tail,
    }
}

/// A mapping of `len` bytes from the platform (huge pages with `huge_pages`), unless a
/// test injects a failure.
fn raw_map(len: usize, huge_pages: bool) -> *mut u8 {
    #[cfg(test)]
    if fault::refuse(len) {
        return ptr::null_mut();
    }
    let p = Sys::map(len, huge_pages);
    // Span headers are later reached from block addresses through exposed provenance
    // (`addr.rs`): expose the mapping's own.
    let _ = p.expose_provenance();
    p
}

/// Maps a heap record of `len` bytes (zeroed, page-aligned, never unmapped); null when the
/// OS refuses.
pub(crate) fn map_record(len: usize) -> *mut u8 {
    #[cfg(test)]
    if fault::refuse(len) {
        return ptr::null_mut();
    }
    Sys::map_record(len)
}

/// Unmaps `len` bytes at `p`.
///
/// # Safety
/// `[p, p + len)` is page-aligned, lies inside one mapping this module made (not a heap
/// record), was not unmapped before, and nothing uses it any more.
pub(crate) unsafe fn unmap(p: *mut u8, len: usize) {
    // SAFETY: a page-aligned range inside one of our mappings, unmapped once and unused
    // (the contract), which is what the platform's `unmap` requires.
    unsafe { Sys::unmap(p, len) }
}

/// Gives the physical pages of `[p, p + len)` back to the OS while keeping the address
/// range reserved (the contents are lost). Only whole pages inside the range are
/// released. The allocator releases a run's pages this way when it gives the run up for
/// good: the range is unmapped with the rest of its mapping later.
///
/// # Safety
/// The range lies inside a live mapping this module made, nothing uses it, and nothing
/// touches it again before it is unmapped.
pub(crate) unsafe fn decommit(p: *mut u8, len: usize) {
    let page = page_size();
    let start = p.addr().next_multiple_of(page);
    let end = (p.addr() + len) & !(page - 1);
    if end <= start {
        return;
    }
    // SAFETY: whole pages inside the caller's range, per the contract.
    unsafe { Sys::decommit(addr::with_addr(p, start), end - start) }
}

/// Resizes the mapping `[p, p + old_len)` to `new_len` bytes, moving it if needed to an
/// address that is `align`-aligned; contents are kept without copying. Returns the new
/// address, or null (with the old mapping untouched) when the OS refuses or cannot (then
/// the caller allocates, copies and frees).
///
/// # Safety
/// `[p, p + old_len)` is one whole mapping this module made (slack trimmed, nothing else
/// unmapped), `align` a power of two and `new_len` a multiple of the page size. On
/// success the old range must not be used again.
pub(crate) unsafe fn remap(p: *mut u8, old_len: usize, new_len: usize, align: usize) -> *mut u8 {
    #[cfg(test)]
    if new_len > old_len && fault::refuse(new_len) {
        return ptr::null_mut();
    }
    // SAFETY: one whole mapping of ours, a power-of-two alignment and a page-multiple
    // length (the contract), as the platform's `remap` requires.
    unsafe { Sys::remap(p, old_len, new_len, align) }
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
            // SAFETY: the whole mapping made above, no longer used.
            unsafe { unmap(p, len) };
        }
    }

    #[test]
    fn the_clock_never_goes_back() {
        let mut last = now_ms();
        for _ in 0..100 {
            let now = now_ms();
            assert!(now >= last, "{now} after {last}");
            last = now;
        }
    }

    #[test]
    fn refused_mapping_is_null() {
        assert!(map_aligned(1 << 46, 65536, 0, false).is_null());
        assert!(map_aligned(usize::MAX & !0xFFFF, 65536, 0, false).is_null());
    }

    #[test]
    #[cfg_attr(
        any(miri, not(target_os = "linux")),
        ignore = "only Linux has mremap (not Miri): elsewhere remap always refuses"
    )]
    fn remap_keeps_contents_and_alignment() {
        let page = page_size();
        let align = 1 << 16;
        let p = map_aligned(4 * page, align, 0, false);
        // SAFETY: p is ours, 4 pages.
        unsafe { p.write_bytes(7, 4 * page) };
        // SAFETY: p is one whole, trimmed mapping of 4 pages, not used after the move.
        let q = unsafe { remap(p, 4 * page, 1 << 22, align) };
        assert!(!q.is_null());
        assert_eq!(q as usize % align, 0);
        // SAFETY: q now maps 4 MiB with the first 4 pages moved from p.
        unsafe {
            assert_eq!(*q.add(4 * page - 1), 7);
            assert_eq!(*q.add((1 << 22) - 1), 0);
        }
        // SAFETY: the whole moved mapping, no longer used.
        unsafe { unmap(q, 1 << 22) };
    }
}
