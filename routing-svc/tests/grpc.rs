//! routing-svc over gRPC, in process: the real server on a pre-bound loopback listener,
//! called with generated clients over channels that sign an identity, and a small fake
//! conversation-svc that records ApplyAssignment calls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use routing_svc::{Config, HEALTH_SERVICES, serve};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::internal::v1 as cpb;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_server::{
    ConversationInternalService, ConversationInternalServiceServer,
};
use switchboard_proto::directory::internal::v1 as dpb;
use switchboard_proto::directory::internal::v1::directory_internal_service_server::{
    DirectoryInternalService, DirectoryInternalServiceServer,
};
use switchboard_proto::directory::v1::Role as DirectoryRole;
use switchboard_proto::routing::internal::v1 as ipb;
use switchboard_proto::routing::internal::v1::routing_internal_service_client::RoutingInternalServiceClient;
use switchboard_proto::routing::v1 as pb;
use switchboard_proto::routing::v1::agent_service_client::AgentServiceClient;
use switchboard_proto::routing::v1::queue_service_client::QueueServiceClient;
use switchboard_server_kit::idempotency::{self, RequestLogConfig};
use switchboard_server_kit::identity::{
    Identity, IdentityKey, PrincipalKind, Role, SignedChannel, identity_of, signed_channel,
};
use switchboard_server_kit::server::{ServeOptions, ShutdownSignal};
use switchboard_server_kit::testing::ScratchDatabases;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::StatusExt;
use uuid::Uuid;

const SECRET: &str = "routing-test-secret-0123456789";

fn key() -> IdentityKey {
    IdentityKey::new(SECRET).unwrap()
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

fn user(tenant: &str, user_id: &str, roles: &[Role]) -> Identity {
    Identity {
        tenant_id: tenant.to_owned(),
        tenant_ancestry: vec![],
        principal_id: user_id.to_owned(),
        principal_kind: PrincipalKind::User,
        display_name: format!("user {user_id}"),
        roles: roles.to_vec(),
        enabled_supervisor_actions: vec![],
        time_zone: String::new(),
        reopen_window_secs: 0,
    }
}

// --- fake conversation-svc ------------------------------------------------------------

/// How the fake answers ApplyAssignment.
#[derive(Clone, Copy, Debug)]
enum FakeMode {
    /// UNAVAILABLE for the first `n` calls, then OK.
    UnavailableFirst(usize),
    /// FAILED_PRECONDITION: the conversation was closed meanwhile.
    Refuse,
}

#[derive(Default)]
struct FakeLog {
    calls: usize,
    applied: Vec<cpb::ApplyAssignmentRequest>,
    overflows: Vec<cpb::ApplyOverflowRequest>,
    callers: Vec<Identity>,
}

struct FakeConversation {
    mode: FakeMode,
    log: Arc<Mutex<FakeLog>>,
}

#[tonic::async_trait]
impl ConversationInternalService for FakeConversation {
    async fn apply_assignment(
        &self,
        request: Request<cpb::ApplyAssignmentRequest>,
    ) -> Result<Response<cpb::ApplyAssignmentResponse>, Status> {
        let identity = identity_of(&request)?;
        let mut log = self.log.lock().unwrap();
        log.calls += 1;
        log.callers.push(identity);
        match self.mode {
            FakeMode::UnavailableFirst(n) if log.calls <= n => {
                Err(Status::unavailable("conversation-svc is starting"))
            }
            FakeMode::Refuse => Err(Status::failed_precondition("conversation is closed")),
            FakeMode::UnavailableFirst(_) => {
                let req = request.into_inner();
                let conversation = switchboard_proto::conversation::v1::Conversation {
                    id: req.conversation_id.clone(),
                    tenant_id: req.tenant_id.clone(),
                    owner_agent_id: req.agent_id.clone(),
                    ..Default::default()
                };
                log.applied.push(req);
                Ok(Response::new(cpb::ApplyAssignmentResponse {
                    conversation: Some(conversation),
                }))
            }
        }
    }

    async fn resolve_offer(
        &self,
        _request: Request<cpb::ResolveOfferRequest>,
    ) -> Result<Response<cpb::ResolveOfferResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn release_on_logout(
        &self,
        _request: Request<cpb::ReleaseOnLogoutRequest>,
    ) -> Result<Response<cpb::ReleaseOnLogoutResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn apply_overflow(
        &self,
        request: Request<cpb::ApplyOverflowRequest>,
    ) -> Result<Response<cpb::ApplyOverflowResponse>, Status> {
        identity_of(&request)?;
        let mut log = self.log.lock().unwrap();
        log.overflows.push(request.into_inner());
        Ok(Response::new(cpb::ApplyOverflowResponse { applied: true }))
    }

    type SubscribeStream = futures::stream::Empty<Result<cpb::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        _request: Request<cpb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

async fn start_fake(mode: FakeMode) -> (String, Arc<Mutex<FakeLog>>, ShutdownSignal) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(FakeLog::default()));
    let fake = FakeConversation {
        mode,
        log: log.clone(),
    };
    let shutdown = ShutdownSignal::new();
    let mut options = ServeOptions::new("fake-conversation-svc");
    options.identity = Some(key());
    let routes = Routes::new(ConversationInternalServiceServer::new(fake));
    tokio::spawn(switchboard_server_kit::server::serve(
        options,
        routes,
        listener,
        shutdown.clone(),
    ));
    (url, log, shutdown)
}

// --- fake directory (the gateway's DirectoryInternalService) ----------------------------

/// The users the fake directory holds, by id, and who asked it.
#[derive(Clone, Default)]
struct FakeDirectory {
    users: Arc<Mutex<HashMap<String, dpb::UserInfo>>>,
    callers: Arc<Mutex<Vec<Identity>>>,
}

impl FakeDirectory {
    /// Adds or replaces user `id` of `tenant`.
    fn put(&self, tenant: &str, id: &str, name: &str, roles: &[DirectoryRole], active: bool) {
        self.users.lock().unwrap().insert(
            id.to_owned(),
            dpb::UserInfo {
                id: id.to_owned(),
                tenant_id: tenant.to_owned(),
                display_name: name.to_owned(),
                roles: roles.iter().map(|r| *r as i32).collect(),
                active,
                team_ids: vec![],
            },
        );
    }
}

#[tonic::async_trait]
impl DirectoryInternalService for FakeDirectory {
    async fn get_users(
        &self,
        request: Request<dpb::GetUsersRequest>,
    ) -> Result<Response<dpb::GetUsersResponse>, Status> {
        self.callers.lock().unwrap().push(identity_of(&request)?);
        let req = request.into_inner();
        let users = self.users.lock().unwrap();
        // Like the gateway: other tenants' users and unknown ids are simply absent.
        let found = req
            .user_ids
            .iter()
            .filter_map(|id| users.get(id))
            .filter(|user| user.tenant_id == req.tenant_id)
            .cloned()
            .collect();
        Ok(Response::new(dpb::GetUsersResponse { users: found }))
    }

    async fn get_tenant_ancestry(
        &self,
        _: Request<dpb::GetTenantAncestryRequest>,
    ) -> Result<Response<dpb::GetTenantAncestryResponse>, Status> {
        Err(Status::unimplemented("routing-svc never asks for tenants"))
    }

    async fn list_team_members(
        &self,
        _: Request<dpb::ListTeamMembersRequest>,
    ) -> Result<Response<dpb::ListTeamMembersResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

/// A running fake directory; `stop` takes it down for good.
struct DirectoryServer {
    url: String,
    fake: FakeDirectory,
    shutdown: ShutdownSignal,
    task: JoinHandle<Result<(), switchboard_server_kit::ServeError>>,
}

impl DirectoryServer {
    async fn start() -> DirectoryServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeDirectory::default();
        let shutdown = ShutdownSignal::new();
        let mut options = ServeOptions::new("fake-directory");
        options.identity = Some(key());
        let routes = Routes::new(DirectoryInternalServiceServer::new(fake.clone()));
        let task = tokio::spawn(switchboard_server_kit::server::serve(
            options,
            routes,
            listener,
            shutdown.clone(),
        ));
        DirectoryServer {
            url,
            fake,
            shutdown,
            task,
        }
    }

    /// Stops the directory and waits until it no longer serves.
    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the fake directory stops")
            .unwrap()
            .unwrap();
    }
}

// --- harness --------------------------------------------------------------------------

struct Harness {
    addr: SocketAddr,
    /// The directory routing asks about users; `None` once stopped.
    directory: Option<DirectoryServer>,
    database_url: String,
    tenant: String,
    /// Directory display names of the agents, carried in their signed identities.
    names: Mutex<HashMap<String, String>>,
    shutdown: ShutdownSignal,
    server: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

fn test_config(dir: &tempfile::TempDir, conversation_url: &str) -> Config {
    Config {
        metrics_listen: None,
        database_url: format!("sqlite://{}", dir.path().join("routing.db").display()),
        identity_secret: SECRET.to_owned(),
        conversation_url: conversation_url.to_owned(),
        matcher_interval_ms: 20,
        rematch_interval_ms: 300,
        event_poll_interval_ms: 50,
        outbox_retry_initial_ms: 50,
        outbox_retry_max_ms: 200,
        conversation_timeout_ms: 2_000,
        heartbeat_interval_ms: 300,
        // Purge often, so tests see an expired request record go without waiting long.
        request_log: RequestLogConfig {
            purge_interval_ms: 20,
            ..RequestLogConfig::default()
        },
        ..Config::default()
    }
}

async fn start(conversation_url: &str, database_url: Option<&str>) -> Harness {
    start_with(conversation_url, database_url, new_id()).await
}

/// A server on `database_url` (a fresh SQLite file when `None`) acting for `tenant`.
async fn start_with(conversation_url: &str, database_url: Option<&str>, tenant: String) -> Harness {
    let runtime = tokio::runtime::Handle::current();
    start_on(&runtime, conversation_url, database_url, tenant).await
}

/// As [`start_with`], with the server (its listener, connections and background tasks) on
/// `runtime`, so that shutting that runtime down kills it the way a process dies.
async fn start_on(
    runtime: &tokio::runtime::Handle,
    conversation_url: &str,
    database_url: Option<&str>,
    tenant: String,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir, conversation_url);
    if let Some(url) = database_url {
        config.database_url = url.to_owned();
    }
    let directory = DirectoryServer::start().await;
    config.directory_url.clone_from(&directory.url);
    let listener = runtime
        .spawn(TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = ShutdownSignal::new();
    let database_url = config.database_url.clone();
    let server = runtime.spawn(serve(config, listener, shutdown.clone()));
    Harness {
        addr,
        directory: Some(directory),
        database_url,
        tenant,
        names: Mutex::new(HashMap::new()),
        shutdown,
        server,
        _dir: dir,
    }
}

/// Declares, for each named `async fn(database_url: Option<&str>)`, the tests
/// `<name>::on_sqlite` (`None`: a fresh SQLite file) and `<name>::on_postgres` (a fresh
/// database on the test PostgreSQL server, dropped afterwards), so every backend's run is
/// reported by name.
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_sqlite() {
                super::$test(None).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                let Some((databases, url)) = super::postgres_database().await else {
                    return;
                };
                super::$test(Some(&url)).await;
                databases.drop_all().await.unwrap();
            }
        }
    )+};
}

impl Harness {
    /// The fake directory's users.
    fn directory(&self) -> &FakeDirectory {
        &self.directory.as_ref().expect("directory running").fake
    }

    /// Makes `agent_id` an active agent of the harness's tenant named `name`, in the
    /// directory and in the identity its own calls carry.
    fn register_agent(&self, agent_id: &str, name: &str) {
        self.directory()
            .put(&self.tenant, agent_id, name, &[DirectoryRole::Agent], true);
        self.names
            .lock()
            .unwrap()
            .insert(agent_id.to_owned(), name.to_owned());
    }

    fn channel(&self, identity: Identity) -> SignedChannel {
        signed_channel(&format!("http://{}", self.addr), key(), identity).unwrap()
    }

    fn admin(&self) -> QueueServiceClient<SignedChannel> {
        QueueServiceClient::new(self.channel(user(&self.tenant, &new_id(), &[Role::Administrator])))
    }

    fn supervisor(&self) -> QueueServiceClient<SignedChannel> {
        QueueServiceClient::new(self.channel(user(&self.tenant, &new_id(), &[Role::Supervisor])))
    }

