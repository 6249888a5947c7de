//! Consult and conference (product rule 8): the owner invites another agent
//! (InviteParticipant), cancels a pending invitation (CancelInvitation) and ends the
//! conference (EndConference); invited agents leave with LeaveConversation (in `moves`).
//!
//! An invitation is an offer routing-svc makes to the agent (kind CONSULT or CONFERENCE)
//! and the agent answers on its offer stream, like a transfer. On accept (ApplyAssignment
//! with an offer kind) the agent joins: a consultant is hidden from the customer and holds
//! no capacity, a conference agent is announced to the customer and holds the channel's
//! units. When the agent declines, does not answer or the offer is withdrawn (ResolveOffer)
//! the invitation ends NOT_JOINED and the owner is told in an internal note.
//!
//! Invitations belong to the owner's handling: when the owner changes or the chat ends,
//! [`dismiss_helpers`] withdraws the pending ones and every consultant and conference agent
//! leaves, their capacity released.

use super::moves::release_capacity;
use super::*;
use crate::domain::invitation::{self, InviteCheck, InviteRefusal};
use crate::store::Invitation;
use switchboard_proto::common::v1::AnswerOutcome;
use switchboard_proto::routing::v1::OfferKind;

/// Most characters of an invitation note.
const MAX_NOTE: usize = 1000;

/// FAILED_PRECONDITION for a refused invitation on conversation `id`.
fn refused(id: &str, why: InviteRefusal) -> Error {
    Error::wrong_state(id, why)
}

/// The routing offer kind that proposes an invitation in `role`.
fn offer_kind(role: ParticipantRole) -> OfferKind {
    if role == ParticipantRole::Conference {
        OfferKind::Conference
    } else {
        OfferKind::Consult
    }
}

/// The id of the invitation a request creates: the same for every retry of it, so that
/// routing-svc makes one offer however often the request is retried.
fn invitation_id(identity: &Identity, request_id: &str) -> String {
    let name = format!(
        "{}/{}/InviteParticipant/{request_id}",
        identity.tenant_id, identity.principal_id
    );
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// Checks that the caller may invite `agent_id` to `conv` now (`transfer_pending`: whether
/// a transfer of it waits for an answer).
fn check_invite(
    identity: &Identity,
    conv: &Conversation,
    agent_id: &str,
    transfer_pending: bool,
) -> Result<()> {
    let present: Vec<&str> = conv
        .participants
        .iter()
        .filter(|p| p.leave_time.is_none())
        .map(|p| p.user_id.as_str())
        .collect();
    let invited: Vec<&str> = conv
        .invitations
        .iter()
        .filter(|i| i.pending())
        .map(|i| i.agent_id.as_str())
        .collect();
    invitation::check_invite(InviteCheck {
        state: conv.state,
        owner: conv.owner(),
        caller: &identity.principal_id,
        agent: agent_id,
        present: &present,
        invited: &invited,
        transfer_pending,
    })
    .map_err(|why| refused(&conv.id, why))
}

/// Queues the withdrawal of one invitation's offer in routing-svc.
async fn withdraw_offer(m: &mut Mutation, conv: &Conversation, id: &str, now: i64) -> Result<()> {
    let withdraw = rpb::WithdrawOfferRequest {
        tenant_id: conv.tenant_id.clone(),
        conversation_id: conv.id.clone(),
        reference_id: id.to_owned(),
    };
    m.add_command(
        CommandKind::WithdrawOffer,
        &conv.tenant_id,
        &conv.id,
        withdraw.encode_to_vec(),
        now,
    )
    .await?;
    Ok(())
}

/// Ends `conv`'s pending invitation `id` with `outcome`, records INVITATION_ENDED by
/// `actor_id` and tells the owner in an internal note; false when no longer pending.
async fn end_invitation(
    m: &mut Mutation,
    conv: &mut Conversation,
    id: &str,
    outcome: AnswerOutcome,
    reject_reason: &str,
    actor_id: &str,
    now: i64,
) -> Result<bool> {
    let Some(invitation) = conv.invitations.iter().find(|i| i.id == id).cloned() else {
        return Ok(false);
    };
    let reason = mask_pans(reject_reason);
    if !m
        .resolve_invitation(conv, id, outcome as i32, &reason, "", now)
        .await?
    {
        return Ok(false);
    }
    let mut ended = Event::about(conv, pb::EventType::InvitationEnded as i32, actor_id, now);
    ended.invitation_id = id.to_owned();
    ended.participant_user_id = invitation.agent_id.clone();
    ended.participant_role = invitation.role.code();
    ended.answer_outcome = outcome as i32;
    m.event(ended);
    let how = match outcome {
        AnswerOutcome::Rejected if reason.trim().is_empty() => "declined".to_owned(),
        AnswerOutcome::Rejected => format!("declined ({})", reason.trim()),
        AnswerOutcome::TimedOut => "was not answered in time".to_owned(),
        _ => "was withdrawn".to_owned(),
    };
    let note = NewMessage {
        internal: true,
        ..system_message(format!(
            "The invitation of agent {} to {} {how}",
            invitation.agent_id,
            if invitation.role == ParticipantRole::Conference {
                "the conference"
            } else {
                "consult"
            }
        ))
    };
    post_message(m, conv, note, "", now).await?;
    Ok(true)
}

/// Makes `user_id` (a consultant or conference agent) leave `conv`: PARTICIPANT_LEFT by
/// `actor_id`, a conference agent's capacity released and its leaving announced.
pub(in crate::api) async fn remove_helper(
    m: &mut Mutation,
    conv: &mut Conversation,
    user_id: &str,
    role: ParticipantRole,
    actor_id: &str,
    now: i64,
) -> Result<()> {
    let name = conv
        .participants
        .iter()
        .rev()
        .find(|p| p.user_id == user_id)
        .map(|p| p.display_name.clone())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "An agent".to_owned());
    m.leave_participant(conv, user_id, now).await?;
    let mut left = Event::about(conv, pb::EventType::ParticipantLeft as i32, actor_id, now);
    left.participant_user_id = user_id.to_owned();
    left.participant_role = role.code();
    m.event(left);
    if role == ParticipantRole::Conference {
        // A conference agent held capacity for the conversation; a consultant did not.
        release_capacity(m, conv, user_id, now).await?;
        let notice = system_message(format!("{name} left the conversation"));
        post_message(m, conv, notice, "", now).await?;
    }
    Ok(())
}

