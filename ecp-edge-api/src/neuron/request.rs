//! Building neuron's requests and reading their answers, without I/O.

use bytes::Bytes;
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::call::{self, ApiCall, Body, TEXT, Uri, int_field};
use crate::error::{Error, Result};
use crate::session::{LoginReply, LoginToken};

/// The JSON of a Neuron answer, once its error forms are ruled out.
pub(super) fn answer(endpoint: &str, response: &http::Response<Bytes>) -> Result<Option<Value>> {
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
            product: Some(EdgeKind::Neuron),
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: Some(code),
            message: error_text(code).map(str::to_owned),
        });
    }
    if !status.is_success() {
        return Err(if call::is_html(response) {
            call::html_error(endpoint, status, Some(EdgeKind::Neuron))
        } else {
            call::status_error(endpoint, status, Some(EdgeKind::Neuron), code, body)
        });
    }
    if value.is_none() && call::is_html(response) {
        return Err(call::html_error(endpoint, status, Some(EdgeKind::Neuron)));
    }
    Ok(value)
}

pub(super) fn parse_json<T: DeserializeOwned>(endpoint: &str, response: &http::Response<Bytes>) -> Result<T> {
    match answer(endpoint, response)? {
        Some(value) => call::from_value(endpoint, value),
        None => Err(call::decode_error(endpoint, "not JSON")),
    }
}

/// `{"error":0}` (or `{}`, or nothing).
pub(super) fn parse_done(endpoint: &str, response: &http::Response<Bytes>) -> Result<()> {
    match answer(endpoint, response)? {
        Some(_) => Ok(()),
        None if response.body().iter().all(u8::is_ascii_whitespace) => Ok(()),
        None => Err(call::decode_error(endpoint, "not JSON")),
    }
}

pub(super) fn parse_login(endpoint: &str, response: &http::Response<Bytes>) -> Result<LoginToken> {
    parse_json::<LoginReply>(endpoint, response).map(LoginToken::from)
}

pub(super) fn parse_nodes(endpoint: &str, response: &http::Response<Bytes>) -> Result<Vec<Node>> {
    parse_json::<NodesReply>(endpoint, response).map(|r| r.nodes)
}

pub(super) fn parse_groups(endpoint: &str, response: &http::Response<Bytes>) -> Result<Vec<Group>> {
    parse_json::<GroupsReply<Group>>(endpoint, response).map(|r| r.groups)
}

pub(super) fn parse_driver_groups(endpoint: &str, response: &http::Response<Bytes>) -> Result<Vec<DriverGroup>> {
    parse_json::<GroupsReply<DriverGroup>>(endpoint, response).map(|r| r.groups)
}

pub(super) fn parse_tags(endpoint: &str, response: &http::Response<Bytes>) -> Result<Vec<Tag>> {
    parse_json::<TagsReply>(endpoint, response).map(|r| r.tags)
}

pub(super) fn parse_tags_outcome(endpoint: &str, response: &http::Response<Bytes>) -> Result<TagsOutcome> {
    // A non-zero top-level `error` is an error; its `index` tells how many tags went through.
    let status = response.status();
    if let Ok(value) = serde_json::from_slice::<Value>(response.body())
        && let Some(code) = int_field(&value, "error").filter(|c| *c != 0)
        && !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    {
        let what = error_text(code).unwrap_or("refused");
        // Only a refused tag (22xx) leaves the tags before it applied; a missing node, a bad body
        // or a refused group stops the whole batch.
        let message = match int_field(&value, "index") {
            Some(kept) if codes::is_tag_error(code) => format!("{what} (the {kept} tag(s) before the refused one were applied)"),
            None if codes::is_tag_error(code) => format!("{what} (tags before the refused one may have been applied)"),
            _ => format!("{what}: no tag was applied"),
        };
        return Err(Error::Api {
            product: Some(EdgeKind::Neuron),
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code: Some(code),
            message: Some(message),
        });
    }
    parse_json(endpoint, response)
}

