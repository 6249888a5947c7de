//! What reporting-svc reports about the run, asked through the gateway as the demo
//! supervisor (who also has the ANALYST role). Reports are folded from the event log in
//! the background, so the created-and-closed report is polled until it counts the run's
//! conversations (bounded); a report reporting-svc does not serve yet is skipped with a note.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_proto::common::v1::TimeRange;
use switchboard_proto::reporting::v1 as reporting;
use tonic::transport::Channel;

use super::CALL_TIMEOUT;
use super::progress::human_duration;
use crate::seed::Bearer;

/// Longest wait for the reports to count the run's conversations.
const CATCH_UP: Duration = Duration::from_secs(20);

/// The time range the reports cover: the run, with a second before and after.
#[derive(Clone, Debug)]
pub struct Window {
    /// Inclusive start.
    pub start: SystemTime,
    /// Exclusive end.
    pub end: SystemTime,
}

impl Window {
    /// The whole seconds around `start`..`end`, with a margin.
    pub fn around(start: SystemTime, end: SystemTime) -> Window {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Window {
            start: UNIX_EPOCH + Duration::from_secs(secs(start).saturating_sub(1)),
            end: UNIX_EPOCH + Duration::from_secs(secs(end) + 2),
        }
    }

    fn filter(&self, agent_ids: &[String]) -> reporting::ReportFilter {
        reporting::ReportFilter {
            time_range: Some(TimeRange {
                start_time: Some(self.start.into()),
                end_time: Some(self.end.into()),
            }),
            time_zone: "UTC".into(),
            agent_ids: agent_ids.to_vec(),
            ..Default::default()
        }
    }
}

/// What the reports show for the run's window.
#[derive(Clone, Debug, Default)]
pub struct Reports {
    /// Conversations created in the window (everyone's, not only the run's).
    pub created: Option<i64>,
    /// Conversations closed in the window.
    pub closed: Option<i64>,
    /// Whether the created-and-closed report counted the run's conversations in time.
    pub caught_up: bool,
    /// Close time by the simulated agents.
    pub close_time: Vec<reporting::CloseTimeRow>,
    /// First contact resolution by the simulated agents.
    pub first_contact: Vec<reporting::FirstContactResolutionRow>,
    /// Reassignments the simulated agents received.
    pub reassignments: Option<i64>,
    /// Queue metrics, when reporting-svc serves them.
    pub queue_metrics: Option<Vec<reporting::QueueMetricsRow>>,
    /// Reports skipped and why.
    pub notes: Vec<String>,
    /// Report queries that failed unexpectedly.
    pub errors: u64,
    /// The first of them.
    pub first_error: Option<String>,
}

impl Reports {
    fn failed(&mut self, rpc: &str, err: impl std::fmt::Display) {
        self.errors += 1;
        self.first_error
            .get_or_insert_with(|| format!("ReportingService/{rpc}: {err}"));
    }

    /// Keeps an answer; UNIMPLEMENTED becomes a note, anything else an error.
    fn answer<T>(
        &mut self,
        rpc: &str,
        what: &str,
        result: Result<Result<tonic::Response<T>, tonic::Status>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        match result {
            Ok(Ok(response)) => Some(response.into_inner()),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                self.notes
                    .push(format!("{what}: not implemented yet in reporting-svc"));
                None
            }
            Ok(Err(status)) => {
                self.failed(rpc, status);
                None
            }
            Err(_) => {
                self.failed(rpc, "no answer in time");
                None
            }
        }
    }
}

