//! `switchboard bench`: the project's benchmark command (issue 7).
//!
//! Every figure is a ratio against a baseline measured in the same run, because the
//! machines are shared and noisy. Each scenario starts what it measures itself in this
//! process (a bare tonic server, a bare proxy, or the whole suite on a fresh data
//! directory), on loopback only, and every run is bounded in calls and in time.
//!
//! The load generator ([`load`]) runs in the same process and on the same tokio runtime
//! as the servers: CPU per call and peak memory ([`proc_stats`]) are the process's, client
//! included, and client and servers share the cores. Ratios against a baseline measured
//! the same way are what to compare across changes, not the absolute numbers.

mod exports;
mod flow;
mod intake;
pub mod load;
pub mod proc_stats;
pub mod report;
mod reports;
mod routing;
mod scenarios;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchboard_server_kit::testing::ScratchDatabases;

pub use report::{Better, Figure, ScenarioResult};

/// Options of `switchboard bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A smoke run of a few seconds with tiny counts (what the tests run); the figures
    /// are not meant to be quoted.
    #[arg(long)]
    pub quick: bool,
    /// Run only the scenarios whose name contains this (repeatable). Scenarios:
    /// grpc-ceiling, bare-proxy, gateway-health, gateway-read, create-conversation,
    /// idle-streams, offer-latency, backlog-isolation, lifecycle, outbox-lag, routing-scale,
    /// routing-rules, offer-expiry, routing-replicas, reports, intake, exports.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Also write the machine-readable summary (JSON) to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Parent of the fresh per-scenario data directories (default: a new directory under
    /// the system's temporary directory, deleted at the end).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the data directories, and the PostgreSQL databases (`bench_…`), after the run.
    #[arg(long)]
    pub keep_data: bool,
    /// Calls in flight in the closed-loop (maximum throughput) runs.
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// Log filter for the services' logs on stderr (tracing EnvFilter syntax).
    #[arg(long, default_value = "error")]
    pub log_filter: String,
    /// Conversations to pile up in the unserved queue of backlog-isolation (default
    /// 10,000 full, 50 quick); it may take a second of creating per ~700, plus half again.
    #[arg(long, value_name = "N")]
    pub backlog: Option<u64>,
    /// Events of the longer history of the reports scenario (default 10,000,000 full,
    /// 20,000 quick); the shorter one has a tenth.
    #[arg(long, value_name = "N")]
    pub report_events: Option<u64>,
    /// Events of conversation-svc's log that the intake scenario's reporting-svc catches
    /// up on (default 1,000,000 full, 3,000 quick).
    #[arg(long, value_name = "N")]
    pub intake_events: Option<u64>,
    /// Rows of the exports scenario's per-conversation table (default 1,000,000 full,
    /// 2,000 quick; at most 1,000,000, the export limit).
    #[arg(long, value_name = "N")]
    pub export_rows: Option<u64>,
}

