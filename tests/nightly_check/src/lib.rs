//! With rpmalloc's `nightly` feature, `define_rpmalloc!` types and first-class heaps
//! implement `core::alloc::Allocator` itself, so `std`'s own containers take them. A
//! package of its own (see its `Cargo.toml`): `cargo +nightly test --manifest-path
//! tests/nightly_check/Cargo.toml`, run by `.ci/targets` when a nightly toolchain is
//! present.
#![feature(allocator_api)]

use rpmalloc::define_rpmalloc;
use std::collections::VecDeque;

define_rpmalloc!(LeanAlloc, < enable_thread_cache: false, enable_statistics: true >);

#[test]
fn std_containers_take_the_allocator_and_its_heaps() {
    let mut v: Vec<u64, LeanAlloc> = Vec::new_in(LeanAlloc);
    v.extend(0..10_000);
    let b = Box::new_in([7u8; 300], LeanAlloc);
    let mut q = VecDeque::new_in(LeanAlloc);
    q.extend(v.iter().map(|x| x * 2));
    assert_eq!(q.back(), Some(&19_998));
    assert_eq!(b[299], 7);
    drop((v, b, q));
    assert_eq!(LeanAlloc.statistics().unwrap().live, 0);

    let heap = LeanAlloc::heap();
    let mut w: Vec<String, &_> = Vec::new_in(&heap);
    w.extend((0..1000).map(|i| i.to_string()));
    assert_eq!(w[999], "999");
    std::mem::forget(w);
    drop(heap);
    assert_eq!(LeanAlloc.statistics().unwrap().live, 0);
}