pub(super) fn parse_text(endpoint: &str, response: &http::Response<Bytes>) -> Result<String> {
    let status = response.status();
    if !status.is_success() {
        return Err(answer(endpoint, response)
            .err()
            .unwrap_or_else(|| call::status_error(endpoint, status, Some(EdgeKind::Neuron), None, response.body())));
    }
    call::text(endpoint, response.body())
}

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
pub(super) struct NodeBody<'a> {
    name: &'a str,
    plugin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a Value>,
}

#[derive(Serialize)]
pub(super) struct GroupBody<'a> {
    node: &'a str,
    group: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u64>,
}

#[derive(Serialize)]
pub(super) struct TagsBody<'a, T> {
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) unless `prefix` is empty or `/`-separated segments of
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty user name.
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty name or plugin.
    pub fn add_node(&self, name: &str, plugin: &str, params: Option<&Value>) -> Result<ApiCall<()>> {
        call::check_name("name", name)?;
        call::check_name("plugin", plugin)?;
        self.call(Method::POST, self.uri("/node"), Body::json(&NodeBody { name, plugin, params })?, parse_done)
    }

    /// `DELETE /node {"name"}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty name.
    pub fn delete_node(&self, name: &str) -> Result<ApiCall<()>> {
        call::check_name("name", name)?;
        self.call(Method::DELETE, self.uri("/node"), Body::json(&serde_json::json!({ "name": name }))?, parse_done)
    }

    /// `GET /node/setting?node=` → `{"node","params"}` (`{"error":2005}` under HTTP 200 when the
    /// node has no settings yet).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node name.
    pub fn node_setting(&self, node: &str) -> Result<ApiCall<NodeSetting>> {
        call::check_name("node", node)?;
        self.call(Method::GET, self.uri("/node/setting").query("node", node), Body::NONE, parse_json::<NodeSetting>)
    }

    /// `POST /node/setting {"node","params"}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node name.
    pub fn set_node_setting(&self, node: &str, params: &Value) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        let body = Body::json(&serde_json::json!({ "node": node, "params": params }))?;
        self.call(Method::POST, self.uri("/node/setting"), body, parse_done)
    }

    /// `POST /node/ctl {"node","cmd"}` (0 start, 1 stop) → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node name.
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node name.
    pub fn node_state(&self, node: &str) -> Result<ApiCall<NodeState>> {
        call::check_name("node", node)?;
        self.call(Method::GET, self.uri("/node/state").query("node", node), Body::NONE, parse_json::<NodeState>)
    }

    /// `GET /group?node=` → `{"groups":[{"name","interval","tag_count"}]}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node name.
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node or group name.
    pub fn add_group(&self, node: &str, group: &str, interval_ms: u64) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        let body = Body::json(&GroupBody { node, group, new_name: None, interval: Some(interval_ms) })?;
        self.call(Method::POST, self.uri("/group"), body, parse_done)
    }

    /// `PUT /group {"node","group","new_name"?,"interval"?}` → `{"error":0}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node, group or new name.
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node or group name.
    pub fn delete_group(&self, node: &str, group: &str) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        let body = Body::json(&GroupBody { node, group, new_name: None, interval: None })?;
        self.call(Method::DELETE, self.uri("/group"), body, parse_done)
    }

    /// `GET /tags?node=&group=[&name=]` → `{"tags":[…]}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node or group name.
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node or group name.
    pub fn add_tags(&self, node: &str, group: &str, tags: &[Tag]) -> Result<ApiCall<TagsOutcome>> {
        self.tags_change(Method::POST, node, group, tags)
    }

    /// `PUT /tags`, the same body as [`add_tags`](Self::add_tags).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node or group name.
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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node or group name.
    pub fn delete_tags<S: AsRef<str> + Serialize>(&self, node: &str, group: &str, names: &[S]) -> Result<ApiCall<()>> {
        call::check_name("node", node)?;
        call::check_name("group", group)?;
        self.call(Method::DELETE, self.uri("/tags"), Body::json(&TagsBody { node, group, tags: names })?, parse_done)
    }

    /// `POST /write {"node","group","tag","value"}` → `{"error":0}` (400 `{"error":3002}` while the
    /// device is down).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an empty node, group or tag name.
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
