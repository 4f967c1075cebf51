//! Per-agent broker credentials and mosquitto access control.
//!
//! Every agent logs in to the broker with its [`AgentId`] as username and client id and a random
//! [`AgentSecret`] as password. The cloud keeps only the secret's mosquitto hash
//! ([`mosquitto_hash`]), writes the broker's password and ACL files from those hashes with
//! [`BrokerAcl`], and tells mosquitto to reread them (SIGHUP). The ACL confines each agent to its
//! own topics: it may publish only on [`Channel::AGENT_PUBLISHES`] and read only
//! [`Channel::AGENT_SUBSCRIBES`] under `{prefix}/agents/{its id}/`, so an agent can neither read
//! another agent's commands nor speak in another agent's name. The hub may read and write
//! everything under `{prefix}/agents/`. Anyone else (anonymous clients included) may use no topic.
//!
//! ```
//! # fn demo() -> ecp_agent_proto::Result<()> {
//! use ecp_agent_proto::acl::{AgentSecret, BrokerAcl, mosquitto_hash, verify_mosquitto_hash};
//! use ecp_agent_proto::{AgentId, Topics};
//!
//! let hub_secret = AgentSecret::generate()?;
//! let edge_secret = AgentSecret::generate()?; // handed to the agent once
//! let edge_hash = mosquitto_hash(edge_secret.as_secret())?; // what the cloud keeps
//! assert!(verify_mosquitto_hash(edge_secret.as_secret(), &edge_hash));
//!
//! let acl = BrokerAcl::new(
//!     Topics::default(),
//!     "hub-1",
//!     &mosquitto_hash(hub_secret.as_secret())?,
//!     [(AgentId::new("edge-7")?, edge_hash)],
//! )?;
//! assert!(acl.acl_file().contains("user edge-7\ntopic write ecp/agents/edge-7/hello\n"));
//! // acl.write_files(Path::new("/etc/mosquitto/ecp"))?; then SIGHUP mosquitto
//! # Ok(()) }
//! # demo().unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha512;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::topics::{AgentId, Channel, Topics, check_segment};

/// Random bytes in an [`AgentSecret`] (43 characters of base64url).
pub const SECRET_BYTES: usize = 32;

/// The PBKDF2 iterations of mosquitto's `$7$` hashes (what `mosquitto_passwd` 2.0 writes).
pub const MOSQUITTO_ITERATIONS: u32 = 101;

/// The name of the password file [`BrokerAcl::write_files`] writes.
pub const PASSWORD_FILE_NAME: &str = "passwd";

/// The name of the ACL file [`BrokerAcl::write_files`] writes.
pub const ACL_FILE_NAME: &str = "acl";

/// The salt of a new hash, as `mosquitto_passwd` makes it.
const SALT_BYTES: usize = 12;
/// The PBKDF2-HMAC-SHA512 output of a `$7$` hash.
const HASH_BYTES: usize = 64;
/// The most iterations [`verify_mosquitto_hash`] computes (bounds the work a stored hash can ask).
const MAX_ITERATIONS: u32 = 1_000_000;
/// The longest salt [`verify_mosquitto_hash`] accepts.
const MAX_SALT_BYTES: usize = 64;

/// An agent's broker password: 32 random bytes, base64url without padding.
///
/// `Debug` never shows it; read it with [`as_secret`](Self::as_secret) and `ExposeSecret`.
pub struct AgentSecret(SecretString);

impl AgentSecret {
    /// A new secret from the operating system's random source.
    ///
    /// # Errors
    /// A `Backend` error (`os-rng`) when the random source fails.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; SECRET_BYTES];
        random(&mut bytes)?;
        Ok(AgentSecret(SecretString::from(URL_SAFE_NO_PAD.encode(bytes))))
    }

    /// The secret.
    pub fn as_secret(&self) -> &SecretString {
        &self.0
    }

    /// The secret, by value.
    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

impl From<SecretString> for AgentSecret {
    /// A secret the agent was given (read from its configuration).
    fn from(secret: SecretString) -> Self {
        AgentSecret(secret)
    }
}

impl fmt::Debug for AgentSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentSecret([REDACTED])")
    }
}

fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Random { reason: e.to_string() })
}

