//! Store conformance: the same behaviour on SQLite and PostgreSQL.

mod common;

use common::{Backend, EventLog, micros};
use reporting_svc::consumer::to_domain;
use reporting_svc::domain::activity::{Presence, PresenceCause};
use reporting_svc::domain::facts::{ConversationLine, Event};
use reporting_svc::domain::ledger::outcome;
use reporting_svc::domain::reports::{ClosedConversation, SLOT_MICROS};
use std::collections::{BTreeMap, BTreeSet};

use reporting_svc::domain::metrics::{
    Count, Metric, Occurrence, OfferKind, RoutingEvent, RoutingEventKind, of_routing_event,
};
use reporting_svc::store::{
    Applied, CONVERSATION_EVENTS, ConversationQuery, Entry, FactQuery, FoldedRun, Following,
    GroupBy, LedgerQuery, ROUTING_EVENTS, Store,
};
use switchboard_proto::common::v1::Channel;

const TENANT: &str = "0b6f2a4e-1d3c-4e5f-8a9b-0c1d2e3f4a5b";
const OTHER_TENANT: &str = "7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f";
const Q1: &str = "11111111-1111-4111-8111-111111111111";
const Q2: &str = "22222222-2222-4222-8222-222222222222";
const A: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const B: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";

fn as_batch(entries: &[(i64, Option<Event>)]) -> Vec<(i64, Option<Entry<'_>>)> {
    entries
        .iter()
        .map(|(s, e)| (*s, e.as_ref().map(Entry::from)))
        .collect()
}

fn domain_events(log: &EventLog) -> Vec<Event> {
    log.entries.iter().map(|e| to_domain(e).unwrap()).collect()
}

async fn apply_all(store: &Store, events: &[Event]) {
    for event in events {
        assert_eq!(
            store.apply(CONVERSATION_EVENTS, event).await.unwrap(),
            Applied::Applied,
            "event {}",
            event.log_sequence
        );
    }
}

fn query<'a>(tenant_id: &'a str, start: &str, end: &str) -> FactQuery<'a> {
    FactQuery {
        tenant_id,
        start: micros(start),
        end: micros(end),
        queue_ids: &[],
        channels: &[],
        agent_ids: &[],
    }
}

/// Reassignments received in the range, as `(agent, slot, count)`.
async fn reassignment_counts(store: &Store, query: &FactQuery<'_>) -> Vec<(String, i64, i64)> {
    let group = GroupBy {
        agent: true,
        ..GroupBy::default()
    };
    store
        .metric_counts(query, &[Metric::ReassignedTo], group)
        .await
        .unwrap()
        .into_iter()
        .map(|count| (count.slot, count.agent_id, count.n))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|(slot, agent, n)| (agent, slot, n))
        .collect()
}

fn slot(at: &str) -> i64 {
    micros(at) / SLOT_MICROS
}

async fn cursor_starts_at_zero_and_survives_reopening(backend: &Backend) {
    let store = &backend.store;
    assert_eq!(store.cursor(CONVERSATION_EVENTS).await.unwrap(), 0);
    let mut log = EventLog::new();
    log.gap(41);
    log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    apply_all(store, &domain_events(&log)).await;
    // The cursor is the log position, not the event's sequence in its conversation (2).
    let last = log.last_sequence();
    assert_eq!(last, 1043);
    assert_eq!(store.cursor(CONVERSATION_EVENTS).await.unwrap(), last);
    assert_eq!(store.cursor("routing-svc").await.unwrap(), 0);

    let reopened = Store::open(&backend.url).await.unwrap();
    assert_eq!(reopened.cursor(CONVERSATION_EVENTS).await.unwrap(), last);
    assert!(reopened.conversation("c1").await.unwrap().is_some());
}

async fn same_event_twice_counts_once(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    log.transfer_requested(&c1, "2026-03-02T09:02:00Z", A);
    log.assign(&c1, "2026-03-02T09:03:00Z", B, A);
    let events = domain_events(&log);
    apply_all(store, &events).await;

    for event in &events {
        assert_eq!(
            store.apply(CONVERSATION_EVENTS, event).await.unwrap(),
            Applied::AlreadyApplied
        );
    }
    assert_eq!(
        store
            .skip(CONVERSATION_EVENTS, events[0].log_sequence)
            .await
            .unwrap(),
        Applied::AlreadyApplied
    );

    let facts = store.conversation("c1").await.unwrap().unwrap();
    assert_eq!((facts.segments, facts.transfers), (2, 1));
    assert_eq!(facts.owner_agent_id.as_deref(), Some(B));
    let assignments = store.assignments("c1").await.unwrap();
    assert_eq!(assignments.len(), 2);
    assert!(assignments[1].reassignment);
    let counts = reassignment_counts(
        store,
        &query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"),
    )
    .await;
    assert_eq!(
        counts,
        vec![(B.to_owned(), slot("2026-03-02T09:03:00Z"), 1)]
    );
    assert_eq!(
        store.cursor(CONVERSATION_EVENTS).await.unwrap(),
        log.last_sequence()
    );
}

