//! The `Allocator` trait (allocator-api2's) of `define_rpmalloc!` types: std-like
//! containers (`allocator_api2::vec::Vec`, `hashbrown::HashMap`, a tree of `Box`es) over
//! two configurations in one binary; `grow`, `grow_zeroed` and `shrink` keep contents and
//! alignment at every kind of block; zero-sized requests; `usable_size`; every byte back
//! to the allocator after the containers drop.
#![cfg(feature = "allocator-api2")]

mod common;

use common::{layout, scaled, XorShift};
use rpmalloc::allocator_api2::alloc::{AllocError, Allocator};
use rpmalloc::allocator_api2::boxed::Box;
use rpmalloc::allocator_api2::vec::Vec;
use rpmalloc::define_rpmalloc;
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

/// Tests of this file run one at a time: each checks that its allocator's live bytes go
/// back to zero, which another test's blocks would spoil.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

define_rpmalloc!(FastAlloc, < enable_thread_cache: true, enable_statistics: true >);
define_rpmalloc!(LeanAlloc, <
    enable_thread_cache: false,
    enable_global_cache: false,
    span_size: 0x4_0000,
    enable_statistics: true,
>);

/// A byte of block `seed`'s pattern at offset `i`.
fn byte(i: usize, seed: u64) -> u8 {
    common::pattern(i, seed)
}

/// Fills `len` bytes at `p` with the pattern of `seed`.
///
/// # Safety
/// `p` is valid for `len` bytes of writes.
unsafe fn fill(p: NonNull<u8>, len: usize, seed: u64) {
    for i in 0..len {
        // SAFETY: in bounds, per the contract.
        unsafe { p.as_ptr().add(i).write(byte(i, seed)) };
    }
}

/// Checks `len` bytes at `p` against the pattern of `seed`.
///
/// # Safety
/// `p` is valid for `len` bytes of reads.
unsafe fn check(p: NonNull<u8>, len: usize, seed: u64, what: &str) {
    for i in 0..len {
        // SAFETY: in bounds, per the contract.
        let got = unsafe { p.as_ptr().add(i).read() };
        assert_eq!(got, byte(i, seed), "{what}: byte {i} of {len}");
    }
}

/// The bytes written and checked per block: the whole block when small, else its ends.
fn checked_ranges(len: usize) -> [(usize, usize); 2] {
    /// Bytes checked at each end (fewer under Miri, which interprets every byte).
    const END: usize = if cfg!(miri) { 64 } else { 4096 };
    let head = len.min(END);
    let tail_start = len.saturating_sub(END).max(head);
    [(0, head), (tail_start, len)]
}

/// Fills the checked ranges of a `len`-byte block with the pattern of `seed`.
///
/// # Safety
/// `p` is valid for `len` bytes of writes.
unsafe fn fill_ends(p: NonNull<u8>, len: usize, seed: u64) {
    for (start, end) in checked_ranges(len) {
        for i in start..end {
            // SAFETY: in bounds, per the contract.
            unsafe { p.as_ptr().add(i).write(byte(i, seed)) };
        }
    }
}

/// Checks the first `len` bytes' checked ranges (as written for a block of `written`
/// bytes) against the pattern of `seed`.
///
/// # Safety
/// `p` is valid for `len` bytes of reads.
unsafe fn check_ends(p: NonNull<u8>, written: usize, len: usize, seed: u64, what: &str) {
    for (start, end) in checked_ranges(written) {
        for i in start..end.min(len) {
            // SAFETY: in bounds, per the contract.
            let got = unsafe { p.as_ptr().add(i).read() };
            assert_eq!(got, byte(i, seed), "{what}: byte {i}");
        }
    }
}

/// Every kind of block: small classes, medium, large runs, huge mappings (for both span
/// sizes), at alignments from the natural one to above the span size.
fn sizes() -> std::vec::Vec<usize> {
    let all = [
        1usize,
        8,
        24,
        100,
        1000,
        4096,
        20_000,
        70_000,
        300_000,
        1 << 20,
        5 << 20,
        20 << 20,
    ];
    common::thinned(&all, 3)
}

const ALIGNS: [usize; 6] = [1, 16, 64, 4096, 1 << 16, 1 << 19];

