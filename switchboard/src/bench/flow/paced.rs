//! Created → offered, open loop.

use super::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use switchboard_proto::conversation::v1 as conv;
use tokio::sync::Semaphore;

use crate::bench::load::{CALL_TIMEOUT, Mode, Run};
use crate::bench::proc_stats;
use crate::bench::report::{Better, Figure, ScenarioResult};

/// The acknowledgements of one paced run's creates.
pub(super) struct Acks {
    pub(super) latency: Histogram<u64>,
    pub(super) service: Histogram<u64>,
    pub(super) ok: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
}

/// Open loop: `rate` creates per second for `duration` into `queue_id`, each sent at its
/// intended time by a pacing thread whatever happened to the earlier ones (at most
/// `max_in_flight` outstanding; a wait for a slot counts), each acknowledged one handed to
/// the tracker as part of `run_id`. Returns the acknowledgements (latency from the intended
/// start) and the last intended start.
pub(super) async fn paced_creates(
    stage: &Stage,
    queue_id: &str,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    run_id: u32,
) -> (Run, Instant) {
    let tracker = stage.tracker.clone();
    let rate = rate.max(1.0);
    let count = ((rate * duration.as_secs_f64()).round() as u64).max(1);
    let acks = Arc::new(Mutex::new(Acks {
        latency: histogram(),
        service: histogram(),
        ok: 0,
        errors: 0,
        first_error: None,
    }));
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    // Every create holds a sender; `recv` returns `None` once the pacer and all are done.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let runtime = tokio::runtime::Handle::current();
    let requests: Vec<conv::CreateConversationRequest> = (0..count)
        .map(|i| stage.create_request(queue_id, i))
        .collect();

    let cpu_before = proc_stats::cpu_time();
    let start = Instant::now() + Duration::from_millis(2);
    let pacer = {
        let (client, tracker, acks) = (stage.bot.clone(), tracker.clone(), acks.clone());
        std::thread::Builder::new()
            .name("bench-flow-pacer".into())
            .spawn(move || {
                for (i, request) in requests.into_iter().enumerate() {
                    let intended = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let (mut client, tracker, acks, slots, done) = (
                        client.clone(),
                        tracker.clone(),
                        acks.clone(),
                        slots.clone(),
                        done_tx.clone(),
                    );
                    runtime.spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        let sent = Instant::now();
                        let answer =
                            tokio::time::timeout(CALL_TIMEOUT, client.create_conversation(request))
                                .await;
                        let answered = Instant::now();
                        let outcome = match answer {
                            Ok(Ok(response)) => response
                                .into_inner()
                                .conversation
                                .map(|c| c.id)
                                .ok_or_else(|| "an answer without a conversation".to_owned()),
                            Ok(Err(status)) => Err(status.to_string()),
                            Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
                        };
                        if let Ok(id) = &outcome {
                            tracker.created(id.clone(), run_id, intended);
                        }
                        let mut acks = acks.lock().expect("acks lock");
                        acks.latency.saturating_record(micros(answered - intended));
                        acks.service.saturating_record(micros(answered - sent));
                        match outcome {
                            Ok(_) => acks.ok += 1,
                            Err(err) => {
                                acks.errors += 1;
                                acks.first_error.get_or_insert(err);
                            }
                        }
                        drop(done);
                    });
                }
            })
            .expect("spawning the pacing thread")
    };
    let _ = done_rx.recv().await;
    let acked = start.elapsed();
    let acks_cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    let _ = pacer.join();
    let acks = std::mem::replace(
        &mut *acks.lock().expect("acks lock"),
        Acks {
            latency: histogram(),
            service: histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
        },
    );
    let run = Run {
        mode: Mode::Open { rate },
        ok: acks.ok,
        errors: acks.errors,
        first_error: acks.first_error,
        elapsed: acked,
        cpu: acks_cpu,
        latency: acks.latency,
        service: Some(acks.service),
    };
    let last_intended = start + Duration::from_secs_f64((count - 1) as f64 / rate);
    (run, last_intended)
}

/// One created → offered measurement: [`paced_creates`] into `queue_id`, then the wait for
/// every created conversation's offer on an agent's stream. Returns the creates'
/// acknowledgements and created → offered, both from the intended start; a conversation
/// not offered within [`OFFER_DEADLINE`] is an error. Waits for the agents to finish the
/// run's conversations before returning.
pub(super) async fn offered_run(
    stage: &Stage,
    queue_id: &str,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> (Run, Run) {
    let run_id = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
    let tracker = stage.tracker.clone();
    tracker.begin_run(run_id);
    let _ = tracker.take_errors();
    let cpu_before = proc_stats::cpu_time();
    let started = Instant::now();
    let (ack_run, last_intended) =
        paced_creates(stage, queue_id, rate, duration, max_in_flight, run_id).await;
    while tracker.offers_seen(run_id) < ack_run.ok
        && Instant::now() < last_intended + OFFER_DEADLINE
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let offers = tracker.finish_run(run_id);
    let offered_elapsed = started.elapsed();
    tracker.drain().await;
    let cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    let (agent_errors, agent_error) = tracker.take_errors();
    let first_error = match (offers.missing + offers.late, agent_error) {
        (0, agent_error) => agent_error,
        (n, _) => Some(format!(
            "{n} conversations not offered within {OFFER_DEADLINE:?} ({} never)",
            offers.missing
        )),
    };
    let offer_run = Run {
        mode: ack_run.mode,
        ok: offers.seen,
        errors: offers.missing + offers.late + agent_errors,
        first_error,
        elapsed: offered_elapsed,
        cpu,
        latency: offers.latency,
        service: None,
    };
    (ack_run, offer_run)
}

/// p50, p99 and p99.9 of created → offered against the same quantiles of a baseline run,
/// in ms; the p99 carries `goal`.
pub(super) fn offer_figures(
    result: &mut ScenarioResult,
    subject: &str,
    run: &Run,
    baseline_name: &str,
    baseline: &Run,
    goal: &'static str,
) {
    for (q, label) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")] {
        let mut figure = Figure::new(
            format!("{subject}: {label} (from intended start)"),
            "ms",
            run.latency_us(q) / 1000.0,
            baseline_name,
            baseline.latency_us(q) / 1000.0,
            Better::Lower,
        );
        if q == 0.99 {
            figure = figure.goal(goal);
        }
        result.figures.push(figure);
    }
}
