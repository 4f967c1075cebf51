//! [`Runner`]: drives one task to its end: dispatch under the policy, retries, abort and rollback, audit.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clock;
use crate::error::Result;
use crate::store::{Store, StoreSignal};
use crate::task::model::{IdempotencyKey, LeaseRenewal, TargetState, TargetUpdate, Task, TaskControl, TaskState, TaskTarget, TaskTotals};

use super::writer::Writer;
use super::{Control, EngineEvent, TargetError, TargetExecutor, TaskEngine, TaskEvent, TaskKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Canceled,
    Aborted,
    SerialFailure,
}

type Attempt = (usize, u32, Result<Result<serde_json::Value, TargetError>, tokio::time::error::Elapsed>);
type Undo = (usize, Result<Result<(), TargetError>, tokio::time::error::Elapsed>);

/// What [`Runner::undo`] does to a target.
#[derive(Debug, Clone, Copy)]
enum UndoOp {
    /// Undo a successful apply (rollback after an abort).
    Rollback,
    /// Take back what an unfinished attempt left waiting (after a cancel).
    Withdraw,
}

pub(super) struct Runner {
    engine: TaskEngine,
    task: Task,
    executor: Arc<dyn TargetExecutor>,
    kind: Arc<dyn TaskKind>,
    control: mpsc::Receiver<Control>,
    /// For the follower, which passes on what the store says.
    control_tx: mpsc::Sender<Control>,
    events: broadcast::Sender<TaskEvent>,
    kind_name: Arc<str>,
    targets: Vec<TaskTarget>,
    totals: TaskTotals,
    writer: Writer,
}

