//! The agent hub against a real mosquitto, with hand-rolled agents speaking the wire protocol
//! (so these tests pin the protocol itself, not only the crate's own agent).

#![cfg(feature = "mqtt")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ecp_agent_proto::proto::{self, Command, Envelope, Heartbeat, Hello, Message, Reply, Status};
use ecp_agent_proto::{Channel, RejectReason};
use ecp_core::edge::AgentId;
use ecp_core::prelude::*;
use ecp_core::{PageRequest, SqlStore, SystemClock};
use ecp_edge::agent::{AgentHub, AgentHubConfig, HubEvent, MqttConfig, Topics};
use ecp_testkit::mosquitto::Mosquitto;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;

async fn broker() -> Mosquitto {
    Mosquitto::builder().start().await.expect("mosquitto must be installed (scripts/test installs Debian's package)")
}

async fn hub(port: u16) -> (AgentHub, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqlStore::memory().await.unwrap());
    let mqtt = MqttConfig::builder("127.0.0.1", port).insecure(true).build().unwrap();
    let config = AgentHubConfig::builder(mqtt).request_timeout(Duration::from_secs(5)).build().unwrap();
    let hub = AgentHub::connect(config, store.clone(), Arc::new(SystemClock)).await.unwrap();
    (hub, store)
}

fn encode(m: Message) -> Vec<u8> {
    proto::encode(&Envelope::new(m), proto::DEFAULT_MAX_PAYLOAD).unwrap()
}

/// A hand-rolled agent: says hello, answers commands with `answer`, and can be dropped abruptly.
struct FakeAgent {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    async fn start(port: u16, id: &str, heartbeat_secs: u32, answer: fn(&str, Command) -> Option<Reply>) -> FakeAgent {
        let t = Topics::default();
        let agent = AgentId::new(id).unwrap();
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_outgoing_inflight_upper_limit(16);
        o.set_last_will(LastWill::new(
            t.topic(&agent, Channel::Status),
            encode(Message::Status(Status { online: false })),
            QoS::AtLeastOnce,
            true,
            None,
        ));
        let (client, mut eventloop) = AsyncClient::new(o, 256);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let c = client.clone();
        let me = id.to_owned();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let props = p.properties.clone().unwrap_or_default();
                        let Ok(env) = proto::decode(Channel::Command, &p.payload, proto::DEFAULT_MAX_PAYLOAD) else { continue };
                        let Message::Command(cmd) = env.message else { continue };
                        let Some(reply) = answer(&me, cmd) else { continue };
                        let (Some(topic), Some(corr)) = (props.response_topic, props.correlation_data) else { continue };
                        let c = c.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..20))).await;
                            let props = PublishProperties { correlation_data: Some(corr), ..Default::default() };
                            let _ = c.publish_with_properties(topic, QoS::AtLeastOnce, false, encode(Message::Reply(reply)), props).await;
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client.subscribe(t.topic(&agent, Channel::Command), QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), ready_rx).await.unwrap().unwrap();
        client
            .publish(t.topic(&agent, Channel::Status), QoS::AtLeastOnce, true, encode(Message::Status(Status { online: true })))
            .await
            .unwrap();
        let hello = Hello { agent_version: "fake".into(), heartbeat_secs, ..Hello::default() };
        client.publish(t.topic(&agent, Channel::Hello), QoS::AtLeastOnce, false, encode(Message::Hello(hello))).await.unwrap();
        FakeAgent { client, task }
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }

    /// Drops the connection without DISCONNECT: the broker publishes the last will.
    fn crash(self) {
        self.task.abort();
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, limit: Duration, f: F) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn echo(me: &str, cmd: Command) -> Option<Reply> {
    match cmd {
        Command::Http(r) => Some(Reply::Ok { result: json!({ "agent": me, "path": r.path }) }),
        _ => Some(Reply::Error { code: proto::ErrorCode::Unsupported, message: "no".into() }),
    }
}

