//! Task engines of two replicas on one real PostgreSQL: a control made on one reaches the task
//! running on the other within milliseconds (LISTEN/NOTIFY), and a replica cut off from the
//! database (a TCP proxy the test cuts) stops before its lease lapses, while the other takes the
//! task over and finishes it with every target applied once. Every kind of signal reaches the other
//! replica's store.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ecp_core::access::Principal;
use ecp_core::prelude::*;
use ecp_core::task::{
    IdempotencyKey, NewTarget, NewTask, RolloutPolicy, TargetError, TargetExecutor, TargetState, Task, TaskControl, TaskEngine, TaskKind,
    TaskState, TaskTarget,
};
use ecp_core::{Organization, Project, SqlStore, SqlStoreConfig, TaskId, TenancyLimits};
use ecp_testkit::proxy::TcpProxy;
use parking_lot::Mutex;
use secrecy::SecretString;

/// One effect on a device: which target, under which key, by which replica, when.
type Effect = (String, String, &'static str, Instant);

/// The devices the targets stand for, shared by both replicas: an attempt whose key was applied
/// before is answered without a second effect, as agents and edge services do.
#[derive(Default)]
struct Devices {
    effects: Vec<Effect>,
    keys: HashSet<String>,
    started: usize,
}

#[derive(Debug)]
struct Slow {
    who: &'static str,
    delay: Duration,
    devices: Arc<Mutex<Devices>>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices").field("effects", &self.effects.len()).finish()
    }
}

#[async_trait]
impl TargetExecutor for Slow {
    async fn apply(&self, target: &TaskTarget, key: &IdempotencyKey) -> Result<serde_json::Value, TargetError> {
        self.devices.lock().started += 1;
        tokio::time::sleep(self.delay).await;
        let mut d = self.devices.lock();
        if d.keys.insert(key.0.clone()) {
            d.effects.push((target.target.clone(), key.0.clone(), self.who, Instant::now()));
        }
        Ok(serde_json::json!({ "by": self.who }))
    }
}

#[derive(Debug)]
struct Kind(Arc<dyn TargetExecutor>);

impl TaskKind for Kind {
    fn name(&self) -> &str {
        "slow_delivery"
    }
    fn executor(&self, _task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        Ok(self.0.clone())
    }
}

async fn connect(url: &str) -> Arc<SqlStore> {
    let config = SqlStoreConfig::builder(SecretString::from(url.to_owned())).acquire_timeout(Duration::from_secs(2)).build().unwrap();
    Arc::new(SqlStore::connect(config).await.unwrap())
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    let at = url.find('@').unwrap() + 1;
    let end = at + url[at..].find('/').unwrap();
    format!("{}{addr}{}", &url[..at], &url[end..])
}

fn upstream(url: &str) -> SocketAddr {
    let at = url.find('@').unwrap() + 1;
    let end = at + url[at..].find('/').unwrap();
    url[at..end].parse().expect("the test server's URL names 127.0.0.1:port")
}

async fn project(store: &SqlStore) -> Project {
    let ev = |op: &str| {
        ecp_core::AuditEvent::new(&Principal::system("t"), ecp_core::ResourceKind::Organization, ecp_core::Operation::new(op).unwrap())
    };
    let org = Organization::new("acme", ecp_core::Timestamp::now()).unwrap();
    store.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "plant", ecp_core::Timestamp::now()).unwrap();
    store.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    project
}

fn engine(store: Arc<SqlStore>, owner: &str, lease: Duration, executor: Arc<dyn TargetExecutor>) -> TaskEngine {
    let engine = TaskEngine::builder(store).owner(owner).lease(lease).build().unwrap();
    engine.register(Arc::new(Kind(executor))).unwrap();
    engine
}

fn task(project: &Project, n: usize, window: u32) -> NewTask {
    let targets = (0..n).map(|i| NewTarget::new(format!("t{i:04}"), format!("edge {i}"))).collect();
    let policy = RolloutPolicy::builder().max_in_flight(window).exclusive(false).target_timeout(Duration::from_secs(30)).build().unwrap();
    NewTask::new(project.id(), "slow_delivery", targets).policy(policy)
}

