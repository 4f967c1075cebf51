//! Stored identities: users, memberships, roles and their bindings, sessions, API keys and
//! single-use tokens.
//!
//! These are the records the [`Store`](crate::store::Store) keeps; their rules (who may create what,
//! password hashing, what each built-in role grants) are `ecp-rbac`'s.

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::access::{Permission, Scope, Subject};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{ApiKeyId, BindingId, OrgId, ProjectId, RoleId, SessionId, UserId, UserTokenId};

/// The longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// Checks an email address used as a login name: 3–254 bytes, one `@` with text on both sides, no
/// whitespace or control characters. Deliverability is the mail server's business.
///
/// # Errors
/// [`Error::InvalidInput`] on the field `email`.
pub fn validate_email(email: &str) -> Result<()> {
    if email.len() < 3 || email.len() > MAX_EMAIL_LEN {
        return Err(Error::invalid("email", format!("must be 3..={MAX_EMAIL_LEN} bytes")));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid("email", "must not contain whitespace or control characters"));
    }
    match email.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => Ok(()),
        _ => Err(Error::invalid("email", "must be local-part@domain")),
    }
}

/// The key that makes emails unique regardless of case.
pub fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// Whether a user has finished signing up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// Invited, not yet activated ("To Activate" in the product).
    Invited,
    /// Active.
    Active,
}

impl UserState {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            UserState::Invited => "invited",
            UserState::Active => "active",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invited" => Some(UserState::Invited),
            "active" => Some(UserState::Active),
            _ => None,
        }
    }
}

/// A user account. The email is the login name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Its email, unique regardless of case.
    pub email: String,
    /// The name shown to people.
    pub display_name: String,
    /// Invited or active.
    pub state: UserState,
    /// A disabled user cannot log in, and its sessions are revoked.
    pub enabled: bool,
    /// An SSO user never logs in with a password.
    pub sso_only: bool,
    /// Whether a password is set.
    pub has_password: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// When it last logged in.
    pub last_login_at: Option<Timestamp>,
}

impl User {
    /// A new, enabled account in `state`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad email or display name (1–100 characters, no control
    /// characters).
    pub fn new(email: &str, display_name: &str, state: UserState, now: Timestamp) -> Result<Self> {
        validate_email(email)?;
        validate_display_name(display_name)?;
        Ok(User {
            id: UserId::new(),
            email: email.to_owned(),
            display_name: display_name.to_owned(),
            state,
            enabled: true,
            sso_only: false,
            has_password: false,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        })
    }
}

/// Checks a display name: 1–100 characters, no control characters.
///
/// # Errors
/// [`Error::InvalidInput`] on the field `display_name`.
pub fn validate_display_name(name: &str) -> Result<()> {
    let n = name.chars().take(101).count();
    if n == 0 || n > 100 {
        return Err(Error::invalid("display_name", "must be 1..=100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("display_name", "must not contain control characters"));
    }
    Ok(())
}

/// A password hash in PHC string form (`$argon2id$v=19$...`). Not the password, but still kept out
/// of `Debug` output and logs.
#[derive(Clone)]
pub struct PasswordHash(SecretString);

impl PasswordHash {
    /// Wraps a PHC string.
    pub fn new(phc: impl Into<String>) -> Self {
        Self(SecretString::from(phc.into()))
    }

    /// The PHC string.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

/// A user with its password hash: what login needs.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// Its password hash, if a password is set.
    pub password_hash: Option<PasswordHash>,
}

/// The built-in roles of the product. What each grants is defined by `ecp-rbac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BuiltinRole {
    /// Everything, everywhere. Bound at system scope only.
    SystemAdmin,
    /// Administers one organization and all its projects. Bound at organization scope only.
    OrgAdmin,
    /// Administers one project. Bound at project scope only.
    ProjectAdmin,
    /// The regular user: read-only on the resources of where it is bound (a project, or every
    /// project of an organization), and monitoring and logs.
    Viewer,
}

impl BuiltinRole {
    /// Every built-in role, strongest first.
    pub const ALL: [BuiltinRole; 4] = [BuiltinRole::SystemAdmin, BuiltinRole::OrgAdmin, BuiltinRole::ProjectAdmin, BuiltinRole::Viewer];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            BuiltinRole::SystemAdmin => "system_admin",
            BuiltinRole::OrgAdmin => "org_admin",
            BuiltinRole::ProjectAdmin => "project_admin",
            BuiltinRole::Viewer => "viewer",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role may be bound at `scope`.
    pub fn bindable_at(self, scope: &Scope) -> bool {
        matches!(
            (self, scope),
            (BuiltinRole::SystemAdmin, Scope::System)
                | (BuiltinRole::OrgAdmin, Scope::Org { .. })
                | (BuiltinRole::ProjectAdmin, Scope::Project { .. })
                | (BuiltinRole::Viewer, Scope::Org { .. } | Scope::Project { .. })
        )
    }
}

impl fmt::Display for BuiltinRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role: built in, or custom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "role", rename_all = "snake_case")]
pub enum RoleRef {
    /// A built-in role.
    Builtin(BuiltinRole),
    /// A custom role.
    Custom(RoleId),
}

