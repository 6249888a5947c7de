//! Contact history and a customer's return, through the gateway with the demo credentials:
//! one contact's conversations handled by two agents, read (never acted on) by the agent
//! who handles the customer now; segments and events in order; a customer who writes after
//! close reopens the conversation within the tenant's reopen window and starts a follow-up
//! after it; retries change nothing twice; another tenant sees nothing.

use std::time::Duration;

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::directory::v1::directory_service_client::DirectoryServiceClient;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use switchboard_tests::{Backend, Harness, eventually, rid};
use tokio_stream::StreamExt;
use tonic::Code;

const CARD: &str = "4111 1111 1111 1111";

switchboard_tests::on_each_backend!(whoever_handles_the_customer_reads_the_history);
async fn whoever_handles_the_customer_reads_the_history(backend: &Backend) {
    let harness = Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()));
    history(&harness).await;
    harness.stop().await.expect("every service stops cleanly");
}

async fn history(h: &Harness) {
    let agent1 = h.creds.user("agent1").clone();
    let agent2 = h.creds.user("agent2").clone();
    set_reopen_window(h, 3_600, 0).await;

    // agent1 handles the customer's first conversation to the end, then a second customer's.
    let mut offers1 = available(h, "agent1").await;
    let first = create(h, "visitor-77", Some("Robin Customer"), None).await;
    let contact_id = first.contact.clone().expect("contact").id;
    accept(h, "agent1", &mut offers1, &first.id).await;
    send_as_customer(h, &first.id, "My parcel never arrived").await;
    end_and_wrap_up(h, "agent1", &first.id).await;
    let other = create(h, "visitor-88", Some("Sam Stranger"), None).await;
    assert_ne!(other.contact.as_ref().expect("contact").id, contact_id);
    accept(h, "agent1", &mut offers1, &other.id).await;
    set_presence(h, "agent1", routing::Presence::Away).await;

    // The same customer comes back from another device; agent2 takes it.
    let mut offers2 = available(h, "agent2").await;
    let second = create(h, "visitor-77-laptop", None, Some(&contact_id)).await;
    assert_eq!(second.contact.as_ref().expect("contact").id, contact_id);
    accept(h, "agent2", &mut offers2, &second.id).await;

    // agent2, handling the second, reads the first (handled by agent1), read only.
    let mut as_agent2 = h.conversations("agent2");
    let earlier = as_agent2
        .get_conversation(conv::GetConversationRequest {
            conversation_id: first.id.clone(),
            ..Default::default()
        })
        .await
        .expect("the handler reads the contact's earlier conversation")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(earlier.state, State::Closed as i32);
    assert_eq!(earlier.owner_agent_id, agent1.id);
    let earlier_messages = list_messages(&mut as_agent2, &first.id)
        .await
        .expect("and its messages");
    assert!(
        earlier_messages
            .iter()
            .any(|m| m.text == "My parcel never arrived"),
        "{earlier_messages:?}"
    );
    let refused = as_agent2
        .send_message(conv::SendMessageRequest {
            request_id: rid(),
            conversation_id: first.id.clone(),
            text: "Writing into the past".into(),
            ..Default::default()
        })
        .await
        .expect_err("history is read only");
    assert_eq!(refused.code(), Code::NotFound);
    assert_eq!(
        list_messages(&mut h.conversations("supervisor"), &first.id)
            .await
            .expect("supervisor reads")
            .len(),
        earlier_messages.len(),
        "nothing was written"
    );
    let listed = as_agent2
        .list_contact_history(conv::ListContactHistoryRequest {
            contact_id: contact_id.clone(),
            ..Default::default()
        })
        .await
        .expect("the handler lists the contact's history")
        .into_inner();
    assert_eq!(
        ids(&listed.conversations),
        vec![second.id.as_str(), first.id.as_str()],
        "every conversation of the contact, newest first"
    );
    assert!(
        listed.conversations[0].pre_chat_data.is_empty()
            && listed.conversations[0]
                .contact
                .as_ref()
                .is_some_and(|c| c.identities.is_empty()),
        "BASIC by default"
    );
    let paged = as_agent2
        .list_contact_history(conv::ListContactHistoryRequest {
            contact_id: contact_id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("a first page")
        .into_inner();
    assert_eq!(ids(&paged.conversations), vec![second.id.as_str()]);
    let rest = as_agent2
        .list_contact_history(conv::ListContactHistoryRequest {
            contact_id: contact_id.clone(),
            page_size: 1,
            page_token: paged.next_page_token,
            ..Default::default()
        })
        .await
        .expect("the next page")
        .into_inner();
    assert_eq!(ids(&rest.conversations), vec![first.id.as_str()]);
    assert!(rest.next_page_token.is_empty());
    let contact = as_agent2
        .get_contact(conv::GetContactRequest {
            contact_id: contact_id.clone(),
            ..Default::default()
        })
        .await
        .expect("the handler reads the contact")
        .into_inner()
        .contact
        .expect("contact");
    assert_eq!(
        contact
            .identities
            .iter()
            .map(|i| i.address.as_str())
            .collect::<Vec<_>>(),
        vec!["visitor-77", "visitor-77-laptop"]
    );

    // Handling one customer opens nothing of another's: agent1's current conversation of
    // the other contact stays hidden from agent2, and so does that contact.
    expect_hidden(&mut as_agent2, &other.id).await;
    let other_contact = other.contact.as_ref().expect("contact").id.clone();
    expect_contact_hidden(&mut as_agent2, &other_contact).await;
    // Having handled the customer once opens nothing either: agent1 cannot read agent2's
    // current conversation nor the contact.
    let mut as_agent1 = h.conversations("agent1");
    expect_hidden(&mut as_agent1, &second.id).await;
    expect_contact_hidden(&mut as_agent1, &contact_id).await;

    // Segments and events of the first conversation, in order.
    let mut as_supervisor = h.conversations("supervisor");
    let segments = as_supervisor
        .list_segments(conv::ListSegmentsRequest {
            conversation_id: first.id.clone(),
            ..Default::default()
        })
        .await
        .expect("segments")
        .into_inner()
        .segments;
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(segments[0].ordinal, 1);
    assert_eq!(segments[0].agent_id, agent1.id);
    assert_eq!(
        segments[0].assignment_source,
        conv::AssignmentSource::QueueOffer as i32
    );
    assert_eq!(
        segments[0].end_reason,
        conv::segment::EndReason::Closed as i32
    );
    assert!(segments[0].wrapped_up);
    let events = all_events(h, &first.id).await;
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "per-conversation sequence order, no gaps across pages"
    );
    let first_kinds = kinds(&events);
    assert_eq!(
        first_kinds.first(),
        Some(&conv::EventType::Created),
        "{first_kinds:?}"
    );
    assert_eq!(
        first_kinds.last(),
        Some(&conv::EventType::Closed),
        "{first_kinds:?}"
    );
    let position = |kind| {
        first_kinds
            .iter()
            .position(|k| *k == kind)
            .expect("present")
    };
    assert!(position(conv::EventType::Assigned) < position(conv::EventType::Ended));

    // The customer writes again within the reopen window: the second conversation reopens
    // in its queue and is offered again; a retry neither reopens twice nor stores twice.
    end_and_wrap_up(h, "agent2", &second.id).await;
    let back = conv::SendMessageRequest {
        request_id: rid(),
        conversation_id: second.id.clone(),
        text: format!("Me again, card {CARD}"),
        sender: conv::SenderKind::Customer as i32,
        ..Default::default()
    };
    let mut bot = h.bot_conversations();
    let landed = bot
        .send_message(back.clone())
        .await
        .expect("customer message after close")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(landed.conversation_id, second.id, "reopened in place");
    assert!(!landed.text.contains(CARD), "masked: {}", landed.text);
    let retried = bot
        .send_message(back)
        .await
        .expect("retry")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(retried, landed);
    let reopened = get(h, "supervisor", &second.id).await;
    assert_eq!(reopened.state, State::Open as i32);
    assert!(reopened.owner_agent_id.is_empty() && reopened.close_time.is_none());
    assert_eq!(reopened.queue_id, h.creds.queue_id);
    let second_kinds = kinds(&all_events(h, &second.id).await);
    assert_eq!(
        second_kinds
            .iter()
            .filter(|k| **k == conv::EventType::Reopened)
            .count(),
        1,
        "{second_kinds:?}"
    );
    assert_eq!(
        &second_kinds[second_kinds.len() - 2..],
        &[conv::EventType::Reopened, conv::EventType::MessageAdded]
    );
    accept(h, "agent2", &mut offers2, &second.id).await;
    let again = get(h, "agent2", &second.id).await;
    assert_eq!(
        again.segment_count, 2,
        "a new segment for the new assignment"
    );
    assert_eq!(again.owner_agent_id, agent2.id);
    let texts: Vec<String> = list_messages(&mut as_agent2, &second.id)
        .await
        .expect("messages")
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts.iter().filter(|t| **t == landed.text).count(),
        1,
        "{texts:?}"
    );

    // After the window (a window shorter than a second reopens nothing), the customer's
    // message starts a new conversation that follows the closed one; retried, nothing new.
    end_and_wrap_up(h, "agent2", &second.id).await;
    set_reopen_window(h, 0, 1).await;
    let later = conv::SendMessageRequest {
        request_id: rid(),
        conversation_id: second.id.clone(),
        text: "Hello? Anyone?".into(),
        sender: conv::SenderKind::Customer as i32,
        ..Default::default()
    };
    let started = bot
        .send_message(later.clone())
        .await
        .expect("customer message after the window")
        .into_inner()
        .message
        .expect("message");
    assert_ne!(started.conversation_id, second.id, "a new conversation");
    let retried = bot
        .send_message(later)
        .await
        .expect("retry")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(retried, started);
    let follow_up = get(h, "supervisor", &started.conversation_id).await;
    assert_eq!(follow_up.previous_conversation_id, second.id);
    assert_eq!(follow_up.state, State::Open as i32);
    assert_eq!(follow_up.channel, Channel::Webchat as i32);
    assert_eq!(follow_up.channel_address, "visitor-77-laptop");
    assert_eq!(follow_up.queue_id, h.creds.queue_id);
    assert_eq!(follow_up.contact.as_ref().expect("contact").id, contact_id);
    assert_eq!(
        kinds(&all_events(h, &follow_up.id).await),
        vec![
            conv::EventType::Created,
            conv::EventType::Queued,
            conv::EventType::MessageAdded
        ]
    );
    assert_eq!(
        get(h, "supervisor", &second.id).await.state,
        State::Closed as i32,
        "the closed one stays closed"
    );
    let history = as_supervisor_history(&mut as_supervisor, &contact_id).await;
    assert_eq!(
        ids(&history),
        vec![follow_up.id.as_str(), second.id.as_str(), first.id.as_str()],
        "one follow-up, whatever the retries"
    );
    accept(h, "agent2", &mut offers2, &follow_up.id).await;

    // Another tenant's administrator finds none of it.
    let (_, foreign_key) = h
        .new_tenant_with_administrator("Initech", "Ira Admin", "ira@initech.test")
        .await;
    let mut foreign = ConversationServiceClient::with_interceptor(h.channel.clone(), foreign_key);
    expect_contact_hidden(&mut foreign, &contact_id).await;
    expect_hidden(&mut foreign, &first.id).await;
}

