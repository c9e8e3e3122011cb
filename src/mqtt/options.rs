//! Connection options: TLS (rustls on the `ring` provider) and credentials, read from
//! the files and variables the config names when the connection starts, so a bad file
//! fails start-up with one line; and connection errors said in words a person can act
//! on. The password lives only in [`Password`] and in rumqttc's CONNECT packet: it is
//! never formatted into a message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{ConnectReturnCode, ConnectionError, MqttOptions, StateError, TlsConfiguration};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, MqttConfig, PasswordSource, TlsConfig, expand_credentials};

/// A password. `Debug` prints `***`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Password {
    /// Reads the password from its source: the first line of a file (without its line
    /// ending), or an environment variable. The error names the file or variable,
    /// never the content.
    pub fn read(source: &PasswordSource) -> Result<Password, String> {
        let text = match source {
            PasswordSource::File(path) => {
                let text = String::from_utf8(read(path)?)
                    .map_err(|_| "the file is not UTF-8 text".to_string())?;
                let line = text.split('\n').next().unwrap_or("");
                let line = line.strip_suffix('\r').unwrap_or(line).to_string();
                if line.is_empty() {
                    return Err("the file's first line (the password) is empty".into());
                }
                line
            }
            PasswordSource::Env(var) => match std::env::var(var) {
                Ok(v) if v.is_empty() => return Err(format!("${var} is empty")),
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!("the environment variable ${var} is not set"));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("${var} is not UTF-8 text"));
                }
            },
        };
        Ok(Password(text))
    }
}

/// What the broker connection is, for messages: address, trust anchor, client
/// certificate, user. Holds no secret.
#[derive(Debug, Clone)]
pub struct Peer {
    host: String,
    port: u16,
    tls: Option<TlsPeer>,
    username: Option<String>,
    client_id: String,
}

#[derive(Debug, Clone)]
struct TlsPeer {
    /// `ca_file /etc/hark/ca.pem` or `the system's root certificates`.
    trust: String,
    client_cert: Option<PathBuf>,
}

/// Sets TLS and credentials on `opts` as `cfg` says, reading every file now.
/// Errors name the config file, the key and its value.
pub fn secure(
    opts: &mut MqttOptions,
    cfg: &MqttConfig,
    host: &str,
    port: u16,
) -> Result<Peer, ConfigError> {
    let to_config_error = |bad: Bad| ConfigError::Invalid {
        file: cfg.file.clone(),
        key: bad.key.to_string(),
        value: bad.value,
        why: bad.why,
    };
    let mut peer = Peer {
        host: host.to_string(),
        port,
        tls: None,
        username: None,
        client_id: cfg.client_id.clone(),
    };
    if let Some(tls) = &cfg.tls {
        let url = format!("mqtts://{host}:{port}");
        let client = client_config(tls, &url).map_err(to_config_error)?;
        opts.set_transport(rumqttc::Transport::tls_with_config(
            TlsConfiguration::Rustls(Arc::new(client)),
        ));
        peer.tls = Some(TlsPeer {
            trust: match &tls.ca_file {
                Some(p) => format!("ca_file {}", p.display()),
                None => "the system's root certificates".into(),
            },
            client_cert: tls.client_auth.as_ref().map(|c| c.cert.clone()),
        });
    }
    if let Some(auth) = &cfg.auth {
        let password = match &auth.password {
            None => Password(String::new()),
            Some(source) => Password::read(source).map_err(|why| {
                to_config_error(match source {
                    PasswordSource::File(p) => Bad::path("mqtt.password_file", p, why),
                    PasswordSource::Env(var) => Bad {
                        key: "mqtt.password_env",
                        value: format!("{var:?}"),
                        why,
                    },
                })
            })?,
        };
        opts.set_credentials(auth.username.clone(), password.0);
        peer.username = Some(auth.username.clone());
    }
    Ok(peer)
}

/// A start-up failure: the key to blame, its value, and why.
struct Bad {
    key: &'static str,
    value: String,
    why: String,
}

