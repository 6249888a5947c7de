//! The event log: every state change writes events in its own transaction.
//!
//! Sequences come from a one-row counter bumped by `UPDATE … RETURNING` as the last step
//! of each write transaction. The row lock is held until commit, so a transaction with a
//! higher sequence commits after every one with a lower sequence, and a reader that sees
//! sequence `n` has already been able to see every sequence below it.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use switchboard_server_kit::db::now_micros;

use crate::domain::presence::PresenceChange;
use crate::domain::{Channel, Offer, OfferKind, Presence, PresenceCause};
use crate::error::{Error, Result};
use crate::store::{fetch_all, placeholders};

/// The stored event types, each mapped to the contract's `RoutingEventType` in
/// `crate::convert::event_type` (a test checks that every one of [`kind::ALL`] is).
pub mod kind {
    /// A conversation entered a queue.
    pub const ENQUEUED: &str = "conversation.enqueued";
    /// A conversation left its queue without being taken.
    pub const WAITING_CANCELLED: &str = "waiting.cancelled";
    /// A waiting conversation moved to its queue's overflow queue.
    pub const OVERFLOWED: &str = "conversation.overflowed";
    /// An offer was made.
    pub const OFFER_CREATED: &str = "offer.created";
    /// An offer was accepted.
    pub const OFFER_ACCEPTED: &str = "offer.accepted";
    /// An offer was rejected.
    pub const OFFER_REJECTED: &str = "offer.rejected";
    /// An offer timed out.
    pub const OFFER_TIMED_OUT: &str = "offer.timed_out";
    /// An offer was withdrawn.
    pub const OFFER_WITHDRAWN: &str = "offer.withdrawn";
    /// An agent's shown presence changed (or was set by hand).
    pub const PRESENCE_CHANGED: &str = "presence.changed";
    /// Units were reserved for a conversation with an agent.
    pub const CAPACITY_RESERVED: &str = "capacity.reserved";
    /// Units held for a conversation were released.
    pub const CAPACITY_RELEASED: &str = "capacity.released";
    /// A program was created.
    pub const PROGRAM_CREATED: &str = "program.created";
    /// A queue was created.
    pub const QUEUE_CREATED: &str = "queue.created";
    /// A queue's settings changed.
    pub const QUEUE_UPDATED: &str = "queue.updated";
    /// A queue was deleted.
    pub const QUEUE_DELETED: &str = "queue.deleted";
    /// A capacity profile was created.
    pub const CAPACITY_PROFILE_CREATED: &str = "capacity_profile.created";
    /// An agent's routing profile was set.
    pub const AGENT_PROFILE_SET: &str = "agent_profile.set";
    /// An agent lost a queue membership because the queue was deleted.
    pub const AGENT_QUEUE_REMOVED: &str = "agent_profile.queue_removed";
    /// An agent's display name changed.
    pub const AGENT_RENAMED: &str = "agent.renamed";
    /// conversation-svc applied an assignment.
    pub const ASSIGNMENT_APPLIED: &str = "assignment.applied";
    /// conversation-svc refused an assignment.
    pub const ASSIGNMENT_FAILED: &str = "assignment.failed";

    /// Every type written.
    pub const ALL: &[&str] = &[
        ENQUEUED,
        WAITING_CANCELLED,
        OVERFLOWED,
        OFFER_CREATED,
        OFFER_ACCEPTED,
        OFFER_REJECTED,
        OFFER_TIMED_OUT,
        OFFER_WITHDRAWN,
        PRESENCE_CHANGED,
        CAPACITY_RESERVED,
        CAPACITY_RELEASED,
        PROGRAM_CREATED,
        QUEUE_CREATED,
        QUEUE_UPDATED,
        QUEUE_DELETED,
        CAPACITY_PROFILE_CREATED,
        AGENT_PROFILE_SET,
        AGENT_QUEUE_REMOVED,
        AGENT_RENAMED,
        ASSIGNMENT_APPLIED,
        ASSIGNMENT_FAILED,
    ];
}

