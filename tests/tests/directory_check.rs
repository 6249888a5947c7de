//! Routing profiles are for users of the caller's tenant only. routing-svc cannot know who a
//! user is (the gateway owns users), so it asks the gateway's directory on its internal
//! listener: another tenant's administrator cannot give the demo tenant's agent a profile,
//! and a profile shows the directory's name at once.

use switchboard_proto::directory::v1 as dir;
use switchboard_proto::directory::v1::directory_service_client::DirectoryServiceClient;
use switchboard_proto::routing::v1 as routing;
use switchboard_proto::routing::v1::queue_service_client::QueueServiceClient;
use switchboard_tests::flows::web_chat_capacity_profile;
use switchboard_tests::{Backend, Harness, rid};
use tonic::Code;

switchboard_tests::on_each_backend!(
    another_tenants_administrator_cannot_give_the_demo_agent_a_profile
);
async fn another_tenants_administrator_cannot_give_the_demo_agent_a_profile(backend: &Backend) {
    let harness = Harness::start(backend).await.expect("suite starts");
    foreign_profile_refused(&harness).await;
    harness.stop().await.expect("clean stop");
}

async fn foreign_profile_refused(h: &Harness) {
    let (_, admin_key) = h
        .new_tenant_with_administrator("Initech", "Ines Admin", "ines@initech.test")
        .await;
    let mut queues = QueueServiceClient::with_interceptor(h.channel.clone(), admin_key.clone());
    let capacity = web_chat_capacity_profile(&mut queues, 1).await;
    let profile_for = |agent_id: &str| routing::SetAgentProfileRequest {
        request_id: rid(),
        agent_profile: Some(routing::AgentProfile {
            agent_id: agent_id.to_owned(),
            capacity_profile_id: capacity.id.clone(),
            ..Default::default()
        }),
    };

    // The demo tenant's agent is, for this administrator, a user that does not exist.
    let agent1 = h.creds.user("agent1").id.clone();
    let demo_queues = h.queues("admin");
    let before = demo_queues
        .clone()
        .get_agent_profile(routing::GetAgentProfileRequest {
            agent_id: agent1.clone(),
        })
        .await
        .expect("the demo agent's profile")
        .into_inner()
        .agent_profile;
    let err = queues
        .set_agent_profile(profile_for(&agent1))
        .await
        .expect_err("a profile for another tenant's user");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), format!("user {agent1} not found"));
    let err = queues
        .get_agent_profile(routing::GetAgentProfileRequest {
            agent_id: agent1.clone(),
        })
        .await
        .expect_err("nothing was created in the second tenant");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let after = demo_queues
        .clone()
        .get_agent_profile(routing::GetAgentProfileRequest {
            agent_id: agent1.clone(),
        })
        .await
        .expect("the demo agent's profile")
        .into_inner()
        .agent_profile;
    assert_eq!(after, before, "the demo agent's profile is untouched");

    // The tenant's own agent gets a profile that shows the directory's name at once, before
    // the agent has ever called routing.
    let mut directory = DirectoryServiceClient::with_interceptor(h.channel.clone(), admin_key);
    let own = directory
        .create_user(dir::CreateUserRequest {
            request_id: rid(),
            user: Some(dir::User {
                display_name: "Peter Gibbons".into(),
                email: "peter@initech.test".into(),
                roles: vec![dir::Role::Agent as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("administrator creates an agent")
        .into_inner()
        .user
        .expect("user");
    let set = queues
        .set_agent_profile(profile_for(&own.id))
        .await
        .expect("a profile for the tenant's own agent")
        .into_inner()
        .agent_profile
        .expect("profile");
    assert_eq!(set.display_name, "Peter Gibbons");
}
