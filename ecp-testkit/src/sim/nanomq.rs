//! NanoMQ 0.25's HTTP API v4 (:8081, `/api/v4`).
//!
//! Quirks kept (reference §5, §8, NanoMQ `nanomq/rest_api.c`): every path needs HTTP Basic (401
//! `{"code":104}` when missing or not Basic, `{"code":103}` when wrong); errors are `{"code":N}`
//! without a message and carry the *request's* content type (so none for a plain GET); an unknown
//! path or a known method on the wrong path is 404 `{"code":102}`, other methods 405; clients use
//! `client_id`, subscriptions `clientid`; an unknown client id lists nothing instead of a 404;
//! `/metrics` has no `code` and a string `memory`; a publish without a topic is 200
//! `{"code":108}`; an unknown configuration section is 404 `{"code":101,"data":{}}` (the handler
//! always adds `data`); paths outside `/api/v4` get NNG's HTML 404.

use std::fmt::Write as _;

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::SimConfig;
use super::reply::{self, SimRequest, nanomq_code};
use super::server::Shared;
use super::token::lock;

/// The version `/brokers` and `/nodes` report.
pub(crate) const VERSION: &str = "0.25.6";
const DEFAULT_PUBLISH_CLIENT: &str = "NanoMQ-HTTP-Client";
/// The keys of `basic` that `/reload` shows and changes.
const RELOAD_KEYS: [&str; 7] =
    ["property_size", "max_packet_size", "client_max_packet_size", "msq_len", "qos_duration", "keepalive_backoff", "allow_anonymous"];

/// A connected (or remembered) MQTT client.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NanomqClient {
    /// The client id (`client_id` on the wire).
    pub client_id: String,
    /// The user name, empty when none.
    pub username: String,
    /// Keep-alive in seconds.
    pub keepalive: u16,
    /// Whether the client is connected (`conn_state` `connected`/`disconnected`).
    pub connected: bool,
    /// Clean start flag.
    pub clean_start: bool,
    /// `MQTT`.
    pub proto_name: String,
    /// 4 (3.1.1) or 5.
    pub proto_ver: u8,
    /// Will topic, if any.
    pub will_topic: Option<String>,
    /// Will message, if any.
    pub will_msg: Option<String>,
}

impl NanomqClient {
    /// A connected MQTT 5 client with a clean start and a 60 s keep-alive.
    pub fn new(client_id: impl Into<String>, username: impl Into<String>) -> Self {
        NanomqClient {
            client_id: client_id.into(),
            username: username.into(),
            keepalive: 60,
            connected: true,
            clean_start: true,
            proto_name: "MQTT".to_owned(),
            proto_ver: 5,
            will_topic: None,
            will_msg: None,
        }
    }
}

/// A subscription of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NanomqSubscription {
    /// The subscriber (`clientid` on the wire).
    pub client_id: String,
    /// The topic filter.
    pub topic: String,
    /// Granted QoS.
    pub qos: u8,
}

impl NanomqSubscription {
    /// A subscription of `client_id` to `topic` at `qos`.
    pub fn new(client_id: impl Into<String>, topic: impl Into<String>, qos: u8) -> Self {
        NanomqSubscription { client_id: client_id.into(), topic: topic.into(), qos }
    }
}

/// A message published through `POST /api/v4/mqtt/publish` (one per topic).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PublishedMessage {
    /// The topic.
    pub topic: String,
    /// The payload as sent (before base64 decoding).
    pub payload: String,
    /// `plain` or `base64`.
    pub encoding: String,
    /// QoS 0–2.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// The client id it is published as (`NanoMQ-HTTP-Client` when none was given).
    pub client_id: String,
    /// MQTT 5 properties (`response_topic`, `correlation_data`, `user_properties`…), if given.
    pub properties: Option<Value>,
}

