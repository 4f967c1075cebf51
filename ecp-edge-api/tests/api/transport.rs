//! `HttpTransport` against wiremock (and a raw socket server for chunked answers) on loopback:
//! exact requests, base URL prefixes, timeouts, refused connections, body limits, redirects, and
//! credentials kept out of errors.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ecp_edge_api::Credentials;
use ecp_edge_api::NeuronClient;
use ecp_edge_api::{DEFAULT_MAX_BODY, HttpTransport, HttpTransportConfig};
use ecp_edge_api::{EdgeTransport, Error};
use secrecy::SecretString;
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SENTINEL: &str = "pw-SENTINEL-9c1e";

fn request(method: &str, uri: &str, body: &'static str) -> http::Request<Bytes> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("x-test", "1")
        .body(Bytes::from_static(body.as_bytes()))
        .unwrap()
}

fn transport(base: &str) -> HttpTransport {
    HttpTransportConfig::new(base).egress(ecp_edge_api::EgressPolicy::allow_loopback()).build().unwrap()
}

#[tokio::test]
async fn sends_the_exact_request_and_returns_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/edge-7/api/v2/node"))
        .and(query_param("type", "1"))
        .and(query_param("name", "a b"))
        .and(header("content-type", "application/json"))
        .and(header("x-test", "1"))
        .and(body_string(r#"{"name":"m1"}"#))
        .respond_with(ResponseTemplate::new(409).insert_header("x-answer", "yes").set_body_raw(r#"{"error":2002}"#, "application/json"))
        .expect(1)
        .mount(&server)
        .await;

    let t = transport(&format!("{}/edge-7/", server.uri()));
    assert_eq!(t.describe(), format!("{}/edge-7", server.uri()));
    assert_eq!(t.max_body(), DEFAULT_MAX_BODY);
    let answer = t.send(request("POST", "/api/v2/node?type=1&name=a%20b", r#"{"name":"m1"}"#)).await.unwrap();
    assert_eq!(answer.status(), 409);
    assert_eq!(answer.headers()["x-answer"], "yes");
    assert_eq!(answer.headers()["content-type"], "application/json");
    assert_eq!(answer.body().as_ref(), br#"{"error":2002}"#);
}

#[tokio::test]
async fn a_slow_answer_is_a_retryable_transport_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3))).mount(&server).await;
    let t = HttpTransportConfig::new(server.uri())
        .egress(ecp_edge_api::EgressPolicy::allow_loopback())
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();

    let started = Instant::now();
    let err = t.send(request("GET", "/api/v2/version", "")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(matches!(err, Error::Transport { retryable: true, .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.to_string(), "GET /api/v2/version: transport failed (retryable)");
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = HttpTransportConfig::new(format!("http://127.0.0.1:{port}"))
        .egress(ecp_edge_api::EgressPolicy::allow_loopback())
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = t.send(request("GET", "/ping", "")).await.unwrap_err();
    assert!(matches!(err, Error::Transport { retryable: true, .. }), "{err:?}");
    // The source does not repeat the URL either.
    let chain = format!("{err:?}");
    assert!(!chain.contains(&format!("127.0.0.1:{port}/ping")), "{chain}");
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 10_000])).mount(&server).await;
    let t = HttpTransportConfig::new(server.uri()).egress(ecp_edge_api::EgressPolicy::allow_loopback()).max_body(4096).build().unwrap();
    let err = t.send(request("GET", "/big", "")).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { size: 10_000, limit: 4096, .. }), "{err:?}");

    let small =
        HttpTransportConfig::new(server.uri()).egress(ecp_edge_api::EgressPolicy::allow_loopback()).max_body(10_000).build().unwrap();
    assert_eq!(small.send(request("GET", "/big", "")).await.unwrap().body().len(), 10_000);
}

