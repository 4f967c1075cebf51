-- The digest of an agent's unused claim code: whoever holds the code may manage the agent into a
-- project, once. Issued with its broker credentials; cleared when the agent is managed.
ALTER TABLE agents ADD COLUMN claim_hash TEXT;
