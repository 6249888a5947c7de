//! The routing-flow scenarios: created → offered with N agents at fixed arrival rates, one
//! queue's backlog beside another queue's offers, and the whole lifecycle's throughput
//! against create-only.
//!
//! The agents are set up as an administrator would set them up (users created through the
//! gateway's directory, routing profiles joining the demo queue) and work through the
//! gateway with their own bearer tokens: Available, one StreamOffers stream each, every offer
//! accepted at once, the conversation ended and wrapped up so that capacity comes back.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use switchboard_proto::common::v1::Channel as ChatChannel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::directory::v1 as directory;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::load::{self, CALL_TIMEOUT, Mode, Run, Target};
use super::report::{Better, Figure, ScenarioResult};
use super::scenarios::{self, STREAMS_PER_CONNECTION, Store};
use super::{Plan, proc_stats};
use crate::seed::{self, ApiKey, Bearer, DevCredentials};
use crate::suite::RunningSuite;

/// A created conversation not offered within this long counts as an error (issue 7).
const OFFER_DEADLINE: Duration = Duration::from_secs(30);
/// Longest the set-up of a later, larger agent count may take, estimated from the first
/// count's pace; beyond it that count is skipped (and the skip recorded) to keep the run
/// bounded.
const SETUP_BUDGET: Duration = Duration::from_secs(60);
/// Set-up calls in flight: enough to hide round trips, few enough not to queue up in the
/// suite behind one another.
const SETUP_IN_FLIGHT: usize = 16;
/// Longest the agents may take between runs to finish the conversations in hand.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest to wait for routing-svc to count the whole backlog as waiting.
const BACKLOG_SETTLE: Duration = Duration::from_secs(30);
/// Lifetime of the agents' bearer tokens: longer than any run.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The absolute goal for created → offered.
const OFFER_GOAL: &str = "p99 <= 50 ms (100/s, 2,000 agents)";

type AgentClient =
    routing::agent_service_client::AgentServiceClient<InterceptedService<Channel, Bearer>>;
type QueueClient =
    routing::queue_service_client::QueueServiceClient<InterceptedService<Channel, Bearer>>;
type DirectoryClient = directory::directory_service_client::DirectoryServiceClient<
    InterceptedService<Channel, Bearer>,
>;
type Conversations<A> =
    conv::conversation_service_client::ConversationServiceClient<InterceptedService<Channel, A>>;

static NEXT_RUN: AtomicU32 = AtomicU32::new(1);

