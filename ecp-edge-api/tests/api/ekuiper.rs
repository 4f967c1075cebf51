//! `EkuiperClient` against wiremock on loopback, with bodies shaped like eKuiper 2.x's (reference
//! §4): plain-text sentences for success, JSON errors sent as `text/plain` with a newline, the
//! token header without `Bearer`.

use std::sync::Arc;

use ecp_edge_api::Credentials;
use ecp_edge_api::EkuiperClient;
use ecp_edge_api::Error;
use ecp_edge_api::HttpTransportConfig;
use ecp_edge_api::ekuiper::{Rule, RuleState};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// eKuiper's JSON answers.
fn json_reply(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json")
}

/// eKuiper's sentences and errors: `text/plain`.
fn text_reply(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_owned(), "text/plain; charset=utf-8")
}

/// An error as eKuiper sends it: JSON as `text/plain` with a trailing newline.
fn error_reply(status: u16, code: i64, message: &str) -> ResponseTemplate {
    text_reply(status, &format!("{}\n", json!({ "error": code, "message": message })))
}

fn client(server: &MockServer, credentials: Credentials) -> EkuiperClient {
    let transport = HttpTransportConfig::new(server.uri()).egress(ecp_edge_api::EgressPolicy::allow_loopback()).build().unwrap();
    EkuiperClient::new(Arc::new(transport), credentials).unwrap()
}

fn no_auth(r: &Request) -> bool {
    !r.headers.contains_key("authorization")
}

