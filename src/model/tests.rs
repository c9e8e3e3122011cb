//! Tests of the network, its file and its metadata.
use super::*;

#[test]
fn fixed_seed_model_loads_embeds_unit_vectors_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let meta = ModelMeta::default_continuous("test");
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    init_fixed_seed(&meta, 3, &a).unwrap();
    init_fixed_seed(&meta, 3, &b).unwrap();
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "same seed, same bytes"
    );
    let e = Embedder::load(&a).unwrap();
    assert_eq!(e.meta(), &meta);
    let w1: Vec<f32> = (0..e.window_len())
        .map(|i| -60.0 + (i % 17) as f32)
        .collect();
    let w2: Vec<f32> = (0..e.window_len())
        .map(|i| -70.0 + (i % 5) as f32 * 3.0)
        .collect();
    let out = e.embed(&[&w1, &w2, &w1]).unwrap();
    for v in &out {
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
    assert_eq!(out[0], out[2], "same window, same embedding within a batch");
    assert_ne!(out[0], out[1]);
}

#[test]
fn a_profile_model_appends_each_bands_mean_and_spread() {
    let dir = tempfile::tempdir().unwrap();
    let mut meta = ModelMeta::default_continuous("test");
    meta.profile = true;
    let path = dir.path().join("p.safetensors");
    init_fixed_seed(&meta, 3, &path).unwrap();
    let e = Embedder::load(&path).unwrap();
    assert!(e.meta().profile);
    let n_mels = meta.front.n_mels;
    assert_eq!(meta.output_dim(), meta.embedding_dim + 2 * n_mels);
    // Band b alternates between -50 - b and -30 - b dB frame by frame: mean
    // -40 - b, spread 10.
    let w: Vec<f32> = (0..e.window_len())
        .map(|i| {
            let (frame, band) = (i / n_mels, i % n_mels);
            -40.0 - band as f32 + if frame % 2 == 0 { -10.0 } else { 10.0 }
        })
        .collect();
    let out = e.embed(&[&w]).unwrap().remove(0);
    assert_eq!(out.len(), meta.output_dim());
    let (emb, profile) = out.split_at(meta.embedding_dim);
    assert!((emb.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    for b in 0..n_mels {
        assert!(
            (profile[b] - (-40.0 - b as f32)).abs() < 1e-3,
            "mean of band {b}"
        );
        assert!(
            (profile[n_mels + b] - 10.0).abs() < 1e-3,
            "spread of band {b}"
        );
    }
    // A model without the key reads as embedding-only; an unknown value is refused.
    let mut map = meta.to_map();
    map.remove("features");
    assert!(!ModelMeta::from_map(&map).unwrap().profile);
    map.insert("features".into(), "spectrum".into());
    let err = ModelMeta::from_map(&map).unwrap_err();
    assert!(err.contains("`features` = \"spectrum\""), "{err}");
}

#[test]
fn bad_model_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"garbage").unwrap();
    let e = Embedder::load(&junk).unwrap_err().to_string();
    assert!(
        e.contains("junk.safetensors") && e.contains("not a safetensors"),
        "{e}"
    );
    let missing = Embedder::load(&dir.path().join("nope.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("nope.safetensors") && missing.contains("cannot read"),
        "{missing}"
    );
    let mut map = ModelMeta::default_continuous("x").to_map();
    map.insert("n_mels".into(), "lots".into());
    let e = ModelMeta::from_map(&map).unwrap_err();
    assert!(e.contains("n_mels") && e.contains("lots"), "{e}");
}

#[test]
fn metadata_errors_name_key_and_value() {
    // Found by tests/fuzz.rs: embedding_dim = 0 loaded (and later divided by zero in
    // the bank), a NaN input offset made every embedding NaN, and a front-end value
    // out of range was reported as the whole struct.
    for (key, value, needle) in [
        ("embedding_dim", "0", "1..=4096"),
        ("input_offset_db", "NaN", "-1000..=1000"),
        ("input_scale_db", "1e-45", "0.01..=1000"),
        ("n_fft", "1000", "power of two"),
        ("fmax_hz", "9000", "sample_rate_hz / 2"),
    ] {
        let mut map = ModelMeta::default_continuous("x").to_map();
        map.insert(key.into(), value.into());
        let e = ModelMeta::from_map(&map).unwrap_err();
        assert!(
            e.contains(&format!("`{key}` = {value}")) && e.contains(needle),
            "{e}"
        );
    }
}

#[test]
fn hostile_weights_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let meta = ModelMeta::default_continuous("x");
    let load = |name: &str, edit: &dyn Fn(&mut Vec<NamedTensor>)| {
        let mut tensors = fixed_seed_tensors(&meta, 1);
        edit(&mut tensors);
        let path = dir.path().join(name);
        save_tensors(&path, &tensors, meta.to_map()).unwrap();
        Embedder::load(&path).unwrap_err().to_string()
    };
    // Found by tests/fuzz.rs: a NaN or huge weight loaded, and every score was NaN.
    for (name, v) in [("nan.st", f32::NAN), ("huge.st", 1e30)] {
        let e = load(name, &|t| t[0].2[5] = v);
        assert!(e.contains(name) && e.contains("huge values"), "{e}");
    }
    // Found by tests/fuzz.rs: a zero dimension hides an overflowing product from
    // safetensors' size check; candle's stride arithmetic then overflowed (a panic).
    let e = load("empty.st", &|t| {
        let bias = t.iter_mut().find(|t| t.0 == "conv1.bias").unwrap();
        *bias = ("conv1.bias".into(), vec![0, 1 << 62, 1 << 62], vec![]);
    });
    assert!(e.contains("empty.st") && e.contains("conv1.bias"), "{e}");
}
