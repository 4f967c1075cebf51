//! Property tests of the agent protocol codec: hostile bytes, truncations and mutations of valid
//! messages never panic, are answered with a typed reason, and valid messages round-trip.
//! (Metric values are generated exactly representable: serde_json's default float printing does
//! not promise a bit-exact round trip of every f64.)

use ecp_agent_proto::Channel;
use ecp_agent_proto::proto::{self, DEFAULT_MAX_PAYLOAD, Envelope, Heartbeat, Hello, LocalService, Message, Status};
use ecp_testkit::mutate;
use proptest::prelude::*;

const CHANNELS: [Channel; 8] = [
    Channel::Hello,
    Channel::Status,
    Channel::Heartbeat,
    Channel::Event,
    Channel::Report,
    Channel::Reply,
    Channel::Command,
    Channel::Desired,
];

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<bool>().prop_map(|online| Message::Status(Status { online })),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::btree_map("[a-z_]{1,12}", (-1_000_000_000i64..1_000_000_000).prop_map(|v| v as f64 / 4.0), 0..8)
        )
            .prop_map(|(seq, uptime_secs, metrics)| Message::Heartbeat(Heartbeat { seq, uptime_secs, services: vec![], metrics })),
        ("\\PC{0,40}", 1u32..3600, proptest::collection::vec(("[a-z]{1,8}", "\\PC{0,30}"), 0..4)).prop_map(|(v, hb, svcs)| {
            Message::Hello(Hello {
                agent_version: v,
                heartbeat_secs: hb,
                services: svcs
                    .into_iter()
                    .map(|(name, url)| LocalService { name, kind: "custom".into(), url, restartable: false })
                    .collect(),
                applied: Default::default(),
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), ch in 0usize..8) {
        let _ = proto::decode(CHANNELS[ch], &bytes, DEFAULT_MAX_PAYLOAD);
    }

    #[test]
    fn valid_messages_round_trip_and_only_on_their_channel(m in message(), ch in 0usize..8) {
        let env = Envelope::new(m);
        let bytes = proto::encode(&env, DEFAULT_MAX_PAYLOAD).unwrap();
        let own = env.message.channel();
        prop_assert_eq!(proto::decode(own, &bytes, DEFAULT_MAX_PAYLOAD).unwrap(), env.clone());
        if CHANNELS[ch] != own {
            let err = proto::decode(CHANNELS[ch], &bytes, DEFAULT_MAX_PAYLOAD).unwrap_err();
            prop_assert_eq!(err.reason(), ecp_agent_proto::RejectReason::WrongChannel);
        }
    }

    #[test]
    fn truncated_and_mutated_messages_are_rejected_with_a_reason(m in message(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let env = Envelope::new(m);
        let bytes = proto::encode(&env, DEFAULT_MAX_PAYLOAD).unwrap();
        let own = env.message.channel();
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(proto::decode(own, truncated, DEFAULT_MAX_PAYLOAD).is_err(), "a strict prefix of a JSON object is never valid");
        let mut mutated = bytes.clone();
        let i = flip.index(mutated.len());
        mutated[i] = byte;
        // Either still a valid message or a typed error: never a panic.
        match proto::decode(own, &mutated, DEFAULT_MAX_PAYLOAD) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        // The limit is applied before parsing.
        let err = proto::decode(own, &bytes, bytes.len() - 1).unwrap_err();
        prop_assert_eq!(err.reason(), ecp_agent_proto::RejectReason::TooLarge);
    }
}

/// A password and a bearer token the hub tunnels to a local service: no refusal may quote them.
const SECRET: &str = "SENTINEL-agent-s3cret";

/// Well-formed messages of every kind, as the hub and the agents send them (the crate's own
/// round-trip tests build the same), with secrets where the protocol carries them.
fn samples() -> Vec<Envelope> {
    use ecp_agent_proto::proto::{
        Applied, Command, Desired, DesiredItem, ErrorCode, Event, HttpRequest, HttpResponse, Level, Reply, Report, ServiceHealth,
        encode_body,
    };
    use ecp_edge_api::ConfigChange;
    use serde_json::json;
    let login = format!(r#"{{"name":"admin","pass":"{SECRET}"}}"#);
    let item = DesiredItem {
        key: "stream:demo".into(),
        version: 7,
        target: "127.0.0.1:8085".into(),
        change: ConfigChange::EkuiperStream {
            name: "demo".into(),
            sql: "CREATE STREAM demo () WITH (TYPE=\"memory\", FORMAT=\"json\")".into(),
        },
    };
    let raw = DesiredItem {
        key: "raw:login".into(),
        version: 8,
        target: "127.0.0.1:7000".into(),
        change: ConfigChange::RawApiCall {
            method: "POST".into(),
            path: "/api/v2/login".into(),
            body: Some(json!({ "name": "admin", "pass": SECRET })),
        },
    };
    let messages = vec![
        Message::Hello(Hello {
            agent_version: "0.1.0".into(),
            heartbeat_secs: 10,
            services: vec![
                LocalService { name: "nx".into(), kind: "neuronex".into(), url: "http://127.0.0.1:8085".into(), restartable: true },
                LocalService { name: "kuiper".into(), kind: "ekuiper".into(), url: "http://127.0.0.1:9081".into(), restartable: false },
            ],
            applied: [("stream:demo".to_owned(), 7), ("raw:login".to_owned(), 8)].into(),
        }),
        Message::Status(Status { online: true }),
        Message::Heartbeat(Heartbeat {
            seq: 42,
            uptime_secs: 4200,
            services: vec![
                ServiceHealth { name: "nx".into(), up: true, latency_ms: Some(3) },
                ServiceHealth { name: "kuiper".into(), up: false, latency_ms: None },
            ],
            metrics: [("rss_bytes".to_owned(), 1.25e7), ("buffered".to_owned(), 0.0), ("cpu".to_owned(), 0.5)].into(),
        }),
        Message::Event(Event {
            level: Level::Warning,
            message: "nx restarted".into(),
            fields: [("exit_code".to_owned(), json!(137))].into(),
        }),
        Message::Command(Command::Http(HttpRequest {
            target: "127.0.0.1:8085".into(),
            method: "POST".into(),
            path: "/api/login".into(),
            headers: vec![("content-type".into(), "application/json".into()), ("authorization".into(), format!("Bearer {SECRET}"))],
            body: Some(encode_body(login.as_bytes())),
        })),
        Message::Command(Command::Restart { target: "127.0.0.1:9081".into() }),
        Message::Command(Command::Apply(raw.clone())),
        Message::Reply(Reply::Ok {
            result: serde_json::to_value(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: encode_body(br#"{"version":"3.0.1"}"#),
            })
            .unwrap(),
        }),
        Message::Reply(Reply::Error { code: ErrorCode::Forbidden, message: "127.0.0.1:22 is not on the allow-list".into() }),
        Message::Desired(Desired { version: 8, items: vec![item, raw] }),
        Message::Report(Report {
            items: vec![
                Applied { key: "stream:demo".into(), version: 7, ok: true, detail: json!({"name": "demo"}) },
                Applied { key: "raw:login".into(), version: 8, ok: false, detail: json!("connection refused") },
            ],
        }),
    ];
    messages.into_iter().map(Envelope::new).collect()
}

/// What a refusal must not quote: the secret, and the base64 of the tunnelled body around it.
fn leaks(text: &str) -> bool {
    let login = format!(r#"{{"name":"admin","pass":"{SECRET}"}}"#);
    let b64 = proto::encode_body(login.as_bytes());
    text.contains(SECRET) || text.contains(&b64[32..56])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Mutations of real messages (flips, inserted bytes and tokens, deleted, truncated and
    /// duplicated ranges, splices of two messages, values moved between fields or replaced)
    /// decode to a message that re-encodes, or to a typed refusal that quotes no secret. Decoding is pure: a refusal only counts (the hub and
    /// the agent drop the payload after counting it), and the original still decodes the same.
    #[test]
    fn mutated_messages_never_panic(m in mutate::mutated(encoded_samples())) {
        check_mutated(&m)?;
    }
}

proptest! {
    // More cases: a secret reaches a typed slot in a few percent of them.
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// As above, with only values moved between fields, replaced or removed: a token where a
    /// list belongs, the tunnelled body where a tag belongs.
    #[test]
    fn messages_with_moved_values_never_panic(m in mutate::json_mutated(encoded_samples())) {
        check_mutated(&m)?;
    }
}

fn encoded_samples() -> Vec<Vec<u8>> {
    samples().iter().map(|e| proto::encode(e, DEFAULT_MAX_PAYLOAD).unwrap()).collect()
}

fn check_mutated(m: &mutate::Mutated) -> Result<(), TestCaseError> {
    let originals = samples();
    let original = &originals[m.base];
    let channel = original.message.channel();
    let stats = ecp_agent_proto::proto::CodecStats::default();
    match proto::decode(channel, &m.bytes, DEFAULT_MAX_PAYLOAD) {
        Ok(env) => {
            prop_assert_eq!(env.message.channel(), channel);
            let again = proto::encode(&env, DEFAULT_MAX_PAYLOAD).expect("a decoded message re-encodes");
            let back = proto::decode(channel, &again, DEFAULT_MAX_PAYLOAD).expect("a re-encoded message decodes");
            prop_assert_eq!((&back.id, back.ts, back.message.kind()), (&env.id, env.ts, env.message.kind()));
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            prop_assert!(!leaks(&shown), "a refusal quotes a secret: {}", shown);
            stats.count(e.reason());
            prop_assert_eq!(stats.total(), 1);
            prop_assert_eq!(stats.get(e.reason()), 1);
        }
    }
    let bytes = proto::encode(original, DEFAULT_MAX_PAYLOAD).unwrap();
    prop_assert_eq!(&proto::decode(channel, &bytes, DEFAULT_MAX_PAYLOAD).unwrap(), original);
    Ok(())
}
