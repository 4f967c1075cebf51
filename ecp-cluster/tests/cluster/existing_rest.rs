//! The EMQX 5 REST client and the `existing` driver against wiremock, with the bodies of
//! api-contracts.md §1 (5.10 shapes, 5.3's short ones, the quirks) and every error shape.
#![cfg(feature = "existing")]

use std::time::Duration;

use ecp_cluster::emqx::{
    ClientOptions, ClientQuery, ConnState, EmqxClient, ErrorBody, LicenseSetting, LicenseType, Limit, ListenerRunning, NodeHealth,
    NodeStatus, PageRequest, parse_memory,
};
use ecp_cluster::{ApiKey, ClusterApi, ClusterDriver, ClusterRef, ClusterStatus, Error, ExistingDriver};
use ecp_core::{ClusterId, ProjectId};
use futures::StreamExt;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{any as anything, basic_auth, body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "ecp-onboard";
const SECRET: &str = "SENTINEL-s3cr3t-7f1e";

fn api(server: &MockServer) -> ClusterApi {
    ClusterApi { base_url: server.uri(), key: ApiKey::new(KEY, SecretString::from(SECRET)).unwrap() }
}

fn client(server: &MockServer) -> EmqxClient {
    EmqxClient::new(&api(server), &ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap())
        .unwrap()
}

/// A mock of `GET path` that only answers requests with the API key as Basic and
/// `Accept: application/json`.
fn get(p: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path(p)).and(basic_auth(KEY, SECRET)).and(header("accept", "application/json"))
}

