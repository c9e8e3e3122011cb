#!/usr/bin/env python3
"""Per-clip scores of the peer's DCASE 2020 autoencoder, in the CSV layout of
`hark eval --scores` (`file name,score` per test clip), so the two can be compared clip
by clip (scripts/score-intervals.py).

    scripts/peer-scores.py SET_DIR OUT_DIR [--seeds 0,1,2]

It imports ../shared/peer/baselines.py and uses its own feature and label functions and
its autoencoder settings; only `random_state` varies, one CSV per seed
(OUT_DIR/ae_seedN_SET.csv), to show how far the peer's number moves with its seed.
Needs the peer's Python environment (../shared/peer/README.md).
"""
import argparse, glob, os, sys

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "peer")
sys.path.insert(0, PEER)
import numpy as np  # noqa: E402
import baselines as B  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("set_dir")
ap.add_argument("out_dir")
ap.add_argument("--seeds", default="0")
a = ap.parse_args()
name = os.path.basename(a.set_dir.rstrip("/"))
train = sorted(glob.glob(os.path.join(a.set_dir, "train", "*.wav")))
test = [t for t in sorted(glob.glob(os.path.join(a.set_dir, "test", "*.wav"))) if B.label(t) is not None]
if not train or not test:
    sys.exit(f"{a.set_dir}: needs train/ and labelled test/ clips")
X = np.concatenate([B.ae_vectors(*B.load(p)) for p in train])
scaler = StandardScaler().fit(X)
tests = [scaler.transform(B.ae_vectors(*B.load(p))) for p in test]
os.makedirs(a.out_dir, exist_ok=True)
for seed in [int(s) for s in a.seeds.split(",")]:
    # The settings of baselines.py's "ae" method; random_state=0 is its own run.
    ae = MLPRegressor(hidden_layer_sizes=(128, 128, 128, 128, 8, 128, 128, 128, 128), batch_size=512,
                      max_iter=60, learning_rate_init=1e-3, random_state=seed, early_stopping=False)
    ae.fit(scaler.transform(X), scaler.transform(X))
    out = os.path.join(a.out_dir, f"ae_seed{seed}_{name}.csv")
    with open(out, "w") as f:
        for path, v in zip(test, tests):
            f.write(f"{os.path.basename(path)},{np.mean((ae.predict(v) - v) ** 2)}\n")
    print(f"wrote {out}", flush=True)
