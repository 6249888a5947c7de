//! `routing-scale`: offers per second as the number of Available agents in the queue
//! grows.

use super::*;
use switchboard_proto::routing::v1::AssignmentMethod;

/// Capacity units of each agent: room for four conversations per agent at the smallest
/// agent count, so that every step routes the same conversations to agents with room.
pub(super) const AGENT_UNITS: i32 = 4;

/// At each agent count of the plan (agents added between steps, same routing-svc): a
/// backlog released at once and a burst enqueued closed loop, each against the first
/// count.
pub(in crate::bench) async fn routing_scale(
    plan: &crate::bench::Plan,
    dir: &Path,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "routing-scale",
        "sqlite",
        "offers per second with N Available agents in the queue, straight to routing-svc: a backlog held and released at once (matching alone), and a burst enqueued closed loop; vs the same with the first (smallest) N",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let profile = stage.create_capacity_profile(AGENT_UNITS).await?;
        let queue = stage.create_queue(chat_queue("Scale")).await?;
        let queues = [queue.clone()];
        let (backlog, count) = (plan.routing_backlog, plan.routing_burst);
        // Per agent count: the best release and the best burst.
        let mut steps: Vec<(usize, Run, Run)> = Vec::new();
        let mut agents = 0;
        for &step in &plan.routing_agents {
            let more = step.saturating_sub(agents);
            let started = Instant::now();
            stage.add_agents(more, &profile, &queues, &[]).await?;
            agents = step;
            result.runs.push(serde_json::json!({
                "label": format!("set-up of {more} agents ({step} in all): profile and presence each"),
                "elapsed_s": started.elapsed().as_secs_f64(),
                "agents_per_s": more as f64 / started.elapsed().as_secs_f64().max(1e-9),
            }));
            let release_backlog = || {
                release(
                    stage,
                    &queue,
                    AssignmentMethod::MostAvailableCapacity,
                    backlog,
                    plan.in_flight,
                )
            };
            if steps.is_empty() {
                // The first round on a fresh database ran about 40 % faster than every
                // later one (empty offer and decision tables), whatever the agent count:
                // one unrecorded round first, so that the baseline's rounds and the
                // others' start from tables already in use.
                release_backlog().await?;
            }
            let (mut releases, mut bursts) = (Vec::new(), Vec::new());
            for _ in 0..plan.rounds {
                let released = release_backlog().await?;
                result.add_run(
                    &format!("backlog of {backlog} released at once, {step} agents"),
                    &released,
                );
                releases.push(released);
                let burst = burst(stage, &queue, count, plan.in_flight).await?;
                result.add_run(
                    &format!("enqueues of a burst of {count}, {step} agents, closed loop"),
                    &burst.enqueued,
                );
                result.add_run(
                    &format!("burst of {count} offered, {step} agents"),
                    &burst.offered,
                );
                bursts.push(burst.offered);
            }
            steps.push((step, scenarios::best(releases), scenarios::best(bursts)));
        }
        let Some(((first, base_release, base_burst), rest)) = steps.split_first() else {
            anyhow::bail!("the plan has no agent count for routing-scale");
        };
        for (step, released, burst) in rest {
            result.figures.push(
                Figure::new(
                    format!(
                        "backlog of {backlog} released at once, {step} agents: offers per second"
                    ),
                    "offers/s",
                    released.throughput(),
                    format!("the same with {first} agents"),
                    base_release.throughput(),
                    Better::Higher,
                )
                .goal(">= 0.8"),
            );
            result.figures.push(Figure::new(
                format!("backlog of {backlog} released at once, {step} agents: process CPU per offer"),
                "µs",
                released.cpu_per_call_us(),
                format!("the same with {first} agents"),
                base_release.cpu_per_call_us(),
                Better::Lower,
            ));
            result.figures.push(Figure::new(
                format!("burst of {count} enqueued closed loop, {step} agents: offers per second"),
                "offers/s",
                burst.throughput(),
                format!("the same with {first} agents"),
                base_burst.throughput(),
                Better::Higher,
            ));
        }
        result.memory_figure(idle);
        Ok(())
    })
    .await?;
    Ok(result)
}