/// Every request the server saw carried the Basic credentials and the Accept header.
async fn assert_all_authenticated(server: &MockServer) {
    let requests = server.received_requests().await.unwrap();
    assert!(!requests.is_empty());
    let expected = format!("Basic {}", base64_of(&format!("{KEY}:{SECRET}")));
    for r in requests {
        assert_eq!(r.headers.get("authorization").and_then(|v| v.to_str().ok()), Some(expected.as_str()), "{}", r.url);
        assert_eq!(r.headers.get("accept").and_then(|v| v.to_str().ok()), Some("application/json"), "{}", r.url);
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn nodes_510() -> Value {
    json!([{"node":"emqx@10.0.0.1","node_status":"running","role":"core","version":"5.10.4","edition":"Enterprise",
      "otp_release":"27.2-3/15.2","uptime":5120000,"connections":12,"live_connections":10,"cluster_sessions":12,
      "load1":2.66,"load5":2.1,"load15":1.9,"max_fds":1048576,"memory_total":"7.63G","memory_used":"3.10G",
      "process_available":2097152,"process_used":1024,"sys_path":"/opt/emqx","log_path":"/opt/emqx/log"},
     {"node":"emqx@10.0.0.2","node_status":"stopped","role":"core"}])
}

fn running_nodes() -> Value {
    json!([{"node":"emqx@10.0.0.1","node_status":"running","role":"core","version":"5.10.4","edition":"Enterprise","memory_total":"7.63G"},
           {"node":"emqx@10.0.0.3","node_status":"running","role":"replicant","version":"5.10.4","edition":"Enterprise"}])
}

fn license_body() -> Value {
    json!({"customer":"Foo","email":"contact@foo.com","deployment":"bar-deployment","customer_type":10,"type":"trial",
           "start_at":"2022-01-11","expiry_at":"2295-10-27","expiry":false,"max_sessions":10,"max_connections":10})
}

async fn mount_status(server: &MockServer) {
    get("/status")
        .and(query_param("format", "json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"node_name":"emqx@10.0.0.1","cluster":"emqxcl","broker_status":"started","app_status":"running"})),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn nodes_of_5_10_with_a_stopped_node_of_three_keys() {
    let server = MockServer::start().await;
    get("/api/v5/nodes").respond_with(ResponseTemplate::new(200).set_body_json(nodes_510())).expect(1).mount(&server).await;
    let nodes = client(&server).nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    let a = &nodes[0];
    assert_eq!(a.node_status, NodeStatus::Running);
    assert_eq!(a.memory_total, Some((7.63 * 1024f64.powi(3)).round() as u64));
    assert_eq!(a.memory_used, Some((3.10 * 1024f64.powi(3)).round() as u64));
    assert_eq!(a.uptime, Some(5_120_000));
    assert_eq!(a.cluster_sessions, Some(12));
    assert_eq!(a.load1, Some(2.66));
    assert_eq!(a.sys_path.as_deref(), Some("/opt/emqx"));
    let b = &nodes[1];
    assert_eq!((b.node.as_str(), &b.node_status, b.role.as_deref()), ("emqx@10.0.0.2", &NodeStatus::Stopped, Some("core")));
    assert_eq!((b.version.as_ref(), b.memory_total, b.uptime), (None, None, None));
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn one_node_and_its_not_found() {
    let server = MockServer::start().await;
    get("/api/v5/nodes/emqx@10.0.0.1").respond_with(ResponseTemplate::new(200).set_body_json(nodes_510()[0].clone())).mount(&server).await;
    get("/api/v5/nodes/emqx@10.0.0.9")
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"code":"NOT_FOUND","message":"Node not found: emqx@10.0.0.9"})))
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(c.node("emqx@10.0.0.1").await.unwrap().version.as_deref(), Some("5.10.4"));
    let e = c.node("emqx@10.0.0.9").await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(matches!(&e, Error::Api { status: 404, code: Some(c), message: Some(m), .. } if c == "NOT_FOUND" && m.contains("10.0.0.9")));
    assert_all_authenticated(&server).await;
}

/// A cluster whose `/status` answers 503 as 5.3 does: `retry-after` and the misspelled type.
async fn not_ready_server() -> MockServer {
    let server = MockServer::start().await;
    get("/status")
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("retry-after", "15")
                .set_body_raw("Node emqx@10.0.0.1 is starting\nemqx is not_running", "applicatin/json"),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn status_as_json_as_text_misspelled_and_503() {
    let server = MockServer::start().await;
    mount_status(&server).await;
    match client(&server).status().await.unwrap() {
        NodeHealth::Ready(r) => {
            assert_eq!(r.cluster.as_deref(), Some("emqxcl"));
            assert!(r.is_running());
        }
        other => panic!("{other:?}"),
    }

    // 5.3 answers the text form whatever the query, with its misspelled content type.
    let server = MockServer::start().await;
    get("/status")
        .respond_with(ResponseTemplate::new(200).set_body_raw("Node emqx@10.0.0.1 is started\nemqx is running", "applicatin/json"))
        .mount(&server)
        .await;
    let NodeHealth::Ready(r) = client(&server).status().await.unwrap() else { panic!("not ready") };
    assert_eq!((r.node_name.as_str(), r.broker_status.as_str(), r.app_status.as_str()), ("emqx@10.0.0.1", "started", "running"));
    assert_eq!(r.cluster, None);

    let server = not_ready_server().await;
    match client(&server).status().await.unwrap() {
        NodeHealth::NotReady { retry_after, report } => {
            assert_eq!(retry_after, Some(Duration::from_secs(15)));
            assert_eq!(report.unwrap().app_status, "not_running");
        }
        other => panic!("{other:?}"),
    }
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn stats_per_node_and_aggregated() {
    let server = MockServer::start().await;
    get("/api/v5/stats")
        .and(query_param_is_missing("aggregate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"node":"emqx@10.0.0.1","connections.count":12,"connections.max":40,
            "live_connections.count":10,"sessions.count":12,"subscriptions.count":20,"subscriptions.shared.count":0,"topics.count":8,
            "retained.count":3,"durable_subscriptions.count":0}])))
        .mount(&server)
        .await;
    get("/api/v5/stats")
        .and(query_param("aggregate", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"connections.count":24,"connections.max":80,"topics.count":8})))
        .mount(&server)
        .await;
    let c = client(&server);
    let per_node = c.stats().await.unwrap();
    assert_eq!(per_node[0].node.as_deref(), Some("emqx@10.0.0.1"));
    assert_eq!((per_node[0].count("connections"), per_node[0].max("connections")), (Some(12), Some(40)));
    assert_eq!(per_node[0].count("subscriptions.shared"), Some(0));
    let all = c.stats_aggregate().await.unwrap();
    assert_eq!(
        (all.node.as_deref(), all.count("connections"), all.max("connections"), all.count("retained")),
        (None, Some(24), Some(80), None)
    );
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn metrics_per_node_and_aggregated() {
    let server = MockServer::start().await;
    get("/api/v5/metrics")
        .and(query_param("aggregate", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"bytes.received":1000,"messages.received":50,"messages.dropped.no_subscribers":2,"authorization.deny":1}),
        ))
        .mount(&server)
        .await;
    get("/api/v5/metrics")
        .and(query_param_is_missing("aggregate"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"node":"emqx@10.0.0.1","messages.received":30},{"node":"emqx@10.0.0.2","messages.received":20}])),
        )
        .mount(&server)
        .await;
    let c = client(&server);
    let m = c.metrics_aggregate().await.unwrap();
    assert_eq!((m.get("messages.received"), m.get("messages.dropped.no_subscribers"), m.get("absent")), (Some(50), Some(2), None));
    let per_node = c.metrics().await.unwrap();
    assert_eq!(per_node.iter().map(|m| m.get("messages.received").unwrap()).sum::<u64>(), 50);
    assert_eq!(per_node[1].node.as_deref(), Some("emqx@10.0.0.2"));
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn monitor_current_of_5_10_and_5_3() {
    let server = MockServer::start().await;
    get("/api/v5/monitor_current")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"connections":12,"live_connections":10,"cluster_sessions":12,
            "subscriptions":20,"subscriptions_ram":20,"subscriptions_durable":0,"disconnected_durable_sessions":0,"topics":8,
            "shared_subscriptions":0,"retained_msg_count":3,"received_msg_rate":5,"sent_msg_rate":5,"dropped_msg_rate":0,
            "persisted_rate":0,"validation_succeeded_rate":0,"validation_failed_rate":0,"transformation_succeeded_rate":0,
            "transformation_failed_rate":0,"rules_matched_rate":0,"actions_executed_rate":0,"license_quota":1000})))
        .mount(&server)
        .await;
    get("/api/v5/monitor_current/nodes/emqx@10.0.0.1")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"connections":2,"live_connections":2,"subscriptions":1,
            "topics":1,"received_msg_rate":3,"sent_msg_rate":1,"dropped_msg_rate":0})))
        .mount(&server)
        .await;
    let c = client(&server);
    let m = c.monitor_current(None).await.unwrap();
    assert_eq!((m.connections, m.cluster_sessions, m.retained_msg_count, m.license_quota), (12, 12, 3, Some(1000)));
    // 5.3's short body: every other key reads as 0.
    let m = c.monitor_current(Some("emqx@10.0.0.1")).await.unwrap();
    assert_eq!((m.connections, m.received_msg_rate, m.cluster_sessions, m.retained_msg_count, m.license_quota), (2, 3, 0, 0, None));
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn listeners_with_inconsistent_and_infinity() {
    let server = MockServer::start().await;
    get("/api/v5/listeners")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id":"tcp:default","type":"tcp","name":"default","enable":true,"bind":"0.0.0.0:1883","acceptors":16,"number":1,
             "status":{"running":true,"current_connections":100,"max_connections":"infinity"},
             "node_status":[{"node":"emqx@10.0.0.1","status":{"running":true,"current_connections":100,"max_connections":1024000}}]},
            {"id":"ssl:default","type":"ssl","name":"default","enable":true,"bind":"0.0.0.0:8883",
             "status":{"running":"inconsistent","current_connections":0,"max_connections":5000},
             "node_status":[{"node":"emqx@10.0.0.1","status":{"running":false,"current_connections":0,"max_connections":5000}}]}
        ])))
        .mount(&server)
        .await;
    let l = client(&server).listeners().await.unwrap();
    let tcp = l[0].status.as_ref().unwrap();
    assert_eq!((tcp.running, tcp.max_connections), (ListenerRunning::Yes, Some(Limit::Infinity)));
    assert_eq!(l[0].node_status[0].status.max_connections, Some(Limit::Finite(1_024_000)));
    assert_eq!(l[0].kind.as_deref(), Some("tcp"));
    assert_eq!(l[1].status.as_ref().unwrap().running, ListenerRunning::Inconsistent);
    assert_eq!(l[1].node_status[0].status.running, ListenerRunning::No);
    assert_eq!(Limit::Infinity.finite(), None);
    assert_all_authenticated(&server).await;
}

