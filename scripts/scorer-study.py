#!/usr/bin/env python3
"""Other ways to score the windows hark scores. Reads the files of
`hark eval --windows DIR` (test/) and `hark eval --holdout [--holdout-split halves]
--windows DIR` (held-out train/ pieces and their twins) of a model that appends the
band profile (`features = embedding+profile`), re-scores every clip with each scorer
below, and prints AUC / pAUC (p = 0.1, %) per set and the mean over the sets:

    scripts/scorer-study.py DIR [--sets aircompressor,bottles,fan,slider,stones]
    scripts/scorer-study.py DIR --lead 'nearest + residual' [--rounds 1000]
    scripts/scorer-study.py DIR --twins louder   # held out: only these twins

Every scorer enrols the same windows hark enrols and scores a clip as the mean of its
windows' scores, as hark does. `standardised` is hark's own scorer (each value
standardised over the enrolment windows, the embedding and the profile weighing
half each, distance to the nearest window); its test/ column is what `hark eval`
prints, to ±0.02 (this script skips hark's 2,048-window coreset cap, and its pAUC
interpolates ties a little differently). The others:

- `three blocks`: the same, with the band means and the band spreads as blocks of
  their own (embedding, means, spreads: a third each);
- `whitened`: per block, PCA whitening instead of per-value scaling (eigenvalues
  floored at 1 % of their mean), then the nearest window;
- `residual`: no neighbour; the distance of the standardised window from the span of
  the principal components that hold 90 % of the enrolment windows' variance (what
  an autoencoder's reconstruction error approximates);
- `nearest + residual`: the root of the sum of both squares;
- `sorted profile`: the nearest window after each window's band means and spreads
  are sorted (which bands ring is dropped; how peaked the spectrum is stays);
- `level as one value`: the band means become their mean (the window's level, one
  value) and each band's difference from it (the shape), so a change of level
  counts once instead of once per band;
- `embedding only`, `profile only`: hark's scorer on one of its two blocks (what
  each block adds to the other);
- `locally scaled nearest`: hark's standardised vectors, each enrolment window's
  distance measured in units of its own neighbourhood (its distance to the nearest
  window of another clip or piece), so that a condition heard in few clips, with
  sparse windows, is not taken for a fault.

`--lead SCORER` asks how sure a held-out lead is: it resamples the held-out pieces
(each with its twins) and prints the 95 % interval of SCORER's lead over hark's
scorer in the mean over the sets, per split.

Needs numpy only.
"""
import argparse, json, os, sys
import numpy as np

from dcase_metrics import auc, pauc


def read(path):
    """Lines of a windows file: (part, label, rows)."""
    out = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                try:
                    j = json.loads(line)
                    out.append((j["part"], j["label"], np.asarray(j["rows"], dtype=np.float64)))
                except (ValueError, KeyError) as e:
                    sys.exit(f"{path}:{n}: not a line of `hark eval --windows`: {e}")
    except OSError as e:
        sys.exit(f"{path}: cannot read: {e.strerror}")
    return out


def blocks_of(dim, emb):
    """Embedding, band means, band spreads."""
    n_mels = (dim - emb) // 2
    if emb <= 0 or dim != emb + 2 * n_mels or n_mels == 0:
        sys.exit(f"windows of {dim} values do not split into a {emb}-value embedding "
                 "and a band profile: the model needs features = embedding+profile")
    return [slice(0, emb), slice(emb, emb + n_mels), slice(emb + n_mels, dim)]


def scaled(E, groups, floor=0.1):
    """hark's standardisation (src/bank/mod.rs, Scaling::fit): centre, divide by each
    value's spread (at least `floor` × its group's mean spread), each group weighing
    the same; values in no group are left out."""
    c, sd = E.mean(0), E.std(0)
    s = np.zeros(E.shape[1])
    for g in groups:
        fl = max(sd[g].mean() * floor, 1e-6)
        s[g] = 1 / np.sqrt(sd[g].size * len(groups)) / np.maximum(sd[g], fl)
    return lambda X: (X - c) * s


