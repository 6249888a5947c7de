//! `switchboard.routing.internal.v1.RoutingInternalService`: what conversation-svc (and
//! reporting-svc, for events) asks of routing. Callers must be services; the tenant comes
//! in the request body.

use switchboard_proto::routing::internal::v1 as ipb;
use switchboard_proto::routing::internal::v1::routing_internal_service_server::RoutingInternalService;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::identity::Role;
use switchboard_server_kit::mask_pans;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::api::queue::parse_channel;
use crate::api::{MAX_TEXT, caller, optional_id, parse_id, require_any, respond};
use crate::convert;
use crate::domain::{Channel, OfferKind, Presence, Queue};
use crate::engine::{Context, streams};
use crate::error::{Error, Result};
use crate::store::catalog;
use crate::store::routing::{self, DirectedOffer, EnqueueInput, ReserveInput};

/// Serves RoutingInternalService.
#[derive(Clone)]
pub struct InternalApi {
    context: Context,
}

impl InternalApi {
    /// The service over `context`.
    pub fn new(context: Context) -> InternalApi {
        InternalApi { context }
    }
}

/// Checks that the caller is a service.
fn authorize<T>(request: &Request<T>, rpc: &str) -> Result<()> {
    let identity = caller(request)?;
    require_any(&identity, &[Role::Service], rpc)
}

/// The tenant's queue, NOT_FOUND when missing, FAILED_PRECONDITION when it does not
/// accept `channel`.
async fn queue_accepting(
    context: &Context,
    tenant_id: &str,
    queue_id: &str,
    channel: Channel,
) -> Result<Queue> {
    let mut conn = context.store.conn().await?;
    let queue = catalog::get_queue(&mut conn, tenant_id, queue_id)
        .await?
        .ok_or_else(|| Error::not_found("queue", queue_id))?;
    if !queue.accepts(channel) {
        return Err(Error::WrongState(format!(
            "queue {queue_id} does not accept channel {channel:?}"
        )));
    }
    Ok(queue)
}

impl InternalApi {
    async fn get_agent_queues_impl(
        &self,
        request: Request<ipb::GetAgentQueuesRequest>,
    ) -> Result<ipb::GetAgentQueuesResponse> {
        authorize(&request, "RoutingInternalService/GetAgentQueues")?;
        let req = request.into_inner();
        let tenant_id = parse_id("tenant_id", &req.tenant_id)?;
        let agent_id = parse_id("agent_id", &req.agent_id)?;
        let mut conn = self.context.store.conn().await?;
        let agent = catalog::get_agent(&mut conn, &tenant_id, &agent_id).await?;
        Ok(ipb::GetAgentQueuesResponse {
            queue_ids: agent.map(|a| a.queue_ids).unwrap_or_default(),
        })
    }

    async fn check_queue_impl(
        &self,
        request: Request<ipb::CheckQueueRequest>,
    ) -> Result<ipb::CheckQueueResponse> {
        authorize(&request, "RoutingInternalService/CheckQueue")?;
        let req = request.into_inner();
        let tenant_id = parse_id("tenant_id", &req.tenant_id)?;
        let queue_id = parse_id("queue_id", &req.queue_id)?;
        // Without a channel the question is only whether the queue is the tenant's (a
        // reference check, for example a wrap-up reason's queues).
        let queue = if req.channel == 0 {
            let mut conn = self.context.store.conn().await?;
            catalog::get_queue(&mut conn, &tenant_id, &queue_id)
                .await?
                .ok_or_else(|| Error::not_found("queue", &queue_id))?
        } else {
            let channel = parse_channel("channel", req.channel)?;
            queue_accepting(&self.context, &tenant_id, &queue_id, channel).await?
        };
        Ok(ipb::CheckQueueResponse {
            queue: Some(convert::queue(&queue)),
        })
    }

