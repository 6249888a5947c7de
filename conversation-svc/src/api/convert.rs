//! Store records to protobuf messages.

use switchboard_proto::conversation::v1 as pb;
use switchboard_server_kit::db::micros_to_timestamp;

use crate::store;

pub(super) fn conversation(c: &store::Conversation) -> pb::Conversation {
    pb::Conversation {
        id: c.id.clone(),
        tenant_id: c.tenant_id.clone(),
        channel: c.channel,
        state: c.state.code(),
        queue_id: c.queue_id.clone(),
        program_id: c.program_id.clone(),
        contact: Some(pb::Contact {
            id: c.contact.id.clone(),
            display_name: c.contact.display_name.clone(),
            channel_address: c.contact.channel_address.clone(),
        }),
        owner_agent_id: c.owner_agent_id.clone(),
        owner_display_name: c.owner_display_name.clone(),
        status_label_id: c.status_label_id.clone(),
        mode: c.mode,
        pre_chat_data: c
            .pre_chat
            .iter()
            .map(|f| pb::PreChatField {
                name: f.name.clone(),
                label: f.label.clone(),
                value: f.value.clone(),
            })
            .collect(),
        bot_transcript: c
            .transcript
            .iter()
            .map(|t| pb::TranscriptEntry {
                sender: t.sender,
                text: t.text.clone(),
                create_time: Some(micros_to_timestamp(t.create_time)),
            })
            .collect(),
        participants: c.participants.iter().map(participant).collect(),
        wrap_up_reason_ids: c.wrap_up_reason_ids.clone(),
        create_time: Some(micros_to_timestamp(c.create_time)),
        update_time: Some(micros_to_timestamp(c.update_time)),
        close_time: c.close_time.map(micros_to_timestamp),
        segment_count: c.segment_count as i32,
    }
}

pub(super) fn participant(p: &store::Participant) -> pb::Participant {
    pb::Participant {
        user_id: p.user_id.clone(),
        display_name: p.display_name.clone(),
        role: p.role.code(),
        join_time: Some(micros_to_timestamp(p.join_time)),
        leave_time: p.leave_time.map(micros_to_timestamp),
    }
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
        internal: m.internal,
    }
}

pub(super) fn segment(s: &store::Segment) -> pb::Segment {
    pb::Segment {
        id: s.id.clone(),
        conversation_id: s.conversation_id.clone(),
        ordinal: s.ordinal as i32,
        agent_id: s.agent_id.clone(),
        queue_id: s.queue_id.clone(),
        start_reason: s.start_reason.clone(),
        end_reason: s.end_reason.clone(),
        start_time: Some(micros_to_timestamp(s.start_time)),
        end_time: s.end_time.map(micros_to_timestamp),
        wrap_up_reason_ids: s.wrap_up_reason_ids.clone(),
    }
}

pub(super) fn event(e: &store::Event) -> pb::ConversationEvent {
    pb::ConversationEvent {
        sequence: e.sequence,
        id: e.id.clone(),
        tenant_id: e.tenant_id.clone(),
        conversation_id: e.conversation_id.clone(),
        r#type: e.kind,
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
        detail: e.detail.clone(),
        conversation_create_time: Some(micros_to_timestamp(e.conversation_create_time)),
        program_id: e.program_id.clone(),
    }
}

pub(super) fn reason(r: &store::WrapUpReason) -> pb::WrapUpReason {
    pb::WrapUpReason {
        id: r.id.clone(),
        tenant_id: r.tenant_id.clone(),
        queue_ids: r.queue_ids.clone(),
        display_name: r.display_name.clone(),
        marks_transferred: r.marks_transferred,
        active: r.active,
    }
}
