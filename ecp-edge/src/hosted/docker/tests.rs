//! Unit tests of the Docker driver: the create body and the spec read back, node errors, engine
//! answers that must not panic, image references and config validation.

use std::time::Duration;

use bollard::models::{ContainerInspectResponse, EndpointSettings};
use ecp_core::edge::EdgeService;

use super::containers::split_image;
use super::spec::{create_body, endpoint_of, spec_of, status_of};
use super::*;
use crate::driver::EdgeDriver;
use crate::hosted::{
    LABEL_ENV_KEYS, LABEL_MANAGED_BY, LABEL_NAME, LABEL_NETWORK, LABEL_PORT, LABEL_PROJECT, LABEL_SERVICE, RestartPolicy,
    container_name_for, valid_name,
};
use ecp_core::edge::{EdgeKind, ManagementMode};

fn service() -> EdgeService {
    EdgeService::builder(ecp_core::ProjectId::new(), "line 1", EdgeKind::NeuronEx, "http://line-1:8085")
        .mode(ManagementMode::Docker)
        .build(ecp_core::Timestamp::now())
        .unwrap()
}

#[test]
fn create_body_carries_the_spec_and_labels() {
    let s = service();
    let spec = HostedSpec::builder("img:1", 8085)
        .env("A", "1")
        .args(["--x", "y"])
        .network("net")
        .publish(18085)
        .restart(RestartPolicy::OnFailure { max_retries: 2 })
        .build()
        .unwrap();
    let body = create_body(&s, &spec, "n1", "line-1");
    assert_eq!(body.image.as_deref(), Some("img:1"));
    assert_eq!(body.env, Some(vec!["A=1".to_owned()]));
    assert_eq!(body.cmd, Some(vec!["--x".to_owned(), "y".to_owned()]));
    let labels = body.labels.clone().unwrap();
    assert_eq!(labels[LABEL_SERVICE], s.id().to_string());
    assert_eq!(labels[LABEL_PROJECT], s.project().to_string());
    assert_eq!(labels[LABEL_MANAGED_BY], "ecp-rs");
    assert_eq!(labels[LABEL_NAME], "line-1");
    assert_eq!(labels[LABEL_NODE], "n1");
    let host = body.host_config.clone().unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("net"));
    assert_eq!(host.restart_policy.unwrap().maximum_retry_count, Some(2));
    assert_eq!(host.port_bindings.unwrap()["8085/tcp"].as_ref().unwrap()[0].host_port.as_deref(), Some("18085"));
    // What the engine gets: exposed ports as a map.
    let json = serde_json::to_value(&body).unwrap();
    assert_eq!(json["ExposedPorts"], serde_json::json!({ "8085/tcp": {} }));

    // The spec comes back from the container, with the image's own env left out.
    let config = bollard::models::ContainerConfig {
        image: body.image.clone(),
        labels: body.labels.clone(),
        env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
        ..Default::default()
    };
    let inspect = ContainerInspectResponse { config: Some(config), host_config: body.host_config.clone(), ..Default::default() };
    let found = Found { node: "n1".into(), id: "c".into(), name: "line-1".into(), final_name: "line-1".into() };
    let back = spec_of(&found, &inspect);
    assert_eq!(back, HostedSpec { node: Some("n1".into()), container_name: Some("line-1".into()), ..spec });
}

#[tokio::test]
async fn unreachable_nodes_are_typed_errors() {
    let s = service();
    // TLS with certificate files that are not there: the client cannot be made.
    let tls = DockerNode::builder("tls").tls("tcp://127.0.0.1:1", "/nonexistent/ca.pem", "/nonexistent/cert.pem", "/nonexistent/key.pem");
    let d = DockerDriver::new(DockerDriverConfig::builder().node(tls.build().unwrap()).build().unwrap()).unwrap();
    let e = d.status(&s).await.unwrap_err();
    assert!(matches!(&e, Error::Hosting(h) if !h.is_retryable() && h.operation().contains("node tls: connect")), "{e:?}");
    // Plain TCP to a closed port: retryable.
    let tcp = DockerNode::builder("tcp").tcp("tcp://127.0.0.1:1").timeout(Duration::from_secs(2));
    let d = DockerDriver::new(DockerDriverConfig::builder().node(tcp.build().unwrap()).build().unwrap()).unwrap();
    let e = d.start(&s).await.unwrap_err();
    assert!(matches!(&e, Error::Hosting(h) if h.is_retryable()), "{e:?}");
    // A spec naming an unknown node.
    let spec = HostedSpec::builder("img", 80).node("elsewhere").build().unwrap();
    assert!(d.install_with(&s, &spec).await.unwrap_err().is_not_found());
    assert!(d.upgrade_to(&s, "bad image").await.is_err());
}

proptest::proptest! {
    /// Whatever labels and env an engine reports, reading the spec and endpoint back does not
    /// panic, and container names made from any service name are valid.
    #[test]
    fn engine_answers_never_panic(
        labels in proptest::collection::hash_map("[a-z.\\-]{1,20}", ".{0,40}", 0..8),
        port in ".{0,8}",
        env in proptest::collection::vec(".{0,30}", 0..6),
        ip in proptest::option::of(".{0,40}"),
        name in ".{1,200}",
    ) {
        let mut labels = labels;
        labels.insert(LABEL_PORT.to_owned(), port);
        labels.insert(LABEL_ENV_KEYS.to_owned(), env.iter().filter_map(|e| e.split_once('=')).map(|(k, _)| k).collect::<Vec<_>>().join(","));
        let network = labels.get(LABEL_NETWORK).cloned().unwrap_or_else(|| "n".into());
        let inspect = ContainerInspectResponse {
            config: Some(bollard::models::ContainerConfig { labels: Some(labels), env: Some(env), ..Default::default() }),
            network_settings: Some(bollard::models::NetworkSettings {
                networks: Some(HashMap::from([(network, EndpointSettings { ip_address: ip, ..Default::default() })])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let found = Found { node: "n".into(), id: "c".into(), name: "x".into(), final_name: "x".into() };
        let _ = spec_of(&found, &inspect);
        let _ = status_of(&found, &inspect);
        let _ = endpoint_of(&inspect, None, "http", 1);
        proptest::prop_assert!(valid_name(&container_name_for(&name, &uuid::Uuid::now_v7().to_string())));
    }
}

#[test]
fn images_split_for_pulls() {
    assert_eq!(split_image("a/b:1.2"), ("a/b".into(), Some("1.2".into())));
    assert_eq!(split_image("reg:5000/a"), ("reg:5000/a".into(), Some("latest".into())));
    assert_eq!(split_image("a@sha256:ab"), ("a@sha256:ab".into(), None));
}

#[test]
fn nodes_and_configs_validate() {
    assert!(DockerNode::builder("n1").build().is_ok());
    assert!(DockerNode::builder("bad name").build().is_err());
    assert!(DockerNode::builder("n1").tcp("").build().is_err());
    assert!(DockerNode::builder("n1").tls("tcp://h:2376", "ca.pem", "cert.pem", "").build().is_err());
    let n = DockerNode::builder("n1").build().unwrap();
    assert!(DockerDriverConfig::builder().build().is_err());
    assert!(DockerDriverConfig::builder().node(n.clone()).node(n.clone()).build().is_err());
    assert!(DockerDriverConfig::builder().node(n.clone()).health(Duration::from_secs(5), Duration::from_secs(6)).build().is_err());
    assert!(DockerDriverConfig::builder().node(n).default_network("net").build().is_ok());
}
