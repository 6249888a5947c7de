//! Waiting conversations, offers, capacity held by assignments, and presence.
//!
//! Everything that two routing replicas could race on is a conditional update whose
//! affected-row count decides the winner: claiming a waiting item (`state = 'waiting'`),
//! resolving an offer (`state = PENDING`), holding or reserving units (`capacity_used +
//! pending_units + units <= capacity_total`) and releasing them (`DELETE … RETURNING`).
//! Every path that adds an offer or an assignment for an agent updates the agent's row
//! before counting the agent's load, so that under PostgreSQL's READ COMMITTED the row
//! lock serialises those counts too.

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::domain::offer::{OfferError, check_accept};
use crate::domain::{
    Agent, AssignmentSource, Candidate, Channel, Offer, OfferKind, OfferState, Omitted, Presence,
    Queue, RoutingDecision, WaitingItem, channel_units,
};
use crate::error::{Error, Result};
use crate::store::catalog::get_agent;
use crate::store::outbox::{self, OutboxEntry};
use crate::store::page::PageRequest;
use crate::store::{
    NewEvent, Tx, changes_one_row, enum_column, fetch_all, fetch_optional, fetch_page, get_by_id,
    i32_or_max, int_column, json_column, to_json,
};

const WAITING: &str = "waiting";
const OFFERED: &str = "offered";

// --- waiting --------------------------------------------------------------------------

/// What conversation-svc asks to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnqueueInput {
    /// Tenant.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The queue (already checked to exist and accept the channel).
    pub queue: Queue,
    /// The channel.
    pub channel: Channel,
    /// Shown on offers.
    pub customer_display_name: String,
    /// The customer's address on the channel, shown on offers.
    pub channel_address: String,
    /// Idempotency key of this enqueue.
    pub enqueue_key: String,
    /// When the customer started waiting.
    pub enqueue_time: i64,
}

const WAITING_COLUMNS: &str = "w.conversation_id, w.tenant_id, w.queue_id, w.channel, \
    w.customer_display_name, w.channel_address, w.enqueue_time, w.entered_time, w.state, \
    q.priority";

fn waiting_from_row(row: &AnyRow) -> Result<WaitingItem> {
    let state: String = row.try_get("state")?;
    Ok(WaitingItem {
        conversation_id: row.try_get("conversation_id")?,
        tenant_id: row.try_get("tenant_id")?,
        queue_id: row.try_get("queue_id")?,
        channel: enum_column(row, "channel", Channel::from_i32)?,
        customer_display_name: row.try_get("customer_display_name")?,
        channel_address: row.try_get("channel_address")?,
        enqueue_time: row.try_get("enqueue_time")?,
        entered_time: row.try_get("entered_time")?,
        offered: state == OFFERED,
        priority: int_column(row, "priority")?,
    })
}

/// The conversation's waiting item, if it waits.
pub async fn get_waiting(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
) -> Result<Option<WaitingItem>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WAITING_COLUMNS} FROM waiting w JOIN queues q ON q.id = w.queue_id \
         WHERE w.tenant_id = $1 AND w.conversation_id = $2"
    )))
    .bind(tenant_id)
    .bind(conversation_id);
    fetch_optional(conn, query, waiting_from_row).await
}

