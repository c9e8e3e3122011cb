//! Operator commands: what may be sent on `<prefix>/<node>/<source>/cmd` (for any
//! source, continuous or tap), parsed from untrusted JSON into a closed set. Pure; a bad
//! payload is an error message, never a panic.

/// The longest mute, in minutes (a week).
pub const MAX_MUTE_MINUTES: f64 = 7.0 * 24.0 * 60.0;

/// The longest item name `enroll_start` takes, in characters.
pub const MAX_ITEM_CHARS: usize = 64;

/// A command for one source.
#[derive(Debug, Clone, PartialEq)]
pub enum StationCommand {
    /// Start collecting sound as normal (knocks as good ones); it is still scored
    /// meanwhile. `learn_start` is the same command. Sent while collecting, it goes on
    /// collecting (nothing collected is dropped) under the new item.
    EnrollStart {
        /// What is heard from now on is of this item (one piece knocked several
        /// times): calibration leaves the whole item out of the others' scores, as
        /// `hark enroll --item` does. `None`: a knock's neighbours in the stream are
        /// left out ([`crate::bank::KNOCK_GUARD`]).
        item: Option<String>,
    },
    /// Stop collecting and add what was collected to the bank (recalibrated, saved).
    /// `learn_stop` is the same command.
    EnrollStop,
    /// The last verdict or event was wrong: add that knock, or the windows of that
    /// event, to the bank as normal.
    FalseAlarm,
    /// Publish no new events for this many minutes (0 ends a mute).
    Mute {
        /// Minutes, 0 to [`MAX_MUTE_MINUTES`].
        minutes: f64,
    },
}

impl StationCommand {
    /// The word on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            StationCommand::EnrollStart { .. } => "enroll_start",
            StationCommand::EnrollStop => "enroll_stop",
            StationCommand::FalseAlarm => "false_alarm",
            StationCommand::Mute { .. } => "mute",
        }
    }

    /// Parses `{"cmd": "enroll_start" | "enroll_stop" | "learn_start" | "learn_stop" |
    /// "false_alarm"}`, `{"cmd": "enroll_start" | "learn_start", "item": NAME}` or
    /// `{"cmd": "mute", "minutes": N}`.
    pub fn parse(payload: &[u8]) -> Result<StationCommand, String> {
        let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_string())?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("payload is not JSON: {e}"))?;
        let Some(obj) = value.as_object() else {
            return Err(format!(
                "payload must be a JSON object, got {}",
                echo(&value.to_string())
            ));
        };
        let allowed: &[&str] = match obj.get("cmd").and_then(serde_json::Value::as_str) {
            Some("mute") => &["cmd", "minutes"],
            Some("enroll_start" | "learn_start") => &["cmd", "item"],
            _ => &["cmd"],
        };
        if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("unknown key {}", echo(&format!("{extra:?}"))));
        }
        let cmd = match obj.get("cmd") {
            None => return Err("key \"cmd\" is missing".into()),
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(v) => {
                return Err(format!("cmd = {}: expected a string", echo(&v.to_string())));
            }
        };
        match cmd {
            "enroll_start" | "learn_start" => Ok(StationCommand::EnrollStart {
                item: obj.get("item").map(item_name).transpose()?,
            }),
            "enroll_stop" | "learn_stop" => Ok(StationCommand::EnrollStop),
            "false_alarm" => Ok(StationCommand::FalseAlarm),
            "mute" => match obj.get("minutes").and_then(serde_json::Value::as_f64) {
                Some(m) if (0.0..=MAX_MUTE_MINUTES).contains(&m) => {
                    Ok(StationCommand::Mute { minutes: m })
                }
                // Echoed as the JSON wrote it, and cut like every echoed value:
                // 8.4e238 printed in full was 270 characters (found by tests/fuzz.rs).
                Some(_) => Err(format!(
                    "minutes = {}: expected 0 to {MAX_MUTE_MINUTES}",
                    echo(&obj["minutes"].to_string())
                )),
                None => Err("mute needs \"minutes\": a number".into()),
            },
            other => Err(format!(
                "cmd = {}: unknown (learn_start, learn_stop, false_alarm or mute)",
                echo(&format!("{other:?}"))
            )),
        }
    }
}

