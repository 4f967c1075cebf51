//! Pushing log records to a syslog server: RFC 5424 messages over UDP (RFC 5426) or TCP with
//! octet-counting framing (RFC 6587).

use std::fmt;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::{Level, LogRecord, LogSink, truncate_str};
use crate::error::{Error, Result};

/// The SD-ID of the structured-data element carrying product, service, org and project.
///
/// 32473 is the private enterprise number RFC 5612 reserves for documentation and examples.
pub const SD_ID: &str = "ecp@32473";
/// The SD-ID of the element carrying a record's fields.
pub const SD_ID_FIELDS: &str = "fields@32473";
/// The smallest allowed message limit: the header and the main SD element always fit in it.
pub const MIN_MESSAGE_LEN: usize = 2048;
/// The largest allowed message limit over UDP (an IPv4 datagram's payload).
pub const MAX_UDP_MESSAGE_LEN: usize = 65_507;
/// The largest allowed message limit over TCP.
pub const MAX_TCP_MESSAGE_LEN: usize = 1 << 20;
/// At most this many bytes in the tag (APP-NAME), per RFC 5424.
pub const MAX_TAG_LEN: usize = 48;

/// How records travel to the syslog server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyslogNetwork {
    /// One datagram per record (RFC 5426), cut to the message limit (default 2048 bytes).
    Udp,
    /// A stream with octet-counting framing (`LEN SP MSG`, RFC 6587), message limit 8192 bytes by
    /// default; reconnects when the connection is lost.
    Tcp,
}

impl SyslogNetwork {
    /// `"udp"` or `"tcp"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SyslogNetwork::Udp => "udp",
            SyslogNetwork::Tcp => "tcp",
        }
    }

    /// `"udp"` or `"tcp"`, case-insensitively.
    ///
    /// # Errors
    /// `InvalidInput` for anything else.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(SyslogNetwork::Udp),
            "tcp" => Ok(SyslogNetwork::Tcp),
            _ => Err(Error::invalid("network", "must be udp or tcp")),
        }
    }
}

impl fmt::Display for SyslogNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A syslog facility (RFC 5424 §6.2.1), code 0 to 23.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Facility(u8);

impl Facility {
    /// 0: kernel messages (what the product's `priority = 3` selects, see [`SyslogConfigBuilder::product_priority`]).
    pub const KERN: Facility = Facility(0);
    /// 1: user-level messages, the default.
    pub const USER: Facility = Facility(1);
    /// 3: system daemons.
    pub const DAEMON: Facility = Facility(3);
    /// 4: security/authorization messages.
    pub const AUTH: Facility = Facility(4);
    /// 13: log audit.
    pub const AUDIT: Facility = Facility(13);
    /// 16: local use 0 (`local0`); `local1` to `local7` are 17 to 23, see [`Facility::local`].
    pub const LOCAL0: Facility = Facility(16);

    /// A facility by code.
    ///
    /// # Errors
    /// `InvalidInput` above 23.
    pub fn from_code(code: u8) -> Result<Self> {
        if code <= 23 { Ok(Facility(code)) } else { Err(Error::invalid("facility", "must be 0 to 23")) }
    }

    /// `local0` to `local7`.
    ///
    /// # Errors
    /// `InvalidInput` above 7.
    pub fn local(n: u8) -> Result<Self> {
        if n <= 7 { Ok(Facility(16 + n)) } else { Err(Error::invalid("facility", "local facilities are 0 to 7")) }
    }

    /// The code.
    pub const fn code(self) -> u8 {
        self.0
    }
}

/// Where and how a [`SyslogSink`] sends, as the product's `{enabled, addr, network, priority, tag}`.
/// Build with [`SyslogConfig::builder`] (or [`SyslogConfig::from_product`]); `build()` validates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyslogConfig {
    enabled: bool,
    addr: String,
    network: SyslogNetwork,
    facility: Facility,
    tag: String,
    hostname: String,
    min_level: Option<Level>,
    max_message_len: usize,
    connect_timeout: Duration,
    write_timeout: Duration,
}

