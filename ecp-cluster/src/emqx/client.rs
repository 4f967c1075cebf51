//! [`EmqxClient`]: the thin transport that sends [`Request`]s to one cluster and decodes the
//! answers into the types of [`super::types`].

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use ecp_http::EgressPolicy;
use futures::Stream;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::request::{self, ClientQuery, PageRequest, Request};
use super::types::{
    Alarm, ClientInfo, ErrorBody, License, LicenseSetting, ListenerInfo, Metrics, MonitorCurrent, Node, NodeHealth, Page, Stats,
    StatusReport,
};
use crate::driver::ClusterApi;
use crate::error::{Error, Result};
use crate::model::ApiKey;

/// How the client talks to clusters: timeouts, the largest answer accepted, and where it may
/// connect. Build with [`ClientOptions::builder`]; `build()` validates. The default is what
/// `ClientOptions::builder().build()` gives: 10 s per request, 5 s to connect, 8 MiB answers, the
/// strict egress policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    timeout: Duration,
    connect_timeout: Duration,
    max_body: usize,
    egress: EgressPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_body: 8 << 20,
            egress: EgressPolicy::default(),
        }
    }
}

impl ClientOptions {
    /// A builder starting from the defaults: 10 s per request, 5 s to connect, answers of at most
    /// 8 MiB.
    pub fn builder() -> ClientOptionsBuilder {
        ClientOptionsBuilder(Self::default())
    }

    /// The time of each request, from connecting to the answer's last byte.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The time to connect (the request timeout bounds it too).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The largest answer body, bytes.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Where clusters' APIs may be reached.
    pub fn egress(&self) -> &EgressPolicy {
        &self.egress
    }

    /// An HTTP client with these options: ecp-http's one setup (rustls on aws-lc-rs, no
    /// redirects, no proxy from the environment, the egress policy).
    pub(crate) fn http_client(&self) -> Result<reqwest::Client> {
        ecp_http::ClientConfig::new(concat!("ecp-cluster/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout.min(self.timeout))
            .timeout(self.timeout)
            .egress(self.egress.clone())
            .build()
            .map_err(from_http)
    }
}

/// Builds [`ClientOptions`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientOptionsBuilder(ClientOptions);

impl ClientOptionsBuilder {
    /// The time of each request, from connecting to the answer's last byte (default 10 s; 1 ms to
    /// 1 h).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = timeout;
        self
    }

    /// The time to connect (default 5 s; 1 ms to 1 h; the request timeout bounds it too).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// The largest answer body, bytes (default 8 MiB; at least 1).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.0.max_body = bytes;
        self
    }

    /// Where clusters' APIs may be reached (default [`EgressPolicy::default`]: no loopback,
    /// link-local, metadata or other special addresses; private ranges allowed). Tests and
    /// single-machine demos opt in to loopback.
    pub fn egress(mut self, policy: EgressPolicy) -> Self {
        self.0.egress = policy;
        self
    }

    /// The options.
    ///
    /// # Errors
    /// `InvalidInput` on `timeout` or `connect_timeout` outside 1 ms..=1 h, on `max_body` when it
    /// is 0.
    pub fn build(self) -> Result<ClientOptions> {
        let o = self.0;
        ecp_http::check_timeout("timeout", o.timeout).map_err(from_http)?;
        ecp_http::check_timeout("connect_timeout", o.connect_timeout).map_err(from_http)?;
        if o.max_body == 0 {
            return Err(Error::invalid("max_body", "must be at least 1 byte"));
        }
        Ok(o)
    }
}

/// A client of one EMQX 5 cluster's REST API, authenticated with an API key as HTTP Basic
/// (user = key, password = secret) and sending `Accept: application/json` on every request.
/// Cheap to clone (the connection pool is shared). The secret never appears in its `Debug` or in
/// an error.
#[derive(Clone)]
pub struct EmqxClient {
    http: reqwest::Client,
    base: url::Url,
    key: ApiKey,
    max_body: usize,
    egress: EgressPolicy,
}

