//! Throughput and memory benchmark in the manner of rpmalloc-benchmark, rewritten in Rust.
//!
//! ```text
//! rpbench run [options]        one configuration, one allocator, in this process
//! rpbench all [options]        every peer × thread count × parameter set, each in its own
//!                              process; writes docs/benchmarks-throughput.md and SVG charts
//! rpbench help
//! ```
//!
//! Workload (`--mode random`, the default): each thread owns `allocs` slots. Every loop it
//! frees a varying number (about 0.25–0.8 × `op_count`) of blocks at scattered slots, then
//! allocates about 0.3–1.0 × `op_count` new blocks of random size in `[min, max]` into
//! scattered slots (freeing the previous occupant), writing one byte per page so the memory
//! is really committed. Every `cross_rate` loops it also allocates a quarter as many extra
//! blocks and hands them to another thread, which frees them. Each thread runs the sequence
//! `passes` times, then all threads exit and new ones run it again (`rounds` times: cold
//! and warm threads).
//!
//! `--mode larson`: each round's threads take over the whole working set of the previous
//! round's threads (blocks allocated by threads that have exited) and replace `op_count`
//! random blocks per loop. `--mode realloc`: slots hold vectors that grow by `realloc` by a
//! random step in `[min, max]` until they pass `8 × max`, then are freed.
//!
//! The benchmark's blocks go through the chosen allocator explicitly (`&dyn GlobalAlloc`);
//! the harness itself (slot arrays, queues) uses the system allocator. Reported: memory
//! operations per CPU second (the sum of the worker threads' CPU time, as rpmalloc-benchmark
//! does), operations per wall-clock second, the process's peak RSS (`VmHWM`) and its RSS
//! after every block was freed. Peak RSS is process-wide, hence `all` runs each
//! configuration in a fresh process.
//!
//! This file is the entry: the commands' options and their dispatch. The rest is in
//! `config` (`run`'s options), `workloads` (the allocation patterns, hand-off in
//! `workloads::handoff`), `measure` (CPU time, RSS), `runner` (one run in this process;
//! `all`'s child processes), `sets` (`all`'s parameter sets), `report` (rows, ratios,
//! markdown) and `plots` (SVG charts).

use std::process::ExitCode;
use std::time::Instant;

use rpmalloc_bench::{by_name, PEERS};

mod config;
mod measure;
mod plots;
mod report;
mod runner;
mod sets;
mod workloads;

use config::{apply_run_flag, dist_name, mode_name, num, validate, Mode, Params, HANDOFF_IDLE_MS};
use measure::{mib, print_ours_stats};
use sets::{expand_set_group, standard_sets, Set};
use workloads::handoff::mix_name;

/// `rpbench run`: one configuration under one allocator in this process; prints a summary
/// on stderr and the RESULT line on stdout.
fn cmd_run(args: &[String]) -> Result<(), String> {
    let mut p = Params::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--quiet" || flag == "-q" {
            p.quiet = true;
            continue;
        }
        if flag == "--phase-rss" {
            p.phase_rss = true;
            continue;
        }
        if flag == "--span-pages" {
            p.span_pages = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if !apply_run_flag(&mut p, flag, v)? {
            return Err(format!("unknown option {flag}"));
        }
    }
    validate(&p)?;
    if !p.quiet && p.mode == Mode::Handoff {
        eprintln!(
            "rpbench: {} handoff producers={} blocks={} mix={} batch={} queue={} idle_ms={}",
            p.alloc,
            p.threads,
            p.blocks,
            mix_name(p.mix),
            p.batch,
            p.queue,
            p.idle_ms.unwrap_or(HANDOFF_IDLE_MS)
        );
    } else if !p.quiet {
        eprintln!(
            "rpbench: {} {} threads={} loops={} allocs={} op_count={} size=[{},{}] {} cross_rate={} passes={} rounds={}",
            p.alloc,
            mode_name(p.mode),
            p.threads,
            p.loops,
            p.allocs,
            p.op_count,
            p.min,
            p.max,
            dist_name(p.dist),
            p.cross_rate,
            p.passes,
            p.rounds
        );
    }
    let r = runner::run(p.clone());
    eprintln!(
        "rpbench: {} {} t={}: {:.2} M ops/CPU-s, {:.2} M ops/s ({:.2} s), peak RSS {:.1} MiB, after {:.1} MiB{}",
        p.alloc,
        mode_name(p.mode),
        p.threads,
        r.ops as f64 / r.cpu_s / 1e6,
        r.ops as f64 / r.wall_s / 1e6,
        r.wall_s,
        mib(r.peak_rss),
        mib(r.rss_after),
        if p.mode == Mode::Handoff {
            format!(
                ", after idle {:.1} MiB; at most {:.1} MiB in flight",
                mib(r.rss_idle),
                mib(r.in_flight_peak)
            )
        } else if r.rss_idle > 0 {
            format!(", after idle {:.1} MiB", mib(r.rss_idle))
        } else {
            String::new()
        }
    );
    if p.alloc == "ours" {
        print_ours_stats("at the end");
    }
    runner::print_result(&p, &r);
    Ok(())
}

