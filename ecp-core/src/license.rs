//! Licenses: a license file signed with Ed25519, verified on load. Its limits are enforced where
//! the state lives: the cluster count and the floating connection pool by the store
//! ([`ClusterStore`](crate::ClusterStore), with [`ClusterQuota`](crate::cluster::ClusterQuota)), edge
//! services and tag points through [`EdgeLimitsBuilder::license`](crate::edge::EdgeLimitsBuilder::license).
//!
//! A license file is JSON: `{"payload": "<base64 of the license's JSON>", "signature": "<base64 of
//! the Ed25519 signature of those payload bytes>"}`. Signing the exact payload bytes (not a
//! re-serialization) means a verifier never depends on how JSON is formatted.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};

/// The largest license file accepted.
pub const MAX_LICENSE_BYTES: usize = 64 * 1024;

/// What kind of license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseKind {
    /// A time-limited trial.
    Trial,
    /// A purchased license.
    Official,
}

/// What a license grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct License {
    /// Its id (the issuer's reference).
    pub id: String,
    /// The customer.
    pub customer: String,
    /// Trial or official.
    pub kind: LicenseKind,
    /// Valid from.
    pub starts_at: Timestamp,
    /// Valid until (exclusive).
    pub expires_at: Timestamp,
    /// MQTT connections shared by all clusters (the floating pool).
    pub max_connections: u64,
    /// EMQX clusters.
    pub max_clusters: u64,
    /// Edge services.
    pub max_edge_services: u64,
    /// Tag points over all edge services.
    pub max_tag_points: u64,
}

impl License {
    fn validate(&self) -> Result<()> {
        if self.id.is_empty() || self.id.len() > 128 || self.customer.is_empty() || self.customer.len() > 256 {
            return Err(Error::invalid("license", "id and customer must be 1 to 128 and 1 to 256 bytes"));
        }
        if self.expires_at <= self.starts_at {
            return Err(Error::invalid("license", "expires before it starts"));
        }
        Ok(())
    }

    /// Whether it is valid at `now`.
    ///
    /// # Errors
    /// `InvalidInput` naming why not (not yet valid, expired).
    pub fn check_time(&self, now: Timestamp) -> Result<()> {
        if now < self.starts_at {
            return Err(Error::invalid("license", format!("not valid before {}", self.starts_at)));
        }
        if now >= self.expires_at {
            return Err(Error::invalid("license", format!("expired at {}", self.expires_at)));
        }
        Ok(())
    }
}

/// Signs licenses (the issuer's side; also what tests use). The key never reaches `Debug`.
pub struct LicenseSigner {
    key: SecretBox<[u8; 32]>,
}

impl fmt::Debug for LicenseSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LicenseSigner").field("public_key", &hex::encode(self.public_key())).finish_non_exhaustive()
    }
}

impl LicenseSigner {
    /// A signer with a new random key.
    ///
    /// # Errors
    /// `Backend` if the OS has no randomness.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::backend("os random", std::io::Error::other(e.to_string())))?;
        Ok(LicenseSigner { key: SecretBox::new(Box::new(seed)) })
    }

    /// A signer from a 32-byte Ed25519 secret key.
    pub fn from_secret(secret: SecretBox<[u8; 32]>) -> Self {
        LicenseSigner { key: secret }
    }

    fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(self.key.expose_secret())
    }

    /// The public key that verifies its licenses.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key().verifying_key().to_bytes()
    }

    /// A license file for `license`.
    ///
    /// # Errors
    /// `InvalidInput` for an inconsistent license.
    pub fn sign(&self, license: &License) -> Result<String> {
        license.validate()?;
        let payload = serde_json::to_vec(license).map_err(|e| Error::invalid("license", e.to_string()))?;
        let signature = self.signing_key().sign(&payload);
        let file = serde_json::json!({ "payload": STANDARD.encode(&payload), "signature": STANDARD.encode(signature.to_bytes()) });
        Ok(file.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseFile {
    payload: String,
    signature: String,
}

/// Verifies license files against the issuer's public key.
#[derive(Clone)]
pub struct LicenseVerifier {
    key: VerifyingKey,
}

impl fmt::Debug for LicenseVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LicenseVerifier").field("public_key", &hex::encode(self.key.to_bytes())).finish()
    }
}

