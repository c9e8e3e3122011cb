//! Where an enrolment window came from, so that calibration leaves its neighbours
//! (overlapping windows, or a piece's other knocks) out of its leave-one-out score.

use std::collections::HashMap;

use super::RowNote;

/// Knocks of one recording this close in order (this many before and after) are left
/// out of each other's calibration score. A station knocks a piece several times in a
/// row, and a knock's nearest neighbour is then almost always a knock of the same
/// piece: calibrated against it, the threshold says how alike one piece's knocks are,
/// not how a new good piece will score. Measured on ../shared/data/stones (36 hits of
/// 6 stones, 3-9 hits each, in order; tap model): knock by knock the threshold is
/// 0.0068 and 24 of 26 good hits of new stones are over it; with any guard from 1 to
/// 8 it is 0.0313, as leaving each whole stone out gives (`--item`), and 2 of 26 are
/// over it. On bottles (one strike per bottle) it changes nothing (0.02145 either way).
/// 4 is what file enrolment always used (the tap model's window overlap), so up to 5
/// knocks of a piece in a row are left out together.
pub const KNOCK_GUARD: u32 = 4;

/// Where an enrolment window came from: windows of the same segment closer than
/// `guard` positions overlap in time and are left out of each other's calibration score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Clip or recording segment.
    pub segment: u32,
    /// Window index inside the segment.
    pub index: u32,
}

impl Origin {
    /// Window `index` of `segment`. With `whole`, the segment is an item left out as a
    /// whole (`--item`): every window of it gets index 0, so each is in the others'
    /// way, however far apart they are.
    pub fn of(segment: u32, index: u32, whole: bool) -> Origin {
        Origin {
            segment,
            index: if whole { 0 } else { index },
        }
    }

    /// The origins of bank rows, recovered from their notes when a bank is rebuilt with
    /// more rows (`learn_stop`, `enroll_stop`), so that what was left out of each
    /// other's calibration score at enrolment still is:
    /// - rows of a named item (`RowNote::item`) are one segment, each at index 0: the
    ///   whole item is left out, as `--item` enrolment left it;
    /// - other rows of one clip are one segment, indexed as `spacing` says;
    /// - a row without a note (banks from before notes) is a segment of its own.
    ///
    /// Without this a rebuild let every window count its overlapping neighbour as an
    /// independent normal: the leave-one-out scores shrank and the threshold with them
    /// (fan's bank: 2.66 → 2.27 from a rebuild that added nothing).
    pub fn from_notes(notes: &[Option<RowNote>], spacing: Spacing) -> Vec<Origin> {
        let mut count = 0u32;
        let mut fresh = move || {
            count += 1;
            count - 1
        };
        // A segment per named item and per clip; the two never share one.
        let mut segments: HashMap<(bool, &str), u32> = HashMap::new();
        let mut origins: Vec<Origin> = notes
            .iter()
            .map(|note| match note {
                Some(n) => {
                    let key = match &n.item {
                        Some(item) => (true, item.as_str()),
                        None => (false, n.clip.as_str()),
                    };
                    Origin {
                        segment: *segments.entry(key).or_insert_with(&mut fresh),
                        index: match spacing {
                            Spacing::Windows { hop_s } if n.item.is_none() => {
                                (f64::from(n.t) / hop_s).round().max(0.0) as u32
                            }
                            _ => 0,
                        },
                    }
                }
                None => Origin {
                    segment: fresh(),
                    index: 0,
                },
            })
            .collect();
        if spacing == Spacing::Knocks {
            // Each unnamed knock's place among its clip's knocks, in time order.
            let mut noted: Vec<(u32, f32, usize)> = notes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let n = n.as_ref().filter(|n| n.item.is_none())?;
                    Some((origins[i].segment, n.t, i))
                })
                .collect();
            noted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let mut places: HashMap<u32, u32> = HashMap::new();
            for (segment, _, i) in noted {
                let place = places.entry(segment).or_default();
                origins[i].index = *place;
                *place += 1;
            }
        }
        origins
    }
}

/// How the rows of one clip follow each other, for [`Origin::from_notes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spacing {
    /// Windows every `hop_s` seconds: a row's index is its start time over `hop_s`.
    Windows {
        /// Seconds between consecutive windows.
        hop_s: f64,
    },
    /// Knocks, at whatever times: a row's index is its place among its clip's knocks.
    Knocks,
}
