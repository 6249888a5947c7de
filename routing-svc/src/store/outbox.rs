//! The assignment outbox: accepted offers that conversation-svc has yet to apply.
//!
//! A row is written in the transaction that accepts the offer, so the assignment cannot
//! be lost between the two services; it is retried until conversation-svc confirms it or
//! refuses it for good (then the capacity is released). Entries of one conversation are
//! numbered and attempted in that order; a claim is a short lease (`lease_until`), kept
//! apart from the retry time (`next_attempt_time`). Besides assignments, an entry may tell
//! conversation-svc how a directed offer ended, return a conversation to its queue
//! because its agent logged out, or move a waiting conversation to its queue's overflow
//! queue: in the same order, with the same retries.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use switchboard_server_kit::db::Dialect;

use crate::domain::{AssignmentSource, OfferState, Queue};
use crate::error::{Error, Result};
use crate::store::{NewEvent, Tx, fetch_all, int_column, kind};

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
    /// Set when the entry tells conversation-svc how a directed offer (a transfer) ended
    /// without being accepted, rather than an assignment to apply: the offer's final state
    /// and the agent's reason.
    pub resolution: Option<(OfferState, String)>,
    /// Set when the entry returns the agent's conversation to its queue because the agent
    /// logged out, rather than an assignment to apply.
    pub logout: Option<Logout>,
    /// Set when the entry tells conversation-svc that the conversation overflowed into
    /// `queue_id`, rather than an assignment to apply.
    pub overflow: Option<Overflow>,
    /// For a queue offer, a claim or an overflow: the enqueue key of the waiting item it
    /// came from, by which conversation-svc recognises one made before the conversation
    /// moved on.
    pub enqueue_key: String,
}

/// An overflow: the conversation waits in `queue_id` of the entry, having left a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overflow {
    /// The queue it left.
    pub from_queue_id: String,
    /// The program of the queue it entered.
    pub program_id: String,
}

/// A logout that returns a conversation to its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logout {
    /// Who set the agent Offline (the agent or a supervisor).
    pub by: String,
    /// When (microseconds).
    pub time: i64,
}

impl OutboxEntry {
    /// Whether the entry applies an assignment, whose units routing-svc already holds.
    pub fn is_assignment(&self) -> bool {
        self.resolution.is_none() && self.logout.is_none() && self.overflow.is_none()
    }

    /// An entry about `conversation_id` in `queue_id` that applies no assignment, due at
    /// `now`, at once: what a logout return and an overflow start from.
    fn notice(tenant_id: &str, conversation_id: &str, queue_id: &str, now: i64) -> OutboxEntry {
        OutboxEntry {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            agent_id: String::new(),
            agent_display_name: String::new(),
            offer_id: String::new(),
            queue_id: queue_id.to_owned(),
            // Not read for such an entry; the column holds a known word.
            source: AssignmentSource::QueueOffer,
            attempts: 0,
            next_attempt_time: now,
            resolution: None,
            logout: None,
            overflow: None,
            enqueue_key: String::new(),
        }
    }

    /// An entry returning `conversation_id`, held by `agent_id` in `queue_id`, to its
    /// queue after the agent logged out at `now`, set Offline by `by`. Due at once.
    pub fn logout(
        tenant_id: &str,
        conversation_id: &str,
        agent_id: &str,
        queue_id: &str,
        by: &str,
        now: i64,
    ) -> OutboxEntry {
        OutboxEntry {
            agent_id: agent_id.to_owned(),
            logout: Some(Logout {
                by: by.to_owned(),
                time: now,
            }),
            ..OutboxEntry::notice(tenant_id, conversation_id, queue_id, now)
        }
    }

    /// An entry telling conversation-svc that `conversation_id`, waiting under
    /// `enqueue_key`, moved from `from_queue_id` to its overflow queue `to` at `now`. Due at
    /// once.
    pub fn overflow(
        tenant_id: &str,
        conversation_id: &str,
        from_queue_id: &str,
        enqueue_key: &str,
        to: &Queue,
        now: i64,
    ) -> OutboxEntry {
        OutboxEntry {
            overflow: Some(Overflow {
                from_queue_id: from_queue_id.to_owned(),
                program_id: to.program_id.clone(),
            }),
            enqueue_key: enqueue_key.to_owned(),
            ..OutboxEntry::notice(tenant_id, conversation_id, &to.id, now)
        }
    }

