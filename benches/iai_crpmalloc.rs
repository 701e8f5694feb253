//! Instruction counts with C rpmalloc 1.4.3 (`rpmalloc-sys`, preload) as the
//! `#[global_allocator]`; cases in `iai_common.rs`.

// Included by path rather than through the `rpmalloc_bench` library, so this binary links
// no other peer (mimalloc, for one, runs an ELF constructor).
#[path = "src/crpmalloc.rs"]
mod crpmalloc;

#[global_allocator]
static GLOBAL: crpmalloc::CRpmalloc = crpmalloc::CRpmalloc;

include!("iai_common.rs");

iai_callgrind::main!(library_benchmark_groups = sizes, other);
