//! The matcher: offers waiting conversations to agents and moves conversations that waited
//! too long to their queue's overflow queue (unanswered offers time out in
//! [`crate::engine::expiry`]).
//!
//! It runs when woken (enqueue, presence change, capacity release, offer resolution), on
//! a short tick for overflows (each one indexed read when nothing is
//! due), and on a slower tick that routes the whole backlog anyway, which picks up changes
//! made through another replica. Every offer is a
//! conditional claim in the store, so replicas sharing one database never offer one
//! conversation twice or promise the same units twice; a claim skips a conversation
//! another replica is offering at that moment rather than waiting for it.
//!
//! A pass goes queue by queue, so that a backlog nobody can take in one queue never
//! keeps another queue's agents idle. Each queue is read once (settings, load, rotation;
//! its members come from [`Members`], kept in step with the event log between passes)
//! and kept in step in memory as offers are made, ranked once per channel
//! ([`Roster`]); a queue whose members can take nothing now has its conversations left
//! alone until the end of the pass, when only the "nobody eligible" records are brought
//! up to date, a bounded slice at a time. A pass that offered a whole walk's worth in a
//! queue is followed by another at once, so a large backlog drains pass after pass.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use switchboard_server_kit::db::now_micros;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::domain::matching::{Decision, check_eligible, decide};
use crate::domain::roster::Roster;
use crate::domain::{Channel, Queue, RoutingDecision, WaitingItem};
use crate::engine::Context;
use crate::engine::members::Members;
use crate::error::Result;
use crate::store::routing::{
    self, Locks, Lost, Matchable, OfferPlan, Overflowed, QueuePosition, WalkOrder,
};
use crate::store::{Store, catalog};

/// Conversations of one queue looked at per pass; the rest wait for the next pass.
const WALK: i64 = 200;
/// Tries per waiting item and pass when another change wins the race.
const RETRIES: usize = 3;
/// Overflows read at a time.
const DUE_BATCH: i64 = 100;
/// "Nobody eligible" records written per transaction.
const RECORDS_PER_TRANSACTION: usize = 25;

/// Runs the matcher until `shutdown`.
pub async fn run(context: Context, shutdown: CancellationToken) {
    let timings = context.timings;
    let mut tick = tokio::time::interval(timings.matcher_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full_pass: Option<Instant> = None;
    let mut matcher = Matcher::default();
    loop {
        let mut woken = false;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = context.matcher.notified() => woken = true,
            _ = tick.tick() => {}
        }
        // Before the pass, so that a conversation that waited too long moves before this
        // pass offers it in the queue it waited too long in.
        match overflow_due(&context.store, &shutdown).await {
            Ok(0) => {}
            Ok(_) => {
                woken = true;
                context.dispatcher.wake();
            }
            Err(err) => warn!(error = %err, "moving overflowing conversations failed"),
        }
        let stale = last_full_pass.is_none_or(|at| at.elapsed() >= timings.rematch_interval);
        if woken || stale {
            if stale {
                // The full pass reads every queue afresh: a safety net for the copy.
                matcher.forget_members();
            }
            last_full_pass = Some(Instant::now());
            match matcher.pass(&context.store, &shutdown).await {
                Ok(0) => {}
                // The new offers' deadlines may be nearer than the one expiry waits for.
                Ok(_) => context.wake_expiry(),
                Err(err) => warn!(error = %err, "matching pass failed"),
            }
            // A backlog larger than a walk is offered pass after pass, not a walk per tick;
            // deadlines and overflows are still looked at between passes.
            if matcher.backlog_left {
                context.wake_matcher();
            }
        }
    }
    debug!("matcher stopped");
}

