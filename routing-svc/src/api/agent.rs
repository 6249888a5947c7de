//! `switchboard.routing.v1.AgentService`: an agent's presence, offers and manual pick.

use switchboard_proto::routing::v1 as pb;
use switchboard_proto::routing::v1::agent_service_server::AgentService;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::identity::{Identity, Role};
use switchboard_server_kit::mask_pans;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::api::{
    Begun, MAX_TEXT, RequestKey, begin_mutation, caller_agent_id, checked_caller, commit_mutation,
    optional_id, parse_id, respond, short_text, target_agent,
};
use crate::convert;
use crate::domain::Presence;
use crate::domain::presence::{check_leaving, check_manual, is_logout};
use crate::engine::{Context, streams};
use crate::error::{Error, Result};
use crate::store::page::PageRequest;
use crate::store::routing::{self, Accepted};
use crate::store::{catalog, outbox::OutboxEntry};
use sqlx::AnyConnection;

const SET_PRESENCE: &str = "/switchboard.routing.v1.AgentService/SetPresence";
const ACCEPT_OFFER: &str = "/switchboard.routing.v1.AgentService/AcceptOffer";
const REJECT_OFFER: &str = "/switchboard.routing.v1.AgentService/RejectOffer";
const CLAIM_WAITING_WORK: &str = "/switchboard.routing.v1.AgentService/ClaimWaitingWork";

/// Serves AgentService.
#[derive(Clone)]
pub struct AgentApi {
    context: Context,
}

impl AgentApi {
    /// The service over `context`.
    pub fn new(context: Context) -> AgentApi {
        AgentApi { context }
    }
}

fn agent_not_found(agent_id: &str) -> Error {
    Error::NotFound(format!("agent {agent_id} has no routing profile"))
}

/// The live state of an agent, NOT_FOUND without a profile.
pub(crate) async fn agent_state(
    conn: &mut AnyConnection,
    tenant_id: &str,
    agent_id: &str,
) -> Result<pb::AgentState> {
    let agent = catalog::get_agent(conn, tenant_id, agent_id)
        .await?
        .ok_or_else(|| agent_not_found(agent_id))?;
    let (open, pending) = catalog::agent_load(conn, tenant_id, agent_id).await?;
    Ok(convert::agent_state(&agent, open, pending))
}

impl AgentApi {
    /// Keeps the agent's stored name the directory's: when an agent calls routing for
    /// itself, the name in its signed identity replaces a different stored one, so that
    /// offers, dashboards and assignments show the one name the directory holds.
    async fn refresh_own_name(
        &self,
        identity: &Identity,
        tenant_id: &str,
        agent_id: &str,
    ) -> Result<()> {
        let name: String = mask_pans(identity.display_name.trim())
            .chars()
            .take(MAX_TEXT)
            .collect();
        if name.is_empty() || caller_agent_id(identity).ok().as_deref() != Some(agent_id) {
            return Ok(());
        }
        if catalog::refresh_display_name(&self.context.store, tenant_id, agent_id, &name).await? {
            info!(agent_id = %agent_id, "agent display name refreshed from the directory");
        }
        Ok(())
    }

    /// Lease time of a new outbox entry: long enough for the first attempt, after which
    /// the background dispatcher may retry it.
    fn lease_until(&self, now: i64) -> i64 {
        let lease = i64::try_from(self.context.dispatcher.lease().as_micros()).unwrap_or(i64::MAX);
        now.saturating_add(lease)
    }

    /// The first attempt to apply an accepted assignment; on failure the entry stays in
    /// the outbox for the background dispatcher.
    async fn apply_now(&self, entry: &OutboxEntry) {
        if let Err(err) = self.context.dispatcher.attempt(entry).await {
            warn!(
                conversation_id = %entry.conversation_id,
                error = %err,
                "first assignment attempt failed, left to the dispatcher"
            );
        }
    }

    async fn set_presence_impl(
        &self,
        request: Request<pb::SetPresenceRequest>,
    ) -> Result<pb::SetPresenceResponse> {
        let (identity, tenant_id) = checked_caller(
            &request,
            &[Role::Agent, Role::Supervisor],
            "AgentService/SetPresence",
        )?;
        let req = request.into_inner();
        let key = RequestKey::parse(&identity, &tenant_id, SET_PRESENCE, &req.request_id, &req)?;
        let agent_id = target_agent(&identity, &req.agent_id, "AgentService/SetPresence")?;
        let presence = match Presence::from_i32(req.presence) {
            Some(presence) => {
                check_manual(presence).map_err(|err| Error::invalid("presence", err.to_string()))?
            }
            None if req.presence == 0 => return Err(Error::invalid("presence", "is required")),
            None => return Err(Error::invalid("presence", "is not a known presence")),
        };
        let reason = short_text("reason", &req.reason)?;
        self.refresh_own_name(&identity, &tenant_id, &agent_id)
            .await?;

        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let agent = catalog::agent_for_write(&mut tx, &tenant_id, &agent_id)
            .await?
            .ok_or_else(|| agent_not_found(&agent_id))?;
        check_leaving(agent.presence, presence, identity.principal_id == agent_id)
            .map_err(|err| Error::WrongState(err.to_string()))?;
        let now = now_micros();
        routing::set_presence(
            &mut tx,
            &agent,
            presence,
            &reason,
            &identity.principal_id,
            now,
        )
        .await?;
        // A logout returns the agent's conversations of some queues to them: the outbox
        // entries commit with the presence, so none is lost if conversation-svc is down.
        let returned = if is_logout(agent.presence, presence) {
            routing::return_on_logout(&mut tx, &agent, &identity.principal_id, now).await?
        } else {
            0
        };
        let response = pb::SetPresenceResponse {
            agent_state: Some(agent_state(tx.conn(), &tenant_id, &agent_id).await?),
        };
        commit_mutation(tx, &key, &response).await?;
        self.context.wake_matcher();
        if returned > 0 {
            self.context.dispatcher.wake();
        }
        info!(agent_id = %agent_id, presence = ?presence, returned, "presence set");
        Ok(response)
    }

