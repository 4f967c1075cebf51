//! The agents side of the MQTT load harness (`scripts/bench-mqtt`): `--count` edge agents as real
//! MQTT 5 connections in one process, each fronting the same in-process NanoMQ simulator on
//! loopback (one HTTP API shared by every agent of the process), so that applying a desired item
//! costs each agent one local HTTP call.
//!
//! ```text
//! cargo run --release -p ecp-examples --example loadtest_agents -- --port 1883 --count 5000 --first 0
//! ```
//!
//! It prints one JSON line once every agent is connected (`connect_s`), then serves until it gets
//! SIGTERM or SIGINT, or `--max-secs` pass, and prints its counters. A process holds at most about
//! three sockets per agent (MQTT, and both ends of the agent's HTTP connection to the simulator):
//! keep `--count` under a third of the open-file limit and run several processes for more.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use ecp_agent::{AgentHandle, EdgeAgent, EdgeAgentConfig, LocalServiceConfig, MqttConfig};
use ecp_core::edge::{AgentId, Credentials, EdgeKind};
use ecp_testkit::sim::{SimConfig, SimKind, SimService};
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(about = "N edge agents on one MQTT 5 broker, for the load harness")]
struct Args {
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port.
    #[arg(long)]
    port: u16,
    /// How many agents.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// The number of the first agent (agents are `load-00000`, `load-00001` ...).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// The agents' heartbeat interval in seconds (long by default, to keep background traffic
    /// out of the measurement).
    #[arg(long, default_value_t = 600)]
    heartbeat_secs: u64,
    /// The agents' MQTT in-flight window (rumqttc reserves memory for it per client).
    #[arg(long, default_value_t = 8)]
    inflight: u16,
    /// New connections started per second (the broker's accept queue is finite).
    #[arg(long, default_value_t = 1000)]
    connect_rate: u32,
    /// Give up waiting for the connections after this long.
    #[arg(long, default_value_t = 120)]
    connect_timeout_secs: u64,
    /// Stop after this long whatever happens.
    #[arg(long, default_value_t = 900)]
    max_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(args.count > 0 && args.count <= 20_000, "--count must be 1 to 20000");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    let (user, pass) = SimKind::NanoMq.default_credentials().unwrap_or(("admin", "public"));
    let sim = SimService::start(SimConfig::new(SimKind::NanoMq)).await.context("starting the NanoMQ simulator")?;
    let credentials = Credentials::Basic { username: user.into(), password: SecretString::from(pass.to_owned()) };

    let mut handles: Vec<AgentHandle> = Vec::with_capacity(args.count);
    let batch = (args.connect_rate / 20).max(1) as usize;
    for i in 0..args.count {
        let mqtt = MqttConfig::builder(args.host.clone(), args.port)
            .insecure(true)
            .inflight(args.inflight)
            .connect_timeout(Duration::from_secs(30))
            .build()?;
        let id = AgentId::new(format!("load-{:05}", args.first + i))?;
        let nanomq = LocalServiceConfig::builder("nanomq", EdgeKind::NanoMq, sim.base_url()).credentials(credentials.clone()).build()?;
        let config = EdgeAgentConfig::builder(id, mqtt)
            .service(nanomq)
            .heartbeat(Duration::from_secs(args.heartbeat_secs.clamp(1, 3600)))
            .backoff_initial(Duration::from_millis(500))
            .backoff_max(Duration::from_secs(5))
            .request_timeout(Duration::from_secs(30))
            .build()?;
        handles.push(EdgeAgent::new(config)?.spawn());
        if (i + 1) % batch == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Building an agent builds its HTTP clients (TLS roots included): most of the start-up time.
    let built_s = started.elapsed().as_secs_f64();
    let connect_limit = started + Duration::from_secs(args.connect_timeout_secs);
    let mut connected = 0;
    while Instant::now() < connect_limit {
        connected = handles.iter().filter(|h| h.is_connected()).count();
        if connected == handles.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{}",
        serde_json::json!({
            "agents": args.count, "first": args.first, "connected": connected,
            "built_s": built_s, "connect_s": started.elapsed().as_secs_f64(), "sim": sim.base_url(),
        })
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        () = tokio::time::sleep_until(deadline.into()) => eprintln!("loadtest_agents: --max-secs reached"),
    }
    let (mut handled, mut applied, mut refused, mut connects) = (0, 0, 0, 0);
    for h in &handles {
        let s = h.stats();
        handled += s.commands_handled;
        applied += s.items_applied;
        refused += s.commands_refused;
        connects += s.connects;
    }
    println!(
        "{}",
        serde_json::json!({
            "agents": args.count, "commands_handled": handled, "items_applied": applied,
            "commands_refused": refused, "connects": connects, "sim_requests": sim.total_requests(),
        })
    );
    // Leaving without goodbyes: the broker is stopped next anyway.
    for h in handles {
        let _ = h.abort();
    }
    Ok(())
}
