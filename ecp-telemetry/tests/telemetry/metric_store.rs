//! The metric store through its public API: storing, querying, downsampling, retention, project
//! isolation, the cardinality limit (with the process's memory), bad queries, and concurrency.

use std::sync::Arc;
use std::time::Duration;

use ecp_core::{ManualClock, OrgId, ProjectId, Timestamp};
use ecp_telemetry::{
    Aggregation, Labels, MetricName, MetricScope, MetricStore, MetricStoreConfig, Point, RangeQuery, Sample, SampleSink, SeriesKey,
    SeriesSelector,
};
use proptest::prelude::*;

/// Tests in this file run one at a time: the cardinality test measures the process's memory.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn at(base: Timestamp, d: Duration) -> Timestamp {
    base.checked_add(d).unwrap()
}

fn before(base: Timestamp, d: Duration) -> Timestamp {
    base.checked_sub(d).unwrap()
}

fn scope() -> MetricScope {
    MetricScope::new(OrgId::new(), ProjectId::new())
}

fn name(n: &str) -> MetricName {
    MetricName::new(n).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).unwrap()
}

fn sample(scope: MetricScope, n: &str, l: &[(&str, &str)], time: Timestamp, value: f64) -> Sample {
    Sample::new(scope, name(n), labels(l), time, value)
}

fn store_at(
    clock: &ManualClock,
    f: impl FnOnce(ecp_telemetry::store::MetricStoreConfigBuilder) -> ecp_telemetry::store::MetricStoreConfigBuilder,
) -> MetricStore {
    MetricStore::new(f(MetricStoreConfig::builder().clock(Arc::new(clock.clone()))).build().unwrap())
}

fn values(points: &[Point]) -> Vec<(Timestamp, f64)> {
    points.iter().map(|p| (p.time, p.value)).collect()
}

fn is_invalid_input(e: &ecp_telemetry::Error) -> bool {
    matches!(e, ecp_telemetry::Error::Core(ecp_core::Error::InvalidInput { .. }))
}

