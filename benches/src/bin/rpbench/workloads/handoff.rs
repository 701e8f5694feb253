//! `--mode handoff`: producer threads allocate, one consumer thread frees.
//!
//! `--threads` producers each allocate their share of `--blocks` blocks of the `--mix`
//! sizes, write one byte per page, and send them in batches of `--batch` over one bounded
//! channel (`--queue` batches) to a consumer thread, which checks each block's first byte
//! and frees it (and allocates one small record per batch of its own, as a consumer that
//! does any work does). This is a pipeline stage handing its output downstream: every block is
//! freed by a thread that never allocates from that allocator, so whatever the freeing
//! thread keeps for itself is lost to the producers.
//!
//! Measured: the wall-clock time of the hand-off, the process's peak RSS, its RSS right
//! after the consumer freed the last block (every worker thread still alive, idle), and its
//! RSS after `--idle-ms` more of light activity on another thread (a few small and medium
//! blocks allocated and freed every 10 ms) while the workers stay idle: what an allocator
//! gives back on its own, during ordinary calls, when the threads that did the work are
//! parked (a server between bursts).

use super::{alloc_block, free_block, Alloc, Block, Rng};
use crate::measure::{mib, rss, thread_cpu_ns};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The sizes of a hand-off run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mix {
    /// 1 B – 1 KiB.
    Small,
    /// 1 KiB – 64 KiB.
    Medium,
    /// 64 KiB – 3 MiB.
    Large,
    /// 85 % small, 13 % medium, 2 % large.
    Mixed,
}

pub(crate) fn parse_mix(s: &str) -> Result<Mix, String> {
    match s {
        "small" => Ok(Mix::Small),
        "medium" => Ok(Mix::Medium),
        "large" => Ok(Mix::Large),
        "mixed" => Ok(Mix::Mixed),
        _ => Err(format!("unknown mix {s:?} (small, medium, large, mixed)")),
    }
}

pub(crate) fn mix_name(m: Mix) -> &'static str {
    match m {
        Mix::Small => "small",
        Mix::Medium => "medium",
        Mix::Large => "large",
        Mix::Mixed => "mixed",
    }
}

const KIB: usize = 1024;

/// One size drawn from `mix`, uniform within each band.
fn size_of(mix: Mix, rng: &mut Rng) -> usize {
    let band = |rng: &mut Rng, lo: usize, hi: usize| lo + rng.below(hi - lo + 1);
    let small = |rng: &mut Rng| band(rng, 1, KIB);
    let medium = |rng: &mut Rng| band(rng, KIB + 1, 64 * KIB);
    let large = |rng: &mut Rng| band(rng, 64 * KIB + 1, 3 * KIB * KIB);
    match mix {
        Mix::Small => small(rng),
        Mix::Medium => medium(rng),
        Mix::Large => large(rng),
        Mix::Mixed => match rng.below(100) {
            0..=84 => small(rng),
            85..=97 => medium(rng),
            _ => large(rng),
        },
    }
}

/// What one hand-off run measured.
pub(crate) struct Outcome {
    /// Blocks allocated plus blocks freed.
    pub(crate) ops: u64,
    /// CPU time of the producers and the consumer.
    pub(crate) cpu_s: f64,
    /// Wall-clock time from the first allocation to the last free.
    pub(crate) wall_s: f64,
    /// RSS once the consumer freed the last block, the workers still alive.
    pub(crate) rss_after: u64,
    /// RSS after the idle period with light activity.
    pub(crate) rss_idle: u64,
    /// Most bytes of blocks in batches sent and not yet freed at once (the live data the
    /// hand-off holds, without the batches the producers are filling): it depends on how
    /// far the producers run ahead of the consumer, so on the allocator's speed too.
    pub(crate) in_flight_peak: u64,
}

/// The hand-off's own settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) producers: usize,
    pub(crate) blocks: usize,
    pub(crate) batch: usize,
    pub(crate) queue: usize,
    pub(crate) mix: Mix,
    pub(crate) idle_ms: u64,
    pub(crate) seed: u64,
    /// Print `ours`' statistics after the last free (with `--features stats`).
    pub(crate) diagnose: bool,
}

/// `Block`s are plain memory; a batch of them crosses to the consumer whole.
struct Batch(Vec<Block>);
// SAFETY: the blocks are owned by whoever holds the batch.
unsafe impl Send for Batch {}