/// Puts a conversation in a queue. Idempotent by (conversation, enqueue key): a repeat
/// returns the item as first enqueued and changes nothing. A new key for a conversation
/// that already waits moves it (withdrawing any pending offer).
pub async fn enqueue(tx: &mut Tx, input: &EnqueueInput, now: i64) -> Result<WaitingItem> {
    let seen = sqlx::query(
        "SELECT e.tenant_id, e.queue_id, e.channel, e.customer_display_name, e.channel_address, \
         e.enqueue_time, e.entered_time FROM enqueues e \
         WHERE e.conversation_id = $1 AND e.enqueue_key = $2",
    )
    .bind(&input.conversation_id)
    .bind(&input.enqueue_key)
    .fetch_optional(tx.conn())
    .await?;
    if let Some(row) = seen {
        let tenant_id: String = row.try_get("tenant_id")?;
        if tenant_id != input.tenant_id {
            return Err(Error::NotFound(format!(
                "conversation {} not found",
                input.conversation_id
            )));
        }
        let current = get_waiting(tx.conn(), &input.tenant_id, &input.conversation_id).await?;
        return Ok(WaitingItem {
            conversation_id: input.conversation_id.clone(),
            tenant_id,
            queue_id: row.try_get("queue_id")?,
            channel: enum_column(&row, "channel", Channel::from_i32)?,
            customer_display_name: row.try_get("customer_display_name")?,
            channel_address: row.try_get("channel_address")?,
            enqueue_time: row.try_get("enqueue_time")?,
            entered_time: row.try_get("entered_time")?,
            offered: current.as_ref().is_some_and(|item| item.offered),
            priority: input.queue.priority,
        });
    }
    sqlx::query(
        "INSERT INTO enqueues (conversation_id, enqueue_key, tenant_id, queue_id, channel, \
         customer_display_name, channel_address, enqueue_time, entered_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&input.conversation_id)
    .bind(&input.enqueue_key)
    .bind(&input.tenant_id)
    .bind(&input.queue.id)
    .bind(i64::from(input.channel.as_i32()))
    .bind(&input.customer_display_name)
    .bind(&input.channel_address)
    .bind(input.enqueue_time)
    .bind(now)
    .execute(tx.conn())
    .await?;
    remove_waiting(tx, &input.tenant_id, &input.conversation_id, now).await?;
    sqlx::query(
        "INSERT INTO waiting (conversation_id, tenant_id, queue_id, channel, \
         customer_display_name, channel_address, enqueue_time, entered_time, enqueue_key, \
         state, offer_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
    )
    .bind(&input.conversation_id)
    .bind(&input.tenant_id)
    .bind(&input.queue.id)
    .bind(i64::from(input.channel.as_i32()))
    .bind(&input.customer_display_name)
    .bind(&input.channel_address)
    .bind(input.enqueue_time)
    .bind(now)
    .bind(&input.enqueue_key)
    .bind(WAITING)
    .execute(tx.conn())
    .await?;
    tx.event(
        NewEvent::new(&input.tenant_id, "conversation.enqueued")
            .conversation(&input.conversation_id)
            .queue(&input.queue.id),
    );
    Ok(WaitingItem {
        conversation_id: input.conversation_id.clone(),
        tenant_id: input.tenant_id.clone(),
        queue_id: input.queue.id.clone(),
        channel: input.channel,
        customer_display_name: input.customer_display_name.clone(),
        channel_address: input.channel_address.clone(),
        enqueue_time: input.enqueue_time,
        entered_time: now,
        offered: false,
        priority: input.queue.priority,
    })
}

/// Withdraws the pending offer of a conversation, if any, and removes it from its queue.
/// Returns whether it was waiting.
async fn remove_waiting(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> Result<bool> {
    if let Some(offer) =
        pending_offer_of_conversation(tx.conn(), tenant_id, conversation_id).await?
    {
        resolve_offer(tx, &offer, OfferState::Withdrawn, now).await?;
    }
    let queue_id: Option<String> = sqlx::query_scalar(
        "DELETE FROM waiting WHERE tenant_id = $1 AND conversation_id = $2 RETURNING queue_id",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .fetch_optional(tx.conn())
    .await?;
    Ok(queue_id.is_some())
}

/// Takes a conversation out of its queue and withdraws its pending offer. Idempotent;
/// returns whether it was waiting.
pub async fn cancel_waiting(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> Result<bool> {
    let item = get_waiting(tx.conn(), tenant_id, conversation_id).await?;
    let was_waiting = remove_waiting(tx, tenant_id, conversation_id, now).await?;
    if let Some(item) = item.filter(|_| was_waiting) {
        tx.event(
            NewEvent::new(tenant_id, "waiting.cancelled")
                .conversation(conversation_id)
                .queue(&item.queue_id),
        );
    }
    Ok(was_waiting)
}

/// Queues that offer (not manual pick) with conversations waiting and not under offer,
/// as (tenant, queue): higher priority first, then the queue whose oldest such
/// conversation has waited longest.
pub async fn queues_to_match(conn: &mut AnyConnection) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, id FROM (\
           SELECT q.tenant_id, q.id, q.priority, \
             (SELECT w.enqueue_time FROM waiting w WHERE w.queue_id = q.id AND w.state = $1 \
              ORDER BY w.enqueue_time LIMIT 1) AS oldest \
           FROM queues q WHERE q.assignment_method <> 4\
         ) AS s WHERE oldest IS NOT NULL ORDER BY priority DESC, oldest, id",
    )
    .bind(WAITING)
    .fetch_all(&mut *conn)
    .await?)
}

/// A conversation waiting in a queue, as the matcher reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matchable {
    /// The waiting item.
    pub item: WaitingItem,
    /// The summary of its latest routing decision when that decision made no offer, so
    /// that the same "nobody eligible" is not recorded twice.
    pub last_summary: Option<String>,
}

/// The order a walk through a queue's waiting conversations follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkOrder {
    /// By when the customer started waiting: the order conversations are offered in.
    Waited,
    /// By when the conversation entered this queue: a conversation moved in later comes
    /// after every one seen before, whatever its wait, so a walk can resume.
    Entered,
}

impl WalkOrder {
    fn column(self) -> &'static str {
        match self {
            WalkOrder::Waited => "enqueue_time",
            WalkOrder::Entered => "entered_time",
        }
    }

    /// Where `item` stands in this order.
    pub fn position(self, item: &WaitingItem) -> QueuePosition {
        let time = match self {
            WalkOrder::Waited => item.enqueue_time,
            WalkOrder::Entered => item.entered_time,
        };
        (time, item.conversation_id.clone())
    }
}

/// Where a conversation stands in a [`WalkOrder`]: (time, conversation id).
pub type QueuePosition = (i64, String);

/// Up to `limit` conversations waiting (not under offer) in queue `queue_id` after
/// position `after` (from the start when `None`) in `order`.
pub async fn matchable_in_queue(
    conn: &mut AnyConnection,
    queue_id: &str,
    order: WalkOrder,
    after: Option<&QueuePosition>,
    limit: i64,
) -> Result<Vec<Matchable>> {
    let (time, id) = after.map_or((i64::MIN, ""), |(time, id)| (*time, id.as_str()));
    let column = order.column();
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WAITING_COLUMNS}, \
           (SELECT CASE WHEN d.offer_id IS NULL THEN d.summary END FROM routing_decisions d \
            WHERE d.tenant_id = w.tenant_id AND d.conversation_id = w.conversation_id \
            ORDER BY d.decide_time DESC, d.id DESC LIMIT 1) AS last_summary \
         FROM waiting w JOIN queues q ON q.id = w.queue_id \
         WHERE w.queue_id = $1 AND w.state = $2 \
         AND (w.{column} > $3 OR (w.{column} = $3 AND w.conversation_id > $4)) \
         ORDER BY w.{column}, w.conversation_id LIMIT $5"
    )))
    .bind(queue_id)
    .bind(WAITING)
    .bind(time)
    .bind(id)
    .bind(limit);
    fetch_all(conn, query, |row| {
        Ok(Matchable {
            item: waiting_from_row(row)?,
            last_summary: row.try_get("last_summary")?,
        })
    })
    .await
}

