//! Secrets at rest: values sealed with AES-256-GCM (aws-lc-rs, the tree's one crypto provider)
//! under keys the host provides.
//!
//! The store seals every secret it keeps (edge services' passwords and tokens, clusters' API
//! secrets) before writing it, and opens it when it reads it back. A sealed value is text:
//!
//! ```text
//! enc:v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>
//! ```
//!
//! The key id names the key that sealed it, so keys can be rotated: the provider's *current* key
//! seals new values, older keys only open. `SqlStore::rotate_secrets` re-seals values under the
//! current key in batches (resumable: each batch picks the values not yet on it). Each value is
//! bound to where it is stored (table, column and row id as associated data): a sealed password
//! copied onto another row does not open.
//!
//! Keys come from a [`KeyProvider`]; [`StaticKeys`] holds them in memory and reads them from an
//! environment variable or a file (`id:base64-key` entries, the first the current one).
//!
//! ```
//! use ecp_core::sealing::{Sealer, StaticKeys};
//! use std::sync::Arc;
//!
//! let keys = StaticKeys::parse("k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let sealer = Sealer::new(Arc::new(keys));
//! let sealed = sealer.seal("0000", "edge_services.cred_secret:42")?;
//! assert!(sealed.starts_with("enc:v1:k2:"));
//! assert_eq!(sealer.open(&sealed, "edge_services.cred_secret:42")?, "0000");
//! assert!(sealer.open(&sealed, "edge_services.cred_secret:43").is_err(), "bound to its row");
//! # Ok::<(), ecp_core::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretBox};

use crate::error::{Error, Result};

/// The prefix of a sealed value.
pub const SEALED_PREFIX: &str = "enc:v1:";

/// The length of a key, bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Where the store's keys come from.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The id of the key new values are sealed with.
    fn current(&self) -> &str;
    /// The key of id `id`, if the provider has it.
    fn key(&self, id: &str) -> Option<&SecretBox<[u8; KEY_LEN]>>;
}

/// Keys held in memory: a current key and older ones that still open what they sealed.
pub struct StaticKeys {
    current: String,
    keys: HashMap<String, SecretBox<[u8; KEY_LEN]>>,
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("StaticKeys").field("current", &self.current).field("ids", &ids).finish()
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::invalid("key id", "1 to 32 letters, digits, '-' or '_'"));
    }
    Ok(())
}

impl StaticKeys {
    /// One key, `key`, of id `id`: the current one.
    ///
    /// # Errors
    /// `InvalidInput` for a bad id.
    pub fn new(id: &str, key: [u8; KEY_LEN]) -> Result<Self> {
        check_id(id)?;
        Ok(StaticKeys { current: id.to_owned(), keys: HashMap::from([(id.to_owned(), SecretBox::new(Box::new(key)))]) })
    }

    /// A fresh random key of id `id`, for stores that live as long as the process (tests, an
    /// in-memory store).
    ///
    /// # Errors
    /// `InvalidInput` for a bad id, `Backend` if the system has no randomness.
    pub fn random(id: &str) -> Result<Self> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| Error::backend("os-rng", e.to_string()))?;
        Self::new(id, key)
    }

    /// Adds an older key that still opens the values it sealed.
    ///
    /// # Errors
    /// `InvalidInput` for a bad id or one already held.
    pub fn with_old(mut self, id: &str, key: [u8; KEY_LEN]) -> Result<Self> {
        check_id(id)?;
        if self.keys.contains_key(id) {
            return Err(Error::invalid("key id", "held twice"));
        }
        self.keys.insert(id.to_owned(), SecretBox::new(Box::new(key)));
        Ok(self)
    }

    /// Keys written as `id:base64-key` entries separated by commas, whitespace or newlines, the
    /// first the current one (`k2:…,k1:…`).
    ///
    /// # Errors
    /// `InvalidInput` for no entry, a bad id, a key that is not 32 bytes of base64, or an id held
    /// twice. The error never repeats a key.
    pub fn parse(text: &str) -> Result<Self> {
        let mut entries = text.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty());
        let first = entries.next().ok_or_else(|| Error::invalid("keys", "no key"))?;
        let (id, key) = entry(first)?;
        let mut keys = Self::new(id, key)?;
        for e in entries {
            let (id, key) = entry(e)?;
            keys = keys.with_old(id, key)?;
        }
        Ok(keys)
    }

    /// [`parse`](Self::parse) of the environment variable `var`.
    ///
    /// # Errors
    /// `InvalidInput` when it is unset or malformed.
    pub fn from_env(var: &str) -> Result<Self> {
        let text = std::env::var(var).map_err(|_| Error::invalid("keys", format!("{var} is not set")))?;
        Self::parse(&text)
    }

    /// [`parse`](Self::parse) of the file at `path`.
    ///
    /// # Errors
    /// `InvalidInput` when it cannot be read or is malformed.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let text = std::fs::read_to_string(path.as_ref())
            .map_err(|e| Error::invalid("keys", format!("cannot read {}: {e}", path.as_ref().display())))?;
        Self::parse(&text)
    }
}

