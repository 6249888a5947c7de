//! Offers: made as conditional claims, resolved (accepted, rejected, timed out,
//! withdrawn), and the assignments and claims they lead to.

use super::*;

pub(super) const OFFER_COLUMNS: &str = "id, tenant_id, conversation_id, queue_id, agent_id, channel, kind, \
    state, create_time, expire_time, resolve_time, customer_display_name, capacity_units, \
    channel_address, queue_display_name, wait_start_time, reject_reason, reference_id, sender_id, \
    sender_display_name, note";

pub(super) fn offer_from_row(row: &AnyRow) -> Result<Offer> {
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
        reference_id: row.try_get("reference_id")?,
        sender_id: row.try_get("sender_id")?,
        sender_display_name: row.try_get("sender_display_name")?,
        note: row.try_get("note")?,
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

/// A pending offer past its deadline.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DueOffer {
    /// Tenant of the offer.
    pub tenant_id: String,
    /// The offer.
    #[sqlx(rename = "id")]
    pub offer_id: String,
    /// Its agent.
    pub agent_id: String,
}

/// Pending offers past their deadline at `now`, earliest first.
pub async fn due_offers(conn: &mut AnyConnection, now: i64, limit: i64) -> Result<Vec<DueOffer>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, id, agent_id FROM offers WHERE state = 1 AND expire_time <= $1 \
         ORDER BY expire_time, id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// The earliest deadline of a pending offer, if any.
pub async fn next_offer_deadline(conn: &mut AnyConnection) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MIN(expire_time) FROM offers WHERE state = 1")
            .fetch_one(&mut *conn)
            .await?,
    )
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
pub(super) async fn agent_queue_load(
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

/// Why [`create_offer`] made no offer: another change won a race. The caller rolls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// The agent is no longer Available, has no room, is at the queue's max open or has
    /// declined the conversation meanwhile: what the plan knew of the agent is stale.
    Agent,
    /// The conversation is no longer waiting: another replica offered it, or it was moved
    /// or withdrawn. Nothing the plan knew of the agents is wrong.
    Conversation,
    /// Another transaction holds the agent's or the queue's row this moment (PostgreSQL,
    /// [`Locks::WithoutWaiting`] only): nothing the plan knew is stale; try it again with
    /// [`Locks::Waiting`].
    Busy,
}

/// How [`create_offer`] takes its row locks on PostgreSQL (SQLite has one writer at a
/// time, so there is nothing to wait for there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locks {
    /// The conversation first, then the agent and the queue, each taken only if free this
    /// moment, so the claim never waits: a conversation another replica's matcher is
    /// offering is left to it at once, instead of after its transaction ends. The only
    /// lock it then waits for is the event counter's, which every transaction takes last
    /// and holds while waiting for nothing, so it cannot close a deadlock whatever order
    /// it locks in. A row held by a change that then rolls back is offered on a later pass.
    WithoutWaiting,
    /// The agent, then the queue, then the conversation, waiting for each: the order every
    /// other write follows (see `catalog::lock_agent`). For a plan that found its agent
    /// or queue busy.
    Waiting,
}

