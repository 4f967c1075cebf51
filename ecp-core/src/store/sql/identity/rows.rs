//! Column lists and row decoders of the identity tables, and the keys bindings are stored under.

use sqlx::any::AnyRow;

use crate::access::{Permission, Scope, Subject};
use crate::error::{Error, Result};
use crate::id::{ApiKeyId, OrgId, RoleId, UserId};
use crate::identity::{ApiKey, Binding, BuiltinRole, CustomRole, LoginFailures, RoleRef, SessionRecord, TokenHash, User, UserState};
use crate::store::sql::{col, col_bool, col_opt_parse, col_opt_ts, col_parse, col_ts};

pub(super) const USER_COLUMNS: &str = "id, email, display_name, state, enabled, sso_only, \
     CASE WHEN password_hash IS NULL THEN 0 ELSE 1 END AS has_password, created_at, updated_at, last_login_at";
pub(super) const BINDING_COLUMNS: &str = "id, user_id, api_key_id, role_builtin, role_id, scope_key, org_id, project_id, created_at";
pub(super) const ROLE_COLUMNS: &str = "id, org_id, name, description, permissions, created_at, updated_at";
pub(super) const SESSION_COLUMNS: &str = "id, user_id, access_hash, access_expires_at, refresh_hash, previous_refresh_hash, \
     refresh_expires_at, created_at, revoked_at";
pub(super) const API_KEY_COLUMNS: &str =
    "id, name, org_id, secret_hash, created_by_kind, created_by_id, created_at, expires_at, revoked_at, last_used_at";

fn integrity(reason: String) -> Error {
    Error::Integrity { what: "stored row", reason }
}

pub(super) fn user_from_row(row: &AnyRow) -> Result<User> {
    let state: String = col(row, "state")?;
    Ok(User {
        id: col_parse(row, "id")?,
        email: col(row, "email")?,
        display_name: col(row, "display_name")?,
        state: UserState::parse(&state).ok_or_else(|| integrity(format!("unknown user state {state:?}")))?,
        enabled: col_bool(row, "enabled")?,
        sso_only: col_bool(row, "sso_only")?,
        has_password: col_bool(row, "has_password")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
        last_login_at: col_opt_ts(row, "last_login_at")?,
    })
}

pub(super) fn subject_key(s: &Subject) -> Result<String> {
    match s {
        Subject::User(id) => Ok(format!("user:{id}")),
        Subject::ApiKey(id) => Ok(format!("api_key:{id}")),
        Subject::System | Subject::Anonymous => Err(Error::invalid("subject", "only users and api keys hold bindings")),
    }
}

pub(super) fn scope_key(s: &Scope) -> String {
    match s {
        Scope::System => "system".to_owned(),
        Scope::Org { org } => format!("org:{org}"),
        Scope::Project { project, .. } => format!("project:{project}"),
    }
}

pub(super) fn binding_from_row(row: &AnyRow) -> Result<Binding> {
    let subject = match (col_opt_parse::<UserId>(row, "user_id")?, col_opt_parse::<ApiKeyId>(row, "api_key_id")?) {
        (Some(u), None) => Subject::User(u),
        (None, Some(k)) => Subject::ApiKey(k),
        _ => return Err(integrity("binding without exactly one subject".into())),
    };
    let role = match (col::<Option<String>>(row, "role_builtin")?, col_opt_parse::<RoleId>(row, "role_id")?) {
        (Some(b), None) => RoleRef::Builtin(BuiltinRole::parse(&b).ok_or_else(|| integrity(format!("unknown role {b:?}")))?),
        (None, Some(id)) => RoleRef::Custom(id),
        _ => return Err(integrity("binding without exactly one role".into())),
    };
    let key: String = col(row, "scope_key")?;
    let scope = match (key.split(':').next(), col_opt_parse::<OrgId>(row, "org_id")?, col_opt_parse(row, "project_id")?) {
        (Some("system"), None, None) => Scope::System,
        (Some("org"), Some(org), None) => Scope::Org { org },
        (Some("project"), Some(org), Some(project)) => Scope::Project { org, project },
        _ => return Err(integrity(format!("binding with a malformed scope {key:?}"))),
    };
    Ok(Binding { id: col_parse(row, "id")?, subject, role, scope, created_at: col_ts(row, "created_at")? })
}

pub(super) fn role_from_row(row: &AnyRow) -> Result<CustomRole> {
    let perms: String = col(row, "permissions")?;
    let permissions = perms
        .split_whitespace()
        .map(|p| p.parse::<Permission>().map_err(|e| integrity(format!("role permission: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(CustomRole {
        id: col_parse(row, "id")?,
        org: col_opt_parse(row, "org_id")?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        permissions,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

pub(super) fn permissions_text(perms: &[Permission]) -> String {
    perms.iter().map(|p| format!("{}:{}", p.kind.as_str(), p.action.as_str())).collect::<Vec<_>>().join(" ")
}

fn hash_col(row: &AnyRow, name: &str) -> Result<TokenHash> {
    TokenHash::from_hex(&col::<String>(row, name)?)
}

pub(super) fn session_from_row(row: &AnyRow) -> Result<SessionRecord> {
    let prev: Option<String> = col(row, "previous_refresh_hash")?;
    Ok(SessionRecord {
        id: col_parse(row, "id")?,
        user: col_parse(row, "user_id")?,
        access_hash: hash_col(row, "access_hash")?,
        access_expires_at: col_ts(row, "access_expires_at")?,
        refresh_hash: hash_col(row, "refresh_hash")?,
        previous_refresh_hash: prev.as_deref().map(TokenHash::from_hex).transpose()?,
        refresh_expires_at: col_ts(row, "refresh_expires_at")?,
        created_at: col_ts(row, "created_at")?,
        revoked_at: col_opt_ts(row, "revoked_at")?,
    })
}

pub(super) fn api_key_from_row(row: &AnyRow) -> Result<(ApiKey, TokenHash)> {
    let kind: String = col(row, "created_by_kind")?;
    let created_by = match (kind.as_str(), col::<Option<String>>(row, "created_by_id")?) {
        ("user", Some(id)) => Subject::User(id.parse().map_err(|e| integrity(format!("api key creator: {e}")))?),
        ("api_key", Some(id)) => Subject::ApiKey(id.parse().map_err(|e| integrity(format!("api key creator: {e}")))?),
        ("system", None) => Subject::System,
        _ => return Err(integrity(format!("api key creator kind {kind:?}"))),
    };
    let key = ApiKey {
        id: col_parse(row, "id")?,
        name: col(row, "name")?,
        org: col_opt_parse(row, "org_id")?,
        created_by,
        created_at: col_ts(row, "created_at")?,
        expires_at: col_opt_ts(row, "expires_at")?,
        revoked_at: col_opt_ts(row, "revoked_at")?,
        last_used_at: col_opt_ts(row, "last_used_at")?,
    };
    Ok((key, hash_col(row, "secret_hash")?))
}

pub(super) fn failures_from_row(row: &AnyRow) -> Result<LoginFailures> {
    let failures: i64 = col(row, "failures")?;
    Ok(LoginFailures {
        failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
        window_start: col_ts(row, "window_start")?,
        locked_until: col_opt_ts(row, "locked_until")?,
    })
}
