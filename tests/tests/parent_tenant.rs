//! Product rule 2, through the gateway with distinct users on SQLite and PostgreSQL: the demo
//! tenant's administrator creates a child tenant whose own administrator sets up web chat and
//! whose agent takes a customer's chat. The demo (parent) tenant's supervisor and
//! administrator read that chat by naming the child tenant, and the supervisor unassigns it:
//! it waits in the child's queue again, the agent's capacity is released and it is offered
//! again. A parent agent lacks the role; a sibling tenant, another top-level tenant and the
//! child naming its parent find nothing, exactly as for a tenant that does not exist.

use switchboard::seed::Bearer;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::directory::v1::directory_service_client::DirectoryServiceClient;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::flows::{
    WAIT, set_presence_as, set_up_web_chat, start_chat_in, take_as, wait_for_capacity_as,
};
use switchboard_tests::{Backend, Harness, eventually, rid};
use tonic::Code;

switchboard_tests::on_each_backend!(
    a_parent_tenant_s_supervisor_reads_and_unassigns_a_child_tenant_s_conversation
);

async fn a_parent_tenant_s_supervisor_reads_and_unassigns_a_child_tenant_s_conversation(
    backend: &Backend,
) {
    let h = Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()));
    parent_tenant(&h).await;
    h.stop().await.expect("clean stop");
}

