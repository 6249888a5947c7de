//! Two routing-svc replicas on one PostgreSQL database under random concurrent load, one of
//! them killed mid-run and replaced by a new one. Agents on either replica accept, reject
//! or let their offers time out, go Away and come back (also from RONA) and take waiting
//! conversations by hand; conversations are enqueued, cancelled, overflow from one queue to
//! another and end (their capacity released); pairs of agents race for manual-pick
//! conversations. Once the load stops and the replicas settle, the final tables and the
//! event log, replayed in sequence order, must show:
//!
//! - offers: never two pending for one conversation; each made for a conversation waiting
//!   (not under offer) in the offer's queue, to a member of that queue with its skills,
//!   never to an agent in RONA nor to one that declined the conversation since it entered
//!   the queue; each resolved at most once; none pending past its deadline; a timed-out
//!   one resolved after its deadline with exactly one `offer.timed_out`, an accepted one
//!   before it;
//! - capacity: after every event and in the final rows, each agent's used and promised
//!   units are what its assignments and pending offers hold, within its capacity, and
//!   max open conversations per agent is kept;
//! - no conversation lost: each one enqueued is waiting, held by exactly one agent, ended
//!   (capacity released) or cancelled, as the clients saw it happen and as the event log
//!   leads to; never both waiting and held; never left under an offer that is gone, nor
//!   waiting while an agent could take it;
//! - conversation-svc (a fake) was told every accepted offer and every overflow;
//! - a lost manual-pick race answers ABORTED.
//!
//! The run comes from a seed, printed first; `SWITCHBOARD_REPLICAS_SEED` replays its
//! choices (the timing of the replicas still varies from run to run).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use routing_svc::store::Store;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

mod actors;
mod checks;

use actors::{agent, canceller, enqueuer, killer, manual_pick_races, watcher};
use checks::{check_final_state, settle};

