//! The thread span cache: the free runs a heap keeps for its own next requests, and the
//! spare span of each size class.
//!
//! A heap's cache is its owner's, but other threads reach it too: a decay sweep (run by
//! whichever thread finds one due, see `global.rs`) gives back the runs nobody reused for
//! `decay_ms`, and `collect()` gives back everything. So every cache sits in a
//! [`HeapShared`] behind a spin lock, and the slots of all heaps are on one list per
//! configuration that is only ever pushed to (heaps are never unmapped). The owner takes
//! the lock for span-level events only — a bin that needs a new span, a span going back, a
//! large block — never for a block; a sweeper only tries the lock and skips a busy cache.
//!
//! Bounds: per span count, `thread_cache_limit` runs (32 single spans by default); all
//! counts together, `max_thread_cache_bytes`. A heap whose thread frees large blocks that
//! others allocated does not take them at all (they go to the global cache), so what a
//! consumer thread keeps here is what it allocates itself.
//!
//! Runs are stamped with the sweep period they came in (`Span::cached_at`); pushes and
//! chains from the global cache go on top, so stamps never decrease from bottom to top and
//! a sweep cuts the old runs off the bottom of each stack.

use crate::deferred::DeferredList;
use crate::lock::SpinLock;
use crate::size_class::MAX_CLASS_COUNT;
use crate::span::{Batch, Run, Span, SpanStack, LARGE_CLASS_COUNT};
use crate::stats::HeapCounters;
use core::ptr;
use core::sync::atomic::AtomicBool;

// `ThreadCache::held` has a bit per span count.
const _: () = assert!(LARGE_CLASS_COUNT <= 64);

/// The part of a heap that other threads reach, and its link on the configuration's list
/// of heaps. Everything here is reached through `&HeapShared` only — atomics, locks, and
/// counters with their own write rules — so other threads may use it while the heap's
/// user holds `&mut` to the heap's owner part (`Heap`), which does not contain it.
///
/// | field | written by | read by |
/// |---|---|---|
/// | `notices` | any thread (push); the heap's user or a sweeper holding `lock` (take) | all |
/// | `orphaned` | the orphan lock's holder | all |
/// | `draining` | threads draining an orphaned heap (`Heap::drain_orphan`) | same |
/// | `lock` | the heap's user, sweeps | — |
/// | `cache` | under its lock: the heap's user, sweeps, `collect()` | same |
/// | `counters` | see [`HeapCounters`] (a first-class heap's: any thread, atomically) | `statistics()` |
/// | `private` | once, before the part is published | frees of its blocks, sweeps |
/// | `returned` | under its lock: threads freeing a first-class heap's large run; the heap's user | same |
/// | `huge` | under its lock: the heap's user, threads freeing one of its huge blocks | same |
/// | `next` | once, before the part is published | list walkers |
// `notices` first: the inline refill reads it beside the owner part's last field, its tick
// count (`Heap::ticks`).
#[repr(C)]
pub(crate) struct HeapShared {
    /// Notices from other threads: small spans that were in none of the heap's lists
    /// (see [`RemoteList`](crate::remote::RemoteList)) and received a remote free. Linked
    /// through `Span::notice_link`.
    pub(crate) notices: DeferredList,
    /// Set while the heap has no thread (on the orphan list).
    pub(crate) orphaned: AtomicBool,
    /// Set while some thread drains this orphaned heap on its behalf (`Heap::drain_orphan`).
    pub(crate) draining: AtomicBool,
    /// Held while the heap's notices are taken: by the heap's user (or the orphan lock's
    /// holder) and by a decay sweep that settles some of them (`Heap::sweep_notices`).
    /// Taken after the orphan lock and before the cache's lock.
    pub(crate) lock: SpinLock<()>,
    /// The cache.
    pub(crate) cache: SpinLock<ThreadCache>,
    /// Statistics of the heap's thread (written by it alone, read by `statistics()`; a
    /// first-class heap's by any thread, atomically).
    pub(crate) counters: HeapCounters,
    /// The heap is a first-class heap (`rpmalloc::Heap`): its spans come from its own
    /// mappings only and go back to its own cache, never to the shared caches (its drop
    /// unmaps the mappings whole), and sweeps leave it alone. Written once, before the
    /// record is published to the list of heaps; a record never changes kind.
    pub(crate) private: bool,
    /// A first-class heap's large runs that other threads freed (a chain through
    /// `Run::next`), for the heap to take back.
    pub(crate) returned: SpinLock<*mut Span>,
    /// A first-class heap's huge blocks (a list through `HugeHeader::prev`/`next`),
    /// unmapped by their free (any thread) or by the heap's drop.
    pub(crate) huge: SpinLock<*mut Span>,
    /// The next heap on the list, written once before this one is published.
    pub(crate) next: *const HeapShared,
}

