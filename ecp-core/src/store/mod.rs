//! The `Store`: everything ecp-rs persists, behind one object-safe trait with two backends.
//!
//! - `sqlite` (default feature): one file, or memory; the embedded default.
//! - `postgres`: for several replicas of a host application.
//!
//! Both are [`SqlStore`], one implementation over sqlx with the same schema and migrations (embedded
//! in the binary), and both pass the same conformance suite (`tests/store_conformance.rs`).
//!
//! Every mutating method that is an operation takes the [`AuditEvent`] describing it and appends it
//! to the audit chain **in the same transaction**: a change is never committed without its record,
//! and a failed change leaves no record (services then append a failure record on their own).
//!
//! Limits (organizations, projects per organization, projects in all) are enforced inside the
//! transaction with conditional updates of counters, so concurrent writers on any number of
//! replicas never exceed them.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::access::Subject;
use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditScope, ChainHead, ChainReader, StoredRecord, VerifyReport};
use crate::clock::Timestamp;
use crate::cluster::{ClusterQuota, ClusterRecord, LicenseUsage};
use crate::edge::{
    Agent, AgentFilter, AgentId, DesiredChange, DesiredPut, DesiredRecord, DesiredSet, EdgeLimits, EdgeSelector, EdgeService, ProbeOutcome,
    ReportedItem, TagUsage, TemplateRecord,
};
use crate::error::Result;
use crate::id::{ApiKeyId, ClusterId, EdgeServiceId, OrgId, ProjectId, RoleId, SessionId, TaskId, UserId};
use crate::identity::{
    ApiKey, Binding, BindingFilter, CustomRole, LockoutRule, LoginFailures, PasswordHash, SessionRecord, TokenHash, User, UserCredentials,
    UserFilter, UserToken, UserTokenPurpose,
};
use crate::page::{Page, PageRequest};
use crate::task::{LeaseRenewal, TargetUpdate, Task, TaskControl, TaskState, TaskTarget, TaskTotals};
use crate::tenancy::{Organization, Project, ProjectResource, ProjectResourceKind, ProjectUsage, TenancyLimits};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{SqlStore, SqlStoreConfig, SqlStoreConfigBuilder};

/// Which projects to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectFilter {
    /// Of this organization.
    pub org: Option<OrgId>,
    /// Only projects of these organizations or in `within_projects` (what a principal may see);
    /// `None` for no restriction.
    pub within_orgs: Option<Vec<OrgId>>,
    /// See `within_orgs`.
    pub within_projects: Vec<ProjectId>,
    /// Name contains this, case-insensitive.
    pub name_contains: Option<String>,
}

/// Organizations and projects: the tenancy tree, its limits, and the registry of what each project
/// holds.
#[async_trait]
pub trait TenancyStore: Send + Sync {
    /// Creates an organization unless `limits.max_organizations` are reached or the name is taken.
    ///
    /// # Errors
    /// [`LimitExceeded`](crate::Error::LimitExceeded), [`Conflict`](crate::Error::Conflict) for a
    /// taken name, `Backend`.
    async fn create_org(&self, org: &Organization, limits: &TenancyLimits, audit: &AuditEvent) -> Result<()>;
    /// One organization.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_org(&self, id: OrgId) -> Result<Organization>;
    /// Organizations in id (creation) order; `within` restricts to those ids.
    ///
    /// # Errors
    /// `InvalidInput` for a bad page, `Backend`.
    async fn list_orgs(&self, within: Option<&[OrgId]>, page: &PageRequest) -> Result<Page<Organization>>;
    /// Renames an organization.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` for a taken name, `Backend`.
    async fn rename_org(&self, id: OrgId, name: &str, now: Timestamp, audit: &AuditEvent) -> Result<Organization>;
    /// Deletes an organization that holds no project; its memberships and bindings go with it.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` while it has projects, `Backend`.
    async fn delete_org(&self, id: OrgId, audit: &AuditEvent) -> Result<()>;

    /// Creates a project unless a limit is reached or the name is taken in its organization.
    ///
    /// # Errors
    /// `NotFound` for the organization, `LimitExceeded`, `Conflict`, `Backend`.
    async fn create_project(&self, project: &Project, limits: &TenancyLimits, audit: &AuditEvent) -> Result<()>;
    /// One project.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_project(&self, id: ProjectId) -> Result<Project>;
    /// Projects in id (creation) order.
    ///
    /// # Errors
    /// `InvalidInput` for a bad page or filter, `Backend`.
    async fn list_projects(&self, filter: &ProjectFilter, page: &PageRequest) -> Result<Page<Project>>;
    /// Renames a project.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` for a taken name, `Backend`.
    async fn rename_project(&self, id: ProjectId, name: &str, now: Timestamp, audit: &AuditEvent) -> Result<Project>;
    /// Deletes a project that holds no registered resource; its bindings go with it.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` while it holds clusters, edge services or other resources, `Backend`.
    async fn delete_project(&self, id: ProjectId, audit: &AuditEvent) -> Result<()>;

