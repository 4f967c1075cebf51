//! The control plane's own metrics, in the Prometheus text format, for a host's `/metrics`.
//!
//! [`ControlPlaneMetrics`] holds a [`prometheus_client`] registry with the families below and
//! typed methods that count into them; the host serves [`encode`](ControlPlaneMetrics::encode)
//! with [`PROMETHEUS_CONTENT_TYPE`] (or [`encode_openmetrics`](ControlPlaneMetrics::encode_openmetrics)
//! with [`OPENMETRICS_CONTENT_TYPE`]) and may [`register`](ControlPlaneMetrics::register) metrics
//! of its own in the same registry.
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `ecp_tasks_total` | counter | `kind`, `outcome` (a final [`TaskState`]) |
//! | `ecp_task_targets_total` | counter | `outcome` (a final [`TargetState`]) |
//! | `ecp_task_events_lagged_total` | counter | |
//! | `ecp_agent_messages_total` | counter | `direction` (`in`, `out`), `kind` |
//! | `ecp_agent_messages_rejected_total` | counter | `reason` |
//! | `ecp_agent_samples_dropped_total` | counter | `reason` (`unmanaged`, `invalid`, `over_cardinality`) |
//! | `ecp_authz_denials_total` | counter | `permission` (`edge_service:edit`) |
//! | `ecp_collector_errors_total` | counter | `collector`, `kind` ([`Error::label`]) |
//! | `ecp_collector_samples_total` | counter | `collector` |
//! | `ecp_metric_store_series` | gauge | |
//! | `ecp_alarms_fired_total` | counter | `severity` |
//! | `ecp_notifications_total` | counter | `notifier`, `outcome` |
//! | `ecp_log_records_total` | counter | `outcome` |
//!
//! A family shows in the text once it has a series: the unlabelled ones (`ecp_metric_store_series`,
//! `ecp_task_events_lagged_total`) always, the labelled ones from their first count on.
//!
//! **Bounded cardinality.** Labels that hold names from configuration or from the outside (task
//! kinds, collector and notifier names, agent message kinds, rejection reasons, outcomes) are cut
//! to [`MAX_LABEL_VALUE_BYTES`], and once a family has [`MAX_SERIES_PER_FAMILY`] series, a value
//! it has not seen yet is counted under [`OTHER`] instead. A family therefore never holds more
//! than `MAX_SERIES_PER_FAMILY` series plus its `other` ones. Labels drawn from closed enums
//! (states, permissions, severities, directions) are bounded by the enum.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ecp_core::access::{Authorizer, Denial, Permission, Principal, Scope, Visibility};
use ecp_core::task::{EngineEvent, TargetState, TaskEngine, TaskEvent, TaskState};
use parking_lot::{Mutex, MutexGuard};
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::sample::Severity;

pub use prometheus_client;

/// The `Content-Type` of [`ControlPlaneMetrics::encode`]: the Prometheus text format 0.0.4.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `Content-Type` of [`ControlPlaneMetrics::encode_openmetrics`]: OpenMetrics text 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// At most this many series per family before new label values are counted under [`OTHER`].
pub const MAX_SERIES_PER_FAMILY: usize = 256;

/// Label values from names (task kinds, collectors, notifiers) are cut to this many bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 64;

/// The label value that stands for every value beyond a family's limit.
pub const OTHER: &str = "other";

/// The direction of an agent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Direction {
    /// From an agent to the control plane.
    In,
    /// From the control plane to an agent.
    Out,
}

impl Direction {
    /// `"in"` or `"out"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

type Labels<const N: usize> = [(&'static str, Cow<'static, str>); N];
type Counters<const N: usize> = Family<Labels<N>, Counter>;

struct Inner {
    registry: Mutex<Registry>,
    tasks: Bounded<2>,
    task_targets: Counters<1>,
    task_events_lagged: Counter,
    agent_messages: Bounded<2>,
    agent_rejected: Bounded<1>,
    agent_samples_dropped: Bounded<1>,
    authz_denials: Counters<1>,
    collector_errors: Bounded<2>,
    collector_samples: Bounded<1>,
    metric_store_series: Gauge,
    alarms_fired: Counters<1>,
    notifications: Bounded<2>,
    log_records: Bounded<1>,
}

/// The control plane's own metrics; see the [module docs](self). Cheap to clone: every clone
/// counts into the same registry.
#[derive(Clone)]
pub struct ControlPlaneMetrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for ControlPlaneMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("ControlPlaneMetrics")
            .field("task_series", &i.tasks.len())
            .field("agent_message_series", &i.agent_messages.len())
            .field("collector_series", &i.collector_samples.len())
            .finish_non_exhaustive()
    }
}