/// Makes an offer: claims the waiting item, promises the agent's units, checks the
/// queue's max open, records the offer and the decision; or says which side of the plan
/// another change made stale.
pub async fn create_offer(
    tx: &mut Tx,
    plan: &OfferPlan<'_>,
    locks: Locks,
    now: i64,
) -> Result<std::result::Result<Offer, Lost>> {
    let item = plan.item;
    let postgres = tx.dialect() == switchboard_server_kit::db::Dialect::Postgres;
    let claimed = if locks == Locks::WithoutWaiting && postgres {
        let Some(claimed) = claim_waiting_item(tx, plan, true).await? else {
            return Ok(Err(Lost::Conversation));
        };
        if let Err(lost) = hold_units_without_waiting(tx, plan, now).await? {
            return Ok(Err(lost));
        }
        claimed
    } else {
        // The agent's row first (see `catalog::lock_agent`): the units are promised before
        // the conversation is claimed.
        if !hold_units(tx, plan, now).await? {
            return Ok(Err(Lost::Agent));
        }
        // Only round robin reads the cursor; updating it on every offer would make every
        // offer of a queue wait for the one before it on PostgreSQL. Taken before the
        // waiting row, as an update of the queue's settings does.
        if plan.queue.assignment_method == AssignmentMethod::RoundRobin {
            sqlx::query("UPDATE queues SET rr_cursor = $2 WHERE id = $1")
                .bind(&item.queue_id)
                .bind(plan.agent_id)
                .execute(tx.conn())
                .await?;
        }
        let Some(claimed) = claim_waiting_item(tx, plan, false).await? else {
            return Ok(Err(Lost::Conversation));
        };
        claimed
    };
    // The plan comes from a read that may predate an offer of this conversation by another
    // replica to the same agent, declined since: the claim then finds it waiting again.
    // Checked once the item is claimed, so an agent is never offered again what it declined.
    if claimed.declined_by_agent {
        return Ok(Err(Lost::Agent));
    }
    if plan.queue.max_open_per_agent > 0 {
        let load =
            agent_queue_load(tx.conn(), &item.tenant_id, plan.agent_id, &item.queue_id).await?;
        if load >= plan.queue.max_open_per_agent {
            return Ok(Err(Lost::Agent));
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
        reference_id: String::new(),
        sender_id: String::new(),
        sender_display_name: String::new(),
        note: String::new(),
    };
    insert_offer(tx, &offer).await?;
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
    tx.event(NewEvent::of_offer(&offer, kind::OFFER_CREATED));
    Ok(Ok(offer))
}

/// What claiming a waiting conversation for an offer found.
struct Claimed {
    /// Whether the plan's agent declined it (or let an offer of it time out) since it
    /// entered its queue.
    declined_by_agent: bool,
}

/// Claims the plan's conversation if it still waits in the plan's queue, and says whether
/// the plan's agent declined it meanwhile; one statement. With `skip_locked`
/// (PostgreSQL), a conversation whose row another transaction holds counts as taken
/// rather than being waited for.
async fn claim_waiting_item(
    tx: &mut Tx,
    plan: &OfferPlan<'_>,
    skip_locked: bool,
) -> Result<Option<Claimed>> {
    let excluding: Vec<String> = OfferState::ALL
        .iter()
        .filter(|state| state.excludes_agent())
        .map(|state| state.as_i32().to_string())
        .collect();
    let which = if skip_locked {
        "conversation_id = (SELECT conversation_id FROM waiting \
         WHERE conversation_id = $3 AND queue_id = $4 AND state = $5 \
         FOR NO KEY UPDATE SKIP LOCKED)"
    } else {
        "conversation_id = $3 AND queue_id = $4 AND state = $5"
    };
    let declined: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "UPDATE waiting SET state = $1, offer_id = $2 WHERE {which} \
         RETURNING (SELECT COUNT(*) FROM offers o WHERE o.conversation_id = waiting.conversation_id \
         AND o.agent_id = $6 AND o.create_time >= waiting.entered_time \
         AND o.state IN ({}))",
        excluding.join(", ")
    )))
    .bind(OFFERED)
    .bind(&plan.offer_id)
    .bind(&plan.item.conversation_id)
    .bind(&plan.item.queue_id)
    .bind(WAITING)
    .bind(plan.agent_id)
    .fetch_optional(tx.conn())
    .await?;
    Ok(declined.map(|count| Claimed {
        declined_by_agent: count > 0,
    }))
}

/// Promises the plan's units on its agent if still Available with room; whether it did.
async fn hold_units(tx: &mut Tx, plan: &OfferPlan<'_>, now: i64) -> Result<bool> {
    let hold = sqlx::query(
        "UPDATE agents SET pending_units = pending_units + $3, idle_since = $4 \
         WHERE tenant_id = $1 AND agent_id = $2 AND presence = $5 \
         AND capacity_used + pending_units + $3 <= capacity_total",
    )
    .bind(&plan.item.tenant_id)
    .bind(plan.agent_id)
    .bind(i64::from(plan.units))
    .bind(now)
    .bind(i64::from(Presence::Available.as_i32()));
    changes_one_row(tx.conn(), hold).await
}

/// [`hold_units`] on PostgreSQL without waiting for the agent's row (one statement that
/// tells a busy row from a stale plan), then the round-robin cursor the same way.
async fn hold_units_without_waiting(
    tx: &mut Tx,
    plan: &OfferPlan<'_>,
    now: i64,
) -> Result<std::result::Result<(), Lost>> {
    let (locked, held): (i64, i64) = sqlx::query_as(
        "WITH locked AS (SELECT tenant_id, agent_id FROM agents \
           WHERE tenant_id = $1 AND agent_id = $2 FOR NO KEY UPDATE SKIP LOCKED), \
         held AS (UPDATE agents a SET pending_units = a.pending_units + $3, idle_since = $4 \
           FROM locked l WHERE a.tenant_id = l.tenant_id AND a.agent_id = l.agent_id \
           AND a.presence = $5 AND a.capacity_used + a.pending_units + $3 <= a.capacity_total \
           RETURNING 1) \
         SELECT (SELECT COUNT(*) FROM locked), (SELECT COUNT(*) FROM held)",
    )
    .bind(&plan.item.tenant_id)
    .bind(plan.agent_id)
    .bind(i64::from(plan.units))
    .bind(now)
    .bind(i64::from(Presence::Available.as_i32()))
    .fetch_one(tx.conn())
    .await?;
    if locked == 0 {
        return Ok(Err(Lost::Busy));
    }
    if held == 0 {
        return Ok(Err(Lost::Agent));
    }
    if plan.queue.assignment_method == AssignmentMethod::RoundRobin {
        let moved = sqlx::query(
            "UPDATE queues SET rr_cursor = $2 WHERE id = (SELECT id FROM queues WHERE id = $1 \
             FOR NO KEY UPDATE SKIP LOCKED)",
        )
        .bind(&plan.item.queue_id)
        .bind(plan.agent_id);
        if !changes_one_row(tx.conn(), moved).await? {
            return Ok(Err(Lost::Busy));
        }
    }
    Ok(Ok(()))
}

