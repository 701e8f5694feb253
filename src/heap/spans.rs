//! Span sourcing for a heap: runs from its thread cache, the global cache, the reserve
//! left from its last mapping, or a new mapping; runs going back (to the thread cache,
//! within its byte budget, or to the global cache); large blocks, which are runs.

use super::Heap;
use crate::instance::Instance;
use crate::os::addr;
use crate::params::Params;
use crate::span::{Kind, Run, Span, SPAN_HEADER_SIZE};
use crate::thread_cache::HeapShared;
use core::ptr;
use core::sync::atomic::Ordering;

impl<C: Instance> Heap<C> {
    // ---- spans ---------------------------------------------------------------------

    /// Gets a free run of at least `count` spans: the thread cache, the global cache, a
    /// bigger cached run (see `take_larger`), the reserve, then a new mapping. The flag
    /// says the memory is fresh from the OS (reads as zero). Null when the OS refuses.
    #[inline]
    pub(crate) fn acquire_spans(&mut self, count: usize) -> (*mut Span, bool) {
        self.tick();
        if C::ENABLE_ADAPTIVE_THREAD_CACHE {
            let used = &mut self.span_in_use[count - 1];
            *used += 1;
            self.span_peak[count - 1] = self.span_peak[count - 1].max(*used);
        }
        // Notices are taken on a thread-cache miss (they may refill it), so a thread that
        // now allocates only large blocks gets back the small spans other threads emptied
        // once it needs spans its cache lacks — as rpmalloc adopts deferred spans only
        // after a thread-cache miss. (On every large allocation the check cost 7 of 158
        // instructions per large alloc+free pair.) The small-class slow path is the other
        // place they are taken.
        let mut span = self.cache_pop(count);
        if span.is_null() && !self.shared().notices.is_empty_relaxed() {
            self.take_notices();
            span = self.cache_pop(count);
        }
        if span.is_null() && self.private {
            // A first-class heap takes only its own runs: those other threads freed first.
            self.take_returned();
            span = self.cache_pop(count);
        }
        if !span.is_null() {
            return (span, false);
        }
        // Cached runs of the same count before the reserve: their pages are resident
        // already, the reserve's would be touched for the first time (more faults, higher
        // RSS; a pipeline's producer kept carving fresh reserves while the runs its
        // consumer freed waited in the global cache). A whole batch only when the reserve
        // could not serve: a thread with a reserve that hoarded batches would leave other
        // threads to map (rpbench realloc, 8 threads: peak RSS +1.5 %).
        let global = C::global();
        if !self.private && global.has_cached(count) {
            // Or when the global cache holds two batches or more: then a batch hoards nothing
            // another thread would need, and the next refills skip the lock (a pipeline's
            // producer, whose consumer returns spans a batch at a time, took the lock for
            // every span: 13 % of its time).
            let batch = C::THREAD_CACHE
                && !self.shared().orphaned.load(Ordering::Relaxed)
                && (self.reserve_count < count
                    || global.cached_runs_hint(count) >= 2 * C::transfer_batch(count));
            let (chain, n) =
                global.extract(count, if batch { C::transfer_batch(count) } else { 1 });
            if n > 1 {
                // SAFETY: a chain of `n` free runs of `count` spans just taken from the
                // global cache; its head is returned, the rest cached.
                unsafe {
                    let rest = Run(chain).next();
                    Run(chain).set_next(ptr::null_mut());
                    let epoch = global.epoch();
                    self.shared()
                        .cache
                        .lock()
                        .push_chain(count, rest, n - 1, epoch, C::SPAN_SIZE);
                }
            }
            if n > 0 {
                return (chain, false);
            }
        }
        // A bigger cached run: its pages are resident, the reserve's and a new mapping's
        // would be touched afresh, and runs of other counts would otherwise wait unused (a
        // pipeline of mixed large sizes kept mapping while the caches held runs of every
        // count but the one asked for).
        let span = self.take_larger(count);
        if !span.is_null() {
            return (span, false);
        }
        if self.reserve_count >= count {
            return (self.take_reserve(count), true);
        }
        self.map_spans(count)
    }

