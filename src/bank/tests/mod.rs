//! Tests of the bank: distances, coreset, calibration, rebuilds and the file.
use super::*;
use std::path::Path;

mod file;

fn unit(v: &[f32]) -> Vec<f32> {
    let n = dot(v, v).sqrt();
    v.iter().map(|x| x / n).collect()
}

fn origins(n: usize) -> Vec<Origin> {
    (0..n)
        .map(|i| Origin {
            segment: i as u32,
            index: 0,
        })
        .collect()
}

#[test]
fn identical_is_zero_and_orthogonal_is_one() {
    let e = vec![unit(&[1.0, 0.0, 0.0]), unit(&[0.0, 1.0, 0.0])];
    let bank = NormalBank::build(&e, &origins(2), &[], 0, 10, Target::continuous(), "h").unwrap();
    assert!(bank.nearest(&[1.0, 0.0, 0.0]).0.abs() < 1e-6);
    assert!((bank.nearest(&[0.0, 0.0, 1.0]).0 - 1.0).abs() < 1e-6);
    assert_eq!(bank.nearest(&[0.0, 1.0, 0.0]).1, 1);
}

#[test]
fn nearest_among_leaves_rows_out() {
    let e = vec![unit(&[1.0, 0.0, 0.0]), unit(&[0.0, 1.0, 0.0])];
    let bank = NormalBank::build(&e, &origins(2), &[], 0, 10, Target::continuous(), "h").unwrap();
    let q = [1.0, 0.0, 0.0];
    assert!(bank.nearest_among(&q, |_| true).unwrap().abs() < 1e-6);
    assert!((bank.nearest_among(&q, |i| i != 0).unwrap() - 1.0).abs() < 1e-6);
    assert_eq!(bank.nearest_among(&q, |_| false), None);
}

#[test]
fn k_center_keeps_the_spread() {
    // Three tight clusters of 10; a cap of 3 keeps one of each.
    let mut e = Vec::new();
    for axis in 0..3 {
        for j in 0..10 {
            let mut v = vec![0.01 * j as f32; 3];
            v[axis] = 1.0;
            e.push(unit(&v));
        }
    }
    let bank = NormalBank::build(&e, &origins(30), &[], 0, 3, Target::continuous(), "h").unwrap();
    assert_eq!(bank.len(), 3);
    for v in &e {
        assert!(bank.nearest(v).0 < 0.01);
    }
}

#[test]
fn calibration_quantile() {
    let scores: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
    let c = calibrate(
        &scores,
        Target {
            far: 0.1,
            margin: THRESHOLD_MARGIN,
            metric: Metric::Cosine,
        },
    );
    assert!((c.threshold - THRESHOLD_MARGIN * 0.9).abs() < 1e-6);
    assert!((c.score_mean - 0.5).abs() < 1e-6);
    assert_eq!(c.score_max, 1.0);
}

#[test]
fn knock_banks_take_no_margin_running_machines_twice_the_quantile() {
    let scores: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
    let tap = calibrate(&scores, Target::for_mode("tap"));
    let cont = calibrate(&scores, Target::for_mode("continuous"));
    assert!((tap.threshold - 0.99).abs() < 1e-6, "{tap:?}");
    assert!((cont.threshold - 2.0 * 0.99).abs() < 1e-6, "{cont:?}");
    assert_eq!((tap.margin, cont.margin), (1.0, 2.0));
}

#[test]
fn leave_one_out_skips_overlapping_windows() {
    // Two windows of one segment next to each other are identical; the guard hides
    // that, so each is scored against the other segment only.
    let e = [unit(&[1.0, 0.0]), unit(&[1.0, 0.0]), unit(&[0.0, 1.0])];
    let o = [
        Origin {
            segment: 0,
            index: 0,
        },
        Origin {
            segment: 0,
            index: 1,
        },
        Origin {
            segment: 1,
            index: 0,
        },
    ];
    let s = leave_one_out_scores(&e.concat(), 2, &o, 1, false);
    assert!((s[0] - 1.0).abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6);
}

