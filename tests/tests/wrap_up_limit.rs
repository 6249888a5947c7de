//! The wrap-up time limit, through the gateway with the demo credentials, on SQLite and
//! PostgreSQL: a conversation of a queue with a one-second limit that the agent ends and
//! never wraps up closes on its own and frees the agent's capacity, whether an offer or a
//! supervisor assigned it; a late wrap-up is refused; a conversation of a queue without a
//! limit stays in wrap-up.

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::flows::{
    chat_in, events, start_chat, take, wait_for_capacity, wait_for_state,
};
use switchboard_tests::{Backend, Harness, rid};
use tonic::Code;

switchboard_tests::on_each_backend!(wrap_up_left_past_the_queue_limit_closes_on_its_own);

async fn wrap_up_left_past_the_queue_limit_closes_on_its_own(backend: &Backend) {
    let h = Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()));
    let agent1 = h.creds.user("agent1").clone();

    // A queue with a one-second wrap-up limit, which agent1 (only) also serves.
    let mut queues = h.queues("admin");
    let limited = queues
        .create_queue(routing::CreateQueueRequest {
            request_id: rid(),
            queue: Some(routing::Queue {
                program_id: h.creds.program_id.clone(),
                display_name: "Returns".into(),
                accepted_channels: vec![Channel::Webchat as i32],
                max_open_per_agent: 3,
                wrap_up_time_limit: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("a one-second wrap-up limit is accepted")
        .into_inner()
        .queue
        .expect("queue");
    queues
        .set_agent_profile(routing::SetAgentProfileRequest {
            request_id: rid(),
            agent_profile: Some(routing::AgentProfile {
                agent_id: agent1.id.clone(),
                display_name: agent1.display_name.clone(),
                capacity_profile_id: h.creds.capacity_profile_id.clone(),
                queue_ids: vec![h.creds.queue_id.clone(), limited.id.clone()],
                ..Default::default()
            }),
        })
        .await
        .expect("agent1 joins the limited queue");

    // agent2 ends a chat of the demo queue, which has no limit, and leaves it in wrap-up.
    let unlimited = start_chat(&h, "wrap-up-unlimited").await;
    take(&h, "agent2", &unlimited.id).await;
    end(&h, "agent2", &unlimited.id).await;

    // agent1 ends a chat of the limited queue and never wraps it up.
    let chat = chat_in(&h, &limited.id, "wrap-up-limited").await;
    take(&h, "agent1", &chat.id).await;
    wait_for_capacity(&h, "agent1", 1).await;
    let ended = end(&h, "agent1", &chat.id).await;
    assert_eq!(ended.state, State::WrapUp as i32);

    let closed = wait_for_state(&h, "agent1", &chat.id, State::Closed).await;
    assert_eq!(
        closed.close_reason,
        conv::CloseReason::WrapUpTimeLimit as i32
    );
    wait_for_capacity(&h, "agent1", 0).await;
    let log = events(&h, "supervisor", &chat.id).await;
    let closes: Vec<_> = log
        .iter()
        .filter(|e| e.event_type == conv::EventType::Closed as i32)
        .collect();
    assert_eq!(closes.len(), 1, "{log:?}");
    assert_eq!(closes[0].actor_id, "", "Switchboard closed it, not a user");

    let late = h
        .conversations("agent1")
        .submit_wrap_up(conv::SubmitWrapUpRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            wrap_up_reason_ids: vec![h.creds.wrap_up_reason_ids[0].clone()],
            ..Default::default()
        })
        .await
        .expect_err("wrap-up after the limit closed it");
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");

    // A supervisor's assignment keeps the queue's limit too (agent2 does not serve the
    // queue, hence the override).
    let assigned = chat_in(&h, &limited.id, "wrap-up-assigned").await;
    h.supervisor("supervisor")
        .assign_conversation(conv::AssignConversationRequest {
            request_id: rid(),
            conversation_id: assigned.id.clone(),
            agent_id: h.creds.user("agent2").id.clone(),
            queue_id: String::new(),
            override_limits: true,
        })
        .await
        .expect("the supervisor assigns");
    end(&h, "agent2", &assigned.id).await;
    let closed = wait_for_state(&h, "agent2", &assigned.id, State::Closed).await;
    assert_eq!(
        closed.close_reason,
        conv::CloseReason::WrapUpTimeLimit as i32
    );

    // Ended before both limited chats, and still in wrap-up after they closed.
    let still = h
        .conversations("agent2")
        .get_conversation(conv::GetConversationRequest {
            conversation_id: unlimited.id.clone(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(still.state, State::WrapUp as i32, "no limit, no close");
    h.stop().await.expect("suite stops");
}

/// Demo user `handle` ends the conversation (it enters wrap-up).
async fn end(h: &Harness, handle: &str, conversation_id: &str) -> conv::Conversation {
    h.conversations(handle)
        .end_conversation(conv::EndConversationRequest {
            request_id: rid(),
            conversation_id: conversation_id.to_owned(),
        })
        .await
        .expect("end")
        .into_inner()
        .conversation
        .expect("conversation")
}