impl Default for ControlPlaneMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Cuts `v` to [`MAX_LABEL_VALUE_BYTES`] on a character boundary.
fn cut(v: &str) -> &str {
    let mut end = v.len().min(MAX_LABEL_VALUE_BYTES);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

/// A family whose series are counted, to bound them.
struct Bounded<const N: usize> {
    family: Counters<N>,
    /// Series created (at least as many as exist: a race may count one twice).
    series: AtomicUsize,
}

impl<const N: usize> Bounded<N>
where
    Labels<N>: EncodeLabelSet,
{
    fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Counters::<N>::default();
        registry.register(name, help, family.clone());
        Bounded { family, series: AtomicUsize::new(0) }
    }

    /// The counter of `labels`; past the family's limit, a series that does not exist yet has
    /// its name labels (the owned values, cut by [`owned`]) replaced by [`OTHER`]. Borrowed
    /// values come from closed sets in the code.
    fn counter(&self, mut labels: Labels<N>) -> Counter {
        if let Some(c) = self.family.get(&labels) {
            return c.clone();
        }
        if self.series.load(Ordering::Relaxed) >= MAX_SERIES_PER_FAMILY {
            for (_, v) in labels.iter_mut() {
                if matches!(v, Cow::Owned(_)) {
                    *v = Cow::Borrowed(OTHER);
                }
            }
            if let Some(c) = self.family.get(&labels) {
                return c.clone();
            }
        }
        self.series.fetch_add(1, Ordering::Relaxed);
        self.family.get_or_create_owned(&labels)
    }

    fn len(&self) -> usize {
        self.series.load(Ordering::Relaxed)
    }
}

fn owned(v: &str) -> Cow<'static, str> {
    Cow::Owned(cut(v).to_owned())
}

fn family<const N: usize>(registry: &mut Registry, name: &str, help: &str) -> Counters<N>
where
    Labels<N>: EncodeLabelSet,
{
    let f = Counters::<N>::default();
    registry.register(name, help, f.clone());
    f
}

