//! The `kubernetes` driver against a scripted API server (`tower_test::mock`): every request the
//! driver sends is checked (method, path, query, content type, body), and every answer is shaped
//! like the API server's, with the EMQX Operator's status (api-contracts.md §2) and Kubernetes
//! `Status` objects for errors.

use std::sync::Arc;
use std::time::Duration;

use ecp_cluster::kubernetes::{ANNOTATION_STOPPED, LABEL_CLUSTER, LABEL_PROJECT};
use ecp_cluster::{
    ApiKey, ClusterDriver, ClusterRef, ClusterSpec, ClusterStatus, Error, KubernetesConfig, KubernetesDriver, Listener, ListenerProtocol,
    NetworkMode, Resources,
};
use ecp_core::{ClusterId, ManualClock, ProjectId, Timestamp};
use http::Response;
use kube::client::Body;
use secrecy::SecretString;
use serde_json::{Value, json};

const NS: &str = "emqx";
const SENTINEL: &str = "sentinel-8c1f-secret";

use ecp_testkit::kube::{Handle, Reply, Seen, fixed, serve};

fn echo_created() -> Reply {
    ecp_testkit::kube::echo_created(NS)
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    ecp_testkit::kube::status(code, reason, message, "apps.emqx.io", "emqxes")
}

struct Fixture {
    driver: KubernetesDriver,
    handle: Option<Handle>,
    clock: ManualClock,
    cluster: ClusterRef,
}

impl Fixture {
    fn new() -> Self {
        let (svc, handle) = ecp_testkit::kube::pair();
        let client = kube::Client::new(svc, "default");
        let clock = ManualClock::new("2025-06-01T10:01:00Z".parse().unwrap());
        let config = KubernetesConfig::builder()
            .namespace(NS)
            .progress_deadline(Duration::from_secs(600))
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let cluster = ClusterRef::new(ClusterId::new(), ProjectId::new(), "prod");
        Self { driver: KubernetesDriver::from_client(client, config), handle: Some(handle), clock, cluster }
    }

    /// A fresh scripted server for the same cluster and config.
    fn rearm(&mut self) {
        let (svc, handle) = ecp_testkit::kube::pair();
        self.driver = KubernetesDriver::from_client(kube::Client::new(svc, "default"), self.driver.config().clone());
        self.handle = Some(handle);
    }

    fn name(&self) -> String {
        self.cluster.resource_name()
    }

    fn emqx_path(&self) -> String {
        format!("/apis/apps.emqx.io/v2beta1/namespaces/{NS}/emqxes/{}", self.name())
    }

    fn secret_path(&self) -> String {
        format!("/api/v1/namespaces/{NS}/secrets/{}-ecp-api-key", self.name())
    }

