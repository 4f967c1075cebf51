//! `NeuronClient` against wiremock on loopback, with bodies shaped like Neuron 2.15's (reference §3,
//! §8): exact requests, errors under HTTP 200, token expiry and renewal, concurrency.

use std::sync::Arc;

use ecp_edge_api::Credentials;
use ecp_edge_api::Error;
use ecp_edge_api::HttpTransportConfig;
use ecp_edge_api::NeuronClient;
use ecp_edge_api::neuron::NodeType;
use ecp_edge_api::neuron::{DataType, LinkState, MetricsCategory, NodeCommand, NodeFilter, RunningState, Tag, TagAttribute};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn json_reply(status: u16, body: serde_json::Value) -> ResponseTemplate {
    // Neuron answers `application/json` with CORS `*`.
    ResponseTemplate::new(status).insert_header("access-control-allow-origin", "*").set_body_raw(body.to_string(), "application/json")
}

fn admin() -> Credentials {
    Credentials::Basic { username: "admin".into(), password: SecretString::from("0000") }
}

fn client(server: &MockServer, credentials: Credentials) -> NeuronClient {
    let transport = HttpTransportConfig::new(server.uri()).egress(ecp_edge_api::EgressPolicy::allow_loopback()).build().unwrap();
    NeuronClient::new(Arc::new(transport), credentials).unwrap()
}

fn no_auth(r: &Request) -> bool {
    !r.headers.contains_key("authorization")
}

async fn login_mock(server: &MockServer, token: &str, times: Option<u64>, expect: u64) {
    let mut mock = Mock::given(method("POST"))
        .and(path("/api/v2/login"))
        .and(header("content-type", "application/json"))
        .and(no_auth)
        .and(body_json(json!({ "name": "admin", "pass": "0000" })))
        .respond_with(json_reply(200, json!({ "token": token })));
    if let Some(n) = times {
        mock = mock.up_to_n_times(n);
    }
    mock.expect(expect).mount(server).await;
}

