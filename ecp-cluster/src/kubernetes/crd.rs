//! The EMQX Operator's `EMQX` custom resource, `apps.emqx.io/v2beta1`, typed after the Operator's
//! `apis/apps/v2beta1/emqx_types.go` and `status.go`.
//!
//! Every field but `spec.image` is optional and skipped when empty (the Go side is `omitempty`),
//! and fields this crate does not model are kept in `extra` maps, so an object read from the API
//! server and written back loses nothing. Status conditions are the Operator's own shape (strings
//! for times), parsed leniently: an odd timestamp never fails the whole object.
//!
//! The `scale` subresource of the CRD points its status path at `.status.replicantNodeReplicas`, a
//! field that does not exist; the driver never uses it and patches `spec` instead.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API group.
pub(crate) const GROUP: &str = "apps.emqx.io";
/// The API version.
pub(crate) const VERSION: &str = "v2beta1";
/// `apiVersion`.
pub(crate) const API_VERSION: &str = "apps.emqx.io/v2beta1";
/// The kind.
pub(crate) const KIND: &str = "EMQX";
/// The plural (the resource of the URL path).
pub(crate) const PLURAL: &str = "emqxes";

/// An `EMQX` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Emqx {
    /// `apps.emqx.io/v2beta1`.
    pub(crate) api_version: String,
    /// `EMQX`.
    pub(crate) kind: String,
    /// The object's metadata.
    #[serde(default)]
    pub(crate) metadata: ObjectMeta,
    /// The desired cluster.
    pub(crate) spec: EmqxSpec,
    /// What the Operator observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<EmqxStatus>,
}

impl Emqx {
    /// A new object named `name` with `spec`.
    pub(crate) fn new(name: &str, spec: EmqxSpec) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
            spec,
            status: None,
        }
    }
}

impl kube::Resource for Emqx {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(KIND)
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(GROUP)
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(VERSION)
    }

    fn api_version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(API_VERSION)
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(PLURAL)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// `spec` (only `image` is required).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmqxSpec {
    /// The EMQX image.
    pub(crate) image: String,
    /// `Always`, `Never`, `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) image_pull_policy: Option<String>,
    /// Pull secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// The service account of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) service_account_name: Option<String>,
    /// API keys bootstrapped into the nodes (cannot be updated).
    #[serde(rename = "bootstrapAPIKeys", default, skip_serializing_if = "Option::is_none")]
    pub(crate) bootstrap_api_keys: Option<Vec<BootstrapApiKey>>,
    /// HOCON configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) config: Option<EmqxConfig>,
    /// Default `cluster.local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cluster_domain: Option<String>,
    /// Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revision_history_limit: Option<i32>,
    /// The blue-green update strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) update_strategy: Option<UpdateStrategy>,
    /// The core nodes (a StatefulSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) core_template: Option<NodeTemplate>,
    /// The replicant nodes (a ReplicaSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) replicant_template: Option<NodeTemplate>,
    /// The dashboard Service (18083, selects the core nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dashboard_service_template: Option<ServiceTemplate>,
    /// The listeners Service (selects the replicants if any, else the cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listeners_service_template: Option<ServiceTemplate>,
    /// Fields not modelled here, kept as they were.
    #[serde(flatten)]
    pub(crate) extra: BTreeMap<String, Value>,
}

/// One of `bootstrapAPIKeys`: inline (`key`, `secret`) or by reference (`secretRef`). This crate
/// only writes references; an inline secret read back is redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BootstrapApiKey {
    /// The key, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    /// The secret, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<String>,
    /// Both from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_ref: Option<BootstrapSecretRef>,
}

impl fmt::Debug for BootstrapApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapApiKey")
            .field("key", &self.key)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("secret_ref", &self.secret_ref)
            .finish()
    }
}

/// `secretRef` of a bootstrap API key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BootstrapSecretRef {
    /// Where the key is.
    pub(crate) key: SecretKeyRef,
    /// Where the secret is.
    pub(crate) secret: SecretKeyRef,
}

/// An entry of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretKeyRef {
    /// The Secret's name.
    pub(crate) secret_name: String,
    /// The entry.
    pub(crate) secret_key: String,
}

