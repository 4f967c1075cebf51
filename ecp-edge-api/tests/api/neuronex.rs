//! `NeuronExClient` against wiremock on loopback (reference §0.5, §3): its own login with
//! `password`, version and system, and the Neuron and eKuiper APIs proxied under `/api/neuron` and
//! `/api/ekuiper` with one `Bearer` token.

use std::sync::Arc;

use ecp_edge_api::Credentials;
use ecp_edge_api::Error;
use ecp_edge_api::HttpTransportConfig;
use ecp_edge_api::NeuronExClient;
use ecp_edge_api::ekuiper::RuleState;
use ecp_edge_api::neuron::NodeCommand;
use ecp_edge_api::neuron::NodeType;
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn json_reply(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json; charset=utf-8")
}

fn client(server: &MockServer) -> NeuronExClient {
    let transport = HttpTransportConfig::new(server.uri()).egress(ecp_edge_api::EgressPolicy::allow_loopback()).build().unwrap();
    let credentials = Credentials::Basic { username: "admin".into(), password: SecretString::from("0000") };
    NeuronExClient::new(Arc::new(transport), credentials).unwrap()
}

async fn login_mock(server: &MockServer, token: &str, times: Option<u64>, expect: u64) {
    let mut mock = Mock::given(method("POST"))
        .and(path("/api/login"))
        .and(header("content-type", "application/json"))
        .and(|r: &Request| !r.headers.contains_key("authorization"))
        .and(body_json(json!({ "name": "admin", "password": "0000" })))
        .respond_with(json_reply(200, json!({ "token": token, "role": "Administrator" })));
    if let Some(n) = times {
        mock = mock.up_to_n_times(n);
    }
    mock.expect(expect).mount(server).await;
}

#[tokio::test]
async fn login_uses_password_and_the_token_serves_every_api() {
    let server = MockServer::start().await;
    login_mock(&server, "nx1", None, 1).await;
    let bearer = || header("authorization", "Bearer nx1");
    Mock::given(method("GET"))
        .and(path("/api/version"))
        .and(bearer())
        .respond_with(json_reply(200, json!({ "version": "3.1.0-beta.3" })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/system"))
        .and(bearer())
        .respond_with(json_reply(
            200,
            json!({ "neuronStatus": "running", "ekuiperStatus": "running", "os": "linux", "arch": "amd64", "hostname": "edge-7" }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/neuron/node"))
        .and(query_param("type", "1"))
        .and(bearer())
        .respond_with(json_reply(
            200,
            json!({ "nodes": [{ "name": "modbus-1", "plugin": "Modbus TCP", "support_import_tags": true, "tags": "" }] }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    // Behind the proxy even Neuron's ping carries the token.
    Mock::given(method("POST"))
        .and(path("/api/neuron/ping"))
        .and(bearer())
        .respond_with(json_reply(200, json!({})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/neuron/node/ctl"))
        .and(bearer())
        .and(body_json(json!({ "node": "modbus-1", "cmd": 0 })))
        .respond_with(json_reply(200, json!({ "error": 2007 })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/ekuiper/rules"))
        .and(bearer())
        .respond_with(json_reply(
            200,
            json!([{ "id": "rule1", "name": "rule1", "status": "running", "version": "", "trace": false, "tags": null }]),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/ekuiper/"))
        .and(bearer())
        .respond_with(json_reply(
            200,
            json!({ "version": "2.4.0", "os": "linux", "arch": "amd64", "upTimeSeconds": 5, "memoryTotal": "1024" }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/ekuiper/rules/r9/status"))
        .and(bearer())
        .respond_with(
            ResponseTemplate::new(404).set_body_raw(
                "{\"error\":1002,\"message\":\"get rule status error: Rule r9 is not found\"}\n",
                "text/plain; charset=utf-8",
            ),
        )
        .expect(1)
        .mount(&server)
        .await;

    let nx = client(&server);
    assert_eq!(nx.version().await.unwrap().version, "3.1.0-beta.3");
    let system = nx.system().await.unwrap();
    assert_eq!((system.neuron_status.as_deref(), system.os.as_deref()), (Some("running"), Some("linux")));
    assert_eq!(system.extra["hostname"], "edge-7");

    let neuron = nx.neuron();
    assert_eq!(neuron.api().prefix(), "/api/neuron");
    assert_eq!(neuron.nodes(NodeType::Driver, &Default::default()).await.unwrap()[0].name, "modbus-1");
    neuron.ping().await.unwrap();
    let err = neuron.node_ctl("modbus-1", NodeCommand::Start).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 200, code: Some(2007), .. }), "proxied errors under 200: {err:?}");

    let ekuiper = nx.ekuiper();
    assert_eq!(ekuiper.rules().await.unwrap()[0].state(), RuleState::Running);
    assert_eq!(ekuiper.version().await.unwrap(), "2.4.0");
    let err = ekuiper.rule_status("r9").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, code: Some(1002), .. }), "{err:?}");
}

#[tokio::test]
async fn a_401_logs_in_again_once_for_all_apis() {
    let server = MockServer::start().await;
    login_mock(&server, "old", Some(1), 1).await;
    login_mock(&server, "new", None, 1).await;
    Mock::given(method("GET"))
        .and(path("/api/version"))
        .and(header("authorization", "Bearer old"))
        .respond_with(json_reply(200, json!({ "version": "3.6.0" })))
        .expect(1)
        .mount(&server)
        .await;
    // The token expired: NeuronEX says 401 (its body is undocumented).
    Mock::given(method("GET"))
        .and(path("/api/neuron/group"))
        .and(header("authorization", "Bearer old"))
        .respond_with(ResponseTemplate::new(401).set_body_raw("token is expired", "text/plain"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/neuron/group"))
        .and(header("authorization", "Bearer new"))
        .respond_with(json_reply(200, json!({ "groups": [{ "driver": "m1", "group": "g1", "interval": 1000, "tag_count": 2 }] })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/ekuiper/streams"))
        .and(header("authorization", "Bearer new"))
        .respond_with(json_reply(200, json!(["demo"])))
        .expect(1)
        .mount(&server)
        .await;

    let nx = client(&server);
    nx.version().await.unwrap();
    assert_eq!(nx.neuron().all_groups().await.unwrap()[0].group, "g1");
    assert_eq!(nx.ekuiper().streams().await.unwrap(), ["demo"]);
}

#[tokio::test]
async fn refused_twice_is_unauthorized() {
    let server = MockServer::start().await;
    login_mock(&server, "t", None, 2).await;
    Mock::given(method("GET"))
        .and(path("/api/ekuiper/rules"))
        .respond_with(json_reply(401, json!({ "error": 1006 })))
        .expect(2)
        .mount(&server)
        .await;
    let err = client(&server).ekuiper().rules().await.unwrap_err();
    assert!(matches!(&err, Error::Unauthorized { endpoint } if endpoint == "GET /api/ekuiper/rules"), "{err:?}");
}

#[tokio::test]
async fn a_bad_password_is_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/login"))
        .respond_with(json_reply(401, json!({ "error": 1009 })))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server).version().await.unwrap_err();
    assert!(matches!(&err, Error::Unauthorized { endpoint } if endpoint == "POST /api/login"), "{err:?}");
}
