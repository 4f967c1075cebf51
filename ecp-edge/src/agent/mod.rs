//! Edge agents over MQTT 5: the protocol (topics, messages, codec), the per-agent broker access
//! control, and (feature `mqtt`) the cloud-side hub and the edge-side agent.
//!
//! The wire protocol is written down in `docs/agent-protocol.md`.

pub mod acl;
#[cfg(feature = "mqtt")]
pub mod driver;
#[cfg(all(feature = "mqtt", feature = "direct"))]
pub mod edge;
#[cfg(feature = "mqtt")]
pub mod hub;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod proto;
#[cfg(feature = "mqtt")]
pub mod samples;
pub mod topics;

#[cfg(feature = "mqtt")]
pub use driver::{AgentDriver, TunnelTransport, desired_key};
#[cfg(all(feature = "mqtt", feature = "direct"))]
pub use edge::{AgentHandle, AgentStats, EdgeAgent, EdgeAgentConfig, LocalServiceConfig};
#[cfg(feature = "mqtt")]
pub use hub::{AgentHub, AgentHubConfig, HubEvent, HubStats};
#[cfg(feature = "mqtt")]
pub use mqtt::{MqttConfig, MqttTls};
pub use proto::{DecodeError, Envelope, Message, RejectReason};
pub use topics::{AgentId, Channel, Topics};
