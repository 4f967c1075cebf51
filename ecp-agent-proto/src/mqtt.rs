//! How the hub and the agent connect to the broker: MQTT 5 over TLS with rustls (aws-lc-rs) by
//! default, trusting the platform's root certificates or a pinned private CA; cleartext only when
//! asked ([`MqttConfigBuilder::insecure`]); credentials kept secret.
//!
//! ```
//! # fn demo() -> ecp_agent_proto::Result<()> {
//! use std::time::Duration;
//!
//! use ecp_agent_proto::MqttConfig;
//! use secrecy::SecretString;
//!
//! let mqtt = MqttConfig::builder("broker.example", 8883)
//!     .credentials("edge-7", SecretString::from("s3cret"))
//!     .keep_alive(Duration::from_secs(60))
//!     .build()?;
//! assert_eq!((mqtt.host(), mqtt.port(), mqtt.username()), ("broker.example", 8883, Some("edge-7")));
//! assert!(!mqtt.is_insecure(), "TLS unless asked otherwise");
//! assert!(!format!("{mqtt:?}").contains("s3cret"));
//! # Ok(()) }
//! # demo().unwrap();
//! ```

use std::fmt;
use std::time::Duration;

#[cfg(feature = "rumqttc")]
use rumqttc::v5::MqttOptions;
#[cfg(feature = "rumqttc")]
use rumqttc::v5::mqttbytes::QoS;
#[cfg(feature = "rumqttc")]
use rumqttc::v5::mqttbytes::v5::LastWill;
#[cfg(feature = "rumqttc")]
use rumqttc::{TlsConfiguration, Transport};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::proto::DEFAULT_MAX_PAYLOAD;

/// The marker every PEM certificate starts with.
const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// Whether `pem` holds at least one PEM certificate.
fn holds_certificate(pem: &[u8]) -> bool {
    pem.windows(PEM_CERTIFICATE.len()).any(|w| w == PEM_CERTIFICATE.as_bytes())
}

/// TLS settings for the broker connection. Build them with [`MqttTls::builder`].
#[derive(Clone)]
#[non_exhaustive]
pub struct MqttTls {
    /// PEM root certificates to trust (the broker's CA).
    ca_pem: Vec<u8>,
    /// A PEM client certificate chain and PEM private key, for brokers that require them.
    client_auth: Option<(Vec<u8>, SecretString)>,
}

impl fmt::Debug for MqttTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttTls")
            .field("ca_pem", &format!("<{} bytes>", self.ca_pem.len()))
            .field("client_auth", &self.client_auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl MqttTls {
    /// A builder of TLS settings trusting the PEM root certificates `ca_pem` (the broker's CA),
    /// without a client certificate.
    pub fn builder(ca_pem: impl Into<Vec<u8>>) -> MqttTlsBuilder {
        MqttTlsBuilder(MqttTls { ca_pem: ca_pem.into(), client_auth: None })
    }

    /// The PEM root certificates trusted.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// The PEM client certificate chain, when the connection authenticates with one.
    pub fn client_cert_pem(&self) -> Option<&[u8]> {
        self.client_auth.as_ref().map(|(cert, _)| cert.as_slice())
    }
}

/// Builds an [`MqttTls`]; [`build`](Self::build) checks.
#[derive(Clone, Debug)]
#[must_use]
pub struct MqttTlsBuilder(MqttTls);

impl MqttTlsBuilder {
    /// Authenticates with the PEM client certificate chain `cert_pem` and its PEM private key
    /// `key_pem` (default: no client certificate).
    pub fn client_auth(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: SecretString) -> Self {
        self.0.client_auth = Some((cert_pem.into(), key_pem));
        self
    }

    /// The settings.
    ///
    /// # Errors
    /// `InvalidInput` for a CA bundle or a client certificate chain without a PEM certificate, or
    /// a client key that is not a PEM private key.
    pub fn build(self) -> Result<MqttTls> {
        let tls = self.0;
        if !holds_certificate(&tls.ca_pem) {
            return Err(Error::invalid("mqtt tls ca_pem", "holds no PEM certificate"));
        }
        if let Some((cert, key)) = &tls.client_auth {
            if !holds_certificate(cert) {
                return Err(Error::invalid("mqtt tls client certificate", "holds no PEM certificate"));
            }
            let key = key.expose_secret();
            if !(key.contains("-----BEGIN ") && key.contains("PRIVATE KEY-----")) {
                return Err(Error::invalid("mqtt tls client key", "is not a PEM private key"));
            }
        }
        Ok(tls)
    }
}

/// Where the broker is and how to log in: the settings shared by the hub and the agent. Build
/// them with [`MqttConfig::builder`].
#[derive(Clone)]
#[non_exhaustive]
pub struct MqttConfig {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<SecretString>,
    tls: Option<MqttTls>,
    insecure: bool,
    keep_alive: Duration,
    connect_timeout: Duration,
    max_payload: usize,
    inflight: u16,
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("insecure", &self.insecure)
            .field("keep_alive", &self.keep_alive)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_payload", &self.max_payload)
            .field("inflight", &self.inflight)
            .finish()
    }
}

