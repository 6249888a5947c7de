//! Conversations waiting in queues: enqueued, cancelled, walked by the matcher.

use super::*;
use switchboard_server_kit::Dialect;

use crate::store::catalog::QueueLock;

/// Reads of a conversation leaving its queue while offers keep being made for it.
const REMOVE_TRIES: usize = 5;

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

pub(super) const WAITING_COLUMNS: &str = "w.conversation_id, w.tenant_id, w.queue_id, w.channel, \
    w.customer_display_name, w.channel_address, w.enqueue_time, w.entered_time, w.state, \
    q.priority";

pub(super) fn waiting_from_row(row: &AnyRow) -> Result<WaitingItem> {
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
    // The queue was read before the transaction; it may have been deleted since.
    let held = catalog::queue_for_write(tx, &input.tenant_id, &input.queue.id, QueueLock::Held);
    if held.await?.is_none() {
        return Err(Error::not_found("queue", &input.queue.id));
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
         state, offer_id, overflow_due_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11)",
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
    .bind(overflow_due(&input.queue, now))
    .execute(tx.conn())
    .await?;
    tx.event(
        NewEvent::new(&input.tenant_id, kind::ENQUEUED)
            .conversation(&input.conversation_id)
            .queue(&input.queue.id)
            .waiting_since(input.enqueue_time, input.channel),
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

/// Where a conversation waited, as it left its queue.
pub(super) struct Left {
    queue_id: String,
    enqueue_time: i64,
    channel: Channel,
}

/// Withdraws the pending offer of a conversation, if any, and removes it from its queue.
/// Returns where it waited.
pub(super) async fn remove_waiting(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> Result<Option<Left>> {
    // A queue offer is withdrawn before the row goes, its agent locked first (see
    // `catalog::lock_agent`). An offer made after the read (another replica's matcher)
    // keeps the row from matching the delete: read again and withdraw that one too.
    for _ in 0..REMOVE_TRIES {
        let offer_id: Option<Option<String>> = sqlx::query_scalar(
            "SELECT offer_id FROM waiting WHERE tenant_id = $1 AND conversation_id = $2",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_optional(tx.conn())
        .await?;
        let Some(offer_id) = offer_id else {
            return Ok(None);
        };
        if let Some(offer_id) = &offer_id
            && let Some(offer) = get_offer(tx.conn(), tenant_id, offer_id).await?
        {
            resolve_offer(tx, &offer, OfferState::Withdrawn, now).await?;
        }
        let removed = sqlx::query(
            "DELETE FROM waiting WHERE tenant_id = $1 AND conversation_id = $2 \
             AND offer_id IS NULL RETURNING queue_id, enqueue_time, channel",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_optional(tx.conn())
        .await?;
        if let Some(row) = removed {
            // The queue is the row's as deleted (after an overflow, the new one).
            return Ok(Some(Left {
                queue_id: row.try_get("queue_id")?,
                enqueue_time: row.try_get("enqueue_time")?,
                channel: enum_column(&row, "channel", Channel::from_i32)?,
            }));
        }
    }
    Err(Error::Conflict(format!(
        "conversation {conversation_id} kept being offered while leaving its queue; retry"
    )))
}

/// Takes a conversation out of its queue and withdraws its pending offer. Idempotent;
/// returns whether it was waiting.
pub async fn cancel_waiting(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> Result<bool> {
    // Every agent with an offer pending for the conversation is locked first, in one order
    // (see `catalog::lock_agent`). Otherwise the waiting row deleted below is held while a
    // directed offer's agent is locked: the reverse of that agent's presence change, which
    // takes its row and then the waiting rows of its offers (a deadlock PostgreSQL broke
    // in the replicas test).
    // (SQLite has one writer at a time and locks nothing per row: nothing to read there.)
    if tx.dialect() == Dialect::Postgres {
        let agents: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT agent_id FROM offers WHERE tenant_id = $1 \
             AND conversation_id = $2 AND state = 1",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_all(tx.conn())
        .await?;
        catalog::lock_agents(tx, tenant_id, agents.iter().map(String::as_str)).await?;
    }
    let left = remove_waiting(tx, tenant_id, conversation_id, now).await?;
    // A transfer still waiting for its agent's answer is withdrawn too.
    withdraw_directed_offers(tx, tenant_id, conversation_id, now).await?;
    if let Some(left) = &left {
        tx.event(
            NewEvent::new(tenant_id, kind::WAITING_CANCELLED)
                .conversation(conversation_id)
                .queue(&left.queue_id)
                .waiting_since(left.enqueue_time, left.channel),
        );
    }
    Ok(left.is_some())
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
/// position `after` (from the start when `None`) in `order`, leaving out those that entered
/// the queue before `entered_since` (`i64::MIN` leaves none out).
pub async fn matchable_in_queue(
    conn: &mut AnyConnection,
    queue_id: &str,
    order: WalkOrder,
    after: Option<&QueuePosition>,
    entered_since: i64,
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
         AND w.entered_time >= $6 \
         ORDER BY w.{column}, w.conversation_id LIMIT $5"
    )))
    .bind(queue_id)
    .bind(WAITING)
    .bind(time)
    .bind(id)
    .bind(limit)
    .bind(entered_since);
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
    let mut query = sqlx::query_as::<_, (String, String, i64)>(sqlx::AssertSqlSafe(format!(
        "SELECT o.conversation_id, o.agent_id, o.state FROM waiting w \
         JOIN offers o ON o.conversation_id = w.conversation_id \
           AND o.create_time >= w.entered_time \
         WHERE w.conversation_id IN ({})",
        placeholders(1, items.len())
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
pub(super) fn excludes_agent(state: i64) -> bool {
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