    /// What the entry carries, for logs.
    pub fn kind(&self) -> &'static str {
        if self.logout.is_some() {
            "logout return"
        } else if self.overflow.is_some() {
            "overflow"
        } else if self.resolution.is_some() {
            "offer outcome"
        } else {
            "assignment"
        }
    }
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
        resolution: match OfferState::from_i32(int_column(row, "offer_state")?) {
            Some(state) => Some((state, row.try_get("reject_reason")?)),
            None => None,
        },
        logout: {
            let by: String = row.try_get("logout_by")?;
            if by.is_empty() {
                None
            } else {
                Some(Logout {
                    by,
                    time: row.try_get("logout_time")?,
                })
            }
        },
        overflow: {
            let from_queue_id: String = row.try_get("overflow_from")?;
            if from_queue_id.is_empty() {
                None
            } else {
                Some(Overflow {
                    from_queue_id,
                    program_id: row.try_get("overflow_program")?,
                })
            }
        },
        enqueue_key: row.try_get("enqueue_key")?,
    })
}

const COLUMNS: &str = "id, tenant_id, conversation_id, agent_id, agent_display_name, offer_id, \
    queue_id, start_reason, attempts, next_attempt_time, offer_state, reject_reason, logout_by, \
    logout_time, enqueue_key, overflow_from, overflow_program";

/// An entry claimed for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The entry.
    pub entry: OutboxEntry,
    /// When it was written, the offer's acceptance (microseconds).
    pub create_time: i64,
}

/// Adds an entry in the transaction of the accept, after the conversation's earlier ones.
/// Its `next_attempt_time` is also its lease: the accepting process makes the first
/// attempt, and no other one before then.
pub async fn insert(tx: &mut Tx, entry: &OutboxEntry, now: i64) -> Result<()> {
    // The offer's rows are locked by the accept; should two accepts of one conversation
    // still race, the unique index refuses the second.
    let (seq,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(MAX(conversation_seq), 0) + 1 FROM outbox WHERE conversation_id = $1",
    )
    .bind(&entry.conversation_id)
    .fetch_one(tx.conn())
    .await?;
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, conversation_id, agent_id, agent_display_name, \
         offer_id, queue_id, start_reason, attempts, next_attempt_time, done, outcome, \
         create_time, conversation_seq, lease_until, offer_state, reject_reason, logout_by, \
         logout_time, enqueue_key, overflow_from, overflow_program) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, '', $11, $12, $10, $13, $14, $15, \
         $16, $17, $18, $19)",
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
    .bind(seq)
    .bind(i64::from(
        entry
            .resolution
            .as_ref()
            .map_or(0, |(state, _)| state.as_i32()),
    ))
    .bind(
        entry
            .resolution
            .as_ref()
            .map_or("", |(_, reason)| reason.as_str()),
    )
    .bind(
        entry
            .logout
            .as_ref()
            .map_or("", |logout| logout.by.as_str()),
    )
    .bind(entry.logout.as_ref().map_or(0, |logout| logout.time))
    .bind(&entry.enqueue_key)
    .bind(
        entry
            .overflow
            .as_ref()
            .map_or("", |overflow| overflow.from_queue_id.as_str()),
    )
    .bind(
        entry
            .overflow
            .as_ref()
            .map_or("", |overflow| overflow.program_id.as_str()),
    )
    .execute(tx.conn())
    .await
    .map_err(|err| {
        if switchboard_server_kit::db::is_unique_violation(&err) {
            Error::Conflict(format!(
                "conversation {} was assigned concurrently; retry",
                entry.conversation_id
            ))
        } else {
            Error::Database(err)
        }
    })?;
    Ok(())
}

/// The condition on `o` of an entry that may be attempted at `$1`: not done, its retry time
/// come, no attempt holding it, and no earlier entry of its conversation still pending.
const CLAIMABLE: &str = "o.done = 0 AND o.next_attempt_time <= $1 AND o.lease_until <= $1 \
    AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.conversation_id = o.conversation_id \
    AND p.done = 0 AND p.conversation_seq < o.conversation_seq)";

/// The end of a subquery choosing outbox rows `o` to update: on PostgreSQL it locks them
/// and leaves out those another transaction holds, so that the update never waits for a
/// row; SQLite runs one write transaction at a time and has no row locks.
fn skip_locked(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => " FOR UPDATE OF o SKIP LOCKED",
        Dialect::Sqlite => "",
    }
}

/// Entries that may be attempted at `now`, oldest due first.
pub async fn due(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<OutboxEntry>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox o WHERE {CLAIMABLE} \
         ORDER BY o.next_attempt_time, o.create_time LIMIT $2"
    )))
    .bind(now)
    .bind(limit);
    fetch_all(conn, query, entry_from_row).await
}

