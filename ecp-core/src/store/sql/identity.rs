//! Users, memberships, roles, bindings, sessions, API keys, single-use tokens, login failures.

use async_trait::async_trait;
use sqlx::Transaction;
use sqlx::any::{Any, AnyRow};

use super::{
    OnViolation, Sql, SqlStore, col, col_bool, col_opt_parse, col_opt_ts, col_parse, col_ts, like_contains, opt_ts, page_limit, ts,
};
use crate::access::{Permission, Scope, Subject};
use crate::audit::AuditEvent;
use crate::clock::{self, Timestamp};
use crate::error::{Error, Result};
use crate::id::{ApiKeyId, OrgId, RoleId, SessionId, UserId};
use crate::identity::{
    ApiKey, Binding, BindingFilter, BuiltinRole, CustomRole, LockoutRule, LoginFailures, PasswordHash, RoleRef, SessionRecord, TokenHash,
    User, UserCredentials, UserFilter, UserState, UserToken, UserTokenPurpose, email_key,
};
use crate::page::{Page, PageRequest};
use crate::store::IdentityStore;
use crate::tenancy::model::name_key;

const USER_COLUMNS: &str = "id, email, display_name, state, enabled, sso_only, \
     CASE WHEN password_hash IS NULL THEN 0 ELSE 1 END AS has_password, created_at, updated_at, last_login_at";
const BINDING_COLUMNS: &str = "id, user_id, api_key_id, role_builtin, role_id, scope_key, org_id, project_id, created_at";
const ROLE_COLUMNS: &str = "id, org_id, name, description, permissions, created_at, updated_at";
const SESSION_COLUMNS: &str = "id, user_id, access_hash, access_expires_at, refresh_hash, previous_refresh_hash, \
     refresh_expires_at, created_at, revoked_at";
const API_KEY_COLUMNS: &str =
    "id, name, org_id, secret_hash, created_by_kind, created_by_id, created_at, expires_at, revoked_at, last_used_at";

fn integrity(reason: String) -> Error {
    Error::Integrity { what: "stored row", reason }
}