fn client_item(id: &str) -> Value {
    json!({"clientid":id,"username":null,"node":"emqx@10.0.0.1","connected":true,"proto_name":"MQTT",
      "proto_ver":5,"ip_address":"127.0.0.1","port":52571,"keepalive":60,"clean_start":true,"expiry_interval":0,
      "created_at":"2024-01-01T12:34:56.789+08:00","connected_at":"2024-01-01T12:34:56.789+08:00",
      "subscriptions_cnt":1,"subscriptions_max":"infinity","inflight_cnt":0,"mqueue_len":0,"recv_msg":0,
      "send_msg":0,"listener":"tcp:default","durable":false})
}

#[tokio::test]
async fn clients_page_with_null_username_infinity_and_no_count() {
    let server = MockServer::start().await;
    get("/api/v5/clients")
        .and(query_param("page", "1"))
        .and(query_param("limit", "100"))
        .and(query_param("conn_state", "connected"))
        .and(query_param("like_clientid", "dev"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data":[client_item("dev-01")],"meta":{"page":1,"limit":100,"hasnext":false}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let q = ClientQuery::all().conn_state(ConnState::Connected).like_clientid("dev");
    let page = client(&server).clients(&q, PageRequest::default()).await.unwrap();
    assert_eq!(page.meta.count, None, "fuzzy searches have no count");
    assert!(!page.meta.hasnext);
    let c = &page.data[0];
    assert_eq!((c.clientid.as_str(), c.username.as_deref(), c.subscriptions_max), ("dev-01", None, Some(Limit::Infinity)));
    assert_eq!((c.proto_ver, c.port, c.connected), (Some(5), Some(52571), Some(true)));
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn client_pages_walk_every_page_within_the_bound() {
    let server = MockServer::start().await;
    for page in 1..=3u32 {
        let data: Vec<Value> = (0..2).map(|i| client_item(&format!("c-{page}-{i}"))).collect();
        get("/api/v5/clients")
            .and(query_param("page", page.to_string()))
            .and(query_param("limit", "2"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"data":data,"meta":{"page":page,"limit":2,"hasnext":page < 3,"count":6}})),
            )
            .mount(&server)
            .await;
    }
    let c = client(&server);
    let q = ClientQuery::all();
    let pages: Vec<_> = c.client_pages(&q, 2, 100).collect().await;
    let ids: Vec<String> = pages.into_iter().flat_map(|p| p.unwrap().data).map(|c| c.clientid).collect();
    assert_eq!(ids, ["c-1-0", "c-1-1", "c-2-0", "c-2-1", "c-3-0", "c-3-1"]);
    assert_eq!(server.received_requests().await.unwrap().len(), 3, "stops after hasnext=false");

    // The bound: two pages at most, the last still saying more remain.
    let pages: Vec<_> = c.client_pages(&q, 2, 2).collect().await;
    assert_eq!(pages.len(), 2);
    assert!(pages[1].as_ref().unwrap().meta.hasnext);
    // A bad limit ends the stream with its error, without a request.
    let before = server.received_requests().await.unwrap().len();
    let pages: Vec<_> = c.client_pages(&q, 0, 5).collect().await;
    assert!(matches!(pages.as_slice(), [Err(Error::Core(_))]));
    assert_eq!(server.received_requests().await.unwrap().len(), before);
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn alarms_active_and_deactivated() {
    let server = MockServer::start().await;
    get("/api/v5/alarms")
        .and(query_param("activated", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data":[{"node":"emqx@10.0.0.1","name":"high_system_memory_usage",
            "message":"System memory usage is higher than 70%","details":{"high_watermark":70},"duration":297056,
            "activate_at":"2021-10-25T11:52:52.548+08:00"}],"meta":{"page":1,"limit":100,"hasnext":false,"count":1}})))
        .mount(&server)
        .await;
    get("/api/v5/alarms")
        .and(query_param("activated", "false"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data":[{"node":"emqx@10.0.0.1","name":"conn_congestion/c1/u1",
            "message":"connection congested","details":{},"duration":1500,"activate_at":"2021-10-25T11:52:52.548+08:00",
            "deactivate_at":"2021-10-25T11:52:54.048+08:00"}],"meta":{"page":1,"limit":100,"hasnext":false,"count":1}})))
        .mount(&server)
        .await;
    let c = client(&server);
    let active = c.alarms(Some(true), PageRequest::default()).await.unwrap();
    let a = &active.data[0];
    assert_eq!(
        (a.name.as_str(), a.duration(), a.deactivate_at.as_ref()),
        ("high_system_memory_usage", Some(Duration::from_millis(297_056)), None)
    );
    assert_eq!(a.details["high_watermark"], 70);
    assert_eq!(active.meta.count, Some(1));
    let history: Vec<_> = c.alarm_pages(Some(false), 100, 10).collect().await;
    assert_eq!(history[0].as_ref().unwrap().data[0].deactivate_at.as_deref(), Some("2021-10-25T11:52:54.048+08:00"));
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn license_of_enterprise_and_its_absence_on_open_source() {
    let server = MockServer::start().await;
    get("/api/v5/license").respond_with(ResponseTemplate::new(200).set_body_json(license_body())).mount(&server).await;
    let l = client(&server).license().await.unwrap().unwrap();
    assert_eq!((l.license_type.clone(), l.connection_limit(), l.expiry), (Some(LicenseType::Trial), Some(Limit::Finite(10)), Some(false)));
    assert_eq!(l.expiry_at.as_deref(), Some("2295-10-27"));

    let server = MockServer::start().await;
    get("/api/v5/license")
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"code":"NOT_FOUND","message":"Request Path Not Found"})))
        .mount(&server)
        .await;
    assert_eq!(client(&server).license().await.unwrap(), None);
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn connection_limit_keeps_the_watermarks() {
    let server = MockServer::start().await;
    get("/api/v5/license/setting")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"connection_low_watermark":"60%","connection_high_watermark":"90%","dynamic_max_connections":25})),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v5/license/setting"))
        .and(basic_auth(KEY, SECRET))
        .and(header("accept", "application/json"))
        .and(body_json(json!({"connection_low_watermark":"60%","connection_high_watermark":"90%","dynamic_max_connections":5000})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"connection_low_watermark":"60%","connection_high_watermark":"90%","dynamic_max_connections":5000})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let s = client(&server).set_connection_limit(5000).await.unwrap();
    assert_eq!(s.dynamic_max_connections, Some(5000));
    assert_eq!(s.connection_high_watermark.as_deref(), Some("90%"));
    assert_all_authenticated(&server).await;

    // Not business-critical: EMQX drops the field from both the setting and the answer.
    let server = MockServer::start().await;
    let plain = json!({"connection_low_watermark":"75%","connection_high_watermark":"80%"});
    get("/api/v5/license/setting").respond_with(ResponseTemplate::new(200).set_body_json(plain.clone())).mount(&server).await;
    Mock::given(method("PUT"))
        .and(path("/api/v5/license/setting"))
        .respond_with(ResponseTemplate::new(200).set_body_json(plain))
        .mount(&server)
        .await;
    let e = client(&server).set_connection_limit(5000).await.unwrap_err();
    assert!(matches!(&e, Error::Incompatible { reason, .. } if reason.contains("business-critical")), "{e:?}");

    // Open source: no setting at all.
    let server = MockServer::start().await;
    get("/api/v5/license/setting").respond_with(ResponseTemplate::new(404)).mount(&server).await;
    let e = client(&server).set_connection_limit(5000).await.unwrap_err();
    assert!(matches!(e, Error::Incompatible { .. }), "{e:?}");
    assert_eq!(LicenseSetting::connection_limit(7).dynamic_max_connections, Some(7));
}

