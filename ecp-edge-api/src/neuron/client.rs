//! The client of one neuron service: the requests sent over a transport, with authentication.

use std::fmt;
use std::sync::Arc;

use crate::service::Credentials;
use serde::Serialize;
use serde_json::Value;

use super::*;
use crate::call::ApiCall;
use crate::error::Result;
use crate::session::{Auth, Session};
use crate::transport::EdgeTransport;

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
        f.debug_struct("NeuronClient").field("session", &self.session).field("prefix", &self.api.prefix()).finish()
    }
}

impl NeuronClient {
    /// A client of standalone Neuron (`/api/v2`). `Credentials::Basic` logs in with
    /// `{"name","pass"}` when a token is first needed; `Credentials::Token` is sent as a fixed
    /// `Bearer` token; `Credentials::None` suits `--disable_auth`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) when a token holds characters not allowed in a header.
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
    /// What the call's parser says, [`Error::Unauthorized`](crate::Error::Unauthorized) when the credentials are refused
    /// (after one renewal), and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }

    /// Logs in now (again, if a token is cached); does nothing without a login.
    ///
    /// # Errors
    /// [`Error::Unauthorized`](crate::Error::Unauthorized) for bad credentials, the transport's errors.
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
