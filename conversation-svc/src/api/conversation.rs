//! `switchboard.conversation.v1.ConversationService`.

use std::pin::Pin;

use futures::Stream;
use prost::Message as _;
use switchboard_proto::common::v1::{Channel, SnapshotEnd};
use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::conversation::v1::conversation_service_server::ConversationService;
use switchboard_proto::routing::internal::v1 as rpb;
use switchboard_server_kit::db::{micros_to_timestamp, now_micros};
use switchboard_server_kit::{Identity, PrincipalKind, Role};
use switchboard_server_kit::{fields, mask_pans};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::stream::{Waiter, Wake, heartbeat_now};
use super::{
    Begun, READER_ROLES, Shared, authorized, caller, convert, next_page, not_served, optional_uuid,
    own_tenant, page_size, request_id, require_any, text_field, token, uuid_field, view_field,
    viewer,
};
use crate::domain::access::{ParticipantRole, check_customer_message, check_user_message};
use crate::domain::state::{Action, State, transition};
use crate::error::{Error, Result};
use crate::store::{
    CommandKind, Conversation, ConversationQuery, Event, Message, Mutation, NewConversation,
    NewMessage, PreChatField, TranscriptLine,
};

const SERVICE: &str = "ConversationService";

/// Roles that act on conversations as users (agents, supervisors, administrators).
const USER_ROLES: [Role; 3] = [Role::Agent, Role::Supervisor, Role::Administrator];

const MAX_PRE_CHAT_FIELDS: usize = 50;
const MAX_TRANSCRIPT_LINES: usize = 500;
const MAX_TEXT: usize = 4000;
const MAX_WRAP_UP_REASONS: usize = 20;
/// Most values a state filter may list (there are five states).
const MAX_STATE_FILTER: usize = 10;

/// How many events a stream reads per query.
const STREAM_BATCH: i64 = 200;

/// The conversation API for agents, supervisors, bots and channel connectors.
#[derive(Clone, Debug)]
pub struct ConversationApi {
    ctx: Shared,
}

impl ConversationApi {
    /// The service over `ctx`.
    pub fn new(ctx: Shared) -> ConversationApi {
        ConversationApi { ctx }
    }
}

fn event_kind(kind: pb::EventType) -> i32 {
    kind as i32
}

/// The user id to record as the actor of a change: users only, not bots or connectors
/// acting for the customer.
fn actor(identity: &Identity) -> &str {
    if identity.principal_kind == PrincipalKind::User {
        &identity.principal_id
    } else {
        ""
    }
}

fn channel_field(value: i32) -> Result<i32> {
    match Channel::try_from(value) {
        Ok(Channel::Unspecified) => Err(Error::invalid("channel", "is required")),
        Ok(channel) => Ok(channel as i32),
        Err(_) => Err(Error::invalid("channel", "is not a known channel")),
    }
}

/// Maps routing-svc's answer to CheckQueue to this service's errors.
pub(super) fn queue_error(queue_id: &str, status: Status) -> Error {
    match status.code() {
        tonic::Code::NotFound => Error::NotFound(format!("queue {queue_id} not found")),
        tonic::Code::FailedPrecondition => {
            Error::WrongState(format!("queue {queue_id}: {}", status.message()))
        }
        tonic::Code::InvalidArgument => Error::invalid("queue_id", status.message()),
        code => {
            warn!(
                queue_id,
                ?code,
                message = status.message(),
                "routing-svc CheckQueue failed"
            );
            Error::Unavailable(format!(
                "routing-svc is unavailable: cannot check queue {queue_id}"
            ))
        }
    }
}

/// Loads a conversation the caller can see, locked for the transaction.
pub(super) async fn load_visible(
    m: &mut Mutation,
    identity: &Identity,
    conversation_id: &str,
) -> Result<Conversation> {
    m.conversation_for_update(&identity.tenant_id, conversation_id)
        .await?
        .filter(|c| c.visible_to(viewer(identity)))
        .ok_or_else(|| Error::conversation_not_found(conversation_id))
}

/// Loads a conversation for an owner-only action and checks that `action` is allowed;
/// returns it with the state the action leads to.
async fn load_for_owner(
    m: &mut Mutation,
    identity: &Identity,
    conversation_id: &str,
    action: Action,
) -> Result<(Conversation, State)> {
    let conv = load_visible(m, identity, conversation_id).await?;
    let next =
        transition(conv.state, action).map_err(|e| Error::wrong_state(conversation_id, e))?;
    if conv.owner_agent_id != identity.principal_id {
        return Err(Error::wrong_state(
            conversation_id,
            format!(
                "caller is not the owner; only the owner can {}",
                action.verb().trim_end_matches(" for")
            ),
        ));
    }
    Ok((conv, next))
}

