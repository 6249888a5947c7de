//! Facts and consumer cursors, on SQLite or PostgreSQL through server-kit's [`Db`].
//!
//! Every run of events is applied in one transaction with the cursor of its source, a
//! position in the source's service-wide log (`log_sequence`, never an event's
//! per-conversation `sequence`). The transaction reads the cursor first (locking its row
//! on PostgreSQL, which serializes concurrent consumers), applies only the entries after
//! it, and moves it with a conditional update (`log_sequence < new`), so a crash or a
//! replay never loses nor double-counts an event. A consumer folds its next run while the
//! last is written ([`FoldedRun`]); that run's transaction writes only if the cursor still
//! stands where the run was folded after.

use std::collections::BTreeSet;

use sqlx::any::AnyRow;
use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, Row};
use switchboard_server_kit::{Db, Dialect};

mod activity;
mod conversations;
mod ledger;
mod metrics;
mod names;
mod snapshot;

pub use ledger::LedgerQuery;
pub use metrics::GroupBy;
pub use snapshot::{ConversationQuery, Snapshot};

use crate::domain::facts::{AssignmentFact, ConversationFacts, Event};
use crate::domain::ledger as ledger_rules;
use crate::domain::metrics::{Metric, Occurrence, RoutingEvent, of_routing_event};
use crate::domain::reports::{ClosedConversation, OpenConversations};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The cursor name of conversation-svc's event log.
pub const CONVERSATION_EVENTS: &str = "conversation-svc";

/// The cursor name of routing-svc's event log.
pub const ROUTING_EVENTS: &str = "routing-svc";

/// One event to apply, from either log.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// A conversation-svc event: folded into the conversation's facts, then counted.
    Conversation(&'a Event),
    /// A routing-svc event: counted.
    Routing(&'a RoutingEvent),
}

impl<'a> From<&'a Event> for Entry<'a> {
    fn from(event: &'a Event) -> Entry<'a> {
        Entry::Conversation(event)
    }
}

impl<'a> From<&'a RoutingEvent> for Entry<'a> {
    fn from(event: &'a RoutingEvent) -> Entry<'a> {
        Entry::Routing(event)
    }
}

/// What [`Store::apply_following`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Following {
    /// This many entries were new and applied.
    Applied(u64),
    /// The stored cursor is behind where the consumer stands: the reports were rebuilt
    /// ([`Store::rebuild`]) under it. Nothing was applied; subscribe again from the cursor.
    Rebuilt,
    /// The stored cursor is past where a folded run starts: another consumer applied
    /// entries meanwhile, so the facts the run was folded on may be old. Nothing was
    /// applied; subscribe again from the cursor.
    Moved,
}

/// A run of log entries folded in memory: what its transaction writes, and the facts it
/// leaves, from which the next run can fold while this one is written
/// ([`Store::fold_ahead`]). A catch-up then costs about the slower of folding and
/// writing rather than their sum.
#[derive(Debug)]
pub struct FoldedRun {
    /// The cursor the run continues.
    after: i64,
    /// Its last entry's log position.
    last: i64,
    /// How many of its entries are after `after`.
    applied: u64,
    conversations: conversations::ConversationRun,
    agents: activity::AgentStates,
    occurrences: Vec<Occurrence>,
    ledger: ledger::LedgerRun,
}

