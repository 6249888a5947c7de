//! Test support: where the tests find PostgreSQL, and when they may go without it.
//!
//! A test that needs PostgreSQL asks [`postgres_url`] for the server. When
//! `SWITCHBOARD_TEST_POSTGRES_URL` is unset, what happens depends on the run:
//!
//! - `SWITCHBOARD_TEST_SKIP` lists `postgres` (a comma separated list of opt-outs, also
//!   read by `scripts/test`): the run opted out, so the test skips that part, saying so;
//! - otherwise, under `CI=true` or `SWITCHBOARD_TEST_REQUIRE_POSTGRES=1` (which
//!   `scripts/test` sets for its tests step): the test panics, saying how to provide a
//!   server or how to opt out, so that a missing database never looks like a pass;
//! - otherwise (a developer's plain `cargo test`): the test skips that part with a note.
//!
//! [`not_available`] applies the same rule to anything else a test cannot go without,
//! such as a test server that accepts TLS (opt-out `postgres-tls`).
//!
//! The databases a test creates on that server belong to a [`ScratchDatabases`] guard,
//! which drops them when the test ends, passed or failed, so that test runs do not fill
//! up a developer's own server.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The variable holding the URL of the test server, whose user must be able to
/// `CREATE DATABASE` (the tests make a fresh database each).
pub const POSTGRES_URL_VAR: &str = "SWITCHBOARD_TEST_POSTGRES_URL";

/// The URL of the test PostgreSQL server, or `None` when `test` may go without one (see
/// the module documentation); panics when the run requires PostgreSQL and has none.
/// An empty `test` names the current test (its thread's name).
#[track_caller]
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            not_available(
                test,
                "postgres",
                &format!("{POSTGRES_URL_VAR} is not set"),
                &format!(
                    "run scripts/test, which starts a throwaway PostgreSQL server, or set \
                     {POSTGRES_URL_VAR}=postgres://USER@HOST:PORT/DB (a user that can CREATE \
                     DATABASE)"
                ),
            );
            None
        }
    }
}

/// `test` cannot run its `opt_out` part because of `reason`: returns (the caller then
/// skips that part) when the run opted out or does not require PostgreSQL, and panics
/// with `how_to_provide` and the opt-out otherwise.
#[track_caller]
pub fn not_available(test: &str, opt_out: &str, reason: &str, how_to_provide: &str) {
    let current = std::thread::current();
    let test = match test {
        "" => current.name().unwrap_or("this test"),
        name => name,
    };
    let skip = std::env::var("SWITCHBOARD_TEST_SKIP").unwrap_or_default();
    if opted_out(&skip, opt_out) {
        eprintln!("SKIPPED ({opt_out}): {test}: {reason}; opted out: SWITCHBOARD_TEST_SKIP={skip}");
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let required = std::env::var("SWITCHBOARD_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    if ci || required {
        let why = if ci {
            "CI=true"
        } else {
            "SWITCHBOARD_TEST_REQUIRE_POSTGRES=1"
        };
        panic!(
            "{test}: {reason}, and this run requires PostgreSQL ({why}).\n\
             To provide it: {how_to_provide}.\n\
             To skip it explicitly instead: SWITCHBOARD_TEST_SKIP={opt_out} (scripts/test \
             then reports it as skipped)."
        );
    }
    eprintln!(
        "NOT RUN ({opt_out}): {test}: {reason}, so it passes without that part. \
         To run it: {how_to_provide}."
    );
}

/// The PostgreSQL databases named `<prefix>` or `<prefix>_…` on one server, dropped when
/// this guard is, so that a test (or a `switchboard bench` run) leaves none behind even
/// when it fails. It drops them all whoever created them: a suite started with storage
/// prefix `<prefix>` creates its own `<prefix>_<service>` databases.
///
/// Drop the guard after whatever uses the databases has stopped (declare it after the
/// pools or servers in a struct, or stop them first): dropping it ends any connection
/// still open to them (`DROP DATABASE … WITH (FORCE)`).
#[derive(Debug)]
pub struct ScratchDatabases {
    server_url: String,
    prefix: String,
    /// Whether dropping the guard drops the databases: no longer after
    /// [`ScratchDatabases::drop_all`] or [`ScratchDatabases::keep`].
    armed: bool,
}

impl ScratchDatabases {
    /// A guard over the databases named from `prefix` on the server at `server_url` (a URL
    /// naming any database there, whose user may create databases). Creates nothing yet.
    /// Panics on an empty prefix, which would name other databases than the caller's.
    pub fn new(server_url: &str, prefix: &str) -> ScratchDatabases {
        assert!(
            !prefix.is_empty(),
            "a scratch database prefix must not be empty"
        );
        ScratchDatabases {
            server_url: server_url.to_owned(),
            prefix: prefix.to_owned(),
            armed: true,
        }
    }

    /// The URL of the server, naming the database it was given.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The name every database of the guard has or starts with (then followed by `_`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates the database `<prefix>` and returns its URL.
    pub async fn create(&self) -> Result<String, sqlx::Error> {
        self.create_named(&self.prefix).await
    }

    /// Creates the database `<prefix>_<suffix>` and returns its URL.
    pub async fn create_suffixed(&self, suffix: &str) -> Result<String, sqlx::Error> {
        self.create_named(&format!("{}_{suffix}", self.prefix))
            .await
    }

    async fn create_named(&self, name: &str) -> Result<String, sqlx::Error> {
        let mut conn = PgConnection::connect(&self.server_url).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {}", quoted(name))))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(with_database(&self.server_url, name))
    }

    /// Drops the databases now, from async code that can wait for it and wants to hear of
    /// a failure; dropping the guard afterwards does nothing.
    pub async fn drop_all(mut self) -> Result<(), sqlx::Error> {
        self.armed = false;
        drop_databases(&self.server_url, &self.prefix).await
    }

    /// Keeps the databases: dropping the guard leaves them in place (for
    /// `switchboard bench --keep-data`).
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for ScratchDatabases {
    /// Drops the databases on a thread of its own with its own runtime, as `drop` cannot
    /// await and may run inside (or outside) a tokio runtime. A failure is reported on
    /// stderr and never panics: a test unwinding from a failed assertion must not abort.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (server_url, prefix) = (self.server_url.clone(), self.prefix.clone());
        let dropper = std::thread::Builder::new()
            .name("drop-scratch-databases".into())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(drop_databases(&server_url, &prefix))
            });
        let failure = match dropper.map(std::thread::JoinHandle::join) {
            Ok(Ok(Ok(()))) => return,
            Ok(Ok(Err(err))) => err.to_string(),
            Ok(Err(_)) => "the thread dropping them panicked".to_owned(),
            Err(err) => format!("no thread to drop them: {err}"),
        };
        eprintln!(
            "could not drop the scratch databases {0} and {0}_* on the test server: {failure}",
            self.prefix
        );
    }
}

