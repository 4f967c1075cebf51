//! Sending calls with authentication: no credentials, a fixed `Authorization` header (HTTP Basic,
//! a static token), or a token obtained by logging in and cached, renewed once when the service
//! says it expired or is invalid.

use std::fmt;
use std::sync::Arc;

use crate::service::Credentials;
use bytes::Bytes;
use http::HeaderValue;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::call::ApiCall;
use crate::error::{Error, Result};
use crate::transport::EdgeTransport;

/// What a login answered: the token (and, for NeuronEX, the user's role).
#[derive(Clone)]
#[non_exhaustive]
pub struct LoginToken {
    /// The token to send with later calls (empty when the service runs without authentication).
    pub token: SecretString,
    /// The user's role (NeuronEX: `Administrator`, `Viewer` ...), if the service says.
    pub role: Option<String>,
}

impl fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginToken").field("token", &"[REDACTED]").field("role", &self.role).finish()
    }
}

/// The wire form of a login answer: `{"token":"…"}` (Neuron), `{"token":"…","role":"…"}`
/// (NeuronEX).
#[derive(Deserialize)]
pub(crate) struct LoginReply {
    token: String,
    #[serde(default)]
    role: Option<String>,
}

impl From<LoginReply> for LoginToken {
    fn from(r: LoginReply) -> Self {
        LoginToken { token: SecretString::from(r.token), role: r.role }
    }
}

/// How a token goes into the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenScheme {
    /// `Bearer <token>` (Neuron, NeuronEX, NanoMQ JWT).
    Bearer,
    /// `<token>` as is (eKuiper).
    Raw,
}

impl TokenScheme {
    fn value(self, token: &SecretString) -> String {
        match self {
            TokenScheme::Bearer => format!("Bearer {}", token.expose_secret()),
            TokenScheme::Raw => token.expose_secret().to_owned(),
        }
    }

    fn header(self, token: &SecretString) -> Result<HeaderValue> {
        sensitive(self.value(token))
    }
}

