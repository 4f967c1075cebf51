//! Unit tests of the nanomq adapter: every parser against hostile bodies, the request shapes.

use proptest::prelude::*;

use serde_json::Value;

use super::*;
use crate::error::Error;
use crate::testing::{ParseFn, Sample, arb_body, arb_json, parsers, response, shaped};

fn all_parsers() -> Vec<ParseFn> {
    let api = NanoMqApi::new();
    parsers![
        api.brokers(),
        api.nodes(),
        api.clients(&ClientFilter::default()),
        api.client("c"),
        api.clients_by_username("u"),
        api.subscriptions(),
        api.client_subscriptions("c"),
        api.topic_tree(),
        api.metrics(),
        api.prometheus(),
        api.reload_config(),
        api.set_reload_config(&ReloadConfig::default()),
        api.configuration(),
        api.configuration_section("basic"),
        api.set_configuration(&serde_json::Map::new()),
        api.publish(&Publish::new("t", "p")),
    ]
}

/// NanoMQ 0.25's answers as the reference (§5, §8) and the simulator give them.
fn samples() -> Vec<Sample> {
    const JSON: Option<&str> = Some("application/json");
    vec![
        Sample::ok(
            200,
            JSON,
            r#"{"code":0,"data":[{"datetime":"2022-06-07 10:02:24","node_status":"Running","sysdescr":"NanoMQ Broker","uptime":"15 Hours, 1 minutes, 38 seconds","version":"0.25.6"}]}"#,
        ),
        Sample::ok(200, JSON, r#"{"code":0,"data":[{"connections":0,"node_status":"Running","uptime":"15 Hours, 1 minutes, 38 seconds","version":"0.25.6"}]}"#),
        Sample::ok(
            200,
            JSON,
            r#"{"code":0,"data":[{"client_id":"nanomq-f6d6fbfb","username":"alvin","keepalive":60,"conn_state":"connected","clean_start":true,"proto_name":"MQTT","proto_ver":5,"will_topic":"dead","will_msg":"bye"}]}"#,
        ),
        Sample::ok(200, JSON, r#"{"code":0,"data":[]}"#),
        Sample::ok(200, JSON, r#"{"code":0,"data":[{"clientid":"nanomq-29978ec1","topic":"topic123","qos":2}]}"#),
        Sample::ok(
            200,
            JSON,
            r#"{"code":0,"data":[[{"topic":"","cld_cnt":1}],[{"topic":"topic123","cld_cnt":1,"clientid":["nanomq-3a4a0956"]}]]}"#,
        ),
        Sample::ok(200, None, r#"{"metrics":[{"bridge name":"emqx","tx_msgs":4,"rx_msgs":2}],"cpuinfo":"0.00%","memory":"20049920","connections":0}"#),
        Sample::ok(
            200,
            Some("text/plain"),
            "# TYPE nanomq_connections_count gauge\nnanomq_connections_count 0\nnanomq_connections_max 2\n\
             # TYPE nanomq_messages_received counter\nnanomq_messages_received 12\nnanomq_cpu_usage 0.5\n",
        ),
        Sample::ok(
            200,
            JSON,
            r#"{"code":0,"data":{"property_size":32,"max_packet_size":10240,"client_max_packet_size":10240,"msq_len":2048,"qos_duration":10,"keepalive_backoff":1.25,"allow_anonymous":true,"enable_mqtt_stream":false,"bridge_mode":false}}"#,
        ),
        // The configuration holds the MQTT users' and the HTTP API's passwords.
        Sample::ok(
            200,
            JSON,
            r#"{"code":0,"data":{"basic":{"url":"nmq-tcp://0.0.0.0:1883","num_taskq_thread":0,"max_taskq_thread":0,"parallel":0,"property_size":32,"daemon":false,"max_packet_size":10240,"keepalive_backoff":1.25,"allow_anonymous":true},"tls":{"enable":false,"url":"tls+nmq-tcp://0.0.0.0:8883","key_password":null},"auth":[{"login":"admin","password":"pw-sentinel-mqtt"}],"websocket":{"enable":true,"url":"nmq-ws://0.0.0.0:8083/mqtt"},"http_server":{"enable":true,"port":8081,"addr":"0.0.0.0","username":"admin","password":"pw-sentinel-http","auth_type":"basic"},"bridge":{"nodes":[]}}}"#,
        )
        .secret("pw-sentinel-mqtt")
        .secret("pw-sentinel-http"),
        Sample::ok(200, JSON, r#"{"code":0,"data":{"enable":true,"port":8081,"addr":"0.0.0.0","username":"admin","password":"pw-sentinel-api","auth_type":"basic"}}"#)
            .secret("pw-sentinel-api"),
        Sample::ok(200, JSON, r#"{"code":0}"#),
        Sample::refusal(404, None, r#"{"code":102}"#),
        Sample::refusal(401, None, r#"{"code":104}"#),
        Sample::refusal(401, None, r#"{"code":103}"#),
        Sample::refusal(200, JSON, r#"{"code":108}"#),
        Sample::refusal(404, JSON, r#"{"code":101,"data":{}}"#),
        Sample::refusal(
            404,
            Some("text/html"),
            "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1><span>404</span></h1><h2>Not Found</h2></body></html>",
        ),
    ]
}

#[test]
fn codes_without_content_type_and_under_200() {
    let api = NanoMqApi::new();
    let err = api.brokers().unwrap().parse(&response(404, None, br#"{"code":102}"#)).unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, code: Some(102), .. }), "{err:?}");
    let err = api.publish(&Publish::new("", "x")).unwrap().parse(&response(200, None, br#"{"code":108}"#)).unwrap_err();
    assert!(matches!(err, Error::Api { status: 200, code: Some(108), .. }), "{err:?}");
    let err = api.brokers().unwrap().parse(&response(401, None, br#"{"code":104}"#)).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }));
    let m = api.metrics().unwrap().parse(&response(200, None, br#"{"metrics":[],"cpuinfo":"0.00%","memory":"20049920","connections":0}"#));
    assert_eq!(m.unwrap().memory_bytes(), Some(20_049_920));
}

proptest! {
    #[test]
    fn parsers_never_panic_on_bytes(status in 100u16..600, ct in proptest::option::of("[a-z/;= -]{0,30}"), body in arb_body()) {
        let r = response(status, ct.as_deref(), &body);
        for p in all_parsers() { let _ = p(&r); }
    }

    #[test]
    fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(401), Just(404), Just(405)], value in shaped(arb_json(), &["code", "data", "metrics", "memory", "cpuinfo", "connections"])) {
        let r = response(status, None, value.to_string().as_bytes());
        for p in all_parsers() { let _ = p(&r); }
    }

    #[test]
    fn data_payloads_never_panic(value in arb_json()) {
        let body = serde_json::json!({ "code": 0, "data": value }).to_string();
        let r = response(200, Some("application/json"), body.as_bytes());
        for p in all_parsers() { let _ = p(&r); }
    }
}

crate::testing::mutated_answer_tests!();

#[test]
fn keepalive_backoff_is_read_in_both_forms() {
    let read = |v: Value| serde_json::from_value::<ReloadConfig>(serde_json::json!({ "keepalive_backoff": v }));
    // NanoMQ 0.25 (confirmed against a running server): the factor, as a float.
    assert_eq!(read(serde_json::json!(1.25)).unwrap().keepalive_backoff, Some(1.25));
    // Older documentation: the factor ×1000, as an integer.
    assert_eq!(read(serde_json::json!(1250)).unwrap().keepalive_backoff, Some(1.25));
    // A float the server prints without a fraction.
    assert_eq!(read(serde_json::json!(2)).unwrap().keepalive_backoff, Some(2.0));
    assert_eq!(read(Value::Null).unwrap().keepalive_backoff, None);
    assert_eq!(serde_json::from_value::<ReloadConfig>(serde_json::json!({})).unwrap().keepalive_backoff, None);
    for bad in [serde_json::json!(-1.0), serde_json::json!("1.25"), serde_json::json!(true)] {
        assert!(read(bad.clone()).is_err(), "{bad}");
    }
    // Written back as the float.
    let config = ReloadConfig { keepalive_backoff: Some(1.5), ..ReloadConfig::default() };
    assert_eq!(serde_json::to_value(&config).unwrap()["keepalive_backoff"], serde_json::json!(1.5));
}
