//! The direct driver against ecp-testkit's simulated NeuronEX, Neuron, eKuiper and NanoMQ (real
//! HTTP on loopback, real state) and a wiremock custom service: probes, info sync, configuration
//! changes that converge when applied twice, raw calls with idempotency keys, offline services,
//! changed credentials, and the lifecycle operations a managed service does not have.
#![cfg(feature = "direct")]

use std::time::Duration;

use ecp_core::ProjectId;
use ecp_core::Timestamp;
use ecp_core::edge::{Credentials, EdgeKind, EdgeService};
use ecp_core::task::IdempotencyKey;
use ecp_edge::Error;
use ecp_edge::direct::{DirectDriver, DirectDriverConfig};
use ecp_edge::driver::EdgeDriver;
use ecp_edge::template::{ConfigChange, GroupSpec, TagSpec};
use ecp_edge_api::Error as ApiError;
use ecp_testkit::sim::{SimConfig, SimHandle, SimKind, SimService};
use secrecy::SecretString;
use serde_json::{Map, json};

fn driver() -> DirectDriver {
    DirectDriver::new(
        DirectDriverConfig::builder()
            .timeouts(Duration::from_secs(2), Duration::from_secs(5))
            .egress(ecp_edge_api::EgressPolicy::allow_loopback())
            .build()
            .unwrap(),
    )
    .unwrap()
}

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic { username: user.into(), password: SecretString::from(password.to_owned()) }
}

fn service(kind: EdgeKind, endpoint: &str, credentials: Credentials) -> EdgeService {
    EdgeService::builder(ProjectId::new(), "edge", kind, endpoint).credentials(credentials).build(Timestamp::now()).unwrap()
}

async fn sim(kind: SimKind) -> (SimHandle, EdgeService) {
    let sim = SimService::start(SimConfig::new(kind)).await.unwrap();
    let credentials = kind.default_credentials().map_or(Credentials::None, |(u, p)| basic(u, p));
    let kind = match kind {
        SimKind::NeuronEx => EdgeKind::NeuronEx,
        SimKind::Neuron => EdgeKind::Neuron,
        SimKind::Ekuiper => EdgeKind::Ekuiper,
        _ => EdgeKind::NanoMq,
    };
    let s = service(kind, &sim.base_url(), credentials);
    (sim, s)
}

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("task-1/target-{n}/attempt-1"))
}

fn south_device(interval: u64) -> ConfigChange {
    let tag = |name: &str, address: &str| TagSpec { name: name.into(), address: address.into(), attribute: 3, kind: 3, other: Map::new() };
    let mut params = Map::new();
    params.insert("host".into(), json!("10.0.0.9"));
    params.insert("port".into(), json!(502));
    ConfigChange::NeuronSouthDevice {
        node: "modbus-1".into(),
        plugin: "Modbus TCP".into(),
        params,
        groups: vec![GroupSpec { name: "g1".into(), interval, tags: vec![tag("t1", "1!400001"), tag("t2", "1!400002")] }],
    }
}

