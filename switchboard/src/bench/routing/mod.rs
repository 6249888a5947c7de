//! The routing scenarios: routing-svc's own throughput and timing at contact-center
//! scale, measured on routing-svc alone.
//!
//! Thousands of agents each holding an offer stream through the gateway would measure the
//! gateway and the streams, not routing. These scenarios start routing-svc by itself
//! ([`stage::RoutingStage`]: a fresh SQLite file, the shipped timings, conversation-svc and
//! the directory played by a stand-in that answers at once) and drive it over gRPC in
//! process as its neighbours do: an administrator sets agents up (SetAgentProfile, then
//! SetPresence by a supervisor), conversation-svc enqueues (the internal
//! EnqueueConversation), and one subscriber to the internal event stream sees every offer
//! made and every offer timed out (where reporting-svc listens).
//!
//! - `routing-scale`: offers per second for a backlog released at once (and for a burst
//!   enqueued closed loop) with 15,000 Available agents, against the same with 1,000.
//! - `offer-expiry`: how late after its deadline a pending offer is timed out with 10,000
//!   pending, against the same with 100.
//! - `routing-rules`: a queue that requires a skill at a minimum level and has an overflow
//!   configured, against a plain queue served by the same agents: throughput and
//!   created → offered.
//! - `routing-replicas`: created → offered with two replicas on one PostgreSQL database,
//!   against one replica on SQLite and one on PostgreSQL.

mod expiry;
mod replicas;
mod rules;
mod scale;
mod stage;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use super::flow::{histogram, micros};
use super::load::{self, CALL_TIMEOUT, Mode, Run};
use super::proc_stats;
use super::report::{Better, Figure, ScenarioResult};
use super::scenarios;
use stage::{RoutingStage, enqueue_request, new_ids};

pub(super) use expiry::offer_expiry;
pub(super) use replicas::routing_replicas;
pub(super) use rules::routing_rules;
pub(super) use scale::routing_scale;

/// Longest a measurement waits, after its last enqueue, for the offers of the conversations
/// it enqueued; one not offered by then is an error.
const OFFER_WAIT: Duration = Duration::from_secs(60);
/// Longest the enqueues of one burst may take.
const BURST_TIME: Duration = Duration::from_secs(60);

/// Runs `body` on a fresh routing-svc and stops it whatever the outcome.
async fn on_stage<F>(dir: &Path, body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&RoutingStage) -> anyhow::Result<()>,
{
    let stage = RoutingStage::start(dir).await?;
    let outcome = body(&stage).await;
    let stopped = stage.stop().await;
    outcome?;
    stopped
}

/// One burst: `count` conversations enqueued into `queue_id` as fast as routing-svc takes
/// them (`in_flight` at a time), then the wait for each one's offer.
struct Burst {
    /// The offers: `ok` conversations offered, `elapsed` from the first enqueue sent to the
    /// last offer seen (its throughput is the burst's offers per second), latency from each
    /// enqueue sent to its offer seen, process CPU over the same time; a conversation not
    /// offered within [`OFFER_WAIT`] (or not enqueued) is an error.
    offered: Run,
    /// The enqueues alone (closed loop, acknowledged).
    enqueued: Run,
}

/// Enqueues a burst into `queue_id` and waits for its offers; then cancels every
/// conversation of the burst so that the agents' units come back for the next one.
async fn burst(
    stage: &RoutingStage,
    queue_id: &str,
    count: u64,
    in_flight: usize,
) -> anyhow::Result<Burst> {
    let ids = new_ids(count);
    let cpu_before = proc_stats::cpu_time();
    let started = Instant::now();
    let (enqueued, sent) = enqueue_all(stage, queue_id, &ids, in_flight).await;
    let seen = stage
        .observer
        .wait_offered(&sent.ids, Instant::now() + OFFER_WAIT)
        .await;
    let offered = offers_run(
        &sent,
        &seen,
        &format!("within {OFFER_WAIT:?} of the last enqueue"),
        started,
        proc_stats::cpu_time().saturating_sub(cpu_before),
        &enqueued,
        stage,
    );
    stage.cancel(&sent.ids).await?;
    Ok(Burst { offered, enqueued })
}

