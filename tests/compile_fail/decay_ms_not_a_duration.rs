use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < decay_ms: forever >);

fn main() {}