/// A sensitive header value; the error never holds the value.
fn sensitive(value: String) -> Result<HeaderValue> {
    let mut v =
        HeaderValue::try_from(value).map_err(|_| Error::invalid("credentials", "contain characters not allowed in an HTTP header"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Builds the login call of a product from the user name and password.
pub(crate) type LoginFn = fn(&str, &SecretString) -> Result<ApiCall<LoginToken>>;

/// Whether an answer says the token is missing, expired or invalid (so a new login may help).
pub(crate) type RefusedFn = fn(&http::Response<Bytes>) -> bool;

/// How a session authenticates.
pub(crate) enum Auth {
    /// No credentials.
    None,
    /// A fixed `Authorization` value: HTTP Basic, or a static token.
    Header(SecretString),
    /// A token obtained by logging in.
    Login(Box<LoginAuth>),
}

/// Login-obtained tokens: one login at a time, the token cached until refused.
pub(crate) struct LoginAuth {
    username: String,
    password: SecretString,
    login: LoginFn,
    scheme: TokenScheme,
    slot: tokio::sync::Mutex<TokenSlot>,
}

/// The cached token, and how many logins produced it (so that requests refused with an old token
/// do not log in again once another request has).
#[derive(Default)]
struct TokenSlot {
    token: Option<SecretString>,
    generation: u64,
}

impl Auth {
    /// `Basic base64(user:password)`.
    pub(crate) fn basic(username: &str, password: &SecretString) -> Result<Auth> {
        if username.contains(':') {
            return Err(Error::invalid("credentials", "an HTTP Basic user name must not contain `:`"));
        }
        let raw = format!("{username}:{}", password.expose_secret());
        let value = format!("Basic {}", base64(raw.as_bytes()));
        sensitive(value.clone())?;
        Ok(Auth::Header(value.into()))
    }

    /// A static token sent as `scheme` says.
    pub(crate) fn token(scheme: TokenScheme, token: &SecretString) -> Result<Auth> {
        let value = scheme.value(token);
        sensitive(value.clone())?;
        Ok(Auth::Header(value.into()))
    }

    /// Log in with `credentials`'s user name and password.
    pub(crate) fn login(username: &str, password: &SecretString, login: LoginFn, scheme: TokenScheme) -> Auth {
        Auth::Login(Box::new(LoginAuth {
            username: username.to_owned(),
            password: password.clone(),
            login,
            scheme,
            slot: tokio::sync::Mutex::new(TokenSlot::default()),
        }))
    }

    /// The usual mapping of [`Credentials`] for products that log in with a user name and password
    /// and take `Bearer` tokens (Neuron, NeuronEX).
    pub(crate) fn login_or_bearer(credentials: &Credentials, login: LoginFn) -> Result<Auth> {
        Ok(match credentials {
            Credentials::None => Auth::None,
            Credentials::Basic { username, password } => Auth::login(username, password, login, TokenScheme::Bearer),
            Credentials::Token(token) => Auth::token(TokenScheme::Bearer, token)?,
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Header(_) => "header",
            Auth::Login(_) => "login",
        }
    }
}

/// One edge service's API as the clients see it: the transport, the authentication, and how the
/// product says "your token is no good".
pub(crate) struct Session {
    transport: Arc<dyn EdgeTransport>,
    auth: Auth,
    refused: RefusedFn,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Session");
        d.field("transport", &self.transport.describe()).field("auth", &self.auth.kind());
        if let Auth::Login(l) = &self.auth {
            d.field("username", &l.username);
        }
        d.finish()
    }
}

impl Session {
    pub(crate) fn new(transport: Arc<dyn EdgeTransport>, auth: Auth, refused: RefusedFn) -> Self {
        Session { transport, auth, refused }
    }

    /// Sends `call` with credentials when it needs them, and reads the answer. With a login, a
    /// missing token is obtained first, and a refused token is renewed once and the call retried
    /// once.
    pub(crate) async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        let endpoint = call.endpoint();
        let response = match (&self.auth, call.needs_auth()) {
            (Auth::None, _) | (_, false) => self.send(&call, None).await?,
            (Auth::Header(value), true) => self.send(&call, Some(sensitive(value.expose_secret().to_owned())?)).await?,
            (Auth::Login(login), true) => {
                let (token, generation) = self.token(login).await?;
                let response = self.send(&call, Some(login.scheme.header(&token)?)).await?;
                if !(self.refused)(&response) {
                    return call.parse(&response);
                }
                tracing::debug!(endpoint, status = response.status().as_u16(), "token refused, logging in again");
                let token = self.renew(login, generation).await?;
                self.send(&call, Some(login.scheme.header(&token)?)).await?
            }
        };
        if (self.refused)(&response) {
            tracing::debug!(endpoint, status = response.status().as_u16(), "credentials refused");
            return Err(Error::Unauthorized { endpoint: endpoint.to_owned() });
        }
        call.parse(&response)
    }

    /// Logs in now (again, if a token is cached). Without a login this does nothing.
    pub(crate) async fn login(&self) -> Result<()> {
        if let Auth::Login(login) = &self.auth {
            let mut slot = login.slot.lock().await;
            self.login_into(login, &mut slot).await?;
        }
        Ok(())
    }

    async fn send<T>(&self, call: &ApiCall<T>, auth: Option<HeaderValue>) -> Result<http::Response<Bytes>> {
        let mut request = call.request().clone();
        if let Some(value) = auth {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let response = self.transport.send(request).await?;
        tracing::trace!(endpoint = call.endpoint(), status = response.status().as_u16(), "answer");
        Ok(response)
    }

    /// The cached token, logging in first when there is none.
    async fn token(&self, login: &LoginAuth) -> Result<(SecretString, u64)> {
        let mut slot = login.slot.lock().await;
        match &slot.token {
            Some(token) => Ok((token.clone(), slot.generation)),
            None => self.login_into(login, &mut slot).await,
        }
    }

    /// A token newer than the one of `seen` generation: another request's, or a new login's.
    async fn renew(&self, login: &LoginAuth, seen: u64) -> Result<SecretString> {
        let mut slot = login.slot.lock().await;
        match &slot.token {
            Some(token) if slot.generation != seen => Ok(token.clone()),
            _ => self.login_into(login, &mut slot).await.map(|(token, _)| token),
        }
    }

    /// Logs in while holding the slot, so that concurrent requests wait for this login.
    async fn login_into(&self, login: &LoginAuth, slot: &mut TokenSlot) -> Result<(SecretString, u64)> {
        slot.token = None;
        let call = (login.login)(&login.username, &login.password)?;
        let endpoint = call.endpoint().to_owned();
        let response = self.transport.send(call.request().clone()).await?;
        let reply = call.parse(&response)?;
        tracing::debug!(endpoint, "logged in");
        slot.generation += 1;
        slot.token = Some(reply.token.clone());
        Ok((reply.token, slot.generation))
    }
}

/// Standard base64 with padding (for HTTP Basic).
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, output) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(input.as_bytes()), output);
        }
        assert_eq!(base64(b"admin:public"), "YWRtaW46cHVibGlj");
    }

    #[test]
    fn credentials_are_checked_and_redacted() {
        let secret = SecretString::from("s3cr3t-sentinel");
        assert!(Auth::basic("a:b", &secret).is_err());
        let bad = SecretString::from("bad\ntoken-sentinel");
        let err = Auth::token(TokenScheme::Bearer, &bad).err().unwrap();
        assert!(!format!("{err} {err:?}").contains("sentinel"));
        let token = LoginToken { token: secret, role: None };
        assert!(!format!("{token:?}").contains("sentinel"));
    }
}
