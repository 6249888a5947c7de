//! `switchboard.reporting.v1.ReportingService`: the reports, by API and as CSV.

use std::pin::Pin;

use futures::Stream;
use switchboard_proto::reporting::v1::reporting_service_server::ReportingService;
use switchboard_proto::reporting::v1::{
    CloseTimeRow, CreatedClosedRow, ExportReportRequest, ExportReportResponse,
    FirstContactResolutionRow, GetCloseTimeReportRequest, GetCloseTimeReportResponse,
    GetCreatedClosedReportRequest, GetCreatedClosedReportResponse,
    GetFirstContactResolutionReportRequest, GetFirstContactResolutionReportResponse,
    GetQueueMetricsReportRequest, GetQueueMetricsReportResponse, GetReassignmentsReportRequest,
    GetReassignmentsReportResponse, ListTransferLedgerRequest, ListTransferLedgerResponse,
    ReassignmentsRow, ReportFilter, ReportKind,
};
use switchboard_server_kit::identity_of;
use tonic::{Request, Response, Status};
use tracing::debug;

use super::filter::{ReportShape, Scope, authorize, granularity, scope};
use crate::domain::csv::{self, CHUNK_BYTES};
use crate::domain::period::Granularity;
use crate::domain::reports::{
    self, CloseTime, CreatedClosed, FirstContactResolution, Reassignments,
};
use crate::domain::stats::Summary;
use crate::error::Error;
use crate::store::Store;

/// The ReportingService implementation.
#[derive(Clone, Debug)]
pub struct ReportingApi {
    store: Store,
    export_limit: u64,
}

impl ReportingApi {
    /// Serves reports from `store`; CSV exports may have at most `export_limit` rows.
    pub fn new(store: Store, export_limit: u64) -> ReportingApi {
        ReportingApi {
            store,
            export_limit,
        }
    }

    async fn created_closed(&self, scope: &Scope) -> Result<Vec<CreatedClosed>, Error> {
        let query = scope.query();
        let created = self.store.created_counts(&query).await?;
        let closed = self.store.closed_counts(&query).await?;
        Ok(reports::created_closed(&scope.frame, &created, &closed))
    }

