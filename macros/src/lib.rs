//! The `define_rpmalloc!` macro of the `rpmalloc` crate; use it through `rpmalloc`.
//!
//! The parsing and expansion work on `proc_macro2` types (modules `parse` and `expand`) so
//! they can be unit-tested outside the compiler.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod expand;
mod keys;
mod parse;

use proc_macro::TokenStream;

/// Defines an rpmalloc allocator instance: a unit struct implementing `GlobalAlloc`, with
/// its own global state, per-thread heaps and caches, configured at compile time.
///
/// # Syntax
///
/// ```text
/// define_rpmalloc!( $(#[attr])* $vis $Name );
/// define_rpmalloc!( $(#[attr])* $vis $Name, < $($key: $value),* $(,)? > $(,)? );
/// ```
///
/// Attributes (such as `///` doc comments) and the visibility are optional. Every key is
/// optional and may be given at most once; keys left out take their defaults.
///
/// # Keys
///
/// | key | type | rule | default |
/// |---|---|---|---|
/// | `span_size` | integer (bytes) | power of two, 4096 ..= 262144 | 65536 |
/// | `span_map_count` | integer | 1 ..= 65536 | 64 |
/// | `enable_thread_cache` | bool | | `true` |
/// | `enable_global_cache` | bool | | `true` |
/// | `enable_adaptive_thread_cache` | bool | | `false` |
/// | `enable_unlimited_cache` | bool | | `false` |
/// | `max_thread_span_cache` | integer | 1 ..= 1000000 | 32 |
/// | `max_thread_span_large_cache` | integer | 1 ..= 1000000 | 100 |
/// | `max_global_span_cache` | integer | 1 ..= 1000000 | 3200 |
/// | `global_cache_multiplier` | integer | 1 ..= 1024 | 8 |
/// | `enable_huge_pages` | bool | | `false` |
/// | `enable_statistics` | bool | | `false` |
///
/// Integers are literals, in decimal or hex, with optional `_` separators and no suffix or
/// the `usize` suffix (`65536`, `0x1_0000`, `65_536usize`). Bools are `true` or `false`.
///
/// An unknown key (with a suggestion when it looks like a misspelling), a repeated key, a
/// value of the wrong type or out of range is a compile error pointing at the key or value.
///
/// # Expansion
///
/// `$Name` gets the given attributes, a generated doc comment listing the effective
/// configuration, and `#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]`. It
/// implements `core::alloc::GlobalAlloc` and has an inherent method
/// `fn statistics(&self) -> Option<rpmalloc::Statistics>`, which returns `None` unless
/// `enable_statistics: true`. Each invocation is a separate singleton: two types defined by
/// two invocations never share memory, even with the same configuration.
///
/// # Example
///
/// ```ignore
/// use rpmalloc::define_rpmalloc;
///
/// define_rpmalloc!(
///     /// The program's allocator.
///     pub FastAlloc, < enable_thread_cache: true, span_size: 0x1_0000 >
/// );
/// define_rpmalloc!(LeanAlloc, <
///     enable_thread_cache: false,
///     enable_global_cache: false,
///     span_size: 262144,
/// >);
/// define_rpmalloc!(pub(crate) Plain); // all defaults
///
/// #[global_allocator]
/// static GLOBAL: FastAlloc = FastAlloc;
/// ```
#[proc_macro]
pub fn define_rpmalloc(input: TokenStream) -> TokenStream {
    expand::define_rpmalloc(input.into()).into()
}