/// Asks every report about the window; waits (bounded) until the created-and-closed report
/// counts at least `created` and `closed` conversations.
pub async fn collect(
    channel: &Channel,
    auth: &Bearer,
    window: &Window,
    agents: &[(String, String)],
    created: u64,
    closed: u64,
) -> Reports {
    let mut client = reporting::reporting_service_client::ReportingServiceClient::with_interceptor(
        channel.clone(),
        auth.clone(),
    );
    let agent_ids: Vec<String> = agents.iter().map(|(id, _)| id.clone()).collect();
    let mut reports = Reports::default();
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let call = client.get_created_closed_report(reporting::GetCreatedClosedReportRequest {
            filter: Some(window.filter(&[])),
            granularity: reporting::Granularity::Total as i32,
            ..Default::default()
        });
        let Some(answer) = reports.answer(
            "GetCreatedClosedReport",
            "created and closed",
            tokio::time::timeout(CALL_TIMEOUT, call).await,
        ) else {
            break;
        };
        let (c, d) = answer
            .rows
            .iter()
            .fold((0, 0), |(c, d), row| (c + row.created, d + row.closed));
        reports.created = Some(c);
        reports.closed = Some(d);
        if c >= created as i64 && d >= closed as i64 {
            reports.caught_up = true;
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            reports.notes.push(format!(
                "the created-and-closed report had not counted every conversation of the run after {}",
                human_duration(CATCH_UP)
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let call = client.get_close_time_report(reporting::GetCloseTimeReportRequest {
        filter: Some(window.filter(&agent_ids)),
        ..Default::default()
    });
    if let Some(answer) = reports.answer(
        "GetCloseTimeReport",
        "close time",
        tokio::time::timeout(CALL_TIMEOUT, call).await,
    ) {
        reports.close_time = answer.rows;
    }
    let call = client.get_first_contact_resolution_report(
        reporting::GetFirstContactResolutionReportRequest {
            filter: Some(window.filter(&agent_ids)),
            ..Default::default()
        },
    );
    if let Some(answer) = reports.answer(
        "GetFirstContactResolutionReport",
        "first contact resolution",
        tokio::time::timeout(CALL_TIMEOUT, call).await,
    ) {
        reports.first_contact = answer.rows;
    }
    let call = client.get_reassignments_report(reporting::GetReassignmentsReportRequest {
        filter: Some(window.filter(&agent_ids)),
        granularity: reporting::Granularity::Total as i32,
        ..Default::default()
    });
    if let Some(answer) = reports.answer(
        "GetReassignmentsReport",
        "reassignments",
        tokio::time::timeout(CALL_TIMEOUT, call).await,
    ) {
        reports.reassignments = Some(answer.rows.iter().map(|r| r.reassignments_received).sum());
    }
    let call = client.get_queue_metrics_report(reporting::GetQueueMetricsReportRequest {
        filter: Some(window.filter(&[])),
        granularity: reporting::Granularity::Total as i32,
        ..Default::default()
    });
    if let Some(answer) = reports.answer(
        "GetQueueMetricsReport",
        "queue metrics (offered, accepted, RONA, speed of answer, service level)",
        tokio::time::timeout(CALL_TIMEOUT, call).await,
    ) {
        reports.queue_metrics = Some(answer.rows);
    }
    reports
        .notes
        .push("transfer ledger: not asked, the simulation makes no transfers yet".to_owned());
    reports
}

fn secs(d: Option<&prost_types::Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| {
            human_duration(Duration::new(
                d.seconds.max(0) as u64,
                d.nanos.max(0) as u32,
            ))
        },
    )
}

fn clock(t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Prints the reports' part of the summary.
pub fn print(
    out: &mut impl Write,
    reports: &Reports,
    agents: &[(String, String)],
    window: &Window,
) -> std::io::Result<()> {
    let name = |id: &str| {
        agents
            .iter()
            .find(|(a, _)| a == id)
            .map_or(id.to_owned(), |(_, n)| n.clone())
    };
    writeln!(
        out,
        "what the reports show ({}-{} UTC, every client's conversations in that window):",
        clock(window.start),
        clock(window.end)
    )?;
    if let (Some(created), Some(closed)) = (reports.created, reports.closed) {
        writeln!(out, "  created / closed     {created} / {closed}")?;
    }
    for row in &reports.close_time {
        writeln!(
            out,
            "  close time           {}: {} closed; from create avg {}, median {}, p90 {}; from accept avg {}",
            name(&row.agent_id),
            row.closed,
            secs(row.average_from_create.as_ref()),
            secs(row.median_from_create.as_ref()),
            secs(row.p90_from_create.as_ref()),
            secs(row.average_from_assign.as_ref()),
        )?;
    }
    for row in &reports.first_contact {
        writeln!(
            out,
            "  first contact        {}: {:.0}% resolved ({} of {})",
            name(&row.agent_id),
            row.rate * 100.0,
            row.resolved_first_contact,
            row.closed
        )?;
    }
    if let Some(reassignments) = reports.reassignments {
        writeln!(out, "  reassignments        {reassignments}")?;
    }
    for row in reports.queue_metrics.iter().flatten() {
        writeln!(
            out,
            "  queue {}  offered {}, accepted {}, RONA {}, speed of answer {}, service level {:.0}%",
            row.queue_id,
            row.offered,
            row.accepted,
            row.rona,
            secs(row.average_speed_of_answer.as_ref()),
            row.service_level * 100.0
        )?;
    }
    for note in &reports.notes {
        writeln!(out, "  ({note})")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_covers_the_run_in_whole_seconds() {
        let start = UNIX_EPOCH + Duration::from_millis(1_000_500);
        let end = UNIX_EPOCH + Duration::from_millis(1_060_700);
        let window = Window::around(start, end);
        assert_eq!(window.start, UNIX_EPOCH + Duration::from_secs(999));
        assert_eq!(window.end, UNIX_EPOCH + Duration::from_secs(1_062));
        assert!(window.start <= start && end < window.end);
    }
}
