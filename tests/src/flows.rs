//! Steps that many end-to-end tests share: a tenant's administrator setting up web chat, a
//! customer starting a web chat, an agent taking it from its offer stream, waiting for a
//! conversation or an agent to reach a state.

use std::time::Duration;

use switchboard::seed::ApiKey;
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::directory::v1::directory_service_client::DirectoryServiceClient;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::queue_service_client::QueueServiceClient;
use switchboard_proto::routing::v1::stream_offers_response::Update as OfferUpdate;
use tokio_stream::StreamExt;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;

use crate::{Bearer, Harness, eventually, rid};

/// How long a test waits for something the suite does in the background.
pub const WAIT: Duration = Duration::from_secs(20);

/// A tenant's web chat as its administrator set it up through the gateway.
pub struct WebChat {
    /// The program "Support".
    pub program: routing::Program,
    /// The queue "Web chat" of the program.
    pub queue: routing::Queue,
    /// The agents' capacity profile.
    pub capacity_profile: routing::CapacityProfile,
    /// The key (BOT role) of the tenant's web-chat connector.
    pub bot: ApiKey,
}

/// The administrator of `admin` (credentials of its tenant) sets the tenant up for web chat:
/// a program, a capacity profile of two units (a chat costs one), a web-chat queue of at
/// most two chats per agent with every one of `agents` in it, and a key for the bot.
pub async fn set_up_web_chat<I>(h: &Harness, admin: I, agents: &[&dir::User]) -> WebChat
where
    I: Interceptor + Clone,
{
    let mut queues = QueueServiceClient::with_interceptor(h.channel.clone(), admin.clone());
    let program = queues
        .create_program(routing::CreateProgramRequest {
            request_id: rid(),
            program: Some(routing::Program {
                display_name: "Support".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program");
    let capacity_profile = web_chat_capacity_profile(&mut queues, 2).await;
    let queue = queues
        .create_queue(routing::CreateQueueRequest {
            request_id: rid(),
            queue: Some(routing::Queue {
                program_id: program.id.clone(),
                display_name: "Web chat".into(),
                accepted_channels: vec![Channel::Webchat as i32],
                max_open_per_agent: 2,
                ..Default::default()
            }),
        })
        .await
        .expect("queue")
        .into_inner()
        .queue
        .expect("queue");
    for agent in agents {
        queues
            .set_agent_profile(routing::SetAgentProfileRequest {
                request_id: rid(),
                agent_profile: Some(routing::AgentProfile {
                    agent_id: agent.id.clone(),
                    display_name: agent.display_name.clone(),
                    capacity_profile_id: capacity_profile.id.clone(),
                    queue_ids: vec![queue.id.clone()],
                    ..Default::default()
                }),
            })
            .await
            .expect("agent profile");
    }
    let secret = DirectoryServiceClient::with_interceptor(h.channel.clone(), admin)
        .create_api_key(dir::CreateApiKeyRequest {
            request_id: rid(),
            api_key: Some(dir::ApiKey {
                display_name: "Web chat".into(),
                roles: vec![dir::Role::Bot as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("bot key")
        .into_inner()
        .secret;
    WebChat {
        program,
        queue,
        capacity_profile,
        bot: ApiKey::new(&secret).expect("keys are ASCII"),
    }
}

/// The administrator of `admin` (credentials of its tenant) creates the team `name`.
pub async fn create_team<I>(h: &Harness, admin: I, name: &str) -> dir::Team
where
    I: Interceptor,
{
    DirectoryServiceClient::with_interceptor(h.channel.clone(), admin)
        .create_team(dir::CreateTeamRequest {
            request_id: rid(),
            team: Some(dir::Team {
                display_name: name.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("the administrator creates a team")
        .into_inner()
        .team
        .expect("team")
}

/// The administrator of `admin` makes `team_ids` the teams of user `user_id` of its tenant;
/// returns the user as changed.
pub async fn set_teams<I>(h: &Harness, admin: I, user_id: &str, team_ids: &[&str]) -> dir::User
where
    I: Interceptor,
{
    DirectoryServiceClient::with_interceptor(h.channel.clone(), admin)
        .update_user(dir::UpdateUserRequest {
            request_id: rid(),
            user: Some(dir::User {
                id: user_id.to_owned(),
                team_ids: team_ids.iter().map(|id| (*id).to_owned()).collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["team_ids".into()],
            }),
        })
        .await
        .expect("the administrator sets a user's teams")
        .into_inner()
        .user
        .expect("user")
}

/// A capacity profile "Standard" of `total_units` in which a web chat costs one, created
/// with `queues` (an administrator's client).
pub async fn web_chat_capacity_profile<I>(
    queues: &mut QueueServiceClient<InterceptedService<tonic::transport::Channel, I>>,
    total_units: i32,
) -> routing::CapacityProfile
where
    I: Interceptor,
{
    queues
        .create_capacity_profile(routing::CreateCapacityProfileRequest {
            request_id: rid(),
            capacity_profile: Some(routing::CapacityProfile {
                display_name: "Standard".into(),
                total_units,
                channel_costs: vec![routing::ChannelCost {
                    channel: Channel::Webchat as i32,
                    units: 1,
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("capacity profile")
        .into_inner()
        .capacity_profile
        .expect("profile")
}

/// The demo bot starts a web chat for the customer at `address` in the demo queue.
pub async fn start_chat(h: &Harness, address: &str) -> conv::Conversation {
    start_chat_in(h, h.bot(), &h.creds.queue_id, address).await
}

/// The demo bot starts a web chat for the customer at `address` in queue `queue_id`.
pub async fn chat_in(h: &Harness, queue_id: &str, address: &str) -> conv::Conversation {
    start_chat_in(h, h.bot(), queue_id, address).await
}

/// The bot of `bot` starts a web chat for the customer at `address` in its tenant's queue
/// `queue_id`.
pub async fn start_chat_in(
    h: &Harness,
    bot: ApiKey,
    queue_id: &str,
    address: &str,
) -> conv::Conversation {
    start_conversation_in(h, bot, queue_id, Channel::Webchat, address).await
}

/// The bot of `bot` starts a conversation on `channel` for the customer at `address` in its
/// tenant's queue `queue_id`.
pub async fn start_conversation_in(
    h: &Harness,
    bot: ApiKey,
    queue_id: &str,
    channel: Channel,
    address: &str,
) -> conv::Conversation {
    ConversationServiceClient::with_interceptor(h.channel.clone(), bot)
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: channel as i32,
            queue_id: queue_id.to_owned(),
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
    set_presence_as(h, h.bearer(handle), presence).await;
}

/// Sets the presence of the user of `credentials`.
pub async fn set_presence_as(h: &Harness, credentials: Bearer, presence: routing::Presence) {
    h.agent_as(credentials)
        .set_presence(routing::SetPresenceRequest {
            request_id: rid(),
            agent_id: String::new(),
            presence: presence as i32,
            reason: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("setting presence {presence:?}: {e}"));
}

/// Demo agent `handle` goes Available, waits on its offer stream for an offer of
/// `conversation_id`, accepts it, and returns the conversation once it is ACTIVE.
pub async fn take(h: &Harness, handle: &str, conversation_id: &str) -> conv::Conversation {
    take_as(h, h.bearer(handle), conversation_id).await
}

/// [`take`] by the agent of `credentials`.
pub async fn take_as(
    h: &Harness,
    credentials: Bearer,
    conversation_id: &str,
) -> conv::Conversation {
    let mut offers = offer_stream_as(h, credentials.clone()).await;
    set_presence_as(h, credentials.clone(), routing::Presence::Available).await;
    let offer = pending_offer(&mut offers, conversation_id).await;
    h.agent_as(credentials.clone())
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
        })
        .await
        .expect("accept offer");
    wait_for_state_as(
        h,
        credentials,
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
    wait_for_state_as(h, h.bearer(handle), conversation_id, state).await
}

/// The conversation as the user of `credentials` sees it, once it is in `state`.
pub async fn wait_for_state_as(
    h: &Harness,
    credentials: Bearer,
    conversation_id: &str,
    state: conv::conversation::State,
) -> conv::Conversation {
    let client = h.conversations_as(credentials);
    eventually(
        &format!("conversation {conversation_id} to be {state:?}"),
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
    agent_state_as(h, h.bearer(handle)).await
}

/// The routing state of the agent of `credentials`.
pub async fn agent_state_as(h: &Harness, credentials: Bearer) -> routing::AgentState {
    h.agent_as(credentials)
        .get_agent_state(routing::GetAgentStateRequest::default())
        .await
        .expect("agent state")
        .into_inner()
        .agent_state
        .expect("agent state")
}

/// Waits until demo agent `handle` holds `units` capacity units.
pub async fn wait_for_capacity(h: &Harness, handle: &str, units: i32) {
    wait_for_capacity_as(h, h.bearer(handle), units).await;
}

/// Waits until the agent of `credentials` holds `units` capacity units.
pub async fn wait_for_capacity_as(h: &Harness, credentials: Bearer, units: i32) {
    eventually(
        &format!("the agent to hold {units} capacity units"),
        WAIT,
        || async {
            let used = agent_state_as(h, credentials.clone()).await.capacity_used;
            (used == units).then_some(())
        },
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
    offer_stream_as(h, h.bearer(handle)).await
}

/// Opens the offer stream of the agent of `credentials`.
pub async fn offer_stream_as(
    h: &Harness,
    credentials: Bearer,
) -> tonic::Streaming<routing::StreamOffersResponse> {
    h.agent_as(credentials)
        .stream_offers(routing::StreamOffersRequest {})
        .await
        .expect("stream offers")
        .into_inner()
}

/// The first update on `offers` that `pick` turns into a value, within [`WAIT`]; `what`
/// names it when it does not come.
pub async fn next_update<T>(
    offers: &mut tonic::Streaming<routing::StreamOffersResponse>,
    what: &str,
    mut pick: impl FnMut(OfferUpdate) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let message = offers
                .next()
                .await
                .expect("the offer stream stays open")
                .expect("offer stream ok");
            if let Some(found) = message.update.and_then(&mut pick) {
                return found;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {WAIT:?}"))
}

/// The next pending offer of `conversation_id` on `offers`, within [`WAIT`].
pub async fn pending_offer(
    offers: &mut tonic::Streaming<routing::StreamOffersResponse>,
    conversation_id: &str,
) -> routing::Offer {
    next_update(
        offers,
        &format!("an offer of {conversation_id}"),
        |update| match update {
            OfferUpdate::Offer(offer)
                if offer.conversation_id == conversation_id
                    && offer.state == routing::offer::State::Pending as i32 =>
            {
                Some(offer)
            }
            _ => None,
        },
    )
    .await
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

/// A web-chat queue of the demo program with `settings`, created by the administrator and
/// served by the demo agents `handles` besides the demo queue.
pub async fn web_chat_queue(
    h: &Harness,
    name: &str,
    settings: routing::Queue,
    handles: &[&str],
) -> String {
    let queue = h
        .queues("admin")
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
        serve_queues(h, handle, &[&h.creds.queue_id, &queue.id]).await;
    }
    queue.id
}

/// Waits until a routing decision of `conversation_id`, as the demo supervisor lists them,
/// passed agent `agent_id` over for `reason`.
pub async fn wait_for_pass(
    h: &Harness,
    conversation_id: &str,
    agent_id: &str,
    reason: routing::PassReason,
) {
    eventually(
        &format!("a decision passing {agent_id} over for {reason:?}"),
        WAIT,
        || async {
            let decisions = h
                .queues("supervisor")
                .list_routing_decisions(routing::ListRoutingDecisionsRequest {
                    conversation_id: conversation_id.to_owned(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .routing_decisions;
            decisions
                .iter()
                .flat_map(|d| &d.candidates)
                .any(|c| c.agent_id == agent_id && c.reason == reason as i32)
                .then_some(())
        },
    )
    .await;
}