impl Bad {
    fn path(key: &'static str, path: &Path, why: String) -> Bad {
        Bad {
            key,
            value: format!("{path:?}"),
            why,
        }
    }
}

/// Reads a file the config names (after `${CREDENTIALS_DIRECTORY}` expansion). The
/// caller's message names the path as configured; this one adds the expanded path
/// when it differs.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    let expanded = expand_credentials(path)?;
    std::fs::read(&expanded).map_err(|e| {
        if expanded == path {
            format!("cannot read: {e}")
        } else {
            format!("cannot read {}: {e}", expanded.display())
        }
    })
}

/// Every certificate of a PEM file; an error when it holds none.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it (expected PEM with -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// The rustls client configuration: roots from `ca_file` or the system, and the
/// client certificate when one is configured.
fn client_config(tls: &TlsConfig, url: &str) -> Result<rustls::ClientConfig, Bad> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let bad = |why| Bad::path("mqtt.ca_file", path, why);
            let certs = read(path).and_then(|pem| certificates(&pem)).map_err(bad)?;
            for (i, cert) in certs.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    bad(format!("certificate {} is not usable as a CA: {e}", i + 1))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(Bad {
                    key: "mqtt.url",
                    value: format!("{url:?}"),
                    why: "no ca_file is set and no system root certificates were found (install ca-certificates, or set ca_file)".into(),
                });
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots);
    let Some(client) = &tls.client_auth else {
        return Ok(builder.with_no_client_auth());
    };
    let certs = read(&client.cert)
        .and_then(|pem| certificates(&pem))
        .map_err(|why| Bad::path("mqtt.client_cert", &client.cert, why))?;
    let bad_key = |why| Bad::path("mqtt.client_key", &client.key, why);
    let pem = read(&client.key).map_err(bad_key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        bad_key(match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key in it (expected PEM with BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)".into(),
            e => format!("not valid PEM: {e}"),
        })
    })?;
    builder.with_client_auth_cert(certs, key).map_err(|e| {
        bad_key(match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "is not the private key of client_cert {}",
                client.cert.display()
            ),
            e => format!("unusable with client_cert {}: {e}", client.cert.display()),
        })
    })
}

impl Peer {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// One line saying what went wrong and what to check; never the password.
    pub fn describe(&self, e: &ConnectionError) -> String {
        let addr = self.addr();
        match e {
            ConnectionError::ConnectionRefused(code) => self.refused(*code),
            ConnectionError::Io(io)
            | ConnectionError::Tls(rumqttc::TlsError::Io(io))
            | ConnectionError::MqttState(StateError::Io(io))
            | ConnectionError::MqttState(StateError::Deserialization(
                rumqttc::mqttbytes::Error::Io(io),
            )) => self.io(io),
            ConnectionError::Tls(rumqttc::TlsError::TLS(e)) => self.tls(e),
            ConnectionError::Tls(rumqttc::TlsError::DNSName(_)) => format!(
                "{:?} is not a host name TLS can check a certificate against",
                self.host
            ),
            ConnectionError::Tls(e) => format!("TLS set-up for {addr} failed: {e}"),
            ConnectionError::NetworkTimeout => {
                format!("no answer from {addr} (connection timed out)")
            }
            ConnectionError::MqttState(StateError::AwaitPingResp) => {
                format!("broker {addr} stopped answering (no ping response)")
            }
            ConnectionError::MqttState(StateError::ConnectionAborted) => {
                format!("broker {addr} closed the connection")
            }
            e => format!("connection to {addr} failed: {e}"),
        }
    }

    fn user(&self) -> String {
        match &self.username {
            Some(u) => format!("user {u:?}"),
            None => "no username configured".into(),
        }
    }

