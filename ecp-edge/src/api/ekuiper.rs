//! eKuiper (`:9081`, paths from `/`), standalone or proxied by NeuronEX under `/api/ekuiper`.
//!
//! Wire quirks kept (reference §4):
//! - success answers of changes are plain-text sentences (`Rule rule1 was created successfully.`,
//!   201 for creations), returned as they are;
//! - errors are JSON `{"error":N,"message":"…"}` sent as `text/plain` with a trailing newline,
//!   404 for code 1002 and 400 otherwise;
//! - with authentication on, the header is `Authorization: <token>` **without** `Bearer`, and
//!   failures are 401 plain text (`missing_token`, `validate token error: …`); `/` and `/ping` are
//!   exempt;
//! - `GET /` has string-typed numbers (`memoryTotal`) and omits empty ones;
//! - rule status is a flat object of `status`, `message`, timestamps and metrics whose keys are
//!   built from operator names (`source_demo_0_records_in_total`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ecp_core::edge::Credentials;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::call::{self, ApiCall, Body, TEXT, Uri, int_field};
use super::session::{Auth, Session, TokenScheme};
use crate::error::{Error, Result};
use crate::transport::EdgeTransport;

/// Whether an eKuiper answer refuses the credentials (401).
pub(crate) fn token_refused(response: &http::Response<Bytes>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
}

// ---------------------------------------------------------------------------------------------
// Wire types.

/// `GET /`: `{"version","os","arch","upTimeSeconds","cpuUsage","memoryUsed","memoryTotal"}`; the
/// last three are strings, and `cpuUsage`/`memoryUsed` are left out when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Info {
    /// `2.4.0`.
    #[serde(default)]
    pub version: String,
    /// `linux`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub os: Option<String>,
    /// `amd64`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub arch: Option<String>,
    /// Seconds since start.
    #[serde(default, rename = "upTimeSeconds", deserialize_with = "call::lenient::opt_i64")]
    pub up_time_seconds: Option<i64>,
    /// CPU usage, as eKuiper formats it.
    #[serde(default, rename = "cpuUsage", deserialize_with = "call::lenient::opt_string")]
    pub cpu_usage: Option<String>,
    /// Memory used, bytes, as a string.
    #[serde(default, rename = "memoryUsed", deserialize_with = "call::lenient::opt_string")]
    pub memory_used: Option<String>,
    /// Memory total, bytes, as a string.
    #[serde(default, rename = "memoryTotal", deserialize_with = "call::lenient::opt_string")]
    pub memory_total: Option<String>,
}

impl Info {
    /// [`memory_used`](Self::memory_used) as a number, if it is one.
    pub fn memory_used_bytes(&self) -> Option<u64> {
        self.memory_used.as_deref()?.trim().parse().ok()
    }

    /// [`memory_total`](Self::memory_total) as a number, if it is one.
    pub fn memory_total_bytes(&self) -> Option<u64> {
        self.memory_total.as_deref()?.trim().parse().ok()
    }
}

/// `GET /streams/{name}`: the untagged Go struct `{"Name","StreamFields","Options","StreamType"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamDescription {
    /// The stream's name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Its fields (`null` for schemaless streams).
    #[serde(rename = "StreamFields", default)]
    pub fields: Option<Vec<Value>>,
    /// Its `WITH (…)` options.
    #[serde(rename = "Options", default)]
    pub options: Option<Map<String, Value>>,
    /// 0 stream, 1 table.
    #[serde(rename = "StreamType", default, deserialize_with = "call::lenient::opt_i64")]
    pub stream_type: Option<i64>,
}

/// What eKuiper's rule status string says (`internal/topo/rule/machine/state_machine.go`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleState {
    /// `running`.
    Running,
    /// `starting`.
    Starting,
    /// `stopping`.
    Stopping,
    /// `stopped` (also 1.x's `stopped: canceled manually.`).
    Stopped,
    /// `stopped: waiting for next schedule.`
    WaitingForSchedule,
    /// `stopped by error`.
    StoppedByError,
    /// `error: …`, with the message.
    Error(String),
    /// Anything else, as sent.
    Other(String),
}

