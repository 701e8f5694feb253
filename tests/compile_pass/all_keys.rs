//! Every accepted form of `define_rpmalloc!` compiles without warnings, including in a crate
//! that denies missing docs and unsafe operations outside `unsafe` blocks.
#![deny(missing_docs, unsafe_op_in_unsafe_fn, warnings)]

use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};

define_rpmalloc!(
    /// Every key given, with hex, underscores and the `usize` suffix.
    pub Everything, <
        span_size: 0x1_0000,
        span_map_count: 32usize,
        enable_thread_cache: true,
        enable_global_cache: false,
        enable_adaptive_thread_cache: true,
        enable_unlimited_cache: false,
        max_thread_span_cache: 1_000,
        max_thread_span_large_cache: 50,
        max_global_span_cache: 500,
        global_cache_multiplier: 4,
        max_thread_cache_bytes: 4_194_304,
        max_global_cache_bytes: 0x1000_0000usize,
        decay_ms: 250,
        enable_huge_pages: false,
        enable_statistics: true,
        initial_exec_tls: true,
    >,
);
define_rpmalloc!(
    /// All defaults, spelt `<>`.
    pub Empty, <>
);
define_rpmalloc!(
    /// All defaults, no configuration.
    pub(crate) Plain
);
define_rpmalloc!(Smallest, < span_size: 4096, >);
define_rpmalloc!(Hoarding, < decay_ms: never, max_global_cache_bytes: 0 >);
define_rpmalloc!(Prompt, < decay_ms: 0 >);
define_rpmalloc!(Largest, < span_size: 262144 >,);
define_rpmalloc!(FastAlloc, < enable_thread_cache: true >);
define_rpmalloc!(LeanAlloc, < enable_thread_cache: false, enable_global_cache: false, span_size: 262144 >);

// Fragments passed through `macro_rules!` arrive in invisible groups.
macro_rules! through {
    ($(#[$m:meta])* $vis:vis $name:ident, $size:expr, $flag:literal) => {
        define_rpmalloc!($(#[$m])* $vis $name, < span_size: $size, enable_statistics: $flag >);
    };
}
through!(
    /// Defined through `macro_rules!`.
    pub Through, 8192, true
);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

fn round_trip<A: GlobalAlloc>(allocator: &A) {
    let layout = Layout::from_size_align(100, 16).unwrap();
    // SAFETY: the layouts have non-zero sizes and every block is freed with the layout it
    // was last allocated or reallocated with.
    unsafe {
        let p = allocator.alloc(layout);
        assert!(!p.is_null() && p as usize % 16 == 0);
        let p = allocator.realloc(p, layout, 200);
        assert!(!p.is_null());
        allocator.dealloc(p, Layout::from_size_align(200, 16).unwrap());
        let z = allocator.alloc_zeroed(layout);
        assert!(!z.is_null() && *z == 0);
        allocator.dealloc(z, layout);
    }
}

fn main() {
    round_trip(&Everything);
    round_trip(&Empty);
    round_trip(&Plain);
    round_trip(&Smallest);
    round_trip(&Hoarding);
    round_trip(&Prompt);
    Prompt.collect();
    round_trip(&Largest);
    round_trip(&LeanAlloc);
    round_trip(&Through);
    let v: Vec<u32> = (0..1000).collect();
    assert_eq!(v.iter().sum::<u32>(), 499_500);
    assert_eq!(Empty.statistics(), None);
    let _ = Everything.statistics();
    assert_eq!(Plain, Plain::default());
    let _ = format!("{Plain:?}");
}
