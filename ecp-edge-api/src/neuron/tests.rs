//! Unit tests of the neuron adapter: every parser against hostile bodies, the request shapes.

use proptest::prelude::*;

use bytes::Bytes;
use secrecy::SecretString;

use super::*;
use crate::error::Error;
use crate::testing::{ParseFn, Sample, arb_body, arb_json, parsers, response, shaped};

fn all_parsers() -> Vec<ParseFn> {
    let api = NeuronApi::new();
    let secret = SecretString::from("p");
    let tags = [Tag::new("t", "1!400001", TagAttribute::READ, DataType::UINT16)];
    parsers![
        api.login("admin", &secret),
        api.ping(),
        api.version(),
        api.nodes(NodeType::Driver, &NodeFilter::default()),
        api.add_node("n", "p", None),
        api.delete_node("n"),
        api.node_setting("n"),
        api.set_node_setting("n", &serde_json::json!({})),
        api.node_ctl("n", NodeCommand::Start),
        api.node_states(),
        api.node_state("n"),
        api.groups("n"),
        api.all_groups(),
        api.add_group("n", "g", 1000),
        api.update_group("n", "g", Some("g2"), Some(500)),
        api.delete_group("n", "g"),
        api.tags("n", "g", None),
        api.add_tags("n", "g", &tags),
        api.update_tags("n", "g", &tags),
        api.delete_tags("n", "g", &["t"]),
        api.write_tag("n", "g", "t", &serde_json::json!(1)),
        api.metrics(None, None),
    ]
}