/// An event about `conv` caused by the caller.
pub(super) fn event_by(
    conv: &Conversation,
    kind: pb::EventType,
    identity: &Identity,
    now: i64,
) -> Event {
    Event::about(conv, event_kind(kind), actor(identity), now)
}

/// Saves `conv` in state `next` as of `now`.
pub(super) async fn save_state(
    m: &mut Mutation,
    conv: &mut Conversation,
    next: State,
    now: i64,
) -> Result<()> {
    conv.state = next;
    conv.update_time = now;
    m.save_conversation(conv).await
}

/// A simple owner action: loads the conversation for its owner, moves it to the state
/// `action` leads to, saves it and records a `kind` event with `detail` (a stored code or
/// note, not part of the public event). The returned
/// conversation's `update_time` is the time of the change.
async fn owner_transition(
    m: &mut Mutation,
    identity: &Identity,
    conversation_id: &str,
    action: Action,
    kind: pb::EventType,
    detail: String,
) -> Result<Conversation> {
    let (mut conv, next) = load_for_owner(m, identity, conversation_id, action).await?;
    let now = now_micros();
    save_state(m, &mut conv, next, now).await?;
    let mut event = event_by(&conv, kind, identity, now);
    event.detail = detail;
    m.event(event);
    Ok(conv)
}

/// Appends `new` to `conv` and records its MESSAGE_ADDED event by `actor_id` (empty for
/// the customer's side and for Switchboard itself).
pub(super) async fn post_message(
    m: &mut Mutation,
    conv: &mut Conversation,
    new: NewMessage,
    actor_id: &str,
    now: i64,
) -> Result<Message> {
    // The event is numbered first so the message carries its sequence.
    let mut added = Event::about(conv, event_kind(pb::EventType::MessageAdded), actor_id, now);
    added.message_id = uuid::Uuid::new_v4().to_string();
    let id = added.message_id.clone();
    let sequence = m.event(added);
    m.add_message(conv, new, id, sequence, now).await
}

