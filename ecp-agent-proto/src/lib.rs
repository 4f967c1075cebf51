//! # ecp-agent-proto
//!
//! The edge agent protocol of ecp-rs, without I/O: what the cloud's hub (in `ecp-edge`) and the
//! edge agent (`ecp-agent`) say to each other over MQTT 5, and how the broker keeps them apart.
//! The wire protocol is written down in `docs/agent-protocol.md`.
//!
//! - [`topics`]: [`AgentId`], the [`Channel`]s of an agent and the [`Topics`] layout.
//! - [`proto`]: the [`Envelope`], every [`Message`], and the codec ([`proto::encode`],
//!   [`proto::decode`]) that never panics and names why it rejected a payload.
//! - `acl` (feature `acl`): per-agent broker secrets, their mosquitto hashes, and the broker's
//!   password and ACL files.
//! - [`mqtt`]: the broker settings both ends share ([`MqttConfig`]); with the feature `rumqttc`,
//!   as rumqttc client options.
//!
//! ```
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ecp_agent_proto::proto::{self, Heartbeat, Message};
//! use ecp_agent_proto::{AgentId, Channel, Envelope, Topics};
//!
//! let agent = AgentId::new("edge-7")?;
//! let topic = Topics::default().topic(&agent, Channel::Heartbeat);
//! assert_eq!(topic, "ecp/agents/edge-7/heartbeat");
//!
//! let hb = Heartbeat { seq: 1, uptime_secs: 60, services: vec![], metrics: Default::default() };
//! let bytes = proto::encode(&Envelope::new(Message::Heartbeat(hb)), proto::DEFAULT_MAX_PAYLOAD)?;
//! let back = proto::decode(Channel::Heartbeat, &bytes, proto::DEFAULT_MAX_PAYLOAD)?;
//! assert!(matches!(back.message, Message::Heartbeat(h) if h.seq == 1));
//! # Ok(()) }
//! # demo().unwrap();
//! ```

#[cfg(feature = "acl")]
pub mod acl;
pub mod error;
pub mod files;
pub mod mqtt;
pub mod proto;
pub mod topics;

pub use error::{Error, Result};
pub use mqtt::{MqttConfig, MqttTls};
pub use proto::{DecodeError, EncodeError, Envelope, Message, RejectReason};
pub use topics::{AgentId, Channel, Topics};
