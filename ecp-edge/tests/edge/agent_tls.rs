//! The hub and an agent over MQTT with TLS (rustls, aws-lc-rs) to a real mosquitto serving a
//! certificate of a throwaway CA; a client that does not trust that CA is refused.

#![cfg(all(feature = "mqtt", feature = "direct"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecp_agent::{EdgeAgent, EdgeAgentConfig, LocalServiceConfig};
use ecp_agent_proto::proto::{Command, Reply};
use ecp_core::edge::{AgentId, EdgeKind};
use ecp_core::{SqlStore, SystemClock};
use ecp_edge::agent::{AgentHub, AgentHubConfig, MqttConfig, MqttTls};
use ecp_testkit::mosquitto::Mosquitto;
use ecp_testkit::sim::{SimConfig, SimKind, SimService};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A CA, and a server certificate for 127.0.0.1 and localhost signed by it: (ca, cert, key) PEM.
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn tls(ca: &str) -> MqttTls {
    MqttTls::builder(ca).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_agent_speak_over_tls_and_an_untrusted_broker_is_refused() {
    let (ca, cert, key) = certificates();
    let broker = Mosquitto::builder().tls(cert, key).start().await.expect("mosquitto (scripts/test installs it)");
    let store = Arc::new(SqlStore::memory().await.unwrap());

    // A hub that trusts another CA cannot connect.
    let (other_ca, _, _) = certificates();
    let mqtt = MqttConfig::builder("127.0.0.1", broker.port()).tls(tls(&other_ca)).connect_timeout(Duration::from_secs(2)).build().unwrap();
    let config = AgentHubConfig::builder(mqtt).build().unwrap();
    let refused = AgentHub::connect(config, store.clone(), Arc::new(SystemClock)).await;
    assert!(refused.is_err(), "a broker whose certificate is not trusted is refused");

    let mqtt = MqttConfig::builder("127.0.0.1", broker.port()).tls(tls(&ca)).build().unwrap();
    let hub = AgentHub::connect(AgentHubConfig::builder(mqtt).build().unwrap(), store, Arc::new(SystemClock)).await.unwrap();
    let sim = SimService::start(SimConfig::new(SimKind::Ekuiper)).await.unwrap();
    let id = AgentId::new("edge-tls").unwrap();
    let mqtt = MqttConfig::builder("127.0.0.1", broker.port()).tls(tls(&ca)).inflight(16).build().unwrap();
    let ekuiper = LocalServiceConfig::builder("ekuiper", EdgeKind::Ekuiper, sim.base_url()).build().unwrap();
    let agent = EdgeAgent::new(EdgeAgentConfig::builder(id.clone(), mqtt).service(ekuiper).build().unwrap()).unwrap().spawn();
    let t = Instant::now();
    while !hub.is_online(&id) {
        assert!(t.elapsed() < Duration::from_secs(10), "the agent did not say hello over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(hub.request(&id, Command::Status, None).await.unwrap(), Reply::Ok { .. }));
    agent.abort();
    hub.shutdown();
}
