use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < max_thread_cache_bytes: 0x100_0000_0001 >);

fn main() {}
