//! Instruction counts with the port with thread and global span caches off as the
//! `#[global_allocator]`; cases in `iai_common.rs`.

use rpmalloc::define_rpmalloc;

define_rpmalloc!(RpNoCache, < enable_thread_cache: false, enable_global_cache: false >);

#[global_allocator]
static GLOBAL: RpNoCache = RpNoCache;

include!("iai_common.rs");

iai_callgrind::main!(library_benchmark_groups = sizes, other);