/// Replays the choices of one run.
const SEED_VAR: &str = "SWITCHBOARD_REPLICAS_SEED";
/// Conversations enqueued in the routed queues: the length of the run.
const CONVERSATIONS: usize = 80;
/// Races for conversations of the manual-pick queue.
const RACES: usize = 12;
/// How long agents keep answering once the last conversation is enqueued.
const TAIL: Duration = Duration::from_millis(500);
/// Longest the load may run; a machine too slow for [`CONVERSATIONS`] in this time cuts it
/// short (and the run then says what it could not exercise).
const LOAD_LIMIT: Duration = Duration::from_secs(25);
/// Agents the matcher offers conversations to.
const ROUTED_AGENTS: usize = 24;
/// Agents of the manual-pick queue only, who race for its conversations.
const PICKERS: usize = 4;
/// The skill the billing queue requires, and from which level.
const SKILL: &str = "billing";
const SKILL_LEVEL: i32 = 2;
/// Longest a call may take before the caller gives up on that replica.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a client keeps retrying a call that no replica answers.
const RETRY_FOR: Duration = Duration::from_secs(20);
/// How late past its deadline an offer may still be pending (a matcher pass, slow on a
/// busy machine, holds expiry back until it ends).
const EXPIRY_GRACE_US: i64 = 10_000_000;
/// Calls that take this long are reported.
const SLOW_CALL: Duration = Duration::from_secs(1);
/// Longest the replicas may take to settle once the load stops.
const SETTLE_WITHIN: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_under_random_load_with_one_killed_keep_every_invariant() {
    let Some((databases, url)) = postgres_database().await else {
        return;
    };
    let database = databases.prefix().to_owned();
    let admin = switchboard_server_kit::db::Db::connect(databases.server_url())
        .await
        .unwrap();
    let seed = match std::env::var(SEED_VAR) {
        Ok(seed) => seed
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR} is a number")),
        Err(_) => rand::random(),
    };
    eprintln!("seed {seed} (replay its choices with {SEED_VAR}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let began = Instant::now();

    let (conversation_url, fake, fake_shutdown) = start_fake(FakeMode::UnavailableFirst(0)).await;
    let tenant = new_id();
    // The second replica starts once the first has migrated the database.
    let first = Replica::start(0, &conversation_url, &url, &tenant).await;
    let (queues, agents) = set_up(&first.h, &mut rng).await;
    let second = Replica::start(1, &conversation_url, &url, &tenant).await;
    for agent in &agents {
        second.h.register_agent(&agent.id, &agent.name);
    }
    let world = Arc::new(World {
        began,
        began_micros: switchboard_server_kit::db::now_micros()
            - i64::try_from(began.elapsed().as_micros()).unwrap(),
        tenant,
        queues,
        agents,
        replicas: Mutex::new(vec![first, second]),
        store: Store::open(&url).await.unwrap(),
        stop: CancellationToken::new(),
        seen: Mutex::new(Seen::default()),
    });

    let load_began = Instant::now();
    let actor_rng = |rng: &mut StdRng| StdRng::seed_from_u64(rng.random());
    // The load: a number of conversations and races, each actor at its own pace.
    let mut load = {
        let arrivals = enqueuer(world.clone(), actor_rng(&mut rng));
        let races = manual_pick_races(world.clone(), actor_rng(&mut rng));
        tokio::spawn(async move { tokio::join!(arrivals, races) })
    };
    // Around it, until the load ends: everything else.
    let mut actors = Vec::new();
    actors.push(tokio::spawn(canceller(world.clone(), actor_rng(&mut rng))));
    actors.push(tokio::spawn(watcher(world.clone())));
    actors.push(tokio::spawn(killer(
        world.clone(),
        actor_rng(&mut rng),
        conversation_url.clone(),
        url.clone(),
    )));
    for index in 0..world.agents.len() {
        if !world.agents[index].picker {
            actors.push(tokio::spawn(agent(
                world.clone(),
                index,
                actor_rng(&mut rng),
            )));
        }
    }
    let cut_short = match tokio::time::timeout(LOAD_LIMIT, &mut load).await {
        Ok(loaded) => {
            loaded.expect("no actor panicked");
            tokio::time::sleep(TAIL).await;
            false
        }
        Err(_) => {
            // Joined with the others once they stop.
            actors.push(tokio::spawn(async move {
                load.await.expect("no actor panicked");
            }));
            true
        }
    };
    let load_took = load_began.elapsed();
    world.stop.cancel();
    for actor in actors {
        tokio::time::timeout(RETRY_FOR * 2, actor)
            .await
            .expect("every actor stops once the load ends")
            .expect("no actor panicked");
    }
    let load_ended = Instant::now();
    let load_stopped = load_ended - load_began - load_took;

    if let Err(why) = settle(&world).await {
        world.violation(format!(
            "the replicas did not settle within {SETTLE_WITHIN:?}: {why}"
        ));
    }
    let settled = Instant::now();
    // Nothing changes the database while it is checked.
    let replicas = std::mem::take(&mut *world.replicas.lock().unwrap());
    for replica in replicas {
        let replica = Arc::try_unwrap(replica)
            .unwrap_or_else(|_| panic!("the actors hold no replica any more"));
        if replica.alive() {
            replica.stop().await;
        }
    }
    let mut seen = std::mem::take(&mut *world.seen.lock().unwrap());
    let summary = check_final_state(&world, &mut seen, &fake, cut_short).await;
    eprintln!(
        "seed {seed}: set up in {:?}, load {load_took:?} (stopped in {load_stopped:?}), \
         settled in {:?}, checked in {:?}",
        load_began - began,
        settled - load_ended,
        settled.elapsed()
    );
    world.store.close().await;
    match deadlocks(&admin, &database).await {
        Ok(0) => {}
        Ok(count) => seen.violations.push(format!(
            "PostgreSQL broke {count} deadlocks between the replicas' transactions: a write \
             took an offer, waiting or assignment row before its agent's row"
        )),
        Err(why) => seen
            .violations
            .push(format!("the deadlock count could not be read: {why}")),
    }
    seen.report(&summary);
    fake_shutdown.trigger();
    admin.close().await;
    if !seen.violations.is_empty() {
        eprintln!("the database is kept for a look: {url}");
        databases.keep();
    } else {
        databases.drop_all().await.unwrap();
    }
    assert!(
        seen.violations.is_empty(),
        "seed {seed} ({SEED_VAR}={seed} replays it): {} violations:\n{}",
        seen.violations.len(),
        seen.violations
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// --- replicas -------------------------------------------------------------------------------

/// A replica's runtime; shut down without waiting when dropped, which async code may do.
struct Detached(Option<Runtime>);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A routing-svc replica on a runtime of its own, so that it can be killed the way a
/// process dies: every task stops where it stands, transactions in flight are cut off with
/// their connections, and nothing is shut down in order.
struct Replica {
    /// 0 and 1 from the start, 2 for the one started after the kill.
    number: usize,
    h: Harness,
    runtime: Mutex<Detached>,
    alive: AtomicBool,
    /// Each agent's client, kept so that calls reuse a connection.
    agents: Mutex<HashMap<String, AgentServiceClient<SignedChannel>>>,
    internal: RoutingInternalServiceClient<SignedChannel>,
}

impl Replica {
    async fn start(
        number: usize,
        conversation_url: &str,
        database_url: &str,
        tenant: &str,
    ) -> Arc<Replica> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("routing-replica-{number}"))
            .enable_all()
            .build()
            .unwrap();
        let h = start_on(
            runtime.handle(),
            conversation_url,
            Some(database_url),
            tenant.to_owned(),
        )
        .await;
        let internal = h.internal();
        Arc::new(Replica {
            number,
            h,
            runtime: Mutex::new(Detached(Some(runtime))),
            alive: AtomicBool::new(true),
            agents: Mutex::default(),
            internal,
        })
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn agent(&self, agent_id: &str) -> AgentServiceClient<SignedChannel> {
        self.agents
            .lock()
            .unwrap()
            .entry(agent_id.to_owned())
            .or_insert_with(|| self.h.agent(agent_id))
            .clone()
    }

    fn internal(&self) -> RoutingInternalServiceClient<SignedChannel> {
        self.internal.clone()
    }

    /// Kills the replica at once (its directory, the gateway's, goes with it).
    fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        drop(std::mem::replace(
            &mut *self.runtime.lock().unwrap(),
            Detached(None),
        ));
        if let Some(directory) = &self.h.directory {
            directory.shutdown.trigger();
        }
    }

    /// Stops the replica in order.
    async fn stop(self) {
        let Replica { h, runtime, .. } = self;
        h.stop().await;
        drop(runtime);
    }
}

