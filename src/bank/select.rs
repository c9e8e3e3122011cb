//! Choosing from normal windows: the threshold (from each window's leave-one-out
//! score, [`calibrate`]) and the rows a capped bank keeps (greedy k-center).

use super::{Calibration, Origin, Target, dot, sq_dist};

/// Most windows whose leave-one-out score calibrates a bank. Each is scored against
/// every window, so calibration grows as O(n), not O(n²). Measured here (256-value
/// rows, 2026-11-22): a bank built from 16,384 windows took 29 s scoring every
/// window, 6.2 s with this cap; from the most a `learn_stop` can hold (a 2,048-row
/// bank and 32,768 windows, 2.3 hours) 15 s, where every window would take about
/// 130 s. 4,096 scores still put ~40 above the 99th percentile the threshold is
/// taken at.
pub const MAX_CALIBRATION_SCORES: usize = 4096;

/// The distance of windows to their nearest neighbour outside their own time
/// neighbourhood: every window's, or for more than [`MAX_CALIBRATION_SCORES`]
/// windows, that many spread evenly over them.
pub(super) fn leave_one_out_scores(
    flat: &[f32],
    dim: usize,
    origins: &[Origin],
    guard: u32,
    euclidean: bool,
) -> Vec<f32> {
    let n = origins.len();
    let scored = n.min(MAX_CALIBRATION_SCORES);
    (0..scored)
        .map(|k| k * n / scored)
        .map(|i| {
            let q = &flat[i * dim..(i + 1) * dim];
            let mut best = f32::MAX;
            for j in 0..n {
                let (a, b) = (origins[i], origins[j]);
                if a.segment == b.segment && a.index.abs_diff(b.index) <= guard {
                    continue;
                }
                best = best.min(distance(q, &flat[j * dim..(j + 1) * dim], euclidean));
            }
            // A single short segment has no independent neighbour: fall back to itself.
            if best == f32::MAX { 0.0 } else { best }
        })
        .collect()
}

/// Distance between two stored rows: Euclidean (standardised rows) or cosine.
pub(super) fn distance(a: &[f32], b: &[f32], euclidean: bool) -> f32 {
    match euclidean {
        true => sq_dist(a, b).sqrt(),
        false => 1.0 - dot(a, b),
    }
}

/// Threshold at `target.margin` × the `1 − target.far` quantile of normal scores.
pub fn calibrate(scores: &[f32], target: Target) -> Calibration {
    let Target {
        far: target_far,
        margin,
        ..
    } = target;
    let mut s = scores.to_vec();
    s.sort_by(f32::total_cmp);
    let n = s.len() as f32;
    let mean = s.iter().sum::<f32>() / n;
    let std = (s.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
    let q = ((1.0 - target_far) * (n - 1.0)).round() as usize;
    Calibration {
        threshold: margin * s[q.min(s.len() - 1)],
        score_mean: mean,
        score_std: std,
        score_max: *s.last().unwrap_or(&0.0),
        target_far,
        margin,
    }
}

/// Greedy k-center: indices of at most `k` rows such that every row is close to one.
pub(super) fn k_center(flat: &[f32], dim: usize, k: usize, euclidean: bool) -> Vec<usize> {
    let n = flat.len() / dim;
    if n <= k {
        return (0..n).collect();
    }
    let row = |i: usize| &flat[i * dim..(i + 1) * dim];
    let mut chosen = vec![0];
    let mut dist: Vec<f32> = (0..n)
        .map(|i| distance(row(i), row(0), euclidean))
        .collect();
    while chosen.len() < k {
        let (far, _) = dist
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("n > k >= 1");
        chosen.push(far);
        for (i, d) in dist.iter_mut().enumerate() {
            *d = d.min(distance(row(i), row(far), euclidean));
        }
    }
    chosen
}
