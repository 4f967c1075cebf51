//! A small real SMTP server for tests, on a free loopback port, that keeps what it receives.
//!
//! It speaks enough of RFC 5321 (and RFC 4954's `AUTH PLAIN` and `AUTH LOGIN`) for real clients
//! such as lettre: the `220` greeting, `EHLO`/`HELO` (advertising `AUTH PLAIN LOGIN`, `SIZE` and
//! `8BITMIME`, and `STARTTLS` when configured), `AUTH`, `MAIL FROM`, `RCPT TO`, `DATA` (with dot-unstuffing),
//! `RSET`, `NOOP` and `QUIT`. With credentials configured, mail is only taken after a successful
//! `AUTH`, and wrong credentials get `535`. With [`SmtpSinkBuilder::implicit_tls`] it speaks TLS
//! from the first byte (as on port 465), with [`SmtpSinkBuilder::starttls`] it offers `STARTTLS`
//! (as on port 587); both with the given certificate (rustls, aws-lc-rs).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ecp_testkit::smtp::SmtpSinkError> {
//! use std::time::Duration;
//! use ecp_testkit::smtp::SmtpSink;
//!
//! let sink = SmtpSink::builder().credentials("alerts", "s3cret").start().await?;
//! // ... point an SMTP client at sink.host():sink.port() ...
//! let messages = sink.wait_for(1, Duration::from_secs(5)).await?;
//! assert_eq!(messages[0].header("Subject").as_deref(), Some("hello"));
//! # Ok(()) }
//! ```
//!
//! Memory is bounded: a command line is at most 1000 bytes, a message at most
//! [`SmtpSinkBuilder::max_message_size`] (larger ones get `552`), at most
//! [`SmtpSinkBuilder::max_messages`] are kept (then `452`), and at most 100 recipients per message.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// At most this many bytes in a command line, CRLF included (RFC 5321 §4.5.3.1.4 says 512; AUTH
/// lines are longer).
const MAX_LINE: usize = 1000;
/// At most this many bytes in one line of a message.
const MAX_DATA_LINE: usize = 64 * 1024;
/// At most this many recipients of one message.
const MAX_RECIPIENTS: usize = 100;
/// A session that says nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong starting the sink or waiting for messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpSinkError {
    /// The listening socket could not be opened.
    #[error("cannot listen on 127.0.0.1")]
    Bind(#[source] io::Error),
    /// The TLS certificate or key could not be used.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// Fewer messages than awaited arrived in time.
    #[error("waited {waited:?} for {wanted} message(s), got {got}")]
    Timeout {
        /// How many were awaited.
        wanted: usize,
        /// How many arrived.
        got: usize,
        /// How long it waited.
        waited: Duration,
    },
}

/// A message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedMessage {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets, in order.
    pub recipients: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, lines ending in CRLF, without the final
    /// `.` line (invalid UTF-8 replaced by U+FFFD).
    pub data: String,
    /// The user that logged in on the session, if any.
    pub authenticated_as: Option<String>,
}

impl ReceivedMessage {
    /// The header part, up to the first empty line.
    pub fn headers(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or(self.data.as_str(), |(h, _)| h)
    }

