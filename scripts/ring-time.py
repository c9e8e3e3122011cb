#!/usr/bin/env python3
"""Does a defective knocked object ring shorter? A one-feature detector of the knock
sets, stated before it was run (models/README.md, "A knock's ring time"):

  ring time = time from the loudest 2 ms frame of a clip (channel 0) until the 2 ms
  energy envelope first falls 20 dB below that frame (capped at the clip's end);
  clip score = -ln(ring time): the shorter the ring, the more anomalous.

Prints AUC / pAUC (p = 0.1, %) of each set's test/ clips:

    scripts/ring-time.py ../shared/data/stones ../shared/data/bottles

Needs numpy; reads 16-bit PCM WAV with the standard library.
"""
import glob, os, sys, wave
import numpy as np

from dcase_metrics import auc, label, pauc


def mono(path):
    with wave.open(path) as w:
        if w.getsampwidth() != 2:
            sys.exit(f"{path}: {8 * w.getsampwidth()}-bit samples; this script reads 16-bit PCM")
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        return x[:: w.getnchannels()] / 32768.0, w.getframerate()


def ring_time(x, rate, frame_s=0.002, drop_db=20.0):
    h = int(rate * frame_s)
    n = len(x) // h
    e = 10 * np.log10((x[: n * h].reshape(n, h) ** 2).mean(1) + 1e-12)
    peak = int(np.argmax(e))
    below = np.nonzero(e[peak:] < e[peak] - drop_db)[0]
    return (below[0] if len(below) else n - peak) * frame_s


for d in sys.argv[1:] or sys.exit(__doc__):
    files = sorted(glob.glob(os.path.join(d, "test", "*.wav")))
    y = np.array([int(label(os.path.basename(f))) for f in files])
    s = np.array([-np.log(ring_time(*mono(f))) for f in files])
    print(f"{os.path.basename(d.rstrip('/')):<14} AUC {100 * auc(y, s):6.2f}  pAUC {100 * pauc(y, s):6.2f}"
          f"  ({(y == 0).sum()} normal / {(y == 1).sum()} anomaly)")
