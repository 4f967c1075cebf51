//! Building nanomq's requests and reading their answers, without I/O.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::*;
use crate::call::{self, ApiCall, Body, TEXT, Uri, int_field};
use crate::error::{Error, Result};

/// The JSON of a NanoMQ answer, once its error forms are ruled out.
pub(super) fn answer(endpoint: &str, response: &http::Response<Bytes>) -> Result<Value> {
    let status = response.status();
    let body = response.body();
    if status == StatusCode::UNAUTHORIZED {
        tracing::debug!(endpoint, "nanomq refused the credentials");
        return Err(Error::Unauthorized { endpoint: endpoint.to_owned() });
    }
    let value = serde_json::from_slice::<Value>(body).ok();
    let code = value.as_ref().and_then(|v| int_field(v, "code"));
    if let Some(code) = code.filter(|c| *c != 0) {
        return Err(Error::Api {
            product: Some(EdgeKind::NanoMq),
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: Some(code),
            message: error_text(code).map(str::to_owned),
        });
    }
    if !status.is_success() {
        return Err(if call::is_html(response) {
            call::html_error(endpoint, status, Some(EdgeKind::NanoMq))
        } else {
            call::status_error(endpoint, status, Some(EdgeKind::NanoMq), code, body)
        });
    }
    match value {
        Some(v) => Ok(v),
        None if call::is_html(response) => Err(call::html_error(endpoint, status, Some(EdgeKind::NanoMq))),
        None => Err(call::decode_error(endpoint, "not JSON")),
    }
}

/// `data` of `{"code":0,"data":…}`.
pub(super) fn parse_data<T: DeserializeOwned>(endpoint: &str, response: &http::Response<Bytes>) -> Result<T> {
    match answer(endpoint, response)? {
        Value::Object(mut m) => match m.remove("data") {
            Some(data) => call::from_value(endpoint, data),
            None => Err(call::decode_error(endpoint, "no `data` in the answer")),
        },
        _ => Err(call::decode_error(endpoint, "not a JSON object")),
    }
}

pub(super) fn parse_done(endpoint: &str, response: &http::Response<Bytes>) -> Result<()> {
    answer(endpoint, response).map(drop)
}

pub(super) fn parse_metrics(endpoint: &str, response: &http::Response<Bytes>) -> Result<Metrics> {
    call::from_value(endpoint, answer(endpoint, response)?)
}

pub(super) fn parse_section(endpoint: &str, response: &http::Response<Bytes>) -> Result<Value> {
    parse_data::<Value>(endpoint, response)
}

pub(super) fn parse_text(endpoint: &str, response: &http::Response<Bytes>) -> Result<String> {
    let status = response.status();
    if !status.is_success() {
        return Err(answer(endpoint, response)
            .err()
            .unwrap_or_else(|| call::status_error(endpoint, status, Some(EdgeKind::NanoMq), None, response.body())));
    }
    call::text(endpoint, response.body())
}

/// Builds NanoMQ's requests, without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NanoMqApi {
    pub(super) prefix: String,
}

impl Default for NanoMqApi {
    fn default() -> Self {
        NanoMqApi { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

#[derive(Serialize)]
pub(super) struct DataBody<'a, T> {
    data: &'a T,
}

impl NanoMqApi {
    /// NanoMQ at `/api/v4`.
    pub fn new() -> Self {
        NanoMqApi::default()
    }

    /// NanoMQ's API under another path (a reverse proxy).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) unless `prefix` is empty or `/`-separated segments of
    /// letters, digits, `-`, `.`, `_`, `~`.
    pub fn with_prefix(prefix: &str) -> Result<Self> {
        call::check_prefix(prefix)?;
        Ok(NanoMqApi { prefix: prefix.to_owned() })
    }

    fn uri(&self, path: &str) -> Uri {
        Uri::new(&self.prefix, path)
    }

    fn get<T>(&self, uri: Uri, parse: call::Parser<T>) -> Result<ApiCall<T>> {
        ApiCall::new(Method::GET, uri, Body::NONE, true, parse)
    }

    /// `GET /brokers` → `{"code":0,"data":[…]}`.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn brokers(&self) -> Result<ApiCall<Vec<Broker>>> {
        self.get(self.uri("/brokers"), parse_data::<Vec<Broker>>)
    }

    /// `GET /nodes` → `{"code":0,"data":[…]}`.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn nodes(&self) -> Result<ApiCall<Vec<Node>>> {
        self.get(self.uri("/nodes"), parse_data::<Vec<Node>>)
    }

