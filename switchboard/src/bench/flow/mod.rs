//! The routing-flow scenarios: created → offered with N agents at fixed arrival rates, one
//! queue's backlog beside another queue's offers, and the whole lifecycle's throughput
//! against create-only.
//!
//! The agents are set up as an administrator would set them up (users created through the
//! gateway's directory, routing profiles joining the demo queue) and work through the
//! gateway with their own bearer tokens: Available, one StreamOffers stream each, every offer
//! accepted at once, the conversation ended and wrapped up so that capacity comes back.

mod agents;
mod paced;
mod tracker;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::directory::v1 as directory;
use switchboard_proto::routing::v1 as routing;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::load::{self, CALL_TIMEOUT, Target};
use super::report::{Better, Figure, ScenarioResult};
use super::scenarios::{self};
use super::{Plan, proc_stats};
use crate::seed::Bearer;

use agents::*;
use paced::*;
use tracker::*;

/// A created conversation not offered within this long counts as an error (issue 7).
pub(super) const OFFER_DEADLINE: Duration = Duration::from_secs(30);
/// Longest the set-up of a later, larger agent count may take, estimated from the first
/// count's pace; beyond it that count is skipped (and the skip recorded) to keep the run
/// bounded.
pub(super) const SETUP_BUDGET: Duration = Duration::from_secs(60);
/// Set-up calls in flight: enough to hide round trips, few enough not to queue up in the
/// suite behind one another.
pub(super) const SETUP_IN_FLIGHT: usize = 16;
/// Longest the agents may take between runs to finish the conversations in hand.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest to wait for routing-svc to count the whole backlog as waiting.
pub(super) const BACKLOG_SETTLE: Duration = Duration::from_secs(30);
/// Lifetime of the agents' bearer tokens: longer than any run.
pub(super) const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The absolute goal for created → offered.
pub(super) const OFFER_GOAL: &str = "p99 <= 50 ms (100/s, 2,000 agents)";

pub(super) type AgentClient =
    routing::agent_service_client::AgentServiceClient<InterceptedService<Channel, Bearer>>;
pub(super) type QueueClient =
    routing::queue_service_client::QueueServiceClient<InterceptedService<Channel, Bearer>>;
pub(super) type DirectoryClient = directory::directory_service_client::DirectoryServiceClient<
    InterceptedService<Channel, Bearer>,
>;
pub(super) type Conversations<A> =
    conv::conversation_service_client::ConversationServiceClient<InterceptedService<Channel, A>>;

pub(super) static NEXT_RUN: AtomicU32 = AtomicU32::new(1);

pub(super) fn histogram() -> Histogram<u64> {
    // The bounds of load.rs: 1 µs to 120 s, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

// ---------------------------------------------------------------------------------------
// The scenarios

/// Runs `body` on a fresh suite and stops the suite whatever the outcome.
async fn on_stage<F>(dir: &Path, body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Stage) -> anyhow::Result<()>,
{
    on_stage_with(dir, false, body).await
}

/// [`on_stage`], with the services' metrics served when `metrics`.
async fn on_stage_with<F>(dir: &Path, metrics: bool, body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Stage) -> anyhow::Result<()>,
{
    let stage = Stage::start(dir, metrics).await?;
    let outcome = body(&stage).await;
    stage.stop().await?;
    outcome
}

/// Created → offered with N agents serving the demo queue, at fixed create rates.
pub(super) async fn offer_latency(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "offer-latency",
        "sqlite",
        "created -> offered on the agent's stream (N agents through the gateway, each answering at once), creates open loop at fixed rates, vs the same creates' acknowledgement",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let mut floor = Floor::default();
        let mut per_agent: Option<Duration> = None;
        for &agents in &plan.flow_agents {
            let more = agents.saturating_sub(floor.len());
            if let Some(per_agent) = per_agent {
                let estimate = per_agent * u32::try_from(more).unwrap_or(u32::MAX);
                if estimate > SETUP_BUDGET {
                    result.runs.push(serde_json::json!({
                        "label": format!("{agents} agents skipped"),
                        "note": format!(
                            "setting up {more} more agents would take about {:.0} s (over {} s)",
                            estimate.as_secs_f64(),
                            SETUP_BUDGET.as_secs()
                        ),
                    }));
                    break;
                }
            }
            let started = Instant::now();
            floor.add(stage, more).await?;
            let took = started.elapsed();
            per_agent = Some(took / u32::try_from(more.max(1)).unwrap_or(u32::MAX));
            result.runs.push(serde_json::json!({
                "label": format!("set-up of {more} agents ({agents} in all)"),
                "elapsed_s": took.as_secs_f64(),
            }));
            for &rate in &plan.flow_rates {
                let (acks, offers) = offered_run(
                    stage,
                    &stage.credentials.queue_id,
                    rate,
                    plan.flow_time,
                    plan.open_max_in_flight,
                )
                .await;
                let what = format!("{agents} agents, {rate:.0}/s");
                result.add_run(
                    &format!("CreateConversation acknowledged, {what}, open loop"),
                    &acks,
                );
                result.add_run(&format!("created -> offered, {what}, open loop"), &offers);
                offer_figures(
                    &mut result,
                    &format!("created -> offered, {what}"),
                    &offers,
                    "the same creates acknowledged",
                    &acks,
                    OFFER_GOAL,
                );
            }
        }
        result.memory_figure(idle);
        floor.stop().await;
        Ok(())
    })
    .await?;
    Ok(result)
}

