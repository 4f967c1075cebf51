//! Neuron 2.x (`:7000`, base `/api/v2`), standalone or proxied by NeuronEX under `/api/neuron`.
//!
//! Wire quirks kept (reference §3, §8):
//! - every error is `{"error":N}`, and many come with HTTP 200 (all 3xxx plugin errors, 2005 ...):
//!   a non-zero `error` is an error whatever the status; success of a change is `{"error":0}`;
//! - login takes `{"name","pass"}`; the header is always `Authorization: Bearer <token>`; a missing
//!   or undecodable token is 401 `1004`/`1005`, an expired or invalid one **403** `1006`–`1008`;
//! - group bodies use the key `group` (the docs' `name` is stale); the group list has different
//!   keys with and without `?node=`, and `node/state?node=` answers a flat object without the name;
//! - unknown routes answer an HTML page;
//! - `/metrics` is Prometheus text and needs no token.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ecp_core::edge::Credentials;
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::call::{self, ApiCall, Body, TEXT, Uri, int_field};
use super::session::{Auth, LoginReply, LoginToken, Session};
use crate::error::{Error, Result};
use crate::transport::EdgeTransport;

/// The base path of standalone Neuron's API.
pub const DEFAULT_PREFIX: &str = "/api/v2";

/// A short description of a Neuron error code (`include/neuron/errcodes.h`), if known.
pub fn error_text(code: i64) -> Option<&'static str> {
    Some(match code {
        1001 => "internal error",
        1002 => "request body is wrong",
        1003 => "request parameter is wrong",
        1004 => "missing token",
        1005 => "token cannot be decoded",
        1006 => "token expired",
        1007 => "token validation failed",
        1008 => "invalid token",
        1009 => "invalid user or password",
        1010 => "busy",
        1011 => "file does not exist",
        1012 => "invalid password length",
        1014 => "command execution failed",
        2002 => "node already exists",
        2003 => "node does not exist",
        2004 => "node setting invalid",
        2005 => "node setting not found",
        2006 => "node not ready",
        2007 => "node is running",
        2008 => "node not running",
        2009 => "node is stopped",
        2010 => "node name too long",
        2011 => "node may not be deleted",
        2015 => "node name empty",
        2101 => "group already subscribed",
        2102 => "group not subscribed",
        2103 => "group not allowed",
        2104 => "group already exists",
        2105 => "group parameter invalid",
        2106 => "group does not exist",
        2107 => "group name too long",
        2201 => "tag does not exist",
        2202 => "tag name conflict",
        2203 => "tag attribute not supported",
        2204 => "tag type not supported",
        2205 => "tag address format invalid",
        2206 => "tag name too long",
        2207 => "tag address too long",
        2208 => "tag description too long",
        2209 => "tag precision invalid",
        2210 => "tag already exists",
        2301 => "plugin library not found",
        2302 => "plugin library info invalid",
        2400..=2409 => "license error",
        3000 => "plugin read failure",
        3001 => "plugin write failure",
        3002 => "plugin disconnected (device down)",
        3003 => "tag not readable",
        3004 => "tag not writable",
        3007 => "tag type mismatch",
        3008 => "tag value expired",
        3009 => "protocol decode failure",
        3010 => "plugin not running",
        3011 => "tag not ready",
        3015 => "device does not respond",
        4000..=4016 => "MQTT error",
        _ => return None,
    })
}

/// Whether a Neuron answer says the token is missing or no good: 401 `1004`/`1005`, 403
/// `1006`/`1007`/`1008`.
pub(crate) fn token_refused(response: &http::Response<Bytes>) -> bool {
    let status = response.status().as_u16();
    if status != 401 && status != 403 {
        return false;
    }
    let code = serde_json::from_slice::<Value>(response.body()).ok().and_then(|v| int_field(&v, "error"));
    matches!((status, code), (401, Some(1004 | 1005)) | (403, Some(1006..=1008)))
}

// ---------------------------------------------------------------------------------------------
// Wire types.

/// A node's role: south driver or north app (`?type=1|2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A south device driver (`1`).
    Driver,
    /// A north application (`2`).
    App,
}

impl NodeType {
    /// Neuron's code.
    pub const fn code(self) -> u8 {
        match self {
            NodeType::Driver => 1,
            NodeType::App => 2,
        }
    }
}

/// A node's run state (`running`: 1 init, 2 ready, 3 running, 4 stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "i64", into = "i64")]
#[non_exhaustive]
pub enum RunningState {
    /// `1`.
    Init,
    /// `2`.
    Ready,
    /// `3`.
    Running,
    /// `4`.
    Stopped,
    /// A code this SDK does not know.
    Other(i64),
}

impl From<i64> for RunningState {
    fn from(code: i64) -> Self {
        match code {
            1 => RunningState::Init,
            2 => RunningState::Ready,
            3 => RunningState::Running,
            4 => RunningState::Stopped,
            n => RunningState::Other(n),
        }
    }
}

