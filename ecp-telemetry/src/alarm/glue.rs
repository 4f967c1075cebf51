//! Wiring the alarm engine to the metric store and to notifications.

use std::time::Duration;

use ecp_core::Timestamp;
use tokio::sync::mpsc;

use super::engine::{Alarm, AlarmEngine, AlarmEvent, MetricReader};
use crate::notify::{Notification, NotificationRouter};
use crate::sample::{MetricScope, Point, SeriesKey, SeriesSelector, Severity};
use crate::store::{Aggregation, MetricStore, RangeQuery};

/// How far back [`MetricReader::value_at`] looks for the last point before a time.
const LOOKBACK: Duration = Duration::from_secs(3600);

impl MetricReader for MetricStore {
    fn latest(&self, scope: &MetricScope, selector: &SeriesSelector) -> Vec<(SeriesKey, Point)> {
        MetricStore::latest(self, scope, selector)
    }

    fn value_at(&self, scope: &MetricScope, selector: &SeriesSelector, at: Timestamp) -> Vec<(SeriesKey, Point)> {
        let start = ecp_core::clock::sub(at, LOOKBACK);
        let query = RangeQuery { start, end: at, step: LOOKBACK, aggregation: Aggregation::Last };
        match self.range(scope, selector, query) {
            Ok(ranges) => ranges.into_iter().filter_map(|r| r.points.last().copied().map(|p| (r.series, p))).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "alarm lookback query refused");
                Vec::new()
            }
        }
    }
}

/// The notification of an alarm event (`None` for events that are not notified).
pub fn notification_of(event: &AlarmEvent) -> Option<Notification> {
    let of = |a: &Alarm, closed: bool| {
        let (contents, at) =
            if closed { (format!("recovered: {}", a.message), a.closed_at.unwrap_or(a.fired_at)) } else { (a.message.clone(), a.fired_at) };
        // The same alarm firing and recovering are two notifications; both derive their id from it.
        let id = if closed { uuid::Uuid::from_u128(a.id.as_uuid().as_u128() ^ 1) } else { *a.id.as_uuid() };
        let mut n = Notification::new(a.scope, a.name.clone(), contents, a.severity, at).with_id(id).with_tags(a.tags.clone());
        if !a.instance.is_empty() {
            n = n.with_address(a.instance.clone());
        }
        n
    };
    match event {
        AlarmEvent::Fired(a) => Some(of(a, false)),
        AlarmEvent::Closed(a) => Some(of(a, true)),
        AlarmEvent::StormStarted { scope, count, at } => Some(Notification::new(
            *scope,
            "alarm storm",
            format!("{count} alarms within the storm window: the project's alarms are paused until the storm is cleared"),
            Severity::Critical,
            *at,
        )),
        _ => None,
    }
}

/// Sends the engine's notices through `router` until the engine's notice queue closes. A failed
/// delivery raises the built-in "notification send failed" alarm (normal severity) in the project,
/// unless the failed notification was itself about a failed send.
pub fn spawn_notifications(engine: &AlarmEngine, router: NotificationRouter, capacity: usize) -> tokio::task::JoinHandle<()> {
    spawn_notifications_counted(engine, router, capacity, None)
}

/// As [`spawn_notifications`], counting each notifier's outcome in
/// `ecp_notifications_total{notifier,outcome}`.
pub fn spawn_notifications_counted(
    engine: &AlarmEngine,
    router: NotificationRouter,
    capacity: usize,
    metrics: Option<crate::own::ControlPlaneMetrics>,
) -> tokio::task::JoinHandle<()> {
    let mut rx: mpsc::Receiver<AlarmEvent> = engine.notices(capacity);
    let engine = engine.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let Some(n) = notification_of(&event) else { continue };
            let report = router.deliver(&n).await;
            if let Some(m) = &metrics {
                for o in report.outcomes() {
                    m.notification(o.notifier(), if o.is_sent() { "sent" } else { "failed" });
                }
            }
            if report.failed() > 0 {
                let failed: Vec<String> = report.failures().map(|(name, e)| format!("{name}: {e}")).collect();
                tracing::warn!(notification = %n.id, failures = ?failed, "notification delivery failed");
                let about_failure = matches!(&event, AlarmEvent::Fired(a) if a.name == super::engine::SEND_FAILED);
                if !about_failure {
                    engine.raise_send_failed(n.scope, &failed.join("; "));
                }
            }
        }
    })
}
