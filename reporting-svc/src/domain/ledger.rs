//! The transfer ledger: every queue offer, transfer and invitation with its outcome, from
//! the events alone.
//!
//! A line is opened by the event that makes the proposal (routing-svc's OFFER_CREATED for a
//! queue offer, conversation-svc's TRANSFER_REQUESTED or PARTICIPANT_INVITED) and answered by
//! the event that ends it, in the same log, so the two are always applied in order.
//! Transfers and invitations are followed in conversation-svc's log, which knows their
//! sender and outcome; queue offers in routing-svc's.

use super::facts::{Event, EventKind};
use super::metrics::{RoutingEvent, RoutingEventKind};

/// What a ledger line records (the contract's `LedgerEntryKind` numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A queue offer to an agent.
    QueueOffer = 1,
    /// A transfer to an agent or a queue.
    Transfer = 2,
    /// An invitation to consult.
    Consult = 3,
    /// An invitation to conference.
    Conference = 4,
}

impl EntryKind {
    /// The kind of contract number `code`.
    pub fn from_code(code: i64) -> Option<EntryKind> {
        [
            EntryKind::QueueOffer,
            EntryKind::Transfer,
            EntryKind::Consult,
            EntryKind::Conference,
        ]
        .into_iter()
        .find(|kind| *kind as i64 == code)
    }
}

/// How a line ended (the contract's `AnswerOutcome` numbers).
pub mod outcome {
    /// Waiting for the answer.
    pub const PENDING: i32 = 1;
    /// Accepted.
    pub const ACCEPTED: i32 = 2;
    /// Rejected.
    pub const REJECTED: i32 = 3;
    /// Timed out (the agent went to RONA).
    pub const TIMED_OUT: i32 = 4;
    /// Withdrawn before an answer.
    pub const WITHDRAWN: i32 = 5;
}

/// `ParticipantRole` numbers of the invitations the ledger records.
const ROLE_CONSULTANT: i32 = 2;
const ROLE_CONFERENCE: i32 = 3;

/// One line of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Identifies the line: `offer:<id>`, `transfer:<id>` or `invitation:<id>`.
    pub entry_id: String,
    /// The tenant.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// What it records.
    pub kind: EntryKind,
    /// The transfer; empty for an offer or an invitation.
    pub transfer_id: String,
    /// routing-svc's offer to the agent; empty for a transfer to a queue.
    pub offer_id: String,
    /// Who sent it (the owner or a supervisor); empty for a queue offer.
    pub from_user_id: String,
    /// The agent it proposes the conversation to; empty for a transfer to a queue.
    pub to_agent_id: String,
    /// The queue: a transfer's target, an offer's queue.
    pub to_queue_id: String,
    /// The conversation's channel number; 0 when not given.
    pub channel: i32,
    /// When it was requested or offered.
    pub requested_at: i64,
    /// When it was answered; `None` while pending.
    pub answered_at: Option<i64>,
    /// How it ended (an [`outcome`] number).
    pub outcome: i32,
    /// The fallback applied to a transfer not taken (`TransferFallback` number); 0 otherwise.
    pub fallback: i32,
    /// Whether it proposed the conversation to an agent who had owned it before.
    pub ping_pong: bool,
}

/// What an event does to the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerChange {
    /// A new line, pending.
    Open(LedgerEntry),
    /// A pending line ends.
    Answer {
        /// The line.
        entry_id: String,
        /// How it ended.
        outcome: i32,
        /// When.
        answered_at: i64,
        /// The fallback applied; 0 for none.
        fallback: i32,
    },
}