type Client<I> = ConversationServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, I>,
>;

fn ids(convs: &[conv::Conversation]) -> Vec<&str> {
    convs.iter().map(|c| c.id.as_str()).collect()
}

fn kinds(events: &[conv::ConversationEvent]) -> Vec<conv::EventType> {
    events
        .iter()
        .map(|e| conv::EventType::try_from(e.event_type).expect("known event type"))
        .collect()
}

/// Sets the demo tenant's reopen window, as its administrator.
async fn set_reopen_window(h: &Harness, seconds: i64, nanos: i32) {
    let mut directory =
        DirectoryServiceClient::with_interceptor(h.channel.clone(), h.bearer("admin"));
    let settings = directory
        .update_tenant_settings(dir::UpdateTenantSettingsRequest {
            request_id: rid(),
            settings: Some(dir::TenantSettings {
                reopen_window: Some(prost_types::Duration { seconds, nanos }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["reopen_window".into()],
            }),
        })
        .await
        .expect("the administrator sets the reopen window")
        .into_inner()
        .settings
        .expect("settings");
    assert_eq!(
        settings.reopen_window.map(|w| w.seconds),
        Some(seconds),
        "the window is kept in whole seconds"
    );
}

async fn set_presence(h: &Harness, handle: &str, presence: routing::Presence) {
    h.agent(handle)
        .set_presence(routing::SetPresenceRequest {
            request_id: rid(),
            agent_id: String::new(),
            presence: presence as i32,
            reason: String::new(),
        })
        .await
        .expect("set presence");
}

/// The agent goes Available and opens its offer stream.
async fn available(h: &Harness, handle: &str) -> tonic::Streaming<routing::StreamOffersResponse> {
    set_presence(h, handle, routing::Presence::Available).await;
    h.agent(handle)
        .stream_offers(routing::StreamOffersRequest {})
        .await
        .expect("stream offers")
        .into_inner()
}

/// The bot hands a web chat from `address` to the demo queue.
async fn create(
    h: &Harness,
    address: &str,
    name: Option<&str>,
    contact_id: Option<&str>,
) -> conv::Conversation {
    h.bot_conversations()
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: Channel::Webchat as i32,
            queue_id: h.creds.queue_id.clone(),
            contact: Some(conv::Contact {
                id: contact_id.unwrap_or_default().to_owned(),
                display_name: name.map(str::to_owned),
                ..Default::default()
            }),
            channel_address: address.into(),
            pre_chat_data: vec![conv::PreChatField {
                name: "order_number".into(),
                label: "Order number".into(),
                value: "A-7".into(),
            }],
            ..Default::default()
        })
        .await
        .expect("create conversation")
        .into_inner()
        .conversation
        .expect("conversation")
}