/// Withdraws `conv`'s invitations still waiting for an answer (only those to join as
/// `role`, when given): each ends WITHDRAWN by `actor_id` and its offer is withdrawn in
/// routing-svc through the outbox.
async fn withdraw_invitations(
    m: &mut Mutation,
    conv: &mut Conversation,
    role: Option<ParticipantRole>,
    actor_id: &str,
    now: i64,
) -> Result<()> {
    let pending: Vec<String> = conv
        .invitations
        .iter()
        .filter(|i| i.pending() && role.is_none_or(|role| i.role == role))
        .map(|i| i.id.clone())
        .collect();
    for id in pending {
        if end_invitation(m, conv, &id, AnswerOutcome::Withdrawn, "", actor_id, now).await? {
            withdraw_offer(m, conv, &id, now).await?;
        }
    }
    Ok(())
}

/// The owner's helpers go with the owner's handling (an owner change, the end of the chat,
/// a close): pending invitations are withdrawn and every consultant and conference agent
/// leaves, conference capacity released. Joined supervisors stay.
pub(in crate::api) async fn dismiss_helpers(
    m: &mut Mutation,
    conv: &mut Conversation,
    actor_id: &str,
    now: i64,
) -> Result<()> {
    withdraw_invitations(m, conv, None, actor_id, now).await?;
    let helpers: Vec<(String, ParticipantRole)> = conv
        .participants
        .iter()
        .filter(|p| {
            p.leave_time.is_none()
                && matches!(
                    p.role,
                    ParticipantRole::Consultant | ParticipantRole::Conference
                )
        })
        .map(|p| (p.user_id.clone(), p.role))
        .collect();
    for (user_id, role) in helpers {
        remove_helper(m, conv, &user_id, role, actor_id, now).await?;
    }
    Ok(())
}