/// For each of `items` (waiting conversations), the agents it may not be offered to
/// again (as [`excluded_agents`]); conversations without any are left out.
pub async fn excluded_for(
    conn: &mut AnyConnection,
    items: &[&WaitingItem],
) -> Result<HashMap<String, HashSet<String>>> {
    let mut excluded: HashMap<String, HashSet<String>> = HashMap::new();
    if items.is_empty() {
        return Ok(excluded);
    }
    // Placeholders only, one per conversation: the ids themselves are bound.
    let list: Vec<String> = (1..=items.len()).map(|n| format!("${n}")).collect();
    let mut query = sqlx::query_as::<_, (String, String, i64)>(sqlx::AssertSqlSafe(format!(
        "SELECT o.conversation_id, o.agent_id, o.state FROM waiting w \
         JOIN offers o ON o.conversation_id = w.conversation_id \
           AND o.create_time >= w.entered_time \
         WHERE w.conversation_id IN ({})",
        list.join(", ")
    )));
    for item in items {
        query = query.bind(item.conversation_id.clone());
    }
    for (conversation_id, agent_id, state) in query.fetch_all(&mut *conn).await? {
        if excludes_agent(state) {
            excluded
                .entry(conversation_id)
                .or_default()
                .insert(agent_id);
        }
    }
    Ok(excluded)
}

/// Whether an offer in stored state `state` keeps its agent from being offered the
/// conversation again.
fn excludes_agent(state: i64) -> bool {
    i32::try_from(state)
        .ok()
        .and_then(OfferState::from_i32)
        .is_some_and(OfferState::excludes_agent)
}

/// One page of conversations waiting (not under offer) in the agent's queues, or in one
/// of them, oldest first.
pub async fn list_waiting_for_agent(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
    queue_id: &str,
    request: &PageRequest,
) -> Result<(Vec<WaitingItem>, String)> {
    let (time, id) = request.after_time_and_id(i64::MIN)?;
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WAITING_COLUMNS} FROM waiting w JOIN queues q ON q.id = w.queue_id \
         WHERE w.tenant_id = $1 AND w.state = $2 AND ($3 = '' OR w.queue_id = $3) \
         AND w.queue_id IN (SELECT m.queue_id FROM agent_queues m \
             WHERE m.tenant_id = $1 AND m.agent_id = $4) \
         AND (w.enqueue_time > $5 OR (w.enqueue_time = $5 AND w.conversation_id > $6)) \
         ORDER BY w.enqueue_time, w.conversation_id LIMIT $7"
    )))
    .bind(tenant_id)
    .bind(WAITING)
    .bind(queue_id)
    .bind(agent_id)
    .bind(time)
    .bind(id)
    .bind(request.fetch_limit());
    fetch_page(conn, query, waiting_from_row, "waiting", request, |item| {
        vec![item.enqueue_time.to_string(), item.conversation_id.clone()]
    })
    .await
}

/// Whether routing has ever taken this conversation in the tenant.
pub async fn conversation_known(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
) -> Result<bool> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM enqueues WHERE tenant_id = $1 AND conversation_id = $2",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(count > 0)
}

// --- offers ---------------------------------------------------------------------------

const OFFER_COLUMNS: &str = "id, tenant_id, conversation_id, queue_id, agent_id, channel, kind, \
    state, create_time, expire_time, resolve_time, customer_display_name, capacity_units, \
    channel_address, queue_display_name, wait_start_time, reject_reason";

fn offer_from_row(row: &AnyRow) -> Result<Offer> {
    Ok(Offer {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        conversation_id: row.try_get("conversation_id")?,
        queue_id: row.try_get("queue_id")?,
        agent_id: row.try_get("agent_id")?,
        channel: enum_column(row, "channel", Channel::from_i32)?,
        kind: enum_column(row, "kind", OfferKind::from_i32)?,
        state: enum_column(row, "state", OfferState::from_i32)?,
        create_time: row.try_get("create_time")?,
        expire_time: row.try_get("expire_time")?,
        resolve_time: row.try_get("resolve_time")?,
        customer_display_name: row.try_get("customer_display_name")?,
        capacity_units: int_column(row, "capacity_units")?,
        channel_address: row.try_get("channel_address")?,
        queue_display_name: row.try_get("queue_display_name")?,
        wait_start_time: row.try_get("wait_start_time")?,
        reject_reason: row.try_get("reject_reason")?,
    })
}

/// The tenant's offer `id`, if any.
pub async fn get_offer(
    conn: &mut AnyConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<Offer>> {
    get_by_id(conn, "offers", OFFER_COLUMNS, tenant_id, id, offer_from_row).await
}

/// An agent's pending offers, oldest first.
pub async fn pending_offers_of_agent(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Vec<Offer>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE tenant_id = $1 AND agent_id = $2 AND state = 1 \
         ORDER BY create_time, id"
    )))
    .bind(tenant_id)
    .bind(agent_id);
    fetch_all(conn, query, offer_from_row).await
}

async fn pending_offer_of_conversation(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
) -> Result<Option<Offer>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE tenant_id = $1 AND conversation_id = $2 \
         AND state = 1"
    )))
    .bind(tenant_id)
    .bind(conversation_id);
    fetch_optional(conn, query, offer_from_row).await
}

/// Pending offers past their deadline at `now`: (tenant, offer id), earliest first.
pub async fn due_offers(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, id FROM offers WHERE state = 1 AND expire_time <= $1 \
         ORDER BY expire_time LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Agents that may not be offered this conversation again: they have it pending, or
/// rejected or missed it since it entered its queue at `entered_time`.
pub async fn excluded_agents(
    conn: &mut AnyConnection,
    conversation_id: &str,
    entered_time: i64,
) -> Result<HashSet<String>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT agent_id, state FROM offers WHERE conversation_id = $1 AND create_time >= $2",
    )
    .bind(conversation_id)
    .bind(entered_time)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, state)| excludes_agent(*state))
        .map(|(agent, _)| agent)
        .collect())
}