impl RuleState {
    /// Reads a status string (case-insensitively: eKuiper 1.x's docs say `Running`).
    pub fn parse(status: &str) -> RuleState {
        let s = status.trim();
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "running" => RuleState::Running,
            "starting" => RuleState::Starting,
            "stopping" => RuleState::Stopping,
            "stopped" => RuleState::Stopped,
            l if l.starts_with("stopped: canceled") => RuleState::Stopped,
            l if l.starts_with("stopped: waiting for next schedule") => RuleState::WaitingForSchedule,
            l if l.starts_with("stopped by error") => RuleState::StoppedByError,
            l if l.starts_with("error") => RuleState::Error(s.get(5..).unwrap_or_default().trim_start_matches(':').trim().to_owned()),
            _ => RuleState::Other(s.to_owned()),
        }
    }

    /// Whether the rule is running.
    pub fn is_running(&self) -> bool {
        matches!(self, RuleState::Running)
    }
}

/// An entry of `GET /rules`: `{"id","name","status","version","trace","tags"}` (1.x: the first
/// three).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuleSummary {
    /// Its id.
    pub id: String,
    /// Its name.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub name: Option<String>,
    /// Its status, as sent (see [`state`](Self::state)).
    #[serde(default)]
    pub status: String,
    /// Its version.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub version: Option<String>,
    /// Whether tracing is on.
    #[serde(default)]
    pub trace: Option<bool>,
    /// Its tags (`null` when none).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl RuleSummary {
    /// The status, read.
    pub fn state(&self) -> RuleState {
        RuleState::parse(&self.status)
    }
}

/// A rule: what `POST /rules` and `PUT /rules/{id}` take and `GET /rules/{id}` returns
/// (`{"id","name"?,"sql","actions":[…],"tags"?,"options"?}`, other keys kept in `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rule {
    /// Its id.
    pub id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its SQL (absent for graph rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Its sinks, `[{"log":{}}]`.
    #[serde(default)]
    pub actions: Vec<Value>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Its options (`{"qos":1,"sendError":false}` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    /// Any other key (`graph`, `triggered` ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Rule {
    /// A SQL rule.
    pub fn new(id: impl Into<String>, sql: impl Into<String>, actions: Vec<Value>) -> Self {
        Rule { id: id.into(), name: None, sql: Some(sql.into()), actions, tags: None, options: None, extra: Map::new() }
    }
}

/// `GET /rules/{id}/status`: `status`, `message`, timestamps, and metrics with dynamic keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuleStatus {
    /// The status string (see [`state`](Self::state)).
    #[serde(default)]
    pub status: String,
    /// Why it stopped (`canceled manually`), empty while running.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub message: Option<String>,
    /// When it last started, ms since the epoch (0 if never).
    #[serde(default, rename = "lastStartTimestamp", deserialize_with = "call::lenient::opt_i64")]
    pub last_start_timestamp: Option<i64>,
    /// When it last stopped, ms since the epoch.
    #[serde(default, rename = "lastStopTimestamp", deserialize_with = "call::lenient::opt_i64")]
    pub last_stop_timestamp: Option<i64>,
    /// When a scheduled rule starts next, ms since the epoch.
    #[serde(default, rename = "nextStartTimestamp", deserialize_with = "call::lenient::opt_i64")]
    pub next_start_timestamp: Option<i64>,
    /// Every other key: `<op>_<instance>_<metric>` metrics (`source_demo_0_records_in_total`).
    #[serde(flatten)]
    pub metrics: BTreeMap<String, Value>,
}