/// Polls `read` until it answers `want`; returns how long that took. Panics after 20 s.
async fn until_state(store: &SqlStore, id: TaskId, want: TaskState) -> Duration {
    let t0 = Instant::now();
    loop {
        if store.get_task(id).await.unwrap().state() == want {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the task never became {want:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(20), "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_pause_and_resume_on_one_replica_reach_the_task_on_another() {
    let Some(url) = ecp_testkit::postgres::fresh_database().await else { return };
    let (store_a, store_b) = (connect(&url).await, connect(&url).await);
    let project = project(&store_a).await;
    let devices = Arc::new(Mutex::new(Devices::default()));
    let slow = |who| -> Arc<dyn TargetExecutor> { Arc::new(Slow { who, delay: Duration::from_millis(20), devices: devices.clone() }) };
    // 30 s leases: the renewal that would also carry a control comes every 10 s, so what arrives
    // within a second came by NOTIFY.
    let a = engine(store_a.clone(), "replica-a", Duration::from_secs(30), slow("a"));
    let b = engine(store_b.clone(), "replica-b", Duration::from_secs(30), slow("b"));
    let handle = a.submit(&Principal::system("test"), task(&project, 2_000, 2)).await.unwrap();
    let id = handle.id();
    until("a few targets applied", || devices.lock().effects.len() >= 5).await;

    assert_eq!(b.control(id, TaskControl::Pause).await.unwrap(), Some(TaskControl::Pause));
    let pause = until_state(&store_b, id, TaskState::Paused).await;
    // What was in flight finishes; then nothing starts while paused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = devices.lock().started;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(devices.lock().started, started, "nothing starts while paused");

    assert_eq!(b.control(id, TaskControl::Resume).await.unwrap(), None);
    let resume = until_state(&store_b, id, TaskState::Running).await;
    until("targets start again", || devices.lock().started > started).await;

    let t0 = Instant::now();
    assert_eq!(b.control(id, TaskControl::Cancel).await.unwrap(), Some(TaskControl::Cancel));
    assert_eq!(handle.wait().await, Some(TaskState::Canceled));
    let cancel = t0.elapsed();
    eprintln!("control latency across replicas: pause {pause:?}, resume {resume:?}, cancel {cancel:?}");
    for (what, took) in [("pause", pause), ("resume", resume), ("cancel", cancel)] {
        assert!(took < Duration::from_secs(1), "{what} took {took:?}: it did not come by NOTIFY");
    }
    assert!(b.handle(id).is_none(), "replica b never ran the task");
    let targets = store_b.task_targets(id, None, 10_000).await.unwrap();
    let canceled = targets.iter().filter(|t| t.state == TargetState::Canceled).count();
    assert!(canceled > 1_500, "the rest ended canceled ({canceled})");
    assert!(targets.iter().all(|t| t.state.is_terminal()), "every target ended");
    assert!(b.control(id, TaskControl::Resume).await.unwrap_err().is_conflict(), "an ended task takes no control");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_off_stops_before_its_lease_lapses_and_another_finishes_the_task_once() {
    let Some(url) = ecp_testkit::postgres::fresh_database().await else { return };
    let proxy = TcpProxy::start(upstream(&url)).await.unwrap();
    let (store_a, store_b) = (connect(&via(&url, proxy.addr())).await, connect(&url).await);
    let project = project(&store_b).await;
    let devices = Arc::new(Mutex::new(Devices::default()));
    // 300 targets of 100 ms, 4 at a time: 7.5 s of work, so replica b has some left to do.
    let slow = |who| -> Arc<dyn TargetExecutor> { Arc::new(Slow { who, delay: Duration::from_millis(100), devices: devices.clone() }) };
    let lease = Duration::from_secs(3);
    let a = engine(store_a.clone(), "replica-a", lease, slow("a"));
    let b = engine(store_b.clone(), "replica-b", lease, slow("b"));
    let takeover_a = a.spawn_takeover();
    let takeover_b = b.spawn_takeover();

    let n = 300;
    let handle = a.submit(&Principal::system("test"), task(&project, n, 4)).await.unwrap();
    let id = handle.id();
    until("a third of the targets applied", || devices.lock().effects.len() >= n / 3).await;
    proxy.cut();
    let cut = Instant::now();
    let stops = tokio::time::timeout(Duration::from_secs(15), handle.wait()).await.expect("replica a never stopped");
    assert_eq!(stops, None, "replica a stops without ending the task");
    let stopped = cut.elapsed();
    assert!(stopped < lease, "a stopped {stopped:?} after the cut, after its lease could lapse");

    let mut on_b = None;
    until("replica b takes the task over", || {
        on_b = b.handle(id);
        on_b.is_some()
    })
    .await;
    let taken = cut.elapsed();
    assert_eq!(on_b.unwrap().wait().await, Some(TaskState::Succeeded));
    eprintln!("partition: a stopped {stopped:?} after the cut; b took over after {taken:?}");

    // Replica a comes back: it applies nothing more and overwrites nothing.
    proxy.restore();
    tokio::time::sleep(lease).await;
    {
        let d = devices.lock();
        let mut per_target: HashMap<&str, usize> = HashMap::new();
        for (target, _, who, at) in &d.effects {
            *per_target.entry(target.as_str()).or_default() += 1;
            if *who == "a" {
                assert!(at.duration_since(cut) < stopped, "replica a applied {target} after it stopped");
            }
        }
        assert_eq!(per_target.len(), n, "every target applied");
        assert!(per_target.values().all(|&k| k == 1), "every target applied once");
        assert!(d.effects.iter().any(|e| e.2 == "b"), "replica b applied the rest");
    }
    let targets = store_b.task_targets(id, None, 10_000).await.unwrap();
    assert!(targets.iter().all(|t| t.state == TargetState::Succeeded), "the record is complete and nothing was overwritten");
    assert_eq!(store_a.get_task(id).await.unwrap().state(), TaskState::Succeeded, "replica a reads what b wrote");
    assert!(a.handle(id).is_none(), "replica a did not take the ended task back");
    takeover_a.abort();
    takeover_b.abort();
}

/// Each kind of signal reaches another store on the same database, after its change commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_reaches_the_other_replicas_store() {
    use ecp_core::StoreSignal;
    use ecp_core::edge::{AgentId, ReportedItem};
    let Some(url) = ecp_testkit::postgres::fresh_database().await else { return };
    let (a, b) = (connect(&url).await, connect(&url).await);
    let mut heard = b.signals().expect("a PostgreSQL store signals");
    let mut next = async || tokio::time::timeout(Duration::from_secs(5), heard.recv()).await.expect("a signal within 5 s").unwrap();

    let project = project(&a).await;
    assert_eq!(next().await, StoreSignal::Audit, "the organization's audit record");
    assert_eq!(next().await, StoreSignal::Audit, "the project's");

    let devices = Arc::new(Mutex::new(Devices::default()));
    let engine =
        engine(a.clone(), "replica-a", Duration::from_secs(30), Arc::new(Slow { who: "a", delay: Duration::from_secs(60), devices }));
    let handle = engine.submit(&Principal::system("test"), task(&project, 1, 1)).await.unwrap();
    assert_eq!(next().await, StoreSignal::Audit, "the task's creation");
    a.request_task_control(handle.id(), TaskControl::Pause, ecp_core::Timestamp::now()).await.unwrap();
    assert_eq!(next().await, StoreSignal::TaskControl(handle.id()));

    let agent = AgentId::new("edge-signal").unwrap();
    a.agent_hello(&agent, "1.0", &serde_json::json!({}), ecp_core::Timestamp::now(), u64::MAX).await.unwrap();
    let change = serde_json::json!({"kind": "ekuiper_stream", "name": "s", "sql": "CREATE STREAM s () WITH (TYPE=\"memory\")"});
    let put = a.put_desired(&agent, "k", "127.0.0.1:1", &change, ecp_core::Timestamp::now()).await.unwrap();
    let report = ReportedItem { agent: agent.clone(), key: "k".into(), version: put.item.version, ok: true, detail: serde_json::json!({}) };
    a.record_reports(&[report], ecp_core::Timestamp::now()).await.unwrap();
    assert_eq!(next().await, StoreSignal::Reported(agent));
    assert!(a.signals().is_some() && b.backend() == "postgres");
    handle.cancel().await;
}
