//! Per-agent broker credentials and ACLs against a real mosquitto (started by ecp-testkit with the
//! files `BrokerAcl` generates, anonymous clients refused), over MQTT 5 with rumqttc: each agent
//! logs in with its own secret only, reads only its own commands, publishes only in its own name,
//! and a new agent can log in after the files are rewritten and the broker reloaded.
//!
//! Every wait is bounded: 5 s for what must happen, 1 s for what must not (each such negative is
//! paired with a positive control on the same connection, so it cannot pass vacuously).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ecp_agent_proto::acl::{ACL_FILE_NAME, AgentSecret, BrokerAcl, PASSWORD_FILE_NAME, mosquitto_hash};
use ecp_agent_proto::{AgentId, Channel, Topics};
use ecp_testkit::mosquitto::Mosquitto;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAck, PubAckReason, Publish, SubAck, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// For what must happen.
const POSITIVE: Duration = Duration::from_secs(5);
/// For what must not happen.
const NEGATIVE: Duration = Duration::from_secs(1);
const HUB: &str = "hub-1";

/// A broker with the generated files, the hub and agents `edge-a` and `edge-b`.
///
/// The harness's broker has `max_queued_messages 0` (no queue limit), under which mosquitto
/// 2.0.11 drops a client's connection right after refusing one of its QoS 1 publishes; tests that
/// go on using a connection after a refused publish set mosquitto's default limit instead.
struct Setup {
    broker: Mosquitto,
    topics: Topics,
    acl: BrokerAcl,
    hub_secret: AgentSecret,
    secrets: BTreeMap<AgentId, AgentSecret>,
}

fn id(s: &str) -> AgentId {
    AgentId::new(s).expect("agent id")
}

impl Setup {
    async fn start() -> Setup {
        Setup::with_queue_limit(0).await
    }

    async fn with_queue_limit(max_queued_messages: u32) -> Setup {
        let topics = Topics::new("t1/ecp").expect("prefix");
        let hub_secret = AgentSecret::generate().expect("secret");
        let secrets: BTreeMap<AgentId, AgentSecret> =
            ["edge-a", "edge-b"].into_iter().map(|a| (id(a), AgentSecret::generate().expect("secret"))).collect();
        let acl = BrokerAcl::new(
            topics.clone(),
            HUB,
            &mosquitto_hash(hub_secret.as_secret()).expect("hash"),
            secrets.iter().map(|(a, s)| (a.clone(), mosquitto_hash(s.as_secret()).expect("hash"))),
        )
        .expect("acl");
        let broker = Mosquitto::builder()
            .allow_anonymous(false)
            .max_queued_messages(max_queued_messages)
            .password_file(acl.password_file())
            .acl_file(acl.acl_file())
            .start()
            .await
            .expect("start mosquitto (install Debian's mosquitto package, or run scripts/test)");
        Setup { broker, topics, acl, hub_secret, secrets }
    }

    async fn hub(&self) -> Client {
        let secret = self.hub_secret.as_secret().expose_secret().to_owned();
        Client::connect(&self.broker, HUB, Some((HUB, &secret))).await.unwrap_or_else(|e| panic!("the hub is refused: {e}"))
    }

    async fn agent(&self, agent: &str) -> Client {
        let secret = self.secrets[&id(agent)].as_secret().expose_secret().to_owned();
        Client::connect(&self.broker, agent, Some((agent, &secret))).await.unwrap_or_else(|e| panic!("{agent} is refused: {e}"))
    }

    fn topic(&self, agent: &str, channel: Channel) -> String {
        self.topics.topic(&id(agent), channel)
    }

    /// Everything under the prefix: the hub's view.
    fn all(&self) -> String {
        format!("{}/agents/#", self.topics.prefix())
    }
}

impl Drop for Setup {
    /// A failing test shows what the broker saw.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- mosquitto log -----\n{}", self.broker.log());
        }
    }
}

/// A connected MQTT 5 client whose event loop runs in a task; incoming packets are buffered until
/// a test takes them.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Packet, String>>,
    buffered: VecDeque<Packet>,
    errors: Vec<String>,
}

impl Client {
    /// Connects as `client_id` and waits for the CONNACK; a refused CONNACK is the error.
    async fn connect(broker: &Mosquitto, client_id: &str, login: Option<(&str, &str)>) -> Result<Client, ConnectionError> {
        let mut options = MqttOptions::new(client_id, broker.host(), broker.port());
        options.set_keep_alive(Duration::from_secs(30)).set_clean_start(true).set_outgoing_inflight_upper_limit(16);
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        timeout(POSITIVE, connack(&mut eventloop)).await.expect("CONNACK in time")?;
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if tx.send(Ok(packet)).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        Ok(Client { client, events, buffered: VecDeque::new(), errors: Vec::new() })
    }