def whitened(E, groups, floor=0.01):
    c, parts = E.mean(0), []
    for g in groups:
        Y = E[:, g] - c[g]
        w, V = np.linalg.eigh(Y.T @ Y / len(Y))
        w = np.maximum(w, max(w.mean() * floor, 1e-12))
        parts.append((g, V / np.sqrt(w) / np.sqrt((g.stop - g.start) * len(groups))))
    return lambda X: np.concatenate([(X[:, g] - c[g]) @ M for g, M in parts], 1)


def nearest(B, Q):
    d = (Q ** 2).sum(1)[:, None] + (B ** 2).sum(1)[None, :] - 2 * Q @ B.T
    return np.sqrt(np.maximum(d.min(1), 0))


def by_nearest(transform):
    def fit(E, _seg=None):
        t = transform(E)
        B = t(E)
        return lambda Q: nearest(B, t(Q))
    return fit


def residual_of(transform, frac=0.9):
    def fit(E, _seg=None):
        t = transform(E)
        _, s, Vt = np.linalg.svd(t(E), full_matrices=False)
        ev = s ** 2
        V = Vt[: np.searchsorted(np.cumsum(ev) / ev.sum(), frac) + 1]
        return lambda Q: np.linalg.norm(t(Q) - (t(Q) @ V.T) @ V, axis=1)
    return fit


def both(a, b):
    def fit(E, seg=None):
        fa, fb = a(E, seg), b(E, seg)
        return lambda Q: np.sqrt(fa(Q) ** 2 + fb(Q) ** 2)
    return fit


def sorted_profile(emb):
    def f(X):
        _, m, s = blocks_of(X.shape[1], emb)
        return np.concatenate([np.sort(X[:, m], 1), np.sort(X[:, s], 1)], 1)
    def fit(E, _seg=None):
        t = scaled(f(E), [slice(0, f(E).shape[1])])
        B = t(f(E))
        return lambda Q: nearest(B, t(f(Q)))
    return fit


def level_apart(emb):
    def f(X):
        _, m, s = blocks_of(X.shape[1], emb)
        level = X[:, m].mean(1, keepdims=True)
        return np.concatenate([X[:, :emb], X[:, m] - level, X[:, s], level], 1)
    def fit(E, _seg=None):
        F = f(E)
        t = scaled(F, [slice(0, emb), slice(emb, F.shape[1])])
        B = t(F)
        return lambda Q: nearest(B, t(f(Q)))
    return fit


def locally_scaled(transform, floor=0.1):
    """The nearest window in units of its own neighbourhood: each enrolment row j gets
    a scale s_j, its distance to the nearest row of another segment (clip or piece;
    floored at `floor` × the median scale), and a window scores
    min_j d(x, b_j) · median(s) / s_j. A sparse region of the bank (a condition heard
    in few clips) then counts its wider spread as normal."""
    def fit(E, seg):
        t = transform(E)
        B = t(E)
        sq = (B ** 2).sum(1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * B @ B.T, 0))
        d[seg[:, None] == seg[None, :]] = np.inf
        s = d.min(1)
        if not np.isfinite(s).all():  # one segment only: no neighbourhoods to measure
            s = np.ones(len(B))
        s = np.maximum(s, floor * np.median(s))
        w = np.median(s) / s
        def score(Q):
            q = t(Q)
            dq = np.sqrt(np.maximum((q ** 2).sum(1)[:, None] + sq[None, :] - 2 * q @ B.T, 0))
            return (dq * w[None, :]).min(1)
        return score
    return fit


