#!/usr/bin/env python3
"""Does the time course inside a window carry what the band profile averages away?
Reads the files of `hark eval --windows DIR` (with and without `--holdout`, as for
scripts/scorer-study.py), including `windows_SET.mels` (each window's log-mel values),
and scores every clip with hark's standardised nearest-window distance on:

- `standardised (hark)`: the model's output (embedding, band means, band spreads; a
  model without the band profile, such as the tap model, gives the embedding alone,
  standardised here where hark would use cosine distance);
- `+ log-mel values`: plus the window's log-mel values themselves (neighbouring bands
  averaged in pairs: frames × n_mels / 2 values) as a third block;
- `log-mel values alone`;
- `+ modulation`: plus, per group of 4 neighbouring bands, the amplitude (dB) of the
  band level's change over the window in octave bands of modulation rate (1, 2-3,
  4-7, ... cycles per window): the band spread split by how fast the level moves;
- `+ patch residual`: hark's distance and a linear autoencoder of the window's 5-frame
  patches (the DCASE 2020 autoencoder's input, linearised: standardised, PCA to 90 %
  of the enrolment patches' variance; a window scores the root of its patches' mean
  squared residual), each over its median on the enrolment windows, as the root of
  the sum of squares (stated before it was scored: models/README.md);
- `three blocks + modulation, nearest + residual`: the union of the changes that
  each led held out (scripts/scorer-study.py's `three blocks` and `nearest +
  residual`, with the modulation block).

Each block weighs the same; a clip's score is the mean of its windows' scores.

    scripts/time-course-study.py DIR [--sets aircompressor,bottles,fan,slider,stones]
    scripts/time-course-study.py DIR --lead '+ modulation' [--rounds 1000]
    scripts/time-course-study.py DIR --twins louder   # held out: only these twins

Needs numpy only.
"""
import importlib, sys
import numpy as np

study_mod = importlib.import_module("scorer-study")


def octave_edges(frames):
    """Bins of an rfft over `frames` values, DC left out: [1, 2), [2, 4), ..., last."""
    top, edges, lo = frames // 2 + 1, [], 1
    while lo < top:
        edges.append((lo, min(2 * lo, top)))
        lo *= 2
    return edges


