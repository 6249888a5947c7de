//! Capacity held by assignments (reserved and released) and agents' presence.

use super::*;
use crate::domain::LogoutBehavior;
use crate::domain::presence::{after_capacity_change, set_by_hand};

/// An agent's capacity as a change left it: what its capacity event records, and what
/// tells whether its shown presence changed with it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Load {
    chosen: Presence,
    used: i32,
    total: i32,
}

/// What an `UPDATE agents … RETURNING` lists for [`updated_load`].
pub(super) const RETURNING_LOAD: &str = "RETURNING presence, capacity_used, capacity_total";

/// Runs an `UPDATE agents … RETURNING_LOAD` of at most one agent: the agent's load after
/// it, or `None` when its condition left the row alone.
pub(super) async fn updated_load<'q>(
    tx: &mut Tx,
    update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<Option<Load>> {
    let Some(row) = update.fetch_optional(tx.conn()).await? else {
        return Ok(None);
    };
    let chosen: i64 = row.try_get("presence")?;
    let used: i64 = row.try_get("capacity_used")?;
    let total: i64 = row.try_get("capacity_total")?;
    let chosen = i32::try_from(chosen)
        .ok()
        .and_then(Presence::from_i32)
        .ok_or_else(|| Error::Internal(format!("agents.presence {chosen} is unknown")))?;
    Ok(Some(Load {
        chosen,
        used: i32_or_max(used),
        total: i32_or_max(total),
    }))
}

/// Records a change of `delta` units in what an agent holds that left it at `after`:
/// `event` (a capacity event) with the units and the load, and the agent's shown presence
/// changing when the change filled it up or freed it (busy when full).
pub(super) fn record_capacity_change(tx: &mut Tx, event: NewEvent, delta: i32, after: Load) {
    let (tenant_id, agent_id) = (event.tenant_id.clone(), event.agent_id.clone());
    tx.event(
        event
            .units(delta.saturating_abs())
            .load(after.used, after.total),
    );
    let before = (after.used.saturating_sub(delta), after.total);
    if let Some(change) = after_capacity_change(after.chosen, before, (after.used, after.total)) {
        tx.event(
            NewEvent::new(&tenant_id, kind::PRESENCE_CHANGED)
                .agent(&agent_id)
                .presence(change)
                .load(after.used, after.total),
        );
    }
}

/// Releases the units a conversation holds with an agent. Idempotent: returns the units
/// freed, 0 when nothing was held.
pub async fn release_capacity(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    agent_id: &str,
    now: i64,
) -> Result<i32> {
    catalog::lock_agent(tx, tenant_id, agent_id).await?;
    let row: Option<(i64, String)> = sqlx::query_as(
        "DELETE FROM assignments WHERE tenant_id = $1 AND conversation_id = $2 AND agent_id = $3 \
         RETURNING units, queue_id",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .bind(agent_id)
    .fetch_optional(tx.conn())
    .await?;
    let Some((units, queue_id)) = row else {
        return Ok(0);
    };
    let release = sqlx::query(AssertSqlSafe(format!(
        "UPDATE agents SET capacity_used = capacity_used - $3, idle_since = $4, {} \
         WHERE tenant_id = $1 AND agent_id = $2 {RETURNING_LOAD}",
        shown_presence_time("-$3", "$4")
    )))
    .bind(tenant_id)
    .bind(agent_id)
    .bind(units)
    .bind(now);
    let after = updated_load(tx, release)
        .await?
        .ok_or_else(|| Error::Internal(format!("agent {agent_id} vanished")))?;
    let units = i32_or_max(units);
    record_capacity_change(
        tx,
        NewEvent::new(tenant_id, kind::CAPACITY_RELEASED)
            .agent(agent_id)
            .conversation(conversation_id)
            .queue(&queue_id),
        -units,
        after,
    );
    Ok(units)
}

/// A reservation outside an offer (supervisor assign, transfer).
#[derive(Clone, Debug)]
pub struct ReserveInput<'a> {
    /// Tenant.
    pub tenant_id: &'a str,
    /// The conversation.
    pub conversation_id: &'a str,
    /// The agent.
    pub agent_id: &'a str,
    /// The conversation's channel.
    pub channel: Channel,
    /// The conversation's queue (checked to exist), for max open per agent.
    pub queue: Option<&'a Queue>,
    /// Reserve beyond capacity and max open.
    pub override_capacity: bool,
}

