//! [`TaskEngine`]: runs tasks under their policies, persists every transition, resumes after crashes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::model::{IdempotencyKey, RolloutPolicy, TargetState, TargetUpdate, Task, TaskState, TaskTarget, TaskTotals};
use crate::access::{Principal, ResourceKind};
use crate::audit::{AuditEvent, Operation};
use crate::clock::{self, Clock};
use crate::error::{Error, Result};
use crate::id::{OrgId, ProjectId, TaskId};
use crate::store::Store;

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

    /// The executor of `task` (from its spec).
    ///
    /// # Errors
    /// `InvalidInput` for a spec this kind cannot run.
    fn executor(&self, task: &Task) -> Result<Arc<dyn TargetExecutor>>;
}

/// One target of a new task.
#[derive(Debug, Clone, PartialEq)]
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
}

/// A task to submit.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Its organization.
    pub org: OrgId,
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

/// How the engine runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskEngineConfig {
    /// This engine's name in task leases. Replicas sharing a store need different names; a process
    /// restarting under the same name takes its tasks back at once.
    pub owner: String,
    /// How long a lease lasts without renewal; another replica takes over a task whose owner died
    /// after this long.
    pub lease: Duration,
    /// Target changes are written in batches: at most this long after they happen...
    pub flush_interval: Duration,
    /// ...or once this many are waiting.
    pub flush_batch: usize,
    /// Events buffered per task for slow subscribers (they miss older ones beyond it), and for
    /// the subscribers of [`TaskEngine::subscribe_all`].
    pub event_capacity: usize,
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

impl TaskEngineConfig {
    /// The defaults with a lease owner name.
    pub fn owner(owner: impl Into<String>) -> Self {
        Self { owner: owner.into(), ..Self::default() }
    }

    /// Sets the lease time.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

#[derive(Debug)]
enum Control {
    Cancel,
    Pause,
    Resume,
}

/// A running task: watch it, steer it, wait for it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskHandle {
    id: TaskId,
    control: mpsc::Sender<Control>,
    events: broadcast::Sender<TaskEvent>,
    done: watch::Receiver<Option<TaskState>>,
}

impl TaskHandle {
    /// The task.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskEvent> {
        self.events.subscribe()
    }

    /// Stops starting targets; those in flight finish, the rest end canceled.
    pub async fn cancel(&self) {
        let _ = self.control.send(Control::Cancel).await;
    }

    /// Stops starting targets until [`resume`](Self::resume); those in flight finish.
    pub async fn pause(&self) {
        let _ = self.control.send(Control::Pause).await;
    }

    /// Starts targets again after a pause.
    pub async fn resume(&self) {
        let _ = self.control.send(Control::Resume).await;
    }

    /// Waits for the task to end and returns how it ended (`None` if its runner stopped without
    /// ending it: the process is shutting down, or another replica took the task over).
    pub async fn wait(&self) -> Option<TaskState> {
        let mut done = self.done.clone();
        loop {
            if let Some(state) = *done.borrow_and_update() {
                return Some(state);
            }
            if done.changed().await.is_err() {
                return *done.borrow();
            }
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: TaskEngineConfig,
    kinds: Mutex<HashMap<String, Arc<dyn TaskKind>>>,
    running: Mutex<HashMap<TaskId, TaskHandle>>,
    /// Every task's events, for [`TaskEngine::subscribe_all`]; sent to only while someone listens.
    all: broadcast::Sender<EngineEvent>,
}

/// Runs tasks. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct TaskEngine {
    inner: Arc<Inner>,
}

impl fmt::Debug for TaskEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskEngine").field("owner", &self.inner.config.owner).field("running", &self.inner.running.lock().len()).finish()
    }
}

