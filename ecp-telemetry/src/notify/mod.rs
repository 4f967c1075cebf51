//! Notifications of alarms: what is sent ([`Notification`]), where it goes ([`Notifier`]: a
//! webhook, an email), and which notifiers get which notification ([`NotificationRouter`]).
//!
//! The product lets a project keep several notification configs, each with a scope ("All" or a set
//! of tags), a "Critical only" switch and its channels (email to at most 10 recipients; a webhook
//! with headers and a JSON template that must hold `${name}`, `${contents}` and `${alerttime}`, and
//! may hold `${level}`, `${link}`, `${address}` and `${systemtime}`). A failed send is an alarm of
//! its own ("email/webhook send failed"), so the router reports every outcome to its caller.
//!
//! ```
//! # #[cfg(feature = "webhook")]
//! # fn demo() -> ecp_telemetry::Result<()> {
//! use std::sync::Arc;
//! use ecp_telemetry::notify::{NotificationRouter, Route, RouteScope};
//! use ecp_telemetry::notify::webhook::WebhookNotifier;
//!
//! let hook = WebhookNotifier::builder("ops-hook", "https://hooks.example.com/alarms")
//!     .header("Authorization", "Bearer s3cr3t".into())
//!     .template(r#"{"text": "${level}: ${name} at ${alerttime}\n${contents}"}"#)
//!     .build()?;
//! let router = NotificationRouter::builder()
//!     .route(Route::new("ops", RouteScope::All).notifier(Arc::new(hook)).critical_only(true))
//!     .build()?;
//! // let report = router.deliver(&notification).await;
//! // if report.failed() > 0 { /* raise "webhook send failed" */ }
//! # let _ = router; Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::sample::{MetricScope, Severity};

#[cfg(feature = "email")]
pub mod email;
#[cfg(feature = "webhook")]
pub mod webhook;

/// At most this many bytes of one substituted value (contents, name, link...); longer values are
/// cut at a character boundary and end with `…`.
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// At most this many bytes in a template.
pub const MAX_TEMPLATE_LEN: usize = 64 * 1024;
/// At most this many routes in a router.
pub const MAX_ROUTES: usize = 256;
/// At most this many notifiers on one route.
pub const MAX_NOTIFIERS_PER_ROUTE: usize = 32;
/// At most this many tags in a route's scope.
pub const MAX_ROUTE_TAGS: usize = 256;
/// At most this many bytes in a route's name or one of its tags.
pub const MAX_ROUTE_NAME_LEN: usize = 200;
/// At most this many attempts of one delivery.
pub const MAX_ATTEMPTS: u32 = 10;

/// One alarm (or its recovery) to tell people about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Notification {
    /// The key receivers can deduplicate on (the same alarm sent twice has the same id).
    pub id: Uuid,
    /// The project the alarm belongs to.
    pub scope: MetricScope,
    /// The alarm's name (`${name}`).
    pub name: String,
    /// What happened (`${contents}`).
    pub contents: String,
    /// How serious it is (`${level}`).
    pub severity: Severity,
    /// When the alarm fired (`${alerttime}`).
    pub alert_time: Timestamp,
    /// The tags of the instance the alarm is about; routes scoped to tags match on them.
    pub tags: Vec<String>,
    /// Where to look at it (`${link}`).
    pub link: Option<String>,
    /// The instance the alarm is about, e.g. its address (`${address}`).
    pub address: Option<String>,
}

impl Notification {
    /// A notification with a fresh id, no tags, no link and no address.
    pub fn new(
        scope: MetricScope,
        name: impl Into<String>,
        contents: impl Into<String>,
        severity: Severity,
        alert_time: Timestamp,
    ) -> Self {
        Notification {
            id: Uuid::now_v7(),
            scope,
            name: name.into(),
            contents: contents.into(),
            severity,
            alert_time,
            tags: Vec::new(),
            link: None,
            address: None,
        }
    }