pub(super) async fn insert_offer(tx: &mut Tx, offer: &Offer) -> Result<()> {
    sqlx::query(
        "INSERT INTO offers (id, tenant_id, conversation_id, queue_id, agent_id, channel, kind, \
         state, create_time, expire_time, resolve_time, customer_display_name, capacity_units, \
         channel_address, queue_display_name, wait_start_time, reject_reason, reference_id, \
         sender_id, sender_display_name, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21)",
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
    .bind(&offer.reference_id)
    .bind(&offer.sender_id)
    .bind(&offer.sender_display_name)
    .bind(&offer.note)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub(super) fn resolution_event(state: OfferState) -> &'static str {
    match state {
        OfferState::Pending => kind::OFFER_CREATED,
        OfferState::Accepted => kind::OFFER_ACCEPTED,
        OfferState::Rejected => kind::OFFER_REJECTED,
        OfferState::TimedOut => kind::OFFER_TIMED_OUT,
        OfferState::Withdrawn => kind::OFFER_WITHDRAWN,
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
    catalog::lock_agent(tx, &offer.tenant_id, &offer.agent_id).await?;
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
    tx.event(NewEvent::of_offer(offer, resolution_event(to)));
    tell_requester(tx, offer, to, now).await?;
    if to.puts_agent_in_rona() {
        let rona = enter_rona(tx, &offer.tenant_id, &[offer.agent_id.as_str()], now).await?;
        rona.into_values().for_each(|event| tx.event(event));
    }
    Ok(true)
}

/// For a directed offer resolved without being accepted: conversation-svc asked for it and
/// decides what follows (the transfer's fallback), so it hears of the outcome through the
/// outbox, like an assignment. Nothing for a queue's offer.
async fn tell_requester(tx: &mut Tx, offer: &Offer, to: OfferState, now: i64) -> Result<()> {
    if offer.kind == OfferKind::Queue {
        return Ok(());
    }
    let entry = OutboxEntry {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: offer.tenant_id.clone(),
        conversation_id: offer.conversation_id.clone(),
        agent_id: offer.agent_id.clone(),
        agent_display_name: String::new(),
        offer_id: offer.id.clone(),
        queue_id: offer.queue_id.clone(),
        source: AssignmentSource::Transfer,
        attempts: 0,
        next_attempt_time: now,
        resolution: Some((to, offer.reject_reason.clone())),
        logout: None,
        overflow: None,
        enqueue_key: String::new(),
    };
    outbox::insert(tx, &entry, now).await
}

/// Puts the tenant's agents `agent_ids` whose offer timed out in RONA, those not in it
/// already; returns the event of each agent that changed, for the caller to record where
/// it belongs among the offers' events.
async fn enter_rona(
    tx: &mut Tx,
    tenant_id: &str,
    agent_ids: &[&str],
    now: i64,
) -> Result<HashMap<String, NewEvent>> {
    let before: HashMap<String, Agent> = catalog::agents_by_id(tx.conn(), tenant_id, agent_ids)
        .await?
        .into_iter()
        .filter(|agent| agent.presence != Presence::Rona)
        .map(|agent| (agent.agent_id.clone(), agent))
        .collect();
    if before.is_empty() {
        return Ok(HashMap::new());
    }
    let mut rona = sqlx::query(AssertSqlSafe(format!(
        "UPDATE agents SET presence = $2, presence_reason = '', presence_change_time = $3 \
         WHERE tenant_id = $1 AND presence <> $2 AND agent_id IN ({}) RETURNING agent_id",
        placeholders(4, before.len())
    )))
    .bind(tenant_id)
    .bind(i64::from(Presence::Rona.as_i32()))
    .bind(now);
    for agent_id in before.keys() {
        rona = rona.bind(agent_id.as_str());
    }
    let changed: Vec<String> = rona
        .fetch_all(tx.conn())
        .await?
        .iter()
        .map(|row| row.try_get("agent_id"))
        .collect::<std::result::Result<_, _>>()?;
    Ok(changed
        .into_iter()
        .filter_map(|agent_id| {
            let agent = before.get(&agent_id)?;
            let event = NewEvent::new(tenant_id, kind::PRESENCE_CHANGED)
                .agent(&agent_id)
                .presence(PresenceChange {
                    shown: Presence::Rona,
                    previous: agent.shown_presence(),
                    cause: PresenceCause::OfferTimedOut,
                })
                .load(agent.capacity_used, agent.capacity_total);
            Some((agent_id, event))
        })
        .collect())
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

/// Times out the offers `due` that are still pending and past their deadline at `now`: for
/// each agent its earliest such offer times out, the agent enters RONA and its other
/// pending offers are withdrawn (see [`time_outs`]); the conversations wait again, keeping
/// their place. A burst of deadlines costs a few statements per tenant and batch, not a
/// dozen per offer on the one writer. Returns the offers timed out.
pub async fn expire_offers(tx: &mut Tx, due: &[DueOffer], now: i64) -> Result<Vec<Offer>> {
    let mut by_tenant: BTreeMap<&str, Vec<&DueOffer>> = BTreeMap::new();
    for offer in due {
        by_tenant.entry(&offer.tenant_id).or_default().push(offer);
    }
    let mut timed_out = Vec::new();
    for (tenant_id, due) in by_tenant {
        timed_out.extend(expire_tenant_offers(tx, tenant_id, &due, now).await?);
    }
    Ok(timed_out)
}

async fn expire_tenant_offers(
    tx: &mut Tx,
    tenant_id: &str,
    due: &[&DueOffer],
    now: i64,
) -> Result<Vec<Offer>> {
    let mut agents: Vec<&str> = due.iter().map(|offer| offer.agent_id.as_str()).collect();
    agents.sort_unstable();
    agents.dedup();
    catalog::lock_agents(tx, tenant_id, agents.iter().copied()).await?;
    let pending = pending_offers_of_agents(tx.conn(), tenant_id, &agents).await?;
    let due_ids: HashSet<&str> = due.iter().map(|offer| offer.offer_id.as_str()).collect();
    let plan = time_outs(&pending, &due_ids, now);
    // Under the agents' locks (and SQLite's one writer) every planned offer is still
    // pending; the conditional updates keep a change that escaped them from being undone.
    let planned = |state: OfferState| -> Vec<&Offer> {
        plan.iter()
            .filter(|(_, to)| *to == state)
            .map(|(offer, _)| *offer)
            .collect()
    };
    let timed_out = set_resolved(
        tx,
        &planned(OfferState::TimedOut),
        OfferState::TimedOut,
        now,
    )
    .await?;
    // An agent's other offers are withdrawn only once it has entered RONA.
    let rona_agents: BTreeSet<&str> = planned(OfferState::TimedOut)
        .into_iter()
        .filter(|offer| timed_out.contains(&offer.id))
        .map(|offer| offer.agent_id.as_str())
        .collect();
    let withdrawals: Vec<&Offer> = planned(OfferState::Withdrawn)
        .into_iter()
        .filter(|offer| rona_agents.contains(offer.agent_id.as_str()))
        .collect();
    let withdrawn = set_resolved(tx, &withdrawals, OfferState::Withdrawn, now).await?;
    let resolved: Vec<(&Offer, OfferState)> = plan
        .into_iter()
        .filter(|(offer, _)| timed_out.contains(&offer.id) || withdrawn.contains(&offer.id))
        .collect();
    if resolved.is_empty() {
        return Ok(Vec::new());
    }
    let offers: Vec<&Offer> = resolved.iter().map(|(offer, _)| *offer).collect();
    free_pending_units(tx, tenant_id, &offers).await?;
    wait_again(tx, &offers).await?;
    let rona_agents: Vec<&str> = rona_agents.into_iter().collect();
    let mut rona = enter_rona(tx, tenant_id, &rona_agents, now).await?;
    for (offer, to) in &resolved {
        tx.event(NewEvent::of_offer(offer, resolution_event(*to)));
        tell_requester(tx, offer, *to, now).await?;
        if to.puts_agent_in_rona()
            && let Some(event) = rona.remove(&offer.agent_id)
        {
            tx.event(event);
        }
    }
    Ok(resolved
        .into_iter()
        .filter(|(_, to)| to.puts_agent_in_rona())
        .map(|(offer, _)| offer.clone())
        .collect())
}

/// Every pending offer of the tenant's agents `agent_ids`.
async fn pending_offers_of_agents(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_ids: &[&str],
) -> Result<Vec<Offer>> {
    if agent_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = sqlx::query(AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE tenant_id = $1 AND state = 1 \
         AND agent_id IN ({})",
        placeholders(2, agent_ids.len())
    )))
    .bind(tenant_id);
    for agent_id in agent_ids {
        query = query.bind(*agent_id);
    }
    fetch_all(conn, query, offer_from_row).await
}

/// Resolves those of `offers` still pending as `to` at `now`; returns the ids resolved.
async fn set_resolved(
    tx: &mut Tx,
    offers: &[&Offer],
    to: OfferState,
    now: i64,
) -> Result<HashSet<String>> {
    if offers.is_empty() {
        return Ok(HashSet::new());
    }
    let mut query = sqlx::query(AssertSqlSafe(format!(
        "UPDATE offers SET state = $1, resolve_time = $2 WHERE state = 1 AND id IN ({}) \
         RETURNING id",
        placeholders(3, offers.len())
    )))
    .bind(i64::from(to.as_i32()))
    .bind(now);
    for offer in offers {
        query = query.bind(offer.id.as_str());
    }
    query
        .fetch_all(tx.conn())
        .await?
        .iter()
        .map(|row| Ok(row.try_get("id")?))
        .collect()
}

/// Gives the tenant's agents back the units `offers` (resolved, not accepted) promised.
async fn free_pending_units(tx: &mut Tx, tenant_id: &str, offers: &[&Offer]) -> Result<()> {
    let mut units: BTreeMap<&str, i64> = BTreeMap::new();
    for offer in offers {
        *units.entry(&offer.agent_id).or_default() += i64::from(offer.capacity_units);
    }
    units.retain(|_, units| *units != 0);
    if units.is_empty() {
        return Ok(());
    }
    let cases = (0..units.len())
        .map(|k| format!("WHEN ${} THEN ${}", 2 + 2 * k, 3 + 2 * k))
        .collect::<Vec<_>>()
        .join(" ");
    let mut query = sqlx::query(AssertSqlSafe(format!(
        "UPDATE agents SET pending_units = pending_units - CASE agent_id {cases} ELSE 0 END \
         WHERE tenant_id = $1 AND agent_id IN ({})",
        placeholders(2 + 2 * units.len(), units.len())
    )))
    .bind(tenant_id);
    for (agent_id, freed) in &units {
        query = query.bind(*agent_id).bind(*freed);
    }
    for agent_id in units.keys() {
        query = query.bind(*agent_id);
    }
    query.execute(tx.conn()).await?;
    Ok(())
}

/// Puts the conversations of `offers` (resolved, not accepted) back to waiting, in the
/// place they had.
async fn wait_again(tx: &mut Tx, offers: &[&Offer]) -> Result<()> {
    // Each offer id belongs to one conversation: both lists select exactly those rows, the
    // first through the table's key.
    let mut query = sqlx::query(AssertSqlSafe(format!(
        "UPDATE waiting SET state = $1, offer_id = NULL \
         WHERE conversation_id IN ({}) AND offer_id IN ({})",
        placeholders(2, offers.len()),
        placeholders(2 + offers.len(), offers.len())
    )))
    .bind(WAITING);
    for offer in offers {
        query = query.bind(offer.conversation_id.as_str());
    }
    for offer in offers {
        query = query.bind(offer.id.as_str());
    }
    query.execute(tx.conn()).await?;
    Ok(())
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
    sqlx::query("UPDATE offers SET reject_reason = $2 WHERE id = $1 AND state = 1")
        .bind(&offer.id)
        .bind(reason)
        .execute(tx.conn())
        .await?;
    let offer = Offer {
        reject_reason: reason.to_owned(),
        ..offer
    };
    if !resolve_offer(tx, &offer, OfferState::Rejected, now).await? {
        return Err(Error::Conflict(format!(
            "offer {offer_id} was resolved concurrently; retry"
        )));
    }
    reread_offer(tx.conn(), &offer).await
}

pub(super) async fn owned_offer(
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

pub(super) async fn reread_offer(conn: &mut AnyConnection, offer: &Offer) -> Result<Offer> {
    get_offer(conn, &offer.tenant_id, &offer.id)
        .await?
        .ok_or_else(|| Error::Internal(format!("offer {} vanished", offer.id)))
}

pub(super) fn offer_wrong_state(offer: &Offer, err: OfferError) -> Error {
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
    let reserve = sqlx::query(AssertSqlSafe(format!(
        "UPDATE agents SET capacity_used = capacity_used + $3, pending_units = pending_units - $3, \
         {} WHERE tenant_id = $1 AND agent_id = $2 AND capacity_used + $3 <= capacity_total \
         {RETURNING_LOAD}",
        shown_presence_time("$3", "$4")
    )))
    .bind(&offer.tenant_id)
    .bind(&offer.agent_id)
    .bind(units)
    .bind(now);
    let Some(load) = updated_load(tx, reserve).await? else {
        return Err(Error::LimitExceeded(format!(
            "agent {} has no {} free capacity units for offer {offer_id}",
            offer.agent_id, offer.capacity_units
        )));
    };
    // A directed offer (transfer, invitation) has no waiting item, nor enqueue key.
    let enqueue_key: Option<String> = sqlx::query_scalar(
        "DELETE FROM waiting WHERE conversation_id = $1 AND offer_id = $2 RETURNING enqueue_key",
    )
    .bind(&offer.conversation_id)
    .bind(&offer.id)
    .fetch_optional(tx.conn())
    .await?;
    let accepted = Offer {
        state: OfferState::Accepted,
        resolve_time: Some(now),
        ..offer
    };
    let source = AssignmentSource::of_offer(accepted.kind);
    let placement = enqueue_key.unwrap_or_default();
    finish_assignment(
        tx,
        agent,
        &accepted,
        (source, &placement),
        load,
        now,
        lease_until,
    )
    .await
}

/// Writes the assignment, the outbox entry and the events of an accepted offer, which came
/// from the waiting item enqueued under `enqueue_key` (empty for a directed offer) and left
/// the agent at `load` once its units were reserved.
pub(super) async fn finish_assignment(
    tx: &mut Tx,
    agent: &Agent,
    offer: &Offer,
    (source, enqueue_key): (AssignmentSource, &str),
    load: Load,
    now: i64,
    lease_until: i64,
) -> Result<Accepted> {
    if offer.kind != OfferKind::Consult {
        // A consultant holds no capacity: nothing to release when it leaves.
        insert_assignment(tx, offer, now).await?;
    }
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
        resolution: None,
        logout: None,
        overflow: None,
        enqueue_key: enqueue_key.to_owned(),
    };
    outbox::insert(tx, &entry, now).await?;
    tx.event(NewEvent::of_offer(offer, kind::OFFER_ACCEPTED));
    if offer.kind != OfferKind::Consult {
        record_capacity_change(
            tx,
            NewEvent::new(&offer.tenant_id, kind::CAPACITY_RESERVED)
                .agent(&offer.agent_id)
                .conversation(&offer.conversation_id)
                .queue(&offer.queue_id)
                .offer(&offer.id),
            offer.capacity_units,
            load,
        );
    }
    Ok(Accepted {
        offer: offer.clone(),
        outbox: entry,
    })
}

pub(super) async fn insert_assignment(tx: &mut Tx, offer: &Offer, now: i64) -> Result<()> {
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
    let Some(item) = get_waiting(tx.conn(), tenant_id, conversation_id)
        .await?
        .filter(|item| agent.queue_ids.contains(&item.queue_id))
    else {
        // Another agent of the same queues holding it is a lost race, whichever backend
        // serialised the two claims: on SQLite the loser only starts once the winner
        // committed, and reads it gone.
        return Err(match taken_in_queues(tx, agent, conversation_id).await? {
            true => Error::Conflict(format!(
                "conversation {conversation_id} was taken by another agent"
            )),
            false => not_found(),
        });
    };
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
    if let Some(missing) = missing_skill(agent, &queue.required_skills) {
        return Err(Error::WrongState(format!(
            "queue {} requires skill {} at level {} or above, which you do not have",
            queue.id, missing.name, missing.min_level
        )));
    }
    let offer_id = uuid::Uuid::new_v4().to_string();
    let claim = sqlx::query(
        "UPDATE waiting SET state = $1, offer_id = $2 \
         WHERE conversation_id = $3 AND state = $4 AND queue_id = $5",
    )
    .bind(OFFERED)
    .bind(&offer_id)
    .bind(conversation_id)
    .bind(WAITING)
    .bind(&item.queue_id);
    if !changes_one_row(tx.conn(), claim).await? {
        // It was waiting when read in this transaction: another agent (or the matcher)
        // took it, or it overflowed to another queue, at the same moment.
        return Err(Error::Conflict(format!(
            "conversation {conversation_id} was taken by another agent, moved or withdrawn \
             at the same moment"
        )));
    }
    let units = channel_units(&agent.channel_costs, item.channel);
    let reserve = sqlx::query(AssertSqlSafe(format!(
        "UPDATE agents SET capacity_used = capacity_used + $3, idle_since = $4, {} \
         WHERE tenant_id = $1 AND agent_id = $2 \
         AND capacity_used + pending_units + $3 <= capacity_total {RETURNING_LOAD}",
        shown_presence_time("$3", "$4")
    )))
    .bind(tenant_id)
    .bind(&agent.agent_id)
    .bind(i64::from(units))
    .bind(now);
    let Some(load) = updated_load(tx, reserve).await? else {
        return Err(Error::LimitExceeded(format!(
            "agent {} has no {units} free capacity units for conversation {conversation_id}",
            agent.agent_id
        )));
    };
    if queue.max_open_per_agent > 0
        && agent_queue_load(tx.conn(), tenant_id, &agent.agent_id, &queue.id).await?
            >= queue.max_open_per_agent
    {
        return Err(Error::LimitExceeded(format!(
            "agent {} already holds the {} conversations queue {} allows",
            agent.agent_id, queue.max_open_per_agent, queue.id
        )));
    }
    let enqueue_key: String =
        sqlx::query_scalar("DELETE FROM waiting WHERE conversation_id = $1 RETURNING enqueue_key")
            .bind(conversation_id)
            .fetch_one(tx.conn())
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
        reference_id: String::new(),
        sender_id: String::new(),
        sender_display_name: String::new(),
        note: String::new(),
    };
    insert_offer(tx, &offer).await?;
    finish_assignment(
        tx,
        agent,
        &offer,
        (AssignmentSource::Claim, &enqueue_key),
        load,
        now,
        lease_until,
    )
    .await
}