/// Everything a simulated NanoMQ holds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NanomqState {
    /// Clients; the simulator has no MQTT listener, so tests add them.
    pub clients: Vec<NanomqClient>,
    /// Subscriptions; tests add them too.
    pub subscriptions: Vec<NanomqSubscription>,
    /// Messages published over HTTP, oldest first.
    pub published: Vec<PublishedMessage>,
    /// Configuration sections (`basic`, `tls`, `auth`, `auth_http`, `websocket`, `http_server`,
    /// `sqlite`, `bridge`) as `GET /configuration` shows them.
    pub configuration: Map<String, Value>,
    /// `enable_mqtt_stream` and `bridge_mode`, shown by `/reload` next to the `basic` keys.
    pub reload_flags: Map<String, Value>,
    /// Entries of `/metrics`'s `metrics` array (one per enabled bridge); empty by default.
    pub bridge_metrics: Vec<Value>,
}

impl NanomqState {
    pub(crate) fn new(config: &SimConfig, port: u16) -> Self {
        let tls = |url: Option<&str>| {
            json!({ "enable": false, "url": url, "key_password": null, "key": null, "cert": null, "cacert": null,
                    "verify_peer": false, "fail_if_no_peer_cert": false })
        };
        let req = || json!({ "url": null, "method": "post", "headers": {}, "params": [], "tls": tls(None) });
        let configuration = json!({
            "basic": {
                "url": "nmq-tcp://0.0.0.0:1883", "num_taskq_thread": 0, "max_taskq_thread": 0, "parallel": 0,
                "property_size": 32, "daemon": false, "max_packet_size": 10240, "client_max_packet_size": 10240,
                "msq_len": 2048, "qos_duration": 10, "keepalive_backoff": 1.25, "allow_anonymous": true, "ipc_internal": true,
            },
            "tls": tls(Some("tls+nmq-tcp://0.0.0.0:8883")),
            "auth": [{ "login": "admin", "password": "public" }],
            "auth_http": { "enable": false, "timeout": 5, "connect_timeout": 5, "pool_size": 32,
                           "auth_req": req(), "acl_req": req(), "super_req": req() },
            "websocket": { "enable": true, "url": "nmq-ws://0.0.0.0:8083/mqtt", "tls_url": "nmq-wss://0.0.0.0:8086/mqtt" },
            "http_server": { "enable": true, "port": port, "addr": "0.0.0.0", "username": config.username,
                             "password": config.password, "auth_type": "basic" },
            "sqlite": { "enable": false, "disk_cache_size": 102400, "flush_mem_threshold": 100, "resend_interval": 5000,
                        "mounted_file_path": "/tmp/" },
            "bridge": { "nodes": [] },
        });
        let Value::Object(configuration) = configuration else { unreachable!("a JSON object literal") };
        let mut reload_flags = Map::new();
        reload_flags.insert("enable_mqtt_stream".into(), json!(false));
        reload_flags.insert("bridge_mode".into(), json!(false));
        NanomqState {
            clients: Vec::new(),
            subscriptions: Vec::new(),
            published: Vec::new(),
            configuration,
            reload_flags,
            bridge_metrics: Vec::new(),
        }
    }

    fn reload_view(&self) -> Map<String, Value> {
        let basic = self.configuration.get("basic").and_then(Value::as_object);
        let mut m: Map<String, Value> =
            RELOAD_KEYS.iter().filter_map(|k| basic.and_then(|b| b.get(*k)).map(|v| ((*k).to_owned(), v.clone()))).collect();
        m.extend(self.reload_flags.clone());
        m
    }
}

type Reply = Result<Response, Response>;

fn ok_json(value: &Value) -> Response {
    reply::json(StatusCode::OK, "application/json", value)
}

fn data(value: Value) -> Response {
    ok_json(&json!({ "code": 0, "data": value }))
}

