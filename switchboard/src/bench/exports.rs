//! `exports`: the per-conversation table exported as CSV through ExportReport, against the
//! database's own CSV writer (`sqlite3 -csv`, or PostgreSQL `COPY ... TO STDOUT CSV`
//! through psql) producing the same rows from the same store in the same run.
//!
//! The table's rows are generated in SQL straight into reporting-svc's store (the export
//! reads `conversation_facts`; how they got there is the `reports` scenario's business).
//! reporting-svc serves in this process; the export's client counts the bytes it gets and
//! keeps none, as the baseline's reader does with the command's output.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::AssertSqlSafe;
use switchboard_proto::reporting::v1::export_report_response::Update;
use switchboard_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use switchboard_proto::reporting::v1::{ExportReportRequest, ReportFilter, ReportKind};
use switchboard_server_kit::server::ShutdownSignal;
use switchboard_server_kit::{Dialect, Identity, IdentityKey, PrincipalKind, Role, signed_channel};
use tokio::io::AsyncReadExt as _;

use super::Plan;
use super::proc_stats;
use super::report::{Better, Figure, ScenarioResult};
use super::scenarios::{self, Store};

const TENANT: &str = "0b6f2a4e-1d3c-4e5f-8a9b-0c1d2e3f4a5b";
/// The table's first creation time: 2026-05-01T00:00:00Z; the rows spread over 30 days.
const START: i64 = 1_777_593_600_000_000;
const SPAN: i64 = 30 * 86_400_000_000;

/// An id of `kind` numbered by the SQL expression `n`, as the dialect writes it.
fn id_sql(dialect: Dialect, kind: u32, n: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("printf('{kind:08x}-0000-4000-8000-%012x', {n})"),
        Dialect::Postgres => {
            format!("'{kind:08x}-0000-4000-8000-' || lpad(to_hex({n}), 12, '0')")
        }
    }
}

/// `rows` conversations created over [`SPAN`] from [`START`], one in ten still open, one
/// in seven transferred, one in thirteen reopened, 500 agents and 20 queues.
async fn fill(store: &reporting_svc::store::Store, rows: u64) -> anyhow::Result<()> {
    let db = store.db();
    let dialect = db.dialect;
    let step = (SPAN / rows.max(1) as i64).max(1);
    let created = format!("({START} + i * {step})");
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
         INSERT INTO conversation_facts (conversation_id, tenant_id, channel, queue_id, \
         program_id, created_at, closed_at, closing_agent_id, closing_segment_start, \
         owner_agent_id, owner_since, segments, transfers, reopens, last_log_sequence) \
         SELECT {id}, '{TENANT}', 1 + i % 4, {queue}, {program}, {created}, \
         CASE WHEN i % 10 = 0 THEN NULL ELSE {created} + (60 + i % 3600) * 1000000 END, \
         CASE WHEN i % 10 = 0 THEN NULL ELSE {agent} END, {created} + 5000000, {agent}, \
         {created} + 5000000, CASE WHEN i % 7 = 0 THEN 2 ELSE 1 END, \
         CASE WHEN i % 7 = 0 THEN 1 ELSE 0 END, CASE WHEN i % 13 = 0 THEN 1 ELSE 0 END, \
         i + 1 FROM n",
        last = rows.saturating_sub(1),
        id = id_sql(dialect, 1, "i"),
        queue = id_sql(dialect, 2, "i % 20"),
        program = id_sql(dialect, 7, "0"),
        agent = id_sql(dialect, 3, "i % 500"),
    );
    sqlx::query(AssertSqlSafe(sql))
        .execute(db.writer())
        .await
        .context("generating the conversation table")?;
    // Statistics, as autovacuum (or SQLite's ANALYZE) would have them for a table this big.
    sqlx::query("ANALYZE conversation_facts")
        .execute(db.writer())
        .await?;
    Ok(())
}

/// The same rows and columns as the export, for the database's CSV writer (times as
/// stored rather than as local RFC 3339 text).
fn baseline_sql() -> String {
    format!(
        "SELECT conversation_id, channel, queue_id, program_id, created_at, closed_at, \
         closing_agent_id, owner_agent_id, segments, transfers, reopens, \
         closed_at - created_at AS close_time, \
         CASE WHEN closed_at IS NULL THEN NULL \
         WHEN segments = 1 AND transfers = 0 AND reopens = 0 THEN 'true' ELSE 'false' END \
         AS resolved FROM conversation_facts WHERE tenant_id = '{TENANT}' \
         AND created_at >= {START} AND created_at < {end} ORDER BY created_at, conversation_id",
        end = START + SPAN
    )
}