impl From<RunningState> for i64 {
    fn from(s: RunningState) -> i64 {
        match s {
            RunningState::Init => 1,
            RunningState::Ready => 2,
            RunningState::Running => 3,
            RunningState::Stopped => 4,
            RunningState::Other(n) => n,
        }
    }
}

impl RunningState {
    /// `init`, `ready`, `running`, `stopped`, or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunningState::Init => "init",
            RunningState::Ready => "ready",
            RunningState::Running => "running",
            RunningState::Stopped => "stopped",
            RunningState::Other(_) => "unknown",
        }
    }
}

/// A node's link state (`link`: 0 disconnected, 1 connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "i64", into = "i64")]
#[non_exhaustive]
pub enum LinkState {
    /// `0`.
    Disconnected,
    /// `1`.
    Connected,
    /// A code this SDK does not know.
    Other(i64),
}

impl From<i64> for LinkState {
    fn from(code: i64) -> Self {
        match code {
            0 => LinkState::Disconnected,
            1 => LinkState::Connected,
            n => LinkState::Other(n),
        }
    }
}

impl From<LinkState> for i64 {
    fn from(s: LinkState) -> i64 {
        match s {
            LinkState::Disconnected => 0,
            LinkState::Connected => 1,
            LinkState::Other(n) => n,
        }
    }
}

/// Filters of the node list (`GET /node`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeFilter {
    /// Only nodes of this plugin.
    pub plugin: Option<String>,
    /// Only nodes whose name contains this.
    pub node: Option<String>,
    /// Only nodes with this group.
    pub group: Option<String>,
    /// Only nodes in this state.
    pub state: Option<RunningState>,
    /// Only nodes with this link state.
    pub link: Option<LinkState>,
}

impl NodeFilter {
    /// Only nodes of `plugin`.
    pub fn plugin(mut self, plugin: impl Into<String>) -> Self {
        self.plugin = Some(plugin.into());
        self
    }

    /// Only nodes whose name contains `node`.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Only nodes with group `group`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Only nodes in `state`.
    pub fn state(mut self, state: RunningState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only nodes with `link`.
    pub fn link(mut self, link: LinkState) -> Self {
        self.link = Some(link);
        self
    }
}

/// A node of `GET /node`: `{"name","plugin","support_import_tags","tags"}` (the last two are new).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its plugin (`Modbus TCP`, `MQTT` ...).
    pub plugin: String,
    /// Whether tags can be imported into it (Neuron 2.15+).
    #[serde(default)]
    pub support_import_tags: Option<bool>,
    /// Neuron 2.15's `tags` string (usually empty).
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub tags: Option<String>,
}

#[derive(Deserialize)]
struct NodesReply {
    nodes: Vec<Node>,
}

/// A node's settings (`GET /node/setting?node=`): `{"node","params":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeSetting {
    /// The node.
    pub node: String,
    /// The plugin's parameters.
    #[serde(default)]
    pub params: Value,
}

/// A start or stop command (`POST /node/ctl {"node","cmd"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeCommand {
    /// `0`.
    Start,
    /// `1`.
    Stop,
}

/// A node's state, as `GET /node/state?node=` answers it (flat, without the node's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeState {
    /// Init, ready, running or stopped.
    pub running: RunningState,
    /// Connected or not.
    pub link: LinkState,
    /// The last round trip to the device, ms.
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub rtt: Option<i64>,
    /// The node's log level.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub log_level: Option<String>,
    /// How many groups it subscribes to (north apps) or has (south drivers).
    #[serde(default, deserialize_with = "call::lenient::opt_i64")]
    pub sub_group_count: Option<i64>,
}

/// One entry of `GET /node/state`: the node's name and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NamedNodeState {
    /// The node.
    pub node: String,
    /// Its state.
    #[serde(flatten)]
    pub state: NodeState,
}

/// `GET /node/state` without `?node=`: `{"states":[…],"neuron_core":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStates {
    /// Every node's state.
    #[serde(default)]
    pub states: Vec<NamedNodeState>,
    /// The core's own state (its fields are not documented).
    #[serde(default)]
    pub neuron_core: Option<Value>,
}

/// A group of one node (`GET /group?node=`): `{"name","interval","tag_count"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its polling interval, ms.
    pub interval: u64,
    /// How many tags it has.
    #[serde(default)]
    pub tag_count: u64,
}

/// A group of any node (`GET /group` without `?node=`): `{"driver","group","interval","tag_count"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DriverGroup {
    /// The node it belongs to.
    pub driver: String,
    /// Its name.
    pub group: String,
    /// Its polling interval, ms.
    pub interval: u64,
    /// How many tags it has.
    #[serde(default)]
    pub tag_count: u64,
}

#[derive(Deserialize)]
struct GroupsReply<G> {
    groups: Vec<G>,
}

/// A tag's attribute bits: 1 read, 2 write, 4 subscribe, 8 static.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TagAttribute(pub u8);

