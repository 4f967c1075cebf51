//! Neuron 2.15's REST API (`/api/v2` on :7000), also served by NeuronEX under `/api/neuron`.
//!
//! Quirks kept (reference §3, §8): errors are `{"error":N}` with Neuron's status mapping (some under
//! HTTP 200); the token header's first seven characters are skipped unchecked; an expired token is
//! 403 1006, an undecodable or badly signed one 401 1005; login with a missing field is 400 1002;
//! tags for a missing group create the group; a partly bad tag batch keeps the tags before the bad
//! one; the group list has different keys with and without `?node=`; `node/state?node=` is a flat
//! object without the node name; unknown routes answer NNG's HTML page; metrics repeat their family
//! headers per node.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::response::Response;
use http::header::{ALLOW, CONTENT_TYPE, HeaderName};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::reply::{self, SimRequest};
use super::server::Shared;
use super::token::{self, TokenCheck, lock};

/// The version `GET /api/v2/version` reports.
pub(crate) const VERSION: &str = "2.15.0";
const REVISION: &str = "67d6beb";
const BUILD_DATE: &str = "2026-07-22";
/// The interval of a group that adding tags creates.
const DEFAULT_GROUP_INTERVAL: u64 = 1000;
/// The smallest group interval Neuron accepts, in milliseconds.
const MIN_GROUP_INTERVAL: u64 = 100;
const MAX_NAME_LEN: usize = 128;
const MAX_ADDRESS_LEN: usize = 128;
const MAX_DESCRIPTION_LEN: usize = 128;

/// Whether a node is a southbound driver or a northbound application (`type=1|2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A southbound driver (`type=1`): it has groups and tags.
    Driver,
    /// A northbound application (`type=2`).
    App,
}

impl NodeType {
    /// The wire code: 1 for drivers, 2 for apps.
    pub fn code(self) -> u8 {
        match self {
            NodeType::Driver => 1,
            NodeType::App => 2,
        }
    }
}

/// A node's running state (`running` in `/node/state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRunState {
    /// Created without settings (1).
    Init,
    /// Configured, not started (2).
    Ready,
    /// Running (3).
    Running,
    /// Stopped (4).
    Stopped,
}

impl NodeRunState {
    /// The wire code, 1–4.
    pub fn code(self) -> u8 {
        match self {
            NodeRunState::Init => 1,
            NodeRunState::Ready => 2,
            NodeRunState::Running => 3,
            NodeRunState::Stopped => 4,
        }
    }
}

/// One tag of a group.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NeuronTag {
    /// Unique within its group.
    pub name: String,
    /// Driver-specific address, e.g. `1!400001` for Modbus.
    pub address: String,
    /// Bits: 1 read, 2 write, 4 subscribe, 8 static.
    pub attribute: u8,
    /// Neuron's data type code (1 int8 … 9 float, 10 double, 11 bit, 12 bool, 13 string, 14 bytes…).
    pub data_type: u8,
    /// Decimal places reported.
    pub precision: u64,
    /// Scale factor (0 means none).
    pub decimal: f64,
    /// Offset added to readings.
    pub bias: f64,
    /// Free text.
    pub description: String,
    /// Unit of measure.
    pub unit: String,
    /// The static value, or the last value written; reads report it (0 when unset).
    pub value: Option<Value>,
}

impl NeuronTag {
    /// A tag with no precision, scaling, description, unit or value.
    pub fn new(name: impl Into<String>, address: impl Into<String>, attribute: u8, data_type: u8) -> Self {
        NeuronTag {
            name: name.into(),
            address: address.into(),
            attribute,
            data_type,
            precision: 0,
            decimal: 0.0,
            bias: 0.0,
            description: String::new(),
            unit: String::new(),
            value: None,
        }
    }
}

/// A group of tags polled at one interval.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct NeuronGroup {
    /// Polling interval in milliseconds.
    pub interval: u64,
    /// The group's tags, in insertion order.
    pub tags: Vec<NeuronTag>,
}

impl NeuronGroup {
    /// An empty group polled every `interval_ms` milliseconds.
    pub fn new(interval_ms: u64) -> Self {
        NeuronGroup { interval: interval_ms, tags: Vec::new() }
    }
}