    async fn enqueue_conversation_impl(
        &self,
        request: Request<ipb::EnqueueConversationRequest>,
    ) -> Result<ipb::EnqueueConversationResponse> {
        authorize(&request, "RoutingInternalService/EnqueueConversation")?;
        let req = request.into_inner();
        let tenant_id = parse_id("tenant_id", &req.tenant_id)?;
        let conversation_id = parse_id("conversation_id", &req.conversation_id)?;
        let queue_id = parse_id("queue_id", &req.queue_id)?;
        let channel = parse_channel("channel", req.channel)?;
        let enqueue_key = req.enqueue_key.trim();
        if enqueue_key.is_empty() {
            return Err(Error::invalid("enqueue_key", "is required"));
        }
        if enqueue_key.chars().count() > MAX_TEXT {
            return Err(Error::invalid(
                "enqueue_key",
                format!("must be at most {MAX_TEXT} characters"),
            ));
        }
        // conversation-svc masks these too; masking again here keeps this service's
        // tables free of card numbers whoever the caller is.
        let customer_display_name: String = mask_pans(req.customer_display_name.trim())
            .chars()
            .take(MAX_TEXT)
            .collect();
        let channel_address: String = mask_pans(req.channel_address.trim())
            .chars()
            .take(MAX_TEXT)
            .collect();
        let now = now_micros();
        let enqueue_time = match req.wait_start_time.as_ref() {
            None => now,
            Some(ts) => convert::timestamp_micros("wait_start_time", ts)?,
        };
        let queue = queue_accepting(&self.context, &tenant_id, &queue_id, channel).await?;

        let mut tx = self.context.store.begin().await?;
        let item = routing::enqueue(
            &mut tx,
            &EnqueueInput {
                tenant_id,
                conversation_id,
                queue,
                channel,
                customer_display_name,
                channel_address,
                enqueue_key: enqueue_key.to_owned(),
                enqueue_time,
            },
            now,
        )
        .await?;
        tx.commit().await?;
        self.context.wake_matcher();
        info!(
            conversation_id = %item.conversation_id,
            queue_id = %item.queue_id,
            "conversation enqueued"
        );
        Ok(ipb::EnqueueConversationResponse {
            item: Some(convert::waiting_item(&item)),
        })
    }

    async fn offer_to_agent_impl(
        &self,
        request: Request<ipb::OfferToAgentRequest>,
    ) -> Result<ipb::OfferToAgentResponse> {
        authorize(&request, "RoutingInternalService/OfferToAgent")?;
        let req = request.into_inner();
        let tenant_id = parse_id("tenant_id", &req.tenant_id)?;
        let conversation_id = parse_id("conversation_id", &req.conversation_id)?;
        let agent_id = parse_id("agent_id", &req.agent_id)?;
        let queue_id = parse_id("queue_id", &req.queue_id)?;
        let reference_id = parse_id("reference_id", &req.reference_id)?;
        let sender_id = optional_id("sender_id", &req.sender_id)?.unwrap_or_default();
        let channel = parse_channel("channel", req.channel)?;
        let kind = match OfferKind::from_i32(req.kind) {
            Some(kind @ (OfferKind::Transfer | OfferKind::Consult | OfferKind::Conference)) => kind,
            _ => {
                return Err(Error::invalid(
                    "kind",
                    "must be TRANSFER, CONSULT or CONFERENCE",
                ));
            }
        };
        let text =
            |value: &str| -> String { mask_pans(value.trim()).chars().take(MAX_TEXT).collect() };
        let now = now_micros();
        let wait_start_time = match req.wait_start_time.as_ref() {
            None => now,
            Some(ts) => convert::timestamp_micros("wait_start_time", ts)?,
        };
        let queue = queue_accepting(&self.context, &tenant_id, &queue_id, channel).await?;
        let mut tx = self.context.store.begin().await?;
        let offer = routing::create_directed_offer(
            &mut tx,
            &DirectedOffer {
                tenant_id: &tenant_id,
                conversation_id: &conversation_id,
                agent_id: &agent_id,
                queue: &queue,
                channel,
                kind,
                reference_id: &reference_id,
                sender_id: &sender_id,
                sender_display_name: &text(&req.sender_display_name),
                note: &text(&req.note),
                customer_display_name: &text(&req.customer_display_name),
                channel_address: &text(&req.channel_address),
                wait_start_time,
            },
            now,
        )
        .await?;
        tx.commit().await?;
        self.context.wake_expiry();
        info!(
            conversation_id = %conversation_id,
            agent_id = %agent_id,
            offer_id = %offer.id,
            kind = ?offer.kind,
            "directed offer made"
        );
        Ok(ipb::OfferToAgentResponse {
            offer: Some(convert::offer(&offer)),
            transfer_fallback: queue.transfer_fallback.as_i32(),
        })
    }