    async fn reassignments(&self, scope: &Scope) -> Result<Vec<Reassignments>, Error> {
        let counts = self.store.reassignment_counts(&scope.query()).await?;
        Ok(reports::reassignments(&scope.frame, &counts))
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

    /// The header and rows of an export of `kind`.
    async fn export_rows(
        &self,
        kind: ReportKind,
        tenant_id: String,
        filter: Option<&ReportFilter>,
        granularity: Granularity,
    ) -> Result<(&'static [&'static str], Vec<Vec<String>>), Error> {
        match kind {
            ReportKind::CreatedClosed => {
                let scope = scope(tenant_id, filter, granularity, ReportShape::Periods)?;
                let rows = self.created_closed(&scope).await?;
                Ok((
                    &["period", "created", "closed"],
                    rows.iter()
                        .map(|r| {
                            vec![
                                r.period.label(),
                                r.created.to_string(),
                                r.closed.to_string(),
                            ]
                        })
                        .collect(),
                ))
            }
            ReportKind::Reassignments => {
                let scope = scope(tenant_id, filter, granularity, ReportShape::Agents)?;
                let rows = self.reassignments(&scope).await?;
                Ok((
                    &["period", "agent_id", "reassignments_received"],
                    rows.iter()
                        .map(|r| vec![r.period.label(), r.agent_id.clone(), r.received.to_string()])
                        .collect(),
                ))
            }
            ReportKind::CloseTime => {
                let scope = scope(tenant_id, filter, Granularity::Total, ReportShape::Agents)?;
                let rows = self.close_time(&scope).await?;
                Ok((
                    &[
                        "agent_id",
                        "closed",
                        "average_from_create_seconds",
                        "median_from_create_seconds",
                        "p90_from_create_seconds",
                        "average_from_assign_seconds",
                        "median_from_assign_seconds",
                        "p90_from_assign_seconds",
                    ],
                    rows.iter().map(close_time_record).collect(),
                ))
            }
            ReportKind::FirstContactResolution => {
                let scope = scope(tenant_id, filter, Granularity::Total, ReportShape::Agents)?;
                let rows = self.first_contact_resolution(&scope).await?;
                Ok((
                    &["agent_id", "closed", "resolved_first_contact", "rate"],
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
            ReportKind::QueueMetrics => Err(Error::NotImplemented(
                "ReportingService/ExportReport of REPORT_KIND_QUEUE_METRICS",
            )),
            ReportKind::TransferLedger => Err(Error::NotImplemented(
                "ReportingService/ExportReport of REPORT_KIND_TRANSFER_LEDGER",
            )),
            ReportKind::Unspecified => Err(Error::invalid("kind", "is required")),
        }
    }
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

fn unimplemented(rpc: &'static str) -> Status {
    Error::NotImplemented(rpc).into()
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportReportResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ReportingService for ReportingApi {
    async fn get_created_closed_report(
        &self,
        request: Request<GetCreatedClosedReportRequest>,
    ) -> Result<Response<GetCreatedClosedReportResponse>, Status> {
        let tenant_id = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let granularity = granularity(request.granularity, "granularity")?;
        let scope = scope(
            tenant_id,
            request.filter.as_ref(),
            granularity,
            ReportShape::Periods,
        )?;
        debug!(tenant_id = %scope.tenant_id, "created-closed report");
        let rows = self.created_closed(&scope).await?;
        Ok(Response::new(GetCreatedClosedReportResponse {
            rows: rows
                .into_iter()
                .map(|r| CreatedClosedRow {
                    period: r.period.label(),
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
        let tenant_id = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let granularity = granularity(request.granularity, "granularity")?;
        let scope = scope(
            tenant_id,
            request.filter.as_ref(),
            granularity,
            ReportShape::Agents,
        )?;
        debug!(tenant_id = %scope.tenant_id, "reassignments report");
        let rows = self.reassignments(&scope).await?;
        Ok(Response::new(GetReassignmentsReportResponse {
            rows: rows
                .into_iter()
                .map(|r| ReassignmentsRow {
                    period: r.period.label(),
                    agent_id: r.agent_id,
                    reassignments_received: r.received,
                })
                .collect(),
        }))
    }

    async fn get_close_time_report(
        &self,
        request: Request<GetCloseTimeReportRequest>,
    ) -> Result<Response<GetCloseTimeReportResponse>, Status> {
        let tenant_id = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let scope = scope(
            tenant_id,
            request.filter.as_ref(),
            Granularity::Total,
            ReportShape::Agents,
        )?;
        debug!(tenant_id = %scope.tenant_id, "close-time report");
        let rows = self.close_time(&scope).await?;
        Ok(Response::new(GetCloseTimeReportResponse {
            rows: rows.into_iter().map(close_time_row).collect(),
        }))
    }

    async fn get_first_contact_resolution_report(
        &self,
        request: Request<GetFirstContactResolutionReportRequest>,
    ) -> Result<Response<GetFirstContactResolutionReportResponse>, Status> {
        let tenant_id = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let scope = scope(
            tenant_id,
            request.filter.as_ref(),
            Granularity::Total,
            ReportShape::Agents,
        )?;
        debug!(tenant_id = %scope.tenant_id, "first-contact-resolution report");
        let rows = self.first_contact_resolution(&scope).await?;
        Ok(Response::new(GetFirstContactResolutionReportResponse {
            rows: rows
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
        _request: Request<GetQueueMetricsReportRequest>,
    ) -> Result<Response<GetQueueMetricsReportResponse>, Status> {
        Err(unimplemented("ReportingService/GetQueueMetricsReport"))
    }

    async fn list_transfer_ledger(
        &self,
        _request: Request<ListTransferLedgerRequest>,
    ) -> Result<Response<ListTransferLedgerResponse>, Status> {
        Err(unimplemented("ReportingService/ListTransferLedger"))
    }

    type ExportReportStream = ExportStream;

    async fn export_report(
        &self,
        request: Request<ExportReportRequest>,
    ) -> Result<Response<Self::ExportReportStream>, Status> {
        let tenant_id = authorize(&identity_of(&request)?)?;
        let request = request.into_inner();
        let kind = ReportKind::try_from(request.kind)
            .map_err(|_| Error::invalid("kind", format!("unknown report kind {}", request.kind)))?;
        let granularity = granularity(request.granularity, "granularity")?;
        let (header, rows) = self
            .export_rows(kind, tenant_id, request.filter.as_ref(), granularity)
            .await?;
        let count = rows.len() as u64;
        if count > self.export_limit {
            return Err(Error::ExportTooLarge {
                rows: count,
                limit: self.export_limit,
            }
            .into());
        }
        debug!(kind = kind.as_str_name(), rows = count, "export");
        let chunks = csv::chunks(header, rows, CHUNK_BYTES).map(|chunk| {
            Ok(ExportReportResponse {
                csv_chunk: chunk.bytes,
                rows_so_far: chunk.rows_so_far,
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