    /// Registers a resource in its project.
    ///
    /// # Errors
    /// `NotFound` for the project, `Conflict` for a taken id or name, `Backend`.
    async fn register_resource(&self, resource: &ProjectResource, audit: &AuditEvent) -> Result<()>;
    /// One registered resource.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_resource(&self, id: uuid::Uuid) -> Result<ProjectResource>;
    /// A project's resources, of one kind or all, in id order.
    ///
    /// # Errors
    /// `InvalidInput` for a bad page, `Backend`.
    async fn list_resources(
        &self,
        project: ProjectId,
        kind: Option<ProjectResourceKind>,
        page: &PageRequest,
    ) -> Result<Page<ProjectResource>>;
    /// Moves a resource to another project (a cluster or agent transfer).
    ///
    /// # Errors
    /// `NotFound` for the resource or the project, `Conflict` for a taken name there, `Backend`.
    async fn move_resource(&self, id: uuid::Uuid, to: ProjectId, audit: &AuditEvent) -> Result<ProjectResource>;
    /// Removes a resource from the registry.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn deregister_resource(&self, id: uuid::Uuid, audit: &AuditEvent) -> Result<()>;
    /// What a project holds.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn project_usage(&self, project: ProjectId) -> Result<ProjectUsage>;
}

/// Users, memberships, roles, bindings, sessions, API keys, single-use tokens and login failures.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Creates a user with an optional password hash, organization memberships and bindings, all or
    /// nothing.
    ///
    /// # Errors
    /// `Conflict` for a taken email, `NotFound` for a missing organization, project or role,
    /// `InvalidInput` for a binding outside the memberships, `Backend`.
    async fn create_user(
        &self,
        user: &User,
        password: Option<&PasswordHash>,
        memberships: &[OrgId],
        bindings: &[Binding],
        audit: &AuditEvent,
    ) -> Result<()>;
    /// Creates the store's first system administrator (with its password hash and its binding at
    /// system scope) in one transaction that claims the store's one bootstrap: of two concurrent
    /// calls one succeeds, and every later call, or one on a store that has a system administrator
    /// already, gets `Conflict`.
    ///
    /// # Errors
    /// `Conflict`, `InvalidInput` for a binding that is not the user's at system scope, `Backend`.
    async fn create_first_admin(&self, user: &User, password: &PasswordHash, binding: &Binding, audit: &AuditEvent) -> Result<()>;
    /// One user.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// A user and its password hash by email (case-insensitive); `None` if there is none.
    ///
    /// # Errors
    /// `Backend`.
    async fn find_credentials(&self, email: &str) -> Result<Option<UserCredentials>>;
    /// Users in id order.
    ///
    /// # Errors
    /// `InvalidInput`, `Backend`.
    async fn list_users(&self, filter: &UserFilter, page: &PageRequest) -> Result<Page<User>>;
    /// Saves a user's email, display name, state, enabled and SSO flags. Disabling revokes the user's
    /// sessions in the same transaction.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` for a taken email, `Backend`.
    async fn update_user(&self, user: &User, audit: &AuditEvent) -> Result<()>;
    /// Sets (or clears) a password hash and revokes every session of the user.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn set_password(&self, id: UserId, hash: Option<&PasswordHash>, now: Timestamp, audit: &AuditEvent) -> Result<()>;
    /// Deletes a user with its memberships, bindings, sessions and tokens.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn delete_user(&self, id: UserId, audit: &AuditEvent) -> Result<()>;
    /// Records a successful login.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn record_login(&self, id: UserId, at: Timestamp) -> Result<()>;

    /// Makes a user a member of an organization (idempotent).
    ///
    /// # Errors
    /// `NotFound` for the user or organization, `Backend`.
    async fn add_org_member(&self, org: OrgId, user: UserId, now: Timestamp, audit: &AuditEvent) -> Result<()>;
    /// Removes a user from an organization with every binding it holds there and in its projects.
    ///
    /// # Errors
    /// `NotFound` if it is not a member, `Backend`.
    async fn remove_org_member(&self, org: OrgId, user: UserId, audit: &AuditEvent) -> Result<()>;
    /// The organizations a user is a member of.
    ///
    /// # Errors
    /// `Backend`.
    async fn user_orgs(&self, user: UserId) -> Result<Vec<OrgId>>;

    /// Creates a custom role.
    ///
    /// # Errors
    /// `Conflict` for a taken name, `NotFound` for the organization, `Backend`.
    async fn create_role(&self, role: &CustomRole, audit: &AuditEvent) -> Result<()>;
    /// One custom role.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_role(&self, id: RoleId) -> Result<CustomRole>;
    /// Custom roles usable in `org` (its own and the system's), or all of them for `None`.
    ///
    /// # Errors
    /// `Backend`.
    async fn list_roles(&self, org: Option<OrgId>) -> Result<Vec<CustomRole>>;
    /// Saves a custom role's name, description and permissions.
    ///
    /// # Errors
    /// `NotFound`, `Conflict`, `Backend`.
    async fn update_role(&self, role: &CustomRole, audit: &AuditEvent) -> Result<()>;
    /// Deletes a custom role that nothing is bound to.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` while bound, `Backend`.
    async fn delete_role(&self, id: RoleId, audit: &AuditEvent) -> Result<()>;

    /// Binds a role to a subject at a scope, replacing the role it held there; returns the replaced
    /// binding. A user must be a member of the scope's organization.
    ///
    /// # Errors
    /// `InvalidInput` for a non-member, `NotFound` for a missing subject, project or role, `Backend`.
    async fn put_binding(&self, binding: &Binding, audit: &AuditEvent) -> Result<Option<Binding>>;
    /// Removes a subject's binding at a scope; returns it.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn delete_binding(&self, subject: Subject, scope: &crate::access::Scope, audit: &AuditEvent) -> Result<Binding>;
    /// Bindings matching the filter.
    ///
    /// # Errors
    /// `Backend`.
    async fn list_bindings(&self, filter: &BindingFilter) -> Result<Vec<Binding>>;
    /// Every binding in id order, a page at a time (for loading an authorizer's index).
    ///
    /// # Errors
    /// `InvalidInput`, `Backend`.
    async fn all_bindings(&self, page: &PageRequest) -> Result<Page<Binding>>;
    /// Subjects that may not act: disabled users, and API keys that are revoked or expired or
    /// whose creator may not act (a user disabled or deleted, or the key that minted them, for
    /// the same reasons, however far up).
    ///
    /// # Errors
    /// `Backend`.
    async fn inactive_subjects(&self, now: Timestamp) -> Result<Vec<Subject>>;
    /// The API keys that expire, each with the earliest expiry of itself and the keys that minted
    /// it (a key minted by a key stops when its parent does).
    ///
    /// # Errors
    /// `Backend`.
    async fn api_key_expiries(&self) -> Result<Vec<(ApiKeyId, Timestamp)>>;
    /// The API keys `creator` made itself (not those its keys minted).
    ///
    /// # Errors
    /// `Backend`.
    async fn api_keys_created_by(&self, creator: Subject) -> Result<Vec<ApiKeyId>>;

    /// Starts a session.
    ///
    /// # Errors
    /// `NotFound` for the user, `Backend`.
    async fn create_session(&self, session: &SessionRecord, audit: &AuditEvent) -> Result<()>;
    /// The session whose current access token has this hash.
    ///
    /// # Errors
    /// `Backend`.
    async fn session_by_access(&self, hash: &TokenHash) -> Result<Option<SessionRecord>>;
    /// The session whose current refresh token has this hash, or that rotated it away (however
    /// many rotations ago): a token that comes back after a rotation is reuse.
    ///
    /// # Errors
    /// `Backend`.
    async fn session_by_refresh(&self, hash: &TokenHash) -> Result<Option<SessionRecord>>;
    /// Replaces a session's tokens if its refresh token is still `expected_refresh`; returns whether
    /// it did (two concurrent refreshes of one token: only one wins).
    ///
    /// # Errors
    /// `Backend`.
    async fn rotate_session(&self, next: &SessionRecord, expected_refresh: &TokenHash) -> Result<bool>;
    /// Revokes a session.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn revoke_session(&self, id: SessionId, at: Timestamp, audit: &AuditEvent) -> Result<()>;

    /// Creates an API key with its bindings, all or nothing.
    ///
    /// # Errors
    /// `NotFound` for the organization, project or role, `Backend`.
    async fn create_api_key(&self, key: &ApiKey, secret_hash: &TokenHash, bindings: &[Binding], audit: &AuditEvent) -> Result<()>;
    /// An API key and its secret's hash.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_api_key(&self, id: ApiKeyId) -> Result<(ApiKey, TokenHash)>;
    /// API keys of an organization, or the system's for `None`.
    ///
    /// # Errors
    /// `Backend`.
    async fn list_api_keys(&self, org: Option<OrgId>) -> Result<Vec<ApiKey>>;
    /// Revokes an API key.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn revoke_api_key(&self, id: ApiKeyId, at: Timestamp, audit: &AuditEvent) -> Result<()>;
    /// Records a use of an API key.
    ///
    /// # Errors
    /// `Backend`.
    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<()>;

    /// Stores a single-use token, replacing any unused one of the same purpose for the user.
    ///
    /// # Errors
    /// `NotFound` for the user, `Backend`.
    async fn create_user_token(&self, token: &UserToken, audit: &AuditEvent) -> Result<()>;
    /// Redeems a single-use token in one transaction: marks it used (it must be unused and unexpired
    /// at `now`), sets the user's password, activates the user and revokes its sessions. Returns the
    /// user.
    ///
    /// # Errors
    /// `NotFound` for an unknown, used or expired token (indistinguishable on purpose), `Backend`.
    async fn redeem_user_token(
        &self,
        hash: &TokenHash,
        purpose: UserTokenPurpose,
        password: &PasswordHash,
        now: Timestamp,
        audit: &(dyn for<'u> Fn(&'u User) -> AuditEvent + Send + Sync),
    ) -> Result<User>;

    /// The failures recorded for a login name.
    ///
    /// # Errors
    /// `Backend`.
    async fn login_failures(&self, login_key: &str) -> Result<Option<LoginFailures>>;
    /// Counts a failed login atomically and locks the name when the rule says so.
    ///
    /// # Errors
    /// `Backend`.
    async fn record_login_failure(&self, login_key: &str, now: Timestamp, rule: &LockoutRule) -> Result<LoginFailures>;
    /// Forgets the failures of a login name (after a successful login).
    ///
    /// # Errors
    /// `Backend`.
    async fn clear_login_failures(&self, login_key: &str) -> Result<()>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends a record on its own (for failures, and events that change nothing else).
    ///
    /// # Errors
    /// `Backend`.
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord>;
    /// Records matching the query within the scope, newest first.
    ///
    /// # Errors
    /// `InvalidInput` for bad filters or page, `Backend`.
    async fn query_audit(&self, query: &AuditQuery, scope: &AuditScope, page: &PageRequest) -> Result<Page<AuditRecord>>;
    /// Up to `limit` records after `seq`, in order, with their details as stored.
    ///
    /// # Errors
    /// `Backend`, `Integrity` for a record that cannot be decoded.
    async fn audit_records_after(&self, seq: u64, limit: u32) -> Result<Vec<StoredRecord>>;
    /// The chain's head as stored apart from the records.
    ///
    /// # Errors
    /// `Backend`.
    async fn audit_head(&self) -> Result<ChainHead>;
}

