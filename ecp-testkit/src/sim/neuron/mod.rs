//! Neuron 2.15's REST API (`/api/v2` on :7000), also served by NeuronEX under `/api/neuron`.
//!
//! Quirks kept (reference §3, §8): errors are `{"error":N}` with Neuron's status mapping (some under
//! HTTP 200); the token header's first seven characters are skipped unchecked; an expired token is
//! 403 1006, an undecodable or badly signed one 401 1005; login with a missing field is 400 1002;
//! tags for a missing group create the group; a partly bad tag batch keeps the tags before the bad
//! one; the group list has different keys with and without `?node=`; `node/state?node=` is a flat
//! object without the node name; unknown routes answer NNG's HTML page; metrics repeat their family
//! headers per node.

mod body;
mod metrics;
mod nodes;
mod state;
mod tags;

use axum::response::Response;
use http::StatusCode;
use http::header::{ALLOW, CONTENT_TYPE, HeaderName};
use serde_json::{Value, json};

use super::reply::{self, SimRequest};
use super::server::Shared;
use super::token::{self, TokenCheck};

use metrics::metrics;
use nodes::{login, node, node_ctl, node_setting, node_state, ping, plugins, version};
pub use state::{NeuronGroup, NeuronNode, NeuronState, NeuronTag, NodeRunState, NodeType};
use tags::{group, read, tags, write};

/// The version `GET /api/v2/version` reports.
pub(crate) const VERSION: &str = "2.15.0";
const REVISION: &str = "67d6beb";
const BUILD_DATE: &str = "2026-07-22";
/// The interval of a group that adding tags creates.
const DEFAULT_GROUP_INTERVAL: u64 = 1000;
/// The smallest group interval Neuron accepts, in milliseconds.
const MIN_GROUP_INTERVAL: u64 = 100;
const MAX_NAME_LEN: usize = 128;
const MAX_ADDRESS_LEN: usize = 128;
const MAX_DESCRIPTION_LEN: usize = 128;

