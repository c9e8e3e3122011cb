//! hark listens on nothing unless told to: with an external broker it opens no
//! listening socket at all, and the embedded broker binds loopback only.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{Proc, SERIAL, free_port, hark, shared_data, shipped_model, wait_for_port};

/// Listening TCP sockets and bound UDP sockets of process `pid`: (address, port).
fn listening(pid: u32) -> Vec<(String, u16)> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut out = Vec::new();
    for (table, listen_state) in [
        ("/proc/net/tcp", "0A"),
        ("/proc/net/tcp6", "0A"),
        ("/proc/net/udp", "07"),
        ("/proc/net/udp6", "07"),
    ] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != listen_state || !inodes.contains(f[9]) {
                continue;
            }
            let (addr, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let addr = match addr.len() {
                8 => {
                    let v = u32::from_str_radix(addr, 16).unwrap();
                    std::net::Ipv4Addr::from(v.swap_bytes()).to_string()
                }
                _ => addr.to_string(),
            };
            out.push((addr, port));
        }
    }
    out
}

fn run_with(mqtt: &str, dir: &Path, data: &Path) -> Proc {
    let cfg = format!(
        "node = \"sock\"\nstate_dir = \"{}\"\n[mqtt]\n{mqtt}\n[[source]]\nname = \"fan\"\ndevice = \"file:{}\"\nmodel = \"{}\"\n",
        dir.display(),
        data.join("fan/test/normal_id_00_20210210T012029.wav")
            .display(),
        shipped_model("default.safetensors").display(),
    );
    let config = dir.join("hark.toml");
    std::fs::write(&config, cfg).unwrap();
    Proc(
        hark()
            .args(["run", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn no_listening_socket_but_the_loopback_embedded_broker() {
    let Some(data) = shared_data() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // External broker (nothing listens there: hark just keeps retrying).
    let absent = free_port();
    let proc = run_with(
        &format!("url = \"mqtt://127.0.0.1:{absent}\""),
        dir.path(),
        &data,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        listening(proc.0.id()),
        vec![],
        "external broker: no socket of its own"
    );
    drop(proc);
    // Embedded broker: one listener, on loopback.
    let port = free_port();
    let proc = run_with(&format!("embedded_port = {port}"), dir.path(), &data);
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "embedded broker up"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut socks = listening(proc.0.id());
    while socks.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        socks = listening(proc.0.id());
    }
    assert_eq!(socks, vec![("127.0.0.1".to_string(), port)]);
}

/// `GET /metrics` on the endpoint; the response body.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn the_metrics_endpoint_serves_counters_and_latency_histograms_on_loopback() {
    let Some(data) = shared_data() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let proc = run_with(
        &format!(
            "url = \"mqtt://127.0.0.1:{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"",
            free_port()
        ),
        dir.path(),
        &data,
    );
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "metrics endpoint up"
    );
    // The first window of the real-time replay arrives after ~2 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut text = scrape(port);
    while !text.contains("hark_score{") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        text = scrape(port);
    }
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("hark_windows_total{source=\"fan\"}") >= 1.0);
    assert_eq!(value("hark_dropped_samples_total{source=\"fan\"}"), 0.0);
    let count = value("hark_stage_seconds_count{source=\"fan\",stage=\"inference\"}");
    let inf = value("hark_stage_seconds_bucket{source=\"fan\",stage=\"inference\",le=\"+Inf\"}");
    assert!(count >= 1.0 && count == inf, "{text}");
    // It is the only socket hark listens on.
    assert_eq!(
        listening(proc.0.id()),
        vec![("127.0.0.1".to_string(), port)]
    );
}
