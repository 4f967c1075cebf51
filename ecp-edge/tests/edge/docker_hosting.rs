//! Hosted edge services on the REAL Docker engine: install, logs, stop/start/restart, upgrade,
//! failing upgrades rolled back, uninstall, and batch install and upgrade through the task engine.
//! Containers run the `FROM scratch` sim-edge images of ecp-testkit (NeuronEX on :8085) on a
//! bridge network each test creates; they are reached by their IP on it. Needs the Docker engine
//! (a failure under `CI=true` without one).
#![cfg(all(feature = "docker", feature = "sqlite"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecp_core::access::Principal;
use ecp_core::audit::{AuditQuery, AuditScope};
use ecp_core::edge::{Credentials, EdgeKind, EdgeLimits, EdgeService, ManagementMode};
use ecp_core::identity::BuiltinRole;
use ecp_core::task::{RolloutPolicy, TargetState, TaskEngine, TaskState};
use ecp_core::{AuditStore, PageRequest, ProjectId, SqlStore, Timestamp};
use ecp_edge::driver::{Drivers, EdgeDriver};
use ecp_edge::fleet::Fleet;
use ecp_edge::hosted::docker::{DockerDriver, DockerDriverConfig, DockerNode};
use ecp_edge::hosted::{BatchInstall, HostedSpec, HostedTasks, RunState};
use ecp_edge::{Error, UpgradeCheck};
use ecp_rbac::{AccessConfig, AccessControl, Argon2Params, Grant, NewUser};
use ecp_testkit::docker::{self as harness, SimImages, run};

/// Removes every container of the test's project and its network, also when the test fails.
struct Cleanup {
    project: String,
    network: String,
}

