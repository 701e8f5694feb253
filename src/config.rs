//! The compile-time configuration of one allocator instance.
//!
//! `define_rpmalloc!` writes one implementation of [`Config`] per expansion. Every tunable
//! is an associated constant, so the heap, span and cache code — all generic over
//! `C: Config` — is monomorphised per configuration and each option that is off compiles
//! out. The span size is a type-level number (`typenum`) bounded by `PowerOfTwo`, so a
//! hand-written configuration with a bad span size fails to type-check as well.
//!
//! Every key's limits and default are defined once, in the `rpmalloc-keys` crate, which
//! the macro reads too: the defaults below come from it, and `values` lists a
//! configuration's settings in its order for the `const` assertion every configuration
//! passes before it is used (`Params::VALID`), so the library refuses exactly what the
//! macro refuses.

use rpmalloc_keys as keys;
use typenum::{PowerOfTwo, Unsigned};

/// The span size used when a configuration does not name one: 64 KiB, as rpmalloc 1.4.
pub type DefaultSpanSize = typenum::U65536;

/// Smallest span size accepted (one 4 KiB page).
pub const MIN_SPAN_SIZE: usize = keys::MIN_SPAN_SIZE as usize;
/// Largest span size accepted: 256 KiB, rpmalloc 1.4's limit. Medium size classes stop at
/// 32 KiB whatever the span size, so bigger spans only grow every cached span (the global
/// cache's 3200 spans would pin 800 MiB at 256 KiB) without serving any new size class.
pub const MAX_SPAN_SIZE: usize = keys::MAX_SPAN_SIZE as usize;

/// Default of `span_map_count`: spans mapped per OS call.
pub const DEFAULT_SPAN_MAP_COUNT: usize = keys::SPAN_MAP_COUNT.default as usize;
/// Default of `max_thread_span_cache`: single spans kept per thread. A buffer, not a store
/// (C rpmalloc keeps 400): spans one thread frees beyond it go to the global cache in
/// batches, where every thread can reuse them instead of touching fresh pages. With 400,
/// eight threads held 55 MiB of free spans between them at the realloc benchmark's peak.
pub const DEFAULT_MAX_THREAD_SPAN_CACHE: usize = keys::MAX_THREAD_SPAN_CACHE.default as usize;
/// Default of `max_thread_span_large_cache`: spans kept per thread for each large span count.
pub const DEFAULT_MAX_THREAD_SPAN_LARGE_CACHE: usize =
    keys::MAX_THREAD_SPAN_LARGE_CACHE.default as usize;
/// Default of `max_global_span_cache`: single spans the global cache keeps (C rpmalloc's
/// 400 per thread × 8).
pub const DEFAULT_MAX_GLOBAL_SPAN_CACHE: usize = keys::MAX_GLOBAL_SPAN_CACHE.default as usize;
/// Default of `global_cache_multiplier`: global cache runs of each large span count,
/// relative to a thread cache's.
pub const DEFAULT_GLOBAL_CACHE_MULTIPLIER: usize = keys::GLOBAL_CACHE_MULTIPLIER.default as usize;
/// Default of `max_thread_cache_bytes`: bytes of free runs (of every span count together)
/// one thread cache keeps. Runs beyond it go to the global cache, where every thread finds
/// them: a thread that frees large blocks but never allocates them (the consumer of a
/// pipeline) must not keep what the producers then map afresh.
pub const DEFAULT_MAX_THREAD_CACHE_BYTES: usize = keys::MAX_THREAD_CACHE_BYTES.default as usize;
/// Default of `max_global_cache_bytes`: bytes of free runs the global cache keeps, of every
/// span count together (ready and ageing).
pub const DEFAULT_MAX_GLOBAL_CACHE_BYTES: usize = keys::MAX_GLOBAL_CACHE_BYTES.default as usize;
/// Largest byte budget a cache key accepts (1 TiB).
pub const MAX_CACHE_BYTES: usize = keys::MAX_CACHE_BYTES as usize;
/// Default of `decay_ms`: a cached span or run that nobody reused for this long goes back
/// to the OS (jemalloc's dirty decay is 10 s, mimalloc's purge delay 10 ms).
pub const DEFAULT_DECAY_MS: u64 = keys::DECAY_MS.default;
/// The `decay_ms` value `never`: cached runs go back to the OS only beyond the caches'
/// limits, by [`collect`](crate) or at thread exit, never because of time.
pub const DECAY_NEVER: u64 = keys::NEVER;
/// Largest finite `decay_ms` accepted (one hour).
pub const MAX_DECAY_MS: u64 = keys::MAX_DECAY_MS;

