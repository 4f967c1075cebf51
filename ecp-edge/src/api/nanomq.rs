//! NanoMQ's HTTP API v4 (`:8081`, base `/api/v4`), behind HTTP Basic (`admin:public` by default)
//! or, with `auth_type=jwt`, a `Bearer` JWT.
//!
//! Wire quirks kept (reference §5, §8):
//! - answers are `{"code":0,"data":…}`; errors are `{"code":N}` only, without a message and often
//!   without a content type; a non-zero `code` is an error whatever the status (a publish without
//!   a topic is 200 `{"code":108}`);
//! - an unknown path is 404 `{"code":102}`, and so is a wrong method; an unknown configuration
//!   section is 404 `{"code":101}`; an unknown client id lists nothing (no 404);
//! - clients carry `client_id`, subscriptions and the topic tree `clientid`;
//! - `/metrics` has no `code`, and its `memory` is a string.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ecp_core::edge::Credentials;
use http::{Method, StatusCode};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::call::{self, ApiCall, Body, TEXT, Uri, int_field};
use super::session::{Auth, Session, TokenScheme};
use crate::error::{Error, Result};
use crate::transport::EdgeTransport;

/// The base path of the API.
pub const DEFAULT_PREFIX: &str = "/api/v4";
/// NanoMQ's default HTTP user.
pub const DEFAULT_USERNAME: &str = "admin";
/// NanoMQ's default HTTP password.
pub const DEFAULT_PASSWORD: &str = "public";

/// NanoMQ's default credentials, `admin:public` (`etc/nanomq.conf`).
pub fn default_credentials() -> Credentials {
    Credentials::Basic { username: DEFAULT_USERNAME.to_owned(), password: SecretString::from(DEFAULT_PASSWORD) }
}

/// A short description of a NanoMQ result code (`include/rest_api.h`), if known.
pub fn error_text(code: i64) -> Option<&'static str> {
    Some(match code {
        101 => "rpc error",
        102 => "unknown error (unknown path or method)",
        103 => "wrong user name or password",
        104 => "empty user name or password",
        107 => "missing request parameter",
        108 => "bad request parameter",
        109 => "bad JSON",
        112 => "client offline",
        115 => "illegal topic",
        116 => "token expired",
        117 => "bad HOCON",
        118 => "configuration write failed",
        _ => return None,
    })
}

/// Whether a NanoMQ answer refuses the credentials (401 `103`, `104`, `116`).
pub(crate) fn token_refused(response: &http::Response<Bytes>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
}

// ---------------------------------------------------------------------------------------------
// Wire types.

/// An entry of `GET /brokers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Broker {
    /// The broker's local time, `2022-06-07 10:02:24`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub datetime: Option<String>,
    /// Always the literal `Running`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub node_status: Option<String>,
    /// `NanoMQ Broker`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub sysdescr: Option<String>,
    /// `15 Hours, 1 minutes, 38 seconds`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub uptime: Option<String>,
    /// `0.25.6`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub version: Option<String>,
}

/// An entry of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Node {
    /// Connected clients.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub connections: Option<i64>,
    /// Always the literal `Running`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub node_status: Option<String>,
    /// Uptime, as text.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub uptime: Option<String>,
    /// The version.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub version: Option<String>,
}

/// A client (`GET /clients`): note **`client_id`**, where subscriptions say `clientid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Client {
    /// Its client id.
    pub client_id: String,
    /// Its user name.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub username: Option<String>,
    /// Keep-alive, seconds.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub keepalive: Option<i64>,
    /// `connected` ...
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub conn_state: Option<String>,
    /// Whether it asked for a clean start.
    #[serde(default)]
    pub clean_start: Option<bool>,
    /// `MQTT`.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub proto_name: Option<String>,
    /// 3, 4 or 5.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub proto_ver: Option<i64>,
    /// Its will topic, if any.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub will_topic: Option<String>,
    /// Its will message, if any.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub will_msg: Option<String>,
}

/// Filters of `GET /clients`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientFilter {
    /// Only this client id (`clientid=`).
    pub client_id: Option<String>,
    /// Only this user name.
    pub username: Option<String>,
    /// Only clients in this connection state.
    pub conn_state: Option<String>,
    /// Only clients with this clean-start flag.
    pub clean_start: Option<bool>,
    /// Only this protocol name.
    pub proto_name: Option<String>,
    /// Only this protocol version.
    pub proto_ver: Option<u8>,
}

impl ClientFilter {
    /// Only client id `id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Only user `username`.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Only clients in `state` (`connected` ...).
    pub fn conn_state(mut self, state: impl Into<String>) -> Self {
        self.conn_state = Some(state.into());
        self
    }

