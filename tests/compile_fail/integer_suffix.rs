use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < span_size: 65536u32 >);

fn main() {}