/// A driver or app node.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NeuronNode {
    /// The node's unique name.
    pub name: String,
    /// The plugin it instantiates.
    pub plugin: String,
    /// Driver or app (from the plugin).
    pub node_type: NodeType,
    /// The settings (`params`), once given.
    pub params: Option<Value>,
    /// Running state.
    pub state: NodeRunState,
    /// Whether the device (or broker) is connected (`link` 1); reads and writes fail while not.
    pub connected: bool,
    /// Last round-trip time reported, in milliseconds.
    pub rtt_ms: u64,
    /// The node's log level.
    pub log_level: String,
    /// Groups by name (drivers only).
    pub groups: BTreeMap<String, NeuronGroup>,
}

impl NeuronNode {
    /// A node in state `Init`, disconnected, without settings or groups.
    pub fn new(name: impl Into<String>, plugin: impl Into<String>, node_type: NodeType) -> Self {
        NeuronNode {
            name: name.into(),
            plugin: plugin.into(),
            node_type,
            params: None,
            state: NodeRunState::Init,
            connected: false,
            rtt_ms: 0,
            log_level: "notice".to_owned(),
            groups: BTreeMap::new(),
        }
    }

    fn start(&mut self) {
        self.state = NodeRunState::Running;
        self.connected = true;
        self.rtt_ms = 100;
    }
}

/// Everything a simulated Neuron holds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NeuronState {
    /// Nodes by name.
    pub nodes: BTreeMap<String, NeuronNode>,
    /// Installed plugins by name, with the kind of node each makes.
    pub plugins: BTreeMap<String, NodeType>,
}

impl NeuronState {
    /// No nodes; the plugins of a stock Neuron (Modbus TCP/RTU, OPC UA, Siemens S7ISOTCP, File,
    /// MQTT, eKuiper, WebSocket, Monitor).
    pub fn new() -> Self {
        let plugins = [
            ("Modbus TCP", NodeType::Driver),
            ("Modbus RTU", NodeType::Driver),
            ("OPC UA", NodeType::Driver),
            ("Siemens S7ISOTCP", NodeType::Driver),
            ("File", NodeType::Driver),
            ("MQTT", NodeType::App),
            ("eKuiper", NodeType::App),
            ("WebSocket", NodeType::App),
            ("Monitor", NodeType::App),
        ];
        NeuronState { nodes: BTreeMap::new(), plugins: plugins.into_iter().map(|(n, t)| (n.to_owned(), t)).collect() }
    }
}

impl Default for NeuronState {
    fn default() -> Self {
        Self::new()
    }
}

