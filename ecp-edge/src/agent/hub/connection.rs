//! Connecting to the broker, the hub's handle, and the loops that poll the connection and work
//! through what agents send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecp_core::coalesce::Coalescer;
use ecp_core::edge::AgentId;
use ecp_core::{Clock, Store};
use ecp_telemetry::own::Direction;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop};
use tokio::sync::{broadcast, mpsc, watch};

use ecp_agent_proto::mqtt::backoff_delay;
use ecp_agent_proto::proto::{self, CodecStats, Message, RejectReason, Report};
use ecp_agent_proto::{Channel, Topics};

use super::desired::{publish_desired, record_reports};
use super::presence::{handle, sweep_loop};
use super::requests::on_reply;
use super::stats::{count_message, reject};
use super::{AgentHub, AgentHubConfig, Inner, PUT_BATCH, lock, transport_error};
use crate::error::Result;

impl AgentHub {
    /// Connects to the broker and starts serving; returns once the broker accepted the
    /// connection (within the configured connect timeout).
    ///
    /// # Errors
    /// `Transport` when the broker cannot be reached or refuses the hub's credentials in time.
    pub async fn connect(config: AgentHubConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self> {
        if config.mqtt.is_insecure() {
            tracing::warn!(broker = %config.mqtt.host(), "MQTT in cleartext: the hub's credentials and every request cross the network readable");
        }
        let mut options = config.mqtt.rumqttc_options(&format!("ecp-hub-{}", config.hub_id), None);
        // A session that outlives a dropped connection: the broker keeps the hub's subscriptions
        // and queues the agents' QoS 1 messages (hellos, reports, events) until it is back.
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(u32::try_from(config.session_expiry.as_secs()).unwrap_or(u32::MAX)));
        let (client, eventloop) = AsyncClient::new(options, usize::from(config.mqtt.inflight()).max(64) * 4);
        let (connected, mut ready) = watch::channel(false);
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            store,
            clock,
            client,
            connected,
            corr_prefix: fastrand::u64(..),
            corr_next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            reports: Mutex::new(HashMap::new()),
            presence: Mutex::new(HashMap::new()),
            events,
            codec: CodecStats::default(),
            connects: AtomicU64::new(0),
            received: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            scopes: Mutex::new(HashMap::new()),
            unmanaged: AtomicU64::new(0),
            refused_hellos: AtomicU64::new(0),
            puts: Coalescer::new(PUT_BATCH),
            published: tokio::sync::Mutex::new(HashMap::new()),
            refused_items: AtomicU64::new(0),
            config,
        });
        let (work_tx, work_rx) = mpsc::channel(16_384);
        let (fail_tx, mut fail_rx) = mpsc::channel::<String>(1);
        let poll = tokio::spawn(poll_loop(inner.clone(), eventloop, work_tx, fail_tx));
        let work = tokio::spawn(work_loop(inner.clone(), work_rx));
        let sweep = tokio::spawn(sweep_loop(inner.clone()));
        let mut tasks = vec![poll.abort_handle(), work.abort_handle(), sweep.abort_handle()];
        // Reports that reach another replica (shared subscriptions) complete deliveries waiting here.
        if let Some(signals) = inner.store.signals() {
            tasks.push(tokio::spawn(super::desired::follow_reports(inner.clone(), signals)).abort_handle());
        }
        let hub = AgentHub { inner: inner.clone(), tasks: Arc::new(tasks) };
        let deadline = inner.config.mqtt.connect_timeout() + Duration::from_secs(2);
        let outcome = tokio::time::timeout(deadline, async {
            tokio::select! {
                r = ready.wait_for(|c| *c) => r.map(|_| ()).map_err(|_| "the hub stopped".to_owned()),
                Some(e) = fail_rx.recv() => Err(e),
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(hub),
            Ok(Err(e)) => {
                hub.shutdown();
                Err(transport_error(hub.broker(), false, e))
            }
            Err(_) => {
                hub.shutdown();
                Err(transport_error(hub.broker(), true, "the broker did not accept the connection in time"))
            }
        }
    }

    fn broker(&self) -> String {
        format!("mqtt://{}:{}", self.inner.config.mqtt.host(), self.inner.config.mqtt.port())
    }

    /// Stops the hub's tasks (requests in flight fail).
    pub fn shutdown(&self) {
        let _ = self.inner.client.try_disconnect();
        for t in self.tasks.iter() {
            t.abort();
        }
        let _ = self.inner.connected.send_replace(false);
    }

    /// This hub's id.
    pub fn hub_id(&self) -> &str {
        &self.inner.config.hub_id
    }

    /// The topic layout.
    pub fn topics(&self) -> &Topics {
        &self.inner.config.topics
    }

    /// Whether the hub is connected to the broker now.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }
}

