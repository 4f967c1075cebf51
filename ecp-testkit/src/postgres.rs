//! Fresh PostgreSQL databases for tests.

use sqlx::{Connection, Executor, PgConnection};

/// The variable naming the test server: `postgres://user:password@127.0.0.1:port/postgres`.
pub const URL_VAR: &str = "ECP_TEST_POSTGRES_URL";

/// Creates an empty database on the test server and returns its URL, or reports the server missing
/// (see [`crate::missing`]) and returns `None`.
///
/// Each call makes a new database (`ecp_test_<uuid>`), so tests never share state; the test script
/// removes the whole server when it is done.
///
/// # Panics
/// Under CI, when the server is missing or refuses.
pub async fn fresh_database() -> Option<String> {
    let Ok(url) = std::env::var(URL_VAR) else {
        crate::missing("PostgreSQL", &format!("{URL_VAR} is not set (run scripts/test)"));
        return None;
    };
    let mut conn = match PgConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            crate::missing("PostgreSQL", &format!("cannot connect to {URL_VAR}: {e}"));
            return None;
        }
    };
    let name = format!("ecp_test_{}", uuid::Uuid::now_v7().simple());
    if let Err(e) = conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await {
        crate::missing("PostgreSQL", &format!("cannot create a database: {e}"));
        return None;
    }
    let _ = conn.close().await;
    Some(replace_database(&url, &name))
}

/// Replaces the database name (the path) of a PostgreSQL URL.
fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn replaces_the_path() {
        assert_eq!(replace_database("postgres://u:p@127.0.0.1:5/postgres", "x"), "postgres://u:p@127.0.0.1:5/x");
        assert_eq!(replace_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
        assert_eq!(replace_database("postgres://u@h:5/db?sslmode=disable", "x"), "postgres://u@h:5/x?sslmode=disable");
    }
}