impl Runner {
    pub(super) fn new(
        engine: TaskEngine,
        task: Task,
        executor: Arc<dyn TargetExecutor>,
        kind: Arc<dyn TaskKind>,
        (control_tx, control): (mpsc::Sender<Control>, mpsc::Receiver<Control>),
        events: broadcast::Sender<TaskEvent>,
    ) -> Self {
        let cfg = &engine.inner.config;
        let writer = Writer::spawn(engine.inner.store.clone(), cfg.flush_interval, cfg.flush_batch.max(1), cfg.owner.clone());
        let kind_name = Arc::from(task.kind.as_str());
        Self {
            engine,
            task,
            executor,
            kind,
            control,
            control_tx,
            events,
            kind_name,
            targets: Vec::new(),
            totals: TaskTotals::default(),
            writer,
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.engine.inner.store
    }

    fn now(&self) -> crate::clock::Timestamp {
        self.engine.inner.clock.now()
    }

    /// Sends `event` to the task's subscribers and, while anyone listens, to the engine's.
    fn emit(&self, event: TaskEvent) {
        let all = &self.engine.inner.all;
        if all.receiver_count() > 0 {
            let _ = all.send(EngineEvent {
                kind: self.kind_name.clone(),
                org: self.task.org,
                project: self.task.project,
                event: event.clone(),
            });
        }
        let _ = self.events.send(event);
    }

    fn emit_target(&self, idx: usize) {
        let t = &self.targets[idx];
        self.emit(TaskEvent::Target {
            task: self.task.id,
            target: t.target.clone(),
            name: t.name.clone(),
            state: t.state,
            attempt: t.attempt,
            reason: t.reason.clone(),
            totals: self.totals,
        });
    }

    fn emit_task(&self, state: TaskState) {
        self.emit(TaskEvent::Task { task: self.task.id, state, totals: self.totals });
    }

    /// Moves target `idx` to `state`, persists and announces it.
    fn transition(&mut self, idx: usize, state: TargetState, reason: Option<String>) {
        let now = self.now();
        let from = self.targets[idx].state;
        let t = &mut self.targets[idx];
        t.state = state;
        t.reason = reason;
        match state {
            TargetState::Running => {
                t.started_at = Some(now);
                t.next_attempt_at = None;
            }
            s if s.is_terminal() => {
                t.finished_at = Some(now);
                t.next_attempt_at = None;
            }
            _ => {}
        }
        self.totals.shift(from, state);
        self.writer.send(TargetUpdate::of(&self.targets[idx]));
        self.emit_target(idx);
    }

    async fn set_state(&mut self, state: TaskState, reason: Option<&str>) -> Result<()> {
        self.writer.flush().await;
        let owner = self.engine.inner.config.owner.as_str();
        self.store().set_task_state(self.task.id, state, reason, self.now(), Some(owner), None).await?;
        self.task.state = state;
        self.emit_task(state);
        Ok(())
    }

    async fn load_targets(&mut self) -> Result<()> {
        let mut after = None;
        loop {
            let page = self.store().task_targets(self.task.id, after, 10_000).await?;
            let n = page.len();
            after = page.last().map(|t| t.seq);
            self.targets.extend(page);
            if n < 10_000 {
                break;
            }
        }
        for t in &self.targets {
            self.totals.add(t.state, 1);
        }
        Ok(())
    }

    fn abort_due(&self) -> bool {
        let Some(rule) = self.task.policy.abort else { return false };
        let failures = self.totals.failed + self.totals.timed_out;
        let finished = self.totals.succeeded + failures;
        finished >= u64::from(rule.min_finished) && finished > 0 && (failures as f64 / finished as f64) >= rule.failure_ratio
    }

    fn backoff(&self, next_attempt: u32) -> Duration {
        let cap = self.task.policy.retry.backoff_cap(next_attempt);
        let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(if ms == 0 { 0 } else { fastrand::u64(0..=ms) })
    }

    /// Runs the task to its end; `Ok(None)` if it stopped without ending (lease lost).
    pub(super) async fn run(mut self) -> Result<Option<TaskState>> {
        self.load_targets().await?;
        if self.task.state.is_terminal() {
            return Ok(Some(self.task.state));
        }
        let control = self.store().task_control(self.task.id).await?;
        let (lost_tx, mut lost) = watch::channel(false);
        let follower = self.spawn_follower(control, lost_tx);
        // Losing the lease ends whatever the runner waits for (an attempt, a write to a store it
        // cannot reach): it stops acting at once.
        let result = tokio::select! {
            r = self.drive(control) => r,
            _ = lost.wait_for(|l| *l) => Ok(None),
        };
        follower.abort();
        match result {
            Ok(Some(state)) => {
                self.writer.flush().await;
                Ok(Some(state))
            }
            // The lease is gone: what is not written stays unwritten (the new owner runs those
            // targets again, with the same keys), and nothing more is written.
            Ok(None) => {
                self.writer.abandon();
                Ok(None)
            }
            Err(e) if e.is_conflict() => {
                tracing::warn!(task = %self.task.id, "another replica holds the task's lease; stopping");
                self.writer.abandon();
                Ok(None)
            }
            Err(e) => {
                self.writer.flush().await;
                Err(e)
            }
        }
    }

    /// Follows the store while the task runs: renews the lease every third of it, passing on the
    /// request in force each renewal reads, and, on a store that signals, reads the request at
    /// once when any replica makes one. Stops the runner when the lease is lost, or when it could
    /// not be renewed before the next renewal would come too late: a replica cut off from the
    /// store stops acting before another may take its task over.
    fn spawn_follower(&self, mut last: Option<TaskControl>, lost: watch::Sender<bool>) -> tokio::task::JoinHandle<()> {
        let store = self.store().clone();
        let clock = self.engine.inner.clock.clone();
        let owner = self.engine.inner.config.owner.clone();
        let lease = self.engine.inner.config.lease;
        let id = self.task.id;
        let tx = self.control_tx.clone();
        let mut signals = store.signals();
        tokio::spawn(async move {
            let period = (lease / 3).max(Duration::from_millis(10));
            let mut held_until = Instant::now() + lease;
            let mut renew_at = Instant::now() + period;
            loop {
                let look = tokio::select! {
                    () = tokio::time::sleep_until(renew_at) => false,
                    signal = next_signal(&mut signals) => match signal {
                        Some(StoreSignal::TaskControl(t)) => t == id,
                        Some(StoreSignal::Resync) => true,
                        Some(_) => false,
                        None => {
                            signals = None;
                            false
                        }
                    },
                };
                if look {
                    match tokio::time::timeout(period, store.task_control(id)).await {
                        Ok(Ok(control)) if control != last => {
                            last = control;
                            let _ = tx.send(Control::InForce(control)).await;
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(task = %id, error = %e, "reading the task's control failed"),
                        Err(_) => tracing::warn!(task = %id, "reading the task's control timed out"),
                    }
                    continue;
                }
                let started = Instant::now();
                renew_at = started + period;
                match tokio::time::timeout(period, store.renew_lease(id, &owner, clock::add(clock.now(), lease))).await {
                    Ok(Ok(LeaseRenewal::Held { control })) => {
                        held_until = started + lease;
                        if control != last {
                            last = control;
                            let _ = tx.send(Control::InForce(control)).await;
                        }
                    }
                    Ok(Ok(LeaseRenewal::Lost)) => {
                        tracing::warn!(task = %id, "lease taken over by another engine; stopping");
                        let _ = lost.send(true);
                        return;
                    }
                    Ok(Err(e)) => tracing::warn!(task = %id, error = %e, "renewing the task lease failed"),
                    Err(_) => tracing::warn!(task = %id, "renewing the task lease timed out"),
                }
                if Instant::now() + period >= held_until {
                    tracing::warn!(task = %id, "the task lease could not be renewed in time; stopping before it lapses");
                    let _ = lost.send(true);
                    return;
                }
            }
        })
    }

    async fn drive(&mut self, initial: Option<TaskControl>) -> Result<Option<TaskState>> {
        let policy = self.task.policy.clone();
        let window = policy.window();
        let mut stop: Option<Stop> = (initial == Some(TaskControl::Cancel)).then_some(Stop::Canceled);
        let mut paused = initial == Some(TaskControl::Pause);
        let to = if paused { TaskState::Paused } else { TaskState::Running };
        if stop.is_none() && self.task.state != to {
            self.set_state(to, None).await?;
        }
        // Targets that were running when a previous runner died go first, with the same attempt (and
        // so the same idempotency key); then the pending ones, in order.
        let mut rerun: VecDeque<usize> = VecDeque::new();
        let mut queue: VecDeque<usize> = VecDeque::new();
        let mut delayed: BinaryHeap<Reverse<(Instant, u64, usize)>> = BinaryHeap::new();
        let now_wall = self.now();
        for (i, t) in self.targets.iter().enumerate() {
            match t.state {
                TargetState::Running => rerun.push_back(i),
                TargetState::Pending => match t.next_attempt_at {
                    Some(at) if at > now_wall => {
                        let wait = Duration::try_from(at.duration_since(now_wall)).unwrap_or_default();
                        delayed.push(Reverse((Instant::now() + wait, t.seq, i)));
                    }
                    _ => queue.push_back(i),
                },
                _ => {}
            }
        }
        let mut in_flight: JoinSet<Attempt> = JoinSet::new();
        let mut last_start: Option<Instant> = None;
        let mut control_open = true;
        loop {
            let now = Instant::now();
            while let Some(Reverse((at, _, _))) = delayed.peek() {
                if *at > now {
                    break;
                }
                let Some(Reverse((_, _, idx))) = delayed.pop() else { break };
                queue.push_back(idx);
            }
            // Dispatch while the window, the pace and the controls allow.
            let mut pace_until: Option<Instant> = None;
            while !paused && stop.is_none() && in_flight.len() < window {
                let (idx, again) = match rerun.pop_front() {
                    Some(i) => (i, true),
                    None => match queue.pop_front() {
                        Some(i) => (i, false),
                        None => break,
                    },
                };
                if let (Some(per_minute), Some(last)) = (policy.rate.per_minute(self.totals.succeeded), last_start) {
                    let gap = Duration::from_secs_f64(60.0 / per_minute.max(1e-6));
                    if Instant::now() < last + gap {
                        if again {
                            rerun.push_front(idx)
                        } else {
                            queue.push_front(idx)
                        }
                        pace_until = Some(last + gap);
                        break;
                    }
                }
                let attempt = if again { self.targets[idx].attempt.max(1) } else { self.targets[idx].attempt + 1 };
                self.targets[idx].attempt = attempt;
                self.transition(idx, TargetState::Running, None);
                let target = self.targets[idx].clone();
                let key = target.key(attempt);
                let executor = self.executor.clone();
                let timeout = policy.target_timeout;
                in_flight.spawn(async move {
                    // A panicking executor fails its target instead of leaving it running forever.
                    let apply = std::panic::AssertUnwindSafe(executor.apply(&target, &key));
                    let guarded = async move {
                        futures::FutureExt::catch_unwind(apply).await.unwrap_or_else(|_| Err(TargetError::fatal("the executor panicked")))
                    };
                    (idx, attempt, tokio::time::timeout(timeout, guarded).await)
                });
                last_start = Some(Instant::now());
            }
            let idle = queue.is_empty() && rerun.is_empty() && delayed.is_empty();
            if in_flight.is_empty() && (stop.is_some() || (idle && !paused)) {
                break;
            }
            let wake = match (delayed.peek().map(|Reverse((at, _, _))| *at), pace_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let wake = wake.filter(|_| !paused && stop.is_none());
            tokio::select! {
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    // Panics are caught inside the attempt; a join error is a runtime shutting down.
                    let Ok((idx, attempt, outcome)) = joined else { continue };
                    self.settle(idx, attempt, outcome, &mut delayed);
                    if stop.is_none() && self.abort_due() {
                        stop = Some(Stop::Aborted);
                    }
                    if stop.is_none() && policy.serial && self.targets[idx].state.is_failure() {
                        stop = Some(Stop::SerialFailure);
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {}
                msg = self.control.recv(), if control_open => {
                    let in_force = match msg {
                        Some(Control::Request(c)) => match self.store().request_task_control(self.task.id, c, self.now()).await {
                            Ok(in_force) => in_force,
                            Err(e) => {
                                // Followed here all the same; a replica taking the task over would not know.
                                tracing::warn!(task = %self.task.id, error = %e, "recording a task control failed");
                                (c != TaskControl::Resume).then_some(c)
                            }
                        },
                        Some(Control::InForce(c)) => c,
                        // Every sender is gone: nobody can steer the task any more; it runs on.
                        None => {
                            control_open = false;
                            continue;
                        }
                    };
                    match in_force {
                        Some(TaskControl::Cancel) => stop = stop.or(Some(Stop::Canceled)),
                        Some(TaskControl::Pause) if !paused && stop.is_none() => {
                            paused = true;
                            self.set_state(TaskState::Paused, None).await?;
                        }
                        None if paused && stop.is_none() => {
                            paused = false;
                            self.set_state(TaskState::Running, None).await?;
                        }
                        _ => {}
                    }
                }
            }
        }
        // Whatever never started ends canceled.
        let why = match stop {
            Some(Stop::Canceled) => "the task was canceled",
            Some(Stop::Aborted) => "the task was aborted: too many failures",
            Some(Stop::SerialFailure) => "an earlier target failed (serial mode)",
            None => "",
        };
        for idx in rerun.into_iter().chain(queue).chain(delayed.into_iter().map(|Reverse((_, _, i))| i)).collect::<Vec<_>>() {
            self.transition(idx, TargetState::Canceled, Some(why.to_owned()));
        }
        if stop == Some(Stop::Aborted) && policy.rollback_on_abort {
            self.roll_back(window, policy.target_timeout).await;
        }
        if stop == Some(Stop::Canceled) {
            self.withdraw_unfinished(window, policy.target_timeout).await;
        }
        let failures = self.totals.failed + self.totals.timed_out;
        let (state, reason) = match stop {
            Some(Stop::Canceled) => (TaskState::Canceled, Some(why)),
            Some(Stop::Aborted) => (TaskState::Aborted, Some(why)),
            Some(Stop::SerialFailure) => (TaskState::Failed, Some(why)),
            None if failures > 0 => (TaskState::Failed, None),
            None => (TaskState::Succeeded, None),
        };
        self.finish(state, reason).await?;
        Ok(Some(state))
    }

    fn settle(
        &mut self,
        idx: usize,
        attempt: u32,
        outcome: Result<Result<serde_json::Value, TargetError>, tokio::time::error::Elapsed>,
        delayed: &mut BinaryHeap<Reverse<(Instant, u64, usize)>>,
    ) {
        let retry = self.task.policy.retry;
        let (state, reason, result, retryable) = match outcome {
            Ok(Ok(value)) => (TargetState::Succeeded, None, Some(value), false),
            Ok(Err(e)) => (TargetState::Failed, Some(e.reason), None, e.retryable),
            Err(_) => {
                (TargetState::TimedOut, Some(format!("no answer within {:?}", self.task.policy.target_timeout)), None, retry.retry_timeouts)
            }
        };
        if state != TargetState::Succeeded && retryable && attempt < retry.max_attempts {
            let wait = self.backoff(attempt + 1);
            let at = clock::add(self.now(), wait);
            self.targets[idx].next_attempt_at = Some(at);
            let reason = reason.map(|r| format!("attempt {attempt} failed: {r}; retrying"));
            let from = self.targets[idx].state;
            self.targets[idx].state = TargetState::Pending;
            self.targets[idx].reason = reason;
            self.totals.shift(from, TargetState::Pending);
            self.writer.send(TargetUpdate::of(&self.targets[idx]));
            self.emit_target(idx);
            delayed.push(Reverse((Instant::now() + wait, self.targets[idx].seq, idx)));
            return;
        }
        self.targets[idx].result = result;
        self.transition(idx, state, reason);
    }

    async fn roll_back(&mut self, window: usize, timeout: Duration) {
        let done: Vec<usize> = (0..self.targets.len()).filter(|i| self.targets[*i].state == TargetState::Succeeded).rev().collect();
        for (idx, outcome) in self.undo(UndoOp::Rollback, done, window, timeout).await {
            match outcome {
                Ok(Ok(())) => self.transition(idx, TargetState::RolledBack, Some("rolled back after the abort".into())),
                Ok(Err(e)) => {
                    self.targets[idx].reason = Some(format!("rollback failed: {e}"));
                    self.writer.send(TargetUpdate::of(&self.targets[idx]));
                    self.emit_target(idx);
                }
                Err(_) => {
                    self.targets[idx].reason = Some(format!("rollback gave no answer within {timeout:?}"));
                    self.writer.send(TargetUpdate::of(&self.targets[idx]));
                    self.emit_target(idx);
                }
            }
        }
    }

    /// After a cancel: takes back what the targets tried and not succeeded left waiting (a
    /// desired item an offline agent would apply on its return).
    async fn withdraw_unfinished(&mut self, window: usize, timeout: Duration) {
        let tried: Vec<usize> =
            (0..self.targets.len()).filter(|&i| self.targets[i].attempt > 0 && self.targets[i].state != TargetState::Succeeded).collect();
        for (idx, outcome) in self.undo(UndoOp::Withdraw, tried, window, timeout).await {
            let failed = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.reason,
                Err(_) => format!("no answer within {timeout:?}"),
            };
            let target = &self.targets[idx].target;
            tracing::warn!(task = %self.task.id, target = %target, reason = %failed, "withdrawing a canceled target's change failed");
        }
    }

    /// Runs `op` on `targets`, `window` at a time, each within `timeout`; the outcomes in the
    /// order they came.
    async fn undo(&self, op: UndoOp, targets: Vec<usize>, window: usize, timeout: Duration) -> Vec<Undo> {
        let mut in_flight: JoinSet<Undo> = JoinSet::new();
        let mut iter = targets.into_iter();
        let mut outcomes = Vec::new();
        loop {
            while in_flight.len() < window.max(1) {
                let Some(idx) = iter.next() else { break };
                let target = self.targets[idx].clone();
                let executor = self.executor.clone();
                in_flight.spawn(async move {
                    let applied = target.key(target.attempt);
                    let outcome = match op {
                        UndoOp::Rollback => {
                            let key = IdempotencyKey(format!("{}:rollback", applied.0));
                            tokio::time::timeout(timeout, executor.rollback(&target, &key)).await
                        }
                        UndoOp::Withdraw => tokio::time::timeout(timeout, executor.withdraw(&target, &applied)).await,
                    };
                    (idx, outcome)
                });
            }
            let Some(joined) = in_flight.join_next().await else { break };
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
        outcomes
    }

    async fn finish(&mut self, state: TaskState, reason: Option<&str>) -> Result<()> {
        self.writer.flush().await;
        let results: Vec<serde_json::Value> = self
            .targets
            .iter()
            .map(|t| serde_json::json!({ "target": t.target, "name": t.name, "state": t.state, "attempts": t.attempt, "reason": t.reason }))
            .collect();
        let mut event = self
            .engine
            .audit_event(&self.task, self.kind.as_ref(), "finish")
            .await?
            .details(serde_json::json!({ "state": state, "totals": self.totals, "targets": results }));
        if state != TaskState::Succeeded {
            event = event.failed(format!("task {state}{}", reason.map(|r| format!(": {r}")).unwrap_or_default()));
        }
        let owner = self.engine.inner.config.owner.as_str();
        self.store().set_task_state(self.task.id, state, reason, self.now(), Some(owner), Some(&event)).await?;
        self.task.state = state;
        self.emit_task(state);
        Ok(())
    }
}

/// The next signal of the store; `None` when it has none (never resolves then) or stopped.
/// A receiver that fell behind hears `Resync`.
async fn next_signal(signals: &mut Option<broadcast::Receiver<StoreSignal>>) -> Option<StoreSignal> {
    let Some(rx) = signals else { return std::future::pending().await };
    match rx.recv().await {
        Ok(s) => Some(s),
        Err(broadcast::error::RecvError::Lagged(_)) => Some(StoreSignal::Resync),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
