//! [`ApiCall`]: one request and the pure function that reads its answer; the helpers the product
//! modules build them with.

use std::fmt;
use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::service::EdgeKind;

/// Reads an answer: the call's endpoint (`METHOD path`, for errors) and the response.
pub(crate) type Parser<T> = fn(&str, &http::Response<Bytes>) -> Result<T>;

/// One call to an edge service's API, built without I/O: the request (its URI is a path and query
/// relative to the service's base URL) and the pure function that turns the answer into `T`.
///
/// The clients send calls and add authentication; a call can also be sent by any
/// [`EdgeTransport`](crate::EdgeTransport) and its answer read with [`parse`](Self::parse).
pub struct ApiCall<T> {
    request: http::Request<Bytes>,
    endpoint: String,
    needs_auth: bool,
    parse: Parser<T>,
}

impl<T> ApiCall<T> {
    pub(crate) fn new(method: Method, uri: Uri, body: Body, needs_auth: bool, parse: Parser<T>) -> Result<Self> {
        let endpoint = format!("{method} {}", uri.path());
        let (bytes, content_type, accept) = match body {
            Body::Empty(accept) => (Bytes::new(), None, accept),
            Body::Json(b) => (Bytes::from(b), Some("application/json"), JSON),
        };
        let mut request = http::Request::new(bytes);
        *request.method_mut() = method;
        *request.uri_mut() = http::Uri::try_from(uri.0).map_err(|e| Error::invalid("path", format!("not a valid request path: {e}")))?;
        request.headers_mut().insert(ACCEPT, HeaderValue::from_static(accept));
        if let Some(ct) = content_type {
            request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        Ok(ApiCall { request, endpoint, needs_auth, parse })
    }

    /// The request, without authentication.
    pub fn request(&self) -> &http::Request<Bytes> {
        &self.request
    }

    /// The request, without authentication.
    pub fn into_request(self) -> http::Request<Bytes> {
        self.request
    }

    /// `METHOD path` (no query, no credentials), as errors name the call.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the service wants credentials for this call (Neuron's ping and metrics, eKuiper's
    /// `/` and `/ping` do not).
    pub fn needs_auth(&self) -> bool {
        self.needs_auth
    }

    /// Reads the service's answer to this call.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) for the product's error answers (including Neuron's and NanoMQ's errors under
    /// HTTP 200, and HTML pages where JSON was expected), [`Error::Unauthorized`](crate::Error::Unauthorized) when the
    /// credentials were refused, [`Error::Decode`](crate::Error::Decode) when the body does not have the expected shape.
    pub fn parse(&self, response: &http::Response<Bytes>) -> Result<T> {
        (self.parse)(&self.endpoint, response)
    }
}

/// The header a raw call carries its attempt's idempotency key in.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl ApiCall<serde_json::Value> {
    /// A call of any method to any path of the service (a template's raw API call), with an
    /// optional JSON body and an `Idempotency-Key` header the service may use to drop a repeated
    /// attempt.
    ///
    /// The answer is read the way the products answer: a 2xx body as JSON (`null` when empty, a
    /// string when it is not JSON); a non-2xx status, or an error under HTTP 200 (Neuron's
    /// `{"error":N}`, NanoMQ's `{"code":N}` with N other than 0) as [`Error::Api`](crate::Error::Api).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for a method other than GET, POST, PUT, PATCH, DELETE, or a
    /// path that does not start with one `/`, climbs out of the service's base path in any
    /// spelling (see [`check_request_path`]), or holds whitespace or control characters.
    pub fn raw(method: &str, path: &str, body: Option<&serde_json::Value>, idempotency_key: Option<&str>) -> Result<Self> {
        let method = match method {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            _ => return Err(Error::invalid("method", "must be GET, POST, PUT, PATCH or DELETE")),
        };
        if !path.starts_with('/')
            || path.starts_with("//")
            || path.len() > 2048
            || path.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(Error::invalid("path", "must be a path on the service, starting with one '/', without whitespace"));
        }
        check_request_path(path)?;
        let body = match body {
            Some(v) => Body::json(v)?,
            None => Body::NONE,
        };
        let mut call = ApiCall::new(method, Uri(path.to_owned()), body, true, parse_raw)?;
        if let Some(key) = idempotency_key {
            let value = HeaderValue::try_from(key).map_err(|_| Error::invalid("idempotency_key", "is not a valid header value"))?;
            call.request.headers_mut().insert(IDEMPOTENCY_KEY, value);
        }
        Ok(call)
    }
}