impl HeapShared {
    /// A new heap's part, not yet on the list.
    pub(crate) const fn new() -> Self {
        HeapShared {
            notices: DeferredList::new(),
            orphaned: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            lock: SpinLock::new(()),
            cache: SpinLock::new(ThreadCache::EMPTY),
            counters: HeapCounters::new(),
            private: false,
            returned: SpinLock::new(ptr::null_mut()),
            huge: SpinLock::new(ptr::null_mut()),
            next: ptr::null(),
        }
    }
}

/// Free runs per span count and a spare span per size class (see the module doc).
pub(crate) struct ThreadCache {
    /// Free runs of each span count, youngest on top.
    stacks: [SpanStack; LARGE_CLASS_COUNT],
    /// Bit `count - 1` is set when the stack of `count` spans may hold runs (a clear bit
    /// means an empty stack; a pop leaves the bit, the searches clear it when they find the
    /// stack empty): searches and sweeps visit only those.
    held: u64,
    /// Bytes of the runs on `stacks`.
    bytes: usize,
    /// Spare spans held.
    spare_count: usize,
    /// Per size class, the last span it released before carving all its blocks, kept for
    /// that class's next span (as rpmalloc's per-class span cache). Such a span has only
    /// its first pages touched; through the caches a class of bigger blocks would take it
    /// and touch it whole. Not counted in `bytes`: one per class at most.
    spares: [*mut Span; MAX_CLASS_COUNT],
}

// SAFETY: the raw pointers are free runs this cache owns; it is only reached through its
// lock.
unsafe impl Send for ThreadCache {}

/// Runs cut from a cache: batches (each a chain linked by `next`, null-terminated),
/// linked by their heads' `prev`. The form `Global::unmap_batches` takes.
pub(crate) struct Batches {
    /// Head of the last batch added, or null.
    pub(crate) top: *mut Span,
}

impl Batches {
    /// No runs.
    pub(crate) const EMPTY: Batches = Batches {
        top: ptr::null_mut(),
    };

    /// Adds a null-terminated chain (or nothing, if `chain` is null).
    ///
    /// # Safety
    /// `chain` is null or a chain of free runs no list holds.
    unsafe fn add(&mut self, chain: *mut Span) {
        if !chain.is_null() {
            // SAFETY: per the contract, a valid head.
            unsafe { Batch(chain).set_prev(self.top) };
            self.top = chain;
        }
    }
}

impl ThreadCache {
    const EMPTY: ThreadCache = ThreadCache {
        stacks: [const { SpanStack::EMPTY }; LARGE_CLASS_COUNT],
        held: 0,
        bytes: 0,
        spare_count: 0,
        spares: [ptr::null_mut(); MAX_CLASS_COUNT],
    };

    /// Empties the cache without touching its runs (a first-class heap's drop, which
    /// unmaps their mappings whole).
    pub(crate) fn forget_all(&mut self) {
        *self = ThreadCache::EMPTY;
    }

    /// Bytes of the cached runs (spares not included).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Spare spans held.
    pub(crate) fn spares(&self) -> usize {
        self.spare_count
    }

    /// Runs of `count` spans held.
    #[cfg(test)]
    fn runs(&self, count: usize) -> usize {
        self.stacks[count - 1].len()
    }