impl ControlPlaneMetrics {
    /// A registry with every family of the [module docs](self), all at zero.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let tasks = Bounded::register(&mut r, "ecp_tasks", "Tasks that ended, by kind and final state");
        let task_targets = family(&mut r, "ecp_task_targets", "Task targets that reached a final state, by state");
        let task_events_lagged = Counter::default();
        r.register("ecp_task_events_lagged", "Task events the metrics observer missed because it fell behind", task_events_lagged.clone());
        let agent_messages =
            Bounded::register(&mut r, "ecp_agent_messages", "Agent protocol messages accepted or sent, by direction and kind");
        let agent_rejected = Bounded::register(&mut r, "ecp_agent_messages_rejected", "Agent protocol messages rejected, by reason");
        let agent_samples_dropped =
            Bounded::register(&mut r, "ecp_agent_samples_dropped", "Samples from agent heartbeats not stored, by reason");
        let authz_denials = family(&mut r, "ecp_authz_denials", "Authorization checks denied, by permission");
        let collector_errors = Bounded::register(&mut r, "ecp_collector_errors", "Failed collections, by collector and error kind");
        let collector_samples = Bounded::register(&mut r, "ecp_collector_samples", "Samples collected, by collector");
        let metric_store_series = Gauge::default();
        r.register("ecp_metric_store_series", "Series held by the metric store", metric_store_series.clone());
        let alarms_fired = family(&mut r, "ecp_alarms_fired", "Alarms fired, by severity");
        let notifications = Bounded::register(&mut r, "ecp_notifications", "Notifications, by notifier and outcome");
        let log_records = Bounded::register(&mut r, "ecp_log_records", "Log records taken, by outcome");
        ControlPlaneMetrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(r),
                tasks,
                task_targets,
                task_events_lagged,
                agent_messages,
                agent_rejected,
                agent_samples_dropped,
                authz_denials,
                collector_errors,
                collector_samples,
                metric_store_series,
                alarms_fired,
                notifications,
                log_records,
            }),
        }
    }

    /// Registers a metric of the host's in the same registry (encoded with the others). Counter
    /// names must not end in `_total`: the encoder adds it (prometheus-client asserts this in
    /// debug builds).
    pub fn register(&self, name: impl Into<String>, help: impl Into<String>, metric: impl Metric) {
        self.inner.registry.lock().register(name, help, metric);
    }

    /// The registry itself, locked, for what [`register`](Self::register) does not cover
    /// (sub-registries, units, collectors). Encoding waits while the guard is held.
    pub fn registry_mut(&self) -> MutexGuard<'_, Registry> {
        self.inner.registry.lock()
    }

    /// Every metric in the Prometheus text format 0.0.4 (no `# EOF` line); serve it with
    /// [`PROMETHEUS_CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &self.inner.registry.lock()) {
            // Writing to a String does not fail; a metric of the host's that fails to encode would.
            tracing::warn!(error = %e, "encoding the control plane metrics failed");
        }
        out
    }

    /// Every metric in the OpenMetrics text format 1.0.0 (ending with `# EOF`); serve it with
    /// [`OPENMETRICS_CONTENT_TYPE`].
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if let Err(e) = text::encode(&mut out, &self.inner.registry.lock()) {
            tracing::warn!(error = %e, "encoding the control plane metrics failed");
        }
        out
    }

    /// Counts a task that ended in `outcome`.
    pub fn task_finished(&self, kind: &str, outcome: TaskState) {
        self.inner.tasks.counter([("kind", owned(kind)), ("outcome", Cow::Borrowed(outcome.as_str()))]).inc();
    }

    /// Counts a task target that reached `outcome` (a target rolled back after succeeding counts
    /// once as `succeeded` and once as `rolled_back`).
    pub fn task_target_finished(&self, outcome: TargetState) {
        self.inner.task_targets.get_or_create_owned(&[("outcome", Cow::Borrowed(outcome.as_str()))]).inc();
    }

    /// Counts what one engine-wide task event says (see [`observe_tasks`](Self::observe_tasks)).
    pub fn observe_task_event(&self, event: &EngineEvent) {
        match &event.event {
            TaskEvent::Task { state, .. } if state.is_terminal() => self.task_finished(&event.kind, *state),
            TaskEvent::Target { state, .. } if state.is_terminal() => self.task_target_finished(*state),
            _ => {}
        }
    }

    /// Counts every task of `engine` that ends, and every target that reaches a final state, from
    /// now on, until the engine is dropped or the returned task is aborted. Events the observer
    /// misses when it falls behind are counted in `ecp_task_events_lagged_total`.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn observe_tasks(&self, engine: &TaskEngine) -> JoinHandle<()> {
        let mut events = engine.subscribe_all();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => me.observe_task_event(&event),
                    Err(RecvError::Lagged(n)) => {
                        me.inner.task_events_lagged.inc_by(n);
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// Counts an agent message of `kind` accepted (`In`) or sent (`Out`).
    pub fn agent_message(&self, direction: Direction, kind: &str) {
        self.inner.agent_messages.counter([("direction", Cow::Borrowed(direction.as_str())), ("kind", owned(kind))]).inc();
    }

    /// Counts an agent message rejected for `reason` (`malformed`, `bad_topic` ...).
    pub fn agent_message_rejected(&self, reason: &str) {
        self.inner.agent_rejected.counter([("reason", owned(reason))]).inc();
    }

    /// Counts `n` samples from agent heartbeats that were not stored, for `reason`
    /// (`unmanaged`, `invalid`, `over_cardinality`).
    pub fn agent_samples_dropped(&self, reason: &str, n: u64) {
        if n > 0 {
            self.inner.agent_samples_dropped.counter([("reason", owned(reason))]).inc_by(n);
        }
    }

    /// Counts a denied authorization check of `permission`.
    pub fn authz_denied(&self, permission: Permission) {
        let label = format!("{}:{}", permission.kind.as_str(), permission.action.as_str());
        self.inner.authz_denials.get_or_create_owned(&[("permission", Cow::Owned(label))]).inc();
    }

    /// Counts a failed collection of `collector`, by the error's [`label`](Error::label).
    pub fn collector_error(&self, collector: &str, error: &Error) {
        self.collector_failed(collector, error.label());
    }

    /// Counts a failed collection of `collector` by a kind label (an [`Error::label`], or
    /// `"timeout"`, `"panic"`).
    pub fn collector_failed(&self, collector: &str, kind: &'static str) {
        self.inner.collector_errors.counter([("collector", owned(collector)), ("kind", Cow::Borrowed(kind))]).inc();
    }

    /// Sets `ecp_metric_store_series` from `store` every `interval` until the store is dropped.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn observe_store(&self, store: &std::sync::Arc<crate::store::MetricStore>, interval: std::time::Duration) -> JoinHandle<()> {
        let weak = std::sync::Arc::downgrade(store);
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(std::time::Duration::from_millis(10)));
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                me.set_metric_store_series(store.stats().series as u64);
            }
        })
    }

    /// Counts alarms as the engine fires them, until the engine is dropped.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn observe_alarms(&self, engine: &crate::alarm::AlarmEngine) -> JoinHandle<()> {
        let mut events = engine.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(crate::alarm::AlarmEvent::Fired(a)) => me.alarm_fired(a.severity),
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// Counts `n` samples collected by `collector`.
    pub fn collector_samples(&self, collector: &str, n: u64) {
        self.inner.collector_samples.counter([("collector", owned(collector))]).inc_by(n);
    }

    /// Sets how many series the metric store holds.
    pub fn set_metric_store_series(&self, series: u64) {
        self.inner.metric_store_series.set(i64::try_from(series).unwrap_or(i64::MAX));
    }

    /// Counts an alarm fired at `severity`.
    pub fn alarm_fired(&self, severity: Severity) {
        self.inner.alarms_fired.get_or_create_owned(&[("severity", Cow::Borrowed(severity.as_str()))]).inc();
    }

    /// Counts a notification of `notifier` with its `outcome` (`delivered`, `failed`,
    /// `suppressed`).
    pub fn notification(&self, notifier: &str, outcome: &str) {
        let c = self.inner.notifications.counter([("notifier", owned(notifier)), ("outcome", owned(outcome))]);
        c.inc();
    }

    /// Counts `n` log records with their `outcome` (`stored`, `dropped`, `too_large`).
    pub fn log_records(&self, outcome: &str, n: u64) {
        self.inner.log_records.counter([("outcome", owned(outcome))]).inc_by(n);
    }
}

