//! Tasks, targets, their states, and rollout policies.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::Actor;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{OrgId, ProjectId, TaskId};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskState {
    /// Accepted, not started.
    Pending,
    /// Applying targets.
    Running,
    /// Stopped dispatching by request; resumes with [`TaskHandle::resume`](crate::task::TaskHandle::resume).
    Paused,
    /// Every target succeeded.
    Succeeded,
    /// Finished, and at least one target failed or timed out.
    Failed,
    /// Stopped by the policy's abort rule (failures crossed the threshold); see the targets for
    /// what was rolled back.
    Aborted,
    /// Canceled by request.
    Canceled,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 7] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Paused,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Aborted,
        TaskState::Canceled,
    ];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Paused => "paused",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Aborted => "aborted",
            TaskState::Canceled => "canceled",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the task is over.
    pub const fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed | TaskState::Aborted | TaskState::Canceled)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one target of a task is. Every target ends in a terminal state: a stuck target times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TargetState {
    /// Waiting to start (or for its next attempt).
    Pending,
    /// An attempt is being applied.
    Running,
    /// Applied.
    Succeeded,
    /// Failed (after its retries); the reason says why.
    Failed,
    /// Its last attempt did not finish within the per-target timeout.
    TimedOut,
    /// Never applied: the task was canceled or aborted first, or stopped at an earlier failure in
    /// serial mode.
    Canceled,
    /// Applied, then undone when the task was aborted.
    RolledBack,
}

impl TargetState {
    /// Every state.
    pub const ALL: [TargetState; 7] = [
        TargetState::Pending,
        TargetState::Running,
        TargetState::Succeeded,
        TargetState::Failed,
        TargetState::TimedOut,
        TargetState::Canceled,
        TargetState::RolledBack,
    ];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetState::Pending => "pending",
            TargetState::Running => "running",
            TargetState::Succeeded => "succeeded",
            TargetState::Failed => "failed",
            TargetState::TimedOut => "timed_out",
            TargetState::Canceled => "canceled",
            TargetState::RolledBack => "rolled_back",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the target is done.
    pub const fn is_terminal(self) -> bool {
        !matches!(self, TargetState::Pending | TargetState::Running)
    }

    /// Whether the target counts as a failure for the abort rule.
    pub const fn is_failure(self) -> bool {
        matches!(self, TargetState::Failed | TargetState::TimedOut)
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How fast targets start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartRate {
    /// As fast as the in-flight window allows.
    Unlimited,
    /// At most this many starts per minute.
    Constant {
        /// Starts per minute (1..=100,000).
        per_minute: u32,
    },
    /// AWS IoT Jobs' exponential rollout: start at `base_per_minute`, multiply by `factor` after
    /// every `increase_after` successes, never above `max_per_minute`.
    Exponential {
        /// The first rate, starts per minute.
        base_per_minute: u32,
        /// The growth factor (1.1..=5.0).
        factor: f64,
        /// Successes between increases.
        increase_after: u32,
        /// The ceiling, starts per minute.
        max_per_minute: u32,
    },
}

impl StartRate {
    /// Starts per minute after `succeeded` successes, or `None` for unlimited.
    pub fn per_minute(&self, succeeded: u64) -> Option<f64> {
        match *self {
            StartRate::Unlimited => None,
            StartRate::Constant { per_minute } => Some(f64::from(per_minute)),
            StartRate::Exponential { base_per_minute, factor, increase_after, max_per_minute } => {
                let steps = succeeded / u64::from(increase_after.max(1));
                let steps = i32::try_from(steps.min(1000)).unwrap_or(1000);
                Some((f64::from(base_per_minute) * factor.powi(steps)).min(f64::from(max_per_minute)))
            }
        }
    }
}

/// When to give up on a task: once at least `min_finished` targets have finished and the share of
/// failures (failed or timed out) among them reaches `failure_ratio`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AbortRule {
    /// The failure share that aborts, in (0, 1].
    pub failure_ratio: f64,
    /// Targets that must have finished before the rule applies.
    pub min_finished: u32,
}

/// How failed attempts are retried: only errors the executor marks retryable (and, if set,
/// timeouts), up to `max_attempts` attempts in all, waiting an exponential backoff with full jitter
/// (a uniform wait in `[0, min(max_backoff, base_backoff × 2^(attempt-1))]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, including the first (1 = no retry).
    pub max_attempts: u32,
    /// The backoff before the second attempt.
    #[serde(with = "millis")]
    pub base_backoff: Duration,
    /// The longest backoff.
    #[serde(with = "millis")]
    pub max_backoff: Duration,
    /// Whether a timed-out attempt is retried.
    pub retry_timeouts: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, base_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(60), retry_timeouts: true }
    }
}

