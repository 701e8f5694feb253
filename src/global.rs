//! The global state of one configuration: the global span cache, the orphaned heaps, the
//! thread-exit key, statistics, and the span mapping and unmapping that touch the OS.
//!
//! Everything here is `const`-initialised in the static the macro defines, so there is no
//! setup call: the first allocation finds it ready.

use crate::config::Config;
use crate::heap::Heap;
use crate::lock::SpinLock;
use crate::os;
use crate::params::Params;
use crate::span::{Span, SpanStack, LARGE_CLASS_COUNT, SPAN_HEADER_SIZE};
use crate::stats::{Counters, Statistics};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The global state of one configuration. Created only by `define_rpmalloc!`.
pub struct Global<C> {
    /// Global span cache, one stack per span count.
    cache: [SpinLock<SpanStack>; LARGE_CLASS_COUNT],
    /// Heaps of exited threads, linked through `Heap::next_orphan`.
    pub(crate) orphans: SpinLock<*mut Heap<C>>,
    /// The pthread key whose destructor retires a thread's heap, plus one (0: not created).
    pub(crate) exit_key: AtomicUsize,
    /// Statistics (updated only with `enable_statistics`).
    pub(crate) stats: Counters,
    _config: PhantomData<C>,
}

// SAFETY: the raw heap pointers are only touched under the orphan lock; everything else is
// atomic or behind a lock.
unsafe impl<C> Sync for Global<C> {}