impl MqttConfig {
    /// A builder for the broker at `host:port` (8883 for MQTT over TLS; 1883 in cleartext; the
    /// product's agent broker listens on 31883), starting anonymous, over TLS that trusts the
    /// platform's root certificates, with the default settings. [`MqttConfigBuilder::tls`]
    /// pins a private CA; cleartext needs [`MqttConfigBuilder::insecure`].
    pub fn builder(host: impl Into<String>, port: u16) -> MqttConfigBuilder {
        MqttConfigBuilder(MqttConfig {
            host: host.into(),
            port,
            username: None,
            password: None,
            tls: None,
            insecure: false,
            keep_alive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(8),
            max_payload: DEFAULT_MAX_PAYLOAD,
            inflight: 64,
        })
    }

    /// The broker's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The username, when the client logs in (an agent's is normally its id).
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The private CA (and client certificate) the connection trusts, when one is pinned;
    /// `None` with TLS on the platform's roots, or in cleartext.
    pub fn tls(&self) -> Option<&MqttTls> {
        self.tls.as_ref()
    }

    /// Whether the connection is in cleartext ([`MqttConfigBuilder::insecure`]): clients log a
    /// warning when they start with it.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// The MQTT keep-alive.
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// The time to connect.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The largest payload sent or accepted.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The most QoS 1 messages in flight.
    pub fn inflight(&self) -> u16 {
        self.inflight
    }

    /// The rumqttc options of a client `client_id`, with `will` as its last will (feature
    /// `rumqttc`).
    #[cfg(feature = "rumqttc")]
    pub fn rumqttc_options(&self, client_id: &str, will: Option<LastWill>) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        // The builder checked the keep-alive is at least 5 s: this never asserts.
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
        match (&self.tls, self.insecure) {
            (Some(tls), _) => {
                let client_auth = tls.client_auth.as_ref().map(|(cert, key)| (cert.clone(), key.expose_secret().as_bytes().to_vec()));
                o.set_transport(Transport::Tls(TlsConfiguration::Simple { ca: tls.ca_pem.clone(), alpn: None, client_auth }));
            }
            (None, false) => {
                o.set_transport(Transport::Tls(TlsConfiguration::Rustls(platform_tls())));
            }
            (None, true) => {}
        }
        o
    }
}

/// The TLS setup of a connection on the platform's root certificates (read once per process), on
/// aws-lc-rs, the tree's one crypto provider. With no root certificate found the handshake
/// fails with an unknown issuer, which names the cause.
#[cfg(feature = "rumqttc")]
fn platform_tls() -> std::sync::Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no platform root certificate found: MQTT over TLS needs a pinned CA (MqttTls)");
            }
            let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
                Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
                // aws-lc-rs supports the default versions: this branch is not taken.
                Err(_) => rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
            };
            std::sync::Arc::new(config)
        })
        .clone()
}

/// Builds an [`MqttConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Clone, Debug)]
#[must_use]
pub struct MqttConfigBuilder(MqttConfig);

impl MqttConfigBuilder {
    /// Logs in as `username` with `password` (default: anonymous).
    pub fn credentials(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.0.username = Some(username.into());
        self.0.password = Some(password);
        self
    }

    /// Connects with TLS trusting `tls`'s CA alone (a private CA pinned), and with its client
    /// certificate if it has one (default: TLS trusting the platform's root certificates).
    pub fn tls(mut self, tls: MqttTls) -> Self {
        self.0.tls = Some(tls);
        self.0.insecure = false;
        self
    }

