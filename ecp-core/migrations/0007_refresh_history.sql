-- Every refresh token a session rotated away, so that one coming back, however many rotations
-- later, is known as reuse and ends the session (a thief who refreshes twice does not keep it).
CREATE TABLE session_refresh_history (
    refresh_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE
);
CREATE INDEX session_refresh_history_session ON session_refresh_history (session_id);
INSERT INTO session_refresh_history (refresh_hash, session_id)
    SELECT previous_refresh_hash, id FROM sessions WHERE previous_refresh_hash IS NOT NULL;
