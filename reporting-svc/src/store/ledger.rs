//! The transfer ledger's lines: opened and answered with the events they come from, read a
//! page at a time in request order.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Bind, FactQuery, Sql, Store};
use crate::domain::ledger::{EntryKind, LedgerChange, LedgerEntry, outcome};

/// Which ledger lines to read: the range applies to when they were requested; the agent
/// filter keeps lines to or from those agents.
#[derive(Clone, Copy, Debug)]
pub struct LedgerQuery<'a> {
    /// Tenant, range and filters.
    pub facts: FactQuery<'a>,
    /// Only this conversation.
    pub conversation_id: Option<&'a str>,
    /// Only these kinds; empty for all.
    pub kinds: &'a [EntryKind],
    /// Lines after this `(requested_at, entry_id)`, for the next page.
    pub after: Option<(i64, &'a str)>,
    /// At most this many lines; `None` for all.
    pub limit: Option<i64>,
}

/// Applies ledger changes in the caller's transaction, in order. An answer ends only a
/// pending line, so a late or repeated answer changes nothing.
pub(super) async fn record(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    changes: &[LedgerChange],
) -> Result<(), sqlx::Error> {
    for change in changes {
        match change {
            LedgerChange::Open(entry) => {
                sqlx::query(
                    "INSERT INTO ledger_entries (entry_id, tenant_id, conversation_id, kind, \
                     transfer_id, offer_id, from_user_id, to_agent_id, to_queue_id, channel, \
                     requested_at, answered_at, outcome, fallback, ping_pong) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                     ON CONFLICT (entry_id) DO NOTHING",
                )
                .bind(&entry.entry_id)
                .bind(&entry.tenant_id)
                .bind(&entry.conversation_id)
                .bind(entry.kind as i64)
                .bind(&entry.transfer_id)
                .bind(&entry.offer_id)
                .bind(&entry.from_user_id)
                .bind(&entry.to_agent_id)
                .bind(&entry.to_queue_id)
                .bind(i64::from(entry.channel))
                .bind(entry.requested_at)
                .bind(entry.answered_at)
                .bind(i64::from(entry.outcome))
                .bind(i64::from(entry.fallback))
                .bind(i64::from(entry.ping_pong))
                .execute(&mut **tx)
                .await?;
            }
            LedgerChange::Answer {
                entry_id,
                outcome: ended,
                answered_at,
                fallback,
            } => {
                sqlx::query(
                    "UPDATE ledger_entries SET outcome = $2, answered_at = $3, fallback = $4 \
                     WHERE entry_id = $1 AND outcome = $5",
                )
                .bind(entry_id)
                .bind(i64::from(*ended))
                .bind(*answered_at)
                .bind(i64::from(*fallback))
                .bind(i64::from(outcome::PENDING))
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// The `WHERE` clause of a ledger read.
fn ledger_where(sql: &mut Sql, query: &LedgerQuery<'_>) {
    let facts = &query.facts;
    sql.push(" WHERE l.tenant_id = ")
        .bind(Bind::Text(facts.tenant_id.to_owned()))
        .push(" AND l.requested_at >= ")
        .bind(Bind::Int(facts.start))
        .push(" AND l.requested_at < ")
        .bind(Bind::Int(facts.end))
        .and_in(
            "l.to_queue_id",
            facts.queue_ids.iter().map(|id| Bind::Text(id.clone())),
        )
        .and_in(
            "l.channel",
            facts.channels.iter().map(|&c| Bind::Int(i64::from(c))),
        )
        .and_in(
            "l.kind",
            query.kinds.iter().map(|&kind| Bind::Int(kind as i64)),
        );
    if !facts.agent_ids.is_empty() {
        let agents = || facts.agent_ids.iter().map(|id| Bind::Text(id.clone()));
        sql.push(" AND (")
            .is_in("l.to_agent_id", agents())
            .push(" OR ")
            .is_in("l.from_user_id", agents())
            .push(")");
    }
    if let Some(conversation_id) = query.conversation_id {
        sql.push(" AND l.conversation_id = ")
            .bind(Bind::Text(conversation_id.to_owned()));
    }
}

fn entry_from_row(row: &AnyRow) -> Result<LedgerEntry, sqlx::Error> {
    let kind: i64 = row.try_get("kind")?;
    let int = |column: &str| -> Result<i32, sqlx::Error> {
        Ok(i32::try_from(row.try_get::<i64, _>(column)?).unwrap_or_default())
    };
    Ok(LedgerEntry {
        entry_id: row.try_get("entry_id")?,
        tenant_id: row.try_get("tenant_id")?,
        conversation_id: row.try_get("conversation_id")?,
        kind: EntryKind::from_code(kind).unwrap_or(EntryKind::QueueOffer),
        transfer_id: row.try_get("transfer_id")?,
        offer_id: row.try_get("offer_id")?,
        from_user_id: row.try_get("from_user_id")?,
        to_agent_id: row.try_get("to_agent_id")?,
        to_queue_id: row.try_get("to_queue_id")?,
        channel: int("channel")?,
        requested_at: row.try_get("requested_at")?,
        answered_at: row.try_get("answered_at")?,
        outcome: int("outcome")?,
        fallback: int("fallback")?,
        ping_pong: row.try_get::<i64, _>("ping_pong")? != 0,
    })
}

/// The statement reading the lines of `query` in request order (then by line id). A line
/// is a ping-pong when its sender marked it so or the agent it proposes the conversation to
/// had owned the conversation before it was requested (known from the assignments, so it
/// is right once conversation-svc's log has caught up).
pub(super) fn select(query: &LedgerQuery<'_>) -> Sql {
    let mut sql = Sql::new(
        "SELECT l.entry_id, l.tenant_id, l.conversation_id, l.kind, l.transfer_id, \
         l.offer_id, l.from_user_id, l.to_agent_id, l.to_queue_id, l.channel, \
         l.requested_at, l.answered_at, l.outcome, l.fallback, \
         CASE WHEN l.ping_pong = 1 OR EXISTS (SELECT 1 FROM assignment_facts a \
         WHERE a.conversation_id = l.conversation_id AND a.agent_id = l.to_agent_id \
         AND a.assigned_at < l.requested_at AND l.to_agent_id <> '') \
         THEN 1 ELSE 0 END AS ping_pong FROM ledger_entries l",
    );
    ledger_where(&mut sql, query);
    if let Some((requested_at, entry_id)) = query.after {
        // `>=` first, so that the index on request time starts the page there rather
        // than at the range's start.
        sql.push(" AND l.requested_at >= ")
            .bind(Bind::Int(requested_at))
            .push(" AND (l.requested_at > ")
            .bind(Bind::Int(requested_at))
            .push(" OR l.entry_id > ")
            .bind(Bind::Text(entry_id.to_owned()))
            .push(")");
    }
    sql.push(" ORDER BY l.requested_at, l.entry_id");
    if let Some(limit) = query.limit {
        sql.push(" LIMIT ").bind(Bind::Int(limit));
    }
    sql
}

/// The statement counting the lines of `query`, ignoring its page (column `n`).
pub(super) fn count(query: &LedgerQuery<'_>) -> Sql {
    let mut sql = Sql::new("SELECT COUNT(*) AS n FROM ledger_entries l");
    ledger_where(&mut sql, query);
    sql
}

/// The lines a ledger read returned.
pub(super) fn entries(rows: &[AnyRow]) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    rows.iter().map(entry_from_row).collect()
}

impl Store {
    /// Ledger lines of `query` in request order (see [`select`]).
    pub async fn ledger(&self, query: &LedgerQuery<'_>) -> Result<Vec<LedgerEntry>, sqlx::Error> {
        entries(&select(query).fetch_all(&self.db).await?)
    }

    /// How many ledger lines `query` matches, ignoring its page.
    pub async fn ledger_count(&self, query: &LedgerQuery<'_>) -> Result<u64, sqlx::Error> {
        count_of(&count(query).fetch_all(&self.db).await?)
    }
}

/// The `n` column of a count's one row.
pub(super) fn count_of(rows: &[AnyRow]) -> Result<u64, sqlx::Error> {
    let n: i64 = rows.first().map_or(Ok(0), |row| row.try_get("n"))?;
    Ok(u64::try_from(n).unwrap_or_default())
}