    /// The same with this id (to send an alarm again under the id receivers know).
    #[must_use]
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// The same with these tags.
    #[must_use]
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The same with a link.
    #[must_use]
    pub fn with_link(mut self, link: impl Into<String>) -> Self {
        self.link = Some(link.into());
        self
    }

    /// The same with the source instance's address.
    #[must_use]
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }
}

/// A channel that delivers notifications: a webhook, an email account, or a host's own.
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// The notifier's name, as configured (in reports and errors).
    fn name(&self) -> &str;

    /// Delivers one notification, retrying as configured.
    ///
    /// # Errors
    /// [`Error::Notify`] when it could not be delivered (its reason holds no secret).
    async fn notify(&self, notification: &Notification) -> Result<()>;
}

// ---------------------------------------------------------------------------------------------
// Templates

/// A placeholder of a notification template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Placeholder {
    /// `${name}`: the alarm's name.
    Name,
    /// `${contents}`: what happened.
    Contents,
    /// `${alerttime}`: when the alarm fired (RFC 3339).
    AlertTime,
    /// `${level}`: `critical` or `normal`.
    Level,
    /// `${link}`: the link, or empty.
    Link,
    /// `${address}`: the source instance, or empty.
    Address,
    /// `${systemtime}`: when the notification was rendered (RFC 3339).
    SystemTime,
}

impl Placeholder {
    /// Every placeholder.
    pub const ALL: [Placeholder; 7] = [
        Placeholder::Name,
        Placeholder::Contents,
        Placeholder::AlertTime,
        Placeholder::Level,
        Placeholder::Link,
        Placeholder::Address,
        Placeholder::SystemTime,
    ];

    /// The name between `${` and `}`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Placeholder::Name => "name",
            Placeholder::Contents => "contents",
            Placeholder::AlertTime => "alerttime",
            Placeholder::Level => "level",
            Placeholder::Link => "link",
            Placeholder::Address => "address",
            Placeholder::SystemTime => "systemtime",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Placeholder::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}}}", self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Value(Placeholder),
}

/// A parsed template: text with `${placeholder}`s.
///
/// A `$` not followed by `{` is text; `${` must open a known placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// Parses a template.
    ///
    /// # Errors
    /// An invalid-input error (naming `field`) for a template over [`MAX_TEMPLATE_LEN`], an
    /// unterminated `${`, or an unknown placeholder.
    pub fn parse(field: &'static str, text: &str) -> Result<Self> {
        if text.len() > MAX_TEMPLATE_LEN {
            return Err(Error::invalid(field, format!("is longer than {MAX_TEMPLATE_LEN} bytes")));
        }
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                segments.push(Segment::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(Error::invalid(field, "has a `${` without its closing `}`"));
            };
            let name = &after[..end];
            let Some(p) = Placeholder::parse(name) else {
                let shown: String = name.chars().take(40).collect();
                let known: Vec<String> = Placeholder::ALL.iter().map(ToString::to_string).collect();
                return Err(Error::invalid(field, format!("has an unknown placeholder `${{{shown}}}` (known: {})", known.join(" "))));
            };
            segments.push(Segment::Value(p));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Template { segments })
    }

    /// Whether the template holds this placeholder.
    pub fn contains(&self, p: Placeholder) -> bool {
        self.segments.contains(&Segment::Value(p))
    }

    /// The template's placeholders, each once, in [`Placeholder`] order.
    pub fn placeholders(&self) -> BTreeSet<Placeholder> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Value(p) => Some(*p),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// Checks that every one of `required` is in the template.
    ///
    /// # Errors
    /// An invalid-input error (naming `field`) listing the missing placeholders.
    pub fn require(&self, field: &'static str, required: &[Placeholder]) -> Result<()> {
        let missing: Vec<String> = required.iter().filter(|p| !self.contains(**p)).map(ToString::to_string).collect();
        if missing.is_empty() { Ok(()) } else { Err(Error::invalid(field, format!("must contain {}", missing.join(", ")))) }
    }

    /// Renders the template as text: values as they are (cut to [`MAX_VALUE_LEN`]).
    pub fn render_text(&self, n: &Notification, system_time: Timestamp) -> String {
        self.render(n, system_time, |out, v| out.push_str(v))
    }

    /// Renders the template with each value escaped as the inside of a JSON string (no quotes
    /// added), so that a template whose placeholders sit inside JSON strings stays valid JSON
    /// whatever the values hold.
    pub fn render_json(&self, n: &Notification, system_time: Timestamp) -> String {
        self.render(n, system_time, push_json_escaped)
    }

    fn render(&self, n: &Notification, system_time: Timestamp, mut push: impl FnMut(&mut String, &str)) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(text) => out.push_str(text),
                Segment::Value(p) => {
                    let value: std::borrow::Cow<'_, str> = match p {
                        Placeholder::Name => n.name.as_str().into(),
                        Placeholder::Contents => n.contents.as_str().into(),
                        Placeholder::AlertTime => n.alert_time.to_string().into(),
                        Placeholder::Level => n.severity.as_str().into(),
                        Placeholder::Link => n.link.as_deref().unwrap_or("").into(),
                        Placeholder::Address => n.address.as_deref().unwrap_or("").into(),
                        Placeholder::SystemTime => system_time.to_string().into(),
                    };
                    push(&mut out, &truncate(&value, MAX_VALUE_LEN));
                }
            }
        }
        out
    }
}