/// A backlog of `count` conversations routed at once: enqueued while queue `queue_id` holds
/// them (manual pick, so the matcher leaves them), then released by switching the queue to
/// `method`, one UpdateQueue that wakes the matcher. The offers: `elapsed` and latency from
/// the release to each offer seen, process CPU over the same time (nothing else is sent
/// meanwhile, so it is the matching's). Then cancels the backlog.
async fn release(
    stage: &RoutingStage,
    queue_id: &str,
    method: switchboard_proto::routing::v1::AssignmentMethod,
    count: u64,
    in_flight: usize,
) -> anyhow::Result<Run> {
    use switchboard_proto::routing::v1::AssignmentMethod;
    stage
        .set_assignment_method(queue_id, AssignmentMethod::ManualPick)
        .await?;
    let (enqueued, sent) = enqueue_all(stage, queue_id, &new_ids(count), in_flight).await;
    let cpu_before = proc_stats::cpu_time();
    let released = Instant::now();
    stage.set_assignment_method(queue_id, method).await?;
    let seen = stage
        .observer
        .wait_offered(&sent.ids, Instant::now() + OFFER_WAIT)
        .await;
    let from_release = Sent {
        at: vec![released; sent.ids.len()],
        ids: sent.ids,
    };
    let offered = offers_run(
        &from_release,
        &seen,
        &format!("within {OFFER_WAIT:?} of the release"),
        released,
        proc_stats::cpu_time().saturating_sub(cpu_before),
        &enqueued,
        stage,
    );
    stage.cancel(&from_release.ids).await?;
    Ok(offered)
}

/// The conversations whose enqueue was acknowledged, and when each was sent.
struct Sent {
    ids: Vec<String>,
    at: Vec<Instant>,
}

/// Enqueues `ids` into `queue_id` in that order, `in_flight` at a time, as fast as
/// routing-svc takes them (at most [`BURST_TIME`]): the enqueues as a closed-loop run, and
/// those acknowledged.
async fn enqueue_all(
    stage: &RoutingStage,
    queue_id: &str,
    ids: &[String],
    in_flight: usize,
) -> (Run, Sent) {
    let ids = Arc::new(ids.to_vec());
    // When each enqueue was sent, and whether it was acknowledged.
    let sent = Arc::new(Mutex::new(vec![(None::<Instant>, false); ids.len()]));
    let target = {
        let (ids, sent, next) = (ids.clone(), sent.clone(), Arc::new(AtomicUsize::new(0)));
        let (client, tenant_id, queue_id) = (
            stage.internal[0].clone(),
            stage.tenant_id.clone(),
            queue_id.to_owned(),
        );
        scenarios::target(move |_| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let request = ids
                .get(i)
                .map(|id| enqueue_request(&tenant_id, &queue_id, id));
            let (mut client, sent) = (client.clone(), sent.clone());
            async move {
                let request = request.context("more enqueues than planned")?;
                sent.lock().expect("enqueue lock")[i].0 = Some(Instant::now());
                client.enqueue_conversation(request).await?;
                sent.lock().expect("enqueue lock")[i].1 = true;
                Ok(())
            }
        })
    };
    let run = load::closed_loop(&target, in_flight, ids.len() as u64, BURST_TIME).await;
    let sent = std::mem::take(&mut *sent.lock().expect("enqueue lock"));
    let (ids, at) = ids
        .iter()
        .zip(sent)
        .filter_map(|(id, (at, acked))| Some((id.clone(), at.filter(|_| acked)?)))
        .unzip();
    (run, Sent { ids, at })
}

