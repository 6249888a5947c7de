//! Supervisor actions on one conversation: monitor, join, assign, transfer and force close. Each needs
//! the SUPERVISOR role and the tenant's administrators to have enabled it; the gateway checks
//! both and this service checks them again (product rule 4).

use prost::Message as _;
use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::routing::internal::v1 as rpb;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::{Identity, Role, mask_pans};
use tonic::{Request, Status};
use tracing::{info, warn};

use super::conversation::moves::{
    command_alone, leave_queue, refused, release_owner, target_queue,
};
use super::conversation::transfers::{TransferAsk, run_transfer};
use super::conversation::{
    event_by, load_visible, post_message, queue_changed_by, save_state, system_message,
};
use super::expiry::limit_micros;
use super::{
    Begun, Caller, Shared, authorized, convert, optional_uuid, request_id, text_field, uuid_field,
};
use crate::domain::access::ParticipantRole;
use crate::domain::state::{Action, State, transition};
use crate::domain::supervision;
use crate::error::{Error, Result};
use crate::store::{CommandKind, Conversation};

/// The caller, who must be a supervisor of a tenant that enabled `action` (the directory's
/// name of it, e.g. `force_close`).
fn supervisor<T>(request: &Request<T>, action: &str, doing: &str) -> Result<Caller> {
    let identity = authorized(request, &[Role::Supervisor], doing)?;
    if !identity
        .enabled_supervisor_actions
        .iter()
        .any(|enabled| enabled == action)
    {
        return Err(Error::ActionDisabled(format!(
            "{doing} is not enabled for this tenant; an administrator enables the \
             supervisor action '{action}' in the tenant settings"
        )));
    }
    Ok(Caller::seeing_all(identity))
}

/// routing-svc's refusal of a reservation, as this service's error.
fn reserve_error(agent_id: &str, status: Status) -> Error {
    match status.code() {
        tonic::Code::NotFound => Error::NotFound(format!("agent {agent_id} not found")),
        tonic::Code::ResourceExhausted => Error::CapacityFull(format!(
            "{}; assign with override_limits to exceed it",
            status.message()
        )),
        tonic::Code::FailedPrecondition => Error::WrongState(status.message().to_owned()),
        tonic::Code::InvalidArgument => Error::invalid("agent_id", status.message()),
        code => {
            warn!(
                agent_id,
                ?code,
                message = status.message(),
                "routing-svc ReserveCapacity failed"
            );
            Error::Unavailable("routing-svc is unavailable: cannot reserve capacity".to_owned())
        }
    }
}

/// Adds the caller as a participant with `role` and records PARTICIPANT_JOINED.
async fn add_supervisor(
    m: &mut crate::store::Mutation,
    conv: &mut Conversation,
    identity: &Identity,
    role: ParticipantRole,
    now: i64,
) -> Result<pb::Participant> {
    let name = mask_pans(&identity.display_name).into_owned();
    m.add_participant(conv, &identity.principal_id, &name, role, now)
        .await?;
    let state = conv.state;
    save_state(m, conv, state, now).await?;
    let mut joined = event_by(conv, pb::EventType::ParticipantJoined, identity, now);
    joined.participant_user_id = identity.principal_id.clone();
    joined.participant_role = role.code();
    m.event(joined);
    let participant = conv
        .participants
        .last()
        .map(convert::participant)
        .unwrap_or_default();
    Ok(participant)
}

impl super::SupervisorApi {
    fn ctx(&self) -> &Shared {
        &self.ctx
    }

    pub(super) async fn monitor(
        &self,
        request: Request<pb::MonitorConversationRequest>,
    ) -> Result<pb::MonitorConversationResponse> {
        const METHOD: &str = "SupervisorService/MonitorConversation";
        let identity = supervisor(&request, "monitor", "monitoring a conversation")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let mut tx = match self.ctx().begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        supervision::check_monitor(
            conv.state,
            conv.owner(),
            &identity.principal_id,
            conv.role_of(&identity.principal_id),
        )
        .map_err(|why| refused(&id, why))?;
        let now = now_micros();
        let participant =
            add_supervisor(&mut tx, &mut conv, &identity, ParticipantRole::Monitor, now).await?;
        let response = pb::MonitorConversationResponse {
            participant: Some(participant),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, supervisor_id = %identity.principal_id, "monitoring started");
        Ok(response)
    }