impl RetryPolicy {
    /// The longest wait before attempt `next` (2 for the first retry); the engine waits a uniform
    /// random time up to it.
    pub fn backoff_cap(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(30);
        self.base_backoff.saturating_mul(1u32 << exp).min(self.max_backoff)
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// How a task runs its targets. Build one with [`RolloutPolicy::builder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RolloutPolicy {
    /// Targets being applied at once.
    pub max_in_flight: u32,
    /// How fast targets start.
    pub rate: StartRate,
    /// How long one attempt may take.
    #[serde(with = "millis")]
    pub target_timeout: Duration,
    /// Retries of failed attempts.
    pub retry: RetryPolicy,
    /// When to give up.
    pub abort: Option<AbortRule>,
    /// Whether an aborted task undoes the targets that succeeded.
    pub rollback_on_abort: bool,
    /// One target at a time, stopping at the first failure (the product's "serial" upgrade).
    pub serial: bool,
    /// Whether this task excludes others of its kind in its project while it runs (the product
    /// allows one delivery and one upgrade per project at a time).
    pub exclusive: bool,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self {
            max_in_flight: 16,
            rate: StartRate::Unlimited,
            target_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            abort: None,
            rollback_on_abort: false,
            serial: false,
            exclusive: true,
        }
    }
}

impl RolloutPolicy {
    /// A builder starting from the defaults: 16 in flight, unlimited rate, 60 s per target, 3
    /// attempts with 1 s to 60 s backoff, no abort rule, exclusive.
    pub fn builder() -> RolloutPolicyBuilder {
        RolloutPolicyBuilder(Self::default())
    }

    /// The policy's in-flight window as used: 1 in serial mode.
    pub fn window(&self) -> usize {
        if self.serial { 1 } else { self.max_in_flight as usize }
    }
}

/// Builds a [`RolloutPolicy`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct RolloutPolicyBuilder(RolloutPolicy);

impl RolloutPolicyBuilder {
    /// Targets being applied at once (1..=10,000).
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.0.max_in_flight = n;
        self
    }

    /// At most `per_minute` starts per minute.
    pub fn constant_rate(mut self, per_minute: u32) -> Self {
        self.0.rate = StartRate::Constant { per_minute };
        self
    }

    /// An exponential start rate (see [`StartRate::Exponential`]).
    pub fn exponential_rate(mut self, base_per_minute: u32, factor: f64, increase_after: u32, max_per_minute: u32) -> Self {
        self.0.rate = StartRate::Exponential { base_per_minute, factor, increase_after, max_per_minute };
        self
    }

    /// How long one attempt may take.
    pub fn target_timeout(mut self, d: Duration) -> Self {
        self.0.target_timeout = d;
        self
    }

    /// Attempts in all and the backoff between them.
    pub fn retries(mut self, max_attempts: u32, base_backoff: Duration, max_backoff: Duration) -> Self {
        self.0.retry.max_attempts = max_attempts;
        self.0.retry.base_backoff = base_backoff;
        self.0.retry.max_backoff = max_backoff;
        self
    }

    /// Whether timed-out attempts are retried (default yes).
    pub fn retry_timeouts(mut self, yes: bool) -> Self {
        self.0.retry.retry_timeouts = yes;
        self
    }

    /// Abort once `min_finished` targets finished and the failure share reaches `failure_ratio`.
    pub fn abort_when(mut self, failure_ratio: f64, min_finished: u32) -> Self {
        self.0.abort = Some(AbortRule { failure_ratio, min_finished });
        self
    }

    /// Undo the targets that succeeded when the task aborts.
    pub fn rollback_on_abort(mut self, yes: bool) -> Self {
        self.0.rollback_on_abort = yes;
        self
    }

    /// One target at a time, stopping at the first failure.
    pub fn serial(mut self, yes: bool) -> Self {
        self.0.serial = yes;
        self
    }

    /// Whether the task excludes others of its kind in its project (default yes).
    pub fn exclusive(mut self, yes: bool) -> Self {
        self.0.exclusive = yes;
        self
    }

    /// The policy.
    ///
    /// # Errors
    /// `InvalidInput` naming the field out of range.
    pub fn build(self) -> Result<RolloutPolicy> {
        let p = self.0;
        if !(1..=10_000).contains(&p.max_in_flight) {
            return Err(Error::invalid("max_in_flight", "must be 1..=10000"));
        }
        match p.rate {
            StartRate::Unlimited => {}
            StartRate::Constant { per_minute } if (1..=100_000).contains(&per_minute) => {}
            StartRate::Constant { .. } => return Err(Error::invalid("rate.per_minute", "must be 1..=100000")),
            StartRate::Exponential { base_per_minute, factor, increase_after, max_per_minute } => {
                if !(1..=100_000).contains(&base_per_minute) || !(base_per_minute..=100_000).contains(&max_per_minute) {
                    return Err(Error::invalid("rate", "needs 1 <= base_per_minute <= max_per_minute <= 100000"));
                }
                if !(1.1..=5.0).contains(&factor) || !factor.is_finite() {
                    return Err(Error::invalid("rate.factor", "must be 1.1..=5.0"));
                }
                if increase_after == 0 {
                    return Err(Error::invalid("rate.increase_after", "must be at least 1"));
                }
            }
        }
        if p.target_timeout.is_zero() || p.target_timeout > Duration::from_secs(7 * 24 * 3600) {
            return Err(Error::invalid("target_timeout", "must be between 1 ms and 7 days"));
        }
        if !(1..=100).contains(&p.retry.max_attempts) {
            return Err(Error::invalid("retry.max_attempts", "must be 1..=100"));
        }
        if p.retry.base_backoff > p.retry.max_backoff {
            return Err(Error::invalid("retry.base_backoff", "must not exceed max_backoff"));
        }
        if let Some(a) = p.abort.filter(|a| !(a.failure_ratio > 0.0 && a.failure_ratio <= 1.0)) {
            let _ = a;
            return Err(Error::invalid("abort.failure_ratio", "must be in (0, 1]"));
        }
        if p.rollback_on_abort && p.abort.is_none() {
            return Err(Error::invalid("rollback_on_abort", "needs an abort rule"));
        }
        Ok(p)
    }
}