#[test]
fn a_bank_rebuilt_from_its_notes_keeps_its_threshold() {
    // Two clips of 39 overlapping windows every 0.25 s, in runs of 3 near copies:
    // each window's near copies are within the guard, the next run is not.
    let (hop_s, guard) = (0.25, 2);
    let mut rows = Vec::new();
    let (mut origins, mut notes) = (Vec::new(), Vec::new());
    for clip in 0..2 {
        for i in 0..39 {
            let a = 0.05 * (i / 3) as f32 + 0.003 * (i % 3) as f32 + clip as f32;
            rows.push(unit(&[a.cos(), a.sin(), 0.2]));
            origins.push(Origin {
                segment: clip,
                index: i,
            });
            notes.push(Some(RowNote {
                profile: vec![],
                clip: format!("clip{clip}.wav"),
                t: i as f32 * hop_s,
                item: None,
            }));
        }
    }
    let first = NormalBank::build(
        &rows,
        &origins,
        &notes,
        guard,
        100,
        Target::continuous(),
        "h",
    )
    .unwrap();
    let rebuild = |o: &[Origin]| {
        NormalBank::build(&rows, o, &notes, guard, 100, Target::continuous(), "h")
            .unwrap()
            .calibration
    };
    let recovered = Origin::from_notes(
        &notes,
        Spacing::Windows {
            hop_s: f64::from(hop_s),
        },
    );
    assert_eq!(recovered, origins);
    assert_eq!(rebuild(&recovered), first.calibration);
    // What a rebuild did before: every row its own segment. Near copies then count
    // as independent normals and the threshold falls.
    let alone: Vec<Origin> = (0..78)
        .map(|i| Origin {
            segment: i,
            index: 0,
        })
        .collect();
    let fallen = rebuild(&alone).threshold;
    assert!(
        fallen < 0.5 * first.calibration.threshold,
        "{fallen} vs {}",
        first.calibration.threshold
    );
    // Rows without a note stand alone, each a segment of its own.
    let mixed = Origin::from_notes(&[None, notes[0].clone(), None, notes[1].clone()], QUARTER);
    let segments: Vec<u32> = mixed.iter().map(|o| o.segment).collect();
    assert_eq!(segments, [0, 1, 2, 1]);
    assert_eq!((mixed[1].index, mixed[3].index), (0, 1));
}

/// Windows 0.25 s apart, as [`wander`] makes them.
const QUARTER: Spacing = Spacing::Windows { hop_s: 0.25 };

#[test]
fn knocks_are_placed_in_time_order_within_their_clip() {
    // Rows as a station's bank holds them: knocks of two live runs, not in time
    // order (a capped bank keeps its rows in k-center order), one without a note.
    let knock = |clip: &str, t: f32| {
        Some(RowNote {
            profile: vec![],
            clip: clip.into(),
            t,
            item: None,
        })
    };
    let notes = [
        knock("live:a", 7.5),
        knock("live:b", 0.4),
        None,
        knock("live:a", 1.2),
        knock("live:a", 30.0),
        knock("live:b", 2.0),
    ];
    let origins = Origin::from_notes(&notes, Spacing::Knocks);
    let placed: Vec<(u32, u32)> = origins.iter().map(|o| (o.segment, o.index)).collect();
    // Clip a is segment 0, b 1, the row without a note 2: each knock's index is its
    // place among its clip's knocks, however far apart in time they are, so a guard
    // of k leaves k knocks before and after out (a piece knocked several times).
    assert_eq!(placed, [(0, 1), (1, 0), (2, 0), (0, 0), (0, 2), (1, 1)]);
    // As windows, the same rows are indexed by time (0.25 s hops): knocks seconds
    // apart are far apart.
    let as_windows = Origin::from_notes(&notes, QUARTER);
    assert_eq!((as_windows[0].index, as_windows[3].index), (30, 5));
}

