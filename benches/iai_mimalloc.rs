//! Instruction counts with mimalloc (`mimalloc` crate) as the
//! `#[global_allocator]`; cases in `iai_common.rs`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

include!("iai_common.rs");

iai_callgrind::main!(library_benchmark_groups = sizes, other);
