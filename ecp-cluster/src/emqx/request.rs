//! Requests to the EMQX 5 REST API, built by pure functions: a method, a path below the base URL,
//! a query and a JSON body. No I/O here; [`EmqxClient`](super::EmqxClient) sends them.

use std::fmt;

use serde_json::Value;

use crate::error::{Error, Result};

/// The base of the versioned API.
pub const API_V5: &str = "/api/v5";

/// The most items EMQX gives in one page (`limit` is 1..=10000).
pub const MAX_PAGE_LIMIT: u32 = 10_000;

/// An HTTP method the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `GET`.
    Get,
    /// `PUT`.
    Put,
}

impl Method {
    /// `GET`, `PUT`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
        }
    }
}

/// One request: what to send, without the base URL or credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path below the base URL (`/api/v5/nodes/emqx@10.0.0.1`), its segments encoded.
    pub path: String,
    /// The query, in order (names and values unencoded).
    pub query: Vec<(&'static str, String)>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl Request {
    fn get(path: impl Into<String>) -> Self {
        Request { method: Method::Get, path: path.into(), query: Vec::new(), body: None }
    }

    fn param(mut self, name: &'static str, value: impl ToString) -> Self {
        self.query.push((name, value.to_string()));
        self
    }

    /// `METHOD path?query`, as errors name the request (never with credentials).
    pub fn endpoint(&self) -> String {
        self.to_string()
    }

    /// `path?query`, the request's target below the base URL (`/api/v5/metrics?aggregate=true`).
    pub fn target(&self) -> String {
        let mut target = self.path.clone();
        for (i, (k, v)) in self.query.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            target.push_str(k);
            target.push('=');
            target.push_str(&encode(v));
        }
        target
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method.as_str(), self.target())
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986) and `also`.
fn encode_but(s: &str, also: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || also.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query value, encoded.
fn encode(s: &str) -> String {
    encode_but(s, &[])
}

/// A path segment from outside (a node name, a listener id), checked and encoded.
fn segment(field: &'static str, value: &str) -> Result<String> {
    if value.is_empty() || value.len() > 1024 || value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must be 1 to 1024 bytes without control characters"));
    }
    // `@` and `:` may stand in a segment as they are (RFC 3986 `pchar`): node names and
    // listener ids keep their look (`emqx@10.0.0.1`, `tcp:default`).
    Ok(encode_but(value, b"@:"))
}

/// `GET /status` (no auth needed); with `json`, `?format=json`.
pub fn status(json: bool) -> Request {
    let r = Request::get("/status");
    if json { r.param("format", "json") } else { r }
}

/// `GET /api/v5/nodes`.
pub fn nodes() -> Request {
    Request::get(format!("{API_V5}/nodes"))
}

/// `GET /api/v5/nodes/{node}`.
///
/// # Errors
/// `InvalidInput` for an empty or overlong name.
pub fn node(name: &str) -> Result<Request> {
    Ok(Request::get(format!("{API_V5}/nodes/{}", segment("node", name)?)))
}

/// `GET /api/v5/stats`, per node, or with `aggregate` `?aggregate=true` (one object).
pub fn stats(aggregate: bool) -> Request {
    let r = Request::get(format!("{API_V5}/stats"));
    if aggregate { r.param("aggregate", true) } else { r }
}

/// `GET /api/v5/metrics`, per node (optionally one `node`), or with `aggregate` summed.
pub fn metrics(aggregate: bool, node: Option<&str>) -> Request {
    let mut r = Request::get(format!("{API_V5}/metrics"));
    if aggregate {
        r = r.param("aggregate", true);
    }
    if let Some(n) = node {
        r = r.param("node", n);
    }
    r
}

/// `GET /api/v5/monitor_current`, or `/monitor_current/nodes/{node}`.
///
/// # Errors
/// `InvalidInput` for a bad node name.
pub fn monitor_current(node: Option<&str>) -> Result<Request> {
    Ok(match node {
        None => Request::get(format!("{API_V5}/monitor_current")),
        Some(n) => Request::get(format!("{API_V5}/monitor_current/nodes/{}", segment("node", n)?)),
    })
}

/// `GET /api/v5/listeners`, optionally of one type (`tcp`).
pub fn listeners(kind: Option<&str>) -> Request {
    let r = Request::get(format!("{API_V5}/listeners"));
    match kind {
        Some(k) => r.param("type", k),
        None => r,
    }
}

/// `GET /api/v5/license`.
pub fn license() -> Request {
    Request::get(format!("{API_V5}/license"))
}

/// `GET /api/v5/license/setting`.
pub fn license_setting() -> Request {
    Request::get(format!("{API_V5}/license/setting"))
}

/// `PUT /api/v5/license/setting` with `setting` (EMQX merges it into the current one).
pub fn put_license_setting(setting: &super::LicenseSetting) -> Request {
    Request {
        method: Method::Put,
        path: format!("{API_V5}/license/setting"),
        query: Vec::new(),
        body: Some(serde_json::to_value(setting).unwrap_or(Value::Null)),
    }
}

/// A page of a paged list: `page` from 1, `limit` 1..=10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The page, from 1.
    pub page: u32,
    /// Its size, 1..=10000.
    pub limit: u32,
}