/// `grow`, `grow_zeroed` and `shrink` for every pair of kinds and alignments: the old
/// contents survive, the new block has the new alignment and zeroes where asked.
fn grow_and_shrink_keep_contents<A: Allocator>(a: A) {
    let mut seed = 1;
    for &size in &sizes() {
        for &align in &common::thinned(&ALIGNS, 2) {
            for &new_align in &[1, align, align * 4] {
                seed += 1;
                let old = layout(size, align);
                let p = a.allocate(old).expect("allocate").cast::<u8>();
                assert_eq!(p.as_ptr() as usize % align, 0);
                // SAFETY: a fresh block of `size` bytes.
                unsafe { fill_ends(p, size, seed) };

                let bigger = layout(size * 3 + 5, new_align);
                let zeroed = seed % 2 == 0;
                // SAFETY: `p` is live with `old`; `bigger` is not smaller.
                let q = unsafe {
                    if zeroed {
                        a.grow_zeroed(p, old, bigger)
                    } else {
                        a.grow(p, old, bigger)
                    }
                }
                .expect("grow");
                assert!(q.len() >= bigger.size());
                let q = q.cast::<u8>();
                assert_eq!(q.as_ptr() as usize % new_align, 0, "grow alignment");
                // SAFETY: the grown block holds the old bytes and `bigger.size()` in all.
                unsafe {
                    check_ends(q, size, size, seed, "after grow");
                    if zeroed {
                        for i in [size, size + 1, bigger.size() / 2, bigger.size() - 1] {
                            assert_eq!(q.as_ptr().add(i).read(), 0, "grow_zeroed byte {i}");
                        }
                    }
                }

                let smaller = layout(size.div_ceil(2), new_align);
                // SAFETY: `q` is live with `bigger`; `smaller` is not larger.
                let r = unsafe { a.shrink(q, bigger, smaller) }
                    .expect("shrink")
                    .cast::<u8>();
                assert_eq!(r.as_ptr() as usize % new_align, 0, "shrink alignment");
                // SAFETY: the shrunk block keeps its first `smaller.size()` bytes.
                unsafe {
                    check_ends(r, size, smaller.size(), seed, "after shrink");
                    a.deallocate(r, smaller);
                }
            }
        }
    }
}

#[test]
fn grow_and_shrink_keep_contents_and_alignment() {
    let _serial = serial();
    grow_and_shrink_keep_contents(FastAlloc);
    grow_and_shrink_keep_contents(LeanAlloc);
    assert_eq!(FastAlloc.statistics().unwrap().live, 0);
    assert_eq!(LeanAlloc.statistics().unwrap().live, 0);
}

/// A small block grown within its size class stays where it is (the class already has
/// the room), as `realloc` does.
#[test]
fn growing_within_a_class_stays_in_place() {
    let _serial = serial();
    let a = FastAlloc;
    let old = layout(100, 8);
    let p = a.allocate(old).unwrap().cast::<u8>();
    // SAFETY: `p` is live with `old`.
    let usable = unsafe { a.usable_size(p.as_ptr()) };
    assert!(usable >= 100);
    // SAFETY: `p` is live with `old`; the new size is larger.
    let q = unsafe { a.grow(p, old, layout(usable, 8)) }.unwrap();
    assert_eq!(q.cast::<u8>(), p);
    // SAFETY: `q` is live with its layout.
    unsafe { a.deallocate(q.cast(), layout(usable, 8)) };
}

/// Zero-sized requests: an aligned dangling pointer that is never touched, freed as a
/// no-op, grown into a real block and shrunk back to nothing.
#[test]
fn zero_sized_requests() {
    let _serial = serial();
    fn case<A: Allocator>(a: A) {
        for align in [1usize, 8, 64, 4096, 1 << 20] {
            let zero = layout(0, align);
            let p = a.allocate(zero).unwrap();
            assert_eq!(p.len(), 0);
            assert_eq!(p.cast::<u8>().as_ptr() as usize % align, 0);
            let z = a.allocate_zeroed(zero).unwrap();
            assert_eq!(z.len(), 0);
            // SAFETY: `z` came from `allocate_zeroed` with `zero`.
            unsafe { a.deallocate(z.cast(), zero) };

            let real = layout(40, align);
            // SAFETY: `p` came from `allocate` with `zero`.
            let q = unsafe { a.grow_zeroed(p.cast(), zero, real) }
                .unwrap()
                .cast::<u8>();
            assert_eq!(q.as_ptr() as usize % align, 0);
            // SAFETY: a live block of 40 bytes.
            unsafe {
                for i in 0..40 {
                    assert_eq!(q.as_ptr().add(i).read(), 0);
                }
                fill(q, 40, 9);
            }
            // SAFETY: `q` is live with `real`.
            let r = unsafe { a.shrink(q, real, zero) }.unwrap();
            assert_eq!(r.len(), 0);
            assert_eq!(r.cast::<u8>().as_ptr() as usize % align, 0);
            // SAFETY: `r` is the zero-sized block `shrink` gave.
            unsafe { a.deallocate(r.cast(), zero) };
        }
    }
    case(FastAlloc);
    case(LeanAlloc);
    assert_eq!(FastAlloc.statistics().unwrap().live, 0);
    assert_eq!(LeanAlloc.statistics().unwrap().live, 0);
}

