//! The collector runner with real time: a dead or failing source never delays a healthy one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ecp_core::{ManualClock, OrgId, ProjectId, Timestamp};
use ecp_telemetry::{
    Accepted, Collection, Collector, CollectorOptions, CollectorOptionsBuilder, CollectorRunner, Error, Labels, MetricName, MetricScope,
    Sample, SampleSink, SeriesKey, Skipped,
};

/// A sink keeping everything in a vector.
#[derive(Debug, Default)]
struct VecSink(Mutex<Vec<Sample>>);

impl SampleSink for VecSink {
    fn accept(&self, samples: &[Sample]) -> Accepted {
        self.0.lock().unwrap().extend_from_slice(samples);
        Accepted { stored: samples.len(), ..Accepted::default() }
    }
}

impl VecSink {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn values(&self, series: &SeriesKey) -> Vec<f64> {
        self.0.lock().unwrap().iter().filter(|s| &s.series == series).map(|s| s.value).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Healthy,
    Hang,
    Fail,
    Panic,
}

#[derive(Debug)]
struct TestCollector {
    name: String,
    behaviour: Behaviour,
    scope: MetricScope,
    calls: AtomicU64,
}

impl TestCollector {
    fn new(name: &str, behaviour: Behaviour, scope: MetricScope) -> Arc<Self> {
        Arc::new(TestCollector { name: name.into(), behaviour, scope, calls: AtomicU64::new(0) })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Collector for TestCollector {
    fn name(&self) -> &str {
        &self.name
    }

    async fn collect(&self, now: Timestamp) -> ecp_telemetry::Result<Collection> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Healthy => {
                let labels = Labels::new([("source", self.name.as_str())])?;
                Ok(Collection {
                    samples: vec![Sample::new(self.scope, MetricName::new("test_value")?, labels, now, 42.0)],
                    skipped: vec![Skipped { location: "line 2".into(), reason: "not a number".into() }],
                })
            }
            Behaviour::Hang => futures::future::pending().await,
            Behaviour::Fail => Err(Error::Api {
                source_name: self.name.clone(),
                endpoint: "GET /api/v5/nodes".into(),
                status: 500,
                message: Some("NODE_DOWN: bad rpc call".into()),
            }),
            Behaviour::Panic => panic!("collector bug"),
        }
    }
}

fn scope() -> MetricScope {
    MetricScope::new(OrgId::new(), ProjectId::new())
}

fn up(scope: MetricScope, name: &str) -> SeriesKey {
    SeriesKey::new(scope, MetricName::new("up").unwrap(), Labels::new([("collector", name)]).unwrap())
}

fn every(ms: u64) -> CollectorOptionsBuilder {
    CollectorOptions::builder().interval(Duration::from_millis(ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_failing_collectors_do_not_delay_a_healthy_one() {
    let scope = scope();
    let sink = Arc::new(VecSink::default());
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let runner = CollectorRunner::new(sink.clone(), clock);

    let healthy = TestCollector::new("healthy", Behaviour::Healthy, scope);
    let dead = TestCollector::new("dead", Behaviour::Hang, scope);
    let slow = TestCollector::new("slow", Behaviour::Hang, scope);
    let failing = TestCollector::new("failing", Behaviour::Fail, scope);
    runner.add(healthy.clone(), every(50).up(up(scope, "healthy")).build().unwrap()).unwrap();
    // Hangs forever; its timeout is far beyond the window.
    runner.add(dead.clone(), every(50).timeout(Duration::from_secs(60)).up(up(scope, "dead")).build().unwrap()).unwrap();
    runner.add(slow.clone(), every(50).timeout(Duration::from_millis(100)).up(up(scope, "slow")).build().unwrap()).unwrap();
    runner.add(failing.clone(), every(50).up(up(scope, "failing")).build().unwrap()).unwrap();
    assert_eq!(runner.len(), 4);

    tokio::time::sleep(Duration::from_millis(1000)).await;

    // ~20 ticks of 50 ms in 1 s (the first is jittered by up to one interval); slack both ways,
    // as the machine may be busy. Missed ticks are skipped, never bursted.
    let n = healthy.calls();
    assert!((12..=22).contains(&n), "healthy collected {n} times in 1 s at a 50 ms interval");
    assert!(failing.calls() >= 12, "failing collected {} times", failing.calls());
    assert_eq!(dead.calls(), 1, "a hanging collection must not be started again while it runs");
    assert!((4..=11).contains(&slow.calls()), "slow collected {} times with a 100 ms timeout", slow.calls());

    let h = runner.status("healthy").unwrap();
    assert!(h.collections >= 12 && h.failures == 0 && h.consecutive_failures == 0, "{h:?}");
    assert_eq!((h.samples, h.skipped), (h.collections, h.collections));
    assert_eq!(h.last_success, Some(start));
    assert_eq!(h.last_error, None);

    let f = runner.status("failing").unwrap();
    assert_eq!(f.collections, 0);
    assert!(f.consecutive_failures >= 12 && f.failures == f.consecutive_failures, "{f:?}");
    assert_eq!(f.last_error.as_deref(), Some("failing: GET /api/v5/nodes answered 500: NODE_DOWN: bad rpc call"));
    assert_eq!(f.last_success, None);

    let s = runner.status("slow").unwrap();
    assert_eq!(s.last_error.as_deref(), Some("timed out after 100ms"));
    assert!(s.failures >= 4, "{s:?}");
    let d = runner.status("dead").unwrap();
    assert_eq!((d.collections, d.failures), (0, 0));

    // up: 1 for every healthy collection, 0 for every failed one, nothing yet for the dead one.
    let healthy_up = sink.values(&up(scope, "healthy"));
    assert!(healthy_up.len() >= 12 && healthy_up.iter().all(|v| *v == 1.0), "{healthy_up:?}");
    for name in ["failing", "slow"] {
        let values = sink.values(&up(scope, name));
        assert!(values.len() >= 4 && values.iter().all(|v| *v == 0.0), "{name}: {values:?}");
    }
    assert!(sink.values(&up(scope, "dead")).is_empty());
    // The samples carry the clock's time.
    assert!(sink.0.lock().unwrap().iter().all(|s| s.time == start));

    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_collector_counts_as_failed_and_is_called_again() {
    // Apart from the cadence test: the test harness's panic hook may print a symbolised
    // backtrace, which takes a worker thread for a while.
    let scope = scope();
    let sink = Arc::new(VecSink::default());
    let runner = CollectorRunner::new(sink.clone(), Arc::new(ManualClock::starting_now()));
    let buggy = TestCollector::new("buggy", Behaviour::Panic, scope);
    runner.add(buggy.clone(), every(20).jitter(false).up(up(scope, "buggy")).build().unwrap()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while buggy.calls() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = runner.status("buggy").unwrap();
    assert_eq!(status.last_error.as_deref(), Some("the collector panicked"));
    runner.shutdown().await;
    assert!(buggy.calls() >= 3, "a panicking collector was called {} times", buggy.calls());
    let values = sink.values(&up(scope, "buggy"));
    assert!(values.len() >= 2 && values.iter().all(|v| *v == 0.0), "{values:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_stops_one_collector_and_shutdown_stops_all() {
    let scope = scope();
    let sink = Arc::new(VecSink::default());
    let runner = CollectorRunner::new(sink.clone(), Arc::new(ManualClock::starting_now()));
    let a = TestCollector::new("a", Behaviour::Healthy, scope);
    let b = TestCollector::new("b", Behaviour::Healthy, scope);
    let c = TestCollector::new("c", Behaviour::Fail, scope);
    for col in [&a, &b] {
        runner.add(col.clone(), every(20).build().unwrap()).unwrap();
    }
    runner.add(c.clone(), every(20).jitter(false).build().unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let status = runner.remove("a").await.unwrap();
    assert!(status.collections >= 3, "{status:?}");
    let a_calls = a.calls();
    assert!(runner.status("a").is_none());
    assert!(runner.remove("a").await.is_none());
    let names: Vec<String> = runner.statuses().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["b", "c"]);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a.calls(), a_calls, "a removed collector kept collecting");
    assert!(b.calls() >= 6, "b collected only {} times", b.calls());

    // A removed name may be added again.
    runner.add(a.clone(), every(20).jitter(false).build().unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(a.calls() > a_calls);

    runner.shutdown().await;
    assert!(runner.is_empty());
    let frozen = (a.calls(), b.calls(), c.calls(), sink.len());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((a.calls(), b.calls(), c.calls(), sink.len()), frozen, "collectors ran after shutdown");
    let err = runner.add(TestCollector::new("late", Behaviour::Healthy, scope), every(20).build().unwrap()).unwrap_err();
    assert!(err.to_string().contains("shut down"), "{err}");
}

#[tokio::test]
async fn registration_is_checked() {
    let scope = scope();
    let runner = CollectorRunner::new(Arc::new(VecSink::default()), Arc::new(ManualClock::starting_now())).with_max_collectors(2);
    runner.add(TestCollector::new("a", Behaviour::Healthy, scope), CollectorOptions::default()).unwrap();
    let dup = runner.add(TestCollector::new("a", Behaviour::Healthy, scope), CollectorOptions::default()).unwrap_err();
    assert!(matches!(&dup, Error::Core(e) if e.is_conflict()), "{dup:?}");
    assert!(runner.add(TestCollector::new("", Behaviour::Healthy, scope), CollectorOptions::default()).is_err());
    assert!(every(0).build().is_err());
    assert!(CollectorOptions::builder().timeout(Duration::ZERO).build().is_err());
    runner.add(TestCollector::new("b", Behaviour::Healthy, scope), CollectorOptions::default()).unwrap();
    let over = runner.add(TestCollector::new("c", Behaviour::Healthy, scope), CollectorOptions::default()).unwrap_err();
    assert!(over.to_string().contains("at most 2 collectors"), "{over}");
    assert_eq!(runner.len(), 2);
    // The status exists from the start.
    let s = runner.status("a").unwrap();
    assert_eq!((s.name.as_str(), s.failures, s.consecutive_failures), ("a", 0, 0));
    // Dropping the last handle stops the collectors.
    drop(runner);
}

#[test]
fn add_outside_a_runtime_is_an_error_not_a_panic() {
    let runner = CollectorRunner::new(Arc::new(VecSink::default()), Arc::new(ManualClock::starting_now()));
    let err = runner.add(TestCollector::new("a", Behaviour::Healthy, scope()), CollectorOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
