//! Queue overflow: waiting conversations whose queue's overflow_after has passed move to
//! the overflow queue, keeping their wait.
//!
//! The due time is stored on the waiting row (`overflow_due_us`, NULL for none), so that
//! finding what is due is one indexed range read. A move is a conditional update on the
//! row as read (same queue, still waiting, same due time): of replicas sweeping at once, one
//! moves a conversation and the others change nothing.

use super::*;
use crate::domain::overflow::{Stays, is_due, overflow_target};
use crate::store::catalog::{self, QueueLock, get_queue};

/// Up to `limit` conversations due to overflow at `now` and not under offer, as (tenant,
/// conversation), the longest overdue first.
pub async fn due_overflows(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, conversation_id FROM waiting \
         WHERE state = $1 AND overflow_due_us <= $2 ORDER BY overflow_due_us LIMIT $3",
    )
    .bind(WAITING)
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// What [`overflow_waiting`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Overflowed {
    /// The conversation now waits in `to`, having waited `waited` microseconds in all.
    Moved {
        /// The queue it left.
        from: String,
        /// The queue it waits in now.
        to: String,
        /// How long the customer has waited.
        waited: i64,
    },
    /// It stays in its queue and is not looked at again until the queue's overflow
    /// settings change.
    Stayed {
        /// Its queue.
        queue_id: String,
        /// Why it stays.
        why: Stays,
    },
    /// Nothing to do: it no longer waits, is under offer, is not due, or another change
    /// (another replica) got there first. The caller rolls back.
    Untouched,
}

/// Moves conversation `conversation_id`, if it is due at `now`, to its queue's overflow
/// queue: it keeps its wait (`enqueue_time`) and enqueue key, enters the new queue now (so
/// that queue's own overflow counts from now) and the move is told to conversation-svc
/// through the outbox, with a `conversation.overflowed` event. One that cannot move (the
/// overflow queue is gone or does not accept its channel) stays, its due time cleared.
pub async fn overflow_waiting(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> Result<Overflowed> {
    let row = sqlx::query(
        "SELECT queue_id, channel, enqueue_time, state, overflow_due_us, enqueue_key \
         FROM waiting WHERE tenant_id = $1 AND conversation_id = $2",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = row else {
        return Ok(Overflowed::Untouched);
    };
    let due: Option<i64> = row.try_get("overflow_due_us")?;
    let state: String = row.try_get("state")?;
    let due = match due {
        Some(due) if is_due(Some(due), state == OFFERED, now) => due,
        _ => return Ok(Overflowed::Untouched),
    };
    let from_id: String = row.try_get("queue_id")?;
    let channel = enum_column(&row, "channel", Channel::from_i32)?;
    let from = get_queue(tx.conn(), tenant_id, &from_id).await?;
    // Held like an enqueue's queue, so that it cannot be deleted under the move.
    let target = match from.as_ref().and_then(|q| q.overflow_queue_id.as_deref()) {
        Some(id) => catalog::queue_for_write(tx, tenant_id, id, QueueLock::Held).await?,
        None => None,
    };
    // Only the row as read changes: same queue, still waiting, same due time.
    let guard = "WHERE conversation_id = $1 AND queue_id = $2 AND state = $3 \
         AND overflow_due_us = $4";
    let to = match overflow_target(from.as_ref(), target.as_ref(), channel) {
        Ok(to) => to,
        Err(why) => {
            let cleared = sqlx::query(AssertSqlSafe(format!(
                "UPDATE waiting SET overflow_due_us = NULL {guard}"
            )))
            .bind(conversation_id)
            .bind(&from_id)
            .bind(WAITING)
            .bind(due);
            if !changes_one_row(tx.conn(), cleared).await? {
                return Ok(Overflowed::Untouched);
            }
            return Ok(Overflowed::Stayed {
                queue_id: from_id,
                why,
            });
        }
    };
    let moved = sqlx::query(AssertSqlSafe(format!(
        "UPDATE waiting SET queue_id = $5, entered_time = $6, overflow_due_us = $7 {guard}"
    )))
    .bind(conversation_id)
    .bind(&from_id)
    .bind(WAITING)
    .bind(due)
    .bind(&to.id)
    .bind(now)
    .bind(overflow_due(to, now));
    if !changes_one_row(tx.conn(), moved).await? {
        return Ok(Overflowed::Untouched);
    }
    let enqueue_key: String = row.try_get("enqueue_key")?;
    let entry = OutboxEntry::overflow(tenant_id, conversation_id, &from_id, &enqueue_key, to, now);
    outbox::insert(tx, &entry, now).await?;
    let enqueue_time: i64 = row.try_get("enqueue_time")?;
    tx.event(
        NewEvent::new(tenant_id, kind::OVERFLOWED)
            .conversation(conversation_id)
            .queue(&to.id)
            .from_queue(&from_id)
            .waiting_since(enqueue_time, channel),
    );
    Ok(Overflowed::Moved {
        from: from_id,
        to: to.id.clone(),
        waited: now.saturating_sub(enqueue_time),
    })
}

/// Sets the overflow due time of every conversation waiting in `queue` from its settings as
/// they are now, counting from when each entered the queue; returns how many rows it set.
/// Call it in the transaction that changes the queue's overflow settings (and wake the
/// matcher after the commit): conversations already past the new wait move on the next
/// sweep, and ones that stayed because they could not move are looked at again.
pub async fn reschedule_overflow(conn: &mut AnyConnection, queue: &Queue) -> Result<u64> {
    // The due time of one that entered at 0 is the wait itself.
    let query = match overflow_due(queue, 0) {
        Some(after) => sqlx::query(
            "UPDATE waiting SET overflow_due_us = entered_time + $3 \
             WHERE tenant_id = $1 AND queue_id = $2",
        )
        .bind(&queue.tenant_id)
        .bind(&queue.id)
        .bind(after),
        None => sqlx::query(
            "UPDATE waiting SET overflow_due_us = NULL \
             WHERE tenant_id = $1 AND queue_id = $2 AND overflow_due_us IS NOT NULL",
        )
        .bind(&queue.tenant_id)
        .bind(&queue.id),
    };
    Ok(query.execute(&mut *conn).await?.rows_affected())
}