    /// Connects in cleartext, when `on` (default off: TLS). For a broker on the same host or a
    /// test; the hub and the agent log a warning when they start with it, and a [`tls`](Self::tls)
    /// setting is dropped.
    pub fn insecure(mut self, on: bool) -> Self {
        self.0.insecure = on;
        if on {
            self.0.tls = None;
        }
        self
    }

    /// The MQTT keep-alive (default 30 s; 5 s to 65,535 s).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.0.keep_alive = keep_alive;
        self
    }

    /// The time to connect (default 8 s, as the product's own client; not zero).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// The largest payload sent or accepted (default 256 KiB, [`DEFAULT_MAX_PAYLOAD`]; 1 KiB to
    /// 16 MiB).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.0.max_payload = bytes;
        self
    }

    /// The most QoS 1 messages in flight (default 64; at least 1). rumqttc reserves memory for
    /// this window, so it stays small.
    pub fn inflight(mut self, n: u16) -> Self {
        self.0.inflight = n;
        self
    }

    /// The settings.
    ///
    /// # Errors
    /// `InvalidInput` for an empty host, a zero port, a keep-alive under 5 s or over 65,535 s, a
    /// payload limit under 1 KiB or over 16 MiB, a zero in-flight window, or a zero connect
    /// timeout.
    pub fn build(self) -> Result<MqttConfig> {
        let c = self.0;
        let bad = |field: &'static str, reason: &'static str| Err(Error::invalid(field, reason));
        if c.host.is_empty() {
            return bad("mqtt host", "must not be empty");
        }
        if c.port == 0 {
            return bad("mqtt port", "must not be 0");
        }
        if c.keep_alive < Duration::from_secs(5) || c.keep_alive > Duration::from_secs(65_535) {
            return bad("mqtt keep_alive", "must be 5 s to 65535 s");
        }
        if !(1024..=16 * 1024 * 1024).contains(&c.max_payload) {
            return bad("mqtt max_payload", "must be 1 KiB to 16 MiB");
        }
        if c.inflight == 0 {
            return bad("mqtt inflight", "must be at least 1");
        }
        if c.connect_timeout.is_zero() {
            return bad("mqtt connect_timeout", "must not be zero");
        }
        Ok(c)
    }
}