    /// Gets a free run of at least `count` spans for a block that grows by `realloc`:
    /// from the front of the reserve when it has room, so the next growth can extend the
    /// run over the spans behind it (`extend_run`); else the longest cached run, whole, so
    /// the next growths fit it; else a new mapping, whose reserve then follows. (A `Vec`
    /// growing to 1 MiB in runs cut to size from cached ones copied at every step.)
    pub(super) fn acquire_for_growth(&mut self, count: usize) -> (*mut Span, bool) {
        self.tick();
        if self.reserve_count >= count {
            return (self.take_reserve(count), true);
        }
        let mut span = ptr::null_mut();
        if (C::THREAD_CACHE && !self.shared().orphaned.load(Ordering::Relaxed)) || self.private {
            span = self.shared().cache.lock().pop_longest(count, C::SPAN_SIZE);
        }
        if span.is_null() && !self.private {
            span = C::global().extract_longest(count);
        }
        if !span.is_null() {
            return (span, false);
        }
        self.map_spans(count)
    }

    /// A run of `count` spans from the thread cache; null if it has none (or is off).
    #[inline]
    pub(super) fn cache_pop(&mut self, count: usize) -> *mut Span {
        if C::THREAD_CACHE || self.private {
            self.shared().cache.lock().pop(count, C::SPAN_SIZE)
        } else {
            ptr::null_mut()
        }
    }

    /// The cached run with the fewest spans above `count`, from this thread's cache or
    /// the global one; null if no cache holds one. A run of up to twice `count` spans is
    /// taken whole: the block's run is then that long, and goes back whole. A longer one is
    /// split and the rest — still longer than the block — cached as a run of its own. The
    /// rule keeps cached runs long: splitting every run left crumbs too short for the next
    /// large block (a pipeline of 64 KiB – 3 MiB blocks, 1:1, peaked at 3.0 × jemalloc's
    /// RSS; rpmalloc's "whole up to 1.5 ×" at 1.8 ×; this at 1.4 ×), while never splitting
    /// would give a program that turns from big blocks to small ones a big run, resident
    /// and mostly unused, per small block.
    pub(super) fn take_larger(&mut self, count: usize) -> *mut Span {
        let mut span = ptr::null_mut();
        if (C::THREAD_CACHE && !self.shared().orphaned.load(Ordering::Relaxed)) || self.private {
            span = self.shared().cache.lock().pop_larger(count, C::SPAN_SIZE);
        }
        if span.is_null() && !self.private {
            span = C::global().extract_larger(count);
        }
        if span.is_null() {
            return span;
        }
        // SAFETY: a cached free run of more than `count` spans, now ours.
        unsafe {
            // A single span is always cut: a size class's span is one span.
            if count == 1 || Run(span).span_count() as usize > 2 * count {
                let rest = Span::split(span, count, C::SPAN_SIZE);
                let rest_count = Run(rest).span_count() as usize;
                self.cache_run(rest, rest_count);
            }
        }
        span
    }

    /// Maps a new run, keeping the spans beyond `count` as the reserve.
    #[cold]
    pub(super) fn map_spans(&mut self, count: usize) -> (*mut Span, bool) {
        let map_count = count.max(C::SPAN_MAP_COUNT);
        let span = C::global().map_spans(map_count);
        if span.is_null() {
            return (ptr::null_mut(), false);
        }
        if self.private {
            let len = (map_count * C::SPAN_SIZE).next_multiple_of(crate::os::page_size());
            if !self.list_mapping(span, len) {
                // SAFETY: the whole mapping just made, unused.
                unsafe { C::global().unmap_private_mapping(span, len) };
                return (ptr::null_mut(), false);
            }
        }
        if map_count > count {
            self.release_reserve();
            // SAFETY: span heads a fresh mapping of map_count spans.
            unsafe {
                Run(span).set_span_count(count as u32);
                self.reserve = span.cast::<u8>().add(count * C::SPAN_SIZE).cast();
            }
            self.reserve_count = map_count - count;
            self.reserve_master = span;
            self.count_reserve();
        }
        (span, true)
    }

    /// Cuts a run of `count` spans off the front of the reserve.
    pub(super) fn take_reserve(&mut self, count: usize) -> *mut Span {
        let span = self.reserve;
        // SAFETY: the reserve is an unused, mapped tail of the reserve master's mapping.
        unsafe {
            Run(span).set_span_count(count as u32);
            Run(span).set_offset_from_master(
                ((span as usize - self.reserve_master as usize) / C::SPAN_SIZE) as u32,
            );
            self.reserve_count -= count;
            self.reserve = if self.reserve_count == 0 {
                ptr::null_mut()
            } else {
                span.cast::<u8>().add(count * C::SPAN_SIZE).cast()
            };
        }
        self.count_reserve();
        span
    }

