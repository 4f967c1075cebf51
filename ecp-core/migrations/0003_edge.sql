-- Edge services, their tags, synced information, and configuration templates.

CREATE TABLE edge_services (
    id TEXT PRIMARY KEY REFERENCES resources (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    mode TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    cred_kind TEXT NOT NULL,
    cred_user TEXT,
    cred_secret TEXT,
    version TEXT,
    status TEXT NOT NULL,
    last_seen BIGINT,
    missed_probes BIGINT NOT NULL,
    info TEXT,
    info_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, name_key)
);
CREATE INDEX edge_services_kind ON edge_services (project_id, kind);
CREATE INDEX edge_services_status ON edge_services (project_id, status);
CREATE INDEX edge_services_version ON edge_services (project_id, version);

CREATE TABLE tags (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);

-- A tag in use cannot be deleted: the reference has no cascade.
CREATE TABLE edge_service_tags (
    service_id TEXT NOT NULL REFERENCES edge_services (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (service_id, tag),
    FOREIGN KEY (project_id, tag) REFERENCES tags (project_id, name)
);
CREATE INDEX edge_service_tags_tag ON edge_service_tags (project_id, tag, service_id);

CREATE TABLE config_templates (
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX config_templates_project ON config_templates (project_id, name_key, version);