/// `rpbench all`: every selected set × thread count × peer, each in its own process; prints
/// the report and writes its pages and charts to the docs directory.
fn cmd_all(args: &[String]) -> Result<(), String> {
    let mut threads_override: Option<Vec<usize>> = None;
    let mut peers: Vec<String> = PEERS.iter().map(|s| s.to_string()).collect();
    let mut scale = 1.0f64;
    let mut set_names: Vec<String> = expand_set_group("classic")
        .into_iter()
        .chain(expand_set_group("handoff"))
        .collect();
    let mut docs = default_docs_dir();
    let mut repeat = 5usize;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--threads" => {
                threads_override = Some(
                    val()?
                        .split(',')
                        .map(|s| num("--threads", s))
                        .collect::<Result<_, _>>()?,
                )
            }
            "--peers" => peers = val()?.split(',').map(str::to_string).collect(),
            "--sets" => set_names = val()?.split(',').flat_map(expand_set_group).collect(),
            "--scale" => scale = val()?.parse().map_err(|_| "--scale: not a number")?,
            "--repeat" => repeat = num(flag, &val()?)?.max(1),
            "--docs" => docs = Some(std::path::PathBuf::from(val()?)),
            "--no-docs" => docs = None,
            // Anything else is passed on to every `run` (e.g. --allocs 20000).
            _ => {
                extra.push(flag.clone());
                extra.push(val()?);
            }
        }
    }
    for peer in &peers {
        if by_name(peer).is_none() {
            return Err(format!("unknown peer {peer:?}"));
        }
    }
    let mut all_sets = standard_sets(scale);
    if let Some(t) = &threads_override {
        let t: &'static [usize] = Vec::leak(t.clone());
        for set in &mut all_sets {
            set.threads = t;
        }
    }
    let sets: Vec<&Set> = set_names
        .iter()
        .map(|n| {
            all_sets
                .iter()
                .find(|s| s.name == n)
                .ok_or(format!("unknown set {n:?}"))
        })
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    let rows = runner::run_all(&sets, &peers, repeat, &extra, started)?;
    let elapsed = started.elapsed().as_secs_f64();
    // The classic sets and the hand-off sets each have their own page.
    let mut pages = Vec::new();
    for (handoff, name) in [
        (false, "benchmarks-throughput.md"),
        (true, "benchmarks-handoff.md"),
    ] {
        let part: Vec<&Set> = sets
            .iter()
            .copied()
            .filter(|s| s.handoff == handoff)
            .collect();
        if !part.is_empty() {
            let md = report::report(&rows, &part, &peers, scale, repeat, elapsed, &extra);
            println!("{md}");
            pages.push((name, md));
        }
    }
    if let Some(dir) = docs {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for (name, md) in &pages {
            let path = dir.join(name);
            std::fs::write(&path, md).map_err(|e| e.to_string())?;
            eprintln!("wrote {}", path.display());
        }
        for set in &sets {
            for (kind, svg) in plots::charts(set, &rows, &peers) {
                let path = dir.join(format!("benchmarks-{}-{kind}.svg", set.name));
                std::fs::write(&path, svg).map_err(|e| e.to_string())?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// `<repo>/docs` when run from the repository (the binary's usual place is
/// `<target>/release/rpbench`, so look at the current directory and its parent).
fn default_docs_dir() -> Option<std::path::PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    for base in [cwd.clone(), cwd.parent()?.to_path_buf()] {
        if base.join("benches").join("Cargo.toml").is_file() {
            return Some(base.join("docs"));
        }
    }
    Some(cwd.join("docs"))
}

// ---- main ----------------------------------------------------------------------------------

const USAGE: &str = "\
usage:
  rpbench run [--alloc NAME] [--mode random|larson|realloc|handoff] [--threads N]
              [--loops N] [--allocs N] [--op-count N] [--min BYTES] [--max BYTES]
              [--dist even|linear|exp] [--cross-rate N] [--passes N] [--rounds N]
              [--seed N] [--quiet] [--phase-rss] [--span-pages] [--idle-ms N]
              handoff only (--threads = producers): [--mix small|medium|large|mixed]
              [--blocks N] [--batch N] [--queue N]
              (--idle-ms: light activity after the work before the last RSS reading;
              2000 for handoff unless given, none for the other modes)
  rpbench all [--threads 1,2,8] [--peers a,b,...] [--sets classic,handoff,std1,...]
              [--scale F] [--repeat N] [--docs DIR | --no-docs] [run options...]
allocators: ours, ours-nocache, crpmalloc, mimalloc, jemalloc, system (built with
  `--features stats`, `run --alloc ours` also prints where ours' memory is)
sets: std1 std2 larson realloc (group `classic`, at 1, 2, 8 threads), handoff-small
handoff-medium handoff-large handoff-mixed (group `handoff`, at 1 and 4 producers)
`run` prints a RESULT line on stdout (with `--phase-rss`, also each pass's and round's own
peak RSS on stderr; with `--span-pages`, resident pages per 64 KiB span at each pass's end);
`all` runs each configuration in its own process, prints a report and writes
DIR/benchmarks-throughput.md (classic sets), DIR/benchmarks-handoff.md (hand-off sets) and
DIR/benchmarks-<set>-{ops,rss,idle}.svg (DIR defaults to <repo>/docs).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("all") => cmd_all(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpbench: {e}");
            ExitCode::FAILURE
        }
    }
}
