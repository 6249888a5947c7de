//! One consistent view of the reports for a long read: an export counts its rows and then
//! reads them a page at a time, and every page must agree with the count while events
//! keep arriving.

use sqlx::any::AnyRow;
use switchboard_server_kit::Dialect;

use super::ledger::{self, LedgerQuery};

use super::{Bind, FactQuery, Sql, Store, packed_aggregate, packed_number, packed_text, unpacked};
use crate::domain::facts::ConversationFacts;
use crate::domain::ledger::LedgerEntry;

/// A read-only transaction that sees the reports as they were at its first read:
/// REPEATABLE READ on PostgreSQL; on SQLite, a read transaction on a WAL database, which
/// sees the database as of its first read. It holds one read connection until dropped.
#[derive(Debug)]
pub struct Snapshot {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
}

/// Which conversations the per-conversation table lists: created in the range; queues and
/// channels filter; agents match who closed it or owns it now.
#[derive(Clone, Copy, Debug)]
pub struct ConversationQuery<'a> {
    /// Tenant, range and filters.
    pub facts: FactQuery<'a>,
    /// Conversations after this `(created_at, conversation_id)`, for the next page.
    pub after: Option<(i64, &'a str)>,
    /// At most this many.
    pub limit: i64,
}

fn conversation_where(sql: &mut Sql, query: &FactQuery<'_>) {
    sql.push(" WHERE tenant_id = ")
        .bind(Bind::Text(query.tenant_id.to_owned()))
        .push(" AND created_at >= ")
        .bind(Bind::Int(query.start))
        .push(" AND created_at < ")
        .bind(Bind::Int(query.end))
        .filters(query, None);
    if !query.agent_ids.is_empty() {
        let agents = || query.agent_ids.iter().map(|id| Bind::Text(id.clone()));
        sql.push(" AND (")
            .is_in("closing_agent_id", agents())
            .push(" OR ")
            .is_in("owner_agent_id", agents())
            .push(")");
    }
}

impl Store {
    /// A consistent view for an export; see [`Snapshot`].
    pub async fn snapshot(&self) -> Result<Snapshot, sqlx::Error> {
        let begin = match self.db.dialect {
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Dialect::Sqlite => "BEGIN",
        };
        Ok(Snapshot {
            tx: self.db.pool.begin_with(begin).await?,
            dialect: self.db.dialect,
        })
    }
}

impl Snapshot {
    async fn fetch(&mut self, sql: Sql) -> Result<Vec<AnyRow>, sqlx::Error> {
        sql.query().fetch_all(&mut *self.tx).await
    }

    /// Ledger lines of `query`, as `Store::ledger`.
    pub async fn ledger(
        &mut self,
        query: &LedgerQuery<'_>,
    ) -> Result<Vec<LedgerEntry>, sqlx::Error> {
        ledger::entries(&self.fetch(ledger::select(self.dialect, query)).await?)
    }

    /// How many ledger lines `query` matches, ignoring its page.
    pub async fn ledger_count(&mut self, query: &LedgerQuery<'_>) -> Result<u64, sqlx::Error> {
        ledger::count_of(&self.fetch(ledger::count(self.dialect, query)).await?)
    }