/// Applies routing-svc's news that the agent accepted the invitation of `offer_id`
/// (conference capacity already reserved): the agent joins in the invitation's role.
/// FAILED_PRECONDITION when the invitation is no longer pending or the conversation moved
/// on; routing-svc then releases the units. A repeat of an applied accept changes nothing.
pub(in crate::api) async fn join_invited(
    m: &mut Mutation,
    conv: &mut Conversation,
    offer_id: &str,
    agent_id: &str,
    agent_display_name: &str,
    now: i64,
) -> Result<()> {
    let id = conv.id.clone();
    let invitation = m
        .invitation_by_offer(offer_id)
        .await?
        .filter(|i| i.conversation_id == id && i.agent_id == agent_id)
        .ok_or_else(|| {
            Error::wrong_state(&id, format!("offer {offer_id} proposes no invitation"))
        })?;
    if invitation.outcome == AnswerOutcome::Accepted as i32 {
        return Ok(());
    }
    if !invitation.pending()
        || !invitation::still_joinable(conv.state, conv.owner(), &invitation.inviter_id)
    {
        return Err(Error::wrong_state(
            &id,
            format!("invitation {} is no longer pending", invitation.id),
        ));
    }
    if !m
        .resolve_invitation(
            conv,
            &invitation.id,
            AnswerOutcome::Accepted as i32,
            "",
            agent_display_name,
            now,
        )
        .await?
    {
        return Err(Error::wrong_state(
            &id,
            format!("invitation {} was resolved concurrently", invitation.id),
        ));
    }
    m.add_invited_participant(conv, &invitation, agent_display_name, now)
        .await?;
    let state = conv.state;
    save_state(m, conv, state, now).await?;
    let mut joined = Event::about(conv, pb::EventType::ParticipantJoined as i32, agent_id, now);
    joined.participant_user_id = agent_id.to_owned();
    joined.participant_role = invitation.role.code();
    joined.invitation_id = invitation.id.clone();
    m.event(joined);
    let name = if agent_display_name.trim().is_empty() {
        "An agent"
    } else {
        agent_display_name
    };
    let notice = if invitation.role == ParticipantRole::Conference {
        system_message(format!("{name} joined the conversation"))
    } else {
        NewMessage {
            internal: true,
            ..system_message(format!("{name} joined to consult"))
        }
    };
    post_message(m, conv, notice, "", now).await?;
    Ok(())
}

/// Applies routing-svc's news that the invitation of `offer_id` was not taken (declined,
/// timed out or withdrawn); false when the offer proposes no invitation. An invitation
/// already ended is left as it is.
pub(in crate::api) async fn invitation_not_taken(
    m: &mut Mutation,
    offer_id: &str,
    outcome: AnswerOutcome,
    reject_reason: &str,
    now: i64,
) -> Result<bool> {
    let Some(invitation) = m.invitation_by_offer(offer_id).await? else {
        return Ok(false);
    };
    if !invitation.pending() {
        return Ok(true);
    }
    let mut conv = m
        .conversation_for_update(&invitation.tenant_id, &invitation.conversation_id)
        .await?
        .ok_or_else(|| Error::conversation_not_found(&invitation.conversation_id))?;
    if end_invitation(
        m,
        &mut conv,
        &invitation.id,
        outcome,
        reject_reason,
        "",
        now,
    )
    .await?
    {
        let state = conv.state;
        save_state(m, &mut conv, state, now).await?;
        info!(
            conversation_id = %conv.id,
            invitation_id = %invitation.id,
            ?outcome,
            "invitation not taken"
        );
    }
    Ok(true)
}

/// An invitation as asked, validated.
struct InviteAsk {
    conversation_id: String,
    agent_id: String,
    role: ParticipantRole,
    note: String,
}

impl InviteAsk {
    fn new(req: &pb::InviteParticipantRequest) -> Result<InviteAsk> {
        let conversation_id = uuid_field("conversation_id", &req.conversation_id)?;
        let agent_id = uuid_field("agent_id", &req.agent_id)?;
        let role = ParticipantRole::from_code(i64::from(req.role))
            .filter(|r| invitation::invitable(*r))
            .ok_or_else(|| Error::invalid("role", "must be CONSULTANT or CONFERENCE"))?;
        text_field("note", &req.note, 0, MAX_NOTE)?;
        Ok(InviteAsk {
            conversation_id,
            agent_id,
            role,
            note: mask_pans(&req.note).into_owned(),
        })
    }
}

