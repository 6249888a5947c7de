//! Transfers (product rules 7-9): by the owner (TransferConversation) or a supervisor
//! (SupervisorService.TransferConversation, in `supervision`), and the transfer ledger of a
//! conversation (ListTransfers).
//!
//! A transfer to a queue of the same program puts the conversation back in line there:
//! the sender's segment ends TRANSFERRED (with its wrap-up reasons when given), the sender
//! is released, and the transfer is ACCEPTED at once.
//!
//! A transfer to an agent is an offer routing-svc makes to that agent (who must be
//! Available with free capacity) and the agent answers on its offer stream. Meanwhile the
//! sender keeps the conversation. On accept (ApplyAssignment with source TRANSFER) the
//! receiver owns it with a new segment and the sender stays as a consultant; when the
//! agent rejects, does not answer or the offer is withdrawn (ResolveOffer), the target
//! queue's fallback applies: the sender keeps it, it waits in the queue, or it closes.

use super::moves::{refused, release_owner, requeue, target_queue};
use super::*;
use crate::domain::supervision::{self, Mode};
use crate::domain::transfer;
use crate::store::Transfer;
use switchboard_proto::common::v1::AnswerOutcome;

/// Most characters of a transfer note.
const MAX_NOTE: usize = 1000;

/// A transfer as asked, validated.
pub(in crate::api) struct TransferAsk {
    /// The conversation.
    pub conversation_id: String,
    /// Target agent, if any.
    pub agent_id: Option<String>,
    /// Target queue; for an agent, the queue the agent receives it in (unset: the
    /// conversation's own).
    pub queue_id: Option<String>,
    /// Note for the receiver, masked.
    pub note: String,
    /// Wrap-up reasons for the sender's segment.
    pub wrap_up_reason_ids: Vec<String>,
}

impl TransferAsk {
    /// Validates a transfer request's fields.
    pub(in crate::api) fn new(
        conversation_id: &str,
        target_agent_id: &str,
        target_queue_id: &str,
        note: &str,
        wrap_up_reason_ids: &[String],
    ) -> Result<TransferAsk> {
        let conversation_id = uuid_field("conversation_id", conversation_id)?;
        let agent_id = optional_uuid("target_agent_id", target_agent_id)?;
        let queue_id = optional_uuid("target_queue_id", target_queue_id)?;
        text_field("note", note, 0, MAX_NOTE)?;
        let wrap_up_reason_ids =
            lifecycle::reason_ids("wrap_up_reason_ids", wrap_up_reason_ids, false)?;
        if agent_id.is_none() && queue_id.is_none() {
            return Err(Error::invalid(
                "target_queue_id",
                "set target_queue_id or target_agent_id",
            ));
        }
        Ok(TransferAsk {
            conversation_id,
            agent_id,
            queue_id,
            note: mask_pans(note).into_owned(),
            wrap_up_reason_ids,
        })
    }
}

/// The conversation as the caller sees it now and the transfer's queue, checked by
/// routing-svc to be the tenant's and to accept the conversation's channel; nothing is
/// written before it answers.
pub(in crate::api) async fn checked_target(
    ctx: &super::super::Context,
    identity: &Caller,
    ask: &TransferAsk,
) -> Result<(Conversation, switchboard_proto::routing::v1::Queue)> {
    let current = ctx
        .store
        .conversation(&identity.tenant_id, &ask.conversation_id)
        .await?
        .filter(|c| c.visible_to(viewer(identity)))
        .ok_or_else(|| Error::conversation_not_found(&ask.conversation_id))?;
    let queue_id = ask.queue_id.as_deref().unwrap_or(&current.queue_id);
    let queue = target_queue(ctx, &identity.tenant_id, queue_id, current.channel).await?;
    Ok((current, queue))
}

/// routing-svc's refusal of an offer to `agent_id` (named by the request's `field`), made
/// for a transfer or an invitation (`what`), as this service's error.
pub(in crate::api) fn offer_error(
    agent_id: &str,
    field: &str,
    what: &str,
    status: tonic::Status,
) -> Error {
    match status.code() {
        tonic::Code::NotFound => Error::NotFound(format!("agent {agent_id} not found")),
        tonic::Code::FailedPrecondition => Error::WrongState(status.message().to_owned()),
        tonic::Code::ResourceExhausted => Error::CapacityFull(status.message().to_owned()),
        tonic::Code::Aborted => Error::Conflict(status.message().to_owned()),
        tonic::Code::InvalidArgument => Error::invalid(field, status.message()),
        code => {
            warn!(
                agent_id,
                ?code,
                message = status.message(),
                "routing-svc OfferToAgent failed"
            );
            Error::Unavailable(format!(
                "routing-svc is unavailable: cannot offer the {what}"
            ))
        }
    }
}