    fn refused(&self, code: ConnectReturnCode) -> String {
        let addr = self.addr();
        let why = match (code, &self.username) {
            (ConnectReturnCode::BadUserNamePassword, Some(_)) => format!(
                "bad user name or password ({}; check password_file / password_env)",
                self.user()
            ),
            (ConnectReturnCode::NotAuthorized, Some(_)) => format!(
                "not authorized ({}: wrong user name or password, or the user may not connect)",
                self.user()
            ),
            (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized, None) => {
                "not authorized: the broker wants a log-in (set username and password_file)".into()
            }
            (ConnectReturnCode::BadClientId, _) => format!(
                "client id {:?} rejected (in use, or not allowed: set client_id)",
                self.client_id
            ),
            (ConnectReturnCode::ServiceUnavailable, _) => "service unavailable".into(),
            (ConnectReturnCode::RefusedProtocolVersion, _) => "it does not speak MQTT 3.1.1".into(),
            (ConnectReturnCode::Success, _) => "no reason given".into(),
        };
        format!("broker {addr} refused the connection: {why}")
    }

    fn io(&self, io: &std::io::Error) -> String {
        use std::io::ErrorKind as K;
        if let Some(e) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return self.tls(e);
        }
        let addr = self.addr();
        let plain_hint = if self.tls.is_none() {
            " (if it expects TLS, use an mqtts:// url)"
        } else {
            ""
        };
        match io.kind() {
            K::ConnectionRefused => {
                format!("nothing accepts connections on {addr} (connection refused)")
            }
            K::TimedOut => format!("no answer from {addr} (timed out)"),
            K::UnexpectedEof if self.tls.is_some() => format!(
                "broker {addr} closed the connection during the TLS handshake (is this a TLS port? does it require a client certificate?)"
            ),
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                format!("broker {addr} closed the connection ({io}){plain_hint}")
            }
            _ if io.to_string().contains("lookup address") => {
                format!("cannot resolve host {:?} ({io})", self.host)
            }
            _ => format!("cannot connect to {addr}: {io}"),
        }
    }

    fn tls(&self, e: &rustls::Error) -> String {
        use rustls::CertificateError as C;
        let addr = self.addr();
        let handshake = format!("TLS handshake with {addr} failed");
        let (trust, client_cert) = match &self.tls {
            Some(t) => (t.trust.as_str(), t.client_cert.as_deref()),
            None => ("the trusted CAs", None),
        };
        match e {
            rustls::Error::InvalidCertificate(c) => {
                let why = match c {
                    C::UnknownIssuer | C::BadSignature => {
                        format!("certificate not trusted by {trust}")
                    }
                    C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                        "the broker's certificate is not valid for {:?} (connect by a name or address it lists)",
                        self.host
                    ),
                    C::Expired | C::ExpiredContext { .. } => {
                        "the broker's certificate has expired (or this machine's clock is wrong)"
                            .into()
                    }
                    C::NotValidYet | C::NotValidYetContext { .. } => {
                        "the broker's certificate is not valid yet (is this machine's clock right?)"
                            .into()
                    }
                    C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                        "the broker's certificate is not meant for a TLS server".into()
                    }
                    _ => "the broker's certificate was rejected".into(),
                };
                format!("{handshake}: {why} ({})", certificate_error_name(c))
            }
            rustls::Error::AlertReceived(alert) => {
                let why = match client_cert {
                    Some(cert) => format!(
                        "the broker rejected the handshake; does it trust client_cert {}?",
                        cert.display()
                    ),
                    None => "the broker rejected the handshake; does it require a client certificate (client_cert, client_key)?".into(),
                };
                format!("{handshake}: {why} (alert {alert:?})")
            }
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                format!(
                    "{handshake}: the broker did not answer in TLS (is {} its TLS port? plain MQTT is usually 1883, TLS 8883) ({e})",
                    self.port
                )
            }
            e => format!("{handshake}: {e}"),
        }
    }
}

