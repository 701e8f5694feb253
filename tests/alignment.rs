//! Every power-of-two alignment from 1 B to 64 MiB is honoured for sizes around it
//! (1, align - 1, align, align + 1, 3 × align, 100 KiB, 5 MiB), by the default
//! configuration and by one with 4 KiB spans and no caches: blocks are aligned, keep
//! their contents and never overlap; `alloc_zeroed` returns zeroed memory, also when it
//! reuses memory that was just filled and freed; `realloc` keeps contents and alignment
//! while a block grows and shrinks through the small, medium, large and huge paths.
//!
//! Under Miri a subset of the alignments and layouts is run (`common::thinned`: every
//! n-th, and the largest), with fewer rounds (`common::scaled`), and blocks are filled and
//! checked more sparsely (`common::DENSE`).

mod common;

use common::{assert_disjoint, assert_zeroed, check, check_prefix, fill, layout, scaled, thinned};
use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};

define_rpmalloc!(Default);
define_rpmalloc!(Tiny, <
    span_size: 4096,
    enable_thread_cache: false,
    enable_global_cache: false,
>);

const MIB: usize = 1 << 20;

/// 1, 2, 4, ... 8 MiB, then 16 MiB and 64 MiB (under Miri: 1, 4 KiB, 16 MiB and 64 MiB).
fn alignments() -> Vec<usize> {
    let mut aligns: Vec<usize> = (0..=23).map(|s| 1 << s).collect();
    aligns.extend([16 * MIB, 64 * MIB]);
    thinned(&aligns, 12)
}

