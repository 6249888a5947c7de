//! What the store reads and writes, in plain Rust types (no protobuf, no SQL).

use crate::domain::access::{Exposure, ParticipantRole, Viewer, can_view};
use crate::domain::state::State;

/// The customer on the other side of conversations, reachable at one or more channel
/// identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// UUID; every identity of the contact leads to it.
    pub id: String,
    /// Name shown to agents (card numbers masked); empty when the channel gives none.
    pub display_name: String,
    /// Every (channel, address) of the contact, oldest first; loaded with a conversation's
    /// children and by `Store::contact`.
    pub identities: Vec<ChannelIdentity>,
}

/// One address at which a contact is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelIdentity {
    /// `Channel` number.
    pub channel: i32,
    /// Address on the channel.
    pub address: String,
}

/// One pre-chat form field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreChatField {
    /// Field key.
    pub name: String,
    /// Label shown to the customer.
    pub label: String,
    /// What the customer entered (card numbers masked).
    pub value: String,
}

/// One line of the bot's conversation before hand-off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscriptLine {
    /// `SenderKind` number: CUSTOMER or BOT.
    pub sender: i32,
    /// Text (card numbers masked).
    pub text: String,
    /// When it was written, microseconds since the epoch.
    pub create_time: i64,
    /// Name the writer showed (the bot's name); may be empty.
    pub sender_display_name: String,
}

/// A user taking or having taken part in a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// Row id.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// Name shown to others.
    pub display_name: String,
    /// Role in the conversation.
    pub role: ParticipantRole,
    /// When the user joined.
    pub join_time: i64,
    /// When the user left; `None` while present.
    pub leave_time: Option<i64>,
    /// The invitation that brought the user in; empty for owners and supervisors.
    pub invitation_id: String,
}

/// A conversation with everything shown with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// UUID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// `Channel` number.
    pub channel: i32,
    /// Lifecycle state.
    pub state: State,
    /// Queue it is in or was last routed through.
    pub queue_id: String,
    /// Program of that queue.
    pub program_id: String,
    /// The customer.
    pub contact: Contact,
    /// Current owner; empty when unassigned.
    pub owner_agent_id: String,
    /// Current owner's display name.
    pub owner_display_name: String,
    /// Whoever owned it last (kept after unassignment), for `previous_agent_id`.
    pub last_owner_agent_id: String,
    /// Status label id; empty for none.
    pub status_label_id: String,
    /// `Mode` number.
    pub mode: i32,
    /// Wrap-up reasons chosen when it was closed.
    pub wrap_up_reason_ids: Vec<String>,
    /// Segments so far.
    pub segment_count: i64,
    /// Messages so far (the ordinal of the last one).
    pub message_count: i64,
    /// The segment under way or last ended; empty before the first assignment.
    pub current_segment_id: String,
    /// Creation time.
    pub create_time: i64,
    /// Last change.
    pub update_time: i64,
    /// When it was closed.
    pub close_time: Option<i64>,
    /// Pre-chat form fields, in order.
    pub pre_chat: Vec<PreChatField>,
    /// Bot transcript, in order.
    pub transcript: Vec<TranscriptLine>,
    /// Participants, by join time.
    pub participants: Vec<Participant>,
    /// Invitations to consult or conference, oldest first.
    pub invitations: Vec<super::Invitation>,
    /// The customer's address on this conversation's channel.
    pub channel_address: String,
    /// `CloseReason` number; 0 while not CLOSED.
    pub close_reason: i32,
    /// The sequence of the conversation's latest committed event, as loaded; a mutation
    /// numbers its events after it.
    pub last_event_sequence: i64,
    /// The contact's closed conversation this one follows (the customer wrote again after
    /// its reopen window); empty otherwise.
    pub previous_conversation_id: String,
    /// How many invitations it ever had: their rows are read only when there are some.
    pub invitation_count: i64,
}

impl Conversation {
    /// The owner, if any.
    pub fn owner(&self) -> Option<&str> {
        (!self.owner_agent_id.is_empty()).then_some(self.owner_agent_id.as_str())
    }

    /// The current role of `user_id`, if present in the conversation.
    pub fn role_of(&self, user_id: &str) -> Option<ParticipantRole> {
        self.participants
            .iter()
            .rev()
            .find(|p| p.user_id == user_id && p.leave_time.is_none())
            .map(|p| p.role)
    }

    /// Whether `viewer` may see this conversation (product rule 1).
    pub fn visible_to(&self, viewer: Viewer<'_>) -> bool {
        let present: Vec<&str> = self
            .participants
            .iter()
            .filter(|p| p.leave_time.is_none())
            .map(|p| p.user_id.as_str())
            .collect();
        can_view(
            viewer,
            Exposure {
                state: self.state,
                owner: self.owner(),
                present: &present,
                queue_id: &self.queue_id,
            },
        )
    }
}

