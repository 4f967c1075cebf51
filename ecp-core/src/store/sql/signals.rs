//! Signals between replicas sharing a PostgreSQL store: `NOTIFY` inside the transaction that makes
//! a change (delivered when it commits, never for a rolled-back one), `LISTEN` on one connection of
//! each store.

use std::time::Duration;

use sqlx::{Any, Transaction};
use tokio::sync::broadcast;

use super::{Dialect, SqlStore};
use crate::error::Result;
use crate::store::StoreSignal;

/// The channel every replica listens on.
pub(super) const CHANNEL: &str = "ecp_signals";

/// Signals buffered per receiver; one further behind gets `Lagged`, which means "look again".
const CAPACITY: usize = 1024;

fn encode(signal: &StoreSignal) -> String {
    match signal {
        StoreSignal::TaskControl(id) => format!("task:{id}"),
        StoreSignal::Audit => "audit".to_owned(),
        StoreSignal::Reported(agent) => format!("reported:{agent}"),
        StoreSignal::Resync => "resync".to_owned(),
    }
}

/// A payload as sent by [`encode`]; anything else (another program's, a newer version's) is
/// ignored.
fn decode(payload: &str) -> Option<StoreSignal> {
    match payload.split_once(':') {
        Some(("task", id)) => id.parse().ok().map(StoreSignal::TaskControl),
        Some(("reported", agent)) => crate::edge::AgentId::new(agent).ok().map(StoreSignal::Reported),
        None if payload == "audit" => Some(StoreSignal::Audit),
        None if payload == "resync" => Some(StoreSignal::Resync),
        _ => None,
    }
}

impl SqlStore {
    /// Has `signal` sent to every replica when `tx` commits (PostgreSQL); nothing on SQLite, whose
    /// replicas poll.
    pub(super) async fn notify_in(&self, tx: &mut Transaction<'static, Any>, signal: &StoreSignal) -> Result<()> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        // pg_notify returns void, a type the Any driver does not map: count its one row instead.
        sqlx::query("SELECT COUNT(*) AS n FROM (SELECT pg_notify($1, $2)) AS sent")
            .bind(CHANNEL)
            .bind(encode(signal))
            .execute(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl SqlStore {
    /// Signals [`StoreSignal::Reported`] for each of `agents` (PostgreSQL), in one statement, after
    /// their reports were committed.
    pub(super) async fn notify_reported(&self, agents: &[&str]) -> Result<()> {
        if self.dialect != Dialect::Postgres || agents.is_empty() {
            return Ok(());
        }
        let mut sql = super::Sql::new("SELECT COUNT(*) AS n FROM (SELECT pg_notify(");
        sql.bind(CHANNEL.to_owned()).push(", 'reported:' || (value->>0)) FROM ");
        let rows: Vec<[&str; 1]> = agents.iter().map(|a| [*a]).collect();
        // Serializing strings cannot fail.
        self.push_json_rows(&mut sql, serde_json::to_string(&rows).unwrap_or_default());
        sql.push(") AS sent");
        sql.query().execute(&self.writes).await.map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// The listening side of one store (shared by its clones): stops listening when the last clone
/// is dropped.
pub(super) struct Listener {
    pub(super) tx: broadcast::Sender<StoreSignal>,
    task: tokio::task::AbortHandle,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Listener {
    pub(super) fn stop(&self) {
        self.task.abort();
    }

    /// Listens on `url`'s database. The first connection is made here, so a store that cannot
    /// listen fails to connect; later losses are retried every second, each followed by
    /// [`StoreSignal::Resync`] once listening again (what was sent meanwhile is lost).
    #[cfg(feature = "postgres")]
    pub(super) async fn start(url: &secrecy::SecretString) -> Result<Self> {
        use secrecy::ExposeSecret;
        use sqlx::postgres::PgListener;

        let connect = |url: secrecy::SecretString| async move {
            let mut listener = PgListener::connect(url.expose_secret()).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let first = connect(url.clone()).await.map_err(|e| crate::Error::Backend {
            backend: "postgres",
            retryable: true,
            source: super::redact(e),
        })?;
        let (tx, _) = broadcast::channel(CAPACITY);
        let sender = tx.clone();
        let url = url.clone();
        let task = tokio::spawn(async move {
            let mut listener = first;
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if let Some(signal) = decode(n.payload()) {
                            let _ = sender.send(signal);
                        }
                        continue;
                    }
                    Ok(None) => tracing::warn!("the store's LISTEN connection was lost; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "the store's LISTEN connection failed; reconnecting"),
                }
                listener = loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match connect(url.clone()).await {
                        Ok(l) => break l,
                        Err(e) => tracing::debug!(error = %e, "listening on the store again failed; retrying"),
                    }
                };
                let _ = sender.send(StoreSignal::Resync);
            }
        })
        .abort_handle();
        Ok(Listener { tx, task })
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};
    use crate::id::TaskId;
    use crate::store::StoreSignal;

    #[test]
    fn payloads_round_trip_and_strangers_are_ignored() {
        let agent = crate::edge::AgentId::new("edge-7").unwrap();
        for s in [StoreSignal::TaskControl(TaskId::new()), StoreSignal::Audit, StoreSignal::Reported(agent), StoreSignal::Resync] {
            assert_eq!(decode(&encode(&s)), Some(s));
        }
        for bad in ["", "task:", "task:not-a-uuid", "audit:1", "other", "TASK:0", "reported:", "reported:a b"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Any payload (another program's on the channel, a newer version's) is a signal that
        /// encodes back to itself, or is ignored; none panics.
        #[test]
        fn any_payload_is_a_signal_or_ignored(payload in "(task:|reported:|audit|resync)?\\PC{0,80}") {
            if let Some(signal) = decode(&payload) {
                proptest::prop_assert_eq!(decode(&encode(&signal)), Some(signal));
            }
        }
    }
}
