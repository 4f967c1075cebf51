//! Unit tests of the ekuiper adapter: every parser against hostile bodies, the request shapes.

use proptest::prelude::*;

use super::*;
use crate::error::Error;
use crate::testing::{ParseFn, Sample, arb_body, arb_json, parsers, response, shaped};

fn all_parsers() -> Vec<ParseFn> {
    let api = EkuiperApi::new();
    let rule = Rule::new("r", "SELECT * FROM demo", vec![]);
    parsers![
        api.ping(),
        api.info(),
        api.streams(),
        api.stream("s"),
        api.create_stream("CREATE STREAM s () WITH (TYPE=\"memory\")"),
        api.replace_stream("s", "CREATE STREAM s () WITH (TYPE=\"memory\")"),
        api.delete_stream("s", false),
        api.rules(),
        api.rule("r"),
        api.create_rule(&rule),
        api.update_rule(&rule),
        api.delete_rule("r"),
        api.rule_status("r"),
        api.start_rule("r"),
        api.stop_rule("r"),
        api.restart_rule("r"),
    ]
}

/// eKuiper 2.4's answers as the reference (§4) and the simulator give them.
fn samples() -> Vec<Sample> {
    const JSON: Option<&str> = Some("application/json");
    const TEXT: Option<&str> = Some("text/plain; charset=utf-8");
    vec![
        Sample::ok(200, None, ""),
        Sample::ok(
            200,
            JSON,
            r#"{"version":"2.4.0","os":"linux","arch":"amd64","upTimeSeconds":1234,"cpuUsage":"0.50","memoryUsed":"52428800","memoryTotal":"8201691136"}"#,
        ),
        Sample::ok(200, JSON, r#"["demo"]"#),
        Sample::ok(
            200,
            JSON,
            r#"{"Name":"demo","StreamFields":[{"FieldType":"float","Name":"temp"}],"Options":{"datasource":"t/demo","format":"JSON","shared":true},"StreamType":0,"Statement":null}"#,
        ),
        Sample::ok(201, TEXT, "Stream demo is created."),
        Sample::ok(200, JSON, r#"[{"id":"rule1","name":"rule1","status":"running","version":"","trace":false,"tags":null}]"#),
        // A rule's MQTT sink holds the broker's password.
        Sample::ok(
            200,
            JSON,
            r#"{"id":"rule1","name":"rule1","sql":"SELECT * FROM demo","actions":[{"mqtt":{"server":"tcp://10.0.0.5:1883","topic":"out","username":"edge","password":"pw-sentinel-sink"}}],"options":{"qos":1},"triggered":true}"#,
        )
        .secret("pw-sentinel-sink"),
        Sample::ok(201, TEXT, "Rule rule1 was created successfully."),
        Sample::ok(
            200,
            JSON,
            "{\n  \"status\": \"running\",\n  \"message\": \"\",\n  \"lastStartTimestamp\": 1716187690000,\n  \"lastStopTimestamp\": 0,\n  \
             \"nextStartTimestamp\": 0,\n  \"source_demo_0_records_in_total\": 5,\n  \"source_demo_0_process_latency_us\": 12,\n  \
             \"source_demo_0_connection_status\": 1,\n  \"source_demo_0_last_exception\": \"\",\n  \
             \"op_2_project_0_records_in_total\": 5,\n  \"sink_log_0_0_records_out_total\": 5\n}",
        ),
        Sample::ok(200, TEXT, "Rule rule1 was started"),
        Sample::ok(200, TEXT, "Stream demo is dropped."),
        Sample::refusal(404, TEXT, "{\"error\":1002,\"message\":\"get rule status error: Rule r9 is not found\"}\n"),
        Sample::refusal(400, TEXT, "{\"error\":2001,\"message\":\"invalid sql: found \\\"FORM\\\", expected FROM.\"}\n"),
        Sample::refusal(401, TEXT, "missing_token\n"),
        Sample::refusal(404, TEXT, "404 page not found\n"),
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
        for p in all_parsers() { let _ = p(&r); }
    }

    #[test]
    fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(201), Just(400), Just(401), Just(404)], value in shaped(arb_json(), &["error", "message", "status", "id", "name", "sql", "actions", "Name", "StreamFields", "Options", "StreamType", "upTimeSeconds", "memoryTotal", "lastStartTimestamp"])) {
        let r = response(status, Some("text/plain"), value.to_string().as_bytes());
        for p in all_parsers() { let _ = p(&r); }
    }

    #[test]
    fn rule_state_never_panics(s in ".{0,40}") {
        let _ = RuleState::parse(&s);
    }
}

crate::testing::mutated_answer_tests!();
