//! Storage of routing-svc over SQLite or PostgreSQL through server-kit's [`Db`].
//!
//! Every statement is written once with `$n` placeholders; ids are TEXT, times BIGINT
//! microseconds, enums the contract's numbers and lists JSON text. Writes go through a
//! [`Tx`], which collects the events of the change and appends them with the sequence
//! taken last, so that event order is commit order.

pub mod catalog;
pub mod events;
pub mod outbox;
pub mod page;
pub mod routing;

use std::collections::BTreeSet;

use prost::Message;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Row};
use switchboard_server_kit::changes::{self, Changes};
use switchboard_server_kit::db::{Db, Dialect, is_unique_violation};
use switchboard_server_kit::idempotency;

use crate::error::{Error, Result};
use crate::store::page::PageRequest;

pub use events::{Event, EventData, NewEvent, Topic, kind};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The routing database, shared by the API, the matcher and the dispatcher.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// Wakes the live streams a commit concerns.
    changes: Changes<Topic>,
}

impl Store {
    /// Connects to `url` and applies the migrations of its dialect.
    pub async fn open(url: &str) -> Result<Store> {
        let db = Db::connect(url).await?;
        Store::migrate(db).await
    }

    /// Applies the migrations of `db`'s dialect and wraps it.
    pub async fn migrate(db: Db) -> Result<Store> {
        db.migrate(&SQLITE, &POSTGRES)
            .await
            .map_err(|err| Error::Internal(format!("migrations failed: {err}")))?;
        Ok(Store {
            db,
            changes: Changes::new(),
        })
    }

    /// The database, for maintenance such as purging the request log.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The backend in use.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect
    }

    /// A pooled connection for reads.
    pub async fn conn(&self) -> Result<PoolConnection<Any>> {
        Ok(self.db.pool.acquire().await?)
    }

    /// Starts a write transaction (BEGIN IMMEDIATE on SQLite).
    pub async fn begin(&self) -> Result<Tx> {
        Ok(Tx {
            inner: self.db.begin().await?,
            dialect: self.db.dialect,
            events: Vec::new(),
            changes: self.changes.clone(),
            agents_locked: BTreeSet::new(),
        })
    }

    /// The response already recorded for this request, read outside any transaction: lets
    /// a retry be answered before another service is asked again. The same key with a
    /// different request is INVALID_ARGUMENT on `request_id`.
    pub async fn replay<M: Message + Default>(
        &self,
        key: &idempotency::RequestKey<'_>,
    ) -> Result<Option<M>> {
        let mut conn = self.conn().await?;
        idempotency::lookup(&mut conn, key)
            .await?
            .into_replay(key)
            .map_err(|reused| Error::invalid(idempotency::FIELD, reused.to_string()))
    }

    /// The change notices streams wait on; commits of this process publish to them.
    pub fn changes(&self) -> &Changes<Topic> {
        &self.changes
    }

    /// Follows the event log for other replicas' commits until `stop`, reading every
    /// `poll` while any stream listens. Call before serving: it reads where to start.
    pub async fn follow_changes(
        &self,
        poll: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let cursor = events::last_sequence(&mut *self.conn().await?).await?;
        let end = self.clone();
        let read = self.clone();
        Ok(changes::spawn_follower(
            self.changes.clone(),
            poll,
            stop,
            cursor,
            move || {
                let store = end.clone();
                async move { events::last_sequence(&mut *store.conn().await?).await }
            },
            move |cursor| {
                let store = read.clone();
                async move {
                    events::topics_after(&mut *store.conn().await?, cursor, changes::FOLLOW_BATCH)
                        .await
                }
            },
        ))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// A write transaction with the events of its change.
pub struct Tx {
    inner: sqlx::Transaction<'static, Any>,
    dialect: Dialect,
    events: Vec<NewEvent>,
    changes: Changes<Topic>,
    /// The agent rows locked so far, as (tenant, agent): see `catalog::lock_agents`.
    agents_locked: BTreeSet<(String, String)>,
}

impl Tx {
    /// The transaction's connection.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }

    /// The backend the transaction runs on, for the few statements that differ.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Notes that the tenant's `agents` are locked; returns those not locked before, and
    /// whether any of them sorts below an agent of the tenant already locked (a lock out of
    /// order, see `catalog::lock_agents`).
    pub(crate) fn note_agents_locked<'a>(
        &mut self,
        tenant_id: &str,
        agents: impl IntoIterator<Item = &'a str>,
    ) -> (Vec<&'a str>, bool) {
        let highest = self
            .agents_locked
            .range((tenant_id.to_owned(), String::new())..)
            .take_while(|(tenant, _)| tenant == tenant_id)
            .map(|(_, agent)| agent.clone())
            .last();
        let mut new: Vec<&str> = agents
            .into_iter()
            .filter(|agent| {
                !self
                    .agents_locked
                    .contains(&(tenant_id.to_owned(), (*agent).to_owned()))
            })
            .collect();
        new.sort_unstable();
        new.dedup();
        let out_of_order = match (&highest, new.first()) {
            (Some(highest), Some(lowest)) => *lowest < highest.as_str(),
            _ => false,
        };
        self.agents_locked.extend(
            new.iter()
                .map(|agent| (tenant_id.to_owned(), (*agent).to_owned())),
        );
        (new, out_of_order)
    }

    /// Records an event of this change; it is appended at commit.
    pub fn event(&mut self, event: NewEvent) {
        self.events.push(event);
    }

    /// The response already recorded for this request, if it was applied before; the same
    /// key with a different request is INVALID_ARGUMENT on `request_id`.
    pub async fn replay<M: Message + Default>(
        &mut self,
        key: &idempotency::RequestKey<'_>,
    ) -> Result<Option<M>> {
        idempotency::lookup(self.conn(), key)
            .await?
            .into_replay(key)
            .map_err(|reused| Error::invalid(idempotency::FIELD, reused.to_string()))
    }

    /// Records the response of this request with the change, for [`Tx::replay`]. A
    /// concurrent twin of the same request loses here with ABORTED; its retry replays.
    pub async fn remember<M: Message>(
        &mut self,
        key: &idempotency::RequestKey<'_>,
        response: &M,
    ) -> Result<()> {
        idempotency::record(self.conn(), key, response)
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    Error::Conflict(format!(
                        "request {} is being applied concurrently; retry",
                        key.request_id
                    ))
                } else {
                    err.into()
                }
            })
    }

    /// Appends the events (the sequence counter is the last row touched) and commits.
    pub async fn commit(mut self) -> Result<()> {
        let events = std::mem::take(&mut self.events);
        let last = events::append(self.conn(), &events).await?;
        self.inner.commit().await?;
        if let Some(last) = last {
            let first = last - events.len() as i64 + 1;
            self.changes.publish_committed(
                first..=last,
                events
                    .iter()
                    .flat_map(|event| events::topics(&event.tenant_id, &event.agent_id)),
            );
        }
        Ok(())
    }

    /// Abandons the change.
    pub async fn rollback(self) -> Result<()> {
        self.inner.rollback().await?;
        Ok(())
    }
}

