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
//! let p = unsafe { LeanAlloc.alloc(layout) };
//! assert!(!p.is_null() && p as usize % 64 == 0);
//! unsafe { LeanAlloc.dealloc(p, layout) };
//! ```
//!
//! Each `define_rpmalloc!` expansion is a separate singleton with its own global state,
//! per-thread heap and caches; see `docs/architecture.md` for the design.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate self as rpmalloc;

mod api;
pub mod config;
mod global;
mod heap;
mod huge;
mod lock;
mod os;
mod params;
mod size_class;
mod span;
mod stats;
mod thread;

#[cfg(test)]
mod test_config;
#[cfg(test)]
mod tests;

pub use config::{Config, DefaultSpanSize};
pub use rpmalloc_macros::define_rpmalloc;
pub use stats::Statistics;
pub use typenum;

/// Items the `define_rpmalloc!` expansion refers to; not a stable interface.
#[doc(hidden)]
pub mod __private {
    pub use crate::api::{alloc, alloc_zeroed, dealloc, realloc, statistics};
    pub use crate::global::Global;
    pub use crate::thread::ThreadState;
}