    pub(super) async fn join(
        &self,
        request: Request<pb::JoinConversationRequest>,
    ) -> Result<pb::JoinConversationResponse> {
        const METHOD: &str = "SupervisorService/JoinConversation";
        let identity = supervisor(&request, "join", "joining a conversation")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let mut tx = match self.ctx().begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        supervision::check_join(
            conv.state,
            conv.owner(),
            &identity.principal_id,
            conv.role_of(&identity.principal_id),
        )
        .map_err(|why| refused(&id, why))?;
        let now = now_micros();
        // From monitoring: the silent part ends as the visible one starts.
        tx.leave_participant(&mut conv, &identity.principal_id, now)
            .await?;
        let participant = add_supervisor(
            &mut tx,
            &mut conv,
            &identity,
            ParticipantRole::Supervisor,
            now,
        )
        .await?;
        let name = if participant.display_name.trim().is_empty() {
            "A supervisor".to_owned()
        } else {
            format!("{} (supervisor)", participant.display_name)
        };
        let notice = system_message(format!("{name} joined the conversation"));
        post_message(&mut tx, &mut conv, notice, "", now).await?;
        let response = pb::JoinConversationResponse {
            participant: Some(participant),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, supervisor_id = %identity.principal_id, "supervisor joined");
        Ok(response)
    }

    pub(super) async fn assign(
        &self,
        request: Request<pb::AssignConversationRequest>,
    ) -> Result<pb::AssignConversationResponse> {
        const METHOD: &str = "SupervisorService/AssignConversation";
        let identity = supervisor(&request, "assign", "assigning a conversation")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let agent_id = optional_uuid("agent_id", &req.agent_id)?;
        let queue_id = optional_uuid("queue_id", &req.queue_id)?;
        if agent_id.is_none() && queue_id.is_none() {
            return Err(Error::invalid("agent_id", "set agent_id or queue_id"));
        }
        // A retry is answered before routing-svc is asked again.
        if let Some(response) = self.ctx().replay(&identity, METHOD, &rid).await? {
            return Ok(response);
        }
        let current = self
            .ctx()
            .store
            .conversation(&identity.tenant_id, &id)
            .await?
            .ok_or_else(|| Error::conversation_not_found(&id))?;
        supervision::check_assign(current.state, current.owner())
            .map_err(|why| refused(&id, why))?;
        let queue = match &queue_id {
            Some(queue_id) if *queue_id != current.queue_id => Some(
                target_queue(self.ctx(), &identity.tenant_id, queue_id, current.channel).await?,
            ),
            _ => None,
        };
        let Some(agent_id) = agent_id else {
            return self
                .assign_to_queue(&identity, &rid, &id, queue.expect("a queue was named"))
                .await;
        };
        let through = queue
            .as_ref()
            .map_or_else(|| current.queue_id.clone(), |q| q.id.clone());
        let reserved = self
            .ctx()
            .routing
            .reserve_capacity(rpb::ReserveCapacityRequest {
                tenant_id: identity.tenant_id.clone(),
                conversation_id: id.clone(),
                agent_id: agent_id.clone(),
                channel: current.channel,
                queue_id: through.clone(),
                override_limits: req.override_limits,
            })
            .await
            .map_err(|status| reserve_error(&agent_id, status))?;

        let applied = self
            .apply_assign(&identity, &rid, &id, &agent_id, queue, &reserved)
            .await;
        if applied.is_err() {
            // The conversation changed meanwhile (or the write failed): the units reserved
            // for it go back, through the outbox should routing-svc not answer now.
            self.give_back(&identity.tenant_id, &id, &agent_id).await;
        }
        applied
    }