/// Decodes a JSON text column.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text)
        .map_err(|err| Error::Internal(format!("column {column} holds bad JSON: {err}")))
}

/// Encodes a value for a JSON text column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

/// Reads an integer column into an `i32`.
pub(crate) fn int_column(row: &AnyRow, column: &str) -> Result<i32> {
    let value: i64 = row.try_get(column)?;
    i32::try_from(value).map_err(|_| Error::Internal(format!("column {column} out of range")))
}

/// Reads an enum column through its `from_i32`.
pub(crate) fn enum_column<T>(row: &AnyRow, column: &str, from: fn(i32) -> Option<T>) -> Result<T> {
    let value = int_column(row, column)?;
    from(value).ok_or_else(|| Error::Internal(format!("column {column} holds unknown {value}")))
}

/// A statement with its parameters bound, ready to run on either backend.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// Runs `query` and maps the row it returns, if any, with `from_row`.
pub(crate) async fn fetch_optional<T>(
    conn: &mut AnyConnection,
    query: AnyQuery<'_>,
    from_row: fn(&AnyRow) -> Result<T>,
) -> Result<Option<T>> {
    let row = query.fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// Runs `query` and maps every row it returns with `from_row`.
pub(crate) async fn fetch_all<T>(
    conn: &mut AnyConnection,
    query: AnyQuery<'_>,
    from_row: fn(&AnyRow) -> Result<T>,
) -> Result<Vec<T>> {
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Runs the query of one page of list `list` (limited to [`PageRequest::fetch_limit`])
/// and returns the page with the next page's token, built from each item's sort `key`.
pub(crate) async fn fetch_page<T>(
    conn: &mut AnyConnection,
    query: AnyQuery<'_>,
    from_row: fn(&AnyRow) -> Result<T>,
    list: &str,
    request: &PageRequest,
    key: impl Fn(&T) -> Vec<String>,
) -> Result<(Vec<T>, String)> {
    let items = fetch_all(conn, query, from_row).await?;
    Ok(page::finish(list, request, items, key))
}

/// Runs a conditional write and says whether it changed exactly one row: how a change
/// knows it won a race against another replica.
pub(crate) async fn changes_one_row(conn: &mut AnyConnection, query: AnyQuery<'_>) -> Result<bool> {
    Ok(query.execute(&mut *conn).await?.rows_affected() == 1)
}

/// The tenant's row `id` of `table`, read as `columns` and mapped with `from_row`.
pub(crate) async fn get_by_id<T>(
    conn: &mut AnyConnection,
    table: &str,
    columns: &str,
    tenant_id: &str,
    id: &str,
    from_row: fn(&AnyRow) -> Result<T>,
) -> Result<Option<T>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {table} WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant_id)
    .bind(id);
    fetch_optional(conn, query, from_row).await
}

/// `$from, $from+1, …`: `count` placeholders for values bound in that order, for an
/// `IN (…)` list whose values are bound, never written into the SQL.
pub(crate) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A count or a number of units as an `i32`, `i32::MAX` when it does not fit.
pub(crate) fn i32_or_max(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
