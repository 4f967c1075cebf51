//! Users, memberships, roles, bindings, sessions, API keys, single-use tokens, login failures.

mod rows;
mod tx;

use async_trait::async_trait;

use super::{OnViolation, Sql, SqlStore, col, col_parse, like_contains, opt_ts, page_limit, search_key, ts};
use crate::access::{Scope, Subject};
use crate::audit::AuditEvent;
use crate::clock::{self, Timestamp};
use crate::error::{Error, Result};
use crate::id::{ApiKeyId, OrgId, RoleId, SessionId, UserId};
use crate::identity::{
    ApiKey, Binding, BindingFilter, BuiltinRole, CustomRole, LockoutRule, LoginFailures, PasswordHash, SessionRecord, TokenHash, User,
    UserCredentials, UserFilter, UserToken, UserTokenPurpose, email_key,
};
use crate::page::{Page, PageRequest};
use crate::store::IdentityStore;
use crate::tenancy::model::name_key;

use rows::{
    API_KEY_COLUMNS, BINDING_COLUMNS, ROLE_COLUMNS, SESSION_COLUMNS, USER_COLUMNS, api_key_from_row, binding_from_row, failures_from_row,
    permissions_text, role_from_row, scope_key, session_from_row, subject_key, user_from_row,
};

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
        self.insert_user_in(&mut tx, user, password, memberships, bindings).await?;
        self.append_in(&mut tx, audit).await?;
        self.commit(tx).await
    }

    async fn create_first_admin(&self, user: &User, password: &PasswordHash, binding: &Binding, audit: &AuditEvent) -> Result<()> {
        if binding.subject != Subject::User(user.id) || binding.scope != Scope::System {
            return Err(Error::invalid("binding", "the first administrator's binding is its own, at system scope"));
        }
        let taken = || Error::conflict("system admin", &user.email, "a system administrator exists already");
        let mut tx = self.write().await?;
        // The marker row is the claim: of two concurrent bootstraps, the second's insert fails on
        // the primary key (PostgreSQL holds it until the first commits; SQLite writes one at a time).
        sqlx::query("INSERT INTO counters (name, value) VALUES ('system_admin_bootstrap', 1)")
            .execute(&mut *tx)
            .await
            .on_violation(taken, taken)?;
        // A store whose first administrator predates the marker.
        let existing = sqlx::query("SELECT id FROM bindings WHERE role_builtin = $1 AND scope_key = $2")
            .bind(BuiltinRole::SystemAdmin.as_str())
            .bind(scope_key(&Scope::System))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if existing.is_some() {
            return Err(taken());
        }
        self.insert_user_in(&mut tx, user, Some(password), &[], std::slice::from_ref(binding)).await?;
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
            let pattern = like_contains(s)?;
            sql.push(" AND (email_key LIKE ").bind(pattern.clone()).push(" ESCAPE '\\' OR display_name_key LIKE ");
            sql.bind(pattern).push(" ESCAPE '\\')");
        }
        self.fetch_page(sql, page, user_from_row, |u| u.id.to_string()).await
    }

    async fn update_user(&self, user: &User, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let updated = sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, display_name = $3, state = $4, enabled = $5, sso_only = $6, updated_at = $7, \
             display_name_key = $9 WHERE id = $8",
        )
        .bind(user.email.clone())
        .bind(email_key(&user.email))
        .bind(user.display_name.clone())
        .bind(user.state.as_str())
        .bind(i64::from(user.enabled))
        .bind(i64::from(user.sso_only))
        .bind(ts(user.updated_at))
        .bind(user.id.to_string())
        .bind(search_key(&user.display_name))
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
        // A key stands only while its creator does: a user that exists and is enabled, or a key
        // that stands itself (found by walking down from the keys that fall on their own).
        let keys = sqlx::query(
            "WITH RECURSIVE fallen(id) AS ( \
               SELECT k.id FROM api_keys k \
               WHERE k.revoked_at IS NOT NULL OR (k.expires_at IS NOT NULL AND k.expires_at <= $1) \
                  OR (k.created_by_kind = 'user' AND NOT EXISTS \
                        (SELECT 1 FROM users u WHERE u.id = k.created_by_id AND u.enabled <> 0)) \
                  OR (k.created_by_kind = 'api_key' AND NOT EXISTS (SELECT 1 FROM api_keys p WHERE p.id = k.created_by_id)) \
               UNION \
               SELECT k.id FROM api_keys k JOIN fallen f ON k.created_by_kind = 'api_key' AND k.created_by_id = f.id \
             ) SELECT id FROM fallen",
        )
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

    async fn api_key_expiries(&self) -> Result<Vec<(ApiKeyId, Timestamp)>> {
        let rows = sqlx::query(
            "WITH RECURSIVE chain(id, expires_at, depth) AS ( \
               SELECT id, expires_at, 0 FROM api_keys WHERE created_by_kind <> 'api_key' \
               UNION ALL \
               SELECT k.id, CASE WHEN c.expires_at IS NULL THEN k.expires_at \
                                 WHEN k.expires_at IS NULL OR c.expires_at < k.expires_at THEN c.expires_at \
                                 ELSE k.expires_at END, c.depth + 1 \
               FROM api_keys k JOIN chain c ON k.created_by_kind = 'api_key' AND k.created_by_id = c.id \
               WHERE c.depth < 64 \
             ) SELECT id, expires_at FROM chain WHERE expires_at IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(|r| Ok((col_parse(r, "id")?, super::col_ts(r, "expires_at")?))).collect()
    }

    async fn api_keys_created_by(&self, creator: Subject) -> Result<Vec<ApiKeyId>> {
        let Some(id) = creator.id_string() else { return Ok(Vec::new()) };
        let rows = sqlx::query("SELECT id FROM api_keys WHERE created_by_kind = $1 AND created_by_id = $2 ORDER BY id")
            .bind(creator.kind())
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| col_parse(r, "id")).collect()
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
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE refresh_hash = $1 OR previous_refresh_hash = $1 \
             OR id = (SELECT session_id FROM session_refresh_history WHERE refresh_hash = $1)"
        )))
        .bind(hash.to_hex())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn rotate_session(&self, next: &SessionRecord, expected_refresh: &TokenHash) -> Result<bool> {
        let mut tx = self.write().await?;
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
        .execute(&mut *tx)
        .await
        .on_violation(|| Error::conflict("session", next.id, "token collision"), || Error::not_found("session", next.id))?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        // The token rotated away stays known to the session for as long as the session lives.
        sqlx::query("INSERT INTO session_refresh_history (refresh_hash, session_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(expected_refresh.to_hex())
            .bind(next.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await?;
        Ok(true)
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