/// Checks the path of a request (`/path`, with or without `?query`) sent under a service's base
/// URL: it must not leave the base path once decoded and normalised, so no segment may be `.` or
/// `..` in any spelling (`%2e%2e`, `.%2E`, doubly encoded `%252e`), and no segment may hold an
/// encoded `/` or a `\` (which some servers take for a separator).
///
/// # Errors
/// [`Error::InvalidInput`](crate::Error::InvalidInput) on the field `path`.
pub fn check_request_path(path_and_query: &str) -> Result<()> {
    const FIELD: &str = "path";
    let path = path_and_query.split_once('?').map_or(path_and_query, |(p, _)| p);
    for segment in path.split('/') {
        // Decoded until it no longer changes (a proxy may decode once more than the service).
        let mut decoded = segment.to_owned();
        for _ in 0..4 {
            let next = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy().into_owned();
            if next == decoded {
                break;
            }
            decoded = next;
        }
        if decoded.contains('%') && percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy() != decoded {
            return Err(Error::invalid(FIELD, "is encoded too many times"));
        }
        if matches!(decoded.as_str(), "." | "..") {
            return Err(Error::invalid(FIELD, "must not hold `.` or `..` segments, in any spelling"));
        }
        if decoded.contains('/') || decoded.contains('\\') {
            return Err(Error::invalid(FIELD, "must not hold an encoded `/` or a `\\`"));
        }
    }
    Ok(())
}

fn parse_raw(endpoint: &str, response: &http::Response<Bytes>) -> Result<serde_json::Value> {
    let status = response.status();
    let body = response.body();
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let code = json.as_ref().and_then(|v| int_field(v, "error").or_else(|| int_field(v, "code")));
    if !status.is_success() {
        if json.is_none() && is_html(response) {
            return Err(html_error(endpoint, status, None));
        }
        return Err(status_error(endpoint, status, None, code, body));
    }
    if let Some(code) = code.filter(|c| *c != 0) {
        // An error under HTTP 2xx: the body is an answer that may hold data (NanoMQ's
        // configuration and its passwords), so only its `message` is quoted, not the body.
        let message = json.as_ref().and_then(|v| v.get("message")?.as_str().map(excerpt));
        return Err(Error::Api { endpoint: endpoint.to_owned(), status: status.as_u16(), product: None, code: Some(code), message });
    }
    Ok(match json {
        Some(v) => v,
        None if body.is_empty() => serde_json::Value::Null,
        None => serde_json::Value::String(String::from_utf8_lossy(body).into_owned()),
    })
}

impl<T> fmt::Debug for ApiCall<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCall")
            .field("method", self.request.method())
            .field("uri", self.request.uri())
            .field("body_len", &self.request.body().len())
            .field("needs_auth", &self.needs_auth)
            .finish()
    }
}

pub(crate) const JSON: &str = "application/json";
pub(crate) const TEXT: &str = "text/plain";

/// The body of a request.
pub(crate) enum Body {
    /// No body; the `Accept` header to send.
    Empty(&'static str),
    /// A JSON body.
    Json(Vec<u8>),
}

impl Body {
    /// No body, JSON expected.
    pub(crate) const NONE: Body = Body::Empty(JSON);

    /// `value` as JSON.
    pub(crate) fn json(value: &impl Serialize) -> Result<Body> {
        serde_json::to_vec(value).map(Body::Json).map_err(|e| Error::invalid("body", format!("cannot be encoded as JSON: {e}")))
    }
}

/// A request path and query, built from a fixed prefix, checked and percent-encoded segments and
/// query pairs.
#[derive(Debug, Clone)]
pub(crate) struct Uri(String);

impl Uri {
    /// `prefix` followed by `path` (both fixed strings of the module, e.g. `/api/v2` + `/node`).
    pub(crate) fn new(prefix: &str, path: &str) -> Self {
        let mut s = String::with_capacity(prefix.len() + path.len() + 32);
        s.push_str(prefix);
        s.push_str(path);
        if s.is_empty() {
            s.push('/');
        }
        Uri(s)
    }

    /// Appends `/segment`, percent-encoded.
    ///
    /// Refuses empty, `.` and `..` segments (a URL parser would resolve them into another path).
    pub(crate) fn segment(mut self, field: &'static str, segment: &str) -> Result<Self> {
        check_name(field, segment)?;
        if matches!(segment, "." | "..") {
            return Err(Error::invalid(field, "must not be `.` or `..`"));
        }
        self.0.push('/');
        encode_into(&mut self.0, segment);
        Ok(self)
    }

    /// Appends a static path piece (`/status`).
    pub(crate) fn push(mut self, piece: &str) -> Self {
        self.0.push_str(piece);
        self
    }