/// Counts of targets by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTotals {
    /// All targets.
    pub total: u64,
    /// Pending.
    pub pending: u64,
    /// Running.
    pub running: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Timed out.
    pub timed_out: u64,
    /// Canceled.
    pub canceled: u64,
    /// Rolled back.
    pub rolled_back: u64,
}

impl TaskTotals {
    /// Adds `n` targets in `state`.
    pub fn add(&mut self, state: TargetState, n: u64) {
        self.total += n;
        match state {
            TargetState::Pending => self.pending += n,
            TargetState::Running => self.running += n,
            TargetState::Succeeded => self.succeeded += n,
            TargetState::Failed => self.failed += n,
            TargetState::TimedOut => self.timed_out += n,
            TargetState::Canceled => self.canceled += n,
            TargetState::RolledBack => self.rolled_back += n,
        }
    }

    /// Moves one target from `from` to `to`.
    pub fn shift(&mut self, from: TargetState, to: TargetState) {
        let dec = |v: &mut u64| *v = v.saturating_sub(1);
        match from {
            TargetState::Pending => dec(&mut self.pending),
            TargetState::Running => dec(&mut self.running),
            TargetState::Succeeded => dec(&mut self.succeeded),
            TargetState::Failed => dec(&mut self.failed),
            TargetState::TimedOut => dec(&mut self.timed_out),
            TargetState::Canceled => dec(&mut self.canceled),
            TargetState::RolledBack => dec(&mut self.rolled_back),
        }
        self.total -= 1;
        self.add(to, 1);
    }

    /// Targets done.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.timed_out + self.canceled + self.rolled_back
    }
}

/// A request to steer a task. It is kept with the task in the store, so the replica that runs the
/// task follows it whichever replica took it, and a task taken over after a crash keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskControl {
    /// Stop starting targets; those in flight finish, the rest end canceled. A cancel stays.
    Cancel,
    /// Stop starting targets until resumed; those in flight finish.
    Pause,
    /// Start targets again after a pause.
    Resume,
}

impl TaskControl {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskControl::Cancel => "cancel",
            TaskControl::Pause => "pause",
            TaskControl::Resume => "resume",
        }
    }

    /// The control of a stable name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cancel" => Some(TaskControl::Cancel),
            "pause" => Some(TaskControl::Pause),
            "resume" => Some(TaskControl::Resume),
            _ => None,
        }
    }
}

