//! Edge services hosted on Kubernetes, against a scripted API server (`tower_test::mock`): each
//! request is checked (method, path, content type, body) and answered with Deployment, Service and
//! `Status` objects shaped like the API server's.

use std::sync::Arc;
use std::time::Duration;

use ecp_core::edge::{EdgeKind, EdgeService, ManagementMode};
use ecp_core::{ManualClock, ProjectId};
use ecp_edge::Error;
use ecp_edge::direct::{DirectDriver, DirectDriverConfig};
use ecp_edge::driver::{EdgeDriver, EdgeOperation};
use ecp_edge::hosted::kubernetes::{
    ANNOTATION_PREVIOUS_IMAGE, ANNOTATION_RESTARTED_AT, KubeHostingConfig, KubernetesEdgeDriver, LABEL_PROJECT, LABEL_SERVICE,
    RolloutError, ServiceEndpoint, resource_name,
};
use serde_json::{Value, json};

const NS: &str = "edge";

use ecp_testkit::kube::{Handle, Reply, Seen, fixed, serve};

fn echo_created() -> Reply {
    ecp_testkit::kube::echo_created(NS)
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    ecp_testkit::kube::status(code, reason, message, "apps", "deployments")
}

struct Fixture {
    driver: KubernetesEdgeDriver,
    handle: Option<Handle>,
    service: EdgeService,
}

impl Fixture {
    fn new() -> Self {
        Self::with(|b| b)
    }

    fn with(
        f: impl FnOnce(ecp_edge::hosted::kubernetes::KubeHostingConfigBuilder) -> ecp_edge::hosted::kubernetes::KubeHostingConfigBuilder,
    ) -> Self {
        let (svc, handle) = ecp_testkit::kube::pair();
        let client = kube::Client::new(svc, "default");
        let clock = ManualClock::new("2025-06-01T10:30:00Z".parse().unwrap());
        let config = f(KubeHostingConfig::builder()
            .namespace(NS)
            .progress_deadline(Duration::from_secs(120))
            .poll_interval(Duration::from_millis(5))
            .clock(Arc::new(clock)))
        .build()
        .unwrap();
        let service = EdgeService::builder(ProjectId::new(), "line-1-neuronex", EdgeKind::NeuronEx, "http://10.0.0.5:8085")
            .mode(ManagementMode::Kubernetes)
            .build("2025-06-01T10:00:00Z".parse().unwrap())
            .unwrap();
        let direct =
            DirectDriver::new(DirectDriverConfig::builder().egress(ecp_edge_api::EgressPolicy::allow_loopback()).build().unwrap()).unwrap();
        Self { driver: KubernetesEdgeDriver::from_client(client, config, direct), handle: Some(handle), service }
    }

    fn name(&self) -> String {
        resource_name(&self.service)
    }

    fn deployment_path(&self) -> String {
        format!("/apis/apps/v1/namespaces/{NS}/deployments/{}", self.name())
    }

    fn service_path(&self) -> String {
        format!("/api/v1/namespaces/{NS}/services/{}", self.name())
    }

    /// Runs `op` against `replies`; every reply must have been asked for.
    async fn run<T>(&mut self, replies: Vec<Reply>, op: impl AsyncFnOnce(&KubernetesEdgeDriver, &EdgeService) -> T) -> (T, Vec<Seen>) {
        let handle = self.handle.take().expect("one run per fixture");
        let n = replies.len();
        let server = tokio::spawn(serve(handle, replies));
        let out = op(&self.driver, &self.service).await;
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), n, "the driver sent {} requests, the script has {n}: {seen:#?}", seen.len());
        (out, seen)
    }

    /// The Deployment as the API server returns it, running `image` at `generation` with `status`.
    fn deployment(&self, image: &str, generation: i64, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.name(), "namespace": NS, "uid": "1b4e28ba-2fa1-4d2b-9b1c-0000000000aa",
                "resourceVersion": "5002", "generation": generation, "creationTimestamp": "2025-06-01T10:00:00Z",
                "labels": {LABEL_PROJECT: self.service.project().to_string(), LABEL_SERVICE: self.service.id().to_string()},
                "annotations": {"deployment.kubernetes.io/revision": generation.to_string()}},
            "spec": {"replicas": 1, "progressDeadlineSeconds": 120, "revisionHistoryLimit": 3,
                "selector": {"matchLabels": {LABEL_SERVICE: self.service.id().to_string()}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "template": {"metadata": {"labels": {LABEL_SERVICE: self.service.id().to_string()}},
                    "spec": {"containers": [{"name": "neuronex", "image": image,
                        "ports": [{"name": "api", "containerPort": 8085, "protocol": "TCP"}],
                        "resources": {}, "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"}],
                        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}},
            "status": status
        })
    }
}

