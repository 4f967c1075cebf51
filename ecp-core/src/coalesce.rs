//! Coalescing of concurrent calls into batches: the store calls of a fleet rollout's many
//! in-flight targets become one statement per batch instead of one (or more) per target.
//!
//! Each caller queues its request and takes the batch lock; whoever holds it runs everything
//! queued so far as one batch and answers each caller, so while one batch runs the next gathers.
//! Alone, a caller runs a batch of one: nothing waits for a timer.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use ecp_core::coalesce::Coalescer;
//!
//! let doubler: Coalescer<u32, u32> = Coalescer::new(100);
//! let answer = doubler.call(21, |batch| async move { Some(batch.iter().map(|n| n * 2).collect()) }).await;
//! assert_eq!(answer, Some(42));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

type Waiting<Req, Resp> = Vec<(Req, oneshot::Sender<Option<Resp>>)>;

/// Runs concurrent calls as batches of at most `max_batch` requests.
pub struct Coalescer<Req, Resp> {
    queue: Mutex<Waiting<Req, Resp>>,
    running: tokio::sync::Mutex<()>,
    max_batch: usize,
}

impl<Req, Resp> fmt::Debug for Coalescer<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued = self.queue.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Coalescer").field("max_batch", &self.max_batch).field("queued", &queued).finish()
    }
}

impl<Req: Send, Resp: Send> Coalescer<Req, Resp> {
    /// A coalescer of batches of at most `max_batch` requests (at least 1).
    pub fn new(max_batch: usize) -> Self {
        Coalescer { queue: Mutex::new(Vec::new()), running: tokio::sync::Mutex::new(()), max_batch: max_batch.max(1) }
    }

    /// Queues `request` and returns its answer from a batch run by `run`, which gets the requests
    /// in the order they were queued and answers them in the same order: `Some(answers)` with one
    /// answer per request, or `None` when the batch as a whole failed. `None` is returned to each
    /// caller of a failed batch (or of one whose answers do not match its requests), which then
    /// does its work alone.
    pub async fn call<F, Fut>(&self, request: Req, run: F) -> Option<Resp>
    where
        F: Fn(Vec<Req>) -> Fut,
        Fut: Future<Output = Option<Vec<Resp>>>,
    {
        let (tx, rx) = oneshot::channel();
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).push((request, tx));
        {
            let _running = self.running.lock().await;
            loop {
                let batch: Waiting<Req, Resp> = {
                    let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    if queue.is_empty() {
                        break;
                    }
                    let n = queue.len().min(self.max_batch);
                    queue.drain(..n).collect()
                };
                let (requests, replies): (Vec<Req>, Vec<_>) = batch.into_iter().unzip();
                let n = requests.len();
                match run(requests).await {
                    Some(answers) if answers.len() == n => {
                        for (tx, answer) in replies.into_iter().zip(answers) {
                            let _ = tx.send(Some(answer));
                        }
                    }
                    _ => {
                        for tx in replies {
                            let _ = tx.send(None);
                        }
                    }
                }
                // Our own request was in this batch or an earlier one: the rest is the next holder's.
                if !rx.is_empty() {
                    break;
                }
            }
        }
        rx.await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_calls_share_batches_and_each_gets_its_own_answer() {
        let c: Arc<Coalescer<u32, u32>> = Arc::new(Coalescer::new(64));
        let batches = Arc::new(AtomicUsize::new(0));
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..1000u32 {
            let (c, batches) = (c.clone(), batches.clone());
            calls.spawn(async move {
                let answer = c
                    .call(i, |batch| {
                        let batches = batches.clone();
                        async move {
                            assert!(batch.len() <= 64);
                            batches.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                            Some(batch.into_iter().map(|n| n + 1).collect())
                        }
                    })
                    .await;
                (i, answer)
            });
        }
        while let Some(joined) = calls.join_next().await {
            let (i, answer) = joined.unwrap();
            assert_eq!(answer, Some(i + 1));
        }
        let n = batches.load(Ordering::Relaxed);
        assert!(n < 1000, "calls were batched: {n} batches for 1000 calls");
    }

    #[tokio::test]
    async fn a_failed_or_short_batch_answers_none_to_each() {
        let c: Coalescer<u32, u32> = Coalescer::new(8);
        assert_eq!(c.call(1, |_| async { None }).await, None);
        assert_eq!(c.call(1, |_| async { Some(vec![]) }).await, None);
        assert_eq!(c.call(1, |b| async move { Some(b) }).await, Some(1));
        assert_eq!(format!("{c:?}"), "Coalescer { max_batch: 8, queued: 0 }");
    }
}