/// Neuron 2.15's answers as the reference gives them (§3, §8).
fn samples() -> Vec<Sample> {
    const JSON: Option<&str> = Some("application/json");
    vec![
        Sample::ok(200, JSON, r#"{"token":"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJuZXVyb24ifQ.tok-sentinel-neuron"}"#)
            .secret("tok-sentinel-neuron"),
        Sample::ok(200, JSON, "{}"),
        Sample::ok(200, JSON, r#"{"error":0}"#),
        Sample::ok(200, JSON, r#"{"version":"2.15.0","revision":"67d6beb","build_date":"2026-07-22"}"#),
        Sample::ok(200, JSON, r#"{"nodes":[{"name":"modbus-1","plugin":"Modbus TCP","support_import_tags":true,"tags":""}]}"#),
        // An OPC UA driver's setting holds the password of the server it reads.
        Sample::ok(
            200,
            JSON,
            r#"{"node":"opcua-1","params":{"url":"opc.tcp://10.0.0.9:4840","username":"plc","password":"pw-sentinel-opcua","cert":""}}"#,
        )
        .secret("pw-sentinel-opcua"),
        Sample::ok(
            200,
            JSON,
            r#"{"states":[{"node":"m1","running":3,"link":1,"rtt":100,"log_level":"notice","sub_group_count":1}],"neuron_core":{"log_level":"notice"}}"#,
        ),
        Sample::ok(200, JSON, r#"{"running":3,"link":1,"rtt":100,"log_level":"notice","sub_group_count":1}"#),
        Sample::ok(200, JSON, r#"{"groups":[{"name":"g1","interval":1000,"tag_count":2}]}"#),
        Sample::ok(200, JSON, r#"{"groups":[{"driver":"m1","group":"g1","interval":1000,"tag_count":2}]}"#),
        Sample::ok(
            200,
            JSON,
            r#"{"tags":[{"name":"t1","address":"1!400001","attribute":3,"type":4,"precision":0,"decimal":0,"bias":0,"description":"","unit":""}]}"#,
        ),
        Sample::ok(200, JSON, r#"{"index":3,"error":0,"results":[{"index":1,"error":2202}]}"#),
        Sample::ok(
            200,
            Some("text/plain"),
            "# HELP cpu_percent Total CPU utilisation percentage\n# TYPE cpu_percent gauge\ncpu_percent 12\n\
             # TYPE node_type gauge\nnode_type{node=\"modbus-1\"} 1\nlast_rtt_ms{node=\"modbus-1\"} 100\n",
        ),
        Sample::refusal(400, JSON, r#"{"index":2,"error":2205}"#),
        Sample::refusal(200, JSON, r#"{"error":2005}"#),
        Sample::refusal(400, JSON, r#"{"error":3002}"#),
        Sample::refusal(401, JSON, r#"{"error":1009}"#),
        Sample::refusal(403, JSON, r#"{"error":1006}"#),
        Sample::refusal(404, JSON, r#"{"error":2003}"#),
        Sample::refusal(409, JSON, r#"{"error":2002}"#),
        Sample::refusal(404, Some("text/html"), "<html><body>404 Not Found</body></html>"),
    ]
}

fn ok(body: &str) -> http::Response<Bytes> {
    response(200, Some("application/json"), body.as_bytes())
}

#[test]
fn errors_under_200_are_errors() {
    let api = NeuronApi::new();
    let err = api.node_setting("m1").unwrap().parse(&ok(r#"{"error":2005}"#)).unwrap_err();
    assert!(matches!(err, Error::Api { status: 200, code: Some(2005), .. }), "{err:?}");
    // 2005 ("node setting not found") comes under HTTP 200, and is a not-found all the same.
    assert!(err.is_not_found(), "{err:?}");
    let err = api.add_node("m1", "Modbus TCP", None).unwrap().parse(&ok(r#"{"error":3002}"#)).unwrap_err();
    assert!(!err.is_not_found());
    assert!(matches!(err, Error::Api { status: 200, code: Some(3002), .. }));
    api.add_node("m1", "Modbus TCP", None).unwrap().parse(&ok(r#"{"error":0}"#)).unwrap();
}

#[test]
fn partial_tag_batches() {
    let api = NeuronApi::new();
    let call = api.add_tags("n", "g", &[]).unwrap();
    let err = call.parse(&response(400, Some("application/json"), br#"{"index":2,"error":2205}"#)).unwrap_err();
    let Error::Api { status: 400, code: Some(2205), message: Some(m), .. } = err else { panic!("{err:?}") };
    assert!(m.contains("the 2 tag(s)"), "{m}");
    let out = call.parse(&ok(r#"{"index":3,"error":0,"results":[{"index":1,"error":2202}]}"#)).unwrap();
    assert_eq!(out.index, 3);
    assert_eq!(out.failures().map(|r| r.index).collect::<Vec<_>>(), [1]);
}

#[test]
fn states_and_groups_have_two_shapes() {
    let api = NeuronApi::new();
    let one =
        api.node_state("m1").unwrap().parse(&ok(r#"{"running":3,"link":1,"rtt":100,"log_level":"notice","sub_group_count":1}"#)).unwrap();
    assert_eq!((one.running, one.link, one.rtt), (RunningState::Running, LinkState::Connected, Some(100)));
    let all = api
        .node_states()
        .unwrap()
        .parse(&ok(r#"{"states":[{"node":"m1","running":9,"link":0,"rtt":0,"log_level":"notice","sub_group_count":1}],"neuron_core":{}}"#))
        .unwrap();
    assert_eq!(all.states[0].node, "m1");
    assert_eq!(all.states[0].state.running, RunningState::Other(9));
    let g = api.groups("m1").unwrap().parse(&ok(r#"{"groups":[{"name":"g1","interval":1000,"tag_count":2}]}"#)).unwrap();
    assert_eq!(g[0].name, "g1");
    let g = api.all_groups().unwrap().parse(&ok(r#"{"groups":[{"driver":"m1","group":"g1","interval":1000,"tag_count":2}]}"#)).unwrap();
    assert_eq!((g[0].driver.as_str(), g[0].group.as_str()), ("m1", "g1"));
}

#[test]
fn html_and_auth_answers() {
    let api = NeuronApi::new();
    let html = response(404, Some("text/html"), b"<html><body>404 Not Found</body></html>");
    let err = api.version().unwrap().parse(&html).unwrap_err();
    assert!(err.to_string().contains("HTML page"), "{err}");
    let html200 = response(200, None, b"<!DOCTYPE html><html></html>");
    assert!(api.ping().unwrap().parse(&html200).unwrap_err().to_string().contains("HTML"));
    let expired = response(403, Some("application/json"), br#"{"error":1006}"#);
    assert!(token_refused(&expired));
    assert!(matches!(api.version().unwrap().parse(&expired), Err(Error::Unauthorized { .. })));
    assert!(!token_refused(&response(401, Some("application/json"), br#"{"error":1009}"#)));
    assert!(token_refused(&response(401, Some("application/json"), br#"{"error":1005}"#)));
}

proptest! {
    #[test]
    fn parsers_never_panic_on_bytes(status in 100u16..600, ct in proptest::option::of("[a-z/;= -]{0,30}"), body in arb_body()) {
        let r = response(status, ct.as_deref(), &body);
        for p in all_parsers() { let _ = p(&r); }
        let _ = token_refused(&r);
    }

    #[test]
    fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(400), Just(401), Just(403), Just(404), Just(500)], value in shaped(arb_json(), &["nodes", "groups", "tags", "states", "error", "index", "results", "token"])) {
        let r = response(status, Some("application/json"), value.to_string().as_bytes());
        for p in all_parsers() { let _ = p(&r); }
    }
}

#[test]
fn tags_refused_for_a_missing_node_say_nothing_was_applied() {
    let api = NeuronApi::new();
    let tags = [Tag::new("t", "1!400001", TagAttribute::READ, DataType::UINT16)];
    let missing = response(404, Some("application/json"), br#"{"error":2003}"#);
    let err = api.add_tags("nope", "g", &tags).unwrap().parse(&missing).unwrap_err();
    let Error::Api { status: 404, code: Some(2003), message: Some(m), .. } = &err else { panic!("{err:?}") };
    assert_eq!(m, "node does not exist: no tag was applied");
    assert!(err.is_not_found());
    // A refused tag: the ones before it went through.
    let bad = response(400, Some("application/json"), br#"{"error":2205,"index":2}"#);
    let Error::Api { message: Some(m), .. } = api.add_tags("n", "g", &tags).unwrap().parse(&bad).unwrap_err() else { panic!() };
    assert!(m.ends_with("(the 2 tag(s) before the refused one were applied)"), "{m}");
}

#[test]
fn error_codes_are_read_by_product() {
    use crate::service::EdgeKind;
    // eKuiper's 1002 is "not found"; Neuron's is "bad body".
    assert!(crate::codes::is_not_found(EdgeKind::Ekuiper, 1002));
    assert!(!crate::codes::is_not_found(EdgeKind::Neuron, 1002));
    for code in [2003, 2005, 2106, 2201, 2301] {
        assert!(crate::codes::is_not_found(EdgeKind::Neuron, code), "{code}");
        assert!(crate::codes::is_not_found(EdgeKind::NeuronEx, code), "{code}");
    }
    assert!(!crate::codes::is_not_found(EdgeKind::NanoMq, 2005));
    let generic = Error::Api { endpoint: "GET /x".into(), status: 200, product: None, code: Some(2005), message: None };
    assert!(!generic.is_not_found());
}

crate::testing::mutated_answer_tests!();