    /// Extends the large run at `span` to `count` spans by taking the reserve spans that
    /// directly follow it; false if they are not this heap's reserve.
    ///
    /// # Safety
    /// `span` is a live large run (of any heap) of this configuration.
    pub(crate) unsafe fn extend_run(&mut self, span: *mut Span, count: usize) -> bool {
        // SAFETY: per the contract the header is valid.
        unsafe {
            let have = Run(span).span_count() as usize;
            let extra = count - have;
            let follows = span.cast::<u8>().add(have * C::SPAN_SIZE).cast::<Span>();
            if self.reserve_count < extra
                || self.reserve != follows
                || Span::master(span, C::SPAN_SIZE) != self.reserve_master
            {
                return false;
            }
            // The taken spans stay counted in the master's mapping; they now belong to the
            // run, which gives them back together when it is released.
            self.take_reserve(extra);
            Self::count_in_use(self.shared(), extra * C::SPAN_SIZE);
            Run(span).set_span_count(count as u32);
        }
        true
    }

    /// Gives the unused reserve back to the OS (a first-class heap's to its cache: its
    /// mappings go back whole, at its drop).
    pub(super) fn release_reserve(&mut self) {
        if self.reserve_count > 0 {
            let count = self.reserve_count;
            let span = self.take_reserve(count);
            // SAFETY: a free run, now with its header written.
            unsafe {
                if self.private {
                    self.cache_run(span, count);
                } else {
                    C::global().unmap_run(span);
                }
            }
        }
    }

    /// Takes back a free run: into the thread cache while this heap has a thread, else
    /// the global cache or the OS. What the thread cache holds beyond its bounds goes on to
    /// the global cache. (A first-class heap's runs stay in its own cache: see
    /// [`Heap::cache_run`].)
    ///
    /// # Safety
    /// `span` is a free run of this configuration (its header's `span_count` and mapping
    /// fields valid) that no list holds and nothing else uses.
    #[inline]
    pub(crate) unsafe fn release_spans(&mut self, span: *mut Span) {
        // SAFETY: per the contract, a valid free run header.
        let count = unsafe { Run(span).span_count() } as usize;
        if C::ENABLE_ADAPTIVE_THREAD_CACHE {
            let used = &mut self.span_in_use[count - 1];
            *used = used.saturating_sub(1);
        }
        // SAFETY: a free run of `count` spans no list holds (the contract, and `count` read
        // from its header).
        unsafe { self.cache_run(span, count) };
    }

    /// Caches a free run of `count` spans in the thread cache (what overflows goes on to
    /// the global cache), or, without a thread, gives it to the global cache or the OS. A
    /// first-class heap keeps every run in its own cache, unbounded (its mappings go back
    /// whole when it is dropped).
    ///
    /// # Safety
    /// As [`Heap::release_spans`], and the run has `count` spans.
    #[inline]
    pub(super) unsafe fn cache_run(&mut self, span: *mut Span, count: usize) {
        let mut limit = C::thread_cache_limit(count);
        if C::ENABLE_ADAPTIVE_THREAD_CACHE {
            limit = limit.min(self.span_peak[count - 1] as usize).max(1);
        }
        // SAFETY: a free run of `count` spans no list holds (the contract); this heap's
        // shared part.
        unsafe { Self::cache_run_within(self.shared(), span, count, limit) };
    }

    /// Takes back a large run that another heap allocated and this thread freed. A single
    /// span waits in this thread's cache, as in any cache, but only until a batch of them is
    /// there, which then goes to the global cache at once: one lock per batch, not per free
    /// (a pipeline passing 32–64 KiB buffers took the global cache's lock for every free and
    /// every refill, 20 % of its time). A longer run goes to the global cache now, where the
    /// thread that allocated it and every other find it: a consumer must not keep what its
    /// producers would then map afresh.
    ///
    /// # Safety
    /// As [`Heap::release_spans`].
    pub(crate) unsafe fn release_foreign_run(&mut self, span: *mut Span) {
        debug_assert!(!self.private, "a first-class heap freed another heap's run");
        // SAFETY: per the contract, a valid free run header that no list holds.
        unsafe {
            let count = Run(span).span_count() as usize;
            if count == 1 {
                Self::cache_run_within(self.shared(), span, count, C::transfer_batch(count));
            } else {
                C::global().release_run(span);
            }
        }
    }