/// One allocator configuration: every tunable as an associated constant.
///
/// Implemented by `define_rpmalloc!` (which also gives the configuration its singleton
/// state); every constant has the default listed in the README except the span size,
/// which the macro always spells out. A configuration the macro would refuse fails to
/// compile when it is used (a `const` assertion of the same limits).
pub trait Config: Sized + Send + Sync + 'static {
    /// Span size as a type-level number (a power of two, 4 KiB ..= 256 KiB).
    type SpanSize: Unsigned + PowerOfTwo;
    /// Spans mapped per OS call; the first is the master that unmaps the whole run.
    const SPAN_MAP_COUNT: usize = DEFAULT_SPAN_MAP_COUNT;
    /// Keep freed spans in a per-thread cache.
    const ENABLE_THREAD_CACHE: bool = keys::ENABLE_THREAD_CACHE.default != 0;
    /// Keep spans that overflow thread caches in a global cache.
    const ENABLE_GLOBAL_CACHE: bool = keys::ENABLE_GLOBAL_CACHE.default != 0;
    /// Bound each thread cache by the thread's own peak use of that span count.
    const ENABLE_ADAPTIVE_THREAD_CACHE: bool = keys::ENABLE_ADAPTIVE_THREAD_CACHE.default != 0;
    /// Never release cached spans to the OS.
    const ENABLE_UNLIMITED_CACHE: bool = keys::ENABLE_UNLIMITED_CACHE.default != 0;
    /// Single spans kept per thread.
    const MAX_THREAD_SPAN_CACHE: usize = DEFAULT_MAX_THREAD_SPAN_CACHE;
    /// Spans kept per thread for each large span count.
    const MAX_THREAD_SPAN_LARGE_CACHE: usize = DEFAULT_MAX_THREAD_SPAN_LARGE_CACHE;
    /// Single spans kept in the global cache.
    const MAX_GLOBAL_SPAN_CACHE: usize = DEFAULT_MAX_GLOBAL_SPAN_CACHE;
    /// Global cache runs of each large span count, as a multiple of the thread limit.
    const GLOBAL_CACHE_MULTIPLIER: usize = DEFAULT_GLOBAL_CACHE_MULTIPLIER;
    /// Bytes of free runs one thread cache keeps, all span counts together.
    const MAX_THREAD_CACHE_BYTES: usize = DEFAULT_MAX_THREAD_CACHE_BYTES;
    /// Bytes of free runs the global cache keeps, all span counts together.
    const MAX_GLOBAL_CACHE_BYTES: usize = DEFAULT_MAX_GLOBAL_CACHE_BYTES;
    /// Milliseconds a cached span or run may go unused before it goes back to the OS
    /// (`0`: at once, as with the caches off; [`DECAY_NEVER`]: never because of time).
    const DECAY_MS: u64 = DEFAULT_DECAY_MS;
    /// Map spans with huge pages (`MAP_HUGETLB`, else transparent huge page advice).
    const ENABLE_HUGE_PAGES: bool = keys::ENABLE_HUGE_PAGES.default != 0;
    /// Count operations; when off the counters are compiled out.
    const ENABLE_STATISTICS: bool = keys::ENABLE_STATISTICS.default != 0;
    /// Declare the per-thread slot with the initial-exec TLS model (x86-64 Linux; the
    /// `thread_local!` default elsewhere and under Miri). `define_rpmalloc!` reads it when
    /// it declares the slot; a hand-written configuration declares its own slot and leaves
    /// it unread.
    const INITIAL_EXEC_TLS: bool = keys::INITIAL_EXEC_TLS.default != 0;
}

