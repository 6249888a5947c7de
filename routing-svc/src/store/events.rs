//! The event log: every state change writes events in its own transaction.
//!
//! Sequences come from a one-row counter bumped by `UPDATE … RETURNING` as the last step
//! of each write transaction. The row lock is held until commit, so a transaction with a
//! higher sequence commits after every one with a lower sequence, and a reader that sees
//! sequence `n` has already been able to see every sequence below it.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use switchboard_server_kit::db::now_micros;

use crate::error::{Error, Result};
use crate::store::fetch_all;

/// An event to append; ids left empty when they do not apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewEvent {
    /// Tenant of the change.
    pub tenant_id: String,
    /// Event type, e.g. `offer.created`.
    pub kind: &'static str,
    /// The agent concerned.
    pub agent_id: String,
    /// The conversation concerned.
    pub conversation_id: String,
    /// The queue concerned.
    pub queue_id: String,
    /// The offer concerned.
    pub offer_id: String,
    /// The queue a conversation left, for an overflow.
    pub from_queue_id: String,
}

impl NewEvent {
    /// An event of `kind` in `tenant_id`.
    pub fn new(tenant_id: &str, kind: &'static str) -> NewEvent {
        NewEvent {
            tenant_id: tenant_id.to_owned(),
            kind,
            ..NewEvent::default()
        }
    }

    /// Names the agent.
    pub fn agent(mut self, agent_id: &str) -> NewEvent {
        agent_id.clone_into(&mut self.agent_id);
        self
    }

    /// Names the conversation.
    pub fn conversation(mut self, conversation_id: &str) -> NewEvent {
        conversation_id.clone_into(&mut self.conversation_id);
        self
    }

    /// Names the queue.
    pub fn queue(mut self, queue_id: &str) -> NewEvent {
        queue_id.clone_into(&mut self.queue_id);
        self
    }

    /// Names the offer.
    pub fn offer(mut self, offer_id: &str) -> NewEvent {
        offer_id.clone_into(&mut self.offer_id);
        self
    }

    /// Names the queue the conversation left.
    pub fn from_queue(mut self, queue_id: &str) -> NewEvent {
        queue_id.clone_into(&mut self.from_queue_id);
        self
    }
}

/// What a live stream shows: a commit wakes the streams watching its events' topics
/// (see `switchboard_server_kit::changes`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Every event (the internal Subscribe).
    Log,
    /// One tenant's events (supervisors' agent states).
    Tenant(String),
    /// One agent's events (the agent's offers and state).
    Agent {
        /// The agent's tenant.
        tenant_id: String,
        /// The agent.
        agent_id: String,
    },
}

/// The topics of an event of `tenant_id` concerning `agent_id` (empty when none).
pub fn topics(tenant_id: &str, agent_id: &str) -> Vec<Topic> {
    let mut topics = vec![Topic::Log, Topic::Tenant(tenant_id.to_owned())];
    if !agent_id.is_empty() {
        topics.push(Topic::Agent {
            tenant_id: tenant_id.to_owned(),
            agent_id: agent_id.to_owned(),
        });
    }
    topics
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Gap-free, increasing.
    pub sequence: i64,
    /// Tenant.
    pub tenant_id: String,
    /// Event type.
    pub kind: String,
    /// When it happened.
    pub occur_time: i64,
    /// Agent concerned, or empty.
    pub agent_id: String,
    /// Conversation concerned, or empty.
    pub conversation_id: String,
    /// Queue concerned, or empty.
    pub queue_id: String,
    /// Offer concerned, or empty.
    pub offer_id: String,
    /// Queue the conversation left, for an overflow; otherwise empty.
    pub from_queue_id: String,
}

/// Appends `events` with consecutive sequences; returns the last one, if any.
pub(crate) async fn append(conn: &mut AnyConnection, events: &[NewEvent]) -> Result<Option<i64>> {
    if events.is_empty() {
        return Ok(None);
    }
    let count = i64::try_from(events.len()).expect("a handful of events per change");
    let last: i64 = sqlx::query_scalar(
        "UPDATE event_sequence SET last = last + $1 WHERE id = 1 RETURNING last",
    )
    .bind(count)
    .fetch_one(&mut *conn)
    .await?;
    let now = now_micros();
    for (index, event) in events.iter().enumerate() {
        let sequence = last - count + 1 + index as i64;
        sqlx::query(
            "INSERT INTO events (sequence, tenant_id, type, occur_time, agent_id, \
             conversation_id, queue_id, offer_id, from_queue_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(sequence)
        .bind(&event.tenant_id)
        .bind(event.kind)
        .bind(now)
        .bind(&event.agent_id)
        .bind(&event.conversation_id)
        .bind(&event.queue_id)
        .bind(&event.offer_id)
        .bind(&event.from_queue_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some(last))
}

fn event_from_row(row: &AnyRow) -> Result<Event> {
    Ok(Event {
        sequence: row.try_get("sequence")?,
        tenant_id: row.try_get("tenant_id")?,
        kind: row.try_get("type")?,
        occur_time: row.try_get("occur_time")?,
        agent_id: row.try_get("agent_id")?,
        conversation_id: row.try_get("conversation_id")?,
        queue_id: row.try_get("queue_id")?,
        offer_id: row.try_get("offer_id")?,
        from_queue_id: row.try_get("from_queue_id")?,
    })
}

const EVENT_COLUMNS: &str = "sequence, tenant_id, type, occur_time, agent_id, conversation_id, \
    queue_id, offer_id, from_queue_id";

/// Events after `after`, in sequence order, at most `limit`.
pub async fn after(conn: &mut AnyConnection, after: i64, limit: i64) -> Result<Vec<Event>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE sequence > $1 ORDER BY sequence LIMIT $2"
    )))
    .bind(after)
    .bind(limit);
    fetch_all(conn, query, event_from_row).await
}

/// One agent's events after `after` whose type starts with `prefix`, in sequence order.
pub async fn agent_after(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
    prefix: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND agent_id = $2 \
         AND sequence > $3 AND type LIKE $4 ORDER BY sequence LIMIT $5"
    )))
    .bind(tenant_id)
    .bind(agent_id)
    .bind(after)
    .bind(format!("{prefix}%"))
    .bind(limit);
    fetch_all(conn, query, event_from_row).await
}

/// One tenant's events after `after`, in sequence order, at most `limit`.
pub async fn tenant_after(
    conn: &mut AnyConnection,
    tenant_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND sequence > $2 \
         ORDER BY sequence LIMIT $3"
    )))
    .bind(tenant_id)
    .bind(after)
    .bind(limit);
    fetch_all(conn, query, event_from_row).await
}

/// The sequences and topics of events after `after`, at most `limit`: what the change
/// follower publishes for commits of other replicas.
pub async fn topics_after(
    conn: &mut AnyConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Vec<Topic>)>> {
    let rows = sqlx::query(
        "SELECT sequence, tenant_id, agent_id FROM events WHERE sequence > $1 \
         ORDER BY sequence LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let tenant_id: String = row.try_get("tenant_id")?;
            let agent_id: String = row.try_get("agent_id")?;
            Ok((row.try_get("sequence")?, topics(&tenant_id, &agent_id)))
        })
        .collect()
}

/// The last sequence committed so far.
pub async fn last_sequence(conn: &mut AnyConnection) -> Result<i64> {
    sqlx::query_scalar("SELECT last FROM event_sequence WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::from)
}
