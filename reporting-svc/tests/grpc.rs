//! reporting-svc in process, fed by a scripted conversation-svc, called over gRPC with
//! signed identities exactly as the gateway would.

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{EventLog, ts};
use futures::{Stream, StreamExt};
use reporting_svc::store::{CONVERSATION_EVENTS, Store};
use reporting_svc::{Config, serve};
use switchboard_proto::common::v1::{Channel, TimeRange};
use switchboard_proto::conversation::internal::v1::conversation_internal_service_server::{
    ConversationInternalService, ConversationInternalServiceServer,
};
use switchboard_proto::conversation::internal::v1::{
    ApplyAssignmentRequest, ApplyAssignmentResponse, SubscribeRequest, SubscribeResponse,
};
use switchboard_proto::conversation::v1::ConversationEvent;
use switchboard_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use switchboard_proto::reporting::v1::{
    CloseTimeRow, CreatedClosedRow, ExportReportRequest, FirstContactResolutionRow,
    GetCloseTimeReportRequest, GetCreatedClosedReportRequest,
    GetFirstContactResolutionReportRequest, GetQueueMetricsReportRequest,
    GetReassignmentsReportRequest, Granularity, ListTransferLedgerRequest, ReassignmentsRow,
    ReportFilter, ReportKind,
};
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
    let mut log = EventLog::new();
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
    // A on SMS with a transfer attempt that was rejected: 90 and 60 min, not first contact.
    let c8 = log.create(TENANT, "conv-8", Channel::Sms, Q2, "2026-03-03T09:00:00Z");
    log.assign(&c8, "2026-03-03T09:30:00Z", A, "");
    log.transfer_requested(&c8, "2026-03-03T09:40:00Z", A);
    log.transfer_resolved(&c8, "2026-03-03T09:41:00Z", A);
    log.close(&c8, "2026-03-03T10:30:00Z", A);
    // Created late on 03-03 UTC, which is 03-04 in Paris; closed, reopened, closed
    // again by C: 90 min from create, 35 from C's second assignment.
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
    events: Arc<Vec<ConversationEvent>>,
    script: Script,
    subscriptions: Arc<Mutex<Vec<i64>>>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConversationInternalService for FakeConversations {
    async fn apply_assignment(
        &self,
        _request: Request<ApplyAssignmentRequest>,
    ) -> Result<Response<ApplyAssignmentResponse>, Status> {
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
        let event = |e: &ConversationEvent| {
            Ok(SubscribeResponse {
                event: Some(e.clone()),
            })
        };
        let stream: EventStream = match self.script {
            Script::FailOnceAfter(last) if first => {
                let sent: Vec<_> = self
                    .events
                    .iter()
                    .filter(|e| e.sequence > after && e.sequence <= last)
                    .map(event)
                    .collect();
                Box::pin(
                    futures::stream::iter(sent).chain(futures::stream::once(async {
                        Err(Status::unavailable("connection lost"))
                    })),
                )
            }
            Script::FailOnceAfter(_) => {
                let sent: Vec<_> = self.events.iter().map(event).collect();
                Box::pin(futures::stream::iter(sent).chain(futures::stream::pending()))
            }
            Script::HoldAfter(last) => {
                let sent: Vec<_> = self
                    .events
                    .iter()
                    .filter(|e| e.sequence > after && e.sequence <= last)
                    .map(event)
                    .collect();
                Box::pin(futures::stream::iter(sent).chain(futures::stream::pending()))
            }
        };
        Ok(Response::new(stream))
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
    let fake = FakeConversations {
        events: Arc::new(events.events.clone()),
        script,
        subscriptions: Arc::default(),
    };
    let subscriptions = fake.subscriptions.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = ShutdownSignal::new();
    let mut options = ServeOptions::new("conversation-svc-fake");
    options.identity = Some(key());
    options.drain_timeout = Duration::from_secs(1);
    let routes = Routes::new(ConversationInternalServiceServer::new(fake));
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
    )
}

async fn start_reporting(database_url: &str, conversation_url: &str) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = Config {
        listen: listener.local_addr().unwrap(),
        metrics_listen: None,
        database_url: database_url.to_owned(),
        identity_secret: SECRET.to_owned(),
        conversation_url: conversation_url.to_owned(),
        reconnect_initial_ms: 10,
        reconnect_max_ms: 100,
        export_max_rows: 5,
        ..Config::default()
    };
    let shutdown = ShutdownSignal::new();
    let task = tokio::spawn(serve(config, listener, shutdown.clone()));
    Running {
        shutdown,
        task,
        url,
    }
}

