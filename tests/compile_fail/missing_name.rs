use rpmalloc::define_rpmalloc;

define_rpmalloc!(pub, < enable_thread_cache: true >);

fn main() {}