impl SyslogConfig {
    /// A builder for a server at `addr` (`host:port`), starting from the defaults: enabled, over
    /// UDP, facility `user`, tag `ecp`, hostname `-`, every level, 2048-byte messages over UDP
    /// (8192 over TCP), 5 s to connect and 5 s to write.
    pub fn builder(addr: impl Into<String>) -> SyslogConfigBuilder {
        SyslogConfigBuilder {
            config: SyslogConfig {
                enabled: true,
                addr: addr.into(),
                network: SyslogNetwork::Udp,
                facility: Facility::USER,
                tag: "ecp".into(),
                hostname: "-".into(),
                min_level: None,
                max_message_len: 0,
                connect_timeout: Duration::from_secs(5),
                write_timeout: Duration::from_secs(5),
            },
            priority: None,
            max_message_len: None,
        }
    }

    /// Whether records are sent at all (a disabled sink takes and drops them).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The server, `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// UDP or TCP.
    pub fn network(&self) -> SyslogNetwork {
        self.network
    }

    /// The facility of every message; the severity is each record's level.
    pub fn facility(&self) -> Facility {
        self.facility
    }

    /// The APP-NAME (the product's `tag`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The HOSTNAME field (`-` when unknown).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Only records at this level or more severe are sent (`None`: every record).
    pub fn min_level(&self) -> Option<Level> {
        self.min_level
    }

    /// At most this many bytes per message (without the TCP length prefix); longer ones are cut.
    pub fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// How long connecting (TCP) or resolving may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long writing one batch may take.
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// The config as the product's API gives it: `{enabled, addr, network, priority, tag}`, with
    /// `priority` read as [`SyslogConfigBuilder::product_priority`] does.
    ///
    /// # Errors
    /// As [`SyslogConfigBuilder::build`], and for a network other than `udp`/`tcp`.
    pub fn from_product(enabled: bool, addr: &str, network: &str, priority: u8, tag: &str) -> Result<Self> {
        SyslogConfig::builder(addr).enabled(enabled).network(SyslogNetwork::parse(network)?).product_priority(priority).tag(tag).build()
    }
}

/// Builds a [`SyslogConfig`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct SyslogConfigBuilder {
    config: SyslogConfig,
    priority: Option<u8>,
    max_message_len: Option<usize>,
}

impl SyslogConfigBuilder {
    /// Whether records are sent (default true).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// UDP or TCP (default UDP).
    pub fn network(mut self, network: SyslogNetwork) -> Self {
        self.config.network = network;
        self
    }

    /// The facility (default `user`; replaces an earlier [`product_priority`](Self::product_priority)).
    pub fn facility(mut self, facility: Facility) -> Self {
        self.config.facility = facility;
        self.priority = None;
        self
    }

    /// The product's `priority`, which is Go's `log/syslog` `Priority`: `facility << 3 | severity`.
    /// Its facility part becomes the facility of every message (the product's default `3` is
    /// facility `kern`, 0); its severity part is not used, because each message carries its own
    /// record's level, as the severity-specific writers of Go's `log/syslog` do. A priority above
    /// 191 is refused by [`SyslogConfigBuilder::build`]. Default: none, [`facility`](Self::facility)
    /// applies.
    pub fn product_priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The APP-NAME (default `ecp`; 1 to 48 printable ASCII characters).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.config.tag = tag.into();
        self
    }

    /// The HOSTNAME field (default `-`; 1 to 255 printable ASCII characters).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.config.hostname = hostname.into();
        self
    }

    /// Only records at `level` or more severe are sent (default: every record).
    pub fn min_level(mut self, level: Level) -> Self {
        self.config.min_level = Some(level);
        self
    }

    /// At most this many bytes per message (default 2048 over UDP, 8192 over TCP; from
    /// [`MIN_MESSAGE_LEN`] to the network's maximum).
    pub fn max_message_len(mut self, n: usize) -> Self {
        self.max_message_len = Some(n);
        self
    }

    /// How long connecting (TCP) or resolving may take (default 5 s; positive).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// How long writing a batch may take (default 5 s; positive).
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.config.write_timeout = d;
        self
    }

    /// The config.
    ///
    /// # Errors
    /// `InvalidInput` if `addr` is not `host:port` with a non-zero port, the tag is not 1 to 48
    /// printable ASCII characters, the hostname is not 1 to 255 printable ASCII characters, the
    /// priority is above 191, the message limit is below [`MIN_MESSAGE_LEN`] or above the
    /// network's maximum, or a timeout is zero.
    pub fn build(self) -> Result<SyslogConfig> {
        let mut c = self.config;
        if let Some(p) = self.priority {
            c.facility = Facility::from_code(p >> 3).map_err(|_| Error::invalid("priority", "must be 0 to 191"))?;
        }
        let (default_len, max_len) = match c.network {
            SyslogNetwork::Udp => (2048, MAX_UDP_MESSAGE_LEN),
            SyslogNetwork::Tcp => (8192, MAX_TCP_MESSAGE_LEN),
        };
        c.max_message_len = self.max_message_len.unwrap_or(default_len);
        if !(MIN_MESSAGE_LEN..=max_len).contains(&c.max_message_len) {
            return Err(Error::invalid("max_message_len", format!("must be {MIN_MESSAGE_LEN} to {max_len} over {}", c.network)));
        }
        check_addr(&c.addr)?;
        if !is_print_ascii(&c.tag, MAX_TAG_LEN) {
            return Err(Error::invalid("tag", format!("must be 1 to {MAX_TAG_LEN} printable ASCII characters")));
        }
        if !is_print_ascii(&c.hostname, 255) {
            return Err(Error::invalid("hostname", "must be 1 to 255 printable ASCII characters"));
        }
        if c.connect_timeout.is_zero() || c.write_timeout.is_zero() {
            return Err(Error::invalid("timeout", "must be positive"));
        }
        Ok(c)
    }
}

