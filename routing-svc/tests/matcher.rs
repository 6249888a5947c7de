//! The matcher against a real store, on SQLite (a temp file) and on PostgreSQL when
//! `SWITCHBOARD_TEST_POSTGRES_URL` is set (a fresh database per test): each queue is
//! matched on its own merits, a pass fills every free seat oldest first, records stay
//! one per change, every due offer is timed out, and conversations that waited too long
//! move to their queue's overflow queue.

use routing_svc::domain::{
    Agent, AssignmentMethod, CapacityProfile, Channel, ChannelCost, LogoutBehavior, Presence,
    Program, Queue, SkillRequirement, TransferFallback, WaitingItem,
};
use routing_svc::engine::expiry::expire_due;
use routing_svc::engine::matcher::{Matcher, match_waiting, overflow_due};
use routing_svc::store::Store;
use routing_svc::store::catalog::{self, AgentProfileInput};
use routing_svc::store::routing::{self, EnqueueInput, ReserveInput};
use switchboard_server_kit::db::now_micros;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[macro_use]
mod common;

on_each_backend!(
    a_backlog_nobody_can_take_never_delays_another_queue,
    one_pass_fills_every_free_seat_oldest_first,
    round_robin_and_max_open_hold_within_one_pass,
    an_unserved_backlog_is_recorded_once_a_slice_per_pass,
    two_matchers_on_one_store_never_promise_a_seat_twice,
    a_pass_skips_a_conversation_another_change_holds,
    every_due_offer_times_out_in_one_call,
    members_kept_between_passes_follow_every_change,
    a_backlog_held_back_on_login_does_not_hide_newer_conversations,
    due_conversations_overflow_once_keeping_their_wait,
    an_offered_conversation_overflows_once_its_offer_ends,
    a_conversation_that_cannot_overflow_stays_and_is_not_looked_at_again,
    rescheduling_follows_the_queue_settings,
);

// --- fixtures -------------------------------------------------------------------------

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

/// A tenant with one program and a capacity profile where chat costs one unit.
struct Tenant {
    id: String,
    program: String,
    capacity: CapacityProfile,
}

async fn tenant(store: &Store, total_units: i32) -> Tenant {
    let id = new_id();
    let program = Program {
        id: new_id(),
        tenant_id: id.clone(),
        display_name: "Support".into(),
        create_time: now_micros(),
    };
    let capacity = CapacityProfile {
        id: new_id(),
        tenant_id: id.clone(),
        display_name: "Default".into(),
        total_units,
        channel_costs: vec![ChannelCost {
            channel: Channel::Voice.as_i32(),
            units: total_units,
        }],
        excluded_channels: vec![],
    };
    let mut tx = store.begin().await.unwrap();
    catalog::insert_program(&mut tx, &program).await.unwrap();
    catalog::insert_capacity_profile(&mut tx, &capacity, now_micros())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Tenant {
        id,
        program: program.id,
        capacity,
    }
}

impl Tenant {
    fn queue(&self, name: &str) -> Queue {
        let now = now_micros();
        Queue {
            id: new_id(),
            tenant_id: self.id.clone(),
            program_id: self.program.clone(),
            display_name: name.to_owned(),
            accepted_channels: vec![Channel::Webchat, Channel::Voice],
            assignment_method: AssignmentMethod::MostAvailableCapacity,
            max_open_per_agent: 0,
            offer_timeout_us: 30_000_000,
            logout_behavior: LogoutBehavior::Keep,
            offer_waiting_on_login: true,
            required_skills: vec![],
            priority: 0,
            overflow_queue_id: None,
            overflow_after_us: 0,
            transfer_fallback: TransferFallback::ReturnToSender,
            wrap_up_time_limit_us: 0,
            create_time: now,
            update_time: now,
        }
    }

