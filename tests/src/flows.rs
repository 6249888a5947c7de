//! Steps that many end-to-end tests share: a customer starting a web chat, an agent taking
//! it from its offer stream, waiting for a conversation or an agent to reach a state.

use std::time::Duration;

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use tokio_stream::StreamExt;

use crate::{Harness, eventually, rid};

/// How long a test waits for something the suite does in the background.
pub const WAIT: Duration = Duration::from_secs(20);

/// The demo bot starts a web chat for the customer at `address` in the demo queue.
pub async fn start_chat(h: &Harness, address: &str) -> conv::Conversation {
    h.bot_conversations()
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: Channel::Webchat as i32,
            queue_id: h.creds.queue_id.clone(),
            contact: Some(conv::Contact {
                display_name: Some(format!("Customer {address}")),
                ..Default::default()
            }),
            channel_address: address.to_owned(),
            first_message: "Hello, I need help".into(),
            ..Default::default()
        })
        .await
        .expect("the bot creates a conversation")
        .into_inner()
        .conversation
        .expect("conversation")
}

/// Sets the presence of demo user `handle`.
pub async fn set_presence(h: &Harness, handle: &str, presence: routing::Presence) {
    h.agent(handle)
        .set_presence(routing::SetPresenceRequest {
            request_id: rid(),
            agent_id: String::new(),
            presence: presence as i32,
            reason: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{handle} sets presence {presence:?}: {e}"));
}

/// Demo agent `handle` goes Available, waits on its offer stream for an offer of
/// `conversation_id`, accepts it, and returns the conversation once it is ACTIVE.
pub async fn take(h: &Harness, handle: &str, conversation_id: &str) -> conv::Conversation {
    let mut offers = offer_stream(h, handle).await;
    set_presence(h, handle, routing::Presence::Available).await;
    let offer = pending_offer(&mut offers, conversation_id).await;
    h.agent(handle)
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
        })
        .await
        .expect("accept offer");
    wait_for_state(
        h,
        handle,
        conversation_id,
        conv::conversation::State::Active,
    )
    .await
}

/// The conversation as demo user `handle` sees it, once it is in `state`.
pub async fn wait_for_state(
    h: &Harness,
    handle: &str,
    conversation_id: &str,
    state: conv::conversation::State,
) -> conv::Conversation {
    let client = h.conversations(handle);
    eventually(
        &format!("conversation {conversation_id} to be {state:?} for {handle}"),
        WAIT,
        || {
            let mut client = client.clone();
            let id = conversation_id.to_owned();
            async move {
                let c = client
                    .get_conversation(conv::GetConversationRequest {
                        conversation_id: id,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .conversation?;
                (c.state == state as i32).then_some(c)
            }
        },
    )
    .await
}

/// Demo agent `handle`'s routing state.
pub async fn agent_state(h: &Harness, handle: &str) -> routing::AgentState {
    h.agent(handle)
        .get_agent_state(routing::GetAgentStateRequest::default())
        .await
        .expect("agent state")
        .into_inner()
        .agent_state
        .expect("agent state")
}

/// Waits until demo agent `handle` holds `units` capacity units.
pub async fn wait_for_capacity(h: &Harness, handle: &str, units: i32) {
    eventually(
        &format!("{handle} to hold {units} capacity units"),
        WAIT,
        || async { (agent_state(h, handle).await.capacity_used == units).then_some(()) },
    )
    .await;
}

/// Waits until queue `queue_id` has `waiting` conversations waiting.
pub async fn wait_for_waiting(h: &Harness, queue_id: &str, waiting: i32) {
    eventually(
        &format!("{waiting} conversations waiting in queue {queue_id}"),
        WAIT,
        || async {
            let state = h
                .queues("supervisor")
                .get_queue_state(routing::GetQueueStateRequest {
                    queue_id: queue_id.to_owned(),
                })
                .await
                .ok()?
                .into_inner()
                .queue_state?;
            (state.waiting == waiting).then_some(())
        },
    )
    .await;
}

/// A conversation's events as demo user `handle` reads them, in order.
pub async fn events(
    h: &Harness,
    handle: &str,
    conversation_id: &str,
) -> Vec<conv::ConversationEvent> {
    h.conversations(handle)
        .list_conversation_events(conv::ListConversationEventsRequest {
            conversation_id: conversation_id.to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list events")
        .into_inner()
        .events
}

/// A conversation's messages as demo user `handle` reads them, oldest first.
pub async fn messages(h: &Harness, handle: &str, conversation_id: &str) -> Vec<conv::Message> {
    h.conversations(handle)
        .list_messages(conv::ListMessagesRequest {
            conversation_id: conversation_id.to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list messages")
        .into_inner()
        .messages
}

/// Opens demo user `handle`'s offer stream (the agent's presence is left as it is).
pub async fn offer_stream(
    h: &Harness,
    handle: &str,
) -> tonic::Streaming<routing::StreamOffersResponse> {
    h.agent(handle)
        .stream_offers(routing::StreamOffersRequest {})
        .await
        .expect("stream offers")
        .into_inner()
}

/// The next pending offer of `conversation_id` on `offers`, within [`WAIT`].
pub async fn pending_offer(
    offers: &mut tonic::Streaming<routing::StreamOffersResponse>,
    conversation_id: &str,
) -> routing::Offer {
    tokio::time::timeout(WAIT, async {
        loop {
            let message = offers
                .next()
                .await
                .expect("the offer stream stays open")
                .expect("offer stream ok");
            if let Some(OfferUpdate::Offer(offer)) = message.update
                && offer.conversation_id == conversation_id
                && offer.state == routing::offer::State::Pending as i32
            {
                return offer;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("an offer of {conversation_id}"))
}

/// The administrator makes demo agent `handle` serve `queue_ids` (its whole list, so name
/// the demo queue too to keep it). What the agent sees follows within conversation-svc's
/// freshness for agents' queues.
pub async fn serve_queues(h: &Harness, handle: &str, queue_ids: &[&str]) {
    let user = h.creds.user(handle);
    h.queues("admin")
        .set_agent_profile(routing::SetAgentProfileRequest {
            request_id: rid(),
            agent_profile: Some(routing::AgentProfile {
                agent_id: user.id.clone(),
                display_name: user.display_name.clone(),
                capacity_profile_id: h.creds.capacity_profile_id.clone(),
                queue_ids: queue_ids.iter().map(|q| (*q).to_owned()).collect(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("{handle} serves {queue_ids:?}: {e}"));
}
