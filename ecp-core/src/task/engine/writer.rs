//! [`Writer`]: the batching writer of target updates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::store::Store;
use crate::task::model::TargetUpdate;

/// Writes target updates in batches, in order, retrying until the store takes them.
/// Fenced by the lease: only while its owner holds the task's lease do its writes land.
pub(super) struct Writer {
    tx: mpsc::UnboundedSender<WriterMsg>,
    abandoned: Arc<AtomicBool>,
}

// Nearly every message is an update: boxing it would cost an allocation per target state change.
#[allow(clippy::large_enum_variant)]
enum WriterMsg {
    Update(TargetUpdate),
    Flush(oneshot::Sender<()>),
}

impl Writer {
    pub(super) fn spawn(store: Arc<dyn Store>, interval: Duration, batch: usize, owner: String) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<WriterMsg>();
        let abandoned = Arc::new(AtomicBool::new(false));
        let gave_up = abandoned.clone();
        tokio::spawn(async move {
            let mut pending: Vec<TargetUpdate> = Vec::new();
            let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
            loop {
                let first = if pending.is_empty() { rx.recv().await } else { None };
                let mut closed = false;
                match first {
                    Some(WriterMsg::Update(u)) => pending.push(u),
                    Some(WriterMsg::Flush(w)) => waiters.push(w),
                    None if pending.is_empty() => break,
                    None => {}
                }
                let deadline = Instant::now() + interval;
                while pending.len() < batch && waiters.is_empty() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(WriterMsg::Update(u))) => pending.push(u),
                        Ok(Some(WriterMsg::Flush(w))) => waiters.push(w),
                        Ok(None) => {
                            closed = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut backoff = Duration::from_millis(50);
                while !pending.is_empty() {
                    if gave_up.load(Ordering::SeqCst) {
                        return;
                    }
                    match store.update_targets(&pending, Some(&owner)).await {
                        Ok(()) => pending.clear(),
                        Err(e) => {
                            tracing::warn!(error = %e, updates = pending.len(), "writing target states failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if closed {
                    break;
                }
            }
        });
        Self { tx, abandoned }
    }

    /// Gives up what is not written yet (the lease is gone) and stops.
    pub(super) fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        let (tx, _) = oneshot::channel();
        // Wakes a writer waiting for updates; it finds the flag before it writes.
        let _ = self.tx.send(WriterMsg::Flush(tx));
    }

    pub(super) fn send(&self, u: TargetUpdate) {
        let _ = self.tx.send(WriterMsg::Update(u));
    }

    pub(super) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(WriterMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
