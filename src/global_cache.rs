//! The global span cache: free runs any thread of the configuration can take, per span
//! count.
//!
//! Each span count has two stacks of *batches* (a batch is a chain of runs moved at once)
//! under one spin lock: the runs within the count's limit (*ready*) and up to as many again
//! beyond it (*ageing*). Both are stamped with the decay sweep period they came in
//! (`Span::cached_at` of the batch head): a decay sweep gives back the ready batches that
//! waited `decay_ms` and the ageing batches that waited `CACHE_AGING_MS` (`params.rs`), so
//! a burst of frees followed by a burst of allocations reuses resident pages, and memory
//! nobody reuses goes back to the OS. All counts together hold at most
//! `max_global_cache_bytes`; runs beyond every bound go back at once.
//!
//! A thread cuts its batch from its own cache before taking the lock and links it in with
//! O(1) work; a refill pops one batch. (Moving span by span under the lock touched one span
//! header — a cache miss — per span while other threads spun.)
//!
//! About a fifth of this file is its unit tests.

use crate::lock::SpinLock;
use crate::span::{Batch, Run, Span, LARGE_CLASS_COUNT};
use crate::thread_cache::Batches;
use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The global cache of one configuration (see the module doc).
pub(crate) struct GlobalCache {
    /// Per span count.
    counts: [SpinLock<SpanCache>; LARGE_CLASS_COUNT],
    /// Runs in each span count's cache, written under its lock and read without it: a hint
    /// that spares a refill the lock when the cache is empty.
    hint: [AtomicUsize; LARGE_CLASS_COUNT],
    /// Bit `count - 1` set while that count's cache holds runs (changed under its lock when
    /// it empties or stops being empty): searches for a longer run read one word, not 63.
    held: AtomicU64,
    /// Bytes of all cached runs, changed under the span counts' locks.
    bytes: AtomicUsize,
}

/// The limits an insert works with, from the configuration.
pub(crate) struct Limits {
    /// Ready runs the span count keeps (the ageing stack holds as many again).
    pub(crate) runs: usize,
    /// Bytes all counts together keep.
    pub(crate) bytes: usize,
    /// Bytes per span.
    pub(crate) span_size: usize,
}

