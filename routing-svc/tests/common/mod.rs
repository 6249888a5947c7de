//! The store harness shared by the store-level test files: each case runs on a fresh
//! SQLite file and on a fresh PostgreSQL database (on the server named by
//! `SWITCHBOARD_TEST_POSTGRES_URL`; see server-kit `testing::postgres_url` for when a
//! missing server fails the run instead of skipping).

use std::future::Future;

use routing_svc::store::Store;
use switchboard_server_kit::testing::ScratchDatabases;
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

/// Runs `case` on a fresh PostgreSQL database, dropped afterwards (also when `case`
/// panics), or says why it is skipped.
pub async fn on_postgres<F, Fut>(name: &str, case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(server) = switchboard_server_kit::testing::postgres_url(name) else {
        return;
    };
    let databases = ScratchDatabases::new(&server, &format!("t_{}", Uuid::new_v4().simple()));
    let store = Store::open(&databases.create().await.unwrap())
        .await
        .unwrap();
    case(store.clone()).await;
    store.close().await;
    databases.drop_all().await.unwrap();
}
