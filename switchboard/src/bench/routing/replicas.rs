//! `routing-replicas`: created → offered with routing-svc as two replicas on one
//! PostgreSQL database, as a platform team deploys it, against one replica on SQLite (the
//! default) and one replica on the same PostgreSQL server, in the same run.

use switchboard_server_kit::testing::ScratchDatabases;

use super::scale::AGENT_UNITS;
use super::*;

/// Where one measurement's routing-svc keeps its data, and how many replicas share it.
struct Deployment {
    name: &'static str,
    postgres: bool,
    replicas: usize,
}

const DEPLOYMENTS: [Deployment; 3] = [
    Deployment {
        name: "one replica on SQLite",
        postgres: false,
        replicas: 1,
    },
    Deployment {
        name: "one replica on PostgreSQL",
        postgres: true,
        replicas: 1,
    },
    Deployment {
        name: "two replicas on PostgreSQL",
        postgres: true,
        replicas: 2,
    },
];

/// Each deployment on a fresh database with the plan's agents in one queue; conversations
/// enqueued open loop at the plan's highest rate, spread over the replicas in turn.
pub(in crate::bench) async fn routing_replicas(
    plan: &crate::bench::Plan,
    dir: &Path,
    postgres: &ScratchDatabases,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "routing-replicas",
        "postgres",
        "created -> offered (enqueue's intended start -> offer seen on the event stream of any replica), open loop, enqueues spread over the replicas in turn, agents of routing-svc alone: two replicas on one PostgreSQL database vs one replica on SQLite and one on PostgreSQL",
    );
    let agents = plan.replicas_agents;
    let rate = plan.flow_rates.iter().copied().fold(1.0, f64::max);
    let idle = proc_stats::rss_kib();
    let mut measured = Vec::new();
    for deployment in &DEPLOYMENTS {
        let url = if deployment.postgres {
            scenarios::create_database(postgres, "routing").await?
        } else {
            format!("sqlite://{}", dir.join("replicas-routing.db").display())
        };
        let stage = RoutingStage::start_on(&url, deployment.replicas).await?;
        let outcome = measure(&stage, plan, agents, rate, deployment, &mut result).await;
        let stopped = stage.stop().await;
        measured.push(outcome?);
        stopped?;
    }
    let [sqlite, one, two]: [Run; 3] = measured
        .try_into()
        .map_err(|_| anyhow::anyhow!("one run per deployment"))?;
    latency_figures(
        &mut result,
        &format!("created -> offered, {agents} agents, {rate:.0}/s, two replicas on PostgreSQL"),
        &two,
        "one replica on SQLite",
        &sqlite,
        &[(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")],
        "p99 <= 50 ms",
    );
    latency_figures(
        &mut result,
        &format!("created -> offered, {agents} agents, {rate:.0}/s, two replicas on PostgreSQL"),
        &two,
        "one replica on PostgreSQL",
        &one,
        &[(0.5, "p50"), (0.99, "p99")],
        "",
    );
    result.memory_figure(idle);
    Ok(result)
}

/// Sets `agents` up in a new queue of `stage`, then the plan's rounds of a paced run, each
/// followed by the cancellation of its conversations; the round with the median p99.
async fn measure(
    stage: &RoutingStage,
    plan: &crate::bench::Plan,
    agents: usize,
    rate: f64,
    deployment: &Deployment,
    result: &mut ScenarioResult,
) -> anyhow::Result<Run> {
    let profile = stage.create_capacity_profile(AGENT_UNITS).await?;
    let queue = stage.create_queue(chat_queue("Replicas")).await?;
    let started = Instant::now();
    stage
        .add_agents(agents, &profile, std::slice::from_ref(&queue), &[])
        .await?;
    result.runs.push(serde_json::json!({
        "label": format!("set-up of {agents} agents, {}", deployment.name),
        "elapsed_s": started.elapsed().as_secs_f64(),
    }));
    let mut runs = Vec::new();
    for _ in 0..plan.rounds {
        let paced = paced(stage, &queue, rate, plan.flow_time, plan.open_max_in_flight).await;
        result.add_run(
            &format!(
                "EnqueueConversation acknowledged, {}, {rate:.0}/s, open loop",
                deployment.name
            ),
            &paced.acks,
        );
        result.add_run(
            &format!(
                "created -> offered, {}, {rate:.0}/s, open loop",
                deployment.name
            ),
            &paced.offered,
        );
        stage.cancel(&paced.ids).await?;
        runs.push(paced.offered);
    }
    Ok(scenarios::median_tail(runs))
}
