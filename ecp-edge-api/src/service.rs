//! What an edge service is to its API: the product it runs ([`EdgeKind`]) and how to
//! authenticate to it ([`Credentials`], secrets redacted in `Debug`).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The product an edge service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EdgeKind {
    /// NeuronEX 3.x (`:8085`, Neuron under `/api/neuron`, eKuiper under `/api/ekuiper`).
    NeuronEx,
    /// Standalone Neuron 2.x (`:7000`, `/api/v2`).
    Neuron,
    /// eKuiper (`:9081`).
    Ekuiper,
    /// NanoMQ (`:8081`, `/api/v4`).
    NanoMq,
    /// Anything else with an HTTP endpoint.
    Custom,
}

impl EdgeKind {
    /// Every kind.
    pub const ALL: [EdgeKind; 5] = [EdgeKind::NeuronEx, EdgeKind::Neuron, EdgeKind::Ekuiper, EdgeKind::NanoMq, EdgeKind::Custom];

    /// The stable name (`"neuronex"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EdgeKind::NeuronEx => "neuronex",
            EdgeKind::Neuron => "neuron",
            EdgeKind::Ekuiper => "ekuiper",
            EdgeKind::NanoMq => "nanomq",
            EdgeKind::Custom => "custom",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The product's name as its makers write it (`"NeuronEX"`, `"eKuiper"`, `"NanoMQ"`).
    pub const fn product_name(self) -> &'static str {
        match self {
            EdgeKind::NeuronEx => "NeuronEX",
            EdgeKind::Neuron => "Neuron",
            EdgeKind::Ekuiper => "eKuiper",
            EdgeKind::NanoMq => "NanoMQ",
            EdgeKind::Custom => "custom service",
        }
    }

    /// The product's API `category` code (1 eKuiper, 2 Neuron, 3 NanoMQ, 4 NeuronEX, 99 custom).
    pub const fn category(self) -> u8 {
        match self {
            EdgeKind::Ekuiper => 1,
            EdgeKind::Neuron => 2,
            EdgeKind::NanoMq => 3,
            EdgeKind::NeuronEx => 4,
            EdgeKind::Custom => 99,
        }
    }

    /// The kind of a product `category` code.
    pub fn from_category(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.category() == code)
    }
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the platform authenticates to an edge service's API. The secrets are redacted in `Debug`.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// No authentication (Neuron with auth disabled, eKuiper by default).
    #[default]
    None,
    /// A user name and password (Neuron/NeuronEX login, NanoMQ HTTP Basic).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretString,
    },
    /// A bearer token or JWT the service accepts as is.
    Token(SecretString),
}

impl Credentials {
    /// The stable name of the kind of credentials (`"none"`, `"basic"`, `"token"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::None => "none",
            Credentials::Basic { .. } => "basic",
            Credentials::Token(_) => "token",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"[REDACTED]").finish()
            }
            Credentials::Token(_) => f.write_str("Token([REDACTED])"),
        }
    }
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Credentials::None, Credentials::None) => true,
            (Credentials::Basic { username: a, password: p }, Credentials::Basic { username: b, password: q }) => {
                a == b && p.expose_secret() == q.expose_secret()
            }
            (Credentials::Token(a), Credentials::Token(b)) => a.expose_secret() == b.expose_secret(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_categories() {
        for k in EdgeKind::ALL {
            assert_eq!(EdgeKind::parse(k.as_str()), Some(k));
            assert_eq!(EdgeKind::from_category(k.category()), Some(k));
        }
        assert_eq!(EdgeKind::from_category(5), None);
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials::Basic { username: "admin".into(), password: SecretString::from("hunter2") };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Token(SecretString::from("tok3n"))).contains("tok3n"));
    }
}
