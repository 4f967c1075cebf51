//! Agent heartbeats become samples of the agent's project, and the hub counts its messages into
//! the control plane's metrics: against a real mosquitto, with hand-rolled agents speaking the
//! wire protocol.

#![cfg(feature = "mqtt")]

use std::sync::Arc;
use std::time::Duration;

use ecp_agent_proto::Channel;
use ecp_agent_proto::proto::{self, Envelope, Heartbeat, Hello, LocalService, Message, ServiceHealth, Status};
use ecp_core::access::{Principal, ResourceKind};
use ecp_core::edge::AgentId;
use ecp_core::prelude::*;
use ecp_core::{AuditEvent, Operation, Organization, Project, SqlStore, SystemClock, TenancyLimits};
use ecp_edge::agent::{AgentHub, AgentHubConfig, MqttConfig, Topics};
use ecp_telemetry::{
    Accepted, ControlPlaneMetrics, Level, LogQuery, LogScope, LogStore, LogStoreConfig, MetricScope, Product, Sample, SampleSink,
};
use ecp_testkit::mosquitto::Mosquitto;
use parking_lot::Mutex;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::LastWill;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

#[derive(Debug, Default)]
struct VecSink(Mutex<Vec<Sample>>);

impl SampleSink for VecSink {
    fn accept(&self, samples: &[Sample]) -> Accepted {
        self.0.lock().extend_from_slice(samples);
        Accepted { stored: samples.len(), ..Accepted::default() }
    }
}

impl VecSink {
    fn find(&self, source: &str, name: &str) -> Vec<Sample> {
        self.0.lock().iter().filter(|s| s.series.name.as_str() == name && s.series.labels.get("source") == Some(source)).cloned().collect()
    }
}

fn encode(m: Message) -> Vec<u8> {
    proto::encode(&Envelope::new(m), proto::DEFAULT_MAX_PAYLOAD).unwrap()
}

