//! The assignment outbox: accepted offers that conversation-svc has yet to apply.
//!
//! A row is written in the transaction that accepts the offer, so the assignment cannot
//! be lost between the two services; it is retried until conversation-svc confirms it or
//! refuses it for good (then the capacity is released).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::domain::AssignmentSource;
use crate::error::{Error, Result};
use crate::store::{NewEvent, Tx, changes_one_row, fetch_all, int_column};

/// An assignment to apply in conversation-svc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// UUID of the row.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The new owner.
    pub agent_id: String,
    /// Shown to the customer.
    pub agent_display_name: String,
    /// The accepted offer; conversation-svc's idempotency key.
    pub offer_id: String,
    /// The queue it came from.
    pub queue_id: String,
    /// How the agent got the conversation (stored as `offer` or `claim`).
    pub source: AssignmentSource,
    /// Failed attempts so far.
    pub attempts: i32,
    /// When the next attempt is due (microseconds).
    pub next_attempt_time: i64,
}

fn entry_from_row(row: &AnyRow) -> Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        conversation_id: row.try_get("conversation_id")?,
        agent_id: row.try_get("agent_id")?,
        agent_display_name: row.try_get("agent_display_name")?,
        offer_id: row.try_get("offer_id")?,
        queue_id: row.try_get("queue_id")?,
        source: {
            let word: String = row.try_get("start_reason")?;
            AssignmentSource::parse(&word).ok_or_else(|| {
                Error::Internal(format!("outbox start_reason holds unknown {word}"))
            })?
        },
        attempts: int_column(row, "attempts")?,
        next_attempt_time: row.try_get("next_attempt_time")?,
    })
}

const COLUMNS: &str = "id, tenant_id, conversation_id, agent_id, agent_display_name, offer_id, \
    queue_id, start_reason, attempts, next_attempt_time";

/// Adds an entry in the transaction of the accept.
pub async fn insert(tx: &mut Tx, entry: &OutboxEntry, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, conversation_id, agent_id, agent_display_name, \
         offer_id, queue_id, start_reason, attempts, next_attempt_time, done, outcome, \
         create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, '', $11)",
    )
    .bind(&entry.id)
    .bind(&entry.tenant_id)
    .bind(&entry.conversation_id)
    .bind(&entry.agent_id)
    .bind(&entry.agent_display_name)
    .bind(&entry.offer_id)
    .bind(&entry.queue_id)
    .bind(entry.source.as_str())
    .bind(i64::from(entry.attempts))
    .bind(entry.next_attempt_time)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Entries not done whose next attempt is due at `now`, oldest due first.
pub async fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<OutboxEntry>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE done = 0 AND next_attempt_time <= $1 \
         ORDER BY next_attempt_time LIMIT $2"
    )))
    .bind(now)
    .bind(limit);
    fetch_all(conn, query, entry_from_row).await
}

/// Takes an entry for one attempt by moving its due time to `lease_until`, unless another
/// dispatcher (another replica) took it first.
pub async fn lease(
    conn: &mut AnyConnection,
    entry: &OutboxEntry,
    lease_until: i64,
) -> Result<bool> {
    let take = sqlx::query(
        "UPDATE outbox SET next_attempt_time = $3 \
         WHERE id = $1 AND done = 0 AND next_attempt_time = $2",
    )
    .bind(&entry.id)
    .bind(entry.next_attempt_time)
    .bind(lease_until);
    changes_one_row(conn, take).await
}

/// Records a failed attempt and when to try again.
pub async fn retry_later(
    conn: &mut AnyConnection,
    id: &str,
    attempts: i32,
    next_attempt_time: i64,
    outcome: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = $2, next_attempt_time = $3, outcome = $4 \
         WHERE id = $1 AND done = 0",
    )
    .bind(id)
    .bind(i64::from(attempts))
    .bind(next_attempt_time)
    .bind(outcome)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks an entry done with `outcome`; false when it already was.
pub async fn complete(tx: &mut Tx, entry: &OutboxEntry, outcome: &str, now: i64) -> Result<bool> {
    let finish = sqlx::query(
        "UPDATE outbox SET done = 1, done_time = $2, outcome = $3 WHERE id = $1 AND done = 0",
    )
    .bind(&entry.id)
    .bind(now)
    .bind(outcome);
    let done = changes_one_row(tx.conn(), finish).await?;
    if done {
        let kind = if outcome == "applied" {
            "assignment.applied"
        } else {
            "assignment.failed"
        };
        tx.event(
            NewEvent::new(&entry.tenant_id, kind)
                .agent(&entry.agent_id)
                .conversation(&entry.conversation_id)
                .queue(&entry.queue_id)
                .offer(&entry.offer_id),
        );
    }
    Ok(done)
}

/// Entries of a conversation, for tests and operators: (offer id, done, attempts, outcome).
pub async fn of_conversation(
    conn: &mut AnyConnection,
    conversation_id: &str,
) -> Result<Vec<(String, bool, i32, String)>> {
    let rows = sqlx::query(
        "SELECT offer_id, done, attempts, outcome FROM outbox WHERE conversation_id = $1 \
         ORDER BY create_time",
    )
    .bind(conversation_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("offer_id")?,
                int_column(row, "done")? != 0,
                int_column(row, "attempts")?,
                row.try_get("outcome")?,
            ))
        })
        .collect()
}
