//! The topic layout of the agent protocol (see `docs/agent-protocol.md`).
//!
//! Every topic of one agent lives under `{prefix}/agents/{agent}/`; the prefix defaults to `ecp`.
//! The agent's project is not in its topics: it is a cloud-side mapping, so managing an agent into
//! a project or transferring it never requires reconfiguring the agent or its broker ACL.
//!
//! | topic | direction | QoS | retained |
//! |---|---|---|---|
//! | `…/hello` | agent → hub | 1 | no |
//! | `…/status` | agent → hub (and the agent's last will) | 1 | yes |
//! | `…/heartbeat` | agent → hub | 0 | no |
//! | `…/event` | agent → hub | 1 | no |
//! | `…/report` | agent → hub | 1 | no |
//! | `…/reply/{hub}` | agent → hub (the commands' response topic) | 1 | no |
//! | `…/cmd` | hub → agent | 1 | no |
//! | `…/desired` | hub → agent | 1 | yes |

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "ecp";

/// Checks one topic segment (agent id, hub id, prefix level): 1..=`max` of `A-Z a-z 0-9 _ -`.
///
/// # Errors
/// [`Error::InvalidInput`] naming `what`.
pub fn check_segment(what: &'static str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.len() > max {
        return Err(Error::invalid(what, format!("must be 1 to {max} characters")));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(Error::invalid(what, "may hold only A-Z, a-z, 0-9, '_' and '-'"));
    }
    Ok(())
}

/// An edge agent's id: 1–64 characters of `A-Z a-z 0-9 _ -`. It is also the agent's MQTT username
/// and client id and a level of its topics, so it can never hold a topic wildcard or separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    /// The longest id.
    pub const MAX_LEN: usize = 64;

    /// Checks `id`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when it is empty, too long, or holds another character.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        check_segment("agent id", &id, Self::MAX_LEN)?;
        Ok(AgentId(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AgentId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        AgentId::new(value)
    }
}

impl From<AgentId> for String {
    fn from(value: AgentId) -> Self {
        value.0
    }
}

impl std::str::FromStr for AgentId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AgentId::new(s)
    }
}

/// The channels of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Channel {
    /// Registration, sent on every connect.
    Hello,
    /// Retained presence; the last will says offline.
    Status,
    /// Periodic health and metrics.
    Heartbeat,
    /// Something that happened at the edge.
    Event,
    /// The outcome of applying a desired configuration.
    Report,
    /// Replies to commands (followed by the hub's id).
    Reply,
    /// Commands from the hub.
    Command,
    /// The retained desired configuration.
    Desired,
}

impl Channel {
    /// The channels an agent publishes on.
    pub const AGENT_PUBLISHES: [Channel; 6] =
        [Channel::Hello, Channel::Status, Channel::Heartbeat, Channel::Event, Channel::Report, Channel::Reply];
    /// The channels an agent subscribes to.
    pub const AGENT_SUBSCRIBES: [Channel; 2] = [Channel::Command, Channel::Desired];

    /// The topic segment.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Hello => "hello",
            Channel::Status => "status",
            Channel::Heartbeat => "heartbeat",
            Channel::Event => "event",
            Channel::Report => "report",
            Channel::Reply => "reply",
            Channel::Command => "cmd",
            Channel::Desired => "desired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hello" => Channel::Hello,
            "status" => Channel::Status,
            "heartbeat" => Channel::Heartbeat,
            "event" => Channel::Event,
            "report" => Channel::Report,
            "reply" => Channel::Reply,
            "cmd" => Channel::Command,
            "desired" => Channel::Desired,
            _ => return None,
        })
    }
}

/// Builds and parses the topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

impl Topics {
    /// Topics under `prefix`: one or more `/`-separated levels of `A-Z a-z 0-9 _ -`, at most 64
    /// characters in all.
    ///
    /// # Errors
    /// `InvalidInput` for a bad prefix.
    pub fn new(prefix: &str) -> Result<Self> {
        if prefix.is_empty() || prefix.len() > 64 {
            return Err(Error::invalid("topic prefix", "must be 1 to 64 characters"));
        }
        for level in prefix.split('/') {
            check_segment("topic prefix", level, 64)?;
        }
        Ok(Topics { prefix: prefix.to_owned() })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic of `agent`'s `channel` (for [`Channel::Reply`], the filter of every hub's replies
    /// ends in `/#`; use [`reply`](Self::reply) for one hub's).
    pub fn topic(&self, agent: &AgentId, channel: Channel) -> String {
        format!("{}/agents/{}/{}", self.prefix, agent, channel.as_str())
    }

    /// The response topic of hub `hub` for `agent`'s replies.
    pub fn reply(&self, agent: &AgentId, hub: &str) -> String {
        format!("{}/agents/{}/reply/{}", self.prefix, agent, hub)
    }

    /// The filter matching `channel` of every agent (`ecp/agents/+/hello`); for
    /// [`Channel::Reply`], `hub`'s replies from every agent.
    pub fn all_agents(&self, channel: Channel, hub: &str) -> String {
        match channel {
            Channel::Reply => format!("{}/agents/+/reply/{}", self.prefix, hub),
            c => format!("{}/agents/+/{}", self.prefix, c.as_str()),
        }
    }

    /// Splits a topic under this prefix into its agent and channel; `None` for anything else
    /// (another prefix, an unknown channel, a bad agent id, extra levels).
    pub fn parse(&self, topic: &str) -> Option<(AgentId, Channel)> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix("/agents/")?;
        let mut parts = rest.split('/');
        let agent = AgentId::new(parts.next()?.to_owned()).ok()?;
        let channel = Channel::parse(parts.next()?)?;
        match (channel, parts.next(), parts.next()) {
            (Channel::Reply, Some(hub), None) if check_segment("hub id", hub, 64).is_ok() => Some((agent, channel)),
            (_, None, _) if channel != Channel::Reply => Some((agent, channel)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let t = Topics::default();
        let a = AgentId::new("edge-7").unwrap();
        assert_eq!(t.topic(&a, Channel::Command), "ecp/agents/edge-7/cmd");
        assert_eq!(t.parse("ecp/agents/edge-7/cmd"), Some((a.clone(), Channel::Command)));
        assert_eq!(t.parse(&t.reply(&a, "hub-1")), Some((a.clone(), Channel::Reply)));
        assert_eq!(t.all_agents(Channel::Hello, "hub-1"), "ecp/agents/+/hello");
        for bad in
            ["ecp/agents/edge-7/cmd/x", "ecp/agents/edge+7/cmd", "ecp/agents/edge-7/nope", "other/agents/a/cmd", "ecp/agents/a/reply"]
        {
            assert_eq!(t.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_reject_wildcards_and_separators() {
        for bad in ["", "a/b", "a+", "#", "a b", &"x".repeat(65), "é"] {
            assert!(AgentId::new(bad).is_err(), "{bad:?}");
        }
        assert!(Topics::new("tenant-1/ecp").is_ok());
        assert!(Topics::new("a//b").is_err());
        assert!(Topics::new("a/+").is_err());
    }
}
