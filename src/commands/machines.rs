//! What a DCASE clip's name says: its label (`normal_…`, `…_test_anomaly_…`), its
//! machine (`id_02`, `section_01`) and its domain (`source`, `target`), and how
//! `hark eval` groups a set's clips by machine, one bank per machine.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The label of a test clip from its name: `normal_…`/`anomaly_…` (DCASE 2020) or
/// `…_test_normal_…`/`…_test_anomaly_…` (DCASE 2023). `None`: unlabelled.
pub fn label(path: &Path) -> Option<bool> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.starts_with("anomaly") || name.contains("_test_anomaly_") {
        Some(true)
    } else if name.starts_with("normal") || name.contains("_test_normal_") {
        Some(false)
    } else {
        None
    }
}

/// DCASE 2021+'s two domains, as test clip names carry them.
pub const DOMAINS: [&str; 2] = ["source", "target"];

/// The domain of a DCASE 2021+ clip from its name (`section_00_target_test_normal_…`):
/// an index into [`DOMAINS`], or `None`.
pub fn domain(path: &Path) -> Option<usize> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    DOMAINS
        .iter()
        .position(|d| name.contains(&format!("_{d}_")) || name.starts_with(&format!("{d}_")))
}

/// The machine identity in a DCASE file name: `id_03`, `section_00`, or "".
pub fn machine_id(name: &str) -> String {
    for key in ["id_", "section_"] {
        if let Some(pos) = name.find(key) {
            let digits: String = name[pos + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !digits.is_empty() {
                return format!("{key}{digits}");
            }
        }
    }
    String::new()
}

/// A group of clips `hark eval` scores with one bank: a whole set, or one machine of it.
#[derive(Debug, PartialEq)]
pub(super) struct Group {
    /// `SET`, or `SET/id_02` (`SET/section_01`) for one machine of a set of several.
    pub name: String,
    /// The machine its clips name (`id_02`, `section_01`), or "" where they name none.
    pub machine: String,
    /// Its normal `train/` clips, sorted by name.
    pub train: Vec<PathBuf>,
    /// Its labelled `test/` clips, sorted by name.
    pub test: Vec<PathBuf>,
}

/// The groups of a set. A set whose `train/` clips name one machine (or none) is one
/// group. A set of several (a DCASE download: `normal_id_00_…` to `normal_id_06_…`, or
/// `section_00_…` to `section_05_…`) is one group per machine, each with a bank of its
/// own normal clips and an AUC of its own: as DCASE scores them, and as the daemon
/// runs, one bank per machine. A test clip of a machine with no `train/` clip is an
/// error that names it.
pub(super) fn groups(
    name: &str,
    train: Vec<PathBuf>,
    test: Vec<PathBuf>,
) -> anyhow::Result<Vec<Group>> {
    let id = |p: &PathBuf| machine_id(&p.file_name().unwrap_or_default().to_string_lossy());
    let mut by_id: std::collections::BTreeMap<String, Group> = std::collections::BTreeMap::new();
    for file in train.iter() {
        let id = id(file);
        by_id
            .entry(id.clone())
            .or_insert_with(|| Group {
                name: format!("{name}/{id}"),
                machine: id.clone(),
                train: Vec::new(),
                test: Vec::new(),
            })
            .train
            .push(file.clone());
    }
    if by_id.len() <= 1 {
        return Ok(vec![Group {
            name: name.to_string(),
            machine: by_id.into_keys().next().unwrap_or_default(),
            train,
            test,
        }]);
    }
    for file in test {
        let id = id(&file);
        let Some(group) = by_id.get_mut(&id) else {
            let what = if id.is_empty() {
                "no machine id".to_string()
            } else {
                id
            };
            bail!(
                "{}: {what}, but the set's train/ clips are of {} (one bank per machine: \
                 every test clip needs train/ clips of its own machine)",
                file.display(),
                by_id.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        group.test.push(file);
    }
    Ok(by_id.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_from_dcase_names() {
        assert_eq!(machine_id("normal_id_03_00000012.wav"), "id_03");
        assert_eq!(
            machine_id("section_00_source_train_normal_0001_car_A1.wav"),
            "section_00"
        );
        assert_eq!(machine_id("healthy_12.wav"), "");
    }

    #[test]
    fn a_set_of_several_machines_is_scored_one_machine_at_a_time() {
        let paths = |names: &[&str]| -> Vec<PathBuf> { names.iter().map(PathBuf::from).collect() };
        // One machine (or none named): the whole set, as it is.
        let one = groups(
            "fan",
            paths(&["t/normal_id_00_1.wav", "t/normal_id_00_2.wav"]),
            paths(&["s/anomaly_id_00_1.wav", "s/normal_id_04_1.wav"]),
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].name.as_str(), one[0].test.len()), ("fan", 2));
        assert_eq!(one[0].machine, "id_00");
        // Several: one group per machine, each with its own train and test clips.
        let train = paths(&[
            "t/normal_id_00_1.wav",
            "t/normal_id_02_1.wav",
            "t/normal_id_00_2.wav",
        ]);
        let test = paths(&["s/anomaly_id_02_1.wav", "s/normal_id_00_1.wav"]);
        let several = groups("fan", train.clone(), test).unwrap();
        assert_eq!(
            several,
            [
                Group {
                    name: "fan/id_00".into(),
                    machine: "id_00".into(),
                    train: paths(&["t/normal_id_00_1.wav", "t/normal_id_00_2.wav"]),
                    test: paths(&["s/normal_id_00_1.wav"]),
                },
                Group {
                    name: "fan/id_02".into(),
                    machine: "id_02".into(),
                    train: paths(&["t/normal_id_02_1.wav"]),
                    test: paths(&["s/anomaly_id_02_1.wav"]),
                },
            ]
        );
        // DCASE 2021+ names sections instead.
        let sections = groups(
            "gearbox",
            paths(&[
                "section_00_source_train_normal_0001.wav",
                "section_01_source_train_normal_0001.wav",
            ]),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(sections[1].name, "gearbox/section_01");
        // A test clip of a machine with no train/ clip: an error that names it.
        let e = groups("fan", train, paths(&["s/anomaly_id_06_1.wav"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "s/anomaly_id_06_1.wav: id_06, but the set's train/ clips are of id_00, id_02 \
             (one bank per machine: every test clip needs train/ clips of its own machine)"
        );
    }

    #[test]
    fn labels_from_dcase_2020_and_2023_names() {
        assert_eq!(label(Path::new("a/anomaly_id_00_0001.wav")), Some(true));
        assert_eq!(label(Path::new("normal_id_00_0001.wav")), Some(false));
        assert_eq!(
            label(Path::new("section_00_source_test_anomaly_0001_car_A1.wav")),
            Some(true)
        );
        assert_eq!(
            label(Path::new("section_00_target_test_normal_0003.wav")),
            Some(false)
        );
        assert_eq!(
            label(Path::new("section_00_source_train_normal_0001.wav")),
            None
        );
        assert_eq!(label(Path::new("recording.wav")), None);
    }
}