/// The variant name of a certificate error, without its context fields.
fn certificate_error_name(c: &rustls::CertificateError) -> String {
    let full = format!("{c:?}");
    let name = full
        .split(|ch: char| !ch.is_alphanumeric())
        .next()
        .unwrap_or("");
    name.strip_suffix("Context").unwrap_or(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn peer(tls: bool, user: Option<&str>) -> Peer {
        Peer {
            host: "broker.example".into(),
            port: 8883,
            tls: tls.then(|| TlsPeer {
                trust: "ca_file /etc/hark/ca.pem".into(),
                client_cert: None,
            }),
            username: user.map(str::to_string),
            client_id: "hark-x".into(),
        }
    }

    fn tls_io(e: rustls::Error) -> ConnectionError {
        ConnectionError::Tls(rumqttc::TlsError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e,
        )))
    }

    #[test]
    fn password_debug_is_masked() {
        let p = Password("hunter2".into());
        assert_eq!(format!("{p:?}"), "\"***\"");
        assert!(!format!("{:?}", Some(&p)).contains("hunter2"));
    }

    #[test]
    fn password_file_is_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\r\nignored\n").unwrap();
        let p = Password::read(&PasswordSource::File(f.clone())).unwrap();
        assert_eq!(p.0, "s3cret");
        std::fs::write(&f, "\nx").unwrap();
        let err = Password::read(&PasswordSource::File(f)).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let missing = dir.path().join("nope");
        let err = Password::read(&PasswordSource::File(missing)).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        let err = Password::read(&PasswordSource::Env("HARK_TEST_UNSET_VAR_X".into())).unwrap_err();
        assert!(err.contains("$HARK_TEST_UNSET_VAR_X is not set"), "{err}");
    }

    #[test]
    fn start_up_errors_name_file_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hark.toml");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let load = |mqtt: &str| {
            let cfg = Config::parse(&format!("[mqtt]\n{mqtt}\n"), &file).unwrap();
            let mut opts = MqttOptions::new("x", "b", 8883);
            secure(&mut opts, &cfg.mqtt, "b", 8883)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let err = load("url = \"mqtts://b\"\nca_file = \"missing.pem\"");
        assert!(
            err.starts_with(&format!("{}: key `mqtt.ca_file`", file.display()))
                && err.contains("missing.pem")
                && err.contains("cannot read"),
            "{err}"
        );
        let err = load("url = \"mqtts://b\"\nca_file = \"junk.pem\"");
        assert!(
            err.contains("mqtt.ca_file") && err.contains("no certificate"),
            "{err}"
        );
        let err = load(
            "url = \"mqtts://b\"\nca_file = \"junk.pem\"\nclient_cert = \"junk.pem\"\nclient_key = \"k.pem\"",
        );
        assert!(
            err.contains("mqtt.ca_file"),
            "the CA is checked first: {err}"
        );
        let err = load("url = \"mqtt://b\"\nusername = \"u\"\npassword_file = \"pw\"");
        assert!(
            err.contains("mqtt.password_file") && err.contains("pw") && err.contains("cannot read"),
            "{err}"
        );
        let err =
            load("url = \"mqtt://b\"\nusername = \"u\"\npassword_env = \"HARK_TEST_UNSET_VAR_Y\"");
        assert!(
            err.contains("mqtt.password_env") && err.contains("HARK_TEST_UNSET_VAR_Y is not set"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn connection_errors_say_what_to_check() {
        let p = peer(true, Some("hark"));
        let m = p.describe(&tls_io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        assert_eq!(
            m,
            "TLS handshake with broker.example:8883 failed: certificate not trusted by ca_file /etc/hark/ca.pem (UnknownIssuer)"
        );
        let m = p.describe(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword,
        ));
        assert!(
            m.contains("bad user name or password") && m.contains("user \"hark\""),
            "{m}"
        );
        let m = p.describe(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized,
        ));
        assert!(m.contains("not authorized"), "{m}");
        let m = peer(true, None).describe(&ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        )));
        assert!(m.contains("client certificate"), "{m}");
        let m = peer(false, None).describe(&ConnectionError::Io(
            std::io::ErrorKind::ConnectionRefused.into(),
        ));
        assert!(m.contains("connection refused"), "{m}");
        let m = p.describe(&tls_io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        )));
        assert!(m.contains("not valid for \"broker.example\""), "{m}");
    }
}