/// The mosquitto 2.0 password-file hash of `secret`, with a new random salt:
/// `$7$101$<salt>$<hash>`, PBKDF2-HMAC-SHA512 with 101 iterations over a 12-byte salt, 64 bytes of
/// output, both in standard base64 with padding (as `mosquitto_passwd` writes it).
///
/// # Errors
/// A `Backend` error (`os-rng`) when the random source fails.
pub fn mosquitto_hash(secret: &SecretString) -> Result<String> {
    let mut salt = [0u8; SALT_BYTES];
    random(&mut salt)?;
    let hash = pbkdf2_sha512(secret, &salt, MOSQUITTO_ITERATIONS);
    Ok(format!("$7${MOSQUITTO_ITERATIONS}${}${}", STANDARD.encode(salt), STANDARD.encode(hash)))
}

/// Whether `hash` (a mosquitto `$7$` hash) is the hash of `secret`; the comparison takes the same
/// time wherever the bytes differ. A malformed hash, or one asking for more than 1,000,000
/// iterations, never verifies.
pub fn verify_mosquitto_hash(secret: &SecretString, hash: &str) -> bool {
    let Some(parsed) = ParsedHash::parse(hash) else { return false };
    let computed = pbkdf2_sha512(secret, &parsed.salt, parsed.iterations);
    computed.ct_eq(&parsed.hash).into()
}

fn pbkdf2_sha512(secret: &SecretString, salt: &[u8], iterations: u32) -> [u8; HASH_BYTES] {
    let mut out = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha512>(secret.expose_secret().as_bytes(), salt, iterations, &mut out);
    out
}

/// A well-formed `$7$<iterations>$<salt>$<hash>`.
struct ParsedHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; HASH_BYTES],
}

impl ParsedHash {
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.strip_prefix("$7$")?.split('$');
        let (iterations, salt, hash) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let iterations: u32 = iterations.parse().ok().filter(|n| (1..=MAX_ITERATIONS).contains(n))?;
        let salt = STANDARD.decode(salt).ok().filter(|s| !s.is_empty() && s.len() <= MAX_SALT_BYTES)?;
        let hash = STANDARD.decode(hash).ok()?.try_into().ok()?;
        Some(ParsedHash { iterations, salt, hash })
    }
}

/// Checks that `hash` can go into a password file (a well-formed `$7$` hash, so no `:`, blank or
/// line break either).
fn check_hash(whose: &str, hash: &str) -> Result<()> {
    match ParsedHash::parse(hash) {
        Some(_) => Ok(()),
        None => {
            Err(Error::invalid("mosquitto hash", format!("the hash of {whose} is not a mosquitto `$7$<iterations>$<salt>$<hash>` hash")))
        }
    }
}

/// The broker's password and ACL files for one hub and its agents.
///
/// `Debug` lists the hub and the agents, not their hashes.
#[derive(Clone)]
pub struct BrokerAcl {
    topics: Topics,
    hub: String,
    hub_hash: String,
    agents: BTreeMap<AgentId, String>,
}

impl fmt::Debug for BrokerAcl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerAcl").field("topics", &self.topics).field("hub", &self.hub).field("agents", &self.agents.keys()).finish()
    }
}

impl BrokerAcl {
    /// The files for the hub logging in as `hub` (1–64 characters of `A-Z a-z 0-9 _ -`, like an
    /// agent id) with the secret hashed as `hub_hash`, and the agents with theirs.
    ///
    /// # Errors
    /// `InvalidInput` for a bad hub username, a malformed hash, an agent whose id is the hub's
    /// username, or an agent listed twice.
    pub fn new(topics: Topics, hub: &str, hub_hash: &str, agents: impl IntoIterator<Item = (AgentId, String)>) -> Result<Self> {
        check_segment("hub username", hub, AgentId::MAX_LEN)?;
        check_hash("the hub", hub_hash)?;
        let mut acl = BrokerAcl { topics, hub: hub.to_owned(), hub_hash: hub_hash.to_owned(), agents: BTreeMap::new() };
        for (agent, hash) in agents {
            if acl.agents.contains_key(&agent) {
                return Err(Error::invalid("agents", format!("agent {agent} is listed twice")));
            }
            acl.insert_agent(agent, hash)?;
        }
        Ok(acl)
    }

