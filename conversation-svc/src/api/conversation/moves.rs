//! Moves that take a conversation out of its owner's hands or change where it waits:
//! unassign, move to another queue, escalate, leave. The pieces every such move shares
//! (release the owner, queue again, leave the queue) are used by the supervisor's assign and
//! force close too, so that routing-svc hears of every move the same way: through the
//! command outbox, written in the move's own transaction.

use super::*;
use crate::domain::supervision::{self, Mode, Refusal};

/// Whether the caller oversees every conversation of the tenant (supervisor or
/// administrator).
pub(in crate::api) fn oversees(identity: &Identity) -> bool {
    identity.has_any_role(&[Role::Supervisor, Role::Administrator])
}

/// FAILED_PRECONDITION for a refused move of conversation `id`.
pub(in crate::api) fn refused(id: &str, why: Refusal) -> Error {
    Error::wrong_state(id, why)
}

/// A display name for notices: the stored one, or `fallback` when it is blank.
fn shown_name(name: &str, fallback: &str) -> String {
    if name.trim().is_empty() {
        fallback.to_owned()
    } else {
        name.to_owned()
    }
}

/// Ends the owner's part: its segment ends with `end` (a stored end code), it leaves the
/// conversation, the customer is told, and its capacity is released through the outbox.
/// Leaves the conversation unowned in its current state (the caller sets the next one) and
/// returns who owned it; nothing happens when nobody did.
pub(in crate::api) async fn release_owner(
    m: &mut Mutation,
    conv: &mut Conversation,
    end: &str,
    now: i64,
) -> Result<String> {
    let owner = conv.owner_agent_id.clone();
    if owner.is_empty() {
        return Ok(owner);
    }
    // A transfer still waiting for its agent's answer goes with the owner, and so do the
    // owner's invitations, consultants and conference agents.
    super::transfers::withdraw_pending(m, conv, "", now).await?;
    super::conference::dismiss_helpers(m, conv, "", now).await?;
    m.end_segment(&conv.current_segment_id, end, &[], "", now)
        .await?;
    m.leave_participant(conv, &owner, now).await?;
    let name = shown_name(&conv.owner_display_name, "The agent");
    conv.owner_agent_id.clear();
    conv.owner_display_name.clear();
    release_capacity(m, conv, &owner, now).await?;
    let notice = system_message(format!("{name} left the conversation"));
    post_message(m, conv, notice, "", now).await?;
    Ok(owner)
}

/// Returns an owned conversation to its queue: the owner's segment ends with `end`, the
/// owner is released, the conversation is OPEN and waits in its queue again, with
/// UNASSIGNED and QUEUED events by `actor_id`. Returns who owned it.
pub(in crate::api) async fn return_to_queue(
    m: &mut Mutation,
    conv: &mut Conversation,
    end: &str,
    actor_id: &str,
    now: i64,
) -> Result<String> {
    let next =
        transition(conv.state, Action::Unassign).map_err(|e| Error::wrong_state(&conv.id, e))?;
    let segment_id = conv.current_segment_id.clone();
    let owner = release_owner(m, conv, end, now).await?;
    save_state(m, conv, next, now).await?;
    let mut unassigned = Event::about(conv, event_kind(pb::EventType::Unassigned), actor_id, now);
    unassigned.previous_agent_id = owner.clone();
    unassigned.segment_id = segment_id;
    unassigned.segment_end = end.to_owned();
    m.event(unassigned);
    m.event(Event::about(
        conv,
        event_kind(pb::EventType::Queued),
        actor_id,
        now,
    ));
    requeue(m, conv, now, now).await?;
    Ok(owner)
}

/// Asks routing-svc, through the outbox, to free what `agent_id` holds for `conv`.
pub(in crate::api) async fn release_capacity(
    m: &mut Mutation,
    conv: &Conversation,
    agent_id: &str,
    now: i64,
) -> Result<()> {
    let release = rpb::ReleaseCapacityRequest {
        tenant_id: conv.tenant_id.clone(),
        conversation_id: conv.id.clone(),
        agent_id: agent_id.to_owned(),
    };
    m.add_command(
        CommandKind::ReleaseCapacity,
        &conv.tenant_id,
        &conv.id,
        release.encode_to_vec(),
        now,
    )
    .await?;
    Ok(())
}

/// Asks routing-svc, through the outbox, to put `conv` in line in its queue (again), the
/// customer waiting since `wait_start`.
pub(in crate::api) async fn requeue(
    m: &mut Mutation,
    conv: &Conversation,
    wait_start: i64,
    now: i64,
) -> Result<()> {
    let enqueue = rpb::EnqueueConversationRequest {
        tenant_id: conv.tenant_id.clone(),
        conversation_id: conv.id.clone(),
        queue_id: conv.queue_id.clone(),
        channel: conv.channel,
        customer_display_name: conv.contact.display_name.clone(),
        enqueue_key: uuid::Uuid::new_v4().to_string(),
        wait_start_time: Some(micros_to_timestamp(wait_start)),
        channel_address: conv.channel_address.clone(),
    };
    m.add_command(
        CommandKind::Enqueue,
        &conv.tenant_id,
        &conv.id,
        enqueue.encode_to_vec(),
        now,
    )
    .await?;
    // An offer routing-svc made under an earlier enqueue can no longer be applied.
    m.set_enqueue_key(&conv.id, &enqueue.enqueue_key).await
}

