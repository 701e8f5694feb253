//! The Unix primitives: `mmap`, `munmap`, `clock_gettime`, pthread keys for thread exit
//! and `pthread_atfork`; on Linux (and Android) also `madvise(MADV_DONTNEED)` to release
//! pages, `MAP_HUGETLB`/`MADV_HUGEPAGE` for huge pages, `mremap` to move huge blocks and
//! the vDSO's coarse clock.
//!
//! Elsewhere (macOS, FreeBSD and the other BSDs) pages are released with `MADV_FREE`
//! (there `MADV_DONTNEED` is only a hint); without `mremap`, huge blocks are moved by
//! copying; without `MAP_HUGETLB`, huge pages are refused and the allocator falls back to
//! normal pages.

use super::{ForkHandlers, Hooks, Primitives, ThreadExit};
use core::ptr;

/// The real operating system.
pub(crate) struct Unix;

impl Primitives for Unix {
    #[inline]
    fn map(len: usize, huge_pages: bool) -> *mut u8 {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let extra = if huge_pages { libc::MAP_HUGETLB } else { 0 };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let extra = {
            if huge_pages {
                return ptr::null_mut();
            }
            0
        };
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANON | extra,
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

    /// The record is mapped with `memmap2`: it needs no alignment beyond a page and is
    /// never partially unmapped, which is exactly what that crate offers.
    fn map_record(len: usize) -> *mut u8 {
        let Ok(mut map) = memmap2::MmapOptions::new().len(len).map_anon() else {
            return ptr::null_mut();
        };
        let p = map.as_mut_ptr();
        // The record lives for the rest of the process; keep the mapping.
        core::mem::forget(map);
        p
    }

    #[inline]
    unsafe fn unmap(p: *mut u8, len: usize) {
        // SAFETY: per the contract the range is ours, unused, and handed back.
        let rc = unsafe { libc::munmap(p.cast(), len) };
        debug_assert_eq!(rc, 0, "munmap failed");
    }

    #[inline]
    unsafe fn decommit(p: *mut u8, len: usize) {
        // Linux frees the pages at once with MADV_DONTNEED (MADV_FREE would leave them
        // counted as resident until memory pressure). On the BSDs and macOS,
        // MADV_DONTNEED is only a hint and MADV_FREE is what gives pages back (lazily, as
        // jemalloc and mimalloc use it there).
        #[cfg(any(
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "openbsd",
            target_os = "dragonfly"
        ))]
        const ADVICE: libc::c_int = libc::MADV_FREE;
        #[cfg(not(any(
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "openbsd",
            target_os = "dragonfly"
        )))]
        const ADVICE: libc::c_int = libc::MADV_DONTNEED;
        // SAFETY: per the contract, whole pages this allocator owns and does not touch
        // again before unmapping them; the advice only drops their contents.
        unsafe {
            libc::madvise(p.cast(), len, ADVICE);
        }
    }

    fn advise_huge(p: *mut u8, len: usize) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: advice only; on a range we own, and failure (no THP support) is
        // harmless and ignored.
        unsafe {
            libc::madvise(p.cast(), len, libc::MADV_HUGEPAGE);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (p, len);
    }

    #[cfg(target_os = "linux")]
    unsafe fn remap(p: *mut u8, old_len: usize, new_len: usize, align: usize) -> *mut u8 {
        // SAFETY: per the contract `[p, p + old_len)` is one whole mapping of ours;
        // resizing it in place (no MAYMOVE) either succeeds or fails leaving it untouched.
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
                libc::MAP_PRIVATE | libc::MAP_ANON | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if res == libc::MAP_FAILED {
            return ptr::null_mut();
        }
        let res = res.cast::<u8>();
        let target = res.map_addr(|a| (a + align - 1) & !(align - 1));
        // SAFETY: the target window lies inside our reservation; on failure the old
        // mapping is untouched and we drop the reservation.
        let moved = unsafe {
            libc::mremap(
                p.cast(),
                old_len,
                new_len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                target.cast::<libc::c_void>(),
            )
        };
        if moved == libc::MAP_FAILED {
            // SAFETY: our whole reservation, unused.
            unsafe { Self::unmap(res, total) };
            return ptr::null_mut();
        }
        let head = target.addr() - res.addr();
        if head > 0 {
            // SAFETY: the reservation's part before the moved pages, unused.
            unsafe { Self::unmap(res, head) };
        }
        let tail = total - head - new_len;
        if tail > 0 {
            // SAFETY: the reservation's part after the moved pages, unused.
            unsafe { Self::unmap(target.wrapping_add(new_len), tail) };
        }
        target
    }

    /// Without `mremap` the caller falls back to allocate, copy and free.
    #[cfg(not(target_os = "linux"))]
    unsafe fn remap(_p: *mut u8, _old_len: usize, _new_len: usize, _align: usize) -> *mut u8 {
        ptr::null_mut()
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if raw > 0 {
            raw as usize
        } else {
            4096
        }
    }

    /// `CLOCK_MONOTONIC_COARSE` where Linux has it: a vDSO read, no syscall.
    fn now_ms() -> u64 {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid out-pointer. On failure `ts` stays zero: stamps of 0 are expired
        // at once, so ageing is simply off and memory goes back as before.
        unsafe { libc::clock_gettime(CLOCK, &mut ts) };
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    }
}

impl Hooks for Unix {
    fn exit_key_create<H: ThreadExit>() -> Option<usize> {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: creating a key with a valid destructor function.
        if unsafe { libc::pthread_key_create(&mut key, Some(on_exit::<H>)) } != 0 {
            return None;
        }
        Some(key as usize)
    }

    unsafe fn exit_key_set(key: usize, value: *mut u8) {
        // SAFETY: a key `exit_key_create` made (the contract); a non-null value makes its
        // destructor run when this thread exits.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, value.cast()) };
    }

    unsafe fn exit_key_delete(key: usize) {
        // SAFETY: a key `exit_key_create` made and nothing uses (the contract).
        unsafe { libc::pthread_key_delete(key as libc::pthread_key_t) };
    }

    fn at_fork<F: ForkHandlers>() {
        // SAFETY: the handlers are plain functions; `F`'s contract is that they only take
        // and release (or reset) locks, which is what `pthread_atfork` allows.
        unsafe {
            libc::pthread_atfork(
                Some(fork_prepare::<F>),
                Some(fork_parent::<F>),
                Some(fork_child::<F>),
            );
        }
    }
}

/// The pthread key destructor: the exiting thread's value, to `H`.
unsafe extern "C" fn on_exit<H: ThreadExit>(value: *mut libc::c_void) {
    // SAFETY: run by the C library as the thread exits, with the non-null value the
    // thread set, which is what `ThreadExit::on_exit` requires.
    unsafe { H::on_exit(value.cast()) }
}

extern "C" fn fork_prepare<F: ForkHandlers>() {
    F::prepare();
}

extern "C" fn fork_parent<F: ForkHandlers>() {
    // SAFETY: `pthread_atfork` runs this in the parent after `fork_prepare` ran on the
    // same thread.
    unsafe { F::parent() };
}

extern "C" fn fork_child<F: ForkHandlers>() {
    // SAFETY: `pthread_atfork` runs this in the child right after a fork that
    // `fork_prepare` prepared.
    unsafe { F::child() };
}
