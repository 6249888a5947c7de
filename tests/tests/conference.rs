//! Consult and conference through the gateway on SQLite and PostgreSQL (product rule 8):
//! the owner invites another agent, who accepts or declines on its offer stream; a
//! consultant is hidden from the customer and holds no capacity, a conference agent is
//! announced and holds capacity until it leaves or the owner ends the conference; the owner
//! cancels invitations; everything the owner brought in goes when the chat ends.

use switchboard_proto::common::v1::AnswerOutcome;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation::State;
use switchboard_proto::conversation::v1::participant::State as Standing;
use switchboard_proto::routing::v1 as routing;
use switchboard_tests::flows::{
    WAIT, agent_state, events, messages, offer_stream, pending_offer, set_presence, start_chat,
    take, wait_for_capacity, wait_for_state,
};
use switchboard_tests::{Backend, Harness, eventually, rid};
use tonic::Code;

async fn started(backend: &Backend) -> Harness {
    Harness::start(backend)
        .await
        .unwrap_or_else(|e| panic!("{}: suite did not start: {e:#}", backend.name()))
}

fn invite(
    conversation_id: &str,
    agent_id: &str,
    role: conv::ParticipantRole,
) -> conv::InviteParticipantRequest {
    conv::InviteParticipantRequest {
        request_id: rid(),
        conversation_id: conversation_id.to_owned(),
        agent_id: agent_id.to_owned(),
        role: role as i32,
        note: "card 4111.1111.1111.1111 declined twice".into(),
    }
}

