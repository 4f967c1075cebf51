//! Random tokens: 32 bytes from the operating system, base64url, behind a prefix that says what
//! they are (so secret scanners can find leaked ones).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;

use crate::error::Result;

/// Prefix of access tokens.
pub const ACCESS_PREFIX: &str = "ecpat";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "ecprt";
/// Prefix of invitation tokens.
pub const INVITATION_PREFIX: &str = "ecpinv";
/// Prefix of password reset tokens.
pub const RESET_PREFIX: &str = "ecprst";
/// Prefix of API keys.
pub const API_KEY_PREFIX: &str = "ecpk";

/// The longest token any parser here accepts; longer input is refused before hashing.
pub const MAX_TOKEN_LEN: usize = 128;

/// `<prefix>_<43 characters>`.
pub(crate) fn random_token(prefix: &str) -> Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ecp_core::Error::backend("os-rng", e.to_string()))?;
    Ok(SecretString::from(format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_redacted() {
        let a = random_token(ACCESS_PREFIX).unwrap();
        let b = random_token(ACCESS_PREFIX).unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().starts_with("ecpat_"));
        assert_eq!(a.expose_secret().len(), 6 + 43);
        assert!(!format!("{a:?}").contains(&a.expose_secret()[6..]));
    }
}