/// Answers `GET /api/v5/nodes` with `template` and returns the error.
async fn nodes_error(template: ResponseTemplate) -> Error {
    let server = MockServer::start().await;
    Mock::given(anything()).respond_with(template).mount(&server).await;
    let e = client(&server).nodes().await.unwrap_err();
    assert_all_authenticated(&server).await;
    e
}

#[tokio::test]
async fn every_error_shape_is_typed() {
    // 401 with the header EMQX sends.
    let e = nodes_error(
        ResponseTemplate::new(401)
            .insert_header("www-authenticate", "Basic Realm=\"emqx-dashboard\"")
            .set_body_json(json!({"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"})),
    )
    .await;
    assert!(matches!(&e, Error::Unauthorized { status: 401, code: Some(c), .. } if c == "BAD_API_KEY_OR_SECRET"), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(e.to_string(), "GET /api/v5/nodes: api key refused (401, BAD_API_KEY_OR_SECRET)");

    let e =
        nodes_error(ResponseTemplate::new(401).set_body_json(json!({"code":"API_KEY_NOT_ALLOW","message":"API Key not allowed"}))).await;
    assert!(matches!(&e, Error::Unauthorized { status: 401, code: Some(c), .. } if c == "API_KEY_NOT_ALLOW"), "{e:?}");

    let e = nodes_error(
        ResponseTemplate::new(403)
            .set_body_json(json!({"code":"UNAUTHORIZED_ROLE","message":"This API Key don't have permission to access this resource"})),
    )
    .await;
    assert!(matches!(&e, Error::Unauthorized { status: 403, code: Some(c), .. } if c == "UNAUTHORIZED_ROLE"), "{e:?}");

    for code in ["NOT_FOUND", "CLIENTID_NOT_FOUND", "BAD_LISTENER_ID"] {
        let e = nodes_error(ResponseTemplate::new(404).set_body_json(json!({"code":code,"message":"not here"}))).await;
        assert!(e.is_not_found() && matches!(&e, Error::Api { code: Some(c), .. } if c == code), "{e:?}");
    }

    // 405: an empty body and an Allow header.
    let e = nodes_error(ResponseTemplate::new(405).insert_header("allow", "GET")).await;
    assert!(matches!(&e, Error::Api { status: 405, code: None, message: None, .. }), "{e:?}");

    let e = nodes_error(ResponseTemplate::new(500).set_body_json(json!({"code":"NODE_DOWN","message":"bad rpc call"}))).await;
    assert!(e.is_retryable() && matches!(&e, Error::Api { status: 500, code: Some(c), .. } if c == "NODE_DOWN"), "{e:?}");

    // Extra keys merged in by minirest are tolerated.
    let e = nodes_error(
        ResponseTemplate::new(400)
            .set_body_json(json!({"code":"INVALID_PARAMETER","message":"page_limit_invalid","hint":"limit is 1..10000","value":0})),
    )
    .await;
    assert!(
        matches!(&e, Error::Api { status: 400, code: Some(c), message: Some(m), .. } if c == "INVALID_PARAMETER" && m == "page_limit_invalid")
    );
    assert!(!e.is_retryable());

    // A proxy's HTML page.
    let e = nodes_error(ResponseTemplate::new(502).set_body_raw("<html>\n<h1>502 Bad Gateway</h1></html>", "text/html")).await;
    assert!(matches!(&e, Error::Api { status: 502, code: None, message: Some(m), .. } if m.contains("502 Bad Gateway")), "{e:?}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn garbage_oversized_and_slow_answers() {
    let e = nodes_error(ResponseTemplate::new(200).set_body_raw("<html>not json</html>", "text/html")).await;
    assert!(matches!(&e, Error::Decode { endpoint, .. } if endpoint == "GET /api/v5/nodes"), "{e:?}");
    let e = nodes_error(ResponseTemplate::new(200).set_body_json(json!({"node":"not an array"}))).await;
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
    let e = nodes_error(ResponseTemplate::new(200).set_body_json(json!([{"node_status":"running"}]))).await;
    assert!(matches!(e, Error::Decode { .. }), "a node without `node`: {e:?}");
    let e = nodes_error(ResponseTemplate::new(200).set_body_raw(vec![0xff, 0xfe, 0x00, 0x9f], "application/json")).await;
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");

    let server = MockServer::start().await;
    let big = format!("[{}]", vec![r#"{"node":"emqx@h"}"#; 200].join(","));
    Mock::given(anything()).respond_with(ResponseTemplate::new(200).set_body_raw(big.clone(), "application/json")).mount(&server).await;
    let small = EmqxClient::new(
        &api(&server),
        &ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).max_body(1024).build().unwrap(),
    )
    .unwrap();
    let e = small.nodes().await.unwrap_err();
    assert!(matches!(&e, Error::TooLarge { size, limit: 1024, .. } if *size >= big.len()), "{e:?}");
    assert_eq!(
        EmqxClient::new(
            &api(&server),
            &ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap()
        )
        .unwrap()
        .nodes()
        .await
        .unwrap()
        .len(),
        200
    );

    let server = MockServer::start().await;
    Mock::given(anything())
        .respond_with(ResponseTemplate::new(200).set_body_json(nodes_510()).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let hasty = EmqxClient::new(
        &api(&server),
        &ClientOptions::builder()
            .egress(ecp_cluster::emqx::EgressPolicy::allow_loopback())
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let e = hasty.nodes().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(matches!(e, Error::Transport { retryable: true, .. }), "{e:?}");
}

fn cluster_ref(server: &MockServer) -> ClusterRef {
    ClusterRef::new(ClusterId::new(), ProjectId::new(), "prod-1").with_api(api(server))
}

#[tokio::test]
async fn verify_reads_status_nodes_and_license() {
    let server = MockServer::start().await;
    mount_status(&server).await;
    get("/api/v5/nodes").respond_with(ResponseTemplate::new(200).set_body_json(running_nodes())).mount(&server).await;
    get("/api/v5/license").respond_with(ResponseTemplate::new(200).set_body_json(license_body())).mount(&server).await;
    let driver =
        ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap()).unwrap();
    let info = driver.verify(&api(&server)).await.unwrap();
    assert_eq!((info.version(), info.edition()), (Some("5.10.4"), Some("Enterprise")));
    assert_eq!(info.status.cluster.as_deref(), Some("emqxcl"));
    assert_eq!(info.license.as_ref().and_then(|l| l.connection_limit()), Some(Limit::Finite(10)));
    assert_eq!(info.state().status, ClusterStatus::Running);

    let state = driver.state(&cluster_ref(&server)).await.unwrap();
    assert_eq!(state.status, ClusterStatus::Running);
    assert_eq!((state.core.desired, state.core.ready, state.replicant.desired, state.replicant.ready), (1, 1, 1, 1));
    assert_eq!(state.nodes[1].role, "replicant");
    assert_all_authenticated(&server).await;
}

#[tokio::test]
async fn a_wrong_key_is_refused_at_onboarding() {
    let server = MockServer::start().await;
    mount_status(&server).await;
    Mock::given(path("/api/v5/nodes"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", "Basic Realm=\"emqx-dashboard\"")
                .set_body_json(json!({"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"})),
        )
        .mount(&server)
        .await;
    let driver =
        ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap()).unwrap();
    let e = driver.verify(&api(&server)).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { status: 401, .. }), "{e:?}");
    let e = driver.state(&cluster_ref(&server)).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
}

#[tokio::test]
async fn servers_that_are_not_emqx_5_are_incompatible() {
    let driver =
        ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap()).unwrap();
    // Another web server: no status report.
    let server = MockServer::start().await;
    Mock::given(anything()).respond_with(ResponseTemplate::new(200).set_body_raw("<html>nginx</html>", "text/html")).mount(&server).await;
    let e = driver.verify(&api(&server)).await.unwrap_err();
    assert!(matches!(&e, Error::Incompatible { endpoint, .. } if endpoint.starts_with("GET /status")), "{e:?}");

    // EMQX 4: the same /status text, no /api/v5.
    let server = MockServer::start().await;
    Mock::given(path("/status"))
        .respond_with(ResponseTemplate::new(200).set_body_string("Node emqx@10.0.0.1 is started\nemqx is running"))
        .mount(&server)
        .await;
    Mock::given(path("/api/v5/nodes")).respond_with(ResponseTemplate::new(404).set_body_string("Not Found")).mount(&server).await;
    let e = driver.verify(&api(&server)).await.unwrap_err();
    assert!(matches!(&e, Error::Incompatible { reason, .. } if reason.contains("not EMQX 5")), "{e:?}");

    // A node of another major version.
    let server = MockServer::start().await;
    mount_status(&server).await;
    get("/api/v5/nodes")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"node":"emqx@h","node_status":"running","version":"4.4.19"}])))
        .mount(&server)
        .await;
    let e = driver.state(&cluster_ref(&server)).await.unwrap_err();
    assert!(matches!(&e, Error::Incompatible { reason, .. } if reason.contains("4.4.19")), "{e:?}");
}

