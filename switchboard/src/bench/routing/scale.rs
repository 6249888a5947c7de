//! `routing-scale`: offers per second for a burst of conversations as the number of
//! Available agents in the queue grows.

use super::*;

/// Capacity units of each agent: room for a burst of four conversations per agent at the
/// smallest agent count, so that every step routes the same burst to agents with room.
pub(super) const AGENT_UNITS: i32 = 4;

/// Offers per second for a burst of conversations with N Available agents in the queue, at
/// each agent count of the plan (agents added between steps, same routing-svc), against
/// the first count.
pub(in crate::bench) async fn routing_scale(
    plan: &crate::bench::Plan,
    dir: &Path,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "routing-scale",
        "sqlite",
        "offers per second for a burst of conversations enqueued straight to routing-svc, with N Available agents in the queue, vs the same burst with the first (smallest) N",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let profile = stage.create_capacity_profile(AGENT_UNITS).await?;
        let queue = stage.create_queue(chat_queue("Scale")).await?;
        let queues = [queue.clone()];
        let count = plan.routing_burst;
        // Per agent count: the best burst, and the most offers per second while enqueues
        // kept the matcher awake.
        let mut steps: Vec<(usize, Run, f64)> = Vec::new();
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
            let (mut rounds, mut awake) = (Vec::new(), Vec::new());
            for _ in 0..plan.rounds {
                let burst = burst(stage, &queue, count, plan.in_flight).await?;
                result.add_run(
                    &format!("enqueues of a burst of {count}, {step} agents, closed loop"),
                    &burst.enqueued,
                );
                result.add_run(
                    &format!("burst of {count} offered, {step} agents"),
                    &burst.offered,
                );
                result.runs.push(burst.awake.to_json(&format!(
                    "offers while the enqueues were sent, {step} agents"
                )));
                awake.push(burst.awake.per_second());
                rounds.push(burst.offered);
            }
            steps.push((step, scenarios::best(rounds), awake.into_iter().fold(0.0, f64::max)));
        }
        let Some(((first, base, base_awake), rest)) = steps.split_first() else {
            anyhow::bail!("the plan has no agent count for routing-scale");
        };
        for (step, run, awake) in rest {
            result.figures.push(
                Figure::new(
                    format!("burst of {count} conversations, {step} agents: offers per second"),
                    "offers/s",
                    run.throughput(),
                    format!("the same with {first} agents"),
                    base.throughput(),
                    Better::Higher,
                )
                .goal(">= 0.8"),
            );
            result.figures.push(Figure::new(
                format!(
                    "burst of {count} conversations, {step} agents: offers per second while enqueues wake the matcher"
                ),
                "offers/s",
                *awake,
                format!("the same with {first} agents"),
                *base_awake,
                Better::Higher,
            ));
            result.figures.push(Figure::new(
                format!("burst of {count} conversations, {step} agents: process CPU per offer"),
                "µs",
                run.cpu_per_call_us(),
                format!("the same with {first} agents"),
                base.cpu_per_call_us(),
                Better::Lower,
            ));
        }
        result.memory_figure(idle);
        Ok(())
    })
    .await?;
    Ok(result)
}
