//! Programs, queues, capacity profiles and agents' routing profiles.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use switchboard_server_kit::db::{Dialect, is_unique_violation};

use crate::domain::membership::MembershipPeriod;
use crate::domain::presence::after_capacity_change;
use crate::domain::{
    Agent, AssignmentMethod, CapacityProfile, Channel, LogoutBehavior, Presence, Program, Queue,
    QueueState, Skill, SkillRequirement, TransferFallback,
};
use crate::error::{Error, Result};
use crate::store::page::PageRequest;
use crate::store::{
    NewEvent, Tx, enum_column, fetch_all, fetch_optional, fetch_page, get_by_id, i32_or_max,
    int_column, json_column, kind, placeholders, to_json,
};

/// Turns a unique violation into ALREADY_EXISTS with `message`.
fn already_exists(message: String) -> impl FnOnce(sqlx::Error) -> Error {
    move |err| {
        if is_unique_violation(&err) {
            Error::AlreadyExists(message)
        } else {
            err.into()
        }
    }
}

// --- programs -------------------------------------------------------------------------

const PROGRAM_COLUMNS: &str = "id, tenant_id, display_name, create_time";

fn program_from_row(row: &AnyRow) -> Result<Program> {
    Ok(Program {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        display_name: row.try_get("display_name")?,
        create_time: row.try_get("create_time")?,
    })
}

/// Stores a new program; ALREADY_EXISTS when the tenant has one of that name.
pub async fn insert_program(tx: &mut Tx, program: &Program) -> Result<()> {
    sqlx::query(
        "INSERT INTO programs (id, tenant_id, display_name, create_time) VALUES ($1, $2, $3, $4)",
    )
    .bind(&program.id)
    .bind(&program.tenant_id)
    .bind(&program.display_name)
    .bind(program.create_time)
    .execute(tx.conn())
    .await
    .map_err(already_exists(format!(
        "a program named \"{}\" already exists",
        program.display_name
    )))?;
    tx.event(NewEvent::new(&program.tenant_id, kind::PROGRAM_CREATED));
    Ok(())
}

/// The tenant's program `id`, if any.
pub async fn get_program(
    conn: &mut AnyConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<Program>> {
    get_by_id(
        conn,
        "programs",
        PROGRAM_COLUMNS,
        tenant_id,
        id,
        program_from_row,
    )
    .await
}

/// One page of the tenant's programs by name.
pub async fn list_programs(
    conn: &mut AnyConnection,
    tenant_id: &str,
    request: &PageRequest,
) -> Result<(Vec<Program>, String)> {
    let (name, id) = request.after_text_and_id()?;
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {PROGRAM_COLUMNS} FROM programs WHERE tenant_id = $1 \
         AND (display_name > $2 OR (display_name = $2 AND id > $3)) \
         ORDER BY display_name, id LIMIT $4"
    )))
    .bind(tenant_id)
    .bind(name)
    .bind(id)
    .bind(request.fetch_limit());
    fetch_page(conn, query, program_from_row, "programs", request, |p| {
        vec![p.display_name.clone(), p.id.clone()]
    })
    .await
}

// --- queues ---------------------------------------------------------------------------

const QUEUE_COLUMNS: &str = "id, tenant_id, program_id, display_name, accepted_channels, \
    assignment_method, max_open_per_agent, offer_timeout_us, logout_behavior, \
    offer_waiting_on_login, required_skills, priority, overflow_queue_id, overflow_after_us, \
    transfer_fallback, wrap_up_time_limit_us, create_time, update_time";

pub(crate) fn queue_from_row(row: &AnyRow) -> Result<Queue> {
    let channels: Vec<i32> = json_column(row, "accepted_channels")?;
    Ok(Queue {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        program_id: row.try_get("program_id")?,
        display_name: row.try_get("display_name")?,
        accepted_channels: channels.into_iter().filter_map(Channel::from_i32).collect(),
        assignment_method: enum_column(row, "assignment_method", AssignmentMethod::from_i32)?,
        max_open_per_agent: int_column(row, "max_open_per_agent")?,
        offer_timeout_us: row.try_get("offer_timeout_us")?,
        logout_behavior: enum_column(row, "logout_behavior", LogoutBehavior::from_i32)?,
        offer_waiting_on_login: int_column(row, "offer_waiting_on_login")? != 0,
        required_skills: json_column::<Vec<SkillRequirement>>(row, "required_skills")?,
        priority: int_column(row, "priority")?,
        overflow_queue_id: row.try_get("overflow_queue_id")?,
        overflow_after_us: row.try_get("overflow_after_us")?,
        transfer_fallback: enum_column(row, "transfer_fallback", TransferFallback::from_i32)?,
        wrap_up_time_limit_us: row.try_get("wrap_up_time_limit_us")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
    })
}

