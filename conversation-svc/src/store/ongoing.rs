//! A tenant's ongoing conversations for live views: pages of those not CLOSED, and which
//! ones changed after a point of the event log.

use sqlx::{AssertSqlSafe, Row};

use super::conversations::{CONVERSATION_SELECT, attach_children, conversation_from_row};
use super::{Bind, Conversation, Store, bind_all, placeholders};
use crate::domain::state::State;
use crate::error::Result;

/// Which ongoing conversations a live view shows: never CLOSED ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OngoingFilter {
    /// The caller's tenant.
    pub tenant_id: String,
    /// Only this queue.
    pub queue_id: Option<String>,
    /// Only this owner.
    pub owner_agent_id: Option<String>,
    /// Only these `Conversation.State` numbers; empty for every state but CLOSED.
    pub states: Vec<i32>,
    /// Whether to load pre-chat data, transcripts and contact identities (the FULL view).
    pub full: bool,
}

impl OngoingFilter {
    /// Whether `conv` is in the view: the same rule as [`Store::ongoing_page`]'s query.
    pub fn matches(&self, conv: &Conversation) -> bool {
        conv.tenant_id == self.tenant_id
            && conv.state != State::Closed
            && (self.states.is_empty() || self.states.contains(&conv.state.code()))
            && self.queue_id.as_ref().is_none_or(|q| *q == conv.queue_id)
            && self
                .owner_agent_id
                .as_ref()
                .is_none_or(|a| *a == conv.owner_agent_id)
    }
}

/// The conversations of a tenant that changed in a stretch of the event log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Each conversation once, in the order of its first change.
    pub conversation_ids: Vec<String>,
    /// The log sequence of the last event read: the next read starts after it.
    pub through: i64,
    /// Whether the read was cut at its limit, so more changes may follow at once.
    pub more: bool,
}

impl Store {
    /// Up to `limit` conversations of `filter`, newest first (create time, then id), strictly
    /// older than `before` when given: one page of a live view's snapshot.
    pub async fn ongoing_page(
        &self,
        filter: &OngoingFilter,
        before: Option<&(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Conversation>> {
        // The literal `state <> 5` lets both databases use the partial index of ongoing
        // conversations.
        let closed = State::Closed.code();
        let mut sql =
            format!("{CONVERSATION_SELECT} WHERE c.tenant_id = $1 AND c.state <> {closed}");
        let mut binds = vec![Bind::Text(filter.tenant_id.clone())];
        if !filter.states.is_empty() {
            sql.push_str(&format!(
                " AND c.state IN ({})",
                placeholders(binds.len() + 1, filter.states.len())
            ));
            binds.extend(filter.states.iter().map(|s| Bind::Int(i64::from(*s))));
        }
        if let Some(queue_id) = &filter.queue_id {
            binds.push(Bind::Text(queue_id.clone()));
            sql.push_str(&format!(" AND c.queue_id = ${}", binds.len()));
        }
        if let Some(owner) = &filter.owner_agent_id {
            binds.push(Bind::Text(owner.clone()));
            sql.push_str(&format!(" AND c.owner_agent_id = ${}", binds.len()));
        }
        if let Some((time, id)) = before {
            binds.push(Bind::Int(*time));
            let t = binds.len();
            binds.push(Bind::Text(id.clone()));
            let i = binds.len();
            sql.push_str(&format!(
                " AND (c.create_time < ${t} OR (c.create_time = ${t} AND c.id < ${i}))"
            ));
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
        attach_children(&mut conn, &mut convs, filter.full).await?;
        Ok(convs)
    }

    /// The conversations of `tenant_id` with events after log sequence `after`, reading at
    /// most `limit` events; other tenants' events are not read.
    pub async fn changed_after(&self, tenant_id: &str, after: i64, limit: i64) -> Result<Changed> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT sequence, conversation_id FROM events WHERE tenant_id = $1 AND sequence > $2 \
             ORDER BY sequence LIMIT $3",
        )
        .bind(tenant_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let mut changed = Changed {
            conversation_ids: Vec::new(),
            through: after,
            more: rows.len() as i64 >= limit,
        };
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            changed.through = row.try_get("sequence")?;
            let id: String = row.try_get("conversation_id")?;
            if seen.insert(id.clone()) {
                changed.conversation_ids.push(id);
            }
        }
        Ok(changed)
    }

    /// The conversations `ids` of `tenant_id` that exist, in no particular order, with
    /// participants, and with `full` also what the FULL view carries.
    pub async fn conversations_by_id(
        &self,
        tenant_id: &str,
        ids: &[String],
        full: bool,
    ) -> Result<Vec<Conversation>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{CONVERSATION_SELECT} WHERE c.tenant_id = $1 AND c.id IN ({})",
            placeholders(2, ids.len())
        );
        let mut binds = vec![Bind::Text(tenant_id.to_owned())];
        binds.extend(ids.iter().map(|id| Bind::Text(id.clone())));
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
}