/// The HTTP status Neuron sends with an error code (`src/utils/http.c`, reference §3).
pub(crate) fn status_of(code: i64) -> StatusCode {
    match code {
        0 | 2005 | 2101 | 2402..=2404 | 2406 | 3000..=3999 | 4000..=4999 | 10000..=20000 => StatusCode::OK,
        1002 | 1003 | 1012 | 1013 | 2004 | 2010 | 2012 | 2015 | 2105 | 2107 | 2108 | 2203..=2209 | 2302 | 2304..=2306 | 2401 => {
            StatusCode::BAD_REQUEST
        }
        1004 | 1005 | 1009 => StatusCode::UNAUTHORIZED,
        1006..=1008 => StatusCode::FORBIDDEN,
        1011 | 1014 | 2003 | 2102 | 2106 | 2201 | 2301 | 2400 => StatusCode::NOT_FOUND,
        2002 | 2006..=2009 | 2011 | 2103 | 2104 | 2202 | 2210 | 2303 | 2307 => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A Neuron reply: `application/json` with CORS `*`.
pub(crate) fn reply(status: StatusCode, body: &Value) -> Response {
    reply::respond(
        status,
        &[
            (CONTENT_TYPE, "application/json"),
            (HeaderName::from_static("access-control-allow-origin"), "*"),
            (HeaderName::from_static("access-control-allow-methods"), "POST,GET,PUT,DELETE,OPTIONS"),
            (HeaderName::from_static("access-control-allow-headers"), "*"),
        ],
        body.to_string(),
    )
}

/// `{"error":code}` with its status.
pub(crate) fn error(code: i64) -> Response {
    reply(status_of(code), &json!({ "error": code }))
}

fn ok() -> Response {
    error(0)
}

type Reply = Result<Response, Response>;

/// Standalone Neuron: everything under `/api/v2`, JWT per the config.
pub(crate) fn handle_standalone(shared: &Shared, req: &SimRequest) -> Response {
    match req.path.strip_prefix("/api/v2") {
        Some(sub) if sub.starts_with('/') => handle(shared, req, sub, shared.config.auth),
        _ => reply::nng_error_page(StatusCode::NOT_FOUND),
    }
}

/// Serves `sub` (the path after `/api/v2`, e.g. `/node`); `auth` turns the JWT checks on.
pub(crate) fn handle(shared: &Shared, req: &SimRequest, sub: &str, auth: bool) -> Response {
    let Some(state) = shared.neuron.as_ref() else { return reply::nng_error_page(StatusCode::NOT_FOUND) };
    type Handler = fn(&Ctx<'_>, &SimRequest) -> Reply;
    let (methods, needs_jwt, handler): (&[&str], bool, Handler) = match sub {
        "/login" => (&["POST"], false, login),
        "/ping" => (&["POST"], false, ping),
        "/version" => (&["GET"], true, version),
        "/plugin" => (&["GET"], true, plugins),
        "/node" => (&["GET", "POST", "PUT", "DELETE"], true, node),
        "/node/setting" => (&["GET", "POST"], true, node_setting),
        "/node/ctl" => (&["POST"], true, node_ctl),
        "/node/state" => (&["GET"], true, node_state),
        "/group" => (&["GET", "POST", "PUT", "DELETE"], true, group),
        "/tags" => (&["GET", "POST", "PUT", "DELETE"], true, tags),
        "/read" => (&["POST"], true, read),
        "/write" => (&["POST"], true, write),
        "/metrics" => (&["GET"], false, metrics),
        _ => return reply::nng_error_page(StatusCode::NOT_FOUND),
    };
    if !methods.contains(&req.method.as_str()) {
        let mut resp = reply::nng_error_page(StatusCode::METHOD_NOT_ALLOWED);
        if let Ok(v) = methods.join(", ").parse() {
            resp.headers_mut().insert(ALLOW, v);
        }
        return resp;
    }
    if needs_jwt && auth {
        // `neu_jwt_validate`: no header, or nothing past the first 7 characters, is 1004; those 7
        // ("Bearer ") are skipped without looking at them. A token that does not decode against
        // the key named by its `iss` is 1005, an expired one 1006, any other failed validation
        // 1007 (1008 is mapped to 403 but this validator never returns it).
        let header = req.header("authorization").unwrap_or("");
        if header.len() <= 7 {
            return error(1004);
        }
        let token = header.get(7..).unwrap_or("");
        match shared.tokens.check(token, token::AUD_NEURON) {
            TokenCheck::Valid => {}
            TokenCheck::Malformed | TokenCheck::Unknown => return error(1005),
            TokenCheck::Expired => return error(1006),
            TokenCheck::WrongAudience => return error(1007),
        }
    }
    let ctx = Ctx { shared, state, auth };
    handler(&ctx, req).unwrap_or_else(|e| e)
}

struct Ctx<'a> {
    shared: &'a Shared,
    state: &'a std::sync::Mutex<NeuronState>,
    auth: bool,
}

// ---- body helpers: a missing or mistyped field is 400 {"error":1002}, as Neuron's decoder says ----

fn body(req: &SimRequest) -> Result<Map<String, Value>, Response> {
    match req.json() {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(error(1002)),
    }
}

fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, Response> {
    m.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| error(1002))
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, Response> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(error(1002)),
    }
}

fn req_u64(m: &Map<String, Value>, key: &str) -> Result<u64, Response> {
    m.get(key).and_then(Value::as_u64).ok_or_else(|| error(1002))
}

fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, Response> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| error(1002)),
    }
}

fn opt_f64(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, Response> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| error(1002)),
    }
}

/// A required query parameter; missing or empty is 400 {"error":1003}.
fn query<'r>(req: &'r SimRequest, key: &str) -> Result<&'r str, Response> {
    req.query(key).filter(|v| !v.is_empty()).ok_or_else(|| error(1003))
}

