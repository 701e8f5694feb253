//! A pure-Rust port of [rpmalloc](https://github.com/mjansson/rpmalloc), configured at compile
//! time.
//!
//! ```
//! use rpmalloc::define_rpmalloc;
//! use std::alloc::{GlobalAlloc, Layout};
//!
//! define_rpmalloc!(FastAlloc, < enable_thread_cache: true >);
//! define_rpmalloc!(LeanAlloc, < enable_thread_cache: false, enable_global_cache: false >);
//!
//! let layout = Layout::from_size_align(4096, 64).unwrap();
//! // SAFETY: the layout has a non-zero size.
//! let p = unsafe { LeanAlloc.alloc(layout) };
//! assert!(!p.is_null() && p as usize % 64 == 0);
//! // SAFETY: `p` came from `LeanAlloc` with this layout.
//! unsafe { LeanAlloc.dealloc(p, layout) };
//! ```
//!
//! Each `define_rpmalloc!` expansion is a separate singleton with its own global state,
//! per-thread heap and caches; see `docs/architecture.md` for the design.
//!
//! With the `allocator-api2` feature (on by default) every such type is also an
//! `Allocator` (allocator-api2's trait on stable, `core::alloc::Allocator` with the
//! `nightly` feature), so containers can take one as a value:
//!
//! ```
//! use rpmalloc::allocator_api2::vec::Vec;
//! use rpmalloc::define_rpmalloc;
//!
//! define_rpmalloc!(LeanAlloc, < enable_thread_cache: false >);
//!
//! let mut v: Vec<u64, LeanAlloc> = Vec::new_in(LeanAlloc);
//! v.extend(0..1000);
//! assert_eq!(v.iter().sum::<u64>(), 499_500);
//! // Every block knows its usable size (at least what was asked).
//! // SAFETY: `v`'s buffer is a live block of `LeanAlloc`.
//! assert!(unsafe { LeanAlloc.usable_size(v.as_ptr().cast()) } >= 8000);
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(feature = "nightly", feature(allocator_api, allow_internal_unstable))]
#![cfg_attr(feature = "nightly", allow(internal_features))]
// Under `--cfg loom` (model checking, `RUSTFLAGS="--cfg loom" cargo test --release --lib
// loom`) only the lock-free parts and what they use are compiled: `loom`'s atomics have no
// `const` constructors, so the allocator's statics cannot hold them.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

extern crate self as rpmalloc;

#[cfg(not(loom))]
mod alloc;
#[cfg(all(feature = "allocator-api2", not(loom)))]
pub mod allocator_api;
#[cfg(not(loom))]
mod api;
#[cfg(not(loom))]
mod bins;
mod block;
#[cfg(not(loom))]
mod c_style;
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
mod counting;
mod deferred;
#[cfg(not(loom))]
mod first_class;
#[cfg(not(loom))]
mod free;
#[cfg(not(loom))]
mod global;
#[cfg(not(loom))]
mod global_cache;
#[cfg(not(loom))]
mod heap;
#[cfg(not(loom))]
mod huge;
#[cfg(not(loom))]
mod instance;
mod lock;
mod os;
#[cfg(not(loom))]
mod params;
#[cfg(not(loom))]
mod realloc;
mod remote;
mod size_class;
mod span;
#[cfg(not(loom))]
mod stats;
mod sync;
#[cfg(not(loom))]
mod thread;
#[cfg(not(loom))]
mod thread_cache;
#[cfg(not(loom))]
mod thread_state;
#[cfg(not(loom))]
mod usable;

#[cfg(all(test, not(loom)))]
mod test_config;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use config::{Config, DefaultSpanSize};
#[cfg(not(loom))]
pub use first_class::Heap;
#[cfg(not(loom))]
pub use stats::Statistics;
pub use typenum;

/// The `allocator_api2` crate whose `Allocator` trait every `define_rpmalloc!` type
/// implements, re-exported so that its containers can be named without a second
/// dependency: `rpmalloc::allocator_api2::vec::Vec<T, MyAlloc>`.
#[cfg(feature = "allocator-api2")]
pub use allocator_api2;