/// Counts and durations of one benchmark mode.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// Calls in flight in the closed-loop runs.
    pub in_flight: usize,
    /// Unrecorded calls before the first measured run of each target.
    pub warm_up_calls: u64,
    /// Closed-loop run: at most this many calls…
    pub closed_calls: u64,
    /// …and at most this long.
    pub closed_time: Duration,
    /// Open-loop run length (at about half of the measured maximum rate).
    pub open_time: Duration,
    /// Most calls outstanding in an open-loop run (later ones wait, and their wait counts).
    pub open_max_in_flight: usize,
    /// Runs per side, alternating baseline and subject. Closed loop keeps the best round
    /// (interference on a shared machine only slows runs down); open loop keeps the round
    /// with the median p99 (a stall of the system under test is never picked away).
    pub rounds: usize,
    /// Offer streams held open in the idle-streams scenario.
    pub idle_streams: usize,
    /// Agents set up for the routing-flow scenarios, in steps on one suite (offer-latency
    /// measures at each; backlog-isolation and lifecycle use the first). A later step is
    /// skipped when the first one's pace says its set-up would take over a minute.
    pub flow_agents: Vec<usize>,
    /// Offered create rates (per second) of the created -> offered runs; the highest also
    /// serves backlog-isolation.
    pub flow_rates: Vec<f64>,
    /// Length of one created -> offered run.
    pub flow_time: Duration,
    /// Conversations created into the queue no agent serves in backlog-isolation…
    pub backlog: u64,
    /// …within at most this long.
    pub backlog_time: Duration,
    /// Offered create rates (per second) of the outbox-lag runs (each `flow_time` long).
    pub outbox_rates: Vec<f64>,
    /// Available agents in the queue of routing-scale, in steps on one routing-svc; every
    /// later step is compared with the first.
    pub routing_agents: Vec<usize>,
    /// Conversations held in a queue and released at once in routing-scale and
    /// routing-rules: one walk of routing-svc's matcher (200), routed in one pass…
    pub routing_backlog: u64,
    /// …and in one burst enqueued closed loop.
    pub routing_burst: u64,
    /// Agents serving both queues of routing-rules (its open-loop runs use the highest of
    /// `flow_rates` for `flow_time`).
    pub rules_agents: usize,
    /// Available agents of routing-replicas, in one queue (its open-loop runs use the
    /// highest of `flow_rates` for `flow_time`).
    pub replicas_agents: usize,
    /// Pending offers (one per agent) left to time out in offer-expiry…
    pub expiry_pending: usize,
    /// …against this many, in the same run.
    pub expiry_baseline: usize,
    /// Queues the agents of offer-expiry are spread over (as many agents in each), the
    /// baseline's as well.
    pub expiry_queues: usize,
    /// How long after the first enqueue of offer-expiry its first deadline falls: time
    /// enough to make every offer first (for `expiry_pending` offers; in proportion for
    /// the baseline's, at least twice the spread)…
    pub expiry_lead: Duration,
    /// …and over how long the deadlines spread from there.
    pub expiry_spread: Duration,
    /// Events of the longer history of the reports scenario; the shorter has a tenth, at
    /// the same daily volume.
    pub report_events: u64,
    /// Agents of the reports scenario's tenant.
    pub report_agents: u64,
    /// Reports asked of each history, alternating.
    pub report_calls: usize,
    /// Rows of the exported per-conversation table.
    pub export_rows: u64,
    /// Measured exports, each followed by the baseline's.
    pub export_rounds: usize,
    /// Events of conversation-svc's log in the intake scenario.
    pub intake_events: u64,
    /// Raw reads and catch-ups of that log, alternating.
    pub intake_rounds: usize,
}