fn check_name(name: &str, too_long: i64) -> Result<(), Response> {
    if name.is_empty() {
        return Err(error(1002));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(error(too_long));
    }
    Ok(())
}

// ---- handlers ----

fn login(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
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

fn ping(_ctx: &Ctx<'_>, _req: &SimRequest) -> Reply {
    Ok(reply(StatusCode::OK, &json!({})))
}

fn version(ctx: &Ctx<'_>, _req: &SimRequest) -> Reply {
    let version = ctx.shared.config.version.as_deref().unwrap_or(VERSION);
    Ok(reply(StatusCode::OK, &json!({ "version": version, "revision": REVISION, "build_date": BUILD_DATE })))
}

fn plugins(ctx: &Ctx<'_>, _req: &SimRequest) -> Reply {
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

fn node(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
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

fn node_setting(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
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

fn node_ctl(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
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

fn node_state(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
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

fn group(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    if req.method == Method::GET {
        let state = lock(ctx.state);
        if let Some(name) = req.query("node").filter(|n| !n.is_empty()) {
            let node = state.nodes.get(name).ok_or_else(|| error(2003))?;
            let groups: Vec<Value> =
                node.groups.iter().map(|(g, grp)| json!({ "name": g, "interval": grp.interval, "tag_count": grp.tags.len() })).collect();
            return Ok(reply(StatusCode::OK, &json!({ "groups": groups })));
        }
        let groups: Vec<Value> = state
            .nodes
            .values()
            .flat_map(|n| {
                n.groups
                    .iter()
                    .map(move |(g, grp)| json!({ "driver": n.name, "group": g, "interval": grp.interval, "tag_count": grp.tags.len() }))
            })
            .collect();
        return Ok(reply(StatusCode::OK, &json!({ "groups": groups })));
    }
    let m = body(req)?;
    let node_name = req_str(&m, "node")?;
    let group_name = req_str(&m, "group")?;
    let (interval, new_name) = match req.method {
        Method::POST => (Some(req_u64(&m, "interval")?), None),
        Method::PUT => (opt_u64(&m, "interval")?, opt_str(&m, "new_name")?),
        _ => (None, None),
    };
    let mut state = lock(ctx.state);
    let node = state.nodes.get_mut(&node_name).ok_or_else(|| error(2003))?;
    if node.node_type == NodeType::App {
        return Err(error(2103));
    }
    if interval.is_some_and(|i| i < MIN_GROUP_INTERVAL) {
        return Err(error(2105));
    }
    match req.method {
        Method::POST => {
            if group_name.is_empty() {
                return Err(error(2105));
            }
            check_name(&group_name, 2107)?;
            if node.groups.contains_key(&group_name) {
                return Err(error(2104));
            }
            node.groups.insert(group_name, NeuronGroup { interval: interval.unwrap_or(DEFAULT_GROUP_INTERVAL), tags: Vec::new() });
            Ok(ok())
        }
        Method::PUT => {
            if !node.groups.contains_key(&group_name) {
                return Err(error(2106));
            }
            if let Some(new_name) = new_name.filter(|n| *n != group_name) {
                check_name(&new_name, 2107)?;
                if node.groups.contains_key(&new_name) {
                    return Err(error(2104));
                }
                let g = node.groups.remove(&group_name).unwrap_or_default();
                node.groups.insert(new_name.clone(), g);
                if let Some(i) = interval {
                    node.groups.entry(new_name).or_default().interval = i;
                }
            } else if let (Some(i), Some(g)) = (interval, node.groups.get_mut(&group_name)) {
                g.interval = i;
            }
            Ok(ok())
        }
        _ => match node.groups.remove(&group_name) {
            Some(_) => Ok(ok()),
            None => Err(error(2106)),
        },
    }
}

fn tag_json(t: &NeuronTag) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), t.name.clone().into());
    m.insert("type".into(), t.data_type.into());
    m.insert("address".into(), t.address.clone().into());
    m.insert("attribute".into(), t.attribute.into());
    m.insert("description".into(), t.description.clone().into());
    m.insert("precision".into(), t.precision.into());
    m.insert("decimal".into(), json!(t.decimal));
    m.insert("bias".into(), json!(t.bias));
    m.insert("unit".into(), t.unit.clone().into());
    if t.attribute & 8 != 0
        && let Some(v) = &t.value
    {
        m.insert("value".into(), v.clone());
    }
    Value::Object(m)
}

/// Decodes one tag of a POST/PUT body: missing or mistyped required fields fail the whole body
/// (1002); range and format problems are per tag (the index reports where the batch stopped).
fn decode_tag(v: &Value) -> Result<NeuronTag, Response> {
    let Value::Object(m) = v else { return Err(error(1002)) };
    let attribute = req_u64(m, "attribute")?;
    let data_type = req_u64(m, "type")?;
    Ok(NeuronTag {
        name: req_str(m, "name")?,
        address: req_str(m, "address")?,
        attribute: u8::try_from(attribute).unwrap_or(u8::MAX),
        data_type: u8::try_from(data_type).unwrap_or(u8::MAX),
        precision: opt_u64(m, "precision")?.unwrap_or(0),
        decimal: opt_f64(m, "decimal")?.unwrap_or(0.0),
        bias: opt_f64(m, "bias")?.unwrap_or(0.0),
        description: opt_str(m, "description")?.unwrap_or_default(),
        unit: opt_str(m, "unit")?.unwrap_or_default(),
        value: m.get("value").cloned(),
    })
}

/// Per-tag validation; returns the Neuron error code.
fn validate_tag(t: &NeuronTag, plugin: &str) -> Result<(), i64> {
    if t.name.is_empty() || t.name.chars().count() > MAX_NAME_LEN {
        return Err(2206);
    }
    if t.address.chars().count() > MAX_ADDRESS_LEN {
        return Err(2207);
    }
    if t.description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(2208);
    }
    if t.attribute == 0 || t.attribute > 15 {
        return Err(2203);
    }
    if t.attribute & 8 != 0 && t.value.is_none() {
        return Err(2203);
    }
    if !(1..=40).contains(&t.data_type) || t.data_type == 15 {
        return Err(2204);
    }
    if t.precision > 17 {
        return Err(2209);
    }
    if t.attribute & 8 == 0 && !address_ok(plugin, &t.address) {
        return Err(2205);
    }
    Ok(())
}

/// Modbus addresses are `<slave>!<register>` with optional suffixes (`1!400001`, `1!400001.2`,
/// `1!400001#B`); other drivers take any non-empty address.
fn address_ok(plugin: &str, address: &str) -> bool {
    if !plugin.starts_with("Modbus") {
        return !address.is_empty();
    }
    let Some((slave, rest)) = address.split_once('!') else { return false };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    !slave.is_empty() && slave.chars().all(|c| c.is_ascii_digit()) && digits > 0
}

fn tags(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    if req.method == Method::GET {
        let node_name = query(req, "node")?;
        let group_name = query(req, "group")?;
        let state = lock(ctx.state);
        let node = state.nodes.get(node_name).ok_or_else(|| error(2003))?;
        let group = node.groups.get(group_name).ok_or_else(|| error(2106))?;
        let name = req.query("name").unwrap_or("");
        let list: Vec<Value> = group.tags.iter().filter(|t| t.name.contains(name)).map(tag_json).collect();
        return Ok(reply(StatusCode::OK, &json!({ "tags": list })));
    }
    let m = body(req)?;
    let node_name = req_str(&m, "node")?;
    let group_name = req_str(&m, "group")?;
    let Some(Value::Array(items)) = m.get("tags") else { return Err(error(1002)) };

    if req.method == Method::DELETE {
        let names: Vec<String> =
            items.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| error(1002))).collect::<Result<_, _>>()?;
        let mut state = lock(ctx.state);
        let node = state.nodes.get_mut(&node_name).ok_or_else(|| error(2003))?;
        let group = node.groups.get_mut(&group_name).ok_or_else(|| error(2106))?;
        group.tags.retain(|t| !names.contains(&t.name));
        return Ok(ok());
    }

    let decoded: Vec<NeuronTag> = items.iter().map(decode_tag).collect::<Result<_, _>>()?;
    let mut state = lock(ctx.state);
    let node = state.nodes.get_mut(&node_name).ok_or_else(|| error(2003))?;
    if node.node_type == NodeType::App {
        return Err(error(2103));
    }
    let plugin = node.plugin.clone();
    let group = if req.method == Method::POST {
        // Neuron creates the group when tags arrive for one that does not exist (reference §8).
        node.groups.entry(group_name).or_insert_with(|| NeuronGroup { interval: DEFAULT_GROUP_INTERVAL, tags: Vec::new() })
    } else {
        node.groups.get_mut(&group_name).ok_or_else(|| error(2106))?
    };
    let mut index = 0usize;
    let mut code = 0i64;
    for tag in decoded {
        if let Err(c) = validate_tag(&tag, &plugin) {
            code = c;
            break;
        }
        let existing = group.tags.iter().position(|t| t.name == tag.name);
        match (req.method == Method::POST, existing) {
            (true, Some(_)) => {
                code = 2202;
                break;
            }
            (true, None) => group.tags.push(tag),
            (false, Some(i)) => group.tags[i] = tag,
            (false, None) => {
                code = 2201;
                break;
            }
        }
        index += 1;
    }
    Ok(reply(status_of(code), &json!({ "index": index, "error": code })))
}

