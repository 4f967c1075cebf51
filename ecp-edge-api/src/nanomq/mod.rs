//! NanoMQ's HTTP API v4 (`:8081`, base `/api/v4`), behind HTTP Basic (`admin:public` by default)
//! or, with `auth_type=jwt`, a `Bearer` JWT.
//!
//! Wire quirks kept (reference §5, §8):
//! - answers are `{"code":0,"data":…}`; errors are `{"code":N}` only, without a message and often
//!   without a content type; a non-zero `code` is an error whatever the status (a publish without
//!   a topic is 200 `{"code":108}`);
//! - an unknown path is 404 `{"code":102}`, and so is a wrong method; an unknown configuration
//!   section is 404 `{"code":101}`; an unknown client id lists nothing (no 404);
//! - clients carry `client_id`, subscriptions and the topic tree `clientid`;
//! - `/metrics` has no `code`, and its `memory` is a string.

use crate::service::Credentials;
use secrecy::SecretString;

use crate::service::EdgeKind;

mod client;
pub mod codes;
mod request;
#[cfg(test)]
mod tests;
mod types;

pub use client::*;
pub use codes::error_text;
use codes::token_refused;
pub use request::*;
pub use types::*;

/// The base path of the API.
pub const DEFAULT_PREFIX: &str = "/api/v4";
/// NanoMQ's default HTTP user.
pub const DEFAULT_USERNAME: &str = "admin";
/// NanoMQ's default HTTP password.
pub const DEFAULT_PASSWORD: &str = "public";

/// NanoMQ's default credentials, `admin:public` (`etc/nanomq.conf`).
pub fn default_credentials() -> Credentials {
    Credentials::Basic { username: DEFAULT_USERNAME.to_owned(), password: SecretString::from(DEFAULT_PASSWORD) }
}