/// Checks that `identity` may transfer `conv` to `queue` now (owner unless
/// `by_supervisor`; rule 7; no transfer already waiting for an answer: `pending`, the
/// conversation's).
fn check_transferable(
    identity: &Identity,
    conv: &Conversation,
    queue: &switchboard_proto::routing::v1::Queue,
    by_supervisor: bool,
    pending: Option<&Transfer>,
) -> Result<()> {
    let id = conv.id.as_str();
    if !by_supervisor && conv.owner() != Some(identity.principal_id.as_str()) {
        return Err(Error::wrong_state(
            id,
            "caller is not the owner; only the owner (or a supervisor) can transfer",
        ));
    }
    let mode = Mode::from_code(conv.mode).unwrap_or(Mode::Messaging);
    supervision::check_transfer(
        conv.state,
        mode,
        &conv.program_id,
        &queue.id,
        &queue.program_id,
    )
    .map_err(|why| refused(id, why))?;
    if let Some(invitation) = conv.invitations.iter().find(|i| i.pending()) {
        return Err(Error::wrong_state(
            id,
            format!(
                "invitation {} of agent {} is waiting for an answer; cancel it first",
                invitation.id, invitation.agent_id
            ),
        ));
    }
    if let Some(pending) = pending {
        return Err(Error::wrong_state(
            id,
            format!(
                "transfer {} is waiting for agent {}'s answer",
                pending.id, pending.to_agent_id
            ),
        ));
    }
    Ok(())
}

