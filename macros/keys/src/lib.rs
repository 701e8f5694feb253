//! The configuration keys of `rpmalloc`, defined once: each key's name, what it takes, its
//! limits and its default.
//!
//! Two crates read this table. The `define_rpmalloc!` macro (`rpmalloc-macros`) checks
//! every key it is given against it and reports a violation against the key's span; the
//! library (`rpmalloc::config`) takes its defaults from it and checks the same limits in a
//! `const` assertion, so a hand-written configuration is held to the same rules. A proc
//! macro crate cannot export anything but macros, and the library depends on the macro
//! crate, so the table lives in this third, dependency-free crate.
//!
//! ```
//! use rpmalloc_keys::{KEYS, SPAN_MAP_COUNT};
//!
//! assert!(SPAN_MAP_COUNT.accepts(64));
//! assert!(!SPAN_MAP_COUNT.accepts(65_537));
//! assert_eq!(KEYS[0].name, "span_size");
//! ```
#![no_std]
#![deny(missing_docs)]

/// What a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false` (as a value: 1 or 0).
    Bool,
    /// A duration in milliseconds: `0..=max`, or `never` ([`NEVER`]).
    Millis {
        /// Largest finite value accepted.
        max: u64,
    },
    /// An integer in `min..=max`, a power of two when `power_of_two`.
    Int {
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
        /// Whether the value must be a power of two.
        power_of_two: bool,
        /// Unit shown after the range in messages (`" bytes"` or empty).
        unit: &'static str,
    },
}

/// One configuration key.
#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    /// The key as written in the macro input (the `Config` constant is its upper case).
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
    /// Its default, as a value (`bool`s as 0 or 1).
    pub default: u64,
    /// The rule in words, for the library's `const` assertion (which cannot format).
    pub rule: &'static str,
}

impl Key {
    /// Whether `value` (a `bool` as 0 or 1) is one this key accepts.
    pub const fn accepts(&self, value: u64) -> bool {
        match self.kind {
            Kind::Bool => value <= 1,
            Kind::Millis { max } => value <= max || value == NEVER,
            Kind::Int {
                min,
                max,
                power_of_two,
                ..
            } => value >= min && value <= max && (!power_of_two || value.is_power_of_two()),
        }
    }
}

/// The value `never` of a [`Kind::Millis`] key.
pub const NEVER: u64 = u64::MAX;
/// Largest finite `decay_ms` (one hour).
pub const MAX_DECAY_MS: u64 = 3_600_000;
/// Largest cache byte budget (1 TiB).
pub const MAX_CACHE_BYTES: u64 = 1 << 40;
/// Smallest span size (one 4 KiB page).
pub const MIN_SPAN_SIZE: u64 = 4096;
/// Largest span size: 256 KiB, rpmalloc 1.4's limit.
pub const MAX_SPAN_SIZE: u64 = 262_144;

const fn int(min: u64, max: u64) -> Kind {
    Kind::Int {
        min,
        max,
        power_of_two: false,
        unit: "",
    }
}

