//! Bounds on the work logins cause.
//!
//! Every login runs an argon2id verification (for unknown emails too, against a dummy hash, so
//! both answer in the same time), and each holds the hash's memory cost (19 MiB with the OWASP
//! parameters) on the blocking pool. Unbounded, a flood of logins is gigabytes. Three bounds:
//!
//! - at most [`LoginLimits::max_concurrent_hashes`] hashes run at once (by default as many as fit
//!   in 256 MiB); a login that cannot start its hash within [`LoginLimits::queue_wait`] is
//!   refused with [`Error::RateLimited`];
//! - logins per identity (the claimed email, whether it exists or not) and
//! - logins per source address (when the host passes one, [`login_from`](crate::Authenticator::login_from))
//!
//! are rate-limited with the `governor` crate's GCRA limiters, answered with
//! [`Error::RateLimited`] and the time to wait. A refused login never
//! reaches the hash.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::password::Argon2Params;

/// The memory the default allows concurrent hashes to hold: 256 MiB.
pub const DEFAULT_HASH_MEMORY: u64 = 256 << 20;

/// Keys kept by a keyed limiter before the ones that are back to full are forgotten.
const RETAIN_ABOVE: usize = 10_000;

/// The login bounds; see the [module docs](self). Build with [`LoginLimits::builder`]; the
/// default is what `LoginLimits::builder().build()` gives: 10 logins a minute per identity (a
/// burst of 10), 300 a minute per source (a burst of 60), hashes fitting in 256 MiB, a wait of
/// 5 s for a hash slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    per_identity: (u32, u32),
    per_source: (u32, u32),
    hash_memory: u64,
    max_concurrent_hashes: Option<u32>,
    queue_wait: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_identity: (10, 10),
            per_source: (300, 60),
            hash_memory: DEFAULT_HASH_MEMORY,
            max_concurrent_hashes: None,
            queue_wait: Duration::from_secs(5),
        }
    }
}

impl LoginLimits {
    /// A builder starting from the defaults.
    pub fn builder() -> LoginLimitsBuilder {
        LoginLimitsBuilder(LoginLimits::default())
    }

    /// Logins a minute per identity, and the burst.
    pub fn per_identity(&self) -> (u32, u32) {
        self.per_identity
    }

    /// Logins a minute per source address, and the burst.
    pub fn per_source(&self) -> (u32, u32) {
        self.per_source
    }

    /// How many hashes may run at once with `params`: the explicit setting, or as many as fit in
    /// the memory budget (at least one).
    pub fn max_concurrent_hashes(&self, params: Argon2Params) -> u32 {
        self.max_concurrent_hashes.unwrap_or_else(|| {
            let each = u64::from(params.memory_kib()).max(1) * 1024;
            u32::try_from((self.hash_memory / each).max(1)).unwrap_or(u32::MAX)
        })
    }

    /// How long a login waits for a hash slot.
    pub fn queue_wait(&self) -> Duration {
        self.queue_wait
    }
}

/// Builds [`LoginLimits`]; [`build`](Self::build) checks.
#[derive(Debug, Clone)]
#[must_use]
pub struct LoginLimitsBuilder(LoginLimits);

impl LoginLimitsBuilder {
    /// `per_minute` logins a minute per identity (the claimed email), with bursts of `burst`
    /// (default 10 and 10).
    pub fn per_identity(mut self, per_minute: u32, burst: u32) -> Self {
        self.0.per_identity = (per_minute, burst);
        self
    }

    /// `per_minute` logins a minute per source address, with bursts of `burst` (default 300 and
    /// 60).
    pub fn per_source(mut self, per_minute: u32, burst: u32) -> Self {
        self.0.per_source = (per_minute, burst);
        self
    }

    /// The memory concurrent hashes may hold, bytes (default 256 MiB): the number of hashes at
    /// once is this over the argon2 memory cost.
    pub fn hash_memory(mut self, bytes: u64) -> Self {
        self.0.hash_memory = bytes;
        self
    }

    /// Hashes at once, whatever the memory budget says.
    pub fn max_concurrent_hashes(mut self, n: u32) -> Self {
        self.0.max_concurrent_hashes = Some(n);
        self
    }

    /// How long a login waits for a hash slot before it is refused (default 5 s; up to 5 min).
    pub fn queue_wait(mut self, wait: Duration) -> Self {
        self.0.queue_wait = wait;
        self
    }

    /// The limits.
    ///
    /// # Errors
    /// `InvalidInput` for a zero rate, burst, budget or slot count, or a wait over 5 minutes.
    pub fn build(self) -> ecp_core::Result<LoginLimits> {
        let l = self.0;
        let invalid = |field: &'static str, reason: &'static str| Err(ecp_core::Error::invalid(field, reason));
        if l.per_identity.0 == 0 || l.per_identity.1 == 0 {
            return invalid("per_identity", "the rate and the burst must be at least 1");
        }
        if l.per_source.0 == 0 || l.per_source.1 == 0 {
            return invalid("per_source", "the rate and the burst must be at least 1");
        }
        if l.hash_memory == 0 || l.max_concurrent_hashes == Some(0) {
            return invalid("hash_memory", "at least one hash must fit");
        }
        if l.queue_wait > Duration::from_secs(300) {
            return invalid("queue_wait", "at most 5 minutes");
        }
        Ok(l)
    }
}