impl RuleStatus {
    /// The status, read.
    pub fn state(&self) -> RuleState {
        RuleState::parse(&self.status)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading answers.

/// Rules out eKuiper's error forms.
fn check(endpoint: &str, response: &http::Response<Bytes>) -> Result<()> {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        tracing::debug!(endpoint, "ekuiper refused the credentials");
        return Err(Error::Unauthorized { endpoint: endpoint.to_owned() });
    }
    if status.is_success() {
        return Ok(());
    }
    let body = response.body();
    if let Ok(value @ Value::Object(_)) = serde_json::from_slice::<Value>(body.trim_ascii()) {
        let message = value.get("message").and_then(Value::as_str).map(call::excerpt);
        return Err(Error::Api { endpoint: endpoint.to_owned(), status: status.as_u16(), code: int_field(&value, "error"), message });
    }
    Err(if call::is_html(response) {
        call::html_error(endpoint, status, "eKuiper")
    } else {
        call::status_error(endpoint, status, None, body)
    })
}

fn parse_json<T: DeserializeOwned>(endpoint: &str, response: &http::Response<Bytes>) -> Result<T> {
    check(endpoint, response)?;
    let value = call::json_value(endpoint, response.body())
        .map_err(|e| if call::is_html(response) { call::html_error(endpoint, response.status(), "eKuiper") } else { e })?;
    call::from_value(endpoint, value)
}

/// A plain-text sentence, trimmed.
fn parse_sentence(endpoint: &str, response: &http::Response<Bytes>) -> Result<String> {
    check(endpoint, response)?;
    call::text(endpoint, response.body()).map(|s| s.trim().to_owned())
}

fn parse_done(endpoint: &str, response: &http::Response<Bytes>) -> Result<()> {
    check(endpoint, response)
}

// ---------------------------------------------------------------------------------------------
// Building requests.

/// Builds eKuiper's requests, without I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EkuiperApi {
    prefix: String,
}

impl EkuiperApi {
    /// Standalone eKuiper (paths from `/`).
    pub fn new() -> Self {
        EkuiperApi::default()
    }

    /// eKuiper under a path (`/api/ekuiper` behind NeuronEX). Every call then carries credentials,
    /// as the proxy checks them on every path.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) unless `prefix` is empty or `/`-separated segments of
    /// letters, digits, `-`, `.`, `_`, `~`.
    pub fn with_prefix(prefix: &str) -> Result<Self> {
        call::check_prefix(prefix)?;
        Ok(EkuiperApi { prefix: prefix.to_owned() })
    }

    /// eKuiper behind a proxy at a fixed, valid `prefix`.
    pub(crate) fn proxied(prefix: &'static str) -> Self {
        EkuiperApi { prefix: prefix.to_owned() }
    }

