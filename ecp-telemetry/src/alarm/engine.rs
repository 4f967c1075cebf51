//! The alarm engine: evaluates rules against the metric store, keeps active alarms and their
//! history, silences, the storm guard and custom alarms.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ecp_core::identity::TokenHash;
use ecp_core::{Clock, ProjectId, Timestamp};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use super::rule::{AlarmRule, Comparison, Condition, RuleId, render};
use crate::error::{Error, Result};
use crate::sample::{Labels, MetricScope, Point, SeriesKey, SeriesSelector, Severity};

/// Reads what rules evaluate: implemented by the metric store, or by anything a host brings.
pub trait MetricReader: Send + Sync + fmt::Debug + 'static {
    /// The latest point of every series of `scope` matching `selector`.
    fn latest(&self, scope: &MetricScope, selector: &SeriesSelector) -> Vec<(SeriesKey, Point)>;
    /// For every matching series, its last point at or before `at` (none if it has none).
    fn value_at(&self, scope: &MetricScope, selector: &SeriesSelector, at: Timestamp) -> Vec<(SeriesKey, Point)>;
}

/// The id of an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlarmId(pub uuid::Uuid);

impl AlarmId {
    /// A new id (UUIDv7, so ids sort by creation).
    pub fn new() -> Self {
        AlarmId(uuid::Uuid::now_v7())
    }
}

impl Default for AlarmId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for AlarmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an alarm came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AlarmOrigin {
    /// An alarm rule of the project.
    Rule {
        /// The rule.
        rule: RuleId,
    },
    /// Raised by the control plane itself (a notification that could not be sent).
    System {
        /// What happened (`"notification send failed"`).
        what: String,
    },
    /// Pushed by an outside system with the project's custom alarm token.
    Custom {
        /// The pusher's de-duplication key (the same uuid is the same alarm).
        uuid: String,
    },
}

/// Whether an alarm is still on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    /// On.
    Active,
    /// Over: recovered or moved by hand.
    History,
}

/// How an alarm ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Closure {
    /// Its rule saw enough healthy evaluations.
    Recovered,
    /// Someone moved it to history.
    Manual {
        /// Who.
        by: String,
    },
    /// Its rule was deleted.
    RuleDeleted,
}

/// Who acknowledged an alarm, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// Who.
    pub by: String,
    /// When.
    pub at: Timestamp,
}

/// An alarm, active or in history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Its id.
    pub id: AlarmId,
    /// Its project.
    pub scope: MetricScope,
    /// Where it came from.
    pub origin: AlarmOrigin,
    /// The rule's name (or `"custom alarm"`).
    pub name: String,
    /// Which instance of the rule fired: the series' labels, or the custom alarm's uuid.
    pub instance: String,
    /// The labels of the series that fired (empty for custom alarms).
    pub labels: Labels,
    /// Its severity.
    pub severity: Severity,
    /// The rendered message.
    pub message: String,
    /// Tags that route its notifications.
    pub tags: Vec<String>,
    /// The value that made it fire.
    pub value: Option<f64>,
    /// When it fired (for custom alarms: the pusher's timestamp).
    pub fired_at: Timestamp,
    /// Active or history.
    pub state: AlarmState,
    /// When it ended.
    pub closed_at: Option<Timestamp>,
    /// How it ended.
    pub closure: Option<Closure>,
    /// Its acknowledgement.
    pub acknowledged: Option<Acknowledgement>,
}

/// What happened, as the engine tells observers and notifiers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AlarmEvent {
    /// An alarm fired.
    Fired(Alarm),
    /// An alarm recovered or was moved to history.
    Closed(Alarm),
    /// A project crossed the storm threshold: its alarms are paused until cleared.
    StormStarted {
        /// The project.
        scope: MetricScope,
        /// Alarms in the last window.
        count: u32,
        /// When.
        at: Timestamp,
    },
    /// A project's storm was cleared; its alarms resume.
    StormCleared {
        /// The project.
        scope: MetricScope,
        /// Alarms suppressed during the storm.
        suppressed: u64,
    },
}

/// A project's alarm settings (the product's "project settings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmSettings {
    /// Whether rules are evaluated and custom alarms taken.
    pub enabled: bool,
    /// Whether only critical alarms are notified.
    pub notify_critical_only: bool,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings { enabled: true, notify_critical_only: false }
    }
}