    /// [`Heap::cache_run`] with the count limit `limit`, for the heap whose shared part
    /// is `shared` (its user, or a sweep holding its heap lock).
    ///
    /// # Safety
    /// `span` is a free run of `count` spans of this configuration that no list holds.
    #[inline]
    pub(super) unsafe fn cache_run_within(
        shared: &HeapShared,
        span: *mut Span,
        count: usize,
        limit: usize,
    ) {
        let global = C::global();
        if C::THREAD_CACHE && !shared.orphaned.load(Ordering::Relaxed) {
            let mut cache = shared.cache.lock();
            // SAFETY: per the contract, a free run no list holds.
            let over = unsafe {
                cache.push(
                    span,
                    count,
                    global.epoch(),
                    C::SPAN_SIZE,
                    limit,
                    C::THREAD_CACHE_BYTES,
                )
            };
            // A first-class heap keeps every run it frees, beyond the bounds too (its
            // mappings go back whole, at its drop); checked only here, off the common path.
            if over && !shared.private {
                drop(cache);
                Self::spill(shared, count, limit);
            }
            return;
        }
        if shared.private {
            // A first-class heap of a configuration without thread caches: its own cache
            // all the same, unbounded.
            // SAFETY: per the contract, a free run no list holds.
            unsafe {
                shared.cache.lock().push(
                    span,
                    count,
                    global.epoch(),
                    C::SPAN_SIZE,
                    usize::MAX,
                    usize::MAX,
                )
            };
            return;
        }
        // SAFETY: per the contract, a free run no list holds.
        unsafe { global.release_run(span) };
    }

    /// Moves what the thread cache holds of `count` spans beyond its bounds to the global
    /// cache.
    #[cold]
    #[inline(never)]
    pub(super) fn spill(shared: &HeapShared, count: usize, limit: usize) {
        let (chain, n) = shared.cache.lock().take_overflow(
            count,
            limit,
            C::transfer_batch(count),
            C::THREAD_CACHE_BYTES,
            C::SPAN_SIZE,
        );
        // SAFETY: free runs of `count` spans just cut from the thread cache.
        unsafe { C::global().release_chain(count, chain, n) };
    }

    // ---- large blocks --------------------------------------------------------------

    /// Allocates a block of `size` bytes aligned to `align` (< span size) in a run of
    /// spans (for a block that `grow`s by `realloc`, from the reserve when it can); the
    /// flag says the memory is fresh from the OS. The caller checked the run fits
    /// [`LARGE_CLASS_COUNT`](crate::span::LARGE_CLASS_COUNT) spans.
    #[inline]
    pub(crate) fn alloc_large(&mut self, size: usize, align: usize, grow: bool) -> (*mut u8, bool) {
        let count = Self::large_span_count(size, align);
        let (span, fresh) = if grow {
            self.acquire_for_growth(count)
        } else {
            self.acquire_spans(count)
        };
        if span.is_null() {
            return (ptr::null_mut(), false);
        }
        // A large run's owner is compared with the freeing thread's heap, and followed when
        // it is not that heap (to see whether it is a first-class heap, which takes its
        // runs back): the record's address with its provenance.
        let id = self.id();
        // SAFETY: a free run of `count` spans; only block fields are written. `heap` tells
        // the free whether the freeing thread's heap allocated it (then its thread cache
        // takes the run back) or not (then the global cache does, where the allocating
        // thread and every other find it).
        unsafe {
            Span::fast_owner(span).store(ptr::null_mut(), Ordering::Relaxed);
            Span::set_kind(span, Kind::Large);
            Run(span).set_heap(id);
            Self::count_in_use(
                self.shared(),
                Run(span).span_count() as usize * C::SPAN_SIZE,
            );
        }
        let data = Span::data(span);
        (
            addr::with_addr(data, crate::os::align_up_pow2(data.addr(), align)),
            fresh,
        )
    }

    /// Spans needed for a large block.
    #[inline]
    pub(crate) fn large_span_count(size: usize, align: usize) -> usize {
        let pad = align.saturating_sub(SPAN_HEADER_SIZE);
        (SPAN_HEADER_SIZE + size + pad).div_ceil(C::SPAN_SIZE)
    }
}
