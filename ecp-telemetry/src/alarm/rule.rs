//! Alarm rules: what to watch, when to fire and when to clear.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sample::{MetricName, SeriesSelector, Severity};

/// The largest trigger or recovery count, as in the product.
pub const MAX_COUNT: u8 = 10;

ecp_core::define_id!(
    /// The id of an alarm rule.
    RuleId, "alarm rule id"
);

/// How a value is compared with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Comparison {
    /// Whether `value <op> threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Le => value <= threshold,
            Comparison::Eq => value == threshold,
            Comparison::Ne => value != threshold,
        }
    }

    /// The operator's symbol.
    pub const fn symbol(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }
}

/// What a rule evaluates, once per instance (series, or joined pair of series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// The latest value of each matching series compared with a threshold.
    Threshold {
        /// The series.
        selector: SeriesSelector,
        /// The comparison.
        comparison: Comparison,
        /// The threshold.
        threshold: f64,
    },
    /// `numerator / denominator` compared with a threshold; series are paired on the labels the
    /// denominator has (a `node` and `source` pair memory used with memory total of the same node).
    Ratio {
        /// The numerator's series.
        numerator: SeriesSelector,
        /// The denominator's series.
        denominator: SeriesSelector,
        /// The comparison.
        comparison: Comparison,
        /// The threshold.
        threshold: f64,
    },
    /// How much a counter grew over a window (latest value minus the value `window` ago; a reset
    /// counts from zero), compared with a threshold.
    Increase {
        /// The counter's series.
        selector: SeriesSelector,
        /// The window.
        #[serde(with = "secs")]
        window: Duration,
        /// The comparison.
        comparison: Comparison,
        /// The threshold.
        threshold: f64,
    },
    /// The value went down since the previous evaluation: an uptime that drops means a restart.
    Decreased {
        /// The series (an uptime).
        selector: SeriesSelector,
    },
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

impl Condition {
    fn validate(&self) -> Result<()> {
        let finite = |t: f64| {
            if t.is_finite() { Ok(()) } else { Err(Error::invalid("condition.threshold", "must be a finite number")) }
        };
        match self {
            Condition::Threshold { threshold, .. } | Condition::Ratio { threshold, .. } => finite(*threshold),
            Condition::Increase { threshold, window, .. } => {
                finite(*threshold)?;
                if window.is_zero() || *window > Duration::from_secs(24 * 3600) {
                    return Err(Error::invalid("condition.window", "must be between 1 s and 24 h"));
                }
                Ok(())
            }
            Condition::Decreased { .. } => Ok(()),
        }
    }

    /// The threshold, if the condition has one.
    pub fn threshold(&self) -> Option<f64> {
        match self {
            Condition::Threshold { threshold, .. } | Condition::Ratio { threshold, .. } | Condition::Increase { threshold, .. } => {
                Some(*threshold)
            }
            Condition::Decreased { .. } => None,
        }
    }

    /// The comparison, if the condition has one.
    pub fn comparison(&self) -> Option<Comparison> {
        match self {
            Condition::Threshold { comparison, .. } | Condition::Ratio { comparison, .. } | Condition::Increase { comparison, .. } => {
                Some(*comparison)
            }
            Condition::Decreased { .. } => None,
        }
    }
}

/// The rules every project gets, as in the product (edge rules on, cluster rules off by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Builtin {
    /// An edge service stopped answering its probes or scrapes (`ecp_edge_up == 0`).
    EdgeServiceOffline,
    /// An edge agent went offline (`ecp_agent_up == 0`).
    EdgeAgentOffline,
    /// A Neuron south driver or north app is not running or its link is down
    /// (`neuron_node_link_state == 0`, from the agent's or scraper's node states).
    DriverError,
    /// An eKuiper rule is in error (`ekuiper_rule_status < 0`: the rule's status is `error`... see
    /// the docs of the metric).
    RuleError,
    /// A service restarted: its uptime went down (`uptime_seconds`).
    ServiceRestarted,
    /// EMQX CPU use above 80% (`emqx_vm_cpu_use`, from `/api/v5/prometheus/stats`).
    EmqxCpuHigh,
    /// EMQX node memory above 80% (`emqx_node_memory_used_bytes / emqx_node_memory_total_bytes`).
    EmqxMemoryHigh,
    /// An EMQX node is not running (`emqx_node_up == 0`).
    EmqxNodeDown,
    /// The EMQX license expires within 30 days (`emqx_license_expiry_days`).
    EmqxLicenseExpiring,
    /// Connections above 90% of the EMQX license (`emqx_connections / emqx_license_max_connections`).
    EmqxLicenseConnections,
    /// More than 100 authentication failures in 5 minutes (`emqx_authentication_failure_total`).
    EmqxAuthnFailures,
    /// More than 100 authorization denials in 5 minutes (`emqx_authorization_deny_total`).
    EmqxAuthzDenials,
}

