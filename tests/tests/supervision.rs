//! Taking a conversation out of its owner's hands, through the gateway with distinct demo
//! users (two agents, a supervisor, the bot), on SQLite and PostgreSQL: unassign, move to
//! another queue, escalate, a supervisor's monitor, join, assign with override and force
//! close. After each move the capacity each agent holds is what it owns, nothing more.

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::flows::{
    agent_state, events, messages, serve_queues, set_presence, start_chat, take, wait_for_capacity,
    wait_for_state, wait_for_waiting,
};
use switchboard_tests::{Backend, Harness, rid};
use tonic::Code;

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

fn kinds(events: &[conv::ConversationEvent]) -> Vec<conv::EventType> {
    events
        .iter()
        .map(|e| conv::EventType::try_from(e.event_type).unwrap())
        .collect()
}

switchboard_tests::on_each_backend!(
    unassigning_returns_the_conversation_to_its_queue,
    a_supervisor_assigns_with_override_and_force_closes,
    a_supervisor_monitors_then_joins_and_leaves,
    moving_to_another_queue_releases_the_owner,
    escalation_to_a_call_happens_once,
);

async fn unassigning_returns_the_conversation_to_its_queue(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let agent2 = h.creds.user("agent2").id.clone();
    let chat = start_chat(&h, "unassign-1").await;
    take(&h, "agent1", &chat.id).await;
    wait_for_capacity(&h, "agent1", 1).await;
    // agent1 stops taking work, so the requeued chat can only go to agent2.
    set_presence(&h, "agent1", routing::Presence::Away).await;

    // Another agent cannot act on it: it is hidden from them.
    let hidden = h
        .conversations("agent2")
        .unassign_conversation(conv::UnassignConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            tenant_id: String::new(),
        })
        .await
        .expect_err("hidden from agent2");
    assert_eq!(hidden.code(), Code::NotFound);

    let request = conv::UnassignConversationRequest {
        request_id: rid(),
        conversation_id: chat.id.clone(),
        tenant_id: String::new(),
    };
    let open = h
        .conversations("agent1")
        .unassign_conversation(request.clone())
        .await
        .expect("the owner unassigns")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(open.state, State::Open as i32);
    assert!(open.owner_agent_id.is_empty());
    let before = events(&h, "supervisor", &chat.id).await.len();
    let again = h
        .conversations("agent1")
        .unassign_conversation(request)
        .await
        .expect("a retry is answered")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(again, open, "a retry gets the same answer");
    assert_eq!(
        events(&h, "supervisor", &chat.id).await.len(),
        before,
        "and changes nothing"
    );
    wait_for_capacity(&h, "agent1", 0).await;

    // Visible to the other agents again, and offered again.
    let taken = take(&h, "agent2", &chat.id).await;
    assert_eq!(taken.owner_agent_id, agent2);
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
    assert_eq!(segments[0].agent_id, agent1);
    assert_eq!(
        segments[0].end_reason,
        conv::segment::EndReason::Unassigned as i32
    );
    assert_eq!(segments[1].agent_id, agent2);
    let all = events(&h, "supervisor", &chat.id).await;
    let unassigned = all
        .iter()
        .find(|e| e.event_type == conv::EventType::Unassigned as i32)
        .expect("an UNASSIGNED event");
    assert_eq!(unassigned.previous_agent_id, agent1);
    assert_eq!(unassigned.actor_id, agent1);
    assert_eq!(
        unassigned.segment_end_reason,
        conv::segment::EndReason::Unassigned as i32
    );
    let notices: Vec<String> = messages(&h, "supervisor", &chat.id)
        .await
        .into_iter()
        .filter(|m| m.sender == conv::SenderKind::System as i32)
        .map(|m| m.text)
        .collect();
    assert!(
        notices.iter().any(|t| t.ends_with("left the conversation")),
        "the customer is told the agent left: {notices:?}"
    );
    wait_for_capacity(&h, "agent2", 1).await;
    assert_eq!(agent_state(&h, "agent1").await.capacity_used, 0);

    // A supervisor unassigns agent2's chat; an unassigned chat cannot be unassigned again.
    set_presence(&h, "agent2", routing::Presence::Away).await;
    h.conversations("supervisor")
        .unassign_conversation(conv::UnassignConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            tenant_id: String::new(),
        })
        .await
        .expect("a supervisor unassigns");
    wait_for_capacity(&h, "agent2", 0).await;
    let twice = h
        .conversations("supervisor")
        .unassign_conversation(conv::UnassignConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            tenant_id: String::new(),
        })
        .await
        .expect_err("nothing to unassign");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_supervisor_assigns_with_override_and_force_closes(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let supervisor = h.supervisor("supervisor");
    let total = agent_state(&h, "agent1").await.capacity_total;
    let mut chats = Vec::new();
    for i in 0..=total {
        chats.push(start_chat(&h, &format!("assign-{i}")).await);
    }
    let assign = |id: &str, override_limits: bool| conv::AssignConversationRequest {
        request_id: rid(),
        conversation_id: id.to_owned(),
        agent_id: agent1.clone(),
        queue_id: String::new(),
        override_limits,
    };

    // Agents may not; an Offline agent needs the override.
    let denied = h
        .supervisor("agent2")
        .assign_conversation(assign(&chats[0].id, true))
        .await
        .expect_err("agents cannot assign");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let offline = supervisor
        .clone()
        .assign_conversation(assign(&chats[0].id, false))
        .await
        .expect_err("agent1 is Offline");
    assert_eq!(offline.code(), Code::FailedPrecondition, "{offline:?}");
    assert_eq!(agent_state(&h, "agent1").await.capacity_used, 0);

    // With override, up to capacity and one beyond it.
    let mut over = Vec::new();
    for chat in &chats {
        let answer = supervisor
            .clone()
            .assign_conversation(assign(&chat.id, true))
            .await
            .expect("assign with override")
            .into_inner();
        let assigned = answer.conversation.expect("conversation");
        assert_eq!(assigned.state, State::Active as i32);
        assert_eq!(assigned.owner_agent_id, agent1);
        assert_eq!(
            assigned.owner_display_name,
            h.creds.user("agent1").display_name
        );
        over.push(answer.units_over_capacity);
    }
    let mut expected = vec![0; total as usize];
    expected.push(1);
    assert_eq!(over, expected, "the last assignment is one unit over");
    wait_for_capacity(&h, "agent1", total + 1).await;
    let last = chats.last().unwrap();
    let assigned_event = events(&h, "supervisor", &last.id)
        .await
        .into_iter()
        .find(|e| e.event_type == conv::EventType::Assigned as i32)
        .expect("an ASSIGNED event");
    assert_eq!(
        assigned_event.units_over_capacity, 1,
        "the override is recorded"
    );
    assert_eq!(
        assigned_event.assignment_source,
        conv::AssignmentSource::SupervisorAssign as i32
    );
    assert_eq!(assigned_event.actor_id, h.creds.user("supervisor").id);
    let taken = supervisor
        .clone()
        .assign_conversation(assign(&chats[0].id, true))
        .await
        .expect_err("already assigned");
    assert_eq!(taken.code(), Code::FailedPrecondition);

    // Force close an owned conversation: CLOSED, the agent's units freed.
    let closed = supervisor
        .clone()
        .force_close_conversation(conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: chats[0].id.clone(),
            reason: "customer left the site; card 4111.1111.1111.1111".into(),
        })
        .await
        .expect("force close")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(closed.state, State::Closed as i32);
    assert_eq!(closed.close_reason, conv::CloseReason::ForceClosed as i32);
    wait_for_capacity(&h, "agent1", total).await;
    let texts: Vec<String> = messages(&h, "supervisor", &chats[0].id)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(
        texts.iter().all(|t| !t.contains("4111.1111.1111.1111")),
        "the card number in the reason is masked: {texts:?}"
    );
    let again = supervisor
        .clone()
        .force_close_conversation(conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: chats[0].id.clone(),
            reason: String::new(),
        })
        .await
        .expect_err("already closed");
    assert_eq!(again.code(), Code::FailedPrecondition);

    // Force close an OPEN conversation: it leaves the queue and is never offered.
    let waiting = start_chat(&h, "assign-open").await;
    wait_for_waiting(&h, &h.creds.queue_id, 1).await;
    supervisor
        .clone()
        .force_close_conversation(conv::ForceCloseConversationRequest {
            request_id: rid(),
            conversation_id: waiting.id.clone(),
            reason: String::new(),
        })
        .await
        .expect("force close an open conversation");
    wait_for_waiting(&h, &h.creds.queue_id, 0).await;
    let closed_event = events(&h, "supervisor", &waiting.id)
        .await
        .into_iter()
        .find(|e| e.event_type == conv::EventType::Closed as i32)
        .expect("a CLOSED event");
    assert_eq!(
        closed_event.segment_end_reason,
        conv::segment::EndReason::Unspecified as i32,
        "no segment ended: nobody owned it"
    );

    // Another tenant's administrator cannot see, let alone unassign, this tenant's chat.
    let (_, other_admin) = h
        .new_tenant_with_administrator("Other Co", "Olga Admin", "olga@other.example")
        .await;
    let mut foreign = ConversationServiceClient::with_interceptor(h.channel.clone(), other_admin);
    let refused = foreign
        .unassign_conversation(conv::UnassignConversationRequest {
            request_id: rid(),
            conversation_id: chats[1].id.clone(),
            tenant_id: String::new(),
        })
        .await
        .expect_err("another tenant");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    wait_for_state(&h, "supervisor", &chats[1].id, State::Active).await;
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_supervisor_monitors_then_joins_and_leaves(backend: &Backend) {
    let h = started(backend).await;
    let supervisor_id = h.creds.user("supervisor").id.clone();
    let supervisor = h.supervisor("supervisor");
    let chat = start_chat(&h, "monitor-1").await;
    let monitor = |id: &str| conv::MonitorConversationRequest {
        request_id: rid(),
        conversation_id: id.to_owned(),
    };
    let too_early = supervisor
        .clone()
        .monitor_conversation(monitor(&chat.id))
        .await
        .expect_err("an OPEN conversation is not monitored");
    assert_eq!(too_early.code(), Code::FailedPrecondition);
    take(&h, "agent1", &chat.id).await;
    let silent_before = messages(&h, "agent1", &chat.id).await.len();
    let watching = supervisor
        .clone()
        .monitor_conversation(monitor(&chat.id))
        .await
        .expect("monitor")
        .into_inner()
        .participant
        .expect("participant");
    assert_eq!(watching.user_id, supervisor_id);
    assert_eq!(watching.role, conv::ParticipantRole::Monitor as i32);
    assert_eq!(
        messages(&h, "agent1", &chat.id).await.len(),
        silent_before,
        "monitoring is silent"
    );
    let twice = supervisor
        .clone()
        .monitor_conversation(monitor(&chat.id))
        .await
        .expect_err("already monitoring");
    assert_eq!(twice.code(), Code::FailedPrecondition);

    // A monitoring supervisor cannot write; after joining they can, and both sides see it.
    let silent = h
        .conversations("supervisor")
        .send_message(conv::SendMessageRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            text: "psst".into(),
            ..Default::default()
        })
        .await
        .expect_err("a monitor is silent");
    assert_eq!(silent.code(), Code::FailedPrecondition);
    let joined = supervisor
        .clone()
        .join_conversation(conv::JoinConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
        })
        .await
        .expect("join")
        .into_inner()
        .participant
        .expect("participant");
    assert_eq!(joined.role, conv::ParticipantRole::Supervisor as i32);
    h.conversations("supervisor")
        .send_message(conv::SendMessageRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            text: "Hello, I am the team lead.".into(),
            ..Default::default()
        })
        .await
        .expect("a joined supervisor writes");
    let customer_side: Vec<String> = h
        .bot_conversations()
        .list_messages(conv::ListMessagesRequest {
            conversation_id: chat.id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("messages")
        .into_inner()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(
        customer_side
            .iter()
            .any(|t| t.contains("(supervisor) joined")),
        "the customer sees the supervisor join: {customer_side:?}"
    );
    assert!(
        customer_side
            .iter()
            .any(|t| t == "Hello, I am the team lead.")
    );

    // The owner cannot leave; the supervisor can, and the chat goes on with the owner.
    let owner_leaves = h
        .conversations("agent1")
        .leave_conversation(conv::LeaveConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
        })
        .await
        .expect_err("the owner cannot leave");
    assert_eq!(owner_leaves.code(), Code::FailedPrecondition);
    let after = h
        .conversations("supervisor")
        .leave_conversation(conv::LeaveConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
        })
        .await
        .expect("the supervisor leaves")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(after.state, State::Active as i32);
    let present: Vec<i32> = after
        .participants
        .iter()
        .filter(|p| p.state == conv::participant::State::Joined as i32)
        .map(|p| p.role)
        .collect();
    assert_eq!(present, vec![conv::ParticipantRole::Owner as i32]);
    let all = kinds(&events(&h, "supervisor", &chat.id).await);
    assert_eq!(
        all.iter()
            .filter(|k| **k == conv::EventType::ParticipantJoined)
            .count(),
        2
    );
    assert!(all.contains(&conv::EventType::ParticipantLeft));
    h.stop().await.expect("the suite stops cleanly");
}

