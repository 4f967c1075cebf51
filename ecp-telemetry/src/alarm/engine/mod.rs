//! The alarm engine: evaluates rules against the metric store, keeps active alarms and their
//! history, silences, the storm guard and custom alarms.

mod ops;
mod persist;
mod state;
mod types;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ecp_core::identity::TokenHash;
use ecp_core::{Clock, ProjectId, Timestamp};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, mpsc};

use super::rule::{AlarmRule, Comparison, Condition, RuleId, render};
use crate::error::Result;
use crate::sample::{Labels, MetricScope, Point, SeriesKey, SeriesSelector, Severity};

pub use types::{
    Acknowledgement, Alarm, AlarmConfig, AlarmConfigBuilder, AlarmEvent, AlarmId, AlarmOrigin, AlarmSettings, AlarmState, Closure,
    CustomOutcome, EngineStats, MAX_CUSTOM_BODY, MetricReader, SEND_FAILED, StormStatus,
};

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
    /// What changed, for the writer of [`AlarmEngine::persist`].
    persist: Mutex<Option<mpsc::UnboundedSender<persist::Change>>>,
}

impl fmt::Debug for AlarmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlarmEngine")
            .field("projects", &self.inner.projects.read().len())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AlarmEngine {
    /// An engine reading `reader`.
    ///
    /// # Errors
    /// None today: `config` was checked by [`AlarmConfigBuilder::build`].
    pub fn new(reader: Arc<dyn MetricReader>, clock: Arc<dyn Clock>, config: AlarmConfig) -> Result<Self> {
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
                persist: Mutex::new(None),
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
        self.alarm_changed(&alarm);
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
        self.alarm_changed(&alarm);
        let mut dropped = Vec::new();
        while st.history.len() > self.inner.config.max_history {
            if let Some(old) = st.history.pop_front() {
                dropped.push(old.id);
            }
            self.inner.counters.history_dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.alarms_forgotten(st.scope.project, dropped);
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
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{:.3}", v).trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