/// Batch tasks of the task engine and their targets.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Creates a task with its targets, all or nothing, leased to `lease` (an owner and until when)
    /// if given: the engine that submits a task holds it from the start, so no other replica's
    /// claim takes it before its submitter runs it. A task whose policy is exclusive is refused
    /// while another exclusive task of its kind is active in its project.
    ///
    /// # Errors
    /// `Conflict` for that, `NotFound` for the project, `Backend`.
    async fn create_task(&self, task: &Task, targets: &[TaskTarget], lease: Option<(&str, Timestamp)>, audit: &AuditEvent) -> Result<()>;
    /// One task.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_task(&self, id: TaskId) -> Result<Task>;
    /// A task's secrets (opened): for the engine that runs it, never for display. `None` for a
    /// task created without.
    ///
    /// # Errors
    /// `NotFound`, `Backend` (an integrity failure for secrets no key opens).
    async fn task_secrets(&self, id: TaskId) -> Result<Option<crate::task::TaskSecrets>>;
    /// A project's tasks, newest first.
    ///
    /// # Errors
    /// `InvalidInput` for a bad page, `Backend`.
    async fn list_tasks(&self, project: ProjectId, page: &PageRequest) -> Result<Page<Task>>;
    /// Up to `limit` targets of a task with `seq` greater than `after_seq`, in order.
    ///
    /// # Errors
    /// `Backend`.
    async fn task_targets(&self, id: TaskId, after_seq: Option<u64>, limit: u32) -> Result<Vec<TaskTarget>>;
    /// Counts of a task's targets by state.
    ///
    /// # Errors
    /// `Backend`.
    async fn task_totals(&self, id: TaskId) -> Result<TaskTotals>;
    /// Writes target changes in one transaction. With `owner`, only changes of tasks whose lease
    /// `owner` holds are written: a replica that lost a task's lease (it was cut off, and another
    /// took the task over) never overwrites what the new owner wrote.
    ///
    /// # Errors
    /// `Backend`.
    async fn update_targets(&self, updates: &[TargetUpdate], owner: Option<&str>) -> Result<()>;
    /// Moves a task to `state` (recording when it started or ended), with an optional audit record
    /// in the same transaction. A terminal state frees the task's exclusive slot. With `owner`, only
    /// while `owner` holds the task's lease.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` when `owner` does not hold the lease, `Backend`.
    async fn set_task_state(
        &self,
        id: TaskId,
        state: TaskState,
        reason: Option<&str>,
        now: Timestamp,
        owner: Option<&str>,
        audit: Option<&AuditEvent>,
    ) -> Result<()>;
    /// Takes the lease of every unfinished task of `kinds` (those the claiming engine runs) that
    /// is unleased, leased by `owner`, or whose lease ran out, until `now + lease`; returns their
    /// ids. Replicas call it to pick up each other's tasks after a crash; a task of a kind a replica
    /// does not run stays for one that does.
    ///
    /// # Errors
    /// `Backend`.
    async fn claim_tasks(&self, owner: &str, now: Timestamp, lease: std::time::Duration, kinds: &[&str]) -> Result<Vec<TaskId>>;
    /// Extends `owner`'s lease of a task, and reads the request in force for it
    /// ([`request_task_control`](Self::request_task_control)); [`LeaseRenewal::Lost`] if another
    /// owner holds it now or it ended.
    ///
    /// # Errors
    /// `Backend`.
    async fn renew_lease(&self, id: TaskId, owner: &str, until: Timestamp) -> Result<LeaseRenewal>;
    /// Records a request to cancel, pause or resume an unfinished task and returns the request in
    /// force after it: [`TaskControl::Cancel`] (a cancel stays), [`TaskControl::Pause`], or `None`
    /// to run. The replica running the task follows it: at once on a store that signals
    /// ([`Store::signals`]), else at its next lease renewal.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` for a task that ended, `Backend`.
    async fn request_task_control(&self, id: TaskId, control: TaskControl, now: Timestamp) -> Result<Option<TaskControl>>;
    /// The request in force for a task (see [`request_task_control`](Self::request_task_control)).
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn task_control(&self, id: TaskId) -> Result<Option<TaskControl>>;
}

