//! Public-API tests of the simulated edge services, over real HTTP with reqwest: each kind's wire
//! shapes (status codes, content types, field names) as `shared/reference/api-contracts.md`
//! describes them, auth and token expiry, state changes, fault injection and hostile input.
//! Every wait is bounded.

use std::time::{Duration, Instant};

use ecp_testkit::sim::{
    NanomqClient, NanomqSubscription, NeuronGroup, NeuronNode, NeuronTag, NodeRunState, NodeType, SimConfig, SimHandle, SimKind, SimService,
};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> Client {
    Client::builder().no_proxy().timeout(TIMEOUT).connect_timeout(Duration::from_secs(5)).build().expect("client")
}

async fn start(kind: SimKind) -> SimHandle {
    SimService::start(SimConfig::new(kind)).await.expect("start simulator")
}

fn content_type(r: &Response) -> Option<String> {
    r.headers().get("content-type").map(|v| v.to_str().expect("ascii").to_owned())
}

async fn json_of(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    (status, value)
}

// ---------------------------------------------------------------- Neuron

async fn neuron_login(c: &Client, base: &str) -> String {
    let r = c.post(format!("{base}/api/v2/login")).json(&json!({ "name": "admin", "pass": "0000" })).send().await.unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    body["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn neuron_login_and_jwt_errors() {
    let sim = start(SimKind::Neuron).await;
    let (c, base) = (client(), sim.base_url());
    let login = |body: Value| c.post(format!("{base}/api/v2/login")).json(&body).send();

    let (s, b) = json_of(login(json!({ "name": "admin", "pass": "wrong" })).await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::UNAUTHORIZED, json!({ "error": 1009 })));
    let (s, b) = json_of(login(json!({ "name": "admin" })).await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::BAD_REQUEST, json!({ "error": 1002 })), "a missing field is 1002 (§8)");
    let (s, b) = json_of(login(json!({ "name": "admin", "pass": "123" })).await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::BAD_REQUEST, json!({ "error": 1012 })));
    let (s, b) = json_of(login(json!({ "name": "admin", "password": "0000" })).await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::BAD_REQUEST, json!({ "error": 1002 })), "Neuron reads `pass`, not `password`");
    let r = c.post(format!("{base}/api/v2/login")).body("{not json").send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::BAD_REQUEST, json!({ "error": 1002 })));

    let r = login(json!({ "name": "admin", "pass": "0000" })).await.unwrap();
    assert_eq!(content_type(&r).as_deref(), Some("application/json"));
    assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), "*");
    let token = json_of(r).await.1["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("eyJ"), "a JWT: {token}");

    let version = format!("{base}/api/v2/version");
    let (s, b) = json_of(c.get(&version).send().await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::UNAUTHORIZED, json!({ "error": 1004 })));
    let (s, b) = json_of(c.get(&version).header("Authorization", "Bearer ").send().await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::UNAUTHORIZED, json!({ "error": 1004 })), "nothing after the 7 skipped characters");
    let (s, b) = json_of(c.get(&version).header("Authorization", "Bearer nonsense").send().await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::UNAUTHORIZED, json!({ "error": 1005 })));
    let mut damaged: Vec<char> = token.chars().collect();
    let i = damaged.len() - 20;
    damaged[i] = if damaged[i] == 'x' { 'y' } else { 'x' };
    let damaged: String = damaged.into_iter().collect();
    let (s, b) = json_of(c.get(&version).bearer_auth(&damaged).send().await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::UNAUTHORIZED, json!({ "error": 1005 })), "a damaged signature is 401 1005 (§8)");
    // The first 7 characters are skipped unchecked.
    let r = c.get(&version).header("Authorization", format!("Token: {token}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, b) = json_of(c.get(&version).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, json!({ "version": "2.15.0", "revision": "67d6beb", "build_date": "2026-07-22" }));

    // Ping and metrics need no token.
    let (s, b) = json_of(c.post(format!("{base}/api/v2/ping")).send().await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::OK, json!({})));
    assert_eq!(c.get(format!("{base}/api/v2/metrics")).send().await.unwrap().status(), StatusCode::OK);

    // Unknown routes and wrong methods answer NNG's HTML pages.
    let r = c.get(format!("{base}/api/v2/nope")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(content_type(&r).unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("404"));
    let r = c.get(format!("{base}/api/v2/ping")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(content_type(&r).unwrap().starts_with("text/html"));
    assert_eq!(c.get(format!("{base}/")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn neuron_token_expiry_is_403_1006() {
    let sim = start(SimKind::Neuron).await;
    let (c, base) = (client(), sim.base_url());
    let nodes = format!("{base}/api/v2/node?type=1");

    sim.set_token_lifetime(Duration::from_secs(1));
    let short = neuron_login(&c, &base).await;
    assert_eq!(c.get(&nodes).bearer_auth(&short).send().await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, b) = json_of(c.get(&nodes).bearer_auth(&short).send().await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::FORBIDDEN, json!({ "error": 1006 })));

    sim.set_token_lifetime(Duration::from_secs(3600));
    let long = neuron_login(&c, &base).await;
    assert_eq!(c.get(&nodes).bearer_auth(&long).send().await.unwrap().status(), StatusCode::OK);
    sim.expire_tokens();
    let (s, b) = json_of(c.get(&nodes).bearer_auth(&long).send().await.unwrap()).await;
    assert_eq!((s, b), (StatusCode::FORBIDDEN, json!({ "error": 1006 })));
    // Renewal: a fresh login works again.
    let renewed = neuron_login(&c, &base).await;
    assert_eq!(c.get(&nodes).bearer_auth(&renewed).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn neuron_auth_off_mode() {
    let sim = SimService::start(SimConfig::builder(SimKind::Neuron).auth(false).build().unwrap()).await.unwrap();
    let (c, base) = (client(), sim.base_url());
    let r = c.post(format!("{base}/api/v2/login")).json(&json!({ "name": "x", "pass": "y" })).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::OK, json!({ "token": "" })));
    assert_eq!(c.get(format!("{base}/api/v2/version")).send().await.unwrap().status(), StatusCode::OK);

    // State seeded directly is what the API serves.
    sim.with_neuron(|n| {
        let mut node = NeuronNode::new("seeded", "Modbus TCP", NodeType::Driver);
        let mut group = NeuronGroup::new(2000);
        group.tags.push(NeuronTag::new("temp", "1!400001", 1, 9));
        node.groups.insert("g".into(), group);
        n.nodes.insert("seeded".into(), node);
    })
    .unwrap();
    let r = c.get(format!("{base}/api/v2/tags?node=seeded&group=g")).send().await.unwrap();
    assert_eq!(json_of(r).await.1["tags"][0]["name"], "temp");
    let r = c.get(format!("{base}/api/v2/node/state?node=seeded")).send().await.unwrap();
    assert_eq!(json_of(r).await.1["running"], 1, "a node without settings is in state init");
}

#[tokio::test]
async fn neuron_nodes_groups_tags_have_real_state() {
    let sim = start(SimKind::Neuron).await;
    let (c, base) = (client(), sim.base_url());
    let token = neuron_login(&c, &base).await;
    let api = |p: &str| format!("{base}/api/v2{p}");
    let send = |m: reqwest::Method, p: &str, body: Option<Value>| {
        let mut rb = c.request(m, api(p)).bearer_auth(&token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move { json_of(rb.send().await.unwrap()).await }
    };
    use reqwest::Method as M;

    // Nodes.
    assert_eq!(send(M::GET, "/node", None).await, (StatusCode::BAD_REQUEST, json!({ "error": 1003 })), "type is required");
    let modbus = json!({ "name": "modbus-1", "plugin": "Modbus TCP", "params": { "host": "127.0.0.1", "port": 502 } });
    assert_eq!(send(M::POST, "/node", Some(modbus.clone())).await, (StatusCode::OK, json!({ "error": 0 })));
    assert_eq!(send(M::POST, "/node", Some(modbus)).await, (StatusCode::CONFLICT, json!({ "error": 2002 })));
    let bad_plugin = json!({ "name": "x", "plugin": "No Such Plugin" });
    assert_eq!(send(M::POST, "/node", Some(bad_plugin)).await, (StatusCode::NOT_FOUND, json!({ "error": 2301 })));
    assert_eq!(send(M::POST, "/node", Some(json!({ "name": "mqtt", "plugin": "MQTT" }))).await.0, StatusCode::OK);
    assert_eq!(send(M::POST, "/node", Some(json!({ "name": "s7", "plugin": "Siemens S7ISOTCP" }))).await.0, StatusCode::OK);

    let (s, b) = send(M::GET, "/node?type=1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b,
        json!({ "nodes": [
            { "name": "modbus-1", "plugin": "Modbus TCP", "support_import_tags": true, "tags": "" },
            { "name": "s7", "plugin": "Siemens S7ISOTCP", "support_import_tags": true, "tags": "" },
        ]})
    );
    assert_eq!(send(M::GET, "/node?type=2", None).await.1["nodes"][0]["name"], "mqtt");
    assert_eq!(send(M::GET, "/node?type=1&plugin=Modbus%20TCP", None).await.1["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(send(M::GET, "/node?type=1&node=s7", None).await.1["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(send(M::GET, "/node?type=1&state=3", None).await.1["nodes"][0]["name"], "modbus-1");
    assert_eq!(send(M::GET, "/node?type=1&state=1", None).await.1["nodes"][0]["name"], "s7");

    // Settings: a node without them answers 2005 under HTTP 200.
    assert_eq!(send(M::GET, "/node/setting?node=s7", None).await, (StatusCode::OK, json!({ "error": 2005 })));
    let (s, b) = send(M::GET, "/node/setting?node=modbus-1", None).await;
    assert_eq!((s, b["params"]["port"].clone()), (StatusCode::OK, json!(502)));

    // State, both shapes.
    let (s, b) = send(M::GET, "/node/state", None).await;
    assert_eq!(s, StatusCode::OK);
    let modbus_state = b["states"].as_array().unwrap().iter().find(|n| n["node"] == "modbus-1").unwrap().clone();
    assert_eq!(modbus_state["running"], 3);
    assert_eq!(modbus_state["link"], 1);
    for key in ["rtt", "log_level", "sub_group_count"] {
        assert!(modbus_state.get(key).is_some(), "{key} in {modbus_state}");
    }
    assert!(b.get("neuron_core").is_some());
    let (s, b) = send(M::GET, "/node/state?node=modbus-1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.get("node").is_none(), "node/state?node= is flat, without the name (§8): {b}");
    assert_eq!(b["running"], 3);
    assert_eq!(send(M::GET, "/node/state?node=ghost", None).await, (StatusCode::NOT_FOUND, json!({ "error": 2003 })));

    // Control.
    let ctl = |cmd: u64| Some(json!({ "node": "modbus-1", "cmd": cmd }));
    assert_eq!(send(M::POST, "/node/ctl", ctl(1)).await, (StatusCode::OK, json!({ "error": 0 })));
    assert_eq!(send(M::GET, "/node/state?node=modbus-1", None).await.1["running"], 4);
    assert_eq!(send(M::POST, "/node/ctl", ctl(1)).await, (StatusCode::CONFLICT, json!({ "error": 2009 })));
    assert_eq!(send(M::POST, "/node/ctl", ctl(0)).await.1, json!({ "error": 0 }));
    assert_eq!(send(M::POST, "/node/ctl", ctl(0)).await, (StatusCode::CONFLICT, json!({ "error": 2007 })));
    assert_eq!(send(M::POST, "/node/ctl", ctl(7)).await, (StatusCode::BAD_REQUEST, json!({ "error": 1003 })));

    // Groups: the body key is `group` (the docs' `name` is stale).
    let g = json!({ "node": "modbus-1", "group": "g1", "interval": 1000 });
    assert_eq!(send(M::POST, "/group", Some(g.clone())).await, (StatusCode::OK, json!({ "error": 0 })));
    assert_eq!(send(M::POST, "/group", Some(g)).await, (StatusCode::CONFLICT, json!({ "error": 2104 })));
    let stale = json!({ "node": "modbus-1", "name": "g2", "interval": 1000 });
    assert_eq!(send(M::POST, "/group", Some(stale)).await, (StatusCode::BAD_REQUEST, json!({ "error": 1002 })));
    let too_fast = json!({ "node": "modbus-1", "group": "g9", "interval": 10 });
    assert_eq!(send(M::POST, "/group", Some(too_fast)).await, (StatusCode::BAD_REQUEST, json!({ "error": 2105 })));
    let ghost = json!({ "node": "ghost", "group": "g1", "interval": 1000 });
    assert_eq!(send(M::POST, "/group", Some(ghost)).await, (StatusCode::NOT_FOUND, json!({ "error": 2003 })));

    // Tags: a partly bad batch keeps the tags before the bad one.
    let tag = |name: &str, attribute: u64| json!({ "name": name, "address": "1!400001", "attribute": attribute, "type": 4 });
    let batch = json!({ "node": "modbus-1", "group": "g1", "tags": [tag("t1", 3), tag("t2", 0), tag("t3", 1)] });
    let (s, b) = send(M::POST, "/tags", Some(batch)).await;
    assert_eq!((s, b), (StatusCode::BAD_REQUEST, json!({ "index": 1, "error": 2203 })));
    let (s, b) = send(M::GET, "/tags?node=modbus-1&group=g1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["tags"].as_array().unwrap().len(), 1);
    assert_eq!(b["tags"][0]["name"], "t1");
    assert_eq!(b["tags"][0]["type"], 4);
    assert_eq!(b["tags"][0]["address"], "1!400001");
    let dup = json!({ "node": "modbus-1", "group": "g1", "tags": [tag("t1", 1)] });
    assert_eq!(send(M::POST, "/tags", Some(dup)).await, (StatusCode::CONFLICT, json!({ "index": 0, "error": 2202 })));
    let bad_addr = json!({ "node": "modbus-1", "group": "g1", "tags": [{ "name": "t4", "address": "oops", "attribute": 1, "type": 4 }] });
    assert_eq!(send(M::POST, "/tags", Some(bad_addr)).await.1, json!({ "index": 0, "error": 2205 }));
    // Tags for a missing group create it (§8).
    let new_group = json!({ "node": "modbus-1", "group": "auto", "tags": [tag("a1", 1), tag("a2", 1)] });
    assert_eq!(send(M::POST, "/tags", Some(new_group)).await, (StatusCode::OK, json!({ "index": 2, "error": 0 })));
    let put = json!({ "node": "modbus-1", "group": "auto", "tags": [{ "name": "a1", "address": "1!400009", "attribute": 3, "type": 9 }] });
    assert_eq!(send(M::PUT, "/tags", Some(put)).await.1, json!({ "index": 1, "error": 0 }));
    assert_eq!(send(M::GET, "/tags?node=modbus-1&group=auto&name=a1", None).await.1["tags"][0]["address"], "1!400009");
    let del = json!({ "node": "modbus-1", "group": "auto", "tags": ["a2"] });
    assert_eq!(send(M::DELETE, "/tags", Some(del)).await, (StatusCode::OK, json!({ "error": 0 })));
    assert_eq!(send(M::GET, "/tags?node=modbus-1&group=nope", None).await, (StatusCode::NOT_FOUND, json!({ "error": 2106 })));
    assert_eq!(send(M::GET, "/tags?group=g1", None).await, (StatusCode::BAD_REQUEST, json!({ "error": 1003 })));

    // Group lists: different keys with and without ?node= (§8).
    let (_, b) = send(M::GET, "/group?node=modbus-1", None).await;
    assert_eq!(b["groups"][0], json!({ "name": "auto", "interval": 1000, "tag_count": 1 }));
    assert_eq!(b["groups"][1], json!({ "name": "g1", "interval": 1000, "tag_count": 1 }));
    let (_, b) = send(M::GET, "/group", None).await;
    assert_eq!(b["groups"][1], json!({ "driver": "modbus-1", "group": "g1", "interval": 1000, "tag_count": 1 }));
    let rename = json!({ "node": "modbus-1", "group": "g1", "new_name": "fast", "interval": 500 });
    assert_eq!(send(M::PUT, "/group", Some(rename)).await.1, json!({ "error": 0 }));
    assert_eq!(send(M::GET, "/group?node=modbus-1", None).await.1["groups"][1], json!({ "name": "fast", "interval": 500, "tag_count": 1 }));

    // Reads and writes; a write while the device is down is 400 3002, a read 200 with per-tag errors.
    let write = json!({ "node": "modbus-1", "group": "fast", "tag": "t1", "value": 42 });
    assert_eq!(send(M::POST, "/write", Some(write.clone())).await, (StatusCode::OK, json!({ "error": 0 })));
    let read = json!({ "node": "modbus-1", "group": "fast" });
    assert_eq!(send(M::POST, "/read", Some(read.clone())).await.1, json!({ "tags": [{ "name": "t1", "value": 42 }] }));
    sim.with_neuron(|n| n.nodes.get_mut("modbus-1").unwrap().connected = false).unwrap();
    assert_eq!(send(M::POST, "/write", Some(write)).await, (StatusCode::BAD_REQUEST, json!({ "error": 3002 })));
    assert_eq!(send(M::POST, "/read", Some(read)).await, (StatusCode::OK, json!({ "tags": [{ "name": "t1", "error": 3002 }] })));

    // Metrics: Prometheus text, no token, family headers repeated per node (§8).
    let r = c.get(api("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(content_type(&r).unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.contains("south_nodes_total 2\n"), "{text}");
    assert!(text.contains("north_nodes_total 1\n"));
    assert!(text.contains("node_type{node=\"modbus-1\"} 1\n"));
    assert!(text.contains("group_tags_total{node=\"modbus-1\",group=\"fast\"} 1\n"));
    assert_eq!(text.matches("# TYPE node_type gauge").count(), 3);
    let global = c.get(api("/metrics?category=global")).send().await.unwrap().text().await.unwrap();
    assert!(global.contains("uptime_seconds") && !global.contains("node_type"));
    let r = c.get(api("/metrics?category=bogus")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Renaming, deleting, and the state behind it.
    let rename = json!({ "name": "mqtt", "new_name": "modbus-1" });
    assert_eq!(send(M::PUT, "/node", Some(rename)).await, (StatusCode::CONFLICT, json!({ "error": 2002 })));
    let rename = json!({ "name": "mqtt", "new_name": "mqtt-north" });
    assert_eq!(send(M::PUT, "/node", Some(rename)).await, (StatusCode::OK, json!({ "error": 0 })));
    assert_eq!(send(M::DELETE, "/node", Some(json!({ "name": "s7" }))).await.1, json!({ "error": 0 }));
    assert_eq!(send(M::DELETE, "/node", Some(json!({ "name": "s7" }))).await, (StatusCode::NOT_FOUND, json!({ "error": 2003 })));
    let names = sim.with_neuron(|n| n.nodes.keys().cloned().collect::<Vec<_>>()).unwrap();
    assert_eq!(names, vec!["modbus-1", "mqtt-north"]);
    assert_eq!(sim.with_neuron(|n| n.nodes["modbus-1"].state).unwrap(), NodeRunState::Running);
    assert!(sim.with_nanomq(|_| ()).is_none());
}

// ---------------------------------------------------------------- NeuronEX

#[tokio::test]
async fn neuronex_login_and_proxied_apis() {
    let sim = start(SimKind::NeuronEx).await;
    let (c, base) = (client(), sim.base_url());

    let r = c.post(format!("{base}/api/login")).json(&json!({ "name": "admin", "pass": "0000" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "NeuronEX reads `password`, not `pass`");
    let r = c.post(format!("{base}/api/login")).json(&json!({ "name": "admin", "password": "nope" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.post(format!("{base}/api/login")).json(&json!({ "name": "admin", "password": "0000" })).send().await.unwrap();
    let (s, b) = json_of(r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["role"], "Administrator");
    let token = b["token"].as_str().unwrap().to_owned();

    let r = c.get(format!("{base}/api/version")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, b) = json_of(c.get(format!("{base}/api/version")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["version"].is_string());
    let (_, b) = json_of(c.get(format!("{base}/api/system")).bearer_auth(&token).send().await.unwrap()).await;
    for key in ["neuronStatus", "ekuiperStatus", "os", "arch"] {
        assert!(b[key].is_string(), "{key} in {b}");
    }

    // Neuron under /api/neuron, with Neuron's bodies and codes.
    let node = json!({ "name": "m1", "plugin": "Modbus TCP" });
    let r = c.post(format!("{base}/api/neuron/node")).bearer_auth(&token).json(&node).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::OK, json!({ "error": 0 })));
    let r = c.post(format!("{base}/api/neuron/node")).bearer_auth(&token).json(&node).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::CONFLICT, json!({ "error": 2002 })));
    let r = c.get(format!("{base}/api/neuron/node?type=1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(json_of(r).await.1["nodes"][0]["name"], "m1");
    let r = c.get(format!("{base}/api/neuron/metrics")).bearer_auth(&token).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("south_nodes_total 1"));

    // eKuiper under /api/ekuiper, with eKuiper's plain-text replies.
    let stream = json!({ "sql": "CREATE STREAM demo (temp FLOAT) WITH (DATASOURCE=\"t/demo\", FORMAT=\"JSON\")" });
    let r = c.post(format!("{base}/api/ekuiper/streams")).bearer_auth(&token).json(&stream).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.text().await.unwrap(), "Stream demo is created.");
    let r = c.get(format!("{base}/api/ekuiper/streams")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(json_of(r).await.1, json!(["demo"]));
    assert_eq!(sim.with_ekuiper(|k| k.streams.len()), Some(1));

    // The token guards the proxied paths too; expired tokens are 401.
    let r = c.get(format!("{base}/api/neuron/node?type=1")).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::UNAUTHORIZED, json!({ "error": 1004 })));
    sim.expire_tokens();
    let r = c.get(format!("{base}/api/neuron/node?type=1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::UNAUTHORIZED, json!({ "error": 1006 })));

    let r = c.get(format!("{base}/api/v2/version")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "NeuronEX is not /api/v2 (§0.5)");
}

// ---------------------------------------------------------------- eKuiper

#[tokio::test]
async fn ekuiper_streams_and_rules() {
    let sim = start(SimKind::Ekuiper).await;
    let (c, base) = (client(), sim.base_url());

    let r = c.get(format!("{base}/ping")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("connection").unwrap(), "close", "keep-alive is off");
    assert_eq!(r.text().await.unwrap(), "");
    let r = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(content_type(&r).as_deref(), Some("text/plain; charset=utf-8"), "Go sniffs the JSON as text");
    let info: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(info["version"], "2.4.0");
    assert!(info["upTimeSeconds"].is_u64());
    assert!(info["memoryTotal"].is_string());

    // Streams.
    let create = json!({ "sql": "CREATE STREAM demo (temp FLOAT) WITH (DATASOURCE=\"t/demo\", FORMAT=\"JSON\")" });
    let r = c.post(format!("{base}/streams")).json(&create).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(content_type(&r).as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text().await.unwrap(), "Stream demo is created.");
    let r = c.post(format!("{base}/streams")).json(&create).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&r).as_deref(), Some("text/plain; charset=utf-8"));
    let text = r.text().await.unwrap();
    assert!(text.ends_with("}\n"), "JSON plus a newline: {text:?}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"], 1000);
    assert!(err["message"].as_str().unwrap().starts_with("Stream command error: "));
    let r = c.post(format!("{base}/streams")).body("{oops").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Invalid body"));

    let r = c.get(format!("{base}/streams")).send().await.unwrap();
    assert_eq!(content_type(&r).as_deref(), Some("application/json"));
    assert_eq!(json_of(r).await.1, json!(["demo"]));
    let (s, d) = json_of(c.get(format!("{base}/streams/demo")).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["Name"], "demo");
    assert_eq!(d["StreamType"], 0);
    assert_eq!(d["StreamFields"], json!([{ "FieldType": "float", "Name": "temp" }]));
    assert_eq!(d["Options"]["datasource"], "t/demo");

    // Rules.
    let rule = json!({ "id": "rule1", "sql": "SELECT * FROM demo", "actions": [{ "log": {} }] });
    let r = c.post(format!("{base}/rules")).json(&rule).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.text().await.unwrap(), "Rule rule1 was created successfully.");
    let r = c.post(format!("{base}/rules")).json(&rule).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let orphan = json!({ "id": "rule2", "sql": "SELECT * FROM nowhere", "actions": [{ "log": {} }] });
    assert_eq!(c.post(format!("{base}/rules")).json(&orphan).send().await.unwrap().status(), StatusCode::BAD_REQUEST);

    let (_, list) = json_of(c.get(format!("{base}/rules")).send().await.unwrap()).await;
    assert_eq!(list, json!([{ "id": "rule1", "name": "rule1", "status": "running", "version": "", "trace": false, "tags": null }]));
    let r = c.get(format!("{base}/rules/rule1")).send().await.unwrap();
    assert_eq!(json_of(r).await.1, rule, "the rule JSON as sent");

    let status_url = format!("{base}/rules/rule1/status");
    let r = c.get(&status_url).send().await.unwrap();
    assert_eq!(content_type(&r).as_deref(), Some("application/json"));
    let text = r.text().await.unwrap();
    assert!(text.starts_with("{\n  \"status\": \"running\",\n"), "2-space indented: {text}");
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["source_demo_0_records_in_total"], 0);
    assert_eq!(status["sink_log_0_0_records_out_total"], 0);

    let r = c.post(format!("{base}/rules/rule1/stop")).send().await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::OK, "Rule rule1 was stopped.".to_owned()));
    let (_, status) = json_of(c.get(&status_url).send().await.unwrap()).await;
    assert_eq!(status["status"], "stopped");
    assert_eq!(status["message"], "canceled manually");
    assert_eq!(sim.with_ekuiper(|k| k.rules["rule1"].status.clone()).unwrap(), "stopped");
    let r = c.post(format!("{base}/rules/rule1/start")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Rule rule1 was started");
    let r = c.post(format!("{base}/rules/rule1/restart")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Rule rule1 was restarted");
    assert_eq!(json_of(c.get(&status_url).send().await.unwrap()).await.1["status"], "running");

    let r = c.post(format!("{base}/rules/r9/start")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let text = r.text().await.unwrap();
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"], 1002);
    let r = c.get(format!("{base}/rules/r9/status")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.text().await.unwrap(), "{\"error\":1002,\"message\":\"get rule status error: Rule r9 is not found\"}\n");

    // A stream used by a rule is only dropped with ?force=true.
    let r = c.delete(format!("{base}/streams/demo")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("referenced by other rules"));
    let r = c.delete(format!("{base}/streams/demo?force=true")).send().await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::OK, "Stream demo is dropped.".to_owned()));
    // The reference check comes first: the rule still names the dropped stream.
    assert_eq!(c.delete(format!("{base}/streams/demo")).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let r = c.delete(format!("{base}/streams/ghost")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.text().await.unwrap(), "{\"error\":1002,\"message\":\"delete stream error: stream ghost is not found\"}\n");

    // Upsert and delete rules.
    let updated = json!({ "id": "rule1", "sql": "SELECT * FROM demo", "actions": [{ "log": {} }], "triggered": false });
    let r = c.post(format!("{base}/streams")).json(&create).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.put(format!("{base}/rules/rule1")).json(&updated).send().await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::OK, "Rule rule1 was updated successfully.".to_owned()));
    assert_eq!(json_of(c.get(&status_url).send().await.unwrap()).await.1["status"], "stopped");
    let r = c.delete(format!("{base}/rules/rule1")).send().await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::OK, "Rule rule1 is dropped.".to_owned()));
    let r = c.delete(format!("{base}/rules/rule1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "an unknown rule's delete is a plain error: 400/1000");

    // Unknown route and wrong method, as Go's router answers them.
    let r = c.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::NOT_FOUND, "404 page not found\n".to_owned()));
    assert_eq!(c.delete(format!("{base}/rules")).send().await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn ekuiper_optional_auth_has_no_bearer() {
    let sim = SimService::start(SimConfig::builder(SimKind::Ekuiper).auth(true).build().unwrap()).await.unwrap();
    let (c, base) = (client(), sim.base_url());
    assert_eq!(c.get(format!("{base}/ping")).send().await.unwrap().status(), StatusCode::OK, "/ping is exempt");
    assert_eq!(c.get(format!("{base}/")).send().await.unwrap().status(), StatusCode::OK, "/ is exempt");

    let r = c.get(format!("{base}/rules")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.text().await.unwrap(), "missing_token\n");
    let token = sim.issue_token();
    let r = c.get(format!("{base}/rules")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "`Bearer ` is not stripped");
    let r = c.get(format!("{base}/rules")).header("Authorization", &token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    sim.expire_tokens();
    let r = c.get(format!("{base}/rules")).header("Authorization", &token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("expired"));
}

// ---------------------------------------------------------------- NanoMQ

#[tokio::test]
async fn nanomq_basic_auth_and_shapes() {
    let sim = start(SimKind::NanoMq).await;
    let (c, base) = (client(), sim.base_url());
    let api = |p: &str| format!("{base}/api/v4{p}");
    let get = |p: &str| c.get(api(p)).basic_auth("admin", Some("public")).send();

    // Auth errors: 401 with {"code":104|103}, no Content-Type on a GET, no WWW-Authenticate.
    let r = c.get(api("/brokers")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(content_type(&r).is_none());
    assert!(r.headers().get("www-authenticate").is_none());
    assert_eq!(r.text().await.unwrap(), "{\"code\":104}");
    let r = c.get(api("/brokers")).bearer_auth("x").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "{\"code\":104}");
    let r = c.get(api("/brokers")).basic_auth("admin", Some("nope")).send().await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::UNAUTHORIZED, "{\"code\":103}".to_owned()));

    let (s, b) = json_of(get("/brokers").await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["code"], 0);
    assert_eq!(b["data"][0]["node_status"], "Running");
    assert_eq!(b["data"][0]["sysdescr"], "NanoMQ Broker");
    assert!(b["data"][0]["uptime"].as_str().unwrap().contains("Hours"));
    assert_eq!(json_of(get("/").await.unwrap()).await.1["code"], 0);

    sim.with_nanomq(|n| {
        n.clients.push(NanomqClient::new("dev-1", "alvin"));
        let mut offline = NanomqClient::new("dev-2", "");
        offline.connected = false;
        n.clients.push(offline);
        n.subscriptions.push(NanomqSubscription::new("dev-1", "topic123", 2));
    })
    .unwrap();
    let (_, b) = json_of(get("/nodes").await.unwrap()).await;
    assert_eq!(b["data"][0]["connections"], 1);
    let (_, b) = json_of(get("/clients").await.unwrap()).await;
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        b["data"][0],
        json!({ "client_id": "dev-1", "username": "alvin", "keepalive": 60, "conn_state": "connected", "clean_start": true, "proto_name": "MQTT", "proto_ver": 5 })
    );
    assert_eq!(json_of(get("/clients?conn_state=disconnected").await.unwrap()).await.1["data"][0]["client_id"], "dev-2");
    assert_eq!(json_of(get("/clients/username/alvin").await.unwrap()).await.1["data"][0]["client_id"], "dev-1");
    assert_eq!(json_of(get("/clients/ghost").await.unwrap()).await, (StatusCode::OK, json!({ "code": 0, "data": [] })), "no 404 (§8)");
    assert_eq!(
        json_of(get("/subscriptions").await.unwrap()).await.1["data"],
        json!([{ "clientid": "dev-1", "topic": "topic123", "qos": 2 }])
    );
    assert_eq!(json_of(get("/subscriptions/dev-2").await.unwrap()).await.1["data"], json!([]));
    let (_, b) = json_of(get("/topic-tree").await.unwrap()).await;
    assert_eq!(b["data"][1][0]["topic"], "topic123");
    assert_eq!(b["data"][1][0]["clientid"], json!(["dev-1"]));

    let (_, m) = json_of(get("/metrics").await.unwrap()).await;
    assert!(m.get("code").is_none(), "/metrics has no code: {m}");
    assert!(m["memory"].is_string());
    assert!(m["metrics"].is_array());
    let r = get("/prometheus").await.unwrap();
    assert!(content_type(&r).unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.contains("nanomq_connections_count 1\n"), "{text}");
    assert!(text.contains("nanomq_sessions_count 2\n"));

    // Reload and configuration.
    let (_, b) = json_of(get("/reload").await.unwrap()).await;
    assert_eq!(b["data"]["max_packet_size"], 10240);
    assert_eq!(b["data"]["allow_anonymous"], true);
    let r = c.post(api("/reload")).basic_auth("admin", Some("public")).json(&json!({ "data": { "msq_len": 4096 } })).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::OK, json!({ "code": 0 })));
    assert_eq!(json_of(get("/reload").await.unwrap()).await.1["data"]["msq_len"], 4096);
    let (_, b) = json_of(get("/configuration").await.unwrap()).await;
    for section in ["basic", "tls", "auth", "auth_http", "websocket", "http_server", "sqlite", "bridge"] {
        assert!(b["data"].get(section).is_some(), "{section}");
    }
    assert_eq!(b["data"]["basic"]["msq_len"], 4096);
    assert_eq!(json_of(get("/configuration/tls").await.unwrap()).await.1["data"]["tls"]["enable"], false);
    let (s, b) = json_of(get("/configuration/nope").await.unwrap()).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::NOT_FOUND, json!(101)));
    let set = json!({ "data": { "websocket": { "enable": false } } });
    let r = c.post(api("/configuration")).basic_auth("admin", Some("public")).json(&set).send().await.unwrap();
    assert_eq!(json_of(r).await.1, json!({ "code": 0 }));
    assert_eq!(json_of(get("/configuration/websocket").await.unwrap()).await.1["data"]["websocket"]["enable"], false);

    // Publish.
    let publish = |body: Value| c.post(api("/mqtt/publish")).basic_auth("admin", Some("public")).json(&body).send();
    let msg = json!({ "topic": "a/b", "payload": "hi", "qos": 1, "retain": false, "clientid": "svc",
                      "properties": { "response_topic": "reply/1", "correlation_data": "42" } });
    assert_eq!(json_of(publish(msg).await.unwrap()).await, (StatusCode::OK, json!({ "code": 0 })));
    assert_eq!(json_of(publish(json!({ "payload": "x" })).await.unwrap()).await, (StatusCode::OK, json!({ "code": 108 })));
    let published = sim.with_nanomq(|n| n.published.clone()).unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].topic, "a/b");
    assert_eq!(published[0].client_id, "svc");
    assert_eq!(published[0].properties.as_ref().unwrap()["response_topic"], "reply/1");

    // Errors: unknown path 404/102, wrong method 404, other methods 405, bad JSON 400/109 with the
    // request's content type, outside /api/v4 NNG's page.
    let r = get("/nope").await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::NOT_FOUND, "{\"code\":102}".to_owned()));
    let r = c.delete(api("/brokers")).basic_auth("admin", Some("public")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c.patch(api("/brokers")).basic_auth("admin", Some("public")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = c
        .post(api("/mqtt/publish"))
        .basic_auth("admin", Some("public"))
        .header("content-type", "application/json")
        .body("{x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&r).as_deref(), Some("application/json"));
    assert_eq!(r.text().await.unwrap(), "{\"code\":109}");
    let r = c.get(format!("{base}/other")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(content_type(&r).unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn nanomq_configurable_credentials() {
    let config = SimConfig::builder(SimKind::NanoMq).credentials("ops", "s3cret").build().unwrap();
    let sim = SimService::start(config).await.unwrap();
    let (c, url) = (client(), format!("{}/api/v4/brokers", sim.base_url()));
    assert_eq!(c.get(&url).basic_auth("admin", Some("public")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(c.get(&url).basic_auth("ops", Some("s3cret")).send().await.unwrap().status(), StatusCode::OK);
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn offline_then_back_on_the_same_port() {
    let sim = start(SimKind::Neuron).await;
    let (c, base) = (client(), sim.base_url());
    let port = sim.port();
    let token = neuron_login(&c, &base).await;
    let node = json!({ "name": "keep", "plugin": "MQTT" });
    assert_eq!(c.post(format!("{base}/api/v2/node")).bearer_auth(&token).json(&node).send().await.unwrap().status(), StatusCode::OK);

    sim.go_offline().await;
    assert!(!sim.is_online());
    let started = Instant::now();
    let err = c.post(format!("{base}/api/v2/ping")).send().await.expect_err("offline");
    assert!(err.is_connect() || err.is_request(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused quickly, not a hang");
    sim.go_offline().await; // idempotent

    sim.go_online().await.unwrap();
    assert!(sim.is_online());
    assert_eq!(sim.port(), port);
    let r = c.get(format!("{base}/api/v2/node?type=2")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(json_of(r).await.1["nodes"][0]["name"], "keep", "state and tokens survive going offline");
}

#[tokio::test]
async fn going_offline_resets_open_and_in_flight_connections() {
    let sim = start(SimKind::NanoMq).await;
    let c = client();
    let url = format!("{}/api/v4/brokers", sim.base_url());
    // Open a keep-alive connection, then make the next request slow.
    assert_eq!(c.get(&url).basic_auth("admin", Some("public")).send().await.unwrap().status(), StatusCode::OK);
    sim.set_latency(Duration::from_secs(5));
    let slow = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { c.get(&url).basic_auth("admin", Some("public")).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    sim.go_offline().await;
    let result = tokio::time::timeout(Duration::from_secs(4), slow).await.expect("the in-flight request ends promptly").unwrap();
    assert!(result.is_err(), "the in-flight request is cut: {result:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    sim.set_latency(Duration::ZERO);
    sim.go_online().await.unwrap();
    assert_eq!(c.get(&url).basic_auth("admin", Some("public")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn fail_next_n_in_each_products_shape() {
    let c = client();

    let neuron = start(SimKind::Neuron).await;
    let ping = format!("{}/api/v2/ping", neuron.base_url());
    neuron.fail_next(2);
    assert_eq!(neuron.pending_failures(), 2);
    for _ in 0..2 {
        let r = c.post(&ping).send().await.unwrap();
        assert_eq!(json_of(r).await, (StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": 1001 })));
    }
    assert_eq!(c.post(&ping).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(neuron.pending_failures(), 0);
    assert_eq!(neuron.request_count("POST", "/api/v2/ping"), 3, "failed requests are counted too");

    let ekuiper = start(SimKind::Ekuiper).await;
    ekuiper.fail_next(1);
    let r = c.get(format!("{}/ping", ekuiper.base_url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(content_type(&r).as_deref(), Some("text/plain; charset=utf-8"));
    assert!(r.text().await.unwrap().ends_with("}\n"));

    let nanomq = start(SimKind::NanoMq).await;
    nanomq.fail_next(1);
    let r = c.get(format!("{}/api/v4/brokers", nanomq.base_url())).basic_auth("admin", Some("public")).send().await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::INTERNAL_SERVER_ERROR, "{\"code\":101}".to_owned()));
}

#[tokio::test]
async fn latency_and_counters() {
    let sim = start(SimKind::Neuron).await;
    let c = client();
    let ping = format!("{}/api/v2/ping", sim.base_url());
    sim.set_latency(Duration::from_millis(1000));
    let started = Instant::now();
    assert_eq!(c.post(&ping).send().await.unwrap().status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(1000));
    sim.set_latency(Duration::ZERO);
    let started = Instant::now();
    assert_eq!(c.post(&ping).send().await.unwrap().status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(1000));

    let _ = c.get(format!("{}/api/v2/node?type=1", sim.base_url())).send().await.unwrap();
    assert_eq!(sim.request_count("POST", "/api/v2/ping"), 2);
    assert_eq!(sim.request_count("GET", "/api/v2/node"), 1, "the query is not part of the key");
    assert_eq!(sim.total_requests(), 3);
    assert_eq!(sim.request_counts().len(), 2);
    sim.reset_request_counts();
    assert_eq!(sim.total_requests(), 0);
}

// ---------------------------------------------------------------- hostile input

#[tokio::test]
async fn oversized_and_malformed_bodies_get_product_errors() {
    let c = client();
    let big = vec![b'a'; 2 << 20];

    let neuron = start(SimKind::Neuron).await;
    let r = c.post(format!("{}/api/v2/login", neuron.base_url())).body(big.clone()).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::BAD_REQUEST, json!({ "error": 1002 })));
    let r = c.post(format!("{}/api/v2/login", neuron.base_url())).body(vec![0xff, 0xfe, b'{']).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::BAD_REQUEST, json!({ "error": 1002 })));

    let ekuiper = start(SimKind::Ekuiper).await;
    let r = c.post(format!("{}/rules", ekuiper.base_url())).body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("request body too large"));
    let r = c.post(format!("{}/rules", ekuiper.base_url())).body("[1,2").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["error"], 1000);

    let nanomq = start(SimKind::NanoMq).await;
    let r =
        c.post(format!("{}/api/v4/mqtt/publish", nanomq.base_url())).basic_auth("admin", Some("public")).body(big).send().await.unwrap();
    assert_eq!((r.status(), r.text().await.unwrap()), (StatusCode::BAD_REQUEST, "{\"code\":109}".to_owned()));

    // A body just under the limit is accepted and parsed.
    let small = SimService::start(SimConfig::builder(SimKind::Neuron).body_limit(4096).build().unwrap()).await.unwrap();
    let padded = json!({ "name": "admin", "pass": "0000", "pad": "x".repeat(3000) });
    let r = c.post(format!("{}/api/v2/login", small.base_url())).json(&padded).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let padded = json!({ "name": "admin", "pass": "0000", "pad": "x".repeat(5000) });
    let r = c.post(format!("{}/api/v2/login", small.base_url())).json(&padded).send().await.unwrap();
    assert_eq!(json_of(r).await, (StatusCode::BAD_REQUEST, json!({ "error": 1002 })));
}

/// Raw TCP abuse: a truncated body, garbage instead of HTTP. The server answers or closes, never
/// hangs or dies.
#[tokio::test]
async fn raw_garbage_neither_hangs_nor_kills_the_server() {
    let sim = start(SimKind::Neuron).await;
    let bounded = Duration::from_secs(5);

    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    s.write_all(b"POST /api/v2/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"name\"").await.unwrap();
    s.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(bounded, s.read_to_end(&mut buf)).await.expect("closed or answered, not hung");
    assert!(read.is_ok() || read.is_err());

    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    s.write_all(b"\x16\x03\x01 NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(bounded, s.read_to_end(&mut buf)).await.expect("closed or answered, not hung");

    let r = client().post(format!("{}/api/v2/ping", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "still serving");
}
