//! Once the load stops: waiting for the replicas to settle, then the final tables and the
//! event log checked against each other, against what the clients saw and against what
//! conversation-svc was told.

use sqlx::Row;

use super::*;

/// Waits until nothing is left to happen: every outbox entry done, no offer pending, no
/// conversation due to overflow or under offer, none waiting while an agent could take it.
pub(super) async fn settle(world: &World) -> Result<(), String> {
    let until = Instant::now() + SETTLE_WITHIN;
    loop {
        match unsettled(world).await {
            None => return Ok(()),
            Some(why) if Instant::now() >= until => return Err(why),
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What is still to happen, if anything.
async fn unsettled(world: &World) -> Option<String> {
    let mut conn = world.store.conn().await.unwrap();
    for (what, query) in [
        (
            "outbox entries not done",
            "SELECT COUNT(*) FROM outbox WHERE done = 0",
        ),
        (
            "offers pending",
            "SELECT COUNT(*) FROM offers WHERE state = 1",
        ),
        (
            "conversations under offer or due to overflow",
            "SELECT COUNT(*) FROM waiting WHERE state <> 'waiting' OR overflow_due_us IS NOT NULL",
        ),
    ] {
        let count: i64 = sqlx::query_scalar(query)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        if count > 0 {
            return Some(format!("{count} {what}"));
        }
    }
    let waiting: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT conversation_id, queue_id, entered_time FROM waiting WHERE queue_id <> $1",
    )
    .bind(&world.queues.manual)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let agents: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT agent_id, presence, capacity_total, capacity_used, pending_units FROM agents",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let declined: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT conversation_id, agent_id, create_time FROM offers WHERE state IN (3, 4)",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let held: Vec<(String, String)> = sqlx::query_as("SELECT agent_id, queue_id FROM assignments")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    for (conversation_id, queue_id, entered_time) in &waiting {
        for (agent_id, presence, total, used, pending) in &agents {
            let Some(plan) = world.plan(agent_id) else {
                continue;
            };
            let eligible = *presence == pb::Presence::Available as i64
                && plan.queues.contains(queue_id)
                && (*queue_id != world.queues.billing
                    || plan.skill_level.is_some_and(|level| level >= SKILL_LEVEL))
                && used + pending < *total
                && (world.queues.max_open(queue_id) == 0
                    || (held
                        .iter()
                        .filter(|(a, q)| a == agent_id && q == queue_id)
                        .count() as i64)
                        < world.queues.max_open(queue_id))
                && !declined.iter().any(|(c, a, created)| {
                    c == conversation_id && a == agent_id && created >= entered_time
                });
            if eligible {
                return Some(format!(
                    "conversation {conversation_id} waits in queue {queue_id} while agent \
                     {agent_id} could take it"
                ));
            }
        }
    }
    None
}

// --- the final state and the event log -------------------------------------------------------

/// An offer row.
#[derive(Clone, Debug)]
struct OfferRow {
    id: String,
    conversation_id: String,
    queue_id: String,
    agent_id: String,
    state: i64,
    expire_time: i64,
    resolve_time: Option<i64>,
    units: i64,
}

/// Where a conversation stands, as the event log tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Place {
    #[default]
    Unknown,
    Waiting(String),
    Held(String),
    Ended,
    Cancelled,
}

#[derive(Debug, Default)]
struct ConversationLog {
    place: Place,
    /// Its pending offer.
    pending: Option<String>,
    /// Its accepted offers (claims included).
    accepted: Vec<String>,
    /// Agents that rejected or missed it since it entered its queue.
    declined: HashSet<String>,
    enqueued: usize,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Rona {
    #[default]
    Out,
    /// An offer timed out; the agent's next presence change is its entry into RONA.
    Entering,
    In,
}

#[derive(Debug, Default)]
struct AgentLog {
    used: i64,
    pending: i64,
    /// Held and pending conversations per queue.
    open: HashMap<String, i64>,
    rona: Rona,
}

/// The event log replayed in sequence order.
struct Replay<'a> {
    world: &'a World,
    offers: &'a HashMap<String, OfferRow>,
    totals: &'a HashMap<String, i64>,
    conversations: HashMap<String, ConversationLog>,
    agents: HashMap<String, AgentLog>,
    /// Resolutions per offer, and whether it was made by `offer.created`.
    resolutions: HashMap<String, Vec<String>>,
    created: HashSet<String>,
    applied: HashMap<String, usize>,
    overflows: Vec<(String, String, String)>,
    problems: Vec<String>,
}

impl Replay<'_> {
    fn apply(&mut self, event: &routing_svc::store::Event) {
        let kind = event.kind.as_str();
        let at = format!("event {} ({kind})", event.sequence);
        let conversation_id = event.conversation_id.as_str();
        match kind {
            "conversation.enqueued" => {
                let c = self
                    .conversations
                    .entry(conversation_id.to_owned())
                    .or_default();
                c.enqueued += 1;
                if c.place != Place::Unknown {
                    self.problems.push(format!(
                        "{at}: conversation {conversation_id} enqueued again while {:?}",
                        c.place
                    ));
                }
                c.place = Place::Waiting(event.queue_id.clone());
                c.declined.clear();
            }
            "offer.created" => {
                let Some(offer) = self.offer(&at, &event.offer_id) else {
                    return;
                };
                self.created.insert(offer.id.clone());
                let world = self.world;
                let plan = world.plan(&offer.agent_id);
                let c = self
                    .conversations
                    .entry(conversation_id.to_owned())
                    .or_default();
                if let Some(other) = &c.pending {
                    self.problems.push(format!(
                        "{at}: offer {} made for conversation {conversation_id} while offer \
                         {other} was pending",
                        offer.id
                    ));
                }
                if c.place != Place::Waiting(offer.queue_id.clone()) {
                    self.problems.push(format!(
                        "{at}: offer {} made in queue {} for conversation {conversation_id}, \
                         which was {:?}",
                        offer.id, offer.queue_id, c.place
                    ));
                }
                if c.declined.contains(&offer.agent_id) {
                    self.problems.push(format!(
                        "{at}: conversation {conversation_id} offered again to agent {}, who \
                         declined it in this queue",
                        offer.agent_id
                    ));
                }
                c.pending = Some(offer.id.clone());
                match plan {
                    Some(plan) if plan.queues.contains(&offer.queue_id) => {
                        if offer.queue_id == self.world.queues.billing
                            && plan.skill_level.is_none_or(|level| level < SKILL_LEVEL)
                        {
                            self.problems.push(format!(
                                "{at}: offer {} of the billing queue to agent {} without the \
                                 skill at level {SKILL_LEVEL} ({:?})",
                                offer.id, offer.agent_id, plan.skill_level
                            ));
                        }
                    }
                    _ => self.problems.push(format!(
                        "{at}: offer {} to agent {}, not a member of queue {}",
                        offer.id, offer.agent_id, offer.queue_id
                    )),
                }
                let agent = self.agents.entry(offer.agent_id.clone()).or_default();
                if agent.rona != Rona::Out {
                    self.problems.push(format!(
                        "{at}: offer {} to agent {} in RONA",
                        offer.id, offer.agent_id
                    ));
                }
                agent.pending += offer.units;
                *agent.open.entry(offer.queue_id.clone()).or_default() += 1;
                self.check_load(&at, &offer);
            }
            "offer.accepted" => {
                let Some(offer) = self.offer(&at, &event.offer_id) else {
                    return;
                };
                self.resolve(&at, &offer, kind);
                let made = self.created.contains(&offer.id);
                let c = self
                    .conversations
                    .entry(conversation_id.to_owned())
                    .or_default();
                if made {
                    if c.pending.as_deref() != Some(offer.id.as_str()) {
                        self.problems.push(format!(
                            "{at}: offer {} accepted while conversation {conversation_id} had \
                             {:?} pending",
                            offer.id, c.pending
                        ));
                    }
                    c.pending = None;
                } else if let Some(other) = &c.pending {
                    self.problems.push(format!(
                        "{at}: conversation {conversation_id} claimed (offer {}) while offer \
                         {other} was pending",
                        offer.id
                    ));
                }
                if c.place != Place::Waiting(offer.queue_id.clone()) {
                    self.problems.push(format!(
                        "{at}: conversation {conversation_id} taken in queue {} (offer {}) \
                         while {:?}",
                        offer.queue_id, offer.id, c.place
                    ));
                }
                c.place = Place::Held(offer.agent_id.clone());
                c.accepted.push(offer.id.clone());
                let agent = self.agents.entry(offer.agent_id.clone()).or_default();
                agent.used += offer.units;
                if made {
                    agent.pending -= offer.units;
                } else {
                    *agent.open.entry(offer.queue_id.clone()).or_default() += 1;
                }
                self.check_load(&at, &offer);
            }
            "offer.rejected" | "offer.timed_out" | "offer.withdrawn" => {
                let Some(offer) = self.offer(&at, &event.offer_id) else {
                    return;
                };
                self.resolve(&at, &offer, kind);
                if !self.created.contains(&offer.id) {
                    self.problems
                        .push(format!("{at}: offer {} resolved but never made", offer.id));
                }
                let c = self
                    .conversations
                    .entry(conversation_id.to_owned())
                    .or_default();
                if c.pending.as_deref() == Some(offer.id.as_str()) {
                    c.pending = None;
                } else {
                    self.problems.push(format!(
                        "{at}: offer {} resolved while conversation {conversation_id} had \
                         {:?} pending",
                        offer.id, c.pending
                    ));
                }
                if kind != "offer.withdrawn" {
                    c.declined.insert(offer.agent_id.clone());
                }
                let agent = self.agents.entry(offer.agent_id.clone()).or_default();
                agent.pending -= offer.units;
                *agent.open.entry(offer.queue_id.clone()).or_default() -= 1;
                if kind == "offer.timed_out" {
                    agent.rona = Rona::Entering;
                }
            }
            "presence.changed" => {
                let agent = self.agents.entry(event.agent_id.clone()).or_default();
                agent.rona = match agent.rona {
                    Rona::Entering => Rona::In,
                    Rona::In | Rona::Out => Rona::Out,
                };
            }
            "capacity.reserved" => {
                let accepted = self
                    .resolutions
                    .get(&event.offer_id)
                    .is_some_and(|r| r.last().map(String::as_str) == Some("offer.accepted"));
                if !accepted {
                    self.problems.push(format!(
                        "{at}: capacity reserved for offer {}, not accepted",
                        event.offer_id
                    ));
                }
            }
            "capacity.released" => {
                let c = self
                    .conversations
                    .entry(conversation_id.to_owned())
                    .or_default();
                if c.place != Place::Held(event.agent_id.clone()) {
                    self.problems.push(format!(
                        "{at}: capacity of conversation {conversation_id} released by agent {} \
                         while {:?}",
                        event.agent_id, c.place
                    ));
                    return;
                }
                c.place = Place::Ended;
                let units = c
                    .accepted
                    .last()
                    .and_then(|offer| self.offers.get(offer))
                    .map_or(0, |offer| offer.units);
                let agent = self.agents.entry(event.agent_id.clone()).or_default();
                agent.used -= units;
                *agent.open.entry(event.queue_id.clone()).or_default() -= 1;
            }
            "waiting.cancelled" => {
                let c = self
                    .conversations
                    .entry(conversation_id.to_owned())
                    .or_default();
                if c.place != Place::Waiting(event.queue_id.clone()) || c.pending.is_some() {
                    self.problems.push(format!(
                        "{at}: conversation {conversation_id} cancelled from queue {} while \
                         {:?} with offer {:?} pending",
                        event.queue_id, c.place, c.pending
                    ));
                }
                c.place = Place::Cancelled;
            }
            "conversation.overflowed" => {
                let c = self
                    .conversations
                    .entry(conversation_id.to_owned())
                    .or_default();
                if c.place != Place::Waiting(event.from_queue_id.clone()) || c.pending.is_some() {
                    self.problems.push(format!(
                        "{at}: conversation {conversation_id} overflowed from queue {} while \
                         {:?} with offer {:?} pending",
                        event.from_queue_id, c.place, c.pending
                    ));
                }
                if event.from_queue_id != self.world.queues.front
                    || event.queue_id != self.world.queues.overflow
                {
                    self.problems.push(format!(
                        "{at}: conversation {conversation_id} overflowed from queue {} to {}",
                        event.from_queue_id, event.queue_id
                    ));
                }
                c.place = Place::Waiting(event.queue_id.clone());
                c.declined.clear();
                self.overflows.push((
                    conversation_id.to_owned(),
                    event.from_queue_id.clone(),
                    event.queue_id.clone(),
                ));
            }
            "assignment.applied" => {
                *self.applied.entry(event.offer_id.clone()).or_default() += 1;
            }
            "assignment.failed" => self.problems.push(format!(
                "{at}: the assignment of offer {} failed; the fake never refuses",
                event.offer_id
            )),
            _ => {}
        }
    }

    fn offer(&mut self, at: &str, offer_id: &str) -> Option<OfferRow> {
        let offer = self.offers.get(offer_id).cloned();
        if offer.is_none() {
            self.problems
                .push(format!("{at}: offer {offer_id} is not in the offers table"));
        }
        offer
    }

    fn resolve(&mut self, at: &str, offer: &OfferRow, kind: &str) {
        let resolutions = self.resolutions.entry(offer.id.clone()).or_default();
        if !resolutions.is_empty() {
            self.problems.push(format!(
                "{at}: offer {} resolved again ({kind} after {resolutions:?})",
                offer.id
            ));
        }
        resolutions.push(kind.to_owned());
    }

    /// Units within capacity and open conversations within the queue's limit, after a
    /// change of `offer`'s agent.
    fn check_load(&mut self, at: &str, offer: &OfferRow) {
        let agent = &self.agents[&offer.agent_id];
        let total = self
            .totals
            .get(&offer.agent_id)
            .copied()
            .unwrap_or_default();
        if agent.used + agent.pending > total {
            self.problems.push(format!(
                "{at}: agent {} holds {} units and is promised {}, over its {total}",
                offer.agent_id, agent.used, agent.pending
            ));
        }
        let max_open = self.world.queues.max_open(&offer.queue_id);
        let open = agent.open.get(&offer.queue_id).copied().unwrap_or_default();
        if max_open > 0 && open > max_open {
            self.problems.push(format!(
                "{at}: agent {} has {open} conversations of queue {} open, over its {max_open}",
                offer.agent_id, offer.queue_id
            ));
        }
    }
}