/// What a new conversation is created with.
#[derive(Clone, Debug)]
pub struct NewConversation {
    /// UUID chosen by the caller of the store.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// `Channel` number.
    pub channel: i32,
    /// Queue to wait in.
    pub queue_id: String,
    /// Program of the queue.
    pub program_id: String,
    /// An existing contact of the tenant to attach the address to; `None` to find the
    /// contact by its identity or create it.
    pub contact_id: Option<String>,
    /// Customer name (masked); empty for none (an existing name is then kept).
    pub contact_display_name: String,
    /// Customer address on the channel.
    pub channel_address: String,
    /// Pre-chat fields (masked).
    pub pre_chat: Vec<PreChatField>,
    /// Bot transcript (masked).
    pub transcript: Vec<TranscriptLine>,
    /// Creation time.
    pub now: i64,
}

/// A stretch of a conversation owned by one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// UUID.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// 1, 2, 3…
    pub ordinal: i64,
    /// Owning agent.
    pub agent_id: String,
    /// Queue the conversation was in.
    pub queue_id: String,
    /// "offer", "claim", "assign", "transfer".
    pub start_reason: String,
    /// "closed", …; empty while ongoing.
    pub end_reason: String,
    /// Start.
    pub start_time: i64,
    /// End; `None` while ongoing.
    pub end_time: Option<i64>,
    /// Wrap-up reasons chosen for it.
    pub wrap_up_reason_ids: Vec<String>,
}

/// A message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// UUID.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// Position in the conversation, from 1.
    pub ordinal: i64,
    /// `SenderKind` number.
    pub sender: i32,
    /// User id of an agent or supervisor sender; empty otherwise.
    pub sender_id: String,
    /// Name shown to the other side.
    pub sender_display_name: String,
    /// Text (card numbers masked).
    pub text: String,
    /// Whether only agents and supervisors see it.
    pub internal: bool,
    /// When it was stored.
    pub create_time: i64,
    /// The per-conversation sequence of the event that added it.
    pub sequence: i64,
}

/// What a new message is made of.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// `SenderKind` number.
    pub sender: i32,
    /// User id of an agent or supervisor sender; empty otherwise.
    pub sender_id: String,
    /// Name shown to the other side.
    pub sender_display_name: String,
    /// Text, already masked.
    pub text: String,
    /// Whether only agents and supervisors see it.
    pub internal: bool,
}

/// An event of the log, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// Position in the service-wide log; 0 until committed.
    pub sequence: i64,
    /// Position in the conversation's history (1, 2, 3…), given by `Mutation::event`.
    pub conversation_sequence: i64,
    /// The conversation's last sequence when the event was built; not stored.
    pub base_sequence: i64,
    /// The tenant's reopen window in seconds, for CLOSED.
    pub reopen_window_secs: i64,
    /// UUID.
    pub id: String,
    /// Tenant of the conversation.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// `EventType` number.
    pub kind: i32,
    /// When it happened.
    pub occur_time: i64,
    /// User who caused it; empty for the customer or the system.
    pub actor_id: String,
    /// Owner after the change.
    pub agent_id: String,
    /// Owner before the change, for assignments.
    pub previous_agent_id: String,
    /// Queue after the change.
    pub queue_id: String,
    /// Program of the queue.
    pub program_id: String,
    /// `Channel` number.
    pub channel: i32,
    /// Segment concerned.
    pub segment_id: String,
    /// `Conversation.State` number after the change.
    pub state: i32,
    /// Wrap-up reasons, for WRAP_UP_SUBMITTED and CLOSED.
    pub wrap_up_reason_ids: Vec<String>,
    /// The message, for MESSAGE_ADDED.
    pub message_id: String,
    /// The transfer, for transfers.
    pub transfer_id: String,
    /// How an assignment or a close happened; for STATUS_CHANGED, the label after it.
    pub detail: String,
    /// When the conversation was created.
    pub conversation_create_time: i64,
    /// The queue before the change, for QUEUE_CHANGED.
    pub previous_queue_id: String,
    /// The participant who joined or left, for participant events.
    pub participant_user_id: String,
    /// That participant's `ParticipantRole` number; 0 for none.
    pub participant_role: i32,
    /// The `Mode` number after an escalation; 0 for other events.
    pub mode: i32,
    /// Units over capacity after a supervisor's assignment with override.
    pub units_over_capacity: i32,
    /// How the owner's segment ended (a stored end code), for events that end one.
    pub segment_end: String,
    /// The `AnswerOutcome` number of a transfer, for TRANSFER_RESOLVED; 0 otherwise.
    pub answer_outcome: i32,
    /// The `TransferFallback` number applied, for TRANSFER_RESOLVED; 0 otherwise.
    pub transfer_fallback: i32,
    /// The invitation, for PARTICIPANT_INVITED and INVITATION_ENDED.
    pub invitation_id: String,
    /// The agent a transfer is to, for TRANSFER_REQUESTED; empty for a queue.
    pub transfer_to_agent_id: String,
    /// The queue a transfer is to, for TRANSFER_REQUESTED.
    pub transfer_to_queue_id: String,
    /// routing-svc's offer of a transfer to an agent, for TRANSFER_REQUESTED.
    pub offer_id: String,
    /// Whether a transfer sends the conversation back to an agent who transferred it away.
    pub ping_pong: bool,
}

