//! Typed identifiers.
//!
//! Every entity has its own id type, a newtype over a UUIDv7 (time-ordered, so ids sort by creation).
//! Ids print and parse as the hyphenated UUID (`0190d5b6-...`) and serialize as that string, so an
//! [`OrgId`] can never be passed where a [`ProjectId`] is expected.

use std::fmt;
use std::str::FromStr;

/// The error of parsing an id from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct ParseIdError {
    kind: &'static str,
    reason: String,
}

impl ParseIdError {
    /// The kind of id that failed to parse (`"organization id"`, ...).
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// Defines a UUIDv7 id newtype with `Display`, `FromStr`, serde and ordering.
///
/// Crates of the workspace use it for their own ids (`define_id!(AgentId, "agent id")`).
#[macro_export]
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($crate::__private::Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self($crate::__private::Uuid::now_v7())
            }

            /// Wraps an existing UUID (from another system, or a fixture).
            pub const fn from_uuid(uuid: $crate::__private::Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &$crate::__private::Uuid {
                &self.0
            }

            /// What this id names, for error messages.
            pub const KIND: &'static str = $kind;
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::id::ParseIdError;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                $crate::id::parse_uuid(s, $kind).map(Self)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

/// Parses a hyphenated or simple UUID; bounded so hostile input costs nothing.
#[doc(hidden)]
pub fn parse_uuid(s: &str, kind: &'static str) -> Result<uuid::Uuid, ParseIdError> {
    if s.len() > 45 {
        return Err(ParseIdError { kind, reason: format!("{} characters is too long for a uuid", s.len()) });
    }
    uuid::Uuid::try_parse(s).map_err(|e| ParseIdError { kind, reason: e.to_string() })
}

define_id!(
    /// A configuration template (the same across its versions).
    TemplateId, "template id"
);
define_id!(
    /// An organization: the top of the tenancy hierarchy.
    OrgId, "organization id"
);
define_id!(
    /// A project: one organization's container of clusters, edge services and settings.
    ProjectId, "project id"
);
define_id!(
    /// A user account.
    UserId, "user id"
);
define_id!(
    /// A custom role.
    RoleId, "role id"
);
define_id!(
    /// A role binding (a subject holds a role at a scope).
    BindingId, "binding id"
);
define_id!(
    /// A login session (an access and refresh token pair).
    SessionId, "session id"
);
define_id!(
    /// An API key of a machine client.
    ApiKeyId, "api key id"
);
define_id!(
    /// A single-use token (an invitation or a password reset).
    UserTokenId, "user token id"
);
define_id!(
    /// An EMQX cluster.
    ClusterId, "cluster id"
);
define_id!(
    /// An edge service (NeuronEX, Neuron, eKuiper, NanoMQ, custom).
    EdgeServiceId, "edge service id"
);
define_id!(
    /// A batch task of the task engine.
    TaskId, "task id"
);
define_id!(
    /// A record of the operation audit log.
    AuditId, "audit record id"
);

/// An id of any kind, printed with its kind; used where one field names several kinds of thing
/// (an audit record's resource, an error's subject).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AnyId(String);

impl AnyId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AnyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AnyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<T: fmt::Display> From<&T> for AnyId {
    fn from(v: &T) -> Self {
        AnyId(v.to_string())
    }
}

impl FromStr for AnyId {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(AnyId(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = OrgId::new();
        let parsed: OrgId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        assert_eq!(id.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = ProjectId::new();
        let b = ProjectId::new();
        assert!(a < b);
    }

    #[test]
    fn serde_is_a_plain_string() {
        let id = UserId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: UserId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let err = "not-a-uuid".parse::<OrgId>().unwrap_err();
        assert_eq!(err.kind(), "organization id");
        assert!(err.to_string().starts_with("invalid organization id"));
        let long = "a".repeat(10_000);
        assert!(long.parse::<TaskId>().is_err());
        assert!(serde_json::from_str::<UserId>("42").is_err());
    }

    #[test]
    fn debug_names_the_kind() {
        let id = ClusterId::new();
        assert!(format!("{id:?}").starts_with("ClusterId("));
    }
}
