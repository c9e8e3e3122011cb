//! What `hark eval` reports: a table row or JSON line per machine (and a set's mean
//! over its machines), and with `--scores` each machine's DCASE submission files.

use std::path::{Path, PathBuf};

use super::eval::{ClipScore, SetResult};
use super::machines::DOMAINS;
use crate::metrics::{hmean, precision_recall_f1};

/// What DCASE calls a machine's result files, after `anomaly_score_` and
/// `decision_result_`: `TYPE_id_02` (2020) or `TYPE_section_00_test` (2021+), TYPE
/// being the set's folder name (`fan` of `dcase2023/fan`), so that DCASE's own
/// evaluators read what `eval --scores` writes. A set whose clips name no machine is
/// `TYPE`.
pub fn submission_name(set: &str, machine: &str) -> String {
    let kind = set.rsplit(['/', '\\']).next().unwrap_or(set);
    match machine {
        "" => kind.to_string(),
        m if m.starts_with("section_") => format!("{kind}_{m}_test"),
        m => format!("{kind}_{m}"),
    }
}

/// The scores file `eval --scores DIR` writes for a machine: `anomaly_score_NAME.csv`
/// ([`submission_name`]).
pub fn scores_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("anomaly_score_{name}.csv"))
}

/// Its decisions beside it: `decision_result_NAME.csv`.
pub fn decisions_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("decision_result_{name}.csv"))
}

/// Writes a set's clip scores (`file name,score`) and decisions (`file name,1` where
/// the daemon would raise an event, else `0`), one line per clip and no header, as
/// DCASE submissions; each file atomically.
pub(super) fn write_scores(dir: &Path, name: &str, clips: &[ClipScore]) -> anyhow::Result<()> {
    let lines = |f: &dyn Fn(&ClipScore) -> String| -> String {
        clips
            .iter()
            .map(|c| format!("{},{}\n", c.name, f(c)))
            .collect()
    };
    let scores = lines(&|c| c.score.to_string());
    crate::fsutil::write_atomic(&scores_file(dir, name), scores.as_bytes())?;
    let decisions = lines(&|c| u8::from(c.event).to_string());
    crate::fsutil::write_atomic(&decisions_file(dir, name), decisions.as_bytes())
}

/// What a result line reports: one group's numbers, or a set's mean over its machines.
pub(super) struct Numbers {
    auc: f64,
    pauc: f64,
    level_auc: f64,
    domain_auc: [Option<f64>; 2],
    /// DCASE 2021–2024's official score: the harmonic mean of each machine's source
    /// AUC, target AUC and pAUC; `None` unless every machine has both domains.
    dcase_score: Option<f64>,
    n_normal: usize,
    n_anomaly: usize,
    events: [usize; 2],
    /// Precision, recall and F1 of the decisions (DCASE 2023–2024's evaluator); a
    /// set's mean line: their mean over its machines, as that evaluator averages
    /// sections.
    decisions: [f64; 3],
}

/// Precision, recall and F1 of one group's decisions.
fn decision_metrics(r: &SetResult) -> [f64; 3] {
    precision_recall_f1(r.events[1], r.events[0], r.anomaly.len())
}

/// The three values of a machine that DCASE 2021–2024's official score takes the
/// harmonic mean of, if its test clips name both domains.
fn dcase_values(r: &SetResult) -> Option<[f64; 3]> {
    match r.domain_auc {
        [Some(source), Some(target)] => Some([source, target, r.pauc]),
        _ => None,
    }
}

impl Numbers {
    pub(super) fn of(r: &SetResult) -> Numbers {
        Numbers {
            auc: r.auc,
            pauc: r.pauc,
            level_auc: r.level_auc,
            domain_auc: r.domain_auc,
            dcase_score: dcase_values(r).and_then(|v| hmean(&v)),
            n_normal: r.normal.len(),
            n_anomaly: r.anomaly.len(),
            events: r.events,
            decisions: decision_metrics(r),
        }
    }