    /// The path prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn uri(&self, path: &str) -> Uri {
        Uri::new(&self.prefix, path)
    }

    /// `GET /ping` → 200, empty (no token needed on standalone eKuiper).
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn ping(&self) -> Result<ApiCall<()>> {
        ApiCall::new(Method::GET, self.uri("/ping"), Body::Empty(TEXT), !self.prefix.is_empty(), parse_done)
    }

    /// `GET /` → [`Info`] (no token needed on standalone eKuiper).
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn info(&self) -> Result<ApiCall<Info>> {
        ApiCall::new(Method::GET, self.uri("/"), Body::NONE, !self.prefix.is_empty(), parse_json::<Info>)
    }

    /// `GET /streams` → `["demo"]`.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn streams(&self) -> Result<ApiCall<Vec<String>>> {
        ApiCall::new(Method::GET, self.uri("/streams"), Body::NONE, true, parse_json::<Vec<String>>)
    }

    /// `GET /streams/{name}` → [`StreamDescription`].
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty name, `.` or `..`.
    pub fn stream(&self, name: &str) -> Result<ApiCall<StreamDescription>> {
        ApiCall::new(Method::GET, self.uri("/streams").segment("name", name)?, Body::NONE, true, parse_json::<StreamDescription>)
    }

    /// `POST /streams {"sql"}` → 201 `Stream demo is created.`
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for empty SQL.
    pub fn create_stream(&self, sql: &str) -> Result<ApiCall<String>> {
        call::check_name("sql", sql.trim())?;
        ApiCall::new(Method::POST, self.uri("/streams"), Body::json(&serde_json::json!({ "sql": sql }))?, true, parse_sentence)
    }

    /// `PUT /streams/{name} {"sql"}` → `Stream demo is replaced.`: replaces an existing stream's
    /// definition (the statement must create the same name).
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty name or statement.
    pub fn replace_stream(&self, name: &str, sql: &str) -> Result<ApiCall<String>> {
        call::check_name("sql", sql.trim())?;
        let uri = self.uri("/streams").segment("name", name)?;
        ApiCall::new(Method::PUT, uri, Body::json(&serde_json::json!({ "sql": sql }))?, true, parse_sentence)
    }

    /// `DELETE /streams/{name}[?force=true]` → `Stream demo is dropped.` (refused while a rule uses
    /// the stream, unless forced).
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty name, `.` or `..`.
    pub fn delete_stream(&self, name: &str, force: bool) -> Result<ApiCall<String>> {
        let mut uri = self.uri("/streams").segment("name", name)?;
        if force {
            uri = uri.query("force", "true");
        }
        ApiCall::new(Method::DELETE, uri, Body::Empty(TEXT), true, parse_sentence)
    }

    /// `GET /rules` → `[{"id","name","status",…}]`.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn rules(&self) -> Result<ApiCall<Vec<RuleSummary>>> {
        ApiCall::new(Method::GET, self.uri("/rules"), Body::NONE, true, parse_json::<Vec<RuleSummary>>)
    }

    /// `GET /rules/{id}` → [`Rule`].
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
    pub fn rule(&self, id: &str) -> Result<ApiCall<Rule>> {
        ApiCall::new(Method::GET, self.uri("/rules").segment("id", id)?, Body::NONE, true, parse_json::<Rule>)
    }

    /// `POST /rules` → 201 `Rule rule1 was created successfully.`
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty id.
    pub fn create_rule(&self, rule: &Rule) -> Result<ApiCall<String>> {
        call::check_name("id", &rule.id)?;
        ApiCall::new(Method::POST, self.uri("/rules"), Body::json(rule)?, true, parse_sentence)
    }

    /// `PUT /rules/{id}`: creates or replaces the rule.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
    pub fn update_rule(&self, rule: &Rule) -> Result<ApiCall<String>> {
        ApiCall::new(Method::PUT, self.uri("/rules").segment("id", &rule.id)?, Body::json(rule)?, true, parse_sentence)
    }

    /// `DELETE /rules/{id}` → `Rule rule1 is dropped.`
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
    pub fn delete_rule(&self, id: &str) -> Result<ApiCall<String>> {
        ApiCall::new(Method::DELETE, self.uri("/rules").segment("id", id)?, Body::Empty(TEXT), true, parse_sentence)
    }

    /// `GET /rules/{id}/status` → [`RuleStatus`].
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
    pub fn rule_status(&self, id: &str) -> Result<ApiCall<RuleStatus>> {
        ApiCall::new(Method::GET, self.uri("/rules").segment("id", id)?.push("/status"), Body::NONE, true, parse_json::<RuleStatus>)
    }

    /// `POST /rules/{id}/start` → `Rule rule1 was started`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
    pub fn start_rule(&self, id: &str) -> Result<ApiCall<String>> {
        self.rule_action(id, "/start")
    }

    /// `POST /rules/{id}/stop` → `Rule rule1 was stopped.`
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
    pub fn stop_rule(&self, id: &str) -> Result<ApiCall<String>> {
        self.rule_action(id, "/stop")
    }

    /// `POST /rules/{id}/restart` → `Rule rule1 was restarted`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
    pub fn restart_rule(&self, id: &str) -> Result<ApiCall<String>> {
        self.rule_action(id, "/restart")
    }

    fn rule_action(&self, id: &str, action: &str) -> Result<ApiCall<String>> {
        ApiCall::new(Method::POST, self.uri("/rules").segment("id", id)?.push(action), Body::Empty(TEXT), true, parse_sentence)
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

/// A client of one eKuiper: [`EkuiperApi`]'s calls sent over a transport. Cheap to clone.
#[derive(Clone)]
pub struct EkuiperClient {
    session: Arc<Session>,
    api: EkuiperApi,
}

impl fmt::Debug for EkuiperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EkuiperClient").field("session", &self.session).field("prefix", &self.api.prefix).finish()
    }
}