fn histogram() -> Histogram<u64> {
    // The bounds of load.rs: 1 µs to 120 s, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

// ---------------------------------------------------------------------------------------
// What the agents saw

/// The conversations a scenario created and what became of them, shared by the side that
/// creates (which knows each create's intended start) and the agents (which see the offer
/// and close the conversation); either side may come first.
#[derive(Default)]
struct Tracker {
    state: Mutex<TrackerState>,
    /// Whether agents chat (two messages each way) before ending; off for latency runs.
    chat: AtomicBool,
    /// Offers being answered right now.
    busy: AtomicI64,
}

#[derive(Default)]
struct TrackerState {
    conversations: HashMap<String, Progress>,
    /// Created → offered of each measurement run in progress.
    runs: HashMap<u32, OfferRun>,
    /// Agents' calls that failed since the last `take_errors`.
    errors: u64,
    first_error: Option<String>,
}

#[derive(Default)]
struct Progress {
    /// The measurement run that created it, and the create's intended start.
    created: Option<(u32, Instant)>,
    /// When an agent saw its first offer.
    offered: Option<Instant>,
    closed: bool,
    /// Told when the conversation is closed with wrap-up.
    waiter: Option<oneshot::Sender<()>>,
}

/// Created → offered of one run.
struct OfferRun {
    latency: Histogram<u64>,
    /// Offered within [`OFFER_DEADLINE`].
    seen: u64,
    /// Offered, but later than that.
    late: u64,
    /// Never offered by the end of the run (counted in `latency` with the time they had
    /// waited by then, a lower bound).
    missing: u64,
}

impl OfferRun {
    fn record(&mut self, latency: Duration) {
        self.latency.saturating_record(micros(latency));
        if latency <= OFFER_DEADLINE {
            self.seen += 1;
        } else {
            self.late += 1;
        }
    }
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().expect("tracker lock")
    }

    fn begin_run(&self, run: u32) {
        self.lock().runs.insert(
            run,
            OfferRun {
                latency: histogram(),
                seen: 0,
                late: 0,
                missing: 0,
            },
        );
    }

    /// The create of `id`, meant to start at `intended`, was acknowledged.
    fn created(&self, id: String, run: u32, intended: Instant) {
        let mut state = self.lock();
        let TrackerState {
            conversations,
            runs,
            ..
        } = &mut *state;
        let progress = conversations.entry(id.clone()).or_default();
        progress.created = Some((run, intended));
        if let (Some(at), Some(offers)) = (progress.offered, runs.get_mut(&run)) {
            offers.record(at.saturating_duration_since(intended));
        }
        if progress.closed {
            conversations.remove(&id);
        }
    }

    /// An agent saw the first offer of `id`; false when it was seen before.
    fn offered(&self, id: &str, at: Instant) -> bool {
        let mut state = self.lock();
        let TrackerState {
            conversations,
            runs,
            ..
        } = &mut *state;
        let progress = conversations.entry(id.to_owned()).or_default();
        if progress.offered.is_some() {
            return false;
        }
        progress.offered = Some(at);
        if let Some((run, intended)) = progress.created
            && let Some(offers) = runs.get_mut(&run)
        {
            offers.record(at.saturating_duration_since(intended));
        }
        true
    }

    /// The conversation was closed with wrap-up.
    fn closed(&self, id: &str) {
        let mut state = self.lock();
        let Some(progress) = state.conversations.get_mut(id) else {
            return;
        };
        if let Some(waiter) = progress.waiter.take() {
            let _ = waiter.send(());
            state.conversations.remove(id);
        } else if progress.created.is_some() {
            state.conversations.remove(id);
        } else {
            progress.closed = true;
        }
    }

    /// Resolves once `id` is closed with wrap-up (at once if it already is).
    fn wait_closed(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        let progress = state.conversations.entry(id.to_owned()).or_default();
        if progress.closed {
            let _ = tx.send(());
            state.conversations.remove(id);
        } else {
            progress.waiter = Some(tx);
        }
        rx
    }

    /// Offers of `run` seen so far.
    fn offers_seen(&self, run: u32) -> u64 {
        self.lock()
            .runs
            .get(&run)
            .map_or(0, |offers| offers.seen + offers.late)
    }

    /// Ends `run`: every conversation it created and no agent was offered counts as
    /// missing, with the time it waited until now.
    fn finish_run(&self, run: u32) -> OfferRun {
        let now = Instant::now();
        let mut state = self.lock();
        let mut offers = state.runs.remove(&run).expect("a run in progress");
        for progress in state.conversations.values() {
            if let Some((r, intended)) = progress.created
                && r == run
                && progress.offered.is_none()
            {
                offers
                    .latency
                    .saturating_record(micros(now.saturating_duration_since(intended)));
                offers.missing += 1;
            }
        }
        offers
    }

    fn error(&self, what: &str, err: impl std::fmt::Display) {
        let mut state = self.lock();
        state.errors += 1;
        state
            .first_error
            .get_or_insert_with(|| format!("{what}: {err}"));
    }

    fn take_errors(&self) -> (u64, Option<String>) {
        let mut state = self.lock();
        (std::mem::take(&mut state.errors), state.first_error.take())
    }

    /// Waits (bounded) until no offer is being answered.
    async fn drain(&self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.busy.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The suite, its administrator and its agents

/// One scenario's suite with the demo tenant, the administrator's and the bot's clients.
struct Stage {
    running: RunningSuite,
    credentials: Arc<DevCredentials>,
    jwt_secret: String,
    queues: QueueClient,
    directory: DirectoryClient,
    bot: Conversations<ApiKey>,
    tracker: Arc<Tracker>,
}

impl Stage {
    async fn start(dir: &Path, metrics: bool) -> anyhow::Result<Stage> {
        let (running, credentials, secrets) =
            scenarios::start_suite_with(dir, Store::Sqlite, metrics).await?;
        let clients = async {
            let gateway = seed::connect(running.addresses.gateway).await?;
            let admin = Bearer::new(&credentials.user("admin").token)?;
            anyhow::Ok((
                routing::queue_service_client::QueueServiceClient::with_interceptor(
                    gateway.clone(),
                    admin.clone(),
                ),
                directory::directory_service_client::DirectoryServiceClient::with_interceptor(
                    gateway.clone(),
                    admin,
                ),
                conv::conversation_service_client::ConversationServiceClient::with_interceptor(
                    // The creates get a connection of their own, apart from the
                    // administrator's set-up calls.
                    seed::connect(running.addresses.gateway).await?,
                    ApiKey::new(&credentials.bot.api_key)?,
                ),
            ))
        }
        .await;
        let (queues, directory, bot) = match clients {
            Ok(clients) => clients,
            Err(err) => {
                let _ = running.stop().await;
                return Err(err);
            }
        };
        Ok(Stage {
            running,
            credentials: Arc::new(credentials),
            jwt_secret: secrets.jwt_secret,
            queues,
            directory,
            bot,
            tracker: Arc::default(),
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
    }

    /// A queue of the demo program (web chat) with no member.
    async fn create_unserved_queue(&self) -> anyhow::Result<String> {
        let queue = self
            .queues
            .clone()
            .create_queue(routing::CreateQueueRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                queue: Some(routing::Queue {
                    program_id: self.credentials.program_id.clone(),
                    display_name: "Backlog (no agents)".into(),
                    accepted_channels: vec![ChatChannel::Webchat as i32],
                    assignment_method: routing::AssignmentMethod::MostAvailableCapacity as i32,
                    max_open_per_agent: 3,
                    offer_timeout: Some(prost_types::Duration {
                        seconds: 120,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .context("creating the queue no agent serves")?
            .into_inner()
            .queue
            .context("CreateQueue returned no queue")?;
        Ok(queue.id)
    }

    /// Conversations waiting in `queue_id`, as routing-svc counts them.
    async fn waiting(&self, queue_id: &str) -> anyhow::Result<i32> {
        let state = self
            .queues
            .clone()
            .get_queue_state(routing::GetQueueStateRequest {
                queue_id: queue_id.to_owned(),
            })
            .await?
            .into_inner()
            .queue_state
            .context("GetQueueState returned no state")?;
        Ok(state.waiting)
    }

    /// A create by the bot into `queue_id`.
    fn create_request(&self, queue_id: &str, i: u64) -> conv::CreateConversationRequest {
        conv::CreateConversationRequest {
            queue_id: queue_id.to_owned(),
            ..scenarios::create_request(&self.credentials, i)
        }
    }
}

/// One agent's clients, all through the gateway with the agent's own token.
#[derive(Clone)]
struct Desk {
    routing: AgentClient,
    conversations: Conversations<Bearer>,
    customer: Conversations<ApiKey>,
    wrap_up_reason: String,
    tracker: Arc<Tracker>,
}

/// The scenario's agents; each serves its offer stream until [`Floor::stop`].
#[derive(Default)]
struct Floor {
    desks: Vec<Desk>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Connections to the gateway, [`STREAMS_PER_CONNECTION`] agents on each.
    connections: Vec<Channel>,
    stop: CancellationToken,
}

impl Floor {
    /// Sets up `count` more agents: user, routing profile in the demo queue, Available, offer
    /// stream open (its snapshot read), serving.
    async fn add(&mut self, stage: &Stage, count: usize) -> anyhow::Result<()> {
        let first = self.desks.len();
        let total = first + count;
        while self.connections.len() * STREAMS_PER_CONNECTION < total {
            self.connections
                .push(seed::connect(stage.running.addresses.gateway).await?);
        }
        let customer_key = ApiKey::new(&stage.credentials.bot.api_key)?;
        let wrap_up_reason = stage
            .credentials
            .wrap_up_reason_ids
            .first()
            .cloned()
            .context("the demo queue has no wrap-up reason")?;
        let set_up: Vec<anyhow::Result<(Desk, tokio::task::JoinHandle<()>)>> =
            futures::stream::iter(first..total)
                .map(|i| {
                    let channel = self.connections[i / STREAMS_PER_CONNECTION].clone();
                    let desk_parts = (customer_key.clone(), wrap_up_reason.clone());
                    let stop = self.stop.clone();
                    async move {
                        let user_id = create_agent(stage, i).await?;
                        let token = gateway::mint_hs256_token(
                            &stage.jwt_secret,
                            "switchboard",
                            "switchboard",
                            &user_id,
                            TOKEN_TTL,
                        );
                        let bearer = Bearer::new(&token)?;
                        let desk = Desk {
                            routing: routing::agent_service_client::AgentServiceClient::with_interceptor(channel.clone(), bearer.clone()),
                            conversations: conv::conversation_service_client::ConversationServiceClient::with_interceptor(channel.clone(), bearer),
                            customer: conv::conversation_service_client::ConversationServiceClient::with_interceptor(channel, desk_parts.0),
                            wrap_up_reason: desk_parts.1,
                            tracker: stage.tracker.clone(),
                        };
                        desk.set_presence(routing::Presence::Available)
                            .await
                            .with_context(|| format!("bench agent {i}: SetPresence"))?;
                        let task = desk
                            .open(stop)
                            .await
                            .with_context(|| format!("bench agent {i}: StreamOffers"))?;
                        anyhow::Ok((desk, task))
                    }
                })
                .buffer_unordered(SETUP_IN_FLIGHT)
                .collect()
                .await;
        for outcome in set_up {
            let (desk, task) = outcome?;
            self.desks.push(desk);
            self.tasks.push(task);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.desks.len()
    }

    /// Sets every agent's presence (no new offers while Away).
    async fn set_presence(&self, presence: routing::Presence) -> anyhow::Result<()> {
        let outcomes: Vec<anyhow::Result<()>> = futures::stream::iter(&self.desks)
            .map(|desk| desk.set_presence(presence))
            .buffer_unordered(SETUP_IN_FLIGHT)
            .collect()
            .await;
        outcomes.into_iter().collect()
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A user with the agent role, created by the demo administrator through the gateway, and
/// its routing profile in the demo queue; returns the user id.
async fn create_agent(stage: &Stage, i: usize) -> anyhow::Result<String> {
    let user = stage
        .directory
        .clone()
        .create_user(directory::CreateUserRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            user: Some(directory::User {
                display_name: format!("Bench agent {i}"),
                email: format!(
                    "bench-agent-{i}-{}@bench.switchboard.invalid",
                    uuid::Uuid::new_v4().simple()
                ),
                roles: vec![directory::Role::Agent as i32],
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("bench agent {i}: CreateUser"))?
        .into_inner()
        .user
        .context("CreateUser returned no user")?;
    stage
        .queues
        .clone()
        .set_agent_profile(routing::SetAgentProfileRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            agent_profile: Some(routing::AgentProfile {
                agent_id: user.id.clone(),
                display_name: user.display_name.clone(),
                capacity_profile_id: stage.credentials.capacity_profile_id.clone(),
                queue_ids: vec![stage.credentials.queue_id.clone()],
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("bench agent {i}: SetAgentProfile"))?;
    Ok(user.id)
}

impl Desk {
    async fn set_presence(&self, presence: routing::Presence) -> anyhow::Result<()> {
        self.routing
            .clone()
            .set_presence(routing::SetPresenceRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                presence: presence as i32,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Opens the agent's offer stream and serves it until `stop`; returns once the stream's
    /// snapshot is read, so that every later offer is live.
    async fn open(&self, stop: CancellationToken) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let stream = self
            .routing
            .clone()
            .stream_offers(routing::StreamOffersRequest {})
            .await?
            .into_inner();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(self.clone().serve(stream, stop, ready_tx));
        tokio::time::timeout(CALL_TIMEOUT, ready_rx)
            .await
            .context("no snapshot in time")?
            .context("the stream ended before its snapshot")?;
        Ok(task)
    }

    async fn serve(
        self,
        mut stream: tonic::Streaming<routing::StreamOffersResponse>,
        stop: CancellationToken,
        ready: oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        let mut answers = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some(_) = answers.join_next(), if !answers.is_empty() => {}
                message = stream.message() => match message {
                    Ok(Some(message)) => match message.update {
                        // The first sight of a pending offer: answered at once.
                        Some(Update::Offer(offer))
                            if offer.state() == routing::offer::State::Pending
                                && self.tracker.offered(&offer.conversation_id, Instant::now()) =>
                        {
                            self.tracker.busy.fetch_add(1, Ordering::Relaxed);
                            answers.spawn(self.clone().answer(offer));
                        }
                        Some(Update::SnapshotEnd(_)) => {
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                        }
                        _ => {}
                    },
                    Ok(None) => {
                        self.tracker.error("StreamOffers", "the server ended the stream");
                        return;
                    }
                    Err(status) => {
                        if !stop.is_cancelled() {
                            self.tracker.error("StreamOffers", status);
                        }
                        return;
                    }
                },
            }
        }
    }

    async fn answer(self, offer: routing::Offer) {
        if let Err(err) = self.serve_conversation(&offer).await {
            self.tracker.error("answering an offer", format!("{err:#}"));
        }
        self.tracker.busy.fetch_sub(1, Ordering::Relaxed);
    }

    /// Accept, (chat,) end, wrap up: at once, as fast as the suite answers.
    async fn serve_conversation(&self, offer: &routing::Offer) -> anyhow::Result<()> {
        let id = &offer.conversation_id;
        patiently(|| {
            let mut client = self.routing.clone();
            let request = routing::AcceptOfferRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                offer_id: offer.id.clone(),
            };
            async move { client.accept_offer(request).await }
        })
        .await
        .context("AcceptOffer")?;
        if self.tracker.chat.load(Ordering::Relaxed) {
            for line in 0..2 {
                patiently(|| {
                    let mut client = self.conversations.clone();
                    let request = conv::SendMessageRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        conversation_id: id.clone(),
                        text: format!("Agent line {line}: let me look into that."),
                        ..Default::default()
                    };
                    async move { client.send_message(request).await }
                })
                .await
                .context("SendMessage (agent)")?;
                patiently(|| {
                    let mut client = self.customer.clone();
                    let request = conv::SendMessageRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        conversation_id: id.clone(),
                        text: format!("Customer line {line}: thank you."),
                        sender: conv::SenderKind::Customer as i32,
                        ..Default::default()
                    };
                    async move { client.send_message(request).await }
                })
                .await
                .context("SendMessage (customer)")?;
            }
        }
        patiently(|| {
            let mut client = self.conversations.clone();
            let request = conv::EndConversationRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                conversation_id: id.clone(),
            };
            async move { client.end_conversation(request).await }
        })
        .await
        .context("EndConversation")?;
        patiently(|| {
            let mut client = self.conversations.clone();
            let request = conv::SubmitWrapUpRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                conversation_id: id.clone(),
                wrap_up_reason_ids: vec![self.wrap_up_reason.clone()],
                ..Default::default()
            };
            async move { client.submit_wrap_up(request).await }
        })
        .await
        .context("SubmitWrapUp")?;
        self.tracker.closed(id);
        Ok(())
    }
}

/// A call, repeated while the conversation is not yet the agent's in conversation-svc: the
/// assignment reaches conversation-svc after AcceptOffer has answered, through routing-svc's
/// outbox. Within [`CALL_TIMEOUT`] in all.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::PermissionDenied
                ) && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => {
                return Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {CALL_TIMEOUT:?}"
                )));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Created → offered, open loop

/// The acknowledgements of one paced run's creates.
struct Acks {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Open loop: `rate` creates per second for `duration` into `queue_id`, each sent at its
/// intended time by a pacing thread whatever happened to the earlier ones (at most
/// `max_in_flight` outstanding; a wait for a slot counts), each acknowledged one handed to
/// the tracker as part of `run_id`. Returns the acknowledgements (latency from the intended
/// start) and the last intended start.
async fn paced_creates(
    stage: &Stage,
    queue_id: &str,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    run_id: u32,
) -> (Run, Instant) {
    let tracker = stage.tracker.clone();
    let rate = rate.max(1.0);
    let count = ((rate * duration.as_secs_f64()).round() as u64).max(1);
    let acks = Arc::new(Mutex::new(Acks {
        latency: histogram(),
        service: histogram(),
        ok: 0,
        errors: 0,
        first_error: None,
    }));
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    // Every create holds a sender; `recv` returns `None` once the pacer and all are done.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let runtime = tokio::runtime::Handle::current();
    let requests: Vec<conv::CreateConversationRequest> = (0..count)
        .map(|i| stage.create_request(queue_id, i))
        .collect();

    let cpu_before = proc_stats::cpu_time();
    let start = Instant::now() + Duration::from_millis(2);
    let pacer = {
        let (client, tracker, acks) = (stage.bot.clone(), tracker.clone(), acks.clone());
        std::thread::Builder::new()
            .name("bench-flow-pacer".into())
            .spawn(move || {
                for (i, request) in requests.into_iter().enumerate() {
                    let intended = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let (mut client, tracker, acks, slots, done) = (
                        client.clone(),
                        tracker.clone(),
                        acks.clone(),
                        slots.clone(),
                        done_tx.clone(),
                    );
                    runtime.spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        let sent = Instant::now();
                        let answer =
                            tokio::time::timeout(CALL_TIMEOUT, client.create_conversation(request))
                                .await;
                        let answered = Instant::now();
                        let outcome = match answer {
                            Ok(Ok(response)) => response
                                .into_inner()
                                .conversation
                                .map(|c| c.id)
                                .ok_or_else(|| "an answer without a conversation".to_owned()),
                            Ok(Err(status)) => Err(status.to_string()),
                            Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
                        };
                        if let Ok(id) = &outcome {
                            tracker.created(id.clone(), run_id, intended);
                        }
                        let mut acks = acks.lock().expect("acks lock");
                        acks.latency.saturating_record(micros(answered - intended));
                        acks.service.saturating_record(micros(answered - sent));
                        match outcome {
                            Ok(_) => acks.ok += 1,
                            Err(err) => {
                                acks.errors += 1;
                                acks.first_error.get_or_insert(err);
                            }
                        }
                        drop(done);
                    });
                }
            })
            .expect("spawning the pacing thread")
    };
    let _ = done_rx.recv().await;
    let acked = start.elapsed();
    let acks_cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    let _ = pacer.join();
    let acks = std::mem::replace(
        &mut *acks.lock().expect("acks lock"),
        Acks {
            latency: histogram(),
            service: histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
        },
    );
    let run = Run {
        mode: Mode::Open { rate },
        ok: acks.ok,
        errors: acks.errors,
        first_error: acks.first_error,
        elapsed: acked,
        cpu: acks_cpu,
        latency: acks.latency,
        service: Some(acks.service),
    };
    let last_intended = start + Duration::from_secs_f64((count - 1) as f64 / rate);
    (run, last_intended)
}

/// One created → offered measurement: [`paced_creates`] into `queue_id`, then the wait for
/// every created conversation's offer on an agent's stream. Returns the creates'
/// acknowledgements and created → offered, both from the intended start; a conversation
/// not offered within [`OFFER_DEADLINE`] is an error. Waits for the agents to finish the
/// run's conversations before returning.
async fn offered_run(
    stage: &Stage,
    queue_id: &str,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> (Run, Run) {
    let run_id = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
    let tracker = stage.tracker.clone();
    tracker.begin_run(run_id);
    let _ = tracker.take_errors();
    let cpu_before = proc_stats::cpu_time();
    let started = Instant::now();
    let (ack_run, last_intended) =
        paced_creates(stage, queue_id, rate, duration, max_in_flight, run_id).await;
    while tracker.offers_seen(run_id) < ack_run.ok
        && Instant::now() < last_intended + OFFER_DEADLINE
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let offers = tracker.finish_run(run_id);
    let offered_elapsed = started.elapsed();
    tracker.drain().await;
    let cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    let (agent_errors, agent_error) = tracker.take_errors();
    let first_error = match (offers.missing + offers.late, agent_error) {
        (0, agent_error) => agent_error,
        (n, _) => Some(format!(
            "{n} conversations not offered within {OFFER_DEADLINE:?} ({} never)",
            offers.missing
        )),
    };
    let offer_run = Run {
        mode: ack_run.mode,
        ok: offers.seen,
        errors: offers.missing + offers.late + agent_errors,
        first_error,
        elapsed: offered_elapsed,
        cpu,
        latency: offers.latency,
        service: None,
    };
    (ack_run, offer_run)
}

/// p50, p99 and p99.9 of created → offered against the same quantiles of a baseline run,
/// in ms; the p99 carries `goal`.
fn offer_figures(
    result: &mut ScenarioResult,
    subject: &str,
    run: &Run,
    baseline_name: &str,
    baseline: &Run,
    goal: &'static str,
) {
    for (q, label) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")] {
        let mut figure = Figure::new(
            format!("{subject}: {label} (from intended start)"),
            "ms",
            run.latency_us(q) / 1000.0,
            baseline_name,
            baseline.latency_us(q) / 1000.0,
            Better::Lower,
        );
        if q == 0.99 {
            figure = figure.goal(goal);
        }
        result.figures.push(figure);
    }
}

// ---------------------------------------------------------------------------------------
// The scenarios

/// Runs `body` on a fresh suite and stops the suite whatever the outcome.
async fn on_stage<F>(dir: &Path, body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Stage) -> anyhow::Result<()>,
{
    on_stage_with(dir, false, body).await
}

/// [`on_stage`], with the services' metrics served when `metrics`.
async fn on_stage_with<F>(dir: &Path, metrics: bool, body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Stage) -> anyhow::Result<()>,
{
    let stage = Stage::start(dir, metrics).await?;
    let outcome = body(&stage).await;
    stage.stop().await?;
    outcome
}

/// Created → offered with N agents serving the demo queue, at fixed create rates.
pub(super) async fn offer_latency(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "offer-latency",
        "sqlite",
        "created -> offered on the agent's stream (N agents through the gateway, each answering at once), creates open loop at fixed rates, vs the same creates' acknowledgement",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let mut floor = Floor::default();
        let mut per_agent: Option<Duration> = None;
        for &agents in &plan.flow_agents {
            let more = agents.saturating_sub(floor.len());
            if let Some(per_agent) = per_agent {
                let estimate = per_agent * u32::try_from(more).unwrap_or(u32::MAX);
                if estimate > SETUP_BUDGET {
                    result.runs.push(serde_json::json!({
                        "label": format!("{agents} agents skipped"),
                        "note": format!(
                            "setting up {more} more agents would take about {:.0} s (over {} s)",
                            estimate.as_secs_f64(),
                            SETUP_BUDGET.as_secs()
                        ),
                    }));
                    break;
                }
            }
            let started = Instant::now();
            floor.add(stage, more).await?;
            let took = started.elapsed();
            per_agent = Some(took / u32::try_from(more.max(1)).unwrap_or(u32::MAX));
            result.runs.push(serde_json::json!({
                "label": format!("set-up of {more} agents ({agents} in all)"),
                "elapsed_s": took.as_secs_f64(),
            }));
            for &rate in &plan.flow_rates {
                let (acks, offers) = offered_run(
                    stage,
                    &stage.credentials.queue_id,
                    rate,
                    plan.flow_time,
                    plan.open_max_in_flight,
                )
                .await;
                let what = format!("{agents} agents, {rate:.0}/s");
                result.add_run(
                    &format!("CreateConversation acknowledged, {what}, open loop"),
                    &acks,
                );
                result.add_run(&format!("created -> offered, {what}, open loop"), &offers);
                offer_figures(
                    &mut result,
                    &format!("created -> offered, {what}"),
                    &offers,
                    "the same creates acknowledged",
                    &acks,
                    OFFER_GOAL,
                );
            }
        }
        result.memory_figure(idle);
        floor.stop().await;
        Ok(())
    })
    .await?;
    Ok(result)
}

/// Created → offered in the demo queue beside a backlog in a queue no agent serves, against
/// the same measurement before the backlog existed.
pub(super) async fn backlog_isolation(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "backlog-isolation",
        "sqlite",
        "created -> offered in the demo queue beside a backlog of K waiting conversations in a queue no agent serves, vs the same before the backlog existed",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let agents = plan.flow_agents.first().copied().unwrap_or(1);
        let rate = plan.flow_rates.iter().copied().fold(1.0, f64::max);
        let mut floor = Floor::default();
        floor.add(stage, agents).await?;
        let demo_queue = stage.credentials.queue_id.clone();

        let (acks_before, before) = offered_run(
            stage,
            &demo_queue,
            rate,
            plan.flow_time,
            plan.open_max_in_flight,
        )
        .await;
        result.add_run(
            "CreateConversation acknowledged, no backlog, open loop",
            &acks_before,
        );
        result.add_run("created -> offered, no backlog, open loop", &before);

        let backlog_queue = stage.create_unserved_queue().await?;
        let backlog_target: Target = {
            let client = stage.bot.clone();
            let requests = Arc::new(Mutex::new(
                (0..plan.backlog)
                    .map(|i| stage.create_request(&backlog_queue, i))
                    .collect::<Vec<_>>(),
            ));
            scenarios::target(move |_| {
                let mut client = client.clone();
                let request = requests.lock().expect("requests lock").pop();
                async move {
                    let request = request.context("more creates than planned")?;
                    client.create_conversation(request).await?;
                    Ok(())
                }
            })
        };
        // As fast as the suite takes them, bounded in count and time.
        let filled = load::closed_loop(
            &backlog_target,
            plan.in_flight,
            plan.backlog,
            plan.backlog_time,
        )
        .await;
        result.add_run(
            "backlog creates into the queue no agent serves, closed loop",
            &filled,
        );
        let settle = Instant::now() + BACKLOG_SETTLE;
        let mut waiting = stage.waiting(&backlog_queue).await?;
        while u64::try_from(waiting).unwrap_or(0) < filled.ok && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waiting = stage.waiting(&backlog_queue).await?;
        }
        result.runs.push(serde_json::json!({
            "label": "backlog waiting in routing-svc before the measurement",
            "waiting": waiting,
            "created": filled.ok,
        }));

        let (acks_after, after) = offered_run(
            stage,
            &demo_queue,
            rate,
            plan.flow_time,
            plan.open_max_in_flight,
        )
        .await;
        result.add_run(
            &format!("CreateConversation acknowledged, backlog of {waiting}, open loop"),
            &acks_after,
        );
        result.add_run(
            &format!("created -> offered, backlog of {waiting}, open loop"),
            &after,
        );
        offer_figures(
            &mut result,
            &format!(
                "created -> offered, {agents} agents, {rate:.0}/s, beside a backlog of {waiting}"
            ),
            &after,
            "the same before the backlog existed",
            &before,
            "~1; p99 <= 50 ms",
        );
        result.memory_figure(idle);
        floor.stop().await;
        Ok(())
    })
    .await?;
    Ok(result)
}

/// Whole conversations per second (create, offer, accept, two messages each way, end,
/// wrap-up), closed loop, against create-only in the same suite.
pub(super) async fn lifecycle(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "lifecycle",
        "sqlite",
        "whole conversations per second (create, offer, accept, two messages each way, end, wrap-up) through the gateway, closed loop, vs create-only",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let agents = plan.flow_agents.first().copied().unwrap_or(1);
        let mut floor = Floor::default();
        floor.add(stage, agents).await?;
        stage.tracker.chat.store(true, Ordering::Relaxed);
        let queue_id = stage.credentials.queue_id.clone();

        let whole: Target = {
            let (client, tracker, credentials) = (
                stage.bot.clone(),
                stage.tracker.clone(),
                stage.credentials.clone(),
            );
            let queue_id = queue_id.clone();
            scenarios::target(move |i| {
                let (mut client, tracker) = (client.clone(), tracker.clone());
                let request = conv::CreateConversationRequest {
                    queue_id: queue_id.clone(),
                    ..scenarios::create_request(&credentials, i)
                };
                async move {
                    let conversation = client
                        .create_conversation(request)
                        .await?
                        .into_inner()
                        .conversation
                        .context("an answer without a conversation")?;
                    tracker
                        .wait_closed(&conversation.id)
                        .await
                        .context("the tracker went away")?;
                    Ok(())
                }
            })
        };
        let create_only: Target = {
            let (client, credentials) = (stage.bot.clone(), stage.credentials.clone());
            scenarios::target(move |i| {
                let mut client = client.clone();
                let request = scenarios::create_request(&credentials, i);
                async move {
                    client.create_conversation(request).await?;
                    Ok(())
                }
            })
        };
        // A whole conversation is a dozen calls: a smaller warm-up than the plan's.
        let warm_up = plan.warm_up_calls.min(4 * plan.in_flight as u64);
        load::warm_up(&whole, plan.in_flight, warm_up)
            .await
            .context("warming up the lifecycle")?;
        let mut runs = Vec::new();
        for _ in 0..plan.rounds {
            let mut run =
                load::closed_loop(&whole, plan.in_flight, plan.closed_calls, plan.closed_time)
                    .await;
            let (agent_errors, agent_error) = stage.tracker.take_errors();
            run.errors += agent_errors;
            if run.first_error.is_none() {
                run.first_error = agent_error;
            }
            runs.push(run);
        }
        stage.tracker.drain().await;
        // Create-only after the lifecycle rounds, with every agent Away: what it creates
        // stays waiting and would otherwise be served during a later lifecycle round.
        floor.set_presence(routing::Presence::Away).await?;
        load::warm_up(&create_only, plan.in_flight, warm_up)
            .await
            .context("warming up create-only")?;
        let mut base_runs = Vec::new();
        for _ in 0..plan.rounds {
            base_runs.push(
                load::closed_loop(
                    &create_only,
                    plan.in_flight,
                    plan.closed_calls,
                    plan.closed_time,
                )
                .await,
            );
        }
        for run in &runs {
            result.add_run("whole conversation, closed loop", run);
        }
        for run in &base_runs {
            result.add_run("CreateConversation only (agents Away), closed loop", run);
        }
        let subject = scenarios::best(runs);
        let base = scenarios::best(base_runs);
        let n = plan.in_flight;
        result.figures.push(
            Figure::new(
                format!("whole conversations, {agents} agents: max throughput ({n} in flight)"),
                "conv/s",
                subject.throughput(),
                "CreateConversation only",
                base.throughput(),
                Better::Higher,
            )
            .goal(">= 0.25"),
        );
        result.figures.push(Figure::new(
            "whole conversation: process CPU per conversation (closed loop)",
            "µs",
            subject.cpu_per_call_us(),
            "CreateConversation only",
            base.cpu_per_call_us(),
            Better::Lower,
        ));
        result.memory_figure(idle);
        floor.stop().await;
        Ok(())
    })
    .await?;
    Ok(result)
}