fn default_value(data_type: u8) -> Value {
    match data_type {
        9 | 10 => json!(0.0),
        11 | 12 => json!(false),
        13 => json!(""),
        14 => json!([]),
        _ => json!(0),
    }
}

fn read(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let m = body(req)?;
    let node_name = req_str(&m, "node")?;
    let group_name = req_str(&m, "group")?;
    let name = opt_str(&m, "name")?.unwrap_or_default();
    let state = lock(ctx.state);
    let node = state.nodes.get(&node_name).ok_or_else(|| error(2003))?;
    let group = node.groups.get(&group_name).ok_or_else(|| error(2106))?;
    let down = match (node.state, node.connected) {
        (NodeRunState::Running, true) => None,
        (NodeRunState::Running, false) => Some(3002),
        _ => Some(3010),
    };
    let list: Vec<Value> = group
        .tags
        .iter()
        .filter(|t| t.name.contains(&name))
        .map(|t| match down {
            // A static tag answers even while the device is down.
            Some(code) if t.attribute & 8 == 0 => json!({ "name": t.name, "error": code }),
            _ => json!({ "name": t.name, "value": t.value.clone().unwrap_or_else(|| default_value(t.data_type)) }),
        })
        .collect();
    Ok(reply(StatusCode::OK, &json!({ "tags": list })))
}

