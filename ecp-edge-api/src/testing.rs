//! Test helpers: responses, proptest strategies for the parsers, and the mutated-sample check.

use bytes::Bytes;
use ecp_testkit::mutate::{self, Mutated};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use crate::error::Error;

/// A parser under test, its call captured: what it answers, without the value.
pub(crate) type ParseFn = Box<dyn Fn(&http::Response<Bytes>) -> Result<(), Error>>;

/// The parsers of calls: `parsers![api.version(), api.nodes(..)]`.
macro_rules! parsers {
    ($($call:expr),* $(,)?) => {
        vec![$({
            let call = $call.unwrap();
            Box::new(move |r: &http::Response<bytes::Bytes>| call.parse(r).map(drop)) as $crate::testing::ParseFn
        }),*]
    };
}
pub(crate) use parsers;

/// The tests every product module runs on its `samples()` with its `all_parsers()` and its
/// `token_refused`: the samples are answers the parsers take, and mutations of them (bytes,
/// splices, JSON values moved, replaced or removed) are read, or refused with an error of the
/// answer that quotes no token or password of the sample.
macro_rules! mutated_answer_tests {
    () => {
        #[test]
        fn samples_are_answers_the_parsers_take() {
            $crate::testing::check_samples(&samples(), &all_parsers());
        }

        proptest::proptest! {
            #![proptest_config($crate::testing::mutated_body_config())]

            /// Mutated bytes of the real answers: read, or refused quoting no secret.
            #[test]
            fn mutated_answers_are_read_or_refused(m in $crate::testing::mutated_bodies(&samples())) {
                $crate::testing::check_mutated(&samples(), &m, &all_parsers(), token_refused)?;
            }

            /// As above, with only JSON values moved, replaced or removed.
            #[test]
            fn answers_with_moved_values_are_read_or_refused(m in $crate::testing::json_mutated_bodies(&samples())) {
                $crate::testing::check_mutated(&samples(), &m, &all_parsers(), token_refused)?;
            }
        }
    };
}
pub(crate) use mutated_answer_tests;

/// A response with `status`, an optional content type, and `body`.
pub(crate) fn response(status: u16, content_type: Option<&str>, body: &[u8]) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::copy_from_slice(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Some(ct) = content_type.and_then(|c| http::HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, ct);
    }
    r
}

/// Arbitrary bodies: random bytes, random text, HTML, truncated JSON.
pub(crate) fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        ".{0,200}".prop_map(String::into_bytes),
        Just(b"<html><body>Not Found</body></html>".to_vec()),
        arb_json().prop_flat_map(|v| {
            let s = v.to_string().into_bytes();
            let n = s.len();
            (Just(s), 0..=n).prop_map(|(s, cut)| s[..cut].to_vec())
        }),
    ]
}

const KEYS: &[&str] = &[
    "error",
    "code",
    "data",
    "name",
    "message",
    "status",
    "id",
    "version",
    "token",
    "node",
    "group",
    "driver",
    "interval",
    "tag_count",
    "running",
    "link",
    "clientid",
    "client_id",
    "topic",
    "qos",
    "memory",
    "metrics",
    "Name",
    "StreamFields",
    "type",
    "attribute",
];