/// Per agent, the conversations of a queue they hold plus their pending offers in it.
pub async fn queue_load(conn: &mut AnyConnection, queue_id: &str) -> Result<HashMap<String, i32>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT agent_id, COUNT(*) FROM (\
           SELECT agent_id FROM assignments WHERE queue_id = $1 \
           UNION ALL SELECT agent_id FROM offers WHERE queue_id = $1 AND state = 1\
         ) AS held GROUP BY agent_id",
    )
    .bind(queue_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(agent, count)| (agent, i32_or_max(count)))
        .collect())
}

/// Conversations of a queue an agent holds plus their pending offers in it.
async fn agent_queue_load(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
    queue_id: &str,
) -> Result<i32> {
    let count: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM assignments WHERE tenant_id = $1 AND agent_id = $2 \
                 AND queue_id = $3) \
              + (SELECT COUNT(*) FROM offers WHERE tenant_id = $1 AND agent_id = $2 \
                 AND queue_id = $3 AND state = 1)",
    )
    .bind(tenant_id)
    .bind(agent_id)
    .bind(queue_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(i32_or_max(count))
}

/// What the matcher decided for one waiting conversation.
#[derive(Clone, Debug)]
pub struct OfferPlan<'a> {
    /// The waiting conversation, as read before the decision.
    pub item: &'a WaitingItem,
    /// Its queue.
    pub queue: &'a Queue,
    /// The chosen agent.
    pub agent_id: &'a str,
    /// Units the conversation costs the agent.
    pub units: i32,
    /// The decision record's candidates.
    pub candidates: Vec<Candidate>,
    /// The decision's candidates counted rather than listed.
    pub omitted: Vec<Omitted>,
    /// Id of the new offer.
    pub offer_id: String,
}

/// Makes an offer: claims the waiting item, promises the agent's units, checks the
/// queue's max open, records the offer and the decision. `Ok(None)` when another change
/// won a race (the item was taken, the agent is no longer Available or has no room); the
/// caller then rolls back.
pub async fn create_offer(tx: &mut Tx, plan: &OfferPlan<'_>, now: i64) -> Result<Option<Offer>> {
    let item = plan.item;
    let claim = sqlx::query(
        "UPDATE waiting SET state = $1, offer_id = $2 \
         WHERE conversation_id = $3 AND queue_id = $4 AND state = $5",
    )
    .bind(OFFERED)
    .bind(&plan.offer_id)
    .bind(&item.conversation_id)
    .bind(&item.queue_id)
    .bind(WAITING);
    if !changes_one_row(tx.conn(), claim).await? {
        return Ok(None);
    }
    let hold = sqlx::query(
        "UPDATE agents SET pending_units = pending_units + $3, idle_since = $4 \
         WHERE tenant_id = $1 AND agent_id = $2 AND presence = $5 \
         AND capacity_used + pending_units + $3 <= capacity_total",
    )
    .bind(&item.tenant_id)
    .bind(plan.agent_id)
    .bind(i64::from(plan.units))
    .bind(now)
    .bind(i64::from(Presence::Available.as_i32()));
    if !changes_one_row(tx.conn(), hold).await? {
        return Ok(None);
    }
    if plan.queue.max_open_per_agent > 0 {
        let load =
            agent_queue_load(tx.conn(), &item.tenant_id, plan.agent_id, &item.queue_id).await?;
        if load >= plan.queue.max_open_per_agent {
            return Ok(None);
        }
    }
    let offer = Offer {
        id: plan.offer_id.clone(),
        tenant_id: item.tenant_id.clone(),
        conversation_id: item.conversation_id.clone(),
        queue_id: item.queue_id.clone(),
        agent_id: plan.agent_id.to_owned(),
        channel: item.channel,
        kind: OfferKind::Queue,
        state: OfferState::Pending,
        create_time: now,
        expire_time: now.saturating_add(plan.queue.offer_timeout_us),
        resolve_time: None,
        customer_display_name: item.customer_display_name.clone(),
        capacity_units: plan.units,
        channel_address: item.channel_address.clone(),
        queue_display_name: plan.queue.display_name.clone(),
        wait_start_time: item.enqueue_time,
        reject_reason: String::new(),
    };
    insert_offer(tx, &offer).await?;
    sqlx::query("UPDATE queues SET rr_cursor = $2 WHERE id = $1")
        .bind(&item.queue_id)
        .bind(plan.agent_id)
        .execute(tx.conn())
        .await?;
    insert_decision(
        tx,
        &RoutingDecision {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: item.tenant_id.clone(),
            offer_id: Some(offer.id.clone()),
            conversation_id: item.conversation_id.clone(),
            queue_id: item.queue_id.clone(),
            assignment_method: plan.queue.assignment_method,
            candidates: plan.candidates.clone(),
            omitted: plan.omitted.clone(),
            decide_time: now,
        },
    )
    .await?;
    tx.event(offer_event(&offer, "offer.created"));
    Ok(Some(offer))
}

async fn insert_offer(tx: &mut Tx, offer: &Offer) -> Result<()> {
    sqlx::query(
        "INSERT INTO offers (id, tenant_id, conversation_id, queue_id, agent_id, channel, kind, \
         state, create_time, expire_time, resolve_time, customer_display_name, capacity_units, \
         channel_address, queue_display_name, wait_start_time, reject_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&offer.id)
    .bind(&offer.tenant_id)
    .bind(&offer.conversation_id)
    .bind(&offer.queue_id)
    .bind(&offer.agent_id)
    .bind(i64::from(offer.channel.as_i32()))
    .bind(i64::from(offer.kind.as_i32()))
    .bind(i64::from(offer.state.as_i32()))
    .bind(offer.create_time)
    .bind(offer.expire_time)
    .bind(offer.resolve_time)
    .bind(&offer.customer_display_name)
    .bind(i64::from(offer.capacity_units))
    .bind(&offer.channel_address)
    .bind(&offer.queue_display_name)
    .bind(offer.wait_start_time)
    .bind(&offer.reject_reason)
    .execute(tx.conn())
    .await?;
    Ok(())
}

fn offer_event(offer: &Offer, kind: &'static str) -> NewEvent {
    NewEvent::new(&offer.tenant_id, kind)
        .agent(&offer.agent_id)
        .conversation(&offer.conversation_id)
        .queue(&offer.queue_id)
        .offer(&offer.id)
}

fn resolution_event(state: OfferState) -> &'static str {
    match state {
        OfferState::Pending => "offer.created",
        OfferState::Accepted => "offer.accepted",
        OfferState::Rejected => "offer.rejected",
        OfferState::TimedOut => "offer.timed_out",
        OfferState::Withdrawn => "offer.withdrawn",
    }
}

