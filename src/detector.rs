//! Turns window scores into decisions: k-of-n raise, m-clean clear. Pure and tested.
//!
//! One window over threshold is not an alarm: `raise_k` of the last `raise_n` windows
//! must be. Once raised, `clear_m` consecutive windows under threshold clear it. This
//! hysteresis is what keeps a pump's odd clank from paging someone at 3 a.m.

use crate::bank::NormalBank;

/// What a window changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// An anomaly started with this window.
    Raise,
    /// The running anomaly ended with this window.
    Clear,
}

/// The rule's defaults (config keys `raise_k`, `raise_n`, `clear_m`): 3 of the last 4
/// windows over threshold raise, 8 clean windows in a row clear.
pub const RAISE_K: usize = 3;
/// See [`RAISE_K`].
pub const RAISE_N: usize = 4;
/// See [`RAISE_K`].
pub const CLEAR_M: usize = 8;

/// Whether the daemon would act on one clip's window scores (in time order) at
/// `threshold`: call a knock defective (`tap`: any score over it) or raise an event by
/// the default rule (continuous).
pub fn clip_alarms(threshold: f32, tap: bool, scores: impl IntoIterator<Item = f32>) -> bool {
    match tap {
        true => scores.into_iter().any(|s| s > threshold),
        false => Hysteresis::with_defaults(threshold).raises(scores),
    }
}

/// The k-of-n raise, m-clean clear rule over a stream of window scores, on its own
/// (no bank), so that `hark eval` can ask of a clip's scores what the daemon would do.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    threshold: f32,
    raise_k: u32,
    raise_n: u32,
    clear_m: usize,
    /// Bit i set: the window i steps ago was over threshold (bit 0 = newest).
    history: u64,
    clean_run: usize,
    active: bool,
}

impl Hysteresis {
    /// A rule at `threshold`: `raise_k` of the last `raise_n` (at most 64) windows over
    /// it raise, `clear_m` in a row under it clear.
    pub fn new(threshold: f32, raise_k: usize, raise_n: usize, clear_m: usize) -> Hysteresis {
        Hysteresis {
            threshold,
            raise_k: raise_k as u32,
            raise_n: raise_n as u32,
            clear_m,
            history: 0,
            clean_run: 0,
            active: false,
        }
    }

    /// The rule with the daemon's defaults ([`RAISE_K`], [`RAISE_N`], [`CLEAR_M`]).
    pub fn with_defaults(threshold: f32) -> Hysteresis {
        Hysteresis::new(threshold, RAISE_K, RAISE_N, CLEAR_M)
    }

    /// Whether the daemon would raise an event somewhere in `scores` (one clip's
    /// windows in time order), starting clean.
    pub fn raises(mut self, scores: impl IntoIterator<Item = f32>) -> bool {
        scores
            .into_iter()
            .any(|s| self.update(s) == Transition::Raise)
    }

    /// Feeds one window's score; returns what it changed.
    pub fn update(&mut self, score: f32) -> Transition {
        let over = score > self.threshold;
        let mask = if self.raise_n >= 64 {
            u64::MAX
        } else {
            (1u64 << self.raise_n) - 1
        };
        self.history = ((self.history << 1) | over as u64) & mask;
        self.clean_run = if over { 0 } else { self.clean_run + 1 };
        if !self.active && self.history.count_ones() >= self.raise_k {
            self.active = true;
            Transition::Raise
        } else if self.active && self.clean_run >= self.clear_m {
            self.active = false;
            self.history = 0;
            Transition::Clear
        } else {
            Transition::None
        }
    }
}

/// Scores windows against a bank and keeps the hysteresis state.
#[derive(Debug, Clone)]
pub struct Detector {
    bank: NormalBank,
    rule: Hysteresis,
}

impl Detector {
    /// A detector with the bank's calibrated threshold times `threshold_scale`.
    pub fn new(
        bank: NormalBank,
        threshold_scale: f64,
        raise_k: usize,
        raise_n: usize,
        clear_m: usize,
    ) -> Detector {
        let threshold = bank.calibration.threshold * threshold_scale as f32;
        Detector {
            bank,
            rule: Hysteresis::new(threshold, raise_k, raise_n, clear_m),
        }
    }

    /// Scores with `bank` from now on (an operator's `learn_stop` or `false_alarm`),
    /// at its threshold times `threshold_scale`. The hysteresis state stays: an
    /// anomaly that is running goes on, and ends by `clear_m` clean windows as it
    /// would have, so subscribers always get its end.
    pub fn replace_bank(&mut self, bank: NormalBank, threshold_scale: f64) {
        self.rule.threshold = bank.calibration.threshold * threshold_scale as f32;
        self.bank = bank;
    }