impl fmt::Display for RoleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleRef::Builtin(r) => write!(f, "{r}"),
            RoleRef::Custom(id) => write!(f, "custom role {id}"),
        }
    }
}

/// A custom role: a named set of permissions, owned by an organization (usable in it only) or by the
/// system (usable everywhere), bound at organization or project scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomRole {
    /// Its id.
    pub id: RoleId,
    /// The organization owning it, or `None` for a system-wide role.
    pub org: Option<OrgId>,
    /// Its name, unique per owner regardless of case (1–50 characters, like tenant names).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// What it grants (the strongest action per kind; weaker ones are implied).
    pub permissions: Vec<Permission>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// A role held by a subject at a scope. A subject holds at most one role per scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Its id.
    pub id: BindingId,
    /// The user or API key holding the role.
    pub subject: Subject,
    /// The role.
    pub role: RoleRef,
    /// Where it applies.
    pub scope: Scope,
    /// When it was made.
    pub created_at: Timestamp,
}

impl Binding {
    /// A new binding.
    pub fn new(subject: Subject, role: RoleRef, scope: Scope, now: Timestamp) -> Self {
        Self { id: BindingId::new(), subject, role, scope, created_at: now }
    }
}

/// Which bindings to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingFilter {
    /// Of this subject.
    pub subject: Option<Subject>,
    /// At this organization's scope or in its projects.
    pub org: Option<OrgId>,
    /// At this project's scope.
    pub project: Option<ProjectId>,
    /// Of this custom role.
    pub role: Option<RoleId>,
    /// Only bindings at system scope.
    pub system_only: bool,
}

/// The SHA-256 of a high-entropy token; tokens themselves are never stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes a token.
    pub fn of(token: &str) -> Self {
        use sha2::Digest;
        TokenHash(sha2::Sha256::digest(token.as_bytes()).into())
    }

    /// Hex form, as stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the hex form.
    ///
    /// # Errors
    /// [`Error::Integrity`] if it is not 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| Error::Integrity { what: "token hash", reason: e.to_string() })?;
        Ok(TokenHash(out))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}..)", &self.to_hex()[..8])
    }
}

/// A login session: an access token and a refresh token, stored as hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Its id.
    pub id: SessionId,
    /// The user.
    pub user: UserId,
    /// The current access token's hash.
    pub access_hash: TokenHash,
    /// When the access token expires.
    pub access_expires_at: Timestamp,
    /// The current refresh token's hash.
    pub refresh_hash: TokenHash,
    /// The refresh token it replaced: presenting that one again means it was stolen.
    pub previous_refresh_hash: Option<TokenHash>,
    /// When the refresh token expires.
    pub refresh_expires_at: Timestamp,
    /// When the session started.
    pub created_at: Timestamp,
    /// When it was revoked (logout, password change, disable, reuse of a rotated token).
    pub revoked_at: Option<Timestamp>,
}

