-- ecp-rs foundation schema. One text for SQLite and PostgreSQL: ids are TEXT (UUIDs), times are
-- BIGINT microseconds since the Unix epoch, flags are BIGINT 0/1.

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('organizations', 0);
INSERT INTO counters (name, value) VALUES ('projects', 0);

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    project_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (org_id, name_key)
);

-- Everything a project holds (clusters, edge services, agents ...): a project with rows here
-- cannot be deleted.
CREATE TABLE resources (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, kind, name_key)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    state TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    sso_only BIGINT NOT NULL,
    password_hash TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE org_members (
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user ON org_members (user_id);

CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    org_id TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    owner_key TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    description TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (owner_key, name_key)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    org_id TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    created_by_kind TEXT NOT NULL,
    created_by_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_org ON api_keys (org_id);

-- A subject holds at most one role per scope. A user's binding inside an organization references
-- its membership, so removing the member removes its bindings in the same statement.
CREATE TABLE bindings (
    id TEXT PRIMARY KEY,
    subject_key TEXT NOT NULL,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    api_key_id TEXT REFERENCES api_keys (id) ON DELETE CASCADE,
    role_builtin TEXT,
    role_id TEXT REFERENCES roles (id),
    scope_key TEXT NOT NULL,
    org_id TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    project_id TEXT REFERENCES projects (id) ON DELETE CASCADE,
    member_user_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (subject_key, scope_key),
    FOREIGN KEY (org_id, member_user_id) REFERENCES org_members (org_id, user_id) ON DELETE CASCADE,
    CHECK ((user_id IS NULL) <> (api_key_id IS NULL)),
    CHECK ((role_builtin IS NULL) <> (role_id IS NULL))
);
CREATE INDEX bindings_org ON bindings (org_id);
CREATE INDEX bindings_project ON bindings (project_id);
CREATE INDEX bindings_role ON bindings (role_id);
CREATE INDEX bindings_user ON bindings (user_id);
CREATE INDEX bindings_api_key ON bindings (api_key_id);
CREATE INDEX bindings_member ON bindings (org_id, member_user_id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_hash TEXT NOT NULL UNIQUE,
    access_expires_at BIGINT NOT NULL,
    refresh_hash TEXT NOT NULL UNIQUE,
    previous_refresh_hash TEXT,
    refresh_expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_previous_refresh ON sessions (previous_refresh_hash);

CREATE TABLE user_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX user_tokens_user ON user_tokens (user_id);

CREATE TABLE login_failures (
    login_key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT
);

-- The hash-chained audit log. No foreign keys: records outlive what they describe.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT NOT NULL,
    org_id TEXT,
    org_name TEXT,
    project_id TEXT,
    project_name TEXT,
    resource_kind TEXT NOT NULL,
    resource_id TEXT,
    resource_name TEXT,
    operation TEXT NOT NULL,
    success BIGINT NOT NULL,
    reason TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_org ON audit_log (org_id, seq);
CREATE INDEX audit_log_project ON audit_log (project_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq);
CREATE INDEX audit_log_resource ON audit_log (resource_kind, resource_id);

-- The chain's head, kept apart from the records so removing the newest ones is detected.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
