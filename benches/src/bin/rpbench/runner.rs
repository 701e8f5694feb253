//! Running workloads: one configuration under one allocator in this process (`run`), and
//! for `all` every configuration and peer in a child process of its own, read back from
//! its RESULT line.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use rpmalloc_bench::by_name;

use crate::config::{mode_name, Mode, Params, HANDOFF_IDLE_MS};
use crate::measure::{phase_mark, rss, PEAK_BEFORE_RESET};
use crate::report::{self, Row};
use crate::sets::Set;
use crate::workloads::{
    free_block, handoff, larson_worker, op_tables, worker, Block, Shared, Tally,
};

/// What one run measured.
pub(crate) struct RunResult {
    pub(crate) ops: u64,
    pub(crate) cpu_s: f64,
    pub(crate) wall_s: f64,
    rss_start: u64,
    pub(crate) peak_rss: u64,
    pub(crate) rss_after: u64,
    /// `--mode handoff`: RSS after the idle period (0 for the other modes).
    pub(crate) rss_idle: u64,
    /// `--mode handoff`: most bytes in flight at once (0 for the other modes).
    pub(crate) in_flight_peak: u64,
}

/// Runs the configuration `p` in this process, under the allocator it names.
pub(crate) fn run(p: Params) -> RunResult {
    let alloc = by_name(&p.alloc).expect("validated allocator");
    let (rss_start, _) = rss();
    if p.mode == Mode::Handoff {
        let settings = handoff::Settings {
            producers: p.threads,
            blocks: p.blocks,
            batch: p.batch,
            queue: p.queue,
            mix: p.mix,
            idle_ms: p.idle_ms.unwrap_or(HANDOFF_IDLE_MS) as u64,
            seed: p.seed,
            diagnose: p.alloc == "ours",
        };
        let out = handoff::run(alloc, settings, p.quiet);
        let (_, peak_rss) = rss();
        return RunResult {
            ops: out.ops,
            cpu_s: out.cpu_s,
            wall_s: out.wall_s,
            rss_start,
            peak_rss,
            rss_after: out.rss_after,
            rss_idle: out.rss_idle,
            in_flight_peak: out.in_flight_peak,
        };
    }
    let (alloc_ops, free_ops) = op_tables(&p);
    let sh = Arc::new(Shared {
        alloc,
        inbox: (0..p.threads).map(|_| Mutex::new(Vec::new())).collect(),
        has_mail: (0..p.threads).map(|_| AtomicBool::new(false)).collect(),
        barrier: Barrier::new(p.threads),
        loops_done: AtomicU64::new(0),
        held_bytes: AtomicU64::new(0),
        alloc_ops,
        free_ops,
        p: p.clone(),
    });
    let total_loops = match p.mode {
        Mode::Larson => p.rounds * p.threads * p.loops,
        _ => p.rounds * p.threads * p.passes * p.loops,
    } as u64;

    // Progress on stderr every two seconds.
    let done = Arc::new(AtomicBool::new(false));
    let progress = (!p.quiet).then(|| {
        let sh = Arc::clone(&sh);
        let done = Arc::clone(&done);
        let label = format!("{} {} t={}", p.alloc, mode_name(p.mode), p.threads);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut next = Duration::from_secs(2);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if t0.elapsed() >= next {
                    next += Duration::from_secs(2);
                    let l = sh.loops_done.load(Ordering::Relaxed);
                    eprintln!(
                        "  [{label}] {:.0}% after {:.0} s",
                        100.0 * l as f64 / total_loops.max(1) as f64,
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
        })
    });

    let wall = Instant::now();
    let mut wall_s = 0.0;
    let mut total = Tally::default();
    match p.mode {
        Mode::Handoff => unreachable!("handled above"),
        Mode::Random | Mode::Realloc => {
            for round in 0..p.rounds {
                let handles: Vec<_> = (0..p.threads)
                    .map(|me| {
                        let sh = Arc::clone(&sh);
                        std::thread::spawn(move || worker(&sh, me, round))
                    })
                    .collect();
                for h in handles {
                    let t = h.join().expect("worker panicked");
                    total.ops += t.ops;
                    total.cpu_ns += t.cpu_ns;
                }
                if p.phase_rss {
                    phase_mark(&format!("round {round} end"));
                }
            }
        }
        Mode::Larson => {
            let mut sets: Vec<Vec<Option<Block>>> =
                (0..p.threads).map(|_| vec![None; p.allocs]).collect();
            for round in 0..p.rounds {
                let handles: Vec<_> = sets
                    .drain(..)
                    .enumerate()
                    .map(|(me, slots)| {
                        let sh = Arc::clone(&sh);
                        let slots = SendSlots(slots);
                        std::thread::spawn(move || {
                            let slots = slots;
                            let (t, s) = larson_worker(&sh, me, round, slots.0);
                            (t, SendSlots(s))
                        })
                    })
                    .collect();
                for h in handles {
                    let (t, s) = h.join().expect("worker panicked");
                    total.ops += t.ops;
                    total.cpu_ns += t.cpu_ns;
                    sets.push(s.0);
                }
                // Each new thread gets the set of the previous thread with the next index.
                sets.rotate_left(1);
                if p.phase_rss {
                    phase_mark(&format!("round {round}"));
                }
            }
            // The main thread frees the last round's working set, outside the timing.
            wall_s = wall.elapsed().as_secs_f64();
            for set in sets {
                for b in set.into_iter().flatten() {
                    free_block(alloc, b);
                }
            }
        }
    }
    if wall_s == 0.0 {
        wall_s = wall.elapsed().as_secs_f64();
    }
    done.store(true, Ordering::Relaxed);
    if let Some(h) = progress {
        let _ = h.join();
    }
    let (rss_after, peak_rss) = rss();
    let peak_rss = peak_rss.max(PEAK_BEFORE_RESET.load(Ordering::Relaxed));
    // With `--idle-ms`: RSS after that much light activity, the workers gone.
    let rss_idle = match p.idle_ms {
        Some(ms) if ms > 0 => handoff::idle_with_light_activity(alloc, ms as u64, p.seed, p.quiet),
        _ => 0,
    };
    RunResult {
        ops: total.ops,
        cpu_s: total.cpu_ns as f64 / 1e9,
        wall_s,
        rss_start,
        peak_rss,
        rss_after,
        rss_idle,
        in_flight_peak: 0,
    }
}