    /// Adds `agent` with the hash of its secret, or replaces its hash (a new secret).
    ///
    /// # Errors
    /// `InvalidInput` for a malformed hash or an agent whose id is the hub's username.
    pub fn insert_agent(&mut self, agent: AgentId, hash: impl Into<String>) -> Result<()> {
        let hash = hash.into();
        if agent.as_str() == self.hub {
            return Err(Error::invalid("agent id", format!("{agent} is the hub's username")));
        }
        check_hash(&format!("agent {agent}"), &hash)?;
        self.agents.insert(agent, hash);
        Ok(())
    }

    /// Removes `agent`; whether it was there.
    pub fn remove_agent(&mut self, agent: &AgentId) -> bool {
        self.agents.remove(agent).is_some()
    }

    /// The agents, in id order.
    pub fn agents(&self) -> impl Iterator<Item = &AgentId> {
        self.agents.keys()
    }

    /// The hub's username.
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// The topics the files are for.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The password file: a `username:hash` line for the hub, then one for each agent in id order.
    pub fn password_file(&self) -> String {
        let mut out = format!("{}:{}\n", self.hub, self.hub_hash);
        for (agent, hash) in &self.agents {
            let _ = writeln!(out, "{agent}:{hash}");
        }
        out
    }

    /// The ACL file: the hub may read and write `{prefix}/agents/#`; each agent may write its
    /// [`Channel::AGENT_PUBLISHES`] topics (replies as `reply/+`, one level for the hub's id) and
    /// read its [`Channel::AGENT_SUBSCRIBES`] topics, and nothing else. There are no rules before
    /// the first `user` line, so anonymous clients may use no topic.
    pub fn acl_file(&self) -> String {
        let agents = format!("{}/agents", self.topics.prefix());
        let mut out = String::from(
            "# mosquitto ACL of the ecp agent protocol, generated by ecp-edge: do not edit.\n\
             # Clients without a `user` block (anonymous ones included) may use no topic.\n",
        );
        let _ = write!(out, "\n# the hub\nuser {}\ntopic readwrite {agents}/#\n", self.hub);
        for agent in self.agents.keys() {
            let _ = write!(out, "\n# agent {agent}\nuser {agent}\n");
            for channel in Channel::AGENT_PUBLISHES {
                let topic = self.topics.topic(agent, channel);
                let topic = if channel == Channel::Reply { format!("{topic}/+") } else { topic };
                let _ = writeln!(out, "topic write {topic}");
            }
            for channel in Channel::AGENT_SUBSCRIBES {
                let _ = writeln!(out, "topic read {}", self.topics.topic(agent, channel));
            }
        }
        out
    }

