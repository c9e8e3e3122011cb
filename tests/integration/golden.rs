//! Golden output of the shipped model: a fixed window (made in code) must embed to the
//! committed vector. If models/default.safetensors changes, regenerate the fixture in
//! the same commit: `HARK_BLESS=1 cargo test --test integration golden`.

use std::path::Path;

use hark::model::Embedder;

/// A window with structure in time and frequency: a chirp-like ridge over a tilted
/// floor, in dB.
fn fixture_window(frames: usize, mels: usize) -> Vec<f32> {
    let mut w = Vec::with_capacity(frames * mels);
    for t in 0..frames {
        for m in 0..mels {
            let ridge = (m as f32 - (8.0 + 0.6 * t as f32)).abs();
            w.push(
                -80.0
                    + 0.3 * m as f32
                    + 40.0 * (-ridge * ridge / 8.0).exp()
                    + 3.0 * ((t * 7 + m * 3) as f32).sin(),
            );
        }
    }
    w
}

#[test]
fn shipped_model_embeds_the_fixture_window_to_the_stored_vector() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let e = Embedder::load(&root.join("models/default.safetensors")).unwrap();
    let p = e.meta().front;
    let got = e
        .embed(&[&fixture_window(p.frames, p.n_mels)])
        .unwrap()
        .remove(0);
    let fixture = root.join("tests/fixtures/golden_embedding.json");
    if std::env::var_os("HARK_BLESS").is_some() {
        let json = serde_json::json!({ "model_sha256": e.hash(), "embedding": got });
        std::fs::write(&fixture, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    assert_eq!(
        stored["model_sha256"],
        e.hash(),
        "the model changed: re-bless the fixture"
    );
    let want: Vec<f32> = stored["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(want.len(), got.len());
    let worst = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "embedding drifted by up to {worst}");
}
