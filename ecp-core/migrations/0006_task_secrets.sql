-- What a task needs that readers of its spec must not see (a hosted install's environment),
-- sealed by the store like every secret it keeps; read only by the engine that runs the task.
ALTER TABLE tasks ADD COLUMN secrets TEXT;
