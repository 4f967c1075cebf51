//! Body helpers: a missing or mistyped field is 400 {"error":1002}, as Neuron's decoder says.

use axum::response::Response;
use serde_json::{Map, Value};

use crate::sim::reply::SimRequest;

use super::{MAX_NAME_LEN, error};

pub(super) fn body(req: &SimRequest) -> Result<Map<String, Value>, Response> {
    match req.json() {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(error(1002)),
    }
}

pub(super) fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, Response> {
    m.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| error(1002))
}

pub(super) fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, Response> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(error(1002)),
    }
}

pub(super) fn req_u64(m: &Map<String, Value>, key: &str) -> Result<u64, Response> {
    m.get(key).and_then(Value::as_u64).ok_or_else(|| error(1002))
}

pub(super) fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, Response> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| error(1002)),
    }
}

pub(super) fn opt_f64(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, Response> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| error(1002)),
    }
}

/// A required query parameter; missing or empty is 400 {"error":1003}.
pub(super) fn query<'r>(req: &'r SimRequest, key: &str) -> Result<&'r str, Response> {
    req.query(key).filter(|v| !v.is_empty()).ok_or_else(|| error(1003))
}

pub(super) fn check_name(name: &str, too_long: i64) -> Result<(), Response> {
    if name.is_empty() {
        return Err(error(1002));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(error(too_long));
    }
    Ok(())
}
