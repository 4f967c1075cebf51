//! The clients end to end against ecp-testkit's simulated NeuronEX, Neuron, eKuiper and NanoMQ (an
//! independent reading of the same wire contracts, with real state): every call an info sync and a
//! configuration change need, token expiry, and a service going offline.

use std::sync::Arc;
use std::time::Duration;

use ecp_edge_api::Credentials;
use ecp_edge_api::Error;
use ecp_edge_api::ekuiper::{Rule, RuleState};
use ecp_edge_api::nanomq::{ClientFilter, Publish, default_credentials};
use ecp_edge_api::neuron::{DataType, LinkState, NodeCommand, RunningState, Tag, TagAttribute};
use ecp_edge_api::{EkuiperClient, NanoMqClient, NeuronClient, NeuronExClient};
use ecp_edge_api::{HttpTransport, HttpTransportConfig};
use ecp_testkit::sim::{NanomqClient, NanomqSubscription, SimConfig, SimHandle, SimKind, SimService};
use secrecy::SecretString;
use serde_json::json;

fn transport(sim: &SimHandle) -> Arc<HttpTransport> {
    Arc::new(
        HttpTransportConfig::new(sim.base_url())
            .egress(ecp_edge_api::EgressPolicy::allow_loopback())
            .request_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
}

fn admin() -> Credentials {
    Credentials::Basic { username: "admin".into(), password: SecretString::from("0000") }
}

/// South driver, group, tags, state, and north app, as a configuration change and an info sync do.
async fn neuron_walk(neuron: &NeuronClient) {
    neuron.add_node("modbus-1", "Modbus TCP", Some(&json!({ "host": "10.0.0.9", "port": 502 }))).await.unwrap();
    neuron.add_node("mqtt", "MQTT", None).await.unwrap();
    let err = neuron.add_node("modbus-1", "Modbus TCP", None).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 409, code: Some(2002), .. }), "{err:?}");

    neuron.add_group("modbus-1", "g1", 1000).await.unwrap();
    let tags = [
        Tag::new("t1", "1!400001", TagAttribute::READ | TagAttribute::WRITE, DataType::UINT16),
        Tag::new("t2", "1!400002", TagAttribute::READ, DataType::INT16),
    ];
    assert_eq!(neuron.add_tags("modbus-1", "g1", &tags).await.unwrap().index, 2);
    let err = neuron.add_tags("modbus-1", "g1", &tags[..1]).await.unwrap_err();
    assert!(matches!(err, Error::Api { code: Some(2202), .. }), "{err:?}");
    let listed = neuron.tags("modbus-1", "g1", None).await.unwrap();
    assert_eq!(listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["t1", "t2"]);
    assert_eq!(listed[0].attribute, TagAttribute::READ | TagAttribute::WRITE);

    assert_eq!(neuron.drivers().await.unwrap().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["modbus-1"]);
    assert_eq!(neuron.apps().await.unwrap()[0].plugin, "MQTT");
    let groups = neuron.all_groups().await.unwrap();
    assert_eq!((groups[0].driver.as_str(), groups[0].group.as_str(), groups[0].tag_count), ("modbus-1", "g1", 2));
    assert_eq!(neuron.groups("modbus-1").await.unwrap()[0].interval, 1000);

    // Settings given at creation start the node, as on a real Neuron.
    let err = neuron.node_ctl("modbus-1", NodeCommand::Start).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 409, code: Some(2007), .. }), "{err:?}");
    neuron.node_ctl("modbus-1", NodeCommand::Stop).await.unwrap();
    assert_eq!(neuron.node_state("modbus-1").await.unwrap().running, RunningState::Stopped);
    neuron.node_ctl("modbus-1", NodeCommand::Start).await.unwrap();
    let state = neuron.node_state("modbus-1").await.unwrap();
    assert_eq!((state.running, state.link), (RunningState::Running, LinkState::Connected));
    let states = neuron.node_states().await.unwrap();
    assert!(states.states.iter().any(|s| s.node == "modbus-1" && s.state.running == RunningState::Running));

    neuron.delete_tags("modbus-1", "g1", &["t2"]).await.unwrap();
    assert_eq!(neuron.tags("modbus-1", "g1", None).await.unwrap().len(), 1);
    let err = neuron.delete_group("modbus-1", "nope").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn standalone_neuron() {
    let sim = SimService::start(SimConfig::new(SimKind::Neuron)).await.unwrap();
    let neuron = NeuronClient::new(transport(&sim), admin()).unwrap();
    neuron.ping().await.unwrap();
    assert!(!neuron.version().await.unwrap().version.is_empty());
    neuron_walk(&neuron).await;
    assert!(!neuron.metrics(None, None).await.unwrap().is_empty());

    // Every token expires: the next call logs in again by itself.
    let logins = sim.request_count("POST", "/api/v2/login");
    sim.expire_tokens();
    assert_eq!(neuron.drivers().await.unwrap().len(), 1);
    assert_eq!(sim.request_count("POST", "/api/v2/login"), logins + 1);

    // Unknown routes answer HTML.
    let mut call = neuron.api().version().unwrap().into_request();
    *call.uri_mut() = "/api/v2/no-such-route".parse().unwrap();
    let answer = ecp_edge_api::EdgeTransport::send(&*transport(&sim), call).await.unwrap();
    let err = neuron.api().version().unwrap().parse(&answer).unwrap_err();
    assert!(err.to_string().contains("HTML page"), "{err}");

    sim.go_offline().await;
    let err = neuron.drivers().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn neuronex_with_its_neuron_and_ekuiper() {
    let sim = SimService::start(SimConfig::new(SimKind::NeuronEx)).await.unwrap();
    let nx = NeuronExClient::new(transport(&sim), admin()).unwrap();
    assert!(!nx.version().await.unwrap().version.is_empty());
    let system = nx.system().await.unwrap();
    assert!(system.neuron_status.is_some() || !system.extra.is_empty(), "{system:?}");
    neuron_walk(&nx.neuron()).await;

    let ekuiper = nx.ekuiper();
    ekuiper_walk(&ekuiper).await;

    sim.expire_tokens();
    assert_eq!(ekuiper.streams().await.unwrap(), ["demo"]);
    assert_eq!(nx.neuron().drivers().await.unwrap().len(), 1);
    assert_eq!(sim.request_count("POST", "/api/login"), 2, "one login, one renewal shared by both APIs");
    sim.shutdown().await;
}

async fn ekuiper_walk(ekuiper: &EkuiperClient) {
    assert!(!ekuiper.version().await.unwrap().is_empty());
    let sql = r#"CREATE STREAM demo (temp FLOAT) WITH (DATASOURCE="t/demo", FORMAT="JSON")"#;
    assert!(ekuiper.create_stream(sql).await.unwrap().contains("demo"));
    assert_eq!(ekuiper.streams().await.unwrap(), ["demo"]);
    assert_eq!(ekuiper.stream("demo").await.unwrap().name, "demo");

    let rule = Rule::new("rule1", "SELECT * FROM demo", vec![json!({ "log": {} })]);
    assert!(ekuiper.create_rule(&rule).await.unwrap().contains("rule1"));
    let rules = ekuiper.rules().await.unwrap();
    assert_eq!(rules[0].id, "rule1");
    let status = ekuiper.rule_status("rule1").await.unwrap();
    assert!(status.state().is_running(), "{status:?}");
    ekuiper.stop_rule("rule1").await.unwrap();
    assert_eq!(ekuiper.rule_status("rule1").await.unwrap().state(), RuleState::Stopped);
    ekuiper.restart_rule("rule1").await.unwrap();
    assert_eq!(ekuiper.rule("rule1").await.unwrap().sql.as_deref(), Some("SELECT * FROM demo"));

    let err = ekuiper.rule_status("r9").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, code: Some(1002), .. }), "{err:?}");
    let err = ekuiper.delete_stream("demo", false).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 400, .. }), "the rule uses it: {err:?}");
}

