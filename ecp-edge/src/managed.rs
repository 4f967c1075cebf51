#![cfg_attr(not(any(feature = "direct", feature = "mqtt")), allow(dead_code))]
//! What the managed drivers share: one API client per service over any [`EdgeTransport`], and
//! probe, information sync and converging configuration over it. The direct driver gives the
//! clients HTTP transports; the agent driver gives them tunnels through an edge agent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ecp_core::EdgeServiceId;
use ecp_core::edge::{AgentId, Credentials, EdgeKind, EdgeService};
use ecp_core::task::IdempotencyKey;
use serde_json::{Map, Value, json};

use crate::api::ekuiper::RuleState;
use crate::api::nanomq::ReloadConfig;
use crate::api::neuron::{DataType, LinkState, NodeCommand, NodeFilter, Tag, TagAttribute};
use crate::api::{ApiCall, EkuiperClient, NanoMqClient, NeuronClient, NeuronExClient, NodeType, RawClient};
use crate::driver::{EdgeInfo, GroupInfo, Health, NodeInfo, RuleInfo};
use crate::error::{Error, Result};
use crate::template::{ConfigChange, GroupSpec};
use crate::transport::EdgeTransport;

/// The API client of one service, by kind.
#[derive(Debug, Clone)]
pub(crate) enum Client {
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
    agent: Option<AgentId>,
    client: Client,
}

/// One client per service, rebuilt when its endpoint, kind, credentials or agent change.
#[derive(Default)]
pub(crate) struct Clients {
    map: Mutex<HashMap<EdgeServiceId, Cached>>,
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EdgeServiceId, Cached>> {
        // A panic while holding the map cannot leave it inconsistent (each operation is one
        // insert or remove), so a poisoned lock is used as is.
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many services have a client.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Drops a service's client.
    pub(crate) fn forget(&self, id: EdgeServiceId) {
        self.lock().remove(&id);
    }

    /// The service's client, made over `transport()` when missing or stale.
    pub(crate) fn get(&self, service: &EdgeService, transport: impl FnOnce() -> Result<Arc<dyn EdgeTransport>>) -> Result<Client> {
        let mut clients = self.lock();
        if let Some(c) = clients.get(&service.id)
            && c.endpoint == service.endpoint
            && c.kind == service.kind
            && c.credentials == service.credentials
            && c.agent == service.agent
        {
            return Ok(c.client.clone());
        }
        let transport = transport()?;
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
                agent: service.agent.clone(),
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

/// Checks that the service answers, and its version.
pub(crate) async fn probe(client: &Client) -> Result<Health> {
    let version = match client.clone() {
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

/// Pulls the service's nodes, groups, streams and rules.
pub(crate) async fn sync_info(client: &Client, backend: &'static str) -> Result<EdgeInfo> {
    let mut info = EdgeInfo::default();
    match client.clone() {
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
        Client::Custom(_) => return Err(Error::Core(ecp_core::Error::unsupported("sync_info", backend))),
    }
    Ok(info)
}

/// Applies a change, converging (see the direct driver's module docs).
pub(crate) async fn apply(client: &Client, kind: EdgeKind, change: &ConfigChange, key: &IdempotencyKey) -> Result<Value> {
    change.validate()?;
    let client = client.clone();
    match change {
        ConfigChange::NeuronSouthDevice { node, plugin, params, groups } => {
            let neuron = match &client {
                Client::NeuronEx(c) => c.neuron(),
                Client::Neuron(c) => c.clone(),
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
            let Client::NanoMq(nanomq) = &client else { return Err(unfit(change, kind)) };
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