/// Created → offered in the demo queue beside a backlog in a queue no agent serves, against
/// the same measurement before the backlog existed.
pub(super) async fn backlog_isolation(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "backlog-isolation",
        "sqlite",
        "created -> offered in the demo queue beside a backlog of K waiting conversations in a queue no agent serves, vs the same before the backlog existed",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let agents = plan.flow_agents.first().copied().unwrap_or(1);
        let rate = plan.flow_rates.iter().copied().fold(1.0, f64::max);
        let mut floor = Floor::default();
        floor.add(stage, agents).await?;
        let demo_queue = stage.credentials.queue_id.clone();

        let (acks_before, before) = offered_run(
            stage,
            &demo_queue,
            rate,
            plan.flow_time,
            plan.open_max_in_flight,
        )
        .await;
        result.add_run(
            "CreateConversation acknowledged, no backlog, open loop",
            &acks_before,
        );
        result.add_run("created -> offered, no backlog, open loop", &before);

        let backlog_queue = stage.create_unserved_queue().await?;
        let backlog_target: Target = {
            let client = stage.bot.clone();
            let requests = Arc::new(Mutex::new(
                (0..plan.backlog)
                    .map(|i| stage.create_request(&backlog_queue, i))
                    .collect::<Vec<_>>(),
            ));
            scenarios::target(move |_| {
                let mut client = client.clone();
                let request = requests.lock().expect("requests lock").pop();
                async move {
                    let request = request.context("more creates than planned")?;
                    // A client told to wait (the outbox bound, RESOURCE_EXHAUSTED with a
                    // retry delay) waits and sends the same create again, as clients should.
                    loop {
                        match client.create_conversation(request.clone()).await {
                            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            other => {
                                other?;
                                return Ok(());
                            }
                        }
                    }
                }
            })
        };
        // As fast as the suite takes them, bounded in count and time.
        let filled = load::closed_loop(
            &backlog_target,
            plan.in_flight,
            plan.backlog,
            plan.backlog_time,
        )
        .await;
        result.add_run(
            "backlog creates into the queue no agent serves, closed loop",
            &filled,
        );
        let settle = Instant::now() + BACKLOG_SETTLE;
        let mut waiting = stage.waiting(&backlog_queue).await?;
        while u64::try_from(waiting).unwrap_or(0) < filled.ok && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waiting = stage.waiting(&backlog_queue).await?;
        }
        result.runs.push(serde_json::json!({
            "label": "backlog waiting in routing-svc before the measurement",
            "waiting": waiting,
            "created": filled.ok,
        }));

        let (acks_after, after) = offered_run(
            stage,
            &demo_queue,
            rate,
            plan.flow_time,
            plan.open_max_in_flight,
        )
        .await;
        result.add_run(
            &format!("CreateConversation acknowledged, backlog of {waiting}, open loop"),
            &acks_after,
        );
        result.add_run(
            &format!("created -> offered, backlog of {waiting}, open loop"),
            &after,
        );
        offer_figures(
            &mut result,
            &format!(
                "created -> offered, {agents} agents, {rate:.0}/s, beside a backlog of {waiting}"
            ),
            &after,
            "the same before the backlog existed",
            &before,
            "~1; p99 <= 50 ms",
        );
        result.memory_figure(idle);
        floor.stop().await;
        Ok(())
    })
    .await?;
    Ok(result)
}