/// Binds a queue's id, tenant, program and settings as `$1` to `$16`, in the column order
/// of [`QUEUE_COLUMNS`]; the statements of [`insert_queue`] and [`update_queue`] share it.
fn bind_queue<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    queue: &Queue,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let channels: Vec<i32> = queue.accepted_channels.iter().map(|c| c.as_i32()).collect();
    query
        .bind(queue.id.clone())
        .bind(queue.tenant_id.clone())
        .bind(queue.program_id.clone())
        .bind(queue.display_name.clone())
        .bind(to_json(&channels))
        .bind(i64::from(queue.assignment_method.as_i32()))
        .bind(i64::from(queue.max_open_per_agent))
        .bind(queue.offer_timeout_us)
        .bind(i64::from(queue.logout_behavior.as_i32()))
        .bind(i64::from(queue.offer_waiting_on_login))
        .bind(to_json(&queue.required_skills))
        .bind(i64::from(queue.priority))
        .bind(queue.overflow_queue_id.clone())
        .bind(queue.overflow_after_us)
        .bind(i64::from(queue.transfer_fallback.as_i32()))
        .bind(queue.wrap_up_time_limit_us)
}

/// ALREADY_EXISTS for a queue whose name its program already has.
fn name_taken(queue: &Queue) -> impl FnOnce(sqlx::Error) -> Error {
    already_exists(format!(
        "a queue named \"{}\" already exists in program {}",
        queue.display_name, queue.program_id
    ))
}

/// Stores a new queue; ALREADY_EXISTS when its program has one of that name.
pub async fn insert_queue(tx: &mut Tx, queue: &Queue) -> Result<()> {
    let insert = sqlx::query(
        "INSERT INTO queues (id, tenant_id, program_id, display_name, accepted_channels, \
         assignment_method, max_open_per_agent, offer_timeout_us, logout_behavior, \
         offer_waiting_on_login, required_skills, priority, overflow_queue_id, \
         overflow_after_us, transfer_fallback, wrap_up_time_limit_us, rr_cursor, create_time, \
         update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, '', $17, $18)",
    );
    bind_queue(insert, queue)
        .bind(queue.create_time)
        .bind(queue.update_time)
        .execute(tx.conn())
        .await
        .map_err(name_taken(queue))?;
    tx.event(NewEvent::new(&queue.tenant_id, kind::QUEUE_CREATED).queue(&queue.id));
    Ok(())
}

/// Stores new settings of an existing queue (its id, tenant, program and creation time
/// stay); ALREADY_EXISTS when its program has another queue of that name.
pub async fn update_queue(tx: &mut Tx, queue: &Queue) -> Result<()> {
    let update = sqlx::query(
        "UPDATE queues SET display_name = $4, accepted_channels = $5, assignment_method = $6, \
         max_open_per_agent = $7, offer_timeout_us = $8, logout_behavior = $9, \
         offer_waiting_on_login = $10, required_skills = $11, priority = $12, \
         overflow_queue_id = $13, overflow_after_us = $14, transfer_fallback = $15, \
         wrap_up_time_limit_us = $16, update_time = $17 \
         WHERE id = $1 AND tenant_id = $2 AND program_id = $3",
    );
    bind_queue(update, queue)
        .bind(queue.update_time)
        .execute(tx.conn())
        .await
        .map_err(name_taken(queue))?;
    tx.event(NewEvent::new(&queue.tenant_id, kind::QUEUE_UPDATED).queue(&queue.id));
    Ok(())
}

/// How a queue read in a write transaction is locked against other changes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLock {
    /// For work entering the queue (an enqueue, an overflow move): the queue cannot be
    /// deleted until the transaction ends, while such work runs side by side.
    Held,
    /// For a change of the queue itself (an update, a delete): it waits for the work that
    /// holds the queue, and later work waits for it; a deleted queue is then found gone.
    Locked,
}

