#!/usr/bin/env python3
"""Tabulate the iai-callgrind instruction counts of every peer, with ratios to C rpmalloc.

Reads the callgrind profiles that `cargo bench -p rpmalloc-bench` leaves under
`<target>/iai/rpmalloc-bench/iai_<peer>/<group>/<case>/callgrind.*.out` (all threads of a
case are summed), or, with `--stdout FILE`, the runner's terminal output saved to a file.
Prints the table and writes it to `docs/benchmarks-iai.md`.

    python3 benches/compare.py                      # $CARGO_TARGET_DIR or ./target
    python3 benches/compare.py --iai-dir /tmp/target-bench/iai
    cargo bench -p rpmalloc-bench 2>&1 | tee iai.txt; python3 benches/compare.py --stdout iai.txt

Standard library only.
"""

import argparse
import datetime
import os
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = "rpmalloc-bench"
BASELINE = "crpmalloc"
PEERS = ["ours", "ours-nocache", "crpmalloc", "mimalloc", "jemalloc", "system"]
PEER_LABEL = {
    "ours": "ours",
    "ours-nocache": "ours (no caches)",
    "crpmalloc": "C rpmalloc 1.4",
    "mimalloc": "mimalloc",
    "jemalloc": "jemalloc",
    "system": "glibc",
}

# case key (function.id) -> (label, divisor, unit)
CASES = [
    ("alloc_free.small_16", "alloc+free 16 B", 1000, "pair"),
    ("alloc_free.small_64", "alloc+free 64 B", 1000, "pair"),
    ("alloc_free.small_256", "alloc+free 256 B", 1000, "pair"),
    ("alloc_free.small_1024", "alloc+free 1 KiB", 1000, "pair"),
    ("alloc_free.medium_4k", "alloc+free 4 KiB", 1000, "pair"),
    ("alloc_free.medium_16k", "alloc+free 16 KiB", 1000, "pair"),
    ("alloc_free.large_128k", "alloc+free 128 KiB", 1000, "pair"),
    ("alloc_free.large_1m", "alloc+free 1 MiB", 1000, "pair"),
    ("alloc_free.huge_8m", "alloc+free 8 MiB", 1000, "pair"),
    ("realloc_grow.double_1m", "Vec grown to 1 MiB, doubling (9 reallocs)", 4, "vector"),
    ("realloc_grow.linear_1m", "Vec grown to 1 MiB, +4 KiB steps (256 reallocs)", 4, "vector"),
    ("alloc_zeroed_64k", "alloc_zeroed 64 KiB + free", 1000, "pair"),
    ("cross_thread_free", "64 B freed by another thread, then reused", 1000, "block"),
]


def peer_of(bench: str):
    """`iai_ours_nocache` -> `ours-nocache`."""
    if not bench.startswith("iai_"):
        return None
    return bench[len("iai_"):].replace("_", "-")


def ir_of_profile(path: Path) -> int:
    """The Ir total of one callgrind output file (`summary:` or `totals:` line)."""
    events = None
    total = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:") or line.startswith("totals:"):
                values = [int(v) for v in line.split()[1:]]
                idx = events.index("Ir") if events and "Ir" in events else 0
                total = values[idx] if idx < len(values) else 0
    if total is None:
        raise ValueError(f"no summary/totals line in {path}")
    return total


def from_profiles(iai_dir: Path):
    """{peer: {case: Ir}} from the callgrind files of the latest run."""
    root = iai_dir / PACKAGE if (iai_dir / PACKAGE).is_dir() else iai_dir
    results = {}
    for bench_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        peer = peer_of(bench_dir.name)
        if peer is None:
            continue
        for case_dir in sorted(p for p in bench_dir.glob("*/*") if p.is_dir()):
            outs = [p for p in case_dir.glob("callgrind.*.out")]
            if not outs:
                continue
            # `callgrind.<case>.out` or, one per thread, `callgrind.<case>.t<N>.p<M>.out`.
            results.setdefault(peer, {})[case_dir.name] = sum(ir_of_profile(p) for p in outs)
    return results


HEADER_RE = re.compile(r"^(iai_[A-Za-z0-9_]+)::([A-Za-z0-9_]+)::([A-Za-z0-9_]+)(?:\s+([A-Za-z0-9_]+):.*)?\s*$")
IR_RE = re.compile(r"^\s*Instructions:\s*([0-9]+)")


def from_stdout(path: Path):
    """{peer: {case: Ir}} from the runner's terminal output (the `## Total` or only block)."""
    results = {}
    current = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip("\n"))
            m = HEADER_RE.match(line)
            if m:
                bench, _group, func, bench_id = m.groups()
                peer = peer_of(bench)
                current = (peer, f"{func}.{bench_id}" if bench_id else func) if peer else None
                continue
            m = IR_RE.match(line)
            if m and current:
                # With intermediate (per-thread) output the last block is the total.
                results.setdefault(current[0], {})[current[1]] = int(m.group(1))
    return results


def fmt_count(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}"


