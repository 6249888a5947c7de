//! Storage plumbing over sqlx's `Any` driver, for SQLite and PostgreSQL alike.
//!
//! Services write each SQL statement once with `$1, $2…` placeholders (both backends
//! accept them), store ids as TEXT and times as BIGINT microseconds since the epoch
//! (the `Any` driver has no UUID or timestamp types), and keep one migration directory
//! per dialect.

use std::path::Path;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnection, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyPool, Executor};

/// The SQL dialect behind a [`Db`], for the rare statement that differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// An embedded SQLite file (the default) or in-memory database.
    Sqlite,
    /// A PostgreSQL server (production).
    Postgres,
}

/// A connection pool and the dialect it speaks.
#[derive(Clone, Debug)]
pub struct Db {
    /// The pool; use it with `sqlx::query(…)` for reads and single statements.
    pub pool: AnyPool,
    /// Which backend the pool talks to.
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
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                .connect(url)
                .await?;
            return Ok(Db {
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

        let options = AnyPoolOptions::new()
            .after_connect(|conn, _meta| Box::pin(apply_sqlite_pragmas(conn)));
        let pool = if matches!(rest, ":memory:" | "//:memory:") {
            // A named shared-cache database lives while at least one connection is open:
            // keep one open for the life of the pool and never recycle it.
            let name = format!("switchboard-memory-{}", uuid::Uuid::new_v4().simple());
            options
                .min_connections(1)
                .max_connections(SQLITE_MAX_CONNECTIONS)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect(&format!("sqlite:file:{name}?mode=memory&cache=shared"))
                .await?
        } else {
            options
                .max_connections(SQLITE_MAX_CONNECTIONS)
                .connect(&sqlite_file_url(rest)?)
                .await?
        };
        Ok(Db {
            pool,
            dialect: Dialect::Sqlite,
        })
    }

    /// Runs the pending migrations of this database's dialect.
    ///
    /// Services declare both sets once, e.g.
    /// `static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");`.
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> Result<(), MigrateError> {
        match self.dialect {
            Dialect::Sqlite => sqlite.run(&self.pool).await,
            Dialect::Postgres => postgres.run(&self.pool).await,
        }
    }

    /// Starts a write transaction.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up front, so two
    /// writers queue on the busy timeout instead of deadlocking when both try to upgrade
    /// a read lock. On PostgreSQL it is a plain `BEGIN`.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }
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