/// Whether another agent holds `conversation_id` for one of `agent`'s queues.
async fn taken_in_queues(tx: &mut Tx, agent: &Agent, conversation_id: &str) -> Result<bool> {
    let holders: Vec<(String, String)> = sqlx::query_as(
        "SELECT agent_id, queue_id FROM assignments WHERE tenant_id = $1 AND conversation_id = $2",
    )
    .bind(&agent.tenant_id)
    .bind(conversation_id)
    .fetch_all(tx.conn())
    .await?;
    Ok(holders
        .iter()
        .any(|(holder, queue_id)| *holder != agent.agent_id && agent.queue_ids.contains(queue_id)))
}

/// An offer conversation-svc asks routing-svc to make to one agent (a transfer).
#[derive(Clone, Debug)]
pub struct DirectedOffer<'a> {
    /// Tenant of the conversation.
    pub tenant_id: &'a str,
    /// The conversation.
    pub conversation_id: &'a str,
    /// The agent to offer it to.
    pub agent_id: &'a str,
    /// The queue the agent receives it in (its offer timeout applies).
    pub queue: &'a Queue,
    /// The conversation's channel.
    pub channel: Channel,
    /// Why: a transfer.
    pub kind: OfferKind,
    /// conversation-svc's transfer id; the idempotency key.
    pub reference_id: &'a str,
    /// Who sent it.
    pub sender_id: &'a str,
    /// That user's display name.
    pub sender_display_name: &'a str,
    /// The sender's note.
    pub note: &'a str,
    /// The customer's display name.
    pub customer_display_name: &'a str,
    /// The customer's address on the channel.
    pub channel_address: &'a str,
    /// When the customer started waiting.
    pub wait_start_time: i64,
}

