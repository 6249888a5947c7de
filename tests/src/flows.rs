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
    create_chat(
        h,
        conv::CreateConversationRequest {
            queue_id: h.creds.queue_id.clone(),
            contact: Some(conv::Contact {
                display_name: Some(format!("Customer {address}")),
                ..Default::default()
            }),
            first_message: "Hello, I need help".into(),
            ..web_chat(address)
        },
    )
    .await
}

/// The demo bot starts a web chat in `queue_id` for the customer at `address`.
pub async fn chat_in(h: &Harness, queue_id: &str, address: &str) -> conv::Conversation {
    create_chat(
        h,
        conv::CreateConversationRequest {
            queue_id: queue_id.to_owned(),
            first_message: "Is anyone there?".into(),
            ..web_chat(address)
        },
    )
    .await
}

/// A request for a web chat with the customer at `address`.
fn web_chat(address: &str) -> conv::CreateConversationRequest {
    conv::CreateConversationRequest {
        request_id: rid(),
        channel: Channel::Webchat as i32,
        channel_address: address.to_owned(),
        ..Default::default()
    }
}

async fn create_chat(h: &Harness, request: conv::CreateConversationRequest) -> conv::Conversation {
    h.bot_conversations()
        .create_conversation(request)
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

/// A web-chat queue of the demo program with `settings`, served by the demo agents
/// `handles` (besides the demo queue); returns its id.
pub async fn queue_served_by(
    h: &Harness,
    name: &str,
    settings: routing::Queue,
    handles: &[&str],
) -> String {
    let mut queues = h.queues("admin");
    let queue = queues
        .create_queue(routing::CreateQueueRequest {
            request_id: rid(),
            queue: Some(routing::Queue {
                program_id: h.creds.program_id.clone(),
                display_name: name.into(),
                accepted_channels: vec![Channel::Webchat as i32],
                ..settings
            }),
        })
        .await
        .expect("create queue")
        .into_inner()
        .queue
        .expect("queue");
    for handle in handles {
        let user = h.creds.user(handle);
        queues
            .set_agent_profile(routing::SetAgentProfileRequest {
                request_id: rid(),
                agent_profile: Some(routing::AgentProfile {
                    agent_id: user.id.clone(),
                    display_name: user.display_name.clone(),
                    capacity_profile_id: h.creds.capacity_profile_id.clone(),
                    queue_ids: vec![h.creds.queue_id.clone(), queue.id.clone()],
                    ..Default::default()
                }),
            })
            .await
            .expect("the agent joins the queue");
    }
    queue.id
}

/// The transfer ledger of a conversation as the demo supervisor reads it.
pub async fn ledger(h: &Harness, conversation_id: &str) -> Vec<conv::Transfer> {
    h.conversations("supervisor")
        .list_transfers(conv::ListTransfersRequest {
            conversation_id: conversation_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("transfers")
        .into_inner()
        .transfers
}

/// The pending offers of every kind of `conversation_id`, as the demo supervisor lists them.
pub async fn pending_offers(
    h: &Harness,
    conversation_id: &str,
) -> Result<Vec<routing::Offer>, tonic::Status> {
    Ok(h.queues("supervisor")
        .list_offers(routing::ListOffersRequest {
            conversation_id: conversation_id.to_owned(),
            states: vec![routing::offer::State::Pending as i32],
            ..Default::default()
        })
        .await?
        .into_inner()
        .offers)
}

/// What is wrong with `events`, the event log of conversation `c`, if anything: numbered
/// 1..n without gaps, n the conversation's last sequence, the last one in its state.
pub fn event_log_problem(
    c: &conv::Conversation,
    events: &[conv::ConversationEvent],
) -> Option<String> {
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(i, e)| e.sequence != *i as i64 + 1)
    {
        return Some(format!("{} event {i} has sequence {}", c.id, e.sequence));
    }
    if events.len() as i64 != c.last_event_sequence {
        return Some(format!(
            "{} has {} events but last sequence {}",
            c.id,
            events.len(),
            c.last_event_sequence
        ));
    }
    if events.last().map(|e| e.state) != Some(c.state) {
        return Some(format!("{}'s last event is not in its state", c.id));
    }
    None
}

/// The pending offers in the snapshot of demo agent `handle`'s offer stream, opened now.
pub async fn snapshot_offers(h: &Harness, handle: &str) -> Vec<routing::Offer> {
    let mut offers = offer_stream(h, handle).await;
    let mut pending = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(message) = offers.next().await {
            match message.expect("offer stream ok").update {
                Some(OfferUpdate::Offer(offer))
                    if offer.state == routing::offer::State::Pending as i32 =>
                {
                    pending.push(offer);
                }
                Some(OfferUpdate::SnapshotEnd(_)) => return,
                _ => {}
            }
        }
        panic!("the offer stream ended before its snapshot did");
    })
    .await
    .unwrap_or_else(|_| panic!("{handle}'s offer snapshot"));
    pending
}