#[test]
fn insert_latest_and_range_with_each_aggregation() {
    let _serial = SERIAL.lock();
    let now = at(t0(), 12 * HOUR);
    let clock = ManualClock::new(now);
    let store = store_at(&clock, |b| b);
    let (p, q) = (scope(), scope());
    let m0 = before(now, 5 * MIN);
    // Two minutes of samples every 10 s, values 1..=12, written newest-first to exercise ordering.
    let mut samples: Vec<Sample> =
        (0..12).map(|i| sample(p, "cpu", &[("host", "a")], at(m0, Duration::from_secs(10 * i)), (i + 1) as f64)).collect();
    samples.reverse();
    samples.push(sample(p, "cpu", &[("host", "b")], m0, 100.0));
    samples.push(sample(q, "cpu", &[("host", "a")], m0, 1000.0));
    let got = store.accept(&samples);
    assert_eq!((got.stored, got.invalid, got.over_cardinality), (14, 0, 0));

    // Refused: NaN, infinity, older than the raw retention, too far ahead.
    let bad = [
        sample(p, "cpu", &[("host", "a")], now, f64::NAN),
        sample(p, "cpu", &[("host", "a")], now, f64::INFINITY),
        sample(p, "cpu", &[("host", "a")], before(now, 2 * HOUR + Duration::from_secs(1)), 1.0),
        sample(p, "cpu", &[("host", "a")], at(now, 5 * MIN + Duration::from_secs(1)), 1.0),
    ];
    let got = store.accept(&bad);
    assert_eq!((got.stored, got.invalid), (0, 4));
    assert_eq!(store.stats().rejected_invalid, 4);
    // At the edges: exactly the raw retention old, exactly the future allowance ahead.
    let edge = [sample(p, "edge", &[], before(now, 2 * HOUR), 1.0), sample(p, "edge", &[], at(now, 5 * MIN), 2.0)];
    assert_eq!(store.accept(&edge).stored, 2);

    let all = SeriesSelector::metric(name("cpu"));
    let a = SeriesKey::new(p, name("cpu"), labels(&[("host", "a")]));
    let b = SeriesKey::new(p, name("cpu"), labels(&[("host", "b")]));
    assert_eq!(store.series(&p, &all), vec![a.clone(), b.clone()]);
    assert_eq!(store.series(&p, &all.clone().eq("host", "b")), vec![b.clone()]);
    assert_eq!(store.series(&p, &all.clone().not_eq("host", "b")), vec![a.clone()]);
    let latest = store.latest(&p, &all);
    assert_eq!(
        latest,
        vec![(a.clone(), Point { time: at(m0, Duration::from_secs(110)), value: 12.0 }), (b.clone(), Point { time: m0, value: 100.0 })]
    );

    let m1 = at(m0, MIN);
    let expect = [
        (Aggregation::Avg, [3.5, 9.5]),
        (Aggregation::Min, [1.0, 7.0]),
        (Aggregation::Max, [6.0, 12.0]),
        (Aggregation::Sum, [21.0, 57.0]),
        (Aggregation::Last, [6.0, 12.0]),
        (Aggregation::Count, [6.0, 6.0]),
    ];
    let sel = all.clone().eq("host", "a");
    for (agg, [x, y]) in expect {
        let r = store.range(&p, &sel, RangeQuery::new(m0, at(m1, Duration::from_secs(59)), MIN, agg)).unwrap();
        assert_eq!(r.len(), 1, "{agg:?}");
        assert_eq!(r[0].series, a);
        assert_eq!(values(&r[0].points), vec![(m0, x), (m1, y)], "{agg:?}");
    }
    // An unaligned start: the first point is at its step's start but holds only samples from `start`.
    let r = store
        .range(&p, &sel, RangeQuery::new(at(m0, Duration::from_secs(25)), at(m1, Duration::from_secs(15)), MIN, Aggregation::Sum))
        .unwrap();
    assert_eq!(values(&r[0].points), vec![(m0, 4.0 + 5.0 + 6.0), (m1, 7.0 + 8.0)]);
    // A step finer than the samples: one point per sample, on the 5 s grid.
    let r = store.range(&p, &sel, RangeQuery::new(m0, at(m0, Duration::from_secs(20)), Duration::from_secs(5), Aggregation::Last)).unwrap();
    assert_eq!(values(&r[0].points), vec![(m0, 1.0), (at(m0, Duration::from_secs(10)), 2.0), (at(m0, Duration::from_secs(20)), 3.0)]);
    // One step over everything, all series of the metric in the project.
    let r = store.range(&p, &all, RangeQuery::new(before(now, HOUR), now, HOUR, Aggregation::Count)).unwrap();
    assert_eq!(
        r.iter().map(|s| (s.series.clone(), s.points.len(), s.points[0].value)).collect::<Vec<_>>(),
        vec![(a, 1, 12.0), (b, 1, 1.0)]
    );
    // A window without data gives no series.
    assert!(store.range(&p, &all, RangeQuery::new(before(now, MIN), now, MIN, Aggregation::Avg)).unwrap().is_empty());

    // A sample with the time of an existing point replaces it.
    assert_eq!(store.accept(&[sample(p, "cpu", &[("host", "b")], m0, 50.0)]).stored, 1);
    assert_eq!(store.latest(&p, &all.clone().eq("host", "b"))[0].1.value, 50.0);
    let stats = store.stats();
    assert_eq!((stats.series, stats.raw_points, stats.minute_buckets, stats.hour_buckets), (4, 16, 0, 0));
}