/// The QoS of a channel, as the protocol document says (feature `rumqttc`).
#[cfg(feature = "rumqttc")]
pub const fn qos(channel: crate::Channel) -> QoS {
    match channel {
        crate::Channel::Heartbeat => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// How long to wait before reconnect attempt `attempt` (0 for the first retry): full-jitter
/// exponential backoff, uniform in `[0, backoff_cap(attempt, initial, max)]`, so that thousands
/// of agents cut off together do not come back together.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let cap = backoff_cap(attempt, initial, max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// The upper bound of [`backoff_delay`]: `min(max, initial × 2^attempt)`, saturating.
pub fn backoff_cap(attempt: u32, initial: Duration, max: Duration) -> Duration {
    initial.saturating_mul(2u32.saturating_pow(attempt)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    fn field(e: Error) -> String {
        match e {
            Error::InvalidInput { field, .. } => field.into_owned(),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[cfg(feature = "rumqttc")]
    #[test]
    fn tls_is_the_default_and_cleartext_is_asked_for() {
        let tls = MqttConfig::builder("broker", 8883).build().unwrap().rumqttc_options("c", None);
        assert!(matches!(tls.transport(), Transport::Tls(TlsConfiguration::Rustls(_))), "the platform's roots");
        let pinned = MqttConfig::builder("broker", 8883).tls(MqttTls::builder(CA).build().unwrap()).build().unwrap();
        assert!(matches!(pinned.rumqttc_options("c", None).transport(), Transport::Tls(TlsConfiguration::Simple { .. })));
        let clear = MqttConfig::builder("broker", 1883).insecure(true).build().unwrap();
        assert!(clear.is_insecure());
        assert!(matches!(clear.rumqttc_options("c", None).transport(), Transport::Tcp));
        let last = MqttConfig::builder("broker", 1883).tls(MqttTls::builder(CA).build().unwrap()).insecure(true).build().unwrap();
        assert!(last.tls().is_none() && last.is_insecure(), "the last setting wins");
    }

    #[test]
    fn defaults_and_getters() {
        let c = MqttConfig::builder("broker", 1883).build().unwrap();
        assert_eq!((c.host(), c.port(), c.username()), ("broker", 1883, None));
        assert!(c.tls().is_none() && !c.is_insecure(), "TLS on the platform's roots by default");
        assert_eq!((c.keep_alive(), c.connect_timeout()), (Duration::from_secs(30), Duration::from_secs(8)));
        assert_eq!((c.max_payload(), c.inflight()), (DEFAULT_MAX_PAYLOAD, 64));
    }

    #[test]
    fn build_checks_every_setting() {
        let b = || MqttConfig::builder("broker", 1883);
        for (builder, expected) in [
            (MqttConfig::builder("", 1883), "mqtt host"),
            (MqttConfig::builder("broker", 0), "mqtt port"),
            (b().keep_alive(Duration::from_secs(4)), "mqtt keep_alive"),
            (b().keep_alive(Duration::from_secs(65_536)), "mqtt keep_alive"),
            (b().max_payload(1023), "mqtt max_payload"),
            (b().max_payload(16 * 1024 * 1024 + 1), "mqtt max_payload"),
            (b().inflight(0), "mqtt inflight"),
            (b().connect_timeout(Duration::ZERO), "mqtt connect_timeout"),
        ] {
            assert_eq!(field(builder.build().unwrap_err()), expected);
        }
        let edges = b().keep_alive(Duration::from_secs(5)).max_payload(1024).inflight(1).build().unwrap();
        assert_eq!((edges.keep_alive(), edges.max_payload(), edges.inflight()), (Duration::from_secs(5), 1024, 1));
    }

    #[test]
    fn tls_is_checked() {
        assert_eq!(field(MqttTls::builder(Vec::new()).build().unwrap_err()), "mqtt tls ca_pem");
        assert_eq!(field(MqttTls::builder("not a pem").build().unwrap_err()), "mqtt tls ca_pem");
        let no_cert = MqttTls::builder(CA).client_auth("nope", SecretString::from(KEY)).build();
        assert_eq!(field(no_cert.unwrap_err()), "mqtt tls client certificate");
        let no_key = MqttTls::builder(CA).client_auth(CA, SecretString::from("nope")).build();
        assert_eq!(field(no_key.unwrap_err()), "mqtt tls client key");
        let tls = MqttTls::builder(CA).client_auth(CA, SecretString::from(KEY)).build().unwrap();
        assert_eq!((tls.ca_pem(), tls.client_cert_pem()), (CA.as_bytes(), Some(CA.as_bytes())));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let sentinel = "s3ntinel-secret";
        let key = format!("-----BEGIN PRIVATE KEY-----\n{sentinel}\n-----END PRIVATE KEY-----\n");
        let tls = MqttTls::builder(CA).client_auth(CA, SecretString::from(key));
        let builder =
            MqttConfig::builder("broker", 8883).credentials("edge-7", SecretString::from(sentinel)).tls(tls.clone().build().unwrap());
        let config = builder.clone().build().unwrap();
        for text in [format!("{tls:?}"), format!("{builder:?}"), format!("{config:?}"), format!("{:?}", config.tls())] {
            assert!(!text.contains(sentinel), "{text}");
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_a_cap_that_grows_then_saturates() {
        let (initial, max) = (Duration::from_millis(500), Duration::from_secs(30));
        let caps: Vec<Duration> = (0..12).map(|a| backoff_cap(a, initial, max)).collect();
        assert_eq!(caps[0], initial);
        assert_eq!(caps[1], Duration::from_secs(1));
        assert_eq!(caps[5], Duration::from_secs(16));
        assert!(caps.windows(2).all(|w| w[0] <= w[1]));
        assert!(caps[6..].iter().all(|c| *c == max), "{caps:?}");
        assert_eq!(backoff_cap(u32::MAX, initial, max), max);
        for attempt in [0, 1, 3, 10, 40, u32::MAX] {
            let cap = backoff_cap(attempt, initial, max);
            for _ in 0..200 {
                assert!(backoff_delay(attempt, initial, max) <= cap);
            }
        }
        // Full jitter: the delays spread over the whole range, down to near zero.
        let delays: Vec<Duration> = (0..2000).map(|_| backoff_delay(20, initial, max)).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_secs(3)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(27)));
        let mean = delays.iter().sum::<Duration>() / 2000;
        assert!((Duration::from_secs(12)..Duration::from_secs(18)).contains(&mean), "{mean:?}");
    }
}
