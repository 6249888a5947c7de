//! Logout handling through the gateway on SQLite and PostgreSQL: a queue that returns
//! conversations on logout puts an Offline agent's ACTIVE or WAITING conversations back in
//! line (segment ended LOGGED_OUT, capacity freed, customer told, offered to another agent),
//! while a queue that keeps them, and wrap-up, leave them with the agent; a queue that does
//! not offer its backlog on login offers an agent who logs in only what arrives afterwards.

use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use switchboard_tests::flows::{
    agent_state, chat_in, events, messages, next_update, offer_stream, pending_offer, set_presence,
    take, wait_for_capacity, wait_for_pass, wait_for_state, wait_for_waiting, web_chat_queue,
};
use switchboard_tests::{Backend, Harness, rid};

switchboard_tests::on_each_backend!(
    logging_out_returns_conversations_of_a_returning_queue,
    logging_out_leaves_kept_and_wrap_up_conversations_with_the_agent,
    a_queue_that_holds_its_backlog_offers_only_what_arrives_after_login,
    by_default_the_backlog_is_offered_on_login,
);

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

fn returning() -> routing::Queue {
    routing::Queue {
        logout_behavior: routing::LogoutBehavior::ReturnToQueue as i32,
        ..Default::default()
    }
}

/// Demo user `handle` sets demo agent `agent`'s presence.
async fn set_presence_of(h: &Harness, handle: &str, agent: &str, presence: routing::Presence) {
    h.agent(handle)
        .set_presence(routing::SetPresenceRequest {
            request_id: rid(),
            agent_id: h.creds.user(agent).id.clone(),
            presence: presence as i32,
            reason: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{handle} sets {agent} {presence:?}: {e}"));
}

async fn segments(h: &Harness, conversation_id: &str) -> Vec<conv::Segment> {
    h.conversations("supervisor")
        .list_segments(conv::ListSegmentsRequest {
            conversation_id: conversation_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("segments")
        .into_inner()
        .segments
}

/// The UNASSIGNED events of a conversation.
async fn unassigned(h: &Harness, conversation_id: &str) -> Vec<conv::ConversationEvent> {
    events(h, "supervisor", conversation_id)
        .await
        .into_iter()
        .filter(|e| e.event_type == conv::EventType::Unassigned as i32)
        .collect()
}

async fn logging_out_returns_conversations_of_a_returning_queue(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let agent2 = h.creds.user("agent2").id.clone();
    let supervisor = h.creds.user("supervisor").id.clone();
    let queue_id =
        web_chat_queue(&h, "Returns on logout", returning(), &["agent1", "agent2"]).await;
    let chat = chat_in(&h, &queue_id, "logout-return").await;
    take(&h, "agent1", &chat.id).await;
    wait_for_capacity(&h, "agent1", 1).await;

    // agent1 logs out: the conversation is OPEN again in its queue, agent1's units freed.
    set_presence(&h, "agent1", routing::Presence::Offline).await;
    let open = wait_for_state(&h, "supervisor", &chat.id, State::Open).await;
    assert_eq!(open.queue_id, queue_id);
    assert!(open.owner_agent_id.is_empty(), "nobody owns it: {open:?}");
    wait_for_capacity(&h, "agent1", 0).await;
    wait_for_waiting(&h, &queue_id, 1).await;
    let ended = segments(&h, &chat.id).await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].agent_id, agent1);
    assert_eq!(
        ended[0].end_reason,
        conv::segment::EndReason::LoggedOut as i32
    );
    let released = unassigned(&h, &chat.id).await;
    assert_eq!(released.len(), 1, "one UNASSIGNED event: {released:?}");
    assert_eq!(released[0].actor_id, agent1, "the agent logged itself out");
    assert_eq!(released[0].previous_agent_id, agent1);
    assert_eq!(
        released[0].segment_end_reason,
        conv::segment::EndReason::LoggedOut as i32
    );
    let said = messages(&h, "supervisor", &chat.id).await;
    assert!(
        said.iter()
            .any(|m| m.text.contains("left the conversation")),
        "the customer is told the agent left: {said:?}"
    );

    // Routing offers it again: agent2 accepts and owns it in a second segment.
    let taken = take(&h, "agent2", &chat.id).await;
    assert_eq!(taken.owner_agent_id, agent2);
    wait_for_capacity(&h, "agent2", 1).await;
    assert_eq!(segments(&h, &chat.id).await.len(), 2);

    // A supervisor setting agent2 Offline returns it too, in the supervisor's name.
    set_presence_of(&h, "supervisor", "agent2", routing::Presence::Offline).await;
    wait_for_state(&h, "supervisor", &chat.id, State::Open).await;
    wait_for_capacity(&h, "agent2", 0).await;
    let released = unassigned(&h, &chat.id).await;
    assert_eq!(released.len(), 2, "{released:?}");
    assert_eq!(released[1].actor_id, supervisor);
    assert_eq!(released[1].previous_agent_id, agent2);
    let ended = segments(&h, &chat.id).await;
    assert_eq!(
        ended[1].end_reason,
        conv::segment::EndReason::LoggedOut as i32
    );
    h.stop().await.expect("the suite stops cleanly");
}

async fn logging_out_leaves_kept_and_wrap_up_conversations_with_the_agent(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let queue_id = web_chat_queue(&h, "Returns on logout", returning(), &["agent1"]).await;
    // The demo queue keeps conversations on logout (the default).
    let kept = chat_in(&h, &h.creds.queue_id, "logout-kept").await;
    take(&h, "agent1", &kept.id).await;
    let wrapping = chat_in(&h, &queue_id, "logout-wrap-up").await;
    take(&h, "agent1", &wrapping.id).await;
    h.conversations("agent1")
        .end_conversation(conv::EndConversationRequest {
            request_id: rid(),
            conversation_id: wrapping.id.clone(),
        })
        .await
        .expect("agent1 ends the chat");
    wait_for_state(&h, "agent1", &wrapping.id, State::WrapUp).await;
    let returned = chat_in(&h, &queue_id, "logout-returned").await;
    take(&h, "agent1", &returned.id).await;
    wait_for_capacity(&h, "agent1", 3).await;

    set_presence(&h, "agent1", routing::Presence::Offline).await;
    // The ACTIVE conversation of the returning queue goes back, in the same pass as the one
    // in wrap-up is looked at; then only the two others hold units.
    wait_for_state(&h, "supervisor", &returned.id, State::Open).await;
    wait_for_capacity(&h, "agent1", 2).await;
    let still = wait_for_state(&h, "agent1", &kept.id, State::Active).await;
    assert_eq!(still.owner_agent_id, agent1, "the keeping queue's stays");
    let wrap_up = wait_for_state(&h, "agent1", &wrapping.id, State::WrapUp).await;
    assert_eq!(
        wrap_up.owner_agent_id, agent1,
        "wrap-up stays with the agent"
    );
    assert!(unassigned(&h, &kept.id).await.is_empty());
    assert!(unassigned(&h, &wrapping.id).await.is_empty());
    assert_eq!(
        agent_state(&h, "agent1").await.presence,
        routing::Presence::Offline as i32
    );
    h.stop().await.expect("the suite stops cleanly");
}

/// Reads `offers` until the offer of `wanted`; fails if an offer of `held_back` comes
/// first.
async fn offer_skipping(
    offers: &mut tonic::Streaming<routing::StreamOffersResponse>,
    wanted: &str,
    held_back: &str,
) -> routing::Offer {
    next_update(offers, &format!("an offer of {wanted}"), |update| {
        let OfferUpdate::Offer(offer) = update else {
            return None;
        };
        assert_ne!(
            offer.conversation_id, held_back,
            "a conversation waiting before login was offered: {offer:?}"
        );
        (offer.conversation_id == wanted && offer.state == routing::offer::State::Pending as i32)
            .then_some(offer)
    })
    .await
}

async fn a_queue_that_holds_its_backlog_offers_only_what_arrives_after_login(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let holding = routing::Queue {
        offer_waiting_on_login: Some(false),
        ..Default::default()
    };
    let queue_id = web_chat_queue(&h, "Fresh work only", holding, &["agent1"]).await;
    let before = chat_in(&h, &queue_id, "login-before").await;
    wait_for_waiting(&h, &queue_id, 1).await;

    // agent1 logs in: the conversation already waiting is passed over, with the reason.
    let mut offers = offer_stream(&h, "agent1").await;
    set_presence(&h, "agent1", routing::Presence::Available).await;
    wait_for_pass(
        &h,
        &before.id,
        &agent1,
        routing::PassReason::WaitingBeforeLogin,
    )
    .await;

    // A conversation arriving after the login is offered; the earlier one never is.
    let after = chat_in(&h, &queue_id, "login-after").await;
    let offer = offer_skipping(&mut offers, &after.id, &before.id).await;
    h.agent("agent1")
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
        })
        .await
        .expect("accept the new conversation");
    wait_for_state(&h, "agent1", &after.id, State::Active).await;
    wait_for_waiting(&h, &queue_id, 1).await;
    wait_for_state(&h, "supervisor", &before.id, State::Open).await;

    // The agent may still pick the earlier one by hand.
    h.agent("agent1")
        .claim_waiting_work(routing::ClaimWaitingWorkRequest {
            request_id: rid(),
            conversation_id: before.id.clone(),
        })
        .await
        .expect("agent1 claims the earlier conversation");
    let claimed = wait_for_state(&h, "agent1", &before.id, State::Active).await;
    assert_eq!(claimed.owner_agent_id, agent1);
    h.stop().await.expect("the suite stops cleanly");
}

async fn by_default_the_backlog_is_offered_on_login(backend: &Backend) {
    let h = started(backend).await;
    let queue_id = web_chat_queue(
        &h,
        "Backlog on login",
        routing::Queue::default(),
        &["agent1"],
    )
    .await;
    let before = chat_in(&h, &queue_id, "login-backlog").await;
    wait_for_waiting(&h, &queue_id, 1).await;
    let mut offers = offer_stream(&h, "agent1").await;
    set_presence(&h, "agent1", routing::Presence::Available).await;
    let offer = pending_offer(&mut offers, &before.id).await;
    assert_eq!(offer.queue_id, queue_id);
    h.stop().await.expect("the suite stops cleanly");
}
