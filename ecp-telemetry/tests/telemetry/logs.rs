//! Log records, the in-memory store and its queries, and the syslog sink against real loopback
//! UDP and TCP servers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ecp_core::{Clock, ManualClock, OrgId, ProjectId, Timestamp};
use ecp_telemetry::MetricScope;
use ecp_telemetry::logs::{
    DEFAULT_QUERY_LIMIT, Facility, Level, LogCursor, LogQuery, LogRecord, LogScope, LogSink, LogStore, LogStoreConfig, MAX_FIELDS,
    MAX_MESSAGE_LEN, MAX_QUERY_LIMIT, Product, SD_ID, SD_ID_FIELDS, SyslogConfig, SyslogNetwork, SyslogSink, TRUNCATED_MARKER,
};
use proptest::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

fn scope() -> MetricScope {
    MetricScope::new(OrgId::new(), ProjectId::new())
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new("2026-12-01T12:00:00Z".parse().unwrap()))
}

fn store(clock: &Arc<ManualClock>) -> LogStore {
    LogStore::new(LogStoreConfig::builder().build().unwrap(), clock.clone())
}

fn ago(clock: &ManualClock, secs: i64) -> Timestamp {
    ecp_core::clock::sub(clock.now(), Duration::from_secs(secs as u64))
}

fn rec(time: Timestamp, level: Level, product: Product, service: &str, message: &str, s: MetricScope) -> LogRecord {
    LogRecord::new(time, level, product, service, message).with_scope(s)
}

