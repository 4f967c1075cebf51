//! The email notifier: a plain-text message over SMTP (lettre, tokio, rustls with aws-lc-rs).
//!
//! As the product: an SMTP server, its port, a TLS mode (none, STARTTLS, or implicit TLS),
//! optional credentials, a sender and 1 to 10 recipients. The subject and the body are templates
//! with the notification placeholders (`${name}`, `${contents}`, `${alerttime}`, `${level}`,
//! `${link}`, `${address}`, `${systemtime}`; times in RFC 3339). The message's `Message-ID` is made
//! from the notification's id, so a mail client can tell a resent alarm from a new one.
//!
//! The password is a [`SecretString`]: `Debug` and errors never show it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::{Clock, SystemClock};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{Notification, Notifier, RetryPolicy, Template, error_chain};
use crate::error::{Error, Result};

/// At most this many recipients (the product's limit).
pub const MAX_RECIPIENTS: usize = 10;
/// The subject template used when none is set.
pub const DEFAULT_SUBJECT: &str = "[ECP ${level}] ${name}";
/// The body template used when none is set.
pub const DEFAULT_BODY: &str = "Alarm: ${name}\nLevel: ${level}\nTime: ${alerttime}\nInstance: ${address}\n\n${contents}\n\n${link}\n";
/// The default timeout of one attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SmtpTls {
    /// Plain text (port 25 by default). Credentials then cross the network in the clear.
    None,
    /// Plain text upgraded with `STARTTLS`, which must succeed (port 587 by default).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465 by default).
    Implicit,
}

impl SmtpTls {
    /// The usual port of the mode: 25, 587 or 465.
    pub const fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
        }
    }
}

/// Builds an [`EmailNotifier`]; see [`EmailNotifier::builder`].
#[must_use]
pub struct EmailNotifierBuilder {
    name: String,
    host: String,
    port: Option<u16>,
    tls: SmtpTls,
    root_certificates: Vec<Vec<u8>>,
    credentials: Option<(String, SecretString)>,
    from: String,
    recipients: Vec<String>,
    subject: Option<String>,
    body: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for EmailNotifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifierBuilder")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from)
            .field("recipients", &self.recipients)
            .finish_non_exhaustive()
    }
}

impl EmailNotifierBuilder {
    /// The port (default: [`SmtpTls::default_port`] of the TLS mode).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The TLS mode (default STARTTLS).
    pub fn tls(mut self, tls: SmtpTls) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts this CA (PEM) besides the platform's trust store, for a server with a certificate
    /// of a private CA.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// Log in with these credentials (`AUTH PLAIN` or `AUTH LOGIN`).
    pub fn credentials(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.credentials = Some((username.into(), password));
        self
    }

    /// Adds a recipient (`alice@example.com` or `Alice <alice@example.com>`).
    pub fn recipient(mut self, address: impl Into<String>) -> Self {
        self.recipients.push(address.into());
        self
    }

    /// Adds recipients.
    pub fn recipients<I, S>(mut self, addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.recipients.extend(addresses.into_iter().map(Into::into));
        self
    }

    /// The subject template (default [`DEFAULT_SUBJECT`]). Line breaks in it, or in the values,
    /// become spaces.
    pub fn subject(mut self, template: impl Into<String>) -> Self {
        self.subject = Some(template.into());
        self
    }

    /// The body template (default [`DEFAULT_BODY`]).
    pub fn body(mut self, template: impl Into<String>) -> Self {
        self.body = Some(template.into());
        self
    }

