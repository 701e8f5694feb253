#!/usr/bin/env python3
"""pyalloc: CPython building and dropping large containers, in phases.

    python3 pyalloc.py [--scale S] [--threads N] [--seed SEED]

Run it with PYTHONMALLOC=malloc (benches/capi/run does) so that every object, small ones
included, comes from malloc: CPython's own small-object allocator (pymalloc) would
otherwise serve everything up to 512 bytes from its arenas and the preloaded allocator
would see only the large blocks.

Each round has four phases:
  1. dict:    a dict of str keys to small lists and tuples, built, probed, dropped;
  2. strings: a list of strings of 1 B - 64 KiB built by joining, half of them dropped at
              random, replaced, then all dropped (fragmentation);
  3. grow:    lists and bytearrays grown by appending (realloc), then sliced and dropped;
  4. threads: N threads build dicts of lists and hand them through a queue to the main
              thread, which reads and drops them (objects freed by another thread than the
              one that allocated them; the GIL serialises the Python code itself).
The checksum line is a CRC of values derived from the data; it depends only on the seed
and the scale, never on hash randomisation or timing.
"""

import argparse
import queue
import random
import sys
import threading
import zlib


def crc(acc, *values):
    for v in values:
        acc = zlib.crc32(str(v).encode(), acc)
    return acc


def phase_dict(rng, n, acc):
    d = {}
    for i in range(n):
        k = "key-%d-%d" % (i, rng.randrange(1 << 30))
        if i % 3 == 0:
            d[k] = [i, i + 1, k[-4:]]
        elif i % 3 == 1:
            d[k] = (i, str(i))
        else:
            d[k] = {"n": i}
    keys = list(d)
    hits = 0
    for _ in range(n // 2):
        k = keys[rng.randrange(len(keys))]
        v = d[k]
        hits += len(v)
    # Drop a third by key, then everything.
    for k in keys[::3]:
        del d[k]
    acc = crc(acc, len(d), hits)
    del keys, d
    return acc


def phase_strings(rng, n, acc):
    def make(i):
        size = min(1 << rng.randrange(0, 17), 65536)
        piece = chr(97 + i % 26)
        return piece * (size // 2) + "-".join(str(i) for _ in range(size // 16 + 1))

    items = [make(i) for i in range(n)]
    total = sum(len(s) for s in items)
    # Free half at random positions, refill them (holes of every size in the heap).
    for _ in range(n // 2):
        j = rng.randrange(n)
        items[j] = make(j + n)
    total2 = sum(len(s) for s in items)
    acc = crc(acc, total, total2, items[n // 3][:32])
    del items
    return acc


def phase_grow(rng, n, acc):
    lists = []
    blobs = []
    for i in range(n):
        lst = []
        ba = bytearray()
        for j in range(rng.randrange(50, 400)):
            lst.append(j * i)
            ba += bytes((j & 0xFF,)) * (j % 64 + 1)
        lists.append(lst)
        blobs.append(ba)
    sizes = sum(len(x) for x in lists) + sum(len(b) for b in blobs)
    # Slice copies, then drop the originals.
    halves = [x[: len(x) // 2] for x in lists]
    tails = [bytes(b[-64:]) for b in blobs]
    del lists, blobs
    acc = crc(acc, sizes, sum(len(h) for h in halves), zlib.crc32(b"".join(tails)))
    del halves, tails
    return acc


def worker(q, seed, batches, per_batch):
    rng = random.Random(seed)
    for b in range(batches):
        d = {}
        for i in range(per_batch):
            d["w%d-%d-%d" % (seed, b, i)] = [rng.randrange(1000) for _ in range(rng.randrange(1, 12))]
        q.put(d)
    q.put(None)


def phase_threads(seed, nthreads, batches, per_batch, acc):
    if nthreads <= 0:
        return acc
    q = queue.Queue(maxsize=8)
    ts = [threading.Thread(target=worker, args=(q, seed * 1000 + t, batches, per_batch))
          for t in range(nthreads)]
    for t in ts:
        t.start()
    done = 0
    total = 0
    items = 0
    while done < nthreads:
        d = q.get()
        if d is None:
            done += 1
            continue
        for v in d.values():
            total += sum(v)
            items += len(v)
        del d
    for t in ts:
        t.join()
    # Totals are order-independent sums, whatever the interleaving.
    return crc(acc, total, items)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    s = max(args.scale, 0.01)
    rng = random.Random(args.seed)
    acc = 0
    for r in range(args.rounds):
        acc = phase_dict(rng, int(120_000 * s), acc)
        acc = phase_strings(rng, int(3_000 * s), acc)
        acc = phase_grow(rng, int(1_500 * s), acc)
        acc = phase_threads(args.seed + r, args.threads, max(1, int(30 * s)), 2_000, acc)
    print("pyalloc scale=%g threads=%d rounds=%d" % (args.scale, args.threads, args.rounds))
    print("checksum %08x" % acc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