fn messages(v: &[LogRecord]) -> Vec<&str> {
    v.iter().map(|r| r.message.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Queries

#[tokio::test]
async fn each_filter_and_their_combination() {
    let clock = clock();
    let store = store(&clock);
    let a = scope();
    let records = vec![
        rec(ago(&clock, 50), Level::Error, Product::Emqx, "prod-1", "listener tcp:default FAILED to start", a),
        rec(ago(&clock, 40), Level::Warning, Product::Emqx, "prod-2", "high memory", a),
        rec(ago(&clock, 30), Level::Informational, Product::NeuronEx, "gw-7", "driver modbus started", a),
        rec(ago(&clock, 20), Level::Critical, Product::NeuronEx, "gw-7", "driver modbus failed: timeout", a),
        rec(ago(&clock, 10), Level::Debug, Product::Ekuiper, "gw-7", "rule r1 failed to decode", a),
        rec(ago(&clock, 5), Level::Notice, Product::Other("my-gw".into()), "x-1", "started", a),
    ];
    store.write(&records).await.unwrap();
    let q = || LogQuery::new(LogScope::Project(a));

    assert_eq!(
        messages(&store.query(&q()).unwrap()),
        [
            "started",
            "rule r1 failed to decode",
            "driver modbus failed: timeout",
            "driver modbus started",
            "high memory",
            "listener tcp:default FAILED to start"
        ]
    );
    // keyword: case-insensitive substring of the message
    assert_eq!(
        messages(&store.query(&q().keyword("fail")).unwrap()),
        ["rule r1 failed to decode", "driver modbus failed: timeout", "listener tcp:default FAILED to start"]
    );
    assert!(store.query(&q().keyword("nothing like it")).unwrap().is_empty());
    // product
    assert_eq!(
        messages(&store.query(&q().product(Product::NeuronEx)).unwrap()),
        ["driver modbus failed: timeout", "driver modbus started"]
    );
    assert_eq!(messages(&store.query(&q().product(Product::parse("my-gw").unwrap())).unwrap()), ["started"]);
    // service
    assert_eq!(store.query(&q().service("gw-7")).unwrap().len(), 3);
    assert!(store.query(&q().service("gw")).unwrap().is_empty(), "service matches exactly");
    // level: at that level or more severe
    assert_eq!(
        messages(&store.query(&q().min_level(Level::Error)).unwrap()),
        ["driver modbus failed: timeout", "listener tcp:default FAILED to start"]
    );
    assert_eq!(store.query(&q().min_level(Level::Warning)).unwrap().len(), 3);
    assert_eq!(store.query(&q().min_level(Level::Debug)).unwrap().len(), 6);
    // dates: from inclusive, to exclusive
    assert_eq!(messages(&store.query(&q().between(ago(&clock, 40), ago(&clock, 20))).unwrap()), ["driver modbus started", "high memory"]);
    let mut open_to = q();
    open_to.from = Some(ago(&clock, 10));
    assert_eq!(store.query(&open_to).unwrap().len(), 2);
    // combined
    let combined =
        q().keyword("FAIL").product(Product::NeuronEx).service("gw-7").min_level(Level::Error).between(ago(&clock, 60), clock.now());
    assert_eq!(messages(&store.query(&combined).unwrap()), ["driver modbus failed: timeout"]);
    let combined_none = q().keyword("fail").product(Product::Ekuiper).min_level(Level::Error);
    assert!(store.query(&combined_none).unwrap().is_empty());
    // limits are checked
    assert!(store.query(&q().limit(0)).is_err());
    assert!(store.query(&q().limit(MAX_QUERY_LIMIT + 1)).is_err());
    assert!(store.query(&q().keyword("k".repeat(10_000))).is_err());
    assert_eq!(store.query(&q().limit(MAX_QUERY_LIMIT)).unwrap().len(), 6);
}

#[tokio::test]
async fn newest_first_default_100_and_out_of_order_arrival() {
    let clock = clock();
    let store = store(&clock);
    let a = scope();
    // 250 records, written in a scrambled order of time.
    let mut times: Vec<i64> = (0..250).collect();
    times.sort_by_key(|i| (i * 7919) % 250);
    let batch: Vec<_> =
        times.iter().map(|i| rec(ago(&clock, 1000 - i), Level::Informational, Product::Ecp, "api", &format!("m{i}"), a)).collect();
    for chunk in batch.chunks(17) {
        store.write(chunk).await.unwrap();
    }
    let got = store.query(&LogQuery::new(LogScope::Project(a))).unwrap();
    assert_eq!(got.len(), DEFAULT_QUERY_LIMIT);
    assert_eq!(got[0].message, "m249");
    assert_eq!(got[99].message, "m150");
    assert!(got.windows(2).all(|w| w[0].time > w[1].time), "newest first");
}

#[tokio::test]
async fn paging_walks_every_record_once_even_with_equal_times() {
    let clock = clock();
    let store = store(&clock);
    let a = scope();
    // 5 records per second for 40 seconds: page boundaries fall inside runs of equal times.
    let batch: Vec<_> = (0..200).map(|i| rec(ago(&clock, 100 - i / 5), Level::Error, Product::Emqx, "c", &format!("m{i}"), a)).collect();
    store.write(&batch).await.unwrap();
    let mut seen = Vec::new();
    let mut q = LogQuery::new(LogScope::Project(a)).limit(33);
    loop {
        let page = store.page(&q).unwrap();
        seen.extend(page.records.iter().map(|r| r.message.clone()));
        match page.next {
            // The cursor survives a trip through its text form, as through an HTTP API.
            Some(c) => q = q.before(c.to_string().parse::<LogCursor>().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 200);
    let mut expected: Vec<_> = (0..200).map(|i| format!("m{i}")).collect();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, ties in arrival order reversed, none twice");
    assert!("garbage".parse::<LogCursor>().is_err());
}

#[tokio::test]
async fn control_plane_records_are_their_own_scope() {
    let clock = clock();
    let store = store(&clock);
    let a = scope();
    store
        .write(&[
            LogRecord::new(clock.now(), Level::Warning, Product::Ecp, "scheduler", "task 7 retried"),
            rec(clock.now(), Level::Error, Product::Emqx, "c", "tenant", a),
        ])
        .await
        .unwrap();
    assert_eq!(messages(&store.query(&LogQuery::new(LogScope::ControlPlane)).unwrap()), ["task 7 retried"]);
    assert_eq!(messages(&store.query(&LogQuery::new(LogScope::of(Some(a)))).unwrap()), ["tenant"]);
    assert!(store.query(&LogQuery::new(LogScope::Project(scope()))).unwrap().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random records in random projects (some sharing an org): a query for one project never
    /// returns another's, whatever the filters, and returns all of its own that match.
    #[test]
    fn a_query_never_crosses_projects(
        records in prop::collection::vec((0usize..4, 0u8..8, 0usize..3, 0i64..500, "[a-zA-Z ]{0,12}"), 0..120),
        target in 0usize..4,
        min_level in prop::option::of(0u8..8),
        keyword in prop::option::of("[a-z]{1,2}"),
        limit in 1usize..50,
    ) {
        let org = OrgId::new();
        let scopes = [MetricScope::new(org, ProjectId::new()), MetricScope::new(org, ProjectId::new()), MetricScope::new(OrgId::new(), ProjectId::new()), MetricScope::new(OrgId::new(), ProjectId::new())];
        let products = [Product::Emqx, Product::NeuronEx, Product::NanoMq];
        let clock = clock();
        let store = store(&clock);
        let batch: Vec<_> = records.iter().map(|(p, l, prod, t, m)| rec(ago(&clock, *t), Level::from_code(*l).unwrap(), products[*prod].clone(), "svc", m, scopes[*p])).collect();
        store.ingest(&batch);
        let mut q = LogQuery::new(LogScope::Project(scopes[target])).limit(limit);
        q.min_level = min_level.and_then(Level::from_code);
        q.keyword = keyword.clone();
        let got = store.query(&q).unwrap();
        prop_assert!(got.iter().all(|r| r.scope == Some(scopes[target])));
        let expected = batch.iter().filter(|r| r.scope == Some(scopes[target]) && q.min_level.is_none_or(|m| r.level.is_at_least(m)) && keyword.as_ref().is_none_or(|k| r.message.to_lowercase().contains(k.as_str()))).count();
        prop_assert_eq!(got.len(), expected.min(limit));
        prop_assert!(got.windows(2).all(|w| w[0].time >= w[1].time));
    }
}

// ---------------------------------------------------------------------------------------------
// Retention

#[tokio::test]
async fn retention_by_count_evicts_the_oldest_first() {
    let clock = clock();
    let config = LogStoreConfig::builder().max_records(100).max_records_per_project(40).build().unwrap();
    let store = LogStore::new(config, clock.clone());
    let scopes: Vec<_> = (0..4).map(|_| scope()).collect();
    // 60 records in each of 4 projects, older projects first.
    for (p, s) in scopes.iter().enumerate() {
        let batch: Vec<_> = (0..60)
            .map(|i| rec(ago(&clock, 1000 - (p as i64) * 100 - i), Level::Error, Product::Emqx, "c", &format!("p{p}-m{i}"), *s))
            .collect();
        store.write(&batch).await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.records, 100);
    assert_eq!(stats.evicted, 140);
    // Project 3 (the newest) keeps its newest 40; project 2 keeps its newest 40; project 1 the
    // newest 20 of its 40; project 0 is gone.
    let count = |s: MetricScope| store.query(&LogQuery::new(LogScope::Project(s)).limit(1000)).unwrap();
    assert!(count(scopes[0]).is_empty());
    let p1 = count(scopes[1]);
    assert_eq!(p1.len(), 20);
    assert_eq!(p1.last().unwrap().message, "p1-m40");
    assert_eq!(count(scopes[2]).len(), 40);
    let p3 = count(scopes[3]);
    assert_eq!((p3.len(), p3[0].message.as_str(), p3[39].message.as_str()), (40, "p3-m59", "p3-m20"));
    assert_eq!(stats.scopes, 3);
}

#[tokio::test]
async fn retention_by_bytes() {
    let clock = clock();
    let config = LogStoreConfig::builder().max_bytes(256 << 10).build().unwrap();
    let store = LogStore::new(config, clock.clone());
    let a = scope();
    let big = "x".repeat(8 << 10);
    let batch: Vec<_> = (0..100).map(|i| rec(ago(&clock, 200 - i), Level::Error, Product::Emqx, "c", &format!("{i} {big}"), a)).collect();
    store.write(&batch).await.unwrap();
    let stats = store.stats();
    assert!(stats.bytes <= 256 << 10, "{stats:?}");
    assert!(stats.records < 100 && stats.records > 20, "{stats:?}");
    assert_eq!(stats.evicted as usize, 100 - stats.records);
    assert!(store.query(&LogQuery::new(LogScope::Project(a))).unwrap()[0].message.starts_with("99 "));
}

#[tokio::test]
async fn retention_by_age_with_a_manual_clock() {
    let clock = clock();
    let config = LogStoreConfig::builder().max_age(Duration::from_secs(3600)).max_future(Duration::from_secs(60)).build().unwrap();
    let store = LogStore::new(config, clock.clone());
    let a = scope();
    let got = store.ingest(&[
        rec(ago(&clock, 3000), Level::Error, Product::Emqx, "c", "old", a),
        rec(ago(&clock, 10), Level::Error, Product::Emqx, "c", "new", a),
        rec(ago(&clock, 4000), Level::Error, Product::Emqx, "c", "too old on arrival", a),
        rec(ecp_core::clock::add(clock.now(), Duration::from_secs(3600)), Level::Error, Product::Emqx, "c", "from the future", a),
    ]);
    assert_eq!((got.stored, got.refused_out_of_range), (2, 2));
    let q = LogQuery::new(LogScope::Project(a));
    assert_eq!(messages(&store.query(&q).unwrap()), ["new", "old"]);
    clock.advance(Duration::from_secs(1000));
    // Queries hide expired records at once; expiry drops them.
    assert_eq!(messages(&store.query(&q).unwrap()), ["new"]);
    assert_eq!(store.len(), 2);
    store.expire();
    let stats = store.stats();
    assert_eq!((stats.records, stats.expired, stats.refused_out_of_range), (1, 1, 2));
    clock.advance(Duration::from_secs(3600));
    store.write(&[]).await.unwrap();
    assert!(store.is_empty());
    assert_eq!(store.stats().scopes, 0);
}

#[test]
fn store_config_is_validated() {
    assert!(LogStoreConfig::builder().max_records(0).build().is_err());
    assert!(LogStoreConfig::builder().max_records(10).max_records_per_project(11).build().is_err());
    assert!(LogStoreConfig::builder().max_bytes(10).build().is_err());
    assert!(LogStoreConfig::builder().max_age(Duration::ZERO).build().is_err());
    let c = LogStoreConfig::builder().build().unwrap();
    assert_eq!((c.max_records(), c.max_records_per_project(), c.max_bytes()), (100_000, 20_000, 64 << 20));
    assert_eq!((c.max_age(), c.max_future()), (Duration::from_secs(7 * 24 * 3600), Duration::from_secs(300)));
}

#[tokio::test]
async fn a_hundred_thousand_records() {
    let clock = clock();
    let store = store(&clock);
    let (a, b) = (scope(), scope());
    let started = std::time::Instant::now();
    for chunk in 0..100 {
        let batch: Vec<_> = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                let s = if n % 2 == 0 { a } else { b };
                // Mostly in order, every 10th a little late.
                let t = ago(&clock, 200_000 - n + if n % 10 == 0 { 30 } else { 0 });
                rec(t, Level::from_code((n % 8) as u8).unwrap(), Product::Emqx, "c", &format!("message {n}"), s)
            })
            .collect();
        store.write(&batch).await.unwrap();
    }
    let stats = store.stats();
    // 20 000 per project by default.
    assert_eq!(stats.records, 40_000);
    let got = store.query(&LogQuery::new(LogScope::Project(a)).keyword("MESSAGE 9999").min_level(Level::Error)).unwrap();
    assert!(!got.is_empty() && got.iter().all(|r| r.scope == Some(a) && r.message.contains("message 9999")));
    let got = store.query(&LogQuery::new(LogScope::Project(b)).keyword("no such text")).unwrap();
    assert!(got.is_empty());
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Hostile input

#[tokio::test]
async fn hostile_records_are_cleaned_or_refused_without_panic() {
    let clock = clock();
    let store = store(&clock);
    let a = scope();
    let huge = "é".repeat(1 << 20);
    let many_fields =
        (0..=MAX_FIELDS).fold(rec(clock.now(), Level::Error, Product::Emqx, "c", "many", a), |r, i| r.with_field(format!("f{i}"), "v"));
    let got = store.ingest(&[
        rec(clock.now(), Level::Error, Product::Emqx, "c", &huge, a),
        rec(clock.now(), Level::Error, Product::Emqx, "c", "line\r\nforged\x1b[31m red\x00\ttab", a).with_field("k", "v\nw"),
        many_fields,
        rec(clock.now(), Level::Error, Product::Emqx, "c", "bad field", a).with_field("a b", "v"),
        rec(clock.now(), Level::Error, Product::Emqx, "c", "long field name", a).with_field("x".repeat(33), "v"),
        rec(clock.now(), Level::Error, Product::Emqx, "", "no service", a),
        rec(clock.now(), Level::Error, Product::Emqx, "c\nd", "service with newline", a),
        rec(clock.now(), Level::Error, Product::Other("not valid!".into()), "c", "bad product", a),
        rec(clock.now(), Level::Error, Product::Emqx, "c", "big field", a).with_field("k", "v".repeat(100_000)),
    ]);
    assert_eq!((got.stored, got.refused_invalid), (3, 6));
    assert_eq!(store.stats().refused_invalid, 6);
    let stored = store.query(&LogQuery::new(LogScope::Project(a))).unwrap();
    let huge = stored.iter().find(|r| r.message.starts_with('é')).unwrap();
    assert!(huge.message.len() <= MAX_MESSAGE_LEN && huge.message.ends_with(TRUNCATED_MARKER));
    let forged = stored.iter().find(|r| r.message.starts_with("line")).unwrap();
    assert_eq!(forged.message, "line\u{FFFD}\nforged\u{FFFD}[31m red\u{FFFD}\ttab");
    assert_eq!(forged.fields["k"], "v\u{FFFD}w");
    let big = stored.iter().find(|r| r.message == "big field").unwrap();
    assert!(big.fields["k"].len() <= 1024 && big.fields["k"].ends_with(TRUNCATED_MARKER));
    // Records from JSON are checked the same way.
    assert!(
        serde_json::from_str::<LogRecord>(
            r#"{"time":"2026-12-01T12:00:00Z","level":"loud","scope":null,"product":"emqx","service":"c","message":"m"}"#
        )
        .is_err()
    );
    let r: LogRecord = serde_json::from_str(
        r#"{"time":"2026-12-01T12:00:00Z","level":"warn","scope":null,"product":"NanoMQ","service":"c","message":"m"}"#,
    )
    .unwrap();
    assert_eq!((r.level, r.product), (Level::Warning, Product::NanoMq));
}

proptest! {
    /// Whatever the text, normalizing never panics, and what it keeps respects every cap.
    #[test]
    fn normalizing_arbitrary_text(message in any::<String>(), service in any::<String>(), fields in prop::collection::btree_map(any::<String>(), any::<String>(), 0..40), product in any::<String>(), level in any::<String>()) {
        let mut r = LogRecord::new(Timestamp::UNIX_EPOCH, Level::parse_lossy(&level), Product::Other(product), service, message);
        r.fields = fields;
        if let Ok(r) = r.normalized() {
            prop_assert!(r.message.len() <= MAX_MESSAGE_LEN);
            prop_assert!(!r.message.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            prop_assert!(r.fields.len() <= MAX_FIELDS);
            prop_assert!(r.fields.values().all(|v| v.len() <= 1024 && !v.chars().any(char::is_control)));
        }
        let _ = Level::parse(&level);
        let _ = level.parse::<LogCursor>();
    }
}

// ---------------------------------------------------------------------------------------------
// Syslog

/// One parsed RFC 5424 message.
#[derive(Debug)]
struct Syslog {
    pri: u16,
    version: u8,
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    sd: BTreeMap<String, BTreeMap<String, String>>,
    msg: String,
}

/// A strict parser of RFC 5424 (enough of it to check what the sink sends).
fn parse_syslog(s: &str) -> Syslog {
    let rest = s.strip_prefix('<').expect("starts with <");
    let (pri, rest) = rest.split_once('>').expect("PRI ends with >");
    let (version, rest) = rest.split_once(' ').unwrap();
    let mut parts = rest.splitn(6, ' ');
    let mut next = || parts.next().expect("header field").to_string();
    let (timestamp, hostname, app, procid, msgid, mut rest) = (next(), next(), next(), next(), next(), next());
    let mut sd = BTreeMap::new();
    if let Some(r) = rest.strip_prefix("- ") {
        rest = r.to_string();
    } else {
        let mut chars = rest.chars().peekable();
        while chars.peek() == Some(&'[') {
            chars.next();
            let id: String = std::iter::from_fn(|| chars.next_if(|c| *c != ' ' && *c != ']')).collect();
            let mut params = BTreeMap::new();
            while chars.next_if_eq(&' ').is_some() {
                let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
                assert_eq!(chars.next(), Some('='));
                assert_eq!(chars.next(), Some('"'));
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated value") {
                        '\\' => {
                            let e = chars.next().unwrap();
                            assert!(matches!(e, '"' | '\\' | ']'), "only \", \\ and ] are escaped");
                            value.push(e);
                        }
                        '"' => break,
                        ']' => panic!("unescaped ] in a PARAM-VALUE"),
                        c => value.push(c),
                    }
                }
                assert!(!name.is_empty() && name.len() <= 32, "SD-NAME {name:?}");
                params.insert(name, value);
            }
            assert_eq!(chars.next(), Some(']'));
            sd.insert(id, params);
        }
        let tail: String = chars.collect();
        rest = tail.strip_prefix(' ').unwrap_or(&tail).to_string();
    }
    Syslog { pri: pri.parse().unwrap(), version: version.parse().unwrap(), timestamp, hostname, app, procid, msgid, sd, msg: rest }
}

fn syslog_record(s: MetricScope) -> LogRecord {
    LogRecord::new(
        "2026-12-01T06:05:12.123456789Z".parse().unwrap(),
        Level::Warning,
        Product::NeuronEx,
        r#"gw "7" \ [a]"#,
        "driver modbus-1 reconnecting\nattempt 3",
    )
    .with_scope(s)
    .with_field("node", r#"n"1\]"#)
    .with_field("module", "south")
}

fn check_syslog_record(m: &Syslog, s: MetricScope, facility: u16) {
    assert_eq!(m.pri, facility * 8 + 4, "facility * 8 + severity (warning = 4)");
    assert_eq!(m.version, 1);
    assert_eq!(m.timestamp, "2026-12-01T06:05:12.123456Z");
    assert_eq!(m.hostname, "edge-host");
    assert_eq!(m.app, "ecp-logs");
    assert_eq!(m.procid, std::process::id().to_string());
    assert_eq!(m.msgid, "neuronex");
    let main = &m.sd[SD_ID];
    assert_eq!(main["product"], "neuronex");
    assert_eq!(main["service"], r#"gw "7" \ [a]"#);
    assert_eq!(main["org"], s.org.to_string());
    assert_eq!(main["project"], s.project.to_string());
    assert_eq!(m.sd[SD_ID_FIELDS]["node"], r#"n"1\]"#);
    assert_eq!(m.sd[SD_ID_FIELDS]["module"], "south");
    assert_eq!(m.msg, "driver modbus-1 reconnecting\nattempt 3");
}

#[tokio::test]
async fn syslog_over_udp_to_a_real_socket() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let config = SyslogConfig::builder(&addr)
        .network(SyslogNetwork::Udp)
        .facility(Facility::local(4).unwrap())
        .tag("ecp-logs")
        .hostname("edge-host")
        .build()
        .unwrap();
    let sink = SyslogSink::new(config);
    let s = scope();
    let huge = LogRecord::new(Timestamp::UNIX_EPOCH, Level::Emergency, Product::Ecp, "api", "z".repeat(100_000));
    let control_plane = LogRecord::new(Timestamp::UNIX_EPOCH, Level::Debug, Product::Ecp, "api", "plain");
    let invalid = LogRecord::new(Timestamp::UNIX_EPOCH, Level::Debug, Product::Ecp, "", "no service");
    sink.write(&[syslog_record(s), huge, invalid, control_plane]).await.unwrap();

    let mut buf = vec![0u8; 70_000];
    let first = recv(&server, &mut buf).await;
    check_syslog_record(&parse_syslog(&first), s, 20);
    let second = recv(&server, &mut buf).await;
    assert_eq!(second.len(), 2048, "one datagram per record, cut to the limit");
    let m = parse_syslog(&second);
    assert_eq!(m.pri, 20 * 8);
    assert_eq!(m.timestamp, "1970-01-01T00:00:00Z");
    assert!(!m.sd[SD_ID].contains_key("project"));
    assert!(m.msg.starts_with("zzz"));
    let third = parse_syslog(&recv(&server, &mut buf).await);
    assert_eq!((third.pri, third.msg.as_str()), (20 * 8 + 7, "plain"));
    let stats = sink.stats();
    assert_eq!((stats.sent, stats.refused_invalid, stats.truncated), (3, 1, 1));
}

async fn recv(server: &UdpSocket, buf: &mut [u8]) -> String {
    let n = tokio::time::timeout(Duration::from_secs(5), server.recv(buf)).await.expect("a datagram arrives").unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Reads one octet-counted frame (`LEN SP MSG`).
async fn read_frame(stream: &mut TcpStream) -> Option<String> {
    let mut len = Vec::new();
    loop {
        let mut b = [0u8; 1];
        if stream.read(&mut b).await.unwrap() == 0 {
            return None;
        }
        if b[0] == b' ' {
            break;
        }
        assert!(b[0].is_ascii_digit(), "MSG-LEN is digits");
        len.push(b[0]);
    }
    let len: usize = String::from_utf8(len).unwrap().parse().unwrap();
    let mut msg = vec![0u8; len];
    stream.read_exact(&mut msg).await.unwrap();
    Some(String::from_utf8(msg).unwrap())
}

async fn accept(listener: &TcpListener) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("the sink connects").unwrap().0
}

#[tokio::test]
async fn syslog_over_tcp_with_octet_counting_and_reconnect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // The product's `{network: "tcp", priority: 3, tag}`.
    let config = SyslogConfig::builder(&addr)
        .network(SyslogNetwork::parse("tcp").unwrap())
        .product_priority(3)
        .tag("ecp-logs")
        .hostname("edge-host")
        .build()
        .unwrap();
    let sink = SyslogSink::new(config);
    let s = scope();
    let second = LogRecord::new(Timestamp::UNIX_EPOCH, Level::Error, Product::Emqx, "c", "second");
    sink.write(&[syslog_record(s), second]).await.unwrap();

    let mut conn = accept(&listener).await;
    // The product's priority 3 is facility kern (0).
    check_syslog_record(&parse_syslog(&read_frame(&mut conn).await.unwrap()), s, 0);
    assert_eq!(parse_syslog(&read_frame(&mut conn).await.unwrap()).msg, "second");

    // The server drops the connection: the next write goes out on a new one.
    drop(conn);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = LogRecord::new(Timestamp::UNIX_EPOCH, Level::Error, Product::Emqx, "c", "third");
    sink.write(std::slice::from_ref(&third)).await.unwrap();
    let mut conn = accept(&listener).await;
    assert_eq!(parse_syslog(&read_frame(&mut conn).await.unwrap()).msg, "third");
    assert_eq!(sink.stats().reconnects, 1);

    // A message with a multi-byte tail is cut at a character boundary within the limit.
    let long = LogRecord::new(Timestamp::UNIX_EPOCH, Level::Error, Product::Emqx, "c", "é".repeat(10_000));
    sink.write(&[long]).await.unwrap();
    let frame = read_frame(&mut conn).await.unwrap();
    assert!(frame.len() <= 8192 && frame.len() > 8000);

    // With the server gone, a write fails with a retryable transport error, and works again
    // once a server listens.
    drop(conn);
    drop(listener);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = sink.write(std::slice::from_ref(&third)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.label(), "transport");
    let listener = TcpListener::bind(&addr).await.unwrap();
    sink.write(std::slice::from_ref(&third)).await.unwrap();
    let mut conn = accept(&listener).await;
    assert_eq!(parse_syslog(&read_frame(&mut conn).await.unwrap()).msg, "third");
}

#[tokio::test]
async fn syslog_min_level_and_disabled() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let at = |l| LogRecord::new(Timestamp::UNIX_EPOCH, l, Product::Emqx, "c", l.as_str());
    let sink = SyslogSink::new(SyslogConfig::builder(&addr).min_level(Level::Error).build().unwrap());
    sink.write(&Level::ALL.map(at)).await.unwrap();
    let off = SyslogSink::new(SyslogConfig::builder(&addr).enabled(false).build().unwrap());
    off.write(&[at(Level::Emergency)]).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), server.recv(&mut buf)).await {
        let m = parse_syslog(std::str::from_utf8(&buf[..n]).unwrap());
        got.push((m.pri, m.msg));
    }
    assert_eq!(got, [(8, "emergency".to_string()), (9, "alert".into()), (10, "critical".into()), (11, "error".into())]);
    assert_eq!(off.stats().sent, 0);
}

#[tokio::test]
async fn audit_records_travel_as_log_records() {
    use ecp_core::access::{Principal, ResourceKind};
    use ecp_core::audit::{AuditEvent, AuditRecord, GENESIS_HASH, Operation};
    use ecp_core::{AuditId, UserId};

    let s = scope();
    let event = AuditEvent::new(&Principal::user(UserId::new(), "alice"), ResourceKind::Project, Operation::from_static("project.rename"))
        .org(s.org, "acme")
        .project(s.project, "plant-1")
        .resource(s.project, Some("plant \"1\" [east]"))
        .failed("name taken");
    let audit = AuditRecord::seal(event, AuditId::new(), 7, "2026-12-01T06:05:12Z".parse().unwrap(), GENESIS_HASH.into());
    let r = LogRecord::from_audit(&audit);
    assert_eq!((r.level, &r.product, r.service.as_str(), r.scope), (Level::Warning, &Product::Ecp, "audit", Some(s)));
    assert_eq!(r.message, "alice project.rename project plant \"1\" [east]: failed: name taken");
    assert_eq!(r.fields["seq"], "7");
    assert_eq!(r.fields["hash"], audit.hash);

    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sink = SyslogSink::new(SyslogConfig::builder(server.local_addr().unwrap().to_string()).facility(Facility::AUDIT).build().unwrap());
    sink.write(std::slice::from_ref(&r)).await.unwrap();
    let m = parse_syslog(&recv(&server, &mut [0u8; 4096]).await);
    assert_eq!(m.pri, 13 * 8 + 4);
    assert_eq!(m.sd[SD_ID]["project"], s.project.to_string());
    assert_eq!(m.sd[SD_ID_FIELDS]["operation"], "project.rename");
    assert_eq!(m.sd[SD_ID_FIELDS]["resource_id"], s.project.to_string());
    assert_eq!(m.msg, r.message);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever a record holds, its syslog form parses as RFC 5424 within the limit, and the SD
    /// values and the message come back exactly (or, for the message, as a prefix).
    #[test]
    fn syslog_format_round_trips(service in "[^\\p{Cc}]{1,40}", message in any::<String>(), fields in prop::collection::btree_map("[A-Za-z0-9_.-]{1,32}", any::<String>(), 0..8), level in 0u8..8, with_scope in any::<bool>()) {
        let mut r = LogRecord::new(Timestamp::UNIX_EPOCH, Level::from_code(level).unwrap(), Product::Emqx, service, message);
        r.fields = fields;
        if with_scope {
            r = r.with_scope(scope());
        }
        let r = r.normalized().unwrap();
        let sink = SyslogSink::new(SyslogConfig::builder("127.0.0.1:514").build().unwrap());
        let text = sink.format(&r);
        prop_assert!(text.len() <= 2048);
        let m = parse_syslog(&text);
        prop_assert_eq!(m.pri, 8 + u16::from(level));
        prop_assert_eq!(m.version, 1);
        prop_assert_eq!(&m.sd[SD_ID]["service"], &r.service);
        if let Some(f) = m.sd.get(SD_ID_FIELDS) {
            prop_assert_eq!(f, &r.fields);
        }
        prop_assert!(r.message.starts_with(&m.msg));
    }
}