/// Edge services, their tags and synced information, and configuration templates.
#[async_trait]
pub trait EdgeStore: Send + Sync {
    /// Registers edge services in one project, each all or nothing: a row that fails (a taken name,
    /// the project's tag limit) is reported in its place and leaves nothing behind; the others are
    /// stored. Tags that do not exist yet are created. One audit record covers the whole call,
    /// written in its transaction when at least one row is stored; a call that stores nothing
    /// writes none (its caller records the refusal).
    ///
    /// # Errors
    /// `NotFound` for the project, `InvalidInput` for services of several projects, `Backend`.
    async fn create_edge_services(&self, services: &[EdgeService], limits: &EdgeLimits, audit: &AuditEvent) -> Result<Vec<Result<()>>>;
    /// One edge service.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_edge_service(&self, id: EdgeServiceId) -> Result<EdgeService>;
    /// A project's edge services matching a selector, in id order.
    ///
    /// # Errors
    /// `InvalidInput` for a bad selector or page, `Backend`.
    async fn select_edge_services(&self, project: ProjectId, selector: &EdgeSelector, page: &PageRequest) -> Result<Page<EdgeService>>;
    /// How many of a project's edge services match a selector.
    ///
    /// # Errors
    /// `InvalidInput`, `Backend`.
    async fn count_edge_services(&self, project: ProjectId, selector: &EdgeSelector) -> Result<u64>;
    /// Saves a service's name, endpoint, credentials and tags.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` for a taken name, `LimitExceeded` for the tag limit, `Backend`.
    async fn update_edge_service(&self, service: &EdgeService, limits: &EdgeLimits, audit: &AuditEvent) -> Result<()>;
    /// Deletes (deregisters) a service.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn delete_edge_service(&self, id: EdgeServiceId, audit: &AuditEvent) -> Result<()>;
    /// Records a probe: an answer makes the service online (with its version); `offline_after`
    /// misses in a row make it offline. Returns the service as updated.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn record_probe(&self, id: EdgeServiceId, outcome: &ProbeOutcome, offline_after: u32) -> Result<EdgeService>;
    /// Stores what an information sync pulled from a service.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn save_edge_info(&self, id: EdgeServiceId, info: &serde_json::Value, at: Timestamp) -> Result<()>;
    /// The synced information of every service of a project that has some: (service, name, info).
    ///
    /// # Errors
    /// `Backend`.
    async fn edge_infos(&self, project: ProjectId) -> Result<Vec<(EdgeServiceId, String, serde_json::Value)>>;
    /// A project's tags with how many services carry each.
    ///
    /// # Errors
    /// `Backend`.
    async fn list_tags(&self, project: ProjectId) -> Result<Vec<TagUsage>>;
    /// Defines a tag.
    ///
    /// # Errors
    /// `InvalidInput`, `Conflict` if it exists, `LimitExceeded`, `NotFound` for the project,
    /// `Backend`.
    async fn create_tag(&self, project: ProjectId, name: &str, limits: &EdgeLimits, now: Timestamp, audit: &AuditEvent) -> Result<()>;
    /// Deletes a tag no service carries.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` while in use, `Backend`.
    async fn delete_tag(&self, project: ProjectId, name: &str, audit: &AuditEvent) -> Result<()>;
    /// Saves a version of a configuration template: version 1 creates it (its name must be free in
    /// the project), later versions must follow the latest one.
    ///
    /// # Errors
    /// `Conflict` for a taken name or a version that is not the next, `NotFound`, `Backend`.
    async fn save_template(&self, template: &TemplateRecord, audit: &AuditEvent) -> Result<()>;
    /// A template's version, or its latest.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_template(&self, id: crate::id::TemplateId, version: Option<u32>) -> Result<TemplateRecord>;
    /// The latest version of every template of a project, by name.
    ///
    /// # Errors
    /// `Backend`.
    async fn list_templates(&self, project: ProjectId) -> Result<Vec<TemplateRecord>>;
}

