//! A scripted Kubernetes API server for kube-rs clients (`tower_test::mock`): each request is
//! recorded (method, path, query, content type, JSON body) and answered by the next scripted reply,
//! so a test asserts exactly what a driver sent and answers with real-shaped objects.
//!
//! ```ignore
//! let (api, handle) = ecp_testkit::kube::pair();
//! let client = kube::Client::new(api, "default");
//! let server = tokio::spawn(serve(handle, vec![echo_created("emqx"), fixed(200, object)]));
//! // ... drive the client ...
//! let seen = server.await?;
//! assert_eq!(seen[0].method, "POST");
//! ```

use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

/// The test's side of the mock API server.
pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The client's side: give it to `kube::Client::new`.
pub type Service = tower_test::mock::Mock<Request<Body>, Response<Body>>;

/// An answer to one request, made from its JSON body: (HTTP status, JSON answer).
pub type Reply = Box<dyn FnOnce(&Value) -> (u16, Value) + Send>;

/// A mock API server: the service for the client and the handle for [`serve`].
pub fn pair() -> (Service, Handle) {
    tower_test::mock::pair::<Request<Body>, Response<Body>>()
}

/// A request the scripted server received.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Seen {
    /// `GET`, `POST`, `PATCH` ...
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string, empty when none.
    pub query: String,
    /// The `content-type` header (patches: `application/merge-patch+json` ...).
    pub content_type: Option<String>,
    /// The JSON body, `Null` when empty.
    pub body: Value,
}

/// Always answers `code` with `body`.
pub fn fixed(code: u16, body: Value) -> Reply {
    Box::new(move |_| (code, body))
}

/// Answers a create as the API server does: 201 with the object and server-set metadata (uid,
/// resourceVersion, generation 1, creationTimestamp, `namespace`).
pub fn echo_created(namespace: &str) -> Reply {
    let namespace = namespace.to_owned();
    Box::new(move |req: &Value| {
        let mut v = req.clone();
        v["metadata"]["uid"] = json!("6f1d2c3b-0000-4000-8000-000000000001");
        v["metadata"]["resourceVersion"] = json!("1001");
        v["metadata"]["generation"] = json!(1);
        v["metadata"]["creationTimestamp"] = json!("2025-06-01T09:59:00Z");
        v["metadata"]["namespace"] = json!(namespace);
        (201, v)
    })
}

/// A Kubernetes `Status` failure object (`NotFound`, `AlreadyExists`, `Forbidden` ...).
pub fn status(code: u16, reason: &str, message: &str, group: &str, kind: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
        "reason": reason, "details": {"group": group, "kind": kind}, "code": code})
}

/// Answers the requests in order with `replies` and returns what was received. Stops early when no
/// request comes for 2 seconds (so a driver that sends fewer requests shows as a short list).
///
/// # Panics
/// On a request body that is not JSON (the drivers only send JSON).
pub async fn serve(mut handle: Handle, replies: Vec<Reply>) -> Vec<Seen> {
    let mut seen = Vec::new();
    for reply in replies {
        let Ok(Some((req, send))) = tokio::time::timeout(Duration::from_secs(2), handle.next_request()).await else {
            break;
        };
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
        let (code, answer) = reply(&body);
        seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            content_type: parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
            body,
        });
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&answer).expect("a JSON answer")))
            .expect("a response");
        send.send_response(response);
    }
    seen
}