/// Moves every conversation due to overflow (not under offer) to its queue's overflow
/// queue, or leaves it where it is for good when it cannot go; returns how many moved.
pub async fn overflow_due(store: &Store, shutdown: &CancellationToken) -> Result<usize> {
    // Like expiry: what falls due while this runs is left to the next tick.
    let until = now_micros();
    let mut moved = 0;
    loop {
        let due = {
            let mut conn = store.conn().await?;
            routing::due_overflows(&mut conn, until, DUE_BATCH).await?
        };
        let mut progressed = false;
        for (tenant_id, conversation_id) in &due {
            if shutdown.is_cancelled() {
                return Ok(moved);
            }
            let mut tx = store.begin().await?;
            match routing::overflow_waiting(&mut tx, tenant_id, conversation_id, now_micros())
                .await?
            {
                Overflowed::Moved { from, to, waited } => {
                    tx.commit().await?;
                    moved += 1;
                    progressed = true;
                    info!(
                        conversation_id = %conversation_id,
                        from_queue = %from,
                        queue_id = %to,
                        waited_ms = waited / 1_000,
                        "conversation overflowed to another queue"
                    );
                }
                Overflowed::Stayed { queue_id, why } => {
                    tx.commit().await?;
                    progressed = true;
                    warn!(
                        conversation_id = %conversation_id,
                        queue_id = %queue_id,
                        why = %why,
                        "conversation due to overflow stays in its queue"
                    );
                }
                Overflowed::Untouched => tx.rollback().await?,
            }
        }
        // A batch another replica handled entirely is theirs to finish.
        if due.len() < usize::try_from(DUE_BATCH).unwrap_or(usize::MAX) || !progressed {
            return Ok(moved);
        }
    }
}

/// Routes the backlog once with nothing remembered from earlier passes; returns the
/// number of offers made.
pub async fn match_waiting(store: &Store, shutdown: &CancellationToken) -> Result<usize> {
    Matcher::default().pass(store, shutdown).await
}

/// What the matcher keeps between passes: for each queue whose members can take nothing,
/// how far its "nobody eligible" records are up to date, so that a large backlog there
/// is gone through once per change of its members rather than on every pass.
#[derive(Debug, Default)]
pub struct Matcher {
    recorded: HashMap<String, Recorded>,
    members: Members,
    /// Whether the last pass stopped at the walk's limit in a queue it was offering from.
    backlog_left: bool,
}

/// Decisions recorded in a queue nobody could serve, up to a position.
#[derive(Debug)]
struct Recorded {
    /// What the members' state decided for each channel when recorded.
    signature: String,
    /// The last conversation recorded, by entry into the queue.
    through: QueuePosition,
}

impl Matcher {
    /// Routes the backlog once: queues by priority (then by their oldest conversation),
    /// each queue's conversations oldest first. Returns the number of offers made.
    pub async fn pass(&mut self, store: &Store, shutdown: &CancellationToken) -> Result<usize> {
        self.members.catch_up(store).await?;
        let queues = {
            let mut conn = store.conn().await?;
            routing::queues_to_match(&mut conn).await?
        };
        let listed: HashSet<&str> = queues.iter().map(|(_, id)| id.as_str()).collect();
        self.recorded.retain(|id, _| listed.contains(id.as_str()));
        let mut offers = 0;
        let mut unserved = Vec::new();
        self.backlog_left = false;
        for (tenant_id, queue_id) in &queues {
            if shutdown.is_cancelled() {
                return Ok(offers);
            }
            let mut snapshot = match snapshot(store, &mut self.members, tenant_id, queue_id).await {
                Ok(Some(snapshot)) => snapshot,
                Ok(None) => continue,
                Err(err) => {
                    warn!(queue_id = %queue_id, error = %err, "reading a queue failed");
                    continue;
                }
            };
            if !snapshot.can_offer() {
                unserved.push(snapshot);
                continue;
            }
            self.recorded.remove(queue_id);
            let started = Instant::now();
            match walk(store, snapshot, WalkOrder::Waited, None, shutdown).await {
                Ok(walked) => {
                    debug!(
                        queue_id = %queue_id,
                        offers = walked.offers,
                        elapsed_us = started.elapsed().as_micros(),
                        "queue walked"
                    );
                    offers += walked.offers;
                    self.backlog_left |= walked.more;
                    if walked.raced {
                        self.members.forget(queue_id);
                    }
                }
                Err(err) => warn!(queue_id = %queue_id, error = %err, "matching a queue failed"),
            }
        }
        // Only records remain to be written: after every offer of the pass, and only while
        // no offer waits to be timed out, as records can wait and time-outs cannot (the one
        // SQLite writer would take turns between them). A queue left out is recorded on a
        // later pass, from where it was left.
        for snapshot in unserved {
            if shutdown.is_cancelled() || offers_due(store).await? {
                break;
            }
            let queue_id = snapshot.queue.id.clone();
            if let Err(err) = self.record_unserved(store, snapshot, shutdown).await {
                warn!(queue_id = %queue_id, error = %err, "recording decisions failed");
            }
        }
        Ok(offers)
    }

