//! The agent backend (feature `mqtt`): [`TunnelTransport`] carries the product adapters' HTTP
//! requests through an edge agent, and [`AgentDriver`] manages services reached that way with the
//! same logic as the direct driver, except configuration, which goes through the agent's desired
//! state so that an agent that was away converges when it returns.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ecp_core::edge::{AgentId, EdgeService};
use ecp_core::task::IdempotencyKey;
use serde_json::Value;

use ecp_agent_proto::proto::{self, Command, ErrorCode, HttpRequest, HttpResponse, Reply};
use ecp_edge_api::{EdgeTransport, Error as ApiError, ServiceClient};

use super::hub::AgentHub;
use crate::driver::{Capabilities, EdgeDriver, EdgeInfo, EdgeOperation, Health};
use crate::error::{Error, Result};
use crate::managed::Clients;
use crate::template::ConfigChange;

/// The JSON and base64 overhead of a tunnelled request or answer, beyond its body.
const ENVELOPE_OVERHEAD: usize = 4096;

/// An [`EdgeTransport`] that sends each request as an `http` command to an edge agent, which
/// calls the local service at `target` (`host:port`, on the agent's allow-list) and returns its
/// answer. Bodies travel base64-encoded in one message: a request or answer whose encoding would
/// exceed the broker payload limit is refused with `TooLarge` (about 190 KiB of body with the
/// default 256 KiB limit).
#[derive(Debug, Clone)]
pub struct TunnelTransport {
    hub: AgentHub,
    agent: AgentId,
    target: String,
    base_path: String,
    timeout: Option<Duration>,
    max_payload: usize,
}

impl TunnelTransport {
    /// Requests to the service at `endpoint` (its URL as the agent sees it) through `agent`.
    ///
    /// # Errors
    /// `InvalidInput` for an endpoint that is not an http(s) URL with a host.
    pub fn new(hub: AgentHub, agent: AgentId, endpoint: &str, max_payload: usize) -> Result<Self> {
        let (target, base_path) = split_endpoint(endpoint)?;
        Ok(TunnelTransport { hub, agent, target, base_path, timeout: None, max_payload })
    }

    /// Waits `timeout` for each answer instead of the hub's default.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The local service, as `host:port`.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// The `host:port` of an http(s) endpoint (the scheme's port when none is given) and its path
/// without a trailing `/`.
pub(crate) fn split_endpoint(endpoint: &str) -> Result<(String, String)> {
    let bad = |reason: &'static str| Error::Core(ecp_core::Error::invalid("endpoint", reason));
    let url = url::Url::parse(endpoint).map_err(|_| bad("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    let host = url.host_str().ok_or_else(|| bad("has no host"))?;
    let port = url.port_or_known_default().ok_or_else(|| bad("has no port"))?;
    Ok((format!("{host}:{port}"), url.path().trim_end_matches('/').to_owned()))
}

#[async_trait]
impl EdgeTransport for TunnelTransport {
    async fn send(&self, request: http::Request<Bytes>) -> ecp_edge_api::Result<http::Response<Bytes>> {
        let endpoint = format!("{} {}", request.method(), request.uri().path());
        let (parts, body) = request.into_parts();
        let encoded = body.len().div_ceil(3) * 4 + ENVELOPE_OVERHEAD;
        if encoded > self.max_payload {
            return Err(ApiError::TooLarge {
                endpoint,
                size: body.len(),
                limit: self.max_payload.saturating_sub(ENVELOPE_OVERHEAD) / 4 * 3,
            });
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let headers = parts
            .headers
            .iter()
            .filter(|(n, _)| *n != http::header::HOST)
            .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), v.to_owned())))
            .collect();
        let command = Command::Http(HttpRequest {
            target: self.target.clone(),
            method: parts.method.as_str().to_owned(),
            path: format!("{}{path}", self.base_path),
            headers,
            body: (!body.is_empty()).then(|| proto::encode_body(&body)),
        });
        let reply = self.hub.request(&self.agent, command, self.timeout).await.map_err(|e| as_transport_error(&endpoint, e))?;
        let result = match reply {
            Reply::Ok { result } => result,
            Reply::Error { code, message } => return Err(reply_error(&endpoint, &self.agent, code, message, self.max_payload)),
        };
        let answer: HttpResponse = serde_json::from_value(result)
            .map_err(|e| ApiError::Decode { endpoint: endpoint.clone(), reason: format!("agent answer: {e}") })?;
        let body = proto::decode_body(&answer.body)
            .map_err(|e| ApiError::Decode { endpoint: endpoint.clone(), reason: format!("agent body: {e}") })?;
        let mut response = http::Response::builder().status(answer.status);
        for (name, value) in &answer.headers {
            response = response.header(name, value);
        }
        response.body(Bytes::from(body)).map_err(|e| ApiError::Decode { endpoint, reason: format!("agent answer: {e}") })
    }

