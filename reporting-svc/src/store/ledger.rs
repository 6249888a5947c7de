//! The transfer ledger's lines: opened and answered with the events they come from, read a
//! page at a time in request order.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use switchboard_server_kit::Dialect;

use super::{Bind, Column, FactQuery, Sql, Store, json_rows};
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

/// The ledger changes of a run of events, in order. A line opened and answered within the
/// run is written once, already answered; answers to lines of earlier runs are updates.
#[derive(Debug, Default)]
pub(super) struct LedgerRun {
    /// Lines the run opens, in order, the first of each id only.
    opened: Vec<LedgerEntry>,
    /// Where each of them is in `opened`.
    index: HashMap<String, usize>,
    /// Answers to lines the run does not open, in order.
    answers: Vec<Answer>,
    /// Answers folded into lines the run opens, kept in case such a line was already
    /// stored (its insert then does nothing and the answer goes to the stored line).
    folded: Vec<Answer>,
}

/// An answer to a line: how it ended, when, and the fallback applied.
#[derive(Debug)]
struct Answer {
    entry_id: String,
    outcome: i32,
    answered_at: i64,
    fallback: i32,
}

impl LedgerRun {
    /// Folds `change` in. An answer ends only a pending line, so a late or repeated
    /// answer changes nothing.
    pub(super) fn extend(&mut self, change: Option<LedgerChange>) {
        match change {
            None => {}
            Some(LedgerChange::Open(entry)) if !self.index.contains_key(&entry.entry_id) => {
                self.index.insert(entry.entry_id.clone(), self.opened.len());
                self.opened.push(entry);
            }
            // A line opened twice keeps its first opening.
            Some(LedgerChange::Open(_)) => {}
            Some(LedgerChange::Answer {
                entry_id,
                outcome: ended,
                answered_at,
                fallback,
            }) => {
                let answer = Answer {
                    entry_id,
                    outcome: ended,
                    answered_at,
                    fallback,
                };
                match self.index.get(&answer.entry_id) {
                    Some(&at) => {
                        let line = &mut self.opened[at];
                        if line.outcome == outcome::PENDING {
                            line.outcome = answer.outcome;
                            line.answered_at = Some(answer.answered_at);
                            line.fallback = answer.fallback;
                        }
                        self.folded.push(answer);
                    }
                    None => self.answers.push(answer),
                }
            }
        }
    }

    /// Writes the run's lines and answers in the caller's transaction.
    pub(super) async fn save(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        dialect: Dialect,
    ) -> Result<(), sqlx::Error> {
        let mut inserted: HashSet<String> = HashSet::new();
        if !self.opened.is_empty() {
            use Column::{Int, Text};
            let rows: Vec<serde_json::Value> = self
                .opened
                .iter()
                .map(|e| {
                    json!([
                        e.entry_id,
                        e.tenant_id,
                        e.conversation_id,
                        e.kind as i64,
                        e.transfer_id,
                        e.offer_id,
                        e.from_user_id,
                        e.to_agent_id,
                        e.to_queue_id,
                        e.channel,
                        e.requested_at,
                        e.answered_at,
                        e.outcome,
                        e.fallback,
                        i64::from(e.ping_pong)
                    ])
                })
                .collect();
            let inserted_rows = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO ledger_entries (entry_id, tenant_id, conversation_id, kind, \
                 transfer_id, offer_id, from_user_id, to_agent_id, to_queue_id, channel, \
                 requested_at, answered_at, outcome, fallback, ping_pong) {} \
                 ON CONFLICT (entry_id) DO NOTHING RETURNING entry_id",
                json_rows(
                    dialect,
                    &[
                        Text, Text, Text, Int, Text, Text, Text, Text, Text, Int, Int, Int, Int,
                        Int, Int
                    ]
                )
            )))
            .bind(serde_json::Value::Array(rows).to_string())
            .fetch_all(&mut **tx)
            .await?;
            for row in inserted_rows {
                inserted.insert(row.try_get("entry_id")?);
            }
        }
        let stored_before = self
            .folded
            .iter()
            .filter(|answer| !inserted.contains(&answer.entry_id));
        for answer in stored_before.chain(&self.answers) {
            sqlx::query(
                "UPDATE ledger_entries SET outcome = $2, answered_at = $3, fallback = $4 \
                 WHERE entry_id = $1 AND outcome = $5",
            )
            .bind(&answer.entry_id)
            .bind(i64::from(answer.outcome))
            .bind(answer.answered_at)
            .bind(i64::from(answer.fallback))
            .bind(i64::from(outcome::PENDING))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// The `WHERE` clause of a ledger read.
/// The conditions of `query`, its lines requested from `start` on (the range's start, or
/// a page's first request time).
fn ledger_where(sql: &mut Sql, query: &LedgerQuery<'_>, start: i64) {
    let facts = &query.facts;
    sql.push(" WHERE l.tenant_id = ")
        .bind(Bind::Text(facts.tenant_id.to_owned()))
        .push(" AND l.requested_at >= ")
        .bind(Bind::Int(start))
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
pub(super) fn select(dialect: Dialect, query: &LedgerQuery<'_>) -> Sql {
    let mut sql = Sql::new(
        dialect,
        "SELECT l.entry_id, l.tenant_id, l.conversation_id, l.kind, l.transfer_id, \
         l.offer_id, l.from_user_id, l.to_agent_id, l.to_queue_id, l.channel, \
         l.requested_at, l.answered_at, l.outcome, l.fallback, \
         CASE WHEN l.ping_pong = 1 OR EXISTS (SELECT 1 FROM assignment_facts a \
         WHERE a.conversation_id = l.conversation_id AND a.agent_id = l.to_agent_id \
         AND a.assigned_at < l.requested_at AND l.to_agent_id <> '') \
         THEN 1 ELSE 0 END AS ping_pong FROM ledger_entries l",
    );
    // A page starts at its first request time, the only lower bound the statement has:
    // given the range's start as well, SQLite may start the index scan there and step
    // over every earlier line (a page deep into a large export took three times as long).
    let start = query
        .after
        .map_or(query.facts.start, |(at, _)| at.max(query.facts.start));
    ledger_where(&mut sql, query, start);
    if let Some((requested_at, entry_id)) = query.after {
        sql.push(" AND (l.requested_at > ")
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
pub(super) fn count(dialect: Dialect, query: &LedgerQuery<'_>) -> Sql {
    let mut sql = Sql::new(dialect, "SELECT COUNT(*) AS n FROM ledger_entries l");
    ledger_where(&mut sql, query, query.facts.start);
    sql
}

/// The lines a ledger read returned.
pub(super) fn entries(rows: &[AnyRow]) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    rows.iter().map(entry_from_row).collect()
}

impl Store {
    /// Ledger lines of `query` in request order (see [`select`]).
    pub async fn ledger(&self, query: &LedgerQuery<'_>) -> Result<Vec<LedgerEntry>, sqlx::Error> {
        entries(&select(self.db.dialect, query).fetch_all(&self.db).await?)
    }

    /// How many ledger lines `query` matches, ignoring its page.
    pub async fn ledger_count(&self, query: &LedgerQuery<'_>) -> Result<u64, sqlx::Error> {
        count_of(&count(self.db.dialect, query).fetch_all(&self.db).await?)
    }
}

/// The `n` column of a count's one row.
pub(super) fn count_of(rows: &[AnyRow]) -> Result<u64, sqlx::Error> {
    let n: i64 = rows.first().map_or(Ok(0), |row| row.try_get("n"))?;
    Ok(u64::try_from(n).unwrap_or_default())
}
