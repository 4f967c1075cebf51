//! Unit tests of the NeuronEX adapter: its parsers against hostile bodies, the request shapes.

use proptest::prelude::*;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::error::Error;
use crate::testing::{ParseFn, arb_body, arb_json, response, shaped};

fn all_parsers() -> Vec<ParseFn> {
    let secret = SecretString::from("p");
    let login = NeuronExApi.login("admin", &secret).unwrap();
    let version = NeuronExApi.version().unwrap();
    let system = NeuronExApi.system().unwrap();
    vec![Box::new(move |r| drop(login.parse(r))), Box::new(move |r| drop(version.parse(r))), Box::new(move |r| drop(system.parse(r)))]
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
        for p in all_parsers() { p(&r); }
        let _ = token_refused(&r);
    }

    #[test]
    fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(400), Just(401), Just(500)], value in shaped(arb_json(), &["token", "role", "version", "neuronStatus", "os", "error", "code", "message"])) {
        let r = response(status, Some("application/json"), value.to_string().as_bytes());
        for p in all_parsers() { p(&r); }
    }
}