impl TagAttribute {
    /// Readable.
    pub const READ: TagAttribute = TagAttribute(1);
    /// Writable.
    pub const WRITE: TagAttribute = TagAttribute(2);
    /// Reported on change.
    pub const SUBSCRIBE: TagAttribute = TagAttribute(4);
    /// A static value (the tag needs a `value`).
    pub const STATIC: TagAttribute = TagAttribute(8);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: TagAttribute) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TagAttribute {
    type Output = TagAttribute;

    fn bitor(self, rhs: TagAttribute) -> TagAttribute {
        TagAttribute(self.0 | rhs.0)
    }
}

/// A tag's data type (`include/neuron/type.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataType(pub u8);

impl DataType {
    /// `1`.
    pub const INT8: DataType = DataType(1);
    /// `2`.
    pub const UINT8: DataType = DataType(2);
    /// `3`.
    pub const INT16: DataType = DataType(3);
    /// `4`.
    pub const UINT16: DataType = DataType(4);
    /// `5`.
    pub const INT32: DataType = DataType(5);
    /// `6`.
    pub const UINT32: DataType = DataType(6);
    /// `7`.
    pub const INT64: DataType = DataType(7);
    /// `8`.
    pub const UINT64: DataType = DataType(8);
    /// `9`.
    pub const FLOAT: DataType = DataType(9);
    /// `10`.
    pub const DOUBLE: DataType = DataType(10);
    /// `11`.
    pub const BIT: DataType = DataType(11);
    /// `12`.
    pub const BOOL: DataType = DataType(12);
    /// `13`.
    pub const STRING: DataType = DataType(13);
    /// `14`.
    pub const BYTES: DataType = DataType(14);
}

/// A tag (data point) of a group: `{"name","address","attribute","type","precision","decimal",
/// "bias","description","unit"}`, plus `value` for static tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tag {
    /// Its name, unique in the group.
    pub name: String,
    /// The driver-specific address (`1!400001`).
    #[serde(default)]
    pub address: String,
    /// Read, write, subscribe, static bits.
    pub attribute: TagAttribute,
    /// Its data type.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Decimal places of floats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<i64>,
    /// A factor applied to read values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal: Option<f64>,
    /// An offset added to read values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<f64>,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The value of a static tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Tag {
    /// A tag with the required fields; the others are left out of requests.
    pub fn new(name: impl Into<String>, address: impl Into<String>, attribute: TagAttribute, data_type: DataType) -> Self {
        Tag {
            name: name.into(),
            address: address.into(),
            attribute,
            data_type,
            precision: None,
            decimal: None,
            bias: None,
            description: None,
            unit: None,
            value: None,
        }
    }
}

#[derive(Deserialize)]
struct TagsReply {
    tags: Vec<Tag>,
}

/// One entry of `results` of a tag change: a tag that failed, by index in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TagResult {
    /// The tag's index in the request.
    pub index: u64,
    /// Neuron's error code for it (0 for success).
    pub error: i64,
}

/// The answer of `POST|PUT /tags`: `{"index":N,"error":0}`, plus `results` on partial failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TagsOutcome {
    /// How many tags were processed.
    #[serde(default)]
    pub index: u64,
    /// Per-tag results, when some tags failed.
    #[serde(default)]
    pub results: Vec<TagResult>,
}

impl TagsOutcome {
    /// The tags that failed (non-zero `error`).
    pub fn failures(&self) -> impl Iterator<Item = &TagResult> {
        self.results.iter().filter(|r| r.error != 0)
    }
}

/// `GET /version`: `{"version","revision","build_date"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Version {
    /// `2.15.0`.
    pub version: String,
    /// The source revision.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub revision: Option<String>,
    /// The build date.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub build_date: Option<String>,
}

/// The category of `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricsCategory {
    /// Neuron-wide metrics.
    Global,
    /// Metrics of south drivers.
    Driver,
    /// Metrics of north apps.
    App,
}

impl MetricsCategory {
    fn as_str(self) -> &'static str {
        match self {
            MetricsCategory::Global => "global",
            MetricsCategory::Driver => "driver",
            MetricsCategory::App => "app",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading answers.

/// The JSON of a Neuron answer, once its error forms are ruled out.
fn answer(endpoint: &str, response: &http::Response<Bytes>) -> Result<Option<Value>> {
    let status = response.status();
    let body = response.body();
    let value = serde_json::from_slice::<Value>(body).ok();
    let code = value.as_ref().and_then(|v| int_field(v, "error"));
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        tracing::debug!(endpoint, status = status.as_u16(), code, "neuron refused the credentials");
        return Err(Error::Unauthorized { endpoint: endpoint.to_owned() });
    }
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
            call::html_error(endpoint, status, "Neuron")
        } else {
            call::status_error(endpoint, status, code, body)
        });
    }
    if value.is_none() && call::is_html(response) {
        return Err(call::html_error(endpoint, status, "Neuron"));
    }
    Ok(value)
}

