//! routing-svc on its own, on a fresh SQLite file (or a fresh PostgreSQL database shared by
//! several replicas), with the two services it calls played by a small in-process
//! stand-in, and the internal event stream followed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use switchboard_proto::common::v1::Channel as ChatChannel;
use switchboard_proto::conversation::internal::v1 as cpb;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_server::{
    ConversationInternalService, ConversationInternalServiceServer,
};
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::directory::internal::v1 as dpb;
use switchboard_proto::directory::internal::v1::directory_internal_service_server::{
    DirectoryInternalService, DirectoryInternalServiceServer,
};
use switchboard_proto::directory::v1::Role as DirectoryRole;
use switchboard_proto::routing::internal::v1 as ipb;
use switchboard_proto::routing::internal::v1::routing_internal_service_client::RoutingInternalServiceClient;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::agent_service_client::AgentServiceClient;
use switchboard_proto::routing::v1::queue_service_client::QueueServiceClient;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::identity::{
    Identity, IdentityKey, PrincipalKind, Role, SignedChannel, identity_of, signed_channel,
};
use switchboard_server_kit::server::{ServeOptions, ShutdownSignal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::bench::load::CALL_TIMEOUT;

/// Set-up (and clean-up) calls in flight: enough to hide round trips on two cores, few
/// enough that they do not queue up behind the one SQLite writer.
pub(super) const SETUP_IN_FLIGHT: usize = 32;
/// Longest a stopping server may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// routing-svc serving one tenant (as one or more replicas on one database), its
/// administrator's and conversation-svc's clients, and what its event stream showed.
pub(super) struct RoutingStage {
    pub(super) tenant_id: String,
    program_id: String,
    /// An administrator who is also a supervisor (sets profiles, and presence for agents),
    /// on the first replica.
    admin: QueueServiceClient<SignedChannel>,
    supervisor: AgentServiceClient<SignedChannel>,
    /// Signed as conversation-svc, one per replica in replica order: enqueues and
    /// cancellations (the first replica's unless a measurement spreads them).
    pub(super) internal: Vec<RoutingInternalServiceClient<SignedChannel>>,
    pub(super) observer: Arc<Observer>,
    neighbours: Neighbours,
    replicas: Vec<(ShutdownSignal, JoinHandle<anyhow::Result<()>>)>,
    neighbours_shutdown: ShutdownSignal,
    neighbours_task: JoinHandle<Result<(), switchboard_server_kit::ServeError>>,
    follow_stop: CancellationToken,
    follow_tasks: Vec<JoinHandle<()>>,
}

impl RoutingStage {
    /// Starts the stand-in and one routing-svc (the defaults of `switchboard dev`: matcher
    /// tick, full pass and event poll as shipped) on a SQLite file in `dir`, creates a
    /// program, and follows the event log from its start; returns once the stream has
    /// caught up.
    pub(super) async fn start(dir: &Path) -> anyhow::Result<RoutingStage> {
        let url = format!("sqlite://{}", dir.join("routing.db").display());
        RoutingStage::start_on(&url, 1).await
    }

    /// [`RoutingStage::start`] with `replicas` routing-svc processes' worth (each its own
    /// server, pool, matcher and expiry, in this process) on the database at `database_url`,
    /// the event log followed on each replica (an event counts when first seen on any).
    pub(super) async fn start_on(
        database_url: &str,
        replicas: usize,
    ) -> anyhow::Result<RoutingStage> {
        let secret = format!("bench-identity-{}", uuid::Uuid::new_v4().simple());
        let key = IdentityKey::new(&secret)?;
        let tenant_id = uuid::Uuid::new_v4().to_string();
        let neighbours = Neighbours {
            tenant_id: tenant_id.clone(),
            agents: Arc::default(),
        };

        let neighbours_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let neighbours_url = format!("http://{}", neighbours_listener.local_addr()?);
        let neighbours_shutdown = ShutdownSignal::new();
        let mut options = ServeOptions::new("bench-neighbours");
        options.identity = Some(key.clone());
        let routes = Routes::new(ConversationInternalServiceServer::new(neighbours.clone()))
            .add_service(DirectoryInternalServiceServer::new(neighbours.clone()));
        let neighbours_task = tokio::spawn(switchboard_server_kit::server::serve(
            options,
            routes,
            neighbours_listener,
            neighbours_shutdown.clone(),
        ));

        let mut urls = Vec::new();
        let mut started = Vec::new();
        for _ in 0..replicas.max(1) {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let addr = listener.local_addr()?;
            urls.push(format!("http://{addr}"));
            let config = routing_svc::Config {
                listen: addr,
                metrics_listen: None,
                database_url: database_url.to_owned(),
                identity_secret: secret.clone(),
                conversation_url: neighbours_url.clone(),
                directory_url: neighbours_url.clone(),
                ..Default::default()
            };
            let shutdown = ShutdownSignal::new();
            let task = tokio::spawn(routing_svc::serve(config, listener, shutdown.clone()));
            started.push((shutdown, task));
            if urls.len() == 1 && replicas > 1 {
                // The first replica migrates the database before the others open it.
                if let Err(err) = wait_until_serving(addr).await {
                    started.iter().for_each(|(shutdown, _)| shutdown.trigger());
                    neighbours_shutdown.trigger();
                    return Err(err);
                }
            }
        }
        let url = urls[0].clone();

        let admin_identity = Identity {
            tenant_id: tenant_id.clone(),
            tenant_ancestry: Vec::new(),
            principal_id: uuid::Uuid::new_v4().to_string(),
            principal_kind: PrincipalKind::User,
            display_name: "Bench administrator".into(),
            roles: vec![Role::Administrator, Role::Supervisor],
            enabled_supervisor_actions: Vec::new(),
            time_zone: String::new(),
            reopen_window_secs: 0,
        };
        let admin_channel = signed_channel(&url, key.clone(), admin_identity)?;
        let observer = Arc::new(Observer::default());
        let follow_stop = CancellationToken::new();
        let mut stage = RoutingStage {
            tenant_id,
            program_id: String::new(),
            admin: QueueServiceClient::new(admin_channel.clone()),
            supervisor: AgentServiceClient::new(admin_channel),
            internal: urls
                .iter()
                .map(|url| {
                    Ok(RoutingInternalServiceClient::new(signed_channel(
                        url,
                        key.clone(),
                        Identity::service("conversation-svc"),
                    )?))
                })
                .collect::<anyhow::Result<_>>()?,
            observer: observer.clone(),
            neighbours,
            replicas: started,
            neighbours_shutdown,
            neighbours_task,
            follow_stop: follow_stop.clone(),
            follow_tasks: Vec::new(),
        };
        let ready = async {
            for url in &urls {
                // Its own connection, as reporting-svc would have: the stream's reads do
                // not share a connection with the calls being measured.
                let mut events = RoutingInternalServiceClient::new(signed_channel(
                    url,
                    key.clone(),
                    Identity::service("reporting-svc"),
                )?);
                let stream = tokio::time::timeout(
                    CALL_TIMEOUT,
                    events.subscribe(ipb::SubscribeRequest { after_sequence: 0 }),
                )
                .await
                .context("routing-svc did not answer Subscribe in time")??
                .into_inner();
                let (caught_up_tx, caught_up_rx) = oneshot::channel();
                stage
                    .follow_tasks
                    .push(tokio::spawn(observer.clone().follow(
                        stream,
                        follow_stop.clone(),
                        caught_up_tx,
                    )));
                tokio::time::timeout(CALL_TIMEOUT, caught_up_rx)
                    .await
                    .context("the event stream did not catch up in time")?
                    .context("the event stream ended before catching up")?;
            }
            stage.program_id = stage
                .admin
                .clone()
                .create_program(routing::CreateProgramRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    program: Some(routing::Program {
                        display_name: "Bench".into(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .program
                .context("CreateProgram returned no program")?
                .id;
            anyhow::Ok(())
        }
        .await;
        match ready {
            Ok(()) => Ok(stage),
            Err(err) => {
                let _ = stage.stop().await;
                Err(err.context("starting routing-svc"))
            }
        }
    }

    /// Stops the streams, every replica and the stand-in; the first error a replica stopped
    /// with.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.follow_stop.cancel();
        for task in self.follow_tasks {
            let _ = task.await;
        }
        for (shutdown, _) in &self.replicas {
            shutdown.trigger();
        }
        let mut outcome = Ok(());
        for (_, task) in self.replicas {
            let stopped = match tokio::time::timeout(STOP_TIMEOUT, task).await {
                Ok(Ok(stopped)) => stopped.context("routing-svc stopped with an error"),
                Ok(Err(join)) => Err(anyhow::anyhow!("routing-svc panicked: {join}")),
                Err(_) => Err(anyhow::anyhow!(
                    "routing-svc did not stop within {STOP_TIMEOUT:?}"
                )),
            };
            if outcome.is_ok() {
                outcome = stopped;
            }
        }
        self.neighbours_shutdown.trigger();
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.neighbours_task).await;
        outcome
    }

    /// Creates `queue` in the stage's program (web chat unless it says otherwise); its id.
    pub(super) async fn create_queue(&self, queue: routing::Queue) -> anyhow::Result<String> {
        let accepted_channels = if queue.accepted_channels.is_empty() {
            vec![ChatChannel::Webchat as i32]
        } else {
            queue.accepted_channels.clone()
        };
        let queue = self
            .admin
            .clone()
            .create_queue(routing::CreateQueueRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                queue: Some(routing::Queue {
                    program_id: self.program_id.clone(),
                    accepted_channels,
                    ..queue
                }),
            })
            .await
            .context("CreateQueue")?
            .into_inner()
            .queue
            .context("CreateQueue returned no queue")?;
        Ok(queue.id)
    }

    /// Sets the assignment method of queue `queue_id` (manual pick holds its conversations
    /// from the matcher; any other lets the matcher route them, from a pass it wakes now).
    pub(super) async fn set_assignment_method(
        &self,
        queue_id: &str,
        method: routing::AssignmentMethod,
    ) -> anyhow::Result<()> {
        self.update_queue(
            routing::Queue {
                id: queue_id.to_owned(),
                assignment_method: method as i32,
                ..Default::default()
            },
            "assignment_method",
        )
        .await
    }

    /// Sets the offer timeout of queue `queue_id`, for the offers it makes from now on.
    pub(super) async fn set_offer_timeout(
        &self,
        queue_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.update_queue(
            routing::Queue {
                id: queue_id.to_owned(),
                offer_timeout: Some(super::proto_duration(timeout)),
                ..Default::default()
            },
            "offer_timeout",
        )
        .await
    }

    /// Updates the one setting `path` of `queue` (which carries its id).
    async fn update_queue(&self, queue: routing::Queue, path: &str) -> anyhow::Result<()> {
        self.admin
            .clone()
            .update_queue(routing::UpdateQueueRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                queue: Some(queue),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![path.to_owned()],
                }),
            })
            .await
            .with_context(|| format!("UpdateQueue of {path}"))?;
        Ok(())
    }

    /// A capacity profile of `units` units (a chat costs one); its id.
    pub(super) async fn create_capacity_profile(&self, units: i32) -> anyhow::Result<String> {
        let profile = self
            .admin
            .clone()
            .create_capacity_profile(routing::CreateCapacityProfileRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                capacity_profile: Some(routing::CapacityProfile {
                    display_name: format!("Bench agents, {units} units"),
                    total_units: units,
                    ..Default::default()
                }),
            })
            .await
            .context("CreateCapacityProfile")?
            .into_inner()
            .capacity_profile
            .context("CreateCapacityProfile returned no profile")?;
        Ok(profile.id)
    }

    /// `count` new agents of the tenant, each given a routing profile (capacity profile
    /// `profile_id`, member of `queue_ids`, with `skills`) by the administrator and set
    /// Available by the supervisor, [`SETUP_IN_FLIGHT`] agents at a time; their ids.
    pub(super) async fn add_agents(
        &self,
        count: usize,
        profile_id: &str,
        queue_ids: &[String],
        skills: &[routing::AgentSkill],
    ) -> anyhow::Result<Vec<String>> {
        let ids: Vec<String> = (0..count)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        self.neighbours
            .agents
            .lock()
            .expect("directory lock")
            .extend(ids.iter().cloned());
        let outcomes: Vec<anyhow::Result<()>> = futures::stream::iter(ids.iter().cloned())
            .map(|agent_id| {
                let (mut admin, mut supervisor) = (self.admin.clone(), self.supervisor.clone());
                let profile = routing::AgentProfile {
                    agent_id: agent_id.clone(),
                    capacity_profile_id: profile_id.to_owned(),
                    queue_ids: queue_ids.to_vec(),
                    skills: skills.to_vec(),
                    ..Default::default()
                };
                async move {
                    admin
                        .set_agent_profile(routing::SetAgentProfileRequest {
                            request_id: uuid::Uuid::new_v4().to_string(),
                            agent_profile: Some(profile),
                        })
                        .await
                        .with_context(|| format!("SetAgentProfile of {agent_id}"))?;
                    supervisor
                        .set_presence(routing::SetPresenceRequest {
                            request_id: uuid::Uuid::new_v4().to_string(),
                            agent_id: agent_id.clone(),
                            presence: routing::Presence::Available as i32,
                            reason: String::new(),
                        })
                        .await
                        .with_context(|| format!("SetPresence of {agent_id}"))?;
                    Ok(())
                }
            })
            .buffer_unordered(SETUP_IN_FLIGHT)
            .collect()
            .await;
        outcomes.into_iter().collect::<anyhow::Result<()>>()?;
        Ok(ids)
    }

    /// Takes the conversations out of their queue (withdrawing their pending offers, so the
    /// agents' units come back), as conversation-svc does when a customer leaves; then
    /// forgets what the stream showed of them. Returns the first failure.
    pub(super) async fn cancel(&self, conversation_ids: &[String]) -> anyhow::Result<()> {
        let outcomes: Vec<anyhow::Result<()>> =
            futures::stream::iter(conversation_ids.iter().cloned())
                .map(|conversation_id| {
                    let mut client = self.internal[0].clone();
                    let request = ipb::CancelWaitingRequest {
                        tenant_id: self.tenant_id.clone(),
                        conversation_id,
                    };
                    async move {
                        client
                            .cancel_waiting(request)
                            .await
                            .context("CancelWaiting")?;
                        Ok(())
                    }
                })
                .buffer_unordered(SETUP_IN_FLIGHT)
                .collect()
                .await;
        self.observer.forget(conversation_ids);
        outcomes.into_iter().collect()
    }

    /// Every offer of queue `queue_id`, read a page of 500 at a time as a supervisor would.
    pub(super) async fn offers_of_queue(
        &self,
        queue_id: &str,
    ) -> anyhow::Result<Vec<routing::Offer>> {
        let mut offers = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .admin
                .clone()
                .list_offers(routing::ListOffersRequest {
                    queue_id: queue_id.to_owned(),
                    page_size: 500,
                    page_token,
                    ..Default::default()
                })
                .await
                .context("ListOffers")?
                .into_inner();
            offers.extend(page.offers);
            if page.next_page_token.is_empty() {
                return Ok(offers);
            }
            page_token = page.next_page_token;
        }
    }
}

