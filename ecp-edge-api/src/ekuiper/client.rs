//! The client of one ekuiper service: the requests sent over a transport, with authentication.

use std::fmt;
use std::sync::Arc;

use crate::service::Credentials;

use super::*;
use crate::call::ApiCall;
use crate::error::{Error, Result};
use crate::session::{Auth, Session, TokenScheme};
use crate::transport::EdgeTransport;

/// A client of one eKuiper: [`EkuiperApi`]'s calls sent over a transport. Cheap to clone.
#[derive(Clone)]
pub struct EkuiperClient {
    session: Arc<Session>,
    api: EkuiperApi,
}

impl fmt::Debug for EkuiperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EkuiperClient").field("session", &self.session).field("prefix", &self.api.prefix()).finish()
    }
}

impl EkuiperClient {
    /// A client of standalone eKuiper. `Credentials::Token` is sent as `Authorization: <token>`
    /// (no `Bearer`); `Credentials::None` suits the default (authentication off).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for `Credentials::Basic` (eKuiper has no login) or a token
    /// with characters not allowed in a header.
    pub fn new(transport: Arc<dyn EdgeTransport>, credentials: Credentials) -> Result<Self> {
        let auth = match &credentials {
            Credentials::None => Auth::None,
            Credentials::Token(token) => Auth::token(TokenScheme::Raw, token)?,
            Credentials::Basic { .. } => {
                return Err(Error::invalid("credentials", "eKuiper takes a JWT (Credentials::Token) or none"));
            }
        };
        Ok(EkuiperClient { session: Arc::new(Session::new(transport, auth, token_refused)), api: EkuiperApi::default() })
    }

    pub(crate) fn from_session(session: Arc<Session>, api: EkuiperApi) -> Self {
        EkuiperClient { session, api }
    }

    /// The request builder this client uses.
    pub fn api(&self) -> &EkuiperApi {
        &self.api
    }

    /// Sends any call built by [`api`](Self::api), with credentials.
    ///
    /// # Errors
    /// What the call's parser says ([`Error::Api`](crate::Error::Api) with eKuiper's code and message),
    /// [`Error::Unauthorized`](crate::Error::Unauthorized) on 401, and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }

    /// Whether eKuiper answers (`GET /ping`): the cheapest health probe.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn ping(&self) -> Result<()> {
        self.execute(self.api.ping()?).await
    }

    /// Version, OS, uptime and memory (`GET /`); a health probe that also reports the version.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn info(&self) -> Result<Info> {
        self.execute(self.api.info()?).await
    }

    /// The version, from [`info`](Self::info).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn version(&self) -> Result<String> {
        Ok(self.info().await?.version)
    }

    /// Stream names.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn streams(&self) -> Result<Vec<String>> {
        self.execute(self.api.streams()?).await
    }

    /// One stream's definition.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); 404 code 1002 if it does not exist.
    pub async fn stream(&self, name: &str) -> Result<StreamDescription> {
        self.execute(self.api.stream(name)?).await
    }

    /// Creates a stream from a `CREATE STREAM` statement; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn create_stream(&self, sql: &str) -> Result<String> {
        self.execute(self.api.create_stream(sql)?).await
    }

    /// Replaces an existing stream's definition; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn replace_stream(&self, name: &str, sql: &str) -> Result<String> {
        self.execute(self.api.replace_stream(name, sql)?).await
    }

    /// Drops a stream (`force` even while rules use it); returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn delete_stream(&self, name: &str, force: bool) -> Result<String> {
        self.execute(self.api.delete_stream(name, force)?).await
    }

    /// Every rule with its status.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn rules(&self) -> Result<Vec<RuleSummary>> {
        self.execute(self.api.rules()?).await
    }

    /// One rule's definition.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn rule(&self, id: &str) -> Result<Rule> {
        self.execute(self.api.rule(id)?).await
    }

    /// Creates a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn create_rule(&self, rule: &Rule) -> Result<String> {
        self.execute(self.api.create_rule(rule)?).await
    }

    /// Creates or replaces a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn update_rule(&self, rule: &Rule) -> Result<String> {
        self.execute(self.api.update_rule(rule)?).await
    }

    /// Deletes a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn delete_rule(&self, id: &str) -> Result<String> {
        self.execute(self.api.delete_rule(id)?).await
    }

    /// A rule's status and metrics.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); 404 code 1002 for an unknown rule.
    pub async fn rule_status(&self, id: &str) -> Result<RuleStatus> {
        self.execute(self.api.rule_status(id)?).await
    }

    /// Starts a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn start_rule(&self, id: &str) -> Result<String> {
        self.execute(self.api.start_rule(id)?).await
    }

    /// Stops a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn stop_rule(&self, id: &str) -> Result<String> {
        self.execute(self.api.stop_rule(id)?).await
    }

    /// Restarts a rule; returns eKuiper's sentence.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn restart_rule(&self, id: &str) -> Result<String> {
        self.execute(self.api.restart_rule(id)?).await
    }
}
