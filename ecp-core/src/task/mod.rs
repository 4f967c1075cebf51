//! The task engine: every batch operation (configuration delivery, upgrades, installs, start/stop
//! on many targets) is one [`Task`] with per-target states, run under a [`RolloutPolicy`].
//!
//! - **Policies**: a window of targets in flight; a start rate, constant or growing exponentially
//!   with successes (as AWS IoT Jobs); a per-target timeout; retries with exponential backoff and
//!   full jitter, for retryable errors only; an abort rule (a failure share after a minimum number
//!   of finished targets) with optional rollback of what succeeded; a serial mode that stops at the
//!   first failure; at most one exclusive task of a kind per project.
//! - **Every target ends**: succeeded, failed with its reason, timed out, canceled, or rolled back.
//!   Nothing stays "in progress" forever.
//! - **Progress** is a stream of [`TaskEvent`]s (per-target transitions with running totals), per
//!   task ([`TaskHandle::subscribe`]) or for every task of an engine ([`TaskEngine::subscribe_all`]).
//! - **Tasks survive crashes**: task and target states are persisted as they change (batched),
//!   tasks are leased to one engine at a time, and [`TaskEngine::resume`] picks up unfinished tasks
//!   after a restart (or another replica's, once its lease runs out). Each attempt carries an
//!   [`IdempotencyKey`]; an attempt that was running when the process died is run again with the
//!   same key, so an executor that deduplicates never applies it twice.
//! - **Audited**: one record when a task is created and one when it ends, with every target's
//!   result.

mod engine;
mod model;

pub use engine::{
    EngineEvent, NewTarget, NewTask, TargetError, TargetExecutor, TaskEngine, TaskEngineBuilder, TaskEvent, TaskHandle, TaskKind,
};
pub use model::{
    AbortRule, IdempotencyKey, LeaseRenewal, RetryPolicy, RolloutPolicy, RolloutPolicyBuilder, StartRate, TargetState, TargetUpdate, Task,
    TaskControl, TaskSecrets, TaskState, TaskTarget, TaskTotals,
};