    /// `GET /clients[?clientid&username&conn_state&clean_start&proto_name&proto_ver]`.
    ///
    /// # Errors
    /// None in practice (filters are percent-encoded).
    pub fn clients(&self, filter: &ClientFilter) -> Result<ApiCall<Vec<Client>>> {
        let uri = self
            .uri("/clients")
            .query_opt("clientid", filter.client_id.as_deref())
            .query_opt("username", filter.username.as_deref())
            .query_opt("conn_state", filter.conn_state.as_deref())
            .query_opt("clean_start", filter.clean_start.map(|b| if b { "true" } else { "false" }))
            .query_opt("proto_name", filter.proto_name.as_deref())
            .query_opt("proto_ver", filter.proto_ver.map(|v| v.to_string()).as_deref());
        self.get(uri, parse_data::<Vec<Client>>)
    }

    /// `GET /clients/{id}` → a list of at most one (empty for an unknown id).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn client(&self, client_id: &str) -> Result<ApiCall<Vec<Client>>> {
        self.get(self.uri("/clients").segment("client_id", client_id)?, parse_data::<Vec<Client>>)
    }

    /// `GET /clients/username/{username}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty user name, `.` or `..`.
    pub fn clients_by_username(&self, username: &str) -> Result<ApiCall<Vec<Client>>> {
        self.get(self.uri("/clients/username").segment("username", username)?, parse_data::<Vec<Client>>)
    }

    /// `GET /subscriptions` → `{"code":0,"data":[{"clientid","topic","qos"}]}`.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn subscriptions(&self) -> Result<ApiCall<Vec<Subscription>>> {
        self.get(self.uri("/subscriptions"), parse_data::<Vec<Subscription>>)
    }

    /// `GET /subscriptions/{clientid}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty id, `.` or `..`.
    pub fn client_subscriptions(&self, client_id: &str) -> Result<ApiCall<Vec<Subscription>>> {
        self.get(self.uri("/subscriptions").segment("client_id", client_id)?, parse_data::<Vec<Subscription>>)
    }

    /// `GET /topic-tree` → one array per level.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn topic_tree(&self) -> Result<ApiCall<Vec<Vec<TopicNode>>>> {
        self.get(self.uri("/topic-tree"), parse_data::<Vec<Vec<TopicNode>>>)
    }

    /// `GET /metrics` → [`Metrics`] (no `code`).
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn metrics(&self) -> Result<ApiCall<Metrics>> {
        self.get(self.uri("/metrics"), parse_metrics)
    }

    /// `GET /prometheus` → Prometheus text.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn prometheus(&self) -> Result<ApiCall<String>> {
        ApiCall::new(Method::GET, self.uri("/prometheus"), Body::Empty(TEXT), true, parse_text)
    }

    /// `GET /reload` → the hot-reloadable settings.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn reload_config(&self) -> Result<ApiCall<ReloadConfig>> {
        self.get(self.uri("/reload"), parse_data::<ReloadConfig>)
    }

    /// `POST /reload {"data":{…}}` → `{"code":0}`.
    ///
    /// # Errors
    /// None in practice.
    pub fn set_reload_config(&self, config: &ReloadConfig) -> Result<ApiCall<()>> {
        ApiCall::new(Method::POST, self.uri("/reload"), Body::json(&DataBody { data: config })?, true, parse_done)
    }

    /// `GET /configuration` → every section (`basic`, `tls`, `http_server` ...).
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn configuration(&self) -> Result<ApiCall<Map<String, Value>>> {
        self.get(self.uri("/configuration"), parse_data::<Map<String, Value>>)
    }

    /// `GET /configuration/{section}` → `{"code":0,"data":{"<section>":{…}}}` (404 `{"code":101}` for
    /// an unknown section).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty section, `.` or `..`.
    pub fn configuration_section(&self, section: &str) -> Result<ApiCall<Value>> {
        self.get(self.uri("/configuration").segment("section", section)?, parse_section)
    }

    /// `POST /configuration {"data":{"<section>":{…},…}}` → `{"code":0}` (written to the file;
    /// takes effect after a restart).
    ///
    /// # Errors
    /// None in practice.
    pub fn set_configuration(&self, sections: &Map<String, Value>) -> Result<ApiCall<()>> {
        ApiCall::new(Method::POST, self.uri("/configuration"), Body::json(&DataBody { data: sections })?, true, parse_done)
    }

    /// `POST /mqtt/publish` → `{"code":0}`.
    ///
    /// # Errors
    /// None in practice.
    pub fn publish(&self, message: &Publish) -> Result<ApiCall<()>> {
        ApiCall::new(Method::POST, self.uri("/mqtt/publish"), Body::json(message)?, true, parse_done)
    }
}