    /// Only clients with this clean-start flag.
    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = Some(clean_start);
        self
    }

    /// Only protocol `name`.
    pub fn proto_name(mut self, name: impl Into<String>) -> Self {
        self.proto_name = Some(name.into());
        self
    }

    /// Only protocol version `version`.
    pub fn proto_ver(mut self, version: u8) -> Self {
        self.proto_ver = Some(version);
        self
    }
}

/// A subscription (`GET /subscriptions`): note **`clientid`**.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Subscription {
    /// The subscriber (`clientid` on the wire).
    #[serde(rename = "clientid")]
    pub client_id: String,
    /// The topic filter.
    pub topic: String,
    /// The granted QoS.
    #[serde(default)]
    pub qos: u8,
}

/// A node of the topic tree (`GET /topic-tree`, one array per level).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicNode {
    /// The level's topic piece (`""` at the root).
    #[serde(default)]
    pub topic: String,
    /// How many children it has.
    #[serde(default)]
    pub cld_cnt: u64,
    /// The subscribers at this node (`clientid` on the wire).
    #[serde(default, rename = "clientid")]
    pub client_ids: Vec<String>,
}

/// `GET /metrics`: `{"metrics":[…],"cpuinfo":"0.00%","memory":"20049920","connections":0}` (no
/// `code`; `memory` is a string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metrics {
    /// Per-bridge counters (`{"bridge name":…,"tx_msgs":…}`).
    #[serde(default)]
    pub metrics: Vec<Map<String, Value>>,
    /// CPU usage, as NanoMQ formats it.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub cpuinfo: Option<String>,
    /// Resident memory, bytes, as a string.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub memory: Option<String>,
    /// Connected clients.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub connections: Option<i64>,
}

impl Metrics {
    /// [`memory`](Self::memory) as a number, if it is one.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory.as_deref()?.trim().parse().ok()
    }
}

/// The hot-reloadable settings (`GET|POST /reload`; sizes in KB). In a `POST`, only the fields set
/// are sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReloadConfig {
    /// MQTT property size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_size: Option<u64>,
    /// The largest packet the broker accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_packet_size: Option<u64>,
    /// The largest packet sent to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_max_packet_size: Option<u64>,
    /// The per-client queue length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msq_len: Option<u64>,
    /// The QoS retry interval, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_duration: Option<u64>,
    /// The keep-alive backoff factor (×1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_backoff: Option<u64>,
    /// Whether anonymous clients are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Whether bridging is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_mode: Option<bool>,
    /// Any other key.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// MQTT v5 properties of an HTTP publish.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PublishProperties {
    /// The Response Topic of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// The Correlation Data of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    /// User properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_properties: Option<Map<String, Value>>,
    /// Any other property (`message_expiry_interval`, `content_type` ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of `POST /mqtt/publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Publish {
    /// The topic (NanoMQ answers 200 `{"code":108}` without one).
    pub topic: String,
    /// The payload.
    pub payload: String,
    /// `plain` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// 0, 1 or 2.
    pub qos: u8,
    /// Whether to retain it.
    pub retain: bool,
    /// The client id it is published as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clientid: Option<String>,
    /// MQTT v5 properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<PublishProperties>,
}

impl Publish {
    /// A QoS 0, non-retained message.
    pub fn new(topic: impl Into<String>, payload: impl Into<String>) -> Self {
        Publish { topic: topic.into(), payload: payload.into(), encoding: None, qos: 0, retain: false, clientid: None, properties: None }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading answers.

/// The JSON of a NanoMQ answer, once its error forms are ruled out.
fn answer(endpoint: &str, response: &http::Response<Bytes>) -> Result<Value> {
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
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: Some(code),
            message: error_text(code).map(str::to_owned),
        });
    }
    if !status.is_success() {
        return Err(if call::is_html(response) {
            call::html_error(endpoint, status, "NanoMQ")
        } else {
            call::status_error(endpoint, status, code, body)
        });
    }
    match value {
        Some(v) => Ok(v),
        None if call::is_html(response) => Err(call::html_error(endpoint, status, "NanoMQ")),
        None => Err(call::decode_error(endpoint, "not JSON")),
    }
}

/// `data` of `{"code":0,"data":…}`.
fn parse_data<T: DeserializeOwned>(endpoint: &str, response: &http::Response<Bytes>) -> Result<T> {
    match answer(endpoint, response)? {
        Value::Object(mut m) => match m.remove("data") {
            Some(data) => call::from_value(endpoint, data),
            None => Err(call::decode_error(endpoint, "no `data` in the answer")),
        },
        _ => Err(call::decode_error(endpoint, "not a JSON object")),
    }
}