async fn moving_to_another_queue_releases_the_owner(backend: &Backend) {
    let h = started(backend).await;
    let mut admin = h.queues("admin");
    let create = |name: &str, channel: Channel| routing::CreateQueueRequest {
        request_id: rid(),
        queue: Some(routing::Queue {
            program_id: h.creds.program_id.clone(),
            display_name: name.into(),
            accepted_channels: vec![channel as i32],
            ..Default::default()
        }),
    };
    let billing = admin
        .create_queue(create("Billing", Channel::Webchat))
        .await
        .expect("create queue")
        .into_inner()
        .queue
        .expect("queue");
    let sms_only = admin
        .create_queue(create("SMS", Channel::Sms))
        .await
        .expect("create queue")
        .into_inner()
        .queue
        .expect("queue");

    // An OPEN chat is moved by an agent who sees it.
    let open = start_chat(&h, "move-open").await;
    wait_for_waiting(&h, &h.creds.queue_id, 1).await;
    let move_to = |id: &str, queue: &str| conv::MoveConversationToQueueRequest {
        request_id: rid(),
        conversation_id: id.to_owned(),
        queue_id: queue.to_owned(),
    };
    let refused = h
        .conversations("agent2")
        .move_conversation_to_queue(move_to(&open.id, &sms_only.id))
        .await
        .expect_err("the queue does not take web chats");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let unknown = h
        .conversations("agent2")
        .move_conversation_to_queue(move_to(&open.id, &uuid::Uuid::new_v4().to_string()))
        .await
        .expect_err("no such queue");
    assert_eq!(unknown.code(), Code::NotFound);
    let moved = h
        .conversations("agent2")
        .move_conversation_to_queue(move_to(&open.id, &billing.id))
        .await
        .expect("move")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(moved.queue_id, billing.id);
    assert_eq!(moved.state, State::Open as i32);
    wait_for_waiting(&h, &h.creds.queue_id, 0).await;
    wait_for_waiting(&h, &billing.id, 1).await;
    let changed = events(&h, "supervisor", &open.id)
        .await
        .into_iter()
        .find(|e| e.event_type == conv::EventType::QueueChanged as i32)
        .expect("a QUEUE_CHANGED event");
    assert_eq!(changed.previous_queue_id, h.creds.queue_id);
    assert_eq!(changed.queue_id, billing.id);

    // An owned chat moved by its owner: released, waiting in the new queue.
    let owned = start_chat(&h, "move-owned").await;
    take(&h, "agent1", &owned.id).await;
    wait_for_capacity(&h, "agent1", 1).await;
    let not_owner = h
        .conversations("agent2")
        .move_conversation_to_queue(move_to(&owned.id, &billing.id))
        .await
        .expect_err("hidden from agent2");
    assert_eq!(not_owner.code(), Code::NotFound);
    let moved = h
        .conversations("agent1")
        .move_conversation_to_queue(move_to(&owned.id, &billing.id))
        .await
        .expect("the owner moves it")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(moved.state, State::Open as i32);
    assert!(moved.owner_agent_id.is_empty());
    wait_for_capacity(&h, "agent1", 0).await;
    wait_for_waiting(&h, &billing.id, 2).await;
    // Visible again to the agents who serve the new queue.
    serve_queues(&h, "agent2", &[&h.creds.queue_id, &billing.id]).await;
    wait_for_state(&h, "agent2", &owned.id, State::Open).await;
    h.stop().await.expect("the suite stops cleanly");
}

