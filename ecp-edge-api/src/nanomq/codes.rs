//! NanoMQ's result codes (`include/rest_api.h`), sent as `{"code":N}` without a message, some under
//! HTTP 200.

use bytes::Bytes;
use http::StatusCode;

/// An unknown path or method (404).
pub const UNKNOWN: i64 = 102;
/// Wrong user name or password (401).
pub const BAD_CREDENTIALS: i64 = 103;
/// Empty user name or password (401).
pub const EMPTY_CREDENTIALS: i64 = 104;
/// A bad request parameter (also a publish without a topic, under HTTP 200).
pub const BAD_PARAMETER: i64 = 108;
/// The token expired (401).
pub const TOKEN_EXPIRED: i64 = 116;

/// A short description of a NanoMQ result code (`include/rest_api.h`), if known.
pub fn error_text(code: i64) -> Option<&'static str> {
    Some(match code {
        101 => "rpc error",
        102 => "unknown error (unknown path or method)",
        103 => "wrong user name or password",
        104 => "empty user name or password",
        107 => "missing request parameter",
        108 => "bad request parameter",
        109 => "bad JSON",
        112 => "client offline",
        115 => "illegal topic",
        116 => "token expired",
        117 => "bad HOCON",
        118 => "configuration write failed",
        _ => return None,
    })
}

/// Whether a NanoMQ answer refuses the credentials (401 `103`, `104`, `116`).
pub(crate) fn token_refused(response: &http::Response<Bytes>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
}
