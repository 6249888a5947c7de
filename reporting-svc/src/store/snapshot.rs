//! One consistent view of the reports for a long read: an export counts its rows and then
//! reads them a page at a time, and every page must agree with the count while events
//! keep arriving.

use sqlx::any::AnyRow;
use switchboard_server_kit::Dialect;

use super::ledger::{self, LedgerQuery};

use super::{
    Bind, FactQuery, PACKED_FIELD, PACKED_ROW, Sql, Store, packed_aggregate, packed_error,
    packed_number, packed_text, unpacked,
};
use crate::domain::facts::ConversationLine;
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

    /// The page of conversations of `query` as the database hands it over, `None` when
    /// there are none. The database writes the page as one packed text value
    /// ([`packed_aggregate`]: every value is an id, a code or a number), so a page costs
    /// one row's handover from the database driver rather than one per conversation
    /// (which was most of an export's time), and no JSON is built or parsed per row.
    pub async fn conversation_page(
        &mut self,
        query: &ConversationQuery<'_>,
    ) -> Result<Option<ConversationPage>, sqlx::Error> {
        let packed = packed_aggregate(self.dialect, &packed_line_columns(self.dialect));
        let mut sql = Sql::new(
            self.dialect,
            &format!("SELECT {packed} AS page FROM (SELECT * FROM conversation_facts"),
        );
        // A page starts at its first creation time, the only lower bound the statement
        // has: given the range's start as well, SQLite may start the index scan there and
        // step over every earlier conversation (some pages of a 1,000,000-row export took
        // three times as long).
        let mut facts = query.facts;
        if let Some((created_at, _)) = query.after {
            facts.start = facts.start.max(created_at);
        }
        conversation_where(&mut sql, &facts);
        if let Some((created_at, conversation_id)) = query.after {
            sql.push(" AND (created_at > ")
                .bind(Bind::Int(created_at))
                .push(" OR conversation_id > ")
                .bind(Bind::Text(conversation_id.to_owned()))
                .push(")");
        }
        sql.push(" ORDER BY created_at, conversation_id LIMIT ")
            .bind(Bind::Int(query.limit))
            .push(") page");
        let Some(text) = packed_text(&self.fetch(sql).await?, "page")? else {
            return Ok(None);
        };
        let Some(last) = last_key(&text)? else {
            return Ok(None);
        };
        Ok(Some(ConversationPage { text, last }))
    }

    /// How many conversations `query` matches, ignoring its page.
    pub async fn conversation_count(&mut self, query: &FactQuery<'_>) -> Result<u64, sqlx::Error> {
        let mut sql = Sql::new(self.dialect, "SELECT COUNT(*) AS n FROM conversation_facts");
        conversation_where(&mut sql, query);
        ledger::count_of(&self.fetch(sql).await?)
    }
}

/// A page of the per-conversation table, read but not yet parsed: where the next page
/// starts is known at once, so that an export asks for it before parsing this one.
#[derive(Debug)]
pub struct ConversationPage {
    text: String,
    last: (i64, String),
}

impl ConversationPage {
    /// The last conversation's `(created_at, conversation_id)`: the next page starts
    /// after it.
    pub fn last(&self) -> (i64, &str) {
        (self.last.0, &self.last.1)
    }

    /// Its conversations, by creation time then id.
    pub fn lines(&self) -> Result<Vec<ConversationLine<'_>>, sqlx::Error> {
        let mut lines = unpacked::<12>(&self.text)
            .map(|row| line_from_packed(row?))
            .collect::<Result<Vec<_>, _>>()?;
        // An aggregate's order is not promised by every database: order the page here.
        lines.sort_by(|a, b| {
            (a.created_at, a.conversation_id).cmp(&(b.created_at, b.conversation_id))
        });
        Ok(lines)
    }
}

/// The greatest `(created_at, conversation_id)` of a packed page of
/// [`packed_line_columns`], reading only those two values of each row; `None` for an
/// empty page.
fn last_key(text: &str) -> Result<Option<(i64, String)>, sqlx::Error> {
    let mut last: Option<(i64, &str)> = None;
    for row in text.split(PACKED_ROW).filter(|row| !row.is_empty()) {
        let mut fields = row.splitn(6, PACKED_FIELD);
        let (Some(id), Some(created_at)) = (fields.next(), fields.nth(3)) else {
            return Err(packed_error(row));
        };
        let key = (packed_number(created_at)?, id);
        if last.is_none_or(|last| key > last) {
            last = Some(key);
        }
    }
    Ok(last.map(|(at, id)| (at, id.to_owned())))
}

/// A [`ConversationLine`]'s columns as [`packed_aggregate`] expressions, in its order: a
/// null number is written empty, and a nullable id `=` before its value, so that null and
/// empty stay apart.
fn packed_line_columns(dialect: Dialect) -> [&'static str; 12] {
    let closed_at = match dialect {
        Dialect::Sqlite => "IFNULL(closed_at, '')",
        Dialect::Postgres => "COALESCE(CAST(closed_at AS TEXT), '')",
    };
    [
        "conversation_id",
        "channel",
        "queue_id",
        "program_id",
        "created_at",
        closed_at,
        "(CASE WHEN closing_agent_id IS NULL THEN '' ELSE '=' || closing_agent_id END)",
        "(CASE WHEN owner_agent_id IS NULL THEN '' ELSE '=' || owner_agent_id END)",
        "segments",
        "transfers",
        "reopens",
        "status_label_id",
    ]
}

/// A row of [`packed_line_columns`] read back.
fn line_from_packed(row: [&str; 12]) -> Result<ConversationLine<'_>, sqlx::Error> {
    let [
        conversation_id,
        channel,
        queue_id,
        program_id,
        created_at,
        closed_at,
        closing_agent_id,
        owner_agent_id,
        segments,
        transfers,
        reopens,
        status_label_id,
    ] = row;
    Ok(ConversationLine {
        conversation_id,
        channel: i32::try_from(packed_number(channel)?).unwrap_or_default(),
        queue_id,
        program_id,
        created_at: packed_number(created_at)?,
        closed_at: match closed_at {
            "" => None,
            at => Some(packed_number(at)?),
        },
        closing_agent_id: closing_agent_id.strip_prefix('='),
        owner_agent_id: owner_agent_id.strip_prefix('='),
        segments: packed_number(segments)?,
        transfers: packed_number(transfers)?,
        reopens: packed_number(reopens)?,
        status_label_id,
    })
}