    async fn withdraw_offer_impl(
        &self,
        request: Request<ipb::WithdrawOfferRequest>,
    ) -> Result<ipb::WithdrawOfferResponse> {
        authorize(&request, "RoutingInternalService/WithdrawOffer")?;
        let req = request.into_inner();
        let tenant_id = parse_id("tenant_id", &req.tenant_id)?;
        let conversation_id = parse_id("conversation_id", &req.conversation_id)?;
        let reference_id = parse_id("reference_id", &req.reference_id)?;
        let mut tx = self.context.store.begin().await?;
        let withdrawn = routing::withdraw_offer_by_reference(
            &mut tx,
            &tenant_id,
            &conversation_id,
            &reference_id,
            now_micros(),
        )
        .await?;
        tx.commit().await?;
        if withdrawn {
            info!(conversation_id = %conversation_id, reference_id = %reference_id, "directed offer withdrawn");
        }
        Ok(ipb::WithdrawOfferResponse { withdrawn })
    }

    async fn cancel_waiting_impl(
        &self,
        request: Request<ipb::CancelWaitingRequest>,
    ) -> Result<ipb::CancelWaitingResponse> {
        authorize(&request, "RoutingInternalService/CancelWaiting")?;
        let req = request.into_inner();
        let tenant_id = parse_id("tenant_id", &req.tenant_id)?;
        let conversation_id = parse_id("conversation_id", &req.conversation_id)?;
        let mut tx = self.context.store.begin().await?;
        let was_waiting =
            routing::cancel_waiting(&mut tx, &tenant_id, &conversation_id, now_micros()).await?;
        tx.commit().await?;
        if was_waiting {
            self.context.wake_matcher();
            info!(conversation_id = %conversation_id, "waiting cancelled");
        }
        Ok(ipb::CancelWaitingResponse { was_waiting })
    }

    async fn release_capacity_impl(
        &self,
        request: Request<ipb::ReleaseCapacityRequest>,
    ) -> Result<ipb::ReleaseCapacityResponse> {
        authorize(&request, "RoutingInternalService/ReleaseCapacity")?;
        let req = request.into_inner();
        let tenant_id = parse_id("tenant_id", &req.tenant_id)?;
        let conversation_id = parse_id("conversation_id", &req.conversation_id)?;
        let agent_id = parse_id("agent_id", &req.agent_id)?;
        let mut tx = self.context.store.begin().await?;
        let released_units = routing::release_capacity(
            &mut tx,
            &tenant_id,
            &conversation_id,
            &agent_id,
            now_micros(),
        )
        .await?;
        tx.commit().await?;
        if released_units > 0 {
            self.context.wake_matcher();
            info!(
                conversation_id = %conversation_id,
                agent_id = %agent_id,
                units = released_units,
                "capacity released"
            );
        }
        Ok(ipb::ReleaseCapacityResponse { released_units })
    }