/// Serves the whole path.
pub(crate) fn handle(shared: &Shared, req: &SimRequest) -> Response {
    let Some(state) = shared.nanomq.as_ref() else { return reply::nng_error_page(StatusCode::NOT_FOUND) };
    let Some(mut segs) = reply::segments(&req.path, "/api/v4") else { return reply::nng_error_page(StatusCode::NOT_FOUND) };
    let ct = req.content_type();
    if shared.config.auth {
        let header = req.header("authorization").unwrap_or("");
        let Some(encoded) = header.strip_prefix("Basic ").map(str::trim).filter(|e| !e.is_empty()) else {
            return nanomq_code(StatusCode::UNAUTHORIZED, 104, ct);
        };
        let expected = format!("{}:{}", shared.config.username, shared.config.password);
        if STANDARD.decode(encoded).ok().as_deref() != Some(expected.as_bytes()) {
            return nanomq_code(StatusCode::UNAUTHORIZED, 103, ct);
        }
    }
    // A trailing slash is accepted (`/brokers/`).
    if segs.last().is_some_and(String::is_empty) {
        segs.pop();
    }
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let not_found = || nanomq_code(StatusCode::NOT_FOUND, 102, ct);
    let mut state = lock(state);
    let result = match (req.method.as_str(), segs.as_slice()) {
        ("GET", []) => Ok(endpoints()),
        ("GET", ["brokers"]) => Ok(data(json!([{
            "datetime": datetime(), "node_status": "Running", "sysdescr": "NanoMQ Broker", "uptime": uptime(shared), "version": shared.config.version.as_deref().unwrap_or(VERSION),
        }]))),
        ("GET", ["brokers", "connections"]) => Ok(ok_json(&json!({ "connections": connections(&state) }))),
        ("GET", ["nodes"]) => Ok(data(json!([{
            "connections": connections(&state), "node_status": "Running", "uptime": uptime(shared), "version": shared.config.version.as_deref().unwrap_or(VERSION),
        }]))),
        ("GET", ["clients"]) => Ok(clients(&state, req, None, None)),
        ("GET", ["clients", id]) => Ok(clients(&state, req, Some(id), None)),
        ("GET", ["clients", "username", user]) => Ok(clients(&state, req, None, Some(user))),
        ("GET", ["subscriptions"]) => Ok(subscriptions(&state, None)),
        ("GET", ["subscriptions", id]) => Ok(subscriptions(&state, Some(id))),
        ("GET", ["topic-tree"]) => Ok(data(topic_tree(&state.subscriptions))),
        ("GET", ["metrics"]) => Ok(ok_json(&json!({
            "metrics": state.bridge_metrics, "cpuinfo": "0.00%", "memory": "20049920", "connections": connections(&state),
        }))),
        ("GET", ["prometheus"]) => Ok(prometheus(&state)),
        ("GET", ["reload"]) => Ok(data(Value::Object(state.reload_view()))),
        ("POST", ["reload"]) => post_reload(&mut state, req),
        ("GET", ["configuration"]) => Ok(data(Value::Object(state.configuration.clone()))),
        ("GET", ["configuration", section]) => Ok(get_section(&state, section)),
        ("POST", ["configuration"]) => post_configuration(&mut state, req, None),
        ("POST", ["configuration", section]) => post_configuration(&mut state, req, Some(section)),
        ("POST", ["mqtt", "publish"]) => publish(&mut state, req),
        ("GET" | "POST" | "PUT" | "DELETE", _) => Err(not_found()),
        _ => Err(nanomq_code(StatusCode::METHOD_NOT_ALLOWED, 102, ct)),
    };
    result.unwrap_or_else(|e| e)
}