def scorers(dim, emb):
    e, m, s = blocks_of(dim, emb)
    profile = slice(m.start, s.stop)
    two, three = [e, profile], [e, m, s]
    std = lambda E: scaled(E, two)
    return {
        "standardised (hark)": by_nearest(std),
        "three blocks": by_nearest(lambda E: scaled(E, three)),
        "whitened": by_nearest(lambda E: whitened(E, two)),
        "residual": residual_of(std),
        "nearest + residual": both(by_nearest(std), residual_of(std)),
        "sorted profile": sorted_profile(emb),
        "level as one value": level_apart(emb),
        "embedding only": by_nearest(lambda E: scaled(E, [e])),
        "profile only": by_nearest(lambda E: scaled(E, [profile])),
        "locally scaled nearest": locally_scaled(std),
    }


def kept(twins, only):
    """The twins of a held-out file that `--twins` keeps (all when `only` is None)."""
    if only is None:
        return twins
    missing = set(only) - set(twins)
    if missing:
        sys.exit(f"no twin {', '.join(sorted(missing))} in the windows; there are: {', '.join(twins)}")
    return [t for t in twins if t in only]


def enrolled(lines):
    """The enrolment rows of a windows file, and each row's segment (its line)."""
    rows = [r for p, _, r in lines if p == "enrol"]
    return np.concatenate(rows), np.repeat(np.arange(len(rows)), [len(r) for r in rows])


def evaluate(lines, fit, normal_part, only=None):
    """AUC, pAUC of a windows file: mean over twins (those in `only`, if given) for a
    held-out file."""
    score = fit(*enrolled(lines))
    clip = lambda r: float(score(r).mean())
    scored = [(lab, clip(r)) for p, lab, r in lines if p == normal_part]
    normal = [s for lab, s in scored if lab == "normal"]
    results = []
    kinds = sorted({lab for lab, _ in scored} - {"normal"})
    for kind in kinds if normal_part == "test" else kept(kinds, only):
        bad = [s for lab, s in scored if lab == kind]
        y = np.r_[np.zeros(len(normal)), np.ones(len(bad))]
        x = np.r_[normal, bad]
        results.append((auc(y, x), pauc(y, x)))
    if not results or not normal:
        return None
    return tuple(100 * np.mean([r[i] for r in results]) for i in (0, 1))


def piece_scores(lines, fit, only=None):
    """A held-out file's clip scores as a matrix: one row per held-out piece, its
    normal score then each twin's (hark writes a piece's normal line, then its twins)."""
    score = fit(*enrolled(lines))
    rows, twins = [], sorted({lab for p, lab, _ in lines if p == "held-out"} - {"normal"})
    twins = kept(twins, only)
    for p, lab, r in lines:
        if p != "held-out":
            continue
        if lab == "normal":
            rows.append({})
        rows[-1][lab] = float(score(r).mean())
    return np.array([[row["normal"]] + [row[t] for t in twins] for row in rows])


def lead(directory, sets, scorers_of, name, rounds, reader=read, seed=0, only=None):
    """Bootstrap over held-out pieces (a piece and its twins move together): the
    interval of scorer `name`'s lead over hark's in the mean over sets of the mean over
    twins, AUC and pAUC, per held-out split."""
    rng = np.random.default_rng(seed)
    for split in ("interleaved", "halves"):
        per_set = []
        for s in sets:
            path = os.path.join(directory, f"windows_{s}_holdout-{split}.jsonl")
            if not os.path.exists(path):
                continue
            lines = reader(path)
            fits = scorers_of(path, lines)
            if name not in fits:
                sys.exit(f"no scorer {name!r}; there are: {', '.join(fits)}")
            per_set.append([piece_scores(lines, fits[k], only)
                            for k in ("standardised (hark)", name)])
        if not per_set:
            continue

        def mean_metrics(pick):
            out = np.zeros((2, 2))  # scorer × (AUC, pAUC)
            for (base, other), idx in zip(per_set, pick):
                for j, m in enumerate((base[idx], other[idx])):
                    n = len(m)
                    y = np.r_[np.zeros(n), np.ones(n)]
                    pairs = (np.r_[m[:, 0], m[:, t]] for t in range(1, m.shape[1]))
                    vals = [(auc(y, x), pauc(y, x)) for x in pairs]
                    out[j] += np.mean(vals, 0) / len(per_set)
            return 100 * (out[1] - out[0])

        full = mean_metrics([np.arange(len(b)) for b, _ in per_set])
        draws = np.array([mean_metrics([rng.integers(0, len(b), len(b)) for b, _ in per_set])
                          for _ in range(rounds)])
        lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
        below = 100 * (draws < 0).mean(0)
        print(f"{split}: lead of {name!r} over hark, mean of {len(per_set)} sets, "
              f"{rounds} resamples of held-out pieces: "
              f"AUC {full[0]:+.2f} [{lo[0]:+.2f}, {hi[0]:+.2f}] (below in {below[0]:.0f} %), "
              f"pAUC {full[1]:+.2f} [{lo[1]:+.2f}, {hi[1]:+.2f}] (below in {below[1]:.0f} %)")