/// A hand-rolled agent: connects with its will, says it is online and hello.
struct FakeAgent {
    id: AgentId,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    async fn start(port: u16, id: &str) -> FakeAgent {
        let t = Topics::default();
        let agent = AgentId::new(id).unwrap();
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_last_will(LastWill::new(
            t.topic(&agent, Channel::Status),
            encode(Message::Status(Status { online: false })),
            QoS::AtLeastOnce,
            true,
            None,
        ));
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(_)) | Ok(Event::Outgoing(_)) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let me = FakeAgent { id: agent, client, task };
        me.send(Channel::Status, encode(Message::Status(Status { online: true })), true).await;
        let hello = Hello {
            agent_version: "fake".into(),
            heartbeat_secs: 30,
            services: vec![LocalService {
                name: "nx".into(),
                kind: "neuronex".into(),
                url: "http://127.0.0.1:8085".into(),
                restartable: false,
            }],
            ..Hello::default()
        };
        me.send(Channel::Hello, encode(Message::Hello(hello)), false).await;
        me
    }

    async fn send(&self, channel: Channel, payload: Vec<u8>, retain: bool) {
        let topic = Topics::default().topic(&self.id, channel);
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload).await.unwrap();
    }

    async fn heartbeat(&self, seq: u64) {
        let hb = Heartbeat {
            seq,
            uptime_secs: 60 + seq,
            services: vec![ServiceHealth { name: "nx".into(), up: true, latency_ms: Some(4) }],
            metrics: [("buffered".to_owned(), 7.0)].into_iter().collect(),
        };
        self.send(Channel::Heartbeat, encode(Message::Heartbeat(hb)), false).await;
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_for<F: FnMut() -> bool>(what: &str, mut f: F) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn line_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_managed_agents_become_samples_and_messages_are_counted() {
    let broker = Mosquitto::builder().start().await.expect("mosquitto must be installed (scripts/test installs Debian's package)");
    let store = Arc::new(SqlStore::memory().await.unwrap());
    let ev = |op: &str| AuditEvent::new(&Principal::system("t"), ResourceKind::Organization, Operation::new(op).unwrap());
    let org = Organization::new("acme", ecp_core::Timestamp::now()).unwrap();
    store.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "plant", ecp_core::Timestamp::now()).unwrap();
    store.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();

    let sink = Arc::new(VecSink::default());
    let logs = Arc::new(LogStore::new(LogStoreConfig::builder().build().unwrap(), Arc::new(SystemClock)));
    let metrics = ControlPlaneMetrics::new();
    let config = AgentHubConfig::builder(MqttConfig::builder("127.0.0.1", broker.port()).insecure(true).build().unwrap())
        .sample_sink(sink.clone())
        .metrics(metrics.clone())
        .log_sink(logs.clone())
        .build()
        .unwrap();
    let hub = AgentHub::connect(config, store.clone(), Arc::new(SystemClock)).await.unwrap();

    let managed = FakeAgent::start(broker.port(), "gw-managed").await;
    let loose = FakeAgent::start(broker.port(), "gw-loose").await;
    for a in [&managed.id, &loose.id] {
        let t = std::time::Instant::now();
        while store.get_agent(a).await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "hello of {a} not recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let manage = AuditEvent::new(&Principal::system("t"), ResourceKind::EdgeService, Operation::new("agent.manage").unwrap());
    store.manage_agent(&managed.id, project.id(), "gateway", &manage).await.unwrap();
    // The hub may have looked the agent up before it was managed: a host that manages agents
    // tells it (otherwise the change shows within the scope TTL).
    hub.forget_scope(&managed.id);

    managed.heartbeat(1).await;
    loose.heartbeat(1).await;
    wait_for("the managed agent's samples", || !sink.find("agent:gw-managed", "ecp_agent_service_up").is_empty()).await;
    wait_for("the unmanaged agent's heartbeat counted", || hub.stats().unmanaged_heartbeats >= 1).await;

    let scope = MetricScope::new(org.id, project.id());
    let up = sink.find("agent:gw-managed", "ecp_agent_up");
    assert_eq!(up.len(), 1);
    assert_eq!((up[0].series.scope, up[0].value), (scope, 1.0));
    let svc = &sink.find("agent:gw-managed", "ecp_agent_service_up")[0];
    assert_eq!((svc.series.labels.get("service"), svc.series.labels.get("service_kind")), (Some("nx"), Some("neuronex")));
    assert_eq!(svc.value, 1.0);
    assert_eq!(sink.find("agent:gw-managed", "ecp_agent_service_latency_seconds")[0].value, 0.004);
    assert_eq!(sink.find("agent:gw-managed", "ecp_agent_buffered")[0].value, 7.0);
    assert_eq!(sink.find("agent:gw-managed", "ecp_agent_uptime_seconds")[0].value, 61.0);
    assert!(sink.0.lock().iter().all(|s| s.series.scope == scope && s.series.labels.get("source") == Some("agent:gw-managed")));
    assert!(sink.find("agent:gw-loose", "ecp_agent_up").is_empty(), "an unmanaged agent's heartbeat is dropped");

    // Events of a managed agent become log records of its project; an unmanaged agent's are dropped.
    let event = |message: &str| proto::Event {
        level: proto::Level::Warning,
        message: message.into(),
        fields: [
            ("service".to_owned(), serde_json::json!("nx")),
            ("code".to_owned(), serde_json::json!(17)),
            ("bad name!".to_owned(), serde_json::json!(1)),
        ]
        .into_iter()
        .collect(),
    };
    managed.send(Channel::Event, encode(Message::Event(event("modbus link lost"))), false).await;
    loose.send(Channel::Event, encode(Message::Event(event("should be dropped"))), false).await;
    let query = LogQuery::new(LogScope::Project(scope));
    wait_for("the managed agent's event as a log record", || !logs.query(&query).unwrap().is_empty()).await;
    wait_for("the unmanaged agent's event counted", || metrics.encode().contains(r#"ecp_log_records_total{outcome="dropped"} 1"#)).await;
    let records = logs.query(&query).unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.level, &r.product, r.service.as_str(), r.message.as_str()),
        (Level::Warning, &Product::Agent, "agent:gw-managed", "modbus link lost")
    );
    assert_eq!((r.fields.get("service").map(String::as_str), r.fields.get("code").map(String::as_str)), (Some("nx"), Some("17")));
    assert!(!r.fields.contains_key("bad name!"), "fields whose names a log record cannot carry are left out");
    assert!(logs.query(&LogQuery::new(LogScope::ControlPlane)).unwrap().is_empty());

    // Offline: its own status (as its will would say it) gives ecp_agent_up 0.
    managed.send(Channel::Status, encode(Message::Status(Status { online: false })), true).await;
    wait_for("ecp_agent_up 0", || sink.find("agent:gw-managed", "ecp_agent_up").iter().any(|s| s.value == 0.0)).await;
    let down = sink.find("agent:gw-managed", "ecp_agent_up").into_iter().find(|s| s.value == 0.0).unwrap();
    assert_eq!(down.series.scope, scope);

    // A rejected message and a message out.
    managed.send(Channel::Heartbeat, b"{not json".to_vec(), false).await;
    hub.publish_desired(&managed.id).await.unwrap();
    wait_for("the rejection counted", || metrics.encode().contains(r#"ecp_agent_messages_rejected_total{reason="malformed"} 1"#)).await;

    let text = metrics.encode();
    assert_eq!(line_value(&text, r#"ecp_agent_messages_total{direction="in",kind="hello"}"#), 2.0);
    assert_eq!(line_value(&text, r#"ecp_agent_messages_total{direction="in",kind="heartbeat"}"#), 2.0);
    assert!(line_value(&text, r#"ecp_agent_messages_total{direction="in",kind="status"}"#) >= 3.0);
    assert_eq!(line_value(&text, r#"ecp_agent_messages_total{direction="out",kind="desired"}"#), 1.0);
    // ecp_agent_up, uptime, service up and latency, buffered: five samples dropped.
    assert_eq!(line_value(&text, r#"ecp_agent_samples_dropped_total{reason="unmanaged"}"#), 5.0);
    assert_eq!(hub.stats().unmanaged_heartbeats, 1);
    hub.shutdown();
}