/// One export's timings: first bytes, whole file, bytes, rows and memory growth.
struct Run {
    first_bytes: Duration,
    total: Duration,
    bytes: u64,
    rows: i64,
    rss_before_kib: u64,
    peak_kib: u64,
}

async fn export_once(
    client: &mut ReportingServiceClient<switchboard_server_kit::SignedChannel>,
) -> anyhow::Result<Run> {
    let rss_before = proc_stats::rss_kib();
    proc_stats::reset_peak_rss();
    let started = Instant::now();
    let mut stream = client
        .export_report(ExportReportRequest {
            kind: ReportKind::Conversations as i32,
            filter: Some(ReportFilter {
                time_range: Some(switchboard_proto::common::v1::TimeRange {
                    start_time: Some(timestamp(START)),
                    end_time: Some(timestamp(START + SPAN)),
                }),
                time_zone: "UTC".into(),
                ..ReportFilter::default()
            }),
            ..ExportReportRequest::default()
        })
        .await?
        .into_inner();
    let (mut first_bytes, mut bytes, mut rows) = (None, 0_u64, None);
    while let Some(message) = stream.message().await? {
        match message.update {
            Some(Update::Chunk(chunk)) => {
                first_bytes.get_or_insert_with(|| started.elapsed());
                bytes += chunk.csv_data.len() as u64;
            }
            Some(Update::End(end)) => rows = Some(end.total_rows),
            _ => {}
        }
    }
    let total = started.elapsed();
    Ok(Run {
        first_bytes: first_bytes.context("the export sent no chunk")?,
        total,
        bytes,
        rows: rows.context("the export did not end")?,
        rss_before_kib: rss_before,
        peak_kib: proc_stats::peak_rss_kib(),
    })
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros / 1_000_000,
        nanos: 0,
    }
}