/// A child tenant of the demo tenant, created by the demo administrator.
async fn child_tenant(h: &Harness, name: &str) -> dir::Tenant {
    DirectoryServiceClient::with_interceptor(h.channel.clone(), h.bearer("admin"))
        .create_tenant(dir::CreateTenantRequest {
            request_id: rid(),
            tenant: Some(dir::Tenant {
                display_name: name.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("the demo administrator creates a child tenant")
        .into_inner()
        .tenant
        .expect("tenant")
}

/// A user of the demo tenant's descendant `tenant_id`, created by the demo administrator.
async fn user_of(h: &Harness, tenant_id: &str, name: &str, role: dir::Role) -> dir::User {
    let email = format!("{}@child.test", name.to_lowercase().replace(' ', "."));
    DirectoryServiceClient::with_interceptor(h.channel.clone(), h.bearer("admin"))
        .create_user(dir::CreateUserRequest {
            request_id: rid(),
            user: Some(dir::User {
                tenant_id: tenant_id.to_owned(),
                display_name: name.into(),
                email,
                roles: vec![role as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("the demo administrator creates a user of a child tenant")
        .into_inner()
        .user
        .expect("user")
}

fn get_in(tenant_id: &str, conversation_id: &str) -> conv::GetConversationRequest {
    conv::GetConversationRequest {
        conversation_id: conversation_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        ..Default::default()
    }
}

fn unassign_in(tenant_id: &str, conversation_id: &str) -> conv::UnassignConversationRequest {
    conv::UnassignConversationRequest {
        request_id: rid(),
        conversation_id: conversation_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
    }
}

/// The conversation's events as the demo supervisor reads them, naming `tenant_id`.
async fn events_in(h: &Harness, tenant_id: &str, id: &str) -> Vec<conv::ConversationEvent> {
    h.conversations("supervisor")
        .list_conversation_events(conv::ListConversationEventsRequest {
            conversation_id: id.to_owned(),
            page_size: 1000,
            tenant_id: tenant_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("the parent's supervisor lists the events")
        .into_inner()
        .events
}

async fn parent_tenant(h: &Harness) {
    let demo = h.creds.tenant_id.clone();
    let child = child_tenant(h, "Demo Subsidiary").await;
    assert_eq!(child.parent_tenant_id, demo);
    let sibling = child_tenant(h, "Demo Outlet").await;
    let child_admin = user_of(h, &child.id, "Cleo Admin", dir::Role::Administrator).await;
    let child_agent = user_of(h, &child.id, "Cody Agent", dir::Role::Agent).await;
    let sibling_supervisor = user_of(h, &sibling.id, "Sid Supervisor", dir::Role::Supervisor).await;
    let agent: Bearer = h.bearer_for(&child_agent.id);

    // The child's administrator sets up web chat; its bot starts a chat that its agent takes.
    let web_chat = set_up_web_chat(h, h.bearer_for(&child_admin.id), &[&child_agent]).await;
    assert_eq!(web_chat.queue.tenant_id, child.id);
    let chat = start_chat_in(h, web_chat.bot, &web_chat.queue.id, "subsidiary-visitor-1").await;
    assert_eq!(chat.tenant_id, child.id);
    take_as(h, agent.clone(), &chat.id).await;
    wait_for_capacity_as(h, agent.clone(), 1).await;
    // The agent stops taking work, so the chat waits in its queue once unassigned.
    set_presence_as(h, agent.clone(), routing::Presence::Away).await;

    // Naming nothing, the parent's supervisor looks in its own tenant, where the chat is not.
    let err = h
        .conversations("supervisor")
        .get_conversation(get_in("", &chat.id))
        .await
        .expect_err("not in the parent tenant");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // Naming the child, the parent's supervisor and administrator list, get and read it,
    // although another agent owns it: as a supervisor of the child would.
    for handle in ["supervisor", "admin"] {
        let mut client = h.conversations(handle);
        let listed = client
            .list_conversations(conv::ListConversationsRequest {
                tenant_id: child.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{handle} lists the child's conversations: {e}"))
            .into_inner()
            .conversations;
        assert_eq!(
            listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            [chat.id.as_str()],
            "{handle} sees the child's conversations, and only them"
        );
        let got = client
            .get_conversation(get_in(&child.id, &chat.id))
            .await
            .unwrap_or_else(|e| panic!("{handle} gets the child's conversation: {e}"))
            .into_inner()
            .conversation
            .expect("conversation");
        assert_eq!(got.tenant_id, child.id);
        assert_eq!(got.state, State::Active as i32);
        assert_eq!(got.owner_agent_id, child_agent.id);
        let texts: Vec<String> = client
            .list_messages(conv::ListMessagesRequest {
                conversation_id: chat.id.clone(),
                tenant_id: child.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{handle} reads the child's messages: {e}"))
            .into_inner()
            .messages
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert!(
            texts.iter().any(|t| t == "Hello, I need help"),
            "{handle} reads the customer: {texts:?}"
        );
    }

    // A parent agent has no role that reaches a child tenant.
    let mut parent_agent = h.conversations("agent1");
    let err = parent_agent
        .get_conversation(get_in(&child.id, &chat.id))
        .await
        .expect_err("a parent agent reads");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = parent_agent
        .unassign_conversation(unassign_in(&child.id, &chat.id))
        .await
        .expect_err("a parent agent unassigns");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // A sibling's supervisor, another top-level tenant's administrator and the child's own
    // administrator naming its parent find nothing, and are told exactly what a tenant that
    // does not exist gets.
    let unknown = uuid::Uuid::new_v4().to_string();
    let (_, globex_admin) = h
        .new_tenant_with_administrator("Globex", "Grace Admin", "grace@globex.test")
        .await;
    let mut sibling_client = h.conversations_as(h.bearer_for(&sibling_supervisor.id));
    for tenant in [&child.id, &unknown] {
        let err = sibling_client
            .get_conversation(get_in(tenant, &chat.id))
            .await
            .expect_err("a sibling reads");
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert_eq!(err.message(), format!("tenant {tenant} not found"));
    }
    let err = sibling_client
        .unassign_conversation(unassign_in(&child.id, &chat.id))
        .await
        .expect_err("a sibling unassigns");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = ConversationServiceClient::with_interceptor(h.channel.clone(), globex_admin)
        .unassign_conversation(unassign_in(&child.id, &chat.id))
        .await
        .expect_err("another top-level tenant unassigns");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), format!("tenant {} not found", child.id));
    let err = h
        .conversations_as(h.bearer_for(&child_admin.id))
        .list_conversations(conv::ListConversationsRequest {
            tenant_id: demo.clone(),
            ..Default::default()
        })
        .await
        .expect_err("the child reads its parent");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), format!("tenant {demo} not found"));
    let unchanged = h
        .conversations_as(agent.clone())
        .get_conversation(get_in("", &chat.id))
        .await
        .expect("the owner still reads it")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(unchanged.state, State::Active as i32);
    assert_eq!(unchanged.owner_agent_id, child_agent.id);

    // The parent's supervisor unassigns it: OPEN again in the child's queue, and the
    // supervisor, a user of another tenant, recorded as who did it.
    let request = unassign_in(&child.id, &chat.id);
    let open = h
        .conversations("supervisor")
        .unassign_conversation(request.clone())
        .await
        .expect("the parent's supervisor unassigns")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(open.state, State::Open as i32);
    assert!(open.owner_agent_id.is_empty());
    assert_eq!(open.queue_id, web_chat.queue.id);
    let events = events_in(h, &child.id, &chat.id).await;
    let unassigned = events
        .iter()
        .find(|e| e.event_type == conv::EventType::Unassigned as i32)
        .expect("an UNASSIGNED event");
    assert_eq!(unassigned.actor_id, h.creds.user("supervisor").id);
    assert_eq!(unassigned.previous_agent_id, child_agent.id);
    assert_eq!(unassigned.tenant_id, child.id);

    // A retry is answered the same and changes nothing.
    let again = h
        .conversations("supervisor")
        .unassign_conversation(request)
        .await
        .expect("a retry is answered")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(again, open, "a retry gets the same answer");
    assert_eq!(
        events_in(h, &child.id, &chat.id).await.len(),
        events.len(),
        "and changes nothing"
    );

    // routing-svc releases the agent's capacity and has the chat waiting in its queue.
    wait_for_capacity_as(h, agent.clone(), 0).await;
    let child_queues = h.queues_as(h.bearer_for(&child_admin.id));
    eventually("the chat waiting in the child's queue", WAIT, || {
        let mut queues = child_queues.clone();
        let queue_id = web_chat.queue.id.clone();
        async move {
            let state = queues
                .get_queue_state(routing::GetQueueStateRequest { queue_id })
                .await
                .ok()?
                .into_inner()
                .queue_state?;
            (state.waiting == 1).then_some(())
        }
    })
    .await;

    // Offered again: the agent, available again, receives it and takes it.
    let taken = take_as(h, agent.clone(), &chat.id).await;
    assert_eq!(taken.owner_agent_id, child_agent.id);
    wait_for_capacity_as(h, agent, 1).await;
}
