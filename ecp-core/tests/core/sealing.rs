//! Secrets at rest: someone who reads the database file finds no password, token or API secret;
//! keys rotate in resumable batches; a store without the keys refuses sealed values rather than
//! handing out ciphertext as a password.

use std::sync::Arc;

use ecp_core::access::{Principal, ResourceKind};
use ecp_core::audit::{AuditEvent, Operation};
use ecp_core::cluster::{ClusterQuota, ClusterRecord};
use ecp_core::edge::{Credentials, EdgeKind, EdgeLimits, EdgeService};
use ecp_core::sealing::StaticKeys;
use ecp_core::{
    ClusterId, ClusterStore, EdgeStore, Organization, Project, SqlStore, SqlStoreConfig, TenancyLimits, TenancyStore, Timestamp,
};
use secrecy::{ExposeSecret, SecretString};

const PASSWORD: &str = "sentinel-password-41c7";
const TOKEN: &str = "sentinel-token-77ab";
const API_SECRET: &str = "sentinel-api-secret-9d2e";

fn ev(op: &str) -> AuditEvent {
    AuditEvent::new(&Principal::system("test"), ResourceKind::Organization, Operation::new(op).unwrap())
}

async fn open(path: &std::path::Path, keys: Option<StaticKeys>) -> SqlStore {
    let mut config = SqlStoreConfig::sqlite_file(path);
    if let Some(k) = keys {
        config = config.keys(Arc::new(k));
    }
    SqlStore::connect(config.build().unwrap()).await.unwrap()
}

/// Every byte of every file in `dir` (the database, its WAL and shared memory).
fn raw_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    all
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_holds_no_secret_and_keys_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecp.db");
    let k1 = [1u8; 32];
    let store = open(&path, Some(StaticKeys::new("k1", k1).unwrap())).await;
    assert!(store.seals_secrets());
    let now = Timestamp::now();
    let limits = TenancyLimits::default();
    let org = Organization::new("acme", now).unwrap();
    store.create_org(&org, &limits, &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "plant", now).unwrap();
    store.create_project(&project, &limits, &ev("project.create")).await.unwrap();
    let basic = EdgeService::builder(project.id(), "nx", EdgeKind::NeuronEx, "http://10.0.0.1:8085")
        .credentials(Credentials::Basic { username: "admin".into(), password: SecretString::from(PASSWORD) })
        .build(now)
        .unwrap();
    let token = EdgeService::builder(project.id(), "ek", EdgeKind::Ekuiper, "http://10.0.0.2:9081")
        .credentials(Credentials::Token(SecretString::from(TOKEN)))
        .build(now)
        .unwrap();
    let results =
        store.create_edge_services(&[basic.clone(), token.clone()], &EdgeLimits::default(), &ev("edge_service.register")).await.unwrap();
    assert!(results.iter().all(Result::is_ok));
    let cluster = ClusterRecord::new(ClusterId::new(), project.id(), "prod", "existing", 100, "running", now).with_api(
        "http://10.0.0.9:18083",
        "ecp",
        SecretString::from(API_SECRET),
    );
    store.create_cluster(&cluster, &ClusterQuota { max_clusters: 5, max_connections: 1000 }, &ev("cluster.create")).await.unwrap();
    // Read back through the store: the values, as given.
    let read = store.get_edge_service(basic.id()).await.unwrap();
    assert!(matches!(read.credentials(), Credentials::Basic { password, .. } if password.expose_secret() == PASSWORD));
    assert_eq!(store.get_cluster(cluster.id).await.unwrap().api_secret.unwrap().expose_secret(), API_SECRET);
    store.close().await;

    // The files: no secret in any of them.
    let raw = raw_bytes(dir.path());
    for secret in [PASSWORD, TOKEN, API_SECRET] {
        assert!(!holds(&raw, secret), "{secret} is readable in the database files");
    }
    assert!(holds(&raw, "enc:v1:k1:"));

    // Without the keys, a sealed value is refused, never handed out as the password.
    let keyless = open(&path, None).await;
    assert!(!keyless.seals_secrets());
    let e = keyless.get_edge_service(basic.id()).await.unwrap_err();
    assert!(!e.to_string().contains("enc:v1"), "{e}");
    keyless.close().await;

    // Rotation: k2 seals, k1 still opens; batches of one resume until nothing is left.
    let rotated = open(&path, Some(StaticKeys::new("k2", [2u8; 32]).unwrap().with_old("k1", k1).unwrap())).await;
    let mut rounds = Vec::new();
    loop {
        let n = rotated.rotate_secrets(1).await.unwrap();
        if n == 0 {
            break;
        }
        rounds.push(n);
    }
    assert_eq!(rounds, [1, 1, 1], "three secrets, one per batch");
    rotated.close().await;

    // k1 can go now: every value opens with k2 alone.
    let k2_only = open(&path, Some(StaticKeys::new("k2", [2u8; 32]).unwrap())).await;
    let read = k2_only.get_edge_service(token.id()).await.unwrap();
    assert!(matches!(read.credentials(), Credentials::Token(t) if t.expose_secret() == TOKEN));
    assert_eq!(k2_only.get_cluster(cluster.id).await.unwrap().api_secret.unwrap().expose_secret(), API_SECRET);
    assert_eq!(k2_only.rotate_secrets(10).await.unwrap(), 0);
}

/// A sealed value copied onto another row does not open there: each is bound to its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_value_moved_to_another_row_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecp.db");
    let store = open(&path, Some(StaticKeys::new("k1", [5u8; 32]).unwrap())).await;
    let now = Timestamp::now();
    let limits = TenancyLimits::default();
    let org = Organization::new("acme", now).unwrap();
    store.create_org(&org, &limits, &ev("organization.create")).await.unwrap();
    let project = Project::new(org.id, "plant", now).unwrap();
    store.create_project(&project, &limits, &ev("project.create")).await.unwrap();
    let mk = |name: &str, pw: &str| {
        EdgeService::builder(project.id(), name, EdgeKind::NeuronEx, "http://10.0.0.1:8085")
            .credentials(Credentials::Basic { username: "admin".into(), password: SecretString::from(pw.to_owned()) })
            .build(now)
            .unwrap()
    };
    let (a, b) = (mk("a", "pw-of-a"), mk("b", "pw-of-b"));
    store.create_edge_services(&[a.clone(), b.clone()], &EdgeLimits::default(), &ev("edge_service.register")).await.unwrap();
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("UPDATE edge_services SET cred_secret = (SELECT cred_secret FROM edge_services WHERE id = $1) WHERE id = $2")
        .bind(a.id().to_string())
        .bind(b.id().to_string())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = open(&path, Some(StaticKeys::new("k1", [5u8; 32]).unwrap())).await;
    assert!(store.get_edge_service(b.id()).await.is_err(), "a's password opened as b's");
    assert!(store.get_edge_service(a.id()).await.is_ok());
}
