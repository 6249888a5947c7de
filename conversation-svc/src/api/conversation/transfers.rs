//! Transfers (product rules 7-9): by the owner (TransferConversation) or a supervisor
//! (SupervisorService.TransferConversation, in `supervision`), and the transfer ledger of a
//! conversation (ListTransfers).
//!
//! A transfer to a queue of the same program puts the conversation back in line there:
//! the sender's segment ends TRANSFERRED (with its wrap-up reasons when given), the sender
//! is released, and the transfer is ACCEPTED at once. A transfer to an agent is an offer
//! that the agent answers; it is part of the contract, served from the release that brings
//! transfer and invitation offers in routing-svc.

use super::moves::{refused, release_owner, requeue, target_queue};
use super::*;
use crate::domain::supervision::{self, Mode};
use crate::store::Transfer;
use switchboard_proto::common::v1::AnswerOutcome;

/// Most characters of a transfer note.
const MAX_NOTE: usize = 1000;

/// A transfer as asked, validated.
pub(in crate::api) struct TransferAsk {
    /// The conversation.
    pub conversation_id: String,
    /// Target queue.
    pub queue_id: String,
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
        let agent = optional_uuid("target_agent_id", target_agent_id)?;
        let queue = optional_uuid("target_queue_id", target_queue_id)?;
        text_field("note", note, 0, MAX_NOTE)?;
        let wrap_up_reason_ids =
            lifecycle::reason_ids("wrap_up_reason_ids", wrap_up_reason_ids, false)?;
        if let Some(agent) = agent {
            return Err(Error::NotServedYet(format!(
                "target_agent_id {agent}: a transfer to an agent (an offer the agent answers) \
                 is part of the API contract but not served yet; transfer to a queue instead"
            )));
        }
        let Some(queue_id) = queue else {
            return Err(Error::invalid(
                "target_queue_id",
                "set target_queue_id or target_agent_id",
            ));
        };
        Ok(TransferAsk {
            conversation_id,
            queue_id,
            note: mask_pans(note).into_owned(),
            wrap_up_reason_ids,
        })
    }
}

/// The target queue of `ask`, checked by routing-svc to be the tenant's and to accept the
/// conversation's channel; nothing is written before it answers.
pub(in crate::api) async fn checked_target(
    ctx: &super::super::Context,
    identity: &Identity,
    ask: &TransferAsk,
) -> Result<switchboard_proto::routing::v1::Queue> {
    let current = ctx
        .store
        .conversation(&identity.tenant_id, &ask.conversation_id)
        .await?
        .filter(|c| c.visible_to(viewer(identity)))
        .ok_or_else(|| Error::conversation_not_found(&ask.conversation_id))?;
    target_queue(ctx, &identity.tenant_id, &ask.queue_id, current.channel).await
}

/// Applies a transfer to a queue in `m`: rule checks, the sender's segment ends, the
/// conversation waits in `queue`, the transfer is recorded ACCEPTED with its events. Only
/// the owner may ask unless `by_supervisor`.
pub(in crate::api) async fn transfer_to_queue(
    m: &mut Mutation,
    identity: &Identity,
    ask: &TransferAsk,
    queue: switchboard_proto::routing::v1::Queue,
    by_supervisor: bool,
) -> Result<pb::Transfer> {
    let id = ask.conversation_id.as_str();
    let mut conv = load_visible(m, identity, id).await?;
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
    let segment_id = conv.current_segment_id.clone();
    let sender = release_owner(m, &mut conv, "transferred", now).await?;
    if !ask.wrap_up_reason_ids.is_empty() {
        m.wrap_up_segment(&segment_id, &ask.wrap_up_reason_ids, "")
            .await?;
    }
    let previous_queue = std::mem::replace(&mut conv.queue_id, queue.id.clone());
    conv.program_id = queue.program_id;
    save_state(m, &mut conv, next, now).await?;
    let mut transfer = Transfer {
        id: uuid::Uuid::new_v4().to_string(),
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
    };
    m.insert_transfer(&mut transfer).await?;
    let mut requested = event_by(&conv, pb::EventType::TransferRequested, identity, now);
    requested.transfer_id = transfer.id.clone();
    requested.previous_agent_id = sender.clone();
    requested.previous_queue_id = previous_queue;
    requested.segment_id = segment_id;
    requested.segment_end = "transferred".to_owned();
    m.event(requested);
    let mut resolved = event_by(&conv, pb::EventType::TransferResolved, identity, now);
    resolved.transfer_id = transfer.id.clone();
    resolved.previous_agent_id = sender;
    resolved.answer_outcome = AnswerOutcome::Accepted as i32;
    m.event(resolved);
    m.event(event_by(&conv, pb::EventType::Queued, identity, now));
    requeue(m, &conv, now).await?;
    Ok(convert::transfer(&transfer))
}

impl ConversationApi {
    pub(super) async fn transfer(
        &self,
        request: Request<pb::TransferConversationRequest>,
    ) -> Result<pb::TransferConversationResponse> {
        const METHOD: &str = "ConversationService/TransferConversation";
        let identity = authorized(&request, &USER_ROLES, "transferring a conversation")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let ask = TransferAsk::new(
            &req.conversation_id,
            &req.target_agent_id,
            &req.target_queue_id,
            &req.note,
            &req.wrap_up_reason_ids,
        )?;
        if let Some(response) = self.ctx.replay(&identity, METHOD, &rid).await? {
            return Ok(response);
        }
        let queue = checked_target(&self.ctx, &identity, &ask).await?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let transfer = transfer_to_queue(&mut tx, &identity, &ask, queue, false).await?;
        let response = pb::TransferConversationResponse {
            transfer: Some(transfer),
        };
        tx.commit(&response).await?;
        info!(
            conversation_id = %ask.conversation_id,
            queue_id = %ask.queue_id,
            agent_id = %identity.principal_id,
            "conversation transferred to a queue"
        );
        Ok(response)
    }

    pub(super) async fn transfers_page(
        &self,
        request: Request<pb::ListTransfersRequest>,
    ) -> Result<pb::ListTransfersResponse> {
        let identity = authorized(&request, &READER_ROLES, "reading transfers")?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        own_tenant(&identity, &req.tenant_id)?;
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
