//! The main job: two allocator configurations in one binary under a multi-threaded load,
//! and where their memory is.
//!
//! `FastAlloc` (thread caches on) is the `#[global_allocator]`, so every `Vec`, `String`,
//! `HashMap` and thread below goes through it. A working set of 16 B – 512 KiB blocks is
//! handed from each thread to the next, which checks and frees them, through `LeanAlloc`
//! (caches off, 256 KiB spans); the same work through the system allocator (glibc) runs in
//! a child process (this binary with `--system-pass`), so the two figures stand side by
//! side without one pass's leftovers in the other's. At the end both instances say where
//! their memory is, and `collect()` gives back what they cache.
//!
//! Run: `cargo run --release --example demo`

use rpmalloc::{define_rpmalloc, Statistics};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

define_rpmalloc!(FastAlloc, < enable_thread_cache: true, enable_statistics: true >);
define_rpmalloc!(LeanAlloc, < enable_thread_cache: false, enable_global_cache: false, span_size: 262144, enable_statistics: true >);

#[global_allocator]
static GLOBAL: FastAlloc = FastAlloc;

const THREADS: usize = 4;
const ROUNDS: usize = 200;

/// A block of the hand-off working set.
struct Block {
    ptr: usize,
    layout: Layout,
    seed: u8,
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`); 0 where there is none.
fn status(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<usize>().ok())
        .unwrap_or(0)
        * 1024
}

/// Resets the peak RSS (`VmHWM`) to the current RSS, so a phase shows its own peak.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// What one pass of the workload measured: time, and the process's RSS before, at the
/// peak and after.
struct Pass {
    elapsed: Duration,
    rss_before: usize,
    peak_rss: usize,
    rss_after: usize,
    blocks: usize,
}

impl Pass {
    /// One line for the parent to read back.
    fn to_line(&self) -> String {
        format!(
            "PASS {} {} {} {} {}",
            self.elapsed.as_nanos(),
            self.rss_before,
            self.peak_rss,
            self.rss_after,
            self.blocks
        )
    }

    fn from_line(line: &str) -> Option<Pass> {
        let mut f = line
            .strip_prefix("PASS ")?
            .split(' ')
            .map(str::parse::<u128>);
        let mut next = || f.next()?.ok();
        Some(Pass {
            elapsed: Duration::from_nanos(next()? as u64),
            rss_before: next()? as usize,
            peak_rss: next()? as usize,
            rss_after: next()? as usize,
            blocks: next()? as usize,
        })
    }
}

/// The workload: `THREADS` threads × `ROUNDS` rounds; each round builds a word count and
/// a vector (through the global allocator) and sends 8 blocks of 16 B – 512 KiB allocated
/// with `hand` to the next thread, which checks them and frees them with `hand`.
fn pass(hand: &'static (dyn GlobalAlloc + Sync)) -> Pass {
    reset_peak();
    let rss_before = status("VmRSS:");
    let start = Instant::now();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
    let mut handles = Vec::new();
    for (id, rx) in receivers.into_iter().enumerate() {
        let next = senders[(id + 1) % THREADS].clone();
        handles.push(std::thread::spawn(move || {
            let mut words: HashMap<String, usize> = HashMap::new();
            let (mut sent, mut checked) = (0usize, 0usize);
            let mut x = 0x9E37_79B9u32 ^ id as u32;
            for round in 0..ROUNDS {
                for i in 0..200 {
                    *words
                        .entry(format!("w{}", (i * 7 + round) % 500))
                        .or_default() += 1;
                }
                let v: Vec<u64> = (0..(round % 64) * 100).map(|i| i as u64).collect();
                assert_eq!(v.len(), (round % 64) * 100);
                for _ in 0..8 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let size = 16 + (x as usize % (512 << 10));
                    let layout = Layout::from_size_align(size, 16).unwrap();
                    // SAFETY: non-zero size, valid layout.
                    let p = unsafe { hand.alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: p holds `size` bytes.
                    unsafe { p.write_bytes(x as u8, size) };
                    sent += 1;
                    let _ = next.send(Block {
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
                        hand.dealloc(p, block.layout);
                    }
                    checked += 1;
                }
            }
            drop(next);
            assert_eq!(words.len(), 500);
            (sent, checked, rx)
        }));
    }
    drop(senders);
    let (mut sent, mut checked) = (0, 0);
    let mut leftovers = Vec::new();
    for h in handles {
        let (s, c, rx) = h.join().unwrap();
        sent += s;
        checked += c;
        leftovers.push(rx);
    }
    for rx in leftovers {
        for block in rx.try_iter() {
            // SAFETY: a live block of `hand` with its layout.
            unsafe { hand.dealloc(block.ptr as *mut u8, block.layout) };
            checked += 1;
        }
    }
    assert_eq!(sent, checked, "every block was freed once");
    Pass {
        elapsed: start.elapsed(),
        rss_before,
        peak_rss: status("VmHWM:"),
        rss_after: status("VmRSS:"),
        blocks: sent,
    }
}

fn where_it_is(name: &str, s: &Statistics) {
    println!("  {name}:");
    println!(
        "    mapped (address space)     {:8.1} MiB   peak {:.1} MiB",
        mib(s.mapped),
        mib(s.mapped_peak)
    );
    println!(
        "      holding live blocks      {:8.1} MiB   (the blocks themselves: {:.1} MiB)",
        mib(s.in_use),
        mib(s.live)
    );
    println!(
        "      cached (thread, global)  {:8.1} MiB   ({:.1} + {:.1})",
        mib(s.cached()),
        mib(s.thread_cache),
        mib(s.global_cache)
    );
    println!(
        "      span reserves            {:8.1} MiB   mapped, never touched",
        mib(s.reserve)
    );
    println!(
        "      released                 {:8.1} MiB   pages given back; address space kept by \
         other spans of the mapping",
        mib(s.released)
    );
    println!(
        "      heap records             {:8.1} MiB   ({} heaps)",
        mib(s.heap_records),
        s.heaps
    );
    println!(
        "    may be resident            {:8.1} MiB   (mapped − reserves − released)",
        mib(s.resident_estimate())
    );
}

fn main() {
    static SYSTEM: System = System;
    static LEAN: LeanAlloc = LeanAlloc;
    if std::env::args().any(|a| a == "--system-pass") {
        println!("{}", pass(&SYSTEM).to_line());
        return;
    }
    println!(
        "rpmalloc demo: {THREADS} threads × {ROUNDS} rounds; every round builds a word count \
         and a vector (FastAlloc, the global allocator) and hands 8 blocks of 16 B – 512 KiB \
         to the next thread, which checks and frees them"
    );
    let system = std::env::current_exe()
        .and_then(|exe| {
            std::process::Command::new(exe)
                .arg("--system-pass")
                .output()
        })
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(Pass::from_line)
        });
    let lean = pass(&LEAN);
    println!();
    println!("The hand-off through LeanAlloc, and through the system allocator (own process):");
    let column = |f: &dyn Fn(&Pass) -> String| {
        let sys = system.as_ref().map(f).unwrap_or_else(|| "–".into());
        format!("{:>10} {:>10}", f(&lean), sys)
    };
    println!("  {:<44} {:>10} {:>10}", "", "LeanAlloc", "system");
    println!(
        "  {:<44} {}",
        "blocks handed over",
        column(&|p| p.blocks.to_string())
    );
    println!(
        "  {:<44} {}",
        "time",
        column(&|p| format!("{:.2}s", p.elapsed.as_secs_f64()))
    );
    println!(
        "  {:<44} {}",
        "peak RSS above the start of the pass, MiB",
        column(&|p| format!("{:.1}", mib(p.peak_rss - p.rss_before)))
    );
    println!(
        "  {:<44} {}",
        "RSS kept after the pass, MiB",
        column(&|p| format!("{:.1}", mib(p.rss_after.saturating_sub(p.rss_before))))
    );

    let fast = FastAlloc.statistics().unwrap();
    let lean_stats = LeanAlloc.statistics().unwrap();
    println!();
    println!("Where the memory is now (all four worker threads have exited):");
    where_it_is("FastAlloc (the global allocator, caches on)", &fast);
    where_it_is("LeanAlloc (caches off, 256 KiB spans)", &lean_stats);
    println!(
        "  LeanAlloc's mapped peak is address space, not memory: it maps 64 spans (16 MiB) at \
         a time, and a mapping stays mapped while any span of it is in use or in a reserve; \
         the pages of every span it freed went back to the OS at once (`released`). Its \
         memory is the RSS figure of the pass above. Exited threads' heaps keep their \
         reserves for the next thread, which is the 64 MiB still mapped."
    );

    FastAlloc.collect();
    LeanAlloc.collect();
    let fast = FastAlloc.statistics().unwrap();
    let lean_stats = LeanAlloc.statistics().unwrap();
    println!();
    println!(
        "After collect() on both (caches, spare spans and exited threads' reserves given back):"
    );
    println!(
        "  FastAlloc: mapped {:.1} MiB, cached {:.1} MiB, live {:.1} MiB",
        mib(fast.mapped),
        mib(fast.cached()),
        mib(fast.live)
    );
    println!(
        "  LeanAlloc: mapped {:.1} MiB (heap records {:.1} MiB), live {:.1} MiB",
        mib(lean_stats.mapped),
        mib(lean_stats.heap_records),
        mib(lean_stats.live)
    );
    println!("  process RSS: {:.1} MiB", mib(status("VmRSS:")));
    assert_eq!(lean_stats.live, 0, "every LeanAlloc block was freed");
    assert_eq!(
        lean_stats.mapped, lean_stats.heap_records,
        "LeanAlloc keeps nothing but its heap records"
    );
}