/// Makes a directed offer: the agent must be Available with the units free (they are
/// promised, as for a queue offer, until the answer). A retry with the same `reference_id`
/// returns the offer made first.
pub async fn create_directed_offer(
    tx: &mut Tx,
    input: &DirectedOffer<'_>,
    now: i64,
) -> Result<Offer> {
    let existing = sqlx::query(AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE tenant_id = $1 AND reference_id = $2"
    )))
    .bind(input.tenant_id)
    .bind(input.reference_id)
    .fetch_optional(tx.conn())
    .await?;
    if let Some(row) = existing {
        return offer_from_row(&row);
    }
    let agent = catalog::agent_for_write(tx, input.tenant_id, input.agent_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("agent {} not found", input.agent_id)))?;
    let pending: Vec<(i64, String)> = sqlx::query_as(
        "SELECT kind, agent_id FROM offers WHERE conversation_id = $1 AND state = 1",
    )
    .bind(input.conversation_id)
    .fetch_all(tx.conn())
    .await?;
    let pending: Vec<(OfferKind, &str)> = pending
        .iter()
        .filter_map(|(kind, agent)| {
            Some((
                OfferKind::from_i32(i32::try_from(*kind).ok()?)?,
                agent.as_str(),
            ))
        })
        .collect();
    if let Some(why) =
        crate::domain::transfer::directed_offer_conflict(input.kind, input.agent_id, &pending)
    {
        return Err(Error::WrongState(format!(
            "conversation {}: {why}",
            input.conversation_id
        )));
    }
    if agent.presence != Presence::Available {
        return Err(Error::WrongState(format!(
            "agent {} is {:?}, not Available",
            input.agent_id, agent.presence
        )));
    }
    if agent.excludes(input.channel) {
        return Err(Error::WrongState(format!(
            "the capacity profile of agent {} excludes channel {:?}",
            input.agent_id, input.channel
        )));
    }
    if input.kind == OfferKind::Conference {
        // An earlier hold of this agent on the conversation (as its owner before a transfer)
        // is released through conversation-svc's outbox; until it is, a conference hold
        // could not be told apart from it.
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM assignments WHERE conversation_id = $1 AND agent_id = $2",
        )
        .bind(input.conversation_id)
        .bind(input.agent_id)
        .fetch_one(tx.conn())
        .await?;
        if held > 0 {
            return Err(Error::WrongState(format!(
                "agent {} still holds capacity for conversation {} from an earlier part in it; \
                 retry once it is released",
                input.agent_id, input.conversation_id
            )));
        }
    }
    let units = if input.kind == OfferKind::Consult {
        0
    } else {
        channel_units(&agent.channel_costs, input.channel)
    };
    let hold = sqlx::query(
        "UPDATE agents SET pending_units = pending_units + $3 \
         WHERE tenant_id = $1 AND agent_id = $2 AND presence = $4 \
         AND capacity_used + pending_units + $3 <= capacity_total",
    )
    .bind(input.tenant_id)
    .bind(input.agent_id)
    .bind(i64::from(units))
    .bind(i64::from(Presence::Available.as_i32()));
    if !changes_one_row(tx.conn(), hold).await? {
        return Err(Error::LimitExceeded(format!(
            "agent {} has no {units} free capacity units",
            input.agent_id
        )));
    }
    let offer = Offer {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: input.tenant_id.to_owned(),
        conversation_id: input.conversation_id.to_owned(),
        queue_id: input.queue.id.clone(),
        agent_id: input.agent_id.to_owned(),
        channel: input.channel,
        kind: input.kind,
        state: OfferState::Pending,
        create_time: now,
        expire_time: now.saturating_add(input.queue.offer_timeout_us),
        resolve_time: None,
        customer_display_name: input.customer_display_name.to_owned(),
        capacity_units: units,
        channel_address: input.channel_address.to_owned(),
        queue_display_name: input.queue.display_name.clone(),
        wait_start_time: input.wait_start_time,
        reject_reason: String::new(),
        reference_id: input.reference_id.to_owned(),
        sender_id: input.sender_id.to_owned(),
        sender_display_name: input.sender_display_name.to_owned(),
        note: input.note.to_owned(),
    };
    insert_offer(tx, &offer).await?;
    tx.event(NewEvent::of_offer(&offer, kind::OFFER_CREATED));
    Ok(offer)
}