    /// The body, after the first empty line (as sent: not decoded).
    pub fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// The first header of this name (case-insensitive), unfolded, trimmed; as sent (RFC 2047
    /// encoded words are not decoded).
    pub fn header(&self, name: &str) -> Option<String> {
        let unfolded = self.headers().replace("\r\n ", " ").replace("\r\n\t", "\t");
        unfolded.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Builds an [`SmtpSink`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SmtpSinkBuilder {
    credentials: Option<(String, String)>,
    max_message_size: usize,
    max_messages: usize,
    tls: Option<(TlsMode, String, String)>,
}

/// When the sink speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Implicit,
    StartTls,
}

impl Default for SmtpSinkBuilder {
    fn default() -> Self {
        SmtpSinkBuilder { credentials: None, max_message_size: 1024 * 1024, max_messages: 1000, tls: None }
    }
}

impl SmtpSinkBuilder {
    /// Require `AUTH` with this user and password before `MAIL`.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// The largest message taken, in bytes (default 1 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many messages are kept (default 1000); further ones get `452`.
    pub fn max_messages(mut self, n: usize) -> Self {
        self.max_messages = n;
        self
    }

    /// Speak TLS from the first byte with this certificate chain and private key (PEM).
    pub fn implicit_tls(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some((TlsMode::Implicit, cert_pem.into(), key_pem.into()));
        self
    }

    /// Offer `STARTTLS` with this certificate chain and private key (PEM).
    pub fn starttls(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some((TlsMode::StartTls, cert_pem.into(), key_pem.into()));
        self
    }

    /// Starts the sink on `127.0.0.1` and a free port.
    ///
    /// # Errors
    /// [`SmtpSinkError::Bind`] when no socket can be opened, [`SmtpSinkError::Tls`] for a
    /// certificate or key that cannot be used.
    pub async fn start(self) -> Result<SmtpSink, SmtpSinkError> {
        let acceptor = self.tls.as_ref().map(|(mode, cert, key)| acceptor(cert, key).map(|a| (*mode, a))).transpose()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(SmtpSinkError::Bind)?;
        let addr = listener.local_addr().map_err(SmtpSinkError::Bind)?;
        let shared = Arc::new(Shared {
            config: self,
            messages: Mutex::new(Vec::new()),
            auth_failures: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
        });
        let state = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let state = Arc::clone(&state);
                            let acceptor = acceptor.clone();
                            sessions.spawn(async move {
                                let ended = async {
                                    match acceptor {
                                        None => session(stream, &state, false, true).await.map(drop),
                                        Some((TlsMode::Implicit, acceptor)) => session(handshake(&acceptor, stream).await?, &state, false, true).await.map(drop),
                                        Some((TlsMode::StartTls, acceptor)) => match session(stream, &state, true, true).await? {
                                            None => Ok(()),
                                            // the client sends EHLO again; no new greeting
                                            Some(plain) => session(handshake(&acceptor, plain).await?, &state, false, false).await.map(drop),
                                        },
                                    }
                                }
                                .await;
                                if let Err(e) = ended {
                                    eprintln!("smtp sink: session ended: {e}");
                                }
                            });
                        }
                        Err(e) => {
                            eprintln!("smtp sink: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    },
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(SmtpSink { addr, shared, accept })
    }
}

/// A TLS acceptor of this certificate chain and key (PEM), with aws-lc-rs.
fn acceptor(cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor, SmtpSinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |e: &dyn std::fmt::Display| SmtpSinkError::Tls(e.to_string());
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: tokio::net::TcpStream,
) -> io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    tokio::time::timeout(IDLE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))?
}

struct Shared {
    config: SmtpSinkBuilder,
    messages: Mutex<Vec<ReceivedMessage>>,
    auth_failures: AtomicUsize,
    rejected: AtomicUsize,
}

impl Shared {
    fn messages(&self) -> MutexGuard<'_, Vec<ReceivedMessage>> {
        // A panicking session cannot leave the list half-written: pushing is its only change.
        self.messages.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running SMTP sink; dropping it stops it (and its sessions).
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink").field("addr", &self.addr).field("messages", &self.shared.messages().len()).finish_non_exhaustive()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl SmtpSink {
    /// A builder: no credentials, messages up to 1 MiB, 1000 kept.
    pub fn builder() -> SmtpSinkBuilder {
        SmtpSinkBuilder::default()
    }

    /// Starts a sink without credentials.
    ///
    /// # Errors
    /// [`SmtpSinkError::Bind`] when no socket can be opened.
    pub async fn start() -> Result<SmtpSink, SmtpSinkError> {
        SmtpSink::builder().start().await
    }

    /// `"127.0.0.1"`.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared.messages().clone()
    }

    /// How many `AUTH` attempts were refused.
    pub fn auth_failures(&self) -> usize {
        self.shared.auth_failures.load(Ordering::Relaxed)
    }

