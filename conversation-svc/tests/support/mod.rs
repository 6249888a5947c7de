//! Databases for the tests: a temporary SQLite file always, and a fresh PostgreSQL
//! database per test when `SWITCHBOARD_TEST_POSTGRES_URL` is set.
#![allow(dead_code)]

use std::sync::Once;

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

fn note_missing_postgres() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "SWITCHBOARD_TEST_POSTGRES_URL is not set: PostgreSQL runs of these tests are skipped"
        );
    });
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

/// One database per backend available: SQLite, and PostgreSQL when configured.
pub async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite:{}", dir.path().join("conversation.db").display());
    let mut out = vec![TestDb {
        name: "sqlite",
        url,
        _dir: Some(dir),
    }];
    match std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = Db::connect(&base)
                .await
                .expect("connect to the test PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin.pool)
                .await
                .expect("create a test database");
            admin.pool.close().await;
            out.push(TestDb {
                name: "postgres",
                url: with_database(&base, &name),
                _dir: None,
            });
        }
        _ => note_missing_postgres(),
    }
    out
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