    /// Runs `op` against `replies`; the server stops after the last reply, and every reply must
    /// have been asked for.
    async fn run<T>(&mut self, replies: Vec<Reply>, op: impl AsyncFnOnce(&KubernetesDriver, &ClusterRef) -> T) -> (T, Vec<Seen>) {
        let handle = self.handle.take().expect("one run per fixture");
        let n = replies.len();
        let server = tokio::spawn(serve(handle, replies));
        let out = op(&self.driver, &self.cluster).await;
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), n, "the driver sent {} requests, the script has {n}: {seen:#?}", seen.len());
        (out, seen)
    }

    /// The resource as the API server returns it: the contract's object, renamed and labelled for
    /// this cluster, with `status` and `generation`.
    fn object(&self, generation: i64, status: Value) -> Value {
        json!({
            "apiVersion": "apps.emqx.io/v2beta1", "kind": "EMQX",
            "metadata": {"name": self.name(), "namespace": NS, "uid": "6f1d2c3b-0000-4000-8000-000000000001",
                "resourceVersion": "2002", "generation": generation, "creationTimestamp": "2025-06-01T09:59:00Z",
                "labels": {LABEL_PROJECT: self.cluster.project.to_string(), LABEL_CLUSTER: self.cluster.id.to_string()}},
            "spec": {
                "image": "emqx/emqx-enterprise:5.10.0",
                "config": {"mode": "Merge", "data": "dashboard.listeners.http.bind = 18083"},
                "clusterDomain": "cluster.local", "revisionHistoryLimit": 3,
                "updateStrategy": {"type": "Recreate", "initialDelaySeconds": 10,
                    "evacuationStrategy": {"waitTakeover": 10, "connEvictRate": 1000, "sessEvictRate": 1000}},
                "coreTemplate": {"spec": {"replicas": 2, "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}},
                "replicantTemplate": {"spec": {"replicas": 3}},
                "listenersServiceTemplate": {"enabled": true, "spec": {"type": "LoadBalancer"}},
                "dashboardServiceTemplate": {"enabled": true, "spec": {"type": "ClusterIP"}}
            },
            "status": status
        })
    }
}

fn cond(t: &str, status: &str, time: &str, message: &str) -> Value {
    json!({"type": t, "status": status, "reason": t, "message": message, "lastTransitionTime": time})
}

/// The contract's status of a ready cluster (§2).
fn ready_status() -> Value {
    json!({
        "conditions": [
            cond("Ready", "True", "2025-06-01T10:00:05Z", "Cluster is ready"),
            cond("Available", "True", "2025-06-01T10:00:04Z", "Cluster is available"),
            cond("CoreNodesReady", "True", "2025-06-01T10:00:03Z", "Core nodes is ready")
        ],
        "coreNodes": [{"node": "emqx@emqx-core-0.emqx-headless.emqx.svc.cluster.local", "node_status": "running",
            "otp_release": "27.2-3/15.2", "role": "core", "version": "5.10.0", "edition": "Enterprise", "connections": 0,
            "live_connections": 0, "podUID": "5d0c6a43-8a8c-4b8e-9d84-0e2b6a7c1f00", "controllerUID": "0b1f3a57-2d43-4a4e-9a5e-4f0c3a2d9e11"}],
        "coreNodesStatus": {"replicas": 2, "readyReplicas": 2, "currentRevision": "7494d76574", "currentReplicas": 2,
            "updateRevision": "7494d76574", "updateReplicas": 2, "collisionCount": 0},
        "replicantNodes": [{"node": "emqx@10.244.4.56", "node_status": "running", "role": "replicant", "version": "5.10.0"}],
        "replicantNodesStatus": {"replicas": 3, "readyReplicas": 3}
    })
}

fn spec_with_key() -> ClusterSpec {
    ClusterSpec::builder("emqx/emqx-enterprise:5.10.0")
        .replicas(2, 3)
        .resources(Resources::new(250, 512))
        .network(NetworkMode::NodePort)
        .api_key(ApiKey::new("ecp", SecretString::from(SENTINEL)).unwrap())
        .label("team", "iot")
        .build()
        .unwrap()
}

fn merge_patch(seen: &Seen, path: &str) {
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.path, path);
    assert_eq!(seen.content_type.as_deref(), Some("application/merge-patch+json"));
    assert!(seen.query.contains("fieldManager=ecp"), "{}", seen.query);
}

fn backend_status(e: &Error) -> (&str, Option<u16>) {
    match e {
        Error::Hosting(h) => (h.operation(), h.status()),
        other => panic!("not a backend error: {other:?}"),
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{e} / {e:?}");
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(" / {s} / {s:?}"));
        cur = s.source();
    }
    out
}