fn parse_json<T: DeserializeOwned>(endpoint: &str, response: &http::Response<Bytes>) -> Result<T> {
    match answer(endpoint, response)? {
        Some(value) => call::from_value(endpoint, value),
        None => Err(call::decode_error(endpoint, "not JSON")),
    }
}

/// `{"error":0}` (or `{}`, or nothing).
fn parse_done(endpoint: &str, response: &http::Response<Bytes>) -> Result<()> {
    match answer(endpoint, response)? {
        Some(_) => Ok(()),
        None if response.body().iter().all(u8::is_ascii_whitespace) => Ok(()),
        None => Err(call::decode_error(endpoint, "not JSON")),
    }
}

fn parse_login(endpoint: &str, response: &http::Response<Bytes>) -> Result<LoginToken> {
    parse_json::<LoginReply>(endpoint, response).map(LoginToken::from)
}

fn parse_nodes(endpoint: &str, response: &http::Response<Bytes>) -> Result<Vec<Node>> {
    parse_json::<NodesReply>(endpoint, response).map(|r| r.nodes)
}

fn parse_groups(endpoint: &str, response: &http::Response<Bytes>) -> Result<Vec<Group>> {
    parse_json::<GroupsReply<Group>>(endpoint, response).map(|r| r.groups)
}

fn parse_driver_groups(endpoint: &str, response: &http::Response<Bytes>) -> Result<Vec<DriverGroup>> {
    parse_json::<GroupsReply<DriverGroup>>(endpoint, response).map(|r| r.groups)
}

fn parse_tags(endpoint: &str, response: &http::Response<Bytes>) -> Result<Vec<Tag>> {
    parse_json::<TagsReply>(endpoint, response).map(|r| r.tags)
}

fn parse_tags_outcome(endpoint: &str, response: &http::Response<Bytes>) -> Result<TagsOutcome> {
    // A non-zero top-level `error` is an error; its `index` tells how many tags went through.
    let status = response.status();
    if let Ok(value) = serde_json::from_slice::<Value>(response.body())
        && let Some(code) = int_field(&value, "error").filter(|c| *c != 0)
        && !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    {
        let kept = int_field(&value, "index").unwrap_or(0);
        let what = error_text(code).unwrap_or("refused");
        return Err(Error::Api {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: Some(code),
            message: Some(format!("{what} (the {kept} tag(s) before the refused one were applied)")),
        });
    }
    parse_json(endpoint, response)
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

/// Builds Neuron's requests, without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeuronApi {
    prefix: String,
    proxied: bool,
}

impl Default for NeuronApi {
    fn default() -> Self {
        NeuronApi { prefix: DEFAULT_PREFIX.to_owned(), proxied: false }
    }
}

#[derive(Serialize)]
struct NodeBody<'a> {
    name: &'a str,
    plugin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a Value>,
}

#[derive(Serialize)]
struct GroupBody<'a> {
    node: &'a str,
    group: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
}

#[derive(Serialize)]
struct TagsBody<'a, T> {
    node: &'a str,
    group: &'a str,
    tags: &'a [T],
}

impl NeuronApi {
    /// Standalone Neuron (`/api/v2`).
    pub fn new() -> Self {
        NeuronApi::default()
    }

    /// Neuron under another path (`/api/neuron` behind NeuronEX, or a reverse proxy). Every call
    /// then carries credentials, as a proxy checks them on every path.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) unless `prefix` is empty or `/`-separated segments of
    /// letters, digits, `-`, `.`, `_`, `~`.
    pub fn with_prefix(prefix: &str) -> Result<Self> {
        call::check_prefix(prefix)?;
        Ok(NeuronApi { prefix: prefix.to_owned(), proxied: prefix != DEFAULT_PREFIX })
    }

    /// Neuron behind a proxy at a fixed, valid `prefix`.
    pub(crate) fn proxied(prefix: &'static str) -> Self {
        NeuronApi { prefix: prefix.to_owned(), proxied: true }
    }

