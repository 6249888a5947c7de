//! A customer who writes to a CLOSED conversation. Within the tenant's reopen window the
//! conversation reopens: OPEN again and queued in its last queue. After the window (or with
//! no window) the message starts a new conversation for the same contact, channel and
//! address in that queue, which names the closed one as its previous conversation; later
//! messages to the closed one land there too. Either way the message is stored, and its
//! `conversation_id` says where it landed.

use super::*;
use crate::domain::reopen::{Return, customer_returns};

/// Most follow-ups walked from the conversation a message names to the newest one.
const MAX_FOLLOW_UPS: usize = 50;

/// Most times the last queue is checked when concurrent changes move the message's target.
const MAX_ATTEMPTS: usize = 3;

/// The last queue of a closed conversation, as routing-svc confirmed it.
struct CheckedQueue {
    queue_id: String,
    channel: i32,
    program_id: String,
}

impl CheckedQueue {
    fn is_for(&self, conv: &Conversation) -> bool {
        self.queue_id == conv.queue_id && self.channel == conv.channel
    }
}

/// A customer message on `conv` with `text` (masked).
fn customer_message(conv: &Conversation, text: &str) -> NewMessage {
    NewMessage {
        sender: pb::SenderKind::Customer as i32,
        sender_id: String::new(),
        sender_display_name: conv.contact.display_name.clone(),
        text: mask_pans(text).into_owned(),
        internal: false,
    }
}

/// Maps routing-svc's refusal of a closed conversation's last queue: the customer's message
/// can neither reopen the conversation nor start a new one there.
fn last_queue_error(conv: &Conversation, status: Status) -> Error {
    let why = match status.code() {
        tonic::Code::NotFound => "no longer exists".to_owned(),
        tonic::Code::FailedPrecondition => status.message().to_owned(),
        _ => return queue_error(&conv.queue_id, status),
    };
    Error::wrong_state(
        &conv.id,
        format!(
            "its last queue {} {why}: a customer message cannot reopen it or start a new \
             conversation there",
            conv.queue_id
        ),
    )
}

/// The newest conversation in the line of follow-ups that starts at `conv` (itself when it
/// has none).
async fn newest_follow_up(
    m: &mut Mutation,
    identity: &Caller,
    mut conv: Conversation,
) -> Result<Conversation> {
    for _ in 0..MAX_FOLLOW_UPS {
        if conv.state != State::Closed {
            return Ok(conv);
        }
        let Some(next) = m.follow_up_of(&identity.tenant_id, &conv.id).await? else {
            return Ok(conv);
        };
        conv = load_visible_basic(m, identity, &next).await?;
    }
    Err(Error::wrong_state(
        &conv.id,
        format!("more than {MAX_FOLLOW_UPS} follow-up conversations; write to the newest one"),
    ))
}

/// Reopens the CLOSED `conv` in its last queue (of `program_id`): OPEN, nobody owns it or
/// takes part in it, no close or wrap-up, and a REOPENED event naming the last owner.
async fn reopen(
    m: &mut Mutation,
    identity: &Identity,
    conv: &mut Conversation,
    program_id: &str,
    now: i64,
) -> Result<()> {
    let last_owner = std::mem::take(&mut conv.owner_agent_id);
    m.release_participants(conv, now).await?;
    conv.owner_display_name.clear();
    conv.close_time = None;
    conv.close_reason = pb::CloseReason::Unspecified as i32;
    conv.wrap_up_reason_ids.clear();
    program_id.clone_into(&mut conv.program_id);
    save_state(m, conv, State::Open, now).await?;
    let mut reopened = event_by(conv, pb::EventType::Reopened, identity, now);
    reopened.previous_agent_id = last_owner;
    m.event(reopened);
    Ok(())
}

