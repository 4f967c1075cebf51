//! Telemetry hot paths, each against its baseline in the same run:
//! - ingest: `MetricStore::accept` of batches of 1,000 samples over 10,000 existing series, against
//!   pushing the same batches into a `HashMap<SeriesKey, VecDeque<(i64, f64)>>` behind a
//!   `parking_lot::Mutex` (bounded at the store's 720 raw points per series, so memory stays flat);
//! - Prometheus text: `prom::parse` of a 10,000-sample body, against splitting lines and parsing
//!   the value after the last space with `str::parse::<f64>` (the floor of any parser);
//! - alarms: one `AlarmEngine::evaluate` of one threshold rule over 100,000 series of one project,
//!   against `MetricStore::latest` over the same selector plus a comparison loop (what evaluation
//!   must at least read).

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ecp_core::access::{Authorizer, Denial, Permission, Principal, ResourceKind, Scope, Visibility};
use ecp_core::prelude::*;
use ecp_core::{AuditEvent, ManualClock, Operation, OrgId, Organization, Project, ProjectId, SqlStore, TenancyLimits, Timestamp};
use ecp_telemetry::alarm::{AlarmConfig, AlarmEngine, AlarmRule, Alarms, Comparison, Condition, MetricReader};
use ecp_telemetry::{
    Labels, MetricName, MetricScope, MetricStore, MetricStoreConfig, Sample, SampleSink, SeriesKey, SeriesSelector, Severity,
};

const STEP: Duration = Duration::from_secs(15);
const RAW_POINTS: usize = 720;

fn start() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn scope() -> MetricScope {
    MetricScope::new(OrgId::new(), ProjectId::new())
}

/// `n` series of `metric`, spread over 100 nodes like the collectors label them.
fn keys(scope: MetricScope, metric: &str, n: usize) -> Vec<SeriesKey> {
    let name = MetricName::new(metric).unwrap();
    (0..n)
        .map(|i| {
            let node = format!("emqx@10.0.{}.{}", i % 100 / 10, i % 10);
            let topic = format!("plant/line-{}/sensor-{i}", i % 37);
            SeriesKey::new(
                scope,
                name.clone(),
                Labels::new([("node", node.as_str()), ("source", "emqx"), ("topic", topic.as_str())]).unwrap(),
            )
        })
        .collect()
}

// --- ingest ----------------------------------------------------------------------------------------

/// The floor: one lock, one hash lookup and one push per sample, bounded like the store's raw points.
struct Floor(parking_lot::Mutex<HashMap<SeriesKey, VecDeque<(i64, f64)>>>);

impl Floor {
    fn accept(&self, samples: &[Sample]) -> usize {
        let mut map = self.0.lock();
        for s in samples {
            let v = map.entry(s.series.clone()).or_default();
            if v.len() == RAW_POINTS {
                v.pop_front();
            }
            v.push_back((s.time.as_microsecond(), s.value));
        }
        samples.len()
    }
}

/// Rounds through 10 batches of 1,000 samples (one per series), moving time one step per round.
struct Feed {
    clock: ManualClock,
    batches: Vec<Vec<Sample>>,
    next: usize,
    round: i64,
}

impl Feed {
    fn new(keys: &[SeriesKey]) -> Self {
        let batches =
            keys.chunks(1_000).map(|c| c.iter().map(|k| Sample { series: k.clone(), time: start(), value: 1.0 }).collect()).collect();
        Feed { clock: ManualClock::new(start()), batches, next: 0, round: 0 }
    }

    /// The next batch, stamped with the current round's time.
    fn batch(&mut self) -> &[Sample] {
        if self.next == self.batches.len() {
            self.next = 0;
            self.round += 1;
            self.clock.advance(STEP);
        }
        let now = self.clock.now();
        let batch = &mut self.batches[self.next];
        self.next += 1;
        let v = self.round as f64;
        for (i, s) in batch.iter_mut().enumerate() {
            s.time = now;
            s.value = v + i as f64;
        }
        batch
    }
}

fn ingest(c: &mut Criterion) {
    let keys = keys(scope(), "emqx_messages_received", 10_000);
    let mut g = c.benchmark_group("telemetry/ingest_1000_of_10000_series");
    g.throughput(Throughput::Elements(1_000));

    let mut feed = Feed::new(&keys);
    let floor = Floor(parking_lot::Mutex::new(HashMap::new()));
    for _ in 0..feed.batches.len() {
        floor.accept(feed.batch());
    }
    g.bench_function("HashMap behind Mutex (baseline)", |b| b.iter(|| floor.accept(black_box(feed.batch()))));

    let mut feed = Feed::new(&keys);
    let config = MetricStoreConfig::builder().clock(Arc::new(feed.clock.clone())).build().unwrap();
    let store = MetricStore::new(config);
    for _ in 0..feed.batches.len() {
        assert_eq!(store.accept(feed.batch()).stored, 1_000);
    }
    g.bench_function("MetricStore::accept", |b| b.iter(|| store.accept(black_box(feed.batch()))));
    g.finish();
    assert_eq!(store.stats().series, 10_000);
}

// --- Prometheus text -------------------------------------------------------------------------------

