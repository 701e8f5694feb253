//! Spans and the OS, and the global cache's front: mapping runs of spans (the first of a
//! mapping is its master, which counts the runs still out and unmaps the mapping when
//! the last goes), giving runs back (their pages at once), caching free runs no thread
//! cache takes, taking them out again, and huge blocks' mappings.
use super::Global;
use crate::config::Config;
use crate::global_cache::Limits;
use crate::os;
use crate::params::Params;
use crate::span::{Batch, HugeHeader, Master, Run, Span, SPAN_HEADER_SIZE};
use crate::thread_cache::Batches;
use core::ptr;
use core::sync::atomic::Ordering;

impl<C: Config> Global<C> {
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
        if !self.registry.mark(p, len, C::SPAN_SIZE) {
            // SAFETY: our own fresh mapping of `len` bytes, never handed out.
            unsafe { os::unmap(p, len) };
            return ptr::null_mut();
        }
        self.count(|s| s.mapped(len));
        let span = p.cast::<Span>();
        // SAFETY: fresh zeroed mapping, large enough for a header; only the mapping fields
        // are written (zero is a valid value for all others).
        unsafe {
            Run(span).set_span_count(count as u32);
            Run(span).set_offset_from_master(0);
            Master(span).set_total_spans(count as u32);
            Master(span)
                .remaining_spans()
                .store(count as u32, Ordering::Relaxed);
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
            let count = Run(span).span_count();
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
            if Master(master)
                .remaining_spans()
                .fetch_sub(count, Ordering::AcqRel)
                == count
            {
                let total = Master(master).total_spans() as usize * C::SPAN_SIZE;
                let total = total.next_multiple_of(os::page_size());
                self.registry.unmark(master.cast(), total, C::SPAN_SIZE);
                os::unmap(master.cast(), total);
                // The mapping's other runs, released before, leave with it.
                self.count(|s| {
                    s.unmapped(total);
                    s.released((total - len).wrapping_neg());
                });
            } else {
                self.count(|s| s.released(len));
            }
        }
    }

    /// The global cache's bounds for runs of `count` spans.
    pub(super) fn limits(count: usize) -> Limits {
        Limits {
            runs: C::global_cache_limit(count),
            bytes: C::GLOBAL_CACHE_BYTES,
            span_size: C::SPAN_SIZE,
        }
    }

    /// Takes free runs of `count` spans that no thread cache holds: caches them in the
    /// global cache as far as it has room, gives the rest back to the OS.
    ///
    /// # Safety
    /// `chain` is a null-terminated chain of exactly `n` free runs of `count` spans of this
    /// configuration, no list holds.
    pub(crate) unsafe fn release_chain(&self, count: usize, chain: *mut Span, n: usize) {
        if n == 0 {
            return;
        }
        let mut rest = chain;
        if C::GLOBAL_CACHE {
            // SAFETY: a chain of exactly `n` free runs of `count` spans no list holds (the
            // contract), as `GlobalCache::insert` needs.
            rest = unsafe {
                self.cache
                    .insert(count, chain, n, self.epoch(), &Self::limits(count))
            };
        }
        // SAFETY: free runs per the contract, outside every lock.
        unsafe { self.unmap_chain(rest) };
    }

    /// Releases one free run no thread cache takes (a large block freed by a thread other
    /// than the one that allocated it, or by an orphaned heap).
    ///
    /// # Safety
    /// `span` is a free run header of this configuration, in no list.
    pub(crate) unsafe fn release_run(&self, span: *mut Span) {
        // SAFETY: per the contract: a chain of one.
        unsafe {
            Run(span).set_next(ptr::null_mut());
            self.release_chain(Run(span).span_count() as usize, span, 1);
        }
    }

    /// Takes up to `max` runs of `count` spans from the global cache: the chain and its
    /// length.
    pub(crate) fn extract(&self, count: usize, max: usize) -> (*mut Span, usize) {
        if !C::GLOBAL_CACHE {
            return (ptr::null_mut(), 0);
        }
        self.cache.extract(count, max, C::SPAN_SIZE)
    }

    /// Takes one run of the smallest span count above `count` the global cache holds, or
    /// null.
    pub(crate) fn extract_larger(&self, count: usize) -> *mut Span {
        self.extract_one(self.cache.held_from(count, false), false)
    }

    /// Takes one run of the largest span count of at least `count` the global cache
    /// holds, or null.
    pub(crate) fn extract_longest(&self, count: usize) -> *mut Span {
        self.extract_one(self.cache.held_from(count, true), true)
    }

    /// Takes one run of the first span count in `held` (a bit set, bit `k - 1` for `k`
    /// spans: smallest first, or with `longest` largest first) whose cache still holds one,
    /// or null.
    pub(super) fn extract_one(&self, mut held: u64, longest: bool) -> *mut Span {
        if !C::GLOBAL_CACHE {
            return ptr::null_mut();
        }
        while held != 0 {
            let bit = if longest {
                63 - held.leading_zeros()
            } else {
                held.trailing_zeros()
            };
            held &= !(1 << bit);
            let (span, n) = self.cache.extract(bit as usize + 1, 1, C::SPAN_SIZE);
            if n == 1 {
                return span;
            }
        }
        ptr::null_mut()
    }

    /// How many runs of `span_count` spans the global cache looked to hold (relaxed).
    #[inline]
    pub(crate) fn cached_runs_hint(&self, span_count: usize) -> usize {
        if C::GLOBAL_CACHE {
            self.cache.runs_hint(span_count)
        } else {
            0
        }
    }

    /// Whether the global cache looked non-empty for runs of `span_count` spans (relaxed;
    /// a stale answer only costs a lock or a fresh span).
    #[inline]
    pub(crate) fn has_cached(&self, span_count: usize) -> bool {
        C::GLOBAL_CACHE && self.cache.has(span_count)
    }

    /// Unmaps batches linked by `prev`, each a chain of free runs linked by `next`.
    ///
    /// # Safety
    /// Every run on them is a free run no list holds.
    pub(super) unsafe fn unmap_batches(&self, batches: Batches) {
        let mut batch = batches.top;
        while !batch.is_null() {
            // SAFETY: per the contract; read the link before unmapping.
            unsafe {
                let older = Batch(batch).prev();
                self.unmap_chain(batch);
                batch = older;
            }
        }
    }

    /// Unmaps a null-terminated chain of free runs linked by `next`.
    ///
    /// # Safety
    /// Every run on the chain is a free run no list holds.
    pub(super) unsafe fn unmap_chain(&self, mut span: *mut Span) {
        while !span.is_null() {
            // SAFETY: per the contract; read the link before unmapping.
            unsafe {
                let next = Run(span).next();
                self.unmap_run(span);
                span = next;
            }
        }
    }

    /// Maps a huge block's region (see `huge.rs`), keeping the alignment slack, and
    /// accounts for it.
    pub(crate) fn map_huge(&self, len: usize, align: usize, offset: usize) -> os::Mapping {
        let m = os::map_padded(len, align, offset, C::ENABLE_HUGE_PAGES, false);
        if !m.start.is_null() {
            let bytes = m.head + len + m.tail;
            self.count(|s| {
                s.mapped(bytes);
                s.huge(bytes);
            });
        }
        m
    }

    /// Unmaps a first-class heap's mapping whole (at the heap's drop), accounting for it.
    ///
    /// # Safety
    /// `master` heads a mapping of `len` bytes made by [`Global::map_spans`] for a
    /// first-class heap (whose runs never go to other heaps, the caches or `unmap_run`),
    /// and nothing uses any of it any more.
    pub(crate) unsafe fn unmap_private_mapping(&self, master: *mut Span, len: usize) {
        self.registry.unmark(master.cast(), len, C::SPAN_SIZE);
        // SAFETY: a whole mapping of ours, unmapped once and unused (the contract).
        unsafe { os::unmap(master.cast(), len) };
        self.count(|s| s.unmapped(len));
    }

    /// Unmaps a huge block's mapping, header `span` included, accounting for it.
    ///
    /// # Safety
    /// `span` is the header of a huge block of this configuration (made by
    /// [`crate::huge::alloc`], possibly resized by `os::remap` and with its slack unmapped
    /// since) that nothing uses any more.
    pub(crate) unsafe fn unmap_huge(&self, span: *mut Span) {
        self.registry
            .unmark(span.cast(), 2 * C::SPAN_SIZE, C::SPAN_SIZE);
        // SAFETY: a huge header (the contract), whose mapping runs from `map_head` bytes
        // before it to `map_tail` bytes after `map_size`, all of it unused.
        unsafe {
            let head = HugeHeader(span).map_head();
            let len = head + HugeHeader(span).map_size() + HugeHeader(span).map_tail();
            self.unmap_huge_mapping(span.cast::<u8>().sub(head), len);
        }
    }

    /// Unmaps a huge block's region, accounting for it.
    ///
    /// # Safety
    /// `[p, p + len)` is what is left of a huge block's mapping (from [`Global::map_huge`],
    /// possibly resized by `os::remap` and with its slack unmapped since), whole, and
    /// nothing uses it any more.
    pub(crate) unsafe fn unmap_huge_mapping(&self, p: *mut u8, len: usize) {
        // SAFETY: what is left of a huge block's mapping, whole and unused (the contract):
        // page-aligned, inside a mapping `os` made, unmapped once.
        unsafe { os::unmap(p, len) };
        self.count(|s| {
            s.unmapped(len);
            s.huge(len.wrapping_neg());
        });
    }
}