/// Requests the allocator cannot meet fail with `AllocError`, never abort.
#[test]
fn impossible_requests_fail_cleanly() {
    let _serial = serial();
    let huge = Layout::from_size_align(isize::MAX as usize - (1 << 20), 1 << 20).unwrap();
    assert_eq!(FastAlloc.allocate(huge), Err(AllocError));
    assert_eq!(LeanAlloc.allocate_zeroed(huge), Err(AllocError));
    let old = layout(64, 8);
    let p = FastAlloc.allocate(old).unwrap().cast::<u8>();
    // SAFETY: `p` is live with `old`.
    unsafe {
        fill(p, 64, 3);
        let grown = FastAlloc.grow(p, old, Layout::from_size_align(1 << 46, 8).unwrap());
        assert_eq!(grown, Err(AllocError));
        // The block is untouched by the failed grow.
        check(p, 64, 3, "after a failed grow");
        FastAlloc.deallocate(p, old);
    }
}

/// `usable_size` covers the request, and writing all of it touches no other block.
#[test]
fn usable_size_is_the_block_and_only_the_block() {
    let _serial = serial();
    fn case<A: Allocator + Copy>(a: A, usable: impl Fn(*const u8) -> usize) {
        for &size in &sizes() {
            for &align in &common::thinned(&ALIGNS, 2) {
                let l = layout(size, align);
                let p = a.allocate(l).unwrap().cast::<u8>();
                let neighbour = a.allocate(l).unwrap().cast::<u8>();
                // SAFETY: `neighbour` is a fresh block of `size` bytes.
                unsafe { fill_ends(neighbour, size, 77) };
                let n = usable(p.as_ptr());
                assert!(n >= size, "usable {n} < {size} (align {align})");
                // SAFETY: the usable size is the block's to write.
                unsafe {
                    p.as_ptr().write_bytes(0xA5, n);
                    check_ends(neighbour, size, size, 77, "neighbour");
                    a.deallocate(p, l);
                    a.deallocate(neighbour, l);
                }
            }
        }
    }
    case(FastAlloc, |p| {
        // SAFETY: `case` passes live blocks of this allocator only.
        unsafe { FastAlloc.usable_size(p) }
    });
    case(LeanAlloc, |p| {
        // SAFETY: `case` passes live blocks of this allocator only.
        unsafe { LeanAlloc.usable_size(p) }
    });
}

/// `allocator_api2::vec::Vec`: pushes through every growth, `shrink_to_fit`, and
/// vectors of both configurations side by side.
#[test]
fn vectors_of_two_configurations() {
    let _serial = serial();
    let n = scaled(200_000);
    let mut fast: Vec<u64, FastAlloc> = Vec::new_in(FastAlloc);
    let mut lean: Vec<u64, LeanAlloc> = Vec::with_capacity_in(3, LeanAlloc);
    for i in 0..n as u64 {
        fast.push(i * 3);
        lean.push(i ^ 0x5555);
    }
    fast.truncate(n / 7);
    fast.shrink_to_fit();
    lean.truncate(n / 2);
    lean.shrink_to_fit();
    for (i, (f, l)) in fast.iter().zip(&lean).enumerate() {
        assert_eq!(*f, i as u64 * 3);
        assert_eq!(*l, i as u64 ^ 0x5555);
    }
    assert!(FastAlloc.statistics().unwrap().live >= fast.capacity() * 8);
    drop(fast);
    drop(lean);
    assert_eq!(FastAlloc.statistics().unwrap().live, 0);
    assert_eq!(LeanAlloc.statistics().unwrap().live, 0);
}

