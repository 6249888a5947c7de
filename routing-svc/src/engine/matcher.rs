//! The matcher: offers waiting conversations to agents and times out unanswered offers.
//!
//! It runs when woken (enqueue, presence change, capacity release, offer resolution), on
//! a short tick for offer deadlines, and on a slower tick that routes the whole backlog
//! anyway, which picks up changes made through another replica. Every offer is a
//! conditional claim in the store, so replicas sharing one database never offer one
//! conversation twice or promise the same units twice.

use std::collections::HashMap;
use std::time::Instant;

use switchboard_server_kit::db::now_micros;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::domain::matching::{CandidateView, decide};
use crate::domain::{Agent, Queue, RoutingDecision, WaitingItem};
use crate::engine::Context;
use crate::error::Result;
use crate::store::routing::{self, OfferPlan};
use crate::store::{Store, catalog};

/// Waiting items routed per pass; the rest wait for the next pass.
const BATCH: i64 = 500;
/// Tries per waiting item and pass when another change wins the race.
const RETRIES: usize = 3;

/// Runs the matcher until `shutdown`.
pub async fn run(context: Context, shutdown: CancellationToken) {
    let timings = context.timings;
    let mut tick = tokio::time::interval(timings.matcher_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full_pass: Option<Instant> = None;
    loop {
        let mut woken = false;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = context.matcher.notified() => woken = true,
            _ = tick.tick() => {}
        }
        match expire_due(&context.store, &shutdown).await {
            Ok(expired) => woken |= expired > 0,
            Err(err) => warn!(error = %err, "expiring offers failed"),
        }
        let stale = last_full_pass.is_none_or(|at| at.elapsed() >= timings.rematch_interval);
        if woken || stale {
            last_full_pass = Some(Instant::now());
            if let Err(err) = match_waiting(&context.store, &shutdown).await {
                warn!(error = %err, "matching pass failed");
            }
        }
    }
    debug!("matcher stopped");
}

/// Times out every pending offer past its deadline; returns how many.
pub async fn expire_due(store: &Store, shutdown: &CancellationToken) -> Result<usize> {
    let due = {
        let mut conn = store.conn().await?;
        routing::due_offers(&mut conn, now_micros(), 100).await?
    };
    let mut expired = 0;
    for (tenant_id, offer_id) in due {
        if shutdown.is_cancelled() {
            break;
        }
        let mut tx = store.begin().await?;
        if routing::expire_offer(&mut tx, &tenant_id, &offer_id, now_micros()).await? {
            tx.commit().await?;
            expired += 1;
            info!(offer_id = %offer_id, "offer timed out, agent in RONA");
        } else {
            tx.rollback().await?;
        }
    }
    Ok(expired)
}

/// What a pass knows of one queue; dropped after every offer, since an offer changes
/// the members' free units and load.
struct QueueSnapshot {
    queue: Queue,
    members: Vec<Agent>,
    load: HashMap<String, i32>,
    cursor: String,
}

async fn snapshot(store: &Store, item: &WaitingItem) -> Result<Option<QueueSnapshot>> {
    let mut conn = store.conn().await?;
    let Some(queue) = catalog::get_queue(&mut conn, &item.tenant_id, &item.queue_id).await? else {
        return Ok(None);
    };
    let members = catalog::queue_members(&mut conn, &item.tenant_id, &item.queue_id).await?;
    let load = if queue.max_open_per_agent > 0 {
        routing::queue_load(&mut conn, &item.queue_id).await?
    } else {
        HashMap::new()
    };
    let cursor = catalog::round_robin_cursor(&mut conn, &item.queue_id).await?;
    Ok(Some(QueueSnapshot {
        queue,
        members,
        load,
        cursor,
    }))
}

