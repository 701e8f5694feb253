//! The report of `rpbench all`: rows of medians and paired ratios per set, peer and thread
//! count, and the markdown pages with their tables.

use std::fmt::Write as _;

use rpmalloc_bench::BASELINE;

use crate::measure::mib;
use crate::runner::Sample;
use crate::sets::Set;

/// Ratios of one peer's figures to a reference peer's (see `Row::to_c`).
#[derive(Clone, Copy, Default)]
struct Ratios {
    ops_cpu: f64,
    ops_wall: f64,
    peak: f64,
    after: f64,
    idle: f64,
    /// Peak RSS per byte in flight (hand-off).
    peak_per_live: f64,
}

#[derive(Clone)]
pub(crate) struct Row {
    pub(crate) set: String,
    pub(crate) peer: String,
    pub(crate) threads: usize,
    pub(crate) ops_cpu: f64,
    ops_wall: f64,
    pub(crate) wall_s: f64,
    pub(crate) peak: u64,
    after: u64,
    pub(crate) idle: u64,
    start: u64,
    /// Peak RSS per byte in flight (hand-off; median).
    peak_per_live: f64,
    /// Ratios to the baseline (C rpmalloc), each the median over repetitions of this peer's
    /// figure over the baseline's figure from the same repetition (run next to it, so a
    /// slow or fast spell of the machine cancels out).
    to_c: Option<Ratios>,
    /// The same against jemalloc, the memory reference.
    to_jemalloc: Option<Ratios>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The memory reference peer.
const MEMORY_REFERENCE: &str = "jemalloc";

/// The rows of set `set` at `threads` threads, one per peer: the medians of each peer's
/// `samples` (indexed like `peers`, one per repetition) and its paired ratios to the
/// baseline and to the memory reference.
pub(crate) fn rows(
    set: &str,
    threads: usize,
    peers: &[String],
    samples_all: &[Vec<Sample>],
) -> Vec<Row> {
    let mut rows = Vec::new();
    let reference = |name: &str| peers.iter().position(|p| p == name);
    for (pi, peer) in peers.iter().enumerate() {
        let samples = &samples_all[pi];
        let med = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let paired = |b: &[Sample], f: &dyn Fn(&Sample) -> f64| {
            median(samples.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect())
        };
        let ratios = |b: usize| {
            let b = &samples_all[b];
            Ratios {
                ops_cpu: paired(b, &|r| r.ops as f64 / r.cpu_s),
                ops_wall: paired(b, &|r| r.ops as f64 / r.wall_s),
                peak: paired(b, &|r| r.peak_rss as f64),
                after: paired(b, &|r| r.rss_after as f64),
                idle: paired(b, &|r| r.rss_idle.max(1) as f64),
                peak_per_live: paired(b, &|r| r.peak_rss as f64 / r.in_flight_peak.max(1) as f64),
            }
        };
        rows.push(Row {
            set: set.into(),
            peer: peer.clone(),
            threads,
            ops_cpu: med(&|r| r.ops as f64 / r.cpu_s),
            ops_wall: med(&|r| r.ops as f64 / r.wall_s),
            wall_s: med(&|r| r.wall_s),
            peak: med(&|r| r.peak_rss as f64) as u64,
            after: med(&|r| r.rss_after as f64) as u64,
            idle: med(&|r| r.rss_idle as f64) as u64,
            start: med(&|r| r.rss_start as f64) as u64,
            peak_per_live: med(&|r| r.peak_rss as f64 / r.in_flight_peak.max(1) as f64),
            to_c: reference(BASELINE).map(ratios),
            to_jemalloc: reference(MEMORY_REFERENCE).map(ratios),
        });
    }
    rows
}

pub(crate) fn report(
    rows: &[Row],
    sets: &[&Set],
    peers: &[String],
    scale: f64,
    repeat: usize,
    elapsed: f64,
    extra: &[String],
) -> String {
    let find = |set: &str, peer: &str, t: usize| {
        rows.iter()
            .find(|r| r.set == set && r.peer == peer && r.threads == t)
    };
    // A paired ratio of the row (see `Row::to_c`), or nothing for the reference itself.
    let ratio = |r: &Row, reference: &str, k: fn(&Ratios) -> f64| {
        let q = if reference == BASELINE {
            r.to_c
        } else {
            r.to_jemalloc
        };
        match q {
            Some(q) if r.peer != reference => format!(" ({:.2}×)", k(&q)),
            _ => String::new(),
        }
    };
    // One cell per thread count for `peer`, formatted by `cell`, or a dash if not run.
    let cells = |s: &mut String, set: &Set, peer: &str, cell: &dyn Fn(&Row) -> String| {
        for &t in set.threads {
            match find(set.name, peer, t) {
                Some(r) => {
                    let _ = write!(s, " {} |", cell(r));
                }
                None => s.push_str(" – |"),
            }
        }
    };
    let header = |s: &mut String, set: &Set, columns: &[&str]| {
        let _ = write!(s, "| peer |");
        for c in columns {
            for t in set.threads {
                if set.handoff {
                    let _ = write!(s, " {c}, {t}:1 |");
                } else {
                    let _ = write!(s, " {c}, {t} thr |");
                }
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "|---|{}",
            "---:|".repeat(set.threads.len() * columns.len())
        );
    };
    let mut s = String::new();
    let handoff_only = sets.iter().all(|set| set.handoff);
    let _ = writeln!(
        s,
        "# {} (rpbench)\n",
        if handoff_only {
            "Hand-off: time and memory"
        } else {
            "Throughput and memory"
        }
    );
    let _ = writeln!(
        s,
        "Generated by `rpbench all` (benches/src/bin/rpbench/) on a {}-CPU machine in {:.0} s; \
         loop and block counts scaled by {scale} from the defaults{}. Each figure is {} run(s) of a \
         separate process per peer and thread count{}.\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        elapsed,
        if extra.is_empty() {
            String::new()
        } else {
            format!(", extra options `{}`", extra.join(" "))
        },
        repeat,
        if repeat > 1 { " (median)" } else { "" }
    );
    if sets.iter().any(|set| !set.handoff) {
        let _ = writeln!(
            s,
            "*Ops/CPU-s*: memory operations (allocations, frees, reallocs) per second of worker-thread \
             CPU time, summed over threads, as rpmalloc-benchmark reports. *Ops/s*: the same per \
             wall-clock second of the whole run. *Peak RSS*: the process's `VmHWM`; *after*: its \
             `VmRSS` once every block is freed and every worker thread has exited."
        );
    }
    if sets.iter().any(|set| set.handoff) {
        let _ = writeln!(
            s,
            "*Hand-off* (`--mode handoff`): N producer threads allocate blocks, write a byte per \
             page and send them in batches over one bounded channel to a consumer thread, which \
             frees them (`N:1`). *Time*: wall-clock seconds from the first allocation to the \
             last free. *Peak RSS*: `VmHWM`. *After frees*: `VmRSS` right after the last free, \
             every worker thread still alive and idle. *After idle*: `VmRSS` after 2 s more of \
             light activity on another thread (32 small blocks allocated and freed every \
             10 ms), the workers still idle. *Peak RSS per byte in flight*: the peak RSS over the \
             most bytes of blocks ever in sent, not yet freed batches — the live data, which \
             grows when the producers run ahead of the consumer (a faster allocator fills the \
             channel more). Memory ratios are given to C rpmalloc (C) and to jemalloc (je)."
        );
    }
    let _ = writeln!(
        s,
        "A process without any benchmark blocks has an RSS of about {:.1} MiB. Ratios are to C rpmalloc \
         1.4 (`rpmalloc-sys`) unless marked: the median over the repetitions of the peer's figure over the reference's \
         from the same repetition (peers run interleaved, in an order that rotates with each \
         repetition, so a slow or fast spell of the machine mostly cancels out); for ops above 1 is faster, \
         for time and memory below 1 is smaller. \
         Timings on a small shared machine vary from run to run (use `--repeat`); the \
         instruction counts in `benchmarks-iai.md` are the steadier signal.\n",
        mib(rows.iter().map(|r| r.start).min().unwrap_or(0))
    );
    for set in sets {
        let _ = writeln!(s, "## {}: {}\n", set.name, set.title);
        let _ = writeln!(s, "`rpbench run {}`\n", set.args.join(" "));
        if set.handoff {
            // A memory cell: the figure, then its ratios to C rpmalloc and to jemalloc.
            let memory = |r: &Row, bytes: u64, k: fn(&Ratios) -> f64| {
                let mut q = Vec::new();
                if let Some(c) = r.to_c.filter(|_| r.peer != BASELINE) {
                    q.push(format!("{:.2}× C", k(&c)));
                }
                if let Some(j) = r.to_jemalloc.filter(|_| r.peer != MEMORY_REFERENCE) {
                    q.push(format!("{:.2}× je", k(&j)));
                }
                if q.is_empty() {
                    format!("{:.1}", mib(bytes))
                } else {
                    format!("{:.1} ({})", mib(bytes), q.join(", "))
                }
            };
            header(&mut s, set, &["time s", "peak RSS MiB"]);
            for peer in peers {
                let _ = write!(s, "| {peer} |");
                cells(&mut s, set, peer, &|r| {
                    // Time ratio: the inverse of the paired ops/s ratio.
                    let q = match r.to_c {
                        Some(q) if r.peer != BASELINE => format!(" ({:.2}×)", 1.0 / q.ops_wall),
                        _ => String::new(),
                    };
                    format!("{:.2}{q}", r.wall_s)
                });
                cells(&mut s, set, peer, &|r| memory(r, r.peak, |q| q.peak));
                let _ = writeln!(s);
            }
            let _ = writeln!(s);
            header(&mut s, set, &["RSS after frees MiB", "RSS after idle MiB"]);
            for peer in peers {
                let _ = write!(s, "| {peer} |");
                cells(&mut s, set, peer, &|r| memory(r, r.after, |q| q.after));
                cells(&mut s, set, peer, &|r| memory(r, r.idle, |q| q.idle));
                let _ = writeln!(s);
            }
            let _ = writeln!(s);
            header(&mut s, set, &["peak RSS per byte in flight"]);
            for peer in peers {
                let _ = write!(s, "| {peer} |");
                cells(&mut s, set, peer, &|r| {
                    let mut q = Vec::new();
                    if let Some(c) = r.to_c.filter(|_| r.peer != BASELINE) {
                        q.push(format!("{:.2}× C", c.peak_per_live));
                    }
                    if let Some(j) = r.to_jemalloc.filter(|_| r.peer != MEMORY_REFERENCE) {
                        q.push(format!("{:.2}× je", j.peak_per_live));
                    }
                    if q.is_empty() {
                        format!("{:.2}", r.peak_per_live)
                    } else {
                        format!("{:.2} ({})", r.peak_per_live, q.join(", "))
                    }
                });
                let _ = writeln!(s);
            }
            let _ = writeln!(
                s,
                "\n![{0} time](benchmarks-{0}-ops.svg) ![{0} peak RSS](benchmarks-{0}-rss.svg) ![{0} RSS after idle](benchmarks-{0}-idle.svg)\n",
                set.name
            );
            continue;
        }
        header(&mut s, set, &["ops/CPU-s", "ops/s"]);
        for peer in peers {
            let _ = write!(s, "| {peer} |");
            cells(&mut s, set, peer, &|r| {
                format!(
                    "{:.2} M{}",
                    r.ops_cpu / 1e6,
                    ratio(r, BASELINE, |q| q.ops_cpu)
                )
            });
            cells(&mut s, set, peer, &|r| {
                format!(
                    "{:.2} M{}",
                    r.ops_wall / 1e6,
                    ratio(r, BASELINE, |q| q.ops_wall)
                )
            });
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
        header(&mut s, set, &["peak RSS MiB", "RSS after"]);
        for peer in peers {
            let _ = write!(s, "| {peer} |");
            cells(&mut s, set, peer, &|r| {
                format!("{:.1}{}", mib(r.peak), ratio(r, BASELINE, |q| q.peak))
            });
            cells(&mut s, set, peer, &|r| format!("{:.1}", mib(r.after)));
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\n![{0} ops](benchmarks-{0}-ops.svg) ![{0} peak RSS](benchmarks-{0}-rss.svg)\n",
            set.name
        );
    }
    s
}
