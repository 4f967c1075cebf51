//! The `existing` backend (feature `existing`): running EMQX 5 clusters onboarded by their REST
//! API, which the platform reads but does not run.
//!
//! [`ExistingDriver::verify`] is the onboarding check: `/status`, `/api/v5/nodes` and
//! `/api/v5/license` with the API key. [`ClusterDriver::state`] reads `/status` and
//! `/api/v5/nodes`:
//!
//! | what the cluster answers | `state` |
//! |---|---|
//! | every node `running` | `Ok`, `Running` |
//! | some node not running (stopped nodes carry only `node`, `node_status`, `role`) | `Ok`, `Error` naming the nodes and their status |
//! | `/status` 503 (not ready; `retry-after`) | `Ok`, `Error("not ready ...")` |
//! | no node at all | `Ok`, `Error("no nodes")` |
//! | unreachable, timeout | `Err(Transport)` (retryable) |
//! | key refused (401/403) | `Err(Unauthorized)` |
//! | not EMQX 5 (no `/status` report, `/api/v5/nodes` 404, a node of another major version) | `Err(Incompatible)` |
//! | another error answer, a body too large or of the wrong shape | `Err(Api)`, `Err(TooLarge)`, `Err(Decode)` |
//!
//! So a state is what the cluster itself reports, and an `Err` is that the platform could not
//! get a report: [`ProjectClusters::refresh`](crate::ProjectClusters::refresh) records an `Err` as status
//! `error` with the error as its cause, and registering a cluster whose check fails is refused.
//!
//! Creating, scaling, resizing, networking, upgrading, stopping, starting and deleting are
//! `Unsupported`: an onboarded cluster is registered and deregistered, not run.

use std::fmt;

use async_trait::async_trait;
use futures::Stream;

use crate::driver::{ClusterApi, ClusterDriver, ClusterRef};
use crate::emqx::{
    Alarm, ClientInfo, ClientOptions, ClientQuery, EmqxClient, License, LicenseSetting, ListenerInfo, Metrics, MonitorCurrent, Node,
    NodeHealth, Page, PageRequest, Stats, StatusReport, request,
};
use crate::error::{Error, Result};
use crate::model::{ClusterBackend, ClusterState, ClusterStatus, NodeSummary, ReplicaCount};

/// The driver of onboarded EMQX 5 clusters. Cheap to clone; one HTTP connection pool serves every
/// cluster.
#[derive(Clone)]
pub struct ExistingDriver {
    http: reqwest::Client,
    options: ClientOptions,
}

impl fmt::Debug for ExistingDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExistingDriver").field("options", &self.options).finish_non_exhaustive()
    }
}

/// What the onboarding check found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClusterInfo {
    /// The `/status` report of the node that answered.
    pub status: StatusReport,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The license (Enterprise), `None` on open source.
    pub license: Option<License>,
}

impl ClusterInfo {
    /// The EMQX version of the first running node that gives one.
    pub fn version(&self) -> Option<&str> {
        self.nodes.iter().filter(|n| n.is_running()).find_map(|n| n.version.as_deref())
    }

    /// `Opensource` or `Enterprise`, from the first node that says.
    pub fn edition(&self) -> Option<&str> {
        self.nodes.iter().find_map(|n| n.edition.as_deref())
    }

    /// The cluster's state from its nodes.
    pub fn state(&self) -> ClusterState {
        state_of(&self.nodes)
    }
}

/// `/status` and `/api/v5/nodes` of a cluster.
enum Probe {
    NotReady(String),
    Ready(StatusReport, Vec<Node>),
}

impl Default for ExistingDriver {
    fn default() -> Self {
        // Options are valid once built: building fails only where no TLS backend can be set
        // up, where reqwest's own `Client::default()` (the fallback this had) panics as well.
        Self::new(ClientOptions::default()).expect("the default client options are valid")
    }
}

