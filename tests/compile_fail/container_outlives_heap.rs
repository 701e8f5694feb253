// A container borrowing a first-class heap cannot outlive it: the heap's drop releases
// every block in it.
use rpmalloc::allocator_api2::vec::Vec;
use rpmalloc::define_rpmalloc;

define_rpmalloc!(LeanAlloc);

fn main() {
    let outlives = {
        let heap = LeanAlloc::heap();
        let mut v = Vec::new_in(&heap);
        v.push(1u8);
        v
    };
    assert_eq!(outlives[0], 1);
}
