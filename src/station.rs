//! Station commands: what an operator may send on `<prefix>/<node>/<source>/cmd`, parsed
//! from untrusted JSON into a closed set. Pure; a bad payload is an error message, never
//! a panic.

/// A command for one tap source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StationCommand {
    /// Start collecting knocks as good ones (they are still scored meanwhile).
    EnrollStart,
    /// Stop collecting and add the collected knocks to the bank (recalibrated, saved).
    EnrollStop,
    /// The last verdict was wrong: add that knock to the bank as good.
    FalseAlarm,
}

impl StationCommand {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            StationCommand::EnrollStart => "enroll_start",
            StationCommand::EnrollStop => "enroll_stop",
            StationCommand::FalseAlarm => "false_alarm",
        }
    }

    /// Parses `{"cmd": "enroll_start" | "enroll_stop" | "false_alarm"}`.
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
        if let Some(extra) = obj.keys().find(|k| *k != "cmd") {
            return Err(format!("unknown key {}", echo(&format!("{extra:?}"))));
        }
        match obj.get("cmd") {
            None => Err("key \"cmd\" is missing".into()),
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "enroll_start" => Ok(StationCommand::EnrollStart),
                "enroll_stop" => Ok(StationCommand::EnrollStop),
                "false_alarm" => Ok(StationCommand::FalseAlarm),
                other => Err(format!(
                    "cmd = {}: expected enroll_start, enroll_stop or false_alarm",
                    echo(&format!("{other:?}"))
                )),
            },
            Some(v) => Err(format!("cmd = {}: expected a string", echo(&v.to_string()))),
        }
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
            StationCommand::EnrollStart,
            StationCommand::EnrollStop,
            StationCommand::FalseAlarm,
        ] {
            let payload = format!("{{\"cmd\": \"{}\"}}", c.as_str());
            assert_eq!(StationCommand::parse(payload.as_bytes()), Ok(c));
        }
    }

    #[test]
    fn malformed_payloads_are_named_errors() {
        let cases: [(&[u8], &str); 7] = [
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
    }
}