async fn concurrent_applies_of_one_event_count_once(backend: &Backend) {
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&c1, "2026-03-02T09:01:00Z", B, A);
    let events = domain_events(&log);
    apply_all(&backend.store, &events[..2]).await;

    let assigned = events[2].clone();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = backend.store.clone();
            let event = assigned.clone();
            tokio::spawn(async move { store.apply(CONVERSATION_EVENTS, &event).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        if task.await.unwrap() == Applied::Applied {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    let facts = backend.store.conversation("c1").await.unwrap().unwrap();
    assert_eq!(facts.segments, 1);
    assert_eq!(backend.store.assignments("c1").await.unwrap().len(), 1);
}

async fn cursor_and_facts_commit_together(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    let assigned = log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    let events = domain_events(&log);
    apply_all(store, &events[..2]).await;

    // A row already holding the assignment's key makes the write of the facts fail
    // half-way through the event's transaction.
    sqlx::query(
        "INSERT INTO assignment_facts (log_sequence, tenant_id, conversation_id, agent_id, \
         previous_agent_id, queue_id, channel, assigned_at, reassignment) \
         VALUES ($1, 'x', 'x', 'x', '', '', 0, 0, 0)",
    )
    .bind(assigned)
    .execute(store.db().writer())
    .await
    .unwrap();
    assert!(store.apply(CONVERSATION_EVENTS, &events[2]).await.is_err());
    assert_eq!(
        store.cursor(CONVERSATION_EVENTS).await.unwrap(),
        events[1].log_sequence
    );
    let facts = store.conversation("c1").await.unwrap().unwrap();
    assert_eq!(facts.segments, 0, "the facts rolled back with the cursor");
    assert_eq!(facts.owner_agent_id, None);

    sqlx::query("DELETE FROM assignment_facts WHERE log_sequence = $1")
        .bind(assigned)
        .execute(store.db().writer())
        .await
        .unwrap();
    assert_eq!(
        store.apply(CONVERSATION_EVENTS, &events[2]).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(store.cursor(CONVERSATION_EVENTS).await.unwrap(), assigned);
    assert_eq!(store.conversation("c1").await.unwrap().unwrap().segments, 1);
}

async fn skip_moves_only_the_cursor(backend: &Backend) {
    let store = &backend.store;
    assert_eq!(
        store.skip(CONVERSATION_EVENTS, 5_000).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(store.cursor(CONVERSATION_EVENTS).await.unwrap(), 5_000);
    let mut log = EventLog::new();
    log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    let events = domain_events(&log);
    assert_eq!(
        store.apply(CONVERSATION_EVENTS, &events[0]).await.unwrap(),
        Applied::AlreadyApplied
    );
    assert!(store.conversation("c1").await.unwrap().is_none());
}

async fn report_queries_filter_and_bucket(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    log.message(&c1, "2026-03-02T09:02:00Z");
    log.close(&c1, "2026-03-02T09:11:00Z", A);
    let c2 = log.create(TENANT, "c2", Channel::Sms, Q2, "2026-03-02T09:05:00Z");
    log.assign(&c2, "2026-03-02T09:06:00Z", A, "");
    log.transfer_requested(&c2, "2026-03-02T09:07:00Z", A);
    log.assign(&c2, "2026-03-02T09:08:00Z", B, A);
    log.close(&c2, "2026-03-02T10:00:00Z", B);
    // Closed without an owner.
    let c3 = log.create(TENANT, "c3", Channel::Webchat, Q1, "2026-03-02T11:00:00Z");
    log.close(&c3, "2026-03-02T11:30:00Z", "");
    // Exactly at the end of the range: excluded.
    log.create(TENANT, "c4", Channel::Webchat, Q1, "2026-03-03T00:00:00Z");
    // Another tenant.
    let c5 = log.create(
        OTHER_TENANT,
        "c5",
        Channel::Webchat,
        Q1,
        "2026-03-02T09:00:00Z",
    );
    log.assign(&c5, "2026-03-02T09:01:00Z", B, A);
    log.close(&c5, "2026-03-02T09:30:00Z", B);
    apply_all(store, &domain_events(&log)).await;

    let day = query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z");
    assert_eq!(
        store.created_counts(&day).await.unwrap(),
        vec![
            (slot("2026-03-02T09:00:00Z"), 2),
            (slot("2026-03-02T11:00:00Z"), 1)
        ]
    );
    assert_eq!(
        store.closed_counts(&day).await.unwrap(),
        vec![
            (slot("2026-03-02T09:11:00Z"), 1),
            (slot("2026-03-02T10:00:00Z"), 1),
            (slot("2026-03-02T11:30:00Z"), 1),
        ]
    );

    let q2 = [Q2.to_owned()];
    let sms = [Channel::Sms as i32];
    let webchat = [Channel::Webchat as i32];
    let only_q2 = FactQuery {
        queue_ids: &q2,
        ..day
    };
    assert_eq!(
        store.created_counts(&only_q2).await.unwrap(),
        vec![(slot("2026-03-02T09:05:00Z"), 1)]
    );
    let only_webchat = FactQuery {
        channels: &webchat,
        ..day
    };
    assert_eq!(reassignment_counts(store, &only_webchat).await, vec![]);
    let only_sms = FactQuery {
        channels: &sms,
        ..day
    };
    assert_eq!(
        reassignment_counts(store, &only_sms).await,
        vec![(B.to_owned(), slot("2026-03-02T09:08:00Z"), 1)]
    );

    let mut closed = store.closed_conversations(&day).await.unwrap();
    closed.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    assert_eq!(
        closed,
        vec![
            ClosedConversation {
                agent_id: A.to_owned(),
                created_at: micros("2026-03-02T09:00:00Z"),
                closed_at: micros("2026-03-02T09:11:00Z"),
                segment_start: Some(micros("2026-03-02T09:01:00Z")),
                segments: 1,
                reopens: 0,
            },
            ClosedConversation {
                agent_id: B.to_owned(),
                created_at: micros("2026-03-02T09:05:00Z"),
                closed_at: micros("2026-03-02T10:00:00Z"),
                segment_start: Some(micros("2026-03-02T09:08:00Z")),
                segments: 2,
                reopens: 0,
            },
        ]
    );
    let agent_b = [B.to_owned()];
    let only_b = FactQuery {
        agent_ids: &agent_b,
        ..day
    };
    let closed_by_b = store.closed_conversations(&only_b).await.unwrap();
    assert_eq!(closed_by_b.len(), 1);
    assert_eq!(closed_by_b[0].agent_id, B);
    // The agent filter does not apply to created and closed counts.
    assert_eq!(store.created_counts(&only_b).await.unwrap().len(), 2);

    let other = query(OTHER_TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z");
    assert_eq!(
        store.created_counts(&other).await.unwrap(),
        vec![(slot("2026-03-02T09:00:00Z"), 1)]
    );
}

/// Conversations numbering their events 1, 2, 3 each: the facts of every conversation
/// arrive, keyed by log position, although their per-conversation sequences repeat.
async fn per_conversation_sequences_do_not_collide(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    let c2 = log.create(TENANT, "c2", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    log.assign(&c2, "2026-03-02T09:01:00Z", B, "");
    log.assign(&c1, "2026-03-02T09:02:00Z", B, A);
    log.assign(&c2, "2026-03-02T09:02:00Z", A, B);
    let sequences: Vec<(i64, i64)> = log
        .entries
        .iter()
        .map(|e| (e.log_sequence, e.event.as_ref().unwrap().sequence))
        .collect();
    assert_eq!(sequences[2], (1003, 1), "c2 starts again at 1");
    apply_all(store, &domain_events(&log)).await;
    for (conversation, agents) in [("c1", [A, B]), ("c2", [B, A])] {
        let assignments = store.assignments(conversation).await.unwrap();
        assert_eq!(
            assignments
                .iter()
                .map(|a| a.agent_id.as_str())
                .collect::<Vec<_>>(),
            agents
        );
        assert!(assignments[1].reassignment);
        assert_eq!(
            store
                .conversation(conversation)
                .await
                .unwrap()
                .unwrap()
                .segments,
            2
        );
    }
    assert_eq!(
        store.cursor(CONVERSATION_EVENTS).await.unwrap(),
        log.last_sequence()
    );
}

/// The longest filter lists the contract allows fit in one query on either database.
async fn the_longest_filter_lists_fit_in_one_query(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    log.assign(&c1, "2026-03-02T09:02:00Z", B, A);
    log.close(&c1, "2026-03-02T09:11:00Z", B);
    apply_all(store, &domain_events(&log)).await;

    let mut queue_ids: Vec<String> = (0..999)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    queue_ids.push(Q1.to_owned());
    let mut agent_ids: Vec<String> = (0..999)
        .map(|i| format!("10000000-0000-4000-8000-{i:012}"))
        .collect();
    agent_ids.push(B.to_owned());
    let channels: Vec<i32> = (1..=10).collect();
    let long = FactQuery {
        queue_ids: &queue_ids,
        channels: &channels,
        agent_ids: &agent_ids,
        ..query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z")
    };
    assert_eq!(
        reassignment_counts(store, &long).await,
        vec![(B.to_owned(), slot("2026-03-02T09:02:00Z"), 1)]
    );
    assert_eq!(store.closed_conversations(&long).await.unwrap().len(), 1);
    assert_eq!(store.created_counts(&long).await.unwrap().len(), 1);
}

/// A run of entries applies in one go, entries already applied in it are passed over,
/// and the result is the same as one event at a time.
async fn a_batch_applies_only_what_is_new(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    log.transfer_requested(&c1, "2026-03-02T09:02:00Z", A);
    log.assign(&c1, "2026-03-02T09:03:00Z", B, A);
    let events = domain_events(&log);
    let entries = |events: &[Event]| -> Vec<(i64, Option<Event>)> {
        events
            .iter()
            .map(|event| (event.log_sequence, Some(event.clone())))
            .collect()
    };
    // The first two, then all of them: only the two after the cursor are new.
    let first = entries(&events[..2]);
    assert_eq!(
        store
            .apply_batch(CONVERSATION_EVENTS, &as_batch(&first))
            .await
            .unwrap(),
        2
    );
    let all = entries(&events);
    assert_eq!(
        store
            .apply_batch(CONVERSATION_EVENTS, &as_batch(&all))
            .await
            .unwrap(),
        events.len() as u64 - 2
    );
    assert_eq!(
        store
            .apply_batch(CONVERSATION_EVENTS, &as_batch(&all))
            .await
            .unwrap(),
        0,
        "a replay changes nothing"
    );
    assert_eq!(
        store.cursor(CONVERSATION_EVENTS).await.unwrap(),
        log.last_sequence()
    );
    let facts = store.conversation("c1").await.unwrap().unwrap();
    assert_eq!((facts.segments, facts.transfers), (2, 1));
    assert_eq!(facts.owner_agent_id.as_deref(), Some(B));
    assert_eq!(store.assignments("c1").await.unwrap().len(), 2);
}

/// A count's metric, slot, queue, agent and label.
type CountKey = (Metric, i64, String, String, String);

/// A small deterministic generator, so a failure replays.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    /// Below `n` for any `n` (`below` draws 31 bits).
    fn below_wide(&mut self, n: u64) -> u64 {
        ((self.below(1 << 31) << 31) | self.below(1 << 31)) % n
    }
}

/// Applies routing `events` in runs of 1 to `longest`, each run once more after it: the
/// replay must count nothing.
async fn apply_in_random_runs(store: &Store, events: &[RoutingEvent], rng: &mut Lcg, longest: u64) {
    let mut applied = 0;
    while applied < events.len() {
        let run = (1 + rng.below(longest) as usize).min(events.len() - applied);
        let entries: Vec<(i64, Option<Entry<'_>>)> = events[applied..applied + run]
            .iter()
            .map(|e| (e.log_sequence, Some(Entry::from(e))))
            .collect();
        for expected in [run as u64, 0] {
            assert_eq!(
                store.apply_batch(ROUTING_EVENTS, &entries).await.unwrap(),
                expected
            );
        }
        applied += run;
    }
}

/// Counts by metric, slot (or bucket), queue, agent and label.
fn keyed(counts: Vec<Count>) -> BTreeMap<CountKey, (i64, i64)> {
    counts
        .into_iter()
        .map(|c| {
            (
                (c.metric, c.slot, c.queue_id, c.agent_id, c.label),
                (c.n, c.total),
            )
        })
        .collect()
}

/// `occurrences` counted and summed per metric, slot, queue, agent and label, here.
fn counted_here<'a>(
    occurrences: impl Iterator<Item = &'a Occurrence>,
) -> BTreeMap<CountKey, (i64, i64)> {
    let mut counted: BTreeMap<CountKey, (i64, i64)> = BTreeMap::new();
    for o in occurrences {
        let tally = counted
            .entry((
                o.metric,
                o.at.div_euclid(SLOT_MICROS),
                o.queue_id.clone(),
                o.agent_id.clone(),
                o.label.clone(),
            ))
            .or_default();
        tally.0 += 1;
        tally.1 += o.value;
    }
    counted
}

/// Reads from the rollups, with the points of the partial slots at a range's ends, agree
/// with a count of the occurrences themselves, for ranges on and off quarter hours, inside
/// one slot, with filters, after the events were applied in batches of every size and
/// replayed.
async fn metric_counts_are_exact_for_any_range(backend: &Backend) {
    const HOUR: i64 = 3_600_000_000;
    const DAY: i64 = 24 * HOUR;
    let store = &backend.store;
    let mut rng = Lcg(7);
    let base = micros("2026-03-29T00:00:00Z");
    let queues = [Q1, Q2];
    let agents = [A, B];
    let kinds = [
        RoutingEventKind::OfferCreated,
        RoutingEventKind::OfferAccepted,
        RoutingEventKind::OfferRejected,
        RoutingEventKind::OfferTimedOut,
        RoutingEventKind::OfferWithdrawn,
        RoutingEventKind::WaitingOverflowed,
        RoutingEventKind::Other,
    ];
    let mut events = Vec::new();
    // Most events within six hours (many per slot); one in five over three weeks, so
    // that long ranges are read a week at a time and buckets span those reads.
    for sequence in 1..=600_i64 {
        let spread = if rng.below(5) == 0 {
            21 * DAY
        } else {
            6 * HOUR
        };
        let at = base + rng.below_wide(spread as u64) as i64;
        events.push(RoutingEvent {
            log_sequence: sequence,
            tenant_id: if rng.below(10) == 0 {
                OTHER_TENANT
            } else {
                TENANT
            }
            .to_owned(),
            kind: kinds[rng.below(kinds.len() as u64) as usize],
            occurred_at: at,
            agent_id: agents[rng.below(2) as usize].to_owned(),
            conversation_id: format!("c{}", rng.below(50)),
            queue_id: queues[rng.below(2) as usize].to_owned(),
            from_queue_id: queues[rng.below(2) as usize].to_owned(),
            channel: 1 + rng.below(2) as i32,
            wait_started_at: Some(at - rng.below(120_000_000) as i64),
            offer_kind: if rng.below(4) == 0 {
                OfferKind::Consult
            } else {
                OfferKind::Queue
            },
            ..RoutingEvent::default()
        });
    }
    apply_in_random_runs(store, &events, &mut rng, 40).await;
    assert_eq!(store.cursor(ROUTING_EVENTS).await.unwrap(), 600);
    assert_eq!(store.cursor(CONVERSATION_EVENTS).await.unwrap(), 0);

    let occurrences: Vec<_> = events.iter().flat_map(of_routing_event).collect();
    let group = GroupBy {
        queue: true,
        agent: true,
        label: true,
        buckets: None,
    };
    let only_q1 = [Q1.to_owned()];
    let only_b = [B.to_owned()];
    let sms = [Channel::Sms as i32];
    for round in 0..60 {
        let (start, end) = match round {
            // Whole quarter hours, then inside one slot, then a range of one microsecond.
            0 => (base, base + 4 * SLOT_MICROS),
            1 => (base + 60_000_000, base + 120_000_000),
            2 => (base + 1, base + 2),
            _ => {
                let span = if round % 2 == 0 { 22 * DAY } else { 7 * HOUR };
                let a = base - SLOT_MICROS + rng.below_wide(span as u64) as i64;
                let b = base - SLOT_MICROS + rng.below_wide(span as u64) as i64;
                (a.min(b), a.max(b) + 1)
            }
        };
        let mut query = FactQuery {
            start,
            end,
            ..query(TENANT, "2026-03-29T00:00:00Z", "2026-03-29T00:00:00Z")
        };
        if round % 3 == 1 {
            query.queue_ids = &only_q1;
        }
        if round % 4 == 2 {
            query.agent_ids = &only_b;
        }
        if round % 5 == 3 {
            query.channels = &sms;
        }
        let expected = counted_here(occurrences.iter().filter(|o| {
            o.tenant_id == TENANT
                && o.at >= start
                && o.at < end
                && (query.queue_ids.is_empty() || query.queue_ids.contains(&o.queue_id))
                && (query.agent_ids.is_empty() || query.agent_ids.contains(&o.agent_id))
                && (query.channels.is_empty() || query.channels.contains(&o.channel))
        }));
        let counted = keyed(
            store
                .metric_counts(&query, &Metric::ALL, group)
                .await
                .unwrap(),
        );
        assert_eq!(counted, expected, "round {round}: {start}..{end}");

        // Summed per bucket: every slot's counts go to the bucket its slot falls in, keyed
        // by a slot of that bucket.
        let first = start.div_euclid(SLOT_MICROS);
        let last = (end - 1).div_euclid(SLOT_MICROS);
        let mut starts: Vec<i64> = (0..rng.below(5))
            .map(|_| first + 1 + rng.below_wide((last - first).max(1) as u64) as i64)
            .filter(|&slot| slot > first && slot <= last)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let bucket_of = |slot: i64| match starts.iter().position(|&b| slot < b) {
            Some(0) => starts[0] - 1,
            Some(k) => starts[k - 1],
            None => starts.last().copied().unwrap_or(first),
        };
        let mut by_bucket: BTreeMap<CountKey, (i64, i64)> = BTreeMap::new();
        for ((metric, slot, queue, agent, label), (n, total)) in &expected {
            let tally = by_bucket
                .entry((
                    *metric,
                    bucket_of(*slot),
                    queue.clone(),
                    agent.clone(),
                    label.clone(),
                ))
                .or_default();
            tally.0 += n;
            tally.1 += total;
        }
        let bucketed = keyed(
            store
                .metric_counts(
                    &query,
                    &Metric::ALL,
                    GroupBy {
                        buckets: Some(&starts),
                        ..group
                    },
                )
                .await
                .unwrap(),
        );
        assert_eq!(bucketed, by_bucket, "round {round}, buckets {starts:?}");
    }
}

/// Agent time read back for any range equals, per slot, agent and label, the part of
/// each interval between two of the agent's events that lies in the range, worked out
/// here from the events alone; the interval still open is the agent's stored state.
async fn agent_time_is_exact_for_any_range(backend: &Backend) {
    let store = &backend.store;
    let mut rng = Lcg(11);
    let base = micros("2026-03-29T00:00:00Z");
    let presences = [
        Presence::Offline,
        Presence::Available,
        Presence::Busy,
        Presence::Away,
        Presence::DoNotDisturb,
        Presence::Rona,
    ];
    let causes = [
        PresenceCause::Agent,
        PresenceCause::Supervisor,
        PresenceCause::OfferTimedOut,
        PresenceCause::Capacity,
    ];
    let kinds = [
        RoutingEventKind::PresenceChanged,
        RoutingEventKind::PresenceChanged,
        RoutingEventKind::CapacityReserved,
        RoutingEventKind::CapacityReleased,
        RoutingEventKind::AgentProfileSet,
        RoutingEventKind::OfferCreated,
    ];
    let mut events = Vec::new();
    let mut at = base;
    for sequence in 1..=400_i64 {
        at += rng.below_wide(40 * 60_000_000) as i64;
        let total = 1 + rng.below(4) as i32;
        events.push(RoutingEvent {
            log_sequence: sequence,
            tenant_id: if rng.below(10) == 0 {
                OTHER_TENANT
            } else {
                TENANT
            }
            .to_owned(),
            kind: kinds[rng.below(kinds.len() as u64) as usize],
            occurred_at: at,
            agent_id: [A, B][rng.below(2) as usize].to_owned(),
            presence: Some(presences[rng.below(6) as usize]),
            presence_cause: causes[rng.below(4) as usize],
            capacity_used: rng.below(total as u64 + 2) as i32,
            capacity_total: total,
            units_over_capacity: rng.below(3) as i32 - 1,
            ..RoutingEvent::default()
        });
    }
    apply_in_random_runs(store, &events, &mut rng, 30).await;

    // The plain model: each agent's intervals, its last state, its counts.
    struct Interval {
        agent: String,
        presence: Presence,
        used: i32,
        total: i32,
        from: i64,
        to: i64,
    }
    let mut intervals = Vec::new();
    let mut last: BTreeMap<String, (Presence, i32, i32, i64)> = BTreeMap::new();
    let mut counts: Vec<(Metric, String, i64)> = Vec::new();
    for e in events.iter().filter(|e| e.tenant_id == TENANT) {
        let kind = e.kind;
        if kind == RoutingEventKind::OfferCreated {
            continue;
        }
        let (presence, _, _, since) =
            *last
                .get(&e.agent_id)
                .unwrap_or(&(Presence::Offline, 0, 0, e.occurred_at));
        let (_, used, total, _) =
            last.get(&e.agent_id)
                .copied()
                .unwrap_or((Presence::Offline, 0, 0, 0));
        intervals.push(Interval {
            agent: e.agent_id.clone(),
            presence,
            used,
            total,
            from: since,
            to: e.occurred_at,
        });
        let mut next = presence;
        if kind == RoutingEventKind::PresenceChanged {
            next = e.presence.unwrap();
            if e.presence_cause == PresenceCause::Supervisor {
                counts.push((Metric::PresenceOverride, e.agent_id.clone(), e.occurred_at));
            }
            if e.presence_cause == PresenceCause::OfferTimedOut && next == Presence::Rona {
                counts.push((Metric::Rona, e.agent_id.clone(), e.occurred_at));
            }
        }
        if kind == RoutingEventKind::CapacityReserved && e.units_over_capacity > 0 {
            counts.push((Metric::CapacityOverride, e.agent_id.clone(), e.occurred_at));
        }
        last.insert(
            e.agent_id.clone(),
            (next, e.capacity_used, e.capacity_total, e.occurred_at),
        );
    }
    let open = store.agent_states(TENANT, &[]).await.unwrap();
    let expected_open: Vec<(String, Presence, i64)> = last
        .iter()
        .filter(|(_, (presence, ..))| *presence != Presence::Offline)
        .map(|(agent, (presence, _, _, since))| (agent.clone(), *presence, *since))
        .collect();
    assert_eq!(
        open.iter()
            .map(|s| (s.agent_id.clone(), s.presence, s.since))
            .collect::<Vec<_>>(),
        expected_open
    );

    let group = GroupBy {
        agent: true,
        label: true,
        ..GroupBy::default()
    };
    let only_b = [B.to_owned()];
    let metrics = [
        Metric::PresenceTime,
        Metric::CapacityTime,
        Metric::Rona,
        Metric::CapacityOverride,
        Metric::PresenceOverride,
    ];
    for round in 0..50 {
        let span = at - base + 2 * SLOT_MICROS;
        let (start, end) = match round {
            0 => (base, base + 8 * SLOT_MICROS),
            1 => (base + 7 * 60_000_000, base + 11 * 60_000_000),
            _ => {
                let a = base - SLOT_MICROS + rng.below_wide(span as u64) as i64;
                let b = base - SLOT_MICROS + rng.below_wide(span as u64) as i64;
                (a.min(b), a.max(b) + 1)
            }
        };
        let mut query = FactQuery {
            start,
            end,
            ..query(TENANT, "2026-03-29T00:00:00Z", "2026-03-29T00:00:00Z")
        };
        if round % 3 == 2 {
            query.agent_ids = &only_b;
        }
        let kept =
            |agent: &str| query.agent_ids.is_empty() || query.agent_ids.iter().any(|a| a == agent);
        let mut expected: BTreeMap<(Metric, i64, String, String), i64> = BTreeMap::new();
        for i in intervals
            .iter()
            .filter(|i| i.presence != Presence::Offline && kept(&i.agent))
        {
            // Minute by minute is too coarse: walk the slots the interval touches.
            let mut slot = i.from.div_euclid(SLOT_MICROS);
            while slot * SLOT_MICROS < i.to {
                let from = i.from.max(slot * SLOT_MICROS).max(start);
                let to = i.to.min((slot + 1) * SLOT_MICROS).min(end);
                if from < to {
                    let mut add = |metric: Metric, label: String| {
                        *expected
                            .entry((metric, slot, i.agent.clone(), label))
                            .or_default() += to - from;
                    };
                    add(Metric::PresenceTime, i.presence.code().to_owned());
                    if i.used != 0 || i.total != 0 {
                        add(Metric::CapacityTime, format!("{}/{}", i.used, i.total));
                    }
                }
                slot += 1;
            }
        }
        for (metric, agent, at) in &counts {
            if *at >= start && *at < end && kept(agent) {
                *expected
                    .entry((
                        *metric,
                        at.div_euclid(SLOT_MICROS),
                        agent.clone(),
                        String::new(),
                    ))
                    .or_default() += 1;
            }
        }
        let counted: BTreeMap<_, _> = store
            .metric_counts(&query, &metrics, group)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| {
                let amount = if c.metric.is_duration() { c.total } else { c.n };
                // A piece that starts in the range's last slot but after its end is read
                // as nothing: no key.
                (amount != 0).then_some(((c.metric, c.slot, c.agent_id, c.label), amount))
            })
            .collect();
        assert_eq!(counted, expected, "round {round}: {start}..{end}");
    }
}

/// An export's snapshot: its count and every page agree although events keep arriving
/// meanwhile, and pages (keyset, ties in creation time included) list each row once.
async fn a_snapshot_reads_pages_that_agree_with_its_count(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let mut first = None;
    for n in 0..11 {
        // Pairs created at the same instant, so that pages break ties by id.
        let at = format!("2026-03-02T09:{:02}:00Z", n / 2);
        let conv = log.create(TENANT, &format!("c{n:02}"), Channel::Webchat, Q1, &at);
        first.get_or_insert(conv);
    }
    let before = log.entries.len();
    // What arrives while the export runs: three more conversations that day, c00 closes.
    for n in 11..14 {
        log.create(
            TENANT,
            &format!("c{n:02}"),
            Channel::Webchat,
            Q1,
            "2026-03-02T08:00:00Z",
        );
    }
    log.close(&first.unwrap(), "2026-03-02T12:00:00Z", "");
    let events = domain_events(&log);
    apply_all(store, &events[..before]).await;
    let day = query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z");

    let mut snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.conversation_count(&day).await.unwrap(), 11);
    apply_all(store, &events[before..]).await;

    let mut seen = Vec::new();
    let mut after: Option<(i64, String)> = None;
    loop {
        let Some(packed) = snapshot
            .conversation_page(&ConversationQuery {
                facts: day,
                after: after.as_ref().map(|(at, id)| (*at, id.as_str())),
                limit: 3,
            })
            .await
            .unwrap()
        else {
            break;
        };
        let page = packed.lines().unwrap();
        assert!(!page.is_empty() && page.len() <= 3);
        // Where the next page starts is read off the packed page before parsing it.
        let last = page.last().unwrap();
        assert_eq!(packed.last(), (last.created_at, last.conversation_id));
        after = Some((last.created_at, last.conversation_id.to_owned()));
        assert!(
            page.iter().all(|c| c.closed_at.is_none()),
            "as of the snapshot"
        );
        seen.extend(page.into_iter().map(|c| c.conversation_id.to_owned()));
    }
    let expected: Vec<String> = (0..11).map(|n| format!("c{n:02}")).collect();
    assert_eq!(seen, expected, "the snapshot's rows, each once, in order");
    drop(snapshot);
    // A new snapshot sees what arrived.
    let mut fresh = store.snapshot().await.unwrap();
    assert_eq!(fresh.conversation_count(&day).await.unwrap(), 14);

    // A page holds the facts as stored, absent ones (no close, no owner) included: the
    // packed page reads back what a single read does.
    let c14 = log.create(TENANT, "c14", Channel::Sms, Q2, "2026-03-02T10:00:00Z");
    log.assign(&c14, "2026-03-02T10:01:00Z", A, "");
    log.assign(&c14, "2026-03-02T10:02:00Z", B, A);
    log.close(&c14, "2026-03-02T10:03:00Z", B);
    let c15 = log.create(TENANT, "c15", Channel::Webchat, Q1, "2026-03-02T10:00:00Z");
    log.assign(&c15, "2026-03-02T10:01:00Z", A, "");
    apply_all(store, &domain_events(&log)[events.len()..]).await;
    let mut fresh = store.snapshot().await.unwrap();
    let packed = fresh
        .conversation_page(&ConversationQuery {
            facts: day,
            after: None,
            limit: 100,
        })
        .await
        .unwrap()
        .unwrap();
    let page = packed.lines().unwrap();
    assert_eq!(page.len(), 16);
    for line in &page {
        let stored = store
            .conversation(line.conversation_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line, &ConversationLine::from(&stored));
    }
    assert!(
        page.iter()
            .any(|c| c.closed_at.is_some() && c.closing_agent_id.is_some())
    );
    assert!(
        page.iter()
            .any(|c| c.closed_at.is_none() && c.owner_agent_id.is_none())
    );
    assert!(
        page.iter()
            .any(|c| c.closed_at.is_none() && c.owner_agent_id.is_some())
    );
}

/// After a rebuild, a consumer that still stands at its old position applies nothing
/// and is told to start again; from the start, the same events give the same counts.
async fn a_rebuild_forgets_everything_and_turns_away_old_positions(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    log.assign(&c1, "2026-03-02T09:02:00Z", B, A);
    log.close(&c1, "2026-03-02T09:03:00Z", B);
    let events = domain_events(&log);
    let entries: Vec<(i64, Option<Entry<'_>>)> = events
        .iter()
        .map(|e| (e.log_sequence, Some(Entry::from(e))))
        .collect();
    assert_eq!(
        store
            .apply_following(CONVERSATION_EVENTS, 0, &entries[..2])
            .await
            .unwrap(),
        Following::Applied(2)
    );
    let day = query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z");
    assert_eq!(store.created_counts(&day).await.unwrap().len(), 1);

    assert!(store.rebuild().await.unwrap() > 0);
    assert_eq!(store.cursor(CONVERSATION_EVENTS).await.unwrap(), 0);
    assert_eq!(store.created_counts(&day).await.unwrap(), vec![]);
    assert_eq!(store.conversation("c1").await.unwrap(), None);
    let position = entries[1].0;
    assert_eq!(
        store
            .apply_following(CONVERSATION_EVENTS, position, &entries[2..])
            .await
            .unwrap(),
        Following::Rebuilt
    );
    assert_eq!(store.cursor(CONVERSATION_EVENTS).await.unwrap(), 0);
    assert_eq!(
        store
            .apply_following(CONVERSATION_EVENTS, 0, &entries)
            .await
            .unwrap(),
        Following::Applied(entries.len() as u64)
    );
    assert_eq!(reassignment_counts(store, &day).await.len(), 1);
    assert_eq!(store.closed_counts(&day).await.unwrap().len(), 1);
}

/// A ledger line opened and answered in one run, or across runs, or opened again in a
/// later run with its answer, ends as its first answer says, on its one stored line.
async fn ledger_lines_end_alike_within_and_across_runs(backend: &Backend) {
    let store = &backend.store;
    let event = |sequence: i64, kind: RoutingEventKind, offer: &str, minute: i64| RoutingEvent {
        log_sequence: sequence,
        tenant_id: TENANT.to_owned(),
        kind,
        occurred_at: micros("2026-03-02T09:00:00Z") + minute * 60_000_000,
        agent_id: A.to_owned(),
        conversation_id: format!("c-{offer}"),
        queue_id: Q1.to_owned(),
        channel: 1,
        offer_kind: OfferKind::Queue,
        offer_id: offer.to_owned(),
        ..RoutingEvent::default()
    };
    use RoutingEventKind::{OfferCreated, OfferRejected, OfferTimedOut, OfferWithdrawn};
    let first_run = [
        // Opened, answered, answered again: the first answer stands.
        event(1, OfferCreated, "o1", 0),
        event(2, OfferRejected, "o1", 1),
        event(3, OfferTimedOut, "o1", 2),
        event(4, OfferCreated, "o2", 0),
        event(5, OfferCreated, "o3", 0),
    ];
    let second_run = [
        // Answered in the next run.
        event(6, OfferTimedOut, "o2", 3),
        // Opened again (its first opening kept) and answered in the same run.
        event(7, OfferCreated, "o3", 4),
        event(8, OfferWithdrawn, "o3", 5),
    ];
    for run in [&first_run[..], &second_run[..]] {
        let entries: Vec<_> = run
            .iter()
            .map(|e| (e.log_sequence, Some(Entry::from(e))))
            .collect();
        assert_eq!(
            store.apply_batch(ROUTING_EVENTS, &entries).await.unwrap(),
            run.len() as u64
        );
    }
    let lines = store
        .ledger(&LedgerQuery {
            facts: query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"),
            conversation_id: None,
            kinds: &[],
            after: None,
            limit: None,
        })
        .await
        .unwrap();
    let ended: BTreeMap<&str, (i32, Option<i64>, i64)> = lines
        .iter()
        .map(|l| {
            (
                l.offer_id.as_str(),
                (l.outcome, l.answered_at, l.requested_at),
            )
        })
        .collect();
    let at = |minute: i64| micros("2026-03-02T09:00:00Z") + minute * 60_000_000;
    assert_eq!(
        ended,
        BTreeMap::from([
            ("o1", (outcome::REJECTED, Some(at(1)), at(0))),
            ("o2", (outcome::TIMED_OUT, Some(at(3)), at(0))),
            ("o3", (outcome::WITHDRAWN, Some(at(5)), at(0))),
        ])
    );
}

/// Migration 0011 folds the occurrences a store kept before it into their rollup rows'
/// points: a range that cuts slots counts the same after the upgrade as the occurrences
/// did; migration 0012 keys the rows by numbers, which read back as their texts.
async fn the_upgrade_folds_occurrences_into_their_rollups(backend: &Backend) {
    use reporting_svc::domain::metrics::rollup;
    use sqlx::migrate::Migrator;
    use switchboard_server_kit::Db;

    let url = backend.another_database("before_points").await;
    let db = Db::connect(&url).await.unwrap();
    let until_0010 = |all: Migrator| Migrator {
        migrations: all
            .migrations
            .iter()
            .filter(|m| m.version <= 10)
            .cloned()
            .collect::<Vec<_>>()
            .into(),
        ..all
    };
    db.migrate(
        &until_0010(sqlx::migrate!("migrations/sqlite")),
        &until_0010(sqlx::migrate!("migrations/postgres")),
    )
    .await
    .unwrap();

    // Instants and pieces of time in two slots, one before the epoch's day boundary of
    // the slots' arithmetic would matter: values 0, positive and negative.
    let base = slot("2026-03-02T09:00:00Z") * SLOT_MICROS;
    let minute = 60_000_000;
    let occurrence = |metric: Metric, at: i64, agent: &str, value: i64| Occurrence {
        tenant_id: TENANT.to_owned(),
        metric,
        at,
        queue_id: Q1.to_owned(),
        channel: Channel::Webchat as i32,
        program_id: String::new(),
        agent_id: agent.to_owned(),
        label: String::new(),
        value,
    };
    let occurrences = vec![
        occurrence(Metric::Created, base, "", 0),
        occurrence(Metric::Created, base + 7 * minute, "", 0),
        occurrence(Metric::Created, base + 16 * minute, "", 0),
        occurrence(Metric::Accepted, base + 3 * minute, A, 42 * minute),
        occurrence(Metric::Accepted, base + 3 * minute, A, -5),
        occurrence(Metric::Accepted, base + 20 * minute, B, 1),
        occurrence(Metric::PresenceTime, base + 2 * minute, A, 6 * minute),
        occurrence(Metric::PresenceTime, base + 15 * minute, A, 15 * minute),
    ];
    for o in &occurrences {
        sqlx::query(
            "INSERT INTO occurrences (tenant_id, metric, at, queue_id, channel, program_id, \
             agent_id, label, value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&o.tenant_id)
        .bind(o.metric.code())
        .bind(o.at)
        .bind(&o.queue_id)
        .bind(o.channel)
        .bind(&o.program_id)
        .bind(&o.agent_id)
        .bind(&o.label)
        .bind(o.value)
        .execute(db.writer())
        .await
        .unwrap();
    }
    for (key, tally) in rollup(&occurrences) {
        sqlx::query(
            "INSERT INTO rollups (tenant_id, metric, slot, queue_id, channel, program_id, \
             agent_id, label, n, total) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&key.tenant_id)
        .bind(key.metric.code())
        .bind(key.slot)
        .bind(&key.queue_id)
        .bind(key.channel)
        .bind(&key.program_id)
        .bind(&key.agent_id)
        .bind(&key.label)
        .bind(tally.n)
        .bind(tally.total)
        .execute(db.writer())
        .await
        .unwrap();
    }
    db.close().await;

    let store = Store::open(&url).await.unwrap();
    let metrics = [Metric::Created, Metric::Accepted, Metric::PresenceTime];
    for (start, end) in [
        (base, base + 30 * minute),
        (base + minute, base + 29 * minute),
        (base + 3 * minute, base + 3 * minute + 1),
        (base + 4 * minute, base + 17 * minute),
        (base + 16 * minute, base + 20 * minute),
    ] {
        // What the occurrences count, computed here from them.
        let mut expected: BTreeMap<Metric, (i64, i64)> = BTreeMap::new();
        for o in &occurrences {
            let counted = if o.metric.is_duration() {
                (o.at < end && o.at + o.value > start)
                    .then(|| (o.at + o.value).min(end) - o.at.max(start))
            } else {
                (start..end).contains(&o.at).then_some(o.value)
            };
            if let Some(value) = counted {
                let sum = expected.entry(o.metric).or_default();
                sum.0 += 1;
                sum.1 += value;
            }
        }
        let range = FactQuery {
            start,
            end,
            ..query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z")
        };
        let mut counted: BTreeMap<Metric, (i64, i64)> = BTreeMap::new();
        for count in store
            .metric_counts(&range, &metrics, GroupBy::default())
            .await
            .unwrap()
        {
            let sum = counted.entry(count.metric).or_default();
            sum.0 += count.n;
            sum.1 += count.total;
        }
        assert_eq!(counted, expected, "[{start}, {end})");
    }
    // Migration 0012 numbered the rows' texts: they read back as the texts they were.
    let by_agent = GroupBy {
        queue: true,
        agent: true,
        ..GroupBy::default()
    };
    let accepted: BTreeSet<(String, String, i64)> = store
        .metric_counts(
            &FactQuery {
                start: base,
                end: base + 30 * minute,
                ..query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z")
            },
            &[Metric::Accepted],
            by_agent,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|count| (count.queue_id, count.agent_id, count.n))
        .collect();
    assert_eq!(
        accepted,
        BTreeSet::from([
            (Q1.to_owned(), A.to_owned(), 2),
            (Q1.to_owned(), B.to_owned(), 1)
        ])
    );
}

/// Applies `entries` of `source` as a catching-up consumer does: in runs of 1 to
/// `longest`, each folded on the run before it while that one is not yet written.
async fn apply_folded_ahead(
    store: &Store,
    source: &str,
    entries: &[(i64, Option<Entry<'_>>)],
    rng: &mut Lcg,
    longest: u64,
) {
    let mut position = store.cursor(source).await.unwrap();
    let mut writing: Option<(FoldedRun, u64)> = None;
    let mut at = 0;
    while at < entries.len() {
        let run = (1 + rng.below(longest) as usize).min(entries.len() - at);
        let folded = store
            .fold_ahead(
                position,
                &entries[at..at + run],
                writing.as_ref().map(|(r, _)| r),
            )
            .await
            .unwrap();
        if let Some((previous, length)) = writing.take() {
            assert_eq!(
                store.write_folded(source, &previous).await.unwrap(),
                Following::Applied(length)
            );
        }
        position = folded.last();
        writing = Some((folded, run as u64));
        at += run;
    }
    if let Some((previous, length)) = writing {
        assert_eq!(
            store.write_folded(source, &previous).await.unwrap(),
            Following::Applied(length)
        );
    }
}

/// Every count of the tenant in a range around `base`, by every dimension.
async fn every_count(store: &Store, base: i64) -> BTreeMap<CountKey, (i64, i64)> {
    const DAY: i64 = 86_400_000_000;
    let range = FactQuery {
        start: base - DAY,
        end: base + 3 * DAY,
        ..query(TENANT, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z")
    };
    let group = GroupBy {
        queue: true,
        agent: true,
        label: true,
        buckets: None,
    };
    keyed(
        store
            .metric_counts(&range, &Metric::ALL, group)
            .await
            .unwrap(),
    )
}

/// Runs folded ahead, each on the one before it while that one is still unwritten (as a
/// catching-up consumer folds), store and count exactly what the same entries applied
/// run by run do: conversations that span runs, reassigned, closed and reopened, and
/// agents whose state spans runs.
async fn runs_folded_ahead_store_what_runs_applied_one_by_one_store(backend: &Backend) {
    let mut rng = Lcg(5);
    let base = micros("2026-03-02T09:00:00Z");
    let at = |minute: i64| {
        chrono::DateTime::from_timestamp_micros(base + minute * 60_000_000)
            .unwrap()
            .to_rfc3339()
    };
    let mut log = EventLog::new();
    // Each conversation: its owner, and whether it is closed.
    let mut conversations = Vec::new();
    let mut minute = 0;
    for n in 0..300 {
        minute += rng.below(3) as i64;
        if n % 3 == 0 || conversations.is_empty() {
            let queue = [Q1, Q2][rng.below(2) as usize];
            let conv = log.create(
                TENANT,
                &format!("c{n}"),
                Channel::Webchat,
                queue,
                &at(minute),
            );
            conversations.push((conv, None::<&str>, false));
            continue;
        }
        let pick = rng.below(conversations.len() as u64) as usize;
        let (conv, owner, closed) = &mut conversations[pick];
        let other = |agent: &str| if agent == A { B } else { A };
        match (*owner, *closed) {
            (_, true) => {
                log.reopen(conv, &at(minute));
                (*owner, *closed) = (None, false);
            }
            (None, false) => {
                let agent = [A, B][rng.below(2) as usize];
                log.assign(conv, &at(minute), agent, "");
                *owner = Some(agent);
            }
            (Some(agent), false) if rng.below(2) == 0 => {
                log.assign(conv, &at(minute), other(agent), agent);
                *owner = Some(other(agent));
            }
            (Some(agent), false) => {
                log.close(conv, &at(minute), agent);
                *closed = true;
            }
        }
    }
    let events = domain_events(&log);
    let conversation_entries: Vec<(i64, Option<Entry<'_>>)> = events
        .iter()
        .map(|e| (e.log_sequence, Some(Entry::from(e))))
        .collect();
    let kinds = [
        RoutingEventKind::PresenceChanged,
        RoutingEventKind::CapacityReserved,
        RoutingEventKind::CapacityReleased,
        RoutingEventKind::OfferCreated,
    ];
    let presences = [Presence::Available, Presence::Busy, Presence::Away];
    let routing: Vec<RoutingEvent> = (1..=200_i64)
        .map(|sequence| RoutingEvent {
            log_sequence: sequence,
            tenant_id: TENANT.to_owned(),
            kind: kinds[rng.below(kinds.len() as u64) as usize],
            occurred_at: base + sequence * 90_000_000,
            agent_id: [A, B][rng.below(2) as usize].to_owned(),
            presence: Some(presences[rng.below(3) as usize]),
            presence_cause: PresenceCause::Agent,
            capacity_used: rng.below(3) as i32,
            capacity_total: 2,
            ..RoutingEvent::default()
        })
        .collect();
    let routing_entries: Vec<(i64, Option<Entry<'_>>)> = routing
        .iter()
        .map(|e| (e.log_sequence, Some(Entry::from(e))))
        .collect();

    let one_by_one = Store::open(&backend.another_database("one_by_one").await)
        .await
        .unwrap();
    for (source, entries) in [
        (CONVERSATION_EVENTS, &conversation_entries),
        (ROUTING_EVENTS, &routing_entries),
    ] {
        let mut at = 0;
        while at < entries.len() {
            let run = (1 + rng.below(40) as usize).min(entries.len() - at);
            one_by_one
                .apply_batch(source, &entries[at..at + run])
                .await
                .unwrap();
            at += run;
        }
        apply_folded_ahead(&backend.store, source, entries, &mut rng, 40).await;
    }
    let folded_ahead = &backend.store;
    for source in [CONVERSATION_EVENTS, ROUTING_EVENTS] {
        assert_eq!(
            folded_ahead.cursor(source).await.unwrap(),
            one_by_one.cursor(source).await.unwrap()
        );
    }
    let counts = every_count(folded_ahead, base).await;
    assert!(
        counts
            .keys()
            .any(|(metric, ..)| *metric == Metric::ReassignedTo)
    );
    assert!(
        counts
            .keys()
            .any(|(metric, ..)| *metric == Metric::PresenceTime)
    );
    assert_eq!(counts, every_count(&one_by_one, base).await);
    for (conv, _, _) in &conversations {
        assert_eq!(
            folded_ahead.conversation(&conv.id).await.unwrap(),
            one_by_one.conversation(&conv.id).await.unwrap(),
            "{}",
            conv.id
        );
        assert_eq!(
            folded_ahead.assignments(&conv.id).await.unwrap(),
            one_by_one.assignments(&conv.id).await.unwrap()
        );
    }
}

/// A folded run is written only where it was folded: over a cursor another consumer
/// moved on, or one a rebuild took back, it writes nothing and says which.
async fn a_folded_run_writes_nothing_over_a_moved_cursor(backend: &Backend) {
    let store = &backend.store;
    let mut log = EventLog::new();
    let c1 = log.create(TENANT, "c1", Channel::Webchat, Q1, "2026-03-02T09:00:00Z");
    log.assign(&c1, "2026-03-02T09:01:00Z", A, "");
    log.assign(&c1, "2026-03-02T09:02:00Z", B, A);
    let events = domain_events(&log);
    let entries: Vec<(i64, Option<Entry<'_>>)> = events
        .iter()
        .map(|e| (e.log_sequence, Some(Entry::from(e))))
        .collect();

    let folded = store.fold_ahead(0, &entries[..3], None).await.unwrap();
    assert_eq!(
        store
            .apply_batch(CONVERSATION_EVENTS, &entries[..2])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .write_folded(CONVERSATION_EVENTS, &folded)
            .await
            .unwrap(),
        Following::Moved
    );
    assert_eq!(
        store.cursor(CONVERSATION_EVENTS).await.unwrap(),
        entries[1].0
    );
    let facts = store.conversation("c1").await.unwrap().unwrap();
    assert_eq!(
        facts.owner_agent_id, None,
        "the folded assignment was not written"
    );
    assert_eq!(store.assignments("c1").await.unwrap(), vec![]);

    let folded = store
        .fold_ahead(entries[1].0, &entries[2..], None)
        .await
        .unwrap();
    assert!(store.rebuild().await.unwrap() > 0);
    assert_eq!(
        store
            .write_folded(CONVERSATION_EVENTS, &folded)
            .await
            .unwrap(),
        Following::Rebuilt
    );
    assert_eq!(store.cursor(CONVERSATION_EVENTS).await.unwrap(), 0);
    assert_eq!(store.conversation("c1").await.unwrap(), None);
}

/// Rollups are keyed by the numbers of their texts (migration 0012). A second store on the
/// same database, as another replica or a restart would open it, has seen none of them:
/// it reads the same counts as the first, and writes onto the rows the first wrote without
/// naming any text again (on PostgreSQL, without drawing numbers it does not use). A
/// filter on a text never named matches nothing, not everything.
async fn rollups_keyed_by_number_read_alike_from_another_replica(backend: &Backend) {
    const C: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";
    let first = &backend.store;
    let mut rng = Lcg(11);
    let base = micros("2026-03-29T08:00:00Z");
    let event = |log_sequence: i64, rng: &mut Lcg, agent: &str| RoutingEvent {
        log_sequence,
        tenant_id: if log_sequence % 5 == 0 {
            OTHER_TENANT
        } else {
            TENANT
        }
        .to_owned(),
        kind: [
            RoutingEventKind::OfferCreated,
            RoutingEventKind::OfferAccepted,
            RoutingEventKind::OfferRejected,
        ][rng.below(3) as usize],
        occurred_at: base + rng.below_wide(6 * 3_600_000_000) as i64,
        agent_id: agent.to_owned(),
        conversation_id: format!("c{}", rng.below(20)),
        queue_id: [Q1, Q2][rng.below(2) as usize].to_owned(),
        channel: 1,
        wait_started_at: Some(base - rng.below(120_000_000) as i64),
        offer_kind: OfferKind::Queue,
        ..RoutingEvent::default()
    };
    let mut events: Vec<RoutingEvent> = (1..=100)
        .map(|n| {
            let agent = [A, B][rng.below(2) as usize];
            event(n, &mut rng, agent)
        })
        .collect();
    // The second hundred repeats the first's texts (and so its labels, the waits).
    let again: Vec<RoutingEvent> = events
        .iter()
        .map(|e| RoutingEvent {
            log_sequence: e.log_sequence + 100,
            ..e.clone()
        })
        .collect();
    events.extend(again);
    apply_in_random_runs(first, &events[..100], &mut rng, 20).await;

    let second = Store::open(&backend.url).await.unwrap();
    let names = || async {
        let (count, last): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), CAST(MAX(id) AS BIGINT) FROM names")
                .fetch_one(&first.db().pool)
                .await
                .unwrap();
        (count, last)
    };
    let named = names().await;
    assert!(
        named.0 > 4,
        "tenants, metrics, queues and agents are named: {named:?}"
    );
    // The rest, written by the second store: every text is named already.
    apply_in_random_runs(&second, &events[100..], &mut rng, 20).await;
    assert_eq!(names().await, named, "no text is named twice");
    // A new text is named next, with the next number.
    events.push(event(201, &mut rng, C));
    apply_in_random_runs(&second, &events[200..], &mut rng, 1).await;
    assert_eq!(names().await, (named.0 + 1, named.1 + 1));

    let group = GroupBy {
        queue: true,
        agent: true,
        label: true,
        buckets: None,
    };
    let occurrences: Vec<_> = events.iter().flat_map(of_routing_event).collect();
    for tenant in [TENANT, OTHER_TENANT] {
        let day = query(tenant, "2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z");
        let expected = counted_here(occurrences.iter().filter(|o| o.tenant_id == tenant));
        assert!(!expected.is_empty());
        for store in [first, &second] {
            let counted = keyed(
                store
                    .metric_counts(&day, &Metric::ALL, group)
                    .await
                    .unwrap(),
            );
            assert_eq!(counted, expected, "{tenant}");
        }
    }

    const NEVER: &str = "dddddddd-dddd-4ddd-8ddd-dddddddddddd";
    let day = query(TENANT, "2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z");
    let never: &'static [String] = Vec::leak(vec![NEVER.to_owned()]);
    let never_or_b: &'static [String] = Vec::leak(vec![NEVER.to_owned(), B.to_owned()]);
    let only_b: &'static [String] = Vec::leak(vec![B.to_owned()]);
    for store in [first, &second] {
        let count = |query: FactQuery<'static>| async move {
            keyed(
                store
                    .metric_counts(&query, &Metric::ALL, group)
                    .await
                    .unwrap(),
            )
        };
        assert!(
            count(FactQuery {
                agent_ids: never,
                ..day
            })
            .await
            .is_empty()
        );
        assert!(
            count(FactQuery {
                queue_ids: never,
                ..day
            })
            .await
            .is_empty()
        );
        assert!(
            count(query(NEVER, "2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z"))
                .await
                .is_empty()
        );
        let b = count(FactQuery {
            agent_ids: only_b,
            ..day
        })
        .await;
        assert!(!b.is_empty());
        assert_eq!(
            count(FactQuery {
                agent_ids: never_or_b,
                ..day
            })
            .await,
            b
        );
    }
}

conformance!(
    rollups_keyed_by_number_read_alike_from_another_replica,
    runs_folded_ahead_store_what_runs_applied_one_by_one_store,
    a_folded_run_writes_nothing_over_a_moved_cursor,
    the_upgrade_folds_occurrences_into_their_rollups,
    a_batch_applies_only_what_is_new,
    per_conversation_sequences_do_not_collide,
    the_longest_filter_lists_fit_in_one_query,
    cursor_starts_at_zero_and_survives_reopening,
    same_event_twice_counts_once,
    concurrent_applies_of_one_event_count_once,
    cursor_and_facts_commit_together,
    skip_moves_only_the_cursor,
    report_queries_filter_and_bucket,
    metric_counts_are_exact_for_any_range,
    agent_time_is_exact_for_any_range,
    a_snapshot_reads_pages_that_agree_with_its_count,
    a_rebuild_forgets_everything_and_turns_away_old_positions,
    ledger_lines_end_alike_within_and_across_runs,
);