impl LicenseVerifier {
    /// A verifier of the issuer's 32-byte Ed25519 public key.
    ///
    /// # Errors
    /// `InvalidInput` if the bytes are not a valid public key.
    pub fn new(public_key: &[u8; 32]) -> Result<Self> {
        Ok(LicenseVerifier {
            key: VerifyingKey::from_bytes(public_key).map_err(|_| Error::invalid("public key", "not an ed25519 public key"))?,
        })
    }

    /// Verifies a license file and its validity at `now`.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed, oversized, not-yet-valid or expired license;
    /// `Integrity` for a signature that does not match (a tampered or foreign license).
    pub fn verify(&self, file: &[u8], now: Timestamp) -> Result<License> {
        if file.len() > MAX_LICENSE_BYTES {
            return Err(Error::invalid("license", format!("larger than {MAX_LICENSE_BYTES} bytes")));
        }
        let f: LicenseFile = serde_json::from_slice(file).map_err(|e| Error::invalid("license", format!("not a license file: {e}")))?;
        let payload = STANDARD.decode(f.payload.trim()).map_err(|_| Error::invalid("license", "payload is not base64"))?;
        let sig = STANDARD.decode(f.signature.trim()).map_err(|_| Error::invalid("license", "signature is not base64"))?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| Error::invalid("license", "signature is not 64 bytes"))?;
        self.key.verify(&payload, &Signature::from_bytes(&sig)).map_err(|_| Error::Integrity {
            what: "license",
            reason: "the signature does not match: tampered, or signed by another issuer".into(),
        })?;
        let license: License =
            serde_json::from_slice(&payload).map_err(|e| Error::invalid("license", format!("signed payload is not a license: {e}")))?;
        license.validate()?;
        license.check_time(now)?;
        Ok(license)
    }
}

