//! Building ekuiper's requests and reading their answers, without I/O.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::call::{self, ApiCall, Body, TEXT, Uri, int_field};
use crate::error::{Error, Result};

/// Rules out eKuiper's error forms.
pub(super) fn check(endpoint: &str, response: &http::Response<Bytes>) -> Result<()> {
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
        return Err(Error::Api {
            product: Some(EdgeKind::Ekuiper),
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: int_field(&value, "error"),
            message,
        });
    }
    Err(if call::is_html(response) {
        call::html_error(endpoint, status, Some(EdgeKind::Ekuiper))
    } else {
        call::status_error(endpoint, status, Some(EdgeKind::Ekuiper), None, body)
    })
}

pub(super) fn parse_json<T: DeserializeOwned>(endpoint: &str, response: &http::Response<Bytes>) -> Result<T> {
    check(endpoint, response)?;
    let value = call::json_value(endpoint, response.body())
        .map_err(|e| if call::is_html(response) { call::html_error(endpoint, response.status(), Some(EdgeKind::Ekuiper)) } else { e })?;
    call::from_value(endpoint, value)
}

/// A plain-text sentence, trimmed.
pub(super) fn parse_sentence(endpoint: &str, response: &http::Response<Bytes>) -> Result<String> {
    check(endpoint, response)?;
    call::text(endpoint, response.body()).map(|s| s.trim().to_owned())
}

pub(super) fn parse_done(endpoint: &str, response: &http::Response<Bytes>) -> Result<()> {
    check(endpoint, response)
}

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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) unless `prefix` is empty or `/`-separated segments of
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty name, `.` or `..`.
    pub fn stream(&self, name: &str) -> Result<ApiCall<StreamDescription>> {
        ApiCall::new(Method::GET, self.uri("/streams").segment("name", name)?, Body::NONE, true, parse_json::<StreamDescription>)
    }

    /// `POST /streams {"sql"}` → 201 `Stream demo is created.`
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for empty SQL.
    pub fn create_stream(&self, sql: &str) -> Result<ApiCall<String>> {
        call::check_name("sql", sql.trim())?;
        ApiCall::new(Method::POST, self.uri("/streams"), Body::json(&serde_json::json!({ "sql": sql }))?, true, parse_sentence)
    }

    /// `PUT /streams/{name} {"sql"}` → `Stream demo is replaced.`: replaces an existing stream's
    /// definition (the statement must create the same name).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty name or statement.
    pub fn replace_stream(&self, name: &str, sql: &str) -> Result<ApiCall<String>> {
        call::check_name("sql", sql.trim())?;
        let uri = self.uri("/streams").segment("name", name)?;
        ApiCall::new(Method::PUT, uri, Body::json(&serde_json::json!({ "sql": sql }))?, true, parse_sentence)
    }

    /// `DELETE /streams/{name}[?force=true]` → `Stream demo is dropped.` (refused while a rule uses
    /// the stream, unless forced).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty name, `.` or `..`.
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn rule(&self, id: &str) -> Result<ApiCall<Rule>> {
        ApiCall::new(Method::GET, self.uri("/rules").segment("id", id)?, Body::NONE, true, parse_json::<Rule>)
    }

    /// `POST /rules` → 201 `Rule rule1 was created successfully.`
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id.
    pub fn create_rule(&self, rule: &Rule) -> Result<ApiCall<String>> {
        call::check_name("id", &rule.id)?;
        ApiCall::new(Method::POST, self.uri("/rules"), Body::json(rule)?, true, parse_sentence)
    }

    /// `PUT /rules/{id}`: creates or replaces the rule.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn update_rule(&self, rule: &Rule) -> Result<ApiCall<String>> {
        ApiCall::new(Method::PUT, self.uri("/rules").segment("id", &rule.id)?, Body::json(rule)?, true, parse_sentence)
    }

    /// `DELETE /rules/{id}` → `Rule rule1 is dropped.`
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn delete_rule(&self, id: &str) -> Result<ApiCall<String>> {
        ApiCall::new(Method::DELETE, self.uri("/rules").segment("id", id)?, Body::Empty(TEXT), true, parse_sentence)
    }

    /// `GET /rules/{id}/status` → [`RuleStatus`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn rule_status(&self, id: &str) -> Result<ApiCall<RuleStatus>> {
        ApiCall::new(Method::GET, self.uri("/rules").segment("id", id)?.push("/status"), Body::NONE, true, parse_json::<RuleStatus>)
    }

    /// `POST /rules/{id}/start` → `Rule rule1 was started`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn start_rule(&self, id: &str) -> Result<ApiCall<String>> {
        self.rule_action(id, "/start")
    }

    /// `POST /rules/{id}/stop` → `Rule rule1 was stopped.`
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn stop_rule(&self, id: &str) -> Result<ApiCall<String>> {
        self.rule_action(id, "/stop")
    }

    /// `POST /rules/{id}/restart` → `Rule rule1 was restarted`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn restart_rule(&self, id: &str) -> Result<ApiCall<String>> {
        self.rule_action(id, "/restart")
    }

    fn rule_action(&self, id: &str, action: &str) -> Result<ApiCall<String>> {
        ApiCall::new(Method::POST, self.uri("/rules").segment("id", id)?.push(action), Body::Empty(TEXT), true, parse_sentence)
    }
}