/// Waits for the queue offer of `conversation_id` on the agent's stream, accepts it and
/// waits until the agent owns the conversation.
async fn accept(
    h: &Harness,
    handle: &str,
    offers: &mut tonic::Streaming<routing::StreamOffersResponse>,
    conversation_id: &str,
) {
    let offer = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let message = offers
                .next()
                .await
                .expect("offer stream stays open")
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
    .unwrap_or_else(|_| panic!("{handle} is offered {conversation_id} within 20 s"));
    h.agent(handle)
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
        })
        .await
        .expect("accept offer");
    let agent_id = h.creds.user(handle).id.clone();
    let conversations = h.conversations(handle);
    eventually(
        "the agent to own the conversation",
        Duration::from_secs(10),
        || {
            let mut client = conversations.clone();
            let id = conversation_id.to_owned();
            let agent_id = agent_id.clone();
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
                (c.state == State::Active as i32 && c.owner_agent_id == agent_id).then_some(())
            }
        },
    )
    .await;
}

async fn send_as_customer(h: &Harness, conversation_id: &str, text: &str) {
    h.bot_conversations()
        .send_message(conv::SendMessageRequest {
            request_id: rid(),
            conversation_id: conversation_id.into(),
            text: text.into(),
            sender: conv::SenderKind::Customer as i32,
            ..Default::default()
        })
        .await
        .expect("customer message");
}