/// Whole conversations per second (create, offer, accept, two messages each way, end,
/// wrap-up), closed loop, against create-only in the same suite.
pub(super) async fn lifecycle(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "lifecycle",
        "sqlite",
        "whole conversations per second (create, offer, accept, two messages each way, end, wrap-up) through the gateway, closed loop, vs create-only",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let agents = plan.flow_agents.first().copied().unwrap_or(1);
        let mut floor = Floor::default();
        floor.add(stage, agents).await?;
        stage.tracker.chat.store(true, Ordering::Relaxed);
        let queue_id = stage.credentials.queue_id.clone();

        let whole: Target = {
            let (client, tracker, credentials) = (
                stage.bot.clone(),
                stage.tracker.clone(),
                stage.credentials.clone(),
            );
            let queue_id = queue_id.clone();
            scenarios::target(move |i| {
                let (mut client, tracker) = (client.clone(), tracker.clone());
                let request = conv::CreateConversationRequest {
                    queue_id: queue_id.clone(),
                    ..scenarios::create_request(&credentials, i)
                };
                async move {
                    let conversation = client
                        .create_conversation(request)
                        .await?
                        .into_inner()
                        .conversation
                        .context("an answer without a conversation")?;
                    tracker
                        .wait_closed(&conversation.id)
                        .await
                        .context("the tracker went away")?;
                    Ok(())
                }
            })
        };
        let create_only: Target = {
            let (client, credentials) = (stage.bot.clone(), stage.credentials.clone());
            scenarios::target(move |i| {
                let mut client = client.clone();
                let request = scenarios::create_request(&credentials, i);
                async move {
                    client.create_conversation(request).await?;
                    Ok(())
                }
            })
        };
        // A whole conversation is a dozen calls: a smaller warm-up than the plan's.
        let warm_up = plan.warm_up_calls.min(4 * plan.in_flight as u64);
        load::warm_up(&whole, plan.in_flight, warm_up)
            .await
            .context("warming up the lifecycle")?;
        let mut runs = Vec::new();
        for _ in 0..plan.rounds {
            let mut run =
                load::closed_loop(&whole, plan.in_flight, plan.closed_calls, plan.closed_time)
                    .await;
            let (agent_errors, agent_error) = stage.tracker.take_errors();
            run.errors += agent_errors;
            if run.first_error.is_none() {
                run.first_error = agent_error;
            }
            runs.push(run);
        }
        stage.tracker.drain().await;
        // Create-only after the lifecycle rounds, with every agent Away: what it creates
        // stays waiting and would otherwise be served during a later lifecycle round.
        floor.set_presence(routing::Presence::Away).await?;
        load::warm_up(&create_only, plan.in_flight, warm_up)
            .await
            .context("warming up create-only")?;
        let mut base_runs = Vec::new();
        for _ in 0..plan.rounds {
            base_runs.push(
                load::closed_loop(
                    &create_only,
                    plan.in_flight,
                    plan.closed_calls,
                    plan.closed_time,
                )
                .await,
            );
        }
        for run in &runs {
            result.add_run("whole conversation, closed loop", run);
        }
        for run in &base_runs {
            result.add_run("CreateConversation only (agents Away), closed loop", run);
        }
        let subject = scenarios::best(runs);
        let base = scenarios::best(base_runs);
        let n = plan.in_flight;
        result.figures.push(
            Figure::new(
                format!("whole conversations, {agents} agents: max throughput ({n} in flight)"),
                "conv/s",
                subject.throughput(),
                "CreateConversation only",
                base.throughput(),
                Better::Higher,
            )
            .goal(">= 0.25"),
        );
        result.figures.push(Figure::new(
            "whole conversation: process CPU per conversation (closed loop)",
            "µs",
            subject.cpu_per_call_us(),
            "CreateConversation only",
            base.cpu_per_call_us(),
            Better::Lower,
        ));
        result.memory_figure(idle);
        floor.stop().await;
        Ok(())
    })
    .await?;
    Ok(result)
}

/// Cumulative buckets `(upper bound in s, count)` of the Prometheus histogram `name`, and the
/// value of the gauge `gauge`, from `GET /metrics` on `addr`.
async fn scrape(
    addr: std::net::SocketAddr,
    name: &'static str,
    gauge: &'static str,
) -> anyhow::Result<(Vec<(f64, u64)>, f64)> {
    // A plain HTTP/1.0 request: the client needs nothing more, and this crate no HTTP client.
    let text = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(&addr, CALL_TIMEOUT)?;
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })
    .await??;
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let bucket = format!("{name}_bucket");
    let mut buckets = Vec::new();
    let mut pending = None;
    for line in text.lines() {
        if let Some(labels) = line.strip_prefix(bucket.as_str()) {
            let le = labels
                .split("le=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .context("a bucket without le")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()?
            };
            buckets.push((le, value(line).context("a bucket without a count")? as u64));
        } else if line.starts_with(gauge)
            && matches!(line.as_bytes().get(gauge.len()), Some(b' ' | b'{'))
        {
            pending = value(line);
        }
    }
    anyhow::ensure!(!buckets.is_empty(), "no {name} on {addr}");
    Ok((buckets, pending.unwrap_or(0.0)))
}