/// Routes the backlog once: higher queue priority first, then oldest first. Returns the
/// number of offers made.
pub async fn match_waiting(store: &Store, shutdown: &CancellationToken) -> Result<usize> {
    let items = {
        let mut conn = store.conn().await?;
        routing::matchable(&mut conn, BATCH).await?
    };
    let mut snapshots: HashMap<String, Option<QueueSnapshot>> = HashMap::new();
    let mut offers = 0;
    for item in &items {
        // A lost race means the snapshot was stale: reread and try the item again, so
        // that a younger conversation does not overtake it.
        for _ in 0..RETRIES {
            if shutdown.is_cancelled() {
                return Ok(offers);
            }
            if !snapshots.contains_key(&item.queue_id) {
                match snapshot(store, item).await {
                    Ok(snapshot) => {
                        snapshots.insert(item.queue_id.clone(), snapshot);
                    }
                    Err(err) => {
                        warn!(queue_id = %item.queue_id, error = %err, "reading a queue failed");
                        break;
                    }
                }
            }
            let Some(Some(snapshot)) = snapshots.get(&item.queue_id) else {
                break;
            };
            match route_one(store, item, snapshot).await {
                Ok(Routed::Offered) => {
                    offers += 1;
                    snapshots.clear();
                    break;
                }
                Ok(Routed::NobodyEligible) => break,
                Ok(Routed::LostRace) => {
                    snapshots.remove(&item.queue_id);
                }
                Err(err) => {
                    warn!(
                        conversation_id = %item.conversation_id,
                        error = %err,
                        "routing a conversation failed"
                    );
                    break;
                }
            }
        }
    }
    Ok(offers)
}

/// What became of one waiting conversation in a pass.
enum Routed {
    /// An offer was made.
    Offered,
    /// Nobody could take it now.
    NobodyEligible,
    /// Another change won the race (the snapshot was stale); the next try rereads.
    LostRace,
}

/// Decides who gets one waiting conversation and makes the offer.
async fn route_one(store: &Store, item: &WaitingItem, snapshot: &QueueSnapshot) -> Result<Routed> {
    let excluded = {
        let mut conn = store.conn().await?;
        routing::excluded_agents(&mut conn, &item.conversation_id, item.entered_time).await?
    };
    let views: Vec<CandidateView<'_>> = snapshot
        .members
        .iter()
        .map(|agent| CandidateView {
            agent,
            open_in_queue: snapshot.load.get(&agent.agent_id).copied().unwrap_or(0),
            already_offered: excluded.contains(&agent.agent_id),
        })
        .collect();
    let queue = &snapshot.queue;
    let decision = decide(queue, item.channel, &views, &snapshot.cursor);
    let now = now_micros();
    let Some((agent_id, units)) = decision.chosen else {
        record_no_offer(store, item, queue, decision.candidates, now).await?;
        return Ok(Routed::NobodyEligible);
    };
    let plan = OfferPlan {
        item,
        queue,
        agent_id: &agent_id,
        units,
        candidates: decision.candidates,
        offer_id: uuid::Uuid::new_v4().to_string(),
    };
    let mut tx = store.begin().await?;
    match routing::create_offer(&mut tx, &plan, now).await? {
        Some(offer) => {
            tx.commit().await?;
            info!(
                conversation_id = %offer.conversation_id,
                agent_id = %offer.agent_id,
                offer_id = %offer.id,
                queue_id = %offer.queue_id,
                "offer made"
            );
            Ok(Routed::Offered)
        }
        None => {
            tx.rollback().await?;
            debug!(conversation_id = %item.conversation_id, "lost an offer race, will retry");
            Ok(Routed::LostRace)
        }
    }
}

/// Records that nobody could be offered the conversation, unless the last record already
/// said the same.
async fn record_no_offer(
    store: &Store,
    item: &WaitingItem,
    queue: &Queue,
    candidates: Vec<crate::domain::Candidate>,
    now: i64,
) -> Result<()> {
    let summary = routing::decision_summary(&candidates);
    {
        let mut conn = store.conn().await?;
        if let Some((None, last)) =
            routing::last_decision(&mut conn, &item.tenant_id, &item.conversation_id).await?
            && last == summary
        {
            return Ok(());
        }
    }
    let mut tx = store.begin().await?;
    routing::insert_decision(
        &mut tx,
        &RoutingDecision {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: item.tenant_id.clone(),
            offer_id: None,
            conversation_id: item.conversation_id.clone(),
            queue_id: item.queue_id.clone(),
            assignment_method: queue.assignment_method,
            candidates,
            decide_time: now,
        },
    )
    .await?;
    tx.commit().await
}