/// The tenant's queue `id`, locked as `lock` until the transaction ends (key-share or
/// update row locks on PostgreSQL; SQLite runs one write transaction at a time, so a plain
/// read is enough there).
pub async fn queue_for_write(
    tx: &mut Tx,
    tenant_id: &str,
    id: &str,
    lock: QueueLock,
) -> Result<Option<Queue>> {
    let clause = match (tx.dialect(), lock) {
        (Dialect::Sqlite, _) => "",
        (Dialect::Postgres, QueueLock::Held) => " FOR KEY SHARE",
        (Dialect::Postgres, QueueLock::Locked) => " FOR UPDATE",
    };
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant_id = $1 AND id = $2{clause}"
    )))
    .bind(tenant_id)
    .bind(id);
    fetch_optional(tx.conn(), query, queue_from_row).await
}

/// Makes the tenant's changes of overflow settings one at a time until the transaction
/// ends, so that two updates checked side by side cannot close a cycle between them (a
/// transaction-scoped advisory lock on PostgreSQL; SQLite has one writer already).
pub async fn serialize_overflow_changes(tx: &mut Tx, tenant_id: &str) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        sqlx::query(
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext('queue-overflow:' || $1))) AS l",
        )
        .bind(tenant_id)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// What still depends on a queue, each of which keeps it from being deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueUse {
    /// Conversations waiting in it (offered or not).
    pub waiting: i64,
    /// Conversations agents hold that they took from it.
    pub held: i64,
    /// Offers from it not yet answered (transfers and invitations included).
    pub pending_offers: i64,
    /// Names of the queues that overflow into it, at most a few.
    pub overflow_from: Vec<String>,
}

impl QueueUse {
    /// Whether nothing depends on the queue.
    pub fn is_empty(&self) -> bool {
        *self == QueueUse::default()
    }
}

/// Reads what depends on queue `id`. Within a transaction that holds it
/// [`QueueLock::Locked`] the answer holds
/// until commit.
pub async fn queue_use(tx: &mut Tx, tenant_id: &str, id: &str) -> Result<QueueUse> {
    let (waiting, held, pending_offers): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM waiting WHERE queue_id = $2 AND tenant_id = $1), \
         (SELECT COUNT(*) FROM assignments WHERE queue_id = $2 AND tenant_id = $1), \
         (SELECT COUNT(*) FROM offers WHERE queue_id = $2 AND tenant_id = $1 AND state = $3)",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(i64::from(crate::domain::OfferState::Pending.as_i32()))
    .fetch_one(tx.conn())
    .await?;
    let overflow_from: Vec<(String,)> = sqlx::query_as(
        "SELECT display_name FROM queues WHERE tenant_id = $1 AND overflow_queue_id = $2 \
         ORDER BY display_name LIMIT 5",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_all(tx.conn())
    .await?;
    Ok(QueueUse {
        waiting,
        held,
        pending_offers,
        overflow_from: overflow_from.into_iter().map(|(name,)| name).collect(),
    })
}