#[tokio::test]
async fn state_names_stopped_nodes_and_not_ready_clusters() {
    let driver =
        ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap()).unwrap();
    let server = MockServer::start().await;
    mount_status(&server).await;
    get("/api/v5/nodes").respond_with(ResponseTemplate::new(200).set_body_json(nodes_510())).mount(&server).await;
    let state = driver.state(&cluster_ref(&server)).await.unwrap();
    assert_eq!(state.status, ClusterStatus::Error("nodes not running: emqx@10.0.0.2 (stopped)".into()));
    assert_eq!((state.core.desired, state.core.ready), (2, 1));
    assert!(!state.nodes[1].running);

    let server = not_ready_server().await;
    let state = driver.state(&cluster_ref(&server)).await.unwrap();
    let cause = state.status.cause().unwrap();
    assert!(cause.starts_with("not ready") && cause.contains("retry after 15 s"), "{cause}");
    let e = driver.verify(&api(&server)).await.unwrap_err();
    assert!(e.is_retryable() && matches!(e, Error::Api { status: 503, .. }), "{e:?}");

    let server = MockServer::start().await;
    mount_status(&server).await;
    get("/api/v5/nodes").respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&server).await;
    assert_eq!(driver.state(&cluster_ref(&server)).await.unwrap().status, ClusterStatus::Error("no nodes".into()));
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_retryable_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = ApiKey::new(KEY, SecretString::from(SECRET)).unwrap();
    let target = ClusterRef::new(ClusterId::new(), ProjectId::new(), "gone")
        .with_api(ClusterApi { base_url: format!("http://127.0.0.1:{port}"), key });
    let e = ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap())
        .unwrap()
        .state(&target)
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Transport { retryable: true, endpoint, .. } if endpoint == "GET /status?format=json"), "{e:?}");

    let e = ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap())
        .unwrap()
        .state(&ClusterRef::new(ClusterId::new(), ProjectId::new(), "no api"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Core(_)), "{e:?}");
}

