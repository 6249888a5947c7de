//! `switchboard.reporting.v1.ReportingService`: the reports, by API and as CSV.
//!
//! Every report is computed whole for its range and then served a page at a time by row
//! key (see `domain::page`), so that pages agree with one unpaged call; the CSV export sends
//! every row.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use switchboard_proto::common::v1::{AnswerOutcome, Channel, TransferFallback};
use switchboard_proto::reporting::v1::export_report_response::{Chunk, End, Start, Update};
use switchboard_proto::reporting::v1::reporting_service_server::ReportingService;
use switchboard_proto::reporting::v1::{
    AgentActivityRow, CloseTimeRow, CreatedClosedRow, DayOfWeek, DispositionsRow,
    ExportReportRequest, ExportReportResponse, FirstContactResolutionRow,
    GetAgentActivityReportRequest, GetAgentActivityReportResponse, GetCloseTimeReportRequest,
    GetCloseTimeReportResponse, GetCreatedClosedReportRequest, GetCreatedClosedReportResponse,
    GetDispositionsReportRequest, GetDispositionsReportResponse,
    GetFirstContactResolutionReportRequest, GetFirstContactResolutionReportResponse,
    GetOpenConversationsReportRequest, GetOpenConversationsReportResponse,
    GetQueueMetricsReportRequest, GetQueueMetricsReportResponse, GetReassignmentsReportRequest,
    GetReassignmentsReportResponse, LedgerEntryKind, ListTransferLedgerRequest,
    ListTransferLedgerResponse, OpenConversationsRow, Period as ProtoPeriod, QueueMetricsRow,
    ReasonCount, ReassignmentsRow, ReportFilter, ReportKind, TransferLedgerEntry,
};
use switchboard_server_kit::identity_of;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status};
use tracing::debug;

use super::export::{EXPORT_PAGE_ROWS, Export};
use super::filter::{
    Caller, MAX_RESOLVED_IDS, ReportShape, Scope, authorize, granularity, narrow, scope,
    service_level_threshold, whole_history_unless_named,
};
use super::page_token;
use crate::directory::Directory;
use crate::domain::csv;
use crate::domain::facts::ConversationLine;
use crate::domain::ledger::{EntryKind, LedgerEntry};
use crate::domain::metrics::{Metric, wait_label_at_most};
use crate::domain::page::{Page, RowKey, page};
use crate::domain::period::{Granularity, Period, weekday_name};
use crate::domain::reports::{
    self, AgentActivity, CloseTime, CreatedClosed, Dispositions, FirstContactResolution, Frame,
    QueueMetrics, Reassignments,
};
use crate::domain::stats::Summary;
use crate::error::Error;
use crate::store::{ConversationQuery, GroupBy, LedgerQuery, Store};

/// Report names in page-token fingerprints: a token of one report is refused by another.
const CREATED_CLOSED: &str = "created_closed";
const REASSIGNMENTS: &str = "reassignments";
const CLOSE_TIME: &str = "close_time";
const FIRST_CONTACT_RESOLUTION: &str = "first_contact_resolution";
const QUEUE_METRICS: &str = "queue_metrics";
const LEDGER: &str = "transfer_ledger";
const DISPOSITIONS: &str = "dispositions";
const AGENT_ACTIVITY: &str = "agent_activity";
const OPEN_CONVERSATIONS: &str = "open_conversations";

/// CSV columns of the agent-activity report: times in decimal seconds.
const AGENT_ACTIVITY_HEADER: &[&str] = &[
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
];

/// CSV columns of the dispositions report.
const DISPOSITIONS_HEADER: &[&str] = &[
    "period_start",
    "day_of_week",
    "queue_id",
    "agent_id",
    "wrap_up_reason_id",
    "segments",
];

/// Most kinds a ledger request may name.
const MAX_LEDGER_KINDS: usize = 10;

/// CSV columns of the transfer ledger: the request time in RFC 3339 with the report zone's
/// offset; kind, outcome and fallback by name without their enum prefix; the time to
/// answer in decimal seconds, empty while pending.
const LEDGER_HEADER: &[&str] = &[
    "request_time",
    "kind",
    "conversation_id",
    "transfer_id",
    "offer_id",
    "from_user_id",
    "to_agent_id",
    "to_queue_id",
    "outcome",
    "fallback_applied",
    "time_to_answer_seconds",
    "ping_pong",
];

/// CSV columns of the period reports. A row's period is written for people, not as the
/// API's `Period` message: `period_start` is the local start of the period in RFC 3339 with
/// the zone's offset (`2026-03-02T00:00:00+01:00`; the range's start for TOTAL; empty for
/// day-of-week rows), and `day_of_week` is `MONDAY` to `SUNDAY` on day-of-week rows, empty
/// otherwise.
const CREATED_CLOSED_HEADER: &[&str] = &["period_start", "day_of_week", "created", "closed"];
const REASSIGNMENTS_HEADER: &[&str] = &[
    "period_start",
    "day_of_week",
    "agent_id",
    "reassignments_received",
    "reassignments_sent",
    "sent_reasons",
];
/// CSV columns of the queue-metrics report; the average speed of answer in decimal seconds.
const QUEUE_METRICS_HEADER: &[&str] = &[
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
];
/// CSV columns of the close-time report; durations in decimal seconds, the assignment
/// columns empty when no assignment time is known.
const CLOSE_TIME_HEADER: &[&str] = &[
    "agent_id",
    "closed",
    "average_from_create_seconds",
    "median_from_create_seconds",
    "p90_from_create_seconds",
    "average_from_assign_seconds",
    "median_from_assign_seconds",
    "p90_from_assign_seconds",
];
const FIRST_CONTACT_RESOLUTION_HEADER: &[&str] =
    &["agent_id", "closed", "resolved_first_contact", "rate"];