impl Plan {
    /// The plan for these options.
    pub fn for_args(args: &BenchArgs) -> Plan {
        let mut plan = if args.quick {
            Plan {
                mode: "quick",
                in_flight: 4,
                warm_up_calls: 10,
                closed_calls: 100,
                closed_time: Duration::from_secs(1),
                open_time: Duration::from_millis(300),
                open_max_in_flight: 256,
                rounds: 1,
                idle_streams: 20,
                flow_agents: vec![5],
                flow_rates: vec![5.0],
                flow_time: Duration::from_secs(1),
                backlog: 50,
                backlog_time: Duration::from_secs(5),
                outbox_rates: vec![5.0],
                routing_agents: vec![15, 45],
                routing_backlog: 20,
                routing_burst: 40,
                rules_agents: 15,
                replicas_agents: 10,
                expiry_pending: 20,
                expiry_baseline: 5,
                expiry_queues: 5,
                expiry_lead: Duration::from_millis(1500),
                expiry_spread: Duration::from_millis(500),
                report_events: 20_000,
                report_agents: 50,
                report_calls: 3,
                export_rows: 2_000,
                export_rounds: 1,
                intake_events: 3_000,
                intake_rounds: 1,
            }
        } else {
            Plan {
                mode: "full",
                in_flight: 32,
                warm_up_calls: 500,
                closed_calls: 300_000,
                closed_time: Duration::from_secs(4),
                open_time: Duration::from_secs(4),
                open_max_in_flight: 2048,
                rounds: 3,
                idle_streams: 500,
                flow_agents: vec![200, 2_000],
                flow_rates: vec![50.0, 100.0],
                flow_time: Duration::from_secs(10),
                backlog: 10_000,
                backlog_time: Duration::from_secs(40),
                outbox_rates: vec![100.0, 250.0],
                routing_agents: vec![1_000, 15_000],
                routing_backlog: 200,
                routing_burst: 1_000,
                rules_agents: 1_000,
                replicas_agents: 2_000,
                expiry_pending: 10_000,
                expiry_baseline: 100,
                expiry_queues: 50,
                expiry_lead: Duration::from_secs(75),
                expiry_spread: Duration::from_secs(5),
                report_events: 10_000_000,
                report_agents: 500,
                report_calls: 30,
                export_rows: 1_000_000,
                export_rounds: 3,
                intake_events: 1_000_000,
                intake_rounds: 3,
            }
        };
        if let Some(n) = args.in_flight {
            plan.in_flight = n.max(1);
        }
        if let Some(n) = args.report_events {
            plan.report_events = n.max(100);
        }
        if let Some(n) = args.intake_events {
            plan.intake_events = n.max(10);
        }
        if let Some(n) = args.export_rows {
            plan.export_rows = n.clamp(1, reporting_svc::config::MAX_EXPORT_ROWS);
        }
        if let Some(n) = args.backlog {
            plan.backlog = n;
            // Time enough to create them at a few hundred per second.
            plan.backlog_time = plan
                .backlog_time
                .max(Duration::from_secs(n.div_ceil(300).max(1)));
        }
        plan
    }
}

/// Runs the benchmark: prints the table on stdout and writes the JSON summary when asked.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    switchboard_server_kit::telemetry::init_tracing(&switchboard_server_kit::config::LogConfig {
        format: switchboard_server_kit::config::LogFormat::Human,
        filter: args.log_filter.clone(),
    });
    let plan = Plan::for_args(&args);
    let (data_root, remove_after) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "switchboard-bench-{}",
                uuid::Uuid::new_v4().simple()
            )),
            !args.keep_data,
        ),
    };
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("creating {}", data_root.display()))?;
    // Every PostgreSQL database of the run is named from one prefix, so that they can all
    // be dropped at the end (several GB each in a full run).
    let postgres = std::env::var(switchboard_server_kit::testing::POSTGRES_URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| {
            let run = &uuid::Uuid::new_v4().simple().to_string()[..12];
            ScratchDatabases::new(&url, &format!("bench_{run}"))
        });

    let started = Instant::now();
    let results = scenarios::run_all(&plan, &args.scenarios, &data_root, postgres.as_ref()).await;
    if remove_after {
        let _ = std::fs::remove_dir_all(&data_root);
    }
    if let Some(databases) = postgres {
        let prefix = databases.prefix().to_owned();
        if args.keep_data {
            databases.keep();
            writeln!(
                std::io::stderr().lock(),
                "PostgreSQL databases kept: {prefix}_*"
            )?;
        } else if let Err(err) = databases.drop_all().await {
            writeln!(
                std::io::stderr().lock(),
                "could not drop the PostgreSQL databases {prefix}_*: {err}"
            )?;
        }
    }
    let results = results?;
    if results.is_empty() {
        anyhow::bail!(
            "no scenario matches {:?}; scenarios: {}",
            args.scenarios,
            scenarios::NAMES.join(", ")
        );
    }

    let summary = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "plan": plan,
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "machine": proc_stats::machine(),
        "release_build": !cfg!(debug_assertions),
        "wall_s": started.elapsed().as_secs_f64(),
        "scenarios": results,
    });
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "switchboard bench ({} mode, {} build, {} CPUs): every ratio is value / baseline from this run",
        plan.mode,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    )?;
    write!(out, "{}", report::table(&results))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "summary written to {}", path.display())?;
    }
    out.flush()?;
    Ok(())
}