/// Resolves a pending offer without accepting it (rejected, timed out or withdrawn): the
/// agent's promised units are freed and the conversation waits again, keeping its place.
/// A timeout also puts the agent in RONA. Returns false when the offer was no longer
/// pending (another change resolved it first).
pub async fn resolve_offer(tx: &mut Tx, offer: &Offer, to: OfferState, now: i64) -> Result<bool> {
    debug_assert!(matches!(
        to,
        OfferState::Rejected | OfferState::TimedOut | OfferState::Withdrawn
    ));
    let resolve =
        sqlx::query("UPDATE offers SET state = $2, resolve_time = $3 WHERE id = $1 AND state = 1")
            .bind(&offer.id)
            .bind(i64::from(to.as_i32()))
            .bind(now);
    if !changes_one_row(tx.conn(), resolve).await? {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE agents SET pending_units = pending_units - $3 WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(&offer.tenant_id)
    .bind(&offer.agent_id)
    .bind(i64::from(offer.capacity_units))
    .execute(tx.conn())
    .await?;
    sqlx::query(
        "UPDATE waiting SET state = $1, offer_id = NULL WHERE conversation_id = $2 AND offer_id = $3",
    )
    .bind(WAITING)
    .bind(&offer.conversation_id)
    .bind(&offer.id)
    .execute(tx.conn())
    .await?;
    tx.event(offer_event(offer, resolution_event(to)));
    if to.puts_agent_in_rona() {
        let enter_rona = sqlx::query(
            "UPDATE agents SET presence = $3, presence_reason = '', presence_change_time = $4 \
             WHERE tenant_id = $1 AND agent_id = $2 AND presence <> $3",
        )
        .bind(&offer.tenant_id)
        .bind(&offer.agent_id)
        .bind(i64::from(Presence::Rona.as_i32()))
        .bind(now);
        if changes_one_row(tx.conn(), enter_rona).await? {
            tx.event(NewEvent::new(&offer.tenant_id, "presence.changed").agent(&offer.agent_id));
        }
    }
    Ok(true)
}

/// Withdraws every pending offer of an agent; returns the offers withdrawn.
pub async fn withdraw_agent_offers(
    tx: &mut Tx,
    tenant_id: &str,
    agent_id: &str,
    now: i64,
) -> Result<Vec<Offer>> {
    let mut withdrawn = Vec::new();
    for offer in pending_offers_of_agent(tx.conn(), tenant_id, agent_id).await? {
        if resolve_offer(tx, &offer, OfferState::Withdrawn, now).await? {
            withdrawn.push(offer);
        }
    }
    Ok(withdrawn)
}

/// Times out a pending offer past its deadline: the conversation waits again, the agent
/// enters RONA and loses its other pending offers. False when no longer pending.
pub async fn expire_offer(tx: &mut Tx, tenant_id: &str, offer_id: &str, now: i64) -> Result<bool> {
    let Some(offer) = get_offer(tx.conn(), tenant_id, offer_id).await? else {
        return Ok(false);
    };
    if offer.state != OfferState::Pending || offer.expire_time > now {
        return Ok(false);
    }
    if !resolve_offer(tx, &offer, OfferState::TimedOut, now).await? {
        return Ok(false);
    }
    withdraw_agent_offers(tx, tenant_id, &offer.agent_id, now).await?;
    Ok(true)
}

/// Rejects a pending offer of `agent_id` with the agent's `reason`: the conversation
/// waits again and will be offered to someone else.
pub async fn reject_offer(
    tx: &mut Tx,
    tenant_id: &str,
    agent_id: &str,
    offer_id: &str,
    reason: &str,
    now: i64,
) -> Result<Offer> {
    let offer = owned_offer(tx.conn(), tenant_id, agent_id, offer_id).await?;
    offer
        .state
        .apply(crate::domain::offer::OfferEvent::Reject)
        .map_err(|err| offer_wrong_state(&offer, err))?;
    if !resolve_offer(tx, &offer, OfferState::Rejected, now).await? {
        return Err(Error::Conflict(format!(
            "offer {offer_id} was resolved concurrently; retry"
        )));
    }
    sqlx::query("UPDATE offers SET reject_reason = $2 WHERE id = $1")
        .bind(&offer.id)
        .bind(reason)
        .execute(tx.conn())
        .await?;
    reread_offer(tx.conn(), &offer).await
}

async fn owned_offer(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
    offer_id: &str,
) -> Result<Offer> {
    get_offer(conn, tenant_id, offer_id)
        .await?
        .filter(|offer| offer.agent_id == agent_id)
        .ok_or_else(|| Error::NotFound(format!("offer {offer_id} not found")))
}

async fn reread_offer(conn: &mut AnyConnection, offer: &Offer) -> Result<Offer> {
    get_offer(conn, &offer.tenant_id, &offer.id)
        .await?
        .ok_or_else(|| Error::Internal(format!("offer {} vanished", offer.id)))
}

fn offer_wrong_state(offer: &Offer, err: OfferError) -> Error {
    match err {
        OfferError::NotPending(state) => Error::WrongState(format!(
            "offer {} is no longer pending (it is {})",
            offer.id,
            resolution_event(state).trim_start_matches("offer.")
        )),
        OfferError::Expired => Error::WrongState(format!("offer {} has expired", offer.id)),
    }
}

/// The result of an accept or a claim: the offer and the assignment to apply.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The accepted offer.
    pub offer: Offer,
    /// The outbox entry conversation-svc must apply.
    pub outbox: OutboxEntry,
}

