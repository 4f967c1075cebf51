//! State at scale (issue 7, item 3), on SQLite files, each figure beside its floor in the same run:
//!
//! - **import**: a 100,000-line CSV file parsed and registered through the SDK
//!   (`import::parse_csv` + `EdgeStore::create_edge_services`: validation, name and tag checks,
//!   the resource registry, tags, one audit record) against plain multi-row INSERTs of the same
//!   100,000 rows into a bare table in one transaction (sqlx, same SQLite settings);
//! - **selection**: the 1,000 services carrying one tag of 100, out of 100,000, through
//!   `select_edge_services` (pages of 1,000) against one hand-written indexed query on the same file;
//! - **import on PostgreSQL** (when `ECP_TEST_POSTGRES_URL` names a server, as `scripts/bench`
//!   provides; required under `CI=true`): the same import into a fresh database against the same
//!   plain INSERTs there;
//! - **memory**: the process's resident memory before and after loading and selecting every
//!   service, per service (printed, not timed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ecp_core::access::Principal;
use ecp_core::edge::{EdgeLimits, EdgeSelector, EdgeService};
use ecp_core::prelude::*;
use ecp_core::{
    AuditEvent, Operation, Organization, PageRequest, Project, ProjectId, ResourceKind, SqlStore, SqlStoreConfig, TenancyLimits, Timestamp,
};
use ecp_edge::import::{ImportLimits, parse_csv};

const SERVICES: usize = 100_000;
const TAGS: usize = 100;

fn csv() -> String {
    let mut s = String::from("category,name,nodeType,endpoint,scheme,tagName\n");
    for i in 0..SERVICES {
        s.push_str(&format!("4,edge-{i:06},4,10.{}.{}.{}:8085,http,line-{}\n", i / 65_536, (i / 256) % 256, i % 256, i % TAGS));
    }
    s
}

fn ev(op: &'static str) -> AuditEvent {
    AuditEvent::new(&Principal::system("bench"), ResourceKind::EdgeService, Operation::from_static(op))
}

async fn fresh(dir: &std::path::Path) -> (Arc<SqlStore>, ProjectId) {
    on(SqlStoreConfig::sqlite_file(dir.join("ecp.db")).max_connections(4).build().unwrap()).await
}

/// A store on a fresh PostgreSQL database, or `None` without a server (outside CI).
async fn fresh_pg() -> Option<(Arc<SqlStore>, ProjectId, String)> {
    let url = ecp_testkit::postgres::fresh_database().await?;
    let (store, project) = on(SqlStoreConfig::builder(url.clone().into()).max_connections(4).build().unwrap()).await;
    Some((store, project, url))
}

async fn on(config: SqlStoreConfig) -> (Arc<SqlStore>, ProjectId) {
    let store = Arc::new(SqlStore::connect(config).await.unwrap());
    let org = Organization::new("o", Timestamp::now()).unwrap();
    store.create_org(&org, &TenancyLimits::default(), &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "p", Timestamp::now()).unwrap();
    store.create_project(&project, &TenancyLimits::default(), &ev("project.create")).await.unwrap();
    (store, project.id())
}

/// Parses the CSV and registers every row: what `ProjectFleet::import_csv` does after its checks.
async fn import(store: &SqlStore, project: ProjectId, csv: &str) -> usize {
    let parsed = parse_csv(csv.as_bytes(), &ImportLimits::default()).unwrap();
    assert!(parsed.failures.is_empty());
    let now = Timestamp::now();
    let services: Vec<EdgeService> = parsed
        .rows
        .into_iter()
        .map(|r| EdgeService::builder(project, r.name, r.kind, r.endpoint).credentials(r.credentials).tags(r.tags).build(now).unwrap())
        .collect();
    let results = store.create_edge_services(&services, &EdgeLimits::default(), &ev("edge_service.import")).await.unwrap();
    results.iter().filter(|r| r.is_ok()).count()
}

/// The rows of the CSV file as the floors insert them: (name, endpoint, tag).
fn floor_rows(csv: &str) -> Vec<(String, String, String)> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_owned(), format!("{}://{}", f[4], f[3]), f[5].to_owned())
        })
        .collect()
}

