//! Domain records to API messages, and API durations to microseconds.

use switchboard_proto::common::v1::{Heartbeat, SnapshotEnd};
use switchboard_proto::routing::internal::v1 as ipb;
use switchboard_proto::routing::v1 as pb;
use switchboard_server_kit::db::micros_to_timestamp;
use switchboard_server_kit::fields;

use crate::domain::{
    Agent, CapacityProfile, Channel, Offer, OfferKind, Program, Queue, QueueState, RoutingDecision,
    WaitingItem,
};
use crate::error::{Error, Result};
use crate::store::{Event, kind};

/// Microseconds as a protobuf `Duration`.
pub fn micros_to_duration(micros: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).expect("below one second"),
    }
}

/// The queue's wrap-up time limit as conversation-svc is told it; `None` for no limit.
pub fn wrap_up_time_limit(queue: &Queue) -> Option<prost_types::Duration> {
    (queue.wrap_up_time_limit_us > 0).then(|| micros_to_duration(queue.wrap_up_time_limit_us))
}

/// A request duration in microseconds: `None` when unset, INVALID_ARGUMENT when negative,
/// malformed or longer than `max` (what the field can sensibly mean).
pub fn duration_micros(
    field: &str,
    value: Option<&prost_types::Duration>,
    max: std::time::Duration,
) -> Result<Option<i64>> {
    value
        .map(|d| fields::duration_micros(d, max).map_err(|why| Error::invalid(field, why)))
        .transpose()
}

/// A request timestamp in microseconds; INVALID_ARGUMENT outside what a protobuf
/// timestamp may hold.
pub fn timestamp_micros(field: &str, value: &prost_types::Timestamp) -> Result<i64> {
    fields::timestamp_micros(value).map_err(|why| Error::invalid(field, why))
}

/// A program for the API.
pub fn program(program: &Program) -> pb::Program {
    pb::Program {
        id: program.id.clone(),
        tenant_id: program.tenant_id.clone(),
        display_name: program.display_name.clone(),
        create_time: Some(micros_to_timestamp(program.create_time)),
    }
}

/// A queue for the API.
pub fn queue(queue: &Queue) -> pb::Queue {
    pb::Queue {
        id: queue.id.clone(),
        tenant_id: queue.tenant_id.clone(),
        program_id: queue.program_id.clone(),
        display_name: queue.display_name.clone(),
        accepted_channels: queue.accepted_channels.iter().map(|c| c.as_i32()).collect(),
        assignment_method: queue.assignment_method.as_i32(),
        max_open_per_agent: queue.max_open_per_agent,
        offer_timeout: Some(micros_to_duration(queue.offer_timeout_us)),
        logout_behavior: queue.logout_behavior.as_i32(),
        offer_waiting_on_login: Some(queue.offer_waiting_on_login),
        required_skills: queue
            .required_skills
            .iter()
            .map(|skill| pb::SkillRequirement {
                name: skill.name.clone(),
                min_level: skill.min_level,
            })
            .collect(),
        priority: queue.priority,
        overflow_queue_id: queue.overflow_queue_id.clone().unwrap_or_default(),
        overflow_after: Some(micros_to_duration(queue.overflow_after_us)),
        transfer_fallback: queue.transfer_fallback.as_i32(),
        wrap_up_time_limit: Some(micros_to_duration(queue.wrap_up_time_limit_us)),
        create_time: Some(micros_to_timestamp(queue.create_time)),
        update_time: Some(micros_to_timestamp(queue.update_time)),
    }
}

/// A capacity profile for the API.
pub fn capacity_profile(profile: &CapacityProfile) -> pb::CapacityProfile {
    pb::CapacityProfile {
        id: profile.id.clone(),
        tenant_id: profile.tenant_id.clone(),
        display_name: profile.display_name.clone(),
        total_units: profile.total_units,
        channel_costs: profile
            .channel_costs
            .iter()
            .map(|cost| pb::ChannelCost {
                channel: cost.channel,
                units: cost.units,
            })
            .collect(),
        excluded_channels: profile
            .excluded_channels
            .iter()
            .map(|c| c.as_i32())
            .collect(),
    }
}

/// An agent's routing profile for the API.
pub fn agent_profile(agent: &Agent) -> pb::AgentProfile {
    pb::AgentProfile {
        agent_id: agent.agent_id.clone(),
        tenant_id: agent.tenant_id.clone(),
        display_name: agent.display_name.clone(),
        capacity_profile_id: agent.capacity_profile_id.clone(),
        queue_ids: agent.queue_ids.clone(),
        skills: agent
            .skills
            .iter()
            .map(|skill| pb::AgentSkill {
                name: skill.name.clone(),
                level: skill.level,
            })
            .collect(),
    }
}