    /// How many messages were refused (too large, or the sink full).
    pub fn rejected(&self) -> usize {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` messages arrived and returns all of them.
    ///
    /// # Errors
    /// [`SmtpSinkError::Timeout`] when fewer arrived within `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<ReceivedMessage>, SmtpSinkError> {
        let start = tokio::time::Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return Ok(messages);
            }
            if start.elapsed() >= timeout {
                return Err(SmtpSinkError::Timeout { wanted: n, got: messages.len(), waited: timeout });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One line read from the client.
enum Line {
    /// The line without its CRLF (or LF).
    Text(String),
    /// The line was longer than allowed (and was skipped).
    TooLong,
    /// The client closed the connection.
    Eof,
}

/// Reads a line of at most `max` bytes; a longer one is consumed and reported.
async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>, max: usize) -> io::Result<Line> {
    let mut buf = Vec::new();
    let n = tokio::time::timeout(IDLE_TIMEOUT, (&mut *r).take(max as u64 + 1).read_until(b'\n', &mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client idle"))??;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() <= max {
            return Ok(Line::Eof); // the connection closed mid-line
        }
        loop {
            buf.clear();
            let n = (&mut *r).take(MAX_DATA_LINE as u64).read_until(b'\n', &mut buf).await?;
            if n == 0 || buf.last() == Some(&b'\n') {
                return Ok(Line::TooLong);
            }
        }
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Line::Text(String::from_utf8_lossy(&buf).into_owned()))
}

/// The path inside `<...>` after `FROM:` / `TO:` (case-insensitive), and the rest (parameters).
fn path_arg<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

/// Runs a session; the stream back when the client asked for `STARTTLS` (offered with
/// `offer_starttls`), `None` when it ended.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(stream: S, state: &Shared, offer_starttls: bool, greet: bool) -> io::Result<Option<S>> {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let cfg = &state.config;
    if greet {
        w.write_all(b"220 ecp-testkit SMTP sink ready\r\n").await?;
    }
    let mut authed: Option<String> = None;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        let line = match read_line(&mut r, MAX_LINE).await? {
            Line::Eof => return Ok(None),
            Line::TooLong => {
                w.write_all(b"500 5.5.2 line too long\r\n").await?;
                continue;
            }
            Line::Text(l) => l,
        };
        let (verb, arg) = line.split_once(' ').map_or((line.as_str(), ""), |(v, a)| (v, a.trim()));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                from = None;
                rcpts.clear();
                let starttls = if offer_starttls { "250-STARTTLS\r\n" } else { "" };
                format!(
                    "250-ecp-testkit greets {arg}\r\n{starttls}250-AUTH PLAIN LOGIN\r\n250-SIZE {}\r\n250 8BITMIME\r\n",
                    cfg.max_message_size
                )
            }
            "HELO" => {
                from = None;
                rcpts.clear();
                "250 ecp-testkit\r\n".into()
            }
            "AUTH" if authed.is_some() => "503 5.5.1 already authenticated\r\n".into(),
            "AUTH" => match auth(&mut r, &mut w, arg).await? {
                None => "501 5.5.2 malformed or cancelled AUTH\r\n".into(),
                Some((user, password)) => {
                    if cfg.credentials.as_ref().is_some_and(|(u, p)| *u == user && *p == password) {
                        authed = Some(user);
                        "235 2.7.0 authentication successful\r\n".into()
                    } else {
                        state.auth_failures.fetch_add(1, Ordering::Relaxed);
                        "535 5.7.8 authentication credentials invalid\r\n".into()
                    }
                }
            },
            "MAIL" => match path_arg(arg, "FROM:") {
                _ if cfg.credentials.is_some() && authed.is_none() => "530 5.7.0 authentication required\r\n".into(),
                _ if from.is_some() => "503 5.5.1 nested MAIL command\r\n".into(),
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into(),
                Some((_, params)) if declared_size(params).is_some_and(|s| s > cfg.max_message_size) => {
                    "552 5.3.4 message size exceeds the limit\r\n".into()
                }
                Some((path, _)) => {
                    from = Some(path.to_owned());
                    rcpts.clear();
                    "250 2.1.0 ok\r\n".into()
                }
            },
            "RCPT" => match path_arg(arg, "TO:") {
                _ if from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
                None => "501 5.5.4 syntax: RCPT TO:<address>\r\n".into(),
                Some(_) if rcpts.len() >= MAX_RECIPIENTS => "452 4.5.3 too many recipients\r\n".into(),
                Some((path, _)) => {
                    rcpts.push(path.to_owned());
                    "250 2.1.5 ok\r\n".into()
                }
            },
            "DATA" => match &from {
                None => "503 5.5.1 MAIL first\r\n".into(),
                Some(_) if rcpts.is_empty() => "554 5.5.1 no valid recipients\r\n".into(),
                Some(sender) => {
                    w.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                    let data = read_data(&mut r, cfg.max_message_size).await?;
                    let reply = match data {
                        None => {
                            state.rejected.fetch_add(1, Ordering::Relaxed);
                            "552 5.3.4 message size exceeds the limit\r\n".to_owned()
                        }
                        Some(data) => {
                            let mut messages = state.messages();
                            if messages.len() >= cfg.max_messages {
                                state.rejected.fetch_add(1, Ordering::Relaxed);
                                "452 4.3.1 the sink is full\r\n".to_owned()
                            } else {
                                messages.push(ReceivedMessage {
                                    from: sender.clone(),
                                    recipients: std::mem::take(&mut rcpts),
                                    data,
                                    authenticated_as: authed.clone(),
                                });
                                "250 2.0.0 ok: queued\r\n".to_owned()
                            }
                        }
                    };
                    from = None;
                    rcpts.clear();
                    reply
                }
            },
            "RSET" => {
                from = None;
                rcpts.clear();
                "250 2.0.0 ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 ok\r\n".into(),
            "VRFY" => "252 2.5.0 cannot verify\r\n".into(),
            "QUIT" => {
                w.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(None);
            }
            "STARTTLS" if !offer_starttls => "502 5.5.1 STARTTLS is not offered\r\n".into(),
            "STARTTLS" if !arg.is_empty() => "501 5.5.4 STARTTLS takes no parameters\r\n".into(),
            "STARTTLS" => {
                w.write_all(b"220 2.0.0 ready to start TLS\r\n").await?;
                if !r.buffer().is_empty() {
                    // RFC 3207: nothing may follow STARTTLS before the handshake
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "data pipelined after STARTTLS"));
                }
                return Ok(Some(r.into_inner().unsplit(w)));
            }
            _ => "500 5.5.2 command not recognized\r\n".into(),
        };
        w.write_all(reply.as_bytes()).await?;
    }
}