impl Default for PageRequest {
    /// Page 1 of 100, EMQX's default.
    fn default() -> Self {
        Self { page: 1, limit: 100 }
    }
}

impl PageRequest {
    /// Page `page` of `limit` items.
    ///
    /// # Errors
    /// `InvalidInput` for page 0 or a limit outside 1..=10000 (which EMQX refuses with 400
    /// `INVALID_PARAMETER`).
    pub fn new(page: u32, limit: u32) -> Result<Self> {
        if page == 0 {
            return Err(Error::invalid("page", "pages count from 1"));
        }
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(Error::invalid("limit", "must be 1..=10000"));
        }
        Ok(Self { page, limit })
    }

    fn apply(self, r: Request) -> Request {
        r.param("page", self.page).param("limit", self.limit)
    }
}

/// The connection state filter of `/clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnState {
    /// `connected`.
    Connected,
    /// `idle`.
    Idle,
    /// `disconnected`.
    Disconnected,
}

impl ConnState {
    /// The wire word.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnState::Connected => "connected",
            ConnState::Idle => "idle",
            ConnState::Disconnected => "disconnected",
        }
    }
}

/// Filters of `GET /api/v5/clients`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientQuery {
    /// Only clients on this node.
    pub node: Option<String>,
    /// Only this username.
    pub username: Option<String>,
    /// Only this address.
    pub ip_address: Option<String>,
    /// Only this connection state.
    pub conn_state: Option<ConnState>,
    /// Client ids containing this (fuzzy: EMQX then gives no `meta.count`).
    pub like_clientid: Option<String>,
    /// Usernames containing this.
    pub like_username: Option<String>,
}

impl ClientQuery {
    /// Every client.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only clients on `node`.
    #[must_use]
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Only `state`.
    #[must_use]
    pub fn conn_state(mut self, state: ConnState) -> Self {
        self.conn_state = Some(state);
        self
    }

    /// Client ids containing `part`.
    #[must_use]
    pub fn like_clientid(mut self, part: impl Into<String>) -> Self {
        self.like_clientid = Some(part.into());
        self
    }

    /// Usernames containing `part`.
    #[must_use]
    pub fn like_username(mut self, part: impl Into<String>) -> Self {
        self.like_username = Some(part.into());
        self
    }
}

/// `GET /api/v5/clients` with `query` and `page`.
pub fn clients(query: &ClientQuery, page: PageRequest) -> Request {
    let mut r = page.apply(Request::get(format!("{API_V5}/clients")));
    let pairs = [
        ("node", query.node.as_deref()),
        ("username", query.username.as_deref()),
        ("ip_address", query.ip_address.as_deref()),
        ("conn_state", query.conn_state.map(ConnState::as_str)),
        ("like_clientid", query.like_clientid.as_deref()),
        ("like_username", query.like_username.as_deref()),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            r = r.param(k, v);
        }
    }
    r
}

/// `GET /api/v5/alarms`: with `activated` `Some(true)` the active ones, `Some(false)` the
/// deactivated ones (history), `None` both.
pub fn alarms(activated: Option<bool>, page: PageRequest) -> Request {
    let r = Request::get(format!("{API_V5}/alarms"));
    let r = match activated {
        Some(a) => r.param("activated", a),
        None => r,
    };
    page.apply(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        assert_eq!(status(false).endpoint(), "GET /status");
        assert_eq!(status(true).endpoint(), "GET /status?format=json");
        assert_eq!(node("emqx@10.0.0.1").unwrap().path, "/api/v5/nodes/emqx@10.0.0.1");
        assert_eq!(node("a/../b").unwrap().path, "/api/v5/nodes/a%2F..%2Fb");
        assert!(node("").is_err());
        assert_eq!(stats(true).endpoint(), "GET /api/v5/stats?aggregate=true");
        assert_eq!(metrics(true, None).target(), "/api/v5/metrics?aggregate=true");
        assert_eq!(nodes().target(), "/api/v5/nodes");
        assert_eq!(metrics(false, Some("emqx@h")).endpoint(), "GET /api/v5/metrics?node=emqx%40h");
        assert_eq!(monitor_current(Some("emqx@h")).unwrap().path, "/api/v5/monitor_current/nodes/emqx@h");
        assert_eq!(listeners(Some("tcp")).endpoint(), "GET /api/v5/listeners?type=tcp");
        let q = ClientQuery::all().conn_state(ConnState::Connected).like_clientid("dev 1");
        assert_eq!(
            clients(&q, PageRequest::new(2, 50).unwrap()).endpoint(),
            "GET /api/v5/clients?page=2&limit=50&conn_state=connected&like_clientid=dev%201"
        );
        assert_eq!(alarms(Some(false), PageRequest::default()).endpoint(), "GET /api/v5/alarms?activated=false&page=1&limit=100");
        assert!(PageRequest::new(0, 10).is_err());
        assert!(PageRequest::new(1, 0).is_err());
        assert!(PageRequest::new(1, 10_001).is_err());
        let put = put_license_setting(&super::super::LicenseSetting::connection_limit(500));
        assert_eq!(put.method, Method::Put);
        assert_eq!(put.body, Some(serde_json::json!({"dynamic_max_connections": 500})));
    }
}