impl ExistingDriver {
    /// A driver whose requests use `options`.
    ///
    /// # Errors
    /// `Backend` if the HTTP client cannot be set up.
    pub fn new(options: ClientOptions) -> Result<Self> {
        Ok(Self { http: options.http_client()?, options })
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// A REST client of the cluster at `api`, sharing the driver's connection pool.
    ///
    /// # Errors
    /// `InvalidInput` for a bad base URL.
    pub fn client(&self, api: &ClusterApi) -> Result<EmqxClient> {
        EmqxClient::with_http(api, self.http.clone(), &self.options)
    }

    /// The handle of an onboarded cluster, to read it.
    ///
    /// # Errors
    /// `InvalidInput` when `cluster` has no REST API or a bad base URL.
    pub fn cluster(&self, cluster: &ClusterRef) -> Result<ExistingCluster> {
        let api =
            cluster.api.as_ref().ok_or_else(|| Error::invalid("api", "an existing cluster is reached by its REST API, and none is set"))?;
        Ok(ExistingCluster { name: cluster.name.clone(), client: self.client(api)? })
    }

    /// The onboarding check: the cluster answers `/status` as EMQX does and is ready, the key reads
    /// `/api/v5/nodes` (every node of EMQX 5), and `/api/v5/license` (404 on open source).
    ///
    /// # Errors
    /// `Unauthorized` for a refused key; `Incompatible` for a server that is not EMQX 5; `Api`
    /// with status 503 (retryable) for a cluster not ready; `Transport`, `TooLarge`, `Decode`,
    /// `Api` as the client.
    pub async fn verify(&self, api: &ClusterApi) -> Result<ClusterInfo> {
        let client = self.client(api)?;
        match probe(&client).await? {
            Probe::NotReady(why) => {
                Err(Error::Api { endpoint: request::status(true).endpoint(), status: 503, code: None, message: Some(why) })
            }
            Probe::Ready(status, nodes) => Ok(ClusterInfo { status, nodes, license: client.license().await? }),
        }
    }
}

async fn probe(client: &EmqxClient) -> Result<Probe> {
    let status_req = request::status(true);
    let report = match client.status().await {
        Ok(NodeHealth::Ready(report)) => report,
        Ok(NodeHealth::NotReady { retry_after, report }) => {
            let node = report.map(|r| format!(" ({} is {}, emqx is {})", r.node_name, r.broker_status, r.app_status)).unwrap_or_default();
            let retry = retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default();
            return Ok(Probe::NotReady(format!("not ready: /status answered 503{node}{retry}")));
        }
        Err(Error::Decode { .. }) => {
            return Err(Error::Incompatible { endpoint: status_req.endpoint(), reason: "the answer is not an EMQX status report".into() });
        }
        Err(e) if e.is_not_found() => {
            return Err(Error::Incompatible { endpoint: status_req.endpoint(), reason: "no /status: not an EMQX node".into() });
        }
        Err(e) => return Err(e),
    };
    let nodes = match client.nodes().await {
        Ok(nodes) => nodes,
        Err(e) if e.is_not_found() => {
            return Err(Error::Incompatible { endpoint: request::nodes().endpoint(), reason: "no /api/v5: not EMQX 5".into() });
        }
        Err(e) => return Err(e),
    };
    if let Some(n) = nodes.iter().find(|n| n.version.as_deref().is_some_and(|v| !v.starts_with("5."))) {
        return Err(Error::Incompatible {
            endpoint: request::nodes().endpoint(),
            reason: format!("node {} runs EMQX {}, not 5", n.node, n.version.as_deref().unwrap_or_default()),
        });
    }
    Ok(Probe::Ready(report, nodes))
}

/// The state of a cluster of `nodes`: `Running` when every node runs, else `Error` naming those
/// that do not.
fn state_of(nodes: &[Node]) -> ClusterState {
    let (mut core, mut replicant) = (ReplicaCount::default(), ReplicaCount::default());
    let mut down = Vec::new();
    for n in nodes {
        let count = if n.role.as_deref() == Some("replicant") { &mut replicant } else { &mut core };
        count.desired += 1;
        if n.is_running() {
            count.ready += 1;
        } else {
            down.push(format!("{} ({})", n.node, if n.node_status.as_str().is_empty() { "unknown" } else { n.node_status.as_str() }));
        }
    }
    let status = if nodes.is_empty() {
        ClusterStatus::Error("no nodes".into())
    } else if down.is_empty() {
        ClusterStatus::Running
    } else {
        ClusterStatus::Error(format!("nodes not running: {}", down.join(", ")))
    };
    let nodes = nodes
        .iter()
        .map(|n| NodeSummary {
            name: n.node.clone(),
            role: n.role.clone().unwrap_or_else(|| "unknown".into()),
            running: n.is_running(),
            version: n.version.clone(),
        })
        .collect();
    ClusterState { status, core, replicant, image: None, nodes }
}

/// An onboarded cluster, to read: [`ExistingDriver::cluster`].
#[derive(Debug, Clone)]
pub struct ExistingCluster {
    name: String,
    client: EmqxClient,
}

impl ExistingCluster {
    /// The cluster's display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its REST client, for what the handle does not wrap.
    pub fn client(&self) -> &EmqxClient {
        &self.client
    }

