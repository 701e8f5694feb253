//! Every limit derived from a [`Config`], computed in one place at compile time.

use crate::config::{Config, DECAY_NEVER};
use crate::size_class::{SizeClasses, SMALL_GRANULARITY};
use crate::span::{LARGE_CLASS_COUNT, SPAN_HEADER_SIZE};
use typenum::Unsigned;

/// Spans moved between a thread cache and the global cache at once (single spans): small,
/// so a thread that takes a batch does not hoard spans another thread then maps afresh.
const THREAD_SPAN_CACHE_TRANSFER: usize = 8;
/// Spans moved at once for large span counts.
const THREAD_SPAN_LARGE_CACHE_TRANSFER: usize = 6;
/// How long runs beyond a global cache span count's limit stay mapped before they go back
/// to the OS, in milliseconds (at most; `decay_ms` if shorter). A burst of frees followed
/// by a burst of allocations (a pass of a batch job, a request wave) then reuses the same
/// pages instead of faulting in fresh ones.
pub(crate) const CACHE_AGING_MS: u64 = 250;
/// Longest time between two decay sweeps, in milliseconds: a sweep is due every quarter of
/// `decay_ms`, but at least this often, so the ageing runs keep their time too.
const MAX_SWEEP_PERIOD_MS: u64 = CACHE_AGING_MS / 2;
/// Allocator events (bin refills, span-level operations) between two reads of the clock
/// to see whether a decay sweep is due. A read costs about 60 instructions (the vDSO's
/// coarse clock); with 16, a 1 KiB alloc+free loop, which refills its bin every fourth
/// pair, spent 2 of its 42 instructions per pair on the clock and the slow path it is read
/// in.
pub(crate) const TICKS_PER_CLOCK_READ: u32 = 64;

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
    /// Whether freed runs may wait in a thread cache (`decay_ms: 0` releases them at once).
    const THREAD_CACHE: bool = Self::ENABLE_THREAD_CACHE && Self::DECAY_MS != 0;
    /// Whether freed runs may wait in the global cache.
    const GLOBAL_CACHE: bool = Self::ENABLE_GLOBAL_CACHE && Self::DECAY_MS != 0;
    /// Milliseconds between decay sweeps: a quarter of `decay_ms`, at most
    /// `MAX_SWEEP_PERIOD_MS`, at least 1.
    const SWEEP_PERIOD_MS: u64 = if Self::DECAY_MS / 4 > MAX_SWEEP_PERIOD_MS {
        MAX_SWEEP_PERIOD_MS
    } else if Self::DECAY_MS / 4 == 0 {
        1
    } else {
        Self::DECAY_MS / 4
    };
    /// Sweeps a cached run survives before it goes back to the OS: sweeps are at least
    /// `SWEEP_PERIOD_MS` apart, and a run cached during sweep period `e` has been unused
    /// for at least `(n - 1)` periods at the sweep that starts period `e + n`. `u64::MAX`
    /// with `decay_ms: never`.
    const DECAY_SWEEPS: u64 = if Self::DECAY_MS == DECAY_NEVER {
        u64::MAX
    } else {
        Self::DECAY_MS.div_ceil(Self::SWEEP_PERIOD_MS) + 1
    };
    /// Sweeps a run beyond a global cache span count's limit survives (see
    /// [`CACHE_AGING_MS`]).
    const AGING_SWEEPS: u64 = {
        let ms = if Self::DECAY_MS < CACHE_AGING_MS {
            Self::DECAY_MS
        } else {
            CACHE_AGING_MS
        };
        ms.div_ceil(Self::SWEEP_PERIOD_MS) + 1
    };
    /// Rejects configurations the macro would have refused, for hand-written `Config`s.
    const VALID: () = {
        crate::config::check::<Self>();
    };

    /// Bytes of free runs one thread cache keeps, all span counts together.
    const THREAD_CACHE_BYTES: usize = if Self::ENABLE_UNLIMITED_CACHE {
        usize::MAX
    } else {
        Self::MAX_THREAD_CACHE_BYTES
    };
    /// Bytes of free runs the global cache keeps, all span counts together.
    const GLOBAL_CACHE_BYTES: usize = if Self::ENABLE_UNLIMITED_CACHE {
        usize::MAX
    } else {
        Self::MAX_GLOBAL_CACHE_BYTES
    };

    /// [`Params::thread_cache_limit`] of every span count, computed once.
    const THREAD_CACHE_LIMITS: [usize; LARGE_CLASS_COUNT] = {
        let mut limits = [0; LARGE_CLASS_COUNT];
        let mut i = 0;
        while i < LARGE_CLASS_COUNT {
            let span_count = i + 1;
            limits[i] = if Self::ENABLE_UNLIMITED_CACHE {
                usize::MAX
            } else if span_count == 1 {
                Self::MAX_THREAD_SPAN_CACHE
            } else {
                let limit = Self::MAX_THREAD_SPAN_LARGE_CACHE.saturating_sub(span_count >> 1);
                if limit == 0 {
                    1
                } else {
                    limit
                }
            };
            i += 1;
        }
        limits
    };

    /// Most runs of `span_count` spans one thread cache keeps.
    #[inline]
    fn thread_cache_limit(span_count: usize) -> usize {
        Self::THREAD_CACHE_LIMITS[span_count - 1]
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