impl GlobalCache {
    /// An empty cache.
    pub(crate) const fn new() -> Self {
        GlobalCache {
            counts: [const { SpinLock::new(SpanCache::EMPTY) }; LARGE_CLASS_COUNT],
            hint: [const { AtomicUsize::new(0) }; LARGE_CLASS_COUNT],
            held: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Bytes of the cached runs (relaxed).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the cache looked non-empty for runs of `count` spans (relaxed; a stale
    /// answer only costs a lock or a fresh span).
    #[inline]
    pub(crate) fn has(&self, count: usize) -> bool {
        self.runs_hint(count) != 0
    }

    /// How many runs of `count` spans the cache looked to hold (relaxed, a hint).
    #[inline]
    pub(crate) fn runs_hint(&self, count: usize) -> usize {
        self.hint[count - 1].load(Ordering::Relaxed)
    }

    /// The span counts above `count` (with `and_count`, from `count`) whose caches looked
    /// non-empty, as a bit set (bit `k - 1` for `k` spans; relaxed, a hint).
    #[inline]
    pub(crate) fn held_from(&self, count: usize, and_count: bool) -> u64 {
        let from = if and_count { count - 1 } else { count };
        self.held.load(Ordering::Relaxed) & !((1u64 << from) - 1)
    }

    /// Publishes the run count of `count` spans' cache after a change (under its lock).
    #[inline]
    fn publish(&self, count: usize, cache: &SpanCache) {
        let runs = cache.runs();
        // Written only under the count's lock: a load and a store, no read-modify-write.
        let was = self.hint[count - 1].load(Ordering::Relaxed);
        self.hint[count - 1].store(runs, Ordering::Relaxed);
        let bit = 1u64 << (count - 1);
        if was == 0 && runs != 0 {
            self.held.fetch_or(bit, Ordering::Relaxed);
        } else if was != 0 && runs == 0 {
            self.held.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// Caches a chain of `n` free runs of `count` spans, stamped `epoch`: as ready runs up
    /// to the count's limit, the rest as ageing runs up to as many again, all within the
    /// byte budget. Returns what did not fit, a null-terminated chain for the caller to
    /// give back to the OS.
    ///
    /// # Safety
    /// `chain` is a chain of exactly `n >= 1` free runs of `count` spans no list holds.
    pub(crate) unsafe fn insert(
        &self,
        count: usize,
        mut chain: *mut Span,
        n: usize,
        epoch: u64,
        limits: &Limits,
    ) -> *mut Span {
        let run_bytes = count * limits.span_size;
        let mut cache = self.counts[count - 1].lock();
        // Other counts change `bytes` under their own locks: the budget can be passed by
        // what concurrent inserts add at once (a batch each), no more.
        let mut budget_runs = limits.bytes.saturating_sub(self.bytes()) / run_bytes;
        // Fill the ready runs to the limit (as rpmalloc does): dropping the whole batch
        // would keep the cache a batch short and send spans to the OS that the next
        // thread maps right back.
        let room = limits
            .runs
            .saturating_sub(cache.ready.batches.spans)
            .min(budget_runs)
            .min(n);
        let mut cached = 0;
        if room > 0 {
            // SAFETY: per the contract `chain` holds `n >= room >= 1` free runs of `count`
            // spans; its first `room` are pushed, the rest stays ours.
            let rest = unsafe { split_chain(chain, room) };
            // SAFETY: a chain of `room` free runs (just cut), no list holds them.
            unsafe { cache.ready.push(chain, room, epoch, false) };
            chain = rest;
            cached += room;
            budget_runs -= room;
        }
        // The rest ages (up to as many runs again) instead of going back at once.
        let rest = n - room;
        if rest > 0 && cache.aging.batches.spans + rest <= limits.runs && rest <= budget_runs {
            // SAFETY: a chain of `rest` free runs per the contract.
            unsafe { cache.aging.push(chain, rest, epoch, true) };
            chain = ptr::null_mut();
            cached += rest;
        }
        self.bytes.fetch_add(cached * run_bytes, Ordering::Relaxed);
        self.publish(count, &cache);
        chain
    }

    /// Takes up to `max` runs of `count` spans: the youngest ageing batch (those are about
    /// to go back to the OS; under steady churn the ready runs would otherwise sit while
    /// the overflow keeps ageing), else the top ready batch. Returns the chain and its
    /// length.
    pub(crate) fn extract(&self, count: usize, max: usize, span_size: usize) -> (*mut Span, usize) {
        let mut cache = self.counts[count - 1].lock();
        let taken = match cache.aging.pop(max) {
            (_, 0) => cache.ready.pop(max),
            taken => taken,
        };
        self.bytes
            .fetch_sub(taken.1 * count * span_size, Ordering::Relaxed);
        self.publish(count, &cache);
        taken
    }

    /// Cuts, from the runs of `count` spans, the ready batches stamped at or before
    /// `ready_cutoff` and the ageing ones at or before `aging_cutoff`, for the caller to
    /// give back to the OS (a decay sweep; `u64::MAX` for both takes everything).
    pub(crate) fn cut_stamped_before(
        &self,
        count: usize,
        ready_cutoff: u64,
        aging_cutoff: u64,
        span_size: usize,
    ) -> Batches {
        let mut cache = self.counts[count - 1].lock();
        if cache.ready.oldest > ready_cutoff && cache.aging.oldest > aging_cutoff {
            return Batches::EMPTY;
        }
        let (ready, ready_runs) = cache.ready.cut(ready_cutoff);
        let (aging, aging_runs) = cache.aging.cut(aging_cutoff);
        self.bytes.fetch_sub(
            (ready_runs + aging_runs) * count * span_size,
            Ordering::Relaxed,
        );
        self.publish(count, &cache);
        // One list of batches: the ageing ones below the ready ones.
        let mut cut = Batches { top: aging };
        if !ready.is_null() {
            let mut bottom = ready;
            // SAFETY: batch heads of this cache, linked by `prev`.
            unsafe {
                while !Batch(bottom).prev().is_null() {
                    bottom = Batch(bottom).prev();
                }
                Batch(bottom).set_prev(aging);
            }
            cut.top = ready;
        }
        cut
    }

    /// Takes every lock (before `fork`).
    #[cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
    pub(crate) fn lock_all(&self) {
        for c in &self.counts {
            c.raw_lock();
        }
    }

    /// Releases what [`GlobalCache::lock_all`] took.
    #[cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
    ///
    /// # Safety
    /// The caller holds every lock through `lock_all`.
    pub(crate) unsafe fn unlock_all(&self) {
        for c in &self.counts {
            // SAFETY: `lock_all` took this lock on the caller's thread (the contract).
            unsafe { c.raw_unlock() };
        }
    }

    /// Resets every lock in a forked child.
    #[cfg_attr(windows, allow(dead_code, reason = "Windows has no fork"))]
    ///
    /// # Safety
    /// Only the calling thread exists (just after `fork`).
    pub(crate) unsafe fn reset_locks(&self) {
        for c in &self.counts {
            // SAFETY: no other thread exists to hold or wait for it (the contract).
            unsafe { c.force_unlock() };
        }
    }
}

/// One span count's cache: the runs within its limit and the runs beyond it that age.
pub(crate) struct SpanCache {
    ready: Stamped,
    aging: Stamped,
}

impl SpanCache {
    const EMPTY: SpanCache = SpanCache {
        ready: Stamped::EMPTY,
        aging: Stamped::EMPTY,
    };

    /// Runs held, ready and ageing.
    fn runs(&self) -> usize {
        self.ready.batches.spans + self.aging.batches.spans
    }
}

/// A stack of batches stamped in their heads' `cached_at`, youngest on top; `oldest` lets a
/// sweep see in O(1) that nothing expired (walking the batch heads under the lock is one
/// cache miss per batch: span headers share a few cache sets).
struct Stamped {
    batches: CacheBatches,
    /// Stamp of the bottom (oldest) batch; `u64::MAX` when empty.
    oldest: u64,
}

impl Stamped {
    const EMPTY: Stamped = Stamped {
        batches: CacheBatches::EMPTY,
        oldest: u64::MAX,
    };

    /// Pushes a chain of `n` runs stamped `epoch`; with `merge`, it joins the top batch if
    /// that has the same stamp (the ageing stack then holds at most one batch per sweep
    /// period).
    ///
    /// # Safety
    /// `chain` is a chain of exactly `n >= 1` free runs no list holds; `epoch` is not older
    /// than the top batch's stamp.
    unsafe fn push(&mut self, chain: *mut Span, n: usize, epoch: u64, merge: bool) {
        let top = self.batches.top;
        // SAFETY: per the contract; batch heads are valid free run headers.
        unsafe {
            if merge && !top.is_null() && Batch(top).cached_at() == epoch {
                let mut tail = chain;
                while !Run(tail).next().is_null() {
                    tail = Run(tail).next();
                }
                Run(tail).set_next(top);
                Batch(chain).set_prev(Batch(top).prev());
                Batch(chain).set_block_count(Batch(top).block_count() + n as u32);
                Batch(chain).set_cached_at(epoch);
                self.batches.top = chain;
                self.batches.spans += n;
                return;
            }
            Batch(chain).set_cached_at(epoch);
            self.batches.push_batch(chain, n);
        }
        if top.is_null() {
            self.oldest = epoch;
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

    /// Removes the batches stamped at or before `cutoff` and returns the newest of them,
    /// linked to older ones by `prev` (null, in O(1), if none), and how many runs they hold.
    fn cut(&mut self, cutoff: u64) -> (*mut Span, usize) {
        if self.oldest > cutoff {
            return (ptr::null_mut(), 0);
        }
        let before = self.batches.spans;
        let (cut, bottom) = self.batches.cut_older_than(cutoff);
        // SAFETY: `bottom` is null or the remaining bottom batch head.
        self.oldest = if bottom.is_null() {
            u64::MAX
        } else {
            unsafe { Batch(bottom).cached_at() }
        };
        (cut, before - self.batches.spans)
    }
}

/// Cuts a null-terminated chain of free runs after its first `n` and returns the rest
/// (null if the chain held exactly `n`).
///
/// # Safety
/// `n >= 1`, and `chain` starts a chain of at least `n` free run headers linked by `next`
/// that the caller owns.
unsafe fn split_chain(chain: *mut Span, n: usize) -> *mut Span {
    debug_assert!(n >= 1);
    // SAFETY: per the contract the first `n` links are valid headers.
    unsafe {
        let mut last = chain;
        for _ in 1..n {
            last = Run(last).next();
        }
        let rest = Run(last).next();
        Run(last).set_next(ptr::null_mut());
        rest
    }
}

/// A stack of batches. A batch is a null-terminated chain of
/// free runs linked by `next`; batch heads are linked by `prev` and hold the batch's length
/// in `block_count` (fields a free run does not otherwise use).
struct CacheBatches {
    /// Head of the top batch.
    top: *mut Span,
    /// Runs in all batches.
    spans: usize,
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
        // SAFETY: `head` is a valid run header no list holds (the contract), so its links
        // are ours to write.
        unsafe {
            Batch(head).set_prev(self.top);
            Batch(head).set_block_count(n as u32);
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
            let n = Batch(head).block_count() as usize;
            self.top = Batch(head).prev();
            if n <= max {
                self.spans -= n;
                return (head, n);
            }
            // Split: keep the remainder as a batch, as old as the whole was.
            let rest = split_chain(head, max);
            Batch(rest).set_prev(self.top);
            Batch(rest).set_block_count((n - max) as u32);
            Batch(rest).set_cached_at(Batch(head).cached_at());
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
            while !batch.is_null() && Batch(batch).cached_at() > cutoff {
                newer = batch;
                batch = Batch(batch).prev();
            }
            if batch.is_null() {
                return (batch, newer);
            }
            if newer.is_null() {
                self.top = ptr::null_mut();
            } else {
                Batch(newer).set_prev(ptr::null_mut());
            }
            let mut old = batch;
            while !old.is_null() {
                self.spans -= Batch(old).block_count() as usize;
                old = Batch(old).prev();
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
            unsafe { Run(w[0]).set_next(w[1]) };
        }
        // SAFETY: as above.
        unsafe { Run(runs[runs.len() - 1]).set_next(ptr::null_mut()) };
        runs[0]
    }

    #[test]
    fn ageing_merges_periods_cuts_oldest_first_and_pops_youngest_first() {
        let mut spans = headers(8);
        let p: Vec<*mut Span> = spans.iter_mut().map(|s| s as *mut Span).collect();
        let mut aging = Stamped::EMPTY;
        // Batches in periods 10, 20 (two inserts in the same period: one batch) and 30.
        // SAFETY (all pushes): chains of the test's headers, each pushed once.
        unsafe {
            aging.push(chain(&p[0..2]), 2, 10, true);
            aging.push(chain(&p[2..4]), 2, 20, true);
            aging.push(chain(&p[4..5]), 1, 20, true);
            aging.push(chain(&p[5..8]), 3, 30, true);
        }
        assert_eq!(aging.batches.spans, 8);
        assert_eq!(aging.oldest, 10);
        // SAFETY: batch heads are the test's headers.
        unsafe {
            assert_eq!(Batch(p[4]).block_count(), 3, "the period-20 inserts joined");
            assert_eq!(Batch(p[4]).prev(), p[0]);
        }
        assert_eq!(aging.cut(9), (ptr::null_mut(), 0), "nothing is that old");
        let (cut, n) = aging.cut(20);
        assert_eq!(
            (cut, n),
            (p[4], 5),
            "the newest expired batch, then older ones by `prev`"
        );
        // SAFETY: as above.
        unsafe { assert_eq!(Batch(cut).prev(), p[0]) };
        assert_eq!((aging.batches.spans, aging.oldest), (3, 30));
        // A partial pop keeps the remainder as a batch as old as the whole.
        assert_eq!(aging.pop(1), (p[5], 1));
        // SAFETY: as above.
        assert_eq!(unsafe { Batch(p[6]).cached_at() }, 30);
        assert_eq!(aging.pop(64), (p[6], 2));
        assert_eq!((aging.batches.spans, aging.oldest), (0, u64::MAX));
        assert_eq!(aging.cut(u64::MAX), (ptr::null_mut(), 0));
    }

    #[test]
    fn inserts_fill_ready_then_ageing_within_the_byte_budget() {
        const SPAN: usize = 1 << 16;
        let mut spans = headers(10);
        let p: Vec<*mut Span> = spans.iter_mut().map(|s| s as *mut Span).collect();
        let cache = GlobalCache::new();
        let limits = Limits {
            runs: 3,
            bytes: 8 * SPAN,
            span_size: SPAN,
        };
        // SAFETY (all inserts): chains of the test's headers, each inserted once.
        unsafe {
            // 4 runs: 3 ready, 1 ageing.
            assert!(cache.insert(1, chain(&p[0..4]), 4, 1, &limits).is_null());
            assert_eq!(cache.bytes(), 4 * SPAN);
            // 3 more: the ready runs are full and the ageing room (3) has 2 left: all 3
            // come back.
            assert_eq!(cache.insert(1, chain(&p[4..7]), 3, 1, &limits), p[4]);
            // 2 more fit the ageing room; then the byte budget (8 spans) stops a 3-span run.
            assert!(cache.insert(1, chain(&p[4..6]), 2, 2, &limits).is_null());
            assert_eq!(cache.bytes(), 6 * SPAN);
            assert_eq!(cache.insert(3, chain(&p[6..7]), 1, 2, &limits), p[6]);
        }
        // Ageing batches go first, youngest first.
        assert_eq!(cache.extract(1, 8, SPAN), (p[4], 2));
        // A sweep: ready runs stamped at or before 0 (none), ageing at or before 1.
        let cut = cache.cut_stamped_before(1, 0, 1, SPAN);
        assert_eq!(cut.top, p[3]);
        assert_eq!(cache.bytes(), 3 * SPAN);
        let all = cache.cut_stamped_before(1, u64::MAX, u64::MAX, SPAN);
        assert_eq!(all.top, p[0]);
        assert_eq!((cache.bytes(), cache.has(1)), (0, false));
    }
}
