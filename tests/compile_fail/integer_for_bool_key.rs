use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < enable_thread_cache: 1 >);

fn main() {}