/// Edge agents: presence, management into projects, broker credentials and desired configuration.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Records an agent's hello: creates it, unmanaged, on first contact; otherwise updates its
    /// version, hello and last-seen time. Either way it is online. An agent never seen is created
    /// only while fewer than `max_unmanaged` agents are unmanaged (`Ok(None)` otherwise, nothing
    /// stored), so that clients of an open broker cannot fill the store with agents.
    ///
    /// # Errors
    /// `Backend`.
    async fn agent_hello(
        &self,
        id: &AgentId,
        version: &str,
        hello: &serde_json::Value,
        at: Timestamp,
        max_unmanaged: u64,
    ) -> Result<Option<Agent>>;
    /// Records presence (a status message, a heartbeat, or missed heartbeats); unknown agents are
    /// ignored (`Ok(false)`).
    ///
    /// # Errors
    /// `Backend`.
    async fn set_agent_presence(&self, id: &AgentId, online: bool, at: Timestamp) -> Result<bool>;
    /// One agent.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_agent(&self, id: &AgentId) -> Result<Agent>;
    /// Agents matching `filter`, in id order.
    ///
    /// # Errors
    /// `InvalidInput` for a bad page, `Backend`.
    async fn list_agents(&self, filter: &AgentFilter, page: &PageRequest) -> Result<Page<Agent>>;
    /// Manages an agent into a project under `name`, or transfers a managed one to another project
    /// (an unused claim code is used up either way). The caller decides who may: see
    /// [`claim_agent`](Self::claim_agent) for the proof an unmanaged agent needs.
    ///
    /// # Errors
    /// `NotFound` for the agent or project, `Conflict` when it is transferred while services of
    /// its old project are reached through it, `Backend`.
    async fn manage_agent(&self, id: &AgentId, project: ProjectId, name: &str, audit: &AuditEvent) -> Result<Agent>;
    /// Makes a managed agent unmanaged again.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` while a service is reached through it, `Backend`.
    async fn unmanage_agent(&self, id: &AgentId, audit: &AuditEvent) -> Result<()>;
    /// Deletes an agent and its desired configuration.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` while a service is reached through it, `Backend`.
    async fn delete_agent(&self, id: &AgentId, audit: &AuditEvent) -> Result<()>;
    /// Stores the hash of an agent's broker secret and the digest of its claim code (`None`s
    /// revoke them), creating the agent, unmanaged, when it was never seen (credentials are issued
    /// before the agent first connects). The claim digest of a managed agent is not stored: it is
    /// already claimed.
    ///
    /// # Errors
    /// `Backend`.
    async fn set_agent_secret(
        &self,
        id: &AgentId,
        hash: Option<&str>,
        claim_digest: Option<&str>,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<()>;
    /// Manages an unmanaged agent into `project` under `name` if `claim_digest` is the digest of
    /// its unused claim code ([`ClaimCode::digest`](crate::edge::ClaimCode::digest)), and uses the
    /// code up, in one transaction: of two concurrent claims one wins.
    ///
    /// # Errors
    /// `NotFound` alike for an unknown agent, a managed one, one without a claim code and a wrong
    /// code (a guesser learns nothing), `NotFound` for the project, `InvalidInput` for a bad
    /// name, `Backend`.
    async fn claim_agent(&self, id: &AgentId, project: ProjectId, name: &str, claim_digest: &str, audit: &AuditEvent) -> Result<Agent>;
    /// Every agent's secret hash, for the broker's password file.
    ///
    /// # Errors
    /// `Backend`.
    async fn agent_secrets(&self) -> Result<Vec<(AgentId, String)>>;
    /// Sets a desired item of an agent. The same target and change as stored leave it as it is;
    /// anything else stores it under the agent's next version, unless a newer version of the key
    /// was stored meanwhile (a concurrent put), which then stays. Returns the item as stored and
    /// the agent's desired items read after the write, so a caller publishing them needs no second
    /// read.
    ///
    /// # Errors
    /// `InvalidInput` for a key that is empty or over 200 bytes, `NotFound` for the agent,
    /// `Backend`.
    async fn put_desired(&self, id: &AgentId, key: &str, target: &str, change: &serde_json::Value, at: Timestamp) -> Result<DesiredPut> {
        let one = DesiredChange { agent: id.clone(), key: key.to_owned(), target: target.to_owned(), change: change.clone() };
        let mut results = self.put_desired_many(std::slice::from_ref(&one), at).await?;
        results.pop().unwrap_or_else(|| Err(crate::Error::not_found("agent", id)))
    }
    /// Sets many desired items, of many agents, as [`put_desired`](Self::put_desired) does each,
    /// in as few writes as the items allow (one, unless an agent has several items in the call,
    /// which are then set in order), and reads the agents' desired sets in one statement. The
    /// results are in the order of `changes`.
    ///
    /// # Errors
    /// The whole call fails only on `Backend`; an item's own error (`InvalidInput`, `NotFound`)
    /// is its result.
    async fn put_desired_many(&self, changes: &[DesiredChange], at: Timestamp) -> Result<Vec<Result<DesiredPut>>>;
    /// An agent's desired items, by key.
    ///
    /// # Errors
    /// `Backend`.
    async fn desired(&self, id: &AgentId) -> Result<Vec<DesiredRecord>>;
    /// An agent's desired configuration with its version (see [`DesiredSet`]).
    ///
    /// # Errors
    /// `NotFound` for an unknown agent, `Backend`.
    async fn desired_set(&self, id: &AgentId) -> Result<DesiredSet>;
    /// Withdraws desired items of an agent (keys it does not hold are ignored) and returns the set
    /// after, with a new version when anything was withdrawn.
    ///
    /// # Errors
    /// `NotFound` for an unknown agent, `Backend`.
    async fn withdraw_desired(&self, id: &AgentId, keys: &[String], at: Timestamp) -> Result<DesiredSet>;
    /// Records what agents reported for their desired items, in one write; reports for a key an
    /// agent does not have, for a version it was never given, or for an older version than already
    /// recorded are ignored. Of several reports of one key, the highest version counts. Returns
    /// how many items changed.
    ///
    /// # Errors
    /// `Backend`.
    async fn record_reports(&self, reports: &[ReportedItem], at: Timestamp) -> Result<u64>;
    /// Records one report, as [`record_reports`](Self::record_reports); `Ok(false)` when it was
    /// ignored.
    ///
    /// # Errors
    /// `Backend`.
    async fn record_applied(
        &self,
        id: &AgentId,
        key: &str,
        version: u64,
        ok: bool,
        detail: &serde_json::Value,
        at: Timestamp,
    ) -> Result<bool> {
        let item = ReportedItem { agent: id.clone(), key: key.to_owned(), version, ok, detail: detail.clone() };
        Ok(self.record_reports(std::slice::from_ref(&item), at).await? > 0)
    }
}

