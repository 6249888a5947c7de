//! conversation-svc over gRPC, in-process, with a small fake routing-svc that records the
//! calls it receives.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::internal::v1 as ipb;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_client::ConversationInternalServiceClient;
use switchboard_proto::conversation::internal::v1::subscribe_response::Update as SubscribeUpdate;
use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::conversation_config_service_client::ConversationConfigServiceClient;
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::conversation::v1::stream_conversation_request::Start;
use switchboard_proto::conversation::v1::stream_conversation_response::Update;
use switchboard_proto::conversation::v1::supervisor_service_client::SupervisorServiceClient;
use switchboard_proto::directory::internal::v1 as dpb;
use switchboard_proto::directory::internal::v1::directory_internal_service_server::{
    DirectoryInternalService, DirectoryInternalServiceServer,
};
use switchboard_proto::routing::internal::v1 as rpb;
use switchboard_proto::routing::internal::v1::routing_internal_service_server::{
    RoutingInternalService, RoutingInternalServiceServer,
};
use switchboard_proto::routing::v1::Queue;
use switchboard_server_kit::idempotency::{self, RequestLogConfig};
use switchboard_server_kit::{
    Identity, IdentityKey, PrincipalKind, Role, ServeOptions, ShutdownSignal, SignedChannel,
    identity_of, signed_channel,
};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

const SECRET: &str = "test-identity-secret-0123456789";
const CARD: &str = "4111 1111 1111 1111";

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------------------
// A fake routing-svc.

/// A queue the fake knows: tenant, program, accepted channels.
type FakeQueue = (String, String, Vec<i32>);

#[derive(Default)]
struct FakeRouting {
    /// By queue id.
    queues: Mutex<HashMap<String, FakeQueue>>,
    checks: AtomicUsize,
    enqueues: Mutex<Vec<rpb::EnqueueConversationRequest>>,
    enqueue_attempts: AtomicUsize,
    releases: Mutex<Vec<rpb::ReleaseCapacityRequest>>,
    release_attempts: AtomicUsize,
    /// ReleaseCapacity calls that arrived before the conversation's Enqueue was accepted.
    releases_before_enqueue: AtomicUsize,
    /// Fail this many coming Enqueue / Release calls with UNAVAILABLE.
    enqueue_failures: AtomicUsize,
    release_failures: AtomicUsize,
    /// CheckQueue answers UNAVAILABLE.
    down: AtomicBool,
    callers: Mutex<Vec<String>>,
    /// The directory's part (the gateway's DirectoryInternalService, served by the same
    /// fake): tenants' ancestors by tenant id; others are unknown.
    ancestries: Mutex<HashMap<String, Vec<String>>>,
    /// GetTenantAncestry calls received.
    ancestry_calls: AtomicUsize,
    /// GetTenantAncestry answers UNAVAILABLE.
    directory_down: AtomicBool,
}

impl FakeRouting {
    fn enqueued(&self) -> Vec<rpb::EnqueueConversationRequest> {
        self.enqueues.lock().unwrap().clone()
    }

    fn released(&self) -> Vec<rpb::ReleaseCapacityRequest> {
        self.releases.lock().unwrap().clone()
    }

    fn take_failure(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[derive(Clone)]
struct FakeServer(Arc<FakeRouting>);

type RoutingEvents = Pin<Box<dyn Stream<Item = Result<rpb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RoutingInternalService for FakeServer {
    async fn check_queue(
        &self,
        request: Request<rpb::CheckQueueRequest>,
    ) -> Result<Response<rpb::CheckQueueResponse>, Status> {
        let caller = identity_of(&request)?;
        self.0.callers.lock().unwrap().push(caller.principal_id);
        self.0.checks.fetch_add(1, Ordering::SeqCst);
        if self.0.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("routing is down"));
        }
        let req = request.into_inner();
        let queues = self.0.queues.lock().unwrap();
        match queues.get(&req.queue_id) {
            Some((tenant, program, channels)) if *tenant == req.tenant_id => {
                if req.channel != 0 && !channels.contains(&req.channel) {
                    return Err(Status::failed_precondition(
                        "queue does not accept the channel",
                    ));
                }
                Ok(Response::new(rpb::CheckQueueResponse {
                    queue: Some(Queue {
                        id: req.queue_id.clone(),
                        tenant_id: tenant.clone(),
                        program_id: program.clone(),
                        accepted_channels: channels.clone(),
                        ..Default::default()
                    }),
                }))
            }
            _ => Err(Status::not_found(format!(
                "queue {} not found",
                req.queue_id
            ))),
        }
    }

    async fn enqueue_conversation(
        &self,
        request: Request<rpb::EnqueueConversationRequest>,
    ) -> Result<Response<rpb::EnqueueConversationResponse>, Status> {
        identity_of(&request)?;
        self.0.enqueue_attempts.fetch_add(1, Ordering::SeqCst);
        if FakeRouting::take_failure(&self.0.enqueue_failures) {
            return Err(Status::unavailable("not now"));
        }
        self.0.enqueues.lock().unwrap().push(request.into_inner());
        Ok(Response::new(rpb::EnqueueConversationResponse {
            item: None,
        }))
    }

    async fn cancel_waiting(
        &self,
        _: Request<rpb::CancelWaitingRequest>,
    ) -> Result<Response<rpb::CancelWaitingResponse>, Status> {
        Ok(Response::new(rpb::CancelWaitingResponse {
            was_waiting: false,
        }))
    }

    async fn release_capacity(
        &self,
        request: Request<rpb::ReleaseCapacityRequest>,
    ) -> Result<Response<rpb::ReleaseCapacityResponse>, Status> {
        identity_of(&request)?;
        self.0.release_attempts.fetch_add(1, Ordering::SeqCst);
        let conversation_id = &request.get_ref().conversation_id;
        if !self
            .0
            .enqueued()
            .iter()
            .any(|e| &e.conversation_id == conversation_id)
        {
            self.0
                .releases_before_enqueue
                .fetch_add(1, Ordering::SeqCst);
        }
        if FakeRouting::take_failure(&self.0.release_failures) {
            return Err(Status::unavailable("not now"));
        }
        self.0.releases.lock().unwrap().push(request.into_inner());
        Ok(Response::new(rpb::ReleaseCapacityResponse {
            released_units: 1,
        }))
    }

    async fn reserve_capacity(
        &self,
        _: Request<rpb::ReserveCapacityRequest>,
    ) -> Result<Response<rpb::ReserveCapacityResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn offer_to_agent(
        &self,
        _: Request<rpb::OfferToAgentRequest>,
    ) -> Result<Response<rpb::OfferToAgentResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn withdraw_offer(
        &self,
        _: Request<rpb::WithdrawOfferRequest>,
    ) -> Result<Response<rpb::WithdrawOfferResponse>, Status> {
        Ok(Response::new(rpb::WithdrawOfferResponse {
            withdrawn: false,
        }))
    }

    type SubscribeStream = RoutingEvents;

    async fn subscribe(
        &self,
        _: Request<rpb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    /// Every agent serves every queue of its tenant.
    async fn get_agent_queues(
        &self,
        request: Request<rpb::GetAgentQueuesRequest>,
    ) -> Result<Response<rpb::GetAgentQueuesResponse>, Status> {
        let req = request.into_inner();
        let queue_ids = self
            .0
            .queues
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (tenant, _, _))| *tenant == req.tenant_id)
            .map(|(id, _)| id.clone())
            .collect();
        Ok(Response::new(rpb::GetAgentQueuesResponse { queue_ids }))
    }
}

#[tonic::async_trait]
impl DirectoryInternalService for FakeServer {
    async fn get_users(
        &self,
        _: Request<dpb::GetUsersRequest>,
    ) -> Result<Response<dpb::GetUsersResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_tenant_ancestry(
        &self,
        request: Request<dpb::GetTenantAncestryRequest>,
    ) -> Result<Response<dpb::GetTenantAncestryResponse>, Status> {
        let caller = identity_of(&request)?;
        assert_eq!(caller.principal_id, "conversation-svc");
        self.0.ancestry_calls.fetch_add(1, Ordering::SeqCst);
        if self.0.directory_down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the directory is down"));
        }
        // Like the gateway: an unknown tenant has no ancestors.
        let ancestor_tenant_ids = self
            .0
            .ancestries
            .lock()
            .unwrap()
            .get(&request.get_ref().tenant_id)
            .cloned()
            .unwrap_or_default();
        Ok(Response::new(dpb::GetTenantAncestryResponse {
            ancestor_tenant_ids,
        }))
    }

    async fn list_team_members(
        &self,
        _: Request<dpb::ListTeamMembersRequest>,
    ) -> Result<Response<dpb::ListTeamMembersResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

// ---------------------------------------------------------------------------------------
/// Serves `routing` (and the directory it plays too) on `listener` until the returned
/// signal fires.
fn serve_fake(
    routing: Arc<FakeRouting>,
    key: IdentityKey,
    listener: TcpListener,
) -> (ShutdownSignal, tokio::task::JoinHandle<()>) {
    let mut options = ServeOptions::new("fake-routing");
    options.identity = Some(key);
    let routes = Routes::new(RoutingInternalServiceServer::new(FakeServer(
        routing.clone(),
    )))
    .add_service(DirectoryInternalServiceServer::new(FakeServer(routing)));
    let shutdown = ShutdownSignal::new();
    let signal = shutdown.clone();
    let task = tokio::spawn(async move {
        switchboard_server_kit::serve(options, routes, listener, signal)
            .await
            .unwrap();
    });
    (shutdown, task)
}

// The service under test.

struct Harness {
    routing: Arc<FakeRouting>,
    addr: SocketAddr,
    key: IdentityKey,
    shutdown: ShutdownSignal,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    routing_shutdown: ShutdownSignal,
    routing_task: tokio::task::JoinHandle<()>,
    routing_addr: SocketAddr,
    tenant: String,
    queue: String,
    program: String,
    agent1: Identity,
    agent2: Identity,
    tuning: Tuning,
    _db: support::TestDb,
}

/// Settings a test may change from the harness's defaults.
#[derive(Clone, Copy, Debug)]
struct Tuning {
    /// Most calls to routing-svc that may wait in the outbox.
    outbox_max_pending: u64,
    /// The outbox's first retry delay, which is also how often it looks for due commands
    /// when nothing wakes it.
    outbox_retry_ms: u64,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            outbox_max_pending: conversation_svc::Config::default().outbox_max_pending,
            outbox_retry_ms: 30,
        }
    }
}

async fn spawn_service(
    database_url: &str,
    routing_addr: SocketAddr,
    tuning: Tuning,
) -> (
    SocketAddr,
    ShutdownSignal,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = conversation_svc::Config {
        listen: addr,
        metrics_listen: None,
        database_url: database_url.to_owned(),
        identity_secret: SECRET.to_owned(),
        routing_url: format!("http://{routing_addr}"),
        directory_url: format!("http://{routing_addr}"),
        outbox_retry_ms: tuning.outbox_retry_ms,
        outbox_retry_max_ms: tuning.outbox_retry_ms.max(120),
        routing_timeout_ms: 2_000,
        outbox_max_pending: tuning.outbox_max_pending,
        event_poll_ms: 100,
        heartbeat_ms: 300,
        // Purge often, so tests see an expired request record go without waiting long.
        request_log: RequestLogConfig {
            purge_interval_ms: 20,
            ..RequestLogConfig::default()
        },
        ..Default::default()
    };
    let shutdown = ShutdownSignal::new();
    let server = tokio::spawn(conversation_svc::serve(config, listener, shutdown.clone()));
    (addr, shutdown, server)
}

fn user(tenant: &str, name: &str, roles: Vec<Role>) -> Identity {
    Identity {
        tenant_id: tenant.to_owned(),
        tenant_ancestry: Vec::new(),
        principal_id: id(),
        principal_kind: PrincipalKind::User,
        display_name: name.to_owned(),
        roles,
        enabled_supervisor_actions: Vec::new(),
        time_zone: String::new(),
        reopen_window_secs: 0,
    }
}

impl Harness {
    async fn start(db: support::TestDb) -> Harness {
        Harness::start_tuned(db, Tuning::default()).await
    }

    /// A harness whose service runs with `tuning`.
    async fn start_tuned(db: support::TestDb, tuning: Tuning) -> Harness {
        let key = IdentityKey::new(SECRET).unwrap();
        let routing = Arc::new(FakeRouting::default());
        let tenant = id();
        let queue = id();
        let program = id();
        routing.queues.lock().unwrap().insert(
            queue.clone(),
            (
                tenant.clone(),
                program.clone(),
                vec![Channel::Webchat as i32],
            ),
        );

        let routing_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let routing_addr = routing_listener.local_addr().unwrap();
        let (routing_shutdown, routing_task) =
            serve_fake(routing.clone(), key.clone(), routing_listener);

        let (addr, shutdown, server) = spawn_service(&db.url, routing_addr, tuning).await;
        let agent1 = user(&tenant, "Alex Agent", vec![Role::Agent]);
        let agent2 = user(&tenant, "Blake Agent", vec![Role::Agent]);
        let harness = Harness {
            routing,
            addr,
            key,
            shutdown,
            server,
            routing_shutdown,
            routing_task,
            routing_addr,
            tenant,
            queue,
            program,
            agent1,
            agent2,
            tuning,
            _db: db,
        };
        harness.wait_until_serving().await;
        harness
    }

    async fn wait_until_serving(&self) {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("conversation-svc did not start");
    }

    /// Stops the fake routing-svc: calls to it fail as unreachable until it starts again.
    async fn stop_routing(&mut self) {
        self.routing_shutdown.trigger();
        (&mut self.routing_task).await.unwrap();
    }

    /// Starts the fake routing-svc again on its address.
    async fn start_routing(&mut self) {
        let listener = TcpListener::bind(self.routing_addr).await.unwrap();
        (self.routing_shutdown, self.routing_task) =
            serve_fake(self.routing.clone(), self.key.clone(), listener);
    }

