//! NeuronEX 3.x (`:8085`): its own login, version and system endpoints, and the Neuron and eKuiper
//! APIs it proxies under `/api/neuron/*` and `/api/ekuiper/*` with the same bodies and codes, all
//! behind one `Bearer` token.
//!
//! Wire quirks kept (reference §0.5, §3, §7): the login body says **`password`** (Neuron's says
//! `pass`) and answers `{"token","role"}`; a bad or expired token is 401 (its body is not
//! documented; Neuron-style `{"error":N}` codes are recognised too).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ecp_core::edge::Credentials;
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::call::{self, ApiCall, Body, Uri, int_field};
use super::ekuiper::{EkuiperApi, EkuiperClient};
use super::neuron::{NeuronApi, NeuronClient};
use super::session::{Auth, LoginReply, LoginToken, Session};
use crate::error::{Error, Result};
use crate::transport::EdgeTransport;

/// Where NeuronEX proxies Neuron's `/api/v2`.
pub const NEURON_PREFIX: &str = "/api/neuron";
/// Where NeuronEX proxies eKuiper.
pub const EKUIPER_PREFIX: &str = "/api/ekuiper";

/// Whether a NeuronEX answer refuses the token: any 401, or Neuron's token codes from the proxied
/// Neuron.
pub(crate) fn token_refused(response: &http::Response<Bytes>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED || super::neuron::token_refused(response)
}

/// `GET /api/version`: `{"version":"3.1.0-beta.3"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Version {
    /// The version.
    pub version: String,
}

/// `GET /api/system`: strings describing the host and the two services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SystemInfo {
    /// Neuron's status (`running` ...).
    #[serde(default, rename = "neuronStatus", deserialize_with = "call::lenient::opt_string")]
    pub neuron_status: Option<String>,
    /// eKuiper's status.
    #[serde(default, rename = "ekuiperStatus", deserialize_with = "call::lenient::opt_string")]
    pub ekuiper_status: Option<String>,
    /// The OS.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub os: Option<String>,
    /// The CPU architecture.
    #[serde(default, deserialize_with = "call::lenient::opt_string")]
    pub arch: Option<String>,
    /// Every other key.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The JSON of a NeuronEX answer, once its error forms are ruled out.
fn answer(endpoint: &str, response: &http::Response<Bytes>) -> Result<Value> {
    let status = response.status();
    let body = response.body();
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        tracing::debug!(endpoint, status = status.as_u16(), "neuronex refused the credentials");
        return Err(Error::Unauthorized { endpoint: endpoint.to_owned() });
    }
    let value = serde_json::from_slice::<Value>(body).ok();
    let code = value.as_ref().and_then(|v| int_field(v, "error").or_else(|| int_field(v, "code")));
    if !status.is_success() || code.is_some_and(|c| c != 0) {
        if value.is_none() && call::is_html(response) {
            return Err(call::html_error(endpoint, status, "NeuronEX"));
        }
        let message = value.as_ref().and_then(|v| v.get("message")?.as_str().map(call::excerpt));
        let message = message.or_else(|| code.and_then(super::neuron::error_text).map(str::to_owned)).or_else(|| call::body_excerpt(body));
        return Err(Error::Api { endpoint: endpoint.to_owned(), status: status.as_u16(), code, message });
    }
    match value {
        Some(v) => Ok(v),
        None if call::is_html(response) => Err(call::html_error(endpoint, status, "NeuronEX")),
        None => Err(call::decode_error(endpoint, "not JSON")),
    }
}

fn parse_json<T: DeserializeOwned>(endpoint: &str, response: &http::Response<Bytes>) -> Result<T> {
    call::from_value(endpoint, answer(endpoint, response)?)
}

fn parse_login(endpoint: &str, response: &http::Response<Bytes>) -> Result<LoginToken> {
    parse_json::<LoginReply>(endpoint, response).map(LoginToken::from)
}

/// Builds NeuronEX's own requests, without I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeuronExApi;

impl NeuronExApi {
    /// `POST /api/login {"name","password"}` → `{"token","role"}`.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) for an empty user name.
    pub fn login(&self, username: &str, password: &SecretString) -> Result<ApiCall<LoginToken>> {
        call::check_name("username", username)?;
        let body = Body::json(&serde_json::json!({ "name": username, "password": password.expose_secret() }))?;
        ApiCall::new(Method::POST, Uri::new("/api/login", ""), body, false, parse_login)
    }

    /// `GET /api/version` → `{"version"}`.
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn version(&self) -> Result<ApiCall<Version>> {
        ApiCall::new(Method::GET, Uri::new("/api/version", ""), Body::NONE, true, parse_json::<Version>)
    }