    /// The first packet (buffered or arriving within `wait`) that `pick` accepts; the others stay
    /// buffered.
    async fn take<T>(&mut self, wait: Duration, mut pick: impl FnMut(&Packet) -> Option<T>) -> Option<T> {
        if let Some(i) = self.buffered.iter().position(|p| pick(p).is_some()) {
            return self.buffered.remove(i).as_ref().and_then(&mut pick);
        }
        let deadline = Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(packet))) => match pick(&packet) {
                    Some(t) => return Some(t),
                    None => self.buffered.push_back(packet),
                },
                Ok(Some(Err(e))) => self.errors.push(e),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) -> SubAck {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.expect("queue SUBSCRIBE");
        let suback = self.take(POSITIVE, |p| if let Packet::SubAck(s) = p { Some(s.clone()) } else { None }).await;
        suback.unwrap_or_else(|| panic!("no SUBACK for {filter} (errors: {:?})", self.errors))
    }

    /// Publishes at QoS 1 and returns the PUBACK.
    async fn publish(&mut self, topic: &str, payload: &str) -> PubAck {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.to_owned()).await.expect("queue PUBLISH");
        let puback = self.take(POSITIVE, |p| if let Packet::PubAck(a) = p { Some(a.clone()) } else { None }).await;
        puback.unwrap_or_else(|| panic!("no PUBACK for {topic} (errors: {:?})", self.errors))
    }

    /// The next message on `topic` within `wait`.
    async fn message_on(&mut self, topic: &str, wait: Duration) -> Option<Publish> {
        self.take(wait, |p| match p {
            Packet::Publish(m) if m.topic == topic.as_bytes() => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Every message received within `wait` (and those already buffered), as (topic, payload).
    async fn messages(&mut self, wait: Duration) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        while let Some(m) = self.take(wait, |p| if let Packet::Publish(m) = p { Some(m.clone()) } else { None }).await {
            out.push((text(&m.topic), text(&m.payload)));
        }
        out
    }
}

async fn connack(eventloop: &mut EventLoop) -> Result<(), ConnectionError> {
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await? {
            return Ok(());
        }
    }
}

/// The reason a refused CONNECT got.
async fn refusal(broker: &Mosquitto, client_id: &str, login: Option<(&str, &str)>) -> ConnectReturnCode {
    match Client::connect(broker, client_id, login).await {
        Ok(_) => panic!("{client_id} ({login:?}) was let in"),
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(e) => panic!("{client_id} failed otherwise than by a refused CONNACK: {e}"),
    }
}

fn assert_not_authorized(code: ConnectReturnCode, who: &str) {
    assert!(matches!(code, ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword), "{who}: {code:?}");
}

#[tokio::test]
async fn agents_log_in_with_their_own_secret_only() {
    let s = Setup::start().await;
    let a = s.agent("edge-a").await;
    drop(a);
    let _hub = s.hub().await;

    // mosquitto 2.0 answers every failed login with 0x87 Not authorized (never 0x86)
    let b_secret = s.secrets[&id("edge-b")].as_secret().expose_secret().to_owned();
    let code = refusal(&s.broker, "edge-a", Some(("edge-a", &b_secret))).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized, "another agent's secret");
    assert_not_authorized(refusal(&s.broker, "edge-a", Some(("edge-a", "wrong"))).await, "a wrong password");
    assert_not_authorized(refusal(&s.broker, "edge-a", Some(("edge-a", ""))).await, "an empty password");
    let a_secret = s.secrets[&id("edge-a")].as_secret().expose_secret().to_owned();
    assert_not_authorized(refusal(&s.broker, "edge-z", Some(("edge-z", &a_secret))).await, "an unknown username");
    assert_not_authorized(refusal(&s.broker, "anon", None).await, "an anonymous client");
    // the hash is not a password
    let hash_line = s.acl.password_file().lines().find(|l| l.starts_with("edge-a:")).expect("edge-a's line").to_owned();
    let hash = &hash_line["edge-a:".len()..];
    assert_not_authorized(refusal(&s.broker, "edge-a", Some(("edge-a", hash))).await, "the hash as password");

    // and the right secret still works afterwards
    let _a = s.agent("edge-a").await;
}

