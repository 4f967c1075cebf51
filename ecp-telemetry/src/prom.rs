//! The Prometheus text exposition format (0.0.4): a lenient parser, free of I/O, and the
//! conversion of what it parsed into [`Sample`]s of one project.
//!
//! The parser is strict where a wrong answer would be worse than none (metric and label names,
//! label value escapes, values, timestamps: a line with any of these wrong is skipped and
//! reported) and lenient where real sources stray from the format without harm:
//!
//! - repeated `# HELP`/`# TYPE` headers of one family (Neuron prints them per node and per group),
//!   headers after the family's samples, `# TYPE` before or after `# HELP`, `# HELP` without text
//!   (NanoMQ);
//! - samples without any `# TYPE` line (they are untyped; Neuron's `mem_cache_bytes` sits under a
//!   `mem_cache` header);
//! - `\r\n` line ends, blank lines, leading and trailing blanks, a trailing comma in a label set.
//!
//! Malformed lines are skipped and reported with their 1-based line number; the parser never fails
//! on content and never panics. It fails only on a body over [`ParseLimits::max_body_bytes`]. Long
//! lines are skipped, and after [`ParseLimits::max_samples`] samples the rest of the body is ignored
//! (and reported).
//!
//! ```
//! use ecp_telemetry::prom::{self, MetricKind, ParseLimits};
//!
//! let body = b"# HELP nanomq_connections_count\n# TYPE nanomq_connections_count gauge\nnanomq_connections_count 3\n";
//! let parsed = prom::parse(body, &ParseLimits::default())?;
//! assert_eq!(parsed.samples[0].name.as_str(), "nanomq_connections_count");
//! assert_eq!(parsed.samples[0].value, 3.0);
//! assert_eq!(parsed.kind_of("nanomq_connections_count"), MetricKind::Gauge);
//! # Ok::<(), ecp_telemetry::Error>(())
//! ```
//!
//! With the `http` feature, [`PrometheusScraper`] fetches such a body and is a
//! [`Collector`](crate::Collector).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use ecp_core::Timestamp;

use crate::collector::{Collection, Skipped};
use crate::error::{Error, Result};
use crate::sample::{Labels, MetricName, MetricScope, Sample, is_valid_metric_name};

#[cfg(feature = "http")]
mod scrape;
#[cfg(feature = "http")]
pub use scrape::{PrometheusScrapeConfig, PrometheusScraper, ScrapeAuth};

/// The default of [`ParseLimits::max_body_bytes`]: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The default of [`ParseLimits::max_line_len`]: 64 KiB.
pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024;
/// The default of [`ParseLimits::max_samples`].
pub const DEFAULT_MAX_SAMPLES: usize = 100_000;
/// The default of [`ParseLimits::max_families`].
pub const DEFAULT_MAX_FAMILIES: usize = 10_000;
/// The default of [`ParseLimits::max_skipped_reports`].
pub const DEFAULT_MAX_SKIPPED_REPORTS: usize = 100;

/// The bounds of one parse. Build with [`ParseLimits::builder`]; `build()` validates. The default
/// is what `ParseLimits::builder().build()` gives:
///
/// ```
/// # fn main() -> ecp_telemetry::Result<()> {
/// let limits = ecp_telemetry::prom::ParseLimits::builder().max_samples(10_000).build()?;
/// assert_eq!(limits.max_samples(), 10_000);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseLimits {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_line_len: usize,
    pub(crate) max_samples: usize,
    pub(crate) max_families: usize,
    pub(crate) max_skipped_reports: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_samples: DEFAULT_MAX_SAMPLES,
            max_families: DEFAULT_MAX_FAMILIES,
            max_skipped_reports: DEFAULT_MAX_SKIPPED_REPORTS,
        }
    }
}