impl ConversationApi {
    async fn create(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Result<pb::CreateConversationResponse> {
        const METHOD: &str = "ConversationService/CreateConversation";
        let identity = authorized(
            &request,
            &[Role::Bot, Role::Administrator],
            "creating a conversation",
        )?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        // A retry is answered before routing-svc is asked about the queue again.
        if let Some(response) = self.ctx.replay(&identity, METHOD, &rid).await? {
            return Ok(response);
        }

        let channel = channel_field(req.channel)?;
        let queue_id = uuid_field("queue_id", &req.queue_id)?;
        let contact = req.contact.unwrap_or_default();
        let contact_id = optional_uuid("contact.id", &contact.id)?;
        if contact
            .display_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(Error::invalid(
                "contact.display_name",
                "must not be blank; leave it unset when the channel gives no name",
            ));
        }
        let display_name = contact.display_name.unwrap_or_default();
        text_field("contact.display_name", &display_name, 0, 200)?;
        text_field("channel_address", &req.channel_address, 1, 500)?;
        if req.pre_chat_data.len() > MAX_PRE_CHAT_FIELDS {
            return Err(Error::invalid(
                "pre_chat_data",
                format!("must have at most {MAX_PRE_CHAT_FIELDS} fields"),
            ));
        }
        for (i, field) in req.pre_chat_data.iter().enumerate() {
            text_field(&format!("pre_chat_data[{i}].name"), &field.name, 1, 100)?;
            text_field(&format!("pre_chat_data[{i}].label"), &field.label, 0, 200)?;
            text_field(&format!("pre_chat_data[{i}].value"), &field.value, 0, 2000)?;
        }
        if req.bot_transcript.len() > MAX_TRANSCRIPT_LINES {
            return Err(Error::invalid(
                "bot_transcript",
                format!("must have at most {MAX_TRANSCRIPT_LINES} lines"),
            ));
        }
        let now = now_micros();
        let mut transcript = Vec::with_capacity(req.bot_transcript.len());
        for (i, line) in req.bot_transcript.iter().enumerate() {
            let sender =
                pb::SenderKind::try_from(line.sender).unwrap_or(pb::SenderKind::Unspecified);
            if !matches!(sender, pb::SenderKind::Customer | pb::SenderKind::Bot) {
                return Err(Error::invalid(
                    format!("bot_transcript[{i}].sender"),
                    "must be CUSTOMER or BOT",
                ));
            }
            text_field(
                &format!("bot_transcript[{i}].text"),
                &line.text,
                1,
                MAX_TEXT,
            )?;
            text_field(
                &format!("bot_transcript[{i}].sender_display_name"),
                &line.sender_display_name,
                0,
                200,
            )?;
            transcript.push(TranscriptLine {
                sender: sender as i32,
                sender_display_name: mask_pans(&line.sender_display_name).into_owned(),
                text: mask_pans(&line.text).into_owned(),
                create_time: match line.create_time.as_ref() {
                    None => now,
                    Some(ts) => fields::timestamp_micros(ts).map_err(|why| {
                        Error::invalid(format!("bot_transcript[{i}].create_time"), why)
                    })?,
                },
            });
        }
        if !req.first_message.is_empty() {
            text_field("first_message", &req.first_message, 1, MAX_TEXT)?;
        }

        // routing-svc first: a missing queue or a refused channel changes nothing here.
        let queue = self
            .ctx
            .routing
            .check_queue(&identity.tenant_id, &queue_id, channel)
            .await
            .map_err(|status| queue_error(&queue_id, status))?;

        let new = NewConversation {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: identity.tenant_id.clone(),
            channel,
            queue_id: queue_id.clone(),
            program_id: queue.program_id,
            contact_id,
            contact_display_name: mask_pans(&display_name).into_owned(),
            channel_address: mask_pans(&req.channel_address).into_owned(),
            pre_chat: req
                .pre_chat_data
                .iter()
                .map(|f| PreChatField {
                    name: mask_pans(&f.name).into_owned(),
                    label: mask_pans(&f.label).into_owned(),
                    value: mask_pans(&f.value).into_owned(),
                })
                .collect(),
            transcript,
            now,
        };

        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = tx.create_conversation(&new).await?;
        tx.event(event_by(&conv, pb::EventType::Created, &identity, now));
        tx.event(event_by(&conv, pb::EventType::Queued, &identity, now));
        if !req.first_message.is_empty() {
            let first = NewMessage {
                sender: pb::SenderKind::Customer as i32,
                sender_id: String::new(),
                sender_display_name: conv.contact.display_name.clone(),
                text: mask_pans(&req.first_message).into_owned(),
                internal: false,
            };
            post_message(&mut tx, &mut conv, first, "", now).await?;
        }
        let enqueue = rpb::EnqueueConversationRequest {
            tenant_id: conv.tenant_id.clone(),
            conversation_id: conv.id.clone(),
            queue_id: conv.queue_id.clone(),
            channel: conv.channel,
            customer_display_name: conv.contact.display_name.clone(),
            enqueue_key: uuid::Uuid::new_v4().to_string(),
            wait_start_time: Some(micros_to_timestamp(conv.create_time)),
            channel_address: conv.channel_address.clone(),
        };
        tx.add_command(
            CommandKind::Enqueue,
            &conv.tenant_id,
            &conv.id,
            enqueue.encode_to_vec(),
            now,
        )
        .await?;
        let response = pb::CreateConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(
            conversation_id = %conv.id,
            tenant_id = %conv.tenant_id,
            queue_id = %conv.queue_id,
            "conversation created"
        );
        Ok(response)
    }

    /// A conversation the caller may read, or NOT_FOUND.
    async fn visible(&self, identity: &Identity, conversation_id: &str) -> Result<Conversation> {
        self.ctx
            .store
            .conversation(&identity.tenant_id, conversation_id)
            .await?
            .filter(|c| c.visible_to(viewer(identity)))
            .ok_or_else(|| Error::conversation_not_found(conversation_id))
    }