/// CSV columns of the per-conversation table: times in RFC 3339 with the report zone's
/// offset, the channel by name without its prefix, the close time in decimal seconds from
/// creation to the last close; close columns empty while open.
const CONVERSATIONS_HEADER: &[&str] = &[
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
];
/// CSV columns of the open-conversations report.
const OPEN_CONVERSATIONS_HEADER: &[&str] = &["queue_id", "status_label_id", "open"];

/// Exports read from a snapshot at once, each holding a read connection.
const LARGE_EXPORTS: usize = 2;

/// A page of the whole ledger of `scope` after `after`, for an export.
fn ledger_page<'a>(scope: &'a Scope, after: Option<(i64, &'a str)>) -> LedgerQuery<'a> {
    LedgerQuery {
        facts: scope.query(),
        conversation_id: None,
        kinds: &[],
        after,
        limit: Some(EXPORT_PAGE_ROWS),
    }
}

/// The ReportingService implementation.
#[derive(Clone, Debug)]
pub struct ReportingApi {
    store: Store,
    directory: Directory,
    export_limit: u64,
    large_exports: Arc<Semaphore>,
}

impl ReportingApi {
    /// Serves reports from `store`, asking `directory` for teams and tenants; CSV exports
    /// may have at most `export_limit` rows.
    pub fn new(store: Store, directory: Directory, export_limit: u64) -> ReportingApi {
        ReportingApi {
            store,
            directory,
            export_limit,
            large_exports: Arc::new(Semaphore::new(LARGE_EXPORTS)),
        }
    }

    /// `scope` with its child tenant reached and its teams and programs turned into the
    /// agents and queues they stand for. NOT_FOUND for a tenant that is not a descendant
    /// of the caller's and for a team that is not the tenant's; UNAVAILABLE when the
    /// directory cannot tell.
    async fn resolve(&self, mut scope: Scope) -> Result<Scope, Error> {
        if let Some(caller_tenant) = scope.reached_from.take() {
            let ancestors = self.directory.ancestry(&scope.tenant_id).await?;
            if !ancestors.contains(&caller_tenant) {
                return Err(Error::NotFound(format!(
                    "filter.tenant_id: tenant {} not found",
                    scope.tenant_id
                )));
            }
        }
        let team_ids = std::mem::take(&mut scope.team_ids);
        if !team_ids.is_empty() {
            let mut members = BTreeSet::new();
            for (index, team_id) in team_ids.iter().enumerate() {
                let Some(team) = self
                    .directory
                    .team_members(&scope.tenant_id, team_id)
                    .await?
                else {
                    return Err(Error::NotFound(format!(
                        "filter.team_ids[{index}]: team {team_id} not found"
                    )));
                };
                members.extend(team);
            }
            if members.len() > MAX_RESOLVED_IDS {
                return Err(Error::invalid(
                    "filter.team_ids",
                    format!(
                        "the teams have {} members, more than {MAX_RESOLVED_IDS}: name fewer \
                         teams, or agents instead",
                        members.len()
                    ),
                ));
            }
            scope.agent_ids = narrow(&scope.agent_ids, &members);
        }
        let program_ids = std::mem::take(&mut scope.program_ids);
        if !program_ids.is_empty() {
            let queues = self
                .store
                .program_queues(&scope.tenant_id, &program_ids)
                .await?;
            if queues.len() > MAX_RESOLVED_IDS {
                return Err(Error::invalid(
                    "filter.program_ids",
                    format!(
                        "the programs have {} queues, more than {MAX_RESOLVED_IDS}: name fewer \
                         programs, or queues instead",
                        queues.len()
                    ),
                ));
            }
            scope.queue_ids = narrow(&scope.queue_ids, &queues);
        }
        Ok(scope)
    }

    /// The checked and resolved scope of a report of `shape` by `granularity`.
    async fn scope(
        &self,
        caller: &Caller,
        filter: Option<&ReportFilter>,
        granularity: Granularity,
        shape: ReportShape,
    ) -> Result<Scope, Error> {
        self.resolve(scope(caller, filter, granularity, shape)?)
            .await
    }

    /// The resolved scope of a request for `report` and its page, `(page_size,
    /// page_token)`. The page token is checked against the request before anything is
    /// asked of the directory.
    async fn scoped(
        &self,
        caller: &Caller,
        report: &str,
        filter: Option<&ReportFilter>,
        granularity: Granularity,
        shape: ReportShape,
        (page_size, page_token): (i32, &str),
    ) -> Result<(Scope, PageRequest), Error> {
        let scope = scope(caller, filter, granularity, shape)?;
        let paging = PageRequest::new(report, &scope, page_size, page_token)?;
        Ok((self.resolve(scope).await?, paging))
    }

    async fn created_closed(&self, scope: &Scope) -> Result<Vec<CreatedClosed>, Error> {
        let query = scope.query();
        let created = self.store.created_counts(&query).await?;
        let closed = self.store.closed_counts(&query).await?;
        Ok(reports::created_closed(&scope.frame, &created, &closed))
    }

    async fn reassignments(&self, scope: &Scope) -> Result<Vec<Reassignments>, Error> {
        let buckets = scope.frame.bucket_starts();
        let group = GroupBy {
            buckets: buckets.as_deref(),
            agent: true,
            label: true,
            ..GroupBy::default()
        };
        let counts = self
            .store
            .metric_counts(&scope.query(), &reports::REASSIGNMENT_METRICS, group)
            .await?;
        Ok(reports::reassignments(&scope.frame, &counts))
    }

    /// Queue metrics with a service-level threshold of `threshold_seconds`.
    async fn queue_metrics(
        &self,
        scope: &Scope,
        threshold_seconds: i64,
    ) -> Result<Vec<(Period, QueueMetrics)>, Error> {
        let buckets = scope.frame.bucket_starts();
        let group = GroupBy {
            buckets: buckets.as_deref(),
            queue: true,
            label: true,
            ..GroupBy::default()
        };
        let counts = self
            .store
            .metric_counts(&scope.query(), &reports::QUEUE_METRICS, group)
            .await?;
        Ok(reports::queue_metrics(
            &scope.frame,
            &counts,
            &wait_label_at_most(threshold_seconds),
        ))
    }

    async fn dispositions(&self, scope: &Scope) -> Result<Vec<Dispositions>, Error> {
        let buckets = scope.frame.bucket_starts();
        let group = GroupBy {
            buckets: buckets.as_deref(),
            queue: true,
            agent: true,
            label: true,
        };
        let counts = self
            .store
            .metric_counts(&scope.query(), &[Metric::Disposition], group)
            .await?;
        Ok(reports::dispositions(&scope.frame, &counts))
    }

    /// Agent activity, the presences still held counted up to now.
    async fn agent_activity(&self, scope: &Scope) -> Result<Vec<(Period, AgentActivity)>, Error> {
        let buckets = scope.frame.bucket_starts();
        let group = GroupBy {
            buckets: buckets.as_deref(),
            agent: true,
            label: true,
            ..GroupBy::default()
        };
        let counts = self
            .store
            .metric_counts(&scope.query(), &reports::AGENT_ACTIVITY_METRICS, group)
            .await?;
        let open = self
            .store
            .agent_states(&scope.tenant_id, &scope.agent_ids)
            .await?;
        let now = chrono::Utc::now().timestamp_micros();
        Ok(reports::agent_activity(&scope.frame, &counts, &open, now))
    }

    async fn close_time(&self, scope: &Scope) -> Result<Vec<CloseTime>, Error> {
        let closed = self.store.closed_conversations(&scope.query()).await?;
        Ok(reports::close_time(&closed))
    }

    async fn first_contact_resolution(
        &self,
        scope: &Scope,
    ) -> Result<Vec<FirstContactResolution>, Error> {
        let closed = self.store.closed_conversations(&scope.query()).await?;
        Ok(reports::first_contact_resolution(&closed))
    }

    /// A permit to run an export read from a snapshot, which holds a database connection
    /// until it ends: a few at a time, so that exports never starve the reports.
    fn large_export(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.large_exports
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::ExportsBusy {
                running: LARGE_EXPORTS,
            })
    }

    /// What an export of `kind` sends.
    async fn export(
        &self,
        kind: ReportKind,
        caller: &Caller,
        filter: Option<&ReportFilter>,
        granularity: Granularity,
        threshold_seconds: i64,
    ) -> Result<Export, Error> {
        match kind {
            ReportKind::CreatedClosed => {
                let scope = self
                    .scope(caller, filter, granularity, ReportShape::Periods)
                    .await?;
                let rows = self.created_closed(&scope).await?;
                Ok(Export::whole(
                    CREATED_CLOSED_HEADER,
                    rows.iter()
                        .map(|r| {
                            let mut record = csv_period(&scope.frame, &r.period);
                            record.extend([r.created.to_string(), r.closed.to_string()]);
                            record
                        })
                        .collect(),
                ))
            }
            ReportKind::Reassignments => {
                let scope = self
                    .scope(caller, filter, granularity, ReportShape::Agents)
                    .await?;
                let rows = self.reassignments(&scope).await?;
                Ok(Export::whole(
                    REASSIGNMENTS_HEADER,
                    rows.iter()
                        .map(|r| {
                            let mut record = csv_period(&scope.frame, &r.period);
                            record.extend([
                                r.agent_id.clone(),
                                r.received.to_string(),
                                r.sent.to_string(),
                                csv::counts(&r.sent_reasons),
                            ]);
                            record
                        })
                        .collect(),
                ))
            }
            ReportKind::CloseTime => {
                let scope = self
                    .scope(caller, filter, Granularity::Total, ReportShape::Agents)
                    .await?;
                let rows = self.close_time(&scope).await?;
                Ok(Export::whole(
                    CLOSE_TIME_HEADER,
                    rows.iter().map(close_time_record).collect(),
                ))
            }
            ReportKind::FirstContactResolution => {
                let scope = self
                    .scope(caller, filter, Granularity::Total, ReportShape::Agents)
                    .await?;
                let rows = self.first_contact_resolution(&scope).await?;
                Ok(Export::whole(
                    FIRST_CONTACT_RESOLUTION_HEADER,
                    rows.iter()
                        .map(|r| {
                            vec![
                                r.agent_id.clone(),
                                r.closed.to_string(),
                                r.resolved.to_string(),
                                r.rate.to_string(),
                            ]
                        })
                        .collect(),
                ))
            }
            ReportKind::QueueMetrics => {
                let scope = self
                    .scope(caller, filter, granularity, ReportShape::Periods)
                    .await?;
                let rows = self.queue_metrics(&scope, threshold_seconds).await?;
                Ok(Export::whole(
                    QUEUE_METRICS_HEADER,
                    rows.iter()
                        .map(|(period, r)| {
                            let mut record = csv_period(&scope.frame, period);
                            record.extend([
                                r.queue_id.clone(),
                                r.offered.to_string(),
                                r.accepted.to_string(),
                                r.rejected.to_string(),
                                r.timed_out.to_string(),
                                r.withdrawn.to_string(),
                                r.abandoned.to_string(),
                                r.overflowed_in.to_string(),
                                r.overflowed_out.to_string(),
                                csv::seconds(r.average_speed_of_answer()),
                                r.answered_within.to_string(),
                                r.service_level().to_string(),
                                r.transferred_in.to_string(),
                                r.transferred_out.to_string(),
                            ]);
                            record
                        })
                        .collect(),
                ))
            }
            ReportKind::TransferLedger => {
                let scope = self
                    .scope(caller, filter, Granularity::Total, ReportShape::Agents)
                    .await?;
                let permit = self.large_export()?;
                let mut snapshot = self.store.snapshot().await?;
                // Counted first: an export over the limit reads nothing more.
                let total = snapshot.ledger_count(&ledger_page(&scope, None)).await?;
                let mut times = csv::LocalTimes::new(scope.frame.zone);
                Ok(Export::paged(
                    LEDGER_HEADER,
                    total,
                    (snapshot, scope, None::<(i64, String)>, permit),
                    |(mut snapshot, scope, after, permit)| async move {
                        let after = after.as_ref().map(|(at, id)| (*at, id.as_str()));
                        let entries = snapshot.ledger(&ledger_page(&scope, after)).await?;
                        let Some(last) = entries.last() else {
                            return Ok(None);
                        };
                        let next = Some((last.requested_at, last.entry_id.clone()));
                        Ok(Some((entries, (snapshot, scope, next, permit))))
                    },
                    move |writer, entries| {
                        Ok(entries
                            .iter()
                            .filter_map(|entry| {
                                writer
                                    .record(|record| write_ledger_entry(record, entry, &mut times))
                            })
                            .collect())
                    },
                ))
            }
            ReportKind::OpenConversations => {
                let filter = whole_history_unless_named(filter);
                let scope = self
                    .scope(
                        caller,
                        filter.as_ref(),
                        Granularity::Total,
                        ReportShape::Periods,
                    )
                    .await?;
                let rows = self.store.open_conversations(&scope.query()).await?;
                Ok(Export::whole(
                    OPEN_CONVERSATIONS_HEADER,
                    rows.into_iter()
                        .map(|r| vec![r.queue_id, r.status_label_id, r.open.to_string()])
                        .collect(),
                ))
            }
            ReportKind::Conversations => {
                let scope = self
                    .scope(caller, filter, Granularity::Total, ReportShape::Agents)
                    .await?;
                let permit = self.large_export()?;
                let mut snapshot = self.store.snapshot().await?;
                let total = snapshot.conversation_count(&scope.query()).await?;
                let mut times = csv::LocalTimes::new(scope.frame.zone);
                Ok(Export::paged(
                    CONVERSATIONS_HEADER,
                    total,
                    (snapshot, scope, None::<(i64, String)>, permit),
                    |(mut snapshot, scope, after, permit)| async move {
                        let query = ConversationQuery {
                            facts: scope.query(),
                            after: after.as_ref().map(|(at, id)| (*at, id.as_str())),
                            limit: EXPORT_PAGE_ROWS,
                        };
                        let Some(page) = snapshot.conversation_page(&query).await? else {
                            return Ok(None);
                        };
                        let (at, id) = page.last();
                        let next = Some((at, id.to_owned()));
                        Ok(Some((page, (snapshot, scope, next, permit))))
                    },
                    move |writer, page| {
                        Ok(page
                            .lines()?
                            .iter()
                            .filter_map(|line| {
                                writer.record(|record| write_conversation(record, line, &mut times))
                            })
                            .collect())
                    },
                ))
            }
            ReportKind::Dispositions => {
                let scope = self
                    .scope(caller, filter, granularity, ReportShape::Agents)
                    .await?;
                let rows = self.dispositions(&scope).await?;
                Ok(Export::whole(
                    DISPOSITIONS_HEADER,
                    rows.iter()
                        .map(|r| {
                            let mut record = csv_period(&scope.frame, &r.period);
                            record.extend([
                                r.queue_id.clone(),
                                r.agent_id.clone(),
                                r.reason_id.clone(),
                                r.segments.to_string(),
                            ]);
                            record
                        })
                        .collect(),
                ))
            }
            ReportKind::AgentActivity => {
                let scope = self
                    .scope(caller, filter, granularity, ReportShape::AgentsOnly)
                    .await?;
                let rows = self.agent_activity(&scope).await?;
                Ok(Export::whole(
                    AGENT_ACTIVITY_HEADER,
                    rows.iter()
                        .map(|(period, r)| {
                            let mut record = csv_period(&scope.frame, period);
                            record.push(r.agent_id.clone());
                            record.extend(r.presence_time.map(csv::seconds));
                            record.extend([
                                csv::seconds(r.signed_in()),
                                r.occupancy().to_string(),
                                r.rona.to_string(),
                                r.capacity_overrides.to_string(),
                                r.presence_overrides.to_string(),
                            ]);
                            record
                        })
                        .collect(),
                ))
            }
            ReportKind::Unspecified => Err(Error::invalid("kind", "is required")),
        }
    }
}

