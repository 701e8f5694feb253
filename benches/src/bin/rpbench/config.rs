//! `rpbench run`'s configuration: [`Params`] with its defaults, the parsing of its flags and
//! their validation.

use rpmalloc_bench::{by_name, PEERS};

use crate::workloads::handoff::{parse_mix, Mix};

/// Light activity after a hand-off, in milliseconds, before the "after idle" RSS.
pub(crate) const HANDOFF_IDLE_MS: usize = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Random,
    Larson,
    Realloc,
    Handoff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dist {
    Even,
    Linear,
    Exp,
}

#[derive(Clone, Debug)]
pub(crate) struct Params {
    pub(crate) alloc: String,
    pub(crate) mode: Mode,
    pub(crate) threads: usize,
    pub(crate) loops: usize,
    pub(crate) allocs: usize,
    pub(crate) op_count: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) dist: Dist,
    pub(crate) cross_rate: usize,
    pub(crate) passes: usize,
    pub(crate) rounds: usize,
    pub(crate) seed: u64,
    pub(crate) quiet: bool,
    /// Report the peak RSS of each pass and round (`--phase-rss`).
    pub(crate) phase_rss: bool,
    /// At each pass's end, count resident pages per span (`--span-pages`).
    pub(crate) span_pages: bool,
    /// `--mode handoff`: the sizes, the total blocks, blocks per batch, batches the channel
    /// holds.
    pub(crate) mix: Mix,
    pub(crate) blocks: usize,
    pub(crate) batch: usize,
    pub(crate) queue: usize,
    /// `--idle-ms`: light activity after the work, before the last RSS reading (hand-off:
    /// [`HANDOFF_IDLE_MS`] unless given; other modes: none unless given).
    pub(crate) idle_ms: Option<usize>,
}

impl Default for Params {
    fn default() -> Self {
        // rpmalloc-benchmark's first standard run, with 1/40 of its loops.
        Params {
            alloc: "ours".into(),
            mode: Mode::Random,
            threads: 1,
            loops: 500,
            allocs: 50_000,
            op_count: 5_000,
            min: 16,
            max: 1000,
            dist: Dist::Even,
            cross_rate: 2,
            passes: 2,
            rounds: 2,
            seed: 0x5eed,
            quiet: false,
            phase_rss: false,
            span_pages: false,
            mix: Mix::Mixed,
            blocks: 160_000,
            batch: 200,
            queue: 4,
            idle_ms: None,
        }
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "random" => Ok(Mode::Random),
        "larson" => Ok(Mode::Larson),
        "realloc" => Ok(Mode::Realloc),
        "handoff" => Ok(Mode::Handoff),
        _ => Err(format!(
            "unknown mode {s:?} (random, larson, realloc, handoff)"
        )),
    }
}

fn parse_dist(s: &str) -> Result<Dist, String> {
    match s {
        "even" | "0" => Ok(Dist::Even),
        "linear" | "1" => Ok(Dist::Linear),
        "exp" | "2" => Ok(Dist::Exp),
        _ => Err(format!("unknown distribution {s:?} (even, linear, exp)")),
    }
}

pub(crate) fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Random => "random",
        Mode::Larson => "larson",
        Mode::Realloc => "realloc",
        Mode::Handoff => "handoff",
    }
}

pub(crate) fn dist_name(d: Dist) -> &'static str {
    match d {
        Dist::Even => "even",
        Dist::Linear => "linear",
        Dist::Exp => "exp",
    }
}

pub(crate) fn num(flag: &str, v: &str) -> Result<usize, String> {
    let v = v.replace('_', "");
    let (digits, mul) = match v.chars().last() {
        Some('k' | 'K') => (&v[..v.len() - 1], 1000),
        Some('m' | 'M') => (&v[..v.len() - 1], 1_000_000),
        _ => (&v[..], 1),
    };
    digits
        .parse::<usize>()
        .map(|n| n * mul)
        .map_err(|_| format!("{flag}: not a number: {v:?}"))
}

/// Applies one `--flag value` of `run` to `p`. Returns false for flags it does not know.
pub(crate) fn apply_run_flag(p: &mut Params, flag: &str, v: &str) -> Result<bool, String> {
    match flag {
        "--alloc" | "--allocator" => {
            if by_name(v).is_none() {
                return Err(format!(
                    "unknown allocator {v:?}; one of {}",
                    PEERS.join(", ")
                ));
            }
            p.alloc = v.to_string();
        }
        "--mode" => p.mode = parse_mode(v)?,
        "--threads" | "-t" => p.threads = num(flag, v)?,
        "--loops" => p.loops = num(flag, v)?,
        "--allocs" => p.allocs = num(flag, v)?,
        "--op-count" | "--ops" => p.op_count = num(flag, v)?,
        "--min" => p.min = num(flag, v)?,
        "--max" => p.max = num(flag, v)?,
        "--dist" | "--distribution" => p.dist = parse_dist(v)?,
        "--cross-rate" => p.cross_rate = num(flag, v)?,
        "--passes" => p.passes = num(flag, v)?,
        "--rounds" => p.rounds = num(flag, v)?,
        "--seed" => p.seed = num(flag, v)? as u64,
        "--mix" => p.mix = parse_mix(v)?,
        "--blocks" => p.blocks = num(flag, v)?,
        "--batch" => p.batch = num(flag, v)?,
        "--queue" => p.queue = num(flag, v)?,
        "--idle-ms" => p.idle_ms = Some(num(flag, v)?),
        _ => return Ok(false),
    }
    Ok(true)
}

pub(crate) fn validate(p: &Params) -> Result<(), String> {
    if p.threads == 0 || p.threads > 256 {
        return Err("--threads must be 1..=256".into());
    }
    if p.allocs == 0 || p.op_count == 0 || p.loops == 0 || p.passes == 0 || p.rounds == 0 {
        return Err("--allocs, --op-count, --loops, --passes, --rounds must be positive".into());
    }
    if p.min == 0 || p.max < p.min {
        return Err("need 1 <= --min <= --max".into());
    }
    if p.max > u32::MAX as usize / 16 {
        return Err("--max too large".into());
    }
    if p.mode == Mode::Handoff && (p.blocks < p.threads || p.batch == 0) {
        return Err("--mode handoff needs --blocks >= --threads and --batch >= 1".into());
    }
    Ok(())
}
