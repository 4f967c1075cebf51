//! The engine's public types: executors and kinds, new tasks and their targets, events, configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::access::ResourceKind;
use crate::error::Result;
use crate::id::{OrgId, ProjectId, TaskId};
use crate::task::model::{IdempotencyKey, RolloutPolicy, TargetState, Task, TaskState, TaskTarget, TaskTotals};

#[cfg(doc)]
use super::TaskEngine;

/// Why one attempt on a target failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetError {
    /// What happened (shown to people and stored; never a secret).
    pub reason: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl TargetError {
    /// A failure another attempt may fix (a timeout of the service, a lost connection).
    pub fn retryable(reason: impl fmt::Display) -> Self {
        Self { reason: reason.to_string(), retryable: true }
    }

    /// A failure retrying cannot fix (a bad configuration, a refused request).
    pub fn fatal(reason: impl fmt::Display) -> Self {
        Self { reason: reason.to_string(), retryable: false }
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Applies a task to one target at a time. Built by a [`TaskKind`] from the stored task, so a
/// resumed task gets the same executor.
#[async_trait]
pub trait TargetExecutor: Send + Sync + fmt::Debug + 'static {
    /// Applies the task to `target`. `key` names this attempt: pass it on to whatever applies the
    /// change, and answer an attempt already applied with its earlier result instead of applying it
    /// again.
    ///
    /// # Errors
    /// A [`TargetError`], retryable or not.
    async fn apply(&self, target: &TaskTarget, key: &IdempotencyKey) -> Result<serde_json::Value, TargetError>;

    /// Takes back what an unfinished attempt left waiting to be applied later (a desired item
    /// an offline agent would apply when it returns), when the task is canceled before the
    /// target succeeded. The default has nothing to take back.
    ///
    /// # Errors
    /// A [`TargetError`]; the target stays canceled either way.
    async fn withdraw(&self, target: &TaskTarget, key: &IdempotencyKey) -> Result<(), TargetError> {
        let _ = (target, key);
        Ok(())
    }

    /// Undoes a successful apply (when the task aborts with rollback). The default cannot.
    ///
    /// # Errors
    /// A [`TargetError`].
    async fn rollback(&self, target: &TaskTarget, key: &IdempotencyKey) -> Result<(), TargetError> {
        let _ = (target, key);
        Err(TargetError::fatal("this kind of task cannot roll back"))
    }
}

/// A kind of task (`"config_delivery"`, `"edge_upgrade"` ...): builds executors from stored tasks.
pub trait TaskKind: Send + Sync + fmt::Debug + 'static {
    /// The kind's name: 1–48 characters of `a-z`, `0-9` and `_`. Audit operations are
    /// `<name>.create` and `<name>.finish`.
    fn name(&self) -> &str;

    /// What the audit records of its tasks are about.
    fn resource_kind(&self) -> ResourceKind {
        ResourceKind::EdgeService
    }

    /// Whether its executors undo an apply ([`TargetExecutor::rollback`]). A task of a kind that
    /// does not is refused `rollback_on_abort` at submit with `Unsupported`, instead of failing
    /// each rollback after an abort. The default does not.
    fn rolls_back(&self) -> bool {
        false
    }

    /// The executor of `task` (from its spec).
    ///
    /// # Errors
    /// `InvalidInput` for a spec this kind cannot run.
    fn executor(&self, task: &Task) -> Result<Arc<dyn TargetExecutor>>;
}

/// One target of a new task.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewTarget {
    /// Its id (an edge service id ...), unique in the task.
    pub id: String,
    /// Its name, for people.
    pub name: String,
    /// Per-target parameters.
    pub params: serde_json::Value,
}

impl NewTarget {
    /// A target without parameters.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self { id: id.into(), name: name.into(), params: serde_json::Value::Null }
    }

    /// With per-target parameters.
    #[must_use]
    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }
}

/// A task to submit: its project (the engine reads the project, and so its organization, from
/// the store), the [`TaskKind`] that runs it, what that kind needs, how it runs, and its targets.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewTask {
    /// Its project.
    pub project: ProjectId,
    /// The [`TaskKind`] that runs it.
    pub kind: String,
    /// What the kind needs (stored as JSON).
    pub spec: serde_json::Value,
    /// How it runs.
    pub policy: RolloutPolicy,
    /// Its targets, in start order.
    pub targets: Vec<NewTarget>,
    /// What the kind needs that readers of the spec must not see (stored apart, sealed).
    pub secrets: Option<crate::task::TaskSecrets>,
}

impl NewTask {
    /// A task of `kind` in `project` on `targets`, with no spec and the default policy.
    pub fn new(project: ProjectId, kind: impl Into<String>, targets: Vec<NewTarget>) -> Self {
        Self { project, kind: kind.into(), spec: serde_json::Value::Null, policy: RolloutPolicy::default(), targets, secrets: None }
    }

    /// With what the kind needs.
    #[must_use]
    pub fn spec(mut self, spec: serde_json::Value) -> Self {
        self.spec = spec;
        self
    }

    /// With a rollout policy.
    #[must_use]
    pub fn policy(mut self, policy: RolloutPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// With secrets: stored apart from the spec and sealed, never shown to readers of the task,
    /// given to the kind's [`executor`](crate::task::TaskKind::executor) through
    /// [`Task::secrets`](crate::task::Task::secrets), after a crash too.
    #[must_use]
    pub fn secrets(mut self, secrets: serde_json::Value) -> Self {
        self.secrets = Some(crate::task::TaskSecrets::new(secrets));
        self
    }
}

/// Progress of a task, as it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskEvent {
    /// A target changed state.
    Target {
        /// The task.
        task: TaskId,
        /// The target's id.
        target: String,
        /// Its name.
        name: String,
        /// Its new state.
        state: TargetState,
        /// Attempts started so far.
        attempt: u32,
        /// Why, for failures and cancellations.
        reason: Option<String>,
        /// Counts after the change.
        totals: TaskTotals,
    },
    /// The task changed state.
    Task {
        /// The task.
        task: TaskId,
        /// Its new state.
        state: TaskState,
        /// Counts at that moment.
        totals: TaskTotals,
    },
}

/// A [`TaskEvent`] of any task of an engine, with the task's kind and project: what
/// [`TaskEngine::subscribe_all`] gives, for metrics and dashboards that watch every task.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EngineEvent {
    /// The task's kind (`"config_delivery"`).
    pub kind: Arc<str>,
    /// The task's organization.
    pub org: OrgId,
    /// The task's project.
    pub project: ProjectId,
    /// What happened.
    pub event: TaskEvent,
}

/// How the engine runs (set through [`TaskEngine::builder`](super::TaskEngine::builder)).
#[derive(Debug, Clone)]
pub(crate) struct TaskEngineConfig {
    /// This engine's name in task leases.
    pub(crate) owner: String,
    /// How long a lease lasts without renewal.
    pub(crate) lease: Duration,
    /// Target changes are written in batches: at most this long after they happen...
    pub(crate) flush_interval: Duration,
    /// ...or once this many are waiting.
    pub(crate) flush_batch: usize,
    /// Events buffered per task for slow subscribers, and for those of `subscribe_all`.
    pub(crate) event_capacity: usize,
}

impl Default for TaskEngineConfig {
    fn default() -> Self {
        Self {
            owner: "default".into(),
            lease: Duration::from_secs(30),
            flush_interval: Duration::from_millis(20),
            flush_batch: 500,
            event_capacity: 4096,
        }
    }
}