fn is_print_ascii(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

fn check_addr(addr: &str) -> Result<()> {
    let bad = || Error::invalid("addr", "must be host:port");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.len() > 253 || host.bytes().any(|b| !(33..=126).contains(&b)) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(bad()),
    }
}

/// Counters of a [`SyslogSink`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyslogStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Records refused by [`LogRecord::normalized`].
    pub refused_invalid: u64,
    /// Messages cut to the message limit.
    pub truncated: u64,
    /// TCP connections (or UDP sockets) opened after the first.
    pub reconnects: u64,
}

enum Conn {
    None,
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// A [`LogSink`] that pushes records to a syslog server as RFC 5424 messages:
///
/// ```text
/// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [ecp@32473 product=".." service=".." org=".." project=".."][fields@32473 k="v" ..] MSG
/// ```
///
/// - PRI is `facility * 8 + severity`, the severity being the record's [`Level`] code;
/// - TIMESTAMP is the record's time in UTC with at most microseconds;
/// - APP-NAME is the tag, PROCID this process's id, MSGID the product's name;
/// - the SD element [`SD_ID`] carries product and service, and org and project for records of a
///   project; [`SD_ID_FIELDS`] carries the record's fields when the message limit leaves room
///   for it (it is left out otherwise); `"`, `\` and `]` in values are escaped with `\`;
/// - MSG is the message as UTF-8, without a BOM, cut at a character boundary to fit the limit.
///
/// Over UDP each record is one datagram. Over TCP a batch is written as octet-counted frames on
/// one connection, kept open between writes; a connection the server closed is noticed before
/// writing, and a failed write is retried once on a new connection, so a record may arrive twice
/// but is not silently lost to a half-closed connection.
pub struct SyslogSink {
    config: SyslogConfig,
    procid: String,
    conn: tokio::sync::Mutex<Conn>,
    opened: AtomicU64,
    sent: AtomicU64,
    refused_invalid: AtomicU64,
    truncated: AtomicU64,
}

impl fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogSink").field("config", &self.config).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// A sink; it connects on the first write.
    pub fn new(config: SyslogConfig) -> Self {
        SyslogSink {
            config,
            procid: std::process::id().to_string(),
            conn: tokio::sync::Mutex::new(Conn::None),
            opened: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            refused_invalid: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
        }
    }

    /// The config.
    pub fn config(&self) -> &SyslogConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> SyslogStats {
        SyslogStats {
            sent: self.sent.load(Ordering::Relaxed),
            refused_invalid: self.refused_invalid.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            reconnects: self.opened.load(Ordering::Relaxed).saturating_sub(1),
        }
    }

