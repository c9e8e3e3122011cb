//! MQTT security against a real mosquitto: a TLS listener that requires a client
//! certificate (mutual TLS) and a user name and password, with certificates the test
//! makes with the `openssl` CLI. A right set-up publishes `online` and state; a wrong
//! CA or a wrong password keeps hark running and retrying with backoff, says what is
//! wrong in one line, and never prints the password.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{
    Msg, Proc, SERIAL, free_port, hark, shared_data, shipped_model, system_binary, wait_for_port,
};

const USER: &str = "hark";
const PASSWORD: &str = "s3cret-Pa55word-4-tests";
const WRONG_PASSWORD: &str = "not-the-Pa55word-9";

/// Certificates and keys in one directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Runs openssl in `dir`; panics with its stderr when it fails.
fn openssl(bin: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`), a second unrelated CA (`wrong-ca.pem`), a server certificate for
/// 127.0.0.1/localhost (`server.pem`/`.key`) and a client certificate
/// (`client.pem`/`.key`), all P-256 and valid for two days.
fn make_pki(dir: &Path) -> Option<Pki> {
    let bin = system_binary("openssl")?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (name, cn) in [("ca", "hark test CA"), ("wrong-ca", "some other CA")] {
        let (key, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN={cn}"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&bin, dir, &args);
    }
    for (serial, name, ext) in [
        (
            "2",
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "3",
            "client",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(dir.join(&extfile), ext).unwrap();
        let subj = format!("/CN={name}");
        let mut args = vec!["req", "-new"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&bin, dir, &args);
        openssl(
            &bin,
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &extfile,
            ],
        );
    }
    Some(Pki {
        dir: dir.to_path_buf(),
    })
}

/// mosquitto with one TLS listener on a free port: client certificate required,
/// password file, no anonymous access. Its log goes to `mosquitto.log` in the PKI dir.
fn tls_mosquitto(pki: &Pki) -> Option<(Proc, u16)> {
    let bin = system_binary("mosquitto")?;
    let passwd = system_binary("mosquitto_passwd")?;
    let pwfile = pki.path("passwd");
    let out = Command::new(passwd)
        .args(["-b", "-c"])
        .arg(&pwfile)
        .args([USER, PASSWORD])
        .output()
        .unwrap();
    assert!(out.status.success(), "mosquitto_passwd: {out:?}");
    let whoami = Command::new("id").arg("-un").output().unwrap();
    let user = String::from_utf8_lossy(&whoami.stdout).trim().to_string();
    let port = free_port();
    let conf = format!(
        "# mosquitto drops root for this user; it must read the temp dir\n\
         user {user}\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {pw}\n\
         listener {port} 127.0.0.1\n\
         cafile {ca}\n\
         certfile {crt}\n\
         keyfile {key}\n\
         require_certificate true\n",
        pw = pwfile.display(),
        ca = pki.path("ca.pem").display(),
        crt = pki.path("server.pem").display(),
        key = pki.path("server.key").display(),
    );
    let conf_path = pki.path("mosquitto.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = std::fs::File::create(pki.path("mosquitto.log")).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mosquitto starts");
    let proc = Proc(child);
    assert!(
        wait_for_port(port, Duration::from_secs(5)),
        "mosquitto listens on {port}: {}",
        std::fs::read_to_string(pki.path("mosquitto.log")).unwrap_or_default()
    );
    Some((proc, port))
}

/// `mosquitto_sub` on the TLS listener with the right CA, client certificate and
/// password (an OpenSSL client, independent of hark's rustls), recording every
/// `hark/#` message.
struct Subscriber {
    _proc: Proc,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    fn start(pki: &Pki, port: u16) -> Option<Subscriber> {
        let bin = system_binary("mosquitto_sub")?;
        // Line-buffered: mosquitto_sub's stdout is a pipe here.
        let stdbuf = system_binary("stdbuf")?;
        let mut child = Command::new(stdbuf)
            .arg("-oL")
            .arg(bin)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .arg("--cafile")
            .arg(pki.path("ca.pem"))
            .arg("--cert")
            .arg(pki.path("client.pem"))
            .arg("--key")
            .arg(pki.path("client.key"))
            .args([
                "-u", USER, "-P", PASSWORD, "-q", "1", "-t", "hark/#", "-v", "-d",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push(line);
            }
        });
        let sub = Subscriber {
            _proc: Proc(child),
            lines,
        };
        // -d prints the broker's SUBACK: from then on nothing is missed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sub
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("SUBACK"))
        {
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub did not subscribe: {:?}",
                sub.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(sub)
    }

    /// Every message so far (`topic payload` lines; -d's debug lines left out).
    fn all(&self) -> Vec<Msg> {
        let lines = self.lines.lock().unwrap();
        let msgs = lines.iter().filter(|l| l.starts_with("hark/"));
        msgs.map(|l| {
            let (topic, payload) = l.split_once(' ').unwrap_or((l, ""));
            Msg {
                topic: topic.into(),
                payload: payload.into(),
                retain: false,
            }
        })
        .collect()
    }

    /// Waits until a message satisfies `pred`; returns it.
    fn wait_for(&self, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.all().into_iter().find(|m| pred(m)) {
                return Some(m);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A hark.toml beside the PKI (so relative paths resolve there) with a `file:` source
/// replaying a real fan recording at real-time pace; `mqtt` is the `[mqtt]` body.
fn write_config(pki: &Pki, data: &Path, mqtt: &str) -> PathBuf {
    let wav = data.join("fan/test/normal_id_00_20210210T012029.wav");
    let cfg = format!(
        r#"node = "tls"
state_dir = "{dir}"
[mqtt]
{mqtt}
health_interval_s = 0.5
[[source]]
name = "fan"
device = "file:{wav}"
realtime = true
model = "{model}"
learn_seconds = 600
"#,
        dir = pki.dir.display(),
        wav = wav.display(),
        model = shipped_model("default.safetensors").display(),
    );
    let path = pki.path("hark.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn spawn_hark(config: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = hark();
    cmd.args(["run", "--config"])
        .arg(config)
        // Every retry is a debug line of hark::mqtt; the rest stays at info.
        .env("RUST_LOG", "warn,hark=info,hark::mqtt=debug")
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

/// hark connects with mutual TLS and a password, publishes `online` and its state,
/// and `offline` on SIGTERM; the password appears nowhere in its output.
fn connects_and_publishes(mqtt_auth: &str, env: &[(&str, &str)]) {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = make_pki(dir.path()) else {
        return;
    };
    let Some((_broker, port)) = tls_mosquitto(&pki) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::write(pki.path("mqtt-password"), format!("{PASSWORD}\n")).unwrap();
    let config = write_config(
        &pki,
        &data,
        &format!(
            "url = \"mqtts://127.0.0.1:{port}\"\nusername = \"{USER}\"\n{mqtt_auth}\n\
             ca_file = \"ca.pem\"\nclient_cert = \"client.pem\"\nclient_key = \"client.key\""
        ),
    );
    let Some(sub) = Subscriber::start(&pki, port) else {
        return;
    };
    let mut proc = spawn_hark(&config, env);
    let online = sub.wait_for(Duration::from_secs(10), |m| {
        m.topic == "hark/tls/availability" && m.payload == "online"
    });
    let state = sub.wait_for(Duration::from_secs(10), |m| {
        m.topic == "hark/tls/fan/state" && m.json()["state"] == "learning"
    });
    let status = proc.terminate(Duration::from_secs(10));
    let stderr = proc.stderr();
    assert!(
        online.is_some(),
        "no online over TLS: {stderr}\n{:?}",
        sub.all()
    );
    assert!(
        state.is_some(),
        "no state over TLS: {stderr}\n{:?}",
        sub.all()
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    let offline = sub.wait_for(Duration::from_secs(5), |m| {
        m.topic == "hark/tls/availability" && m.payload == "offline"
    });
    assert!(offline.is_some(), "offline after SIGTERM: {:?}", sub.all());
    assert!(stderr.contains("mqtt connected"), "{stderr}");
    assert!(!stderr.contains("mqtt down"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "the password leaked: {stderr}");
}

#[test]
fn mutual_tls_with_a_password_file_publishes_online_and_state() {
    connects_and_publishes("password_file = \"mqtt-password\"", &[]);
}

#[test]
fn mutual_tls_with_a_password_from_the_environment_publishes_online_and_state() {
    connects_and_publishes(
        "password_env = \"HARK_TEST_MQTT_PASSWORD\"",
        &[("HARK_TEST_MQTT_PASSWORD", PASSWORD)],
    );
}

/// Seconds since midnight of a log line's RFC 3339 timestamp (`...T12:34:56.789Z`).
fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split_once('T')?.1;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Runs hark against the TLS broker for `watch`, then checks it kept running, said
/// what is wrong in exactly one warning (returned), retried with growing gaps,
/// never connected, and printed no password.
fn fails_clearly(mqtt: &str, watch: Duration) -> Option<String> {
    let data = shared_data()?;
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path())?;
    let (_broker, port) = tls_mosquitto(&pki)?;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::write(pki.path("mqtt-password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(pki.path("wrong-password"), format!("{WRONG_PASSWORD}\n")).unwrap();
    let config = write_config(
        &pki,
        &data,
        &format!("url = \"mqtts://127.0.0.1:{port}\"\nusername = \"{USER}\"\n{mqtt}"),
    );
    let sub = Subscriber::start(&pki, port)?;
    let mut proc = spawn_hark(&config, &[]);
    let start = Instant::now();
    while start.elapsed() < watch {
        assert!(
            proc.0.try_wait().unwrap().is_none(),
            "hark exited: {}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = proc.terminate(Duration::from_secs(10));
    let stderr = proc.stderr();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    for secret in [PASSWORD, WRONG_PASSWORD] {
        assert!(!stderr.contains(secret), "a password leaked: {stderr}");
    }
    assert!(!stderr.contains("mqtt connected"), "{stderr}");
    assert!(
        !sub.all().iter().any(|m| m.topic.starts_with("hark/tls/")),
        "nothing gets through: {:?}",
        sub.all()
    );
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("mqtt down")).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning while the reason stays: {stderr}"
    );
    // Attempts: the warning, then one debug line per further failure, spaced by the
    // backoff (0.5 s, 1 s, 2 s, ...).
    let attempts: Vec<f64> = stderr
        .lines()
        .filter(|l| l.contains("mqtt down") || l.contains("mqtt still down"))
        .map(|l| log_time(l).unwrap_or_else(|| panic!("no timestamp: {l}")))
        .collect();
    assert!(attempts.len() >= 3, "at least three attempts: {stderr}");
    let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= 0.45, "backoff before the first retry: {gaps:?}");
    assert!(gaps[1] >= 1.5 * gaps[0], "the backoff grows: {gaps:?}");
    for l in stderr.lines().filter(|l| l.contains("mqtt")) {
        eprintln!("hark said: {l}");
    }
    Some(warnings[0].to_string())
}

#[test]
fn a_wrong_ca_is_named_and_retried_with_backoff() {
    let Some(line) = fails_clearly(
        "password_file = \"mqtt-password\"\nca_file = \"wrong-ca.pem\"\n\
         client_cert = \"client.pem\"\nclient_key = \"client.key\"",
        Duration::from_millis(4500),
    ) else {
        return;
    };
    assert!(
        line.contains("TLS handshake with 127.0.0.1:")
            && line.contains("certificate not trusted by ca_file")
            && line.contains("wrong-ca.pem")
            && line.contains("UnknownIssuer"),
        "{line}"
    );
}

#[test]
fn a_wrong_password_is_named_and_retried_with_backoff() {
    let Some(line) = fails_clearly(
        "password_file = \"wrong-password\"\nca_file = \"ca.pem\"\n\
         client_cert = \"client.pem\"\nclient_key = \"client.key\"",
        Duration::from_millis(4500),
    ) else {
        return;
    };
    assert!(
        line.contains("refused the connection")
            && (line.contains("not authorized") || line.contains("bad user name or password"))
            && line.contains("user \"hark\""),
        "{line}"
    );
}

#[test]
fn a_missing_client_certificate_is_named() {
    let Some(line) = fails_clearly(
        "password_file = \"mqtt-password\"\nca_file = \"ca.pem\"",
        Duration::from_millis(4500),
    ) else {
        return;
    };
    assert!(
        line.contains("client certificate") || line.contains("client_cert"),
        "{line}"
    );
}

#[test]
fn unreadable_tls_files_and_passwords_stop_start_up_with_one_line() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki {
        dir: dir.path().to_path_buf(),
    };
    std::fs::write(pki.path("junk.pem"), "no certificate here\n").unwrap();
    let port = free_port();
    for (mqtt, key, value, why) in [
        (
            "ca_file = \"junk.pem\"".to_string(),
            "mqtt.ca_file",
            "junk.pem",
            "no certificate",
        ),
        (
            "ca_file = \"missing.pem\"".to_string(),
            "mqtt.ca_file",
            "missing.pem",
            "cannot read",
        ),
        (
            "username = \"hark\"\npassword_env = \"HARK_TEST_UNSET_PASSWORD\"".to_string(),
            "mqtt.password_env",
            "HARK_TEST_UNSET_PASSWORD",
            "is not set",
        ),
    ] {
        let config = write_config(
            &pki,
            &data,
            &format!("url = \"mqtts://127.0.0.1:{port}\"\n{mqtt}"),
        );
        let out = hark()
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("HARK_TEST_UNSET_PASSWORD")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mqtt}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("hark: error:"))
            .unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(
            line.contains(&config.display().to_string())
                && line.contains(key)
                && line.contains(value)
                && line.contains(why),
            "{line}"
        );
    }
}
