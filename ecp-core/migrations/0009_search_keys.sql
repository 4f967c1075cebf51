-- Case-insensitive searches compare keys lowercased by Rust's Unicode rules: SQLite's LOWER and
-- LIKE fold ASCII only, so "ÉMILE" was not found by "émile". Rows written before this migration
-- get their keys at the next start (SqlStore::connect).
ALTER TABLE users ADD COLUMN display_name_key TEXT;
ALTER TABLE audit_log ADD COLUMN actor_name_key TEXT;
