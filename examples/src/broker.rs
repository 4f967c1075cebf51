//! The quickstart's in-process MQTT 5 broker (rumqttd): fine for a demo on loopback, not for load
//! (it never sets TCP_NODELAY and accepts about 900 connections/s); tests use mosquitto.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// Starts rumqttd on `127.0.0.1` and a free port, in its own thread, with an MQTT 5 listener and
/// a payload limit that fits the agent protocol's 256 KiB messages; returns the port once it
/// accepts connections.
///
/// # Errors
/// When no port is free, the configuration is refused, or the broker does not listen within 5 s.
pub fn start_embedded_broker() -> anyhow::Result<u16> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config: rumqttd::Config = toml::from_str(&format!(
        r#"
id = 0

[router]
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1

[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = 300000
max_inflight_count = 100
dynamic_filters = true
"#
    ))?;
    std::thread::Builder::new().name("rumqttd".into()).spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "the embedded broker stopped");
        }
    })?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(5), "the embedded broker did not listen on {addr} within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(port)
}