    /// The conversations of `query`, by creation time then id. The database writes the
    /// page as one packed text value ([`packed_aggregate`]: every fact is an id, a code or
    /// a number), so a page costs one row's handover from the database driver rather than
    /// one per conversation (which was most of an export's time), and no JSON is built or
    /// parsed per row.
    pub async fn conversations(
        &mut self,
        query: &ConversationQuery<'_>,
    ) -> Result<Vec<ConversationFacts>, sqlx::Error> {
        let packed = packed_aggregate(self.dialect, &packed_fact_columns(self.dialect));
        let mut sql = Sql::new(
            self.dialect,
            &format!("SELECT {packed} AS page FROM (SELECT * FROM conversation_facts"),
        );
        conversation_where(&mut sql, &query.facts);
        if let Some((created_at, conversation_id)) = query.after {
            // `>=` first, so that the index on creation time starts the page there
            // rather than at the range's start.
            sql.push(" AND created_at >= ")
                .bind(Bind::Int(created_at))
                .push(" AND (created_at > ")
                .bind(Bind::Int(created_at))
                .push(" OR conversation_id > ")
                .bind(Bind::Text(conversation_id.to_owned()))
                .push(")");
        }
        sql.push(" ORDER BY created_at, conversation_id LIMIT ")
            .bind(Bind::Int(query.limit))
            .push(") page");
        let text = packed_text(&self.fetch(sql).await?, "page")?.unwrap_or_default();
        let mut page = unpacked::<15>(&text)
            .map(|row| facts_from_packed(row?))
            .collect::<Result<Vec<_>, _>>()?;
        // An aggregate's order is not promised by every database: order the page here.
        page.sort_by(|a, b| {
            (a.created_at, &a.conversation_id).cmp(&(b.created_at, &b.conversation_id))
        });
        Ok(page)
    }

    /// How many conversations `query` matches, ignoring its page.
    pub async fn conversation_count(&mut self, query: &FactQuery<'_>) -> Result<u64, sqlx::Error> {
        let mut sql = Sql::new(self.dialect, "SELECT COUNT(*) AS n FROM conversation_facts");
        conversation_where(&mut sql, query);
        ledger::count_of(&self.fetch(sql).await?)
    }
}

/// The facts' columns as [`packed_aggregate`] expressions, in [`ConversationFacts`]' order:
/// a null number is written empty, and a nullable id `=` before its value, so that null and
/// empty stay apart.
fn packed_fact_columns(dialect: Dialect) -> Vec<&'static str> {
    let (closed_at, closing_segment_start, owner_since) = match dialect {
        Dialect::Sqlite => (
            "IFNULL(closed_at, '')",
            "IFNULL(closing_segment_start, '')",
            "IFNULL(owner_since, '')",
        ),
        Dialect::Postgres => (
            "COALESCE(CAST(closed_at AS TEXT), '')",
            "COALESCE(CAST(closing_segment_start AS TEXT), '')",
            "COALESCE(CAST(owner_since AS TEXT), '')",
        ),
    };
    vec![
        "conversation_id",
        "tenant_id",
        "channel",
        "queue_id",
        "program_id",
        "created_at",
        closed_at,
        "(CASE WHEN closing_agent_id IS NULL THEN '' ELSE '=' || closing_agent_id END)",
        closing_segment_start,
        "(CASE WHEN owner_agent_id IS NULL THEN '' ELSE '=' || owner_agent_id END)",
        owner_since,
        "segments",
        "transfers",
        "reopens",
        "status_label_id",
    ]
}

/// A row of [`packed_fact_columns`] read back.
fn facts_from_packed(row: [&str; 15]) -> Result<ConversationFacts, sqlx::Error> {
    let [
        conversation_id,
        tenant_id,
        channel,
        queue_id,
        program_id,
        created_at,
        closed_at,
        closing_agent_id,
        closing_segment_start,
        owner_agent_id,
        owner_since,
        segments,
        transfers,
        reopens,
        status_label_id,
    ] = row;
    let optional_number = |field: &str| match field {
        "" => Ok(None),
        field => packed_number(field).map(Some),
    };
    let optional_id = |field: &str| field.strip_prefix('=').map(str::to_owned);
    Ok(ConversationFacts {
        conversation_id: conversation_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        channel: i32::try_from(packed_number(channel)?).unwrap_or_default(),
        queue_id: queue_id.to_owned(),
        program_id: program_id.to_owned(),
        created_at: packed_number(created_at)?,
        closed_at: optional_number(closed_at)?,
        closing_agent_id: optional_id(closing_agent_id),
        closing_segment_start: optional_number(closing_segment_start)?,
        owner_agent_id: optional_id(owner_agent_id),
        owner_since: optional_number(owner_since)?,
        segments: packed_number(segments)?,
        transfers: packed_number(transfers)?,
        reopens: packed_number(reopens)?,
        status_label_id: status_label_id.to_owned(),
    })
}
