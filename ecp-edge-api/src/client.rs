//! [`ServiceClient`]: the API client of one edge service of any kind, and what the platform does
//! through it: probe, information sync, and configuration changes that converge.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::call::ApiCall;
use crate::change::{ConfigChange, GroupSpec};
use crate::ekuiper::{EkuiperClient, Rule, RuleState};
use crate::error::{Error, Result};
use crate::info::{EdgeInfo, GroupInfo, Health, NodeInfo, RuleInfo};
use crate::nanomq::{NanoMqClient, ReloadConfig};
use crate::neuron::codes;
use crate::neuron::{DataType, LinkState, NeuronClient, Node, NodeCommand, NodeFilter, NodeType, Tag, TagAttribute};
use crate::neuronex::NeuronExClient;
use crate::raw::RawClient;
use crate::service::{Credentials, EdgeKind};
use crate::transport::EdgeTransport;

/// The API client of one edge service, by kind. Cheap to clone: clones share the service's
/// session (its login token).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServiceClient {
    /// NeuronEX (and through it, its Neuron and eKuiper).
    NeuronEx(NeuronExClient),
    /// Standalone Neuron.
    Neuron(NeuronClient),
    /// eKuiper.
    Ekuiper(EkuiperClient),
    /// NanoMQ.
    NanoMq(NanoMqClient),
    /// Any other HTTP service: raw calls only.
    Custom(RawClient),
}

impl ServiceClient {
    /// The client of a service of `kind` reached over `transport`, authenticating with
    /// `credentials`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for credentials the product cannot take (eKuiper has no login) or
    /// that hold characters not allowed in a header.
    pub fn new(kind: EdgeKind, transport: Arc<dyn EdgeTransport>, credentials: Credentials) -> Result<Self> {
        Ok(match kind {
            EdgeKind::NeuronEx => ServiceClient::NeuronEx(NeuronExClient::new(transport, credentials)?),
            EdgeKind::Neuron => ServiceClient::Neuron(NeuronClient::new(transport, credentials)?),
            EdgeKind::Ekuiper => ServiceClient::Ekuiper(EkuiperClient::new(transport, credentials)?),
            EdgeKind::NanoMq => ServiceClient::NanoMq(NanoMqClient::new(transport, credentials)?),
            EdgeKind::Custom => ServiceClient::Custom(RawClient::new(transport, credentials)?),
        })
    }

    /// The kind of service.
    pub fn kind(&self) -> EdgeKind {
        match self {
            ServiceClient::NeuronEx(_) => EdgeKind::NeuronEx,
            ServiceClient::Neuron(_) => EdgeKind::Neuron,
            ServiceClient::Ekuiper(_) => EdgeKind::Ekuiper,
            ServiceClient::NanoMq(_) => EdgeKind::NanoMq,
            ServiceClient::Custom(_) => EdgeKind::Custom,
        }
    }

    /// Sends one call with the service's authentication and reads its answer as JSON.
    ///
    /// # Errors
    /// What the call's parser says, and the transport's errors.
    pub async fn execute(&self, call: ApiCall<Value>) -> Result<Value> {
        match self {
            ServiceClient::NeuronEx(c) => c.execute(call).await,
            ServiceClient::Neuron(c) => c.execute(call).await,
            ServiceClient::Ekuiper(c) => c.execute(call).await,
            ServiceClient::NanoMq(c) => c.execute(call).await,
            ServiceClient::Custom(c) => c.execute(call).await,
        }
    }

    /// Checks that the service answers, and its version.
    ///
    /// # Errors
    /// The transport's or the API's error (for a custom service, only a server error or no answer).
    pub async fn probe(&self) -> Result<Health> {
        probe(self).await
    }

    /// Pulls the service's nodes, groups, streams and rules (NanoMQ: brokers, nodes, metrics and
    /// reloadable settings).
    ///
    /// # Errors
    /// The transport's or the API's error; [`Error::Unsupported`](crate::Error::Unsupported) for a custom service.
    pub async fn sync_info(&self) -> Result<EdgeInfo> {
        sync_info(self).await
    }

    /// Applies `change`, converging (see the [`ServiceClient`] docs); `idempotency_key` names the
    /// attempt and goes with a raw call as its `Idempotency-Key` header.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for a change that fails its checks or does not fit the kind of
    /// service, [`Error::Conflict`](crate::Error::Conflict) for a Neuron node of another plugin, the API's and the
    /// transport's errors.
    pub async fn apply(&self, change: &ConfigChange, idempotency_key: &str) -> Result<Value> {
        apply(self, change, idempotency_key).await
    }
}

fn unfit(change: &ConfigChange, kind: EdgeKind) -> Error {
    Error::invalid("change", format!("a {} change does not apply to a {kind} service", change.kind().as_str()))
}

/// Whether `e` is eKuiper's "already exists".
fn already_exists(e: &Error) -> bool {
    matches!(e, Error::Api { message: Some(m), .. } if m.contains("already exists"))
}

