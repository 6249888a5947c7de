//! The command outbox: calls to routing-svc decided inside a transaction, sent after it
//! commits and retried until routing-svc accepts them.
//!
//! Commands of one conversation are numbered in the order they are written and a command
//! is claimed only while no earlier one of its conversation is pending, so that routing-svc
//! never sees a ReleaseCapacity before the Enqueue it follows. A claim is a short lease
//! (`lease_until`), kept apart from the retry time (`next_attempt_time`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Command, CommandKind, CommandState, Mutation, Store, corrupt};
use crate::error::{Error, Result};

const COLUMNS: &str = "id, kind, tenant_id, conversation_id, payload, state, attempts, \
     next_attempt_time, last_error, conversation_seq, lease_until, create_time";

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
        conversation_seq: row.try_get("conversation_seq")?,
        lease_until: row.try_get("lease_until")?,
        create_time: row.try_get("create_time")?,
    })
}

/// How many commands wait for routing-svc, as this process knows it without a query, and
/// the bound above which mutations that would add one are refused.
///
/// The dispatcher counts the pending rows each round; commits of this process add theirs
/// at once. The count is `offset + committed`, so a commit racing a recount is counted
/// twice until the next round rather than lost: the estimate errs on the side of refusing.
#[derive(Debug)]
pub struct Backlog {
    limit: AtomicI64,
    committed: AtomicI64,
    offset: AtomicI64,
}

/// The delay a refused caller is asked to wait before retrying.
pub const BACKLOG_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Default for Backlog {
    fn default() -> Backlog {
        Backlog {
            limit: AtomicI64::new(i64::MAX),
            committed: AtomicI64::new(0),
            offset: AtomicI64::new(0),
        }
    }
}

