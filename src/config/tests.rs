//! Tests of config parsing and validation, and of the shipped config/hark.toml.
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

/// The error a config that must be refused gives.
fn parse_err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
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
    let err = parse_err("node = \"a\"\nbogus = 1\n");
    assert!(err.contains("bogus"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn malformed_toml_names_line() {
    let err = parse_err("node = \"a\"\n[mqtt\n");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn invalid_values_name_key_and_value() {
    let err = parse_err("[[source]]\nname = \"p\"\nmode = \"sometimes\"\n");
    assert!(
        err.contains("source[0].mode") && err.contains("sometimes"),
        "{err}"
    );
    let err = parse_err("[[source]]\nname = \"p\"\n[[source]]\nname = \"p\"\n");
    assert!(err.contains("source[1].name"), "{err}");
    let err = parse_err("[mqtt]\nurl = \"http://x\"\n");
    assert!(
        err.contains("mqtt.url") && err.contains("http://x"),
        "{err}"
    );
}

#[test]
fn mqtts_selects_tls_with_port_8883_and_resolves_paths_beside_the_config() {
    let text = "[mqtt]\nurl = \"mqtts://broker.example\"\nusername = \"hark\"\n\
                password_file = \"secret/pw\"\nca_file = \"ca.pem\"\n\
                client_cert = \"/abs/hark.crt\"\nclient_key = \"${CREDENTIALS_DIRECTORY}/hark.key\"\n";
    let cfg = Config::parse(text, Path::new("/etc/hark/hark.toml")).unwrap();
    let m = &cfg.mqtt;
    assert_eq!(
        m.broker,
        Broker::External {
            host: "broker.example".into(),
            port: 8883
        }
    );
    let tls = m.tls.as_ref().expect("mqtts:// is TLS");
    assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/hark/ca.pem")));
    let client = tls.client_auth.as_ref().unwrap();
    assert_eq!(client.cert, PathBuf::from("/abs/hark.crt"));
    assert_eq!(
        client.key,
        PathBuf::from("${CREDENTIALS_DIRECTORY}/hark.key")
    );
    let auth = m.auth.as_ref().unwrap();
    assert_eq!(auth.username, "hark");
    assert_eq!(
        auth.password,
        Some(PasswordSource::File("/etc/hark/secret/pw".into()))
    );
    let cfg = parse("[mqtt]\nurl = \"mqtts://10.0.0.2:9999\"\n").unwrap();
    assert!(cfg.mqtt.tls.as_ref().unwrap().ca_file.is_none());
    assert!(cfg.mqtt.auth.is_none());
    let cfg = parse("[mqtt]\nurl = \"mqtt://10.0.0.2\"\nusername = \"u\"\npassword_env = \"PW\"\n")
        .unwrap();
    assert!(cfg.mqtt.tls.is_none(), "mqtt:// stays plain");
    assert_eq!(
        cfg.mqtt.auth.unwrap().password,
        Some(PasswordSource::Env("PW".into()))
    );
}

#[test]
fn security_keys_that_do_not_fit_together_are_named() {
    let cases = [
        // (text, key, value)
        (
            "url = \"mqtts://b\"\nusername = \"u\"\npassword_file = \"pw\"\npassword_env = \"PW\"",
            "mqtt.password_env",
            "PW",
        ),
        (
            "url = \"mqtts://b\"\nclient_cert = \"c.pem\"",
            "mqtt.client_cert",
            "c.pem",
        ),
        (
            "url = \"mqtts://b\"\nclient_key = \"k.pem\"",
            "mqtt.client_key",
            "k.pem",
        ),
        (
            "url = \"mqtt://b\"\nca_file = \"ca.pem\"",
            "mqtt.ca_file",
            "ca.pem",
        ),
        ("ca_file = \"ca.pem\"", "mqtt.ca_file", "ca.pem"),
        (
            "url = \"mqtt://b\"\npassword_file = \"pw\"",
            "mqtt.password_file",
            "pw",
        ),
        ("username = \"u\"", "mqtt.username", "u"),
        (
            "url = \"mqtts://b\"\nusername = \"\"",
            "mqtt.username",
            "\"\"",
        ),
        (
            "url = \"mqtts://b\"\nca_file = \"\"",
            "mqtt.ca_file",
            "\"\"",
        ),
        ("url = \"mqtts://b:x\"", "mqtt.url", "mqtts://b:x"),
    ];
    for (body, key, value) in cases {
        let err = parse_err(&format!("[mqtt]\n{body}\n"));
        assert!(
            err.starts_with("test.toml: ") && err.contains(key) && err.contains(value),
            "{body:?} → {err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn credentials_directory_expands_only_when_read() {
    let p = Path::new("/etc/hark/pw");
    assert_eq!(expand_credentials(p).unwrap(), p);
    // Only checked where the variable is unset (no test sets it).
    if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
        let err = expand_credentials(Path::new("${CREDENTIALS_DIRECTORY}/pw")).unwrap_err();
        assert!(err.contains("LoadCredential="), "{err}");
    }
}

#[test]
fn learning_is_bounded() {
    let body = |v: &str| format!("[[source]]\nname = \"s\"\nlearn_seconds = {v}\n");
    assert_eq!(
        parse(&body("7200")).unwrap().sources[0].learn_seconds,
        7200.0
    );
    for v in ["0", "7201", "nan", "inf"] {
        let err = parse_err(&body(v));
        let named = err.contains("source[0].learn_seconds");
        assert!(named && err.to_lowercase().contains(v), "{v}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn tap_mode_defaults_to_the_tap_model() {
    let cfg = parse("[[source]]\nname = \"station\"\nmode = \"tap\"\n").unwrap();
    assert_eq!(
        cfg.sources[0].model,
        PathBuf::from("models/tap.safetensors")
    );
    let err = parse_err("[[source]]\nname = \"s\"\nmode = \"tap\"\ntap_threshold_db = 1\n");
    assert!(err.contains("source[0].tap_threshold_db"), "{err}");
    let quiet = "[[source]]\nname = \"s\"\nmode = \"tap\"\ntap_min_level_dbfs = -70\n";
    assert_eq!(parse(quiet).unwrap().sources[0].tap.min_level_dbfs, -70.0);
    let err = parse_err("[[source]]\nname = \"s\"\nmode = \"tap\"\ntap_min_level_dbfs = 3\n");
    assert!(
        err.contains("source[0].tap_min_level_dbfs") && err.contains('3'),
        "{err}"
    );
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
    let err = parse_err("\r\u{e}");
    assert!(!err.contains(['\n', '\r']), "one line: {err:?}");
    assert!(
        err.starts_with("test.toml: ") && err.contains("\\r"),
        "{err}"
    );
}

#[test]
fn metrics_listen_must_be_loopback() {
    let base = "[[source]]\nname = \"a\"\n";
    let ok = Config::parse(
        &format!("[metrics]\nlisten = \"127.0.0.1:9464\"\n{base}"),
        Path::new("h.toml"),
    )
    .unwrap();
    assert_eq!(ok.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    let e = Config::parse(
        &format!("[metrics]\nlisten = \"0.0.0.0:9464\"\n{base}"),
        Path::new("h.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("metrics.listen") && e.contains("0.0.0.0:9464") && e.contains("loopback"),
        "{e}"
    );
    let off = Config::parse(base, Path::new("h.toml")).unwrap();
    assert_eq!(off.metrics_listen, None);
}
