//! `PrometheusScraper` against wiremock servers (and raw loopback sockets) answering like NanoMQ,
//! Neuron and EMQX.
#![cfg(feature = "http")]

use std::time::{Duration, Instant};

use ecp_core::{OrgId, ProjectId, Timestamp};
use ecp_telemetry::prom::{ParseLimits, PrometheusScrapeConfig, PrometheusScraper};
use ecp_telemetry::{Collector, Error, MetricScope};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{basic_auth, bearer_token, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SENTINEL: &str = "pw-SENTINEL-7f3a";

const NANOMQ: &str = "# TYPE nanomq_connections_count gauge
# HELP nanomq_connections_count
nanomq_connections_count 3
# TYPE nanomq_sessions_count gauge
# HELP nanomq_sessions_count
nanomq_sessions_count 3
# TYPE nanomq_messages_received counter
# HELP nanomq_messages_received
nanomq_messages_received 1024
# TYPE nanomq_messages_sent counter
# HELP nanomq_messages_sent
nanomq_messages_sent 2048
# TYPE nanomq_messages_dropped counter
# HELP nanomq_messages_dropped
nanomq_messages_dropped 1
# TYPE nanomq_cpu_usage gauge
# HELP nanomq_cpu_usage (%)
nanomq_cpu_usage 0.25
# TYPE nanomq_cpu_usage_max gauge
# HELP nanomq_cpu_usage_max (%)
nanomq_cpu_usage_max 1.50
";

const NEURON: &str = r#"# HELP cpu_percent Total CPU utilisation percentage
# TYPE cpu_percent gauge
cpu_percent 7
# HELP mem_used_bytes Used memory in bytes
# TYPE mem_used_bytes gauge
mem_used_bytes 2904072192
# HELP mem_cache Memory buffer/cache size in bytes
# TYPE mem_cache gauge
mem_cache_bytes 3290501120
# HELP uptime_seconds Uptime in seconds
# TYPE uptime_seconds counter
uptime_seconds 86412
# HELP node_type Driver(1) or APP(2)
# TYPE node_type gauge
node_type{node="modbus-1"} 1
# HELP group_tags_total Total number of tags in the group
# TYPE group_tags_total gauge
group_tags_total{node="modbus-1",group="grp"} 2
# HELP group_tags_total Total number of tags in the group
# TYPE group_tags_total gauge
group_tags_total{node="modbus-1",group="fast"} 10
"#;

fn scope() -> MetricScope {
    MetricScope::new(OrgId::new(), ProjectId::new())
}

fn now() -> Timestamp {
    Timestamp::from_second(1_780_000_000).unwrap()
}

fn text(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).insert_header("content-type", "text/plain").set_body_string(body)
}

fn value(c: &ecp_telemetry::Collection, name: &str, label: Option<(&str, &str)>) -> f64 {
    let found: Vec<_> = c
        .samples
        .iter()
        .filter(|s| s.series.name.as_str() == name && label.is_none_or(|(k, v)| s.series.labels.get(k) == Some(v)))
        .collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0].value
}

#[tokio::test]
async fn nanomq_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/prometheus"))
        .and(basic_auth("admin", "public"))
        .respond_with(text(NANOMQ))
        .expect(1)
        .mount(&server)
        .await;
    let sc = scope();
    let scraper = PrometheusScrapeConfig::new("nanomq edge-7", format!("{}/api/v4/prometheus", server.uri()), sc)
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .basic_auth("admin", SecretString::from("public"))
        .source("edge:edge-7")
        .label("site", "plant-3")
        .build()
        .unwrap();
    assert_eq!(scraper.name(), "nanomq edge-7");
    let c = scraper.collect(now()).await.unwrap();
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    assert_eq!(c.samples.len(), 7);
    assert_eq!(value(&c, "nanomq_connections_count", None), 3.0);
    assert_eq!(value(&c, "nanomq_sessions_count", None), 3.0);
    assert_eq!(value(&c, "nanomq_messages_received", None), 1024.0);
    assert_eq!(value(&c, "nanomq_messages_sent", None), 2048.0);
    assert_eq!(value(&c, "nanomq_messages_dropped", None), 1.0);
    assert_eq!(value(&c, "nanomq_cpu_usage_max", None), 1.5);
    for s in &c.samples {
        assert_eq!(s.series.scope, sc);
        assert_eq!(s.time, now());
        assert_eq!(s.series.labels.to_string(), r#"{site="plant-3",source="edge:edge-7"}"#);
    }
    // The text format is asked for (EMQX answers JSON to `Accept: application/json`).
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].headers.get("accept").unwrap(), "text/plain;version=0.0.4;q=1,*/*;q=0.1");
}