impl FoldedRun {
    /// The log position of the run's last entry.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Folds the entries after `after`, reading on `conn` the facts of the conversations
    /// and agents they name, except those `previous` (the run before, not yet written)
    /// holds.
    async fn fold(
        conn: &mut sqlx::AnyConnection,
        dialect: Dialect,
        after: i64,
        entries: &[(i64, Option<Entry<'_>>)],
        previous: Option<&FoldedRun>,
    ) -> Result<FoldedRun, sqlx::Error> {
        let fresh = || {
            entries
                .iter()
                .filter(move |(sequence, _)| *sequence > after)
        };
        let mut conversations = conversations::ConversationRun::load(
            conn,
            dialect,
            fresh().filter_map(|(_, entry)| match entry {
                Some(Entry::Conversation(event)) => Some(event.conversation_id.as_str()),
                _ => None,
            }),
            previous.map(|run| &run.conversations),
        )
        .await?;
        let mut agents = activity::AgentStates::load(
            conn,
            dialect,
            fresh().filter_map(|(_, entry)| match entry {
                Some(Entry::Routing(event)) => Some(*event),
                _ => None,
            }),
            previous.map(|run| &run.agents),
        )
        .await?;
        let mut applied = 0;
        let mut occurrences: Vec<Occurrence> = Vec::new();
        let mut ledger = ledger::LedgerRun::default();
        for (log_sequence, entry) in fresh() {
            applied += 1;
            match entry {
                None => {}
                Some(Entry::Routing(event)) => {
                    occurrences.extend(of_routing_event(event));
                    agents.fold(event, &mut occurrences);
                    ledger.extend(ledger_rules::of_routing_event(event));
                }
                Some(Entry::Conversation(event)) => {
                    conversations.fold(*log_sequence, event, &mut occurrences);
                    ledger.extend(ledger_rules::of_conversation_event(event));
                }
            }
        }
        Ok(FoldedRun {
            after,
            last: entries
                .iter()
                .map(|(sequence, _)| *sequence)
                .max()
                .unwrap_or(after)
                .max(after),
            applied,
            conversations,
            agents,
            occurrences,
            ledger,
        })
    }
}

/// Whether [`Store::apply`] changed anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event was new: facts and cursor moved together.
    Applied,
    /// The event was at or below the cursor: nothing changed.
    AlreadyApplied,
}

/// Which facts a report reads: one tenant, a half-open time range, optional filters
/// (empty means all).
#[derive(Clone, Copy, Debug)]
pub struct FactQuery<'a> {
    /// The tenant.
    pub tenant_id: &'a str,
    /// Inclusive start, microseconds since the epoch.
    pub start: i64,
    /// Exclusive end, microseconds since the epoch.
    pub end: i64,
    /// Only these queues.
    pub queue_ids: &'a [String],
    /// Only these channels (`switchboard.common.v1.Channel` numbers).
    pub channels: &'a [i32],
    /// Only these agents (receiving or closing agent).
    pub agent_ids: &'a [String],
}

/// The reporting database.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// The numbers rollups are keyed by, as far as seen.
    names: std::sync::Arc<names::Names>,
}

enum Bind {
    Text(String),
    Int(i64),
}

/// A statement built together with its bind values.
///
/// Placeholders are `$n` on PostgreSQL and anonymous `?` on SQLite: there, binding a
/// numbered placeholder looks its name up in a list as long as the statement's
/// placeholders, which made a multi-row insert of 6,000 values spend most of its time
/// binding; anonymous ones bind in order, in constant time each.
struct Sql {
    text: String,
    binds: Vec<Bind>,
    dialect: Dialect,
}

impl Sql {
    fn new(dialect: Dialect, text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            binds: Vec::new(),
            dialect,
        }
    }

    fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, bind: Bind) -> &mut Sql {
        self.binds.push(bind);
        match self.dialect {
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.binds.len().to_string());
            }
            Dialect::Sqlite => self.text.push('?'),
        }
        self
    }

    /// `AND column IN ($n, …)` when `values` is not empty.
    fn and_in(&mut self, column: &str, values: impl ExactSizeIterator<Item = Bind>) -> &mut Sql {
        if values.len() == 0 {
            return self;
        }
        self.push(" AND ").is_in(column, values)
    }

    /// `column IN ($n, …)`; `values` must not be empty.
    fn is_in(&mut self, column: &str, values: impl Iterator<Item = Bind>) -> &mut Sql {
        self.push(&format!("{column} IN ("));
        for (index, value) in values.enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }

    /// The queue and channel filters, and the agent filter on `agent_column` when the
    /// facts have one.
    fn filters(&mut self, query: &FactQuery<'_>, agent_column: Option<&str>) -> &mut Sql {
        self.and_in(
            "queue_id",
            query.queue_ids.iter().map(|id| Bind::Text(id.clone())),
        )
        .and_in(
            "channel",
            query.channels.iter().map(|&c| Bind::Int(i64::from(c))),
        );
        if let Some(column) = agent_column {
            self.and_in(
                column,
                query.agent_ids.iter().map(|id| Bind::Text(id.clone())),
            );
        }
        self
    }

    /// The statement with its values bound.
    fn query(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text));
        for bind in self.binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(int) => query.bind(int),
            };
        }
        query
    }

    async fn fetch_all(self, db: &Db) -> Result<Vec<AnyRow>, sqlx::Error> {
        self.query().fetch_all(&db.pool).await
    }
}