/// Notes of two files of item S1 (`enroll --item`), a clip that happens to be called
/// S1, and a live round in which item S2 was named before two unnamed knocks.
fn named_notes() -> Vec<Option<RowNote>> {
    let note = |clip: &str, t: f32, item: Option<&str>| {
        Some(RowNote {
            profile: vec![-40.0, -41.0],
            clip: clip.into(),
            t,
            item: item.map(str::to_string),
        })
    };
    vec![
        note("a.wav", 0.0, Some("S1")),
        note("b.wav", 0.5, Some("S1")),
        note("S1", 0.0, None),
        note("live:r", 3.0, Some("S2")),
        note("live:r", 2.0, None),
        note("live:r", 1.0, None),
    ]
}

#[test]
fn named_items_are_left_out_whole() {
    let notes = named_notes();
    let placed = |spacing| -> Vec<(u32, u32)> {
        let origins = Origin::from_notes(&notes, spacing);
        origins.iter().map(|o| (o.segment, o.index)).collect()
    };
    // An item's rows are one segment at index 0 (each in every other's way, however
    // far apart), whatever their clips; the unnamed rows are placed in their clip.
    assert_eq!(
        placed(Spacing::Knocks),
        [(0, 0), (0, 0), (1, 0), (2, 0), (3, 1), (3, 0)]
    );
    assert_eq!(
        placed(QUARTER),
        [(0, 0), (0, 0), (1, 0), (2, 0), (3, 8), (3, 4)]
    );
}

/// `n` windows of clip `clip`, 0.25 s apart, wandering on the unit sphere (each a
/// small step from the last, so overlapping neighbours are close), with notes.
fn wander(clip: u32, n: usize) -> (Vec<Vec<f32>>, Vec<Option<RowNote>>) {
    let mut state = 0x9E37_79B9_u32.wrapping_mul(clip + 1);
    let mut step = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let mut x = [1.0f32, clip as f32, 0.5, -0.3];
    (0..n)
        .map(|i| {
            x.iter_mut().for_each(|v| *v += 0.05 * step());
            let note = RowNote {
                profile: vec![],
                clip: format!("clip{clip}"),
                t: i as f32 * 0.25,
                item: None,
            };
            (unit(&x), Some(note))
        })
        .unzip()
}

#[test]
fn extending_a_capped_bank_lands_near_enrolling_every_window() {
    let (guard, target) = (2, Target::continuous());
    let (mut rows, mut notes) = wander(0, 300);
    let (r1, n1) = wander(1, 300);
    rows.extend(r1);
    notes.extend(n1);
    let (new_rows, new_notes) = wander(2, 60);
    let build = |rows: &[Vec<f32>], notes: &[Option<RowNote>], cap: usize| {
        let origins = Origin::from_notes(notes, QUARTER);
        NormalBank::build(rows, &origins, notes, guard, cap, target, "h").unwrap()
    };
    let every: Vec<Vec<f32>> = rows.iter().chain(&new_rows).cloned().collect();
    let every_note: Vec<_> = notes.iter().chain(&new_notes).cloned().collect();
    let want = build(&every, &every_note, 10_000).calibration.threshold;
    for cap in [10_000, 80] {
        let bank = build(&rows, &notes, cap);
        let extended = bank
            .extend(
                new_rows.clone(),
                new_notes.clone(),
                QUARTER,
                guard,
                cap,
                target,
            )
            .unwrap();
        assert_eq!(extended.n_windows, 660);
        let got = extended.calibration.threshold;
        // A plain rebuild of the kept rows and the new ones, as `learn_stop` did.
        let kept: Vec<Vec<f32>> = bank.rows().chain(new_rows.clone()).collect();
        let kept_notes: Vec<_> = bank.notes().iter().chain(&new_notes).cloned().collect();
        let plain = build(&kept, &kept_notes, cap).calibration.threshold;
        if cap > 660 {
            assert_eq!(got, want, "an uncapped bank extends exactly");
        } else {
            assert!(
                (got / want - 1.0).abs() < 0.5 * (plain / want - 1.0).abs(),
                "capped at {cap}: extended {got}, plain rebuild {plain}, every window {want}"
            );
        }
    }
}