impl ConversationApi {
    pub(super) async fn invite(
        &self,
        request: Request<pb::InviteParticipantRequest>,
    ) -> Result<pb::InviteParticipantResponse> {
        const METHOD: &str = "ConversationService/InviteParticipant";
        let identity = self
            .ctx
            .caller(authorized(&request, &USER_ROLES, "inviting an agent")?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let ask = InviteAsk::new(&req)?;
        // A retry is answered before routing-svc is asked again.
        if let Some(response) = self.ctx.replay(&identity, METHOD, &rid).await? {
            return Ok(response);
        }
        let id = ask.conversation_id.as_str();
        let current = self
            .ctx
            .store
            .conversation(&identity.tenant_id, id)
            .await?
            .filter(|c| c.visible_to(viewer(&identity)))
            .ok_or_else(|| Error::conversation_not_found(id))?;
        // Checked before routing-svc is asked, so that a refusal makes no offer.
        let transfer_pending = self.ctx.store.pending_transfer(id).await?.is_some();
        check_invite(&identity, &current, &ask.agent_id, transfer_pending)?;
        let invitation_id = invitation_id(&identity, &rid.id);
        let answer = self
            .ctx
            .routing
            .offer_to_agent(rpb::OfferToAgentRequest {
                tenant_id: current.tenant_id.clone(),
                conversation_id: current.id.clone(),
                agent_id: ask.agent_id.clone(),
                queue_id: current.queue_id.clone(),
                channel: current.channel,
                kind: offer_kind(ask.role) as i32,
                reference_id: invitation_id.clone(),
                sender_id: identity.principal_id.clone(),
                sender_display_name: mask_pans(&identity.display_name).into_owned(),
                note: ask.note.clone(),
                customer_display_name: current.contact.display_name.clone(),
                channel_address: current.channel_address.clone(),
                wait_start_time: Some(micros_to_timestamp(current.create_time)),
            })
            .await
            .map_err(|status| {
                super::transfers::offer_error(&ask.agent_id, "agent_id", "invitation", status)
            })?;
        let offer_id = answer.offer.map(|o| o.id).unwrap_or_default();
        let recorded = async {
            let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
                Begun::Replayed(response) => return Ok(response),
                Begun::Fresh(tx) => tx,
            };
            let mut conv = load_visible(&mut tx, &identity, id).await?;
            let transfer_pending = tx.pending_transfer(&conv.id).await?.is_some();
            check_invite(&identity, &conv, &ask.agent_id, transfer_pending)?;
            let now = now_micros();
            let invitation = Invitation {
                id: invitation_id.clone(),
                tenant_id: conv.tenant_id.clone(),
                conversation_id: conv.id.clone(),
                agent_id: ask.agent_id.clone(),
                display_name: String::new(),
                role: ask.role,
                inviter_id: identity.principal_id.clone(),
                offer_id: offer_id.clone(),
                outcome: AnswerOutcome::Pending as i32,
                reject_reason: String::new(),
                note: ask.note.clone(),
                invite_time: now,
                resolve_time: None,
            };
            let shown = convert::invited(&invitation);
            tx.insert_invitation(&mut conv, invitation).await?;
            let state = conv.state;
            save_state(&mut tx, &mut conv, state, now).await?;
            let mut invited = event_by(&conv, pb::EventType::ParticipantInvited, &identity, now);
            invited.invitation_id = invitation_id.clone();
            invited.participant_user_id = ask.agent_id.clone();
            invited.participant_role = ask.role.code();
            invited.offer_id = offer_id.clone();
            tx.event(invited);
            let response = pb::InviteParticipantResponse {
                participant: Some(shown),
            };
            tx.commit(&response).await?;
            Ok::<_, Error>(response)
        }
        .await;
        if recorded.is_err() {
            // The offer was made but the invitation not recorded: withdraw it again.
            let withdraw = rpb::WithdrawOfferRequest {
                tenant_id: current.tenant_id.clone(),
                conversation_id: current.id.clone(),
                reference_id: invitation_id.clone(),
            };
            super::moves::command_alone(
                &self.ctx,
                CommandKind::WithdrawOffer,
                &current.tenant_id,
                &current.id,
                withdraw.encode_to_vec(),
                "the offer of an invitation that was not recorded could not be withdrawn",
            )
            .await;
        }
        let response = recorded?;
        info!(
            conversation_id = %id,
            agent_id = %ask.agent_id,
            role = %ask.role,
            invitation_id = %invitation_id,
            "agent invited"
        );
        Ok(response)
    }

