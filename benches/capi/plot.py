#!/usr/bin/env python3
"""Tables and charts of benches/capi/run: medians, ratios to C rpmalloc, SVG bar charts.

    python3 benches/capi/plot.py --raw RAW.tsv --meta META.tsv [--md OUT.md] [--svg-dir DIR]

RAW.tsv has one line per run (workload, allocator, run, status, wall_s, maxrss_kb, cpu_s
(user + system), checksum); META.tsv the machine, the allocators' versions and the workloads' command
lines (both written by benches/capi/run). Prints the markdown report, writes it to --md,
and writes DIR/benchmarks-capi-time.svg and DIR/benchmarks-capi-rss.svg. A run counts if it
exited 0 and printed glibc's checksum for that workload; the exit status is 1 if any run
did not. Standard library only.
"""

import argparse
import math
import os
import statistics
import sys
from collections import OrderedDict

BASELINE = "crpmalloc"
REFERENCE = "glibc"  # the checksum every allocator must reproduce
LABELS = {
    "ours": "ours (Rust port)",
    "crpmalloc": "C rpmalloc",
    "jemalloc": "jemalloc",
    "tcmalloc": "tcmalloc",
    "mimalloc": "mimalloc",
    "glibc": "glibc",
}
# The colours of benches/src/bin/rpbench/plots.rs's peers, so the charts agree.
COLORS = {
    "ours": "#1f77b4",
    "crpmalloc": "#d62728",
    "mimalloc": "#2ca02c",
    "jemalloc": "#9467bd",
    "glibc": "#7f7f7f",
    "tcmalloc": "#ff7f0e",
}
SVG_NAMES = {"time": "benchmarks-capi-time.svg", "rss": "benchmarks-capi-rss.svg"}


def read_meta(path):
    meta = {"allocs": OrderedDict(), "missing": [], "workloads": OrderedDict()}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            key = parts[0]
            if key == "alloc":
                meta["allocs"][parts[1]] = {"version": parts[2], "lib": parts[3] if len(parts) > 3 else ""}
            elif key == "missing":
                meta["missing"].append(parts[1])
            elif key == "workload":
                meta["workloads"][parts[1]] = parts[2]
            elif len(parts) >= 2:
                meta[key] = parts[1]
    return meta


def read_raw(path):
    runs = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if not line.strip():
                continue
            runs.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    return runs


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def analyse(runs, workloads, allocs, logs):
    """Per workload: reference checksum, per allocator the good runs and the bad ones."""
    out = OrderedDict()
    problems = []
    for w in workloads:
        wruns = [r for r in runs if r["workload"] == w]
        ref_sums = [r["checksum"] for r in wruns
                    if r["allocator"] == REFERENCE and r["status"] == "ok" and r["checksum"] != "-"]
        ref = statistics.mode(ref_sums) if ref_sums else None
        if len(set(ref_sums)) > 1:
            problems.append("%s: glibc printed different checksums across runs: %s"
                            % (w, ", ".join(sorted(set(ref_sums)))))
        per = OrderedDict()
        for a in allocs:
            good, bad = [], []
            for r in wruns:
                if r["allocator"] != a:
                    continue
                status = r["status"]
                if status == "ok" and ref is None:
                    status = "no reference checksum"
                elif status == "ok" and r["checksum"] != ref:
                    status = "checksum %s != glibc %s" % (r["checksum"], ref)
                wall, rss = num(r["wall_s"]), num(r["maxrss_kb"])
                cpu = num(r.get("cpu_s"))  # absent from files of older runs
                if status == "ok" and wall is not None and rss is not None:
                    good.append((wall, rss / 1024.0, cpu))
                else:
                    bad.append((r["run"], status))
                    problems.append("%s under %s, run %s: %s (logs: %s/%s.%s.%s.{out,err,time})"
                                    % (w, a, r["run"], status, logs, w, a, r["run"]))
            total = len(good) + len(bad)
            med = None
            if good:
                cpus = [g[2] for g in good if g[2] is not None]
                med = (statistics.median(g[0] for g in good), statistics.median(g[1] for g in good),
                       statistics.median(cpus) if cpus else None)
            per[a] = {"med": med, "ok": len(good), "total": total, "bad": bad}
        out[w] = {"ref": ref, "per": per}
    return out, problems


def ratio(res, w, a, idx):
    per = res[w]["per"]
    base = per.get(BASELINE, {}).get("med")
    mine = per.get(a, {}).get("med")
    if not base or not mine or base[idx] is None or mine[idx] is None or base[idx] <= 0:
        return None
    return mine[idx] / base[idx]


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def fmt(x, digits=2):
    return "–" if x is None else "%.*f" % (digits, x)