/// An agent's live state for the API, with its open conversations and pending offers.
pub fn agent_state(agent: &Agent, open_conversations: i32, pending_offers: i32) -> pb::AgentState {
    pb::AgentState {
        agent_id: agent.agent_id.clone(),
        display_name: agent.display_name.clone(),
        presence: agent.shown_presence().as_i32(),
        chosen_presence: agent.presence.as_i32(),
        presence_reason: agent.presence_reason.clone(),
        presence_change_time: Some(micros_to_timestamp(agent.presence_change_time)),
        capacity_total: agent.capacity_total,
        capacity_used: agent.capacity_used,
        open_conversations,
        pending_offers,
    }
}

/// An offer for the API.
pub fn offer(offer: &Offer) -> pb::Offer {
    pb::Offer {
        id: offer.id.clone(),
        tenant_id: offer.tenant_id.clone(),
        conversation_id: offer.conversation_id.clone(),
        queue_id: offer.queue_id.clone(),
        agent_id: offer.agent_id.clone(),
        channel: offer.channel.as_i32(),
        kind: offer.kind.as_i32(),
        state: offer.state.as_i32(),
        create_time: Some(micros_to_timestamp(offer.create_time)),
        expire_time: Some(micros_to_timestamp(offer.expire_time)),
        resolve_time: offer.resolve_time.map(micros_to_timestamp),
        customer_display_name: offer.customer_display_name.clone(),
        capacity_units: offer.capacity_units,
        transfer_id: if offer.kind == OfferKind::Transfer {
            offer.reference_id.clone()
        } else {
            String::new()
        },
        invitation_id: if matches!(offer.kind, OfferKind::Conference | OfferKind::Consult) {
            offer.reference_id.clone()
        } else {
            String::new()
        },
        sender_id: offer.sender_id.clone(),
        sender_display_name: offer.sender_display_name.clone(),
        channel_address: offer.channel_address.clone(),
        queue_display_name: offer.queue_display_name.clone(),
        wait_start_time: Some(micros_to_timestamp(offer.wait_start_time)),
        note: offer.note.clone(),
        reject_reason: offer.reject_reason.clone(),
    }
}

/// A transfer target for the API.
pub fn transfer_target(target: &crate::domain::transfer::TransferTarget) -> pb::TransferTarget {
    use crate::domain::transfer::TransferTarget as T;
    use pb::transfer_target::{AgentTarget, QueueTarget, Target};
    let target = match target {
        T::Queue {
            queue_id,
            display_name,
            waiting,
            agents_available,
        } => Target::Queue(QueueTarget {
            queue_id: queue_id.clone(),
            display_name: display_name.clone(),
            waiting: *waiting,
            agents_available: *agents_available,
        }),
        T::Agent {
            agent_id,
            display_name,
            presence,
            free_units,
            required_units,
            queue_id,
        } => Target::Agent(AgentTarget {
            agent_id: agent_id.clone(),
            display_name: display_name.clone(),
            presence: presence.as_i32(),
            free_units: *free_units,
            required_units: *required_units,
            queue_id: queue_id.clone(),
        }),
    };
    pb::TransferTarget {
        target: Some(target),
    }
}

/// A waiting item for the API.
pub fn waiting_item(item: &WaitingItem) -> pb::WaitingItem {
    pb::WaitingItem {
        conversation_id: item.conversation_id.clone(),
        queue_id: item.queue_id.clone(),
        channel: item.channel.as_i32(),
        priority: item.priority,
        enqueue_time: Some(micros_to_timestamp(item.enqueue_time)),
        customer_display_name: item.customer_display_name.clone(),
    }
}

/// A queue's live numbers for the API.
pub fn queue_state(queue_id: &str, state: &QueueState) -> pb::QueueState {
    pb::QueueState {
        queue_id: queue_id.to_owned(),
        waiting: state.waiting,
        oldest_enqueue_time: state.oldest_enqueue_time.map(micros_to_timestamp),
        agents_available: state.agents_available,
        agents_unavailable: state.agents_unavailable,
        pending_offers: state.pending_offers,
    }
}

/// A routing decision record for the API.
pub fn routing_decision(decision: &RoutingDecision) -> pb::RoutingDecision {
    pb::RoutingDecision {
        id: decision.id.clone(),
        offer_id: decision.offer_id.clone().unwrap_or_default(),
        conversation_id: decision.conversation_id.clone(),
        queue_id: decision.queue_id.clone(),
        assignment_method: decision.assignment_method.as_i32(),
        candidates: decision
            .candidates
            .iter()
            .map(|c| pb::RoutingCandidate {
                agent_id: c.agent_id.clone(),
                reason: c.reason,
                free_units: c.free_units,
            })
            .collect(),
        decide_time: Some(micros_to_timestamp(decision.decide_time)),
        omitted: decision
            .omitted
            .iter()
            .map(|o| pb::OmittedCandidates {
                reason: o.reason,
                count: o.count,
            })
            .collect(),
    }
}