fn parse_done(endpoint: &str, response: &http::Response<Bytes>) -> Result<()> {
    answer(endpoint, response).map(drop)
}

fn parse_metrics(endpoint: &str, response: &http::Response<Bytes>) -> Result<Metrics> {
    call::from_value(endpoint, answer(endpoint, response)?)
}

fn parse_section(endpoint: &str, response: &http::Response<Bytes>) -> Result<Value> {
    parse_data::<Value>(endpoint, response)
}

fn parse_text(endpoint: &str, response: &http::Response<Bytes>) -> Result<String> {
    let status = response.status();
    if !status.is_success() {
        return Err(answer(endpoint, response).err().unwrap_or_else(|| call::status_error(endpoint, status, None, response.body())));
    }
    call::text(endpoint, response.body())
}

// ---------------------------------------------------------------------------------------------
// Building requests.

/// Builds NanoMQ's requests, without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NanoMqApi {
    prefix: String,
}

impl Default for NanoMqApi {
    fn default() -> Self {
        NanoMqApi { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

#[derive(Serialize)]
struct DataBody<'a, T> {
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
    /// [`Error::Core`] (invalid input) unless `prefix` is empty or `/`-separated segments of
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
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
    pub fn client(&self, client_id: &str) -> Result<ApiCall<Vec<Client>>> {
        self.get(self.uri("/clients").segment("client_id", client_id)?, parse_data::<Vec<Client>>)
    }

    /// `GET /clients/username/{username}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty user name, `.` or `..`.
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
    /// [`Error::Core`] (invalid input) for an empty id, `.` or `..`.
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
    /// [`Error::Core`] (invalid input) for an empty section, `.` or `..`.
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

// ---------------------------------------------------------------------------------------------
// The client.

/// A client of one NanoMQ: [`NanoMqApi`]'s calls sent over a transport. Cheap to clone.
#[derive(Clone)]
pub struct NanoMqClient {
    session: Arc<Session>,
    api: NanoMqApi,
}

impl fmt::Debug for NanoMqClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NanoMqClient").field("session", &self.session).field("prefix", &self.api.prefix).finish()
    }
}

impl NanoMqClient {
    /// A client of NanoMQ at `/api/v4`. `Credentials::Basic` is sent as HTTP Basic (see
    /// [`default_credentials`]); `Credentials::Token` as a `Bearer` JWT (`auth_type=jwt`).
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for a user name with `:`, or credentials with characters
    /// not allowed in a header.
    pub fn new(transport: Arc<dyn EdgeTransport>, credentials: Credentials) -> Result<Self> {
        Self::with_api(transport, credentials, NanoMqApi::default())
    }

    /// A client using `api` (another path prefix).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_api(transport: Arc<dyn EdgeTransport>, credentials: Credentials, api: NanoMqApi) -> Result<Self> {
        let auth = match &credentials {
            Credentials::None => Auth::None,
            Credentials::Basic { username, password } => Auth::basic(username, password)?,
            Credentials::Token(token) => Auth::token(TokenScheme::Bearer, token)?,
        };
        Ok(NanoMqClient { session: Arc::new(Session::new(transport, auth, token_refused)), api })
    }

    /// The request builder this client uses.
    pub fn api(&self) -> &NanoMqApi {
        &self.api
    }

    /// Sends any call built by [`api`](Self::api), with credentials.
    ///
    /// # Errors
    /// What the call's parser says ([`Error::Api`] with NanoMQ's code, also under HTTP 200),
    /// [`Error::Unauthorized`] on 401, and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }

    /// The brokers.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn brokers(&self) -> Result<Vec<Broker>> {
        self.execute(self.api.brokers()?).await
    }

    /// The version of the first broker (`GET /brokers`): the health probe.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); [`Error::Decode`] when no broker is listed.
    pub async fn version(&self) -> Result<String> {
        let endpoint = self.api.brokers()?.endpoint().to_owned();
        self.brokers().await?.into_iter().find_map(|b| b.version).ok_or_else(|| call::decode_error(&endpoint, "no broker with a version"))
    }

    /// The nodes.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.execute(self.api.nodes()?).await
    }

    /// The clients, filtered.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn clients(&self, filter: &ClientFilter) -> Result<Vec<Client>> {
        self.execute(self.api.clients(filter)?).await
    }

    /// One client, or `None` (NanoMQ lists nothing for an unknown id).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>> {
        Ok(self.execute(self.api.client(client_id)?).await?.into_iter().next())
    }

    /// The clients of one user.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn clients_by_username(&self, username: &str) -> Result<Vec<Client>> {
        self.execute(self.api.clients_by_username(username)?).await
    }

    /// Every subscription.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>> {
        self.execute(self.api.subscriptions()?).await
    }

    /// One client's subscriptions.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn client_subscriptions(&self, client_id: &str) -> Result<Vec<Subscription>> {
        self.execute(self.api.client_subscriptions(client_id)?).await
    }

    /// The topic tree, one list per level.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn topic_tree(&self) -> Result<Vec<Vec<TopicNode>>> {
        self.execute(self.api.topic_tree()?).await
    }

    /// Broker metrics.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn metrics(&self) -> Result<Metrics> {
        self.execute(self.api.metrics()?).await
    }

    /// The Prometheus text (lenient parsers advised).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn prometheus(&self) -> Result<String> {
        self.execute(self.api.prometheus()?).await
    }

    /// The hot-reloadable settings.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn reload_config(&self) -> Result<ReloadConfig> {
        self.execute(self.api.reload_config()?).await
    }

    /// Changes hot-reloadable settings (only the fields set).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn set_reload_config(&self, config: &ReloadConfig) -> Result<()> {
        self.execute(self.api.set_reload_config(config)?).await
    }

    /// The whole configuration, by section.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn configuration(&self) -> Result<Map<String, Value>> {
        self.execute(self.api.configuration()?).await
    }

    /// One configuration section's settings (the content of `data.<section>`).
    ///
    /// # Errors
    /// As [`execute`](Self::execute); 404 code 101 for an unknown section.
    pub async fn configuration_section(&self, section: &str) -> Result<Value> {
        let mut data = self.execute(self.api.configuration_section(section)?).await?;
        Ok(match data.as_object_mut().and_then(|m| m.remove(section)) {
            Some(inner) => inner,
            None => data,
        })
    }

    /// Writes configuration sections.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn set_configuration(&self, sections: &Map<String, Value>) -> Result<()> {
        self.execute(self.api.set_configuration(sections)?).await
    }

    /// Publishes a message.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); code 108 (under HTTP 200) for a missing topic or a bad QoS.
    pub async fn publish(&self, message: &Publish) -> Result<()> {
        self.execute(self.api.publish(message)?).await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::api::testing::{ParseFn, arb_body, arb_json, parsers, response, shaped};

    fn all_parsers() -> Vec<ParseFn> {
        let api = NanoMqApi::new();
        parsers![
            api.brokers(),
            api.nodes(),
            api.clients(&ClientFilter::default()),
            api.subscriptions(),
            api.topic_tree(),
            api.metrics(),
            api.prometheus(),
            api.reload_config(),
            api.configuration(),
            api.configuration_section("basic"),
            api.publish(&Publish::new("t", "p")),
        ]
    }

    #[test]
    fn codes_without_content_type_and_under_200() {
        let api = NanoMqApi::new();
        let err = api.brokers().unwrap().parse(&response(404, None, br#"{"code":102}"#)).unwrap_err();
        assert!(matches!(err, Error::Api { status: 404, code: Some(102), .. }), "{err:?}");
        let err = api.publish(&Publish::new("", "x")).unwrap().parse(&response(200, None, br#"{"code":108}"#)).unwrap_err();
        assert!(matches!(err, Error::Api { status: 200, code: Some(108), .. }), "{err:?}");
        let err = api.brokers().unwrap().parse(&response(401, None, br#"{"code":104}"#)).unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }));
        let m =
            api.metrics().unwrap().parse(&response(200, None, br#"{"metrics":[],"cpuinfo":"0.00%","memory":"20049920","connections":0}"#));
        assert_eq!(m.unwrap().memory_bytes(), Some(20_049_920));
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(status in 100u16..600, ct in proptest::option::of("[a-z/;= -]{0,30}"), body in arb_body()) {
            let r = response(status, ct.as_deref(), &body);
            for p in all_parsers() { p(&r); }
        }

        #[test]
        fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(401), Just(404), Just(405)], value in shaped(arb_json(), &["code", "data", "metrics", "memory", "cpuinfo", "connections"])) {
            let r = response(status, None, value.to_string().as_bytes());
            for p in all_parsers() { p(&r); }
        }

        #[test]
        fn data_payloads_never_panic(value in arb_json()) {
            let body = serde_json::json!({ "code": 0, "data": value }).to_string();
            let r = response(200, Some("application/json"), body.as_bytes());
            for p in all_parsers() { p(&r); }
        }
    }
}