#[test]
fn downsampling_raw_to_minute_to_hour_with_exact_aggregates() {
    let _serial = SERIAL.lock();
    let clock = ManualClock::new(t0());
    let store = store_at(&clock, |b| b.raw_retention(10 * MIN).minute_retention(2 * HOUR).hour_retention(24 * HOUR).max_series(1));
    let p = scope();
    let sel = SeriesSelector::metric(name("temp"));
    let empty_bytes = store.stats().approx_bytes;

    // 30 minutes of samples every 10 s, value i, the clock following the samples.
    for i in 0..180u64 {
        let t = at(t0(), Duration::from_secs(10 * i));
        clock.set(t);
        assert_eq!(store.accept(&[sample(p, "temp", &[], t, i as f64)]).stored, 1);
    }
    clock.set(at(t0(), 30 * MIN));
    store.maintain();
    let s = store.stats();
    // Raw keeps the last 10 minutes (60 points); minutes 0..20 are buckets.
    assert_eq!((s.series, s.raw_points, s.minute_buckets, s.hour_buckets), (1, 60, 20, 0));
    assert!(s.approx_bytes > empty_bytes + 60 * 16 + 20 * 48, "{s:?}");

    // Per minute m the samples are 6m..6m+5, whichever tier holds them.
    let per_minute = |agg: Aggregation| -> Vec<(Timestamp, f64)> {
        (0..30u64)
            .map(|m| {
                let lo = 6.0 * m as f64;
                let v = match agg {
                    Aggregation::Avg => lo + 2.5,
                    Aggregation::Min => lo,
                    Aggregation::Max | Aggregation::Last => lo + 5.0,
                    Aggregation::Sum => 6.0 * lo + 15.0,
                    Aggregation::Count => 6.0,
                };
                (at(t0(), MIN * m as u32), v)
            })
            .collect()
    };
    let window = |agg, step| RangeQuery::new(t0(), at(t0(), HOUR), step, agg);
    for agg in [Aggregation::Avg, Aggregation::Min, Aggregation::Max, Aggregation::Sum, Aggregation::Last, Aggregation::Count] {
        let r = store.range(&p, &sel, window(agg, MIN)).unwrap();
        assert_eq!(values(&r[0].points), per_minute(agg), "{agg:?} across raw and minute tiers");
    }

    // An hour later every raw point is a minute bucket.
    clock.set(at(t0(), HOUR));
    assert_eq!(store.maintain(), 0);
    let s = store.stats();
    assert_eq!((s.raw_points, s.minute_buckets, s.hour_buckets), (0, 30, 0));
    for agg in [Aggregation::Avg, Aggregation::Min, Aggregation::Max, Aggregation::Sum, Aggregation::Last, Aggregation::Count] {
        assert_eq!(values(&store.range(&p, &sel, window(agg, MIN)).unwrap()[0].points), per_minute(agg), "{agg:?} from minute buckets");
    }
    // Older than the raw retention: refused. Inside it: stored, and it combines with the minute
    // buckets in one step.
    assert_eq!(store.accept(&[sample(p, "temp", &[], at(t0(), 29 * MIN), 1.0)]).invalid, 1);
    assert_eq!(store.accept(&[sample(p, "temp", &[], at(t0(), 55 * MIN), 1000.0)]).stored, 1);
    let r = store.range(&p, &sel, window(Aggregation::Sum, HOUR)).unwrap();
    assert_eq!(values(&r[0].points), vec![(t0(), 16_110.0 + 1000.0)]);
    let r = store.range(&p, &sel, window(Aggregation::Last, HOUR)).unwrap();
    assert_eq!(values(&r[0].points), vec![(t0(), 1000.0)]);

    // Past the minute retention, the minutes fold into the hour bucket of T0.
    clock.set(at(t0(), 3 * HOUR));
    store.maintain();
    let s = store.stats();
    assert_eq!((s.raw_points, s.minute_buckets, s.hour_buckets), (0, 0, 1));
    let expect = [
        (Aggregation::Avg, 17_110.0 / 181.0),
        (Aggregation::Min, 0.0),
        (Aggregation::Max, 1000.0),
        (Aggregation::Sum, 17_110.0),
        (Aggregation::Last, 1000.0),
        (Aggregation::Count, 181.0),
    ];
    for (agg, v) in expect {
        let r = store.range(&p, &sel, window(agg, HOUR)).unwrap();
        assert_eq!(values(&r[0].points), vec![(t0(), v)], "{agg:?} from the hour bucket");
    }
    // A finer step than the bucket: the bucket appears once, at the step of its start (or of the
    // window's start when it began earlier).
    let r = store.range(&p, &sel, RangeQuery::new(t0(), at(t0(), 2 * HOUR), MIN, Aggregation::Count)).unwrap();
    assert_eq!(values(&r[0].points), vec![(t0(), 181.0)]);
    let r = store.range(&p, &sel, RangeQuery::new(at(t0(), 10 * MIN), at(t0(), 2 * HOUR), MIN, Aggregation::Count)).unwrap();
    assert_eq!(values(&r[0].points), vec![(at(t0(), 10 * MIN), 181.0)]);
    assert_eq!(store.latest(&p, &sel)[0].1, Point { time: at(t0(), 55 * MIN), value: 1000.0 });

    // The hour bucket expires once its end is older than the hour retention; the series goes.
    clock.set(at(t0(), 25 * HOUR - Duration::from_secs(1)));
    assert_eq!(store.maintain(), 0);
    assert_eq!(store.stats().series, 1);
    clock.set(at(t0(), 25 * HOUR));
    assert_eq!(store.maintain(), 1);
    let s = store.stats();
    assert_eq!((s.series, s.raw_points, s.minute_buckets, s.hour_buckets), (0, 0, 0, 0));
    assert_eq!(s.approx_bytes, empty_bytes, "every byte accounted for is given back");
    assert!(store.series(&p, &sel).is_empty());
    assert!(store.latest(&p, &sel).is_empty());
    assert!(store.range(&p, &sel, RangeQuery::new(t0(), at(t0(), 25 * HOUR), HOUR, Aggregation::Sum)).unwrap().is_empty());
}

