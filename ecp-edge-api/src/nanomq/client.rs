//! The client of one nanomq service: the requests sent over a transport, with authentication.

use std::fmt;
use std::sync::Arc;

use crate::service::Credentials;
use serde_json::{Map, Value};

use super::*;
use crate::call::{self, ApiCall};
use crate::error::Result;
use crate::session::{Auth, Session, TokenScheme};
use crate::transport::EdgeTransport;

/// A client of one NanoMQ: [`NanoMqApi`]'s calls sent over a transport. Cheap to clone.
#[derive(Clone)]
pub struct NanoMqClient {
    session: Arc<Session>,
    api: NanoMqApi,
}

impl fmt::Debug for NanoMqClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NanoMqClient").field("session", &self.session).field("prefix", &self.api.prefix).finish()
    }
}

impl NanoMqClient {
    /// A client of NanoMQ at `/api/v4`. `Credentials::Basic` is sent as HTTP Basic (see
    /// [`default_credentials`]); `Credentials::Token` as a `Bearer` JWT (`auth_type=jwt`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for a user name with `:`, or credentials with characters
    /// not allowed in a header.
    pub fn new(transport: Arc<dyn EdgeTransport>, credentials: Credentials) -> Result<Self> {
        Self::with_api(transport, credentials, NanoMqApi::default())
    }

    /// A client using `api` (another path prefix).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_api(transport: Arc<dyn EdgeTransport>, credentials: Credentials, api: NanoMqApi) -> Result<Self> {
        let auth = match &credentials {
            Credentials::None => Auth::None,
            Credentials::Basic { username, password } => Auth::basic(username, password)?,
            Credentials::Token(token) => Auth::token(TokenScheme::Bearer, token)?,
        };
        Ok(NanoMqClient { session: Arc::new(Session::new(transport, auth, token_refused)), api })
    }

    /// The request builder this client uses.
    pub fn api(&self) -> &NanoMqApi {
        &self.api
    }

    /// Sends any call built by [`api`](Self::api), with credentials.
    ///
    /// # Errors
    /// What the call's parser says ([`Error::Api`](crate::Error::Api) with NanoMQ's code, also under HTTP 200),
    /// [`Error::Unauthorized`](crate::Error::Unauthorized) on 401, and the transport's errors.
    pub async fn execute<T>(&self, call: ApiCall<T>) -> Result<T> {
        self.session.execute(call).await
    }

    /// The brokers.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn brokers(&self) -> Result<Vec<Broker>> {
        self.execute(self.api.brokers()?).await
    }

    /// The version of the first broker (`GET /brokers`): the health probe.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); [`Error::Decode`](crate::Error::Decode) when no broker is listed.
    pub async fn version(&self) -> Result<String> {
        let endpoint = self.api.brokers()?.endpoint().to_owned();
        self.brokers().await?.into_iter().find_map(|b| b.version).ok_or_else(|| call::decode_error(&endpoint, "no broker with a version"))
    }

    /// The nodes.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.execute(self.api.nodes()?).await
    }

    /// The clients, filtered.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn clients(&self, filter: &ClientFilter) -> Result<Vec<Client>> {
        self.execute(self.api.clients(filter)?).await
    }

    /// One client, or `None` (NanoMQ lists nothing for an unknown id).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>> {
        Ok(self.execute(self.api.client(client_id)?).await?.into_iter().next())
    }

    /// The clients of one user.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn clients_by_username(&self, username: &str) -> Result<Vec<Client>> {
        self.execute(self.api.clients_by_username(username)?).await
    }

    /// Every subscription.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>> {
        self.execute(self.api.subscriptions()?).await
    }

    /// One client's subscriptions.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn client_subscriptions(&self, client_id: &str) -> Result<Vec<Subscription>> {
        self.execute(self.api.client_subscriptions(client_id)?).await
    }

    /// The topic tree, one list per level.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn topic_tree(&self) -> Result<Vec<Vec<TopicNode>>> {
        self.execute(self.api.topic_tree()?).await
    }

    /// Broker metrics.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn metrics(&self) -> Result<Metrics> {
        self.execute(self.api.metrics()?).await
    }

    /// The Prometheus text (lenient parsers advised).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn prometheus(&self) -> Result<String> {
        self.execute(self.api.prometheus()?).await
    }

    /// The hot-reloadable settings.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn reload_config(&self) -> Result<ReloadConfig> {
        self.execute(self.api.reload_config()?).await
    }

    /// Changes hot-reloadable settings (only the fields set).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn set_reload_config(&self, config: &ReloadConfig) -> Result<()> {
        self.execute(self.api.set_reload_config(config)?).await
    }

    /// The whole configuration, by section.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn configuration(&self) -> Result<Map<String, Value>> {
        self.execute(self.api.configuration()?).await
    }

    /// One configuration section's settings (the content of `data.<section>`).
    ///
    /// # Errors
    /// As [`execute`](Self::execute); 404 code 101 for an unknown section.
    pub async fn configuration_section(&self, section: &str) -> Result<Value> {
        let mut data = self.execute(self.api.configuration_section(section)?).await?;
        Ok(match data.as_object_mut().and_then(|m| m.remove(section)) {
            Some(inner) => inner,
            None => data,
        })
    }

    /// Writes configuration sections.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn set_configuration(&self, sections: &Map<String, Value>) -> Result<()> {
        self.execute(self.api.set_configuration(sections)?).await
    }

    /// Publishes a message.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); code 108 (under HTTP 200) for a missing topic or a bad QoS.
    pub async fn publish(&self, message: &Publish) -> Result<()> {
        self.execute(self.api.publish(message)?).await
    }
}
