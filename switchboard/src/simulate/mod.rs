//! `switchboard simulate`: a contact center driven through the gateway of a running
//! `switchboard dev` stack, as a demo and as a load engine.
//!
//! Customers arrive at a fixed mean rate (a Poisson process) on the channels the agents'
//! queues accept, created by the demo bot's API key ([`arrivals`]). The tenant's agents
//! ([`agents`]) go Available, keep their offer stream open, accept after a human-like delay,
//! sometimes reject or miss an offer (which times out into RONA), chat, end the
//! conversation, wrap up, and take breaks now and then. A status line shows the run once a
//! second ([`progress`]); at the end a summary adds what reporting-svc now reports
//! ([`reports`]).
//!
//! Everything goes through the public API with the credentials `switchboard dev` wrote, as
//! any client would. When arrivals stop, agents work on until what the run created is
//! closed (bounded by `--drain`); then it is closing time: agents take no new offers,
//! finish what they hold without human delays, take over the offers they missed, claim
//! and close what still waits, and go Offline, so that the dev stack is left as it was
//! found, as the agents themselves would.
//!
//! Later steps: transfers (to a queue today; to an agent when transfer offers arrive),
//! consults and conferences, supervisors joining, customers abandoning, and more agents
//! than the demo tenant has.

pub mod agents;
pub mod arrivals;
pub mod progress;
pub mod reports;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::routing::v1 as routing;
use tokio::sync::watch;
use tonic::transport::Channel as GrpcChannel;

use crate::seed::{Bearer, DevCredentials, DevUser};
use progress::Stats;

/// Every call the simulation makes gives up after this long (and counts as an error).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `switchboard simulate`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The credentials file `switchboard dev` writes into its data directory.
    #[arg(long, default_value = "switchboard-data/dev-credentials.json")]
    pub credentials: PathBuf,
    /// The gateway (host:port, plaintext); default: the one named in the credentials file.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Mean customer arrivals per second (Poisson arrivals).
    #[arg(long, default_value_t = 0.5)]
    pub rate: f64,
    /// How long customers keep arriving: 90, 90s, 2m or 500ms.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// After arrivals stop, the longest to wait for agents to finish the conversations in
    /// hand at their own pace; then they finish up without human delays.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Use at most this many of the tenant's agents (default: every agent in the
    /// credentials file).
    #[arg(long)]
    pub agents: Option<usize>,
    /// Multiplies every human delay (reading an offer, typing, wrap-up, breaks): 0.1 makes
    /// agents and customers ten times quicker; 0 answers at once and takes no breaks (load).
    #[arg(long, default_value_t = 1.0)]
    pub pace: f64,
    /// Share of offers an agent rejects.
    #[arg(long, default_value_t = 0.03)]
    pub reject: f64,
    /// Share of offers an agent misses: no answer, so the offer times out after the
    /// queue's offer timeout and the agent enters RONA.
    #[arg(long, default_value_t = 0.05)]
    pub miss: f64,
    /// Seed of every random choice (arrival times, channels, agents' decisions); printed,
    /// so that a run can be repeated. Timing on the server still varies.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Parses `90`, `90s`, `1.5s`, `2m` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 2m or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

/// A queue the simulated agents serve.
#[derive(Clone, Debug)]
pub struct QueueInfo {
    /// Queue id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Messaging channels it accepts.
    pub channels: Vec<Channel>,
    /// Its active wrap-up reasons.
    pub wrap_up_reason_ids: Vec<String>,
    /// How long an agent has to answer an offer.
    pub offer_timeout: Duration,
}

/// What agents and arrivals share.
pub struct World {
    /// The gateway.
    pub channel: GrpcChannel,
    /// The demo bot's API key: creates conversations and writes as the customer.
    pub bot_api_key: String,
    /// Queues the agents serve.
    pub queues: Vec<QueueInfo>,
    /// Multiplier of human delays.
    pub pace: f64,
    /// Share of offers rejected.
    pub reject: f64,
    /// Share of offers missed.
    pub miss: f64,
    /// Counters, latencies and conversations of the run.
    pub stats: Stats,
    /// Closing time: every human delay is skipped.
    pub hurry: AtomicBool,
}

impl World {
    fn queue(&self, id: &str) -> Option<&QueueInfo> {
        self.queues.iter().find(|q| q.id == id)
    }
}

/// What a run did, and what the reports say about it.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The seed the run used.
    pub seed: u64,
    /// The counters at the end.
    pub totals: progress::Snapshot,
    /// Conversations of the run still waiting at closing time, claimed and closed then.
    pub closed_at_end: u64,
    /// Conversations of the run still open after closing time.
    pub left_open: u64,
    /// Time customers kept arriving.
    pub arriving: Duration,
    /// Time spent waiting for work in hand after arrivals stopped.
    pub draining: Duration,
    /// What reporting-svc reports for the run's time window.
    pub reports: reports::Reports,
    /// Every unexpected error: the simulation's and the report queries'.
    pub errors: u64,
    /// The first unexpected error.
    pub first_error: Option<String>,
}

