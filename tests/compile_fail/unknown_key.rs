use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < enable_thread_cache: true, spn_size: 65536 >);

fn main() {}