    async fn reserve_capacity_impl(
        &self,
        request: Request<ipb::ReserveCapacityRequest>,
    ) -> Result<ipb::ReserveCapacityResponse> {
        authorize(&request, "RoutingInternalService/ReserveCapacity")?;
        let req = request.into_inner();
        let tenant_id = parse_id("tenant_id", &req.tenant_id)?;
        let conversation_id = parse_id("conversation_id", &req.conversation_id)?;
        let agent_id = parse_id("agent_id", &req.agent_id)?;
        let channel = parse_channel("channel", req.channel)?;
        let queue_id = optional_id("queue_id", &req.queue_id)?;
        let mut conn = self.context.store.conn().await?;
        let queue = match &queue_id {
            Some(queue_id) => Some(
                catalog::get_queue(&mut conn, &tenant_id, queue_id)
                    .await?
                    .ok_or_else(|| Error::not_found("queue", queue_id))?,
            ),
            None => None,
        };
        let agent = catalog::get_agent(&mut conn, &tenant_id, &agent_id)
            .await?
            .ok_or_else(|| Error::not_found("agent", &agent_id))?;
        drop(conn);
        // Only a supervisor's override reaches an agent who is not Available (product rule 3).
        if !req.override_limits && agent.presence != Presence::Available {
            return Err(Error::WrongState(format!(
                "agent {agent_id} is {:?}, not Available; assigning anyway needs override_limits",
                agent.presence
            )));
        }
        let mut tx = self.context.store.begin().await?;
        let (units, units_over_capacity) = routing::reserve_capacity(
            &mut tx,
            &ReserveInput {
                tenant_id: &tenant_id,
                conversation_id: &conversation_id,
                agent_id: &agent_id,
                channel,
                queue: queue.as_ref(),
                override_capacity: req.override_limits,
            },
            now_micros(),
        )
        .await?;
        tx.commit().await?;
        info!(
            conversation_id = %conversation_id,
            agent_id = %agent_id,
            units,
            units_over_capacity,
            "capacity reserved"
        );
        Ok(ipb::ReserveCapacityResponse {
            units,
            units_over_capacity,
            agent_display_name: agent.display_name,
            wrap_up_time_limit: queue.as_ref().and_then(convert::wrap_up_time_limit),
        })
    }

    fn subscribe_impl(
        &self,
        request: Request<ipb::SubscribeRequest>,
    ) -> Result<ReceiverStream<std::result::Result<ipb::SubscribeResponse, Status>>> {
        authorize(&request, "RoutingInternalService/Subscribe")?;
        let after = request.get_ref().after_sequence;
        if after < 0 {
            return Err(Error::invalid("after_sequence", "must not be negative"));
        }
        Ok(streams::subscribe(
            self.context.store.clone(),
            after,
            self.context.pace(),
            self.context.shutdown.clone(),
        ))
    }
}

#[tonic::async_trait]
impl RoutingInternalService for InternalApi {
    async fn check_queue(
        &self,
        request: Request<ipb::CheckQueueRequest>,
    ) -> std::result::Result<Response<ipb::CheckQueueResponse>, Status> {
        respond(self.check_queue_impl(request).await)
    }

    async fn enqueue_conversation(
        &self,
        request: Request<ipb::EnqueueConversationRequest>,
    ) -> std::result::Result<Response<ipb::EnqueueConversationResponse>, Status> {
        respond(self.enqueue_conversation_impl(request).await)
    }

    async fn offer_to_agent(
        &self,
        request: Request<ipb::OfferToAgentRequest>,
    ) -> std::result::Result<Response<ipb::OfferToAgentResponse>, Status> {
        respond(self.offer_to_agent_impl(request).await)
    }

    async fn cancel_waiting(
        &self,
        request: Request<ipb::CancelWaitingRequest>,
    ) -> std::result::Result<Response<ipb::CancelWaitingResponse>, Status> {
        respond(self.cancel_waiting_impl(request).await)
    }

    async fn withdraw_offer(
        &self,
        request: Request<ipb::WithdrawOfferRequest>,
    ) -> std::result::Result<Response<ipb::WithdrawOfferResponse>, Status> {
        respond(self.withdraw_offer_impl(request).await)
    }

    async fn release_capacity(
        &self,
        request: Request<ipb::ReleaseCapacityRequest>,
    ) -> std::result::Result<Response<ipb::ReleaseCapacityResponse>, Status> {
        respond(self.release_capacity_impl(request).await)
    }

    async fn reserve_capacity(
        &self,
        request: Request<ipb::ReserveCapacityRequest>,
    ) -> std::result::Result<Response<ipb::ReserveCapacityResponse>, Status> {
        respond(self.reserve_capacity_impl(request).await)
    }

    type SubscribeStream = ReceiverStream<std::result::Result<ipb::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        request: Request<ipb::SubscribeRequest>,
    ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
        respond(self.subscribe_impl(request))
    }

    async fn get_agent_queues(
        &self,
        request: Request<ipb::GetAgentQueuesRequest>,
    ) -> std::result::Result<Response<ipb::GetAgentQueuesResponse>, Status> {
        respond(self.get_agent_queues_impl(request).await)
    }
}
