//! `NanoMqClient` against wiremock on loopback, with bodies shaped like NanoMQ 0.25's (reference §5,
//! §8): HTTP Basic, `{"code":N}` errors without a content type, `client_id` vs `clientid`, metrics
//! without `code` and with a string `memory`.

use std::sync::Arc;

use ecp_edge_api::Credentials;
use ecp_edge_api::HttpTransportConfig;
use ecp_edge_api::NanoMqClient;
use ecp_edge_api::nanomq::{ClientFilter, Publish, PublishProperties, ReloadConfig, default_credentials};
use ecp_edge_api::{EdgeTransport, Error};
use secrecy::SecretString;
use serde_json::{Map, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// `admin:public`, as NanoMQ's default config has it.
const BASIC: &str = "Basic YWRtaW46cHVibGlj";

fn json_reply(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json")
}

/// NanoMQ's error and auth answers on GET carry no content type.
fn bare_reply(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_bytes(body.to_string())
}

fn client(server: &MockServer) -> NanoMqClient {
    let transport = HttpTransportConfig::new(server.uri()).egress(ecp_edge_api::EgressPolicy::allow_loopback()).build().unwrap();
    NanoMqClient::new(Arc::new(transport), default_credentials()).unwrap()
}

#[tokio::test]
async fn brokers_nodes_and_version_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/brokers"))
        .and(header("authorization", BASIC))
        .respond_with(json_reply(
            200,
            json!({ "code": 0, "data": [{ "datetime": "2022-06-07 10:02:24", "node_status": "Running", "sysdescr": "NanoMQ Broker", "uptime": "15 Hours, 1 minutes, 38 seconds", "version": "0.25.6" }] }),
        ))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/nodes"))
        .and(header("authorization", BASIC))
        .respond_with(json_reply(
            200,
            json!({ "code": 0, "data": [{ "connections": 0, "node_status": "Running", "uptime": "1 Hours", "version": "0.25.6" }] }),
        ))
        .mount(&server)
        .await;

    let c = client(&server);
    let brokers = c.brokers().await.unwrap();
    assert_eq!((brokers[0].node_status.as_deref(), brokers[0].sysdescr.as_deref()), (Some("Running"), Some("NanoMQ Broker")));
    assert_eq!(c.version().await.unwrap(), "0.25.6");
    assert_eq!(c.nodes().await.unwrap()[0].connections, Some(0));
}

