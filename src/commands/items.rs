//! `--item REGEX`: which clips record the same object. A tap-test station's enrolment
//! often knocks each good piece several times (stones: 3-9 hits per stone), and a
//! machine's recording may be cut into several clips. A window's nearest other window
//! is then almost always one of the same object, so its leave-one-out score says how a
//! piece scores against *itself*, not how a piece the bank never heard will score, and
//! the threshold comes out far too low (stones, tap model: 24 of 26 good hits of new
//! stones called defective). With `--item`, calibration leaves the whole object out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Names each clip's item: its file name with the first match of a regex removed (as
/// `scripts/score-intervals.py --item` does). `_[0-9]+_ini\.wav$` makes
/// `normal_id_00_S01_3_ini.wav` an item `normal_id_00_S01`. A name the regex does not
/// match is an item of its own.
#[derive(Debug, Clone)]
pub struct Items(regex::Regex);

impl Items {
    /// Parses `--item`'s value; a bad regex is a one-line error that names it.
    pub fn parse(pattern: &str) -> anyhow::Result<Items> {
        let re = regex::Regex::new(pattern).map_err(|e| {
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("invalid").trim();
            anyhow::anyhow!("--item {pattern:?}: not a regular expression ({why})")
        })?;
        Ok(Items(re))
    }

    /// The item of the clip at `path`.
    pub fn of(&self, path: &Path) -> String {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        self.0.replacen(&name, 1, "").into_owned()
    }
}

/// Per clip, the number of its item (numbered in order of first appearance), and how
/// many items there are. Without `items` every clip is an item of its own. With them,
/// fewer than 2 items is an error: calibration leaves each item out, and a lone item
/// has nothing left to be scored against.
pub fn numbering(items: Option<&Items>, files: &[PathBuf]) -> anyhow::Result<(Vec<u32>, usize)> {
    let Some(items) = items else {
        return Ok(((0..files.len() as u32).collect(), files.len()));
    };
    let mut seen: HashMap<String, u32> = HashMap::new();
    let numbers = files
        .iter()
        .map(|f| {
            let next = seen.len() as u32;
            *seen.entry(items.of(f)).or_insert(next)
        })
        .collect();
    if seen.len() < 2 {
        anyhow::bail!(
            "--item {:?}: the {} clips are {} item; leaving each item out to calibrate needs at least 2",
            items.0.as_str(),
            files.len(),
            seen.len()
        );
    }
    Ok((numbers, seen.len()))
}

/// `items` from an optional `--item` value.
pub fn parse(pattern: Option<&str>) -> anyhow::Result<Option<Items>> {
    pattern.map(Items::parse).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regex_removed_from_the_name_names_the_item() {
        let items = Items::parse(r"_[0-9]+_ini\.wav$").unwrap();
        let files: Vec<PathBuf> = [
            "train/normal_id_00_S01_1_ini.wav",
            "train/normal_id_00_S01_2_ini.wav",
            "train/normal_id_00_S05_1_ini.wav",
            "train/normal_id_00_S01_3_ini.wav",
            "train/other.wav",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(items.of(&files[0]), "normal_id_00_S01");
        // Not matched: the whole name is the item.
        assert_eq!(items.of(&files[4]), "other.wav");
        assert_eq!(
            numbering(Some(&items), &files).unwrap(),
            (vec![0, 0, 1, 0, 2], 3)
        );
        // Without --item every clip is its own item.
        assert_eq!(numbering(None, &files).unwrap(), (vec![0, 1, 2, 3, 4], 5));
        // One item leaves nothing to calibrate against: an error that names the regex.
        let all = Items::parse(".*").unwrap();
        let err = numbering(Some(&all), &files).unwrap_err().to_string();
        assert!(
            err.starts_with("--item \".*\": the 5 clips are 1 item"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_regex_is_a_one_line_error_that_names_it() {
        let err = parse(Some("S([0-9]+")).unwrap_err().to_string();
        assert!(
            err.starts_with("--item \"S([0-9]+\": not a regular expression"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        assert!(parse(None).unwrap().is_none());
    }
}