/// Drops every database on the server at `server_url` named `prefix` or `prefix_…`,
/// ending the connections still open to them.
async fn drop_databases(server_url: &str, prefix: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(server_url).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname = $1 OR starts_with(datname, $2)",
    )
    .bind(prefix)
    .bind(format!("{prefix}_"))
    .fetch_all(&mut conn)
    .await?;
    for name in names {
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quoted(&name)
        )))
        .execute(&mut conn)
        .await?;
    }
    conn.close().await
}

/// `name` as a quoted SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `url` (a PostgreSQL URL) with its database name replaced by `name`, keeping its query
/// (such as `sslmode`).
pub fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let authority = head.find("://").map_or(0, |i| i + 3);
    let server = head[authority..]
        .find('/')
        .map_or(head, |slash| &head[..authority + slash]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Whether the comma separated `list` holds `opt_out`.
fn opted_out(list: &str, opt_out: &str) -> bool {
    list.split(',').any(|item| item.trim() == opt_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_outs_are_listed_by_name() {
        assert!(opted_out("postgres", "postgres"));
        assert!(opted_out("clippy, postgres", "postgres"));
        assert!(opted_out("k8s,postgres-tls", "postgres-tls"));
        assert!(!opted_out("postgres", "postgres-tls"));
        assert!(!opted_out("postgres-tls", "postgres"));
        assert!(!opted_out("", "postgres"));
        assert!(!opted_out("postgresql,k8s", "postgres"));
    }

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5/switchboard_test?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
        assert_eq!(with_database("postgres://h", "t_1"), "postgres://h/t_1");
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "t_1"),
            "postgresql://h/t_1?sslmode=disable"
        );
    }

    /// The names of the databases on the server at `url` starting with `start`.
    async fn listed(url: &str, start: &str) -> Vec<String> {
        let mut conn = PgConnection::connect(url).await.unwrap();
        let mut names: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)",
        )
        .bind(start)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        names.sort();
        names
    }

    /// Dropping the guard drops the databases it names, even with a connection still open
    /// to one, and no other database; `drop_all` does the same, and `keep` keeps them.
    #[tokio::test]
    async fn scratch_databases_are_dropped_with_their_guard() {
        let Some(server) = postgres_url("") else {
            return;
        };
        let prefix = format!("kit_scratch_{}", uuid::Uuid::new_v4().simple());
        let databases = ScratchDatabases::new(&server, &prefix);
        let url = databases.create().await.unwrap();
        databases.create_suffixed("extra").await.unwrap();
        let neighbour = ScratchDatabases::new(&server, &format!("{prefix}x"));
        neighbour.create().await.unwrap();
        let db = crate::Db::connect(&url).await.unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(one, 1, "the database's URL reaches it");
        assert_eq!(
            listed(&server, &prefix).await,
            [
                prefix.clone(),
                format!("{prefix}_extra"),
                format!("{prefix}x")
            ]
        );

        drop(databases);
        assert_eq!(
            listed(&server, &prefix).await,
            [format!("{prefix}x")],
            "the guard dropped its databases, and only those"
        );
        db.close().await;

        neighbour.drop_all().await.unwrap();
        assert_eq!(listed(&server, &prefix).await, Vec::<String>::new());

        let kept = ScratchDatabases::new(&server, &prefix);
        kept.create().await.unwrap();
        kept.keep();
        assert_eq!(listed(&server, &prefix).await, vec![prefix.clone()]);
        drop(ScratchDatabases::new(&server, &prefix));
        assert_eq!(listed(&server, &prefix).await, Vec::<String>::new());
    }
}