impl ParseLimits {
    /// A builder starting from the defaults: 8 MiB bodies, 64 KiB lines, 100,000 samples, 10,000
    /// families, 100 skipped lines listed.
    pub fn builder() -> ParseLimitsBuilder {
        ParseLimitsBuilder(Self::default())
    }

    /// A larger body is refused as a whole with [`Error::TooLarge`].
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// A longer line (without its line end) is skipped and reported.
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    /// After this many samples the rest of the body is ignored, and that is reported.
    pub fn max_samples(&self) -> usize {
        self.max_samples
    }

    /// At most this many families are recorded from `# HELP`/`# TYPE` lines.
    pub fn max_families(&self) -> usize {
        self.max_families
    }

    /// At most this many skipped lines are listed with their reason.
    pub fn max_skipped_reports(&self) -> usize {
        self.max_skipped_reports
    }
}

/// Builds [`ParseLimits`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct ParseLimitsBuilder(ParseLimits);

impl ParseLimitsBuilder {
    /// A larger body is refused as a whole with [`Error::TooLarge`] (default 8 MiB,
    /// [`DEFAULT_MAX_BODY_BYTES`]; at least 1).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.0.max_body_bytes = bytes;
        self
    }

    /// A longer line (without its line end) is skipped and reported (default 64 KiB,
    /// [`DEFAULT_MAX_LINE_LEN`]; at least 1).
    pub fn max_line_len(mut self, bytes: usize) -> Self {
        self.0.max_line_len = bytes;
        self
    }

    /// After this many samples the rest of the body is ignored, and that is reported (default
    /// 100,000, [`DEFAULT_MAX_SAMPLES`]; at least 1).
    pub fn max_samples(mut self, n: usize) -> Self {
        self.0.max_samples = n;
        self
    }

    /// At most this many families are recorded from `# HELP`/`# TYPE` lines; the headers of
    /// further families are skipped and reported, their samples kept (default 10,000,
    /// [`DEFAULT_MAX_FAMILIES`]; 0 records none).
    pub fn max_families(mut self, n: usize) -> Self {
        self.0.max_families = n;
        self
    }

    /// At most this many skipped lines are listed with their reason; the rest are only counted
    /// (default 100, [`DEFAULT_MAX_SKIPPED_REPORTS`]; 0 only counts them).
    pub fn max_skipped_reports(mut self, n: usize) -> Self {
        self.0.max_skipped_reports = n;
        self
    }

    /// The limits.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) on `max_body_bytes`, `max_line_len` or `max_samples` when
    /// it is 0.
    pub fn build(self) -> Result<ParseLimits> {
        let l = self.0;
        if l.max_body_bytes == 0 {
            return Err(Error::invalid("max_body_bytes", "must be at least 1 byte"));
        }
        if l.max_line_len == 0 {
            return Err(Error::invalid("max_line_len", "must be at least 1 byte"));
        }
        if l.max_samples == 0 {
            return Err(Error::invalid("max_samples", "must be at least 1"));
        }
        Ok(l)
    }
}

/// The type a `# TYPE` line gives a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// `counter`: only goes up (resets on restart).
    Counter,
    /// `gauge`: goes up and down.
    Gauge,
    /// `histogram`: `_bucket{le=…}`, `_sum` and `_count` samples.
    Histogram,
    /// `summary`: `{quantile=…}`, `_sum` and `_count` samples.
    Summary,
    /// `untyped`, or no `# TYPE` line at all.
    Untyped,
}

