//! `switchboard.conversation.v1.SupervisorService`: in the contract, not served yet.

use std::pin::Pin;

use futures::Stream;
use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::conversation::v1::supervisor_service_server::SupervisorService;
use tonic::{Request, Response, Status};

use super::not_served;

const SERVICE: &str = "SupervisorService";

/// Supervisor actions; every RPC answers UNIMPLEMENTED for now.
#[derive(Clone, Debug, Default)]
pub struct SupervisorApi;

type OngoingStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamOngoingConversationsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SupervisorService for SupervisorApi {
    async fn monitor_conversation(
        &self,
        _: Request<pb::MonitorConversationRequest>,
    ) -> Result<Response<pb::MonitorConversationResponse>, Status> {
        not_served(SERVICE, "MonitorConversation")
    }

    async fn join_conversation(
        &self,
        _: Request<pb::JoinConversationRequest>,
    ) -> Result<Response<pb::JoinConversationResponse>, Status> {
        not_served(SERVICE, "JoinConversation")
    }

    async fn assign_conversation(
        &self,
        _: Request<pb::AssignConversationRequest>,
    ) -> Result<Response<pb::AssignConversationResponse>, Status> {
        not_served(SERVICE, "AssignConversation")
    }

    async fn transfer_conversation(
        &self,
        _: Request<pb::SupervisorServiceTransferConversationRequest>,
    ) -> Result<Response<pb::SupervisorServiceTransferConversationResponse>, Status> {
        not_served(SERVICE, "TransferConversation")
    }

    async fn force_close_conversation(
        &self,
        _: Request<pb::ForceCloseConversationRequest>,
    ) -> Result<Response<pb::ForceCloseConversationResponse>, Status> {
        not_served(SERVICE, "ForceCloseConversation")
    }

    async fn count_conversations_by_status(
        &self,
        _: Request<pb::CountConversationsByStatusRequest>,
    ) -> Result<Response<pb::CountConversationsByStatusResponse>, Status> {
        not_served(SERVICE, "CountConversationsByStatus")
    }

    type StreamOngoingConversationsStream = OngoingStream;

    async fn stream_ongoing_conversations(
        &self,
        _: Request<pb::StreamOngoingConversationsRequest>,
    ) -> Result<Response<Self::StreamOngoingConversationsStream>, Status> {
        not_served(SERVICE, "StreamOngoingConversations")
    }
}
