//! The configuration keys `define_rpmalloc!` accepts, their rules and defaults.

/// Smallest span size accepted; the value of `rpmalloc::config::MIN_SPAN_SIZE`.
pub const MIN_SPAN_SIZE: u64 = 4096;
/// Largest span size accepted; the value of `rpmalloc::config::MAX_SPAN_SIZE`.
pub const MAX_SPAN_SIZE: u64 = 262_144;

/// What a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// A duration in milliseconds: an integer literal in `0..=max`, or `never`
    /// ([`NEVER`]). Its constant is a `u64`.
    Millis {
        /// Largest finite value accepted.
        max: u64,
    },
    /// An integer literal in `min..=max`, a power of two when `power_of_two`.
    Int {
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
        /// Whether the value must be a power of two.
        power_of_two: bool,
        /// Unit appended to the range in error messages (`" bytes"` or empty).
        unit: &'static str,
    },
}

/// One configuration key.
#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    /// The key as written in the macro input.
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
    /// Its default, as shown in the generated documentation; the values of the
    /// `rpmalloc::config::DEFAULT_*` constants and the `Config` trait defaults.
    pub default: &'static str,
}

impl Key {
    /// The name of the `Config` associated constant the key sets.
    pub fn const_name(&self) -> String {
        self.name.to_ascii_uppercase()
    }
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::Int {
        min,
        max,
        power_of_two: false,
        unit: "",
    }
}

/// The key that selects the span size; it becomes `Config::SpanSize` rather than a constant.
pub const SPAN_SIZE: &str = "span_size";

/// The value `never` of a [`Kind::Millis`] key; `rpmalloc::config::DECAY_NEVER`.
pub const NEVER: u64 = u64::MAX;
/// Largest finite `decay_ms`; `rpmalloc::config::MAX_DECAY_MS`.
pub const MAX_DECAY_MS: u64 = 3_600_000;
/// Largest cache byte budget; `rpmalloc::config::MAX_CACHE_BYTES`.
pub const MAX_CACHE_BYTES: u64 = 1 << 40;

/// Every key, in the order they are listed in messages and documentation.
pub static KEYS: &[Key] = &[
    Key {
        name: SPAN_SIZE,
        kind: Kind::Int {
            min: MIN_SPAN_SIZE,
            max: MAX_SPAN_SIZE,
            power_of_two: true,
            unit: " bytes",
        },
        default: "65536",
    },
    Key {
        name: "span_map_count",
        kind: int(1, 65_536),
        default: "64",
    },
    Key {
        name: "enable_thread_cache",
        kind: Kind::Bool,
        default: "true",
    },
    Key {
        name: "enable_global_cache",
        kind: Kind::Bool,
        default: "true",
    },
    Key {
        name: "enable_adaptive_thread_cache",
        kind: Kind::Bool,
        default: "false",
    },
    Key {
        name: "enable_unlimited_cache",
        kind: Kind::Bool,
        default: "false",
    },
    Key {
        name: "max_thread_span_cache",
        kind: int(1, 1_000_000),
        default: "32",
    },
    Key {
        name: "max_thread_span_large_cache",
        kind: int(1, 1_000_000),
        default: "100",
    },
    Key {
        name: "max_global_span_cache",
        kind: int(1, 1_000_000),
        default: "3200",
    },
    Key {
        name: "global_cache_multiplier",
        kind: int(1, 1024),
        default: "8",
    },
    Key {
        name: "max_thread_cache_bytes",
        kind: int(0, MAX_CACHE_BYTES),
        default: "8388608",
    },
    Key {
        name: "max_global_cache_bytes",
        kind: int(0, MAX_CACHE_BYTES),
        default: "536870912",
    },
    Key {
        name: "decay_ms",
        kind: Kind::Millis { max: MAX_DECAY_MS },
        default: "1000",
    },
    Key {
        name: "enable_huge_pages",
        kind: Kind::Bool,
        default: "false",
    },
    Key {
        name: "enable_statistics",
        kind: Kind::Bool,
        default: "false",
    },
];

/// The key called `name`, if there is one.
pub fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// All key names, comma separated.
pub fn key_list() -> String {
    KEYS.iter()
        .map(|key| key.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key an unknown `name` most likely meant, if any is close enough.
///
/// A key is a candidate when its edit distance from `name` (ignoring case) is at most a
/// third of its length (and at least 2), when it is `name` with `enable_` in front, or when
/// it is the only key containing `name`; the candidate with the smallest distance wins.
pub fn suggest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    let containing: Vec<&Key> = if name.len() >= 4 {
        KEYS.iter()
            .filter(|key| key.name.contains(&*name))
            .collect()
    } else {
        Vec::new()
    };
    KEYS.iter()
        .filter_map(|key| {
            let distance = edit_distance(&name, key.name);
            let close = distance <= (key.name.len() / 3).max(2);
            let missing_enable = key.name.strip_prefix("enable_") == Some(&*name);
            let only_container = containing.len() == 1 && containing[0] == key;
            (close || missing_enable || only_container).then_some((distance, key.name))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, key)| key)
}

/// Levenshtein distance between `a` and `b`, counted in bytes.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("spn_size", "span_size"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("spn_size"), Some("span_size"));
        assert_eq!(suggest("SPAN_SIZE"), Some("span_size"));
        assert_eq!(suggest("enable_thread_cach"), Some("enable_thread_cache"));
        assert_eq!(suggest("thread_cache"), Some("enable_thread_cache"));
        assert_eq!(suggest("statistics"), Some("enable_statistics"));
        assert_eq!(suggest("span_map_cnt"), Some("span_map_count"));
        assert_eq!(
            suggest("global_cache_mult"),
            Some("global_cache_multiplier")
        );
        assert_eq!(suggest("banana"), None);
        assert_eq!(suggest("x"), None);
        assert_eq!(suggest("cache"), None);
    }

    #[test]
    fn table_matches_config_names() {
        assert_eq!(KEYS.len(), 15);
        assert_eq!(
            lookup("span_map_count").unwrap().const_name(),
            "SPAN_MAP_COUNT"
        );
        assert!(lookup("spn_size").is_none());
    }
}