// --- the run ----------------------------------------------------------------------------

/// One agent as the run set it up.
#[derive(Clone, Debug)]
struct AgentPlan {
    id: String,
    name: String,
    units: i32,
    queues: Vec<String>,
    /// Level of the billing skill, if the agent has it.
    skill_level: Option<i32>,
    /// Serves only the manual-pick queue.
    picker: bool,
}

/// The run's queues.
#[derive(Clone, Debug)]
struct Queues {
    /// Round robin; overflows to `overflow` after a short wait.
    front: String,
    /// Most available capacity.
    overflow: String,
    /// Longest idle; needs the billing skill; one open conversation per agent.
    billing: String,
    /// Manual pick.
    manual: String,
    offer_timeouts: HashMap<String, Duration>,
}

impl Queues {
    fn max_open(&self, queue_id: &str) -> i64 {
        if queue_id == self.billing { 1 } else { 0 }
    }
}

/// What the clients saw, which the final state must agree with, and what went wrong.
#[derive(Default)]
struct Seen {
    /// Conversations enqueued, and in which queue.
    enqueued: Vec<(String, String)>,
    /// Conversations the test asked to cancel, and those it was told were still waiting.
    cancel_asked: HashSet<String>,
    cancelled: HashSet<String>,
    /// Conversations an agent was told it took (an accepted offer or a claim): agent and
    /// offer.
    taken: HashMap<String, (String, String)>,
    /// Conversations whose capacity the test asked to release, and those it was told it
    /// freed.
    release_asked: HashSet<String>,
    released: HashSet<String>,
    /// Outcomes by kind, for the report.
    counts: BTreeMap<String, usize>,
    violations: Vec<String>,
    kills: Vec<String>,
    /// Calls that took [`SLOW_CALL`] or longer.
    slow: Vec<String>,
    /// Per call: how many, their total and longest time.
    latency: BTreeMap<String, (u32, Duration, Duration)>,
}