def render_md(meta, res, problems, allocs, svg_files):
    L = []
    L.append("# C ABI: LD_PRELOAD workloads")
    L.append("")
    L.append("Generated by `bash benches/capi/run` (RUNS=%s, SCALE=%s) on %s: %s, %s cores, %s; "
             "gcc %s, Python %s. Wall time, peak RSS and CPU time (user + system) measured "
             "with %s."
             % (meta.get("runs", "?"), meta.get("scale", "?"), meta.get("date", "?"),
                meta.get("cpu", "?"), meta.get("cores", "?"), meta.get("kernel", "?"),
                meta.get("gcc", "?"), meta.get("python", "?"), meta.get("measure", "?")))
    L.append("")
    L.append("Each cell is the median of the runs; ratios are to C rpmalloc (below 1: faster or "
             "smaller). A run counts only if it exited 0 and printed glibc's checksum. Wall time "
             "is what a user waits; with more threads than cores it depends on scheduling as "
             "much as on the allocator, so CPU time (the work done, spinning included) is shown "
             "too.")
    L.append("")
    L.append("| allocator | version | preloaded library |")
    L.append("| --- | --- | --- |")
    for a, info in meta["allocs"].items():
        L.append("| %s | %s | %s |" % (LABELS.get(a, a), info["version"],
                                      "`%s`" % info["lib"] if info["lib"] else "(none)"))
    for m in meta["missing"]:
        L.append("")
        L.append("Left out: %s." % m)
    L.append("")

    workloads = list(res)
    for title, idx in (("Time", 0), ("Peak RSS", 1), ("CPU time", 2)):
        L.append("## %s, ratio to C rpmalloc" % title)
        L.append("")
        L.append("| allocator | " + " | ".join(workloads) + " | geomean |")
        L.append("| --- |" + " ---: |" * (len(workloads) + 1))
        for a in allocs:
            rs = [ratio(res, w, a, idx) for w in workloads]
            L.append("| %s | " % LABELS.get(a, a) + " | ".join(fmt(r) for r in rs)
                     + " | %s |" % fmt(geomean(rs)))
        L.append("")
        key = {0: "time", 1: "rss"}.get(idx)
        if key in svg_files:
            L.append("![%s ratio to C rpmalloc](%s)" % (title.lower(), svg_files[key]))
            L.append("")

    L.append("## Per workload")
    L.append("")
    for w in workloads:
        L.append("### %s" % w)
        L.append("")
        L.append("`%s` — checksum `%s`" % (meta["workloads"].get(w, "?"), res[w]["ref"] or "?"))
        L.append("")
        L.append("| allocator | time (s) | time ratio | peak RSS (MiB) | RSS ratio "
                 "| CPU (s) | CPU ratio | good runs |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for a in allocs:
            p = res[w]["per"][a]
            med = p["med"]
            L.append("| %s | %s | %s | %s | %s | %s | %s | %d/%d |" % (
                LABELS.get(a, a),
                fmt(med[0]) if med else "–", fmt(ratio(res, w, a, 0)),
                fmt(med[1], 1) if med else "–", fmt(ratio(res, w, a, 1)),
                fmt(med[2]) if med else "–", fmt(ratio(res, w, a, 2)),
                p["ok"], p["total"]))
        L.append("")

    if problems:
        L.append("## Problems")
        L.append("")
        for pr in problems:
            L.append("- " + pr)
        L.append("")
    return "\n".join(L)


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def log_axis(values):
    """Axis ends (powers of two) around the values and 1, and the ticks between them."""
    vals = [v for v in values if v is not None and v > 0] + [1.0]
    lo = 2.0 ** math.floor(math.log2(min(vals) / 1.1))
    hi = 2.0 ** math.ceil(math.log2(max(vals) * 1.1))
    lo, hi = min(lo, 0.5), max(hi, 2.0)
    ticks = []
    t = lo
    while t <= hi * 1.0001:
        ticks.append(t)
        t *= 2
    # Between powers of two, 1.5 x when the axis spans few of them.
    if len(ticks) <= 4:
        ticks = sorted(ticks + [t * 1.5 for t in ticks[:-1] if t >= 0.5])
    return lo, hi, ticks


def fmt_tick(t):
    return ("%.3f" % t).rstrip("0").rstrip(".")


def svg_chart(title, groups, allocs, values):
    """Grouped bars on a log2 axis: one group per workload (and the geometric mean), one bar
    per allocator, each drawn from 1 (C rpmalloc, dashed) up or down to its ratio.
    values[(group, alloc)] -> float or None."""
    w, h = 860.0, 420.0
    left, right, top, bottom = 60.0, 170.0, 40.0, 50.0
    pw, ph = w - left - right, h - top - bottom
    lo, hi, ticks = log_axis(values.values())
    span = math.log(hi) - math.log(lo)
    y_of = lambda v: top + ph * (math.log(hi) - math.log(v)) / span
    s = []
    s.append('<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" '
             'font-family="sans-serif" font-size="12">' % (w, h, w, h))
    s.append('<rect width="%g" height="%g" fill="white"/>' % (w, h))
    s.append('<text x="%.1f" y="22" text-anchor="middle" font-size="15">%s</text>'
             % (left + pw / 2, esc(title)))
    for t in ticks:
        y = y_of(t)
        s.append('<line x1="%g" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>'
                 '<text x="%.1f" y="%.1f" text-anchor="end">%s</text>'
                 % (left, y, left + pw, y, left - 6, y + 4, fmt_tick(t)))
    s.append('<line x1="%g" y1="%g" x2="%g" y2="%.1f" stroke="black"/>'
             '<line x1="%g" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>'
             % (left, top, left, top + ph, left, top + ph, left + pw, top + ph))
    y1 = y_of(1.0)
    gw = pw / max(len(groups), 1)
    bw = gw * 0.8 / max(len(allocs), 1)
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for ai, a in enumerate(allocs):
            x = gx + ai * bw
            cx = x + bw * 0.46
            val = values.get((g, a))
            if val is None or val <= 0:
                s.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="%s">×'
                         '<title>%s, %s: no good run</title></text>'
                         % (cx, y1 + 4, COLORS.get(a, "#000"), esc(LABELS.get(a, a)), esc(g)))
                continue
            y = y_of(val)
            s.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                     '<title>%s, %s: %.2f</title></rect>'
                     % (x, min(y, y1), bw * 0.92, max(abs(y1 - y), 1.0), COLORS.get(a, "#000"),
                        esc(LABELS.get(a, a)), esc(g), val))
            ly = y - 3 if val >= 1 else y + 9
            s.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="8">%.2f</text>'
                     % (cx, ly, val))
        s.append('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>'
                 % (gx + gw * 0.4, top + ph + 18, esc(g)))
    s.append('<line x1="%g" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-dasharray="5,4"/>'
             % (left, y1, left + pw, y1))
    for ai, a in enumerate(allocs):
        y = top + 10 + ai * 20
        s.append('<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>'
                 '<text x="%.1f" y="%.1f">%s</text>'
                 % (left + pw + 15, y, COLORS.get(a, "#000"), left + pw + 32, y + 10, esc(LABELS.get(a, a))))
    ny = top + 10 + len(allocs) * 20 + 10
    for i, line in enumerate(("log scale", "dashed: C rpmalloc = 1", "×: no good run")):
        s.append('<text x="%.1f" y="%.1f" font-size="10" fill="#555">%s</text>'
                 % (left + pw + 15, ny + i * 14, esc(line)))
    s.append("</svg>")
    return "\n".join(s) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--md")
    ap.add_argument("--svg-dir")
    args = ap.parse_args()

    meta = read_meta(args.meta)
    runs = read_raw(args.raw)
    allocs = list(meta["allocs"]) or list(OrderedDict.fromkeys(r["allocator"] for r in runs))
    workloads = list(meta["workloads"]) or list(OrderedDict.fromkeys(r["workload"] for r in runs))
    logs = os.path.join(os.path.dirname(os.path.abspath(args.raw)), "logs")
    res, problems = analyse(runs, workloads, allocs, logs)

    svg_files = {}
    if args.svg_dir:
        os.makedirs(args.svg_dir, exist_ok=True)
        groups = workloads + ["geomean"]
        for key, idx, title in (("time", 0, "Wall time, ratio to C rpmalloc (lower is better)"),
                                ("rss", 1, "Peak RSS, ratio to C rpmalloc (lower is better)")):
            values = {}
            for a in allocs:
                rs = [ratio(res, w, a, idx) for w in workloads]
                for w, r in zip(workloads, rs):
                    values[(w, a)] = r
                values[("geomean", a)] = geomean(rs)
            path = os.path.join(args.svg_dir, SVG_NAMES[key])
            with open(path, "w") as f:
                f.write(svg_chart(title, groups, allocs, values))
            svg_files[key] = SVG_NAMES[key]
            print("wrote %s" % path, file=sys.stderr)

    md = render_md(meta, res, problems, allocs, svg_files)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
        print("wrote %s" % args.md, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