    /// The path prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn uri(&self, path: &str) -> Uri {
        Uri::new(&self.prefix, path)
    }

    fn call<T>(&self, method: Method, uri: Uri, body: Body, parse: call::Parser<T>) -> Result<ApiCall<T>> {
        ApiCall::new(method, uri, body, true, parse)
    }

    /// `POST /login {"name","pass"}` → `{"token"}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty user name.
    pub fn login(&self, username: &str, password: &SecretString) -> Result<ApiCall<LoginToken>> {
        call::check_name("username", username)?;
        let body = Body::json(&serde_json::json!({ "name": username, "pass": password.expose_secret() }))?;
        ApiCall::new(Method::POST, self.uri("/login"), body, false, parse_login)
    }

    /// `POST /ping` → `{}` (no token needed on standalone Neuron).
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn ping(&self) -> Result<ApiCall<()>> {
        ApiCall::new(Method::POST, self.uri("/ping"), Body::NONE, self.proxied, parse_done)
    }

    /// `GET /version` → `{"version","revision","build_date"}`.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn version(&self) -> Result<ApiCall<Version>> {
        self.call(Method::GET, self.uri("/version"), Body::NONE, parse_json::<Version>)
    }

    /// `GET /node?type=1|2[&plugin&node&group&state&link]` → `{"nodes":[…]}`.
    ///
    /// # Errors
    /// None in practice (filters are percent-encoded).
    pub fn nodes(&self, node_type: NodeType, filter: &NodeFilter) -> Result<ApiCall<Vec<Node>>> {
        let uri = self
            .uri("/node")
            .query("type", &node_type.code().to_string())
            .query_opt("plugin", filter.plugin.as_deref())
            .query_opt("node", filter.node.as_deref())
            .query_opt("group", filter.group.as_deref())
            .query_opt("state", filter.state.map(|s| i64::from(s).to_string()).as_deref())
            .query_opt("link", filter.link.map(|l| i64::from(l).to_string()).as_deref());
        self.call(Method::GET, uri, Body::NONE, parse_nodes)
    }

    /// `POST /node {"name","plugin","params"?}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty name or plugin.
    pub fn add_node(&self, name: &str, plugin: &str, params: Option<&Value>) -> Result<ApiCall<()>> {
        call::check_name("name", name)?;
        call::check_name("plugin", plugin)?;
        self.call(Method::POST, self.uri("/node"), Body::json(&NodeBody { name, plugin, params })?, parse_done)
    }

    /// `DELETE /node {"name"}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty name.
    pub fn delete_node(&self, name: &str) -> Result<ApiCall<()>> {
        call::check_name("name", name)?;
        self.call(Method::DELETE, self.uri("/node"), Body::json(&serde_json::json!({ "name": name }))?, parse_done)
    }

    /// `GET /node/setting?node=` → `{"node","params"}` (`{"error":2005}` under HTTP 200 when the
    /// node has no settings yet).
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node name.
    pub fn node_setting(&self, node: &str) -> Result<ApiCall<NodeSetting>> {
        call::check_name("node", node)?;
        self.call(Method::GET, self.uri("/node/setting").query("node", node), Body::NONE, parse_json::<NodeSetting>)
    }

    /// `POST /node/setting {"node","params"}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node name.
    pub fn set_node_setting(&self, node: &str, params: &Value) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        let body = Body::json(&serde_json::json!({ "node": node, "params": params }))?;
        self.call(Method::POST, self.uri("/node/setting"), body, parse_done)
    }

    /// `POST /node/ctl {"node","cmd"}` (0 start, 1 stop) → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node name.
    pub fn node_ctl(&self, node: &str, command: NodeCommand) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        let cmd = match command {
            NodeCommand::Start => 0,
            NodeCommand::Stop => 1,
        };
        self.call(Method::POST, self.uri("/node/ctl"), Body::json(&serde_json::json!({ "node": node, "cmd": cmd }))?, parse_done)
    }

    /// `GET /node/state` → `{"states":[{"node",…}],"neuron_core":{…}}`.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn node_states(&self) -> Result<ApiCall<NodeStates>> {
        self.call(Method::GET, self.uri("/node/state"), Body::NONE, parse_json::<NodeStates>)
    }

    /// `GET /node/state?node=` → a flat `{"running","link","rtt",…}` without the name.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node name.
    pub fn node_state(&self, node: &str) -> Result<ApiCall<NodeState>> {
        call::check_name("node", node)?;
        self.call(Method::GET, self.uri("/node/state").query("node", node), Body::NONE, parse_json::<NodeState>)
    }

    /// `GET /group?node=` → `{"groups":[{"name","interval","tag_count"}]}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node name.
    pub fn groups(&self, node: &str) -> Result<ApiCall<Vec<Group>>> {
        call::check_name("node", node)?;
        self.call(Method::GET, self.uri("/group").query("node", node), Body::NONE, parse_groups)
    }

    /// `GET /group` → `{"groups":[{"driver","group","interval","tag_count"}]}`, every node's.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn all_groups(&self) -> Result<ApiCall<Vec<DriverGroup>>> {
        self.call(Method::GET, self.uri("/group"), Body::NONE, parse_driver_groups)
    }

    /// `POST /group {"node","group","interval"}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node or group name.
    pub fn add_group(&self, node: &str, group: &str, interval_ms: u64) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        let body = Body::json(&GroupBody { node, group, new_name: None, interval: Some(interval_ms) })?;
        self.call(Method::POST, self.uri("/group"), body, parse_done)
    }

    /// `PUT /group {"node","group","new_name"?,"interval"?}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node, group or new name.
    pub fn update_group(&self, node: &str, group: &str, new_name: Option<&str>, interval_ms: Option<u64>) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        if let Some(n) = new_name {
            call::check_name("new_name", n)?;
        }
        let body = Body::json(&GroupBody { node, group, new_name, interval: interval_ms })?;
        self.call(Method::PUT, self.uri("/group"), body, parse_done)
    }

    /// `DELETE /group {"node","group"}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node or group name.
    pub fn delete_group(&self, node: &str, group: &str) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        let body = Body::json(&GroupBody { node, group, new_name: None, interval: None })?;
        self.call(Method::DELETE, self.uri("/group"), body, parse_done)
    }

    /// `GET /tags?node=&group=[&name=]` → `{"tags":[…]}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node or group name.
    pub fn tags(&self, node: &str, group: &str, name: Option<&str>) -> Result<ApiCall<Vec<Tag>>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        let uri = self.uri("/tags").query("node", node).query("group", group).query_opt("name", name);
        self.call(Method::GET, uri, Body::NONE, parse_tags)
    }

    /// `POST /tags {"node","group","tags":[…]}` → `{"index","error"}` (Neuron creates a missing
    /// group).
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node or group name.
    pub fn add_tags(&self, node: &str, group: &str, tags: &[Tag]) -> Result<ApiCall<TagsOutcome>> {
        self.tags_change(Method::POST, node, group, tags)
    }

    /// `PUT /tags`, the same body as [`add_tags`](Self::add_tags).
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node or group name.
    pub fn update_tags(&self, node: &str, group: &str, tags: &[Tag]) -> Result<ApiCall<TagsOutcome>> {
        self.tags_change(Method::PUT, node, group, tags)
    }

    fn tags_change(&self, method: Method, node: &str, group: &str, tags: &[Tag]) -> Result<ApiCall<TagsOutcome>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        self.call(method, self.uri("/tags"), Body::json(&TagsBody { node, group, tags })?, parse_tags_outcome)
    }

    /// `DELETE /tags {"node","group","tags":["t1"]}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node or group name.
    pub fn delete_tags<S: AsRef<str> + Serialize>(&self, node: &str, group: &str, names: &[S]) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        self.call(Method::DELETE, self.uri("/tags"), Body::json(&TagsBody { node, group, tags: names })?, parse_done)
    }

    /// `POST /write {"node","group","tag","value"}` → `{"error":0}` (400 `{"error":3002}` while the
    /// device is down).
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty node, group or tag name.
    pub fn write_tag(&self, node: &str, group: &str, tag: &str, value: &Value) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        call::check_name("tag", tag)?;
        let body = Body::json(&serde_json::json!({ "node": node, "group": group, "tag": tag, "value": value }))?;
        self.call(Method::POST, self.uri("/write"), body, parse_done)
    }

    /// `GET /metrics[?category=&node=]` → Prometheus text (no token needed on standalone Neuron).
    ///
    /// # Errors
    /// None in practice (the query is percent-encoded).
    pub fn metrics(&self, category: Option<MetricsCategory>, node: Option<&str>) -> Result<ApiCall<String>> {
        let uri = self.uri("/metrics").query_opt("category", category.map(MetricsCategory::as_str)).query_opt("node", node);
        ApiCall::new(Method::GET, uri, Body::Empty(TEXT), self.proxied, parse_text)
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

/// A client of one Neuron: [`NeuronApi`]'s calls sent over a transport, with login, a cached
/// token, and one renewal when Neuron says the token expired. Cheap to clone; clones share the
/// token.
#[derive(Clone)]
pub struct NeuronClient {
    session: Arc<Session>,
    api: NeuronApi,
}

impl fmt::Debug for NeuronClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NeuronClient").field("session", &self.session).field("prefix", &self.api.prefix).finish()
    }
}

