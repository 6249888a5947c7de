//! The event log: written by [`super::Mutation::commit`], read in sequence order.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::{Event, Store, Topic, join_ids, split_ids, topics};
use crate::error::Result;

const EVENT_SELECT: &str = "SELECT sequence, id, tenant_id, conversation_id, type, occur_time, \
     actor_id, agent_id, previous_agent_id, queue_id, program_id, channel, segment_id, state, \
     wrap_up_reason_ids, message_id, transfer_id, detail, conversation_create_time, \
     conversation_sequence, reopen_window_secs, previous_queue_id, participant_user_id, \
     participant_role, mode, units_over_capacity, segment_end, answer_outcome, \
     transfer_fallback, invitation_id, transfer_to_agent_id, transfer_to_queue_id, offer_id, \
     ping_pong FROM events";

pub(super) async fn insert(conn: &mut AnyConnection, event: &Event) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (sequence, id, tenant_id, conversation_id, type, occur_time, \
         actor_id, agent_id, previous_agent_id, queue_id, program_id, channel, segment_id, \
         state, wrap_up_reason_ids, message_id, transfer_id, detail, conversation_create_time, \
         conversation_sequence, reopen_window_secs, previous_queue_id, participant_user_id, \
         participant_role, mode, units_over_capacity, segment_end, answer_outcome, \
         transfer_fallback, invitation_id, transfer_to_agent_id, transfer_to_queue_id, \
         offer_id, ping_pong) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34)",
    )
    .bind(event.sequence)
    .bind(&event.id)
    .bind(&event.tenant_id)
    .bind(&event.conversation_id)
    .bind(i64::from(event.kind))
    .bind(event.occur_time)
    .bind(&event.actor_id)
    .bind(&event.agent_id)
    .bind(&event.previous_agent_id)
    .bind(&event.queue_id)
    .bind(&event.program_id)
    .bind(i64::from(event.channel))
    .bind(&event.segment_id)
    .bind(i64::from(event.state))
    .bind(join_ids(&event.wrap_up_reason_ids))
    .bind(&event.message_id)
    .bind(&event.transfer_id)
    .bind(&event.detail)
    .bind(event.conversation_create_time)
    .bind(event.conversation_sequence)
    .bind(event.reopen_window_secs)
    .bind(&event.previous_queue_id)
    .bind(&event.participant_user_id)
    .bind(i64::from(event.participant_role))
    .bind(i64::from(event.mode))
    .bind(i64::from(event.units_over_capacity))
    .bind(&event.segment_end)
    .bind(i64::from(event.answer_outcome))
    .bind(i64::from(event.transfer_fallback))
    .bind(&event.invitation_id)
    .bind(&event.transfer_to_agent_id)
    .bind(&event.transfer_to_queue_id)
    .bind(&event.offer_id)
    .bind(i64::from(event.ping_pong))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn event_from_row(row: &AnyRow) -> Result<Event> {
    Ok(Event {
        sequence: row.try_get("sequence")?,
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        conversation_id: row.try_get("conversation_id")?,
        kind: row.try_get::<i64, _>("type")? as i32,
        occur_time: row.try_get("occur_time")?,
        actor_id: row.try_get("actor_id")?,
        agent_id: row.try_get("agent_id")?,
        previous_agent_id: row.try_get("previous_agent_id")?,
        queue_id: row.try_get("queue_id")?,
        program_id: row.try_get("program_id")?,
        channel: row.try_get::<i64, _>("channel")? as i32,
        segment_id: row.try_get("segment_id")?,
        state: row.try_get::<i64, _>("state")? as i32,
        wrap_up_reason_ids: split_ids(&row.try_get::<String, _>("wrap_up_reason_ids")?),
        message_id: row.try_get("message_id")?,
        transfer_id: row.try_get("transfer_id")?,
        detail: row.try_get("detail")?,
        conversation_create_time: row.try_get("conversation_create_time")?,
        conversation_sequence: row.try_get("conversation_sequence")?,
        base_sequence: 0,
        reopen_window_secs: row.try_get("reopen_window_secs")?,
        previous_queue_id: row.try_get("previous_queue_id")?,
        participant_user_id: row.try_get("participant_user_id")?,
        participant_role: row.try_get::<i64, _>("participant_role")? as i32,
        mode: row.try_get::<i64, _>("mode")? as i32,
        units_over_capacity: row.try_get::<i64, _>("units_over_capacity")? as i32,
        segment_end: row.try_get("segment_end")?,
        answer_outcome: row.try_get::<i64, _>("answer_outcome")? as i32,
        transfer_fallback: row.try_get::<i64, _>("transfer_fallback")? as i32,
        invitation_id: row.try_get("invitation_id")?,
        transfer_to_agent_id: row.try_get("transfer_to_agent_id")?,
        transfer_to_queue_id: row.try_get("transfer_to_queue_id")?,
        offer_id: row.try_get("offer_id")?,
        ping_pong: row.try_get::<i64, _>("ping_pong")? != 0,
    })
}

impl Store {
    /// Events of every tenant with a sequence above `after`, in sequence order.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>> {
        let sql = format!("{EVENT_SELECT} WHERE sequence > $1 ORDER BY sequence LIMIT $2");
        let mut conn = self.conn().await?;
        sqlx::query(AssertSqlSafe(sql))
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    /// Events of one conversation with a conversation sequence above `after`, in order.
    pub async fn conversation_events(
        &self,
        conversation_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let sql = format!(
            "{EVENT_SELECT} WHERE conversation_id = $1 AND conversation_sequence > $2 \
             ORDER BY conversation_sequence LIMIT $3"
        );
        let mut conn = self.conn().await?;
        sqlx::query(AssertSqlSafe(sql))
            .bind(conversation_id)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    /// The highest committed sequence, 0 before the first event.
    /// The log sequences and topics of events after `after`, at most `limit`: what the
    /// change follower publishes for commits of other replicas.
    pub async fn topics_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, Vec<Topic>)>> {
        let mut conn = self.conn().await?;
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT sequence, tenant_id, conversation_id FROM events WHERE sequence > $1 \
             ORDER BY sequence LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(sequence, tenant_id, conversation_id)| {
                (sequence, topics(&tenant_id, &conversation_id).to_vec())
            })
            .collect())
    }

    pub async fn last_sequence(&self) -> Result<i64> {
        let mut conn = self.conn().await?;
        let (last,): (i64,) = sqlx::query_as("SELECT last FROM event_counter WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        Ok(last)
    }
}