/// EMQX clusters, their connection limits within the license's floating pool, and their status.
/// The project and name live in the resource registry ([`TenancyStore`]): transfers go through
/// `move_resource`, and `delete_cluster` deregisters the resource.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Registers a cluster in its project. The license's cluster count and connection pool are
    /// checked in the same transaction (an enabled cluster's `connection_limit` is drawn from the pool).
    ///
    /// # Errors
    /// `NotFound` for the project, `Conflict` for a taken name, `LimitExceeded` for the license,
    /// `InvalidInput`, `Backend`.
    async fn create_cluster(&self, cluster: &ClusterRecord, quota: &ClusterQuota, audit: &AuditEvent) -> Result<()>;
    /// One cluster.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn get_cluster(&self, id: ClusterId) -> Result<ClusterRecord>;
    /// A project's clusters in id order.
    ///
    /// # Errors
    /// `InvalidInput` for a bad page, `Backend`.
    async fn list_clusters(&self, project: ProjectId, page: &PageRequest) -> Result<Page<ClusterRecord>>;
    /// Saves a cluster's spec (after a scale, resize, network or image change).
    ///
    /// # Errors
    /// `NotFound`, `InvalidInput`, `Backend`.
    async fn update_cluster_spec(
        &self,
        id: ClusterId,
        spec: &serde_json::Value,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<ClusterRecord>;
    /// Records a status a backend reported (no audit record: it is an observation, not an operation).
    ///
    /// # Errors
    /// `NotFound`, `InvalidInput`, `Backend`.
    async fn record_cluster_status(&self, id: ClusterId, status: &str, cause: Option<&str>, now: Timestamp) -> Result<()>;
    /// Sets a cluster's connection limit within the pool; on `LimitExceeded` the old limit stays.
    ///
    /// # Errors
    /// `NotFound`, `LimitExceeded`, `Backend`.
    async fn set_connection_limit(
        &self,
        id: ClusterId,
        limit: u64,
        quota: &ClusterQuota,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<ClusterRecord>;
    /// Enables or disables a cluster: a disabled cluster returns its share to the pool, enabling it
    /// draws the share again.
    ///
    /// # Errors
    /// `NotFound`, `LimitExceeded` (enabling), `Backend`.
    async fn set_cluster_enabled(
        &self,
        id: ClusterId,
        enabled: bool,
        quota: &ClusterQuota,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<ClusterRecord>;
    /// Deletes (deregisters) a cluster, returning its share to the pool.
    ///
    /// # Errors
    /// `NotFound`, `Backend`.
    async fn delete_cluster(&self, id: ClusterId, audit: &AuditEvent) -> Result<()>;
    /// What the installation uses of its license.
    ///
    /// # Errors
    /// `Backend`.
    async fn license_usage(&self) -> Result<LicenseUsage>;
}

/// The largest document a [`DocumentStore`] keeps: 1 MiB of JSON text.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

/// Small JSON documents components keep by kind and key (the alarm engine's per-project
/// configuration), written whole and read back when they start.
#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Stores `doc` under `kind` and `key` (1 to 200 bytes each), replacing what was there.
    ///
    /// # Errors
    /// `InvalidInput` for a bad kind or key, `LimitExceeded` over [`MAX_DOCUMENT`], `Backend`.
    async fn put_document(&self, kind: &str, key: &str, doc: &serde_json::Value, at: Timestamp) -> Result<()>;
    /// Every document of `kind`, by key.
    ///
    /// # Errors
    /// `Integrity` for a stored document that is not JSON, `Backend`.
    async fn documents(&self, kind: &str) -> Result<Vec<(String, serde_json::Value)>>;
    /// Removes a document; `false` if there was none.
    ///
    /// # Errors
    /// `Backend`.
    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool>;
}

/// What a store tells every replica sharing it ([`Store::signals`]). Each is a hint to look again,
/// never the change itself: a signal may come more than once, and signals lost while the
/// connection that hears them was down are followed by [`StoreSignal::Resync`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreSignal {
    /// Someone asked to cancel, pause or resume this task
    /// ([`TaskStore::request_task_control`]).
    TaskControl(TaskId),
    /// Records were appended to the audit chain (every change of access is one).
    Audit,
    /// An agent's reports of desired items were recorded
    /// ([`AgentStore::record_reports`]): a delivery waiting for one on another replica is done.
    Reported(AgentId),
    /// Signals may have been missed: look at everything again. A receiver that falls behind gets
    /// `RecvError::Lagged` instead, which means the same.
    Resync,
}

