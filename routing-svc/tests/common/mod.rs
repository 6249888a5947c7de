//! The store harness shared by the store-level test files: each case runs on a fresh
//! SQLite file and on a fresh PostgreSQL database (on the server named by
//! `SWITCHBOARD_TEST_POSTGRES_URL`; see server-kit `testing::postgres_url` for when a
//! missing server fails the run instead of skipping).

use std::future::Future;

use routing_svc::store::Store;
use switchboard_server_kit::db::Db;
use uuid::Uuid;

/// Declares, for each named `async fn(Store)`, the tests `<name>::on_sqlite` (a fresh
/// SQLite file) and `<name>::on_postgres` (a fresh database on the test server, dropped
/// afterwards).
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_sqlite() {
                crate::common::on_sqlite(super::$test).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                crate::common::on_postgres(stringify!($test), super::$test).await;
            }
        }
    )+};
}

/// Runs `case` on a fresh SQLite file.
pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("routing.db").display());
    let store = Store::open(&url).await.unwrap();
    case(store.clone()).await;
    store.close().await;
}

/// Runs `case` on a fresh PostgreSQL database, dropped afterwards, or says why it is
/// skipped.
pub async fn on_postgres<F, Fut>(name: &str, case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(admin_url) = switchboard_server_kit::testing::postgres_url(name) else {
        return;
    };
    let database = format!("t_{}", Uuid::new_v4().simple());
    let admin = Db::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(admin.writer())
        .await
        .unwrap();
    let store = Store::open(&with_database(&admin_url, &database))
        .await
        .unwrap();
    case(store.clone()).await;
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {database} WITH (FORCE)"
    )))
    .execute(admin.writer())
    .await
    .unwrap();
    admin.close().await;
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host = base[scheme_end..]
        .find('/')
        .map_or(base, |slash| &base[..scheme_end + slash]);
    match query {
        Some(query) => format!("{host}/{database}?{query}"),
        None => format!("{host}/{database}"),
    }
}