#[tokio::test]
async fn neuron_without_auth_and_the_name_as_default_source() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/api/v2/metrics")).respond_with(text(NEURON)).mount(&server).await;
    let scraper = PrometheusScrapeConfig::new("neuron-1", format!("{}/api/v2/metrics", server.uri()), scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .build()
        .unwrap();
    let c = scraper.collect(now()).await.unwrap();
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    assert_eq!(c.samples.len(), 7);
    assert_eq!(value(&c, "cpu_percent", None), 7.0);
    assert_eq!(value(&c, "mem_cache_bytes", None), 3_290_501_120.0);
    assert_eq!(value(&c, "group_tags_total", Some(("group", "fast"))), 10.0);
    assert!(c.samples.iter().all(|s| s.series.labels.get("source") == Some("neuron-1")));
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().all(|r| !r.headers.contains_key("authorization")));
}

#[tokio::test]
async fn emqx_with_a_bearer_token_and_a_query() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v5/prometheus/stats"))
        .and(bearer_token("tok-123"))
        .and(wiremock::matchers::query_param("mode", "all_nodes_unaggregated"))
        .respond_with(text("# TYPE emqx_connections_count gauge\nemqx_connections_count{node=\"emqx@10.0.0.1\"} 12\n"))
        .mount(&server)
        .await;
    let scraper = PrometheusScrapeConfig::new(
        "emqx prod-1",
        format!("{}/api/v5/prometheus/stats?mode=all_nodes_unaggregated", server.uri()),
        scope(),
    )
    .egress(ecp_telemetry::EgressPolicy::allow_loopback())
    .bearer_token(SecretString::from("tok-123"))
    .source("cluster:prod-1")
    .build()
    .unwrap();
    let c = scraper.collect(now()).await.unwrap();
    assert_eq!(value(&c, "emqx_connections_count", Some(("node", "emqx@10.0.0.1"))), 12.0);
}

