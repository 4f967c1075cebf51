//! A simulated EMQX 5.10 cluster's REST API (`:18083`, `/api/v5`) on loopback, shaped like
//! `reference/api-contracts.md` §1: HTTP Basic with an API key, `{"code","message"}` errors (401
//! with `WWW-Authenticate`), `/status` without auth (503 while the cluster is down), nodes with
//! string memory sizes and 3-key stopped nodes, stats, aggregated metrics, monitor_current,
//! listeners (`running` may be `"inconsistent"`, `max_connections` may be `"infinity"`), paged
//! clients and alarms, and the Enterprise license.
//!
//! For the quickstart and end-to-end tests of onboarding; the EMQX REST client's own suite uses
//! wiremock fixtures of every quirk.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// What the simulated cluster is like.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmqxSimConfig {
    /// The cluster name (`/status?format=json`'s `cluster`).
    pub cluster: String,
    /// The node count (`emqx@10.0.0.1` ...), all core.
    pub nodes: usize,
    /// The API key.
    pub key: String,
    /// Its secret.
    pub secret: String,
    /// Connected clients (`dev-0001` ...).
    pub clients: usize,
    /// The license's `max_connections`.
    pub license_connections: u64,
}

impl Default for EmqxSimConfig {
    fn default() -> Self {
        Self { cluster: "emqxcl".into(), nodes: 3, key: "ecp".into(), secret: "ecp-secret".into(), clients: 12, license_connections: 1000 }
    }
}

impl EmqxSimConfig {
    /// `nodes` nodes and `clients` clients, the rest default (key `ecp`, secret `ecp-secret`).
    pub fn new(nodes: usize, clients: usize) -> Self {
        Self { nodes, clients, ..Self::default() }
    }
}

struct Sim {
    config: EmqxSimConfig,
    /// Nodes stopped by the test.
    stopped: Mutex<Vec<bool>>,
    /// Whether the whole API answers 503 on `/status`.
    down: Mutex<bool>,
    /// The license's dynamic connection limit (EMQX Enterprise 5.7+, business-critical).
    dynamic_max: Mutex<u64>,
}

/// A running simulated EMQX cluster; stops when dropped.
pub struct EmqxSim {
    addr: SocketAddr,
    sim: Arc<Sim>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EmqxSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmqxSim").field("addr", &self.addr).field("cluster", &self.sim.config.cluster).finish_non_exhaustive()
    }
}

impl Drop for EmqxSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EmqxSim {
    /// Starts a simulated cluster on a free loopback port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(config: EmqxSimConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sim = Arc::new(Sim {
            stopped: Mutex::new(vec![false; config.nodes.max(1)]),
            down: Mutex::new(false),
            dynamic_max: Mutex::new(config.license_connections),
            config,
        });
        let app = Router::new()
            .route("/status", get(status))
            .route("/api/v5/status", get(status))
            .route("/api/v5/nodes", get(nodes))
            .route("/api/v5/stats", get(stats))
            .route("/api/v5/metrics", get(metrics))
            .route("/api/v5/monitor_current", get(monitor_current))
            .route("/api/v5/listeners", get(listeners))
            .route("/api/v5/clients", get(clients))
            .route("/api/v5/alarms", get(alarms))
            .route("/api/v5/license", get(license))
            .route("/api/v5/license/setting", get(license_setting).put(put_license_setting))
            .fallback(not_found)
            .with_state(sim.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, sim, task })
    }

    /// The dynamic connection limit the cluster was last given (`PUT /api/v5/license/setting`).
    pub fn connection_limit(&self) -> u64 {
        *self.sim.dynamic_max.lock()
    }

    /// The base URL (`http://127.0.0.1:PORT`), without `/api/v5`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops (or restarts) node `index`: it reports 3 keys and `stopped`.
    pub fn set_node_stopped(&self, index: usize, stopped: bool) {
        if let Some(s) = self.sim.stopped.lock().get_mut(index) {
            *s = stopped;
        }
    }

    /// Makes `/status` answer 503 (the application is down) or not.
    pub fn set_down(&self, down: bool) {
        *self.sim.down.lock() = down;
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json!({"code": code, "message": message}).to_string()).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Checks HTTP Basic with the API key: `None` when allowed, else the 401 to send.
fn auth(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    let refuse = |code: &str, message: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, code, message);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic Realm=\"emqx-dashboard\""));
        Some(r)
    };
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return refuse("AUTHORIZATION_HEADER_ERROR", "Support authorization: basic/bearer ");
    };
    let Some(b64) = value.strip_prefix("Basic ") else {
        return refuse("AUTHORIZATION_HEADER_ERROR", "Support authorization: basic/bearer ");
    };
    let decoded = STANDARD.decode(b64).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
    if decoded != format!("{}:{}", sim.config.key, sim.config.secret) {
        return refuse("BAD_API_KEY_OR_SECRET", "Check api_key/api_secret");
    }
    None
}

