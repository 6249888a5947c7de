//! No half-done moves: every move that involves routing-svc (accept, transfer to an agent
//! or a queue, unassign, move to another queue, a supervisor's force close, logout) ends
//! whole when routing-svc stops in the middle of it and starts again, through the gateway on
//! SQLite and PostgreSQL.
//!
//! routing-svc is stopped where the move is half done: right after the user's call was
//! answered, while the calls between the services may still be on their way (and, for moves
//! that need no answer from routing-svc, before the call, so that they certainly are).
//! Meanwhile users see a coherent conversation, or UNAVAILABLE having changed nothing (a
//! retry with the same request id after the restart then takes effect once). After the
//! restart every agent's capacity is what the agent holds, every conversation has one owner
//! or waits OPEN in its queue and is offered again, nothing is offered for a conversation
//! that is owned or closed, and every event log is complete.

use std::fmt::Debug;

use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::participant::State as Standing;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use switchboard_tests::flows::{
    WAIT, agent_state, chat_in, event_log_problem, events, ledger, offer_stream, pending_offer,
    pending_offers, set_presence, snapshot_offers, start_chat, take, wait_for_capacity,
    wait_for_state, web_chat_queue,
};
use switchboard_tests::{Backend, Harness, rid, settles};
use tokio_stream::StreamExt;
use tonic::{Code, Status};

const ROUTING: &str = "routing-svc";
const AGENTS: [&str; 2] = ["agent1", "agent2"];

switchboard_tests::on_each_backend!(
    an_accept_ends_whole_across_a_routing_restart,
    a_transfer_to_an_agent_ends_whole_across_a_routing_restart,
    a_transfer_to_a_queue_ends_whole_across_a_routing_restart,
    an_unassign_ends_whole_across_a_routing_restart,
    a_move_to_another_queue_ends_whole_across_a_routing_restart,
    a_force_close_ends_whole_across_a_routing_restart,
    a_logout_ends_whole_across_a_routing_restart,
);

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

async fn routing_down(h: &Harness) {
    h.stop_service(ROUTING)
        .await
        .expect("routing-svc stops cleanly on its own");
}

async fn routing_up(h: &Harness) {
    h.start_service(ROUTING)
        .await
        .expect("routing-svc starts again");
}

/// Fails unless `result` is UNAVAILABLE.
fn unavailable<T: Debug>(what: &str, result: Result<T, Status>) {
    match result {
        Err(status) if status.code() == Code::Unavailable => {}
        other => panic!("{what} while routing-svc is down: expected UNAVAILABLE, got {other:?}"),
    }
}

fn id_of(h: &Harness, handle: &str) -> String {
    h.creds.user(handle).id.clone()
}

