//! reporting-svc in process, fed by a scripted conversation-svc and routing-svc, called over
//! gRPC with signed identities exactly as the gateway would.

mod common;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use common::{EventLog, PROGRAM, ts};
use futures::{Stream, StreamExt};
use reporting_svc::store::{CONVERSATION_EVENTS, ROUTING_EVENTS, Store};
use reporting_svc::{Config, serve};
use switchboard_proto::common::v1::{
    AnswerOutcome, Channel, Heartbeat, SnapshotEnd, TimeRange, TransferFallback,
};
use switchboard_proto::conversation::internal::v1::conversation_internal_service_server::{
    ConversationInternalService, ConversationInternalServiceServer,
};
use switchboard_proto::conversation::internal::v1::subscribe_response::Update;
use switchboard_proto::conversation::internal::v1::{
    ApplyAssignmentRequest, ApplyAssignmentResponse, LogEntry, SubscribeRequest, SubscribeResponse,
};
use switchboard_proto::conversation::v1::segment::EndReason;
use switchboard_proto::conversation::v1::{EventType, ParticipantRole};
use switchboard_proto::directory::internal::v1 as dpb;
use switchboard_proto::directory::internal::v1::directory_internal_service_server::{
    DirectoryInternalService, DirectoryInternalServiceServer,
};
use switchboard_proto::reporting::v1::export_report_response::Update as ExportUpdate;
use switchboard_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use switchboard_proto::reporting::v1::{
    AgentActivityRow, CloseTimeRow, CreatedClosedRow, DayOfWeek, ExportReportRequest,
    FirstContactResolutionRow, GetAgentActivityReportRequest, GetCloseTimeReportRequest,
    GetCreatedClosedReportRequest, GetDispositionsReportRequest,
    GetFirstContactResolutionReportRequest, GetOpenConversationsReportRequest,
    GetQueueMetricsReportRequest, GetReassignmentsReportRequest, Granularity, LedgerEntryKind,
    ListTransferLedgerRequest, Period, QueueMetricsRow, ReassignmentsRow, ReportFilter, ReportKind,
    TransferLedgerEntry,
};
use switchboard_proto::routing::internal::v1 as routing;
use switchboard_proto::routing::internal::v1::routing_internal_service_server::{
    RoutingInternalService, RoutingInternalServiceServer,
};
use switchboard_proto::routing::internal::v1::{RoutingEvent, RoutingEventType};
use switchboard_proto::routing::v1::{OfferKind, Presence};
use switchboard_server_kit::{
    Identity, IdentityKey, PrincipalKind, Role, ServeOptions, ShutdownSignal, SignedChannel,
    identity_of, signed_channel,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

const SECRET: &str = "reporting-test-secret-0123456789";
const TENANT: &str = "0b6f2a4e-1d3c-4e5f-8a9b-0c1d2e3f4a5b";
const OTHER_TENANT: &str = "7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f";
const Q1: &str = "11111111-1111-4111-8111-111111111111";
const Q2: &str = "22222222-2222-4222-8222-222222222222";
const A: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const B: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const C: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

/// Paris days 2026-03-02 to 2026-03-06 (UTC+1 in March before the change).
const START: &str = "2026-03-01T23:00:00Z";
const END: &str = "2026-03-06T23:00:00Z";
const PARIS: &str = "Europe/Paris";

/// The scripted event log. Times are UTC; Paris is one hour ahead.
fn scenario() -> EventLog {
    scenario_into(EventLog::new())
}

/// The events of [`scenario`], written into `log`.
fn scenario_into(mut log: EventLog) -> EventLog {
    // Before the range.
    let c0 = log.create(
        TENANT,
        "conv-0",
        Channel::Webchat,
        Q1,
        "2026-02-27T10:00:00Z",
    );
    log.close(&c0, "2026-02-27T11:00:00Z", "");
    // Resolved by A at first contact: 11 min from create, 10 from assignment.
    let c1 = log.create(
        TENANT,
        "conv-1",
        Channel::Webchat,
        Q1,
        "2026-03-02T09:00:00Z",
    );
    log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    log.message(&c1, "2026-03-02T09:02:00Z");
    log.close(&c1, "2026-03-02T09:11:00Z", A);
    // Transferred from A to B, closed by B: 30 min from create, 24 from B's assignment.
    let c2 = log.create(
        TENANT,
        "conv-2",
        Channel::Webchat,
        Q1,
        "2026-03-02T10:00:00Z",
    );
    log.assign(&c2, "2026-03-02T10:02:00Z", A, "");
    log.transfer_requested(&c2, "2026-03-02T10:05:00Z", A);
    log.gap(3);
    log.transfer_resolved(&c2, "2026-03-02T10:06:00Z", B);
    log.assign(&c2, "2026-03-02T10:06:00Z", B, A);
    log.close(&c2, "2026-03-02T10:30:00Z", B);
    // Another tenant: never in TENANT's reports.
    let c6 = log.create(
        OTHER_TENANT,
        "conv-6",
        Channel::Webchat,
        Q1,
        "2026-03-02T09:30:00Z",
    );
    log.assign(&c6, "2026-03-02T09:31:00Z", A, "");
    log.assign(&c6, "2026-03-02T09:40:00Z", B, A);
    log.close(&c6, "2026-03-02T09:50:00Z", B);
    // A again: 20 and 20 min.
    let c7 = log.create(
        TENANT,
        "conv-7",
        Channel::Webchat,
        Q1,
        "2026-03-03T08:00:00Z",
    );
    log.assign(&c7, "2026-03-03T08:00:00Z", A, "");
    log.close(&c7, "2026-03-03T08:20:00Z", A);
    // A on SMS with a transfer attempt that was rejected: 90 and 60 min, still first
    // contact (no transfer completed).
    let c8 = log.create(TENANT, "conv-8", Channel::Sms, Q2, "2026-03-03T09:00:00Z");
    log.assign(&c8, "2026-03-03T09:30:00Z", A, "");
    log.transfer_requested(&c8, "2026-03-03T09:40:00Z", A);
    log.transfer_resolved(&c8, "2026-03-03T09:41:00Z", A);
    log.close(&c8, "2026-03-03T10:30:00Z", A);
    // Created late on 03-03 UTC, which is 03-04 in Paris; closed, reopened, closed
    // again (two closes, both on 03-04 in Paris and in UTC)    // again by C: 90 min from create, 35 from C's second assignment.
    let c3 = log.create(TENANT, "conv-3", Channel::Sms, Q2, "2026-03-03T23:30:00Z");
    log.assign(&c3, "2026-03-03T23:40:00Z", C, "");
    log.close(&c3, "2026-03-04T00:10:00Z", C);
    log.reopen(&c3, "2026-03-04T00:20:00Z");
    log.assign(&c3, "2026-03-04T00:25:00Z", C, C);
    log.close(&c3, "2026-03-04T01:00:00Z", C);
    // Still open: transferred from A to B on 03-05.
    let c4 = log.create(
        TENANT,
        "conv-4",
        Channel::Webchat,
        Q1,
        "2026-03-04T12:00:00Z",
    );
    log.assign(&c4, "2026-03-04T12:05:00Z", A, "");
    log.transfer_requested(&c4, "2026-03-05T07:59:00Z", A);
    log.assign(&c4, "2026-03-05T08:00:00Z", B, A);
    // Closed while waiting, with no agent.
    let c5 = log.create(
        TENANT,
        "conv-5",
        Channel::Webchat,
        Q1,
        "2026-03-05T09:00:00Z",
    );
    log.close(&c5, "2026-03-05T09:30:00Z", "");
    // Reassigned from B to A by a supervisor; still open.
    let c9 = log.create(
        TENANT,
        "conv-9",
        Channel::Webchat,
        Q1,
        "2026-03-05T10:00:00Z",
    );
    log.assign(&c9, "2026-03-05T10:01:00Z", B, "");
    log.assign(&c9, "2026-03-05T10:10:00Z", A, B);
    log
}

/// What the scripted conversation-svc does on each subscription.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// First subscription: events up to this sequence, then the stream fails. Later
    /// ones: the whole log from the start, ignoring `after_sequence` (an at-least-once
    /// server), then stay open.
    FailOnceAfter(i64),
    /// Events after `after_sequence` up to this sequence, then stay open.
    HoldAfter(i64),
}

#[derive(Clone)]
struct FakeConversations {
    entries: Arc<Vec<LogEntry>>,
    script: Script,
    subscriptions: Arc<Mutex<Vec<i64>>>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

/// A heartbeat every 50 ms, forever: what a live log sends while nothing happens.
fn heartbeats<T: Send + 'static>(
    heartbeat: impl Fn() -> T + Send + 'static,
) -> impl Stream<Item = T> + Send {
    futures::stream::unfold(heartbeat, |heartbeat| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = heartbeat();
        Some((next, heartbeat))
    })
}

#[tonic::async_trait]
impl ConversationInternalService for FakeConversations {
    async fn apply_assignment(
        &self,
        _request: Request<ApplyAssignmentRequest>,
    ) -> Result<Response<ApplyAssignmentResponse>, Status> {
        Err(Status::unimplemented("not part of this fake"))
    }

    async fn resolve_offer(
        &self,
        _request: Request<switchboard_proto::conversation::internal::v1::ResolveOfferRequest>,
    ) -> Result<Response<switchboard_proto::conversation::internal::v1::ResolveOfferResponse>, Status>
    {
        Err(Status::unimplemented("not part of this fake"))
    }

    async fn release_on_logout(
        &self,
        _request: Request<switchboard_proto::conversation::internal::v1::ReleaseOnLogoutRequest>,
    ) -> Result<
        Response<switchboard_proto::conversation::internal::v1::ReleaseOnLogoutResponse>,
        Status,
    > {
        Err(Status::unimplemented("not part of this fake"))
    }

    async fn apply_overflow(
        &self,
        _request: Request<switchboard_proto::conversation::internal::v1::ApplyOverflowRequest>,
    ) -> Result<
        Response<switchboard_proto::conversation::internal::v1::ApplyOverflowResponse>,
        Status,
    > {
        Err(Status::unimplemented("not part of this fake"))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = identity_of(&request)?;
        if !caller.has_role(Role::Service) || caller.principal_id != "reporting-svc" {
            return Err(Status::permission_denied("internal API"));
        }
        let after = request.into_inner().after_sequence;
        let first = {
            let mut subscriptions = self.subscriptions.lock().unwrap();
            subscriptions.push(after);
            subscriptions.len() == 1
        };
        let message = |update: Update| {
            Ok(SubscribeResponse {
                update: Some(update),
            })
        };
        // Like conversation-svc: a heartbeat may come first, the replay ends with
        // `caught_up`, and heartbeats keep coming.
        let replay = |entries: Vec<&LogEntry>| {
            let mut sent = vec![message(Update::Heartbeat(Heartbeat::default()))];
            for entry in entries {
                sent.push(message(Update::Entry(entry.clone())));
                sent.push(message(Update::Heartbeat(Heartbeat::default())));
            }
            sent.push(message(Update::CaughtUp(SnapshotEnd {})));
            sent
        };
        let stream: EventStream = match self.script {
            Script::FailOnceAfter(last) if first => {
                let sent = replay(
                    self.entries
                        .iter()
                        .filter(|e| e.log_sequence > after && e.log_sequence <= last)
                        .collect(),
                );
                Box::pin(
                    futures::stream::iter(sent).chain(futures::stream::once(async {
                        Err(Status::unavailable("connection lost"))
                    })),
                )
            }
            Script::FailOnceAfter(_) => {
                let sent = replay(self.entries.iter().collect());
                Box::pin(futures::stream::iter(sent).chain(heartbeats(move || {
                    message(Update::Heartbeat(Heartbeat::default()))
                })))
            }
            Script::HoldAfter(last) => {
                let sent = replay(
                    self.entries
                        .iter()
                        .filter(|e| e.log_sequence > after && e.log_sequence <= last)
                        .collect(),
                );
                Box::pin(futures::stream::iter(sent).chain(heartbeats(move || {
                    message(Update::Heartbeat(Heartbeat::default()))
                })))
            }
        };
        Ok(Response::new(stream))
    }
}

/// A scripted routing-svc: its log up to `until`, after the subscriber's cursor, then
/// `caught_up` and an open stream.
#[derive(Clone)]
struct FakeRouting {
    events: Arc<Vec<RoutingEvent>>,
    until: i64,
    subscriptions: Arc<Mutex<Vec<i64>>>,
}

type RoutingStream = Pin<Box<dyn Stream<Item = Result<routing::SubscribeResponse, Status>> + Send>>;

fn not_in_fake<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not part of this fake"))
}

#[tonic::async_trait]
impl RoutingInternalService for FakeRouting {
    async fn check_queue(
        &self,
        _: Request<routing::CheckQueueRequest>,
    ) -> Result<Response<routing::CheckQueueResponse>, Status> {
        not_in_fake()
    }
    async fn enqueue_conversation(
        &self,
        _: Request<routing::EnqueueConversationRequest>,
    ) -> Result<Response<routing::EnqueueConversationResponse>, Status> {
        not_in_fake()
    }
    async fn cancel_waiting(
        &self,
        _: Request<routing::CancelWaitingRequest>,
    ) -> Result<Response<routing::CancelWaitingResponse>, Status> {
        not_in_fake()
    }
    async fn release_capacity(
        &self,
        _: Request<routing::ReleaseCapacityRequest>,
    ) -> Result<Response<routing::ReleaseCapacityResponse>, Status> {
        not_in_fake()
    }
    async fn reserve_capacity(
        &self,
        _: Request<routing::ReserveCapacityRequest>,
    ) -> Result<Response<routing::ReserveCapacityResponse>, Status> {
        not_in_fake()
    }
    async fn offer_to_agent(
        &self,
        _: Request<routing::OfferToAgentRequest>,
    ) -> Result<Response<routing::OfferToAgentResponse>, Status> {
        not_in_fake()
    }
    async fn withdraw_offer(
        &self,
        _: Request<routing::WithdrawOfferRequest>,
    ) -> Result<Response<routing::WithdrawOfferResponse>, Status> {
        not_in_fake()
    }
    async fn get_agent_queues(
        &self,
        _: Request<routing::GetAgentQueuesRequest>,
    ) -> Result<Response<routing::GetAgentQueuesResponse>, Status> {
        not_in_fake()
    }

    type SubscribeStream = RoutingStream;

    async fn subscribe(
        &self,
        request: Request<routing::SubscribeRequest>,
    ) -> Result<Response<RoutingStream>, Status> {
        let caller = identity_of(&request)?;
        if !caller.has_role(Role::Service) || caller.principal_id != "reporting-svc" {
            return Err(Status::permission_denied("internal API"));
        }
        let after = request.into_inner().after_sequence;
        self.subscriptions.lock().unwrap().push(after);
        let message = |update: routing::subscribe_response::Update| {
            Ok(routing::SubscribeResponse {
                update: Some(update),
            })
        };
        let mut sent: Vec<_> = self
            .events
            .iter()
            .filter(|e| e.sequence > after && e.sequence <= self.until)
            .map(|e| message(routing::subscribe_response::Update::Event(e.clone())))
            .collect();
        sent.push(message(routing::subscribe_response::Update::CaughtUp(
            SnapshotEnd {},
        )));
        Ok(Response::new(Box::pin(futures::stream::iter(sent).chain(
            heartbeats(move || {
                message(routing::subscribe_response::Update::Heartbeat(
                    Heartbeat::default(),
                ))
            }),
        ))))
    }
}

/// A team of TENANT with agent A.
const TEAM_A: &str = "7ea40000-0000-4000-8000-00000000000a";
/// A team of TENANT with agents B and C.
const TEAM_BC: &str = "7ea40000-0000-4000-8000-0000000000bc";
/// A team of OTHER_TENANT with agent A (ids are unique, but a team is its tenant's).
const FOREIGN_TEAM: &str = "7ea40000-0000-4000-8000-0000000000ff";
/// A child tenant of TENANT.
const CHILD_TENANT: &str = "c41d0000-0000-4000-8000-000000000001";

/// A scripted directory: TENANT's teams, OTHER_TENANT's team, and CHILD_TENANT a child of
/// TENANT (OTHER_TENANT is nobody's child). Answers reporting-svc only, a page of one
/// member at a time, so that paging is followed.
#[derive(Clone, Default)]
struct FakeDirectory;

#[tonic::async_trait]
impl DirectoryInternalService for FakeDirectory {
    async fn get_users(
        &self,
        _: Request<dpb::GetUsersRequest>,
    ) -> Result<Response<dpb::GetUsersResponse>, Status> {
        not_in_fake()
    }

    async fn get_tenant_ancestry(
        &self,
        request: Request<dpb::GetTenantAncestryRequest>,
    ) -> Result<Response<dpb::GetTenantAncestryResponse>, Status> {
        only_reporting(&request)?;
        let ancestor_tenant_ids = match request.into_inner().tenant_id.as_str() {
            CHILD_TENANT => vec![TENANT.to_owned()],
            _ => Vec::new(),
        };
        Ok(Response::new(dpb::GetTenantAncestryResponse {
            ancestor_tenant_ids,
        }))
    }

    async fn list_team_members(
        &self,
        request: Request<dpb::ListTeamMembersRequest>,
    ) -> Result<Response<dpb::ListTeamMembersResponse>, Status> {
        only_reporting(&request)?;
        let asked = request.into_inner();
        let members: &[&str] = match (asked.tenant_id.as_str(), asked.team_id.as_str()) {
            (TENANT, TEAM_A) | (OTHER_TENANT, FOREIGN_TEAM) => &[A],
            (TENANT, TEAM_BC) => &[B, C],
            _ => return Err(Status::not_found("team not found")),
        };
        let from: usize = asked.page_token.parse().unwrap_or(0);
        let next = from + 1;
        Ok(Response::new(dpb::ListTeamMembersResponse {
            user_ids: members[from..next]
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
            next_page_token: if next < members.len() {
                next.to_string()
            } else {
                String::new()
            },
        }))
    }
}