fn node_name(i: usize) -> String {
    format!("emqx@10.0.0.{}", i + 1)
}

fn clients_on(sim: &Sim, i: usize) -> usize {
    let n = sim.config.nodes.max(1);
    sim.config.clients / n + usize::from(i < sim.config.clients % n)
}

async fn status(State(sim): State<Arc<Sim>>, Query(q): Query<Vec<(String, String)>>) -> Response {
    if *sim.down.lock() {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, "Node emqx@10.0.0.1 is started\nemqx is not_running").into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("15"));
        return r;
    }
    if q.iter().any(|(k, v)| k == "format" && v == "json") {
        return ok(json!({"node_name": node_name(0), "cluster": sim.config.cluster, "broker_status": "started", "app_status": "running"}));
    }
    (StatusCode::OK, format!("Node {} is started\nemqx is running", node_name(0))).into_response()
}

async fn nodes(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    let stopped = sim.stopped.lock().clone();
    let list: Vec<Value> = stopped
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if *s {
                json!({"node": node_name(i), "node_status": "stopped", "role": "core"})
            } else {
                let c = clients_on(&sim, i);
                json!({"node": node_name(i), "node_status": "running", "role": "core", "version": "5.10.4", "edition": "Enterprise",
                    "otp_release": "27.2-3/15.2", "uptime": 5_120_000, "connections": c, "live_connections": c, "cluster_sessions": sim.config.clients,
                    "load1": 0.5, "load5": 0.4, "load15": 0.3, "max_fds": 1_048_576, "memory_total": "7.63G", "memory_used": "3.10G",
                    "process_available": 2_097_152, "process_used": 1024, "sys_path": "/opt/emqx", "log_path": "/opt/emqx/log"})
            }
        })
        .collect();
    ok(Value::Array(list))
}

async fn stats(State(sim): State<Arc<Sim>>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    let one = |c: usize, node: Option<String>| {
        let mut v = json!({"connections.count": c, "connections.max": sim.config.clients, "live_connections.count": c,
            "sessions.count": c, "subscriptions.count": c * 2, "subscriptions.shared.count": 0, "topics.count": c, "retained.count": 3});
        if let Some(n) = node {
            v["node"] = json!(n);
        }
        v
    };
    if q.iter().any(|(k, v)| k == "aggregate" && v == "true") {
        return ok(one(sim.config.clients, None));
    }
    ok(Value::Array((0..sim.config.nodes.max(1)).map(|i| one(clients_on(&sim, i), Some(node_name(i)))).collect()))
}

async fn metrics(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    ok(json!({"bytes.received": 102_400, "packets.sent": 2000, "messages.received": 1000, "messages.dropped": 2,
        "messages.dropped.no_subscribers": 2, "client.connected": sim.config.clients, "session.created": sim.config.clients,
        "authentication.failure": 0, "authorization.deny": 0, "delivery.dropped.queue_full": 0, "rules.matched": 0}))
}

async fn monitor_current(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    let c = sim.config.clients;
    ok(json!({"connections": c, "live_connections": c, "cluster_sessions": c, "subscriptions": c * 2, "subscriptions_ram": c * 2,
        "subscriptions_durable": 0, "disconnected_durable_sessions": 0, "topics": c, "shared_subscriptions": 0, "retained_msg_count": 3,
        "received_msg_rate": 5, "sent_msg_rate": 5, "dropped_msg_rate": 0, "persisted_rate": 0, "validation_succeeded_rate": 0,
        "validation_failed_rate": 0, "transformation_succeeded_rate": 0, "transformation_failed_rate": 0, "rules_matched_rate": 0,
        "actions_executed_rate": 0, "license_quota": sim.config.license_connections}))
}

async fn listeners(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    let stopped = sim.stopped.lock().clone();
    let running: Value = if stopped.iter().any(|s| *s) { json!("inconsistent") } else { json!(true) };
    let node_status: Vec<Value> = (0..stopped.len())
        .map(|i| json!({"node": node_name(i), "status": {"running": !stopped[i], "current_connections": clients_on(&sim, i), "max_connections": 1_024_000}}))
        .collect();
    ok(json!([{"id": "tcp:default", "type": "tcp", "name": "default", "enable": true, "bind": "0.0.0.0:1883", "acceptors": 16,
        "number": 1, "status": {"running": running, "current_connections": sim.config.clients, "max_connections": "infinity"},
        "node_status": node_status}]))
}

/// `page` (1..) and `limit` (1..=10000); `None` when EMQX would answer 400 ([`bad_page`]).
fn paging(q: &[(String, String)]) -> Option<(usize, usize)> {
    let get = |k: &str, d: usize| q.iter().find(|(n, _)| n == k).map_or(Some(d), |(_, v)| v.parse::<usize>().ok());
    match (get("page", 1), get("limit", 100)) {
        (Some(p), Some(l)) if p >= 1 && (1..=10_000).contains(&l) => Some((p, l)),
        _ => None,
    }
}