/// An `enroll_start`'s `item`: a name of 1 to [`MAX_ITEM_CHARS`] characters, none of
/// them a control character (it is stored in the bank and printed in logs).
fn item_name(v: &serde_json::Value) -> Result<String, String> {
    match v.as_str() {
        Some(s)
            if (1..=MAX_ITEM_CHARS).contains(&s.chars().count())
                && !s.chars().any(char::is_control) =>
        {
            Ok(s.to_string())
        }
        _ => Err(format!(
            "item = {}: expected a name of 1 to {MAX_ITEM_CHARS} characters, none of them a control character",
            echo(&v.to_string())
        )),
    }
}

/// At most this many characters of an operator's payload are echoed in an error (it
/// is published back on `cmd/result` and logged).
const ECHO_CHARS: usize = 48;

/// `s`, cut to [`ECHO_CHARS`] characters with `…` when longer.
fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_CHARS {
        s.to_string()
    } else {
        let head: String = s.chars().take(ECHO_CHARS).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_commands() {
        for c in [
            StationCommand::EnrollStart { item: None },
            StationCommand::EnrollStop,
            StationCommand::FalseAlarm,
        ] {
            let payload = format!("{{\"cmd\": \"{}\"}}", c.as_str());
            assert_eq!(StationCommand::parse(payload.as_bytes()), Ok(c));
        }
        assert_eq!(
            StationCommand::parse(br#"{"cmd": "learn_start"}"#),
            Ok(StationCommand::EnrollStart { item: None })
        );
        assert_eq!(
            StationCommand::parse(
                r#"{"cmd": "enroll_start", "item": "board 17 (oak)"}"#.as_bytes()
            ),
            Ok(StationCommand::EnrollStart {
                item: Some("board 17 (oak)".into())
            })
        );
        assert_eq!(
            StationCommand::parse(br#"{"cmd": "mute", "minutes": 15}"#),
            Ok(StationCommand::Mute { minutes: 15.0 })
        );
    }

    #[test]
    fn malformed_payloads_are_named_errors() {
        let long_item = format!(
            "{{\"cmd\": \"enroll_start\", \"item\": \"{}\"}}",
            "x".repeat(65)
        );
        let cases: [(&[u8], &str); 15] = [
            (
                b"{\"cmd\": \"enroll_start\", \"item\": \"\"}",
                "item = \"\": expected a name",
            ),
            (b"{\"cmd\": \"enroll_start\", \"item\": 7}", "item = 7"),
            (
                b"{\"cmd\": \"learn_start\", \"item\": \"a\\nb\"}",
                "control",
            ),
            (long_item.as_bytes(), "1 to 64 characters"),
            (
                b"{\"cmd\": \"enroll_stop\", \"item\": \"a\"}",
                "unknown key",
            ),
            (b"{\"cmd\": \"mute\"}", "minutes"),
            (b"{\"cmd\": \"mute\", \"minutes\": -1}", "expected 0"),
            (b"{\"cmd\": \"learn_stop\", \"minutes\": 1}", "unknown key"),
            (b"\xff\xfe", "UTF-8"),
            (b"not json", "not JSON"),
            (b"[1, 2]", "object"),
            (b"{}", "missing"),
            (b"{\"cmd\": 3}", "expected a string"),
            (b"{\"cmd\": \"explode\"}", "explode"),
            (b"{\"cmd\": \"false_alarm\", \"x\": 1}", "unknown key"),
        ];
        for (payload, needle) in cases {
            let e = StationCommand::parse(payload).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn long_payloads_are_not_echoed_whole() {
        // Found by tests/fuzz.rs: errors quoted the whole value back on cmd/result.
        let long = "x".repeat(10_000);
        for payload in [
            format!("[\"{long}\"]"),
            format!("{{\"{long}\": 1}}"),
            format!("{{\"cmd\": \"{long}\"}}"),
            format!("{{\"cmd\": [\"{long}\"]}}"),
        ] {
            let e = StationCommand::parse(payload.as_bytes()).unwrap_err();
            assert!(e.chars().count() < 120 && e.contains('…'), "{e}");
        }
        // Found by tests/fuzz.rs: a float Rust prints with all 239 digits.
        let e = StationCommand::parse(br#"{"cmd": "mute", "minutes": 8.424965945587767e238}"#)
            .unwrap_err();
        assert!(e.chars().count() < 120 && e.contains("e+238"), "{e}");
    }
}
