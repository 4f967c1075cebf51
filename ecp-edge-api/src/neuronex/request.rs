//! Building NeuronEX's own requests and reading their answers, without I/O.

use bytes::Bytes;
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::types::*;
use crate::call::{self, ApiCall, Body, Uri, int_field};
use crate::error::{Error, Result};
use crate::service::EdgeKind;
use crate::session::{LoginReply, LoginToken};

/// The JSON of a NeuronEX answer, once its error forms are ruled out.
pub(super) fn answer(endpoint: &str, response: &http::Response<Bytes>) -> Result<Value> {
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
            return Err(call::html_error(endpoint, status, Some(EdgeKind::NeuronEx)));
        }
        let message = value.as_ref().and_then(|v| v.get("message")?.as_str().map(call::excerpt));
        let message = message.or_else(|| code.and_then(crate::neuron::error_text).map(str::to_owned)).or_else(|| call::body_excerpt(body));
        return Err(Error::Api {
            product: Some(EdgeKind::NeuronEx),
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            code,
            message,
        });
    }
    match value {
        Some(v) => Ok(v),
        None if call::is_html(response) => Err(call::html_error(endpoint, status, Some(EdgeKind::NeuronEx))),
        None => Err(call::decode_error(endpoint, "not JSON")),
    }
}

pub(super) fn parse_json<T: DeserializeOwned>(endpoint: &str, response: &http::Response<Bytes>) -> Result<T> {
    call::from_value(endpoint, answer(endpoint, response)?)
}

pub(super) fn parse_login(endpoint: &str, response: &http::Response<Bytes>) -> Result<LoginToken> {
    parse_json::<LoginReply>(endpoint, response).map(LoginToken::from)
}

/// Builds NeuronEX's own requests, without I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeuronExApi;

impl NeuronExApi {
    /// `POST /api/login {"name","password"}` → `{"token","role"}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty user name.
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
