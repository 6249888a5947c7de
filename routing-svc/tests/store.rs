//! Store conformance: the same cases on SQLite (a temp file) and on PostgreSQL when
//! `SWITCHBOARD_TEST_POSTGRES_URL` is set (a fresh database per test).

use std::sync::Arc;

use routing_svc::domain::matching::{CandidateView, decide};
use routing_svc::domain::{
    Agent, AssignmentMethod, CapacityProfile, Channel, ChannelCost, LogoutBehavior, OfferState,
    Presence, Program, Queue, TransferFallback, WaitingItem,
};
use routing_svc::error::Error;
use routing_svc::store::catalog::{self, AgentProfileInput};
use routing_svc::store::page::PageRequest;
use routing_svc::store::routing::{self, EnqueueInput, Locks, Lost, OfferPlan, ReserveInput};
use routing_svc::store::{NewEvent, Store, Topic, events, outbox};
use sqlx::Row;
use switchboard_server_kit::db::now_micros;
use uuid::Uuid;

#[macro_use]
mod common;

on_each_backend!(
    catalog_round_trip_and_pagination,
    agent_profile_upsert_keeps_live_state,
    idempotent_responses_replay,
    events_are_gap_free_under_concurrent_writers,
    two_claimers_of_one_waiting_item_one_wins,
    concurrent_reservations_never_exceed_capacity,
    concurrent_offers_never_promise_more_than_capacity,
    accept_reserves_and_writes_the_outbox,
    accept_fails_without_capacity_and_changes_nothing,
    timeout_requeues_keeping_place_and_puts_agent_in_rona,
    a_batch_of_time_outs_does_what_each_would_alone,
    a_lost_offer_says_which_side_was_stale,
    a_claim_without_waiting_leaves_a_conversation_being_offered_to_its_maker,
    reject_requeues_and_excludes_the_agent,
    cancel_waiting_withdraws_the_pending_offer,
    enqueue_is_idempotent_by_key,
    release_is_idempotent_and_reserve_reports_overrides,
    leaving_available_withdraws_pending_offers,
    outbox_lease_has_one_winner,
    max_open_per_agent_is_never_exceeded,
    decisions_list_newest_first,
    manual_claim_takes_a_waiting_item,
    matcher_offers_higher_priority_then_oldest_first,
    display_name_is_written_only_when_it_differs,
    commits_wake_only_the_streams_they_concern,
    skill_levels_and_excluded_channels_are_stored_and_enforced,
    offers_carry_address_queue_name_and_wait_start,
    offers_list_newest_first_with_filters,
    a_claim_that_loses_the_race_is_a_conflict,
    a_cancel_that_meets_an_offer_being_made_withdraws_it,
    a_plan_read_before_a_decline_is_not_offered_to_that_agent,
    an_agent_locked_out_of_order_gives_way_instead_of_deadlocking,
    a_claim_passes_over_entries_another_transaction_holds,
);

// --- fixtures -------------------------------------------------------------------------

