//! Commands from the hub: decoded, limited in number, executed, and answered on the command's own
//! response topic with its correlation data.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ecp_agent_proto::Channel;
use ecp_agent_proto::mqtt::qos;
use ecp_agent_proto::proto::{self, Command, Envelope, ErrorCode, Message, Reply};
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use serde_json::{Value, json};

use crate::agent::*;

pub(crate) fn reply_error(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error { code, message: message.into() }
}

/// A user-given string for messages: at most 100 characters, without control characters.
pub(crate) fn shown(s: &str) -> String {
    s.chars().take(100).map(|c| if c.is_control() { '?' } else { c }).collect()
}

pub(crate) fn error_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

impl Core {
    pub(crate) fn service(&self, target: &str) -> Option<&Service> {
        self.allow.get(target).map(|i| &self.services[*i])
    }

    pub(crate) fn forbidden(target: &str) -> Reply {
        reply_error(ErrorCode::Forbidden, format!("target {:?} is not one of this agent's services", shown(target)))
    }

    pub(crate) async fn handle(&self, command: Command) -> Reply {
        let reply = match command {
            Command::Http(req) => self.http(req).await,
            Command::Status => Reply::Ok { result: serde_json::to_value(self.latest_heartbeat().await).unwrap_or(Value::Null) },
            Command::Restart { target } => self.restart(&target).await,
            Command::Apply(item) => {
                if self.service(&item.target).is_none() {
                    Self::forbidden(&item.target)
                } else {
                    let applied = self.apply(&item).await;
                    Reply::Ok { result: serde_json::to_value(applied).unwrap_or(Value::Null) }
                }
            }
            // A command of a newer protocol than this agent's (the codec refuses unknown kinds, so
            // only a library caller can get here).
            _ => reply_error(ErrorCode::Unsupported, "this agent does not know the command"),
        };
        self.fit(reply)
    }

    /// The reply, or `too_large` when its encoding would exceed the payload limit.
    pub(crate) fn fit(&self, reply: Reply) -> Reply {
        let limit = self.config.mqtt.max_payload();
        match proto::encode(&Envelope::new(Message::Reply(reply.clone())), limit) {
            Ok(_) => reply,
            Err(proto::EncodeError::TooLarge { size, limit, .. }) => reply_error(
                ErrorCode::TooLarge,
                format!(
                    "the answer is {size} bytes encoded, over the payload limit of {limit} bytes (about {} bytes of HTTP body fit)",
                    limit.saturating_sub(4096) / 4 * 3
                ),
            ),
            Err(e) => reply_error(ErrorCode::Failed, e.to_string()),
        }
    }

    pub(crate) async fn restart(&self, target: &str) -> Reply {
        let Some(service) = self.service(target) else {
            return Self::forbidden(target);
        };
        let Some(command) = service.config.restart_command.as_ref().filter(|c| !c.is_empty()) else {
            return reply_error(ErrorCode::Unsupported, format!("service {:?} has no restart command", service.config.name));
        };
        let name = &service.config.name;
        tracing::info!(service = %name, "edge agent: restarting a service");
        // std's process API with polling keeps tokio's `process` feature out of the library.
        let spawned = std::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return reply_error(ErrorCode::Failed, format!("cannot run the restart command of {name:?}: {e}")),
        };
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Reply::Ok { result: json!({}) },
                Ok(Some(status)) => return reply_error(ErrorCode::Failed, format!("the restart command of {name:?} failed: {status}")),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return reply_error(
                        ErrorCode::Failed,
                        format!("the restart command of {name:?} did not finish within {:?}", self.config.request_timeout),
                    );
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return reply_error(ErrorCode::Failed, format!("the restart command of {name:?}: {e}")),
            }
        }
    }

    pub(crate) fn on_command(self: &Arc<Self>, publish: Publish) {
        let props = publish.properties.unwrap_or_default();
        let response_topic = props.response_topic.filter(|t| {
            let own = self.config.topics.parse(t).is_some_and(|(a, c)| a == self.config.agent_id && c == Channel::Reply);
            own && t.starts_with(&format!("{}/agents/{}/reply/", self.config.topics.prefix(), self.config.agent_id))
        });
        let correlation = props.correlation_data.filter(|c| !c.is_empty() && c.len() <= 256);
        let (Some(response_topic), Some(correlation)) = (response_topic, correlation) else {
            self.commands_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("edge agent: a command without a response topic of its own or correlation data was dropped");
            return;
        };
        let decoded = proto::decode(Channel::Command, &publish.payload, self.config.mqtt.max_payload());
        let core = self.clone();
        let waiting = self.queued.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let reply = if waiting >= core.config.max_concurrent_commands.saturating_mul(8) {
                core.commands_refused.fetch_add(1, Ordering::Relaxed);
                reply_error(ErrorCode::Failed, "the agent is busy: too many commands in progress")
            } else {
                match decoded {
                    Ok(Envelope { message: Message::Command(command), .. }) => {
                        let permit = core.commands.clone().acquire_owned().await;
                        let reply = core.handle(command).await;
                        drop(permit);
                        core.commands_handled.fetch_add(1, Ordering::Relaxed);
                        reply
                    }
                    Ok(_) => reply_error(ErrorCode::BadRequest, "not a command"),
                    Err(e) => {
                        core.codec.count(e.reason());
                        reply_error(ErrorCode::BadRequest, e.to_string())
                    }
                }
            };
            core.queued.fetch_sub(1, Ordering::Relaxed);
            core.send_reply(response_topic, correlation, reply).await;
        });
    }

    pub(crate) async fn send_reply(&self, topic: String, correlation: Bytes, reply: Reply) {
        let (Some(client), true) = (self.client.get(), self.link_up.load(Ordering::Relaxed)) else {
            tracing::debug!("edge agent: a reply was dropped: not connected");
            return;
        };
        let payload = match proto::encode(&Envelope::new(Message::Reply(reply)), self.config.mqtt.max_payload()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "edge agent: a reply could not be encoded");
                return;
            }
        };
        let properties = PublishProperties { correlation_data: Some(correlation), ..PublishProperties::default() };
        let publish = client.publish_with_properties(topic, qos(Channel::Reply), false, payload, properties);
        if !matches!(tokio::time::timeout(self.config.request_timeout, publish).await, Ok(Ok(()))) {
            tracing::debug!("edge agent: a reply could not be queued");
        }
    }
}