/// The upper bound (in ms) of the bucket holding quantile `q` of the observations between
/// two scrapes; the last finite bound when it falls in `+Inf`.
fn bucket_quantile_ms(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> f64 {
    let count = |buckets: &[(f64, u64)], le: f64| {
        buckets
            .iter()
            .find(|(bound, _)| *bound == le)
            .map_or(0, |(_, n)| *n)
    };
    let deltas: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, n)| (le, n.saturating_sub(count(before, le))))
        .collect();
    let total = deltas.last().map_or(0, |(_, n)| *n);
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let last_finite = deltas
        .iter()
        .rev()
        .find(|(le, _)| le.is_finite())
        .map_or(0.0, |(le, _)| *le);
    deltas
        .iter()
        .find(|(_, n)| *n >= rank)
        .map_or(last_finite, |(le, _)| le.min(last_finite))
        * 1000.0
}

/// Acknowledged → enqueued: conversation-svc's outbox delivery lag (its Prometheus histogram)
/// at fixed create rates, against the same creates' acknowledgement latency.
pub(super) async fn outbox_lag(plan: &Plan, dir: &Path) -> anyhow::Result<ScenarioResult> {
    const LAG: &str = conversation_svc::outbox::SERIES.lag_name;
    const PENDING: &str = conversation_svc::outbox::SERIES.pending_name;
    let mut result = scenarios::scenario(
        "outbox-lag",
        "sqlite",
        "acknowledged -> enqueued in routing-svc (conversation-svc's conversation_outbox_delivery_lag_seconds, bucket bounds) with creates open loop at fixed rates and no agent, vs the same creates' acknowledgement",
    );
    on_stage_with(dir, true, async |stage| {
        let idle = proc_stats::rss_kib();
        let metrics = stage
            .running
            .addresses
            .metrics
            .iter()
            .find(|(name, _)| *name == "conversation-svc")
            .map(|(_, addr)| *addr)
            .context("conversation-svc serves no metrics")?;
        for &rate in &plan.outbox_rates {
            let (before, _) = scrape(metrics, LAG, PENDING).await?;
            let run_id = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
            let (acks, _) = paced_creates(
                stage,
                &stage.credentials.queue_id,
                rate,
                plan.flow_time,
                plan.open_max_in_flight,
                run_id,
            )
            .await;
            // Every command of the run delivered (or the wait bounded) before reading.
            let settle = Instant::now() + DRAIN_TIMEOUT;
            let (mut after, mut pending) = scrape(metrics, LAG, PENDING).await?;
            while pending > 0.0 && Instant::now() < settle {
                tokio::time::sleep(Duration::from_millis(50)).await;
                (after, pending) = scrape(metrics, LAG, PENDING).await?;
            }
            let mut acks = acks;
            if pending > 0.0 {
                acks.errors += 1;
                acks.first_error.get_or_insert(format!(
                    "{pending} outbox commands still pending {DRAIN_TIMEOUT:?} after the run"
                ));
            }
            result.add_run(
                &format!("CreateConversation acknowledged, {rate:.0}/s, open loop"),
                &acks,
            );
            let total = |buckets: &[(f64, u64)]| buckets.last().map_or(0, |(_, n)| *n);
            let delivered = total(&after).saturating_sub(total(&before));
            result.runs.push(serde_json::json!({
                "label": format!("outbox deliveries, {rate:.0}/s"),
                "delivered": delivered,
                "buckets_before": before,
                "buckets_after": after,
            }));
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                let mut figure = Figure::new(
                    format!(
                        "acknowledged -> enqueued at {rate:.0}/s: {label} (bucket upper bound)"
                    ),
                    "ms",
                    bucket_quantile_ms(&before, &after, q),
                    format!("the same creates acknowledged, {label}"),
                    acks.latency_us(q) / 1000.0,
                    Better::Lower,
                );
                if q == 0.99 {
                    figure = figure.goal("p99 <= 100 ms");
                }
                result.figures.push(figure);
            }
        }
        result.memory_figure(idle);
        Ok(())
    })
    .await?;
    Ok(result)
}