impl MetricKind {
    /// The word of the text format (`"counter"`, `"gauge"`…).
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
            MetricKind::Untyped => "untyped",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            "summary" => MetricKind::Summary,
            "untyped" => MetricKind::Untyped,
            _ => return None,
        })
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A metric family, as its `# HELP` and `# TYPE` lines describe it (repeated headers merged).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Family {
    /// The family's name.
    pub name: MetricName,
    /// Its type: the first `# TYPE` line's, or [`MetricKind::Untyped`] if it has only `# HELP`.
    pub kind: MetricKind,
    /// The first non-empty `# HELP` text, unescaped.
    pub help: Option<String>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ParsedSample {
    /// The metric name (for histograms and summaries, with its `_bucket`/`_sum`/`_count` suffix).
    pub name: MetricName,
    /// The labels, unescaped. Labels with an empty value are dropped, as Prometheus does (an
    /// empty value is the same as no label).
    pub labels: Labels,
    /// The value; NaN and infinities are kept (the store refuses them).
    pub value: f64,
    /// The timestamp of the line, milliseconds since the Unix epoch, if it has one.
    pub timestamp_ms: Option<i64>,
    /// The 1-based line number.
    pub line: usize,
}

/// What [`parse`] made of a body.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ParsedExposition {
    /// The families with a `# HELP` or `# TYPE` line, in the order first seen, each once.
    pub families: Vec<Family>,
    /// The samples, in body order.
    pub samples: Vec<ParsedSample>,
    /// The first [`ParseLimits::max_skipped_reports`] skipped lines: the 1-based line number as
    /// location, and why.
    pub skipped: Vec<Skipped>,
    /// How many lines were skipped in all (the ones listed in `skipped` and the others).
    pub skipped_lines: usize,
    /// Whether the parse stopped at [`ParseLimits::max_samples`] before the end of the body.
    pub truncated: bool,
    max_skipped_reports: usize,
}

impl ParsedExposition {
    /// The family of this name, if it has a header.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name.as_str() == name)
    }

    /// The type of a sample's metric name: its family's, with `_bucket`, `_sum` and `_count`
    /// resolved to their histogram or summary; [`MetricKind::Untyped`] without a header.
    pub fn kind_of(&self, name: &str) -> MetricKind {
        if let Some(f) = self.family(name) {
            return f.kind;
        }
        for (suffix, kinds) in [
            ("_bucket", &[MetricKind::Histogram][..]),
            ("_sum", &[MetricKind::Histogram, MetricKind::Summary][..]),
            ("_count", &[MetricKind::Histogram, MetricKind::Summary][..]),
        ] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(f) = self.family(base)
                && kinds.contains(&f.kind)
            {
                return f.kind;
            }
        }
        MetricKind::Untyped
    }
}

/// The skipped lines, the first `cap` of them listed.
struct SkipLog {
    listed: Vec<Skipped>,
    total: usize,
    cap: usize,
}

impl SkipLog {
    fn new(cap: usize) -> Self {
        SkipLog { listed: Vec::new(), total: 0, cap }
    }

    fn push(&mut self, location: impl fmt::Display, reason: impl Into<String>) {
        self.total += 1;
        if self.listed.len() < self.cap {
            self.listed.push(Skipped { location: location.to_string(), reason: reason.into() });
        }
    }
}

/// Parses a Prometheus text exposition (0.0.4).
///
/// Never fails on content: malformed lines are skipped and listed in
/// [`ParsedExposition::skipped`]; a line that is not UTF-8 is one of them.
///
/// # Errors
/// [`Error::TooLarge`] for a body over [`ParseLimits::max_body_bytes`].
pub fn parse(body: &[u8], limits: &ParseLimits) -> Result<ParsedExposition> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::TooLarge { what: "scrape body", size: body.len(), limit: limits.max_body_bytes });
    }
    let mut out = ParsedExposition { max_skipped_reports: limits.max_skipped_reports, ..ParsedExposition::default() };
    let mut skips = SkipLog::new(limits.max_skipped_reports);
    let mut family_index: HashMap<String, usize> = HashMap::new();
    let mut typed: Vec<bool> = Vec::new();
    let mut last_name: Option<MetricName> = None;

    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > limits.max_line_len {
            skips.push(line_no, format!("line of {} bytes is longer than the limit of {}", raw.len(), limits.max_line_len));
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            skips.push(line_no, "not valid UTF-8");
            continue;
        };
        let line = line.trim_matches(is_blank);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Err(reason) = header(comment, limits.max_families, &mut out.families, &mut typed, &mut family_index) {
                skips.push(line_no, reason);
            }
            continue;
        }
        match sample(line, &mut last_name) {
            Ok((name, labels, value, timestamp_ms)) => {
                if out.samples.len() >= limits.max_samples {
                    skips.push(line_no, format!("the limit of {} samples is reached: the rest of the body is ignored", limits.max_samples));
                    out.truncated = true;
                    break;
                }
                out.samples.push(ParsedSample { name, labels, value, timestamp_ms, line: line_no });
            }
            Err(reason) => skips.push(line_no, reason),
        }
    }
    out.skipped = skips.listed;
    out.skipped_lines = skips.total;
    Ok(out)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits the first blank-separated token off `s` (after leading blanks).
