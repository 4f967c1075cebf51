//! # ecp-agent
//!
//! The edge agent of ecp-rs as a library: [`EdgeAgent`], the edge side of the agent protocol
//! (`ecp-agent-proto`). The `edge-agent` binary is this library with a configuration file.
//!
//! An agent runs next to one or more local services (NeuronEX, Neuron, eKuiper, NanoMQ, or any
//! HTTP service), connects out to the cloud's MQTT 5 broker, and
//!
//! - says `hello` and publishes its retained `status` on every connect (its last will says
//!   offline), then sends `heartbeat`s with its services' health;
//! - answers the hub's commands ([`EdgeAgent::handle`]): `http` calls to a local service, `status`,
//!   `restart` and `apply`;
//! - applies the retained `desired` configuration, at most once per item key and version, and
//!   `report`s the outcomes;
//! - reconnects with exponential backoff and full jitter, and keeps what it has to say while
//!   disconnected in a bounded buffer (oldest dropped and counted).
//!
//! # The allow-list
//!
//! A command names its local service by `target`, a `host:port`. The agent serves only the
//! authorities of its configured services' URLs (the scheme's default port when none is given)
//! and answers anything else `forbidden` without sending a byte. A tunnelled request goes to the
//! configured service's origin (`scheme://host:port`) with the command's `path` appended (the
//! hub's tunnel sends the service's base path as part of it); a path that does not start with a
//! single `/`, or holds `\`, `#`, whitespace or control characters, is refused as `bad_request`,
//! so the host can never change.
//!
//! # Applying desired items
//!
//! The agent records, per item key, the last version it started and its outcome. Before calling
//! the service it writes the version as *started* to its state file (JSON, written atomically:
//! a temporary file, then a rename), then the outcome. An item whose version is not newer than
//! the recorded one is not applied again: the recorded outcome is returned. An item found started
//! without an outcome when the agent starts (a crash mid-apply) is recorded as failed with the
//! detail `"interrupted"` and is not re-applied; the next version applies normally. The state
//! file looks like this:
//!
//! ```json
//! {"format":1,"items":{"stream:demo":{"version":3,"outcome":{"ok":true,"detail":{"stream":"demo","created":true}}}}}
//! ```
//!
//! # Running
//!
//! ```no_run
//! # async fn demo() -> ecp_agent::Result<()> {
//! use ecp_agent::{AgentId, EdgeAgent, EdgeAgentConfig, EdgeKind, LocalServiceConfig, MqttConfig};
//!
//! let mqtt = MqttConfig::builder("broker.example", 8883).build()?; // TLS on the platform's roots
//! let config = EdgeAgentConfig::builder(AgentId::new("edge-7")?, mqtt)
//!     .service(LocalServiceConfig::builder("kuiper", EdgeKind::Ekuiper, "http://127.0.0.1:9081").build()?)
//!     .heartbeat(std::time::Duration::from_secs(30))
//!     .build()?;
//! let agent = EdgeAgent::new(config)?.spawn();
//! // ... later:
//! let stats = agent.shutdown().await?;
//! println!("connected {} times", stats.connects);
//! # Ok(()) }
//! ```
//!
//! # What it links
//!
//! The agent runs on small gateways: it links the protocol (`ecp-agent-proto`), the product
//! adapters (`ecp-edge-api`, which talks to the local services over HTTP), rumqttc and Tokio, and
//! no store, access control or telemetry engine.

mod agent;
mod commands;
mod config;
mod desired;
pub mod error;
mod heartbeat;
mod outbox;
mod run;
mod state;
mod stats;
mod tunnel;

pub use agent::{AgentHandle, EdgeAgent};
pub use config::{EdgeAgentConfig, EdgeAgentConfigBuilder, LocalServiceConfig, LocalServiceConfigBuilder};
pub use ecp_agent_proto::mqtt::{MqttConfigBuilder, MqttTlsBuilder};
pub use ecp_agent_proto::proto::{Applied, Command, Event, Reply};
pub use ecp_agent_proto::{AgentId, MqttConfig, MqttTls, Topics};
pub use ecp_edge_api::{Credentials, EdgeKind};
pub use error::{Error, Result};
pub use stats::AgentStats;