/// Starts the conversation that follows the CLOSED `closed`: same contact, channel and
/// address, in its last queue (of `program_id`), with CREATED and QUEUED events.
async fn follow_up(
    m: &mut Mutation,
    identity: &Identity,
    closed: &Conversation,
    program_id: &str,
    now: i64,
) -> Result<Conversation> {
    let new = NewConversation {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: closed.tenant_id.clone(),
        channel: closed.channel,
        queue_id: closed.queue_id.clone(),
        program_id: program_id.to_owned(),
        contact_id: Some(closed.contact.id.clone()),
        contact_display_name: String::new(),
        channel_address: closed.channel_address.clone(),
        pre_chat: Vec::new(),
        transcript: Vec::new(),
        now,
    };
    let mut conv = m.create_conversation(&new).await?;
    m.link_follow_up(&mut conv, &closed.id).await?;
    m.event(event_by(&conv, pb::EventType::Created, identity, now));
    m.event(event_by(&conv, pb::EventType::Queued, identity, now));
    Ok(conv)
}

impl ConversationApi {
    /// Stores a customer message sent to the CLOSED conversation `conversation_id` under
    /// `method` and `rid`: in the newest follow-up if it is not closed, else by reopening
    /// the newest closed one within the reopen window or by starting its follow-up. The
    /// last queue is checked with routing-svc before anything is written.
    pub(super) async fn customer_writes_after_close(
        &self,
        identity: &Caller,
        method: &str,
        rid: &super::super::RequestId,
        conversation_id: &str,
        text: &str,
    ) -> Result<pb::SendMessageResponse> {
        let mut checked: Option<CheckedQueue> = None;
        for _ in 0..MAX_ATTEMPTS {
            let mut tx = match self.ctx.begin_mutation(identity, method, rid).await? {
                Begun::Replayed(response) => return Ok(response),
                Begun::Fresh(tx) => tx,
            };
            let named = load_visible_basic(&mut tx, identity, conversation_id).await?;
            let mut target = newest_follow_up(&mut tx, identity, named).await?;
            let now = now_micros();
            if target.state != State::Closed {
                let new = customer_message(&target, text);
                let message = post_message(&mut tx, &mut target, new, "", now).await?;
                let response = pb::SendMessageResponse {
                    message: Some(convert::message(&message)),
                };
                tx.commit(&response).await?;
                return Ok(response);
            }
            let Some(queue) = checked.as_ref().filter(|q| q.is_for(&target)) else {
                // routing-svc is asked outside the transaction; the next attempt starts over.
                drop(tx);
                let queue = self
                    .ctx
                    .routing
                    .check_queue(&identity.tenant_id, &target.queue_id, target.channel)
                    .await
                    .map_err(|status| last_queue_error(&target, status))?;
                checked = Some(CheckedQueue {
                    queue_id: target.queue_id.clone(),
                    channel: target.channel,
                    program_id: queue.program_id,
                });
                continue;
            };
            let returned = customer_returns(target.close_time, now, identity.reopen_window_secs);
            let mut conv = match returned {
                Return::Reopen => {
                    reopen(&mut tx, identity, &mut target, &queue.program_id, now).await?;
                    target
                }
                Return::FollowUp => {
                    follow_up(&mut tx, identity, &target, &queue.program_id, now).await?
                }
            };
            let new = customer_message(&conv, text);
            let message = post_message(&mut tx, &mut conv, new, "", now).await?;
            super::moves::requeue(&mut tx, &conv, now, now).await?;
            let response = pb::SendMessageResponse {
                message: Some(convert::message(&message)),
            };
            tx.commit(&response).await?;
            match returned {
                Return::Reopen => info!(
                    conversation_id = %conv.id,
                    queue_id = %conv.queue_id,
                    "conversation reopened by the customer"
                ),
                Return::FollowUp => info!(
                    conversation_id = %conv.id,
                    previous_conversation_id = %conv.previous_conversation_id,
                    queue_id = %conv.queue_id,
                    "customer wrote after the reopen window: follow-up conversation created"
                ),
            }
            return Ok(response);
        }
        Err(Error::Conflict(format!(
            "conversation {conversation_id} changed concurrently; retry"
        )))
    }
}