    /// Writes [`password_file`](Self::password_file) to `dir/passwd` and
    /// [`acl_file`](Self::acl_file) to `dir/acl`, each atomically (a temporary file in `dir`,
    /// synced, then renamed over the old one), so that mosquitto, pointed at them and sent SIGHUP
    /// afterwards, never reads half a file. A replaced file keeps its mode and (where allowed) its
    /// owner, so a host can make them readable by the broker's user once; new files are `0600`.
    ///
    /// # Errors
    /// A `Backend` error (`filesystem`, naming the file) when a file cannot be written.
    pub fn write_files(&self, dir: &Path) -> Result<()> {
        for (name, contents) in [(PASSWORD_FILE_NAME, self.password_file()), (ACL_FILE_NAME, self.acl_file())] {
            let path = dir.join(name);
            crate::files::write_atomic(&path, contents.as_bytes()).map_err(|source| Error::Io { path, source })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// `mosquitto_passwd -b` (2.0.11) output for the password `secret1`.
    const FROM_MOSQUITTO_PASSWD: &str =
        "$7$101$3fuxp6SznrPkRg1T$nNcassnpWitElADG4NcllKKfS5S18fKJGZW7VBne/6rNfc8svdxVf1V3pb8Lj+eZhyZAuwYFl39lLphm7jZMIw==";

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn hash_of(s: &str) -> String {
        mosquitto_hash(&secret(s)).unwrap()
    }

    #[test]
    fn hash_has_mosquitto_s_format_and_verifies() {
        let s = AgentSecret::generate().unwrap();
        let h = mosquitto_hash(s.as_secret()).unwrap();
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts[..3], ["", "7", "101"], "{h}");
        assert_eq!(parts[3].len(), 16, "12 bytes of salt: {h}");
        assert_eq!(parts[4].len(), 88, "64 bytes of hash, padded: {h}");
        assert!(verify_mosquitto_hash(s.as_secret(), &h));
        assert_ne!(h, mosquitto_hash(s.as_secret()).unwrap(), "a new salt each time");
    }

    #[test]
    fn verifies_what_mosquitto_passwd_wrote() {
        assert!(verify_mosquitto_hash(&secret("secret1"), FROM_MOSQUITTO_PASSWD));
        assert!(!verify_mosquitto_hash(&secret("secret2"), FROM_MOSQUITTO_PASSWD));
    }

    #[test]
    fn a_different_secret_fails() {
        let a = AgentSecret::generate().unwrap();
        let b = AgentSecret::generate().unwrap();
        assert_ne!(a.as_secret().expose_secret(), b.as_secret().expose_secret());
        assert!(!verify_mosquitto_hash(b.as_secret(), &mosquitto_hash(a.as_secret()).unwrap()));
        assert!(!verify_mosquitto_hash(&secret(""), &hash_of("x")));
    }

    #[test]
    fn malformed_hashes_never_verify() {
        let good = hash_of("pw");
        let (head, last) = good.rsplit_once('$').unwrap();
        for bad in [
            String::new(),
            "$6$abc$def".into(),
            good.replacen("$7$101$", "$7$$", 1),
            good.replacen("$7$101$", "$7$0$", 1),
            good.replacen("$7$101$", "$7$-1$", 1),
            good.replacen("$7$101$", "$7$+101$", 1),
            good.replacen("$7$101$", "$7$99999999999$", 1),
            good.replacen("$7$101$", "$7$2000000$", 1),
            format!("{good}$"),
            format!("{head}${}", &last[4..]),
            format!("{head}$!{}", &last[1..]),
            format!("{good}\nmallory:{good}"),
        ] {
            assert!(!verify_mosquitto_hash(&secret("pw"), &bad), "{bad:?}");
            assert!(check_hash("x", &bad).is_err(), "{bad:?}");
        }
        assert!(verify_mosquitto_hash(&secret("pw"), &good));
    }

    #[test]
    fn secrets_are_random_base64url_and_redacted() {
        let s = AgentSecret::generate().unwrap();
        let exposed = s.as_secret().expose_secret().to_owned();
        assert_eq!(exposed.len(), 43);
        assert!(exposed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{exposed}");
        let debug = format!("{s:?} {:?}", AgentSecret::from(secret("sentinel-secret-123")));
        assert!(!debug.contains(&exposed) && !debug.contains("sentinel-secret-123"), "{debug}");
        assert_eq!(AgentSecret::from(secret("k")).into_secret().expose_secret(), "k");
    }

    fn two_agents() -> BrokerAcl {
        let a = AgentId::new("edge-a").unwrap();
        let b = AgentId::new("edge-b").unwrap();
        // given out of order: files list agents by id
        BrokerAcl::new(Topics::new("t1/ecp").unwrap(), "hub-1", FROM_MOSQUITTO_PASSWD, [(b, hash_of("b")), (a, hash_of("a"))]).unwrap()
    }

    #[test]
    fn acl_for_two_agents() {
        let acl = two_agents();
        assert_eq!(
            acl.acl_file(),
            "# mosquitto ACL of the ecp agent protocol, generated by ecp-edge: do not edit.\n\
             # Clients without a `user` block (anonymous ones included) may use no topic.\n\
             \n\
             # the hub\n\
             user hub-1\n\
             topic readwrite t1/ecp/agents/#\n\
             \n\
             # agent edge-a\n\
             user edge-a\n\
             topic write t1/ecp/agents/edge-a/hello\n\
             topic write t1/ecp/agents/edge-a/status\n\
             topic write t1/ecp/agents/edge-a/heartbeat\n\
             topic write t1/ecp/agents/edge-a/event\n\
             topic write t1/ecp/agents/edge-a/report\n\
             topic write t1/ecp/agents/edge-a/reply/+\n\
             topic read t1/ecp/agents/edge-a/cmd\n\
             topic read t1/ecp/agents/edge-a/desired\n\
             \n\
             # agent edge-b\n\
             user edge-b\n\
             topic write t1/ecp/agents/edge-b/hello\n\
             topic write t1/ecp/agents/edge-b/status\n\
             topic write t1/ecp/agents/edge-b/heartbeat\n\
             topic write t1/ecp/agents/edge-b/event\n\
             topic write t1/ecp/agents/edge-b/report\n\
             topic write t1/ecp/agents/edge-b/reply/+\n\
             topic read t1/ecp/agents/edge-b/cmd\n\
             topic read t1/ecp/agents/edge-b/desired\n"
        );
        let passwords = acl.password_file();
        let lines: Vec<&str> = passwords.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], format!("hub-1:{FROM_MOSQUITTO_PASSWD}"));
        let (user, hash) = lines[1].split_once(':').unwrap();
        assert_eq!(user, "edge-a");
        assert!(verify_mosquitto_hash(&secret("a"), hash));
        assert!(lines[2].starts_with("edge-b:$7$101$"));
        assert!(!format!("{acl:?}").contains("$7$"), "{acl:?}");
    }