/// What renewing a task's lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseRenewal {
    /// The lease is still this owner's, extended; `control` is the request in force
    /// ([`TaskControl::Cancel`], [`TaskControl::Pause`], or `None` to run).
    Held {
        /// The request in force.
        control: Option<TaskControl>,
    },
    /// Another owner holds the lease now, or the task ended.
    Lost,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Its id.
    pub(crate) id: TaskId,
    /// Its organization.
    pub(crate) org: OrgId,
    /// Its project.
    pub(crate) project: ProjectId,
    /// What it does: the name of the [`TaskKind`](crate::task::TaskKind) that runs it.
    pub(crate) kind: String,
    /// Where it is.
    pub(crate) state: TaskState,
    /// What the kind needs to run it (a template and its parameters, an image ...), as JSON.
    pub(crate) spec: serde_json::Value,
    /// How it runs.
    pub(crate) policy: RolloutPolicy,
    /// Who created it.
    pub(crate) created_by: Actor,
    /// Why it ended as it did, when that needs saying.
    pub(crate) reason: Option<String>,
    /// When it was created.
    pub(crate) created_at: Timestamp,
    /// When it last changed.
    pub(crate) updated_at: Timestamp,
    /// When it first started.
    pub(crate) started_at: Option<Timestamp>,
    /// When it ended.
    pub(crate) finished_at: Option<Timestamp>,
    /// What it needs that its readers must not see; only on a task the engine made or loaded to
    /// run it, never on one read for display.
    pub(crate) secrets: Option<TaskSecrets>,
}

/// What a task needs that readers of its spec must not see (a hosted install's environment):
/// stored apart from the spec and sealed, given to the task's kind when the engine runs it, and
/// redacted in `Debug`.
#[derive(Clone, PartialEq)]
pub struct TaskSecrets(serde_json::Value);

impl TaskSecrets {
    /// Secrets as JSON.
    pub fn new(value: serde_json::Value) -> Self {
        TaskSecrets(value)
    }

    /// The secrets.
    pub fn expose(&self) -> &serde_json::Value {
        &self.0
    }
}

impl fmt::Debug for TaskSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskSecrets([REDACTED])")
    }
}

impl Task {
    /// A new pending task of `project` (of `org`) of kind `kind`, created by `created_by` at
    /// `now`: what a store is given to create. The task engine makes these from a
    /// [`NewTask`](crate::task::NewTask) (with the organization read from the store); stores and
    /// their tests make them directly.
    pub fn pending(
        org: OrgId,
        project: ProjectId,
        kind: impl Into<String>,
        spec: serde_json::Value,
        policy: RolloutPolicy,
        created_by: Actor,
        now: Timestamp,
    ) -> Self {
        Task {
            id: TaskId::new(),
            org,
            project,
            kind: kind.into(),
            state: TaskState::Pending,
            spec,
            policy,
            created_by,
            reason: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            secrets: None,
        }
    }

    /// The task's secrets: present on a task the engine runs (its kind reads them in
    /// [`TaskKind::executor`](crate::task::TaskKind::executor)), absent on a task read for
    /// display.
    pub fn secrets(&self) -> Option<&TaskSecrets> {
        self.secrets.as_ref()
    }
}

// Read-only outside this crate: a value comes from the store or from a constructor that checks it.
impl Task {
    /// Its id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Its organization.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// Its project.
    pub fn project(&self) -> ProjectId {
        self.project
    }

    /// What it does: the name of the [`TaskKind`](crate::task::TaskKind) that runs it.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Where it is.
    pub fn state(&self) -> TaskState {
        self.state
    }

    /// What the kind needs to run it (a template and its parameters, an image ...), as JSON.
    pub fn spec(&self) -> &serde_json::Value {
        &self.spec
    }

    /// How it runs.
    pub fn policy(&self) -> &RolloutPolicy {
        &self.policy
    }

    /// Who created it.
    pub fn created_by(&self) -> &Actor {
        &self.created_by
    }

    /// Why it ended as it did, when that needs saying.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// When it was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When it last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    /// When it first started.
    pub fn started_at(&self) -> Option<Timestamp> {
        self.started_at
    }

    /// When it ended.
    pub fn finished_at(&self) -> Option<Timestamp> {
        self.finished_at
    }
}

/// One target of a task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTarget {
    /// The task.
    pub task: TaskId,
    /// The target's id (an edge service id, a cluster id ...).
    pub target: String,
    /// Its position: targets start in this order.
    pub seq: u64,
    /// Its name, for people.
    pub name: String,
    /// Per-target parameters (a row of a template's parameter grid ...).
    pub params: serde_json::Value,
    /// Where it is.
    pub state: TargetState,
    /// Attempts started so far.
    pub attempt: u32,
    /// Why it failed, timed out or was canceled.
    pub reason: Option<String>,
    /// What its executor returned on success.
    pub result: Option<serde_json::Value>,
    /// When its current or last attempt started.
    pub started_at: Option<Timestamp>,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// When its next attempt is due, while it waits to retry.
    pub next_attempt_at: Option<Timestamp>,
}

