//! Databases for the gateway's tests: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database when `SWITCHBOARD_TEST_POSTGRES_URL` is set.

#![allow(dead_code)]

use gateway::Directory;
use switchboard_server_kit::testing::ScratchDatabases;

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
    /// Declared after `directory`: the PostgreSQL database is dropped once its pool is.
    _databases: Option<ScratchDatabases>,
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
        _databases: None,
    }
}

/// A directory on a fresh PostgreSQL database, dropped with the [`TestDirectory`], or
/// `None` when the run may go without PostgreSQL
/// (`switchboard_server_kit::testing::postgres_url`).
pub async fn postgres() -> Option<TestDirectory> {
    let server = switchboard_server_kit::testing::postgres_url("")?;
    let databases = ScratchDatabases::new(&server, &format!("t_{}", uuid::Uuid::new_v4().simple()));
    let url = databases.create().await.unwrap();
    let directory = Directory::connect(&url).await.unwrap();
    Some(TestDirectory {
        directory,
        url,
        _dir: None,
        _databases: Some(databases),
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