    async fn get_agent_state_impl(
        &self,
        request: Request<pb::GetAgentStateRequest>,
    ) -> Result<pb::GetAgentStateResponse> {
        let (identity, tenant_id) = checked_caller(
            &request,
            &[Role::Agent, Role::Supervisor],
            "AgentService/GetAgentState",
        )?;
        let agent_id = target_agent(
            &identity,
            &request.get_ref().agent_id,
            "AgentService/GetAgentState",
        )?;
        self.refresh_own_name(&identity, &tenant_id, &agent_id)
            .await?;
        let mut conn = self.context.store.conn().await?;
        Ok(pb::GetAgentStateResponse {
            agent_state: Some(agent_state(&mut conn, &tenant_id, &agent_id).await?),
        })
    }

    async fn stream_offers_impl(
        &self,
        request: Request<pb::StreamOffersRequest>,
    ) -> Result<ReceiverStream<std::result::Result<pb::StreamOffersResponse, Status>>> {
        let (identity, tenant_id) =
            checked_caller(&request, &[Role::Agent], "AgentService/StreamOffers")?;
        let agent_id = caller_agent_id(&identity)?;
        {
            let mut conn = self.context.store.conn().await?;
            catalog::get_agent(&mut conn, &tenant_id, &agent_id)
                .await?
                .ok_or_else(|| agent_not_found(&agent_id))?;
        }
        self.refresh_own_name(&identity, &tenant_id, &agent_id)
            .await?;
        streams::offers(
            self.context.store.clone(),
            tenant_id,
            agent_id,
            self.context.pace(),
            self.context.shutdown.clone(),
        )
        .await
    }

    async fn accept_offer_impl(
        &self,
        request: Request<pb::AcceptOfferRequest>,
    ) -> Result<pb::AcceptOfferResponse> {
        let (identity, tenant_id) =
            checked_caller(&request, &[Role::Agent], "AgentService/AcceptOffer")?;
        let agent_id = caller_agent_id(&identity)?;
        let req = request.into_inner();
        let key = RequestKey::parse(&identity, &tenant_id, ACCEPT_OFFER, &req.request_id, &req)?;
        let offer_id = parse_id("offer_id", &req.offer_id)?;
        self.refresh_own_name(&identity, &tenant_id, &agent_id)
            .await?;

        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let agent = catalog::agent_for_write(&mut tx, &tenant_id, &agent_id)
            .await?
            .ok_or_else(|| agent_not_found(&agent_id))?;
        let now = now_micros();
        let Accepted { offer, outbox } =
            routing::accept_offer(&mut tx, &agent, &offer_id, now, self.lease_until(now)).await?;
        let response = pb::AcceptOfferResponse {
            offer: Some(convert::offer(&offer)),
            conversation_id: offer.conversation_id.clone(),
        };
        commit_mutation(tx, &key, &response).await?;
        info!(
            conversation_id = %offer.conversation_id,
            agent_id = %agent_id,
            offer_id = %offer.id,
            "offer accepted"
        );
        self.apply_now(&outbox).await;
        Ok(response)
    }

    async fn reject_offer_impl(
        &self,
        request: Request<pb::RejectOfferRequest>,
    ) -> Result<pb::RejectOfferResponse> {
        let (identity, tenant_id) =
            checked_caller(&request, &[Role::Agent], "AgentService/RejectOffer")?;
        let agent_id = caller_agent_id(&identity)?;
        let req = request.into_inner();
        let key = RequestKey::parse(&identity, &tenant_id, REJECT_OFFER, &req.request_id, &req)?;
        let offer_id = parse_id("offer_id", &req.offer_id)?;
        let reason = short_text("reason", &req.reason)?;
        self.refresh_own_name(&identity, &tenant_id, &agent_id)
            .await?;

        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        catalog::agent_for_write(&mut tx, &tenant_id, &agent_id)
            .await?
            .ok_or_else(|| agent_not_found(&agent_id))?;
        let offer = routing::reject_offer(
            &mut tx,
            &tenant_id,
            &agent_id,
            &offer_id,
            &reason,
            now_micros(),
        )
        .await?;
        let response = pb::RejectOfferResponse {
            offer: Some(convert::offer(&offer)),
        };
        commit_mutation(tx, &key, &response).await?;
        self.context.wake_matcher();
        info!(
            conversation_id = %offer.conversation_id,
            agent_id = %agent_id,
            offer_id = %offer.id,
            reason = %reason,
            "offer rejected"
        );
        Ok(response)
    }

