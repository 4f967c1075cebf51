//! Login with the OWASP argon2id parameters: a known email with a wrong password against an unknown
//! email, in the same run. Their times should match: the unknown email is checked against a dummy
//! hash of the same cost, so the answer's timing does not tell whether an account exists.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ecp_core::SqlStore;
use ecp_rbac::{AccessConfig, AccessControl};
use secrecy::SecretString;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ac = rt.block_on(async {
        let store = Arc::new(SqlStore::memory().await.unwrap());
        // No lockout during the bench: every attempt goes through the full check.
        let config = AccessConfig::builder().lockout(u32::MAX, Duration::from_secs(1), Duration::from_secs(1)).build().unwrap();
        let ac = AccessControl::new(store, config).await.unwrap();
        ac.users.bootstrap_admin("admin@example.com", "Admin", &SecretString::from("Adm1n-passw0rd!")).await.unwrap();
        ac
    });
    let wrong = SecretString::from("Wr0ng-passw0rd!");
    let right = SecretString::from("Adm1n-passw0rd!");
    let mut group = c.benchmark_group("login_owasp_argon2id");
    group.sample_size(20);
    group.bench_function("known_email_wrong_password", |b| {
        b.to_async(&rt).iter(|| async { assert!(ac.auth.login("admin@example.com", &wrong).await.is_err()) })
    });
    group.bench_function("unknown_email", |b| {
        b.to_async(&rt).iter(|| async { assert!(ac.auth.login("ghost@example.com", &wrong).await.is_err()) })
    });
    group.bench_function("known_email_right_password", |b| {
        b.to_async(&rt).iter(|| async { assert!(ac.auth.login("admin@example.com", &right).await.is_ok()) })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
