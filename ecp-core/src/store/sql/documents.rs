//! Documents: small JSON values components keep by kind and key.

use async_trait::async_trait;

use super::{SqlStore, col, ts};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::store::{DocumentStore, MAX_DOCUMENT};

fn check_names(kind: &str, key: &str) -> Result<()> {
    for (field, v) in [("document kind", kind), ("document key", key)] {
        if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must be 1 to 200 bytes without control characters"));
        }
    }
    Ok(())
}

#[async_trait]
impl DocumentStore for SqlStore {
    async fn put_document(&self, kind: &str, key: &str, doc: &serde_json::Value, at: Timestamp) -> Result<()> {
        check_names(kind, key)?;
        let text = doc.to_string();
        if text.len() > MAX_DOCUMENT {
            return Err(Error::LimitExceeded { limit: "document bytes", max: MAX_DOCUMENT as u64 });
        }
        sqlx::query(
            "INSERT INTO documents (kind, doc_key, doc, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, doc_key) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
        )
        .bind(kind.to_owned())
        .bind(key.to_owned())
        .bind(text)
        .bind(ts(at))
        .execute(&self.writes)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn documents(&self, kind: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let rows = sqlx::query("SELECT doc_key, doc FROM documents WHERE kind = $1 ORDER BY doc_key")
            .bind(kind.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| {
                let key: String = col(row, "doc_key")?;
                let text: String = col(row, "doc")?;
                let doc = serde_json::from_str(&text)
                    .map_err(|e| Error::Integrity { what: "stored document", reason: format!("{kind}/{key}: {e}") })?;
                Ok((key, doc))
            })
            .collect()
    }

    async fn delete_document(&self, kind: &str, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM documents WHERE kind = $1 AND doc_key = $2")
            .bind(kind.to_owned())
            .bind(key.to_owned())
            .execute(&self.writes)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() > 0)
    }
}
