//! Password policy and argon2id hashing.

use std::fmt;

use argon2::password_hash::{PasswordHash as Phc, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ecp_core::identity::PasswordHash;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// Cost parameters of argon2id. The default is OWASP's recommendation: 19 MiB of memory, 2
/// iterations, 1 lane (about 20–40 ms per hash on a server core).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
}

impl fmt::Debug for Argon2Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "argon2id(m={} KiB, t={}, p={})", self.memory_kib, self.iterations, self.lanes)
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::OWASP
    }
}

impl Argon2Params {
    /// OWASP's recommendation: m = 19456 KiB, t = 2, p = 1.
    pub const OWASP: Argon2Params = Argon2Params { memory_kib: 19_456, iterations: 2, lanes: 1 };

    /// Custom parameters. Lower ones than [`Argon2Params::OWASP`] weaken stored passwords: use them
    /// only where hashing speed matters more (property tests hashing thousands of passwords).
    ///
    /// # Errors
    /// `InvalidInput` for parameters argon2 refuses (memory under 8 KiB per lane, zero iterations).
    pub fn new(memory_kib: u32, iterations: u32, lanes: u32) -> ecp_core::Result<Self> {
        Params::new(memory_kib, iterations, lanes, None).map_err(|e| ecp_core::Error::invalid("argon2", e.to_string()))?;
        Ok(Self { memory_kib, iterations, lanes })
    }

    /// The memory cost, KiB: what each hash holds while it runs.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    fn argon2(&self) -> Argon2<'static> {
        let params = Params::new(self.memory_kib, self.iterations, self.lanes, None).unwrap_or_default();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

/// The rules new passwords must follow. Build with [`PasswordPolicy::builder`]; `build()`
/// validates. The default is what `PasswordPolicy::builder().build()` gives: 8 to 128 characters
/// with at least one letter, one digit and one symbol (the product's "combination of letters,
/// numbers and symbols").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordPolicy {
    pub(crate) min_length: usize,
    pub(crate) max_length: usize,
    pub(crate) require_letter: bool,
    pub(crate) require_digit: bool,
    pub(crate) require_symbol: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 8, max_length: 128, require_letter: true, require_digit: true, require_symbol: true }
    }
}

/// Builds a [`PasswordPolicy`]; setters never fail, [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct PasswordPolicyBuilder(PasswordPolicy);

impl PasswordPolicyBuilder {
    /// The fewest characters (default 8; at least 8, at most the maximum).
    pub fn min_length(mut self, n: usize) -> Self {
        self.0.min_length = n;
        self
    }

    /// The most characters (default 128; at most 1024: long inputs only cost hashing time).
    pub fn max_length(mut self, n: usize) -> Self {
        self.0.max_length = n;
        self
    }

    /// Whether a letter is needed (default true).
    pub fn require_letter(mut self, yes: bool) -> Self {
        self.0.require_letter = yes;
        self
    }

    /// Whether a digit is needed (default true).
    pub fn require_digit(mut self, yes: bool) -> Self {
        self.0.require_digit = yes;
        self
    }

    /// Whether a symbol (anything neither letter, digit nor whitespace) is needed (default true).
    pub fn require_symbol(mut self, yes: bool) -> Self {
        self.0.require_symbol = yes;
        self
    }

    /// The policy.
    ///
    /// # Errors
    /// `InvalidInput` on `password_policy` when the minimum is under 8 or above the maximum, or the
    /// maximum above 1024.
    pub fn build(self) -> ecp_core::Result<PasswordPolicy> {
        let p = self.0;
        if p.min_length < 8 || p.min_length > p.max_length || p.max_length > 1024 {
            return Err(ecp_core::Error::invalid("password_policy", "needs 8 <= min_length <= max_length <= 1024"));
        }
        Ok(p)
    }
}

impl PasswordPolicy {
    /// A builder starting from the defaults: 8 to 128 characters, with a letter, a digit and a
    /// symbol.
    pub fn builder() -> PasswordPolicyBuilder {
        PasswordPolicyBuilder(Self::default())
    }

    /// The fewest characters.
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// The most characters.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether a letter is needed.
    pub fn require_letter(&self) -> bool {
        self.require_letter
    }

    /// Whether a digit is needed.
    pub fn require_digit(&self) -> bool {
        self.require_digit
    }

    /// Whether a symbol is needed.
    pub fn require_symbol(&self) -> bool {
        self.require_symbol
    }

    /// Checks a new password. The reason never contains the password.
    ///
    /// # Errors
    /// [`Error::WeakPassword`].
    pub fn check(&self, password: &SecretString) -> Result<()> {
        let pw = password.expose_secret();
        let n = pw.chars().count();
        let weak = |reason: &'static str| Err(Error::WeakPassword { reason: reason.into() });
        if n < self.min_length {
            return Err(Error::WeakPassword { reason: format!("shorter than {} characters", self.min_length).into() });
        }
        if n > self.max_length {
            return Err(Error::WeakPassword { reason: format!("longer than {} characters", self.max_length).into() });
        }
        if pw.chars().any(char::is_control) {
            return weak("contains control characters");
        }
        if self.require_letter && !pw.chars().any(char::is_alphabetic) {
            return weak("needs a letter");
        }
        if self.require_digit && !pw.chars().any(|c| c.is_ascii_digit()) {
            return weak("needs a digit");
        }
        if self.require_symbol && !pw.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()) {
            return weak("needs a symbol");
        }
        Ok(())
    }
}

