//! The client of one NeuronEX, and through it of its Neuron and eKuiper.

use std::fmt;
use std::sync::Arc;

use crate::service::Credentials;

use super::request::*;
use super::types::*;
use super::*;
use crate::call::ApiCall;
use crate::ekuiper::{EkuiperApi, EkuiperClient};
use crate::error::Result;
use crate::neuron::{NeuronApi, NeuronClient};
use crate::session::{Auth, Session};
use crate::transport::EdgeTransport;

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
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) when a token holds characters not allowed in a header.
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
    /// What the call's parser says, [`Error::Unauthorized`](crate::Error::Unauthorized) when the token is refused after one
    /// renewal, and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }

    /// Logs in now (again, if a token is cached); does nothing without a login.
    ///
    /// # Errors
    /// [`Error::Unauthorized`](crate::Error::Unauthorized) for bad credentials, the transport's errors.
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
