//! `routing-rules`: what a queue's routing rules (a required skill at a minimum level, an
//! overflow queue) cost, against a plain queue served by the same agents.

use super::scale::AGENT_UNITS;
use super::*;
use switchboard_proto::routing::v1 as routing;

/// Longer than any run: the overflow is configured (each waiting conversation carries its
/// overflow deadline and the matcher looks for due ones on every tick) but none falls due
/// while measuring.
const OVERFLOW_AFTER: Duration = Duration::from_secs(3600);

/// The same agents serve a plain queue and a queue with rules; bursts and open-loop runs
/// alternate between the two.
pub(in crate::bench) async fn routing_rules(
    plan: &crate::bench::Plan,
    dir: &Path,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "routing-rules",
        "sqlite",
        "a queue requiring skill billing at level 3 or more and overflowing to another queue after an hour, vs a plain queue, the same agents members of both: offers per second for a backlog released at once and for a burst, and created -> offered (enqueue's intended start -> offer seen on the event stream) open loop",
    );
    on_stage(dir, async |stage| {
        let idle = proc_stats::rss_kib();
        let profile = stage.create_capacity_profile(AGENT_UNITS).await?;
        let plain = stage.create_queue(chat_queue("Plain")).await?;
        let overflow = stage.create_queue(chat_queue("Overflow")).await?;
        let rules = stage
            .create_queue(routing::Queue {
                required_skills: vec![routing::SkillRequirement {
                    name: "billing".into(),
                    min_level: 3,
                }],
                overflow_queue_id: overflow,
                overflow_after: Some(proto_duration(OVERFLOW_AFTER)),
                ..chat_queue("Billing")
            })
            .await?;
        let agents = plan.rules_agents;
        let started = Instant::now();
        stage
            .add_agents(agents, &profile, &[plain.clone(), rules.clone()], &skills())
            .await?;
        result.runs.push(serde_json::json!({
            "label": format!("set-up of {agents} agents, members of both queues"),
            "elapsed_s": started.elapsed().as_secs_f64(),
        }));

        let (backlog, count) = (plan.routing_backlog, plan.routing_burst);
        let (mut plain_releases, mut rules_releases) = (Vec::new(), Vec::new());
        let (mut plain_bursts, mut rules_bursts) = (Vec::new(), Vec::new());
        for _ in 0..plan.rounds {
            for (queue, name, releases, bursts) in [
                (&plain, "plain queue", &mut plain_releases, &mut plain_bursts),
                (
                    &rules,
                    "queue with skill and overflow",
                    &mut rules_releases,
                    &mut rules_bursts,
                ),
            ] {
                let released = release(
                    stage,
                    queue,
                    routing::AssignmentMethod::MostAvailableCapacity,
                    backlog,
                    plan.in_flight,
                )
                .await?;
                result.add_run(
                    &format!("backlog of {backlog} released at once, {name}"),
                    &released,
                );
                releases.push(released);
                let burst = burst(stage, queue, count, plan.in_flight).await?;
                result.add_run(
                    &format!("enqueues of a burst of {count}, {name}, closed loop"),
                    &burst.enqueued,
                );
                result.add_run(&format!("burst of {count} offered, {name}"), &burst.offered);
                bursts.push(burst.offered);
            }
        }
        let (plain_release, rules_release) = (
            scenarios::best(plain_releases),
            scenarios::best(rules_releases),
        );
        result.figures.push(
            Figure::new(
                format!(
                    "backlog of {backlog} released at once, {agents} agents, queue with skill and overflow: offers per second"
                ),
                "offers/s",
                rules_release.throughput(),
                "the same in a plain queue",
                plain_release.throughput(),
                Better::Higher,
            )
            .goal(">= 0.83 (1/1.2)"),
        );
        result.figures.push(Figure::new(
            format!(
                "backlog of {backlog} released at once, {agents} agents, queue with skill and overflow: process CPU per offer"
            ),
            "µs",
            rules_release.cpu_per_call_us(),
            "the same in a plain queue",
            plain_release.cpu_per_call_us(),
            Better::Lower,
        ));
        let (plain_burst, rules_burst) =
            (scenarios::best(plain_bursts), scenarios::best(rules_bursts));
        result.figures.push(Figure::new(
            format!(
                "burst of {count} enqueued closed loop, {agents} agents, queue with skill and overflow: offers per second"
            ),
            "offers/s",
            rules_burst.throughput(),
            "the same in a plain queue",
            plain_burst.throughput(),
            Better::Higher,
        ));

        let rate = plan.flow_rates.iter().copied().fold(1.0, f64::max);
        let (mut plain_runs, mut rules_runs) = (Vec::new(), Vec::new());
        for _ in 0..plan.rounds {
            for (queue, name, runs) in [
                (&plain, "plain queue", &mut plain_runs),
                (&rules, "queue with skill and overflow", &mut rules_runs),
            ] {
                let paced = paced(stage, queue, rate, plan.flow_time, plan.open_max_in_flight).await;
                result.add_run(
                    &format!("EnqueueConversation acknowledged, {name}, {rate:.0}/s, open loop"),
                    &paced.acks,
                );
                result.add_run(
                    &format!("created -> offered, {name}, {rate:.0}/s, open loop"),
                    &paced.offered,
                );
                stage.cancel(&paced.ids).await?;
                runs.push(paced.offered);
            }
        }
        latency_figures(
            &mut result,
            &format!(
                "created -> offered, {agents} agents, {rate:.0}/s, queue with skill and overflow"
            ),
            &scenarios::median_tail(rules_runs),
            "the same in a plain queue",
            &scenarios::median_tail(plain_runs),
            &[(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")],
            "<= 1.2",
        );
        result.memory_figure(idle);
        Ok(())
    })
    .await?;
    Ok(result)
}

/// Every agent's skills: the one the queue requires, above its minimum, among others.
fn skills() -> Vec<routing::AgentSkill> {
    [("spanish", 2), ("billing", 4), ("refunds", 3)]
        .into_iter()
        .map(|(name, level)| routing::AgentSkill {
            name: name.into(),
            level,
        })
        .collect()
}
