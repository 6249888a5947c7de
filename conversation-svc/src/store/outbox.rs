//! The command outbox: calls to routing-svc decided inside a transaction, sent after it
//! commits and retried until routing-svc accepts them.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Command, CommandKind, CommandState, Mutation, Store, corrupt};
use crate::error::Result;

const COMMAND_SELECT: &str = "SELECT id, kind, tenant_id, conversation_id, payload, state, \
     attempts, next_attempt_time, last_error FROM command_outbox";

fn command_from_row(row: &AnyRow) -> Result<Command> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(Command {
        id: row.try_get("id")?,
        kind: CommandKind::parse(&kind).ok_or_else(|| corrupt(format!("command kind {kind}")))?,
        tenant_id: row.try_get("tenant_id")?,
        conversation_id: row.try_get("conversation_id")?,
        payload: row.try_get("payload")?,
        state: CommandState::parse(&state)
            .ok_or_else(|| corrupt(format!("command state {state}")))?,
        attempts: row.try_get("attempts")?,
        next_attempt_time: row.try_get("next_attempt_time")?,
        last_error: row.try_get("last_error")?,
    })
}

impl Mutation {
    /// Adds a command, due at once; [`super::Committed::commands`] lists it after commit.
    pub async fn add_command(
        &mut self,
        kind: CommandKind,
        tenant_id: &str,
        conversation_id: &str,
        payload: Vec<u8>,
        now: i64,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO command_outbox (id, kind, tenant_id, conversation_id, payload, state, \
             next_attempt_time, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&id)
        .bind(kind.as_str())
        .bind(tenant_id)
        .bind(conversation_id)
        .bind(payload)
        .bind(CommandState::Pending.as_str())
        .bind(now)
        .execute(self.conn())
        .await?;
        self.commands.push(id.clone());
        Ok(id)
    }
}

impl Store {
    /// Pending commands due at `now`, oldest first.
    pub async fn due_commands(&self, now: i64, limit: i64) -> Result<Vec<Command>> {
        let mut conn = self.conn().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COMMAND_SELECT} WHERE state = $1 AND next_attempt_time <= $2 \
             ORDER BY next_attempt_time, create_time LIMIT $3"
        )))
        .bind(CommandState::Pending.as_str())
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(command_from_row)
        .collect()
    }

    /// One command by id.
    pub async fn command(&self, id: &str) -> Result<Option<Command>> {
        let mut conn = self.conn().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{COMMAND_SELECT} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(command_from_row)
        .transpose()
    }

    /// Claims a due pending command for one attempt: counts the attempt and pushes its due
    /// time to `lease_until`, so that no other dispatcher (of this or another replica) sends
    /// it meanwhile. False when it is not due or not pending any more.
    pub async fn claim_command(&self, id: &str, now: i64, lease_until: i64) -> Result<bool> {
        let mut conn = self.conn().await?;
        let done = sqlx::query(
            "UPDATE command_outbox SET attempts = attempts + 1, next_attempt_time = $3 \
             WHERE id = $1 AND state = $4 AND next_attempt_time <= $2",
        )
        .bind(id)
        .bind(now)
        .bind(lease_until)
        .bind(CommandState::Pending.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a command accepted by routing-svc.
    pub async fn complete_command(&self, id: &str, now: i64) -> Result<()> {
        self.finish_command(id, CommandState::Done, "", now).await
    }

    /// Marks a command refused for good, keeping the reason for operators.
    pub async fn fail_command(&self, id: &str, error: &str, now: i64) -> Result<()> {
        self.finish_command(id, CommandState::Failed, error, now)
            .await
    }

    async fn finish_command(
        &self,
        id: &str,
        state: CommandState,
        error: &str,
        now: i64,
    ) -> Result<()> {
        let mut conn = self.conn().await?;
        sqlx::query(
            "UPDATE command_outbox SET state = $2, last_error = $3, done_time = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Schedules the next attempt of a command that failed for now.
    pub async fn retry_command(&self, id: &str, error: &str, next_attempt_time: i64) -> Result<()> {
        let mut conn = self.conn().await?;
        sqlx::query(
            "UPDATE command_outbox SET last_error = $2, next_attempt_time = $3 \
             WHERE id = $1 AND state = $4",
        )
        .bind(id)
        .bind(error)
        .bind(next_attempt_time)
        .bind(CommandState::Pending.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
