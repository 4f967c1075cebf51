//! Neuron's error codes (`include/neuron/errcodes.h`): the ones the adapters act on, by name, and
//! a short text for every known one. Neuron sends them as `{"error":N}`, many under HTTP 200.

use bytes::Bytes;
use serde_json::Value;

use crate::call::int_field;

/// The request body is malformed (also a login without a field).
pub const BODY_INVALID: i64 = 1002;
/// No token was sent (401).
pub const TOKEN_MISSING: i64 = 1004;
/// The token cannot be decoded (401).
pub const TOKEN_UNDECODABLE: i64 = 1005;
/// The token expired (403).
pub const TOKEN_EXPIRED: i64 = 1006;
/// The token failed validation (403).
pub const TOKEN_INVALID: i64 = 1007;
/// The token is not Neuron's (403).
pub const TOKEN_FOREIGN: i64 = 1008;
/// Wrong user or password (401).
pub const BAD_CREDENTIALS: i64 = 1009;
/// The node exists (409).
pub const NODE_EXISTS: i64 = 2002;
/// The node does not exist (404).
pub const NODE_NOT_FOUND: i64 = 2003;
/// The node has no settings yet (HTTP 200).
pub const NODE_SETTING_NOT_FOUND: i64 = 2005;
/// The node is running already (409).
pub const NODE_RUNNING: i64 = 2007;
/// The group exists (409).
pub const GROUP_EXISTS: i64 = 2104;
/// The group does not exist (404).
pub const GROUP_NOT_FOUND: i64 = 2106;
/// The tag does not exist (404).
pub const TAG_NOT_FOUND: i64 = 2201;
/// The plugin library is not installed (404).
pub const PLUGIN_NOT_FOUND: i64 = 2301;
/// The device is down (a write answers 400).
pub const DEVICE_DOWN: i64 = 3002;

/// Whether `code` refuses one tag of a batch (22xx: its name, address, type, attribute ...).
pub fn is_tag_error(code: i64) -> bool {
    (2200..2300).contains(&code)
}

/// Whether `code` says that what was asked for does not exist, whatever the HTTP status it came
/// with (2005 comes under HTTP 200).
pub fn is_not_found(code: i64) -> bool {
    matches!(code, NODE_NOT_FOUND | NODE_SETTING_NOT_FOUND | GROUP_NOT_FOUND | TAG_NOT_FOUND | PLUGIN_NOT_FOUND)
}

/// A short description of a Neuron error code (`include/neuron/errcodes.h`), if known.
pub fn error_text(code: i64) -> Option<&'static str> {
    Some(match code {
        1001 => "internal error",
        1002 => "request body is wrong",
        1003 => "request parameter is wrong",
        1004 => "missing token",
        1005 => "token cannot be decoded",
        1006 => "token expired",
        1007 => "token validation failed",
        1008 => "invalid token",
        1009 => "invalid user or password",
        1010 => "busy",
        1011 => "file does not exist",
        1012 => "invalid password length",
        1014 => "command execution failed",
        2002 => "node already exists",
        2003 => "node does not exist",
        2004 => "node setting invalid",
        2005 => "node setting not found",
        2006 => "node not ready",
        2007 => "node is running",
        2008 => "node not running",
        2009 => "node is stopped",
        2010 => "node name too long",
        2011 => "node may not be deleted",
        2015 => "node name empty",
        2101 => "group already subscribed",
        2102 => "group not subscribed",
        2103 => "group not allowed",
        2104 => "group already exists",
        2105 => "group parameter invalid",
        2106 => "group does not exist",
        2107 => "group name too long",
        2201 => "tag does not exist",
        2202 => "tag name conflict",
        2203 => "tag attribute not supported",
        2204 => "tag type not supported",
        2205 => "tag address format invalid",
        2206 => "tag name too long",
        2207 => "tag address too long",
        2208 => "tag description too long",
        2209 => "tag precision invalid",
        2210 => "tag already exists",
        2301 => "plugin library not found",
        2302 => "plugin library info invalid",
        2400..=2409 => "license error",
        3000 => "plugin read failure",
        3001 => "plugin write failure",
        3002 => "plugin disconnected (device down)",
        3003 => "tag not readable",
        3004 => "tag not writable",
        3007 => "tag type mismatch",
        3008 => "tag value expired",
        3009 => "protocol decode failure",
        3010 => "plugin not running",
        3011 => "tag not ready",
        3015 => "device does not respond",
        4000..=4016 => "MQTT error",
        _ => return None,
    })
}

/// Whether a Neuron answer says the token is missing or no good: 401 `1004`/`1005`, 403
/// `1006`/`1007`/`1008`.
pub(crate) fn token_refused(response: &http::Response<Bytes>) -> bool {
    let status = response.status().as_u16();
    if status != 401 && status != 403 {
        return false;
    }
    let code = serde_json::from_slice::<Value>(response.body()).ok().and_then(|v| int_field(&v, "error"));
    matches!((status, code), (401, Some(TOKEN_MISSING | TOKEN_UNDECODABLE)) | (403, Some(TOKEN_EXPIRED..=TOKEN_FOREIGN)))
}