/// Defines an rpmalloc allocator instance: a unit struct implementing `GlobalAlloc` (and,
/// with the default `allocator-api2` feature, `Allocator`), with its own global state,
/// per-thread heaps and caches, configured at compile time.
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
/// | `max_thread_cache_bytes` | integer (bytes) | 0 ..= 1 TiB | 8 MiB |
/// | `max_global_cache_bytes` | integer (bytes) | 0 ..= 1 TiB | 512 MiB |
/// | `decay_ms` | milliseconds, or `never` | ..= 3600000 | 1000 |
/// | `enable_huge_pages` | bool | | `false` |
/// | `enable_statistics` | bool | | `false` |
/// | `initial_exec_tls` | bool | | `false` |
///
/// Integers are literals, in decimal or hex, with optional `_` separators and no suffix or
/// the `usize` suffix (`65536`, `0x1_0000`, `65_536usize`). Bools are `true` or `false`.
///
/// `initial_exec_tls: true` declares the per-thread slot with the initial-exec TLS model
/// (x86-64 Linux; elsewhere, and under Miri, the default `thread_local!` slot). Use it in a
/// shared library (`cdylib`), where rustc would give a thread-local the general-dynamic
/// model, a `__tls_get_addr` call at every allocation and free; in an executable the
/// default is already as fast. The library gets marked `STATIC_TLS` (it can still be
/// `dlopen`ed: the slot takes 16 of the bytes glibc keeps spare for this). The slot is a
/// hidden symbol named after the crate and the allocator, so two such allocators of the
/// same name in one crate fail to link.
///
/// An unknown key (with a suggestion when it looks like a misspelling), a repeated key, a
/// value of the wrong type or out of range is a compile error pointing at the key or value.
///
/// # Expansion
///
/// `$Name` gets the given attributes, a generated doc comment listing the effective
/// configuration, and `#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]`. It
/// implements `core::alloc::GlobalAlloc` and `Allocator` (see the crate documentation),
/// and has the inherent methods `statistics()` (`None` unless `enable_statistics: true`),
/// `collect()` and `usable_size(ptr)`. Each invocation is a separate singleton: two
/// types defined by two invocations never share memory, even with the same
/// configuration. The expansion names this crate through `$crate`, so it works when the
/// dependency is renamed in `Cargo.toml`.
///
/// # Example
///
/// ```
/// use rpmalloc::define_rpmalloc;
/// use std::alloc::{GlobalAlloc, Layout};
///
/// define_rpmalloc!(
///     /// The program's allocator.
///     pub FastAlloc, < enable_thread_cache: true, span_size: 0x1_0000 >
/// );
/// define_rpmalloc!(LeanAlloc, <
///     enable_thread_cache: false,
///     enable_global_cache: false,
///     span_size: 262144,
///     decay_ms: never,
/// >);
/// define_rpmalloc!(pub(crate) Plain); // all defaults
///
/// #[global_allocator]
/// static GLOBAL: FastAlloc = FastAlloc;
///
/// let boxed = Box::new([7u8; 100]); // from FastAlloc, the global allocator
/// let layout = Layout::from_size_align(1 << 20, 4096).unwrap();
/// // SAFETY: a non-zero size.
/// let p = unsafe { LeanAlloc.alloc(layout) };
/// assert!(!p.is_null() && p as usize % 4096 == 0);
/// // SAFETY: from `LeanAlloc` with this layout.
/// unsafe { LeanAlloc.dealloc(p, layout) };
/// assert_eq!(boxed[99], 7);
/// assert_eq!(Plain.statistics(), None);
/// ```
#[cfg(not(loom))]
#[macro_export]
macro_rules! define_rpmalloc {
    ($($input:tt)*) => {
        $crate::__private::define_rpmalloc! { [$crate] $($input)* }
    };
}

/// Without the `allocator-api2` feature, `define_rpmalloc!` implements no `Allocator`.
#[cfg(not(feature = "allocator-api2"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_allocator {
    ($name:ty, $config:ty) => {};
}

/// Items the `define_rpmalloc!` expansion refers to; not a stable interface.
#[cfg(not(loom))]
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "allocator-api2")]
    pub use crate::allocator_api;
    pub use crate::api::{alloc, alloc_zeroed, collect, dealloc, realloc, statistics, usable_size};
    /// The C ABI's entry points (`capi/`).
    pub mod c_style {
        pub use crate::c_style::{free, malloc, owns, realloc, span_size, usable_size};
    }
    pub use crate::bins::EMPTY_BINS;
    pub use crate::first_class::Rpmalloc;
    pub use crate::global::Global;
    pub use crate::instance::Instance;
    pub use crate::thread::thread_finalize;
    pub use crate::thread_state::{slot_image, ThreadState};
    #[cfg(feature = "allocator-api2")]
    pub use allocator_api2;
    pub use rpmalloc_macros::define_rpmalloc;
}
