//! The engine's public types: alarms, their origins, states and events, settings, configuration, stats.

use std::fmt;
use std::time::Duration;

use ecp_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alarm::rule::RuleId;
use crate::error::{Error, Result};
use crate::sample::{Labels, MetricScope, Point, SeriesKey, SeriesSelector, Severity};

/// Reads what rules evaluate: implemented by the metric store, or by anything a host brings.
pub trait MetricReader: Send + Sync + fmt::Debug + 'static {
    /// The latest point of every series of `scope` matching `selector`.
    fn latest(&self, scope: &MetricScope, selector: &SeriesSelector) -> Vec<(SeriesKey, Point)>;
    /// For every matching series, its last point at or before `at` (none if it has none).
    fn value_at(&self, scope: &MetricScope, selector: &SeriesSelector, at: Timestamp) -> Vec<(SeriesKey, Point)>;
}

ecp_core::define_id!(
    /// The id of an alarm (UUIDv7, so ids sort by creation).
    AlarmId, "alarm id"
);

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

/// The engine's limits and timings. Build with [`AlarmConfig::builder`]; `build()` validates. The
/// default is what `AlarmConfig::builder().build()` gives (the product's where it has one).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AlarmConfig {
    pub(crate) storm_threshold: u32,
    pub(crate) storm_window: Duration,
    pub(crate) custom_max_age: Duration,
    pub(crate) custom_max_skew: Duration,
    pub(crate) stale_after: Duration,
    pub(crate) max_history: usize,
    pub(crate) max_active: usize,
    pub(crate) max_instances_per_rule: usize,
    pub(crate) max_rules: usize,
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
    /// A builder starting from the defaults: a storm at 50 alarms a minute in one project, custom
    /// alarms up to 10 minutes old and 5 minutes ahead, points stale after 5 minutes, 100,000
    /// alarms of history, 10,000 active alarms and 500 rules per project, 100,000 instances per
    /// rule.
    pub fn builder() -> AlarmConfigBuilder {
        AlarmConfigBuilder(Self::default())
    }

    /// Alarms per [`storm_window`](Self::storm_window) in one project that start a storm.
    pub fn storm_threshold(&self) -> u32 {
        self.storm_threshold
    }

    /// The storm guard's window.
    pub fn storm_window(&self) -> Duration {
        self.storm_window
    }

    /// Custom alarms older than this are dropped.
    pub fn custom_max_age(&self) -> Duration {
        self.custom_max_age
    }

    /// Custom alarms further than this in the future are refused.
    pub fn custom_max_skew(&self) -> Duration {
        self.custom_max_skew
    }

    /// Points older than this are no data for rules.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// The most alarms kept in a project's history.
    pub fn max_history(&self) -> usize {
        self.max_history
    }

    /// The most active alarms in a project.
    pub fn max_active(&self) -> usize {
        self.max_active
    }

    /// The most tracked instances per rule.
    pub fn max_instances_per_rule(&self) -> usize {
        self.max_instances_per_rule
    }

    /// The most rules per project.
    pub fn max_rules(&self) -> usize {
        self.max_rules
    }
}

/// Builds an [`AlarmConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct AlarmConfigBuilder(AlarmConfig);

impl AlarmConfigBuilder {
    /// Alarms per `window` in one project that start a storm, pausing its alarms until cleared
    /// (default 50 per minute, the product's; at least 1, in a positive window).
    pub fn storm(mut self, threshold: u32, window: Duration) -> Self {
        self.0.storm_threshold = threshold;
        self.0.storm_window = window;
        self
    }

    /// Custom alarms older than this are dropped (default 10 minutes, the product's; positive).
    pub fn custom_max_age(mut self, d: Duration) -> Self {
        self.0.custom_max_age = d;
        self
    }

    /// Custom alarms further than this in the future are refused (default 5 minutes; 0 refuses any
    /// ahead of the clock).
    pub fn custom_max_skew(mut self, d: Duration) -> Self {
        self.0.custom_max_skew = d;
        self
    }