// The floating connection pool itself is kept by the store: every enabled cluster's connection
// limit is its share, and `ClusterStore::create_cluster`, `set_connection_limit` and
// `set_cluster_enabled` check the sum against the license in their own transaction, so several
// replicas never overshoot it (an in-memory pool could not promise that).

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn license() -> License {
        License {
            id: "lic-1".into(),
            customer: "ACME".into(),
            kind: LicenseKind::Official,
            starts_at: ts("2026-01-01T00:00:00Z"),
            expires_at: ts("2027-01-01T00:00:00Z"),
            max_connections: 10_000,
            max_clusters: 3,
            max_edge_services: 500,
            max_tag_points: 100_000,
        }
    }

    #[test]
    fn signed_licenses_verify_and_tampered_expired_or_foreign_ones_do_not() {
        let signer = LicenseSigner::generate().unwrap();
        let verifier = LicenseVerifier::new(&signer.public_key()).unwrap();
        let file = signer.sign(&license()).unwrap();
        let now = ts("2026-06-01T00:00:00Z");
        assert_eq!(verifier.verify(file.as_bytes(), now).unwrap(), license());

        // Tampered: the payload raised to a million connections, signature kept.
        let mut raised = license();
        raised.max_connections = 1_000_000;
        let v: serde_json::Value = serde_json::from_str(&file).unwrap();
        let forged = serde_json::json!({ "payload": STANDARD.encode(serde_json::to_vec(&raised).unwrap()), "signature": v["signature"] });
        let e = verifier.verify(forged.to_string().as_bytes(), now).unwrap_err();
        assert!(matches!(e, Error::Integrity { what: "license", .. }), "{e}");
        // One flipped bit of the signature.
        let mut sig = STANDARD.decode(v["signature"].as_str().unwrap()).unwrap();
        sig[10] ^= 1;
        let flipped = serde_json::json!({ "payload": v["payload"], "signature": STANDARD.encode(sig) });
        assert!(matches!(verifier.verify(flipped.to_string().as_bytes(), now).unwrap_err(), Error::Integrity { .. }));
        // Another issuer's license.
        let other = LicenseSigner::generate().unwrap().sign(&license()).unwrap();
        assert!(matches!(verifier.verify(other.as_bytes(), now).unwrap_err(), Error::Integrity { .. }));
        // Expired and not yet valid.
        assert!(verifier.verify(file.as_bytes(), ts("2027-01-01T00:00:00Z")).unwrap_err().to_string().contains("expired"));
        assert!(verifier.verify(file.as_bytes(), ts("2025-12-31T23:59:59Z")).unwrap_err().to_string().contains("not valid before"));
        // Malformed and oversized files are typed errors.
        for bad in [&b""[..], b"{", b"{\"payload\":\"!!\",\"signature\":\"\"}", b"[]", &vec![b' '; MAX_LICENSE_BYTES + 1][..]] {
            assert!(matches!(verifier.verify(bad, now).unwrap_err(), Error::InvalidInput { .. }));
        }
        // The secret key never shows.
        let shown = format!("{signer:?}");
        assert!(!shown.contains(&hex::encode(signer.key.expose_secret())), "{shown}");
    }

    /// License files of the issuer `[7; 32]`: a trial and an official one.
    fn signed_samples(signer: &LicenseSigner) -> (Vec<License>, Vec<Vec<u8>>) {
        let trial = License { id: "trial-42".into(), customer: "Büro \"Nord\" / 東京".into(), kind: LicenseKind::Trial, ..license() };
        let licenses = vec![license(), trial];
        let files = licenses.iter().map(|l| signer.sign(l).unwrap().into_bytes()).collect();
        (licenses, files)
    }

    /// Mutations of a validly signed license file either still verify, to the very license that
    /// was signed (a mutation that only touched the file's JSON around the signed payload, such as
    /// blanks or escapes), or are refused with `InvalidInput` or `Integrity`: never a panic, never
    /// another license.
    fn check_mutated(m: &ecp_testkit::mutate::Mutated) -> std::result::Result<(), proptest::test_runner::TestCaseError> {
        let signer = LicenseSigner::from_secret(SecretBox::new(Box::new([7u8; 32])));
        let verifier = LicenseVerifier::new(&signer.public_key()).unwrap();
        let (licenses, _) = signed_samples(&signer);
        match verifier.verify(&m.bytes, ts("2026-06-01T00:00:00Z")) {
            Ok(verified) => proptest::prop_assert_eq!(&verified, &licenses[m.base]),
            Err(e) => {
                proptest::prop_assert!(matches!(e, Error::InvalidInput { .. } | Error::Integrity { what: "license", .. }), "{:?}", e);
                proptest::prop_assert!(!e.to_string().is_empty());
            }
        }
        Ok(())
    }

    fn signed_files() -> Vec<Vec<u8>> {
        signed_samples(&LicenseSigner::from_secret(SecretBox::new(Box::new([7u8; 32])))).1
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, ..Default::default() })]

        /// See [`check_mutated`]: any mutation (bytes, splices of the two files, JSON values).
        #[test]
        fn mutated_license_files_verify_unchanged_or_are_refused(m in ecp_testkit::mutate::mutated(signed_files())) {
            check_mutated(&m)?;
        }

        /// See [`check_mutated`]: the file's values moved, replaced or removed (the signature
        /// where the payload belongs, a number or `null` for a string, a key dropped).
        #[test]
        fn license_files_with_moved_values_verify_unchanged_or_are_refused(m in ecp_testkit::mutate::json_mutated(signed_files())) {
            check_mutated(&m)?;
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_files_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let signer = LicenseSigner::from_secret(SecretBox::new(Box::new([7u8; 32])));
            let verifier = LicenseVerifier::new(&signer.public_key()).unwrap();
            proptest::prop_assert!(verifier.verify(&bytes, ts("2026-06-01T00:00:00Z")).is_err());
        }
    }
}