/// The storm guard's state of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormStatus {
    /// Since when alarms are paused, if they are.
    pub paused_since: Option<Timestamp>,
    /// Alarms in the current window.
    pub recent: u32,
    /// Alarms suppressed since the storm started (each rule instance or custom alarm once).
    pub suppressed: u64,
}

/// The engine's limits and timings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AlarmConfig {
    /// Alarms per `storm_window` in one project that start a storm (product: 50).
    pub storm_threshold: u32,
    /// The storm guard's window (product: one minute).
    pub storm_window: Duration,
    /// Custom alarms older than this are dropped (product: 10 minutes).
    pub custom_max_age: Duration,
    /// Custom alarms further than this in the future are refused.
    pub custom_max_skew: Duration,
    /// Points older than this are no data for rules.
    pub stale_after: Duration,
    /// At most this many alarms kept in a project's history (oldest dropped first).
    pub max_history: usize,
    /// At most this many active alarms in a project (further ones suppressed and counted).
    pub max_active: usize,
    /// At most this many tracked instances per rule (further ones ignored and counted).
    pub max_instances_per_rule: usize,
    /// At most this many rules per project.
    pub max_rules: usize,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            storm_threshold: 50,
            storm_window: Duration::from_secs(60),
            custom_max_age: Duration::from_secs(600),
            custom_max_skew: Duration::from_secs(300),
            stale_after: Duration::from_secs(300),
            max_history: 100_000,
            max_active: 10_000,
            max_instances_per_rule: 100_000,
            max_rules: 500,
        }
    }
}

impl AlarmConfig {
    /// Sets the storm threshold and window.
    pub fn storm(mut self, threshold: u32, window: Duration) -> Self {
        self.storm_threshold = threshold;
        self.storm_window = window;
        self
    }

    /// Sets how old a point may be and still count.
    pub fn stale_after(mut self, d: Duration) -> Self {
        self.stale_after = d;
        self
    }

    /// Sets the history bound.
    pub fn max_history(mut self, n: usize) -> Self {
        self.max_history = n;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.storm_threshold == 0 {
            return Err(Error::invalid("storm_threshold", "must be at least 1"));
        }
        if self.storm_window.is_zero() {
            return Err(Error::invalid("storm_window", "must be positive"));
        }
        if self.max_history == 0 || self.max_active == 0 || self.max_instances_per_rule == 0 || self.max_rules == 0 {
            return Err(Error::invalid("limits", "must be at least 1"));
        }
        Ok(())
    }
}

/// Counters of what the engine did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Rule evaluations (one per rule per project per round).
    pub evaluations: u64,
    /// Alarms fired.
    pub fired: u64,
    /// Alarms closed.
    pub closed: u64,
    /// Alarms not raised because the project was in a storm, disabled, or at its active limit.
    pub suppressed: u64,
    /// Alarms not raised because their rule or instance was silenced.
    pub silenced: u64,
    /// Instances ignored over the per-rule limit.
    pub instances_over_limit: u64,
    /// History records dropped over the history bound.
    pub history_dropped: u64,
    /// Notifications dropped because the notification queue was full.
    pub notices_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    evaluations: AtomicU64,
    fired: AtomicU64,
    closed: AtomicU64,
    suppressed: AtomicU64,
    silenced: AtomicU64,
    instances_over_limit: AtomicU64,
    history_dropped: AtomicU64,
    notices_dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Instance {
    breaches: u8,
    healthy: u8,
    active: Option<AlarmId>,
    last_value: Option<f64>,
    last_seen: Option<Timestamp>,
}

/// `None`: not silenced; `Some(None)`: until lifted; `Some(Some(t))`: until `t`.
type Silence = Option<Option<Timestamp>>;

fn silenced(s: &Silence, now: Timestamp) -> bool {
    match s {
        None => false,
        Some(None) => true,
        Some(Some(until)) => now < *until,
    }
}

#[derive(Debug)]
struct RuleSlot {
    rule: AlarmRule,
    /// Keyed by the series' labels; the display form (the alarm's `instance`) is made only when
    /// an alarm fires.
    instances: HashMap<Labels, Instance>,
    silence: Silence,
    silenced_instances: HashMap<String, Option<Timestamp>>,
}

#[derive(Debug)]
pub(crate) struct ProjectState {
    scope: MetricScope,
    settings: AlarmSettings,
    rules: BTreeMap<RuleId, RuleSlot>,
    active: BTreeMap<AlarmId, Alarm>,
    history: VecDeque<Alarm>,
    recent: VecDeque<Timestamp>,
    paused_since: Option<Timestamp>,
    suppressed_in_storm: u64,
    storm_keys: std::collections::HashSet<String>,
    custom_active: HashMap<String, AlarmId>,
}