    async fn get(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<pb::GetConversationResponse> {
        let identity = authorized(&request, &READER_ROLES, "reading conversations")?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let view = view_field(req.view, pb::ConversationView::Full)?;
        own_tenant(&identity, &req.tenant_id)?;
        let conv = self.visible(&identity, &id).await?;
        Ok(pb::GetConversationResponse {
            conversation: Some(convert::conversation(&conv, view)),
        })
    }

    async fn list(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<pb::ListConversationsResponse> {
        let identity = authorized(&request, &READER_ROLES, "listing conversations")?;
        let req = request.get_ref();
        let view = view_field(req.view, pb::ConversationView::Basic)?;
        own_tenant(&identity, &req.tenant_id)?;
        if req.states.len() > MAX_STATE_FILTER {
            return Err(Error::invalid(
                "states",
                format!("must have at most {MAX_STATE_FILTER} values"),
            ));
        }
        let mut states = Vec::with_capacity(req.states.len());
        for (i, state) in req.states.iter().enumerate() {
            if State::from_code(i64::from(*state)).is_none() {
                return Err(Error::invalid(
                    format!("states[{i}]"),
                    "is not a conversation state",
                ));
            }
            states.push(*state);
        }
        let limit = page_size(req.page_size)?;
        let query = ConversationQuery {
            tenant_id: identity.tenant_id.clone(),
            viewer_id: identity.principal_id.clone(),
            sees_all: viewer(&identity).sees_all,
            states,
            queue_id: optional_uuid("queue_id", &req.queue_id)?,
            owner_agent_id: optional_uuid("owner_agent_id", &req.owner_agent_id)?,
            before: token::decode_time_id(&req.page_token)?,
            limit: limit + 1,
            full: view == pb::ConversationView::Full,
        };
        let mut convs = self.ctx.store.list_conversations(&query).await?;
        let next_page_token = next_page(&mut convs, limit, |last| {
            token::encode(&[&last.create_time.to_string(), &last.id])
        });
        Ok(pb::ListConversationsResponse {
            conversations: convs
                .iter()
                .map(|c| convert::conversation(c, view))
                .collect(),
            next_page_token,
        })
    }

    async fn send(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<pb::SendMessageResponse> {
        const METHOD: &str = "ConversationService/SendMessage";
        let identity = caller(&request)?;
        let req = request.into_inner();
        let sender = pb::SenderKind::try_from(req.sender).unwrap_or(pb::SenderKind::Unspecified);
        let as_customer_side = identity.has_role(Role::Bot)
            && matches!(sender, pb::SenderKind::Customer | pb::SenderKind::Bot);
        if !as_customer_side {
            if !identity.has_any_role(&USER_ROLES) {
                if identity.has_role(Role::Bot) {
                    return Err(Error::invalid("sender", "must be CUSTOMER or BOT"));
                }
                require_any(
                    &identity,
                    &[Role::Agent, Role::Supervisor, Role::Bot],
                    "sending a message",
                )?;
            }
        } else if req.agents_only {
            return Err(Error::invalid(
                "agents_only",
                "only agents and supervisors write agents-only messages",
            ));
        }
        let rid = request_id(&req.request_id, &req)?;
        let conversation_id = uuid_field("conversation_id", &req.conversation_id)?;
        plain_text_only(&req)?;
        text_field("text", &req.text, 1, MAX_TEXT)?;

        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &conversation_id).await?;
        let now = now_micros();
        let new = if as_customer_side {
            check_customer_message(conv.state).map_err(|e| Error::refused(&conversation_id, e))?;
            let name = if sender == pb::SenderKind::Customer {
                conv.contact.display_name.clone()
            } else if identity.display_name.is_empty() {
                "Bot".to_owned()
            } else {
                mask_pans(&identity.display_name).into_owned()
            };
            NewMessage {
                sender: sender as i32,
                sender_id: String::new(),
                sender_display_name: name,
                text: mask_pans(&req.text).into_owned(),
                internal: false,
            }
        } else {
            let role = conv.role_of(&identity.principal_id);
            check_user_message(conv.state, role, req.agents_only)
                .map_err(|e| Error::refused(&conversation_id, e))?;
            let kind = if role == Some(ParticipantRole::Supervisor) {
                pb::SenderKind::Supervisor
            } else {
                pb::SenderKind::Agent
            };
            NewMessage {
                sender: kind as i32,
                sender_id: identity.principal_id.clone(),
                sender_display_name: mask_pans(&identity.display_name).into_owned(),
                text: mask_pans(&req.text).into_owned(),
                internal: req.agents_only,
            }
        };
        let message = post_message(&mut tx, &mut conv, new, actor(&identity), now).await?;
        let response = pb::SendMessageResponse {
            message: Some(convert::message(&message)),
        };
        tx.commit(&response).await?;
        Ok(response)
    }

    /// Whether the caller sees internal messages: agents and supervisors do, the customer's
    /// side (bots, connectors) does not.
    fn sees_internal(identity: &Identity) -> bool {
        identity.has_any_role(&USER_ROLES)
    }

    async fn messages_page(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<pb::ListMessagesResponse> {
        let identity = authorized(&request, &READER_ROLES, "reading messages")?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        own_tenant(&identity, &req.tenant_id)?;
        let limit = page_size(req.page_size)?;
        let after = token::decode_int(&req.page_token)?;
        self.visible(&identity, &id).await?;
        let mut messages = self
            .ctx
            .store
            .messages(&id, after, limit + 1, Self::sees_internal(&identity))
            .await?;
        let next_page_token =
            next_page(&mut messages, limit, |last| token::encode_int(last.ordinal));
        Ok(pb::ListMessagesResponse {
            messages: messages.iter().map(convert::message).collect(),
            next_page_token,
        })
    }

    async fn stream(
        &self,
        request: Request<pb::StreamConversationRequest>,
    ) -> Result<ConversationStream> {
        use pb::stream_conversation_request::Start;
        use pb::stream_conversation_response::Update;

        let identity = authorized(&request, &READER_ROLES, "streaming a conversation")?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        own_tenant(&identity, &req.tenant_id)?;
        let conv = self.visible(&identity, &id).await?;
        let mut cursor = match req.start {
            None => conv.last_event_sequence,
            Some(Start::FromBeginning(_)) => 0,
            Some(Start::AfterSequence(n)) if n < 0 => {
                return Err(Error::invalid("after_sequence", "must not be negative"));
            }
            Some(Start::AfterSequence(n)) if n > conv.last_event_sequence => {
                return Err(Error::invalid(
                    "after_sequence",
                    format!(
                        "{n} is beyond the conversation's last event {}",
                        conv.last_event_sequence
                    ),
                ));
            }
            Some(Start::AfterSequence(n)) => n,
        };
        // The replay ends at the conversation's last event as the stream starts.
        let snapshot_end = conv.last_event_sequence;
        let first = convert::conversation(&conv, pb::ConversationView::Basic);
        let store = self.ctx.store.clone();
        let sees_internal = Self::sees_internal(&identity);
        let heartbeat = self.ctx.heartbeat;
        let mut waiter = Waiter::new(store.commits(), self.ctx.event_poll, self.ctx.stop.clone());
        let stream = async_stream::try_stream! {
            yield pb::StreamConversationResponse {
                update: Some(Update::Conversation(first)),
                message: None,
            };
            let mut replaying = true;
            let mut last_sent = tokio::time::Instant::now();
            loop {
                let events = store
                    .conversation_events(&id, cursor, STREAM_BATCH)
                    .await
                    .map_err(Status::from)?;
                let full = events.len() as i64 == STREAM_BATCH;
                for event in events {
                    if replaying && event.conversation_sequence > snapshot_end {
                        replaying = false;
                        yield snapshot_end_message();
                    }
                    cursor = event.conversation_sequence;
                    let mut message = None;
                    if event.kind == event_kind(pb::EventType::MessageAdded) {
                        let stored = store.message(&event.message_id).await.map_err(Status::from)?;
                        match stored {
                            Some(stored) if stored.internal && !sees_internal => continue,
                            Some(stored) => message = Some(convert::message(&stored)),
                            None => {}
                        }
                    }
                    last_sent = tokio::time::Instant::now();
                    yield pb::StreamConversationResponse {
                        update: Some(Update::Event(convert::event(&event))),
                        message,
                    };
                }
                if replaying && !full {
                    replaying = false;
                    last_sent = tokio::time::Instant::now();
                    yield snapshot_end_message();
                }
                if waiter.stopping() {
                    break;
                }
                if full {
                    continue;
                }
                match waiter.wait_until(last_sent + heartbeat).await {
                    Wake::Changed => {}
                    Wake::Quiet => {
                        last_sent = tokio::time::Instant::now();
                        yield pb::StreamConversationResponse {
                            update: Some(Update::Heartbeat(heartbeat_now())),
                            message: None,
                        };
                    }
                    Wake::Stopping => break,
                }
            }
        };
        Ok(Box::pin(stream))
    }

    async fn hold(
        &self,
        request: Request<pb::SetWaitingRequest>,
    ) -> Result<pb::SetWaitingResponse> {
        const METHOD: &str = "ConversationService/SetWaiting";
        let identity = authorized(&request, &USER_ROLES, "putting a conversation on hold")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        text_field("reason", &req.reason, 0, 200)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let conv = owner_transition(
            &mut tx,
            &identity,
            &id,
            Action::SetWaiting,
            pb::EventType::Waiting,
            mask_pans(&req.reason).into_owned(),
        )
        .await?;
        let response = pb::SetWaitingResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, "conversation waiting");
        Ok(response)
    }

    async fn resume(
        &self,
        request: Request<pb::ResumeConversationRequest>,
    ) -> Result<pb::ResumeConversationResponse> {
        const METHOD: &str = "ConversationService/ResumeConversation";
        let identity = authorized(&request, &USER_ROLES, "resuming a conversation")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let conv = owner_transition(
            &mut tx,
            &identity,
            &id,
            Action::Resume,
            pb::EventType::Resumed,
            String::new(),
        )
        .await?;
        let response = pb::ResumeConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, "conversation resumed");
        Ok(response)
    }

    async fn end(
        &self,
        request: Request<pb::EndConversationRequest>,
    ) -> Result<pb::EndConversationResponse> {
        const METHOD: &str = "ConversationService/EndConversation";
        let identity = authorized(&request, &USER_ROLES, "ending a conversation")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = owner_transition(
            &mut tx,
            &identity,
            &id,
            Action::End,
            pb::EventType::Ended,
            String::new(),
        )
        .await?;
        let now = conv.update_time;
        let name = if conv.owner_display_name.is_empty() {
            mask_pans(&identity.display_name).into_owned()
        } else {
            conv.owner_display_name.clone()
        };
        let notice = system_message(format!("{name} left the conversation"));
        post_message(&mut tx, &mut conv, notice, "", now).await?;
        let response = pb::EndConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, agent_id = %identity.principal_id, "conversation ended");
        Ok(response)
    }