/// The offers of conversations `sent`, seen at `seen` (`None`: not `within` the wait, as
/// the error says): `ok` those offered, latency from each enqueue sent to its offer seen
/// (until now for one not offered, an error), `elapsed` from `started` to the last offer
/// seen, in `enqueued`'s mode. `enqueued`'s failures count as errors too.
fn offers_run(
    sent: &Sent,
    seen: &[Option<Instant>],
    within: &str,
    started: Instant,
    cpu: Duration,
    enqueued: &Run,
    stage: &RoutingStage,
) -> Run {
    let now = Instant::now();
    let mut latency = histogram();
    let (mut ok, mut last) = (0, None::<Instant>);
    for (sent, seen) in sent.at.iter().zip(seen) {
        match seen {
            Some(at) => {
                ok += 1;
                latency.saturating_record(micros(at.saturating_duration_since(*sent)));
                last = Some(last.map_or(*at, |last| last.max(*at)));
            }
            None => latency.saturating_record(micros(now.saturating_duration_since(*sent))),
        }
    }
    let missing = sent.ids.len() as u64 - ok;
    let first_error = match missing {
        0 => enqueued.first_error.clone().or(stage.observer.error()),
        n => Some(format!("{n} conversations not offered {within}")),
    };
    Run {
        mode: enqueued.mode,
        ok,
        errors: missing + enqueued.errors,
        first_error,
        elapsed: last.unwrap_or(now).saturating_duration_since(started),
        cpu,
        latency,
        service: None,
    }
}

/// One open-loop run: conversations enqueued at a fixed rate, then the wait for each one's
/// offer.
struct Paced {
    /// The enqueues, latency from each one's intended start to its acknowledgement.
    acks: Run,
    /// The offers: latency from each enqueue's intended start to its offer seen (no
    /// coordinated omission: a stall shows whole); `elapsed` from the first intended start
    /// to the last offer seen; a conversation not offered within [`OFFER_WAIT`] of the
    /// last intended start (or not enqueued) is an error.
    offered: Run,
    /// The conversations acknowledged, in the order they were meant to start.
    ids: Vec<String>,
}

/// The acknowledgements of a paced run.
struct Acks {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    acked: Vec<bool>,
}