fn user(tenant_id: &str, roles: Vec<Role>) -> Identity {
    Identity {
        tenant_id: tenant_id.to_owned(),
        tenant_ancestry: Vec::new(),
        principal_id: "5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f".to_owned(),
        principal_kind: PrincipalKind::User,
        display_name: "Ana Lyst".to_owned(),
        roles,
        enabled_supervisor_actions: Vec::new(),
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

/// Waits until the service answers (so its migrations ran), then until its cursor
/// reaches `sequence`.
async fn wait_for_cursor(database_url: &str, reporting_url: &str, sequence: i64) {
    let mut analyst = client(reporting_url, user(TENANT, vec![Role::Analyst]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let request = || GetCreatedClosedReportRequest {
        filter: Some(paris()),
        granularity: Granularity::Total as i32,
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
        let cursor = store.cursor(CONVERSATION_EVENTS).await.unwrap();
        if cursor == sequence {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cursor stuck at {cursor}, expected {sequence}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cc(period: &str, created: i64, closed: i64) -> CreatedClosedRow {
    CreatedClosedRow {
        period: period.to_owned(),
        created,
        closed,
    }
}

fn ra(period: &str, agent_id: &str, received: i64) -> ReassignmentsRow {
    ReassignmentsRow {
        period: period.to_owned(),
        agent_id: agent_id.to_owned(),
        reassignments_received: received,
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
        })
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    let mut rows_so_far = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.csv_chunk);
        rows_so_far.push(chunk.rows_so_far);
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_match_the_event_log_after_a_dropped_stream() {
    let log = scenario();
    let last = log.last_sequence();
    let drop_after = log.events[log.events.len() / 2].sequence;
    let (fake, subscriptions) = start_fake(&log, Script::FailOnceAfter(drop_after)).await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("reporting.db").display());
    let reporting = start_reporting(&database_url, &fake.url).await;
    wait_for_cursor(&database_url, &reporting.url, last).await;

    // Resubscribed from its cursor after the failure; the replay from the start that
    // followed was skipped, not counted again (the numbers below would be off).
    let subscribed = subscriptions.lock().unwrap().clone();
    assert_eq!(subscribed[..2], [0, drop_after]);

    let mut analyst = client(&reporting.url, user(TENANT, vec![Role::Analyst]));

    // Created and closed, by Paris day, with empty days as zeros.
    let by_day = created_closed(&mut analyst, paris(), Granularity::Day).await;
    assert_eq!(
        by_day,
        vec![
            cc("2026-03-02", 2, 2),
            cc("2026-03-03", 2, 2),
            cc("2026-03-04", 2, 1),
            cc("2026-03-05", 2, 1),
            cc("2026-03-06", 0, 0),
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
            cc("2026-03-01", 0, 0),
            cc("2026-03-02", 2, 2),
            cc("2026-03-03", 3, 2),
            cc("2026-03-04", 1, 1),
            cc("2026-03-05", 2, 1),
            cc("2026-03-06", 0, 0),
        ]
    );
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::Week).await,
        vec![cc("2026-W10", 8, 6)]
    );
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::Month).await,
        vec![cc("2026-03", 8, 6)]
    );
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::Total).await,
        vec![cc("TOTAL", 8, 6)]
    );
    assert_eq!(
        created_closed(&mut analyst, paris(), Granularity::DayOfWeek).await,
        vec![
            cc("MONDAY", 2, 2),
            cc("TUESDAY", 2, 2),
            cc("WEDNESDAY", 2, 1),
            cc("THURSDAY", 2, 1),
            cc("FRIDAY", 0, 0),
        ]
    );
    let only_q1 = ReportFilter {
        queue_ids: vec![Q1.to_owned()],
        ..paris()
    };
    assert_eq!(
        created_closed(&mut analyst, only_q1.clone(), Granularity::Day).await,
        vec![
            cc("2026-03-02", 2, 2),
            cc("2026-03-03", 1, 1),
            cc("2026-03-04", 1, 0),
            cc("2026-03-05", 2, 1),
            cc("2026-03-06", 0, 0),
        ]
    );
    let only_sms = ReportFilter {
        channels: vec![Channel::Sms as i32],
        ..paris()
    };
    assert_eq!(
        created_closed(&mut analyst, only_sms.clone(), Granularity::Total).await,
        vec![cc("TOTAL", 2, 2)]
    );

    // Reassignments received: B from A on conv-2 and conv-4, A from B on conv-9; not
    // C's reassignment to itself, not the other tenant's.
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::Day).await,
        vec![
            ra("2026-03-02", B, 1),
            ra("2026-03-05", A, 1),
            ra("2026-03-05", B, 1),
        ]
    );
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::Week).await,
        vec![ra("2026-W10", A, 1), ra("2026-W10", B, 2)]
    );
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::DayOfWeek).await,
        vec![
            ra("MONDAY", B, 1),
            ra("THURSDAY", A, 1),
            ra("THURSDAY", B, 1)
        ]
    );
    let only_a = ReportFilter {
        agent_ids: vec![A.to_owned()],
        ..paris()
    };
    assert_eq!(
        reassignments(&mut analyst, only_a.clone(), Granularity::Total).await,
        vec![ra("TOTAL", A, 1)]
    );
    assert_eq!(
        reassignments(&mut analyst, only_sms.clone(), Granularity::Total).await,
        vec![]
    );

    // Close time, attributed to the closing agent.
    let close_time = analyst
        .get_close_time_report(GetCloseTimeReportRequest {
            filter: Some(paris()),
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
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(close_time_of_a.len(), 1);
    assert_eq!(close_time_of_a[0].agent_id, A);

    // First contact resolution: conv-1 and conv-7 only.
    let fcr = |agent_id: &str, closed: i64, resolved: i64, rate: f64| FirstContactResolutionRow {
        agent_id: agent_id.to_owned(),
        closed,
        resolved_first_contact: resolved,
        rate,
    };
    let rows = analyst
        .get_first_contact_resolution_report(GetFirstContactResolutionReportRequest {
            filter: Some(paris()),
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(
        rows,
        vec![
            fcr(A, 3, 2, 2.0 / 3.0),
            fcr(B, 1, 0, 0.0),
            fcr(C, 1, 0, 0.0)
        ]
    );
    let rows = analyst
        .get_first_contact_resolution_report(GetFirstContactResolutionReportRequest {
            filter: Some(only_sms.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(rows, vec![fcr(A, 1, 0, 0.0), fcr(C, 1, 0, 0.0)]);

    // The other tenant sees only its own conversation.
    let mut other = client(&reporting.url, user(OTHER_TENANT, vec![Role::Supervisor]));
    assert_eq!(
        created_closed(&mut other, paris(), Granularity::Total).await,
        vec![cc("TOTAL", 1, 1)]
    );
    assert_eq!(
        reassignments(&mut other, paris(), Granularity::Total).await,
        vec![ra("TOTAL", B, 1)]
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
    let records = parse_simple_csv(&csv);
    assert_eq!(records[0], ["period", "created", "closed"]);
    let parsed: Vec<CreatedClosedRow> = records[1..]
        .iter()
        .map(|r| cc(&r[0], r[1].parse().unwrap(), r[2].parse().unwrap()))
        .collect();
    assert_eq!(parsed, by_day);

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
            vec!["period", "agent_id", "reassignments_received"],
            vec!["2026-W10", A, "1"],
            vec!["2026-W10", B, "2"],
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
            vec![A, "1", "0", "0"],
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

    reporting.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_stored_cursor() {
    let log = scenario();
    let last = log.last_sequence();
    let half = log.events[log.events.len() / 3].sequence;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("reporting.db").display());

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
        vec![cc("TOTAL", 8, 6)]
    );
    assert_eq!(
        reassignments(&mut analyst, paris(), Granularity::Total).await,
        vec![ra("TOTAL", A, 1), ra("TOTAL", B, 2)]
    );
    reporting.stop().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_why() {
    let log = EventLog::new();
    let (fake, _) = start_fake(&log, Script::HoldAfter(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("reporting.db").display());
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
            })
            .await
            .is_ok()
    );
    let status = analyst
        .get_close_time_report(GetCloseTimeReportRequest {
            filter: Some(filter(START, END, "Nowhere/Special")),
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
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "filter.team_ids");
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
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Routing's reports are not served yet.
    let status = analyst
        .get_queue_metrics_report(GetQueueMetricsReportRequest {
            filter: Some(paris()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "NOT_IMPLEMENTED"
    );
    let status = analyst
        .list_transfer_ledger(ListTransferLedgerRequest {
            filter: Some(paris()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let status = export(
        &mut analyst,
        ReportKind::QueueMetrics,
        paris(),
        Granularity::Day,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

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
