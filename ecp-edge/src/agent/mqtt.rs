//! How the hub and the agent connect to the broker (feature `mqtt`): MQTT 5 over TCP, or TLS with
//! rustls (aws-lc-rs), with credentials kept secret.

use std::fmt;
use std::time::Duration;

use rumqttc::v5::MqttOptions;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::LastWill;
use rumqttc::{TlsConfiguration, Transport};
use secrecy::{ExposeSecret, SecretString};

use super::proto::DEFAULT_MAX_PAYLOAD;
use crate::error::{Error, Result};

/// TLS settings for the broker connection.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct MqttTls {
    /// PEM root certificates to trust (the broker's CA).
    pub ca_pem: Vec<u8>,
    /// A PEM client certificate chain and PEM private key, for brokers that require them.
    pub client_auth: Option<(Vec<u8>, SecretString)>,
}

impl fmt::Debug for MqttTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttTls")
            .field("ca_pem", &format!("<{} bytes>", self.ca_pem.len()))
            .field("client_auth", &self.client_auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where the broker is and how to log in: the settings shared by the hub and the agent.
#[derive(Clone)]
#[non_exhaustive]
pub struct MqttConfig {
    /// The broker's host.
    pub host: String,
    /// Its port (1883, 8883 with TLS; the product's agent broker listens on 31883).
    pub port: u16,
    /// The username (an agent's is its id).
    pub username: Option<String>,
    /// The password.
    pub password: Option<SecretString>,
    /// TLS, when set.
    pub tls: Option<MqttTls>,
    /// The MQTT keep-alive (default 30 s).
    pub keep_alive: Duration,
    /// The time to connect (default 8 s, as the product's own client).
    pub connect_timeout: Duration,
    /// The largest payload sent or accepted (default 256 KiB).
    pub max_payload: usize,
    /// The most QoS 1 messages in flight (default 64). rumqttc reserves memory for this window,
    /// so it stays small.
    pub inflight: u16,
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("keep_alive", &self.keep_alive)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_payload", &self.max_payload)
            .field("inflight", &self.inflight)
            .finish()
    }
}

impl MqttConfig {
    /// The broker at `host:port`, anonymous, without TLS, with the default settings.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        MqttConfig {
            host: host.into(),
            port,
            username: None,
            password: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(8),
            max_payload: DEFAULT_MAX_PAYLOAD,
            inflight: 64,
        }
    }

    /// Logs in as `username` with `password`.
    #[must_use]
    pub fn credentials(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.username = Some(username.into());
        self.password = Some(password);
        self
    }

    /// Connects with TLS.
    #[must_use]
    pub fn tls(mut self, tls: MqttTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// `InvalidInput` for an empty host, a zero port, a keep-alive under 5 s, a payload limit
    /// under 1 KiB or over 16 MiB, or a zero in-flight window.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &'static str| Err(Error::Core(ecp_core::Error::invalid(field, reason)));
        if self.host.is_empty() {
            return bad("mqtt host", "must not be empty");
        }
        if self.port == 0 {
            return bad("mqtt port", "must not be 0");
        }
        if self.keep_alive < Duration::from_secs(5) || self.keep_alive > Duration::from_secs(65_535) {
            return bad("mqtt keep_alive", "must be 5 s to 65535 s");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_payload) {
            return bad("mqtt max_payload", "must be 1 KiB to 16 MiB");
        }
        if self.inflight == 0 {
            return bad("mqtt inflight", "must be at least 1");
        }
        if self.connect_timeout.is_zero() {
            return bad("mqtt connect_timeout", "must not be zero");
        }
        Ok(())
    }

    /// The rumqttc options of a client `client_id`, with `will` as its last will.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub(crate) fn options(&self, client_id: &str, will: Option<LastWill>) -> Result<MqttOptions> {
        self.validate()?;
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_start(true);
        o.set_connection_timeout(self.connect_timeout.as_secs().max(1));
        o.set_outgoing_inflight_upper_limit(self.inflight);
        o.set_request_channel_capacity(usize::from(self.inflight).max(16) * 4);
        let packet = u32::try_from(self.max_payload + 4096).unwrap_or(u32::MAX);
        o.set_max_packet_size(Some(packet));
        if let (Some(user), Some(pass)) = (&self.username, &self.password) {
            o.set_credentials(user.clone(), pass.expose_secret().to_owned());
        }
        if let Some(will) = will {
            o.set_last_will(will);
        }
        if let Some(tls) = &self.tls {
            let client_auth = tls.client_auth.as_ref().map(|(cert, key)| (cert.clone(), key.expose_secret().as_bytes().to_vec()));
            o.set_transport(Transport::Tls(TlsConfiguration::Simple { ca: tls.ca_pem.clone(), alpn: None, client_auth }));
        }
        Ok(o)
    }
}

/// The QoS of a channel, as the protocol document says.
pub(crate) const fn qos(channel: super::Channel) -> QoS {
    match channel {
        super::Channel::Heartbeat => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}
