#!/usr/bin/env python3
"""Summarises /tmp/rp-pair-raw.txt (from /tmp/rp-pair.sh): per set x threads, medians over
complete repetitions of paired ratios (same rep, same config)."""
import sys, statistics as st
from collections import defaultdict

path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/rp-pair-raw.txt"
d = defaultdict(lambda: defaultdict(dict))  # (set,t) -> rep -> var -> fields
order = []
for line in open(path):
    if not line.startswith("rep="):
        continue
    kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
    if "ops" not in kv:
        print("MISSING RESULT:", line.strip(), file=sys.stderr)
        continue
    key = (kv["set"], int(kv["t"]))
    if key not in order:
        order.append(key)
    f = {k: float(kv[k]) for k in ("ops", "cpu_s", "wall_s", "peak_rss", "rss_after", "rss_idle")}
    f["opc"] = f["ops"] / f["cpu_s"]
    f["ops_s"] = f["ops"] / f["wall_s"]
    d[key][int(kv["rep"])][kv["var"]] = f

def med(xs):
    return st.median(xs) if xs else float("nan")

def rng(xs):
    return f"{min(xs):.2f}–{max(xs):.2f}"

classic = [k for k in order if not k[0].startswith("handoff")]
hand = [k for k in order if k[0].startswith("handoff")]

def table(keys, handoff):
    cols = ["set", "t", "n", "A/B ops/CPU-s (range)", "A/B ops/s", "A/B peak", "A/B after"]
    if handoff:
        cols.append("A/B idle")
    cols += ["B/B2 ops/CPU-s (range)", "B/C ops/CPU-s", "A/C ops/CPU-s", "B/C peak", "A/C peak", "B/C after", "A/C after"]
    if handoff:
        cols += ["B/C idle", "A/C idle"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for k in keys:
        reps = [r for r in d[k].values() if all(v in r for v in ("before", "after", "c", "before2"))]
        R = lambda a, b, m: [r[a][m] / r[b][m] for r in reps]
        ab = R("after", "before", "opc")
        bb = R("before", "before2", "opc")
        row = [k[0], str(k[1]), str(len(reps)),
               f"{med(ab):.3f} ({rng(ab)})",
               f"{med(R('after','before','ops_s')):.3f}",
               f"{med(R('after','before','peak_rss')):.3f}",
               f"{med(R('after','before','rss_after')):.3f}"]
        if handoff:
            row.append(f"{med(R('after','before','rss_idle')):.3f}")
        row += [f"{med(bb):.3f} ({rng(bb)})",
                f"{med(R('before','c','opc')):.2f}", f"{med(R('after','c','opc')):.2f}",
                f"{med(R('before','c','peak_rss')):.2f}", f"{med(R('after','c','peak_rss')):.2f}",
                f"{med(R('before','c','rss_after')):.2f}", f"{med(R('after','c','rss_after')):.2f}"]
        if handoff:
            row += [f"{med(R('before','c','rss_idle')):.2f}", f"{med(R('after','c','rss_idle')):.2f}"]
        print("| " + " | ".join(row) + " |")

print("### Classic sets")
table(classic, False)
print()
print("### Hand-off sets (t = producers)")
table(hand, True)