    /// Makes `agent_id` the owner of OPEN conversation `id` once routing-svc has reserved
    /// the capacity: ACTIVE, a new segment, the override recorded, the conversation out of
    /// its queue.
    async fn apply_assign(
        &self,
        identity: &Caller,
        rid: &super::RequestId,
        id: &str,
        agent_id: &str,
        queue: Option<switchboard_proto::routing::v1::Queue>,
        reserved: &rpb::ReserveCapacityResponse,
    ) -> Result<pb::AssignConversationResponse> {
        const METHOD: &str = "SupervisorService/AssignConversation";
        let mut tx = match self.ctx().begin_mutation(identity, METHOD, rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, identity, id).await?;
        supervision::check_assign(conv.state, conv.owner()).map_err(|why| refused(id, why))?;
        let next = transition(conv.state, Action::Assign).map_err(|e| Error::wrong_state(id, e))?;
        let now = now_micros();
        leave_queue(&mut tx, &conv, now).await?;
        let previous_queue = conv.queue_id.clone();
        if let Some(queue) = queue {
            conv.queue_id = queue.id;
            conv.program_id = queue.program_id;
        }
        let name = mask_pans(&reserved.agent_display_name).into_owned();
        let previous = conv.last_owner_agent_id.clone();
        conv.state = next;
        conv.owner_agent_id = agent_id.to_owned();
        conv.owner_display_name = name.clone();
        conv.last_owner_agent_id = agent_id.to_owned();
        conv.update_time = now;
        let queue_id = conv.queue_id.clone();
        tx.start_segment(&mut conv, agent_id, &queue_id, "assign", now)
            .await?;
        tx.add_participant(&mut conv, agent_id, &name, ParticipantRole::Owner, now)
            .await?;
        tx.save_conversation(&conv).await?;
        tx.set_wrap_up_limit(id, limit_micros(reserved.wrap_up_time_limit.as_ref()))
            .await?;
        if previous_queue != conv.queue_id {
            tx.event(queue_changed_by(&conv, identity, previous_queue, now));
        }
        let mut assigned = event_by(&conv, pb::EventType::Assigned, identity, now);
        assigned.previous_agent_id = previous;
        assigned.detail = "assign".to_owned();
        assigned.units_over_capacity = reserved.units_over_capacity;
        tx.event(assigned);
        let shown = if name.trim().is_empty() {
            "An agent"
        } else {
            name.as_str()
        };
        let notice = system_message(format!("{shown} joined the conversation"));
        post_message(&mut tx, &mut conv, notice, "", now).await?;
        let response = pb::AssignConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
            units_over_capacity: reserved.units_over_capacity,
        };
        tx.commit(&response).await?;
        info!(
            conversation_id = %id,
            agent_id = %agent_id,
            supervisor_id = %identity.principal_id,
            units_over_capacity = reserved.units_over_capacity,
            "conversation assigned by a supervisor"
        );
        Ok(response)
    }

    /// Assigning to a queue: the OPEN conversation waits there instead.
    async fn assign_to_queue(
        &self,
        identity: &Caller,
        rid: &super::RequestId,
        id: &str,
        queue: switchboard_proto::routing::v1::Queue,
    ) -> Result<pb::AssignConversationResponse> {
        const METHOD: &str = "SupervisorService/AssignConversation";
        let mut tx = match self.ctx().begin_mutation(identity, METHOD, rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, identity, id).await?;
        supervision::check_assign(conv.state, conv.owner()).map_err(|why| refused(id, why))?;
        let now = now_micros();
        leave_queue(&mut tx, &conv, now).await?;
        let previous_queue = std::mem::replace(&mut conv.queue_id, queue.id.clone());
        conv.program_id = queue.program_id;
        let state = conv.state;
        save_state(&mut tx, &mut conv, state, now).await?;
        tx.event(queue_changed_by(&conv, identity, previous_queue, now));
        tx.event(event_by(&conv, pb::EventType::Queued, identity, now));
        super::conversation::moves::requeue(&mut tx, &conv, now, now).await?;
        let response = pb::AssignConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
            units_over_capacity: 0,
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, queue_id = %queue.id, "conversation assigned to a queue");
        Ok(response)
    }

    /// Frees units reserved for an assignment that did not happen: at once when routing-svc
    /// answers, else through the outbox so that they are freed when it is back.
    async fn give_back(&self, tenant_id: &str, conversation_id: &str, agent_id: &str) {
        let release = rpb::ReleaseCapacityRequest {
            tenant_id: tenant_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            agent_id: agent_id.to_owned(),
        };
        if self
            .ctx()
            .routing
            .release_capacity(release.clone())
            .await
            .is_ok()
        {
            return;
        }
        command_alone(
            self.ctx(),
            CommandKind::ReleaseCapacity,
            tenant_id,
            conversation_id,
            release.encode_to_vec(),
            "capacity reserved for an assignment that failed could not be given back",
        )
        .await;
    }

    pub(super) async fn transfer(
        &self,
        request: Request<pb::SupervisorServiceTransferConversationRequest>,
    ) -> Result<pb::SupervisorServiceTransferConversationResponse> {
        const METHOD: &str = "SupervisorService/TransferConversation";
        let identity = supervisor(&request, "transfer", "transferring a conversation")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let ask = TransferAsk::new(
            &req.conversation_id,
            &req.target_agent_id,
            &req.target_queue_id,
            &req.note,
            &[],
        )?;
        run_transfer(self.ctx(), &identity, METHOD, &rid, ask, true, |transfer| {
            pb::SupervisorServiceTransferConversationResponse {
                transfer: Some(transfer),
            }
        })
        .await
    }

    pub(super) async fn force_close(
        &self,
        request: Request<pb::ForceCloseConversationRequest>,
    ) -> Result<pb::ForceCloseConversationResponse> {
        const METHOD: &str = "SupervisorService/ForceCloseConversation";
        let identity = supervisor(&request, "force_close", "force-closing a conversation")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        text_field("reason", &req.reason, 0, 500)?;
        let mut tx = match self.ctx().begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        let next =
            transition(conv.state, Action::ForceClose).map_err(|e| Error::wrong_state(&id, e))?;
        let now = now_micros();
        let segment_id = conv.current_segment_id.clone();
        let was_open = conv.state == State::Open;
        let owner = release_owner(&mut tx, &mut conv, "force_closed", now).await?;
        if was_open {
            leave_queue(&mut tx, &conv, now).await?;
        }
        // Everyone else still present leaves with the close.
        let present: Vec<(String, ParticipantRole)> = conv
            .participants
            .iter()
            .filter(|p| p.leave_time.is_none())
            .map(|p| (p.user_id.clone(), p.role))
            .collect();
        for (user_id, role) in &present {
            tx.leave_participant(&mut conv, user_id, now).await?;
            if *role == ParticipantRole::Conference {
                super::conversation::moves::release_capacity(&mut tx, &conv, user_id, now).await?;
            }
        }
        if !req.reason.is_empty() {
            let note = crate::store::NewMessage {
                internal: true,
                ..system_message(format!(
                    "Force-closed by a supervisor: {}",
                    mask_pans(&req.reason)
                ))
            };
            post_message(&mut tx, &mut conv, note, &identity.principal_id, now).await?;
        }
        let notice = system_message("The conversation was closed".to_owned());
        post_message(&mut tx, &mut conv, notice, "", now).await?;
        conv.close_time = Some(now);
        conv.close_reason = pb::CloseReason::ForceClosed as i32;
        save_state(&mut tx, &mut conv, next, now).await?;
        let mut closed = event_by(&conv, pb::EventType::Closed, &identity, now);
        closed.detail = convert::close_code(pb::CloseReason::ForceClosed).to_owned();
        closed.reopen_window_secs = identity.reopen_window_secs;
        if !owner.is_empty() {
            closed.previous_agent_id = owner.clone();
            closed.agent_id = owner.clone();
            closed.segment_id = segment_id;
            closed.segment_end = "force_closed".to_owned();
        }
        tx.event(closed);
        let response = pb::ForceCloseConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(
            conversation_id = %id,
            supervisor_id = %identity.principal_id,
            agent_id = %owner,
            "conversation force-closed"
        );
        Ok(response)
    }
}