    /// Its state (see the [module](self) table).
    ///
    /// # Errors
    /// As the module table says.
    pub async fn state(&self) -> Result<ClusterState> {
        Ok(match probe(&self.client).await? {
            Probe::NotReady(why) => ClusterState {
                status: ClusterStatus::Error(why),
                core: ReplicaCount::default(),
                replicant: ReplicaCount::default(),
                image: None,
                nodes: Vec::new(),
            },
            Probe::Ready(_, nodes) => state_of(&nodes),
        })
    }

    /// Its nodes.
    ///
    /// # Errors
    /// The client's.
    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.client.nodes().await
    }

    /// Its statistics, per node.
    ///
    /// # Errors
    /// The client's.
    pub async fn stats(&self) -> Result<Vec<Stats>> {
        self.client.stats().await
    }

    /// Its metrics, summed over the nodes.
    ///
    /// # Errors
    /// The client's.
    pub async fn metrics(&self) -> Result<Metrics> {
        self.client.metrics_aggregate().await
    }

    /// Its current gauges and rates.
    ///
    /// # Errors
    /// The client's.
    pub async fn monitor_current(&self) -> Result<MonitorCurrent> {
        self.client.monitor_current(None).await
    }

    /// Its listeners.
    ///
    /// # Errors
    /// The client's.
    pub async fn listeners(&self) -> Result<Vec<ListenerInfo>> {
        self.client.listeners().await
    }

    /// A page of its clients.
    ///
    /// # Errors
    /// The client's.
    pub async fn clients(&self, query: &ClientQuery, page: PageRequest) -> Result<Page<ClientInfo>> {
        self.client.clients(query, page).await
    }

    /// Every page of its clients, at most `max_pages` of `limit`.
    pub fn client_pages<'a>(
        &'a self,
        query: &'a ClientQuery,
        limit: u32,
        max_pages: u32,
    ) -> impl Stream<Item = Result<Page<ClientInfo>>> + Send + 'a {
        self.client.client_pages(query, limit, max_pages)
    }

    /// A page of its alarms: active (`Some(true)`), deactivated (`Some(false)`) or both.
    ///
    /// # Errors
    /// The client's.
    pub async fn alarms(&self, activated: Option<bool>, page: PageRequest) -> Result<Page<Alarm>> {
        self.client.alarms(activated, page).await
    }

    /// Its license, `None` on open source.
    ///
    /// # Errors
    /// The client's.
    pub async fn license(&self) -> Result<Option<License>> {
        self.client.license().await
    }

    /// Sets the connections it takes from its license (EMQX Enterprise 5.7+, business-critical
    /// license): [`EmqxClient::set_connection_limit`].
    ///
    /// # Errors
    /// As [`EmqxClient::set_connection_limit`].
    pub async fn set_connection_limit(&self, max_connections: u64) -> Result<LicenseSetting> {
        self.client.set_connection_limit(max_connections).await
    }
}

#[async_trait]
impl ClusterDriver for ExistingDriver {
    fn backend(&self) -> ClusterBackend {
        ClusterBackend::Existing
    }

    async fn state(&self, cluster: &ClusterRef) -> Result<ClusterState> {
        self.cluster(cluster)?.state().await
    }

    async fn set_connection_limit(&self, cluster: &ClusterRef, limit: u64) -> Result<()> {
        self.cluster(cluster)?.set_connection_limit(limit).await.map(|_| ())
    }
}
