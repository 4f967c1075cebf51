//! Samples and series: a metric name, labels, a project scope, and timestamped values.
//!
//! Every series belongs to one project ([`MetricScope`]); queries and alarm rules never cross
//! projects. Labels are kept sorted and unique, so two label sets with the same pairs compare equal
//! whatever order a source wrote them in. By convention collectors add a `source` label naming where a
//! sample came from (`edge:<id>`, `cluster:<id>`, `agent:<id>`).

use std::fmt;
use std::sync::Arc;

use ecp_core::{OrgId, ProjectId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The conventional label naming where a sample came from (`edge:<id>`, `cluster:<id>`).
pub const SOURCE_LABEL: &str = "source";

/// At most this many labels on one series.
pub const MAX_LABELS: usize = 32;
/// At most this many bytes in a metric or label name.
pub const MAX_NAME_LEN: usize = 200;
/// At most this many bytes in a label value.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;

/// The project (and its organization) a series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetricScope {
    /// The organization.
    pub org: OrgId,
    /// The project.
    pub project: ProjectId,
}

impl MetricScope {
    /// A scope.
    pub fn new(org: OrgId, project: ProjectId) -> Self {
        MetricScope { org, project }
    }
}

impl fmt::Display for MetricScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "project {}", self.project)
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`, at most [`MAX_NAME_LEN`]).
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, at most [`MAX_NAME_LEN`]).
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A metric name, validated.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MetricName(Arc<str>);

impl MetricName {
    /// A metric name.
    ///
    /// # Errors
    /// `InvalidInput` if it is not `[a-zA-Z_:][a-zA-Z0-9_:]*` or longer than [`MAX_NAME_LEN`].
    pub fn new(name: &str) -> Result<Self> {
        if is_valid_metric_name(name) {
            Ok(MetricName(Arc::from(name)))
        } else {
            Err(Error::invalid(
                "metric name",
                format!("{:?} is not [a-zA-Z_:][a-zA-Z0-9_:]* of at most {MAX_NAME_LEN} bytes", truncate(name)),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MetricName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        MetricName::new(&s)
    }
}

impl From<MetricName> for String {
    fn from(n: MetricName) -> String {
        n.0.to_string()
    }
}

impl fmt::Debug for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A set of labels: sorted by name, names unique and valid. Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[(Arc<str>, Arc<str>)]>);

impl Labels {
    /// No labels.
    pub fn empty() -> Self {
        Labels::default()
    }

    /// Labels from pairs in any order.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid or repeated name, a value longer than
    /// [`MAX_LABEL_VALUE_LEN`], or more than [`MAX_LABELS`] labels.
    pub fn new<I, K, V>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut v: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        for (k, val) in pairs {
            let (k, val) = (k.as_ref(), val.as_ref());
            if v.len() >= MAX_LABELS {
                return Err(Error::invalid("labels", format!("more than {MAX_LABELS} labels")));
            }
            if !is_valid_label_name(k) {
                return Err(Error::invalid(
                    "label name",
                    format!("{:?} is not [a-zA-Z_][a-zA-Z0-9_]* of at most {MAX_NAME_LEN} bytes", truncate(k)),
                ));
            }
            if val.len() > MAX_LABEL_VALUE_LEN {
                return Err(Error::invalid("label value", format!("value of {k} is longer than {MAX_LABEL_VALUE_LEN} bytes")));
            }
            v.push((Arc::from(k), Arc::from(val)));
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = v.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid("labels", format!("label {} given twice", w[0].0)));
        }
        Ok(Labels(v.into()))
    }

    /// The value of a label.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(name)).ok().map(|i| &*self.0[i].1)
    }

    /// These labels with one more (or one replaced).
    ///
    /// # Errors
    /// As [`Labels::new`].
    pub fn with(&self, name: &str, value: &str) -> Result<Self> {
        Labels::new(self.iter().filter(|(k, _)| *k != name).chain([(name, value)]))
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An estimate of the heap bytes these labels hold (for memory accounting).
    pub fn heap_size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len() + 2 * 16).sum::<usize>() + 16
    }
}

/// Prometheus form: `{a="x",b="y\"z"}` (empty for no labels).
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Labels({self})")
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Labels::new(m).map_err(serde::de::Error::custom)
    }
}

/// One series: a metric name and labels within a project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The project it belongs to.
    pub scope: MetricScope,
    /// The metric name.
    pub name: MetricName,
    /// The labels.
    pub labels: Labels,
}

impl SeriesKey {
    /// A series key.
    pub fn new(scope: MetricScope, name: MetricName, labels: Labels) -> Self {
        SeriesKey { scope, name, labels }
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, self.labels)
    }
}

/// One value of one series at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The series.
    pub series: SeriesKey,
    /// When it was measured.
    pub time: Timestamp,
    /// The value (counters and gauges alike; NaN and infinities are refused by the store).
    pub value: f64,
}

impl Sample {
    /// A sample.
    pub fn new(scope: MetricScope, name: MetricName, labels: Labels, time: Timestamp, value: f64) -> Self {
        Sample { series: SeriesKey::new(scope, name, labels), time, value }
    }
}

/// A value at a time, as range queries return them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The time.
    pub time: Timestamp,
    /// The value.
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_dedupe_and_validate() {
        let a = Labels::new([("b", "2"), ("a", "1")]).unwrap();
        let b = Labels::new([("a", "1"), ("b", "2")]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get("a"), Some("1"));
        assert_eq!(a.get("c"), None);
        assert_eq!(a.to_string(), r#"{a="1",b="2"}"#);
        assert!(Labels::new([("a", "1"), ("a", "2")]).is_err());
        assert!(Labels::new([("1a", "x")]).is_err());
        assert!(Labels::new([("a-b", "x")]).is_err());
        assert!(Labels::new([("a", "x".repeat(MAX_LABEL_VALUE_LEN + 1))]).is_err());
        let many: Vec<_> = (0..=MAX_LABELS).map(|i| (format!("l{i}"), "v".to_string())).collect();
        assert!(Labels::new(many).is_err());
        let c = a.with("a", "9").unwrap();
        assert_eq!(c.get("a"), Some("9"));
        assert_eq!(c.len(), 2);
        let q = Labels::new([("m", "x\"y\\z\nw")]).unwrap();
        assert_eq!(q.to_string(), r#"{m="x\"y\\z\nw"}"#);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"a":"1","b":"2"}"#);
        assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), a);
    }

    #[test]
    fn metric_names() {
        assert!(MetricName::new("emqx_connections_count").is_ok());
        assert!(MetricName::new("a:b_c").is_ok());
        assert!(MetricName::new("").is_err());
        assert!(MetricName::new("9x").is_err());
        assert!(MetricName::new("a.b").is_err());
        assert!(MetricName::new(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(MetricName::new("é").is_err());
    }
}

/// How a [`LabelMatcher`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// The label has exactly this value.
    Eq,
    /// The label is absent or has another value.
    NotEq,
    /// The label has one of the `|`-separated values.
    OneOf,
}

/// One condition on a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelMatcher {
    /// The label's name.
    pub name: String,
    /// How to compare.
    pub op: MatchOp,
    /// The value (for [`MatchOp::OneOf`], values separated by `|`).
    pub value: String,
}

impl LabelMatcher {
    /// Whether `labels` satisfy this matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        let got = labels.get(&self.name);
        match self.op {
            MatchOp::Eq => got == Some(self.value.as_str()),
            MatchOp::NotEq => got != Some(self.value.as_str()),
            MatchOp::OneOf => got.is_some_and(|g| self.value.split('|').any(|v| v == g)),
        }
    }
}

/// Which series of a project: a metric name and label conditions (all must hold).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeriesSelector {
    /// The metric name.
    pub name: MetricName,
    /// The label conditions.
    #[serde(default)]
    pub matchers: Vec<LabelMatcher>,
}

impl SeriesSelector {
    /// Every series of a metric.
    pub fn metric(name: MetricName) -> Self {
        SeriesSelector { name, matchers: Vec::new() }
    }

    /// Adds `label == value`.
    pub fn eq(mut self, label: &str, value: &str) -> Self {
        self.matchers.push(LabelMatcher { name: label.into(), op: MatchOp::Eq, value: value.into() });
        self
    }

    /// Adds `label != value`.
    pub fn not_eq(mut self, label: &str, value: &str) -> Self {
        self.matchers.push(LabelMatcher { name: label.into(), op: MatchOp::NotEq, value: value.into() });
        self
    }

    /// Whether a series (of any project) matches by name and labels.
    pub fn matches(&self, name: &MetricName, labels: &Labels) -> bool {
        *name == self.name && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// How serious an alarm or notification is: the product's two levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing (the product's `0`).
    Normal,
    /// Needs action now (the product's `1`).
    Critical,
}

impl Severity {
    /// `"normal"` or `"critical"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Normal => "normal",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