impl EkuiperClient {
    /// A client of standalone eKuiper. `Credentials::Token` is sent as `Authorization: <token>`
    /// (no `Bearer`); `Credentials::None` suits the default (authentication off).
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for `Credentials::Basic` (eKuiper has no login) or a token
    /// with characters not allowed in a header.
    pub fn new(transport: Arc<dyn EdgeTransport>, credentials: Credentials) -> Result<Self> {
        let auth = match &credentials {
            Credentials::None => Auth::None,
            Credentials::Token(token) => Auth::token(TokenScheme::Raw, token)?,
            Credentials::Basic { .. } => {
                return Err(ecp_core::Error::invalid("credentials", "eKuiper takes a JWT (Credentials::Token) or none").into());
            }
        };
        Ok(EkuiperClient { session: Arc::new(Session::new(transport, auth, token_refused)), api: EkuiperApi::default() })
    }

    pub(crate) fn from_session(session: Arc<Session>, api: EkuiperApi) -> Self {
        EkuiperClient { session, api }
    }

    /// The request builder this client uses.
    pub fn api(&self) -> &EkuiperApi {
        &self.api
    }

    /// Sends any call built by [`api`](Self::api), with credentials.
    ///
    /// # Errors
    /// What the call's parser says ([`Error::Api`] with eKuiper's code and message),
    /// [`Error::Unauthorized`] on 401, and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }

    /// Whether eKuiper answers (`GET /ping`): the cheapest health probe.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn ping(&self) -> Result<()> {
        self.execute(self.api.ping()?).await
    }

    /// Version, OS, uptime and memory (`GET /`); a health probe that also reports the version.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn info(&self) -> Result<Info> {
        self.execute(self.api.info()?).await
    }

    /// The version, from [`info`](Self::info).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn version(&self) -> Result<String> {
        Ok(self.info().await?.version)
    }

    /// Stream names.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn streams(&self) -> Result<Vec<String>> {
        self.execute(self.api.streams()?).await
    }

    /// One stream's definition.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); 404 code 1002 if it does not exist.
    pub async fn stream(&self, name: &str) -> Result<StreamDescription> {
        self.execute(self.api.stream(name)?).await
    }

    /// Creates a stream from a `CREATE STREAM` statement; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn create_stream(&self, sql: &str) -> Result<String> {
        self.execute(self.api.create_stream(sql)?).await
    }

    /// Replaces an existing stream's definition; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn replace_stream(&self, name: &str, sql: &str) -> Result<String> {
        self.execute(self.api.replace_stream(name, sql)?).await
    }

    /// Drops a stream (`force` even while rules use it); returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn delete_stream(&self, name: &str, force: bool) -> Result<String> {
        self.execute(self.api.delete_stream(name, force)?).await
    }

    /// Every rule with its status.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn rules(&self) -> Result<Vec<RuleSummary>> {
        self.execute(self.api.rules()?).await
    }

    /// One rule's definition.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn rule(&self, id: &str) -> Result<Rule> {
        self.execute(self.api.rule(id)?).await
    }

    /// Creates a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn create_rule(&self, rule: &Rule) -> Result<String> {
        self.execute(self.api.create_rule(rule)?).await
    }

    /// Creates or replaces a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn update_rule(&self, rule: &Rule) -> Result<String> {
        self.execute(self.api.update_rule(rule)?).await
    }

    /// Deletes a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn delete_rule(&self, id: &str) -> Result<String> {
        self.execute(self.api.delete_rule(id)?).await
    }

    /// A rule's status and metrics.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); 404 code 1002 for an unknown rule.
    pub async fn rule_status(&self, id: &str) -> Result<RuleStatus> {
        self.execute(self.api.rule_status(id)?).await
    }

    /// Starts a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn start_rule(&self, id: &str) -> Result<String> {
        self.execute(self.api.start_rule(id)?).await
    }

    /// Stops a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn stop_rule(&self, id: &str) -> Result<String> {
        self.execute(self.api.stop_rule(id)?).await
    }

    /// Restarts a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn restart_rule(&self, id: &str) -> Result<String> {
        self.execute(self.api.restart_rule(id)?).await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::api::testing::{ParseFn, arb_body, arb_json, parsers, response, shaped};

    fn all_parsers() -> Vec<ParseFn> {
        let api = EkuiperApi::new();
        let rule = Rule::new("r", "SELECT * FROM demo", vec![]);
        parsers![
            api.ping(),
            api.info(),
            api.streams(),
            api.stream("s"),
            api.create_stream("CREATE STREAM s () WITH (TYPE=\"memory\")"),
            api.rules(),
            api.rule("r"),
            api.create_rule(&rule),
            api.rule_status("r"),
            api.start_rule("r"),
        ]
    }

    #[test]
    fn states() {
        assert_eq!(RuleState::parse("running"), RuleState::Running);
        assert_eq!(RuleState::parse("Running"), RuleState::Running);
        assert_eq!(RuleState::parse("stopped: waiting for next schedule."), RuleState::WaitingForSchedule);
        assert_eq!(RuleState::parse("stopped by error"), RuleState::StoppedByError);
        assert_eq!(RuleState::parse("stopped: canceled manually."), RuleState::Stopped);
        assert_eq!(RuleState::parse("error: io timeout"), RuleState::Error("io timeout".into()));
        assert_eq!(RuleState::parse("é"), RuleState::Other("é".into()));
        assert_eq!(RuleState::parse("errör"), RuleState::Other("errör".into()));
        assert_eq!(RuleState::parse("ERROR:x"), RuleState::Error("x".into()));
    }

    #[test]
    fn errors_are_text_plain_json() {
        let api = EkuiperApi::new();
        let r = response(
            404,
            Some("text/plain; charset=utf-8"),
            b"{\"error\":1002,\"message\":\"get rule status error: Rule r9 is not found\"}\n",
        );
        let err = api.rule_status("r9").unwrap().parse(&r).unwrap_err();
        let Error::Api { status: 404, code: Some(1002), message: Some(m), .. } = &err else { panic!("{err:?}") };
        assert_eq!(m, "get rule status error: Rule r9 is not found");
        assert!(err.is_not_found());
        let r = response(401, Some("text/plain"), b"missing_token\n");
        assert!(matches!(api.rules().unwrap().parse(&r), Err(Error::Unauthorized { .. })));
        let r = response(201, Some("text/plain"), b"Rule rule1 was created successfully.");
        assert_eq!(
            api.create_rule(&Rule::new("rule1", "SELECT 1", vec![])).unwrap().parse(&r).unwrap(),
            "Rule rule1 was created successfully."
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(status in 100u16..600, ct in proptest::option::of("[a-z/;= -]{0,30}"), body in arb_body()) {
            let r = response(status, ct.as_deref(), &body);
            for p in all_parsers() { p(&r); }
        }

        #[test]
        fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(201), Just(400), Just(401), Just(404)], value in shaped(arb_json(), &["error", "message", "status", "id", "name", "sql", "actions", "Name", "StreamFields", "Options", "StreamType", "upTimeSeconds", "memoryTotal", "lastStartTimestamp"])) {
            let r = response(status, Some("text/plain"), value.to_string().as_bytes());
            for p in all_parsers() { p(&r); }
        }

        #[test]
        fn rule_state_never_panics(s in ".{0,40}") {
            let _ = RuleState::parse(&s);
        }
    }
}
