//! The task engine against fake executors that succeed, fail, hang and panic in chosen patterns:
//! every rollout-policy rule, cancel and pause, exclusivity, events, audit, and resume after the
//! runtime is dropped or the process is killed with SIGKILL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ecp_core::access::Principal;
use ecp_core::audit::AuditQuery;
use ecp_core::audit::AuditScope;
use ecp_core::prelude::*;
use ecp_core::task::{
    IdempotencyKey, NewTarget, NewTask, RolloutPolicy, TargetError, TargetExecutor, TargetState, Task, TaskEngine, TaskEvent, TaskKind,
    TaskState, TaskTarget,
};
use ecp_core::{Organization, PageRequest, Project, SqlStore, SqlStoreConfig, SystemClock, TenancyLimits};
use parking_lot::Mutex;

/// What a fake target does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behavior {
    Succeed,
    /// Fails with a retryable error this many times, then succeeds.
    Flaky(u32),
    Fatal,
    Hang,
    Panic,
    /// Succeeds after a pause.
    Slow(u64),
}

#[derive(Default)]
struct Record {
    /// Distinct idempotency keys applied, per target.
    applied: HashMap<String, HashSet<String>>,
    /// Calls per target (duplicates of a key included).
    calls: HashMap<String, u32>,
    starts: Vec<(String, Instant)>,
    in_flight: usize,
    max_in_flight: usize,
    rolled_back: HashSet<String>,
}

struct Fake {
    behavior: Box<dyn Fn(&str) -> Behavior + Send + Sync>,
    record: Arc<Mutex<Record>>,
}

#[async_trait]
impl TargetExecutor for Fake {
    async fn apply(&self, target: &TaskTarget, key: &IdempotencyKey) -> Result<serde_json::Value, TargetError> {
        let behavior = (self.behavior)(&target.target);
        let failures_so_far = {
            let mut r = self.record.lock();
            *r.calls.entry(target.target.clone()).or_default() += 1;
            r.starts.push((target.target.clone(), Instant::now()));
            r.in_flight += 1;
            r.max_in_flight = r.max_in_flight.max(r.in_flight);
            r.calls[&target.target] - 1
        };
        struct Done(Arc<Mutex<Record>>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.lock().in_flight -= 1;
            }
        }
        let _done = Done(self.record.clone());
        let outcome = match behavior {
            Behavior::Succeed => Ok(()),
            Behavior::Flaky(n) if failures_so_far < n => Err(TargetError::retryable("service busy")),
            Behavior::Flaky(_) => Ok(()),
            Behavior::Fatal => Err(TargetError::fatal("bad configuration")),
            Behavior::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
            Behavior::Panic => panic!("executor bug"),
            Behavior::Slow(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(())
            }
        };
        outcome?;
        self.record.lock().applied.entry(target.target.clone()).or_default().insert(key.0.clone());
        Ok(serde_json::json!({ "applied": key.0 }))
    }

    async fn rollback(&self, target: &TaskTarget, _key: &IdempotencyKey) -> Result<(), TargetError> {
        self.record.lock().rolled_back.insert(target.target.clone());
        Ok(())
    }
}

struct FakeKind {
    name: &'static str,
    executor: Mutex<Option<Arc<dyn TargetExecutor>>>,
}

impl std::fmt::Debug for FakeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl TaskKind for FakeKind {
    fn name(&self) -> &str {
        self.name
    }
    fn rolls_back(&self) -> bool {
        true
    }
    fn executor(&self, _task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        Ok(self.executor.lock().clone().expect("executor set"))
    }
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fake")
    }
}

struct Setup {
    store: Arc<SqlStore>,
    engine: TaskEngine,
    org: Organization,
    project: Project,
    record: Arc<Mutex<Record>>,
    kind: Arc<FakeKind>,
}

async fn setup_with(store: Arc<SqlStore>, behavior: impl Fn(&str) -> Behavior + Send + Sync + 'static) -> Setup {
    let org = Organization::new("acme", ecp_core::Timestamp::now()).unwrap();
    let ev = |op: &str| {
        ecp_core::AuditEvent::new(&Principal::system("t"), ecp_core::ResourceKind::Organization, ecp_core::Operation::new(op).unwrap())
    };
    store.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "plant", ecp_core::Timestamp::now()).unwrap();
    store.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let fake: Arc<dyn TargetExecutor> = Arc::new(Fake { behavior: Box::new(behavior), record: record.clone() });
    let kind = Arc::new(FakeKind { name: "fake_delivery", executor: Mutex::new(Some(fake)) });
    let engine = TaskEngine::builder(store.clone()).clock(Arc::new(SystemClock)).build().unwrap();
    engine.register(kind.clone()).unwrap();
    Setup { store, engine, org, project, record, kind }
}