async fn end_and_wrap_up(h: &Harness, handle: &str, conversation_id: &str) {
    let mut client = h.conversations(handle);
    client
        .end_conversation(conv::EndConversationRequest {
            request_id: rid(),
            conversation_id: conversation_id.into(),
        })
        .await
        .expect("end");
    let closed = client
        .submit_wrap_up(conv::SubmitWrapUpRequest {
            request_id: rid(),
            conversation_id: conversation_id.into(),
            wrap_up_reason_ids: vec![h.creds.wrap_up_reason_ids[0].clone()],
            ..Default::default()
        })
        .await
        .expect("wrap up")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(closed.state, State::Closed as i32);
}

async fn get(h: &Harness, handle: &str, conversation_id: &str) -> conv::Conversation {
    h.conversations(handle)
        .get_conversation(conv::GetConversationRequest {
            conversation_id: conversation_id.into(),
            ..Default::default()
        })
        .await
        .expect("get conversation")
        .into_inner()
        .conversation
        .expect("conversation")
}

async fn list_messages<I: tonic::service::Interceptor>(
    client: &mut Client<I>,
    conversation_id: &str,
) -> Result<Vec<conv::Message>, tonic::Status> {
    client
        .list_messages(conv::ListMessagesRequest {
            conversation_id: conversation_id.into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().messages)
}

/// Every event of a conversation, two per page, as a supervisor reads them.
async fn all_events(h: &Harness, conversation_id: &str) -> Vec<conv::ConversationEvent> {
    let mut client = h.conversations("supervisor");
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_conversation_events(conv::ListConversationEventsRequest {
                conversation_id: conversation_id.into(),
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .expect("events")
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

async fn as_supervisor_history<I: tonic::service::Interceptor>(
    client: &mut Client<I>,
    contact_id: &str,
) -> Vec<conv::Conversation> {
    client
        .list_contact_history(conv::ListContactHistoryRequest {
            contact_id: contact_id.into(),
            ..Default::default()
        })
        .await
        .expect("contact history")
        .into_inner()
        .conversations
}

/// The conversation reads as missing: get and messages are NOT_FOUND.
async fn expect_hidden<I: tonic::service::Interceptor>(
    client: &mut Client<I>,
    conversation_id: &str,
) {
    let err = client
        .get_conversation(conv::GetConversationRequest {
            conversation_id: conversation_id.into(),
            ..Default::default()
        })
        .await
        .expect_err("hidden");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = list_messages(client, conversation_id)
        .await
        .expect_err("hidden");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

/// The contact reads as missing: GetContact and ListContactHistory are NOT_FOUND.
async fn expect_contact_hidden<I: tonic::service::Interceptor>(
    client: &mut Client<I>,
    contact_id: &str,
) {
    let err = client
        .get_contact(conv::GetContactRequest {
            contact_id: contact_id.into(),
            ..Default::default()
        })
        .await
        .expect_err("hidden contact");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client
        .list_contact_history(conv::ListContactHistoryRequest {
            contact_id: contact_id.into(),
            ..Default::default()
        })
        .await
        .expect_err("hidden history");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}