/// Arbitrary JSON, with keys the products use.
pub(crate) fn arb_json() -> impl Strategy<Value = Value> + Clone {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((prop_oneof![proptest::sample::select(KEYS).prop_map(str::to_owned), "[a-z_]{1,10}"], inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Objects with some of `keys` (and arbitrary values), or anything `inner` makes.
pub(crate) fn shaped(inner: impl Strategy<Value = Value> + Clone, keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        inner.clone(),
        proptest::collection::vec((proptest::sample::select(keys), inner), 0..6)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
    ]
}

/// A real-shaped answer of a product (reference `api-contracts.md`, the simulators of
/// ecp-testkit): its status, content type and body, whether the product means it as a success,
/// and the passwords and tokens its body holds.
pub(crate) struct Sample {
    pub(crate) status: u16,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) body: String,
    /// Whether some parser of the module takes it (else it is an error answer).
    pub(crate) success: bool,
    pub(crate) secrets: Vec<&'static str>,
}

impl Sample {
    /// A success answer.
    pub(crate) fn ok(status: u16, content_type: Option<&'static str>, body: &str) -> Self {
        Sample { status, content_type, body: body.to_owned(), success: true, secrets: Vec::new() }
    }

    /// An error answer.
    pub(crate) fn refusal(status: u16, content_type: Option<&'static str>, body: &str) -> Self {
        Sample { success: false, ..Sample::ok(status, content_type, body) }
    }

    /// The answer, whose body holds `secret`.
    pub(crate) fn secret(mut self, secret: &'static str) -> Self {
        assert!(self.body.contains(secret), "{secret} is not in {}", self.body);
        self.secrets.push(secret);
        self
    }

    fn response(&self, body: &[u8]) -> http::Response<Bytes> {
        response(self.status, self.content_type, body)
    }
}

fn bodies(samples: &[Sample]) -> Vec<Vec<u8>> {
    samples.iter().map(|s| s.body.as_bytes().to_vec()).collect()
}

/// Bodies of `samples` with any mutations (bytes, splices, and JSON values while they are JSON).
pub(crate) fn mutated_bodies(samples: &[Sample]) -> impl Strategy<Value = Mutated> + use<> {
    mutate::mutated(bodies(samples))
}

/// Bodies of `samples` with only JSON values moved, replaced or removed.
pub(crate) fn json_mutated_bodies(samples: &[Sample]) -> impl Strategy<Value = Mutated> + use<> {
    mutate::json_mutated(bodies(samples))
}

/// The cases of the mutated-sample properties: the parsers are pure and cheap.
pub(crate) fn mutated_body_config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// Feeds the mutated body `m`, under the status and content type of the sample it came from, to
/// every parser and to a raw call's: each answers a value, or an error of the answer (`Api` of
/// that status, `Unauthorized` for 401 and 403, `Decode`) whose text is not empty and quotes no
/// password or token of the sample. `refused` (the module's token check) reads it too.
pub(crate) fn check_mutated(
    samples: &[Sample],
    m: &Mutated,
    parsers: &[ParseFn],
    refused: impl Fn(&http::Response<Bytes>) -> bool,
) -> Result<(), TestCaseError> {
    let sample = &samples[m.base];
    let r = sample.response(&m.bytes);
    let raw = crate::ApiCall::raw("GET", "/api/anything", None, None).unwrap();
    let _ = refused(&r);
    for outcome in parsers.iter().map(|p| p(&r)).chain([raw.parse(&r).map(drop)]) {
        let Err(e) = outcome else { continue };
        let shown = format!("{e} {e:?}");
        match &e {
            Error::Api { status, .. } => prop_assert_eq!(*status, sample.status, "{}", shown),
            Error::Unauthorized { .. } => prop_assert!(matches!(sample.status, 401 | 403), "{}", shown),
            Error::Decode { reason, .. } => prop_assert!(!reason.is_empty(), "{}", shown),
            _ => prop_assert!(false, "not an error of an answer: {}", shown),
        }
        prop_assert!(!e.to_string().is_empty());
        for secret in &sample.secrets {
            prop_assert!(!shown.contains(secret), "the refusal quotes {}: {}", secret, shown);
        }
    }
    Ok(())
}

/// Each sample as it is: a success is taken by some parser, an error answer is one for a raw call
/// (some text parsers take any 2xx body, Neuron's `{"error":N}` under 200 included).
pub(crate) fn check_samples(samples: &[Sample], parsers: &[ParseFn]) {
    let raw = crate::ApiCall::raw("GET", "/api/anything", None, None).unwrap();
    for s in samples {
        let r = s.response(s.body.as_bytes());
        if s.success {
            assert!(parsers.iter().any(|p| p(&r).is_ok()), "{} {}: taken by no parser", s.status, s.body);
        } else {
            assert!(raw.parse(&r).is_err(), "{} {}: not an error answer", s.status, s.body);
        }
    }
}