#[test]
fn a_large_bank_calibrates_on_a_spread_of_its_windows() {
    let (rows, notes) = wander(0, 6000);
    let origins = Origin::from_notes(&notes, QUARTER);
    let bank =
        NormalBank::build(&rows, &origins, &notes, 2, 100, Target::continuous(), "h").unwrap();
    // Every window's score, by brute force, against the 4,096 the bank used.
    let every: Vec<f32> = (0..rows.len())
        .map(|i| {
            (0..rows.len())
                .filter(|&j| i.abs_diff(j) > 2)
                .map(|j| 1.0 - dot(&rows[i], &rows[j]))
                .fold(f32::MAX, f32::min)
        })
        .collect();
    let full = calibrate(&every, Target::continuous());
    let ratio = bank.calibration.threshold / full.threshold;
    assert!(
        (ratio - 1.0).abs() < 0.05,
        "{ratio}: {:?} vs {full:?}",
        bank.calibration
    );
    assert_eq!(bank.n_windows, 6000);
}

/// Enrolment rows of a standardised bank: a 2-value unit embedding, then a 3-band
/// "profile" in dB (`level` ± 1, one band that never moves).
fn profiled(n: usize, level: f32) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            let a = i as f32 * 0.01;
            let wobble = (i % 3) as f32 - 1.0;
            vec![
                a.cos(),
                a.sin(),
                level + wobble,
                level - 10.0 - wobble,
                -100.0,
            ]
        })
        .collect()
}

fn standardised() -> Target {
    Target {
        metric: Metric::Standardised { embedding_dim: 2 },
        ..Target::continuous()
    }
}

#[test]
fn standardised_banks_hear_a_louder_window_that_cosine_cannot() {
    let rows = profiled(30, -40.0);
    let bank = NormalBank::build(&rows, &origins(30), &[], 0, 100, standardised(), "h").unwrap();
    assert_eq!(bank.metric(), "standardised");
    let normal = bank.nearest(&rows[7]).0;
    assert!(normal < 1e-3, "an enrolment row scores {normal}");
    // Same embedding, every band 10 dB louder: 5 spreads away in two of the three
    // bands. The unit-norm embedding alone cannot see it.
    let mut louder = rows[7].clone();
    louder[2..].iter_mut().for_each(|v| *v += 10.0);
    let score = bank.nearest(&louder).0;
    assert!(
        score > 3.0 * bank.calibration.threshold,
        "louder {score}, threshold {}",
        bank.calibration.threshold
    );
    // A band that never moved during enrolment: its spread is floored at a tenth
    // of the block's mean, so a 0.01 dB wobble in it stays below the threshold
    // (unfloored, it would be 10,000 spreads).
    let mut hum = rows[7].clone();
    hum[4] += 0.01;
    let hum = bank.nearest(&hum).0;
    assert!(
        hum < 0.5 * bank.calibration.threshold,
        "wobble {hum}, threshold {}",
        bank.calibration.threshold
    );
}

#[test]
fn standardised_scores_do_not_depend_on_units() {
    // The same windows with the profile in tenths of a dB (×10, offset): every
    // score is the same, since each value is measured in its own spreads.
    let rows = profiled(20, -40.0);
    let rescaled: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r[2..].iter_mut().for_each(|v| *v = *v * 10.0 + 7.0);
            r
        })
        .collect();
    let a = NormalBank::build(&rows, &origins(20), &[], 0, 100, standardised(), "h").unwrap();
    let b = NormalBank::build(&rescaled, &origins(20), &[], 0, 100, standardised(), "h").unwrap();
    assert!((a.calibration.threshold - b.calibration.threshold).abs() < 1e-4);
    let mut q = rows[3].clone();
    q[2] += 2.5;
    let mut q10 = rescaled[3].clone();
    q10[2] += 25.0;
    assert!((a.nearest(&q).0 - b.nearest(&q10).0).abs() < 1e-4);
}

