//! The global state of one configuration: the global span cache, the list of every
//! heap's thread cache, the decay clock and its sweeps, the orphaned heaps, the thread-exit
//! key, statistics, and the span mapping and unmapping that touch the OS.
//!
//! Everything here is `const`-initialised in the static the macro defines, so there is no
//! setup call: the first allocation finds it ready.
//!
//! **Decay.** There is no background thread. The allocator's own events (a bin refill, a
//! span acquired or released, a large or huge block) *tick*; every
//! `TICKS_PER_CLOCK_READ` ticks a heap reads a coarse clock. Time is counted in sweep
//! periods (`SWEEP_PERIOD_MS`, a quarter of `decay_ms`, at most 125 ms), and every run that
//! enters a cache is stamped with the period of the last clock read. When a new period
//! began, the thread that sees it first runs a *sweep*: it gives back to the OS the global
//! cache's batches and every thread cache's runs and spares that came in `decay_ms` or more
//! ago (ageing batches beyond a count's limit after `CACHE_AGING_MS`). A thread cache whose
//! owner holds its lock is skipped until the next sweep; an idle thread's cache is not, so
//! an idle thread does not pin what it cached. (A stamp can be stale by the events since
//! that heap's last clock read, at most `TICKS_PER_CLOCK_READ`: after a long quiet spell,
//! those few runs may go back early.)

use crate::config::Config;
use crate::global_cache::{GlobalCache, Limits};
use crate::lock::{SpinGuard, SpinLock};
use crate::os;
use crate::params::Params;
use crate::size_class::MAX_CLASS_COUNT;
use crate::span::{Span, LARGE_CLASS_COUNT, SPAN_HEADER_SIZE};
use crate::stats::{ClassUse, Counters, Statistics, Totals};
use crate::thread_cache::{Batches, HeapShared};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The global state of one configuration. Created only by `define_rpmalloc!`.
pub struct Global<C> {
    /// The global span cache.
    cache: GlobalCache,
    /// The shared part (thread cache, counters) of every heap, newest first; only ever
    /// pushed to (heaps are never unmapped), so a reader walks it without a lock.
    heaps: AtomicPtr<HeapShared>,
    /// The current sweep period (`os::now_ms() / SWEEP_PERIOD_MS + 1`, as of the last clock
    /// read of any thread), stamped on every run that enters a cache.
    epoch: AtomicU64,
    /// The period of the last sweep.
    swept: AtomicU64,
    /// Unit tests: this configuration's clock, which only `advance_clock` moves, so decay
    /// is tested without sleeping and without depending on how fast the test runs (under
    /// ThreadSanitizer or Miri real time ran past the delay between two checks).
    #[cfg(test)]
    clock_offset: AtomicU64,
    /// Held by the thread running a sweep or `collect()` (and across `fork`): one at a
    /// time, and a sweep due meanwhile is skipped, not waited for.
    maintenance: SpinLock<()>,
    /// Remote frees between taking a span's notify flag and delivering its notice (see
    /// [`Global::enter_notice_window`]): `fork` waits for none to be in progress, so a
    /// child never inherits a span whose notice died with the thread sending it.
    notices_in_flight: AtomicUsize,
    /// Set while a `fork` waits for `notices_in_flight` to drain; new senders wait.
    forking: AtomicBool,
    /// Heaps of exited threads (their records' addresses, as spans name their heap),
    /// linked through `Heap::next_orphan`; the list is of this configuration's heaps only.
    pub(crate) orphans: SpinLock<*mut u8>,
    /// The pthread key whose destructor retires a thread's heap, plus one (0: not created).
    pub(crate) exit_key: AtomicUsize,
    /// Statistics (updated only with `enable_statistics`).
    pub(crate) stats: Counters,
    _config: PhantomData<C>,
}

// SAFETY: the orphan list's heap addresses are only touched under the orphan lock;
// everything else is atomic or behind a lock.
unsafe impl<C> Sync for Global<C> {}