/// Checks that the service answers, and its version.
async fn probe(client: &ServiceClient) -> Result<Health> {
    let version = match client.clone() {
        ServiceClient::NeuronEx(c) => Some(c.version().await?.version),
        ServiceClient::Neuron(c) => Some(c.version().await?.version),
        ServiceClient::Ekuiper(c) => Some(c.version().await?),
        ServiceClient::NanoMq(c) => Some(c.version().await?),
        ServiceClient::Custom(c) => {
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

/// Pulls the service's nodes, groups, streams and rules.
async fn sync_info(client: &ServiceClient) -> Result<EdgeInfo> {
    let mut info = EdgeInfo::default();
    match client.clone() {
        ServiceClient::NeuronEx(c) => {
            info.version = Some(c.version().await?.version);
            neuron_info(&c.neuron(), &mut info).await?;
            ekuiper_info(&c.ekuiper(), &mut info).await?;
        }
        ServiceClient::Neuron(c) => {
            info.version = Some(c.version().await?.version);
            neuron_info(&c, &mut info).await?;
        }
        ServiceClient::Ekuiper(c) => {
            info.version = Some(c.version().await?);
            ekuiper_info(&c, &mut info).await?;
        }
        ServiceClient::NanoMq(c) => {
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
        ServiceClient::Custom(_) => return Err(Error::Unsupported { operation: "sync_info", backend: "custom services" }),
    }
    Ok(info)
}

/// Applies a change, converging (see the module docs).
async fn apply(client: &ServiceClient, change: &ConfigChange, key: &str) -> Result<Value> {
    change.validate()?;
    let kind = client.kind();
    let client = client.clone();
    match change {
        ConfigChange::NeuronSouthDevice { node, plugin, params, groups } => {
            let neuron = match &client {
                ServiceClient::NeuronEx(c) => c.neuron(),
                ServiceClient::Neuron(c) => c.clone(),
                _ => return Err(unfit(change, kind)),
            };
            south_device(&neuron, node, plugin, params, groups).await
        }
        ConfigChange::EkuiperStream { name, sql } => {
            let ekuiper = ekuiper_of(&client).ok_or_else(|| unfit(change, kind))?;
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
            let ekuiper = ekuiper_of(&client).ok_or_else(|| unfit(change, kind))?;
            let mut rule = Rule::new(id.clone(), sql.clone(), actions.clone());
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
            let ServiceClient::NanoMq(nanomq) = &client else { return Err(unfit(change, kind)) };
            let config: ReloadConfig = serde_json::from_value(Value::Object(data.clone()))
                .map_err(|e| Error::invalid("data", format!("not NanoMQ reloadable settings: {e}")))?;
            nanomq.set_reload_config(&config).await?;
            Ok(json!({ "reloaded": data.keys().collect::<Vec<_>>() }))
        }
        ConfigChange::RawApiCall { method, path, body } => {
            let call = ApiCall::raw(method, path, body.as_ref(), Some(key))?;
            client.execute(call).await
        }
    }
}

fn ekuiper_of(client: &ServiceClient) -> Option<EkuiperClient> {
    match client {
        ServiceClient::NeuronEx(c) => Some(c.ekuiper()),
        ServiceClient::Ekuiper(c) => Some(c.clone()),
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
    let node_info = |n: Node, groups: &mut BTreeMap<String, Vec<GroupInfo>>| {
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
    let created = match neuron.add_node(node, plugin, None).await {
        Ok(()) => true,
        Err(e) if e.has_code(codes::NODE_EXISTS) => {
            let existing = neuron.nodes(NodeType::Driver, &NodeFilter::default().node(node)).await?;
            match existing.iter().find(|n| n.name == node) {
                Some(n) if n.plugin.eq_ignore_ascii_case(plugin) => false,
                Some(n) => {
                    return Err(Error::Conflict {
                        kind: "node",
                        id: node.to_owned(),
                        reason: format!("node {node:?} exists with plugin {:?}, not {plugin:?}", n.plugin).into(),
                    });
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
        // The group exists: its interval is brought in line.
        match neuron.add_group(node, &group.name, group.interval).await {
            Ok(()) => {}
            Err(e) if e.has_code(codes::GROUP_EXISTS) => neuron.update_group(node, &group.name, None, Some(group.interval)).await?,
            Err(e) => return Err(e),
        }
        if group.tags.is_empty() {
            continue;
        }
        let existing: HashSet<String> = neuron.tags(node, &group.name, None).await?.into_iter().map(|t| t.name).collect();
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
                    product: Some(EdgeKind::Neuron),
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
    // Neuron starts a node once it has settings; one that was stopped is started.
    let mut running = false;
    if !params.is_empty() {
        match neuron.node_ctl(node, NodeCommand::Start).await {
            Ok(()) => running = true,
            Err(e) if e.has_code(codes::NODE_RUNNING) => running = true,
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