/// Withdraws the pending directed offers of a conversation (a transfer whose conversation
/// was closed, moved or transferred otherwise); returns how many.
pub async fn withdraw_directed_offers(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> Result<usize> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE tenant_id = $1 AND conversation_id = $2 \
         AND state = 1 AND kind <> 1"
    )))
    .bind(tenant_id)
    .bind(conversation_id)
    .fetch_all(tx.conn())
    .await?;
    let offers = rows
        .iter()
        .map(offer_from_row)
        .collect::<Result<Vec<_>>>()?;
    // Invitations may be pending with several agents: their rows in one order.
    catalog::lock_agents(tx, tenant_id, offers.iter().map(|o| o.agent_id.as_str())).await?;
    let mut withdrawn = 0;
    for offer in &offers {
        if resolve_offer(tx, offer, OfferState::Withdrawn, now).await? {
            withdrawn += 1;
        }
    }
    Ok(withdrawn)
}

/// Withdraws the pending offer made for conversation-svc's `reference_id` (a cancelled
/// invitation); false when there is none or it was already answered.
pub async fn withdraw_offer_by_reference(
    tx: &mut Tx,
    tenant_id: &str,
    conversation_id: &str,
    reference_id: &str,
    now: i64,
) -> Result<bool> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {OFFER_COLUMNS} FROM offers WHERE tenant_id = $1 AND reference_id = $2 \
         AND conversation_id = $3 AND state = 1"
    )))
    .bind(tenant_id)
    .bind(reference_id)
    .bind(conversation_id)
    .fetch_optional(tx.conn())
    .await?;
    match row {
        Some(row) => resolve_offer(tx, &offer_from_row(&row)?, OfferState::Withdrawn, now).await,
        None => Ok(false),
    }
}
