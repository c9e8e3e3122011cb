#!/usr/bin/env python3
"""How far apart are a machine's recordings, and what does that say about the
threshold? Reads the files of `hark eval --windows DIR` (a model with the band
profile) and, per set, from normal train/ clips only:

- `q_window`: the 99th percentile of every enrolment window's distance to its nearest
  window outside its own time neighbourhood (hark's calibration, src/bank/select.rs:
  other windows of the same clip count); the shipped threshold is 2 x this;
- `q_recording`: the same with every window of the window's own clip left out, i.e.
  the score of a recording the bank has not heard;
- their ratio: how much of the shipped 2x margin the set's own recordings use up;
- held-out recordings with an event: enrol every other train/ clip (by name), set
  each rule's threshold from those clips alone, and count the other clips in which
  the daemon's rule (3 of 4 windows over) would raise an event (both halves).

    hark eval ../shared/data/{aircompressor,fan,slider} --windows W
    scripts/threshold-study.py W --sets aircompressor,fan,slider

hark's standardisation and distance are reproduced as scripts/scorer-study.py does
(no coreset cap). Clips of fewer than 3 windows can never raise an event. Needs numpy.
"""
import argparse, json, sys
import numpy as np


def enrolment(path):
    """The enrolment clips of a windows file, sorted by name: (file, rows)."""
    try:
        with open(path) as f:
            lines = [json.loads(l) for l in f]
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: cannot read as `hark eval --windows` output: {e}")
    clips = [(l["file"], np.asarray(l["rows"], dtype=np.float64)) for l in lines if l["part"] == "enrol"]
    return sorted(clips, key=lambda c: c[0])


def standardise(E, emb, floor=0.1):
    """hark's Scaling::fit: centre, divide by each value's spread (floored at `floor`
    x its block's mean), the embedding and the profile weighing half each."""
    blocks = [slice(0, emb), slice(emb, E.shape[1])]
    c, sd, s = E.mean(0), E.std(0), np.zeros(E.shape[1])
    for b in blocks:
        s[b] = 1 / np.sqrt(sd[b].size * len(blocks)) / np.maximum(sd[b], max(sd[b].mean() * floor, 1e-6))
    return lambda X: (X - c) * s


def dist(A, B):
    d = (A ** 2).sum(1)[:, None] + (B ** 2).sum(1)[None, :] - 2 * A @ B.T
    return np.sqrt(np.maximum(d, 0))


def quantiles(clips, emb, guard):
    """q_window, q_recording, the transform and the standardised bank of `clips`."""
    E = np.concatenate([r for _, r in clips])
    seg = np.concatenate([[i] * len(r) for i, (_, r) in enumerate(clips)])
    idx = np.concatenate([np.arange(len(r)) for _, r in clips])
    t = standardise(E, emb)
    B = t(E)
    D = dist(B, B)
    same = seg[:, None] == seg[None, :]
    near = same & (np.abs(idx[:, None] - idx[None, :]) <= guard)
    window = np.where(near, np.inf, D).min(1)
    window[np.isinf(window)] = 0
    recording = np.where(same, np.inf, D).min(1)
    if np.isinf(recording).all():
        sys.exit("one clip only: no recording to leave out")
    return np.quantile(window, 0.99), np.quantile(recording[np.isfinite(recording)], 0.99), t, B


def raises(scores, threshold, k=3, n=4):
    over = scores > threshold
    return any(over[max(0, i - n + 1): i + 1].sum() >= k for i in range(len(over)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--sets", default="aircompressor,fan,slider")
    ap.add_argument("--embedding-dim", type=int, default=128)
    ap.add_argument("--guard", type=int, default=2,
                    help="windows of a clip this close overlap (64 frames, hop 24: 2)")
    a = ap.parse_args()
    rules = [("2 x q_window (shipped)", 2.0, 0), ("1 x q_recording", 1.0, 1),
             ("1.25 x q_recording", 1.25, 1), ("1.5 x q_recording", 1.5, 1)]
    print("set            clips  q_window  q_recording  ratio | held-out clips with an event: "
          + ", ".join(r[0] for r in rules))
    for name in a.sets.split(","):
        clips = enrolment(f"{a.dir}/windows_{name}.jsonl")
        qw, qr, _, _ = quantiles(clips, a.embedding_dim, a.guard)
        events, held = [0] * len(rules), 0
        for half in (0, 1):
            bank = [c for i, c in enumerate(clips) if i % 2 == half]
            rest = [c for i, c in enumerate(clips) if i % 2 != half]
            q = quantiles(bank, a.embedding_dim, a.guard)
            t, B = q[2], q[3]
            held += len(rest)
            for _, rows in rest:
                s = dist(t(rows), B).min(1)
                for k, (_, m, which) in enumerate(rules):
                    events[k] += raises(s, m * q[which])
        print(f"{name:14s} {len(clips):5d}  {qw:8.3f}  {qr:11.3f}  {qr / qw:5.2f} | "
              + ", ".join(f"{e}/{held}" for e in events))


if __name__ == "__main__":
    main()
