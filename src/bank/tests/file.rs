//! The bank file: what is saved is what loads, and a bad file is a one-line error.

use super::*;

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
fn named_items_are_kept_in_the_bank_file() {
    let notes = named_notes();
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