/// Cumulative buckets `(upper bound in s, count)` of the Prometheus histogram `name`, and the
/// value of the gauge `gauge`, from `GET /metrics` on `addr`.
async fn scrape(
    addr: std::net::SocketAddr,
    name: &'static str,
    gauge: &'static str,
) -> anyhow::Result<(Vec<(f64, u64)>, f64)> {
    // A plain HTTP/1.0 request: the client needs nothing more, and this crate no HTTP client.
    let text = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(&addr, CALL_TIMEOUT)?;
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })
    .await??;
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let bucket = format!("{name}_bucket");
    let mut buckets = Vec::new();
    let mut pending = None;
    for line in text.lines() {
        if let Some(labels) = line.strip_prefix(bucket.as_str()) {
            let le = labels
                .split("le=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .context("a bucket without le")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()?
            };
            buckets.push((le, value(line).context("a bucket without a count")? as u64));
        } else if line.starts_with(gauge)
            && matches!(line.as_bytes().get(gauge.len()), Some(b' ' | b'{'))
        {
            pending = value(line);
        }
    }
    anyhow::ensure!(!buckets.is_empty(), "no {name} on {addr}");
    Ok((buckets, pending.unwrap_or(0.0)))
}

/// The upper bound (in ms) of the bucket holding quantile `q` of the observations between
/// two scrapes; the last finite bound when it falls in `+Inf`.
fn bucket_quantile_ms(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> f64 {
    let count = |buckets: &[(f64, u64)], le: f64| {
        buckets
            .iter()
            .find(|(bound, _)| *bound == le)
            .map_or(0, |(_, n)| *n)
    };
    let deltas: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, n)| (le, n.saturating_sub(count(before, le))))
        .collect();
    let total = deltas.last().map_or(0, |(_, n)| *n);
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let last_finite = deltas
        .iter()
        .rev()
        .find(|(le, _)| le.is_finite())
        .map_or(0.0, |(le, _)| *le);
    deltas
        .iter()
        .find(|(_, n)| *n >= rank)
        .map_or(last_finite, |(le, _)| le.min(last_finite))
        * 1000.0
}

