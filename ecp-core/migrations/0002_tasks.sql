-- The task engine: batch tasks and their per-target states.

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    org_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    policy TEXT NOT NULL,
    actor TEXT NOT NULL,
    exclusive_key TEXT UNIQUE,
    lease_owner TEXT,
    lease_until BIGINT,
    reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX tasks_project ON tasks (project_id, id);
CREATE INDEX tasks_state ON tasks (state);

CREATE TABLE task_targets (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    target_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    reason TEXT,
    result TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    next_attempt_at BIGINT,
    PRIMARY KEY (task_id, target_id)
);
CREATE INDEX task_targets_seq ON task_targets (task_id, seq);