/// Deletes queue `id` and every agent's membership of it; each member's profile changes
/// (an event names each, so live views and the matcher's copy follow).
pub async fn delete_queue(tx: &mut Tx, tenant_id: &str, id: &str, now: i64) -> Result<()> {
    let members: Vec<(String,)> =
        sqlx::query_as("SELECT agent_id FROM agent_queues WHERE tenant_id = $1 AND queue_id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_all(tx.conn())
            .await?;
    sqlx::query("DELETE FROM agent_queues WHERE tenant_id = $1 AND queue_id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "UPDATE queue_memberships SET leave_time = $3 \
         WHERE tenant_id = $1 AND queue_id = $2 AND leave_time IS NULL",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(now)
    .execute(tx.conn())
    .await?;
    sqlx::query("DELETE FROM queues WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
    for (agent_id,) in &members {
        tx.event(
            NewEvent::new(tenant_id, kind::AGENT_QUEUE_REMOVED)
                .agent(agent_id)
                .queue(id),
        );
    }
    tx.event(NewEvent::new(tenant_id, kind::QUEUE_DELETED).queue(id));
    Ok(())
}

/// The tenant's queue `id`, if any.
pub async fn get_queue(
    conn: &mut AnyConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<Queue>> {
    get_by_id(conn, "queues", QUEUE_COLUMNS, tenant_id, id, queue_from_row).await
}

/// One page of the tenant's queues by name, of one program when `program_id` is not empty.
pub async fn list_queues(
    conn: &mut AnyConnection,
    tenant_id: &str,
    program_id: &str,
    request: &PageRequest,
) -> Result<(Vec<Queue>, String)> {
    let (name, id) = request.after_text_and_id()?;
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant_id = $1 \
         AND ($2 = '' OR program_id = $2) \
         AND (display_name > $3 OR (display_name = $3 AND id > $4)) \
         ORDER BY display_name, id LIMIT $5"
    )))
    .bind(tenant_id)
    .bind(program_id)
    .bind(name)
    .bind(id)
    .bind(request.fetch_limit());
    fetch_page(conn, query, queue_from_row, "queues", request, |q| {
        vec![q.display_name.clone(), q.id.clone()]
    })
    .await
}

/// The rotation cursor of a round-robin queue: the agent it last chose.
pub async fn round_robin_cursor(conn: &mut AnyConnection, queue_id: &str) -> Result<String> {
    let cursor: Option<String> = sqlx::query_scalar("SELECT rr_cursor FROM queues WHERE id = $1")
        .bind(queue_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(cursor.unwrap_or_default())
}

/// Live numbers of the tenant's queue `queue_id`.
pub async fn queue_state(
    conn: &mut AnyConnection,
    tenant_id: &str,
    queue_id: &str,
) -> Result<QueueState> {
    let (waiting, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(enqueue_time) FROM waiting WHERE tenant_id = $1 AND queue_id = $2",
    )
    .bind(tenant_id)
    .bind(queue_id)
    .fetch_one(&mut *conn)
    .await?;
    let (available, unavailable): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN a.presence = $3 THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN a.presence <> $3 AND a.presence <> $4 THEN 1 ELSE 0 END), 0) \
         FROM agent_queues m JOIN agents a ON a.tenant_id = m.tenant_id AND a.agent_id = m.agent_id \
         WHERE m.tenant_id = $1 AND m.queue_id = $2",
    )
    .bind(tenant_id)
    .bind(queue_id)
    .bind(i64::from(Presence::Available.as_i32()))
    .bind(i64::from(Presence::Offline.as_i32()))
    .fetch_one(&mut *conn)
    .await?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM offers WHERE tenant_id = $1 AND queue_id = $2 AND state = 1",
    )
    .bind(tenant_id)
    .bind(queue_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(QueueState {
        waiting: i32_or_max(waiting),
        oldest_enqueue_time: oldest,
        agents_available: i32_or_max(available),
        agents_unavailable: i32_or_max(unavailable),
        pending_offers: i32_or_max(pending),
    })
}

// --- capacity profiles ----------------------------------------------------------------

const CAPACITY_PROFILE_COLUMNS: &str =
    "id, tenant_id, display_name, total_units, channel_costs, excluded_channels";

/// A JSON list of channel numbers as channels, skipping numbers no longer known.
fn channels_column(row: &AnyRow, column: &str) -> Result<Vec<Channel>> {
    let numbers: Vec<i32> = json_column(row, column)?;
    Ok(numbers.into_iter().filter_map(Channel::from_i32).collect())
}

/// Channels as a JSON list of their numbers.
fn channels_json(channels: &[Channel]) -> String {
    to_json(&channels.iter().map(|c| c.as_i32()).collect::<Vec<_>>())
}

fn capacity_profile_from_row(row: &AnyRow) -> Result<CapacityProfile> {
    Ok(CapacityProfile {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        display_name: row.try_get("display_name")?,
        total_units: int_column(row, "total_units")?,
        channel_costs: json_column(row, "channel_costs")?,
        excluded_channels: channels_column(row, "excluded_channels")?,
    })
}

/// Stores a new capacity profile.
pub async fn insert_capacity_profile(
    tx: &mut Tx,
    profile: &CapacityProfile,
    create_time: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO capacity_profiles (id, tenant_id, display_name, total_units, channel_costs, \
         excluded_channels, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&profile.id)
    .bind(&profile.tenant_id)
    .bind(&profile.display_name)
    .bind(i64::from(profile.total_units))
    .bind(to_json(&profile.channel_costs))
    .bind(channels_json(&profile.excluded_channels))
    .bind(create_time)
    .execute(tx.conn())
    .await?;
    tx.event(NewEvent::new(
        &profile.tenant_id,
        kind::CAPACITY_PROFILE_CREATED,
    ));
    Ok(())
}

