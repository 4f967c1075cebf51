-- Edge agents (unmanaged until managed into a project), their desired configuration, and the
-- services reached through them.

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    project_id TEXT REFERENCES projects (id),
    name TEXT,
    online BIGINT NOT NULL,
    version TEXT,
    hello TEXT NOT NULL,
    secret_hash TEXT,
    desired_version BIGINT NOT NULL,
    last_seen BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX agents_project ON agents (project_id);

CREATE TABLE agent_desired (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    item_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    target TEXT NOT NULL,
    change TEXT NOT NULL,
    applied_version BIGINT,
    applied_ok BIGINT,
    detail TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, item_key)
);

-- A service reached through an agent keeps the agent from being deleted (no cascade).
ALTER TABLE edge_services ADD COLUMN agent_id TEXT REFERENCES agents (id);
CREATE INDEX edge_services_agent ON edge_services (agent_id);