#[tokio::test]
async fn hosted_operations_are_unsupported() {
    let server = MockServer::start().await;
    let driver =
        ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap()).unwrap();
    let target = cluster_ref(&server);
    let e = driver.scale(&target, 3, 2).await.unwrap_err();
    assert!(e.is_unsupported(), "{e:?}");
    assert!(driver.delete(&target).await.unwrap_err().is_unsupported());
    assert_eq!(driver.backend(), ecp_cluster::ClusterBackend::Existing);
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn the_secret_never_shows() {
    let server = MockServer::start().await;
    let basic = base64_of(&format!("{KEY}:{SECRET}"));
    // A server that echoes the credentials in its errors and in a bad body.
    Mock::given(path("/api/v5/nodes"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"code":"INTERNAL_ERROR","message":format!("bad auth {SECRET} / Basic {basic}")})),
        )
        .mount(&server)
        .await;
    // serde's own message would quote the string.
    Mock::given(path("/api/v5/nodes/emqx@h"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"node": "emqx@h", "load1": SECRET})))
        .mount(&server)
        .await;
    Mock::given(path("/api/v5/listeners"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id":"tcp:default","status":{"running":SECRET}}])))
        .mount(&server)
        .await;
    Mock::given(path("/api/v5/metrics"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"code":"BAD_API_KEY_OR_SECRET","message":SECRET})))
        .mount(&server)
        .await;
    let driver =
        ExistingDriver::new(ClientOptions::builder().egress(ecp_cluster::emqx::EgressPolicy::allow_loopback()).build().unwrap()).unwrap();
    let c = driver.client(&api(&server)).unwrap();
    let handle = driver.cluster(&cluster_ref(&server)).unwrap();
    let mut shown = vec![format!("{c:?}"), format!("{driver:?}"), format!("{handle:?}"), format!("{:?}", cluster_ref(&server))];
    let errors = vec![
        c.nodes().await.unwrap_err(),
        c.listeners().await.unwrap_err(),
        c.metrics_aggregate().await.unwrap_err(),
        c.node("emqx@h").await.unwrap_err(),
    ];
    assert!(matches!(&errors[0], Error::Api { message: Some(m), .. } if m.contains("[REDACTED]")), "{:?}", errors[0]);
    assert!(matches!(&errors[3], Error::Decode { reason, .. } if reason.contains("[REDACTED]")), "{:?}", errors[3]);
    for e in &errors {
        shown.push(e.to_string());
        shown.push(format!("{e:?}"));
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            shown.push(format!("{s} {s:?}"));
            source = s.source();
        }
    }
    for text in shown {
        assert!(!text.contains(SECRET) && !text.contains(&basic), "leaked: {text}");
    }
}

