//! Requests that do not decode, or are too large, get the contract's codes through the
//! gateway and change nothing: INVALID_ARGUMENT and RESOURCE_EXHAUSTED, never INTERNAL,
//! OUT_OF_RANGE or UNKNOWN.

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_tests::{Backend, Harness, rid};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

const SEND_MESSAGE: &str = "/switchboard.conversation.v1.ConversationService/SendMessage";

/// SendMessageRequest as a client with a broken encoder would send it: the text is bytes,
/// so it can carry what a protobuf string may not (invalid UTF-8).
#[derive(Clone, PartialEq, prost::Message)]
struct RawSendMessage {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(string, tag = "2")]
    conversation_id: String,
    #[prost(bytes = "vec", tag = "3")]
    text: Vec<u8>,
    #[prost(int32, tag = "4")]
    sender: i32,
}

async fn send_raw(h: &Harness, message: RawSendMessage) -> tonic::Status {
    let channel = tower::ServiceBuilder::new()
        .layer(tonic::service::InterceptorLayer::new(h.bearer("agent1")))
        .service(h.channel.clone());
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("gateway ready");
    grpc.unary::<RawSendMessage, conv::SendMessageResponse, _>(
        tonic::Request::new(message),
        PathAndQuery::from_static(SEND_MESSAGE),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .expect_err("refused")
}

switchboard_tests::on_each_backend!(undecodable_and_oversized_requests_get_the_documented_codes);
async fn undecodable_and_oversized_requests_get_the_documented_codes(backend: &Backend) {
    let h = Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()));
    let created = h
        .bot_conversations()
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: Channel::Webchat as i32,
            queue_id: h.creds.queue_id.clone(),
            channel_address: format!("visitor-{}", rid()),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .conversation
        .expect("conversation");

    // Invalid UTF-8 in a string field.
    let err = send_raw(
        &h,
        RawSendMessage {
            request_id: rid(),
            conversation_id: created.id.clone(),
            text: vec![b'h', b'i', 0xff, 0xfe],
            sender: conv::SenderKind::Customer as i32,
        },
    )
    .await;
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "{}: {err:?}",
        backend.name()
    );
    assert!(
        err.message().starts_with("malformed request"),
        "{}: {err:?}",
        backend.name()
    );

    // Five megabytes of text, over the 4 MiB message limit.
    let err = send_raw(
        &h,
        RawSendMessage {
            request_id: rid(),
            conversation_id: created.id.clone(),
            text: vec![b'a'; 5 * 1024 * 1024],
            sender: conv::SenderKind::Customer as i32,
        },
    )
    .await;
    assert_eq!(
        err.code(),
        Code::ResourceExhausted,
        "{}: {err:?}",
        backend.name()
    );
    assert!(
        err.message().starts_with("request too large"),
        "{}: {err:?}",
        backend.name()
    );

    // 64 KiB of request headers, over the 16 KiB limit.
    let mut request = tonic::Request::new(conv::GetConversationRequest {
        conversation_id: created.id.clone(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "x-padding",
        "a".repeat(64 * 1024).parse().expect("ascii metadata"),
    );
    let err = h
        .conversations("agent1")
        .get_conversation(request)
        .await
        .expect_err("oversized headers are refused");
    assert_eq!(
        err.code(),
        Code::ResourceExhausted,
        "{}: {err:?}",
        backend.name()
    );
    assert!(
        err.message().starts_with("request headers too large"),
        "{}: {err:?}",
        backend.name()
    );

    // Nothing was stored: the conversation has only its creation events.
    let events = h
        .conversations("supervisor")
        .list_conversation_events(conv::ListConversationEventsRequest {
            conversation_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .expect("events")
        .into_inner()
        .events;
    assert!(
        events
            .iter()
            .all(|e| e.event_type != conv::EventType::MessageAdded as i32),
        "{}: a refused message was stored: {events:?}",
        backend.name()
    );
    h.stop().await.expect("every service stops cleanly");
}

switchboard_tests::on_each_backend!(huge_lists_and_impossible_values_are_refused_cheaply);
/// Oversized lists, out-of-range times and control characters are refused at once with
/// INVALID_ARGUMENT naming the field, before any work is done.
async fn huge_lists_and_impossible_values_are_refused_cheaply(backend: &Backend) {
    use switchboard_proto::common::v1::TimeRange;
    use switchboard_proto::reporting::v1 as rep;
    use switchboard_proto::routing::v1 as routing;

    let h = Harness::start(backend).await.expect("suite starts");
    let expect_invalid = |result: Result<(), tonic::Status>, field: &str| {
        let err = result.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {err:?}");
    };
    let started = std::time::Instant::now();

    // A 100,000-element state filter from an agent.
    let states = vec![conv::conversation::State::Open as i32; 100_000];
    expect_invalid(
        h.conversations("agent1")
            .list_conversations(conv::ListConversationsRequest {
                states,
                ..Default::default()
            })
            .await
            .map(drop),
        "states",
    );
    // A 100,000-queue agent profile from an administrator.
    let queue_ids = (0..100_000).map(|_| rid()).collect();
    expect_invalid(
        h.queues("admin")
            .set_agent_profile(routing::SetAgentProfileRequest {
                request_id: rid(),
                agent_profile: Some(routing::AgentProfile {
                    agent_id: h.creds.user("agent1").id.clone(),
                    capacity_profile_id: rid(),
                    queue_ids,
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        "agent_profile.queue_ids",
    );
    // A 100,000-queue report filter.
    expect_invalid(
        h.reports("supervisor")
            .get_created_closed_report(rep::GetCreatedClosedReportRequest {
                filter: Some(rep::ReportFilter {
                    time_range: Some(TimeRange {
                        start_time: Some(prost_types::Timestamp {
                            seconds: 0,
                            nanos: 0,
                        }),
                        end_time: Some(prost_types::Timestamp {
                            seconds: 86_400,
                            nanos: 0,
                        }),
                    }),
                    queue_ids: (0..100_000).map(|_| rid()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map(drop),
        "filter.queue_ids",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "refusing three huge requests took {:?}",
        started.elapsed()
    );

    // A one-trillion-second offer timeout.
    expect_invalid(
        h.queues("admin")
            .create_queue(routing::CreateQueueRequest {
                request_id: rid(),
                queue: Some(routing::Queue {
                    program_id: rid(),
                    display_name: "Forever".into(),
                    accepted_channels: vec![Channel::Webchat as i32],
                    offer_timeout: Some(prost_types::Duration {
                        seconds: 1_000_000_000_000,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        "queue.offer_timeout",
    );
    // A transcript line from year 294247.
    expect_invalid(
        h.bot_conversations()
            .create_conversation(conv::CreateConversationRequest {
                request_id: rid(),
                channel: Channel::Webchat as i32,
                queue_id: h.creds.queue_id.clone(),
                channel_address: "visitor-from-the-future".into(),
                bot_transcript: vec![conv::TranscriptEntry {
                    sender: conv::SenderKind::Customer as i32,
                    text: "hello".into(),
                    create_time: Some(prost_types::Timestamp {
                        seconds: 9_223_372_036_854,
                        nanos: 0,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .map(drop),
        "bot_transcript[0].create_time",
    );
    // A bell character in a presence reason.
    expect_invalid(
        h.agent("agent1")
            .set_presence(routing::SetPresenceRequest {
                request_id: rid(),
                presence: routing::Presence::Away as i32,
                reason: "lunch\u{7}".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "reason",
    );
    h.stop().await.expect("every service stops cleanly");
}
