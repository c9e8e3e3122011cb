//! Tests of the bank: distances, coreset, calibration, rebuilds and the file.
use super::*;
use std::path::Path;

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

#[test]
fn named_items_are_left_out_whole_and_kept_in_the_bank_file() {
    let note = |clip: &str, t: f32, item: Option<&str>| {
        Some(RowNote {
            profile: vec![-40.0, -41.0],
            clip: clip.into(),
            t,
            item: item.map(str::to_string),
        })
    };
    // Two files of item S1 (`enroll --item`), a clip that happens to be called S1, and
    // a live round in which item S2 was named before two unnamed knocks.
    let notes = vec![
        note("a.wav", 0.0, Some("S1")),
        note("b.wav", 0.5, Some("S1")),
        note("S1", 0.0, None),
        note("live:r", 3.0, Some("S2")),
        note("live:r", 2.0, None),
        note("live:r", 1.0, None),
    ];
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

    // The bank file keeps each row's item; a bank without any has no `items` key.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.bank.safetensors");
    let rows: Vec<Vec<f32>> = (0..6).map(|i| unit(&[1.0, i as f32])).collect();
    let bank =
        NormalBank::build(&rows, &origins(6), &notes, 0, 16, Target::continuous(), "h").unwrap();
    bank.save(&p).unwrap();
    let back = NormalBank::load(&p, "h", Path::new("m")).unwrap();
    assert_eq!(back.notes(), bank.notes());
    let unnamed: Vec<Option<RowNote>> = notes
        .iter()
        .map(|n| n.clone().map(|n| RowNote { item: None, ..n }))
        .collect();
    let plain = NormalBank::build(
        &rows,
        &origins(6),
        &unnamed,
        0,
        16,
        Target::continuous(),
        "h",
    )
    .unwrap();
    plain.save(&p).unwrap();
    assert!(!String::from_utf8_lossy(&std::fs::read(&p).unwrap()).contains("items"));
    assert_eq!(
        NormalBank::load(&p, "h", Path::new("m")).unwrap().notes(),
        &unnamed[..]
    );

    // A bad `items` value is a one-line error naming the key.
    bank.save(&p).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    // `"S2"` in the JSON list becomes `1234`: the same length, so the header's length
    // prefix stays right.
    let good = br#"\"S2\""#;
    let at = bytes.windows(good.len()).position(|w| w == good).unwrap();
    bytes[at..at + good.len()].copy_from_slice(b"1234  ");
    let edited = bytes;
    let e = NormalBank::from_bytes(&edited, &p, "h", Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.bank.safetensors") && e.contains("`items`") && !e.contains('\n'),
        "{e}"
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
fn save_load_roundtrip_and_model_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.bank.safetensors");
    let e = vec![unit(&[1.0, 2.0]), unit(&[2.0, 1.0]), unit(&[1.0, 1.0])];
    let bank = NormalBank::build(&e, &origins(3), &[], 0, 10, Target::continuous(), "abc").unwrap();
    bank.save(&p).unwrap();
    let back = NormalBank::load(&p, "abc", Path::new("m.safetensors")).unwrap();
    assert_eq!(back.calibration, bank.calibration);
    assert_eq!(back.len(), 3);
    let e = NormalBank::load(&p, "def", Path::new("m.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("abc") && e.contains("def") && e.contains("b.bank.safetensors"),
        "{e}"
    );
    std::fs::write(&p, b"\x08\0\0\0\0\0\0\0{}").unwrap();
    assert!(NormalBank::load(&p, "abc", Path::new("m")).is_err());
}

#[test]
fn notes_survive_the_coreset_and_a_save() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.bank.safetensors");
    let e = vec![unit(&[1.0, 0.0]), unit(&[1.0, 0.001]), unit(&[0.0, 1.0])];
    let note = |clip: &str, t: f32, level: f32| {
        Some(RowNote {
            profile: vec![level, level + 1.0, level + 2.0],
            clip: clip.into(),
            t,
            item: None,
        })
    };
    let notes = vec![note("a.wav", 0.0, -50.0), note("a.wav", 0.5, -49.0), None];
    // A cap of 2 keeps rows 0 and 2 (row 1 sits on row 0): notes follow their rows.
    let mut bank =
        NormalBank::build(&e, &origins(3), &notes, 0, 2, Target::continuous(), "abc").unwrap();
    assert_eq!(bank.len(), 2);
    assert_eq!(bank.note(0), notes[0].as_ref());
    assert_eq!(bank.note(1), None);
    bank.push(&unit(&[1.0, 1.0]), note("live:x", 12.5, -30.0));
    bank.save(&p).unwrap();
    let back = NormalBank::load(&p, "abc", Path::new("m")).unwrap();
    assert_eq!(back.notes(), bank.notes());
    assert_eq!(back.note(2).unwrap().clip, "live:x");
    // A bank without notes (as version 1 wrote them) loads with none.
    NormalBank::from_parts(&e, bank.calibration.clone(), "abc")
        .save(&p)
        .unwrap();
    let back = NormalBank::load(&p, "abc", Path::new("m")).unwrap();
    assert!(back.notes().iter().all(Option::is_none) && back.notes().len() == 3);
    // A note without a profile is saved as no note: the saved bank still loads.
    let mut bank = NormalBank::from_parts(&e, bank.calibration.clone(), "abc");
    let mut bare = note("live:y", 2.0, 0.0);
    bare.as_mut().unwrap().profile.clear();
    bank.push(&unit(&[0.5, 1.0]), bare);
    bank.push(&unit(&[1.0, 0.5]), note("live:x", 1.0, -30.0));
    bank.save(&p).unwrap();
    let back = NormalBank::load(&p, "abc", Path::new("m")).unwrap();
    assert_eq!(back.note(3), None);
    assert_eq!(back.note(4).unwrap().clip, "live:x");
}

#[test]
fn hostile_banks_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.bank.safetensors");
    // Found by tests/fuzz.rs: rows of 1e30s loaded, and every score was -inf.
    let c = calibrate(&[0.0, 0.1], Target::continuous());
    NormalBank::from_parts(&[vec![1e30, 0.0]], c.clone(), "h")
        .save(&p)
        .unwrap();
    let e = NormalBank::load(&p, "h", Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.bank.safetensors") && e.contains("norm"),
        "{e}"
    );
    // Found by tests/fuzz.rs: values and names read from the file were printed raw.
    let bank = NormalBank::from_parts(&[vec![1.0, 0.0]], c, "h\nx");
    bank.save(&p).unwrap();
    let e = NormalBank::load(&p, "h", Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n') && e.contains("h\\nx"), "{e}");
    let header = br#"{"a\nb":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}   "#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 8]);
    let e = NormalBank::from_bytes(&bytes, &p, "h", Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(
        !e.contains('\n') && e.contains("offset for tensor `a\\nb`"),
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