def modulation(W):
    """W: windows × frames × bands (dB) → windows × (octaves × band groups of 4)."""
    n, frames, bands = W.shape
    G = W.reshape(n, frames, bands // 4, 4).mean(3)
    X = np.abs(np.fft.rfft(G - G.mean(1, keepdims=True), axis=1)) / frames
    P = np.stack([np.sqrt((X[:, a:b] ** 2).sum(1)) for a, b in octave_edges(frames)], 1)
    return 20 * np.log10(P + 1e-3).reshape(n, -1)


def patch_stacks(R, bands, k=5):
    """R: windows × (frames × bands) log-mel values, frame by frame → windows × stacks ×
    (k × bands): every run of k consecutive frames (the DCASE 2020 autoencoder's input)."""
    W = R.reshape(len(R), -1, bands)
    idx = np.arange(W.shape[1] - k + 1)[:, None] + np.arange(k)[None, :]
    return W[:, idx, :].reshape(len(R), idx.shape[0], k * bands)


def patch_residual(raw, bands, frac=0.9, floor=0.1):
    """A linear autoencoder of a window's k-frame patches: each patch value standardised
    over the enrolment patches, PCA to `frac` of their variance; a window scores the
    root of its patches' mean squared residual."""
    def fit(E, _seg=None):
        X = patch_stacks(E[:, raw], bands)
        X = X.reshape(-1, X.shape[2])
        c, sd = X.mean(0), X.std(0)
        sd = np.maximum(sd, max(sd.mean() * floor, 1e-6))
        Z = (X - c) / sd
        w, V = np.linalg.eigh(Z.T @ Z / len(Z))
        w, V = w[::-1], V[:, ::-1]
        V = V[:, : np.searchsorted(np.cumsum(w) / w.sum(), frac) + 1]

        def score(Q):
            P = (patch_stacks(Q[:, raw], bands) - c) / sd
            res = P - (P @ V) @ V.T
            return np.sqrt((res ** 2).sum(2).mean(1))
        return score
    return fit


def with_patch(groups, raw, bands):
    """hark's nearest-window distance d and the patch residual r, each over its median
    on the enrolment windows (d: against the other segments' rows), as sqrt(d'^2 + r'^2)."""
    def fit(E, seg):
        t = study_mod.scaled(E, groups)
        B = t(E)
        d = (B ** 2).sum(1)[:, None] + (B ** 2).sum(1)[None, :] - 2 * B @ B.T
        d[seg[:, None] == seg[None, :]] = np.inf
        d_enrol = np.sqrt(np.maximum(d.min(1), 0))
        d0 = np.median(d_enrol[np.isfinite(d_enrol)])
        patch = patch_residual(raw, bands)(E)
        r0 = np.median(patch(E))
        return lambda Q: np.sqrt((study_mod.nearest(B, t(Q)) / d0) ** 2 + (patch(Q) / r0) ** 2)
    return fit


def reader(emb, layout, n_mels_flag=None):
    """Reads a windows file and its .mels; each row gets the pooled log-mel values and
    the modulation block appended. `layout[path]` = (model output size, log-mel values)."""
    def read(path):
        lines = study_mod.read(path)
        dim = lines[0][2].shape[1]
        n_mels = (dim - emb) // 2 or n_mels_flag or 0
        mels_path = path[: -len(".jsonl")] + ".mels"
        try:
            mels = np.fromfile(mels_path, dtype="<f4").astype(np.float64)
        except OSError as e:
            sys.exit(f"{mels_path}: cannot read: {e.strerror}")
        windows = sum(len(r) for _, _, r in lines)
        if n_mels <= 0 or windows == 0 or mels.size % (windows * n_mels):
            sys.exit(f"{mels_path}: {mels.size} values do not make {windows} windows of "
                     f"{n_mels} bands (written by another `hark eval --windows` run? "
                     "a model without the band profile needs --n-mels)")
        W = mels.reshape(windows, -1, n_mels)
        raw = W.reshape(windows, W.shape[1], n_mels // 2, 2).mean(3).reshape(windows, -1)
        layout[path] = (dim, raw.shape[1])
        extra = np.concatenate([raw, modulation(W)], 1)
        out, i = [], 0
        for part, label, rows in lines:
            out.append((part, label, np.concatenate([rows, extra[i:i + len(rows)]], 1)))
            i += len(rows)
        return out
    return read


def scorers(dim, emb, n_raw):
    e, p = slice(0, emb), slice(emb, dim)
    raw, mod = slice(dim, dim + n_raw), slice(dim + n_raw, None)
    near = lambda groups: study_mod.by_nearest(lambda E: study_mod.scaled(E, groups))
    out = [e, p] if dim > emb else [e]  # a model without the band profile: embedding only
    rows = {
        "standardised (hark)": near(out),
        "+ log-mel values": near(out + [raw]),
        "log-mel values alone": near([raw]),
        "+ modulation": near(out + [mod]),
    }
    rows["+ patch residual"] = with_patch(out, raw, (dim - emb) // 4)
    if dim > emb:
        _, m, s = study_mod.blocks_of(dim, emb)
        union = lambda E: study_mod.scaled(E, [e, m, s, mod])
        rows["three blocks + modulation, nearest + residual"] = study_mod.both(
            study_mod.by_nearest(union), study_mod.residual_of(union))
    return rows


if __name__ == "__main__":
    ap = study_mod.command_line(__doc__, "FEATURES", "instead of the tables: the bootstrap "
                                "interval of a row's held-out lead over hark's")
    ap.add_argument("--n-mels", type=int, default=None,
                    help="mel bands of a model without the band profile (the tap model: 64)")
    a = ap.parse_args()
    layout = {}
    of = lambda path, _lines: scorers(layout[path][0], a.embedding_dim, layout[path][1])
    study_mod.run(a, of, reader=reader(a.embedding_dim, layout, a.n_mels))