    /// Stops conversation-svc and starts a new one on the same database.
    async fn restart(mut self) -> Harness {
        self.shutdown.trigger();
        (&mut self.server)
            .await
            .unwrap()
            .expect("conversation-svc stops cleanly");
        let (addr, shutdown, server) =
            spawn_service(&self._db.url, self.routing_addr, self.tuning).await;
        self.addr = addr;
        self.shutdown = shutdown;
        self.server = server;
        self.wait_until_serving().await;
        self
    }

    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(15), self.server)
            .await
            .expect("conversation-svc stops")
            .unwrap()
            .expect("conversation-svc stops cleanly");
        self.routing_shutdown.trigger();
        self.routing_task.await.unwrap();
    }

    fn channel(&self, identity: &Identity) -> SignedChannel {
        signed_channel(
            &format!("http://{}", self.addr),
            self.key.clone(),
            identity.clone(),
        )
        .unwrap()
    }

    fn conversations(&self, identity: &Identity) -> ConversationServiceClient<SignedChannel> {
        ConversationServiceClient::new(self.channel(identity))
    }

    fn config(&self, identity: &Identity) -> ConversationConfigServiceClient<SignedChannel> {
        ConversationConfigServiceClient::new(self.channel(identity))
    }

    fn internal(&self) -> ConversationInternalServiceClient<SignedChannel> {
        ConversationInternalServiceClient::new(self.channel(&Identity::service("routing-svc")))
    }

    fn bot(&self) -> Identity {
        Identity {
            principal_kind: PrincipalKind::ApiKey,
            ..user(&self.tenant, "Web chat bot", vec![Role::Bot])
        }
    }

    fn supervisor(&self) -> Identity {
        user(&self.tenant, "Sam Supervisor", vec![Role::Supervisor])
    }

    fn admin(&self) -> Identity {
        user(&self.tenant, "Ada Admin", vec![Role::Administrator])
    }

    fn create_request(&self, request_id: String) -> pb::CreateConversationRequest {
        pb::CreateConversationRequest {
            request_id,
            channel: Channel::Webchat as i32,
            queue_id: self.queue.clone(),
            contact: Some(pb::Contact {
                display_name: Some("Casey Customer".into()),
                ..Default::default()
            }),
            channel_address: "visitor-42".into(),
            pre_chat_data: vec![pb::PreChatField {
                name: "card".into(),
                label: "Card".into(),
                value: CARD.into(),
            }],
            bot_transcript: vec![
                pb::TranscriptEntry {
                    sender: pb::SenderKind::Customer as i32,
                    text: format!("I was charged twice on {CARD}"),
                    create_time: None,
                    sender_display_name: String::new(),
                },
                pb::TranscriptEntry {
                    sender: pb::SenderKind::Bot as i32,
                    text: "Let me get you a person.".into(),
                    create_time: None,
                    sender_display_name: "Ava, virtual assistant".into(),
                },
            ],
            first_message: "Hello?".into(),
        }
    }

    async fn create(&self) -> pb::Conversation {
        self.conversations(&self.bot())
            .create_conversation(self.create_request(id()))
            .await
            .expect("create conversation")
            .into_inner()
            .conversation
            .expect("conversation")
    }

    async fn assign(
        &self,
        conversation_id: &str,
        agent: &Identity,
        offer_id: &str,
    ) -> Result<pb::Conversation, Status> {
        self.assign_with_limit(conversation_id, agent, offer_id, None)
            .await
    }

    /// As routing-svc assigns from a queue whose wrap-up time limit is `limit`.
    async fn assign_with_limit(
        &self,
        conversation_id: &str,
        agent: &Identity,
        offer_id: &str,
        limit: Option<Duration>,
    ) -> Result<pb::Conversation, Status> {
        self.internal()
            .apply_assignment(ipb::ApplyAssignmentRequest {
                tenant_id: self.tenant.clone(),
                conversation_id: conversation_id.to_owned(),
                agent_id: agent.principal_id.clone(),
                agent_display_name: agent.display_name.clone(),
                offer_id: offer_id.to_owned(),
                queue_id: self.queue.clone(),
                assignment_source: pb::AssignmentSource::QueueOffer as i32,
                wrap_up_time_limit: limit.map(|d| d.try_into().expect("a short duration")),
                offer_kind: 0,
                enqueue_key: String::new(),
            })
            .await
            .map(|r| r.into_inner().conversation.expect("conversation"))
    }

    /// The agent ends the conversation and wraps it up with `reason_id`.
    async fn end_and_wrap_up(&self, agent: &Identity, conversation_id: &str, reason_id: &str) {
        let mut client = self.conversations(agent);
        client
            .end_conversation(pb::EndConversationRequest {
                request_id: id(),
                conversation_id: conversation_id.to_owned(),
            })
            .await
            .expect("end");
        client
            .submit_wrap_up(pb::SubmitWrapUpRequest {
                request_id: id(),
                conversation_id: conversation_id.to_owned(),
                wrap_up_reason_ids: vec![reason_id.to_owned()],
                ..Default::default()
            })
            .await
            .expect("wrap up");
    }

    async fn reason(&self, name: &str) -> pb::WrapUpReason {
        self.config(&self.admin())
            .create_wrap_up_reason(pb::CreateWrapUpReasonRequest {
                request_id: id(),
                wrap_up_reason: Some(pb::WrapUpReason {
                    display_name: name.into(),
                    queue_ids: vec![self.queue.clone()],
                    active: true,
                    ..Default::default()
                }),
            })
            .await
            .expect("create reason")
            .into_inner()
            .wrap_up_reason
            .expect("reason")
    }

    async fn get(
        &self,
        identity: &Identity,
        conversation_id: &str,
    ) -> Result<pb::Conversation, Status> {
        self.conversations(identity)
            .get_conversation(pb::GetConversationRequest {
                conversation_id: conversation_id.to_owned(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().conversation.expect("conversation"))
    }

    /// `identity` unassigns the conversation.
    async fn unassign(
        &self,
        identity: &Identity,
        conversation_id: &str,
    ) -> Result<pb::Conversation, Status> {
        self.conversations(identity)
            .unassign_conversation(pb::UnassignConversationRequest {
                request_id: id(),
                conversation_id: conversation_id.to_owned(),
                tenant_id: String::new(),
            })
            .await
            .map(|r| r.into_inner().conversation.expect("conversation"))
    }

    async fn list_ids(&self, identity: &Identity) -> Vec<String> {
        self.conversations(identity)
            .list_conversations(pb::ListConversationsRequest::default())
            .await
            .expect("list")
            .into_inner()
            .conversations
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    async fn events(&self, conversation_id: &str) -> Vec<pb::ConversationEvent> {
        self.conversations(&self.supervisor())
            .list_conversation_events(pb::ListConversationEventsRequest {
                conversation_id: conversation_id.to_owned(),
                page_size: 500,
                ..Default::default()
            })
            .await
            .expect("events")
            .into_inner()
            .events
    }

    async fn send(
        &self,
        identity: &Identity,
        conversation_id: &str,
        text: &str,
        sender: pb::SenderKind,
    ) -> Result<pb::Message, Status> {
        self.conversations(identity)
            .send_message(pb::SendMessageRequest {
                request_id: id(),
                conversation_id: conversation_id.to_owned(),
                text: text.to_owned(),
                sender: sender as i32,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().message.expect("message"))
    }
}

fn reason_of(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the command outbox has nothing pending (every command accepted or refused
/// for good): from then on the dispatcher sends nothing more, so the fake's counts are
/// final. Returns how many commands of each kind were written, as (enqueue, release).
async fn outbox_settled(h: &Harness) -> (i64, i64) {
    let db = switchboard_server_kit::Db::connect(&h._db.url)
        .await
        .unwrap();
    let counts = eventually("the command outbox to settle", || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM command_outbox WHERE state = 'pending'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if pending > 0 {
            return None;
        }
        let count = |kind: &'static str| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM command_outbox WHERE kind = $1")
                .bind(kind)
                .fetch_one(&db.pool)
        };
        Some((
            count("enqueue").await.unwrap(),
            count("release_capacity").await.unwrap(),
        ))
    })
    .await;
    db.close().await;
    counts
}

/// The next message of a conversation stream, waiting at most five seconds.
async fn next_update(
    stream: &mut tonic::Streaming<pb::StreamConversationResponse>,
) -> pb::StreamConversationResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a stream message within 5 s")
        .expect("stream open")
        .expect("stream ok")
}

fn kinds(events: &[pb::ConversationEvent]) -> Vec<pb::EventType> {
    events
        .iter()
        .map(|e| pb::EventType::try_from(e.event_type).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests.

on_each_backend!(a_conversation_goes_from_bot_to_closed_with_capacity_released);
async fn a_conversation_goes_from_bot_to_closed_with_capacity_released(db: support::TestDb) {
    let h = Harness::start(db).await;
    lifecycle(&h).await;
    h.stop().await;
}

async fn lifecycle(h: &Harness) {
    let resolved = h.reason("Resolved").await;
    let created = h.create().await;
    assert_eq!(created.state, State::Open as i32);
    assert_eq!(created.queue_id, h.queue);
    assert_eq!(created.program_id, h.program);
    assert!(created.owner_agent_id.is_empty());
    // Card numbers are masked in the transcript and pre-chat data.
    assert_eq!(
        created.bot_transcript[0].text,
        "I was charged twice on 4111 11** **** 1111"
    );
    assert_eq!(created.pre_chat_data[0].value, "4111 11** **** 1111");
    assert_eq!(created.bot_transcript.len(), 2);

    // routing-svc was asked to enqueue it, as conversation-svc.
    let enqueued = eventually("the enqueue", || async {
        let e = h.routing.enqueued();
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(enqueued.len(), 1);
    assert_eq!(enqueued[0].conversation_id, created.id);
    assert_eq!(enqueued[0].queue_id, h.queue);
    assert_eq!(enqueued[0].tenant_id, h.tenant);
    assert_eq!(enqueued[0].customer_display_name, "Casey Customer");
    assert!(uuid::Uuid::parse_str(&enqueued[0].enqueue_key).is_ok());
    assert!(
        h.routing
            .callers
            .lock()
            .unwrap()
            .iter()
            .all(|c| c == "conversation-svc")
    );

    // Unassigned and OPEN: every agent of the tenant sees it.
    assert!(h.get(&h.agent2, &created.id).await.is_ok());
    assert!(h.list_ids(&h.agent2).await.contains(&created.id));

    // routing-svc applies the accepted offer; a retry of the same offer changes nothing.
    let offer = id();
    let active = h
        .assign(&created.id, &h.agent1, &offer)
        .await
        .expect("assign");
    assert_eq!(active.state, State::Active as i32);
    assert_eq!(active.owner_agent_id, h.agent1.principal_id);
    assert_eq!(active.owner_display_name, "Alex Agent");
    assert_eq!(active.segment_count, 1);
    assert_eq!(active.participants.len(), 1);
    assert_eq!(
        active.participants[0].role,
        pb::ParticipantRole::Owner as i32
    );
    let again = h
        .assign(&created.id, &h.agent1, &offer)
        .await
        .expect("retried assign");
    assert_eq!(again.segment_count, 1);
    assert_eq!(again.participants.len(), 1);

    // Now hidden from the other agent, visible to the owner and the supervisor.
    let hidden = h.get(&h.agent2, &created.id).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert!(!h.list_ids(&h.agent2).await.contains(&created.id));
    assert!(h.list_ids(&h.agent1).await.contains(&created.id));
    assert!(h.list_ids(&h.supervisor()).await.contains(&created.id));
    // And another agent cannot write in it either.
    let err = h
        .send(&h.agent2, &created.id, "hi", pb::SenderKind::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Live stream of the conversation, from now on: the conversation, then the end of the
    // (empty) replay, then live events.
    let mut live = h
        .conversations(&h.agent1)
        .stream_conversation(pb::StreamConversationRequest {
            conversation_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner();
    let first = next_update(&mut live).await;
    let Some(Update::Conversation(snapshot)) = first.update else {
        panic!("the stream starts with the conversation, got {first:?}");
    };
    assert_eq!(snapshot.id, created.id);
    assert_eq!(snapshot.state, State::Active as i32);
    assert!(
        snapshot.bot_transcript.is_empty(),
        "streams use the BASIC view"
    );
    let second = next_update(&mut live).await;
    assert!(
        matches!(second.update, Some(Update::SnapshotEnd(_))),
        "then the end of the snapshot, got {second:?}"
    );

    let customer = h
        .send(
            &h.bot(),
            &created.id,
            &format!("My card is {CARD}"),
            pb::SenderKind::Customer,
        )
        .await
        .expect("customer message");
    assert_eq!(customer.text, "My card is 4111 11** **** 1111");
    assert_eq!(customer.sender, pb::SenderKind::Customer as i32);
    assert_eq!(customer.sender_display_name, "Casey Customer");
    let reply = h
        .send(
            &h.agent1,
            &created.id,
            "Hello Casey",
            pb::SenderKind::Customer,
        )
        .await
        .expect("agent message");
    assert_eq!(
        reply.sender,
        pb::SenderKind::Agent as i32,
        "users write as themselves"
    );
    assert_eq!(reply.sender_id, h.agent1.principal_id);
    assert_eq!(reply.sender_display_name, "Alex Agent");

    for expected in [&customer, &reply] {
        let item = next_update(&mut live).await;
        let Some(Update::Event(event)) = item.update else {
            panic!("a live event, got {item:?}");
        };
        assert_eq!(event.event_type, pb::EventType::MessageAdded as i32);
        assert_eq!(
            event.sequence, expected.sequence,
            "a message carries its event's sequence"
        );
        assert_eq!(item.message.as_ref().unwrap().id, expected.id);
    }

    // Hold and resume, by the owner only.
    let mut agent = h.conversations(&h.agent1);
    let waiting = agent
        .set_waiting(pb::SetWaitingRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
            reason: "checking".into(),
        })
        .await
        .expect("wait")
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(waiting.state, State::Waiting as i32);
    let resumed = agent
        .resume_conversation(pb::ResumeConversationRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
        })
        .await
        .expect("resume")
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(resumed.state, State::Active as i32);

    // The supervisor sees it but is not its owner.
    let err = h
        .conversations(&h.supervisor())
        .end_conversation(pb::EndConversationRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // End: WRAP_UP, and the customer is told the agent left.
    let ended = agent
        .end_conversation(pb::EndConversationRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
        })
        .await
        .expect("end")
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(ended.state, State::WrapUp as i32);
    let messages = agent
        .list_messages(pb::ListMessagesRequest {
            conversation_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .expect("messages")
        .into_inner()
        .messages;
    let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "Hello?",
            "Alex Agent joined the conversation",
            "My card is 4111 11** **** 1111",
            "Hello Casey",
            "Alex Agent left the conversation",
        ]
    );
    assert_eq!(messages[4].sender, pb::SenderKind::System as i32);
    assert!(!messages[4].agents_only);

    // No more agent messages in WRAP_UP.
    let err = h
        .send(
            &h.agent1,
            &created.id,
            "one more thing",
            pb::SenderKind::Unspecified,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&err), "WRONG_STATE");

    // Wrap-up closes it and releases the agent's capacity.
    let closed = agent
        .submit_wrap_up(pb::SubmitWrapUpRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
            wrap_up_reason_ids: vec![resolved.id.clone()],
            note: format!("customer read out {CARD}"),
            ..Default::default()
        })
        .await
        .expect("wrap up")
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(closed.state, State::Closed as i32);
    assert!(closed.close_time.is_some());
    assert_eq!(closed.wrap_up_reason_ids, vec![resolved.id.clone()]);
    let released = eventually("the capacity release", || async {
        let r = h.routing.released();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].conversation_id, created.id);
    assert_eq!(released[0].agent_id, h.agent1.principal_id);
    assert_eq!(released[0].tenant_id, h.tenant);

    let segments = agent
        .list_segments(pb::ListSegmentsRequest {
            conversation_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .expect("segments")
        .into_inner()
        .segments;
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].ordinal, 1);
    assert_eq!(segments[0].agent_id, h.agent1.principal_id);
    assert_eq!(
        segments[0].assignment_source,
        pb::AssignmentSource::QueueOffer as i32
    );
    assert_eq!(
        segments[0].end_reason,
        pb::segment::EndReason::Closed as i32
    );
    assert!(segments[0].wrapped_up);
    assert!(segments[0].end_time.is_some());
    assert_eq!(segments[0].wrap_up_reason_ids, vec![resolved.id.clone()]);

    // The event log tells the whole story, with what reporting needs.
    let events = h.events(&created.id).await;
    use pb::EventType as T;
    assert_eq!(
        kinds(&events),
        vec![
            T::Created,
            T::Queued,
            T::MessageAdded,
            T::Assigned,
            T::MessageAdded,
            T::MessageAdded,
            T::MessageAdded,
            T::Waiting,
            T::Resumed,
            T::Ended,
            T::MessageAdded,
            T::WrapUpSubmitted,
            T::Closed,
        ]
    );
    let per_conversation: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        per_conversation,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "clients see the conversation's own sequence, 1, 2, 3..."
    );
    for e in &events {
        assert_eq!(e.tenant_id, h.tenant);
        assert_eq!(e.queue_id, h.queue);
        assert_eq!(e.program_id, h.program);
        assert_eq!(e.channel, Channel::Webchat as i32);
        assert_eq!(e.conversation_create_time, created.create_time);
    }
    let assigned = &events[3];
    assert_eq!(assigned.agent_id, h.agent1.principal_id);
    assert_eq!(
        assigned.assignment_source,
        pb::AssignmentSource::QueueOffer as i32
    );
    assert_eq!(assigned.segment_id, segments[0].id);
    assert!(assigned.previous_agent_id.is_empty());
    assert_eq!(assigned.state, State::Active as i32);
    let closed_event = events.last().unwrap();
    assert_eq!(closed_event.state, State::Closed as i32);
    assert_eq!(
        closed_event.close_reason,
        pb::CloseReason::WrapUpSubmitted as i32
    );
    assert_eq!(
        closed_event.segment_end_reason,
        pb::segment::EndReason::Closed as i32
    );
    assert_eq!(closed_event.agent_id, h.agent1.principal_id);
    assert_eq!(closed_event.wrap_up_reason_ids, vec![resolved.id.clone()]);
    assert_eq!(events[11].wrap_up_reason_ids, vec![resolved.id.clone()]);

    // reporting-svc's view: Subscribe from the start gives the same events, gap-free.
    let mut subscription = h
        .internal()
        .subscribe(ipb::SubscribeRequest { after_sequence: 0 })
        .await
        .expect("subscribe")
        .into_inner();
    let mut got = Vec::new();
    while got.len() < events.len() {
        let item = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("subscribed event")
            .expect("open")
            .expect("ok");
        match item.update {
            Some(SubscribeUpdate::Entry(entry)) => {
                got.push((entry.log_sequence, entry.event.unwrap()))
            }
            other => panic!("an entry before the subscription caught up, got {other:?}"),
        }
    }
    let log_sequences: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(log_sequences, (1..=events.len() as i64).collect::<Vec<_>>());
    let got: Vec<pb::ConversationEvent> = got.into_iter().map(|(_, e)| e).collect();
    assert_eq!(got, events);
    let item = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("caught up")
        .expect("open")
        .expect("ok");
    assert!(
        matches!(item.update, Some(SubscribeUpdate::CaughtUp(_))),
        "then the subscription says it caught up, got {item:?}"
    );

    // A closed conversation cannot be assigned again.
    let err = h.assign(&created.id, &h.agent2, &id()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // The owner still sees it; the other agent does not.
    assert!(h.get(&h.agent1, &created.id).await.is_ok());
    assert_eq!(
        h.get(&h.agent2, &created.id).await.unwrap_err().code(),
        Code::NotFound
    );
}

on_each_backend!(a_customer_who_writes_after_close_reopens_or_follows_up_in_a_queue_that_exists);
async fn a_customer_who_writes_after_close_reopens_or_follows_up_in_a_queue_that_exists(
    db: support::TestDb,
) {
    let h = Harness::start(db).await;
    let reason = h.reason("Solved").await;
    let created = h.create().await;
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    h.end_and_wrap_up(&h.agent1, &created.id, &reason.id).await;
    let within = Identity {
        reopen_window_secs: 86_400,
        ..h.bot()
    };
    let closed_events = h.events(&created.id).await;

    // Its last queue is gone: refused before anything is written.
    let queue = h.routing.queues.lock().unwrap().remove(&h.queue).unwrap();
    let err = h
        .send(
            &within,
            &created.id,
            "Hello again",
            pb::SenderKind::Customer,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&h.queue) && err.message().contains("no longer exists"),
        "{}",
        err.message()
    );
    assert_eq!(h.events(&created.id).await, closed_events);
    h.routing
        .queues
        .lock()
        .unwrap()
        .insert(h.queue.clone(), queue);

    // A bot writing as itself does not reopen anything.
    let err = h
        .send(&within, &created.id, "Bot here", pb::SenderKind::Bot)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Within the window: reopened in its queue, once, whatever the retries.
    let mut bot = h.conversations(&within);
    let back = pb::SendMessageRequest {
        request_id: id(),
        conversation_id: created.id.clone(),
        text: format!("Card {CARD} again"),
        sender: pb::SenderKind::Customer as i32,
        ..Default::default()
    };
    let landed = bot.send_message(back.clone()).await.unwrap().into_inner();
    assert_eq!(bot.send_message(back).await.unwrap().into_inner(), landed);
    let message = landed.message.unwrap();
    assert_eq!(message.conversation_id, created.id);
    assert!(!message.text.contains(CARD));
    let reopened = h.get(&h.supervisor(), &created.id).await.unwrap();
    assert_eq!(reopened.state, State::Open as i32);
    assert!(reopened.owner_agent_id.is_empty());
    assert!(reopened.close_time.is_none() && reopened.wrap_up_reason_ids.is_empty());
    assert!(
        reopened
            .participants
            .iter()
            .all(|p| p.state == pb::participant::State::Left as i32),
        "the last owner no longer takes part: {:?}",
        reopened.participants
    );
    let events = h.events(&created.id).await;
    assert_eq!(
        kinds(&events[closed_events.len()..]),
        vec![pb::EventType::Reopened, pb::EventType::MessageAdded]
    );
    let reopen_event = &events[closed_events.len()];
    assert_eq!(reopen_event.state, State::Open as i32);
    assert_eq!(reopen_event.previous_agent_id, h.agent1.principal_id);
    assert_eq!(
        outbox_settled(&h).await,
        (2, 1),
        "one more enqueue, no more"
    );
    let enqueued = h.routing.enqueued();
    assert_eq!(enqueued[1].conversation_id, created.id);
    assert_eq!(enqueued[1].queue_id, h.queue);
    assert_ne!(enqueued[1].enqueue_key, enqueued[0].enqueue_key);
    // The reopened conversation is assigned again like any waiting one.
    let assigned = h.assign(&created.id, &h.agent2, &id()).await.unwrap();
    assert_eq!(assigned.segment_count, 2);
    assert_eq!(
        h.get(&h.agent1, &created.id).await.unwrap_err().code(),
        Code::NotFound,
        "the earlier agent no longer sees the new owner's work"
    );
    h.end_and_wrap_up(&h.agent2, &created.id, &reason.id).await;

    // Without a window: a new conversation that follows the closed one, once.
    let no_window = h.bot();
    let mut bot = h.conversations(&no_window);
    let later = pb::SendMessageRequest {
        request_id: id(),
        conversation_id: created.id.clone(),
        text: "Anyone there?".into(),
        sender: pb::SenderKind::Customer as i32,
        ..Default::default()
    };
    let started = bot.send_message(later.clone()).await.unwrap().into_inner();
    assert_eq!(bot.send_message(later).await.unwrap().into_inner(), started);
    let follow_id = started.message.unwrap().conversation_id;
    assert_ne!(follow_id, created.id);
    let follow = h.get(&h.supervisor(), &follow_id).await.unwrap();
    assert_eq!(follow.previous_conversation_id, created.id);
    assert_eq!(follow.queue_id, h.queue);
    assert_eq!(follow.program_id, h.program);
    assert_eq!(follow.channel_address, created.channel_address);
    assert_eq!(
        follow.contact.unwrap().id,
        created.contact.clone().unwrap().id
    );
    assert_eq!(
        kinds(&h.events(&follow_id).await),
        vec![
            pb::EventType::Created,
            pb::EventType::Queued,
            pb::EventType::MessageAdded
        ]
    );
    assert_eq!(
        h.get(&h.supervisor(), &created.id).await.unwrap().state,
        State::Closed as i32
    );
    // Another message to the closed one lands in the same follow-up.
    let more = h
        .send(&no_window, &created.id, "Hello?", pb::SenderKind::Customer)
        .await
        .unwrap();
    assert_eq!(more.conversation_id, follow_id);
    assert_eq!(outbox_settled(&h).await, (3, 2));
    let history = h
        .conversations(&h.supervisor())
        .list_contact_history(pb::ListContactHistoryRequest {
            contact_id: created.contact.unwrap().id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .conversations;
    assert_eq!(
        history.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![follow_id.as_str(), created.id.as_str()]
    );
    h.stop().await;
}

on_each_backend!(reads_choose_their_view_and_streams_resume_without_gaps);
async fn reads_choose_their_view_and_streams_resume_without_gaps(db: support::TestDb) {
    let h = Harness::start(db).await;
    views_and_resume(&h).await;
    h.stop().await;
}

async fn views_and_resume(h: &Harness) {
    let created = h.create().await;
    assert_eq!(
        created.bot_transcript.len(),
        2,
        "create answers with the FULL view"
    );
    assert_eq!(
        created.bot_transcript[1].sender_display_name,
        "Ava, virtual assistant"
    );
    assert_eq!(created.channel_address, "visitor-42");
    let contact = created.contact.clone().unwrap();
    assert_eq!(contact.display_name.as_deref(), Some("Casey Customer"));
    assert_eq!(contact.identities.len(), 1);

    // Get defaults to FULL; lists default to BASIC and give FULL when asked.
    let mut sup = h.conversations(&h.supervisor());
    let got = h.get(&h.supervisor(), &created.id).await.unwrap();
    assert_eq!(got.pre_chat_data.len(), 1);
    let basic = sup
        .get_conversation(pb::GetConversationRequest {
            conversation_id: created.id.clone(),
            view: pb::ConversationView::Basic as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert!(basic.pre_chat_data.is_empty() && basic.bot_transcript.is_empty());
    assert!(basic.contact.unwrap().identities.is_empty());
    let listed = sup
        .list_conversations(pb::ListConversationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .conversations;
    let mine = listed.iter().find(|c| c.id == created.id).unwrap();
    assert!(mine.bot_transcript.is_empty(), "lists default to BASIC");
    let full = sup
        .list_conversations(pb::ListConversationsRequest {
            view: pb::ConversationView::Full as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .conversations;
    let mine = full.iter().find(|c| c.id == created.id).unwrap();
    assert_eq!(mine.bot_transcript.len(), 2);
    assert_eq!(mine.contact.as_ref().unwrap().identities.len(), 1);

    // A contact reached at another address keeps one history (the store test covers other
    // channels; this harness's queue accepts web chat only).
    let mut sms = h.create_request(id());
    sms.channel_address = "visitor-43-on-laptop".into();
    sms.contact = Some(pb::Contact {
        id: contact.id.clone(),
        ..Default::default()
    });
    let by_phone = h
        .conversations(&h.bot())
        .create_conversation(sms)
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(by_phone.contact.as_ref().unwrap().id, contact.id);
    let read = sup
        .get_contact(pb::GetContactRequest {
            contact_id: contact.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(
        read.identities
            .iter()
            .map(|i| (i.channel, i.address.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (Channel::Webchat as i32, "visitor-42"),
            (Channel::Webchat as i32, "visitor-43-on-laptop")
        ]
    );

    // ListMessages → StreamConversation after the last message's sequence: nothing missed,
    // nothing twice.
    let messages = sup
        .list_messages(pb::ListMessagesRequest {
            conversation_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let last = messages.last().unwrap().sequence;
    assert!(last > 0);
    let hello = h
        .send(
            &h.bot(),
            &created.id,
            "still there?",
            pb::SenderKind::Customer,
        )
        .await
        .unwrap();
    assert_eq!(hello.sequence, last + 1);
    let mut resumed = sup
        .stream_conversation(pb::StreamConversationRequest {
            conversation_id: created.id.clone(),
            start: Some(Start::AfterSequence(last)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Update::Conversation(snapshot)) = next_update(&mut resumed).await.update else {
        panic!("the conversation first");
    };
    assert_eq!(snapshot.last_event_sequence, hello.sequence);
    let replayed = next_update(&mut resumed).await;
    let Some(Update::Event(event)) = replayed.update else {
        panic!("the missed message, got {replayed:?}");
    };
    assert_eq!(event.sequence, hello.sequence);
    assert_eq!(replayed.message.unwrap().text, "still there?");
    assert!(matches!(
        next_update(&mut resumed).await.update,
        Some(Update::SnapshotEnd(_))
    ));
    // Quiet: a heartbeat (the harness sets 300 ms) keeps the stream visibly alive.
    let quiet = next_update(&mut resumed).await;
    assert!(
        matches!(quiet.update, Some(Update::Heartbeat(ref hb)) if hb.server_time.is_some()),
        "a heartbeat when nothing happens, got {quiet:?}"
    );

    // From the beginning replays the whole history, numbered 1, 2, 3...
    let mut all = sup
        .stream_conversation(pb::StreamConversationRequest {
            conversation_id: created.id.clone(),
            start: Some(Start::FromBeginning(true)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    next_update(&mut all).await;
    let mut replayed = Vec::new();
    loop {
        match next_update(&mut all).await.update {
            Some(Update::Event(e)) => replayed.push(e.sequence),
            Some(Update::SnapshotEnd(_)) => break,
            other => panic!("replay, then its end; got {other:?}"),
        }
    }
    assert_eq!(replayed, (1..=hello.sequence).collect::<Vec<_>>());

    // A resume point beyond the conversation's history is refused, not silently skipped.
    let err = sup
        .stream_conversation(pb::StreamConversationRequest {
            conversation_id: created.id.clone(),
            start: Some(Start::AfterSequence(hello.sequence + 5)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Content beyond plain text is refused by name, and nothing is stored.
    let mut bot = h.conversations(&h.bot());
    let html = bot
        .send_message(pb::SendMessageRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
            text: "<b>hi</b>".into(),
            sender: pb::SenderKind::Customer as i32,
            format: pb::MessageFormat::Html as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(html.code(), Code::InvalidArgument);
    assert_eq!(
        html.message(),
        "format: MESSAGE_FORMAT_HTML is not supported: messages are plain text"
    );
    let attached = bot
        .send_message(pb::SendMessageRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
            text: "see attached".into(),
            sender: pb::SenderKind::Customer as i32,
            attachments: vec![pb::Attachment {
                file_name: "receipt.png".into(),
                media_type: "image/png".into(),
                uri: "https://example.invalid/r.png".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(attached.code(), Code::InvalidArgument);
    assert!(attached.message().starts_with("attachments:"));
    let after = h.get(&h.supervisor(), &created.id).await.unwrap();
    assert_eq!(
        after.last_event_sequence, hello.sequence,
        "refusals changed nothing"
    );

    // Naming a tenant the directory does not know: not found, never the caller's own.
    let err = sup
        .get_conversation(pb::GetConversationRequest {
            conversation_id: created.id.clone(),
            tenant_id: id(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason_of(&err), "NOT_FOUND");
    let err = sup
        .get_conversation(pb::GetConversationRequest {
            conversation_id: created.id.clone(),
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("tenant_id:"), "{err:?}");
}

on_each_backend!(a_parent_tenant_s_supervisor_reads_and_unassigns_a_child_s_conversation);
async fn a_parent_tenant_s_supervisor_reads_and_unassigns_a_child_s_conversation(
    db: support::TestDb,
) {
    let h = Harness::start(db).await;
    parent_tenant_reach(&h).await;
    h.stop().await;
}

async fn parent_tenant_reach(h: &Harness) {
    // The harness tenant is a child of `parent`; `sibling` is another child.
    let (parent, sibling) = (id(), id());
    {
        let mut ancestries = h.routing.ancestries.lock().unwrap();
        ancestries.insert(h.tenant.clone(), vec![parent.clone()]);
        ancestries.insert(sibling.clone(), vec![parent.clone()]);
    }
    let created = h.create().await;
    h.assign(&created.id, &h.agent1, &id())
        .await
        .expect("assign");
    let parent_sup = user(&parent, "Pat Parent", vec![Role::Supervisor]);
    let in_child = |request_id: &str| pb::UnassignConversationRequest {
        request_id: request_id.to_owned(),
        conversation_id: created.id.clone(),
        tenant_id: h.tenant.clone(),
    };
    let get_in = |tenant: &str| pb::GetConversationRequest {
        conversation_id: created.id.clone(),
        tenant_id: tenant.to_owned(),
        ..Default::default()
    };

    // Named, the child's conversation is the parent supervisor's to read; unnamed, it is
    // looked for in the parent tenant, where it is not.
    let mut as_parent = h.conversations(&parent_sup);
    let seen = as_parent
        .get_conversation(get_in(&h.tenant))
        .await
        .expect("the parent's supervisor reads the child's conversation")
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(seen.state, State::Active as i32);
    assert_eq!(seen.tenant_id, h.tenant);
    let err = h.get(&parent_sup, &created.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = as_parent
        .list_conversations(pb::ListConversationsRequest {
            tenant_id: h.tenant.to_uppercase(),
            ..Default::default()
        })
        .await
        .expect("list in the child")
        .into_inner()
        .conversations;
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [created.id.as_str()]
    );
    // The answer was kept: the directory was asked once for the child.
    assert_eq!(h.routing.ancestry_calls.load(Ordering::SeqCst), 1);

    // An agent of the parent may not name another tenant, whichever; the directory is not
    // even asked.
    let parent_agent = user(&parent, "Ari Parent", vec![Role::Agent]);
    for tenant in [h.tenant.clone(), id()] {
        let err = h
            .conversations(&parent_agent)
            .get_conversation(get_in(&tenant))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{tenant}");
        assert_eq!(reason_of(&err), "ROLE_REQUIRED");
    }
    let err = h
        .conversations(&parent_agent)
        .unassign_conversation(in_child(&id()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(h.routing.ancestry_calls.load(Ordering::SeqCst), 1);
    // A sibling's supervisor, and the child's own supervisor naming its parent, find
    // nothing, exactly as for a tenant that does not exist.
    let sibling_sup = user(&sibling, "Sib Sibling", vec![Role::Supervisor]);
    let err = h
        .conversations(&sibling_sup)
        .unassign_conversation(in_child(&id()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("tenant {} not found", h.tenant));
    for tenant in [parent.clone(), id()] {
        let err = h
            .conversations(&h.supervisor())
            .list_conversations(pb::ListConversationsRequest {
                tenant_id: tenant.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{tenant}");
        assert_eq!(err.message(), format!("tenant {tenant} not found"));
    }
    assert_eq!(
        h.get(&h.agent1, &created.id).await.unwrap().state,
        State::Active as i32
    );

    // The parent's supervisor unassigns it: OPEN in its queue, the agent's capacity released
    // and the conversation queued again, the parent's supervisor recorded as who did it.
    let request_id = id();
    let unassigned = as_parent
        .unassign_conversation(in_child(&request_id))
        .await
        .expect("the parent's supervisor unassigns")
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(unassigned.state, State::Open as i32);
    assert!(unassigned.owner_agent_id.is_empty());
    let event = h
        .events(&created.id)
        .await
        .into_iter()
        .find(|e| e.event_type == pb::EventType::Unassigned as i32)
        .expect("an UNASSIGNED event");
    assert_eq!(event.actor_id, parent_sup.principal_id);
    assert_eq!(event.previous_agent_id, h.agent1.principal_id);
    eventually("the release and the new enqueue", || async {
        let released = h
            .routing
            .released()
            .iter()
            .any(|r| r.conversation_id == created.id && r.agent_id == h.agent1.principal_id);
        let enqueued = h
            .routing
            .enqueued()
            .iter()
            .filter(|e| e.conversation_id == created.id)
            .count();
        (released && enqueued == 2).then_some(())
    })
    .await;
    // A retry is answered the same and changes nothing, even with the directory down.
    let sequence = h
        .get(&h.supervisor(), &created.id)
        .await
        .unwrap()
        .last_event_sequence;
    h.routing.directory_down.store(true, Ordering::SeqCst);
    let again = as_parent
        .unassign_conversation(in_child(&request_id))
        .await
        .expect("the retry")
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(again, unassigned);
    let after = h.get(&h.supervisor(), &created.id).await.unwrap();
    assert_eq!(
        after.last_event_sequence, sequence,
        "the retry changed nothing"
    );
    // The request id is the parent supervisor's own: the same id from a supervisor of the
    // child is a request of its own (refused: the conversation is OPEN now), and the parent
    // supervisor cannot reuse it for another request, in any tenant.
    let err = h
        .conversations(&h.supervisor())
        .unassign_conversation(pb::UnassignConversationRequest {
            request_id: request_id.clone(),
            conversation_id: created.id.clone(),
            tenant_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = as_parent
        .unassign_conversation(pb::UnassignConversationRequest {
            tenant_id: String::new(),
            ..in_child(&request_id)
        })
        .await
        .unwrap_err();
    assert_request_id_reused(&err);

    // A tenant the directory cannot answer for is refused, never widened to.
    let grandchild = id();
    h.routing
        .ancestries
        .lock()
        .unwrap()
        .insert(grandchild.clone(), vec![h.tenant.clone(), parent.clone()]);
    let err = as_parent
        .list_conversations(pb::ListConversationsRequest {
            tenant_id: grandchild,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(reason_of(&err), "UNAVAILABLE");
    h.routing.directory_down.store(false, Ordering::SeqCst);
}

on_each_backend!(the_outbox_retries_until_routing_accepts);
async fn the_outbox_retries_until_routing_accepts(db: support::TestDb) {
    let h = Harness::start(db).await;
    h.routing.enqueue_failures.store(3, Ordering::SeqCst);
    h.routing.release_failures.store(2, Ordering::SeqCst);
    let reason = h.reason("Done").await;

    let created = h.create().await;
    let enqueued = eventually("the enqueue after retries", || async {
        let e = h.routing.enqueued();
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(enqueued[0].conversation_id, created.id);
    assert_eq!(h.routing.enqueue_attempts.load(Ordering::SeqCst), 4);

    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    h.end_and_wrap_up(&h.agent1, &created.id, &reason.id).await;
    eventually("the release after retries", || async {
        (h.routing.released().len() == 1).then_some(())
    })
    .await;
    assert_eq!(h.routing.release_attempts.load(Ordering::SeqCst), 3);
    // Accepted once: nothing more is sent once the outbox has nothing pending.
    assert_eq!(outbox_settled(&h).await, (1, 1));
    assert_eq!(h.routing.enqueue_attempts.load(Ordering::SeqCst), 4);
    assert_eq!(h.routing.release_attempts.load(Ordering::SeqCst), 3);
    h.stop().await;
}

on_each_backend!(an_enqueue_left_pending_is_sent_after_a_restart);
async fn an_enqueue_left_pending_is_sent_after_a_restart(db: support::TestDb) {
    let h = Harness::start(db).await;
    // routing-svc keeps failing while this process runs.
    h.routing
        .enqueue_failures
        .store(usize::MAX, Ordering::SeqCst);
    let created = h.create().await;
    eventually("a failed attempt", || async {
        (h.routing.enqueue_attempts.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let h = h.restart().await;
    assert!(h.routing.enqueued().is_empty());
    // routing-svc recovers; the new process sends what the old one could not.
    h.routing.enqueue_failures.store(0, Ordering::SeqCst);
    let enqueued = eventually("the enqueue after the restart", || async {
        let e = h.routing.enqueued();
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(enqueued.len(), 1);
    assert_eq!(enqueued[0].conversation_id, created.id);
    h.stop().await;
}

on_each_backend!(a_release_is_sent_only_after_the_enqueue_it_follows);
/// A conversation's ReleaseCapacity waits while its Enqueue is still pending, however often
/// the Enqueue fails, and follows once routing-svc accepts the Enqueue.
async fn a_release_is_sent_only_after_the_enqueue_it_follows(db: support::TestDb) {
    let h = Harness::start(db).await;
    h.routing
        .enqueue_failures
        .store(usize::MAX, Ordering::SeqCst);
    let reason = h.reason("Done").await;
    let created = h.create().await;
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    h.end_and_wrap_up(&h.agent1, &created.id, &reason.id).await;
    // Rounds that began after the release was committed retry the failing enqueue; none
    // of them may send the release.
    let seen = h.routing.enqueue_attempts.load(Ordering::SeqCst);
    eventually("two more failed enqueue attempts", || async {
        (h.routing.enqueue_attempts.load(Ordering::SeqCst) >= seen + 2).then_some(())
    })
    .await;
    assert_eq!(
        h.routing.release_attempts.load(Ordering::SeqCst),
        0,
        "the release was sent while its enqueue was pending"
    );

    h.routing.enqueue_failures.store(0, Ordering::SeqCst);
    assert_eq!(outbox_settled(&h).await, (1, 1));
    assert_eq!(h.routing.enqueued().len(), 1);
    assert_eq!(h.routing.released().len(), 1);
    assert_eq!(h.routing.released()[0].conversation_id, created.id);
    assert_eq!(
        h.routing.releases_before_enqueue.load(Ordering::SeqCst),
        0,
        "a release reached routing-svc before its enqueue"
    );
    h.stop().await;
}

on_each_backend!(a_conversations_next_command_does_not_wait_for_the_next_poll);
/// An unassign commits two commands for one conversation (release the owner, enqueue
/// again); the second goes as soon as routing-svc accepts the first, not when the outbox
/// next looks for due commands on its own (here a minute away).
async fn a_conversations_next_command_does_not_wait_for_the_next_poll(db: support::TestDb) {
    let h = Harness::start_tuned(
        db,
        Tuning {
            outbox_retry_ms: 60_000,
            ..Tuning::default()
        },
    )
    .await;
    let created = h.create().await;
    eventually("the enqueue", || async {
        (h.routing.enqueued().len() == 1).then_some(())
    })
    .await;
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    h.unassign(&h.agent1, &created.id).await.expect("unassign");
    eventually("the release and the enqueue that follows it", || async {
        (h.routing.released().len() == 1 && h.routing.enqueued().len() == 2).then_some(())
    })
    .await;
    h.stop().await;
}

/// Conversations and outbox commands written, as (conversations, commands).
async fn written(h: &Harness) -> (i64, i64) {
    let db = switchboard_server_kit::Db::connect(&h._db.url)
        .await
        .unwrap();
    let count = |table: &'static str| {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&db.pool)
    };
    let counts = (
        count("conversations").await.unwrap(),
        count("command_outbox").await.unwrap(),
    );
    db.close().await;
    counts
}

on_each_backend!(creates_beyond_the_outbox_bound_are_refused_until_it_drains);
/// While routing-svc takes no Enqueue, creates beyond the outbox bound are refused with
/// RESOURCE_EXHAUSTED and a retry delay and write nothing; once routing-svc is back and the
/// outbox drains, creates are accepted again.
async fn creates_beyond_the_outbox_bound_are_refused_until_it_drains(db: support::TestDb) {
    const BOUND: u64 = 3;
    let h = Harness::start_tuned(
        db,
        Tuning {
            outbox_max_pending: BOUND,
            ..Tuning::default()
        },
    )
    .await;
    h.routing
        .enqueue_failures
        .store(usize::MAX, Ordering::SeqCst);
    let mut bot = h.conversations(&h.bot());
    // The bound's estimate errs towards refusing while a recount races a commit (a command
    // counted twice until the next round), so a create under the bound may be asked to wait.
    for _ in 0..BOUND {
        eventually("a create under the bound to be accepted", || {
            let mut bot = bot.clone();
            let request = h.create_request(id());
            async move {
                match bot.create_conversation(request).await {
                    Ok(_) => Some(()),
                    Err(status) if status.code() == Code::ResourceExhausted => None,
                    Err(status) => panic!("create failed: {status:?}"),
                }
            }
        })
        .await;
    }
    for _ in 0..2 {
        let err = bot
            .create_conversation(h.create_request(id()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert_eq!(reason_of(&err), "LIMIT_EXCEEDED");
        let retry = err.get_details_retry_info().expect("RetryInfo");
        assert!(retry.retry_delay.is_some_and(|d| !d.is_zero()));
    }
    assert_eq!(written(&h).await, (BOUND as i64, BOUND as i64));
    assert!(h.routing.enqueued().is_empty());

    h.routing.enqueue_failures.store(0, Ordering::SeqCst);
    assert_eq!(outbox_settled(&h).await, (BOUND as i64, 0));
    let created = eventually("a create to be accepted again", || {
        let mut bot = bot.clone();
        let request = h.create_request(id());
        async move {
            match bot.create_conversation(request).await {
                Ok(response) => Some(response.into_inner().conversation.unwrap()),
                Err(status) if status.code() == Code::ResourceExhausted => None,
                Err(status) => panic!("create failed: {status:?}"),
            }
        }
    })
    .await;
    eventually("the new conversation to be enqueued", || async {
        h.routing
            .enqueued()
            .iter()
            .any(|e| e.conversation_id == created.id)
            .then_some(())
    })
    .await;
    assert_eq!(written(&h).await, (BOUND as i64 + 1, BOUND as i64 + 1));
    h.stop().await;
}

on_each_backend!(outbox_lag_and_backlog_are_in_the_metrics);
/// A round that fails leaves its command counted as pending; the round that delivers it
/// observes its lag and counts none pending.
async fn outbox_lag_and_backlog_are_in_the_metrics(db: support::TestDb) {
    use conversation_svc::outbox::{RetryPolicy, SERIES, dispatch_due, retry_now};
    use switchboard_server_kit::db::now_micros;
    use switchboard_server_kit::metrics::OutboxMetrics;
    let mut h = Harness::start(db).await;
    h.list_ids(&h.supervisor()).await;
    // This test's dispatcher is the only one.
    h.shutdown.trigger();
    (&mut h.server)
        .await
        .unwrap()
        .expect("conversation-svc stops cleanly");
    let store = conversation_svc::store::Store::open(&h._db.url)
        .await
        .unwrap();
    let routing = conversation_svc::routing::Routing::new(
        &format!("http://{}", h.routing_addr),
        h.key.clone(),
        Duration::from_secs(2),
    )
    .unwrap();
    let policy = RetryPolicy {
        initial: Duration::from_secs(60),
        max: Duration::from_secs(60),
        lease: Duration::from_secs(4),
    };
    let metrics = switchboard_server_kit::Metrics::new("conversation-svc");
    let outbox = OutboxMetrics::register(metrics.registry(), &SERIES).unwrap();
    h.routing.enqueue_failures.store(1, Ordering::SeqCst);
    let (_, conversation_id) = write_enqueue_command(&h, &store, now_micros()).await;

    dispatch_due(&store, &routing, policy, &outbox)
        .await
        .unwrap();
    let rendered = metrics.render();
    assert!(
        rendered.contains("conversation_outbox_pending_commands{app=\"conversation-svc\"} 1"),
        "{rendered}"
    );
    assert!(
        rendered
            .contains("conversation_outbox_delivery_lag_seconds_count{app=\"conversation-svc\"} 0"),
        "{rendered}"
    );

    // As on a restart: the backoff is dropped and the command goes at once.
    assert_eq!(retry_now(&store).await.unwrap(), 1);
    dispatch_due(&store, &routing, policy, &outbox)
        .await
        .unwrap();
    assert_eq!(h.routing.enqueued()[0].conversation_id, conversation_id);
    let rendered = metrics.render();
    assert!(
        rendered.contains("conversation_outbox_pending_commands{app=\"conversation-svc\"} 0"),
        "{rendered}"
    );
    assert!(
        rendered
            .contains("conversation_outbox_delivery_lag_seconds_count{app=\"conversation-svc\"} 1"),
        "{rendered}"
    );
    store.db().close().await;
    h.routing_shutdown.trigger();
    h.routing_task.await.unwrap();
}

on_each_backend!(bad_input_gets_the_documented_codes_and_changes_nothing);
async fn bad_input_gets_the_documented_codes_and_changes_nothing(db: support::TestDb) {
    let h = Harness::start(db).await;
    let reason = h.reason("Resolved").await;
    let open = h.create().await;
    let before = h.list_ids(&h.supervisor()).await.len();
    let checks_before = h.routing.checks.load(Ordering::SeqCst);
    let mut bot = h.conversations(&h.bot());

    let expect = |result: Result<Response<pb::CreateConversationResponse>, Status>,
                  code: Code,
                  reason: &str| {
        let err = result.expect_err("refused");
        assert_eq!(err.code(), code, "{err:?}");
        assert_eq!(reason_of(&err), reason, "{err:?}");
        err
    };

    let err = expect(
        bot.create_conversation(h.create_request(String::new()))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err.message(), "request_id: is required");
    let err = expect(
        bot.create_conversation(h.create_request("not-a-uuid".into()))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err.message(), "request_id: must be a UUID");
    let mut no_channel = h.create_request(id());
    no_channel.channel = 0;
    let err = expect(
        bot.create_conversation(no_channel).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err.message(), "channel: is required");
    let mut bad_queue = h.create_request(id());
    bad_queue.queue_id = "42".into();
    let err = expect(
        bot.create_conversation(bad_queue).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err.message(), "queue_id: must be a UUID");
    let mut no_address = h.create_request(id());
    no_address.channel_address = String::new();
    let err = expect(
        bot.create_conversation(no_address).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(err.message(), "channel_address: is required");
    let mut no_name = h.create_request(id());
    no_name.contact.as_mut().unwrap().display_name = Some("  ".into());
    let err = expect(
        bot.create_conversation(no_name).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        err.message(),
        "contact.display_name: must not be blank; leave it unset when the channel gives no name"
    );
    let mut control = h.create_request(id());
    control.first_message = "bell\u{7}".into();
    let err = expect(
        bot.create_conversation(control).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(
        err.message()
            .starts_with("first_message: must not contain control characters (found U+0007)"),
        "{err:?}"
    );
    let mut bad_line = h.create_request(id());
    bad_line.bot_transcript[0].sender = pb::SenderKind::Agent as i32;
    let err = expect(
        bot.create_conversation(bad_line).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        err.message(),
        "bot_transcript[0].sender: must be CUSTOMER or BOT"
    );
    let mut long = h.create_request(id());
    long.first_message = "x".repeat(4001);
    expect(
        bot.create_conversation(long).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        h.routing.checks.load(Ordering::SeqCst),
        checks_before,
        "malformed requests never reach routing-svc"
    );

    // routing-svc's verdicts.
    let mut unknown_queue = h.create_request(id());
    unknown_queue.queue_id = id();
    expect(
        bot.create_conversation(unknown_queue).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let mut sms = h.create_request(id());
    sms.channel = Channel::Sms as i32;
    expect(
        bot.create_conversation(sms).await,
        Code::FailedPrecondition,
        "WRONG_STATE",
    );
    h.routing.down.store(true, Ordering::SeqCst);
    expect(
        bot.create_conversation(h.create_request(id())).await,
        Code::Unavailable,
        "UNAVAILABLE",
    );
    h.routing.down.store(false, Ordering::SeqCst);

    // Roles and identity.
    let err = h
        .conversations(&h.agent1)
        .create_conversation(h.create_request(id()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&err), "ROLE_REQUIRED");
    let mut anonymous = ConversationServiceClient::connect(format!("http://{}", h.addr))
        .await
        .unwrap();
    let err = anonymous
        .create_conversation(h.create_request(id()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let forged = signed_channel(
        &format!("http://{}", h.addr),
        IdentityKey::new("another-secret-of-enough-length").unwrap(),
        h.bot(),
    )
    .unwrap();
    let err = ConversationServiceClient::new(forged)
        .create_conversation(h.create_request(id()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = ConversationInternalServiceClient::new(h.channel(&h.admin()))
        .subscribe(ipb::SubscribeRequest { after_sequence: 0 })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "internal API needs a service identity"
    );

    // Reads: malformed and unknown ids, another tenant.
    let err = h.get(&h.agent1, "42").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "conversation_id: must be a UUID");
    assert_eq!(
        h.get(&h.agent1, &id()).await.unwrap_err().code(),
        Code::NotFound
    );
    let outsider = user(&id(), "Other Tenant", vec![Role::Supervisor, Role::Agent]);
    assert_eq!(
        h.get(&outsider, &open.id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(h.list_ids(&outsider).await.is_empty());
    let err = h
        .send(&outsider, &open.id, "hi", pb::SenderKind::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = h
        .conversations(&h.supervisor())
        .list_conversations(pb::ListConversationsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "page_size: must not be negative");
    // Over-large pages are clamped (AIP-158), not refused.
    h.conversations(&h.supervisor())
        .list_conversations(pb::ListConversationsRequest {
            page_size: i32::MAX,
            ..Default::default()
        })
        .await
        .expect("an over-large page size is clamped");
    let err = h
        .conversations(&h.supervisor())
        .list_conversations(pb::ListConversationsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Wrong state: an OPEN conversation cannot be ended, wrapped up, or written to by an agent.
    let mut agent = h.conversations(&h.agent1);
    let err = agent
        .end_conversation(pb::EndConversationRequest {
            request_id: id(),
            conversation_id: open.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&err), "WRONG_STATE");
    assert!(err.message().contains("OPEN"), "{}", err.message());
    let err = agent
        .submit_wrap_up(pb::SubmitWrapUpRequest {
            request_id: id(),
            conversation_id: open.id.clone(),
            wrap_up_reason_ids: vec![reason.id.clone()],
            note: String::new(),
            segment_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = agent
        .submit_wrap_up(pb::SubmitWrapUpRequest {
            request_id: id(),
            conversation_id: open.id.clone(),
            wrap_up_reason_ids: vec![],
            note: String::new(),
            segment_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = h
        .send(&h.agent1, &open.id, "hi", pb::SenderKind::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = agent
        .resume_conversation(pb::ResumeConversationRequest {
            request_id: id(),
            conversation_id: open.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Bots write as CUSTOMER or BOT only.
    let err = h
        .send(&h.bot(), &open.id, "hi", pb::SenderKind::Agent)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = h
        .send(&h.bot(), &open.id, "", pb::SenderKind::Customer)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Internal: malformed and unknown.
    let err = h.assign("nope", &h.agent1, &id()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        h.assign(&id(), &h.agent1, &id()).await.unwrap_err().code(),
        Code::NotFound
    );

    // Nothing changed.
    assert_eq!(h.list_ids(&h.supervisor()).await.len(), before);
    let still = h.get(&h.supervisor(), &open.id).await.unwrap();
    assert_eq!(still.state, State::Open as i32);
    assert_eq!(
        kinds(&h.events(&open.id).await).len(),
        3,
        "CREATED, QUEUED, first message only"
    );
    h.stop().await;
}

on_each_backend!(wrap_up_reasons_must_be_active_and_offered_in_the_queue);
async fn wrap_up_reasons_must_be_active_and_offered_in_the_queue(db: support::TestDb) {
    let h = Harness::start(db).await;
    let good = h.reason("Resolved").await;
    let mut admin = h.config(&h.admin());
    // A reason may only name the tenant's own queues: another tenant's queue, or one that
    // does not exist, is NOT_FOUND and nothing is created.
    let foreign_queue = id();
    h.routing.queues.lock().unwrap().insert(
        foreign_queue.clone(),
        (id(), id(), vec![Channel::Webchat as i32]),
    );
    for queue in [foreign_queue, id()] {
        let err = admin
            .create_wrap_up_reason(pb::CreateWrapUpReasonRequest {
                request_id: id(),
                wrap_up_reason: Some(pb::WrapUpReason {
                    display_name: "Not ours".into(),
                    queue_ids: vec![queue.clone()],
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert_eq!(err.message(), format!("queue {queue} not found"));
    }
    let other_queue = id();
    h.routing.queues.lock().unwrap().insert(
        other_queue.clone(),
        (
            h.tenant.clone(),
            h.program.clone(),
            vec![Channel::Webchat as i32],
        ),
    );
    let elsewhere = admin
        .create_wrap_up_reason(pb::CreateWrapUpReasonRequest {
            request_id: id(),
            wrap_up_reason: Some(pb::WrapUpReason {
                display_name: "Other queue".into(),
                queue_ids: vec![other_queue],
                active: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .wrap_up_reason
        .unwrap();
    let retired = h.reason("Retired").await;
    let updated = admin
        .update_wrap_up_reason(pb::UpdateWrapUpReasonRequest {
            request_id: id(),
            wrap_up_reason: Some(pb::WrapUpReason {
                id: retired.id.clone(),
                active: false,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["active".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .wrap_up_reason
        .unwrap();
    assert!(!updated.active);
    assert_eq!(
        updated.display_name, "Retired",
        "fields outside the mask stay"
    );

    // Duplicates, roles, listing.
    let err = admin
        .create_wrap_up_reason(pb::CreateWrapUpReasonRequest {
            request_id: id(),
            wrap_up_reason: Some(pb::WrapUpReason {
                display_name: "Resolved".into(),
                active: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = h
        .config(&h.agent1)
        .create_wrap_up_reason(pb::CreateWrapUpReasonRequest {
            request_id: id(),
            wrap_up_reason: Some(pb::WrapUpReason {
                display_name: "Sneaky".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let listed: Vec<String> = h
        .config(&h.agent1)
        .list_wrap_up_reasons(pb::ListWrapUpReasonsRequest {
            queue_id: h.queue.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .wrap_up_reasons
        .into_iter()
        .map(|r| r.display_name)
        .collect();
    assert_eq!(listed, vec!["Resolved"]);
    let page = h
        .config(&h.agent1)
        .list_wrap_up_reasons(pb::ListWrapUpReasonsRequest {
            include_inactive: true,
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.wrap_up_reasons.len(), 2);
    let rest = h
        .config(&h.agent1)
        .list_wrap_up_reasons(pb::ListWrapUpReasonsRequest {
            include_inactive: true,
            page_size: 2,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.wrap_up_reasons.len(), 1);
    assert!(rest.next_page_token.is_empty());

    let implicit = admin
        .create_wrap_up_reason(pb::CreateWrapUpReasonRequest {
            request_id: id(),
            wrap_up_reason: Some(pb::WrapUpReason {
                display_name: "Implicitly active".into(),
                queue_ids: vec![h.queue.clone()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .wrap_up_reason
        .unwrap();
    assert!(
        implicit.active,
        "a new reason is offered even when `active` is omitted"
    );
    let created = h.create().await;
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    let mut agent = h.conversations(&h.agent1);
    agent
        .end_conversation(pb::EndConversationRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
        })
        .await
        .unwrap();
    for (bad, why) in [
        (elsewhere.id.clone(), "not offered"),
        (retired.id.clone(), "inactive"),
        (id(), "unknown"),
    ] {
        let err = agent
            .submit_wrap_up(pb::SubmitWrapUpRequest {
                request_id: id(),
                conversation_id: created.id.clone(),
                wrap_up_reason_ids: vec![good.id.clone(), bad],
                note: String::new(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{why}: {err:?}");
        assert!(
            err.message().starts_with("wrap_up_reason_ids[1]"),
            "{}",
            err.message()
        );
    }
    let still = h.get(&h.agent1, &created.id).await.unwrap();
    assert_eq!(
        still.state,
        State::WrapUp as i32,
        "refused wrap-ups change nothing"
    );
    assert!(h.routing.released().is_empty());
    h.stop().await;
}

on_each_backend!(retried_requests_return_the_first_answer);
async fn retried_requests_return_the_first_answer(db: support::TestDb) {
    let h = Harness::start(db).await;
    let reason = h.reason("Resolved").await;
    let mut bot = h.conversations(&h.bot());
    let request_id = id();
    let first = bot
        .create_conversation(h.create_request(request_id.clone()))
        .await
        .unwrap()
        .into_inner();
    let retry = bot
        .create_conversation(h.create_request(request_id.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retry);
    let conversation = first.conversation.unwrap();
    assert_eq!(h.list_ids(&h.supervisor()).await.len(), 1);
    eventually("the enqueue", || async {
        (!h.routing.enqueued().is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        outbox_settled(&h).await.0,
        1,
        "one conversation, one enqueue command"
    );
    assert_eq!(
        h.routing.enqueued().len(),
        1,
        "one conversation, one enqueue"
    );

    h.assign(&conversation.id, &h.agent1, &id()).await.unwrap();
    let mut agent = h.conversations(&h.agent1);
    let send = pb::SendMessageRequest {
        request_id: id(),
        conversation_id: conversation.id.clone(),
        text: "only once".into(),
        sender: 0,
        ..Default::default()
    };
    let a = agent.send_message(send.clone()).await.unwrap().into_inner();
    let b = agent.send_message(send).await.unwrap().into_inner();
    assert_eq!(a, b);
    let messages = agent
        .list_messages(pb::ListMessagesRequest {
            conversation_id: conversation.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(messages.iter().filter(|m| m.text == "only once").count(), 1);

    let end = pb::EndConversationRequest {
        request_id: id(),
        conversation_id: conversation.id.clone(),
    };
    let ended = agent
        .end_conversation(end.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        agent.end_conversation(end).await.unwrap().into_inner(),
        ended,
        "a retried end is not WRONG_STATE"
    );
    let wrap = pb::SubmitWrapUpRequest {
        request_id: id(),
        conversation_id: conversation.id.clone(),
        wrap_up_reason_ids: vec![reason.id.clone()],
        note: String::new(),
        ..Default::default()
    };
    let closed = agent
        .submit_wrap_up(wrap.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        agent.submit_wrap_up(wrap).await.unwrap().into_inner(),
        closed
    );
    eventually("the release", || async {
        (!h.routing.released().is_empty()).then_some(())
    })
    .await;
    assert_eq!(outbox_settled(&h).await, (1, 1), "one release command");
    assert_eq!(h.routing.released().len(), 1);
    let kinds = kinds(&h.events(&conversation.id).await);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == pb::EventType::Closed)
            .count(),
        1
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == pb::EventType::Ended).count(),
        1
    );
    h.stop().await;
}

on_each_backend!(assignment_conflicts_and_bad_invitations_are_refused);
async fn assignment_conflicts_and_bad_invitations_are_refused(db: support::TestDb) {
    let h = Harness::start(db).await;
    let created = h.create().await;
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    // Another offer for the same conversation, to another agent: routing must release.
    let err = h.assign(&created.id, &h.agent2, &id()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&err), "WRONG_STATE");
    // An offer id reused for another conversation is refused.
    let other = h.create().await;
    let offer = id();
    h.assign(&other.id, &h.agent2, &offer).await.unwrap();
    let err = h.assign(&created.id, &h.agent2, &offer).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::InvalidArgument | Code::FailedPrecondition),
        "{err:?}"
    );
    // An invitation in a role nobody is invited in is refused before routing is asked.
    let err = h
        .conversations(&h.agent1)
        .invite_participant(pb::InviteParticipantRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
            agent_id: h.agent2.principal_id.clone(),
            role: pb::ParticipantRole::Owner as i32,
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("role"), "{err:?}");
    h.stop().await;
}

on_each_backend!(wrap_up_left_past_the_queue_limit_closes_on_its_own);
async fn wrap_up_left_past_the_queue_limit_closes_on_its_own(db: support::TestDb) {
    let h = Harness::start(db).await;
    let reason = h.reason("Resolved").await;
    let limited = h.create().await;
    let unlimited = h.create().await;
    let submitted = h.create().await;
    let limit = Some(Duration::from_millis(300));
    h.assign_with_limit(&limited.id, &h.agent1, &id(), limit)
        .await
        .unwrap();
    h.assign(&unlimited.id, &h.agent1, &id()).await.unwrap();
    h.assign_with_limit(&submitted.id, &h.agent2, &id(), limit)
        .await
        .unwrap();
    let end = |agent: &Identity, conversation_id: &str| {
        let mut client = h.conversations(agent);
        let conversation_id = conversation_id.to_owned();
        async move {
            client
                .end_conversation(pb::EndConversationRequest {
                    request_id: id(),
                    conversation_id,
                })
                .await
                .expect("end")
        }
    };
    end(&h.agent1, &unlimited.id).await;
    end(&h.agent1, &limited.id).await;
    // Wrap-up submitted within the limit closes it as usual, and the limit does nothing more.
    h.end_and_wrap_up(&h.agent2, &submitted.id, &reason.id)
        .await;

    let closed = eventually("the limit to close the conversation", || async {
        let conv = h.get(&h.agent1, &limited.id).await.unwrap();
        (conv.state == State::Closed as i32).then_some(conv)
    })
    .await;
    assert_eq!(closed.close_reason, pb::CloseReason::WrapUpTimeLimit as i32);
    let events = h.events(&limited.id).await;
    let closes: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == pb::EventType::Closed as i32)
        .collect();
    assert_eq!(closes.len(), 1, "{events:?}");
    assert_eq!(closes[0].actor_id, "", "the system closed it");
    assert!(
        !kinds(&events).contains(&pb::EventType::WrapUpSubmitted),
        "{events:?}"
    );
    let err = h
        .conversations(&h.agent1)
        .submit_wrap_up(pb::SubmitWrapUpRequest {
            request_id: id(),
            conversation_id: limited.id.clone(),
            wrap_up_reason_ids: vec![reason.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    eventually("the owner's capacity to be released", || async {
        h.routing
            .released()
            .iter()
            .any(|r| r.conversation_id == limited.id && r.agent_id == h.agent1.principal_id)
            .then_some(())
    })
    .await;

    let submitted = h.get(&h.agent2, &submitted.id).await.unwrap();
    assert_eq!(
        submitted.close_reason,
        pb::CloseReason::WrapUpSubmitted as i32
    );
    let unlimited = h.get(&h.agent1, &unlimited.id).await.unwrap();
    assert_eq!(unlimited.state, State::WrapUp as i32, "no limit, no close");
    h.stop().await;
}

on_each_backend!(streams_end_at_shutdown);
async fn streams_end_at_shutdown(db: support::TestDb) {
    let h = Harness::start(db).await;
    let created = h.create().await;
    let mut subscription = h
        .internal()
        .subscribe(ipb::SubscribeRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut conversation = h
        .conversations(&h.supervisor())
        .stream_conversation(pb::StreamConversationRequest {
            conversation_id: created.id.clone(),
            start: Some(Start::AfterSequence(1)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Both deliver what is there already.
    let Some(SubscribeUpdate::Entry(first)) = subscription.next().await.unwrap().unwrap().update
    else {
        panic!("an entry first");
    };
    assert_eq!(first.log_sequence, 1);
    let Some(Update::Conversation(_)) = next_update(&mut conversation).await.update else {
        panic!("the conversation first");
    };
    let Some(Update::Event(next)) = next_update(&mut conversation).await.update else {
        panic!("then the replay");
    };
    assert_eq!(next.sequence, 2);
    let Harness {
        shutdown,
        server,
        routing_shutdown,
        routing_task,
        ..
    } = h;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = subscription.next().await {}
        while let Some(Ok(_)) = conversation.next().await {}
    })
    .await
    .expect("streams end at shutdown");
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    routing_shutdown.trigger();
    routing_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_identity_secret_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = conversation_svc::Config {
        identity_secret: "short".into(),
        metrics_listen: None,
        database_url: "sqlite::memory:".into(),
        ..Default::default()
    };
    let err = conversation_svc::serve(config, listener, ShutdownSignal::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("identity_secret"), "{err:#}");
    assert_eq!(
        conversation_svc::HEALTH_SERVICES,
        &[
            "switchboard.conversation.v1.ConversationService",
            "switchboard.conversation.v1.SupervisorService",
            "switchboard.conversation.v1.ConversationConfigService",
            "switchboard.conversation.internal.v1.ConversationInternalService",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Request ids (AIP-155).

/// The texts of a conversation's messages, as its owner sees them.
async fn texts(h: &Harness, owner: &Identity, conversation_id: &str) -> Vec<String> {
    h.conversations(owner)
        .list_messages(pb::ListMessagesRequest {
            conversation_id: conversation_id.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect()
}

fn send_request(request_id: &str, conversation_id: &str, text: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        request_id: request_id.to_owned(),
        conversation_id: conversation_id.to_owned(),
        text: text.to_owned(),
        ..Default::default()
    }
}

fn assert_request_id_reused(status: &Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason_of(status), "INVALID_ARGUMENT");
    assert!(
        status
            .message()
            .contains("was already used for a different request"),
        "{status:?}"
    );
    let violations = status.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "request_id");
}

on_each_backend!(request_ids_are_scoped_to_the_caller_and_the_request);
async fn request_ids_are_scoped_to_the_caller_and_the_request(db: support::TestDb) {
    let h = Harness::start(db).await;
    request_ids_of_two_agents(&h).await;
    request_ids_before_routing_is_asked(&h).await;
    h.stop().await;
}

/// Two agents of one tenant send the same request_id to their own conversations; one
/// reuses it for another text, and later, once its record has expired, sends that text.
async fn request_ids_of_two_agents(h: &Harness) {
    let first = h.create().await;
    let second = h.create().await;
    h.assign(&first.id, &h.agent1, &id()).await.unwrap();
    h.assign(&second.id, &h.agent2, &id()).await.unwrap();
    let mut alex = h.conversations(&h.agent1);
    let mut blake = h.conversations(&h.agent2);
    let request_id = id();

    let alex_sent = alex
        .send_message(send_request(&request_id, &first.id, "for the first"))
        .await
        .unwrap()
        .into_inner();
    // Blake's message is his own: applied to his conversation, and nothing of Alex's
    // conversation comes back.
    let blake_sent = blake
        .send_message(send_request(&request_id, &second.id, "for the second"))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(blake_sent.conversation_id, second.id);
    assert_eq!(blake_sent.text, "for the second");
    assert!(
        texts(h, &h.agent2, &second.id)
            .await
            .contains(&"for the second".to_owned())
    );

    // An exact retry gets the first answer and adds nothing.
    let retry = alex
        .send_message(send_request(&request_id, &first.id, "for the first"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, alex_sent);
    let before = texts(h, &h.agent1, &first.id).await;
    assert_eq!(before.iter().filter(|t| *t == "for the first").count(), 1);

    // The same request_id with another text is refused and changes nothing.
    let reused = alex
        .send_message(send_request(&request_id, &first.id, "changed"))
        .await
        .unwrap_err();
    assert_request_id_reused(&reused);
    assert_eq!(texts(h, &h.agent1, &first.id).await, before);

    // Alex's record passes the retention (a day): the purge deletes it and the request_id
    // is free again. Blake's recent record stays.
    let db = switchboard_server_kit::Db::connect(&h._db.url)
        .await
        .unwrap();
    let backdated =
        sqlx::query("UPDATE request_log SET created_at = created_at - $1 WHERE caller = $2")
            .bind(25 * 3_600 * 1_000_000_i64)
            .bind(idempotency::caller_of(&h.agent1))
            .execute(db.writer())
            .await
            .unwrap()
            .rows_affected();
    assert_eq!(backdated, 1);
    db.close().await;
    let changed = eventually("the expired record to be purged", || {
        let mut alex = alex.clone();
        let request = send_request(&request_id, &first.id, "changed");
        async move {
            match alex.send_message(request).await {
                Ok(response) => Some(response.into_inner()),
                Err(status) => {
                    assert_request_id_reused(&status);
                    None
                }
            }
        }
    })
    .await;
    assert_eq!(changed.message.unwrap().text, "changed");
    let blake_retry = blake
        .send_message(send_request(&request_id, &second.id, "for the second"))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(blake_retry, blake_sent);
}

/// CreateConversation answers a retry, or refuses a reused request_id, before it asks
/// routing-svc about the queue; another bot's request with the same id is its own.
async fn request_ids_before_routing_is_asked(h: &Harness) {
    let request_id = id();
    let mut bot = h.conversations(&h.bot());
    let created = bot
        .create_conversation(h.create_request(request_id.clone()))
        .await
        .unwrap()
        .into_inner();
    let checks = h.routing.checks.load(Ordering::SeqCst);
    let retry = bot
        .create_conversation(h.create_request(request_id.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, created);
    let mut other = h.create_request(request_id.clone());
    other.channel_address = "visitor-43".into();
    let reused = bot.create_conversation(other.clone()).await.unwrap_err();
    assert_request_id_reused(&reused);
    assert_eq!(h.routing.checks.load(Ordering::SeqCst), checks);

    let mut another_bot = h.conversations(&h.bot());
    let theirs = another_bot
        .create_conversation(other)
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_ne!(theirs.id, created.conversation.unwrap().id);
    assert_eq!(theirs.channel_address, "visitor-43");
}

// --- card numbers (product rule 14) ---------------------------------------------------------

/// Full card numbers used below, and whether `value` still holds one of them once its
/// digits (of any script) are read in order with everything else dropped.
const PANS: [&str; 4] = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
];

fn holds_pan(value: &str) -> bool {
    let digits: String = value
        .replace("%20", " ")
        .chars()
        .filter_map(|c| {
            switchboard_server_kit::masking::digit_value(c).map(|d| char::from(b'0' + d))
        })
        .collect();
    PANS.iter().any(|pan| digits.contains(pan))
}

on_each_backend!(card_numbers_in_every_text_field_are_stored_masked);
async fn card_numbers_in_every_text_field_are_stored_masked(db: support::TestDb) {
    let url = db.url.clone();
    let h = Harness::start(db).await;
    every_text_field_is_masked(&h, &url).await;
    h.stop().await;
}

async fn every_text_field_is_masked(h: &Harness, url: &str) {
    let admin = h.admin();
    let reason = h
        .config(&admin)
        .create_wrap_up_reason(pb::CreateWrapUpReasonRequest {
            request_id: id(),
            wrap_up_reason: Some(pb::WrapUpReason {
                display_name: "Refund 4111 1111 1111 1111".into(),
                code: "4111-1111-1111-1111".into(),
                queue_ids: vec![h.queue.clone()],
                active: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .wrap_up_reason
        .unwrap();
    assert_eq!(reason.display_name, "Refund 4111 11** **** 1111");
    assert_eq!(reason.code, "4111-11**-****-1111");

    let mut request = h.create_request(id());
    request.contact = Some(pb::Contact {
        display_name: Some("Casey\t5555\t5555\t5555\t4444".into()),
        ..Default::default()
    });
    request.channel_address = "card.4111.1111.1111.1111@example.com".into();
    request.pre_chat_data = vec![pb::PreChatField {
        name: "pan_4111_1111_1111_1111".into(),
        label: "بطاقة ٤١١١ ١١١١ ١١١١ ١١١١".into(),
        value: "４１１１－１１１１－１１１１－１１１１".into(),
    }];
    request.bot_transcript[0].text = "4111%201111%201111%201111".into();
    request.bot_transcript[1].sender_display_name = "Bot 4111\u{a0}1111\u{a0}1111\u{a0}1111".into();
    request.first_message = "3782 822463 10005".into();
    let created = h
        .conversations(&h.bot())
        .create_conversation(request)
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(
        created.channel_address,
        "card.4111.11**.****.1111@example.com"
    );
    assert_eq!(
        created.contact.as_ref().unwrap().display_name(),
        "Casey\t5555\t55**\t****\t4444"
    );
    assert_eq!(created.pre_chat_data[0].name, "pan_4111_11**_****_1111");
    assert_eq!(created.pre_chat_data[0].label, "بطاقة ٤١١١ ١١** **** ١١١١");
    assert_eq!(
        created.pre_chat_data[0].value,
        "４１１１－１１**－****－１１１１"
    );
    assert_eq!(created.bot_transcript[0].text, "4111%2011**%20****%201111");
    assert_eq!(
        created.bot_transcript[1].sender_display_name,
        "Bot 4111\u{a0}11**\u{a0}****\u{a0}1111"
    );

    let agent = user(&h.tenant, "Alex 5555.5555.5555.4444", vec![Role::Agent]);
    let assigned = h.assign(&created.id, &agent, &id()).await.unwrap();
    assert_eq!(assigned.owner_display_name, "Alex 5555.55**.****.4444");
    let sent = h
        .send(
            &agent,
            &created.id,
            "4111\n1111\n1111\n1111",
            pb::SenderKind::Agent,
        )
        .await
        .unwrap();
    assert_eq!(sent.text, "4111\n11**\n****\n1111");
    assert_eq!(sent.sender_display_name, "Alex 5555.55**.****.4444");
    h.conversations(&agent)
        .set_waiting(pb::SetWaitingRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
            reason: "card 6011/1111/1111/1117".into(),
        })
        .await
        .unwrap();
    h.conversations(&agent)
        .resume_conversation(pb::ResumeConversationRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
        })
        .await
        .unwrap();
    h.conversations(&agent)
        .end_conversation(pb::EndConversationRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
        })
        .await
        .unwrap();
    h.conversations(&agent)
        .submit_wrap_up(pb::SubmitWrapUpRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
            wrap_up_reason_ids: vec![reason.id.clone()],
            note: "note ४१११ ११११ ११११ ११११".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // No table holds a full card number, whatever the field.
    let db = switchboard_server_kit::Db::connect(url).await.unwrap();
    let columns = [
        ("contacts", "channel_address"),
        ("contacts", "display_name"),
        ("conversations", "channel_address"),
        ("conversations", "owner_display_name"),
        ("pre_chat_fields", "name"),
        ("pre_chat_fields", "label"),
        ("pre_chat_fields", "value"),
        ("transcript_entries", "text"),
        ("transcript_entries", "sender_display_name"),
        ("participants", "display_name"),
        ("messages", "sender_display_name"),
        ("messages", "text"),
        ("segments", "wrap_up_note"),
        ("events", "detail"),
        ("wrap_up_reasons", "display_name"),
        ("wrap_up_reasons", "code"),
    ];
    let mut seen = 0;
    for (table, column) in columns {
        let values: Vec<(String,)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {column} FROM {table}")))
                .fetch_all(&db.pool)
                .await
                .unwrap();
        for (value,) in values {
            assert!(
                !holds_pan(&value),
                "{table}.{column} holds a card number: {value:?}"
            );
            seen += usize::from(value.contains('*'));
        }
    }
    // Every masked input above reached some column (so the scan read the right ones).
    assert!(seen >= 14, "only {seen} masked values stored");
    let payloads: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT payload FROM command_outbox")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(!payloads.is_empty());
    for (payload,) in payloads {
        assert!(
            !holds_pan(&String::from_utf8_lossy(&payload)),
            "an outbox command holds a card number"
        );
    }
    db.close().await;
}

// ---------------------------------------------------------------------------------------
// The outbox across processes, and Subscribe across replicas.

/// Writes an enqueue command for a new conversation id through `store`, due at `due`.
async fn write_enqueue_command(
    h: &Harness,
    store: &conversation_svc::store::Store,
    due: i64,
) -> (String, String) {
    let conversation_id = id();
    let request = rpb::EnqueueConversationRequest {
        tenant_id: h.tenant.clone(),
        conversation_id: conversation_id.clone(),
        queue_id: h.queue.clone(),
        ..Default::default()
    };
    let mut m = store.begin().await.unwrap();
    let command = m
        .add_command(
            conversation_svc::store::CommandKind::Enqueue,
            &h.tenant,
            &conversation_id,
            prost::Message::encode_to_vec(&request),
            due,
        )
        .await
        .unwrap();
    m.commit(None, &()).await.unwrap();
    (command, conversation_id)
}

on_each_backend!(a_command_leased_by_a_crashed_process_is_sent_by_another);
/// A process that claimed a command and crashed before sending it leaves the command
/// leased; once the lease runs out, the dispatcher of the running process sends it.
async fn a_command_leased_by_a_crashed_process_is_sent_by_another(db: support::TestDb) {
    use switchboard_server_kit::db::now_micros;
    let h = Harness::start(db).await;
    // Answering means it has migrated the database: a second store may open it now.
    h.list_ids(&h.supervisor()).await;
    let crashed = conversation_svc::store::Store::open(&h._db.url)
        .await
        .unwrap();
    // Written and claimed in one transaction, so that the crashed process is the one to
    // claim it first.
    let conversation_id = id();
    let request = rpb::EnqueueConversationRequest {
        tenant_id: h.tenant.clone(),
        conversation_id: conversation_id.clone(),
        queue_id: h.queue.clone(),
        ..Default::default()
    };
    let written = now_micros();
    let lease_until = written + 300_000;
    let mut m = crashed.begin().await.unwrap();
    let command = m
        .add_command(
            conversation_svc::store::CommandKind::Enqueue,
            &h.tenant,
            &conversation_id,
            prost::Message::encode_to_vec(&request),
            written,
        )
        .await
        .unwrap();
    let claimed = m.claim_commands(written, lease_until, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, command);
    m.commit(None, &()).await.unwrap();
    // The crash: the claim is never followed by an attempt or an outcome.
    crashed.db().close().await;
    drop(crashed);

    eventually(
        "the leased command to be sent by the running process",
        || async {
            h.routing
                .enqueued()
                .iter()
                .any(|e| e.conversation_id == conversation_id)
                .then_some(())
        },
    )
    .await;
    assert!(
        now_micros() >= lease_until,
        "sent while the crashed process still held the lease"
    );
    assert_eq!(outbox_settled(&h).await, (1, 0));
    let store = conversation_svc::store::Store::open(&h._db.url)
        .await
        .unwrap();
    let sent = store.command(&command).await.unwrap().unwrap();
    assert_eq!(sent.state, conversation_svc::store::CommandState::Done);
    assert_eq!(sent.attempts, 2, "the crashed claim and the retry");
    assert_eq!(h.routing.enqueue_attempts.load(Ordering::SeqCst), 1);
    h.stop().await;
}

on_each_backend!(two_dispatchers_on_one_database_send_each_command_once);
/// Dispatchers of two processes racing over one outbox (plus the service's own) send every
/// command exactly once: the claim's conditional update decides who sends it.
async fn two_dispatchers_on_one_database_send_each_command_once(db: support::TestDb) {
    use conversation_svc::outbox::{RetryPolicy, SERIES, dispatch_due};
    use switchboard_server_kit::metrics::OutboxMetrics;
    const COMMANDS: usize = 64;
    let h = Harness::start(db).await;
    h.list_ids(&h.supervisor()).await;
    let policy = RetryPolicy {
        initial: Duration::from_millis(30),
        max: Duration::from_millis(120),
        lease: Duration::from_secs(30),
    };
    let replica = || async {
        let store = conversation_svc::store::Store::open(&h._db.url)
            .await
            .unwrap();
        let routing = conversation_svc::routing::Routing::new(
            &format!("http://{}", h.routing_addr),
            h.key.clone(),
            // Generous: on a loaded machine a call past its deadline is sent again, and
            // the test counts sends.
            Duration::from_secs(30),
        )
        .unwrap();
        (store, routing)
    };
    let (a, a_routing) = replica().await;
    let (b, b_routing) = replica().await;
    let mut conversations = Vec::new();
    for _ in 0..COMMANDS {
        let due = switchboard_server_kit::db::now_micros();
        conversations.push(write_enqueue_command(&h, &a, due).await.1);
    }
    let metrics = || {
        let registry = switchboard_server_kit::Metrics::new("conversation-svc");
        OutboxMetrics::register(registry.registry(), &SERIES).unwrap()
    };
    let (a_metrics, b_metrics) = (metrics(), metrics());
    let (ra, rb) = tokio::join!(
        dispatch_due(&a, &a_routing, policy, &a_metrics),
        dispatch_due(&b, &b_routing, policy, &b_metrics)
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(outbox_settled(&h).await, (COMMANDS as i64, 0));

    let mut sent: Vec<String> = h
        .routing
        .enqueued()
        .into_iter()
        .map(|e| e.conversation_id)
        .collect();
    sent.sort();
    conversations.sort();
    assert_eq!(sent, conversations, "every command sent, none twice");
    assert_eq!(
        h.routing.enqueue_attempts.load(Ordering::SeqCst),
        COMMANDS,
        "no command sent twice"
    );
    h.stop().await;
}

on_each_backend!(subscribe_polls_for_events_another_replica_commits);
/// Events committed by another replica reach a Subscribe stream through polling: this
/// process sees no local commit, and its heartbeat is too slow to stand in for the poll.
async fn subscribe_polls_for_events_another_replica_commits(db: support::TestDb) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = conversation_svc::Config {
        listen: addr,
        metrics_listen: None,
        database_url: db.url.clone(),
        identity_secret: SECRET.to_owned(),
        routing_url: "http://127.0.0.1:9".to_owned(),
        event_poll_ms: 100,
        heartbeat_ms: 60_000,
        ..Default::default()
    };
    let shutdown = ShutdownSignal::new();
    let server = tokio::spawn(conversation_svc::serve(config, listener, shutdown.clone()));
    let channel = signed_channel(
        &format!("http://{addr}"),
        IdentityKey::new(SECRET).unwrap(),
        Identity::service("reporting-svc"),
    )
    .unwrap();
    let mut subscription = eventually("conversation-svc to serve Subscribe", || {
        let mut client = ConversationInternalServiceClient::new(channel.clone());
        async move {
            client
                .subscribe(ipb::SubscribeRequest { after_sequence: 0 })
                .await
                .ok()
                .map(Response::into_inner)
        }
    })
    .await;
    let first = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("caught up on the empty log")
        .unwrap()
        .unwrap();
    assert!(
        matches!(first.update, Some(SubscribeUpdate::CaughtUp(_))),
        "{first:?}"
    );

    // The other replica: its own store on the same database.
    let other = conversation_svc::store::Store::open(&db.url).await.unwrap();
    let tenant = id();
    let mut m = other.begin().await.unwrap();
    let conv = m
        .create_conversation(&conversation_svc::store::NewConversation {
            id: id(),
            tenant_id: tenant.clone(),
            channel: Channel::Webchat as i32,
            queue_id: id(),
            program_id: id(),
            contact_id: None,
            contact_display_name: "Casey".into(),
            channel_address: "visitor-7".into(),
            pre_chat: Vec::new(),
            transcript: Vec::new(),
            now: switchboard_server_kit::db::now_micros(),
        })
        .await
        .unwrap();
    m.event(conversation_svc::store::Event::about(
        &conv,
        pb::EventType::Created as i32,
        "",
        conv.create_time,
    ));
    m.commit(None, &()).await.unwrap();

    let entry = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("the other replica's event within the poll interval (and long before a heartbeat)")
        .unwrap()
        .unwrap();
    match entry.update {
        Some(SubscribeUpdate::Entry(entry)) => {
            let event = entry.event.unwrap();
            assert_eq!(event.conversation_id, conv.id);
            assert_eq!(event.event_type, pb::EventType::Created as i32);
        }
        other => panic!("expected the other replica's event, got {other:?}"),
    }
    drop(subscription);
    shutdown.trigger();
    server.await.unwrap().unwrap();
}

on_each_backend!(status_labels_follow_visibility_and_closed_conversations_keep_theirs);
async fn status_labels_follow_visibility_and_closed_conversations_keep_theirs(db: support::TestDb) {
    let h = Harness::start(db).await;
    let label = |name: &str| {
        let mut config = h.config(&h.admin());
        let name = name.to_owned();
        async move {
            config
                .create_status_label(pb::CreateStatusLabelRequest {
                    request_id: id(),
                    status_label: Some(pb::StatusLabel {
                        display_name: name,
                        ..Default::default()
                    }),
                })
                .await
                .expect("create label")
                .into_inner()
                .status_label
                .expect("label")
        }
    };
    let refund = label("Awaiting refund").await;
    let set = |who: &Identity, conversation_id: &str, label_id: &str| {
        let mut client = h.conversations(who);
        let request = pb::SetConversationStatusRequest {
            request_id: id(),
            conversation_id: conversation_id.to_owned(),
            status_label_id: label_id.to_owned(),
        };
        async move {
            client
                .set_conversation_status(request)
                .await
                .map(|r| r.into_inner().conversation.expect("conversation"))
        }
    };

    let created = h.create().await;
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    // Another agent does not see agent1's conversation: NOT_FOUND, nothing changes.
    let err = set(&h.agent2, &created.id, &refund.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // An unknown label is NOT_FOUND too.
    let err = set(&h.agent1, &created.id, &id()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("status label"), "{err:?}");
    let before = h.events(&created.id).await.len();

    let labelled = set(&h.agent1, &created.id, &refund.id).await.unwrap();
    assert_eq!(labelled.status_label_id, refund.id);
    // Setting the label it already has changes nothing and records nothing.
    set(&h.agent1, &created.id, &refund.id).await.unwrap();
    let events = h.events(&created.id).await;
    assert_eq!(events.len(), before + 1);
    let changed = events.last().unwrap();
    assert_eq!(changed.event_type, pb::EventType::StatusChanged as i32);
    assert_eq!(changed.status_label_id, refund.id);
    assert_eq!(changed.actor_id, h.agent1.principal_id, "who did it");
    assert_eq!(changed.agent_id, h.agent1.principal_id);

    // A CLOSED conversation keeps the status it closed with.
    let reason = h.reason("Resolved").await;
    h.end_and_wrap_up(&h.agent1, &created.id, &reason.id).await;
    let err = set(&h.supervisor(), &created.id, "").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(reason_of(&err), "WRONG_STATE");
    assert_eq!(
        h.get(&h.supervisor(), &created.id)
            .await
            .unwrap()
            .status_label_id,
        refund.id
    );

    // Deleting the label clears it everywhere, closed conversations included, each with
    // a STATUS_CHANGED event by the administrator.
    let open = h.create().await;
    set(&h.supervisor(), &open.id, &refund.id).await.unwrap();
    let admin = h.admin();
    h.config(&admin)
        .delete_status_label(pb::DeleteStatusLabelRequest {
            request_id: id(),
            status_label_id: refund.id.clone(),
        })
        .await
        .expect("delete label");
    for conversation_id in [&created.id, &open.id] {
        let conv = h.get(&h.supervisor(), conversation_id).await.unwrap();
        assert_eq!(conv.status_label_id, "");
        let last = h.events(conversation_id).await.pop().unwrap();
        assert_eq!(last.event_type, pb::EventType::StatusChanged as i32);
        assert_eq!(last.status_label_id, "");
        assert_eq!(last.actor_id, admin.principal_id);
        assert_eq!(last.sequence, conv.last_event_sequence);
    }
    h.stop().await;
}

on_each_backend!(an_ongoing_view_streams_its_snapshot_in_pages_then_beats_when_quiet);
/// A supervisor's view of ongoing conversations holds more than one page of snapshot, each
/// conversation once, then its end; a quiet stream sends heartbeats (300 ms here).
async fn an_ongoing_view_streams_its_snapshot_in_pages_then_beats_when_quiet(db: support::TestDb) {
    use switchboard_proto::conversation::v1::stream_ongoing_conversations_response::Update as Ongoing;
    let h = Harness::start(db).await;
    // One more than a page of the snapshot (200).
    let mut created = std::collections::HashSet::new();
    for _ in 0..201 {
        created.insert(h.create().await.id);
    }
    let mut stream = SupervisorServiceClient::new(h.channel(&h.supervisor()))
        .stream_ongoing_conversations(pb::StreamOngoingConversationsRequest::default())
        .await
        .expect("a supervisor streams ongoing conversations")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a message within 5 s")
            .expect("stream open")
            .expect("stream ok")
            .update
            .expect("an update")
    };
    let mut held = std::collections::HashSet::new();
    loop {
        match next().await {
            Ongoing::Conversation(c) => assert!(held.insert(c.id.clone()), "{} twice", c.id),
            Ongoing::SnapshotEnd(_) => break,
            other => panic!("in the snapshot: {other:?}"),
        }
    }
    assert_eq!(held, created);
    let quiet = next().await;
    assert!(
        matches!(quiet, Ongoing::Heartbeat(ref hb) if hb.server_time.is_some()),
        "a heartbeat when nothing happens, got {quiet:?}"
    );
    drop(stream);
    h.stop().await;
}

on_each_backend!(a_logout_returns_a_conversation_once_and_only_its_owners);
async fn a_logout_returns_a_conversation_once_and_only_its_owners(db: support::TestDb) {
    let h = Harness::start(db).await;
    let created = h.create().await;
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    let logout = |request_id: &str, logout_time: prost_types::Timestamp| {
        let mut client = h.internal();
        let request = ipb::ReleaseOnLogoutRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: created.id.clone(),
            agent_id: h.agent1.principal_id.clone(),
            request_id: request_id.to_owned(),
            logout_by: h.agent1.principal_id.clone(),
            logout_time: Some(logout_time),
        };
        async move {
            client
                .release_on_logout(request)
                .await
                .expect("release on logout")
                .into_inner()
                .released
        }
    };
    let first = id();
    let at = prost_types::Timestamp::from(std::time::SystemTime::now());
    assert!(logout(&first, at).await, "the owner's conversation returns");
    assert!(logout(&first, at).await, "a retry is answered alike");
    let unassigned = |events: Vec<pb::ConversationEvent>| {
        events
            .into_iter()
            .filter(|e| e.event_type == pb::EventType::Unassigned as i32)
            .count()
    };
    assert_eq!(unassigned(h.events(&created.id).await), 1, "applied once");
    eventually("the capacity release and the new enqueue", || async {
        (h.routing.released().len() == 1 && h.routing.enqueued().len() == 2).then_some(())
    })
    .await;

    // Not the agent's any more: another logout entry changes nothing.
    assert!(!logout(&id(), at).await);
    // The agent got it again after that logout: a late entry of it leaves it alone.
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    assert!(!logout(&id(), at).await);
    assert_eq!(unassigned(h.events(&created.id).await), 1);
    h.stop().await;
}

on_each_backend!(an_assignment_from_before_a_move_is_refused);
/// routing-svc may apply an offer it made before it heard of a move (the move's commands
/// still on their way to it): the assignment names the enqueue it came from, and only the
/// conversation's latest is applied.
async fn an_assignment_from_before_a_move_is_refused(db: support::TestDb) {
    let h = Harness::start(db).await;
    let other = id();
    h.routing.queues.lock().unwrap().insert(
        other.clone(),
        (
            h.tenant.clone(),
            h.program.clone(),
            vec![Channel::Webchat as i32],
        ),
    );
    let created = h.create().await;
    let first = eventually("the first enqueue", || async {
        h.routing.enqueued().first().cloned()
    })
    .await;
    h.conversations(&h.supervisor())
        .move_conversation_to_queue(pb::MoveConversationToQueueRequest {
            request_id: id(),
            conversation_id: created.id.clone(),
            queue_id: other.clone(),
        })
        .await
        .expect("the supervisor moves it");
    let second = eventually("the enqueue in the other queue", || async {
        h.routing
            .enqueued()
            .into_iter()
            .find(|e| e.queue_id == other)
    })
    .await;
    let apply = |enqueue: &rpb::EnqueueConversationRequest| {
        let mut internal = h.internal();
        let request = ipb::ApplyAssignmentRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: created.id.clone(),
            agent_id: h.agent1.principal_id.clone(),
            agent_display_name: h.agent1.display_name.clone(),
            offer_id: id(),
            queue_id: enqueue.queue_id.clone(),
            assignment_source: pb::AssignmentSource::QueueOffer as i32,
            enqueue_key: enqueue.enqueue_key.clone(),
            ..Default::default()
        };
        async move { internal.apply_assignment(request).await }
    };
    let stale = apply(&first)
        .await
        .expect_err("an offer from before the move");
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    let unchanged = h.get(&h.supervisor(), &created.id).await.expect("readable");
    assert_eq!(unchanged.state, State::Open as i32);
    assert_eq!(unchanged.queue_id, other);
    let applied = apply(&second)
        .await
        .expect("an offer from where it waits now")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(applied.state, State::Active as i32);
    assert_eq!(applied.owner_agent_id, h.agent1.principal_id);
    h.stop().await;
}

on_each_backend!(commands_go_as_soon_as_routing_is_back);
/// A command that failed while routing-svc was away waits out its backoff, however long it
/// has grown; once routing-svc answers its health check again, it goes at once.
async fn commands_go_as_soon_as_routing_is_back(db: support::TestDb) {
    use switchboard_server_kit::db::now_micros;
    let mut h = Harness::start(db).await;
    let created = h.create().await;
    h.assign(&created.id, &h.agent1, &id()).await.unwrap();
    outbox_settled(&h).await;
    // The agent has been at work: conversation-svc knows the queues it serves.
    h.get(&h.agent1, &created.id)
        .await
        .expect("the owner reads its conversation");
    h.stop_routing().await;
    // Unassigning asks routing-svc nothing at once: its release and requeue wait for it.
    h.unassign(&h.agent1, &created.id)
        .await
        .expect("the owner unassigns");
    let reader = switchboard_server_kit::Db::connect(&h._db.url)
        .await
        .unwrap();
    let command: String = eventually("a failed attempt to release", || async {
        sqlx::query_scalar(
            "SELECT id FROM command_outbox WHERE conversation_id = $1 AND attempts > 0 \
             AND last_error <> ''",
        )
        .bind(&created.id)
        .fetch_optional(&reader.pool)
        .await
        .unwrap()
    })
    .await;
    reader.close().await;
    // As after a long outage: the next attempt is an hour away.
    let store = conversation_svc::store::Store::open(&h._db.url)
        .await
        .unwrap();
    eventually("the next attempt put an hour away", || async {
        let now = now_micros();
        let lease_until = now + 60_000_000;
        let mut m = store.begin().await.unwrap();
        let claimed = m.claim_commands(now, lease_until, 64).await.unwrap();
        let ours = claimed.iter().any(|c| c.id == command);
        if ours {
            m.retry_command(
                &command,
                "Unavailable: away",
                now + 3_600_000_000,
                lease_until,
            )
            .await
            .unwrap();
        }
        m.commit(None, &()).await.unwrap();
        ours.then_some(())
    })
    .await;
    store.db().close().await;

    h.start_routing().await;
    let released = eventually("the release once routing-svc is back", || async {
        let r = h.routing.released();
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(released[0].conversation_id, created.id);
    assert_eq!(outbox_settled(&h).await, (2, 1), "the requeue follows");
    h.stop().await;
}

on_each_backend!(an_overflow_moves_an_open_conversation_once_under_its_placement);
/// routing-svc overflows a waiting conversation into another queue: conversation-svc takes it
/// over once (QUEUE_CHANGED, reason OVERFLOW, no actor) while the conversation is OPEN under
/// the placement routing moved; a retry is answered alike, a stale or late overflow changes
/// nothing, and an offer from the new queue still applies.
async fn an_overflow_moves_an_open_conversation_once_under_its_placement(db: support::TestDb) {
    let h = Harness::start(db).await;
    let overflow = id();
    h.routing.queues.lock().unwrap().insert(
        overflow.clone(),
        (
            h.tenant.clone(),
            h.program.clone(),
            vec![Channel::Webchat as i32],
        ),
    );
    let created = h.create().await;
    let enqueued = eventually("the enqueue", || async {
        h.routing.enqueued().first().cloned()
    })
    .await;
    let apply = |request_id: &str, enqueue_key: &str| {
        let mut internal = h.internal();
        let request = ipb::ApplyOverflowRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: created.id.clone(),
            request_id: request_id.to_owned(),
            from_queue_id: enqueued.queue_id.clone(),
            to_queue_id: overflow.clone(),
            to_program_id: h.program.clone(),
            enqueue_key: enqueue_key.to_owned(),
        };
        async move {
            internal
                .apply_overflow(request)
                .await
                .expect("apply overflow")
                .into_inner()
                .applied
        }
    };
    let queue_changes = || async {
        h.events(&created.id)
            .await
            .into_iter()
            .filter(|e| e.event_type == pb::EventType::QueueChanged as i32)
            .collect::<Vec<_>>()
    };

    assert!(!apply(&id(), "an older placement").await, "stale");
    assert!(queue_changes().await.is_empty());
    let first = id();
    assert!(apply(&first, &enqueued.enqueue_key).await);
    assert!(apply(&first, &enqueued.enqueue_key).await, "a retry");
    assert!(
        !apply(&id(), &enqueued.enqueue_key).await,
        "already in the overflow queue"
    );
    let moved = h.get(&h.supervisor(), &created.id).await.expect("readable");
    assert_eq!(moved.queue_id, overflow);
    assert_eq!(moved.state, State::Open as i32);
    let changes = queue_changes().await;
    assert_eq!(changes.len(), 1, "applied once: {changes:?}");
    assert_eq!(changes[0].previous_queue_id, enqueued.queue_id);
    assert_eq!(changes[0].queue_id, overflow);
    assert_eq!(
        changes[0].queue_change_reason,
        pb::QueueChangeReason::Overflow as i32
    );
    assert_eq!(changes[0].actor_id, "");

    // The placement is unchanged: an offer the overflow queue makes still applies.
    let assigned = h
        .internal()
        .apply_assignment(ipb::ApplyAssignmentRequest {
            tenant_id: h.tenant.clone(),
            conversation_id: created.id.clone(),
            agent_id: h.agent1.principal_id.clone(),
            agent_display_name: h.agent1.display_name.clone(),
            offer_id: id(),
            queue_id: overflow.clone(),
            assignment_source: pb::AssignmentSource::QueueOffer as i32,
            enqueue_key: enqueued.enqueue_key.clone(),
            ..Default::default()
        })
        .await
        .expect("an offer from the overflow queue")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(assigned.state, State::Active as i32);
    // Once owned, a late overflow changes nothing.
    assert!(!apply(&id(), &enqueued.enqueue_key).await);
    assert_eq!(queue_changes().await.len(), 1);
    h.stop().await;
}