impl NeuronClient {
    /// A client of standalone Neuron (`/api/v2`). `Credentials::Basic` logs in with
    /// `{"name","pass"}` when a token is first needed; `Credentials::Token` is sent as a fixed
    /// `Bearer` token; `Credentials::None` suits `--disable_auth`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) when a token holds characters not allowed in a header.
    pub fn new(transport: Arc<dyn EdgeTransport>, credentials: Credentials) -> Result<Self> {
        let auth = Auth::login_or_bearer(&credentials, |u, p| NeuronApi::default().login(u, p))?;
        Ok(NeuronClient { session: Arc::new(Session::new(transport, auth, token_refused)), api: NeuronApi::default() })
    }

    pub(crate) fn from_session(session: Arc<Session>, api: NeuronApi) -> Self {
        NeuronClient { session, api }
    }

    /// The request builder this client uses.
    pub fn api(&self) -> &NeuronApi {
        &self.api
    }

    /// Sends any call built by [`api`](Self::api), with credentials.
    ///
    /// # Errors
    /// What the call's parser says, [`Error::Unauthorized`] when the credentials are refused
    /// (after one renewal), and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }

    /// Logs in now (again, if a token is cached); does nothing without a login.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] for bad credentials, the transport's errors.
    pub async fn login(&self) -> Result<()> {
        self.session.login().await
    }

