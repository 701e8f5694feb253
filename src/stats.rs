//! Statistics counters. With `enable_statistics` off every update is behind a `false`
//! constant and compiles to nothing.

use crate::config::Config;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A snapshot of one allocator instance's counters (`FastAlloc.statistics()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Bytes currently mapped from the OS (span mappings, huge blocks, heap records).
    pub mapped: usize,
    /// Highest value `mapped` has had.
    pub mapped_peak: usize,
    /// Bytes mapped over the instance's life.
    pub mapped_total: usize,
    /// Bytes unmapped over the instance's life.
    pub unmapped_total: usize,
    /// Bytes of spans held in the global cache.
    pub global_cache: usize,
    /// Thread heaps created (a heap is reused by later threads after its thread exits).
    pub heaps: usize,
}

/// Live counters of one instance.
pub(crate) struct Counters {
    mapped: AtomicUsize,
    mapped_peak: AtomicUsize,
    mapped_total: AtomicUsize,
    unmapped_total: AtomicUsize,
    heaps: AtomicUsize,
}

impl Counters {
    pub(crate) const fn new() -> Self {
        Counters {
            mapped: AtomicUsize::new(0),
            mapped_peak: AtomicUsize::new(0),
            mapped_total: AtomicUsize::new(0),
            unmapped_total: AtomicUsize::new(0),
            heaps: AtomicUsize::new(0),
        }
    }

    #[inline]
    pub(crate) fn mapped<C: Config>(&self, bytes: usize) {
        if C::ENABLE_STATISTICS {
            let now = self.mapped.fetch_add(bytes, Ordering::Relaxed) + bytes;
            self.mapped_peak.fetch_max(now, Ordering::Relaxed);
            self.mapped_total.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn unmapped<C: Config>(&self, bytes: usize) {
        if C::ENABLE_STATISTICS {
            self.mapped.fetch_sub(bytes, Ordering::Relaxed);
            self.unmapped_total.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn heap_created<C: Config>(&self) {
        if C::ENABLE_STATISTICS {
            self.heaps.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Statistics {
        Statistics {
            mapped: self.mapped.load(Ordering::Relaxed),
            mapped_peak: self.mapped_peak.load(Ordering::Relaxed),
            mapped_total: self.mapped_total.load(Ordering::Relaxed),
            unmapped_total: self.unmapped_total.load(Ordering::Relaxed),
            global_cache: 0,
            heaps: self.heaps.load(Ordering::Relaxed),
        }
    }
}