async fn setup(behavior: impl Fn(&str) -> Behavior + Send + Sync + 'static) -> Setup {
    setup_with(Arc::new(SqlStore::memory().await.unwrap()), behavior).await
}

fn targets(n: usize) -> Vec<NewTarget> {
    (0..n).map(|i| NewTarget::new(format!("t{i:05}"), format!("edge {i}"))).collect()
}

fn idx(target: &str) -> usize {
    target[1..].parse().unwrap()
}

impl Setup {
    fn task(&self, n: usize, policy: RolloutPolicy) -> NewTask {
        NewTask::new(self.project.id(), "fake_delivery", targets(n)).spec(serde_json::json!({ "template": "x" })).policy(policy)
    }

    async fn states(&self, task: ecp_core::TaskId) -> Vec<TaskTarget> {
        self.store.task_targets(task, None, 100_000).await.unwrap()
    }

    fn applied_once_each(&self, which: impl Iterator<Item = String>) {
        let r = self.record.lock();
        for t in which {
            let keys = r.applied.get(&t).map_or(0, HashSet::len);
            assert_eq!(keys, 1, "{t} applied {keys} times");
        }
    }
}

fn policy() -> ecp_core::task::RolloutPolicyBuilder {
    RolloutPolicy::builder().retries(1, Duration::from_millis(1), Duration::from_millis(5)).target_timeout(Duration::from_secs(5))
}