/// Enqueues `rate` conversations per second for `duration` into `queue_id`, each sent at
/// its intended time by a pacing thread whatever happened to the earlier ones (at most
/// `max_in_flight` outstanding; a wait for a slot counts), to the stage's replicas in
/// turn; then waits for their offers.
async fn paced(
    stage: &RoutingStage,
    queue_id: &str,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> Paced {
    let count = ((rate * duration.as_secs_f64()).round() as u64).max(1);
    let ids = new_ids(count);
    let acks = Arc::new(Mutex::new(Acks {
        latency: histogram(),
        service: histogram(),
        errors: 0,
        first_error: None,
        acked: vec![false; ids.len()],
    }));
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    // Every enqueue holds a sender; `recv` returns `None` once the pacer and all are done.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let runtime = tokio::runtime::Handle::current();
    let requests: Vec<_> = ids
        .iter()
        .map(|id| enqueue_request(&stage.tenant_id, queue_id, id))
        .collect();
    let intended = move |start: Instant, i: usize| start + Duration::from_secs_f64(i as f64 / rate);

    let cpu_before = proc_stats::cpu_time();
    let start = Instant::now() + Duration::from_millis(2);
    let pacer = {
        let (clients, acks) = (stage.internal.clone(), acks.clone());
        std::thread::Builder::new()
            .name("bench-routing-pacer".into())
            .spawn(move || {
                for (i, request) in requests.into_iter().enumerate() {
                    let intended = intended(start, i);
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    // Spread over the replicas, as conversation-svc's calls are by a load
                    // balancer.
                    let mut client = clients[i % clients.len()].clone();
                    let (acks, slots, done) = (acks.clone(), slots.clone(), done_tx.clone());
                    runtime.spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        let sent = Instant::now();
                        let answer = tokio::time::timeout(
                            CALL_TIMEOUT,
                            client.enqueue_conversation(request),
                        )
                        .await;
                        let answered = Instant::now();
                        let mut acks = acks.lock().expect("acks lock");
                        acks.latency.saturating_record(micros(answered - intended));
                        acks.service.saturating_record(micros(answered - sent));
                        match answer {
                            Ok(Ok(_)) => acks.acked[i] = true,
                            Ok(Err(status)) => {
                                acks.errors += 1;
                                acks.first_error.get_or_insert(status.to_string());
                            }
                            Err(_) => {
                                acks.errors += 1;
                                acks.first_error
                                    .get_or_insert(format!("no answer within {CALL_TIMEOUT:?}"));
                            }
                        }
                        drop(done);
                    });
                }
            })
            .expect("spawning the pacing thread")
    };
    let _ = done_rx.recv().await;
    let acked_elapsed = start.elapsed();
    let acks_cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    let _ = pacer.join();
    let Acks {
        latency,
        service,
        errors,
        first_error,
        acked,
    } = std::mem::replace(
        &mut *acks.lock().expect("acks lock"),
        Acks {
            latency: histogram(),
            service: histogram(),
            errors: 0,
            first_error: None,
            acked: Vec::new(),
        },
    );
    let acks = Run {
        mode: Mode::Open { rate },
        ok: acked.iter().filter(|a| **a).count() as u64,
        errors,
        first_error,
        elapsed: acked_elapsed,
        cpu: acks_cpu,
        latency,
        service: Some(service),
    };

    let (acked_ids, starts): (Vec<String>, Vec<Instant>) = ids
        .into_iter()
        .zip(acked)
        .enumerate()
        .filter(|(_, (_, acked))| *acked)
        .map(|(i, (id, _))| (id, intended(start, i)))
        .unzip();
    let last_intended = intended(start, count as usize - 1);
    let seen = stage
        .observer
        .wait_offered(&acked_ids, last_intended + OFFER_WAIT)
        .await;
    let cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    let now = Instant::now();
    let mut latency = histogram();
    let (mut ok, mut last) = (0, start);
    for (intended, seen) in starts.iter().zip(&seen) {
        match seen {
            Some(at) => {
                ok += 1;
                latency.saturating_record(micros(at.saturating_duration_since(*intended)));
                last = last.max(*at);
            }
            None => latency.saturating_record(micros(now.saturating_duration_since(*intended))),
        }
    }
    let missing = acked_ids.len() as u64 - ok;
    let offered = Run {
        mode: Mode::Open { rate },
        ok,
        errors: missing + acks.errors,
        first_error: match missing {
            0 => acks.first_error.clone().or(stage.observer.error()),
            n => Some(format!(
                "{n} conversations not offered within {OFFER_WAIT:?} of the last intended start"
            )),
        },
        elapsed: last.saturating_duration_since(start),
        cpu,
        latency,
        service: None,
    };
    Paced {
        acks,
        offered,
        ids: acked_ids,
    }
}

/// Latency quantiles of `run` against the same quantiles of `baseline`, in ms; the p99
/// carries `goal`.
fn latency_figures(
    result: &mut ScenarioResult,
    subject: &str,
    run: &Run,
    baseline_name: &str,
    baseline: &Run,
    quantiles: &[(f64, &str)],
    goal: &'static str,
) {
    for &(q, label) in quantiles {
        let mut figure = Figure::new(
            format!("{subject}: {label}"),
            "ms",
            run.latency_us(q) / 1000.0,
            baseline_name,
            baseline.latency_us(q) / 1000.0,
            Better::Lower,
        );
        if q == 0.99 && !goal.is_empty() {
            figure = figure.goal(goal);
        }
        result.figures.push(figure);
    }
}

/// A web-chat queue named `name` with the defaults (most available capacity first,
/// 30 s offer timeout, no rule).
fn chat_queue(name: &str) -> switchboard_proto::routing::v1::Queue {
    switchboard_proto::routing::v1::Queue {
        display_name: name.to_owned(),
        ..Default::default()
    }
}

/// `d` as a protobuf duration.
fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
