//! The allocators the benchmarks compare, each behind `GlobalAlloc`.
//!
//! * `ours` / `ours-nocache`: this crate's port, default configuration and with both span
//!   caches off.
//! * `crpmalloc`: C rpmalloc 1.4.3 through `rpmalloc-sys` (feature `preload`), behind the
//!   thin adapter [`CRpmalloc`].
//! * `mimalloc`, `jemalloc` (`tikv-jemallocator`), `system` (glibc through `std`).
//!
//! The iai benches put one of these in `#[global_allocator]`; the throughput bench
//! (`rpbench`) calls the chosen one explicitly through [`by_name`].

use std::alloc::{GlobalAlloc, System};

use rpmalloc::define_rpmalloc;

mod crpmalloc;
pub use crpmalloc::CRpmalloc;

#[cfg(not(feature = "stats"))]
define_rpmalloc!(
    /// The port with its default configuration (64 KiB spans, both caches on).
    pub RpDefault
);
// With `--features stats`, `ours` counts where its memory is and `rpbench run` prints it
// (a third configuration in this binary would cost the others a few instructions: with
// three instances rustc's codegen units call the shared slow paths through the GOT, and
// the fast paths then save registers).
#[cfg(feature = "stats")]
define_rpmalloc!(
    /// The port with its default configuration and statistics on.
    pub RpDefault, < enable_statistics: true >
);
define_rpmalloc!(
    /// The port with the thread and global span caches compiled out.
    pub RpNoCache, < enable_thread_cache: false, enable_global_cache: false >
);

/// The names [`by_name`] knows, in the order reports list them.
pub const PEERS: [&str; 6] = [
    "ours",
    "ours-nocache",
    "crpmalloc",
    "mimalloc",
    "jemalloc",
    "system",
];

/// The peer every ratio is taken against.
pub const BASELINE: &str = "crpmalloc";

static OURS: RpDefault = RpDefault;
static OURS_NOCACHE: RpNoCache = RpNoCache;
static CRPMALLOC: CRpmalloc = CRpmalloc;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static SYSTEM: System = System;

/// `ours`' statistics (with `--features stats`), for `rpbench run` to print.
pub fn ours_stats() -> Option<rpmalloc::Statistics> {
    RpDefault.statistics()
}

/// The allocator called `name` (one of [`PEERS`]).
pub fn by_name(name: &str) -> Option<&'static (dyn GlobalAlloc + Sync)> {
    Some(match name {
        "ours" => &OURS,
        "ours-nocache" => &OURS_NOCACHE,
        "crpmalloc" => &CRPMALLOC,
        "mimalloc" => &MIMALLOC,
        "jemalloc" => &JEMALLOC,
        "system" => &SYSTEM,
        _ => return None,
    })
}
