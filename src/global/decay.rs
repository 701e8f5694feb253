//! The decay clock and sweeps (see `global/mod.rs`): the sweep period, the clock read
//! that may start a sweep, and the caches' part of a sweep.
use super::Global;
use crate::config::Config;
use crate::lock::SpinGuard;
use crate::params::Params;
use crate::span::LARGE_CLASS_COUNT;
use core::sync::atomic::Ordering;

impl<C: Config> Global<C> {
    /// The current sweep period, for stamping runs that enter a cache.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The clock decay runs on, in milliseconds (`os::now_ms`; in unit tests the manual
    /// clock, from an hour in).
    #[inline]
    pub(super) fn now_ms(&self) -> u64 {
        #[cfg(test)]
        return 3_600_000 + self.clock_offset.load(Ordering::Relaxed);
        #[cfg(not(test))]
        crate::os::now_ms()
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
                // A first-class heap's cache holds runs of its own mappings, which go back
                // whole at its drop.
                if slot.private {
                    continue;
                }
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
