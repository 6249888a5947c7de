//! Bad input through the gateway gets the documented status code and changes nothing.

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::internal::v1::SubscribeRequest;
use switchboard_proto::conversation::internal::v1::conversation_internal_service_client::ConversationInternalServiceClient;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::{Backend, Harness, rid};
use tonic::Code;

fn create_request(h: &Harness, request_id: String) -> conv::CreateConversationRequest {
    conv::CreateConversationRequest {
        request_id,
        channel: Channel::Webchat as i32,
        queue_id: h.creds.queue_id.clone(),
        contact: Some(conv::Contact {
            display_name: Some("Robin Customer".into()),
            ..Default::default()
        }),
        channel_address: "visitor-7".into(),
        ..Default::default()
    }
}

async fn conversation_count(h: &Harness) -> usize {
    h.conversations("supervisor")
        .list_conversations(conv::ListConversationsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("supervisor lists conversations")
        .into_inner()
        .conversations
        .len()
}

switchboard_tests::on_each_backend!(bad_input_is_refused_and_changes_nothing);
async fn bad_input_is_refused_and_changes_nothing(backend: &Backend) {
    let harness = Harness::start(backend).await.expect("suite starts");
    let h = &harness;
    let before = conversation_count(h).await;

    // No credentials, or bad ones.
    let mut anonymous = ConversationServiceClient::new(h.channel.clone());
    let err = anonymous
        .create_conversation(create_request(h, rid()))
        .await
        .expect_err("no credentials");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let mut forged = ConversationServiceClient::with_interceptor(
        h.channel.clone(),
        switchboard::seed::Bearer::new("not.a.jwt").expect("ascii"),
    );
    let err = forged
        .create_conversation(create_request(h, rid()))
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let mut wrong_key = ConversationServiceClient::with_interceptor(
        h.channel.clone(),
        switchboard::seed::ApiKey::new("sbk_00000000000000000000000000000000_nope").expect("ascii"),
    );
    let err = wrong_key
        .create_conversation(create_request(h, rid()))
        .await
        .expect_err("unknown api key");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Missing and malformed fields.
    let mut bot = h.bot_conversations();
    let err = bot
        .create_conversation(create_request(h, String::new()))
        .await
        .expect_err("missing request_id");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("request_id"), "{}", err.message());
    let mut no_channel = create_request(h, rid());
    no_channel.channel = Channel::Unspecified as i32;
    let err = bot
        .create_conversation(no_channel)
        .await
        .expect_err("no channel");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut bad_queue = create_request(h, rid());
    bad_queue.queue_id = "not-a-uuid".into();
    let err = bot
        .create_conversation(bad_queue)
        .await
        .expect_err("malformed queue id");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut unknown_queue = create_request(h, rid());
    unknown_queue.queue_id = uuid::Uuid::new_v4().to_string();
    let err = bot
        .create_conversation(unknown_queue)
        .await
        .expect_err("unknown queue");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let mut wrong_channel = create_request(h, rid());
    wrong_channel.channel = Channel::Voice as i32;
    let err = bot
        .create_conversation(wrong_channel)
        .await
        .expect_err("queue does not accept voice");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = h
        .conversations("agent1")
        .get_conversation(conv::GetConversationRequest {
            conversation_id: "42".into(),
            ..Default::default()
        })
        .await
        .expect_err("malformed conversation id");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = h
        .conversations("agent1")
        .get_conversation(conv::GetConversationRequest {
            conversation_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .expect_err("unknown conversation");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(
        conversation_count(h).await,
        before,
        "refused calls created nothing"
    );

    // A retried create returns the same conversation and creates one, not two.
    let request_id = rid();
    let first = bot
        .create_conversation(create_request(h, request_id.clone()))
        .await
        .expect("create")
        .into_inner()
        .conversation
        .expect("conversation");
    let retry = bot
        .create_conversation(create_request(h, request_id))
        .await
        .expect("retry")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(first.id, retry.id);
    assert_eq!(conversation_count(h).await, before + 1);

    // Wrong state: an OPEN conversation cannot be ended or wrapped up.
    let mut agent = h.conversations("agent1");
    let err = agent
        .end_conversation(conv::EndConversationRequest {
            request_id: rid(),
            conversation_id: first.id.clone(),
        })
        .await
        .expect_err("end an OPEN conversation");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = agent
        .submit_wrap_up(conv::SubmitWrapUpRequest {
            request_id: rid(),
            conversation_id: first.id.clone(),
            wrap_up_reason_ids: vec![h.creds.wrap_up_reason_ids[0].clone()],
            ..Default::default()
        })
        .await
        .expect_err("wrap up an OPEN conversation");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let still = agent
        .get_conversation(conv::GetConversationRequest {
            conversation_id: first.id.clone(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(still.state, conv::conversation::State::Open as i32);

    // Roles: an agent cannot change queues; presence RONA cannot be set by hand.
    let err = h
        .queues("agent1")
        .create_program(routing::CreateProgramRequest {
            request_id: rid(),
            program: Some(routing::Program {
                display_name: "Sneaky".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("agents do not administer");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = h
        .agent("agent1")
        .set_presence(routing::SetPresenceRequest {
            request_id: rid(),
            presence: routing::Presence::Rona as i32,
            ..Default::default()
        })
        .await
        .expect_err("RONA is set by the system only");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Internal services are never routed by the gateway, whatever the credentials.
    let mut internal =
        ConversationInternalServiceClient::with_interceptor(h.channel.clone(), h.bearer("admin"));
    let err = internal
        .subscribe(SubscribeRequest { after_sequence: 0 })
        .await
        .expect_err("internal API not exposed");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    harness.stop().await.expect("every service stops cleanly");
}
