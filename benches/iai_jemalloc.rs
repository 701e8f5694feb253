//! Instruction counts with jemalloc (`tikv-jemallocator`) as the
//! `#[global_allocator]`; cases in `iai_common.rs`.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

include!("iai_common.rs");

iai_callgrind::main!(library_benchmark_groups = sizes, other);
