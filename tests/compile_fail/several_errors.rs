use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < enable_thread_cach: true, global_cache_multiplier: 0, enable_statistics: "yes" >);

fn main() {}
