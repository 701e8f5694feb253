use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < decay_ms: 3_600_001 >);

fn main() {}