impl TaskTarget {
    /// A pending target.
    pub fn new(task: TaskId, seq: u64, target: impl Into<String>, name: impl Into<String>, params: serde_json::Value) -> Self {
        Self {
            task,
            target: target.into(),
            seq,
            name: name.into(),
            params,
            state: TargetState::Pending,
            attempt: 0,
            reason: None,
            result: None,
            started_at: None,
            finished_at: None,
            next_attempt_at: None,
        }
    }

    /// The idempotency key of attempt `attempt` of this target: the same on every run of that
    /// attempt, so an executor that saw it already can answer without applying again.
    pub fn key(&self, attempt: u32) -> IdempotencyKey {
        IdempotencyKey(format!("{}:{}:{}", self.task, self.target, attempt))
    }
}

/// Names one attempt on one target of one task: `<task>:<target>:<attempt>`. Executors pass it on
/// to whatever applies the change (an agent, a service that deduplicates), so a re-run after a crash
/// never applies the same attempt twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdempotencyKey(pub String);

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A change of one target's state, to persist.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetUpdate {
    /// The target (task and target id).
    pub task: TaskId,
    /// The target's id.
    pub target: String,
    /// Its new state.
    pub state: TargetState,
    /// Attempts started so far.
    pub attempt: u32,
    /// The reason, if any.
    pub reason: Option<String>,
    /// The result, on success.
    pub result: Option<serde_json::Value>,
    /// When its current attempt started.
    pub started_at: Option<Timestamp>,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// When its next attempt is due.
    pub next_attempt_at: Option<Timestamp>,
}

impl TargetUpdate {
    /// The update that writes `t` as it is.
    pub fn of(t: &TaskTarget) -> Self {
        Self {
            task: t.task,
            target: t.target.clone(),
            state: t.state,
            attempt: t.attempt,
            reason: t.reason.clone(),
            result: t.result.clone(),
            started_at: t.started_at,
            finished_at: t.finished_at,
            next_attempt_at: t.next_attempt_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_validate() {
        RolloutPolicy::builder().build().unwrap();
        assert!(RolloutPolicy::builder().max_in_flight(0).build().is_err());
        assert!(RolloutPolicy::builder().exponential_rate(10, 9.0, 5, 100).build().is_err());
        assert!(RolloutPolicy::builder().exponential_rate(100, 2.0, 5, 10).build().is_err());
        assert!(RolloutPolicy::builder().abort_when(1.5, 10).build().is_err());
        assert!(RolloutPolicy::builder().rollback_on_abort(true).build().is_err());
        assert!(RolloutPolicy::builder().retries(3, Duration::from_secs(10), Duration::from_secs(1)).build().is_err());
        let p = RolloutPolicy::builder().serial(true).max_in_flight(50).build().unwrap();
        assert_eq!(p.window(), 1);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<RolloutPolicy>(&json).unwrap(), p);
    }

    #[test]
    fn exponential_rate_grows_to_its_ceiling() {
        let r = StartRate::Exponential { base_per_minute: 10, factor: 2.0, increase_after: 5, max_per_minute: 100 };
        assert_eq!(r.per_minute(0), Some(10.0));
        assert_eq!(r.per_minute(4), Some(10.0));
        assert_eq!(r.per_minute(5), Some(20.0));
        assert_eq!(r.per_minute(15), Some(80.0));
        assert_eq!(r.per_minute(1_000_000), Some(100.0));
        assert_eq!(StartRate::Unlimited.per_minute(3), None);
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let r = RetryPolicy {
            max_attempts: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            retry_timeouts: true,
        };
        assert_eq!(r.backoff_cap(2), Duration::from_millis(100));
        assert_eq!(r.backoff_cap(3), Duration::from_millis(200));
        assert_eq!(r.backoff_cap(5), Duration::from_millis(800));
        assert_eq!(r.backoff_cap(6), Duration::from_secs(1));
        assert_eq!(r.backoff_cap(60), Duration::from_secs(1));
    }

    #[test]
    fn totals_shift() {
        let mut t = TaskTotals::default();
        t.add(TargetState::Pending, 3);
        t.shift(TargetState::Pending, TargetState::Running);
        t.shift(TargetState::Running, TargetState::Succeeded);
        assert_eq!((t.total, t.pending, t.running, t.succeeded, t.finished()), (3, 2, 0, 1, 1));
    }
}