#[tokio::test]
async fn create_posts_the_secret_then_the_resource_referencing_it() {
    let mut f = Fixture::new();
    let spec = spec_with_key();
    let (out, seen) = f.run(vec![echo_created(), echo_created()], async |d, c| d.create(c, &spec).await).await;
    out.unwrap();
    assert_eq!(seen.len(), 2);

    let secret = &seen[0];
    assert_eq!(secret.method, "POST");
    assert_eq!(secret.path, format!("/api/v1/namespaces/{NS}/secrets"));
    assert!(secret.query.contains("fieldManager=ecp"));
    assert_eq!(secret.content_type.as_deref(), Some("application/json"));
    assert_eq!(secret.body["kind"], "Secret");
    assert_eq!(secret.body["metadata"]["name"], format!("{}-ecp-api-key", f.name()));
    assert_eq!(secret.body["stringData"], json!({"key": "ecp", "secret": SENTINEL}));
    assert_eq!(secret.body["metadata"]["labels"][LABEL_CLUSTER], f.cluster.id.to_string());

    let cr = &seen[1];
    assert_eq!(cr.method, "POST");
    assert_eq!(cr.path, format!("/apis/apps.emqx.io/v2beta1/namespaces/{NS}/emqxes"));
    let b = &cr.body;
    assert!(!b.to_string().contains(SENTINEL), "the secret is never inline in the resource");
    assert_eq!(b["apiVersion"], "apps.emqx.io/v2beta1");
    assert_eq!(b["kind"], "EMQX");
    assert_eq!(b["metadata"]["name"], f.name());
    assert_eq!(b["metadata"]["labels"][LABEL_PROJECT], f.cluster.project.to_string());
    assert_eq!(b["metadata"]["labels"][LABEL_CLUSTER], f.cluster.id.to_string());
    assert_eq!(b["metadata"]["labels"]["team"], "iot");
    assert_eq!(b["spec"]["image"], "emqx/emqx-enterprise:5.10.0");
    assert_eq!(b["spec"]["coreTemplate"]["spec"]["replicas"], 2);
    assert_eq!(b["spec"]["replicantTemplate"]["spec"]["replicas"], 3);
    let q = json!({"cpu": "250m", "memory": "512Mi"});
    assert_eq!(b["spec"]["coreTemplate"]["spec"]["resources"], json!({"requests": q, "limits": q}));
    assert_eq!(b["spec"]["replicantTemplate"]["spec"]["resources"], json!({"requests": q, "limits": q}));
    assert_eq!(b["spec"]["coreTemplate"]["metadata"]["labels"][LABEL_CLUSTER], f.cluster.id.to_string());
    let listeners = &b["spec"]["listenersServiceTemplate"];
    assert_eq!(listeners["enabled"], true);
    assert_eq!(listeners["spec"]["type"], "NodePort");
    let names: Vec<&str> = listeners["spec"]["ports"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tcp-default", "ssl-default", "ws-default", "wss-default"]);
    assert_eq!(listeners["spec"]["ports"][0], json!({"name": "tcp-default", "port": 1883, "protocol": "TCP", "targetPort": 1883}));
    assert_eq!(b["spec"]["dashboardServiceTemplate"]["spec"]["type"], "NodePort");
    assert_eq!(b["spec"]["dashboardServiceTemplate"]["spec"]["ports"][0]["port"], 18083);
    let name = format!("{}-ecp-api-key", f.name());
    assert_eq!(
        b["spec"]["bootstrapAPIKeys"],
        json!([{"secretRef": {"key": {"secretName": name, "secretKey": "key"}, "secret": {"secretName": name, "secretKey": "secret"}}}])
    );
    assert_eq!(b["spec"]["config"]["mode"], "Merge");
    assert!(b["spec"]["config"]["data"].as_str().unwrap().contains("dashboard.listeners.http.bind = 18083"));
    assert!(b.get("status").is_none());
}

#[tokio::test]
async fn create_again_with_the_same_spec_converges_and_with_another_conflicts() {
    // First create, to learn the exact objects the server would hold.
    let mut first = Fixture::new();
    let spec = spec_with_key();
    let (out, seen) = first.run(vec![echo_created(), echo_created()], async |d, c| d.create(c, &spec).await).await;
    out.unwrap();
    let mut stored = echo_created()(&seen[1].body).1;
    // The API server applies the CRD's defaults.
    stored["spec"]["clusterDomain"] = json!("cluster.local");
    stored["spec"]["updateStrategy"] = json!({"type": "Recreate", "initialDelaySeconds": 10});
    stored["status"] = ready_status();
    let secret_data = json!({
        "key": serde_json::to_value(k8s_openapi::ByteString(b"ecp".to_vec())).unwrap(),
        "secret": serde_json::to_value(k8s_openapi::ByteString(SENTINEL.as_bytes().to_vec())).unwrap(),
    });
    let stored_secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": format!("{}-ecp-api-key", first.name()), "namespace": NS, "resourceVersion": "1000"}, "data": secret_data});

    // Same cluster, same spec: 409 on both, read back, accepted.
    let mut again = first;
    again.rearm();
    let name = again.name();
    let exists = move |what: &str| status(409, "AlreadyExists", &format!("{what} \"{name}\" already exists"));
    let replies = vec![
        fixed(409, exists("secrets")),
        fixed(200, stored_secret.clone()),
        fixed(409, exists("emqxes.apps.emqx.io")),
        fixed(200, stored.clone()),
    ];
    let (out, seen) = again.run(replies, async |d, c| d.create(c, &spec).await).await;
    out.unwrap();
    assert_eq!(seen.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(), ["POST", "GET", "POST", "GET"]);
    assert_eq!(seen[1].path, again.secret_path());
    assert_eq!(seen[3].path, again.emqx_path());

    // Same name, another image: a conflict, not a silent success.
    again.rearm();
    let mut other = stored.clone();
    other["spec"]["image"] = json!("emqx/emqx-enterprise:5.8.9");
    let replies =
        vec![fixed(409, exists("secrets")), fixed(200, stored_secret), fixed(409, exists("emqxes.apps.emqx.io")), fixed(200, other)];
    let (out, _) = again.run(replies, async |d, c| d.create(c, &spec).await).await;
    let err = out.unwrap_err();
    assert!(matches!(&err, Error::Core(c) if c.is_conflict()), "{err:?}");
}

#[tokio::test]
async fn scale_patches_the_spec_not_the_scale_subresource() {
    let mut f = Fixture::new();
    let current = f.object(1, ready_status());
    let mut after = current.clone();
    after["spec"]["coreTemplate"]["spec"]["replicas"] = json!(3);
    after["spec"]["replicantTemplate"]["spec"]["replicas"] = json!(5);
    let (out, seen) = f.run(vec![fixed(200, current), fixed(200, after)], async |d, c| d.scale(c, 3, 5).await).await;
    out.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", f.emqx_path().as_str()));
    merge_patch(&seen[1], &f.emqx_path());
    assert!(!seen[1].path.ends_with("/scale"));
    assert_eq!(seen[1].body, json!({"spec": {"coreTemplate": {"spec": {"replicas": 3}}, "replicantTemplate": {"spec": {"replicas": 5}}}}));
}

#[tokio::test]
async fn scaling_a_stopped_cluster_changes_what_start_restores() {
    let mut f = Fixture::new();
    let mut stopped = f.object(3, json!({}));
    stopped["metadata"]["annotations"] = json!({ANNOTATION_STOPPED: "{\"core\":2,\"replicant\":3}"});
    stopped["spec"]["coreTemplate"]["spec"]["replicas"] = json!(0);
    stopped["spec"]["replicantTemplate"]["spec"]["replicas"] = json!(0);
    let (out, seen) = f.run(vec![fixed(200, stopped.clone()), fixed(200, stopped)], async |d, c| d.scale(c, 4, 1).await).await;
    out.unwrap();
    merge_patch(&seen[1], &f.emqx_path());
    assert_eq!(seen[1].body["metadata"]["annotations"][ANNOTATION_STOPPED], "{\"core\":4,\"replicant\":1}");
    assert_eq!(seen[1].body["spec"]["coreTemplate"]["spec"]["replicas"], 0);
    assert_eq!(seen[1].body["metadata"]["resourceVersion"], "2002");
}

#[tokio::test]
async fn scale_to_zero_core_nodes_is_refused_before_any_request() {
    let mut f = Fixture::new();
    let (out, seen) = f.run(vec![], async |d, c| d.scale(c, 0, 2).await).await;
    assert!(matches!(out, Err(Error::Core(ref e)) if e.label() == "invalid_input"), "{out:?}");
    assert!(seen.is_empty());
}

#[tokio::test]
async fn resize_patches_requests_and_limits_of_both_templates() {
    let mut f = Fixture::new();
    let (out, seen) = f
        .run(vec![fixed(200, f.object(2, json!({})))], async |d, c| {
            d.resize(c, Resources { cpu_millis: Some(1000), memory_mib: None }).await
        })
        .await;
    out.unwrap();
    assert_eq!(seen.len(), 1);
    merge_patch(&seen[0], &f.emqx_path());
    let q = json!({"cpu": "1000m", "memory": null});
    let r = json!({"requests": q, "limits": q});
    assert_eq!(
        seen[0].body,
        json!({"spec": {"coreTemplate": {"spec": {"resources": r}}, "replicantTemplate": {"spec": {"resources": r}}}})
    );
}

#[tokio::test]
async fn network_mode_changes_patch_both_service_templates() {
    let mut f = Fixture::new();
    let listeners = vec![Listener::default_for(ListenerProtocol::Tcp), Listener { protocol: ListenerProtocol::Wss, port: 443 }];
    let (out, seen) =
        f.run(vec![fixed(200, f.object(2, json!({})))], async |d, c| d.set_network(c, NetworkMode::LoadBalancer, &listeners).await).await;
    out.unwrap();
    merge_patch(&seen[0], &f.emqx_path());
    assert_eq!(
        seen[0].body,
        json!({"spec": {
            "listenersServiceTemplate": {"enabled": true, "spec": {"type": "LoadBalancer", "ports": [
                {"name": "tcp-default", "port": 1883, "protocol": "TCP", "targetPort": 1883},
                {"name": "wss-default", "port": 443, "protocol": "TCP", "targetPort": 443}]}},
            "dashboardServiceTemplate": {"enabled": true, "spec": {"type": "LoadBalancer"}}
        }})
    );
}

#[tokio::test]
async fn upgrade_then_downgrade_by_image_and_the_states_in_between() {
    let mut f = Fixture::new();
    let t = "2025-06-01T10:00:30Z";
    let rolling = json!({
        "conditions": [cond("CoreNodesProgressing", "True", t, "Core nodes progressing"),
                       cond("Initialized", "True", "2025-06-01T09:59:01Z", "initialized EMQX cluster")],
        "coreNodesStatus": {"replicas": 2, "readyReplicas": 2, "currentRevision": "7494d76574", "updateRevision": "5fd8c4d9b6"},
        "nodeEvacuationsStatus": [{"node": "emqx@10.244.4.56", "state": "prohibiting", "session_goal": 0, "connection_goal": 0,
            "session_recipients": [], "stats": {"initial_sessions": 0, "initial_connected": 0, "current_sessions": 0, "current_connected": 0}}]
    });
    let mut upgraded = f.object(2, rolling);
    upgraded["spec"]["image"] = json!("emqx/emqx-enterprise:5.10.1");
    let mut ready = f.object(2, ready_status());
    ready["spec"]["image"] = json!("emqx/emqx-enterprise:5.10.1");
    ready["status"]["conditions"][0]["lastTransitionTime"] = json!("2025-06-01T10:02:00Z");
    let mut downgraded = f.object(3, json!({"conditions": [cond("ReplicantNodesProgressing", "True", t, "")]}));
    downgraded["spec"]["image"] = json!("emqx/emqx-enterprise:5.8.9");
    let replies =
        vec![fixed(200, upgraded.clone()), fixed(200, upgraded), fixed(200, ready), fixed(200, downgraded.clone()), fixed(200, downgraded)];
    let (out, seen) = f
        .run(replies, async |d, c| {
            d.set_image(c, "emqx/emqx-enterprise:5.10.1").await?;
            let during = d.state(c).await?;
            let after = d.state(c).await?;
            d.set_image(c, "emqx/emqx-enterprise:5.8.9").await?;
            let down = d.state(c).await?;
            Ok::<_, Error>((during, after, down))
        })
        .await;
    let (during, after, down) = out.unwrap();
    merge_patch(&seen[0], &f.emqx_path());
    assert_eq!(seen[0].body, json!({"spec": {"image": "emqx/emqx-enterprise:5.10.1"}}));
    assert_eq!(during.status, ClusterStatus::Updating);
    assert_eq!(during.image.as_deref(), Some("emqx/emqx-enterprise:5.10.1"));
    assert_eq!(after.status, ClusterStatus::Running);
    merge_patch(&seen[3], &f.emqx_path());
    assert_eq!(seen[3].body, json!({"spec": {"image": "emqx/emqx-enterprise:5.8.9"}}));
    assert_eq!(down.status, ClusterStatus::Updating);
    assert_eq!(down.image.as_deref(), Some("emqx/emqx-enterprise:5.8.9"));
    // A bad image is refused before any request.
    let mut g = Fixture::new();
    let (out, seen) = g.run(vec![], async |d, c| d.set_image(c, "emqx 5").await).await;
    assert!(out.is_err());
    assert!(seen.is_empty());
}

#[tokio::test]
async fn stop_remembers_the_counts_and_start_restores_them() {
    let mut f = Fixture::new();
    let running = f.object(1, ready_status());
    let mut stopping = f.object(2, ready_status());
    stopping["metadata"]["resourceVersion"] = json!("2003");
    stopping["metadata"]["annotations"] = json!({ANNOTATION_STOPPED: "{\"core\":2,\"replicant\":3}"});
    stopping["spec"]["coreTemplate"]["spec"]["replicas"] = json!(0);
    stopping["spec"]["replicantTemplate"]["spec"]["replicas"] = json!(0);
    let mut stopped = stopping.clone();
    stopped["status"] = json!({"conditions": [cond("CoreNodesProgressing", "True", "2025-06-01T10:00:40Z", "")],
        "coreNodesStatus": {"replicas": 0, "readyReplicas": 0}, "replicantNodesStatus": {"replicas": 0}});
    let replies = vec![
        fixed(200, running),
        fixed(200, stopping.clone()),
        fixed(200, stopping),
        fixed(200, stopped.clone()),
        fixed(200, stopped.clone()), // stop again: read only
        fixed(200, stopped.clone()), // start: read
        fixed(200, stopped),         // start: patch answer
    ];
    let (out, seen) = f
        .run(replies, async |d, c| {
            d.stop(c).await?;
            let a = d.state(c).await?;
            let b = d.state(c).await?;
            d.stop(c).await?;
            d.start(c).await?;
            Ok::<_, Error>((a, b))
        })
        .await;
    let (a, b) = out.unwrap();
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[0].method, "GET");
    merge_patch(&seen[1], &f.emqx_path());
    assert_eq!(
        seen[1].body,
        json!({"metadata": {"resourceVersion": "2002", "annotations": {ANNOTATION_STOPPED: "{\"core\":2,\"replicant\":3}"}},
            "spec": {"coreTemplate": {"spec": {"replicas": 0}}, "replicantTemplate": {"spec": {"replicas": 0}}}})
    );
    assert_eq!(a.status, ClusterStatus::Stopping);
    assert_eq!(b.status, ClusterStatus::Stopped);
    assert_eq!(b.core.desired, 0);
    assert_eq!(seen[4].method, "GET", "stopping a stopped cluster only reads it");
    assert_eq!(seen[5].method, "GET");
    merge_patch(&seen[6], &f.emqx_path());
    assert_eq!(
        seen[6].body,
        json!({"metadata": {"resourceVersion": "2003", "annotations": {ANNOTATION_STOPPED: null}},
            "spec": {"coreTemplate": {"spec": {"replicas": 2}}, "replicantTemplate": {"spec": {"replicas": 3}}}})
    );
}