fn endpoints() -> Response {
    let eps = [
        ("/brokers/", "list_brokers", "GET", "A list of brokers in the cluster"),
        ("/brokers/connections", "get_active_connections_number", "GET", "Get number of active connections in all brokers"),
        ("/nodes/", "list_nodes", "GET", "A list of nodes in the cluster"),
        ("/clients/", "list_clients", "GET", "A list of clients on current node"),
        ("/clients/:clientid", "lookup_client", "GET", "Lookup a client in the cluster"),
        ("/clients/username/:username", "lookup_client_via_username", "GET", "Lookup a client via username in the cluster"),
        ("/subscriptions/", "list_subscriptions", "GET", "A list of subscriptions in the cluster"),
        ("/subscriptions/:clientid", "lookup_client_subscriptions", "GET", "A list of subscriptions of a client"),
        ("/mqtt/publish", "mqtt_publish", "POST", "Publish a MQTT message"),
        ("/topic-tree/", "list_topic-tree", "GET", "A list of topic-tree in the cluster"),
        ("/reload/", "get_hot_updatable_configuration", "GET", "show the configuration that can be hot updated"),
        ("/reload/", "set_hot_updatable_configuration", "POST", "set the configuration that can be hot updated"),
        ("/configuration/", "get_broker_configuration", "GET", "show all configuration of broker"),
        ("/configuration/", "set_broker_configuration", "POST", "set broker configuration"),
        ("/metrics", "metrics", "GET", "Returns all statistical metrics"),
        ("/prometheus", "prometheus", "GET", "Returns all prometheus data"),
    ];
    let list: Vec<Value> =
        eps.iter().map(|(path, name, method, descr)| json!({ "path": path, "name": name, "method": method, "descr": descr })).collect();
    data(json!(list))
}

fn connections(state: &NanomqState) -> usize {
    state.clients.iter().filter(|c| c.connected).count()
}