/// Accepts a pending offer of `agent`: in one transaction the offer becomes ACCEPTED,
/// the units are reserved (never beyond capacity), the conversation leaves its queue, an
/// assignment and an outbox entry for conversation-svc are written.
pub async fn accept_offer(
    tx: &mut Tx,
    agent: &Agent,
    offer_id: &str,
    now: i64,
    lease_until: i64,
) -> Result<Accepted> {
    let offer = owned_offer(tx.conn(), &agent.tenant_id, &agent.agent_id, offer_id).await?;
    check_accept(offer.state, offer.expire_time, now)
        .map_err(|err| offer_wrong_state(&offer, err))?;
    let accept = sqlx::query(
        "UPDATE offers SET state = 2, resolve_time = $2 WHERE id = $1 AND state = 1 \
         AND expire_time > $2",
    )
    .bind(&offer.id)
    .bind(now);
    if !changes_one_row(tx.conn(), accept).await? {
        return Err(Error::Conflict(format!(
            "offer {offer_id} was resolved concurrently; retry"
        )));
    }
    let units = i64::from(offer.capacity_units);
    let reserve = sqlx::query(
        "UPDATE agents SET capacity_used = capacity_used + $3, pending_units = pending_units - $3 \
         WHERE tenant_id = $1 AND agent_id = $2 AND capacity_used + $3 <= capacity_total",
    )
    .bind(&offer.tenant_id)
    .bind(&offer.agent_id)
    .bind(units);
    if !changes_one_row(tx.conn(), reserve).await? {
        return Err(Error::LimitExceeded(format!(
            "agent {} has no {} free capacity units for offer {offer_id}",
            offer.agent_id, offer.capacity_units
        )));
    }
    sqlx::query("DELETE FROM waiting WHERE conversation_id = $1 AND offer_id = $2")
        .bind(&offer.conversation_id)
        .bind(&offer.id)
        .execute(tx.conn())
        .await?;
    let accepted = Offer {
        state: OfferState::Accepted,
        resolve_time: Some(now),
        ..offer
    };
    finish_assignment(
        tx,
        agent,
        &accepted,
        AssignmentSource::QueueOffer,
        now,
        lease_until,
    )
    .await
}

/// Writes the assignment, the outbox entry and the events of an accepted offer.
async fn finish_assignment(
    tx: &mut Tx,
    agent: &Agent,
    offer: &Offer,
    source: AssignmentSource,
    now: i64,
    lease_until: i64,
) -> Result<Accepted> {
    insert_assignment(tx, offer, now).await?;
    let entry = OutboxEntry {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: offer.tenant_id.clone(),
        conversation_id: offer.conversation_id.clone(),
        agent_id: offer.agent_id.clone(),
        agent_display_name: agent.display_name.clone(),
        offer_id: offer.id.clone(),
        queue_id: offer.queue_id.clone(),
        source,
        attempts: 0,
        next_attempt_time: lease_until,
    };
    outbox::insert(tx, &entry, now).await?;
    tx.event(offer_event(offer, "offer.accepted"));
    tx.event(offer_event(offer, "capacity.reserved"));
    Ok(Accepted {
        offer: offer.clone(),
        outbox: entry,
    })
}