/// The PostgreSQL floor: the same rows as plain multi-row INSERTs (1,000 rows, 4,000 parameters
/// per statement) into a bare table of a fresh database, one transaction.
async fn floor_import_pg(csv: &str) -> usize {
    use sqlx::postgres::PgPoolOptions;
    let url = ecp_testkit::postgres::fresh_database().await.expect("PostgreSQL");
    let pool = PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE s (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, endpoint TEXT NOT NULL, tag TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE INDEX s_tag ON s (tag)").execute(&pool).await.unwrap();
    let rows = floor_rows(csv);
    let mut tx = pool.begin().await.unwrap();
    for chunk in rows.chunks(1_000) {
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("INSERT INTO s (id, name, endpoint, tag) ");
        q.push_values(chunk, |mut b, (name, endpoint, tag)| {
            b.push_bind(uuid::Uuid::now_v7().to_string()).push_bind(name).push_bind(endpoint).push_bind(tag);
        });
        q.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
    rows.len()
}

/// The floor: the same rows as plain multi-row INSERTs into a bare table, one transaction.
async fn floor_import(dir: &std::path::Path, csv: &str) -> usize {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let opts = SqliteConnectOptions::new().filename(dir.join("floor.db")).create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
    sqlx::query("CREATE TABLE s (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, endpoint TEXT NOT NULL, tag TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE INDEX s_tag ON s (tag)").execute(&pool).await.unwrap();
    let rows = floor_rows(csv);
    let mut tx = pool.begin().await.unwrap();
    for chunk in rows.chunks(200) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO s (id, name, endpoint, tag) ");
        q.push_values(chunk, |mut b, (name, endpoint, tag)| {
            b.push_bind(uuid::Uuid::now_v7().to_string()).push_bind(name).push_bind(endpoint).push_bind(tag);
        });
        q.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
    rows.len()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let csv = csv();

    // One store of 100,000 services, loaded and read before anything else is measured, for the
    // memory figure; then kept for the selections.
    let dir = tempfile::tempdir().unwrap();
    let before = rss_kib();
    let (store, project) = rt.block_on(fresh(dir.path()));
    rt.block_on(import(&store, project, &csv));
    rt.block_on(async {
        let mut page = PageRequest::first(1000);
        loop {
            let got = store.select_edge_services(project, &EdgeSelector::default(), &page).await.unwrap();
            match got.next {
                Some(c) => page = PageRequest::after(1000, c),
                None => break,
            }
        }
    });
    let after = rss_kib();
    eprintln!(
        "memory: RSS {before} KiB before the store, {after} KiB with {SERVICES} services imported and read: {:.0} B per service",
        (after.saturating_sub(before) as f64 * 1024.0) / SERVICES as f64
    );

    let mut g = c.benchmark_group("import_100k");
    g.sample_size(10).measurement_time(Duration::from_secs(40));
    g.bench_function("sdk: parse CSV + create_edge_services", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let (store, project) = rt.block_on(fresh(dir.path()));
                let t = Instant::now();
                assert_eq!(rt.block_on(import(&store, project, &csv)), SERVICES);
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("part: parse CSV and build the services only", |b| {
        b.iter(|| {
            let parsed = parse_csv(csv.as_bytes(), &ImportLimits::default()).unwrap();
            let now = Timestamp::now();
            let services: Vec<EdgeService> = parsed
                .rows
                .into_iter()
                .map(|r| {
                    EdgeService::builder(ProjectId::new(), r.name, r.kind, r.endpoint)
                        .credentials(r.credentials)
                        .tags(r.tags)
                        .build(now)
                        .unwrap()
                })
                .collect();
            assert_eq!(services.len(), SERVICES);
        })
    });
    g.bench_function("floor: plain INSERTs in one transaction", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let t = Instant::now();
                assert_eq!(rt.block_on(floor_import(dir.path(), &csv)), SERVICES);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();

    let mut g = c.benchmark_group("import_100k_postgres");
    g.sample_size(10).measurement_time(Duration::from_secs(40));
    if rt.block_on(fresh_pg()).is_some() {
        g.bench_function("sdk: parse CSV + create_edge_services", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (store, project, _) = rt.block_on(fresh_pg()).expect("PostgreSQL");
                    let t = Instant::now();
                    assert_eq!(rt.block_on(import(&store, project, &csv)), SERVICES);
                    total += t.elapsed();
                    rt.block_on(store.close());
                }
                total
            })
        });
        g.bench_function("floor: plain INSERTs in one transaction", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    assert_eq!(rt.block_on(floor_import_pg(&csv)), SERVICES);
                    total += t.elapsed();
                }
                total
            })
        });
    } else {
        eprintln!("PostgreSQL: ECP_TEST_POSTGRES_URL is not set; the PostgreSQL import is not measured (scripts/bench sets it)");
    }
    g.finish();

    let mut g = c.benchmark_group("select_by_tag_100k");
    g.bench_function("sdk: select_edge_services, one tag of 100 (1,000 services)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let selector = EdgeSelector::with_tags(["line-42"]);
                let mut page = PageRequest::first(1000);
                let mut n = 0;
                loop {
                    let got = store.select_edge_services(project, &selector, &page).await.unwrap();
                    n += got.items.len();
                    match got.next {
                        Some(c) => page = PageRequest::after(1000, c),
                        None => break,
                    }
                }
                assert_eq!(n, SERVICES / TAGS);
            })
        })
    });
    let pool = rt.block_on(async {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("ecp.db"));
        sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap()
    });
    // The SDK's own statement for that page (SQLite), run through plain sqlx without the Any
    // driver or decoding into services: what the SQL costs, apart from the layers above it.
    let sdk_sql = "SELECT id, project_id, name, kind, mode, endpoint, cred_kind, cred_user, cred_secret, agent_id, version, status, \
                   last_seen, missed_probes, created_at, updated_at, \
                   (SELECT json_group_array(tag) FROM edge_service_tags t WHERE t.service_id = e.id) AS tags_json \
                   FROM edge_services e WHERE +e.project_id = ?1 AND e.id IN \
                   (SELECT service_id FROM edge_service_tags WHERE project_id = ?1 AND tag = ?2) ORDER BY e.id LIMIT 1001";
    g.bench_function("part: the SDK's statement through plain sqlx", |b| {
        b.iter(|| {
            rt.block_on(async {
                let rows = sqlx::query(sdk_sql).bind(project.to_string()).bind("line-42").fetch_all(&pool).await.unwrap();
                assert_eq!(rows.len(), SERVICES / TAGS);
            })
        })
    });
    g.bench_function("floor: one indexed query on the same file", |b| {
        b.iter(|| {
            rt.block_on(async {
                let rows = sqlx::query(
                    "SELECT s.id, s.name, s.endpoint FROM edge_service_tags t JOIN edge_services s ON s.id = t.service_id \
                     WHERE t.project_id = ?1 AND t.tag = ?2 ORDER BY s.id",
                )
                .bind(project.to_string())
                .bind("line-42")
                .fetch_all(&pool)
                .await
                .unwrap();
                assert_eq!(rows.len(), SERVICES / TAGS);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
