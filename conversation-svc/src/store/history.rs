//! Contact history: a contact's conversations across channels, the ones that make an agent
//! its handler now, and the links a customer's return writes (reopening, follow-ups).

use sqlx::{AssertSqlSafe, Row};

use super::conversations::{CONVERSATION_SELECT, attach_children, conversation_from_row};
use super::{Bind, Conversation, Mutation, Store, bind_all};
use crate::error::{Error, Result};

/// Most conversations of one contact with one user read to decide whether the user handles
/// the contact now (newest first: an older one cannot be the current one).
const MAX_HANDLED: i64 = 200;

impl Store {
    /// Conversations of contact `contact_id` of `tenant_id` on every channel, newest first,
    /// strictly older than `before` (create time, id) when given; with pre-chat data,
    /// transcripts and identities when `full`.
    pub async fn contact_history(
        &self,
        tenant_id: &str,
        contact_id: &str,
        before: Option<(i64, String)>,
        limit: i64,
        full: bool,
    ) -> Result<Vec<Conversation>> {
        let mut sql = format!("{CONVERSATION_SELECT} WHERE c.tenant_id = $1 AND c.contact_id = $2");
        let mut binds = vec![
            Bind::Text(tenant_id.to_owned()),
            Bind::Text(contact_id.to_owned()),
        ];
        if let Some((time, id)) = before {
            binds.push(Bind::Int(time));
            binds.push(Bind::Text(id));
            sql.push_str(" AND (c.create_time < $3 OR (c.create_time = $3 AND c.id < $4))");
        }
        binds.push(Bind::Int(limit));
        sql.push_str(&format!(
            " ORDER BY c.create_time DESC, c.id DESC LIMIT ${}",
            binds.len()
        ));
        let mut conn = self.conn().await?;
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
            .fetch_all(&mut *conn)
            .await?;
        let mut convs = rows
            .iter()
            .map(conversation_from_row)
            .collect::<Result<Vec<_>>>()?;
        attach_children(&mut conn, &mut convs, full).await?;
        Ok(convs)
    }

    /// The conversations of contact `contact_id` of `tenant_id` that `user_id` owns or
    /// owned, or takes or took part in, whatever their state, newest first, with their
    /// participants (BASIC): the only ones that can make the user the contact's handler
    /// now, which `domain::access` decides.
    pub async fn contact_conversations_of_user(
        &self,
        tenant_id: &str,
        contact_id: &str,
        user_id: &str,
    ) -> Result<Vec<Conversation>> {
        let sql = format!(
            "{CONVERSATION_SELECT} WHERE c.tenant_id = $1 AND c.contact_id = $2 \
             AND (c.owner_agent_id = $3 OR EXISTS (SELECT 1 FROM participants p \
             WHERE p.conversation_id = c.id AND p.user_id = $3)) \
             ORDER BY c.create_time DESC, c.id DESC LIMIT $4"
        );
        let mut conn = self.conn().await?;
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(contact_id)
            .bind(user_id)
            .bind(MAX_HANDLED)
            .fetch_all(&mut *conn)
            .await?;
        let mut convs = rows
            .iter()
            .map(conversation_from_row)
            .collect::<Result<Vec<_>>>()?;
        attach_children(&mut conn, &mut convs, false).await?;
        Ok(convs)
    }
}

impl Mutation {
    /// The conversation that follows `conversation_id` of `tenant_id` (started when its
    /// customer wrote after the reopen window), if any.
    pub async fn follow_up_of(
        &mut self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT id FROM conversations WHERE tenant_id = $1 AND previous_conversation_id = $2",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|row| row.try_get("id")).transpose()?)
    }

    /// Records that `conv` follows the closed conversation `previous_id`. A closed
    /// conversation has one follow-up at most: a second is ABORTED.
    pub async fn link_follow_up(
        &mut self,
        conv: &mut Conversation,
        previous_id: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE conversations SET previous_conversation_id = $2 WHERE id = $1")
            .bind(&conv.id)
            .bind(previous_id)
            .execute(self.conn())
            .await
            .map_err(|err| {
                if switchboard_server_kit::db::is_unique_violation(&err) {
                    Error::Conflict(format!(
                        "conversation {previous_id} got a follow-up concurrently; retry"
                    ))
                } else {
                    Error::Storage(err)
                }
            })?;
        conv.previous_conversation_id = previous_id.to_owned();
        Ok(())
    }

    /// Every participant still present in `conv` leaves at `now`: at close, and when a
    /// reopened conversation waits for a new owner and its earlier agents no longer take part.
    pub async fn release_participants(&mut self, conv: &mut Conversation, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE participants SET leave_time = $2 \
             WHERE conversation_id = $1 AND leave_time IS NULL",
        )
        .bind(&conv.id)
        .bind(now)
        .execute(self.conn())
        .await?;
        for participant in &mut conv.participants {
            participant.leave_time.get_or_insert(now);
        }
        Ok(())
    }
}
