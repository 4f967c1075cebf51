//! Commands to agents as MQTT 5 requests, and their replies.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use ecp_core::edge::AgentId;
use ecp_telemetry::own::Direction;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use tokio::sync::oneshot;

use ecp_agent_proto::Channel;
use ecp_agent_proto::mqtt::qos;
use ecp_agent_proto::proto::{self, Command, Envelope, Message, RejectReason, Reply};

use super::stats::{count_message, reject};
use super::{AgentHub, Inner, Pending, encode_error, lock, transport_error};
use crate::error::Result;

impl AgentHub {
    /// Sends `command` to `agent` and waits up to `timeout` (default: the configured request
    /// timeout) for its reply.
    ///
    /// # Errors
    /// `Transport` (retryable) when the hub is not connected, the agent is offline, or it does
    /// not answer in time; `TooLarge` for a command over the payload limit.
    pub async fn request(&self, agent: &AgentId, command: Command, timeout: Option<Duration>) -> Result<Reply> {
        let inner = &self.inner;
        let what = format!("agent {agent}");
        if !self.is_connected() {
            return Err(transport_error(what, true, "the hub is not connected to the broker"));
        }
        if lock(&inner.presence).get(agent).is_some_and(|p| !p.online) {
            return Err(transport_error(what, true, "the agent is offline"));
        }
        let payload = proto::encode(&Envelope::new(Message::Command(command)), inner.config.mqtt.max_payload())
            .map_err(|e| encode_error(&what, e))?;
        let corr = (u128::from(inner.corr_prefix) << 64) | u128::from(inner.corr_next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&inner.pending);
            if pending.len() >= inner.config.max_pending {
                return Err(transport_error(what, true, "too many requests are waiting for replies"));
            }
            pending.insert(corr, Pending { agent: agent.clone(), tx });
        }
        let properties = PublishProperties {
            response_topic: Some(inner.config.topics.reply(agent, &inner.config.hub_id)),
            correlation_data: Some(Bytes::copy_from_slice(&corr.to_be_bytes())),
            ..PublishProperties::default()
        };
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let topic = inner.config.topics.topic(agent, Channel::Command);
        if let Err(e) = inner.client.publish_with_properties(topic, qos(Channel::Command), false, payload, properties).await {
            lock(&inner.pending).remove(&corr);
            return Err(transport_error(what, true, e));
        }
        count_message(inner, Direction::Out, "command");
        let timeout = timeout.unwrap_or(inner.config.request_timeout);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(transport_error(what, true, "the hub stopped")),
            Err(_) => {
                lock(&inner.pending).remove(&corr);
                inner.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(transport_error(what, true, format!("no reply within {timeout:?}")))
            }
        }
    }
}

pub(super) fn on_reply(inner: &Inner, agent: &AgentId, p: &Publish) {
    let corr = p
        .properties
        .as_ref()
        .and_then(|pr| pr.correlation_data.as_ref())
        .and_then(|c| <[u8; 16]>::try_from(c.as_ref()).ok())
        .map(u128::from_be_bytes);
    let Some(corr) = corr else {
        reject(inner, RejectReason::UnknownCorrelation);
        return;
    };
    let envelope = match proto::decode(Channel::Reply, &p.payload, inner.config.mqtt.max_payload()) {
        Ok(e) => e,
        Err(e) => {
            reject(inner, e.reason());
            return;
        }
    };
    let Message::Reply(reply) = envelope.message else { return };
    let mut pending = lock(&inner.pending);
    match pending.get(&corr) {
        // A reply must come from the agent the request went to: another agent that learned
        // the correlation data cannot answer in its place.
        Some(entry) if &entry.agent == agent => {
            if let Some(entry) = pending.remove(&corr) {
                let _ = entry.tx.send(reply);
            }
            count_message(inner, Direction::In, "reply");
        }
        Some(_) => reject(inner, RejectReason::BadTopic),
        None => reject(inner, RejectReason::UnknownCorrelation),
    }
}