#[tokio::test]
async fn a_concurrent_change_during_stop_is_a_retryable_conflict() {
    let mut f = Fixture::new();
    let conflict = status(
        409,
        "Conflict",
        "Operation cannot be fulfilled on emqxes.apps.emqx.io \"x\": the object has been modified; please apply your changes to the latest version and try again",
    );
    let (out, _) = f.run(vec![fixed(200, f.object(1, ready_status())), fixed(409, conflict)], async |d, c| d.stop(c).await).await;
    let err = out.unwrap_err();
    assert_eq!(backend_status(&err), ("stop", Some(409)));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn delete_removes_the_resource_and_the_secret_and_gone_is_success() {
    let mut f = Fixture::new();
    let mut deleting = f.object(1, ready_status());
    deleting["metadata"]["deletionTimestamp"] = json!("2025-06-01T10:05:00Z");
    let ok = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": format!("{}-ecp-api-key", f.name()), "kind": "secrets", "uid": "0c0e7f43-0000-4000-8000-000000000002"}});
    let (out, seen) = f.run(vec![fixed(200, deleting), fixed(200, ok)], async |d, c| d.delete(c).await).await;
    out.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("DELETE", f.emqx_path().as_str()));
    assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("DELETE", f.secret_path().as_str()));

    let mut g = Fixture::new();
    let gone = |what: &str| fixed(404, status(404, "NotFound", &format!("{what} \"x\" not found")));
    let (out, seen) = g.run(vec![gone("emqxes.apps.emqx.io"), gone("secrets")], async |d, c| d.delete(c).await).await;
    out.unwrap();
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn state_follows_the_operators_condition_sequence() {
    let mut f = Fixture::new();
    let t1 = "2025-06-01T09:59:01Z";
    let seq = vec![
        // Just created: no status yet.
        (f.object(1, json!({})), ClusterStatus::Creating),
        (f.object(1, json!({"conditions": [cond("Initialized", "True", t1, "initialized EMQX cluster")]})), ClusterStatus::Creating),
        (
            f.object(1, json!({"conditions": [cond("CoreNodesProgressing", "True", t1, ""), cond("Initialized", "True", t1, "")]})),
            ClusterStatus::Creating,
        ),
        (
            f.object(
                1,
                json!({"conditions": [cond("ReplicantNodesProgressing", "True", t1, ""), cond("CoreNodesReady", "True", t1, ""),
                cond("CoreNodesProgressing", "True", t1, ""), cond("Initialized", "True", t1, "")],
                "coreNodes": [{"node": "emqx@emqx-core-0", "node_status": "running", "role": "core"}],
                "coreNodesStatus": {"replicas": 2, "readyReplicas": 2}}),
            ),
            ClusterStatus::Creating,
        ),
        (
            f.object(1, json!({"conditions": [cond("Available", "True", t1, ""), cond("ReplicantNodesReady", "True", t1, "")]})),
            ClusterStatus::Creating,
        ),
        (f.object(1, ready_status()), ClusterStatus::Running),
    ];
    let expected: Vec<ClusterStatus> = seq.iter().map(|(_, s)| s.clone()).collect();
    let n = seq.len();
    let replies = seq.into_iter().map(|(o, _)| fixed(200, o)).collect();
    let (out, seen) = f
        .run(replies, async |d, c| {
            let mut got = Vec::new();
            for _ in 0..n {
                got.push(d.state(c).await?);
            }
            Ok::<_, Error>(got)
        })
        .await;
    let got = out.unwrap();
    assert!(seen.iter().all(|s| s.method == "GET" && s.path == f.emqx_path()));
    assert_eq!(got.iter().map(|s| s.status.clone()).collect::<Vec<_>>(), expected);
    let running = got.last().unwrap();
    assert_eq!((running.core.desired, running.core.ready, running.replicant.ready), (2, 2, 3));
    assert_eq!(running.nodes[0].name, "emqx@emqx-core-0.emqx-headless.emqx.svc.cluster.local");
    assert_eq!(running.nodes[1].role, "replicant");
}