def study(directory, sets, scorers_of, columns=None, reader=read, only=None):
    """Per column (test/, held-out interleaved, held-out halves) a markdown table: one
    row per scorer, AUC / pAUC per set and the mean. `scorers_of(path, lines)` gives
    the scorers for one windows file, `reader(path)` its lines."""
    columns = columns or [("test", "", "test"), ("interleaved", "_holdout-interleaved", "held-out"),
                          ("halves", "_holdout-halves", "held-out")]
    table = {}
    for name in sets:
        for col, suffix, part in columns:
            path = os.path.join(directory, f"windows_{name}{suffix}.jsonl")
            if not os.path.exists(path):
                continue
            lines = reader(path)
            for scorer, fit in scorers_of(path, lines).items():
                r = evaluate(lines, fit, part, only)
                if r:
                    table.setdefault(scorer, {}).setdefault(col, {})[name] = r
    if not table:
        sys.exit(f"{directory}: no windows_SET*.jsonl of the sets {','.join(sets)}")
    for col, _, _ in columns:
        names = [n for n in sets if any(n in t.get(col, {}) for t in table.values())]
        if not names:
            continue
        print(f"\n{col}: AUC / pAUC (%)")
        print(f"| scorer | {' | '.join(names)} | mean |\n|---|{'---|' * (len(names) + 1)}")
        for scorer, cols in table.items():
            row = [cols.get(col, {}).get(n) for n in names]
            cells = [f"{r[0]:.2f} / {r[1]:.2f}" if r else "–" for r in row]
            done = [r for r in row if r]
            mean = f"{np.mean([r[0] for r in done]):.2f} / {np.mean([r[1] for r in done]):.2f}"
            print(f"| {scorer} | {' | '.join(cells)} | {mean} |")


def command_line(doc, lead_metavar, lead_help):
    """The arguments both study scripts take; a script adds its own to the parser."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--sets", default="aircompressor,bottles,fan,slider,stones")
    ap.add_argument("--embedding-dim", type=int, default=128)
    ap.add_argument("--lead", metavar=lead_metavar, help=lead_help)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--twins", metavar="NAMES",
                    help="held out, only these twins (comma-separated, e.g. louder)")
    return ap


def run(a, scorers_of, reader=read):
    """The tables, or with `--lead` the interval of one row's held-out lead."""
    sets, only = a.sets.split(","), (a.twins.split(",") if a.twins else None)
    if a.lead:
        lead(a.dir, sets, scorers_of, a.lead, a.rounds, reader=reader, only=only)
    else:
        study(a.dir, sets, scorers_of, reader=reader, only=only)


if __name__ == "__main__":
    a = command_line(__doc__, "SCORER", "instead of the tables: the bootstrap interval "
                     "of SCORER's held-out lead over hark's").parse_args()
    run(a, lambda _path, lines: scorers(lines[0][2].shape[1], a.embedding_dim))