    /// The mean AUC, pAUC and level AUC over `rs`, with their clips counted together.
    pub(super) fn mean(rs: &[SetResult]) -> Numbers {
        let n = rs.len() as f64;
        let mean = |f: fn(&SetResult) -> f64| rs.iter().map(f).sum::<f64>() / n;
        Numbers {
            auc: mean(|r| r.auc),
            pauc: mean(|r| r.pauc),
            level_auc: mean(|r| r.level_auc),
            // A domain's mean over the machines that have its normal clips.
            domain_auc: [0, 1].map(|d| {
                let v: Vec<f64> = rs.iter().filter_map(|r| r.domain_auc[d]).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            }),
            // Over every machine's three values together, as DCASE takes it.
            dcase_score: rs
                .iter()
                .map(dcase_values)
                .collect::<Option<Vec<[f64; 3]>>>()
                .and_then(|v| hmean(v.as_flattened())),
            n_normal: rs.iter().map(|r| r.normal.len()).sum(),
            n_anomaly: rs.iter().map(|r| r.anomaly.len()).sum(),
            events: [0, 1].map(|i| rs.iter().map(|r| r.events[i]).sum()),
            decisions: [0, 1, 2]
                .map(|i| rs.iter().map(|r| decision_metrics(r)[i]).sum::<f64>() / n),
        }
    }
}

/// One line of `hark eval`'s output: a table row, or with `json` a JSON object.
/// `machines`: the line is a set's mean over that many machines (`"machines": N`).
pub(super) fn result_line(json: bool, name: &str, n: &Numbers, machines: Option<usize>) -> String {
    if json {
        let mut v = serde_json::json!({
            "set": name, "auc": n.auc, "pauc": n.pauc, "level_auc": n.level_auc,
            "n_normal": n.n_normal, "n_anomaly": n.n_anomaly,
            "false_alarms": n.events[0], "detected": n.events[1],
            "precision": n.decisions[0], "recall": n.decisions[1], "f1": n.decisions[2],
        });
        if let Some(m) = machines {
            v["machines"] = m.into();
        }
        for (d, a) in DOMAINS.iter().zip(n.domain_auc) {
            if let Some(a) = a {
                v[format!("auc_{d}")] = a.into();
            }
        }
        if let Some(h) = n.dcase_score {
            v["dcase_score"] = h.into();
        }
        v.to_string()
    } else {
        let name = match machines {
            Some(m) => format!("{name} (mean of {m})"),
            None => name.to_string(),
        };
        let mut line = format!(
            "{:<24} AUC {:6.2}  pAUC {:6.2}  level AUC {:6.2}  ({} normal / {} anomaly)  \
             events in {}/{} normal, {}/{} anomaly (F1 {:.2})",
            name,
            100.0 * n.auc,
            100.0 * n.pauc,
            100.0 * n.level_auc,
            n.n_normal,
            n.n_anomaly,
            n.events[0],
            n.n_normal,
            n.events[1],
            n.n_anomaly,
            n.decisions[2],
        );
        for (d, a) in DOMAINS.iter().zip(n.domain_auc) {
            if let Some(a) = a {
                line.push_str(&format!("  {d} AUC {:6.2}", 100.0 * a));
            }
        }
        if let Some(h) = n.dcase_score {
            line.push_str(&format!("  DCASE score {:6.2}", 100.0 * h));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_files_are_named_as_dcase_submissions() {
        // DCASE 2020: anomaly_score_fan_id_00.csv; 2021+: ..._section_00_test.csv.
        assert_eq!(submission_name("fan", "id_00"), "fan_id_00");
        assert_eq!(
            submission_name("dcase2023/ToyCar", "section_00"),
            "ToyCar_section_00_test"
        );
        assert_eq!(submission_name("my/recordings", ""), "recordings");
        let dir = Path::new("out");
        assert_eq!(
            scores_file(dir, "fan_id_00"),
            Path::new("out/anomaly_score_fan_id_00.csv")
        );
        assert_eq!(
            decisions_file(dir, "ToyCar_section_00_test"),
            Path::new("out/decision_result_ToyCar_section_00_test.csv")
        );
    }
}
