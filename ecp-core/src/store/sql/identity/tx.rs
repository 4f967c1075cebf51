//! Steps of identity writes that run inside the caller's transaction: checked binding upserts, session revocation.

use sqlx::Transaction;
use sqlx::any::Any;

use crate::access::{Scope, Subject};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{OrgId, UserId};
use crate::identity::{Binding, PasswordHash, RoleRef, User, email_key};
use crate::store::sql::{OnViolation, SqlStore, col, opt_ts, search_key, ts};

use super::rows::{BINDING_COLUMNS, binding_from_row, scope_key, subject_key};

impl SqlStore {
    /// Inserts a user, its memberships and its bindings inside `tx`.
    pub(super) async fn insert_user_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        user: &User,
        password: Option<&PasswordHash>,
        memberships: &[OrgId],
        bindings: &[Binding],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (id, email, email_key, display_name, state, enabled, sso_only, password_hash, created_at, updated_at, \
             last_login_at, display_name_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .bind(search_key(&user.display_name))
        .execute(&mut **tx)
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
                .execute(&mut **tx)
                .await
                .on_violation(
                    || Error::invalid("memberships", "an organization is listed twice"),
                    || Error::not_found("organization", org),
                )?;
        }
        for b in bindings {
            self.put_binding_in(tx, b).await?;
        }
        Ok(())
    }

    /// Inserts or replaces a binding inside `tx`, after checking that its parts exist and agree: the
    /// project belongs to the scope's organization, a custom role is usable there, and a user is a
    /// member of the organization.
    pub(super) async fn put_binding_in(&self, tx: &mut Transaction<'static, Any>, b: &Binding) -> Result<Option<Binding>> {
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
                // Named like a project that does not exist: another tenant's ids tell nothing.
                Some(o) if o != org.to_string() => return Err(Error::not_found("project", project)),
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
                (Some(Some(owner)), Some(org)) if owner != org.to_string() => return Err(Error::not_found("role", role)),
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

    pub(super) async fn revoke_sessions_in(&self, tx: &mut Transaction<'static, Any>, user: UserId, now: Timestamp) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(ts(now))
            .bind(user.to_string())
            .execute(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