/// The type of a column of [`json_rows`].
#[derive(Clone, Copy)]
enum Column {
    Text,
    /// An integer, or null.
    Int,
}

/// `SELECT` of the rows in the JSON array bound as `$1`, each an array of values typed
/// by `columns`: a multi-row write as one statement whose text never changes however many
/// rows it carries. Each database then prepares it once per connection and binds one
/// value, where a `VALUES` list was a new statement for every row count, described and
/// prepared anew with thousands of values to bind.
fn json_rows(dialect: Dialect, columns: &[Column]) -> String {
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(index, column)| match (dialect, column) {
            (Dialect::Postgres, Column::Text) => format!("row ->> {index}"),
            (Dialect::Postgres, Column::Int) => format!("CAST(row ->> {index} AS BIGINT)"),
            (Dialect::Sqlite, _) => format!("json_extract(value, '$[{index}]')"),
        })
        .collect();
    let values = values.join(", ");
    match dialect {
        Dialect::Postgres => {
            format!("SELECT {values} FROM jsonb_array_elements(CAST($1 AS JSONB)) AS rows(row)")
        }
        // `WHERE true` keeps an `ON CONFLICT` that follows from reading as a join's.
        Dialect::Sqlite => format!("SELECT {values} FROM json_each($1) WHERE true"),
    }
}

/// The separator of the fields of a [`packed_aggregate`] row (U+001F, unit separator).
const PACKED_FIELD: char = '\u{1f}';
/// The separator of its rows (U+001E, record separator).
const PACKED_ROW: char = '\u{1e}';

/// An aggregate of `columns` (SQL expressions) over a query's rows into one text value,
/// fields and rows joined by two control characters: reading it costs one row's handover
/// from the database driver rather than one per row (which was most of the time of an
/// export page or of a month's report by day for 500 agents), and no JSON is built and
/// parsed per row. The order of the rows is not promised. For rows of ids, codes and
/// numbers only, which never hold either separator; [`unpacked`] refuses a row with a
/// field too many. On PostgreSQL, `json_build_array` per row cost more than the index
/// scan and the aggregate together (a month's report: 25 of 87 ms in the server, then the
/// client's parse); this costs a concatenation.
fn packed_aggregate(dialect: Dialect, columns: &[&str]) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "group_concat(concat_ws(char(31), {}), char(30))",
            columns.join(", ")
        ),
        Dialect::Postgres => format!(
            "string_agg(concat_ws(chr(31), {}), chr(30))",
            columns.join(", ")
        ),
    }
}

/// The rows of a [`packed_aggregate`] in the `column` of the statement's one row, each
/// as its `N` fields; a row with another number of fields is an error (a value held a
/// separator), never a miscount.
fn unpacked<'a, const N: usize>(
    text: &'a str,
) -> impl Iterator<Item = Result<[&'a str; N], sqlx::Error>> + 'a {
    text.split(PACKED_ROW)
        .filter(|row| !row.is_empty())
        .map(|row| {
            let mut fields = row.split(PACKED_FIELD);
            let mut out = [""; N];
            for slot in &mut out {
                *slot = fields.next().ok_or_else(|| packed_error(row))?;
            }
            match fields.next() {
                None => Ok(out),
                Some(_) => Err(packed_error(row)),
            }
        })
}

fn packed_error(row: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("a packed row of the wrong width: {row:?}").into())
}

/// A number of a [`packed_aggregate`] row.
fn packed_number(field: &str) -> Result<i64, sqlx::Error> {
    field
        .parse()
        .map_err(|err| sqlx::Error::Decode(format!("a packed number {field:?}: {err}").into()))
}