/// What an event says beyond the ids it names, so that a consumer (reporting) can follow
/// agents and queues from the log alone. Stored one column each; zero, `None` and empty
/// mean "does not apply".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventData {
    /// A presence change: shown after, shown before, and why.
    pub presence: Option<PresenceChange>,
    /// The reason given with a presence set by hand.
    pub presence_reason: String,
    /// Who set a presence by hand.
    pub actor_id: String,
    /// Units reserved, released, or held by an offer.
    pub capacity_units: i32,
    /// Units the agent holds after the change (with `capacity_total`), when known.
    pub capacity_used: i32,
    /// The agent's capacity total after the change.
    pub capacity_total: i32,
    /// Units reserved beyond capacity by an override.
    pub units_over_capacity: i32,
    /// When the customer started waiting (micros), 0 when it does not apply.
    pub wait_start_time: i64,
    /// When the offer was made (micros), 0 when not an offer event.
    pub offer_create_time: i64,
    /// The offer's deadline (micros), 0 when not an offer event.
    pub offer_expire_time: i64,
    /// What the offer is for.
    pub offer_kind: Option<OfferKind>,
    /// The agent's reason for a rejection.
    pub reject_reason: String,
    /// The conversation's channel.
    pub channel: Option<Channel>,
}

/// An event to append; ids left empty when they do not apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewEvent {
    /// Tenant of the change.
    pub tenant_id: String,
    /// Event type, one of [`kind`].
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
    /// What happened, in detail.
    pub data: EventData,
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

    /// Records a presence change.
    pub fn presence(mut self, change: PresenceChange) -> NewEvent {
        self.data.presence = Some(change);
        self
    }

    /// Records who set a presence by hand, and their reason.
    pub fn set_by(mut self, actor_id: &str, reason: &str) -> NewEvent {
        actor_id.clone_into(&mut self.data.actor_id);
        reason.clone_into(&mut self.data.presence_reason);
        self
    }

    /// Records the units concerned.
    pub fn units(mut self, units: i32) -> NewEvent {
        self.data.capacity_units = units;
        self
    }

    /// Records the agent's capacity after the change: `used` of `total` units.
    pub fn load(mut self, used: i32, total: i32) -> NewEvent {
        self.data.capacity_used = used;
        self.data.capacity_total = total;
        self
    }

    /// Records the units reserved beyond capacity.
    pub fn over_capacity(mut self, units: i32) -> NewEvent {
        self.data.units_over_capacity = units;
        self
    }

    /// Records when the customer started waiting, and on which channel.
    pub fn waiting_since(mut self, wait_start_time: i64, channel: Channel) -> NewEvent {
        self.data.wait_start_time = wait_start_time;
        self.data.channel = Some(channel);
        self
    }

    /// Names `offer` with its facts: queue, agent, conversation, kind, times, units.
    pub fn of_offer(offer: &Offer, kind: &'static str) -> NewEvent {
        let mut event = NewEvent::new(&offer.tenant_id, kind)
            .agent(&offer.agent_id)
            .conversation(&offer.conversation_id)
            .queue(&offer.queue_id)
            .offer(&offer.id)
            .units(offer.capacity_units)
            .waiting_since(offer.wait_start_time, offer.channel);
        event.data.offer_create_time = offer.create_time;
        event.data.offer_expire_time = offer.expire_time;
        event.data.offer_kind = Some(offer.kind);
        offer
            .reject_reason
            .clone_into(&mut event.data.reject_reason);
        event
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
    /// What happened, in detail.
    pub data: EventData,
}

/// Values bound per event row: one per column of `EVENT_COLUMNS`.
const EVENT_FIELDS: usize = 24;
/// Event rows per INSERT: a batch of time-outs writes hundreds of events. Ten rows a
/// statement wrote them a quarter faster than one; forty were slower again, as SQLite looks
/// up each of a statement's numbered parameters by a walk of its parameter list.
const ROWS_PER_INSERT: usize = 10;