    /// The effective threshold.
    pub fn threshold(&self) -> f32 {
        self.rule.threshold
    }

    /// The bank in use.
    pub fn bank(&self) -> &NormalBank {
        &self.bank
    }

    /// Whether an anomaly is running.
    pub fn active(&self) -> bool {
        self.rule.active
    }

    /// Cosine distance of a unit-norm embedding to the nearest normal one.
    pub fn score(&self, embedding: &[f32]) -> f32 {
        self.bank.nearest(embedding).0
    }

    /// The score and which bank row was nearest (for explanations).
    pub fn nearest(&self, embedding: &[f32]) -> (f32, usize) {
        self.bank.nearest(embedding)
    }

    /// Feeds one window's score; returns what it changed.
    pub fn update(&mut self, score: f32) -> Transition {
        self.rule.update(score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::Origin;

    fn detector(k: usize, n: usize, m: usize) -> Detector {
        let e = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let o = [
            Origin {
                segment: 0,
                index: 0,
            },
            Origin {
                segment: 1,
                index: 0,
            },
        ];
        let mut bank =
            NormalBank::build(&e, &o, &[], 0, 10, crate::bank::Target::continuous(), "h").unwrap();
        bank.calibration.threshold = 0.5;
        Detector::new(bank, 1.0, k, n, m)
    }

    #[test]
    fn needs_k_of_n_to_raise() {
        let mut d = detector(3, 4, 2);
        assert_eq!(d.update(0.9), Transition::None);
        assert_eq!(d.update(0.1), Transition::None);
        assert_eq!(d.update(0.9), Transition::None);
        assert_eq!(d.update(0.9), Transition::Raise);
        assert!(d.active());
    }

    #[test]
    fn isolated_spikes_never_raise() {
        let mut d = detector(3, 4, 2);
        for i in 0..100 {
            let s = if i % 3 == 0 { 0.9 } else { 0.1 };
            assert_eq!(d.update(s), Transition::None);
        }
    }

    #[test]
    fn needs_m_clean_windows_to_clear() {
        let mut d = detector(1, 1, 3);
        assert_eq!(d.update(0.9), Transition::Raise);
        assert_eq!(d.update(0.1), Transition::None);
        assert_eq!(d.update(0.1), Transition::None);
        assert_eq!(
            d.update(0.9),
            Transition::None,
            "a dirty window resets the count"
        );
        assert_eq!(d.update(0.1), Transition::None);
        assert_eq!(d.update(0.1), Transition::None);
        assert_eq!(d.update(0.1), Transition::Clear);
        assert!(!d.active());
    }

    #[test]
    fn a_new_bank_keeps_a_running_anomaly_until_it_clears() {
        let mut d = detector(2, 2, 2);
        assert_eq!(d.update(0.9), Transition::None);
        assert_eq!(d.update(0.9), Transition::Raise);
        // The operator's new bank puts the threshold above these scores.
        let mut bank = d.bank().clone();
        bank.calibration.threshold = 1.0;
        d.replace_bank(bank, 1.0);
        assert_eq!(d.threshold(), 1.0);
        assert!(d.active(), "the running anomaly goes on");
        assert_eq!(d.update(0.9), Transition::None);
        assert_eq!(
            d.update(0.9),
            Transition::Clear,
            "and ends: no second raise"
        );
        assert!(!d.active());
    }

    #[test]
    fn a_clip_raises_only_where_the_rule_would() {
        let rule = || Hysteresis::new(0.5, 3, 4, 8);
        assert!(rule().raises([0.9, 0.1, 0.9, 0.9]));
        assert!(
            !rule().raises([0.9, 0.1, 0.9, 0.1, 0.9, 0.1]),
            "2 of every 4"
        );
        assert!(!rule().raises([0.9, 0.9]), "fewer windows than raise_k");
        assert!(
            !rule().raises([0.5, 0.5, 0.5]),
            "at the threshold is not over it"
        );
        assert!(Hysteresis::with_defaults(0.5).raises([1.0; 3]));
    }

    #[test]
    fn scale_moves_the_threshold() {
        let d = detector(1, 1, 1);
        assert_eq!(d.threshold(), 0.5);
        assert!((d.score(&[1.0, 0.0])).abs() < 1e-6);
    }
}
