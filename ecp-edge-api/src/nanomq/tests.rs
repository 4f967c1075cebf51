//! Unit tests of the nanomq adapter: every parser against hostile bodies, the request shapes.

use proptest::prelude::*;

use serde_json::Value;

use super::*;
use crate::error::Error;
use crate::testing::{ParseFn, arb_body, arb_json, parsers, response, shaped};

fn all_parsers() -> Vec<ParseFn> {
    let api = NanoMqApi::new();
    parsers![
        api.brokers(),
        api.nodes(),
        api.clients(&ClientFilter::default()),
        api.subscriptions(),
        api.topic_tree(),
        api.metrics(),
        api.prometheus(),
        api.reload_config(),
        api.configuration(),
        api.configuration_section("basic"),
        api.publish(&Publish::new("t", "p")),
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
        for p in all_parsers() { p(&r); }
    }

    #[test]
    fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(401), Just(404), Just(405)], value in shaped(arb_json(), &["code", "data", "metrics", "memory", "cpuinfo", "connections"])) {
        let r = response(status, None, value.to_string().as_bytes());
        for p in all_parsers() { p(&r); }
    }

    #[test]
    fn data_payloads_never_panic(value in arb_json()) {
        let body = serde_json::json!({ "code": 0, "data": value }).to_string();
        let r = response(200, Some("application/json"), body.as_bytes());
        for p in all_parsers() { p(&r); }
    }
}

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