/// The text of a [`packed_aggregate`] read as column `column` (none when no row matched).
fn packed_text(rows: &[AnyRow], column: &str) -> Result<Option<String>, sqlx::Error> {
    match rows.first() {
        Some(row) => row.try_get(column),
        None => Ok(None),
    }
}

/// Runs `statement`, written around [`json_rows`], with `rows` (each a JSON array of
/// the columns' values) bound as its one value.
async fn execute_json_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    statement: String,
    rows: Vec<serde_json::Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(statement))
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Is one of the text values in the JSON array bound as `$1` (see [`json_rows`]), in a
/// form each database answers with its index on the column.
fn json_in(dialect: Dialect) -> String {
    json_in_at(dialect, 1)
}

/// [`json_in`] with the array bound as `$n`.
fn json_in_at(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Postgres => {
            format!("= ANY(ARRAY(SELECT json_array_elements_text(CAST(${n} AS JSON))))")
        }
        Dialect::Sqlite => format!("IN (SELECT value FROM json_each(${n}))"),
    }
}

const FACT_COLUMNS: &str = "conversation_id, tenant_id, channel, queue_id, program_id, \
     created_at, closed_at, closing_agent_id, closing_segment_start, owner_agent_id, \
     owner_since, segments, transfers, reopens, status_label_id";

fn facts_from_row(row: &AnyRow) -> Result<ConversationFacts, sqlx::Error> {
    let channel: i64 = row.try_get("channel")?;
    Ok(ConversationFacts {
        conversation_id: row.try_get("conversation_id")?,
        tenant_id: row.try_get("tenant_id")?,
        channel: i32::try_from(channel).unwrap_or_default(),
        queue_id: row.try_get("queue_id")?,
        program_id: row.try_get("program_id")?,
        created_at: row.try_get("created_at")?,
        closed_at: row.try_get("closed_at")?,
        closing_agent_id: row.try_get("closing_agent_id")?,
        closing_segment_start: row.try_get("closing_segment_start")?,
        owner_agent_id: row.try_get("owner_agent_id")?,
        owner_since: row.try_get("owner_since")?,
        segments: row.try_get("segments")?,
        transfers: row.try_get("transfers")?,
        reopens: row.try_get("reopens")?,
        status_label_id: row.try_get("status_label_id")?,
    })
}

impl Store {
    /// Connects to `database_url` and runs the pending migrations.
    pub async fn open(database_url: &str) -> Result<Store, sqlx::Error> {
        let db = Db::connect(database_url).await?;
        db.migrate(&SQLITE, &POSTGRES)
            .await
            .map_err(|err| sqlx::Error::Migrate(Box::new(err)))?;
        Ok(Store {
            db,
            names: Default::default(),
        })
    }