fn entry(e: &str) -> Result<(&str, [u8; KEY_LEN])> {
    let (id, b64) = e.split_once(':').ok_or_else(|| Error::invalid("keys", "an entry is not `id:base64-key`"))?;
    let bytes = B64.decode(b64.trim()).map_err(|_| Error::invalid("keys", format!("the key {id:?} is not base64")))?;
    let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| Error::invalid("keys", format!("the key {id:?} is not 32 bytes")))?;
    Ok((id, key))
}

impl KeyProvider for StaticKeys {
    fn current(&self) -> &str {
        &self.current
    }

    fn key(&self, id: &str) -> Option<&SecretBox<[u8; KEY_LEN]>> {
        self.keys.get(id)
    }
}

/// Seals and opens values with a [`KeyProvider`]'s keys.
#[derive(Clone, Debug)]
pub struct Sealer {
    keys: Arc<dyn KeyProvider>,
}

impl Sealer {
    /// A sealer with `keys`.
    pub fn new(keys: Arc<dyn KeyProvider>) -> Self {
        Sealer { keys }
    }

    /// The id of the key new values are sealed with.
    pub fn current(&self) -> &str {
        self.keys.current()
    }

    fn cipher(&self, id: &str) -> Result<LessSafeKey> {
        let key = self.keys.key(id).ok_or_else(|| Error::backend("sealing", format!("no key of id {id:?}")))?;
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose_secret()).map_err(|_| Error::backend("sealing", "the key is unusable"))?;
        Ok(LessSafeKey::new(unbound))
    }

    /// `plain` sealed under the current key, bound to `context` (where it is stored).
    ///
    /// # Errors
    /// `Backend` when the current key is missing or the system has no randomness.
    pub fn seal(&self, plain: &str, context: &str) -> Result<String> {
        let id = self.keys.current();
        let cipher = self.cipher(id)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::backend("os-rng", e.to_string()))?;
        let mut buf = plain.as_bytes().to_vec();
        cipher
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| Error::backend("sealing", "sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{SEALED_PREFIX}{id}:{}", B64.encode(out)))
    }

    /// The value `stored` holds: opened when sealed, as is when it predates sealing (plain text
    /// written before keys were configured; rotation seals it).
    ///
    /// # Errors
    /// `Backend` (an integrity failure) for a sealed value whose key is missing, that was sealed
    /// for another place, or that was tampered with. The error never holds the value.
    pub fn open(&self, stored: &str, context: &str) -> Result<String> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else { return Ok(stored.to_owned()) };
        let (id, b64) = rest.split_once(':').ok_or_else(|| Error::backend("sealing", "a sealed value is malformed"))?;
        let cipher = self.cipher(id)?;
        let mut bytes = B64.decode(b64).map_err(|_| Error::backend("sealing", "a sealed value is malformed"))?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(Error::backend("sealing", "a sealed value is malformed"));
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| Error::backend("sealing", "a sealed value is malformed"))?;
        let plain = cipher
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
            .map_err(|_| Error::backend("sealing", "a sealed value does not open (another key, another place, or tampered)"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| Error::backend("sealing", "a sealed value is not text"))
    }

    /// Whether `stored` is sealed under the current key (rotation skips it).
    pub fn is_current(&self, stored: &str) -> bool {
        stored.strip_prefix(SEALED_PREFIX).and_then(|r| r.split_once(':')).is_some_and(|(id, _)| id == self.keys.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(keys: StaticKeys) -> Sealer {
        Sealer::new(Arc::new(keys))
    }

    #[test]
    fn values_open_where_they_were_sealed_only() {
        let s = sealer(StaticKeys::random("a").unwrap());
        let sealed = s.seal("sentinel-password", "t.c:1").unwrap();
        assert!(!sealed.contains("sentinel"));
        assert_ne!(sealed, s.seal("sentinel-password", "t.c:1").unwrap(), "a fresh nonce each time");
        assert_eq!(s.open(&sealed, "t.c:1").unwrap(), "sentinel-password");
        assert!(s.open(&sealed, "t.c:2").is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let e = s.open(std::str::from_utf8(&tampered).unwrap(), "t.c:1").unwrap_err();
        assert!(!e.to_string().contains("sentinel"));
        assert_eq!(s.open("legacy plain text", "t.c:1").unwrap(), "legacy plain text");
        for bad in ["enc:v1:a", "enc:v1:a:!!", "enc:v1:a:AAAA", "enc:v1:nokey:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert!(s.open(bad, "t.c:1").is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_old_keys_for_opening() {
        let old = [7u8; KEY_LEN];
        let before = sealer(StaticKeys::new("k1", old).unwrap());
        let sealed = before.seal("x", "ctx").unwrap();
        let after = sealer(StaticKeys::new("k2", [9u8; KEY_LEN]).unwrap().with_old("k1", old).unwrap());
        assert_eq!(after.open(&sealed, "ctx").unwrap(), "x");
        assert!(!after.is_current(&sealed));
        assert!(after.is_current(&after.seal("x", "ctx").unwrap()));
    }

    #[test]
    fn key_text_is_checked_without_repeating_keys() {
        let k = B64.encode([1u8; KEY_LEN]);
        let keys = StaticKeys::parse(&format!("k2:{k}, k1:{k}\n")).unwrap();
        assert_eq!(keys.current(), "k2");
        assert!(keys.key("k1").is_some());
        for bad in ["", "k2", "k2:notbase64!", &format!("k2:{}", B64.encode([1u8; 16])), &format!("bad id:{k}"), &format!("a:{k},a:{k}")] {
            let e = StaticKeys::parse(bad).unwrap_err();
            assert!(!e.to_string().contains(&k), "{e}");
        }
        assert!(!format!("{keys:?}").contains(&k));
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever is stored, opening answers a value or an error, never a panic; whatever keys
        /// text is given, parsing answers keys or an error that does not repeat it.
        #[test]
        fn hostile_stored_values_and_key_texts_never_panic(stored in ".{0,300}", text in ".{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let sealer = Sealer::new(Arc::new(StaticKeys::new("k1", [3u8; KEY_LEN]).unwrap()));
            let _ = sealer.open(&stored, "ctx");
            let _ = sealer.open(&format!("{SEALED_PREFIX}k1:{stored}"), "ctx");
            let _ = sealer.open(&format!("{SEALED_PREFIX}k1:{}", B64.encode(&bytes)), "ctx");
            if let Err(e) = StaticKeys::parse(&text) {
                let shown = e.to_string();
                for part in text.split(|c: char| c == ',' || c.is_whitespace()).filter_map(|p| p.split_once(':')).map(|(_, k)| k) {
                    if part.len() >= 16 {
                        prop_assert!(!shown.contains(part), "{shown}");
                    }
                }
            }
        }

        /// Every value sealed opens to itself, in its own place only.
        #[test]
        fn sealed_values_round_trip(plain in ".{0,500}", row in 0u32..1000) {
            let sealer = Sealer::new(Arc::new(StaticKeys::new("k1", [9u8; KEY_LEN]).unwrap()));
            let ctx = format!("t.c:{row}");
            let sealed = sealer.seal(&plain, &ctx).unwrap();
            prop_assert_eq!(sealer.open(&sealed, &ctx).unwrap(), plain);
            let elsewhere = format!("t.c:{}", row + 1);
            prop_assert!(sealer.open(&sealed, &elsewhere).is_err(), "opened in another place");
        }
    }
}