#[tokio::test]
async fn an_agent_cannot_read_another_agents_commands() {
    let s = Setup::start().await;
    let mut hub = s.hub().await;
    let mut a = s.agent("edge-a").await;
    let mut b = s.agent("edge-b").await;

    // B subscribes to its own topics: granted.
    for channel in Channel::AGENT_SUBSCRIBES {
        let suback = b.subscribe(&s.topic("edge-b", channel)).await;
        assert_eq!(suback.return_codes, [SubscribeReasonCode::Success(QoS::AtLeastOnce)], "{channel:?}");
    }
    // A subscribes to its own cmd, to B's cmd and desired, and to everything.
    let own = a.subscribe(&s.topic("edge-a", Channel::Command)).await;
    assert_eq!(own.return_codes, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    // Mosquitto 2.0's ACL file checks reads when it delivers, not when a client subscribes: it
    // grants these (SUBACK 0x01), and then delivers nothing of B's to A (below).
    for filter in [s.topic("edge-b", Channel::Command), s.topic("edge-b", Channel::Desired), s.all()] {
        let suback = a.subscribe(&filter).await;
        assert_eq!(suback.return_codes, [SubscribeReasonCode::Success(QoS::AtLeastOnce)], "mosquitto 2.0 grants {filter}");
    }

    // The hub sends B a command and a desired state, then A a command.
    let b_cmd = s.topic("edge-b", Channel::Command);
    let b_desired = s.topic("edge-b", Channel::Desired);
    let a_cmd = s.topic("edge-a", Channel::Command);
    for (topic, payload) in [(&b_cmd, "for-b"), (&b_desired, "desired-b"), (&a_cmd, "for-a")] {
        let ack = hub.publish(topic, payload).await;
        assert_eq!(ack.reason, PubAckReason::Success, "hub publishing on {topic}");
    }

    // (d) B gets its command and its desired state.
    let got = b.message_on(&b_cmd, POSITIVE).await.expect("B receives the hub's command");
    assert_eq!(got.payload.as_ref(), b"for-b");
    let got = b.message_on(&b_desired, POSITIVE).await.expect("B receives its desired state");
    assert_eq!(got.payload.as_ref(), b"desired-b");

    // Positive control: A's own command arrives (after B's, which the hub sent first) ...
    let got = a.message_on(&a_cmd, POSITIVE).await.expect("A receives its own command");
    assert_eq!(got.payload.as_ref(), b"for-a");
    // ... and nothing but A's own topic ever reaches A.
    let seen = a.messages(NEGATIVE).await;
    assert!(seen.iter().all(|(t, _)| t == &a_cmd), "A read another agent's messages: {seen:?}");
    assert!(seen.iter().all(|(_, p)| p == "for-a"), "{seen:?}");
    // B saw nothing meant for A either.
    let seen = b.messages(NEGATIVE).await;
    assert!(seen.is_empty(), "B read: {seen:?}");
    assert!(a.errors.is_empty() && b.errors.is_empty() && hub.errors.is_empty(), "{:?} {:?} {:?}", a.errors, b.errors, hub.errors);
}

#[tokio::test]
async fn an_agent_cannot_publish_as_another_agent() {
    let s = Setup::with_queue_limit(1000).await;
    let mut hub = s.hub().await;
    let suback = hub.subscribe(&s.all()).await;
    assert_eq!(suback.return_codes, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    let mut a = s.agent("edge-a").await;

    // A tries every one of B's agent → hub channels, and B's cmd (hub → agent).
    let mut forged = Vec::new();
    for channel in Channel::AGENT_PUBLISHES {
        let topic = if channel == Channel::Reply { s.topics.reply(&id("edge-b"), HUB) } else { s.topic("edge-b", channel) };
        forged.push(topic);
    }
    forged.push(s.topic("edge-b", Channel::Command));
    forged.push(s.topic("edge-a", Channel::Command)); // its own cmd is read-only too
    let mut codes = Vec::new();
    for topic in &forged {
        let ack = a.publish(topic, "forged-by-a").await;
        assert_ne!(ack.reason, PubAckReason::Success, "a forged publish on {topic} was accepted");
        codes.push(ack.reason);
    }
    assert!(codes.iter().all(|c| *c == PubAckReason::NotAuthorized), "PUBACK reasons: {codes:?}");
    // and at QoS 0, where no PUBACK tells
    a.client.publish(s.topic("edge-b", Channel::Heartbeat), QoS::AtMostOnce, false, "forged-qos0").await.expect("queue");

    // Positive control: A's own heartbeat and reply reach the hub, after the forged ones.
    let own = [s.topic("edge-a", Channel::Heartbeat), s.topics.reply(&id("edge-a"), HUB)];
    for topic in &own {
        assert_eq!(a.publish(topic, "from-a").await.reason, PubAckReason::Success, "{topic}");
    }
    for topic in &own {
        let got = hub.message_on(topic, POSITIVE).await.unwrap_or_else(|| panic!("the hub receives A's own {topic}"));
        assert_eq!(got.payload.as_ref(), b"from-a");
    }
    let seen = hub.messages(NEGATIVE).await;
    assert!(seen.is_empty(), "the hub received forged messages: {seen:?}");
    assert!(a.errors.is_empty() && hub.errors.is_empty(), "{:?} {:?}", a.errors, hub.errors);
}

#[tokio::test]
async fn a_new_agent_can_log_in_after_a_reload() {
    let mut s = Setup::with_queue_limit(1000).await;
    let mut hub = s.hub().await;
    hub.subscribe(&s.all()).await;

    let c = id("edge-c");
    let c_secret = AgentSecret::generate().expect("secret");
    let c_password = c_secret.as_secret().expose_secret().to_owned();
    assert_not_authorized(refusal(&s.broker, "edge-c", Some(("edge-c", &c_password))).await, "edge-c before the reload");

    // What a host does: rewrite both files atomically in the broker's directory, then SIGHUP.
    s.acl.insert_agent(c.clone(), mosquitto_hash(c_secret.as_secret()).expect("hash")).expect("add edge-c");
    assert_eq!(s.broker.password_file_path(), s.broker.dir().join(PASSWORD_FILE_NAME));
    assert_eq!(s.broker.acl_file_path(), s.broker.dir().join(ACL_FILE_NAME));
    s.acl.write_files(s.broker.dir()).expect("write the files");
    s.broker.reload().await.expect("reload");
    s.secrets.insert(c.clone(), AgentSecret::from(SecretString::from(c_password)));

    let mut agent_c = s.agent("edge-c").await;
    let hello = s.topic("edge-c", Channel::Hello);
    assert_eq!(agent_c.publish(&hello, "hello-c").await.reason, PubAckReason::Success);
    // C is confined like the others.
    assert_eq!(agent_c.publish(&s.topic("edge-a", Channel::Hello), "forged-by-c").await.reason, PubAckReason::NotAuthorized);
    // The hub's session survived the reload and sees C's hello, and only that.
    let got = hub.message_on(&hello, POSITIVE).await.expect("the hub receives C's hello");
    assert_eq!(got.payload.as_ref(), b"hello-c");
    assert!(hub.messages(NEGATIVE).await.is_empty());
    // The old agents still log in.
    let _a = s.agent("edge-a").await;
    assert!(hub.errors.is_empty(), "{:?}", hub.errors);
}

/// Under the harness's `max_queued_messages 0`, mosquitto 2.0.11 drops the connection of a
/// client whose publish it refused (QoS 0 as well as 1; the PUBACK 0x87 may or may not reach the
/// client first). Whatever the version does, the forged message never reaches the hub.
#[tokio::test]
async fn refused_publishes_under_the_harness_default_queue_limit() {
    let s = Setup::start().await;
    let mut hub = s.hub().await;
    hub.subscribe(&s.all()).await;
    let b_heartbeat = s.topic("edge-b", Channel::Heartbeat);

    for qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        let mut a = s.agent("edge-a").await;
        a.client.publish(&b_heartbeat, qos, false, format!("forged-{qos:?}")).await.expect("queue PUBLISH");
        let puback = a.take(NEGATIVE, |p| if let Packet::PubAck(ack) = p { Some(ack.reason) } else { None }).await;
        if let Some(reason) = puback {
            assert_eq!(reason, PubAckReason::NotAuthorized);
        }
        a.take(NEGATIVE, |_| None::<()>).await; // returns early if the connection drops
        eprintln!("refused {qos:?} publish: PUBACK {puback:?}, connection dropped: {:?}", a.errors);
    }

    // Positive control, on a fresh connection: A's own heartbeat arrives, and nothing else did.
    let mut a = s.agent("edge-a").await;
    let own = s.topic("edge-a", Channel::Heartbeat);
    assert_eq!(a.publish(&own, "from-a").await.reason, PubAckReason::Success);
    let got = hub.message_on(&own, POSITIVE).await.expect("the hub receives A's own heartbeat");
    assert_eq!(got.payload.as_ref(), b"from-a");
    let seen = hub.messages(NEGATIVE).await;
    assert!(seen.is_empty(), "the hub received forged messages: {seen:?}");
    assert!(a.errors.is_empty() && hub.errors.is_empty(), "{:?} {:?}", a.errors, hub.errors);
}
