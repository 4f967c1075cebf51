//! eKuiper's error codes (`pkg/errorx/error_code.go`), sent as `{"error":N,"message":"…"}` in a
//! `text/plain` body.

use bytes::Bytes;
use http::StatusCode;

/// Not found (HTTP 404).
pub const NOT_FOUND: i64 = 1002;

/// Whether eKuiper's `code` says the thing does not exist.
pub fn is_not_found(code: i64) -> bool {
    code == NOT_FOUND
}

/// Whether an eKuiper answer refuses the credentials (401).
pub(crate) fn token_refused(response: &http::Response<Bytes>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
}