/// `SIZE=n` among the `MAIL FROM` parameters.
fn declared_size(params: &str) -> Option<usize> {
    params.split_whitespace().find_map(|p| p.get(..5).filter(|k| k.eq_ignore_ascii_case("SIZE=")).and_then(|_| p[5..].parse().ok()))
}

/// The message after `354`, up to the `.` line, dot-unstuffed; `None` when it was too large
/// (it is read to its end all the same).
async fn read_data<R: AsyncRead + Unpin>(r: &mut BufReader<R>, max: usize) -> io::Result<Option<String>> {
    let mut data = String::new();
    let mut too_large = false;
    loop {
        match read_line(r, MAX_DATA_LINE).await? {
            Line::Eof => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed during DATA")),
            Line::TooLong => too_large = true,
            Line::Text(line) if line == "." => return Ok((!too_large).then_some(data)),
            Line::Text(line) => {
                let line = line.strip_prefix('.').unwrap_or(&line);
                if data.len() + line.len() + 2 > max {
                    too_large = true;
                }
                if !too_large {
                    data.push_str(line);
                    data.push_str("\r\n");
                }
            }
        }
    }
}

/// Runs an `AUTH` exchange; the user and password, or `None` for a malformed or cancelled one.
async fn auth<R, W>(r: &mut BufReader<R>, w: &mut W, arg: &str) -> io::Result<Option<(String, String)>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mechanism, initial) = arg.split_once(' ').map_or((arg, None), |(m, i)| (m, Some(i.trim())));
    async fn challenge<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        r: &mut BufReader<R>,
        w: &mut W,
        prompt: &str,
    ) -> io::Result<Option<Vec<u8>>> {
        w.write_all(format!("334 {prompt}\r\n").as_bytes()).await?;
        Ok(match read_line(r, MAX_LINE).await? {
            Line::Text(t) if t != "*" => B64.decode(t.trim()).ok(),
            _ => None,
        })
    }
    let text = |b: Vec<u8>| String::from_utf8(b).ok();
    match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let decoded = match initial {
                Some("=") => Some(Vec::new()),
                Some(i) => B64.decode(i).ok(),
                None => challenge(r, w, "").await?,
            };
            let Some(decoded) = decoded.and_then(text) else { return Ok(None) };
            // authzid NUL authcid NUL passwd
            let mut parts = decoded.splitn(3, '\0');
            let (_authz, user, password) = (parts.next(), parts.next(), parts.next());
            Ok(user.zip(password).map(|(u, p)| (u.to_owned(), p.to_owned())))
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => B64.decode(i).ok(),
                None => challenge(r, w, &B64.encode("Username:")).await?,
            };
            let Some(user) = user.and_then(text) else { return Ok(None) };
            let Some(password) = challenge(r, w, &B64.encode("Password:")).await?.and_then(text) else { return Ok(None) };
            Ok(Some((user, password)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    async fn expect(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, code: &str) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            all.push_str(&line);
            assert!(line.starts_with(code), "expected {code}, got {all:?}");
            if line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    #[tokio::test]
    async fn a_raw_session_with_auth_and_dot_stuffing() {
        let sink = SmtpSink::builder().credentials("u", "p").max_message_size(200).start().await.unwrap();
        let (r, mut w) = TcpStream::connect(sink.addr()).await.unwrap().into_split();
        let mut r = BufReader::new(r);
        expect(&mut r, "220").await;
        w.write_all(b"EHLO me\r\n").await.unwrap();
        assert!(expect(&mut r, "250").await.contains("AUTH PLAIN LOGIN"));
        w.write_all(b"MAIL FROM:<a@x>\r\n").await.unwrap();
        expect(&mut r, "530").await;
        w.write_all(format!("AUTH PLAIN {}\r\n", B64.encode("\0u\0wrong")).as_bytes()).await.unwrap();
        expect(&mut r, "535").await;
        w.write_all(b"AUTH LOGIN\r\n").await.unwrap();
        expect(&mut r, "334").await;
        w.write_all(format!("{}\r\n", B64.encode("u")).as_bytes()).await.unwrap();
        expect(&mut r, "334").await;
        w.write_all(format!("{}\r\n", B64.encode("p")).as_bytes()).await.unwrap();
        expect(&mut r, "235").await;
        w.write_all(b"MAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@z>\r\nDATA\r\n").await.unwrap();
        for code in ["250", "250", "250", "354"] {
            expect(&mut r, code).await;
        }
        w.write_all(b"Subject: hi\r\n\r\n..leading dot\r\nx\r\n.\r\n").await.unwrap();
        expect(&mut r, "250").await;
        // too large: refused, and the session goes on
        w.write_all(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n").await.unwrap();
        for code in ["250", "250", "354"] {
            expect(&mut r, code).await;
        }
        w.write_all(format!("{}\r\n.\r\n", "y".repeat(300)).as_bytes()).await.unwrap();
        expect(&mut r, "552").await;
        w.write_all(b"RCPT TO:<b@y>\r\nNOOP\r\nBOGUS\r\nQUIT\r\n").await.unwrap();
        for code in ["503", "250", "500", "221"] {
            expect(&mut r, code).await;
        }
        let m = sink.wait_for(1, Duration::from_secs(1)).await.unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].from, "a@x");
        assert_eq!(m[0].recipients, ["b@y", "c@z"]);
        assert_eq!(m[0].header("subject").as_deref(), Some("hi"));
        assert_eq!(m[0].body(), ".leading dot\r\nx\r\n");
        assert_eq!(m[0].authenticated_as.as_deref(), Some("u"));
        assert_eq!((sink.auth_failures(), sink.rejected()), (1, 1));
        assert!(matches!(sink.wait_for(2, Duration::from_millis(30)).await, Err(SmtpSinkError::Timeout { wanted: 2, got: 1, .. })));
    }

    #[tokio::test]
    async fn long_lines_and_garbage_do_not_break_the_sink() {
        let sink = SmtpSink::start().await.unwrap();
        let (r, mut w) = TcpStream::connect(sink.addr()).await.unwrap().into_split();
        let mut r = BufReader::new(r);
        expect(&mut r, "220").await;
        w.write_all(&vec![b'A'; 5000]).await.unwrap();
        w.write_all(b"\r\nAUTH PLAIN !!!\r\nAUTH CRAM-MD5\r\nMAIL FROM: nobrackets\r\nQUIT\r\n").await.unwrap();
        for code in ["500", "501", "501", "501", "221"] {
            expect(&mut r, code).await;
        }
    }
}