fn uptime(shared: &Shared) -> String {
    let secs = shared.started.elapsed().as_secs();
    format!("{} Hours, {} minutes, {} seconds", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC; NanoMQ uses the host's local time).
fn datetime() -> String {
    let secs = reply::unix_millis().div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

fn client_json(c: &NanomqClient) -> Value {
    let mut m = Map::new();
    m.insert("client_id".into(), json!(c.client_id));
    m.insert("username".into(), json!(c.username));
    m.insert("keepalive".into(), json!(c.keepalive));
    m.insert("conn_state".into(), json!(if c.connected { "connected" } else { "disconnected" }));
    m.insert("clean_start".into(), json!(c.clean_start));
    m.insert("proto_name".into(), json!(c.proto_name));
    m.insert("proto_ver".into(), json!(c.proto_ver));
    if let Some(t) = &c.will_topic {
        m.insert("will_topic".into(), json!(t));
    }
    if let Some(w) = &c.will_msg {
        m.insert("will_msg".into(), json!(w));
    }
    Value::Object(m)
}

fn clients(state: &NanomqState, req: &SimRequest, id: Option<&str>, user: Option<&str>) -> Response {
    let q = |k: &str| req.query(k).filter(|v| !v.is_empty());
    let id = id.or_else(|| q("clientid")).or_else(|| q("client_id"));
    let user = user.or_else(|| q("username"));
    let list: Vec<Value> = state
        .clients
        .iter()
        .filter(|c| id.is_none_or(|i| c.client_id == i))
        .filter(|c| user.is_none_or(|u| c.username == u))
        .filter(|c| q("conn_state").is_none_or(|s| s == if c.connected { "connected" } else { "disconnected" }))
        .filter(|c| q("clean_start").is_none_or(|s| s == c.clean_start.to_string()))
        .filter(|c| q("proto_name").is_none_or(|s| s == c.proto_name))
        .filter(|c| q("proto_ver").is_none_or(|s| s == c.proto_ver.to_string()))
        .map(client_json)
        .collect();
    data(json!(list))
}

fn subscriptions(state: &NanomqState, id: Option<&str>) -> Response {
    let list: Vec<Value> = state
        .subscriptions
        .iter()
        .filter(|s| id.is_none_or(|i| s.client_id == i))
        .map(|s| json!({ "clientid": s.client_id, "topic": s.topic, "qos": s.qos }))
        .collect();
    data(json!(list))
}

/// One array per tree level: the root (`""`), then each level's topic segments. `cld_cnt` counts
/// child segments plus subscribers ending there; `clientid` lists those subscribers.
fn topic_tree(subs: &[NanomqSubscription]) -> Value {
    #[derive(Default)]
    struct Node {
        topic: String,
        children: Vec<usize>,
        clients: Vec<String>,
    }
    let mut nodes = vec![Node::default()];
    for s in subs {
        let mut at = 0;
        for seg in s.topic.split('/') {
            let found = nodes[at].children.iter().copied().find(|&c| nodes[c].topic == seg);
            at = match found {
                Some(c) => c,
                None => {
                    nodes.push(Node { topic: seg.to_owned(), ..Node::default() });
                    let c = nodes.len() - 1;
                    nodes[at].children.push(c);
                    c
                }
            };
        }
        nodes[at].clients.push(s.client_id.clone());
    }
    let mut levels = Vec::new();
    let mut level = vec![0usize];
    while !level.is_empty() {
        levels.push(Value::Array(
            level
                .iter()
                .map(|&i| json!({ "topic": nodes[i].topic, "cld_cnt": nodes[i].children.len() + nodes[i].clients.len(), "clientid": nodes[i].clients }))
                .collect(),
        ));
        level = level.iter().flat_map(|&i| nodes[i].children.clone()).collect();
    }
    Value::Array(levels)
}

/// NanoMQ's exposition text, `# TYPE` before `# HELP` and a bare `# HELP` line, as it writes it.
fn prometheus(state: &NanomqState) -> Response {
    let connections = connections(state);
    let sessions = state.clients.len();
    let topics = {
        let mut t: Vec<&str> = state.subscriptions.iter().map(|s| s.topic.as_str()).collect();
        t.sort_unstable();
        t.dedup();
        t.len()
    };
    let subscribers = {
        let mut c: Vec<&str> = state.subscriptions.iter().map(|s| s.client_id.as_str()).collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    let received = state.published.len();
    let metrics: [(&str, &str, &str, String); 15] = [
        ("nanomq_connections_count", "gauge", "", connections.to_string()),
        ("nanomq_connections_max", "gauge", "", connections.to_string()),
        ("nanomq_sessions_count", "gauge", "", sessions.to_string()),
        ("nanomq_sessions_max", "gauge", "", sessions.to_string()),
        ("nanomq_topics_count", "gauge", "", topics.to_string()),
        ("nanomq_topics_max", "gauge", "", topics.to_string()),
        ("nanomq_subscribers_count", "gauge", "", subscribers.to_string()),
        ("nanomq_subscribers_max", "gauge", "", subscribers.to_string()),
        ("nanomq_messages_received", "counter", "", received.to_string()),
        ("nanomq_messages_sent", "counter", "", "0".to_owned()),
        ("nanomq_messages_dropped", "counter", "", "0".to_owned()),
        ("nanomq_memory_usage", "gauge", " (b)", "20049920".to_owned()),
        ("nanomq_memory_usage_max", "gauge", " (b)", "20049920".to_owned()),
        ("nanomq_cpu_usage", "gauge", " (%)", "0.00".to_owned()),
        ("nanomq_cpu_usage_max", "gauge", " (%)", "0.00".to_owned()),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in metrics {
        let _ = write!(out, "# TYPE {name} {kind}\n# HELP {name}{help}\n{name} {value}\n");
    }
    reply::respond(StatusCode::OK, &[(http::header::CONTENT_TYPE, "text/plain")], out)
}

fn json_body(req: &SimRequest) -> Result<Map<String, Value>, Response> {
    match req.json() {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(nanomq_code(StatusCode::BAD_REQUEST, 109, req.content_type())),
    }
}

fn post_reload(state: &mut NanomqState, req: &SimRequest) -> Reply {
    let body = json_body(req)?;
    if let Some(Value::Object(new)) = body.get("data") {
        for (k, v) in new {
            if RELOAD_KEYS.contains(&k.as_str()) {
                if let Some(Value::Object(basic)) = state.configuration.get_mut("basic")
                    && basic.get(k).is_some_and(|old| same_kind(old, v))
                {
                    basic.insert(k.clone(), v.clone());
                }
            } else if state.reload_flags.get(k).is_some_and(|old| same_kind(old, v)) {
                state.reload_flags.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(ok_json(&json!({ "code": 0 })))
}

fn same_kind(a: &Value, b: &Value) -> bool {
    matches!((a, b), (Value::Bool(_), Value::Bool(_)) | (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)))
}

fn get_section(state: &NanomqState, section: &str) -> Response {
    match state.configuration.get(section) {
        Some(v) => {
            let mut m = Map::new();
            m.insert(section.to_owned(), v.clone());
            data(Value::Object(m))
        }
        None => reply::json(StatusCode::NOT_FOUND, "application/json", &json!({ "code": 101, "data": {} })),
    }
}

/// `{"data":{"basic":{…},…}}`: each known section present is merged key by key (for `auth`, the
/// array replaces the old one). With a section in the path only that one is read.
fn post_configuration(state: &mut NanomqState, req: &SimRequest, only: Option<&str>) -> Reply {
    let body = json_body(req)?;
    if let Some(Value::Object(new)) = body.get("data") {
        for (section, value) in new {
            if only.is_some_and(|o| o != section) || section == "bridge" {
                continue;
            }
            match (state.configuration.get_mut(section), value) {
                (Some(Value::Object(old)), Value::Object(new)) => {
                    for (k, v) in new {
                        old.insert(k.clone(), v.clone());
                    }
                }
                (Some(old @ Value::Array(_)), Value::Array(_)) => *old = value.clone(),
                _ => {}
            }
        }
    }
    Ok(ok_json(&json!({ "code": 0 })))
}

fn publish(state: &mut NanomqState, req: &SimRequest) -> Reply {
    let body = json_body(req)?;
    let param_error = || ok_json(&json!({ "code": 108 }));
    let topics: Vec<String> = match (body.get("topic").and_then(Value::as_str), body.get("topics").and_then(Value::as_str)) {
        (Some(t), _) => vec![t.to_owned()],
        (None, Some(ts)) => ts.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        (None, None) => return Err(param_error()),
    };
    let Some(payload) = body.get("payload").and_then(Value::as_str) else { return Err(param_error()) };
    if topics.is_empty() || topics.iter().any(|t| t.contains(['+', '#'])) {
        return Err(param_error());
    }
    let qos = body.get("qos").and_then(Value::as_u64).unwrap_or(0);
    if qos > 2 {
        return Err(param_error());
    }
    for topic in topics {
        state.published.push(PublishedMessage {
            topic,
            payload: payload.to_owned(),
            encoding: body.get("encoding").and_then(Value::as_str).unwrap_or("plain").to_owned(),
            qos: qos as u8,
            retain: body.get("retain").and_then(Value::as_bool).unwrap_or(false),
            client_id: body.get("clientid").and_then(Value::as_str).unwrap_or(DEFAULT_PUBLISH_CLIENT).to_owned(),
            properties: body.get("properties").filter(|p| p.is_object()).cloned(),
        });
    }
    Ok(ok_json(&json!({ "code": 0 })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_tree_levels() {
        let subs = vec![NanomqSubscription::new("c1", "topic123", 2)];
        assert_eq!(
            topic_tree(&subs),
            json!([[{ "topic": "", "cld_cnt": 1, "clientid": [] }], [{ "topic": "topic123", "cld_cnt": 1, "clientid": ["c1"] }]])
        );
        let subs = vec![NanomqSubscription::new("c1", "a/b", 0), NanomqSubscription::new("c2", "a/c", 1)];
        let tree = topic_tree(&subs);
        assert_eq!(tree[1][0]["cld_cnt"], 2);
        assert_eq!(tree[2].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn datetime_is_civil() {
        let d = datetime();
        assert_eq!(d.len(), 19);
        assert!(d.starts_with("20"));
    }
}
