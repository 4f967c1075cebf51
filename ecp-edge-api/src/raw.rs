//! [`RawClient`]: sends [`ApiCall`]s to a service of no known product (a custom edge service),
//! authenticating with HTTP Basic or a bearer token.

use std::fmt;
use std::sync::Arc;

use crate::service::Credentials;
use bytes::Bytes;

use crate::call::ApiCall;
use crate::error::Result;
use crate::session::{Auth, Session, TokenScheme};
use crate::transport::EdgeTransport;

/// A client for any HTTP API: [`Credentials::Basic`] is sent as HTTP Basic, a
/// [`Credentials::Token`] as `Bearer`; a 401 answer is [`Error::Unauthorized`](crate::Error::Unauthorized).
#[derive(Clone)]
pub struct RawClient {
    session: Arc<Session>,
}

impl fmt::Debug for RawClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawClient").field("session", &self.session).finish()
    }
}

fn refused(response: &http::Response<Bytes>) -> bool {
    response.status() == http::StatusCode::UNAUTHORIZED
}

impl RawClient {
    /// A client over `transport`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for credentials that cannot be put in a header.
    pub fn new(transport: Arc<dyn EdgeTransport>, credentials: Credentials) -> Result<Self> {
        let auth = match &credentials {
            Credentials::None => Auth::None,
            Credentials::Basic { username, password } => Auth::basic(username, password)?,
            Credentials::Token(token) => Auth::token(TokenScheme::Bearer, token)?,
        };
        Ok(RawClient { session: Arc::new(Session::new(transport, auth, refused)) })
    }

    /// Sends `call` and reads its answer.
    ///
    /// # Errors
    /// As [`ApiCall::parse`], and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }
}
