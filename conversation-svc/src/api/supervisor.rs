//! `switchboard.conversation.v1.SupervisorService`: the service and counts by status
//! label; the actions on one conversation are in `supervision`, the dashboard stream of
//! ongoing conversations in `ongoing`.

use std::pin::Pin;

use futures::Stream;
use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::conversation::v1::supervisor_service_server::SupervisorService;
use switchboard_server_kit::Role;
use tonic::{Request, Response, Status};

use super::{Shared, authorized, convert, optional_uuid};
use crate::error::Result;

/// Supervisor actions and insights.
#[derive(Clone, Debug)]
pub struct SupervisorApi {
    pub(super) ctx: Shared,
}

impl SupervisorApi {
    /// The service over `ctx`.
    pub fn new(ctx: Shared) -> SupervisorApi {
        SupervisorApi { ctx }
    }

    async fn count_by_status(
        &self,
        request: Request<pb::CountConversationsByStatusRequest>,
    ) -> Result<pb::CountConversationsByStatusResponse> {
        let identity = authorized(
            &request,
            &[Role::Supervisor, Role::Administrator],
            "counting conversations by status",
        )?;
        let queue_id = optional_uuid("queue_id", &request.get_ref().queue_id)?;
        let counts = self
            .ctx
            .store
            .count_by_status(&identity.tenant_id, queue_id.as_deref())
            .await?;
        Ok(pb::CountConversationsByStatusResponse {
            counts: counts.iter().map(convert::status_count).collect(),
        })
    }
}

fn respond<T>(result: Result<T>) -> std::result::Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

pub(super) type OngoingStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamOngoingConversationsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SupervisorService for SupervisorApi {
    async fn monitor_conversation(
        &self,
        request: Request<pb::MonitorConversationRequest>,
    ) -> Result<Response<pb::MonitorConversationResponse>, Status> {
        respond(self.monitor(request).await)
    }

    async fn join_conversation(
        &self,
        request: Request<pb::JoinConversationRequest>,
    ) -> Result<Response<pb::JoinConversationResponse>, Status> {
        respond(self.join(request).await)
    }

    async fn assign_conversation(
        &self,
        request: Request<pb::AssignConversationRequest>,
    ) -> Result<Response<pb::AssignConversationResponse>, Status> {
        respond(self.assign(request).await)
    }

    async fn transfer_conversation(
        &self,
        request: Request<pb::SupervisorServiceTransferConversationRequest>,
    ) -> Result<Response<pb::SupervisorServiceTransferConversationResponse>, Status> {
        respond(self.transfer(request).await)
    }

    async fn force_close_conversation(
        &self,
        request: Request<pb::ForceCloseConversationRequest>,
    ) -> Result<Response<pb::ForceCloseConversationResponse>, Status> {
        respond(self.force_close(request).await)
    }

    async fn count_conversations_by_status(
        &self,
        request: Request<pb::CountConversationsByStatusRequest>,
    ) -> Result<Response<pb::CountConversationsByStatusResponse>, Status> {
        respond(self.count_by_status(request).await)
    }

    type StreamOngoingConversationsStream = OngoingStream;

    async fn stream_ongoing_conversations(
        &self,
        request: Request<pb::StreamOngoingConversationsRequest>,
    ) -> Result<Response<Self::StreamOngoingConversationsStream>, Status> {
        respond(self.ongoing(request).await)
    }
}