    /// Whether Neuron answers (`POST /ping`, no token needed): the cheapest health probe.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn ping(&self) -> Result<()> {
        self.execute(self.api.ping()?).await
    }

    /// Neuron's version; also a health probe that checks the credentials.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn version(&self) -> Result<Version> {
        self.execute(self.api.version()?).await
    }

    /// The nodes of one type, filtered.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn nodes(&self, node_type: NodeType, filter: &NodeFilter) -> Result<Vec<Node>> {
        self.execute(self.api.nodes(node_type, filter)?).await
    }

    /// Every south driver.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn drivers(&self) -> Result<Vec<Node>> {
        self.nodes(NodeType::Driver, &NodeFilter::default()).await
    }

    /// Every north app.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn apps(&self) -> Result<Vec<Node>> {
        self.nodes(NodeType::App, &NodeFilter::default()).await
    }

    /// Adds a node (409 `2002` if it exists, 404 `2301` if the plugin is missing).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn add_node(&self, name: &str, plugin: &str, params: Option<&Value>) -> Result<()> {
        self.execute(self.api.add_node(name, plugin, params)?).await
    }

    /// Deletes a node.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn delete_node(&self, name: &str) -> Result<()> {
        self.execute(self.api.delete_node(name)?).await
    }

    /// A node's settings.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); `2005` (under HTTP 200) when it has none.
    pub async fn node_setting(&self, node: &str) -> Result<NodeSetting> {
        self.execute(self.api.node_setting(node)?).await
    }

    /// Sets a node's settings.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn set_node_setting(&self, node: &str, params: &Value) -> Result<()> {
        self.execute(self.api.set_node_setting(node, params)?).await
    }

    /// Starts or stops a node.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn node_ctl(&self, node: &str, command: NodeCommand) -> Result<()> {
        self.execute(self.api.node_ctl(node, command)?).await
    }

    /// Every node's state.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn node_states(&self) -> Result<NodeStates> {
        self.execute(self.api.node_states()?).await
    }

    /// One node's state.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn node_state(&self, node: &str) -> Result<NodeState> {
        self.execute(self.api.node_state(node)?).await
    }

    /// The groups of one node.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn groups(&self, node: &str) -> Result<Vec<Group>> {
        self.execute(self.api.groups(node)?).await
    }

    /// Every node's groups.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn all_groups(&self) -> Result<Vec<DriverGroup>> {
        self.execute(self.api.all_groups()?).await
    }

    /// Adds a group.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn add_group(&self, node: &str, group: &str, interval_ms: u64) -> Result<()> {
        self.execute(self.api.add_group(node, group, interval_ms)?).await
    }

    /// Renames a group or changes its interval.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn update_group(&self, node: &str, group: &str, new_name: Option<&str>, interval_ms: Option<u64>) -> Result<()> {
        self.execute(self.api.update_group(node, group, new_name, interval_ms)?).await
    }

    /// Deletes a group.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn delete_group(&self, node: &str, group: &str) -> Result<()> {
        self.execute(self.api.delete_group(node, group)?).await
    }

    /// The tags of a group (optionally only those whose name matches).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn tags(&self, node: &str, group: &str, name: Option<&str>) -> Result<Vec<Tag>> {
        self.execute(self.api.tags(node, group, name)?).await
    }

    /// Adds tags. A batch refused part way is an error whose message says how many tags before the
    /// refused one were kept; per-tag failures Neuron reports with success are in
    /// [`TagsOutcome::results`].
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn add_tags(&self, node: &str, group: &str, tags: &[Tag]) -> Result<TagsOutcome> {
        self.execute(self.api.add_tags(node, group, tags)?).await
    }

    /// Updates tags, as [`add_tags`](Self::add_tags).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn update_tags(&self, node: &str, group: &str, tags: &[Tag]) -> Result<TagsOutcome> {
        self.execute(self.api.update_tags(node, group, tags)?).await
    }

    /// Deletes tags by name.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn delete_tags<S: AsRef<str> + Serialize>(&self, node: &str, group: &str, names: &[S]) -> Result<()> {
        self.execute(self.api.delete_tags(node, group, names)?).await
    }

    /// Writes a tag's value.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); code 3002 (HTTP 400) while the device is down.
    pub async fn write_tag(&self, node: &str, group: &str, tag: &str, value: &Value) -> Result<()> {
        self.execute(self.api.write_tag(node, group, tag, value)?).await
    }

    /// The Prometheus text of `/metrics` (lenient parsers advised: Neuron repeats family headers).
    ///
    /// # Errors
    /// As [`execute`](Self::execute); 400 for a bad category.
    pub async fn metrics(&self, category: Option<MetricsCategory>, node: Option<&str>) -> Result<String> {
        self.execute(self.api.metrics(category, node)?).await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::api::testing::{ParseFn, arb_body, arb_json, parsers, response, shaped};

    fn all_parsers() -> Vec<ParseFn> {
        let api = NeuronApi::new();
        let secret = SecretString::from("p");
        let tags = [Tag::new("t", "1!400001", TagAttribute::READ, DataType::UINT16)];
        parsers![
            api.login("admin", &secret),
            api.ping(),
            api.version(),
            api.nodes(NodeType::Driver, &NodeFilter::default()),
            api.add_node("n", "p", None),
            api.node_setting("n"),
            api.node_states(),
            api.node_state("n"),
            api.groups("n"),
            api.all_groups(),
            api.tags("n", "g", None),
            api.add_tags("n", "g", &tags),
            api.delete_tags("n", "g", &["t"]),
            api.metrics(None, None),
        ]
    }

    fn ok(body: &str) -> http::Response<Bytes> {
        response(200, Some("application/json"), body.as_bytes())
    }

    #[test]
    fn errors_under_200_are_errors() {
        let api = NeuronApi::new();
        let err = api.node_setting("m1").unwrap().parse(&ok(r#"{"error":2005}"#)).unwrap_err();
        assert!(matches!(err, Error::Api { status: 200, code: Some(2005), .. }), "{err:?}");
        let err = api.add_node("m1", "Modbus TCP", None).unwrap().parse(&ok(r#"{"error":3002}"#)).unwrap_err();
        assert!(matches!(err, Error::Api { status: 200, code: Some(3002), .. }));
        api.add_node("m1", "Modbus TCP", None).unwrap().parse(&ok(r#"{"error":0}"#)).unwrap();
    }

    #[test]
    fn partial_tag_batches() {
        let api = NeuronApi::new();
        let call = api.add_tags("n", "g", &[]).unwrap();
        let err = call.parse(&response(400, Some("application/json"), br#"{"index":2,"error":2205}"#)).unwrap_err();
        let Error::Api { status: 400, code: Some(2205), message: Some(m), .. } = err else { panic!("{err:?}") };
        assert!(m.contains("the 2 tag(s)"), "{m}");
        let out = call.parse(&ok(r#"{"index":3,"error":0,"results":[{"index":1,"error":2202}]}"#)).unwrap();
        assert_eq!(out.index, 3);
        assert_eq!(out.failures().map(|r| r.index).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn states_and_groups_have_two_shapes() {
        let api = NeuronApi::new();
        let one = api
            .node_state("m1")
            .unwrap()
            .parse(&ok(r#"{"running":3,"link":1,"rtt":100,"log_level":"notice","sub_group_count":1}"#))
            .unwrap();
        assert_eq!((one.running, one.link, one.rtt), (RunningState::Running, LinkState::Connected, Some(100)));
        let all = api
            .node_states()
            .unwrap()
            .parse(&ok(
                r#"{"states":[{"node":"m1","running":9,"link":0,"rtt":0,"log_level":"notice","sub_group_count":1}],"neuron_core":{}}"#,
            ))
            .unwrap();
        assert_eq!(all.states[0].node, "m1");
        assert_eq!(all.states[0].state.running, RunningState::Other(9));
        let g = api.groups("m1").unwrap().parse(&ok(r#"{"groups":[{"name":"g1","interval":1000,"tag_count":2}]}"#)).unwrap();
        assert_eq!(g[0].name, "g1");
        let g = api.all_groups().unwrap().parse(&ok(r#"{"groups":[{"driver":"m1","group":"g1","interval":1000,"tag_count":2}]}"#)).unwrap();
        assert_eq!((g[0].driver.as_str(), g[0].group.as_str()), ("m1", "g1"));
    }

    #[test]
    fn html_and_auth_answers() {
        let api = NeuronApi::new();
        let html = response(404, Some("text/html"), b"<html><body>404 Not Found</body></html>");
        let err = api.version().unwrap().parse(&html).unwrap_err();
        assert!(err.to_string().contains("HTML page"), "{err}");
        let html200 = response(200, None, b"<!DOCTYPE html><html></html>");
        assert!(api.ping().unwrap().parse(&html200).unwrap_err().to_string().contains("HTML"));
        let expired = response(403, Some("application/json"), br#"{"error":1006}"#);
        assert!(token_refused(&expired));
        assert!(matches!(api.version().unwrap().parse(&expired), Err(Error::Unauthorized { .. })));
        assert!(!token_refused(&response(401, Some("application/json"), br#"{"error":1009}"#)));
        assert!(token_refused(&response(401, Some("application/json"), br#"{"error":1005}"#)));
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(status in 100u16..600, ct in proptest::option::of("[a-z/;= -]{0,30}"), body in arb_body()) {
            let r = response(status, ct.as_deref(), &body);
            for p in all_parsers() { p(&r); }
            let _ = token_refused(&r);
        }

        #[test]
        fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(400), Just(401), Just(403), Just(404), Just(500)], value in shaped(arb_json(), &["nodes", "groups", "tags", "states", "error", "index", "results", "token"])) {
            let r = response(status, Some("application/json"), value.to_string().as_bytes());
            for p in all_parsers() { p(&r); }
        }
    }
}