impl Builtin {
    /// Every built-in rule.
    pub const ALL: [Builtin; 12] = [
        Builtin::EdgeServiceOffline,
        Builtin::EdgeAgentOffline,
        Builtin::DriverError,
        Builtin::RuleError,
        Builtin::ServiceRestarted,
        Builtin::EmqxCpuHigh,
        Builtin::EmqxMemoryHigh,
        Builtin::EmqxNodeDown,
        Builtin::EmqxLicenseExpiring,
        Builtin::EmqxLicenseConnections,
        Builtin::EmqxAuthnFailures,
        Builtin::EmqxAuthzDenials,
    ];

    /// The rule with the product's defaults.
    pub fn rule(self) -> AlarmRule {
        fn m(name: &str) -> SeriesSelector {
            // The names below are valid metric names, checked by the `builtins_are_valid` test.
            SeriesSelector::metric(MetricName::new(name).unwrap_or_else(|_| unreachable!("valid built-in metric name {name}")))
        }
        let th = |sel, comparison, threshold| Condition::Threshold { selector: m(sel), comparison, threshold };
        let (name, condition, severity, enabled, message, n, p) = match self {
            Builtin::EdgeServiceOffline => (
                "edge service offline",
                th("ecp_edge_up", Comparison::Eq, 0.0),
                Severity::Critical,
                true,
                "edge service %source% is offline",
                2,
                1,
            ),
            Builtin::EdgeAgentOffline => (
                "edge agent offline",
                th("ecp_agent_up", Comparison::Eq, 0.0),
                Severity::Critical,
                true,
                "edge agent %source% is offline",
                1,
                1,
            ),
            Builtin::DriverError => (
                "driver exception",
                th("neuron_node_link_state", Comparison::Eq, 0.0),
                Severity::Critical,
                true,
                "driver %node% of %source% is disconnected",
                3,
                3,
            ),
            Builtin::RuleError => (
                "rule exception",
                th("ekuiper_rule_status", Comparison::Lt, 0.0),
                Severity::Critical,
                true,
                "rule %rule% of %source% is in error",
                3,
                3,
            ),
            Builtin::ServiceRestarted => (
                "service restarted",
                Condition::Decreased { selector: m("uptime_seconds") },
                Severity::Critical,
                true,
                "%source% restarted (uptime %value% s)",
                1,
                1,
            ),
            Builtin::EmqxCpuHigh => (
                "emqx cpu usage",
                th("emqx_vm_cpu_use", Comparison::Gt, 80.0),
                Severity::Critical,
                false,
                "cpu use of %node% is %value%%",
                3,
                3,
            ),
            Builtin::EmqxMemoryHigh => (
                "emqx memory usage",
                Condition::Ratio {
                    numerator: m("emqx_node_memory_used_bytes"),
                    denominator: m("emqx_node_memory_total_bytes"),
                    comparison: Comparison::Gt,
                    threshold: 0.8,
                },
                Severity::Critical,
                false,
                "memory use of %node% is %value% of its total",
                3,
                3,
            ),
            Builtin::EmqxNodeDown => (
                "emqx node down",
                th("emqx_node_up", Comparison::Eq, 0.0),
                Severity::Critical,
                false,
                "emqx node %node% of %source% is down",
                1,
                1,
            ),
            Builtin::EmqxLicenseExpiring => (
                "emqx license expiry",
                th("emqx_license_expiry_days", Comparison::Lt, 30.0),
                Severity::Normal,
                false,
                "the license of %source% expires in %value% days",
                1,
                1,
            ),
            Builtin::EmqxLicenseConnections => (
                "emqx license usage",
                Condition::Ratio {
                    numerator: m("emqx_connections"),
                    denominator: m("emqx_license_max_connections"),
                    comparison: Comparison::Gt,
                    threshold: 0.9,
                },
                Severity::Critical,
                false,
                "%source% uses %value% of its licensed connections",
                2,
                2,
            ),
            Builtin::EmqxAuthnFailures => (
                "emqx authentication failures",
                Condition::Increase {
                    selector: m("emqx_authentication_failure_total"),
                    window: Duration::from_secs(300),
                    comparison: Comparison::Gt,
                    threshold: 100.0,
                },
                Severity::Normal,
                false,
                "%value% authentication failures in 5 minutes on %source%",
                1,
                2,
            ),
            Builtin::EmqxAuthzDenials => (
                "emqx authorization denials",
                Condition::Increase {
                    selector: m("emqx_authorization_deny_total"),
                    window: Duration::from_secs(300),
                    comparison: Comparison::Gt,
                    threshold: 100.0,
                },
                Severity::Normal,
                false,
                "%value% authorization denials in 5 minutes on %source%",
                1,
                2,
            ),
        };
        AlarmRule {
            id: RuleId::new(),
            name: name.to_string(),
            condition,
            severity,
            trigger_count: n,
            recovery_count: p,
            message: message.to_string(),
            tags: Vec::new(),
            enabled,
            builtin: Some(self),
        }
    }
}

