//! JWT-shaped tokens: what the products issue or accept, checked against what this simulator issued.
//!
//! The tokens look like the real ones (`header.payload.signature`, RS256 header, `iss`/`aud`/`iat`/
//! `exp` claims) but are not signed: the simulator remembers each token it issued, so a token it did
//! not issue (or whose signature part was changed) fails like a bad signature does, and
//! [`TokenStore::expire_all`] can expire tokens without waiting for their `exp`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The audience claim of each product's tokens.
pub(crate) const AUD_NEURON: &str = "neuron";
pub(crate) const AUD_NEURONEX: &str = "neuronex";
pub(crate) const AUD_EKUIPER: &str = "eKuiper";

/// What checking a token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    /// Issued here, not expired, for this audience.
    Valid,
    /// Not three base64url parts with JSON header and payload.
    Malformed,
    /// Well-formed but not issued here (a bad signature, as far as the client can tell).
    Unknown,
    /// Issued here and expired.
    Expired,
    /// Issued here for another audience.
    WrongAudience,
}

#[derive(Debug)]
struct Issued {
    expires: Instant,
    audience: String,
}

/// The tokens one simulated service issued.
#[derive(Debug)]
pub(crate) struct TokenStore {
    lifetime: Mutex<Duration>,
    issued: Mutex<HashMap<String, Issued>>,
}

impl TokenStore {
    pub(crate) fn new(lifetime: Duration) -> Self {
        TokenStore { lifetime: Mutex::new(lifetime), issued: Mutex::new(HashMap::new()) }
    }

    /// The lifetime of tokens issued from now on.
    pub(crate) fn set_lifetime(&self, lifetime: Duration) {
        *lock(&self.lifetime) = lifetime;
    }

    /// Issues a token for `audience` (also its issuer) and `subject`.
    pub(crate) fn issue(&self, audience: &str, subject: &str) -> String {
        let lifetime = *lock(&self.lifetime);
        let now = super::reply::unix_millis() / 1000;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = json!({
            "aud": audience,
            "exp": now + lifetime.as_secs() as i64,
            "iat": now,
            "iss": audience,
            "jti": uuid::Uuid::now_v7().to_string(),
            "name": subject,
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut signature = Vec::with_capacity(256);
        while signature.len() < 256 {
            signature.extend_from_slice(&random_u64().to_le_bytes());
        }
        let token = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(&signature));
        let expires = Instant::now().checked_add(lifetime).unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        lock(&self.issued).insert(token.clone(), Issued { expires, audience: audience.to_owned() });
        token
    }

    /// Checks a token presented for `audience`.
    pub(crate) fn check(&self, token: &str, audience: &str) -> TokenCheck {
        if !well_formed(token) {
            return TokenCheck::Malformed;
        }
        let issued = lock(&self.issued);
        match issued.get(token) {
            None => TokenCheck::Unknown,
            Some(i) if i.expires <= Instant::now() => TokenCheck::Expired,
            Some(i) if i.audience != audience => TokenCheck::WrongAudience,
            Some(_) => TokenCheck::Valid,
        }
    }

    /// Expires every token issued so far.
    pub(crate) fn expire_all(&self) {
        let now = Instant::now();
        for issued in lock(&self.issued).values_mut() {
            issued.expires = now;
        }
    }
}

fn well_formed(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return false;
    }
    let json_part =
        |p: &str| URL_SAFE_NO_PAD.decode(p).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()).is_some_and(|v| v.is_object());
    json_part(parts[0]) && json_part(parts[1]) && URL_SAFE_NO_PAD.decode(parts[2]).is_ok()
}

/// Random bits from the standard library's per-map random keys (uniqueness, not secrecy).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

/// Locks a mutex, ignoring poisoning (the simulator's state stays usable after a panicking test).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_check_and_expire() {
        let store = TokenStore::new(Duration::from_secs(60));
        let t = store.issue(AUD_NEURON, "admin");
        assert_eq!(store.check(&t, AUD_NEURON), TokenCheck::Valid);
        assert_eq!(store.check(&t, AUD_EKUIPER), TokenCheck::WrongAudience);
        assert_eq!(store.check("abc", AUD_NEURON), TokenCheck::Malformed);
        let mut damaged: Vec<char> = t.chars().collect();
        let i = damaged.len() - 10;
        damaged[i] = if damaged[i] == 'A' { 'B' } else { 'A' };
        let damaged: String = damaged.into_iter().collect();
        assert_eq!(store.check(&damaged, AUD_NEURON), TokenCheck::Unknown);
        store.expire_all();
        assert_eq!(store.check(&t, AUD_NEURON), TokenCheck::Expired);
        store.set_lifetime(Duration::ZERO);
        let t2 = store.issue(AUD_NEURON, "admin");
        assert_eq!(store.check(&t2, AUD_NEURON), TokenCheck::Expired);
    }
}