impl<C: Config> Global<C> {
    /// The initial state; used for the `static` each `define_rpmalloc!` expansion defines.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Global {
            cache: GlobalCache::new(),
            heaps: AtomicPtr::new(ptr::null_mut()),
            epoch: AtomicU64::new(1),
            swept: AtomicU64::new(0),
            #[cfg(test)]
            clock_offset: AtomicU64::new(0),
            maintenance: SpinLock::new(()),
            notices_in_flight: AtomicUsize::new(0),
            forking: AtomicBool::new(false),
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
        self.count(|s| s.mapped(len));
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

    /// The current sweep period, for stamping runs that enter a cache.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The global cache's bounds for runs of `count` spans.
    fn limits(count: usize) -> Limits {
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
            (*span).next = ptr::null_mut();
            self.release_chain((*span).span_count as usize, span, 1);
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
    fn extract_one(&self, mut held: u64, longest: bool) -> *mut Span {
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

    /// Puts a heap's shared part on the list that sweeps, `collect()` and `statistics()`
    /// walk.
    ///
    /// # Safety
    /// `slot` lives for the rest of the process, is not on the list yet, and nothing else
    /// writes its `next` field.
    pub(crate) unsafe fn register(&self, slot: *mut HeapShared) {
        let mut head = self.heaps.load(Ordering::Relaxed);
        loop {
            // SAFETY: per the contract the field is ours until the exchange publishes it.
            unsafe { (*slot).next = head };
            match self
                .heaps
                .compare_exchange_weak(head, slot, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// The shared part of every heap, newest first.
    pub(crate) fn heaps(&self) -> impl Iterator<Item = &HeapShared> {
        let mut slot = self.heaps.load(Ordering::Acquire).cast_const();
        core::iter::from_fn(move || {
            // SAFETY: registered slots live for the rest of the process, and their `next`
            // was written before the release that published them (acquired above).
            let current = unsafe { slot.as_ref()? };
            slot = current.next;
            Some(current)
        })
    }

    /// The clock decay runs on, in milliseconds (`os::now_ms`; in unit tests the manual
    /// clock, from an hour in).
    #[inline]
    fn now_ms(&self) -> u64 {
        #[cfg(test)]
        return 3_600_000 + self.clock_offset.load(Ordering::Relaxed);
        #[cfg(not(test))]
        os::now_ms()
    }

    /// Unit tests: moves this configuration's clock `ms` milliseconds on.
    #[cfg(test)]
    pub(crate) fn advance_clock(&self, ms: u64) {
        self.clock_offset.fetch_add(ms, Ordering::Relaxed);
    }

    /// Reads the clock and moves the sweep period on; if a decay sweep is due (see the
    /// module doc), returns it, for the caller to run (`Heap::clock_tick`: the sweep
    /// also settles idle heaps' notices, which is the heaps' business). Cheap when none is
    /// due; callers rate-limit it with their tick counters.
    #[cold]
    pub(crate) fn clock_tick(&self) -> Option<Sweep<'_>> {
        if !(C::THREAD_CACHE || C::GLOBAL_CACHE) {
            return None;
        }
        // Periods count from 1, so a cutoff of 0 cuts nothing (`decay_ms: never`, or
        // nothing old enough yet).
        let epoch = self.now_ms() / C::SWEEP_PERIOD_MS + 1;
        self.epoch.fetch_max(epoch, Ordering::Relaxed);
        if epoch <= self.swept.load(Ordering::Relaxed) {
            return None;
        }
        // Only try: a thread already sweeping (or collecting, or forking) does the work,
        // and the caller may hold the orphan lock, which `collect` takes after this one.
        let maintenance = self.maintenance.try_lock()?;
        if epoch <= self.swept.load(Ordering::Relaxed) {
            return None;
        }
        if self.swept.swap(epoch, Ordering::Relaxed) == 0 {
            // The first clock read: nothing was cached before it.
            return None;
        }
        let cutoff = epoch.saturating_sub(C::DECAY_SWEEPS);
        Some(Sweep {
            cutoff,
            aging_cutoff: epoch.saturating_sub(C::AGING_SWEEPS).max(cutoff),
            wait: false,
            _maintenance: maintenance,
        })
    }

    /// The sweep `collect()` runs: everything cached goes, and a thread cache in use is
    /// waited for. Waits for a sweep in progress.
    pub(crate) fn collect_sweep(&self) -> Sweep<'_> {
        Sweep {
            cutoff: u64::MAX,
            aging_cutoff: u64::MAX,
            wait: true,
            _maintenance: self.maintenance.lock(),
        }
    }

    /// The caches' part of `sweep`: gives back to the OS every run in the global cache
    /// and the thread caches, and every spare, stamped at or before the sweep's cutoff,
    /// and every ageing run at or before its ageing cutoff. A thread cache in use is
    /// skipped (its owner is not idle), or with `sweep.wait` waited for.
    pub(crate) fn sweep_caches(&self, sweep: &Sweep<'_>) {
        if C::GLOBAL_CACHE && sweep.aging_cutoff > 0 {
            for count in 1..=LARGE_CLASS_COUNT {
                if !self.cache.has(count) {
                    continue;
                }
                let cut = self.cache.cut_stamped_before(
                    count,
                    sweep.cutoff,
                    sweep.aging_cutoff,
                    C::SPAN_SIZE,
                );
                // SAFETY: batches just cut from the global cache, outside its locks.
                unsafe { self.unmap_batches(cut) };
            }
        }
        if C::THREAD_CACHE && sweep.cutoff > 0 {
            for slot in self.heaps() {
                let guard = if sweep.wait {
                    Some(slot.cache.lock())
                } else {
                    slot.cache.try_lock()
                };
                let Some(mut cache) = guard else { continue };
                let cut = cache.cut_stamped_before(sweep.cutoff, C::SPAN_SIZE);
                drop(cache);
                // SAFETY: runs just cut from a thread cache, outside its lock.
                unsafe { self.unmap_batches(cut) };
            }
        }
    }

    /// Unmaps batches linked by `prev`, each a chain of free runs linked by `next`.
    ///
    /// # Safety
    /// Every run on them is a free run no list holds.
    unsafe fn unmap_batches(&self, batches: Batches) {
        let mut batch = batches.top;
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

    /// Unmaps a huge block's region, accounting for it.
    ///
    /// # Safety
    /// `[p, p + len)` is what is left of a huge block's mapping (from [`Global::map_huge`],
    /// possibly resized by `os::remap` and with its slack unmapped since), whole, and
    /// nothing uses it any more.
    pub(crate) unsafe fn unmap_huge(&self, p: *mut u8, len: usize) {
        // SAFETY: what is left of a huge block's mapping, whole and unused (the contract):
        // page-aligned, inside a mapping `os` made, unmapped once.
        unsafe { os::unmap(p, len) };
        self.count(|s| {
            s.unmapped(len);
            s.huge(len.wrapping_neg());
        });
    }

    /// Runs `update` on the counters when statistics are on (else compiles to nothing).
    #[inline(always)]
    pub(crate) fn count(&self, update: impl FnOnce(&Counters)) {
        if C::ENABLE_STATISTICS {
            update(&self.stats);
        }
    }

    /// Snapshot of the counters, or `None` without `enable_statistics`.
    pub(crate) fn statistics(&self) -> Option<Statistics> {
        if !C::ENABLE_STATISTICS {
            return None;
        }
        let mut totals = Totals::ZERO;
        let mut thread_cache = 0;
        for heap in self.heaps() {
            heap.counters.sum_into(&mut totals);
            let cache = heap.cache.lock();
            thread_cache += cache.bytes() + cache.spares() * C::SPAN_SIZE;
        }
        self.stats.heapless.sum_into(&mut totals);
        let mut s = self.stats.snapshot(&totals);
        s.thread_cache = thread_cache;
        s.global_cache = self.cache.bytes();
        for class in 0..MAX_CLASS_COUNT {
            let block_size = C::CLASSES.block_size[class] as usize;
            // A class merged into the next one has its size (and no blocks of its own):
            // list each class once.
            let merged = class + 1 < MAX_CLASS_COUNT
                && C::CLASSES.block_size[class + 1] as usize == block_size;
            if block_size != 0 && !merged {
                s.classes.push(ClassUse {
                    block_size,
                    blocks: totals.class_blocks[class],
                });
            }
        }
        Some(s)
    }

    /// Marks the calling thread as about to take a span's notify flag and deliver its
    /// notice; [`Global::leave_notice_window`] ends it. Waits while a `fork` is being
    /// prepared. (SeqCst on both sides: either this thread sees `forking`, or the forking
    /// thread sees its count.)
    #[cold]
    pub(crate) fn enter_notice_window(&self) {
        loop {
            self.notices_in_flight.fetch_add(1, Ordering::SeqCst);
            if !self.forking.load(Ordering::SeqCst) {
                return;
            }
            self.notices_in_flight.fetch_sub(1, Ordering::SeqCst);
            while self.forking.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
        }
    }

    /// Ends what [`Global::enter_notice_window`] began: the notice is delivered, or this
    /// push did not take the flag.
    #[inline]
    pub(crate) fn leave_notice_window(&self) {
        self.notices_in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Before `fork`: stops new notice windows and waits for the open ones to close (no
    /// lock is taken in one), then takes every lock. In the child no span is left with its
    /// flag taken and its notice undelivered, and no structure mid-update.
    pub(crate) fn prepare_fork(&self) {
        self.forking.store(true, Ordering::SeqCst);
        while self.notices_in_flight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        self.lock_all();
    }

    /// After `fork`, in the parent: releases what [`Global::prepare_fork`] took.
    ///
    /// # Safety
    /// The calling thread ran `prepare_fork`.
    pub(crate) unsafe fn parent_after_fork(&self) {
        // SAFETY: this thread ran `prepare_fork` (the contract), so it holds every lock.
        unsafe { self.unlock_all() };
        self.forking.store(false, Ordering::SeqCst);
    }

    /// After `fork`, in the child (only the forking thread exists): resets the locks and
    /// the window count and lets notices flow again.
    ///
    /// # Safety
    /// Called in the child right after a `fork` that `prepare_fork` prepared.
    pub(crate) unsafe fn child_after_fork(&self) {
        // SAFETY: in the child right after `fork` only this thread exists (the contract),
        // and `prepare_fork` took every lock before it, so nothing was mid-update.
        unsafe { self.reset_locks() };
        self.notices_in_flight.store(0, Ordering::Relaxed);
        self.forking.store(false, Ordering::SeqCst);
    }

    /// Takes every lock of this configuration (before `fork`).
    fn lock_all(&self) {
        // In the order every other path takes them: maintenance, orphans, a thread cache,
        // a global cache count.
        self.maintenance.raw_lock();
        self.orphans.raw_lock();
        for heap in self.heaps() {
            heap.lock.raw_lock();
        }
        for slot in self.heaps() {
            slot.cache.raw_lock();
        }
        self.cache.lock_all();
    }

    /// Releases what [`Global::lock_all`] took (in the parent after `fork`).
    ///
    /// # Safety
    /// The caller holds every lock through `lock_all`.
    unsafe fn unlock_all(&self) {
        // SAFETY: `lock_all` took each of these locks on the calling thread (the contract).
        unsafe {
            self.cache.unlock_all();
            for slot in self.heaps() {
                slot.cache.raw_unlock();
            }
            for heap in self.heaps() {
                heap.lock.raw_unlock();
            }
            self.orphans.raw_unlock();
            self.maintenance.raw_unlock();
        }
    }

    /// Resets every lock in a forked child, where only the forking thread exists.
    ///
    /// # Safety
    /// Called in the child right after `fork`.
    unsafe fn reset_locks(&self) {
        // SAFETY: per the contract no other thread exists to hold them; `lock_all` took
        // them all before `fork`, so no structure was mid-update.
        unsafe {
            self.cache.reset_locks();
            for slot in self.heaps() {
                slot.cache.force_unlock();
                slot.lock.force_unlock();
            }
            self.orphans.force_unlock();
            self.maintenance.force_unlock();
        }
    }
}

/// A decay sweep (or `collect()`'s) due to run: what it gives back, and the maintenance
/// lock, held while it runs (one sweep at a time). Run by `Heap::sweep`.
pub(crate) struct Sweep<'a> {
    /// Runs and spares stamped at or before this period go back to the OS.
    pub(crate) cutoff: u64,
    /// Ageing runs stamped at or before this period go back to the OS.
    pub(crate) aging_cutoff: u64,
    /// Wait for a thread cache or heap in use instead of skipping it (`collect()`).
    pub(crate) wait: bool,
    /// The maintenance lock.
    _maintenance: SpinGuard<'a, ()>,
}