/// An [`Authorizer`] that counts the denials of the one it wraps in
/// `ecp_authz_denials_total{permission}` and otherwise answers exactly as it does.
pub struct CountingAuthorizer<A: ?Sized> {
    inner: Arc<A>,
    metrics: ControlPlaneMetrics,
}

impl<A: Authorizer + ?Sized> CountingAuthorizer<A> {
    /// Wraps `inner` (an `Arc<RbacAuthorizer>`, an `Arc<dyn Authorizer>` ...).
    pub fn new(inner: Arc<A>, metrics: ControlPlaneMetrics) -> Self {
        CountingAuthorizer { inner, metrics }
    }

    /// The wrapped authorizer.
    pub fn inner(&self) -> &Arc<A> {
        &self.inner
    }
}

impl<A: ?Sized> Clone for CountingAuthorizer<A> {
    fn clone(&self) -> Self {
        CountingAuthorizer { inner: self.inner.clone(), metrics: self.metrics.clone() }
    }
}

impl<A: Authorizer + ?Sized> fmt::Debug for CountingAuthorizer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingAuthorizer").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<A: Authorizer + ?Sized> Authorizer for CountingAuthorizer<A> {
    fn check(&self, principal: &Principal, permission: Permission, scope: &Scope) -> Result<(), Denial> {
        let outcome = self.inner.check(principal, permission, scope);
        if outcome.is_err() {
            self.metrics.authz_denied(permission);
        }
        outcome
    }

    fn has_access(&self, principal: &Principal, scope: &Scope) -> bool {
        self.inner.has_access(principal, scope)
    }

    fn visibility(&self, principal: &Principal, permission: Permission) -> Visibility {
        self.inner.visibility(principal, permission)
    }

    fn scope_removed(&self, scope: &Scope) {
        self.inner.scope_removed(scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_limit_count_as_other() {
        let m = ControlPlaneMetrics::new();
        for i in 0..MAX_SERIES_PER_FAMILY + 50 {
            m.collector_samples(&format!("scrape-{i}"), 1);
        }
        m.collector_samples("scrape-0", 1);
        let text = m.encode();
        let series = text.lines().filter(|l| l.starts_with("ecp_collector_samples_total{")).count();
        assert_eq!(series, MAX_SERIES_PER_FAMILY + 1);
        assert!(text.contains("ecp_collector_samples_total{collector=\"other\"} 50\n"), "{text}");
        assert!(text.contains("ecp_collector_samples_total{collector=\"scrape-0\"} 2\n"));
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let m = ControlPlaneMetrics::new();
        m.collector_samples(&"é".repeat(100), 3);
        let text = m.encode();
        let want = format!("ecp_collector_samples_total{{collector=\"{}\"}} 3\n", "é".repeat(MAX_LABEL_VALUE_BYTES / 2));
        assert!(text.contains(&want), "{text}");
    }
}
