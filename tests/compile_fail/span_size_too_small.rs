use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < span_size: 2048 >);

fn main() {}
