//! `reports`: what a report costs as the history grows. Two reporting stores hold the same
//! busy tenant at the same daily volume, one with ten times the days of the other; the
//! 30-day reassignments report over the most recent month is asked of each in turn.
//!
//! The events are applied straight to reporting-svc's store, the way its consumers apply
//! them (`Store::apply_batch`, a transaction per batch with the cursor), without the two
//! services that would write them: what is measured is the report, not the history's
//! making. The report is computed as the RPC computes it (`Store::metric_counts` and
//! `domain::reports::reassignments`), in process.

use std::time::{Duration, Instant};

use reporting_svc::domain::facts::{Event, EventKind};
use reporting_svc::domain::metrics::{OfferKind, RoutingEvent, RoutingEventKind};
use reporting_svc::domain::period::Granularity;
use reporting_svc::domain::reports::{self, Frame};
use reporting_svc::store::{CONVERSATION_EVENTS, Entry, FactQuery, GroupBy, ROUTING_EVENTS};

use super::Plan;
use super::report::{Better, Figure, ScenarioResult};
use super::scenarios::{self, Store};

pub(super) const TENANT: &str = "0b6f2a4e-1d3c-4e5f-8a9b-0c1d2e3f4a5b";
pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;
/// The last instant of the history (exclusive): the report covers the 30 days before it.
pub(super) const HISTORY_END: i64 = 1_780_264_800_000_000; // 2026-06-01T00:00:00+02:00 (Paris)
/// Days of the smaller history; the larger has ten times as many at the same daily volume.
const SMALL_DAYS: i64 = 60;
/// Events applied per transaction, as a consumer catching up would.
const BATCH: usize = 1_000;
/// Queues of the tenant.
const QUEUES: u64 = 20;

/// A tiny deterministic generator (the history is the same in every run).
pub(super) struct Dice(pub(super) u64);