    /// Forgets the members kept between passes: the next pass reads every queue again.
    pub fn forget_members(&mut self) {
        self.members.clear();
    }

    /// Brings the decisions of a queue nobody can serve up to date, one slice per pass,
    /// resuming where the last pass stopped while its members' state is unchanged.
    async fn record_unserved(
        &mut self,
        store: &Store,
        snapshot: QueueSnapshot,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let queue_id = snapshot.queue.id.clone();
        let signature = snapshot.signature();
        let after = self
            .recorded
            .get(&queue_id)
            .filter(|recorded| recorded.signature == signature)
            .map(|recorded| recorded.through.clone());
        // By entry into the queue, so that a conversation moved in later (keeping its
        // earlier wait) is still ahead of where the last pass stopped.
        let walked = walk(
            store,
            snapshot,
            WalkOrder::Entered,
            after.as_ref(),
            shutdown,
        )
        .await?;
        if let Some(through) = walked.last {
            self.recorded
                .insert(queue_id, Recorded { signature, through });
        }
        Ok(())
    }
}

/// What a pass knows of one queue, kept in step with the offers it makes.
struct QueueSnapshot {
    queue: Queue,
    roster: Roster,
}

async fn snapshot(
    store: &Store,
    members: &mut Members,
    tenant_id: &str,
    queue_id: &str,
) -> Result<Option<QueueSnapshot>> {
    let mut conn = store.conn().await?;
    let Some(queue) = catalog::get_queue(&mut conn, tenant_id, queue_id).await? else {
        return Ok(None);
    };
    let members = members.of(&mut conn, tenant_id, queue_id).await?;
    let load = if queue.max_open_per_agent > 0 {
        routing::queue_load(&mut conn, queue_id).await?
    } else {
        HashMap::new()
    };
    let cursor = catalog::round_robin_cursor(&mut conn, queue_id).await?;
    Ok(Some(QueueSnapshot {
        queue,
        roster: Roster::new(members, &load, cursor),
    }))
}

impl QueueSnapshot {
    /// Whether some member could be offered a conversation of some channel now.
    fn can_offer(&mut self) -> bool {
        self.roster.can_offer(&self.queue)
    }

    /// The decision for a conversation on `channel` that entered the queue at `entered`.
    fn decide(&mut self, channel: Channel, excluded: &HashSet<String>, entered: i64) -> Decision {
        self.roster
            .decide(&self.queue, channel, excluded, Some(entered))
    }

    /// How far back the queue's conversations may be offered to some member now. In a
    /// queue that keeps its backlog from agents who log in, one that entered before the
    /// login of every member who could take something is offered to nobody: a walk skips
    /// those, or a backlog of them would fill every walk and keep newer conversations from
    /// agents who just logged in. `i64::MIN` when nothing is skipped.
    fn offerable_since(&self) -> i64 {
        if self.queue.offer_waiting_on_login {
            return i64::MIN;
        }
        self.roster
            .views(&self.queue, &HashSet::new(), None)
            .iter()
            .filter(|view| {
                Channel::ALL
                    .iter()
                    .any(|&channel| check_eligible(&self.queue, channel, view).is_ok())
            })
            .map(|view| view.agent.login_time)
            .min()
            .unwrap_or(i64::MIN)
    }

