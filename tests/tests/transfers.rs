//! Transfers to a queue, by the owner and by a supervisor, through the gateway on SQLite and
//! PostgreSQL (product rules 7-9): only within the program and channel, never once
//! escalated; the sender is released and wraps up its segment then or later; the ledger
//! lists every transfer.

use switchboard_proto::common::v1::{AnswerOutcome, Channel};
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::flows::{
    agent_state, events, ledger, offer_stream, pending_offer, serve_queues, set_presence,
    start_chat, take, wait_for_capacity, wait_for_state, wait_for_waiting,
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
    a_transfer_to_an_agent_is_an_offer_the_agent_answers,
    a_transfer_not_taken_follows_the_queues_fallback,
    a_transfer_to_a_queue_puts_the_conversation_in_line_there,
    transfers_stay_within_the_program_channel_and_messaging,
    a_supervisor_transfers_an_agents_conversation,
    a_transfer_not_answered_in_time_is_dropped_by_a_drop_queue,
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
    // Waiting in a queue agent2 does not serve, it stays hidden from agent2 until agent2
    // serves that queue.
    let hidden = h
        .conversations("agent2")
        .get_conversation(conv::GetConversationRequest {
            conversation_id: chat.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("waiting in a queue agent2 does not serve");
    assert_eq!(hidden.code(), Code::NotFound);
    serve_queues(&h, "agent2", &[&h.creds.queue_id, &billing.id]).await;
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

    // The reassignments report shows the reason agent1 gave as one it sent, though nobody
    // has taken the conversation yet.
    let sent = switchboard_tests::eventually(
        "the reassignments report to show agent1's reason",
        flows_wait(),
        || {
            let h = &h;
            let agent1 = agent1.clone();
            async move {
                let rows = reports_now(h).await;
                rows.into_iter()
                    .find(|r| r.agent_id == agent1 && !r.sent_reasons.is_empty())
            }
        },
    )
    .await;
    assert_eq!(
        sent.sent_reasons
            .iter()
            .map(|r| (r.wrap_up_reason_id.as_str(), r.count))
            .collect::<Vec<_>>(),
        vec![(h.creds.wrap_up_reason_ids[0].as_str(), 1)]
    );
    assert_eq!(
        (sent.reassignments_received, sent.reassignments_sent),
        (0, 0)
    );

    // The queue metrics count the transfer out of the demo queue and into Billing.
    let flows = switchboard_tests::eventually(
        "the queue metrics to count the transfer",
        flows_wait(),
        || {
            let h = &h;
            let billing = billing.id.clone();
            async move {
                let rows = queue_metrics_now(h).await;
                let of = |queue: &str| {
                    rows.iter()
                        .find(|r| r.queue_id == queue)
                        .map(|r| (r.transferred_in, r.transferred_out))
                        .unwrap_or_default()
                };
                let flows = (of(&h.creds.queue_id), of(&billing));
                (flows.1 != (0, 0)).then_some(flows)
            }
        },
    )
    .await;
    assert_eq!(flows, ((0, 1), (1, 0)));
    h.stop().await.expect("the suite stops cleanly");
}

/// The reassignments report over the hour around now, in one TOTAL row per agent, as the
/// supervisor asks it.
async fn reports_now(h: &Harness) -> Vec<switchboard_proto::reporting::v1::ReassignmentsRow> {
    use switchboard_proto::reporting::v1 as rep;
    h.reports("supervisor")
        .get_reassignments_report(rep::GetReassignmentsReportRequest {
            filter: Some(hour_around_now()),
            granularity: rep::Granularity::Total as i32,
            ..Default::default()
        })
        .await
        .expect("the reassignments report")
        .into_inner()
        .rows
}

/// The queue metrics over the hour around now, in one TOTAL row per queue.
async fn queue_metrics_now(h: &Harness) -> Vec<switchboard_proto::reporting::v1::QueueMetricsRow> {
    use switchboard_proto::reporting::v1 as rep;
    h.reports("supervisor")
        .get_queue_metrics_report(rep::GetQueueMetricsReportRequest {
            filter: Some(hour_around_now()),
            granularity: rep::Granularity::Total as i32,
            ..Default::default()
        })
        .await
        .expect("the queue metrics")
        .into_inner()
        .rows
}

/// A report filter of the hour around now.
fn hour_around_now() -> switchboard_proto::reporting::v1::ReportFilter {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
    switchboard_proto::reporting::v1::ReportFilter {
        time_range: Some(switchboard_proto::common::v1::TimeRange {
            start_time: Some(at(now - 3_600)),
            end_time: Some(at(now + 3_600)),
        }),
        ..Default::default()
    }
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
    let offline = agent1
        .transfer_conversation(conv::TransferConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            target_agent_id: h.creds.user("agent2").id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("agent2 is Offline");
    assert_eq!(offline.code(), Code::FailedPrecondition);
    let to_self = agent1
        .transfer_conversation(conv::TransferConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            target_agent_id: h.creds.user("agent1").id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("not to oneself");
    assert_eq!(to_self.code(), Code::FailedPrecondition);
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

fn to_agent(conversation_id: &str, agent_id: &str) -> conv::TransferConversationRequest {
    conv::TransferConversationRequest {
        request_id: rid(),
        conversation_id: conversation_id.to_owned(),
        target_agent_id: agent_id.to_owned(),
        note: "needs a refund".into(),
        ..Default::default()
    }
}

async fn a_transfer_to_an_agent_is_an_offer_the_agent_answers(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let agent2 = h.creds.user("agent2").id.clone();
    let chat = start_chat(&h, "transfer-agent").await;
    take(&h, "agent1", &chat.id).await;
    let mut offers2 = offer_stream(&h, "agent2").await;
    set_presence(&h, "agent2", routing::Presence::Available).await;

    let transfer = h
        .conversations("agent1")
        .transfer_conversation(to_agent(&chat.id, &agent2))
        .await
        .expect("transfer to agent2")
        .into_inner()
        .transfer
        .expect("transfer");
    assert_eq!(transfer.outcome, AnswerOutcome::Pending as i32);
    assert_eq!(transfer.to_agent_id, agent2);
    assert!(!transfer.ping_pong);
    let offer = pending_offer(&mut offers2, &chat.id).await;
    assert_eq!(offer.kind, routing::OfferKind::Transfer as i32);
    assert_eq!(offer.transfer_id, transfer.id);
    assert_eq!(offer.id, transfer.offer_id);
    assert_eq!(offer.sender_id, agent1);
    assert_eq!(offer.note, "needs a refund");

    // Until agent2 answers, agent1 keeps the chat; no second transfer meanwhile.
    let still = wait_for_state(&h, "agent1", &chat.id, State::Active).await;
    assert_eq!(still.owner_agent_id, agent1);
    let twice = h
        .conversations("agent1")
        .transfer_conversation(to_agent(&chat.id, &agent2))
        .await
        .expect_err("a transfer is already waiting");
    assert_eq!(twice.code(), Code::FailedPrecondition);

    h.agent("agent2")
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer.id.clone(),
        })
        .await
        .expect("agent2 accepts");
    let taken = wait_for_state(&h, "agent2", &chat.id, State::Active).await;
    assert_eq!(taken.owner_agent_id, agent2);
    let sender = taken
        .participants
        .iter()
        .rev()
        .find(|p| p.user_id == agent1)
        .expect("agent1 takes part");
    assert_eq!(sender.role, conv::ParticipantRole::Consultant as i32);
    assert_eq!(sender.state, conv::participant::State::Joined as i32);
    wait_for_capacity(&h, "agent1", 0).await;
    wait_for_capacity(&h, "agent2", 1).await;
    assert_eq!(
        taken.pre_chat_data.len(),
        chat.pre_chat_data.len(),
        "the whole history goes along"
    );
    let first = ledger(&h, &chat.id).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].outcome, AnswerOutcome::Accepted as i32);
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
    assert_eq!(segments.len(), 2);
    assert_eq!(
        segments[0].end_reason,
        conv::segment::EndReason::Transferred as i32
    );
    assert_eq!(segments[1].agent_id, agent2);
    assert_eq!(
        segments[1].assignment_source,
        conv::AssignmentSource::Transfer as i32
    );
    let assigned = events(&h, "supervisor", &chat.id)
        .await
        .into_iter()
        .rfind(|e| e.event_type == conv::EventType::Assigned as i32)
        .expect("an ASSIGNED event");
    assert_eq!(
        assigned.previous_agent_id, agent1,
        "a reassignment to agent2"
    );

    // agent1, a consultant now, still reads it; sending it back to agent1 is ping-pong.
    let mut offers1 = offer_stream(&h, "agent1").await;
    let back = h
        .conversations("agent2")
        .transfer_conversation(to_agent(&chat.id, &agent1))
        .await
        .expect("transfer back")
        .into_inner()
        .transfer
        .expect("transfer");
    assert!(back.ping_pong);
    let offer = pending_offer(&mut offers1, &chat.id).await;
    h.agent("agent1")
        .reject_offer(routing::RejectOfferRequest {
            request_id: rid(),
            offer_id: offer.id.clone(),
            reason: "busy with another customer".into(),
        })
        .await
        .expect("agent1 rejects");
    let rejected =
        switchboard_tests::eventually("the rejection to reach the ledger", flows_wait(), || {
            let h = &h;
            let id = chat.id.clone();
            async move {
                let all = ledger(h, &id).await;
                all.get(1)
                    .filter(|t| t.outcome != AnswerOutcome::Pending as i32)
                    .cloned()
            }
        })
        .await;
    assert_eq!(rejected.outcome, AnswerOutcome::Rejected as i32);
    assert_eq!(rejected.reject_reason, "busy with another customer");
    assert_eq!(
        rejected.fallback_applied,
        switchboard_proto::common::v1::TransferFallback::ReturnToSender as i32,
        "the demo queue returns it to the sender"
    );
    let kept = wait_for_state(&h, "agent2", &chat.id, State::Active).await;
    assert_eq!(kept.owner_agent_id, agent2);
    assert_eq!(agent_state(&h, "agent1").await.capacity_used, 0);
    wait_for_capacity(&h, "agent2", 1).await;

    // reporting-svc's transfer ledger, from the events: both transfers with their outcome,
    // the way back to agent1 a ping-pong, answered in some time.
    let transfers = switchboard_tests::eventually(
        "the reporting ledger to show both transfers answered",
        flows_wait(),
        || {
            let h = &h;
            let id = chat.id.clone();
            async move {
                let entries = reporting_ledger(h, &id).await;
                (entries.len() == 2
                    && entries
                        .iter()
                        .all(|e| e.outcome != AnswerOutcome::Pending as i32))
                .then_some(entries)
            }
        },
    )
    .await;
    assert_eq!(
        transfers
            .iter()
            .map(|e| (
                e.from_user_id.as_str(),
                e.to_agent_id.as_str(),
                e.outcome,
                e.ping_pong
            ))
            .collect::<Vec<_>>(),
        vec![
            (
                agent1.as_str(),
                agent2.as_str(),
                AnswerOutcome::Accepted as i32,
                false
            ),
            (
                agent2.as_str(),
                agent1.as_str(),
                AnswerOutcome::Rejected as i32,
                true
            ),
        ]
    );
    assert_eq!(transfers[0].transfer_id, transfer.id);
    assert_eq!(transfers[0].offer_id, transfer.offer_id);
    assert_eq!(
        transfers[1].fallback_applied,
        switchboard_proto::common::v1::TransferFallback::ReturnToSender as i32
    );
    assert!(transfers.iter().all(|e| e.time_to_answer.is_some()));
    h.stop().await.expect("the suite stops cleanly");
}

/// The transfers of a conversation in reporting-svc's ledger, asked as the supervisor over
/// the hour around now.
async fn reporting_ledger(
    h: &Harness,
    conversation_id: &str,
) -> Vec<switchboard_proto::reporting::v1::TransferLedgerEntry> {
    use switchboard_proto::reporting::v1 as rep;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
    h.reports("supervisor")
        .list_transfer_ledger(rep::ListTransferLedgerRequest {
            filter: Some(rep::ReportFilter {
                time_range: Some(switchboard_proto::common::v1::TimeRange {
                    start_time: Some(at(now - 3_600)),
                    end_time: Some(at(now + 3_600)),
                }),
                ..Default::default()
            }),
            conversation_id: conversation_id.to_owned(),
            kinds: vec![rep::LedgerEntryKind::Transfer as i32],
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().entries)
        .unwrap_or_default()
}

fn flows_wait() -> std::time::Duration {
    switchboard_tests::flows::WAIT
}

async fn a_transfer_not_taken_follows_the_queues_fallback(backend: &Backend) {
    let h = started(backend).await;
    let agent2 = h.creds.user("agent2").id.clone();
    let requeue = h
        .queues("admin")
        .create_queue(routing::CreateQueueRequest {
            request_id: rid(),
            queue: Some(routing::Queue {
                program_id: h.creds.program_id.clone(),
                display_name: "Escalations".into(),
                accepted_channels: vec![Channel::Webchat as i32],
                transfer_fallback: switchboard_proto::common::v1::TransferFallback::Requeue as i32,
                ..Default::default()
            }),
        })
        .await
        .expect("create queue")
        .into_inner()
        .queue
        .expect("queue");
    let chat = start_chat(&h, "transfer-requeue").await;
    take(&h, "agent1", &chat.id).await;
    let mut offers2 = offer_stream(&h, "agent2").await;
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let mut ask = to_agent(&chat.id, &agent2);
    ask.target_queue_id = requeue.id.clone();
    h.conversations("agent1")
        .transfer_conversation(ask)
        .await
        .expect("transfer to agent2 through Escalations");
    let offer = pending_offer(&mut offers2, &chat.id).await;
    assert_eq!(offer.queue_id, requeue.id);
    h.agent("agent2")
        .reject_offer(routing::RejectOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
            reason: String::new(),
        })
        .await
        .expect("agent2 rejects");
    // The fallback requeues: OPEN in Escalations, the sender released.
    let open = wait_for_state(&h, "supervisor", &chat.id, State::Open).await;
    assert_eq!(open.queue_id, requeue.id);
    assert!(open.owner_agent_id.is_empty());
    wait_for_capacity(&h, "agent1", 0).await;
    wait_for_capacity(&h, "agent2", 0).await;
    let all = ledger(&h, &chat.id).await;
    assert_eq!(all[0].outcome, AnswerOutcome::Rejected as i32);
    assert_eq!(
        all[0].fallback_applied,
        switchboard_proto::common::v1::TransferFallback::Requeue as i32
    );

    // A pending transfer is withdrawn when its conversation is force-closed.
    set_presence(&h, "agent2", routing::Presence::Away).await;
    let other = start_chat(&h, "transfer-withdrawn").await;
    take(&h, "agent1", &other.id).await;
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let pending = h
        .conversations("agent1")
        .transfer_conversation(to_agent(&other.id, &agent2))
        .await
        .expect("transfer")
        .into_inner()
        .transfer
        .expect("transfer");
    let offer = pending_offer(&mut offers2, &other.id).await;
    assert_eq!(offer.transfer_id, pending.id);
    h.supervisor("supervisor")
        .force_close_conversation(conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: other.id.clone(),
            reason: String::new(),
        })
        .await
        .expect("force close");
    let late = h
        .agent("agent2")
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
        })
        .await;
    // Either the withdrawal reached routing-svc first (refused) or the accept is undone.
    if late.is_ok() {
        wait_for_capacity(&h, "agent2", 0).await;
    }
    let closed = ledger(&h, &other.id).await;
    assert_eq!(closed[0].outcome, AnswerOutcome::Withdrawn as i32);
    wait_for_capacity(&h, "agent1", 0).await;
    wait_for_capacity(&h, "agent2", 0).await;
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_transfer_not_answered_in_time_is_dropped_by_a_drop_queue(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let agent2 = h.creds.user("agent2").id.clone();
    let dropping = h
        .queues("admin")
        .create_queue(routing::CreateQueueRequest {
            request_id: rid(),
            queue: Some(routing::Queue {
                program_id: h.creds.program_id.clone(),
                display_name: "Last resort".into(),
                accepted_channels: vec![Channel::Webchat as i32],
                transfer_fallback: switchboard_proto::common::v1::TransferFallback::Drop as i32,
                offer_timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create queue")
        .into_inner()
        .queue
        .expect("queue");
    let chat = start_chat(&h, "transfer-drop").await;
    take(&h, "agent1", &chat.id).await;
    let mut offers2 = offer_stream(&h, "agent2").await;
    set_presence(&h, "agent2", routing::Presence::Available).await;
    let mut ask = to_agent(&chat.id, &agent2);
    ask.target_queue_id = dropping.id.clone();
    h.conversations("agent1")
        .transfer_conversation(ask)
        .await
        .expect("transfer to agent2 through Last resort");
    let offer = pending_offer(&mut offers2, &chat.id).await;
    assert_eq!(offer.queue_id, dropping.id);

    // agent2 never answers: the offer times out (agent2 in RONA) and the queue drops it.
    let closed = wait_for_state(&h, "supervisor", &chat.id, State::Closed).await;
    assert_eq!(
        closed.close_reason,
        conv::CloseReason::TransferDropped as i32
    );
    assert!(closed.owner_agent_id.is_empty());
    let all = ledger(&h, &chat.id).await;
    assert_eq!(all[0].outcome, AnswerOutcome::TimedOut as i32);
    assert_eq!(
        all[0].fallback_applied,
        switchboard_proto::common::v1::TransferFallback::Drop as i32
    );
    assert_eq!(all[0].from_agent_id, agent1);
    wait_for_capacity(&h, "agent1", 0).await;
    wait_for_capacity(&h, "agent2", 0).await;
    assert_eq!(
        agent_state(&h, "agent2").await.presence,
        routing::Presence::Rona as i32,
        "an unanswered transfer puts the agent in RONA like any offer"
    );
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
    assert_eq!(segments.len(), 1, "agent2 never owned it");
    assert_eq!(
        segments[0].end_reason,
        conv::segment::EndReason::Dropped as i32
    );
    h.stop().await.expect("the suite stops cleanly");
}