/// A report's page request, checked: where the page starts, how long it is, and what
/// a token for the next page must be bound to.
struct PageRequest {
    after: Option<RowKey>,
    size: usize,
    fingerprint: u64,
}

impl PageRequest {
    fn new(report: &str, scope: &Scope, page_size: i32, page_token: &str) -> Result<Self, Error> {
        let size = page_token::page_size(page_size)?;
        let fingerprint = scope.fingerprint(report);
        let after = page_token::decode(page_token, fingerprint)?;
        Ok(PageRequest {
            after,
            size,
            fingerprint,
        })
    }

    fn take<T>(&self, rows: Vec<T>, key: impl Fn(&T) -> RowKey) -> Page<T> {
        page(rows, key, self.after.as_ref(), self.size)
    }

    /// The `next_page_token` for `page`: empty on the last page.
    fn next_token<T>(&self, page: &Page<T>) -> String {
        page.next
            .as_ref()
            .map(|key| page_token::encode(self.fingerprint, key))
            .unwrap_or_default()
    }
}

fn period_key(period: &Period) -> RowKey {
    RowKey {
        period: period.ordinal(),
        agent_id: String::new(),
    }
}

fn agent_key(agent_id: &str) -> RowKey {
    RowKey {
        period: 0,
        agent_id: agent_id.to_owned(),
    }
}