impl<C: Config> Global<C> {
    /// The initial state; used for the `static` each `define_rpmalloc!` expansion defines.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Global {
            cache: [const { SpinLock::new(SpanStack::EMPTY) }; LARGE_CLASS_COUNT],
            orphans: SpinLock::new(ptr::null_mut()),
            exit_key: AtomicUsize::new(0),
            stats: Counters::new(),
            _config: PhantomData,
        }
    }

    /// Maps `count` fresh spans as one mapping whose first span is the master.
    /// The returned run covers all `count` spans; null when the OS refuses.
    #[cold]
    pub(crate) fn map_spans(&self, count: usize) -> *mut Span {
        let Some(len) = count.checked_mul(C::SPAN_SIZE) else {
            return ptr::null_mut();
        };
        let len = match os::align_up(len, os::page_size()) {
            Some(l) => l,
            None => return ptr::null_mut(),
        };
        let p = os::map_aligned(len, C::SPAN_SIZE, 0, C::ENABLE_HUGE_PAGES);
        if p.is_null() {
            return ptr::null_mut();
        }
        self.stats.mapped::<C>(len);
        let span = p.cast::<Span>();
        // SAFETY: fresh zeroed mapping, large enough for a header; only the mapping fields
        // are written (zero is a valid value for all others).
        unsafe {
            (*span).span_count = count as u32;
            (*span).offset_from_master = 0;
            (*span).total_spans = count as u32;
            (*span).remaining_spans = AtomicU32::new(count as u32);
        }
        span
    }

    /// Gives a free run back to the OS: its pages are released at once, and the whole
    /// mapping is unmapped when its last run goes.
    ///
    /// # Safety
    /// `span` is a free run header (in no list, no live blocks) of this configuration.
    pub(crate) unsafe fn unmap_run(&self, span: *mut Span) {
        // SAFETY: per the contract the header is valid; the master outlives all its runs
        // because it is unmapped only by the last of them.
        unsafe {
            let count = (*span).span_count;
            let master = Span::master(span, C::SPAN_SIZE);
            let len = count as usize * C::SPAN_SIZE;
            // Release the pages first: once the count below drops, another thread may
            // unmap the mapping and the range may be reused by anyone.
            if master == span {
                // Keep the header page: it holds the count.
                let keep = os::page_size().max(SPAN_HEADER_SIZE);
                if len > keep {
                    os::decommit(span.cast::<u8>().add(keep), len - keep);
                }
            } else {
                os::decommit(span.cast(), len);
            }
            if (*master).remaining_spans.fetch_sub(count, Ordering::AcqRel) == count {
                let total = (*master).total_spans as usize * C::SPAN_SIZE;
                let total = total.next_multiple_of(os::page_size());
                os::unmap(master.cast(), total);
                self.stats.unmapped::<C>(total);
            }
        }
    }

    /// Moves up to `count` runs of `span_count` spans from `from` into the global cache;
    /// runs beyond its capacity (or all, with the global cache off) are unmapped.
    ///
    /// # Safety
    /// Every run on `from` is a free run of `span_count` spans.
    pub(crate) unsafe fn cache_insert(
        &self,
        span_count: usize,
        from: &mut SpanStack,
        count: usize,
    ) {
        let mut count = count.min(from.count);
        if C::ENABLE_GLOBAL_CACHE {
            let limit = C::global_cache_limit(span_count);
            let mut cache = self.cache[span_count - 1].lock();
            while count > 0 && cache.count < limit {
                let span = from.pop();
                // SAFETY: a free run per the contract.
                unsafe { cache.push(span) };
                count -= 1;
            }
        }
        while count > 0 {
            let span = from.pop();
            // SAFETY: a free run per the contract.
            unsafe { self.unmap_run(span) };
            count -= 1;
        }
    }

    /// Takes up to `max` runs of `span_count` spans from the global cache.
    pub(crate) fn cache_extract(&self, span_count: usize, into: &mut SpanStack, max: usize) {
        if !C::ENABLE_GLOBAL_CACHE {
            return;
        }
        let mut cache = self.cache[span_count - 1].lock();
        let mut n = max;
        while n > 0 {
            let span = cache.pop();
            if span.is_null() {
                break;
            }
            // SAFETY: the global cache holds only free runs.
            unsafe { into.push(span) };
            n -= 1;
        }
    }

    /// Releases one free run with no thread cache to take it.
    ///
    /// # Safety
    /// `span` is a free run header of this configuration.
    pub(crate) unsafe fn release_run(&self, span: *mut Span) {
        let mut one = SpanStack::EMPTY;
        // SAFETY: per the contract.
        unsafe {
            let count = (*span).span_count as usize;
            one.push(span);
            self.cache_insert(count, &mut one, 1);
        }
    }

    /// Maps a huge block's region (see `huge.rs`), keeping the alignment slack, and
    /// accounts for it.
    pub(crate) fn map_huge(&self, len: usize, align: usize, offset: usize) -> os::Mapping {
        let m = os::map_padded(len, align, offset, C::ENABLE_HUGE_PAGES, false);
        if !m.start.is_null() {
            self.stats.mapped::<C>(m.head + len + m.tail);
        }
        m
    }

    /// Unmaps a huge block's region, accounting for it.
    pub(crate) fn unmap_huge(&self, p: *mut u8, len: usize) {
        os::unmap(p, len);
        self.stats.unmapped::<C>(len);
    }

    /// Spans in the global cache (for statistics).
    fn cached_spans(&self) -> usize {
        self.cache
            .iter()
            .enumerate()
            .map(|(i, c)| c.lock().count * (i + 1))
            .sum()
    }

    /// Snapshot of the counters, or `None` without `enable_statistics`.
    pub(crate) fn statistics(&self) -> Option<Statistics> {
        if !C::ENABLE_STATISTICS {
            return None;
        }
        let mut s = self.stats.snapshot();
        s.global_cache = self.cached_spans() * C::SPAN_SIZE;
        Some(s)
    }

    /// Takes every lock of this configuration (before `fork`).
    pub(crate) fn lock_all(&self) {
        self.orphans.raw_lock();
        for c in &self.cache {
            c.raw_lock();
        }
    }

    /// Releases what [`Global::lock_all`] took (in the parent after `fork`).
    ///
    /// # Safety
    /// The caller holds every lock through `lock_all`.
    pub(crate) unsafe fn unlock_all(&self) {
        // SAFETY: per the contract.
        unsafe {
            for c in &self.cache {
                c.raw_unlock();
            }
            self.orphans.raw_unlock();
        }
    }

    /// Resets every lock in a forked child, where only the forking thread exists.
    ///
    /// # Safety
    /// Called in the child right after `fork`.
    pub(crate) unsafe fn reset_locks(&self) {
        // SAFETY: per the contract no other thread exists to hold them.
        unsafe {
            for c in &self.cache {
                c.force_unlock();
            }
            self.orphans.force_unlock();
        }
    }
}
