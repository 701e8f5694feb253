//! The global state of one configuration: the global span cache, the orphaned heaps, the
//! thread-exit key, statistics, and the span mapping and unmapping that touch the OS.
//!
//! Everything here is `const`-initialised in the static the macro defines, so there is no
//! setup call: the first allocation finds it ready.

use crate::config::Config;
use crate::heap::Heap;
use crate::lock::SpinLock;
use crate::os;
use crate::params::{Params, CACHE_AGING_MS};
use crate::span::{Span, SpanStack, LARGE_CLASS_COUNT, SPAN_HEADER_SIZE};
use crate::stats::{Counters, Statistics};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The global state of one configuration. Created only by `define_rpmalloc!`.
pub struct Global<C> {
    /// Global span cache, one per span count.
    cache: [SpinLock<SpanCache>; LARGE_CLASS_COUNT],
    /// Runs in each span count's cache (ready and aging), kept under its lock and read
    /// without it: a hint that spares a refill the lock when the cache is empty.
    cached_hint: [AtomicUsize; LARGE_CLASS_COUNT],
    /// When the oldest ageing batch of any span count expires (`os::now_ms` time;
    /// `u64::MAX`: nothing ages). Any cache operation past it gives back the expired runs
    /// of every span count, so runs of a count nobody inserts any more still go back.
    aging_due: AtomicU64,
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
            cache: [const { SpinLock::new(SpanCache::EMPTY) }; LARGE_CLASS_COUNT],
            cached_hint: [const { AtomicUsize::new(0) }; LARGE_CLASS_COUNT],
            aging_due: AtomicU64::new(u64::MAX),
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
    /// The runs move as one batch: the chain is cut from `from` before taking the lock, and
    /// under the lock it is linked in with O(1) work. (Moving span by span under the lock
    /// touched one span header — one cache miss — per span while other threads spun.)
    ///
    /// # Safety
    /// Every run on `from` is a free run of `span_count` spans.
    pub(crate) unsafe fn cache_insert(
        &self,
        span_count: usize,
        from: &mut SpanStack,
        count: usize,
    ) {
        let (mut chain, n) = from.take_chain(count);
        if n == 0 {
            return;
        }
        let mut expired = ptr::null_mut();
        if C::ENABLE_GLOBAL_CACHE {
            let limit = C::global_cache_limit(span_count);
            let mut cache = self.cache[span_count - 1].lock();
            // Read under the lock, so the aging stack's stamps rise from bottom to top.
            let now = os::now_ms();
            // Fill the cache to its limit (as rpmalloc does): dropping the whole batch
            // would keep the cache a batch short and send spans to the OS that the next
            // thread maps right back.
            let room = limit.saturating_sub(cache.ready.spans).min(n);
            if room > 0 {
                let rest = split_chain(chain, room);
                // SAFETY: a chain of `room` free runs per the contract.
                unsafe { cache.ready.push_batch(chain, room) };
                chain = rest;
            }
            // Expired batches go first, so they do not take the room of young runs.
            expired = cache.aging.cut_expired(now);
            // The rest ages (up to as many runs again) instead of going back at once.
            let rest = n - room;
            if rest > 0 && cache.aging.batches.spans + rest <= limit {
                // SAFETY: a chain of `rest` free runs per the contract.
                unsafe { cache.aging.push(chain, rest, now) };
                chain = ptr::null_mut();
                self.aging_due
                    .fetch_min(now + CACHE_AGING_MS, Ordering::Relaxed);
            }
            self.cached_hint[span_count - 1].store(cache.runs(), Ordering::Relaxed);
        }
        // Outside the lock: the runs beyond both limits, and the aged batches.
        // SAFETY: free runs per the contract / taken off the aging stack.
        unsafe {
            self.unmap_chain(chain);
            self.unmap_batches(expired);
        }
        self.purge_aged_if_due();
    }

    /// Gives back the expired ageing runs of every span count once the oldest is due.
    #[inline]
    fn purge_aged_if_due(&self) {
        let due = self.aging_due.load(Ordering::Relaxed);
        if due != u64::MAX && os::now_ms() >= due {
            self.purge_aged();
        }
    }

