use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::access::Principal;
use ecp_core::audit::Actor;
use ecp_core::prelude::*;
use ecp_core::task::{
    IdempotencyKey, LeaseRenewal, NewTarget, NewTask, RolloutPolicy, TargetError, TargetExecutor, TargetState, TargetUpdate, Task,
    TaskControl, TaskEngine, TaskKind, TaskState, TaskTarget,
};
use ecp_core::{Organization, PageRequest, Project, TaskId, TenancyLimits};

use super::ev;
use crate::store_conformance::Fixture;

async fn project(f: &Fixture) -> (Organization, Project) {
    let o = Organization::new("acme", f.clock.now()).unwrap();
    f.store.create_org(&o, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let p = Project::new(o.id, "p", f.clock.now()).unwrap();
    f.store.create_project(&p, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    (o, p)
}

/// The kinds of this suite's tasks, as an engine running all of them claims.
const KINDS: &[&str] = &["delivery", "other", "full", "other2", "leased"];

fn task(f: &Fixture, o: &Organization, p: &Project, kind: &str, exclusive: bool) -> Task {
    let now = f.clock.now();
    Task::pending(
        o.id,
        p.id(),
        kind,
        serde_json::json!({ "template": "t", "version": 3 }),
        RolloutPolicy::builder().exclusive(exclusive).build().unwrap(),
        Actor::from(&Principal::system("conformance")),
        now,
    )
}

pub(crate) async fn tasks_targets_exclusivity_and_leases(f: &Fixture) {
    let s = f.store.as_ref();
    let (o, p) = project(f).await;
    let t = task(f, &o, &p, "delivery", true);
    let targets: Vec<TaskTarget> =
        (0..1000).map(|i| TaskTarget::new(t.id(), i, format!("svc-{i}"), format!("edge {i}"), serde_json::json!({ "i": i }))).collect();
    s.create_task(&t, &targets, None, &ev("delivery.create")).await.unwrap();
    assert_eq!(s.get_task(t.id()).await.unwrap(), t);
    let back = s.task_targets(t.id(), None, 10_000).await.unwrap();
    assert_eq!(back, targets, "targets come back in order, whole");
    assert_eq!(s.task_targets(t.id(), Some(997), 10).await.unwrap().len(), 2);
    assert_eq!(s.task_totals(t.id()).await.unwrap().pending, 1000);

    // One exclusive task of a kind per project; other kinds and non-exclusive ones are fine.
    let second = task(f, &o, &p, "delivery", true);
    assert!(s.create_task(&second, &[], None, &ev("delivery.create")).await.unwrap_err().is_conflict());
    s.create_task(&task(f, &o, &p, "upgrade", true), &[], None, &ev("upgrade.create")).await.unwrap();
    s.create_task(&task(f, &o, &p, "delivery", false), &[], None, &ev("delivery.create")).await.unwrap();
    // A target listed twice refuses the whole task.
    let dup = task(f, &o, &p, "other", false);
    let twice = vec![
        TaskTarget::new(dup.id(), 0, "a", "a", serde_json::Value::Null),
        TaskTarget::new(dup.id(), 1, "a", "a", serde_json::Value::Null),
    ];
    assert!(s.create_task(&dup, &twice, None, &ev("other.create")).await.is_err());
    assert!(s.get_task(dup.id()).await.unwrap_err().is_not_found());
    // Every field of a target comes back exactly, hostile text included (targets go in as JSON rows).
    let full_task = task(f, &o, &p, "full", false);
    let text = "quote ' \" back \\ 中文 🚀 \u{2028} $1 --";
    let mut full =
        TaskTarget::new(full_task.id(), u64::from(u32::MAX) + 7, text, text, serde_json::json!({ "k": text, "n": [1, 2.5, null] }));
    full.state = TargetState::Failed;
    full.attempt = 3;
    full.reason = Some(text.to_owned());
    full.result = Some(serde_json::json!({ "detail": text }));
    full.started_at = Some(f.clock.now());
    full.finished_at = Some(f.clock.now());
    full.next_attempt_at = Some(f.clock.now());
    s.create_task(&full_task, std::slice::from_ref(&full), None, &ev("full.create")).await.unwrap();
    assert_eq!(s.task_targets(full_task.id(), None, 10).await.unwrap(), vec![full]);
    // A target of another task is refused, and so is the task.
    let other = task(f, &o, &p, "other2", false);
    let stray = vec![TaskTarget::new(t.id(), 0, "a", "a", serde_json::Value::Null)];
    assert!(s.create_task(&other, &stray, None, &ev("other2.create")).await.is_err());
    assert!(s.get_task(other.id()).await.unwrap_err().is_not_found());

    // Updates in one batch.
    let mut done = targets[0].clone();
    done.state = TargetState::Succeeded;
    done.attempt = 2;
    done.result = Some(serde_json::json!({ "ok": true }));
    done.finished_at = Some(f.clock.now());
    let mut failed = targets[1].clone();
    failed.state = TargetState::Failed;
    failed.attempt = 1;
    failed.reason = Some("bad".into());
    s.update_targets(&[TargetUpdate::of(&done), TargetUpdate::of(&failed)], None).await.unwrap();
    let back = s.task_targets(t.id(), None, 2).await.unwrap();
    assert_eq!(back, vec![done, failed]);
    let totals = s.task_totals(t.id()).await.unwrap();
    assert_eq!((totals.succeeded, totals.failed, totals.pending), (1, 1, 998));

    // Leases: one owner at a time, taken over once expired; only by an owner that runs the kind.
    let lease = Duration::from_secs(30);
    assert!(s.claim_tasks("node-x", f.clock.now(), lease, &["other_kind"]).await.unwrap().is_empty(), "not a kind node-x runs");
    assert!(s.claim_tasks("node-x", f.clock.now(), lease, &[]).await.unwrap().is_empty());
    let mine = s.claim_tasks("node-a", f.clock.now(), lease, KINDS).await.unwrap();
    assert!(mine.contains(&t.id()));
    assert!(s.claim_tasks("node-b", f.clock.now(), lease, KINDS).await.unwrap().is_empty());
    assert_eq!(
        s.renew_lease(t.id(), "node-a", ecp_core::clock::add(f.clock.now(), lease)).await.unwrap(),
        LeaseRenewal::Held { control: None }
    );
    assert_eq!(s.renew_lease(t.id(), "node-b", f.clock.now()).await.unwrap(), LeaseRenewal::Lost);
    let later = ecp_core::clock::add(f.clock.now(), Duration::from_secs(31));
    assert!(s.claim_tasks("node-b", later, lease, KINDS).await.unwrap().contains(&t.id()));
    assert_eq!(s.renew_lease(t.id(), "node-a", later).await.unwrap(), LeaseRenewal::Lost, "the old owner lost it");

    // Writes are fenced by the lease: the old owner's land nowhere, the new owner's do.
    let mut stale = targets[2].clone();
    stale.state = TargetState::Running;
    stale.attempt = 1;
    s.update_targets(&[TargetUpdate::of(&stale)], Some("node-a")).await.unwrap();
    assert_eq!(s.task_targets(t.id(), Some(1), 1).await.unwrap()[0].state, TargetState::Pending, "the old owner wrote nothing");
    let err = s.set_task_state(t.id(), TaskState::Failed, None, f.clock.now(), Some("node-a"), None).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(s.get_task(t.id()).await.unwrap().state(), TaskState::Pending);
    s.update_targets(&[TargetUpdate::of(&stale)], Some("node-b")).await.unwrap();
    assert_eq!(s.task_targets(t.id(), Some(1), 1).await.unwrap()[0].state, TargetState::Running, "the new owner's write lands");

    // Controls: kept with the task, read by lease renewals; a cancel stays; an ended task refuses.
    assert_eq!(s.task_control(t.id()).await.unwrap(), None);
    assert_eq!(s.request_task_control(t.id(), TaskControl::Pause, f.clock.now()).await.unwrap(), Some(TaskControl::Pause));
    assert_eq!(s.renew_lease(t.id(), "node-b", later).await.unwrap(), LeaseRenewal::Held { control: Some(TaskControl::Pause) });
    assert_eq!(s.request_task_control(t.id(), TaskControl::Resume, f.clock.now()).await.unwrap(), None);
    assert_eq!(s.task_control(t.id()).await.unwrap(), None);
    assert_eq!(s.request_task_control(t.id(), TaskControl::Cancel, f.clock.now()).await.unwrap(), Some(TaskControl::Cancel));
    assert_eq!(s.request_task_control(t.id(), TaskControl::Resume, f.clock.now()).await.unwrap(), Some(TaskControl::Cancel));
    assert_eq!(s.request_task_control(t.id(), TaskControl::Pause, f.clock.now()).await.unwrap(), Some(TaskControl::Cancel));
    assert!(s.request_task_control(TaskId::new(), TaskControl::Cancel, f.clock.now()).await.unwrap_err().is_not_found());
    assert!(s.task_control(TaskId::new()).await.unwrap_err().is_not_found());

    // A terminal state frees the exclusive slot.
    s.set_task_state(t.id(), TaskState::Running, None, f.clock.now(), Some("node-b"), None).await.unwrap();
    assert!(s.get_task(t.id()).await.unwrap().started_at().is_some());
    s.set_task_state(t.id(), TaskState::Succeeded, Some("all done"), f.clock.now(), None, Some(&ev("delivery.finish"))).await.unwrap();
    let ended = s.get_task(t.id()).await.unwrap();
    assert_eq!((ended.state(), ended.reason()), (TaskState::Succeeded, Some("all done")));
    assert!(ended.finished_at().is_some());
    let err = s.request_task_control(t.id(), TaskControl::Pause, f.clock.now()).await.unwrap_err();
    assert!(err.is_conflict(), "an ended task takes no control: {err}");
    s.create_task(&second, &[], None, &ev("delivery.create")).await.unwrap();
    assert!(!s.claim_tasks("node-c", later, lease, KINDS).await.unwrap().contains(&t.id()), "finished tasks are not claimed");
    let page = s.list_tasks(p.id(), &PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items.len(), 5);
    assert!(page.items.windows(2).all(|w| w[0].id() > w[1].id()), "newest first");

    // A task created leased to its submitter is no other owner's to claim while the lease holds.
    let leased = task(f, &o, &p, "leased", false);
    s.create_task(&leased, &[], Some(("node-d", ecp_core::clock::add(later, lease))), &ev("leased.create")).await.unwrap();
    assert!(!s.claim_tasks("node-c", later, lease, KINDS).await.unwrap().contains(&leased.id()));
    assert!(
        matches!(s.renew_lease(leased.id(), "node-d", ecp_core::clock::add(later, lease)).await.unwrap(), LeaseRenewal::Held { .. }),
        "its submitter holds it"
    );
    let after = ecp_core::clock::add(later, Duration::from_secs(31));
    assert!(s.claim_tasks("node-c", after, lease, KINDS).await.unwrap().contains(&leased.id()), "taken over once it lapses");
    assert!(s.set_task_state(TaskId::new(), TaskState::Failed, None, f.clock.now(), None, None).await.unwrap_err().is_not_found());
    assert!(
        s.set_task_state(TaskId::new(), TaskState::Failed, None, f.clock.now(), Some("node-c"), None).await.unwrap_err().is_not_found()
    );
}

#[derive(Debug)]
struct Echo;

#[async_trait]
impl TargetExecutor for Echo {
    async fn apply(&self, target: &TaskTarget, key: &IdempotencyKey) -> Result<serde_json::Value, TargetError> {
        if target.target.ends_with('7') {
            return Err(TargetError::fatal("unlucky"));
        }
        Ok(serde_json::json!({ "key": key.0 }))
    }
}

#[derive(Debug)]
struct EchoKind;

impl TaskKind for EchoKind {
    fn name(&self) -> &str {
        "echo"
    }
    fn executor(&self, _task: &Task) -> ecp_core::Result<Arc<dyn TargetExecutor>> {
        Ok(Arc::new(Echo))
    }
}

pub(crate) async fn the_engine_runs_a_task_to_its_end(f: &Fixture) {
    let (_, p) = project(f).await;
    let engine = TaskEngine::builder(f.store.clone()).clock(Arc::new(f.clock.clone())).build().unwrap();
    engine.register(Arc::new(EchoKind)).unwrap();
    let targets = (0..200).map(|i| NewTarget::new(format!("t{i}"), format!("t{i}"))).collect();
    let policy = RolloutPolicy::builder().max_in_flight(20).retries(1, Duration::ZERO, Duration::ZERO).build().unwrap();
    let new = NewTask::new(p.id(), "echo", targets).policy(policy);
    let handle = engine.submit(&Principal::system("conformance"), new).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(60), handle.wait()).await.unwrap(), Some(TaskState::Failed));
    let totals = f.store.task_totals(handle.id()).await.unwrap();
    assert_eq!((totals.succeeded, totals.failed), (180, 20));
    ecp_core::verify_audit(f.store.as_ref(), None).await.unwrap();
}