/// The conversation as the demo supervisor reads it now.
async fn read(h: &Harness, conversation_id: &str) -> conv::Conversation {
    h.conversations("supervisor")
        .get_conversation(conv::GetConversationRequest {
            conversation_id: conversation_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("the supervisor reads the conversation")
        .into_inner()
        .conversation
        .expect("conversation")
}

/// Fails unless `agent_id` still works conversation `conversation_id` (ACTIVE) in queue
/// `queue_id`: a refused move changed nothing.
async fn still_worked_by(h: &Harness, conversation_id: &str, agent_id: &str, queue_id: &str) {
    let c = read(h, conversation_id).await;
    assert_eq!(c.owner_agent_id, agent_id, "{c:?}");
    assert_eq!(c.state, State::Active as i32, "{c:?}");
    assert_eq!(c.queue_id, queue_id, "{c:?}");
}

/// Participants of `c` present in `role`.
fn present(c: &conv::Conversation, role: conv::ParticipantRole) -> Vec<&str> {
    c.participants
        .iter()
        .filter(|p| p.state == Standing::Joined as i32 && p.role == role as i32)
        .map(|p| p.user_id.as_str())
        .collect()
}

/// What users may see of a move in the middle: one owner, present once as OWNER, while
/// owned; none while OPEN or CLOSED.
fn one_owner_or_none(c: &conv::Conversation) -> Option<String> {
    let owners = present(c, conv::ParticipantRole::Owner);
    let owned = matches!(
        State::try_from(c.state),
        Ok(State::Active | State::Waiting | State::WrapUp)
    );
    if owned && (c.owner_agent_id.is_empty() || owners != [c.owner_agent_id.as_str()]) {
        return Some(format!(
            "{} in state {} is owned by {:?} with present owners {owners:?}",
            c.id, c.state, c.owner_agent_id
        ));
    }
    if !owned && (!c.owner_agent_id.is_empty() || !owners.is_empty()) {
        return Some(format!(
            "{} in state {} keeps owner {:?} ({owners:?})",
            c.id, c.state, c.owner_agent_id
        ));
    }
    None
}

/// The first sign of a half-done move among `conversation_ids` (every conversation the
/// demo agents have had), if any.
async fn half_done(h: &Harness, conversation_ids: &[&str]) -> Option<String> {
    let agents: Vec<String> = AGENTS.iter().map(|a| id_of(h, a)).collect();
    let mut held = [0i32; AGENTS.len()];
    for id in conversation_ids {
        let c = read(h, id).await;
        if let Some(wrong) = one_owner_or_none(&c) {
            return Some(wrong);
        }
        let pending = match pending_offers(h, id).await {
            Ok(pending) => pending,
            Err(status) => return Some(format!("offers of {id} cannot be listed: {status}")),
        };
        let queue_offers = pending
            .iter()
            .filter(|o| o.kind == routing::OfferKind::Queue as i32)
            .count();
        match State::try_from(c.state) {
            Ok(State::Closed) if !pending.is_empty() => {
                return Some(format!("closed {id} is still offered: {pending:?}"));
            }
            Ok(State::Active | State::Waiting | State::WrapUp) if queue_offers > 0 => {
                return Some(format!(
                    "owned {id} is still offered from a queue: {pending:?}"
                ));
            }
            _ if queue_offers > 1 => {
                return Some(format!("{id} is offered twice at once: {pending:?}"));
            }
            _ => {}
        }
        for (i, agent) in agents.iter().enumerate() {
            let owns = c.owner_agent_id == *agent && c.state != State::Closed as i32;
            let conferenced = present(&c, conv::ParticipantRole::Conference).contains(&&**agent);
            held[i] += i32::from(owns) + i32::from(conferenced);
        }
        if let Some(wrong) = event_log_problem(&c, &events(h, "supervisor", id).await) {
            return Some(wrong);
        }
    }
    for (i, handle) in AGENTS.iter().enumerate() {
        let state = agent_state(h, handle).await;
        if state.capacity_used != held[i] || state.open_conversations != held[i] {
            return Some(format!(
                "{handle} uses {} units for {} conversations but holds {}",
                state.capacity_used, state.open_conversations, held[i]
            ));
        }
    }
    None
}

/// Waits until no move among `conversation_ids` is half done.
async fn settled(h: &Harness, conversation_ids: &[&str]) {
    settles(WAIT, || half_done(h, conversation_ids)).await;
}

/// Waits until `conversation_id` is offered to demo agent `handle` (on a stream opened
/// now) and returns the offer.
async fn offered_to(h: &Harness, handle: &str, conversation_id: &str) -> routing::Offer {
    let mut offers = offer_stream(h, handle).await;
    pending_offer(&mut offers, conversation_id).await
}

/// Waits until each of `conversation_ids` is offered to demo agent `handle`, in any order,
/// and returns the offers in the order of the ids.
async fn all_offered_to(
    h: &Harness,
    handle: &str,
    conversation_ids: &[&str],
) -> Vec<routing::Offer> {
    let mut found: Vec<Option<routing::Offer>> = vec![None; conversation_ids.len()];
    let mut offers = offer_stream(h, handle).await;
    tokio::time::timeout(WAIT, async {
        while found.iter().any(Option::is_none) {
            let message = offers.next().await.expect("the offer stream stays open");
            if let Some(OfferUpdate::Offer(offer)) = message.expect("offer stream ok").update
                && offer.state == routing::offer::State::Pending as i32
                && let Some(i) = conversation_ids
                    .iter()
                    .position(|id| *id == offer.conversation_id)
            {
                found[i] = Some(offer);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("offers of {conversation_ids:?} to {handle}: {found:?}"));
    found.into_iter().flatten().collect()
}

async fn accept(h: &Harness, handle: &str, offer_id: &str) -> routing::AcceptOfferResponse {
    h.agent(handle)
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer_id.to_owned(),
        })
        .await
        .unwrap_or_else(|e| panic!("{handle} accepts offer {offer_id}: {e}"))
        .into_inner()
}

/// Demo agent `handle` accepts every offer of `conversation_id` still pending in its
/// stream's snapshot, whatever the answer: an offer made before a move may still be shown
/// until routing-svc hears of the move.
async fn take_stale_offers(h: &Harness, handle: &str, conversation_id: &str) {
    for offer in snapshot_offers(h, handle).await {
        if offer.conversation_id == conversation_id {
            let answer = h
                .agent(handle)
                .accept_offer(routing::AcceptOfferRequest {
                    request_id: rid(),
                    offer_id: offer.id.clone(),
                })
                .await;
            // Refused once withdrawn (ABORTED when the withdrawal comes at the same moment);
            // accepted before, the assignment is then refused and the units given back.
            if let Err(status) = answer {
                assert!(
                    matches!(
                        status.code(),
                        Code::FailedPrecondition | Code::NotFound | Code::Aborted
                    ),
                    "a stale offer is refused as such: {status}"
                );
            }
        }
    }
}

/// Demo user `handle` asks for `request`: the transfer it made.
async fn transfer_as(
    h: &Harness,
    handle: &str,
    request: &conv::TransferConversationRequest,
) -> conv::Transfer {
    h.conversations(handle)
        .transfer_conversation(request.clone())
        .await
        .unwrap_or_else(|e| panic!("{handle} transfers: {e}"))
        .into_inner()
        .transfer
        .expect("transfer")
}

/// How many events of `kind` conversation `conversation_id` has.
async fn count_events(h: &Harness, conversation_id: &str, kind: conv::EventType) -> usize {
    events(h, "supervisor", conversation_id)
        .await
        .iter()
        .filter(|e| e.event_type == kind as i32)
        .count()
}

async fn an_accept_ends_whole_across_a_routing_restart(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = id_of(&h, "agent1");

    // routing-svc stops right after it answered the accept.
    let first = start_chat(&h, "outage-accept-1").await;
    let mut offers = offer_stream(&h, "agent1").await;
    set_presence(&h, "agent1", routing::Presence::Available).await;
    let offer = pending_offer(&mut offers, &first.id).await;
    accept(&h, "agent1", &offer.id).await;
    routing_down(&h).await;
    let seen = read(&h, &first.id).await;
    assert_eq!(one_owner_or_none(&seen), None);
    unavailable(
        "agent1 reads its state",
        h.agent("agent1")
            .get_agent_state(routing::GetAgentStateRequest::default())
            .await,
    );
    routing_up(&h).await;
    settled(&h, &[&first.id]).await;
    let owned = wait_for_state(&h, "agent1", &first.id, State::Active).await;
    assert_eq!(owned.owner_agent_id, agent1);

    // The assignment is still in routing-svc's outbox when it stops: conversation-svc was
    // away when the offer was accepted, and is back before routing-svc.
    let second = start_chat(&h, "outage-accept-2").await;
    let offer = offered_to(&h, "agent1", &second.id).await;
    h.stop_service("conversation-svc")
        .await
        .expect("conversation-svc stops");
    accept(&h, "agent1", &offer.id).await;
    wait_for_capacity(&h, "agent1", 2).await;
    routing_down(&h).await;
    h.start_service("conversation-svc")
        .await
        .expect("conversation-svc starts again");
    let waiting = read(&h, &second.id).await;
    assert_eq!(
        waiting.state,
        State::Open as i32,
        "not assigned before routing-svc says so"
    );
    assert_eq!(one_owner_or_none(&waiting), None);
    routing_up(&h).await;
    settled(&h, &[&first.id, &second.id]).await;
    let owned = wait_for_state(&h, "agent1", &second.id, State::Active).await;
    assert_eq!(owned.owner_agent_id, agent1);
    assert_eq!(
        count_events(&h, &second.id, conv::EventType::Assigned).await,
        1,
        "assigned once"
    );
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_transfer_to_an_agent_ends_whole_across_a_routing_restart(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = id_of(&h, "agent1");
    let agent2 = id_of(&h, "agent2");
    let chat = start_chat(&h, "outage-transfer-agent").await;
    take(&h, "agent1", &chat.id).await;
    wait_for_capacity(&h, "agent1", 1).await;
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let request = conv::TransferConversationRequest {
        request_id: rid(),
        conversation_id: chat.id.clone(),
        target_agent_id: agent2.clone(),
        note: "billing question".into(),
        ..Default::default()
    };

    // routing-svc must make the offer: while it is down the transfer is refused whole.
    let before = events(&h, "supervisor", &chat.id).await.len();
    routing_down(&h).await;
    unavailable(
        "a transfer to an agent",
        h.conversations("agent1")
            .transfer_conversation(request.clone())
            .await,
    );
    still_worked_by(&h, &chat.id, &agent1, &h.creds.queue_id).await;
    assert!(
        ledger(&h, &chat.id).await.is_empty(),
        "no transfer recorded"
    );
    assert_eq!(events(&h, "supervisor", &chat.id).await.len(), before);
    routing_up(&h).await;

    // The same request succeeds once routing-svc is back, once.
    let transfer = transfer_as(&h, "agent1", &request).await;
    let again = transfer_as(&h, "agent1", &request).await;
    assert_eq!(again, transfer);

    // routing-svc stops while the offer waits for agent2's answer.
    routing_down(&h).await;
    let meanwhile = read(&h, &chat.id).await;
    assert_eq!(meanwhile.owner_agent_id, agent1, "the sender keeps it");
    assert_eq!(ledger(&h, &chat.id).await, vec![transfer.clone()]);
    routing_up(&h).await;

    // The offer is still there; agent2 accepts, and routing-svc stops right after.
    let offer = offered_to(&h, "agent2", &chat.id).await;
    assert_eq!(offer.kind, routing::OfferKind::Transfer as i32);
    assert_eq!(offer.transfer_id, transfer.id);
    accept(&h, "agent2", &offer.id).await;
    routing_down(&h).await;
    assert_eq!(one_owner_or_none(&read(&h, &chat.id).await), None);
    routing_up(&h).await;

    settled(&h, &[&chat.id]).await;
    let taken = wait_for_state(&h, "agent2", &chat.id, State::Active).await;
    assert_eq!(taken.owner_agent_id, agent2);
    assert_eq!(
        present(&taken, conv::ParticipantRole::Consultant),
        [agent1.as_str()],
        "the sender stays as a consultant"
    );
    let ledger = ledger(&h, &chat.id).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        ledger[0].outcome,
        switchboard_proto::common::v1::AnswerOutcome::Accepted as i32
    );
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_transfer_to_a_queue_ends_whole_across_a_routing_restart(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = id_of(&h, "agent1");
    let billing = web_chat_queue(&h, "Billing", routing::Queue::default(), &["agent2"]).await;
    let chat = start_chat(&h, "outage-transfer-queue").await;
    take(&h, "agent1", &chat.id).await;
    wait_for_capacity(&h, "agent1", 1).await;
    let request = conv::TransferConversationRequest {
        request_id: rid(),
        conversation_id: chat.id.clone(),
        target_queue_id: billing.clone(),
        ..Default::default()
    };

    // routing-svc checks the queue: while it is down the transfer is refused whole.
    let before = events(&h, "supervisor", &chat.id).await.len();
    routing_down(&h).await;
    unavailable(
        "a transfer to a queue",
        h.conversations("agent1")
            .transfer_conversation(request.clone())
            .await,
    );
    still_worked_by(&h, &chat.id, &agent1, &h.creds.queue_id).await;
    assert_eq!(events(&h, "supervisor", &chat.id).await.len(), before);
    routing_up(&h).await;

    // The same request succeeds once back; routing-svc stops right after it answered.
    let transfer = transfer_as(&h, "agent1", &request).await;
    routing_down(&h).await;
    let meanwhile = read(&h, &chat.id).await;
    assert_eq!(meanwhile.state, State::Open as i32);
    assert_eq!(meanwhile.queue_id, billing);
    assert_eq!(one_owner_or_none(&meanwhile), None);
    routing_up(&h).await;

    // Released and waiting in Billing, where agent2 is offered it.
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let offer = offered_to(&h, "agent2", &chat.id).await;
    assert_eq!(offer.queue_id, billing);
    settled(&h, &[&chat.id]).await;
    let after = events(&h, "supervisor", &chat.id).await.len();
    let again = transfer_as(&h, "agent1", &request).await;
    assert_eq!(again, transfer, "the retry gets the first answer");
    assert_eq!(events(&h, "supervisor", &chat.id).await.len(), after);
    accept(&h, "agent2", &offer.id).await;
    settled(&h, &[&chat.id]).await;
    h.stop().await.expect("the suite stops cleanly");
}

async fn an_unassign_ends_whole_across_a_routing_restart(backend: &Backend) {
    let h = started(backend).await;
    let first = start_chat(&h, "outage-unassign-1").await;
    take(&h, "agent1", &first.id).await;
    let second = start_chat(&h, "outage-unassign-2").await;
    take(&h, "agent1", &second.id).await;
    wait_for_capacity(&h, "agent1", 2).await;
    // agent1 takes no more work, so what is requeued can only go to agent2.
    set_presence(&h, "agent1", routing::Presence::Away).await;
    let unassign = |conversation_id: &str| {
        let mut client = h.conversations("agent1");
        let request = conv::UnassignConversationRequest {
            request_id: rid(),
            conversation_id: conversation_id.to_owned(),
            tenant_id: String::new(),
        };
        async move {
            client
                .unassign_conversation(request)
                .await
                .expect("the owner unassigns")
                .into_inner()
                .conversation
                .expect("conversation")
        }
    };

    // Unassigning needs no answer from routing-svc: done while it is down, its release and
    // requeue wait for it.
    routing_down(&h).await;
    let open = unassign(&first.id).await;
    assert_eq!(open.state, State::Open as i32);
    assert_eq!(one_owner_or_none(&read(&h, &first.id).await), None);
    routing_up(&h).await;

    // routing-svc stops right after an unassign was answered.
    unassign(&second.id).await;
    routing_down(&h).await;
    assert_eq!(one_owner_or_none(&read(&h, &second.id).await), None);
    routing_up(&h).await;

    set_presence(&h, "agent2", routing::Presence::Available).await;
    all_offered_to(&h, "agent2", &[&first.id, &second.id]).await;
    settled(&h, &[&first.id, &second.id]).await;
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_move_to_another_queue_ends_whole_across_a_routing_restart(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = id_of(&h, "agent1");
    let agent2 = id_of(&h, "agent2");
    let billing = web_chat_queue(&h, "Billing", routing::Queue::default(), &["agent2"]).await;
    // One conversation agent1 owns, one offered to agent1 and not yet answered.
    let owned = start_chat(&h, "outage-move-owned").await;
    take(&h, "agent1", &owned.id).await;
    let mut offers = offer_stream(&h, "agent1").await;
    let offered = start_chat(&h, "outage-move-offered").await;
    pending_offer(&mut offers, &offered.id).await;
    drop(offers);
    let move_request = |conversation_id: &str| conv::MoveConversationToQueueRequest {
        request_id: rid(),
        conversation_id: conversation_id.to_owned(),
        queue_id: billing.clone(),
    };
    let requests = [move_request(&owned.id), move_request(&offered.id)];

    // routing-svc checks the queue: while it is down both moves are refused whole.
    routing_down(&h).await;
    for request in &requests {
        unavailable(
            "a move to another queue",
            h.conversations("supervisor")
                .move_conversation_to_queue(request.clone())
                .await,
        );
    }
    still_worked_by(&h, &owned.id, &agent1, &h.creds.queue_id).await;
    assert_eq!(read(&h, &offered.id).await.queue_id, h.creds.queue_id);
    routing_up(&h).await;

    // The same requests succeed once back; routing-svc stops right after they answered.
    let mut moved = Vec::new();
    for request in &requests {
        moved.push(
            h.conversations("supervisor")
                .move_conversation_to_queue(request.clone())
                .await
                .expect("the retried move")
                .into_inner(),
        );
    }
    routing_down(&h).await;
    for id in [&owned.id, &offered.id] {
        let meanwhile = read(&h, id).await;
        assert_eq!(meanwhile.state, State::Open as i32);
        assert_eq!(meanwhile.queue_id, billing);
        assert_eq!(one_owner_or_none(&meanwhile), None);
    }
    routing_up(&h).await;

    // agent1 may still see the offer made before the move, routing-svc not having heard of
    // the move yet, and accept it: accepted or refused, the move holds.
    take_stale_offers(&h, "agent1", &offered.id).await;

    // Both wait in Billing: offered to agent2 only, agent1's offer withdrawn, its units free.
    set_presence(&h, "agent2", routing::Presence::Available).await;
    for offer in all_offered_to(&h, "agent2", &[&owned.id, &offered.id]).await {
        assert_eq!(offer.queue_id, billing);
    }
    settled(&h, &[&owned.id, &offered.id]).await;
    for id in [&owned.id, &offered.id] {
        let pending = pending_offers(&h, id).await.expect("offers");
        assert!(
            pending
                .iter()
                .all(|o| o.agent_id == agent2 && o.queue_id == billing),
            "only Billing offers it: {pending:?}"
        );
    }
    for (request, first) in requests.iter().zip(&moved) {
        let again = h
            .conversations("supervisor")
            .move_conversation_to_queue(request.clone())
            .await
            .expect("a retry is answered")
            .into_inner();
        assert_eq!(&again, first, "the retry gets the first answer");
    }
    assert_eq!(
        count_events(&h, &owned.id, conv::EventType::QueueChanged).await,
        1,
        "moved once"
    );
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_force_close_ends_whole_across_a_routing_restart(backend: &Backend) {
    let h = started(backend).await;
    let owned = start_chat(&h, "outage-close-owned").await;
    take(&h, "agent1", &owned.id).await;
    let mut offers = offer_stream(&h, "agent1").await;
    let offered = start_chat(&h, "outage-close-offered").await;
    pending_offer(&mut offers, &offered.id).await;
    drop(offers);
    let force_close = |conversation_id: &str| {
        let mut client = h.supervisor("supervisor");
        let request = conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: conversation_id.to_owned(),
            reason: "outage drill".into(),
        };
        async move {
            client
                .force_close_conversation(request)
                .await
                .expect("the supervisor force-closes")
                .into_inner()
                .conversation
                .expect("conversation")
        }
    };

    // Force close needs no answer from routing-svc: done while it is down, the owner's
    // release and the withdrawal of the offer wait for it.
    routing_down(&h).await;
    for id in [&owned.id, &offered.id] {
        let closed = force_close(id).await;
        assert_eq!(closed.state, State::Closed as i32);
        assert_eq!(one_owner_or_none(&read(&h, id).await), None);
    }
    routing_up(&h).await;
    // agent1 may still see the offer of the closed conversation and accept it: nothing is
    // assigned and nothing held.
    take_stale_offers(&h, "agent1", &offered.id).await;
    settled(&h, &[&owned.id, &offered.id]).await;

    // routing-svc stops right after a force close was answered.
    let third = start_chat(&h, "outage-close-third").await;
    take(&h, "agent1", &third.id).await;
    wait_for_capacity(&h, "agent1", 1).await;
    force_close(&third.id).await;
    routing_down(&h).await;
    assert_eq!(
        read(&h, &third.id).await.state,
        State::Closed as i32,
        "closed while routing-svc is down"
    );
    routing_up(&h).await;
    settled(&h, &[&owned.id, &offered.id, &third.id]).await;
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_logout_ends_whole_across_a_routing_restart(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = id_of(&h, "agent1");
    let returning = routing::Queue {
        logout_behavior: routing::LogoutBehavior::ReturnToQueue as i32,
        ..Default::default()
    };
    let queue_id = web_chat_queue(&h, "Returns on logout", returning, &["agent1", "agent2"]).await;
    let chat = chat_in(&h, &queue_id, "outage-logout").await;
    take(&h, "agent1", &chat.id).await;
    wait_for_capacity(&h, "agent1", 1).await;
    let logout = routing::SetPresenceRequest {
        request_id: rid(),
        agent_id: String::new(),
        presence: routing::Presence::Offline as i32,
        reason: String::new(),
    };

    // routing-svc records the logout: while it is down the logout is refused whole.
    routing_down(&h).await;
    unavailable(
        "a logout",
        h.agent("agent1").set_presence(logout.clone()).await,
    );
    still_worked_by(&h, &chat.id, &agent1, &queue_id).await;
    routing_up(&h).await;
    assert_eq!(
        agent_state(&h, "agent1").await.presence,
        routing::Presence::Available as i32,
        "the refused logout changed nothing"
    );

    // The same request succeeds once back; routing-svc stops right after it answered.
    let answer = h
        .agent("agent1")
        .set_presence(logout.clone())
        .await
        .expect("the retried logout")
        .into_inner();
    routing_down(&h).await;
    assert_eq!(one_owner_or_none(&read(&h, &chat.id).await), None);
    routing_up(&h).await;

    // The conversation is back in its queue and offered to agent2; agent1 holds nothing.
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let offer = offered_to(&h, "agent2", &chat.id).await;
    assert_eq!(offer.queue_id, queue_id);
    settled(&h, &[&chat.id]).await;
    let again = h
        .agent("agent1")
        .set_presence(logout)
        .await
        .expect("a retry is answered")
        .into_inner();
    assert_eq!(again, answer, "the retry gets the first answer");
    assert_eq!(
        count_events(&h, &chat.id, conv::EventType::Unassigned).await,
        1,
        "returned once"
    );
    assert_eq!(
        agent_state(&h, "agent1").await.presence,
        routing::Presence::Offline as i32
    );
    h.stop().await.expect("the suite stops cleanly");
}