fn admin() -> Principal {
    Principal::system("test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_targets_succeed_within_the_window() {
    let s = setup(|_| Behavior::Slow(2)).await;
    let handle = s.engine.submit(&admin(), s.task(1000, policy().max_in_flight(50).build().unwrap())).await.unwrap();
    let mut events = handle.subscribe();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    let targets = s.states(handle.id()).await;
    assert!(targets.iter().all(|t| t.state == TargetState::Succeeded && t.attempt == 1));
    assert!(targets.iter().all(|t| t.result.is_some()));
    let max = s.record.lock().max_in_flight;
    assert!(max <= 50, "in flight {max}");
    assert!(max >= 10, "the window was used: {max}");
    s.applied_once_each(targets.iter().map(|t| t.target.clone()));
    let (task, totals) = s.engine.progress(handle.id()).await.unwrap();
    assert_eq!((task.state(), totals.succeeded, totals.total), (TaskState::Succeeded, 1000, 1000));
    assert!(task.started_at().is_some() && task.finished_at().is_some());
    // Events flowed (a late subscriber sees at least the end).
    let mut last = None;
    while let Ok(e) = events.try_recv() {
        last = Some(e);
    }
    let _ = last;
    // One audit record at creation and one at the end, with every target's result.
    let q = AuditQuery { resource_id: Some(handle.id().to_string()), ..Default::default() };
    let records = s.store.query_audit(&q, &AuditScope { all: true, ..Default::default() }, &PageRequest::first(10)).await.unwrap().items;
    let ops: Vec<_> = records.iter().map(|r| r.event.operation.as_str().to_owned()).collect();
    assert_eq!(ops, vec!["fake_delivery.finish", "fake_delivery.create"]);
    assert_eq!(records[0].event.details["targets"].as_array().unwrap().len(), 1000);
    assert_eq!(records[0].event.project.as_ref().unwrap().id, s.project.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_every_transition() {
    let s = setup(|_| Behavior::Slow(5)).await;
    let handle = s.engine.submit(&admin(), s.task(5, policy().max_in_flight(1).build().unwrap())).await.unwrap();
    let mut events = handle.subscribe();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv()).await.expect("events in time").unwrap();
        let end = matches!(e, TaskEvent::Task { state, .. } if state.is_terminal());
        seen.push(e);
        if end {
            break;
        }
    }
    let succeeded = seen.iter().filter(|e| matches!(e, TaskEvent::Target { state: TargetState::Succeeded, .. })).count();
    assert!(succeeded >= 4, "subscribed right after submit: at most the first start was missed ({succeeded})");
    match seen.last().unwrap() {
        TaskEvent::Task { state, totals, .. } => assert_eq!((*state, totals.succeeded), (TaskState::Succeeded, 5)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_all_sees_every_task_with_its_kind_and_project() {
    let s = setup(|t| if idx(t) == 2 { Behavior::Fatal } else { Behavior::Succeed }).await;
    let mut all = s.engine.subscribe_all();
    // One after the other: the kind is exclusive in its project.
    let a = s.engine.submit(&admin(), s.task(3, policy().build().unwrap())).await.unwrap();
    assert_eq!(a.wait().await, Some(TaskState::Failed));
    let b = s.engine.submit(&admin(), s.task(2, policy().build().unwrap())).await.unwrap();
    assert_eq!(b.wait().await, Some(TaskState::Succeeded));
    let mut ended = HashMap::new();
    let mut targets_done = 0;
    while ended.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(10), all.recv()).await.expect("events in time").unwrap();
        assert_eq!((&*e.kind, e.org, e.project), ("fake_delivery", s.org.id, s.project.id()));
        match e.event {
            TaskEvent::Task { task, state, .. } if state.is_terminal() => {
                ended.insert(task, state);
            }
            TaskEvent::Target { state, .. } if state.is_terminal() => targets_done += 1,
            _ => {}
        }
    }
    assert_eq!(ended, HashMap::from([(a.id(), TaskState::Failed), (b.id(), TaskState::Succeeded)]));
    assert_eq!(targets_done, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_are_retried_fatal_ones_are_not() {
    // t0..t9 fail twice then succeed; t10..t19 fail fatally; the rest succeed.
    let s = setup(|t| match idx(t) {
        0..=9 => Behavior::Flaky(2),
        10..=19 => Behavior::Fatal,
        _ => Behavior::Succeed,
    })
    .await;
    let p = policy().retries(3, Duration::from_millis(1), Duration::from_millis(10)).max_in_flight(8).build().unwrap();
    let handle = s.engine.submit(&admin(), s.task(40, p)).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Failed));
    for t in s.states(handle.id()).await {
        match idx(&t.target) {
            0..=9 => assert_eq!((t.state, t.attempt), (TargetState::Succeeded, 3), "{}", t.target),
            10..=19 => {
                assert_eq!((t.state, t.attempt), (TargetState::Failed, 1), "fatal errors are not retried");
                assert_eq!(t.reason.as_deref(), Some("bad configuration"));
            }
            _ => assert_eq!((t.state, t.attempt), (TargetState::Succeeded, 1)),
        }
    }
    // With one attempt fewer, the flaky targets fail with their last reason.
    let s2 = setup(|_| Behavior::Flaky(2)).await;
    let p = policy().retries(2, Duration::from_millis(1), Duration::from_millis(5)).build().unwrap();
    let h2 = s2.engine.submit(&admin(), s2.task(5, p)).await.unwrap();
    assert_eq!(h2.wait().await, Some(TaskState::Failed));
    assert!(
        s2.states(h2.id())
            .await
            .iter()
            .all(|t| t.state == TargetState::Failed && t.attempt == 2 && t.reason.as_deref() == Some("service busy"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_waits_between_attempts() {
    let s = setup(|_| Behavior::Flaky(2)).await;
    // Full jitter: each wait is uniform in [0, cap]; with a 50 ms base the expected total wait over
    // 2 retries of 10 targets is far above zero, so check the attempts were spread out at all.
    let p = policy().retries(3, Duration::from_millis(50), Duration::from_millis(50)).max_in_flight(10).build().unwrap();
    let handle = s.engine.submit(&admin(), s.task(10, p)).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    let r = s.record.lock();
    let first = r.starts.iter().map(|(_, at)| *at).min().unwrap();
    let last = r.starts.iter().map(|(_, at)| *at).max().unwrap();
    assert!(last - first >= Duration::from_millis(20), "retries waited: {:?}", last - first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_targets_time_out_and_panics_fail_their_target() {
    let s = setup(|t| match idx(t) {
        0..=2 => Behavior::Hang,
        3 => Behavior::Panic,
        _ => Behavior::Succeed,
    })
    .await;
    let p =
        policy().target_timeout(Duration::from_millis(100)).retries(2, Duration::from_millis(1), Duration::from_millis(1)).build().unwrap();
    let handle = s.engine.submit(&admin(), s.task(10, p)).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(30), handle.wait()).await.unwrap(), Some(TaskState::Failed));
    for t in s.states(handle.id()).await {
        match idx(&t.target) {
            0..=2 => {
                assert_eq!((t.state, t.attempt), (TargetState::TimedOut, 2), "timeouts retried once");
                assert!(t.reason.as_deref().unwrap().contains("no answer within"));
            }
            3 => assert_eq!((t.state, t.reason.as_deref()), (TargetState::Failed, Some("the executor panicked"))),
            _ => assert_eq!(t.state, TargetState::Succeeded),
        }
    }
    // Without retrying timeouts: one attempt.
    let s2 = setup(|_| Behavior::Hang).await;
    let p = policy()
        .target_timeout(Duration::from_millis(50))
        .retries(3, Duration::from_millis(1), Duration::from_millis(1))
        .retry_timeouts(false)
        .build()
        .unwrap();
    let h2 = s2.engine.submit(&admin(), s2.task(3, p)).await.unwrap();
    assert_eq!(h2.wait().await, Some(TaskState::Failed));
    assert!(s2.states(h2.id()).await.iter().all(|t| t.state == TargetState::TimedOut && t.attempt == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_abort_rule_stops_the_rollout_and_rolls_back() {
    // The first 300 of 1,000 fail: with a 30% threshold after 50 finished, the task aborts early.
    let s = setup(|t| if idx(t) % 10 < 4 { Behavior::Fatal } else { Behavior::Slow(1) }).await;
    let p = policy().max_in_flight(10).abort_when(0.3, 50).rollback_on_abort(true).build().unwrap();
    let handle = s.engine.submit(&admin(), s.task(1000, p)).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Aborted));
    let targets = s.states(handle.id()).await;
    let count = |st| targets.iter().filter(|t| t.state == st).count();
    let started = 1000 - count(TargetState::Canceled);
    assert!((50..=50 + 10 + 10).contains(&started), "stopped soon after the rule applied: {started} started");
    assert_eq!(count(TargetState::Succeeded), 0, "every success was rolled back");
    assert!(count(TargetState::RolledBack) > 0);
    assert_eq!(count(TargetState::RolledBack), s.record.lock().rolled_back.len());
    assert!(targets.iter().filter(|t| t.state == TargetState::Canceled).all(|t| t.reason.as_deref().unwrap().contains("aborted")));
    let (task, _) = s.engine.progress(handle.id()).await.unwrap();
    assert!(task.reason().unwrap().contains("too many failures"));
    // The minimum sample holds the rule back: 4 failures out of 10 finished do not abort yet.
    let s2 = setup(|t| if idx(t) < 4 { Behavior::Fatal } else { Behavior::Succeed }).await;
    let p = policy().max_in_flight(1).abort_when(0.3, 20).build().unwrap();
    let h2 = s2.engine.submit(&admin(), s2.task(30, p)).await.unwrap();
    assert_eq!(h2.wait().await, Some(TaskState::Failed), "4/30 never reaches 30% once 20 finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_mode_stops_at_the_first_failure() {
    let s = setup(|t| if idx(t) == 7 { Behavior::Fatal } else { Behavior::Succeed }).await;
    let p = policy().serial(true).max_in_flight(100).build().unwrap();
    let handle = s.engine.submit(&admin(), s.task(20, p)).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Failed));
    let targets = s.states(handle.id()).await;
    for t in &targets {
        let expected = match idx(&t.target) {
            0..=6 => TargetState::Succeeded,
            7 => TargetState::Failed,
            _ => TargetState::Canceled,
        };
        assert_eq!(t.state, expected, "{}", t.target);
    }
    assert_eq!(s.record.lock().max_in_flight, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_and_exponential_rates_pace_the_starts() {
    // 1,200 per minute: one start every 50 ms.
    let s = setup(|_| Behavior::Succeed).await;
    let handle = s.engine.submit(&admin(), s.task(8, policy().constant_rate(1200).build().unwrap())).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    let starts: Vec<Instant> = s.record.lock().starts.iter().map(|(_, at)| *at).collect();
    for w in starts.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_millis(45), "gap {:?}", w[1] - w[0]);
    }
    // Exponential: 600/min (100 ms), doubling after every 2 successes, capped at 4,800/min (12.5 ms).
    let s = setup(|_| Behavior::Succeed).await;
    let p = policy().max_in_flight(1).exponential_rate(600, 2.0, 2, 4800).build().unwrap();
    let handle = s.engine.submit(&admin(), s.task(10, p)).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    let starts: Vec<Instant> = s.record.lock().starts.iter().map(|(_, at)| *at).collect();
    // Start i+1 is paced by the rate after the i+1 successes before it (the executor answers at once).
    let expected_ms = [100.0, 50.0, 50.0, 25.0, 25.0, 12.5, 12.5, 12.5, 12.5];
    for (i, w) in starts.windows(2).enumerate() {
        let floor = Duration::from_secs_f64(expected_ms[i] * 0.9 / 1000.0);
        assert!(w[1] - w[0] >= floor, "gap {i} {:?} below {floor:?}", w[1] - w[0]);
    }
    assert!(starts[1] - starts[0] > starts[9] - starts[8], "the rate grew");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel() {
    let s = setup(|_| Behavior::Slow(20)).await;
    let handle = s.engine.submit(&admin(), s.task(200, policy().max_in_flight(4).build().unwrap())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.pause().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls_paused = s.record.lock().calls.len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.record.lock().calls.len(), calls_paused, "nothing starts while paused");
    assert_eq!(s.engine.progress(handle.id()).await.unwrap().0.state(), TaskState::Paused);
    handle.resume().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.record.lock().calls.len() > calls_paused, "starts again");
    handle.cancel().await;
    assert_eq!(handle.wait().await, Some(TaskState::Canceled));
    let targets = s.states(handle.id()).await;
    let canceled = targets.iter().filter(|t| t.state == TargetState::Canceled).count();
    assert!(canceled > 0 && targets.iter().all(|t| t.state.is_terminal()));
    assert_eq!(canceled + targets.iter().filter(|t| t.state == TargetState::Succeeded).count(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_exclusive_task_of_a_kind_per_project() {
    let s = setup(|_| Behavior::Slow(50)).await;
    let first = s.engine.submit(&admin(), s.task(4, policy().max_in_flight(1).build().unwrap())).await.unwrap();
    let err = s.engine.submit(&admin(), s.task(1, policy().build().unwrap())).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    // A non-exclusive task may run alongside.
    let side = s.engine.submit(&admin(), s.task(1, policy().exclusive(false).build().unwrap())).await.unwrap();
    assert_eq!(side.wait().await, Some(TaskState::Succeeded));
    assert_eq!(first.wait().await, Some(TaskState::Succeeded));
    let again = s.engine.submit(&admin(), s.task(1, policy().build().unwrap())).await.unwrap();
    assert_eq!(again.wait().await, Some(TaskState::Succeeded));
    // Bad submissions.
    let mut none = s.task(0, policy().build().unwrap());
    assert!(s.engine.submit(&admin(), none.clone()).await.is_err());
    none.kind = "unknown".into();
    none.targets = targets(1);
    assert!(s.engine.submit(&admin(), none).await.unwrap_err().is_not_found());
    let mut dup = s.task(2, policy().build().unwrap());
    dup.targets[1].id = dup.targets[0].id.clone();
    assert!(s.engine.submit(&admin(), dup).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_targets_complete() {
    let s = setup(|_| Behavior::Succeed).await;
    let started = Instant::now();
    let handle = s.engine.submit(&admin(), s.task(10_000, policy().max_in_flight(200).build().unwrap())).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    let totals = s.store.task_totals(handle.id()).await.unwrap();
    assert_eq!(totals.succeeded, 10_000);
    eprintln!("10,000 targets in {:?}", started.elapsed());
}

/// Drops the runtime running a task mid-way (the in-memory state is lost, as in a crash), then
/// resumes from the store: every target ends applied exactly once.
#[test]
fn resume_after_the_runtime_is_dropped_applies_every_target_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.db");
    let record = Arc::new(Mutex::new(Record::default()));
    let make = |record: Arc<Mutex<Record>>| {
        let db = db.clone();
        move || async move {
            let store = Arc::new(SqlStore::connect(SqlStoreConfig::sqlite_file(&db).build().unwrap()).await.unwrap());
            let fake: Arc<dyn TargetExecutor> = Arc::new(Fake { behavior: Box::new(|_| Behavior::Slow(5)), record });
            let kind = Arc::new(FakeKind { name: "fake_delivery", executor: Mutex::new(Some(fake)) });
            let engine = TaskEngine::builder(store.clone()).clock(Arc::new(SystemClock)).owner("node-a").build().unwrap();
            engine.register(kind).unwrap();
            (store, engine)
        }
    };
    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let task_id = first.block_on(async {
        let (store, engine) = make(record.clone())().await;
        let s = Setup {
            store,
            engine,
            org: Organization::new("x", ecp_core::Timestamp::now()).unwrap(),
            project: Project::new(ecp_core::OrgId::new(), "p", ecp_core::Timestamp::now()).unwrap(),
            record: record.clone(),
            kind: Arc::new(FakeKind { name: "unused", executor: Mutex::new(None) }),
        };
        let ev = |op: &str| {
            ecp_core::AuditEvent::new(&Principal::system("t"), ecp_core::ResourceKind::Organization, ecp_core::Operation::new(op).unwrap())
        };
        s.store.create_org(&s.org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
        let project = Project::new(s.org.id, "p", ecp_core::Timestamp::now()).unwrap();
        s.store.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
        let new = NewTask::new(project.id(), "fake_delivery", targets(300))
            .spec(serde_json::json!({}))
            .policy(policy().max_in_flight(8).build().unwrap());
        let handle = s.engine.submit(&admin(), new).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while record.lock().applied.len() < 60 {
            assert!(Instant::now() < deadline, "the task did not progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handle.id()
    });
    first.shutdown_timeout(Duration::from_millis(0));
    let applied_before = record.lock().applied.len();
    assert!(applied_before < 300, "the crash came mid-way ({applied_before} applied)");

    let second = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    second.block_on(async {
        let (store, engine) = make(record.clone())().await;
        let handles = engine.resume().await.unwrap();
        assert_eq!(handles.len(), 1);
        assert_eq!(handles[0].wait().await, Some(TaskState::Succeeded));
        let targets = store.task_targets(task_id, None, 1000).await.unwrap();
        assert!(targets.iter().all(|t| t.state == TargetState::Succeeded));
        let r = record.lock();
        for t in &targets {
            assert_eq!(r.applied.get(&t.target).map_or(0, HashSet::len), 1, "{} applied once", t.target);
        }
    });
}

/// The kill test: a child process runs a task and is killed with SIGKILL mid-way; the parent resumes
/// it from the same SQLite file. The targets record their applications in a second database with
/// the idempotency key as primary key, as a deduplicating service would: every target ends with
/// exactly one application.
#[test]
fn resume_after_sigkill_applies_every_target_exactly_once() {
    if let Ok(dir) = std::env::var("ECP_TASK_KILL_CHILD") {
        child(std::path::Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args(["--exact", &this_test_path("resume_after_sigkill_applies_every_target_exactly_once"), "--nocapture", "--test-threads", "1"])
        .env("ECP_TASK_KILL_CHILD", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let applied_db = dir.path().join("applied.db");
        let deadline = Instant::now() + Duration::from_secs(60);
        // Wait until the child has applied a good part of the task, then kill it.
        loop {
            assert!(Instant::now() < deadline, "the child made no progress");
            if let Some(n) = applied_count(&applied_db).await
                && n >= 150
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the child exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let before = applied_count(&applied_db).await.unwrap();
        assert!(before < 1000, "killed mid-way ({before} applied)");

        let (store, engine) = kill_engine(dir.path()).await;
        let handles = engine.resume().await.unwrap();
        assert_eq!(handles.len(), 1, "the killed task is resumed");
        assert_eq!(tokio::time::timeout(Duration::from_secs(120), handles[0].wait()).await.unwrap(), Some(TaskState::Succeeded));
        let targets = store.task_targets(handles[0].id(), None, 10_000).await.unwrap();
        assert_eq!(targets.len(), 1000);
        assert!(targets.iter().all(|t| t.state == TargetState::Succeeded));
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", applied_db.display())).await.unwrap();
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT target, COUNT(*) FROM applied GROUP BY target").fetch_all(&pool).await.unwrap();
        assert_eq!(rows.len(), 1000, "every target applied");
        assert!(rows.iter().all(|(_, n)| *n == 1), "every target applied exactly once");
    });
}

async fn applied_count(db: &std::path::Path) -> Option<i64> {
    if !db.exists() {
        return None;
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display())).await.ok()?;
    let n: Option<(i64,)> = sqlx::query_as("SELECT COUNT(*) FROM applied").fetch_optional(&pool).await.ok()?;
    pool.close().await;
    n.map(|(n,)| n)
}

/// Applies a target by inserting its key into a database: a second application of the same key is
/// a no-op, like a service that deduplicates on the idempotency key.
#[derive(Debug)]
struct Durable(sqlx::AnyPool);

#[async_trait]
impl TargetExecutor for Durable {
    async fn apply(&self, target: &TaskTarget, key: &IdempotencyKey) -> Result<serde_json::Value, TargetError> {
        tokio::time::sleep(Duration::from_millis(3)).await;
        sqlx::query("INSERT INTO applied (key, target) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key.0.clone())
            .bind(target.target.clone())
            .execute(&self.0)
            .await
            .map_err(TargetError::retryable)?;
        Ok(serde_json::Value::Null)
    }
}

#[derive(Debug)]
struct DurableKind(Arc<Durable>);

impl TaskKind for DurableKind {
    fn name(&self) -> &str {
        "durable_delivery"
    }
    fn executor(&self, _task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        Ok(self.0.clone())
    }
}

async fn kill_engine(dir: &std::path::Path) -> (Arc<SqlStore>, TaskEngine) {
    let store = Arc::new(SqlStore::connect(SqlStoreConfig::sqlite_file(dir.join("store.db")).build().unwrap()).await.unwrap());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=rwc", dir.join("applied.db").display())).await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY, target TEXT NOT NULL)").execute(&pool).await.unwrap();
    let engine = TaskEngine::builder(store.clone()).clock(Arc::new(SystemClock)).owner("node-a").build().unwrap();
    engine.register(Arc::new(DurableKind(Arc::new(Durable(pool))))).unwrap();
    (store, engine)
}

fn child(dir: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (store, engine) = kill_engine(dir).await;
        let ev = |op: &str| {
            ecp_core::AuditEvent::new(&Principal::system("t"), ecp_core::ResourceKind::Organization, ecp_core::Operation::new(op).unwrap())
        };
        let org = Organization::new("acme", ecp_core::Timestamp::now()).unwrap();
        store.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
        let project = Project::new(org.id, "p", ecp_core::Timestamp::now()).unwrap();
        store.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
        let new = NewTask::new(project.id(), "durable_delivery", targets(1000))
            .spec(serde_json::json!({}))
            .policy(policy().max_in_flight(10).build().unwrap());
        let handle = engine.submit(&admin(), new).await.unwrap();
        handle.wait().await;
        // The parent kills this process long before the task ends.
        std::process::exit(3);
    });
}

#[allow(dead_code)]
fn unused(s: &Setup) -> &Arc<FakeKind> {
    &s.kind
}

/// The name libtest knows a test of this module by (`task_engine::name`): the module path without
/// the test binary's own name.
fn this_test_path(name: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{name}"),
        None => name.to_owned(),
    }
}

/// A kind that keeps the secrets its executor was given.
#[derive(Debug)]
struct SecretKind {
    seen: Arc<Mutex<Vec<Option<serde_json::Value>>>>,
    executor: Arc<dyn TargetExecutor>,
}

impl TaskKind for SecretKind {
    fn name(&self) -> &str {
        "secret_install"
    }
    fn executor(&self, task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        self.seen.lock().push(task.secrets().map(|s| s.expose().clone()));
        Ok(self.executor.clone())
    }
}

/// A task's secrets reach its kind, and nobody who reads the task: not its spec, not `Debug`,
/// not the store's answers, not the database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_secrets_reach_the_kind_and_no_reader() {
    const SENTINEL: &str = "sentinel-task-secret-3c9d";
    let dir = tempfile::tempdir().unwrap();
    let config = ecp_core::SqlStoreConfig::sqlite_file(dir.path().join("ecp.db"))
        .keys(Arc::new(ecp_core::sealing::StaticKeys::new("k1", [4u8; 32]).unwrap()))
        .build()
        .unwrap();
    let s = setup_with(Arc::new(SqlStore::connect(config).await.unwrap()), |_| Behavior::Succeed).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let executor = s.kind.executor.lock().clone().unwrap();
    s.engine.register(Arc::new(SecretKind { seen: seen.clone(), executor })).unwrap();
    let new = NewTask::new(s.project.id(), "secret_install", targets(3))
        .spec(serde_json::json!({ "image": "emqx/neuronex:3.6" }))
        .secrets(serde_json::json!({ "env": { "API_TOKEN": SENTINEL } }));
    assert!(!format!("{new:?}").contains(SENTINEL));
    let handle = s.engine.submit(&admin(), new).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    assert_eq!(seen.lock().as_slice(), [Some(serde_json::json!({ "env": { "API_TOKEN": SENTINEL } }))]);
    let stored = s.store.get_task(handle.id()).await.unwrap();
    assert!(stored.secrets().is_none());
    let listed = s.store.list_tasks(s.project.id(), &PageRequest::first(10)).await.unwrap();
    for text in [format!("{stored:?}"), format!("{listed:?}"), stored.spec().to_string()] {
        assert!(!text.contains(SENTINEL), "{text}");
    }
    let opened = s.store.task_secrets(handle.id()).await.unwrap().unwrap();
    assert_eq!(opened.expose()["env"]["API_TOKEN"], SENTINEL);
    s.store.close().await;
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        assert!(!bytes.windows(SENTINEL.len()).any(|w| w == SENTINEL.as_bytes()), "the secret is readable in the database files");
    }
}

/// A kind whose executors cannot undo an apply refuses `rollback_on_abort` at submit with
/// `Unsupported`, storing nothing; without it, the same task runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_on_abort_needs_a_kind_that_rolls_back() {
    let s = setup(|_| Behavior::Succeed).await;
    let executor = s.kind.executor.lock().clone().unwrap();
    s.engine.register(Arc::new(SecretKind { seen: Arc::default(), executor })).unwrap();
    let with_rollback = policy().abort_when(0.3, 5).rollback_on_abort(true).build().unwrap();
    let new = NewTask::new(s.project.id(), "secret_install", targets(3)).spec(serde_json::json!({})).policy(with_rollback.clone());
    let e = s.engine.submit(&admin(), new).await.unwrap_err();
    assert!(e.is_unsupported(), "{e}");
    assert!(s.store.list_tasks(s.project.id(), &PageRequest::first(10)).await.unwrap().items.is_empty(), "nothing stored");
    // The fake kind rolls back: the same policy is taken.
    let new = NewTask::new(s.project.id(), "fake_delivery", targets(3)).spec(serde_json::json!({})).policy(with_rollback);
    assert_eq!(s.engine.submit(&admin(), new).await.unwrap().wait().await, Some(TaskState::Succeeded));
}

/// An orphan task of one target: stored, never leased, never started (its replica died first).
async fn orphan(s: &Setup) -> Task {
    let orphan = Task::pending(
        s.org.id,
        s.project.id(),
        "fake_delivery",
        serde_json::json!({}),
        policy().exclusive(false).build().unwrap(),
        (&admin()).into(),
        ecp_core::Timestamp::now(),
    );
    let orphan_targets = vec![TaskTarget::new(orphan.id(), 0, "t00000", "edge 0", serde_json::Value::Null)];
    let ev =
        ecp_core::AuditEvent::new(&admin(), ecp_core::ResourceKind::EdgeService, ecp_core::Operation::new("fake_delivery.create").unwrap());
    s.store.create_task(&orphan, &orphan_targets, None, &ev).await.unwrap();
    orphan
}

/// Submitting a task leases that task alone: a task no engine runs (its replica died before
/// running it) stays for `resume` to take, instead of being claimed by the submit and left
/// unstarted until the lease lapses; and the new task is the submitter's from its insert on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_leases_only_its_own_task() {
    let s = setup(|_| Behavior::Succeed).await;
    let orphan = orphan(&s).await;

    let handle = s.engine.submit(&admin(), s.task(3, policy().exclusive(false).build().unwrap())).await.unwrap();
    assert_eq!(handle.wait().await, Some(TaskState::Succeeded));
    // Another replica's engine, on the same store, finds the orphan claimable and runs it.
    let other = TaskEngine::builder(s.store.clone()).clock(Arc::new(SystemClock)).owner("node-b").build().unwrap();
    other.register(s.kind.clone()).unwrap();
    let resumed = other.resume().await.unwrap();
    assert_eq!(resumed.iter().map(|h| h.id()).collect::<Vec<_>>(), vec![orphan.id()], "the submit left it alone");
    assert_eq!(resumed[0].wait().await, Some(TaskState::Succeeded));
}

/// A replica whose engine does not run a task's kind does not lease the task: it stays for a
/// replica that runs it, at once (not after a lease of a replica that never runs it lapses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_a_kind_an_engine_lacks_is_left_for_one_that_runs_it() {
    let s = setup(|_| Behavior::Succeed).await;
    let orphan = orphan(&s).await;

    let lacking = TaskEngine::builder(s.store.clone()).clock(Arc::new(SystemClock)).owner("node-b").build().unwrap();
    assert!(lacking.resume().await.unwrap().is_empty(), "no kinds, nothing claimed");
    let resumed = s.engine.resume().await.unwrap();
    assert_eq!(resumed.iter().map(|h| h.id()).collect::<Vec<_>>(), vec![orphan.id()], "the engine with the kind takes it at once");
    assert_eq!(resumed[0].wait().await, Some(TaskState::Succeeded));
}