/// The settings of configuration `C` in the order of `rpmalloc_keys::KEYS` (a `bool` as 0
/// or 1, the span size in bytes), which the limits are checked against.
pub(crate) const fn values<C: Config>() -> [u64; keys::KEYS.len()] {
    [
        <C::SpanSize as Unsigned>::U64,
        C::SPAN_MAP_COUNT as u64,
        C::ENABLE_THREAD_CACHE as u64,
        C::ENABLE_GLOBAL_CACHE as u64,
        C::ENABLE_ADAPTIVE_THREAD_CACHE as u64,
        C::ENABLE_UNLIMITED_CACHE as u64,
        C::MAX_THREAD_SPAN_CACHE as u64,
        C::MAX_THREAD_SPAN_LARGE_CACHE as u64,
        C::MAX_GLOBAL_SPAN_CACHE as u64,
        C::GLOBAL_CACHE_MULTIPLIER as u64,
        C::MAX_THREAD_CACHE_BYTES as u64,
        C::MAX_GLOBAL_CACHE_BYTES as u64,
        C::DECAY_MS,
        C::ENABLE_HUGE_PAGES as u64,
        C::ENABLE_STATISTICS as u64,
        C::INITIAL_EXEC_TLS as u64,
    ]
}

/// Panics (at compile time, where it is used in a `const`) with the rule of the first
/// setting of `C` outside its key's limits.
pub(crate) const fn check<C: Config>() {
    let values = values::<C>();
    let mut i = 0;
    while i < values.len() {
        if !keys::KEYS[i].accepts(values[i]) {
            panic!("{}", keys::KEYS[i].rule);
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Defaults;
    impl Config for Defaults {
        type SpanSize = DefaultSpanSize;
    }

    struct MapCountTooHigh;
    impl Config for MapCountTooHigh {
        type SpanSize = DefaultSpanSize;
        const SPAN_MAP_COUNT: usize = 65_537;
    }

    struct DecayTooLong;
    impl Config for DecayTooLong {
        type SpanSize = typenum::U4096;
        const DECAY_MS: u64 = MAX_DECAY_MS + 1;
    }

    struct AtTheLimits;
    impl Config for AtTheLimits {
        type SpanSize = typenum::U262144;
        const SPAN_MAP_COUNT: usize = 65_536;
        const MAX_GLOBAL_CACHE_BYTES: usize = MAX_CACHE_BYTES;
        const DECAY_MS: u64 = DECAY_NEVER;
    }

    /// The trait's defaults are the key table's (the macro documents those).
    #[test]
    fn defaults_are_the_key_tables() {
        let values = values::<Defaults>();
        for (key, value) in keys::KEYS.iter().zip(values) {
            assert_eq!(key.default, value, "{}", key.name);
        }
        check::<Defaults>();
    }

    /// The library's check refuses what the macro refuses (run here at run time; in a
    /// build it runs in a `const`, a compile error), and accepts the limits themselves.
    #[test]
    fn check_refuses_settings_beyond_the_limits() {
        check::<AtTheLimits>();
        let message = |f: fn()| {
            let payload = std::panic::catch_unwind(f).expect_err("must refuse");
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap()
        };
        assert_eq!(message(check::<MapCountTooHigh>), keys::SPAN_MAP_COUNT.rule);
        assert_eq!(message(check::<DecayTooLong>), keys::DECAY_MS.rule);
    }
}