    async fn wrap_up(
        &self,
        request: Request<pb::SubmitWrapUpRequest>,
    ) -> Result<pb::SubmitWrapUpResponse> {
        const METHOD: &str = "ConversationService/SubmitWrapUp";
        let identity = authorized(&request, &USER_ROLES, "submitting wrap-up")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        if req.wrap_up_reason_ids.is_empty() {
            return Err(Error::invalid(
                "wrap_up_reason_ids",
                "at least one reason is required",
            ));
        }
        if req.wrap_up_reason_ids.len() > MAX_WRAP_UP_REASONS {
            return Err(Error::invalid(
                "wrap_up_reason_ids",
                format!("must have at most {MAX_WRAP_UP_REASONS} reasons"),
            ));
        }
        let mut reason_ids: Vec<String> = Vec::new();
        for (i, raw) in req.wrap_up_reason_ids.iter().enumerate() {
            let reason_id = uuid_field(&format!("wrap_up_reason_ids[{i}]"), raw)?;
            if !reason_ids.contains(&reason_id) {
                reason_ids.push(reason_id);
            }
        }
        text_field("note", &req.note, 0, 2000)?;
        let segment_id = optional_uuid("segment_id", &req.segment_id)?;

        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let (mut conv, next) =
            load_for_owner(&mut tx, &identity, &id, Action::SubmitWrapUp).await?;
        if let Some(segment_id) = segment_id
            && segment_id != conv.current_segment_id
        {
            // Only a transfer leaves a caller with an earlier segment to wrap up.
            return Err(Error::NotServedYet(format!(
                "segment_id {segment_id}: wrapping up an earlier segment after a transfer is \
                 part of the API contract but not served yet"
            )));
        }
        let reasons = tx.reasons_by_ids(&identity.tenant_id, &reason_ids).await?;
        for (i, reason_id) in reason_ids.iter().enumerate() {
            let field = format!("wrap_up_reason_ids[{i}]");
            let Some(reason) = reasons.iter().find(|r| &r.id == reason_id) else {
                return Err(Error::invalid(
                    field,
                    format!("unknown wrap-up reason {reason_id}"),
                ));
            };
            if !reason.active {
                return Err(Error::invalid(
                    field,
                    format!("wrap-up reason {reason_id} is inactive"),
                ));
            }
            if !reason.offered_in(&conv.queue_id) {
                return Err(Error::invalid(
                    field,
                    format!(
                        "wrap-up reason {reason_id} is not offered in queue {}",
                        conv.queue_id
                    ),
                ));
            }
        }
        let now = now_micros();
        let agent_id = conv.owner_agent_id.clone();
        conv.close_time = Some(now);
        conv.close_reason = pb::CloseReason::WrapUpSubmitted as i32;
        conv.wrap_up_reason_ids = reason_ids.clone();
        tx.end_segment(
            &conv.current_segment_id,
            "closed",
            &reason_ids,
            &mask_pans(&req.note),
            now,
        )
        .await?;
        save_state(&mut tx, &mut conv, next, now).await?;
        let mut submitted = event_by(&conv, pb::EventType::WrapUpSubmitted, &identity, now);
        submitted.wrap_up_reason_ids = reason_ids.clone();
        tx.event(submitted);
        let mut closed = event_by(&conv, pb::EventType::Closed, &identity, now);
        closed.wrap_up_reason_ids = reason_ids;
        closed.detail = convert::close_code(pb::CloseReason::WrapUpSubmitted).to_owned();
        closed.reopen_window_secs = identity.reopen_window_secs;
        tx.event(closed);
        let release = rpb::ReleaseCapacityRequest {
            tenant_id: conv.tenant_id.clone(),
            conversation_id: conv.id.clone(),
            agent_id: agent_id.clone(),
        };
        tx.add_command(
            CommandKind::ReleaseCapacity,
            &conv.tenant_id,
            &conv.id,
            release.encode_to_vec(),
            now,
        )
        .await?;
        let response = pb::SubmitWrapUpResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, agent_id = %agent_id, "conversation closed after wrap-up");
        Ok(response)
    }

    /// A contact with its identities, for supervisors and administrators. Agents reach a
    /// contact through the conversations they handle, which comes with contact history.
    async fn contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<pb::GetContactResponse> {
        let identity = authorized(
            &request,
            &[Role::Supervisor, Role::Administrator],
            "reading a contact",
        )?;
        let req = request.get_ref();
        let id = uuid_field("contact_id", &req.contact_id)?;
        own_tenant(&identity, &req.tenant_id)?;
        let contact = self
            .ctx
            .store
            .contact(&identity.tenant_id, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("contact {id} not found")))?;
        Ok(pb::GetContactResponse {
            contact: Some(convert::contact(&contact, true)),
        })
    }

    async fn segments_page(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<pb::ListSegmentsResponse> {
        let identity = authorized(&request, &READER_ROLES, "reading segments")?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        own_tenant(&identity, &req.tenant_id)?;
        let limit = page_size(req.page_size)?;
        let after = token::decode_int(&req.page_token)?;
        self.visible(&identity, &id).await?;
        let mut segments = self.ctx.store.segments(&id, after, limit + 1).await?;
        let next_page_token =
            next_page(&mut segments, limit, |last| token::encode_int(last.ordinal));
        Ok(pb::ListSegmentsResponse {
            segments: segments.iter().map(convert::segment).collect(),
            next_page_token,
        })
    }

    async fn list_events(
        &self,
        request: Request<pb::ListConversationEventsRequest>,
    ) -> Result<pb::ListConversationEventsResponse> {
        let identity = authorized(&request, &READER_ROLES, "reading conversation events")?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        own_tenant(&identity, &req.tenant_id)?;
        let limit = page_size(req.page_size)?;
        let after = token::decode_int(&req.page_token)?;
        self.visible(&identity, &id).await?;
        let mut events = self
            .ctx
            .store
            .conversation_events(&id, after, limit + 1)
            .await?;
        let next_page_token = next_page(&mut events, limit, |last| {
            token::encode_int(last.conversation_sequence)
        });
        Ok(pb::ListConversationEventsResponse {
            events: events.iter().map(convert::event).collect(),
            next_page_token,
        })
    }
}

