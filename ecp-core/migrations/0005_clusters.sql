-- EMQX clusters. The project and the name live in `resources` (kind 'cluster'): a transfer moves the
-- registry row, and deregistering it removes the cluster.

CREATE TABLE clusters (
    id TEXT PRIMARY KEY REFERENCES resources (id) ON DELETE CASCADE,
    backend TEXT NOT NULL,
    spec TEXT NOT NULL,
    api_url TEXT,
    api_key TEXT,
    api_secret TEXT,
    connection_limit BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    status TEXT NOT NULL,
    status_cause TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX clusters_enabled ON clusters (enabled);