/// An API key of a machine client. The secret is shown once at creation; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its id (also the public part of the key).
    pub id: ApiKeyId,
    /// Its name.
    pub name: String,
    /// The organization it belongs to, or `None` for a system key.
    pub org: Option<OrgId>,
    /// Who created it.
    pub created_by: Subject,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// When it was last used.
    pub last_used_at: Option<Timestamp>,
}

/// What a single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserTokenPurpose {
    /// Accepting an invitation (setting the first password and activating).
    Invitation,
    /// Resetting a password.
    PasswordReset,
}

impl UserTokenPurpose {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            UserTokenPurpose::Invitation => "invitation",
            UserTokenPurpose::PasswordReset => "password_reset",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invitation" => Some(UserTokenPurpose::Invitation),
            "password_reset" => Some(UserTokenPurpose::PasswordReset),
            _ => None,
        }
    }
}

/// A single-use token (invitation, password reset), stored as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserToken {
    /// Its id.
    pub id: UserTokenId,
    /// The user it is for.
    pub user: UserId,
    /// What it is for.
    pub purpose: UserTokenPurpose,
    /// The token's hash.
    pub token_hash: TokenHash,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was used.
    pub used_at: Option<Timestamp>,
}

/// Failed logins for one login name (known or not: unknown names are tracked the same way, so a
/// lockout tells nothing about whether an account exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures in the current window.
    pub failures: u32,
    /// When the window started.
    pub window_start: Timestamp,
    /// Until when logins are refused, if locked.
    pub locked_until: Option<Timestamp>,
}

/// The rule for locking a login name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRule {
    /// Failures within `window` that lock.
    pub max_failures: u32,
    /// The window failures are counted in.
    pub window: std::time::Duration,
    /// How long a lock lasts.
    pub lock_for: std::time::Duration,
}

/// Which users to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Members of this organization.
    pub org: Option<OrgId>,
    /// Holding a binding in this project.
    pub project: Option<ProjectId>,
    /// Members of any of these organizations or bound in `within_projects` (what a principal may
    /// see); `None` for no restriction.
    pub within_orgs: Option<Vec<OrgId>>,
    /// See `within_orgs`.
    pub within_projects: Vec<ProjectId>,
    /// Email or display name contains this, case-insensitive.
    pub search: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b", "ann.lee+ops@example.com", "root@localhost"] {
            validate_email(ok).unwrap();
        }
        for bad in ["", "ab", "no-at", "@b.c", "a@", "a@b@c", "a b@c", "a\n@b", &format!("{}@b.c", "a".repeat(300))] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn password_hash_is_redacted() {
        let h = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
        assert!(!format!("{h:?}").contains("argon2"));
        let creds = UserCredentials { user: User::new("a@b.c", "A", UserState::Active, Timestamp::now()).unwrap(), password_hash: Some(h) };
        assert!(!format!("{creds:?}").contains("argon2"));
    }

    #[test]
    fn token_hash_hex_round_trip() {
        let h = TokenHash::of("tok");
        assert_eq!(TokenHash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(TokenHash::from_hex("zz").is_err());
    }

    #[test]
    fn builtin_roles_bind_only_where_they_make_sense() {
        let org = OrgId::new();
        let proj = Scope::Project { org, project: ProjectId::new() };
        assert!(BuiltinRole::SystemAdmin.bindable_at(&Scope::System));
        assert!(!BuiltinRole::SystemAdmin.bindable_at(&Scope::Org { org }));
        assert!(BuiltinRole::OrgAdmin.bindable_at(&Scope::Org { org }));
        assert!(!BuiltinRole::OrgAdmin.bindable_at(&proj));
        assert!(BuiltinRole::ProjectAdmin.bindable_at(&proj));
        assert!(BuiltinRole::Viewer.bindable_at(&proj));
        assert!(BuiltinRole::Viewer.bindable_at(&Scope::Org { org }));
        assert!(!BuiltinRole::Viewer.bindable_at(&Scope::System));
    }
}
