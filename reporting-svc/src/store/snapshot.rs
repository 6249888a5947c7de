//! One consistent view of the reports for a long read: an export counts its rows and then
//! reads them a page at a time, and every page must agree with the count while events
//! keep arriving.

use sqlx::any::AnyRow;
use switchboard_server_kit::Dialect;

use super::ledger::{self, LedgerQuery};

use super::{Bind, FACT_COLUMNS, FactQuery, Sql, Store, from_json_aggregate, json_aggregate};
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
    /// page as one JSON array, so a page costs one row's handover from the database
    /// driver rather than one per conversation (which was most of an export's time).
    pub async fn conversations(
        &mut self,
        query: &ConversationQuery<'_>,
    ) -> Result<Vec<ConversationFacts>, sqlx::Error> {
        let (aggregate, close) = json_aggregate(self.dialect);
        let mut sql = Sql::new(
            self.dialect,
            &format!(
                "SELECT {aggregate}{FACT_COLUMNS}{close} AS page FROM (SELECT * FROM conversation_facts"
            ),
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
        // Each conversation is an array of the facts' fields in declaration order, which
        // serde reads as the struct.
        let mut page: Vec<ConversationFacts> =
            from_json_aggregate(&self.fetch(sql).await?, "page")?;
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