/// The tenant's capacity profile `id`, if any.
pub async fn get_capacity_profile(
    conn: &mut AnyConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<CapacityProfile>> {
    get_by_id(
        conn,
        "capacity_profiles",
        CAPACITY_PROFILE_COLUMNS,
        tenant_id,
        id,
        capacity_profile_from_row,
    )
    .await
}

/// One page of the tenant's capacity profiles by name.
pub async fn list_capacity_profiles(
    conn: &mut AnyConnection,
    tenant_id: &str,
    request: &PageRequest,
) -> Result<(Vec<CapacityProfile>, String)> {
    let (name, id) = request.after_text_and_id()?;
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CAPACITY_PROFILE_COLUMNS} FROM capacity_profiles \
         WHERE tenant_id = $1 AND (display_name > $2 OR (display_name = $2 AND id > $3)) \
         ORDER BY display_name, id LIMIT $4"
    )))
    .bind(tenant_id)
    .bind(name)
    .bind(id)
    .bind(request.fetch_limit());
    fetch_page(
        conn,
        query,
        capacity_profile_from_row,
        "capacity_profiles",
        request,
        |p| vec![p.display_name.clone(), p.id.clone()],
    )
    .await
}

// --- agents ---------------------------------------------------------------------------

const AGENT_COLUMNS: &str = "a.tenant_id, a.agent_id, a.display_name, a.capacity_profile_id, \
    a.capacity_total, a.channel_costs, a.excluded_channels, a.skills, a.presence, \
    a.presence_reason, a.presence_change_time, a.idle_since, a.login_time, a.capacity_used, \
    a.pending_units";

/// An agent row without its queue memberships.
fn agent_from_row(row: &AnyRow) -> Result<Agent> {
    Ok(Agent {
        tenant_id: row.try_get("tenant_id")?,
        agent_id: row.try_get("agent_id")?,
        display_name: row.try_get("display_name")?,
        capacity_profile_id: row.try_get("capacity_profile_id")?,
        capacity_total: int_column(row, "capacity_total")?,
        channel_costs: json_column(row, "channel_costs")?,
        excluded_channels: channels_column(row, "excluded_channels")?,
        queue_ids: Vec::new(),
        skills: json_column::<Vec<Skill>>(row, "skills")?,
        presence: enum_column(row, "presence", Presence::from_i32)?,
        presence_reason: row.try_get("presence_reason")?,
        presence_change_time: row.try_get("presence_change_time")?,
        idle_since: row.try_get("idle_since")?,
        login_time: row.try_get("login_time")?,
        capacity_used: int_column(row, "capacity_used")?,
        pending_units: int_column(row, "pending_units")?,
    })
}

async fn queue_ids_of(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT queue_id FROM agent_queues WHERE tenant_id = $1 AND agent_id = $2 ORDER BY queue_id",
    )
    .bind(tenant_id)
    .bind(agent_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Locks the tenant's agent row until the transaction ends (a row lock on PostgreSQL;
/// SQLite runs one write transaction at a time, so nothing to do there).
///
/// Lock order: every write that changes an agent's offers, units or presence takes this
/// lock first, before any offer, waiting or assignment row it touches. Two such writes then
/// queue on the agent instead of each holding a row the other needs (an offer timing out
/// while the agent accepts another, a customer leaving while the offer expires), which
/// PostgreSQL could only break by failing one of them as a deadlock. The matcher's claim
/// (`routing::Locks::WithoutWaiting`) is the one exception: it takes the conversation
/// first, but only rows no one holds, so it never waits and cannot close a cycle.
pub async fn lock_agent(tx: &mut Tx, tenant_id: &str, agent_id: &str) -> Result<()> {
    lock_agents(tx, tenant_id, [agent_id]).await
}

/// How long a lock taken out of order (see [`lock_agents`]) may wait: well under
/// PostgreSQL's deadlock check (one second by default), so that a cycle ends here as a
/// conflict the caller retries, and well over the milliseconds an agent's row is held.
const OUT_OF_ORDER_LOCK_WAIT: &str = "500ms";

/// Locks several agents' rows as [`lock_agent`] does, in agent id order (byte order, as
/// Rust sorts strings) so that two writes locking overlapping sets cannot each wait for the
/// other; one statement for them all. Rows the transaction holds already are skipped.
///
/// A transaction that learns of an agent only after locking others (a customer leaves
/// while a newer offer is made to another agent) may need one that sorts below an agent
/// it holds: that lock, out of order, waits at most [`OUT_OF_ORDER_LOCK_WAIT`], then fails
/// as a conflict (ABORTED, retry), where waiting on could close a cycle with a write taking
/// the same agents in order (an expiry batch did, in the replicas test).
pub async fn lock_agents<'a>(
    tx: &mut Tx,
    tenant_id: &str,
    agent_ids: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    if tx.dialect() != Dialect::Postgres {
        return Ok(());
    }
    let (ordered, out_of_order) = tx.note_agents_locked(tenant_id, agent_ids);
    if ordered.is_empty() {
        return Ok(());
    }
    if out_of_order {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{OUT_OF_ORDER_LOCK_WAIT}'"
        )))
        .execute(tx.conn())
        .await?;
    }
    // PostgreSQL locks the rows as the sorted result is read, so in this order.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT agent_id FROM agents WHERE tenant_id = $1 AND agent_id IN ({}) \
         ORDER BY agent_id COLLATE \"C\" FOR NO KEY UPDATE",
        placeholders(2, ordered.len())
    )))
    .bind(tenant_id);
    for agent_id in ordered {
        query = query.bind(agent_id);
    }
    query.execute(tx.conn()).await?;
    if out_of_order {
        sqlx::query("SET LOCAL lock_timeout TO DEFAULT")
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

/// The tenant's agents among `agent_ids`, without their queue memberships.
pub async fn agents_by_id(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_ids: &[&str],
) -> Result<Vec<Agent>> {
    if agent_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM agents a WHERE a.tenant_id = $1 AND a.agent_id IN ({})",
        placeholders(2, agent_ids.len())
    )))
    .bind(tenant_id);
    for agent_id in agent_ids {
        query = query.bind(*agent_id);
    }
    fetch_all(conn, query, agent_from_row).await
}