    /// Appends `key=value` to the query, percent-encoded.
    pub(crate) fn query(mut self, key: &str, value: &str) -> Self {
        self.0.push(if self.0.contains('?') { '&' } else { '?' });
        encode_into(&mut self.0, key);
        self.0.push('=');
        encode_into(&mut self.0, value);
        self
    }

    /// Appends `key=value` when there is a value.
    pub(crate) fn query_opt(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.query(key, v),
            None => self,
        }
    }

    /// The path, without the query.
    pub(crate) fn path(&self) -> &str {
        self.0.split('?').next().unwrap_or_default()
    }
}

/// Checks a name sent to a service: not empty, at most 1024 bytes, no control characters.
pub(crate) fn check_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.len() > 1024 {
        return Err(Error::invalid(field, "longer than 1024 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a path prefix: empty, or `/`-led segments of unreserved characters, without a trailing
/// `/`.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let valid = prefix.len() <= 256
        && prefix.starts_with('/')
        && prefix[1..].split('/').all(|s| {
            !s.is_empty()
                && !matches!(s, "." | "..")
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        });
    if valid {
        Ok(())
    } else {
        Err(Error::invalid("prefix", "must be empty or `/`-separated segments of letters, digits, `-`, `.`, `_`, `~`"))
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading answers.

/// The longest product message kept in an error.
const MAX_MESSAGE: usize = 300;

/// A short, printable excerpt of an untrusted string for an error: control characters replaced,
/// cut at [`MAX_MESSAGE`] characters.
pub(crate) fn excerpt(s: &str) -> String {
    let mut out: String = s.trim().chars().take(MAX_MESSAGE).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.trim().chars().nth(MAX_MESSAGE).is_some() {
        out.push('…');
    }
    out
}

/// [`excerpt`] of a body, lossy UTF-8, or `None` when empty.
pub(crate) fn body_excerpt(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(4 * MAX_MESSAGE)];
    let s = excerpt(&String::from_utf8_lossy(head));
    (!s.is_empty()).then_some(s)
}

/// Whether an answer is an HTML page (by content type, or a body that starts with `<`).
pub(crate) fn is_html(response: &http::Response<Bytes>) -> bool {
    let ct_html = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    ct_html || response.body().iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// The error for an HTML page where the API was expected.
pub(crate) fn html_error(endpoint: &str, status: StatusCode, product: Option<EdgeKind>) -> Error {
    let name = product.map_or("edge service", EdgeKind::product_name);
    Error::Api {
        endpoint: endpoint.to_owned(),
        status: status.as_u16(),
        product,
        code: None,
        message: Some(format!("answered an HTML page, not the {name} API (unknown route, or the base URL is not {name})")),
    }
}

/// A generic error answer: the status and an excerpt of the body.
pub(crate) fn status_error(endpoint: &str, status: StatusCode, product: Option<EdgeKind>, code: Option<i64>, body: &[u8]) -> Error {
    Error::Api { endpoint: endpoint.to_owned(), status: status.as_u16(), product, code, message: body_excerpt(body) }
}

/// A [`Error::Decode`](crate::Error::Decode) with a bounded, printable reason.
pub(crate) fn decode_error(endpoint: &str, reason: impl fmt::Display) -> Error {
    Error::Decode { endpoint: endpoint.to_owned(), reason: excerpt(&reason.to_string()) }
}

/// The body as a JSON value.
pub(crate) fn json_value(endpoint: &str, body: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(body).map_err(|e| decode_error(endpoint, format_args!("not JSON: {e}")))
}

/// A JSON value as `T`.
pub(crate) fn from_value<T: DeserializeOwned>(endpoint: &str, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| decode_error(endpoint, crate::error::redacted(&e)))
}

/// The body as UTF-8 text.
pub(crate) fn text(endpoint: &str, body: &Bytes) -> Result<String> {
    std::str::from_utf8(body).map(str::to_owned).map_err(|e| decode_error(endpoint, format_args!("not UTF-8 text: {e}")))
}

/// `{"<key>": <integer>}` at the top of a JSON object, if any.
pub(crate) fn int_field(value: &serde_json::Value, key: &str) -> Option<i64> {
    value.as_object()?.get(key)?.as_i64()
}

/// Lenient deserializers for fields whose type varies across product versions.
pub(crate) mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// A string, or a number or boolean turned into one; `null` is `None`.
    pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    /// An integer, or a string holding one; anything else is `None`.
    pub(crate) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_stay_under_the_base_path() {
        for ok in ["/", "/api/v2/ping", "/api/v2/ping?x=..%2f", "/a/b.c/..d/%41", "/a%20b"] {
            assert!(check_request_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/a/../b",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/%2E%2e/b",
            "/a/.%2e/b",
            "/a/%2e./b",
            "/a/%252e%252e/b",
            "/a/%25252e%25252e/b",
            "/a/..%2fb",
            "/a/%2f..",
            "/a\\..\\b",
            "/a/%5c..%5cb",
            "/..",
            "/%2e",
        ] {
            assert!(check_request_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_and_queries_are_encoded() {
        let uri = Uri::new("/api/v2", "/node").segment("name", "a b/c?d").unwrap().query("node", "x&y=z").query_opt("none", None);
        assert_eq!(uri.0, "/api/v2/node/a%20b%2Fc%3Fd?node=x%26y%3Dz");
        assert_eq!(uri.path(), "/api/v2/node/a%20b%2Fc%3Fd");
        assert!(Uri::new("", "/rules").segment("id", "..").is_err());
        assert!(Uri::new("", "/rules").segment("id", "").is_err());
        assert!(Uri::new("", "/rules").segment("id", "a\nb").is_err());
        assert_eq!(Uri::new("", "").0, "/");
    }

    #[test]
    fn prefixes() {
        for ok in ["", "/api/v2", "/api/neuron", "/a-b/c_d"] {
            assert!(check_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["api", "/api/", "/a//b", "/a/../b", "/a b", "/a?b"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decode_errors_quote_no_string_of_the_answer() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Login {
            token: String,
            n: u64,
        }
        for (body, want) in [
            (serde_json::json!("tok-\"secret\\"), "invalid type: string \"…\", expected struct Login"),
            (serde_json::json!({"token": "t", "n": "pw-secret"}), "invalid type: string \"…\", expected u64"),
            (serde_json::json!({"token": "t", "n": 1, "pw-secret": 1}), "unknown field `…`, expected `token` or `n`"),
            (serde_json::json!({"token": 5, "n": 1}), "invalid type: integer `5`, expected a string"),
            (serde_json::json!({"n": 1}), "missing field `token`"),
        ] {
            let e = from_value::<Login>("GET /x", body).unwrap_err();
            let Error::Decode { reason, .. } = &e else { panic!("{e:?}") };
            assert_eq!(reason, want);
        }
    }

    #[test]
    fn raw_errors_under_200_quote_no_data() {
        let call = ApiCall::raw("GET", "/api/v4/configuration", None, None).unwrap();
        let answer = |status: u16, body: &str| {
            let mut r = http::Response::new(Bytes::copy_from_slice(body.as_bytes()));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            call.parse(&r)
        };
        let e = answer(200, r#"{"code":7,"data":{"http_server":{"password":"pw-sentinel"}}}"#).unwrap_err();
        assert!(matches!(&e, Error::Api { status: 200, code: Some(7), message: None, .. }), "{e:?}");
        let e = answer(200, r#"{"error":1,"message":"bad\nthing"}"#).unwrap_err();
        assert!(matches!(&e, Error::Api { code: Some(1), message: Some(m), .. } if m == "bad thing"), "{e:?}");
        // Other statuses: an excerpt of whatever was answered.
        let e = answer(502, "Bad Gateway: upstream timed out").unwrap_err();
        assert!(matches!(&e, Error::Api { status: 502, message: Some(m), .. } if m.contains("Bad Gateway")), "{e:?}");
        assert_eq!(answer(200, r#"{"code":0,"data":[]}"#).unwrap(), serde_json::json!({"code":0,"data":[]}));
    }

    #[test]
    fn excerpts_are_bounded_and_printable() {
        let long = "x".repeat(10_000);
        assert!(excerpt(&long).chars().count() <= MAX_MESSAGE + 1);
        assert_eq!(excerpt("a\u{1b}[31mb\n"), "a [31mb");
        assert_eq!(body_excerpt(b"  "), None);
        assert_eq!(body_excerpt(&[0xff, b'a']).as_deref(), Some("\u{fffd}a"));
    }
}

#[cfg(test)]
mod path_props {
    use proptest::prelude::*;

    use super::check_request_path;

    proptest! {
        /// Any path is answered without a panic, and an accepted one has no segment that decodes
        /// (any number of times) to `.` or `..`, nor an encoded slash or a backslash.
        #[test]
        fn accepted_paths_never_climb(path in "(/(x|\\.|%2e|%2E|%252e|%2f|%5c|\\\\|a){0,4}){1,4}") {
            if check_request_path(&path).is_ok() {
                for segment in path.split('?').next().unwrap_or_default().split('/') {
                    let mut d = segment.to_owned();
                    for _ in 0..5 {
                        d = percent_encoding::percent_decode_str(&d).decode_utf8_lossy().into_owned();
                    }
                    prop_assert!(d != "." && d != "..", "{path}");
                    prop_assert!(!d.contains('/') && !d.contains('\\'), "{path}");
                }
            }
        }
    }
}
