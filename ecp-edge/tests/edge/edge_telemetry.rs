//! An edge service's driver and rule states, collected through the direct driver from a simulated
//! NeuronEX, fire the built-in "driver exception" and "rule exception" alarms and recover.

use std::sync::Arc;
use std::time::Duration;

use ecp_core::edge::{Credentials, EdgeKind, EdgeService};
use ecp_core::task::IdempotencyKey;
use ecp_core::{OrgId, ProjectId, SystemClock, Timestamp};
use ecp_edge::direct::{DirectDriver, DirectDriverConfig};
use ecp_edge::driver::EdgeDriver;
use ecp_edge::telemetry::EdgeInfoCollector;
use ecp_edge::template::{ConfigChange, GroupSpec, TagSpec};
use ecp_telemetry::alarm::{AlarmConfig, AlarmEngine, Builtin, MetricReader};
use ecp_telemetry::{Collector, MetricName, MetricScope, MetricStore, MetricStoreConfig, SampleSink, SeriesSelector};
use ecp_testkit::sim::{SimConfig, SimKind, SimService};
use secrecy::SecretString;
use serde_json::{Map, json};

#[tokio::test]
async fn driver_and_rule_states_fire_and_clear_the_builtin_alarms() {
    let sim = SimService::start(SimConfig::new(SimKind::NeuronEx)).await.unwrap();
    let (user, pass) = SimKind::NeuronEx.default_credentials().unwrap();
    let credentials = Credentials::Basic { username: user.into(), password: SecretString::from(pass.to_owned()) };
    let scope = MetricScope::new(OrgId::new(), ProjectId::new());
    let svc = EdgeService::builder(scope.project, "edge", EdgeKind::NeuronEx, sim.base_url())
        .credentials(credentials)
        .build(Timestamp::now())
        .unwrap();
    let driver: Arc<dyn EdgeDriver> = Arc::new(
        DirectDriver::new(
            DirectDriverConfig::builder()
                .timeouts(Duration::from_secs(2), Duration::from_secs(5))
                .egress(ecp_edge_api::EgressPolicy::allow_loopback())
                .build()
                .unwrap(),
        )
        .unwrap(),
    );
    let key = |n: u32| IdempotencyKey(format!("t/{n}/1"));
    let tag = TagSpec { name: "t1".into(), address: "1!400001".into(), attribute: 3, kind: 3, other: Map::new() };
    let mut params = Map::new();
    params.insert("host".into(), json!("10.0.0.9"));
    let device = ConfigChange::NeuronSouthDevice {
        node: "modbus-1".into(),
        plugin: "Modbus TCP".into(),
        params,
        groups: vec![GroupSpec { name: "g1".into(), interval: 1000, tags: vec![tag] }],
    };
    driver.apply(&svc, &device, &key(1)).await.unwrap();
    let stream =
        ConfigChange::EkuiperStream { name: "demo".into(), sql: r#"CREATE STREAM demo () WITH (TYPE="neuron", FORMAT="json")"#.into() };
    driver.apply(&svc, &stream, &key(2)).await.unwrap();
    let rule = ConfigChange::EkuiperRule {
        id: "r1".into(),
        name: None,
        sql: "SELECT * FROM demo".into(),
        actions: vec![json!({ "log": {} })],
        options: None,
    };
    driver.apply(&svc, &rule, &key(3)).await.unwrap();

    let collector = EdgeInfoCollector::new(driver.clone(), svc.clone(), scope);
    let store = Arc::new(MetricStore::new(MetricStoreConfig::default()));
    let engine = AlarmEngine::new(store.clone() as Arc<dyn MetricReader>, Arc::new(SystemClock), AlarmConfig::default()).unwrap();
    engine.attach(scope);
    let round = || async {
        let c = collector.collect(Timestamp::now()).await.unwrap();
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        assert_eq!(store.accept(&c.samples).stored, c.samples.len());
        engine.evaluate();
    };
    let latest = |m: &str| store.latest(&scope, &SeriesSelector::metric(MetricName::new(m).unwrap()));

    round().await;
    let link = latest("neuron_node_link_state");
    assert_eq!(link.len(), 1);
    assert_eq!(
        (link[0].0.labels.get("node"), link[0].0.labels.get("source"), link[0].1.value),
        (Some("modbus-1"), Some(collector.source()), 1.0)
    );
    assert_eq!(latest("ekuiper_rule_status")[0].1.value, 1.0);
    assert_eq!(latest("neuron_node_running_state")[0].1.value, 3.0);
    assert_eq!(engine.stats().fired, 0);

    // The device's link drops: "driver exception" fires after its trigger count, not before.
    let mut events = engine.subscribe();
    sim.with_neuron(|n| n.nodes.get_mut("modbus-1").unwrap().connected = false).unwrap();
    let n = Builtin::DriverError.rule().trigger_count;
    for i in 1..=n {
        round().await;
        assert_eq!(engine.stats().fired, u64::from(i == n), "after {i} of {n} breaching rounds");
    }
    let ecp_telemetry::alarm::AlarmEvent::Fired(a) = events.recv().await.unwrap() else { panic!("expected a fired alarm") };
    assert_eq!(a.name, "driver exception");
    assert!(a.message.contains("modbus-1"), "{}", a.message);

    // The rule stops by error: "rule exception" fires too.
    sim.with_ekuiper(|k| k.rules.get_mut("r1").unwrap().status = "stopped by error".into()).unwrap();
    for _ in 0..Builtin::RuleError.rule().trigger_count {
        round().await;
    }
    let ecp_telemetry::alarm::AlarmEvent::Fired(a) = events.recv().await.unwrap() else { panic!("expected a fired alarm") };
    assert_eq!(a.name, "rule exception");
    assert_eq!(a.labels.get("rule"), Some("r1"));

    // Both come back: both recover after their recovery counts.
    sim.with_neuron(|n| n.nodes.get_mut("modbus-1").unwrap().connected = true).unwrap();
    sim.with_ekuiper(|k| k.rules.get_mut("r1").unwrap().status = "running".into()).unwrap();
    for _ in 0..Builtin::DriverError.rule().recovery_count.max(Builtin::RuleError.rule().recovery_count) {
        round().await;
    }
    assert_eq!(engine.stats().closed, 2);

    // A service that does not answer is a collection error (the runner's up series goes to 0).
    sim.go_offline().await;
    assert!(collector.collect(Timestamp::now()).await.is_err());
}
