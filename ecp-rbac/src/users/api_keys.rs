//! API keys of machine clients: creating, revoking and listing them.

use ecp_core::access::{Permission, Principal, ResourceKind, Subject};
use ecp_core::audit::AuditEvent;
use ecp_core::clock;
use ecp_core::identity::{ApiKey, Binding, TokenHash};
use ecp_core::scoped::audit_outcome;
use ecp_core::{ApiKeyId, OrgId};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::tokens::{API_KEY_PREFIX, random_token};

use super::{CreatedApiKey, NewApiKey, Users, ops};

impl Users {
    /// Creates an API key for a machine client with roles, under the same rules as granting them.
    /// The secret is returned once.
    ///
    /// # Errors
    /// `NotFound`/`PermissionDenied`, `InvalidInput` (no roles, roles in several organizations, a bad
    /// name), `Backend`.
    pub async fn create_api_key(&self, principal: &Principal, new: NewApiKey) -> Result<CreatedApiKey> {
        let ctx = &self.ctx;
        let mut event = AuditEvent::new(principal, ResourceKind::User, ops::API_KEY_CREATE);
        event.resource_name = Some(new.name.chars().take(100).collect());
        let created = audit_outcome(ctx.store.as_ref(), event, async |audit| {
            let orgs: Vec<Option<OrgId>> = new.grants.iter().map(|g| g.scope.org()).collect();
            let org = match orgs.first() {
                None => return Err(Error::from(ecp_core::Error::invalid("grants", "an api key needs at least one role"))),
                Some(first) if orgs.iter().any(|o| o != first) => {
                    return Err(Error::from(ecp_core::Error::invalid("grants", "all roles of a key must be in one organization")));
                }
                Some(first) => *first,
            };
            if new.name.is_empty() || new.name.chars().count() > 100 || new.name.chars().any(char::is_control) {
                return Err(Error::from(ecp_core::Error::invalid("name", "1-100 characters, no control characters")));
            }
            for g in &new.grants {
                ctx.authorize_grant(principal, g.role, &g.scope).await?;
            }
            let now = ctx.clock.now();
            let id = ApiKeyId::new();
            let mut secret_part = random_token("x")?.expose_secret().to_owned();
            secret_part.drain(..2);
            let secret = SecretString::from(format!("{API_KEY_PREFIX}_{}_{}", id.as_uuid().simple(), secret_part));
            let key = ApiKey {
                id,
                name: new.name.clone(),
                org,
                created_by: principal.subject(),
                created_at: now,
                expires_at: new.ttl.map(|t| clock::add(now, t)),
                revoked_at: None,
                last_used_at: None,
            };
            let bindings: Vec<Binding> = new.grants.iter().map(|g| Binding::new(Subject::ApiKey(id), g.role, g.scope, now)).collect();
            if let Some(g) = new.grants.first() {
                self.name_scope(audit, &g.scope).await?;
            }
            audit.resource(id, Some(&key.name)).details(serde_json::json!({
                "grants": new.grants.iter().map(|g| serde_json::json!({ "role": g.role, "scope": g.scope })).collect::<Vec<_>>(),
                "expires_at": key.expires_at,
            }));
            ctx.store.create_api_key(&key, &TokenHash::of(secret.expose_secret()), &bindings, audit.in_transaction()).await?;
            Ok(CreatedApiKey { key, secret })
        })
        .await?;
        // After the success record: a failure here is not the creation's.
        ctx.authz.reload_subject(Subject::ApiKey(created.key.id)).await?;
        Ok(created)
    }

    /// Revokes an API key. Needs `edit user` in its organization (or at system scope for a system
    /// key).
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn revoke_api_key(&self, principal: &Principal, id: ApiKeyId) -> Result<()> {
        let ctx = &self.ctx;
        let event = AuditEvent::new(principal, ResourceKind::User, ops::API_KEY_REVOKE).resource(id, None);
        audit_outcome(ctx.store.as_ref(), event, async |audit| {
            let (key, _) = ctx.store.get_api_key(id).await?;
            let (scope, _, _) = Self::role_scope(key.org);
            audit.resource(id, Some(&key.name));
            self.name_scope(audit, &scope).await?;
            ctx.authorize(principal, Permission::edit(ResourceKind::User), &scope, "api key", &id)?;
            ctx.store.revoke_api_key(id, ctx.clock.now(), audit.in_transaction()).await?;
            Ok::<_, Error>(())
        })
        .await?;
        // After the success record: a failure here is not the revocation's.
        ctx.authz.reload_subject(Subject::ApiKey(id)).await?;
        Ok(())
    }

    /// The API keys of an organization (or the system's). Needs `view user` there.
    ///
    /// # Errors
    /// `NotFound`/`PermissionDenied`, `Backend`.
    pub async fn list_api_keys(&self, principal: &Principal, org: Option<OrgId>) -> Result<Vec<ApiKey>> {
        let (scope, kind, id) = Self::role_scope(org);
        self.ctx.authorize(principal, Permission::view(ResourceKind::User), &scope, kind, &id)?;
        Ok(self.ctx.store.list_api_keys(org).await?)
    }
}