/// The tenant's agent `agent_id`, locked first as [`lock_agent`] does: the read a write of
/// the agent's offers, units or presence starts from.
pub async fn agent_for_write(
    tx: &mut Tx,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Option<Agent>> {
    lock_agent(tx, tenant_id, agent_id).await?;
    get_agent(tx.conn(), tenant_id, agent_id).await
}

/// The tenant's agent `agent_id` with its queues, if it has a profile.
pub async fn get_agent(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Option<Agent>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM agents a WHERE a.tenant_id = $1 AND a.agent_id = $2"
    )))
    .bind(tenant_id)
    .bind(agent_id);
    let Some(mut agent) = fetch_optional(conn, query, agent_from_row).await? else {
        return Ok(None);
    };
    agent.queue_ids = queue_ids_of(conn, tenant_id, agent_id).await?;
    Ok(Some(agent))
}

/// Member agents of a queue, with their queues left empty.
pub async fn queue_members(
    conn: &mut AnyConnection,
    tenant_id: &str,
    queue_id: &str,
) -> Result<Vec<Agent>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM agent_queues m JOIN agents a \
         ON a.tenant_id = m.tenant_id AND a.agent_id = m.agent_id \
         WHERE m.tenant_id = $1 AND m.queue_id = $2 ORDER BY a.agent_id"
    )))
    .bind(tenant_id)
    .bind(queue_id);
    fetch_all(conn, query, agent_from_row).await
}

/// One page of the tenant's agents by display name, of one queue when `queue_id` is not
/// empty, with their queues.
pub async fn list_agents(
    conn: &mut AnyConnection,
    tenant_id: &str,
    queue_id: &str,
    request: &PageRequest,
) -> Result<(Vec<Agent>, String)> {
    let (name, id) = request.after_text_and_id()?;
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM agents a WHERE a.tenant_id = $1 \
         AND ($2 = '' OR EXISTS (SELECT 1 FROM agent_queues m WHERE m.tenant_id = a.tenant_id \
              AND m.agent_id = a.agent_id AND m.queue_id = $2)) \
         AND (a.display_name > $3 OR (a.display_name = $3 AND a.agent_id > $4)) \
         ORDER BY a.display_name, a.agent_id LIMIT $5"
    )))
    .bind(tenant_id)
    .bind(queue_id)
    .bind(name)
    .bind(id)
    .bind(request.fetch_limit());
    let (mut agents, next_page_token) =
        fetch_page(conn, query, agent_from_row, "agents", request, |a| {
            vec![a.display_name.clone(), a.agent_id.clone()]
        })
        .await?;
    for agent in &mut agents {
        agent.queue_ids = queue_ids_of(conn, tenant_id, &agent.agent_id).await?;
    }
    Ok((agents, next_page_token))
}