/// `s` cut to at most `max` bytes at a character boundary, ending with `…` when cut.
fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

fn push_json_escaped(out: &mut String, v: &str) {
    use std::fmt::Write as _;
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Control characters, and the two separators some JavaScript parsers reject.
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32); // writing to a String cannot fail
            }
            c => out.push(c),
        }
    }
}

/// A notification with awkward values, to check that a template renders to what it must.
#[cfg_attr(not(feature = "webhook"), allow(dead_code))]
pub(crate) fn sample_notification() -> Notification {
    let scope = MetricScope::new(ecp_core::OrgId::new(), ecp_core::ProjectId::new());
    Notification::new(
        scope,
        "cpu \"high\"",
        "line one\nline \"two\"\t\\ </end> \u{1}\u{2028}é😀",
        Severity::Critical,
        Timestamp::UNIX_EPOCH,
    )
    .with_link("https://ecp.example.com/alarms?id=1&x=\"y\"")
    .with_address("10.0.0.1:8080")
}

// ---------------------------------------------------------------------------------------------
// Retries

/// How often and how patiently a notifier retries: `attempts` in all, waiting
/// `base_delay × 2ⁿ` (at most `max_delay`) with jitter (a random 50–100 %) between them. Build with
/// [`RetryPolicy::builder`]; `build()` validates. The default is what `RetryPolicy::builder().build()`
/// gives: 3 attempts, 500 ms then 1 s apart (with jitter), at most 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    pub(crate) attempts: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 500 ms then 1 s apart (with jitter), at most 30 s.
    fn default() -> Self {
        RetryPolicy { attempts: 3, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

/// Builds a [`RetryPolicy`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryPolicyBuilder(RetryPolicy);

impl RetryPolicyBuilder {
    /// Attempts in all, 1 = no retry (default 3; 1 to [`MAX_ATTEMPTS`]).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.0.attempts = attempts;
        self
    }

    /// The wait before the first retry, doubled for each next one (default 500 ms; at most
    /// 1 minute).
    pub fn base_delay(mut self, base_delay: Duration) -> Self {
        self.0.base_delay = base_delay;
        self
    }

    /// The longest wait between two attempts (default 30 s; from `base_delay` to 10 minutes).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.0.max_delay = max_delay;
        self
    }

    /// The policy.
    ///
    /// # Errors
    /// An invalid-input error on `retry.attempts` outside 1..=[`MAX_ATTEMPTS`], on
    /// `retry.base_delay` over 1 minute, or on `retry.max_delay` under `base_delay` or over
    /// 10 minutes.
    pub fn build(self) -> Result<RetryPolicy> {
        self.0.check()?;
        Ok(self.0)
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults: 3 attempts, 500 ms before the first retry, at most
    /// 30 s between two attempts.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder(Self::default())
    }

    /// Attempts in all (1 = no retry).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before the first retry.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The longest wait between two attempts.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The checks of [`RetryPolicyBuilder::build`], for the notifier builders that set attempts
    /// and base delay one by one.
    pub(crate) fn check(&self) -> Result<()> {
        if !(1..=MAX_ATTEMPTS).contains(&self.attempts) {
            return Err(Error::invalid("retry.attempts", format!("must be between 1 and {MAX_ATTEMPTS}")));
        }
        if self.base_delay > Duration::from_secs(60) {
            return Err(Error::invalid("retry.base_delay", "must be at most 1 minute"));
        }
        if self.max_delay < self.base_delay || self.max_delay > Duration::from_secs(600) {
            return Err(Error::invalid("retry.max_delay", "must be between base_delay and 10 minutes"));
        }
        Ok(())
    }

    /// The wait after failed attempt `attempt` (1-based), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// The reason of an error and its causes, `a: b: c`.
#[cfg(any(feature = "webhook", feature = "email"))]
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Routing

/// Which notifications a route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteScope {
    /// Every notification of the project.
    All,
    /// Notifications whose instance carries at least one of these tags.
    Tags(BTreeSet<String>),
}

