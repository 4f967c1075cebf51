//! The run loop: connect out with backoff and full jitter, say hello, route what arrives, and say
//! goodbye on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ecp_agent_proto::Channel;
use ecp_agent_proto::mqtt::{backoff_delay, qos};
use ecp_agent_proto::proto::{self, Envelope, Message, RejectReason, Status};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event as MqttEvent};

use crate::error::{Error, Result};
use crate::{agent::*, desired::*, heartbeat::*, outbox::*, stats::*};

/// How long a clean shutdown waits to say offline and disconnect.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Aborts tasks when dropped (also when the run future itself is dropped or aborted).
pub(crate) struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Core {
    pub(crate) fn on_publish(self: &Arc<Self>, publish: Publish) {
        let topic = std::str::from_utf8(&publish.topic).unwrap_or_default();
        if topic == self.topics.cmd {
            self.on_command(publish);
        } else if topic == self.topics.desired {
            if publish.payload.is_empty() {
                return; // A cleared retained message.
            }
            match proto::decode(Channel::Desired, &publish.payload, self.config.mqtt.max_payload()) {
                Ok(Envelope { message: Message::Desired(d), .. }) => {
                    *lock(&self.desired) = Some(d);
                    self.desired_ready.notify_one();
                }
                Ok(_) => {}
                Err(e) => {
                    self.codec.count(e.reason());
                    tracing::warn!(error = %e, "edge agent: desired configuration rejected");
                }
            }
        } else {
            self.codec.count(RejectReason::BadTopic);
        }
    }

    pub(crate) fn status_payload(&self, online: bool) -> Vec<u8> {
        proto::encode(&Envelope::new(Message::Status(Status { online })), self.config.mqtt.max_payload()).unwrap_or_default()
    }
}

/// After a ConnAck: subscribe, say online and hello, then send what was buffered.
pub(crate) async fn on_connect(core: Arc<Core>, client: AsyncClient, generation: u64) {
    let current = || lock(&core.outbox).generation == generation;
    for topic in [&core.topics.cmd, &core.topics.desired] {
        if let Err(e) = client.subscribe(topic.clone(), QoS::AtLeastOnce).await {
            tracing::warn!(error = %e, "edge agent: cannot subscribe");
        }
    }
    if !current() {
        return;
    }
    let _ = client.publish(core.topics.status.clone(), qos(Channel::Status), true, core.status_payload(true)).await;
    match proto::encode(&Envelope::new(Message::Hello(core.hello())), core.config.mqtt.max_payload()) {
        Ok(payload) => {
            let _ = client.publish(core.topics.hello.clone(), qos(Channel::Hello), false, payload).await;
        }
        Err(e) => tracing::error!(error = %e, "edge agent: the hello does not fit in one message"),
    }
    if current() {
        flush(core, client, generation).await;
    }
}

pub(crate) async fn run(core: Arc<Core>, shutdown: impl Future<Output = ()> + Send) -> Result<AgentStats> {
    let c = &core.config;
    if c.mqtt.is_insecure() {
        tracing::warn!(broker = %c.mqtt.host(), "MQTT in cleartext: the agent's secret and every command cross the network readable");
    }
    let will = LastWill::new(core.topics.status.clone(), core.status_payload(false), QoS::AtLeastOnce, true, None);
    let options = c.mqtt.rumqttc_options(c.agent_id.as_str(), Some(will));
    let capacity = options.request_channel_capacity();
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    if core.client.set(client.clone()).is_err() {
        return Err(Error::invalid("edge agent", "is already running"));
    }
    let _tasks = AbortOnDrop(vec![
        tokio::spawn(heartbeat_loop(core.clone())).abort_handle(),
        tokio::spawn(desired_loop(core.clone())).abort_handle(),
    ]);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut attempt = 0u32;
    let agent = c.agent_id.clone();
    loop {
        let event = tokio::select! {
            () = &mut shutdown => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                let generation = core.record_connect();
                tracing::info!(agent = %agent, "edge agent: connected");
                // Publishing from another task: this one drains rumqttc's request queue.
                tokio::spawn(on_connect(core.clone(), client.clone(), generation));
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => core.on_publish(p),
            Ok(_) => {}
            Err(e) => {
                let was_up = core.link_down();
                let delay = backoff_delay(attempt, c.backoff_initial, c.backoff_max);
                attempt = attempt.saturating_add(1);
                core.record_delay(delay);
                if was_up {
                    tracing::warn!(agent = %agent, error = %e, "edge agent: connection lost; reconnecting in {delay:?}");
                } else {
                    tracing::debug!(agent = %agent, error = %e, attempt, "edge agent: cannot connect; retrying in {delay:?}");
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    if core.link_up.load(Ordering::Relaxed) {
        let offline = core.status_payload(false);
        let status = core.topics.status.clone();
        let c2 = client.clone();
        tokio::spawn(async move {
            let _ = c2.publish(status, qos(Channel::Status), true, offline).await;
            let _ = c2.disconnect().await;
        });
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    core.link_down();
    tracing::info!(agent = %agent, "edge agent: stopped");
    Ok(core.stats())
}