/// What an administrator sets of an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentProfileInput {
    /// Tenant.
    pub tenant_id: String,
    /// The agent's user id.
    pub agent_id: String,
    /// The agent's name as the directory holds it (already masked and bounded).
    pub display_name: String,
    /// The capacity profile (already checked to exist).
    pub capacity: CapacityProfile,
    /// Member queues (already checked to exist), without duplicates.
    pub queue_ids: Vec<String>,
    /// Skills.
    pub skills: Vec<Skill>,
}

/// Creates or replaces an agent's profile, keeping its live state (presence, capacity in
/// use), with the display name the directory gave for it just before. A new agent starts
/// Offline.
pub async fn upsert_agent_profile(
    tx: &mut Tx,
    input: &AgentProfileInput,
    now: i64,
) -> Result<Agent> {
    let before = agent_for_write(tx, &input.tenant_id, &input.agent_id).await?;
    let updated = sqlx::query(
        "UPDATE agents SET capacity_profile_id = $3, capacity_total = $4, channel_costs = $5, \
         excluded_channels = $6, skills = $7, update_time = $8, display_name = $9 \
         WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(&input.tenant_id)
    .bind(&input.agent_id)
    .bind(&input.capacity.id)
    .bind(i64::from(input.capacity.total_units))
    .bind(to_json(&input.capacity.channel_costs))
    .bind(channels_json(&input.capacity.excluded_channels))
    .bind(to_json(&input.skills))
    .bind(now)
    .bind(&input.display_name)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if updated == 0 {
        sqlx::query(
            "INSERT INTO agents (tenant_id, agent_id, display_name, capacity_profile_id, \
             capacity_total, channel_costs, excluded_channels, skills, team_ids, presence, \
             presence_reason, presence_change_time, idle_since, capacity_used, pending_units, \
             create_time, update_time) \
             VALUES ($1, $2, $10, $3, $4, $5, $6, $7, '[]', $8, '', $9, $9, 0, 0, $9, $9)",
        )
        .bind(&input.tenant_id)
        .bind(&input.agent_id)
        .bind(&input.capacity.id)
        .bind(i64::from(input.capacity.total_units))
        .bind(to_json(&input.capacity.channel_costs))
        .bind(channels_json(&input.capacity.excluded_channels))
        .bind(to_json(&input.skills))
        .bind(i64::from(Presence::Offline.as_i32()))
        .bind(now)
        .bind(&input.display_name)
        .execute(tx.conn())
        .await?;
    }
    sqlx::query("DELETE FROM agent_queues WHERE tenant_id = $1 AND agent_id = $2")
        .bind(&input.tenant_id)
        .bind(&input.agent_id)
        .execute(tx.conn())
        .await?;
    for queue_id in &input.queue_ids {
        sqlx::query("INSERT INTO agent_queues (tenant_id, agent_id, queue_id) VALUES ($1, $2, $3)")
            .bind(&input.tenant_id)
            .bind(&input.agent_id)
            .bind(queue_id)
            .execute(tx.conn())
            .await?;
    }
    let was_in = before
        .as_ref()
        .map_or(&[][..], |agent| &agent.queue_ids[..]);
    record_membership_changes(tx, input, was_in, now).await?;
    let agent = get_agent(tx.conn(), &input.tenant_id, &input.agent_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("agent {} vanished", input.agent_id)))?;
    let load = (agent.capacity_used, agent.capacity_total);
    tx.event(
        NewEvent::new(&input.tenant_id, kind::AGENT_PROFILE_SET)
            .agent(&input.agent_id)
            .load(load.0, load.1),
    );
    // A smaller or larger capacity can fill an Available agent up, or free it.
    let change = before.and_then(|before| {
        after_capacity_change(
            agent.presence,
            (before.capacity_used, before.capacity_total),
            load,
        )
    });
    if let Some(change) = change {
        tx.event(
            NewEvent::new(&input.tenant_id, kind::PRESENCE_CHANGED)
                .agent(&input.agent_id)
                .presence(change)
                .load(load.0, load.1),
        );
    }
    Ok(agent)
}