struct Fixture {
    tenant: String,
    program: Program,
    queue: Queue,
    capacity: CapacityProfile,
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

fn queue_in(tenant: &str, program: &str, name: &str) -> Queue {
    let now = now_micros();
    Queue {
        id: new_id(),
        tenant_id: tenant.to_owned(),
        program_id: program.to_owned(),
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

async fn fixture(store: &Store, total_units: i32) -> Fixture {
    let tenant = new_id();
    let program = Program {
        id: new_id(),
        tenant_id: tenant.clone(),
        display_name: "Support".into(),
        create_time: now_micros(),
    };
    let queue = queue_in(&tenant, &program.id, "Chat");
    let capacity = CapacityProfile {
        id: new_id(),
        tenant_id: tenant.clone(),
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
    catalog::insert_queue(&mut tx, &queue).await.unwrap();
    catalog::insert_capacity_profile(&mut tx, &capacity, now_micros())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Fixture {
        tenant,
        program,
        queue,
        capacity,
    }
}

impl Fixture {
    /// A webchat conversation offered to a new agent who accepted it: one outbox entry.
    async fn accepted(&self, store: &Store) -> (WaitingItem, routing_svc::domain::Offer) {
        let agent = self.agent(store, "A").await;
        let item = self.enqueue(store, Channel::Webchat).await;
        let offer = self.offer(store, &self.queue, &item, &agent).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        routing::accept_offer(&mut tx, &agent, &offer.id, now_micros(), 0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (item, offer)
    }

    async fn agent(&self, store: &Store, name: &str) -> Agent {
        let agent_id = new_id();
        let mut tx = store.begin().await.unwrap();
        let agent = catalog::upsert_agent_profile(
            &mut tx,
            &AgentProfileInput {
                tenant_id: self.tenant.clone(),
                agent_id: agent_id.clone(),
                display_name: String::new(),
                capacity: self.capacity.clone(),
                queue_ids: vec![self.queue.id.clone()],
                skills: vec![],
            },
            now_micros(),
        )
        .await
        .unwrap();
        routing::set_presence(
            &mut tx,
            &agent,
            Presence::Available,
            "",
            &agent.agent_id,
            now_micros(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        // The name comes from the directory, through the agent's own calls.
        assert!(
            catalog::refresh_display_name(store, &self.tenant, &agent_id, name)
                .await
                .unwrap()
        );
        self.reload(store, &agent_id).await
    }

    async fn reload(&self, store: &Store, agent_id: &str) -> Agent {
        let mut conn = store.conn().await.unwrap();
        catalog::get_agent(&mut conn, &self.tenant, agent_id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn enqueue(&self, store: &Store, channel: Channel) -> WaitingItem {
        self.enqueue_with(store, &new_id(), "create", channel, now_micros())
            .await
            .unwrap()
    }

    async fn enqueue_with(
        &self,
        store: &Store,
        conversation_id: &str,
        key: &str,
        channel: Channel,
        enqueue_time: i64,
    ) -> Result<WaitingItem, Error> {
        let mut tx = store.begin().await?;
        let item = routing::enqueue(
            &mut tx,
            &EnqueueInput {
                tenant_id: self.tenant.clone(),
                conversation_id: conversation_id.to_owned(),
                queue: self.queue.clone(),
                channel,
                customer_display_name: "Customer".into(),
                channel_address: "+15550100".into(),
                enqueue_key: key.into(),
                enqueue_time,
            },
            now_micros(),
        )
        .await?;
        tx.commit().await?;
        Ok(item)
    }

    /// The matcher's plan to offer `item` to `agent` in `queue`, at the agent's cost.
    fn plan<'a>(queue: &'a Queue, item: &'a WaitingItem, agent: &'a Agent) -> OfferPlan<'a> {
        OfferPlan {
            item,
            queue,
            agent_id: &agent.agent_id,
            units: routing_svc::domain::channel_units(&agent.channel_costs, item.channel),
            candidates: vec![],
            omitted: vec![],
            offer_id: new_id(),
        }
    }

    /// Offers `item` to `agent` with the queue's settings; `None` when the store refused.
    async fn offer(
        &self,
        store: &Store,
        queue: &Queue,
        item: &WaitingItem,
        agent: &Agent,
    ) -> Option<routing_svc::domain::Offer> {
        // As the matcher does: a claim that waits for nobody, and when the agent is busy
        // (another change holds it), the same plan once more waiting for the agent.
        let plan = Fixture::plan(queue, item, agent);
        for locks in [Locks::WithoutWaiting, Locks::Waiting] {
            let mut tx = store.begin().await.unwrap();
            match routing::create_offer(&mut tx, &plan, locks, now_micros())
                .await
                .unwrap()
            {
                Ok(offer) => {
                    tx.commit().await.unwrap();
                    return Some(offer);
                }
                Err(Lost::Busy) if locks == Locks::WithoutWaiting => {
                    tx.rollback().await.unwrap();
                }
                Err(_) => {
                    tx.rollback().await.unwrap();
                    return None;
                }
            }
        }
        None
    }

    async fn waiting(&self, store: &Store, conversation_id: &str) -> Option<WaitingItem> {
        let mut conn = store.conn().await.unwrap();
        routing::get_waiting(&mut conn, &self.tenant, conversation_id)
            .await
            .unwrap()
    }
}

/// Checks the stored counters against the offers and assignments they summarise.
async fn assert_ledger_consistent(store: &Store) {
    let mut conn = store.conn().await.unwrap();
    let rows = sqlx::query(
        "SELECT a.agent_id, a.capacity_used, a.pending_units, a.capacity_total, \
         (SELECT COALESCE(CAST(SUM(o.capacity_units) AS BIGINT), 0) FROM offers o \
          WHERE o.agent_id = a.agent_id AND o.state = 1) AS pending_sum, \
         (SELECT COALESCE(CAST(SUM(s.units) AS BIGINT), 0) FROM assignments s \
          WHERE s.agent_id = a.agent_id) AS used_sum FROM agents a",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for row in rows {
        let agent: String = row.get("agent_id");
        let used: i64 = row.get("capacity_used");
        let pending: i64 = row.get("pending_units");
        assert_eq!(
            pending,
            row.get::<i64, _>("pending_sum"),
            "pending of {agent}"
        );
        assert_eq!(used, row.get::<i64, _>("used_sum"), "used of {agent}");
        assert!(used >= 0 && pending >= 0, "{agent}: {used} {pending}");
    }
}

// --- cases ----------------------------------------------------------------------------

async fn catalog_round_trip_and_pagination(store: Store) {
    let f = fixture(&store, 3).await;
    let mut tx = store.begin().await.unwrap();
    for name in ["Alpha", "Beta", "Gamma"] {
        catalog::insert_program(
            &mut tx,
            &Program {
                id: new_id(),
                tenant_id: f.tenant.clone(),
                display_name: name.into(),
                create_time: now_micros(),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let duplicate = catalog::insert_program(
        &mut tx,
        &Program {
            id: new_id(),
            tenant_id: f.tenant.clone(),
            display_name: "Alpha".into(),
            create_time: now_micros(),
        },
    )
    .await;
    assert!(
        matches!(duplicate, Err(Error::AlreadyExists(_))),
        "{duplicate:?}"
    );
    drop(tx);

    let mut conn = store.conn().await.unwrap();
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = PageRequest::parse("programs", 2, &token).unwrap();
        let (programs, next) = catalog::list_programs(&mut conn, &f.tenant, &page)
            .await
            .unwrap();
        assert!(programs.len() <= 2);
        names.extend(programs.into_iter().map(|p| p.display_name));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(names, ["Alpha", "Beta", "Gamma", "Support"]);

    // Another tenant sees nothing of these.
    let other = new_id();
    let (none, _) = catalog::list_programs(
        &mut conn,
        &other,
        &PageRequest::parse("programs", 0, "").unwrap(),
    )
    .await
    .unwrap();
    assert!(none.is_empty());
    assert!(
        catalog::get_queue(&mut conn, &other, &f.queue.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        catalog::get_queue(&mut conn, &f.tenant, &f.queue.id)
            .await
            .unwrap()
            .unwrap(),
        f.queue
    );
    assert_eq!(
        catalog::get_capacity_profile(&mut conn, &f.tenant, &f.capacity.id)
            .await
            .unwrap()
            .unwrap(),
        f.capacity
    );
    drop(conn);

    let mut tx = store.begin().await.unwrap();
    let second = queue_in(&f.tenant, &f.program.id, "Voice");
    catalog::insert_queue(&mut tx, &second).await.unwrap();
    let same_name =
        catalog::insert_queue(&mut tx, &queue_in(&f.tenant, &f.program.id, "Voice")).await;
    assert!(matches!(same_name, Err(Error::AlreadyExists(_))));
    drop(tx);
    // The failed transaction left nothing behind.
    let mut conn = store.conn().await.unwrap();
    let (queues, next) = catalog::list_queues(
        &mut conn,
        &f.tenant,
        &f.program.id,
        &PageRequest::parse("queues", 1, "").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0].display_name, "Chat");
    assert!(next.is_empty(), "only the fixture's queue was committed");
}

async fn agent_profile_upsert_keeps_live_state(store: Store) {
    let f = fixture(&store, 4).await;
    let agent = f.agent(&store, "Ada").await;
    assert_eq!(agent.presence, Presence::Available);
    assert_eq!(agent.queue_ids, vec![f.queue.id.clone()]);
    let other_queue = queue_in(&f.tenant, &f.program.id, "Email");
    let mut tx = store.begin().await.unwrap();
    catalog::insert_queue(&mut tx, &other_queue).await.unwrap();
    let updated = catalog::upsert_agent_profile(
        &mut tx,
        &AgentProfileInput {
            tenant_id: f.tenant.clone(),
            agent_id: agent.agent_id.clone(),
            display_name: agent.display_name.clone(),
            capacity: f.capacity.clone(),
            queue_ids: vec![other_queue.id.clone()],
            skills: vec![routing_svc::domain::Skill {
                name: "billing".into(),
                level: 5,
            }],
        },
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        updated.display_name, "Ada",
        "a profile change keeps the directory's name"
    );
    assert_eq!(
        updated.presence,
        Presence::Available,
        "presence survives a profile change"
    );
    assert_eq!(updated.queue_ids, vec![other_queue.id.clone()]);
    assert_eq!(updated.skills.len(), 1);
    let mut conn = store.conn().await.unwrap();
    assert!(
        catalog::queue_members(&mut conn, &f.tenant, &f.queue.id)
            .await
            .unwrap()
            .is_empty()
    );
    let (agents, _) = catalog::list_agents(
        &mut conn,
        &f.tenant,
        &other_queue.id,
        &PageRequest::parse("agents", 0, "").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].queue_ids, vec![other_queue.id]);
}

async fn idempotent_responses_replay(store: Store) {
    use switchboard_proto::routing::v1::{CreateProgramRequest, Program as PbProgram};
    use switchboard_server_kit::idempotency::{Fingerprint, RequestKey};
    let tenant = new_id();
    let request_id = new_id();
    let request = |name: &str| CreateProgramRequest {
        request_id: request_id.clone(),
        program: Some(PbProgram {
            display_name: name.into(),
            ..Default::default()
        }),
    };
    let alice = RequestKey {
        tenant_id: &tenant,
        caller: "user:alice",
        method: "M",
        request_id: &request_id,
        fingerprint: Fingerprint::of(&request("sales")),
    };
    let mut tx = store.begin().await.unwrap();
    assert!(tx.replay::<PbProgram>(&alice).await.unwrap().is_none());
    let response = PbProgram {
        id: "p".into(),
        ..Default::default()
    };
    tx.remember(&alice, &response).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.replay::<PbProgram>(&alice).await.unwrap(),
        Some(response)
    );
    // Keyed by caller, tenant and method too.
    let other_tenant = new_id();
    for other in [
        RequestKey {
            caller: "user:bob",
            ..alice
        },
        RequestKey {
            tenant_id: &other_tenant,
            ..alice
        },
        RequestKey {
            method: "N",
            ..alice
        },
    ] {
        assert!(tx.replay::<PbProgram>(&other).await.unwrap().is_none());
    }
    // The same key with another request is refused on request_id.
    let support = RequestKey {
        fingerprint: Fingerprint::of(&request("support")),
        ..alice
    };
    let err = tx.replay::<PbProgram>(&support).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { field, .. } if field == "request_id"),
        "{err:?}"
    );
}

async fn events_are_gap_free_under_concurrent_writers(store: Store) {
    let start = {
        let mut conn = store.conn().await.unwrap();
        events::last_sequence(&mut conn).await.unwrap()
    };
    let writers = 8;
    let per_writer = 10;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                let mut tx = store.begin().await.unwrap();
                tx.event(NewEvent::new("t", "test.one").agent(&writer.to_string()));
                tx.event(NewEvent::new("t", "test.two").agent(&writer.to_string()));
                tx.commit().await.unwrap();
            }
        }));
    }
    // A reader following the log while the writers run sees every sequence in order.
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut cursor = start;
            let mut seen = Vec::new();
            while seen.len() < writers * per_writer * 2 {
                let mut conn = store.conn().await.unwrap();
                for event in events::after(&mut conn, cursor, 7).await.unwrap() {
                    assert_eq!(event.sequence, cursor + 1, "no gap, no reordering");
                    cursor = event.sequence;
                    seen.push(event);
                }
                drop(conn);
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.len(), writers * per_writer * 2);
    // The two events of one transaction are adjacent.
    for pair in seen.chunks(2) {
        assert_eq!(pair[0].kind, "test.one");
        assert_eq!(pair[1].kind, "test.two");
        assert_eq!(pair[0].agent_id, pair[1].agent_id);
    }
}

async fn two_claimers_of_one_waiting_item_one_wins(store: Store) {
    let f = Arc::new(fixture(&store, 10).await);
    let a = f.agent(&store, "A").await;
    let b = f.agent(&store, "B").await;
    for _ in 0..10 {
        let item = f.enqueue(&store, Channel::Webchat).await;
        let claim = |agent: Agent| {
            let store = store.clone();
            let f = f.clone();
            let item = item.clone();
            tokio::spawn(async move { f.offer(&store, &f.queue, &item, &agent).await })
        };
        let (first, second) = tokio::join!(claim(a.clone()), claim(b.clone()));
        let (first, second) = (first.unwrap(), second.unwrap());
        assert!(
            first.is_some() ^ second.is_some(),
            "exactly one claimer wins: {first:?} {second:?}"
        );
        let waiting = f.waiting(&store, &item.conversation_id).await.unwrap();
        assert!(waiting.offered);
    }
    let mut conn = store.conn().await.unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM offers WHERE state = 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(pending, 10);
    drop(conn);
    assert_ledger_consistent(&store).await;
}

async fn concurrent_reservations_never_exceed_capacity(store: Store) {
    let f = fixture(&store, 5).await;
    let agent = f.agent(&store, "A").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let tenant = f.tenant.clone();
        let agent_id = agent.agent_id.clone();
        tasks.push(tokio::spawn(async move {
            let conversation = new_id();
            let mut tx = store.begin().await?;
            let result = routing::reserve_capacity(
                &mut tx,
                &ReserveInput {
                    tenant_id: &tenant,
                    conversation_id: &conversation,
                    agent_id: &agent_id,
                    channel: Channel::Webchat,
                    queue: None,
                    override_capacity: false,
                },
                now_micros(),
            )
            .await;
            match result {
                Ok(reserved) => {
                    tx.commit().await?;
                    Ok(Some(reserved))
                }
                Err(Error::LimitExceeded(_)) => Ok(None),
                Err(err) => Err(err),
            }
        }));
    }
    let mut granted = 0;
    for task in tasks {
        if let Some((units, over)) = task.await.unwrap().unwrap() {
            assert_eq!((units, over), (1, 0));
            granted += 1;
        }
    }
    assert_eq!(granted, 5);
    assert_eq!(f.reload(&store, &agent.agent_id).await.capacity_used, 5);
    assert_ledger_consistent(&store).await;
}

async fn concurrent_offers_never_promise_more_than_capacity(store: Store) {
    let f = Arc::new(fixture(&store, 3).await);
    let agent = f.agent(&store, "A").await;
    let mut items = Vec::new();
    for _ in 0..12 {
        items.push(f.enqueue(&store, Channel::Webchat).await);
    }
    let mut tasks = Vec::new();
    for item in items {
        let store = store.clone();
        let f = f.clone();
        let agent = agent.clone();
        tasks.push(tokio::spawn(async move {
            f.offer(&store, &f.queue, &item, &agent).await.is_some()
        }));
    }
    let mut made = 0;
    for task in tasks {
        made += usize::from(task.await.unwrap());
    }
    assert_eq!(made, 3);
    let agent = f.reload(&store, &agent.agent_id).await;
    assert_eq!(agent.pending_units, 3);
    assert_ledger_consistent(&store).await;
}

async fn accept_reserves_and_writes_the_outbox(store: Store) {
    let f = fixture(&store, 3).await;
    let agent = f.agent(&store, "Ada").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let offer = f.offer(&store, &f.queue, &item, &agent).await.unwrap();
    assert_eq!(offer.state, OfferState::Pending);
    assert_eq!(f.reload(&store, &agent.agent_id).await.pending_units, 1);

    let mut tx = store.begin().await.unwrap();
    let accepted = routing::accept_offer(&mut tx, &agent, &offer.id, now_micros(), now_micros())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(accepted.offer.state, OfferState::Accepted);
    assert_eq!(accepted.outbox.agent_display_name, "Ada");
    assert_eq!(
        accepted.outbox.source,
        routing_svc::domain::AssignmentSource::QueueOffer
    );

    let reloaded = f.reload(&store, &agent.agent_id).await;
    assert_eq!((reloaded.capacity_used, reloaded.pending_units), (1, 0));
    assert!(f.waiting(&store, &item.conversation_id).await.is_none());
    let mut conn = store.conn().await.unwrap();
    assert_eq!(
        routing::assignment_units(&mut conn, &f.tenant, &item.conversation_id, &agent.agent_id)
            .await
            .unwrap(),
        Some(1)
    );
    let entries = outbox::of_conversation(&mut conn, &item.conversation_id)
        .await
        .unwrap();
    assert_eq!(entries, vec![(offer.id.clone(), false, 0, String::new())]);
    let due = outbox::due(&mut conn, now_micros() + 1, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    drop(conn);

    // Accepting again is refused and changes nothing.
    let mut tx = store.begin().await.unwrap();
    let again = routing::accept_offer(&mut tx, &agent, &offer.id, now_micros(), now_micros()).await;
    assert!(matches!(again, Err(Error::WrongState(_))), "{again:?}");
    drop(tx);
    // So is accepting someone else's offer.
    let other = f.agent(&store, "Bob").await;
    let mut tx = store.begin().await.unwrap();
    let foreign =
        routing::accept_offer(&mut tx, &other, &offer.id, now_micros(), now_micros()).await;
    assert!(matches!(foreign, Err(Error::NotFound(_))), "{foreign:?}");
    drop(tx);
    assert_eq!(f.reload(&store, &agent.agent_id).await.capacity_used, 1);
    assert_ledger_consistent(&store).await;
}

async fn accept_fails_without_capacity_and_changes_nothing(store: Store) {
    let f = fixture(&store, 2).await;
    let agent = f.agent(&store, "A").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let offer = f.offer(&store, &f.queue, &item, &agent).await.unwrap();
    // A supervisor override takes both units meanwhile.
    let mut tx = store.begin().await.unwrap();
    let (_, over) = routing::reserve_capacity(
        &mut tx,
        &ReserveInput {
            tenant_id: &f.tenant,
            conversation_id: &new_id(),
            agent_id: &agent.agent_id,
            channel: Channel::Voice,
            queue: None,
            override_capacity: true,
        },
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(over, 0);
    let mut tx = store.begin().await.unwrap();
    let refused =
        routing::accept_offer(&mut tx, &agent, &offer.id, now_micros(), now_micros()).await;
    assert!(
        matches!(refused, Err(Error::LimitExceeded(_))),
        "{refused:?}"
    );
    tx.rollback().await.unwrap();
    let mut conn = store.conn().await.unwrap();
    let stored = routing::get_offer(&mut conn, &f.tenant, &offer.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, OfferState::Pending);
    drop(conn);
    assert!(
        f.waiting(&store, &item.conversation_id)
            .await
            .unwrap()
            .offered
    );
    assert_ledger_consistent(&store).await;
}

async fn timeout_requeues_keeping_place_and_puts_agent_in_rona(store: Store) {
    let f = fixture(&store, 3).await;
    let agent = f.agent(&store, "A").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let second = f.enqueue(&store, Channel::Webchat).await;
    let quick = Queue {
        offer_timeout_us: 1,
        ..f.queue.clone()
    };
    let offer = f.offer(&store, &quick, &item, &agent).await.unwrap();
    let other_offer = f.offer(&store, &f.queue, &second, &agent).await.unwrap();
    let later = offer.expire_time + 1;

    let mut conn = store.conn().await.unwrap();
    let due = routing::due_offers(&mut conn, later, 10).await.unwrap();
    assert_eq!(
        due,
        vec![routing::DueOffer {
            tenant_id: f.tenant.clone(),
            offer_id: offer.id.clone(),
            agent_id: agent.agent_id.clone(),
        }]
    );
    drop(conn);
    let mut tx = store.begin().await.unwrap();
    let expired = routing::expire_offers(&mut tx, &due, later).await.unwrap();
    assert_eq!(
        expired.iter().map(|o| &o.id).collect::<Vec<_>>(),
        [&offer.id]
    );
    tx.commit().await.unwrap();
    // A second expiry of the same offer does nothing.
    let mut tx = store.begin().await.unwrap();
    assert!(
        routing::expire_offers(&mut tx, &due, later)
            .await
            .unwrap()
            .is_empty()
    );
    drop(tx);

    let reloaded = f.reload(&store, &agent.agent_id).await;
    assert_eq!(reloaded.presence, Presence::Rona);
    assert_eq!(
        reloaded.pending_units, 0,
        "RONA withdraws the agent's other offers"
    );
    let waiting = f.waiting(&store, &item.conversation_id).await.unwrap();
    assert!(!waiting.offered);
    assert_eq!(waiting.enqueue_time, item.enqueue_time, "keeps its place");
    let mut conn = store.conn().await.unwrap();
    let withdrawn = routing::get_offer(&mut conn, &f.tenant, &other_offer.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(withdrawn.state, OfferState::Withdrawn);
    let excluded = routing::excluded_agents(&mut conn, &item.conversation_id, item.entered_time)
        .await
        .unwrap();
    assert!(excluded.contains(&agent.agent_id));
    let not_excluded =
        routing::excluded_agents(&mut conn, &second.conversation_id, second.entered_time)
            .await
            .unwrap();
    assert!(
        not_excluded.is_empty(),
        "a withdrawn offer does not exclude"
    );
    drop(conn);
    // RONA agents are passed over and cannot be offered anything.
    let members = vec![CandidateView {
        agent: &reloaded,
        open_in_queue: 0,
        already_offered: false,
        waiting_before_login: false,
    }];
    assert_eq!(
        decide(&f.queue, Channel::Webchat, &members, "").chosen,
        None
    );
    assert!(
        f.offer(&store, &f.queue, &second, &reloaded)
            .await
            .is_none()
    );
    // Setting a presence by hand ends RONA.
    let mut tx = store.begin().await.unwrap();
    routing::set_presence(
        &mut tx,
        &reloaded,
        Presence::Available,
        "",
        &reloaded.agent_id,
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let back = f.reload(&store, &agent.agent_id).await;
    assert_eq!(back.presence, Presence::Available);
    assert!(f.offer(&store, &f.queue, &second, &back).await.is_some());
    assert_ledger_consistent(&store).await;
}

/// Time-outs of several agents in one batch, one agent with two offers due: each agent's
/// earliest due offer times out and its others are withdrawn, units, presence, waiting
/// items and events as each time-out alone would leave them; an offer not yet due and its
/// agent are untouched.
async fn a_batch_of_time_outs_does_what_each_would_alone(store: Store) {
    let f = fixture(&store, 3).await;
    let quick = Queue {
        offer_timeout_us: 1,
        ..f.queue.clone()
    };
    let (a, b, c) = (
        f.agent(&store, "A").await,
        f.agent(&store, "B").await,
        f.agent(&store, "C").await,
    );
    let mut items = Vec::new();
    for _ in 0..5 {
        items.push(f.enqueue(&store, Channel::Webchat).await);
    }
    let a_first = f.offer(&store, &quick, &items[0], &a).await.unwrap();
    let a_second = f.offer(&store, &quick, &items[1], &a).await.unwrap();
    let a_slow = f.offer(&store, &f.queue, &items[2], &a).await.unwrap();
    let b_quick = f.offer(&store, &quick, &items[3], &b).await.unwrap();
    let c_slow = f.offer(&store, &f.queue, &items[4], &c).await.unwrap();
    let later = a_second.expire_time.max(b_quick.expire_time) + 1;
    let mut conn = store.conn().await.unwrap();
    let since = events::last_sequence(&mut conn).await.unwrap();
    let due = routing::due_offers(&mut conn, later, 10).await.unwrap();
    drop(conn);
    assert_eq!(due.len(), 3, "{due:?}");

    let mut tx = store.begin().await.unwrap();
    let mut expired: Vec<String> = routing::expire_offers(&mut tx, &due, later)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    tx.commit().await.unwrap();
    expired.sort();
    let mut expected = vec![a_first.id.clone(), b_quick.id.clone()];
    expected.sort();
    assert_eq!(expired, expected);

    let mut conn = store.conn().await.unwrap();
    for (offer, state) in [
        (&a_first, OfferState::TimedOut),
        (&a_second, OfferState::Withdrawn),
        (&a_slow, OfferState::Withdrawn),
        (&b_quick, OfferState::TimedOut),
        (&c_slow, OfferState::Pending),
    ] {
        let stored = routing::get_offer(&mut conn, &f.tenant, &offer.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, state, "offer of {}", offer.conversation_id);
    }
    drop(conn);
    for (agent, presence, pending) in [
        (&a, Presence::Rona, 0),
        (&b, Presence::Rona, 0),
        (&c, Presence::Available, 1),
    ] {
        let reloaded = f.reload(&store, &agent.agent_id).await;
        assert_eq!(
            (reloaded.presence, reloaded.pending_units),
            (presence, pending)
        );
    }
    for (k, item) in items.iter().enumerate() {
        let waiting = f.waiting(&store, &item.conversation_id).await.unwrap();
        assert_eq!(waiting.offered, k == 4, "conversation {k}");
        assert_eq!(waiting.enqueue_time, item.enqueue_time, "keeps its place");
    }
    let mut conn = store.conn().await.unwrap();
    let written: Vec<(String, String, String)> = events::after(&mut conn, since, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.agent_id, e.offer_id))
        .collect();
    let mut by_agent = std::collections::BTreeMap::<String, Vec<(String, String)>>::new();
    for (kind, agent_id, offer_id) in written {
        by_agent.entry(agent_id).or_default().push((kind, offer_id));
    }
    let seen = |kind: &str, offer: &str| (kind.to_owned(), offer.to_owned());
    assert_eq!(
        by_agent[&a.agent_id],
        [
            seen("offer.timed_out", &a_first.id),
            seen("presence.changed", ""),
            seen("offer.withdrawn", &a_second.id),
            seen("offer.withdrawn", &a_slow.id),
        ]
    );
    assert_eq!(
        by_agent[&b.agent_id],
        [
            seen("offer.timed_out", &b_quick.id),
            seen("presence.changed", ""),
        ]
    );
    assert!(!by_agent.contains_key(&c.agent_id));
    drop(conn);
    assert_ledger_consistent(&store).await;
}

/// An offer that loses a race says whether the conversation or the agent changed: the
/// matcher skips a conversation taken meanwhile, and reads the agents again only when
/// they changed.
async fn a_lost_offer_says_which_side_was_stale(store: Store) {
    let f = fixture(&store, 1).await;
    let (a, b) = (f.agent(&store, "A").await, f.agent(&store, "B").await);
    let (x, y) = (
        f.enqueue(&store, Channel::Webchat).await,
        f.enqueue(&store, Channel::Webchat).await,
    );
    assert!(f.offer(&store, &f.queue, &x, &a).await.is_some());
    for locks in [Locks::WithoutWaiting, Locks::Waiting] {
        for (item, agent, lost) in [
            (&x, &b, routing::Lost::Conversation),
            (&y, &a, routing::Lost::Agent),
        ] {
            let plan = Fixture::plan(&f.queue, item, agent);
            let mut tx = store.begin().await.unwrap();
            let made = routing::create_offer(&mut tx, &plan, locks, now_micros())
                .await
                .unwrap();
            assert_eq!(made.map(|offer| offer.id), Err(lost), "{locks:?}");
            tx.rollback().await.unwrap();
        }
    }
    assert_ledger_consistent(&store).await;
}

async fn reject_requeues_and_excludes_the_agent(store: Store) {
    let f = fixture(&store, 3).await;
    let agent = f.agent(&store, "A").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let offer = f.offer(&store, &f.queue, &item, &agent).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let rejected = routing::reject_offer(
        &mut tx,
        &f.tenant,
        &agent.agent_id,
        &offer.id,
        "busy",
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rejected.state, OfferState::Rejected);
    assert!(rejected.resolve_time.is_some());
    assert_eq!(rejected.reject_reason, "busy", "the reason is stored");
    assert!(
        !f.waiting(&store, &item.conversation_id)
            .await
            .unwrap()
            .offered
    );
    let reloaded = f.reload(&store, &agent.agent_id).await;
    assert_eq!(reloaded.presence, Presence::Available, "reject is not RONA");
    assert_eq!(reloaded.pending_units, 0);
    let mut conn = store.conn().await.unwrap();
    let excluded = routing::excluded_agents(&mut conn, &item.conversation_id, item.entered_time)
        .await
        .unwrap();
    assert!(excluded.contains(&agent.agent_id));
    drop(conn);
    let mut tx = store.begin().await.unwrap();
    let twice = routing::reject_offer(
        &mut tx,
        &f.tenant,
        &agent.agent_id,
        &offer.id,
        "busy",
        now_micros(),
    )
    .await;
    assert!(matches!(twice, Err(Error::WrongState(_))), "{twice:?}");
    drop(tx);
    assert_ledger_consistent(&store).await;
}

async fn cancel_waiting_withdraws_the_pending_offer(store: Store) {
    let f = fixture(&store, 3).await;
    let agent = f.agent(&store, "A").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let offer = f.offer(&store, &f.queue, &item, &agent).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(
        routing::cancel_waiting(&mut tx, &f.tenant, &item.conversation_id, now_micros())
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(
        !routing::cancel_waiting(&mut tx, &f.tenant, &item.conversation_id, now_micros())
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert!(f.waiting(&store, &item.conversation_id).await.is_none());
    let mut conn = store.conn().await.unwrap();
    let stored = routing::get_offer(&mut conn, &f.tenant, &offer.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, OfferState::Withdrawn);
    drop(conn);
    assert_eq!(f.reload(&store, &agent.agent_id).await.pending_units, 0);
    assert_ledger_consistent(&store).await;
}

async fn enqueue_is_idempotent_by_key(store: Store) {
    let f = fixture(&store, 3).await;
    let conversation = new_id();
    let first = f
        .enqueue_with(&store, &conversation, "create", Channel::Webchat, 1_000)
        .await
        .unwrap();
    let again = f
        .enqueue_with(&store, &conversation, "create", Channel::Webchat, 9_999)
        .await
        .unwrap();
    assert_eq!(first, again);
    let mut conn = store.conn().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM waiting WHERE conversation_id = $1")
        .bind(&conversation)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let enqueued: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE type = 'conversation.enqueued' AND conversation_id = $1",
    )
    .bind(&conversation)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(enqueued, 1, "a repeat writes no event");
    drop(conn);
    // A new key (a requeue) enters again with its own wait start.
    let requeued = f
        .enqueue_with(&store, &conversation, "requeue-1", Channel::Webchat, 5_000)
        .await
        .unwrap();
    assert_eq!(requeued.enqueue_time, 5_000);
    assert_eq!(
        f.waiting(&store, &conversation).await.unwrap().enqueue_time,
        5_000
    );
}

async fn release_is_idempotent_and_reserve_reports_overrides(store: Store) {
    let f = fixture(&store, 2).await;
    let agent = f.agent(&store, "A").await;
    let conversation = new_id();
    let reserve = |conversation: String, channel: Channel, override_capacity: bool| {
        let store = store.clone();
        let tenant = f.tenant.clone();
        let agent_id = agent.agent_id.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let result = routing::reserve_capacity(
                &mut tx,
                &ReserveInput {
                    tenant_id: &tenant,
                    conversation_id: &conversation,
                    agent_id: &agent_id,
                    channel,
                    queue: None,
                    override_capacity,
                },
                now_micros(),
            )
            .await;
            if result.is_ok() {
                tx.commit().await.unwrap();
            }
            result
        }
    };
    assert_eq!(
        reserve(conversation.clone(), Channel::Webchat, false)
            .await
            .unwrap(),
        (1, 0)
    );
    // Idempotent by (conversation, agent).
    assert_eq!(
        reserve(conversation.clone(), Channel::Webchat, false)
            .await
            .unwrap(),
        (1, 0)
    );
    // Voice costs 2: refused without override, 1 over with it.
    let voice = new_id();
    assert!(matches!(
        reserve(voice.clone(), Channel::Voice, false).await,
        Err(Error::LimitExceeded(_))
    ));
    assert_eq!(
        reserve(voice.clone(), Channel::Voice, true).await.unwrap(),
        (2, 1)
    );
    assert_eq!(f.reload(&store, &agent.agent_id).await.capacity_used, 3);

    let release = |conversation: String| {
        let store = store.clone();
        let tenant = f.tenant.clone();
        let agent_id = agent.agent_id.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let units =
                routing::release_capacity(&mut tx, &tenant, &conversation, &agent_id, now_micros())
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            units
        }
    };
    assert_eq!(release(voice.clone()).await, 2);
    assert_eq!(
        release(voice).await,
        0,
        "releasing twice frees the units once"
    );
    let (first, second) =
        tokio::join!(release(conversation.clone()), release(conversation.clone()));
    assert_eq!(first + second, 1, "concurrent releases free the units once");
    assert_eq!(f.reload(&store, &agent.agent_id).await.capacity_used, 0);
    assert!(matches!(
        {
            let mut tx = store.begin().await.unwrap();
            routing::reserve_capacity(
                &mut tx,
                &ReserveInput {
                    tenant_id: &f.tenant,
                    conversation_id: &new_id(),
                    agent_id: &new_id(),
                    channel: Channel::Webchat,
                    queue: None,
                    override_capacity: true,
                },
                now_micros(),
            )
            .await
        },
        Err(Error::NotFound(_))
    ));
    assert_ledger_consistent(&store).await;
}

async fn leaving_available_withdraws_pending_offers(store: Store) {
    let f = fixture(&store, 3).await;
    let agent = f.agent(&store, "A").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let offer = f.offer(&store, &f.queue, &item, &agent).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    routing::set_presence(
        &mut tx,
        &agent,
        Presence::Away,
        "lunch",
        &agent.agent_id,
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let reloaded = f.reload(&store, &agent.agent_id).await;
    assert_eq!(reloaded.presence, Presence::Away);
    assert_eq!(reloaded.presence_reason, "lunch");
    assert_eq!(reloaded.pending_units, 0);
    let mut conn = store.conn().await.unwrap();
    assert_eq!(
        routing::get_offer(&mut conn, &f.tenant, &offer.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        OfferState::Withdrawn
    );
    drop(conn);
    assert!(
        !f.waiting(&store, &item.conversation_id)
            .await
            .unwrap()
            .offered
    );
    // Not Available: no offer can be made.
    assert!(f.offer(&store, &f.queue, &item, &reloaded).await.is_none());
    assert_ledger_consistent(&store).await;
}

async fn outbox_lease_has_one_winner(store: Store) {
    let f = fixture(&store, 3).await;
    let (item, offer) = f.accepted(&store).await;
    let mut conn = store.conn().await.unwrap();
    let due = outbox::due(&mut conn, now_micros(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    drop(conn);
    let lease_until = now_micros() + 60_000_000;
    let claim = || {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let claimed = outbox::claim(&mut tx, now_micros(), lease_until, 10)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            claimed
        })
    };
    let (a, b) = tokio::join!(claim(), claim());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "one dispatcher takes the entry");
    let claimed = a.into_iter().chain(b).next().unwrap();
    assert_eq!(claimed.entry.id, due[0].id);
    let mut conn = store.conn().await.unwrap();
    assert!(
        outbox::due(&mut conn, now_micros(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    drop(conn);
    let mut tx = store.begin().await.unwrap();
    outbox::retry_later(&mut tx, &due[0].id, 1, 0, "Unavailable: down", lease_until)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut conn = store.conn().await.unwrap();
    let again = outbox::due(&mut conn, now_micros(), 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    drop(conn);
    let mut tx = store.begin().await.unwrap();
    assert!(
        outbox::complete(&mut tx, &again[0], "applied", now_micros())
            .await
            .unwrap()
    );
    assert!(
        !outbox::complete(&mut tx, &again[0], "applied", now_micros())
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let mut conn = store.conn().await.unwrap();
    assert!(
        outbox::due(&mut conn, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let entries = outbox::of_conversation(&mut conn, &item.conversation_id)
        .await
        .unwrap();
    assert_eq!(entries, vec![(offer.id, true, 1, "applied".to_owned())]);
}

async fn max_open_per_agent_is_never_exceeded(store: Store) {
    let f = Arc::new(fixture(&store, 10).await);
    let limited = Queue {
        max_open_per_agent: 2,
        ..f.queue.clone()
    };
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE queues SET max_open_per_agent = 2 WHERE id = $1")
        .bind(&f.queue.id)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let agent = f.agent(&store, "A").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let item = f.enqueue(&store, Channel::Webchat).await;
        let store = store.clone();
        let f = f.clone();
        let agent = agent.clone();
        let limited = limited.clone();
        tasks.push(tokio::spawn(async move {
            f.offer(&store, &limited, &item, &agent).await.is_some()
        }));
    }
    let mut made = 0;
    for task in tasks {
        made += usize::from(task.await.unwrap());
    }
    assert_eq!(made, 2);
    let mut conn = store.conn().await.unwrap();
    let load = routing::queue_load(&mut conn, &f.queue.id).await.unwrap();
    assert_eq!(load.get(&agent.agent_id), Some(&2));
}

async fn decisions_list_newest_first(store: Store) {
    let f = fixture(&store, 3).await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let mut tx = store.begin().await.unwrap();
    for time in 1..=5 {
        routing::insert_decision(
            &mut tx,
            &routing_svc::domain::RoutingDecision {
                id: new_id(),
                tenant_id: f.tenant.clone(),
                offer_id: None,
                conversation_id: item.conversation_id.clone(),
                queue_id: f.queue.id.clone(),
                assignment_method: AssignmentMethod::RoundRobin,
                candidates: vec![routing_svc::domain::Candidate {
                    agent_id: "a".into(),
                    reason: 2,
                    free_units: time,
                }],
                omitted: vec![routing_svc::domain::Omitted {
                    reason: 7,
                    count: time,
                }],
                decide_time: i64::from(time),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let mut conn = store.conn().await.unwrap();
    let mut times = Vec::new();
    let mut token = String::new();
    loop {
        let page = PageRequest::parse("routing_decisions", 2, &token).unwrap();
        let (decisions, next) = routing::list_decisions(
            &mut conn,
            &f.tenant,
            &routing::DecisionFilter::conversation(&item.conversation_id),
            &page,
        )
        .await
        .unwrap();
        for decision in &decisions {
            // What was counted rather than listed comes back as written.
            assert_eq!(decision.omitted[0].count, decision.decide_time as i32);
        }
        times.extend(decisions.iter().map(|d| d.decide_time));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(times, [5, 4, 3, 2, 1]);
    assert!(
        routing::conversation_known(&mut conn, &f.tenant, &item.conversation_id)
            .await
            .unwrap()
    );
    assert!(
        !routing::conversation_known(&mut conn, &new_id(), &item.conversation_id)
            .await
            .unwrap()
    );
    let (other_tenant, _) = routing::list_decisions(
        &mut conn,
        &new_id(),
        &routing::DecisionFilter::conversation(&item.conversation_id),
        &PageRequest::parse("routing_decisions", 0, "").unwrap(),
    )
    .await
    .unwrap();
    assert!(other_tenant.is_empty());
}

async fn manual_claim_takes_a_waiting_item(store: Store) {
    let f = fixture(&store, 1).await;
    let agent = f.agent(&store, "A").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let second = f.enqueue(&store, Channel::Webchat).await;
    let mut conn = store.conn().await.unwrap();
    let (listed, _) = routing::list_waiting_for_agent(
        &mut conn,
        &f.tenant,
        &agent.agent_id,
        "",
        &PageRequest::parse("waiting", 0, "").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|i| i.conversation_id.clone())
            .collect::<Vec<_>>(),
        vec![item.conversation_id.clone(), second.conversation_id.clone()]
    );
    drop(conn);
    let mut tx = store.begin().await.unwrap();
    let claimed = routing::claim_waiting(&mut tx, &agent, &item.conversation_id, now_micros(), 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed.offer.state, OfferState::Accepted);
    assert_eq!(
        claimed.outbox.source,
        routing_svc::domain::AssignmentSource::Claim
    );
    assert!(f.waiting(&store, &item.conversation_id).await.is_none());
    // Capacity 1 is now full.
    let agent = f.reload(&store, &agent.agent_id).await;
    let mut tx = store.begin().await.unwrap();
    let full =
        routing::claim_waiting(&mut tx, &agent, &second.conversation_id, now_micros(), 0).await;
    assert!(matches!(full, Err(Error::LimitExceeded(_))), "{full:?}");
    drop(tx);
    assert!(
        !f.waiting(&store, &second.conversation_id)
            .await
            .unwrap()
            .offered
    );
    let mut tx = store.begin().await.unwrap();
    let gone =
        routing::claim_waiting(&mut tx, &agent, &item.conversation_id, now_micros(), 0).await;
    assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");
    drop(tx);
    assert_ledger_consistent(&store).await;
}

async fn matcher_offers_higher_priority_then_oldest_first(store: Store) {
    let f = fixture(&store, 2).await;
    let urgent = Queue {
        priority: 5,
        ..queue_in(&f.tenant, &f.program.id, "Urgent")
    };
    let mut tx = store.begin().await.unwrap();
    catalog::insert_queue(&mut tx, &urgent).await.unwrap();
    tx.commit().await.unwrap();
    let agent = f.agent(&store, "A").await;
    let mut tx = store.begin().await.unwrap();
    catalog::upsert_agent_profile(
        &mut tx,
        &AgentProfileInput {
            tenant_id: f.tenant.clone(),
            agent_id: agent.agent_id.clone(),
            display_name: agent.display_name.clone(),
            capacity: f.capacity.clone(),
            queue_ids: vec![f.queue.id.clone(), urgent.id.clone()],
            skills: vec![],
        },
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let newer = f
        .enqueue_with(&store, &new_id(), "k", Channel::Webchat, 2_000)
        .await
        .unwrap();
    let older = f
        .enqueue_with(&store, &new_id(), "k", Channel::Webchat, 1_000)
        .await
        .unwrap();
    let urgent_fixture = Fixture {
        tenant: f.tenant.clone(),
        program: f.program.clone(),
        queue: urgent.clone(),
        capacity: f.capacity.clone(),
    };
    let youngest_urgent = urgent_fixture
        .enqueue_with(&store, &new_id(), "k", Channel::Webchat, 3_000)
        .await
        .unwrap();

    let token = tokio_util::sync::CancellationToken::new();
    let made = routing_svc::engine::matcher::match_waiting(&store, &token)
        .await
        .unwrap();
    assert_eq!(made, 2, "two units, two offers");
    assert!(
        f.waiting(&store, &youngest_urgent.conversation_id)
            .await
            .unwrap()
            .offered
    );
    assert!(
        f.waiting(&store, &older.conversation_id)
            .await
            .unwrap()
            .offered
    );
    assert!(
        !f.waiting(&store, &newer.conversation_id)
            .await
            .unwrap()
            .offered
    );
    // A second pass makes nothing more and records why once.
    assert_eq!(
        routing_svc::engine::matcher::match_waiting(&store, &token)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        routing_svc::engine::matcher::match_waiting(&store, &token)
            .await
            .unwrap(),
        0
    );
    let mut conn = store.conn().await.unwrap();
    let (decisions, _) = routing::list_decisions(
        &mut conn,
        &f.tenant,
        &routing::DecisionFilter::conversation(&newer.conversation_id),
        &PageRequest::parse("routing_decisions", 0, "").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].offer_id, None);
    assert_eq!(
        decisions[0].candidates[0].reason,
        routing_svc::domain::PassReason::NoCapacity.as_i32()
    );
    drop(conn);
    assert_ledger_consistent(&store).await;
}

/// A commit wakes the streams of its agent, its tenant and the whole log, not another
/// agent's or tenant's; another replica's commit reaches this process's streams through
/// the change follower.
async fn commits_wake_only_the_streams_they_concern(store: Store) {
    use futures::FutureExt as _;
    let f = fixture(&store, 2).await;
    let ada = f.agent(&store, "Ada").await;
    let bob = f.agent(&store, "Bob").await;
    let topic = |agent_id: &str| Topic::Agent {
        tenant_id: f.tenant.clone(),
        agent_id: agent_id.to_owned(),
    };
    let ada_stream = store.changes().watch([topic(&ada.agent_id)]);
    let bob_stream = store.changes().watch([topic(&bob.agent_id)]);
    let tenant_stream = store.changes().watch([Topic::Tenant(f.tenant.clone())]);
    let other_tenant = store.changes().watch([Topic::Tenant(new_id())]);
    let log_stream = store.changes().watch([Topic::Log]);
    assert!(
        catalog::refresh_display_name(&store, &f.tenant, &ada.agent_id, "Ada L.")
            .await
            .unwrap()
    );
    for (name, woken) in [
        ("Ada's stream", &ada_stream),
        ("the tenant's stream", &tenant_stream),
        ("the log's stream", &log_stream),
    ] {
        assert!(
            woken.changed().now_or_never().is_some(),
            "{name} was not woken"
        );
    }
    for (name, asleep) in [
        ("Bob's stream", &bob_stream),
        ("another tenant's stream", &other_tenant),
    ] {
        assert!(
            asleep.changed().now_or_never().is_none(),
            "{name} was woken"
        );
    }

    // A second process on the same database learns of the commit from its follower.
    let replica = Store::migrate(store.db().clone()).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let follower = replica
        .follow_changes(std::time::Duration::from_millis(10), stop.clone())
        .await
        .unwrap();
    let watched = replica.changes().watch([topic(&ada.agent_id)]);
    let elsewhere = replica.changes().watch([topic(&bob.agent_id)]);
    assert!(
        catalog::refresh_display_name(&store, &f.tenant, &ada.agent_id, "Ada Lovelace")
            .await
            .unwrap()
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), watched.changed())
        .await
        .expect("the replica's stream was not woken");
    assert!(elsewhere.changed().now_or_never().is_none());
    stop.cancel();
    follower.await.unwrap();
}

async fn display_name_is_written_only_when_it_differs(store: Store) {
    let f = fixture(&store, 2).await;
    let agent = f.agent(&store, "Ada").await;
    assert_eq!(agent.display_name, "Ada");
    let renames = || async {
        let mut conn = store.conn().await.unwrap();
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM events WHERE type = 'agent.renamed' AND agent_id = $1",
        )
        .bind(&agent.agent_id)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
    };
    assert_eq!(renames().await, 1);
    let same = catalog::refresh_display_name(&store, &f.tenant, &agent.agent_id, "Ada")
        .await
        .unwrap();
    assert!(!same, "the same name writes nothing");
    assert_eq!(renames().await, 1);
    assert!(
        catalog::refresh_display_name(&store, &f.tenant, &agent.agent_id, "Ada Lovelace")
            .await
            .unwrap()
    );
    assert_eq!(renames().await, 2);
    assert_eq!(
        f.reload(&store, &agent.agent_id).await.display_name,
        "Ada Lovelace"
    );
    // An agent without a profile is left alone.
    assert!(
        !catalog::refresh_display_name(&store, &f.tenant, &new_id(), "Nobody")
            .await
            .unwrap()
    );
}

async fn skill_levels_and_excluded_channels_are_stored_and_enforced(store: Store) {
    let f = fixture(&store, 5).await;
    let skilled = Queue {
        required_skills: vec![routing_svc::domain::SkillRequirement {
            name: "billing".into(),
            min_level: 4,
        }],
        ..queue_in(&f.tenant, &f.program.id, "Billing")
    };
    let chat_only = CapacityProfile {
        id: new_id(),
        tenant_id: f.tenant.clone(),
        display_name: "Chat only".into(),
        total_units: 5,
        channel_costs: vec![],
        excluded_channels: vec![Channel::Voice],
    };
    let mut tx = store.begin().await.unwrap();
    catalog::insert_queue(&mut tx, &skilled).await.unwrap();
    catalog::insert_capacity_profile(&mut tx, &chat_only, now_micros())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut conn = store.conn().await.unwrap();
    let stored = catalog::get_queue(&mut conn, &f.tenant, &skilled.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.required_skills, skilled.required_skills);
    let profile = catalog::get_capacity_profile(&mut conn, &f.tenant, &chat_only.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.excluded_channels, vec![Channel::Voice]);
    drop(conn);

    // An agent of the chat-only profile in the fixture's queue (voice and chat).
    let agent = f.agent(&store, "Ada").await;
    let mut tx = store.begin().await.unwrap();
    let agent = catalog::upsert_agent_profile(
        &mut tx,
        &AgentProfileInput {
            tenant_id: f.tenant.clone(),
            agent_id: agent.agent_id.clone(),
            display_name: agent.display_name.clone(),
            capacity: chat_only.clone(),
            queue_ids: vec![f.queue.id.clone(), skilled.id.clone()],
            skills: vec![routing_svc::domain::Skill {
                name: "Billing".into(),
                level: 3,
            }],
        },
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(agent.excluded_channels, vec![Channel::Voice]);

    // Voice is never offered, chat is; the skilled queue's level 4 is above the agent's 3.
    let voice = f.enqueue(&store, Channel::Voice).await;
    let chat = f.enqueue(&store, Channel::Webchat).await;
    let billing = Fixture {
        tenant: f.tenant.clone(),
        program: f.program.clone(),
        queue: skilled.clone(),
        capacity: f.capacity.clone(),
    }
    .enqueue(&store, Channel::Webchat)
    .await;
    let token = tokio_util::sync::CancellationToken::new();
    let made = routing_svc::engine::matcher::match_waiting(&store, &token)
        .await
        .unwrap();
    assert_eq!(made, 1);
    assert!(
        f.waiting(&store, &chat.conversation_id)
            .await
            .unwrap()
            .offered
    );
    assert!(
        !f.waiting(&store, &voice.conversation_id)
            .await
            .unwrap()
            .offered
    );
    assert!(
        !f.waiting(&store, &billing.conversation_id)
            .await
            .unwrap()
            .offered
    );
    let mut conn = store.conn().await.unwrap();
    let reason_for =
        |decisions: Vec<routing_svc::domain::RoutingDecision>| decisions[0].candidates[0].reason;
    let page = PageRequest::parse("routing_decisions", 0, "").unwrap();
    let (voice_decisions, _) = routing::list_decisions(
        &mut conn,
        &f.tenant,
        &routing::DecisionFilter::conversation(&voice.conversation_id),
        &page,
    )
    .await
    .unwrap();
    assert_eq!(
        reason_for(voice_decisions),
        routing_svc::domain::PassReason::ChannelExcluded.as_i32()
    );
    let (billing_decisions, _) = routing::list_decisions(
        &mut conn,
        &f.tenant,
        &routing::DecisionFilter::conversation(&billing.conversation_id),
        &page,
    )
    .await
    .unwrap();
    assert_eq!(
        reason_for(billing_decisions),
        routing_svc::domain::PassReason::MissingSkill.as_i32()
    );
    drop(conn);

    // A reservation on an excluded channel is refused, even with override.
    let mut tx = store.begin().await.unwrap();
    let refused = routing::reserve_capacity(
        &mut tx,
        &ReserveInput {
            tenant_id: &f.tenant,
            conversation_id: &new_id(),
            agent_id: &agent.agent_id,
            channel: Channel::Voice,
            queue: None,
            override_capacity: true,
        },
        now_micros(),
    )
    .await
    .unwrap_err();
    tx.rollback().await.unwrap();
    assert!(matches!(refused, Error::WrongState(_)), "{refused:?}");
    assert_ledger_consistent(&store).await;
}

async fn offers_carry_address_queue_name_and_wait_start(store: Store) {
    let f = fixture(&store, 3).await;
    let agent = f.agent(&store, "A").await;
    let item = f
        .enqueue_with(&store, &new_id(), "k", Channel::Webchat, 1_234)
        .await
        .unwrap();
    assert_eq!(item.channel_address, "+15550100");
    let offer = f.offer(&store, &f.queue, &item, &agent).await.unwrap();
    let mut conn = store.conn().await.unwrap();
    let stored = routing::get_offer(&mut conn, &f.tenant, &offer.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.channel_address, "+15550100");
    assert_eq!(stored.queue_display_name, "Chat");
    assert_eq!(stored.wait_start_time, 1_234);
    assert_eq!(stored.reject_reason, "");
    // A repeated enqueue returns the address first given.
    drop(conn);
    let again = f
        .enqueue_with(&store, &item.conversation_id, "k", Channel::Webchat, 9_999)
        .await
        .unwrap();
    assert_eq!(again.channel_address, "+15550100");
}

async fn offers_list_newest_first_with_filters(store: Store) {
    let f = fixture(&store, 10).await;
    let a = f.agent(&store, "A").await;
    let b = f.agent(&store, "B").await;
    let mut made = Vec::new();
    for agent in [&a, &b, &a] {
        let item = f.enqueue(&store, Channel::Webchat).await;
        made.push(f.offer(&store, &f.queue, &item, agent).await.unwrap());
    }
    let mut tx = store.begin().await.unwrap();
    routing::reject_offer(
        &mut tx,
        &f.tenant,
        &a.agent_id,
        &made[0].id,
        "",
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let list = |filter: routing::OfferFilter, size: i32, token: String| {
        let tenant = f.tenant.clone();
        let store = store.clone();
        async move {
            let mut conn = store.conn().await.unwrap();
            routing::list_offers(
                &mut conn,
                &tenant,
                &filter,
                &PageRequest::parse("offers", size, &token).unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let (all, _) = list(routing::OfferFilter::default(), 0, String::new()).await;
    let ids: Vec<&str> = all.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, vec![&made[2].id, &made[1].id, &made[0].id]);
    let (first, token) = list(routing::OfferFilter::default(), 2, String::new()).await;
    assert_eq!(first.len(), 2);
    let (rest, last) = list(routing::OfferFilter::default(), 2, token).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, made[0].id);
    assert!(last.is_empty());
    let of_a = routing::OfferFilter {
        agent_id: Some(a.agent_id.clone()),
        ..Default::default()
    };
    assert_eq!(list(of_a.clone(), 0, String::new()).await.0.len(), 2);
    let pending_of_a = routing::OfferFilter {
        states: vec![OfferState::Pending],
        ..of_a
    };
    let (pending, _) = list(pending_of_a, 0, String::new()).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, made[2].id);
    let by_conversation = routing::OfferFilter {
        conversation_id: Some(made[1].conversation_id.clone()),
        kinds: vec![routing_svc::domain::OfferKind::Queue],
        ..Default::default()
    };
    assert_eq!(list(by_conversation, 0, String::new()).await.0.len(), 1);
    let before = routing::OfferFilter {
        created: Some((0, made[0].create_time)),
        ..Default::default()
    };
    assert!(list(before, 0, String::new()).await.0.is_empty());
}

/// Two agents claim one waiting conversation at once: the loser gets a conflict
/// (ABORTED), not "not waiting", on both backends. On PostgreSQL its conditional claim
/// finds the item gone after reading it waiting; on SQLite writers queue (BEGIN
/// IMMEDIATE), so the loser reads it gone and held by the winner.
async fn a_claim_that_loses_the_race_is_a_conflict(store: Store) {
    let f = fixture(&store, 3).await;
    let a = f.agent(&store, "A").await;
    let b = f.agent(&store, "B").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let mut first = store.begin().await.unwrap();
    routing::claim_waiting(&mut first, &a, &item.conversation_id, now_micros(), 0)
        .await
        .unwrap();
    let second = {
        let store = store.clone();
        let conversation_id = item.conversation_id.clone();
        let b = b.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let result =
                routing::claim_waiting(&mut tx, &b, &conversation_id, now_micros(), 0).await;
            tx.rollback().await.unwrap();
            result
        })
    };
    if store.dialect() == switchboard_server_kit::db::Dialect::Postgres {
        // Wait until the second claim is blocked on the item's row lock.
        wait_for_lock_wait(&store, "UPDATE waiting SET state").await;
    }
    first.commit().await.unwrap();
    let lost = second.await.unwrap().unwrap_err();
    assert!(matches!(lost, Error::Conflict(_)), "{lost:?}");
    assert_eq!(lost.to_status().code(), tonic::Code::Aborted);
    assert_ledger_consistent(&store).await;
    // Once it is closed and released, a claim of it is plain NOT_FOUND.
    let mut tx = store.begin().await.unwrap();
    routing::release_capacity(
        &mut tx,
        &f.tenant,
        &item.conversation_id,
        &a.agent_id,
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let gone = routing::claim_waiting(&mut tx, &b, &item.conversation_id, now_micros(), 0)
        .await
        .unwrap_err();
    tx.rollback().await.unwrap();
    assert!(matches!(gone, Error::NotFound(_)), "{gone:?}");
}

/// Two replicas' matchers at once (PostgreSQL): while one is making an offer, the other's
/// claim of the same conversation is turned away at once rather than after the first
/// commits, and its claim of the same agent for another conversation says the agent is
/// busy, then waits for it when asked to. On SQLite, one writer at a time, the same claims
/// made after the first commits say the conversation is taken and make the offer.
async fn a_claim_without_waiting_leaves_a_conversation_being_offered_to_its_maker(store: Store) {
    let f = fixture(&store, 3).await;
    let (a, b) = (f.agent(&store, "A").await, f.agent(&store, "B").await);
    let (x, y) = (
        f.enqueue(&store, Channel::Webchat).await,
        f.enqueue(&store, Channel::Webchat).await,
    );
    let mut first = store.begin().await.unwrap();
    let made = routing::create_offer(
        &mut first,
        &Fixture::plan(&f.queue, &x, &a),
        Locks::WithoutWaiting,
        now_micros(),
    )
    .await
    .unwrap()
    .unwrap();
    let postgres = store.dialect() == switchboard_server_kit::db::Dialect::Postgres;
    // SQLite would hold a second write transaction until the first ends.
    let mut first = Some(first);
    if !postgres && let Some(tx) = first.take() {
        tx.commit().await.unwrap();
    }
    // A claim that waited for the first transaction would never end while it is open.
    let claim = |item: WaitingItem, agent: Agent, locks: Locks| {
        let (store, queue) = (store.clone(), f.queue.clone());
        tokio::spawn(async move {
            let plan = Fixture::plan(&queue, &item, &agent);
            let mut tx = store.begin().await.unwrap();
            let made = routing::create_offer(&mut tx, &plan, locks, now_micros())
                .await
                .unwrap();
            match made {
                Ok(offer) => {
                    tx.commit().await.unwrap();
                    Ok(offer.agent_id)
                }
                Err(lost) => {
                    tx.rollback().await.unwrap();
                    Err(lost)
                }
            }
        })
    };
    // Ends at once whatever the first transaction holds; the timeout only stops a hang.
    type Claim = tokio::task::JoinHandle<Result<String, routing::Lost>>;
    let at_once = |claimed: Claim| async move {
        tokio::time::timeout(std::time::Duration::from_secs(30), claimed)
            .await
            .expect("the claim did not wait")
            .unwrap()
    };
    let same_conversation = at_once(claim(x.clone(), b.clone(), Locks::WithoutWaiting)).await;
    assert_eq!(same_conversation, Err(routing::Lost::Conversation));
    if postgres {
        let same_agent = at_once(claim(y.clone(), a.clone(), Locks::WithoutWaiting)).await;
        assert_eq!(same_agent, Err(routing::Lost::Busy));
        let waiting = claim(y.clone(), a.clone(), Locks::Waiting);
        wait_for_lock_wait(&store, "UPDATE agents").await;
        first.take().unwrap().commit().await.unwrap();
        assert_eq!(waiting.await.unwrap(), Ok(a.agent_id.clone()));
    } else {
        let same_agent = claim(y.clone(), a.clone(), Locks::WithoutWaiting)
            .await
            .unwrap();
        assert_eq!(same_agent, Ok(a.agent_id.clone()));
    }
    assert!(f.waiting(&store, &x.conversation_id).await.unwrap().offered);
    let mut conn = store.conn().await.unwrap();
    let kept = routing::get_offer(&mut conn, &f.tenant, &made.id)
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    assert_eq!(
        (kept.state, kept.agent_id.as_str()),
        (OfferState::Pending, a.agent_id.as_str())
    );
    assert_eq!(f.reload(&store, &a.agent_id).await.pending_units, 2);
    assert_eq!(f.reload(&store, &b.agent_id).await.pending_units, 0);
    assert_ledger_consistent(&store).await;
}

/// CancelWaiting while another replica is making an offer of the conversation: the cancel
/// waits for the offer to commit, then withdraws it with the conversation, so that no offer
/// stays pending for a conversation no longer waiting.
async fn a_cancel_that_meets_an_offer_being_made_withdraws_it(store: Store) {
    let f = fixture(&store, 3).await;
    let agent = f.agent(&store, "A").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let plan = Fixture::plan(&f.queue, &item, &agent);
    let mut offering = store.begin().await.unwrap();
    let offer = routing::create_offer(&mut offering, &plan, Locks::WithoutWaiting, now_micros())
        .await
        .unwrap()
        .unwrap();
    let cancel = {
        let store = store.clone();
        let tenant = f.tenant.clone();
        let conversation_id = item.conversation_id.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let was_waiting =
                routing::cancel_waiting(&mut tx, &tenant, &conversation_id, now_micros())
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            was_waiting
        })
    };
    if store.dialect() == switchboard_server_kit::db::Dialect::Postgres {
        // Wait until the cancel is blocked on the row the offer claimed.
        wait_for_lock_wait(&store, "DELETE FROM waiting").await;
    }
    offering.commit().await.unwrap();
    assert!(cancel.await.unwrap(), "the conversation was waiting");
    assert!(f.waiting(&store, &item.conversation_id).await.is_none());
    let mut conn = store.conn().await.unwrap();
    let stored = routing::get_offer(&mut conn, &f.tenant, &offer.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, OfferState::Withdrawn);
    let kinds: Vec<String> = events::after(&mut conn, 0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.conversation_id == item.conversation_id)
        .map(|event| event.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "conversation.enqueued",
            "offer.created",
            "offer.withdrawn",
            "waiting.cancelled"
        ]
    );
    drop(conn);
    assert_eq!(f.reload(&store, &agent.agent_id).await.pending_units, 0);
    assert_ledger_consistent(&store).await;
}

/// A matcher's plan made from a read taken before another replica offered the conversation
/// to the same agent, who then rejected it: the conversation waits again when the plan is
/// applied, but the agent is not offered it again; another agent is.
async fn a_plan_read_before_a_decline_is_not_offered_to_that_agent(store: Store) {
    let f = fixture(&store, 3).await;
    let a = f.agent(&store, "A").await;
    let b = f.agent(&store, "B").await;
    let item = f.enqueue(&store, Channel::Webchat).await;
    let offer = f.offer(&store, &f.queue, &item, &a).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    routing::reject_offer(
        &mut tx,
        &f.tenant,
        &a.agent_id,
        &offer.id,
        "busy",
        now_micros(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // `item` was read before the offer: to a stale plan, A is still eligible.
    assert!(f.offer(&store, &f.queue, &item, &a).await.is_none());
    let other = f.offer(&store, &f.queue, &item, &b).await.unwrap();
    assert_eq!(other.agent_id, b.agent_id);
    assert_eq!(f.reload(&store, &a.agent_id).await.pending_units, 0);
    assert_ledger_consistent(&store).await;
}

/// One write holds agent H and then needs agent L, which sorts below it (a cancel that
/// learns of a newer offer's agent), while another takes L and then H in order (an expiry
/// batch): the lock out of order gives way within half a second as a conflict to retry,
/// before PostgreSQL's deadlock check (one second) would fail one of them, and the write
/// that kept the order goes on.
async fn an_agent_locked_out_of_order_gives_way_instead_of_deadlocking(store: Store) {
    let f = fixture(&store, 3).await;
    let a = f.agent(&store, "A").await;
    let b = f.agent(&store, "B").await;
    let (low, high) = if a.agent_id < b.agent_id {
        (a.agent_id.clone(), b.agent_id.clone())
    } else {
        (b.agent_id.clone(), a.agent_id.clone())
    };
    if store.dialect() != switchboard_server_kit::db::Dialect::Postgres {
        // One writer at a time and no row locks: both locks are no-ops that succeed.
        let mut tx = store.begin().await.unwrap();
        catalog::lock_agent(&mut tx, &f.tenant, &high)
            .await
            .unwrap();
        catalog::lock_agent(&mut tx, &f.tenant, &low).await.unwrap();
        tx.commit().await.unwrap();
        return;
    }
    let mut holder = store.begin().await.unwrap();
    catalog::lock_agent(&mut holder, &f.tenant, &high)
        .await
        .unwrap();
    let in_order = {
        let store = store.clone();
        let tenant = f.tenant.clone();
        let (low, high) = (low.clone(), high.clone());
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            catalog::lock_agents(&mut tx, &tenant, [high.as_str(), low.as_str()])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    };
    // The in-order write holds L and waits for H.
    wait_for_lock_wait(&store, "SELECT agent_id FROM agents").await;
    let err = catalog::lock_agent(&mut holder, &f.tenant, &low)
        .await
        .expect_err("L is held by a write waiting for H");
    let code = match &err {
        Error::Database(db) => db
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned()),
        other => panic!("expected a database error, got {other:?}"),
    };
    assert_eq!(
        code.as_deref(),
        Some("55P03"),
        "a lock timeout, not a deadlock"
    );
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Aborted);
    drop(holder);
    in_order.await.unwrap();
    // A lock taken again in the same transaction, or above every one held, waits as usual.
    let mut tx = store.begin().await.unwrap();
    catalog::lock_agents(&mut tx, &f.tenant, [low.as_str()])
        .await
        .unwrap();
    catalog::lock_agent(&mut tx, &f.tenant, &high)
        .await
        .unwrap();
    catalog::lock_agent(&mut tx, &f.tenant, &low).await.unwrap();
    tx.commit().await.unwrap();
}

/// A dispatcher's claim, or a starting one's retry-now, never waits for an outbox row
/// another transaction holds (another replica claiming or recording it, which locks its
/// rows in another order): it passes over it. Waiting there deadlocked two replicas.
async fn a_claim_passes_over_entries_another_transaction_holds(store: Store) {
    let f = fixture(&store, 3).await;
    f.accepted(&store).await;
    if store.dialect() != switchboard_server_kit::db::Dialect::Postgres {
        // One writer at a time, no row to hold: the same statements claim the entry.
        let mut tx = store.begin().await.unwrap();
        outbox::retry_now(&mut tx, now_micros()).await.unwrap();
        let claimed = outbox::claim(&mut tx, now_micros(), now_micros() + 60_000_000, 10)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(claimed.len(), 1);
        return;
    }
    // Another transaction holds the entry's row, as a record step does.
    let mut holder = store.begin().await.unwrap();
    sqlx::query("SELECT id FROM outbox FOR UPDATE")
        .execute(holder.conn())
        .await
        .unwrap();
    let now = now_micros();
    let other = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let retried = outbox::retry_now(&mut tx, now).await.unwrap();
            let claimed = outbox::claim(&mut tx, now, now + 60_000_000, 10)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            (retried, claimed.len())
        })
    };
    // The guard only ends a hang (the behaviour this replaces): the claim returns at once.
    let (retried, claimed) = tokio::time::timeout(std::time::Duration::from_secs(30), other)
        .await
        .expect("the claim waited for the held row")
        .unwrap();
    assert_eq!((retried, claimed), (0, 0), "the held entry is passed over");
    holder.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let claimed = outbox::claim(&mut tx, now_micros(), now_micros() + 60_000_000, 10)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed.len(), 1, "released, the entry is claimed");
}

/// Waits (PostgreSQL) until a statement starting with `prefix` waits for a row lock.
async fn wait_for_lock_wait(store: &Store, prefix: &str) {
    let mut conn = store.conn().await.unwrap();
    for _ in 0..400 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE $1 || '%'",
        )
        .bind(prefix)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no statement starting with {prefix:?} came to wait for a row lock");
}