    /// The RFC 5424 message of a record (without TCP framing), within the message limit.
    /// The record should be [normalized](LogRecord::normalized) (sends do it).
    pub fn format(&self, r: &LogRecord) -> String {
        let c = &self.config;
        let mut out = String::with_capacity(256 + r.message.len().min(c.max_message_len));
        let pri = u16::from(c.facility.code()) * 8 + u16::from(r.level.code());
        let _ = write!(out, "<{pri}>1 {} {} {} {} {} ", timestamp(r.time), c.hostname, c.tag, self.procid, msgid(r));
        let _ = write!(out, "[{SD_ID} product=\"");
        escape_into(&mut out, r.product.as_str());
        out.push_str("\" service=\"");
        escape_into(&mut out, &r.service);
        out.push('"');
        if let Some(s) = r.scope {
            let _ = write!(out, " org=\"{}\" project=\"{}\"", s.org, s.project);
        }
        out.push(']');
        if !r.fields.is_empty() {
            let mut sd = String::new();
            let _ = write!(sd, "[{SD_ID_FIELDS}");
            for (k, v) in &r.fields {
                let _ = write!(sd, " {k}=\"");
                escape_into(&mut sd, v);
                sd.push('"');
            }
            sd.push(']');
            // Keep room for at least the start of the message.
            if out.len() + sd.len() + 64 <= c.max_message_len {
                out.push_str(&sd);
            } else {
                self.truncated.fetch_add(1, Ordering::Relaxed);
            }
        }
        out.push(' ');
        let room = c.max_message_len.saturating_sub(out.len());
        let msg = truncate_str(&r.message, room);
        if msg.len() < r.message.len() {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
        out.push_str(msg);
        out
    }

    fn transport_error(&self, source: io::Error) -> Error {
        let retryable = !matches!(source.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied);
        Error::Transport {
            source_name: "syslog".into(),
            endpoint: format!("{} {}", self.config.network, self.config.addr),
            retryable,
            source: Box::new(source),
        }
    }

    async fn resolve(&self) -> io::Result<SocketAddr> {
        let lookup = tokio::time::timeout(self.config.connect_timeout, tokio::net::lookup_host(self.config.addr.as_str()));
        lookup
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resolving timed out"))??
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address"))
    }

    async fn open_udp(&self) -> io::Result<UdpSocket> {
        let addr = self.resolve().await?;
        let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let sock = UdpSocket::bind(local).await?;
        sock.connect(addr).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(sock)
    }

    async fn open_tcp(&self) -> io::Result<TcpStream> {
        let addr = self.resolve().await?;
        let connect = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr));
        let stream = connect.await.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))??;
        stream.set_nodelay(true)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }

    async fn send_udp(&self, conn: &mut Conn, messages: &[String]) -> io::Result<()> {
        let sock = match std::mem::replace(conn, Conn::None) {
            Conn::Udp(sock) => sock,
            _ => self.open_udp().await?,
        };
        for m in messages {
            let sent = tokio::time::timeout(self.config.write_timeout, sock.send(m.as_bytes())).await;
            match sent {
                Ok(Ok(_)) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                }
                // An ICMP "port unreachable" from an earlier datagram surfaces here: the socket is
                // dropped and the error reported; the next write opens a new one.
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "sending timed out")),
            }
        }
        *conn = Conn::Udp(sock);
        Ok(())
    }

    async fn send_tcp(&self, conn: &mut Conn, messages: &[String]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
        for m in messages {
            buf.extend_from_slice(m.len().to_string().as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(m.as_bytes());
        }
        let mut current = match std::mem::replace(conn, Conn::None) {
            Conn::Tcp(stream) if !peer_closed(&stream) => Some(stream),
            _ => None,
        };
        for attempt in 1..=2 {
            let mut stream = match current.take() {
                Some(s) => s,
                None => self.open_tcp().await?,
            };
            let written = tokio::time::timeout(self.config.write_timeout, async {
                stream.write_all(&buf).await?;
                stream.flush().await
            })
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "writing timed out")));
            match written {
                Ok(()) => {
                    self.sent.fetch_add(messages.len() as u64, Ordering::Relaxed);
                    *conn = Conn::Tcp(stream);
                    return Ok(());
                }
                Err(e) if attempt == 2 => return Err(e),
                Err(e) => tracing::debug!(error = %e, addr = %self.config.addr, "syslog connection lost, reconnecting"),
            }
        }
        Err(io::Error::other("syslog write not attempted"))
    }
}