impl Backlog {
    /// Refuses new commands while `limit` or more are pending.
    pub fn set_limit(&self, limit: u64) {
        self.limit
            .store(i64::try_from(limit).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Pending commands as last counted plus those committed since.
    pub fn pending(&self) -> i64 {
        (self.offset.load(Ordering::Relaxed) + self.committed.load(Ordering::Relaxed)).max(0)
    }

    /// RESOURCE_EXHAUSTED when the backlog is at its limit.
    fn admit(&self) -> Result<()> {
        let pending = self.pending();
        let limit = self.limit.load(Ordering::Relaxed);
        if pending < limit {
            return Ok(());
        }
        Err(Error::Backlogged {
            message: format!(
                "{pending} calls to routing-svc are waiting to be sent (limit {limit}); \
                 retry later"
            ),
            retry_after: BACKLOG_RETRY_AFTER,
        })
    }

    /// Counts `n` commands just committed.
    pub(super) fn add(&self, n: usize) {
        self.committed
            .fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

/// A pending command `c` that may be attempted at `$2` (`$1` is the pending state): its
/// retry time has come, no attempt holds it, and no earlier pending command of its
/// conversation precedes it.
const CLAIMABLE: &str = "c.state = $1 AND c.next_attempt_time <= $2 AND c.lease_until <= $2 \
    AND NOT EXISTS (SELECT 1 FROM command_outbox p WHERE p.conversation_id = c.conversation_id \
    AND p.state = $1 AND p.conversation_seq < c.conversation_seq)";

impl Mutation {
    /// Adds a command, due at once, after the conversation's earlier ones;
    /// [`super::Committed::commands`] lists it after commit. RESOURCE_EXHAUSTED (nothing
    /// written) while the outbox holds as many pending commands as allowed.
    pub async fn add_command(
        &mut self,
        kind: CommandKind,
        tenant_id: &str,
        conversation_id: &str,
        payload: Vec<u8>,
        now: i64,
    ) -> Result<String> {
        self.backlog.admit()?;
        // The conversation's row is locked (PostgreSQL) or writers are serialised (SQLite);
        // should two writers still race, the unique index refuses the second.
        let (seq,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(conversation_seq), 0) + 1 FROM command_outbox \
             WHERE conversation_id = $1",
        )
        .bind(conversation_id)
        .fetch_one(self.conn())
        .await?;
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO command_outbox (id, kind, tenant_id, conversation_id, payload, state, \
             next_attempt_time, create_time, conversation_seq, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, 0)",
        )
        .bind(&id)
        .bind(kind.as_str())
        .bind(tenant_id)
        .bind(conversation_id)
        .bind(payload)
        .bind(CommandState::Pending.as_str())
        .bind(now)
        .bind(seq)
        .execute(self.conn())
        .await
        .map_err(|err| {
            if switchboard_server_kit::db::is_unique_violation(&err) {
                Error::Conflict(format!(
                    "conversation {conversation_id} changed concurrently; retry"
                ))
            } else {
                Error::Storage(err)
            }
        })?;
        self.commands.push(id.clone());
        Ok(id)
    }

    /// Claims up to `limit` due commands for one attempt each until `lease_until`, oldest
    /// due first: pending ones whose retry time has come, that no attempt holds and that no
    /// earlier pending command of their conversation precedes. Counts the attempt.
    pub async fn claim_commands(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Command>> {
        // The outer condition is checked again on the locked row (PostgreSQL), so of two
        // replicas claiming at once only one gets a command.
        let mut claimed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE command_outbox SET attempts = attempts + 1, lease_until = $3 \
             WHERE state = $1 AND lease_until <= $2 AND id IN ( \
                 SELECT c.id FROM command_outbox c WHERE {CLAIMABLE} \
                 ORDER BY c.next_attempt_time, c.create_time LIMIT $4) \
             RETURNING {COLUMNS}"
        )))
        .bind(CommandState::Pending.as_str())
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(self.conn())
        .await?
        .iter()
        .map(command_from_row)
        .collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|c| (c.next_attempt_time, c.create_time));
        Ok(claimed)
    }

    /// Marks a command accepted by routing-svc.
    pub async fn complete_command(&mut self, id: &str, now: i64) -> Result<()> {
        self.finish_command(id, CommandState::Done, "", now).await
    }

    /// Marks a command refused for good, keeping the reason for operators.
    pub async fn fail_command(&mut self, id: &str, error: &str, now: i64) -> Result<()> {
        self.finish_command(id, CommandState::Failed, error, now)
            .await
    }

    async fn finish_command(
        &mut self,
        id: &str,
        state: CommandState,
        error: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE command_outbox SET state = $2, last_error = $3, done_time = $4, \
             lease_until = 0 WHERE id = $1 AND state = $5",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .bind(CommandState::Pending.as_str())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Schedules the next attempt of a command that failed for now and ends the lease
    /// `lease_until` held for the attempt (unless another attempt holds it by now).
    pub async fn retry_command(
        &mut self,
        id: &str,
        error: &str,
        next_attempt_time: i64,
        lease_until: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE command_outbox SET last_error = $2, next_attempt_time = $3, lease_until = 0 \
             WHERE id = $1 AND state = $4 AND lease_until = $5",
        )
        .bind(id)
        .bind(error)
        .bind(next_attempt_time)
        .bind(CommandState::Pending.as_str())
        .bind(lease_until)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Makes every pending command that waits out a backoff due at `now`, leaving leased
    /// ones alone: a process that starts owes no retry delay chosen before it started.
    pub async fn retry_commands_now(&mut self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE command_outbox SET next_attempt_time = $2 \
             WHERE state = $1 AND next_attempt_time > $2 AND lease_until <= $2",
        )
        .bind(CommandState::Pending.as_str())
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    /// Whether any command may be attempted at `now`: a read that spares an idle
    /// dispatcher a write transaction.
    pub async fn any_command_due(&self, now: i64) -> Result<bool> {
        let mut conn = self.conn().await?;
        let found: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT c.id FROM command_outbox c WHERE {CLAIMABLE} LIMIT 1"
        )))
        .bind(CommandState::Pending.as_str())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(found.is_some())
    }

    /// One command by id.
    pub async fn command(&self, id: &str) -> Result<Option<Command>> {
        let mut conn = self.conn().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM command_outbox WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(command_from_row)
        .transpose()
    }

    /// What this process knows of the outbox's backlog, and its bound.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// Counts the pending commands (of every replica) into [`Store::backlog`] and returns
    /// the new estimate.
    pub async fn refresh_backlog(&self) -> Result<i64> {
        let mark = self.backlog.committed.load(Ordering::Relaxed);
        let mut conn = self.conn().await?;
        let (pending,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM command_outbox WHERE state = $1")
                .bind(CommandState::Pending.as_str())
                .fetch_one(&mut *conn)
                .await?;
        self.backlog.offset.store(pending - mark, Ordering::Relaxed);
        Ok(self.backlog.pending())
    }
}