#[tokio::test]
async fn logs_in_once_and_lists_nodes_with_filters() {
    let server = MockServer::start().await;
    login_mock(&server, "t1", None, 1).await;
    Mock::given(method("GET"))
        .and(path("/api/v2/node"))
        .and(query_param("type", "1"))
        .and(query_param("plugin", "Modbus TCP"))
        .and(query_param("state", "3"))
        .and(query_param("link", "1"))
        .and(header("authorization", "Bearer t1"))
        .respond_with(json_reply(
            200,
            json!({ "nodes": [{ "name": "modbus-1", "plugin": "Modbus TCP", "support_import_tags": true, "tags": "" }] }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/node"))
        .and(query_param("type", "2"))
        .and(header("authorization", "Bearer t1"))
        .respond_with(json_reply(200, json!({ "nodes": [{ "name": "mqtt", "plugin": "MQTT" }] })))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server, admin());
    let filter = NodeFilter::default().plugin("Modbus TCP").state(RunningState::Running).link(LinkState::Connected);
    let nodes = c.nodes(NodeType::Driver, &filter).await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!((nodes[0].name.as_str(), nodes[0].plugin.as_str()), ("modbus-1", "Modbus TCP"));
    assert_eq!(nodes[0].support_import_tags, Some(true));
    let apps = c.apps().await.unwrap();
    assert_eq!((apps[0].name.as_str(), apps[0].support_import_tags, apps[0].tags.as_deref()), ("mqtt", None, None));
}

#[tokio::test]
async fn ping_and_metrics_need_no_token() {
    let server = MockServer::start().await;
    login_mock(&server, "t1", None, 0).await;
    Mock::given(method("POST"))
        .and(path("/api/v2/ping"))
        .and(no_auth)
        .respond_with(json_reply(200, json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let text = "# HELP cpu_percent CPU usage\n# TYPE cpu_percent gauge\ncpu_percent 3\nnorth_nodes_total 1\n";
    Mock::given(method("GET"))
        .and(path("/api/v2/metrics"))
        .and(query_param("category", "global"))
        .and(no_auth)
        .respond_with(ResponseTemplate::new(200).set_body_raw(text, "text/plain"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/metrics"))
        .and(query_param("category", "driver"))
        .and(query_param("node", "m 1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("send_msgs_total{node=\"m 1\"} 0\n", "text/plain"))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server, admin());
    c.ping().await.unwrap();
    assert_eq!(c.metrics(Some(MetricsCategory::Global), None).await.unwrap(), text);
    assert!(c.metrics(Some(MetricsCategory::Driver), Some("m 1")).await.unwrap().starts_with("send_msgs_total"));
}

#[tokio::test]
async fn version_and_node_changes_send_exact_bodies() {
    let server = MockServer::start().await;
    login_mock(&server, "t1", None, 1).await;
    let ok = || json_reply(200, json!({ "error": 0 }));
    let bearer = || header("authorization", "Bearer t1");
    Mock::given(method("GET"))
        .and(path("/api/v2/version"))
        .and(bearer())
        .respond_with(json_reply(200, json!({ "version": "2.15.0", "revision": "67d6beb", "build_date": "2026-07-22" })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/node"))
        .and(bearer())
        .and(body_json(json!({ "name": "modbus-1", "plugin": "Modbus TCP", "params": { "host": "10.0.0.9" } })))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/node"))
        .and(body_json(json!({ "name": "modbus-1", "plugin": "Modbus TCP" })))
        .respond_with(json_reply(409, json!({ "error": 2002 })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/v2/node"))
        .and(bearer())
        .and(body_json(json!({ "name": "modbus-1" })))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/node/setting"))
        .and(body_json(json!({ "node": "modbus-1", "params": { "timeout": 3000 } })))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/node/setting"))
        .and(query_param("node", "modbus-1"))
        .respond_with(json_reply(200, json!({ "node": "modbus-1", "params": { "timeout": 3000 } })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/node/setting"))
        .and(query_param("node", "fresh"))
        .respond_with(json_reply(200, json!({ "error": 2005 })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/node/ctl"))
        .and(body_json(json!({ "node": "modbus-1", "cmd": 1 })))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/node/ctl"))
        .and(body_json(json!({ "node": "ghost", "cmd": 0 })))
        .respond_with(json_reply(404, json!({ "error": 2003 })))
        .mount(&server)
        .await;

    let c = client(&server, admin());
    let v = c.version().await.unwrap();
    assert_eq!((v.version.as_str(), v.revision.as_deref()), ("2.15.0", Some("67d6beb")));
    c.add_node("modbus-1", "Modbus TCP", Some(&json!({ "host": "10.0.0.9" }))).await.unwrap();
    let err = c.add_node("modbus-1", "Modbus TCP", None).await.unwrap_err();
    assert!(matches!(&err, Error::Api { status: 409, code: Some(2002), message: Some(m), .. } if m == "node already exists"), "{err:?}");
    c.delete_node("modbus-1").await.unwrap();
    c.set_node_setting("modbus-1", &json!({ "timeout": 3000 })).await.unwrap();
    assert_eq!(c.node_setting("modbus-1").await.unwrap().params, json!({ "timeout": 3000 }));
    // An error under HTTP 200 is an error.
    let err = c.node_setting("fresh").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 200, code: Some(2005), .. }), "{err:?}");
    c.node_ctl("modbus-1", NodeCommand::Stop).await.unwrap();
    let err = c.node_ctl("ghost", NodeCommand::Start).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    // Refused before sending.
    assert!(matches!(c.delete_node("").await, Err(Error::InvalidInput { .. })));
}

#[tokio::test]
async fn node_states_and_groups_in_both_shapes() {
    let server = MockServer::start().await;
    login_mock(&server, "t1", None, 1).await;
    let ok = || json_reply(200, json!({ "error": 0 }));
    Mock::given(method("GET"))
        .and(path("/api/v2/node/state"))
        .and(query_param("node", "m1"))
        .respond_with(json_reply(200, json!({ "running": 3, "link": 1, "rtt": 100, "log_level": "notice", "sub_group_count": 1 })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/node/state"))
        .and(|r: &Request| r.url.query().is_none())
        .respond_with(json_reply(
            200,
            json!({
                "states": [
                    { "node": "m1", "running": 3, "link": 1, "rtt": 100, "log_level": "notice", "sub_group_count": 1 },
                    { "node": "mqtt", "running": 4, "link": 0, "rtt": 0, "log_level": "notice", "sub_group_count": 0 }
                ],
                "neuron_core": { "log_level": "notice" }
            }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/group"))
        .and(query_param("node", "m1"))
        .respond_with(json_reply(200, json!({ "groups": [{ "name": "g1", "interval": 1000, "tag_count": 2 }] })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/group"))
        .and(|r: &Request| r.url.query().is_none())
        .respond_with(json_reply(200, json!({ "groups": [{ "driver": "m1", "group": "g1", "interval": 1000, "tag_count": 2 }] })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/group"))
        .and(body_json(json!({ "node": "m1", "group": "g2", "interval": 500 })))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/group"))
        .and(body_json(json!({ "node": "m1", "group": "g2", "new_name": "g3", "interval": 2000 })))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/v2/group"))
        .and(body_json(json!({ "node": "m1", "group": "g3" })))
        .respond_with(json_reply(404, json!({ "error": 2106 })))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server, admin());
    let one = c.node_state("m1").await.unwrap();
    assert_eq!((one.running, one.link, one.rtt, one.sub_group_count), (RunningState::Running, LinkState::Connected, Some(100), Some(1)));
    let all = c.node_states().await.unwrap();
    assert_eq!(all.states.len(), 2);
    assert_eq!((all.states[1].node.as_str(), all.states[1].state.running), ("mqtt", RunningState::Stopped));
    assert_eq!(all.neuron_core, Some(json!({ "log_level": "notice" })));
    let groups = c.groups("m1").await.unwrap();
    assert_eq!((groups[0].name.as_str(), groups[0].interval, groups[0].tag_count), ("g1", 1000, 2));
    let all = c.all_groups().await.unwrap();
    assert_eq!((all[0].driver.as_str(), all[0].group.as_str()), ("m1", "g1"));
    c.add_group("m1", "g2", 500).await.unwrap();
    c.update_group("m1", "g2", Some("g3"), Some(2000)).await.unwrap();
    let err = c.delete_group("m1", "g3").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, code: Some(2106), .. }), "{err:?}");
}

#[tokio::test]
async fn tags_partial_failures_and_writes() {
    let server = MockServer::start().await;
    login_mock(&server, "t1", None, 1).await;
    let tag = json!({ "name": "t1", "address": "1!400001", "attribute": 3, "type": 4, "precision": 0, "decimal": 0.0, "bias": 0.0, "description": "", "unit": "" });
    Mock::given(method("GET"))
        .and(path("/api/v2/tags"))
        .and(query_param("node", "m1"))
        .and(query_param("group", "g1"))
        .respond_with(json_reply(
            200,
            json!({ "tags": [tag.clone(), { "name": "s", "address": "", "attribute": 8, "type": 13, "value": "hi" }] }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tags"))
        .and(body_json(json!({ "node": "m1", "group": "g1", "tags": [tag] })))
        .respond_with(json_reply(200, json!({ "index": 1, "error": 0 })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tags"))
        .respond_with(json_reply(400, json!({ "index": 1, "error": 2205 })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/v2/tags"))
        .and(body_json(json!({ "node": "m1", "group": "g1", "tags": ["t1"] })))
        .respond_with(json_reply(200, json!({ "error": 0 })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/write"))
        .and(body_json(json!({ "node": "m1", "group": "g1", "tag": "t1", "value": 12 })))
        .respond_with(json_reply(400, json!({ "error": 3002 })))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server, admin());
    let tags = c.tags("m1", "g1", None).await.unwrap();
    assert_eq!(tags[0].attribute, TagAttribute::READ | TagAttribute::WRITE);
    assert_eq!(tags[0].data_type, DataType::UINT16);
    assert!(tags[1].attribute.contains(TagAttribute::STATIC));
    assert_eq!(tags[1].value, Some(json!("hi")));

    let mut t1 = Tag::new("t1", "1!400001", TagAttribute::READ | TagAttribute::WRITE, DataType::UINT16);
    t1.precision = Some(0);
    t1.decimal = Some(0.0);
    t1.bias = Some(0.0);
    t1.description = Some(String::new());
    t1.unit = Some(String::new());
    let outcome = c.add_tags("m1", "g1", std::slice::from_ref(&t1)).await.unwrap();
    assert_eq!((outcome.index, outcome.failures().count()), (1, 0));

    let bad = Tag::new("t2", "nonsense", TagAttribute::READ, DataType::INT16);
    let err = c.update_tags("m1", "g1", &[t1, bad]).await.unwrap_err();
    let Error::Api { status: 400, code: Some(2205), message: Some(m), .. } = &err else { panic!("{err:?}") };
    assert!(m.contains("tag address format invalid") && m.contains("the 1 tag(s)"), "{m}");

    c.delete_tags("m1", "g1", &["t1"]).await.unwrap();
    let err = c.write_tag("m1", "g1", "t1", &json!(12)).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 400, code: Some(3002), .. }), "3002 under 400: {err:?}");
}

#[tokio::test]
async fn unknown_routes_answer_html() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/version"))
        .respond_with(
            ResponseTemplate::new(404).set_body_raw("<html><head><title>404 Not Found</title></head><body></body></html>", "text/html"),
        )
        .mount(&server)
        .await;
    let err = client(&server, Credentials::None).version().await.unwrap_err();
    let Error::Api { status: 404, code: None, message: Some(m), .. } = &err else { panic!("{err:?}") };
    assert!(m.contains("HTML page"), "{m}");
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_the_call_retried() {
    let server = MockServer::start().await;
    login_mock(&server, "t1", Some(1), 1).await;
    login_mock(&server, "t2", None, 1).await;
    Mock::given(method("GET"))
        .and(path("/api/v2/group"))
        .and(header("authorization", "Bearer t1"))
        .respond_with(json_reply(403, json!({ "error": 1006 })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/group"))
        .and(header("authorization", "Bearer t2"))
        .respond_with(json_reply(200, json!({ "groups": [] })))
        .expect(2)
        .mount(&server)
        .await;

    let c = client(&server, admin());
    assert!(c.all_groups().await.unwrap().is_empty());
    // The renewed token is cached.
    assert!(c.all_groups().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_token_refused_twice_is_unauthorized() {
    let server = MockServer::start().await;
    login_mock(&server, "t1", None, 2).await;
    Mock::given(method("GET"))
        .and(path("/api/v2/version"))
        .respond_with(json_reply(403, json!({ "error": 1007 })))
        .expect(2)
        .mount(&server)
        .await;
    let err = client(&server, admin()).version().await.unwrap_err();
    assert!(matches!(&err, Error::Unauthorized { endpoint } if endpoint == "GET /api/v2/version"), "{err:?}");
}

#[tokio::test]
async fn missing_or_undecodable_tokens_also_trigger_a_login() {
    let server = MockServer::start().await;
    // The first token does not decode (a rotated signing key): 401 1005, a new login, a retry.
    login_mock(&server, "t1", None, 2).await;
    Mock::given(method("GET"))
        .and(path("/api/v2/version"))
        .respond_with(json_reply(401, json!({ "error": 1005 })))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/version"))
        .respond_with(json_reply(200, json!({ "version": "2.15.0" })))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, admin());
    assert_eq!(c.version().await.unwrap().version, "2.15.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_after_expiry_log_in_once() {
    let server = MockServer::start().await;
    login_mock(&server, "t1", Some(1), 1).await;
    login_mock(&server, "t2", None, 1).await;
    Mock::given(method("GET"))
        .and(path("/api/v2/node"))
        .and(header("authorization", "Bearer t1"))
        .respond_with(json_reply(403, json!({ "error": 1006 })).set_delay(std::time::Duration::from_millis(50)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/node"))
        .and(header("authorization", "Bearer t2"))
        .respond_with(json_reply(200, json!({ "nodes": [{ "name": "m1", "plugin": "Modbus TCP" }] })))
        .expect(16)
        .mount(&server)
        .await;

    let c = client(&server, admin());
    c.login().await.unwrap();
    let calls = (0..16).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { c.drivers().await })
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.unwrap().unwrap()[0].name, "m1");
    }
}

#[tokio::test]
async fn a_static_token_is_sent_as_bearer_and_never_renewed() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/login")).respond_with(json_reply(200, json!({ "token": "x" }))).expect(0).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v2/version"))
        .and(header("authorization", "Bearer static-jwt"))
        .respond_with(json_reply(403, json!({ "error": 1006 })))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, Credentials::Token(SecretString::from("static-jwt")));
    assert!(matches!(c.version().await, Err(Error::Unauthorized { .. })));
}

#[tokio::test]
async fn without_auth_no_header_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/version"))
        .and(no_auth)
        .respond_with(json_reply(200, json!({ "version": "2.15.0" })))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client(&server, Credentials::None).version().await.unwrap().version, "2.15.0");
}

#[tokio::test]
async fn bad_credentials_are_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/login"))
        .respond_with(json_reply(401, json!({ "error": 1009 })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/version")).respond_with(json_reply(200, json!({ "version": "2.15.0" }))).expect(0).mount(&server).await;
    let err = client(&server, admin()).version().await.unwrap_err();
    assert!(matches!(&err, Error::Unauthorized { endpoint } if endpoint == "POST /api/v2/login"), "{err:?}");
}