/// The API's view of a period: when it starts, or which weekday it sums.
fn proto_period(frame: &Frame, period: &Period) -> ProtoPeriod {
    let day_of_week = period
        .weekday()
        .and_then(|day| DayOfWeek::try_from(day as i32 + 1).ok())
        .unwrap_or(DayOfWeek::Unspecified);
    ProtoPeriod {
        start_time: frame.period_start(period).map(timestamp),
        day_of_week: day_of_week as i32,
    }
}

/// The `period_start` and `day_of_week` CSV fields of a period.
fn csv_period(frame: &Frame, period: &Period) -> Vec<String> {
    vec![
        frame
            .period_start(period)
            .map(|start| csv::local_time(start, frame.zone))
            .unwrap_or_default(),
        period
            .weekday()
            .map(|day| weekday_name(day).to_owned())
            .unwrap_or_default(),
    ]
}

fn close_time_record(row: &CloseTime) -> Vec<String> {
    let mut record = vec![row.agent_id.clone(), row.from_create.count.to_string()];
    for summary in [Some(row.from_create), row.from_assign] {
        match summary {
            Some(s) => record.extend([s.average, s.median, s.p90].map(csv::seconds)),
            None => record.extend(std::iter::repeat_n(String::new(), 3)),
        }
    }
    record
}

