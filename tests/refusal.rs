//! Requests the OS cannot satisfy (64 TiB, with 16 B and 1 MiB alignment, and larger) make
//! `alloc`, `alloc_zeroed` and `realloc` return null without panicking or aborting;
//! a refused `realloc` leaves the old block intact and usable; nothing leaks from the
//! failed attempts, and later requests are served normally.
//!
//! Under Miri (whose OS layer refuses mappings over 4 GiB) the `Vec` of the last test is
//! scaled down (`common::scaled`), and `refusals_map_nothing`, which reads the virtual size
//! from `/proc/self/statm`, is ignored.

mod common;

use common::{check, fill, layout, scaled};
use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};

define_rpmalloc!(FastAlloc, < enable_thread_cache: true >);
define_rpmalloc!(LeanAlloc, <
    enable_thread_cache: false,
    enable_global_cache: false,
    span_size: 262144,
>);
define_rpmalloc!(Tiny, < span_size: 4096 >);
// Used only by `refusals_map_nothing`, so its counters see nothing else.
define_rpmalloc!(Counted, < enable_statistics: true >);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

const TIB: usize = 1 << 40;
const MIB: usize = 1 << 20;

/// Layouts no machine running these tests can back.
fn impossible() -> Vec<Layout> {
    vec![
        layout(64 * TIB, 16),
        layout(64 * TIB, MIB),
        layout(64 * TIB, 1),
        layout(64 * TIB + 1, 4096),
        layout(128 * TIB, 64),
        // The largest size a Layout with this alignment allows.
        layout(isize::MAX as usize - (MIB - 1), MIB),
        layout(isize::MAX as usize - 15, 16),
    ]
}

/// Sizes to grow live blocks to: more than the OS will give.
const IMPOSSIBLE_SIZES: [usize; 3] = [64 * TIB, 128 * TIB, isize::MAX as usize - (MIB - 1)];

fn refuses_everything(a: &dyn GlobalAlloc, name: &str) {
    for l in impossible() {
        // SAFETY: non-zero sizes; a null result is what we expect.
        let (p, z) = unsafe { (a.alloc(l), a.alloc_zeroed(l)) };
        assert!(p.is_null(), "{name}: alloc({l:?}) returned {p:p}");
        assert!(z.is_null(), "{name}: alloc_zeroed({l:?}) returned {z:p}");
    }
    // Live blocks of every kind (small, medium, large, huge; natural and big alignment)
    // asked to grow to an impossible size stay where they are, intact.
    for (i, l) in [
        layout(24, 8),
        layout(100, 64),
        layout(20_000, 16),
        layout(200 << 10, 16),
        layout(3 * MIB, 4096),
        layout(20 * MIB, 16),
        layout(20 * MIB, MIB),
        layout(5000, 2 * MIB),
    ]
    .into_iter()
    .enumerate()
    {
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(l) };
        assert!(!p.is_null(), "{name}: {l:?}");
        let seed = i as u64;
        // SAFETY: p holds l.size() bytes.
        unsafe { fill(p, l.size(), seed) };
        for new_size in IMPOSSIBLE_SIZES {
            if Layout::from_size_align(new_size, l.align()).is_err() {
                continue;
            }
            // SAFETY: p is live with layout l; new_size is non-zero and valid with the
            // alignment (checked above).
            let q = unsafe { a.realloc(p, l, new_size) };
            assert!(
                q.is_null(),
                "{name}: realloc({l:?} -> {new_size}) returned {q:p}"
            );
            // SAFETY: the refused realloc left p live with layout l.
            unsafe { check(p, l.size(), seed, &format!("{name}: {l:?} after refusal")) };
        }
        // Still usable: a normal realloc keeps the contents; then free it.
        let bigger = l.size() * 2;
        // SAFETY: p is live with layout l; the new layout is valid.
        let q = unsafe { a.realloc(p, l, bigger) };
        assert!(
            !q.is_null(),
            "{name}: realloc({l:?} -> {bigger}) after refusal"
        );
        // SAFETY: q holds `bigger` bytes, the first l.size() copied from p.
        unsafe {
            check(
                q,
                l.size(),
                seed,
                &format!("{name}: {l:?} grown after refusal"),
            );
            a.dealloc(q, layout(bigger, l.align()));
        }
    }
    // Later requests of every kind are served.
    for l in [
        layout(8, 8),
        layout(4000, 16),
        layout(1 << 20, 16),
        layout(64 * MIB, 16),
    ] {
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc_zeroed(l) };
        assert!(!p.is_null(), "{name}: {l:?} after refusals");
        // SAFETY: p holds l.size() bytes; freed once.
        unsafe {
            assert_eq!(p.read(), 0);
            assert_eq!(p.add(l.size() - 1).read(), 0);
            fill(p, l.size(), 7);
            check(p, l.size(), 7, name);
            a.dealloc(p, l);
        }
    }
}

#[test]
fn global_allocator_refuses() {
    refuses_everything(&GLOBAL, "global FastAlloc");
}

#[test]
fn lean_allocator_refuses() {
    refuses_everything(&LeanAlloc, "LeanAlloc");
}

#[test]
fn tiny_span_allocator_refuses() {
    refuses_everything(&Tiny, "Tiny");
}

#[test]
fn std_collections_report_refusal() {
    let mut v: Vec<u8> = vec![1, 2, 3];
    assert!(v.try_reserve(64 * TIB).is_err());
    assert!(v.try_reserve_exact(64 * TIB).is_err());
    assert_eq!(v, [1, 2, 3]);
    let mut s = String::from("still here");
    assert!(s.try_reserve(64 * TIB).is_err());
    s.push_str(", and growing");
    assert_eq!(s, "still here, and growing");
    const LEN: usize = scaled(1_000_000);
    let big: Vec<u64> = (0..LEN as u64).collect();
    assert_eq!(big[LEN - 1], LEN as u64 - 1);
}

/// Virtual size of the process in bytes: the first field of `/proc/self/statm`, in pages.
fn virtual_size() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .expect("statm has a size field");
    pages * common::page_size()
}

#[test]
#[cfg_attr(
    any(miri, not(target_os = "linux")),
    ignore = "reads the virtual size from /proc/self/statm: Linux only, and Miri does not provide it"
)]
fn refusals_map_nothing() {
    let vsz_before = virtual_size();
    // Set the thread's heap up (and map its first spans) before the baseline.
    let warm = layout(64, 16);
    // SAFETY: valid layout; p is live until freed below.
    let p = unsafe { Counted.alloc(warm) };
    assert!(!p.is_null());
    let before = Counted.statistics().expect("statistics are enabled");
    refuses_everything(&Counted, "Counted");
    // SAFETY: allocated above, freed once.
    unsafe { Counted.dealloc(p, warm) };
    let after = Counted.statistics().unwrap();
    // Everything allocated was freed; huge blocks are unmapped at once, so the only
    // mapping left beyond the baseline is span memory kept for reuse.
    assert!(
        after.mapped <= before.mapped + 16 * MIB,
        "refused requests left memory mapped: {before:?} -> {after:?}"
    );
    // No address-space reservation made while trying survives the refusal (other tests
    // of this binary run alongside, but they map megabytes, not terabytes).
    let vsz_after = virtual_size();
    assert!(
        vsz_after < vsz_before + TIB,
        "virtual size grew from {vsz_before} to {vsz_after} bytes"
    );
}