impl Seen {
    /// Prints what the run did, so that a run that passes still shows what it exercised.
    fn report(&self, summary: &str) {
        eprintln!("{}", self.kills.join("\n"));
        eprintln!("events: {summary}");
        eprintln!("calls:");
        for (what, (calls, total, longest)) in &self.latency {
            eprintln!(
                "  {what}: {calls}, {:?} on average, {longest:?} at most",
                *total / *calls
            );
        }
        for slow in self.slow.iter().take(20) {
            eprintln!("  {slow}");
        }
        eprintln!("outcomes:");
        for (what, count) in &self.counts {
            eprintln!("  {what}: {count}");
        }
    }
}

struct World {
    /// When the run began.
    began: Instant,
    began_micros: i64,
    tenant: String,
    queues: Queues,
    agents: Vec<AgentPlan>,
    replicas: Mutex<Vec<Arc<Replica>>>,
    /// The test's own connection to the database.
    store: Store,
    /// Cancelled when the load ends.
    stop: CancellationToken,
    seen: Mutex<Seen>,
}

/// What a call answered in the end, and whether an earlier try, cut off by a replica
/// that died or by a failed transport, may have taken effect already.
struct Answer<T> {
    result: Result<T, Status>,
    retried: bool,
}

impl World {
    fn live(&self) -> Vec<Arc<Replica>> {
        self.replicas
            .lock()
            .unwrap()
            .iter()
            .filter(|replica| replica.alive())
            .cloned()
            .collect()
    }

    fn pick(&self, rng: &mut StdRng) -> Arc<Replica> {
        self.live()
            .choose(rng)
            .cloned()
            .expect("a replica is always alive")
    }

    fn count(&self, what: impl Into<String>) {
        *self
            .seen
            .lock()
            .unwrap()
            .counts
            .entry(what.into())
            .or_default() += 1;
    }

    /// Notes a call that took long, for the report.
    fn took_time(&self, what: &str, replica: &Replica, started: Instant) {
        let took = started.elapsed();
        {
            let mut seen = self.seen.lock().unwrap();
            let (calls, total, longest) = seen.latency.entry(what.to_owned()).or_default();
            *calls += 1;
            *total += took;
            *longest = (*longest).max(took);
        }
        if took >= SLOW_CALL {
            self.seen.lock().unwrap().slow.push(format!(
                "{:?} into the run, {what} on replica {} took {took:?}",
                started - self.began,
                replica.number
            ));
        }
    }

    fn violation(&self, what: String) {
        self.seen.lock().unwrap().violations.push(what);
    }

    fn plan(&self, agent_id: &str) -> Option<&AgentPlan> {
        self.agents.iter().find(|agent| agent.id == agent_id)
    }