/// The alarm engine of every project: rules, alarms, silences, storms, custom alarms.
#[derive(Clone)]
pub struct AlarmEngine {
    inner: Arc<Inner>,
}

struct Inner {
    reader: Arc<dyn MetricReader>,
    clock: Arc<dyn Clock>,
    config: AlarmConfig,
    projects: RwLock<HashMap<ProjectId, Arc<Mutex<ProjectState>>>>,
    tokens: RwLock<HashMap<TokenHash, MetricScope>>,
    events: broadcast::Sender<AlarmEvent>,
    outbox: Mutex<Option<mpsc::Sender<AlarmEvent>>>,
    counters: Counters,
}

impl fmt::Debug for AlarmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlarmEngine")
            .field("projects", &self.inner.projects.read().len())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What a custom alarm push did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CustomOutcome {
    /// A new alarm.
    Raised(AlarmId),
    /// An active alarm with the same uuid was updated.
    Updated(AlarmId),
    /// Dropped: older than the configured maximum age.
    TooOld,
    /// Not raised: alarms are disabled, paused by a storm, or at their limit.
    Suppressed,
}

/// The body of a custom alarm push, as the product documents it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomBody {
    message: String,
    timestamp: serde_json::Value,
    #[serde(default)]
    severity: Option<serde_json::Value>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
}

/// The name of the alarm raised when a notification cannot be delivered.
pub const SEND_FAILED: &str = "notification send failed";

/// The largest custom alarm body.
pub const MAX_CUSTOM_BODY: usize = 64 * 1024;

impl AlarmEngine {
    /// An engine reading `reader`.
    ///
    /// # Errors
    /// `InvalidInput` for a bad configuration.
    pub fn new(reader: Arc<dyn MetricReader>, clock: Arc<dyn Clock>, config: AlarmConfig) -> Result<Self> {
        config.validate()?;
        let (events, _) = broadcast::channel(4096);
        Ok(AlarmEngine {
            inner: Arc::new(Inner {
                reader,
                clock,
                config,
                projects: RwLock::new(HashMap::new()),
                tokens: RwLock::new(HashMap::new()),
                events,
                outbox: Mutex::new(None),
                counters: Counters::default(),
            }),
        })
    }