    /// Pops the youngest run of `count` spans, or null.
    #[inline]
    pub(crate) fn pop(&mut self, count: usize, span_size: usize) -> *mut Span {
        let span = self.stacks[count - 1].pop();
        if !span.is_null() {
            self.bytes -= count * span_size;
        }
        span
    }

    /// Pops the youngest run of the smallest span count above `count` that the cache
    /// holds, or null.
    pub(crate) fn pop_larger(&mut self, count: usize, span_size: usize) -> *mut Span {
        loop {
            // Counts above `count` (`count` < 64).
            let above = self.held & !((1u64 << count) - 1);
            if above == 0 {
                return ptr::null_mut();
            }
            let larger = above.trailing_zeros() as usize + 1;
            let span = self.pop(larger, span_size);
            if !span.is_null() {
                return span;
            }
            self.held &= !(1 << (larger - 1));
        }
    }

    /// Pops the youngest run of the largest span count of at least `count` that the cache
    /// holds, or null.
    pub(crate) fn pop_longest(&mut self, count: usize, span_size: usize) -> *mut Span {
        loop {
            let from = self.held & !((1u64 << (count - 1)) - 1);
            if from == 0 {
                return ptr::null_mut();
            }
            let longest = 64 - from.leading_zeros() as usize;
            let span = self.pop(longest, span_size);
            if !span.is_null() {
                return span;
            }
            self.held &= !(1 << (longest - 1));
        }
    }

    /// Pushes a free run of `count` spans, stamped `epoch`; true if the stack now holds
    /// more than `limit` runs or the cache more than `budget` bytes (the caller then cuts
    /// the overflow with [`ThreadCache::take_overflow`]).
    ///
    /// # Safety
    /// `span` is a free run of `count` spans that no list holds.
    #[inline]
    pub(crate) unsafe fn push(
        &mut self,
        span: *mut Span,
        count: usize,
        epoch: u64,
        span_size: usize,
        limit: usize,
        budget: usize,
    ) -> bool {
        let stack = &mut self.stacks[count - 1];
        // SAFETY: `span` is a free run header no list holds (the contract): its stamp is
        // ours to write and it meets `SpanStack::push`'s contract.
        unsafe {
            Run(span).set_cached_at(epoch);
            stack.push(span);
        }
        self.held |= 1 << (count - 1);
        self.bytes += count * span_size;
        stack.len() > limit || self.bytes > budget
    }

    /// Pushes a null-terminated chain of `n` free runs of `count` spans, stamping each.
    ///
    /// # Safety
    /// `chain` is a chain of exactly `n` free runs of `count` spans no list holds.
    pub(crate) unsafe fn push_chain(
        &mut self,
        count: usize,
        chain: *mut Span,
        n: usize,
        epoch: u64,
        span_size: usize,
    ) {
        let mut run = chain;
        while !run.is_null() {
            // SAFETY: every run of the chain is a free run header no list holds (the
            // contract).
            unsafe {
                Run(run).set_cached_at(epoch);
                run = Run(run).next();
            }
        }
        if n == 0 {
            return;
        }
        // SAFETY: a chain of exactly `n` free runs no list holds (the contract), as
        // `SpanStack::push_chain` needs.
        unsafe { self.stacks[count - 1].push_chain(chain, n) };
        self.held |= 1 << (count - 1);
        self.bytes += n * count * span_size;
    }

    /// Cuts what the stack of `count` holds beyond its bounds off its top: at least
    /// `batch` runs when it holds more than `limit`, or as many as bring the cache under
    /// `budget` bytes (all counts together). Returns the chain (null-terminated) and its
    /// length; `(null, 0)` within bounds.
    pub(crate) fn take_overflow(
        &mut self,
        count: usize,
        limit: usize,
        batch: usize,
        budget: usize,
        span_size: usize,
    ) -> (*mut Span, usize) {
        let held = self.stacks[count - 1].len();
        let run_bytes = count * span_size;
        let mut n = 0;
        if held > limit {
            n = (held - limit).max(batch);
        }
        if self.bytes > budget {
            n = n.max((self.bytes - budget).div_ceil(run_bytes));
        }
        if n == 0 {
            return (ptr::null_mut(), 0);
        }
        let stack = &mut self.stacks[count - 1];
        let (chain, n) = stack.take_chain(n);
        if stack.len() == 0 {
            self.held &= !(1 << (count - 1));
        }
        self.bytes -= n * run_bytes;
        (chain, n)
    }