#[test]
fn retention_frees_series_slots() {
    let _serial = SERIAL.lock();
    let clock = ManualClock::new(t0());
    let store = store_at(&clock, |b| b.raw_retention(MIN).minute_retention(MIN).hour_retention(HOUR).max_series(2));
    let p = scope();
    assert_eq!(store.accept(&[sample(p, "a", &[], t0(), 1.0), sample(p, "b", &[], t0(), 1.0)]).stored, 2);
    let got = store.accept(&[sample(p, "c", &[], t0(), 1.0)]);
    assert_eq!((got.stored, got.over_cardinality), (0, 1));
    // Existing series keep taking samples at the limit.
    assert_eq!(store.accept(&[sample(p, "a", &[], at(t0(), Duration::from_secs(1)), 2.0)]).stored, 1);

    // Series "a" and "b" expire after 2 hours (raw 1 min, minutes 1 min, the hour bucket 1 h).
    clock.set(at(t0(), 2 * HOUR));
    assert_eq!(store.maintain(), 2);
    assert_eq!(store.stats().series, 0);
    assert_eq!(store.accept(&[sample(p, "c", &[], at(t0(), 2 * HOUR), 1.0), sample(p, "d", &[], at(t0(), 2 * HOUR), 1.0)]).stored, 2);
    assert_eq!(store.stats().series, 2);
    assert_eq!(store.stats().rejected_cardinality, 1);
}