fn token(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(is_blank);
    match s.find(is_blank) {
        Some(at) => (&s[..at], &s[at..]),
        None => (s, ""),
    }
}

/// A `#` line (without the `#`): `HELP` or `TYPE` are recorded, anything else is a comment.
fn header(
    comment: &str,
    max_families: usize,
    families: &mut Vec<Family>,
    typed: &mut Vec<bool>,
    index: &mut HashMap<String, usize>,
) -> std::result::Result<(), String> {
    let (keyword, rest) = token(comment);
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(());
    }
    let (name, rest) = token(rest);
    if name.is_empty() {
        return Err(format!("{keyword} line without a metric name"));
    }
    if !is_valid_metric_name(name) {
        return Err(format!("{keyword} line with an invalid metric name"));
    }
    let rest = rest.trim_start_matches(is_blank);
    let kind = if keyword == "TYPE" {
        Some(MetricKind::parse(rest).ok_or_else(|| format!("TYPE line of {name} with an unknown type"))?)
    } else {
        None
    };
    let i = match index.get(name) {
        Some(i) => *i,
        None if families.len() >= max_families => {
            return Err(format!("the limit of {max_families} families is reached: header ignored"));
        }
        None => {
            // Checked valid just above.
            let family_name = MetricName::new(name).map_err(|e| e.to_string())?;
            index.insert(name.to_owned(), families.len());
            families.push(Family { name: family_name, kind: MetricKind::Untyped, help: None });
            typed.push(false);
            families.len() - 1
        }
    };
    let family = &mut families[i];
    let Some(kind) = kind else {
        if family.help.is_none() && !rest.is_empty() {
            family.help = Some(unescape_help(rest));
        }
        return Ok(());
    };
    // Repeated headers are common (Neuron repeats them per node); a conflicting one is reported
    // and the first type kept.
    if !typed[i] {
        family.kind = kind;
        typed[i] = true;
        Ok(())
    } else if family.kind == kind {
        Ok(())
    } else {
        Err(format!("TYPE line declares {name} {kind} after {}: keeping {}", family.kind, family.kind))
    }
}