    fn describe(&self) -> String {
        format!("agent {} → {}{}", self.agent, self.target, self.base_path)
    }
}

/// A hub error as the tunnel's: the hub's transport failures and size refusals name the tunnelled
/// call; anything else (the store, an unknown agent) is a transport failure carrying it.
fn as_transport_error(endpoint: &str, e: Error) -> ApiError {
    let endpoint = endpoint.to_owned();
    match e {
        Error::Service(ApiError::Transport { retryable, source, .. }) => ApiError::Transport { endpoint, retryable, source },
        Error::Service(ApiError::TooLarge { size, limit, .. }) => ApiError::TooLarge { endpoint, size, limit },
        Error::Service(other) => other,
        other => ApiError::Transport { endpoint, retryable: other.is_retryable(), source: Box::new(other) },
    }
}

fn reply_error(endpoint: &str, agent: &AgentId, code: ErrorCode, message: String, limit: usize) -> ApiError {
    let endpoint = endpoint.to_owned();
    match code {
        ErrorCode::TooLarge => ApiError::TooLarge { endpoint, size: limit, limit },
        ErrorCode::Unreachable => ApiError::Transport { endpoint, retryable: true, source: format!("agent {agent}: {message}").into() },
        ErrorCode::Unsupported => ApiError::Unsupported { operation: "agent command", backend: "agent" },
        ErrorCode::Forbidden => {
            ApiError::Api { endpoint, status: 403, product: None, code: None, message: Some(format!("agent {agent} refused: {message}")) }
        }
        _ => ApiError::Api { endpoint, status: 502, product: None, code: None, message: Some(format!("agent {agent}: {message}")) },
    }
}

/// The driver of services reached through edge agents; see the [module docs](self).
///
/// | operation | how |
/// |---|---|
/// | probe, info sync | the direct driver's calls, tunnelled through the agent |
/// | configuration | a desired item of the agent (`stream:s`, `rule:r`, `node:n`, `nanomq:config`, `call:METHOD path`), applied by the agent at most once per version |
/// | restart | the agent's `restart` command, where its configuration allows it |
#[derive(Debug)]
pub struct AgentDriver {
    hub: AgentHub,
    clients: Clients,
    apply_timeout: Duration,
    max_payload: usize,
}

impl AgentDriver {
    /// A driver over `hub`; configuration deliveries wait `apply_timeout` for the agent's report.
    pub fn new(hub: AgentHub, apply_timeout: Duration, max_payload: usize) -> Self {
        AgentDriver { hub, clients: Clients::default(), apply_timeout, max_payload }
    }

    fn agent_of(service: &EdgeService) -> Result<&AgentId> {
        service.agent().ok_or_else(|| Error::Core(ecp_core::Error::invalid("service", "is not reached through an agent")))
    }

    fn client(&self, service: &EdgeService) -> Result<ServiceClient> {
        let agent = Self::agent_of(service)?.clone();
        self.clients.get(service, || {
            Ok(Arc::new(TunnelTransport::new(self.hub.clone(), agent, service.endpoint(), self.max_payload)?) as Arc<dyn EdgeTransport>)
        })
    }
}

/// The longest desired-state key the store takes, in bytes.
const MAX_KEY_BYTES: usize = 200;

/// The desired-state key of a change to the local service at `target` (`host:port`): the service
/// and what the change configures (`127.0.0.1:8085 stream:demo`), so a newer change of the same
/// thing replaces the older one, and the same change to two services of one agent are two items.
/// At most 200 bytes: a longer key keeps its start (cut at a character boundary) and ends in `#`
/// and 16 hex digits of the SHA-256 of the whole key, so two long names with one prefix stay two
/// items.
pub fn desired_key(target: &str, change: &ConfigChange) -> String {
    use sha2::Digest as _;
    let what = match change {
        ConfigChange::NeuronSouthDevice { node, .. } => format!("node:{node}"),
        ConfigChange::EkuiperStream { name, .. } => format!("stream:{name}"),
        ConfigChange::EkuiperRule { id, .. } => format!("rule:{id}"),
        ConfigChange::NanoMqConfig { .. } => "nanomq:config".to_owned(),
        ConfigChange::RawApiCall { method, path, .. } => format!("call:{} {path}", method.to_uppercase()),
        other => other.kind().as_str().to_owned(),
    };
    let mut key = format!("{target} {what}");
    if key.len() > MAX_KEY_BYTES {
        let digest = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8]);
        let mut end = MAX_KEY_BYTES - digest.len() - 1;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key.truncate(end);
        key.push('#');
        key.push_str(&digest);
    }
    key
}

