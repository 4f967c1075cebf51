//! A real mosquitto broker for tests, on a free loopback port, with its config, password file and
//! ACL file in a temporary directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ecp_testkit::mosquitto::MosquittoError> {
//! use ecp_testkit::mosquitto::Mosquitto;
//!
//! let mut broker = Mosquitto::builder().allow_anonymous(false).password_file("alice:$7$101$...").start().await?;
//! println!("MQTT at {}:{}", broker.host(), broker.port());
//! broker.write_password_file("alice:$7$101$...\nbob:$7$101$...")?;
//! broker.reload().await?; // SIGHUP: it rereads the password and ACL files
//! broker.kill(); // SIGKILL: clients see the connection drop
//! broker.restart().await?; // the same port and files
//! # Ok(()) }
//! ```
//!
//! The binary is `$ECP_MOSQUITTO` when set, else `mosquitto` on `PATH`, else `/usr/sbin/mosquitto`
//! (Debian's `mosquitto` package; `scripts/test` installs it). A missing binary is an error, so the
//! tests that need a broker fail rather than skip.
//!
//! The broker keeps nothing between runs (`persistence false`), queues without limit for offline
//! clients (`max_queued_messages 0`, unless [`MosquittoBuilder::max_queued_messages`] says
//! otherwise), logs everything (`log_type all`) to a file in its directory
//! ([`Mosquitto::log`]), and, when the tests run as root, stays root (`user root`) so that it can
//! reread its files, which only root can read, on [`Mosquitto::reload`].

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that names the mosquitto binary (set by `scripts/test`).
pub const BINARY_VAR: &str = "ECP_MOSQUITTO";

/// Where Debian's `mosquitto` package puts the broker (`/usr/sbin` is not on every user's `PATH`).
pub const DEBIAN_PATH: &str = "/usr/sbin/mosquitto";