/// The conversation's participant entry for `user_id` with `invitation_id`, once it stands
/// as `standing`, as the supervisor reads it.
async fn wait_for_standing(
    h: &Harness,
    conversation_id: &str,
    invitation_id: &str,
    standing: Standing,
) -> conv::Participant {
    eventually("the participant's standing", WAIT, || async {
        let c = h
            .conversations("supervisor")
            .get_conversation(conv::GetConversationRequest {
                conversation_id: conversation_id.to_owned(),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .conversation?;
        c.participants
            .into_iter()
            .find(|p| p.invitation_id == invitation_id && p.state == standing as i32)
    })
    .await
}

/// Demo agent `handle` accepts `offer_id`.
async fn accept(h: &Harness, handle: &str, offer_id: &str) {
    h.agent(handle)
        .accept_offer(routing::AcceptOfferRequest {
            request_id: rid(),
            offer_id: offer_id.to_owned(),
        })
        .await
        .unwrap_or_else(|e| panic!("{handle} accepts: {e}"));
}

/// agent1 takes a new chat from `address` while agent2, Available, streams its offers.
async fn chat_with_agent2_ready(
    h: &Harness,
    address: &str,
) -> (
    conv::Conversation,
    tonic::Streaming<routing::StreamOffersResponse>,
) {
    let chat = start_chat(h, address).await;
    take(h, "agent1", &chat.id).await;
    let offers2 = offer_stream(h, "agent2").await;
    set_presence(h, "agent2", routing::Presence::Available).await;
    (chat, offers2)
}

/// agent1 invites agent2 to `chat` in `role`; the participant answered.
async fn invited(h: &Harness, chat: &str, role: conv::ParticipantRole) -> conv::Participant {
    let agent2 = h.creds.user("agent2").id.clone();
    h.conversations("agent1")
        .invite_participant(invite(chat, &agent2, role))
        .await
        .expect("agent1 invites agent2")
        .into_inner()
        .participant
        .expect("participant")
}

fn send(conversation_id: &str, text: &str, agents_only: bool) -> conv::SendMessageRequest {
    conv::SendMessageRequest {
        request_id: rid(),
        conversation_id: conversation_id.to_owned(),
        text: text.to_owned(),
        agents_only,
        ..Default::default()
    }
}

switchboard_tests::on_each_backend!(
    a_consultant_joins_hidden_and_holds_no_capacity,
    a_conference_agent_holds_capacity_until_the_owner_ends_the_conference,
    invitations_not_taken_end_and_helpers_go_with_the_chat,
);

async fn a_consultant_joins_hidden_and_holds_no_capacity(backend: &Backend) {
    let h = started(backend).await;
    let agent1 = h.creds.user("agent1").id.clone();
    let agent2 = h.creds.user("agent2").id.clone();
    let (chat, mut offers2) = chat_with_agent2_ready(&h, "consult-1").await;

    // Bad input and callers other than the owner change nothing.
    let owner_role = h
        .conversations("agent1")
        .invite_participant(invite(&chat.id, &agent2, conv::ParticipantRole::Owner))
        .await
        .expect_err("OWNER is not an invitation role");
    assert_eq!(owner_role.code(), Code::InvalidArgument);
    let hidden = h
        .conversations("agent2")
        .invite_participant(invite(&chat.id, &agent1, conv::ParticipantRole::Consultant))
        .await
        .expect_err("agent2 does not see agent1's chat");
    assert_eq!(hidden.code(), Code::NotFound);
    let oneself = h
        .conversations("agent1")
        .invite_participant(invite(&chat.id, &agent1, conv::ParticipantRole::Consultant))
        .await
        .expect_err("the owner does not invite itself");
    assert_eq!(oneself.code(), Code::FailedPrecondition);

    let request = invite(&chat.id, &agent2, conv::ParticipantRole::Consultant);
    let invited = h
        .conversations("agent1")
        .invite_participant(request.clone())
        .await
        .expect("agent1 invites agent2 to consult")
        .into_inner()
        .participant
        .expect("participant");
    assert_eq!(invited.state, Standing::Invited as i32);
    assert_eq!(invited.user_id, agent2);
    assert_eq!(invited.role, conv::ParticipantRole::Consultant as i32);
    assert!(!invited.invitation_id.is_empty());
    assert!(invited.invite_time.is_some() && invited.join_time.is_none());
    let again = h
        .conversations("agent1")
        .invite_participant(request)
        .await
        .expect("a retry is answered")
        .into_inner()
        .participant
        .expect("participant");
    assert_eq!(again, invited, "a retry gets the same invitation");

    let offer = pending_offer(&mut offers2, &chat.id).await;
    assert_eq!(offer.kind, routing::OfferKind::Consult as i32);
    assert_eq!(offer.invitation_id, invited.invitation_id);
    assert_eq!(offer.sender_id, agent1);
    assert_eq!(offer.capacity_units, 0, "a consultant holds no capacity");
    assert!(
        !offer.note.contains("4111.1111.1111.1111"),
        "the card number in the note is masked: {:?}",
        offer.note
    );
    // One invitation per agent at a time, and no transfer while it waits.
    let twice = h
        .conversations("agent1")
        .invite_participant(invite(&chat.id, &agent2, conv::ParticipantRole::Conference))
        .await
        .expect_err("agent2 is already invited");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let transfer = h
        .conversations("agent1")
        .transfer_conversation(conv::TransferConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
            target_agent_id: agent2.clone(),
            ..Default::default()
        })
        .await
        .expect_err("an invitation is waiting");
    assert_eq!(transfer.code(), Code::FailedPrecondition);

    accept(&h, "agent2", &offer.id).await;
    let joined = wait_for_standing(&h, &chat.id, &invited.invitation_id, Standing::Joined).await;
    assert_eq!(joined.role, conv::ParticipantRole::Consultant as i32);
    assert_eq!(joined.display_name, "Sam Chen");
    assert!(joined.invite_time.is_some() && joined.join_time.is_some());
    // The consultant reads the chat, owned by agent1 still; no capacity moved.
    let seen = wait_for_state(&h, "agent2", &chat.id, State::Active).await;
    assert_eq!(seen.owner_agent_id, agent1);
    assert_eq!(agent_state(&h, "agent2").await.capacity_used, 0);
    wait_for_capacity(&h, "agent1", 1).await;

    // Hidden from the customer: internal notes only, and the join notice is internal too.
    let public = h
        .conversations("agent2")
        .send_message(send(&chat.id, "hello customer", false))
        .await
        .expect_err("a consultant does not write to the customer");
    assert_eq!(public.code(), Code::FailedPrecondition);
    h.conversations("agent2")
        .send_message(send(&chat.id, "offer the refund", true))
        .await
        .expect("a consultant writes an internal note");
    let notices: Vec<conv::Message> = messages(&h, "agent1", &chat.id)
        .await
        .into_iter()
        .filter(|m| m.text.contains("Sam Chen"))
        .collect();
    assert!(
        !notices.is_empty() && notices.iter().all(|m| m.agents_only),
        "the customer never hears of the consultant: {notices:?}"
    );

    // The consultant leaves; the chat goes on with agent1 and agent2 no longer sees it.
    h.conversations("agent2")
        .leave_conversation(conv::LeaveConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
        })
        .await
        .expect("agent2 leaves");
    wait_for_standing(&h, &chat.id, &invited.invitation_id, Standing::Left).await;
    let gone = h
        .conversations("agent2")
        .get_conversation(conv::GetConversationRequest {
            conversation_id: chat.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("hidden again");
    assert_eq!(gone.code(), Code::NotFound);
    let all = events(&h, "supervisor", &chat.id).await;
    let invited_event = all
        .iter()
        .find(|e| e.event_type == conv::EventType::ParticipantInvited as i32)
        .expect("PARTICIPANT_INVITED");
    assert_eq!(invited_event.invitation_id, invited.invitation_id);
    assert_eq!(invited_event.participant_user_id, agent2);
    assert_eq!(invited_event.actor_id, agent1);
    for kind in [
        conv::EventType::ParticipantJoined,
        conv::EventType::ParticipantLeft,
    ] {
        assert!(
            all.iter().any(|e| e.event_type == kind as i32
                && e.participant_user_id == agent2
                && e.participant_role == conv::ParticipantRole::Consultant as i32),
            "{kind:?} for agent2"
        );
    }
    wait_for_capacity(&h, "agent1", 1).await;
    assert_eq!(agent_state(&h, "agent2").await.capacity_used, 0);
    h.stop().await.expect("the suite stops cleanly");
}

async fn a_conference_agent_holds_capacity_until_the_owner_ends_the_conference(backend: &Backend) {
    let h = started(backend).await;
    let (chat, mut offers2) = chat_with_agent2_ready(&h, "conference-1").await;
    let invited = invited(&h, &chat.id, conv::ParticipantRole::Conference).await;
    let offer = pending_offer(&mut offers2, &chat.id).await;
    assert_eq!(offer.kind, routing::OfferKind::Conference as i32);
    assert_eq!(offer.capacity_units, 1);
    accept(&h, "agent2", &offer.id).await;
    wait_for_standing(&h, &chat.id, &invited.invitation_id, Standing::Joined).await;
    wait_for_capacity(&h, "agent2", 1).await;
    wait_for_capacity(&h, "agent1", 1).await;

    // The customer is told, and the conference agent writes to the customer.
    let said = messages(&h, "agent1", &chat.id).await;
    assert!(
        said.iter()
            .any(|m| !m.agents_only && m.text == "Sam Chen joined the conversation"),
        "the customer sees the join notice: {said:?}"
    );
    h.conversations("agent2")
        .send_message(send(&chat.id, "I can help with that", false))
        .await
        .expect("a conference agent writes to the customer");

    // Only the owner ends it, with wrap-up reasons for it.
    let reason = h.creds.wrap_up_reason_ids[0].clone();
    let end = |by: &'static str, reasons: Vec<String>| {
        let h = &h;
        let id = chat.id.clone();
        async move {
            h.conversations(by)
                .end_conference(conv::EndConferenceRequest {
                    request_id: rid(),
                    conversation_id: id,
                    wrap_up_reason_ids: reasons,
                })
                .await
        }
    };
    let by_agent2 = end("agent2", vec![reason.clone()])
        .await
        .expect_err("only the owner ends the conference");
    assert_eq!(by_agent2.code(), Code::FailedPrecondition);
    let no_reason = end("agent1", vec![])
        .await
        .expect_err("wrap-up reasons are required");
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    let ended = end("agent1", vec![reason.clone()])
        .await
        .expect("agent1 ends the conference")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(ended.state, State::Active as i32, "the chat goes on");
    let left = ended
        .participants
        .iter()
        .find(|p| p.invitation_id == invited.invitation_id)
        .expect("agent2's participation");
    assert_eq!(left.state, Standing::Left as i32);
    wait_for_capacity(&h, "agent2", 0).await;
    wait_for_capacity(&h, "agent1", 1).await;
    let again = end("agent1", vec![reason.clone()])
        .await
        .expect_err("no conference is going on");
    assert_eq!(again.code(), Code::FailedPrecondition);
    let conference_ended = events(&h, "supervisor", &chat.id)
        .await
        .into_iter()
        .find(|e| e.event_type == conv::EventType::ConferenceEnded as i32)
        .expect("CONFERENCE_ENDED");
    assert_eq!(conference_ended.wrap_up_reason_ids, vec![reason]);
    let said = messages(&h, "agent1", &chat.id).await;
    assert!(
        said.iter()
            .any(|m| !m.agents_only && m.text == "Sam Chen left the conversation"),
        "the customer sees the leave notice"
    );
    h.stop().await.expect("the suite stops cleanly");
}

async fn invitations_not_taken_end_and_helpers_go_with_the_chat(backend: &Backend) {
    let h = started(backend).await;
    let agent2 = h.creds.user("agent2").id.clone();
    let (chat, mut offers2) = chat_with_agent2_ready(&h, "conference-2").await;

    // Declined: the invitation ends NOT_JOINED with the reason's outcome recorded.
    let declined = invited(&h, &chat.id, conv::ParticipantRole::Conference).await;
    let offer = pending_offer(&mut offers2, &chat.id).await;
    h.agent("agent2")
        .reject_offer(routing::RejectOfferRequest {
            request_id: rid(),
            offer_id: offer.id,
            reason: "on a call".into(),
        })
        .await
        .expect("agent2 declines");
    wait_for_standing(&h, &chat.id, &declined.invitation_id, Standing::NotJoined).await;
    let ended = eventually("INVITATION_ENDED", WAIT, || async {
        events(&h, "supervisor", &chat.id)
            .await
            .into_iter()
            .find(|e| e.event_type == conv::EventType::InvitationEnded as i32)
    })
    .await;
    assert_eq!(ended.answer_outcome, AnswerOutcome::Rejected as i32);
    assert_eq!(ended.invitation_id, declined.invitation_id);
    wait_for_capacity(&h, "agent2", 0).await;

    // Cancelled by the owner: the offer is withdrawn; a second cancel is refused.
    let cancelled = invited(&h, &chat.id, conv::ParticipantRole::Conference).await;
    let offer = pending_offer(&mut offers2, &chat.id).await;
    let cancel = |by: &'static str| {
        let h = &h;
        let id = chat.id.clone();
        let invitation_id = cancelled.invitation_id.clone();
        async move {
            h.conversations(by)
                .cancel_invitation(conv::CancelInvitationRequest {
                    request_id: rid(),
                    conversation_id: id,
                    invitation_id,
                })
                .await
        }
    };
    let by_agent2 = cancel("agent2").await.expect_err("hidden from agent2");
    assert_eq!(by_agent2.code(), Code::NotFound);
    let shown = cancel("agent1")
        .await
        .expect("agent1 cancels")
        .into_inner()
        .participant
        .expect("participant");
    assert_eq!(shown.state, Standing::NotJoined as i32);
    let twice = cancel("agent1").await.expect_err("no longer pending");
    assert_eq!(twice.code(), Code::FailedPrecondition);
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
    wait_for_standing(&h, &chat.id, &cancelled.invitation_id, Standing::NotJoined).await;

    // A conference agent leaves with the chat's end; a pending consult is withdrawn.
    let joined = invited(&h, &chat.id, conv::ParticipantRole::Conference).await;
    let offer = pending_offer(&mut offers2, &chat.id).await;
    accept(&h, "agent2", &offer.id).await;
    wait_for_standing(&h, &chat.id, &joined.invitation_id, Standing::Joined).await;
    wait_for_capacity(&h, "agent2", 1).await;
    let wrapping = h
        .conversations("agent1")
        .end_conversation(conv::EndConversationRequest {
            request_id: rid(),
            conversation_id: chat.id.clone(),
        })
        .await
        .expect("agent1 ends the chat")
        .into_inner()
        .conversation
        .expect("conversation");
    assert_eq!(wrapping.state, State::WrapUp as i32);
    assert!(
        wrapping
            .participants
            .iter()
            .filter(|p| p.user_id == agent2)
            .all(|p| p.state != Standing::Joined as i32 && p.state != Standing::Invited as i32),
        "nobody agent1 brought in stays: {:?}",
        wrapping.participants
    );
    wait_for_capacity(&h, "agent2", 0).await;
    wait_for_capacity(&h, "agent1", 1).await;
    let refused = h
        .conversations("agent1")
        .invite_participant(invite(&chat.id, &agent2, conv::ParticipantRole::Consultant))
        .await
        .expect_err("no invitations in wrap-up");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    h.stop().await.expect("the suite stops cleanly");
}
