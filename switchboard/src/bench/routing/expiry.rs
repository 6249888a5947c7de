//! `offer-expiry`: how late after its deadline routing-svc times out a pending offer
//! nobody answers, with many offers pending, against few.
//!
//! With 10,000 offers pending at once and nobody answering, they fall due at the pace they
//! were made: all offers get one timeout, long enough for the last to be made before the
//! first falls due. That is the goal's measurement. A harsher one follows: the deadlines
//! squeezed into a few seconds, a burst of time-outs faster than routing-svc can make
//! offers. Making 10,000 offers takes longer than that, so there the agents are spread
//! over queues, and queue by queue the offer timeout is set, the conversations enqueued
//! and their offers awaited, so that the deadlines of all offers fall within a few seconds
//! of each other, a lead time after the first enqueue.

use std::collections::{HashMap, HashSet};

use super::*;
use switchboard_proto::routing::v1 as routing;
use switchboard_server_kit::db::now_micros;

/// How long after the last deadline to wait for the time-outs; one not seen by then is an
/// error. Long: the whole distribution is the figure, however late its tail.
const EXPIRY_WAIT: Duration = Duration::from_secs(120);
/// Shortest offer timeout set, for a queue reached after its planned deadline.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);

/// How the deadlines of one measurement fall.
#[derive(Clone, Copy)]
enum Deadlines {
    /// One offer timeout for every offer: they fall due at the pace they were made.
    AsMade,
    /// Within the plan's spread of each other, whatever time the offers took to make.
    Squeezed,
}

impl Deadlines {
    fn name(self) -> &'static str {
        match self {
            Deadlines::AsMade => "falling due as made",
            Deadlines::Squeezed => "squeezed",
        }
    }
}

/// Pending offers nobody answers, one per agent, timed out by routing-svc: the baseline's
/// count, then the plan's as made, then the plan's squeezed, each over agents of its own.
pub(in crate::bench) async fn offer_expiry(
    plan: &crate::bench::Plan,
    dir: &Path,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "offer-expiry",
        "sqlite",
        "pending offers nobody answers (one per agent, agents of one unit, spread over queues): lateness = offer.timed_out seen on the event stream - the offer's expire_time, with N pending (falling due as they were made; then squeezed into a few seconds) vs the same with few pending",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        // One unit each: a time-out withdraws the agent's other pending offers, so only one
        // offer per agent can time out.
        let profile = stage.create_capacity_profile(1).await?;
        let mut measured = Vec::new();
        for (count, deadlines) in [
            (plan.expiry_baseline, Deadlines::Squeezed),
            (plan.expiry_pending, Deadlines::AsMade),
            (plan.expiry_pending, Deadlines::Squeezed),
        ] {
            // Each measurement's conversations out of the way of the next: they would wait
            // on for agents in RONA.
            if let Some(earlier) = measured.last() {
                let earlier: &Expired = earlier;
                stage.cancel(&earlier.conversation_ids).await?;
            }
            measured.push(expire(stage, plan, &profile, count, deadlines, &mut result).await?);
        }
        let [base, as_made, squeezed]: [Expired; 3] = measured
            .try_into()
            .map_err(|_| anyhow::anyhow!("three expiry measurements"))?;
        let baseline_name = format!(
            "the same with {} pending",
            base.timed_out.ok + base.timed_out.errors
        );
        for (subject, goal) in [(&as_made, "p99 <= 250 ms"), (&squeezed, "")] {
            latency_figures(
                &mut result,
                &format!(
                    "offer expiry, {} pending, deadlines over {:.1} s ({:.0} due per second): lateness after the deadline",
                    subject.timed_out.ok + subject.timed_out.errors,
                    subject.deadline_spread_s,
                    subject.due_per_s,
                ),
                &subject.timed_out,
                &baseline_name,
                &base.timed_out,
                &[(0.5, "p50"), (0.99, "p99"), (1.0, "max")],
                goal,
            );
        }
        result.memory_figure(idle);
        Ok(())
    })
    .await?;
    Ok(result)
}

