//! Transfers (a conversation's transfer ledger) and the wrap-up of a segment a transfer
//! ended.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Mutation, Segment, Store, join_ids};
use crate::error::Result;

/// `AnswerOutcome.PENDING`: the target agent has not answered yet.
pub const PENDING: i32 = 1;

/// One transfer of a conversation, with its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// UUID.
    pub id: String,
    /// Tenant of the conversation.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// 1 for the conversation's first transfer, then 2, 3…
    pub ordinal: i64,
    /// Who asked for it: the owner, or a supervisor.
    pub from_user_id: String,
    /// The owner when it was asked for.
    pub from_agent_id: String,
    /// The owner's segment it ended.
    pub from_segment_id: String,
    /// Whether a supervisor asked for it.
    pub by_supervisor: bool,
    /// Target agent; empty for a queue.
    pub to_agent_id: String,
    /// Target queue.
    pub to_queue_id: String,
    /// `AnswerOutcome` number.
    pub outcome: i32,
    /// `TransferFallback` number applied when not taken; 0 otherwise.
    pub fallback_applied: i32,
    /// The offer that proposed it to the target agent; empty for a queue.
    pub offer_id: String,
    /// The target agent's reason when rejecting.
    pub reject_reason: String,
    /// Note for the receiver.
    pub note: String,
    /// Whether it sends the conversation back to an agent who transferred it away.
    pub ping_pong: bool,
    /// When it was asked for.
    pub request_time: i64,
    /// When it was answered or ended.
    pub resolve_time: Option<i64>,
    /// The target queue's `TransferFallback` number, applied if the agent does not take it.
    pub fallback: i32,
}

const TRANSFER_SELECT: &str = "SELECT id, tenant_id, conversation_id, ordinal, from_user_id, \
     from_agent_id, from_segment_id, by_supervisor, to_agent_id, to_queue_id, outcome, \
     fallback_applied, offer_id, reject_reason, note, ping_pong, request_time, resolve_time, \
     fallback FROM transfers";

fn transfer_from_row(row: &AnyRow) -> Result<Transfer> {
    Ok(Transfer {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        conversation_id: row.try_get("conversation_id")?,
        ordinal: row.try_get("ordinal")?,
        from_user_id: row.try_get("from_user_id")?,
        from_agent_id: row.try_get("from_agent_id")?,
        from_segment_id: row.try_get("from_segment_id")?,
        by_supervisor: row.try_get::<i64, _>("by_supervisor")? != 0,
        to_agent_id: row.try_get("to_agent_id")?,
        to_queue_id: row.try_get("to_queue_id")?,
        outcome: row.try_get::<i64, _>("outcome")? as i32,
        fallback_applied: row.try_get::<i64, _>("fallback_applied")? as i32,
        offer_id: row.try_get("offer_id")?,
        reject_reason: row.try_get("reject_reason")?,
        note: row.try_get("note")?,
        ping_pong: row.try_get::<i64, _>("ping_pong")? != 0,
        request_time: row.try_get("request_time")?,
        resolve_time: row.try_get("resolve_time")?,
        fallback: row.try_get::<i64, _>("fallback")? as i32,
    })
}

