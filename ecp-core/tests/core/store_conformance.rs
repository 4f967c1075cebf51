//! The store conformance suite: every test runs against SQLite (a file, several connections) and
//! against PostgreSQL (a fresh database on the server of `ECP_TEST_POSTGRES_URL`, which
//! `scripts/test` starts). Under `CI=true` a missing PostgreSQL fails the PostgreSQL half.

mod conformance;

use std::sync::Arc;

use ecp_core::{ManualClock, SqlStore, SqlStoreConfig};
use secrecy::SecretString;

/// A store under test, the clock it reads, and a raw connection URL for tampering.
pub(crate) struct Fixture {
    pub(crate) store: Arc<SqlStore>,
    pub(crate) clock: ManualClock,
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ecp.db");
    let clock = ManualClock::starting_now();
    let config = SqlStoreConfig::sqlite_file(&path).max_connections(4).clock(Arc::new(clock.clone())).build().expect("config");
    let store = SqlStore::connect(config).await.expect("sqlite store");
    Fixture { store: Arc::new(store), clock, url: format!("sqlite://{}", path.display()), _dir: Some(dir) }
}

pub(crate) async fn postgres() -> Option<Fixture> {
    let url = ecp_testkit::postgres::fresh_database().await?;
    let clock = ManualClock::starting_now();
    let config = SqlStoreConfig::builder(SecretString::from(url.clone())).max_connections(8).clock(Arc::new(clock.clone())).build();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            ecp_testkit::missing("the postgres feature of ecp-core", &e.to_string());
            return None;
        }
    };
    let store = SqlStore::connect(config).await.expect("postgres store");
    Some(Fixture { store: Arc::new(store), clock, url, _dir: None })
}

/// Declares each test once and runs it on both backends.
macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let f = crate::store_conformance::sqlite().await;
                    crate::store_conformance::conformance::$module::$name(&f).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(f) = crate::store_conformance::postgres().await else { return };
                    crate::store_conformance::conformance::$module::$name(&f).await;
                }
            )*
        }
    };
}

conformance! {
    tenancy::orgs_create_get_list_rename_delete,
    tenancy::org_limit_holds,
    tenancy::projects_and_their_limits,
    tenancy::org_with_projects_cannot_be_deleted,
    tenancy::project_with_resources_cannot_be_deleted,
    tenancy::resources_move_between_projects,
    tenancy::concurrent_creates_and_deletes_hold_the_limits_exactly,
    tenancy::bad_pages_are_refused,
    identity::users_create_find_update_delete,
    identity::bindings_need_membership_and_agree_with_their_scope,
    identity::removing_a_member_or_project_removes_its_bindings,
    identity::custom_roles,
    identity::sessions_rotate_once_and_revoke,
    identity::disabling_or_a_new_password_revokes_sessions,
    identity::api_keys,
    identity::single_use_tokens,
    identity::login_failures_lock_and_count_exactly,
    audit::every_mutation_is_audited_in_its_transaction,
    audit::queries_filter_and_page_newest_first,
    audit::concurrent_appends_never_fork_the_chain,
    audit::tampering_is_detected,
    audit::reencoded_ids_and_flags_are_tampering,
    audit::search_keys_are_filled_for_older_rows,
    tasks::tasks_targets_exclusivity_and_leases,
    tasks::the_engine_runs_a_task_to_its_end,
    edge::edge_services_tags_and_selectors,
    edge::a_large_import_in_one_call,
    edge::imported_rows_round_trip_exactly,
    edge::templates_are_versioned,
    agents::agents_appear_are_managed_and_guard_their_services,
    agents::claims_are_used_once_and_hellos_are_capped,
    agents::desired_items_version_and_converge,
    agents::reports_are_recorded_in_one_batch,
    agents::concurrent_puts_keep_versions_unique,
    agents::many_items_are_put_in_one_call,
    clusters::clusters_license_pool_transfer_and_project_guard,
    clusters::concurrent_registrations_never_overshoot_the_license,
    documents::documents_are_kept_by_kind_and_key,
}

#[tokio::test]
async fn in_memory_sqlite_works_with_one_connection() {
    let store = SqlStore::memory().await.unwrap();
    use ecp_core::Store;
    store.ping().await.unwrap();
    assert_eq!(store.backend(), "sqlite");
}

#[test]
fn config_refuses_bad_urls_and_hides_secrets() {
    let err = SqlStoreConfig::builder(SecretString::from("mysql://root:hunter2@db/x")).build().unwrap_err();
    assert!(err.to_string().contains("url"));
    assert!(!err.to_string().contains("hunter2"));
    let cfg = SqlStoreConfig::builder(SecretString::from("postgres://ecp:hunter2@127.0.0.1:1/x")).build();
    if let Ok(cfg) = cfg {
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
    assert!(SqlStoreConfig::sqlite_memory().max_connections(0).build().is_ok(), "memory forces one connection");
    assert!(SqlStoreConfig::sqlite_file("/tmp/x.db").max_connections(0).build().is_err());
}
