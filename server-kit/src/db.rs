//! Storage plumbing over sqlx's `Any` driver, for SQLite and PostgreSQL alike.
//!
//! Services write each SQL statement once with `$1, $2…` placeholders (both backends
//! accept them), store ids as TEXT and times as BIGINT microseconds since the epoch
//! (the `Any` driver has no UUID or timestamp types), and keep one migration directory
//! per dialect.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyConnection, AnyPool, Executor};

/// The SQL dialect behind a [`Db`], for the rare statement that differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// An embedded SQLite file (the default) or in-memory database.
    Sqlite,
    /// A PostgreSQL server (production).
    Postgres,
}

/// Connection pools and the dialect they speak.
///
/// On SQLite, writes go through **one writer connection** and reads through a pool of
/// read-only connections. SQLite admits one writer at a time anyway; with several pooled
/// writers the losers of each race sleep in SQLite's busy handler (1, 2, 5 … 100 ms
/// steps), which turned a busy moment into second-long tails. With one writer, waiting
/// writers queue in order on the pool instead and each gets the lock the moment the
/// previous commit ends. Readers never wait for the writer (WAL). The read connections
/// are `query_only`, so a write that bypasses [`Db::begin`] or [`Db::writer`] fails at
/// once in tests instead of racing the writer. On PostgreSQL both are the same pool.
#[derive(Clone, Debug)]
pub struct Db {
    /// The read pool; use it with `sqlx::query(…)` for reads. Read-only on SQLite.
    pub pool: AnyPool,
    /// The write pool: a single connection on SQLite, `pool` itself on PostgreSQL.
    writer: AnyPool,
    /// Which backend the pools talk to.
    pub dialect: Dialect,
}

const SQLITE_PRAGMAS: [&str; 4] = [
    // Readers never block the writer and vice versa.
    "PRAGMA journal_mode = WAL",
    // With WAL, survives a process kill; only an OS crash may lose the last commits.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    // A writer waits for another one instead of failing at once.
    "PRAGMA busy_timeout = 5000",
];

/// Read connections on SQLite (the writer is one more).
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