async fn escalation_to_a_call_happens_once(backend: &Backend) {
    let h = started(backend).await;
    let chat = start_chat(&h, "escalate-1").await;
    take(&h, "agent1", &chat.id).await;
    let escalate = |mode: conv::Mode| conv::EscalateConversationRequest {
        request_id: rid(),
        conversation_id: chat.id.clone(),
        mode: mode as i32,
    };
    let bad = h
        .conversations("agent1")
        .escalate_conversation(escalate(conv::Mode::Messaging))
        .await
        .expect_err("messaging is not a call");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let hidden = h
        .conversations("agent2")
        .escalate_conversation(escalate(conv::Mode::Voice))
        .await
        .expect_err("not agent2's");
    assert_eq!(hidden.code(), Code::NotFound);
    let call = h
        .conversations("agent1")
        .escalate_conversation(escalate(conv::Mode::Voice))
        .await
        .expect("escalate")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(call.mode, conv::Mode::Voice as i32);
    let twice = h
        .conversations("agent1")
        .escalate_conversation(escalate(conv::Mode::Video))
        .await
        .expect_err("already a call");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let escalated = events(&h, "agent1", &chat.id)
        .await
        .into_iter()
        .find(|e| e.event_type == conv::EventType::Escalated as i32)
        .expect("an ESCALATED event");
    assert_eq!(escalated.mode, conv::Mode::Voice as i32);
    h.stop().await.expect("the suite stops cleanly");
}
