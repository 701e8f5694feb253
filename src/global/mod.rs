//! The global state of one configuration: the global span cache, the list of every
//! heap's thread cache, the decay clock and its sweeps, the orphaned heaps, the thread-exit
//! key, statistics, and the span mapping and unmapping that touch the OS.
//!
//! - this file: the state itself, the list of every heap's shared part, statistics;
//! - `arena.rs`: span mapping and unmapping, the global cache's front, huge mappings;
//! - `decay.rs`: the decay clock and the caches' part of a sweep;
//! - `fork.rs`: the notice window and the fork handlers;
//! - `registry.rs`: which addresses are this configuration's (for the C ABI's `free`).
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
use crate::global_cache::GlobalCache;
use crate::lock::SpinLock;
use crate::params::Params;
use crate::size_class::MAX_CLASS_COUNT;
use crate::stats::{ClassUse, Counters, Statistics, Totals};
use crate::thread_cache::HeapShared;
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

mod arena;
mod decay;
mod fork;
mod registry;

pub(crate) use decay::Sweep;

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
    /// Records of dropped first-class heaps (`rpmalloc::Heap`), cleared, for the next one;
    /// linked through `Heap::next_orphan` like the orphans.
    pub(crate) spare_heaps: SpinLock<*mut u8>,
    /// The pthread key whose destructor retires a thread's heap, plus one (0: not created).
    pub(crate) exit_key: AtomicUsize,
    /// Statistics (updated only with `enable_statistics`).
    pub(crate) stats: Counters,
    /// The granules of this configuration's mappings (`owns`).
    pub(crate) registry: registry::Registry,
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
            spare_heaps: SpinLock::new(ptr::null_mut()),
            exit_key: AtomicUsize::new(0),
            stats: Counters::new(),
            registry: registry::Registry::new(),
            _config: PhantomData,
        }
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
}
