//! Every limit derived from a [`Config`], computed in one place at compile time.

use crate::config::{Config, MAX_SPAN_SIZE, MIN_SPAN_SIZE};
use crate::size_class::{SizeClasses, SMALL_GRANULARITY};
use crate::span::{LARGE_CLASS_COUNT, SPAN_HEADER_SIZE};
use typenum::Unsigned;

/// Spans moved between a thread cache and the global cache at once (single spans): small,
/// so a thread that takes a batch does not hoard spans another thread then maps afresh.
const THREAD_SPAN_CACHE_TRANSFER: usize = 8;
/// Spans moved at once for large span counts.
const THREAD_SPAN_LARGE_CACHE_TRANSFER: usize = 6;
/// How long runs beyond the global cache's limit stay mapped before they go back to the
/// OS, in milliseconds. A burst of frees followed by a burst of allocations (a pass of a
/// batch job, a request wave) then reuses the same pages instead of faulting in fresh ones;
/// an allocator that stays idle longer gives them back at its next overflow or thread exit.
pub(crate) const CACHE_AGING_MS: u64 = 250;

/// Derived constants of a configuration; implemented for every [`Config`].
pub(crate) trait Params: Config {
    /// Span size in bytes.
    const SPAN_SIZE: usize = <Self::SpanSize as Unsigned>::USIZE;
    /// Mask that rounds a pointer down to its span.
    const SPAN_MASK: usize = !(Self::SPAN_SIZE - 1);
    /// The size-class table.
    const CLASSES: &'static SizeClasses = &SizeClasses::new(Self::SPAN_SIZE);
    /// Largest size served by a size class.
    const MEDIUM_LIMIT: usize = Self::CLASSES.medium_limit;
    /// Largest alignment a block gets without asking: blocks are 16-byte multiples from a
    /// 128-byte header at a span-aligned address.
    const NATURAL_ALIGN: usize = SMALL_GRANULARITY;
    /// Largest block a run of spans holds.
    const LARGE_LIMIT: usize = LARGE_CLASS_COUNT * Self::SPAN_SIZE - SPAN_HEADER_SIZE;
    /// Rejects configurations the macro would have refused, for hand-written `Config`s.
    const VALID: () = {
        assert!(Self::SPAN_SIZE >= MIN_SPAN_SIZE, "span_size below 4096");
        assert!(Self::SPAN_SIZE <= MAX_SPAN_SIZE, "span_size above 262144");
        assert!(
            Self::SPAN_MAP_COUNT >= 1,
            "span_map_count must be at least 1"
        );
        assert!(
            Self::MAX_THREAD_SPAN_CACHE >= 1,
            "max_thread_span_cache must be at least 1"
        );
        assert!(
            Self::MAX_THREAD_SPAN_LARGE_CACHE >= 1,
            "max_thread_span_large_cache must be at least 1"
        );
        assert!(
            Self::MAX_GLOBAL_SPAN_CACHE >= 1,
            "max_global_span_cache must be at least 1"
        );
        assert!(
            Self::GLOBAL_CACHE_MULTIPLIER >= 1,
            "global_cache_multiplier must be at least 1"
        );
    };

    /// Most runs of `span_count` spans one thread cache keeps.
    #[inline]
    fn thread_cache_limit(span_count: usize) -> usize {
        if Self::ENABLE_UNLIMITED_CACHE {
            usize::MAX
        } else if span_count == 1 {
            Self::MAX_THREAD_SPAN_CACHE
        } else {
            Self::MAX_THREAD_SPAN_LARGE_CACHE
                .saturating_sub(span_count >> 1)
                .max(1)
        }
    }

    /// Runs moved between a thread cache and the global cache at once.
    #[inline]
    fn transfer_batch(span_count: usize) -> usize {
        let batch = if span_count == 1 {
            THREAD_SPAN_CACHE_TRANSFER
        } else {
            THREAD_SPAN_LARGE_CACHE_TRANSFER
        };
        batch.min(Self::thread_cache_limit(span_count))
    }

    /// Most runs of `span_count` spans the global cache keeps.
    #[inline]
    fn global_cache_limit(span_count: usize) -> usize {
        if Self::ENABLE_UNLIMITED_CACHE {
            usize::MAX
        } else if span_count == 1 {
            Self::MAX_GLOBAL_SPAN_CACHE
        } else {
            Self::GLOBAL_CACHE_MULTIPLIER.saturating_mul(Self::thread_cache_limit(span_count))
        }
    }
}

impl<C: Config> Params for C {}
