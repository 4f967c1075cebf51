//! A sentinel password and every token the SDK hands out never appear in `Debug` output, errors,
//! logs, audit records, or the database file.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecp_core::access::Scope;
use ecp_core::audit::AuditQuery;
use ecp_core::identity::BuiltinRole;
use ecp_core::{ManualClock, PageRequest, Principal, SqlStore, SqlStoreConfig};
use ecp_rbac::{AccessConfig, AccessControl, Argon2Params, Grant, NewApiKey, NewUser};
use secrecy::{ExposeSecret, SecretString};

const SENTINEL: &str = "S3ntinel-Pa55-ZQX";
const WRONG: &str = "S3ntinel-Wr0ng-ZQX";
const WEAK: &str = "sentinelweakzqx";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn s(v: &str) -> SecretString {
    SecretString::from(v.to_owned())
}

/// The only test of this binary: it owns the global log subscriber, which sees every thread
/// (SQLite runs statements on its own worker threads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leak() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("secrets.db");
    let clock = ManualClock::starting_now();
    let store =
        Arc::new(SqlStore::connect(SqlStoreConfig::sqlite_file(&db).clock(Arc::new(clock.clone())).build().unwrap()).await.unwrap());
    let config = AccessConfig::builder().clock(Arc::new(clock.clone())).argon2(Argon2Params::new(1024, 1, 1).unwrap()).build().unwrap();
    let ac = AccessControl::new(store.clone(), config).await.unwrap();
    let mut shown: Vec<String> = Vec::new();
    let mut secrets: Vec<String> = vec![SENTINEL.into(), WRONG.into(), WEAK.into()];

    let admin_user = ac.users.bootstrap_admin("admin@example.com", "Admin", &s(SENTINEL)).await.unwrap();
    let admin = Principal::user(admin_user.id, admin_user.email.clone());
    shown.push(format!("{:?}", ac.users.bootstrap_admin("x@example.com", "X", &s(SENTINEL)).await));
    let org = ac.tenancy.create_org(&admin, "acme").await.unwrap();
    let project = ac.tenancy.create_project(&admin, org.id, "plant").await.unwrap();

    // A user with the sentinel as its password, and every failure path around it.
    let new = NewUser::new("ann@example.com", "Ann")
        .password(s(SENTINEL))
        .grant(Grant::builtin(BuiltinRole::OrgAdmin, Scope::Org { org: org.id }));
    shown.push(format!("{new:?}"));
    let ann = ac.users.create_user(&admin, new).await.unwrap();
    shown.push(format!("{ann:?}"));
    let weak = ac.users.create_user(&admin, NewUser::new("weak@example.com", "W").password(s(WEAK))).await;
    shown.push(format!("{weak:?}"));
    shown.push(weak.unwrap_err().to_string());
    for _ in 0..6 {
        let e = ac.auth.login("ann@example.com", &s(WRONG)).await.unwrap_err();
        shown.push(format!("{e:?} {e}"));
    }
    clock.advance(Duration::from_secs(3600));
    let tokens = ac.auth.login("ann@example.com", &s(SENTINEL)).await.unwrap();
    shown.push(format!("{tokens:?}"));
    secrets.push(tokens.access_token.expose_secret().to_owned());
    secrets.push(tokens.refresh_token.expose_secret().to_owned());
    let refreshed = ac.auth.refresh(&tokens.refresh_token).await.unwrap();
    secrets.push(refreshed.access_token.expose_secret().to_owned());
    secrets.push(refreshed.refresh_token.expose_secret().to_owned());
    shown.push(format!("{:?}", ac.auth.refresh(&tokens.refresh_token).await));

    let inv = ac.users.invite_user(&admin, NewUser::new("new@example.com", "New")).await.unwrap();
    shown.push(format!("{inv:?}"));
    secrets.push(inv.token.expose_secret().to_owned());
    shown.push(format!("{:?}", ac.users.accept_invitation(&inv.token, &s(WEAK)).await));
    ac.users.accept_invitation(&inv.token, &s(SENTINEL)).await.unwrap();
    let reset = ac.users.start_password_reset(&admin, ann.id).await.unwrap();
    secrets.push(reset.token.expose_secret().to_owned());
    shown.push(format!("{reset:?}"));
    ac.users.complete_password_reset(&reset.token, &s(SENTINEL)).await.unwrap();
    let ann_p = Principal::user(ann.id, ann.email.clone());
    shown.push(format!("{:?}", ac.users.change_password(&ann_p, &s(WRONG), &s(SENTINEL)).await));

    let key =
        ac.users.create_api_key(&admin, NewApiKey::new("ci").grant(Grant::builtin(BuiltinRole::Viewer, project.scope()))).await.unwrap();
    shown.push(format!("{key:?}"));
    secrets.push(key.secret.expose_secret().to_owned());
    let (_, secret_part) = key.secret.expose_secret().rsplit_once('_').unwrap();
    secrets.push(secret_part.to_owned());
    shown.push(format!("{:?}", ac.auth.authenticate_api_key(&key.secret).await));
    shown.push(format!("{ac:?}"));
    shown.push(format!("{:?}", AccessConfig::builder().build().unwrap()));

    // The audit log, whole.
    let records = ac.audit.query(&admin, &AuditQuery::default(), &PageRequest::first(1000)).await.unwrap().items;
    assert!(records.len() >= 18, "{}", records.len());
    shown.push(serde_json::to_string(&records).unwrap());
    shown.push(format!("{records:?}"));

    shown.push(format!("{:?}", ac.auth.logout(&refreshed.access_token).await));
    store.close().await;
    let mut file = std::fs::read(&db).unwrap();
    for ext in ["-wal", "-shm"] {
        if let Ok(more) = std::fs::read(format!("{}{ext}", db.display())) {
            file.extend(more);
        }
    }
    let file = String::from_utf8_lossy(&file).into_owned();
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();

    for secret in &secrets {
        for text in &shown {
            assert!(!text.contains(secret.as_str()), "a secret leaked into: {text:.300}");
        }
        assert!(!logs.contains(secret.as_str()), "a secret leaked into the logs");
        assert!(!file.contains(secret.as_str()), "a secret was stored in the database file");
    }
    // The checks looked at something.
    assert!(shown.iter().any(|t| t.contains("REDACTED")));
    assert!(file.contains("ann@example.com"));
    assert!(logs.contains("sqlx::query") || logs.contains("summary"), "the log capture saw the statements: {:.500}", logs);
}