/// The ledger change of a routing event: queue offers only (transfers and invitations are
/// recorded from conversation-svc's log, which knows who sent them).
pub fn of_routing_event(event: &RoutingEvent) -> Option<LedgerChange> {
    if !event.is_queue_offer() || event.offer_id.is_empty() {
        return None;
    }
    let entry_id = format!("offer:{}", event.offer_id);
    let answer = |outcome: i32| {
        Some(LedgerChange::Answer {
            entry_id: entry_id.clone(),
            outcome,
            answered_at: event.occurred_at,
            fallback: 0,
        })
    };
    match event.kind {
        RoutingEventKind::OfferCreated => Some(LedgerChange::Open(LedgerEntry {
            entry_id: entry_id.clone(),
            tenant_id: event.tenant_id.clone(),
            conversation_id: event.conversation_id.clone(),
            kind: EntryKind::QueueOffer,
            transfer_id: String::new(),
            offer_id: event.offer_id.clone(),
            from_user_id: String::new(),
            to_agent_id: event.agent_id.clone(),
            to_queue_id: event.queue_id.clone(),
            channel: event.channel,
            requested_at: event.offer_created_at.unwrap_or(event.occurred_at),
            answered_at: None,
            outcome: outcome::PENDING,
            fallback: 0,
            ping_pong: false,
        })),
        RoutingEventKind::OfferAccepted => answer(outcome::ACCEPTED),
        RoutingEventKind::OfferRejected => answer(outcome::REJECTED),
        RoutingEventKind::OfferTimedOut => answer(outcome::TIMED_OUT),
        RoutingEventKind::OfferWithdrawn => answer(outcome::WITHDRAWN),
        RoutingEventKind::WaitingOverflowed
        | RoutingEventKind::PresenceChanged
        | RoutingEventKind::CapacityReserved
        | RoutingEventKind::CapacityReleased
        | RoutingEventKind::AgentProfileSet
        | RoutingEventKind::Other => None,
    }
}