    /// Takes every run of `count` spans (thread exit).
    pub(crate) fn take_stack(&mut self, count: usize, span_size: usize) -> (*mut Span, usize) {
        let n = self.stacks[count - 1].len();
        let (chain, n) = self.stacks[count - 1].take_chain(n);
        self.held &= !(1 << (count - 1));
        self.bytes -= n * count * span_size;
        (chain, n)
    }

    /// Takes the spare span of `class`, or null.
    #[inline]
    pub(crate) fn take_spare(&mut self, class: usize) -> *mut Span {
        let span = core::mem::replace(&mut self.spares[class], ptr::null_mut());
        self.spare_count -= usize::from(!span.is_null());
        span
    }

    /// Makes `span` the spare of `class`, stamped `epoch`; returns the spare it replaces
    /// (null if none), which the caller releases.
    ///
    /// # Safety
    /// `span` is a free single span no list holds.
    pub(crate) unsafe fn put_spare(
        &mut self,
        class: usize,
        span: *mut Span,
        epoch: u64,
    ) -> *mut Span {
        // SAFETY: `span` is a free single span no list holds (the contract).
        unsafe { Run(span).set_cached_at(epoch) };
        let older = core::mem::replace(&mut self.spares[class], span);
        self.spare_count += usize::from(older.is_null());
        older
    }

