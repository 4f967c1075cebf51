//! The task engine's cost per target: 2,000 targets through `TaskEngine` (every transition
//! persisted to SQLite in batches, events, audit) against the baseline of the same executor driven
//! by a bare `JoinSet` with the same in-flight window, in the same run.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use ecp_core::access::Principal;
use ecp_core::prelude::*;
use ecp_core::task::{
    IdempotencyKey, NewTarget, NewTask, RolloutPolicy, TargetError, TargetExecutor, Task, TaskEngine, TaskKind, TaskTarget,
};
use ecp_core::{AuditEvent, Operation, Organization, Project, ResourceKind, SqlStore, SystemClock, TenancyLimits, Timestamp};
use tokio::task::JoinSet;

const TARGETS: usize = 2_000;
const WINDOW: usize = 64;

#[derive(Debug)]
struct Noop;

#[async_trait]
impl TargetExecutor for Noop {
    async fn apply(&self, _t: &TaskTarget, _k: &IdempotencyKey) -> Result<serde_json::Value, TargetError> {
        tokio::task::yield_now().await;
        Ok(serde_json::Value::Null)
    }
}

#[derive(Debug)]
struct NoopKind;

impl TaskKind for NoopKind {
    fn name(&self) -> &str {
        "noop"
    }
    fn executor(&self, _task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        Ok(Arc::new(Noop))
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (engine, _org, project) = rt.block_on(async {
        let store = Arc::new(SqlStore::memory().await.unwrap());
        let sys = Principal::system("bench");
        let org = Organization::new("o", Timestamp::now()).unwrap();
        store
            .create_org(
                &org,
                &TenancyLimits::default(),
                &AuditEvent::new(&sys, ResourceKind::Organization, Operation::from_static("organization.create")),
            )
            .await
            .unwrap();
        let project = Project::new(org.id, "p", Timestamp::now()).unwrap();
        store
            .create_project(
                &project,
                &TenancyLimits::default(),
                &AuditEvent::new(&sys, ResourceKind::Project, Operation::from_static("project.create")),
            )
            .await
            .unwrap();
        let engine = TaskEngine::builder(store).clock(Arc::new(SystemClock)).build().unwrap();
        engine.register(Arc::new(NoopKind)).unwrap();
        (engine, org, project)
    });
    let targets: Vec<NewTarget> = (0..TARGETS).map(|i| NewTarget::new(format!("t{i}"), format!("t{i}"))).collect();
    let mut group = c.benchmark_group("task_2000_targets");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("task_engine_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            let task = NewTask::new(project.id(), "noop", targets.clone())
                .policy(RolloutPolicy::builder().max_in_flight(WINDOW as u32).exclusive(false).build().unwrap());
            let h = engine.submit(&Principal::system("bench"), task).await.unwrap();
            assert!(h.wait().await.is_some());
        })
    });
    group.bench_function("bare_joinset_baseline", |b| {
        b.to_async(&rt).iter(|| async {
            let exec: Arc<dyn TargetExecutor> = Arc::new(Noop);
            let task_id = ecp_core::TaskId::new();
            let mut set = JoinSet::new();
            let mut next = 0;
            let mut done = 0;
            while done < TARGETS {
                while set.len() < WINDOW && next < TARGETS {
                    let t = TaskTarget::new(task_id, next as u64, format!("t{next}"), "t", serde_json::Value::Null);
                    let exec = exec.clone();
                    set.spawn(async move { exec.apply(&t, &t.key(1)).await });
                    next += 1;
                }
                set.join_next().await.unwrap().unwrap().unwrap();
                done += 1;
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