/// 100 families of 100 series each (10,000 sample lines), with HELP and TYPE lines.
fn exposition() -> String {
    use std::fmt::Write;
    let mut body = String::new();
    for f in 0..100 {
        let kind = if f % 2 == 0 { "counter" } else { "gauge" };
        let _ = writeln!(body, "# HELP emqx_metric_{f}_total Metric number {f} of the broker.\n# TYPE emqx_metric_{f}_total {kind}");
        for s in 0..100 {
            let _ = writeln!(
                body,
                "emqx_metric_{f}_total{{node=\"emqx@10.0.0.{s}\",cluster=\"plant-a\",listener=\"tcp:{s}\"}} {}.{}",
                f * 1_000 + s,
                s % 7
            );
        }
    }
    body
}

/// The floor of any parser: the value after the last space of each sample line.
fn floor_parse(body: &str) -> f64 {
    let mut sum = 0.0;
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some((_, v)) = line.rsplit_once(' ')
            && let Ok(v) = v.parse::<f64>()
        {
            sum += v;
        }
    }
    sum
}

fn prom_text(c: &mut Criterion) {
    let body = exposition();
    let limits = ecp_telemetry::prom::ParseLimits::default();
    let parsed = ecp_telemetry::prom::parse(body.as_bytes(), &limits).unwrap();
    assert_eq!(parsed.samples.len(), 10_000);
    assert!(parsed.skipped.is_empty());

    let mut g = c.benchmark_group("telemetry/prom_parse_10000_samples");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("lines + f64 parse (baseline)", |b| b.iter(|| floor_parse(black_box(&body))));
    g.bench_function("prom::parse", |b| b.iter(|| ecp_telemetry::prom::parse(black_box(body.as_bytes()), &limits).unwrap()));
    g.finish();
}

// --- alarms ----------------------------------------------------------------------------------------

/// Allows the system principal everything.
#[derive(Debug)]
struct SystemOnly;

impl Authorizer for SystemOnly {
    fn check(&self, p: &Principal, _perm: Permission, _scope: &Scope) -> Result<(), Denial> {
        if p.is_system() { Ok(()) } else { Err(Denial::NotGranted) }
    }
    fn has_access(&self, p: &Principal, _scope: &Scope) -> bool {
        p.is_system()
    }
    fn visibility(&self, _p: &Principal, _perm: Permission) -> Visibility {
        Visibility::default()
    }
}

const ALARM_SERIES: usize = 100_000;
const THRESHOLD: f64 = 1e9;

fn alarms(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let clock = ManualClock::new(start());
    let config = MetricStoreConfig::builder().clock(Arc::new(clock.clone())).max_series(2 * ALARM_SERIES).build().unwrap();
    let store = Arc::new(MetricStore::new(config));
    let engine = AlarmEngine::new(store.clone() as Arc<dyn MetricReader>, Arc::new(clock.clone()), AlarmConfig::default()).unwrap();
    let selector = SeriesSelector::metric(MetricName::new("neuron_tag_value").unwrap());

    let scope = rt.block_on(async {
        let db = Arc::new(SqlStore::memory().await.unwrap());
        let ev = |op: &str| AuditEvent::new(&Principal::system("bench"), ResourceKind::Organization, Operation::new(op).unwrap());
        let org = Organization::new("acme", clock.now()).unwrap();
        db.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
        let project = Project::new(org.id, "plant", clock.now()).unwrap();
        db.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
        let alarms = Alarms::new(engine.clone(), db, Arc::new(SystemOnly));
        let admin = alarms.project(&Principal::system("bench"), project.id()).await.unwrap();
        for r in admin.rules().unwrap() {
            if r.enabled {
                admin.set_rule_enabled(r.id, false).await.unwrap();
            }
        }
        let cond = Condition::Threshold { selector: selector.clone(), comparison: Comparison::Gt, threshold: THRESHOLD };
        admin.create_rule(AlarmRule::new("tag too high", cond, Severity::Critical)).await.unwrap();
        MetricScope::new(org.id, project.id())
    });

    let keys = keys(scope, "neuron_tag_value", ALARM_SERIES);
    for chunk in keys.chunks(10_000) {
        let batch: Vec<Sample> =
            chunk.iter().enumerate().map(|(i, k)| Sample { series: k.clone(), time: clock.now(), value: i as f64 }).collect();
        assert_eq!(store.accept(&batch).stored, batch.len());
    }
    assert_eq!(store.latest(&scope, &selector).len(), ALARM_SERIES);

    let mut g = c.benchmark_group("telemetry/alarm_evaluate_100000_series");
    g.sample_size(20);
    g.throughput(Throughput::Elements(ALARM_SERIES as u64));
    g.bench_function("MetricStore::latest + compare (baseline)", |b| {
        b.iter(|| {
            let latest = store.latest(&scope, black_box(&selector));
            latest.iter().filter(|(_, p)| p.value > THRESHOLD).count()
        })
    });
    g.bench_function("AlarmEngine::evaluate", |b| b.iter(|| engine.evaluate()));
    g.finish();
    let stats = engine.stats();
    assert_eq!((stats.fired, stats.instances_over_limit), (0, 0), "a healthy rule over all series");
}

criterion_group!(benches, ingest, prom_text, alarms);
criterion_main!(benches);