impl Dice {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn uuid(kind: u32, n: u64) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

/// The events of one conversation, in both logs: created in a queue, offered and accepted,
/// a transfer to another agent for three in ten, wrapped up and closed within the hour.
pub(super) fn conversation(
    dice: &mut Dice,
    n: u64,
    at: i64,
    agents: u64,
    conversations: &mut Vec<Event>,
    routing: &mut Vec<RoutingEvent>,
) {
    let id = uuid(1, n);
    let queue = uuid(2, dice.below(QUEUES));
    let first = uuid(3, dice.below(agents));
    let event = |kind: EventKind, when: i64, agent: &str, previous: &str| Event {
        log_sequence: 0,
        tenant_id: TENANT.to_owned(),
        conversation_id: id.clone(),
        kind,
        occurred_at: when,
        agent_id: agent.to_owned(),
        previous_agent_id: previous.to_owned(),
        queue_id: queue.clone(),
        channel: 1,
        conversation_created_at: Some(at),
        ..Event::default()
    };
    let offer = |kind: RoutingEventKind, when: i64| RoutingEvent {
        log_sequence: 0,
        tenant_id: TENANT.to_owned(),
        kind,
        occurred_at: when,
        agent_id: first.clone(),
        conversation_id: id.clone(),
        queue_id: queue.clone(),
        channel: 1,
        wait_started_at: Some(at),
        offer_kind: OfferKind::Queue,
        offer_id: uuid(4, n),
        offer_created_at: Some(at + 5_000_000),
        ..RoutingEvent::default()
    };
    let accepted = at + 5_000_000 + dice.below(30_000_000) as i64;
    conversations.push(event(EventKind::Created, at, "", ""));
    conversations.push(event(EventKind::Other, at, "", ""));
    routing.push(offer(RoutingEventKind::Other, at));
    routing.push(offer(RoutingEventKind::OfferCreated, at + 5_000_000));
    routing.push(offer(RoutingEventKind::OfferAccepted, accepted));
    conversations.push(event(EventKind::Assigned, accepted, &first, ""));
    let mut owner = first.clone();
    let mut now = accepted + dice.below(600_000_000) as i64;
    if dice.below(10) < 3 {
        let to = uuid(3, dice.below(agents));
        if to != owner {
            conversations.push(Event {
                transfer_id: uuid(5, n),
                transfer_to_agent_id: to.clone(),
                actor_id: owner.clone(),
                ..event(EventKind::TransferRequested, now, &owner, "")
            });
            now += 10_000_000;
            conversations.push(Event {
                transfer_id: uuid(5, n),
                answer_outcome: 2,
                ..event(EventKind::TransferResolved, now, &owner, "")
            });
            conversations.push(event(EventKind::Assigned, now, &to, &owner));
            owner = to;
        }
    }
    now += dice.below(1_800_000_000) as i64;
    conversations.push(Event {
        wrap_up_reason_ids: vec![uuid(6, dice.below(5))],
        ..event(EventKind::WrapUpSubmitted, now, &owner, "")
    });
    conversations.push(event(EventKind::Closed, now, &owner, ""));
}

/// A history of `events` events (roughly) ending at [`HISTORY_END`], spread over `days`,
/// applied to `store`; the events per second of the applying.
async fn load(
    store: &reporting_svc::store::Store,
    events: u64,
    days: i64,
    agents: u64,
) -> anyhow::Result<f64> {
    let mut dice = Dice(days as u64);
    // About ten events per conversation (both logs together).
    let total = (events / 10).max(1);
    let start = HISTORY_END - days * MICROS_PER_DAY;
    let step = (days * MICROS_PER_DAY) / total as i64;
    let (mut conversation_sequence, mut routing_sequence) = (0_i64, 0_i64);
    let mut applied = 0_u64;
    let started = Instant::now();
    let mut n = 0;
    while n < total {
        let (mut conversations, mut routing) = (Vec::new(), Vec::new());
        while conversations.len() + routing.len() < BATCH && n < total {
            let at = start + n as i64 * step + dice.below(step.max(1) as u64) as i64;
            conversation(&mut dice, n, at, agents, &mut conversations, &mut routing);
            n += 1;
        }
        for event in &mut conversations {
            conversation_sequence += 1;
            event.log_sequence = conversation_sequence;
        }
        for event in &mut routing {
            routing_sequence += 1;
            event.log_sequence = routing_sequence;
        }
        let entries: Vec<_> = conversations
            .iter()
            .map(|e| (e.log_sequence, Some(Entry::from(e))))
            .collect();
        applied += store.apply_batch(CONVERSATION_EVENTS, &entries).await?;
        let entries: Vec<_> = routing
            .iter()
            .map(|e| (e.log_sequence, Some(Entry::from(e))))
            .collect();
        applied += store.apply_batch(ROUTING_EVENTS, &entries).await?;
    }
    Ok(applied as f64 / started.elapsed().as_secs_f64())
}

/// The 30-day reassignments report by Paris day over the month before [`HISTORY_END`], as
/// GetReassignmentsReport computes it; the rows it has.
async fn reassignments_report(store: &reporting_svc::store::Store) -> anyhow::Result<usize> {
    let frame = Frame {
        start: HISTORY_END - 30 * MICROS_PER_DAY,
        end: HISTORY_END,
        zone: chrono_tz::Europe::Paris,
        granularity: Granularity::Day,
    };
    let query = FactQuery {
        tenant_id: TENANT,
        start: frame.start,
        end: frame.end,
        queue_ids: &[],
        channels: &[],
        agent_ids: &[],
    };
    let buckets = frame.bucket_starts();
    let group = GroupBy {
        agent: true,
        label: true,
        buckets: buckets.as_deref(),
        ..GroupBy::default()
    };
    let counts = store
        .metric_counts(&query, &reports::REASSIGNMENT_METRICS, group)
        .await?;
    Ok(reports::reassignments(&frame, &counts).len())
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub(super) async fn reports(
    plan: &Plan,
    dir: &std::path::Path,
    store: Store<'_>,
) -> anyhow::Result<ScenarioResult> {
    let mut result = scenarios::scenario(
        "reports",
        store.name(),
        "the 30-day reassignments report by Paris day (500 agents, 20 queues) over a history ten times longer at the same daily volume, against the same report over the shorter history, both loaded straight into reporting-svc's store in the same run",
    );
    let open = |what: &str| {
        let what = what.to_owned();
        async move {
            let url = match store {
                Store::Sqlite => format!("sqlite://{}/reporting-{what}.db", dir.display()),
                Store::Postgres(databases) => scenarios::create_database(databases, &what).await?,
            };
            anyhow::Ok(reporting_svc::store::Store::open(&url).await?)
        }
    };
    let (large_events, agents) = (plan.report_events, plan.report_agents);
    let small_events = (large_events / 10).max(10);
    let small = open("small").await?;
    let large = open("large").await?;
    let small_rate = load(&small, small_events, SMALL_DAYS, agents).await?;
    let large_rate = load(&large, large_events, SMALL_DAYS * 10, agents).await?;
    result.runs.push(serde_json::json!({
        "label": "histories loaded",
        "small_events": small_events,
        "small_days": SMALL_DAYS,
        "small_applied_per_s": small_rate,
        "large_events": large_events,
        "large_days": SMALL_DAYS * 10,
        "large_applied_per_s": large_rate,
    }));

    // PostgreSQL's rollups are read from their index alone where autovacuum has marked
    // the pages visible. It runs on its own schedule: the first store, loaded minutes
    // before the second, was marked, the second's last month was not, and the figure
    // compared autovacuum's timing rather than the histories. Both are vacuumed here, as
    // autovacuum leaves a month's older days in service.
    if matches!(store, Store::Postgres(_)) {
        for loaded in [&small, &large] {
            sqlx::query("VACUUM (ANALYZE) rollups")
                .execute(&loaded.db().pool)
                .await?;
        }
    }
    // Alternating, after one unmeasured call each (caches warm).
    reassignments_report(&small).await?;
    reassignments_report(&large).await?;
    let (mut on_small, mut on_large) = (Vec::new(), Vec::new());
    let mut rows = (0, 0);
    for _ in 0..plan.report_calls {
        let started = Instant::now();
        rows.0 = reassignments_report(&small).await?;
        on_small.push(started.elapsed());
        let started = Instant::now();
        rows.1 = reassignments_report(&large).await?;
        on_large.push(started.elapsed());
    }
    on_small.sort();
    on_large.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    result.runs.push(serde_json::json!({
        "label": "30-day reassignments report, alternating",
        "calls_each": plan.report_calls,
        "rows": {"small": rows.0, "large": rows.1},
        "small_ms": {"p50": ms(quantile(&on_small, 0.5)), "p95": ms(quantile(&on_small, 0.95))},
        "large_ms": {"p50": ms(quantile(&on_large, 0.5)), "p95": ms(quantile(&on_large, 0.95))},
    }));
    result.figures.push(
        Figure::new(
            format!("30-day reassignments report, p95, {large_events} events of history"),
            "ms",
            ms(quantile(&on_large, 0.95)),
            format!("the same over {small_events} events"),
            ms(quantile(&on_small, 0.95)),
            Better::Lower,
        )
        .goal("<= 1.2x, and <= 50 ms at 10,000,000 events"),
    );
    small.db().clone().close().await;
    large.db().clone().close().await;
    Ok(result)
}