/// `config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EmqxConfig {
    /// `Merge` (default) or `Replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<String>,
    /// HOCON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<String>,
}

/// `updateStrategy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateStrategy {
    /// `Recreate`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub(crate) type_: Option<String>,
    /// Seconds before evacuation starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) initial_delay_seconds: Option<i32>,
    /// How connections and sessions are evacuated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) evacuation_strategy: Option<EvacuationStrategy>,
}

/// `updateStrategy.evacuationStrategy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EvacuationStrategy {
    /// Seconds to wait for the takeover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wait_takeover: Option<i32>,
    /// Connections evicted per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) conn_evict_rate: Option<i32>,
    /// Sessions evicted per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sess_evict_rate: Option<i32>,
}

/// `coreTemplate` / `replicantTemplate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct NodeTemplate {
    /// Metadata of the pods' owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<ObjectMeta>,
    /// The pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spec: Option<NodeSpec>,
}

/// The spec of a node template: the fields the driver sets, the rest kept as they were.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeSpec {
    /// Pods wanted (core default 1 or 2 by Operator version, replicant default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) replicas: Option<i32>,
    /// CPU and memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resources: Option<ResourceRequirements>,
    /// Everything else (`minAvailable`, `nodeSelector`, probes, `volumeClaimTemplates` ...).
    #[serde(flatten)]
    pub(crate) extra: BTreeMap<String, Value>,
}

/// `dashboardServiceTemplate` / `listenersServiceTemplate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServiceTemplate {
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) enabled: Option<bool>,
    /// The Service's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<ObjectMeta>,
    /// The Service's spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spec: Option<ServiceSpec>,
}

/// `status` (every field `omitempty`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmqxStatus {
    /// Conditions, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) conditions: Vec<EmqxCondition>,
    /// The core nodes as EMQX reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) core_nodes: Vec<EmqxNode>,
    /// The core StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) core_nodes_status: Option<EmqxNodesStatus>,
    /// The replicant nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) replicant_nodes: Vec<EmqxNode>,
    /// The replicant ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) replicant_nodes_status: Option<EmqxNodesStatus>,
    /// Node evacuations of a blue-green update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) node_evacuations_status: Vec<NodeEvacuationStatus>,
    /// Fields not modelled here.
    #[serde(flatten)]
    pub(crate) extra: BTreeMap<String, Value>,
}

/// A status condition (`metav1.Condition`; times kept as strings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmqxCondition {
    /// `Initialized`, `CoreNodesProgressing`, `CoreNodesReady`, `ReplicantNodesProgressing`,
    /// `ReplicantNodesReady`, `Available`, `Ready`.
    #[serde(rename = "type")]
    pub(crate) type_: String,
    /// `True`, `False`, `Unknown`.
    pub(crate) status: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Said for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_transition_time: Option<String>,
    /// Older Operators also set this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_update_time: Option<String>,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) observed_generation: Option<i64>,
}

impl EmqxCondition {
    /// Whether `status` is `True`.
    pub(crate) fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// A node as EMQX's `/api/v5/nodes` reports it, copied by the Operator (snake_case keys, but
/// `podUID` and `controllerUID`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EmqxNode {
    /// `emqx@host`.
    #[serde(default)]
    pub(crate) node: String,
    /// Lowercase `running` (or `stopped`).
    #[serde(default)]
    pub(crate) node_status: String,
    /// The OTP release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) otp_release: Option<String>,
    /// `core` or `replicant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<String>,
    /// The EMQX version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    /// `Opensource` or `Enterprise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) edition: Option<String>,
    /// Sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) connections: Option<i64>,
    /// Connected clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) live_connections: Option<i64>,
    /// The pod's UID.
    #[serde(rename = "podUID", default, skip_serializing_if = "Option::is_none")]
    pub(crate) pod_uid: Option<String>,
    /// The owning StatefulSet's or ReplicaSet's UID.
    #[serde(rename = "controllerUID", default, skip_serializing_if = "Option::is_none")]
    pub(crate) controller_uid: Option<String>,
    /// Fields not modelled here.
    #[serde(flatten)]
    pub(crate) extra: BTreeMap<String, Value>,
}