    /// Cuts every run and spare stamped at or before `cutoff` (a decay sweep), or all of
    /// them with `u64::MAX` (`collect()`).
    pub(crate) fn cut_stamped_before(&mut self, cutoff: u64, span_size: usize) -> Batches {
        let mut cut = Batches::EMPTY;
        let mut held = self.held;
        while held != 0 {
            let i = held.trailing_zeros() as usize;
            held &= held - 1;
            let stack = &mut self.stacks[i];
            let (chain, n) = stack.cut_stamped_before(cutoff);
            if stack.len() == 0 {
                self.held &= !(1 << i);
            }
            self.bytes -= n * (i + 1) * span_size;
            // SAFETY: a chain just cut from this cache's stack.
            unsafe { cut.add(chain) };
        }
        if self.spare_count == 0 {
            return cut;
        }
        for spare in &mut self.spares {
            // SAFETY: spares are free single spans this cache owns.
            if !spare.is_null() && unsafe { Run(*spare).cached_at() } <= cutoff {
                let span = core::mem::replace(spare, ptr::null_mut());
                self.spare_count -= 1;
                // SAFETY: a free span, now in no list: a chain of one.
                unsafe {
                    Run(span).set_next(ptr::null_mut());
                    cut.add(span);
                }
            }
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: usize = 1 << 16;

    /// `n` zeroed span headers and pointers to them (all-zero is a valid `Span`: null
    /// pointers, zero counts, discriminant 0).
    fn headers(n: usize) -> (Vec<Span>, Vec<*mut Span>) {
        // SAFETY: see above.
        let mut spans: Vec<Span> = (0..n).map(|_| unsafe { core::mem::zeroed() }).collect();
        let p = spans.iter_mut().map(|s| s as *mut Span).collect();
        (spans, p)
    }

    /// Counts the runs in `batches`.
    fn runs(batches: &Batches) -> usize {
        let mut n = 0;
        let mut batch = batches.top;
        while !batch.is_null() {
            let mut run = batch;
            // SAFETY: the test's headers.
            unsafe {
                while !run.is_null() {
                    n += 1;
                    run = Run(run).next();
                }
                batch = Batch(batch).prev();
            }
        }
        n
    }

    #[test]
    fn overflow_respects_the_count_limit_and_the_byte_budget() {
        let (_spans, p) = headers(12);
        let mut cache = ThreadCache::EMPTY;
        for (i, &s) in p.iter().take(10).enumerate() {
            // SAFETY: the test's headers, each pushed once.
            let over = unsafe { cache.push(s, 1, 0, SPAN, 8, usize::MAX) };
            assert_eq!(over, i >= 8, "over the limit of 8 from the ninth run on");
        }
        assert_eq!(cache.bytes(), 10 * SPAN);
        // 10 held, limit 8, batches of 4: four go.
        assert_eq!(cache.take_overflow(1, 8, 4, usize::MAX, SPAN).1, 4);
        assert_eq!((cache.runs(1), cache.bytes()), (6, 6 * SPAN));
        // Within the limit, but a 2-span budget of bytes: the excess goes.
        assert_eq!(cache.take_overflow(1, 8, 4, 2 * SPAN, SPAN).1, 4);
        assert_eq!(cache.take_overflow(1, 8, 4, 2 * SPAN, SPAN).1, 0);
        // A 3-span run over a 4-span budget: the run itself goes.
        // SAFETY: as above.
        assert!(unsafe { cache.push(p[10], 3, 0, SPAN, 100, 4 * SPAN) });
        assert_eq!(cache.take_overflow(3, 100, 1, 4 * SPAN, SPAN).1, 1);
        assert_eq!(cache.bytes(), 2 * SPAN);
    }

    #[test]
    fn searches_find_the_nearest_and_the_longest_count_held() {
        let (_spans, p) = headers(4);
        let mut cache = ThreadCache::EMPTY;
        // SAFETY (all): the test's headers, each pushed once.
        unsafe {
            cache.push(p[0], 3, 0, SPAN, 8, usize::MAX);
            cache.push(p[1], 9, 0, SPAN, 8, usize::MAX);
            cache.push(p[2], 63, 0, SPAN, 8, usize::MAX);
            cache.push(p[3], 1, 0, SPAN, 8, usize::MAX);
        }
        assert_eq!(cache.pop_larger(3, SPAN), p[1], "9 is next above 3");
        assert_eq!(cache.pop_larger(3, SPAN), p[2]);
        assert!(
            cache.pop_larger(3, SPAN).is_null(),
            "3 itself is not above 3"
        );
        assert!(cache.pop_longest(4, SPAN).is_null());
        assert_eq!(cache.pop_longest(3, SPAN), p[0], "at least 3");
        assert_eq!(cache.pop_longest(1, SPAN), p[3]);
        assert_eq!(cache.bytes(), 0);
        assert!(cache.pop_larger(0, SPAN).is_null() && cache.pop_longest(1, SPAN).is_null());
        assert_eq!(
            cache.held, 0,
            "the searches cleared the bits of the emptied stacks"
        );
    }

    #[test]
    fn a_sweep_cuts_old_runs_and_spares_only() {
        let (_spans, p) = headers(6);
        let mut cache = ThreadCache::EMPTY;
        // SAFETY (all): the test's headers, each in one place at a time.
        unsafe {
            cache.push(p[0], 1, 1, SPAN, 8, usize::MAX);
            cache.push(p[1], 1, 2, SPAN, 8, usize::MAX);
            cache.push(p[2], 2, 1, SPAN, 8, usize::MAX);
            cache.push(p[3], 2, 5, SPAN, 8, usize::MAX);
            assert!(cache.put_spare(7, p[4], 1).is_null());
            assert!(cache.put_spare(8, p[5], 5).is_null());
        }
        let cut = cache.cut_stamped_before(2, SPAN);
        assert_eq!(runs(&cut), 4, "two single spans, one 2-span run, one spare");
        assert_eq!((cache.runs(1), cache.runs(2)), (0, 1));
        assert_eq!(cache.bytes(), 2 * SPAN);
        assert!(cache.take_spare(7).is_null());
        assert_eq!(cache.take_spare(8), p[5]);
        let all = cache.cut_stamped_before(u64::MAX, SPAN);
        assert_eq!((runs(&all), cache.bytes()), (1, 0));
    }
}