/// Waits until the routing-svc on `addr` reports SERVING (it has migrated its database by
/// then).
async fn wait_until_serving(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    while !crate::suite::serving(addr).await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "routing-svc on {addr} did not report SERVING within {CALL_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// What conversation-svc would send to enqueue a new web chat `conversation_id`.
pub(super) fn enqueue_request(
    tenant_id: &str,
    queue_id: &str,
    conversation_id: &str,
) -> ipb::EnqueueConversationRequest {
    ipb::EnqueueConversationRequest {
        tenant_id: tenant_id.to_owned(),
        conversation_id: conversation_id.to_owned(),
        queue_id: queue_id.to_owned(),
        channel: ChatChannel::Webchat as i32,
        customer_display_name: "Bench customer".into(),
        enqueue_key: "create".into(),
        wait_start_time: None,
        channel_address: format!("bench-visitor-{conversation_id}"),
    }
}

/// New conversation ids.
pub(super) fn new_ids(count: u64) -> Vec<String> {
    (0..count)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------
// What the event stream showed

/// The offers routing-svc's event log showed, as one subscriber (reporting-svc's place)
/// saw them: one stream for every agent, instead of one offer stream per agent.
#[derive(Default)]
pub(super) struct Observer {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// The first `offer.created` of each conversation: when it was read.
    offered: HashMap<String, Instant>,
    /// Each `offer.timed_out`, by offer id: when it was read, in µs since the epoch (the
    /// clock of offers' `expire_time`).
    timed_out: HashMap<String, i64>,
    /// Why the stream stopped early, if it did.
    error: Option<String>,
}

impl Observer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("observer lock")
    }

    async fn follow(
        self: Arc<Self>,
        mut stream: tonic::Streaming<ipb::SubscribeResponse>,
        stop: CancellationToken,
        caught_up: oneshot::Sender<()>,
    ) {
        use ipb::subscribe_response::Update;
        let mut caught_up = Some(caught_up);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                message = stream.message() => match message {
                    Ok(Some(message)) => match message.update {
                        Some(Update::Event(event)) => self.record(event),
                        Some(Update::CaughtUp(_)) => {
                            if let Some(caught_up) = caught_up.take() {
                                let _ = caught_up.send(());
                            }
                        }
                        _ => {}
                    },
                    Ok(None) => {
                        self.lock().error.get_or_insert_with(|| "the server ended the event stream".into());
                        return;
                    }
                    Err(status) => {
                        if !stop.is_cancelled() {
                            self.lock().error.get_or_insert_with(|| format!("event stream: {status}"));
                        }
                        return;
                    }
                },
            }
        }
    }

    fn record(&self, event: ipb::RoutingEvent) {
        let (at, wall) = (Instant::now(), now_micros());
        match event.event_type() {
            ipb::RoutingEventType::OfferCreated => {
                self.lock()
                    .offered
                    .entry(event.conversation_id)
                    .or_insert(at);
            }
            ipb::RoutingEventType::OfferTimedOut => {
                self.lock().timed_out.entry(event.offer_id).or_insert(wall);
            }
            _ => {}
        }
    }

    /// Why the stream stopped, when it stopped before the stage did.
    pub(super) fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// When each conversation's first offer was read (`None`: not yet).
    pub(super) fn offered(&self, conversation_ids: &[String]) -> Vec<Option<Instant>> {
        let seen = self.lock();
        conversation_ids
            .iter()
            .map(|id| seen.offered.get(id).copied())
            .collect()
    }

    /// Waits until every conversation was offered or `until`; then [`Observer::offered`].
    pub(super) async fn wait_offered(
        &self,
        conversation_ids: &[String],
        until: Instant,
    ) -> Vec<Option<Instant>> {
        self.wait(until, |seen| {
            conversation_ids
                .iter()
                .all(|id| seen.offered.contains_key(id))
        })
        .await;
        self.offered(conversation_ids)
    }

    /// Waits until every offer timed out or `until`; when each time-out was read, in µs
    /// since the epoch (`None`: not yet).
    pub(super) async fn wait_timed_out(
        &self,
        offer_ids: &[String],
        until: Instant,
    ) -> Vec<Option<i64>> {
        self.wait(until, |seen| {
            offer_ids.iter().all(|id| seen.timed_out.contains_key(id))
        })
        .await;
        let seen = self.lock();
        offer_ids
            .iter()
            .map(|id| seen.timed_out.get(id).copied())
            .collect()
    }

    async fn wait(&self, until: Instant, done: impl Fn(&Seen) -> bool) {
        loop {
            {
                let seen = self.lock();
                if done(&seen) || seen.error.is_some() {
                    return;
                }
            }
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Forgets the conversations (so the maps stay the size of one measurement).
    pub(super) fn forget(&self, conversation_ids: &[String]) {
        let mut seen = self.lock();
        for id in conversation_ids {
            seen.offered.remove(id);
        }
    }

    /// Forgets the offers' time-outs.
    pub(super) fn forget_timeouts(&self, offer_ids: &[String]) {
        let mut seen = self.lock();
        for id in offer_ids {
            seen.timed_out.remove(id);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The stand-in for conversation-svc and the gateway's directory

/// What routing-svc asks of its neighbours, answered at once: conversation-svc confirms
/// every assignment and overflow, the directory knows the stage's agents. Only what
/// routing-svc calls is served; nothing is stored beyond the agents' ids.
#[derive(Clone)]
struct Neighbours {
    tenant_id: String,
    agents: Arc<Mutex<HashSet<String>>>,
}

#[tonic::async_trait]
impl ConversationInternalService for Neighbours {
    async fn apply_assignment(
        &self,
        request: Request<cpb::ApplyAssignmentRequest>,
    ) -> Result<Response<cpb::ApplyAssignmentResponse>, Status> {
        identity_of(&request)?;
        let request = request.into_inner();
        Ok(Response::new(cpb::ApplyAssignmentResponse {
            conversation: Some(conv::Conversation {
                id: request.conversation_id,
                tenant_id: request.tenant_id,
                owner_agent_id: request.agent_id,
                ..Default::default()
            }),
        }))
    }

    async fn resolve_offer(
        &self,
        request: Request<cpb::ResolveOfferRequest>,
    ) -> Result<Response<cpb::ResolveOfferResponse>, Status> {
        identity_of(&request)?;
        Ok(Response::new(cpb::ResolveOfferResponse {}))
    }

    async fn release_on_logout(
        &self,
        request: Request<cpb::ReleaseOnLogoutRequest>,
    ) -> Result<Response<cpb::ReleaseOnLogoutResponse>, Status> {
        identity_of(&request)?;
        Ok(Response::new(cpb::ReleaseOnLogoutResponse {
            released: true,
        }))
    }

    async fn apply_overflow(
        &self,
        request: Request<cpb::ApplyOverflowRequest>,
    ) -> Result<Response<cpb::ApplyOverflowResponse>, Status> {
        identity_of(&request)?;
        Ok(Response::new(cpb::ApplyOverflowResponse { applied: true }))
    }

    type SubscribeStream = futures::stream::Empty<Result<cpb::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        _request: Request<cpb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented(
            "routing-svc does not follow conversation-svc",
        ))
    }
}

#[tonic::async_trait]
impl DirectoryInternalService for Neighbours {
    async fn get_users(
        &self,
        request: Request<dpb::GetUsersRequest>,
    ) -> Result<Response<dpb::GetUsersResponse>, Status> {
        identity_of(&request)?;
        let request = request.into_inner();
        let users = if request.tenant_id == self.tenant_id {
            let agents = self.agents.lock().expect("directory lock");
            request
                .user_ids
                .into_iter()
                .filter(|id| agents.contains(id))
                .map(|id| dpb::UserInfo {
                    display_name: format!("Bench agent {}", &id[..8.min(id.len())]),
                    id,
                    tenant_id: request.tenant_id.clone(),
                    roles: vec![DirectoryRole::Agent as i32],
                    active: true,
                    team_ids: Vec::new(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(dpb::GetUsersResponse { users }))
    }

    async fn get_tenant_ancestry(
        &self,
        request: Request<dpb::GetTenantAncestryRequest>,
    ) -> Result<Response<dpb::GetTenantAncestryResponse>, Status> {
        identity_of(&request)?;
        Ok(Response::new(dpb::GetTenantAncestryResponse {
            ancestor_tenant_ids: Vec::new(),
        }))
    }

    async fn list_team_members(
        &self,
        request: Request<dpb::ListTeamMembersRequest>,
    ) -> Result<Response<dpb::ListTeamMembersResponse>, Status> {
        identity_of(&request)?;
        Ok(Response::new(dpb::ListTeamMembersResponse::default()))
    }
}