    /// Gives back every ageing batch older than the ageing time, for every span count (at
    /// thread exit, and from any cache operation once the oldest batch is due).
    #[cold]
    pub(crate) fn purge_aged(&self) {
        if !C::ENABLE_GLOBAL_CACHE {
            return;
        }
        // Cleared first and recomputed from what is left; an insert that ages a batch
        // meanwhile lowers it again after its push, so no batch goes unaccounted.
        self.aging_due.store(u64::MAX, Ordering::Relaxed);
        for span_count in 1..=LARGE_CLASS_COUNT {
            let expired = {
                let mut cache = self.cache[span_count - 1].lock();
                let expired = cache.aging.cut_expired(os::now_ms());
                if cache.aging.oldest != u64::MAX {
                    self.aging_due
                        .fetch_min(cache.aging.oldest + CACHE_AGING_MS, Ordering::Relaxed);
                }
                self.cached_hint[span_count - 1].store(cache.runs(), Ordering::Relaxed);
                expired
            };
            // SAFETY: batches just taken off the aging stack.
            unsafe { self.unmap_batches(expired) };
        }
    }

    /// Unmaps batches linked by `prev`, each a chain of free runs linked by `next`.
    ///
    /// # Safety
    /// Every run on them is a free run no list holds.
    unsafe fn unmap_batches(&self, mut batch: *mut Span) {
        while !batch.is_null() {
            // SAFETY: per the contract; read the link before unmapping.
            unsafe {
                let older = (*batch).prev;
                self.unmap_chain(batch);
                batch = older;
            }
        }
    }

    /// Unmaps a null-terminated chain of free runs linked by `next`.
    ///
    /// # Safety
    /// Every run on the chain is a free run no list holds.
    unsafe fn unmap_chain(&self, mut span: *mut Span) {
        while !span.is_null() {
            // SAFETY: per the contract; read the link before unmapping.
            unsafe {
                let next = (*span).next;
                self.unmap_run(span);
                span = next;
            }
        }
    }