/// Runs `switchboard simulate`.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let summary = simulate(&args).await?;
    if summary.errors > 0 {
        anyhow::bail!(
            "{} unexpected errors; the first: {}",
            summary.errors,
            summary.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs the simulation against the stack named by `args`, printing progress and the
/// summary on stdout, and returns the summary.
pub async fn simulate(args: &SimulateArgs) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be above 0"
    );
    anyhow::ensure!(
        args.pace >= 0.0 && args.pace.is_finite(),
        "--pace must be 0 or more"
    );
    for (name, share) in [("--reject", args.reject), ("--miss", args.miss)] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&share),
            "{name} must be between 0 and 1"
        );
    }
    anyhow::ensure!(
        args.reject + args.miss <= 1.0,
        "--reject and --miss add up to more than 1"
    );
    let credentials = load_credentials(&args.credentials)?;
    let gateway = args
        .gateway
        .clone()
        .unwrap_or_else(|| credentials.gateway.clone());
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{gateway}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| {
            format!("connecting to the gateway at {gateway}: is `switchboard dev` running?")
        })?;

    let agent_users: Vec<DevUser> = credentials
        .users
        .iter()
        .filter(|u| u.roles.iter().any(|r| r == "agent"))
        .take(args.agents.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    anyhow::ensure!(
        !agent_users.is_empty(),
        "{} names no agent",
        args.credentials.display()
    );
    let supervisor = credentials
        .users
        .iter()
        .find(|u| u.roles.iter().any(|r| r == "supervisor"))
        .context("the credentials name no supervisor (needed to read queues and reports)")?
        .clone();
    let supervisor_auth = Bearer::new(&supervisor.token)?;
    let queues = discover_queues(&channel, &supervisor_auth, &agent_users).await?;
    let seed = args.seed.unwrap_or_else(rand::random);

    let world = Arc::new(World {
        channel: channel.clone(),
        bot_api_key: credentials.bot.api_key.clone(),
        queues,
        pace: args.pace,
        reject: args.reject,
        miss: args.miss,
        stats: Stats::new(),
        hurry: AtomicBool::new(false),
    });
    print_header(args, &gateway, &credentials, &agent_users, &world, seed)?;

    // Ctrl-C ends arrivals (or the drain) early; the clean-up below still runs.
    let (interrupt_tx, interrupt) = watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt_tx.send(true);
        }
    });

    let wall_start = SystemTime::now();
    let (stop_agents_tx, stop_agents) = watch::channel(false);
    let mut agent_tasks = tokio::task::JoinSet::new();
    let agent_list: Vec<agents::Agent> = agent_users
        .iter()
        .map(|user| agents::Agent {
            id: user.id.clone(),
            name: user.display_name.clone(),
            token: user.token.clone(),
        })
        .collect();
    for (i, agent) in agent_list.iter().enumerate() {
        agent_tasks.spawn(agents::run(
            world.clone(),
            agent.clone(),
            seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            stop_agents.clone(),
        ));
    }
    let (phase_tx, phase) = watch::channel(progress::Phase::Arriving);
    let printer = tokio::spawn(progress::print_every_second(world.clone(), phase));

    let started = Instant::now();
    arrivals::run(
        world.clone(),
        args.rate,
        args.duration,
        seed,
        interrupt.clone(),
    )
    .await;
    let arriving = started.elapsed();

    let _ = phase_tx.send(progress::Phase::Draining);
    let drain_started = Instant::now();
    let drain_deadline = tokio::time::Instant::now() + args.drain;
    let mut interrupted = interrupt.clone();
    while world.stats.open_conversations() > 0 && !*interrupted.borrow() {
        tokio::select! {
            () = tokio::time::sleep_until(drain_deadline) => break,
            () = raised(&mut interrupted) => break,
            // Checking ten times a second is cheap and cannot miss the last close.
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let draining = drain_started.elapsed();

    world.hurry.store(true, Ordering::Relaxed);
    let _ = stop_agents_tx.send(true);
    while let Some(joined) = agent_tasks.join_next().await {
        if let Err(err) = joined {
            world.stats.error("agent task", err);
        }
    }
    let closed_at_end =
        agents::close_leftovers(&world, &agent_list, world.stats.unclosed_conversations()).await;
    let _ = phase_tx.send(progress::Phase::Done);
    let _ = printer.await;
    ctrl_c.abort();

    let totals = world.stats.snapshot();
    let window = reports::Window::around(wall_start, SystemTime::now());
    let agent_names: Vec<(String, String)> = agent_users
        .iter()
        .map(|u| (u.id.clone(), u.display_name.clone()))
        .collect();
    let reports = reports::collect(
        &channel,
        &supervisor_auth,
        &window,
        &agent_names,
        totals.created,
        totals.closed + closed_at_end,
    )
    .await;
    let (errors, first_error) = world.stats.errors();
    let summary = Summary {
        seed,
        totals,
        closed_at_end,
        left_open: world.stats.open_conversations() as u64,
        arriving,
        draining,
        errors: errors + reports.errors,
        first_error: first_error.or_else(|| reports.first_error.clone()),
        reports,
    };
    progress::print_summary(&summary, args.rate, &agent_names, &window)?;
    Ok(summary)
}

/// Resolves once the flag is raised (at once if it already is).
pub(crate) async fn raised(flag: &mut watch::Receiver<bool>) {
    // A closed sender never raises it: wait forever rather than spin.
    if flag.wait_for(|raised| *raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn load_credentials(path: &std::path::Path) -> anyhow::Result<DevCredentials> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading {}: start `switchboard dev` first (it writes this file), or pass --credentials",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a dev credentials file", path.display()))
}