#[tokio::test]
async fn no_progress_past_the_deadline_is_an_error_with_its_cause() {
    let mut f = Fixture::new();
    f.clock.set("2025-06-01T10:30:00Z".parse::<Timestamp>().unwrap());
    let stuck = f.object(
        1,
        json!({"conditions": [cond("CoreNodesProgressing", "True", "2025-06-01T10:00:00Z", "Core nodes progressing")],
        "coreNodes": [{"node": "emqx@emqx-core-1", "node_status": "stopped", "role": "core"}]}),
    );
    let quiet = f.object(1, json!({"conditions": [cond("ReplicantNodesProgressing", "True", "2025-06-01T10:00:00Z", "waiting")]}));
    let (out, _) =
        f.run(vec![fixed(200, stuck), fixed(200, quiet)], async |d, c| Ok::<_, Error>((d.state(c).await?, d.state(c).await?))).await;
    let (a, b) = out.unwrap();
    assert_eq!(a.status, ClusterStatus::Error("no progress for 600s: node emqx@emqx-core-1 is stopped".into()));
    assert_eq!(b.status, ClusterStatus::Error("no progress for 600s: ReplicantNodesProgressing is True (waiting)".into()));
}

#[tokio::test]
async fn api_errors_are_typed_backend_errors_with_their_status() {
    let cases: Vec<(u16, &str, &str)> = vec![
        (404, "NotFound", "emqxes.apps.emqx.io \"x\" not found"),
        (
            403,
            "Forbidden",
            "emqxes.apps.emqx.io \"x\" is forbidden: User \"system:serviceaccount:ecp:ecp\" cannot get resource \"emqxes\" in API group \"apps.emqx.io\" in the namespace \"emqx\"",
        ),
        (500, "InternalError", "Internal error occurred: etcdserver: request timed out"),
    ];
    for (code, reason, message) in cases {
        let mut f = Fixture::new();
        let (out, _) = f.run(vec![fixed(code, status(code, reason, message))], async |d, c| d.state(c).await).await;
        let err = out.unwrap_err();
        assert_eq!(backend_status(&err), ("state", Some(code)));
        assert_eq!(err.is_not_found(), code == 404);
        assert_eq!(err.is_retryable(), code == 500);
        assert_eq!(err.to_string(), format!("kubernetes: state failed ({code})"));
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(source, format!("{reason}: {message}"));
    }
    // 422 on create: the resource was refused.
    let mut f = Fixture::new();
    let spec = ClusterSpec::builder("emqx/emqx-enterprise:5.10.0").build().unwrap();
    let invalid = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "EMQX.apps.emqx.io \"x\" is invalid: spec.coreTemplate.spec.replicas: Invalid value: -1: must be >= 0",
        "reason": "Invalid", "details": {"name": "x", "group": "apps.emqx.io", "kind": "EMQX",
            "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: -1", "field": "spec.coreTemplate.spec.replicas"}]},
        "code": 422});
    let (out, seen) = f.run(vec![fixed(422, invalid)], async |d, c| d.create(c, &spec).await).await;
    assert_eq!(seen.len(), 1, "no api key: no secret");
    let err = out.unwrap_err();
    assert_eq!(backend_status(&err), ("create", Some(422)));
    assert!(!err.is_retryable());
    // A body that is not JSON at all (a proxy's page) is still a typed error.
    let mut f = Fixture::new();
    let (svc, mut handle) = ecp_testkit::kube::pair();
    f.driver = KubernetesDriver::from_client(kube::Client::new(svc, "default"), f.driver.config().clone());
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Response::builder().status(502).body(Body::from(b"<html>Bad Gateway</html>".to_vec())).unwrap());
    });
    let err = f.driver.state(&f.cluster).await.unwrap_err();
    server.await.unwrap();
    assert_eq!(backend_status(&err).1, Some(502));
    assert!(err.is_retryable());
    // A dropped connection: a retryable transport error.
    let mut f = Fixture::new();
    drop(f.handle.take());
    let err = f.driver.state(&f.cluster).await.unwrap_err();
    assert!(matches!(&err, Error::Hosting(h) if h.is_retryable() && h.status().is_none()), "{err:?}");
}

