//! [`TaskEngine`]: runs tasks under their policies, persists every transition, resumes after crashes.

mod runner;
mod types;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};

use super::model::{Task, TaskControl, TaskState, TaskTarget, TaskTotals};
use crate::access::Principal;
use crate::audit::{AuditEvent, Operation};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::store::Store;

use runner::Runner;
use types::TaskEngineConfig;
pub use types::{EngineEvent, NewTarget, NewTask, TargetError, TargetExecutor, TaskEvent, TaskKind};

#[derive(Debug)]
enum Control {
    /// A request through a [`TaskHandle`]: recorded in the store, then followed.
    Request(TaskControl),
    /// The request in force as the store has it (made on any replica).
    InForce(Option<TaskControl>),
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

    /// Stops starting targets; those in flight finish, the rest end canceled. The request is kept
    /// in the store (see [`TaskEngine::control`], which reaches a task on any replica).
    pub async fn cancel(&self) {
        let _ = self.control.send(Control::Request(TaskControl::Cancel)).await;
    }

    /// Stops starting targets until [`resume`](Self::resume); those in flight finish.
    pub async fn pause(&self) {
        let _ = self.control.send(Control::Request(TaskControl::Pause)).await;
    }

    /// Starts targets again after a pause.
    pub async fn resume(&self) {
        let _ = self.control.send(Control::Request(TaskControl::Resume)).await;
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

/// Builds a [`TaskEngine`]; [`build`](Self::build) checks the settings.
#[must_use]
pub struct TaskEngineBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: TaskEngineConfig,
}

impl fmt::Debug for TaskEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskEngineBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl TaskEngineBuilder {
    /// The clock (default: the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// This engine's name in task leases (default `default`; 1–128 characters). Replicas sharing
    /// a store need different names; a process restarting under the same name takes its tasks
    /// back at once.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.config.owner = owner.into();
        self
    }

