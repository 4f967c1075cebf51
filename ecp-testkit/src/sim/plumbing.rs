//! Fault injection and request counters, shared by every simulated product.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::token::lock;

/// Faults applied to every request before the product sees it.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    latency_micros: AtomicU64,
    fail_next: AtomicU64,
}

impl Faults {
    pub(crate) fn new(latency: Duration) -> Self {
        let f = Faults::default();
        f.set_latency(latency);
        f
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.latency_micros.store(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_micros.load(Ordering::Relaxed))
    }

    /// Makes the next `n` requests fail (replacing any failures still pending).
    pub(crate) fn fail_next(&self, n: u64) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    pub(crate) fn pending_failures(&self) -> u64 {
        self.fail_next.load(Ordering::SeqCst)
    }

    /// Whether this request is one of the failures still pending (and counts it off).
    pub(crate) fn take_failure(&self) -> bool {
        self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

/// Requests seen, per (method, path).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    per_route: Mutex<BTreeMap<(String, String), u64>>,
    total: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, method: &str, path: &str) {
        self.total.fetch_add(1, Ordering::SeqCst);
        *lock(&self.per_route).entry((method.to_owned(), path.to_owned())).or_default() += 1;
    }

    pub(crate) fn get(&self, method: &str, path: &str) -> u64 {
        lock(&self.per_route).get(&(method.to_owned(), path.to_owned())).copied().unwrap_or(0)
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.per_route).clone()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    pub(crate) fn reset(&self) {
        lock(&self.per_route).clear();
        self.total.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_down_and_counters_add_up() {
        let f = Faults::new(Duration::from_millis(5));
        assert_eq!(f.latency(), Duration::from_millis(5));
        f.fail_next(2);
        assert!(f.take_failure());
        assert!(f.take_failure());
        assert!(!f.take_failure());
        assert_eq!(f.pending_failures(), 0);

        let c = Counters::default();
        c.record("GET", "/a");
        c.record("GET", "/a");
        c.record("POST", "/a");
        assert_eq!(c.get("GET", "/a"), 2);
        assert_eq!(c.total(), 3);
        c.reset();
        assert_eq!(c.total(), 0);
        assert!(c.snapshot().is_empty());
    }
}