/// `hashbrown::HashMap` with its allocator-api2 feature: inserts, lookups and removals,
/// with the table growing through every power of two.
#[test]
fn hash_maps_of_two_configurations() {
    let _serial = serial();
    let n = scaled(100_000) as u64;
    let mut fast = hashbrown::HashMap::new_in(FastAlloc);
    let mut lean = hashbrown::HashMap::new_in(LeanAlloc);
    for i in 0..n {
        fast.insert(i, i.to_string());
        lean.insert(i.wrapping_mul(0x9E37_79B9), [i; 4]);
    }
    for i in (0..n).step_by(3) {
        assert_eq!(fast.remove(&i), Some(i.to_string()));
    }
    for i in 0..n {
        assert_eq!(fast.get(&i).is_some(), i % 3 != 0);
        assert_eq!(lean[&i.wrapping_mul(0x9E37_79B9)], [i; 4]);
    }
    drop(fast);
    drop(lean);
    assert_eq!(FastAlloc.statistics().unwrap().live, 0);
    assert_eq!(LeanAlloc.statistics().unwrap().live, 0);
}

/// A binary search tree of `Box<Node, A>`: the node-per-allocation pattern of
/// `BTreeMap`-like structures, built from random keys and checked in order.
#[test]
fn trees_of_boxes() {
    let _serial = serial();
    struct Node<A: Allocator> {
        key: u64,
        value: [u64; 3],
        left: Option<Box<Node<A>, A>>,
        right: Option<Box<Node<A>, A>>,
    }

    fn insert<A: Allocator + Copy>(mut slot: &mut Option<Box<Node<A>, A>>, key: u64, a: A) {
        while let Some(node) = slot {
            if key == node.key {
                return;
            }
            slot = if key < node.key {
                &mut node.left
            } else {
                &mut node.right
            };
        }
        *slot = Some(Box::new_in(
            Node {
                key,
                value: [key, !key, key.rotate_left(7)],
                left: None,
                right: None,
            },
            a,
        ));
    }

    fn in_order<A: Allocator>(node: &Option<Box<Node<A>, A>>, out: &mut std::vec::Vec<u64>) {
        // An explicit stack: a random tree's depth is small, but keep the test's own
        // stack use bounded.
        let mut stack = std::vec::Vec::new();
        let mut cur = node.as_deref();
        while cur.is_some() || !stack.is_empty() {
            while let Some(n) = cur {
                stack.push(n);
                cur = n.left.as_deref();
            }
            let n = stack.pop().unwrap();
            assert_eq!(n.value, [n.key, !n.key, n.key.rotate_left(7)]);
            out.push(n.key);
            cur = n.right.as_deref();
        }
    }

    /// Drops a tree without recursion.
    fn dismantle<A: Allocator>(root: Option<Box<Node<A>, A>>) {
        let mut stack: std::vec::Vec<Box<Node<A>, A>> = root.into_iter().collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.left.take());
            stack.extend(node.right.take());
        }
    }

    fn case<A: Allocator + Copy>(a: A, seed: u64) {
        let mut rng = XorShift::new(seed);
        let mut root = None;
        let mut keys = std::vec::Vec::new();
        for _ in 0..scaled(50_000) {
            let key = rng.next_u64() % 1_000_000;
            keys.push(key);
            insert(&mut root, key, a);
        }
        keys.sort_unstable();
        keys.dedup();
        let mut seen = std::vec::Vec::new();
        in_order(&root, &mut seen);
        assert_eq!(seen, keys);
        dismantle(root);
    }

    case(FastAlloc, 1);
    case(LeanAlloc, 2);
    assert_eq!(FastAlloc.statistics().unwrap().live, 0);
    assert_eq!(LeanAlloc.statistics().unwrap().live, 0);
}

/// Containers of one configuration moved to other threads and freed there (the remote
/// free path through `Allocator::deallocate`).
#[test]
fn containers_freed_on_other_threads() {
    let _serial = serial();
    let n = scaled(20_000);
    let handles: std::vec::Vec<_> = (0..4)
        .map(|t| {
            let mut v: Vec<Box<[u8; 48], FastAlloc>, FastAlloc> = Vec::new_in(FastAlloc);
            for i in 0..n {
                v.push(Box::new_in([(i + t) as u8; 48], FastAlloc));
            }
            std::thread::spawn(move || {
                for (i, b) in v.iter().enumerate() {
                    assert_eq!(b[47], (i + t) as u8);
                }
                drop(v);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(FastAlloc.statistics().unwrap().live, 0);
}
