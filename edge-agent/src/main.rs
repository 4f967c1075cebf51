//! The ecp-rs edge agent: runs next to NeuronEX, Neuron, eKuiper or NanoMQ services, connects out
//! to the cloud's MQTT 5 broker, and lets the control plane manage them (see
//! `docs/agent-protocol.md`).
//!
//! ```text
//! ECP_AGENT_SECRET=... cargo run --release -p ecp-edge-agent -- --config edge-agent/edge-agent.toml
//! ```
//!
//! The broker secret comes from `--secret-file <path>` or the `ECP_AGENT_SECRET` environment
//! variable, never from a flag (flags show in `ps`). Service passwords come from the environment
//! variables the configuration names (`password_env`). Logging follows `RUST_LOG` (default
//! `info`). Ctrl-C says offline and disconnects cleanly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use ecp_agent::{AgentId, Credentials, EdgeAgent, EdgeAgentConfig, EdgeKind, LocalServiceConfig, MqttConfig, MqttTls, Topics};
use secrecy::SecretString;
use serde::Deserialize;

/// The environment variable holding the agent's broker secret.
const SECRET_ENV: &str = "ECP_AGENT_SECRET";

/// The ecp-rs edge agent.
#[derive(Debug, Parser)]
#[command(name = "edge-agent", version, about)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, value_name = "agent.toml")]
    config: PathBuf,
    /// Overrides `[agent] id`.
    #[arg(long)]
    agent_id: Option<String>,
    /// Overrides `[broker] host`.
    #[arg(long)]
    broker_host: Option<String>,
    /// Overrides `[broker] port`.
    #[arg(long)]
    broker_port: Option<u16>,
    /// Overrides `[broker] username` (default: the agent id).
    #[arg(long)]
    username: Option<String>,
    /// A file holding the broker secret (else the `ECP_AGENT_SECRET` environment variable).
    #[arg(long, value_name = "path")]
    secret_file: Option<PathBuf>,
    /// Speaks MQTT in cleartext (overrides `[broker] insecure`); logged as a warning.
    #[arg(long)]
    insecure: bool,
}

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    agent: AgentSection,
    broker: BrokerSection,
    #[serde(default, rename = "service")]
    services: Vec<ServiceSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    id: Option<String>,
    #[serde(default = "default_heartbeat")]
    heartbeat_secs: u64,
    state_file: Option<PathBuf>,
    topic_prefix: Option<String>,
}

fn default_heartbeat() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerSection {
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    name: String,
    kind: String,
    url: String,
    username: Option<String>,
    password_env: Option<String>,
    token_env: Option<String>,
    restart_command: Option<Vec<String>>,
}

fn env_secret(var: &str, what: &str) -> anyhow::Result<SecretString> {
    let value = std::env::var(var).with_context(|| format!("{what}: the environment variable {var} is not set"))?;
    Ok(SecretString::from(value))
}

fn read_secret_file(path: &Path) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the secret file {}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("the secret file {} is empty", path.display());
    }
    Ok(SecretString::from(secret.to_owned()))
}

fn service(s: ServiceSection) -> anyhow::Result<LocalServiceConfig> {
    let kind = EdgeKind::parse(&s.kind)
        .with_context(|| format!("service {:?}: unknown kind {:?} (neuronex, neuron, ekuiper, nanomq, custom)", s.name, s.kind))?;
    let what = format!("service {:?}", s.name);
    let credentials = match (s.username, &s.password_env, &s.token_env) {
        (Some(username), Some(var), None) => Credentials::Basic { username, password: env_secret(var, &what)? },
        (None, None, Some(var)) => Credentials::Token(env_secret(var, &what)?),
        (None, None, None) => Credentials::None,
        _ => bail!("{what}: give `username` with `password_env`, or `token_env`, or neither"),
    };
    let mut config = LocalServiceConfig::builder(s.name, kind, s.url).credentials(credentials);
    if let Some(command) = s.restart_command {
        config = config.restart_command(command);
    }
    config.build().with_context(|| what)
}

fn agent_config(cli: Cli) -> anyhow::Result<EdgeAgentConfig> {
    let text = std::fs::read_to_string(&cli.config).with_context(|| format!("reading {}", cli.config.display()))?;
    let file: FileConfig = toml::from_str(&text).with_context(|| format!("parsing {}", cli.config.display()))?;

    let id = cli.agent_id.or(file.agent.id).context("no agent id: set `[agent] id` or pass --agent-id")?;
    let agent_id = AgentId::new(id)?;
    let host = cli.broker_host.or(file.broker.host).context("no broker: set `[broker] host` or pass --broker-host")?;
    let insecure = cli.insecure || file.broker.insecure;
    if insecure && file.broker.tls_ca_file.is_some() {
        bail!("[broker] insecure (cleartext) and tls_ca_file (TLS) contradict each other");
    }
    let port = cli.broker_port.or(file.broker.port).unwrap_or(if insecure { 1883 } else { 8883 });
    let mut mqtt = MqttConfig::builder(host, port).insecure(insecure);
    let secret = match (&cli.secret_file, std::env::var_os(SECRET_ENV)) {
        (Some(path), _) => Some(read_secret_file(path)?),
        (None, Some(_)) => Some(env_secret(SECRET_ENV, "the broker secret")?),
        (None, None) => None,
    };
    if let Some(secret) = secret {
        let username = cli.username.or(file.broker.username).unwrap_or_else(|| agent_id.to_string());
        mqtt = mqtt.credentials(username, secret);
    }
    if let Some(ca) = &file.broker.tls_ca_file {
        let ca_pem = std::fs::read(ca).with_context(|| format!("reading the broker CA {}", ca.display()))?;
        let tls = MqttTls::builder(ca_pem).build().with_context(|| format!("the broker CA {}", ca.display()))?;
        mqtt = mqtt.tls(tls);
    }
    let mqtt = mqtt.build().context("the broker settings")?;

    let mut config = EdgeAgentConfig::builder(agent_id, mqtt).heartbeat(Duration::from_secs(file.agent.heartbeat_secs));
    if let Some(path) = file.agent.state_file {
        config = config.state_file(path);
    }
    if let Some(prefix) = &file.agent.topic_prefix {
        config = config.topics(Topics::new(prefix)?);
    }
    for s in file.services {
        config = config.service(service(s)?);
    }
    config.build().context("the agent settings")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // rumqttc builds its TLS configuration with the process's rustls provider: aws-lc-rs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let config = agent_config(Cli::parse())?;
    let agent = EdgeAgent::new(config).context("starting the agent")?;
    let c = agent.config();
    tracing::info!(
        agent = %c.agent_id(),
        broker = %format!("{}:{}", c.mqtt().host(), c.mqtt().port()),
        tls = !c.mqtt().is_insecure(),
        pinned_ca = c.mqtt().tls().is_some(),
        services = ?agent.allowed_targets(),
        "edge agent starting"
    );
    let stats = agent
        .run(async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
            }
        })
        .await?;
    tracing::info!(
        connects = stats.connects,
        heartbeats = stats.heartbeats_sent,
        commands = stats.commands_handled,
        applied = stats.items_applied,
        dropped = stats.dropped,
        "edge agent stopped"
    );
    Ok(())
}
