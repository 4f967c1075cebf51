//! The request as the product handlers see it, and the response shapes the products share.

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

/// A request whose body has been read (within the size limit) and whose query is decoded.
#[derive(Debug)]
pub(crate) struct SimRequest {
    pub(crate) method: Method,
    /// The raw path, still percent-encoded.
    pub(crate) path: String,
    /// Query pairs in order, percent- and `+`-decoded.
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl SimRequest {
    /// The first value of a query parameter.
    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A header as text, if present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request's own `Content-Type`, which NanoMQ echoes on its error replies.
    pub(crate) fn content_type(&self) -> Option<&HeaderValue> {
        self.headers.get(CONTENT_TYPE)
    }

    /// The body as a JSON value, or `None` when it is not JSON.
    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Splits and decodes a query string (`a=1&b=x+y`).
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else { return Vec::new() };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are, invalid UTF-8 is replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path segments after `prefix`, decoded; `None` when the path is not under `prefix`.
///
/// `"/api/v4/clients/a%2Fb"` under `"/api/v4"` gives `["clients", "a/b"]`; the prefix itself gives
/// `[]`.
pub(crate) fn segments(path: &str, prefix: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('/')?;
    Some(rest.split('/').map(percent_decode).collect())
}

/// A response with a status, headers and a body.
pub(crate) fn respond(status: StatusCode, headers: &[(HeaderName, &str)], body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().append(name.clone(), v);
        }
    }
    resp
}

/// Compact JSON with the given content type.
pub(crate) fn json(status: StatusCode, content_type: &str, value: &Value) -> Response {
    respond(status, &[(CONTENT_TYPE, content_type)], value.to_string())
}

/// The error page of NNG's HTTP server (Neuron and NanoMQ), for unknown routes and wrong methods.
pub(crate) fn nng_error_page(status: StatusCode) -> Response {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title>\n<style>body {{ font-family: Arial, sans serif; \
         text-align: center }}\nh1 {{ font-size: 36px; }}span {{ background-color: gray; color: white; padding: 7px; \
         border-radius: 5px }}h2 {{ font-size: 24px; }}p {{ font-size: 20px; }}</style></head><body><p>&nbsp;</p>\
         <h1><span>{code}</span></h1><h2>{reason}</h2><p></p></body></html>"
    );
    respond(status, &[(CONTENT_TYPE, "text/html; charset=UTF-8")], body)
}

/// Go's `http.NotFound` (eKuiper's router and NeuronEX's server for unknown routes).
pub(crate) fn go_not_found() -> Response {
    go_text_error(StatusCode::NOT_FOUND, "404 page not found")
}

/// Go's `http.Error`: `text/plain`, `nosniff`, the message and a newline.
pub(crate) fn go_text_error(status: StatusCode, message: &str) -> Response {
    respond(
        status,
        &[(CONTENT_TYPE, "text/plain; charset=utf-8"), (HeaderName::from_static("x-content-type-options"), "nosniff")],
        format!("{message}\n"),
    )
}

/// Which product's error shape a request gets from the shared plumbing (faults, body limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `{"error":N}` as JSON (Neuron, and NeuronEX's own endpoints).
    Neuron,
    /// `{"error":N,"message":…}` plus a newline, as `text/plain` (eKuiper).
    Ekuiper,
    /// `{"code":N}`, with the request's own content type (NanoMQ).
    Nanomq,
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than the configured limit.
    TooLarge,
    /// The client stopped sending or the connection broke.
    Broken,
}

impl Flavor {
    /// The reply to a request failed on purpose by [`crate::sim::SimHandle::fail_next`].
    pub(crate) fn injected_failure(self, request_content_type: Option<&HeaderValue>) -> Response {
        match self {
            Flavor::Neuron => crate::sim::neuron::error(1001),
            Flavor::Ekuiper => ekuiper_text_error(StatusCode::INTERNAL_SERVER_ERROR, 1001, "simulated failure"),
            Flavor::Nanomq => nanomq_code(StatusCode::INTERNAL_SERVER_ERROR, 101, request_content_type),
        }
    }

    /// The reply to a body that is too large or broken.
    pub(crate) fn body_error(self, error: BodyError, request_content_type: Option<&HeaderValue>) -> Response {
        match self {
            Flavor::Neuron => crate::sim::neuron::error(1002),
            Flavor::Ekuiper => {
                let why = match error {
                    BodyError::TooLarge => "Invalid body: http: request body too large",
                    BodyError::Broken => "Invalid body: unexpected EOF",
                };
                ekuiper_text_error(StatusCode::BAD_REQUEST, 1000, why)
            }
            Flavor::Nanomq => nanomq_code(StatusCode::BAD_REQUEST, 109, request_content_type),
        }
    }
}

/// eKuiper's error: `{"error":code,"message":"…"}` plus a newline, through Go's `http.Error`.
pub(crate) fn ekuiper_text_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = format!("{{\"error\":{code},\"message\":{}}}", Value::String(message.to_owned()));
    go_text_error(status, &body)
}

/// NanoMQ's `{"code":N}`, carrying the request's content type (none for a plain GET).
pub(crate) fn nanomq_code(status: StatusCode, code: i64, request_content_type: Option<&HeaderValue>) -> Response {
    let mut resp = respond(status, &[], format!("{{\"code\":{code}}}"));
    if let Some(ct) = request_content_type {
        resp.headers_mut().insert(CONTENT_TYPE, ct.clone());
    }
    resp
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_segments_decode() {
        let q = parse_query(Some("a=1&b=x+y&c=%2F%zz&&d"));
        assert_eq!(q, vec![("a".into(), "1".into()), ("b".into(), "x y".into()), ("c".into(), "/%zz".into()), ("d".into(), "".into())]);
        assert_eq!(segments("/api/v4/clients/a%2Fb", "/api/v4"), Some(vec!["clients".to_owned(), "a/b".to_owned()]));
        assert_eq!(segments("/api/v4", "/api/v4"), Some(vec![]));
        assert_eq!(segments("/api/v4x", "/api/v4"), None);
        assert_eq!(percent_decode("%4"), "%4");
    }
}