/// The database's CSV writer producing the same rows, read through a pipe.
async fn baseline_once(database_url: &str, dialect: Dialect) -> anyhow::Result<Run> {
    let mut command = match dialect {
        Dialect::Sqlite => {
            let path = database_url
                .strip_prefix("sqlite://")
                .unwrap_or(database_url)
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned();
            let mut command = tokio::process::Command::new("sqlite3");
            command.args(["-csv", "-header", &path, &baseline_sql()]);
            command
        }
        Dialect::Postgres => {
            let mut command = tokio::process::Command::new("psql");
            command.args([
                database_url,
                "-X",
                "-q",
                "-c",
                &format!(
                    "COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)",
                    baseline_sql()
                ),
            ]);
            command
        }
    };
    let started = Instant::now();
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run the baseline ({command:?}): is it installed?"))?;
    let mut out = child.stdout.take().context("no stdout")?;
    let mut buffer = vec![0_u8; 64 * 1024];
    let (mut first_bytes, mut bytes, mut lines) = (None, 0_u64, 0_i64);
    loop {
        let n = out.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        first_bytes.get_or_insert_with(|| started.elapsed());
        bytes += n as u64;
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as i64;
    }
    let status = child.wait().await?;
    anyhow::ensure!(status.success(), "the baseline failed: {status}");
    Ok(Run {
        first_bytes: first_bytes.context("the baseline wrote nothing")?,
        total: started.elapsed(),
        bytes,
        rows: lines - 1,
        rss_before_kib: 0,
        peak_kib: 0,
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub(super) async fn exports(
    plan: &Plan,
    dir: &std::path::Path,
    store: Store<'_>,
) -> anyhow::Result<ScenarioResult> {
    let rows = plan.export_rows;
    let mut result = scenarios::scenario(
        "exports",
        store.name(),
        "the per-conversation table exported as CSV through ExportReport (reporting-svc in process, the client counting bytes), against the database's own CSV writer producing the same rows from the same store, alternating",
    );
    let url = match store {
        Store::Sqlite => format!("sqlite://{}/reporting.db", dir.display()),
        Store::Postgres(databases) => scenarios::create_database(databases, "exports").await?,
    };
    let opened = reporting_svc::store::Store::open(&url).await?;
    let dialect = opened.db().dialect;
    let filled = Instant::now();
    fill(&opened, rows).await?;
    let fill_s = filled.elapsed().as_secs_f64();
    opened.db().clone().close().await;

    let secret = uuid::Uuid::new_v4().simple().to_string();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    // No event log to follow: the consumers retry in the background, harmlessly.
    let nowhere = "http://127.0.0.1:9".to_owned();
    let config = reporting_svc::Config {
        listen: addr,
        metrics_listen: None,
        database_url: url.clone(),
        identity_secret: secret.clone(),
        conversation_url: nowhere.clone(),
        routing_url: nowhere,
        ..Default::default()
    };
    let shutdown = ShutdownSignal::new();
    let server = tokio::spawn(reporting_svc::serve(config, listener, shutdown.clone()));
    let outcome = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !crate::suite::serving(addr).await {
            anyhow::ensure!(Instant::now() < deadline, "reporting-svc did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let analyst = Identity {
            tenant_id: TENANT.to_owned(),
            tenant_ancestry: Vec::new(),
            principal_id: uuid::Uuid::new_v4().to_string(),
            principal_kind: PrincipalKind::User,
            display_name: "Bench analyst".into(),
            roles: vec![Role::Analyst],
            enabled_supervisor_actions: Vec::new(),
            time_zone: String::new(),
            reopen_window_secs: 0,
        };
        let key = IdentityKey::new(&secret)?;
        let mut client =
            ReportingServiceClient::new(signed_channel(&format!("http://{addr}"), key, analyst)?);
        // One unmeasured round each (caches warm), then alternating.
        export_once(&mut client).await?;
        baseline_once(&url, dialect).await?;
        let (mut exports, mut baselines) = (Vec::new(), Vec::new());
        for _ in 0..plan.export_rounds {
            exports.push(export_once(&mut client).await?);
            baselines.push(baseline_once(&url, dialect).await?);
        }
        anyhow::Ok((exports, baselines))
    }
    .await;
    shutdown.trigger();
    let _ = server.await;
    let (exports, baselines) = outcome?;
    for (run, baseline) in exports.iter().zip(&baselines) {
        anyhow::ensure!(
            run.rows == rows as i64 && baseline.rows == rows as i64,
            "expected {rows} rows, the export sent {} and the baseline {}",
            run.rows,
            baseline.rows
        );
    }

    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let first = median(exports.iter().map(|r| r.first_bytes).collect());
    let total = median(exports.iter().map(|r| r.total).collect());
    let base_first = median(baselines.iter().map(|r| r.first_bytes).collect());
    let base_total = median(baselines.iter().map(|r| r.total).collect());
    // The run whose peak grew the most over the RSS before it.
    let worst = exports
        .iter()
        .max_by_key(|r| r.peak_kib.saturating_sub(r.rss_before_kib))
        .context("no export ran")?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let baseline_name = match dialect {
        Dialect::Sqlite => "sqlite3 -csv",
        Dialect::Postgres => "psql COPY ... TO STDOUT CSV",
    };
    result.runs.push(serde_json::json!({
        "label": "per-conversation export, alternating with the baseline",
        "rows": rows,
        "generated_in_s": fill_s,
        "rounds": plan.export_rounds,
        "export": exports.iter().map(|r| serde_json::json!({
            "first_bytes_ms": ms(r.first_bytes), "total_ms": ms(r.total),
            "bytes": r.bytes, "rss_before_mib": mib(r.rss_before_kib),
            "peak_rss_mib": mib(r.peak_kib),
        })).collect::<Vec<_>>(),
        "baseline": baselines.iter().map(|r| serde_json::json!({
            "first_bytes_ms": ms(r.first_bytes), "total_ms": ms(r.total), "bytes": r.bytes,
        })).collect::<Vec<_>>(),
    }));
    result.figures.push(
        Figure::new(
            format!("{rows}-row CSV export, whole file (median)"),
            "ms",
            ms(total),
            format!("{baseline_name}, the same rows"),
            ms(base_total),
            Better::Lower,
        )
        .goal("<= 1.5x"),
    );
    result.figures.push(
        Figure::new(
            format!("{rows}-row CSV export, first bytes (median)"),
            "ms",
            ms(first),
            format!("{baseline_name}, first bytes"),
            ms(base_first),
            Better::Lower,
        )
        .goal("<= 300 ms"),
    );
    result.figures.push(
        Figure::new(
            format!("{rows}-row CSV export, peak RSS of the process (VmHWM)"),
            "MiB",
            mib(worst.peak_kib),
            "RSS just before the export",
            mib(worst.rss_before_kib),
            Better::Lower,
        )
        .goal("growth (the difference) <= 64 MiB"),
    );
    Ok(result)
}
