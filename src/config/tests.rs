//! Tests of config parsing and validation, and of the shipped config/hark.toml.
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn shipped_config_parses_and_validates() {
    let text = include_str!("../../config/hark.toml");
    let cfg = parse(text).expect("config/hark.toml must validate");
    assert_eq!(cfg.sources.len(), 1);
    assert_eq!(cfg.sources[0].mode, Mode::Continuous);
    assert_eq!(cfg.mqtt.prefix, "hark");
}

#[test]
fn shipped_config_with_every_key_uncommented_validates() {
    // Lines like `# key = value` document optional keys; they must be real keys.
    let text: String = include_str!("../../config/hark.toml")
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_assignment(rest) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    parse(&text).expect("every documented key must be accepted");
}

/// `key = value` with a bare TOML key.
fn is_assignment(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

#[test]
fn unknown_key_is_named() {
    let err = parse("node = \"a\"\nbogus = 1\n").unwrap_err().to_string();
    assert!(err.contains("bogus"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn malformed_toml_names_line() {
    let err = parse("node = \"a\"\n[mqtt\n").unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn invalid_values_name_key_and_value() {
    let err = parse("[[source]]\nname = \"p\"\nmode = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("source[0].mode") && err.contains("sometimes"),
        "{err}"
    );
    let err = parse("[[source]]\nname = \"p\"\n[[source]]\nname = \"p\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("source[1].name"), "{err}");
    let err = parse("[mqtt]\nurl = \"http://x\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mqtt.url") && err.contains("http://x"),
        "{err}"
    );
}

#[test]
fn tap_mode_defaults_to_the_tap_model() {
    let cfg = parse("[[source]]\nname = \"station\"\nmode = \"tap\"\n").unwrap();
    assert_eq!(
        cfg.sources[0].model,
        PathBuf::from("models/tap.safetensors")
    );
    let err = parse("[[source]]\nname = \"s\"\nmode = \"tap\"\ntap_threshold_db = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("source[0].tap_threshold_db"), "{err}");
}

#[test]
fn defaults_and_derived_values() {
    let cfg = parse("state_dir = \"/var/lib/hark\"\n[[source]]\nname = \"pump\"\n").unwrap();
    let s = &cfg.sources[0];
    assert_eq!(s.bank, PathBuf::from("/var/lib/hark/pump.bank.safetensors"));
    assert_eq!(s.device, Device::Cpal("default".into()));
    assert_eq!(cfg.mqtt.broker, Broker::Embedded { port: 1883 });
    assert_eq!(cfg.mqtt.client_id, "hark-hark");
    let cfg = parse("[mqtt]\nurl = \"mqtt://10.0.0.2\"\n").unwrap();
    assert_eq!(
        cfg.mqtt.broker,
        Broker::External {
            host: "10.0.0.2".into(),
            port: 1883
        }
    );
}

#[test]
fn parse_errors_with_control_characters_stay_on_one_line() {
    // Found by tests/fuzz.rs: toml quotes the offending line, lone `\r` included.
    let err = parse("\r\u{e}").unwrap_err().to_string();
    assert!(!err.contains(['\n', '\r']), "one line: {err:?}");
    assert!(
        err.starts_with("test.toml: ") && err.contains("\\r"),
        "{err}"
    );
}
