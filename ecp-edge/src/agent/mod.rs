//! The cloud side of the agent protocol (feature `mqtt`): the [`AgentHub`] that agents talk to
//! over MQTT 5, and the [`AgentDriver`] that manages services reached through them.
//!
//! The protocol itself (topics, messages, codec, broker ACL rendering) is `ecp-agent-proto`'s,
//! the edge side is `ecp-agent`'s; the wire protocol is written down in `docs/agent-protocol.md`.

pub mod driver;
pub mod hub;
pub mod samples;

pub use driver::{AgentDriver, TunnelTransport, desired_key};
pub use ecp_agent_proto::acl::{AgentSecret, BrokerAcl};
pub use ecp_agent_proto::{AgentId, MqttConfig, MqttTls, Topics};
pub use hub::{AgentCredentials, AgentHub, AgentHubConfig, HubEvent, HubStats};
