// Instruction-count cases shared by every `iai_<peer>.rs` bench.
//
// Each bench file sets its peer as `#[global_allocator]`, does `include!("iai_common.rs");`
// and ends with `main!(library_benchmark_groups = sizes, other);` (the runner finds the
// bench target by the file `main!` expands in, so it cannot live here), so every case below goes through `__rust_alloc` and the
// global allocator exactly as a real program's `Box`/`Vec` would. Cases and the divisor
// that turns a case's total into a per-operation figure (used by `compare.py`):
//
// | case | what | divisor |
// |---|---|---|
// | `alloc_free::<size>` | 1000 × (alloc + free) of `Box<[u8; N]>` | 1000 pairs |
// | `realloc_grow::double_1m` | `Vec<u8>` grown to 1 MiB in 4 KiB steps with `reserve` (amortised doubling: 9 reallocs), 4 times | 4 vectors |
// | `realloc_grow::linear_1m` | same with `reserve_exact` (256 reallocs, +4 KiB each), 4 times | 4 vectors |
// | `alloc_zeroed_64k` | 1000 × `vec![0u8; 65536]` + free | 1000 pairs |
// | `cross_thread_free` | 1000 × 64 B allocated on the main thread, freed on another, then 1000 alloc + free pairs on the main thread (which takes the remotely freed blocks back) | 1000 blocks |
//
// Memory is never written by the cases except by `alloc_zeroed`, so the counts are the
// allocator's own instructions plus a few per iteration for the loop. Kernel work (mmap,
// page faults) is invisible to callgrind.

use iai_callgrind::{
    library_benchmark, library_benchmark_group, Callgrind, EntryPoint, LibraryBenchmarkConfig,
};
use std::hint::black_box;
use std::mem::MaybeUninit;

/// Alloc/free pairs per `alloc_free` case.
const PAIRS: usize = 1000;
/// Vectors grown per `realloc_grow` case.
const GROW_REPS: usize = 4;
/// Final length of each grown vector.
const GROW_TO: usize = 1 << 20;
/// Bytes added per growth step.
const GROW_STEP: usize = 4096;
/// Blocks handed to another thread in `cross_thread_free`.
const XT_BLOCKS: usize = 1000;

#[inline(always)]
fn box_pairs<const N: usize>() {
    for _ in 0..PAIRS {
        // `new_uninit` allocates `Layout::new::<[u8; N]>()` without touching the memory;
        // `black_box` keeps the compiler from eliding the allocation.
        drop(black_box(Box::<[u8; N]>::new_uninit()));
    }
}

#[library_benchmark]
#[bench::small_16(16)]
#[bench::small_64(64)]
#[bench::small_256(256)]
#[bench::small_1024(1024)]
#[bench::medium_4k(4096)]
#[bench::medium_16k(16384)]
#[bench::large_128k(131072)]
#[bench::large_1m(1048576)]
#[bench::huge_8m(8388608)]
fn alloc_free(size: usize) {
    match size {
        16 => box_pairs::<16>(),
        64 => box_pairs::<64>(),
        256 => box_pairs::<256>(),
        1024 => box_pairs::<1024>(),
        4096 => box_pairs::<4096>(),
        16384 => box_pairs::<16384>(),
        131072 => box_pairs::<131072>(),
        1048576 => box_pairs::<1048576>(),
        8388608 => box_pairs::<8388608>(),
        _ => unreachable!("no such case"),
    }
}

/// Grows a vector to [`GROW_TO`] bytes, [`GROW_STEP`] at a time; `exact` selects
/// `reserve_exact` (one realloc per step) over `reserve` (capacity doubling). The bytes
/// are `MaybeUninit` so growing needs no writes; the reallocs still copy them.
fn grow(exact: bool) {
    for _ in 0..GROW_REPS {
        let mut v: Vec<MaybeUninit<u8>> = Vec::new();
        while v.len() < GROW_TO {
            if exact {
                v.reserve_exact(GROW_STEP);
            } else {
                v.reserve(GROW_STEP);
            }
            // SAFETY: capacity was just reserved; `MaybeUninit` needs no initialisation.
            unsafe { v.set_len(v.len() + GROW_STEP) };
        }
        drop(black_box(v));
    }
}

#[library_benchmark]
#[bench::double_1m(false)]
#[bench::linear_1m(true)]
fn realloc_grow(exact: bool) {
    grow(exact);
}

#[library_benchmark]
fn alloc_zeroed_64k() {
    for _ in 0..PAIRS {
        drop(black_box(vec![0u8; 65536]));
    }
}

/// The 64-byte block of `cross_thread_free` (left uninitialised).
type XtBlock = MaybeUninit<[u8; 64]>;

/// Raw pointers that may cross to another thread.
struct SendPtrs(Vec<*mut XtBlock>);
// SAFETY: the pointers are owned boxes handed over whole.
unsafe impl Send for SendPtrs {}

/// Measured: allocates the blocks (main thread).
#[inline(never)]
fn xt_alloc_batch(out: &mut Vec<*mut XtBlock>) {
    for _ in 0..XT_BLOCKS {
        out.push(Box::into_raw(black_box(Box::<[u8; 64]>::new_uninit())));
    }
}

/// Measured: frees them (other thread).
#[inline(never)]
fn xt_free_batch(ptrs: &[*mut XtBlock]) {
    for &p in ptrs {
        // SAFETY: each pointer came from `Box::into_raw` and is freed once.
        drop(unsafe { Box::from_raw(black_box(p)) });
    }
}

/// Measured: the owner allocates and frees again, taking the remote frees back.
#[inline(never)]
fn xt_reuse_batch() {
    for _ in 0..XT_BLOCKS {
        drop(black_box(Box::<[u8; 64]>::new_uninit()));
    }
}

// Only the three batch functions are counted, on whichever thread runs them: spawning
// and joining the thread is left out.
#[library_benchmark(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::with_args([
            "--collect-atstart=no",
            "--toggle-collect=*::xt_alloc_batch*",
            "--toggle-collect=*::xt_free_batch*",
            "--toggle-collect=*::xt_reuse_batch*",
        ])
        .entry_point(EntryPoint::None))
)]
fn cross_thread_free() {
    let mut ptrs = Vec::with_capacity(XT_BLOCKS);
    xt_alloc_batch(&mut ptrs);
    let batch = SendPtrs(ptrs);
    std::thread::spawn(move || {
        let batch = batch;
        xt_free_batch(&batch.0);
        drop(batch);
    })
    .join()
    .unwrap();
    xt_reuse_batch();
}

library_benchmark_group!(
    name = sizes;
    benchmarks = alloc_free
);

library_benchmark_group!(
    name = other;
    benchmarks = realloc_grow, alloc_zeroed_64k, cross_thread_free
);