/// `coreNodesStatus` / `replicantNodesStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmqxNodesStatus {
    /// Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) replicas: Option<i32>,
    /// Ready pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ready_replicas: Option<i32>,
    /// The revision running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_revision: Option<String>,
    /// Pods of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_replicas: Option<i32>,
    /// The revision rolling out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) update_revision: Option<String>,
    /// Pods of the update revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) update_replicas: Option<i32>,
    /// Hash collisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) collision_count: Option<i32>,
}

/// One of `nodeEvacuationsStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct NodeEvacuationStatus {
    /// The node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
    /// Its evacuation state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<String>,
    /// Sessions to reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) session_goal: Option<i64>,
    /// Connections to reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) connection_goal: Option<i64>,
    /// Where sessions go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) session_recipients: Option<Vec<String>>,
    /// Counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stats: Option<EvacuationStats>,
}

/// `nodeEvacuationsStatus[].stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EvacuationStats {
    /// Sessions at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) initial_sessions: Option<i64>,
    /// Connected clients at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) initial_connected: Option<i64>,
    /// Sessions now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_sessions: Option<i64>,
    /// Connected clients now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_connected: Option<i64>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The minimal resource of api-contracts.md §2 (after the Operator's `emqx-slim.yaml`), as JSON,
    /// with the status of §2 (real timestamps in place of the elisions).
    pub(crate) const SLIM_WITH_STATUS: &str = r#"{
      "apiVersion": "apps.emqx.io/v2beta1",
      "kind": "EMQX",
      "metadata": {"name": "emqx", "namespace": "default"},
      "spec": {
        "image": "emqx/emqx-enterprise:5.10.0",
        "bootstrapAPIKeys": [{"key": "ecp", "secret": "ecp-secret-123"}],
        "config": {"data": "dashboard.listeners.http.bind = 18083"},
        "coreTemplate": {"spec": {"replicas": 2, "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}},
        "replicantTemplate": {"spec": {"replicas": 3}},
        "listenersServiceTemplate": {"spec": {"type": "LoadBalancer"}}
      },
      "status": {
        "conditions": [
          {"type": "Ready", "status": "True", "reason": "Ready", "message": "Cluster is ready", "lastTransitionTime": "2025-06-01T10:00:05Z"},
          {"type": "Available", "status": "True", "reason": "Available", "message": "Cluster is available", "lastTransitionTime": "2025-06-01T10:00:04Z"},
          {"type": "CoreNodesReady", "status": "True", "reason": "CoreNodesReady", "message": "Core nodes is ready", "lastTransitionTime": "2025-06-01T10:00:03Z"}
        ],
        "coreNodes": [{"node": "emqx@emqx-core-0.emqx-headless.default.svc.cluster.local", "node_status": "running",
          "otp_release": "27.2-3/15.2", "role": "core", "version": "5.10.0", "edition": "Enterprise", "connections": 0,
          "live_connections": 0, "podUID": "5d0c6a43-8a8c-4b8e-9d84-0e2b6a7c1f00", "controllerUID": "0b1f3a57-2d43-4a4e-9a5e-4f0c3a2d9e11"}],
        "coreNodesStatus": {"replicas": 2, "readyReplicas": 2, "currentRevision": "7494d76574", "currentReplicas": 2,
          "updateRevision": "7494d76574", "updateReplicas": 2, "collisionCount": 0},
        "replicantNodes": [{"node": "emqx@10.244.4.56", "node_status": "running", "role": "replicant", "version": "5.10.0"}],
        "replicantNodesStatus": {"replicas": 3, "readyReplicas": 3},
        "nodeEvacuationsStatus": [{"node": "emqx@10.244.4.56", "state": "prohibiting", "session_goal": 0, "connection_goal": 0,
          "session_recipients": [], "stats": {"initial_sessions": 0, "initial_connected": 0, "current_sessions": 0, "current_connected": 0}}]
      }
    }"#;

    #[test]
    fn the_contract_fixture_round_trips() {
        let v: Value = serde_json::from_str(SLIM_WITH_STATUS).unwrap();
        let e: Emqx = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(e.spec.image, "emqx/emqx-enterprise:5.10.0");
        let core = e.spec.core_template.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(core.replicas, Some(2));
        let req = core.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["cpu"].0, "250m");
        assert_eq!(req["memory"].0, "512Mi");
        let ls = e.spec.listeners_service_template.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(ls.type_.as_deref(), Some("LoadBalancer"));
        let st = e.status.as_ref().unwrap();
        assert_eq!(st.conditions[0].type_, "Ready");
        assert!(st.conditions[0].is_true());
        assert_eq!(st.core_nodes[0].node_status, "running");
        assert_eq!(st.core_nodes[0].pod_uid.as_deref(), Some("5d0c6a43-8a8c-4b8e-9d84-0e2b6a7c1f00"));
        assert_eq!(st.core_nodes_status.as_ref().unwrap().update_revision.as_deref(), Some("7494d76574"));
        assert_eq!(st.replicant_nodes_status.as_ref().unwrap().ready_replicas, Some(3));
        assert_eq!(st.node_evacuations_status[0].stats.as_ref().unwrap().current_connected, Some(0));
        // Back to JSON: exactly what came in.
        assert_eq!(serde_json::to_value(&e).unwrap(), v);
    }

    #[test]
    fn secret_refs_and_unknown_fields_survive_and_inline_secrets_are_redacted() {
        let v = serde_json::json!({
            "apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX",
            "metadata": {"name": "x", "resourceVersion": "42", "annotations": {"a": "b"}},
            "spec": {
                "image": "emqx:5.8.1",
                "imagePullPolicy": "IfNotPresent",
                "bootstrapAPIKeys": [
                    {"secretRef": {"key": {"secretName": "s", "secretKey": "key"}, "secret": {"secretName": "s", "secretKey": "secret"}}},
                    {"key": "inline", "secret": "sentinel-inline-secret"}
                ],
                "config": {"mode": "Replace", "data": "a = 1"},
                "clusterDomain": "cluster.local",
                "revisionHistoryLimit": 3,
                "updateStrategy": {"type": "Recreate", "initialDelaySeconds": 10,
                    "evacuationStrategy": {"waitTakeover": 10, "connEvictRate": 1000, "sessEvictRate": 1000}},
                "coreTemplate": {"metadata": {"labels": {"l": "v"}}, "spec": {"replicas": 1, "minAvailable": 1,
                    "volumeClaimTemplates": {"resources": {"requests": {"storage": "20Mi"}}, "accessModes": ["ReadWriteOnce"]},
                    "readinessProbe": {"httpGet": {"path": "/status", "port": "dashboard"}}}},
                "dashboardServiceTemplate": {"enabled": false, "spec": {"type": "NodePort",
                    "ports": [{"name": "dashboard", "port": 18083, "protocol": "TCP", "targetPort": 18083, "nodePort": 31083}]}},
                "someFutureField": {"x": [1, 2]}
            },
            "status": {"conditions": [{"type": "Initialized", "status": "True", "reason": "Initialized",
                "message": "initialized EMQX cluster", "lastTransitionTime": "not a time", "observedGeneration": 1}],
                "somethingNew": true}
        });
        let e: Emqx = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&e).unwrap(), v);
        let keys = e.spec.bootstrap_api_keys.as_ref().unwrap();
        assert_eq!(keys[0].secret_ref.as_ref().unwrap().secret.secret_key, "secret");
        assert!(!format!("{e:?}").contains("sentinel-inline-secret"));
        assert_eq!(e.spec.core_template.unwrap().spec.unwrap().extra["minAvailable"], 1);
    }

    #[test]
    fn an_object_without_status_or_with_an_empty_one_parses() {
        let e: Emqx = serde_json::from_str(
            r#"{"apiVersion":"apps.emqx.io/v2beta1","kind":"EMQX","metadata":{},"spec":{"image":"emqx:5"},"status":{}}"#,
        )
        .unwrap();
        assert_eq!(e.status, Some(EmqxStatus::default()));
        assert!(serde_json::from_str::<Emqx>(r#"{"apiVersion":"apps.emqx.io/v2beta1","kind":"EMQX","spec":{}}"#).is_err());
    }

    #[test]
    fn the_url_path_is_the_operators() {
        use kube::Resource;
        assert_eq!(Emqx::url_path(&(), Some("ns")), "/apis/apps.emqx.io/v2beta1/namespaces/ns/emqxes");
    }
}
