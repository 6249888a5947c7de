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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_and_oversized_requests_get_the_documented_codes() {
    for backend in Backend::all() {
        let h = Harness::start(&backend)
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
}