#[tokio::test]
async fn info_and_ping_with_string_numbers_and_omitted_fields() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .respond_with(json_reply(
            200,
            json!({ "version": "2.4.0", "os": "linux", "arch": "amd64", "upTimeSeconds": 1234, "memoryTotal": "8201691136" }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/ping")).respond_with(ResponseTemplate::new(200)).expect(1).mount(&server).await;

    let c = client(&server, Credentials::None);
    let info = c.info().await.unwrap();
    assert_eq!(info.version, "2.4.0");
    assert_eq!(info.up_time_seconds, Some(1234));
    assert_eq!(info.memory_total_bytes(), Some(8_201_691_136));
    assert_eq!((info.cpu_usage.as_deref(), info.memory_used_bytes()), (None, None));
    c.ping().await.unwrap();
}

#[tokio::test]
async fn streams() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/streams")).respond_with(json_reply(200, json!(["demo"]))).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/streams/demo"))
        .respond_with(json_reply(
            200,
            json!({
                "Name": "demo",
                "StreamFields": [{ "Name": "temp", "FieldType": "float" }],
                "Options": { "DATASOURCE": "t/demo", "FORMAT": "JSON" },
                "StreamType": 0
            }),
        ))
        .mount(&server)
        .await;
    let sql = r#"CREATE STREAM demo (temp FLOAT) WITH (DATASOURCE="t/demo", FORMAT="JSON")"#;
    Mock::given(method("POST"))
        .and(path("/streams"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({ "sql": sql })))
        .respond_with(text_reply(201, "Stream demo is created."))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/streams/demo"))
        .and(query_param("force", "true"))
        .respond_with(text_reply(200, "Stream demo is dropped."))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/streams/demo"))
        .and(|r: &Request| r.url.query().is_none())
        .respond_with(error_reply(400, 1000, "delete stream error: stream demo is referenced by rules [rule1]"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/streams/nope"))
        .respond_with(error_reply(404, 1002, "describe stream error: nope is not found"))
        .mount(&server)
        .await;

    let c = client(&server, Credentials::None);
    assert_eq!(c.streams().await.unwrap(), ["demo"]);
    let d = c.stream("demo").await.unwrap();
    assert_eq!((d.name.as_str(), d.stream_type), ("demo", Some(0)));
    assert_eq!(d.options.unwrap()["FORMAT"], "JSON");
    assert_eq!(c.create_stream(sql).await.unwrap(), "Stream demo is created.");
    let err = c.delete_stream("demo", false).await.unwrap_err();
    assert!(matches!(&err, Error::Api { status: 400, code: Some(1000), message: Some(m), .. } if m.ends_with("[rule1]")), "{err:?}");
    assert_eq!(c.delete_stream("demo", true).await.unwrap(), "Stream demo is dropped.");
    let err = c.stream("nope").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn rules_status_and_control() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rules"))
        .respond_with(json_reply(
            200,
            json!([
                { "id": "rule1", "name": "rule1", "status": "running", "version": "", "trace": false, "tags": null },
                { "id": "rule2", "name": "rule2", "status": "stopped: waiting for next schedule.", "version": "", "trace": false, "tags": ["a"] },
                { "id": "rule3", "name": "rule3", "status": "error: connection refused" }
            ]),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rules/rule1"))
        .respond_with(json_reply(200, json!({ "id": "rule1", "sql": "SELECT * FROM demo", "actions": [{ "log": {} }], "triggered": true })))
        .mount(&server)
        .await;
    let status = "{\n  \"status\": \"running\",\n  \"message\": \"\",\n  \"lastStartTimestamp\": 1712345678901,\n  \"lastStopTimestamp\": 0,\n  \"nextStartTimestamp\": 0,\n  \"source_demo_0_records_in_total\": 5,\n  \"source_demo_0_process_latency_us\": 0,\n  \"source_demo_0_connection_status\": 1,\n  \"source_demo_0_last_exception\": \"\",\n  \"op_2_project_0_records_in_total\": 5,\n  \"sink_log_0_0_records_out_total\": 5\n}";
    Mock::given(method("GET"))
        .and(path("/rules/rule1/status"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(status, "application/json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rules/r9/status"))
        .respond_with(error_reply(404, 1002, "get rule status error: Rule r9 is not found"))
        .mount(&server)
        .await;
    let body = json!({ "id": "rule1", "sql": "SELECT * FROM demo", "actions": [{ "log": {} }] });
    Mock::given(method("POST"))
        .and(path("/rules"))
        .and(body_json(body.clone()))
        .respond_with(text_reply(201, "Rule rule1 was created successfully."))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/rules/rule1"))
        .and(body_json(
            json!({ "id": "rule1", "name": "Rule 1", "sql": "SELECT * FROM demo", "actions": [{ "log": {} }], "options": { "qos": 1 } }),
        ))
        .respond_with(text_reply(200, "Rule rule1 was updated successfully."))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/rules/rule1"))
        .respond_with(text_reply(200, "Rule rule1 is dropped."))
        .expect(1)
        .mount(&server)
        .await;
    for (action, reply) in
        [("start", "Rule rule1 was started"), ("stop", "Rule rule1 was stopped."), ("restart", "Rule rule1 was restarted")]
    {
        Mock::given(method("POST"))
            .and(path(format!("/rules/rule1/{action}")))
            .respond_with(text_reply(200, reply))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/rules/ghost/start"))
        .respond_with(error_reply(404, 1002, "start rule error: Rule ghost is not found"))
        .mount(&server)
        .await;

    let c = client(&server, Credentials::None);
    let rules = c.rules().await.unwrap();
    assert_eq!(
        rules.iter().map(|r| r.state()).collect::<Vec<_>>(),
        [RuleState::Running, RuleState::WaitingForSchedule, RuleState::Error("connection refused".into())]
    );
    assert_eq!((rules[0].tags.as_ref(), rules[1].tags.as_deref()), (None, Some(&["a".to_owned()][..])));
    let rule = c.rule("rule1").await.unwrap();
    assert_eq!((rule.sql.as_deref(), rule.extra["triggered"].as_bool()), (Some("SELECT * FROM demo"), Some(true)));

    let st = c.rule_status("rule1").await.unwrap();
    assert!(st.state().is_running());
    assert_eq!(st.message.as_deref(), Some(""));
    assert_eq!(st.last_start_timestamp, Some(1_712_345_678_901));
    assert_eq!(st.metrics["sink_log_0_0_records_out_total"], 5);
    assert_eq!(st.metrics.len(), 6, "{:?}", st.metrics.keys());
    let err = c.rule_status("r9").await.unwrap_err();
    let Error::Api { status: 404, code: Some(1002), message: Some(m), .. } = &err else { panic!("{err:?}") };
    assert_eq!(m, "get rule status error: Rule r9 is not found");

    let mut rule = Rule::new("rule1", "SELECT * FROM demo", vec![json!({ "log": {} })]);
    assert_eq!(c.create_rule(&rule).await.unwrap(), "Rule rule1 was created successfully.");
    rule.name = Some("Rule 1".into());
    rule.options = Some(json!({ "qos": 1 }));
    assert_eq!(c.update_rule(&rule).await.unwrap(), "Rule rule1 was updated successfully.");
    assert_eq!(c.start_rule("rule1").await.unwrap(), "Rule rule1 was started");
    assert_eq!(c.stop_rule("rule1").await.unwrap(), "Rule rule1 was stopped.");
    assert_eq!(c.restart_rule("rule1").await.unwrap(), "Rule rule1 was restarted");
    assert_eq!(c.delete_rule("rule1").await.unwrap(), "Rule rule1 is dropped.");
    assert!(c.start_rule("ghost").await.unwrap_err().is_not_found());
    assert!(matches!(c.start_rule("..").await, Err(Error::InvalidInput { .. })));
}

#[tokio::test]
async fn the_token_goes_without_bearer_and_not_to_exempt_paths() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rules"))
        .and(header("authorization", "eyJhbGciOiJSUzI1NiJ9.e30.sig"))
        .respond_with(json_reply(200, json!([])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/ping")).and(no_auth).respond_with(ResponseTemplate::new(200)).expect(1).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/"))
        .and(no_auth)
        .respond_with(json_reply(200, json!({ "version": "2.4.0" })))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server, Credentials::Token(SecretString::from("eyJhbGciOiJSUzI1NiJ9.e30.sig")));
    assert!(c.rules().await.unwrap().is_empty());
    c.ping().await.unwrap();
    assert_eq!(c.version().await.unwrap(), "2.4.0");
}

#[tokio::test]
async fn auth_failures_are_plain_text_401() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/rules")).and(no_auth).respond_with(text_reply(401, "missing_token")).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/streams"))
        .respond_with(text_reply(401, "validate token error: token is expired"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, Credentials::None).rules().await.unwrap_err();
    assert!(matches!(&err, Error::Unauthorized { endpoint } if endpoint == "GET /rules"), "{err:?}");
    let c = client(&server, Credentials::Token(SecretString::from("old")));
    assert!(matches!(c.streams().await, Err(Error::Unauthorized { .. })));
}

#[tokio::test]
async fn basic_credentials_are_refused_up_front() {
    let transport = HttpTransportConfig::new("http://127.0.0.1:9081").egress(ecp_edge_api::EgressPolicy::allow_loopback()).build().unwrap();
    let credentials = Credentials::Basic { username: "admin".into(), password: SecretString::from("x") };
    assert!(matches!(EkuiperClient::new(Arc::new(transport), credentials), Err(Error::InvalidInput { .. })));
}