/// The contract's type of a stored event type (UNSPECIFIED for a type written by a newer
/// release than the contract this build knows).
pub fn event_type(stored: &str) -> ipb::RoutingEventType {
    use ipb::RoutingEventType as T;
    match stored {
        kind::ENQUEUED | "waiting.enqueued" => T::WaitingEnqueued,
        kind::WAITING_CANCELLED => T::WaitingCancelled,
        kind::OFFER_CREATED => T::OfferCreated,
        kind::OFFER_ACCEPTED => T::OfferAccepted,
        kind::OFFER_REJECTED => T::OfferRejected,
        kind::OFFER_TIMED_OUT => T::OfferTimedOut,
        kind::OFFER_WITHDRAWN => T::OfferWithdrawn,
        kind::PRESENCE_CHANGED => T::PresenceChanged,
        kind::CAPACITY_RESERVED => T::CapacityReserved,
        kind::CAPACITY_RELEASED => T::CapacityReleased,
        kind::PROGRAM_CREATED => T::ProgramCreated,
        kind::QUEUE_CREATED => T::QueueCreated,
        kind::QUEUE_UPDATED => T::QueueUpdated,
        kind::QUEUE_DELETED => T::QueueDeleted,
        kind::CAPACITY_PROFILE_CREATED => T::CapacityProfileCreated,
        kind::AGENT_PROFILE_SET => T::AgentProfileSet,
        kind::AGENT_QUEUE_REMOVED => T::AgentQueueRemoved,
        kind::AGENT_RENAMED => T::AgentRenamed,
        kind::ASSIGNMENT_APPLIED => T::AssignmentApplied,
        kind::ASSIGNMENT_FAILED => T::AssignmentFailed,
        kind::OVERFLOWED => T::WaitingOverflowed,
        _ => T::Unspecified,
    }
}

/// A time in micros as a timestamp, or none for 0 (a field that does not apply).
fn optional_time(micros: i64) -> Option<prost_types::Timestamp> {
    (micros != 0).then(|| micros_to_timestamp(micros))
}

/// An event for the internal Subscribe stream.
pub fn event(event: &Event) -> ipb::SubscribeResponse {
    let data = &event.data;
    let presence = data.presence.as_ref();
    ipb::SubscribeResponse {
        update: Some(ipb::subscribe_response::Update::Event(ipb::RoutingEvent {
            sequence: event.sequence,
            tenant_id: event.tenant_id.clone(),
            event_type: event_type(&event.kind) as i32,
            occur_time: Some(micros_to_timestamp(event.occur_time)),
            agent_id: event.agent_id.clone(),
            conversation_id: event.conversation_id.clone(),
            queue_id: event.queue_id.clone(),
            offer_id: event.offer_id.clone(),
            from_queue_id: event.from_queue_id.clone(),
            presence: presence.map_or(0, |p| p.shown.as_i32()),
            previous_presence: presence.map_or(0, |p| p.previous.as_i32()),
            presence_cause: presence.map_or(0, |p| p.cause.as_i32()),
            presence_reason: data.presence_reason.clone(),
            actor_id: data.actor_id.clone(),
            capacity_units: data.capacity_units,
            capacity_used: data.capacity_used,
            capacity_total: data.capacity_total,
            units_over_capacity: data.units_over_capacity,
            wait_start_time: optional_time(data.wait_start_time),
            offer_create_time: optional_time(data.offer_create_time),
            offer_expire_time: optional_time(data.offer_expire_time),
            offer_kind: data.offer_kind.map_or(0, OfferKind::as_i32),
            reject_reason: data.reject_reason.clone(),
            channel: data.channel.map_or(0, Channel::as_i32),
        })),
    }
}

/// A heartbeat stamped with the server's clock now.
pub fn heartbeat() -> Heartbeat {
    Heartbeat {
        server_time: Some(micros_to_timestamp(switchboard_server_kit::db::now_micros())),
    }
}

/// The end-of-snapshot marker.
pub fn snapshot_end() -> SnapshotEnd {
    SnapshotEnd {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_event_type_maps_to_the_contract() {
        use ipb::RoutingEventType as T;
        for stored in kind::ALL {
            assert_ne!(event_type(stored), T::Unspecified, "{stored}");
        }
        let mut types: Vec<T> = kind::ALL.iter().map(|stored| event_type(stored)).collect();
        types.sort_by_key(|t| *t as i32);
        types.dedup();
        assert_eq!(
            types.len(),
            kind::ALL.len(),
            "two stored types share a contract type"
        );
        assert_eq!(event_type("waiting.enqueued"), T::WaitingEnqueued);
        assert_eq!(event_type("some.future_kind"), T::Unspecified);
    }

    const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

    #[test]
    fn durations_round_trip_and_refuse_negatives() {
        let d = micros_to_duration(1_500_000);
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
        assert_eq!(
            duration_micros("d", Some(&d), DAY).unwrap(),
            Some(1_500_000)
        );
        assert_eq!(duration_micros("d", None, DAY).unwrap(), None);
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert!(duration_micros("d", Some(&negative), DAY).is_err());
        let bad_nanos = prost_types::Duration {
            seconds: 0,
            nanos: 1_000_000_000,
        };
        assert!(duration_micros("d", Some(&bad_nanos), DAY).is_err());
        let trillion = prost_types::Duration {
            seconds: 1_000_000_000_000,
            nanos: 0,
        };
        assert!(duration_micros("d", Some(&trillion), DAY).is_err());
    }
}
