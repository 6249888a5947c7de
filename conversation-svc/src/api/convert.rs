//! Store records to protobuf messages.
//!
//! The store keeps segment reasons and event details as short codes (`"offer"`, `"closed"`,
//! `"wrap_up"`); the contract exposes them as enums. The two tables below are the one place
//! where codes and enums meet.

use prost_types::Duration;
use switchboard_proto::common::v1::AnswerOutcome;
use switchboard_proto::conversation::v1 as pb;
use switchboard_server_kit::db::micros_to_timestamp;

use crate::store;

/// How an agent became owner, by stored code.
const ASSIGNMENT_SOURCES: [(&str, pb::AssignmentSource); 5] = [
    ("offer", pb::AssignmentSource::QueueOffer),
    ("claim", pb::AssignmentSource::Claim),
    ("assign", pb::AssignmentSource::SupervisorAssign),
    ("transfer", pb::AssignmentSource::Transfer),
    ("transfer_returned", pb::AssignmentSource::TransferReturned),
];

/// How a segment ended, by stored code.
const SEGMENT_ENDS: [(&str, pb::segment::EndReason); 7] = [
    ("closed", pb::segment::EndReason::Closed),
    ("force_closed", pb::segment::EndReason::ForceClosed),
    ("transferred", pb::segment::EndReason::Transferred),
    ("unassigned", pb::segment::EndReason::Unassigned),
    ("moved", pb::segment::EndReason::MovedToQueue),
    ("logged_out", pb::segment::EndReason::LoggedOut),
    ("dropped", pb::segment::EndReason::Dropped),
];

/// Why a conversation changed queue, by the stored detail of its QUEUE_CHANGED event.
const QUEUE_CHANGES: [(&str, pb::QueueChangeReason); 2] = [
    ("moved", pb::QueueChangeReason::Moved),
    ("overflow", pb::QueueChangeReason::Overflow),
];

/// How a conversation closed, by the stored detail of its CLOSED event.
const CLOSES: [(&str, pb::CloseReason, pb::segment::EndReason); 4] = [
    (
        "wrap_up",
        pb::CloseReason::WrapUpSubmitted,
        pb::segment::EndReason::Closed,
    ),
    (
        "wrap_up_timeout",
        pb::CloseReason::WrapUpTimeLimit,
        pb::segment::EndReason::Closed,
    ),
    (
        "force_close",
        pb::CloseReason::ForceClosed,
        pb::segment::EndReason::ForceClosed,
    ),
    (
        "drop",
        pb::CloseReason::TransferDropped,
        pb::segment::EndReason::Dropped,
    ),
];

/// The enum of a stored assignment code (unknown codes are UNSPECIFIED).
pub(crate) fn assignment_source(code: &str) -> pb::AssignmentSource {
    ASSIGNMENT_SOURCES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(pb::AssignmentSource::Unspecified, |(_, s)| *s)
}

/// The stored code of an assignment source; `None` for UNSPECIFIED.
pub(crate) fn assignment_code(source: pb::AssignmentSource) -> Option<&'static str> {
    ASSIGNMENT_SOURCES
        .iter()
        .find(|(_, s)| *s == source)
        .map(|(c, _)| *c)
}

/// The stored detail of a QUEUE_CHANGED event for a reason.
pub(crate) fn queue_change_code(reason: pb::QueueChangeReason) -> &'static str {
    QUEUE_CHANGES
        .iter()
        .find(|(_, r)| *r == reason)
        .map_or("", |(c, _)| *c)
}

/// The stored detail of a CLOSED event for a close reason.
pub(crate) fn close_code(reason: pb::CloseReason) -> &'static str {
    CLOSES
        .iter()
        .find(|(_, r, _)| *r == reason)
        .map_or("", |(c, _, _)| *c)
}

fn segment_end(code: &str) -> pb::segment::EndReason {
    SEGMENT_ENDS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(pb::segment::EndReason::Unspecified, |(_, r)| *r)
}

