//! The `[mqtt]` table: broker URL, TLS files and credentials, checked key by key.
//! Paths resolve against the config file's folder; one that starts with
//! `${CREDENTIALS_DIRECTORY}` is expanded when the file is read (systemd credentials).

use std::path::{Path, PathBuf};

use super::{
    Auth, Broker, ClientAuth, ConfigError, Invalid, MqttConfig, PasswordSource, RawMqtt, TlsConfig,
};

impl RawMqtt {
    pub(super) fn validate(
        self,
        node: &str,
        file: &Path,
        invalid: &Invalid,
    ) -> Result<MqttConfig, ConfigError> {
        let (broker, tls_url) = match &self.url {
            None => (
                Broker::Embedded {
                    port: self.embedded_port,
                },
                false,
            ),
            Some(url) => {
                let (host, port, tls) = parse_mqtt_url(url).ok_or_else(|| {
                    invalid(
                        "mqtt.url",
                        url,
                        "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)",
                    )
                })?;
                (Broker::External { host, port }, tls)
            }
        };
        let (tls, auth) = self.security(tls_url, file, invalid)?;
        if self.discovery_prefix.is_empty() || self.discovery_prefix.contains(['#', '+']) {
            return Err(invalid(
                "mqtt.discovery_prefix",
                &self.discovery_prefix,
                "non-empty, without # or +",
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(['#', '+']) {
            return Err(invalid(
                "mqtt.prefix",
                &self.prefix,
                "non-empty, without # or +",
            ));
        }
        for (key, v) in [
            ("mqtt.reconnect_max_s", self.reconnect_max_s),
            ("mqtt.health_interval_s", self.health_interval_s),
            ("mqtt.state_interval_s", self.state_interval_s),
            ("mqtt.event_update_s", self.event_update_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(key, &v, "must be > 0"));
            }
        }
        if self.keep_alive_s < 5 {
            return Err(invalid(
                "mqtt.keep_alive_s",
                &self.keep_alive_s,
                "must be >= 5",
            ));
        }
        Ok(MqttConfig {
            file: file.to_path_buf(),
            broker,
            tls,
            auth,
            prefix: self.prefix,
            client_id: self.client_id.unwrap_or_else(|| format!("hark-{node}")),
            keep_alive_s: self.keep_alive_s,
            reconnect_max_s: self.reconnect_max_s,
            health_interval_s: self.health_interval_s,
            state_interval_s: self.state_interval_s,
            event_update_s: self.event_update_s,
            discovery_prefix: self.discovery.then(|| self.discovery_prefix.clone()),
        })
    }

    /// The TLS and credential keys: which combinations make sense; paths resolved.
    /// Nothing is read here (the files may only be readable by the service, and
    /// `hark score` needs none of them): [`crate::mqtt::Mqtt::start`] reads them.
    fn security(
        &self,
        tls_url: bool,
        file: &Path,
        invalid: &Invalid,
    ) -> Result<(Option<TlsConfig>, Option<Auth>), ConfigError> {
        for (key, p) in [
            ("mqtt.ca_file", &self.ca_file),
            ("mqtt.client_cert", &self.client_cert),
            ("mqtt.client_key", &self.client_key),
            ("mqtt.password_file", &self.password_file),
        ] {
            if let Some(p) = p
                && p.as_os_str().is_empty()
            {
                return Err(invalid(key, p, "empty path"));
            }
        }
        // A TLS key with a plain url would quietly send everything in clear text.
        for (key, value) in [
            ("mqtt.ca_file", &self.ca_file),
            ("mqtt.client_cert", &self.client_cert),
            ("mqtt.client_key", &self.client_key),
        ] {
            if let Some(value) = value
                && !tls_url
            {
                let why = match &self.url {
                    None => "TLS needs an external broker: set url = \"mqtts://HOST:8883\" (the embedded broker is plain TCP on loopback)".to_string(),
                    Some(url) => format!("TLS needs an mqtts:// url, but url = {url:?} is plain MQTT"),
                };
                return Err(invalid(key, value, &why));
            }
        }
        let resolve = |p: &PathBuf| resolve_path(file, p);
        let client_auth = match (&self.client_cert, &self.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientAuth {
                cert: resolve(cert),
                key: resolve(key),
            }),
            (Some(cert), None) => {
                return Err(invalid(
                    "mqtt.client_cert",
                    cert,
                    "needs client_key too (the certificate's private key)",
                ));
            }
            (None, Some(key)) => {
                return Err(invalid(
                    "mqtt.client_key",
                    key,
                    "needs client_cert too (the key's certificate)",
                ));
            }
        };
        let tls = tls_url.then(|| TlsConfig {
            ca_file: self.ca_file.as_ref().map(resolve),
            client_auth,
        });
        if self.username.is_none() {
            let why = "a password needs a username (MQTT sends none without one)";
            if let Some(p) = &self.password_file {
                return Err(invalid("mqtt.password_file", p, why));
            }
            if let Some(var) = &self.password_env {
                return Err(invalid("mqtt.password_env", var, why));
            }
        }
        let password = match (&self.password_file, &self.password_env) {
            (Some(_), Some(var)) => {
                return Err(invalid(
                    "mqtt.password_env",
                    var,
                    "set password_file or password_env, not both",
                ));
            }
            (None, Some(var)) if var.is_empty() || var.contains(['=', '\0']) => {
                return Err(invalid(
                    "mqtt.password_env",
                    var,
                    "not a valid environment variable name",
                ));
            }
            (Some(p), None) => Some(PasswordSource::File(resolve(p))),
            (None, Some(var)) => Some(PasswordSource::Env(var.clone())),
            (None, None) => None,
        };
        let auth = match (&self.username, password) {
            (None, _) => None,
            (Some(u), _) if u.is_empty() => {
                return Err(invalid("mqtt.username", u, "empty user name"));
            }
            (Some(u), _) if self.url.is_none() => {
                return Err(invalid(
                    "mqtt.username",
                    u,
                    "credentials need an external broker: set url (the embedded broker checks none)",
                ));
            }
            (Some(u), password) => Some(Auth {
                username: u.clone(),
                password,
            }),
        };
        Ok((tls, auth))
    }
}

/// Written at the start of a path, this stands for systemd's `$CREDENTIALS_DIRECTORY`
/// (`LoadCredential=`); it is expanded when the file is read, not when the config is.
pub const CREDENTIALS_DIRECTORY: &str = "${CREDENTIALS_DIRECTORY}";

/// The rest of a path that starts with `${CREDENTIALS_DIRECTORY}` or
/// `$CREDENTIALS_DIRECTORY`.
fn after_credentials_directory(p: &Path) -> Option<&str> {
    let text = p.to_str()?;
    text.strip_prefix(CREDENTIALS_DIRECTORY)
        .or_else(|| text.strip_prefix("$CREDENTIALS_DIRECTORY"))
}

/// A relative path resolves against the config file's directory; one that starts
/// with `${CREDENTIALS_DIRECTORY}` is kept as written for [`expand_credentials`].
fn resolve_path(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || after_credentials_directory(p).is_some() {
        return p.to_path_buf();
    }
    match file.parent() {
        Some(dir) => dir.join(p),
        None => p.to_path_buf(),
    }
}

/// Replaces a leading `${CREDENTIALS_DIRECTORY}` (or `$CREDENTIALS_DIRECTORY`) by that
/// environment variable, which systemd sets for a unit with `LoadCredential=`.
pub fn expand_credentials(p: &Path) -> Result<PathBuf, String> {
    let Some(rest) = after_credentials_directory(p) else {
        return Ok(p.to_path_buf());
    };
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => Ok(PathBuf::from(dir).join(rest.trim_start_matches('/'))),
        None => Err(
            "$CREDENTIALS_DIRECTORY is not set (systemd sets it for a unit with LoadCredential=)"
                .into(),
        ),
    }
}

/// `mqtt://host[:port]` → (host, port, false); `mqtts://host[:port]` → (host, port,
/// true), default port 8883. `tcp://` and `ssl://` are accepted as synonyms.
fn parse_mqtt_url(url: &str) -> Option<(String, u16, bool)> {
    let (rest, tls) = if let Some(r) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        (r, false)
    } else {
        let r = url
            .strip_prefix("mqtts://")
            .or_else(|| url.strip_prefix("ssl://"))?;
        (r, true)
    };
    let rest = rest.trim_end_matches('/');
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (rest, default_port),
    };
    (!host.is_empty()).then(|| (host.to_string(), port, tls))
}
