//! Handlers of login, ping, version, plugins and nodes (`/node`, `/node/setting`, `/node/ctl`, `/node/state`).

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::sim::reply::SimRequest;
use crate::sim::token::{self, lock};

use super::body::{body, check_name, query, req_str, req_u64};
use super::{BUILD_DATE, Ctx, REVISION, Reply, VERSION, error, ok, reply};
use super::{NeuronNode, NodeRunState, NodeType};

pub(super) fn login(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let m = body(req)?;
    let name = req_str(&m, "name")?;
    let pass = req_str(&m, "pass")?;
    if !ctx.auth {
        return Ok(reply(StatusCode::OK, &json!({ "token": "" })));
    }
    if !(4..=16).contains(&pass.chars().count()) {
        return Err(error(1012));
    }
    let config = &ctx.shared.config;
    if name != config.username || pass != config.password {
        return Err(error(1009));
    }
    Ok(reply(StatusCode::OK, &json!({ "token": ctx.shared.tokens.issue(token::AUD_NEURON, &name) })))
}

pub(super) fn ping(_ctx: &Ctx<'_>, _req: &SimRequest) -> Reply {
    Ok(reply(StatusCode::OK, &json!({})))
}

pub(super) fn version(ctx: &Ctx<'_>, _req: &SimRequest) -> Reply {
    let version = ctx.shared.config.version.as_deref().unwrap_or(VERSION);
    Ok(reply(StatusCode::OK, &json!({ "version": version, "revision": REVISION, "build_date": BUILD_DATE })))
}

pub(super) fn plugins(ctx: &Ctx<'_>, _req: &SimRequest) -> Reply {
    let state = lock(ctx.state);
    let list: Vec<Value> = state
        .plugins
        .iter()
        .map(|(name, t)| {
            let lib = format!("libplugin-{}.so", name.to_lowercase().replace(' ', "-"));
            json!({ "name": name, "library": lib, "description": format!("{name} plugin"), "kind": 1, "node_type": t.code() })
        })
        .collect();
    Ok(reply(StatusCode::OK, &json!({ "plugins": list })))
}

pub(super) fn node(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    match req.method {
        Method::GET => {
            let node_type = match req.query("type") {
                Some("1") => NodeType::Driver,
                Some("2") => NodeType::App,
                _ => return Err(error(1003)),
            };
            let parse = |key: &str| -> Result<Option<u8>, Response> {
                req.query(key).filter(|v| !v.is_empty()).map(|v| v.parse::<u8>().map_err(|_| error(1003))).transpose()
            };
            let (want_state, want_link) = (parse("state")?, parse("link")?);
            let state = lock(ctx.state);
            let nodes: Vec<Value> = state
                .nodes
                .values()
                .filter(|n| n.node_type == node_type)
                .filter(|n| req.query("plugin").is_none_or(|p| p.is_empty() || n.plugin == p))
                .filter(|n| req.query("node").is_none_or(|p| n.name.contains(p)))
                .filter(|n| req.query("group").is_none_or(|g| g.is_empty() || n.groups.contains_key(g)))
                .filter(|n| want_state.is_none_or(|s| n.state.code() == s))
                .filter(|n| want_link.is_none_or(|l| u8::from(n.connected) == l))
                .map(|n| json!({ "name": n.name, "plugin": n.plugin, "support_import_tags": n.node_type == NodeType::Driver, "tags": "" }))
                .collect();
            Ok(reply(StatusCode::OK, &json!({ "nodes": nodes })))
        }
        Method::POST => {
            let m = body(req)?;
            let name = req_str(&m, "name")?;
            let plugin = req_str(&m, "plugin")?;
            let params = match m.get("params") {
                None | Some(Value::Null) => None,
                Some(p @ Value::Object(_)) => Some(p.clone()),
                Some(_) => return Err(error(1002)),
            };
            if name.is_empty() {
                return Err(error(2015));
            }
            check_name(&name, 2010)?;
            let mut state = lock(ctx.state);
            let Some(&node_type) = state.plugins.get(&plugin) else { return Err(error(2301)) };
            if state.nodes.contains_key(&name) {
                return Err(error(2002));
            }
            let mut node = NeuronNode::new(name.clone(), plugin, node_type);
            if params.is_some() {
                node.params = params;
                node.start();
            }
            state.nodes.insert(name, node);
            Ok(ok())
        }
        Method::PUT => {
            // Rename: `{"name","new_name"}`.
            let m = body(req)?;
            let name = req_str(&m, "name")?;
            let new_name = req_str(&m, "new_name")?;
            check_name(&new_name, 2010)?;
            let mut state = lock(ctx.state);
            if !state.nodes.contains_key(&name) {
                return Err(error(2003));
            }
            if new_name != name && state.nodes.contains_key(&new_name) {
                return Err(error(2002));
            }
            if let Some(mut node) = state.nodes.remove(&name) {
                node.name.clone_from(&new_name);
                state.nodes.insert(new_name, node);
            }
            Ok(ok())
        }
        _ => {
            let m = body(req)?;
            let name = req_str(&m, "name")?;
            match lock(ctx.state).nodes.remove(&name) {
                Some(_) => Ok(ok()),
                None => Err(error(2003)),
            }
        }
    }
}

