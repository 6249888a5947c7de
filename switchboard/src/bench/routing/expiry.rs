//! `offer-expiry`: how late after its deadline routing-svc times out a pending offer
//! nobody answers, with many offers pending, against few.

use std::collections::{HashMap, HashSet};

use super::*;
use switchboard_proto::routing::v1 as routing;
use switchboard_server_kit::db::now_micros;

/// How long after the last deadline to wait for the time-outs; one not seen by then is an
/// error.
const EXPIRY_WAIT: Duration = Duration::from_secs(30);

/// Pending offers nobody answers, one per agent, timed out by routing-svc: the baseline's
/// count, then the plan's, each in a queue and with agents of its own.
pub(in crate::bench) async fn offer_expiry(
    plan: &crate::bench::Plan,
    dir: &Path,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "offer-expiry",
        "sqlite",
        "pending offers nobody answers (one per agent, agents of one unit), deadlines spread over a few seconds: lateness = offer.timed_out seen on the event stream - the offer's expire_time, with N pending vs the same with few pending",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        // One unit each: a time-out withdraws the agent's other pending offers, so only one
        // offer per agent can time out.
        let profile = stage.create_capacity_profile(1).await?;
        let base_count = plan.expiry_baseline;
        let base = expire(stage, plan, &profile, base_count, &mut result).await?;
        // Out of the way: the baseline's conversations would wait on for agents in RONA.
        stage.cancel(&base.conversation_ids).await?;
        let count = plan.expiry_pending;
        let subject = expire(stage, plan, &profile, count, &mut result).await?;
        latency_figures(
            &mut result,
            &format!(
                "offer expiry, {} pending, deadlines over {:.1} s: lateness after the deadline",
                subject.timed_out.ok + subject.timed_out.errors,
                subject.deadline_spread_s
            ),
            &subject.timed_out,
            &format!(
                "the same with {} pending",
                base.timed_out.ok + base.timed_out.errors
            ),
            &base.timed_out,
            &[(0.5, "p50"), (0.99, "p99"), (1.0, "max")],
            "p99 <= 250 ms",
        );
        result.memory_figure(idle);
        Ok(())
    })
    .await?;
    Ok(result)
}

/// What one expiry measurement saw.
struct Expired {
    /// Latency: each offer's time-out seen minus its `expire_time`; `elapsed` from the
    /// first deadline to the last time-out seen; process CPU from the offers made to the
    /// last time-out seen. An offer whose time-out was not seen is an error.
    timed_out: Run,
    /// From the first deadline to the last.
    deadline_spread_s: f64,
    conversation_ids: Vec<String>,
}

/// `count` agents in a new queue (the plan's offer timeout), `count` conversations enqueued
/// evenly over the plan's spread so that each agent is offered one, then the wait for
/// every offer to time out.
async fn expire(
    stage: &RoutingStage,
    plan: &crate::bench::Plan,
    profile: &str,
    count: usize,
    result: &mut ScenarioResult,
) -> anyhow::Result<Expired> {
    let queue = stage
        .create_queue(routing::Queue {
            offer_timeout: Some(proto_duration(plan.expiry_offer_timeout)),
            ..chat_queue(&format!("Expiry {count}"))
        })
        .await?;
    let started = Instant::now();
    stage
        .add_agents(count, profile, std::slice::from_ref(&queue), &[])
        .await?;
    result.runs.push(serde_json::json!({
        "label": format!("set-up of {count} agents of one unit"),
        "elapsed_s": started.elapsed().as_secs_f64(),
    }));

    let rate = count as f64 / plan.expiry_spread.as_secs_f64().max(1e-3);
    let paced = paced(
        stage,
        &queue,
        rate,
        plan.expiry_spread,
        plan.open_max_in_flight,
    )
    .await;
    result.add_run(
        &format!("EnqueueConversation acknowledged, {count} agents, {rate:.0}/s, open loop"),
        &paced.acks,
    );
    result.add_run(
        &format!(
            "created -> offered, {count} agents, {rate:.0}/s, open loop (offers left to expire)"
        ),
        &paced.offered,
    );

    // Each conversation's first offer, with its deadline as the offer record holds it.
    let ours: HashSet<&str> = paced.ids.iter().map(String::as_str).collect();
    let mut first: HashMap<String, routing::Offer> = HashMap::new();
    for offer in stage.offers_of_queue(&queue).await? {
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
    let timed_out = Run {
        mode: Mode::Open { rate },
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
    let deadline_spread_s = (last_deadline - first_deadline) as f64 / 1e6;
    result.runs.push(serde_json::json!({
        "label": format!("deadlines of the {} offers pending with {count} agents", offers.len()),
        "offers": offers.len(),
        "offer_timeout_s": plan.expiry_offer_timeout.as_secs_f64(),
        "deadline_spread_s": deadline_spread_s,
        // Negative when offers were still being made as the first fell due.
        "first_deadline_after_last_offer_made_s": (first_deadline - last_made) as f64 / 1e6,
    }));
    result.add_run(
        &format!(
            "lateness of the time-outs, {} pending, after each offer's expire_time",
            offers.len()
        ),
        &timed_out,
    );
    stage.observer.forget_timeouts(&offer_ids);
    Ok(Expired {
        timed_out,
        deadline_spread_s,
        conversation_ids: paced.ids,
    })
}

/// A timestamp in µs since the epoch (0 when absent).
fn micros_of(timestamp: &Option<prost_types::Timestamp>) -> i64 {
    timestamp.as_ref().map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos / 1_000))
    })
}
