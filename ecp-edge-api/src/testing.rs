//! Test helpers: responses and proptest strategies for the parsers.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;

/// A parser under test, its call captured.
pub(crate) type ParseFn = Box<dyn Fn(&http::Response<Bytes>)>;

/// The parsers of calls: `parsers![api.version(), api.nodes(..)]`.
macro_rules! parsers {
    ($($call:expr),* $(,)?) => {
        vec![$({
            let call = $call.unwrap();
            Box::new(move |r: &http::Response<bytes::Bytes>| drop(call.parse(r))) as $crate::testing::ParseFn
        }),*]
    };
}
pub(crate) use parsers;

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