    /// Takes one batch of runs of `span_count` spans from the global cache into `into`
    /// (at most `max` of it; the rest stays cached): from the runs within the limit, else
    /// from the youngest aging batch.
    pub(crate) fn cache_extract(&self, span_count: usize, into: &mut SpanStack, max: usize) {
        if !C::ENABLE_GLOBAL_CACHE {
            return;
        }
        let (chain, n) = {
            let mut cache = self.cache[span_count - 1].lock();
            // Aging runs first: they are the ones about to go back to the OS, and under
            // steady churn the ready runs would otherwise sit while overflow keeps aging.
            let taken = match cache.aging.pop(max) {
                (_, 0) => cache.ready.pop_batch(max),
                taken => taken,
            };
            self.cached_hint[span_count - 1].store(cache.runs(), Ordering::Relaxed);
            taken
        };
        // SAFETY: the global cache holds only free runs; the chain is now ours.
        unsafe { into.push_chain(chain, n) };
        self.purge_aged_if_due();
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

    /// Whether the global cache looked non-empty for runs of `span_count` spans (relaxed;
    /// a stale answer only costs a lock or a fresh span).
    #[inline]
    pub(crate) fn has_cached(&self, span_count: usize) -> bool {
        self.cached_hint[span_count - 1].load(Ordering::Relaxed) != 0
    }

    /// Spans in the global cache (for statistics).
    fn cached_spans(&self) -> usize {
        self.cache
            .iter()
            .enumerate()
            .map(|(i, c)| c.lock().runs() * (i + 1))
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

/// One span count's global cache: the runs within its limit, and the runs beyond it that
/// wait up to [`CACHE_AGING_MS`] before going back to the OS (each batch stamped in its
/// head's `cached_at`; at most as many runs again as the limit). A refill takes ready runs
/// first, then the youngest aging batch; an insert gives back the aging batches that are
/// too old.
pub(crate) struct SpanCache {
    ready: CacheBatches,
    aging: Aging,
}

impl SpanCache {
    const EMPTY: SpanCache = SpanCache {
        ready: CacheBatches::EMPTY,
        aging: Aging::EMPTY,
    };

    /// Runs held, ready and ageing.
    fn runs(&self) -> usize {
        self.ready.spans + self.aging.batches.spans
    }
}

/// Runs beyond a span count's limit, waiting to go back to the OS: a stack of batches
/// stamped in their head's `cached_at`, youngest on top. Runs inserted in the same clock
/// tick join the top batch, so the stack holds at most one batch per tick of the ageing
/// window, and `oldest` tells an insert in O(1) that nothing expired (an insert used to
/// walk every young batch under the lock: with one-run batches, 200× slower frees).
struct Aging {
    batches: CacheBatches,
    /// Stamp of the bottom (oldest) batch; `u64::MAX` when empty.
    oldest: u64,
}

impl Aging {
    const EMPTY: Aging = Aging {
        batches: CacheBatches::EMPTY,
        oldest: u64::MAX,
    };

    /// Pushes a chain of `n` runs stamped `now`, joining the top batch if it has the
    /// same stamp.
    ///
    /// # Safety
    /// `chain` is a chain of exactly `n >= 1` free runs no list holds; `now` is not
    /// older than the top batch's stamp.
    unsafe fn push(&mut self, chain: *mut Span, n: usize, now: u64) {
        let top = self.batches.top;
        // SAFETY: per the contract; batch heads are valid free run headers.
        unsafe {
            if !top.is_null() && (*top).cached_at == now {
                let mut tail = chain;
                while !(*tail).next.is_null() {
                    tail = (*tail).next;
                }
                (*tail).next = top;
                (*chain).prev = (*top).prev;
                (*chain).block_count = (*top).block_count + n as u32;
                (*chain).cached_at = now;
                self.batches.top = chain;
                self.batches.spans += n;
                return;
            }
            (*chain).cached_at = now;
            self.batches.push_batch(chain, n);
        }
        if top.is_null() {
            self.oldest = now;
        }
    }

    /// Pops the youngest batch (or its first `max` runs).
    fn pop(&mut self, max: usize) -> (*mut Span, usize) {
        let taken = self.batches.pop_batch(max);
        if self.batches.top.is_null() {
            self.oldest = u64::MAX;
        }
        taken
    }

    /// Removes the batches older than the ageing time at `now` and returns the newest of
    /// them, linked to older ones by `prev`; null (in O(1)) if none.
    fn cut_expired(&mut self, now: u64) -> *mut Span {
        let cutoff = now.saturating_sub(CACHE_AGING_MS);
        if self.oldest > cutoff {
            return ptr::null_mut();
        }
        let (cut, bottom) = self.batches.cut_older_than(cutoff);
        // SAFETY: `bottom` is null or the remaining bottom batch head.
        self.oldest = if bottom.is_null() {
            u64::MAX
        } else {
            unsafe { (*bottom).cached_at }
        };
        cut
    }
}

/// Cuts a null-terminated chain of free runs after its first `n` (`n >= 1`) and returns the
/// rest (null if the chain held exactly `n`).
fn split_chain(chain: *mut Span, n: usize) -> *mut Span {
    // SAFETY: callers pass a chain of at least `n` free runs linked by `next`.
    unsafe {
        let mut last = chain;
        for _ in 1..n {
            last = (*last).next;
        }
        let rest = (*last).next;
        (*last).next = ptr::null_mut();
        rest
    }
}

/// A stack of batches. A batch is a null-terminated chain of
/// free runs linked by `next`; batch heads are linked by `prev` and hold the batch's length
/// in `block_count` (fields a free run does not otherwise use).
pub(crate) struct CacheBatches {
    /// Head of the top batch.
    top: *mut Span,
    /// Runs in all batches.
    pub(crate) spans: usize,
}

// SAFETY: only reached through its SpinLock.
unsafe impl Send for CacheBatches {}

impl CacheBatches {
    const EMPTY: CacheBatches = CacheBatches {
        top: ptr::null_mut(),
        spans: 0,
    };

    /// Pushes a chain of `n` runs as one batch: O(1).
    ///
    /// # Safety
    /// `head` starts a chain of exactly `n >= 1` free runs no list holds.
    unsafe fn push_batch(&mut self, head: *mut Span, n: usize) {
        // SAFETY: per the contract.
        unsafe {
            (*head).prev = self.top;
            (*head).block_count = n as u32;
        }
        self.top = head;
        self.spans += n;
    }

    /// Pops the top batch, or its first `max` runs if it is longer; returns the chain and
    /// its length. O(1) when the whole batch is taken.
    fn pop_batch(&mut self, max: usize) -> (*mut Span, usize) {
        let head = self.top;
        if head.is_null() || max == 0 {
            return (ptr::null_mut(), 0);
        }
        // SAFETY: batch heads and their chains are valid free run headers.
        unsafe {
            let n = (*head).block_count as usize;
            self.top = (*head).prev;
            if n <= max {
                self.spans -= n;
                return (head, n);
            }
            // Split: keep the remainder as a batch, as old as the whole was.
            let rest = split_chain(head, max);
            (*rest).prev = self.top;
            (*rest).block_count = (n - max) as u32;
            (*rest).cached_at = (*head).cached_at;
            self.top = rest;
            self.spans -= max;
            (head, max)
        }
    }

    /// Removes every batch stamped at or before `cutoff` (batches are stamped in push
    /// order, so these are the bottom of the stack) and returns the newest of them, linked
    /// to the older ones by `prev` (null if none), and the new bottom batch (null if the
    /// stack is now empty).
    fn cut_older_than(&mut self, cutoff: u64) -> (*mut Span, *mut Span) {
        let mut newer: *mut Span = ptr::null_mut();
        let mut batch = self.top;
        // SAFETY: batch heads and their chains are valid free run headers.
        unsafe {
            while !batch.is_null() && (*batch).cached_at > cutoff {
                newer = batch;
                batch = (*batch).prev;
            }
            if batch.is_null() {
                return (batch, newer);
            }
            if newer.is_null() {
                self.top = ptr::null_mut();
            } else {
                (*newer).prev = ptr::null_mut();
            }
            let mut old = batch;
            while !old.is_null() {
                self.spans -= (*old).block_count as usize;
                old = (*old).prev;
            }
        }
        (batch, newer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` zeroed span headers (every field's zero is valid: null pointers, `Kind::Small`,
    /// `State::Active`, zero counters).
    fn headers(n: usize) -> Vec<Span> {
        // SAFETY: see above.
        (0..n).map(|_| unsafe { core::mem::zeroed() }).collect()
    }

    /// Links `runs` into a null-terminated chain by `next`; returns its head.
    fn chain(runs: &[*mut Span]) -> *mut Span {
        for w in runs.windows(2) {
            // SAFETY: headers owned by the test.
            unsafe { (*w[0]).next = w[1] };
        }
        // SAFETY: as above.
        unsafe { (*runs[runs.len() - 1]).next = ptr::null_mut() };
        runs[0]
    }

    #[test]
    fn aging_merges_ticks_cuts_oldest_first_and_pops_youngest_first() {
        let mut spans = headers(8);
        let p: Vec<*mut Span> = spans.iter_mut().map(|s| s as *mut Span).collect();
        let mut aging = Aging::EMPTY;
        // Batches at 10, 20 (two inserts in the same tick: one batch) and 30 ms.
        // SAFETY (all pushes): chains of the test's headers, each pushed once.
        unsafe {
            aging.push(chain(&p[0..2]), 2, 10);
            aging.push(chain(&p[2..4]), 2, 20);
            aging.push(chain(&p[4..5]), 1, 20);
            aging.push(chain(&p[5..8]), 3, 30);
        }
        assert_eq!(aging.batches.spans, 8);
        assert_eq!(aging.oldest, 10);
        // SAFETY: batch heads are the test's headers.
        unsafe {
            assert_eq!((*p[4]).block_count, 3, "the tick-20 inserts joined");
            assert_eq!((*p[4]).prev, p[0]);
        }
        let now = 10 + CACHE_AGING_MS - 1;
        assert!(aging.cut_expired(now).is_null(), "nothing is that old yet");
        // At 20 + ageing time the batches of 10 and 20 ms have expired.
        let cut = aging.cut_expired(20 + CACHE_AGING_MS);
        assert_eq!(
            cut, p[4],
            "the newest expired batch, then older ones by `prev`"
        );
        // SAFETY: as above.
        unsafe { assert_eq!((*cut).prev, p[0]) };
        assert_eq!((aging.batches.spans, aging.oldest), (3, 30));
        // A partial pop keeps the remainder as a batch as old as the whole.
        assert_eq!(aging.pop(1), (p[5], 1));
        // SAFETY: as above.
        assert_eq!(unsafe { (*p[6]).cached_at }, 30);
        assert_eq!(aging.pop(64), (p[6], 2));
        assert_eq!((aging.batches.spans, aging.oldest), (0, u64::MAX));
        assert!(aging.cut_expired(u64::MAX).is_null());
    }
}
