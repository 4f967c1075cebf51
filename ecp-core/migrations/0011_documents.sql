-- Small JSON documents components keep by kind and key (an alarm engine's per-project
-- configuration), written whole and read back when they start.
CREATE TABLE documents (
    kind TEXT NOT NULL,
    doc_key TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, doc_key)
);