impl Db {
    /// Opens a pool for `url`.
    ///
    /// - `postgres://…` or `postgresql://…`: a PostgreSQL pool of up to 10 connections.
    /// - `sqlite:PATH` or `sqlite://PATH`: the file is created (with its directories) if
    ///   missing, in WAL mode with `synchronous=NORMAL`, foreign keys on and a 5 s busy
    ///   timeout.
    /// - `sqlite::memory:`: a private in-memory database shared by the pool's connections
    ///   and alive as long as the pool.
    /// - `sqlite::memory:LABEL`: the in-memory database of that label in this process, alive
    ///   while any pool holding it is.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();

        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                .connect(url)
                .await?;
            return Ok(Db {
                writer: pool.clone(),
                pool,
                dialect: Dialect::Postgres,
            });
        }

        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(sqlx::Error::Configuration(
                format!(
                    "unsupported database url `{}`: expected sqlite:… or postgres://…",
                    url.split(':').next().unwrap_or_default()
                )
                .into(),
            ));
        };

        let memory = rest
            .strip_prefix(":memory:")
            .or_else(|| rest.strip_prefix("//:memory:"));
        let (writer, pool) = if let Some(label) = memory {
            // A named shared-cache database lives while at least one connection is open:
            // keep the writer open for the life of the pool and never recycle it. A label
            // lets a second pool of the same process open the same database (the dev
            // stack seeds the gateway's directory that way).
            let name = if label.is_empty() {
                format!("switchboard-memory-{}", uuid::Uuid::new_v4().simple())
            } else if label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                format!("switchboard-memory-{label}")
            } else {
                return Err(sqlx::Error::Configuration(
                    "sqlite::memory:LABEL takes letters, digits, '-' and '_' only".into(),
                ));
            };
            let url = format!("sqlite:file:{name}?mode=memory&cache=shared");
            let writer = sqlite_options(false)
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect(&url)
                .await?;
            let pool = sqlite_options(true)
                .max_connections(SQLITE_MAX_CONNECTIONS)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_lazy(&url)?;
            (writer, pool)
        } else {
            let url = sqlite_file_url(rest)?;
            // The writer connects first: it creates the file and turns WAL on.
            let writer = sqlite_options(false)
                .max_connections(1)
                .connect(&url)
                .await?;
            let pool = sqlite_options(true)
                .max_connections(SQLITE_MAX_CONNECTIONS)
                .connect_lazy(&url)?;
            (writer, pool)
        };
        Ok(Db {
            pool,
            writer,
            dialect: Dialect::Sqlite,
        })
    }

    /// Runs the pending migrations of this database's dialect.
    ///
    /// Services declare both sets once, e.g.
    /// `static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");`.
    pub async fn migrate(
        &self,
        sqlite: &Migrator,
        postgres: &Migrator,
    ) -> Result<(), MigrateError> {
        match self.dialect {
            Dialect::Sqlite => sqlite.run(&self.writer).await,
            Dialect::Postgres => postgres.run(&self.writer).await,
        }
    }

    /// Starts a write transaction on the writer.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE` on the one writer connection: transactions queue
    /// for the connection in order, and the write lock is taken up front so that another
    /// process writing the same file (an operator's tool) waits on the busy timeout
    /// instead of deadlocking on a lock upgrade. Never start a second transaction while
    /// holding one: on SQLite it would wait for itself. On PostgreSQL it is a plain
    /// `BEGIN`.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.writer.begin().await,
        }
    }

    /// The write pool, for a single write statement outside a transaction (maintenance
    /// such as purging old rows). Prefer [`Db::begin`].
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Pool options for SQLite connections: the pragmas, and `query_only` for readers.
fn sqlite_options(read_only: bool) -> AnyPoolOptions {
    AnyPoolOptions::new().after_connect(move |conn, _meta| {
        Box::pin(async move {
            apply_sqlite_pragmas(conn).await?;
            if read_only {
                conn.execute("PRAGMA query_only = ON").await?;
            }
            Ok(())
        })
    })
}

async fn apply_sqlite_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in SQLITE_PRAGMAS {
        conn.execute(pragma).await?;
    }
    Ok(())
}

/// Turns `PATH[?params]` (after `sqlite:`) into a URL that creates the file if missing,
/// creating the parent directories first.
fn sqlite_file_url(rest: &str) -> Result<String, sqlx::Error> {
    let (path, params) = match rest.split_once('?') {
        Some((path, params)) => (path, Some(params)),
        None => (rest, None),
    };
    let file = path.strip_prefix("//").unwrap_or(path);
    if file.is_empty() {
        return Err(sqlx::Error::Configuration(
            "sqlite url names no file: use sqlite:PATH or sqlite::memory:".into(),
        ));
    }
    if let Some(parent) = Path::new(file).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let params = match params {
        Some(params) if params.split('&').any(|p| p.starts_with("mode=")) => params.to_owned(),
        Some(params) if !params.is_empty() => format!("{params}&mode=rwc"),
        _ => "mode=rwc".to_owned(),
    };
    Ok(format!("sqlite:{path}?{params}"))
}

/// The current time in microseconds since the unix epoch, the unit of stored times.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as i64
}

/// A stored time (microseconds since the epoch) as a protobuf `Timestamp`.
pub fn micros_to_timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// A protobuf `Timestamp` as a stored time (microseconds since the epoch), truncating
/// sub-microsecond precision and saturating far outside any real date.
pub fn timestamp_to_micros(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(ts.nanos).div_euclid(1_000))
}

/// Whether `err` is a unique-constraint violation, on either backend; used to turn a lost
/// insert race or a duplicate `request_id` into a proper answer.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                // PostgreSQL unique_violation; SQLite UNIQUE and PRIMARY KEY constraints.
                || matches!(db.code().as_deref(), Some("23505" | "2067" | "1555"))
        }
        _ => false,
    }
}