impl Event {
    /// An event of `kind` about `conv` as it is now (after the change), caused by `actor_id`.
    pub fn about(conv: &Conversation, kind: i32, actor_id: &str, now: i64) -> Event {
        Event {
            sequence: 0,
            conversation_sequence: 0,
            base_sequence: conv.last_event_sequence,
            reopen_window_secs: 0,
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: conv.tenant_id.clone(),
            conversation_id: conv.id.clone(),
            kind,
            occur_time: now,
            actor_id: actor_id.to_owned(),
            agent_id: conv.owner_agent_id.clone(),
            previous_agent_id: String::new(),
            queue_id: conv.queue_id.clone(),
            program_id: conv.program_id.clone(),
            channel: conv.channel,
            segment_id: conv.current_segment_id.clone(),
            state: conv.state.code(),
            wrap_up_reason_ids: Vec::new(),
            message_id: String::new(),
            transfer_id: String::new(),
            detail: String::new(),
            conversation_create_time: conv.create_time,
            previous_queue_id: String::new(),
            participant_user_id: String::new(),
            participant_role: 0,
            mode: 0,
            units_over_capacity: 0,
            segment_end: String::new(),
            answer_outcome: 0,
            transfer_fallback: 0,
            invitation_id: String::new(),
            transfer_to_agent_id: String::new(),
            transfer_to_queue_id: String::new(),
            offer_id: String::new(),
            ping_pong: false,
        }
    }
}

/// A wrap-up reason or disposition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrapUpReason {
    /// UUID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Queues offering it, sorted; empty for every queue.
    pub queue_ids: Vec<String>,
    /// Text shown to agents.
    pub display_name: String,
    /// Whether it marks the segment as transferred.
    pub marks_transferred: bool,
    /// Whether agents can still choose it.
    pub active: bool,
    /// Stable code for exports; empty for none.
    pub code: String,
}

impl WrapUpReason {
    /// Whether the reason may be chosen in `queue_id`.
    pub fn offered_in(&self, queue_id: &str) -> bool {
        self.queue_ids.is_empty() || self.queue_ids.iter().any(|q| q == queue_id)
    }
}

/// What kind of call to routing-svc an outbox command is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// `EnqueueConversation`.
    Enqueue,
    /// `ReleaseCapacity`.
    ReleaseCapacity,
    /// `CancelWaiting`.
    CancelWaiting,
    /// `WithdrawOffer`: one invitation's offer.
    WithdrawOffer,
}

impl CommandKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Enqueue => "enqueue",
            CommandKind::ReleaseCapacity => "release_capacity",
            CommandKind::CancelWaiting => "cancel_waiting",
            CommandKind::WithdrawOffer => "withdraw_offer",
        }
    }

    /// The kind of a stored name.
    pub fn parse(s: &str) -> Option<CommandKind> {
        match s {
            "enqueue" => Some(CommandKind::Enqueue),
            "release_capacity" => Some(CommandKind::ReleaseCapacity),
            "cancel_waiting" => Some(CommandKind::CancelWaiting),
            "withdraw_offer" => Some(CommandKind::WithdrawOffer),
            _ => None,
        }
    }
}

/// Where an outbox command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandState {
    /// Not yet accepted by routing-svc; retried when due.
    Pending,
    /// Accepted.
    Done,
    /// Refused for good (for example the queue was deleted); needs a person.
    Failed,
}

impl CommandState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Pending => "pending",
            CommandState::Done => "done",
            CommandState::Failed => "failed",
        }
    }

    /// The state of a stored name.
    pub fn parse(s: &str) -> Option<CommandState> {
        match s {
            "pending" => Some(CommandState::Pending),
            "done" => Some(CommandState::Done),
            "failed" => Some(CommandState::Failed),
            _ => None,
        }
    }
}

/// A call to routing-svc decided in a transaction, to be sent until accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// UUID.
    pub id: String,
    /// Which call.
    pub kind: CommandKind,
    /// Tenant of the conversation.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The encoded protobuf request.
    pub payload: Vec<u8>,
    /// Where it stands.
    pub state: CommandState,
    /// Attempts so far.
    pub attempts: i64,
    /// When it is due next.
    pub next_attempt_time: i64,
    /// The last failure, for operators.
    pub last_error: String,
    /// Its place among the commands of its conversation, which are sent in this order.
    pub conversation_seq: i64,
    /// Until when an attempt holds it (microseconds); 0 when none does.
    pub lease_until: i64,
    /// When it was written (microseconds).
    pub create_time: i64,
}