/// HELP text: `\\` and `\n` are escapes; any other backslash is kept as written.
fn unescape_help(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

type SampleParts = (MetricName, Labels, f64, Option<i64>);

/// A sample line: `name[{l="v",…}] value [timestamp]`.
fn sample(line: &str, last_name: &mut Option<MetricName>) -> std::result::Result<SampleParts, String> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("expected a metric name".to_owned());
    }
    if !is_valid_metric_name(name) {
        return Err("invalid metric name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut pairs: Vec<(&str, Cow<'_, str>)> = Vec::new();
    let after_name = rest.trim_start_matches(is_blank);
    if let Some(inner) = after_name.strip_prefix('{') {
        rest = labels(inner, &mut pairs)?;
    } else if !rest.starts_with(is_blank) {
        return Err(format!("{name}: expected a blank or `{{` after the metric name"));
    }

    let (value, rest) = token(rest);
    if value.is_empty() {
        return Err(format!("{name}: missing value"));
    }
    let value = parse_value(value).ok_or_else(|| format!("{name}: invalid value"))?;
    let (ts, rest) = token(rest);
    let timestamp_ms = if ts.is_empty() { None } else { Some(ts.parse::<i64>().map_err(|_| format!("{name}: invalid timestamp"))?) };
    if !rest.trim_start_matches(is_blank).is_empty() {
        return Err(format!("{name}: unexpected text after the timestamp"));
    }

    pairs.retain(|(_, v)| !v.is_empty());
    let labels = if pairs.is_empty() { Labels::empty() } else { Labels::new(pairs).map_err(|e| format!("{name}: {e}"))? };
    let name = match last_name {
        Some(last) if last.as_str() == name => last.clone(),
        _ => {
            let n = MetricName::new(name).map_err(|e| e.to_string())?;
            *last_name = Some(n.clone());
            n
        }
    };
    Ok((name, labels, value, timestamp_ms))
}

/// The label set after its `{`: fills `pairs` and returns what follows the `}`.
fn labels<'a>(mut s: &'a str, pairs: &mut Vec<(&'a str, Cow<'a, str>)>) -> std::result::Result<&'a str, String> {
    loop {
        s = s.trim_start_matches(is_blank);
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        let name = &s[..end];
        if name.is_empty() {
            return Err("expected a label name or `}`".to_owned());
        }
        s = s[end..].trim_start_matches(is_blank);
        s = s.strip_prefix('=').ok_or_else(|| format!("label {name}: expected `=`"))?;
        s = s.trim_start_matches(is_blank);
        s = s.strip_prefix('"').ok_or_else(|| format!("label {name}: expected a quoted value"))?;
        let (value, after) = label_value(s).ok_or_else(|| format!("label {name}: unterminated value or invalid escape"))?;
        pairs.push((name, value));
        s = after.trim_start_matches(is_blank);
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(format!("label {name}: expected `,` or `}}` after the value"));
        }
    }
}