impl RouteScope {
    /// A scope of these tags.
    pub fn tags<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RouteScope::Tags(tags.into_iter().map(Into::into).collect())
    }
}

/// One notification config: a scope, a "critical only" switch and the notifiers to use.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    scope: RouteScope,
    notifiers: Vec<Arc<dyn Notifier>>,
    critical_only: bool,
}

impl Route {
    /// A route with no notifiers yet, for every severity.
    pub fn new(name: impl Into<String>, scope: RouteScope) -> Self {
        Route { name: name.into(), scope, notifiers: Vec::new(), critical_only: false }
    }

    /// The same with one more notifier.
    #[must_use]
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// The same taking only [`Severity::Critical`] notifications (or every one, with `false`).
    #[must_use]
    pub fn critical_only(mut self, critical_only: bool) -> Self {
        self.critical_only = critical_only;
        self
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The route's scope.
    pub fn scope(&self) -> &RouteScope {
        &self.scope
    }

    /// Whether it takes only critical notifications.
    pub fn is_critical_only(&self) -> bool {
        self.critical_only
    }

    /// Its notifiers.
    pub fn notifiers(&self) -> &[Arc<dyn Notifier>] {
        &self.notifiers
    }

    /// Whether the route takes this notification.
    pub fn matches(&self, n: &Notification) -> bool {
        if self.critical_only && n.severity != Severity::Critical {
            return false;
        }
        match &self.scope {
            RouteScope::All => true,
            RouteScope::Tags(tags) => n.tags.iter().any(|t| tags.contains(t)),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() || self.name.len() > MAX_ROUTE_NAME_LEN {
            return Err(Error::invalid("route.name", format!("must be 1 to {MAX_ROUTE_NAME_LEN} bytes")));
        }
        if self.notifiers.is_empty() || self.notifiers.len() > MAX_NOTIFIERS_PER_ROUTE {
            return Err(Error::invalid(
                "route.notifiers",
                format!("route {:?} must have 1 to {MAX_NOTIFIERS_PER_ROUTE} notifiers", self.name),
            ));
        }
        if let RouteScope::Tags(tags) = &self.scope {
            if tags.is_empty() || tags.len() > MAX_ROUTE_TAGS {
                return Err(Error::invalid("route.scope", format!("route {:?} must have 1 to {MAX_ROUTE_TAGS} tags", self.name)));
            }
            if tags.iter().any(|t| t.is_empty() || t.len() > MAX_ROUTE_NAME_LEN) {
                return Err(Error::invalid(
                    "route.scope",
                    format!("the tags of route {:?} must be 1 to {MAX_ROUTE_NAME_LEN} bytes", self.name),
                ));
            }
        }
        Ok(())
    }
}

/// Builds a [`NotificationRouter`].
#[derive(Debug, Default)]
#[must_use]
pub struct NotificationRouterBuilder {
    routes: Vec<Route>,
}

impl NotificationRouterBuilder {
    /// Adds a route.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The router.
    ///
    /// # Errors
    /// An invalid-input error for more than [`MAX_ROUTES`] routes, two routes with the same
    /// name, an empty or over-long name, a route without notifiers (or more than
    /// [`MAX_NOTIFIERS_PER_ROUTE`]), or a tag scope without tags.
    pub fn build(self) -> Result<NotificationRouter> {
        if self.routes.len() > MAX_ROUTES {
            return Err(Error::invalid("routes", format!("at most {MAX_ROUTES} routes")));
        }
        let mut names = BTreeSet::new();
        for r in &self.routes {
            r.validate()?;
            if !names.insert(r.name.as_str()) {
                return Err(Error::invalid("route.name", format!("{:?} is used by two routes", r.name)));
            }
        }
        Ok(NotificationRouter { routes: self.routes })
    }
}

/// Sends each notification to the notifiers of every route that takes it, concurrently, and
/// reports each notifier's outcome.
///
/// A notifier on several matching routes is used once (notifiers are told apart by identity:
/// the same `Arc`).
#[derive(Debug, Clone)]
pub struct NotificationRouter {
    routes: Vec<Route>,
}

impl NotificationRouter {
    /// A builder without routes.
    pub fn builder() -> NotificationRouterBuilder {
        NotificationRouterBuilder::default()
    }

    /// The routes.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Delivers a notification to every matching route's notifiers, concurrently, and waits
    /// for all of them. Failures are in the report (and logged); they never stop the others.
    pub async fn deliver(&self, n: &Notification) -> DeliveryReport {
        let mut targets: Vec<(Arc<dyn Notifier>, Vec<String>)> = Vec::new();
        for route in self.routes.iter().filter(|r| r.matches(n)) {
            for notifier in &route.notifiers {
                match targets.iter_mut().find(|(t, _)| same_notifier(t, notifier)) {
                    Some((_, routes)) => routes.push(route.name.clone()),
                    None => targets.push((Arc::clone(notifier), vec![route.name.clone()])),
                }
            }
        }
        let sends = targets.into_iter().map(|(notifier, routes)| async move {
            let result = notifier.notify(n).await;
            if let Err(e) = &result {
                tracing::warn!(notification = %n.id, notifier = notifier.name(), error = %e, "notification not delivered");
            }
            DeliveryOutcome { notifier: notifier.name().to_owned(), routes, result }
        });
        let outcomes = futures::future::join_all(sends).await;
        DeliveryReport { notification: n.id, outcomes }
    }
}

fn same_notifier(a: &Arc<dyn Notifier>, b: &Arc<dyn Notifier>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// What happened to one notifier's delivery.
#[derive(Debug)]
pub struct DeliveryOutcome {
    notifier: String,
    routes: Vec<String>,
    result: Result<()>,
}

impl DeliveryOutcome {
    /// The notifier's name.
    pub fn notifier(&self) -> &str {
        &self.notifier
    }

    /// The matching routes that use this notifier.
    pub fn routes(&self) -> &[String] {
        &self.routes
    }

    /// Whether it was delivered.
    pub fn is_sent(&self) -> bool {
        self.result.is_ok()
    }

    /// The error, when it was not.
    pub fn error(&self) -> Option<&Error> {
        self.result.as_ref().err()
    }
}

/// The outcome of [`NotificationRouter::deliver`]: one entry per notifier used.
#[derive(Debug)]
pub struct DeliveryReport {
    notification: Uuid,
    outcomes: Vec<DeliveryOutcome>,
}

impl DeliveryReport {
    /// The notification's id.
    pub fn notification_id(&self) -> Uuid {
        self.notification
    }

    /// Each notifier's outcome.
    pub fn outcomes(&self) -> &[DeliveryOutcome] {
        &self.outcomes
    }

    /// How many notifiers delivered it.
    pub fn sent(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_sent()).count()
    }

    /// How many notifiers failed.
    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.sent()
    }

    /// Whether no route took the notification.
    pub fn is_unrouted(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// The failures, as (notifier, error).
    pub fn failures(&self) -> impl Iterator<Item = (&str, &Error)> {
        self.outcomes.iter().filter_map(|o| o.error().map(|e| (o.notifier.as_str(), e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_placeholders_and_text() {
        let t = Template::parse("t", "a ${name} $ b ${contents}${alerttime}$").unwrap();
        assert_eq!(t.placeholders(), [Placeholder::Name, Placeholder::Contents, Placeholder::AlertTime].into_iter().collect());
        let n = sample_notification();
        assert_eq!(t.render_text(&n, Timestamp::UNIX_EPOCH), format!("a {} $ b {}1970-01-01T00:00:00Z$", n.name, n.contents));
    }

    #[test]
    fn refuses_unknown_and_unterminated_placeholders() {
        let e = Template::parse("body", "${nmae}").unwrap_err().to_string();
        assert!(e.contains("${nmae}") && e.contains("${name}"), "{e}");
        assert!(Template::parse("body", "x ${name").is_err());
        let t = Template::parse("body", "${name}").unwrap();
        assert!(t.require("body", &[Placeholder::Name, Placeholder::AlertTime]).unwrap_err().to_string().contains("${alerttime}"));
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary() {
        let s = "é".repeat(MAX_VALUE_LEN);
        let t = truncate(&s, MAX_VALUE_LEN);
        assert!(t.len() <= MAX_VALUE_LEN && t.ends_with('…'));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::builder()
            .attempts(5)
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(300))
            .build()
            .unwrap();
        assert_eq!((p.attempts(), p.base_delay(), p.max_delay()), (5, Duration::from_millis(100), Duration::from_millis(300)));
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d4 = p.delay(4);
            assert!(d4 >= Duration::from_millis(150) && d4 <= Duration::from_millis(300));
        }
        let b = || RetryPolicy::builder().base_delay(Duration::ZERO);
        assert!(b().attempts(0).build().is_err());
        assert!(b().attempts(MAX_ATTEMPTS + 1).build().is_err());
        assert!(RetryPolicy::builder().base_delay(Duration::from_secs(61)).build().is_err());
        assert!(RetryPolicy::builder().max_delay(Duration::from_millis(100)).build().is_err());
        assert!(RetryPolicy::builder().max_delay(Duration::from_secs(601)).build().is_err());
        assert_eq!(RetryPolicy::builder().build().unwrap(), RetryPolicy::default());
        assert_eq!(b().attempts(1).build().unwrap().delay(1), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn any_template_text_parses_or_errs(text in "(\\PC|\\$\\{|\\}|\\$\\{name\\}){0,40}") {
            if let Ok(t) = Template::parse("t", &text) {
                let _ = t.render_text(&sample_notification(), Timestamp::UNIX_EPOCH);
            }
        }

        #[test]
        fn json_rendering_is_valid_json_for_any_values(name in any::<String>(), contents in any::<String>(), link in any::<String>()) {
            let t = Template::parse("t", r#"{"n": "${name}", "c": ["${contents}", "${link}"], "t": "${alerttime}"}"#).unwrap();
            let mut n = sample_notification();
            n.name.clone_from(&name);
            n.contents.clone_from(&contents);
            n.link = Some(link);
            let out = t.render_json(&n, Timestamp::UNIX_EPOCH);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(v["n"].as_str().unwrap(), &*truncate(&name, MAX_VALUE_LEN));
            prop_assert_eq!(v["c"][0].as_str().unwrap(), &*truncate(&contents, MAX_VALUE_LEN));
        }
    }
}