/// Refuses content beyond plain text: another format or an attachment is not silently
/// dropped or shown as plain text.
fn plain_text_only(req: &pb::SendMessageRequest) -> Result<()> {
    match pb::MessageFormat::try_from(req.format) {
        Ok(pb::MessageFormat::Unspecified | pb::MessageFormat::PlainText) => {}
        Ok(other) => {
            return Err(Error::invalid(
                "format",
                format!(
                    "{} is not supported: messages are plain text",
                    other.as_str_name()
                ),
            ));
        }
        Err(_) => return Err(Error::invalid("format", "is not a known format")),
    }
    if !req.attachments.is_empty() {
        return Err(Error::invalid(
            "attachments",
            "attachments are not supported: messages are plain text",
        ));
    }
    Ok(())
}

/// A notice from Switchboard itself that the customer sees.
pub(super) fn system_message(text: String) -> NewMessage {
    NewMessage {
        sender: pb::SenderKind::System as i32,
        sender_id: String::new(),
        sender_display_name: "System".to_owned(),
        text,
        internal: false,
    }
}

fn snapshot_end_message() -> pb::StreamConversationResponse {
    pb::StreamConversationResponse {
        update: Some(pb::stream_conversation_response::Update::SnapshotEnd(
            SnapshotEnd {},
        )),
        message: None,
    }
}

type ConversationStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamConversationResponse, Status>> + Send>>;

fn respond<T>(result: Result<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl ConversationService for ConversationApi {
    async fn create_conversation(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Result<Response<pb::CreateConversationResponse>, Status> {
        respond(self.create(request).await)
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::GetConversationResponse>, Status> {
        respond(self.get(request).await)
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        respond(self.list(request).await)
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        respond(self.send(request).await)
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        respond(self.messages_page(request).await)
    }

    type StreamConversationStream = ConversationStream;

    async fn stream_conversation(
        &self,
        request: Request<pb::StreamConversationRequest>,
    ) -> Result<Response<Self::StreamConversationStream>, Status> {
        respond(self.stream(request).await)
    }

    async fn set_waiting(
        &self,
        request: Request<pb::SetWaitingRequest>,
    ) -> Result<Response<pb::SetWaitingResponse>, Status> {
        respond(self.hold(request).await)
    }

    async fn resume_conversation(
        &self,
        request: Request<pb::ResumeConversationRequest>,
    ) -> Result<Response<pb::ResumeConversationResponse>, Status> {
        respond(self.resume(request).await)
    }

    async fn end_conversation(
        &self,
        request: Request<pb::EndConversationRequest>,
    ) -> Result<Response<pb::EndConversationResponse>, Status> {
        respond(self.end(request).await)
    }

    async fn submit_wrap_up(
        &self,
        request: Request<pb::SubmitWrapUpRequest>,
    ) -> Result<Response<pb::SubmitWrapUpResponse>, Status> {
        respond(self.wrap_up(request).await)
    }

    async fn transfer_conversation(
        &self,
        _: Request<pb::TransferConversationRequest>,
    ) -> Result<Response<pb::TransferConversationResponse>, Status> {
        not_served(SERVICE, "TransferConversation")
    }

    async fn invite_participant(
        &self,
        _: Request<pb::InviteParticipantRequest>,
    ) -> Result<Response<pb::InviteParticipantResponse>, Status> {
        not_served(SERVICE, "InviteParticipant")
    }

    async fn cancel_invitation(
        &self,
        _: Request<pb::CancelInvitationRequest>,
    ) -> Result<Response<pb::CancelInvitationResponse>, Status> {
        not_served(SERVICE, "CancelInvitation")
    }

    async fn leave_conversation(
        &self,
        _: Request<pb::LeaveConversationRequest>,
    ) -> Result<Response<pb::LeaveConversationResponse>, Status> {
        not_served(SERVICE, "LeaveConversation")
    }

    async fn end_conference(
        &self,
        _: Request<pb::EndConferenceRequest>,
    ) -> Result<Response<pb::EndConferenceResponse>, Status> {
        not_served(SERVICE, "EndConference")
    }

    async fn unassign_conversation(
        &self,
        _: Request<pb::UnassignConversationRequest>,
    ) -> Result<Response<pb::UnassignConversationResponse>, Status> {
        not_served(SERVICE, "UnassignConversation")
    }

    async fn move_conversation_to_queue(
        &self,
        _: Request<pb::MoveConversationToQueueRequest>,
    ) -> Result<Response<pb::MoveConversationToQueueResponse>, Status> {
        not_served(SERVICE, "MoveConversationToQueue")
    }

    async fn set_conversation_status(
        &self,
        _: Request<pb::SetConversationStatusRequest>,
    ) -> Result<Response<pb::SetConversationStatusResponse>, Status> {
        not_served(SERVICE, "SetConversationStatus")
    }

    async fn escalate_conversation(
        &self,
        _: Request<pb::EscalateConversationRequest>,
    ) -> Result<Response<pb::EscalateConversationResponse>, Status> {
        not_served(SERVICE, "EscalateConversation")
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::GetContactResponse>, Status> {
        respond(self.contact(request).await)
    }

    async fn list_contact_history(
        &self,
        _: Request<pb::ListContactHistoryRequest>,
    ) -> Result<Response<pb::ListContactHistoryResponse>, Status> {
        not_served(SERVICE, "ListContactHistory")
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        respond(self.segments_page(request).await)
    }

    async fn list_transfers(
        &self,
        _: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        not_served(SERVICE, "ListTransfers")
    }

    async fn list_conversation_events(
        &self,
        request: Request<pb::ListConversationEventsRequest>,
    ) -> Result<Response<pb::ListConversationEventsResponse>, Status> {
        respond(self.list_events(request).await)
    }

    async fn search_canned_responses(
        &self,
        _: Request<pb::SearchCannedResponsesRequest>,
    ) -> Result<Response<pb::SearchCannedResponsesResponse>, Status> {
        not_served(SERVICE, "SearchCannedResponses")
    }
}
