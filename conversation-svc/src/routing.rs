//! Calls to routing-svc's internal API, signed as conversation-svc.

use std::time::Duration;

use switchboard_proto::routing::internal::v1 as rpb;
use switchboard_proto::routing::internal::v1::routing_internal_service_client::RoutingInternalServiceClient;
use switchboard_proto::routing::v1::Queue;
use switchboard_server_kit::{Identity, IdentityKey, SignedChannel, signed_channel};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The service name conversation-svc signs its calls with.
pub const SERVICE_NAME: &str = "conversation-svc";

/// A client of `RoutingInternalService`; cheap to clone. The channel connects lazily, so
/// conversation-svc starts whether or not routing-svc is up.
#[derive(Clone, Debug)]
pub struct Routing {
    client: RoutingInternalServiceClient<SignedChannel>,
    health: HealthClient<SignedChannel>,
    timeout: Duration,
}

impl Routing {
    /// A client of routing-svc at `url`, with a deadline of `timeout` per call.
    pub fn new(url: &str, key: IdentityKey, timeout: Duration) -> anyhow::Result<Routing> {
        let channel = signed_channel(url, key, Identity::service(SERVICE_NAME))?;
        Ok(Routing {
            client: RoutingInternalServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            timeout,
        })
    }

    /// Whether routing-svc answers that it is SERVING (its health as a whole), within the
    /// deadline.
    pub async fn serving(&self) -> bool {
        let mut health = self.health.clone();
        let request = self.request(HealthCheckRequest {
            service: String::new(),
        });
        matches!(
            self.call(health.check(request)).await,
            Ok(answer) if answer.status == ServingStatus::Serving as i32
        )
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Runs one call under the deadline; a call still running then is DEADLINE_EXCEEDED.
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(
                "routing-svc did not answer in time",
            )),
        }
    }

    /// `CheckQueue`: the queue, if it exists in the tenant and accepts `channel`.
    pub async fn check_queue(
        &self,
        tenant_id: &str,
        queue_id: &str,
        channel: i32,
    ) -> Result<Queue, Status> {
        let mut client = self.client.clone();
        let request = self.request(rpb::CheckQueueRequest {
            tenant_id: tenant_id.to_owned(),
            queue_id: queue_id.to_owned(),
            channel,
        });
        let response = self.call(client.check_queue(request)).await?;
        response
            .queue
            .ok_or_else(|| Status::internal("routing-svc CheckQueue returned no queue"))
    }

    /// `EnqueueConversation`.
    pub async fn enqueue(&self, request: rpb::EnqueueConversationRequest) -> Result<(), Status> {
        let mut client = self.client.clone();
        let request = self.request(request);
        self.call(client.enqueue_conversation(request))
            .await
            .map(drop)
    }

    /// `ReleaseCapacity`.
    pub async fn release_capacity(
        &self,
        request: rpb::ReleaseCapacityRequest,
    ) -> Result<(), Status> {
        let mut client = self.client.clone();
        let request = self.request(request);
        self.call(client.release_capacity(request)).await.map(drop)
    }

    /// `CancelWaiting`: the conversation leaves its queue and pending offers are withdrawn.
    pub async fn cancel_waiting(&self, request: rpb::CancelWaitingRequest) -> Result<(), Status> {
        let mut client = self.client.clone();
        let request = self.request(request);
        self.call(client.cancel_waiting(request)).await.map(drop)
    }

    /// `WithdrawOffer`: the pending offer of one invitation is withdrawn.
    pub async fn withdraw_offer(&self, request: rpb::WithdrawOfferRequest) -> Result<(), Status> {
        let mut client = self.client.clone();
        let request = self.request(request);
        self.call(client.withdraw_offer(request)).await.map(drop)
    }

    /// `OfferToAgent`: a transfer or invitation offered to one agent, and the queue's transfer fallback.
    pub async fn offer_to_agent(
        &self,
        request: rpb::OfferToAgentRequest,
    ) -> Result<rpb::OfferToAgentResponse, Status> {
        let mut client = self.client.clone();
        let request = self.request(request);
        self.call(client.offer_to_agent(request)).await
    }

    /// `GetAgentQueues`: the queues `agent_id` serves; none without a routing profile.
    pub async fn agent_queues(
        &self,
        tenant_id: &str,
        agent_id: &str,
    ) -> Result<Vec<String>, Status> {
        let mut client = self.client.clone();
        let request = self.request(rpb::GetAgentQueuesRequest {
            tenant_id: tenant_id.to_owned(),
            agent_id: agent_id.to_owned(),
        });
        self.call(client.get_agent_queues(request))
            .await
            .map(|r| r.queue_ids)
    }

    /// `ReserveCapacity`: units held for the conversation with the agent, and by how many
    /// the agent is now over capacity.
    pub async fn reserve_capacity(
        &self,
        request: rpb::ReserveCapacityRequest,
    ) -> Result<rpb::ReserveCapacityResponse, Status> {
        let mut client = self.client.clone();
        let request = self.request(request);
        self.call(client.reserve_capacity(request)).await
    }
}

/// Whether a failed call will fail the same way however often it is retried.
pub fn is_permanent(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::PermissionDenied
    )
}