proptest! {
    #[test]
    fn error_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let parsed = ErrorBody::parse(&body);
        prop_assert!(parsed.message.as_ref().is_none_or(|m| m.chars().count() <= 512 && !m.chars().any(char::is_control)));
        prop_assert!(parsed.code.as_ref().is_none_or(|c| c.chars().count() <= 64));
    }

    #[test]
    fn error_bodies_of_emqx_keep_code_and_message(code in "[A-Z_]{1,40}", message in "[ -~]{1,200}", extra in any::<i64>()) {
        let body = serde_json::to_vec(&json!({"code": code, "message": message, "extra": extra})).unwrap();
        let parsed = ErrorBody::parse(&body);
        prop_assert_eq!(parsed.code.as_deref(), Some(code.as_str()));
        let trimmed = message.trim();
        prop_assert_eq!(parsed.message.as_deref(), (!trimmed.is_empty()).then_some(trimmed));
    }

    #[test]
    fn memory_sizes_parse_or_are_none(text in "\\PC{0,24}") {
        // Through the node type: a bad size is `None`, never an error or a panic.
        let body = json!([{"node": "emqx@h", "memory_total": text, "memory_used": text}]);
        let nodes: Vec<ecp_cluster::emqx::Node> = serde_json::from_value(body).unwrap();
        prop_assert_eq!(nodes[0].memory_total, parse_memory(&text));
    }

    #[test]
    fn memory_sizes_in_emqx_notation(whole in 0u64..100_000, frac in 0u32..100, unit in 0usize..5) {
        let suffix = ["", "K", "M", "G", "T"][unit];
        let text = format!("{whole}.{frac:02}{suffix}");
        let expected = (format!("{whole}.{frac:02}").parse::<f64>().unwrap() * 1024f64.powi(unit as i32)).round();
        let got = parse_memory(&text).unwrap() as f64;
        prop_assert!((got - expected).abs() <= 1.0 + expected * 1e-12, "{} -> {} vs {}", text, got, expected);
    }

    #[test]
    fn status_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ecp_cluster::emqx::StatusReport::parse(&body);
    }
}
