//! Detection metrics of DCASE Task 2: AUC and partial AUC. Pure and tested.
//!
//! Convention: a higher score means "more anomalous"; anomalies are the positives.

/// Why a metric cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// No normal clips (negatives) to compare with.
    #[error("no normal clips: AUC needs both labels")]
    NoNormal,
    /// No anomalous clips (positives) to compare with.
    #[error("no anomalous clips: AUC needs both labels")]
    NoAnomaly,
    /// A score is NaN.
    #[error("a score is NaN")]
    NaN,
}

fn check(normal: &[f64], anomaly: &[f64]) -> Result<(), MetricError> {
    if normal.is_empty() {
        return Err(MetricError::NoNormal);
    }
    if anomaly.is_empty() {
        return Err(MetricError::NoAnomaly);
    }
    if normal.iter().chain(anomaly).any(|x| x.is_nan()) {
        return Err(MetricError::NaN);
    }
    Ok(())
}

/// Area under the ROC curve: the probability that a random anomaly scores above a
/// random normal clip, ties counting one half (Mann–Whitney U / (n·m)).
pub fn auc(normal: &[f64], anomaly: &[f64]) -> Result<f64, MetricError> {
    check(normal, anomaly)?;
    let mut wins = 0.0;
    for a in anomaly {
        for n in normal {
            wins += if a > n {
                1.0
            } else if a == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Ok(wins / (normal.len() * anomaly.len()) as f64)
}

/// The ROC curve as (false-positive rate, true-positive rate) points, one per distinct
/// threshold from the highest score down; tied scores move diagonally.
pub fn roc(normal: &[f64], anomaly: &[f64]) -> Result<Vec<(f64, f64)>, MetricError> {
    check(normal, anomaly)?;
    let mut all: Vec<(f64, bool)> = normal
        .iter()
        .map(|&s| (s, false))
        .chain(anomaly.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (nn, na) = (normal.len() as f64, anomaly.len() as f64);
    let (mut fp, mut tp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < all.len() {
        let s = all[i].0;
        while i < all.len() && all[i].0 == s {
            if all[i].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        points.push((fp / nn, tp / na));
    }
    Ok(points)
}

/// Partial AUC as DCASE defines it: the plain (not standardised) area under the ROC
/// for false-positive rates up to `max_fpr`, divided by `max_fpr`, so a perfect
/// detector scores 1 and a random one `max_fpr / 2`.
pub fn pauc(normal: &[f64], anomaly: &[f64], max_fpr: f64) -> Result<f64, MetricError> {
    let points = roc(normal, anomaly)?;
    let mut area = 0.0;
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x0 >= max_fpr {
            break;
        }
        let (xe, ye) = if x1 > max_fpr {
            // Interpolate the segment to end exactly at max_fpr.
            (max_fpr, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0))
        } else {
            (x1, y1)
        };
        area += (xe - x0) * (y0 + ye) / 2.0;
    }
    Ok(area / max_fpr)
}

/// Harmonic mean: DCASE 2021–2024's official score is the harmonic mean of every
/// section's source AUC, target AUC and pAUC. A zero (or negative) value makes it 0, its
/// limit; `None` for no values or a NaN.
pub fn hmean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    if values.iter().any(|&v| v <= 0.0) {
        return Some(0.0);
    }
    Some(values.len() as f64 / values.iter().map(|v| 1.0 / v).sum::<f64>())
}

/// Precision, recall and F1 of binary decisions, as DCASE 2023–2024's evaluator takes
/// them from a section's decision file (scikit-learn's `precision_recall_fscore_support`,
/// `average="binary"`): `detected` of `n_anomaly` faults flagged, and `false_alarms`
/// normal clips. A ratio with nothing to divide by is 0, as there.
pub fn precision_recall_f1(detected: usize, false_alarms: usize, n_anomaly: usize) -> [f64; 3] {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(detected, detected + false_alarms);
    let recall = ratio(detected, n_anomaly);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    [precision, recall, f1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_f1_as_dcase_takes_them() {
        // 13 of 280 faults flagged, no false alarm.
        let [p, r, f] = precision_recall_f1(13, 0, 280);
        assert_eq!(p, 1.0);
        assert!(close(r, 13.0 / 280.0));
        assert!(close(f, 2.0 * 13.0 / 293.0));
        // 4 flagged, 2 of them faults, of 8 faults: P 0.5, R 0.25, F1 1/3.
        let [p, r, f] = precision_recall_f1(2, 2, 8);
        assert!(close(p, 0.5) && close(r, 0.25) && close(f, 1.0 / 3.0));
        // Nothing flagged: precision has nothing to divide by, and all three are 0.
        assert_eq!(precision_recall_f1(0, 0, 10), [0.0, 0.0, 0.0]);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn perfect_inverted_and_random() {
        assert!(close(auc(&[0.1, 0.2], &[0.3, 0.4]).unwrap(), 1.0));
        assert!(close(auc(&[0.3, 0.4], &[0.1, 0.2]).unwrap(), 0.0));
        assert!(close(pauc(&[0.1, 0.2], &[0.3, 0.4], 0.1).unwrap(), 1.0));
        assert!(close(pauc(&[0.3, 0.4], &[0.1, 0.2], 0.1).unwrap(), 0.0));
    }

    #[test]
    fn hand_computed_case() {
        // normal 1,2,3,4 ; anomaly 2.5, 5: pairs won = (2 + 4) of 8.
        let (n, a) = ([1.0, 2.0, 3.0, 4.0], [2.5, 5.0]);
        assert!(close(auc(&n, &a).unwrap(), 6.0 / 8.0));
        // ROC: (0,0) → (0,0.5) at 5 → (0.25,0.5) at 4 → (0.5,0.5) at 3 → (0.5,1) at 2.5 ...
        // Up to FPR 0.25 the curve sits at TPR 0.5 after the first point: area 0.5·0.25.
        assert!(close(pauc(&n, &a, 0.25).unwrap(), 0.5));
        // Up to 0.5: 0.5 · 0.5 = 0.25, divided by 0.5.
        assert!(close(pauc(&n, &a, 0.5).unwrap(), 0.5));
    }

    #[test]
    fn ties_count_one_half() {
        assert!(close(auc(&[1.0], &[1.0]).unwrap(), 0.5));
        // All scores equal: the ROC is the diagonal; pAUC at p is p/2 / p = 0.5·p.
        let same = [0.3; 5];
        assert!(close(auc(&same, &same).unwrap(), 0.5));
        assert!(close(pauc(&same, &same, 0.1).unwrap(), 0.05));
        // One tie among otherwise separated scores.
        assert!(close(auc(&[1.0, 2.0], &[2.0, 3.0]).unwrap(), 3.5 / 4.0));
    }

    #[test]
    fn interpolates_at_max_fpr() {
        // 10 normals, 1 anomaly tied with the top normal: the first ROC step goes
        // diagonally to (0.1, 1.0); the area under it up to 0.1 is 0.05.
        let n: Vec<f64> = (0..10).map(|i| i as f64).collect();
        assert!(close(pauc(&n, &[9.0], 0.1).unwrap(), 0.5));
        assert!(close(pauc(&n, &[9.0], 0.05).unwrap(), 0.25));
    }

    #[test]
    fn harmonic_mean_as_dcase_scores_domains() {
        // 3 / (1/1 + 1/0.5 + 1/0.25) = 3 / 7.
        assert!(close(hmean(&[1.0, 0.5, 0.25]).unwrap(), 3.0 / 7.0));
        assert!(close(hmean(&[0.8; 3]).unwrap(), 0.8));
        assert_eq!(
            hmean(&[0.9, 0.0]),
            Some(0.0),
            "a zero pulls it to its limit"
        );
        assert_eq!(hmean(&[]), None);
        assert_eq!(hmean(&[f64::NAN]), None);
    }

    #[test]
    fn one_class_missing_is_an_error() {
        assert_eq!(auc(&[], &[1.0]), Err(MetricError::NoNormal));
        assert_eq!(pauc(&[1.0], &[], 0.1), Err(MetricError::NoAnomaly));
        assert_eq!(auc(&[f64::NAN], &[1.0]), Err(MetricError::NaN));
    }
}