/// Whether any entry may be attempted at `now`: a read that spares an idle dispatcher
/// a write transaction.
pub async fn any_due(conn: &mut AnyConnection, now: i64) -> Result<bool> {
    let found: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT o.id FROM outbox o WHERE {CLAIMABLE} LIMIT 1"
    )))
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// Claims up to `limit` entries that may be attempted at `now`, oldest due first, each
/// for one attempt until `lease_until`. Of dispatchers claiming at once (other
/// replicas), one gets each entry.
pub async fn claim(tx: &mut Tx, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Claimed>> {
    // The outer condition is checked again on the locked row (PostgreSQL), so an entry
    // another replica claimed meanwhile is not returned here. Rows another transaction
    // holds are skipped, not waited for: a claim locks many rows in the order the plan
    // reads them, and waiting there for another replica's claim or record, which locks
    // its rows in another order, could deadlock (two replicas did in the replicas test).
    let skip_locked = skip_locked(tx.dialect());
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE outbox SET lease_until = $2 \
         WHERE done = 0 AND lease_until <= $1 AND id IN ( \
             SELECT o.id FROM outbox o WHERE {CLAIMABLE} \
             ORDER BY o.next_attempt_time, o.create_time LIMIT $3{skip_locked}) \
         RETURNING {COLUMNS}, create_time"
    )))
    .bind(now)
    .bind(lease_until)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok(Claimed {
                entry: entry_from_row(row)?,
                create_time: row.try_get("create_time")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    claimed.sort_by_key(|c| (c.entry.next_attempt_time, c.create_time));
    Ok(claimed)
}

/// Whether `entry` is the first pending entry of its conversation, so that it may be
/// attempted now without overtaking an earlier one.
pub async fn is_first_pending(conn: &mut AnyConnection, entry: &OutboxEntry) -> Result<bool> {
    let earlier: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox p WHERE p.conversation_id = $1 AND p.done = 0 \
         AND p.conversation_seq < (SELECT conversation_seq FROM outbox WHERE id = $2)",
    )
    .bind(&entry.conversation_id)
    .bind(&entry.id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(earlier == 0)
}

/// Records a failed attempt and when to try again, ending the lease `lease_until` that the
/// attempt held (unless another attempt holds the entry by now).
pub async fn retry_later(
    tx: &mut Tx,
    id: &str,
    attempts: i32,
    next_attempt_time: i64,
    outcome: &str,
    lease_until: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = $2, next_attempt_time = $3, outcome = $4, lease_until = 0 \
         WHERE id = $1 AND done = 0 AND lease_until = $5",
    )
    .bind(id)
    .bind(i64::from(attempts))
    .bind(next_attempt_time)
    .bind(outcome)
    .bind(lease_until)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Makes every entry that waits out a backoff due at `now`, leaving leased ones alone: a
/// process that starts owes no retry delay chosen before it started.
pub async fn retry_now(tx: &mut Tx, now: i64) -> Result<u64> {
    // Rows another transaction holds keep their time, as in [`claim`]: they are being
    // claimed or recorded by another replica.
    let skip_locked = skip_locked(tx.dialect());
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE outbox SET next_attempt_time = $1 WHERE id IN ( \
             SELECT o.id FROM outbox o \
             WHERE o.done = 0 AND o.next_attempt_time > $1 AND o.lease_until <= $1{skip_locked}) \
         AND done = 0 AND next_attempt_time > $1 AND lease_until <= $1"
    )))
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected())
}

/// How many entries are not done.
pub async fn pending(conn: &mut AnyConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE done = 0")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Marks an entry done with `outcome`; false when it already was.
pub async fn complete(tx: &mut Tx, entry: &OutboxEntry, outcome: &str, now: i64) -> Result<bool> {
    Ok(finish(tx, entry, outcome, now).await?.is_some())
}

/// Marks an entry done with `outcome` and returns when it was written; `None` when it
/// already was done.
pub async fn finish(
    tx: &mut Tx,
    entry: &OutboxEntry,
    outcome: &str,
    now: i64,
) -> Result<Option<i64>> {
    let created: Option<(i64,)> = sqlx::query_as(
        "UPDATE outbox SET done = 1, done_time = $2, outcome = $3, lease_until = 0 \
         WHERE id = $1 AND done = 0 RETURNING create_time",
    )
    .bind(&entry.id)
    .bind(now)
    .bind(outcome)
    .fetch_optional(tx.conn())
    .await?;
    if created.is_some() && entry.is_assignment() {
        let kind = if outcome == "applied" {
            kind::ASSIGNMENT_APPLIED
        } else {
            kind::ASSIGNMENT_FAILED
        };
        tx.event(
            NewEvent::new(&entry.tenant_id, kind)
                .agent(&entry.agent_id)
                .conversation(&entry.conversation_id)
                .queue(&entry.queue_id)
                .offer(&entry.offer_id),
        );
    }
    Ok(created.map(|(create_time,)| create_time))
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
