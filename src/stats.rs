//! Statistics counters, present only when `enable_statistics` is on.

/// A snapshot of one allocator instance's counters (see `FastAlloc::statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Bytes currently mapped from the OS (spans, huge blocks and heap records).
    pub mapped: usize,
    /// Highest value `mapped` has had.
    pub mapped_peak: usize,
    /// Bytes mapped over the instance's life.
    pub mapped_total: usize,
    /// Bytes unmapped over the instance's life.
    pub unmapped_total: usize,
}
