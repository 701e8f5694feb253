//! The main job: two allocator configurations in one binary under a multi-threaded load.
//!
//! `FastAlloc` (thread caches on) is the `#[global_allocator]`, so every `Vec`, `String`,
//! `HashMap` and thread below goes through it. `LeanAlloc` (caches off, 256 KiB spans) is
//! used directly through `GlobalAlloc` for a working set handed between threads. At the
//! end both report what they mapped, and `LeanAlloc` shows its memory went back to the OS.
//!
//! Run: `cargo run --release --example demo`

use rpmalloc::define_rpmalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Instant;

define_rpmalloc!(FastAlloc, < enable_thread_cache: true, enable_statistics: true >);
define_rpmalloc!(LeanAlloc, < enable_thread_cache: false, enable_global_cache: false, span_size: 262144, enable_statistics: true >);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

const THREADS: usize = 4;
const ROUNDS: usize = 200;

/// A block of `LeanAlloc` memory handed between threads.
struct LeanBlock {
    ptr: usize,
    layout: Layout,
    seed: u8,
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let start = Instant::now();
    let rss_before = resident();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<LeanBlock>()).unzip();
    let mut handles = Vec::new();
    for (id, rx) in receivers.into_iter().enumerate() {
        let next = senders[(id + 1) % THREADS].clone();
        handles.push(std::thread::spawn(move || {
            let mut words: HashMap<String, usize> = HashMap::new();
            let mut lean_ops = 0usize;
            let mut checked = 0usize;
            let mut x = 0x9E37_79B9u32 ^ id as u32;
            for round in 0..ROUNDS {
                // Global allocator traffic: strings, maps, growing vectors.
                for i in 0..200 {
                    *words
                        .entry(format!("w{}", (i * 7 + round) % 500))
                        .or_default() += 1;
                }
                let v: Vec<u64> = (0..(round % 64) * 100).map(|i| i as u64).collect();
                assert_eq!(v.len(), (round % 64) * 100);
                // LeanAlloc traffic: blocks of 16 B .. 512 KiB sent to the next thread.
                for _ in 0..8 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let size = 16 + (x as usize % (512 << 10));
                    let layout = Layout::from_size_align(size, 16).unwrap();
                    // SAFETY: non-zero size, valid layout.
                    let p = unsafe { LeanAlloc.alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: p holds `size` bytes.
                    unsafe { p.write_bytes(x as u8, size) };
                    lean_ops += 1;
                    let _ = next.send(LeanBlock {
                        ptr: p as usize,
                        layout,
                        seed: x as u8,
                    });
                }
                while let Ok(block) = rx.try_recv() {
                    let p = block.ptr as *mut u8;
                    // SAFETY: the sender wrote `layout.size()` bytes of `seed`.
                    unsafe {
                        assert_eq!(*p, block.seed);
                        assert_eq!(*p.add(block.layout.size() - 1), block.seed);
                        LeanAlloc.dealloc(p, block.layout);
                    }
                    checked += 1;
                }
            }
            drop(next);
            (words.len(), lean_ops, checked, rx)
        }));
    }
    drop(senders);
    let mut lean_total = 0;
    let mut checked_total = 0;
    let mut leftovers = Vec::new();
    for h in handles {
        let (distinct, ops, checked, rx) = h.join().unwrap();
        assert_eq!(distinct, 500);
        lean_total += ops;
        checked_total += checked;
        leftovers.push(rx);
    }
    for rx in leftovers {
        for block in rx.try_iter() {
            // SAFETY: a live LeanAlloc block with its layout.
            unsafe { LeanAlloc.dealloc(block.ptr as *mut u8, block.layout) };
            checked_total += 1;
        }
    }
    assert_eq!(lean_total, checked_total, "every block was freed once");
    let elapsed = start.elapsed();
    let fast = FastAlloc.statistics().unwrap();
    let lean = LeanAlloc.statistics().unwrap();
    println!("rpmalloc demo: {THREADS} threads x {ROUNDS} rounds in {elapsed:.2?}");
    println!(
        "  FastAlloc (global allocator, caches on): mapped now {:.1} MiB, peak {:.1} MiB, {} thread heaps",
        mib(fast.mapped),
        mib(fast.mapped_peak),
        fast.heaps
    );
    println!(
        "  LeanAlloc (direct, caches off, 256 KiB spans): {lean_total} blocks allocated, sent to another thread, verified and freed there"
    );
    println!(
        "  LeanAlloc mapped: peak {:.1} MiB, now {:.1} MiB ({:.1} MiB mapped and {:.1} MiB returned over the run)",
        mib(lean.mapped_peak),
        mib(lean.mapped),
        mib(lean.mapped_total),
        mib(lean.unmapped_total)
    );
    println!(
        "  process resident memory: {:.1} MiB before, {:.1} MiB after",
        mib(rss_before),
        mib(resident())
    );
}