fn http(path: String) -> Command {
    Command::Http(proto::HttpRequest { target: "127.0.0.1:1".into(), method: "GET".into(), path, headers: vec![], body: None })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agents_appear_unmanaged_and_presence_follows_will_and_heartbeats() {
    let broker = broker().await;
    let (hub, store) = hub(broker.port()).await;
    let mut events = hub.subscribe();
    let a = AgentId::new("edge-a").unwrap();

    let agent = FakeAgent::start(broker.port(), "edge-a", 1, echo).await;
    wait_for("edge-a online", Duration::from_secs(5), || hub.is_online(&a)).await;
    // Its retained status may arrive before its hello: the hello is what records it.
    let t = std::time::Instant::now();
    let stored = loop {
        match store.get_agent(&a).await {
            Ok(s) => break s,
            Err(e) if e.is_not_found() && t.elapsed() < Duration::from_secs(5) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(stored.online && stored.project.is_none(), "{stored:?}");
    assert_eq!(stored.version.as_deref(), Some("fake"));

    // The last will says offline when the connection drops without a goodbye.
    agent.crash();
    wait_for("edge-a offline by its will", Duration::from_secs(15), || !hub.is_online(&a)).await;
    let mut saw_offline = false;
    while let Ok(e) = events.try_recv() {
        saw_offline |= e == HubEvent::Offline(a.clone());
    }
    assert!(saw_offline);
    let t = std::time::Instant::now();
    while store.get_agent(&a).await.unwrap().online {
        assert!(t.elapsed() < Duration::from_secs(5), "the store still says online");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A connected agent that stops its heartbeats goes offline after 3 missed intervals (1 s).
    let b = AgentId::new("edge-b").unwrap();
    let silent = FakeAgent::start(broker.port(), "edge-b", 1, echo).await;
    wait_for("edge-b online", Duration::from_secs(5), || hub.is_online(&b)).await;
    let t = std::time::Instant::now();
    wait_for("edge-b offline by silence", Duration::from_secs(10), || !hub.is_online(&b)).await;
    assert!(t.elapsed() >= Duration::from_millis(2500), "offline after {:?}, before 3 missed heartbeats", t.elapsed());
    // A heartbeat brings it back.
    let hb = encode(Message::Heartbeat(Heartbeat { seq: 1, uptime_secs: 5, ..Heartbeat::default() }));
    silent.publish(Topics::default().topic(&b, Channel::Heartbeat), hb).await;
    wait_for("edge-b back online", Duration::from_secs(5), || hub.is_online(&b)).await;
    assert_eq!(hub.last_heartbeat(&b).unwrap().seq, 1);
    hub.shutdown();
}

/// Clients of an open broker cannot fill the store: past `max_unmanaged_agents` unmanaged
/// agents, hellos of agents never seen are dropped and counted, and nothing is stored for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_of_unknown_agents_stop_at_the_cap() {
    let broker = broker().await;
    let store: Arc<dyn Store> = Arc::new(SqlStore::memory().await.unwrap());
    let mqtt = MqttConfig::builder("127.0.0.1", broker.port()).insecure(true).build().unwrap();
    let config = AgentHubConfig::builder(mqtt).max_unmanaged_agents(2).build().unwrap();
    let hub = AgentHub::connect(config, store.clone(), Arc::new(SystemClock)).await.unwrap();
    let mut agents = Vec::new();
    for i in 0..3 {
        agents.push(FakeAgent::start(broker.port(), &format!("flood-{i}"), 60, echo).await);
    }
    wait_for("the third hello refused", Duration::from_secs(10), || hub.stats().refused_hellos == 1).await;
    let all = store.list_agents(&Default::default(), &PageRequest::first(10)).await.unwrap();
    assert_eq!(all.items.len(), 2, "{:?}", all.items);
    // The refused agent's status and heartbeats do not make the hub track it either.
    let (i, refused) =
        (0..3).map(|i| (i, AgentId::new(format!("flood-{i}")).unwrap())).find(|(_, a)| !all.items.iter().any(|s| &s.id == a)).unwrap();
    let hb = encode(Message::Heartbeat(Heartbeat { seq: 1, uptime_secs: 5, ..Heartbeat::default() }));
    agents[i].publish(Topics::default().topic(&refused, Channel::Heartbeat), hb).await;
    let received = hub.stats().received;
    wait_for("the heartbeat received", Duration::from_secs(5), || hub.stats().received > received).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // and handled
    assert!(!hub.is_online(&refused) && hub.online_agents().len() == 2, "{:?}", hub.online_agents());
    hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_mix_up_replies() {
    let broker = broker().await;
    let (hub, _) = hub(broker.port()).await;
    let ids = ["edge-1", "edge-2", "edge-3"];
    let mut agents = Vec::new();
    for id in ids {
        agents.push(FakeAgent::start(broker.port(), id, 10, echo).await);
    }
    for id in ids {
        wait_for(id, Duration::from_secs(5), || hub.is_online(&AgentId::new(id).unwrap())).await;
    }
    let mut set = tokio::task::JoinSet::new();
    for i in 0..300 {
        let hub = hub.clone();
        let id = ids[i % ids.len()];
        set.spawn(async move {
            let reply = hub.request(&AgentId::new(id).unwrap(), http(format!("/req/{i}")), None).await.unwrap();
            (id, i, reply)
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let (id, i, reply) = r.unwrap();
        assert_eq!(reply, Reply::Ok { result: json!({ "agent": id, "path": format!("/req/{i}") }) });
        n += 1;
    }
    assert_eq!(n, 300);
    assert_eq!(hub.rejected(RejectReason::UnknownCorrelation), 0);
    hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_from_another_agent_or_unknown_correlation_is_refused_and_requests_time_out() {
    let broker = broker().await;
    let (hub, _) = hub(broker.port()).await;
    let t = Topics::default();
    // edge-slow never answers; a rogue answers on its own reply topic with edge-slow's
    // correlation data, which it can see only if it could read edge-slow's commands: here it
    // subscribes to them (no ACL in this test) to prove the hub checks who answers.
    let slow = AgentId::new("edge-slow").unwrap();
    let _slow = FakeAgent::start(broker.port(), "edge-slow", 10, |_, _| None).await;
    wait_for("edge-slow online", Duration::from_secs(5), || hub.is_online(&slow)).await;
    let rogue = FakeAgent::start(broker.port(), "rogue", 10, |_, _| None).await;
    let (rc, mut rel) = {
        let mut o = MqttOptions::new("rogue-listener", "127.0.0.1", broker.port());
        o.set_outgoing_inflight_upper_limit(16);
        AsyncClient::new(o, 64)
    };
    rc.subscribe(t.topic(&slow, Channel::Command), QoS::AtLeastOnce).await.unwrap();
    let rogue_reply_topic = t.reply(&AgentId::new("rogue").unwrap(), hub.hub_id());
    let rogue_client = rogue.client.clone();
    tokio::spawn(async move {
        loop {
            match rel.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let corr = p.properties.and_then(|pr| pr.correlation_data).unwrap_or_default();
                    let props = PublishProperties { correlation_data: Some(corr), ..Default::default() };
                    let forged = encode(Message::Reply(Reply::Ok { result: json!("forged") }));
                    let _ = rogue_client.publish_with_properties(rogue_reply_topic.clone(), QoS::AtLeastOnce, false, forged, props).await;
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = hub.request(&slow, http("/x".into()), Some(Duration::from_millis(1500))).await.unwrap_err();
    assert!(err.is_retryable() && err.to_string().contains("edge-slow"), "{err}");
    wait_for("the forged reply counted", Duration::from_secs(3), || hub.rejected(RejectReason::BadTopic) >= 1).await;

    // A reply with correlation data nobody waits for is counted and dropped.
    let props = PublishProperties { correlation_data: Some(Bytes::from_static(&[7u8; 16])), ..Default::default() };
    let stray = encode(Message::Reply(Reply::Ok { result: json!(1) }));
    rogue
        .client
        .publish_with_properties(t.reply(&AgentId::new("rogue").unwrap(), hub.hub_id()), QoS::AtLeastOnce, false, stray, props)
        .await
        .unwrap();
    wait_for("the stray reply counted", Duration::from_secs(3), || hub.rejected(RejectReason::UnknownCorrelation) >= 1).await;
    hub.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_counted_and_the_hub_keeps_working() {
    let broker = broker().await;
    let (hub, store) = hub(broker.port()).await;
    let t = Topics::default();
    let agent = FakeAgent::start(broker.port(), "edge-h", 10, echo).await;
    let h = AgentId::new("edge-h").unwrap();
    wait_for("edge-h online", Duration::from_secs(5), || hub.is_online(&h)).await;
    let hello = t.topic(&h, Channel::Hello);
    agent.publish(hello.clone(), b"{not json".to_vec()).await;
    agent.publish(hello.clone(), br#"{"v":9,"kind":"hello","id":"x","ts":0,"body":{}}"#.to_vec()).await;
    agent.publish(hello.clone(), br#"{"v":1,"kind":"gossip","id":"x","ts":0,"body":{}}"#.to_vec()).await;
    agent.publish(hello.clone(), encode(Message::Status(Status { online: true }))).await;
    agent.publish(hello.clone(), br#"{"v":1,"kind":"hello","id":"x","ts":0,"body":{"heartbeat_secs":"soon"}}"#.to_vec()).await;
    agent.publish(hello.clone(), vec![b' '; proto::DEFAULT_MAX_PAYLOAD + 1]).await;
    agent.publish("ecp/agents/edge-h/whatever".into(), b"{}".to_vec()).await;
    wait_for("six rejections", Duration::from_secs(5), || {
        [
            RejectReason::Malformed,
            RejectReason::UnsupportedVersion,
            RejectReason::UnknownKind,
            RejectReason::WrongChannel,
            RejectReason::BadBody,
            RejectReason::TooLarge,
        ]
        .iter()
        .all(|r| hub.rejected(*r) == 1)
    })
    .await;
    // Nothing stored was lost or changed by them, and the hub still answers.
    assert_eq!(store.get_agent(&h).await.unwrap().version.as_deref(), Some("fake"));
    let reply = hub.request(&h, http("/still".into()), None).await.unwrap();
    assert_eq!(reply, Reply::Ok { result: json!({ "agent": "edge-h", "path": "/still" }) });
    hub.shutdown();
}

#[test]
fn the_hub_config_is_checked_when_built() {
    let field = |e: ecp_edge::Error| match e {
        ecp_edge::Error::Core(ecp_core::Error::InvalidInput { field, .. }) => field.to_string(),
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    let b = || AgentHubConfig::builder(MqttConfig::builder("127.0.0.1", 1883).insecure(true).build().unwrap());
    for (bad, expected) in [
        (b().hub_id(""), "hub id"),
        (b().hub_id("a/b"), "hub id"),
        (b().hub_id("x".repeat(65)), "hub id"),
        (b().shared_group("g+"), "shared group"),
        (b().missed_heartbeats(0), "hub"),
        (b().max_pending(0), "hub"),
        (b().request_timeout(Duration::ZERO), "hub"),
    ] {
        assert_eq!(field(bad.build().unwrap_err()), expected);
    }

    let defaults = b().build().unwrap();
    assert!(defaults.hub_id().starts_with("hub-") && defaults.hub_id().len() == 12, "{}", defaults.hub_id());
    assert_eq!((defaults.topics().prefix(), defaults.mqtt().port(), defaults.shared_group()), ("ecp", 1883, None));
    assert_eq!((defaults.request_timeout(), defaults.missed_heartbeats(), defaults.max_pending()), (Duration::from_secs(15), 3, 65_536));
    assert_eq!((defaults.session_expiry(), defaults.scope_ttl()), (Duration::from_secs(300), Duration::from_secs(30)));
    let set = b()
        .hub_id("hub-a")
        .topics(Topics::new("plant").unwrap())
        .shared_group("replicas")
        .request_timeout(Duration::from_secs(5))
        .missed_heartbeats(5)
        .max_pending(10)
        .session_expiry(Duration::from_secs(60))
        .scope_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!((set.hub_id(), set.topics().prefix(), set.shared_group()), ("hub-a", "plant", Some("replicas")));
    assert_eq!((set.request_timeout(), set.missed_heartbeats(), set.max_pending()), (Duration::from_secs(5), 5, 10));
    assert_eq!((set.session_expiry(), set.scope_ttl()), (Duration::from_secs(60), Duration::from_secs(1)));
}

/// The hub holds to the number of desired items an agent takes: a set over it is refused where it
/// would be published, with a typed `LimitExceeded`, at once (not a delivery that waits for a
/// report the agent never sends because it dropped the set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desired_set_over_the_agents_limit_is_refused_not_published() {
    use ecp_agent_proto::proto::MAX_DESIRED_ITEMS;
    use ecp_core::edge::DesiredChange;
    use ecp_edge_api::ConfigChange;
    let broker = broker().await;
    let (hub, store) = hub(broker.port()).await;
    let agent = AgentId::new("edge-full").unwrap();
    store.agent_hello(&agent, "1.0", &json!({}), ecp_core::Timestamp::now(), u64::MAX).await.unwrap();
    let stream =
        |i: usize| ConfigChange::EkuiperStream { name: format!("s{i}"), sql: format!("CREATE STREAM s{i} () WITH (TYPE=\"memory\")") };
    let changes: Vec<DesiredChange> = (0..MAX_DESIRED_ITEMS)
        .map(|i| DesiredChange {
            agent: agent.clone(),
            key: format!("127.0.0.1:9081 stream:s{i}"),
            target: "127.0.0.1:9081".into(),
            change: serde_json::to_value(stream(i)).unwrap(),
        })
        .collect();
    assert!(store.put_desired_many(&changes, ecp_core::Timestamp::now()).await.unwrap().iter().all(Result::is_ok));
    hub.publish_desired(&agent).await.expect("a full set is published");
    let started = std::time::Instant::now();
    let one_more = MAX_DESIRED_ITEMS;
    let e = hub
        .deliver(&agent, &format!("127.0.0.1:9081 stream:s{one_more}"), "127.0.0.1:9081", &stream(one_more), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(ecp_core::Error::LimitExceeded { .. })), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused at once, not after the report timeout");
    assert_eq!(hub.stats().refused_items, 1, "refusals are counted");
    assert_eq!(hub.desired(&agent).await.unwrap().len(), MAX_DESIRED_ITEMS, "the refused item is not kept");
    hub.publish_desired(&agent).await.expect("the set is published again: later deliveries are not refused for it");
    // Withdrawing one makes room.
    let set = hub.withdraw(&agent, &["127.0.0.1:9081 stream:s0".to_owned()]).await.unwrap();
    assert_eq!(set.items.len(), MAX_DESIRED_ITEMS - 1);
    assert!(set.items.iter().all(|r| r.version < set.version), "the set after a withdrawal is newer than every item");
    let e = hub
        .deliver(&agent, &format!("127.0.0.1:9081 stream:s{one_more}"), "127.0.0.1:9081", &stream(one_more), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "now it is published and waits for the (absent) agent: {e}");
    hub.shutdown();
}