/// The queues the agents serve, with their messaging channels and wrap-up reasons; queues
/// without an active wrap-up reason are left out (their conversations could not close).
async fn discover_queues(
    channel: &GrpcChannel,
    auth: &Bearer,
    agents: &[DevUser],
) -> anyhow::Result<Vec<QueueInfo>> {
    let mut queue_client = routing::queue_service_client::QueueServiceClient::with_interceptor(
        channel.clone(),
        auth.clone(),
    );
    let mut config =
        conv::conversation_config_service_client::ConversationConfigServiceClient::with_interceptor(
            channel.clone(),
            auth.clone(),
        );
    let mut ids: Vec<String> = Vec::new();
    for agent in agents {
        let profile = queue_client
            .get_agent_profile(routing::GetAgentProfileRequest {
                agent_id: agent.id.clone(),
            })
            .await
            .with_context(|| format!("reading the routing profile of {}", agent.handle))?
            .into_inner()
            .agent_profile
            .unwrap_or_default();
        for id in profile.queue_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let mut queues = Vec::new();
    for id in ids {
        let queue = queue_client
            .get_queue(routing::GetQueueRequest {
                queue_id: id.clone(),
            })
            .await
            .with_context(|| format!("reading queue {id}"))?
            .into_inner()
            .queue
            .unwrap_or_default();
        let reasons = config
            .list_wrap_up_reasons(conv::ListWrapUpReasonsRequest {
                queue_id: id.clone(),
                page_size: 500,
                ..Default::default()
            })
            .await
            .with_context(|| format!("listing the wrap-up reasons of queue {id}"))?
            .into_inner()
            .wrap_up_reasons;
        let channels: Vec<Channel> = queue
            .accepted_channels()
            // A voice call needs a media leg that a simulated customer does not have.
            .filter(|c| !matches!(c, Channel::Voice | Channel::Unspecified))
            .collect();
        let wrap_up_reason_ids: Vec<String> = reasons
            .into_iter()
            .filter(|r| r.active)
            .map(|r| r.id)
            .collect();
        if channels.is_empty() || wrap_up_reason_ids.is_empty() {
            continue;
        }
        let offer_timeout = queue
            .offer_timeout
            .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
            .unwrap_or(Duration::from_secs(30));
        queues.push(QueueInfo {
            id,
            name: queue.display_name,
            channels,
            wrap_up_reason_ids,
            offer_timeout,
        });
    }
    anyhow::ensure!(
        !queues.is_empty(),
        "the agents serve no queue with a messaging channel and an active wrap-up reason"
    );
    Ok(queues)
}

fn print_header(
    args: &SimulateArgs,
    gateway: &str,
    credentials: &DevCredentials,
    agents: &[DevUser],
    world: &World,
    seed: u64,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "switchboard simulate: gateway {gateway}, tenant {}, seed {seed}",
        credentials.tenant_id
    )?;
    writeln!(
        out,
        "  customers: {}/s for {} on {}",
        args.rate,
        progress::human_duration(args.duration),
        arrivals::channel_mix(&world.queues)
            .iter()
            .map(|(c, share)| format!("{} {:.0}%", progress::channel_name(*c), share * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    for queue in &world.queues {
        writeln!(
            out,
            "  queue {:?}: {} wrap-up reasons, offer timeout {} (a missed offer becomes RONA then)",
            queue.name,
            queue.wrap_up_reason_ids.len(),
            progress::human_duration(queue.offer_timeout),
        )?;
    }
    writeln!(
        out,
        "  agents: {} (pace {}, reject {:.0}%, miss {:.0}%)",
        agents
            .iter()
            .map(|a| a.display_name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        args.pace,
        args.reject * 100.0,
        args.miss * 100.0,
    )?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