fn user_from_row(row: &AnyRow) -> Result<User> {
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

fn subject_key(s: &Subject) -> Result<String> {
    match s {
        Subject::User(id) => Ok(format!("user:{id}")),
        Subject::ApiKey(id) => Ok(format!("api_key:{id}")),
        Subject::System | Subject::Anonymous => Err(Error::invalid("subject", "only users and api keys hold bindings")),
    }
}

fn scope_key(s: &Scope) -> String {
    match s {
        Scope::System => "system".to_owned(),
        Scope::Org { org } => format!("org:{org}"),
        Scope::Project { project, .. } => format!("project:{project}"),
    }
}

fn binding_from_row(row: &AnyRow) -> Result<Binding> {
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

fn role_from_row(row: &AnyRow) -> Result<CustomRole> {
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

fn permissions_text(perms: &[Permission]) -> String {
    perms.iter().map(|p| format!("{}:{}", p.kind.as_str(), p.action.as_str())).collect::<Vec<_>>().join(" ")
}

fn hash_col(row: &AnyRow, name: &str) -> Result<TokenHash> {
    TokenHash::from_hex(&col::<String>(row, name)?)
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord> {
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

fn api_key_from_row(row: &AnyRow) -> Result<(ApiKey, TokenHash)> {
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

impl SqlStore {
    /// Inserts or replaces a binding inside `tx`, after checking that its parts exist and agree: the
    /// project belongs to the scope's organization, a custom role is usable there, and a user is a
    /// member of the organization.
    async fn put_binding_in(&self, tx: &mut Transaction<'static, Any>, b: &Binding) -> Result<Option<Binding>> {
        let subject = subject_key(&b.subject)?;
        let scope = scope_key(&b.scope);
        if let Scope::Project { org, project } = b.scope {
            let owner: Option<String> = sqlx::query("SELECT org_id FROM projects WHERE id = $1")
                .bind(project.to_string())
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| self.err(e))?
                .map(|r| col(&r, "org_id"))
                .transpose()?;
            match owner {
                None => return Err(Error::not_found("project", project)),
                Some(o) if o != org.to_string() => return Err(Error::invalid("scope", "the project is not in that organization")),
                Some(_) => {}
            }
        }
        if let RoleRef::Custom(role) = b.role {
            let role_org: Option<Option<String>> = sqlx::query("SELECT org_id FROM roles WHERE id = $1")
                .bind(role.to_string())
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| self.err(e))?
                .map(|r| col(&r, "org_id"))
                .transpose()?;
            match (role_org, b.scope.org()) {
                (None, _) => return Err(Error::not_found("role", role)),
                (Some(Some(owner)), Some(org)) if owner != org.to_string() => {
                    return Err(Error::invalid("role", "a custom role of another organization"));
                }
                (Some(Some(_)), None) => return Err(Error::invalid("role", "an organization's role cannot be bound at system scope")),
                _ => {}
            }
        }
        let (user_id, key_id) = match b.subject {
            Subject::User(u) => (Some(u.to_string()), None),
            Subject::ApiKey(k) => (None, Some(k.to_string())),
            Subject::System | Subject::Anonymous => unreachable!("rejected by subject_key"),
        };
        if let (Some(user), Some(org)) = (&user_id, b.scope.org()) {
            let member = sqlx::query("SELECT 1 AS one FROM org_members WHERE org_id = $1 AND user_id = $2")
                .bind(org.to_string())
                .bind(user.clone())
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| self.err(e))?;
            if member.is_none() {
                return Err(Error::invalid("subject", "the user must be a member of the organization first"));
            }
        }
        let previous =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE subject_key = $1 AND scope_key = $2")))
                .bind(subject.clone())
                .bind(scope.clone())
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| self.err(e))?
                .as_ref()
                .map(binding_from_row)
                .transpose()?;
        if previous.is_some() {
            sqlx::query("DELETE FROM bindings WHERE subject_key = $1 AND scope_key = $2")
                .bind(subject.clone())
                .bind(scope.clone())
                .execute(&mut **tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        let (role_builtin, role_id) = match b.role {
            RoleRef::Builtin(r) => (Some(r.as_str().to_owned()), None),
            RoleRef::Custom(id) => (None, Some(id.to_string())),
        };
        let member_user = if b.scope.org().is_some() { user_id.clone() } else { None };
        sqlx::query(
            "INSERT INTO bindings (id, subject_key, user_id, api_key_id, role_builtin, role_id, scope_key, org_id, project_id, \
             member_user_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(b.id.to_string())
        .bind(subject)
        .bind(user_id)
        .bind(key_id)
        .bind(role_builtin)
        .bind(role_id)
        .bind(scope)
        .bind(b.scope.org().map(|o| o.to_string()))
        .bind(b.scope.project().map(|p| p.to_string()))
        .bind(member_user)
        .bind(ts(b.created_at))
        .execute(&mut **tx)
        .await
        .on_violation(
            || Error::conflict("binding", b.id, "already exists"),
            || Error::not_found("subject, organization or role", b.subject),
        )?;
        Ok(previous)
    }

    async fn revoke_sessions_in(&self, tx: &mut Transaction<'static, Any>, user: UserId, now: Timestamp) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(ts(now))
            .bind(user.to_string())
            .execute(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn create_user(
        &self,
        user: &User,
        password: Option<&PasswordHash>,
        memberships: &[OrgId],
        bindings: &[Binding],
        audit: &AuditEvent,
    ) -> Result<()> {
        if bindings.iter().any(|b| b.subject != Subject::User(user.id)) {
            return Err(Error::invalid("bindings", "every binding must be of the new user"));
        }
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO users (id, email, email_key, display_name, state, enabled, sso_only, password_hash, created_at, updated_at, \
             last_login_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(user.id.to_string())
        .bind(user.email.clone())
        .bind(email_key(&user.email))
        .bind(user.display_name.clone())
        .bind(user.state.as_str())
        .bind(i64::from(user.enabled))
        .bind(i64::from(user.sso_only))
        .bind(password.map(|p| p.expose().to_owned()))
        .bind(ts(user.created_at))
        .bind(ts(user.updated_at))
        .bind(opt_ts(user.last_login_at))
        .execute(&mut *tx)
        .await
        .on_violation(
            || Error::conflict("user", &user.email, "the email is taken"),
            || Error::conflict("user", user.id, "bad reference"),
        )?;
        for org in memberships {
            sqlx::query("INSERT INTO org_members (org_id, user_id, added_at) VALUES ($1, $2, $3)")
                .bind(org.to_string())
                .bind(user.id.to_string())
                .bind(ts(user.created_at))
                .execute(&mut *tx)
                .await
                .on_violation(
                    || Error::invalid("memberships", "an organization is listed twice"),
                    || Error::not_found("organization", org),
                )?;
        }
        for b in bindings {
            self.put_binding_in(&mut tx, b).await?;
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(user_from_row).transpose()?.ok_or_else(|| Error::not_found("user", id))
    }

    async fn find_credentials(&self, email: &str) -> Result<Option<UserCredentials>> {
        if email.len() > crate::identity::MAX_EMAIL_LEN {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email_key = $1")))
            .bind(email_key(email))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let hash: Option<String> = col(&row, "password_hash")?;
        Ok(Some(UserCredentials { user: user_from_row(&row)?, password_hash: hash.map(PasswordHash::new) }))
    }

    async fn list_users(&self, filter: &UserFilter, page: &PageRequest) -> Result<Page<User>> {
        page_limit(page)?;
        if filter.search.as_ref().is_some_and(|s| s.len() > 200) {
            return Err(Error::invalid("search", "longer than 200 bytes"));
        }
        let mut sql = Sql::new(&format!("SELECT {USER_COLUMNS} FROM users WHERE 1 = 1"));
        if let Some(org) = filter.org {
            sql.push(" AND id IN (SELECT user_id FROM org_members WHERE org_id = ").bind(org.to_string()).push(")");
        }
        if let Some(project) = filter.project {
            sql.push(" AND id IN (SELECT user_id FROM bindings WHERE project_id = ").bind(project.to_string()).push(")");
        }
        if let Some(orgs) = &filter.within_orgs {
            let members = "id IN (SELECT user_id FROM org_members WHERE org_id IN ";
            let bound = "id IN (SELECT user_id FROM bindings WHERE project_id IN ";
            if !sql.within(orgs, members, &filter.within_projects, bound, ")") {
                return Ok(Page { items: Vec::new(), next: None });
            }
        }
        if let Some(s) = &filter.search {
            let pattern = like_contains(s);
            sql.push(" AND (email_key LIKE ").bind(pattern.clone()).push(" ESCAPE '\\' OR LOWER(display_name) LIKE ");
            sql.bind(pattern).push(" ESCAPE '\\')");
        }
        self.fetch_page(sql, page, user_from_row, |u| u.id.to_string()).await
    }

    async fn update_user(&self, user: &User, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let updated = sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, display_name = $3, state = $4, enabled = $5, sso_only = $6, updated_at = $7 \
             WHERE id = $8",
        )
        .bind(user.email.clone())
        .bind(email_key(&user.email))
        .bind(user.display_name.clone())
        .bind(user.state.as_str())
        .bind(i64::from(user.enabled))
        .bind(i64::from(user.sso_only))
        .bind(ts(user.updated_at))
        .bind(user.id.to_string())
        .execute(&mut *tx)
        .await
        .on_violation(
            || Error::conflict("user", &user.email, "the email is taken"),
            || Error::conflict("user", user.id, "bad reference"),
        )?;
        if updated.rows_affected() == 0 {
            return Err(Error::not_found("user", user.id));
        }
        if !user.enabled {
            self.revoke_sessions_in(&mut tx, user.id, user.updated_at).await?;
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn set_password(&self, id: UserId, hash: Option<&PasswordHash>, now: Timestamp, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let updated = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash.map(|h| h.expose().to_owned()))
            .bind(ts(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if updated.rows_affected() == 0 {
            return Err(Error::not_found("user", id));
        }
        self.revoke_sessions_in(&mut tx, id, now).await?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn delete_user(&self, id: UserId, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        // Bindings go first: they reference both the user and its memberships.
        sqlx::query("DELETE FROM bindings WHERE user_id = $1").bind(id.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        let deleted =
            sqlx::query("DELETE FROM users WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        if deleted.rows_affected() == 0 {
            return Err(Error::not_found("user", id));
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn record_login(&self, id: UserId, at: Timestamp) -> Result<()> {
        let updated = sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
            .bind(ts(at))
            .bind(id.to_string())
            .execute(&self.writes)
            .await
            .map_err(|e| self.err(e))?;
        if updated.rows_affected() == 0 {
            return Err(Error::not_found("user", id));
        }
        Ok(())
    }

    async fn add_org_member(&self, org: OrgId, user: UserId, now: Timestamp, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        for (table, kind, id) in [("organizations", "organization", org.to_string()), ("users", "user", user.to_string())] {
            let found = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT 1 AS one FROM {table} WHERE id = $1")))
                .bind(id.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            if found.is_none() {
                return Err(Error::not_found(kind, id));
            }
        }
        sqlx::query("INSERT INTO org_members (org_id, user_id, added_at) VALUES ($1, $2, $3) ON CONFLICT (org_id, user_id) DO NOTHING")
            .bind(org.to_string())
            .bind(user.to_string())
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn remove_org_member(&self, org: OrgId, user: UserId, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM bindings WHERE org_id = $1 AND member_user_id = $2")
            .bind(org.to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let deleted = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org.to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if deleted.rows_affected() == 0 {
            return Err(Error::not_found("membership", format!("{user} in {org}")));
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn user_orgs(&self, user: UserId) -> Result<Vec<OrgId>> {
        let rows = sqlx::query("SELECT org_id FROM org_members WHERE user_id = $1 ORDER BY org_id")
            .bind(user.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| col_parse(r, "org_id")).collect()
    }

    async fn create_role(&self, role: &CustomRole, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO roles (id, org_id, owner_key, name, name_key, description, permissions, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(role.id.to_string())
        .bind(role.org.map(|o| o.to_string()))
        .bind(role.org.map_or_else(|| "system".to_owned(), |o| o.to_string()))
        .bind(role.name.clone())
        .bind(name_key(&role.name))
        .bind(role.description.clone())
        .bind(permissions_text(&role.permissions))
        .bind(ts(role.created_at))
        .bind(ts(role.updated_at))
        .execute(&mut *tx)
        .await
        .on_violation(
            || Error::conflict("role", &role.name, "the name is taken"),
            || Error::not_found("organization", role.org.map(|o| o.to_string()).unwrap_or_default()),
        )?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_role(&self, id: RoleId) -> Result<CustomRole> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ROLE_COLUMNS} FROM roles WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(role_from_row).transpose()?.ok_or_else(|| Error::not_found("role", id))
    }

    async fn list_roles(&self, org: Option<OrgId>) -> Result<Vec<CustomRole>> {
        let mut sql = Sql::new(&format!("SELECT {ROLE_COLUMNS} FROM roles"));
        if let Some(org) = org {
            sql.push(" WHERE org_id IS NULL OR org_id = ").bind(org.to_string());
        }
        sql.push(" ORDER BY id");
        let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        rows.iter().map(role_from_row).collect()
    }

    async fn update_role(&self, role: &CustomRole, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let updated =
            sqlx::query("UPDATE roles SET name = $1, name_key = $2, description = $3, permissions = $4, updated_at = $5 WHERE id = $6")
                .bind(role.name.clone())
                .bind(name_key(&role.name))
                .bind(role.description.clone())
                .bind(permissions_text(&role.permissions))
                .bind(ts(role.updated_at))
                .bind(role.id.to_string())
                .execute(&mut *tx)
                .await
                .on_violation(
                    || Error::conflict("role", &role.name, "the name is taken"),
                    || Error::conflict("role", role.id, "bad reference"),
                )?;
        if updated.rows_affected() == 0 {
            return Err(Error::not_found("role", role.id));
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn delete_role(&self, id: RoleId, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let bound = sqlx::query("SELECT COUNT(*) AS n FROM bindings WHERE role_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let n: i64 = col(&bound, "n")?;
        if n > 0 {
            return Err(Error::conflict("role", id, format!("it is bound {n} times")));
        }
        let deleted = sqlx::query("DELETE FROM roles WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .on_violation(|| Error::conflict("role", id, "still referenced"), || Error::conflict("role", id, "it is still bound"))?;
        if deleted.rows_affected() == 0 {
            return Err(Error::not_found("role", id));
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn put_binding(&self, binding: &Binding, audit: &AuditEvent) -> Result<Option<Binding>> {
        let mut tx = self.write().await?;
        let previous = self.put_binding_in(&mut tx, binding).await?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(previous)
    }

    async fn delete_binding(&self, subject: Subject, scope: &Scope, audit: &AuditEvent) -> Result<Binding> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM bindings WHERE subject_key = $1 AND scope_key = $2 RETURNING {BINDING_COLUMNS}"
        )))
        .bind(subject_key(&subject)?)
        .bind(scope_key(scope))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let binding =
            row.as_ref().map(binding_from_row).transpose()?.ok_or_else(|| Error::not_found("binding", format!("{subject} at {scope}")))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(binding)
    }

    async fn list_bindings(&self, filter: &BindingFilter) -> Result<Vec<Binding>> {
        let mut sql = Sql::new(&format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE 1 = 1"));
        if let Some(subject) = &filter.subject {
            sql.push(" AND subject_key = ").bind(subject_key(subject)?);
        }
        if let Some(org) = filter.org {
            sql.push(" AND org_id = ").bind(org.to_string());
        }
        if let Some(project) = filter.project {
            sql.push(" AND project_id = ").bind(project.to_string());
        }
        if let Some(role) = filter.role {
            sql.push(" AND role_id = ").bind(role.to_string());
        }
        if filter.system_only {
            sql.push(" AND scope_key = 'system'");
        }
        sql.push(" ORDER BY id");
        let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        rows.iter().map(binding_from_row).collect()
    }

    async fn all_bindings(&self, page: &PageRequest) -> Result<Page<Binding>> {
        let sql = Sql::new(&format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE 1 = 1"));
        self.fetch_page(sql, page, binding_from_row, |b| b.id.to_string()).await
    }

    async fn inactive_subjects(&self, now: Timestamp) -> Result<Vec<Subject>> {
        let users = sqlx::query("SELECT id FROM users WHERE enabled = 0").fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        let keys = sqlx::query("SELECT id FROM api_keys WHERE revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= $1)")
            .bind(ts(now))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(users.len() + keys.len());
        for r in &users {
            out.push(Subject::User(col_parse(r, "id")?));
        }
        for r in &keys {
            out.push(Subject::ApiKey(col_parse(r, "id")?));
        }
        Ok(out)
    }

    async fn create_session(&self, s: &SessionRecord, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        // Sessions long dead are dropped as new ones start, so the table stays small.
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND refresh_expires_at < $2")
            .bind(s.user.to_string())
            .bind(ts(clock::sub(s.created_at, std::time::Duration::from_secs(86_400))))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, access_hash, access_expires_at, refresh_hash, previous_refresh_hash, refresh_expires_at, \
             created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(s.id.to_string())
        .bind(s.user.to_string())
        .bind(s.access_hash.to_hex())
        .bind(ts(s.access_expires_at))
        .bind(s.refresh_hash.to_hex())
        .bind(s.previous_refresh_hash.map(|h| h.to_hex()))
        .bind(ts(s.refresh_expires_at))
        .bind(ts(s.created_at))
        .bind(opt_ts(s.revoked_at))
        .execute(&mut *tx)
        .await
        .on_violation(|| Error::conflict("session", s.id, "token collision"), || Error::not_found("user", s.user))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn session_by_access(&self, hash: &TokenHash) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE access_hash = $1")))
            .bind(hash.to_hex())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn session_by_refresh(&self, hash: &TokenHash) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE refresh_hash = $1 OR previous_refresh_hash = $1"
        )))
        .bind(hash.to_hex())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn rotate_session(&self, next: &SessionRecord, expected_refresh: &TokenHash) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE sessions SET access_hash = $1, access_expires_at = $2, refresh_hash = $3, previous_refresh_hash = $4, \
             refresh_expires_at = $5 WHERE id = $6 AND refresh_hash = $7 AND revoked_at IS NULL",
        )
        .bind(next.access_hash.to_hex())
        .bind(ts(next.access_expires_at))
        .bind(next.refresh_hash.to_hex())
        .bind(next.previous_refresh_hash.map(|h| h.to_hex()))
        .bind(ts(next.refresh_expires_at))
        .bind(next.id.to_string())
        .bind(expected_refresh.to_hex())
        .execute(&self.writes)
        .await
        .on_violation(|| Error::conflict("session", next.id, "token collision"), || Error::not_found("session", next.id))?;
        Ok(updated.rows_affected() == 1)
    }

    async fn revoke_session(&self, id: SessionId, at: Timestamp, audit: &AuditEvent) -> Result<()> {
        let statement =
            sqlx::query("UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2").bind(ts(at)).bind(id.to_string());
        self.change_one(statement, || Error::not_found("session", id), audit).await
    }

    async fn create_api_key(&self, key: &ApiKey, secret_hash: &TokenHash, bindings: &[Binding], audit: &AuditEvent) -> Result<()> {
        if bindings.iter().any(|b| b.subject != Subject::ApiKey(key.id)) {
            return Err(Error::invalid("bindings", "every binding must be of the new key"));
        }
        let mut tx = self.write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(key.id.to_string())
        .bind(key.name.clone())
        .bind(key.org.map(|o| o.to_string()))
        .bind(secret_hash.to_hex())
        .bind(key.created_by.kind())
        .bind(key.created_by.id_string())
        .bind(ts(key.created_at))
        .bind(opt_ts(key.expires_at))
        .bind(opt_ts(key.revoked_at))
        .bind(opt_ts(key.last_used_at))
        .execute(&mut *tx)
        .await
        .on_violation(
            || Error::conflict("api key", key.id, "already exists"),
            || Error::not_found("organization", key.org.map(|o| o.to_string()).unwrap_or_default()),
        )?;
        for b in bindings {
            self.put_binding_in(&mut tx, b).await?;
        }
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn get_api_key(&self, id: ApiKeyId) -> Result<(ApiKey, TokenHash)> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1")))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(api_key_from_row).transpose()?.ok_or_else(|| Error::not_found("api key", id))
    }

    async fn list_api_keys(&self, org: Option<OrgId>) -> Result<Vec<ApiKey>> {
        let mut sql = Sql::new(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE "));
        match org {
            Some(org) => sql.push("org_id = ").bind(org.to_string()),
            None => sql.push("org_id IS NULL"),
        };
        sql.push(" ORDER BY id");
        let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
        rows.iter().map(|r| api_key_from_row(r).map(|(k, _)| k)).collect()
    }

    async fn revoke_api_key(&self, id: ApiKeyId, at: Timestamp, audit: &AuditEvent) -> Result<()> {
        let statement =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2").bind(ts(at)).bind(id.to_string());
        self.change_one(statement, || Error::not_found("api key", id), audit).await
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(ts(at))
            .bind(id.to_string())
            .execute(&self.writes)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn create_user_token(&self, token: &UserToken, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM user_tokens WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL")
            .bind(token.user.to_string())
            .bind(token.purpose.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query(
            "INSERT INTO user_tokens (id, user_id, purpose, token_hash, expires_at, created_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token.id.to_string())
        .bind(token.user.to_string())
        .bind(token.purpose.as_str())
        .bind(token.token_hash.to_hex())
        .bind(ts(token.expires_at))
        .bind(ts(token.created_at))
        .bind(opt_ts(token.used_at))
        .execute(&mut *tx)
        .await
        .on_violation(|| Error::conflict("user token", token.id, "token collision"), || Error::not_found("user", token.user))?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn redeem_user_token(
        &self,
        hash: &TokenHash,
        purpose: UserTokenPurpose,
        password: &PasswordHash,
        now: Timestamp,
        audit: &(dyn for<'u> Fn(&'u User) -> AuditEvent + Send + Sync),
    ) -> Result<User> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE user_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id",
        )
        .bind(ts(now))
        .bind(hash.to_hex())
        .bind(purpose.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Err(Error::not_found(purpose.as_str(), "token (unknown, used or expired)"));
        };
        let user_id: UserId = col_parse(&row, "user_id")?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE users SET password_hash = $1, state = 'active', updated_at = $2 WHERE id = $3 RETURNING {USER_COLUMNS}"
        )))
        .bind(password.expose().to_owned())
        .bind(ts(now))
        .bind(user_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let user = row.as_ref().map(user_from_row).transpose()?.ok_or_else(|| Error::not_found("user", user_id))?;
        self.revoke_sessions_in(&mut tx, user_id, now).await?;
        self.append_in(&mut tx, &audit(&user)).await?;
        self.commit(tx).await?;
        Ok(user)
    }

    async fn login_failures(&self, login_key: &str) -> Result<Option<LoginFailures>> {
        let row = sqlx::query("SELECT failures, window_start, locked_until FROM login_failures WHERE login_key = $1")
            .bind(login_key.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(failures_from_row).transpose()
    }

    async fn record_login_failure(&self, login_key: &str, now: Timestamp, rule: &LockoutRule) -> Result<LoginFailures> {
        let mut tx = self.write().await?;
        let window_open_after = ts(clock::sub(now, rule.window));
        // One atomic upsert: the row lock makes concurrent failures count exactly.
        let row = sqlx::query(
            "INSERT INTO login_failures (login_key, failures, window_start, locked_until) VALUES ($1, 1, $2, NULL) \
             ON CONFLICT (login_key) DO UPDATE SET \
               failures = CASE WHEN login_failures.window_start <= $3 THEN 1 ELSE login_failures.failures + 1 END, \
               window_start = CASE WHEN login_failures.window_start <= $3 THEN $2 ELSE login_failures.window_start END \
             RETURNING failures, window_start, locked_until",
        )
        .bind(login_key.to_owned())
        .bind(ts(now))
        .bind(window_open_after)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let mut state = failures_from_row(&row)?;
        if state.failures >= rule.max_failures.max(1) {
            let until = clock::add(now, rule.lock_for);
            sqlx::query("UPDATE login_failures SET failures = 0, window_start = $1, locked_until = $2 WHERE login_key = $3")
                .bind(ts(now))
                .bind(ts(until))
                .bind(login_key.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            state = LoginFailures { failures: state.failures, window_start: now, locked_until: Some(until) };
        }
        self.commit(tx).await?;
        Ok(state)
    }

    async fn clear_login_failures(&self, login_key: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE login_key = $1")
            .bind(login_key.to_owned())
            .execute(&self.writes)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

fn failures_from_row(row: &AnyRow) -> Result<LoginFailures> {
    let failures: i64 = col(row, "failures")?;
    Ok(LoginFailures {
        failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
        window_start: col_ts(row, "window_start")?,
        locked_until: col_opt_ts(row, "locked_until")?,
    })
}