impl fmt::Debug for EmqxClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmqxClient")
            .field("base_url", &self.base.as_str())
            .field("key", &self.key)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// One answer: its status, `retry-after`, and body.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl EmqxClient {
    /// A client of the cluster at `api` with `options`.
    ///
    /// # Errors
    /// `InvalidInput` for a base URL that is not `http`/`https` with a host, or holds credentials,
    /// a query or a fragment; `Backend` if the HTTP client cannot be set up.
    pub fn new(api: &ClusterApi, options: &ClientOptions) -> Result<Self> {
        Self::with_http(api, options.http_client()?, options)
    }

    /// A client sharing `http`'s connection pool (made from `options`).
    pub(crate) fn with_http(api: &ClusterApi, http: reqwest::Client, options: &ClientOptions) -> Result<Self> {
        Ok(Self {
            http,
            base: check_base_url(&api.base_url)?,
            key: api.key.clone(),
            max_body: options.max_body,
            egress: options.egress.clone(),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, req: &Request) -> url::Url {
        let mut url = self.base.clone();
        let path = format!("{}{}", self.base.path().trim_end_matches('/'), req.path);
        url.set_path(&path);
        if !req.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &req.query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    async fn send(&self, req: &Request) -> Result<Answer> {
        let method = match req.method {
            request::Method::Get => reqwest::Method::GET,
            request::Method::Put => reqwest::Method::PUT,
        };
        let url = self.url(req);
        // An IP host (in any spelling) is judged before connecting; names on resolution, and
        // each connection's peer once more by the client.
        self.egress.check_url(&url).map_err(|e| Error::Transport { endpoint: req.endpoint(), retryable: false, source: Box::new(e) })?;
        let mut builder = self
            .http
            .request(method, url)
            .basic_auth(&self.key.key, Some(self.key.secret.expose_secret()))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = &req.body {
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(serde_json::to_vec(body).unwrap_or_default());
        }
        let mut response = builder.send().await.map_err(|e| transport(req, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = ecp_http::read_limited(&mut response, self.max_body).await.map_err(|e| match e {
            ecp_http::Error::TooLarge { size, limit } => Error::TooLarge { endpoint: req.endpoint(), size, limit },
            ecp_http::Error::Transport { retryable, source } => {
                Error::Transport { endpoint: req.endpoint(), retryable, source: Box::new(source) }
            }
            other => Error::Transport { endpoint: req.endpoint(), retryable: false, source: Box::new(other) },
        })?;
        Ok(Answer { status, retry_after, body })
    }

    /// The typed error of a non-2xx answer.
    fn refusal(&self, req: &Request, answer: &Answer) -> Error {
        let ErrorBody { code, message } = ErrorBody::parse(&answer.body);
        let (code, message) = (code.map(|c| self.scrub(c)), message.map(|m| self.scrub(m)));
        match answer.status {
            401 | 403 => Error::Unauthorized { endpoint: req.endpoint(), status: answer.status, code, message },
            status => Error::Api { endpoint: req.endpoint(), status, code, message },
        }
    }

    /// `text` without the secret or the Basic credentials, should a server echo them.
    fn scrub(&self, text: String) -> String {
        let secret = self.key.secret.expose_secret();
        let basic = basic_credentials(&self.key.key, secret);
        if text.contains(secret) || text.contains(&basic) { text.replace(&basic, "[REDACTED]").replace(secret, "[REDACTED]") } else { text }
    }

    fn decode<T: DeserializeOwned>(&self, req: &Request, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| Error::Decode { endpoint: req.endpoint(), reason: self.scrub(e.to_string()) })
    }

    /// A body read for monitoring (the readings of [`super::types`]): `Decode` if it is not JSON,
    /// or if a reading refuses its overall shape; a malformed field never fails it.
    fn decode_reading<T: DeserializeOwned>(&self, req: &Request, body: &[u8]) -> Result<T> {
        let decode = |reason: String| Error::Decode { endpoint: req.endpoint(), reason: self.scrub(reason) };
        let value = serde_json::from_slice::<serde_json::Value>(body).map_err(|e| decode(format!("not JSON: {e}")))?;
        T::deserialize(value).map_err(|e| decode(e.to_string()))
    }

    /// Sends `req` and decodes a 2xx answer as JSON (whatever its content type); `None` for a 404
    /// when `absent_on_404`.
    async fn call<T: DeserializeOwned>(&self, req: &Request, absent_on_404: bool) -> Result<Option<T>> {
        self.exchange(req, absent_on_404, |body| self.decode(req, body)).await
    }

    /// Sends `req` and gives a 2xx answer's body to `decode`; `None` for a 404 when
    /// `absent_on_404`, the typed error of any other answer.
    async fn exchange<T>(&self, req: &Request, absent_on_404: bool, decode: impl FnOnce(&[u8]) -> Result<T>) -> Result<Option<T>> {
        let answer = self.send(req).await?;
        self.answered(req, &answer, absent_on_404, decode)
    }

    /// Reads `answer` (no I/O): a 2xx body given to `decode`; `None` for a 404 when
    /// `absent_on_404`, the typed error of any other answer.
    fn answered<T>(
        &self,
        req: &Request,
        answer: &Answer,
        absent_on_404: bool,
        decode: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        match answer.status {
            200..=299 => decode(&answer.body).map(Some),
            404 if absent_on_404 => Ok(None),
            _ => Err(self.refusal(req, answer)),
        }
    }

    async fn get<T: DeserializeOwned>(&self, req: Request) -> Result<T> {
        match self.call(&req, false).await? {
            Some(t) => Ok(t),
            None => Err(Error::Decode { endpoint: req.endpoint(), reason: "no answer".into() }),
        }
    }

    /// `req`'s answer read for monitoring, as a reading of [`super::types`] (the poller's view):
    /// a malformed field costs only itself. The errors of [`nodes`](Self::nodes); a body that is
    /// not JSON is `Decode` with a reason starting `not JSON: `.
    pub(crate) async fn read<T: DeserializeOwned>(&self, req: &Request) -> Result<T> {
        match self.exchange(req, false, |body| self.decode_reading(req, body)).await? {
            Some(t) => Ok(t),
            None => Err(Error::Decode { endpoint: req.endpoint(), reason: "no answer".into() }),
        }
    }

    /// As [`read`](Self::read), but `None` for a 404 (`/api/v5/license` on open source).
    pub(crate) async fn read_optional<T: DeserializeOwned>(&self, req: &Request) -> Result<Option<T>> {
        self.exchange(req, true, |body| self.decode_reading(req, body)).await
    }

    /// `GET /status?format=json` (the text form is read too): the answering node's health.
    ///
    /// # Errors
    /// `Transport`, `TooLarge`; `Decode` for a 200 or 503 body that is neither form (not EMQX);
    /// `Api`/`Unauthorized` for other statuses.
    pub async fn status(&self) -> Result<NodeHealth> {
        let req = request::status(true);
        let answer = self.send(&req).await?;
        self.health(&req, &answer)
    }

    /// Reads the answer of `/status` (no I/O).
    fn health(&self, req: &Request, answer: &Answer) -> Result<NodeHealth> {
        let report = StatusReport::parse(&answer.body);
        match answer.status {
            200..=299 => report
                .map(NodeHealth::Ready)
                .ok_or_else(|| Error::Decode { endpoint: req.endpoint(), reason: "not an EMQX status report".into() }),
            503 => Ok(NodeHealth::NotReady { retry_after: answer.retry_after, report }),
            _ => Err(self.refusal(req, answer)),
        }
    }

    /// `GET /api/v5/nodes`.
    ///
    /// # Errors
    /// `Transport`, `TooLarge`, `Decode`, `Api`, `Unauthorized`.
    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.get(request::nodes()).await
    }

    /// `GET /api/v5/nodes/{node}` (404 `NOT_FOUND` unless the node runs).
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes); `InvalidInput` for a bad name.
    pub async fn node(&self, name: &str) -> Result<Node> {
        self.get(request::node(name)?).await
    }

    /// `GET /api/v5/stats`, one object per node.
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes).
    pub async fn stats(&self) -> Result<Vec<Stats>> {
        self.get(request::stats(false)).await
    }

    /// `GET /api/v5/stats?aggregate=true`: the cluster's.
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes).
    pub async fn stats_aggregate(&self) -> Result<Stats> {
        self.get(request::stats(true)).await
    }

    /// `GET /api/v5/metrics`, one object per node.
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes).
    pub async fn metrics(&self) -> Result<Vec<Metrics>> {
        self.get(request::metrics(false, None)).await
    }

    /// `GET /api/v5/metrics?aggregate=true`: summed over the nodes.
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes).
    pub async fn metrics_aggregate(&self) -> Result<Metrics> {
        self.get(request::metrics(true, None)).await
    }

    /// `GET /api/v5/monitor_current` (or of one node).
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes); `InvalidInput` for a bad node name.
    pub async fn monitor_current(&self, node: Option<&str>) -> Result<MonitorCurrent> {
        self.get(request::monitor_current(node)?).await
    }

    /// `GET /api/v5/listeners`.
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes).
    pub async fn listeners(&self) -> Result<Vec<ListenerInfo>> {
        self.get(request::listeners(None)).await
    }

    /// One page of `GET /api/v5/clients`.
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes) (400 `INVALID_PARAMETER` for a bad page, 500 `NODE_DOWN` for a
    /// bad node are `Api`).
    pub async fn clients(&self, query: &ClientQuery, page: PageRequest) -> Result<Page<ClientInfo>> {
        self.get(request::clients(query, page)).await
    }

    /// Every page of `GET /api/v5/clients` from page 1 with `limit` per page, stopping after the
    /// page whose `hasnext` is false, an empty page, or `max_pages` pages (the last page's
    /// `meta.hasnext` then says whether more remain). An error ends the stream.
    pub fn client_pages<'a>(
        &'a self,
        query: &'a ClientQuery,
        limit: u32,
        max_pages: u32,
    ) -> impl Stream<Item = Result<Page<ClientInfo>>> + Send + 'a {
        self.pages(limit, max_pages, move |p| request::clients(query, p))
    }

    /// One page of `GET /api/v5/alarms` (`activated`: see [`request::alarms`]).
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes).
    pub async fn alarms(&self, activated: Option<bool>, page: PageRequest) -> Result<Page<Alarm>> {
        self.get(request::alarms(activated, page)).await
    }

    /// Every page of `GET /api/v5/alarms`, as [`client_pages`](Self::client_pages).
    pub fn alarm_pages(&self, activated: Option<bool>, limit: u32, max_pages: u32) -> impl Stream<Item = Result<Page<Alarm>>> + Send + '_ {
        self.pages(limit, max_pages, move |p| request::alarms(activated, p))
    }

    fn pages<'a, T, F>(&'a self, limit: u32, max_pages: u32, make: F) -> impl Stream<Item = Result<Page<T>>> + Send + 'a
    where
        T: DeserializeOwned + Send + 'a,
        F: Fn(PageRequest) -> Request + Send + Sync + 'a,
    {
        // `Some(page)` to fetch next, `None` when done.
        let first = PageRequest::new(1, limit).map(|p| p.page);
        futures::stream::unfold((first.map(Some), make), move |(next, make)| async move {
            let page = match next {
                Ok(Some(page)) if page <= max_pages => page,
                Ok(_) => return None,
                Err(e) => return Some((Err(e), (Ok(None), make))),
            };
            let req = make(PageRequest { page, limit });
            match self.call::<Page<T>>(&req, false).await {
                Ok(Some(p)) => {
                    let more = p.meta.hasnext && !p.data.is_empty();
                    Some((Ok(p), (Ok(more.then_some(page + 1)), make)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), (Ok(None), make))),
            }
        })
    }

    /// `GET /api/v5/license`; `None` on open source (404).
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes).
    pub async fn license(&self) -> Result<Option<License>> {
        self.call(&request::license(), true).await
    }

    /// `GET /api/v5/license/setting`; `None` where there is none (404: open source, before 5.7).
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes).
    pub async fn license_setting(&self) -> Result<Option<LicenseSetting>> {
        self.call(&request::license_setting(), true).await
    }

    /// `PUT /api/v5/license/setting`: the setting after the change.
    ///
    /// # Errors
    /// As [`nodes`](Self::nodes) (400 `BAD_REQUEST` for a bad setting is `Api`).
    pub async fn put_license_setting(&self, setting: &LicenseSetting) -> Result<LicenseSetting> {
        self.get(request::put_license_setting(setting)).await
    }

    /// Sets the connections the cluster takes from its license (the product's "Update Connect
    /// Limit", EMQX Enterprise 5.7+ with a business-critical license): reads the setting, puts it
    /// back with `dynamic_max_connections` changed (so the watermarks stay), and checks that EMQX
    /// kept it.
    ///
    /// # Errors
    /// `Incompatible` when the cluster has no license setting (open source, before 5.7) or did not
    /// take the limit (EMQX drops it for licenses that are not business-critical); the errors of
    /// [`nodes`](Self::nodes).
    pub async fn set_connection_limit(&self, max_connections: u64) -> Result<LicenseSetting> {
        let req = request::license_setting();
        let Some(current) = self.license_setting().await? else {
            return Err(Error::Incompatible {
                endpoint: req.endpoint(),
                reason: "no license setting: the connection limit needs EMQX Enterprise 5.7 or later".into(),
            });
        };
        let wanted = LicenseSetting { dynamic_max_connections: Some(max_connections), ..current };
        let put = request::put_license_setting(&wanted);
        let after = self.get::<LicenseSetting>(put.clone()).await?;
        if after.dynamic_max_connections != Some(max_connections) {
            return Err(Error::Incompatible {
                endpoint: put.endpoint(),
                reason: "the cluster kept no dynamic connection limit: its license is not business-critical".into(),
            });
        }
        Ok(after)
    }
}