#[test]
fn per_project_limit_and_remove_project() {
    let _serial = SERIAL.lock();
    let clock = ManualClock::new(t0());
    let store = store_at(&clock, |b| b.max_series(10).max_series_per_project(Some(2)));
    let (p, q) = (scope(), scope());
    let got = store.accept(&[
        sample(p, "m", &[("i", "1")], t0(), 1.0),
        sample(p, "m", &[("i", "2")], t0(), 1.0),
        sample(p, "m", &[("i", "3")], t0(), 1.0),
    ]);
    assert_eq!((got.stored, got.over_cardinality), (2, 1));
    assert_eq!(store.accept(&[sample(q, "m", &[("i", "3")], t0(), 1.0)]).stored, 1);
    let sel = SeriesSelector::metric(name("m"));
    assert_eq!(store.series(&p, &sel).len(), 2);

    let empty = MetricStore::new(MetricStoreConfig::builder().clock(Arc::new(clock.clone())).build().unwrap()).stats().approx_bytes;
    assert_eq!(store.remove_project(p.project), 2);
    assert!(store.series(&p, &sel).is_empty());
    assert_eq!(store.series(&q, &sel).len(), 1);
    assert_eq!(store.stats().series, 1);
    assert_eq!(store.remove_project(q.project), 1);
    let s = store.stats();
    assert_eq!((s.series, s.raw_points, s.approx_bytes), (0, 0, empty));
    // The slots are free again.
    assert_eq!(store.accept(&[sample(p, "m", &[("i", "3")], t0(), 1.0), sample(p, "m", &[("i", "4")], t0(), 1.0)]).stored, 2);
}

/// Resident set size of this process, from /proc/self/statm (pages of 4 KiB, the page size of the
/// Linux targets this runs on).
fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn a_flood_of_new_series_stops_at_the_cardinality_limit_with_bounded_memory() {
    let _serial = SERIAL.lock();
    const LIMIT: usize = 100_000;
    const FLOOD: usize = 1_000_000;
    const BATCH: usize = 1_000;
    let clock = ManualClock::new(t0());
    let store = store_at(&clock, |b| b.max_series(LIMIT));
    let p = scope();
    let metric = name("flood_metric");
    let rss_before = rss_bytes();

    let (mut stored, mut over) = (0, 0);
    for batch in 0..FLOOD / BATCH {
        let samples: Vec<Sample> = (0..BATCH)
            .map(|i| {
                let id = (batch * BATCH + i).to_string();
                Sample::new(p, metric.clone(), Labels::new([("id", id.as_str())]).unwrap(), t0(), 1.0)
            })
            .collect();
        let got = store.accept(&samples);
        assert_eq!(got.invalid, 0);
        stored += got.stored;
        over += got.over_cardinality;
    }
    let rss_after = rss_bytes();
    let s = store.stats();
    assert_eq!((stored, over), (LIMIT, FLOOD - LIMIT));
    assert_eq!(s.series, LIMIT);
    assert_eq!(s.raw_points, LIMIT);
    assert_eq!(s.rejected_cardinality, (FLOOD - LIMIT) as u64);
    // Existing series were not evicted and still take samples; new ones are still refused.
    let again = store.accept(&[
        Sample::new(p, metric.clone(), Labels::new([("id", "0")]).unwrap(), at(t0(), Duration::from_secs(1)), 2.0),
        Sample::new(p, metric.clone(), Labels::new([("id", "new")]).unwrap(), t0(), 2.0),
    ]);
    assert_eq!((again.stored, again.over_cardinality), (1, 1));

    // The estimate: each series holds labels {id="<up to 6 digits>"} (Labels::heap_size plus the
    // slice's elements), its name, a map entry with slack, and a raw buffer of 4 points.
    let labels_heap = Labels::new([("id", "999999")]).unwrap().heap_size() + 32;
    let per_series_bound = labels_heap + "flood_metric".len() + 16 + 2 * 512 + 4 * 16;
    let bound = LIMIT * per_series_bound;
    assert!(s.approx_bytes <= bound, "approx_bytes {} above the computed bound {bound}", s.approx_bytes);
    assert!(s.approx_bytes >= LIMIT * (labels_heap + 4 * 16), "approx_bytes {} is not honest", s.approx_bytes);

    if let (Some(rss_before), Some(rss_after)) = (rss_before, rss_after) {
        let growth = rss_after.saturating_sub(rss_before);
        println!(
            "cardinality flood: {FLOOD} new series offered, {LIMIT} kept; rss growth {:.1} MiB; approx_bytes {:.1} MiB ({} B/series)",
            growth as f64 / (1 << 20) as f64,
            s.approx_bytes as f64 / (1 << 20) as f64,
            s.approx_bytes / LIMIT
        );
        assert!(growth < 200 << 20, "rss grew by {growth} bytes for {LIMIT} series");
        // The estimate is honest: the memory really held is not far beyond it.
        assert!(growth <= 2 * s.approx_bytes + (32 << 20), "rss grew by {growth} bytes, approx_bytes says {}", s.approx_bytes);
    } else {
        println!("cardinality flood: /proc/self/statm unreadable, rss not measured");
    }
}

