//! A second customer set up through the gateway alone, as docs/operations.md tells it: the
//! platform operator creates the tenant and its first administrator; that administrator
//! creates an agent, a program, a queue, a capacity profile, the agent's routing profile and
//! a bot key, and the bot's conversation stays in the new tenant. The operator is refused
//! everything but the platform.

use switchboard::seed::ApiKey;
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::directory::v1::directory_service_client::DirectoryServiceClient;
use switchboard_proto::directory::v1::platform_service_client::PlatformServiceClient;
use switchboard_proto::reporting::v1 as rep;
use switchboard_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::queue_service_client::QueueServiceClient;
use switchboard_tests::flows::set_up_web_chat;
use switchboard_tests::{Backend, Harness, rid};
use tonic::Code;

switchboard_tests::on_each_backend!(an_operator_and_a_new_administrator_set_up_a_second_tenant);
async fn an_operator_and_a_new_administrator_set_up_a_second_tenant(backend: &Backend) {
    let harness = Harness::start(backend).await.expect("suite starts");
    second_tenant(&harness).await;
    harness.stop().await.expect("clean stop");
}

async fn second_tenant(h: &Harness) {
    let (tenant, admin_key) = h
        .new_tenant_with_administrator("Globex", "Grace Admin", "grace@globex.test")
        .await;

    // The new administrator sets the tenant up.
    let mut directory =
        DirectoryServiceClient::with_interceptor(h.channel.clone(), admin_key.clone());
    let agent = directory
        .create_user(dir::CreateUserRequest {
            request_id: rid(),
            user: Some(dir::User {
                display_name: "Alex Globex".into(),
                email: "alex@globex.test".into(),
                roles: vec![dir::Role::Agent as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("administrator creates an agent")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(agent.tenant_id, tenant.id);
    let web_chat = set_up_web_chat(h, admin_key.clone(), &[&agent]).await;
    assert_eq!(web_chat.queue.tenant_id, tenant.id);
    // The demo tenant's queue is another tenant's.
    let err = QueueServiceClient::with_interceptor(h.channel.clone(), admin_key.clone())
        .get_queue(routing::GetQueueRequest {
            queue_id: h.creds.queue_id.clone(),
        })
        .await
        .expect_err("another tenant's queue");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // A bot of the new tenant starts a conversation there; the demo tenant never sees it.
    let mut bot = ConversationServiceClient::with_interceptor(h.channel.clone(), web_chat.bot);
    let conversation = bot
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: Channel::Webchat as i32,
            queue_id: web_chat.queue.id.clone(),
            contact: Some(conv::Contact {
                display_name: Some("Casey Customer".into()),
                ..Default::default()
            }),
            channel_address: "globex-visitor-1".into(),
            ..Default::default()
        })
        .await
        .expect("bot creates a conversation in the new tenant")
        .into_inner()
        .conversation
        .expect("conversation");
    let demo_view = h
        .conversations("supervisor")
        .list_conversations(conv::ListConversationsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("demo supervisor lists")
        .into_inner()
        .conversations;
    assert!(
        demo_view.iter().all(|c| c.id != conversation.id),
        "the demo tenant sees no Globex conversation"
    );

    // The operator reads no conversation and calls no other service.
    let operator_key = ApiKey::new(&h.creds.operator.operator_key).expect("ascii");
    let mut as_operator =
        ConversationServiceClient::with_interceptor(h.channel.clone(), operator_key.clone());
    let err = as_operator
        .get_conversation(conv::GetConversationRequest {
            conversation_id: conversation.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("operator reads a conversation");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = QueueServiceClient::with_interceptor(h.channel.clone(), operator_key.clone())
        .list_queues(routing::ListQueuesRequest::default())
        .await
        .expect_err("operator lists queues");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = ReportingServiceClient::with_interceptor(h.channel.clone(), operator_key.clone())
        .get_created_closed_report(rep::GetCreatedClosedReportRequest::default())
        .await
        .expect_err("operator reads a report");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = DirectoryServiceClient::with_interceptor(h.channel.clone(), operator_key)
        .list_users(dir::ListUsersRequest::default())
        .await
        .expect_err("operator lists users");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // And a tenant's administrator cannot act as an operator.
    let err = PlatformServiceClient::with_interceptor(h.channel.clone(), admin_key)
        .list_top_level_tenants(dir::ListTopLevelTenantsRequest::default())
        .await
        .expect_err("administrator lists top-level tenants");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}