    async fn list_waiting_work_impl(
        &self,
        request: Request<pb::ListWaitingWorkRequest>,
    ) -> Result<pb::ListWaitingWorkResponse> {
        let (identity, tenant_id) =
            checked_caller(&request, &[Role::Agent], "AgentService/ListWaitingWork")?;
        let agent_id = caller_agent_id(&identity)?;
        let req = request.into_inner();
        let queue_id = optional_id("queue_id", &req.queue_id)?.unwrap_or_default();
        let page = PageRequest::parse("waiting", req.page_size, &req.page_token)?;
        self.refresh_own_name(&identity, &tenant_id, &agent_id)
            .await?;
        let mut conn = self.context.store.conn().await?;
        let agent = catalog::get_agent(&mut conn, &tenant_id, &agent_id)
            .await?
            .ok_or_else(|| agent_not_found(&agent_id))?;
        if !queue_id.is_empty() && !agent.queue_ids.contains(&queue_id) {
            return Err(Error::NotFound(format!(
                "queue {queue_id} is not one of your queues"
            )));
        }
        let (items, next_page_token) =
            routing::list_waiting_for_agent(&mut conn, &tenant_id, &agent_id, &queue_id, &page)
                .await?;
        Ok(pb::ListWaitingWorkResponse {
            items: items.iter().map(convert::waiting_item).collect(),
            next_page_token,
        })
    }

    async fn claim_waiting_work_impl(
        &self,
        request: Request<pb::ClaimWaitingWorkRequest>,
    ) -> Result<pb::ClaimWaitingWorkResponse> {
        let (identity, tenant_id) =
            checked_caller(&request, &[Role::Agent], "AgentService/ClaimWaitingWork")?;
        let agent_id = caller_agent_id(&identity)?;
        let req = request.into_inner();
        let key = RequestKey::parse(
            &identity,
            &tenant_id,
            CLAIM_WAITING_WORK,
            &req.request_id,
            &req,
        )?;
        let conversation_id = parse_id("conversation_id", &req.conversation_id)?;
        self.refresh_own_name(&identity, &tenant_id, &agent_id)
            .await?;

        let mut tx = match begin_mutation(&self.context.store, &key).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let agent = catalog::agent_for_write(&mut tx, &tenant_id, &agent_id)
            .await?
            .ok_or_else(|| agent_not_found(&agent_id))?;
        let now = now_micros();
        let Accepted { offer, outbox } = routing::claim_waiting(
            &mut tx,
            &agent,
            &conversation_id,
            now,
            self.lease_until(now),
        )
        .await?;
        let response = pb::ClaimWaitingWorkResponse {
            offer: Some(convert::offer(&offer)),
        };
        commit_mutation(tx, &key, &response).await?;
        info!(
            conversation_id = %conversation_id,
            agent_id = %agent_id,
            offer_id = %offer.id,
            "waiting conversation claimed"
        );
        self.apply_now(&outbox).await;
        Ok(response)
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn set_presence(
        &self,
        request: Request<pb::SetPresenceRequest>,
    ) -> std::result::Result<Response<pb::SetPresenceResponse>, Status> {
        respond(self.set_presence_impl(request).await)
    }

    async fn get_agent_state(
        &self,
        request: Request<pb::GetAgentStateRequest>,
    ) -> std::result::Result<Response<pb::GetAgentStateResponse>, Status> {
        respond(self.get_agent_state_impl(request).await)
    }

    type StreamOffersStream = ReceiverStream<std::result::Result<pb::StreamOffersResponse, Status>>;

    async fn stream_offers(
        &self,
        request: Request<pb::StreamOffersRequest>,
    ) -> std::result::Result<Response<Self::StreamOffersStream>, Status> {
        respond(self.stream_offers_impl(request).await)
    }

    async fn accept_offer(
        &self,
        request: Request<pb::AcceptOfferRequest>,
    ) -> std::result::Result<Response<pb::AcceptOfferResponse>, Status> {
        respond(self.accept_offer_impl(request).await)
    }

    async fn reject_offer(
        &self,
        request: Request<pb::RejectOfferRequest>,
    ) -> std::result::Result<Response<pb::RejectOfferResponse>, Status> {
        respond(self.reject_offer_impl(request).await)
    }

    async fn list_waiting_work(
        &self,
        request: Request<pb::ListWaitingWorkRequest>,
    ) -> std::result::Result<Response<pb::ListWaitingWorkResponse>, Status> {
        respond(self.list_waiting_work_impl(request).await)
    }

    async fn claim_waiting_work(
        &self,
        request: Request<pb::ClaimWaitingWorkRequest>,
    ) -> std::result::Result<Response<pb::ClaimWaitingWorkResponse>, Status> {
        respond(self.claim_waiting_work_impl(request).await)
    }
}