/// Whether the server closed (or reset) the connection: a readable stream with nothing to read.
fn peer_closed(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 512];
    // A server that sends something (syslog servers do not) has it discarded, a bounded amount.
    for _ in 0..64 {
        match stream.try_read(&mut probe) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    false
}

fn msgid(r: &LogRecord) -> &str {
    // Product names are 1 to 32 bytes of [A-Za-z0-9_.-] once normalized, a valid MSGID.
    let p = r.product.as_str();
    if is_print_ascii(p, 32) { p } else { "-" }
}

/// RFC 3339 in UTC with at most microseconds, or `-` outside years 1 to 9999.
fn timestamp(t: ecp_core::Timestamp) -> String {
    const YEAR_1: i64 = -62_135_596_800;
    const YEAR_10000: i64 = 253_402_300_800;
    if !(YEAR_1..YEAR_10000).contains(&t.as_second()) {
        return "-".into();
    }
    let micros = ecp_core::Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t);
    micros.to_string()
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[async_trait]
impl LogSink for SyslogSink {
    /// Sends the records at or above `min_level`; invalid ones are counted and skipped.
    async fn write(&self, records: &[LogRecord]) -> Result<()> {
        if !self.config.enabled {
            return Ok(());
        }
        let mut messages = Vec::with_capacity(records.len());
        for r in records {
            if self.config.min_level.is_some_and(|m| !r.level.is_at_least(m)) {
                continue;
            }
            match r.clone().normalized() {
                Ok(r) => messages.push(self.format(&r)),
                Err(_) => {
                    self.refused_invalid.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().await;
        let sent = match self.config.network {
            SyslogNetwork::Udp => self.send_udp(&mut conn, &messages).await,
            SyslogNetwork::Tcp => self.send_tcp(&mut conn, &messages).await,
        };
        sent.map_err(|e| self.transport_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert!(SyslogConfig::builder("127.0.0.1:514").build().is_ok());
        assert!(SyslogConfig::builder("[::1]:514").network(SyslogNetwork::Tcp).build().is_ok());
        for bad in ["", "host", "host:", ":514", "host:0", "host:99999", "host:+5", "ho st:514"] {
            assert!(SyslogConfig::builder(bad).build().is_err(), "{bad}");
        }
        assert!(SyslogConfig::builder("h:1").tag("x".repeat(49)).build().is_err());
        assert!(SyslogConfig::builder("h:1").tag("a b").build().is_err());
        assert!(SyslogConfig::builder("h:1").tag("").build().is_err());
        assert!(SyslogConfig::builder("h:1").product_priority(192).build().is_err());
        assert!(SyslogConfig::builder("h:1").max_message_len(100).build().is_err());
        assert!(SyslogConfig::builder("h:1").max_message_len(70_000).build().is_err());
        let c = SyslogConfig::from_product(true, "h:1", "TCP", 3, "ecp").unwrap();
        assert_eq!((c.network(), c.facility(), c.max_message_len()), (SyslogNetwork::Tcp, Facility::KERN, 8192));
        assert_eq!((c.enabled(), c.addr(), c.tag(), c.hostname(), c.min_level()), (true, "h:1", "ecp", "-", None));
        assert_eq!((c.connect_timeout(), c.write_timeout()), (Duration::from_secs(5), Duration::from_secs(5)));
        assert!(SyslogConfig::builder("h:1").connect_timeout(Duration::ZERO).build().is_err());
        assert!(SyslogConfig::builder("h:1").write_timeout(Duration::ZERO).build().is_err());
        let c = SyslogConfig::from_product(true, "h:1", "udp", 8 * 16 + 3, "ecp").unwrap();
        assert_eq!(c.facility(), Facility::LOCAL0);
        assert!(SyslogConfig::from_product(true, "h:1", "quic", 3, "ecp").is_err());
    }

    #[test]
    fn timestamps() {
        let t: ecp_core::Timestamp = "2026-12-01T06:05:12.123456789Z".parse().unwrap();
        assert_eq!(timestamp(t), "2026-12-01T06:05:12.123456Z");
        assert_eq!(timestamp(ecp_core::Timestamp::MIN), "-");
    }
}