#[async_trait]
impl EdgeDriver for AgentDriver {
    fn backend(&self) -> &'static str {
        "agent"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::managed();
        c.insert(EdgeOperation::Restart);
        c
    }

    fn forget(&self, service: &EdgeService) {
        self.clients.forget(service.id());
    }

    async fn probe(&self, service: &EdgeService) -> Result<Health> {
        Ok(self.client(service)?.probe().await?)
    }

    async fn sync_info(&self, service: &EdgeService) -> Result<EdgeInfo> {
        Ok(self.client(service)?.sync_info().await?)
    }

    async fn apply(&self, service: &EdgeService, change: &ConfigChange, key: &IdempotencyKey) -> Result<Value> {
        let _ = key; // The agent deduplicates by item key and version.
        change.validate()?;
        let agent = Self::agent_of(service)?;
        let (target, _) = split_endpoint(service.endpoint())?;
        let item = desired_key(&target, change);
        let applied = self.hub.deliver(agent, &item, &target, change, self.apply_timeout).await?;
        if applied.ok {
            Ok(applied.detail)
        } else {
            let message = match &applied.detail {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Err(Error::Service(ApiError::Api {
                endpoint: format!("agent {agent}: apply {item} v{}", applied.version),
                status: 422,
                product: None,
                code: None,
                message: Some(message),
            }))
        }
    }

    async fn withdraw(&self, service: &EdgeService, change: &ConfigChange) -> Result<()> {
        let agent = Self::agent_of(service)?;
        let (target, _) = split_endpoint(service.endpoint())?;
        let item = desired_key(&target, change);
        // Applied already: nothing waits. (The agent may apply it between this read and the
        // withdrawal; it then forgets the item, and what it did stays.)
        let waiting = self.hub.desired(agent).await?.into_iter().any(|r| r.key == item && !r.converged());
        if waiting {
            self.hub.withdraw(agent, &[item]).await?;
        }
        Ok(())
    }

    async fn restart(&self, service: &EdgeService) -> Result<()> {
        let agent = Self::agent_of(service)?;
        let (target, _) = split_endpoint(service.endpoint())?;
        match self.hub.request(agent, Command::Restart { target }, None).await? {
            Reply::Ok { .. } => Ok(()),
            Reply::Error { code, message } => Err(reply_error("restart", agent, code, message, self.max_payload).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> ConfigChange {
        ConfigChange::EkuiperStream { name: name.into(), sql: "CREATE STREAM s () WITH (TYPE=\"memory\")".into() }
    }

    #[test]
    fn keys_name_the_service_and_what_changes() {
        assert_eq!(desired_key("127.0.0.1:8085", &stream("demo")), "127.0.0.1:8085 stream:demo");
        // Two services of one agent get two items; a newer change of one thing replaces the older.
        assert_ne!(desired_key("127.0.0.1:8085", &stream("demo")), desired_key("127.0.0.1:9085", &stream("demo")));
        assert_eq!(desired_key("h:1", &stream("demo")), desired_key("h:1", &stream("demo")));
    }

    #[test]
    fn long_keys_are_cut_to_200_bytes_at_a_character_boundary_and_stay_apart() {
        for name in ["s".repeat(300), "流".repeat(100), format!("a{}", "é".repeat(150))] {
            let key = desired_key("127.0.0.1:8085", &stream(&name));
            assert!(key.len() <= 200 && key.len() >= 197, "{} bytes", key.len());
            assert!(key.starts_with("127.0.0.1:8085 stream:"));
            assert_eq!(key, desired_key("127.0.0.1:8085", &stream(&name)), "the same change, the same key");
            // Another long name with the same first 200 bytes is another item.
            let other = desired_key("127.0.0.1:8085", &stream(&format!("{name}-2")));
            assert_ne!(key, other);
            assert_eq!(key.len(), other.len());
        }
        let short = desired_key("127.0.0.1:8085", &stream("demo"));
        assert_eq!(short, "127.0.0.1:8085 stream:demo", "short keys are as they were");
    }
}