/// Replays the event log and compares it with the final tables, what the clients saw and
/// what the fake conversation-svc was told; adds every violation to `seen` and returns a
/// summary of the events. A run whose load was `cut_short` (a machine too slow for it) only
/// reports what it did not exercise.
pub(super) async fn check_final_state(
    world: &World,
    seen: &mut Seen,
    fake: &Mutex<FakeLog>,
    cut_short: bool,
) -> String {
    let mut conn = world.store.conn().await.unwrap();
    let events = routing_svc::store::events::after(&mut conn, 0, i64::MAX)
        .await
        .unwrap();
    let offers: HashMap<String, OfferRow> = sqlx::query(
        "SELECT id, conversation_id, queue_id, agent_id, state, expire_time, resolve_time, \
         capacity_units FROM offers",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .iter()
    .map(|row| {
        let offer = OfferRow {
            id: row.get("id"),
            conversation_id: row.get("conversation_id"),
            queue_id: row.get("queue_id"),
            agent_id: row.get("agent_id"),
            state: row.get("state"),
            expire_time: row.get("expire_time"),
            resolve_time: row.get("resolve_time"),
            units: row.get("capacity_units"),
        };
        (offer.id.clone(), offer)
    })
    .collect();
    let agents: Vec<(String, i64, i64, i64)> =
        sqlx::query_as("SELECT agent_id, capacity_total, capacity_used, pending_units FROM agents")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let assignments: Vec<(String, String, String, i64, String)> = sqlx::query_as(
        "SELECT conversation_id, agent_id, queue_id, units, offer_id FROM assignments",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let waiting: Vec<(String, String, String, Option<String>)> =
        sqlx::query_as("SELECT conversation_id, queue_id, state, offer_id FROM waiting")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let outbox_open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE done = 0")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let now = switchboard_server_kit::db::now_micros();

    let totals: HashMap<String, i64> = agents
        .iter()
        .map(|(agent, total, _, _)| (agent.clone(), *total))
        .collect();
    let mut replay = Replay {
        world,
        offers: &offers,
        totals: &totals,
        conversations: HashMap::new(),
        agents: HashMap::new(),
        resolutions: HashMap::new(),
        created: HashSet::new(),
        applied: HashMap::new(),
        overflows: Vec::new(),
        problems: Vec::new(),
    };
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        if event.sequence != index as i64 + 1 {
            replay.problems.push(format!(
                "event {} follows event {}: the log has a gap",
                event.sequence, index
            ));
        }
        *kinds.entry(event.kind.clone()).or_default() += 1;
        replay.apply(event);
    }
    let mut problems = std::mem::take(&mut replay.problems);
    let Replay {
        conversations,
        agents: loads,
        resolutions,
        created,
        applied,
        overflows,
        ..
    } = replay;

    // Offers: as the log resolved them, in time.
    let mut latest_expiry = 0;
    let mut late = Vec::new();
    for offer in offers.values() {
        let resolved = resolutions
            .get(&offer.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let made = created.contains(&offer.id);
        let expected = match resolved {
            [] if made => pb::offer::State::Pending,
            [kind] => match kind.as_str() {
                "offer.accepted" => pb::offer::State::Accepted,
                "offer.rejected" => pb::offer::State::Rejected,
                "offer.timed_out" => pb::offer::State::TimedOut,
                _ => pb::offer::State::Withdrawn,
            },
            _ => {
                problems.push(format!(
                    "offer {} (made by the log: {made}) was resolved {resolved:?}",
                    offer.id
                ));
                continue;
            }
        };
        if offer.state != expected as i64 {
            problems.push(format!(
                "offer {} is in state {} but the log leads to {expected:?}",
                offer.id, offer.state
            ));
        }
        let resolve_time = offer.resolve_time.unwrap_or(i64::MAX);
        match expected {
            pb::offer::State::Pending if offer.expire_time < now => problems.push(format!(
                "offer {} still pending {} ms past its deadline after settling",
                offer.id,
                (now - offer.expire_time) / 1_000
            )),
            pb::offer::State::TimedOut if resolve_time < offer.expire_time => {
                problems.push(format!(
                    "offer {} timed out {} µs before its deadline",
                    offer.id,
                    offer.expire_time - resolve_time
                ));
            }
            pb::offer::State::TimedOut => {
                latest_expiry = latest_expiry.max(resolve_time - offer.expire_time);
                if resolve_time - offer.expire_time > 500_000 {
                    late.push(format!(
                        "{} ms into the run, {} ms late",
                        (offer.expire_time - world.began_micros) / 1_000,
                        (resolve_time - offer.expire_time) / 1_000
                    ));
                }
            }
            pb::offer::State::Accepted if made && resolve_time >= offer.expire_time => {
                problems.push(format!("offer {} accepted after its deadline", offer.id));
            }
            _ => {}
        }
    }

    // Capacity: the log, the agents' counters, their assignments and offers agree.
    for (agent_id, total, used, pending) in &agents {
        let held: i64 = assignments
            .iter()
            .filter(|a| &a.1 == agent_id)
            .map(|a| a.3)
            .sum();
        let promised: i64 = offers
            .values()
            .filter(|o| &o.agent_id == agent_id && o.state == pb::offer::State::Pending as i64)
            .map(|o| o.units)
            .sum();
        let logged = loads.get(agent_id);
        let (log_used, log_pending) = logged.map_or((0, 0), |l| (l.used, l.pending));
        if (*used, *pending) != (held, promised) || (*used, *pending) != (log_used, log_pending) {
            problems.push(format!(
                "agent {agent_id}: {used} units used and {pending} promised; its assignments \
                 hold {held} and its pending offers {promised}; the log leads to {log_used} \
                 and {log_pending}"
            ));
        }
        if used + pending > *total {
            problems.push(format!(
                "agent {agent_id} holds {used} and is promised {pending}, over its {total}"
            ));
        }
    }

    // Conversations: each where the log leads, as the clients saw it.
    let waiting_rows: HashMap<&str, (&str, &str, Option<&str>)> = waiting
        .iter()
        .map(|(c, q, s, o)| (c.as_str(), (q.as_str(), s.as_str(), o.as_deref())))
        .collect();
    let mut holders: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for (conversation, agent, _, _, offer) in &assignments {
        holders
            .entry(conversation.as_str())
            .or_default()
            .push((agent.as_str(), offer.as_str()));
    }
    for conversation in waiting_rows.keys().chain(holders.keys()) {
        if !conversations.contains_key(*conversation) {
            problems.push(format!(
                "conversation {conversation} is in the tables but not in the log"
            ));
        }
    }
    let enqueued: HashMap<&str, &str> = seen
        .enqueued
        .iter()
        .map(|(c, q)| (c.as_str(), q.as_str()))
        .collect();
    let accepted_offers: HashSet<&str> = conversations
        .values()
        .flat_map(|c| c.accepted.iter().map(String::as_str))
        .collect();
    for (conversation_id, c) in &conversations {
        let row = waiting_rows.get(conversation_id.as_str());
        let held = holders
            .get(conversation_id.as_str())
            .cloned()
            .unwrap_or_default();
        let fine = match &c.place {
            Place::Waiting(queue) => {
                held.is_empty()
                    && row.is_some_and(|(q, state, offer)| {
                        q == queue
                            && match &c.pending {
                                Some(pending) => *state == "offered" && *offer == Some(pending),
                                None => *state == "waiting",
                            }
                    })
            }
            Place::Held(agent) => {
                row.is_none()
                    && held.len() == 1
                    && held[0].0 == agent
                    && Some(held[0].1) == c.accepted.last().map(String::as_str)
            }
            Place::Ended | Place::Cancelled => row.is_none() && held.is_empty(),
            Place::Unknown => false,
        };
        if !fine {
            problems.push(format!(
                "conversation {conversation_id}: the log leads to {:?} (offer {:?} pending), \
                 the tables show waiting {row:?} and holders {held:?}",
                c.place, c.pending
            ));
        }
        if c.accepted.len() > 1 || c.enqueued != 1 {
            problems.push(format!(
                "conversation {conversation_id} enqueued {} times and taken by offers {:?}",
                c.enqueued, c.accepted
            ));
        }
        if !enqueued.contains_key(conversation_id.as_str()) {
            problems.push(format!(
                "conversation {conversation_id} is in the log but was never enqueued"
            ));
        }
        if c.place == Place::Cancelled && !seen.cancel_asked.contains(conversation_id) {
            problems.push(format!(
                "conversation {conversation_id} cancelled but nobody asked"
            ));
        }
        if c.place == Place::Ended && !seen.release_asked.contains(conversation_id) {
            problems.push(format!(
                "conversation {conversation_id} ended but nobody released it"
            ));
        }
    }
    for (conversation_id, queue_id) in &enqueued {
        match conversations.get(*conversation_id) {
            None => problems.push(format!(
                "conversation {conversation_id} enqueued in {queue_id} is not in the log: lost"
            )),
            Some(c) if seen.cancelled.contains(*conversation_id) && c.place != Place::Cancelled => {
                problems.push(format!(
                    "conversation {conversation_id} was cancelled while waiting but is {:?}",
                    c.place
                ));
            }
            Some(c) if seen.released.contains(*conversation_id) && c.place != Place::Ended => {
                problems.push(format!(
                    "conversation {conversation_id} was released but is {:?}",
                    c.place
                ));
            }
            Some(_) => {}
        }
    }
    for (conversation_id, (agent_id, offer_id)) in &seen.taken {
        let fine = offers.get(offer_id).is_some_and(|offer| {
            &offer.agent_id == agent_id
                && &offer.conversation_id == conversation_id
                && accepted_offers.contains(offer_id.as_str())
        });
        if !fine {
            problems.push(format!(
                "agent {agent_id} was told it took conversation {conversation_id} through \
                 offer {offer_id}, which the log does not show accepted for it"
            ));
        }
    }
    let told: HashSet<&str> = seen
        .taken
        .values()
        .map(|(_, offer)| offer.as_str())
        .collect();
    for offer in &accepted_offers {
        if !told.contains(offer) {
            problems.push(format!("offer {offer} was accepted but no client was told"));
        }
    }

    // conversation-svc: told each accepted offer and each overflow, as they are.
    if outbox_open > 0 {
        problems.push(format!("{outbox_open} outbox entries were never done"));
    }
    let (applied_requests, overflow_requests) = {
        let fake = fake.lock().unwrap();
        (fake.applied.clone(), fake.overflows.clone())
    };
    let mut told_applied: HashSet<&str> = HashSet::new();
    for request in &applied_requests {
        told_applied.insert(request.offer_id.as_str());
        let fine = offers.get(&request.offer_id).is_some_and(|offer| {
            offer.agent_id == request.agent_id
                && offer.conversation_id == request.conversation_id
                && offer.queue_id == request.queue_id
                && request.tenant_id == world.tenant
        });
        if !fine {
            problems.push(format!(
                "conversation-svc was told an assignment no offer made: {request:?}"
            ));
        }
    }
    if told_applied != accepted_offers {
        problems.push(format!(
            "conversation-svc was told the assignments of offers {:?} it was not, and not told \
             those of {:?}",
            told_applied
                .difference(&accepted_offers)
                .collect::<Vec<_>>(),
            accepted_offers
                .difference(&told_applied)
                .collect::<Vec<_>>()
        ));
    }
    for offer in &accepted_offers {
        if applied.get(*offer).copied().unwrap_or_default() != 1 {
            problems.push(format!(
                "offer {offer} has {:?} assignment.applied events, not one",
                applied.get(*offer)
            ));
        }
    }
    // A retried call names the same move: count moves by request id.
    let mut told_overflows: Vec<(String, String, String)> = overflow_requests
        .iter()
        .map(|r| {
            let moved = (
                r.conversation_id.clone(),
                r.from_queue_id.clone(),
                r.to_queue_id.clone(),
            );
            (r.request_id.as_str(), moved)
        })
        .collect::<HashMap<_, _>>()
        .into_values()
        .collect();
    let mut logged_overflows = overflows;
    told_overflows.sort();
    logged_overflows.sort();
    if told_overflows != logged_overflows {
        problems.push(format!(
            "conversation-svc was told {} overflows, the log has {}",
            told_overflows.len(),
            logged_overflows.len()
        ));
    }

    // The run did what it is for.
    let claims = accepted_offers
        .iter()
        .filter(|o| !created.contains(**o))
        .count();
    for (what, happened) in [
        (
            "offer.accepted",
            kinds.get("offer.accepted").copied().unwrap_or_default(),
        ),
        (
            "offer.rejected",
            kinds.get("offer.rejected").copied().unwrap_or_default(),
        ),
        (
            "offer.timed_out",
            kinds.get("offer.timed_out").copied().unwrap_or_default(),
        ),
        (
            "offer.withdrawn",
            kinds.get("offer.withdrawn").copied().unwrap_or_default(),
        ),
        (
            "conversation.overflowed",
            kinds
                .get("conversation.overflowed")
                .copied()
                .unwrap_or_default(),
        ),
        (
            "waiting.cancelled",
            kinds.get("waiting.cancelled").copied().unwrap_or_default(),
        ),
        (
            "capacity.released",
            kinds.get("capacity.released").copied().unwrap_or_default(),
        ),
        ("claims", claims),
        ("kills", seen.kills.len()),
        (
            "pinned manual-pick races lost with ABORTED",
            seen.counts
                .iter()
                .filter(|(what, _)| {
                    what.starts_with("manual-pick race (pinned, met): loser Aborted")
                })
                .map(|(_, count)| *count)
                .sum(),
        ),
    ] {
        if happened > 0 {
            continue;
        }
        if cut_short {
            let gap =
                format!("not exercised, the load being cut short after {LOAD_LIMIT:?}: {what}");
            *seen.counts.entry(gap).or_default() += 1;
        } else {
            problems.push(format!("the run never exercised {what}"));
        }
    }

    late.sort();
    let summary = format!(
        "{} in all, {kinds:?}; {} conversations, {claims} claims; timed-out offers resolved \
         at most {} ms after their deadline (late: {late:?}); conversation-svc told {} \
         assignments ({} calls)",
        events.len(),
        conversations.len(),
        latest_expiry / 1_000,
        told_applied.len(),
        applied_requests.len()
    );
    seen.violations.extend(problems);
    summary
}