/// Everything ecp-rs persists. Object-safe: hosts hold an `Arc<dyn Store>`, and may bring their own
/// backend by implementing the sub-traits.
#[async_trait]
pub trait Store:
    TenancyStore
    + IdentityStore
    + AuditStore
    + TaskStore
    + EdgeStore
    + AgentStore
    + ClusterStore
    + DocumentStore
    + Send
    + Sync
    + Debug
    + 'static
{
    /// The backend's name (`"sqlite"`, `"postgres"`).
    fn backend(&self) -> &'static str;

    /// What other replicas sharing the store did, as it happens: `None` for a store that cannot
    /// tell (then replicas find out by polling: task controls at each lease renewal, access
    /// changes at each sync). PostgreSQL tells through `LISTEN`/`NOTIFY`, so a change committed on
    /// one replica reaches the others within milliseconds.
    fn signals(&self) -> Option<tokio::sync::broadcast::Receiver<StoreSignal>> {
        None
    }

    /// Checks that the backend answers.
    ///
    /// # Errors
    /// `Backend`.
    async fn ping(&self) -> Result<()>;
}

struct Chain<'a>(&'a dyn AuditStore);

#[async_trait]
impl ChainReader for Chain<'_> {
    async fn records_after(&self, after: u64, limit: u32) -> Result<Vec<StoredRecord>> {
        self.0.audit_records_after(after, limit).await
    }
    async fn stored_head(&self) -> Result<ChainHead> {
        self.0.audit_head().await
    }
}

/// Verifies a store's whole audit chain; see [`crate::audit::verify_chain`].
///
/// # Errors
/// `Integrity` naming the first bad record, `Backend`.
pub async fn verify_audit(store: &dyn AuditStore, anchor: Option<&ChainHead>) -> Result<VerifyReport> {
    crate::audit::verify_chain(&Chain(store), anchor).await
}