    /// The timeout of one attempt, connection to `QUIT` (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts in all, 1 to [`MAX_ATTEMPTS`](super::MAX_ATTEMPTS) (default 3). Only network
    /// failures, timeouts and transient (`4xx`) answers are retried.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.retry.attempts = attempts;
        self
    }

    /// The wait before the first retry, doubled for each next one (default 500 ms).
    pub fn base_delay(mut self, base_delay: Duration) -> Self {
        self.retry.base_delay = base_delay;
        self
    }

    /// The whole retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The clock of `${systemtime}` and the message's `Date` (default the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The notifier.
    ///
    /// # Errors
    /// An invalid-input error for: an empty name or host; port 0; an invalid sender or
    /// recipient address; no recipient, more than [`MAX_RECIPIENTS`], or one twice; a template
    /// with an unknown placeholder; a timeout outside 1 ms to 5 minutes; a retry policy out of
    /// range; a root certificate that is not PEM; TLS that cannot be set up.
    pub fn build(self) -> Result<EmailNotifier> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid("email.name", "must not be empty"));
        }
        let host = self.host.trim();
        if host.is_empty() || host.len() > 253 || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(Error::invalid("email.host", "must be a host name or an IP address"));
        }
        let port = self.port.unwrap_or(self.tls.default_port());
        if port == 0 {
            return Err(Error::invalid("email.port", "must not be 0"));
        }
        let from: Mailbox = self.from.parse().map_err(|_| Error::invalid("email.from", "is not a valid email address"))?;
        if self.recipients.is_empty() || self.recipients.len() > MAX_RECIPIENTS {
            return Err(Error::invalid("email.recipients", format!("must be 1 to {MAX_RECIPIENTS} addresses")));
        }
        let mut to = Vec::with_capacity(self.recipients.len());
        let mut seen = BTreeSet::new();
        for r in &self.recipients {
            let mb: Mailbox =
                r.parse().map_err(|_| Error::invalid("email.recipients", format!("{:?} is not a valid email address", clip(r))))?;
            if !seen.insert(mb.email.to_string().to_ascii_lowercase()) {
                return Err(Error::invalid("email.recipients", format!("{} is listed twice", mb.email)));
            }
            to.push(mb);
        }
        let subject = Template::parse("email.subject", self.subject.as_deref().unwrap_or(DEFAULT_SUBJECT))?;
        let body = Template::parse("email.body", self.body.as_deref().unwrap_or(DEFAULT_BODY))?;
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(300) {
            return Err(Error::invalid("email.timeout", "must be between 1 ms and 5 minutes"));
        }
        self.retry.check()?;
        let tls = match self.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(tls_parameters(host, &self.root_certificates)?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters(host, &self.root_certificates)?),
        };
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).tls(tls).timeout(Some(self.timeout));
        if let Some((user, password)) = &self.credentials {
            transport = transport
                .credentials(Credentials::new(user.clone(), password.expose_secret().to_owned()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(EmailNotifier {
            name: self.name,
            host: host.to_owned(),
            port,
            tls: self.tls,
            username: self.credentials.map(|(u, _)| u),
            from,
            to,
            subject,
            body,
            timeout: self.timeout,
            retry: self.retry,
            clock: self.clock,
            transport: transport.build(),
        })
    }
}

fn tls_parameters(host: &str, roots: &[Vec<u8>]) -> Result<TlsParameters> {
    let mut builder = TlsParameters::builder(host.to_owned());
    for pem in roots {
        // lettre takes a PEM without any certificate in it without complaint: look for one first
        let has_cert = pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----");
        let cert = Certificate::from_pem(pem)
            .ok()
            .filter(|_| has_cert)
            .ok_or_else(|| Error::invalid("email.root_certificate", "is not a PEM certificate"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| {
        tracing::debug!(error = %e, "cannot set up TLS for SMTP");
        Error::invalid("email.tls", "cannot be set up (TLS roots?)")
    })
}

/// At most 80 characters of a value, for error messages.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A notifier that sends an email through an SMTP server.
#[derive(Clone)]
pub struct EmailNotifier {
    name: String,
    host: String,
    port: u16,
    tls: SmtpTls,
    username: Option<String>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: Template,
    body: Template,
    timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("from", &self.from.to_string())
            .field("to", &self.to.iter().map(ToString::to_string).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    /// A builder for a notifier named `name` (in reports and errors) that sends through the SMTP
    /// server `host` from `from` (`alarms@example.com` or `ECP <alarms@example.com>`).
    pub fn builder(name: impl Into<String>, host: impl Into<String>, from: impl Into<String>) -> EmailNotifierBuilder {
        EmailNotifierBuilder {
            name: name.into(),
            host: host.into(),
            port: None,
            tls: SmtpTls::default(),
            root_certificates: Vec::new(),
            credentials: None,
            from: from.into(),
            recipients: Vec::new(),
            subject: None,
            body: None,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The rendered subject and body for `n`, now.
    pub fn render(&self, n: &Notification) -> (String, String) {
        let now = self.clock.now();
        let subject = self.subject.render_text(n, now).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        (subject, self.body.render_text(n, now))
    }

    fn message(&self, n: &Notification) -> Result<Message> {
        let (subject, body) = self.render(n);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .date(self.clock.now().into())
            .message_id(Some(format!("<{}@{}>", n.id, self.from.email.domain())))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder.body(body).map_err(|e| Error::Notify {
            notifier: self.name.clone(),
            attempts: 0,
            reason: format!("cannot build the message: {e}"),
        })
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(&self, n: &Notification) -> Result<()> {
        let message = self.message(n)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (retryable, reason) = match tokio::time::timeout(self.timeout, self.transport.send(message.clone())).await {
                Ok(Ok(_)) => return Ok(()),
                Err(_) => (true, format!("no answer within {:?}", self.timeout)),
                Ok(Err(e)) => describe(&e),
            };
            if retryable && attempt < self.retry.attempts {
                let wait = self.retry.delay(attempt);
                tracing::debug!(notifier = %self.name, attempt, %reason, ?wait, "email attempt failed; retrying");
                tokio::time::sleep(wait).await;
            } else {
                return Err(Error::Notify { notifier: self.name.clone(), attempts: attempt, reason });
            }
        }
    }
}

/// Whether an SMTP error may pass, and what it was (the server's own words included).
fn describe(e: &lettre::transport::smtp::Error) -> (bool, String) {
    let chain = error_chain(e);
    let code = e.status().map(|c| c.to_string());
    match code.as_deref() {
        Some("535" | "534" | "530" | "538") => (false, format!("the SMTP server refused the credentials: {chain}")),
        _ if e.is_client() && chain.contains("authentication mechanism") => {
            (false, format!("the SMTP server offers no usable login (AUTH PLAIN or LOGIN): {chain}"))
        }
        _ if e.is_tls() || is_invalid_data(e) => (false, format!("TLS with the SMTP server failed: {chain}")),
        _ if e.is_timeout() => (true, format!("timed out: {chain}")),
        _ if e.is_permanent() || e.is_client() => (false, chain),
        _ => (true, chain),
    }
}

/// Whether an I/O error of kind `InvalidData` is among the causes: how a failed TLS handshake
/// (an untrusted certificate, a wrong host name) reaches lettre's connection errors.
fn is_invalid_data(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData) {
            return true;
        }
        cur = err.source();
    }
    false
}