fn available(generation: i64) -> Value {
    json!({"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.",
             "lastUpdateTime": "2025-06-01T10:01:00Z", "lastTransitionTime": "2025-06-01T10:01:00Z"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": "ReplicaSet \"x-7c9f8d\" has successfully progressed.",
             "lastUpdateTime": "2025-06-01T10:01:00Z", "lastTransitionTime": "2025-06-01T10:00:00Z"}]})
}

fn rolling(generation: i64, observed: i64) -> Value {
    json!({"observedGeneration": observed, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
        "unavailableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "message": format!("ReplicaSet \"x-{generation}\" is progressing."),
            "lastUpdateTime": "2025-06-01T10:02:00Z", "lastTransitionTime": "2025-06-01T10:00:00Z"}]})
}

fn deadline_exceeded(generation: i64) -> Value {
    json!({"observedGeneration": generation, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
        "unavailableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"x-5d8b\" has timed out progressing.",
            "lastUpdateTime": "2025-06-01T10:04:00Z", "lastTransitionTime": "2025-06-01T10:04:00Z"}]})
}

fn patch(seen: &Seen, path: &str, content_type: &str) {
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.path, path);
    assert_eq!(seen.content_type.as_deref(), Some(content_type));
    assert!(seen.query.contains("fieldManager=ecp"), "{}", seen.query);
}

#[tokio::test]
async fn install_creates_the_deployment_and_the_service_and_follows_the_rollout() {
    let mut f = Fixture::new();
    let starting = f.deployment(
        "emqx/neuronex:3.4.0",
        1,
        json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
        "unavailableReplicas": 1}),
    );
    let done = f.deployment("emqx/neuronex:3.4.0", 1, available(1));
    let replies = vec![echo_created(), echo_created(), fixed(200, starting), fixed(200, done)];
    let (out, seen) = f.run(replies, async |d, s| d.install(s, "emqx/neuronex:3.4.0").await).await;
    out.unwrap();

    let dep = &seen[0];
    assert_eq!((dep.method.as_str(), dep.path.as_str()), ("POST", format!("/apis/apps/v1/namespaces/{NS}/deployments").as_str()));
    assert_eq!(dep.content_type.as_deref(), Some("application/json"));
    let b = &dep.body;
    assert_eq!(b["kind"], "Deployment");
    assert_eq!(b["metadata"]["name"], f.name());
    assert_eq!(b["metadata"]["labels"][LABEL_PROJECT], f.service.project().to_string());
    assert_eq!(b["metadata"]["labels"][LABEL_SERVICE], f.service.id().to_string());
    assert_eq!(b["metadata"]["labels"]["io.ecp.kind"], "neuronex");
    assert_eq!(b["spec"]["replicas"], 1);
    assert_eq!(b["spec"]["progressDeadlineSeconds"], 120);
    assert_eq!(b["spec"]["selector"]["matchLabels"], json!({LABEL_SERVICE: f.service.id().to_string()}));
    let c = &b["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "neuronex");
    assert_eq!(c["image"], "emqx/neuronex:3.4.0");
    assert_eq!(c["ports"], json!([{"name": "api", "containerPort": 8085, "protocol": "TCP"}]));
    assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], "api");
    assert_eq!(b["spec"]["template"]["metadata"]["labels"][LABEL_SERVICE], f.service.id().to_string());

    let svc = &seen[1];
    assert_eq!((svc.method.as_str(), svc.path.as_str()), ("POST", format!("/api/v1/namespaces/{NS}/services").as_str()));
    assert_eq!(svc.body["kind"], "Service");
    assert_eq!(svc.body["spec"]["type"], "ClusterIP");
    assert_eq!(svc.body["spec"]["selector"], json!({LABEL_SERVICE: f.service.id().to_string()}));
    assert_eq!(svc.body["spec"]["ports"], json!([{"name": "api", "port": 8085, "protocol": "TCP", "targetPort": "api"}]));
    assert!(seen[2..].iter().all(|s| s.method == "GET" && s.path == f.deployment_path()));
}