    /// Points older than this are no data for rules (default 5 minutes; positive).
    pub fn stale_after(mut self, d: Duration) -> Self {
        self.0.stale_after = d;
        self
    }

    /// The most alarms kept in a project's history, the oldest dropped first (default 100,000; at
    /// least 1).
    pub fn max_history(mut self, n: usize) -> Self {
        self.0.max_history = n;
        self
    }

    /// The most active alarms in a project, further ones suppressed and counted (default 10,000; at
    /// least 1).
    pub fn max_active(mut self, n: usize) -> Self {
        self.0.max_active = n;
        self
    }

    /// The most tracked instances per rule, further ones ignored and counted (default 100,000; at
    /// least 1).
    pub fn max_instances_per_rule(mut self, n: usize) -> Self {
        self.0.max_instances_per_rule = n;
        self
    }

    /// The most rules per project (default 500; at least 1).
    pub fn max_rules(mut self, n: usize) -> Self {
        self.0.max_rules = n;
        self
    }

    /// The configuration.
    ///
    /// # Errors
    /// `InvalidInput` naming the field: `storm_threshold` of 0, a zero `storm_window`,
    /// `custom_max_age` or `stale_after`, or `limits` when a count limit is 0.
    pub fn build(self) -> Result<AlarmConfig> {
        let c = self.0;
        if c.storm_threshold == 0 {
            return Err(Error::invalid("storm_threshold", "must be at least 1"));
        }
        if c.storm_window.is_zero() {
            return Err(Error::invalid("storm_window", "must be positive"));
        }
        if c.custom_max_age.is_zero() {
            return Err(Error::invalid("custom_max_age", "must be positive"));
        }
        if c.stale_after.is_zero() {
            return Err(Error::invalid("stale_after", "must be positive"));
        }
        if c.max_history == 0 || c.max_active == 0 || c.max_instances_per_rule == 0 || c.max_rules == 0 {
            return Err(Error::invalid("limits", "must be at least 1"));
        }
        Ok(c)
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

/// The name of the alarm raised when a notification cannot be delivered.
pub const SEND_FAILED: &str = "notification send failed";

/// The largest custom alarm body.
pub const MAX_CUSTOM_BODY: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_config_is_checked() {
        let c = AlarmConfig::builder().build().unwrap();
        assert_eq!((c.storm_threshold(), c.storm_window(), c.max_history()), (50, Duration::from_secs(60), 100_000));
        assert_eq!(
            (c.custom_max_age(), c.custom_max_skew(), c.stale_after()),
            (Duration::from_secs(600), Duration::from_secs(300), Duration::from_secs(300))
        );
        assert_eq!((c.max_active(), c.max_instances_per_rule(), c.max_rules()), (10_000, 100_000, 500));
        let field = |b: AlarmConfigBuilder| match b.build() {
            Err(Error::Core(ecp_core::Error::InvalidInput { field, .. })) => field.into_owned(),
            other => panic!("{other:?}"),
        };
        let b = AlarmConfig::builder;
        assert_eq!(field(b().storm(0, Duration::from_secs(60))), "storm_threshold");
        assert_eq!(field(b().storm(5, Duration::ZERO)), "storm_window");
        assert_eq!(field(b().custom_max_age(Duration::ZERO)), "custom_max_age");
        assert_eq!(field(b().stale_after(Duration::ZERO)), "stale_after");
        for bad in [b().max_history(0), b().max_active(0), b().max_instances_per_rule(0), b().max_rules(0)] {
            assert_eq!(field(bad), "limits");
        }
        let c = b().storm(3, Duration::from_secs(10)).custom_max_skew(Duration::ZERO).max_rules(2).build().unwrap();
        assert_eq!(
            (c.storm_threshold(), c.storm_window(), c.custom_max_skew(), c.max_rules()),
            (3, Duration::from_secs(10), Duration::ZERO, 2)
        );
    }
}