struct SendSlots(Vec<Option<Block>>);
// SAFETY: the blocks are handed over whole.
unsafe impl Send for SendSlots {}

/// Prints `r`, the result of `run(p)`, as the machine-readable RESULT line on stdout, for
/// `rpbench all` (read back by [`parse_result`]).
pub(crate) fn print_result(p: &Params, r: &RunResult) {
    println!(
    "RESULT alloc={} mode={} threads={} ops={} cpu_s={:.6} wall_s={:.6} rss_start={} peak_rss={} rss_after={} rss_idle={} in_flight_peak={}",
    p.alloc,
    mode_name(p.mode),
    p.threads,
    r.ops,
    r.cpu_s,
    r.wall_s,
    r.rss_start,
    r.peak_rss,
    r.rss_after,
    r.rss_idle,
    r.in_flight_peak
);
}

/// One `run`'s RESULT line.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) ops: u64,
    pub(crate) cpu_s: f64,
    pub(crate) wall_s: f64,
    pub(crate) rss_start: u64,
    pub(crate) peak_rss: u64,
    pub(crate) rss_after: u64,
    pub(crate) rss_idle: u64,
    pub(crate) in_flight_peak: u64,
}

fn parse_result(line: &str) -> Option<Sample> {
    let rest = line.strip_prefix("RESULT ")?;
    let get = |k: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    Some(Sample {
        ops: get("ops")?.parse().ok()?,
        cpu_s: get("cpu_s")?.parse().ok()?,
        wall_s: get("wall_s")?.parse().ok()?,
        rss_start: get("rss_start")?.parse().ok()?,
        peak_rss: get("peak_rss")?.parse().ok()?,
        rss_after: get("rss_after")?.parse().ok()?,
        rss_idle: get("rss_idle")?.parse().ok()?,
        in_flight_peak: get("in_flight_peak")?.parse().ok()?,
    })
}

/// `all`: runs every set at each of its thread counts under every peer, `repeat` times,
/// each run a child process of this executable (`rpbench run ... --quiet`), and returns
/// the report's rows. Progress goes to stderr, timed from `started`.
pub(crate) fn run_all(
    sets: &[&Set],
    peers: &[String],
    repeat: usize,
    extra: &[String],
    started: Instant,
) -> Result<Vec<Row>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let total: usize = sets
        .iter()
        .map(|s| s.threads.len() * peers.len() * repeat)
        .sum();
    let mut n = 0;
    let mut rows = Vec::new();
    for set in sets {
        for &t in set.threads {
            // Peers interleaved within each repetition, so a change in background load
            // hits them all alike; the median of the repetitions is reported. The order
            // rotates with each repetition: a run can be slowed by what the run before it
            // left the kernel to do (realloc, one thread: pairs read 0.86–1.11 when ours
            // always followed `system` and C always followed `ours-nocache`, against
            // 1.12 back to back).
            let mut samples_all: Vec<Vec<Sample>> = vec![Vec::new(); peers.len()];
            for rep in 0..repeat {
                for k in 0..peers.len() {
                    let pi = (k + rep) % peers.len();
                    let peer = &peers[pi];
                    n += 1;
                    eprintln!(
                        "[{n}/{total}, {:.0} s] {} {} threads={t}",
                        started.elapsed().as_secs_f64(),
                        set.name,
                        peer
                    );
                    let out = Command::new(&exe)
                        .arg("run")
                        .args(&set.args)
                        .args(extra)
                        .args(["--alloc", peer, "--threads", &t.to_string(), "--quiet"])
                        .stdin(Stdio::null())
                        .stderr(Stdio::inherit())
                        .output()
                        .map_err(|e| e.to_string())?;
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    let Some(r) = stdout.lines().find_map(parse_result) else {
                        return Err(format!(
                            "{} {peer} t={t} failed ({}): {stdout}",
                            set.name, out.status
                        ));
                    };
                    samples_all[pi].push(r);
                }
            }
            rows.extend(report::rows(set.name, t, peers, &samples_all));
        }
    }
    Ok(rows)
}