fn valid_kind_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 48 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl TaskEngine {
    /// An engine over `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: TaskEngineConfig) -> Self {
        let (all, _) = broadcast::channel(config.event_capacity.max(16));
        Self {
            inner: Arc::new(Inner { store, clock, config, kinds: Mutex::new(HashMap::new()), running: Mutex::new(HashMap::new()), all }),
        }
    }

    /// The events of every task this engine runs from now on (those it starts or resumes later
    /// included), each with its task's kind and project. Costs nothing while nobody subscribes;
    /// a subscriber more than [`TaskEngineConfig::event_capacity`] events behind misses the
    /// older ones (its receiver reports how many as `Lagged`). Observing never slows or changes
    /// the tasks.
    pub fn subscribe_all(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.all.subscribe()
    }

    /// Registers a kind of task.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name, `Conflict` for a name already registered.
    pub fn register(&self, kind: Arc<dyn TaskKind>) -> Result<()> {
        let name = kind.name().to_owned();
        if !valid_kind_name(&name) {
            return Err(Error::invalid("task kind", "1-48 characters of a-z, 0-9 and _"));
        }
        let mut kinds = self.inner.kinds.lock();
        if kinds.contains_key(&name) {
            return Err(Error::conflict("task kind", name, "already registered"));
        }
        kinds.insert(name, kind);
        Ok(())
    }

    fn kind(&self, name: &str) -> Result<Arc<dyn TaskKind>> {
        self.inner.kinds.lock().get(name).cloned().ok_or_else(|| Error::not_found("task kind", name))
    }

    /// Persists a task and starts it. The caller has authorized `principal` to run it.
    ///
    /// # Errors
    /// `NotFound` for an unregistered kind or a missing project, `InvalidInput` for no targets, a
    /// duplicate target or a spec the kind refuses, `Conflict` while an exclusive task of the kind
    /// is active in the project, `Backend`.
    pub async fn submit(&self, principal: &Principal, new: NewTask) -> Result<TaskHandle> {
        let kind = self.kind(&new.kind)?;
        if new.targets.is_empty() {
            return Err(Error::invalid("targets", "a task needs at least one target"));
        }
        let now = self.inner.clock.now();
        let task = Task {
            id: TaskId::new(),
            org: new.org,
            project: new.project,
            kind: new.kind.clone(),
            state: TaskState::Pending,
            spec: new.spec,
            policy: new.policy,
            created_by: principal.into(),
            reason: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        };
        let executor = kind.executor(&task)?;
        let targets: Vec<TaskTarget> =
            new.targets.into_iter().enumerate().map(|(i, t)| TaskTarget::new(task.id, i as u64, t.id, t.name, t.params)).collect();
        let event = self
            .audit_event(&task, kind.as_ref(), "create")
            .await?
            .details(serde_json::json!({ "targets": targets.len(), "policy": task.policy }));
        self.inner.store.create_task(&task, &targets, &event).await?;
        self.inner.store.claim_tasks(&self.inner.config.owner, now, self.inner.config.lease).await?;
        Ok(self.start(task, executor, kind))
    }

    async fn audit_event(&self, task: &Task, kind: &dyn TaskKind, verb: &str) -> Result<AuditEvent> {
        let project = self.inner.store.get_project(task.project).await?;
        let org = self.inner.store.get_org(task.org).await.map(|o| o.name).unwrap_or_default();
        let mut event =
            AuditEvent::new(&Principal::system("task-engine"), kind.resource_kind(), Operation::new(format!("{}.{verb}", task.kind))?)
                .org(task.org, org)
                .project(project.id, project.name)
                .resource(task.id, Some(&task.kind));
        event.actor = task.created_by.clone();
        Ok(event)
    }

    /// Takes over every unfinished task this engine may run (its own after a restart, and those
    /// whose owner's lease ran out) and runs them. Tasks of kinds not registered here are left
    /// alone.
    ///
    /// # Errors
    /// `Backend`.
    pub async fn resume(&self) -> Result<Vec<TaskHandle>> {
        let now = self.inner.clock.now();
        let ids = self.inner.store.claim_tasks(&self.inner.config.owner, now, self.inner.config.lease).await?;
        let mut handles = Vec::new();
        for id in ids {
            if let Some(h) = self.handle(id) {
                handles.push(h);
                continue;
            }
            let task = self.inner.store.get_task(id).await?;
            let Ok(kind) = self.kind(&task.kind) else {
                tracing::warn!(task = %id, kind = %task.kind, "not resuming a task of an unregistered kind");
                continue;
            };
            match kind.executor(&task) {
                Ok(executor) => handles.push(self.start(task, executor, kind)),
                Err(e) => tracing::warn!(task = %id, error = %e, "not resuming a task its kind refuses"),
            }
        }
        Ok(handles)
    }

    /// The handle of a task running in this engine.
    pub fn handle(&self, id: TaskId) -> Option<TaskHandle> {
        self.inner.running.lock().get(&id).cloned()
    }

    /// A task and its counts, from the store.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    pub async fn progress(&self, id: TaskId) -> Result<(Task, TaskTotals)> {
        let task = self.inner.store.get_task(id).await?;
        let totals = self.inner.store.task_totals(id).await?;
        Ok((task, totals))
    }

    fn start(&self, task: Task, executor: Arc<dyn TargetExecutor>, kind: Arc<dyn TaskKind>) -> TaskHandle {
        let (control_tx, control_rx) = mpsc::channel(16);
        let (events, _) = broadcast::channel(self.inner.config.event_capacity.max(16));
        let (done_tx, done_rx) = watch::channel(None);
        let handle = TaskHandle { id: task.id, control: control_tx, events: events.clone(), done: done_rx };
        self.inner.running.lock().insert(task.id, handle.clone());
        let engine = self.clone();
        tokio::spawn(async move {
            let id = task.id;
            let runner = Runner::new(engine.clone(), task, executor, kind, control_rx, events);
            let outcome = runner.run().await;
            match outcome {
                Ok(state) => {
                    let _ = done_tx.send(state);
                }
                Err(e) => {
                    tracing::error!(task = %id, error = %e, "task runner stopped; the task resumes with resume()");
                    let _ = done_tx.send(None);
                }
            }
            engine.inner.running.lock().remove(&id);
        });
        handle
    }
}

