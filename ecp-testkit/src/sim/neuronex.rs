//! NeuronEX 3.x (:8085): its own login, version and system endpoints, with Neuron under
//! `/api/neuron/*` and eKuiper under `/api/ekuiper/*` behind one Bearer token.
//!
//! The proxied APIs answer with their own bodies and codes (reference §3); NeuronEX checks the
//! token itself and the inner services run without auth. Not confirmed (reference §7) and chosen
//! here: the 401 body (`{"error":1004|1005|1006|1007}`, Neuron's codes), a bad login
//! (401 `{"error":1009}`), and that `/api/version` and `/api/system` need the token too.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::reply::{self, SimRequest, go_not_found};
use super::server::Shared;
use super::token::{self, TokenCheck};
use super::{ekuiper, neuron};

/// The version `GET /api/version` reports.
const VERSION: &str = "3.6.0";

fn reply(status: StatusCode, value: &Value) -> Response {
    reply::json(status, "application/json; charset=utf-8", value)
}

fn error(status: StatusCode, code: i64) -> Response {
    reply(status, &json!({ "error": code }))
}

pub(crate) fn handle(shared: &Shared, req: &SimRequest) -> Response {
    let path = req.path.as_str();
    if path == "/api/login" {
        return if req.method == http::Method::POST { login(shared, req) } else { go_not_found() };
    }
    enum Route<'p> {
        Version,
        System,
        Neuron(&'p str),
        Ekuiper(&'p str),
    }
    let route = match path {
        "/api/version" if req.method == http::Method::GET => Route::Version,
        "/api/system" if req.method == http::Method::GET => Route::System,
        _ => {
            if let Some(sub) = path.strip_prefix("/api/neuron").filter(|s| s.is_empty() || s.starts_with('/')) {
                Route::Neuron(sub)
            } else if let Some(sub) = path.strip_prefix("/api/ekuiper").filter(|s| s.is_empty() || s.starts_with('/')) {
                Route::Ekuiper(sub)
            } else {
                return go_not_found();
            }
        }
    };
    if shared.config.auth {
        let token = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).unwrap_or("");
        if token.is_empty() {
            return error(StatusCode::UNAUTHORIZED, 1004);
        }
        match shared.tokens.check(token, token::AUD_NEURONEX) {
            TokenCheck::Valid => {}
            TokenCheck::Malformed | TokenCheck::Unknown => return error(StatusCode::UNAUTHORIZED, 1005),
            TokenCheck::Expired => return error(StatusCode::UNAUTHORIZED, 1006),
            TokenCheck::WrongAudience => return error(StatusCode::UNAUTHORIZED, 1007),
        }
    }
    match route {
        Route::Version => reply(StatusCode::OK, &json!({ "version": shared.config.version.as_deref().unwrap_or(VERSION) })),
        Route::System => reply(
            StatusCode::OK,
            &json!({
                "neuronStatus": "running",
                "ekuiperStatus": "running",
                "os": "linux",
                "arch": "amd64",
                "version": shared.config.version.as_deref().unwrap_or(VERSION),
                "neuronVersion": neuron::VERSION,
                "ekuiperVersion": ekuiper::VERSION,
                "uptime": shared.started.elapsed().as_secs().to_string(),
            }),
        ),
        Route::Neuron(sub) if sub.len() > 1 => neuron::handle(shared, req, sub, false),
        Route::Neuron(_) => reply::nng_error_page(StatusCode::NOT_FOUND),
        Route::Ekuiper(sub) => ekuiper::handle(shared, req, sub, false),
    }
}

fn login(shared: &Shared, req: &SimRequest) -> Response {
    let Some(Value::Object(m)) = req.json() else { return error(StatusCode::BAD_REQUEST, 1002) };
    let (Some(name), Some(password)) = (m.get("name").and_then(Value::as_str), m.get("password").and_then(Value::as_str)) else {
        return error(StatusCode::BAD_REQUEST, 1002);
    };
    if name != shared.config.username || password != shared.config.password {
        return error(StatusCode::UNAUTHORIZED, 1009);
    }
    reply(StatusCode::OK, &json!({ "token": shared.tokens.issue(token::AUD_NEURONEX, name), "role": "Administrator" }))
}