/// The HTTP status Neuron sends with an error code (`src/utils/http.c`, reference §3).
pub(crate) fn status_of(code: i64) -> StatusCode {
    match code {
        0 | 2005 | 2101 | 2402..=2404 | 2406 | 3000..=3999 | 4000..=4999 | 10000..=20000 => StatusCode::OK,
        1002 | 1003 | 1012 | 1013 | 2004 | 2010 | 2012 | 2015 | 2105 | 2107 | 2108 | 2203..=2209 | 2302 | 2304..=2306 | 2401 => {
            StatusCode::BAD_REQUEST
        }
        1004 | 1005 | 1009 => StatusCode::UNAUTHORIZED,
        1006..=1008 => StatusCode::FORBIDDEN,
        1011 | 1014 | 2003 | 2102 | 2106 | 2201 | 2301 | 2400 => StatusCode::NOT_FOUND,
        2002 | 2006..=2009 | 2011 | 2103 | 2104 | 2202 | 2210 | 2303 | 2307 => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A Neuron reply: `application/json` with CORS `*`.
pub(crate) fn reply(status: StatusCode, body: &Value) -> Response {
    reply::respond(
        status,
        &[
            (CONTENT_TYPE, "application/json"),
            (HeaderName::from_static("access-control-allow-origin"), "*"),
            (HeaderName::from_static("access-control-allow-methods"), "POST,GET,PUT,DELETE,OPTIONS"),
            (HeaderName::from_static("access-control-allow-headers"), "*"),
        ],
        body.to_string(),
    )
}

/// `{"error":code}` with its status.
pub(crate) fn error(code: i64) -> Response {
    reply(status_of(code), &json!({ "error": code }))
}

fn ok() -> Response {
    error(0)
}

type Reply = Result<Response, Response>;

/// Standalone Neuron: everything under `/api/v2`, JWT per the config.
pub(crate) fn handle_standalone(shared: &Shared, req: &SimRequest) -> Response {
    match req.path.strip_prefix("/api/v2") {
        Some(sub) if sub.starts_with('/') => handle(shared, req, sub, shared.config.auth),
        _ => reply::nng_error_page(StatusCode::NOT_FOUND),
    }
}

/// Serves `sub` (the path after `/api/v2`, e.g. `/node`); `auth` turns the JWT checks on.
pub(crate) fn handle(shared: &Shared, req: &SimRequest, sub: &str, auth: bool) -> Response {
    let Some(state) = shared.neuron.as_ref() else { return reply::nng_error_page(StatusCode::NOT_FOUND) };
    type Handler = fn(&Ctx<'_>, &SimRequest) -> Reply;
    let (methods, needs_jwt, handler): (&[&str], bool, Handler) = match sub {
        "/login" => (&["POST"], false, login),
        "/ping" => (&["POST"], false, ping),
        "/version" => (&["GET"], true, version),
        "/plugin" => (&["GET"], true, plugins),
        "/node" => (&["GET", "POST", "PUT", "DELETE"], true, node),
        "/node/setting" => (&["GET", "POST"], true, node_setting),
        "/node/ctl" => (&["POST"], true, node_ctl),
        "/node/state" => (&["GET"], true, node_state),
        "/group" => (&["GET", "POST", "PUT", "DELETE"], true, group),
        "/tags" => (&["GET", "POST", "PUT", "DELETE"], true, tags),
        "/read" => (&["POST"], true, read),
        "/write" => (&["POST"], true, write),
        "/metrics" => (&["GET"], false, metrics),
        _ => return reply::nng_error_page(StatusCode::NOT_FOUND),
    };
    if !methods.contains(&req.method.as_str()) {
        let mut resp = reply::nng_error_page(StatusCode::METHOD_NOT_ALLOWED);
        if let Ok(v) = methods.join(", ").parse() {
            resp.headers_mut().insert(ALLOW, v);
        }
        return resp;
    }
    if needs_jwt && auth {
        // `neu_jwt_validate`: no header, or nothing past the first 7 characters, is 1004; those 7
        // ("Bearer ") are skipped without looking at them. A token that does not decode against
        // the key named by its `iss` is 1005, an expired one 1006, any other failed validation
        // 1007 (1008 is mapped to 403 but this validator never returns it).
        let header = req.header("authorization").unwrap_or("");
        if header.len() <= 7 {
            return error(1004);
        }
        let token = header.get(7..).unwrap_or("");
        match shared.tokens.check(token, token::AUD_NEURON) {
            TokenCheck::Valid => {}
            TokenCheck::Malformed | TokenCheck::Unknown => return error(1005),
            TokenCheck::Expired => return error(1006),
            TokenCheck::WrongAudience => return error(1007),
        }
    }
    let ctx = Ctx { shared, state, auth };
    handler(&ctx, req).unwrap_or_else(|e| e)
}

struct Ctx<'a> {
    shared: &'a Shared,
    state: &'a std::sync::Mutex<NeuronState>,
    auth: bool,
}

#[cfg(test)]
mod tests {
    use super::tags::address_ok;
    use super::*;

    #[test]
    fn status_mapping_follows_neuron() {
        assert_eq!(status_of(0), StatusCode::OK);
        assert_eq!(status_of(2005), StatusCode::OK);
        assert_eq!(status_of(3010), StatusCode::OK);
        assert_eq!(status_of(1002), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(2206), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(1005), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(1006), StatusCode::FORBIDDEN);
        assert_eq!(status_of(2301), StatusCode::NOT_FOUND);
        assert_eq!(status_of(2002), StatusCode::CONFLICT);
        assert_eq!(status_of(1001), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn modbus_addresses() {
        assert!(address_ok("Modbus TCP", "1!400001"));
        assert!(address_ok("Modbus TCP", "1!400001.2"));
        assert!(!address_ok("Modbus TCP", "400001"));
        assert!(!address_ok("Modbus TCP", "x!1"));
        assert!(address_ok("OPC UA", "ns=2;s=x"));
    }
}
