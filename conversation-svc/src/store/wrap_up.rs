//! The wrap-up time limit: the limit a conversation keeps from the queue it was assigned
//! from, its deadline while in WRAP_UP, and the reads and the claim of the background task
//! that closes conversations whose deadline has passed.

use super::{Mutation, Store};
use crate::domain::state::State;
use crate::error::Result;

impl Mutation {
    /// Keeps `limit_us` (0 for none), the wrap-up time limit of the queue conversation
    /// `conversation_id` has just been assigned from.
    pub async fn set_wrap_up_limit(&mut self, conversation_id: &str, limit_us: i64) -> Result<()> {
        sqlx::query("UPDATE conversations SET wrap_up_limit_us = $2 WHERE id = $1")
            .bind(conversation_id)
            .bind(limit_us.max(0))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Starts the wrap-up clock of `conversation_id`, which has just entered WRAP_UP at
    /// `now`: the deadline is `now` plus its limit (none without a limit), and
    /// `reopen_window_secs` is kept for the CLOSED event should the limit close it. Returns
    /// the deadline.
    pub async fn start_wrap_up_clock(
        &mut self,
        conversation_id: &str,
        now: i64,
        reopen_window_secs: i64,
    ) -> Result<Option<i64>> {
        let (deadline,): (Option<i64>,) = sqlx::query_as(
            "UPDATE conversations SET wrap_up_deadline = CASE WHEN wrap_up_limit_us > 0 \
             THEN $2 + wrap_up_limit_us ELSE NULL END, wrap_up_reopen_window_secs = $3 \
             WHERE id = $1 RETURNING wrap_up_deadline",
        )
        .bind(conversation_id)
        .bind(now)
        .bind(reopen_window_secs)
        .fetch_one(self.conn())
        .await?;
        Ok(deadline)
    }

    /// Claims the close of `conversation_id` by its wrap-up time limit: clears the deadline
    /// if the conversation is still in WRAP_UP and the deadline has passed at `now`, and
    /// returns the reopen window kept for its CLOSED event. `None` when wrap-up was submitted
    /// (or the conversation closed otherwise) first. The conditional update takes the row
    /// lock on PostgreSQL (writers are serialised on SQLite), so of this close and a
    /// concurrent SubmitWrapUp or another replica's sweep exactly one wins.
    pub async fn claim_wrap_up_expiry(
        &mut self,
        conversation_id: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE conversations SET wrap_up_deadline = NULL \
             WHERE id = $1 AND state = $2 AND wrap_up_deadline IS NOT NULL \
             AND wrap_up_deadline <= $3 RETURNING wrap_up_reopen_window_secs",
        )
        .bind(conversation_id)
        .bind(i64::from(State::WrapUp.code()))
        .bind(now)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|(secs,)| secs))
    }
}

impl Store {
    /// The earliest wrap-up deadline of any conversation in WRAP_UP, if any.
    pub async fn next_wrap_up_deadline(&self) -> Result<Option<i64>> {
        let mut conn = self.conn().await?;
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT wrap_up_deadline FROM conversations WHERE wrap_up_deadline IS NOT NULL \
             ORDER BY wrap_up_deadline LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|(deadline,)| deadline))
    }

    /// Up to `limit` conversations, as (tenant, id), whose wrap-up deadline has passed at
    /// `now`, earliest first.
    pub async fn due_wrap_ups(&self, now: i64, limit: i64) -> Result<Vec<(String, String)>> {
        let mut conn = self.conn().await?;
        Ok(sqlx::query_as(
            "SELECT tenant_id, id FROM conversations WHERE wrap_up_deadline IS NOT NULL \
             AND wrap_up_deadline <= $1 AND state = $2 ORDER BY wrap_up_deadline LIMIT $3",
        )
        .bind(now)
        .bind(i64::from(State::WrapUp.code()))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?)
    }
}