fn only_reporting<T>(request: &Request<T>) -> Result<(), Status> {
    let caller = identity_of(request)?;
    if caller.has_role(Role::Service) && caller.principal_id == "reporting-svc" {
        Ok(())
    } else {
        Err(Status::permission_denied("internal API"))
    }
}

struct Running {
    shutdown: ShutdownSignal,
    task: JoinHandle<anyhow::Result<()>>,
    url: String,
}

impl Running {
    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
    }
}

fn key() -> IdentityKey {
    IdentityKey::new(SECRET).unwrap()
}

async fn start_fake(events: &EventLog, script: Script) -> (Running, Arc<Mutex<Vec<i64>>>) {
    let (running, subscriptions, _) = start_fakes(events, script, &[], 0).await;
    (running, subscriptions)
}

/// One server playing conversation-svc (with `events` and `script`) and routing-svc (with
/// `routing_events` up to `routing_until`); with the subscriptions each saw.
async fn start_fakes(
    events: &EventLog,
    script: Script,
    routing_events: &[RoutingEvent],
    routing_until: i64,
) -> (Running, Arc<Mutex<Vec<i64>>>, Arc<Mutex<Vec<i64>>>) {
    let fake = FakeConversations {
        entries: Arc::new(events.entries.clone()),
        script,
        subscriptions: Arc::default(),
    };
    let subscriptions = fake.subscriptions.clone();
    let routing_fake = FakeRouting {
        events: Arc::new(routing_events.to_vec()),
        until: routing_until,
        subscriptions: Arc::default(),
    };
    let routing_subscriptions = routing_fake.subscriptions.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = ShutdownSignal::new();
    let mut options = ServeOptions::new("conversation-svc-fake");
    options.identity = Some(key());
    options.drain_timeout = Duration::from_secs(1);
    let routes = Routes::new(ConversationInternalServiceServer::new(fake))
        .add_service(RoutingInternalServiceServer::new(routing_fake))
        .add_service(DirectoryInternalServiceServer::new(FakeDirectory));
    let signal = shutdown.clone();
    let task = tokio::spawn(async move {
        switchboard_server_kit::serve(options, routes, listener, signal)
            .await
            .map_err(anyhow::Error::from)
    });
    (
        Running {
            shutdown,
            task,
            url,
        },
        subscriptions,
        routing_subscriptions,
    )
}

async fn start_reporting(database_url: &str, conversation_url: &str) -> Running {
    start_reporting_with(database_url, conversation_url, |_| {}).await
}

/// As [`start_reporting`], with `edit` applied to the configuration.
async fn start_reporting_with(
    database_url: &str,
    conversation_url: &str,
    edit: impl FnOnce(&mut Config),
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = Config {
        listen: listener.local_addr().unwrap(),
        metrics_listen: None,
        database_url: database_url.to_owned(),
        identity_secret: SECRET.to_owned(),
        conversation_url: conversation_url.to_owned(),
        // The fakes serve both logs and the directory on one address.
        routing_url: conversation_url.to_owned(),
        directory_url: conversation_url.to_owned(),
        directory_timeout_ms: 2_000,
        reconnect_initial_ms: 10,
        reconnect_max_ms: 100,
        export_max_rows: 5,
        ..Config::default()
    };
    edit(&mut config);
    let shutdown = ShutdownSignal::new();
    let task = tokio::spawn(serve(config, listener, shutdown.clone()));
    Running {
        shutdown,
        task,
        url,
    }
}

fn user(tenant_id: &str, roles: Vec<Role>) -> Identity {
    user_in_zone(tenant_id, roles, "")
}

/// A user whose tenant's default time zone is `time_zone`.
fn user_in_zone(tenant_id: &str, roles: Vec<Role>, time_zone: &str) -> Identity {
    Identity {
        tenant_id: tenant_id.to_owned(),
        tenant_ancestry: Vec::new(),
        principal_id: "5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f".to_owned(),
        principal_kind: PrincipalKind::User,
        display_name: "Ana Lyst".to_owned(),
        roles,
        enabled_supervisor_actions: Vec::new(),
        time_zone: time_zone.to_owned(),
        reopen_window_secs: 0,
    }
}

fn client(url: &str, identity: Identity) -> ReportingServiceClient<SignedChannel> {
    ReportingServiceClient::new(signed_channel(url, key(), identity).unwrap())
}

fn filter(start: &str, end: &str, zone: &str) -> ReportFilter {
    ReportFilter {
        time_range: Some(TimeRange {
            start_time: Some(ts(start)),
            end_time: Some(ts(end)),
        }),
        time_zone: zone.to_owned(),
        ..ReportFilter::default()
    }
}

fn paris() -> ReportFilter {
    filter(START, END, PARIS)
}

/// Waits until the service answers (so its migrations ran), then until its conversation
/// cursor reaches `sequence`.
async fn wait_for_cursor(database_url: &str, reporting_url: &str, sequence: i64) {
    wait_for_source(database_url, reporting_url, CONVERSATION_EVENTS, sequence).await;
}