/// How long [`MosquittoBuilder::start`] and [`Mosquitto::restart`] wait for the broker.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Mosquitto::restart`] retries while its port is still held (`TIME_WAIT`).
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Mosquitto::reload`] waits for the broker to say it reloaded.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Ports tried by [`MosquittoBuilder::start`] when another process takes the free one first.
const START_ATTEMPTS: usize = 3;
/// How often the waits poll.
const POLL: Duration = Duration::from_millis(20);

const CONF: &str = "mosquitto.conf";
const PASSWORDS: &str = "passwd";
const ACL: &str = "acl";
const TLS_CERT: &str = "server.crt";
const TLS_KEY: &str = "server.key";
const LOG: &str = "mosquitto.log";

/// What went wrong starting or driving the broker.
///
/// `Debug` prints the message (and its cause), so that a test's `.expect()` shows what to install
/// and the broker's log as lines.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum MosquittoError {
    /// No mosquitto binary.
    #[error(
        "mosquitto not found ({searched}): install Debian's `mosquitto` package \
         (`apt-get install -y --no-install-recommends mosquitto`), or run scripts/test, which installs it"
    )]
    NotFound {
        /// Where it was looked for.
        searched: String,
    },
    /// A file or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The broker exited before it accepted connections.
    #[error("mosquitto exited ({status}) before it was ready on 127.0.0.1:{port}; its log:\n{log}")]
    Exited {
        /// The port it was to listen on.
        port: u16,
        /// How it exited.
        status: String,
        /// What it logged since it was started.
        log: String,
    },
    /// The broker (or its reload) was not ready in time.
    #[error("mosquitto on 127.0.0.1:{port} was not {what} within {waited:?}; its log:\n{log}")]
    Timeout {
        /// The broker's port.
        port: u16,
        /// What was awaited (`"ready"`, `"reloaded"`).
        what: &'static str,
        /// How long it was awaited.
        waited: Duration,
        /// What it logged meanwhile.
        log: String,
    },
    /// The broker is not running (it was killed, or it died).
    #[error("mosquitto on 127.0.0.1:{port} is not running")]
    NotRunning {
        /// Its port.
        port: u16,
    },
}

impl fmt::Debug for MosquittoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)?;
        if let MosquittoError::Io { source, .. } = self {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl MosquittoError {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        MosquittoError::Io { what: what.into(), source }
    }
}

/// Finds the mosquitto binary: `$ECP_MOSQUITTO`, else `mosquitto` on `PATH`, else
/// [`DEBIAN_PATH`].
///
/// # Errors
/// [`MosquittoError::NotFound`] (whose message says to install Debian's `mosquitto` package) when
/// there is none, or when `$ECP_MOSQUITTO` names no executable file.
pub fn find_binary() -> Result<PathBuf, MosquittoError> {
    if let Some(path) = std::env::var_os(BINARY_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(MosquittoError::NotFound { searched: format!("{BINARY_VAR}={} is not an executable file", path.display()) });
    }
    let on_path =
        std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|dir| dir.join("mosquitto"));
    if let Some(path) = on_path.chain([PathBuf::from(DEBIAN_PATH)]).find(|p| is_executable(p)) {
        return Ok(path);
    }
    Err(MosquittoError::NotFound { searched: format!("{BINARY_VAR} is not set, and neither PATH nor {DEBIAN_PATH} has it") })
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else { return false };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Options of a broker; [`start`](Self::start) starts it.
#[derive(Debug, Clone)]
pub struct MosquittoBuilder {
    allow_anonymous: bool,
    max_queued_messages: u32,
    password_file: Option<String>,
    acl_file: Option<String>,
    tls: Option<(String, String)>,
}

impl Default for MosquittoBuilder {
    fn default() -> Self {
        MosquittoBuilder { allow_anonymous: true, max_queued_messages: 0, password_file: None, acl_file: None, tls: None }
    }
}

impl MosquittoBuilder {
    /// Whether clients without a username may connect (default: yes).
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.allow_anonymous = allow;
        self
    }

    /// `max_queued_messages`: QoS 1 and 2 messages queued per client beyond those in flight;
    /// 0 (the default here) means no limit.
    ///
    /// Mosquitto 2.0.11 (Debian 12) drops the connection of a client right after it answers a
    /// refused QoS 1 or 2 PUBLISH (an ACL denial: PUBACK 0x87) when this is 0, as if its queue
    /// were full; tests of what a client does after a refused publish need a limit (mosquitto's
    /// own default is 1000).
    pub fn max_queued_messages(mut self, count: u32) -> Self {
        self.max_queued_messages = count;
        self
    }

    /// The contents of the password file (`user:hash` lines, as `mosquitto_passwd` writes them).
    /// Without one, any username and password is accepted (when anonymous clients are).
    pub fn password_file(mut self, contents: impl Into<String>) -> Self {
        self.password_file = Some(contents.into());
        self
    }

    /// The contents of the ACL file (`user <name>` blocks of `topic read|write|readwrite <filter>`
    /// lines). Without one, every client may use every topic.
    pub fn acl_file(mut self, contents: impl Into<String>) -> Self {
        self.acl_file = Some(contents.into());
        self
    }

    /// Serves MQTT over TLS only, with this PEM certificate chain and PEM private key.
    pub fn tls(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Writes the files into a new temporary directory, starts mosquitto on a free port of
    /// 127.0.0.1 and waits (at most 10 s) until it accepts TCP connections.
    ///
    /// # Errors
    /// [`MosquittoError::NotFound`] without a mosquitto binary; [`MosquittoError::Io`] when a file
    /// cannot be written or the process cannot be spawned; [`MosquittoError::Exited`] or
    /// [`MosquittoError::Timeout`] (both with the broker's log) when it does not come up.
    pub async fn start(self) -> Result<Mosquitto, MosquittoError> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("ecp-mosquitto-")
            .tempdir()
            .map_err(|e| MosquittoError::io("cannot create a temporary directory for mosquitto", e))?;
        let mut broker = Mosquitto {
            binary,
            dir,
            port: 0,
            allow_anonymous: self.allow_anonymous,
            max_queued_messages: self.max_queued_messages,
            password_file: self.password_file.is_some(),
            acl_file: self.acl_file.is_some(),
            tls: self.tls.is_some(),
            child: None,
        };
        if let Some((cert, key)) = &self.tls {
            broker.write(TLS_CERT, cert)?;
            broker.write(TLS_KEY, key)?;
        }
        if let Some(contents) = &self.password_file {
            broker.write(PASSWORDS, contents)?;
        }
        if let Some(contents) = &self.acl_file {
            broker.write(ACL, contents)?;
        }
        // The port is free when we look, but another process may take it before mosquitto binds
        // it: then try another one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            broker.port = free_port()?;
            broker.write_config()?;
            match broker.spawn().await {
                Err(MosquittoError::Exited { log, .. }) if attempt < START_ATTEMPTS && port_taken(&log) => continue,
                other => return other.map(|()| broker),
            }
        }
    }
}

/// A running mosquitto broker; dropping it kills the broker and removes its directory.
#[derive(Debug)]
pub struct Mosquitto {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    allow_anonymous: bool,
    max_queued_messages: u32,
    password_file: bool,
    acl_file: bool,
    tls: bool,
    child: Option<Child>,
}

impl Mosquitto {
    /// A builder with the defaults: anonymous clients allowed, no password file, no ACL file.
    pub fn builder() -> MosquittoBuilder {
        MosquittoBuilder::default()
    }

    /// The broker's host: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The broker's port (the same across [`restart`](Self::restart)s).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id, or `None` after [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory holding the config, password, ACL and log files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The password file the broker reads (there only once one was given). A test may also
    /// replace it by other means, then [`reload`](Self::reload).
    pub fn password_file_path(&self) -> PathBuf {
        self.path(PASSWORDS)
    }

    /// The ACL file the broker reads (there only once one was given).
    pub fn acl_file_path(&self) -> PathBuf {
        self.path(ACL)
    }

    /// Everything the broker logged so far, across restarts (for failure messages).
    pub fn log(&self) -> String {
        fs::read(self.dir.path().join(LOG)).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Kills the broker with SIGKILL and waits for it to exit (no-op when it is not running):
    /// clients see their connections drop without a DISCONNECT.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker if it runs, then starts it again on the same port with the current files,
    /// and waits (at most 10 s) until it accepts connections. While the port is still held by the
    /// old connections, binding is retried for up to 5 s.
    ///
    /// # Errors
    /// As [`MosquittoBuilder::start`].
    pub async fn restart(&mut self) -> Result<(), MosquittoError> {
        self.kill();
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.spawn().await {
                Err(MosquittoError::Exited { log, .. }) if Instant::now() < deadline && port_taken(&log) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Sends SIGHUP, so the broker rereads its config, password file and ACL file, and waits (at
    /// most 5 s) until it logs that it reloaded. Clients that connect afterwards see the new files.
    ///
    /// # Errors
    /// [`MosquittoError::NotRunning`] when the broker is not running; [`MosquittoError::Io`] when
    /// the signal cannot be sent; [`MosquittoError::Timeout`] when it does not reload in time.
    pub async fn reload(&mut self) -> Result<(), MosquittoError> {
        let pid = self.running_pid()?;
        let offset = self.log_len();
        signal(pid, "HUP").map_err(|e| MosquittoError::io(format!("cannot send SIGHUP to mosquitto (pid {pid})"), e))?;
        let started = Instant::now();
        loop {
            if self.log_since(offset).lines().any(|l| l.contains("Reloading config.")) {
                return Ok(());
            }
            self.running_pid()?;
            if started.elapsed() > RELOAD_TIMEOUT {
                return Err(MosquittoError::Timeout {
                    port: self.port,
                    what: "reloaded",
                    waited: RELOAD_TIMEOUT,
                    log: self.log_since(offset),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Replaces the password file (taking effect on the next [`reload`](Self::reload) or
    /// [`restart`](Self::restart)); a broker started without one gets one.
    ///
    /// # Errors
    /// [`MosquittoError::Io`] when a file cannot be written.
    pub fn write_password_file(&mut self, contents: &str) -> Result<(), MosquittoError> {
        self.write(PASSWORDS, contents)?;
        if !self.password_file {
            self.password_file = true;
            self.write_config()?;
        }
        Ok(())
    }

    /// Replaces the ACL file (taking effect on the next [`reload`](Self::reload) or
    /// [`restart`](Self::restart)); a broker started without one gets one.
    ///
    /// # Errors
    /// [`MosquittoError::Io`] when a file cannot be written.
    pub fn write_acl_file(&mut self, contents: &str) -> Result<(), MosquittoError> {
        self.write(ACL, contents)?;
        if !self.acl_file {
            self.acl_file = true;
            self.write_config()?;
        }
        Ok(())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> Result<(), MosquittoError> {
        let path = self.path(name);
        fs::write(&path, contents).map_err(|e| MosquittoError::io(format!("cannot write {}", path.display()), e))
    }

    fn write_config(&self) -> Result<(), MosquittoError> {
        let mut conf = format!(
            "# ecp-testkit: a throwaway broker for tests\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous {anonymous}\n\
             per_listener_settings false\n\
             persistence false\n\
             max_queued_messages {max_queued}\n\
             log_dest stderr\n\
             log_type all\n\
             connection_messages true\n\
             # as root: stay root, so that a reload can reread the files in this private directory\n\
             user root\n",
            port = self.port,
            anonymous = self.allow_anonymous,
            max_queued = self.max_queued_messages,
        );
        if self.tls {
            conf.push_str(&format!("certfile {}\nkeyfile {}\n", self.path(TLS_CERT).display(), self.path(TLS_KEY).display()));
        }
        if self.password_file {
            conf.push_str(&format!("password_file {}\n", self.path(PASSWORDS).display()));
        }
        if self.acl_file {
            conf.push_str(&format!("acl_file {}\n", self.path(ACL).display()));
        }
        self.write(CONF, &conf)
    }

    /// The pid of the running broker; reaps it if it died.
    fn running_pid(&mut self) -> Result<u32, MosquittoError> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(self.child.as_ref().map(Child::id).unwrap_or_default()),
            Some(_) => {
                self.child = None;
                Err(MosquittoError::NotRunning { port: self.port })
            }
            None => Err(MosquittoError::NotRunning { port: self.port }),
        }
    }

    fn log_len(&self) -> u64 {
        fs::metadata(self.path(LOG)).map(|m| m.len()).unwrap_or(0)
    }

    fn log_since(&self, offset: u64) -> String {
        let log = fs::read(self.path(LOG)).unwrap_or_default();
        String::from_utf8_lossy(log.get(usize::try_from(offset).unwrap_or(usize::MAX)..).unwrap_or_default()).into_owned()
    }

    /// Spawns the broker with the current config and waits until it is ready.
    async fn spawn(&mut self) -> Result<(), MosquittoError> {
        let log_path = self.path(LOG);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| MosquittoError::io(format!("cannot open {}", log_path.display()), e))?;
        let offset = self.log_len();
        let stdout = log.try_clone().map_err(|e| MosquittoError::io("cannot duplicate the log file handle", e))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.path(CONF))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| MosquittoError::io(format!("cannot run {}", self.binary.display()), e))?;
        self.child = Some(child);
        match self.wait_ready(offset).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    /// Waits until the broker says it runs and accepts a TCP connection (the log line tells our
    /// broker from another process that may have taken the port).
    async fn wait_ready(&mut self, offset: u64) -> Result<(), MosquittoError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(MosquittoError::Exited { port: self.port, status: status.to_string(), log: self.log_since(offset) });
            }
            let running = self.log_since(offset).lines().any(|l| l.contains("mosquitto version") && l.trim_end().ends_with(" running"));
            if running && tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(MosquittoError::Timeout { port: self.port, what: "ready", waited: READY_TIMEOUT, log: self.log_since(offset) });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port of 127.0.0.1 that was free a moment ago (the OS picks it; the listener is closed again).
fn free_port() -> Result<u16, MosquittoError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| MosquittoError::io("cannot bind 127.0.0.1:0", e))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| MosquittoError::io("cannot read a bound address", e))
}

/// Whether the broker's log says that its port was taken.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// Sends `SIG<sig>` to `pid` with `kill` (this crate has no unsafe code for `libc::kill`); without
/// a `kill` binary, through the shell's builtin.
fn signal(pid: u32, sig: &str) -> io::Result<()> {
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    };
    let mut kill = Command::new("kill");
    kill.arg(format!("-{sig}")).arg(pid.to_string());
    quiet(&mut kill);
    let out = match kill.output() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut sh = Command::new("sh");
            sh.args(["-c", r#"kill -s "$0" "$1""#, sig, &pid.to_string()]);
            quiet(&mut sh);
            sh.output()?
        }
        other => other?,
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -{sig} {pid} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_taken_reads_mosquitto_s_bind_error() {
        assert!(port_taken("1700000000: Error: Address already in use\n"));
        assert!(!port_taken("1700000000: mosquitto version 2.0.11 running\n"));
    }

    #[test]
    fn missing_binary_says_what_to_install() {
        let e = MosquittoError::NotFound { searched: "nowhere".into() };
        assert!(e.to_string().contains("Debian's `mosquitto` package"), "{e}");
        assert!(format!("{e:?}").contains("Debian's `mosquitto` package"), "{e:?}");
    }
}
