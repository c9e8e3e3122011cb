//! The embedded broker: rumqttd on 127.0.0.1, the zero-configuration default when the
//! config names no `[mqtt] url`. Loopback only, so it opens nothing to the network.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Starts rumqttd on `127.0.0.1:port` in a background thread and waits until it
/// accepts connections. rumqttd's `start()` never returns, so the thread is detached
/// and ends with the process.
pub fn start_embedded(port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Fail clearly if something already listens there (rumqttd would only log it).
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        anyhow::bail!(
            "embedded broker: 127.0.0.1:{port} is already in use (set [mqtt] url to use that broker, or embedded_port)"
        );
    }
    // rumqttd 0.20 requires every field; RouterConfig::default() makes it panic.
    let text = format!(
        r#"
        id = 0
        [router]
        id = 0
        max_connections = 64
        max_outgoing_packet_count = 200
        max_segment_size = 1048576
        max_segment_count = 10
        [v4.1]
        name = "v4-1"
        listen = "{addr}"
        next_connection_delay_ms = 1
        [v4.1.connections]
        connection_timeout_ms = 60000
        max_payload_size = 65536
        max_inflight_count = 100
        dynamic_filters = true
        "#
    );
    let config: rumqttd::Config = toml::from_str(&text).context("embedded broker config")?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded broker stopped: {e}");
            }
        })
        .context("cannot start the embedded broker thread")?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    anyhow::bail!("embedded broker did not start listening on {addr}")
}