fn bad_page() -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", "page_limit_invalid")
}

async fn clients(State(sim): State<Arc<Sim>>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    let Some((page, limit)) = paging(&q) else { return bad_page() };
    let n = sim.config.clients;
    let start = (page - 1).saturating_mul(limit).min(n);
    let end = start.saturating_add(limit).min(n);
    let data: Vec<Value> = (start..end)
        .map(|i| {
            json!({"clientid": format!("dev-{:04}", i + 1), "username": if i % 2 == 0 { Value::Null } else { json!("device") },
                "node": node_name(i % sim.config.nodes.max(1)), "connected": true, "proto_name": "MQTT", "proto_ver": 5,
                "ip_address": "127.0.0.1", "port": 50_000 + i, "keepalive": 60, "clean_start": true, "expiry_interval": 0,
                "created_at": "2026-12-01T08:00:00.000+00:00", "connected_at": "2026-12-01T08:00:00.000+00:00",
                "subscriptions_cnt": 1, "subscriptions_max": "infinity", "inflight_cnt": 0, "mqueue_len": 0, "recv_msg": 0,
                "send_msg": 0, "listener": "tcp:default", "durable": false})
        })
        .collect();
    ok(json!({"data": data, "meta": {"page": page, "limit": limit, "hasnext": end < n, "count": n}}))
}

async fn alarms(State(sim): State<Arc<Sim>>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    let Some((page, limit)) = paging(&q) else { return bad_page() };
    let stopped = sim.stopped.lock().clone();
    let data: Vec<Value> = stopped
        .iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .map(|(i, _)| {
            json!({"node": node_name(0), "name": format!("cluster_node_down_{}", node_name(i)), "message": format!("node {} is down", node_name(i)),
                "details": {}, "duration": 297_056, "activate_at": "2026-12-01T08:00:00.000+00:00"})
        })
        .collect();
    let n = data.len();
    let data: Vec<Value> = data.into_iter().skip((page - 1) * limit).take(limit).collect();
    ok(json!({"data": data, "meta": {"page": page, "limit": limit, "hasnext": page * limit < n, "count": n}}))
}

async fn license(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    ok(json!({"customer": "Acme", "email": "ops@acme.example", "deployment": "plant", "customer_type": 10, "type": "official",
        "start_at": "2026-01-01", "expiry_at": "2027-12-31", "expiry": false, "max_sessions": sim.config.license_connections,
        "max_connections": sim.config.license_connections}))
}

/// `GET /api/v5/license/setting` of a business-critical license: the watermarks and the dynamic
/// connection limit.
async fn license_setting(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    let max = *sim.dynamic_max.lock();
    ok(json!({"connection_low_watermark": "75%", "connection_high_watermark": "80%", "dynamic_max_connections": max}))
}

/// `PUT /api/v5/license/setting`: takes `dynamic_max_connections` and answers the setting.
async fn put_license_setting(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(r) = auth(&sim, &headers) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "invalid JSON");
    };
    if let Some(n) = v.get("dynamic_max_connections").and_then(Value::as_u64) {
        *sim.dynamic_max.lock() = n;
    }
    license_setting(State(sim), headers).await
}

async fn not_found(headers: HeaderMap) -> Response {
    let json = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/json"));
    if json {
        error(StatusCode::NOT_FOUND, "NOT_FOUND", "Request Path Not Found")
    } else {
        (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/html")], "<html><body>Not Found</body></html>").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_like_emqx() {
        let sim = EmqxSim::start(EmqxSimConfig::default()).await.unwrap();
        let http = reqwest::Client::new();
        let url = |p: &str| format!("{}{p}", sim.base_url());
        let r = http.get(url("/api/v5/nodes")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
        let body: Value = http.get(url("/api/v5/nodes")).basic_auth("ecp", Some("wrong")).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["code"], "BAD_API_KEY_OR_SECRET");
        sim.set_node_stopped(2, true);
        let nodes: Value = http.get(url("/api/v5/nodes")).basic_auth("ecp", Some("ecp-secret")).send().await.unwrap().json().await.unwrap();
        assert_eq!(nodes[0]["memory_total"], "7.63G");
        assert_eq!(nodes[2].as_object().unwrap().len(), 3);
        let page: Value = http
            .get(url("/api/v5/clients?page=2&limit=5"))
            .basic_auth("ecp", Some("ecp-secret"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((page["data"].as_array().unwrap().len(), page["meta"]["hasnext"].as_bool()), (5, Some(true)));
        let bad = http.get(url("/api/v5/clients?limit=0")).basic_auth("ecp", Some("ecp-secret")).send().await.unwrap();
        assert_eq!(bad.status(), 400);
        sim.set_down(true);
        assert_eq!(http.get(url("/status")).send().await.unwrap().status(), 503);
        let nf = http.get(url("/api/v5/nope")).header("accept", "application/json").send().await.unwrap();
        assert_eq!(nf.status(), 404);
    }
}