/// An alarm rule of one project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmRule {
    /// Its id.
    pub id: RuleId,
    /// Its name (1–64 characters), unique in the project.
    pub name: String,
    /// What it evaluates.
    pub condition: Condition,
    /// The severity of the alarms it raises.
    pub severity: Severity,
    /// Fire after this many consecutive breaching evaluations (1–10).
    pub trigger_count: u8,
    /// Clear after this many consecutive healthy evaluations (1–10).
    pub recovery_count: u8,
    /// The alarm message; `%value%`, `%threshold%`, `%instance%`, `%rule%` and `%<label>%` (any
    /// label of the series) are replaced.
    pub message: String,
    /// Tags that route its notifications.
    pub tags: Vec<String>,
    /// Whether it is evaluated.
    pub enabled: bool,
    /// Which built-in rule it is, if one.
    pub builtin: Option<Builtin>,
}

impl AlarmRule {
    /// A custom rule, enabled, firing after 1 breach and clearing after 1 healthy evaluation.
    pub fn new(name: impl Into<String>, condition: Condition, severity: Severity) -> Self {
        AlarmRule {
            id: RuleId::new(),
            name: name.into(),
            condition,
            severity,
            trigger_count: 1,
            recovery_count: 1,
            message: "%rule%: %instance% is %value%".into(),
            tags: Vec::new(),
            enabled: true,
            builtin: None,
        }
    }

    /// Sets the trigger and recovery counts.
    pub fn counts(mut self, trigger: u8, recovery: u8) -> Self {
        self.trigger_count = trigger;
        self.recovery_count = recovery;
        self
    }

    /// Sets the message template.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets the tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Checks the rule.
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self) -> Result<()> {
        let n = self.name.trim();
        if n.is_empty() || n.chars().count() > 64 {
            return Err(Error::invalid("name", "must be 1 to 64 characters"));
        }
        if !(1..=MAX_COUNT).contains(&self.trigger_count) {
            return Err(Error::invalid("trigger_count", format!("must be 1 to {MAX_COUNT}")));
        }
        if !(1..=MAX_COUNT).contains(&self.recovery_count) {
            return Err(Error::invalid("recovery_count", format!("must be 1 to {MAX_COUNT}")));
        }
        if self.message.len() > 1024 {
            return Err(Error::invalid("message", "longer than 1024 bytes"));
        }
        if self.tags.len() > 20 || self.tags.iter().any(|t| t.is_empty() || t.len() > 64) {
            return Err(Error::invalid("tags", "at most 20 tags of 1 to 64 bytes"));
        }
        self.condition.validate()
    }
}

/// Fills a message template: `%name%` placeholders from `vars`, unknown ones left as they are.
pub(crate) fn render(template: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 && after[..end].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                match vars(&after[..end]) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('%');
                        out.push_str(&after[..=end]);
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid() {
        for b in Builtin::ALL {
            let r = b.rule();
            r.validate().unwrap();
            assert_eq!(r.builtin, Some(b));
        }
    }

    #[test]
    fn validation() {
        let sel = SeriesSelector::metric(MetricName::new("x").unwrap());
        let c = Condition::Threshold { selector: sel, comparison: Comparison::Gt, threshold: 1.0 };
        assert!(AlarmRule::new("r", c.clone(), Severity::Normal).validate().is_ok());
        assert!(AlarmRule::new("", c.clone(), Severity::Normal).validate().is_err());
        assert!(AlarmRule::new("r", c.clone(), Severity::Normal).counts(0, 1).validate().is_err());
        assert!(AlarmRule::new("r", c.clone(), Severity::Normal).counts(11, 1).validate().is_err());
        assert!(AlarmRule::new("r", c.clone(), Severity::Normal).counts(10, 10).validate().is_ok());
        let bad = Condition::Threshold {
            selector: SeriesSelector::metric(MetricName::new("x").unwrap()),
            comparison: Comparison::Gt,
            threshold: f64::NAN,
        };
        assert!(AlarmRule::new("r", bad, Severity::Normal).validate().is_err());
    }

    #[test]
    fn templates() {
        let vars = |k: &str| match k {
            "value" => Some("91".to_string()),
            "node" => Some("emqx@a".to_string()),
            _ => None,
        };
        assert_eq!(render("cpu of %node% is %value%%", &vars), "cpu of emqx@a is 91%");
        assert_eq!(render("%unknown% 100% %", &vars), "%unknown% 100% %");
        assert_eq!(render("%%value%%", &vars), "%91%");
        assert_eq!(render("é%node%é", &vars), "éemqx@aé");
    }
}
