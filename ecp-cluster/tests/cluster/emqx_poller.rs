//! The EMQX poller against wiremock answering with the bodies of `reference/api-contracts.md` §1.
#![cfg(feature = "existing")]

use std::time::Duration;

use ecp_cluster::emqx::{EmqxPoller, EmqxPollerConfig};
use ecp_core::{ClusterId, OrgId, ProjectId, Timestamp};
use ecp_telemetry::{Collection, Collector, Error, MetricScope};
use wiremock::matchers::{basic_auth, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "ecp-monitor";
const SENTINEL: &str = "sentinel-secret-5f1c9a";

const NODES_510: &str = r#"[{"node":"emqx@10.0.0.1","node_status":"running","role":"core","version":"5.10.4","edition":"Enterprise",
  "otp_release":"27.2-3/15.2","uptime":5120000,"connections":12,"live_connections":10,"cluster_sessions":12,
  "load1":2.66,"load5":2.1,"load15":1.9,"max_fds":1048576,"memory_total":"7.63G","memory_used":"3.10G",
  "process_available":2097152,"process_used":1024,"sys_path":"/opt/emqx","log_path":"/opt/emqx/log"},
 {"node":"emqx@10.0.0.2","node_status":"stopped","role":"core"}]"#;

const MONITOR_510: &str = r#"{"connections":12,"live_connections":10,"cluster_sessions":12,"subscriptions":20,"subscriptions_ram":20,
 "subscriptions_durable":0,"disconnected_durable_sessions":0,"topics":8,"shared_subscriptions":0,
 "retained_msg_count":3,"received_msg_rate":5,"sent_msg_rate":5,"dropped_msg_rate":0,"persisted_rate":0,
 "validation_succeeded_rate":0,"validation_failed_rate":0,"transformation_succeeded_rate":0,
 "transformation_failed_rate":0,"rules_matched_rate":0,"actions_executed_rate":0,"license_quota":1000}"#;

const METRICS: &str = r#"{"bytes.received":10240,"packets.sent":480,"messages.received":500,"messages.sent":480,
 "messages.dropped":20,"messages.dropped.no_subscribers":20,"client.connected":42,"session.created":42,
 "authentication.failure":7,"authorization.deny":3,"delivery.dropped.queue_full":0,"rules.matched":0}"#;

const LICENSE: &str = r#"{"customer":"Foo","email":"contact@foo.com","deployment":"bar-deployment","customer_type":10,"type":"trial",
 "start_at":"2022-01-11","expiry_at":"2295-10-27","expiry":false,"max_sessions":10,"max_connections":10}"#;

// 5.3: no `cluster_sessions`, no `sys_path`, and the short monitor_current.
const NODES_53: &str = r#"[{"node":"emqx@10.0.0.1","node_status":"running","role":"core","version":"5.3.2","edition":"Opensource",
  "otp_release":"25.3.2-2/13.2.2","uptime":60000,"connections":3,"live_connections":3,
  "load1":0.5,"load5":0.4,"load15":0.3,"max_fds":1048576,"memory_total":"1.95G","memory_used":"512.00M",
  "process_available":2097152,"process_used":512,"log_path":"/opt/emqx/log"}]"#;
const MONITOR_53: &str =
    r#"{"connections":3,"live_connections":3,"subscriptions":4,"topics":2,"received_msg_rate":1,"sent_msg_rate":2,"dropped_msg_rate":0}"#;

const NOT_FOUND: &str = r#"{"code": "NOT_FOUND", "message": "Request Path Not Found"}"#;
const BAD_KEY: &str = r#"{"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"}"#;
const NODE_DOWN: &str = r#"{"code":"NODE_DOWN","message":"bad rpc call"}"#;

