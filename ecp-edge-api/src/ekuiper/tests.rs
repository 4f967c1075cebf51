//! Unit tests of the ekuiper adapter: every parser against hostile bodies, the request shapes.

use proptest::prelude::*;

use super::*;
use crate::error::Error;
use crate::testing::{ParseFn, arb_body, arb_json, parsers, response, shaped};

fn all_parsers() -> Vec<ParseFn> {
    let api = EkuiperApi::new();
    let rule = Rule::new("r", "SELECT * FROM demo", vec![]);
    parsers![
        api.ping(),
        api.info(),
        api.streams(),
        api.stream("s"),
        api.create_stream("CREATE STREAM s () WITH (TYPE=\"memory\")"),
        api.rules(),
        api.rule("r"),
        api.create_rule(&rule),
        api.rule_status("r"),
        api.start_rule("r"),
    ]
}

#[test]
fn states() {
    assert_eq!(RuleState::parse("running"), RuleState::Running);
    assert_eq!(RuleState::parse("Running"), RuleState::Running);
    assert_eq!(RuleState::parse("stopped: waiting for next schedule."), RuleState::WaitingForSchedule);
    assert_eq!(RuleState::parse("stopped by error"), RuleState::StoppedByError);
    assert_eq!(RuleState::parse("stopped: canceled manually."), RuleState::Stopped);
    assert_eq!(RuleState::parse("error: io timeout"), RuleState::Error("io timeout".into()));
    assert_eq!(RuleState::parse("é"), RuleState::Other("é".into()));
    assert_eq!(RuleState::parse("errör"), RuleState::Other("errör".into()));
    assert_eq!(RuleState::parse("ERROR:x"), RuleState::Error("x".into()));
}

#[test]
fn errors_are_text_plain_json() {
    let api = EkuiperApi::new();
    let r =
        response(404, Some("text/plain; charset=utf-8"), b"{\"error\":1002,\"message\":\"get rule status error: Rule r9 is not found\"}\n");
    let err = api.rule_status("r9").unwrap().parse(&r).unwrap_err();
    let Error::Api { status: 404, code: Some(1002), message: Some(m), .. } = &err else { panic!("{err:?}") };
    assert_eq!(m, "get rule status error: Rule r9 is not found");
    assert!(err.is_not_found());
    let r = response(401, Some("text/plain"), b"missing_token\n");
    assert!(matches!(api.rules().unwrap().parse(&r), Err(Error::Unauthorized { .. })));
    let r = response(201, Some("text/plain"), b"Rule rule1 was created successfully.");
    assert_eq!(
        api.create_rule(&Rule::new("rule1", "SELECT 1", vec![])).unwrap().parse(&r).unwrap(),
        "Rule rule1 was created successfully."
    );
}

proptest! {
    #[test]
    fn parsers_never_panic_on_bytes(status in 100u16..600, ct in proptest::option::of("[a-z/;= -]{0,30}"), body in arb_body()) {
        let r = response(status, ct.as_deref(), &body);
        for p in all_parsers() { p(&r); }
    }

    #[test]
    fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(201), Just(400), Just(401), Just(404)], value in shaped(arb_json(), &["error", "message", "status", "id", "name", "sql", "actions", "Name", "StreamFields", "Options", "StreamType", "upTimeSeconds", "memoryTotal", "lastStartTimestamp"])) {
        let r = response(status, Some("text/plain"), value.to_string().as_bytes());
        for p in all_parsers() { p(&r); }
    }

    #[test]
    fn rule_state_never_panics(s in ".{0,40}") {
        let _ = RuleState::parse(&s);
    }
}
