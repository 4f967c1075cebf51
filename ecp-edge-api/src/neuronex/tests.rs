//! Unit tests of the NeuronEX adapter: its parsers against hostile bodies, the request shapes.

use proptest::prelude::*;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::error::Error;
use crate::testing::{ParseFn, Sample, arb_body, arb_json, parsers, response, shaped};

fn all_parsers() -> Vec<ParseFn> {
    let secret = SecretString::from("p");
    parsers![NeuronExApi.login("admin", &secret), NeuronExApi.version(), NeuronExApi.system()]
}

/// NeuronEX's own answers as the reference (§0.5, §3) and the simulator give them.
fn samples() -> Vec<Sample> {
    const JSON: Option<&str> = Some("application/json; charset=utf-8");
    vec![
        Sample::ok(
            200,
            JSON,
            r#"{"token":"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJuYW1lIjoiYWRtaW4ifQ.tok-sentinel-nx","role":"Administrator"}"#,
        )
        .secret("tok-sentinel-nx"),
        Sample::ok(200, JSON, r#"{"version":"3.1.0-beta.3"}"#),
        Sample::ok(
            200,
            JSON,
            r#"{"neuronStatus":"running","ekuiperStatus":"running","os":"linux","arch":"amd64","version":"3.6.0","neuronVersion":"2.15.0","ekuiperVersion":"2.4.0","uptime":"1234"}"#,
        ),
        Sample::refusal(401, JSON, r#"{"error":1009}"#),
        Sample::refusal(401, JSON, r#"{"error":1006}"#),
        Sample::refusal(400, JSON, r#"{"error":1002}"#),
        Sample::refusal(404, Some("text/plain; charset=utf-8"), "404 page not found\n"),
    ]
}

#[test]
fn login_reads_token_and_role() {
    let r = response(200, Some("application/json"), br#"{"token":"tok-sentinel","role":"Administrator"}"#);
    let t = NeuronExApi.login("admin", &SecretString::from("0000")).unwrap().parse(&r).unwrap();
    assert_eq!(t.token.expose_secret(), "tok-sentinel");
    assert_eq!(t.role.as_deref(), Some("Administrator"));
    assert!(!format!("{t:?}").contains("sentinel"));
    let r = response(401, Some("application/json"), br#"{"error":1009}"#);
    assert!(matches!(NeuronExApi.login("admin", &SecretString::from("x")).unwrap().parse(&r), Err(Error::Unauthorized { .. })));
}

proptest! {
    #[test]
    fn parsers_never_panic_on_bytes(status in 100u16..600, ct in proptest::option::of("[a-z/;= -]{0,30}"), body in arb_body()) {
        let r = response(status, ct.as_deref(), &body);
        for p in all_parsers() { let _ = p(&r); }
        let _ = token_refused(&r);
    }

    #[test]
    fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(400), Just(401), Just(500)], value in shaped(arb_json(), &["token", "role", "version", "neuronStatus", "os", "error", "code", "message"])) {
        let r = response(status, Some("application/json"), value.to_string().as_bytes());
        for p in all_parsers() { let _ = p(&r); }
    }
}

crate::testing::mutated_answer_tests!();