    /// `GET /api/system` → [`SystemInfo`].
    ///
    /// # Errors
    /// None in practice (the path is fixed).
    pub fn system(&self) -> Result<ApiCall<SystemInfo>> {
        ApiCall::new(Method::GET, Uri::new("/api/system", ""), Body::NONE, true, parse_json::<SystemInfo>)
    }
}

/// A client of one NeuronEX, and through it of its Neuron and eKuiper. One login (the NeuronEX
/// `Bearer` token, cached and renewed once when refused) serves all three. Cheap to clone.
#[derive(Clone)]
pub struct NeuronExClient {
    session: Arc<Session>,
}

impl fmt::Debug for NeuronExClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NeuronExClient").field("session", &self.session).finish()
    }
}

impl NeuronExClient {
    /// A client of NeuronEX. `Credentials::Basic` logs in with `{"name","password"}` (default
    /// `admin`/`0000`) when a token is first needed; `Credentials::Token` is sent as a fixed
    /// `Bearer` token.
    ///
    /// # Errors
    /// [`Error::Core`] (invalid input) when a token holds characters not allowed in a header.
    pub fn new(transport: Arc<dyn EdgeTransport>, credentials: Credentials) -> Result<Self> {
        let auth = Auth::login_or_bearer(&credentials, |u, p| NeuronExApi.login(u, p))?;
        Ok(NeuronExClient { session: Arc::new(Session::new(transport, auth, token_refused)) })
    }

    /// The Neuron behind NeuronEX (`/api/neuron/*`), sharing this client's token.
    pub fn neuron(&self) -> NeuronClient {
        NeuronClient::from_session(self.session.clone(), NeuronApi::proxied(NEURON_PREFIX))
    }

    /// The eKuiper behind NeuronEX (`/api/ekuiper/*`), sharing this client's token.
    pub fn ekuiper(&self) -> EkuiperClient {
        EkuiperClient::from_session(self.session.clone(), EkuiperApi::proxied(EKUIPER_PREFIX))
    }

    /// Sends any call (NeuronEX's, or a proxied Neuron or eKuiper call), with the token.
    ///
    /// # Errors
    /// What the call's parser says, [`Error::Unauthorized`] when the token is refused after one
    /// renewal, and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }

    /// Logs in now (again, if a token is cached); does nothing without a login.
    ///
    /// # Errors
    /// [`Error::Unauthorized`] for bad credentials, the transport's errors.
    pub async fn login(&self) -> Result<()> {
        self.session.login().await
    }

    /// NeuronEX's version: the health probe (it also checks the credentials).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn version(&self) -> Result<Version> {
        self.execute(NeuronExApi.version()?).await
    }

    /// Host and service status.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn system(&self) -> Result<SystemInfo> {
        self.execute(NeuronExApi.system()?).await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::api::testing::{ParseFn, arb_body, arb_json, response, shaped};

    fn all_parsers() -> Vec<ParseFn> {
        let secret = SecretString::from("p");
        let login = NeuronExApi.login("admin", &secret).unwrap();
        let version = NeuronExApi.version().unwrap();
        let system = NeuronExApi.system().unwrap();
        vec![Box::new(move |r| drop(login.parse(r))), Box::new(move |r| drop(version.parse(r))), Box::new(move |r| drop(system.parse(r)))]
    }

    #[test]
    fn login_reads_token_and_role() {
        let r = response(200, Some("application/json"), br#"{"token":"tok-sentinel","role":"Administrator"}"#);
        let t = NeuronExApi.login("admin", &SecretString::from("0000")).unwrap().parse(&r).unwrap();
        assert_eq!(t.token.expose_secret(), "tok-sentinel");
        assert_eq!(t.role.as_deref(), Some("Administrator"));
        assert!(!format!("{t:?}").contains("sentinel"));
        let r = response(401, Some("application/json"), br#"{"error":1009}"#);
        assert!(matches!(NeuronExApi.login("admin", &SecretString::from("x")).unwrap().parse(&r), Err(Error::Unauthorized { .. })));
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(status in 100u16..600, ct in proptest::option::of("[a-z/;= -]{0,30}"), body in arb_body()) {
            let r = response(status, ct.as_deref(), &body);
            for p in all_parsers() { p(&r); }
            let _ = token_refused(&r);
        }

        #[test]
        fn parsers_never_panic_on_json(status in prop_oneof![Just(200u16), Just(400), Just(401), Just(500)], value in shaped(arb_json(), &["token", "role", "version", "neuronStatus", "os", "error", "code", "message"])) {
            let r = response(status, Some("application/json"), value.to_string().as_bytes());
            for p in all_parsers() { p(&r); }
        }
    }
}