/// What one expiry measurement saw.
struct Expired {
    /// Latency: each offer's time-out seen minus its `expire_time`; `elapsed` from the
    /// first deadline to the last time-out seen; process CPU from the wait's start to the
    /// last time-out seen. An offer whose time-out was not seen is an error.
    timed_out: Run,
    /// From the first deadline to the last.
    deadline_spread_s: f64,
    /// Offers falling due per second, over that spread.
    due_per_s: f64,
    conversation_ids: Vec<String>,
}

/// `count` agents over the plan's queues (each agent in one), then for each queue in turn
/// one conversation per agent enqueued and its offers awaited (`Squeezed`: the queue's
/// offer timeout set first, to land its deadlines in the planned window); then the wait
/// for every offer to time out.
async fn expire(
    stage: &RoutingStage,
    plan: &crate::bench::Plan,
    profile: &str,
    count: usize,
    deadlines: Deadlines,
    result: &mut ScenarioResult,
) -> anyhow::Result<Expired> {
    let mode = deadlines.name();
    let queue_count = plan.expiry_queues.clamp(1, count.max(1));
    let started = Instant::now();
    let mut queues = Vec::with_capacity(queue_count);
    for k in 0..queue_count {
        // As evenly as they go: the first `count % queue_count` queues get one more.
        let agents = count / queue_count + usize::from(k < count % queue_count);
        let queue = stage
            .create_queue(chat_queue(&format!("Expiry {count}, {mode}, {k}")))
            .await?;
        stage
            .add_agents(agents, profile, std::slice::from_ref(&queue), &[])
            .await?;
        queues.push((queue, new_ids(agents as u64)));
    }
    result.runs.push(serde_json::json!({
        "label": format!("set-up of {count} agents of one unit over {queue_count} queues"),
        "elapsed_s": started.elapsed().as_secs_f64(),
    }));

    // The lead in proportion to the offers to make, never under twice the spread.
    let lead = plan
        .expiry_lead
        .mul_f64(count as f64 / plan.expiry_pending.max(1) as f64)
        .max(plan.expiry_spread * 2);
    let cpu_before = proc_stats::cpu_time();
    let started = Instant::now();
    let enqueues_start = now_micros();
    let first_planned = enqueues_start + micros_i64(lead);
    let step = micros_i64(plan.expiry_spread) / i64::try_from(queue_count).unwrap_or(1);
    let mut sent = Sent {
        ids: Vec::new(),
        at: Vec::new(),
    };
    let mut seen = Vec::new();
    let mut enqueues = Vec::new();
    if let Deadlines::AsMade = deadlines {
        for (queue, _) in &queues {
            stage.set_offer_timeout(queue, lead).await?;
        }
    }
    for (k, (queue, ids)) in queues.iter().enumerate() {
        if let Deadlines::Squeezed = deadlines {
            let planned = first_planned + step * i64::try_from(k).unwrap_or(0);
            let timeout = u64::try_from(planned - now_micros()).unwrap_or(0);
            stage
                .set_offer_timeout(queue, Duration::from_micros(timeout).max(MIN_TIMEOUT))
                .await?;
        }
        let (run, acked) = enqueue_all(stage, queue, ids, plan.in_flight).await;
        // This queue's offers made before the next queue's enqueues, so that each offer is
        // made soon after its queue's timeout was set and falls due where planned.
        seen.extend(
            stage
                .observer
                .wait_offered(&acked.ids, Instant::now() + OFFER_WAIT)
                .await,
        );
        sent.ids.extend(acked.ids);
        sent.at.extend(acked.at);
        enqueues.push(run);
    }
    let enqueued = Run {
        mode: Mode::Closed {
            in_flight: plan.in_flight,
        },
        ok: enqueues.iter().map(|r| r.ok).sum(),
        errors: enqueues.iter().map(|r| r.errors).sum(),
        first_error: enqueues.iter().find_map(|r| r.first_error.clone()),
        elapsed: started.elapsed(),
        cpu: proc_stats::cpu_time().saturating_sub(cpu_before),
        latency: enqueues.into_iter().fold(histogram(), |mut all, run| {
            let _ = all.add(&run.latency);
            all
        }),
        service: None,
    };
    result.add_run(
        &format!("enqueues of {count} conversations, queue by queue, closed loop, {mode}"),
        &enqueued,
    );
    let offered = offers_run(
        &sent,
        &seen,
        &format!("within {OFFER_WAIT:?} of their queue's last enqueue"),
        started,
        proc_stats::cpu_time().saturating_sub(cpu_before),
        &enqueued,
        stage,
    );
    result.add_run(
        &format!("enqueued -> offered, {count} conversations (offers left to expire), {mode}"),
        &offered,
    );

    // Each conversation's first offer, with its deadline as the offer record holds it.
    let ours: HashSet<&str> = sent.ids.iter().map(String::as_str).collect();
    let mut first: HashMap<String, routing::Offer> = HashMap::new();
    for (queue, _) in &queues {
        for offer in stage.offers_of_queue(queue).await? {
            if !ours.contains(offer.conversation_id.as_str()) {
                continue;
            }
            let earlier = first
                .get(&offer.conversation_id)
                .is_some_and(|kept| micros_of(&kept.create_time) <= micros_of(&offer.create_time));
            if !earlier {
                first.insert(offer.conversation_id.clone(), offer);
            }
        }
    }
    let offers: Vec<routing::Offer> = first.into_values().collect();
    let offer_ids: Vec<String> = offers.iter().map(|o| o.id.clone()).collect();
    let deadlines: Vec<i64> = offers.iter().map(|o| micros_of(&o.expire_time)).collect();
    let first_deadline = deadlines.iter().copied().min().unwrap_or(0);
    let last_deadline = deadlines.iter().copied().max().unwrap_or(0);
    let last_made = offers
        .iter()
        .map(|o| micros_of(&o.create_time))
        .max()
        .unwrap_or(0);

    let cpu_before = proc_stats::cpu_time();
    let to_last = u64::try_from(last_deadline.saturating_sub(now_micros())).unwrap_or(0);
    let until = Instant::now() + Duration::from_micros(to_last) + EXPIRY_WAIT;
    let seen = stage.observer.wait_timed_out(&offer_ids, until).await;
    let cpu = proc_stats::cpu_time().saturating_sub(cpu_before);
    let now = now_micros();
    let mut latency = histogram();
    let (mut ok, mut last_seen) = (0, first_deadline);
    for (deadline, seen) in deadlines.iter().zip(&seen) {
        let at = match seen {
            Some(at) => {
                ok += 1;
                last_seen = last_seen.max(*at);
                *at
            }
            None => now,
        };
        latency.saturating_record(
            u64::try_from(at.saturating_sub(*deadline))
                .unwrap_or(0)
                .max(1),
        );
    }
    let missing = offers.len() as u64 - ok;
    let deadline_spread_s = (last_deadline - first_deadline) as f64 / 1e6;
    let timed_out = Run {
        mode: Mode::Open {
            rate: offers.len() as f64 / deadline_spread_s.max(1e-3),
        },
        ok,
        errors: missing,
        first_error: match missing {
            0 => stage.observer.error(),
            n => Some(format!(
                "{n} offers not seen timed out within {EXPIRY_WAIT:?} of the last deadline"
            )),
        },
        elapsed: Duration::from_micros(u64::try_from(last_seen - first_deadline).unwrap_or(0)),
        cpu,
        latency,
        service: None,
    };
    result.runs.push(serde_json::json!({
        "label": format!("deadlines of the {} offers pending over {queue_count} queues, {}", offers.len(), mode),
        "offers": offers.len(),
        "deadline_spread_s": deadline_spread_s,
        // Negative when offers were still being made as the first fell due.
        "first_deadline_after_last_offer_made_s": (first_deadline - last_made) as f64 / 1e6,
        "lead_s": lead.as_secs_f64(),
        "first_deadline_after_first_enqueue_s": (first_deadline - enqueues_start) as f64 / 1e6,
    }));
    result.add_run(
        &format!(
            "lateness of the time-outs, {} pending, {}, after each offer's expire_time",
            offers.len(),
            mode
        ),
        &timed_out,
    );
    stage.observer.forget_timeouts(&offer_ids);
    Ok(Expired {
        timed_out,
        deadline_spread_s,
        due_per_s: offers.len() as f64 / deadline_spread_s.max(1e-3),
        conversation_ids: sent.ids,
    })
}

fn micros_i64(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A timestamp in µs since the epoch (0 when absent).
fn micros_of(timestamp: &Option<prost_types::Timestamp>) -> i64 {
    timestamp.as_ref().map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos / 1_000))
    })
}