/// Polls the connection: (re)subscribes on every ConnAck, answers replies at once, and hands
/// everything else to the worker.
async fn poll_loop(inner: Arc<Inner>, mut eventloop: EventLoop, work: mpsc::Sender<Publish>, fail: mpsc::Sender<String>) {
    let mut attempt = 0u32;
    let mut awaiting_suback = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                inner.connects.fetch_add(1, Ordering::Relaxed);
                let c = &inner.config;
                // Hellos, events and reports are work: each goes to one replica of the group.
                // Status and heartbeats are presence: every replica hears them all, or each would
                // see only its share of an agent's heartbeats and take it for gone.
                let mut filters: Vec<String> = [Channel::Hello, Channel::Event, Channel::Report]
                    .into_iter()
                    .map(|ch| {
                        let f = c.topics.all_agents(ch, &c.hub_id);
                        match &c.shared_group {
                            Some(g) => format!("$share/{g}/{f}"),
                            None => f,
                        }
                    })
                    .collect();
                filters.extend([Channel::Status, Channel::Heartbeat].map(|ch| c.topics.all_agents(ch, &c.hub_id)));
                filters.push(c.topics.all_agents(Channel::Reply, &c.hub_id));
                // One SUBSCRIBE for all filters, sent from another task (this loop drains the
                // request channel); the hub counts as connected once its SUBACK is back, so that
                // nothing an agent says after that is missed.
                let client = inner.client.clone();
                tokio::spawn(async move {
                    let filters = filters.into_iter().map(|f| Filter::new(f, rumqttc::v5::mqttbytes::QoS::AtLeastOnce));
                    if let Err(e) = client.subscribe_many(filters).await {
                        tracing::warn!(error = %e, "agent hub: could not subscribe");
                    }
                });
                awaiting_suback = true;
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) if awaiting_suback => {
                awaiting_suback = false;
                if let Some(code) = ack.return_codes.iter().find(|c| !matches!(c, SubscribeReasonCode::Success(_))) {
                    tracing::error!(?code, "agent hub: the broker refused a subscription; check the hub user's ACL");
                }
                inner.connected.send_replace(true);
                // Deliveries still waiting may have lost their desired message with the old
                // connection (or the broker its retained copy): send them again.
                let inner2 = inner.clone();
                tokio::spawn(async move {
                    let waiting: std::collections::BTreeSet<AgentId> = lock(&inner2.reports).keys().cloned().collect();
                    for agent in waiting {
                        if let Err(e) = publish_desired(&inner2, &agent).await {
                            tracing::warn!(agent = %agent, error = %e, "agent hub: could not resend a desired configuration");
                        }
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                inner.received.fetch_add(1, Ordering::Relaxed);
                let channel = std::str::from_utf8(&p.topic).ok().and_then(|t| inner.config.topics.parse(t));
                match channel {
                    Some((agent, Channel::Reply)) => on_reply(&inner, &agent, &p),
                    Some(_) => {
                        if work.try_send(p).is_err() {
                            inner.overloaded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => reject(&inner, RejectReason::BadTopic),
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = inner.connected.send_replace(false);
                if let ConnectionError::ConnectionRefused(code) = &e {
                    let _ = fail.try_send(format!("the broker refused the hub: {code:?}"));
                }
                tracing::warn!(error = %e, "agent hub: connection to the broker lost");
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    backoff_delay(attempt, Duration::from_millis(250), Duration::from_secs(30))
}

/// How many received messages the work loop takes at once: their reports are recorded in one
/// store write.
const WORK_BATCH: usize = 256;

async fn work_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Publish>) {
    let mut batch = Vec::with_capacity(WORK_BATCH);
    let mut reports: Vec<(AgentId, Report)> = Vec::new();
    while rx.recv_many(&mut batch, WORK_BATCH).await > 0 {
        for p in batch.drain(..) {
            let Some((agent, channel)) = std::str::from_utf8(&p.topic).ok().and_then(|t| inner.config.topics.parse(t)) else {
                continue;
            };
            let envelope = match proto::decode(channel, &p.payload, inner.config.mqtt.max_payload()) {
                Ok(e) => e,
                Err(e) => {
                    reject(&inner, e.reason());
                    tracing::debug!(agent = %agent, error = %e, "agent hub: message rejected");
                    continue;
                }
            };
            count_message(&inner, Direction::In, envelope.message.kind());
            if let Message::Report(report) = envelope.message {
                reports.push((agent, report));
                continue;
            }
            // Anything else is handled in order, after the reports received before it.
            record_reports(&inner, &mut reports).await;
            if let Err(e) = handle(&inner, &agent, envelope.message).await {
                tracing::warn!(agent = %agent, error = %e, "agent hub: could not record a message");
            }
        }
        record_reports(&inner, &mut reports).await;
    }
}