/// The access control's clock as governor's: time since the epoch, so a
/// [`ManualClock`](ecp_core::ManualClock) moves the limits in tests as it moves lockouts.
#[derive(Debug, Clone)]
struct LimiterClock(Arc<dyn ecp_core::Clock>);

impl governor::clock::Clock for LimiterClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.0.now().as_nanosecond().max(0)).unwrap_or(u64::MAX))
    }
}

type Limiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, LimiterClock, NoOpMiddleware<Duration>>;

/// The login rate limiters of one access control.
pub(crate) struct Throttle {
    per_identity: Limiter<String>,
    per_source: Limiter<IpAddr>,
    clock: LimiterClock,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

/// The hash slots: at most so many argon2 hashes at once, each waited for at most `wait`.
#[derive(Debug, Clone)]
pub(crate) struct HashSlots {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl HashSlots {
    pub(crate) fn new(limits: &LoginLimits, params: Argon2Params) -> Self {
        HashSlots { slots: Arc::new(Semaphore::new(limits.max_concurrent_hashes(params) as usize)), wait: limits.queue_wait }
    }

    /// A hash slot, waited for at most the queue wait.
    ///
    /// # Errors
    /// [`Error::RateLimited`] when no slot frees in time.
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::RateLimited { retry_after: self.wait.max(Duration::from_secs(1)) }),
        }
    }

    /// Hash slots free now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.slots.available_permits()
    }
}

fn quota((per_minute, burst): (u32, u32)) -> Quota {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

impl Throttle {
    pub(crate) fn new(limits: &LoginLimits, clock: Arc<dyn ecp_core::Clock>) -> Self {
        let clock = LimiterClock(clock);
        Throttle {
            per_identity: RateLimiter::new(quota(limits.per_identity), DefaultKeyedStateStore::default(), clock.clone()),
            per_source: RateLimiter::new(quota(limits.per_source), DefaultKeyedStateStore::default(), clock.clone()),
            clock,
        }
    }

    /// Counts a login of `identity` from `source` against the rate limits.
    ///
    /// # Errors
    /// [`Error::RateLimited`] with the time until one more login is allowed.
    pub(crate) fn admit(&self, identity: &str, source: Option<IpAddr>) -> Result<()> {
        if let Some(ip) = source {
            self.check(&self.per_source, &ip)?;
        }
        self.check(&self.per_identity, &identity.to_owned())
    }

    fn check<K: Clone + std::hash::Hash + Eq>(&self, limiter: &Limiter<K>, key: &K) -> Result<()> {
        if limiter.len() > RETAIN_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| Error::RateLimited {
            retry_after: not_until.wait_time_from(self.clock.now()).max(Duration::from_millis(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_count_follows_the_memory_budget() {
        let owasp = Argon2Params::OWASP;
        assert_eq!(LoginLimits::default().max_concurrent_hashes(owasp), 13, "256 MiB / 19 MiB");
        let tight = LoginLimits::builder().hash_memory(1).build().unwrap();
        assert_eq!(tight.max_concurrent_hashes(owasp), 1, "at least one");
        let fixed = LoginLimits::builder().max_concurrent_hashes(3).build().unwrap();
        assert_eq!(fixed.max_concurrent_hashes(owasp), 3);
        assert!(LoginLimits::builder().per_identity(0, 1).build().is_err());
        assert!(LoginLimits::builder().queue_wait(Duration::from_secs(301)).build().is_err());
    }

    #[test]
    fn identities_and_sources_are_limited_apart() {
        let limits = LoginLimits::builder().per_identity(60, 3).per_source(60, 5).build().unwrap();
        let clock = ecp_core::ManualClock::starting_now();
        let t = Throttle::new(&limits, Arc::new(clock.clone()));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            t.admit("a@example.com", Some(ip)).unwrap();
        }
        let Err(Error::RateLimited { retry_after }) = t.admit("a@example.com", None) else { panic!("the 4th login passed") };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1), "{retry_after:?}");
        t.admit("b@example.com", Some(ip)).unwrap();
        t.admit("c@example.com", Some(ip)).unwrap();
        assert!(matches!(t.admit("d@example.com", Some(ip)), Err(Error::RateLimited { .. })), "the source's 6th login");
        t.admit("d@example.com", Some("203.0.113.8".parse().unwrap())).unwrap();
        // The clock refills the buckets: a second later, one more login of `a` passes.
        clock.advance(Duration::from_secs(1));
        t.admit("a@example.com", None).unwrap();
        assert!(t.admit("a@example.com", None).is_err());
    }

    #[tokio::test]
    async fn hash_slots_are_bounded_and_waited_for() {
        let limits = LoginLimits::builder().max_concurrent_hashes(2).queue_wait(Duration::from_millis(50)).build().unwrap();
        let t = HashSlots::new(&limits, Argon2Params::OWASP);
        let a = t.acquire().await.unwrap();
        let _b = t.acquire().await.unwrap();
        assert_eq!(t.free(), 0);
        assert!(matches!(t.acquire().await, Err(Error::RateLimited { .. })));
        drop(a);
        drop(t.acquire().await.unwrap());
    }
}