/// A conversation in the `view` asked for: BASIC leaves out the bot transcript, the pre-chat
/// data and the contact's identities.
pub(super) fn conversation(
    c: &store::Conversation,
    view: pb::ConversationView,
) -> pb::Conversation {
    let full = view == pb::ConversationView::Full;
    pb::Conversation {
        id: c.id.clone(),
        tenant_id: c.tenant_id.clone(),
        channel: c.channel,
        state: c.state.code(),
        queue_id: c.queue_id.clone(),
        program_id: c.program_id.clone(),
        contact: Some(contact(&c.contact, full)),
        owner_agent_id: c.owner_agent_id.clone(),
        owner_display_name: c.owner_display_name.clone(),
        status_label_id: c.status_label_id.clone(),
        mode: c.mode,
        pre_chat_data: if full {
            c.pre_chat
                .iter()
                .map(|f| pb::PreChatField {
                    name: f.name.clone(),
                    label: f.label.clone(),
                    value: f.value.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
        bot_transcript: if full {
            c.transcript
                .iter()
                .map(|t| pb::TranscriptEntry {
                    sender: t.sender,
                    text: t.text.clone(),
                    create_time: Some(micros_to_timestamp(t.create_time)),
                    sender_display_name: t.sender_display_name.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
        participants: participants(c),
        wrap_up_reason_ids: c.wrap_up_reason_ids.clone(),
        create_time: Some(micros_to_timestamp(c.create_time)),
        update_time: Some(micros_to_timestamp(c.update_time)),
        close_time: c.close_time.map(micros_to_timestamp),
        segment_count: c.segment_count as i32,
        channel_address: c.channel_address.clone(),
        previous_conversation_id: c.previous_conversation_id.clone(),
        close_reason: c.close_reason,
        last_event_sequence: c.last_event_sequence,
    }
}

/// A contact, with its identities when `with_identities`.
pub(super) fn contact(k: &store::Contact, with_identities: bool) -> pb::Contact {
    pb::Contact {
        id: k.id.clone(),
        display_name: (!k.display_name.is_empty()).then(|| k.display_name.clone()),
        identities: if with_identities {
            k.identities
                .iter()
                .map(|i| pb::ChannelIdentity {
                    channel: i.channel,
                    address: i.address.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

pub(super) fn participant(p: &store::Participant) -> pb::Participant {
    let state = if p.leave_time.is_some() {
        pb::participant::State::Left
    } else {
        pb::participant::State::Joined
    };
    pb::Participant {
        user_id: p.user_id.clone(),
        display_name: p.display_name.clone(),
        role: p.role.code(),
        join_time: Some(micros_to_timestamp(p.join_time)),
        leave_time: p.leave_time.map(micros_to_timestamp),
        state: state as i32,
        invitation_id: p.invitation_id.clone(),
        invite_time: None,
    }
}

/// An invitation not (or not yet) accepted, as the participant it proposes: INVITED while
/// pending, NOT_JOINED once declined, cancelled or timed out.
pub(super) fn invited(i: &store::Invitation) -> pb::Participant {
    let state = if i.pending() {
        pb::participant::State::Invited
    } else {
        pb::participant::State::NotJoined
    };
    pb::Participant {
        user_id: i.agent_id.clone(),
        display_name: i.display_name.clone(),
        role: i.role.code(),
        join_time: None,
        leave_time: i.resolve_time.map(micros_to_timestamp),
        state: state as i32,
        invitation_id: i.id.clone(),
        invite_time: Some(micros_to_timestamp(i.invite_time)),
    }
}

/// Everyone who takes or took part in `c`, then every invitation that brought nobody in.
fn participants(c: &store::Conversation) -> Vec<pb::Participant> {
    let accepted = AnswerOutcome::Accepted as i32;
    let mut all: Vec<pb::Participant> = c
        .participants
        .iter()
        .map(|p| {
            let mut shown = participant(p);
            shown.invite_time = c
                .invitations
                .iter()
                .find(|i| !p.invitation_id.is_empty() && i.id == p.invitation_id)
                .map(|i| micros_to_timestamp(i.invite_time));
            shown
        })
        .collect();
    all.extend(
        c.invitations
            .iter()
            .filter(|i| i.outcome != accepted)
            .map(invited),
    );
    all
}

pub(super) fn message(m: &store::Message) -> pb::Message {
    pb::Message {
        id: m.id.clone(),
        conversation_id: m.conversation_id.clone(),
        sender: m.sender,
        sender_id: m.sender_id.clone(),
        sender_display_name: m.sender_display_name.clone(),
        text: m.text.clone(),
        create_time: Some(micros_to_timestamp(m.create_time)),
        agents_only: m.internal,
        sequence: m.sequence,
    }
}

pub(super) fn segment(s: &store::Segment) -> pb::Segment {
    pb::Segment {
        id: s.id.clone(),
        conversation_id: s.conversation_id.clone(),
        ordinal: s.ordinal as i32,
        agent_id: s.agent_id.clone(),
        queue_id: s.queue_id.clone(),
        assignment_source: assignment_source(&s.start_reason) as i32,
        end_reason: segment_end(&s.end_reason) as i32,
        start_time: Some(micros_to_timestamp(s.start_time)),
        end_time: s.end_time.map(micros_to_timestamp),
        wrap_up_reason_ids: s.wrap_up_reason_ids.clone(),
        wrapped_up: !s.wrap_up_reason_ids.is_empty(),
    }
}

/// A public event: its sequence is the conversation's own, never the service-wide one.
pub(super) fn event(e: &store::Event) -> pb::ConversationEvent {
    let kind = pb::EventType::try_from(e.kind).unwrap_or(pb::EventType::Unspecified);
    let mut event = pb::ConversationEvent {
        sequence: e.conversation_sequence,
        id: e.id.clone(),
        tenant_id: e.tenant_id.clone(),
        conversation_id: e.conversation_id.clone(),
        event_type: e.kind,
        occur_time: Some(micros_to_timestamp(e.occur_time)),
        actor_id: e.actor_id.clone(),
        agent_id: e.agent_id.clone(),
        previous_agent_id: e.previous_agent_id.clone(),
        queue_id: e.queue_id.clone(),
        channel: e.channel,
        segment_id: e.segment_id.clone(),
        state: e.state,
        wrap_up_reason_ids: e.wrap_up_reason_ids.clone(),
        message_id: e.message_id.clone(),
        transfer_id: e.transfer_id.clone(),
        conversation_create_time: Some(micros_to_timestamp(e.conversation_create_time)),
        program_id: e.program_id.clone(),
        previous_queue_id: e.previous_queue_id.clone(),
        participant_user_id: e.participant_user_id.clone(),
        participant_role: e.participant_role,
        mode: e.mode,
        units_over_capacity: e.units_over_capacity,
        segment_end_reason: segment_end(&e.segment_end) as i32,
        answer_outcome: e.answer_outcome,
        transfer_fallback: e.transfer_fallback,
        invitation_id: e.invitation_id.clone(),
        transfer_to_agent_id: e.transfer_to_agent_id.clone(),
        transfer_to_queue_id: e.transfer_to_queue_id.clone(),
        offer_id: e.offer_id.clone(),
        ping_pong: e.ping_pong,
        ..Default::default()
    };
    match kind {
        pb::EventType::Assigned => {
            event.assignment_source = assignment_source(&e.detail) as i32;
        }
        pb::EventType::Closed => {
            if let Some((_, close, end)) = CLOSES.iter().find(|(c, _, _)| *c == e.detail) {
                event.close_reason = *close as i32;
                // A conversation force-closed while nobody owned it ends no segment.
                if e.segment_end.is_empty() && *close != pb::CloseReason::ForceClosed {
                    event.segment_end_reason = *end as i32;
                }
            }
            event.reopen_window = Some(Duration {
                seconds: e.reopen_window_secs,
                nanos: 0,
            });
        }
        pb::EventType::StatusChanged => event.status_label_id = e.detail.clone(),
        pb::EventType::QueueChanged => {
            event.queue_change_reason = QUEUE_CHANGES
                .iter()
                .find(|(c, _)| *c == e.detail)
                .map_or(pb::QueueChangeReason::Unspecified, |(_, r)| *r)
                as i32;
        }
        _ => {}
    }
    event
}

pub(super) fn reason(r: &store::WrapUpReason) -> pb::WrapUpReason {
    pb::WrapUpReason {
        id: r.id.clone(),
        tenant_id: r.tenant_id.clone(),
        queue_ids: r.queue_ids.clone(),
        display_name: r.display_name.clone(),
        marks_transferred: r.marks_transferred,
        active: r.active,
        code: r.code.clone(),
    }
}

pub(super) fn status_label(l: &store::StatusLabel) -> pb::StatusLabel {
    pb::StatusLabel {
        id: l.id.clone(),
        tenant_id: l.tenant_id.clone(),
        display_name: l.display_name.clone(),
    }
}

pub(super) fn canned_response(p: &store::CannedResponse) -> pb::CannedResponse {
    pb::CannedResponse {
        id: p.id.clone(),
        tenant_id: p.tenant_id.clone(),
        keyword: p.keyword.clone(),
        text: p.text.clone(),
        update_time: Some(micros_to_timestamp(p.update_time)),
    }
}

pub(super) fn status_count(c: &store::StatusCount) -> pb::StatusCount {
    pb::StatusCount {
        status_label_id: c.status_label_id.clone(),
        display_name: c.display_name.clone(),
        open_conversations: c.open_conversations,
    }
}

/// A transfer of the ledger for the API.
pub(super) fn transfer(t: &store::Transfer) -> pb::Transfer {
    pb::Transfer {
        id: t.id.clone(),
        conversation_id: t.conversation_id.clone(),
        from_user_id: t.from_user_id.clone(),
        to_agent_id: t.to_agent_id.clone(),
        to_queue_id: t.to_queue_id.clone(),
        outcome: t.outcome,
        fallback_applied: t.fallback_applied,
        from_agent_id: t.from_agent_id.clone(),
        by_supervisor: t.by_supervisor,
        offer_id: t.offer_id.clone(),
        reject_reason: t.reject_reason.clone(),
        note: t.note.clone(),
        request_time: Some(micros_to_timestamp(t.request_time)),
        resolve_time: t.resolve_time.map(micros_to_timestamp),
        ping_pong: t.ping_pong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_assignment_code_round_trips() {
        for (code, source) in ASSIGNMENT_SOURCES {
            assert_eq!(assignment_source(code), source);
            assert_eq!(assignment_code(source), Some(code));
        }
        assert_eq!(assignment_code(pb::AssignmentSource::Unspecified), None);
        assert_eq!(
            assignment_source("nonsense"),
            pb::AssignmentSource::Unspecified
        );
    }

    #[test]
    fn close_codes_name_their_reason() {
        assert_eq!(close_code(pb::CloseReason::WrapUpSubmitted), "wrap_up");
        assert_eq!(close_code(pb::CloseReason::ForceClosed), "force_close");
        assert_eq!(segment_end("closed"), pb::segment::EndReason::Closed);
        assert_eq!(segment_end(""), pb::segment::EndReason::Unspecified);
    }
}