/// `span_size`: bytes per span (it becomes `Config::SpanSize`, a type).
pub const SPAN_SIZE: Key = Key {
    name: "span_size",
    kind: Kind::Int {
        min: MIN_SPAN_SIZE,
        max: MAX_SPAN_SIZE,
        power_of_two: true,
        unit: " bytes",
    },
    default: 65_536,
    rule: "span_size must be a power of two between 4096 and 262144",
};
/// `span_map_count`: spans mapped per OS call.
pub const SPAN_MAP_COUNT: Key = Key {
    name: "span_map_count",
    kind: int(1, 65_536),
    default: 64,
    rule: "span_map_count must be between 1 and 65536",
};
/// `enable_thread_cache`.
pub const ENABLE_THREAD_CACHE: Key = Key {
    name: "enable_thread_cache",
    kind: Kind::Bool,
    default: 1,
    rule: "enable_thread_cache is a bool",
};
/// `enable_global_cache`.
pub const ENABLE_GLOBAL_CACHE: Key = Key {
    name: "enable_global_cache",
    kind: Kind::Bool,
    default: 1,
    rule: "enable_global_cache is a bool",
};
/// `enable_adaptive_thread_cache`.
pub const ENABLE_ADAPTIVE_THREAD_CACHE: Key = Key {
    name: "enable_adaptive_thread_cache",
    kind: Kind::Bool,
    default: 0,
    rule: "enable_adaptive_thread_cache is a bool",
};
/// `enable_unlimited_cache`.
pub const ENABLE_UNLIMITED_CACHE: Key = Key {
    name: "enable_unlimited_cache",
    kind: Kind::Bool,
    default: 0,
    rule: "enable_unlimited_cache is a bool",
};
/// `max_thread_span_cache`: single spans kept per thread.
pub const MAX_THREAD_SPAN_CACHE: Key = Key {
    name: "max_thread_span_cache",
    kind: int(1, 1_000_000),
    default: 32,
    rule: "max_thread_span_cache must be between 1 and 1000000",
};
/// `max_thread_span_large_cache`: runs kept per thread for each large span count.
pub const MAX_THREAD_SPAN_LARGE_CACHE: Key = Key {
    name: "max_thread_span_large_cache",
    kind: int(1, 1_000_000),
    default: 100,
    rule: "max_thread_span_large_cache must be between 1 and 1000000",
};
/// `max_global_span_cache`: single spans the global cache keeps.
pub const MAX_GLOBAL_SPAN_CACHE: Key = Key {
    name: "max_global_span_cache",
    kind: int(1, 1_000_000),
    default: 3200,
    rule: "max_global_span_cache must be between 1 and 1000000",
};
/// `global_cache_multiplier`: global cache runs per large span count, relative to a
/// thread cache's.
pub const GLOBAL_CACHE_MULTIPLIER: Key = Key {
    name: "global_cache_multiplier",
    kind: int(1, 1024),
    default: 8,
    rule: "global_cache_multiplier must be between 1 and 1024",
};
/// `max_thread_cache_bytes`: bytes of free runs one thread cache keeps.
pub const MAX_THREAD_CACHE_BYTES: Key = Key {
    name: "max_thread_cache_bytes",
    kind: int(0, MAX_CACHE_BYTES),
    default: 8 << 20,
    rule: "max_thread_cache_bytes must be at most 1 TiB (1099511627776)",
};
/// `max_global_cache_bytes`: bytes of free runs the global cache keeps.
pub const MAX_GLOBAL_CACHE_BYTES: Key = Key {
    name: "max_global_cache_bytes",
    kind: int(0, MAX_CACHE_BYTES),
    default: 512 << 20,
    rule: "max_global_cache_bytes must be at most 1 TiB (1099511627776)",
};
/// `decay_ms`: how long a cached run may go unused before it goes back to the OS.
pub const DECAY_MS: Key = Key {
    name: "decay_ms",
    kind: Kind::Millis { max: MAX_DECAY_MS },
    default: 1000,
    rule: "decay_ms must be at most 3600000 (one hour), or never",
};
/// `enable_huge_pages`.
pub const ENABLE_HUGE_PAGES: Key = Key {
    name: "enable_huge_pages",
    kind: Kind::Bool,
    default: 0,
    rule: "enable_huge_pages is a bool",
};
/// `enable_statistics`.
pub const ENABLE_STATISTICS: Key = Key {
    name: "enable_statistics",
    kind: Kind::Bool,
    default: 0,
    rule: "enable_statistics is a bool",
};
/// `initial_exec_tls`: declare the per-thread slot with the initial-exec TLS model.
pub const INITIAL_EXEC_TLS: Key = Key {
    name: "initial_exec_tls",
    kind: Kind::Bool,
    default: 0,
    rule: "initial_exec_tls is a bool",
};

/// Every key, in the order messages, documentation and `rpmalloc::config::values` list
/// them.
pub const KEYS: &[Key] = &[
    SPAN_SIZE,
    SPAN_MAP_COUNT,
    ENABLE_THREAD_CACHE,
    ENABLE_GLOBAL_CACHE,
    ENABLE_ADAPTIVE_THREAD_CACHE,
    ENABLE_UNLIMITED_CACHE,
    MAX_THREAD_SPAN_CACHE,
    MAX_THREAD_SPAN_LARGE_CACHE,
    MAX_GLOBAL_SPAN_CACHE,
    GLOBAL_CACHE_MULTIPLIER,
    MAX_THREAD_CACHE_BYTES,
    MAX_GLOBAL_CACHE_BYTES,
    DECAY_MS,
    ENABLE_HUGE_PAGES,
    ENABLE_STATISTICS,
    INITIAL_EXEC_TLS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_accepted() {
        for key in KEYS {
            assert!(key.accepts(key.default), "{}", key.name);
        }
    }

    #[test]
    fn limits_are_inclusive_and_the_rules_name_them() {
        for key in KEYS {
            assert!(key.rule.starts_with(key.name), "{}", key.name);
            match key.kind {
                Kind::Bool => {
                    assert!(key.accepts(0) && key.accepts(1) && !key.accepts(2));
                }
                Kind::Millis { max } => {
                    assert!(key.accepts(0) && key.accepts(max) && key.accepts(NEVER));
                    assert!(!key.accepts(max + 1));
                }
                Kind::Int { min, max, .. } => {
                    assert!(key.accepts(min) && key.accepts(max), "{}", key.name);
                    assert!(min == 0 || !key.accepts(min - 1), "{}", key.name);
                    assert!(!key.accepts(max + 1), "{}", key.name);
                }
            }
        }
        assert!(!SPAN_SIZE.accepts(3 * 4096));
        let mut names: [&str; 16] = [""; 16];
        for (slot, key) in names.iter_mut().zip(KEYS) {
            *slot = key.name;
        }
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]), "names are unique");
    }

    /// The rule text (the library's compile error, which cannot be formatted) names the
    /// limits the kind holds, so the two cannot drift apart.
    #[test]
    fn rules_name_their_limits() {
        extern crate std;
        use std::string::ToString;
        for key in KEYS {
            match key.kind {
                Kind::Bool => assert!(key.rule.ends_with("is a bool"), "{}", key.name),
                Kind::Millis { max } => {
                    assert!(key.rule.contains(&max.to_string()), "{}", key.name);
                    assert!(key.rule.contains("never"), "{}", key.name);
                }
                Kind::Int { min, max, .. } => {
                    assert!(key.rule.contains(&max.to_string()), "{}", key.name);
                    assert!(
                        min == 0 || key.rule.contains(&min.to_string()),
                        "{}",
                        key.name
                    );
                }
            }
        }
    }
}
