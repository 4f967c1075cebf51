//! Property tests of the agent protocol codec: hostile bytes, truncations and mutations of valid
//! messages never panic, are answered with a typed reason, and valid messages round-trip.
//! (Metric values are generated exactly representable: serde_json's default float printing does
//! not promise a bit-exact round trip of every f64.)

use ecp_edge::agent::Channel;
use ecp_edge::agent::proto::{self, DEFAULT_MAX_PAYLOAD, Envelope, Heartbeat, Hello, LocalService, Message, Status};
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
            prop_assert_eq!(err.reason(), ecp_edge::agent::RejectReason::WrongChannel);
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
        prop_assert_eq!(err.reason(), ecp_edge::agent::RejectReason::TooLarge);
    }
}