    /// Runs `call` on a live replica; when the replica died or the transport failed, again
    /// on a live one (every call of the run is idempotent: request ids, enqueue keys, or
    /// the call's nature). With `retry_aborted`, ABORTED (a lost race, such as a deadlock
    /// between two transactions, that a retry may win) is retried too: every call but a
    /// claim, for which ABORTED is the answer to judge.
    async fn call<T, F, Fut>(
        &self,
        rng: &mut StdRng,
        what: &str,
        retry_aborted: bool,
        mut call: F,
    ) -> Answer<T>
    where
        F: FnMut(Arc<Replica>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let give_up = Instant::now() + RETRY_FOR;
        let mut retried = false;
        loop {
            let replica = self.pick(rng);
            let started = Instant::now();
            let answered = tokio::time::timeout(CALL_TIMEOUT, call(replica.clone())).await;
            self.took_time(what, &replica, started);
            let status = match answered {
                Ok(Ok(response)) => {
                    return Answer {
                        result: Ok(response.into_inner()),
                        retried,
                    };
                }
                Ok(Err(status)) if !replica.alive() || transport_failure(&status) => {
                    retried = true;
                    status
                }
                Ok(Err(status)) if retry_aborted && status.code() == Code::Aborted => status,
                Ok(Err(status)) => {
                    return Answer {
                        result: Err(status),
                        retried,
                    };
                }
                Err(_) => {
                    retried = true;
                    Status::deadline_exceeded(format!("no answer within {CALL_TIMEOUT:?}"))
                }
            };
            self.count(format!(
                "{what}: tried again after {:?} from replica {}{}",
                status.code(),
                replica.number,
                if replica.alive() { "" } else { " (killed)" }
            ));
            assert!(
                Instant::now() < give_up,
                "{what}: no replica answered within {RETRY_FOR:?}; last: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How many deadlocks PostgreSQL broke in `database`, read once every connection to it
/// closed: a backend's counts reach the statistics by the time it exits.
async fn deadlocks(admin: &switchboard_server_kit::db::Db, database: &str) -> Result<i64, String> {
    let closed_by = Instant::now() + Duration::from_secs(30);
    loop {
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(database)
                .fetch_one(admin.writer())
                .await
                .map_err(|err| err.to_string())?;
        if open == 0 {
            break;
        }
        if Instant::now() > closed_by {
            return Err(format!("{open} connections to {database} still open"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = admin
        .writer()
        .acquire()
        .await
        .map_err(|err| err.to_string())?;
    // A fresh snapshot of the statistics, not one this connection read before.
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .map_err(|err| err.to_string())?;
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = $1")
        .bind(database)
        .fetch_one(&mut *conn)
        .await
        .map_err(|err| err.to_string())
}

/// A call that failed on its way rather than being answered by routing-svc.
fn transport_failure(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    )
}

fn millis(rng: &mut StdRng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rng.random_range(range))
}

fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap(),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap(),
    }
}

/// Sleeps `duration`; false when the load ended meanwhile.
async fn pause(world: &World, duration: Duration) -> bool {
    tokio::select! {
        () = world.stop.cancelled() => false,
        () = tokio::time::sleep(duration) => true,
    }
}

/// The program, queues, capacity profiles and agents of the run, set up through `h`.
async fn set_up(h: &Harness, rng: &mut StdRng) -> (Queues, Vec<AgentPlan>) {
    let mut admin = h.admin();
    let program_id = create_program(&mut admin, &new_id(), "Support")
        .await
        .unwrap()
        .id;
    let mut offer_timeouts = HashMap::new();
    let mut create_queue = async |queue: pb::Queue| -> String {
        admin
            .create_queue(pb::CreateQueueRequest {
                request_id: new_id(),
                queue: Some(pb::Queue {
                    program_id: program_id.clone(),
                    accepted_channels: vec![Channel::Webchat as i32],
                    offer_waiting_on_login: Some(true),
                    ..queue
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .queue
            .unwrap()
            .id
    };
    let timeout = |rng: &mut StdRng| millis(rng, 300..800);
    let overflow_timeout = timeout(rng);
    let overflow = create_queue(pb::Queue {
        display_name: "Overflow".into(),
        assignment_method: pb::AssignmentMethod::MostAvailableCapacity as i32,
        offer_timeout: Some(proto_duration(overflow_timeout)),
        ..Default::default()
    })
    .await;
    let front_timeout = timeout(rng);
    let front = create_queue(pb::Queue {
        display_name: "Front".into(),
        assignment_method: pb::AssignmentMethod::RoundRobin as i32,
        offer_timeout: Some(proto_duration(front_timeout)),
        overflow_queue_id: overflow.clone(),
        overflow_after: Some(proto_duration(millis(rng, 300..700))),
        ..Default::default()
    })
    .await;
    let billing_timeout = timeout(rng);
    let billing = create_queue(pb::Queue {
        display_name: "Billing".into(),
        assignment_method: pb::AssignmentMethod::LongestIdle as i32,
        offer_timeout: Some(proto_duration(billing_timeout)),
        required_skills: vec![pb::SkillRequirement {
            name: SKILL.into(),
            min_level: SKILL_LEVEL,
        }],
        max_open_per_agent: 1,
        ..Default::default()
    })
    .await;
    let manual = create_queue(pb::Queue {
        display_name: "Manual".into(),
        assignment_method: pb::AssignmentMethod::ManualPick as i32,
        ..Default::default()
    })
    .await;
    offer_timeouts.insert(overflow.clone(), overflow_timeout);
    offer_timeouts.insert(front.clone(), front_timeout);
    offer_timeouts.insert(billing.clone(), billing_timeout);
    let queues = Queues {
        front,
        overflow,
        billing,
        manual,
        offer_timeouts,
    };

    let mut profiles = HashMap::new();
    for units in 1..=3 {
        let profile = admin
            .create_capacity_profile(pb::CreateCapacityProfileRequest {
                request_id: new_id(),
                capacity_profile: Some(pb::CapacityProfile {
                    display_name: format!("{units} chats"),
                    total_units: units,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .capacity_profile
            .unwrap();
        profiles.insert(units, profile.id);
    }

    let mut agents = Vec::new();
    for index in 0..ROUTED_AGENTS + PICKERS {
        let picker = index >= ROUTED_AGENTS;
        let mut plan = AgentPlan {
            id: new_id(),
            name: format!("Agent {index}"),
            units: if picker { 2 } else { rng.random_range(1..=3) },
            queues: Vec::new(),
            skill_level: None,
            picker,
        };
        if picker {
            plan.queues.push(queues.manual.clone());
        } else {
            // A few agents always serve each queue; the front queue is kept short of agents
            // so that conversations wait there long enough to overflow.
            if index < 2 || rng.random_bool(0.3) {
                plan.queues.push(queues.front.clone());
            }
            if index == 2 || rng.random_bool(0.4) {
                plan.queues.push(queues.billing.clone());
                // Some members lack the skill, or have it below the level required.
                if index == 2 {
                    plan.skill_level = Some(SKILL_LEVEL + 1);
                } else if rng.random_bool(0.75) {
                    plan.skill_level = Some(rng.random_range(1..=5));
                }
            }
            if plan.queues.is_empty() || rng.random_bool(0.6) {
                plan.queues.push(queues.overflow.clone());
            }
        }
        h.register_agent(&plan.id, &plan.name);
        admin
            .set_agent_profile(pb::SetAgentProfileRequest {
                request_id: new_id(),
                agent_profile: Some(pb::AgentProfile {
                    agent_id: plan.id.clone(),
                    capacity_profile_id: profiles[&plan.units].clone(),
                    queue_ids: plan.queues.clone(),
                    skills: plan
                        .skill_level
                        .map(|level| pb::AgentSkill {
                            name: SKILL.into(),
                            level,
                        })
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        agents.push(plan);
    }
    (queues, agents)
}