def tool_versions():
    out = []
    for cmd in (["rustc", "-V"], ["valgrind", "--version"]):
        try:
            out.append(subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return [v for v in out if v]


def build_tables(results):
    peers = [p for p in PEERS if p in results] + sorted(p for p in results if p not in PEERS)
    known = {c[0] for c in CASES}
    extra = sorted({c for r in results.values() for c in r} - known)
    cases = [c for c in CASES if any(c[0] in results[p] for p in peers)]
    cases += [(c, c, 1, "run") for c in extra]

    rows = []
    for key, label, div, unit in cases:
        base = results.get(BASELINE, {}).get(key)
        cells = []
        for p in peers:
            v = results[p].get(key)
            if v is None:
                cells.append(None)
                continue
            ratio = (v / base) if base else None
            cells.append((v / div, ratio))
        rows.append((label, unit, cells))
    return peers, rows


def render_text(peers, rows):
    w0 = max(len(r[0]) + len(r[1]) + 3 for r in rows)
    head = f"{'case (instructions per ...)':<{w0}}" + "".join(f"{PEER_LABEL.get(p, p):>24}" for p in peers)
    lines = [head, "-" * len(head)]
    for label, unit, cells in rows:
        s = f"{label + ' /' + unit:<{w0}}"
        for c in cells:
            if c is None:
                s += f"{'-':>24}"
            else:
                v, r = c
                s += f"{fmt_count(v) + (f' ({r:.2f}x)' if r is not None else ''):>24}"
        lines.append(s)
    return "\n".join(lines)


def render_markdown(peers, rows, source):
    now = datetime.datetime.now().strftime("%Y-%m-%d")
    out = [
        "# Instruction counts (iai-callgrind)",
        "",
        f"Generated by `benches/compare.py` on {now} from {source}.",
        "",
        "Instructions counted by callgrind per operation, the allocator under test being the",
        "`#[global_allocator]` of its own bench binary (`benches/iai_<peer>.rs`, cases in",
        "`benches/iai_common.rs`). Each figure is the case's total divided by its repetitions",
        "(loop overhead included, a few instructions per iteration). In parentheses: the ratio",
        "to C rpmalloc 1.4 (`rpmalloc-sys` 0.2.3, preload); below 1 is fewer instructions.",
        "Callgrind counts user-space instructions only: system calls (`mmap`, `munmap`,",
        "`madvise`) and page faults cost nothing here, so the large/huge rows favour",
        "allocators that go to the kernel on every call. glibc's `memcpy`/`memset` use",
        "`rep movsb`/`rep stosb` for large sizes, which callgrind counts as one instruction",
        "per byte, so rows that copy or zero memory are dominated by bytes moved. See",
        "`docs/benchmarks-throughput.md` for time and memory.",
        "",
        "| case | per | " + " | ".join(PEER_LABEL.get(p, p) for p in peers) + " |",
        "|---|---|" + "---:|" * len(peers),
    ]
    for label, unit, cells in rows:
        parts = []
        for p, c in zip(peers, cells):
            if c is None:
                parts.append("–")
            else:
                v, r = c
                txt = fmt_count(v)
                if r is not None and p != BASELINE:
                    txt += f" ({r:.2f}×)"
                parts.append(txt)
        out.append(f"| {label} | {unit} | " + " | ".join(parts) + " |")
    versions = tool_versions()
    if versions:
        out += ["", "Tools: " + "; ".join(f"`{v}`" for v in versions + ["iai-callgrind 0.16.1"]) + "."]
    out += [
        "",
        "Cases: `alloc_free` is 1000 × `Box::<[u8; N]>::new_uninit()` + drop; `realloc_grow`",
        "grows a `Vec<MaybeUninit<u8>>` to 1 MiB four times (`reserve` = amortised doubling,",
        "`reserve_exact` = one realloc per 4 KiB step); `alloc_zeroed_64k` is 1000 ×",
        "`vec![0u8; 65536]`; `cross_thread_free` counts 1000 × 64 B allocations on the main",
        "thread, their frees on a second thread, and 1000 alloc + free pairs back on the main",
        "thread (where remotely freed blocks are taken back), thread start/join excluded.",
        "",
    ]
    return "\n".join(out)


def main():
    here = Path(__file__).resolve().parent
    repo = here.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iai-dir", type=Path, help="the iai output directory (default: $CARGO_TARGET_DIR/iai or target/iai)")
    ap.add_argument("--stdout", type=Path, help="parse saved runner output instead of the profiles")
    ap.add_argument("--out", type=Path, default=repo / "docs" / "benchmarks-iai.md", help="markdown file to write (under docs/, named benchmarks*)")
    ap.add_argument("--no-write", action="store_true", help="only print")
    args = ap.parse_args()

    if args.stdout:
        results = from_stdout(args.stdout)
        source = f"the runner output `{args.stdout.name}`"
    else:
        iai_dir = args.iai_dir
        if iai_dir is None:
            target = os.environ.get("CARGO_TARGET_DIR")
            iai_dir = (Path(target) if target else repo / "target") / "iai"
        if not iai_dir.is_dir():
            sys.exit(f"no iai output at {iai_dir}: run `cargo bench -p {PACKAGE}` first")
        results = from_profiles(iai_dir)
        source = "the callgrind profiles of the last `cargo bench` run"
    if not results:
        sys.exit("no iai results found")

    peers, rows = build_tables(results)
    print(render_text(peers, rows))

    if not args.no_write:
        out = args.out.resolve()
        if out.parent.name != "docs" or not out.name.startswith("benchmarks"):
            sys.exit(f"refusing to write {out}: only docs/benchmarks* files are written")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_markdown(peers, rows, source), encoding="utf-8")
        print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
