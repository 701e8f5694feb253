//! Instruction counts with the port (default configuration) as the
//! `#[global_allocator]`; cases in `iai_common.rs`.

use rpmalloc::define_rpmalloc;

define_rpmalloc!(RpDefault);

#[global_allocator]
static GLOBAL: RpDefault = RpDefault;

include!("iai_common.rs");

iai_callgrind::main!(library_benchmark_groups = sizes, other);
