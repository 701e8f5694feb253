use rpmalloc::define_rpmalloc;

define_rpmalloc!(Alloc, < span_size: 0x8_0000 >);

fn main() {}
