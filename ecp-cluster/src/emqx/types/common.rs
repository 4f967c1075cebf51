//! Shapes several answers share: [`Limit`] (a count or `"infinity"`), paged answers and error
//! bodies.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::{kind, opt_count};

/// A limit that EMQX gives as an integer or as the string `"infinity"` (listener
/// `max_connections`, client `subscriptions_max`, an unlimited license).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// At most this many.
    Finite(u64),
    /// No limit (`"infinity"`).
    Infinity,
}

impl Limit {
    /// The number, `None` for `Infinity`.
    pub const fn finite(self) -> Option<u64> {
        match self {
            Limit::Finite(n) => Some(n),
            Limit::Infinity => None,
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "infinity" => Ok(Limit::Infinity),
            Value::Number(n) => n.as_u64().map(Limit::Finite).ok_or_else(|| de::Error::custom(format!("{n} is not a count"))),
            other => Err(de::Error::custom(format!("expected a count or \"infinity\", got {}", kind(&other)))),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Finite(n) => s.serialize_u64(*n),
            Limit::Infinity => s.serialize_str("infinity"),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Finite(n) => write!(f, "{n}"),
            Limit::Infinity => f.write_str("infinity"),
        }
    }
}

/// The `meta` of a paged answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct PageMeta {
    /// The page (from 1).
    #[serde(default = "one")]
    pub page: u32,
    /// Its size.
    #[serde(default)]
    pub limit: u32,
    /// Whether a next page exists.
    pub hasnext: bool,
    /// The total, absent when EMQX cannot compute it (fuzzy searches).
    #[serde(default, deserialize_with = "opt_count")]
    pub count: Option<u64>,
}

const fn one() -> u32 {
    1
}

/// A paged answer: `{"data":[...],"meta":{"page","limit","hasnext","count"?}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Where this page is.
    pub meta: PageMeta,
}

/// The body of an EMQX error: `{"code","message"}` (extra keys ignored). Both are optional, since
/// a proxy or a 405 may answer with something else or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    /// The code (`BAD_API_KEY_OR_SECRET`, `NODE_DOWN` ...): an open string.
    pub code: Option<String>,
    /// The message, or a printable excerpt of a body that is not EMQX's JSON.
    pub message: Option<String>,
}

/// At most this many characters of an error message are kept.
const MAX_MESSAGE: usize = 512;

impl ErrorBody {
    /// Reads any body: EMQX's JSON, other JSON, text, bytes, nothing. Never fails or panics;
    /// control characters become spaces and the message is cut to 512 characters.
    pub fn parse(body: &[u8]) -> Self {
        let clean = |s: &str| -> Option<String> {
            let t: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_MESSAGE).collect();
            let t = t.trim();
            (!t.is_empty()).then(|| t.to_owned())
        };
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) if map.contains_key("code") || map.contains_key("message") => ErrorBody {
                code: map.get("code").and_then(Value::as_str).and_then(|c| clean(&c.chars().take(64).collect::<String>())),
                message: map.get("message").and_then(|m| match m {
                    Value::String(s) => clean(s),
                    Value::Null => None,
                    other => clean(&other.to_string()),
                }),
            },
            _ => ErrorBody { code: None, message: clean(&String::from_utf8_lossy(&body[..body.len().min(4 * MAX_MESSAGE)])) },
        }
    }
}