#[tokio::test]
async fn clients_say_client_id_and_subscriptions_say_clientid() {
    let server = MockServer::start().await;
    let alvin = json!({ "client_id": "nanomq-f6d6fbfb", "username": "alvin", "keepalive": 60, "conn_state": "connected", "clean_start": true, "proto_name": "MQTT", "proto_ver": 5 });
    Mock::given(method("GET"))
        .and(path("/api/v4/clients"))
        .and(query_param("username", "alvin"))
        .and(query_param("proto_ver", "5"))
        .and(query_param("clean_start", "true"))
        .respond_with(json_reply(200, json!({ "code": 0, "data": [alvin.clone()] })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/clients/nanomq-f6d6fbfb"))
        .respond_with(json_reply(200, json!({ "code": 0, "data": [alvin] })))
        .mount(&server)
        .await;
    // An unknown client id lists nothing; it is not a 404.
    Mock::given(method("GET"))
        .and(path("/api/v4/clients/ghost"))
        .respond_with(json_reply(200, json!({ "code": 0, "data": [] })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/clients/username/alvin"))
        .respond_with(json_reply(200, json!({ "code": 0, "data": [{ "client_id": "c2", "will_topic": "bye", "will_msg": "gone" }] })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/subscriptions"))
        .respond_with(json_reply(200, json!({ "code": 0, "data": [{ "clientid": "nanomq-29978ec1", "topic": "topic123", "qos": 2 }] })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/subscriptions/nanomq-29978ec1"))
        .respond_with(json_reply(200, json!({ "code": 0, "data": [{ "clientid": "nanomq-29978ec1", "topic": "topic123", "qos": 2 }] })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/topic-tree"))
        .respond_with(json_reply(
            200,
            json!({ "code": 0, "data": [[{ "topic": "", "cld_cnt": 1 }], [{ "topic": "topic123", "cld_cnt": 1, "clientid": ["nanomq-3a4a0956"] }]] }),
        ))
        .mount(&server)
        .await;

    let c = client(&server);
    let filter = ClientFilter::default().username("alvin").proto_ver(5).clean_start(true);
    let clients = c.clients(&filter).await.unwrap();
    assert_eq!((clients[0].client_id.as_str(), clients[0].proto_ver, clients[0].keepalive), ("nanomq-f6d6fbfb", Some(5), Some(60)));
    assert_eq!(c.client("nanomq-f6d6fbfb").await.unwrap().unwrap().username.as_deref(), Some("alvin"));
    assert_eq!(c.client("ghost").await.unwrap(), None);
    assert_eq!(c.clients_by_username("alvin").await.unwrap()[0].will_topic.as_deref(), Some("bye"));
    let subs = c.subscriptions().await.unwrap();
    assert_eq!((subs[0].client_id.as_str(), subs[0].topic.as_str(), subs[0].qos), ("nanomq-29978ec1", "topic123", 2));
    assert_eq!(c.client_subscriptions("nanomq-29978ec1").await.unwrap().len(), 1);
    let tree = c.topic_tree().await.unwrap();
    assert_eq!(tree.len(), 2);
    assert!(tree[0][0].client_ids.is_empty());
    assert_eq!(tree[1][0].client_ids, ["nanomq-3a4a0956"]);
}

#[tokio::test]
async fn metrics_and_prometheus() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/metrics"))
        .respond_with(bare_reply(
            200,
            json!({ "metrics": [{ "bridge name": "emqx", "tx_msgs": 3 }], "cpuinfo": "0.00%", "memory": "20049920", "connections": 0 }),
        ))
        .mount(&server)
        .await;
    let text = "# TYPE nanomq_connections_count gauge\nnanomq_connections_count 0\nnanomq_messages_received 12\n";
    Mock::given(method("GET"))
        .and(path("/api/v4/prometheus"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(text, "text/plain"))
        .mount(&server)
        .await;

    let c = client(&server);
    let m = c.metrics().await.unwrap();
    assert_eq!(
        (m.memory.as_deref(), m.memory_bytes(), m.cpuinfo.as_deref(), m.connections),
        (Some("20049920"), Some(20_049_920), Some("0.00%"), Some(0))
    );
    assert_eq!(m.metrics[0]["bridge name"], "emqx");
    assert_eq!(c.prometheus().await.unwrap(), text);
}

#[tokio::test]
async fn reload_and_configuration() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/reload"))
        .respond_with(json_reply(
            200,
            json!({ "code": 0, "data": { "property_size": 32, "max_packet_size": 10240, "client_max_packet_size": 10240, "msq_len": 2048, "qos_duration": 10, "keepalive_backoff": 1.25, "allow_anonymous": true, "enable_mqtt_stream": false, "bridge_mode": false } }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/reload"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({ "data": { "msq_len": 4096, "allow_anonymous": false } })))
        .respond_with(json_reply(200, json!({ "code": 0 })))
        .expect(1)
        .mount(&server)
        .await;
    let basic = json!({ "url": "nmq-tcp://0.0.0.0:1883", "num_taskq_thread": 0, "max_taskq_thread": 0, "parallel": 0, "daemon": false });
    Mock::given(method("GET"))
        .and(path("/api/v4/configuration"))
        .respond_with(json_reply(200, json!({ "code": 0, "data": { "basic": basic.clone(), "tls": { "enable": false } } })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/configuration/basic"))
        .respond_with(json_reply(200, json!({ "code": 0, "data": { "basic": basic.clone() } })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/configuration/nope"))
        .respond_with(bare_reply(404, json!({ "code": 101, "data": {} })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/configuration"))
        .and(body_json(json!({ "data": { "basic": { "daemon": true } } })))
        .respond_with(json_reply(200, json!({ "code": 0 })))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server);
    let r = c.reload_config().await.unwrap();
    assert_eq!((r.msq_len, r.allow_anonymous, r.bridge_mode), (Some(2048), Some(true), Some(false)));
    // NanoMQ 0.25 sends the factor itself, as a JSON float (reference §5, §8).
    assert_eq!(r.keepalive_backoff, Some(1.25));
    assert_eq!(r.extra["enable_mqtt_stream"], false);
    let mut change = ReloadConfig::default();
    change.msq_len = Some(4096);
    change.allow_anonymous = Some(false);
    c.set_reload_config(&change).await.unwrap();

    let all = c.configuration().await.unwrap();
    assert_eq!(all["basic"], basic);
    assert_eq!(c.configuration_section("basic").await.unwrap(), basic);
    let err = c.configuration_section("nope").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, code: Some(101), .. }), "{err:?}");
    let mut sections = Map::new();
    sections.insert("basic".into(), json!({ "daemon": true }));
    c.set_configuration(&sections).await.unwrap();
}

#[tokio::test]
async fn publish_and_its_200_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/mqtt/publish"))
        .and(body_json(json!({
            "topic": "req/1", "payload": "hello", "qos": 1, "retain": false, "clientid": "ecp",
            "properties": { "response_topic": "resp/1", "correlation_data": "c-42", "user_properties": { "k": "v" } }
        })))
        .respond_with(json_reply(200, json!({ "code": 0 })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/mqtt/publish"))
        .and(body_json(json!({ "topic": "", "payload": "x", "qos": 0, "retain": false })))
        .respond_with(json_reply(200, json!({ "code": 108 })))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server);
    let mut msg = Publish::new("req/1", "hello");
    msg.qos = 1;
    msg.clientid = Some("ecp".into());
    let mut props = PublishProperties::default();
    props.response_topic = Some("resp/1".into());
    props.correlation_data = Some("c-42".into());
    props.user_properties = Some(json!({ "k": "v" }).as_object().unwrap().clone());
    msg.properties = Some(props);
    c.publish(&msg).await.unwrap();

    let err = c.publish(&Publish::new("", "x")).await.unwrap_err();
    let Error::Api { status: 200, code: Some(108), message: Some(m), .. } = &err else { panic!("{err:?}") };
    assert_eq!(m, "bad request parameter");
}

#[tokio::test]
async fn errors_are_bare_codes() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/brokers"))
        .and(header("authorization", BASIC))
        .respond_with(bare_reply(200, json!({ "code": 0, "data": [] })))
        .mount(&server)
        .await;
    // Wrong credentials: 401 without a content type.
    Mock::given(method("GET")).and(path("/api/v4/brokers")).respond_with(bare_reply(401, json!({ "code": 103 }))).mount(&server).await;
    // A wrong method answers 404 like an unknown path.
    Mock::given(method("DELETE")).and(path("/api/v4/brokers")).respond_with(bare_reply(404, json!({ "code": 102 }))).mount(&server).await;

    let c = client(&server);
    assert!(c.brokers().await.unwrap().is_empty());
    assert!(matches!(c.version().await, Err(Error::Decode { .. })), "no broker");

    let transport = HttpTransportConfig::new(server.uri()).egress(ecp_edge_api::EgressPolicy::allow_loopback()).build().unwrap();
    let wrong = Credentials::Basic { username: "admin".into(), password: SecretString::from("nope") };
    let c = NanoMqClient::new(Arc::new(transport.clone()), wrong).unwrap();
    assert!(matches!(c.brokers().await, Err(Error::Unauthorized { .. })));

    // A wrong method: the GET parser of the path reads NanoMQ's 404 `{"code":102}`.
    let c = NanoMqClient::new(Arc::new(transport.clone()), default_credentials()).unwrap();
    let mut delete = c.api().brokers().unwrap().into_request();
    *delete.method_mut() = http::Method::DELETE;
    delete.headers_mut().insert("authorization", http::HeaderValue::from_static(BASIC));
    let answer = transport.send(delete).await.unwrap();
    let err = c.api().brokers().unwrap().parse(&answer).unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, code: Some(102), .. }), "{err:?}");
    // Unknown paths (wiremock's own 404 has no body at all).
    let err = c.client_subscriptions("x").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, code: None, .. }), "{err:?}");
}