/// What a failed database call means for the client, the same in every service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFailure {
    /// A lost race a retry may win: a serialization failure, a deadlock or a lock not
    /// granted in time (PostgreSQL), a busy database (SQLite), a unique constraint another
    /// writer filled first.
    Conflict,
    /// The database cannot be reached (no connection, pool closed, I/O).
    Unavailable,
    /// Anything else: an internal error.
    Other,
}

/// Classifies `err` for the client's answer (ABORTED, UNAVAILABLE or INTERNAL).
pub fn classify(err: &sqlx::Error) -> DbFailure {
    match err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("40001" | "40P01" | "55P03" | "5" | "6" | "517") => DbFailure::Conflict,
            _ if is_unique_violation(err) => DbFailure::Conflict,
            _ => DbFailure::Other,
        },
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            DbFailure::Unavailable
        }
        _ => DbFailure::Other,
    }
}

/// A private PostgreSQL database for one test, created on the server named by
/// `SWITCHBOARD_TEST_POSTGRES_URL` so that tests running at the same time never share
/// tables or migration history, and dropped when the test ends.
#[cfg(test)]
pub(crate) struct PostgresTestDb {
    pub(crate) db: Db,
    /// Declared after `db`: dropped once the pool is.
    databases: crate::testing::ScratchDatabases,
}

#[cfg(test)]
impl PostgresTestDb {
    /// `None` when the run may go without PostgreSQL ([`crate::testing::postgres_url`]).
    pub(crate) async fn create() -> Option<PostgresTestDb> {
        let url = crate::testing::postgres_url("")?;
        let name = format!("kit_test_{}", uuid::Uuid::new_v4().simple());
        let databases = crate::testing::ScratchDatabases::new(&url, &name);
        let db = Db::connect(&databases.create().await.unwrap())
            .await
            .unwrap();
        Some(PostgresTestDb { db, databases })
    }

    /// Closes the pool and drops the database, failing the test if it cannot.
    pub(crate) async fn drop(self) {
        self.db.close().await;
        self.databases.drop_all().await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    static SQLITE: Migrator = sqlx::migrate!("testdata/migrations/sqlite");
    static POSTGRES: Migrator = sqlx::migrate!("testdata/migrations/postgres");

    fn unique_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Checks every backend must pass: migrations, `$n` binding, unique violations and
    /// concurrent write transactions.
    async fn conformance(db: &Db) {
        db.migrate(&SQLITE, &POSTGRES).await.unwrap();
        // Running again applies nothing and fails nothing.
        db.migrate(&SQLITE, &POSTGRES).await.unwrap();

        // `$n` placeholders bind by number, out of order and reused.
        let id = unique_id();
        let now = now_micros();
        sqlx::query("INSERT INTO kit_items (name, id, created_at) VALUES ($2, $1, $3)")
            .bind(&id)
            .bind("first")
            .bind(now)
            .execute(db.writer())
            .await
            .unwrap();
        let row = sqlx::query(
            "SELECT name, created_at FROM kit_items WHERE id = $1 AND (name = $2 OR id = $1)",
        )
        .bind(&id)
        .bind("nothing")
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>("name"), "first");
        assert_eq!(row.get::<i64, _>("created_at"), now);

        // A duplicate key is recognised; other errors are not.
        let dup = sqlx::query("INSERT INTO kit_items (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind("again")
            .bind(now)
            .execute(db.writer())
            .await
            .unwrap_err();
        assert!(is_unique_violation(&dup), "{dup:?}");
        let orphan = sqlx::query("INSERT INTO kit_children (id, item_id) VALUES ($1, $2)")
            .bind(unique_id())
            .bind(unique_id())
            .execute(db.writer())
            .await
            .unwrap_err();
        assert!(!is_unique_violation(&orphan), "{orphan:?}");

        // Two writers that read, wait, then write both commit, and neither update is lost.
        let counter = unique_id();
        sqlx::query("INSERT INTO kit_items (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&counter)
            .bind("0")
            .bind(now)
            .execute(db.writer())
            .await
            .unwrap();
        let writers = (0..2).map(|_| {
            let db = db.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut tx = db.begin().await?;
                let lock = match db.dialect {
                    Dialect::Sqlite => "",
                    Dialect::Postgres => " FOR UPDATE",
                };
                let current: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT name FROM kit_items WHERE id = $1{lock}"
                )))
                .bind(&counter)
                .fetch_one(&mut *tx)
                .await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let next = current.parse::<i64>().unwrap() + 1;
                sqlx::query("UPDATE kit_items SET name = $1 WHERE id = $2")
                    .bind(next.to_string())
                    .bind(&counter)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap().unwrap();
        }
        let total: String = sqlx::query_scalar("SELECT name FROM kit_items WHERE id = $1")
            .bind(&counter)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(total, "2");

        // A dropped transaction rolls back.
        let rolled_back = unique_id();
        {
            let mut tx = db.begin().await.unwrap();
            sqlx::query("INSERT INTO kit_items (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&rolled_back)
                .bind("gone")
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kit_items WHERE id = $1")
            .bind(&rolled_back)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, 0);
    }

    #[tokio::test]
    async fn sqlite_file_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/kit.db");
        let db = Db::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        assert_eq!(db.dialect, Dialect::Sqlite);
        assert!(
            path.is_file(),
            "database file is created with its directories"
        );
        conformance(&db).await;
    }