/// Hashes and verifies passwords with argon2id, off the async runtime's threads.
#[derive(Clone)]
pub(crate) struct Hasher {
    params: Argon2Params,
    /// At most so many hashes at once: each holds the memory cost.
    slots: crate::throttle::HashSlots,
    /// A hash of a random password with the same parameters: verifying against it takes as long as
    /// verifying a real user's password, so unknown emails answer in the same time.
    dummy: PasswordHash,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("params", &self.params).finish_non_exhaustive()
    }
}

impl Hasher {
    pub(crate) async fn new(params: Argon2Params, slots: crate::throttle::HashSlots) -> Result<Self> {
        let random = crate::tokens::random_token("dummy")?;
        let dummy = hash_blocking(params, random).await?;
        Ok(Self { params, slots, dummy })
    }

    /// Hashes `password` once a hash slot is free.
    ///
    /// # Errors
    /// [`Error::RateLimited`] when no slot frees in time, `Backend`.
    pub(crate) async fn hash(&self, password: &SecretString) -> Result<PasswordHash> {
        let _slot = self.slots.acquire().await?;
        hash_blocking(self.params, password.clone()).await
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is none (and then
    /// answers `false`), so both take the same time; once a hash slot is free.
    ///
    /// # Errors
    /// [`Error::RateLimited`] when no slot frees in time.
    pub(crate) async fn verify(&self, password: &SecretString, hash: Option<&PasswordHash>) -> Result<bool> {
        let _slot = self.slots.acquire().await?;
        let (phc, real) = match hash {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let password = password.clone();
        let params = self.params;
        let ok = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = Phc::new(phc.expose()) else { return false };
            params.argon2().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok()
        })
        .await
        .unwrap_or(false);
        Ok(ok && real)
    }
}

async fn hash_blocking(params: Argon2Params, password: SecretString) -> Result<PasswordHash> {
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|e| ecp_core::Error::backend("os-rng", e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| ecp_core::Error::backend("argon2", e.to_string()))?;
        let phc = params
            .argon2()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map_err(|e| ecp_core::Error::backend("argon2", e.to_string()))?;
        Ok(PasswordHash::new(phc.to_string()))
    })
    .await
    .map_err(|e| Error::Core(ecp_core::Error::backend("argon2", e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_owned())
    }

    #[test]
    fn default_policy_needs_a_mix() {
        let p = PasswordPolicy::default();
        p.check(&s("Tr0ub4dor&3")).unwrap();
        for (bad, why) in [("short1!", "shorter"), ("abcdefgh1", "symbol"), ("abcdefgh!", "digit"), ("12345678!", "letter")] {
            let err = p.check(&s(bad)).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains(bad), "the reason must not echo the password");
        }
        assert!(p.check(&s(&"a1!".repeat(100))).is_err());
        assert!(p.check(&s("abc\u{0}def1!")).is_err());
        let relaxed = PasswordPolicy::builder().min_length(10).max_length(64).require_letter(false).require_symbol(false).build().unwrap();
        relaxed.check(&s("correcthorse1")).unwrap();
        assert!(relaxed.check(&s("correcthorse")).is_err());
        assert_eq!(
            (relaxed.min_length(), relaxed.max_length(), relaxed.require_letter(), relaxed.require_digit(), relaxed.require_symbol()),
            (10, 64, false, true, false)
        );
        assert_eq!(PasswordPolicy::builder().build().unwrap(), PasswordPolicy::default());
        for bad in [
            PasswordPolicy::builder().min_length(4),
            PasswordPolicy::builder().min_length(65).max_length(64),
            PasswordPolicy::builder().max_length(1025),
        ] {
            match bad.build() {
                Err(ecp_core::Error::InvalidInput { field, .. }) => assert_eq!(field, "password_policy"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let params = Argon2Params::new(1024, 1, 1).unwrap();
        let h = Hasher::new(params, crate::throttle::HashSlots::new(&crate::LoginLimits::default(), params)).await.unwrap();
        let a = h.hash(&s("Tr0ub4dor&3")).await.unwrap();
        let b = h.hash(&s("Tr0ub4dor&3")).await.unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(h.verify(&s("Tr0ub4dor&3"), Some(&a)).await.unwrap());
        assert!(!h.verify(&s("wrong"), Some(&a)).await.unwrap());
        assert!(!h.verify(&s("Tr0ub4dor&3"), None).await.unwrap());
        assert!(!h.verify(&s("x"), Some(&PasswordHash::new("not a phc string"))).await.unwrap());
    }

    #[test]
    fn owasp_is_the_default() {
        assert_eq!(Argon2Params::default(), Argon2Params::new(19_456, 2, 1).unwrap());
        assert!(Argon2Params::new(1, 1, 1).is_err());
    }
}
