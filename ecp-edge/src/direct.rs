//! [`DirectDriver`]: manages edge services directly over their HTTP APIs (feature `direct`).
//!
//! One driver serves every directly managed service of a process. It keeps one API client per
//! service (so login tokens are cached and renewed per service) over one shared HTTP connection
//! pool, and rebuilds a client when the service's endpoint or credentials change.
//!
//! | kind | probe | info sync | configuration |
//! |---|---|---|---|
//! | NeuronEX | `GET /api/version` | Neuron nodes, states, groups; eKuiper streams, rules | south devices, streams, rules, raw calls |
//! | Neuron | `GET /api/v2/version` | nodes, states, groups | south devices, raw calls |
//! | eKuiper | `GET /` | streams, rules | streams, rules, raw calls |
//! | NanoMQ | `GET /api/v4/brokers` | brokers, nodes, metrics, reloadable settings | configuration, raw calls |
//! | custom | `GET /` answers at all | `Unsupported` | raw calls |
//!
//! Applying a change converges instead of failing on what is already there, so that a retried
//! attempt (or a resumed task) lands in the same state: an existing Neuron node of the same plugin
//! is kept and its settings, groups and tags updated; an existing eKuiper stream is replaced and
//! an existing rule updated. A raw API call carries the attempt's idempotency key in an
//! `Idempotency-Key` header.
//!
//! Directly managed services cannot be installed, upgraded, started or stopped: those answer
//! `Unsupported`, as the [`driver`](crate::driver) table says.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::EdgeServiceId;
use ecp_core::edge::{Credentials, EdgeKind, EdgeService};
use ecp_core::task::IdempotencyKey;
use serde_json::{Map, Value, json};

use crate::api::ekuiper::RuleState;
use crate::api::nanomq::ReloadConfig;
use crate::api::neuron::{DataType, LinkState, NodeCommand, NodeFilter, Tag, TagAttribute};
use crate::api::{ApiCall, EkuiperClient, NanoMqClient, NeuronClient, NeuronExClient, NodeType, RawClient};
use crate::driver::{Capabilities, EdgeDriver, EdgeInfo, GroupInfo, Health, NodeInfo, RuleInfo};
use crate::error::{Error, Result};
use crate::template::{ConfigChange, GroupSpec};
use crate::transport::{DEFAULT_MAX_BODY, EdgeTransport, HttpTransport, HttpTransportConfig};

/// The settings of a [`DirectDriver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectDriverConfig {
    /// The time to connect to a service (default 5 s).
    pub connect_timeout: Duration,
    /// The time for one request (default 15 s).
    pub request_timeout: Duration,
    /// The largest answer accepted (default 8 MiB).
    pub max_body: usize,
    /// Extra trusted root certificates, PEM, for services with self-signed certificates.
    pub root_ca_pem: Option<Vec<u8>>,
}

impl Default for DirectDriverConfig {
    fn default() -> Self {
        DirectDriverConfig {
            connect_timeout: HttpTransportConfig::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: HttpTransportConfig::DEFAULT_REQUEST_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            root_ca_pem: None,
        }
    }
}

impl DirectDriverConfig {
    /// Sets both timeouts.
    #[must_use]
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }
}

/// The API client of one service, by kind.
#[derive(Debug, Clone)]
enum Client {
    NeuronEx(NeuronExClient),
    Neuron(NeuronClient),
    Ekuiper(EkuiperClient),
    NanoMq(NanoMqClient),
    Custom(RawClient),
}

struct Cached {
    endpoint: String,
    kind: EdgeKind,
    credentials: Credentials,
    client: Client,
}

/// The driver of directly managed services; see the [module docs](self).
pub struct DirectDriver {
    /// The template every service's transport is made from (one shared connection pool).
    http: HttpTransport,
    clients: Mutex<HashMap<EdgeServiceId, Cached>>,
}

impl std::fmt::Debug for DirectDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.clients.lock().map(|c| c.len()).unwrap_or_default();
        f.debug_struct("DirectDriver").field("http", &self.http).field("cached_clients", &cached).finish()
    }
}

impl DirectDriver {
    /// A driver with `config`.
    ///
    /// # Errors
    /// `InvalidInput` for timeouts outside 1 ms..=1 h, a zero body limit, or a root bundle without
    /// a certificate.
    pub fn new(config: DirectDriverConfig) -> Result<Self> {
        let mut http = HttpTransportConfig::new("http://127.0.0.1")
            .connect_timeout(config.connect_timeout)
            .request_timeout(config.request_timeout)
            .max_body(config.max_body);
        if let Some(pem) = config.root_ca_pem {
            http = http.root_ca_pem(pem);
        }
        Ok(DirectDriver { http: http.build()?, clients: Mutex::new(HashMap::new()) })
    }