fn write(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let m = body(req)?;
    let node_name = req_str(&m, "node")?;
    let group_name = req_str(&m, "group")?;
    let tag_name = req_str(&m, "tag")?;
    let value = m.get("value").cloned().ok_or_else(|| error(1002))?;
    let mut state = lock(ctx.state);
    let node = state.nodes.get_mut(&node_name).ok_or_else(|| error(2003))?;
    let running = node.state == NodeRunState::Running && node.connected;
    let group = node.groups.get_mut(&group_name).ok_or_else(|| error(2106))?;
    let tag = group.tags.iter_mut().find(|t| t.name == tag_name).ok_or_else(|| error(2201))?;
    if tag.attribute & 2 == 0 {
        return Err(error(3004));
    }
    if !running {
        // Not every 3xxx is HTTP 200: a write to a device that is down is 400 (reference §8).
        return Err(reply(StatusCode::BAD_REQUEST, &json!({ "error": 3002 })));
    }
    tag.value = Some(value);
    Ok(ok())
}

fn metrics(ctx: &Ctx<'_>, req: &SimRequest) -> Reply {
    let category = req.query("category").unwrap_or("");
    let (global, node_type) = match category {
        "" => (true, None),
        "global" => (true, Some(None)),
        "driver" => (false, Some(Some(NodeType::Driver))),
        "app" => (false, Some(Some(NodeType::App))),
        _ => return Err(error(1003)),
    };
    let state = lock(ctx.state);
    let node_filter = req.query("node").filter(|n| !n.is_empty());
    if let Some(n) = node_filter
        && !state.nodes.contains_key(n)
    {
        return Err(error(2003));
    }
    let mut out = String::new();
    if global && node_filter.is_none() {
        let count = |t: NodeType, pred: &dyn Fn(&NeuronNode) -> bool| state.nodes.values().filter(|n| n.node_type == t && pred(n)).count();
        let gauges: [(&str, &str, String); 12] = [
            ("core_dumped", "Whether there is any core dump, 0 or 1", "0".into()),
            ("uptime_seconds", "Uptime in seconds", ctx.shared.started.elapsed().as_secs().to_string()),
            ("north_nodes_total", "Number of north nodes", count(NodeType::App, &|_| true).to_string()),
            (
                "north_running_nodes_total",
                "Number of north nodes in running state",
                count(NodeType::App, &|n| n.state == NodeRunState::Running).to_string(),
            ),
            ("north_disconnected_nodes_total", "Number of north nodes disconnected", count(NodeType::App, &|n| !n.connected).to_string()),
            ("south_nodes_total", "Number of south nodes", count(NodeType::Driver, &|_| true).to_string()),
            (
                "south_running_nodes_total",
                "Number of south nodes in running state",
                count(NodeType::Driver, &|n| n.state == NodeRunState::Running).to_string(),
            ),
            (
                "south_disconnected_nodes_total",
                "Number of south nodes disconnected",
                count(NodeType::Driver, &|n| !n.connected).to_string(),
            ),
            ("cpu_percent", "Total CPU utilisation percentage", "0".into()),
            ("cpu_cores", "Number of CPU cores", "2".into()),
            ("mem_total_bytes", "Total installed memory in bytes", "25769803776".into()),
            ("mem_used_bytes", "Total used memory in bytes", "1073741824".into()),
        ];
        for (name, help, value) in gauges {
            let kind = if name == "uptime_seconds" { "counter" } else { "gauge" };
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        }
    }
    if node_type != Some(None) {
        // One block per node, each with its own HELP/TYPE lines: the repeated family headers that
        // strict Prometheus parsers reject (reference §8).
        for n in state.nodes.values() {
            if node_filter.is_some_and(|f| f != n.name) || node_type.flatten().is_some_and(|t| t != n.node_type) {
                continue;
            }
            let label = format!("node=\"{}\"", n.name);
            let mut family = |name: &str, kind: &str, help: &str, value: String| {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{label}}} {value}\n");
            };
            family("node_type", "gauge", "Driver(1) or APP(2)", n.node_type.code().to_string());
            family("node_running_state", "gauge", "Node running state", n.state.code().to_string());
            family("node_link_state", "gauge", "Node link state", u8::from(n.connected).to_string());
            family("last_rtt_ms", "gauge", "Last request round trip time in milliseconds", n.rtt_ms.to_string());
            family("send_msgs_total", "counter", "Total number of messages sent", "0".into());
            if n.node_type == NodeType::Driver {
                family("tag_reads_total", "counter", "Total number of tag reads including errors", "0".into());
                family("tag_read_errors_total", "counter", "Total number of tag read errors", "0".into());
                for (g, grp) in &n.groups {
                    let _ = write!(
                        out,
                        "# HELP group_tags_total Total number of tags in the group\n# TYPE group_tags_total gauge\n\
                         group_tags_total{{{label},group=\"{g}\"}} {}\n",
                        grp.tags.len()
                    );
                }
            }
        }
    }
    Ok(reply::respond(StatusCode::OK, &[(CONTENT_TYPE, "text/plain"), (HeaderName::from_static("access-control-allow-origin"), "*")], out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping_follows_neuron() {
        assert_eq!(status_of(0), StatusCode::OK);
        assert_eq!(status_of(2005), StatusCode::OK);
        assert_eq!(status_of(3010), StatusCode::OK);
        assert_eq!(status_of(1002), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(2206), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(1005), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(1006), StatusCode::FORBIDDEN);
        assert_eq!(status_of(2301), StatusCode::NOT_FOUND);
        assert_eq!(status_of(2002), StatusCode::CONFLICT);
        assert_eq!(status_of(1001), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn modbus_addresses() {
        assert!(address_ok("Modbus TCP", "1!400001"));
        assert!(address_ok("Modbus TCP", "1!400001.2"));
        assert!(!address_ok("Modbus TCP", "400001"));
        assert!(!address_ok("Modbus TCP", "x!1"));
        assert!(address_ok("OPC UA", "ns=2;s=x"));
    }
}