async fn insert_assignment(tx: &mut Tx, offer: &Offer, now: i64) -> Result<()> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM assignments WHERE conversation_id = $1 AND agent_id = $2",
    )
    .bind(&offer.conversation_id)
    .bind(&offer.agent_id)
    .fetch_one(tx.conn())
    .await?;
    if exists > 0 {
        return Err(Error::WrongState(format!(
            "conversation {} is already assigned to agent {}",
            offer.conversation_id, offer.agent_id
        )));
    }
    sqlx::query(
        "INSERT INTO assignments (conversation_id, agent_id, tenant_id, queue_id, units, \
         offer_id, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&offer.conversation_id)
    .bind(&offer.agent_id)
    .bind(&offer.tenant_id)
    .bind(&offer.queue_id)
    .bind(i64::from(offer.capacity_units))
    .bind(&offer.id)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Takes a waiting conversation of the agent's queues directly (manual pick): the item
/// is claimed only if no offer is pending for it, the units are reserved within capacity
/// and the queue's max open, and an already-accepted offer records the assignment.
pub async fn claim_waiting(
    tx: &mut Tx,
    agent: &Agent,
    conversation_id: &str,
    now: i64,
    lease_until: i64,
) -> Result<Accepted> {
    let tenant_id = agent.tenant_id.as_str();
    let not_found = || {
        Error::NotFound(format!(
            "conversation {conversation_id} is not waiting in your queues"
        ))
    };
    let item = get_waiting(tx.conn(), tenant_id, conversation_id)
        .await?
        .filter(|item| agent.queue_ids.contains(&item.queue_id))
        .ok_or_else(not_found)?;
    if item.offered {
        return Err(Error::WrongState(format!(
            "conversation {conversation_id} is being offered to an agent"
        )));
    }
    if agent.excludes(item.channel) {
        return Err(Error::WrongState(format!(
            "your capacity profile excludes the channel of conversation {conversation_id}"
        )));
    }
    let queue = crate::store::catalog::get_queue(tx.conn(), tenant_id, &item.queue_id)
        .await?
        .ok_or_else(not_found)?;
    let offer_id = uuid::Uuid::new_v4().to_string();
    let claim = sqlx::query(
        "UPDATE waiting SET state = $1, offer_id = $2 WHERE conversation_id = $3 AND state = $4",
    )
    .bind(OFFERED)
    .bind(&offer_id)
    .bind(conversation_id)
    .bind(WAITING);
    if !changes_one_row(tx.conn(), claim).await? {
        // It was waiting when read in this transaction: another agent (or the matcher)
        // took it at the same moment.
        return Err(Error::Conflict(format!(
            "conversation {conversation_id} was taken by another agent at the same moment"
        )));
    }
    let units = channel_units(&agent.channel_costs, item.channel);
    let reserve = sqlx::query(
        "UPDATE agents SET capacity_used = capacity_used + $3, idle_since = $4 \
         WHERE tenant_id = $1 AND agent_id = $2 \
         AND capacity_used + pending_units + $3 <= capacity_total",
    )
    .bind(tenant_id)
    .bind(&agent.agent_id)
    .bind(i64::from(units))
    .bind(now);
    if !changes_one_row(tx.conn(), reserve).await? {
        return Err(Error::LimitExceeded(format!(
            "agent {} has no {units} free capacity units for conversation {conversation_id}",
            agent.agent_id
        )));
    }
    if queue.max_open_per_agent > 0
        && agent_queue_load(tx.conn(), tenant_id, &agent.agent_id, &queue.id).await?
            >= queue.max_open_per_agent
    {
        return Err(Error::LimitExceeded(format!(
            "agent {} already holds the {} conversations queue {} allows",
            agent.agent_id, queue.max_open_per_agent, queue.id
        )));
    }
    sqlx::query("DELETE FROM waiting WHERE conversation_id = $1")
        .bind(conversation_id)
        .execute(tx.conn())
        .await?;
    let offer = Offer {
        id: offer_id,
        tenant_id: tenant_id.to_owned(),
        conversation_id: conversation_id.to_owned(),
        queue_id: item.queue_id.clone(),
        agent_id: agent.agent_id.clone(),
        channel: item.channel,
        kind: OfferKind::Queue,
        state: OfferState::Accepted,
        create_time: now,
        expire_time: now,
        resolve_time: Some(now),
        customer_display_name: item.customer_display_name.clone(),
        capacity_units: units,
        channel_address: item.channel_address.clone(),
        queue_display_name: queue.display_name.clone(),
        wait_start_time: item.enqueue_time,
        reject_reason: String::new(),
    };
    insert_offer(tx, &offer).await?;
    finish_assignment(tx, agent, &offer, AssignmentSource::Claim, now, lease_until).await
}

// --- capacity -------------------------------------------------------------------------

/// Releases the units a conversation holds with an agent. Idempotent: returns the units
/// freed, 0 when nothing was held.
pub async fn release_capacity(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    agent_id: &str,
    now: i64,
) -> Result<i32> {
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
    sqlx::query(
        "UPDATE agents SET capacity_used = capacity_used - $3, idle_since = $4 \
         WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(tenant_id)
    .bind(agent_id)
    .bind(units)
    .bind(now)
    .execute(tx.conn())
    .await?;
    tx.event(
        NewEvent::new(tenant_id, "capacity.released")
            .agent(agent_id)
            .conversation(conversation_id)
            .queue(&queue_id),
    );
    Ok(i32_or_max(units))
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
    let agent = get_agent(tx.conn(), input.tenant_id, input.agent_id)
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
    let reserve = sqlx::query(
        "UPDATE agents SET capacity_used = capacity_used + $3, idle_since = $4 \
         WHERE tenant_id = $1 AND agent_id = $2 \
         AND ($5 = 1 OR capacity_used + pending_units + $3 <= capacity_total)",
    )
    .bind(input.tenant_id)
    .bind(input.agent_id)
    .bind(i64::from(units))
    .bind(now)
    .bind(i64::from(input.override_capacity));
    if !changes_one_row(tx.conn(), reserve).await? {
        return Err(Error::LimitExceeded(format!(
            "agent {} has no {units} free capacity units",
            input.agent_id
        )));
    }
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
    let (used, total): (i64, i64) = sqlx::query_as(
        "SELECT capacity_used, capacity_total FROM agents WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(input.tenant_id)
    .bind(input.agent_id)
    .fetch_one(tx.conn())
    .await?;
    tx.event(
        NewEvent::new(input.tenant_id, "capacity.reserved")
            .agent(input.agent_id)
            .conversation(input.conversation_id)
            .queue(&queue_id),
    );
    Ok((units, i32_or_max((used - total).max(0))))
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

/// Sets an agent's presence by hand (which also ends RONA). Leaving Available withdraws
/// the agent's pending offers so others can take them.
pub async fn set_presence(
    tx: &mut Tx,
    agent: &Agent,
    presence: Presence,
    reason: &str,
    now: i64,
) -> Result<()> {
    let idle_since = crate::domain::presence::idle_since_after_change(
        agent.presence,
        presence,
        agent.idle_since,
        now,
    );
    let change_time = if presence == agent.presence {
        agent.presence_change_time
    } else {
        now
    };
    sqlx::query(
        "UPDATE agents SET presence = $3, presence_reason = $4, presence_change_time = $5, \
         idle_since = $6 WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(&agent.tenant_id)
    .bind(&agent.agent_id)
    .bind(i64::from(presence.as_i32()))
    .bind(reason)
    .bind(change_time)
    .bind(idle_since)
    .execute(tx.conn())
    .await?;
    tx.event(NewEvent::new(&agent.tenant_id, "presence.changed").agent(&agent.agent_id));
    if !presence.keeps_pending_offers() {
        withdraw_agent_offers(tx, &agent.tenant_id, &agent.agent_id, now).await?;
    }
    Ok(())
}

// --- routing decisions ----------------------------------------------------------------

/// A short form of a decision's candidates and reasons, to skip recording the same
/// "nobody eligible" decision on every pass.
pub fn decision_summary(candidates: &[Candidate], omitted: &[Omitted]) -> String {
    candidates
        .iter()
        .map(|c| format!("{}:{}", c.agent_id, c.reason))
        .chain(omitted.iter().map(|o| format!("+{}:{}", o.count, o.reason)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Records a routing decision.
pub async fn insert_decision(tx: &mut Tx, decision: &RoutingDecision) -> Result<()> {
    sqlx::query(
        "INSERT INTO routing_decisions (id, tenant_id, conversation_id, queue_id, offer_id, \
         assignment_method, candidates, summary, decide_time, omitted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&decision.id)
    .bind(&decision.tenant_id)
    .bind(&decision.conversation_id)
    .bind(&decision.queue_id)
    .bind(decision.offer_id.clone())
    .bind(i64::from(decision.assignment_method.as_i32()))
    .bind(to_json(&decision.candidates))
    .bind(decision_summary(&decision.candidates, &decision.omitted))
    .bind(decision.decide_time)
    .bind(to_json(&decision.omitted))
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The (offer id, summary) of the latest decision on a conversation, if any.
pub async fn last_decision(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
) -> Result<Option<(Option<String>, String)>> {
    Ok(sqlx::query_as(
        "SELECT offer_id, summary FROM routing_decisions WHERE tenant_id = $1 \
         AND conversation_id = $2 ORDER BY decide_time DESC, id DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .fetch_optional(&mut *conn)
    .await?)
}

fn decision_from_row(row: &AnyRow) -> Result<RoutingDecision> {
    Ok(RoutingDecision {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        offer_id: row.try_get("offer_id")?,
        conversation_id: row.try_get("conversation_id")?,
        queue_id: row.try_get("queue_id")?,
        assignment_method: enum_column(
            row,
            "assignment_method",
            crate::domain::AssignmentMethod::from_i32,
        )?,
        candidates: json_column(row, "candidates")?,
        omitted: json_column(row, "omitted")?,
        decide_time: row.try_get("decide_time")?,
    })
}

/// One page of a conversation's decisions, newest first.
pub async fn list_decisions(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
    request: &PageRequest,
) -> Result<(Vec<RoutingDecision>, String)> {
    let (time, id) = request.after_time_and_id(i64::MAX)?;
    let query = sqlx::query(
        "SELECT id, tenant_id, offer_id, conversation_id, queue_id, assignment_method, \
         candidates, omitted, decide_time FROM routing_decisions WHERE tenant_id = $1 \
         AND conversation_id = $2 AND (decide_time < $3 OR (decide_time = $3 AND id < $4)) \
         ORDER BY decide_time DESC, id DESC LIMIT $5",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .bind(time)
    .bind(id)
    .bind(request.fetch_limit());
    fetch_page(
        conn,
        query,
        decision_from_row,
        "routing_decisions",
        request,
        |d| vec![d.decide_time.to_string(), d.id.clone()],
    )
    .await
}

// --- transfer targets and the offer ledger ---------------------------------------------

/// The queue and channel of the conversation's latest enqueue in the tenant, if routing
/// ever took it.
pub async fn conversation_route(
    conn: &mut AnyConnection,
    tenant_id: &str,
    conversation_id: &str,
) -> Result<Option<(String, Channel)>> {
    let row = sqlx::query(
        "SELECT queue_id, channel FROM enqueues WHERE tenant_id = $1 AND conversation_id = $2 \
         ORDER BY entered_time DESC, enqueue_key DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok((
            row.try_get("queue_id")?,
            enum_column(&row, "channel", Channel::from_i32)?,
        ))
    })
    .transpose()
}

/// What ListOffers filters by; empty fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferFilter {
    /// Only this conversation's offers.
    pub conversation_id: Option<String>,
    /// Only offers to this agent.
    pub agent_id: Option<String>,
    /// Only this queue's offers.
    pub queue_id: Option<String>,
    /// Only these kinds.
    pub kinds: Vec<OfferKind>,
    /// Only these states.
    pub states: Vec<OfferState>,
    /// Only offers made in [start, end).
    pub created: Option<(i64, i64)>,
}

/// `column IN (…)` of contract numbers, or nothing for an empty list. The numbers come
/// from checked enums, so they are safe to write into the statement.
fn in_numbers(column: &str, numbers: &[i32]) -> String {
    if numbers.is_empty() {
        return String::new();
    }
    let list: Vec<String> = numbers.iter().map(i32::to_string).collect();
    format!(" AND {column} IN ({})", list.join(", "))
}

/// One page of the tenant's offers matching `filter`, newest first.
pub async fn list_offers(
    conn: &mut AnyConnection,
    tenant_id: &str,
    filter: &OfferFilter,
    request: &PageRequest,
) -> Result<(Vec<Offer>, String)> {
    let (time, id) = request.after_time_and_id(i64::MAX)?;
    let (start, end) = filter.created.unwrap_or((i64::MIN, i64::MAX));
    let kinds: Vec<i32> = filter.kinds.iter().map(|k| k.as_i32()).collect();
    let states: Vec<i32> = filter.states.iter().map(|s| s.as_i32()).collect();
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE tenant_id = $1 \
         AND ($2 = '' OR conversation_id = $2) AND ($3 = '' OR agent_id = $3) \
         AND ($4 = '' OR queue_id = $4) AND create_time >= $5 AND create_time < $6{}{} \
         AND (create_time < $7 OR (create_time = $7 AND id < $8)) \
         ORDER BY create_time DESC, id DESC LIMIT $9",
        in_numbers("kind", &kinds),
        in_numbers("state", &states),
    )))
    .bind(tenant_id)
    .bind(filter.conversation_id.clone().unwrap_or_default())
    .bind(filter.agent_id.clone().unwrap_or_default())
    .bind(filter.queue_id.clone().unwrap_or_default())
    .bind(start)
    .bind(end)
    .bind(time)
    .bind(id)
    .bind(request.fetch_limit());
    fetch_page(conn, query, offer_from_row, "offers", request, |o| {
        vec![o.create_time.to_string(), o.id.clone()]
    })
    .await
}