/// Asks routing-svc, through the outbox, to take `conv` out of its queue and withdraw any
/// pending offer of it.
pub(in crate::api) async fn leave_queue(
    m: &mut Mutation,
    conv: &Conversation,
    now: i64,
) -> Result<()> {
    let cancel = rpb::CancelWaitingRequest {
        tenant_id: conv.tenant_id.clone(),
        conversation_id: conv.id.clone(),
    };
    m.add_command(
        CommandKind::CancelWaiting,
        &conv.tenant_id,
        &conv.id,
        cancel.encode_to_vec(),
        now,
    )
    .await?;
    // Nor can any offer made before it leaves the queue, even one routing-svc makes before
    // it hears of this.
    m.set_enqueue_key(&conv.id, "").await
}

/// Sends routing-svc one command in a transaction of its own, through the outbox: the undo
/// of a call made before a change that then did not happen (units reserved, an offer
/// made). A failure is logged with `what`, not returned: the caller is already answering
/// with the error that made the undo necessary.
pub(in crate::api) async fn command_alone(
    ctx: &super::super::Context,
    kind: CommandKind,
    tenant_id: &str,
    conversation_id: &str,
    payload: Vec<u8>,
    what: &str,
) {
    let queued = async {
        let mut m = ctx.store.begin().await?;
        m.add_command(kind, tenant_id, conversation_id, payload, now_micros())
            .await?;
        let committed = m.commit(None, &()).await?;
        ctx.dispatch(&committed);
        Ok::<_, Error>(())
    };
    if let Err(err) = queued.await {
        warn!(conversation_id, error = %err, "{what}");
    }
}

/// The queue `queue_id` as routing-svc knows it, checked to be the tenant's and to accept
/// `channel`; nothing is written before this answers.
pub(in crate::api) async fn target_queue(
    ctx: &super::super::Context,
    tenant_id: &str,
    queue_id: &str,
    channel: i32,
) -> Result<switchboard_proto::routing::v1::Queue> {
    ctx.routing
        .check_queue(tenant_id, queue_id, channel)
        .await
        .map_err(|status| queue_error(queue_id, status))
}