/// The `user:password` of HTTP Basic as it goes on the wire (base64, standard alphabet, padded),
/// to scrub from what a server answers.
fn basic_credentials(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn transport(req: &Request, e: reqwest::Error) -> Error {
    Error::Transport { endpoint: req.endpoint(), retryable: ecp_http::is_retryable(&e), source: Box::new(e.without_url()) }
}

/// An error of ecp-http checking a setting: `InvalidInput` on the same field, or `Backend` when
/// the HTTP client cannot be set up.
fn from_http(e: ecp_http::Error) -> Error {
    match e {
        ecp_http::Error::InvalidInput { field, reason } if field != "http_client" => Error::Core(ecp_core::Error::invalid(field, reason)),
        other => Error::Backend { backend: "existing", operation: "http client", status: None, source: Box::new(other) },
    }
}

/// Checks a base URL with ecp-http (`http`/`https`, a host, no credentials, query or fragment; a
/// path prefix behind a proxy is kept), forgiving blanks around it.
fn check_base_url(raw: &str) -> Result<url::Url> {
    ecp_http::check_base_url(raw.trim()).map_err(from_http)
}

#[cfg(test)]
pub(super) mod props;

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn basic_credentials_are_base64() {
        // RFC 7617's example.
        assert_eq!(basic_credentials("Aladdin", "open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_credentials("a", "b"), "YTpi");
        assert_eq!(basic_credentials("ab", "c"), "YWI6Yw==");
    }

    #[test]
    fn base_urls() {
        let key = ApiKey::new("k", SecretString::from("secret")).unwrap();
        let api = |u: &str| ClusterApi { base_url: u.into(), key: key.clone() };
        let c = EmqxClient::new(&api("http://10.0.0.1:18083/"), &ClientOptions::default()).unwrap();
        assert_eq!(c.url(&request::nodes()).as_str(), "http://10.0.0.1:18083/api/v5/nodes");
        let c = EmqxClient::new(&api("https://proxy/emqx/a/"), &ClientOptions::default()).unwrap();
        assert_eq!(c.url(&request::node("emqx@h").unwrap()).as_str(), "https://proxy/emqx/a/api/v5/nodes/emqx@h");
        assert_eq!(c.url(&request::stats(true)).as_str(), "https://proxy/emqx/a/api/v5/stats?aggregate=true");
        for bad in ["ftp://h", "http://u:p@h", "http://h/?q=1", "http://h/#f", "h:18083", ""] {
            assert!(EmqxClient::new(&api(bad), &ClientOptions::default()).is_err(), "{bad}");
        }
        assert_eq!(ClientOptions::builder().build().unwrap(), ClientOptions::default());
        let field = |b: ClientOptionsBuilder| match b.build() {
            Err(Error::Core(ecp_core::Error::InvalidInput { field, .. })) => field.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(ClientOptions::builder().max_body(0)), "max_body");
        assert_eq!(field(ClientOptions::builder().timeout(Duration::ZERO)), "timeout");
        assert_eq!(field(ClientOptions::builder().connect_timeout(Duration::from_secs(7200))), "connect_timeout");
        let o = ClientOptions::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(1))
            .max_body(1024)
            .build()
            .unwrap();
        assert_eq!((o.timeout(), o.connect_timeout(), o.max_body()), (Duration::from_secs(3), Duration::from_secs(1), 1024));
    }
}
