//! Unit tests of the Docker cluster backend's pure parts.

use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use ecp_hosting::docker::DockerAddress;
use secrecy::SecretString;

use super::plan::*;
use super::*;

use crate::model::ApiKey;

fn cluster() -> ClusterRef {
    ClusterRef::new(ecp_core::ClusterId::new(), ecp_core::ProjectId::new(), "mqtt")
}

#[test]
fn config_is_checked() {
    let c = DockerClusterConfig::builder(DockerAddress::Local).build().unwrap();
    assert_eq!(
        (c.request_timeout(), c.stop_timeout(), c.ready_timeout(), c.settle()),
        (Duration::from_secs(60), Duration::from_secs(30), Duration::from_secs(60), Duration::from_secs(2))
    );
    assert!(matches!(c.address(), DockerAddress::Local));
    let b = || DockerClusterConfig::builder(DockerAddress::Local);
    for bad in [
        b().request_timeout(Duration::ZERO),
        b().ready_timeout(Duration::ZERO),
        b().ready_timeout(Duration::from_secs(2)),
        DockerClusterConfig::builder(DockerAddress::Tcp(String::new())),
    ] {
        assert!(bad.build().is_err());
    }
    b().stop_timeout(Duration::ZERO).settle(Duration::ZERO).build().unwrap();
}

#[test]
fn the_container_plan() {
    let c = cluster();
    let spec = ClusterSpec::builder("emqx/emqx-enterprise:5.10.0")
        .replicas(3, 2)
        .resources(Resources::new(500, 1024))
        .network(NetworkMode::NodePort)
        .api_key(ApiKey::new("ecp", SecretString::from("plan-secret-sentinel")).unwrap())
        .label("team", "iot")
        .build()
        .unwrap();
    let t = template_of(&spec, "c00kie".into()).unwrap();
    let body = node_body(&c, &t, Role::Replicant, 1);
    let r = c.resource_name();
    let env = body.env.clone().unwrap();
    for want in [
        format!("EMQX_NODE__NAME=emqx@{r}-replicant-1"),
        "EMQX_NODE__ROLE=replicant".to_owned(),
        "EMQX_NODE__COOKIE=c00kie".to_owned(),
        "EMQX_CLUSTER__DISCOVERY_STRATEGY=static".to_owned(),
        format!("EMQX_CLUSTER__STATIC__SEEDS=[\"emqx@{r}-core-0\",\"emqx@{r}-core-1\",\"emqx@{r}-core-2\"]"),
        "EMQX_DASHBOARD__LISTENERS__HTTP__BIND=18083".to_owned(),
        "EMQX_LISTENERS__TCP__DEFAULT__BIND=0.0.0.0:1883".to_owned(),
        "EMQX_LISTENERS__WSS__DEFAULT__BIND=0.0.0.0:8084".to_owned(),
        format!("EMQX_API_KEY__BOOTSTRAP_FILE={FILES_DIR}/{API_KEYS_FILE}"),
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    assert!(!format!("{body:?}").contains("sentinel"), "the API secret must not be in the container's config");
    let host = body.host_config.clone().unwrap();
    assert_eq!((host.nano_cpus, host.memory), (Some(500_000_000), Some(1024 * 1024 * 1024)));
    assert_eq!(host.network_mode.as_deref(), Some(r.as_str()));
    assert_eq!(host.port_bindings.as_ref().unwrap().len(), 5);
    let labels = body.labels.clone().unwrap();
    assert_eq!((labels[LABEL_ROLE].as_str(), labels[LABEL_INDEX].as_str(), labels["team"].as_str()), ("replicant", "1", "iot"));
    // The template reads back from what the engine would hold.
    let inspect = ContainerInspectResponse {
        config: Some(bollard::models::ContainerConfig {
            image: body.image.clone(),
            env: body.env.clone(),
            labels: body.labels.clone(),
            ..Default::default()
        }),
        host_config: body.host_config.clone(),
        ..Default::default()
    };
    let mut back = template_from(&inspect, 3).unwrap();
    back.listeners.sort();
    let mut t2 = t.clone();
    t2.listeners.sort();
    assert_eq!(back, t2);
    // Load balancers are not Docker's.
    let lb = ClusterSpec::builder("emqx:5").network(NetworkMode::LoadBalancer).build().unwrap();
    assert!(template_of(&lb, "c".into()).unwrap_err().is_unsupported());
}

#[test]
fn bootstrap_files_round_trip_through_tar() {
    let spec = ClusterSpec::builder("emqx:5")
        .api_key(ApiKey::new("ecp", SecretString::from("s3cret")).unwrap())
        .config("log.console.level = debug")
        .build()
        .unwrap();
    let files = files_of(&spec).unwrap().unwrap();
    let rooted = reroot(&files, FILES_DIR).unwrap();
    let mut names = Vec::new();
    for e in tar::Archive::new(rooted.as_ref()).entries().unwrap() {
        let mut e = e.unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut e, &mut body).unwrap();
        names.push((e.path().unwrap().to_string_lossy().into_owned(), body));
    }
    assert_eq!(
        names,
        vec![
            ("opt/emqx/etc/ecp_api_keys".to_owned(), "ecp:s3cret:administrator\n".to_owned()),
            ("opt/emqx/etc/base.hocon".to_owned(), "log.console.level = debug".to_owned()),
        ]
    );
    assert!(files_of(&ClusterSpec::builder("emqx:5").build().unwrap()).unwrap().is_none());
}