    /// The agent's identity, with the display name the directory holds for it.
    fn agent_identity(&self, agent_id: &str) -> Identity {
        let mut identity = user(&self.tenant, agent_id, &[Role::Agent]);
        if let Some(name) = self.names.lock().unwrap().get(agent_id) {
            identity.display_name.clone_from(name);
        }
        identity
    }

    fn agent(&self, agent_id: &str) -> AgentServiceClient<SignedChannel> {
        AgentServiceClient::new(self.channel(self.agent_identity(agent_id)))
    }

    fn internal(&self) -> RoutingInternalServiceClient<SignedChannel> {
        RoutingInternalServiceClient::new(self.channel(Identity::service("conversation-svc")))
    }

    /// A program, a chat queue with `offer_timeout`, and a 2-unit capacity profile.
    async fn setup(
        &self,
        offer_timeout: Duration,
        method: pb::AssignmentMethod,
    ) -> (String, String) {
        let mut admin = self.admin();
        let program = admin
            .create_program(pb::CreateProgramRequest {
                request_id: new_id(),
                program: Some(pb::Program {
                    display_name: "Support".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .program
            .unwrap();
        let queue = admin
            .create_queue(pb::CreateQueueRequest {
                request_id: new_id(),
                queue: Some(pb::Queue {
                    program_id: program.id.clone(),
                    display_name: "Chat".into(),
                    accepted_channels: vec![Channel::Webchat as i32],
                    assignment_method: method as i32,
                    offer_timeout: Some(prost_types::Duration {
                        seconds: i64::try_from(offer_timeout.as_secs()).unwrap(),
                        nanos: i32::try_from(offer_timeout.subsec_nanos()).unwrap(),
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .queue
            .unwrap();
        let profile = admin
            .create_capacity_profile(pb::CreateCapacityProfileRequest {
                request_id: new_id(),
                capacity_profile: Some(pb::CapacityProfile {
                    display_name: "Chat agents".into(),
                    total_units: 2,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .capacity_profile
            .unwrap();
        (queue.id, profile.id)
    }

    /// An agent profile in `queue_id`, Available, with its offer stream open.
    async fn available_agent(
        &self,
        name: &str,
        queue_id: &str,
        profile_id: &str,
    ) -> (String, Streaming<pb::StreamOffersResponse>) {
        let agent_id = new_id();
        self.register_agent(&agent_id, name);
        self.admin()
            .set_agent_profile(pb::SetAgentProfileRequest {
                request_id: new_id(),
                agent_profile: Some(pb::AgentProfile {
                    agent_id: agent_id.clone(),
                    capacity_profile_id: profile_id.into(),
                    queue_ids: vec![queue_id.into()],
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let mut agent = self.agent(&agent_id);
        let stream = agent
            .stream_offers(pb::StreamOffersRequest {})
            .await
            .unwrap()
            .into_inner();
        self.set_presence(&agent_id, pb::Presence::Available)
            .await
            .unwrap();
        (agent_id, stream)
    }

    /// The program of queue `queue_id` (for example the one [`Harness::setup`] made).
    async fn program_of(&self, queue_id: &str) -> String {
        self.admin()
            .get_queue(pb::GetQueueRequest {
                queue_id: queue_id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .queue
            .unwrap()
            .program_id
    }

    /// Another queue in `program_id` accepting `channels`.
    async fn add_queue(&self, program_id: &str, name: &str, channels: &[Channel]) -> String {
        self.admin()
            .create_queue(pb::CreateQueueRequest {
                request_id: new_id(),
                queue: Some(pb::Queue {
                    program_id: program_id.to_owned(),
                    display_name: name.into(),
                    accepted_channels: channels.iter().map(|c| *c as i32).collect(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .queue
            .unwrap()
            .id
    }

    /// Sets the agent's profile (as an administrator) to `queue_ids`; an agent the
    /// directory does not know yet is added to it first.
    async fn set_queues(&self, agent_id: &str, profile_id: &str, queue_ids: &[&str]) {
        if !self
            .directory()
            .users
            .lock()
            .unwrap()
            .contains_key(agent_id)
        {
            self.register_agent(agent_id, &format!("Agent {}", &agent_id[..8]));
        }
        self.admin()
            .set_agent_profile(pb::SetAgentProfileRequest {
                request_id: new_id(),
                agent_profile: Some(pb::AgentProfile {
                    agent_id: agent_id.to_owned(),
                    capacity_profile_id: profile_id.to_owned(),
                    queue_ids: queue_ids.iter().map(|q| (*q).to_owned()).collect(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }

    async fn set_presence(
        &self,
        agent_id: &str,
        presence: pb::Presence,
    ) -> Result<pb::AgentState, Status> {
        self.agent(agent_id)
            .set_presence(pb::SetPresenceRequest {
                request_id: new_id(),
                agent_id: String::new(),
                presence: presence as i32,
                reason: String::new(),
            })
            .await
            .map(|r| r.into_inner().agent_state.unwrap())
    }

    async fn state(&self, agent_id: &str) -> pb::AgentState {
        self.agent(agent_id)
            .get_agent_state(pb::GetAgentStateRequest {
                agent_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .agent_state
            .unwrap()
    }

    async fn enqueue(
        &self,
        queue_id: &str,
        conversation_id: &str,
    ) -> Result<pb::WaitingItem, Status> {
        self.internal()
            .enqueue_conversation(ipb::EnqueueConversationRequest {
                tenant_id: self.tenant.clone(),
                conversation_id: conversation_id.to_owned(),
                queue_id: queue_id.to_owned(),
                channel: Channel::Webchat as i32,
                customer_display_name: "Grace".into(),
                enqueue_key: "create".into(),
                wait_start_time: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                channel_address: "visitor-42".into(),
            })
            .await
            .map(|r| r.into_inner().item.unwrap())
    }

    async fn accept(
        &self,
        agent_id: &str,
        offer_id: &str,
        request_id: &str,
    ) -> Result<pb::AcceptOfferResponse, Status> {
        self.agent(agent_id)
            .accept_offer(pb::AcceptOfferRequest {
                request_id: request_id.to_owned(),
                offer_id: offer_id.to_owned(),
            })
            .await
            .map(Response::into_inner)
    }

    /// Every event after `after` up to the moment of the call, from Subscribe.
    async fn events_after(&self, after: i64) -> Vec<ipb::RoutingEvent> {
        let mut stream = self
            .internal()
            .subscribe(ipb::SubscribeRequest {
                after_sequence: after,
            })
            .await
            .unwrap()
            .into_inner();
        let mut events = Vec::new();
        loop {
            match next_message(&mut stream, Duration::from_secs(5))
                .await
                .update
            {
                Some(ipb::subscribe_response::Update::Event(event)) => events.push(event),
                Some(ipb::subscribe_response::Update::CaughtUp(_)) => return events,
                _ => {}
            }
        }
    }

    async fn stop(self) {
        if let Some(directory) = self.directory {
            directory.shutdown.trigger();
        }
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(15), self.server)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

/// The next offer message within `within` (skipping agent states, heartbeats and the
/// snapshot marker), or `None` when none came.
async fn next_offer(
    stream: &mut Streaming<pb::StreamOffersResponse>,
    within: Duration,
) -> Option<pb::Offer> {
    let until = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(until, stream.message())
            .await
            .ok()?;
        match message.unwrap()?.update {
            Some(pb::stream_offers_response::Update::Offer(offer)) => return Some(offer),
            _ => continue,
        }
    }
}

/// The next message of a stream within `within`.
async fn next_message<T>(stream: &mut Streaming<T>, within: Duration) -> T {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("a message in time")
        .unwrap()
        .expect("the stream is open")
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

fn state_of(offer: &pb::Offer) -> pb::offer::State {
    pb::offer::State::try_from(offer.state).unwrap()
}

// --- tests ----------------------------------------------------------------------------

#[path = "grpc/replicas/mod.rs"]
mod replicas;

on_each_backend!(offer_accept_and_apply_with_retries);
async fn offer_accept_and_apply_with_retries(database_url: Option<&str>) {
    let (url, log, fake_shutdown) = start_fake(FakeMode::UnavailableFirst(2)).await;
    let h = start(&url, database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let (agent_id, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;

    let conversation_id = new_id();
    let item = h.enqueue(&queue_id, &conversation_id).await.unwrap();
    assert_eq!(item.conversation_id, conversation_id);
    assert_eq!(item.queue_id, queue_id);

    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .expect("an offer arrives");
    assert_eq!(offer.conversation_id, conversation_id);
    assert_eq!(offer.agent_id, agent_id);
    assert_eq!(state_of(&offer), pb::offer::State::Pending);
    assert_eq!(offer.customer_display_name, "Grace");
    assert_eq!(offer.capacity_units, 1);
    assert_eq!(offer.channel_address, "visitor-42");
    assert_eq!(offer.queue_display_name, "Chat");
    assert_eq!(offer.wait_start_time.unwrap().seconds, 1_700_000_000);
    assert!(offer.transfer_id.is_empty() && offer.sender_id.is_empty());
    assert_eq!(h.state(&agent_id).await.pending_offers, 1);
    // A stream opened now starts with the pending offer.
    let mut late = h
        .agent(&agent_id)
        .stream_offers(pb::StreamOffersRequest {})
        .await
        .unwrap()
        .into_inner();
    let replayed = next_offer(&mut late, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (replayed.id.as_str(), state_of(&replayed)),
        (offer.id.as_str(), pb::offer::State::Pending)
    );

    let request_id = new_id();
    let accepted = h.accept(&agent_id, &offer.id, &request_id).await.unwrap();
    assert_eq!(accepted.conversation_id, conversation_id);
    assert_eq!(
        state_of(accepted.offer.as_ref().unwrap()),
        pb::offer::State::Accepted
    );
    let state = h.state(&agent_id).await;
    assert_eq!(
        (
            state.capacity_used,
            state.capacity_total,
            state.open_conversations,
            state.pending_offers
        ),
        (1, 2, 1, 0)
    );
    let resolution = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(resolution.id, offer.id);
    assert_eq!(state_of(&resolution), pb::offer::State::Accepted);

    // conversation-svc was down for the first attempt and the first retry.
    eventually("the assignment to be applied", || async {
        !log.lock().unwrap().applied.is_empty()
    })
    .await;
    {
        let log = log.lock().unwrap();
        assert_eq!(log.calls, 3);
        let applied = &log.applied[0];
        assert_eq!(applied.tenant_id, h.tenant);
        assert_eq!(applied.conversation_id, conversation_id);
        assert_eq!(applied.agent_id, agent_id);
        assert_eq!(applied.agent_display_name, "Ada");
        assert_eq!(applied.offer_id, offer.id);
        assert_eq!(applied.queue_id, queue_id);
        assert_eq!(
            applied.assignment_source,
            switchboard_proto::conversation::v1::AssignmentSource::QueueOffer as i32
        );
        assert!(
            log.callers
                .iter()
                .all(|c| c.has_role(Role::Service) && c.principal_id == "routing-svc")
        );
    }

    // A retry with the same request id gets the same answer; a new one is refused.
    let replay = h.accept(&agent_id, &offer.id, &request_id).await.unwrap();
    assert_eq!(replay, accepted);
    let twice = h.accept(&agent_id, &offer.id, &new_id()).await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert_eq!(reason(&twice), "WRONG_STATE");
    assert_eq!(h.state(&agent_id).await.capacity_used, 1, "nothing changed");

    // The event log tells the same story, gap-free.
    let mut events = h
        .internal()
        .subscribe(ipb::SubscribeRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    let mut last = 0;
    loop {
        let message = next_message(&mut events, Duration::from_secs(5)).await;
        match message.update.unwrap() {
            ipb::subscribe_response::Update::Event(event) => {
                assert_eq!(event.sequence, last + 1);
                last = event.sequence;
                kinds.push(ipb::RoutingEventType::try_from(event.event_type).unwrap());
            }
            ipb::subscribe_response::Update::CaughtUp(_) => break,
            ipb::subscribe_response::Update::Heartbeat(_) => {}
        }
    }
    for expected in [
        ipb::RoutingEventType::WaitingEnqueued,
        ipb::RoutingEventType::OfferCreated,
        ipb::RoutingEventType::OfferAccepted,
        ipb::RoutingEventType::CapacityReserved,
        ipb::RoutingEventType::PresenceChanged,
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    // Caught up: what follows is live, and a quiet stream beats.
    assert!(matches!(
        next_message(&mut events, Duration::from_secs(5))
            .await
            .update,
        Some(ipb::subscribe_response::Update::Heartbeat(_))
    ));

    // Releasing frees the units once.
    let mut internal = h.internal();
    let release = ipb::ReleaseCapacityRequest {
        tenant_id: h.tenant.clone(),
        conversation_id: conversation_id.clone(),
        agent_id: agent_id.clone(),
    };
    let first = internal
        .release_capacity(release.clone())
        .await
        .unwrap()
        .into_inner();
    let second = internal
        .release_capacity(release)
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.released_units, second.released_units), (1, 0));
    assert_eq!(h.state(&agent_id).await.capacity_used, 0);

    h.stop().await;
    fake_shutdown.trigger();
}

on_each_backend!(routing_events_say_what_happened);
/// A consumer of the event log (reporting) follows an agent's presence and load and a
/// conversation's wait and offers from the events alone: each says what it was before,
/// why it changed, the units, and the times.
async fn routing_events_say_what_happened(database_url: Option<&str>) {
    let (url, _log, fake_shutdown) = start_fake(FakeMode::UnavailableFirst(0)).await;
    let h = start(&url, database_url).await;
    let (queue_id, profile_id) = h
        .setup(
            Duration::from_millis(300),
            pb::AssignmentMethod::Unspecified,
        )
        .await;
    let (ada, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    let waited_since = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 0,
    };

    // Ada misses an offer: RONA.
    let (missed_chat, first_chat, second_chat) = (new_id(), new_id(), new_id());
    h.enqueue(&queue_id, &missed_chat).await.unwrap();
    let missed = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    let timed_out = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(state_of(&timed_out), pb::offer::State::TimedOut);
    h.internal()
        .cancel_waiting(ipb::CancelWaitingRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: missed_chat.clone(),
        })
        .await
        .unwrap();

    // Offers now last long enough to be answered; Ada is back and takes two chats, which
    // fills her two units.
    h.admin()
        .update_queue(pb::UpdateQueueRequest {
            request_id: new_id(),
            queue: Some(pb::Queue {
                id: queue_id.clone(),
                offer_timeout: Some(prost_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["offer_timeout".into()],
            }),
        })
        .await
        .unwrap();
    h.set_presence(&ada, pb::Presence::Available).await.unwrap();
    let mut accepted = Vec::new();
    for chat in [&first_chat, &second_chat] {
        h.enqueue(&queue_id, chat).await.unwrap();
        let offer = loop {
            let offer = next_offer(&mut offers, Duration::from_secs(5))
                .await
                .unwrap();
            if state_of(&offer) == pb::offer::State::Pending {
                break offer;
            }
        };
        assert_eq!(&offer.conversation_id, chat);
        h.accept(&ada, &offer.id, &new_id()).await.unwrap();
        accepted.push(offer);
    }
    assert_eq!(h.state(&ada).await.presence, pb::Presence::Busy as i32);

    // One chat ends: a unit frees and Ada shows Available again. Then a supervisor sends
    // her on a break.
    h.internal()
        .release_capacity(ipb::ReleaseCapacityRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: first_chat.clone(),
            agent_id: ada.clone(),
        })
        .await
        .unwrap();
    let supervisor_id = new_id();
    AgentServiceClient::new(h.channel(user(&h.tenant, &supervisor_id, &[Role::Supervisor])))
        .set_presence(pb::SetPresenceRequest {
            request_id: new_id(),
            agent_id: ada.clone(),
            presence: pb::Presence::Away as i32,
            reason: "Coaching".into(),
        })
        .await
        .unwrap();

    let events = h.events_after(0).await;
    let of = |t: ipb::RoutingEventType| -> Vec<&ipb::RoutingEvent> {
        events.iter().filter(|e| e.event_type == t as i32).collect()
    };
    let presence = |e: &ipb::RoutingEvent| {
        (
            pb::Presence::try_from(e.previous_presence).unwrap(),
            pb::Presence::try_from(e.presence).unwrap(),
            ipb::PresenceCause::try_from(e.presence_cause).unwrap(),
        )
    };
    use ipb::PresenceCause as Cause;
    use pb::Presence as P;
    let changes: Vec<_> = of(ipb::RoutingEventType::PresenceChanged)
        .into_iter()
        .filter(|e| e.agent_id == ada)
        .map(|e| (presence(e), e.capacity_used, e.capacity_total))
        .collect();
    assert_eq!(
        changes,
        [
            ((P::Offline, P::Available, Cause::Agent), 0, 2),
            ((P::Available, P::Rona, Cause::OfferTimedOut), 0, 2),
            ((P::Rona, P::Available, Cause::Agent), 0, 2),
            ((P::Available, P::Busy, Cause::Capacity), 2, 2),
            ((P::Busy, P::Available, Cause::Capacity), 1, 2),
            ((P::Available, P::Away, Cause::Supervisor), 1, 2),
        ]
    );
    let by_supervisor = of(ipb::RoutingEventType::PresenceChanged)
        .into_iter()
        .last()
        .unwrap();
    assert_eq!(by_supervisor.actor_id, supervisor_id);
    assert_eq!(by_supervisor.presence_reason, "Coaching");

    let reserved: Vec<_> = of(ipb::RoutingEventType::CapacityReserved)
        .into_iter()
        .map(|e| {
            (
                e.conversation_id.as_str(),
                e.capacity_units,
                e.capacity_used,
            )
        })
        .collect();
    assert_eq!(
        reserved,
        [(first_chat.as_str(), 1, 1), (second_chat.as_str(), 1, 2)]
    );
    let released = of(ipb::RoutingEventType::CapacityReleased);
    assert_eq!(released.len(), 1);
    assert_eq!(
        (
            released[0].capacity_units,
            released[0].capacity_used,
            released[0].capacity_total
        ),
        (1, 1, 2)
    );

    // Offers carry the queue, the wait, their own times and kind; the timeout is the one
    // that was missed.
    let expired = of(ipb::RoutingEventType::OfferTimedOut);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].offer_id, missed.id);
    assert_eq!(expired[0].offer_create_time, missed.create_time);
    assert_eq!(expired[0].offer_expire_time, missed.expire_time);
    assert!(expired[0].occur_time.unwrap().seconds >= missed.expire_time.unwrap().seconds);
    for event in of(ipb::RoutingEventType::OfferAccepted)
        .into_iter()
        .chain(of(ipb::RoutingEventType::OfferCreated))
        .chain(expired.iter().copied())
    {
        assert_eq!(event.queue_id, queue_id);
        assert_eq!(event.wait_start_time, Some(waited_since));
        assert_eq!(event.offer_kind, pb::OfferKind::Queue as i32);
        assert_eq!(event.channel, Channel::Webchat as i32);
        assert_eq!(event.capacity_units, 1);
        assert!(event.offer_create_time.is_some() && event.offer_expire_time.is_some());
    }
    let answered: Vec<_> = of(ipb::RoutingEventType::OfferAccepted)
        .into_iter()
        .map(|e| e.offer_id.as_str())
        .collect();
    let ids: Vec<_> = accepted.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(answered, ids);
    for event in of(ipb::RoutingEventType::WaitingEnqueued)
        .into_iter()
        .chain(of(ipb::RoutingEventType::WaitingCancelled))
    {
        assert_eq!(event.wait_start_time, Some(waited_since));
        assert_eq!(event.channel, Channel::Webchat as i32);
    }
    assert_eq!(of(ipb::RoutingEventType::WaitingCancelled).len(), 1);
    // The queue's change is in the log under its own type.
    assert_eq!(of(ipb::RoutingEventType::QueueUpdated).len(), 1);
    assert!(
        events
            .iter()
            .all(|e| e.event_type != ipb::RoutingEventType::Unspecified as i32),
        "every stored type has a contract type"
    );

    h.stop().await;
    fake_shutdown.trigger();
}

on_each_backend!(an_overflow_is_offered_in_the_new_queue_and_told_to_conversations);
/// A conversation waiting past its queue's overflow_after moves to the overflow queue, is
/// offered there at once with its original wait, and conversation-svc hears of the move
/// (ApplyOverflow) through the outbox.
async fn an_overflow_is_offered_in_the_new_queue_and_told_to_conversations(
    database_url: Option<&str>,
) {
    let (url, log, fake_shutdown) = start_fake(FakeMode::UnavailableFirst(0)).await;
    let h = start(&url, database_url).await;
    let (overflow_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let overflow = h
        .admin()
        .get_queue(pb::GetQueueRequest {
            queue_id: overflow_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .queue
        .unwrap();
    let front = h
        .admin()
        .create_queue(pb::CreateQueueRequest {
            request_id: new_id(),
            queue: Some(pb::Queue {
                program_id: overflow.program_id.clone(),
                display_name: "Front".into(),
                accepted_channels: vec![Channel::Webchat as i32],
                overflow_queue_id: overflow_id.clone(),
                overflow_after: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 100_000_000,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .queue
        .unwrap();
    let (agent_id, mut offers) = h.available_agent("Ada", &overflow_id, &profile_id).await;

    let conversation_id = new_id();
    let item = h.enqueue(&front.id, &conversation_id).await.unwrap();
    assert_eq!(item.queue_id, front.id);
    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .expect("an offer from the overflow queue");
    assert_eq!(
        (offer.conversation_id.as_str(), offer.agent_id.as_str()),
        (conversation_id.as_str(), agent_id.as_str())
    );
    assert_eq!(offer.queue_id, overflow_id);
    assert_eq!(
        offer.wait_start_time.unwrap().seconds,
        1_700_000_000,
        "the wait carries over"
    );
    eventually("conversation-svc to hear of the overflow", || async {
        !log.lock().unwrap().overflows.is_empty()
    })
    .await;
    let told = log.lock().unwrap().overflows[0].clone();
    assert_eq!(told.tenant_id, h.tenant);
    assert_eq!(told.conversation_id, conversation_id);
    assert_eq!(told.from_queue_id, front.id);
    assert_eq!(told.to_queue_id, overflow_id);
    assert_eq!(told.to_program_id, overflow.program_id);
    assert_eq!(told.enqueue_key, "create");
    assert!(!told.request_id.is_empty());

    h.stop().await;
    fake_shutdown.trigger();
}

on_each_backend!(refused_assignment_releases_capacity);
async fn refused_assignment_releases_capacity(database_url: Option<&str>) {
    let (url, log, fake_shutdown) = start_fake(FakeMode::Refuse).await;
    let h = start(&url, database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::LongestIdle)
        .await;
    let (agent_id, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    h.enqueue(&queue_id, &new_id()).await.unwrap();
    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    h.accept(&agent_id, &offer.id, &new_id()).await.unwrap();
    // The first attempt runs before AcceptOffer returns.
    assert_eq!(log.lock().unwrap().calls, 1);
    let state = h.state(&agent_id).await;
    assert_eq!((state.capacity_used, state.open_conversations), (0, 0));
    // A done entry is never leased again: once the refusal is recorded, no retry can follow.
    let store = routing_svc::store::Store::open(&h.database_url)
        .await
        .unwrap();
    eventually("the refused entry to be done", || async {
        let mut conn = store.conn().await.unwrap();
        let entries =
            routing_svc::store::outbox::of_conversation(&mut conn, &offer.conversation_id)
                .await
                .unwrap();
        entries.len() == 1 && entries[0].1 && entries[0].3.starts_with("refused")
    })
    .await;
    store.close().await;
    assert_eq!(log.lock().unwrap().calls, 1, "a refusal is not retried");
    h.stop().await;
    fake_shutdown.trigger();
}

on_each_backend!(timeout_puts_the_agent_in_rona_until_presence_is_set);
async fn timeout_puts_the_agent_in_rona_until_presence_is_set(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_millis(300), pb::AssignmentMethod::RoundRobin)
        .await;
    let (agent_id, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;

    let first = new_id();
    h.enqueue(&queue_id, &first).await.unwrap();
    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(offer.conversation_id, first);
    let timed_out = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(timed_out.id, offer.id);
    assert_eq!(state_of(&timed_out), pb::offer::State::TimedOut);
    assert_eq!(
        pb::Presence::try_from(h.state(&agent_id).await.presence).unwrap(),
        pb::Presence::Rona
    );

    // Nothing more while in RONA, on any conversation.
    let second = new_id();
    h.enqueue(&queue_id, &second).await.unwrap();
    assert!(
        next_offer(&mut offers, Duration::from_millis(800))
            .await
            .is_none()
    );
    let queue_state = h
        .supervisor()
        .get_queue_state(pb::GetQueueStateRequest {
            queue_id: queue_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .queue_state
        .unwrap();
    assert_eq!((queue_state.waiting, queue_state.pending_offers), (2, 0));
    assert_eq!(
        (queue_state.agents_available, queue_state.agents_unavailable),
        (0, 1)
    );

    // The decision record says why.
    let decisions = h
        .supervisor()
        .list_routing_decisions(pb::ListRoutingDecisionsRequest {
            conversation_id: second.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .routing_decisions;
    assert!(!decisions.is_empty());
    assert!(decisions[0].offer_id.is_empty());
    assert_eq!(decisions[0].candidates.len(), 1);
    assert_eq!(decisions[0].candidates[0].agent_id, agent_id);
    assert_eq!(
        decisions[0].candidates[0].reason,
        pb::PassReason::Rona as i32
    );
    let first_decisions = h
        .supervisor()
        .list_routing_decisions(pb::ListRoutingDecisionsRequest {
            conversation_id: first.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .routing_decisions;
    let made = first_decisions
        .iter()
        .find(|d| d.offer_id == offer.id)
        .unwrap();
    assert_eq!(made.candidates[0].reason, pb::PassReason::Chosen as i32);
    assert_eq!(
        made.assignment_method,
        pb::AssignmentMethod::RoundRobin as i32
    );

    // A client cannot set RONA, and the refusal changes nothing.
    let refused = h
        .set_presence(&agent_id, pb::Presence::Rona)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    // Setting a presence by hand ends RONA; the missed conversation goes to someone else,
    // the other one comes to this agent.
    let state = h
        .set_presence(&agent_id, pb::Presence::Available)
        .await
        .unwrap();
    assert_eq!(
        pb::Presence::try_from(state.presence).unwrap(),
        pb::Presence::Available
    );
    let next = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(next.conversation_id, second);
    h.stop().await;
}

on_each_backend!(rejected_offers_go_to_someone_else);
async fn rejected_offers_go_to_someone_else(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, profile_id) = h
        .setup(
            Duration::from_secs(30),
            pb::AssignmentMethod::MostAvailableCapacity,
        )
        .await;
    let (ada, mut ada_offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    let (bob, mut bob_offers) = h.available_agent("Bob", &queue_id, &profile_id).await;
    let conversation = new_id();
    h.enqueue(&queue_id, &conversation).await.unwrap();
    let (first_agent, first_stream, second_agent, second_stream) = tokio::select! {
        Some(offer) = next_offer(&mut ada_offers, Duration::from_secs(5)) => (ada.clone(), offer, bob.clone(), &mut bob_offers),
        Some(offer) = next_offer(&mut bob_offers, Duration::from_secs(5)) => (bob.clone(), offer, ada.clone(), &mut ada_offers),
    };
    let rejected = h
        .agent(&first_agent)
        .reject_offer(pb::RejectOfferRequest {
            request_id: new_id(),
            offer_id: first_stream.id.clone(),
            reason: "busy with a call".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .offer
        .unwrap();
    assert_eq!(state_of(&rejected), pb::offer::State::Rejected);
    let second = next_offer(second_stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(second.conversation_id, conversation);
    assert_eq!(second.agent_id, second_agent);
    // The rejecting agent is still Available (reject is not RONA).
    assert_eq!(
        pb::Presence::try_from(h.state(&first_agent).await.presence).unwrap(),
        pb::Presence::Available
    );
    // Someone else's offer is not found for this agent.
    let foreign = h
        .accept(&first_agent, &second.id, &new_id())
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    h.stop().await;
}

on_each_backend!(bad_input_gets_the_documented_codes_and_changes_nothing);
async fn bad_input_gets_the_documented_codes_and_changes_nothing(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let mut admin = h.admin();

    let queue = |program_id: &str, channels: Vec<i32>| pb::CreateQueueRequest {
        request_id: new_id(),
        queue: Some(pb::Queue {
            program_id: program_id.to_owned(),
            display_name: "Email".into(),
            accepted_channels: channels,
            ..Default::default()
        }),
    };
    let malformed = admin
        .create_queue(queue("nope", vec![1]))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(reason(&malformed), "INVALID_ARGUMENT");
    assert_eq!(
        malformed
            .get_details_bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "queue.program_id"
    );
    let missing = admin
        .create_queue(pb::CreateQueueRequest {
            request_id: new_id(),
            queue: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let no_request_id = admin
        .create_queue(pb::CreateQueueRequest {
            request_id: String::new(),
            ..queue(&new_id(), vec![1])
        })
        .await
        .unwrap_err();
    assert_eq!(no_request_id.code(), Code::InvalidArgument);
    let no_channels = admin
        .create_queue(queue(&new_id(), vec![]))
        .await
        .unwrap_err();
    assert_eq!(no_channels.code(), Code::InvalidArgument);
    let unknown_program = admin
        .create_queue(queue(&new_id(), vec![1]))
        .await
        .unwrap_err();
    assert_eq!(unknown_program.code(), Code::NotFound);
    assert_eq!(reason(&unknown_program), "NOT_FOUND");

    // Another tenant's administrator sees none of it.
    let other_tenant = new_id();
    let mut other_admin =
        QueueServiceClient::new(h.channel(user(&other_tenant, &new_id(), &[Role::Administrator])));
    let foreign = other_admin
        .get_queue(pb::GetQueueRequest {
            queue_id: queue_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    let foreign_profile = other_admin
        .set_agent_profile(pb::SetAgentProfileRequest {
            request_id: new_id(),
            agent_profile: Some(pb::AgentProfile {
                agent_id: new_id(),
                display_name: "Eve".into(),
                capacity_profile_id: profile_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(foreign_profile.code(), Code::NotFound);

    // Nothing was created by the refused calls.
    let queues = admin
        .list_queues(pb::ListQueuesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .queues;
    assert_eq!(queues.len(), 1);
    let bad_token = admin
        .list_queues(pb::ListQueuesRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);

    // Roles.
    let agent_id = new_id();
    let mut as_agent =
        QueueServiceClient::new(h.channel(user(&h.tenant, &agent_id, &[Role::Agent])));
    let denied = as_agent
        .create_program(pb::CreateProgramRequest {
            request_id: new_id(),
            program: Some(pb::Program {
                display_name: "Mine".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason(&denied), "ROLE_REQUIRED");
    assert!(
        as_agent
            .get_queue(pb::GetQueueRequest {
                queue_id: queue_id.clone()
            })
            .await
            .is_ok()
    );
    let mut user_as_service =
        RoutingInternalServiceClient::new(h.channel(user(&h.tenant, &agent_id, &[Role::Agent])));
    let not_a_service = user_as_service
        .cancel_waiting(ipb::CancelWaitingRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: new_id(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_a_service.code(), Code::PermissionDenied);

    // An agent without a profile.
    let no_profile = h
        .set_presence(&agent_id, pb::Presence::Available)
        .await
        .unwrap_err();
    assert_eq!(no_profile.code(), Code::NotFound);
    let mut stream = h.agent(&agent_id);
    assert_eq!(
        stream
            .stream_offers(pb::StreamOffersRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Agent requests.
    let (ada, _offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    let unspecified = h
        .set_presence(&ada, pb::Presence::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(unspecified.code(), Code::InvalidArgument);
    let bad_offer = h.accept(&ada, "nope", &new_id()).await.unwrap_err();
    assert_eq!(bad_offer.code(), Code::InvalidArgument);
    let no_request = h.accept(&ada, &new_id(), "").await.unwrap_err();
    assert_eq!(no_request.code(), Code::InvalidArgument);
    let unknown_offer = h.accept(&ada, &new_id(), &new_id()).await.unwrap_err();
    assert_eq!(unknown_offer.code(), Code::NotFound);
    // Another agent's presence needs SUPERVISOR.
    let (bob, _bob_offers) = h.available_agent("Bob", &queue_id, &profile_id).await;
    let for_bob = pb::SetPresenceRequest {
        request_id: new_id(),
        agent_id: bob.clone(),
        presence: pb::Presence::Away as i32,
        reason: String::new(),
    };
    let not_supervisor = h
        .agent(&ada)
        .set_presence(for_bob.clone())
        .await
        .unwrap_err();
    assert_eq!(not_supervisor.code(), Code::PermissionDenied);
    let mut supervisor =
        AgentServiceClient::new(h.channel(user(&h.tenant, &new_id(), &[Role::Supervisor])));
    let set = supervisor.set_presence(for_bob).await.unwrap().into_inner();
    assert_eq!(set.agent_state.unwrap().presence, pb::Presence::Away as i32);

    // Internal requests.
    let mut internal = h.internal();
    let wrong_channel = internal
        .enqueue_conversation(ipb::EnqueueConversationRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: new_id(),
            queue_id: queue_id.clone(),
            channel: Channel::Voice as i32,
            enqueue_key: "create".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_channel.code(), Code::FailedPrecondition);
    let wrong_tenant = internal
        .check_queue(ipb::CheckQueueRequest {
            tenant_id: new_id(),
            queue_id: queue_id.clone(),
            channel: Channel::Webchat as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_tenant.code(), Code::NotFound);
    let no_key = internal
        .enqueue_conversation(ipb::EnqueueConversationRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: new_id(),
            queue_id: queue_id.clone(),
            channel: Channel::Webchat as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::InvalidArgument);
    let state = h
        .supervisor()
        .get_queue_state(pb::GetQueueStateRequest {
            queue_id: queue_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .queue_state
        .unwrap();
    assert_eq!(state.waiting, 0, "refused enqueues left nothing waiting");

    // An agent's queues, for conversation-svc's visibility: the profile's; none for an
    // agent of another tenant or without a profile; ids must be UUIDs.
    let queues_of = |tenant_id: &str, agent_id: &str| ipb::GetAgentQueuesRequest {
        tenant_id: tenant_id.to_owned(),
        agent_id: agent_id.to_owned(),
    };
    let served = internal
        .get_agent_queues(queues_of(&h.tenant, &ada))
        .await
        .unwrap()
        .into_inner()
        .queue_ids;
    assert_eq!(served, vec![queue_id.clone()]);
    for (tenant, agent) in [(new_id(), ada.clone()), (h.tenant.clone(), new_id())] {
        let none = internal
            .get_agent_queues(queues_of(&tenant, &agent))
            .await
            .unwrap()
            .into_inner()
            .queue_ids;
        assert!(none.is_empty(), "{none:?}");
    }
    let malformed = internal
        .get_agent_queues(queues_of(&h.tenant, "ada"))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);

    // Capacity reservations: within capacity, refused when full, reported over with override.
    let reserve = |conversation: String, override_capacity: bool| ipb::ReserveCapacityRequest {
        tenant_id: h.tenant.clone(),
        conversation_id: conversation,
        agent_id: ada.clone(),
        channel: Channel::Webchat as i32,
        queue_id: queue_id.clone(),
        override_limits: override_capacity,
    };
    for _ in 0..2 {
        internal
            .reserve_capacity(reserve(new_id(), false))
            .await
            .unwrap();
    }
    let full = internal
        .reserve_capacity(reserve(new_id(), false))
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    let over = internal
        .reserve_capacity(reserve(new_id(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((over.units, over.units_over_capacity), (1, 1));

    // An update without a mask names nothing to change.
    let no_mask = admin
        .update_queue(pb::UpdateQueueRequest {
            request_id: new_id(),
            queue: Some(pb::Queue {
                id: queue_id.clone(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(no_mask.code(), Code::InvalidArgument);
    assert_eq!(no_mask.message(), "update_mask: is required");

    // Unsigned calls never reach the service.
    let mut unsigned = QueueServiceClient::connect(format!("http://{}", h.addr))
        .await
        .unwrap();
    let anonymous = unsigned
        .list_programs(pb::ListProgramsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    h.stop().await;
}

on_each_backend!(manual_pick_offers_nothing_and_agents_claim);
async fn manual_pick_offers_nothing_and_agents_claim(database_url: Option<&str>) {
    let (url, log, fake_shutdown) = start_fake(FakeMode::UnavailableFirst(0)).await;
    let h = start(&url, database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::ManualPick)
        .await;
    let (ada, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    let conversation = new_id();
    h.enqueue(&queue_id, &conversation).await.unwrap();
    assert!(
        next_offer(&mut offers, Duration::from_millis(500))
            .await
            .is_none()
    );
    let mut agent = h.agent(&ada);
    let waiting = agent
        .list_waiting_work(pb::ListWaitingWorkRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].conversation_id, conversation);
    let claimed = agent
        .claim_waiting_work(pb::ClaimWaitingWorkRequest {
            request_id: new_id(),
            conversation_id: conversation.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .offer
        .unwrap();
    assert_eq!(state_of(&claimed), pb::offer::State::Accepted);
    assert_eq!(
        log.lock().unwrap().applied[0].assignment_source,
        switchboard_proto::conversation::v1::AssignmentSource::Claim as i32
    );
    assert_eq!(h.state(&ada).await.capacity_used, 1);
    let again = agent
        .claim_waiting_work(pb::ClaimWaitingWorkRequest {
            request_id: new_id(),
            conversation_id: conversation,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    h.stop().await;
    fake_shutdown.trigger();
}

on_each_backend!(shutdown_ends_offer_streams_and_health_lists_the_services);
async fn shutdown_ends_offer_streams_and_health_lists_the_services(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let (_ada, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in HEALTH_SERVICES {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: (*service).to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    h.shutdown.trigger();
    // Messages sent before the shutdown may still be buffered; then the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match offers.message().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(ended, Ok(None) | Err(_)), "{ended:?}");
    tokio::time::timeout(Duration::from_secs(15), h.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_short_identity_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        identity_secret: "too-short".into(),
        ..test_config(&dir, "http://127.0.0.1:9")
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = serve(config, listener, ShutdownSignal::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("identity_secret must be at least 16 bytes"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_never_offer_twice() {
    let Some((databases, url)) = postgres_database().await else {
        return;
    };
    let tenant = new_id();
    let one = start_with("http://127.0.0.1:9", Some(&url), tenant.clone()).await;
    // The second replica starts once the first has migrated the database.
    let (queue_id, profile_id) = one
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let two = start_with("http://127.0.0.1:9", Some(&url), tenant.clone()).await;

    // Each agent streams from the replica that did not set it up.
    let (ada, _) = one.available_agent("Ada", &queue_id, &profile_id).await;
    let (bob, _) = two.available_agent("Bob", &queue_id, &profile_id).await;
    let mut ada_offers = two
        .agent(&ada)
        .stream_offers(pb::StreamOffersRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bob_offers = one
        .agent(&bob)
        .stream_offers(pb::StreamOffersRequest {})
        .await
        .unwrap()
        .into_inner();

    let conversations: Vec<String> = (0..8).map(|_| new_id()).collect();
    for (index, conversation) in conversations.iter().enumerate() {
        let replica = if index % 2 == 0 { &one } else { &two };
        replica.enqueue(&queue_id, conversation).await.unwrap();
    }
    // Two units each: four offers in all, never two for one conversation.
    let mut offered = Vec::new();
    for stream in [&mut ada_offers, &mut bob_offers] {
        for _ in 0..2 {
            let offer = next_offer(stream, Duration::from_secs(10))
                .await
                .expect("an offer");
            assert_eq!(state_of(&offer), pb::offer::State::Pending);
            offered.push(offer.conversation_id);
        }
    }
    // Both matchers have moved past the point where a fifth offer could be made once every
    // conversation not offered has a "nobody eligible" decision (a pass saw the agents
    // full) and both replicas have stopped (no pass is in flight any more).
    let store = routing_svc::store::Store::open(&url).await.unwrap();
    eventually("a decision for every conversation not offered", || async {
        let mut conn = store.conn().await.unwrap();
        let undecided: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT conversation_id FROM routing_decisions WHERE offer_id IS NULL",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        conversations
            .iter()
            .filter(|c| !offered.contains(c))
            .all(|c| undecided.contains(c))
    })
    .await;
    one.stop().await;
    two.stop().await;
    assert!(
        next_offer(&mut ada_offers, Duration::from_millis(100))
            .await
            .is_none()
    );
    assert!(
        next_offer(&mut bob_offers, Duration::from_millis(100))
            .await
            .is_none()
    );
    let mut distinct = offered.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{offered:?}");
    assert!(distinct.iter().all(|c| conversations.contains(c)));

    let mut conn = store.conn().await.unwrap();
    let offers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM offers")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(offers, 4, "no offer beyond the agents' units");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM offers WHERE state = 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(pending, 4);
    let over: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM agents WHERE capacity_used + pending_units > capacity_total",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(over, 0);
    drop(conn);
    store.close().await;
    databases.drop_all().await.unwrap();
}

// --- the revised contract ----------------------------------------------------------------

type OfferUpdate = pb::stream_offers_response::Update;

fn offer_update(message: pb::StreamOffersResponse) -> OfferUpdate {
    message.update.expect("exactly one field is set")
}

on_each_backend!(offer_stream_starts_with_a_snapshot_then_shows_rona_and_beats);
async fn offer_stream_starts_with_a_snapshot_then_shows_rona_and_beats(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_millis(400), pb::AssignmentMethod::RoundRobin)
        .await;
    let (ada, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    // Opened while Offline: the state, the (empty) snapshot's end, then the change.
    match offer_update(next_message(&mut offers, Duration::from_secs(5)).await) {
        OfferUpdate::AgentState(state) => {
            assert_eq!(state.agent_id, ada);
            assert_eq!(state.presence, pb::Presence::Offline as i32);
        }
        other => panic!("expected the agent state first, got {other:?}"),
    }
    assert!(matches!(
        offer_update(next_message(&mut offers, Duration::from_secs(5)).await),
        OfferUpdate::SnapshotEnd(_)
    ));
    match offer_update(next_message(&mut offers, Duration::from_secs(5)).await) {
        OfferUpdate::AgentState(state) => {
            assert_eq!(state.presence, pb::Presence::Available as i32);
        }
        other => panic!("expected the new presence, got {other:?}"),
    }

    let conversation = new_id();
    h.enqueue(&queue_id, &conversation).await.unwrap();
    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    // A stream opened now: state (with the pending offer), the offer, the end marker.
    let mut late = h
        .agent(&ada)
        .stream_offers(pb::StreamOffersRequest {})
        .await
        .unwrap()
        .into_inner();
    match offer_update(next_message(&mut late, Duration::from_secs(5)).await) {
        OfferUpdate::AgentState(state) => assert_eq!(state.pending_offers, 1),
        other => panic!("expected the agent state first, got {other:?}"),
    }
    match offer_update(next_message(&mut late, Duration::from_secs(5)).await) {
        OfferUpdate::Offer(pending) => assert_eq!(pending.id, offer.id),
        other => panic!("expected the pending offer, got {other:?}"),
    }
    assert!(matches!(
        offer_update(next_message(&mut late, Duration::from_secs(5)).await),
        OfferUpdate::SnapshotEnd(_)
    ));

    // The offer times out: its resolution, then the agent's state in RONA.
    let mut timed_out = false;
    loop {
        match offer_update(next_message(&mut late, Duration::from_secs(5)).await) {
            OfferUpdate::Offer(resolved) => {
                assert_eq!(resolved.id, offer.id);
                assert_eq!(state_of(&resolved), pb::offer::State::TimedOut);
                timed_out = true;
            }
            OfferUpdate::AgentState(state) if state.presence == pb::Presence::Rona as i32 => {
                assert!(timed_out, "the resolution comes before the state");
                assert_eq!(state.pending_offers, 0);
                break;
            }
            OfferUpdate::AgentState(_) | OfferUpdate::Heartbeat(_) => {}
            OfferUpdate::SnapshotEnd(_) => panic!("one snapshot end per stream"),
        }
    }
    // Nothing else happens now: a heartbeat comes within a few intervals (300 ms).
    let beat = next_message(&mut late, Duration::from_secs(3)).await;
    match offer_update(beat) {
        OfferUpdate::Heartbeat(heartbeat) => assert!(heartbeat.server_time.is_some()),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    h.stop().await;
}

on_each_backend!(the_display_name_is_the_directorys);
async fn the_display_name_is_the_directorys(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let agent_id = new_id();
    h.register_agent(&agent_id, "Ada Lovelace");
    let set = h
        .admin()
        .set_agent_profile(pb::SetAgentProfileRequest {
            request_id: new_id(),
            agent_profile: Some(pb::AgentProfile {
                agent_id: agent_id.clone(),
                display_name: "Typed by an admin".into(),
                capacity_profile_id: profile_id.clone(),
                queue_ids: vec![queue_id.clone()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .agent_profile
        .unwrap();
    assert_eq!(
        set.display_name, "Ada Lovelace",
        "the directory's at once, never the one typed"
    );
    assert_eq!(h.state(&agent_id).await.display_name, "Ada Lovelace");
    // A supervisor acting on the agent does not rename it.
    let mut supervisor =
        AgentServiceClient::new(h.channel(user(&h.tenant, &new_id(), &[Role::Supervisor])));
    let by_supervisor = supervisor
        .set_presence(pb::SetPresenceRequest {
            request_id: new_id(),
            agent_id: agent_id.clone(),
            presence: pb::Presence::Away as i32,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .agent_state
        .unwrap();
    assert_eq!(by_supervisor.display_name, "Ada Lovelace");
    // The directory renamed her: her next call carries the new name.
    h.names
        .lock()
        .unwrap()
        .insert(agent_id.clone(), "Ada King".into());
    let state = h
        .set_presence(&agent_id, pb::Presence::Available)
        .await
        .unwrap();
    assert_eq!(state.display_name, "Ada King");
    let profile = h
        .admin()
        .get_agent_profile(pb::GetAgentProfileRequest {
            agent_id: agent_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .agent_profile
        .unwrap();
    assert_eq!(profile.display_name, "Ada King");
    h.stop().await;
}

/// SetAgentProfile for `agent_id` by `admin`.
async fn set_profile(
    admin: &mut QueueServiceClient<SignedChannel>,
    request_id: &str,
    agent_id: &str,
    profile_id: &str,
) -> Result<pb::AgentProfile, Status> {
    admin
        .set_agent_profile(pb::SetAgentProfileRequest {
            request_id: request_id.to_owned(),
            agent_profile: Some(pb::AgentProfile {
                agent_id: agent_id.to_owned(),
                capacity_profile_id: profile_id.to_owned(),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().agent_profile.unwrap())
}

/// Whether `agent_id` has a routing profile in the harness's tenant.
async fn has_profile(h: &Harness, agent_id: &str) -> bool {
    match h
        .admin()
        .get_agent_profile(pb::GetAgentProfileRequest {
            agent_id: agent_id.to_owned(),
        })
        .await
    {
        Ok(_) => true,
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => panic!("GetAgentProfile failed: {status:?}"),
    }
}

on_each_backend!(profiles_are_only_for_active_agents_of_the_callers_tenant);
async fn profiles_are_only_for_active_agents_of_the_callers_tenant(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (_queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let directory = h.directory().clone();
    let mut admin = h.admin();

    // An agent of another tenant: as unknown as an id nobody holds, and nothing is stored.
    let other_tenant = new_id();
    let foreign = new_id();
    directory.put(
        &other_tenant,
        &foreign,
        "Eve",
        &[DirectoryRole::Agent],
        true,
    );
    let err = set_profile(&mut admin, &new_id(), &foreign, &profile_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("user {foreign} not found"));
    assert!(!has_profile(&h, &foreign).await);
    let mut other_admin =
        QueueServiceClient::new(h.channel(user(&other_tenant, &new_id(), &[Role::Administrator])));
    let theirs = other_admin
        .get_agent_profile(pb::GetAgentProfileRequest {
            agent_id: foreign.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        theirs.code(),
        Code::NotFound,
        "nothing stored for them either"
    );

    let unknown = new_id();
    let err = set_profile(&mut admin, &new_id(), &unknown, &profile_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("user {unknown} not found"));
    assert!(!has_profile(&h, &unknown).await);

    let supervisor = new_id();
    directory.put(
        &h.tenant,
        &supervisor,
        "Sue",
        &[DirectoryRole::Supervisor],
        true,
    );
    let err = set_profile(&mut admin, &new_id(), &supervisor, &profile_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("AGENT role"), "{}", err.message());
    assert!(!has_profile(&h, &supervisor).await);

    let departed = new_id();
    directory.put(&h.tenant, &departed, "Dee", &[DirectoryRole::Agent], false);
    let err = set_profile(&mut admin, &new_id(), &departed, &profile_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("deactivated"), "{}", err.message());
    assert!(!has_profile(&h, &departed).await);

    // An active agent of the tenant gets one, with the directory's name.
    let ada = new_id();
    directory.put(
        &h.tenant,
        &ada,
        "Ada Lovelace",
        &[DirectoryRole::Agent],
        true,
    );
    let set = set_profile(&mut admin, &new_id(), &ada, &profile_id)
        .await
        .unwrap();
    assert_eq!(set.display_name, "Ada Lovelace");
    assert!(has_profile(&h, &ada).await);

    // routing-svc asked as itself, a signed service.
    let callers = directory.callers.lock().unwrap().clone();
    assert_eq!(callers.len(), 5);
    assert!(
        callers
            .iter()
            .all(|c| c.principal_kind == PrincipalKind::Service && c.principal_id == "routing-svc"),
        "{callers:?}"
    );
    h.stop().await;
}

on_each_backend!(with_the_directory_down_profiles_are_unavailable_and_unchanged);
async fn with_the_directory_down_profiles_are_unavailable_and_unchanged(
    database_url: Option<&str>,
) {
    let mut h = start("http://127.0.0.1:9", database_url).await;
    let (_queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let (ada, bob) = (new_id(), new_id());
    h.register_agent(&ada, "Ada");
    h.register_agent(&bob, "Bob");
    // One administrator throughout: request ids are scoped to their caller.
    let mut admin = h.admin();
    let applied = new_id();
    let first = set_profile(&mut admin, &applied, &ada, &profile_id)
        .await
        .unwrap();

    h.directory.take().unwrap().stop().await;
    let err = set_profile(&mut admin, &new_id(), &bob, &profile_id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(reason(&err), "UNAVAILABLE");
    assert!(!has_profile(&h, &bob).await, "nothing written");
    // A retry of a request already applied still gets its first answer.
    let replayed = set_profile(&mut admin, &applied, &ada, &profile_id)
        .await
        .unwrap();
    assert_eq!(replayed, first);
    h.stop().await;
}

on_each_backend!(queue_and_capacity_profile_settings_of_the_revision);
async fn queue_and_capacity_profile_settings_of_the_revision(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, _) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let mut admin = h.admin();
    let chat = admin
        .get_queue(pb::GetQueueRequest {
            queue_id: queue_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .queue
        .unwrap();
    assert_eq!(chat.offer_waiting_on_login, Some(true), "unset means true");
    let queue = |name: &str, skills: Vec<pb::SkillRequirement>, on_login: Option<bool>| {
        pb::CreateQueueRequest {
            request_id: new_id(),
            queue: Some(pb::Queue {
                program_id: chat.program_id.clone(),
                display_name: name.into(),
                accepted_channels: vec![Channel::Webchat as i32],
                offer_waiting_on_login: on_login,
                required_skills: skills,
                transfer_fallback: switchboard_proto::common::v1::TransferFallback::Requeue as i32,
                ..Default::default()
            }),
        }
    };
    let skill = |name: &str, min_level: i32| pb::SkillRequirement {
        name: name.into(),
        min_level,
    };
    let created = admin
        .create_queue(queue(
            "Billing",
            vec![skill("billing", 0), skill("spanish", 7)],
            Some(false),
        ))
        .await
        .unwrap()
        .into_inner()
        .queue
        .unwrap();
    assert_eq!(created.offer_waiting_on_login, Some(false));
    assert_eq!(
        created.required_skills,
        vec![skill("billing", 1), skill("spanish", 7)]
    );
    assert_eq!(
        created.transfer_fallback,
        switchboard_proto::common::v1::TransferFallback::Requeue as i32
    );
    for (name, skills) in [
        ("Too high", vec![skill("billing", 11)]),
        ("Negative", vec![skill("billing", -1)]),
        ("Twice", vec![skill("billing", 1), skill("Billing", 2)]),
        (
            "Too many",
            (0..21).map(|i| skill(&format!("s{i}"), 1)).collect(),
        ),
    ] {
        let refused = admin
            .create_queue(queue(name, skills, None))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{name}");
    }

    let profile =
        |costs: Vec<pb::ChannelCost>, excluded: Vec<i32>| pb::CreateCapacityProfileRequest {
            request_id: new_id(),
            capacity_profile: Some(pb::CapacityProfile {
                display_name: "Chat only".into(),
                total_units: 3,
                channel_costs: costs,
                excluded_channels: excluded,
                ..Default::default()
            }),
        };
    let voice = Channel::Voice as i32;
    for (costs, excluded) in [
        (
            vec![pb::ChannelCost {
                channel: voice,
                units: 3,
            }],
            vec![voice],
        ),
        (vec![], vec![voice, voice]),
        (vec![], vec![0]),
        (vec![], vec![99]),
    ] {
        let refused = admin
            .create_capacity_profile(profile(costs.clone(), excluded.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{costs:?} {excluded:?}"
        );
    }
    let chat_only = admin
        .create_capacity_profile(profile(vec![], vec![voice]))
        .await
        .unwrap()
        .into_inner()
        .capacity_profile
        .unwrap();
    assert_eq!(chat_only.excluded_channels, vec![voice]);

    // Capacity for an excluded channel cannot be reserved, even with override.
    let agent_id = new_id();
    h.set_queues(&agent_id, &chat_only.id, &[&queue_id]).await;
    let refused = h
        .internal()
        .reserve_capacity(ipb::ReserveCapacityRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: new_id(),
            agent_id: agent_id.clone(),
            channel: voice,
            queue_id: String::new(),
            override_limits: true,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // An agent who is not Available is reached only with the override.
    let chat = |override_limits: bool| ipb::ReserveCapacityRequest {
        tenant_id: h.tenant.clone(),
        conversation_id: new_id(),
        agent_id: agent_id.clone(),
        channel: Channel::Webchat as i32,
        queue_id: String::new(),
        override_limits,
    };
    let offline = h
        .internal()
        .reserve_capacity(chat(false))
        .await
        .unwrap_err();
    assert_eq!(offline.code(), Code::FailedPrecondition, "{offline:?}");
    assert!(offline.message().contains("not Available"), "{offline:?}");
    let chat_units = h
        .internal()
        .reserve_capacity(chat(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(chat_units.units, 1);
    h.stop().await;
}

type StateUpdate = pb::stream_agent_states_response::Update;

/// The next message of a dashboard stream that is not a heartbeat.
async fn next_state_update(stream: &mut Streaming<pb::StreamAgentStatesResponse>) -> StateUpdate {
    loop {
        match next_message(stream, Duration::from_secs(5))
            .await
            .update
            .unwrap()
        {
            StateUpdate::Heartbeat(_) => continue,
            other => return other,
        }
    }
}

on_each_backend!(supervisors_stream_agent_states_of_a_queue);
async fn supervisors_stream_agent_states_of_a_queue(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let (ada, _offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    let outsider = new_id();
    h.set_queues(&outsider, &profile_id, &[]).await;

    let mut as_agent = QueueServiceClient::new(h.channel(h.agent_identity(&ada)));
    let denied = as_agent
        .stream_agent_states(pb::StreamAgentStatesRequest {
            queue_id: queue_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let mut states = h
        .supervisor()
        .stream_agent_states(pb::StreamAgentStatesRequest {
            queue_id: queue_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    match next_state_update(&mut states).await {
        StateUpdate::AgentState(state) => {
            assert_eq!(state.agent_id, ada, "only members of the queue");
            assert_eq!(state.display_name, "Ada");
            assert_eq!(state.presence, pb::Presence::Available as i32);
        }
        other => panic!("expected the snapshot, got {other:?}"),
    }
    assert!(matches!(
        next_state_update(&mut states).await,
        StateUpdate::SnapshotEnd(_)
    ));

    // A change of a member arrives; a change of a non-member does not.
    h.set_presence(&outsider, pb::Presence::Available)
        .await
        .unwrap();
    h.set_presence(&ada, pb::Presence::Away).await.unwrap();
    match next_state_update(&mut states).await {
        StateUpdate::AgentState(state) => {
            assert_eq!(state.agent_id, ada);
            assert_eq!(state.presence, pb::Presence::Away as i32);
        }
        other => panic!("expected Ada's change, got {other:?}"),
    }
    // Leaving the queue removes the agent from the view.
    h.set_queues(&ada, &profile_id, &[]).await;
    assert_eq!(
        next_state_update(&mut states).await,
        StateUpdate::RemovedAgentId(ada.clone())
    );
    // Then the stream is quiet but alive.
    assert!(matches!(
        next_message(&mut states, Duration::from_secs(3))
            .await
            .update
            .unwrap(),
        StateUpdate::Heartbeat(_)
    ));
    h.stop().await;
}

on_each_backend!(transfer_targets_are_the_programs_queues_then_their_agents);
async fn transfer_targets_are_the_programs_queues_then_their_agents(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (chat, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::ManualPick)
        .await;
    let program_id = h.program_of(&chat).await;
    let billing = h
        .add_queue(&program_id, "Billing", &[Channel::Webchat, Channel::Sms])
        .await;
    let phone = h.add_queue(&program_id, "Phone", &[Channel::Voice]).await;
    let (ada, _a) = h.available_agent("Ada", &chat, &profile_id).await;
    let (bob, _b) = h.available_agent("bob", &billing, &profile_id).await;
    h.set_queues(&bob, &profile_id, &[&chat, &billing]).await;
    let (_vic, _v) = h.available_agent("Vic", &phone, &profile_id).await;
    let (cy, _c) = h.available_agent("Cy", &chat, &profile_id).await;
    let conversation = new_id();
    h.enqueue(&chat, &conversation).await.unwrap();

    let mut as_cy = QueueServiceClient::new(h.channel(h.agent_identity(&cy)));
    let request =
        |name_filter: &str, kind, page_size, page_token: String| pb::ListTransferTargetsRequest {
            conversation_id: conversation.clone(),
            name_filter: name_filter.into(),
            kind: kind as i32,
            page_size,
            page_token,
        };
    use pb::list_transfer_targets_request::Kind;
    use pb::transfer_target::Target;
    let all = as_cy
        .list_transfer_targets(request("", Kind::Unspecified, 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(all.next_page_token.is_empty());
    let names: Vec<String> = all
        .targets
        .iter()
        .map(|t| match t.target.as_ref().unwrap() {
            Target::Queue(q) => format!("queue {}", q.display_name),
            Target::Agent(a) => format!("agent {}", a.display_name),
        })
        .collect();
    assert_eq!(
        names,
        ["queue Billing", "queue Chat", "agent Ada", "agent bob"],
        "same program and channel, never the caller"
    );
    match all.targets[1].target.as_ref().unwrap() {
        Target::Queue(q) => {
            assert_eq!((q.queue_id.as_str(), q.waiting), (chat.as_str(), 1));
            assert_eq!(q.agents_available, 3);
        }
        other => panic!("{other:?}"),
    }
    match all.targets[3].target.as_ref().unwrap() {
        Target::Agent(a) => {
            assert_eq!(a.agent_id, bob);
            assert_eq!(a.queue_id, billing, "the first of its queues by name");
            assert_eq!((a.free_units, a.required_units), (2, 1));
            assert_eq!(a.presence, pb::Presence::Available as i32);
        }
        other => panic!("{other:?}"),
    }
    // Page by page, the same list.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = as_cy
            .list_transfer_targets(request("", Kind::Unspecified, 1, token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.targets.len(), 1);
        paged.extend(page.targets);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all.targets);
    let bobs = as_cy
        .list_transfer_targets(request("BO", Kind::Unspecified, 0, String::new()))
        .await
        .unwrap()
        .into_inner()
        .targets;
    assert_eq!(bobs.len(), 1);
    assert!(matches!(bobs[0].target, Some(Target::Agent(ref a)) if a.agent_id == bob));
    let agents = as_cy
        .list_transfer_targets(request("", Kind::Agents, 0, String::new()))
        .await
        .unwrap()
        .into_inner()
        .targets;
    assert_eq!(agents.len(), 2);
    let queues = as_cy
        .list_transfer_targets(request("", Kind::Queues, 0, String::new()))
        .await
        .unwrap()
        .into_inner()
        .targets;
    assert_eq!(queues.len(), 2);
    let long = as_cy
        .list_transfer_targets(request(
            &"x".repeat(201),
            Kind::Unspecified,
            0,
            String::new(),
        ))
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    let unknown = as_cy
        .list_transfer_targets(pb::ListTransferTargetsRequest {
            conversation_id: new_id(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // Ada sees Cy instead of herself.
    let for_ada = QueueServiceClient::new(h.channel(h.agent_identity(&ada)))
        .list_transfer_targets(request("", Kind::Agents, 0, String::new()))
        .await
        .unwrap()
        .into_inner()
        .targets;
    let ids: Vec<&str> = for_ada
        .iter()
        .filter_map(|t| match t.target.as_ref() {
            Some(Target::Agent(a)) => Some(a.agent_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ids,
        [cy.as_str(), bob.as_str()],
        "by name: \"Cy\" sorts before \"bob\""
    );
    h.stop().await;
}

on_each_backend!(supervisors_list_offers_newest_first);
async fn supervisors_list_offers_newest_first(database_url: Option<&str>) {
    let h = start("http://127.0.0.1:9", database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let (ada, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    let (first, second) = (new_id(), new_id());
    h.enqueue(&queue_id, &first).await.unwrap();
    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    let rejected = h
        .agent(&ada)
        .reject_offer(pb::RejectOfferRequest {
            request_id: new_id(),
            offer_id: offer.id.clone(),
            reason: "wrong language".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .offer
        .unwrap();
    assert_eq!(rejected.reject_reason, "wrong language");
    h.enqueue(&queue_id, &second).await.unwrap();
    let newer = loop {
        let next = next_offer(&mut offers, Duration::from_secs(5))
            .await
            .unwrap();
        if state_of(&next) == pb::offer::State::Pending {
            break next;
        }
    };
    assert_eq!(newer.conversation_id, second);

    let mut supervisor = h.supervisor();
    let listed = supervisor
        .list_offers(pb::ListOffersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.offers.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, [newer.id.as_str(), offer.id.as_str()]);
    assert_eq!(listed.offers[1].reject_reason, "wrong language");
    assert_eq!(listed.offers[1].queue_display_name, "Chat");
    let only_rejected = supervisor
        .list_offers(pb::ListOffersRequest {
            agent_id: ada.clone(),
            states: vec![pb::offer::State::Rejected as i32],
            kinds: vec![pb::OfferKind::Queue as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .offers;
    assert_eq!(only_rejected.len(), 1);
    assert_eq!(only_rejected[0].id, offer.id);
    let page = supervisor
        .list_offers(pb::ListOffersRequest {
            conversation_id: first.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.offers.len(), 1);
    assert!(page.next_page_token.is_empty());

    let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
    let bad = [
        pb::ListOffersRequest {
            agent_id: "not-a-uuid".into(),
            ..Default::default()
        },
        pb::ListOffersRequest {
            kinds: vec![pb::OfferKind::Queue as i32; 11],
            ..Default::default()
        },
        pb::ListOffersRequest {
            states: vec![42],
            ..Default::default()
        },
        pb::ListOffersRequest {
            create_time_range: Some(switchboard_proto::common::v1::TimeRange {
                start_time: Some(ts(20)),
                end_time: Some(ts(10)),
            }),
            ..Default::default()
        },
        pb::ListOffersRequest {
            page_size: -1,
            ..Default::default()
        },
    ];
    for request in bad {
        let refused = supervisor.list_offers(request.clone()).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{request:?}");
    }
    let denied = QueueServiceClient::new(h.channel(h.agent_identity(&ada)))
        .list_offers(pb::ListOffersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    h.stop().await;
}

// --- request ids (AIP-155) ----------------------------------------------------------------

/// A fresh database on the test PostgreSQL server and its URL; the guard drops it.
async fn postgres_database() -> Option<(ScratchDatabases, String)> {
    let server = switchboard_server_kit::testing::postgres_url("")?;
    let databases = ScratchDatabases::new(&server, &format!("t_{}", Uuid::new_v4().simple()));
    let url = databases.create().await.unwrap();
    Some((databases, url))
}

async fn create_program(
    client: &mut QueueServiceClient<SignedChannel>,
    request_id: &str,
    name: &str,
) -> Result<pb::Program, Status> {
    client
        .create_program(pb::CreateProgramRequest {
            request_id: request_id.to_owned(),
            program: Some(pb::Program {
                display_name: name.into(),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().program.unwrap())
}

async fn program_names(h: &Harness) -> Vec<String> {
    let mut names: Vec<String> = h
        .admin()
        .list_programs(pb::ListProgramsRequest {
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .programs
        .into_iter()
        .map(|p| p.display_name)
        .collect();
    names.sort();
    names
}

/// Two administrators of one tenant send the same request_id; one of them then reuses it
/// for another program, and later, once its record has expired, uses it again.
async fn request_ids_are_scoped_to_the_caller_and_the_request(database_url: Option<&str>) {
    let h = start_with("http://127.0.0.1:9", database_url, new_id()).await;
    let alice_identity = user(&h.tenant, &new_id(), &[Role::Administrator]);
    let mut alice = QueueServiceClient::new(h.channel(alice_identity.clone()));
    let mut bob =
        QueueServiceClient::new(h.channel(user(&h.tenant, &new_id(), &[Role::Administrator])));
    let request_id = new_id();

    let sales = create_program(&mut alice, &request_id, "Sales")
        .await
        .unwrap();
    // Bob's request is his own: it is applied and answered with his program.
    let support = create_program(&mut bob, &request_id, "Support")
        .await
        .unwrap();
    assert_ne!(support.id, sales.id);
    assert_eq!(support.display_name, "Support");
    assert_eq!(program_names(&h).await, ["Sales", "Support"]);

    // An exact retry gets the first answer.
    let retry = create_program(&mut alice, &request_id, "Sales")
        .await
        .unwrap();
    assert_eq!(retry, sales);

    // The same request_id with another body is refused and changes nothing.
    let reused = create_program(&mut alice, &request_id, "Marketing")
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    assert_eq!(reason(&reused), "INVALID_ARGUMENT");
    assert!(
        reused
            .message()
            .contains("was already used for a different request"),
        "{reused:?}"
    );
    let violations = reused.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "request_id");
    assert_eq!(program_names(&h).await, ["Sales", "Support"]);

    // Alice's record passes the retention (a day): the purge deletes it, and her
    // request_id is free again. Bob's recent record stays.
    let db = switchboard_server_kit::db::Db::connect(&h.database_url)
        .await
        .unwrap();
    let day_and_an_hour: i64 = 25 * 3_600 * 1_000_000;
    let backdated =
        sqlx::query("UPDATE request_log SET created_at = created_at - $1 WHERE caller = $2")
            .bind(day_and_an_hour)
            .bind(idempotency::caller_of(&alice_identity))
            .execute(db.writer())
            .await
            .unwrap()
            .rows_affected();
    assert_eq!(backdated, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let marketing = loop {
        match create_program(&mut alice, &request_id, "Marketing").await {
            Ok(program) => break program,
            Err(status)
                if status.code() == Code::InvalidArgument
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("the expired record was not purged: {status:?}"),
        }
    };
    assert_eq!(marketing.display_name, "Marketing");
    assert_eq!(program_names(&h).await, ["Marketing", "Sales", "Support"]);
    let bob_retry = create_program(&mut bob, &request_id, "Support")
        .await
        .unwrap();
    assert_eq!(bob_retry, support);

    db.close().await;
    h.stop().await;
}

on_each_backend!(request_ids_are_scoped_to_the_caller_and_the_request);

// --- card numbers (product rule 14) ---------------------------------------------------------

/// Every free-text field reaching routing-svc (presence and reject reasons, the agent's
/// name from the directory, the customer's name and channel address from
/// conversation-svc) is stored with card numbers masked, whatever the separators or digits.
async fn card_numbers_are_stored_masked(database_url: Option<&str>) {
    let h = start_with("http://127.0.0.1:9", database_url, new_id()).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::Unspecified)
        .await;
    let (ada, mut offers) = h
        .available_agent(
            "Ada ４１１１ １１１１ １１１１ １１１１",
            &queue_id,
            &profile_id,
        )
        .await;
    let away = h
        .agent(&ada)
        .set_presence(pb::SetPresenceRequest {
            request_id: new_id(),
            agent_id: String::new(),
            presence: pb::Presence::Away as i32,
            reason: "paying 4111.1111.1111.1111".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .agent_state
        .unwrap();
    assert_eq!(away.presence_reason, "paying 4111.11**.****.1111");
    assert_eq!(away.display_name, "Ada ４１１１ １１** **** １１１１");
    h.set_presence(&ada, pb::Presence::Available).await.unwrap();

    let conversation = new_id();
    h.internal()
        .enqueue_conversation(ipb::EnqueueConversationRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: conversation.clone(),
            queue_id: queue_id.clone(),
            channel: Channel::Webchat as i32,
            customer_display_name: "Grace 5555 5555 5555 4444".into(),
            enqueue_key: "create".into(),
            wait_start_time: None,
            channel_address: "sms:5555_5555_5555_4444".into(),
        })
        .await
        .unwrap();
    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(offer.customer_display_name, "Grace 5555 55** **** 4444");
    assert_eq!(offer.channel_address, "sms:5555_55**_****_4444");
    let rejected = h
        .agent(&ada)
        .reject_offer(pb::RejectOfferRequest {
            request_id: new_id(),
            offer_id: offer.id.clone(),
            reason: "card 3782/822463/10005\tcall me".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .offer
        .unwrap();
    assert_eq!(rejected.reject_reason, "card 3782/82****/*0005\tcall me");

    // What is stored, not only what is answered.
    let db = switchboard_server_kit::db::Db::connect(&h.database_url)
        .await
        .unwrap();
    let stored: Vec<(String, String)> = sqlx::query_as(
        "SELECT presence_reason, display_name FROM agents WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(&h.tenant)
    .bind(&ada)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [(
            "".to_owned(),
            "Ada ４１１１ １１** **** １１１１".to_owned()
        )]
    );
    let stored: (String, String, String) = sqlx::query_as(
        "SELECT reject_reason, channel_address, customer_display_name FROM offers WHERE id = $1",
    )
    .bind(&offer.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        (
            "card 3782/82****/*0005\tcall me".to_owned(),
            "sms:5555_55**_****_4444".to_owned(),
            "Grace 5555 55** **** 4444".to_owned()
        )
    );
    let (waiting_address,): (String,) =
        sqlx::query_as("SELECT channel_address FROM waiting WHERE conversation_id = $1")
            .bind(&conversation)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(waiting_address, "sms:5555_55**_****_4444");
    db.close().await;
    h.stop().await;
}

on_each_backend!(card_numbers_are_stored_masked);

on_each_backend!(an_assignment_leased_by_a_crashed_replica_is_applied_by_another);
/// A replica that accepted an offer (which leases the outbox entry for its own first
/// attempt) and crashed before the attempt leaves the entry to another replica's
/// dispatcher once the lease runs out.
async fn an_assignment_leased_by_a_crashed_replica_is_applied_by_another(
    database_url: Option<&str>,
) {
    use routing_svc::store::{catalog, outbox, routing};
    use switchboard_server_kit::db::now_micros;
    let (url, log, fake_shutdown) = start_fake(FakeMode::UnavailableFirst(0)).await;
    let h = start(&url, database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::LongestIdle)
        .await;
    let (agent_id, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    h.enqueue(&queue_id, &new_id()).await.unwrap();
    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();

    // Another replica accepts the offer, which leases the outbox entry for its first
    // attempt, and crashes before making it.
    let crashed = routing_svc::store::Store::open(&h.database_url)
        .await
        .unwrap();
    let agent = {
        let mut conn = crashed.conn().await.unwrap();
        catalog::get_agent(&mut conn, &h.tenant, &agent_id)
            .await
            .unwrap()
            .unwrap()
    };
    let lease_until = now_micros() + 300_000;
    let mut tx = crashed.begin().await.unwrap();
    routing::accept_offer(&mut tx, &agent, &offer.id, now_micros(), lease_until)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    crashed.close().await;

    // The running replica's dispatcher applies it once the lease has run out.
    eventually(
        "the assignment to be applied by the running replica",
        || async { !log.lock().unwrap().applied.is_empty() },
    )
    .await;
    assert!(
        now_micros() >= lease_until,
        "applied while the crashed replica still held the lease"
    );
    let store = routing_svc::store::Store::open(&h.database_url)
        .await
        .unwrap();
    eventually("the entry to be done", || async {
        let mut conn = store.conn().await.unwrap();
        let entries = outbox::of_conversation(&mut conn, &offer.conversation_id)
            .await
            .unwrap();
        entries.len() == 1 && entries[0].1
    })
    .await;
    store.close().await;
    let (calls, applied) = {
        let log = log.lock().unwrap();
        (log.calls, log.applied.clone())
    };
    assert_eq!(calls, 1, "applied once");
    assert_eq!(applied[0].offer_id, offer.id);
    assert_eq!(applied[0].agent_id, agent_id);
    h.stop().await;
    fake_shutdown.trigger();
}

/// A routing-svc that made an offer and stopped, leaving its database to a dispatcher the
/// test drives on its own clock against a fake conversation-svc.
struct Stopped {
    log: Arc<Mutex<FakeLog>>,
    fake_shutdown: ShutdownSignal,
    store: routing_svc::store::Store,
    registry: switchboard_server_kit::metrics::Metrics,
    dispatcher: routing_svc::engine::dispatcher::Dispatcher,
    tenant: String,
    agent_id: String,
    queue_id: String,
    offer: pb::Offer,
    _dir: tempfile::TempDir,
}

/// Starts routing-svc against a fake conversation-svc answering in `mode`, has it offer a
/// conversation to an Available agent, stops it, and opens its database with a dispatcher
/// whose retries start at `retry_ms`.
async fn stopped_after_an_offer(
    mode: FakeMode,
    database_url: Option<&str>,
    retry_ms: u64,
) -> Stopped {
    use routing_svc::engine::dispatcher::{self, Dispatcher};
    use switchboard_server_kit::metrics::OutboxMetrics;
    let (url, log, fake_shutdown) = start_fake(mode).await;
    let h = start(&url, database_url).await;
    let (queue_id, profile_id) = h
        .setup(Duration::from_secs(30), pb::AssignmentMethod::LongestIdle)
        .await;
    let (agent_id, mut offers) = h.available_agent("Ada", &queue_id, &profile_id).await;
    h.enqueue(&queue_id, &new_id()).await.unwrap();
    let offer = next_offer(&mut offers, Duration::from_secs(5))
        .await
        .unwrap();
    drop(offers);
    // Only the test's dispatcher is at work from here on.
    let Harness {
        shutdown,
        server,
        directory,
        database_url,
        _dir,
        tenant,
        ..
    } = h;
    shutdown.trigger();
    server.await.unwrap().unwrap();
    if let Some(directory) = directory {
        directory.stop().await;
    }
    let store = routing_svc::store::Store::open(&database_url)
        .await
        .unwrap();
    let registry = switchboard_server_kit::metrics::Metrics::new("routing-svc");
    let dispatcher = {
        let channel = signed_channel(&url, key(), Identity::service("routing-svc")).unwrap();
        let config = Config {
            conversation_timeout_ms: 2_000,
            outbox_retry_initial_ms: retry_ms,
            outbox_retry_max_ms: retry_ms,
            ..Config::default()
        };
        let metrics = OutboxMetrics::register(registry.registry(), &dispatcher::SERIES).unwrap();
        Dispatcher::new(
            store.clone(),
            channel,
            &config,
            Arc::new(tokio::sync::Notify::new()),
            metrics,
        )
    };
    Stopped {
        log,
        fake_shutdown,
        store,
        registry,
        dispatcher,
        tenant,
        agent_id,
        queue_id,
        offer,
        _dir,
    }
}

on_each_backend!(an_assignment_left_by_a_crashed_process_is_applied_promptly_after_a_restart);
/// An offer accepted by a process that crashed before its first attempt is applied by the
/// restarted process as soon as the short lease of the crashed one ends; an entry that
/// waits out a long backoff is attempted as soon as a process starts. The dispatcher runs
/// on a clock the test sets.
async fn an_assignment_left_by_a_crashed_process_is_applied_promptly_after_a_restart(
    database_url: Option<&str>,
) {
    use routing_svc::engine::dispatcher::Attempt;
    use routing_svc::store::{catalog, outbox, routing};
    use switchboard_server_kit::db::now_micros;
    let Stopped {
        log,
        fake_shutdown,
        store,
        registry,
        dispatcher,
        tenant,
        agent_id,
        offer,
        _dir,
        ..
    } = stopped_after_an_offer(FakeMode::UnavailableFirst(1), database_url, 60_000).await;
    let lease = i64::try_from(dispatcher.lease().as_micros()).unwrap();
    assert!(
        lease <= 5_000_000,
        "a lease is the call deadline plus a margin"
    );

    // The crashed process accepted the offer, which leased the entry for its first
    // attempt, and died before making it.
    let accepted_at = now_micros();
    let lease_until = accepted_at + lease;
    {
        let agent = {
            let mut conn = store.conn().await.unwrap();
            catalog::get_agent(&mut conn, &tenant, &agent_id)
                .await
                .unwrap()
                .unwrap()
        };
        let mut tx = store.begin().await.unwrap();
        routing::accept_offer(&mut tx, &agent, &offer.id, accepted_at, lease_until)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    // The restarted process leaves the entry alone while the lease holds, and attempts it
    // the moment the lease ends.
    assert!(dispatcher.start(lease_until - 1).await.unwrap().is_empty());
    assert_eq!(log.lock().unwrap().calls, 0);
    let first = dispatcher.dispatch_due(lease_until).await.unwrap();
    assert!(
        matches!(first.as_slice(), [Attempt::RetryLater(_)]),
        "{first:?}"
    );
    // conversation-svc was away: the entry now waits out a minute of backoff, which a
    // process that starts does not wait for.
    let later = lease_until + 1;
    assert!(dispatcher.dispatch_due(later).await.unwrap().is_empty());
    assert_eq!(
        dispatcher.start(later).await.unwrap(),
        vec![Attempt::Applied]
    );

    let (calls, applied) = {
        let log = log.lock().unwrap();
        (log.calls, log.applied.clone())
    };
    assert_eq!(calls, 2, "one failed attempt, then the one that applied it");
    let rendered = registry.render();
    for series in [
        "routing_outbox_delivery_lag_seconds_count{app=\"routing-svc\"} 1",
        "routing_outbox_pending_assignments{app=\"routing-svc\"} 0",
    ] {
        assert!(rendered.contains(series), "{series} in {rendered}");
    }
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].offer_id, offer.id);
    let mut conn = store.conn().await.unwrap();
    let entries = outbox::of_conversation(&mut conn, &offer.conversation_id)
        .await
        .unwrap();
    assert_eq!(
        entries,
        vec![(offer.id.clone(), true, 1, "applied".to_owned())]
    );
    drop(conn);
    store.close().await;
    fake_shutdown.trigger();
}

on_each_backend!(a_conversations_next_entry_is_sent_in_the_same_pass);
/// Entries of one conversation go in order, and the next one is sent as soon as the one
/// before it is settled, in the same pass: not at the next tick. The dispatcher runs on a
/// clock the test sets, so only a pass it is asked for sends anything.
async fn a_conversations_next_entry_is_sent_in_the_same_pass(database_url: Option<&str>) {
    use routing_svc::engine::dispatcher::Attempt;
    use routing_svc::store::{catalog, outbox, routing};
    use switchboard_server_kit::db::now_micros;
    let Stopped {
        log,
        fake_shutdown,
        store,
        dispatcher,
        tenant,
        agent_id,
        queue_id,
        offer,
        _dir,
        ..
    } = stopped_after_an_offer(FakeMode::UnavailableFirst(0), database_url, 500).await;
    // The agent accepts, then logs out of a returning queue before the assignment is
    // applied: two entries of one conversation, the second behind the first.
    let now = now_micros();
    {
        let agent = {
            let mut conn = store.conn().await.unwrap();
            catalog::get_agent(&mut conn, &tenant, &agent_id)
                .await
                .unwrap()
                .unwrap()
        };
        let mut tx = store.begin().await.unwrap();
        routing::accept_offer(&mut tx, &agent, &offer.id, now, now)
            .await
            .unwrap();
        let logout = outbox::OutboxEntry::logout(
            &tenant,
            &offer.conversation_id,
            &agent_id,
            &queue_id,
            &agent_id,
            now,
        );
        outbox::insert(&mut tx, &logout, now).await.unwrap();
        tx.commit().await.unwrap();
    }
    let attempts = dispatcher.dispatch_due(now).await.unwrap();
    assert_eq!(attempts.len(), 2, "both entries in one pass: {attempts:?}");
    assert_eq!(attempts[0], Attempt::Applied);
    assert_eq!(log.lock().unwrap().applied.len(), 1);
    store.close().await;
    fake_shutdown.trigger();
}

on_each_backend!(a_queue_deleted_while_work_enters_it_never_keeps_that_work);
/// DeleteQueue racing EnqueueConversation: either the delete is refused because the
/// conversation waits there, or the enqueue finds the queue gone; never a conversation
/// waiting in a queue that no longer exists.
async fn a_queue_deleted_while_work_enters_it_never_keeps_that_work(database_url: Option<&str>) {
    let (fake_addr, _, fake_shutdown) = start_fake(FakeMode::UnavailableFirst(0)).await;
    let h = start(&fake_addr, database_url).await;
    let (first, _) = h
        .setup(
            Duration::from_secs(30),
            pb::AssignmentMethod::MostAvailableCapacity,
        )
        .await;
    let program_id = h.program_of(&first).await;
    let mut outcomes = (0, 0);
    for round in 0..20 {
        let queue_id = h
            .add_queue(
                &program_id,
                &format!("Seasonal {round}"),
                &[Channel::Webchat],
            )
            .await;
        let conversation_id = new_id();
        let mut admin = h.admin();
        let delete = admin.delete_queue(pb::DeleteQueueRequest {
            request_id: new_id(),
            queue_id: queue_id.clone(),
        });
        let (deleted, enqueued) = tokio::join!(delete, h.enqueue(&queue_id, &conversation_id));
        let exists = h
            .admin()
            .get_queue(pb::GetQueueRequest {
                queue_id: queue_id.clone(),
            })
            .await
            .is_ok();
        match (deleted, enqueued) {
            (Ok(_), Err(status)) => {
                assert_eq!(status.code(), Code::NotFound, "{status:?}");
                assert!(!exists);
                outcomes.0 += 1;
            }
            (Err(status), Ok(_)) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(exists);
                outcomes.1 += 1;
            }
            (deleted, enqueued) => {
                panic!("round {round}: delete {deleted:?} and enqueue {enqueued:?}")
            }
        }
    }
    eprintln!(
        "deleted first {} times, enqueued first {} times",
        outcomes.0, outcomes.1
    );
    h.stop().await;
    fake_shutdown.trigger();
}

on_each_backend!(two_updates_at_once_never_make_an_overflow_cycle);
/// UpdateQueue A → B racing UpdateQueue B → A: at most one is taken, so the queues never
/// overflow into each other.
async fn two_updates_at_once_never_make_an_overflow_cycle(database_url: Option<&str>) {
    let (fake_addr, _, fake_shutdown) = start_fake(FakeMode::UnavailableFirst(0)).await;
    let h = start(&fake_addr, database_url).await;
    let (first, _) = h
        .setup(
            Duration::from_secs(30),
            pb::AssignmentMethod::MostAvailableCapacity,
        )
        .await;
    let program_id = h.program_of(&first).await;
    let overflow = |from: &str, to: &str| pb::UpdateQueueRequest {
        request_id: new_id(),
        queue: Some(pb::Queue {
            id: from.to_owned(),
            overflow_queue_id: to.to_owned(),
            overflow_after: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["overflow_queue_id".into(), "overflow_after".into()],
        }),
    };
    for round in 0..20 {
        let a = h
            .add_queue(&program_id, &format!("A {round}"), &[Channel::Webchat])
            .await;
        let b = h
            .add_queue(&program_id, &format!("B {round}"), &[Channel::Webchat])
            .await;
        let (mut one, mut other) = (h.admin(), h.admin());
        let (ab, ba) = tokio::join!(
            one.update_queue(overflow(&a, &b)),
            other.update_queue(overflow(&b, &a))
        );
        assert!(
            ab.is_err() || ba.is_err(),
            "round {round}: both overflows were taken, a cycle"
        );
        for refused in [ab.err(), ba.err()].into_iter().flatten() {
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        }
    }
    h.stop().await;
    fake_shutdown.trigger();
}