#[tokio::test]
async fn installing_again_converges_and_a_foreign_deployment_conflicts() {
    let mut f = Fixture::new();
    let existing = f.deployment("emqx/neuronex:3.4.0", 1, available(1));
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f.name(), "namespace": NS},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.12.34", "selector": {LABEL_SERVICE: f.service.id().to_string()},
            "ports": [{"name": "api", "port": 8085, "protocol": "TCP", "targetPort": "api"}]}, "status": {"loadBalancer": {}}});
    let exists = |kind: &str| status(409, "AlreadyExists", &format!("{kind} \"x\" already exists"));
    let replies = vec![
        fixed(409, exists("deployments.apps")),
        fixed(200, existing.clone()),
        fixed(409, exists("services")),
        fixed(200, svc),
        fixed(200, existing),
    ];
    let (out, seen) = f.run(replies, async |d, s| d.install(s, "emqx/neuronex:3.4.0").await).await;
    out.unwrap();
    assert_eq!(seen.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(), ["POST", "GET", "POST", "GET", "GET"]);
    assert_eq!(seen[3].path, f.service_path());

    let mut g = Fixture::new();
    let other = g.deployment("emqx/neuronex:3.3.0", 1, available(1));
    let (out, _) = g
        .run(vec![fixed(409, exists("deployments.apps")), fixed(200, other)], async |d, s| d.install(s, "emqx/neuronex:3.4.0").await)
        .await;
    assert!(matches!(out, Err(Error::Core(ref e)) if e.is_conflict()), "{out:?}");
}

#[tokio::test]
async fn upgrade_patches_the_image_and_waits_for_the_rollout() {
    let mut f = Fixture::new();
    let (v1, v2) = ("emqx/neuronex:3.4.0", "emqx/neuronex:3.5.0");
    let replies = vec![
        fixed(200, f.deployment(v1, 1, available(1))),
        fixed(200, f.deployment(v2, 2, available(1))),
        fixed(200, f.deployment(v2, 2, available(1))),  // not observed yet
        fixed(200, f.deployment(v2, 2, rolling(2, 2))), // old pod still there
        fixed(200, f.deployment(v2, 2, available(2))),
    ];
    let (out, seen) = f.run(replies, async |d, s| d.upgrade(s, v2).await).await;
    out.unwrap();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", f.deployment_path().as_str()));
    patch(&seen[1], &f.deployment_path(), "application/strategic-merge-patch+json");
    assert_eq!(
        seen[1].body,
        json!({"metadata": {"annotations": {ANNOTATION_PREVIOUS_IMAGE: v1}},
            "spec": {"template": {"spec": {"containers": [{"name": "neuronex", "image": v2}]}}}})
    );
    assert!(seen[2..].iter().all(|s| s.method == "GET"));
}

#[tokio::test]
async fn a_failed_upgrade_rolls_back_to_the_previous_image() {
    let mut f = Fixture::new();
    let (v1, bad) = ("emqx/neuronex:3.4.0", "emqx/neuronex:9.9.9-broken");
    let replies = vec![
        fixed(200, f.deployment(v1, 1, available(1))),
        fixed(200, f.deployment(bad, 2, available(1))),
        fixed(200, f.deployment(bad, 2, rolling(2, 2))),
        fixed(200, f.deployment(bad, 2, deadline_exceeded(2))),
        fixed(200, f.deployment(v1, 3, rolling(3, 2))),
    ];
    let (out, seen) = f.run(replies, async |d, s| d.upgrade(s, bad).await).await;
    let err = out.unwrap_err();
    patch(&seen[4], &f.deployment_path(), "application/strategic-merge-patch+json");
    assert_eq!(seen[4].body, json!({"spec": {"template": {"spec": {"containers": [{"name": "neuronex", "image": v1}]}}}}));
    let Error::Core(core) = &err else { panic!("{err:?}") };
    let source = std::error::Error::source(core).expect("the rollout error");
    let rollout = source.downcast_ref::<RolloutError>().expect("a RolloutError");
    assert_eq!(rollout.deployment, f.name());
    assert_eq!(rollout.image, bad);
    assert_eq!(rollout.rolled_back_to.as_deref(), Some(v1));
    assert_eq!(rollout.reason, "ReplicaSet \"x-5d8b\" has timed out progressing.");
    assert!(rollout.to_string().ends_with("rolled back to emqx/neuronex:3.4.0"));
}