    pub(super) async fn cancel_invitation(
        &self,
        request: Request<pb::CancelInvitationRequest>,
    ) -> Result<pb::CancelInvitationResponse> {
        const METHOD: &str = "ConversationService/CancelInvitation";
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &USER_ROLES,
                "cancelling an invitation",
            )?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let invitation_id = uuid_field("invitation_id", &req.invitation_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        let invitation = conv
            .invitations
            .iter()
            .find(|i| i.id == invitation_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("invitation {invitation_id} not found")))?;
        if conv.owner() != Some(identity.principal_id.as_str()) {
            return Err(refused(
                &id,
                InviteRefusal::NotOwner("cancel an invitation"),
            ));
        }
        if !invitation.pending() {
            return Err(Error::wrong_state(
                &id,
                format!("invitation {invitation_id} is no longer pending"),
            ));
        }
        let now = now_micros();
        end_invitation(
            &mut tx,
            &mut conv,
            &invitation_id,
            AnswerOutcome::Withdrawn,
            "",
            &identity.principal_id,
            now,
        )
        .await?;
        withdraw_offer(&mut tx, &conv, &invitation_id, now).await?;
        let state = conv.state;
        save_state(&mut tx, &mut conv, state, now).await?;
        let shown = conv
            .invitations
            .iter()
            .find(|i| i.id == invitation_id)
            .map(convert::invited);
        let response = pb::CancelInvitationResponse { participant: shown };
        tx.commit(&response).await?;
        info!(conversation_id = %id, invitation_id = %invitation_id, "invitation cancelled");
        Ok(response)
    }

    pub(super) async fn end_conference(
        &self,
        request: Request<pb::EndConferenceRequest>,
    ) -> Result<pb::EndConferenceResponse> {
        const METHOD: &str = "ConversationService/EndConference";
        let identity = self
            .ctx
            .caller(authorized(&request, &USER_ROLES, "ending a conference")?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let reason_ids =
            lifecycle::reason_ids("wrap_up_reason_ids", &req.wrap_up_reason_ids, true)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        let conference: Vec<String> = conv
            .participants
            .iter()
            .filter(|p| p.leave_time.is_none() && p.role == ParticipantRole::Conference)
            .map(|p| p.user_id.clone())
            .collect();
        invitation::check_end_conference(conv.owner(), &identity.principal_id, conference.len())
            .map_err(|why| refused(&id, why))?;
        lifecycle::check_reasons(
            &mut tx,
            &identity.tenant_id,
            "wrap_up_reason_ids",
            &reason_ids,
            &conv.queue_id,
        )
        .await?;
        let now = now_micros();
        // Conference invitations not yet answered end with the conference.
        withdraw_invitations(
            &mut tx,
            &mut conv,
            Some(ParticipantRole::Conference),
            &identity.principal_id,
            now,
        )
        .await?;
        for user_id in &conference {
            remove_helper(
                &mut tx,
                &mut conv,
                user_id,
                ParticipantRole::Conference,
                &identity.principal_id,
                now,
            )
            .await?;
        }
        let state = conv.state;
        save_state(&mut tx, &mut conv, state, now).await?;
        let mut ended = event_by(&conv, pb::EventType::ConferenceEnded, &identity, now);
        ended.wrap_up_reason_ids = reason_ids;
        tx.event(ended);
        let response = pb::EndConferenceResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, agents = conference.len(), "conference ended");
        Ok(response)
    }
}