/// Writes target updates in batches, in order, retrying until the store takes them.
struct Writer {
    tx: mpsc::UnboundedSender<WriterMsg>,
}

// Nearly every message is an update: boxing it would cost an allocation per target state change.
#[allow(clippy::large_enum_variant)]
enum WriterMsg {
    Update(TargetUpdate),
    Flush(oneshot::Sender<()>),
}

impl Writer {
    fn spawn(store: Arc<dyn Store>, interval: Duration, batch: usize) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<WriterMsg>();
        tokio::spawn(async move {
            let mut pending: Vec<TargetUpdate> = Vec::new();
            let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
            loop {
                let first = if pending.is_empty() { rx.recv().await } else { None };
                let mut closed = false;
                match first {
                    Some(WriterMsg::Update(u)) => pending.push(u),
                    Some(WriterMsg::Flush(w)) => waiters.push(w),
                    None if pending.is_empty() => break,
                    None => {}
                }
                let deadline = Instant::now() + interval;
                while pending.len() < batch && waiters.is_empty() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(WriterMsg::Update(u))) => pending.push(u),
                        Ok(Some(WriterMsg::Flush(w))) => waiters.push(w),
                        Ok(None) => {
                            closed = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut backoff = Duration::from_millis(50);
                while !pending.is_empty() {
                    match store.update_targets(&pending).await {
                        Ok(()) => pending.clear(),
                        Err(e) => {
                            tracing::warn!(error = %e, updates = pending.len(), "writing target states failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if closed {
                    break;
                }
            }
        });
        Self { tx }
    }

    fn send(&self, u: TargetUpdate) {
        let _ = self.tx.send(WriterMsg::Update(u));
    }

    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(WriterMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Canceled,
    Aborted,
    SerialFailure,
}

type Attempt = (usize, u32, Result<Result<serde_json::Value, TargetError>, tokio::time::error::Elapsed>);
type Undo = (usize, Result<Result<(), TargetError>, tokio::time::error::Elapsed>);

struct Runner {
    engine: TaskEngine,
    task: Task,
    executor: Arc<dyn TargetExecutor>,
    kind: Arc<dyn TaskKind>,
    control: mpsc::Receiver<Control>,
    events: broadcast::Sender<TaskEvent>,
    kind_name: Arc<str>,
    targets: Vec<TaskTarget>,
    totals: TaskTotals,
    writer: Writer,
}

impl Runner {
    fn new(
        engine: TaskEngine,
        task: Task,
        executor: Arc<dyn TargetExecutor>,
        kind: Arc<dyn TaskKind>,
        control: mpsc::Receiver<Control>,
        events: broadcast::Sender<TaskEvent>,
    ) -> Self {
        let cfg = &engine.inner.config;
        let writer = Writer::spawn(engine.inner.store.clone(), cfg.flush_interval, cfg.flush_batch.max(1));
        let kind_name = Arc::from(task.kind.as_str());
        Self { engine, task, executor, kind, control, events, kind_name, targets: Vec::new(), totals: TaskTotals::default(), writer }
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
        self.store().set_task_state(self.task.id, state, reason, self.now(), None).await?;
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
    async fn run(mut self) -> Result<Option<TaskState>> {
        self.load_targets().await?;
        if self.task.state.is_terminal() {
            return Ok(Some(self.task.state));
        }
        let lease_lost = Arc::new(AtomicBool::new(false));
        let renewer = self.spawn_lease_renewal(lease_lost.clone());
        let result = self.drive(&lease_lost).await;
        renewer.abort();
        self.writer.flush().await;
        result
    }

    fn spawn_lease_renewal(&self, lost: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let store = self.store().clone();
        let clock = self.engine.inner.clock.clone();
        let owner = self.engine.inner.config.owner.clone();
        let lease = self.engine.inner.config.lease;
        let id = self.task.id;
        tokio::spawn(async move {
            let period = (lease / 3).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(period).await;
                match store.renew_lease(id, &owner, clock::add(clock.now(), lease)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(task = %id, "lease taken over by another engine; stopping");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => tracing::warn!(task = %id, error = %e, "renewing the task lease failed"),
                }
            }
        })
    }

    async fn drive(&mut self, lease_lost: &AtomicBool) -> Result<Option<TaskState>> {
        let policy = self.task.policy.clone();
        let window = policy.window();
        let mut paused = self.task.state == TaskState::Paused;
        if !paused {
            self.set_state(TaskState::Running, None).await?;
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
        let mut stop: Option<Stop> = None;
        let mut last_start: Option<Instant> = None;
        let mut control_open = true;
        loop {
            if lease_lost.load(Ordering::SeqCst) {
                in_flight.shutdown().await;
                return Ok(None);
            }
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
                msg = self.control.recv(), if control_open => match msg {
                    Some(Control::Cancel) => stop = stop.or(Some(Stop::Canceled)),
                    Some(Control::Pause) if !paused && stop.is_none() => {
                        paused = true;
                        self.set_state(TaskState::Paused, None).await?;
                    }
                    Some(Control::Resume) if paused => {
                        paused = false;
                        self.set_state(TaskState::Running, None).await?;
                    }
                    Some(_) => {}
                    // Every handle is gone: nobody can steer the task any more; it runs on.
                    None => control_open = false,
                },
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
        let mut in_flight: JoinSet<Undo> = JoinSet::new();
        let mut iter = done.into_iter();
        loop {
            while in_flight.len() < window {
                let Some(idx) = iter.next() else { break };
                let target = self.targets[idx].clone();
                let key = IdempotencyKey(format!("{}:rollback", target.key(target.attempt)));
                let executor = self.executor.clone();
                in_flight.spawn(async move { (idx, tokio::time::timeout(timeout, executor.rollback(&target, &key)).await) });
            }
            let Some(joined) = in_flight.join_next().await else { break };
            let Ok((idx, outcome)) = joined else { continue };
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
        self.store().set_task_state(self.task.id, state, reason, self.now(), Some(&event)).await?;
        self.task.state = state;
        self.emit_task(state);
        Ok(())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