#[tokio::test]
async fn neuronex_probe_sync_and_changes_that_converge() {
    let (sim, svc) = sim(SimKind::NeuronEx).await;
    let d = driver();
    assert!(d.probe(&svc).await.unwrap().version.is_some_and(|v| !v.is_empty()));

    // A south device, applied twice (a retried attempt): created, then converged.
    let first = d.apply(&svc, &south_device(1000), &key(1)).await.unwrap();
    assert_eq!((first["created"].as_bool(), first["tags_added"].as_u64(), first["running"].as_bool()), (Some(true), Some(2), Some(true)));
    let again = d.apply(&svc, &south_device(2000), &key(1)).await.unwrap();
    assert_eq!((again["created"].as_bool(), again["tags_added"].as_u64(), again["tags_updated"].as_u64()), (Some(false), Some(0), Some(2)));

    // A stream and a rule, each twice.
    let stream =
        ConfigChange::EkuiperStream { name: "demo".into(), sql: r#"CREATE STREAM demo () WITH (TYPE="neuron", FORMAT="json")"#.into() };
    assert_eq!(d.apply(&svc, &stream, &key(2)).await.unwrap()["created"], json!(true));
    assert_eq!(d.apply(&svc, &stream, &key(2)).await.unwrap()["created"], json!(false));
    let rule = ConfigChange::EkuiperRule {
        id: "r1".into(),
        name: Some("rule one".into()),
        sql: "SELECT * FROM demo".into(),
        actions: vec![json!({ "log": {} })],
        options: None,
    };
    let r = d.apply(&svc, &rule, &key(3)).await.unwrap();
    assert_eq!((r["created"].as_bool(), r["status"].as_str()), (Some(true), Some("running")));
    assert_eq!(d.apply(&svc, &rule, &key(3)).await.unwrap()["created"], json!(false));

    // The info sync sees all of it, with states, groups and the new interval.
    let info = d.sync_info(&svc).await.unwrap();
    let node = info.drivers.iter().find(|n| n.name == "modbus-1").expect("the south device");
    assert_eq!((node.plugin.as_str(), node.state.as_deref(), node.connected), ("Modbus TCP", Some("running"), Some(true)));
    assert_eq!((node.groups[0].name.as_str(), node.groups[0].interval, node.groups[0].tag_count), ("g1", 2000, 2));
    assert_eq!(info.streams, vec!["demo"]);
    assert_eq!((info.rules[0].id.as_str(), info.rules[0].name.as_str(), info.rules[0].status.as_str()), ("r1", "rule one", "running"));

    // The same node name with another plugin is a conflict, not a silent change.
    let ConfigChange::NeuronSouthDevice { params, groups, .. } = south_device(1000) else { unreachable!() };
    let other = ConfigChange::NeuronSouthDevice { node: "modbus-1".into(), plugin: "OPC UA".into(), params, groups };
    let err = d.apply(&svc, &other, &key(4)).await.unwrap_err();
    assert!(matches!(&err, Error::Core(e) if e.is_conflict()), "{err:?}");

    // A NanoMQ change does not fit a NeuronEX.
    let nanomq = ConfigChange::NanoMqConfig { data: [("msq_len".to_owned(), json!(64))].into_iter().collect() };
    let err = d.apply(&svc, &nanomq, &key(5)).await.unwrap_err();
    assert!(matches!(&err, Error::Core(ecp_core::Error::InvalidInput { .. })), "{err:?}");

    // Lifecycle operations of a managed service are Unsupported, never attempted.
    let before = sim.total_requests();
    for err in [d.start(&svc).await.unwrap_err(), d.stop(&svc).await.unwrap_err(), d.upgrade(&svc, "neuronex:3.7").await.unwrap_err()] {
        assert!(err.is_unsupported(), "{err:?}");
    }
    assert_eq!(sim.total_requests(), before);
}

#[tokio::test]
async fn standalone_neuron_ekuiper_and_nanomq() {
    let d = driver();

    let (_neuron, svc) = sim(SimKind::Neuron).await;
    assert!(d.probe(&svc).await.unwrap().version.is_some());
    d.apply(&svc, &south_device(1000), &key(1)).await.unwrap();
    let info = d.sync_info(&svc).await.unwrap();
    assert_eq!(info.drivers.len(), 1);
    assert!(info.rules.is_empty() && info.streams.is_empty());
    let stream = ConfigChange::EkuiperStream { name: "demo".into(), sql: "CREATE STREAM demo () WITH (TYPE=\"neuron\")".into() };
    assert!(d.apply(&svc, &stream, &key(2)).await.is_err(), "Neuron has no eKuiper");

    let (_ekuiper, svc) = sim(SimKind::Ekuiper).await;
    assert!(d.probe(&svc).await.unwrap().version.is_some());
    d.apply(&svc, &stream, &key(2)).await.unwrap();
    assert_eq!(d.sync_info(&svc).await.unwrap().streams, vec!["demo"]);

    let (nanomq, svc) = sim(SimKind::NanoMq).await;
    assert!(d.probe(&svc).await.unwrap().version.is_some());
    let change = ConfigChange::NanoMqConfig { data: [("msq_len".to_owned(), json!(4096))].into_iter().collect() };
    assert_eq!(d.apply(&svc, &change, &key(3)).await.unwrap()["reloaded"], json!(["msq_len"]));
    let info = d.sync_info(&svc).await.unwrap();
    assert_eq!(info.extra["reload"]["msq_len"], json!(4096));
    assert!(info.extra.contains_key("metrics") && info.extra.contains_key("brokers"));
    let bad = ConfigChange::NanoMqConfig { data: [("msq_len".to_owned(), json!("lots"))].into_iter().collect() };
    assert!(matches!(d.apply(&svc, &bad, &key(4)).await.unwrap_err(), Error::Core(ecp_core::Error::InvalidInput { .. })));
    drop(nanomq);
}

#[tokio::test]
async fn offline_expired_tokens_and_changed_credentials() {
    let (sim, mut svc) = sim(SimKind::NeuronEx).await;
    let d = driver();
    d.probe(&svc).await.unwrap();
    let logins = sim.request_count("POST", "/api/login");

    // An expired token is renewed by itself.
    sim.expire_tokens();
    d.sync_info(&svc).await.unwrap();
    assert_eq!(sim.request_count("POST", "/api/login"), logins + 1);

    // Offline: a retryable transport error; back online: answers again.
    sim.go_offline().await;
    let err = d.probe(&svc).await.unwrap_err();
    assert!(matches!(err, Error::Service(ApiError::Transport { .. })) && err.is_retryable(), "{err:?}");
    sim.go_online().await.unwrap();
    d.probe(&svc).await.unwrap();

    // New credentials make a new client: the wrong password is refused, not served from cache.
    svc.set_credentials(basic("admin", "wrong-password"));
    let err = d.sync_info(&svc).await.unwrap_err();
    assert!(matches!(err, Error::Service(ApiError::Unauthorized { .. })) && !err.is_retryable(), "{err:?}");
    assert!(!format!("{err:?}{err}").contains("wrong-password"));
    assert_eq!(d.cached_clients(), 1);
    d.forget(&svc);
    assert_eq!(d.cached_clients(), 0);
}

#[tokio::test]
async fn raw_calls_carry_the_idempotency_key_and_custom_services() {
    use wiremock::matchers::{header, header_exists, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/things"))
        .and(header("idempotency-key", "task-1/target-7/attempt-1"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": 7 })))
        .expect(1)
        .mount(&server)
        .await;
    // Neuron's error under HTTP 200.
    Mock::given(method("PUT"))
        .and(path("/api/fails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "error": 2003 })))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/")).respond_with(ResponseTemplate::new(404)).mount(&server).await;

    let d = driver();
    let svc = service(EdgeKind::Custom, &server.uri(), basic("ops", "s3cret"));
    assert_eq!(d.probe(&svc).await.unwrap().version, None, "any answer below 500 is alive");
    let call = ConfigChange::RawApiCall { method: "POST".into(), path: "/api/things".into(), body: Some(json!({ "a": 1 })) };
    assert_eq!(d.apply(&svc, &call, &IdempotencyKey("task-1/target-7/attempt-1".into())).await.unwrap(), json!({ "id": 7 }));
    let failing = ConfigChange::RawApiCall { method: "PUT".into(), path: "/api/fails".into(), body: None };
    let err = d.apply(&svc, &failing, &key(8)).await.unwrap_err();
    assert!(matches!(err, Error::Service(ApiError::Api { status: 200, code: Some(2003), .. })), "{err:?}");
    let hostile = ConfigChange::RawApiCall { method: "GET".into(), path: "/../etc/passwd".into(), body: None };
    assert!(matches!(d.apply(&svc, &hostile, &key(9)).await.unwrap_err(), Error::Core(ecp_core::Error::InvalidInput { .. })));
    assert!(d.sync_info(&svc).await.unwrap_err().is_unsupported());

    // Nothing listens: a retryable transport error.
    let gone = service(EdgeKind::Custom, "http://127.0.0.1:9", Credentials::None);
    assert!(d.probe(&gone).await.unwrap_err().is_retryable());
}

#[test]
fn the_config_is_checked_when_built() {
    let field = |e: Error| match e {
        Error::Core(ecp_core::Error::InvalidInput { field, .. }) => field.to_string(),
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    let b = DirectDriverConfig::builder;
    for (bad, expected) in [
        (b().connect_timeout(Duration::ZERO), "connect_timeout"),
        (b().request_timeout(Duration::from_secs(3601)), "request_timeout"),
        (b().max_body(0), "max_body"),
        (b().root_ca_pem("not a certificate"), "root_ca_pem"),
    ] {
        assert_eq!(field(bad.build().unwrap_err()), expected);
    }

    let defaults = b().build().unwrap();
    assert_eq!((defaults.connect_timeout(), defaults.request_timeout()), (Duration::from_secs(5), Duration::from_secs(15)));
    assert_eq!((defaults.max_body(), defaults.root_ca_pem()), (ecp_edge_api::DEFAULT_MAX_BODY, None));
    let default = DirectDriverConfig::default();
    assert_eq!(
        (default.connect_timeout(), default.request_timeout(), default.max_body()),
        (Duration::from_secs(5), Duration::from_secs(15), ecp_edge_api::DEFAULT_MAX_BODY)
    );
    let set = b().timeouts(Duration::from_secs(1), Duration::from_secs(2)).max_body(1024).build().unwrap();
    assert_eq!((set.connect_timeout(), set.request_timeout(), set.max_body()), (Duration::from_secs(1), Duration::from_secs(2), 1024));
    assert!(DirectDriver::new(set).is_ok());
}
