//! Instruction counts with glibc malloc (`std::alloc::System`) as the
//! `#[global_allocator]`; cases in `iai_common.rs`.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

include!("iai_common.rs");

iai_callgrind::main!(library_benchmark_groups = sizes, other);
