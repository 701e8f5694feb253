//! The named parameter sets `rpbench all` runs: the classic sets (std1, std2, larson,
//! realloc) and the hand-off sets, with their thread counts.

/// A named parameter set of the driver.
pub(crate) struct Set {
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    pub(crate) args: Vec<String>,
    /// Thread counts it runs at unless `--threads` says otherwise (producers, for the
    /// hand-off sets).
    pub(crate) threads: &'static [usize],
    /// A hand-off set: reported by time and three RSS figures.
    pub(crate) handoff: bool,
}

/// The classic sets' thread counts.
const CLASSIC_THREADS: &[usize] = &[1, 2, 8];
/// The hand-off sets' producer counts (one consumer each): 1:1 and 4:1.
const HANDOFF_PRODUCERS: &[usize] = &[1, 4];

pub(crate) fn standard_sets(scale: f64) -> Vec<Set> {
    let loops = |n: f64| ((n * scale).round() as usize).max(1).to_string();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let classic = |name, title, args: Vec<String>| Set {
        name,
        title,
        args,
        threads: CLASSIC_THREADS,
        handoff: false,
    };
    let handoff = |name, title, mix: &str, blocks: f64, batch: &str| Set {
        name,
        title,
        args: [
            v(&[
                "--mode", "handoff", "--mix", mix, "--batch", batch, "--queue", "4",
            ]),
            vec!["--blocks".into(), loops(blocks)],
        ]
        .concat(),
        threads: HANDOFF_PRODUCERS,
        handoff: true,
    };
    vec![
        classic(
            "std1",
            "random 16–1000 B, even, cross-thread every 2nd loop (rpmalloc-benchmark `<t> 0 0 2 20000 50000 5000 16 1000`)",
            [v(&["--mode", "random", "--dist", "even", "--min", "16", "--max", "1000", "--cross-rate", "2", "--allocs", "50000", "--op-count", "5000", "--loops"]), vec![loops(150.0)]].concat(),
        ),
        classic(
            "std2",
            "random 16–8000 B, linear falloff, cross-thread every 2nd loop (rpmalloc-benchmark `<t> 0 1 2 20000 50000 5000 16 8000`)",
            [v(&["--mode", "random", "--dist", "linear", "--min", "16", "--max", "8000", "--cross-rate", "2", "--allocs", "50000", "--op-count", "5000", "--loops"]), vec![loops(80.0)]].concat(),
        ),
        classic(
            "larson",
            "4 rounds of threads, each taking over the previous round's 20000 blocks (16–1000 B, even)",
            [v(&["--mode", "larson", "--dist", "even", "--min", "16", "--max", "1000", "--allocs", "20000", "--op-count", "5000", "--rounds", "4", "--loops"]), vec![loops(20.0)]].concat(),
        ),
        classic(
            "realloc",
            "2000 vectors per thread growing by 16–4000 B steps up to 32000 B, then freed",
            [v(&["--mode", "realloc", "--dist", "even", "--min", "16", "--max", "4000", "--allocs", "2000", "--op-count", "2000", "--cross-rate", "0", "--loops"]), vec![loops(20.0)]].concat(),
        ),
        handoff(
            "handoff-small",
            "producers → one consumer, 1 B–1 KiB blocks in batches of 200",
            "small",
            10_000_000.0,
            "200",
        ),
        handoff(
            "handoff-medium",
            "producers → one consumer, 1–64 KiB blocks in batches of 200",
            "medium",
            1_000_000.0,
            "200",
        ),
        handoff(
            "handoff-large",
            "producers → one consumer, 64 KiB–3 MiB blocks in batches of 16",
            "large",
            20_000.0,
            "16",
        ),
        handoff(
            "handoff-mixed",
            "producers → one consumer, 85 % 1 B–1 KiB, 13 % 1–64 KiB, 2 % 64 KiB–3 MiB, batches of 200",
            "mixed",
            400_000.0,
            "200",
        ),
    ]
}

/// Set names `all --sets` accepts besides single sets.
pub(crate) fn expand_set_group(name: &str) -> Vec<String> {
    let group: &[&str] = match name {
        "classic" => &["std1", "std2", "larson", "realloc"],
        "handoff" => &[
            "handoff-small",
            "handoff-medium",
            "handoff-large",
            "handoff-mixed",
        ],
        other => return vec![other.to_string()],
    };
    group.iter().map(|s| s.to_string()).collect()
}