pub(crate) fn run(a: Alloc, s: Settings, quiet: bool) -> Outcome {
    let (tx, rx) = sync_channel::<Batch>(s.queue);
    // Workers meet here after their part (`done`), then stay alive and idle until the idle
    // measurement is over (`release`).
    let done = Arc::new(Barrier::new(s.producers + 2));
    let release = Arc::new(Barrier::new(s.producers + 2));
    // Bytes in sent, not yet freed batches, and their peak.
    let in_flight = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let start = Instant::now();
    let mut producers = Vec::new();
    for me in 0..s.producers {
        let tx = tx.clone();
        let (done, release) = (Arc::clone(&done), Arc::clone(&release));
        let in_flight = Arc::clone(&in_flight);
        let share = s.blocks / s.producers + usize::from(me < s.blocks % s.producers);
        producers.push(std::thread::spawn(move || {
            let cpu = thread_cpu_ns();
            let mut rng = Rng::new(s.seed ^ ((me as u64 + 1) * 0x51_7cc1));
            let mut batch = Vec::with_capacity(s.batch);
            for i in 0..share {
                batch.push(alloc_block(a, size_of(s.mix, &mut rng), i));
                if batch.len() == s.batch {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(s.batch));
                    sent(&in_flight, &full);
                    tx.send(Batch(full)).expect("consumer alive");
                }
            }
            if !batch.is_empty() {
                sent(&in_flight, &batch);
                tx.send(Batch(batch)).expect("consumer alive");
            }
            drop(tx);
            let cpu = thread_cpu_ns() - cpu;
            done.wait();
            release.wait();
            cpu
        }));
    }
    drop(tx);
    let consumer = {
        let (done, release) = (Arc::clone(&done), Arc::clone(&release));
        let in_flight = Arc::clone(&in_flight);
        std::thread::spawn(move || {
            let cpu = thread_cpu_ns();
            let mut freed = 0u64;
            for Batch(batch) in rx {
                // A consumer does some work of its own per batch (here, one small record
                // allocated and freed), so it has a heap of its own in a thread-caching
                // allocator, as in a real pipeline.
                let record = alloc_block(a, 64, 1);
                let bytes: usize = batch.iter().map(|b| b.layout.size()).sum();
                for b in batch {
                    // SAFETY: the producer wrote the first byte (`touch`) of this live block.
                    let first = unsafe { b.ptr.read_volatile() };
                    assert_eq!(first, b.layout.size() as u8, "block contents changed");
                    free_block(a, b);
                    freed += 1;
                }
                free_block(a, record);
                in_flight[0].fetch_sub(bytes as u64, Ordering::Relaxed);
            }
            let cpu = thread_cpu_ns() - cpu;
            let wall = start.elapsed();
            let (rss_after, _) = rss();
            done.wait();
            release.wait();
            (freed, cpu, wall, rss_after)
        })
    };

    // Wait for the consumer's last free without joining (the workers stay alive).
    done.wait();
    if s.diagnose {
        crate::measure::print_ours_stats("after the last free");
    }
    // Light activity on this thread while the workers stay parked: a server's
    // housekeeping between bursts, through the allocator under test.
    let rss_idle = idle_with_light_activity(a, s.idle_ms, s.seed, quiet);
    release.wait();
    let (freed, mut cpu_ns, wall, rss_after) = consumer.join().expect("consumer panicked");
    for p in producers {
        cpu_ns += p.join().expect("producer panicked");
    }
    assert_eq!(freed as usize, s.blocks, "every block reached the consumer");
    Outcome {
        ops: 2 * freed,
        cpu_s: cpu_ns as f64 / 1e9,
        wall_s: wall.as_secs_f64(),
        rss_after,
        rss_idle,
        in_flight_peak: in_flight[1].load(Ordering::Relaxed),
    }
}

/// Allocates and frees 32 small blocks (every eighth 4 KiB bigger) every 10 ms for `ms`
/// milliseconds through `a` — light activity, as a server's housekeeping between bursts —
/// and returns the RSS then.
pub(crate) fn idle_with_light_activity(a: Alloc, ms: u64, seed: u64, quiet: bool) -> u64 {
    let idle = Duration::from_millis(ms);
    let idle_start = Instant::now();
    let mut rng = Rng::new(seed ^ 0x1d1e);
    let mut held: Vec<Block> = Vec::new();
    let mut ticks = 0usize;
    while idle_start.elapsed() < idle {
        for i in 0..32 {
            let size = size_of(Mix::Small, &mut rng) + if i % 8 == 0 { 4 * KIB } else { 0 };
            held.push(alloc_block(a, size, i));
        }
        for b in held.drain(..) {
            free_block(a, b);
        }
        ticks += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let (rss_idle, _) = rss();
    if !quiet {
        eprintln!(
            "rpbench: idle: {ticks} ticks of light activity in {:.2} s, RSS {:.1} MiB",
            idle_start.elapsed().as_secs_f64(),
            mib(rss_idle)
        );
    }
    rss_idle
}

/// Counts a batch as in flight: `in_flight[0]` bytes now, `in_flight[1]` their peak.
fn sent(in_flight: &[AtomicU64; 2], batch: &[Block]) {
    let bytes: u64 = batch.iter().map(|b| b.layout.size() as u64).sum();
    let now = in_flight[0].fetch_add(bytes, Ordering::Relaxed) + bytes;
    in_flight[1].fetch_max(now, Ordering::Relaxed);
}
