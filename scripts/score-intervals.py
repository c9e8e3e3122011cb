#!/usr/bin/env python3
"""How sure is a difference in AUC? Reads per-clip score CSVs of one set (`hark eval
--scores`, scripts/peer-scores.py: `file name,score`, labels from the names) and prints
each one's AUC and pAUC (p = 0.1) with a 95 % bootstrap interval, then the interval of
the first file's lead over each other file, computed on the same resamples.

    scripts/score-intervals.py A.csv B.csv [C.csv ...] [--item REGEX] [--rounds 2000]

The bootstrap resamples *items*, normal and anomalous apart. By default every clip is
an item. When several clips record one object (stones: 3-9 hits per stone), pass a
regex whose removal from a name leaves the object, e.g. --item '_[0-9]+_ini\\.wav$':
clips of one stone are not independent, and resampling them one by one would
understate the spread. Needs numpy only.
"""
import argparse, re, sys
import numpy as np

from dcase_metrics import auc, label, pauc


def read(path):
    scores = {}
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        sys.exit(f"{path}: cannot read: {e.strerror}")
    for n, line in enumerate(lines, 1):
        try:
            name, s = line.strip().rsplit(",", 1)
            scores[name] = float(s)
        except ValueError:
            sys.exit(f"{path}:{n}: expected 'file name,score', got {line.strip()!r}")
    if not scores:
        sys.exit(f"{path}: no scores")
    return scores


ap = argparse.ArgumentParser()
ap.add_argument("files", nargs="+")
ap.add_argument("--item", default=None, help="regex removed from a clip name to name its item")
ap.add_argument("--rounds", type=int, default=2000)
a = ap.parse_args()
tables = [read(p) for p in a.files]
names = sorted(tables[0])
for p, t in zip(a.files, tables):
    if sorted(t) != names:
        sys.exit(f"{p}: its clips differ from {a.files[0]}'s")
y = np.array([label(n) for n in names], int)
if y.all() or not y.any():
    sys.exit(f"{a.files[0]}: needs clips of both labels (normal_..., anomaly_...)")
S = np.array([[t[n] for n in names] for t in tables])
items = {}
for i, n in enumerate(names):
    items.setdefault(re.sub(a.item, "", n) if a.item else n, []).append(i)
normal = [v for k, v in items.items() if not label(k)]
anomalous = [v for k, v in items.items() if label(k)]
rng = np.random.default_rng(0)
boot = np.empty((a.rounds, len(S), 2))
for r in range(a.rounds):
    idx = [i for g in rng.integers(len(normal), size=len(normal)) for i in normal[g]]
    idx += [i for g in rng.integers(len(anomalous), size=len(anomalous)) for i in anomalous[g]]
    boot[r] = [(auc(y[idx], s[idx]), pauc(y[idx], s[idx])) for s in S]
print(f"{len(normal)} normal and {len(anomalous)} anomalous items, {a.rounds} resamples; %")
for k, p in enumerate(a.files):
    lo, hi = np.percentile(boot[:, k], [2.5, 97.5], axis=0) * 100
    print(f"{p:44s} AUC {100 * auc(y, S[k]):6.2f} [{lo[0]:6.2f}, {hi[0]:6.2f}]"
          f"  pAUC {100 * pauc(y, S[k]):6.2f} [{lo[1]:6.2f}, {hi[1]:6.2f}]")
for k in range(1, len(S)):
    d = (boot[:, 0] - boot[:, k]) * 100
    lo, hi = np.percentile(d, [2.5, 97.5], axis=0)
    print(f"lead of {a.files[0]} over {a.files[k]}: AUC [{lo[0]:+.2f}, {hi[0]:+.2f}]"
          f" (below in {np.mean(d[:, 0] < 0):.0%} of resamples), pAUC [{lo[1]:+.2f}, {hi[1]:+.2f}]"
          f" (below in {np.mean(d[:, 1] < 0):.0%})")