/// Waits until the service answers, then until its cursor of `source` reaches `sequence`.
async fn wait_for_source(database_url: &str, reporting_url: &str, source: &str, sequence: i64) {
    let mut analyst = client(reporting_url, user(TENANT, vec![Role::Analyst]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let request = || GetCreatedClosedReportRequest {
        filter: Some(paris()),
        granularity: Granularity::Total as i32,
        ..Default::default()
    };
    while analyst.get_created_closed_report(request()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "service never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = Store::open(database_url).await.unwrap();
    loop {
        let cursor = store.cursor(source).await.unwrap();
        if cursor == sequence {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{source} cursor stuck at {cursor}, expected {sequence}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A period starting at an RFC 3339 time (offsets allowed).
fn start(at: &str) -> Period {
    Period {
        start_time: Some(ts(at)),
        day_of_week: DayOfWeek::Unspecified as i32,
    }
}

/// A day-of-week period.
fn weekday(day: DayOfWeek) -> Period {
    Period {
        start_time: None,
        day_of_week: day as i32,
    }
}

fn cc(period: Period, created: i64, closed: i64) -> CreatedClosedRow {
    CreatedClosedRow {
        period: Some(period),
        created,
        closed,
    }
}

fn ra(period: Period, agent_id: &str, received: i64, sent: i64) -> ReassignmentsRow {
    ReassignmentsRow {
        period: Some(period),
        agent_id: agent_id.to_owned(),
        reassignments_received: received,
        reassignments_sent: sent,
        sent_reasons: Vec::new(),
    }
}

fn secs(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

async fn created_closed(
    client: &mut ReportingServiceClient<SignedChannel>,
    filter: ReportFilter,
    granularity: Granularity,
) -> Vec<CreatedClosedRow> {
    client
        .get_created_closed_report(GetCreatedClosedReportRequest {
            filter: Some(filter),
            granularity: granularity as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
}

async fn reassignments(
    client: &mut ReportingServiceClient<SignedChannel>,
    filter: ReportFilter,
    granularity: Granularity,
) -> Vec<ReassignmentsRow> {
    client
        .get_reassignments_report(GetReassignmentsReportRequest {
            filter: Some(filter),
            granularity: granularity as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
}

async fn export(
    client: &mut ReportingServiceClient<SignedChannel>,
    kind: ReportKind,
    filter: ReportFilter,
    granularity: Granularity,
) -> Result<(String, Vec<i64>), Status> {
    let mut stream = client
        .export_report(ExportReportRequest {
            kind: kind as i32,
            filter: Some(filter),
            granularity: granularity as i32,
            service_level_threshold: None,
        })
        .await?
        .into_inner();
    // The contract's order: `start`, chunks (heartbeats may come between), `end`, nothing
    // after; the totals agree with the rows the chunks count.
    let mut total = None;
    let mut ended = None;
    let mut bytes = Vec::new();
    let mut rows_so_far = Vec::new();
    while let Some(message) = stream.message().await? {
        assert!(ended.is_none(), "a message after `end`: {message:?}");
        match message.update.expect("exactly one field is set") {
            ExportUpdate::Start(start) => {
                assert!(
                    total.is_none() && bytes.is_empty(),
                    "`start` comes first, once"
                );
                total = Some(start.total_rows);
            }
            ExportUpdate::Chunk(chunk) => {
                assert!(total.is_some(), "a chunk before `start`");
                assert!(rows_so_far.last() <= Some(&chunk.rows_so_far));
                bytes.extend_from_slice(&chunk.csv_data);
                rows_so_far.push(chunk.rows_so_far);
            }
            ExportUpdate::Heartbeat(_) => assert!(total.is_some(), "a heartbeat before `start`"),
            ExportUpdate::End(end) => ended = Some(end.total_rows),
        }
    }
    let total = total.expect("a `start` message");
    assert_eq!(
        ended,
        Some(total),
        "`end` closes the stream with the same total"
    );
    assert!(!rows_so_far.is_empty(), "at least the header chunk");
    assert_eq!(rows_so_far.last(), Some(&total));
    Ok((String::from_utf8(bytes).unwrap(), rows_so_far))
}

/// Splits a CSV file whose fields need no quoting, checking the CRLF record ends.
fn parse_simple_csv(text: &str) -> Vec<Vec<String>> {
    assert!(text.ends_with("\r\n"), "records end with CRLF");
    text.split_terminator("\r\n")
        .map(|line| {
            assert!(
                !line.contains(['"', '\n', '\r']),
                "unexpected quoting in {line:?}"
            );
            line.split(',').map(str::to_owned).collect()
        })
        .collect()
}

fn assert_invalid(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(field),
        "message {:?} names {field}",
        status.message()
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "INVALID_ARGUMENT"
    );
    let violations = status.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, field);
}

on_each_backend!(reports_match_the_event_log_after_a_dropped_stream);
async fn reports_match_the_event_log_after_a_dropped_stream(backend: &common::Backend) {
    reports_match_the_event_log(&backend.url).await;
}

async fn reports_match_the_event_log(database_url: &str) {
    let log = scenario();
    let last = log.last_sequence();
    let drop_after = log.entries[log.entries.len() / 2].log_sequence;
    let (fake, subscriptions) = start_fake(&log, Script::FailOnceAfter(drop_after)).await;
    let reporting = start_reporting(database_url, &fake.url).await;
    wait_for_cursor(database_url, &reporting.url, last).await;

    // Resubscribed from its cursor after the failure; the replay from the start that
    // followed was skipped, not counted again (the numbers below would be off).
    let subscribed = subscriptions.lock().unwrap().clone();
    assert_eq!(subscribed[..2], [0, drop_after]);

    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));

    // Created and closed, by Paris day, with empty days as zeros; conv-3's close after
    // its reopen is a close of its own.
    let by_day = created_closed(&mut analyst, paris(), Granularity::Day).await;
    assert_eq!(
        by_day,
        vec![
            cc(start("2026-03-02T00:00:00+01:00"), 2, 2),
            cc(start("2026-03-03T00:00:00+01:00"), 2, 2),
            cc(start("2026-03-04T00:00:00+01:00"), 2, 2),
            cc(start("2026-03-05T00:00:00+01:00"), 2, 1),
            cc(start("2026-03-06T00:00:00+01:00"), 0, 0),
        ]
    );
    // The same instants by UTC day: conv-3 moves to 03-03.
    assert_eq!(
        created_closed(
            &mut analyst,
            filter(START, END, ""),
            Granularity::Unspecified
        )
        .await,
        vec![
            cc(start("2026-03-01T00:00:00Z"), 0, 0),
            cc(start("2026-03-02T00:00:00Z"), 2, 2),
            cc(start("2026-03-03T00:00:00Z"), 3, 2),
            cc(start("2026-03-04T00:00:00Z"), 1, 2),
            cc(start("2026-03-05T00:00:00Z"), 2, 1),
            cc(start("2026-03-06T00:00:00Z"), 0, 0),
        ]
    );
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::Week).await,
        vec![cc(start("2026-03-02T00:00:00+01:00"), 8, 7)]
    );
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::Month).await,
        vec![cc(start("2026-03-01T00:00:00+01:00"), 8, 7)]
    );
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::Total).await,
        vec![cc(start(START), 8, 7)]
    );
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::DayOfWeek).await,
        vec![
            cc(weekday(DayOfWeek::Monday), 2, 2),
            cc(weekday(DayOfWeek::Tuesday), 2, 2),
            cc(weekday(DayOfWeek::Wednesday), 2, 2),
            cc(weekday(DayOfWeek::Thursday), 2, 1),
            cc(weekday(DayOfWeek::Friday), 0, 0),
        ]
    );
    let only_q1 = ReportFilter {
        queue_ids: vec![Q1.to_owned()],
        ..paris()
    };
    assert_eq!(
        created_closed(&mut analyst, only_q1.clone(), Granularity::Day).await,
        vec![
            cc(start("2026-03-02T00:00:00+01:00"), 2, 2),
            cc(start("2026-03-03T00:00:00+01:00"), 1, 1),
            cc(start("2026-03-04T00:00:00+01:00"), 1, 0),
            cc(start("2026-03-05T00:00:00+01:00"), 2, 1),
            cc(start("2026-03-06T00:00:00+01:00"), 0, 0),
        ]
    );
    let only_sms = ReportFilter {
        channels: vec![Channel::Sms as i32],
        ..paris()
    };
    assert_eq!(
        created_closed(&mut analyst, only_sms.clone(), Granularity::Total).await,
        vec![cc(start(START), 2, 3)]
    );

    // Reassignments received: B from A on conv-2 and conv-4, A from B on conv-9; not
    // C's reassignment to itself, not the other tenant's. Sent: the mirror (A to B twice,
    // B to A once).
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::Day).await,
        vec![
            ra(start("2026-03-02T00:00:00+01:00"), A, 0, 1),
            ra(start("2026-03-02T00:00:00+01:00"), B, 1, 0),
            ra(start("2026-03-05T00:00:00+01:00"), A, 1, 1),
            ra(start("2026-03-05T00:00:00+01:00"), B, 1, 1),
        ]
    );
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::Week).await,
        vec![
            ra(start("2026-03-02T00:00:00+01:00"), A, 1, 2),
            ra(start("2026-03-02T00:00:00+01:00"), B, 2, 1)
        ]
    );
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::DayOfWeek).await,
        vec![
            ra(weekday(DayOfWeek::Monday), A, 0, 1),
            ra(weekday(DayOfWeek::Monday), B, 1, 0),
            ra(weekday(DayOfWeek::Thursday), A, 1, 1),
            ra(weekday(DayOfWeek::Thursday), B, 1, 1)
        ]
    );
    let only_a = ReportFilter {
        agent_ids: vec![A.to_owned()],
        ..paris()
    };
    assert_eq!(
        reassignments(&mut analyst, only_a.clone(), Granularity::Total).await,
        vec![ra(start(START), A, 1, 2)]
    );
    assert_eq!(
        reassignments(&mut analyst, only_sms.clone(), Granularity::Total).await,
        vec![]
    );

    // Close time, attributed to the closing agent.
    let close_time = analyst
        .get_close_time_report(GetCloseTimeReportRequest {
            filter: Some(paris()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(
        close_time,
        vec![
            CloseTimeRow {
                agent_id: A.to_owned(),
                closed: 3,
                // 11, 20 and 90 minutes.
                average_from_create: secs(2_420),
                median_from_create: secs(1_200),
                p90_from_create: secs(5_400),
                // 10, 20 and 60 minutes.
                average_from_assign: secs(1_800),
                median_from_assign: secs(1_200),
                p90_from_assign: secs(3_600),
            },
            CloseTimeRow {
                agent_id: B.to_owned(),
                closed: 1,
                average_from_create: secs(1_800),
                median_from_create: secs(1_800),
                p90_from_create: secs(1_800),
                average_from_assign: secs(1_440),
                median_from_assign: secs(1_440),
                p90_from_assign: secs(1_440),
            },
            CloseTimeRow {
                agent_id: C.to_owned(),
                closed: 1,
                average_from_create: secs(5_400),
                median_from_create: secs(5_400),
                p90_from_create: secs(5_400),
                average_from_assign: secs(2_100),
                median_from_assign: secs(2_100),
                p90_from_assign: secs(2_100),
            },
        ]
    );
    let close_time_of_a = analyst
        .get_close_time_report(GetCloseTimeReportRequest {
            filter: Some(only_a.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    // Not only "every row is A's" (what the filter asked for): A's row, with the same
    // figures as in the unfiltered report.
    assert_eq!(close_time[0].agent_id, A);
    assert_eq!(close_time_of_a, vec![close_time[0].clone()]);

    // First contact resolution: conv-1, conv-7 and conv-8 (its transfer was declined).
    let fcr = |agent_id: &str, closed: i64, resolved: i64, rate: f64| FirstContactResolutionRow {
        agent_id: agent_id.to_owned(),
        closed,
        resolved_first_contact: resolved,
        rate,
    };
    let rows = analyst
        .get_first_contact_resolution_report(GetFirstContactResolutionReportRequest {
            filter: Some(paris()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(
        rows,
        vec![fcr(A, 3, 3, 1.0), fcr(B, 1, 0, 0.0), fcr(C, 1, 0, 0.0)]
    );
    let rows = analyst
        .get_first_contact_resolution_report(GetFirstContactResolutionReportRequest {
            filter: Some(only_sms.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(rows, vec![fcr(A, 1, 1, 1.0), fcr(C, 1, 0, 0.0)]);

    // The other tenant sees only its own conversation.
    let mut other = client(&reporting.url, user(OTHER_TENANT, vec![Role::Supervisor]));
    assert_eq!(
        created_closed(&mut other, paris(), Granularity::Total).await,
        vec![cc(start(START), 1, 1)]
    );
    assert_eq!(
        reassignments(&mut other, paris(), Granularity::Total).await,
        vec![ra(start(START), A, 0, 1), ra(start(START), B, 1, 0)]
    );

    // The CSV export reads back to the same numbers.
    let (csv, rows_so_far) = export(
        &mut analyst,
        ReportKind::CreatedClosed,
        paris(),
        Granularity::Day,
    )
    .await
    .unwrap();
    assert_eq!(rows_so_far.last(), Some(&5));
    // The chunks put together are exactly the file: local midnights with their offset.
    assert_eq!(
        csv,
        "period_start,day_of_week,created,closed\r\n\
         2026-03-02T00:00:00+01:00,,2,2\r\n\
         2026-03-03T00:00:00+01:00,,2,2\r\n\
         2026-03-04T00:00:00+01:00,,2,2\r\n\
         2026-03-05T00:00:00+01:00,,2,1\r\n\
         2026-03-06T00:00:00+01:00,,0,0\r\n"
    );
    let records = parse_simple_csv(&csv);
    let parsed: Vec<CreatedClosedRow> = records[1..]
        .iter()
        .map(|r| cc(start(&r[0]), r[2].parse().unwrap(), r[3].parse().unwrap()))
        .collect();
    assert_eq!(parsed, by_day);
    let (csv, _) = export(
        &mut analyst,
        ReportKind::CreatedClosed,
        paris(),
        Granularity::DayOfWeek,
    )
    .await
    .unwrap();
    assert_eq!(
        parse_simple_csv(&csv)[..3],
        [
            vec!["period_start", "day_of_week", "created", "closed"],
            vec!["", "MONDAY", "2", "2"],
            vec!["", "TUESDAY", "2", "2"],
        ]
    );

    let (csv, _) = export(
        &mut analyst,
        ReportKind::CloseTime,
        paris(),
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    let records = parse_simple_csv(&csv);
    assert_eq!(records.len(), 4);
    assert_eq!(
        records[1],
        [A, "3", "2420", "1200", "5400", "1800", "1200", "3600"]
    );
    let (csv, _) = export(
        &mut analyst,
        ReportKind::Reassignments,
        paris(),
        Granularity::Week,
    )
    .await
    .unwrap();
    assert_eq!(
        parse_simple_csv(&csv),
        vec![
            vec![
                "period_start",
                "day_of_week",
                "agent_id",
                "reassignments_received",
                "reassignments_sent",
                "sent_reasons"
            ],
            vec!["2026-03-02T00:00:00+01:00", "", A, "1", "2", ""],
            vec!["2026-03-02T00:00:00+01:00", "", B, "2", "1", ""],
        ]
    );
    let (csv, _) = export(
        &mut analyst,
        ReportKind::FirstContactResolution,
        only_sms,
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    assert_eq!(
        parse_simple_csv(&csv),
        vec![
            vec!["agent_id", "closed", "resolved_first_contact", "rate"],
            vec![A, "1", "1", "1"],
            vec![C, "1", "0", "0"],
        ]
    );

    // This server allows 5 rows per export: six UTC days are one too many.
    let status = export(
        &mut analyst,
        ReportKind::CreatedClosed,
        filter(START, END, ""),
        Granularity::Day,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "LIMIT_EXCEEDED"
    );
    assert!(
        status.message().contains("matched 6 rows") && status.message().contains("narrow"),
        "{}",
        status.message()
    );

    reporting.stop().await;
    fake.stop().await;
}

on_each_backend!(a_restart_resumes_from_the_stored_cursor);
async fn a_restart_resumes_from_the_stored_cursor(backend: &common::Backend) {
    let log = scenario();
    let last = log.last_sequence();
    let half = log.entries[log.entries.len() / 3].log_sequence;
    let database_url = backend.url.clone();

    let (fake, _) = start_fake(&log, Script::HoldAfter(half)).await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_cursor(&database_url, &reporting.url, half).await;
    reporting.stop().await;
    fake.stop().await;

    let (fake, subscriptions) = start_fake(&log, Script::HoldAfter(last)).await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_cursor(&database_url, &reporting.url, last).await;
    assert_eq!(subscriptions.lock().unwrap()[0], half);

    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Administrator]));
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::Total).await,
        vec![cc(start(START), 8, 7)]
    );
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::Total).await,
        vec![ra(start(START), A, 1, 2), ra(start(START), B, 2, 1)]
    );
    reporting.stop().await;
    fake.stop().await;
}

on_each_backend!(refusals_say_why);
async fn refusals_say_why(backend: &common::Backend) {
    let log = EventLog::new();
    let (fake, _) = start_fake(&log, Script::HoldAfter(0)).await;
    let database_url = backend.url.clone();
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_cursor(&database_url, &reporting.url, 0).await;
    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));

    let created_closed = |filter: Option<ReportFilter>, granularity: i32| {
        let mut analyst = analyst.clone();
        async move {
            analyst
                .get_created_closed_report(GetCreatedClosedReportRequest {
                    filter,
                    granularity,
                    ..Default::default()
                })
                .await
                .unwrap_err()
        }
    };
    let day = Granularity::Day as i32;
    assert_invalid(&created_closed(None, day).await, "filter");
    assert_invalid(
        &created_closed(Some(ReportFilter::default()), day).await,
        "filter.time_range",
    );
    assert_invalid(
        &created_closed(Some(filter(END, START, PARIS)), day).await,
        "filter.time_range",
    );
    assert_invalid(
        &created_closed(Some(filter(START, START, PARIS)), day).await,
        "filter.time_range",
    );
    assert_invalid(
        &created_closed(
            Some(filter(
                "2025-01-01T00:00:00Z",
                "2026-02-05T00:00:01Z",
                PARIS,
            )),
            day,
        )
        .await,
        "filter.time_range",
    );
    assert_invalid(
        &created_closed(Some(filter(START, END, "Mars/Olympus_Mons")), day).await,
        "filter.time_zone",
    );
    assert_invalid(&created_closed(Some(paris()), 42).await, "granularity");
    assert_invalid(
        &created_closed(
            Some(ReportFilter {
                queue_ids: vec!["queue-1".to_owned()],
                ..paris()
            }),
            day,
        )
        .await,
        "filter.queue_ids[0]",
    );
    // 400 days by day is fine, and longer ranges by week too.
    assert!(
        analyst
            .get_created_closed_report(GetCreatedClosedReportRequest {
                filter: Some(filter("2025-01-01T00:00:00Z", "2026-02-05T00:00:00Z", "")),
                granularity: day,
                ..Default::default()
            })
            .await
            .is_ok()
    );
    let status = analyst
        .get_close_time_report(GetCloseTimeReportRequest {
            filter: Some(filter(START, END, "Nowhere/Special")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "filter.time_zone");
    let status = analyst
        .get_reassignments_report(GetReassignmentsReportRequest {
            filter: Some(ReportFilter {
                team_ids: vec![Q1.to_owned()],
                ..paris()
            }),
            granularity: day,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("filter.team_ids[0]"),
        "{}",
        status.message()
    );
    let status = export(
        &mut analyst,
        ReportKind::Unspecified,
        paris(),
        Granularity::Day,
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "kind");

    // An agent is not an analyst.
    let mut agent = client(&reporting.url, user(TENANT, vec![Role::Agent]));
    let status = agent
        .get_created_closed_report(GetCreatedClosedReportRequest {
            filter: Some(paris()),
            granularity: day,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "ROLE_REQUIRED"
    );
    let status = export(
        &mut agent,
        ReportKind::CreatedClosed,
        paris(),
        Granularity::Day,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = agent
        .get_first_contact_resolution_report(GetFirstContactResolutionReportRequest {
            filter: Some(paris()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Without the gateway's signature there is no caller at all.
    let mut unsigned = ReportingServiceClient::connect(reporting.url.clone())
        .await
        .unwrap();
    let status = unsigned
        .get_created_closed_report(GetCreatedClosedReportRequest {
            filter: Some(paris()),
            granularity: day,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // A service-level threshold that is not whole seconds within a day.
    for (seconds, nanos) in [(-1, 0), (86_401, 0), (20, 500_000_000)] {
        let status = analyst
            .get_queue_metrics_report(GetQueueMetricsReportRequest {
                filter: Some(paris()),
                service_level_threshold: Some(prost_types::Duration { seconds, nanos }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&status, "service_level_threshold");
    }

    // Ledger kinds and conversation that do not exist, and too many kinds.
    for (request, field) in [
        (
            ListTransferLedgerRequest {
                kinds: vec![0],
                ..Default::default()
            },
            "kinds[0]",
        ),
        (
            ListTransferLedgerRequest {
                kinds: vec![1, 99],
                ..Default::default()
            },
            "kinds[1]",
        ),
        (
            ListTransferLedgerRequest {
                kinds: vec![1; 11],
                ..Default::default()
            },
            "kinds",
        ),
        (
            ListTransferLedgerRequest {
                conversation_id: "conv-1".to_owned(),
                ..Default::default()
            },
            "conversation_id",
        ),
    ] {
        let status = analyst
            .list_transfer_ledger(ListTransferLedgerRequest {
                filter: Some(paris()),
                ..request
            })
            .await
            .unwrap_err();
        assert_invalid(&status, field);
    }

    reporting.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_short_identity_secret_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        identity_secret: "too-short".to_owned(),
        metrics_listen: None,
        database_url: "sqlite::memory:".to_owned(),
        ..Config::default()
    };
    let err = serve(config, listener, ShutdownSignal::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("identity_secret"), "{err:#}");
}

/// Calls one report page after page with `page_size`, starting with an empty token, until
/// the token comes back empty; returns the rows in order and the number of pages.
async fn all_pages<R, F, Fut>(page_size: i32, mut call: F) -> (Vec<R>, usize)
where
    F: FnMut(i32, String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<R>, String), Status>>,
{
    let mut rows = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (page, next) = call(page_size, token).await.unwrap();
        pages += 1;
        assert!(page.len() <= page_size as usize, "page {pages} too long");
        assert!(pages < 100, "paging never ends");
        rows.extend(page);
        if next.is_empty() {
            return (rows, pages);
        }
        token = next;
    }
}

/// The four served reports as page functions of (filter, granularity, page size, token).
#[derive(Clone)]
struct Reports {
    client: ReportingServiceClient<SignedChannel>,
}

impl Reports {
    async fn created_closed(
        &self,
        filter: ReportFilter,
        granularity: Granularity,
        page_size: i32,
        page_token: String,
    ) -> Result<(Vec<CreatedClosedRow>, String), Status> {
        let response = self
            .client
            .clone()
            .get_created_closed_report(GetCreatedClosedReportRequest {
                filter: Some(filter),
                granularity: granularity as i32,
                page_size,
                page_token,
            })
            .await?
            .into_inner();
        Ok((response.rows, response.next_page_token))
    }

    async fn reassignments(
        &self,
        filter: ReportFilter,
        granularity: Granularity,
        page_size: i32,
        page_token: String,
    ) -> Result<(Vec<ReassignmentsRow>, String), Status> {
        let response = self
            .client
            .clone()
            .get_reassignments_report(GetReassignmentsReportRequest {
                filter: Some(filter),
                granularity: granularity as i32,
                page_size,
                page_token,
            })
            .await?
            .into_inner();
        Ok((response.rows, response.next_page_token))
    }

    async fn close_time(
        &self,
        filter: ReportFilter,
        page_size: i32,
        page_token: String,
    ) -> Result<(Vec<CloseTimeRow>, String), Status> {
        let response = self
            .client
            .clone()
            .get_close_time_report(GetCloseTimeReportRequest {
                filter: Some(filter),
                page_size,
                page_token,
            })
            .await?
            .into_inner();
        Ok((response.rows, response.next_page_token))
    }

    async fn first_contact_resolution(
        &self,
        filter: ReportFilter,
        page_size: i32,
        page_token: String,
    ) -> Result<(Vec<FirstContactResolutionRow>, String), Status> {
        let response = self
            .client
            .clone()
            .get_first_contact_resolution_report(GetFirstContactResolutionReportRequest {
                filter: Some(filter),
                page_size,
                page_token,
            })
            .await?
            .into_inner();
        Ok((response.rows, response.next_page_token))
    }
}

/// A second program, of Q2 alone in [`teams_programs_and_child_tenants_narrow_the_reports`].
const PROGRAM_2: &str = "98989898-9898-4898-8898-989898989898";

on_each_backend!(teams_programs_and_child_tenants_narrow_the_reports);
async fn teams_programs_and_child_tenants_narrow_the_reports(backend: &common::Backend) {
    let mut log = EventLog::new();
    log.program(Q2, PROGRAM_2);
    let mut log = scenario_into(log);
    // The child tenant's own conversation, handled and closed by B.
    let child = log.create(
        CHILD_TENANT,
        "conv-child",
        Channel::Webchat,
        Q1,
        "2026-03-02T12:00:00Z",
    );
    log.assign(&child, "2026-03-02T12:01:00Z", B, "");
    log.close(&child, "2026-03-02T12:31:00Z", B);
    let last = log.last_sequence();
    let (fake, _) = start_fake(&log, Script::HoldAfter(last)).await;
    let reporting = start_reporting(&backend.url, &fake.url).await;
    wait_for_cursor(&backend.url, &reporting.url, last).await;
    let reports = Reports {
        client: client(&reporting.url, user(TENANT, vec![Role::Analyst])),
    };
    let mut analyst = reports.client.clone();
    let narrowed = |edit: &dyn Fn(&mut ReportFilter)| {
        let mut filter = paris();
        edit(&mut filter);
        filter
    };
    let close_time = |filter: ReportFilter| {
        let reports = &reports;
        async move { reports.close_time(filter, 0, String::new()).await }
    };

    // Teams: exactly the rows of the team's current members.
    let everyone = reassignments(&mut analyst, paris(), Granularity::Total).await;
    assert_eq!(
        everyone,
        vec![ra(start(START), A, 1, 2), ra(start(START), B, 2, 1)]
    );
    let team_a = narrowed(&|f| f.team_ids = vec![TEAM_A.to_uppercase()]);
    assert_eq!(
        reassignments(&mut analyst, team_a.clone(), Granularity::Total).await,
        vec![ra(start(START), A, 1, 2)]
    );
    let both_teams = narrowed(&|f| f.team_ids = vec![TEAM_BC.to_owned(), TEAM_A.to_owned()]);
    assert_eq!(
        reassignments(&mut analyst, both_teams, Granularity::Total).await,
        everyone
    );
    let all_closers = close_time(paris()).await.unwrap().0;
    let team_bc = narrowed(&|f| f.team_ids = vec![TEAM_BC.to_owned()]);
    let bc_closers = close_time(team_bc.clone()).await.unwrap().0;
    assert_eq!(
        bc_closers,
        all_closers
            .iter()
            .filter(|row| row.agent_id == B || row.agent_id == C)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(bc_closers.len(), 2);
    // With agents too: only those in both, and none at all when they share nobody.
    let team_and_agent = |agent: &str| {
        let mut filter = team_bc.clone();
        filter.agent_ids = vec![agent.to_owned()];
        filter
    };
    assert_eq!(
        close_time(team_and_agent(C)).await.unwrap().0,
        vec![bc_closers[1].clone()]
    );
    assert_eq!(close_time(team_and_agent(A)).await.unwrap().0, vec![]);
    let team_a_agent_b = narrowed(&|f| {
        f.team_ids = vec![TEAM_A.to_owned()];
        f.agent_ids = vec![B.to_owned()];
    });
    assert_eq!(
        reassignments(&mut analyst, team_a_agent_b, Granularity::Total).await,
        vec![]
    );
    // The export applies the team as the report does.
    let (csv, _) = export(
        &mut analyst,
        ReportKind::Reassignments,
        team_a,
        Granularity::Total,
    )
    .await
    .unwrap();
    let records = parse_simple_csv(&csv);
    assert_eq!(records.len(), 2, "{csv}");
    assert_eq!(records[1][2..], [A, "1", "2", ""]);
    // Another tenant's team and an unknown one: NOT_FOUND, naming the entry.
    for team in [FOREIGN_TEAM, Q1] {
        let filter = narrowed(&|f| f.team_ids = vec![TEAM_A.to_owned(), team.to_owned()]);
        let status = close_time(filter).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(
            status.message(),
            format!("filter.team_ids[1]: team {team} not found")
        );
    }
    // Reports per period have no agents: teams are not looked up there.
    let foreign = narrowed(&|f| f.team_ids = vec![FOREIGN_TEAM.to_owned()]);
    assert_eq!(
        created_closed(&mut analyst, foreign, Granularity::Total).await,
        vec![cc(start(START), 8, 7)]
    );

    // Programs: the numbers of their queues, whatever reads them.
    let program = |ids: &[&str], queues: &[&str]| {
        narrowed(&|f| {
            f.program_ids = ids.iter().map(|id| (*id).to_owned()).collect();
            f.queue_ids = queues.iter().map(|id| (*id).to_owned()).collect();
        })
    };
    for (programs, queue) in [([PROGRAM_2], Q2), ([PROGRAM], Q1)] {
        assert_eq!(
            created_closed(&mut analyst, program(&programs, &[]), Granularity::Day).await,
            created_closed(&mut analyst, program(&[], &[queue]), Granularity::Day).await
        );
        assert_eq!(
            reassignments(&mut analyst, program(&programs, &[]), Granularity::Day).await,
            reassignments(&mut analyst, program(&[], &[queue]), Granularity::Day).await
        );
        assert_eq!(
            close_time(program(&programs, &[])).await.unwrap().0,
            close_time(program(&[], &[queue])).await.unwrap().0
        );
    }
    assert_eq!(
        created_closed(&mut analyst, program(&[PROGRAM_2], &[]), Granularity::Total).await,
        vec![cc(start(START), 2, 3)]
    );
    // With queues too: only queues in both; a program with no queue counts nothing.
    for nothing in [
        program(&[PROGRAM_2], &[Q1]),
        program(&["5e5e5e5e-0000-4000-8000-000000000000"], &[]),
    ] {
        assert_eq!(
            created_closed(&mut analyst, nothing.clone(), Granularity::Total).await,
            vec![cc(start(START), 0, 0)]
        );
        assert_eq!(close_time(nothing).await.unwrap().0, vec![]);
    }

    // A child tenant: its numbers only, for an analyst of its parent.
    let of_child = narrowed(&|f| f.tenant_id = CHILD_TENANT.to_uppercase());
    assert_eq!(
        created_closed(&mut analyst, of_child.clone(), Granularity::Total).await,
        vec![cc(start(START), 1, 1)]
    );
    let child_closers = close_time(of_child.clone()).await.unwrap().0;
    assert_eq!(
        child_closers
            .iter()
            .map(|row| (row.agent_id.as_str(), row.closed, row.average_from_create))
            .collect::<Vec<_>>(),
        vec![(B, 1, secs(31 * 60))]
    );
    // The child's teams are looked up in the child, where TENANT's team is unknown.
    let mut child_team = of_child;
    child_team.team_ids = vec![TEAM_A.to_owned()];
    assert_eq!(
        close_time(child_team).await.unwrap_err().code(),
        Code::NotFound
    );
    // Nobody reaches up: the child's analyst naming its parent is told it is not found.
    let mut child_analyst = client(&reporting.url, user(CHILD_TENANT, vec![Role::Analyst]));
    let status = child_analyst
        .get_created_closed_report(GetCreatedClosedReportRequest {
            filter: Some(narrowed(&|f| f.tenant_id = TENANT.to_owned())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    reporting.stop().await;

    // Without the directory, only the reports that need it fail, and they say so.
    let reporting = start_reporting_with(&backend.url, &fake.url, |config| {
        "http://127.0.0.1:9".clone_into(&mut config.directory_url);
    })
    .await;
    wait_for_cursor(&backend.url, &reporting.url, last).await;
    let reports = Reports {
        client: client(&reporting.url, user(TENANT, vec![Role::Analyst])),
    };
    let status = reports
        .close_time(team_bc.clone(), 0, String::new())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // A page token is checked against the request before the directory is asked.
    let status = reports
        .close_time(team_bc, 0, "not-a-token".to_owned())
        .await
        .unwrap_err();
    assert_invalid(&status, "page_token");
    assert_eq!(
        reports
            .close_time(paris(), 0, String::new())
            .await
            .unwrap()
            .0,
        all_closers
    );
    reporting.stop().await;
    fake.stop().await;
}

on_each_backend!(paging_yields_exactly_the_rows_of_one_call);
async fn paging_yields_exactly_the_rows_of_one_call(backend: &common::Backend) {
    paging_yields_exactly_the_rows_of_one_call_on(&backend.url).await;
}

async fn paging_yields_exactly_the_rows_of_one_call_on(database_url: &str) {
    let log = scenario();
    let last = log.last_sequence();
    let (fake, _) = start_fake(&log, Script::HoldAfter(last)).await;
    let reporting = start_reporting(database_url, &fake.url).await;
    wait_for_cursor(database_url, &reporting.url, last).await;
    let reports = Reports {
        client: client(&reporting.url, user(TENANT, vec![Role::Analyst])),
    };

    for granularity in [
        Granularity::Day,
        Granularity::Week,
        Granularity::DayOfWeek,
        Granularity::Total,
    ] {
        // One call with the default page size holds everything and says so.
        let (whole, next) = reports
            .created_closed(paris(), granularity, 0, String::new())
            .await
            .unwrap();
        assert!(next.is_empty(), "{granularity:?}: one page");
        let (reassigned, next) = reports
            .reassignments(paris(), granularity, 0, String::new())
            .await
            .unwrap();
        assert!(next.is_empty());
        for size in [1, 2, 3] {
            let (paged, pages) = all_pages(size, |size, token| {
                reports.created_closed(paris(), granularity, size, token)
            })
            .await;
            assert_eq!(paged, whole, "{granularity:?} by {size}");
            assert_eq!(pages, whole.len().div_ceil(size as usize).max(1));
            let (paged, _) = all_pages(size, |size, token| {
                reports.reassignments(paris(), granularity, size, token)
            })
            .await;
            assert_eq!(paged, reassigned, "{granularity:?} by {size}");
        }
    }
    // Five days, three agents: several pages each.
    assert_eq!(
        all_pages(2, |size, token| {
            reports.created_closed(paris(), Granularity::Day, size, token)
        })
        .await
        .1,
        3
    );
    let (whole, _) = reports.close_time(paris(), 0, String::new()).await.unwrap();
    assert_eq!(whole.len(), 3);
    let (fcr, _) = reports
        .first_contact_resolution(paris(), 0, String::new())
        .await
        .unwrap();
    assert_eq!(fcr.len(), 3);
    for size in [1, 2, 3] {
        let (paged, pages) =
            all_pages(size, |size, token| reports.close_time(paris(), size, token)).await;
        assert_eq!(
            (paged, pages),
            (whole.clone(), 3usize.div_ceil(size as usize))
        );
        let (paged, _) = all_pages(size, |size, token| {
            reports.first_contact_resolution(paris(), size, token)
        })
        .await;
        assert_eq!(paged, fcr);
    }

    // A token is good only for the request that issued it.
    let (_, token) = reports
        .created_closed(paris(), Granularity::Day, 2, String::new())
        .await
        .unwrap();
    assert!(!token.is_empty());
    let status = reports
        .created_closed(paris(), Granularity::Week, 2, token.clone())
        .await
        .unwrap_err();
    assert_invalid(&status, "page_token");
    let only_q1 = ReportFilter {
        queue_ids: vec![Q1.to_owned()],
        ..paris()
    };
    let status = reports
        .created_closed(only_q1, Granularity::Day, 2, token.clone())
        .await
        .unwrap_err();
    assert_invalid(&status, "page_token");
    let status = reports
        .reassignments(paris(), Granularity::Day, 2, token.clone())
        .await
        .unwrap_err();
    assert_invalid(&status, "page_token");
    // The page size may change between pages.
    let (rest, next) = reports
        .created_closed(paris(), Granularity::Day, 10, token)
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    assert!(next.is_empty());
    let (_, token) = reports.close_time(paris(), 1, String::new()).await.unwrap();
    let status = reports
        .first_contact_resolution(paris(), 1, token)
        .await
        .unwrap_err();
    assert_invalid(&status, "page_token");
    for garbage in ["garbage", "00", "7231"] {
        let status = reports
            .close_time(paris(), 1, garbage.to_owned())
            .await
            .unwrap_err();
        assert_invalid(&status, "page_token");
    }
    let status = reports
        .created_closed(paris(), Granularity::Day, -1, String::new())
        .await
        .unwrap_err();
    assert_invalid(&status, "page_size");

    reporting.stop().await;
    fake.stop().await;
}

on_each_backend!(an_empty_time_zone_means_the_tenant_s);
async fn an_empty_time_zone_means_the_tenant_s(backend: &common::Backend) {
    let log = scenario();
    let last = log.last_sequence();
    let (fake, _) = start_fake(&log, Script::HoldAfter(last)).await;
    let database_url = backend.url.clone();
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_cursor(&database_url, &reporting.url, last).await;

    let new_york = "America/New_York";
    let mut in_new_york = client(
        &reporting.url,
        user_in_zone(TENANT, vec![Role::Analyst], new_york),
    );
    let mut in_utc = client(&reporting.url, user(TENANT, vec![Role::Analyst]));
    let tenant_default =
        created_closed(&mut in_new_york, filter(START, END, ""), Granularity::Day).await;
    // New York is UTC-5 in early March: its days start at 05:00 UTC, and conv-3 (created
    // 23:30 UTC on 03-03, closed at 00:10 and at 01:00 UTC on 03-04) lives on 03-03 there.
    assert_eq!(
        tenant_default,
        vec![
            cc(start("2026-03-01T00:00:00-05:00"), 0, 0),
            cc(start("2026-03-02T00:00:00-05:00"), 2, 2),
            cc(start("2026-03-03T00:00:00-05:00"), 3, 4),
            cc(start("2026-03-04T00:00:00-05:00"), 1, 0),
            cc(start("2026-03-05T00:00:00-05:00"), 2, 1),
            cc(start("2026-03-06T00:00:00-05:00"), 0, 0),
        ]
    );
    assert_eq!(
        tenant_default,
        created_closed(&mut in_utc, filter(START, END, new_york), Granularity::Day).await
    );
    // A zone in the filter still wins over the tenant's.
    assert_eq!(
        created_closed(&mut in_new_york, paris(), Granularity::Day).await,
        created_closed(&mut in_utc, paris(), Granularity::Day).await
    );
    // Without a tenant zone, empty still means UTC.
    assert_eq!(
        created_closed(&mut in_utc, filter(START, END, ""), Granularity::Day).await[0],
        cc(start("2026-03-01T00:00:00Z"), 0, 0)
    );
    // The export follows the same zone.
    let (csv, _) = export(
        &mut in_new_york,
        ReportKind::CreatedClosed,
        filter(START, END, ""),
        Granularity::Week,
    )
    .await
    .unwrap();
    assert_eq!(
        parse_simple_csv(&csv)[1],
        ["2026-02-23T00:00:00-05:00", "", "0", "0"]
    );

    reporting.stop().await;
    fake.stop().await;
}

on_each_backend!(filters_are_capped_and_stay_in_the_caller_s_tenant);
async fn filters_are_capped_and_stay_in_the_caller_s_tenant(backend: &common::Backend) {
    let log = EventLog::new();
    let (fake, _) = start_fake(&log, Script::HoldAfter(0)).await;
    let database_url = backend.url.clone();
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_cursor(&database_url, &reporting.url, 0).await;
    let reports = Reports {
        client: client(&reporting.url, user(TENANT, vec![Role::Analyst])),
    };
    let uuids = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect()
    };

    // Over the caps, named before anything else is checked (here: no time range at all).
    let no_range = |edit: fn(&mut ReportFilter)| {
        let mut filter = ReportFilter::default();
        edit(&mut filter);
        filter
    };
    let cases: [(ReportFilter, &str); 5] = [
        (
            no_range(|f| f.queue_ids = vec!["q".to_owned(); 1001]),
            "filter.queue_ids",
        ),
        (
            no_range(|f| f.agent_ids = vec!["a".to_owned(); 1001]),
            "filter.agent_ids",
        ),
        (no_range(|f| f.channels = vec![1; 11]), "filter.channels"),
        (
            no_range(|f| f.team_ids = vec!["t".to_owned(); 101]),
            "filter.team_ids",
        ),
        (
            no_range(|f| f.program_ids = vec!["p".to_owned(); 100_000]),
            "filter.program_ids",
        ),
    ];
    for (filter, field) in cases {
        let status = reports
            .reassignments(filter.clone(), Granularity::Day, 0, String::new())
            .await
            .unwrap_err();
        assert_invalid(&status, field);
        let status = reports
            .close_time(filter.clone(), 0, String::new())
            .await
            .unwrap_err();
        assert_invalid(&status, field);
        let status = export(
            &mut reports.client.clone(),
            ReportKind::Reassignments,
            filter,
            Granularity::Day,
        )
        .await
        .unwrap_err();
        assert_invalid(&status, field);
    }
    let status = reports
        .created_closed(
            no_range(|f| f.channels = vec![1; 11]),
            Granularity::Day,
            0,
            String::new(),
        )
        .await
        .unwrap_err();
    assert_invalid(&status, "filter.channels");
    // At the caps, the report is served.
    let full = ReportFilter {
        queue_ids: uuids(1000),
        agent_ids: uuids(1000),
        channels: vec![Channel::Webchat as i32; 10],
        ..paris()
    };
    assert!(
        reports
            .reassignments(full.clone(), Granularity::Day, 0, String::new())
            .await
            .is_ok()
    );
    assert!(reports.close_time(full, 0, String::new()).await.is_ok());

    // Another tenant that is not a descendant is not found, by report and by export,
    // whether it exists or not; the caller's own is served.
    for tenant in [OTHER_TENANT, "5e5e5e5e-0000-4000-8000-000000000000"] {
        let other = ReportFilter {
            tenant_id: tenant.to_owned(),
            ..paris()
        };
        let status = reports
            .created_closed(other.clone(), Granularity::Day, 0, String::new())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(
            status.message(),
            format!("filter.tenant_id: tenant {tenant} not found")
        );
        let status = export(
            &mut reports.client.clone(),
            ReportKind::FirstContactResolution,
            other,
            Granularity::Unspecified,
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    let own = ReportFilter {
        tenant_id: TENANT.to_owned(),
        ..paris()
    };
    assert_eq!(
        reports
            .created_closed(own, Granularity::Total, 0, String::new())
            .await
            .unwrap()
            .0,
        vec![cc(start(START), 0, 0)]
    );

    reporting.stop().await;
    fake.stop().await;
}

/// A routing event of TENANT (offer events are queue offers with a channel; the wait
/// starts at `wait_start`).
fn routing_event(
    sequence: i64,
    event_type: RoutingEventType,
    at: &str,
    queue_id: &str,
    agent_id: &str,
    wait_start: &str,
) -> RoutingEvent {
    RoutingEvent {
        sequence,
        tenant_id: TENANT.to_owned(),
        event_type: event_type as i32,
        occur_time: Some(ts(at)),
        agent_id: agent_id.to_owned(),
        conversation_id: format!("conv-{sequence}"),
        queue_id: queue_id.to_owned(),
        offer_id: format!("offer-{sequence}"),
        wait_start_time: Some(ts(wait_start)),
        offer_kind: OfferKind::Queue as i32,
        channel: Channel::Webchat as i32,
        ..RoutingEvent::default()
    }
}

/// Routing's side of two Paris days: offers with every outcome in Q1, an overflow from Q2
/// to Q1, and what must not count (a transfer offer, another tenant's offer).
fn routing_scenario() -> Vec<RoutingEvent> {
    use RoutingEventType::{
        OfferAccepted, OfferCreated, OfferRejected, OfferTimedOut, OfferWithdrawn, WaitingEnqueued,
        WaitingOverflowed,
    };
    let w1 = "2026-03-02T09:00:00Z";
    let w2 = "2026-03-02T09:05:00Z";
    let w3 = "2026-03-02T10:00:00Z";
    let w4 = "2026-03-02T10:55:00Z";
    let mut events = vec![
        // conv-1: A lets it time out, B answers after 50 s.
        routing_event(1, WaitingEnqueued, w1, Q1, "", w1),
        routing_event(2, OfferCreated, "2026-03-02T09:00:10Z", Q1, A, w1),
        routing_event(3, OfferTimedOut, "2026-03-02T09:00:40Z", Q1, A, w1),
        routing_event(4, OfferCreated, "2026-03-02T09:00:41Z", Q1, B, w1),
        routing_event(5, OfferAccepted, "2026-03-02T09:00:50Z", Q1, B, w1),
        // conv-2: A rejects, B answers after 95 s.
        routing_event(6, OfferCreated, "2026-03-02T09:05:05Z", Q1, A, w2),
        routing_event(7, OfferRejected, "2026-03-02T09:05:10Z", Q1, A, w2),
        routing_event(8, OfferCreated, "2026-03-02T09:05:11Z", Q1, B, w2),
        routing_event(9, OfferAccepted, "2026-03-02T09:06:35Z", Q1, B, w2),
        // conv-3: the offer is withdrawn when the customer leaves (abandoned).
        routing_event(10, OfferCreated, "2026-03-02T10:00:05Z", Q1, A, w3),
        routing_event(11, OfferWithdrawn, "2026-03-02T10:01:00Z", Q1, A, w3),
        // conv-4: waited in Q2 from 10:55, overflowed to Q1, answered after 320 s.
        RoutingEvent {
            from_queue_id: Q2.to_owned(),
            ..routing_event(12, WaitingOverflowed, "2026-03-02T11:00:00Z", Q1, "", w4)
        },
        routing_event(13, OfferCreated, "2026-03-02T11:00:05Z", Q1, A, w4),
        routing_event(14, OfferAccepted, "2026-03-02T11:00:20Z", Q1, A, w4),
        // A transfer to A, accepted: not a queue offer.
        RoutingEvent {
            offer_kind: OfferKind::Transfer as i32,
            ..routing_event(15, OfferAccepted, "2026-03-02T12:00:00Z", Q1, A, w1)
        },
        // Another tenant's offer in a queue of the same id.
        RoutingEvent {
            tenant_id: OTHER_TENANT.to_owned(),
            ..routing_event(16, OfferCreated, "2026-03-02T12:00:00Z", Q1, A, w1)
        },
        // conv-5, the next day in Q2: offered to B, timed out.
        routing_event(
            17,
            OfferCreated,
            "2026-03-03T08:00:00Z",
            Q2,
            B,
            "2026-03-03T07:59:00Z",
        ),
        routing_event(
            18,
            OfferTimedOut,
            "2026-03-03T08:00:30Z",
            Q2,
            B,
            "2026-03-03T07:59:00Z",
        ),
    ];
    // A presence change carries nothing for these numbers but moves the cursor.
    events.push(RoutingEvent {
        event_type: RoutingEventType::PresenceChanged as i32,
        ..routing_event(19, WaitingEnqueued, "2026-03-03T09:00:00Z", "", A, w1)
    });
    events
}

/// conversation-svc's side: conv-3 closed with no agent in Q1 (abandoned).
fn abandonment() -> EventLog {
    let mut log = EventLog::new();
    let c3 = log.create(
        TENANT,
        "conv-3",
        Channel::Webchat,
        Q1,
        "2026-03-02T10:00:00Z",
    );
    log.close(&c3, "2026-03-02T10:01:00Z", "");
    log
}

async fn queue_metrics(
    client: &mut ReportingServiceClient<SignedChannel>,
    filter: ReportFilter,
    granularity: Granularity,
    threshold_seconds: Option<i64>,
) -> Vec<QueueMetricsRow> {
    client
        .get_queue_metrics_report(GetQueueMetricsReportRequest {
            filter: Some(filter),
            granularity: granularity as i32,
            service_level_threshold: threshold_seconds
                .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
}

on_each_backend!(queue_metrics_follow_routing_s_log_across_a_restart);
async fn queue_metrics_follow_routing_s_log_across_a_restart(backend: &common::Backend) {
    let database_url = backend.url.clone();
    let conversations = abandonment();
    let routing_log = routing_scenario();
    let last = routing_log.last().unwrap().sequence;
    let half = 9;

    // Half of routing's log, then a restart that resumes from the stored cursor.
    let (fake, _, _) = start_fakes(
        &conversations,
        Script::HoldAfter(conversations.last_sequence()),
        &routing_log,
        half,
    )
    .await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_source(&database_url, &reporting.url, ROUTING_EVENTS, half).await;
    reporting.stop().await;
    fake.stop().await;
    let (fake, _, routing_subscriptions) = start_fakes(
        &conversations,
        Script::HoldAfter(conversations.last_sequence()),
        &routing_log,
        last,
    )
    .await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_source(&database_url, &reporting.url, ROUTING_EVENTS, last).await;
    wait_for_cursor(&database_url, &reporting.url, conversations.last_sequence()).await;
    assert_eq!(routing_subscriptions.lock().unwrap()[0], half);

    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));
    let q1_day = QueueMetricsRow {
        period: Some(start("2026-03-02T00:00:00+01:00")),
        queue_id: Q1.to_owned(),
        offered: 6,
        accepted: 3,
        rona: 1,
        rejected: 1,
        withdrawn: 1,
        abandoned: 1,
        overflowed_in: 1,
        overflowed_out: 0,
        // (50 + 95 + 320) / 3 s.
        average_speed_of_answer: secs(155),
        // Only conv-1 within 60 s, over three answered and one abandoned.
        answered_within_threshold: 1,
        service_level: 0.25,
        transferred_in: 0,
        transferred_out: 0,
    };
    let q2_day = QueueMetricsRow {
        period: Some(start("2026-03-02T00:00:00+01:00")),
        queue_id: Q2.to_owned(),
        overflowed_out: 1,
        average_speed_of_answer: secs(0),
        ..QueueMetricsRow::default()
    };
    let q2_next_day = QueueMetricsRow {
        period: Some(start("2026-03-03T00:00:00+01:00")),
        queue_id: Q2.to_owned(),
        offered: 1,
        rona: 1,
        average_speed_of_answer: secs(0),
        ..QueueMetricsRow::default()
    };
    assert_eq!(
        queue_metrics(&mut analyst, paris(), Granularity::Day, None).await,
        vec![q1_day.clone(), q2_day.clone(), q2_next_day.clone()]
    );
    // Another threshold: conv-2's 95 s wait is now within it.
    assert_eq!(
        queue_metrics(&mut analyst, paris(), Granularity::Day, Some(100)).await[0],
        QueueMetricsRow {
            answered_within_threshold: 2,
            service_level: 0.5,
            ..q1_day.clone()
        }
    );
    // One queue, summed over the range.
    let only_q2 = ReportFilter {
        queue_ids: vec![Q2.to_owned()],
        ..paris()
    };
    assert_eq!(
        queue_metrics(&mut analyst, only_q2, Granularity::Total, None).await,
        vec![QueueMetricsRow {
            period: Some(start(START)),
            offered: 1,
            rona: 1,
            overflowed_out: 1,
            ..q2_next_day.clone()
        }]
    );
    // A range that starts mid-morning (off any quarter hour) leaves conv-1 out.
    let from_nine_o_three = filter("2026-03-02T09:03:00Z", END, PARIS);
    let late = queue_metrics(&mut analyst, from_nine_o_three, Granularity::Total, None).await;
    assert_eq!((late[0].offered, late[0].accepted, late[0].rona), (4, 2, 0));
    // The other tenant sees none of it.
    let mut other = client(&reporting.url, user(OTHER_TENANT, vec![Role::Analyst]));
    let theirs = queue_metrics(&mut other, paris(), Granularity::Total, None).await;
    assert_eq!(
        theirs.iter().map(|r| r.offered).collect::<Vec<_>>(),
        vec![1]
    );

    // The CSV export has the same numbers.
    let (csv, _) = export(
        &mut analyst,
        ReportKind::QueueMetrics,
        paris(),
        Granularity::Day,
    )
    .await
    .unwrap();
    let rows = parse_simple_csv(&csv);
    assert_eq!(
        rows[0],
        [
            "period_start",
            "day_of_week",
            "queue_id",
            "offered",
            "accepted",
            "rejected",
            "rona",
            "withdrawn",
            "abandoned",
            "overflowed_in",
            "overflowed_out",
            "average_speed_of_answer_seconds",
            "answered_within_threshold",
            "service_level",
            "transferred_in",
            "transferred_out",
        ]
    );
    assert_eq!(
        rows[1],
        [
            "2026-03-02T00:00:00+01:00",
            "",
            Q1,
            "6",
            "3",
            "1",
            "1",
            "1",
            "1",
            "1",
            "0",
            "155",
            "1",
            "0.25",
            "0",
            "0"
        ]
    );
    assert_eq!(rows.len(), 4);

    reporting.stop().await;
    fake.stop().await;
}

on_each_backend!(a_rebuild_refolds_both_logs_under_a_running_service);
async fn a_rebuild_refolds_both_logs_under_a_running_service(backend: &common::Backend) {
    let database_url = backend.url.clone();
    let conversations = scenario();
    let routing_log = routing_scenario();
    let routing_last = routing_log.last().unwrap().sequence;
    let (fake, subscriptions, routing_subscriptions) = start_fakes(
        &conversations,
        Script::HoldAfter(conversations.last_sequence()),
        &routing_log,
        routing_last,
    )
    .await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_source(&database_url, &reporting.url, ROUTING_EVENTS, routing_last).await;
    wait_for_cursor(&database_url, &reporting.url, conversations.last_sequence()).await;
    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));
    let totals = created_closed(&mut analyst, paris(), Granularity::Total).await;
    let queues = queue_metrics(&mut analyst, paris(), Granularity::Day, None).await;
    let received = reassignments(&mut analyst, paris(), Granularity::Day).await;
    assert_eq!(totals, vec![cc(start(START), 8, 7)]);
    assert_eq!(queues.len(), 4, "{queues:?}");

    // What `reporting-svc rebuild` does, while the service runs on a quiet log: both
    // consumers notice at their next heartbeat and fold their log again from the start.
    let forgotten = Store::open(&database_url)
        .await
        .unwrap()
        .rebuild()
        .await
        .unwrap();
    assert!(forgotten > 0);
    wait_for_source(&database_url, &reporting.url, ROUTING_EVENTS, routing_last).await;
    wait_for_cursor(&database_url, &reporting.url, conversations.last_sequence()).await;
    assert_eq!(subscriptions.lock().unwrap().last(), Some(&0));
    assert_eq!(routing_subscriptions.lock().unwrap().last(), Some(&0));
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::Total).await,
        totals
    );
    assert_eq!(
        queue_metrics(&mut analyst, paris(), Granularity::Day, None).await,
        queues
    );
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::Day).await,
        received
    );

    reporting.stop().await;
    fake.stop().await;
}

const CV1: &str = "c1c1c1c1-c1c1-4c1c-8c1c-c1c1c1c1c1c1";
const T1: &str = "71717171-7171-4717-8717-717171717171";
const T2: &str = "72727272-7272-4727-8727-727272727272";
const T3: &str = "73737373-7373-4737-8737-737373737373";
const I1: &str = "81818181-8181-4818-8818-818181818181";
const I2: &str = "82828282-8282-4828-8828-828282828282";

/// One conversation's proposals, in conversation-svc's log: a transfer rejected with the
/// return-to-sender fallback, one accepted, one back to the first owner (ping-pong), a
/// consult accepted and a conference invitation timed out.
fn ledger_conversation() -> EventLog {
    let mut log = EventLog::new();
    let conv = log.create(TENANT, CV1, Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&conv, "2026-03-02T09:01:00Z", A, "");
    let transfer = |log: &mut EventLog, at: &str, id: &str, from: &str, to: &str| {
        log.push(&conv, EventType::TransferRequested, at, |e| {
            e.actor_id = from.to_owned();
            e.agent_id = from.to_owned();
            e.transfer_id = id.to_owned();
            e.transfer_to_agent_id = to.to_owned();
            e.transfer_to_queue_id = Q1.to_owned();
            e.offer_id = format!("offer-{id}");
            e.ping_pong = id == T3;
        });
    };
    let resolve = |log: &mut EventLog, at: &str, id: &str, outcome: AnswerOutcome, fallback| {
        log.push(&conv, EventType::TransferResolved, at, |e| {
            e.transfer_id = id.to_owned();
            e.answer_outcome = outcome as i32;
            e.transfer_fallback = fallback as i32;
        });
    };
    transfer(&mut log, "2026-03-02T09:10:00Z", T1, A, B);
    resolve(
        &mut log,
        "2026-03-02T09:10:30Z",
        T1,
        AnswerOutcome::Rejected,
        TransferFallback::ReturnToSender,
    );
    transfer(&mut log, "2026-03-02T09:20:00Z", T2, A, B);
    resolve(
        &mut log,
        "2026-03-02T09:20:05Z",
        T2,
        AnswerOutcome::Accepted,
        TransferFallback::Unspecified,
    );
    log.assign(&conv, "2026-03-02T09:20:05Z", B, A);
    transfer(&mut log, "2026-03-02T09:30:00Z", T3, B, A);
    resolve(
        &mut log,
        "2026-03-02T09:30:10Z",
        T3,
        AnswerOutcome::Accepted,
        TransferFallback::Unspecified,
    );
    log.assign(&conv, "2026-03-02T09:30:10Z", A, B);
    let invite = |log: &mut EventLog, at: &str, id: &str, role: ParticipantRole| {
        log.push(&conv, EventType::ParticipantInvited, at, |e| {
            e.actor_id = A.to_owned();
            e.invitation_id = id.to_owned();
            e.participant_user_id = C.to_owned();
            e.participant_role = role as i32;
            e.offer_id = format!("offer-{id}");
        });
    };
    invite(
        &mut log,
        "2026-03-02T09:40:00Z",
        I1,
        ParticipantRole::Consultant,
    );
    log.push(
        &conv,
        EventType::ParticipantJoined,
        "2026-03-02T09:40:20Z",
        |e| {
            e.invitation_id = I1.to_owned();
            e.participant_user_id = C.to_owned();
        },
    );
    invite(
        &mut log,
        "2026-03-02T09:50:00Z",
        I2,
        ParticipantRole::Conference,
    );
    log.push(
        &conv,
        EventType::InvitationEnded,
        "2026-03-02T09:51:00Z",
        |e| {
            e.invitation_id = I2.to_owned();
            e.answer_outcome = AnswerOutcome::TimedOut as i32;
        },
    );
    log
}

/// The same conversation's queue offers, in routing-svc's log: one accepted, one pending
/// to an agent who already had it; and a transfer's offer, which the ledger takes from
/// the conversation's log instead.
fn ledger_offers() -> Vec<RoutingEvent> {
    use RoutingEventType::{OfferAccepted, OfferCreated};
    let offer = |sequence, event_type, at: &str, created: &str| RoutingEvent {
        conversation_id: CV1.to_owned(),
        offer_id: format!("queue-offer-{}", if sequence < 3 { 1 } else { 2 }),
        offer_create_time: Some(ts(created)),
        ..routing_event(sequence, event_type, at, Q1, A, "2026-03-02T09:00:00Z")
    };
    vec![
        offer(
            1,
            OfferCreated,
            "2026-03-02T09:00:30Z",
            "2026-03-02T09:00:30Z",
        ),
        offer(
            2,
            OfferAccepted,
            "2026-03-02T09:00:55Z",
            "2026-03-02T09:00:30Z",
        ),
        offer(
            3,
            OfferCreated,
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:00:00Z",
        ),
        RoutingEvent {
            offer_kind: OfferKind::Transfer as i32,
            offer_id: format!("offer-{T1}"),
            ..offer(
                4,
                OfferCreated,
                "2026-03-02T09:10:00Z",
                "2026-03-02T09:10:00Z",
            )
        },
    ]
}

async fn ledger(
    client: &mut ReportingServiceClient<SignedChannel>,
    request: ListTransferLedgerRequest,
) -> Vec<TransferLedgerEntry> {
    client
        .list_transfer_ledger(request)
        .await
        .unwrap()
        .into_inner()
        .entries
}

on_each_backend!(the_ledger_lists_offers_transfers_and_invitations_with_outcomes);
async fn the_ledger_lists_offers_transfers_and_invitations_with_outcomes(
    backend: &common::Backend,
) {
    let database_url = backend.url.clone();
    let conversations = ledger_conversation();
    let offers = ledger_offers();
    let (fake, _, _) = start_fakes(
        &conversations,
        Script::HoldAfter(conversations.last_sequence()),
        &offers,
        offers.len() as i64,
    )
    .await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_source(
        &database_url,
        &reporting.url,
        ROUTING_EVENTS,
        offers.len() as i64,
    )
    .await;
    wait_for_cursor(&database_url, &reporting.url, conversations.last_sequence()).await;
    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));

    let all = ledger(
        &mut analyst,
        ListTransferLedgerRequest {
            filter: Some(paris()),
            ..Default::default()
        },
    )
    .await;
    let line = |e: &TransferLedgerEntry| {
        (
            LedgerEntryKind::try_from(e.kind).unwrap(),
            e.from_user_id.clone(),
            e.to_agent_id.clone(),
            AnswerOutcome::try_from(e.outcome).unwrap(),
            e.time_to_answer.map(|d| d.seconds),
            e.ping_pong,
        )
    };
    use AnswerOutcome::{Accepted, Pending, Rejected, TimedOut};
    use LedgerEntryKind::{Conference, Consult, QueueOffer, Transfer};
    let none = String::new;
    assert_eq!(
        all.iter().map(line).collect::<Vec<_>>(),
        vec![
            (QueueOffer, none(), A.to_owned(), Accepted, Some(25), false),
            (
                Transfer,
                A.to_owned(),
                B.to_owned(),
                Rejected,
                Some(30),
                false
            ),
            (
                Transfer,
                A.to_owned(),
                B.to_owned(),
                Accepted,
                Some(5),
                false
            ),
            // Back to A, who owned it before: a ping-pong.
            (
                Transfer,
                B.to_owned(),
                A.to_owned(),
                Accepted,
                Some(10),
                true
            ),
            (
                Consult,
                A.to_owned(),
                C.to_owned(),
                Accepted,
                Some(20),
                false
            ),
            (
                Conference,
                A.to_owned(),
                C.to_owned(),
                TimedOut,
                Some(60),
                false
            ),
            // Offered again to A, who had it: a ping-pong too, still pending.
            (QueueOffer, none(), A.to_owned(), Pending, None, true),
        ]
    );
    assert_eq!(all[1].transfer_id, T1);
    assert_eq!(all[1].offer_id, format!("offer-{T1}"));
    assert_eq!(
        all[1].fallback_applied,
        TransferFallback::ReturnToSender as i32
    );
    assert_eq!(all[1].to_queue_id, Q1);
    assert_eq!(all[1].request_time, Some(ts("2026-03-02T09:10:00Z")));
    assert_eq!(all[0].offer_id, "queue-offer-1");

    // Pages of two give the same lines.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = analyst
            .list_transfer_ledger(ListTransferLedgerRequest {
                filter: Some(paris()),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        paged.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all);
    // A token is bound to its request.
    let first = analyst
        .list_transfer_ledger(ListTransferLedgerRequest {
            filter: Some(paris()),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = analyst
        .list_transfer_ledger(ListTransferLedgerRequest {
            filter: Some(paris()),
            page_size: 2,
            page_token: first.next_page_token,
            kinds: vec![Transfer as i32],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // By kind, by agent (to or from), by conversation, by queue.
    let transfers = ledger(
        &mut analyst,
        ListTransferLedgerRequest {
            filter: Some(paris()),
            kinds: vec![Transfer as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(transfers.len(), 3);
    let with_b = ledger(
        &mut analyst,
        ListTransferLedgerRequest {
            filter: Some(ReportFilter {
                agent_ids: vec![B.to_owned()],
                ..paris()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        with_b
            .iter()
            .map(|e| e.transfer_id.as_str())
            .collect::<Vec<_>>(),
        [T1, T2, T3]
    );
    let of_conversation = ledger(
        &mut analyst,
        ListTransferLedgerRequest {
            filter: Some(paris()),
            conversation_id: CV1.to_uppercase(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(of_conversation.len(), 7);
    let of_another = ledger(
        &mut analyst,
        ListTransferLedgerRequest {
            filter: Some(paris()),
            conversation_id: T1.to_owned(),
            ..Default::default()
        },
    )
    .await;
    assert!(of_another.is_empty());
    let in_q2 = ledger(
        &mut analyst,
        ListTransferLedgerRequest {
            filter: Some(ReportFilter {
                queue_ids: vec![Q2.to_owned()],
                ..paris()
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(in_q2.is_empty());
    // Another tenant sees none of it.
    let mut other = client(&reporting.url, user(OTHER_TENANT, vec![Role::Analyst]));
    assert!(
        ledger(
            &mut other,
            ListTransferLedgerRequest {
                filter: Some(paris()),
                ..Default::default()
            },
        )
        .await
        .is_empty()
    );

    // The CSV export: every line, names without their enum prefix. Seven lines are over
    // this service's export limit of five: refused, with the count.
    let status = export(
        &mut analyst,
        ReportKind::TransferLedger,
        paris(),
        Granularity::Unspecified,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains('7'), "{}", status.message());
    let (csv, _) = export(
        &mut analyst,
        ReportKind::TransferLedger,
        ReportFilter {
            agent_ids: vec![B.to_owned()],
            ..paris()
        },
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    let rows = parse_simple_csv(&csv);
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[1],
        [
            "2026-03-02T10:10:00+01:00",
            "TRANSFER",
            CV1,
            T1,
            &format!("offer-{T1}"),
            A,
            B,
            Q1,
            "REJECTED",
            "RETURN_TO_SENDER",
            "30",
            "false"
        ]
    );

    reporting.stop().await;
    fake.stop().await;
}

const R1: &str = "d1d1d1d1-d1d1-4d1d-8d1d-d1d1d1d1d1d1";
/// Status labels.
const LABELS: [&str; 2] = [
    "1abe1000-0000-4000-8000-000000000001",
    "1abe1000-0000-4000-8000-000000000002",
];
const R2: &str = "d2d2d2d2-d2d2-4d2d-8d2d-d2d2d2d2d2d2";

on_each_backend!(dispositions_count_segments_per_reason_queue_and_agent);
async fn dispositions_count_segments_per_reason_queue_and_agent(backend: &common::Backend) {
    let database_url = backend.url.clone();
    let mut log = EventLog::new();
    let wrap_up =
        |log: &mut EventLog, conv: &common::Conv, at: &str, agent: &str, reasons: &[&str]| {
            log.push(conv, EventType::WrapUpSubmitted, at, |e| {
                e.agent_id = agent.to_owned();
                e.wrap_up_reason_ids = reasons.iter().map(|r| (*r).to_owned()).collect();
            });
        };
    // A wraps up a transfer to B with R1, B closes with R1 and R2 (both in Q1, on 03-02);
    // C closes a Q2 chat with R1 on 03-03.
    let first = log.create(
        TENANT,
        "conv-1",
        Channel::Webchat,
        Q1,
        "2026-03-02T09:00:00Z",
    );
    log.assign(&first, "2026-03-02T09:01:00Z", A, "");
    wrap_up(&mut log, &first, "2026-03-02T09:05:00Z", A, &[R1]);
    log.assign(&first, "2026-03-02T09:06:00Z", B, A);
    wrap_up(&mut log, &first, "2026-03-02T09:30:00Z", B, &[R1, R2]);
    log.close(&first, "2026-03-02T09:30:00Z", B);
    let second = log.create(TENANT, "conv-2", Channel::Sms, Q2, "2026-03-03T09:00:00Z");
    log.assign(&second, "2026-03-03T09:01:00Z", C, "");
    wrap_up(&mut log, &second, "2026-03-03T09:20:00Z", C, &[R1]);
    log.close(&second, "2026-03-03T09:20:00Z", C);
    let (fake, _) = start_fake(&log, Script::HoldAfter(log.last_sequence())).await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_cursor(&database_url, &reporting.url, log.last_sequence()).await;
    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));

    let rows = |filter: ReportFilter, granularity: Granularity| {
        let mut analyst = analyst.clone();
        async move {
            analyst
                .get_dispositions_report(GetDispositionsReportRequest {
                    filter: Some(filter),
                    granularity: granularity as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .rows
                .into_iter()
                .map(|r| {
                    (
                        r.period.and_then(|p| p.start_time),
                        r.queue_id,
                        r.agent_id,
                        r.wrap_up_reason_id,
                        r.segments,
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let day = |at: &str| Some(ts(at));
    let row = |at: &str, queue: &str, agent: &str, reason: &str, n: i64| {
        (
            day(at),
            queue.to_owned(),
            agent.to_owned(),
            reason.to_owned(),
            n,
        )
    };
    let monday = "2026-03-02T00:00:00+01:00";
    let tuesday = "2026-03-03T00:00:00+01:00";
    assert_eq!(
        rows(paris(), Granularity::Day).await,
        vec![
            row(monday, Q1, A, R1, 1),
            row(monday, Q1, B, R1, 1),
            row(monday, Q1, B, R2, 1),
            row(tuesday, Q2, C, R1, 1),
        ]
    );
    assert_eq!(
        rows(
            ReportFilter {
                agent_ids: vec![B.to_owned(), C.to_owned()],
                channels: vec![Channel::Webchat as i32],
                ..paris()
            },
            Granularity::Total
        )
        .await,
        vec![row(START, Q1, B, R1, 1), row(START, Q1, B, R2, 1)]
    );
    // Pages of one give the same rows.
    let (paged, pages) = all_pages(1, |page_size, page_token| {
        let mut analyst = analyst.clone();
        async move {
            let page = analyst
                .get_dispositions_report(GetDispositionsReportRequest {
                    filter: Some(paris()),
                    granularity: Granularity::Day as i32,
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.rows, page.next_page_token))
        }
    })
    .await;
    assert_eq!(pages, 4);
    assert_eq!(
        paged.iter().map(|r| r.segments).sum::<i64>(),
        4,
        "{paged:?}"
    );
    let (csv, _) = export(
        &mut analyst,
        ReportKind::Dispositions,
        paris(),
        Granularity::Total,
    )
    .await
    .unwrap();
    assert_eq!(
        parse_simple_csv(&csv)[1],
        ["2026-03-02T00:00:00+01:00", "", Q1, A, R1, "1"]
    );

    reporting.stop().await;
    fake.stop().await;
}

/// The sender of a transfer in a generated history, and the queue its segment was in.
struct Sender<'a> {
    queue: String,
    agent: &'a str,
}

impl Sender<'_> {
    /// The sender gives `reason` for conversation `conv` at `at`, with `transfer` or later
    /// for the segment a transfer ended: a disposition in the segment's queue, wherever the
    /// conversation is now, and a reason sent.
    fn gives(
        &self,
        (log, conv): (&mut EventLog, &common::Conv),
        truth: &mut Truth,
        reason: &str,
        at: i64,
        transfer: Option<&str>,
    ) {
        log.push(conv, EventType::WrapUpSubmitted, &rfc3339(at), |e| {
            e.queue_id.clone_from(&self.queue);
            e.agent_id = self.agent.to_owned();
            e.wrap_up_reason_ids = vec![reason.to_owned()];
            match transfer {
                Some(transfer) => transfer.clone_into(&mut e.transfer_id),
                None => e.segment_end_reason = EndReason::Transferred as i32,
            }
        });
        *truth
            .sent_reasons
            .entry((paris_day(at), self.agent.to_owned(), reason.to_owned()))
            .or_default() += 1;
        *truth
            .dispositions
            .entry((
                self.queue.to_owned(),
                self.agent.to_owned(),
                reason.to_owned(),
            ))
            .or_default() += 1;
    }
}

/// What the exactness test expects, computed by a plain model from the generated story
/// itself (never from the events or the service's own rules).
#[derive(Default)]
struct Truth {
    /// Paris day → (created, closed).
    created_closed: BTreeMap<NaiveDate, (i64, i64)>,
    /// (day, agent) → (received, sent).
    reassignments: BTreeMap<(NaiveDate, String), (i64, i64)>,
    /// (day, sender, reason) → times the sender gave it for a transfer.
    sent_reasons: BTreeMap<(NaiveDate, String, String), i64>,
    /// (day, queue) → queue numbers.
    queues: BTreeMap<(NaiveDate, String), QueueTruth>,
    /// (queue, agent, reason) → segments.
    dispositions: BTreeMap<(String, String, String), i64>,
    /// (queue, status label) → conversations open at the end.
    open: BTreeMap<(String, String), i64>,
    /// (request time, kind, receiving agent, outcome) of every ledger line.
    ledger: Vec<(i64, i32, String, i32)>,
    /// (day, agent) → agent activity.
    activity: BTreeMap<(NaiveDate, String), ActivityTruth>,
    /// closing agent → the conversations it closed last.
    closed: BTreeMap<String, Vec<ClosedTruth>>,
}

/// A conversation's last close: time from creation and from the closing agent's
/// assignment, and whether it was one segment (no transfer taken) and no reopen.
#[derive(Clone, Copy, Debug)]
struct ClosedTruth {
    from_create: i64,
    from_assign: i64,
    resolved: bool,
}

/// Mean rounded half away from zero, median and p90 by nearest rank (1-based rank
/// ⌈p·n/100⌉), in microseconds: what the close-time report promises.
fn plain_summary(values: &[i64]) -> (i64, i64, i64) {
    let mut sorted = values.to_vec();
    sorted.sort();
    let n = sorted.len();
    let rank = |percent: usize| sorted[(percent * n).div_ceil(100).max(1) - 1];
    let mean = (values.iter().sum::<i64>() as f64 / n as f64).round() as i64;
    (mean, rank(50), rank(90))
}

/// One agent's day: microseconds in Available, Busy, Away, Do not disturb and RONA; units
/// used and available times microseconds while signed in; RONA and overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ActivityTruth {
    presence: [i64; 5],
    used: i64,
    available: i64,
    rona: i64,
    capacity_overrides: i64,
    presence_overrides: i64,
}

/// Adds `[from, to)` spent in `presence` (0 to 4 for Available to RONA, `None` offline)
/// with `used` of `total` units to each Paris day it covers, cutting at local midnights
/// found by asking chrono for the next day's midnight.
fn add_interval(
    activity: &mut BTreeMap<(NaiveDate, String), ActivityTruth>,
    agent: &str,
    presence: Option<usize>,
    (used, total): (i64, i64),
    (from, to): (i64, i64),
) {
    let Some(index) = presence else { return };
    let tz: chrono_tz::Tz = PARIS.parse().unwrap();
    let mut at = from;
    while at < to {
        let day = paris_day(at);
        let next = day.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap();
        let midnight = chrono::TimeZone::from_local_datetime(&tz, &next)
            .earliest()
            .unwrap()
            .timestamp_micros();
        let piece = midnight.min(to) - at;
        let entry = activity.entry((day, agent.to_owned())).or_default();
        entry.presence[index] += piece;
        entry.used += used * piece;
        entry.available += total * piece;
        at += piece;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct QueueTruth {
    offered: i64,
    accepted: i64,
    rejected: i64,
    rona: i64,
    withdrawn: i64,
    abandoned: i64,
    overflowed_in: i64,
    overflowed_out: i64,
    transferred_in: i64,
    transferred_out: i64,
    within_30s: i64,
    wait_micros: i64,
}

fn paris_day(micros: i64) -> NaiveDate {
    let tz: chrono_tz::Tz = PARIS.parse().unwrap();
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .with_timezone(&tz)
        .date_naive()
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Appends a queue-offer-kind routing event of TENANT to `routing`, for the caller to
/// complete.
fn routed<'a>(
    routing: &'a mut Vec<RoutingEvent>,
    event_type: RoutingEventType,
    at: i64,
    queue: &str,
    agent: &str,
    wait_start: i64,
    offer: &str,
) -> &'a mut RoutingEvent {
    let sequence = routing.len() as i64 + 1;
    routing.push(RoutingEvent {
        sequence,
        tenant_id: TENANT.to_owned(),
        event_type: event_type as i32,
        occur_time: Some(ts(&rfc3339(at))),
        agent_id: agent.to_owned(),
        queue_id: queue.to_owned(),
        offer_id: offer.to_owned(),
        wait_start_time: Some(ts(&rfc3339(wait_start))),
        offer_kind: OfferKind::Queue as i32,
        channel: Channel::Webchat as i32,
        ..RoutingEvent::default()
    });
    routing.last_mut().unwrap()
}

/// A deterministic generator, so that a failure replays.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random week of two queues and three agents around the switch to summer time in
/// Paris (2026-03-29): offers rejected, timed out, withdrawn and accepted, overflows,
/// transfers taken and refused, wrap-ups with one or two reasons, reopens, abandonments,
/// and each agent's presences, RONA, capacity and supervisors' overrides; written to both
/// logs the way the services write them, with the truth alongside.
fn random_history(seed: u64) -> (EventLog, Vec<RoutingEvent>, Truth) {
    use RoutingEventType as R;
    const SECOND: i64 = 1_000_000;
    let mut dice = Dice(seed);
    let mut log = EventLog::new();
    let mut routing = Vec::new();
    let mut truth = Truth::default();
    let agents = [A, B, C];
    let queues = [Q1, Q2];
    let reasons = [R1, R2];
    let base = common::micros("2026-03-26T00:00:00Z");
    for n in 0..300_u64 {
        let id = format!("{n:08x}-0000-4000-8000-{n:012x}");
        let mut at = base + dice.below(6 * 86_400) as i64 * SECOND;
        let mut queue = queues[dice.below(2) as usize].to_owned();
        let mut conv = log.create(TENANT, &id, Channel::Webchat, &queue, &rfc3339(at));
        truth.created_closed.entry(paris_day(at)).or_default().0 += 1;
        let wait_start = at;
        routed(
            &mut routing,
            R::WaitingEnqueued,
            at,
            &queue,
            "",
            wait_start,
            "",
        );
        if dice.chance(20) {
            at += (1 + dice.below(60)) as i64 * SECOND;
            let to = if queue == Q1 { Q2 } else { Q1 }.to_owned();
            routed(
                &mut routing,
                R::WaitingOverflowed,
                at,
                &to,
                "",
                wait_start,
                "",
            )
            .from_queue_id = queue.clone();
            let day = paris_day(at);
            truth
                .queues
                .entry((day, queue.clone()))
                .or_default()
                .overflowed_out += 1;
            truth
                .queues
                .entry((day, to.clone()))
                .or_default()
                .overflowed_in += 1;
            queue = to;
            conv.queue_id = queue.clone();
            log.push(&conv, EventType::QueueChanged, &rfc3339(at), |_| {});
        }
        // Offers that fail, then one accepted or, for an abandonment, one withdrawn.
        let mut owner: Option<&str> = None;
        // When the owner's segment began (its assignment).
        let mut owner_since = 0;
        let tries = dice.below(3);
        let abandoned = dice.chance(20);
        for attempt in 0..=tries {
            let agent = agents[dice.below(3) as usize];
            let offer = format!("offer-{n}-{attempt}");
            at += (1 + dice.below(20)) as i64 * SECOND;
            let offered_at = at;
            routed(
                &mut routing,
                R::OfferCreated,
                at,
                &queue,
                agent,
                wait_start,
                &offer,
            )
            .offer_create_time = Some(common::ts(&rfc3339(at)));
            truth
                .queues
                .entry((paris_day(at), queue.clone()))
                .or_default()
                .offered += 1;
            at += (1 + dice.below(40)) as i64 * SECOND;
            let last = attempt == tries;
            let (event_type, outcome) = match (last, abandoned, dice.chance(50)) {
                (true, false, _) => (R::OfferAccepted, AnswerOutcome::Accepted),
                (true, true, _) => (R::OfferWithdrawn, AnswerOutcome::Withdrawn),
                (false, _, true) => (R::OfferRejected, AnswerOutcome::Rejected),
                (false, _, false) => (R::OfferTimedOut, AnswerOutcome::TimedOut),
            };
            routed(
                &mut routing,
                event_type,
                at,
                &queue,
                agent,
                wait_start,
                &offer,
            )
            .offer_create_time = Some(common::ts(&rfc3339(offered_at)));
            truth.ledger.push((
                offered_at,
                LedgerEntryKind::QueueOffer as i32,
                agent.to_owned(),
                outcome as i32,
            ));
            let numbers = truth
                .queues
                .entry((paris_day(at), queue.clone()))
                .or_default();
            match outcome {
                AnswerOutcome::Accepted => {
                    numbers.accepted += 1;
                    numbers.wait_micros += at - wait_start;
                    if at - wait_start <= 30 * SECOND {
                        numbers.within_30s += 1;
                    }
                    log.assign(&conv, &rfc3339(at), agent, "");
                    owner = Some(agent);
                    owner_since = at;
                }
                AnswerOutcome::Rejected => numbers.rejected += 1,
                AnswerOutcome::TimedOut => numbers.rona += 1,
                _ => numbers.withdrawn += 1,
            }
        }
        let Some(mut owner) = owner else {
            at += (1 + dice.below(60)) as i64 * SECOND;
            log.close(&conv, &rfc3339(at), "");
            truth.created_closed.entry(paris_day(at)).or_default().1 += 1;
            truth
                .queues
                .entry((paris_day(at), queue.clone()))
                .or_default()
                .abandoned += 1;
            continue;
        };
        // A transfer to another agent, taken or refused (the conversation stays).
        let transferred = dice.chance(35);
        // Whether a transfer was taken: a declined one leaves first contact possible.
        let mut handed_over = false;
        if transferred {
            let to = agents.iter().copied().find(|a| *a != owner).unwrap();
            // Now and then to the agent in the other queue: a transfer out of this queue
            // and into that one, once taken.
            let to_queue = if dice.chance(30) {
                if queue == Q1 { Q2 } else { Q1 }.to_owned()
            } else {
                queue.clone()
            };
            let transfer = format!("{:08x}-1111-4111-8111-{n:012x}", n);
            at += (1 + dice.below(600)) as i64 * SECOND;
            let requested = at;
            // The sender's reasons, with the transfer (whether it is taken or not) or
            // later for the segment it ended.
            let given_with_transfer = dice.chance(30);
            let sender = Sender {
                queue: queue.clone(),
                agent: owner,
            };
            if given_with_transfer {
                let reason = reasons[dice.below(2) as usize];
                sender.gives((&mut log, &conv), &mut truth, reason, at, Some(&transfer));
            }
            let given_later = !given_with_transfer && dice.chance(40);
            log.push(&conv, EventType::TransferRequested, &rfc3339(at), |e| {
                e.actor_id = owner.to_owned();
                e.agent_id = owner.to_owned();
                e.transfer_id = transfer.clone();
                e.transfer_to_agent_id = to.to_owned();
                e.transfer_to_queue_id = to_queue.clone();
            });
            at += (1 + dice.below(30)) as i64 * SECOND;
            let taken = dice.chance(60);
            handed_over = taken;
            let outcome = if taken {
                AnswerOutcome::Accepted
            } else {
                AnswerOutcome::Rejected
            };
            log.push(&conv, EventType::TransferResolved, &rfc3339(at), |e| {
                e.transfer_id = transfer.clone();
                e.answer_outcome = outcome as i32;
                e.previous_agent_id = owner.to_owned();
                e.previous_queue_id = queue.clone();
                e.transfer_to_queue_id = to_queue.clone();
            });
            truth.ledger.push((
                requested,
                LedgerEntryKind::Transfer as i32,
                to.to_owned(),
                outcome as i32,
            ));
            if taken {
                let day = paris_day(at);
                if to_queue != queue {
                    truth
                        .queues
                        .entry((day, queue.clone()))
                        .or_default()
                        .transferred_out += 1;
                    truth
                        .queues
                        .entry((day, to_queue.clone()))
                        .or_default()
                        .transferred_in += 1;
                    queue = to_queue;
                    conv.queue_id = queue.clone();
                }
                log.assign(&conv, &rfc3339(at), to, owner);
                truth
                    .reassignments
                    .entry((day, to.to_owned()))
                    .or_default()
                    .0 += 1;
                truth
                    .reassignments
                    .entry((day, owner.to_owned()))
                    .or_default()
                    .1 += 1;
                if given_later {
                    let reason = reasons[dice.below(2) as usize];
                    let later = at + (1 + dice.below(120)) as i64 * SECOND;
                    sender.gives((&mut log, &conv), &mut truth, reason, later, None);
                }
                owner = to;
                owner_since = at;
            }
        }
        // Sometimes a status label; now and then the conversation is still open at the end.
        let mut label = "";
        if dice.chance(50) {
            label = LABELS[dice.below(2) as usize];
            at += (1 + dice.below(600)) as i64 * SECOND;
            log.push(&conv, EventType::StatusChanged, &rfc3339(at), |e| {
                e.status_label_id = label.to_owned();
            });
        }
        if dice.chance(10) {
            *truth
                .open
                .entry((queue.clone(), label.to_owned()))
                .or_default() += 1;
            continue;
        }
        // Wrap-up with one or two reasons, close; sometimes a reopen and a second close.
        let closes = if dice.chance(15) { 2 } else { 1 };
        for close in 0..closes {
            if close == 1 {
                at += (1 + dice.below(600)) as i64 * SECOND;
                log.reopen(&conv, &rfc3339(at));
                at += (1 + dice.below(60)) as i64 * SECOND;
                log.assign(&conv, &rfc3339(at), owner, "");
                owner_since = at;
            }
            at += (1 + dice.below(1_800)) as i64 * SECOND;
            let given: Vec<String> = reasons[..1 + dice.below(2) as usize]
                .iter()
                .map(|r| (*r).to_owned())
                .collect();
            log.push(&conv, EventType::WrapUpSubmitted, &rfc3339(at), |e| {
                e.agent_id = owner.to_owned();
                e.wrap_up_reason_ids = given.clone();
            });
            for reason in &given {
                *truth
                    .dispositions
                    .entry((queue.clone(), owner.to_owned(), reason.clone()))
                    .or_default() += 1;
            }
            log.close(&conv, &rfc3339(at), owner);
            truth.created_closed.entry(paris_day(at)).or_default().1 += 1;
        }
        // Close time and first contact count the last close, credited to its agent.
        truth
            .closed
            .entry(owner.to_owned())
            .or_default()
            .push(ClosedTruth {
                from_create: at - wait_start,
                from_assign: at - owner_since,
                resolved: !handed_over && closes == 1,
            });
    }
    // Each agent's week: presences set by the agent or a supervisor, RONA, capacity taken
    // and freed (over capacity once a supervisor assigns past it), ending wherever it is.
    let week_end = common::micros("2026-04-01T22:00:00Z");
    let presences = [
        Presence::Available,
        Presence::Busy,
        Presence::Away,
        Presence::DoNotDisturb,
        Presence::Rona,
    ];
    let mut stories = Vec::new();
    for agent in agents {
        let total = 2 + dice.below(3) as i32;
        let mut at = base + dice.below(3_600) as i64 * SECOND;
        let mut presence: Option<usize> = None;
        let mut used = 0;
        let mut since = at;
        let event = |at: i64, event_type: R, used: i32| RoutingEvent {
            tenant_id: TENANT.to_owned(),
            event_type: event_type as i32,
            occur_time: Some(ts(&rfc3339(at))),
            agent_id: agent.to_owned(),
            capacity_used: used,
            capacity_total: total,
            ..RoutingEvent::default()
        };
        stories.push(event(at, R::AgentProfileSet, 0));
        while at < base + 6 * 86_400 * SECOND {
            at += (1 + dice.below(3 * 3_600)) as i64 * SECOND;
            add_interval(
                &mut truth.activity,
                agent,
                presence,
                (i64::from(used), i64::from(total)),
                (since, at),
            );
            since = at;
            let day = paris_day(at);
            let roll = dice.below(100);
            if roll < 45 {
                let next = dice.below(5) as usize;
                let by_supervisor = dice.chance(20);
                let offline = next == 4;
                presence = if offline { None } else { Some(next) };
                stories.push(RoutingEvent {
                    presence: if offline {
                        Presence::Offline
                    } else {
                        presences[next]
                    } as i32,
                    presence_cause: if by_supervisor {
                        routing::PresenceCause::Supervisor
                    } else {
                        routing::PresenceCause::Agent
                    } as i32,
                    ..event(at, R::PresenceChanged, used)
                });
                if by_supervisor {
                    let entry = truth.activity.entry((day, agent.to_owned())).or_default();
                    entry.presence_overrides += 1;
                }
            } else if roll < 55 {
                presence = Some(4);
                stories.push(RoutingEvent {
                    presence: Presence::Rona as i32,
                    presence_cause: routing::PresenceCause::OfferTimedOut as i32,
                    ..event(at, R::PresenceChanged, used)
                });
                truth
                    .activity
                    .entry((day, agent.to_owned()))
                    .or_default()
                    .rona += 1;
            } else if roll < 80 {
                used += 1;
                let over = (used - total).clamp(0, 1);
                stories.push(RoutingEvent {
                    units_over_capacity: over,
                    ..event(at, R::CapacityReserved, used)
                });
                if over > 0 {
                    truth
                        .activity
                        .entry((day, agent.to_owned()))
                        .or_default()
                        .capacity_overrides += 1;
                }
            } else {
                used = (used - 1).max(0);
                stories.push(event(at, R::CapacityReleased, used));
            }
        }
        // Whatever the agent is in last is still held: counted to the week's end.
        add_interval(
            &mut truth.activity,
            agent,
            presence,
            (i64::from(used), i64::from(total)),
            (since, week_end),
        );
    }
    // Into one log in time order, as routing writes it.
    routing.extend(stories);
    routing.sort_by_key(|e| {
        let t = e.occur_time.as_ref().unwrap();
        (t.seconds, t.nanos)
    });
    for (index, event) in routing.iter_mut().enumerate() {
        event.sequence = index as i64 + 1;
    }
    truth
        .activity
        .retain(|_, day| *day != ActivityTruth::default());
    truth.ledger.sort();
    (log, routing, truth)
}

on_each_backend!(every_report_matches_a_plain_model_of_a_random_history_across_a_restart);
async fn every_report_matches_a_plain_model_of_a_random_history_across_a_restart(
    backend: &common::Backend,
) {
    let database_url = backend.url.clone();
    let (conversations, routing_log, truth) = random_history(2026);
    let (conversation_last, routing_last) =
        (conversations.last_sequence(), routing_log.len() as i64);
    // Half of each log, a stop, then the rest: nothing may be lost or counted twice.
    let conversation_half = conversations.entries[conversations.entries.len() / 2].log_sequence;
    let (fake, _, _) = start_fakes(
        &conversations,
        Script::HoldAfter(conversation_half),
        &routing_log,
        routing_last / 2,
    )
    .await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_source(
        &database_url,
        &reporting.url,
        ROUTING_EVENTS,
        routing_last / 2,
    )
    .await;
    wait_for_cursor(&database_url, &reporting.url, conversation_half).await;
    reporting.stop().await;
    fake.stop().await;
    let (fake, _, _) = start_fakes(
        &conversations,
        Script::HoldAfter(conversation_last),
        &routing_log,
        routing_last,
    )
    .await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_source(&database_url, &reporting.url, ROUTING_EVENTS, routing_last).await;
    wait_for_cursor(&database_url, &reporting.url, conversation_last).await;

    // The week in Paris, midnight to midnight, across the change to summer time.
    let week = filter("2026-03-25T23:00:00Z", "2026-04-01T22:00:00Z", PARIS);
    let day_of = |period: Option<Period>| {
        paris_day(common::micros(&rfc3339(
            period.unwrap().start_time.unwrap().seconds * 1_000_000,
        )))
    };
    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));

    let created_closed: BTreeMap<NaiveDate, (i64, i64)> =
        created_closed(&mut analyst, week.clone(), Granularity::Day)
            .await
            .into_iter()
            .filter(|r| r.created > 0 || r.closed > 0)
            .map(|r| (day_of(r.period), (r.created, r.closed)))
            .collect();
    assert_eq!(created_closed, truth.created_closed);

    let rows = reassignments(&mut analyst, week.clone(), Granularity::Day).await;
    assert!(
        rows.iter().all(|r| r.reassignments_received > 0
            || r.reassignments_sent > 0
            || !r.sent_reasons.is_empty()),
        "a row of nothing: {rows:?}"
    );
    let reassigned: BTreeMap<(NaiveDate, String), (i64, i64)> = rows
        .iter()
        .filter(|r| r.reassignments_received > 0 || r.reassignments_sent > 0)
        .map(|r| {
            (
                (day_of(r.period), r.agent_id.clone()),
                (r.reassignments_received, r.reassignments_sent),
            )
        })
        .collect();
    assert_eq!(reassigned, truth.reassignments);
    let sent_reasons: BTreeMap<(NaiveDate, String, String), i64> = rows
        .iter()
        .flat_map(|r| {
            r.sent_reasons.iter().map(|reason| {
                (
                    (
                        day_of(r.period),
                        r.agent_id.clone(),
                        reason.wrap_up_reason_id.clone(),
                    ),
                    reason.count,
                )
            })
        })
        .collect();
    assert!(!truth.sent_reasons.is_empty(), "the history gives reasons");
    assert_eq!(sent_reasons, truth.sent_reasons);

    let queues: BTreeMap<(NaiveDate, String), QueueTruth> =
        queue_metrics(&mut analyst, week.clone(), Granularity::Day, Some(30))
            .await
            .into_iter()
            .map(|r| {
                let asa = r.average_speed_of_answer.unwrap();
                (
                    (day_of(r.period), r.queue_id),
                    QueueTruth {
                        offered: r.offered,
                        accepted: r.accepted,
                        rejected: r.rejected,
                        rona: r.rona,
                        withdrawn: r.withdrawn,
                        abandoned: r.abandoned,
                        overflowed_in: r.overflowed_in,
                        overflowed_out: r.overflowed_out,
                        transferred_in: r.transferred_in,
                        transferred_out: r.transferred_out,
                        within_30s: r.answered_within_threshold,
                        // Compared as the average the service computes.
                        wait_micros: asa.seconds * 1_000_000 + i64::from(asa.nanos) / 1_000,
                    },
                )
            })
            .collect();
    let expected_queues: BTreeMap<_, _> = truth
        .queues
        .iter()
        .map(|(key, q)| {
            let average = if q.accepted == 0 {
                0
            } else {
                q.wait_micros / q.accepted
            };
            (
                key.clone(),
                QueueTruth {
                    wait_micros: average,
                    ..q.clone()
                },
            )
        })
        .collect();
    assert_eq!(queues, expected_queues);

    let dispositions: BTreeMap<(String, String, String), i64> = analyst
        .get_dispositions_report(GetDispositionsReportRequest {
            filter: Some(week.clone()),
            granularity: Granularity::Total as i32,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
        .into_iter()
        .map(|r| ((r.queue_id, r.agent_id, r.wrap_up_reason_id), r.segments))
        .collect();
    assert_eq!(dispositions, truth.dispositions);

    // Open now, whenever created (the filter names no range).
    let open: BTreeMap<(String, String), i64> = analyst
        .get_open_conversations_report(GetOpenConversationsReportRequest {
            filter: Some(ReportFilter {
                time_range: None,
                ..week.clone()
            }),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
        .into_iter()
        .map(|r| ((r.queue_id, r.status_label_id), r.open))
        .collect();
    assert!(
        !truth.open.is_empty(),
        "the history leaves conversations open"
    );
    assert_eq!(open, truth.open);

    let mut lines = Vec::new();
    let mut token = String::new();
    loop {
        let page = analyst
            .list_transfer_ledger(ListTransferLedgerRequest {
                filter: Some(week.clone()),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        lines.extend(page.entries.into_iter().map(|e| {
            let at = e.request_time.unwrap();
            (
                at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000,
                e.kind,
                e.to_agent_id,
                e.outcome,
            )
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    lines.sort();
    assert_eq!(lines, truth.ledger);

    let micros = |d: Option<prost_types::Duration>| {
        let d = d.unwrap();
        d.seconds * 1_000_000 + i64::from(d.nanos) / 1_000
    };
    let activity: BTreeMap<(NaiveDate, String), (ActivityTruth, f64)> = analyst
        .get_agent_activity_report(GetAgentActivityReportRequest {
            filter: Some(week.clone()),
            granularity: Granularity::Day as i32,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
        .into_iter()
        .map(|r| {
            let presence = [r.available, r.busy, r.away, r.do_not_disturb, r.rona].map(micros);
            assert_eq!(micros(r.signed_in), presence.iter().sum::<i64>());
            (
                (day_of(r.period), r.agent_id),
                (
                    ActivityTruth {
                        presence,
                        rona: r.rona_count,
                        capacity_overrides: r.capacity_overrides,
                        presence_overrides: r.presence_overrides,
                        ..ActivityTruth::default()
                    },
                    r.occupancy,
                ),
            )
        })
        .collect();
    let expected_activity: BTreeMap<_, _> = truth
        .activity
        .iter()
        .map(|(key, day)| {
            let occupancy = if day.available == 0 {
                0.0
            } else {
                day.used as f64 / day.available as f64
            };
            (
                key.clone(),
                (
                    ActivityTruth {
                        used: 0,
                        available: 0,
                        ..day.clone()
                    },
                    occupancy,
                ),
            )
        })
        .collect();
    assert_eq!(activity, expected_activity);

    // Close time and first contact resolution, per closing agent over the week.
    let micros_of = |d: &Option<prost_types::Duration>| micros(*d);
    let close_times: BTreeMap<String, (i64, [i64; 3], [i64; 3])> = analyst
        .get_close_time_report(GetCloseTimeReportRequest {
            filter: Some(week.clone()),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
        .into_iter()
        .map(|r| {
            (
                r.agent_id.clone(),
                (
                    r.closed,
                    [
                        &r.average_from_create,
                        &r.median_from_create,
                        &r.p90_from_create,
                    ]
                    .map(micros_of),
                    [
                        &r.average_from_assign,
                        &r.median_from_assign,
                        &r.p90_from_assign,
                    ]
                    .map(micros_of),
                ),
            )
        })
        .collect();
    let expected_close_times: BTreeMap<String, (i64, [i64; 3], [i64; 3])> = truth
        .closed
        .iter()
        .map(|(agent, closed)| {
            let from = |pick: fn(&ClosedTruth) -> i64| {
                let (mean, median, p90) =
                    plain_summary(&closed.iter().map(pick).collect::<Vec<_>>());
                [mean, median, p90]
            };
            (
                agent.clone(),
                (
                    closed.len() as i64,
                    from(|c| c.from_create),
                    from(|c| c.from_assign),
                ),
            )
        })
        .collect();
    assert_eq!(close_times, expected_close_times);

    let resolution: BTreeMap<String, (i64, i64)> = analyst
        .get_first_contact_resolution_report(GetFirstContactResolutionReportRequest {
            filter: Some(week.clone()),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
        .into_iter()
        .map(|r| (r.agent_id, (r.closed, r.resolved_first_contact)))
        .collect();
    let expected_resolution: BTreeMap<String, (i64, i64)> = truth
        .closed
        .iter()
        .map(|(agent, closed)| {
            let resolved = closed.iter().filter(|c| c.resolved).count() as i64;
            (agent.clone(), (closed.len() as i64, resolved))
        })
        .collect();
    assert_eq!(resolution, expected_resolution);

    reporting.stop().await;
    fake.stop().await;
}

/// A presence change of `agent` in TENANT, with the agent's capacity after it.
fn presence_event(
    sequence: i64,
    at: &str,
    agent_id: &str,
    presence: Presence,
    cause: routing::PresenceCause,
    used: i32,
    total: i32,
) -> RoutingEvent {
    RoutingEvent {
        sequence,
        tenant_id: TENANT.to_owned(),
        event_type: RoutingEventType::PresenceChanged as i32,
        occur_time: Some(ts(at)),
        agent_id: agent_id.to_owned(),
        presence: presence as i32,
        presence_cause: cause as i32,
        capacity_used: used,
        capacity_total: total,
        ..RoutingEvent::default()
    }
}

/// A capacity event of `agent` in TENANT, with the agent's capacity after it.
fn capacity_event(
    sequence: i64,
    event_type: RoutingEventType,
    at: &str,
    agent_id: &str,
    used: i32,
    total: i32,
) -> RoutingEvent {
    RoutingEvent {
        sequence,
        tenant_id: TENANT.to_owned(),
        event_type: event_type as i32,
        occur_time: Some(ts(at)),
        agent_id: agent_id.to_owned(),
        capacity_used: used,
        capacity_total: total,
        ..RoutingEvent::default()
    }
}

/// A's day on 03-02 (Paris, UTC+1), signed in 08:00 to 11:00 UTC with 4 units: Available,
/// 2 units taken at 08:30, RONA 09:00 to 09:10, Available again, Away set by a supervisor
/// at 10:00, the units freed at 10:30, offline at 11:00; then Available across Paris
/// midnight on 03-03 for an hour. B signs in at 12:00 with 1 unit and a supervisor gives
/// it two conversations at 12:15: B is still Available, over capacity, now.
fn activity_scenario() -> Vec<RoutingEvent> {
    use RoutingEventType::{AgentProfileSet, CapacityReleased, CapacityReserved};
    use routing::PresenceCause::{Agent, OfferTimedOut, Supervisor};
    vec![
        capacity_event(1, AgentProfileSet, "2026-03-02T07:00:00Z", A, 0, 4),
        presence_event(
            2,
            "2026-03-02T08:00:00Z",
            A,
            Presence::Available,
            Agent,
            0,
            4,
        ),
        capacity_event(3, CapacityReserved, "2026-03-02T08:30:00Z", A, 2, 4),
        presence_event(
            4,
            "2026-03-02T09:00:00Z",
            A,
            Presence::Rona,
            OfferTimedOut,
            2,
            4,
        ),
        presence_event(
            5,
            "2026-03-02T09:10:00Z",
            A,
            Presence::Available,
            Agent,
            2,
            4,
        ),
        presence_event(
            6,
            "2026-03-02T10:00:00Z",
            A,
            Presence::Away,
            Supervisor,
            2,
            4,
        ),
        capacity_event(7, CapacityReleased, "2026-03-02T10:30:00Z", A, 0, 4),
        presence_event(8, "2026-03-02T11:00:00Z", A, Presence::Offline, Agent, 0, 4),
        presence_event(
            9,
            "2026-03-02T12:00:00Z",
            B,
            Presence::Available,
            Agent,
            0,
            1,
        ),
        RoutingEvent {
            units_over_capacity: 1,
            ..capacity_event(10, CapacityReserved, "2026-03-02T12:15:00Z", B, 2, 1)
        },
        // Another tenant's agent with the same id.
        RoutingEvent {
            tenant_id: OTHER_TENANT.to_owned(),
            ..presence_event(
                11,
                "2026-03-02T12:00:00Z",
                A,
                Presence::Available,
                Agent,
                0,
                1,
            )
        },
        presence_event(
            12,
            "2026-03-03T22:30:00Z",
            A,
            Presence::Available,
            Agent,
            0,
            4,
        ),
        presence_event(
            13,
            "2026-03-03T23:30:00Z",
            A,
            Presence::Offline,
            Agent,
            0,
            4,
        ),
    ]
}

/// Minutes as a `Duration` (the service sets zero durations too).
fn minutes(minutes: i64) -> Option<prost_types::Duration> {
    secs(minutes * 60)
}

/// The ratio the service computes for occupancy: unit-microseconds over unit-microseconds.
fn ratio(used_unit_minutes: i64, available_unit_minutes: i64) -> f64 {
    (used_unit_minutes * 60_000_000) as f64 / (available_unit_minutes * 60_000_000) as f64
}

on_each_backend!(agent_activity_counts_presence_time_occupancy_rona_and_overrides);
async fn agent_activity_counts_presence_time_occupancy_rona_and_overrides(
    backend: &common::Backend,
) {
    let database_url = backend.url.clone();
    let conversations = EventLog::new();
    let routing_log = activity_scenario();
    let last = routing_log.last().unwrap().sequence;
    let (fake, _, _) = start_fakes(&conversations, Script::HoldAfter(0), &routing_log, last).await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_source(&database_url, &reporting.url, ROUTING_EVENTS, last).await;
    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));
    let activity = |filter: ReportFilter, granularity: Granularity| {
        let mut analyst = analyst.clone();
        async move {
            analyst
                .get_agent_activity_report(GetAgentActivityReportRequest {
                    filter: Some(filter),
                    granularity: granularity as i32,
                    ..Default::default()
                })
                .await
                .map(|response| response.into_inner().rows)
        }
    };
    let zero = || minutes(0);
    let row = |day: &str, agent: &str| AgentActivityRow {
        period: Some(start(day)),
        agent_id: agent.to_owned(),
        available: zero(),
        busy: zero(),
        away: zero(),
        do_not_disturb: zero(),
        rona: zero(),
        signed_in: zero(),
        ..AgentActivityRow::default()
    };
    let a_first_day = AgentActivityRow {
        available: minutes(110),
        away: minutes(60),
        rona: minutes(10),
        signed_in: minutes(180),
        // 2 units for 120 of 180 minutes with 4.
        occupancy: ratio(2 * 120, 4 * 180),
        rona_count: 1,
        presence_overrides: 1,
        ..row("2026-03-02T00:00:00+01:00", A)
    };
    // B: 12:00 to midnight Paris, 15 minutes with 0 of 1 unit then 2 of 1.
    let b_first_day = AgentActivityRow {
        available: minutes(660),
        signed_in: minutes(660),
        occupancy: ratio(2 * 645, 660),
        capacity_overrides: 1,
        ..row("2026-03-02T00:00:00+01:00", B)
    };
    let b_whole_day = |day: &str| AgentActivityRow {
        available: minutes(1440),
        signed_in: minutes(1440),
        occupancy: 2.0,
        ..row(day, B)
    };
    let half_hour = |day: &str| AgentActivityRow {
        available: minutes(30),
        signed_in: minutes(30),
        ..row(day, A)
    };
    let by_day = activity(paris(), Granularity::Day).await.unwrap();
    assert_eq!(
        by_day,
        vec![
            a_first_day.clone(),
            b_first_day,
            half_hour("2026-03-03T00:00:00+01:00"),
            b_whole_day("2026-03-03T00:00:00+01:00"),
            half_hour("2026-03-04T00:00:00+01:00"),
            b_whole_day("2026-03-04T00:00:00+01:00"),
            b_whole_day("2026-03-05T00:00:00+01:00"),
            b_whole_day("2026-03-06T00:00:00+01:00"),
        ]
    );
    // A range that cuts A's quarter hours: 08:45 to 09:05 UTC.
    let cut = filter("2026-03-02T08:45:00Z", "2026-03-02T09:05:00Z", PARIS);
    assert_eq!(
        activity(cut, Granularity::Total).await.unwrap(),
        vec![AgentActivityRow {
            available: minutes(15),
            rona: minutes(5),
            signed_in: minutes(20),
            occupancy: 0.5,
            rona_count: 1,
            ..row("2026-03-02T08:45:00Z", A)
        }]
    );
    // One agent over the whole range.
    let only_a = ReportFilter {
        agent_ids: vec![A.to_owned()],
        ..paris()
    };
    assert_eq!(
        activity(only_a, Granularity::Total).await.unwrap(),
        vec![AgentActivityRow {
            available: minutes(170),
            signed_in: minutes(240),
            occupancy: ratio(2 * 120, 4 * 240),
            ..AgentActivityRow {
                period: Some(start(START)),
                ..a_first_day.clone()
            }
        }]
    );
    // Presence is not divided by queue or channel: such filters are refused.
    let by_queue = ReportFilter {
        queue_ids: vec![Q1.to_owned()],
        ..paris()
    };
    assert_invalid(
        &activity(by_queue, Granularity::Day).await.unwrap_err(),
        "filter.queue_ids",
    );
    // The other tenant sees its own agent only.
    let mut other = client(&reporting.url, user(OTHER_TENANT, vec![Role::Analyst]));
    let theirs = other
        .get_agent_activity_report(GetAgentActivityReportRequest {
            filter: Some(filter(START, "2026-03-02T13:00:00Z", PARIS)),
            granularity: Granularity::Total as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(
        theirs
            .iter()
            .map(|r| (r.agent_id.as_str(), r.signed_in))
            .collect::<Vec<_>>(),
        vec![(A, minutes(60))]
    );

    // The CSV export has the same numbers (one agent: the test service exports 5 rows at
    // most).
    let (csv, _) = export(
        &mut analyst,
        ReportKind::AgentActivity,
        ReportFilter {
            agent_ids: vec![A.to_owned()],
            ..paris()
        },
        Granularity::Day,
    )
    .await
    .unwrap();
    let rows = parse_simple_csv(&csv);
    assert_eq!(
        rows[0],
        [
            "period_start",
            "day_of_week",
            "agent_id",
            "available_seconds",
            "busy_seconds",
            "away_seconds",
            "do_not_disturb_seconds",
            "rona_seconds",
            "signed_in_seconds",
            "occupancy",
            "rona_count",
            "capacity_overrides",
            "presence_overrides",
        ]
    );
    assert_eq!(
        rows[1],
        [
            "2026-03-02T00:00:00+01:00",
            "",
            A,
            "6600",
            "0",
            "3600",
            "0",
            "600",
            "10800",
            &ratio(240, 720).to_string(),
            "1",
            "0",
            "1",
        ]
    );
    assert_eq!(rows.len(), 4);

    reporting.stop().await;
    fake.stop().await;
}

on_each_backend!(open_conversations_count_per_queue_and_status_label);
async fn open_conversations_count_per_queue_and_status_label(backend: &common::Backend) {
    let mut log = scenario();
    let conv = |id: &str, channel: Channel, queue: &str, created: &str| common::Conv {
        tenant_id: TENANT.to_owned(),
        id: id.to_owned(),
        channel,
        queue_id: queue.to_owned(),
        created: created.to_owned(),
    };
    let label = |log: &mut EventLog, conv: &common::Conv, at: &str, label: &str| {
        log.push(conv, EventType::StatusChanged, at, |e| {
            label.clone_into(&mut e.status_label_id);
        });
    };
    // conv-4 (open in Q1) labelled, then labelled again; conv-9 (open in Q1) never;
    // conv-8 (closed in Q2) labelled, which keeps it closed; a new one open in Q2.
    let c4 = conv("conv-4", Channel::Webchat, Q1, "2026-03-04T12:00:00Z");
    label(&mut log, &c4, "2026-03-05T09:00:00Z", LABELS[0]);
    label(&mut log, &c4, "2026-03-05T09:10:00Z", LABELS[1]);
    let c8 = conv("conv-8", Channel::Sms, Q2, "2026-03-03T09:00:00Z");
    label(&mut log, &c8, "2026-03-05T09:20:00Z", LABELS[0]);
    let c10 = log.create(
        TENANT,
        "conv-10",
        Channel::Webchat,
        Q2,
        "2026-03-05T11:00:00Z",
    );
    label(&mut log, &c10, "2026-03-05T11:05:00Z", LABELS[0]);
    let (fake, _) = start_fake(&log, Script::HoldAfter(log.last_sequence())).await;
    let reporting = start_reporting_with(&backend.url, &fake.url, |config| {
        config.export_max_rows = 100;
    })
    .await;
    wait_for_cursor(&backend.url, &reporting.url, log.last_sequence()).await;
    let analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));
    let open = |filter: ReportFilter, page_size: i32, page_token: String| {
        let mut analyst = analyst.clone();
        async move {
            let response = analyst
                .get_open_conversations_report(GetOpenConversationsReportRequest {
                    filter: Some(filter),
                    page_size,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            let rows: Vec<(String, String, i64)> = response
                .rows
                .into_iter()
                .map(|r| (r.queue_id, r.status_label_id, r.open))
                .collect();
            (rows, response.next_page_token)
        }
    };
    let row = |queue: &str, label: &str, open: i64| (queue.to_owned(), label.to_owned(), open);
    let whenever = ReportFilter {
        time_range: None,
        ..paris()
    };
    let everything = vec![row(Q1, "", 1), row(Q1, LABELS[1], 1), row(Q2, LABELS[0], 1)];
    assert_eq!(open(whenever.clone(), 0, String::new()).await.0, everything);
    // A range keeps the conversations created in it; queues and channels filter.
    let paris_day = filter("2026-03-04T23:00:00Z", "2026-03-05T23:00:00Z", PARIS);
    assert_eq!(
        open(paris_day, 0, String::new()).await.0,
        vec![row(Q1, "", 1), row(Q2, LABELS[0], 1)]
    );
    let in_q2 = ReportFilter {
        queue_ids: vec![Q2.to_owned()],
        ..whenever.clone()
    };
    assert_eq!(
        open(in_q2, 0, String::new()).await.0,
        vec![row(Q2, LABELS[0], 1)]
    );
    let by_sms = ReportFilter {
        channels: vec![Channel::Sms as i32],
        ..whenever.clone()
    };
    assert_eq!(open(by_sms, 0, String::new()).await.0, vec![]);
    // A page at a time, the same rows.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let (rows, next) = open(whenever.clone(), 1, token).await;
        assert_eq!(rows.len(), 1);
        paged.extend(rows);
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(paged, everything);
    // Another tenant sees none of it.
    let mut other = client(&reporting.url, user(OTHER_TENANT, vec![Role::Analyst]));
    let theirs = other
        .get_open_conversations_report(GetOpenConversationsReportRequest {
            filter: Some(whenever.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert!(theirs.is_empty(), "{theirs:?}");
    // The CSV export, and the label in the per-conversation table.
    let (csv, _) = export(
        &mut analyst.clone(),
        ReportKind::OpenConversations,
        whenever.clone(),
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    assert_eq!(
        parse_simple_csv(&csv),
        vec![
            vec!["queue_id", "status_label_id", "open"],
            vec![Q1, "", "1"],
            vec![Q1, LABELS[1], "1"],
            vec![Q2, LABELS[0], "1"],
        ]
    );
    let (csv, _) = export(
        &mut analyst.clone(),
        ReportKind::Conversations,
        paris(),
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    let labels: Vec<(String, String)> = parse_simple_csv(&csv)[1..]
        .iter()
        .map(|r| (r[0].clone(), r[13].clone()))
        .filter(|(_, label)| !label.is_empty())
        .collect();
    assert_eq!(
        labels,
        vec![
            ("conv-8".to_owned(), LABELS[0].to_owned()),
            ("conv-4".to_owned(), LABELS[1].to_owned()),
            ("conv-10".to_owned(), LABELS[0].to_owned()),
        ]
    );
    reporting.stop().await;
    fake.stop().await;
}

on_each_backend!(the_conversation_table_exports_one_row_per_conversation);
async fn the_conversation_table_exports_one_row_per_conversation(backend: &common::Backend) {
    let database_url = backend.url.clone();
    let log = scenario();
    let (fake, _) = start_fake(&log, Script::HoldAfter(log.last_sequence())).await;
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_cursor(&database_url, &reporting.url, log.last_sequence()).await;
    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));

    // A's conversations (closed by A or owned by A now), created in the Paris week.
    let only_a = ReportFilter {
        agent_ids: vec![A.to_owned()],
        ..paris()
    };
    let (csv, _) = export(
        &mut analyst,
        ReportKind::Conversations,
        only_a,
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    let rows = parse_simple_csv(&csv);
    assert_eq!(
        rows[0],
        [
            "conversation_id",
            "channel",
            "queue_id",
            "program_id",
            "created_time",
            "closed_time",
            "closing_agent_id",
            "owner_agent_id",
            "segments",
            "transfers",
            "reopens",
            "close_time_seconds",
            "resolved_first_contact",
            "status_label_id",
        ]
    );
    // id, channel, queue, created, closed, closing agent, owner, segments, transfers,
    // reopens, close time, first contact.
    let summary: Vec<Vec<&str>> = rows[1..]
        .iter()
        .map(|r| {
            [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]
                .iter()
                .map(|&i| r[i].as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            vec![
                "conv-1",
                "WEBCHAT",
                Q1,
                "2026-03-02T10:00:00+01:00",
                "2026-03-02T10:11:00+01:00",
                A,
                A,
                "1",
                "0",
                "0",
                "660",
                "true"
            ],
            vec![
                "conv-7",
                "WEBCHAT",
                Q1,
                "2026-03-03T09:00:00+01:00",
                "2026-03-03T09:20:00+01:00",
                A,
                A,
                "1",
                "0",
                "0",
                "1200",
                "true"
            ],
            // The rejected transfer attempt: still resolved at first contact.
            vec![
                "conv-8",
                "SMS",
                Q2,
                "2026-03-03T10:00:00+01:00",
                "2026-03-03T11:30:00+01:00",
                A,
                A,
                "1",
                "1",
                "0",
                "5400",
                "true"
            ],
            // Still open, A owns it after a supervisor's reassignment from B.
            vec![
                "conv-9",
                "WEBCHAT",
                Q1,
                "2026-03-05T11:00:00+01:00",
                "",
                "",
                A,
                "2",
                "0",
                "0",
                "",
                ""
            ],
        ]
    );
    // conv-3 was closed, reopened and closed again: one row, with its reopen.
    let only_q2 = ReportFilter {
        queue_ids: vec![Q2.to_owned()],
        ..paris()
    };
    let (csv, _) = export(
        &mut analyst,
        ReportKind::Conversations,
        only_q2,
        Granularity::Unspecified,
    )
    .await
    .unwrap();
    let rows = parse_simple_csv(&csv);
    assert_eq!(
        rows[1..]
            .iter()
            .map(|r| (r[0].as_str(), r[10].as_str(), r[12].as_str()))
            .collect::<Vec<_>>(),
        vec![("conv-8", "0", "true"), ("conv-3", "1", "false")]
    );
    // The whole week is over the test service's limit of 5 rows: refused before any row.
    let status = export(
        &mut analyst,
        ReportKind::Conversations,
        paris(),
        Granularity::Unspecified,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("matched 8 rows"), "{status:?}");

    reporting.stop().await;
    fake.stop().await;
}