    async fn add_queue(&self, store: &Store, queue: &Queue) {
        let mut tx = store.begin().await.unwrap();
        catalog::insert_queue(&mut tx, queue).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// `count` agents of `queues` in `presence`, ids in creation order (sortable).
    async fn agents(
        &self,
        store: &Store,
        count: usize,
        queues: &[&Queue],
        presence: Presence,
    ) -> Vec<Agent> {
        let mut tx = store.begin().await.unwrap();
        let mut agents = Vec::new();
        for n in 0..count {
            let agent = catalog::upsert_agent_profile(
                &mut tx,
                &AgentProfileInput {
                    tenant_id: self.id.clone(),
                    agent_id: format!("agent-{n:04}-{}", new_id()),
                    display_name: format!("Agent {n}"),
                    capacity: self.capacity.clone(),
                    queue_ids: queues.iter().map(|q| q.id.clone()).collect(),
                    skills: vec![],
                },
                now_micros(),
            )
            .await
            .unwrap();
            routing::set_presence(&mut tx, &agent, presence, "", &agent.agent_id, now_micros())
                .await
                .unwrap();
            agents.push(agent);
        }
        tx.commit().await.unwrap();
        agents
    }

    /// `count` chat conversations in `queue`, waiting since `first_time`, one microsecond
    /// apart, oldest first.
    async fn enqueue(
        &self,
        store: &Store,
        queue: &Queue,
        count: usize,
        first_time: i64,
    ) -> Vec<WaitingItem> {
        let mut tx = store.begin().await.unwrap();
        let mut items = Vec::new();
        for n in 0..count {
            let item = routing::enqueue(
                &mut tx,
                &EnqueueInput {
                    tenant_id: self.id.clone(),
                    conversation_id: new_id(),
                    queue: queue.clone(),
                    channel: Channel::Webchat,
                    customer_display_name: "Customer".into(),
                    channel_address: "+15550100".into(),
                    enqueue_key: "create".into(),
                    enqueue_time: first_time + i64::try_from(n).unwrap(),
                },
                now_micros(),
            )
            .await
            .unwrap();
            items.push(item);
        }
        tx.commit().await.unwrap();
        items
    }
}

/// Whether each of `items` is now under offer, in order.
async fn offered(store: &Store, items: &[WaitingItem]) -> Vec<bool> {
    let mut conn = store.conn().await.unwrap();
    let mut result = Vec::new();
    for item in items {
        let waiting = routing::get_waiting(&mut conn, &item.tenant_id, &item.conversation_id)
            .await
            .unwrap()
            .expect("still waiting");
        result.push(waiting.offered);
    }
    result
}

/// (agent, queue) of every pending offer, in the order they were made.
async fn pending_offers(store: &Store) -> Vec<(String, String, String)> {
    let mut conn = store.conn().await.unwrap();
    sqlx::query_as(
        "SELECT agent_id, queue_id, conversation_id FROM offers WHERE state = 1 \
         ORDER BY create_time, id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

async fn decisions_of_queue(store: &Store, queue: &Queue) -> Vec<(String, Option<String>)> {
    let mut conn = store.conn().await.unwrap();
    sqlx::query_as(
        "SELECT conversation_id, offer_id FROM routing_decisions WHERE queue_id = $1 \
         ORDER BY conversation_id",
    )
    .bind(&queue.id)
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

// --- cases ----------------------------------------------------------------------------

/// More conversations than any old batch wait in a higher-priority queue whose one
/// member lacks the skill; the member's other queue has one conversation, younger than
/// all of them. One pass offers it.
async fn a_backlog_nobody_can_take_never_delays_another_queue(store: Store) {
    let t = tenant(&store, 2).await;
    let stuck = Queue {
        priority: 5,
        required_skills: vec![SkillRequirement {
            name: "billing".into(),
            min_level: 1,
        }],
        ..t.queue("Billing")
    };
    let open = t.queue("Chat");
    t.add_queue(&store, &stuck).await;
    t.add_queue(&store, &open).await;
    let agent = t
        .agents(&store, 1, &[&stuck, &open], Presence::Available)
        .await
        .remove(0);
    let backlog = t.enqueue(&store, &stuck, 600, 1_000).await;
    let chat = t.enqueue(&store, &open, 1, 1_000_000).await;

    let made = match_waiting(&store, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(made, 1);
    assert_eq!(offered(&store, &chat).await, [true]);
    assert_eq!(
        pending_offers(&store).await,
        [(
            agent.agent_id.clone(),
            open.id.clone(),
            chat[0].conversation_id.clone()
        )]
    );
    assert!(offered(&store, &backlog).await.iter().all(|o| !o));
}

/// Sixty conversations, three agents with five free seats between them (one agent
/// already holds a conversation): one pass makes five offers, to the five oldest.
async fn one_pass_fills_every_free_seat_oldest_first(store: Store) {
    let t = tenant(&store, 2).await;
    let queue = t.queue("Chat");
    t.add_queue(&store, &queue).await;
    let agents = t.agents(&store, 3, &[&queue], Presence::Available).await;
    let mut tx = store.begin().await.unwrap();
    routing::reserve_capacity(
        &mut tx,
        &ReserveInput {
            tenant_id: &t.id,
            conversation_id: &new_id(),
            agent_id: &agents[0].agent_id,
            channel: Channel::Webchat,
            queue: None,
            override_capacity: false,
        },
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Enqueued youngest first, so that the order comes from the enqueue times.
    let mut items = t.enqueue(&store, &queue, 30, 5_000).await;
    items.extend(t.enqueue(&store, &queue, 30, 1_000).await);
    items.sort_by_key(|item| item.enqueue_time);

    let token = CancellationToken::new();
    assert_eq!(match_waiting(&store, &token).await.unwrap(), 5);
    let expected: Vec<bool> = (0..items.len()).map(|n| n < 5).collect();
    assert_eq!(offered(&store, &items).await, expected);
    let offers = pending_offers(&store).await;
    for (agent, seats) in agents.iter().zip([1, 2, 2]) {
        let held = offers
            .iter()
            .filter(|(a, _, _)| *a == agent.agent_id)
            .count();
        assert_eq!(held, seats, "offers to {}", agent.agent_id);
    }
    // Every seat is promised: another pass has nothing to offer.
    assert_eq!(match_waiting(&store, &token).await.unwrap(), 0);
    assert_eq!(pending_offers(&store).await.len(), 5);
}

/// The rotation and the per-agent limit move with each offer of a pass, not only
/// between passes.
async fn round_robin_and_max_open_hold_within_one_pass(store: Store) {
    let t = tenant(&store, 5).await;
    let rotating = Queue {
        assignment_method: AssignmentMethod::RoundRobin,
        max_open_per_agent: 2,
        ..t.queue("Rotating")
    };
    t.add_queue(&store, &rotating).await;
    let agents = t.agents(&store, 3, &[&rotating], Presence::Available).await;
    let items = t.enqueue(&store, &rotating, 10, 1_000).await;

    assert_eq!(
        match_waiting(&store, &CancellationToken::new())
            .await
            .unwrap(),
        6,
        "three agents, two each"
    );
    let order: Vec<String> = pending_offers(&store)
        .await
        .into_iter()
        .map(|(agent, _, _)| agent)
        .collect();
    let ids: Vec<String> = agents.iter().map(|a| a.agent_id.clone()).collect();
    let expected: Vec<String> = ids.iter().chain(ids.iter()).cloned().collect();
    assert_eq!(order, expected);
    let expected: Vec<bool> = (0..items.len()).map(|n| n < 6).collect();
    assert_eq!(offered(&store, &items).await, expected);
}

/// Nobody can take a 600-conversation backlog: one pass records only a slice of the
/// "nobody eligible" decisions, passes of one matcher go on where the last stopped until
/// each conversation has its one record, and later passes write none.
async fn an_unserved_backlog_is_recorded_once_a_slice_per_pass(store: Store) {
    let t = tenant(&store, 2).await;
    let queue = t.queue("Chat");
    t.add_queue(&store, &queue).await;
    t.agents(&store, 2, &[&queue], Presence::Away).await;
    let backlog = t.enqueue(&store, &queue, 600, 1_000).await;

    let token = CancellationToken::new();
    let mut matcher = Matcher::default();
    assert_eq!(matcher.pass(&store, &token).await.unwrap(), 0);
    let first = decisions_of_queue(&store, &queue).await.len();
    assert!(first > 0 && first < backlog.len(), "{first} recorded");
    let mut passes = 1;
    while decisions_of_queue(&store, &queue).await.len() < backlog.len() {
        assert_eq!(matcher.pass(&store, &token).await.unwrap(), 0);
        passes += 1;
        assert!(passes <= backlog.len(), "records stopped growing");
    }
    assert_eq!(matcher.pass(&store, &token).await.unwrap(), 0);
    assert_eq!(match_waiting(&store, &token).await.unwrap(), 0);
    let decisions = decisions_of_queue(&store, &queue).await;
    assert_eq!(decisions.len(), backlog.len(), "one record each");
    let mut recorded: Vec<&str> = decisions.iter().map(|(c, _)| c.as_str()).collect();
    recorded.dedup();
    assert_eq!(recorded.len(), backlog.len());
    assert!(decisions.iter().all(|(_, offer)| offer.is_none()));
}

/// Two replicas' matchers on one store at once: each seat is promised once and each
/// conversation offered once.
async fn two_matchers_on_one_store_never_promise_a_seat_twice(store: Store) {
    let t = tenant(&store, 2).await;
    let queue = t.queue("Chat");
    t.add_queue(&store, &queue).await;
    t.agents(&store, 3, &[&queue], Presence::Available).await;
    t.enqueue(&store, &queue, 20, 1_000).await;

    let token = CancellationToken::new();
    let passes: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let token = token.clone();
            tokio::spawn(async move { match_waiting(&store, &token).await.unwrap() })
        })
        .collect();
    let mut made = 0;
    for pass in passes {
        made += pass.await.unwrap();
    }
    assert_eq!(made, 6);
    let offers = pending_offers(&store).await;
    assert_eq!(offers.len(), 6);
    let mut conversations: Vec<&str> = offers.iter().map(|(_, _, c)| c.as_str()).collect();
    conversations.sort_unstable();
    conversations.dedup();
    assert_eq!(conversations.len(), 6);
    let mut conn = store.conn().await.unwrap();
    let over: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM agents WHERE capacity_used + pending_units > capacity_total",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(over, 0);
}

/// A pass meets a conversation whose row another transaction holds (on PostgreSQL: another
/// replica offering it, a pick, a cancel): it goes on to the next one at once rather than
/// waiting, and offers the held one on a later pass once it is free. SQLite has one writer,
/// so nothing can hold a row there while the pass runs: both are offered in one pass.
async fn a_pass_skips_a_conversation_another_change_holds(store: Store) {
    let t = tenant(&store, 2).await;
    let queue = t.queue("Chat");
    t.add_queue(&store, &queue).await;
    t.agents(&store, 1, &[&queue], Presence::Available).await;
    let items = t.enqueue(&store, &queue, 2, 1_000).await;
    let token = CancellationToken::new();
    if store.dialect() != switchboard_server_kit::db::Dialect::Postgres {
        assert_eq!(match_waiting(&store, &token).await.unwrap(), 2);
        assert_eq!(offered(&store, &items).await, [true, true]);
        return;
    }
    let mut held = store.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM waiting WHERE conversation_id = $1 FOR UPDATE")
        .bind(&items[0].conversation_id)
        .execute(held.conn())
        .await
        .unwrap();
    // A pass that waited for the held row would never end while it is held; the timeout
    // only stops a hang.
    let pass = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        match_waiting(&store, &token),
    )
    .await
    .expect("the pass did not wait for the held row")
    .unwrap();
    assert_eq!(pass, 1);
    assert_eq!(offered(&store, &items).await, [false, true]);
    held.rollback().await.unwrap();
    assert_eq!(match_waiting(&store, &token).await.unwrap(), 1);
    assert_eq!(offered(&store, &items).await, [true, true]);
}

/// More offers fall due than one read of due offers returns: one call times out all.
async fn every_due_offer_times_out_in_one_call(store: Store) {
    let t = tenant(&store, 1).await;
    let hasty = Queue {
        offer_timeout_us: 1,
        ..t.queue("Hasty")
    };
    t.add_queue(&store, &hasty).await;
    t.agents(&store, 150, &[&hasty], Presence::Available).await;
    t.enqueue(&store, &hasty, 150, 1_000).await;
    let token = CancellationToken::new();
    assert_eq!(match_waiting(&store, &token).await.unwrap(), 150);

    assert_eq!(expire_due(&store, &token).await.unwrap(), 150);
    assert!(pending_offers(&store).await.is_empty());
    let mut conn = store.conn().await.unwrap();
    let rona: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE presence = $1")
        .bind(i64::from(Presence::Rona.as_i32()))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(rona, 150);
}

/// The matcher keeps queue members between passes: an agent coming back, a new member
/// and a member leaving the queue are all seen by the next pass, not only by the
/// periodic full one.
async fn members_kept_between_passes_follow_every_change(store: Store) {
    let t = tenant(&store, 1).await;
    let queue = t.queue("Chat");
    t.add_queue(&store, &queue).await;
    let ada = t
        .agents(&store, 1, &[&queue], Presence::Away)
        .await
        .remove(0);
    let mut matcher = Matcher::default();
    let stop = CancellationToken::new();
    let first = t.enqueue(&store, &queue, 1, 1_000).await;
    assert_eq!(matcher.pass(&store, &stop).await.unwrap(), 0, "Ada is away");

    // Ada comes back: the kept copy must not still see her away.
    let mut tx = store.begin().await.unwrap();
    routing::set_presence(
        &mut tx,
        &ada,
        Presence::Available,
        "",
        &ada.agent_id,
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(matcher.pass(&store, &stop).await.unwrap(), 1);
    assert_eq!(offered(&store, &first).await, [true]);

    // Ada is full now; a new member joins and takes the next one.
    let bob = t
        .agents(&store, 1, &[&queue], Presence::Available)
        .await
        .remove(0);
    let second = t.enqueue(&store, &queue, 1, 2_000).await;
    assert_eq!(matcher.pass(&store, &stop).await.unwrap(), 1);
    assert_eq!(
        pending_offers(&store).await.last().map(|o| o.0.clone()),
        Some(bob.agent_id.clone())
    );

    // Bob leaves the queue (his profile now names none); a third conversation finds
    // nobody rather than an offer to someone who is no longer a member.
    let mut tx = store.begin().await.unwrap();
    catalog::upsert_agent_profile(
        &mut tx,
        &AgentProfileInput {
            tenant_id: t.id.clone(),
            agent_id: bob.agent_id.clone(),
            display_name: "Bob".into(),
            capacity: CapacityProfile {
                total_units: 5,
                ..t.capacity.clone()
            },
            queue_ids: vec![],
            skills: vec![],
        },
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let third = t.enqueue(&store, &queue, 1, 3_000).await;
    assert_eq!(matcher.pass(&store, &stop).await.unwrap(), 0);
    assert_eq!(offered(&store, &second).await, [true]);
    assert_eq!(offered(&store, &third).await, [false]);
}

/// A queue that keeps its backlog from agents who log in, with more conversations waiting
/// since before its only agent logged in than a walk reads: one that arrives after the
/// login is still offered in the first pass.
async fn a_backlog_held_back_on_login_does_not_hide_newer_conversations(store: Store) {
    let t = tenant(&store, 2).await;
    let queue = Queue {
        offer_waiting_on_login: false,
        ..t.queue("Fresh work only")
    };
    t.add_queue(&store, &queue).await;
    let backlog = t.enqueue(&store, &queue, 250, 1_000).await;
    let agent = t
        .agents(&store, 1, &[&queue], Presence::Available)
        .await
        .remove(0);
    let fresh = t.enqueue(&store, &queue, 1, 1_000_000).await;

    let made = match_waiting(&store, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(made, 1);
    assert_eq!(
        pending_offers(&store).await,
        [(
            agent.agent_id.clone(),
            queue.id.clone(),
            fresh[0].conversation_id.clone()
        )]
    );
    assert!(offered(&store, &backlog).await.iter().all(|o| !o));
}

// --- overflow -------------------------------------------------------------------------

/// A queue that overflows to `to` after `after_us`.
fn overflowing(t: &Tenant, name: &str, to: &Queue, after_us: i64) -> Queue {
    Queue {
        overflow_queue_id: Some(to.id.clone()),
        overflow_after_us: after_us,
        ..t.queue(name)
    }
}

/// (queue, enqueue time, entered time, overflow due time) of a waiting conversation.
async fn placement(store: &Store, item: &WaitingItem) -> (String, i64, i64, Option<i64>) {
    let mut conn = store.conn().await.unwrap();
    sqlx::query_as(
        "SELECT queue_id, enqueue_time, entered_time, overflow_due_us FROM waiting \
         WHERE conversation_id = $1",
    )
    .bind(&item.conversation_id)
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

/// (from queue, to queue, enqueue key) of the conversation's overflow outbox entries.
async fn overflow_entries(store: &Store, item: &WaitingItem) -> Vec<(String, String, String)> {
    let mut conn = store.conn().await.unwrap();
    sqlx::query_as(
        "SELECT overflow_from, queue_id, enqueue_key FROM outbox \
         WHERE conversation_id = $1 AND overflow_from <> '' ORDER BY conversation_seq",
    )
    .bind(&item.conversation_id)
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

/// (queue, from queue) of the conversation's overflow events.
async fn overflow_events(store: &Store, item: &WaitingItem) -> Vec<(String, String)> {
    let mut conn = store.conn().await.unwrap();
    sqlx::query_as(
        "SELECT queue_id, from_queue_id FROM events \
         WHERE conversation_id = $1 AND type = 'conversation.overflowed' ORDER BY sequence",
    )
    .bind(&item.conversation_id)
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

/// Conversations waiting past their queue's overflow_after move to the overflow queue, each
/// once however many replicas sweep at the same moment; they keep their wait and enqueue
/// key, enter the new queue now, and take on its own overflow from then. One not yet due
/// stays.
async fn due_conversations_overflow_once_keeping_their_wait(store: Store) {
    let t = tenant(&store, 2).await;
    let last = t.queue("Last resort");
    let second = overflowing(&t, "Second line", &last, 3_600_000_000);
    let first = overflowing(&t, "First line", &second, 1);
    let patient = overflowing(&t, "Patient", &second, 3_600_000_000);
    for queue in [&last, &second, &first, &patient] {
        t.add_queue(&store, queue).await;
    }
    let items = t.enqueue(&store, &first, 30, 1_000).await;
    let waiting = t.enqueue(&store, &patient, 1, 1_000).await;
    let (_, _, entered, due) = placement(&store, &waiting[0]).await;
    assert_eq!(due, Some(entered + 3_600_000_000));

    let before = now_micros();
    let token = CancellationToken::new();
    let sweeps: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let token = token.clone();
            tokio::spawn(async move { overflow_due(&store, &token).await.unwrap() })
        })
        .collect();
    let mut moved = 0;
    for sweep in sweeps {
        moved += sweep.await.unwrap();
    }
    assert_eq!(moved, items.len(), "each conversation moved once");
    for item in &items {
        let (queue, enqueue_time, entered, due) = placement(&store, item).await;
        assert_eq!(queue, second.id);
        assert_eq!(enqueue_time, item.enqueue_time, "the wait carries over");
        assert!(entered >= before, "it entered the second queue on the move");
        assert_eq!(
            due,
            Some(entered + 3_600_000_000),
            "the second queue's own wait"
        );
        assert_eq!(
            overflow_entries(&store, item).await,
            [(first.id.clone(), second.id.clone(), "create".to_owned())]
        );
        assert_eq!(
            overflow_events(&store, item).await,
            [(second.id.clone(), first.id.clone())]
        );
    }
    assert_eq!(
        placement(&store, &waiting[0]).await.0,
        patient.id,
        "not due yet"
    );
    assert_eq!(overflow_due(&store, &token).await.unwrap(), 0);
}

/// A conversation under offer when its overflow falls due stays while the offer is
/// pending, and moves once the offer ends unaccepted.
async fn an_offered_conversation_overflows_once_its_offer_ends(store: Store) {
    let t = tenant(&store, 1).await;
    let backup = t.queue("Backup");
    let front = overflowing(&t, "Front", &backup, 1);
    t.add_queue(&store, &backup).await;
    t.add_queue(&store, &front).await;
    let agent = t
        .agents(&store, 1, &[&front], Presence::Available)
        .await
        .remove(0);
    let item = t.enqueue(&store, &front, 1, 1_000).await.remove(0);
    let token = CancellationToken::new();
    assert_eq!(match_waiting(&store, &token).await.unwrap(), 1);

    assert_eq!(overflow_due(&store, &token).await.unwrap(), 0);
    assert_eq!(
        placement(&store, &item).await.0,
        front.id,
        "the offer is pending"
    );

    let offer = {
        let mut conn = store.conn().await.unwrap();
        routing::pending_offers_of_agent(&mut conn, &t.id, &agent.agent_id)
            .await
            .unwrap()
            .remove(0)
    };
    let mut tx = store.begin().await.unwrap();
    routing::reject_offer(
        &mut tx,
        &t.id,
        &agent.agent_id,
        &offer.id,
        "busy",
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(overflow_due(&store, &token).await.unwrap(), 1);
    assert_eq!(placement(&store, &item).await.0, backup.id);
}

/// An overflow queue that does not accept the conversation's channel, or no longer exists,
/// leaves the conversation where it is; its due time is cleared, so that later sweeps do
/// not read it again.
async fn a_conversation_that_cannot_overflow_stays_and_is_not_looked_at_again(store: Store) {
    let t = tenant(&store, 1).await;
    let voice_only = Queue {
        accepted_channels: vec![Channel::Voice],
        ..t.queue("Voice only")
    };
    let to_voice = overflowing(&t, "To voice", &voice_only, 1);
    let gone = t.queue("Never created");
    let to_nowhere = overflowing(&t, "To nowhere", &gone, 1);
    for queue in [&voice_only, &to_voice, &to_nowhere] {
        t.add_queue(&store, queue).await;
    }
    let chat = t.enqueue(&store, &to_voice, 1, 1_000).await.remove(0);
    let lost = t.enqueue(&store, &to_nowhere, 1, 1_000).await.remove(0);

    let token = CancellationToken::new();
    assert_eq!(overflow_due(&store, &token).await.unwrap(), 0);
    for (item, queue) in [(&chat, &to_voice), (&lost, &to_nowhere)] {
        let (stays_in, _, _, due) = placement(&store, item).await;
        assert_eq!(stays_in, queue.id);
        assert_eq!(due, None, "not looked at again");
        assert!(overflow_entries(&store, item).await.is_empty());
        assert!(overflow_events(&store, item).await.is_empty());
    }
    let mut conn = store.conn().await.unwrap();
    assert!(
        routing::due_overflows(&mut conn, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// New overflow settings apply to conversations already waiting, counting from when each
/// entered the queue; removing them stops the overflow.
async fn rescheduling_follows_the_queue_settings(store: Store) {
    let t = tenant(&store, 1).await;
    let backup = t.queue("Backup");
    let front = t.queue("Front");
    t.add_queue(&store, &backup).await;
    t.add_queue(&store, &front).await;
    let items = t.enqueue(&store, &front, 2, 1_000).await;
    assert_eq!(
        placement(&store, &items[0]).await.3,
        None,
        "no overflow set"
    );

    let changed = overflowing(&t, "Front", &backup, 60_000_000);
    let changed = Queue {
        id: front.id.clone(),
        ..changed
    };
    let reschedule = |queue: Queue| {
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let set = routing::reschedule_overflow(tx.conn(), &queue)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            set
        }
    };
    assert_eq!(reschedule(changed).await, 2);
    let (_, _, entered, due) = placement(&store, &items[0]).await;
    assert_eq!(due, Some(entered + 60_000_000));

    assert_eq!(reschedule(front).await, 2);
    assert_eq!(placement(&store, &items[1]).await.3, None, "removed");
}
