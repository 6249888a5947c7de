//! Transfers to a queue, by the owner and by a supervisor, through the gateway on SQLite and
//! PostgreSQL (product rules 7-9): only within the program and channel, never once
//! escalated; the sender is released and wraps up its segment then or later; the ledger
//! lists every transfer.

use switchboard_proto::common::v1::{AnswerOutcome, Channel};
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::flows::{
    events, start_chat, take, wait_for_capacity, wait_for_state, wait_for_waiting,
};
use switchboard_tests::{Backend, Harness, rid};
use tonic::Code;

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

/// A queue named `name` for `channel` in `program_id`, created by the demo administrator.
async fn queue(h: &Harness, program_id: &str, name: &str, channel: Channel) -> routing::Queue {
    h.queues("admin")
        .create_queue(routing::CreateQueueRequest {
            request_id: rid(),
            queue: Some(routing::Queue {
                program_id: program_id.to_owned(),
                display_name: name.into(),
                accepted_channels: vec![channel as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("create queue")
        .into_inner()
        .queue
        .expect("queue")
}

fn to_queue(conversation_id: &str, queue_id: &str) -> conv::TransferConversationRequest {
    conv::TransferConversationRequest {
        request_id: rid(),
        conversation_id: conversation_id.to_owned(),
        target_queue_id: queue_id.to_owned(),
        note: "billing question, card 4111\t1111\t1111\t1111".into(),
        ..Default::default()
    }
}

switchboard_tests::on_each_backend!(
    a_transfer_to_a_queue_puts_the_conversation_in_line_there,
    transfers_stay_within_the_program_channel_and_messaging,
    a_supervisor_transfers_an_agents_conversation,
);

async fn a_transfer_to_a_queue_puts_the_conversation_in_line_there(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let billing = queue(&h, &h.creds.program_id, "Billing", Channel::Webchat).await;
    let chat = start_chat(&h, "transfer-1").await;
    take(&h, "agent1", &chat.id).await;
    wait_for_capacity(&h, "agent1", 1).await;

    // Another agent cannot transfer a conversation hidden from them.
    let hidden = h
        .conversations("agent2")
        .transfer_conversation(to_queue(&chat.id, &billing.id))
        .await
        .expect_err("hidden from agent2");
    assert_eq!(hidden.code(), Code::NotFound);

    let request = to_queue(&chat.id, &billing.id);
    let transfer = h
        .conversations("agent1")
        .transfer_conversation(request.clone())
        .await
        .expect("transfer to a queue")
        .into_inner()
        .transfer
        .expect("transfer");
    assert_eq!(transfer.outcome, AnswerOutcome::Accepted as i32);
    assert_eq!(transfer.to_queue_id, billing.id);
    assert_eq!(transfer.from_agent_id, agent1);
    assert!(!transfer.by_supervisor);
    assert!(
        !transfer.note.contains("4111\t1111\t1111\t1111"),
        "the card number in the note is masked: {:?}",
        transfer.note
    );
    let again = h
        .conversations("agent1")
        .transfer_conversation(request)
        .await
        .expect("a retry is answered")
        .into_inner()
        .transfer
        .expect("transfer");
    assert_eq!(again, transfer, "a retry gets the same transfer");

    // The sender is released; the conversation waits in the target queue.
    wait_for_capacity(&h, "agent1", 0).await;
    wait_for_waiting(&h, &billing.id, 1).await;
    let open = wait_for_state(&h, "agent2", &chat.id, State::Open).await;
    assert_eq!(open.queue_id, billing.id);
    let ledger = h
        .conversations("supervisor")
        .list_transfers(conv::ListTransfersRequest {
            conversation_id: chat.id.clone(),
            ..Default::default()
        })
        .await
        .expect("transfers")
        .into_inner()
        .transfers;
    assert_eq!(ledger, vec![transfer.clone()], "one transfer in the ledger");
    let kinds: Vec<i32> = events(&h, "supervisor", &chat.id)
        .await
        .iter()
        .map(|e| e.event_type)
        .collect();
    assert!(kinds.contains(&(conv::EventType::TransferRequested as i32)));
    assert!(kinds.contains(&(conv::EventType::TransferResolved as i32)));

    // The sender wraps up the segment the transfer ended, once.
    let segments = h
        .conversations("supervisor")
        .list_segments(conv::ListSegmentsRequest {
            conversation_id: chat.id.clone(),
            ..Default::default()
        })
        .await
        .expect("segments")
        .into_inner()
        .segments;
    assert_eq!(
        segments[0].end_reason,
        conv::segment::EndReason::Transferred as i32
    );
    assert!(!segments[0].wrapped_up);
    let wrap_up = |handle: &str| {
        let mut client = h.conversations(handle);
        let request = conv::SubmitWrapUpRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            wrap_up_reason_ids: vec![h.creds.wrap_up_reason_ids[0].clone()],
            segment_id: segments[0].id.clone(),
            ..Default::default()
        };
        async move { client.submit_wrap_up(request).await }
    };
    let not_theirs = wrap_up("agent2").await.expect_err("not agent2's segment");
    assert_eq!(not_theirs.code(), Code::NotFound);
    wrap_up("agent1")
        .await
        .expect("the sender wraps up its segment");
    let twice = wrap_up("agent1").await.expect_err("once only");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let wrapped = h
        .conversations("supervisor")
        .list_segments(conv::ListSegmentsRequest {
            conversation_id: chat.id.clone(),
            ..Default::default()
        })
        .await
        .expect("segments")
        .into_inner()
        .segments;
    assert!(wrapped[0].wrapped_up);
    assert_eq!(
        wrapped[0].wrap_up_reason_ids,
        h.creds.wrap_up_reason_ids[..1]
    );
    let still_open = wait_for_state(&h, "supervisor", &chat.id, State::Open).await;
    assert_eq!(
        still_open.queue_id, billing.id,
        "wrapping up changes nothing else"
    );
    h.stop().await.expect("the suite stops cleanly");
}

async fn transfers_stay_within_the_program_channel_and_messaging(backend: &Backend) {
    let h = started(backend).await;
    let other_program = h
        .queues("admin")
        .create_program(routing::CreateProgramRequest {
            request_id: rid(),
            program: Some(routing::Program {
                display_name: "Sales".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create program")
        .into_inner()
        .program
        .expect("program");
    let sales = queue(&h, &other_program.id, "Sales chat", Channel::Webchat).await;
    let sms = queue(&h, &h.creds.program_id, "SMS", Channel::Sms).await;
    let billing = queue(&h, &h.creds.program_id, "Billing", Channel::Webchat).await;
    let chat = start_chat(&h, "transfer-rules").await;
    take(&h, "agent1", &chat.id).await;
    let mut agent1 = h.conversations("agent1");

    let other = agent1
        .transfer_conversation(to_queue(&chat.id, &sales.id))
        .await
        .expect_err("another program");
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert!(other.message().contains("program"), "{other:?}");
    let channel = agent1
        .transfer_conversation(to_queue(&chat.id, &sms.id))
        .await
        .expect_err("the queue does not take web chats");
    assert_eq!(channel.code(), Code::FailedPrecondition);
    let to_agent = agent1
        .transfer_conversation(conv::TransferConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            target_agent_id: h.creds.user("agent2").id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a transfer to an agent is not served yet");
    assert_eq!(to_agent.code(), Code::Unimplemented);
    let neither = agent1
        .transfer_conversation(conv::TransferConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no target");
    assert_eq!(neither.code(), Code::InvalidArgument);

    // Once escalated to a call, never transferred.
    agent1
        .escalate_conversation(conv::EscalateConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            mode: conv::Mode::Voice as i32,
        })
        .await
        .expect("escalate");
    let escalated = agent1
        .transfer_conversation(to_queue(&chat.id, &billing.id))
        .await
        .expect_err("a call is not transferred");
    assert_eq!(escalated.code(), Code::FailedPrecondition);
    assert!(escalated.message().contains("escalated"), "{escalated:?}");

    // Nothing changed on any refusal.
    let still = wait_for_state(&h, "agent1", &chat.id, State::Active).await;
    assert_eq!(still.queue_id, h.creds.queue_id);
    let ledger = h
        .conversations("agent1")
        .list_transfers(conv::ListTransfersRequest {
            conversation_id: chat.id.clone(),
            ..Default::default()
        })
        .await
        .expect("transfers")
        .into_inner()
        .transfers;
    assert!(ledger.is_empty());
    wait_for_capacity(&h, "agent1", 1).await;
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_supervisor_transfers_an_agents_conversation(backend: &Backend) {
    let h = started(backend).await;
    let billing = queue(&h, &h.creds.program_id, "Billing", Channel::Webchat).await;
    let chat = start_chat(&h, "supervisor-transfer").await;
    take(&h, "agent1", &chat.id).await;
    let transfer = h
        .supervisor("supervisor")
        .transfer_conversation(conv::SupervisorServiceTransferConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            target_queue_id: billing.id.clone(),
            ..Default::default()
        })
        .await
        .expect("a supervisor transfers")
        .into_inner()
        .transfer
        .expect("transfer");
    assert!(transfer.by_supervisor);
    assert_eq!(transfer.from_user_id, h.creds.user("supervisor").id);
    assert_eq!(transfer.from_agent_id, h.creds.user("agent1").id);
    wait_for_capacity(&h, "agent1", 0).await;
    wait_for_waiting(&h, &billing.id, 1).await;
    let denied = h
        .supervisor("agent2")
        .transfer_conversation(conv::SupervisorServiceTransferConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            target_queue_id: h.creds.queue_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("agents cannot");
    assert_eq!(denied.code(), Code::PermissionDenied);
    h.stop().await.expect("the suite stops cleanly");
}