fn scope() -> MetricScope {
    MetricScope::new(OrgId::new(), ProjectId::new())
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn config(server: &MockServer, scope: MetricScope, cluster: ClusterId) -> EmqxPollerConfig {
    EmqxPollerConfig::new("emqx prod-1", server.uri(), scope, KEY, SENTINEL.into())
        .egress(ecp_cluster::emqx::EgressPolicy::allow_loopback())
        .cluster(cluster)
        .timeout(Duration::from_secs(5))
}

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn error(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

/// Mounts the four endpoints, each answering only requests with the API key and the Accept header,
/// each expected exactly once.
async fn mount(
    server: &MockServer,
    nodes: ResponseTemplate,
    monitor: ResponseTemplate,
    metrics: ResponseTemplate,
    license: ResponseTemplate,
) {
    for (p, answer) in [("/api/v5/nodes", nodes), ("/api/v5/monitor_current", monitor), ("/api/v5/license", license)] {
        Mock::given(method("GET"))
            .and(path(p))
            .and(basic_auth(KEY, SENTINEL))
            .and(header("accept", "application/json"))
            .respond_with(answer)
            .expect(1)
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/api/v5/metrics"))
        .and(query_param("aggregate", "true"))
        .and(basic_auth(KEY, SENTINEL))
        .and(header("accept", "application/json"))
        .respond_with(metrics)
        .expect(1)
        .mount(server)
        .await;
}

/// The value of the one sample of `name` (with `node`, if given).
fn value(c: &Collection, name: &str, node: Option<&str>) -> Option<f64> {
    let found: Vec<f64> =
        c.samples.iter().filter(|s| s.series.name.as_str() == name && s.series.labels.get("node") == node).map(|s| s.value).collect();
    assert!(found.len() <= 1, "{name} {node:?} sampled {} times", found.len());
    found.first().copied()
}

fn gib(x: f64) -> f64 {
    (x * 1024f64.powi(3)).round()
}

#[tokio::test]
async fn enterprise_5_10_with_a_stopped_node() {
    let server = MockServer::start().await;
    mount(&server, json(NODES_510), json(MONITOR_510), json(METRICS), json(LICENSE)).await;
    let (scope, cluster) = (scope(), ClusterId::new());
    let poller = config(&server, scope, cluster).build().unwrap();
    assert_eq!(poller.name(), "emqx prod-1");

    let c = poller.collect(now()).await.unwrap();
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    let source = format!("cluster:{cluster}");
    for s in &c.samples {
        assert_eq!(s.series.scope, scope);
        assert_eq!(s.time, now());
        assert_eq!(s.series.labels.get("source"), Some(source.as_str()), "{}", s.series);
    }

    // monitor_current
    for (name, v) in [
        ("emqx_connections", 12.0),
        ("emqx_live_connections", 10.0),
        ("emqx_sessions", 12.0),
        ("emqx_subscriptions", 20.0),
        ("emqx_shared_subscriptions", 0.0),
        ("emqx_topics", 8.0),
        ("emqx_retained_messages", 3.0),
        ("emqx_messages_received_per_second", 5.0),
        ("emqx_messages_sent_per_second", 5.0),
        ("emqx_messages_dropped_per_second", 0.0),
        ("emqx_license_quota", 1000.0),
    ] {
        assert_eq!(value(&c, name, None), Some(v), "{name}");
    }

    // nodes
    let n1 = Some("emqx@10.0.0.1");
    let n2 = Some("emqx@10.0.0.2");
    assert_eq!(value(&c, "emqx_node_up", n1), Some(1.0));
    assert_eq!(value(&c, "emqx_node_up", n2), Some(0.0));
    assert_eq!(value(&c, "emqx_node_memory_used_bytes", n1), Some(gib(3.10)));
    assert_eq!(value(&c, "emqx_node_memory_total_bytes", n1), Some(gib(7.63)));
    assert_eq!(value(&c, "emqx_node_load1", n1), Some(2.66));
    assert_eq!(value(&c, "emqx_node_load5", n1), Some(2.1));
    assert_eq!(value(&c, "emqx_node_load15", n1), Some(1.9));
    assert_eq!(value(&c, "emqx_node_connections", n1), Some(12.0));
    assert_eq!(value(&c, "emqx_node_live_connections", n1), Some(10.0));
    assert_eq!(value(&c, "emqx_node_uptime_seconds", n1), Some(5120.0));
    assert_eq!(value(&c, "emqx_nodes_running", None), Some(1.0));
    assert_eq!(value(&c, "emqx_nodes_stopped", None), Some(1.0));
    let info1 = c.samples.iter().find(|s| s.series.name.as_str() == "emqx_node_info" && s.series.labels.get("node") == n1).unwrap();
    assert_eq!(
        (info1.series.labels.get("role"), info1.series.labels.get("version"), info1.series.labels.get("edition")),
        (Some("core"), Some("5.10.4"), Some("Enterprise"))
    );
    // The stopped node carries only 3 keys: up and info, nothing else.
    let stopped: Vec<&str> = c.samples.iter().filter(|s| s.series.labels.get("node") == n2).map(|s| s.series.name.as_str()).collect();
    assert_eq!(stopped, ["emqx_node_up", "emqx_node_info"]);

    // metrics
    for (name, v) in [
        ("emqx_messages_received_total", 500.0),
        ("emqx_messages_sent_total", 480.0),
        ("emqx_messages_dropped_total", 20.0),
        ("emqx_authentication_failure_total", 7.0),
        ("emqx_authorization_deny_total", 3.0),
        ("emqx_client_connected_total", 42.0),
    ] {
        assert_eq!(value(&c, name, None), Some(v), "{name}");
    }

    // license
    let expiry: Timestamp = "2295-10-27T00:00:00Z".parse().unwrap();
    let days = (expiry.as_second() - now().as_second()) as f64 / 86_400.0;
    assert_eq!(value(&c, "emqx_license_max_connections", None), Some(10.0));
    assert_eq!(value(&c, "emqx_license_expiry_days", None), Some(days));
    assert_eq!(value(&c, "emqx_license_expired", None), Some(0.0));

    // Every request carried the API key as Basic and asked for JSON (the mocks only match those).
    server.verify().await;
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 4);
    for r in &requests {
        let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(auth.starts_with("Basic "), "{} without Basic auth", r.url);
        assert_eq!(r.headers.get("accept").and_then(|v| v.to_str().ok()), Some("application/json"), "{}", r.url);
    }
}

#[tokio::test]
async fn open_source_5_3_with_the_short_monitor_and_no_license() {
    let server = MockServer::start().await;
    mount(&server, json(NODES_53), json(MONITOR_53), json(METRICS), error(404, NOT_FOUND)).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();

    let c = poller.collect(now()).await.unwrap();
    // The 404 of the license is neither an error nor a skip.
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    assert!(c.samples.iter().all(|s| !s.series.name.as_str().starts_with("emqx_license")), "license samples on an open-source cluster");
    assert_eq!(value(&c, "emqx_connections", None), Some(3.0));
    assert_eq!(value(&c, "emqx_subscriptions", None), Some(4.0));
    assert_eq!(value(&c, "emqx_messages_sent_per_second", None), Some(2.0));
    // Keys 5.3 lacks read as 0, as the API contract prescribes.
    assert_eq!(value(&c, "emqx_sessions", None), Some(0.0));
    assert_eq!(value(&c, "emqx_retained_messages", None), Some(0.0));
    let n = Some("emqx@10.0.0.1");
    assert_eq!(value(&c, "emqx_node_up", n), Some(1.0));
    assert_eq!(value(&c, "emqx_node_memory_used_bytes", n), Some(512.0 * 1024.0 * 1024.0));
    assert_eq!(value(&c, "emqx_node_memory_total_bytes", n), Some(gib(1.95)));
    assert_eq!(value(&c, "emqx_node_uptime_seconds", n), Some(60.0));
    assert_eq!(value(&c, "emqx_nodes_running", None), Some(1.0));
    assert_eq!(value(&c, "emqx_nodes_stopped", None), Some(0.0));
    assert_eq!(value(&c, "emqx_messages_received_total", None), Some(500.0));
    server.verify().await;
}

#[tokio::test]
async fn a_bad_api_key_is_an_api_error_with_emqx_message() {
    let server = MockServer::start().await;
    let refused = || error(401, BAD_KEY).insert_header("www-authenticate", r#"Basic Realm="emqx-dashboard""#);
    mount(&server, refused(), refused(), refused(), refused()).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();

    let err = poller.collect(now()).await.unwrap_err();
    match &err {
        Error::Api { source_name, endpoint, status, message } => {
            assert_eq!(source_name, "emqx prod-1");
            assert_eq!(endpoint, "GET /api/v5/nodes");
            assert_eq!(*status, 401);
            assert_eq!(message.as_deref(), Some("BAD_API_KEY_OR_SECRET: Check api_key/api_secret"));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(err.to_string(), "emqx prod-1: GET /api/v5/nodes answered 401: BAD_API_KEY_OR_SECRET: Check api_key/api_secret");
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains(SENTINEL));
}

#[tokio::test]
async fn node_down_on_nodes_fails_the_collection() {
    let server = MockServer::start().await;
    mount(&server, error(500, NODE_DOWN), json(MONITOR_510), json(METRICS), json(LICENSE)).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();

    let err = poller.collect(now()).await.unwrap_err();
    assert!(matches!(&err, Error::Api { status: 500, message: Some(m), .. } if m == "NODE_DOWN: bad rpc call"), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_failing_secondary_request_is_a_skip() {
    let server = MockServer::start().await;
    let forbidden = r#"{"code":"UNAUTHORIZED_ROLE","message":"This API Key don't have permission to access this resource"}"#;
    mount(&server, json(NODES_510), error(500, NODE_DOWN), json(METRICS), error(403, forbidden)).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();

    let c = poller.collect(now()).await.unwrap();
    assert_eq!(value(&c, "emqx_node_up", Some("emqx@10.0.0.1")), Some(1.0));
    assert_eq!(value(&c, "emqx_messages_received_total", None), Some(500.0));
    assert_eq!(value(&c, "emqx_connections", None), None);
    assert_eq!(value(&c, "emqx_license_max_connections", None), None);
    let locations: Vec<&str> = c.skipped.iter().map(|s| s.location.as_str()).collect();
    assert_eq!(locations, ["GET /api/v5/monitor_current", "GET /api/v5/license"]);
    assert!(c.skipped[0].reason.contains("NODE_DOWN: bad rpc call"), "{:?}", c.skipped);
    assert!(c.skipped[1].reason.contains("403: UNAUTHORIZED_ROLE"), "{:?}", c.skipped);
}

#[tokio::test]
async fn a_garbage_memory_string_is_skipped_with_its_reason() {
    let server = MockServer::start().await;
    let nodes = NODES_510.replace(r#""memory_used":"3.10G""#, r#""memory_used":"lots""#).replace(r#""load1":2.66"#, r#""load1":"high""#);
    mount(&server, json(&nodes), json(MONITOR_510), json(METRICS), json(LICENSE)).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();

    let c = poller.collect(now()).await.unwrap();
    let n1 = Some("emqx@10.0.0.1");
    assert_eq!(value(&c, "emqx_node_memory_used_bytes", n1), None);
    assert_eq!(value(&c, "emqx_node_load1", n1), None);
    assert_eq!(value(&c, "emqx_node_memory_total_bytes", n1), Some(gib(7.63)));
    assert_eq!(value(&c, "emqx_node_up", n1), Some(1.0));
    assert_eq!(c.skipped.len(), 2, "{:?}", c.skipped);
    assert_eq!(c.skipped[0].location, "/api/v5/nodes[0].memory_used");
    assert!(c.skipped[0].reason.contains("\"lots\""), "{:?}", c.skipped[0]);
    assert_eq!(c.skipped[1].location, "/api/v5/nodes[0].load1");
    assert!(c.skipped[1].reason.contains("expected a number, got a string"), "{:?}", c.skipped[1]);
}

#[tokio::test]
async fn the_misspelled_content_type_is_parsed_anyway() {
    let server = MockServer::start().await;
    let odd = |body: &str| ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "applicatin/json");
    mount(&server, odd(NODES_53), odd(MONITOR_53), odd(METRICS), odd(LICENSE)).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();

    let c = poller.collect(now()).await.unwrap();
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    assert_eq!(value(&c, "emqx_connections", None), Some(3.0));
    assert_eq!(value(&c, "emqx_node_up", Some("emqx@10.0.0.1")), Some(1.0));
    assert_eq!(value(&c, "emqx_license_max_connections", None), Some(10.0));
}

#[tokio::test]
async fn unlimited_and_unexpected_answers() {
    let server = MockServer::start().await;
    let license = LICENSE.replace(r#""max_connections":10"#, r#""max_connections":"infinity""#);
    mount(&server, json(r#"{"not":"an array"}"#), json(MONITOR_510), json(METRICS), json(&license)).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();
    let err = poller.collect(now()).await.unwrap_err();
    assert!(matches!(&err, Error::Decode { reason, .. } if reason.contains("expected an array")), "{err:?}");

    let server = MockServer::start().await;
    mount(&server, json(NODES_510), json("<html>not json"), json(METRICS), json(&license)).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();
    let c = poller.collect(now()).await.unwrap();
    let skipped: Vec<(&str, &str)> = c.skipped.iter().map(|s| (s.location.as_str(), s.reason.as_str())).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0].0, "GET /api/v5/monitor_current");
    assert!(skipped[0].1.contains("not JSON"), "{skipped:?}");
    assert_eq!(skipped[1].0, "/api/v5/license.max_connections");
    assert!(skipped[1].1.contains("infinity"), "{skipped:?}");
    assert_eq!(value(&c, "emqx_license_expired", None), Some(0.0));
}

#[tokio::test]
async fn a_slow_cluster_times_out_and_a_huge_body_is_refused() {
    let server = MockServer::start().await;
    mount(&server, json(NODES_510).set_delay(Duration::from_secs(5)), json(MONITOR_510), json(METRICS), json(LICENSE)).await;
    let poller = config(&server, scope(), ClusterId::new()).timeout(Duration::from_millis(200)).build().unwrap();
    let started = std::time::Instant::now();
    let err = poller.collect(now()).await.unwrap_err();
    assert!(matches!(&err, Error::Transport { retryable: true, endpoint, .. } if endpoint == "GET /api/v5/nodes"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4));

    let server = MockServer::start().await;
    mount(&server, json(NODES_510), json(MONITOR_510), json(METRICS), json(LICENSE)).await;
    let poller = config(&server, scope(), ClusterId::new()).max_body(256).build().unwrap();
    let err = poller.collect(now()).await.unwrap_err();
    assert!(matches!(&err, Error::TooLarge { limit: 256, .. }), "{err:?}");
}

#[tokio::test]
async fn the_secret_never_shows() {
    // A hostile or broken server echoing the credentials back in its error message.
    let server = MockServer::start().await;
    let echo = format!(
        r#"{{"code":"BAD_API_KEY_OR_SECRET","message":"got {SENTINEL} and Basic ZWNwLW1vbml0b3I6c2VudGluZWwtc2VjcmV0LTVmMWM5YQ=="}}"#
    );
    let refused = || error(401, &echo);
    mount(&server, refused(), refused(), refused(), refused()).await;
    let config = config(&server, scope(), ClusterId::new());
    assert!(!format!("{config:?}").contains(SENTINEL));
    let poller = config.clone().build().unwrap();
    assert!(!format!("{poller:?}").contains(SENTINEL));
    let err = poller.collect(now()).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SENTINEL), "{shown}");
    assert!(!shown.contains("ZWNwLW1vbml0b3I6c2VudGluZWwtc2VjcmV0LTVmMWM5YQ=="), "{shown}");
    // The client scrubs what the server echoes, with its marker.
    assert!(shown.contains("[REDACTED]"), "{shown}");

    // Nothing listening: the transport error names the request only.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let poller = EmqxPollerConfig::new("emqx gone", format!("http://127.0.0.1:{port}"), scope(), KEY, SENTINEL.into())
        .egress(ecp_cluster::emqx::EgressPolicy::allow_loopback())
        .build()
        .unwrap();
    let err = poller.collect(now()).await.unwrap_err();
    assert!(matches!(&err, Error::Transport { retryable: true, .. }), "{err:?}");
    let mut shown = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        shown.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!shown.contains(SENTINEL), "{shown}");

    // Refused configurations do not repeat what they were given either.
    let bad = EmqxPollerConfig::new("x", format!("http://u:{SENTINEL}@host:18083"), scope(), KEY, SENTINEL.into())
        .egress(ecp_cluster::emqx::EgressPolicy::allow_loopback());
    assert!(!format!("{bad:?}").contains(SENTINEL));
    let err = bad.build().unwrap_err();
    assert!(!format!("{err} {err:?}").contains(SENTINEL));
}

#[test]
fn configurations_are_checked() {
    let ok = || {
        EmqxPollerConfig::new("emqx", "http://10.0.0.1:18083/", scope(), KEY, SENTINEL.into())
            .egress(ecp_cluster::emqx::EgressPolicy::allow_loopback())
    };
    assert_eq!(ok().build().unwrap().base_url(), "http://10.0.0.1:18083");
    assert_eq!(ok().build().unwrap().timeout(), EmqxPollerConfig::DEFAULT_TIMEOUT);
    let poller: EmqxPoller = ok().label("region", "eu").build().unwrap();
    assert_eq!(poller.labels().get("region"), Some("eu"));
    for (what, config) in [
        (
            "empty name",
            EmqxPollerConfig::new("", "http://h:18083", scope(), KEY, SENTINEL.into())
                .egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()),
        ),
        (
            "not http",
            EmqxPollerConfig::new("e", "ftp://h", scope(), KEY, SENTINEL.into()).egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()),
        ),
        (
            "no host",
            EmqxPollerConfig::new("e", "http://", scope(), KEY, SENTINEL.into()).egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()),
        ),
        (
            "query",
            EmqxPollerConfig::new("e", "http://h/?x=1", scope(), KEY, SENTINEL.into())
                .egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()),
        ),
        (
            "empty key",
            EmqxPollerConfig::new("e", "http://h", scope(), "", SENTINEL.into()).egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()),
        ),
        (
            "colon in key",
            EmqxPollerConfig::new("e", "http://h", scope(), "a:b", SENTINEL.into())
                .egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()),
        ),
        (
            "empty secret",
            EmqxPollerConfig::new("e", "http://h", scope(), KEY, "".into()).egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()),
        ),
        ("zero timeout", ok().timeout(Duration::ZERO)),
        ("zero body", ok().max_body(0)),
        ("reserved label", ok().label("node", "x")),
        ("bad label", ok().label("a-b", "x")),
        ("repeated label", ok().label("a", "x").label("a", "y")),
    ] {
        assert!(config.build().is_err(), "{what} accepted");
    }
}