#[test]
fn bad_range_queries_are_invalid_input() {
    let _serial = SERIAL.lock();
    let clock = ManualClock::new(t0());
    let store = store_at(&clock, |b| b.max_range_points(5));
    let p = scope();
    let sel = SeriesSelector::metric(name("m"));
    let samples: Vec<Sample> = (0..6).map(|i| sample(p, "m", &[("i", &i.to_string())], t0(), 1.0)).collect();
    assert_eq!(store.accept(&samples).stored, 6);

    let q = |start: Timestamp, end: Timestamp, step: Duration| {
        store.range(&p, &sel.clone().eq("i", "0"), RangeQuery::new(start, end, step, Aggregation::Avg))
    };
    let end_before_start = q(t0(), before(t0(), MIN), MIN).unwrap_err();
    assert!(is_invalid_input(&end_before_start), "{end_before_start}");
    assert!(end_before_start.to_string().contains("end is before start"), "{end_before_start}");
    assert!(is_invalid_input(&q(t0(), t0(), Duration::ZERO).unwrap_err()));
    assert!(is_invalid_input(&q(t0(), t0(), Duration::MAX).unwrap_err()));
    // 11 000 steps are fine, 11 001 are not.
    assert!(q(before(t0(), Duration::from_secs(10_999)), t0(), Duration::from_secs(1)).is_ok());
    let too_many = q(before(t0(), Duration::from_secs(11_000)), t0(), Duration::from_secs(1)).unwrap_err();
    assert!(is_invalid_input(&too_many) && too_many.to_string().contains("11001 steps"), "{too_many}");
    // An answer beyond max_range_points.
    let wide = store.range(&p, &sel, RangeQuery::new(t0(), t0(), MIN, Aggregation::Avg)).unwrap_err();
    assert!(is_invalid_input(&wide), "{wide}");
    assert_eq!(store.range(&p, &sel.clone().not_eq("i", "0"), RangeQuery::new(t0(), t0(), MIN, Aggregation::Avg)).unwrap().len(), 5);
}

#[test]
fn configs_are_validated() {
    let b = MetricStoreConfig::builder;
    for bad in [
        b().raw_retention(Duration::ZERO),
        b().raw_retention(3 * HOUR).minute_retention(2 * HOUR),
        b().minute_retention(31 * 24 * HOUR),
        b().hour_retention(100 * 366 * 24 * HOUR),
        b().max_series(0),
        b().max_series_per_project(Some(0)),
        b().max_raw_points_per_series(0),
        b().max_raw_points_per_series(usize::MAX),
        b().max_future(Duration::MAX),
        b().max_range_points(0),
    ] {
        let e = bad.build().unwrap_err();
        assert!(is_invalid_input(&e), "{e}");
    }
    let c = b().build().unwrap();
    assert_eq!((c.raw_retention(), c.minute_retention(), c.hour_retention()), (2 * HOUR, 48 * HOUR, 30 * 24 * HOUR));
    assert_eq!((c.max_series(), c.max_series_per_project(), c.max_raw_points_per_series(), c.max_future()), (100_000, None, 720, 5 * MIN));
}