/// The ledger change of a conversation event: transfers and invitations.
pub fn of_conversation_event(event: &Event) -> Option<LedgerChange> {
    let open = |entry_id: String, kind: EntryKind| LedgerEntry {
        entry_id,
        tenant_id: event.tenant_id.clone(),
        conversation_id: event.conversation_id.clone(),
        kind,
        transfer_id: String::new(),
        offer_id: event.offer_id.clone(),
        from_user_id: event.actor_id.clone(),
        to_agent_id: String::new(),
        to_queue_id: event.queue_id.clone(),
        channel: event.channel,
        requested_at: event.occurred_at,
        answered_at: None,
        outcome: outcome::PENDING,
        fallback: 0,
        ping_pong: false,
    };
    match event.kind {
        EventKind::TransferRequested if !event.transfer_id.is_empty() => {
            Some(LedgerChange::Open(LedgerEntry {
                transfer_id: event.transfer_id.clone(),
                to_agent_id: event.transfer_to_agent_id.clone(),
                to_queue_id: if event.transfer_to_queue_id.is_empty() {
                    event.queue_id.clone()
                } else {
                    event.transfer_to_queue_id.clone()
                },
                ping_pong: event.ping_pong,
                ..open(
                    format!("transfer:{}", event.transfer_id),
                    EntryKind::Transfer,
                )
            }))
        }
        EventKind::TransferResolved if !event.transfer_id.is_empty() => {
            Some(LedgerChange::Answer {
                entry_id: format!("transfer:{}", event.transfer_id),
                outcome: event.answer_outcome,
                answered_at: event.occurred_at,
                fallback: event.transfer_fallback,
            })
        }
        EventKind::ParticipantInvited if !event.invitation_id.is_empty() => {
            let kind = match event.participant_role {
                ROLE_CONSULTANT => EntryKind::Consult,
                ROLE_CONFERENCE => EntryKind::Conference,
                _ => return None,
            };
            Some(LedgerChange::Open(LedgerEntry {
                to_agent_id: event.participant_user_id.clone(),
                ..open(format!("invitation:{}", event.invitation_id), kind)
            }))
        }
        EventKind::InvitationEnded if !event.invitation_id.is_empty() => {
            Some(LedgerChange::Answer {
                entry_id: format!("invitation:{}", event.invitation_id),
                outcome: event.answer_outcome,
                answered_at: event.occurred_at,
                fallback: 0,
            })
        }
        EventKind::ParticipantJoined if !event.invitation_id.is_empty() => {
            Some(LedgerChange::Answer {
                entry_id: format!("invitation:{}", event.invitation_id),
                outcome: outcome::ACCEPTED,
                answered_at: event.occurred_at,
                fallback: 0,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::metrics::OfferKind;

    #[test]
    fn a_queue_offer_opens_and_its_outcome_answers() {
        let created = RoutingEvent {
            tenant_id: "t".to_owned(),
            kind: RoutingEventKind::OfferCreated,
            occurred_at: 10,
            agent_id: "a".to_owned(),
            conversation_id: "c".to_owned(),
            queue_id: "q".to_owned(),
            offer_kind: OfferKind::Queue,
            offer_id: "o".to_owned(),
            offer_created_at: Some(9),
            ..RoutingEvent::default()
        };
        let Some(LedgerChange::Open(entry)) = of_routing_event(&created) else {
            panic!("opens a line");
        };
        assert_eq!(
            (entry.entry_id.as_str(), entry.requested_at, entry.outcome),
            ("offer:o", 9, outcome::PENDING)
        );
        let timed_out = RoutingEvent {
            kind: RoutingEventKind::OfferTimedOut,
            occurred_at: 40,
            ..created.clone()
        };
        assert_eq!(
            of_routing_event(&timed_out),
            Some(LedgerChange::Answer {
                entry_id: "offer:o".to_owned(),
                outcome: outcome::TIMED_OUT,
                answered_at: 40,
                fallback: 0
            })
        );
        // A transfer's offer is the conversation's business.
        let transfer_offer = RoutingEvent {
            offer_kind: OfferKind::Transfer,
            ..created
        };
        assert_eq!(of_routing_event(&transfer_offer), None);
    }

    #[test]
    fn transfers_and_invitations_come_from_the_conversation() {
        let requested = Event {
            tenant_id: "t".to_owned(),
            conversation_id: "c".to_owned(),
            kind: EventKind::TransferRequested,
            occurred_at: 5,
            actor_id: "sup".to_owned(),
            queue_id: "q1".to_owned(),
            transfer_id: "x".to_owned(),
            transfer_to_agent_id: "b".to_owned(),
            offer_id: "o".to_owned(),
            ping_pong: true,
            ..Event::default()
        };
        let Some(LedgerChange::Open(entry)) = of_conversation_event(&requested) else {
            panic!("opens a line");
        };
        assert_eq!(entry.entry_id, "transfer:x");
        assert_eq!(entry.kind, EntryKind::Transfer);
        assert_eq!(
            (entry.from_user_id.as_str(), entry.to_agent_id.as_str()),
            ("sup", "b")
        );
        assert_eq!(
            entry.to_queue_id, "q1",
            "the conversation's queue when none is named"
        );
        assert!(entry.ping_pong);
        let resolved = Event {
            kind: EventKind::TransferResolved,
            occurred_at: 8,
            answer_outcome: outcome::REJECTED,
            transfer_fallback: 2,
            ..requested.clone()
        };
        assert_eq!(
            of_conversation_event(&resolved),
            Some(LedgerChange::Answer {
                entry_id: "transfer:x".to_owned(),
                outcome: outcome::REJECTED,
                answered_at: 8,
                fallback: 2
            })
        );
        let invited = Event {
            kind: EventKind::ParticipantInvited,
            invitation_id: "i".to_owned(),
            participant_user_id: "c2".to_owned(),
            participant_role: ROLE_CONFERENCE,
            ..requested.clone()
        };
        let Some(LedgerChange::Open(entry)) = of_conversation_event(&invited) else {
            panic!("opens a line");
        };
        assert_eq!(
            (
                entry.entry_id.as_str(),
                entry.kind,
                entry.to_agent_id.as_str()
            ),
            ("invitation:i", EntryKind::Conference, "c2")
        );
        let joined = Event {
            kind: EventKind::ParticipantJoined,
            occurred_at: 9,
            ..invited.clone()
        };
        assert_eq!(
            of_conversation_event(&joined),
            Some(LedgerChange::Answer {
                entry_id: "invitation:i".to_owned(),
                outcome: outcome::ACCEPTED,
                answered_at: 9,
                fallback: 0
            })
        );
        // A supervisor joining on its own is no invitation.
        let supervisor = Event {
            kind: EventKind::ParticipantJoined,
            invitation_id: String::new(),
            ..invited
        };
        assert_eq!(of_conversation_event(&supervisor), None);
    }
}