/// An instant in microseconds since the epoch as a protobuf `Timestamp`.
fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// A duration in microseconds as a protobuf `Duration` (seconds and nanos of one sign).
fn duration(micros: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: micros / 1_000_000,
        nanos: ((micros % 1_000_000) * 1_000) as i32,
    }
}

fn close_time_row(row: CloseTime) -> CloseTimeRow {
    let from_assign =
        |pick: fn(&Summary) -> i64| row.from_assign.as_ref().map(|s| duration(pick(s)));
    CloseTimeRow {
        agent_id: row.agent_id.clone(),
        closed: row.from_create.count as i64,
        average_from_create: Some(duration(row.from_create.average)),
        median_from_create: Some(duration(row.from_create.median)),
        p90_from_create: Some(duration(row.from_create.p90)),
        average_from_assign: from_assign(|s| s.average),
        median_from_assign: from_assign(|s| s.median),
        p90_from_assign: from_assign(|s| s.p90),
    }
}

/// A ledger line as the API shows it.
fn ledger_entry(entry: LedgerEntry) -> TransferLedgerEntry {
    TransferLedgerEntry {
        time_to_answer: entry
            .answered_at
            .map(|answered| duration(answered - entry.requested_at)),
        request_time: Some(timestamp(entry.requested_at)),
        kind: entry.kind as i32,
        outcome: entry.outcome,
        fallback_applied: entry.fallback,
        ping_pong: entry.ping_pong,
        transfer_id: entry.transfer_id,
        conversation_id: entry.conversation_id,
        from_user_id: entry.from_user_id,
        to_agent_id: entry.to_agent_id,
        to_queue_id: entry.to_queue_id,
        offer_id: entry.offer_id,
    }
}

/// An enum value's name without its prefix (`LEDGER_ENTRY_KIND_TRANSFER` → `TRANSFER`);
/// empty for an unset value.
fn short<'a>(name: &'a str, prefix: &str) -> &'a str {
    match name.strip_prefix(prefix) {
        Some("UNSPECIFIED") | None => "",
        Some(short) => short,
    }
}

/// A line of the transfer ledger's CSV (see [`LEDGER_HEADER`]).
fn write_ledger_entry(
    record: &mut csv::Record<'_>,
    entry: &LedgerEntry,
    times: &mut csv::LocalTimes,
) {
    let kind = LedgerEntryKind::try_from(entry.kind as i32).unwrap_or_default();
    let outcome = AnswerOutcome::try_from(entry.outcome).unwrap_or_default();
    let fallback = TransferFallback::try_from(entry.fallback).unwrap_or_default();
    record.time(entry.requested_at, times);
    record.text(short(kind.as_str_name(), "LEDGER_ENTRY_KIND_"));
    record.text(&entry.conversation_id);
    record.text(&entry.transfer_id);
    record.text(&entry.offer_id);
    record.text(&entry.from_user_id);
    record.text(&entry.to_agent_id);
    record.text(&entry.to_queue_id);
    record.text(short(outcome.as_str_name(), "ANSWER_OUTCOME_"));
    record.text(short(fallback.as_str_name(), "TRANSFER_FALLBACK_"));
    match entry.answered_at {
        Some(answered) => record.seconds(answered - entry.requested_at),
        None => record.empty(),
    }
    record.text(if entry.ping_pong { "true" } else { "false" });
}

/// One message of an export stream.
fn message(update: Update) -> ExportReportResponse {
    ExportReportResponse {
        update: Some(update),
    }
}