#[test]
fn raw_points_per_series_are_bounded() {
    let _serial = SERIAL.lock();
    let clock = ManualClock::new(at(t0(), HOUR));
    let store = store_at(&clock, |b| b.max_raw_points_per_series(10));
    let p = scope();
    let samples: Vec<Sample> = (0..600u64).map(|i| sample(p, "m", &[], at(t0(), Duration::from_secs(i)), i as f64)).collect();
    assert_eq!(store.accept(&samples).stored, 600);
    let s = store.stats();
    // The newest 10 stay raw; the other 590 seconds fold into their minutes (0..9).
    assert_eq!((s.raw_points, s.minute_buckets), (10, 10));
    let sel = SeriesSelector::metric(name("m"));
    let r = store.range(&p, &sel, RangeQuery::new(t0(), at(t0(), HOUR), HOUR, Aggregation::Count)).unwrap();
    assert_eq!(values(&r[0].points), vec![(t0(), 600.0)]);
    let r = store.range(&p, &sel, RangeQuery::new(t0(), at(t0(), HOUR), HOUR, Aggregation::Sum)).unwrap();
    assert_eq!(values(&r[0].points), vec![(t0(), (0..600).sum::<u64>() as f64)]);
}

/// A runtime of its own, so the serializing lock is held outside any future.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

#[test]
fn concurrent_writers_and_readers_lose_no_samples() {
    let _serial = SERIAL.lock();
    runtime().block_on(concurrent_writers_and_readers());
}

async fn concurrent_writers_and_readers() {
    const WRITERS: u64 = 8;
    const SERIES: usize = 20;
    const PER_WRITER: u64 = 100;
    let now = at(t0(), HOUR);
    let clock = ManualClock::new(now);
    let store = Arc::new(store_at(&clock, |b| b.max_raw_points_per_series(10_000)));
    let p = scope();
    let start = before(now, 30 * MIN);

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut stored = 0;
                for k in 0..PER_WRITER {
                    // Every writer writes every series, at times interleaved with the others'.
                    let t = at(start, Duration::from_millis(k * WRITERS + w));
                    let batch: Vec<Sample> = (0..SERIES).map(|s| sample(p, "load", &[("s", &s.to_string())], t, 1.0)).collect();
                    stored += store.accept(&batch).stored;
                    tokio::task::yield_now().await;
                }
                stored
            })
        })
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let sel = SeriesSelector::metric(name("load"));
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    assert!(store.series(&p, &sel).len() <= SERIES);
                    let _ = store.latest(&p, &sel);
                    let r = store.range(&p, &sel, RangeQuery::new(start, now, HOUR, Aggregation::Count)).unwrap();
                    assert!(r.iter().all(|s| s.points.iter().all(|pt| pt.value <= (WRITERS * PER_WRITER) as f64)));
                    // Maintenance runs alongside (nothing is old enough to fold).
                    assert_eq!(store.maintain(), 0);
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    let mut stored = 0;
    for w in writers {
        stored += w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    let total = WRITERS as usize * PER_WRITER as usize * SERIES;
    assert_eq!(stored, total);
    assert_eq!(store.stats().raw_points, total);
    let sel = SeriesSelector::metric(name("load"));
    let r = store.range(&p, &sel, RangeQuery::new(start, now, HOUR, Aggregation::Count)).unwrap();
    assert_eq!(r.len(), SERIES);
    assert!(r.iter().all(|s| values(&s.points) == vec![(t0(), (WRITERS * PER_WRITER) as f64)]));
    // The interleaved times were stored in order: the newest point is the last writer's last write.
    let latest = store.latest(&p, &sel);
    assert!(latest.iter().all(|(_, pt)| pt.time == at(start, Duration::from_millis((PER_WRITER - 1) * WRITERS + WRITERS - 1))));
}