/// Appends `events` with consecutive sequences; returns the last one, if any.
pub(crate) async fn append(conn: &mut AnyConnection, events: &[NewEvent]) -> Result<Option<i64>> {
    if events.is_empty() {
        return Ok(None);
    }
    let count = i64::try_from(events.len()).expect("events of one change fit an i64");
    let last: i64 = sqlx::query_scalar(
        "UPDATE event_sequence SET last = last + $1 WHERE id = 1 RETURNING last",
    )
    .bind(count)
    .fetch_one(&mut *conn)
    .await?;
    let now = now_micros();
    let first = last - count + 1;
    for (chunk, rows) in events.chunks(ROWS_PER_INSERT).enumerate() {
        let values = (0..rows.len())
            .map(|row| format!("({})", placeholders(1 + row * EVENT_FIELDS, EVENT_FIELDS)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO events ({EVENT_COLUMNS}) VALUES {values}"
        )));
        for (index, event) in rows.iter().enumerate() {
            let sequence = first + (chunk * ROWS_PER_INSERT + index) as i64;
            let data = &event.data;
            let presence = data.presence.as_ref();
            query = query
                .bind(sequence)
                .bind(&event.tenant_id)
                .bind(event.kind)
                .bind(now)
                .bind(&event.agent_id)
                .bind(&event.conversation_id)
                .bind(&event.queue_id)
                .bind(&event.offer_id)
                .bind(&event.from_queue_id)
                .bind(i64::from(presence.map_or(0, |p| p.shown.as_i32())))
                .bind(i64::from(presence.map_or(0, |p| p.previous.as_i32())))
                .bind(i64::from(presence.map_or(0, |p| p.cause.as_i32())))
                .bind(&data.presence_reason)
                .bind(&data.actor_id)
                .bind(i64::from(data.capacity_units))
                .bind(i64::from(data.capacity_used))
                .bind(i64::from(data.capacity_total))
                .bind(i64::from(data.units_over_capacity))
                .bind(data.wait_start_time)
                .bind(data.offer_create_time)
                .bind(data.offer_expire_time)
                .bind(i64::from(data.offer_kind.map_or(0, OfferKind::as_i32)))
                .bind(&data.reject_reason)
                .bind(i64::from(data.channel.map_or(0, Channel::as_i32)));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(Some(last))
}

fn small(row: &AnyRow, column: &str) -> Result<i32> {
    let value: i64 = row.try_get(column)?;
    i32::try_from(value).map_err(|_| Error::Internal(format!("events.{column} out of range")))
}

fn event_from_row(row: &AnyRow) -> Result<Event> {
    let presence = Presence::from_i32(small(row, "presence")?);
    let previous = Presence::from_i32(small(row, "previous_presence")?);
    let cause = PresenceCause::from_i32(small(row, "presence_cause")?);
    let presence = match (presence, previous, cause) {
        (Some(shown), Some(previous), Some(cause)) => Some(PresenceChange {
            shown,
            previous,
            cause,
        }),
        _ => None,
    };
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
        data: EventData {
            presence,
            presence_reason: row.try_get("presence_reason")?,
            actor_id: row.try_get("actor_id")?,
            capacity_units: small(row, "capacity_units")?,
            capacity_used: small(row, "capacity_used")?,
            capacity_total: small(row, "capacity_total")?,
            units_over_capacity: small(row, "units_over_capacity")?,
            wait_start_time: row.try_get("wait_start_time")?,
            offer_create_time: row.try_get("offer_create_time")?,
            offer_expire_time: row.try_get("offer_expire_time")?,
            offer_kind: OfferKind::from_i32(small(row, "offer_kind")?),
            reject_reason: row.try_get("reject_reason")?,
            channel: Channel::from_i32(small(row, "channel")?),
        },
    })
}

const EVENT_COLUMNS: &str = "sequence, tenant_id, type, occur_time, agent_id, conversation_id, \
    queue_id, offer_id, from_queue_id, presence, previous_presence, presence_cause, \
    presence_reason, actor_id, capacity_units, capacity_used, capacity_total, \
    units_over_capacity, wait_start_time, offer_create_time, offer_expire_time, offer_kind, \
    reject_reason, channel";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_row_binds_one_value_per_column() {
        assert_eq!(EVENT_COLUMNS.split(',').count(), EVENT_FIELDS);
    }
}