/// Closes the membership periods of the queues `input` leaves and opens one for each it
/// joins, of the agent that was in `was_in` until `now`.
async fn record_membership_changes(
    tx: &mut Tx,
    input: &AgentProfileInput,
    was_in: &[String],
    now: i64,
) -> Result<()> {
    for left in was_in.iter().filter(|q| !input.queue_ids.contains(q)) {
        sqlx::query(
            "UPDATE queue_memberships SET leave_time = $4 WHERE tenant_id = $1 \
             AND agent_id = $2 AND queue_id = $3 AND leave_time IS NULL",
        )
        .bind(&input.tenant_id)
        .bind(&input.agent_id)
        .bind(left)
        .bind(now)
        .execute(tx.conn())
        .await?;
    }
    for joined in input.queue_ids.iter().filter(|q| !was_in.contains(q)) {
        sqlx::query(
            "INSERT INTO queue_memberships (tenant_id, agent_id, queue_id, join_time, \
             leave_time) VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&input.tenant_id)
        .bind(&input.agent_id)
        .bind(joined)
        .bind(now)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// When `agent_id` was a member of which queue, oldest first.
pub async fn membership_periods(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Vec<MembershipPeriod>> {
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT queue_id, join_time, leave_time FROM queue_memberships \
         WHERE tenant_id = $1 AND agent_id = $2 ORDER BY join_time",
    )
    .bind(tenant_id)
    .bind(agent_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(queue_id, join_time, leave_time)| MembershipPeriod {
            queue_id,
            join_time,
            leave_time,
        })
        .collect())
}

/// Stores `display_name` (the directory's, from the caller's signed identity) as the
/// agent's name when it differs from the stored one; returns whether it changed. An agent
/// without a profile is left alone.
pub async fn refresh_display_name(
    store: &crate::store::Store,
    tenant_id: &str,
    agent_id: &str,
    display_name: &str,
) -> Result<bool> {
    let current: Option<String> = {
        let mut conn = store.conn().await?;
        sqlx::query_scalar("SELECT display_name FROM agents WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant_id)
            .bind(agent_id)
            .fetch_optional(&mut *conn)
            .await?
    };
    if current.is_none_or(|current| current == display_name) {
        return Ok(false);
    }
    let mut tx = store.begin().await?;
    let changed = crate::store::changes_one_row(
        tx.conn(),
        sqlx::query(
            "UPDATE agents SET display_name = $3 \
             WHERE tenant_id = $1 AND agent_id = $2 AND display_name <> $3",
        )
        .bind(tenant_id)
        .bind(agent_id)
        .bind(display_name),
    )
    .await?;
    if changed {
        tx.event(NewEvent::new(tenant_id, kind::AGENT_RENAMED).agent(agent_id));
    }
    tx.commit().await?;
    Ok(changed)
}

/// Every agent of the tenant by display name, or only the members of `queue_id` when it is
/// not empty, with their queues: the snapshot of a dashboard stream.
pub async fn all_agents(
    conn: &mut AnyConnection,
    tenant_id: &str,
    queue_id: &str,
) -> Result<Vec<Agent>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM agents a WHERE a.tenant_id = $1 \
         AND ($2 = '' OR EXISTS (SELECT 1 FROM agent_queues m WHERE m.tenant_id = a.tenant_id \
              AND m.agent_id = a.agent_id AND m.queue_id = $2)) \
         ORDER BY a.display_name, a.agent_id"
    )))
    .bind(tenant_id)
    .bind(queue_id);
    let mut agents = fetch_all(conn, query, agent_from_row).await?;
    for agent in &mut agents {
        agent.queue_ids = queue_ids_of(conn, tenant_id, &agent.agent_id).await?;
    }
    Ok(agents)
}

/// Conversations an agent holds and offers pending for them.
pub async fn agent_load(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
) -> Result<(i32, i32)> {
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM assignments WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(tenant_id)
    .bind(agent_id)
    .fetch_one(&mut *conn)
    .await?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM offers WHERE tenant_id = $1 AND agent_id = $2 AND state = 1",
    )
    .bind(tenant_id)
    .bind(agent_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok((i32_or_max(open), i32_or_max(pending)))
}

/// An agent with its open conversations and pending offers, if it has a profile.
pub async fn agent_with_load(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Option<(Agent, i32, i32)>> {
    let Some(agent) = get_agent(conn, tenant_id, agent_id).await? else {
        return Ok(None);
    };
    let (open, pending) = agent_load(conn, tenant_id, agent_id).await?;
    Ok(Some((agent, open, pending)))
}

/// Every queue of the tenant's program `program_id`.
pub async fn program_queues(
    conn: &mut AnyConnection,
    tenant_id: &str,
    program_id: &str,
) -> Result<Vec<Queue>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant_id = $1 AND program_id = $2 \
         ORDER BY display_name, id"
    )))
    .bind(tenant_id)
    .bind(program_id);
    fetch_all(conn, query, queue_from_row).await
}