/// The conversation's transfer still waiting for its agent's answer, if any, read on `conn`.
async fn pending_transfer(
    conn: &mut AnyConnection,
    conversation_id: &str,
) -> Result<Option<Transfer>> {
    let sql = format!("{TRANSFER_SELECT} WHERE conversation_id = $1 AND outcome = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(conversation_id)
        .bind(i64::from(PENDING))
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(transfer_from_row).transpose()
}

impl Store {
    /// The conversation's transfer still waiting for its agent's answer, if any: a read
    /// outside any transaction, for checks made before another service is asked.
    pub async fn pending_transfer(&self, conversation_id: &str) -> Result<Option<Transfer>> {
        let mut conn = self.conn().await?;
        pending_transfer(&mut conn, conversation_id).await
    }

    /// Up to `limit` transfers of a conversation after `after_ordinal`, oldest first.
    pub async fn transfers(
        &self,
        conversation_id: &str,
        after_ordinal: i64,
        limit: i64,
    ) -> Result<Vec<Transfer>> {
        let sql = format!(
            "{TRANSFER_SELECT} WHERE conversation_id = $1 AND ordinal > $2 \
             ORDER BY ordinal LIMIT $3"
        );
        let mut conn = self.conn().await?;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(conversation_id)
            .bind(after_ordinal)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(transfer_from_row)
            .collect()
    }
}

impl Mutation {
    /// Records a transfer as the conversation's next one; its `ordinal` is set here.
    pub async fn insert_transfer(&mut self, transfer: &mut Transfer) -> Result<()> {
        let (next,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(ordinal), 0) + 1 FROM transfers WHERE conversation_id = $1",
        )
        .bind(&transfer.conversation_id)
        .fetch_one(self.conn())
        .await?;
        transfer.ordinal = next;
        sqlx::query(
            "INSERT INTO transfers (id, tenant_id, conversation_id, ordinal, from_user_id, \
             from_agent_id, from_segment_id, by_supervisor, to_agent_id, to_queue_id, outcome, \
             fallback_applied, offer_id, reject_reason, note, ping_pong, request_time, \
             resolve_time, fallback) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(&transfer.id)
        .bind(&transfer.tenant_id)
        .bind(&transfer.conversation_id)
        .bind(transfer.ordinal)
        .bind(&transfer.from_user_id)
        .bind(&transfer.from_agent_id)
        .bind(&transfer.from_segment_id)
        .bind(i64::from(transfer.by_supervisor))
        .bind(&transfer.to_agent_id)
        .bind(&transfer.to_queue_id)
        .bind(i64::from(transfer.outcome))
        .bind(i64::from(transfer.fallback_applied))
        .bind(&transfer.offer_id)
        .bind(&transfer.reject_reason)
        .bind(&transfer.note)
        .bind(i64::from(transfer.ping_pong))
        .bind(transfer.request_time)
        .bind(transfer.resolve_time)
        .bind(i64::from(transfer.fallback))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The transfer proposed by routing-svc's offer `offer_id`, if any.
    pub async fn transfer_by_offer(&mut self, offer_id: &str) -> Result<Option<Transfer>> {
        let sql = format!("{TRANSFER_SELECT} WHERE offer_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(offer_id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(transfer_from_row).transpose()
    }

    /// The conversation's transfer still waiting for its agent's answer, if any.
    pub async fn pending_transfer(&mut self, conversation_id: &str) -> Result<Option<Transfer>> {
        pending_transfer(self.conn(), conversation_id).await
    }

    /// Whether `agent_id` transferred this conversation away before (a transfer back to
    /// them is ping-pong).
    pub async fn transferred_away_by(
        &mut self,
        conversation_id: &str,
        agent_id: &str,
    ) -> Result<bool> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM transfers WHERE conversation_id = $1 AND from_agent_id = $2",
        )
        .bind(conversation_id)
        .bind(agent_id)
        .fetch_one(self.conn())
        .await?;
        Ok(count > 0)
    }

    /// Records the outcome of a pending transfer; false when it was no longer pending.
    pub async fn resolve_transfer(&mut self, transfer: &Transfer, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE transfers SET outcome = $2, fallback_applied = $3, reject_reason = $4, \
             resolve_time = $5 WHERE id = $1 AND outcome = $6",
        )
        .bind(&transfer.id)
        .bind(i64::from(transfer.outcome))
        .bind(i64::from(transfer.fallback_applied))
        .bind(&transfer.reject_reason)
        .bind(now)
        .bind(i64::from(PENDING))
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Segment `segment_id` of conversation `conversation_id`, if any.
    pub async fn segment(
        &mut self,
        conversation_id: &str,
        segment_id: &str,
    ) -> Result<Option<Segment>> {
        let row = sqlx::query(
            "SELECT id, conversation_id, ordinal, agent_id, queue_id, start_reason, end_reason, \
             start_time, end_time, wrap_up_reason_ids FROM segments \
             WHERE conversation_id = $1 AND id = $2",
        )
        .bind(conversation_id)
        .bind(segment_id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref()
            .map(super::conversations::segment_from_row)
            .transpose()
    }

    /// Records wrap-up reasons for an ended segment that has none yet; false when it has
    /// some already (wrapped up once).
    pub async fn wrap_up_segment(
        &mut self,
        segment_id: &str,
        reason_ids: &[String],
        note: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE segments SET wrap_up_reason_ids = $2, wrap_up_note = $3 \
             WHERE id = $1 AND wrap_up_reason_ids = ''",
        )
        .bind(segment_id)
        .bind(join_ids(reason_ids))
        .bind(note)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