/// A label value after its opening quote: the unescaped value and what follows the closing quote;
/// `None` if it is not closed or holds an escape other than `\\`, `\"`, `\n`.
fn label_value(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|b| *b == b'"' || *b == b'\\')?;
    if bytes[end] == b'"' {
        return Some((Cow::Borrowed(&s[..end]), &s[end + 1..]));
    }
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..end]);
    let mut chars = s[end..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(out), &s[end + i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// A sample value: a decimal float, or `+Inf`, `-Inf`, `NaN` (any case, as Go's `ParseFloat`).
fn parse_value(s: &str) -> Option<f64> {
    // Rust's grammar is Go's for decimals and the special values, except that Go also takes
    // hexadecimal floats (never seen in expositions) and `_` (only with a base prefix).
    s.parse::<f64>().ok()
}

/// Turns parsed samples into [`Sample`]s of `scope`.
///
/// Each sample gets `extra_labels` (replacing its own labels of the same names, so a `source`
/// label cannot be forged by the source) and the time of its line, or `now` without one. A sample
/// that cannot be converted (too many labels with the extra ones, a timestamp out of range) is
/// skipped. The collection's `skipped` lists the parse's skipped lines and these, at most
/// [`ParseLimits::max_skipped_reports`] of them, followed by one entry counting the others.
pub fn to_samples(parsed: &ParsedExposition, scope: MetricScope, extra_labels: &Labels, now: Timestamp) -> Collection {
    let mut skips = SkipLog { listed: parsed.skipped.clone(), total: parsed.skipped_lines, cap: parsed.max_skipped_reports };
    let mut samples = Vec::with_capacity(parsed.samples.len());
    for s in &parsed.samples {
        let labels = if extra_labels.is_empty() {
            s.labels.clone()
        } else {
            match Labels::new(s.labels.iter().filter(|(k, _)| extra_labels.get(k).is_none()).chain(extra_labels.iter())) {
                Ok(l) => l,
                Err(e) => {
                    skips.push(s.line, format!("{}: {e}", s.name));
                    continue;
                }
            }
        };
        let time = match s.timestamp_ms {
            None => now,
            Some(ms) => match Timestamp::from_millisecond(ms) {
                Ok(t) => t,
                Err(_) => {
                    skips.push(s.line, format!("{}: timestamp out of range", s.name));
                    continue;
                }
            },
        };
        samples.push(Sample::new(scope, s.name.clone(), labels, time, s.value));
    }
    let mut skipped = skips.listed;
    if skips.total > skipped.len() {
        let more = skips.total - skipped.len();
        skipped.push(Skipped { location: "body".to_owned(), reason: format!("{more} more skipped line(s) not listed") });
    }
    Collection { samples, skipped }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(body: &str) -> ParsedExposition {
        parse(body.as_bytes(), &ParseLimits::default()).unwrap()
    }

    fn reasons(parsed: &ParsedExposition) -> Vec<(String, String)> {
        parsed.skipped.iter().map(|s| (s.location.clone(), s.reason.clone())).collect()
    }

    #[test]
    fn samples_labels_values_timestamps() {
        let parsed = p("a 1\nb{x=\"1\",y=\"two\"} -2.5e3 1700000000000\nc{ x = \"q\" , } +Inf\nd NaN\ne -Inf -5\n");
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        let s = &parsed.samples;
        assert_eq!(s.len(), 5);
        assert_eq!((s[0].name.as_str(), s[0].value, s[0].timestamp_ms, s[0].line), ("a", 1.0, None, 1));
        assert_eq!(s[1].labels.to_string(), r#"{x="1",y="two"}"#);
        assert_eq!((s[1].value, s[1].timestamp_ms), (-2500.0, Some(1_700_000_000_000)));
        assert_eq!(s[2].labels.get("x"), Some("q"));
        assert_eq!(s[2].value, f64::INFINITY);
        assert!(s[3].value.is_nan());
        assert_eq!((s[4].value, s[4].timestamp_ms), (f64::NEG_INFINITY, Some(-5)));
    }

    #[test]
    fn escapes_in_label_values_and_help() {
        let parsed = p("# HELP m A \\\\ backslash\\nand a newline, \\q kept\nm{v=\"a\\\\b\\\"c\\nd\"} 1\n");
        assert_eq!(parsed.family("m").unwrap().help.as_deref(), Some("A \\ backslash\nand a newline, \\q kept"));
        assert_eq!(parsed.samples[0].labels.get("v"), Some("a\\b\"c\nd"));
        let bad = p("m{v=\"a\\tb\"} 1\nm{v=\"open} 1\n");
        assert_eq!(bad.samples.len(), 0);
        assert_eq!(bad.skipped_lines, 2);
    }

    #[test]
    fn crlf_blank_lines_comments_and_leading_blanks() {
        let parsed = p("# a comment\r\n\r\n   \r\n  # TYPE m counter\r\n\tm 3 \r\n# HELPFUL is a comment\r\n#TYPE n gauge\r\n");
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        assert_eq!(parsed.samples.len(), 1);
        assert_eq!(parsed.kind_of("m"), MetricKind::Counter);
        // As Go's parser: `#TYPE` is a header, `# HELPFUL` a comment.
        assert_eq!(parsed.families.len(), 2);
        assert_eq!(parsed.kind_of("n"), MetricKind::Gauge);
    }

    #[test]
    fn repeated_headers_and_samples_without_type_are_accepted() {
        let parsed = p(concat!(
            "# HELP g Tags\n# TYPE g gauge\ng{node=\"a\",group=\"x\"} 1\n",
            "# HELP g Tags\n# TYPE g gauge\ng{node=\"a\",group=\"y\"} 2\n",
            "untyped_one 5\n",
            "# TYPE g counter\n",
        ));
        assert_eq!(parsed.samples.len(), 3);
        assert_eq!(parsed.families.len(), 1);
        assert_eq!(parsed.kind_of("g"), MetricKind::Gauge);
        assert_eq!(parsed.kind_of("untyped_one"), MetricKind::Untyped);
        assert_eq!(reasons(&parsed), vec![("8".to_owned(), "TYPE line declares g counter after gauge: keeping gauge".to_owned())]);
    }

    #[test]
    fn histogram_and_summary_suffixes_resolve_to_their_family() {
        let parsed = p(concat!(
            "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n",
            "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 4\n# TYPE c_sum gauge\n",
        ));
        assert_eq!(parsed.samples.len(), 7);
        assert_eq!(parsed.kind_of("h_bucket"), MetricKind::Histogram);
        assert_eq!(parsed.kind_of("h_count"), MetricKind::Histogram);
        assert_eq!(parsed.kind_of("s_sum"), MetricKind::Summary);
        assert_eq!(parsed.kind_of("s"), MetricKind::Summary);
        assert_eq!(parsed.kind_of("c_sum"), MetricKind::Gauge);
        assert_eq!(parsed.kind_of("s_bucket"), MetricKind::Untyped);
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line_number() {
        let body = concat!(
            "ok 1\n",
            "9bad 1\n",
            "no_value\n",
            "bad_value abc\n",
            "bad_ts 1 1.5\n",
            "trailing 1 2 3\n",
            "dup{a=\"1\",a=\"2\"} 1\n",
            "badlabel{1a=\"x\"} 1\n",
            "nocomma{a=\"1\" b=\"2\"} 1\n",
            "# TYPE x unknown\n",
            "# TYPE\n",
            "# HELP 9x text\n",
            "glued1.5\n",
            "{a=\"1\"} 2\n",
            "ok 2\n",
        );
        let parsed = p(body);
        assert_eq!(parsed.samples.iter().map(|s| s.line).collect::<Vec<_>>(), vec![1, 15]);
        assert!(parsed.families.is_empty(), "{:?}", parsed.families);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.location.parse::<usize>().unwrap()).collect();
        assert_eq!(lines, (2..=14).collect::<Vec<_>>());
        assert_eq!(parsed.skipped_lines, 13);
        assert!(
            parsed
                .skipped
                .iter()
                .all(|s| !s.reason.is_empty() && s.reason.chars().next().is_some_and(|c| !c.is_uppercase() || c == 'T' || c == 'H'))
        );
    }

    #[test]
    fn non_utf8_lines_are_skipped() {
        let parsed = parse(b"a 1\nb{x=\"\xff\"} 2\nc 3\n", &ParseLimits::default()).unwrap();
        assert_eq!(parsed.samples.len(), 2);
        assert_eq!(reasons(&parsed), vec![("2".to_owned(), "not valid UTF-8".to_owned())]);
    }

    #[test]
    fn empty_label_values_are_dropped() {
        let parsed = p("m{a=\"\",b=\"1\"} 1\n");
        assert_eq!(parsed.samples[0].labels.to_string(), r#"{b="1"}"#);
    }

    #[test]
    fn limits() {
        let limits = ParseLimits::builder().max_body_bytes(10).build().unwrap();
        match parse(b"a 1\nb 2\nc 3\n", &limits) {
            Err(Error::TooLarge { size: 12, limit: 10, .. }) => {}
            other => panic!("{other:?}"),
        }
        let limits = ParseLimits::builder().max_line_len(8).build().unwrap();
        let parsed = parse(b"a 1\nlong_name_here 2\nc 3\n", &limits).unwrap();
        assert_eq!(parsed.samples.len(), 2);
        assert_eq!(parsed.skipped[0].location, "2");

        let limits = ParseLimits::builder().max_samples(2).build().unwrap();
        let parsed = parse(b"a 1\nb 2\nc 3\nd 4\n", &limits).unwrap();
        assert_eq!(parsed.samples.len(), 2);
        assert!(parsed.truncated);
        assert_eq!(parsed.skipped.len(), 1);
        assert_eq!(parsed.skipped[0].location, "3");

        let limits = ParseLimits::builder().max_families(1).build().unwrap();
        let parsed = parse(b"# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n# HELP a again\n", &limits).unwrap();
        assert_eq!((parsed.families.len(), parsed.samples.len()), (1, 2));
        assert_eq!(reasons(&parsed), vec![("3".to_owned(), "the limit of 1 families is reached: header ignored".to_owned())]);

        let limits = ParseLimits::builder().max_skipped_reports(3).build().unwrap();
        let garbage = "x y z\n".repeat(50);
        let parsed = parse(garbage.as_bytes(), &limits).unwrap();
        assert_eq!((parsed.skipped.len(), parsed.skipped_lines), (3, 50));
        let c = to_samples(&parsed, scope(), &Labels::empty(), Timestamp::UNIX_EPOCH);
        assert_eq!(c.skipped.len(), 4);
        assert_eq!(c.skipped[3].reason, "47 more skipped line(s) not listed");
    }

    #[test]
    fn limits_are_checked() {
        let d = ParseLimits::builder().build().unwrap();
        assert_eq!(d, ParseLimits::default());
        assert_eq!(
            (d.max_body_bytes(), d.max_line_len(), d.max_samples(), d.max_families(), d.max_skipped_reports()),
            (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_LINE_LEN, DEFAULT_MAX_SAMPLES, DEFAULT_MAX_FAMILIES, DEFAULT_MAX_SKIPPED_REPORTS)
        );
        let field = |b: ParseLimitsBuilder| match b.build() {
            Err(Error::Core(ecp_core::Error::InvalidInput { field, .. })) => field.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(ParseLimits::builder().max_body_bytes(0)), "max_body_bytes");
        assert_eq!(field(ParseLimits::builder().max_line_len(0)), "max_line_len");
        assert_eq!(field(ParseLimits::builder().max_samples(0)), "max_samples");
        ParseLimits::builder().max_families(0).max_skipped_reports(0).build().unwrap();
    }

    fn scope() -> MetricScope {
        MetricScope::new(ecp_core::OrgId::new(), ecp_core::ProjectId::new())
    }

    #[test]
    fn to_samples_adds_labels_and_times() {
        let parsed = p("a{source=\"forged\",x=\"1\"} 1\nb 2 1700000000123\nc 3 9223372036854775807\n");
        let extra = Labels::new([("source", "edge:7")]).unwrap();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let sc = scope();
        let c = to_samples(&parsed, sc, &extra, now);
        assert_eq!(c.samples.len(), 2);
        assert_eq!(c.samples[0].series.labels.to_string(), r#"{source="edge:7",x="1"}"#);
        assert_eq!(c.samples[0].series.scope, sc);
        assert_eq!(c.samples[0].time, now);
        assert_eq!(c.samples[1].time, Timestamp::from_millisecond(1_700_000_000_123).unwrap());
        assert_eq!(c.skipped, vec![Skipped { location: "3".into(), reason: "c: timestamp out of range".into() }]);
    }

    #[test]
    fn too_many_labels_with_the_extra_ones_is_a_skip() {
        let labels: Vec<String> = (0..crate::sample::MAX_LABELS).map(|i| format!("l{i}=\"v\"")).collect();
        let body = format!("m{{{}}} 1\n", labels.join(","));
        let parsed = p(&body);
        assert_eq!(parsed.samples.len(), 1);
        let c = to_samples(&parsed, scope(), &Labels::new([("source", "s")]).unwrap(), Timestamp::UNIX_EPOCH);
        assert!(c.samples.is_empty());
        assert_eq!(c.skipped.len(), 1);
    }
}