#[tokio::test]
async fn a_rollout_that_never_completes_times_out_and_rolls_back() {
    let mut f = Fixture::with(|b| b.rollout_timeout(Duration::from_millis(1)).poll_interval(Duration::from_millis(20)));
    let (v1, v2) = ("emqx/neuronex:3.4.0", "emqx/neuronex:3.5.0");
    let replies = vec![
        fixed(200, f.deployment(v1, 1, available(1))),
        fixed(200, f.deployment(v2, 2, available(1))),
        fixed(200, f.deployment(v2, 2, rolling(2, 2))),
        fixed(200, f.deployment(v1, 3, rolling(3, 2))),
    ];
    let (out, seen) = f.run(replies, async |d, s| d.upgrade(s, v2).await).await;
    let err = out.unwrap_err();
    assert_eq!(seen[3].body["spec"]["template"]["spec"]["containers"][0]["image"], v1);
    let Error::Core(core) = &err else { panic!("{err:?}") };
    let rollout = std::error::Error::source(core).unwrap().downcast_ref::<RolloutError>().unwrap();
    assert!(rollout.reason.contains("old replicas pending termination"), "{}", rollout.reason);
}

#[tokio::test]
async fn stop_start_and_restart_patch_the_deployment() {
    let mut f = Fixture::new();
    let d = f.deployment("emqx/neuronex:3.4.0", 2, available(2));
    let replies = vec![fixed(200, d.clone()), fixed(200, d.clone()), fixed(200, d)];
    let (out, seen) = f
        .run(replies, async |d, s| {
            d.stop(s).await?;
            d.start(s).await?;
            d.restart(s).await
        })
        .await;
    out.unwrap();
    for s in &seen {
        patch(s, &f.deployment_path(), "application/merge-patch+json");
    }
    assert_eq!(seen[0].body, json!({"spec": {"replicas": 0}}));
    assert_eq!(seen[1].body, json!({"spec": {"replicas": 1}}));
    assert_eq!(
        seen[2].body,
        json!({"spec": {"template": {"metadata": {"annotations": {ANNOTATION_RESTARTED_AT: "2025-06-01T10:30:00Z"}}}}})
    );
}

#[tokio::test]
async fn uninstall_deletes_both_and_gone_is_success() {
    let mut f = Fixture::new();
    let ok = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": f.name(), "group": "apps", "kind": "deployments", "uid": "1b4e28ba-2fa1-4d2b-9b1c-0000000000aa"}});
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f.name(), "namespace": NS}, "spec": {}});
    let (out, seen) = f.run(vec![fixed(200, ok), fixed(200, svc)], async |d, s| d.uninstall(s).await).await;
    out.unwrap();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("DELETE", f.deployment_path().as_str()));
    assert_eq!(seen[0].body["propagationPolicy"], "Background");
    assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("DELETE", f.service_path().as_str()));

    let mut g = Fixture::new();
    let gone = || fixed(404, status(404, "NotFound", "deployments.apps \"x\" not found"));
    let (out, _) = g.run(vec![gone(), gone()], async |d, s| d.uninstall(s).await).await;
    out.unwrap();
}

#[tokio::test]
async fn api_errors_are_typed() {
    let mut f = Fixture::new();
    let forbidden = status(
        403,
        "Forbidden",
        "deployments.apps \"x\" is forbidden: User \"system:serviceaccount:ecp:ecp\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"edge\"",
    );
    let (out, _) = f.run(vec![fixed(403, forbidden)], async |d, s| d.stop(s).await).await;
    match out.unwrap_err() {
        Error::Hosting(h) if h.backend() == ecp_hosting::Backend::Kubernetes => {
            assert_eq!(h.operation(), format!("PATCH {}", f.deployment_path()));
            assert_eq!(h.status(), Some(403));
            assert!(std::error::Error::source(&h).unwrap().to_string().starts_with("Forbidden: deployments.apps"));
        }
        other => panic!("{other:?}"),
    }
    let mut g = Fixture::new();
    let (out, _) = g
        .run(vec![fixed(404, status(404, "NotFound", "deployments.apps \"x\" not found"))], async |d, s| {
            d.upgrade(s, "emqx/neuronex:3.5.0").await
        })
        .await;
    let err = out.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let mut h = Fixture::new();
    drop(h.handle.take());
    let err = h.driver.start(&h.service).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn probes_go_through_the_direct_driver() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let mut f = Fixture::with(|b| b.endpoint(ServiceEndpoint::Registered));
    f.service = EdgeService::builder(f.service.project(), f.service.name(), EdgeKind::Custom, server.uri())
        .mode(ManagementMode::Kubernetes)
        .build(f.service.created_at())
        .unwrap();
    let (out, _) = f.run(vec![], async |d, s| d.probe(s).await).await;
    out.unwrap();
    assert!(f.driver.capabilities().supports(EdgeOperation::Upgrade));
    assert_eq!(f.driver.backend(), "kubernetes");
    server.verify().await;
}
