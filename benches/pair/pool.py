import sys, statistics as st
from collections import defaultdict
files=sys.argv[1:]
d = defaultdict(lambda: defaultdict(dict)); order=[]
for i,fn in enumerate(files):
    for line in open(fn):
        if not line.startswith("rep="): continue
        kv = dict(x.split("=",1) for x in line.split() if "=" in x)
        if "ops" not in kv: continue
        key=(kv["set"],int(kv["t"]))
        if key not in order: order.append(key)
        f={k:float(kv[k]) for k in ("ops","cpu_s","wall_s","peak_rss","rss_after","rss_idle","in_flight_peak")}
        f["opc"]=f["ops"]/f["cpu_s"]; f["ops_s"]=f["ops"]/f["wall_s"]
        d[key][(i,int(kv["rep"]))][kv["var"]]=f
print("| set | t | n | metric | A/B median [IQR] | B/B2 median [IQR] |\n|---|---|---|---|---|---|")
def q(xs):
    xs=sorted(xs); n=len(xs); qs=st.quantiles(xs,n=4) if n>=4 else [xs[0],0,xs[-1]]
    return f"{st.median(xs):.3f} [{qs[0]:.2f}–{qs[2]:.2f}]"
for k in order:
    reps=[r for r in d[k].values() if all(v in r for v in ("before","after","before2"))]
    for m in ("opc","ops_s","peak_rss","rss_after","rss_idle"):
        if m=="rss_idle" and not k[0].startswith("handoff"): continue
        ab=[r["after"][m]/r["before"][m] for r in reps]; bb=[r["before"][m]/r["before2"][m] for r in reps]
        print(f"| {k[0]} | {k[1]} | {len(reps)} | {m} | {q(ab)} | {q(bb)} |")