    /// How many services have a cached client.
    pub fn cached_clients(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EdgeServiceId, Cached>> {
        // A panic while holding the map cannot leave it inconsistent (each operation is one
        // insert or remove), so a poisoned lock is used as is.
        self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn client(&self, service: &EdgeService) -> Result<Client> {
        let mut clients = self.lock();
        if let Some(c) = clients.get(&service.id)
            && c.endpoint == service.endpoint
            && c.kind == service.kind
            && c.credentials == service.credentials
        {
            return Ok(c.client.clone());
        }
        let transport: Arc<dyn EdgeTransport> = Arc::new(self.http.with_base_url(&service.endpoint)?);
        let credentials = service.credentials.clone();
        let client = match service.kind {
            EdgeKind::NeuronEx => Client::NeuronEx(NeuronExClient::new(transport, credentials)?),
            EdgeKind::Neuron => Client::Neuron(NeuronClient::new(transport, credentials)?),
            EdgeKind::Ekuiper => Client::Ekuiper(EkuiperClient::new(transport, credentials)?),
            EdgeKind::NanoMq => Client::NanoMq(NanoMqClient::new(transport, credentials)?),
            _ => Client::Custom(RawClient::new(transport, credentials)?),
        };
        clients.insert(
            service.id,
            Cached {
                endpoint: service.endpoint.clone(),
                kind: service.kind,
                credentials: service.credentials.clone(),
                client: client.clone(),
            },
        );
        Ok(client)
    }
}

fn unfit(change: &ConfigChange, kind: EdgeKind) -> Error {
    Error::Core(ecp_core::Error::invalid(
        "change",
        format!("a {} change does not apply to a {kind} service", change.template_kind().as_str()),
    ))
}

/// Whether `e` is the product's answer with one of `codes`.
fn has_code(e: &Error, codes: &[i64]) -> bool {
    matches!(e, Error::Api { code: Some(c), .. } if codes.contains(c))
}

/// Whether `e` is eKuiper's "already exists".
fn already_exists(e: &Error) -> bool {
    matches!(e, Error::Api { message: Some(m), .. } if m.contains("already exists"))
}

#[async_trait]
impl EdgeDriver for DirectDriver {
    fn backend(&self) -> &'static str {
        "direct"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::managed()
    }

    /// Drops the service's cached client and login token ([`Fleet`](crate::fleet) calls this on
    /// deregistration).
    fn forget(&self, service: &EdgeService) {
        self.lock().remove(&service.id);
    }

    async fn probe(&self, service: &EdgeService) -> Result<Health> {
        let version = match self.client(service)? {
            Client::NeuronEx(c) => Some(c.version().await?.version),
            Client::Neuron(c) => Some(c.version().await?.version),
            Client::Ekuiper(c) => Some(c.version().await?),
            Client::NanoMq(c) => Some(c.version().await?),
            Client::Custom(c) => {
                // Any answer but a server error means the service is there.
                match c.execute(ApiCall::raw("GET", "/", None, None)?).await {
                    Ok(_) => None,
                    Err(Error::Api { status, .. }) if status < 500 => None,
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(Health { version })
    }

    async fn sync_info(&self, service: &EdgeService) -> Result<EdgeInfo> {
        let mut info = EdgeInfo::default();
        match self.client(service)? {
            Client::NeuronEx(c) => {
                info.version = Some(c.version().await?.version);
                neuron_info(&c.neuron(), &mut info).await?;
                ekuiper_info(&c.ekuiper(), &mut info).await?;
            }
            Client::Neuron(c) => {
                info.version = Some(c.version().await?.version);
                neuron_info(&c, &mut info).await?;
            }
            Client::Ekuiper(c) => {
                info.version = Some(c.version().await?);
                ekuiper_info(&c, &mut info).await?;
            }
            Client::NanoMq(c) => {
                let brokers = c.brokers().await?;
                info.version = brokers.iter().find_map(|b| b.version.clone());
                let nodes = c.nodes().await?;
                let metrics = c.metrics().await?;
                let reload = c.reload_config().await?;
                let extra = [
                    ("brokers", serde_json::to_value(brokers)),
                    ("nodes", serde_json::to_value(nodes)),
                    ("metrics", serde_json::to_value(metrics)),
                    ("reload", serde_json::to_value(reload)),
                ];
                for (key, value) in extra {
                    info.extra.insert(key.to_owned(), value.unwrap_or_default());
                }
            }
            Client::Custom(_) => return Err(Error::Core(ecp_core::Error::unsupported("sync_info", "direct (custom service)"))),
        }
        Ok(info)
    }

    async fn apply(&self, service: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> Result<Value> {
        change.validate()?;
        let client = self.client(service)?;
        match change {
            ConfigChange::NeuronSouthDevice { node, plugin, params, groups } => {
                let neuron = match &client {
                    Client::NeuronEx(c) => c.neuron(),
                    Client::Neuron(c) => c.clone(),
                    _ => return Err(unfit(change, service.kind)),
                };
                south_device(&neuron, node, plugin, params, groups).await
            }
            ConfigChange::EkuiperStream { name, sql } => {
                let ekuiper = ekuiper_of(&client).ok_or_else(|| unfit(change, service.kind))?;
                match ekuiper.create_stream(sql).await {
                    Ok(_) => Ok(json!({ "stream": name, "created": true })),
                    Err(e) if already_exists(&e) => {
                        ekuiper.replace_stream(name, sql).await?;
                        Ok(json!({ "stream": name, "created": false }))
                    }
                    Err(e) => Err(e),
                }
            }
            ConfigChange::EkuiperRule { id, name, sql, actions, options } => {
                let ekuiper = ekuiper_of(&client).ok_or_else(|| unfit(change, service.kind))?;
                let mut rule = crate::api::ekuiper::Rule::new(id.clone(), sql.clone(), actions.clone());
                rule.name.clone_from(name);
                rule.options.clone_from(options);
                let created = match ekuiper.create_rule(&rule).await {
                    Ok(_) => true,
                    Err(e) if already_exists(&e) => {
                        ekuiper.update_rule(&rule).await?;
                        false
                    }
                    Err(e) => return Err(e),
                };
                let status = ekuiper.rule_status(id).await.map(|s| rule_status(&s.state())).unwrap_or_else(|_| "unknown".to_owned());
                Ok(json!({ "rule": id, "created": created, "status": status }))
            }
            ConfigChange::NanoMqConfig { data } => {
                let Client::NanoMq(nanomq) = &client else { return Err(unfit(change, service.kind)) };
                let config: ReloadConfig = serde_json::from_value(Value::Object(data.clone()))
                    .map_err(|e| Error::Core(ecp_core::Error::invalid("data", format!("not NanoMQ reloadable settings: {e}"))))?;
                nanomq.set_reload_config(&config).await?;
                Ok(json!({ "reloaded": data.keys().collect::<Vec<_>>() }))
            }
            ConfigChange::RawApiCall { method, path, body } => {
                let call = ApiCall::raw(method, path, body.as_ref(), Some(&key.0))?;
                let answer = match &client {
                    Client::NeuronEx(c) => c.execute(call).await?,
                    Client::Neuron(c) => c.execute(call).await?,
                    Client::Ekuiper(c) => c.execute(call).await?,
                    Client::NanoMq(c) => c.execute(call).await?,
                    Client::Custom(c) => c.execute(call).await?,
                };
                Ok(answer)
            }
        }
    }
}

fn ekuiper_of(client: &Client) -> Option<EkuiperClient> {
    match client {
        Client::NeuronEx(c) => Some(c.ekuiper()),
        Client::Ekuiper(c) => Some(c.clone()),
        _ => None,
    }
}

fn rule_status(state: &RuleState) -> String {
    match state {
        RuleState::Running => "running".into(),
        RuleState::StoppedByError => "stopped by error".into(),
        RuleState::Error(m) => format!("error: {m}"),
        _ => "stopped".into(),
    }
}

async fn neuron_info(neuron: &NeuronClient, info: &mut EdgeInfo) -> Result<()> {
    let states: HashMap<String, _> = neuron.node_states().await?.states.into_iter().map(|s| (s.node, s.state)).collect();
    let mut groups: BTreeMap<String, Vec<GroupInfo>> = BTreeMap::new();
    for g in neuron.all_groups().await? {
        groups.entry(g.driver).or_default().push(GroupInfo { name: g.group, interval: g.interval, tag_count: g.tag_count });
    }
    let node_info = |n: crate::api::neuron::Node, groups: &mut BTreeMap<String, Vec<GroupInfo>>| {
        let state = states.get(&n.name);
        NodeInfo {
            state: state.map(|s| s.running.as_str().to_owned()),
            connected: state.map(|s| matches!(s.link, LinkState::Connected)),
            groups: groups.remove(&n.name).unwrap_or_default(),
            name: n.name,
            plugin: n.plugin,
        }
    };
    let filter = NodeFilter::default();
    for n in neuron.nodes(NodeType::Driver, &filter).await? {
        info.drivers.push(node_info(n, &mut groups));
    }
    for n in neuron.nodes(NodeType::App, &filter).await? {
        info.apps.push(node_info(n, &mut groups));
    }
    Ok(())
}

async fn ekuiper_info(ekuiper: &EkuiperClient, info: &mut EdgeInfo) -> Result<()> {
    info.streams = ekuiper.streams().await?;
    info.rules = ekuiper
        .rules()
        .await?
        .into_iter()
        .map(|r| RuleInfo { status: rule_status(&r.state()), name: r.name.clone().unwrap_or_else(|| r.id.clone()), id: r.id })
        .collect();
    Ok(())
}

/// Converges a Neuron south device: the node (kept if it exists with the same plugin), its
/// settings, its groups (created or their interval updated), their tags (added or updated), and
/// starts it once it has settings.
async fn south_device(neuron: &NeuronClient, node: &str, plugin: &str, params: &Map<String, Value>, groups: &[GroupSpec]) -> Result<Value> {
    // 2002: the node exists.
    let created = match neuron.add_node(node, plugin, None).await {
        Ok(()) => true,
        Err(e) if has_code(&e, &[2002]) => {
            let existing = neuron.nodes(NodeType::Driver, &NodeFilter::default().node(node)).await?;
            match existing.iter().find(|n| n.name == node) {
                Some(n) if n.plugin.eq_ignore_ascii_case(plugin) => false,
                Some(n) => {
                    return Err(Error::Core(ecp_core::Error::conflict(
                        "node",
                        node,
                        format!("node {node:?} exists with plugin {:?}, not {plugin:?}", n.plugin),
                    )));
                }
                None => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    if !params.is_empty() {
        neuron.set_node_setting(node, &Value::Object(params.clone())).await?;
    }
    let (mut tags_added, mut tags_updated) = (0usize, 0usize);
    for group in groups {
        // 2104: the group exists; its interval is brought in line.
        match neuron.add_group(node, &group.name, group.interval).await {
            Ok(()) => {}
            Err(e) if has_code(&e, &[2104]) => neuron.update_group(node, &group.name, None, Some(group.interval)).await?,
            Err(e) => return Err(e),
        }
        if group.tags.is_empty() {
            continue;
        }
        let existing: std::collections::HashSet<String> = neuron.tags(node, &group.name, None).await?.into_iter().map(|t| t.name).collect();
        let (update, add): (Vec<Tag>, Vec<Tag>) = group
            .tags
            .iter()
            .map(|t| {
                let mut tag = Tag::new(t.name.clone(), t.address.clone(), TagAttribute(t.attribute), DataType(t.kind));
                tag.precision = t.other.get("precision").and_then(Value::as_i64);
                tag.decimal = t.other.get("decimal").and_then(Value::as_f64);
                tag.bias = t.other.get("bias").and_then(Value::as_f64);
                tag.description = t.other.get("description").and_then(Value::as_str).map(str::to_owned);
                tag.unit = t.other.get("unit").and_then(Value::as_str).map(str::to_owned);
                tag.value = t.other.get("value").cloned();
                tag
            })
            .partition(|t| existing.contains(&t.name));
        for (tags, adding) in [(add, true), (update, false)] {
            if tags.is_empty() {
                continue;
            }
            let outcome = if adding {
                neuron.add_tags(node, &group.name, &tags).await?
            } else {
                neuron.update_tags(node, &group.name, &tags).await?
            };
            if let Some(failed) = outcome.failures().next() {
                let name = usize::try_from(failed.index).ok().and_then(|i| tags.get(i)).map_or("?", |t| t.name.as_str());
                return Err(Error::Api {
                    endpoint: if adding { "POST tags" } else { "PUT tags" }.to_owned(),
                    status: 200,
                    code: Some(failed.error),
                    message: Some(format!("tag {name:?} of group {:?} refused", group.name)),
                });
            }
            if adding {
                tags_added += tags.len();
            } else {
                tags_updated += tags.len();
            }
        }
    }
    // Neuron starts a node once it has settings; one that was stopped is started. 2007: running.
    let mut running = false;
    if !params.is_empty() {
        match neuron.node_ctl(node, NodeCommand::Start).await {
            Ok(()) => running = true,
            Err(e) if has_code(&e, &[2007]) => running = true,
            Err(e) => return Err(e),
        }
    }
    Ok(json!({
        "node": node,
        "created": created,
        "groups": groups.len(),
        "tags_added": tags_added,
        "tags_updated": tags_updated,
        "running": running,
    }))
}