    /// Every event from now on (observers; a slow receiver loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<AlarmEvent> {
        self.inner.events.subscribe()
    }

    /// The events to notify (fired and closed alarms the project's settings want notified, storm
    /// starts): a bounded queue of `capacity`; when full, notices are dropped and counted. Replaces
    /// an earlier outbox.
    pub fn notices(&self, capacity: usize) -> mpsc::Receiver<AlarmEvent> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        *self.inner.outbox.lock() = Some(tx);
        rx
    }

    /// What the engine did so far.
    pub fn stats(&self) -> EngineStats {
        let c = &self.inner.counters;
        EngineStats {
            evaluations: c.evaluations.load(Ordering::Relaxed),
            fired: c.fired.load(Ordering::Relaxed),
            closed: c.closed.load(Ordering::Relaxed),
            suppressed: c.suppressed.load(Ordering::Relaxed),
            silenced: c.silenced.load(Ordering::Relaxed),
            instances_over_limit: c.instances_over_limit.load(Ordering::Relaxed),
            history_dropped: c.history_dropped.load(Ordering::Relaxed),
            notices_dropped: c.notices_dropped.load(Ordering::Relaxed),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AlarmConfig {
        &self.inner.config
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Starts evaluating a project (idempotent), with the built-in rules at their defaults.
    pub fn attach(&self, scope: MetricScope) {
        if self.inner.projects.read().contains_key(&scope.project) {
            return;
        }
        let mut projects = self.inner.projects.write();
        projects.entry(scope.project).or_insert_with(|| {
            let rules = super::Builtin::ALL
                .iter()
                .map(|b| {
                    let rule = b.rule();
                    (rule.id, RuleSlot { rule, instances: HashMap::new(), silence: None, silenced_instances: HashMap::new() })
                })
                .collect();
            Arc::new(Mutex::new(ProjectState {
                scope,
                settings: AlarmSettings::default(),
                rules,
                active: BTreeMap::new(),
                history: VecDeque::new(),
                recent: VecDeque::new(),
                paused_since: None,
                suppressed_in_storm: 0,
                storm_keys: std::collections::HashSet::new(),
                custom_active: HashMap::new(),
            }))
        });
    }

    /// Stops evaluating a project and forgets its alarms (when the project is deleted).
    pub fn detach(&self, project: ProjectId) {
        self.inner.projects.write().remove(&project);
        self.inner.tokens.write().retain(|_, s| s.project != project);
    }

    pub(crate) fn state(&self, project: ProjectId) -> Option<Arc<Mutex<ProjectState>>> {
        self.inner.projects.read().get(&project).cloned()
    }

    /// Evaluates every rule of every attached project once.
    pub fn evaluate(&self) {
        let states: Vec<_> = self.inner.projects.read().values().cloned().collect();
        let now = self.now();
        for st in states {
            let mut st = st.lock();
            self.evaluate_project(&mut st, now);
        }
    }

    /// Evaluates every `interval` until the handle is aborted.
    pub fn spawn(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                engine.evaluate();
            }
        })
    }

    fn evaluate_project(&self, st: &mut ProjectState, now: Timestamp) {
        if !st.settings.enabled {
            return;
        }
        let scope = st.scope;
        let ids: Vec<RuleId> = st.rules.keys().copied().collect();
        for id in ids {
            let Some(slot) = st.rules.get(&id) else { continue };
            if !slot.rule.enabled {
                continue;
            }
            self.inner.counters.evaluations.fetch_add(1, Ordering::Relaxed);
            let values = self.instance_values(&scope, &slot.rule.condition, now);
            let mut to_fire = Vec::new();
            let mut to_close = Vec::new();
            {
                let Some(slot) = st.rules.get_mut(&id) else { continue };
                let rule = &slot.rule;
                for (labels, value) in values {
                    let tracked = slot.instances.len();
                    let inst = match slot.instances.get_mut(&labels) {
                        Some(i) => i,
                        None if tracked >= self.inner.config.max_instances_per_rule => {
                            self.inner.counters.instances_over_limit.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        None => slot.instances.entry(labels.clone()).or_default(),
                    };
                    let breaching = match &rule.condition {
                        Condition::Decreased { .. } => inst.last_value.is_some_and(|prev| value < prev),
                        c => c.comparison().zip(c.threshold()).is_some_and(|(cmp, t)| cmp.holds(value, t)),
                    };
                    inst.last_value = Some(value);
                    inst.last_seen = Some(now);
                    if breaching {
                        inst.breaches = inst.breaches.saturating_add(1);
                        inst.healthy = 0;
                    } else {
                        inst.healthy = inst.healthy.saturating_add(1);
                        inst.breaches = 0;
                    }
                    match inst.active {
                        None if inst.breaches >= rule.trigger_count => {
                            let muted = silenced(&slot.silence, now)
                                || (!slot.silenced_instances.is_empty()
                                    && slot.silenced_instances.get(&labels.to_string()).is_some_and(|u| silenced(&Some(*u), now)));
                            if muted {
                                self.inner.counters.silenced.fetch_add(1, Ordering::Relaxed);
                                // Counted once per breach streak: start over so a long silence is not counted every round.
                                inst.breaches = 0;
                            } else {
                                to_fire.push((labels, value));
                            }
                        }
                        Some(alarm) if inst.healthy >= rule.recovery_count => {
                            inst.active = None;
                            to_close.push(alarm);
                        }
                        _ => {}
                    }
                }
                // Forget instances that have had no data for a long time and hold no alarm.
                let horizon = ecp_core::clock::sub(now, self.inner.config.stale_after * 2);
                slot.instances.retain(|_, i| i.active.is_some() || i.last_seen.is_some_and(|t| t >= horizon));
            }
            for alarm in to_close {
                self.close(st, alarm, Closure::Recovered, now);
            }
            for (labels, value) in to_fire {
                let key = labels.to_string();
                let Some(slot) = st.rules.get(&id) else { continue };
                let rule = &slot.rule;
                let threshold = rule.condition.threshold();
                let cmp = rule.condition.comparison();
                let message = render(&rule.message, &|k| match k {
                    "value" => Some(fmt_value(value)),
                    "threshold" => threshold.map(fmt_value),
                    "comparison" => cmp.map(|c: Comparison| c.symbol().to_string()),
                    "instance" => Some(key.clone()),
                    "rule" => Some(rule.name.clone()),
                    other => labels.get(other).map(str::to_string),
                });
                let alarm = Alarm {
                    id: AlarmId::new(),
                    scope,
                    origin: AlarmOrigin::Rule { rule: id },
                    name: rule.name.clone(),
                    instance: key.clone(),
                    labels: labels.clone(),
                    severity: rule.severity,
                    message,
                    tags: rule.tags.clone(),
                    value: Some(value),
                    fired_at: now,
                    state: AlarmState::Active,
                    closed_at: None,
                    closure: None,
                    acknowledged: None,
                };
                let key_labels = labels;
                if let Some(aid) = self.raise(st, alarm, now)
                    && let Some(inst) = st.rules.get_mut(&id).and_then(|s| s.instances.get_mut(&key_labels))
                {
                    inst.active = Some(aid);
                }
            }
        }
    }

    /// The current value of each instance of a condition.
    fn instance_values(&self, scope: &MetricScope, cond: &Condition, now: Timestamp) -> Vec<(Labels, f64)> {
        let fresh = ecp_core::clock::sub(now, self.inner.config.stale_after);
        let reader = &self.inner.reader;
        let latest = |sel: &SeriesSelector| -> Vec<(SeriesKey, Point)> {
            reader.latest(scope, sel).into_iter().filter(|(_, p)| p.time >= fresh && p.value.is_finite()).collect()
        };
        match cond {
            Condition::Threshold { selector, .. } | Condition::Decreased { selector } => {
                latest(selector).into_iter().map(|(k, p)| (k.labels, p.value)).collect()
            }
            Condition::Ratio { numerator, denominator, .. } => {
                let dens = latest(denominator);
                let mut by_key: HashMap<String, f64> = HashMap::with_capacity(dens.len());
                let mut names: Vec<Vec<String>> = Vec::new();
                for (k, p) in &dens {
                    by_key.insert(k.labels.to_string(), p.value);
                    let n: Vec<String> = k.labels.iter().map(|(n, _)| n.to_string()).collect();
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
                let mut out = Vec::new();
                for (k, p) in latest(numerator) {
                    for n in &names {
                        let Ok(join) = Labels::new(k.labels.iter().filter(|(l, _)| n.iter().any(|x| x == l))) else { continue };
                        if join.len() != n.len() {
                            continue;
                        }
                        if let Some(den) = by_key.get(&join.to_string())
                            && *den != 0.0
                        {
                            out.push((k.labels.clone(), p.value / den));
                            break;
                        }
                    }
                }
                out
            }
            Condition::Increase { selector, window, .. } => {
                let before: HashMap<Labels, f64> = reader
                    .value_at(scope, selector, ecp_core::clock::sub(now, *window))
                    .into_iter()
                    .map(|(k, p)| (k.labels, p.value))
                    .collect();
                latest(selector)
                    .into_iter()
                    .filter_map(|(k, p)| {
                        let base = before.get(&k.labels)?;
                        // A counter that went down was reset: count from zero.
                        let inc = if p.value >= *base { p.value - base } else { p.value };
                        Some((k.labels, inc))
                    })
                    .collect()
            }
        }
    }

    /// Records a new alarm through the storm guard and limits; returns its id if raised.
    fn raise(&self, st: &mut ProjectState, alarm: Alarm, now: Timestamp) -> Option<AlarmId> {
        let c = &self.inner.counters;
        if !st.settings.enabled || st.paused_since.is_some() || st.active.len() >= self.inner.config.max_active {
            // Counted once per instance however many evaluations retry it during the storm.
            if st.paused_since.is_some()
                && st.storm_keys.len() < 100_000
                && st.storm_keys.insert(format!("{:?}/{}", alarm.origin, alarm.instance))
            {
                st.suppressed_in_storm += 1;
            }
            c.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let window_start = ecp_core::clock::sub(now, self.inner.config.storm_window);
        while st.recent.front().is_some_and(|t| *t < window_start) {
            st.recent.pop_front();
        }
        st.recent.push_back(now);
        let id = alarm.id;
        let notify = !st.settings.notify_critical_only || alarm.severity == Severity::Critical;
        st.active.insert(id, alarm.clone());
        c.fired.fetch_add(1, Ordering::Relaxed);
        tracing::info!(project = %st.scope.project, alarm = %id, name = %alarm.name, instance = %alarm.instance, severity = %alarm.severity, "alarm fired");
        self.emit(AlarmEvent::Fired(alarm), notify);
        let count = u32::try_from(st.recent.len()).unwrap_or(u32::MAX);
        if count >= self.inner.config.storm_threshold {
            st.paused_since = Some(now);
            st.suppressed_in_storm = 0;
            tracing::warn!(project = %st.scope.project, count, "alarm storm: the project's alarms are paused until cleared");
            self.emit(AlarmEvent::StormStarted { scope: st.scope, count, at: now }, true);
        }
        Some(id)
    }

    fn close(&self, st: &mut ProjectState, id: AlarmId, closure: Closure, now: Timestamp) -> Option<Alarm> {
        let mut alarm = st.active.remove(&id)?;
        match &alarm.origin {
            AlarmOrigin::Custom { uuid } => {
                st.custom_active.remove(uuid);
            }
            AlarmOrigin::System { what } => {
                st.custom_active.remove(&format!("system:{what}"));
            }
            AlarmOrigin::Rule { .. } => {}
        }
        alarm.state = AlarmState::History;
        alarm.closed_at = Some(now);
        alarm.closure = Some(closure);
        self.inner.counters.closed.fetch_add(1, Ordering::Relaxed);
        st.history.push_back(alarm.clone());
        while st.history.len() > self.inner.config.max_history {
            st.history.pop_front();
            self.inner.counters.history_dropped.fetch_add(1, Ordering::Relaxed);
        }
        let notify = st.paused_since.is_none() && (!st.settings.notify_critical_only || alarm.severity == Severity::Critical);
        self.emit(AlarmEvent::Closed(alarm.clone()), notify);
        Some(alarm)
    }

    fn emit(&self, event: AlarmEvent, notify: bool) {
        if notify
            && let Some(tx) = self.inner.outbox.lock().as_ref()
            && tx.try_send(event.clone()).is_err()
        {
            self.inner.counters.notices_dropped.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.inner.events.send(event);
    }

    // --- operations used by the project handle -------------------------------------------------

    pub(crate) fn with_state<T>(&self, scope: MetricScope, f: impl FnOnce(&mut ProjectState) -> T) -> T {
        self.attach(scope);
        let st = self.state(scope.project).unwrap_or_else(|| unreachable!("attached just above"));
        let mut st = st.lock();
        f(&mut st)
    }

    /// Pushes a custom alarm with a project's token and the product's JSON body
    /// (`message`, `timestamp` in seconds, `severity` 0 or 1, `tag`, `uuid`).
    ///
    /// # Errors
    /// `PermissionDenied` for an unknown token; `InvalidInput` for a malformed, oversized or
    /// future-dated body.
    pub fn push_custom(&self, token: &str, body: &[u8]) -> Result<CustomOutcome> {
        let hash = TokenHash::of(token);
        let scope = self.inner.tokens.read().get(&hash).copied().ok_or_else(|| {
            Error::Core(ecp_core::Error::PermissionDenied {
                principal: "custom alarm pusher".into(),
                permission: "push custom alarm".into(),
                scope: "project".into(),
                reason: "unknown or revoked custom alarm token".into(),
            })
        })?;
        if body.len() > MAX_CUSTOM_BODY {
            return Err(Error::TooLarge { what: "custom alarm body", size: body.len(), limit: MAX_CUSTOM_BODY });
        }
        let b: CustomBody = serde_json::from_slice(body).map_err(|e| Error::invalid("body", format!("not a custom alarm: {e}")))?;
        let message = b.message.trim();
        if message.is_empty() || message.chars().count() > 4096 {
            return Err(Error::invalid("message", "must be 1 to 4096 characters"));
        }
        let secs: i64 = match &b.timestamp {
            serde_json::Value::String(s) => {
                s.trim().parse().map_err(|_| Error::invalid("timestamp", "must be a number of seconds since the epoch"))?
            }
            serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| Error::invalid("timestamp", "must be a whole number of seconds"))?,
            _ => return Err(Error::invalid("timestamp", "must be a number of seconds since the epoch")),
        };
        let at = Timestamp::from_second(secs).map_err(|_| Error::invalid("timestamp", "out of range"))?;
        let severity = match &b.severity {
            None | Some(serde_json::Value::Null) => Severity::Normal,
            Some(v) => match v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
                Some(0) => Severity::Normal,
                Some(1) => Severity::Critical,
                _ => return Err(Error::invalid("severity", "must be 0 (normal) or 1 (critical)")),
            },
        };
        let tag = b.tag.filter(|t| !t.is_empty());
        if tag.as_ref().is_some_and(|t| t.len() > 64) {
            return Err(Error::invalid("tag", "longer than 64 bytes"));
        }
        let uuid = match b.uuid.filter(|u| !u.is_empty()) {
            Some(u) if u.len() > 128 => return Err(Error::invalid("uuid", "longer than 128 bytes")),
            Some(u) => u,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let now = self.now();
        if at < ecp_core::clock::sub(now, self.inner.config.custom_max_age) {
            return Ok(CustomOutcome::TooOld);
        }
        if at > ecp_core::clock::add(now, self.inner.config.custom_max_skew) {
            return Err(Error::invalid("timestamp", "is in the future"));
        }
        Ok(self.with_state(scope, |st| {
            if let Some(id) = st.custom_active.get(&uuid).copied()
                && let Some(a) = st.active.get_mut(&id)
            {
                a.message = message.to_string();
                a.severity = severity;
                a.tags = tag.into_iter().collect();
                return CustomOutcome::Updated(id);
            }
            let alarm = Alarm {
                id: AlarmId::new(),
                scope,
                origin: AlarmOrigin::Custom { uuid: uuid.clone() },
                name: "custom alarm".into(),
                instance: uuid.clone(),
                labels: Labels::empty(),
                severity,
                message: message.to_string(),
                tags: tag.into_iter().collect(),
                value: None,
                fired_at: at,
                state: AlarmState::Active,
                closed_at: None,
                closure: None,
                acknowledged: None,
            };
            match self.raise(st, alarm, now) {
                Some(id) => {
                    st.custom_active.insert(uuid, id);
                    CustomOutcome::Raised(id)
                }
                None => CustomOutcome::Suppressed,
            }
        }))
    }

    /// Raises (or refreshes) the project's "notification send failed" alarm, of normal severity,
    /// as the product does when an email or webhook cannot be sent. It is closed by hand.
    pub fn raise_send_failed(&self, scope: MetricScope, reason: &str) {
        let now = self.now();
        let key = format!("system:{SEND_FAILED}");
        let message: String = format!("{SEND_FAILED}: {reason}").chars().take(1024).collect();
        self.with_state(scope, |st| {
            if let Some(id) = st.custom_active.get(&key).copied()
                && let Some(a) = st.active.get_mut(&id)
            {
                a.message = message;
                a.value = Some(a.value.unwrap_or(1.0) + 1.0);
                return;
            }
            let alarm = Alarm {
                id: AlarmId::new(),
                scope,
                origin: AlarmOrigin::System { what: SEND_FAILED.into() },
                name: SEND_FAILED.into(),
                instance: key.clone(),
                labels: Labels::empty(),
                severity: Severity::Normal,
                message,
                tags: Vec::new(),
                value: Some(1.0),
                fired_at: now,
                state: AlarmState::Active,
                closed_at: None,
                closure: None,
                acknowledged: None,
            };
            if let Some(id) = self.raise(st, alarm, now) {
                st.custom_active.insert(key, id);
            }
        });
    }

    pub(crate) fn set_token(&self, scope: MetricScope, token: &str) {
        let hash = TokenHash::of(token);
        let mut tokens = self.inner.tokens.write();
        tokens.retain(|_, s| s.project != scope.project);
        tokens.insert(hash, scope);
    }

    pub(crate) fn revoke_token(&self, project: ProjectId) -> bool {
        let mut tokens = self.inner.tokens.write();
        let before = tokens.len();
        tokens.retain(|_, s| s.project != project);
        tokens.len() != before
    }

    pub(crate) fn op_close(&self, st: &mut ProjectState, id: AlarmId, by: &str) -> Option<Alarm> {
        let now = self.now();
        let rule = match st.active.get(&id)?.origin {
            AlarmOrigin::Rule { rule } => Some(rule),
            AlarmOrigin::Custom { .. } | AlarmOrigin::System { .. } => None,
        };
        if let Some(slot) = rule.and_then(|r| st.rules.get_mut(&r)) {
            for inst in slot.instances.values_mut() {
                if inst.active == Some(id) {
                    // Moved by hand: the instance must breach N times again before it fires again.
                    inst.active = None;
                    inst.breaches = 0;
                }
            }
        }
        self.close(st, id, Closure::Manual { by: by.to_string() }, now)
    }

    pub(crate) fn op_clear_storm(&self, st: &mut ProjectState) -> Option<u64> {
        st.paused_since?;
        let suppressed = st.suppressed_in_storm;
        st.paused_since = None;
        st.suppressed_in_storm = 0;
        st.storm_keys.clear();
        st.recent.clear();
        self.emit(AlarmEvent::StormCleared { scope: st.scope, suppressed }, false);
        Some(suppressed)
    }

    pub(crate) fn op_delete_rule(&self, st: &mut ProjectState, id: RuleId) -> Option<AlarmRule> {
        let slot = st.rules.remove(&id)?;
        let now = self.now();
        for inst in slot.instances.values() {
            if let Some(a) = inst.active {
                self.close(st, a, Closure::RuleDeleted, now);
            }
        }
        Some(slot.rule)
    }

    pub(crate) fn op_put_rule(&self, st: &mut ProjectState, rule: AlarmRule) -> Result<()> {
        rule.validate()?;
        if st.rules.values().any(|s| s.rule.id != rule.id && s.rule.name.eq_ignore_ascii_case(&rule.name)) {
            return Err(Error::Core(ecp_core::Error::conflict("alarm rule", &rule.name, "a rule of this name exists in the project")));
        }
        match st.rules.get_mut(&rule.id) {
            Some(slot) => {
                // A changed condition or counts start counting afresh; active alarms stay until they recover.
                if slot.rule.condition != rule.condition {
                    slot.instances.retain(|_, i| i.active.is_some());
                    for i in slot.instances.values_mut() {
                        i.breaches = 0;
                        i.healthy = 0;
                        i.last_value = None;
                    }
                }
                slot.rule = rule;
            }
            None => {
                if st.rules.len() >= self.inner.config.max_rules {
                    return Err(Error::Core(ecp_core::Error::LimitExceeded {
                        limit: "alarm rules per project",
                        max: self.inner.config.max_rules as u64,
                    }));
                }
                st.rules.insert(rule.id, RuleSlot { rule, instances: HashMap::new(), silence: None, silenced_instances: HashMap::new() });
            }
        }
        Ok(())
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{:.3}", v).trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

// --- accessors of project state for the project handle ------------------------------------------

impl ProjectState {
    pub(crate) fn rules(&self) -> Vec<AlarmRule> {
        self.rules.values().map(|s| s.rule.clone()).collect()
    }

    pub(crate) fn rule(&self, id: RuleId) -> Option<&AlarmRule> {
        self.rules.get(&id).map(|s| &s.rule)
    }

    pub(crate) fn active(&self) -> impl DoubleEndedIterator<Item = &Alarm> {
        self.active.values()
    }

    pub(crate) fn history(&self) -> impl DoubleEndedIterator<Item = &Alarm> {
        self.history.iter()
    }

    pub(crate) fn active_mut(&mut self, id: AlarmId) -> Option<&mut Alarm> {
        self.active.get_mut(&id)
    }

    pub(crate) fn history_mut(&mut self, id: AlarmId) -> Option<&mut Alarm> {
        self.history.iter_mut().find(|a| a.id == id)
    }

    pub(crate) fn settings(&self) -> AlarmSettings {
        self.settings
    }

    pub(crate) fn set_settings(&mut self, s: AlarmSettings) {
        self.settings = s;
    }

    pub(crate) fn storm(&self) -> StormStatus {
        StormStatus {
            paused_since: self.paused_since,
            recent: u32::try_from(self.recent.len()).unwrap_or(u32::MAX),
            suppressed: self.suppressed_in_storm,
        }
    }

    pub(crate) fn silence_rule(&mut self, id: RuleId, until: Option<Timestamp>, on: bool) -> bool {
        match self.rules.get_mut(&id) {
            Some(slot) => {
                slot.silence = on.then_some(until);
                true
            }
            None => false,
        }
    }

    pub(crate) fn silence_instance(&mut self, id: RuleId, instance: &str, until: Option<Timestamp>, on: bool) -> bool {
        match self.rules.get_mut(&id) {
            Some(slot) => {
                if on {
                    if slot.silenced_instances.len() >= 10_000 && !slot.silenced_instances.contains_key(instance) {
                        return false;
                    }
                    slot.silenced_instances.insert(instance.to_string(), until);
                } else {
                    slot.silenced_instances.remove(instance);
                }
                true
            }
            None => false,
        }
    }

    /// Removes history records: older than `before`, and beyond the newest `keep`; at most `max`.
    pub(crate) fn purge(&mut self, before: Option<Timestamp>, keep: Option<usize>, max: usize) -> usize {
        let mut removed = 0;
        // History is in closing order, oldest first.
        while removed < max {
            let over_count = keep.is_some_and(|k| self.history.len() > k);
            let too_old = before.is_some_and(|b| self.history.front().is_some_and(|a| a.closed_at.unwrap_or(a.fired_at) < b));
            if !(over_count || too_old) {
                break;
            }
            self.history.pop_front();
            removed += 1;
        }
        removed
    }
}