    #[tokio::test]
    async fn sqlite_memory_passes_conformance() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        conformance(&db).await;
    }

    #[tokio::test]
    async fn postgres_passes_conformance() {
        let Some(pg) = PostgresTestDb::create().await else {
            return;
        };
        assert_eq!(pg.db.dialect, Dialect::Postgres);
        conformance(&pg.db).await;
        pg.drop().await;
    }

    /// Production databases are reached over TLS: `sslmode=require` must give an
    /// encrypted session (the test server has a throwaway self-signed certificate).
    #[tokio::test]
    async fn postgres_connections_can_require_tls() {
        let Some(url) = crate::testing::postgres_url("") else {
            return;
        };
        if std::env::var("SWITCHBOARD_TEST_POSTGRES_TLS").as_deref() != Ok("1") {
            crate::testing::not_available(
                "",
                "postgres-tls",
                "the test server does not accept TLS (SWITCHBOARD_TEST_POSTGRES_TLS is not 1)",
                "run scripts/test, whose server accepts TLS (it needs openssl), or set \
                 SWITCHBOARD_TEST_POSTGRES_TLS=1 for a server of your own that does",
            );
            return;
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        let db = Db::connect(&format!("{url}{separator}sslmode=require"))
            .await
            .unwrap();
        let encrypted: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert!(encrypted, "sslmode=require gave an unencrypted session");
        let plain = Db::connect(&format!("{url}{separator}sslmode=disable"))
            .await
            .unwrap();
        let encrypted: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&plain.pool)
                .await
                .unwrap();
        assert!(!encrypted, "the check tells encrypted from plain sessions");
    }

    #[tokio::test]
    async fn sqlite_connections_get_the_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/kit.db", dir.path().display()))
            .await
            .unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL");
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(foreign_keys, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(busy, 5000);
    }

    /// The read pool refuses writes, so a write that bypasses the writer fails in tests
    /// instead of competing with it; many concurrent writers all commit, none busy.
    #[tokio::test]
    async fn sqlite_has_one_writer_and_read_only_readers() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/kit.db", dir.path().display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE counted (n BIGINT NOT NULL)")
            .execute(db.writer())
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO counted (n) VALUES (1)")
            .execute(&db.pool)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("readonly"),
            "a read connection wrote: {refused}"
        );
        let writers: Vec<_> = (0..64_i64)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut tx = db.begin().await?;
                    sqlx::query("INSERT INTO counted (n) VALUES ($1)")
                        .bind(i)
                        .execute(&mut *tx)
                        .await?;
                    tokio::task::yield_now().await;
                    tx.commit().await
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM counted")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, 64);
        db.close().await;
    }

    #[tokio::test]
    async fn memory_database_is_shared_by_the_pool_and_private_to_it() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE shared (n BIGINT NOT NULL)")
            .execute(db.writer())
            .await
            .unwrap();
        sqlx::query("INSERT INTO shared (n) VALUES ($1)")
            .bind(42_i64)
            .execute(db.writer())
            .await
            .unwrap();
        // Hold several connections at once: each must see the same database.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(db.pool.acquire().await.unwrap());
        }
        for conn in &mut held {
            let n: i64 = sqlx::query_scalar("SELECT n FROM shared")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(n, 42);
        }
        drop(held);

        // Many concurrent writers on the shared in-memory database all commit.
        let tasks: Vec<_> = (0..8_i64)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut tx = db.begin().await?;
                    sqlx::query("INSERT INTO shared (n) VALUES ($1)")
                        .bind(i)
                        .execute(&mut *tx)
                        .await?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    tx.commit().await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shared")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, 9);

        let other = Db::connect("sqlite::memory:").await.unwrap();
        let missing = sqlx::query("SELECT n FROM shared")
            .fetch_one(&other.pool)
            .await;
        assert!(missing.is_err(), "another in-memory database is separate");
    }

    #[tokio::test]
    async fn labelled_memory_database_is_reachable_from_a_second_pool() {
        let label = uuid::Uuid::new_v4().simple().to_string();
        let first = Db::connect(&format!("sqlite::memory:{label}"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE seeded (n BIGINT NOT NULL)")
            .execute(first.writer())
            .await
            .unwrap();
        let second = Db::connect(&format!("sqlite::memory:{label}"))
            .await
            .unwrap();
        sqlx::query("INSERT INTO seeded (n) VALUES (7)")
            .execute(second.writer())
            .await
            .unwrap();
        second.close().await;
        let n: i64 = sqlx::query_scalar("SELECT n FROM seeded")
            .fetch_one(&first.pool)
            .await
            .unwrap();
        assert_eq!(n, 7, "the second pool wrote into the first pool's database");
        assert!(Db::connect("sqlite::memory:bad label").await.is_err());
    }

    #[tokio::test]
    async fn unsupported_url_is_refused() {
        let err = Db::connect("mysql://localhost/db").await.unwrap_err();
        assert!(matches!(err, sqlx::Error::Configuration(_)), "{err:?}");
    }

    #[test]
    fn sqlite_urls_create_the_file() {
        assert_eq!(
            sqlite_file_url("data/x.db").unwrap(),
            "sqlite:data/x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_file_url("///tmp/x.db").unwrap(),
            "sqlite:///tmp/x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_file_url("x.db?mode=ro").unwrap(),
            "sqlite:x.db?mode=ro"
        );
        assert_eq!(
            sqlite_file_url("x.db?cache=shared").unwrap(),
            "sqlite:x.db?cache=shared&mode=rwc"
        );
        assert!(sqlite_file_url("").is_err());
    }

    #[test]
    fn timestamps_convert_both_ways() {
        for micros in [0, 1, 999_999, 1_700_000_000_123_456, -1, -1_500_000] {
            let ts = micros_to_timestamp(micros);
            assert!((0..1_000_000_000).contains(&ts.nanos), "{ts:?}");
            assert_eq!(timestamp_to_micros(&ts), micros);
        }
        let ts = micros_to_timestamp(-1);
        assert_eq!((ts.seconds, ts.nanos), (-1, 999_999_000));
        let now = now_micros();
        assert!(now > 1_700_000_000_000_000);
    }
}