impl Cleanup {
    fn new(project: ProjectId) -> Self {
        let network = format!("ecp-test-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let out = run(harness::docker().args(["network", "create", "--driver", "bridge", &network]), Duration::from_secs(60)).unwrap();
        assert!(out.success, "docker network create: {}", out.stderr);
        Cleanup { project: project.to_string(), network }
    }

    fn containers(&self) -> Vec<String> {
        let filter = format!("label=io.ecp.project={}", self.project);
        let out = run(harness::docker().args(["ps", "-aq", "--filter", &filter]), Duration::from_secs(60)).unwrap();
        out.stdout.split_whitespace().map(str::to_owned).collect()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = self.containers();
        if !ids.is_empty() {
            let _ = run(harness::docker().args(["rm", "-f"]).args(&ids), Duration::from_secs(120));
        }
        let _ = run(harness::docker().args(["network", "rm", &self.network]), Duration::from_secs(60));
    }
}

/// The images, or `None` (outside CI) without an engine.
async fn images() -> Option<SimImages> {
    if !harness::require_engine() {
        return None;
    }
    Some(tokio::task::spawn_blocking(|| harness::sim_images().expect("build the sim-edge images")).await.unwrap())
}

fn driver(nodes: &[&str], network: &str) -> Arc<DockerDriver> {
    let mut config = DockerDriverConfig::builder()
        .health(Duration::from_secs(5), Duration::from_millis(100))
        .default_network(network)
        // No registry here: a missing image fails at once.
        .pull_missing(false);
    for n in nodes {
        config = config.node(DockerNode::builder(*n).build().unwrap());
    }
    Arc::new(DockerDriver::new(config.build().unwrap()).unwrap())
}

fn credentials() -> Credentials {
    Credentials::Basic { username: "admin".into(), password: "0000".to_owned().into() }
}

fn docker_inspect(container: &str, format: &str) -> String {
    let out = run(harness::docker().args(["inspect", "--format", format, container]), Duration::from_secs(30)).unwrap();
    assert!(out.success, "docker inspect {container}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_operate_upgrade_roll_back_and_uninstall() {
    let Some(images) = images().await else { return };
    let project = ProjectId::new();
    let cleanup = Cleanup::new(project);
    let driver = driver(&["local"], &cleanup.network);
    let service = EdgeService::builder(project, "plant line 1", EdgeKind::NeuronEx, "http://line-1:8085")
        .mode(ManagementMode::Docker)
        .credentials(credentials())
        .build(Timestamp::now())
        .unwrap();
    let spec = HostedSpec::builder(&images.v1, images.port).env("ECP_SITE", "hall-3").build().unwrap();

    // Install: the container runs with its labels and env, and answers its probe at its IP.
    let t = Instant::now();
    let installed = driver.install_with(&service, &spec).await.unwrap();
    let install_time = t.elapsed();
    let endpoint = installed.endpoint.clone().expect("an endpoint");
    assert!(endpoint.starts_with("http://") && endpoint.ends_with(":8085"), "{endpoint}");
    assert_eq!(installed.image, images.v1);
    let labels = docker_inspect(&installed.container_id, "{{json .Config.Labels}}");
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["io.ecp.project"], project.to_string());
    assert_eq!(labels["io.ecp.service"], service.id().to_string());
    assert_eq!(labels["io.ecp.managed-by"], "ecp-rs");
    assert!(docker_inspect(&installed.container_id, "{{json .Config.Env}}").contains("ECP_SITE=hall-3"));
    assert_eq!(docker_inspect(&installed.container_id, "{{.HostConfig.RestartPolicy.Name}}"), "unless-stopped");
    assert_eq!(driver.probe(&service).await.unwrap().version.as_deref(), Some(images.v1_version.as_str()));
    assert!(driver.sync_info(&service).await.unwrap().version.is_some());
    // Installing again with the same image converges on the same container.
    assert_eq!(driver.install_with(&service, &spec).await.unwrap().container_id, installed.container_id);
    // ... and with another image is a conflict (that is an upgrade).
    let other = HostedSpec::builder(&images.v2, images.port).build().unwrap();
    assert!(matches!(driver.install_with(&service, &other).await, Err(Error::Core(e)) if e.is_conflict()));

    // Logs: the tail of what sim-edge printed.
    let logs = driver.logs(&service, 10).await.unwrap();
    assert!(logs.iter().any(|l| l.contains("neuronex http://")), "{logs:?}");

    // Stop, start, restart.
    driver.stop(&service).await.unwrap();
    let st = driver.status(&service).await.unwrap();
    assert_eq!((st.state, st.exit_code), (RunState::Exited, Some(0)));
    assert!(driver.probe(&service).await.unwrap_err().is_retryable());
    driver.stop(&service).await.unwrap(); // already stopped: fine
    driver.start(&service).await.unwrap();
    assert_eq!(driver.status(&service).await.unwrap().state, RunState::Running);
    wait_version(&driver, &service, &images.v1_version).await;
    driver.restart(&service).await.unwrap();
    wait_version(&driver, &service, &images.v1_version).await;

    // Upgrade to v2: a new container under the same name, the old one gone.
    let t = Instant::now();
    let upgraded = driver.upgrade_to(&service, &images.v2).await.unwrap();
    let upgrade_time = t.elapsed();
    assert_eq!(upgraded.name, installed.name);
    assert_ne!(upgraded.container_id, installed.container_id);
    assert_eq!(driver.probe(&service).await.unwrap().version.as_deref(), Some(images.v2_version.as_str()));
    assert!(docker_inspect(&upgraded.container_id, "{{json .Config.Env}}").contains("ECP_SITE=hall-3"), "env carried over");
    assert_eq!(cleanup.containers().len(), 1);

    // A new image that exits at once: rolled back, the old container still serving.
    let t = Instant::now();
    let err = driver.upgrade_to(&service, &images.bad_exit).await.unwrap_err();
    let rollback_exit_time = t.elapsed();
    match &err {
        Error::HostedCheckFailed { operation, check, rolled_back, reason, .. } => {
            assert_eq!((*operation, *check, *rolled_back), ("upgrade", UpgradeCheck::Running, true));
            // The exit status, or the restarts it caused (the policy is unless-stopped), and the last
            // lines it printed (sim-edge's usage).
            assert!(reason.contains("status 2") || reason.contains("restarted"), "{reason}");
            assert!(reason.contains("--help"), "the last log lines: {reason}");
        }
        other => panic!("expected HostedCheckFailed, got {other:?}"),
    }
    let st = driver.status(&service).await.unwrap();
    assert_eq!((st.instance.container_id.as_str(), st.state), (upgraded.container_id.as_str(), RunState::Running));
    assert_eq!(driver.probe(&service).await.unwrap().version.as_deref(), Some(images.v2_version.as_str()));
    assert_eq!(cleanup.containers().len(), 1, "the failed container was removed");

    // A new image that runs but never answers: the probe check fails after the health timeout.
    let t = Instant::now();
    let err = driver.upgrade_to(&service, &images.bad_port).await.unwrap_err();
    let rollback_probe_time = t.elapsed();
    assert!(matches!(err, Error::HostedCheckFailed { check: UpgradeCheck::Probe, rolled_back: true, .. }), "{err:?}");
    assert_eq!(driver.probe(&service).await.unwrap().version.as_deref(), Some(images.v2_version.as_str()));
    assert_eq!(driver.instance(&service).await.unwrap().container_id, upgraded.container_id);
    // A missing image fails its create check; nothing changes.
    let err = driver.upgrade_to(&service, "ecp-test/no-such-image:never").await.unwrap_err();
    assert!(matches!(err, Error::HostedCheckFailed { check: UpgradeCheck::Create, rolled_back: true, .. }), "{err:?}");
    assert_eq!(driver.probe(&service).await.unwrap().version.as_deref(), Some(images.v2_version.as_str()));

    // Uninstall: gone, and again is fine.
    driver.uninstall(&service).await.unwrap();
    assert!(cleanup.containers().is_empty());
    assert!(driver.status(&service).await.unwrap_err().is_not_found());
    driver.uninstall(&service).await.unwrap();
    assert!(driver.start(&service).await.unwrap_err().is_not_found());

    // A failing install leaves nothing behind.
    let bad = HostedSpec::builder(&images.bad_exit, images.port).build().unwrap();
    let err = driver.install_with(&service, &bad).await.unwrap_err();
    assert!(matches!(err, Error::HostedCheckFailed { operation: "install", check: UpgradeCheck::Running, .. }), "{err:?}");
    assert!(cleanup.containers().is_empty());

    eprintln!(
        "timings: install {install_time:?}, upgrade {upgrade_time:?}, rollback (exits) {rollback_exit_time:?}, rollback (no answer, 5 s health timeout) {rollback_probe_time:?}"
    );
}

async fn wait_version(driver: &DockerDriver, service: &EdgeService, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match driver.probe(service).await {
            Ok(h) if h.version.as_deref() == Some(version) => return,
            other => assert!(Instant::now() < deadline, "no {version} within 10 s: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An environment value the batch test treats as a secret.
const ENV_SENTINEL: &str = "sentinel-env-5f3a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_install_and_upgrade_through_the_task_engine() {
    let Some(images) = images().await else { return };
    // A fleet on an in-memory store; four nodes that share the local engine.
    let store = Arc::new(SqlStore::memory().await.unwrap());
    let config = AccessConfig::builder().argon2(Argon2Params::new(1024, 1, 1).unwrap()).build().unwrap();
    let ac = AccessControl::new(store.clone(), config).await.unwrap();
    let root = ac.users.bootstrap_admin("root@example.com", "Root", &secrecy::SecretString::from("R00t-passw0rd!")).await.unwrap();
    let root = Principal::user(root.id, root.email);
    let org = ac.tenancy.create_org(&root, "acme").await.unwrap();
    let project = ac.tenancy.create_project(&root, org.id, "plant").await.unwrap();
    let u = ac
        .users
        .create_user(
            &root,
            NewUser::new("pa@example.com", "pa@example.com").grant(Grant::builtin(BuiltinRole::ProjectAdmin, project.scope())),
        )
        .await
        .unwrap();
    let admin = Principal::user(u.id, u.email);
    let cleanup = Cleanup::new(project.id());
    let nodes = ["edge-a", "edge-b", "edge-c", "edge-d"];
    let driver = driver(&nodes, &cleanup.network);
    let engine = TaskEngine::builder(store.clone()).build().unwrap();
    let drivers = Drivers::new().with(ManagementMode::Docker, driver.clone());
    let fleet = Fleet::builder(store.clone(), ac.authorizer.clone(), engine.clone(), drivers)
        .clock(Arc::new(ecp_core::SystemClock))
        .limits(EdgeLimits::default())
        .build()
        .unwrap();
    let hosted = HostedTasks::new(store.clone(), engine, driver.clone()).unwrap();
    let f = fleet.project(&admin, project.id()).await.unwrap();

    // Batch install: one instance per node, in parallel.
    let prefix = format!("press-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    // The environment may hold secrets: the containers get it, readers of the task never see it.
    let spec = HostedSpec::builder(&images.v1, images.port).env("API_TOKEN", ENV_SENTINEL).build().unwrap();
    let batch = BatchInstall::new(&prefix, EdgeKind::NeuronEx, spec).credentials(credentials());
    let policy = RolloutPolicy::builder().max_in_flight(4).retries(1, Duration::from_secs(1), Duration::from_secs(1)).build().unwrap();
    let t = Instant::now();
    let (services, handle) = hosted.install_batch(&f, &batch, policy).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    let install_time = t.elapsed();
    assert_eq!(services.len(), 4);
    let targets = f.task_targets(handle.id(), None, 100).await.unwrap();
    assert!(targets.iter().all(|t| t.state == TargetState::Succeeded), "{targets:?}");
    assert_eq!(cleanup.containers().len(), 4);
    for (s, node) in services.iter().zip(nodes) {
        assert_eq!(s.name(), format!("{prefix}-{node}"));
        let instance = driver.instance(s).await.unwrap();
        assert_eq!((instance.node.as_str(), instance.name.as_str()), (node, s.name()));
        assert!(docker_inspect(&instance.container_id, "{{json .Config.Env}}").contains(ENV_SENTINEL), "the env reached the container");
        // The fleet probes hosted services through the driver, at their containers' IPs.
        let probed = f.probe(s.id()).await.unwrap();
        assert_eq!(probed.version(), Some(images.v1_version.as_str()));
    }

    // Batch upgrade, serial: every instance ends on v2.
    let serial = RolloutPolicy::builder().serial(true).retries(1, Duration::from_secs(1), Duration::from_secs(1)).build().unwrap();
    let t = Instant::now();
    let ids: Vec<_> = services.iter().map(EdgeService::id).collect();
    let tasks = f.tasks(&PageRequest::first(10)).await.unwrap();
    for text in [format!("{tasks:?}"), tasks.items[0].spec().to_string()] {
        assert!(!text.contains(ENV_SENTINEL), "a reader of the task sees the environment: {text}");
    }

    // Nobody else moves these services to another image: another tenant's admin naming them
    // through its own project finds nothing, a viewer of this project is refused; both audited,
    // no task submitted.
    let other_org = ac.tenancy.create_org(&root, "globex").await.unwrap();
    let other = ac.tenancy.create_project(&root, other_org.id, "plant").await.unwrap();
    let user = |email: &'static str, role: BuiltinRole, scope: ecp_core::access::Scope| {
        let (ac, root) = (ac.clone(), root.clone());
        async move {
            let u = ac.users.create_user(&root, NewUser::new(email, email).grant(Grant::builtin(role, scope))).await.unwrap();
            Principal::user(u.id, u.email)
        }
    };
    let stranger = user("x@example.com", BuiltinRole::ProjectAdmin, other.scope()).await;
    let viewer = user("v@example.com", BuiltinRole::Viewer, project.scope()).await;
    let theirs = fleet.project(&stranger, other.id()).await.unwrap();
    let e = hosted.upgrade_batch(&theirs, &ids, &images.bad_exit, serial.clone()).await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_not_found()), "{e}");
    let as_viewer = fleet.project(&viewer, project.id()).await.unwrap();
    let e = hosted.upgrade_batch(&as_viewer, &ids, &images.bad_exit, serial.clone()).await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_permission_denied()), "{e}");
    let e = hosted.install_batch(&as_viewer, &batch, RolloutPolicy::default()).await.unwrap_err();
    assert!(matches!(&e, ecp_edge::Error::Core(c) if c.is_permission_denied()), "{e}");
    let refused = store
        .query_audit(
            &AuditQuery { operation: Some("edge_service.upgrade_batch".into()), success: Some(false), ..Default::default() },
            &AuditScope { all: true, ..Default::default() },
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(refused.items.len(), 2, "each refusal is audited");
    assert_eq!(f.tasks(&PageRequest::first(10)).await.unwrap().items.len(), 1, "only the install task exists");
    let handle = hosted.upgrade_batch(&f, &ids, &images.v2, serial.clone()).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    let upgrade_time = t.elapsed();
    for s in &services {
        assert_eq!(driver.probe(s).await.unwrap().version.as_deref(), Some(images.v2_version.as_str()));
    }
    let targets = f.task_targets(handle.id(), None, 100).await.unwrap();
    assert!(targets.iter().all(|t| t.result.as_ref().is_some_and(|r| r["previous_image"] == images.v1.as_str())), "{targets:?}");

    // A failing serial batch upgrade stops at its first target, which is rolled back; the others
    // are untouched, all still serving v2.
    let handle = hosted.upgrade_batch(&f, &ids, &images.bad_exit, serial).await.unwrap();
    let end = handle.wait().await;
    assert!(matches!(end, Some(TaskState::Failed | TaskState::Aborted)), "{end:?}");
    let targets = f.task_targets(handle.id(), None, 100).await.unwrap();
    assert_eq!(targets[0].state, TargetState::Failed);
    assert!(targets[0].reason.as_deref().is_some_and(|r| r.contains("running check")), "{:?}", targets[0].reason);
    assert!(targets[1..].iter().all(|t| t.state != TargetState::Succeeded), "{targets:?}");
    for s in &services {
        assert_eq!(driver.probe(s).await.unwrap().version.as_deref(), Some(images.v2_version.as_str()));
    }
    assert_eq!(cleanup.containers().len(), 4);

    // The fleet's own lifecycle calls go through the driver too (authorized and audited).
    f.upgrade(services[1].id(), &images.v1).await.unwrap();
    assert_eq!(f.probe(services[1].id()).await.unwrap().version(), Some(images.v1_version.as_str()));
    f.stop(services[1].id()).await.unwrap();
    assert_eq!(driver.status(&services[1]).await.unwrap().state, RunState::Exited);
    f.start(services[1].id()).await.unwrap();
    assert_eq!(driver.status(&services[1]).await.unwrap().state, RunState::Running);

    // Deleting a hosted service through the fleet uninstalls it.
    f.delete(services[0].id()).await.unwrap();
    assert_eq!(cleanup.containers().len(), 3);

    eprintln!("timings: batch install of 4 (parallel) {install_time:?}, batch upgrade of 4 (serial) {upgrade_time:?}");
}
