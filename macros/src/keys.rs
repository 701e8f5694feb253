//! The configuration keys `define_rpmalloc!` accepts: the table itself is the
//! `rpmalloc-keys` crate (shared with the library, which checks the same limits); this
//! module adds what the macro needs on top of it (lookup, suggestions, names, defaults as
//! written).

pub use rpmalloc_keys::{Key, Kind, KEYS, NEVER};

/// The key that selects the span size; it becomes `Config::SpanSize` rather than a constant.
pub const SPAN_SIZE: &str = rpmalloc_keys::SPAN_SIZE.name;

/// The key that selects how the per-thread slot is declared.
pub const INITIAL_EXEC_TLS: &str = rpmalloc_keys::INITIAL_EXEC_TLS.name;

/// The name of the `Config` associated constant `key` sets.
pub fn const_name(key: &Key) -> String {
    key.name.to_ascii_uppercase()
}

/// `key`'s default as it would be written in the macro input.
pub fn default_text(key: &Key) -> String {
    match key.kind {
        Kind::Bool => (key.default != 0).to_string(),
        Kind::Millis { .. } if key.default == NEVER => "never".to_string(),
        _ => key.default.to_string(),
    }
}

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
        assert_eq!(KEYS.len(), 16);
        assert_eq!(
            const_name(lookup("span_map_count").unwrap()),
            "SPAN_MAP_COUNT"
        );
        assert_eq!(default_text(lookup("enable_thread_cache").unwrap()), "true");
        assert_eq!(default_text(lookup("span_size").unwrap()), "65536");
        assert!(lookup("spn_size").is_none());
    }
}