#[test]
fn standardised_banks_round_trip_rebuild_and_refuse_a_bad_scale() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.bank.safetensors");
    let rows = profiled(10, -30.0);
    let mut bank =
        NormalBank::build(&rows, &origins(10), &[], 0, 100, standardised(), "h").unwrap();
    // A pushed row (an operator's good knock) is standardised like the others.
    let mut extra = rows[0].clone();
    extra[2] += 5.0;
    bank.push(&extra, None);
    assert!(bank.nearest(&extra).0 < 1e-3);
    bank.save(&p).unwrap();
    let back = NormalBank::load(&p, "h", Path::new("m")).unwrap();
    assert_eq!(back.metric(), "standardised");
    assert_eq!(back.calibration, bank.calibration);
    let mut q = rows[4].clone();
    q[3] -= 3.0;
    assert!((back.nearest(&q).0 - bank.nearest(&q).0).abs() < 1e-6);
    // rows() gives the values the model made, to rebuild the bank from.
    let again: Vec<Vec<f32>> = back.rows().collect();
    let worst = again
        .iter()
        .zip(rows.iter().chain([&extra]))
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max);
    assert!(worst < 1e-3, "rows() drifted by {worst}");
    // A scale of zero would make every window score 0: never an alarm.
    let mut sc = back.scaling.clone().unwrap();
    sc.scale[1] = 0.0;
    let broken = NormalBank {
        scaling: Some(sc),
        ..back
    };
    broken.save(&p).unwrap();
    let e = NormalBank::load(&p, "h", Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.bank.safetensors") && e.contains("tensor `scale` value 1 = 0 must be"),
        "{e}"
    );
}

#[test]
fn a_capped_bank_stays_capped_and_keeps_what_it_was_taught() {
    // A full bank (cap 40 of 60 windows) is taught a new sound, five windows of it,
    // the way `false_alarm` teaches it (256 windows at most on a bank of 2,048);
    // capping again keeps it at 40 rows, the new sound and the old one under the
    // threshold, and leaves the calibration alone.
    let rows = profiled(60, -40.0);
    let mut bank = NormalBank::build(&rows, &origins(60), &[], 0, 40, standardised(), "h").unwrap();
    let calibration = bank.calibration.clone();
    let worst = |bank: &NormalBank, rows: &[Vec<f32>]| {
        rows.iter().map(|r| bank.nearest(r).0).fold(0.0, f32::max)
    };
    let worst_old = worst(&bank, &rows);
    let taught: Vec<Vec<f32>> = (0..5)
        .map(|i| {
            let mut r = rows[i].clone();
            r[3] += 12.0 + 0.1 * i as f32;
            r
        })
        .collect();
    let before = bank.nearest(&taught[4]).0;
    assert!(
        before > 3.0 * calibration.threshold,
        "a new sound scores {before}"
    );
    for (i, r) in taught.iter().enumerate() {
        let note = RowNote {
            profile: r[2..].to_vec(),
            clip: "live:taught".into(),
            t: i as f32,
            item: None,
        };
        bank.push(r, Some(note));
    }
    assert_eq!(bank.len(), 45);
    bank.cap(40);
    assert_eq!(bank.len(), 40);
    assert_eq!(bank.notes().len(), 40);
    assert_eq!(bank.calibration, calibration);
    let threshold = calibration.threshold;
    let worst_taught = worst(&bank, &taught);
    assert!(
        worst_taught < threshold,
        "taught: {worst_taught}, threshold {threshold}"
    );
    let (_, i) = bank.nearest(&taught[2]);
    assert_eq!(bank.note(i).map(|n| n.clip.as_str()), Some("live:taught"));
    let worst_new = worst(&bank, &rows);
    assert!(
        worst_new < threshold,
        "enrolled: {worst_old} under the first cap, {worst_new} now; threshold {threshold}"
    );
    // A bank under its cap is left as it is.
    let copy = bank.clone();
    bank.cap(100);
    assert_eq!(bank.len(), copy.len());
}