impl ConversationApi {
    pub(super) async fn unassign(
        &self,
        request: Request<pb::UnassignConversationRequest>,
    ) -> Result<pb::UnassignConversationResponse> {
        const METHOD: &str = "ConversationService/UnassignConversation";
        let caller = self
            .ctx
            .caller(authorized(
                &request,
                &USER_ROLES,
                "unassigning a conversation",
            )?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        // A retry is answered as the first time, before the directory is asked again.
        if let Some(response) = self.ctx.replay(&caller, METHOD, &rid).await? {
            return Ok(response);
        }
        // A user of a parent tenant acts in the child tenant it names; its request_id stays
        // recorded under its own tenant and principal, wherever it acts.
        let identity = self.ctx.acting_in(caller.clone(), &req.tenant_id).await?;
        let mut tx = match self.ctx.begin_mutation(&caller, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        supervision::check_releaser(
            "unassign",
            conv.owner(),
            &identity.principal_id,
            oversees(&identity),
        )
        .map_err(|why| refused(&id, why))?;
        let now = now_micros();
        let owner =
            return_to_queue(&mut tx, &mut conv, "unassigned", actor(&identity), now).await?;
        let response = pb::UnassignConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(
            conversation_id = %id,
            tenant_id = %conv.tenant_id,
            agent_id = %owner,
            by = %identity.principal_id,
            by_tenant = %caller.tenant_id,
            "conversation unassigned"
        );
        Ok(response)
    }

    pub(super) async fn move_to_queue(
        &self,
        request: Request<pb::MoveConversationToQueueRequest>,
    ) -> Result<pb::MoveConversationToQueueResponse> {
        const METHOD: &str = "ConversationService/MoveConversationToQueue";
        let identity = self
            .ctx
            .caller(authorized(&request, &USER_ROLES, "moving a conversation")?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let queue_id = uuid_field("queue_id", &req.queue_id)?;
        if let Some(response) = self.ctx.replay(&identity, METHOD, &rid).await? {
            return Ok(response);
        }
        // The channel decides which queues qualify: read it before asking routing-svc.
        let current = self
            .ctx
            .store
            .conversation(&identity.tenant_id, &id)
            .await?
            .filter(|c| c.visible_to(viewer(&identity)))
            .ok_or_else(|| Error::conversation_not_found(&id))?;
        let queue =
            target_queue(&self.ctx, &identity.tenant_id, &queue_id, current.channel).await?;

        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        let next = transition(conv.state, Action::Move).map_err(|e| Error::wrong_state(&id, e))?;
        if conv.owner().is_some() {
            supervision::check_releaser(
                "move",
                conv.owner(),
                &identity.principal_id,
                oversees(&identity),
            )
            .map_err(|why| refused(&id, why))?;
        }
        if conv.queue_id == queue_id {
            return Err(Error::wrong_state(
                &id,
                format!("the conversation is already in queue {queue_id}"),
            ));
        }
        let now = now_micros();
        let segment_id = conv.current_segment_id.clone();
        let previous_queue = conv.queue_id.clone();
        let owner = if conv.owner().is_some() {
            release_owner(&mut tx, &mut conv, "moved", now).await?
        } else {
            leave_queue(&mut tx, &conv, now).await?;
            String::new()
        };
        conv.queue_id = queue_id.clone();
        conv.program_id = queue.program_id;
        save_state(&mut tx, &mut conv, next, now).await?;
        let mut changed = queue_changed_by(&conv, &identity, previous_queue.clone(), now);
        if !owner.is_empty() {
            changed.previous_agent_id = owner;
            changed.segment_id = segment_id;
            changed.segment_end = "moved".to_owned();
        }
        tx.event(changed);
        tx.event(event_by(&conv, pb::EventType::Queued, &identity, now));
        requeue(&mut tx, &conv, now, now).await?;
        let response = pb::MoveConversationToQueueResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(
            conversation_id = %id,
            from_queue = %previous_queue,
            queue_id = %queue_id,
            "conversation moved to another queue"
        );
        Ok(response)
    }

    pub(super) async fn escalate(
        &self,
        request: Request<pb::EscalateConversationRequest>,
    ) -> Result<pb::EscalateConversationResponse> {
        const METHOD: &str = "ConversationService/EscalateConversation";
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &USER_ROLES,
                "escalating a conversation",
            )?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let mode = match pb::Mode::try_from(req.mode) {
            Ok(mode @ (pb::Mode::Voice | pb::Mode::Video)) => mode,
            _ => return Err(Error::invalid("mode", "must be VOICE or VIDEO")),
        };
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        if conv.owner() != Some(identity.principal_id.as_str()) {
            return Err(Error::wrong_state(
                &id,
                "caller is not the owner; only the owner can escalate",
            ));
        }
        let current = Mode::from_code(conv.mode).unwrap_or(Mode::Messaging);
        supervision::check_escalate(conv.state, current).map_err(|why| refused(&id, why))?;
        let now = now_micros();
        conv.mode = mode as i32;
        let state = conv.state;
        save_state(&mut tx, &mut conv, state, now).await?;
        let mut escalated = event_by(&conv, pb::EventType::Escalated, &identity, now);
        escalated.mode = mode as i32;
        tx.event(escalated);
        let call = if mode == pb::Mode::Video {
            "a video call"
        } else {
            "a voice call"
        };
        let name = shown_name(&conv.owner_display_name, "The agent");
        let notice = system_message(format!("{name} started {call}"));
        post_message(&mut tx, &mut conv, notice, "", now).await?;
        let response = pb::EscalateConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, mode = ?mode, "conversation escalated");
        Ok(response)
    }

    pub(super) async fn leave(
        &self,
        request: Request<pb::LeaveConversationRequest>,
    ) -> Result<pb::LeaveConversationResponse> {
        const METHOD: &str = "ConversationService/LeaveConversation";
        let identity = self
            .ctx
            .caller(authorized(&request, &USER_ROLES, "leaving a conversation")?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        let Some(role) = conv.role_of(&identity.principal_id) else {
            return Err(Error::wrong_state(
                &id,
                "caller does not take part in the conversation",
            ));
        };
        if role == ParticipantRole::Owner {
            return Err(Error::wrong_state(
                &id,
                "the owner cannot leave; end, unassign or transfer the conversation instead",
            ));
        }
        let now = now_micros();
        let name = conv
            .participants
            .iter()
            .rev()
            .find(|p| p.user_id == identity.principal_id)
            .map(|p| shown_name(&p.display_name, "A participant"))
            .unwrap_or_default();
        tx.leave_participant(&mut conv, &identity.principal_id, now)
            .await?;
        if role == ParticipantRole::Conference {
            // A conference agent held capacity for the conversation; a consultant did not.
            release_capacity(&mut tx, &conv, &identity.principal_id, now).await?;
        }
        let state = conv.state;
        save_state(&mut tx, &mut conv, state, now).await?;
        let mut left = event_by(&conv, pb::EventType::ParticipantLeft, &identity, now);
        left.participant_user_id = identity.principal_id.clone();
        left.participant_role = role.code();
        tx.event(left);
        if matches!(
            role,
            ParticipantRole::Conference | ParticipantRole::Supervisor
        ) {
            let notice = system_message(format!("{name} left the conversation"));
            post_message(&mut tx, &mut conv, notice, "", now).await?;
        }
        let response = pb::LeaveConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, user_id = %identity.principal_id, %role, "participant left");
        Ok(response)
    }
}