/// Reserves units for a conversation with an agent. Idempotent by (conversation, agent):
/// a repeat returns the units already held. Returns (units, units over capacity).
pub async fn reserve_capacity(
    tx: &mut Tx,
    input: &ReserveInput<'_>,
    now: i64,
) -> Result<(i32, i32)> {
    let agent = catalog::agent_for_write(tx, input.tenant_id, input.agent_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("agent {} not found", input.agent_id)))?;
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT units FROM assignments WHERE tenant_id = $1 AND conversation_id = $2 AND agent_id = $3",
    )
    .bind(input.tenant_id)
    .bind(input.conversation_id)
    .bind(input.agent_id)
    .fetch_optional(tx.conn())
    .await?;
    if let Some(units) = held {
        return Ok((i32_or_max(units), agent.capacity().over()));
    }
    if agent.excludes(input.channel) {
        return Err(Error::WrongState(format!(
            "the capacity profile of agent {} excludes channel {:?}",
            input.agent_id, input.channel
        )));
    }
    let units = channel_units(&agent.channel_costs, input.channel);
    let reserve = sqlx::query(AssertSqlSafe(format!(
        "UPDATE agents SET capacity_used = capacity_used + $3, idle_since = $4, {} \
         WHERE tenant_id = $1 AND agent_id = $2 \
         AND ($5 = 1 OR capacity_used + pending_units + $3 <= capacity_total) {RETURNING_LOAD}",
        shown_presence_time("$3", "$4")
    )))
    .bind(input.tenant_id)
    .bind(input.agent_id)
    .bind(i64::from(units))
    .bind(now)
    .bind(i64::from(input.override_capacity));
    let Some(after) = updated_load(tx, reserve).await? else {
        return Err(Error::LimitExceeded(format!(
            "agent {} has no {units} free capacity units",
            input.agent_id
        )));
    };
    let queue_id = input.queue.map(|q| q.id.clone()).unwrap_or_default();
    if let Some(queue) = input.queue
        && !input.override_capacity
        && queue.max_open_per_agent > 0
        && agent_queue_load(tx.conn(), input.tenant_id, input.agent_id, &queue.id).await?
            >= queue.max_open_per_agent
    {
        return Err(Error::LimitExceeded(format!(
            "agent {} already holds the {} conversations queue {} allows",
            input.agent_id, queue.max_open_per_agent, queue.id
        )));
    }
    sqlx::query(
        "INSERT INTO assignments (conversation_id, agent_id, tenant_id, queue_id, units, \
         offer_id, create_time) VALUES ($1, $2, $3, $4, $5, '', $6)",
    )
    .bind(input.conversation_id)
    .bind(input.agent_id)
    .bind(input.tenant_id)
    .bind(&queue_id)
    .bind(i64::from(units))
    .bind(now)
    .execute(tx.conn())
    .await?;
    let over = after.used.saturating_sub(after.total).max(0);
    record_capacity_change(
        tx,
        NewEvent::new(input.tenant_id, kind::CAPACITY_RESERVED)
            .agent(input.agent_id)
            .conversation(input.conversation_id)
            .queue(&queue_id)
            .over_capacity(over),
        units,
        after,
    );
    Ok((units, over))
}

/// Units an agent holds for a conversation, if any.
pub async fn assignment_units(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
    agent_id: &str,
) -> Result<Option<i32>> {
    let units: Option<i64> = sqlx::query_scalar(
        "SELECT units FROM assignments WHERE tenant_id = $1 AND conversation_id = $2 AND agent_id = $3",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .bind(agent_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(units.map(i32_or_max))
}

// --- presence -------------------------------------------------------------------------

/// Sets an agent's presence by hand, as `actor_id` (the agent or a supervisor) asked,
/// which also ends RONA. Leaving Available withdraws the agent's pending offers so others
/// can take them.
pub async fn set_presence(
    tx: &mut Tx,
    agent: &Agent,
    presence: Presence,
    reason: &str,
    actor_id: &str,
    now: i64,
) -> Result<()> {
    let idle_since = crate::domain::presence::idle_since_after_change(
        agent.presence,
        presence,
        agent.idle_since,
        now,
    );
    let login_time = crate::domain::presence::login_time_after_change(
        agent.presence,
        presence,
        agent.login_time,
        now,
    );
    let change_time = if presence == agent.presence {
        agent.presence_change_time
    } else {
        now
    };
    sqlx::query(
        "UPDATE agents SET presence = $3, presence_reason = $4, presence_change_time = $5, \
         idle_since = $6, login_time = $7 WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(&agent.tenant_id)
    .bind(&agent.agent_id)
    .bind(i64::from(presence.as_i32()))
    .bind(reason)
    .bind(change_time)
    .bind(idle_since)
    .bind(login_time)
    .execute(tx.conn())
    .await?;
    let change = set_by_hand(
        &agent.agent_id,
        actor_id,
        agent.shown_presence(),
        presence,
        agent.capacity_used,
        agent.capacity_total,
    );
    tx.event(
        NewEvent::new(&agent.tenant_id, kind::PRESENCE_CHANGED)
            .agent(&agent.agent_id)
            .presence(change)
            .set_by(actor_id, reason)
            .load(agent.capacity_used, agent.capacity_total),
    );
    if !presence.keeps_pending_offers() {
        withdraw_agent_offers(tx, &agent.tenant_id, &agent.agent_id, now).await?;
    }
    Ok(())
}

/// On a logout of `agent` at `now` (set Offline by `by`), writes in `tx` an outbox entry
/// for each conversation the agent holds units for in a queue that returns conversations
/// on logout, so that conversation-svc returns them to their queue; returns how many.
/// conversation-svc decides what each becomes (only one the agent still owns ACTIVE or
/// WAITING goes back), so a conversation in wrap-up or a conference the agent joined stays.
pub async fn return_on_logout(tx: &mut Tx, agent: &Agent, by: &str, now: i64) -> Result<usize> {
    let held: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.conversation_id, a.queue_id FROM assignments a \
         JOIN queues q ON q.tenant_id = a.tenant_id AND q.id = a.queue_id \
         WHERE a.tenant_id = $1 AND a.agent_id = $2 AND q.logout_behavior = $3 \
         ORDER BY a.create_time, a.conversation_id",
    )
    .bind(&agent.tenant_id)
    .bind(&agent.agent_id)
    .bind(i64::from(LogoutBehavior::ReturnToQueue.as_i32()))
    .fetch_all(tx.conn())
    .await?;
    for (conversation_id, queue_id) in &held {
        let entry = OutboxEntry::logout(
            &agent.tenant_id,
            conversation_id,
            &agent.agent_id,
            queue_id,
            by,
            now,
        );
        outbox::insert(tx, &entry, now).await?;
    }
    Ok(held.len())
}
