-- A request to cancel or pause a task, kept with the task so the replica that runs it sees it
-- whichever replica took the request: 'cancel', 'pause', or NULL to run. A task paused before this
-- migration stays paused.
ALTER TABLE tasks ADD COLUMN control TEXT;
UPDATE tasks SET control = 'pause' WHERE state = 'paused';