pub(super) fn node_setting(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    if req.method == Method::GET {
        let name = query(req, "node")?;
        let state = lock(ctx.state);
        let node = state.nodes.get(name).ok_or_else(|| error(2003))?;
        return match &node.params {
            Some(params) => Ok(reply(StatusCode::OK, &json!({ "node": name, "params": params }))),
            None => Err(error(2005)),
        };
    }
    let m = body(req)?;
    let name = req_str(&m, "node")?;
    let Some(params @ Value::Object(_)) = m.get("params") else { return Err(error(1002)) };
    let mut state = lock(ctx.state);
    let node = state.nodes.get_mut(&name).ok_or_else(|| error(2003))?;
    node.params = Some(params.clone());
    if matches!(node.state, NodeRunState::Init | NodeRunState::Ready) {
        node.start();
    }
    Ok(ok())
}

pub(super) fn node_ctl(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let m = body(req)?;
    let name = req_str(&m, "node")?;
    let cmd = req_u64(&m, "cmd")?;
    if cmd > 1 {
        return Err(error(1003));
    }
    let mut state = lock(ctx.state);
    let node = state.nodes.get_mut(&name).ok_or_else(|| error(2003))?;
    match (cmd, node.state) {
        (0, NodeRunState::Running) => Err(error(2007)),
        (0, NodeRunState::Init) => Err(error(2006)),
        (0, _) => {
            node.start();
            Ok(ok())
        }
        (_, NodeRunState::Stopped) => Err(error(2009)),
        (_, NodeRunState::Init | NodeRunState::Ready) => Err(error(2008)),
        (_, NodeRunState::Running) => {
            node.state = NodeRunState::Stopped;
            node.connected = false;
            Ok(ok())
        }
    }
}

fn state_fields(n: &NeuronNode) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("running".into(), n.state.code().into());
    m.insert("link".into(), u8::from(n.connected).into());
    m.insert("rtt".into(), n.rtt_ms.into());
    m.insert("log_level".into(), n.log_level.clone().into());
    m.insert("sub_group_count".into(), n.groups.len().into());
    m
}

pub(super) fn node_state(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let state = lock(ctx.state);
    if let Some(name) = req.query("node").filter(|n| !n.is_empty()) {
        let node = state.nodes.get(name).ok_or_else(|| error(2003))?;
        return Ok(reply(StatusCode::OK, &Value::Object(state_fields(node))));
    }
    let states: Vec<Value> = state
        .nodes
        .values()
        .map(|n| {
            let mut m = Map::new();
            m.insert("node".into(), n.name.clone().into());
            m.extend(state_fields(n));
            Value::Object(m)
        })
        .collect();
    Ok(reply(StatusCode::OK, &json!({ "states": states, "neuron_core": { "log_level": "notice" } })))
}