fn sizes_around(align: usize) -> Vec<usize> {
    let mut sizes = vec![
        1,
        align - 1,
        align,
        align + 1,
        3 * align,
        100 << 10,
        5 * MIB,
    ];
    sizes.retain(|&s| s > 0);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn alloc_checked(a: &dyn GlobalAlloc, name: &str, l: Layout, zeroed: bool) -> *mut u8 {
    // SAFETY: every layout here has a non-zero size.
    let p = unsafe {
        if zeroed {
            a.alloc_zeroed(l)
        } else {
            a.alloc(l)
        }
    };
    assert!(!p.is_null(), "{name}: {l:?} refused");
    assert_eq!(
        p as usize % l.align(),
        0,
        "{name}: {l:?} got {p:p}, misaligned"
    );
    p
}

/// For each alignment, allocates every size around it at once (plain and zeroed), checks
/// alignment, zeroing, contents and disjointness, then frees everything.
fn every_alignment(a: &dyn GlobalAlloc, name: &'static str) {
    for align in alignments() {
        let mut live = Vec::new();
        for (i, size) in sizes_around(align).into_iter().enumerate() {
            let l = layout(size, align);
            let seed = (align * 16 + i) as u64;
            let p = alloc_checked(a, name, l, false);
            // SAFETY: p holds `size` bytes.
            unsafe { fill(p, size, seed) };
            live.push((p, l, seed));

            let z = alloc_checked(a, name, l, true);
            // SAFETY: z holds `size` bytes.
            unsafe {
                assert_zeroed(z, size, &format!("{name}: alloc_zeroed({l:?})"));
                fill(z, size, seed + 1);
            }
            live.push((z, l, seed + 1));
        }
        let mut ranges: Vec<_> = live
            .iter()
            .map(|&(p, l, _)| (p as usize, l.size(), name))
            .collect();
        assert_disjoint(&mut ranges);
        for &(p, l, seed) in &live {
            // SAFETY: live block of l.size() bytes.
            unsafe { check(p, l.size(), seed, &format!("{name}: {l:?}")) };
        }
        for (p, l, _) in live {
            // SAFETY: allocated above by `a` with layout `l`, freed once.
            unsafe { a.dealloc(p, l) };
        }
    }
}

#[test]
fn every_alignment_default_config() {
    every_alignment(&Default, "Default");
}

#[test]
fn every_alignment_4k_spans_no_caches() {
    every_alignment(&Tiny, "Tiny");
}

/// Fills a block with 0xFF, frees it and asks for a zeroed block of the same layout,
/// many times: recycled memory must be cleared.
fn zeroed_after_dirty_free(a: &dyn GlobalAlloc, name: &str) {
    let mut layouts = Vec::new();
    for size in [
        1,
        8,
        24,
        100,
        1000,
        1024,
        4000,
        4096,
        10_000,
        32_000,
        40_000,
        65_536,
        100_000,
        300_000,
        MIB,
        3 * MIB + 5,
        5 * MIB,
    ] {
        for align in [
            1,
            8,
            16,
            32,
            64,
            128,
            512,
            4096,
            32 << 10,
            64 << 10,
            256 << 10,
        ] {
            layouts.push(layout(size, align));
        }
    }
    for l in thinned(&layouts, 8) {
        let rounds = scaled(if l.size() > MIB { 4 } else { 12 });
        for round in 0..rounds {
            let dirty = alloc_checked(a, name, l, false);
            // SAFETY: dirty holds l.size() bytes; freed once with its layout.
            unsafe {
                dirty.write_bytes(0xFF, l.size());
                a.dealloc(dirty, l);
            }
            let z = alloc_checked(a, name, l, true);
            // SAFETY: z holds l.size() bytes; freed once with its layout.
            unsafe {
                assert_zeroed(
                    z,
                    l.size(),
                    &format!("{name}: alloc_zeroed({l:?}) round {round} after a dirty free"),
                );
                z.write_bytes(0xFF, l.size());
                a.dealloc(z, l);
            }
        }
    }
}

#[test]
fn zeroed_after_dirty_free_default_config() {
    zeroed_after_dirty_free(&Default, "Default");
}

#[test]
fn zeroed_after_dirty_free_4k_spans_no_caches() {
    zeroed_after_dirty_free(&Tiny, "Tiny");
}

/// Small → medium → large → huge → back, checking alignment and that the common prefix
/// survives every step.
fn realloc_through_every_kind(a: &dyn GlobalAlloc, name: &str) {
    let steps = [
        8,
        100,
        3000,
        30_000,
        200_000,
        3 * MIB,
        20 * MIB,
        40 * MIB,
        25 * MIB,
        2 * MIB,
        20_000,
        64,
        8,
    ];
    for align in thinned(
        &[1, 8, 16, 32, 64, 128, 256, 4096, 32 << 10, 64 << 10, MIB],
        5,
    ) {
        let mut l = layout(steps[0], align);
        let mut p = alloc_checked(a, name, l, false);
        let mut seed = align as u64;
        // SAFETY: p holds l.size() bytes.
        unsafe { fill(p, l.size(), seed) };
        for &new_size in &steps[1..] {
            // SAFETY: p is a live block of `a` with layout l; new_size is non-zero and
            // rounds to a valid layout with this alignment.
            let q = unsafe { a.realloc(p, l, new_size) };
            assert!(!q.is_null(), "{name}: realloc {l:?} -> {new_size} refused");
            assert_eq!(
                q as usize % align,
                0,
                "{name}: realloc {l:?} -> {new_size} misaligned"
            );
            // SAFETY: q holds new_size bytes, the first min(old, new) copied from p.
            unsafe {
                check_prefix(
                    q,
                    l.size(),
                    new_size,
                    seed,
                    &format!("{name}: realloc {l:?} -> {new_size}"),
                );
            }
            p = q;
            l = layout(new_size, align);
            seed += 1;
            // SAFETY: p holds new_size bytes.
            unsafe { fill(p, new_size, seed) };
        }
        // SAFETY: p holds l.size() bytes; freed once with its current layout.
        unsafe {
            check(p, l.size(), seed, name);
            a.dealloc(p, l);
        }
    }
}

#[test]
fn realloc_through_every_kind_default_config() {
    realloc_through_every_kind(&Default, "Default");
}

#[test]
fn realloc_through_every_kind_4k_spans_no_caches() {
    realloc_through_every_kind(&Tiny, "Tiny");
}