/// The id of the transfer a request creates: the same for every retry of it, so that
/// routing-svc makes one offer however often the request is retried.
fn transfer_id(identity: &Identity, method: &str, request_id: &str) -> String {
    let name = format!(
        "{}/{}/{method}/{request_id}",
        identity.tenant_id, identity.principal_id
    );
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// What routing-svc answered to a transfer offer: the transfer's id, the offer's id and the
/// queue's `TransferFallback` number.
pub(in crate::api) struct Offered {
    transfer_id: String,
    offer_id: String,
    fallback: i32,
}

/// Offers `conv` to `agent_id` through routing-svc, outside any transaction (the offer is
/// idempotent by the transfer's id, derived from the request).
pub(in crate::api) async fn offer_transfer(
    ctx: &super::super::Context,
    identity: &Identity,
    method: &str,
    request_id: &str,
    conv: &Conversation,
    ask: &TransferAsk,
    queue: &switchboard_proto::routing::v1::Queue,
) -> Result<Offered> {
    let agent_id = ask.agent_id.as_deref().unwrap_or_default();
    let note = ask.note.as_str();
    if conv.owner() == Some(agent_id) {
        return Err(Error::wrong_state(
            &conv.id,
            format!("agent {agent_id} already owns the conversation"),
        ));
    }
    let transfer_id = transfer_id(identity, method, request_id);
    let answer = ctx
        .routing
        .offer_to_agent(rpb::OfferToAgentRequest {
            tenant_id: conv.tenant_id.clone(),
            conversation_id: conv.id.clone(),
            agent_id: agent_id.to_owned(),
            queue_id: queue.id.clone(),
            channel: conv.channel,
            kind: switchboard_proto::routing::v1::OfferKind::Transfer as i32,
            reference_id: transfer_id.clone(),
            sender_id: identity.principal_id.clone(),
            sender_display_name: mask_pans(&identity.display_name).into_owned(),
            note: note.to_owned(),
            customer_display_name: conv.contact.display_name.clone(),
            channel_address: conv.channel_address.clone(),
            wait_start_time: Some(micros_to_timestamp(conv.create_time)),
        })
        .await
        .map_err(|status| offer_error(agent_id, "target_agent_id", "transfer", status))?;
    Ok(Offered {
        transfer_id,
        offer_id: answer.offer.map(|o| o.id).unwrap_or_default(),
        fallback: answer.transfer_fallback,
    })
}

/// Records a transfer to an agent, PENDING until the agent answers routing-svc's offer;
/// the sender keeps the conversation meanwhile.
pub(in crate::api) async fn transfer_to_agent(
    m: &mut Mutation,
    identity: &Caller,
    ask: &TransferAsk,
    agent_id: &str,
    queue: &switchboard_proto::routing::v1::Queue,
    offered: Offered,
    by_supervisor: bool,
) -> Result<pb::Transfer> {
    let id = ask.conversation_id.as_str();
    let mut conv = load_visible(m, identity, id).await?;
    let pending = m.pending_transfer(id).await?;
    check_transferable(identity, &conv, queue, by_supervisor, pending.as_ref())?;
    if conv.owner() == Some(agent_id) {
        return Err(Error::wrong_state(
            id,
            format!("agent {agent_id} already owns the conversation"),
        ));
    }
    if !ask.wrap_up_reason_ids.is_empty() {
        lifecycle::check_reasons(
            m,
            &identity.tenant_id,
            "wrap_up_reason_ids",
            &ask.wrap_up_reason_ids,
            &conv.queue_id,
        )
        .await?;
    }
    let now = now_micros();
    let ping_pong = m.transferred_away_by(id, agent_id).await?;
    let mut transfer = Transfer {
        id: offered.transfer_id,
        tenant_id: conv.tenant_id.clone(),
        conversation_id: conv.id.clone(),
        ordinal: 0,
        from_user_id: identity.principal_id.clone(),
        from_agent_id: conv.owner_agent_id.clone(),
        from_segment_id: conv.current_segment_id.clone(),
        by_supervisor,
        to_agent_id: agent_id.to_owned(),
        to_queue_id: queue.id.clone(),
        outcome: AnswerOutcome::Pending as i32,
        fallback_applied: 0,
        offer_id: offered.offer_id,
        reject_reason: String::new(),
        note: ask.note.clone(),
        ping_pong,
        request_time: now,
        resolve_time: None,
        fallback: offered.fallback,
    };
    m.insert_transfer(&mut transfer).await?;
    if !ask.wrap_up_reason_ids.is_empty() {
        // Recorded on the sender's segment now; it ends when the transfer is taken.
        m.wrap_up_segment(&conv.current_segment_id, &ask.wrap_up_reason_ids, "")
            .await?;
        let sender = conv.owner_agent_id.clone();
        m.event(segment_wrapped_up(
            &conv,
            identity,
            (&conv.current_segment_id, &sender),
            &transfer.id,
            &ask.wrap_up_reason_ids,
            now,
        ));
    }
    let state = conv.state;
    save_state(m, &mut conv, state, now).await?;
    let mut requested = event_by(&conv, pb::EventType::TransferRequested, identity, now);
    requested.transfer_id = transfer.id.clone();
    requested.previous_agent_id = conv.owner_agent_id.clone();
    requested.transfer_to_agent_id = transfer.to_agent_id.clone();
    requested.transfer_to_queue_id = transfer.to_queue_id.clone();
    requested.offer_id = transfer.offer_id.clone();
    requested.ping_pong = transfer.ping_pong;
    m.event(requested);
    Ok(convert::transfer(&transfer))
}

/// Names on a TRANSFER_RESOLVED event the queue the transfer takes the conversation from and
/// the one it takes it to, so that reports count transfers in and out of queues from the
/// event alone.
fn queues_of(resolved: &mut Event, from_queue_id: &str, to_queue_id: &str) {
    from_queue_id.clone_into(&mut resolved.previous_queue_id);
    to_queue_id.clone_into(&mut resolved.transfer_to_queue_id);
}

/// The WRAP_UP_SUBMITTED event of the sender's segment `(segment_id, agent_id)`, wrapped
/// up with transfer `transfer_id`: the reasons (dispositions) are part of the log like any
/// other wrap-up, and the transfer named tells reports they are a sender's reasons.
fn segment_wrapped_up(
    conv: &Conversation,
    identity: &Caller,
    (segment_id, agent_id): (&str, &str),
    transfer_id: &str,
    reason_ids: &[String],
    now: i64,
) -> Event {
    let mut submitted = event_by(conv, pb::EventType::WrapUpSubmitted, identity, now);
    submitted.segment_id = segment_id.to_owned();
    submitted.agent_id = agent_id.to_owned();
    submitted.transfer_id = transfer_id.to_owned();
    submitted.wrap_up_reason_ids = reason_ids.to_vec();
    submitted
}

/// Withdraws the conversation's transfer still waiting for an answer, if any, because the
/// conversation goes another way (closed, unassigned, moved, ended): WITHDRAWN, and its
/// offer withdrawn in routing-svc through the outbox.
pub(in crate::api) async fn withdraw_pending(
    m: &mut Mutation,
    conv: &Conversation,
    actor_id: &str,
    now: i64,
) -> Result<()> {
    let Some(mut transfer) = m.pending_transfer(&conv.id).await? else {
        return Ok(());
    };
    transfer.outcome = AnswerOutcome::Withdrawn as i32;
    if m.resolve_transfer(&transfer, now).await? {
        let mut resolved =
            Event::about(conv, pb::EventType::TransferResolved as i32, actor_id, now);
        resolved.transfer_id = transfer.id.clone();
        resolved.answer_outcome = AnswerOutcome::Withdrawn as i32;
        queues_of(&mut resolved, &conv.queue_id, &transfer.to_queue_id);
        m.event(resolved);
        super::moves::leave_queue(m, conv, now).await?;
    }
    Ok(())
}

/// Applies a transfer to a queue in `m`: rule checks, the sender's segment ends, the
/// conversation waits in `queue`, the transfer is recorded ACCEPTED with its events. Only
/// the owner may ask unless `by_supervisor`.
pub(in crate::api) async fn transfer_to_queue(
    m: &mut Mutation,
    identity: &Caller,
    ask: &TransferAsk,
    queue: switchboard_proto::routing::v1::Queue,
    by_supervisor: bool,
) -> Result<pb::Transfer> {
    let id = ask.conversation_id.as_str();
    let mut conv = load_visible(m, identity, id).await?;
    let pending = m.pending_transfer(id).await?;
    check_transferable(identity, &conv, &queue, by_supervisor, pending.as_ref())?;
    let next =
        transition(conv.state, Action::TransferToQueue).map_err(|e| Error::wrong_state(id, e))?;
    if !ask.wrap_up_reason_ids.is_empty() {
        lifecycle::check_reasons(
            m,
            &identity.tenant_id,
            "wrap_up_reason_ids",
            &ask.wrap_up_reason_ids,
            &conv.queue_id,
        )
        .await?;
    }
    let now = now_micros();
    let transfer_id = uuid::Uuid::new_v4().to_string();
    let segment_id = conv.current_segment_id.clone();
    let sender = release_owner(m, &mut conv, "transferred", now).await?;
    if !ask.wrap_up_reason_ids.is_empty() {
        m.wrap_up_segment(&segment_id, &ask.wrap_up_reason_ids, "")
            .await?;
        // Still in the sender's queue: the reasons are counted there.
        m.event(segment_wrapped_up(
            &conv,
            identity,
            (&segment_id, &sender),
            &transfer_id,
            &ask.wrap_up_reason_ids,
            now,
        ));
    }
    let previous_queue = std::mem::replace(&mut conv.queue_id, queue.id.clone());
    conv.program_id = queue.program_id;
    save_state(m, &mut conv, next, now).await?;
    let mut transfer = Transfer {
        id: transfer_id,
        tenant_id: conv.tenant_id.clone(),
        conversation_id: conv.id.clone(),
        ordinal: 0,
        from_user_id: identity.principal_id.clone(),
        from_agent_id: sender.clone(),
        from_segment_id: segment_id.clone(),
        by_supervisor,
        to_agent_id: String::new(),
        to_queue_id: queue.id.clone(),
        outcome: AnswerOutcome::Accepted as i32,
        fallback_applied: 0,
        offer_id: String::new(),
        reject_reason: String::new(),
        note: ask.note.clone(),
        ping_pong: false,
        request_time: now,
        resolve_time: Some(now),
        fallback: 0,
    };
    m.insert_transfer(&mut transfer).await?;
    let mut requested = event_by(&conv, pb::EventType::TransferRequested, identity, now);
    requested.transfer_id = transfer.id.clone();
    requested.previous_agent_id = sender.clone();
    requested.transfer_to_queue_id = transfer.to_queue_id.clone();
    requested.previous_queue_id.clone_from(&previous_queue);
    requested.segment_id = segment_id;
    requested.segment_end = "transferred".to_owned();
    m.event(requested);
    let mut resolved = event_by(&conv, pb::EventType::TransferResolved, identity, now);
    resolved.transfer_id = transfer.id.clone();
    queues_of(&mut resolved, &previous_queue, &transfer.to_queue_id);
    resolved.previous_agent_id = sender;
    resolved.answer_outcome = AnswerOutcome::Accepted as i32;
    m.event(resolved);
    m.event(event_by(&conv, pb::EventType::Queued, identity, now));
    requeue(m, &conv, now, now).await?;
    Ok(convert::transfer(&transfer))
}

/// Runs a transfer request of `method` (the owner's or a supervisor's) from validation to
/// commit, answering with `respond(transfer)`. For an agent, routing-svc's offer is made
/// first; should the transfer then not be recorded, the offer is withdrawn again.
pub(in crate::api) async fn run_transfer<R: prost::Message + Default>(
    ctx: &super::super::Context,
    identity: &Caller,
    method: &'static str,
    rid: &super::super::RequestId,
    ask: TransferAsk,
    by_supervisor: bool,
    respond: impl FnOnce(pb::Transfer) -> R,
) -> Result<R> {
    // A retry is answered before routing-svc is asked again.
    if let Some(response) = ctx.replay(identity, method, rid).await? {
        return Ok(response);
    }
    let (current, queue) = checked_target(ctx, identity, &ask).await?;
    if ask.agent_id.is_some() {
        // Checked before routing-svc is asked, so that a refused transfer never shows the
        // agent an offer, even briefly.
        let pending = ctx.store.pending_transfer(&current.id).await?;
        check_transferable(identity, &current, &queue, by_supervisor, pending.as_ref())?;
    }
    let offered = match &ask.agent_id {
        Some(_) => {
            Some(offer_transfer(ctx, identity, method, &rid.id, &current, &ask, &queue).await?)
        }
        None => None,
    };
    let directed = offered.is_some();
    let recorded = async {
        let mut tx = match ctx.begin_mutation(identity, method, rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let transfer = match (&ask.agent_id, offered) {
            (Some(agent_id), Some(offered)) => {
                transfer_to_agent(
                    &mut tx,
                    identity,
                    &ask,
                    agent_id,
                    &queue,
                    offered,
                    by_supervisor,
                )
                .await?
            }
            _ => transfer_to_queue(&mut tx, identity, &ask, queue, by_supervisor).await?,
        };
        let response = respond(transfer);
        tx.commit(&response).await?;
        Ok::<R, Error>(response)
    }
    .await;
    if recorded.is_err() && directed {
        withdraw_offer(ctx, &current).await;
    }
    let response = recorded?;
    info!(
        conversation_id = %ask.conversation_id,
        to_agent = ask.agent_id.as_deref().unwrap_or(""),
        to_queue = ask.queue_id.as_deref().unwrap_or(""),
        by = %identity.principal_id,
        by_supervisor,
        "conversation transferred"
    );
    Ok(response)
}

/// Withdraws routing-svc's offer of a transfer that was not recorded, through the outbox.
async fn withdraw_offer(ctx: &super::super::Context, conv: &Conversation) {
    let cancel = rpb::CancelWaitingRequest {
        tenant_id: conv.tenant_id.clone(),
        conversation_id: conv.id.clone(),
    };
    super::moves::command_alone(
        ctx,
        CommandKind::CancelWaiting,
        &conv.tenant_id,
        &conv.id,
        cancel.encode_to_vec(),
        "the offer of a transfer that was not recorded could not be withdrawn",
    )
    .await;
}

impl ConversationApi {
    pub(super) async fn transfer(
        &self,
        request: Request<pb::TransferConversationRequest>,
    ) -> Result<pb::TransferConversationResponse> {
        const METHOD: &str = "ConversationService/TransferConversation";
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &USER_ROLES,
                "transferring a conversation",
            )?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let ask = TransferAsk::new(
            &req.conversation_id,
            &req.target_agent_id,
            &req.target_queue_id,
            &req.note,
            &req.wrap_up_reason_ids,
        )?;
        run_transfer(&self.ctx, &identity, METHOD, &rid, ask, false, |transfer| {
            pb::TransferConversationResponse {
                transfer: Some(transfer),
            }
        })
        .await
    }

    pub(super) async fn transfers_page(
        &self,
        request: Request<pb::ListTransfersRequest>,
    ) -> Result<pb::ListTransfersResponse> {
        let identity = self
            .ctx
            .caller(authorized(&request, &READER_ROLES, "reading transfers")?)
            .await?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        let limit = page_size(req.page_size)?;
        let after = token::decode_int(&req.page_token)?;
        self.ctx
            .store
            .conversation(&identity.tenant_id, &id)
            .await?
            .filter(|c| c.visible_to(viewer(&identity)))
            .ok_or_else(|| Error::conversation_not_found(&id))?;
        let mut transfers = self.ctx.store.transfers(&id, after, limit + 1).await?;
        let next_page_token = next_page(&mut transfers, limit, |last| {
            token::encode_int(last.ordinal)
        });
        Ok(pb::ListTransfersResponse {
            transfers: transfers.iter().map(convert::transfer).collect(),
            next_page_token,
        })
    }
}

/// Applies routing-svc's news that the target agent accepted the transfer of `offer_id`
/// (capacity already reserved): the transfer is ACCEPTED, the sender's segment ends
/// TRANSFERRED and the sender stays as a consultant (its capacity released), the receiver
/// owns the conversation with a new segment. FAILED_PRECONDITION when the transfer is no
/// longer pending or the conversation moved on; routing-svc then releases the units.
pub(in crate::api) async fn accept_transfer(
    m: &mut Mutation,
    conv: &mut Conversation,
    offer_id: &str,
    agent_id: &str,
    agent_display_name: &str,
    now: i64,
) -> Result<crate::store::Segment> {
    let id = conv.id.clone();
    let mut transfer = m
        .transfer_by_offer(offer_id)
        .await?
        .filter(|t| t.conversation_id == id && t.to_agent_id == agent_id)
        .ok_or_else(|| Error::wrong_state(&id, format!("offer {offer_id} proposes no transfer")))?;
    let sender = transfer.from_agent_id.clone();
    let next = transfer::accepted_state(conv.state, conv.owner(), &sender)
        .filter(|_| transfer.outcome == AnswerOutcome::Pending as i32)
        .ok_or_else(|| {
            Error::wrong_state(
                &id,
                format!("transfer {} is no longer pending", transfer.id),
            )
        })?;
    transfer.outcome = AnswerOutcome::Accepted as i32;
    if !m.resolve_transfer(&transfer, now).await? {
        return Err(Error::wrong_state(
            &id,
            format!("transfer {} was resolved concurrently", transfer.id),
        ));
    }
    let sender_name = conv.owner_display_name.clone();
    let sender_segment = conv.current_segment_id.clone();
    release_owner(m, conv, "transferred", now).await?;
    // The sender stays, hidden from the customer, as a consultant (rule 8).
    m.add_participant(
        conv,
        &sender,
        &sender_name,
        ParticipantRole::Consultant,
        now,
    )
    .await?;
    let mut resolved = Event::about(conv, pb::EventType::TransferResolved as i32, agent_id, now);
    resolved.transfer_id = transfer.id.clone();
    resolved.previous_agent_id = sender.clone();
    resolved.segment_id = sender_segment;
    resolved.segment_end = "transferred".to_owned();
    resolved.answer_outcome = AnswerOutcome::Accepted as i32;
    queues_of(&mut resolved, &conv.queue_id, &transfer.to_queue_id);
    m.event(resolved);
    conv.state = next;
    conv.owner_agent_id = agent_id.to_owned();
    conv.owner_display_name = agent_display_name.to_owned();
    conv.last_owner_agent_id = agent_id.to_owned();
    conv.update_time = now;
    let queue_id = transfer.to_queue_id.clone();
    if queue_id != conv.queue_id {
        conv.queue_id = queue_id.clone();
    }
    let segment = m
        .start_segment(conv, agent_id, &queue_id, "transfer", now)
        .await?;
    m.add_participant(
        conv,
        agent_id,
        agent_display_name,
        ParticipantRole::Owner,
        now,
    )
    .await?;
    m.save_conversation(conv).await?;
    let mut assigned = Event::about(conv, pb::EventType::Assigned as i32, agent_id, now);
    assigned.previous_agent_id = sender;
    assigned.detail = "transfer".to_owned();
    assigned.transfer_id = transfer.id.clone();
    m.event(assigned);
    let name = if agent_display_name.trim().is_empty() {
        "An agent"
    } else {
        agent_display_name
    };
    let notice = system_message(format!("{name} joined the conversation"));
    post_message(m, conv, notice, "", now).await?;
    Ok(segment)
}

/// Applies routing-svc's news that the transfer of `offer_id` was not taken (`outcome`:
/// rejected, timed out or withdrawn): the outcome is recorded and, while the sender still
/// has the conversation, the target queue's fallback applies. A transfer already resolved
/// is left as it is (a repeat, or one this service withdrew itself).
pub(in crate::api) async fn transfer_not_taken(
    m: &mut Mutation,
    offer_id: &str,
    outcome: AnswerOutcome,
    reject_reason: &str,
    now: i64,
) -> Result<()> {
    let Some(mut transfer) = m.transfer_by_offer(offer_id).await? else {
        return Err(Error::NotFound(format!(
            "offer {offer_id} proposes no transfer"
        )));
    };
    if transfer.outcome != AnswerOutcome::Pending as i32 {
        return Ok(());
    }
    let mut conv = m
        .conversation_for_update(&transfer.tenant_id, &transfer.conversation_id)
        .await?
        .ok_or_else(|| Error::conversation_not_found(&transfer.conversation_id))?;
    let apply = transfer::fallback_to_apply(
        transfer::Fallback::from_code(transfer.fallback),
        conv.state,
        conv.owner(),
        &transfer.from_agent_id,
    );
    transfer.outcome = outcome as i32;
    transfer.reject_reason = mask_pans(reject_reason).into_owned();
    transfer.fallback_applied = apply.map_or(0, transfer::Fallback::code);
    if !m.resolve_transfer(&transfer, now).await? {
        return Ok(());
    }
    let receiver = transfer.to_agent_id.clone();
    let segment_id = conv.current_segment_id.clone();
    let mut resolved = Event::about(&conv, pb::EventType::TransferResolved as i32, "", now);
    resolved.transfer_id = transfer.id.clone();
    resolved.answer_outcome = outcome as i32;
    resolved.transfer_fallback = transfer.fallback_applied;
    queues_of(&mut resolved, &conv.queue_id, &transfer.to_queue_id);
    match apply {
        None => {}
        Some(transfer::Fallback::ReturnToSender) => {
            let note = crate::store::NewMessage {
                internal: true,
                ..system_message(format!(
                    "The transfer to agent {receiver} was not taken; the conversation stays \
                     with you"
                ))
            };
            post_message(m, &mut conv, note, "", now).await?;
        }
        Some(transfer::Fallback::Requeue) => {
            let sender = release_owner(m, &mut conv, "transferred", now).await?;
            conv.queue_id = transfer.to_queue_id.clone();
            save_state(m, &mut conv, State::Open, now).await?;
            resolved.previous_agent_id = sender;
            resolved.segment_id = segment_id;
            resolved.segment_end = "transferred".to_owned();
            resolved.agent_id = String::new();
            resolved.state = State::Open.code();
            resolved.queue_id = conv.queue_id.clone();
            m.event(resolved);
            m.event(Event::about(&conv, pb::EventType::Queued as i32, "", now));
            requeue(m, &conv, now, now).await?;
            info!(conversation_id = %conv.id, transfer_id = %transfer.id, "transfer not taken: requeued");
            return Ok(());
        }
        Some(transfer::Fallback::Drop) => {
            let sender = release_owner(m, &mut conv, "dropped", now).await?;
            let notice = system_message("The conversation was closed".to_owned());
            post_message(m, &mut conv, notice, "", now).await?;
            conv.close_time = Some(now);
            conv.close_reason = pb::CloseReason::TransferDropped as i32;
            save_state(m, &mut conv, State::Closed, now).await?;
            resolved.previous_agent_id = sender.clone();
            resolved.agent_id = String::new();
            resolved.state = State::Closed.code();
            m.event(resolved);
            let mut closed = Event::about(&conv, pb::EventType::Closed as i32, "", now);
            closed.detail = convert::close_code(pb::CloseReason::TransferDropped).to_owned();
            closed.agent_id = sender.clone();
            closed.previous_agent_id = sender;
            closed.segment_id = segment_id;
            closed.segment_end = "dropped".to_owned();
            m.event(closed);
            info!(conversation_id = %conv.id, transfer_id = %transfer.id, "transfer not taken: dropped");
            return Ok(());
        }
    }
    let state = conv.state;
    save_state(m, &mut conv, state, now).await?;
    m.event(resolved);
    info!(conversation_id = %conv.id, transfer_id = %transfer.id, ?outcome, "transfer not taken");
    Ok(())
}