#[tokio::test]
async fn the_four_requests_run_concurrently() {
    let server = MockServer::start().await;
    let slow = |t: ResponseTemplate| t.set_delay(Duration::from_millis(600));
    mount(&server, slow(json(NODES_510)), slow(json(MONITOR_510)), slow(json(METRICS)), slow(json(LICENSE))).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();
    let started = std::time::Instant::now();
    let c = poller.collect(now()).await.unwrap();
    // One after another they would take 2.4 s at least.
    assert!(started.elapsed() < Duration::from_millis(1800), "took {:?}", started.elapsed());
    assert!(c.skipped.is_empty());
}

#[tokio::test]
async fn per_node_metrics_are_summed() {
    // `aggregate=true` gives one object; a per-node array (as without it) is summed.
    let server = MockServer::start().await;
    let per_node = r#"[{"node":"emqx@10.0.0.1","messages.received":300,"messages.sent":280,"messages.dropped":20,
      "client.connected":40,"authentication.failure":7,"authorization.deny":3},
     {"node":"emqx@10.0.0.3","messages.received":200,"messages.sent":200,"messages.dropped":0,
      "client.connected":2,"authentication.failure":0}]"#;
    mount(&server, json(NODES_510), json(MONITOR_510), json(per_node), json(LICENSE)).await;
    let poller = config(&server, scope(), ClusterId::new()).build().unwrap();
    let c = poller.collect(now()).await.unwrap();
    assert_eq!(value(&c, "emqx_messages_received_total", None), Some(500.0));
    assert_eq!(value(&c, "emqx_client_connected_total", None), Some(42.0));
    assert_eq!(value(&c, "emqx_authorization_deny_total", None), Some(3.0));
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
}
