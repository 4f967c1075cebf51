//! The pure translations between a [`HostedSpec`] and the Engine API: an instance's labels and
//! create body, and the spec, endpoint and status read back from the container.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use ecp_core::edge::EdgeService;

use super::{Found, LABEL_NODE};
use crate::hosted::{
    HostedInstance, HostedSpec, HostedStatus, LABEL_ARGS, LABEL_ENV_KEYS, LABEL_MANAGED_BY, LABEL_NAME, LABEL_NETWORK, LABEL_PORT,
    LABEL_PROJECT, LABEL_PUBLISH, LABEL_SERVICE, MANAGED_BY, RestartPolicy, RunState,
};

/// The labels of a service's instance (pure).
pub(crate) fn labels_for(service: &EdgeService, spec: &HostedSpec, node: &str, name: &str) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_PROJECT.to_owned(), service.project().to_string()),
        (LABEL_SERVICE.to_owned(), service.id().to_string()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_NAME.to_owned(), name.to_owned()),
        (LABEL_NODE.to_owned(), node.to_owned()),
        (LABEL_PORT.to_owned(), spec.port.to_string()),
        (LABEL_ENV_KEYS.to_owned(), spec.env.keys().cloned().collect::<Vec<_>>().join(",")),
    ]);
    if let Some(n) = &spec.network {
        labels.insert(LABEL_NETWORK.to_owned(), n.clone());
    }
    if let Some(a) = &spec.args {
        labels.insert(LABEL_ARGS.to_owned(), serde_json::to_string(a).unwrap_or_default());
    }
    if let Some(p) = spec.publish {
        labels.insert(LABEL_PUBLISH.to_owned(), p.to_string());
    }
    if spec.scheme == "https" {
        labels.insert("io.ecp.scheme".to_owned(), "https".to_owned());
    }
    labels
}

/// The Engine API body that creates a service's instance (pure).
pub(crate) fn create_body(service: &EdgeService, spec: &HostedSpec, node: &str, name: &str) -> ContainerCreateBody {
    let port_key = format!("{}/tcp", spec.port);
    let restart = match spec.restart {
        RestartPolicy::No => DockerRestart { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None },
        RestartPolicy::Always => DockerRestart { name: Some(RestartPolicyNameEnum::ALWAYS), maximum_retry_count: None },
        RestartPolicy::UnlessStopped => DockerRestart { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None },
        RestartPolicy::OnFailure { max_retries } => {
            DockerRestart { name: Some(RestartPolicyNameEnum::ON_FAILURE), maximum_retry_count: Some(i64::from(max_retries)) }
        }
    };
    let port_bindings = spec
        .publish
        .map(|p| HashMap::from([(port_key.clone(), Some(vec![PortBinding { host_ip: None, host_port: Some(p.to_string()) }]))]));
    let networking_config = spec
        .network
        .as_ref()
        .map(|n| NetworkingConfig { endpoints_config: Some(HashMap::from([(n.clone(), EndpointSettings::default())])) });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: spec.args.clone(),
        labels: Some(labels_for(service, spec, node, name)),
        exposed_ports: Some(vec![port_key]),
        host_config: Some(HostConfig {
            restart_policy: Some(restart),
            port_bindings,
            network_mode: spec.network.clone(),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

/// The spec an instance runs with, from its labels and config (pure; the inverse of
/// [`create_body`] for what the spec set).
pub(super) fn spec_of(found: &Found, inspect: &ContainerInspectResponse) -> HostedSpec {
    let config = inspect.config.clone().unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let env_keys: Vec<&str> = labels.get(LABEL_ENV_KEYS).map(|k| k.split(',').filter(|k| !k.is_empty()).collect()).unwrap_or_default();
    let env = config
        .env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .filter(|(k, _)| env_keys.contains(&k.as_str()))
        .collect();
    let restart = inspect.host_config.as_ref().and_then(|h| h.restart_policy.clone()).unwrap_or_default();
    let restart = match restart.name {
        Some(RestartPolicyNameEnum::ALWAYS) => RestartPolicy::Always,
        Some(RestartPolicyNameEnum::UNLESS_STOPPED) => RestartPolicy::UnlessStopped,
        Some(RestartPolicyNameEnum::ON_FAILURE) => {
            RestartPolicy::OnFailure { max_retries: u32::try_from(restart.maximum_retry_count.unwrap_or(0)).unwrap_or(0) }
        }
        _ => RestartPolicy::No,
    };
    HostedSpec {
        image: config.image.unwrap_or_default(),
        port: labels.get(LABEL_PORT).and_then(|p| p.parse().ok()).unwrap_or(80),
        scheme: labels.get("io.ecp.scheme").cloned().unwrap_or_else(|| "http".into()),
        env,
        args: labels.get(LABEL_ARGS).and_then(|a| serde_json::from_str(a).ok()),
        restart,
        network: labels.get(LABEL_NETWORK).cloned(),
        publish: labels.get(LABEL_PUBLISH).and_then(|p| p.parse().ok()),
        node: Some(found.node.clone()),
        container_name: Some(found.final_name.clone()),
    }
}

/// `<scheme>://<ip>:<port>` on `network` (else the first network with an address), while the
/// container has an address (pure).
pub(super) fn endpoint_of(inspect: &ContainerInspectResponse, network: Option<&str>, scheme: &str, port: u16) -> Option<String> {
    let networks = inspect.network_settings.as_ref()?.networks.as_ref()?;
    let ip = match network {
        Some(n) => networks.get(n).and_then(|e| e.ip_address.clone()),
        None => {
            let mut names: Vec<&String> = networks.keys().collect();
            names.sort();
            names.into_iter().find_map(|n| networks[n].ip_address.clone().filter(|ip| !ip.is_empty()))
        }
    }
    .filter(|ip| !ip.is_empty())?;
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
    Some(format!("{scheme}://{host}:{port}"))
}

pub(super) fn status_of(found: &Found, inspect: &ContainerInspectResponse) -> HostedStatus {
    let config = inspect.config.clone().unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let port = labels.get(LABEL_PORT).and_then(|p| p.parse().ok()).unwrap_or(80);
    let scheme = labels.get("io.ecp.scheme").map(String::as_str).unwrap_or("http");
    let state = inspect.state.clone().unwrap_or_default();
    let run = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => RunState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => RunState::Running,
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::REMOVING) => RunState::Removing,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        _ => RunState::Unknown,
    };
    HostedStatus {
        instance: HostedInstance {
            node: found.node.clone(),
            container_id: found.id.clone(),
            name: inspect.name.as_deref().map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_else(|| found.name.clone()),
            image: config.image.unwrap_or_default(),
            endpoint: endpoint_of(inspect, labels.get(LABEL_NETWORK).map(String::as_str), scheme, port),
        },
        state: run,
        exit_code: state.exit_code,
        restart_count: u64::try_from(inspect.restart_count.unwrap_or(0)).unwrap_or(0),
    }
}
