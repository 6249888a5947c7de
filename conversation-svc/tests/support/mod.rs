//! Databases for the tests: a temporary SQLite file always, and a fresh PostgreSQL
//! database per test when `SWITCHBOARD_TEST_POSTGRES_URL` is set.
#![allow(dead_code)]

use conversation_svc::store::Store;
use switchboard_server_kit::Db;

/// A database the test can use; keeps its temporary directory alive.
pub struct TestDb {
    /// "sqlite" or "postgres".
    pub name: &'static str,
    /// URL to give to `Store::open` or to the service config.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// The URL of `base` with its database name replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (base, None),
    };
    let prefix = match head.rfind('/') {
        Some(i) if i > "postgres://".len() => &head[..i],
        _ => head,
    };
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}

/// The base URL of the test PostgreSQL server, or `None` when none is configured.
fn postgres_url(test: &str) -> Option<String> {
    switchboard_server_kit::testing::postgres_url(test)
}

/// A temporary SQLite file.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite:{}", dir.path().join("conversation.db").display());
    TestDb {
        name: "sqlite",
        url,
        _dir: Some(dir),
    }
}

/// A fresh database on the test PostgreSQL server, or `None` when none is configured.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let base = postgres_url(test)?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = Db::connect(&base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.writer())
        .await
        .expect("create a test database");
    admin.close().await;
    Some(TestDb {
        name: "postgres",
        url: with_database(&base, &name),
        _dir: None,
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

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://u@h:5/base", "t_1"),
        "postgres://u@h:5/t_1"
    );
    assert_eq!(
        with_database("postgres://u@h:5/base?sslmode=disable", "t_1"),
        "postgres://u@h:5/t_1?sslmode=disable"
    );
}