    /// The underlying database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The log sequence of the last event applied from `source`; 0 before the first.
    pub async fn cursor(&self, source: &str) -> Result<i64, sqlx::Error> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT log_sequence FROM consumer_cursor WHERE source = $1")
                .bind(source)
                .fetch_optional(&self.db.pool)
                .await?;
        Ok(row.map_or(0, |(sequence,)| sequence))
    }

    /// Applies `event` from `source` and moves the cursor to its log sequence, in one
    /// transaction; an event at or below the cursor changes nothing.
    pub async fn apply(&self, source: &str, event: &Event) -> Result<Applied, sqlx::Error> {
        let applied = self
            .apply_batch(source, &[(event.log_sequence, Some(Entry::from(event)))])
            .await?;
        Ok(if applied == 0 {
            Applied::AlreadyApplied
        } else {
            Applied::Applied
        })
    }

    /// Moves the cursor past an event that carries nothing the reports can use (logged by
    /// the caller), so that it does not block the ones after it.
    pub async fn skip(&self, source: &str, log_sequence: i64) -> Result<Applied, sqlx::Error> {
        let applied = self.apply_batch(source, &[(log_sequence, None)]).await?;
        Ok(if applied == 0 {
            Applied::AlreadyApplied
        } else {
            Applied::Applied
        })
    }

    /// Applies a run of log entries from `source` in one transaction: each `(log_sequence,
    /// event)` above the cursor is applied in order (`None` moves the cursor past an entry
    /// with nothing to report on), and the cursor moves to the last one. Entries at or
    /// below the cursor change nothing. Returns how many entries were new.
    ///
    /// One transaction per run rather than per event: a conversation's create writes
    /// several events at once, and the cursor's two statements and the commit are paid
    /// once for all of them.
    pub async fn apply_batch(
        &self,
        source: &str,
        entries: &[(i64, Option<Entry<'_>>)],
    ) -> Result<u64, sqlx::Error> {
        match self.apply_run(source, None, entries).await? {
            Following::Applied(applied) => Ok(applied),
            Following::Rebuilt | Following::Moved => {
                unreachable!("only a consumer's position or folded run can be ahead or behind")
            }
        }
    }

    /// [`Store::apply_batch`] for a consumer whose subscription stands at `position` (the
    /// cursor it subscribed after, moved by what it applied since): when the stored cursor
    /// is behind that, the reports were rebuilt meanwhile and the entries, which continue
    /// the old position, must not be applied.
    pub async fn apply_following(
        &self,
        source: &str,
        position: i64,
        entries: &[(i64, Option<Entry<'_>>)],
    ) -> Result<Following, sqlx::Error> {
        self.apply_run(source, Some(position), entries).await
    }

    async fn apply_run(
        &self,
        source: &str,
        position: Option<i64>,
        entries: &[(i64, Option<Entry<'_>>)],
    ) -> Result<Following, sqlx::Error> {
        let Some(last) = entries.iter().map(|(sequence, _)| *sequence).max() else {
            return Ok(Following::Applied(0));
        };
        let (mut tx, cursor) = self.begin_run(source).await?;
        if position.is_some_and(|position| cursor < position) {
            tx.rollback().await?;
            return Ok(Following::Rebuilt);
        }
        if last <= cursor {
            tx.rollback().await?;
            return Ok(Following::Applied(0));
        }
        let run = FoldedRun::fold(&mut tx, self.db.dialect, cursor, entries, None).await?;
        self.write_run(tx, source, &run).await
    }

    /// Folds a run of log entries from `source` that continues the stored cursor at
    /// `after` (entries at or below it are left out), reading the facts it needs outside
    /// any transaction, so that it can fold while the run before it is written:
    /// `previous`, that run, lends the facts it leaves behind. [`Store::write_folded`]
    /// writes it.
    pub async fn fold_ahead(
        &self,
        after: i64,
        entries: &[(i64, Option<Entry<'_>>)],
        previous: Option<&FoldedRun>,
    ) -> Result<FoldedRun, sqlx::Error> {
        let mut reader = self.db.pool.acquire().await?;
        FoldedRun::fold(&mut reader, self.db.dialect, after, entries, previous).await
    }

    /// Writes a run folded by [`Store::fold_ahead`] and moves `source`'s cursor to its
    /// last entry, in one transaction, if the stored cursor still stands where the run
    /// was folded after and every run it was folded on was written. Otherwise nothing is
    /// written: [`Following::Rebuilt`] when the cursor went back, [`Following::Moved`]
    /// when something else moved it on.
    pub async fn write_folded(
        &self,
        source: &str,
        run: &FoldedRun,
    ) -> Result<Following, sqlx::Error> {
        let (tx, cursor) = self.begin_run(source).await?;
        if cursor != run.after || run.applied == 0 {
            tx.rollback().await?;
            return Ok(match cursor.cmp(&run.after) {
                std::cmp::Ordering::Less => Following::Rebuilt,
                std::cmp::Ordering::Greater => Following::Moved,
                std::cmp::Ordering::Equal => Following::Applied(0),
            });
        }
        self.write_run(tx, source, run).await
    }

    /// Starts a run's transaction: returns it with `source`'s cursor, locked on
    /// PostgreSQL so that concurrent appliers take turns (SQLite has one writer anyway).
    async fn begin_run(
        &self,
        source: &str,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Any>, i64), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        if self.db.dialect == Dialect::Postgres {
            // The facts move with their cursor in one transaction: a crash that loses the
            // last commits loses both, and the events are folded again from the older
            // cursor. So the commit need not wait for the disk.
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO consumer_cursor (source, log_sequence) VALUES ($1, 0) \
             ON CONFLICT (source) DO NOTHING",
        )
        .bind(source)
        .execute(&mut *tx)
        .await?;
        let lock = match self.db.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let (cursor,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT log_sequence FROM consumer_cursor WHERE source = $1{lock}"
        )))
        .bind(source)
        .fetch_one(&mut *tx)
        .await?;
        Ok((tx, cursor))
    }

    /// Writes `run` and moves the cursor to its last entry in `tx`, then commits.
    async fn write_run(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        source: &str,
        run: &FoldedRun,
    ) -> Result<Following, sqlx::Error> {
        let dialect = self.db.dialect;
        // First, so that a transaction naming new texts waits for another naming the same
        // ones before it holds any row the other may want.
        let named = metrics::record(&mut tx, dialect, &self.names, &run.occurrences).await?;
        run.conversations.save(&mut tx, dialect).await?;
        run.agents.save(&mut tx, dialect).await?;
        run.ledger.save(&mut tx, dialect).await?;
        // Guarded like every cursor move, though the lock above already rules out a
        // concurrent applier getting further meanwhile.
        let moved = sqlx::query(
            "UPDATE consumer_cursor SET log_sequence = $2 \
             WHERE source = $1 AND log_sequence < $2",
        )
        .bind(source)
        .bind(run.last)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            tx.rollback().await?;
            return Ok(Following::Applied(0));
        }
        tx.commit().await?;
        self.names.remember(named);
        Ok(Following::Applied(run.applied))
    }

    /// Forgets every fact, count and cursor in one transaction, so that the consumers fold
    /// both event logs again from their start: the reports are rebuilt from the event
    /// history. A running reporting-svc notices at its next event and subscribes again
    /// from the start. Returns how many rollup rows were forgotten.
    pub async fn rebuild(&self) -> Result<u64, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let forgotten = sqlx::query("DELETE FROM rollups")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in [
            "queue_programs",
            "agent_states",
            "ledger_entries",
            "assignment_facts",
            "conversation_facts",
            "consumer_cursor",
        ] {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(forgotten)
    }

    /// The queues of tenant `tenant_id` that belong to one of `program_ids`, as far as
    /// conversation-svc's events have told.
    pub async fn program_queues(
        &self,
        tenant_id: &str,
        program_ids: &[String],
    ) -> Result<BTreeSet<String>, sqlx::Error> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT queue_id FROM queue_programs WHERE tenant_id = $1 AND program_id {}",
            json_in_at(self.db.dialect, 2)
        )))
        .bind(tenant_id)
        .bind(serde_json::Value::from(program_ids).to_string())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(|row| row.try_get("queue_id")).collect()
    }

    /// The conversations of `query`'s tenant open now (created in its range, in its queues
    /// and channels), counted per queue and status label, in that order.
    pub async fn open_conversations(
        &self,
        query: &FactQuery<'_>,
    ) -> Result<Vec<OpenConversations>, sqlx::Error> {
        let mut sql = Sql::new(
            self.db.dialect,
            "SELECT queue_id, status_label_id, COUNT(*) AS open FROM conversation_facts \
             WHERE closed_at IS NULL AND tenant_id = ",
        );
        sql.bind(Bind::Text(query.tenant_id.to_owned()))
            .push(" AND created_at >= ")
            .bind(Bind::Int(query.start))
            .push(" AND created_at < ")
            .bind(Bind::Int(query.end))
            .filters(query, None)
            .push(" GROUP BY queue_id, status_label_id ORDER BY queue_id, status_label_id");
        sql.fetch_all(&self.db)
            .await?
            .iter()
            .map(|row| {
                Ok(OpenConversations {
                    queue_id: row.try_get("queue_id")?,
                    status_label_id: row.try_get("status_label_id")?,
                    open: row.try_get("open")?,
                })
            })
            .collect()
    }

    /// The facts of one conversation, if any event about it was applied.
    pub async fn conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Option<ConversationFacts>, sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {FACT_COLUMNS} FROM conversation_facts WHERE conversation_id = $1"
        )))
        .bind(conversation_id)
        .fetch_optional(&self.db.pool)
        .await?
        .map(|row| facts_from_row(&row))
        .transpose()
    }

    /// The assignments of one conversation, oldest first.
    pub async fn assignments(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<AssignmentFact>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT log_sequence, tenant_id, conversation_id, agent_id, previous_agent_id, \
             queue_id, channel, assigned_at, reassignment FROM assignment_facts \
             WHERE conversation_id = $1 ORDER BY log_sequence",
        )
        .bind(conversation_id)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let channel: i64 = row.try_get("channel")?;
                let reassignment: i64 = row.try_get("reassignment")?;
                Ok(AssignmentFact {
                    log_sequence: row.try_get("log_sequence")?,
                    tenant_id: row.try_get("tenant_id")?,
                    conversation_id: row.try_get("conversation_id")?,
                    agent_id: row.try_get("agent_id")?,
                    previous_agent_id: row.try_get("previous_agent_id")?,
                    queue_id: row.try_get("queue_id")?,
                    channel: i32::try_from(channel).unwrap_or_default(),
                    assigned_at: row.try_get("assigned_at")?,
                    reassignment: reassignment != 0,
                })
            })
            .collect()
    }

    /// Conversations created in the range, as `(slot, count)` per quarter-hour slot
    /// (`agent_ids` must be empty).
    pub async fn created_counts(
        &self,
        query: &FactQuery<'_>,
    ) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        self.slot_counts(Metric::Created, query).await
    }

    /// Closes in the range (a conversation closed, reopened and closed again counts
    /// twice), as `(slot, count)` per quarter-hour slot (`agent_ids` must be empty).
    pub async fn closed_counts(
        &self,
        query: &FactQuery<'_>,
    ) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        self.slot_counts(Metric::Closed, query).await
    }

    async fn slot_counts(
        &self,
        metric: Metric,
        query: &FactQuery<'_>,
    ) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        // Counted per conversation, not per agent: the agent filter does not apply.
        let query = FactQuery {
            agent_ids: &[],
            ..*query
        };
        let mut counts: Vec<(i64, i64)> = self
            .metric_counts(&query, &[metric], GroupBy::default())
            .await?
            .into_iter()
            .map(|count| (count.slot, count.n))
            .collect();
        counts.sort_unstable();
        Ok(counts)
    }

    /// Conversations whose latest close is in the range and that had an owner when
    /// closed.
    pub async fn closed_conversations(
        &self,
        query: &FactQuery<'_>,
    ) -> Result<Vec<ClosedConversation>, sqlx::Error> {
        let mut sql = Sql::new(
            self.db.dialect,
            "SELECT closing_agent_id, created_at, closed_at, closing_segment_start, segments, \
             reopens FROM conversation_facts \
             WHERE closing_agent_id IS NOT NULL AND tenant_id = ",
        );
        sql.bind(Bind::Text(query.tenant_id.to_owned()))
            .push(" AND closed_at >= ")
            .bind(Bind::Int(query.start))
            .push(" AND closed_at < ")
            .bind(Bind::Int(query.end))
            .filters(query, Some("closing_agent_id"));
        sql.fetch_all(&self.db)
            .await?
            .iter()
            .map(|row| {
                Ok(ClosedConversation {
                    agent_id: row.try_get("closing_agent_id")?,
                    created_at: row.try_get("created_at")?,
                    closed_at: row.try_get("closed_at")?,
                    segment_start: row.try_get("closing_segment_start")?,
                    segments: row.try_get("segments")?,
                    reopens: row.try_get("reopens")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_rows_read_back_field_by_field_and_a_wrong_width_is_refused() {
        let text = "a\u{1f}1\u{1e}\u{1f}2";
        let rows: Vec<[&str; 2]> = unpacked::<2>(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(rows, vec![["a", "1"], ["", "2"]]);
        // A value that held a separator shifts the fields: an error, never a miscount.
        assert!(unpacked::<2>("a\u{1f}b\u{1f}1").any(|row| row.is_err()));
        assert!(unpacked::<2>("a").any(|row| row.is_err()));
    }
}
