//! JSON helpers of the answers' fields (counts, memory sizes, binds) and [`parse_memory`].

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

/// What a JSON value is, for error messages (never the value itself).
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A non-negative integer (an integral float is accepted), or null/absent.
pub(super) fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f < 1.8e19).map(|f| f.round() as u64))
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("{n} is not a count"))),
        other => Err(de::Error::custom(format!("expected a count, got {}", kind(&other)))),
    }
}

/// As [`opt_count`], null reading as 0.
pub(super) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_count(d).map(Option::unwrap_or_default)
}

/// EMQX's memory notation (`"7.63G"`) or a number of bytes; `None` for anything else.
pub(super) fn opt_memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => parse_memory(&s),
        Value::Number(n) => n.as_u64(),
        _ => None,
    })
}

/// A listener's `bind`: `"0.0.0.0:1883"`, or a bare port number (`1883`).
pub(super) fn opt_bind<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Bytes from EMQX's memory notation: a plain number of bytes (`"512"`), or a decimal with a
/// `K`, `M`, `G` or `T` suffix in powers of 1024 (`"7.63G"`), case-insensitive, an optional
/// trailing `B` allowed. `None` for anything else, negative numbers, or more than `u64::MAX`.
pub fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || t.len() > 32 {
        return None;
    }
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let (number, multiplier) = match t.as_bytes().last()?.to_ascii_uppercase() {
        b'K' => (&t[..t.len() - 1], 1024f64),
        b'M' => (&t[..t.len() - 1], 1024f64.powi(2)),
        b'G' => (&t[..t.len() - 1], 1024f64.powi(3)),
        b'T' => (&t[..t.len() - 1], 1024f64.powi(4)),
        _ => (t, 1.0),
    };
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let frac = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let bytes = (value * multiplier).round();
    // 2^64 as f64 is exact; anything at or above it does not fit.
    if !bytes.is_finite() || bytes >= 18_446_744_073_709_551_616.0 {
        return None;
    }
    Some(bytes as u64)
}
