//! `switchboard.conversation.v1.ConversationService`: the service, the rules its RPCs
//! share (loading for an owner, events, messages), and the RPCs by capability in
//! `lifecycle` (create, hold, end, wrap-up), `messages` (send, list, stream), `reopen` (a
//! customer writing after close), `moves` (unassign, move to queue, escalate, leave),
//! `reads` (get, list, segments, events), `history` (contacts and their conversations),
//! `status` (status labels), `phrases` (canned responses), `transfers` and `conference`
//! (consult and conference invitations).

pub(in crate::api) mod conference;
mod history;
mod lifecycle;
mod messages;
pub(in crate::api) mod moves;
mod phrases;
mod reads;
mod reopen;
mod status;
pub(in crate::api) mod transfers;

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
    Begun, Caller, READER_ROLES, Shared, authorized, caller, convert, next_page, optional_uuid,
    page_size, request_id, require_any, text_field, token, uuid_field, view_field, viewer,
};
use crate::domain::access::{ParticipantRole, check_customer_message, check_user_message};
use crate::domain::state::{Action, State, transition};
use crate::error::{Error, Result};
use crate::store::{
    CommandKind, Conversation, ConversationQuery, Event, Message, Mutation, NewConversation,
    NewMessage, PreChatField, TranscriptLine,
};

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
    identity: &Caller,
    conversation_id: &str,
) -> Result<Conversation> {
    m.conversation_for_update(&identity.tenant_id, conversation_id)
        .await?
        .filter(|c| c.visible_to(viewer(identity)))
        .ok_or_else(|| Error::conversation_not_found(conversation_id))
}

/// Like [`load_visible`] without the contact's identities, pre-chat fields and transcript,
/// for changes whose answer does not show them.
pub(super) async fn load_visible_basic(
    m: &mut Mutation,
    identity: &Caller,
    conversation_id: &str,
) -> Result<Conversation> {
    m.conversation_basic_for_update(&identity.tenant_id, conversation_id)
        .await?
        .filter(|c| c.visible_to(viewer(identity)))
        .ok_or_else(|| Error::conversation_not_found(conversation_id))
}

/// Loads a conversation for an owner-only action and checks that `action` is allowed;
/// returns it with the state the action leads to.
async fn load_for_owner(
    m: &mut Mutation,
    identity: &Caller,
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

/// The QUEUE_CHANGED event of a user's move (or a supervisor's assignment) of `conv`, now
/// in its new queue, out of `previous_queue`.
pub(super) fn queue_changed_by(
    conv: &Conversation,
    identity: &Identity,
    previous_queue: String,
    now: i64,
) -> Event {
    let mut changed = event_by(conv, pb::EventType::QueueChanged, identity, now);
    changed.previous_queue_id = previous_queue;
    changed.detail = convert::queue_change_code(pb::QueueChangeReason::Moved).to_owned();
    changed
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
    identity: &Caller,
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

    type StreamConversationStream = messages::ConversationStream;

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
        request: Request<pb::TransferConversationRequest>,
    ) -> Result<Response<pb::TransferConversationResponse>, Status> {
        respond(self.transfer(request).await)
    }

    async fn invite_participant(
        &self,
        request: Request<pb::InviteParticipantRequest>,
    ) -> Result<Response<pb::InviteParticipantResponse>, Status> {
        respond(self.invite(request).await)
    }

    async fn cancel_invitation(
        &self,
        request: Request<pb::CancelInvitationRequest>,
    ) -> Result<Response<pb::CancelInvitationResponse>, Status> {
        respond(ConversationApi::cancel_invitation(self, request).await)
    }

    async fn leave_conversation(
        &self,
        request: Request<pb::LeaveConversationRequest>,
    ) -> Result<Response<pb::LeaveConversationResponse>, Status> {
        respond(self.leave(request).await)
    }

    async fn end_conference(
        &self,
        request: Request<pb::EndConferenceRequest>,
    ) -> Result<Response<pb::EndConferenceResponse>, Status> {
        respond(ConversationApi::end_conference(self, request).await)
    }

    async fn unassign_conversation(
        &self,
        request: Request<pb::UnassignConversationRequest>,
    ) -> Result<Response<pb::UnassignConversationResponse>, Status> {
        respond(self.unassign(request).await)
    }

    async fn move_conversation_to_queue(
        &self,
        request: Request<pb::MoveConversationToQueueRequest>,
    ) -> Result<Response<pb::MoveConversationToQueueResponse>, Status> {
        respond(self.move_to_queue(request).await)
    }

    async fn set_conversation_status(
        &self,
        request: Request<pb::SetConversationStatusRequest>,
    ) -> Result<Response<pb::SetConversationStatusResponse>, Status> {
        respond(self.set_status(request).await)
    }

    async fn escalate_conversation(
        &self,
        request: Request<pb::EscalateConversationRequest>,
    ) -> Result<Response<pb::EscalateConversationResponse>, Status> {
        respond(self.escalate(request).await)
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::GetContactResponse>, Status> {
        respond(self.contact(request).await)
    }

    async fn list_contact_history(
        &self,
        request: Request<pb::ListContactHistoryRequest>,
    ) -> Result<Response<pb::ListContactHistoryResponse>, Status> {
        respond(self.contact_history(request).await)
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        respond(self.segments_page(request).await)
    }

    async fn list_transfers(
        &self,
        request: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        respond(self.transfers_page(request).await)
    }

    async fn list_conversation_events(
        &self,
        request: Request<pb::ListConversationEventsRequest>,
    ) -> Result<Response<pb::ListConversationEventsResponse>, Status> {
        respond(self.list_events(request).await)
    }

    async fn search_canned_responses(
        &self,
        request: Request<pb::SearchCannedResponsesRequest>,
    ) -> Result<Response<pb::SearchCannedResponsesResponse>, Status> {
        respond(self.search_phrases(request).await)
    }
}
