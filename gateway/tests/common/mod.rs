//! Databases for the gateway's tests: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database when `SWITCHBOARD_TEST_POSTGRES_URL` is set.

#![allow(dead_code)]

use gateway::Directory;
use switchboard_server_kit::Db;

/// The gateway's public and internal listeners on free loopback ports.
pub async fn loopback_listeners() -> gateway::Listeners {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    gateway::Listeners {
        public: bind().await.unwrap(),
        internal: bind().await.unwrap(),
    }
}

/// A directory on a database that lives as long as this value.
pub struct TestDirectory {
    pub directory: Directory,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// A directory on a fresh SQLite file.
pub async fn sqlite() -> TestDirectory {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let directory = Directory::connect(&url).await.unwrap();
    TestDirectory {
        directory,
        url,
        _dir: Some(dir),
    }
}

/// A directory on a fresh PostgreSQL database, or `None` when the run may go without
/// PostgreSQL (`switchboard_server_kit::testing::postgres_url`).
pub async fn postgres() -> Option<TestDirectory> {
    let base = switchboard_server_kit::testing::postgres_url("")?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = Db::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.writer())
        .await
        .unwrap();
    admin.close().await;
    let url = with_database(&base, &name);
    let directory = Directory::connect(&url).await.unwrap();
    Some(TestDirectory {
        directory,
        url,
        _dir: None,
    })
}

/// Declares, for each named `async fn(TestDirectory)`, the tests `<name>::on_sqlite` and
/// `<name>::on_postgres`, so every backend's run is reported by name.
#[macro_export]
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn on_sqlite() {
                super::$test($crate::common::sqlite().await).await;
            }

            #[tokio::test]
            async fn on_postgres() {
                if let Some(db) = $crate::common::postgres().await {
                    super::$test(db).await;
                }
            }
        }
    )+};
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let after_scheme = head.find("://").map_or(0, |i| i + 3);
    let base = match head[after_scheme..].find('/') {
        Some(slash) => &head[..after_scheme + slash],
        None => head,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[test]
fn database_names_are_replaced() {
    assert_eq!(
        with_database("postgres://u@h:5432/switchboard_test", "t_1"),
        "postgres://u@h:5432/t_1"
    );
    assert_eq!(with_database("postgres://h", "t_1"), "postgres://h/t_1");
    assert_eq!(
        with_database("postgresql://h/db?sslmode=disable", "t_1"),
        "postgresql://h/t_1?sslmode=disable"
    );
}