/// A server that answers every connection with a chunked body of `chunks` × 1000 bytes, without a
/// `Content-Length`.
fn chunked_server(chunks: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n");
            for _ in 0..chunks {
                let _ = s.write_all(format!("3e8\r\n{}\r\n", "y".repeat(1000)).as_bytes());
                let _ = s.flush();
            }
            let _ = s.write_all(b"0\r\n\r\n");
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_chunked_answer_is_cut_once_it_passes_the_limit() {
    let base = chunked_server(50);
    let t = HttpTransportConfig::new(&base).egress(ecp_edge_api::EgressPolicy::allow_loopback()).max_body(4096).build().unwrap();
    let err = t.send(request("GET", "/metrics", "")).await.unwrap_err();
    let Error::TooLarge { size, limit: 4096, .. } = err else { panic!("{err:?}") };
    assert!(size > 4096 && size <= 5096, "stopped reading at {size}");

    let t = HttpTransportConfig::new(&base).egress(ecp_edge_api::EgressPolicy::allow_loopback()).max_body(50_000).build().unwrap();
    assert_eq!(t.send(request("GET", "/metrics", "")).await.unwrap().body().len(), 50_000);
}

#[tokio::test]
async fn an_oversized_request_is_not_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    let t = HttpTransportConfig::new(server.uri()).egress(ecp_edge_api::EgressPolicy::allow_loopback()).max_body(8).build().unwrap();
    let err = t.send(request("POST", "/tags", r#"{"tags":["t1","t2"]}"#)).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { size: 20, limit: 8, .. }), "{err:?}");
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let server = MockServer::start().await;
    Mock::given(path("/old")).respond_with(ResponseTemplate::new(302).insert_header("location", "/new")).expect(1).mount(&server).await;
    Mock::given(path("/new")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    let answer = transport(&server.uri()).send(request("GET", "/old", "")).await.unwrap();
    assert_eq!(answer.status(), 302);
}

#[tokio::test]
async fn absolute_request_uris_are_refused() {
    let server = MockServer::start().await;
    let t = transport(&server.uri());
    let err = t.send(request("GET", "http://elsewhere.example/x", "")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

#[tokio::test]
async fn credentials_never_reach_errors_or_debug() {
    // In a base URL.
    let err = HttpTransportConfig::new(format!("http://admin:{SENTINEL}@127.0.0.1:1"))
        .egress(ecp_edge_api::EgressPolicy::allow_loopback())
        .build()
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(SENTINEL));
    let config =
        HttpTransportConfig::new(format!("http://admin:{SENTINEL}@127.0.0.1:1")).egress(ecp_edge_api::EgressPolicy::allow_loopback());
    assert!(!format!("{config:?}").contains(SENTINEL));

    // In a client whose login is refused, or whose service is down.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/login"))
        .respond_with(ResponseTemplate::new(401).set_body_raw(r#"{"error":1009}"#, "application/json"))
        .mount(&server)
        .await;
    let credentials = Credentials::Basic { username: "admin".into(), password: SecretString::from(SENTINEL) };
    let client = NeuronClient::new(Arc::new(transport(&server.uri())), credentials.clone()).unwrap();
    assert!(!format!("{client:?}").contains(SENTINEL));
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(SENTINEL));

    let down = HttpTransportConfig::new("http://127.0.0.1:1")
        .egress(ecp_edge_api::EgressPolicy::allow_loopback())
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let client = NeuronClient::new(Arc::new(down), credentials).unwrap();
    let err = client.nodes(ecp_edge_api::neuron::NodeType::Driver, &Default::default()).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        source = s.source();
    }
    assert!(!chain.contains(SENTINEL), "{chain}");

    // Requests on the wire carry the token as a sensitive header.
    let token = Credentials::Token(SecretString::from(SENTINEL));
    let client = NeuronClient::new(Arc::new(transport(&server.uri())), token).unwrap();
    assert!(!format!("{client:?}").contains(SENTINEL));
}

/// The default egress policy: a service endpoint on loopback, in any spelling or behind a name
/// that resolves there, gets nothing sent and a final (not retryable) refusal; the server sees no
/// request.
#[tokio::test]
async fn the_default_policy_sends_nothing_to_loopback() {
    let server = MockServer::start().await;
    let port = server.address().port();
    for base in [
        server.uri(),
        format!("http://127.1:{port}"),
        format!("http://0x7f000001:{port}"),
        format!("http://2130706433:{port}"),
        format!("http://localhost:{port}"),
        format!("http://localhost.:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://[::1]:{port}"),
    ] {
        let t = HttpTransportConfig::new(&base).build().unwrap();
        let e = t.send(request("GET", "/api/v2/ping", "")).await.unwrap_err();
        assert!(matches!(&e, Error::Transport { retryable: false, .. }), "{base}: {e:?}");
        let mut chain = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            chain.push_str(&format!(": {c}"));
            cause = c.source();
        }
        assert!(chain.contains("egress policy"), "{base}: {chain}");
    }
    assert!(server.received_requests().await.unwrap().is_empty(), "a request reached loopback");
}

/// A path that climbs out of the service's base path in an encoded spelling is refused before
/// anything is sent (the URL parser would resolve `%2e%2e` into the parent).
#[tokio::test]
async fn encoded_dot_segments_never_leave_the_base_path() {
    let server = MockServer::start().await;
    let t = transport(&format!("{}/edge-7", server.uri()));
    for uri in ["/api/%2e%2e/%2e%2e/admin", "/api/.%2E/x", "/%252e%252e/x", "/a/..%2f..%2fadmin", "/a/%5c..%5cb"] {
        let e = t.send(request("GET", uri, "")).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "path"), "{uri}: {e:?}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    let raw = ecp_edge_api::ApiCall::raw("GET", "/api/v2/%2E%2E/secret", None, None);
    assert!(raw.is_err(), "a raw call with an encoded climb");
}