    #[test]
    fn agents_are_added_replaced_and_removed() {
        let mut acl = two_agents();
        let c = AgentId::new("edge-c").unwrap();
        acl.insert_agent(c.clone(), hash_of("c")).unwrap();
        acl.insert_agent(c.clone(), hash_of("c2")).unwrap();
        assert_eq!(acl.agents().map(AgentId::as_str).collect::<Vec<_>>(), ["edge-a", "edge-b", "edge-c"]);
        let line = acl.password_file().lines().find(|l| l.starts_with("edge-c:")).unwrap().to_owned();
        assert!(verify_mosquitto_hash(&secret("c2"), &line["edge-c:".len()..]));
        assert!(acl.acl_file().contains("user edge-c\n"));
        assert!(acl.remove_agent(&c));
        assert!(!acl.remove_agent(&c));
        assert!(!acl.acl_file().contains("edge-c"));
    }

    #[test]
    fn bad_input_is_refused() {
        let t = Topics::default;
        let h = FROM_MOSQUITTO_PASSWD;
        for hub in ["", "hub/1", "hub+", "#", "hub 1", "hub\nuser x", &"h".repeat(65)] {
            assert!(BrokerAcl::new(t(), hub, h, []).is_err(), "{hub:?}");
        }
        assert!(BrokerAcl::new(t(), "hub-1", "plain", []).is_err());
        let hub_as_agent = AgentId::new("hub-1").unwrap();
        assert!(BrokerAcl::new(t(), "hub-1", h, [(hub_as_agent.clone(), hash_of("x"))]).is_err());
        let a = AgentId::new("a").unwrap();
        assert!(BrokerAcl::new(t(), "hub-1", h, [(a.clone(), hash_of("x")), (a.clone(), hash_of("y"))]).is_err());
        let mut acl = BrokerAcl::new(t(), "hub-1", h, []).unwrap();
        assert!(acl.insert_agent(a.clone(), "a:b\nc").is_err());
        assert!(acl.insert_agent(hub_as_agent, hash_of("x")).is_err());
        assert_eq!(acl.agents().count(), 0);
    }

    #[test]
    fn files_are_written_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("ecp-acl-test-{}-{}", std::process::id(), uuid::Uuid::now_v7().simple()));
        fs::create_dir(&dir).unwrap();
        let mut acl = two_agents();
        acl.write_files(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join(PASSWORD_FILE_NAME)).unwrap(), acl.password_file());
        assert_eq!(fs::read_to_string(dir.join(ACL_FILE_NAME)).unwrap(), acl.acl_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |name| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(PASSWORD_FILE_NAME), 0o600);
            // a mode the host chose survives a rewrite
            fs::set_permissions(dir.join(ACL_FILE_NAME), fs::Permissions::from_mode(0o640)).unwrap();
            acl.insert_agent(AgentId::new("edge-c").unwrap(), hash_of("c")).unwrap();
            acl.write_files(&dir).unwrap();
            assert_eq!(mode(ACL_FILE_NAME), 0o640);
        }
        assert!(fs::read_to_string(dir.join(ACL_FILE_NAME)).unwrap().contains("user edge-c\n"));
        let mut names: Vec<String> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, [ACL_FILE_NAME, PASSWORD_FILE_NAME], "no temporary files left behind");
        assert!(acl.write_files(&dir.join("missing")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