    /// How long a lease lasts without renewal (default 30 s; 1 s to 1 h): another replica takes
    /// over a task whose owner died after this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Target changes are written in batches, at most this long after they happen (default 20 ms;
    /// 1 ms to 10 s) ...
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.config.flush_interval = interval;
        self
    }

    /// ... or once this many are waiting (default 500; 1 to 100,000).
    pub fn flush_batch(mut self, changes: usize) -> Self {
        self.config.flush_batch = changes;
        self
    }

    /// Events buffered per task for slow subscribers, and for those of
    /// [`TaskEngine::subscribe_all`] (default 4,096; 16 to 1,000,000): a subscriber further behind
    /// misses the older ones.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.config.event_capacity = events;
        self
    }

    /// The engine.
    ///
    /// # Errors
    /// `InvalidInput` naming the setting out of range.
    pub fn build(self) -> Result<TaskEngine> {
        let c = &self.config;
        if c.owner.is_empty() || c.owner.chars().count() > 128 || c.owner.chars().any(char::is_control) {
            return Err(Error::invalid("owner", "must be 1..=128 characters without control characters"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&c.lease) {
            return Err(Error::invalid("lease", "must be 1 s to 1 hour"));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&c.flush_interval) {
            return Err(Error::invalid("flush_interval", "must be 1 ms to 10 s"));
        }
        if !(1..=100_000).contains(&c.flush_batch) {
            return Err(Error::invalid("flush_batch", "must be 1..=100000"));
        }
        if !(16..=1_000_000).contains(&c.event_capacity) {
            return Err(Error::invalid("event_capacity", "must be 16..=1000000"));
        }
        let (all, _) = broadcast::channel(c.event_capacity);
        let inner = Inner {
            store: self.store,
            clock: self.clock,
            config: self.config,
            kinds: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            all,
        };
        Ok(TaskEngine { inner: Arc::new(inner) })
    }
}

fn valid_kind_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 48 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl TaskEngine {
    /// A builder of an engine over `store`: the system clock, lease owner `default`, 30 s leases,
    /// target changes written every 20 ms or 500 changes, 4,096 events buffered per subscriber.
    pub fn builder(store: Arc<dyn Store>) -> TaskEngineBuilder {
        TaskEngineBuilder { store, clock: Arc::new(crate::clock::SystemClock), config: TaskEngineConfig::default() }
    }

    /// The events of every task this engine runs from now on (those it starts or resumes later
    /// included), each with its task's kind and project. Costs nothing while nobody subscribes;
    /// a subscriber more than [`TaskEngineBuilder::event_capacity`] events behind misses the
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
    /// is active in the project, `Unsupported` for `rollback_on_abort` with a kind that does not
    /// roll back ([`TaskKind::rolls_back`]), `Backend`.
    pub async fn submit(&self, principal: &Principal, new: NewTask) -> Result<TaskHandle> {
        let kind = self.kind(&new.kind)?;
        if new.policy.rollback_on_abort && !kind.rolls_back() {
            return Err(Error::unsupported("rollback on abort", "task kind"));
        }
        if new.targets.is_empty() {
            return Err(Error::invalid("targets", "a task needs at least one target"));
        }
        // The organization is the project's, as the store has it.
        let org = self.inner.store.get_project(new.project).await?.org;
        let now = self.inner.clock.now();
        let mut task = Task::pending(org, new.project, new.kind.clone(), new.spec, new.policy, principal.into(), now);
        task.secrets = new.secrets;
        let executor = kind.executor(&task)?;
        let targets: Vec<TaskTarget> =
            new.targets.into_iter().enumerate().map(|(i, t)| TaskTarget::new(task.id, i as u64, t.id, t.name, t.params)).collect();
        let event = self
            .audit_event(&task, kind.as_ref(), "create")
            .await?
            .details(serde_json::json!({ "targets": targets.len(), "policy": task.policy }));
        // Leased to this engine as it is created: claiming after the insert took every claimable
        // task (another replica's task between its insert and its claim, or an orphan) without
        // running it, and left a window where another replica's claim took this one.
        let lease = (self.inner.config.owner.as_str(), crate::clock::add(now, self.inner.config.lease));
        self.inner.store.create_task(&task, &targets, Some(lease), &event).await?;
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
    /// whose owner's lease ran out) and runs them. Tasks of kinds not registered here are not
    /// claimed: they stay for a replica that runs them.
    ///
    /// # Errors
    /// `Backend`.
    pub async fn resume(&self) -> Result<Vec<TaskHandle>> {
        let now = self.inner.clock.now();
        let kinds: Vec<String> = self.inner.kinds.lock().keys().cloned().collect();
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        let ids = self.inner.store.claim_tasks(&self.inner.config.owner, now, self.inner.config.lease, &kinds).await?;
        let mut handles = Vec::new();
        for id in ids {
            if let Some(h) = self.handle(id) {
                handles.push(h);
                continue;
            }
            let mut task = self.inner.store.get_task(id).await?;
            task.secrets = self.inner.store.task_secrets(id).await?;
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

    /// Asks for a task to be canceled, paused or resumed, wherever it runs: the request is kept in
    /// the store, the replica that runs the task follows it (within milliseconds on a store that
    /// signals, PostgreSQL; else at its next lease renewal, a third of the lease), and a replica
    /// that takes the task over later keeps it. Returns the request in force after this one
    /// (a cancel stays; `None` means run). The caller has authorized it.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` for a task that ended, `Backend`.
    pub async fn control(&self, id: TaskId, control: TaskControl) -> Result<Option<TaskControl>> {
        let in_force = self.inner.store.request_task_control(id, control, self.inner.clock.now()).await?;
        if let Some(h) = self.handle(id) {
            let _ = h.control.send(Control::InForce(in_force)).await;
        }
        Ok(in_force)
    }

    /// Calls [`resume`](Self::resume) every half lease until the returned task is aborted or the
    /// engine dropped: on every replica, this is what takes over the tasks of a replica that died
    /// (once their leases lapse). Register the task kinds first.
    pub fn spawn_takeover(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.config.lease / 2;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = (TaskEngine { inner }).resume().await {
                    tracing::warn!(error = %e, "taking over tasks failed; retrying");
                }
            }
        })
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
        let (events, _) = broadcast::channel(self.inner.config.event_capacity);
        let (done_tx, done_rx) = watch::channel(None);
        let control_tx_runner = control_tx.clone();
        let handle = TaskHandle { id: task.id, control: control_tx, events: events.clone(), done: done_rx };
        self.inner.running.lock().insert(task.id, handle.clone());
        let engine = self.clone();
        tokio::spawn(async move {
            let id = task.id;
            let runner = Runner::new(engine.clone(), task, executor, kind, (control_tx_runner, control_rx), events);
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
