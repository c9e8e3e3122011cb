"""DCASE metrics in numpy, shared by the Python scripts: AUC (Mann-Whitney, ties
counted half) and pAUC (area under the ROC for FPR <= p, divided by p), as
src/metrics.rs computes them, and the label of a test clip from its name."""
import numpy as np


def label(name):
    return name.startswith("anomaly") or "_test_anomaly_" in name


def auc(y, s):
    """Mann-Whitney AUC, ties counted half."""
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = y.sum()
    neg = len(y) - pos
    return (ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg)


def pauc(y, s, p=0.1):
    """DCASE pAUC: area under the ROC for FPR <= p, divided by p."""
    order = np.argsort(-s, kind="mergesort")
    yy = y[order]
    tp = np.r_[0, np.cumsum(yy) / yy.sum()]
    fp = np.r_[0, np.cumsum(1 - yy) / (1 - yy).sum()]
    keep = fp <= p
    fx, ty = fp[keep], tp[keep]
    if fx[-1] < p:
        i = np.searchsorted(fp, p)
        t = tp[i - 1] + (tp[i] - tp[i - 1]) * (p - fp[i - 1]) / max(fp[i] - fp[i - 1], 1e-12)
        fx, ty = np.r_[fx, p], np.r_[ty, t]
    return np.trapezoid(ty, fx) / p