#[tokio::test]
async fn the_api_key_secret_never_shows_in_debug_or_errors() {
    let mut f = Fixture::new();
    let spec = spec_with_key();
    assert!(!format!("{spec:?} {:?} {:?}", f.driver, f.driver.config()).contains(SENTINEL));
    // The API server echoes the value in its message: the error does not.
    let refused = status(422, "Invalid", &format!("Secret \"x\" is invalid: stringData[secret]: Invalid value: \"{SENTINEL}\": too long"));
    let (out, seen) = f.run(vec![fixed(422, refused)], async |d, c| d.create(c, &spec).await).await;
    assert_eq!(seen.len(), 1);
    let err = out.unwrap_err();
    assert_eq!(backend_status(&err), ("create", Some(422)));
    let shown = chain(&err);
    assert!(shown.contains("[REDACTED]"), "{shown}");
    assert!(!shown.contains(SENTINEL), "{shown}");
    // A conflicting existing Secret: the error names the Secret, not its content.
    let mut g = Fixture::new();
    let other = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"},
        "data": {"key": serde_json::to_value(k8s_openapi::ByteString(b"ecp".to_vec())).unwrap(),
                 "secret": serde_json::to_value(k8s_openapi::ByteString(b"another".to_vec())).unwrap()}});
    let (out, _) = g
        .run(vec![fixed(409, status(409, "AlreadyExists", "secrets \"x\" already exists")), fixed(200, other)], async |d, c| {
            d.create(c, &spec).await
        })
        .await;
    let err = out.unwrap_err();
    assert!(matches!(&err, Error::Core(c) if c.is_conflict()));
    assert!(!chain(&err).contains(SENTINEL));
}