    /// The decision for a conversation of each channel nobody was offered: when it is
    /// unchanged, so is every recorded decision of a queue nobody can serve.
    fn signature(&self) -> String {
        let views = self.roster.views(&self.queue, &HashSet::new(), None);
        Channel::ALL
            .iter()
            .map(|&channel| {
                let decision = decide(&self.queue, channel, &views, self.roster.cursor());
                routing::decision_summary(&decision.candidates, &decision.omitted)
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Mirrors what the store did on an offer to `agent_id`.
    fn note_offer(&mut self, agent_id: &str, units: i32, now: i64) {
        self.roster.note_offer(&self.queue, agent_id, units, now);
    }
}

/// What one walk through a queue did.
struct Walked {
    offers: usize,
    /// Whether an offer lost a race: the members kept for the queue may be stale.
    raced: bool,
    /// The last conversation looked at.
    last: Option<QueuePosition>,
    /// Whether it offered and went through a whole page: more may be offered at once.
    more: bool,
}

/// Routes up to [`WALK`] conversations of the snapshot's queue after `after` in `order`,
/// and records the decisions that made no offer. Stops early once nobody in the
/// queue can take anything, unless nobody could to begin with (then it only records).
async fn walk(
    store: &Store,
    mut snapshot: QueueSnapshot,
    order: WalkOrder,
    after: Option<&QueuePosition>,
    shutdown: &CancellationToken,
) -> Result<Walked> {
    let queue_id = snapshot.queue.id.clone();
    let (page, mut excluded) = {
        let mut conn = store.conn().await?;
        let mut page =
            routing::matchable_in_queue(&mut conn, &queue_id, order, after, i64::MIN, WALK).await?;
        // A full page of a walk that offers may hide, behind conversations nobody may be
        // offered, newer ones someone may: read past those. A page that is not full is kept,
        // so that their decisions are recorded too.
        if matches!(order, WalkOrder::Waited) && page.len() == WALK as usize {
            let since = snapshot.offerable_since();
            if page.iter().any(|entry| entry.item.entered_time < since) {
                page = routing::matchable_in_queue(&mut conn, &queue_id, order, after, since, WALK)
                    .await?;
            }
        }
        let items: Vec<&WaitingItem> = page.iter().map(|entry| &entry.item).collect();
        let excluded = routing::excluded_for(&mut conn, &items).await?;
        (page, excluded)
    };
    let serving = snapshot.can_offer();
    let mut walked = Walked {
        offers: 0,
        raced: false,
        last: None,
        more: false,
    };
    let mut records = Vec::new();
    'items: for entry in &page {
        if shutdown.is_cancelled() || (serving && !snapshot.can_offer()) {
            break;
        }
        let item = &entry.item;
        let mut excluded_now = excluded.remove(&item.conversation_id).unwrap_or_default();
        // A lost race means the snapshot was stale: reread and try the item again, so
        // that a younger conversation does not overtake it.
        for attempt in 0..RETRIES {
            if attempt > 0 {
                walked.raced = true;
                let Some(fresh) = snapshot_again(store, &snapshot).await else {
                    break 'items;
                };
                snapshot = fresh;
                let mut conn = store.conn().await?;
                excluded_now =
                    routing::excluded_agents(&mut conn, &item.conversation_id, item.entered_time)
                        .await?;
            }
            let decision = snapshot.decide(item.channel, &excluded_now, item.entered_time);
            let now = now_micros();
            let Some((agent_id, units)) = decision.chosen.clone() else {
                if let Some(record) = no_offer_record(entry, &snapshot.queue, decision, now) {
                    records.push(record);
                }
                break;
            };
            match offer(
                store,
                item,
                &snapshot.queue,
                &agent_id,
                units,
                decision,
                now,
            )
            .await
            {
                Ok(Ok(())) => {
                    walked.offers += 1;
                    snapshot.note_offer(&agent_id, units, now);
                    break;
                }
                // Offered by another replica, moved or withdrawn since the page was read:
                // nothing to retry, and what the snapshot knows of the agents still holds.
                Ok(Err(Lost::Conversation)) => {
                    debug!(conversation_id = %item.conversation_id, "no longer waiting");
                    break;
                }
                Ok(Err(Lost::Agent | Lost::Busy)) => {
                    debug!(conversation_id = %item.conversation_id, "lost an offer race, will retry");
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
        walked.last = Some(order.position(&entry.item));
    }
    walked.more = walked.offers > 0
        && page.len() == WALK as usize
        && walked.last == page.last().map(|entry| order.position(&entry.item));
    record_no_offers(store, &records).await?;
    Ok(walked)
}

/// The queue read again after a lost race; `None` when it is gone or cannot be read.
async fn snapshot_again(store: &Store, stale: &QueueSnapshot) -> Option<QueueSnapshot> {
    let queue = &stale.queue;
    // Read from the store, not the copy kept between passes, which may be what was stale.
    match snapshot(store, &mut Members::default(), &queue.tenant_id, &queue.id).await {
        Ok(fresh) => fresh,
        Err(err) => {
            warn!(queue_id = %queue.id, error = %err, "reading a queue failed");
            None
        }
    }
}

/// Offers `item` to the chosen agent as a conditional claim; which side of the plan was
/// stale when another change won the race.
async fn offer(
    store: &Store,
    item: &WaitingItem,
    queue: &Queue,
    agent_id: &str,
    units: i32,
    decision: Decision,
    now: i64,
) -> Result<std::result::Result<(), Lost>> {
    let plan = OfferPlan {
        item,
        queue,
        agent_id,
        units,
        candidates: decision.candidates,
        omitted: decision.omitted,
        offer_id: uuid::Uuid::new_v4().to_string(),
    };
    // Without waiting first: most of the time nothing else holds these rows, and a
    // conversation another replica is offering right now is skipped at once.
    let mut locks = Locks::WithoutWaiting;
    loop {
        let mut tx = store.begin().await?;
        match routing::create_offer(&mut tx, &plan, locks, now).await? {
            Ok(offer) => {
                tx.commit().await?;
                info!(
                    conversation_id = %offer.conversation_id,
                    agent_id = %offer.agent_id,
                    offer_id = %offer.id,
                    queue_id = %offer.queue_id,
                    "offer made"
                );
                return Ok(Ok(()));
            }
            Err(Lost::Busy) if locks == Locks::WithoutWaiting => {
                tx.rollback().await?;
                locks = Locks::Waiting;
            }
            Err(lost) => {
                tx.rollback().await?;
                return Ok(Err(lost));
            }
        }
    }
}

/// The record that nobody could be offered the conversation, unless its last record
/// already said the same.
fn no_offer_record(
    entry: &Matchable,
    queue: &Queue,
    decision: Decision,
    now: i64,
) -> Option<RoutingDecision> {
    let summary = routing::decision_summary(&decision.candidates, &decision.omitted);
    if entry.last_summary.as_deref() == Some(summary.as_str()) {
        return None;
    }
    let item = &entry.item;
    Some(RoutingDecision {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: item.tenant_id.clone(),
        offer_id: None,
        conversation_id: item.conversation_id.clone(),
        queue_id: item.queue_id.clone(),
        assignment_method: queue.assignment_method,
        candidates: decision.candidates,
        omitted: decision.omitted,
        decide_time: now,
    })
}

/// Writes a walk's "nobody eligible" records, [`RECORDS_PER_TRANSACTION`] at a time so that
/// a time-out or an offer waiting for the writer waits for a few records, not a walk's.
async fn record_no_offers(store: &Store, records: &[RoutingDecision]) -> Result<()> {
    for chunk in records.chunks(RECORDS_PER_TRANSACTION) {
        let mut tx = store.begin().await?;
        for record in chunk {
            routing::insert_decision(&mut tx, record).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Whether some pending offer is past its deadline, and the expiry about to write.
async fn offers_due(store: &Store) -> Result<bool> {
    let mut conn = store.conn().await?;
    let next = routing::next_offer_deadline(&mut conn).await?;
    Ok(next.is_some_and(|deadline| deadline <= now_micros()))
}