#[tokio::test]
async fn ekuiper_with_authentication() {
    let sim = SimService::start(SimConfig::builder(SimKind::Ekuiper).auth(true).build().unwrap()).await.unwrap();
    let anonymous = EkuiperClient::new(transport(&sim), Credentials::None).unwrap();
    anonymous.ping().await.unwrap();
    assert!(matches!(anonymous.rules().await, Err(Error::Unauthorized { .. })));

    let ekuiper = EkuiperClient::new(transport(&sim), Credentials::Token(SecretString::from(sim.issue_token()))).unwrap();
    ekuiper_walk(&ekuiper).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn nanomq() {
    let sim = SimService::start(SimConfig::new(SimKind::NanoMq)).await.unwrap();
    sim.with_nanomq(|s| {
        s.clients.push(NanomqClient::new("nanomq-f6d6fbfb", "alvin"));
        s.subscriptions.push(NanomqSubscription::new("nanomq-f6d6fbfb", "topic123", 2));
    });
    let nanomq = NanoMqClient::new(transport(&sim), default_credentials()).unwrap();
    assert!(!nanomq.version().await.unwrap().is_empty());
    assert_eq!(nanomq.nodes().await.unwrap().len(), 1);
    let clients = nanomq.clients(&ClientFilter::default().username("alvin")).await.unwrap();
    assert_eq!(clients[0].client_id, "nanomq-f6d6fbfb");
    assert!(nanomq.client("ghost").await.unwrap().is_none());
    assert_eq!(nanomq.subscriptions().await.unwrap()[0].client_id, "nanomq-f6d6fbfb");
    assert_eq!(nanomq.topic_tree().await.unwrap().len(), 2);
    assert!(nanomq.metrics().await.unwrap().memory_bytes().is_some());
    assert!(!nanomq.prometheus().await.unwrap().is_empty());
    let reload = nanomq.reload_config().await.unwrap();
    assert!(reload.msq_len.is_some());
    assert!(nanomq.configuration_section("basic").await.unwrap().get("url").is_some());
    assert!(nanomq.configuration_section("nope").await.unwrap_err().is_not_found());

    nanomq.publish(&Publish::new("t/1", "hello")).await.unwrap();
    let mut bad = Publish::new("t/1", "x");
    bad.qos = 3;
    assert!(matches!(nanomq.publish(&bad).await, Err(Error::Api { status: 200, code: Some(108), .. })));
    assert_eq!(sim.with_nanomq(|s| s.published.len()), Some(1));

    let wrong = Credentials::Basic { username: "admin".into(), password: SecretString::from("nope") };
    let denied = NanoMqClient::new(transport(&sim), wrong).unwrap();
    assert!(matches!(denied.brokers().await, Err(Error::Unauthorized { .. })));
    sim.shutdown().await;
}
