//! Databases for the tests: a temporary SQLite file always, and a fresh PostgreSQL
//! database per test when `SWITCHBOARD_TEST_POSTGRES_URL` is set.
#![allow(dead_code)]

use conversation_svc::store::Store;
use switchboard_server_kit::testing::{ScratchDatabases, postgres_url};

/// A database the test can use; keeps its temporary directory alive, and drops its
/// PostgreSQL database when dropped (after whatever uses it, as in [`stores`]).
pub struct TestDb {
    /// "sqlite" or "postgres".
    pub name: &'static str,
    /// URL to give to `Store::open` or to the service config.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _databases: Option<ScratchDatabases>,
}

/// A temporary SQLite file.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite:{}", dir.path().join("conversation.db").display());
    TestDb {
        name: "sqlite",
        url,
        _dir: Some(dir),
        _databases: None,
    }
}

/// A fresh database on the test PostgreSQL server, dropped with the [`TestDb`], or `None`
/// when none is configured.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let server = postgres_url(test)?;
    let databases = ScratchDatabases::new(&server, &format!("t_{}", uuid::Uuid::new_v4().simple()));
    let url = databases.create().await.expect("create a test database");
    Some(TestDb {
        name: "postgres",
        url,
        _dir: None,
        _databases: Some(databases),
    })
}

/// One database per backend available: SQLite, and PostgreSQL when configured.
pub async fn databases() -> Vec<TestDb> {
    let mut out = vec![sqlite().await];
    out.extend(postgres("").await);
    out
}

/// Declares, for each named `async fn(TestDb)`, the tests `<name>::on_sqlite` and
/// `<name>::on_postgres`, so every backend's run is reported by name. The PostgreSQL case
/// says it is skipped when no server is configured.
#[macro_export]
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_sqlite() {
                super::$test($crate::support::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                if let Some(db) = $crate::support::postgres(module_path!()).await {
                    super::$test(db).await;
                }
            }
        }
    )+};
}

/// A migrated store on every available backend.
pub async fn stores() -> Vec<(TestDb, Store)> {
    let mut out = Vec::new();
    for db in databases().await {
        let store = Store::open(&db.url)
            .await
            .unwrap_or_else(|e| panic!("{}: open store: {e:#}", db.name));
        out.push((db, store));
    }
    out
}