#[tokio::test]
async fn unauthorized_is_an_api_error_with_the_product_code() {
    let server = MockServer::start().await;
    // NanoMQ: 401 {"code":103}, without a Content-Type (api-contracts.md §8).
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(401).set_body_raw(r#"{"code":103}"#, "")).mount(&server).await;
    let scraper = PrometheusScrapeConfig::new("nanomq edge-7", format!("{}/api/v4/prometheus", server.uri()), scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .basic_auth("admin", SecretString::from(SENTINEL))
        .build()
        .unwrap();
    let err = scraper.collect(now()).await.unwrap_err();
    match &err {
        Error::Api { source_name, endpoint, status: 401, message } => {
            assert_eq!(source_name, "nanomq edge-7");
            assert_eq!(endpoint, "GET /api/v4/prometheus");
            assert_eq!(message.as_deref(), Some("103"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), "nanomq edge-7: GET /api/v4/prometheus answered 401: 103");
    assert!(!format!("{err} {err:?}").contains(SENTINEL));
}

#[tokio::test]
async fn server_error_is_a_retryable_api_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let scraper = PrometheusScrapeConfig::new("neuron-1", format!("{}/api/v2/metrics", server.uri()), scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .build()
        .unwrap();
    let err = scraper.collect(now()).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 500, message: None, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let server = MockServer::start().await;
    let big = "nanomq_connections_count 3\n".repeat(1000);
    Mock::given(method("GET")).respond_with(text(&big)).mount(&server).await;
    let scraper = PrometheusScrapeConfig::new("nanomq", format!("{}/api/v4/prometheus", server.uri()), scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .max_body_bytes(4096)
        .build()
        .unwrap();
    match scraper.collect(now()).await.unwrap_err() {
        Error::TooLarge { what: "scrape body", size, limit: 4096 } => assert_eq!(size, big.len()),
        other => panic!("{other:?}"),
    }
}

/// A loopback server that answers with a chunked (no Content-Length) body that never ends, and
/// counts the bytes it managed to write.
async fn endless_chunked_server() -> (String, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
        let line = "nanomq_connections_count 3\n".repeat(2000);
        let chunk = format!("{:x}\r\n{line}\r\n", line.len());
        let mut written = 0;
        // At most 256 MiB: far past any limit; the client hangs up long before.
        while written < 256 << 20 {
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            written += line.len();
        }
        written
    });
    (format!("http://{addr}/api/v4/prometheus"), task)
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit_while_streaming() {
    let (url, server) = endless_chunked_server().await;
    let scraper = PrometheusScrapeConfig::new("nanomq", url, scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .max_body_bytes(1 << 20)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    match scraper.collect(now()).await.unwrap_err() {
        Error::TooLarge { limit, size, .. } => assert!(limit == 1 << 20 && size > limit),
        other => panic!("{other:?}"),
    }
    drop(scraper);
    let written = tokio::time::timeout(Duration::from_secs(20), server).await.unwrap().unwrap();
    assert!(written < 64 << 20, "the server wrote {written} bytes: the body was not cut off");
}

#[tokio::test]
async fn garbage_lines_are_skipped_and_reported() {
    let server = MockServer::start().await;
    let body = "nanomq_connections_count 3\nthis is not a sample\nnanomq_sessions_count{ 3\nnanomq_messages_sent 2048\n\u{1}garbage\n";
    Mock::given(method("GET")).respond_with(text(body)).mount(&server).await;
    let scraper = PrometheusScrapeConfig::new("nanomq", format!("{}/api/v4/prometheus", server.uri()), scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .build()
        .unwrap();
    let c = scraper.collect(now()).await.unwrap();
    let names: Vec<_> = c.samples.iter().map(|s| s.series.name.as_str()).collect();
    assert_eq!(names, ["nanomq_connections_count", "nanomq_messages_sent"]);
    let lines: Vec<_> = c.skipped.iter().map(|s| s.location.as_str()).collect();
    assert_eq!(lines, ["2", "3", "5"]);
}

#[tokio::test]
async fn a_slow_server_hits_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(text(NANOMQ).set_delay(Duration::from_secs(10))).mount(&server).await;
    let scraper = PrometheusScrapeConfig::new("nanomq", format!("{}/api/v4/prometheus", server.uri()), scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .basic_auth("admin", SecretString::from(SENTINEL))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = scraper.collect(now()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, Error::Transport { retryable: true, .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(!format!("{err} {err:?}").contains(SENTINEL));
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let scraper = PrometheusScrapeConfig::new("nanomq", format!("http://{addr}/api/v4/prometheus?token={SENTINEL}"), scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .bearer_token(SecretString::from(SENTINEL))
        .build()
        .unwrap();
    let err = scraper.collect(now()).await.unwrap_err();
    match &err {
        Error::Transport { endpoint, retryable: true, .. } => assert_eq!(endpoint, "GET /api/v4/prometheus"),
        other => panic!("{other:?}"),
    }
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains(SENTINEL), "{chain}");
}

#[tokio::test]
async fn secrets_never_reach_debug_or_errors() {
    let url = format!("http://127.0.0.1:9/metrics?key={SENTINEL}");
    let basic = PrometheusScrapeConfig::new("s", &url, scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .basic_auth("admin", SecretString::from(SENTINEL));
    let bearer = PrometheusScrapeConfig::new("s", &url, scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .bearer_token(SecretString::from(SENTINEL));
    for config in [basic, bearer] {
        let shown = format!("{config:?}");
        assert!(!shown.contains(SENTINEL), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        let scraper: PrometheusScraper = config.build().unwrap();
        assert!(!format!("{scraper:?}").contains(SENTINEL));
    }
    // Credentials in the URL are refused, and the error does not repeat them.
    let err = PrometheusScrapeConfig::new("s", format!("http://admin:{SENTINEL}@10.0.0.7:8081/api/v4/prometheus"), scope())
        .egress(ecp_telemetry::EgressPolicy::allow_loopback())
        .build()
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(SENTINEL), "{err}");
}

#[tokio::test]
async fn configs_are_validated() {
    let ok = || {
        PrometheusScrapeConfig::new("n", "http://10.0.0.7:8081/api/v4/prometheus", scope())
            .egress(ecp_telemetry::EgressPolicy::allow_loopback())
    };
    assert!(ok().build().is_ok());
    assert!(ParseLimits::builder().max_samples(0).build().is_err());
    for bad in [
        PrometheusScrapeConfig::new("", "http://h/m", scope()).egress(ecp_telemetry::EgressPolicy::allow_loopback()),
        PrometheusScrapeConfig::new("n", "ftp://h/m", scope()).egress(ecp_telemetry::EgressPolicy::allow_loopback()),
        PrometheusScrapeConfig::new("n", "not a url", scope()).egress(ecp_telemetry::EgressPolicy::allow_loopback()),
        PrometheusScrapeConfig::new("n", "http://h/m#frag", scope()).egress(ecp_telemetry::EgressPolicy::allow_loopback()),
        ok().timeout(Duration::ZERO),
        ok().timeout(Duration::from_secs(7200)),
        ok().max_body_bytes(0),
        ok().label("bad-name", "x"),
    ] {
        let err = bad.build().unwrap_err();
        assert!(matches!(err, Error::Core(_)), "{err:?}");
    }
    let first = ok().build().unwrap();
    let second = ok().source("edge:2").build_sharing(&first).unwrap();
    assert_eq!(second.extra_labels().get("source"), Some("edge:2"));
    assert_eq!(first.extra_labels().get("source"), Some("n"));
    assert_eq!(first.timeout(), PrometheusScrapeConfig::DEFAULT_TIMEOUT);
}