#[test]
fn spawned_maintenance_expires_data() {
    let _serial = SERIAL.lock();
    runtime().block_on(spawned_maintenance());
}

async fn spawned_maintenance() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(store_at(&clock, |b| b.raw_retention(MIN).minute_retention(MIN).hour_retention(HOUR)));
    let p = scope();
    assert_eq!(store.accept(&[sample(p, "m", &[], t0(), 1.0)]).stored, 1);
    let task = store.spawn_maintenance(Duration::from_millis(10));
    clock.set(at(t0(), 3 * HOUR));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.stats().series > 0 {
        assert!(tokio::time::Instant::now() < deadline, "maintenance did not run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The task ends with the store.
    drop(store);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[derive(Debug, Clone)]
struct Gen {
    project: usize,
    metric: usize,
    host: usize,
    secs: u64,
    value: f64,
}

fn gen_sample() -> impl Strategy<Value = Gen> {
    (0..3usize, 0..2usize, 0..3usize, 0..600u64, -1e6..1e6f64).prop_map(|(project, metric, host, secs, value)| Gen {
        project,
        metric,
        host,
        secs,
        value,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A selector in one project never returns another project's series, whatever the names and
    /// labels; and it returns exactly the project's matching series.
    #[test]
    fn queries_never_cross_projects(gens in prop::collection::vec(gen_sample(), 1..120), host_filter in prop::option::of(0..3usize)) {
        let _serial = SERIAL.lock();
        let now = at(t0(), HOUR);
        let clock = ManualClock::new(now);
        let store = store_at(&clock, |b| b);
        let org = OrgId::new();
        // Two projects of one org and one of another, all with the same metric names and labels.
        let scopes = [MetricScope::new(org, ProjectId::new()), MetricScope::new(org, ProjectId::new()), scope()];
        let metrics = ["up", "cpu"];
        let samples: Vec<Sample> = gens.iter().map(|g| sample(scopes[g.project], metrics[g.metric], &[("host", &g.host.to_string())], before(now, Duration::from_secs(g.secs)), g.value)).collect();
        prop_assert_eq!(store.accept(&samples).stored, samples.len());
        for (pi, sc) in scopes.iter().enumerate() {
            for (mi, m) in metrics.iter().enumerate() {
                let mut sel = SeriesSelector::metric(name(m));
                if let Some(h) = host_filter {
                    sel = sel.eq("host", &h.to_string());
                }
                let mut expected: Vec<SeriesKey> = gens.iter()
                    .filter(|g| g.project == pi && g.metric == mi && host_filter.is_none_or(|h| h == g.host))
                    .map(|g| SeriesKey::new(*sc, name(m), labels(&[("host", &g.host.to_string())])))
                    .collect();
                expected.sort();
                expected.dedup();
                prop_assert_eq!(store.series(sc, &sel), expected.clone());
                let latest: Vec<SeriesKey> = store.latest(sc, &sel).into_iter().map(|(k, _)| k).collect();
                prop_assert_eq!(&latest, &expected);
                let range = store.range(sc, &sel, RangeQuery::new(before(now, HOUR), now, HOUR, Aggregation::Count)).unwrap();
                prop_assert!(range.iter().all(|r| r.series.scope == *sc));
                prop_assert_eq!(range.iter().map(|r| r.series.clone()).collect::<Vec<_>>(), expected.clone());
                let counted: f64 = range.iter().flat_map(|r| r.points.iter().map(|p| p.value)).sum();
                let model = gens.iter().filter(|g| g.project == pi && g.metric == mi && host_filter.is_none_or(|h| h == g.host))
                    .map(|g| (g.host, g.secs)).collect::<std::collections::BTreeSet<_>>().len();
                prop_assert_eq!(counted, model as f64);
            }
        }
    }
}