/// Acknowledged → enqueued: conversation-svc's outbox delivery lag (its Prometheus histogram)
/// at fixed create rates, against the same creates' acknowledgement latency.
pub(super) async fn outbox_lag(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    const LAG: &str = conversation_svc::outbox::SERIES.lag_name;
    const PENDING: &str = conversation_svc::outbox::SERIES.pending_name;
    let mut result = scenarios::scenario(
        "outbox-lag",
        "sqlite",
        "acknowledged -> enqueued in routing-svc (conversation-svc's conversation_outbox_delivery_lag_seconds, bucket bounds) with creates open loop at fixed rates and no agent, vs the same creates' acknowledgement",
    );
    on_stage_with(dir, true, async |stage| {
        let idle = proc_stats::rss_kib();
        let metrics = stage
            .running
            .addresses
            .metrics
            .iter()
            .find(|(name, _)| *name == "conversation-svc")
            .map(|(_, addr)| *addr)
            .context("conversation-svc serves no metrics")?;
        for &rate in &plan.outbox_rates {
            let (before, _) = scrape(metrics, LAG, PENDING).await?;
            let run_id = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
            let (acks, _) = paced_creates(
                stage,
                &stage.credentials.queue_id,
                rate,
                plan.flow_time,
                plan.open_max_in_flight,
                run_id,
            )
            .await;
            // Every command of the run delivered (or the wait bounded) before reading.
            let settle = Instant::now() + DRAIN_TIMEOUT;
            let (mut after, mut pending) = scrape(metrics, LAG, PENDING).await?;
            while pending > 0.0 && Instant::now() < settle {
                tokio::time::sleep(Duration::from_millis(50)).await;
                (after, pending) = scrape(metrics, LAG, PENDING).await?;
            }
            let mut acks = acks;
            if pending > 0.0 {
                acks.errors += 1;
                acks.first_error.get_or_insert(format!(
                    "{pending} outbox commands still pending {DRAIN_TIMEOUT:?} after the run"
                ));
            }
            result.add_run(
                &format!("CreateConversation acknowledged, {rate:.0}/s, open loop"),
                &acks,
            );
            let total = |buckets: &[(f64, u64)]| buckets.last().map_or(0, |(_, n)| *n);
            let delivered = total(&after).saturating_sub(total(&before));
            result.runs.push(serde_json::json!({
                "label": format!("outbox deliveries, {rate:.0}/s"),
                "delivered": delivered,
                "buckets_before": before,
                "buckets_after": after,
            }));
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                let mut figure = Figure::new(
                    format!(
                        "acknowledged -> enqueued at {rate:.0}/s: {label} (bucket upper bound)"
                    ),
                    "ms",
                    bucket_quantile_ms(&before, &after, q),
                    format!("the same creates acknowledged, {label}"),
                    acks.latency_us(q) / 1000.0,
                    Better::Lower,
                );
                if q == 0.99 {
                    figure = figure.goal("p99 <= 100 ms");
                }
                result.figures.push(figure);
            }
        }
        result.memory_figure(idle);
        Ok(())
    })
    .await?;
    Ok(result)
}