/// An export message carrying a piece of the file.
fn chunk(chunk: csv::Chunk) -> ExportReportResponse {
    message(Update::Chunk(Chunk {
        csv_data: chunk.bytes,
        rows_so_far: chunk.rows_so_far,
    }))
}

/// A conversation's line of the per-conversation table (see [`CONVERSATIONS_HEADER`]).
fn write_conversation(
    record: &mut csv::Record<'_>,
    row: &ConversationLine<'_>,
    times: &mut csv::LocalTimes,
) {
    let channel = Channel::try_from(row.channel).unwrap_or_default();
    record.text(row.conversation_id);
    record.text(short(channel.as_str_name(), "CHANNEL_"));
    record.text(row.queue_id);
    record.text(row.program_id);
    record.time(row.created_at, times);
    match row.closed_at {
        Some(at) => record.time(at, times),
        None => record.empty(),
    }
    record.text(row.closing_agent_id.unwrap_or_default());
    record.text(row.owner_agent_id.unwrap_or_default());
    record.number(row.segments);
    record.number(row.transfers);
    record.number(row.reopens);
    match row.closed_at {
        Some(at) => record.seconds(at - row.created_at),
        None => record.empty(),
    }
    match row.resolved_first_contact() {
        Some(resolved) => record.text(if resolved { "true" } else { "false" }),
        None => record.empty(),
    }
    record.text(row.status_label_id);
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportReportResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ReportingService for ReportingApi {
    async fn get_created_closed_report(
        &self,
        request: Request<GetCreatedClosedReportRequest>,
    ) -> Result<Response<GetCreatedClosedReportResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let (scope, paging) = self
            .scoped(
                &caller,
                CREATED_CLOSED,
                request.filter.as_ref(),
                granularity(request.granularity, "granularity")?,
                ReportShape::Periods,
                (request.page_size, &request.page_token),
            )
            .await?;
        let rows = self.created_closed(&scope).await?;
        let page = paging.take(rows, |r| period_key(&r.period));
        debug!(tenant_id = %scope.tenant_id, rows = page.rows.len(), "created-closed report");
        Ok(Response::new(GetCreatedClosedReportResponse {
            next_page_token: paging.next_token(&page),
            rows: page
                .rows
                .into_iter()
                .map(|r| CreatedClosedRow {
                    period: Some(proto_period(&scope.frame, &r.period)),
                    created: r.created,
                    closed: r.closed,
                })
                .collect(),
        }))
    }

    async fn get_reassignments_report(
        &self,
        request: Request<GetReassignmentsReportRequest>,
    ) -> Result<Response<GetReassignmentsReportResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let (scope, paging) = self
            .scoped(
                &caller,
                REASSIGNMENTS,
                request.filter.as_ref(),
                granularity(request.granularity, "granularity")?,
                ReportShape::Agents,
                (request.page_size, &request.page_token),
            )
            .await?;
        let rows = self.reassignments(&scope).await?;
        let page = paging.take(rows, |r| RowKey {
            period: r.period.ordinal(),
            agent_id: r.agent_id.clone(),
        });
        debug!(tenant_id = %scope.tenant_id, rows = page.rows.len(), "reassignments report");
        Ok(Response::new(GetReassignmentsReportResponse {
            next_page_token: paging.next_token(&page),
            rows: page
                .rows
                .into_iter()
                .map(|r| ReassignmentsRow {
                    period: Some(proto_period(&scope.frame, &r.period)),
                    agent_id: r.agent_id,
                    reassignments_received: r.received,
                    reassignments_sent: r.sent,
                    sent_reasons: r
                        .sent_reasons
                        .into_iter()
                        .map(|(wrap_up_reason_id, count)| ReasonCount {
                            wrap_up_reason_id,
                            count,
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn get_close_time_report(
        &self,
        request: Request<GetCloseTimeReportRequest>,
    ) -> Result<Response<GetCloseTimeReportResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let (scope, paging) = self
            .scoped(
                &caller,
                CLOSE_TIME,
                request.filter.as_ref(),
                Granularity::Total,
                ReportShape::Agents,
                (request.page_size, &request.page_token),
            )
            .await?;
        let rows = self.close_time(&scope).await?;
        let page = paging.take(rows, |r| agent_key(&r.agent_id));
        debug!(tenant_id = %scope.tenant_id, rows = page.rows.len(), "close-time report");
        Ok(Response::new(GetCloseTimeReportResponse {
            next_page_token: paging.next_token(&page),
            rows: page.rows.into_iter().map(close_time_row).collect(),
        }))
    }

    async fn get_first_contact_resolution_report(
        &self,
        request: Request<GetFirstContactResolutionReportRequest>,
    ) -> Result<Response<GetFirstContactResolutionReportResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let (scope, paging) = self
            .scoped(
                &caller,
                FIRST_CONTACT_RESOLUTION,
                request.filter.as_ref(),
                Granularity::Total,
                ReportShape::Agents,
                (request.page_size, &request.page_token),
            )
            .await?;
        let rows = self.first_contact_resolution(&scope).await?;
        let page = paging.take(rows, |r| agent_key(&r.agent_id));
        debug!(
            tenant_id = %scope.tenant_id,
            rows = page.rows.len(),
            "first-contact-resolution report"
        );
        Ok(Response::new(GetFirstContactResolutionReportResponse {
            next_page_token: paging.next_token(&page),
            rows: page
                .rows
                .into_iter()
                .map(|r| FirstContactResolutionRow {
                    agent_id: r.agent_id,
                    closed: r.closed,
                    resolved_first_contact: r.resolved,
                    rate: r.rate,
                })
                .collect(),
        }))
    }

    async fn get_queue_metrics_report(
        &self,
        request: Request<GetQueueMetricsReportRequest>,
    ) -> Result<Response<GetQueueMetricsReportResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let threshold_seconds = service_level_threshold(
            request.service_level_threshold.as_ref(),
            "service_level_threshold",
        )?;
        // Values depend on the threshold: a token of another threshold is refused.
        let (scope, paging) = self
            .scoped(
                &caller,
                &format!("{QUEUE_METRICS}/{threshold_seconds}"),
                request.filter.as_ref(),
                granularity(request.granularity, "granularity")?,
                ReportShape::Periods,
                (request.page_size, &request.page_token),
            )
            .await?;
        let rows = self.queue_metrics(&scope, threshold_seconds).await?;
        let page = paging.take(rows, |(period, r)| RowKey {
            period: period.ordinal(),
            agent_id: r.queue_id.clone(),
        });
        debug!(tenant_id = %scope.tenant_id, rows = page.rows.len(), "queue-metrics report");
        Ok(Response::new(GetQueueMetricsReportResponse {
            next_page_token: paging.next_token(&page),
            rows: page
                .rows
                .into_iter()
                .map(|(period, r)| QueueMetricsRow {
                    period: Some(proto_period(&scope.frame, &period)),
                    offered: r.offered,
                    accepted: r.accepted,
                    rona: r.timed_out,
                    average_speed_of_answer: Some(duration(r.average_speed_of_answer())),
                    abandoned: r.abandoned,
                    service_level: r.service_level(),
                    rejected: r.rejected,
                    withdrawn: r.withdrawn,
                    overflowed_in: r.overflowed_in,
                    overflowed_out: r.overflowed_out,
                    transferred_in: r.transferred_in,
                    transferred_out: r.transferred_out,
                    answered_within_threshold: r.answered_within,
                    queue_id: r.queue_id,
                })
                .collect(),
        }))
    }

    async fn list_transfer_ledger(
        &self,
        request: Request<ListTransferLedgerRequest>,
    ) -> Result<Response<ListTransferLedgerResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        if request.kinds.len() > MAX_LEDGER_KINDS {
            return Err(Error::invalid(
                "kinds",
                format!(
                    "at most {MAX_LEDGER_KINDS} values, got {}",
                    request.kinds.len()
                ),
            )
            .into());
        }
        let kinds = request
            .kinds
            .iter()
            .enumerate()
            .map(|(index, &value)| {
                EntryKind::from_code(i64::from(value)).ok_or_else(|| {
                    Error::invalid(format!("kinds[{index}]"), format!("unknown kind {value}"))
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let conversation_id = if request.conversation_id.is_empty() {
            None
        } else {
            Some(
                uuid::Uuid::parse_str(&request.conversation_id)
                    .map_err(|_| Error::invalid("conversation_id", "must be a UUID"))?
                    .to_string(),
            )
        };
        let report = format!(
            "{LEDGER}/{}/{:?}",
            conversation_id.as_deref().unwrap_or_default(),
            kinds
        );
        let (scope, paging) = self
            .scoped(
                &caller,
                &report,
                request.filter.as_ref(),
                Granularity::Total,
                ReportShape::Agents,
                (request.page_size, &request.page_token),
            )
            .await?;
        let size = paging.size;
        let mut entries = self
            .store
            .ledger(&LedgerQuery {
                facts: scope.query(),
                conversation_id: conversation_id.as_deref(),
                kinds: &kinds,
                after: paging
                    .after
                    .as_ref()
                    .map(|key| (key.period, key.agent_id.as_str())),
                limit: Some(i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1)),
            })
            .await
            .map_err(Error::from)?;
        let next_page_token = if entries.len() > size {
            entries.truncate(size);
            entries
                .last()
                .map(|last| {
                    page_token::encode(
                        paging.fingerprint,
                        &RowKey {
                            period: last.requested_at,
                            agent_id: last.entry_id.clone(),
                        },
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        debug!(tenant_id = %scope.tenant_id, entries = entries.len(), "transfer ledger");
        Ok(Response::new(ListTransferLedgerResponse {
            entries: entries.into_iter().map(ledger_entry).collect(),
            next_page_token,
        }))
    }

    async fn get_dispositions_report(
        &self,
        request: Request<GetDispositionsReportRequest>,
    ) -> Result<Response<GetDispositionsReportResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let (scope, paging) = self
            .scoped(
                &caller,
                DISPOSITIONS,
                request.filter.as_ref(),
                granularity(request.granularity, "granularity")?,
                ReportShape::Agents,
                (request.page_size, &request.page_token),
            )
            .await?;
        let rows = self.dispositions(&scope).await?;
        let page = paging.take(rows, |r| RowKey {
            period: r.period.ordinal(),
            agent_id: r.key(),
        });
        debug!(tenant_id = %scope.tenant_id, rows = page.rows.len(), "dispositions report");
        Ok(Response::new(GetDispositionsReportResponse {
            next_page_token: paging.next_token(&page),
            rows: page
                .rows
                .into_iter()
                .map(|r| DispositionsRow {
                    period: Some(proto_period(&scope.frame, &r.period)),
                    queue_id: r.queue_id,
                    agent_id: r.agent_id,
                    wrap_up_reason_id: r.reason_id,
                    segments: r.segments,
                })
                .collect(),
        }))
    }

    async fn get_agent_activity_report(
        &self,
        request: Request<GetAgentActivityReportRequest>,
    ) -> Result<Response<GetAgentActivityReportResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let (scope, paging) = self
            .scoped(
                &caller,
                AGENT_ACTIVITY,
                request.filter.as_ref(),
                granularity(request.granularity, "granularity")?,
                ReportShape::AgentsOnly,
                (request.page_size, &request.page_token),
            )
            .await?;
        let rows = self.agent_activity(&scope).await?;
        let page = paging.take(rows, |(period, r)| RowKey {
            period: period.ordinal(),
            agent_id: r.agent_id.clone(),
        });
        debug!(tenant_id = %scope.tenant_id, rows = page.rows.len(), "agent activity report");
        Ok(Response::new(GetAgentActivityReportResponse {
            next_page_token: paging.next_token(&page),
            rows: page
                .rows
                .into_iter()
                .map(|(period, r)| {
                    let [available, busy, away, do_not_disturb, rona] =
                        r.presence_time.map(|micros| Some(duration(micros)));
                    AgentActivityRow {
                        period: Some(proto_period(&scope.frame, &period)),
                        signed_in: Some(duration(r.signed_in())),
                        occupancy: r.occupancy(),
                        rona_count: r.rona,
                        capacity_overrides: r.capacity_overrides,
                        presence_overrides: r.presence_overrides,
                        agent_id: r.agent_id,
                        available,
                        busy,
                        away,
                        do_not_disturb,
                        rona,
                    }
                })
                .collect(),
        }))
    }

    async fn get_open_conversations_report(
        &self,
        request: Request<GetOpenConversationsReportRequest>,
    ) -> Result<Response<GetOpenConversationsReportResponse>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let filter = whole_history_unless_named(request.filter.as_ref());
        let (scope, paging) = self
            .scoped(
                &caller,
                OPEN_CONVERSATIONS,
                filter.as_ref(),
                Granularity::Total,
                ReportShape::Periods,
                (request.page_size, &request.page_token),
            )
            .await?;
        let rows = self
            .store
            .open_conversations(&scope.query())
            .await
            .map_err(Error::from)?;
        let page = paging.take(rows, |r| RowKey {
            period: 0,
            agent_id: r.key(),
        });
        debug!(tenant_id = %scope.tenant_id, rows = page.rows.len(), "open-conversations report");
        Ok(Response::new(GetOpenConversationsReportResponse {
            next_page_token: paging.next_token(&page),
            rows: page
                .rows
                .into_iter()
                .map(|r| OpenConversationsRow {
                    queue_id: r.queue_id,
                    status_label_id: r.status_label_id,
                    open: r.open,
                })
                .collect(),
        }))
    }

    type ExportReportStream = ExportStream;

    /// Counts the rows first, so that the row limit is enforced before anything is sent and
    /// `start` can announce the total; then `start`, the chunks as pages of rows are read,
    /// and `end`.
    async fn export_report(
        &self,
        request: Request<ExportReportRequest>,
    ) -> Result<Response<Self::ExportReportStream>, Status> {
        let caller = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let kind = ReportKind::try_from(request.kind)
            .map_err(|_| Error::invalid("kind", format!("unknown report kind {}", request.kind)))?;
        let granularity = granularity(request.granularity, "granularity")?;
        let threshold_seconds = service_level_threshold(
            request.service_level_threshold.as_ref(),
            "service_level_threshold",
        )?;
        let Export { total, mut chunks } = self
            .export(
                kind,
                &caller,
                request.filter.as_ref(),
                granularity,
                threshold_seconds,
            )
            .await?;
        if total > self.export_limit {
            return Err(Error::ExportTooLarge {
                rows: total,
                limit: self.export_limit,
            }
            .into());
        }
        debug!(kind = kind.as_str_name(), rows = total, "export");
        let total_rows = i64::try_from(total).unwrap_or(i64::MAX);
        let messages = async_stream::try_stream! {
            yield message(Update::Start(Start { total_rows }));
            let mut rows = 0;
            while let Some(piece) = chunks.next().await {
                let piece = piece.map_err(Status::from)?;
                rows = piece.rows_so_far;
                yield chunk(piece);
            }
            if rows != total_rows {
                // The writer stopped early (a stalled client): no `end`, so the file is
                // known to be incomplete.
                Err(Status::aborted(format!(
                    "the export stopped after {rows} of {total_rows} rows: export again"
                )))?;
            }
            yield message(Update::End(End { total_rows: rows }));
        };
        Ok(Response::new(Box::pin(messages)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_show_their_start_or_their_weekday() {
        let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let frame = Frame {
            start: 1_772_406_000_000_000, // 2026-03-01T23:00:00Z
            end: 1_772_406_000_000_000 + 7 * 86_400_000_000,
            zone: paris,
            granularity: Granularity::Day,
        };
        let monday = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        assert_eq!(
            proto_period(&frame, &Period::Day(monday)),
            ProtoPeriod {
                start_time: Some(prost_types::Timestamp {
                    seconds: 1_772_406_000,
                    nanos: 0
                }),
                day_of_week: 0,
            }
        );
        assert_eq!(
            csv_period(&frame, &Period::Day(monday)),
            ["2026-03-02T00:00:00+01:00", ""]
        );
        assert_eq!(
            proto_period(&frame, &Period::DayOfWeek(6)),
            ProtoPeriod {
                start_time: None,
                day_of_week: DayOfWeek::Sunday as i32,
            }
        );
        assert_eq!(csv_period(&frame, &Period::DayOfWeek(6)), ["", "SUNDAY"]);
        assert_eq!(
            csv_period(&frame, &Period::Total),
            ["2026-03-02T00:00:00+01:00", ""]
        );
    }

    #[test]
    fn durations_keep_one_sign() {
        assert_eq!(
            duration(1_500_000),
            prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            duration(-1_500_000),
            prost_types::Duration {
                seconds: -1,
                nanos: -500_000_000
            }
        );
    }
}
