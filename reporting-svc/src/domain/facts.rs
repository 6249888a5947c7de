//! Facts derived from conversation events: what the reports read.
//!
//! One row of [`ConversationFacts`] per conversation (where and when it was created and
//! closed, who closed it, how many segments, transfers and reopens), and one
//! [`AssignmentFact`] per ASSIGNED event (who received it from whom). Folding the event
//! log in log order through [`apply`] gives the same facts however often it is
//! replayed, which is what lets a report agree with a recomputation from the log.

/// What happened to a conversation, as far as the reports care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventKind {
    /// The conversation was created.
    Created,
    /// An agent became owner: a new segment.
    Assigned,
    /// The owner was removed.
    Unassigned,
    /// A transfer was requested.
    TransferRequested,
    /// A transfer ended (see its outcome).
    TransferResolved,
    /// An agent was invited to consult or conference.
    ParticipantInvited,
    /// An invitation ended without the agent joining.
    InvitationEnded,
    /// A participant joined (an invited agent accepting, among others).
    ParticipantJoined,
    /// A segment was wrapped up with reasons (dispositions).
    WrapUpSubmitted,
    /// The conversation was closed.
    Closed,
    /// The conversation's status label was set or cleared.
    StatusChanged,
    /// The customer wrote again within the reopen window.
    Reopened,
    /// Anything else (messages, waiting, status labels...): only the conversation's
    /// queue, program and channel are refreshed.
    #[default]
    Other,
}

/// One conversation event, in the units the store keeps (microseconds since the epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Position in conversation-svc's service-wide event log (`LogEntry.log_sequence`), the
    /// consumer's cursor. Not the event's per-conversation `sequence`, which repeats across
    /// conversations.
    pub log_sequence: i64,
    /// Tenant of the conversation.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// What happened.
    pub kind: EventKind,
    /// When it happened.
    pub occurred_at: i64,
    /// The owner after the change; empty when unassigned.
    pub agent_id: String,
    /// The owner before the change, for assignments; empty when none.
    pub previous_agent_id: String,
    /// The queue after the change; empty when not given.
    pub queue_id: String,
    /// The queue a transfer takes the conversation from, for TRANSFER_RESOLVED; empty when
    /// not given.
    pub previous_queue_id: String,
    /// The program of that queue; empty when not given.
    pub program_id: String,
    /// The channel (`switchboard.common.v1.Channel` number); 0 when not given.
    pub channel: i32,
    /// When the conversation was created, if the event says.
    pub conversation_created_at: Option<i64>,
    /// Who caused it; empty for the customer or the system.
    pub actor_id: String,
    /// The transfer, for transfer events.
    pub transfer_id: String,
    /// The agent a transfer is to, for TRANSFER_REQUESTED; empty for a queue.
    pub transfer_to_agent_id: String,
    /// The queue a transfer is to, for TRANSFER_REQUESTED and TRANSFER_RESOLVED.
    pub transfer_to_queue_id: String,
    /// routing-svc's offer to the agent, for a transfer to an agent or an invitation.
    pub offer_id: String,
    /// Whether a transfer sends the conversation back to an agent who had it.
    pub ping_pong: bool,
    /// The outcome (`AnswerOutcome` number) of a transfer or an invitation that ended.
    pub answer_outcome: i32,
    /// The fallback applied (`TransferFallback` number) to a transfer not taken.
    pub transfer_fallback: i32,
    /// The invitation, for invitation and participant events.
    pub invitation_id: String,
    /// The participant, for participant and invitation events.
    pub participant_user_id: String,
    /// That participant's `ParticipantRole` number.
    pub participant_role: i32,
    /// The wrap-up reasons given, for WRAP_UP_SUBMITTED.
    pub wrap_up_reason_ids: Vec<String>,
    /// The label after the change, for STATUS_CHANGED (empty when cleared).
    pub status_label_id: String,
    /// For WRAP_UP_SUBMITTED: the reasons are a transfer sender's, given with the transfer
    /// or later for the segment the transfer ended.
    pub sender_reasons: bool,
}

/// What the reports know about one conversation. The per-conversation export reads it
/// from a JSON array of these fields in this order (the store's `FACT_COLUMNS`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct ConversationFacts {
    /// The conversation.
    pub conversation_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its channel (`switchboard.common.v1.Channel` number).
    pub channel: i32,
    /// The queue it is in or was last routed through; empty when never queued.
    pub queue_id: String,
    /// The program of that queue.
    pub program_id: String,
    /// When it was created.
    pub created_at: i64,
    /// When it was last closed; `None` while not closed (also after a reopen).
    pub closed_at: Option<i64>,
    /// The owner when it was closed; `None` when closed without an owner.
    pub closing_agent_id: Option<String>,
    /// When the closing agent's segment started.
    pub closing_segment_start: Option<i64>,
    /// The current owner.
    pub owner_agent_id: Option<String>,
    /// When the current owner's segment started.
    pub owner_since: Option<i64>,
    /// Segments so far (one per assignment).
    pub segments: i64,
    /// Transfers requested so far, whatever their outcome.
    pub transfers: i64,
    /// Reopens so far.
    pub reopens: i64,
    /// Its status label now; empty for none.
    pub status_label_id: String,
}

/// One assignment: an agent became owner, possibly taking it from another agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignmentFact {
    /// Log sequence of the ASSIGNED event; identifies the fact.
    pub log_sequence: i64,
    /// Tenant of the conversation.
    pub tenant_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The new owner.
    pub agent_id: String,
    /// The owner before; empty when none.
    pub previous_agent_id: String,
    /// The queue at the time.
    pub queue_id: String,
    /// The channel.
    pub channel: i32,
    /// When the agent became owner.
    pub assigned_at: i64,
    /// Whether it counts as a reassignment received by the agent (see [`is_reassignment`]).
    pub reassignment: bool,
}

/// What one event changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The conversation's facts after the event, when they changed.
    pub conversation: Option<ConversationFacts>,
    /// The assignment the event records, for ASSIGNED events.
    pub assignment: Option<AssignmentFact>,
}

/// Product rule 15: an assignment is a reassignment received by `agent_id` when another
/// agent owned the conversation just before.
pub fn is_reassignment(agent_id: &str, previous_agent_id: &str) -> bool {
    !previous_agent_id.is_empty() && previous_agent_id != agent_id
}

/// Product rule 18, as the reporting issue words it: a conversation is resolved at first
/// contact when the agent who closed it did so in its only segment, with no completed
/// transfer and no reopen (any reopen is within the reopen window, or it would not have
/// reopened). One segment already means no transfer was completed: a transfer taken ends
/// the sender's segment. A transfer asked for and declined leaves the customer with the
/// same agent, who still resolved it at first contact.
pub fn resolved_first_contact(segments: i64, reopens: i64) -> bool {
    segments == 1 && reopens == 0
}

/// What the per-conversation table shows of a conversation: its facts without the tenant
/// (the export's own) and the segment start times (which only the close-time report
/// reads), so that an export reads no more than it writes; borrowed from the page of text
/// it was read from, so that writing a line allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConversationLine<'a> {
    /// The conversation.
    pub conversation_id: &'a str,
    /// Its channel (`switchboard.common.v1.Channel` number).
    pub channel: i32,
    /// The queue it is in or was last routed through; empty when never queued.
    pub queue_id: &'a str,
    /// The program of that queue.
    pub program_id: &'a str,
    /// When it was created.
    pub created_at: i64,
    /// When it was last closed; `None` while not closed.
    pub closed_at: Option<i64>,
    /// The owner when it was closed.
    pub closing_agent_id: Option<&'a str>,
    /// The current owner.
    pub owner_agent_id: Option<&'a str>,
    /// Segments so far.
    pub segments: i64,
    /// Transfers requested so far.
    pub transfers: i64,
    /// Reopens so far.
    pub reopens: i64,
    /// Its status label now; empty for none.
    pub status_label_id: &'a str,
}

impl ConversationLine<'_> {
    /// Whether it was resolved at first contact (product rule 18); `None` while open.
    pub fn resolved_first_contact(&self) -> Option<bool> {
        self.closed_at
            .map(|_| resolved_first_contact(self.segments, self.reopens))
    }
}

impl<'a> From<&'a ConversationFacts> for ConversationLine<'a> {
    fn from(facts: &'a ConversationFacts) -> ConversationLine<'a> {
        ConversationLine {
            conversation_id: &facts.conversation_id,
            channel: facts.channel,
            queue_id: &facts.queue_id,
            program_id: &facts.program_id,
            created_at: facts.created_at,
            closed_at: facts.closed_at,
            closing_agent_id: facts.closing_agent_id.as_deref(),
            owner_agent_id: facts.owner_agent_id.as_deref(),
            segments: facts.segments,
            transfers: facts.transfers,
            reopens: facts.reopens,
            status_label_id: &facts.status_label_id,
        }
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// Folds `event` into the conversation's current facts (`None` when the conversation was
/// never seen). Events are expected in log order; a conversation first seen through
/// a later event still gets a row, created at the event's conversation creation time.
pub fn apply(current: Option<&ConversationFacts>, event: &Event) -> Change {
    let created_at = event.conversation_created_at.unwrap_or(event.occurred_at);
    let mut facts = current.cloned().unwrap_or_else(|| ConversationFacts {
        conversation_id: event.conversation_id.clone(),
        tenant_id: event.tenant_id.clone(),
        channel: event.channel,
        queue_id: event.queue_id.clone(),
        program_id: event.program_id.clone(),
        created_at,
        closed_at: None,
        closing_agent_id: None,
        closing_segment_start: None,
        owner_agent_id: None,
        owner_since: None,
        segments: 0,
        transfers: 0,
        reopens: 0,
        status_label_id: String::new(),
    });
    if event.channel != 0 {
        facts.channel = event.channel;
    }
    // A wrap-up names the queue of the segment it wraps up, which a transfer may have
    // left since: only the other events say where the conversation is.
    if event.kind != EventKind::WrapUpSubmitted {
        if !event.queue_id.is_empty() {
            facts.queue_id.clone_from(&event.queue_id);
        }
        if !event.program_id.is_empty() {
            facts.program_id.clone_from(&event.program_id);
        }
    }

    let mut assignment = None;
    match event.kind {
        EventKind::Created => facts.created_at = created_at,
        EventKind::Assigned => {
            facts.segments += 1;
            facts.owner_agent_id = non_empty(&event.agent_id);
            facts.owner_since = Some(event.occurred_at);
            assignment = Some(AssignmentFact {
                log_sequence: event.log_sequence,
                tenant_id: facts.tenant_id.clone(),
                conversation_id: facts.conversation_id.clone(),
                agent_id: event.agent_id.clone(),
                previous_agent_id: event.previous_agent_id.clone(),
                queue_id: facts.queue_id.clone(),
                channel: facts.channel,
                assigned_at: event.occurred_at,
                reassignment: is_reassignment(&event.agent_id, &event.previous_agent_id),
            });
        }
        EventKind::Unassigned => {
            facts.owner_agent_id = None;
            facts.owner_since = None;
        }
        EventKind::TransferRequested => facts.transfers += 1,
        EventKind::Closed => {
            facts.closed_at = Some(event.occurred_at);
            // The owner at close is the closing agent; the event's own owner field only
            // fills in when no assignment was seen.
            match &facts.owner_agent_id {
                Some(owner) => {
                    facts.closing_agent_id = Some(owner.clone());
                    facts.closing_segment_start = facts.owner_since;
                }
                None => {
                    facts.closing_agent_id = non_empty(&event.agent_id);
                    facts.closing_segment_start = None;
                }
            }
        }
        EventKind::Reopened => {
            facts.reopens += 1;
            facts.closed_at = None;
            facts.closing_agent_id = None;
            facts.closing_segment_start = None;
            let owner = non_empty(&event.agent_id);
            if owner != facts.owner_agent_id {
                facts.owner_since = owner.as_ref().map(|_| event.occurred_at);
                facts.owner_agent_id = owner;
            }
        }
        EventKind::StatusChanged => facts.status_label_id.clone_from(&event.status_label_id),
        EventKind::TransferResolved
        | EventKind::ParticipantInvited
        | EventKind::InvitationEnded
        | EventKind::ParticipantJoined
        | EventKind::WrapUpSubmitted
        | EventKind::Other => {}
    }

    Change {
        conversation: (current != Some(&facts)).then_some(facts),
        assignment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn event(log_sequence: i64, kind: EventKind, at_minutes: i64) -> Event {
        Event {
            log_sequence,
            tenant_id: "t".to_owned(),
            conversation_id: "c".to_owned(),
            kind,
            occurred_at: at_minutes * MIN,
            agent_id: String::new(),
            previous_agent_id: String::new(),
            queue_id: "q1".to_owned(),
            program_id: "p".to_owned(),
            channel: 1,
            conversation_created_at: Some(0),
            ..Event::default()
        }
    }

    fn assigned(log_sequence: i64, at: i64, agent: &str, previous: &str) -> Event {
        Event {
            agent_id: agent.to_owned(),
            previous_agent_id: previous.to_owned(),
            ..event(log_sequence, EventKind::Assigned, at)
        }
    }

    fn fold(events: &[Event]) -> (Option<ConversationFacts>, Vec<AssignmentFact>) {
        let mut facts = None;
        let mut assignments = Vec::new();
        for event in events {
            let change = apply(facts.as_ref(), event);
            if let Some(next) = change.conversation {
                facts = Some(next);
            }
            assignments.extend(change.assignment);
        }
        (facts, assignments)
    }

    #[test]
    fn reassignment_rule() {
        assert!(is_reassignment("b", "a"));
        assert!(!is_reassignment("a", "a"));
        assert!(!is_reassignment("a", ""));
    }

    #[test]
    fn first_contact_resolution_rule() {
        assert!(resolved_first_contact(1, 0));
        assert!(!resolved_first_contact(2, 0));
        assert!(!resolved_first_contact(1, 1));
        assert!(!resolved_first_contact(0, 0));
    }

    #[test]
    fn simple_life_closes_with_the_owner() {
        let (facts, assignments) = fold(&[
            event(1, EventKind::Created, 0),
            event(2, EventKind::Other, 0),
            assigned(3, 1, "a", ""),
            event(4, EventKind::Closed, 11),
        ]);
        let facts = facts.unwrap();
        assert_eq!(facts.created_at, 0);
        assert_eq!(facts.closed_at, Some(11 * MIN));
        assert_eq!(facts.closing_agent_id.as_deref(), Some("a"));
        assert_eq!(facts.closing_segment_start, Some(MIN));
        assert_eq!((facts.segments, facts.transfers, facts.reopens), (1, 0, 0));
        assert_eq!(assignments.len(), 1);
        assert!(!assignments[0].reassignment);
    }

    #[test]
    fn transfer_makes_a_reassignment_and_moves_the_segment_start() {
        let (facts, assignments) = fold(&[
            event(1, EventKind::Created, 0),
            assigned(2, 2, "a", ""),
            event(3, EventKind::TransferRequested, 5),
            Event {
                queue_id: "q2".to_owned(),
                ..assigned(4, 6, "b", "a")
            },
            Event {
                queue_id: String::new(),
                ..event(5, EventKind::Closed, 30)
            },
        ]);
        let facts = facts.unwrap();
        assert_eq!(facts.closing_agent_id.as_deref(), Some("b"));
        assert_eq!(facts.closing_segment_start, Some(6 * MIN));
        assert_eq!((facts.segments, facts.transfers), (2, 1));
        assert_eq!(facts.queue_id, "q2", "the latest queue named by an event");
        assert_eq!(
            assignments
                .iter()
                .map(|a| (a.agent_id.as_str(), a.reassignment, a.queue_id.as_str()))
                .collect::<Vec<_>>(),
            vec![("a", false, "q1"), ("b", true, "q2")]
        );
    }

    #[test]
    fn reopen_clears_the_close_until_the_next_one() {
        let (facts, _) = fold(&[
            event(1, EventKind::Created, 0),
            assigned(2, 10, "c", ""),
            event(3, EventKind::Closed, 40),
            event(4, EventKind::Reopened, 50),
        ]);
        let reopened = facts.clone().unwrap();
        assert_eq!(reopened.closed_at, None);
        assert_eq!(reopened.closing_agent_id, None);
        assert_eq!(reopened.owner_agent_id, None);
        assert_eq!(reopened.reopens, 1);

        let (facts, assignments) = fold(&[
            event(1, EventKind::Created, 0),
            assigned(2, 10, "c", ""),
            event(3, EventKind::Closed, 40),
            event(4, EventKind::Reopened, 50),
            assigned(5, 55, "c", "c"),
            event(6, EventKind::Closed, 90),
        ]);
        let facts = facts.unwrap();
        assert_eq!(facts.closed_at, Some(90 * MIN));
        assert_eq!(facts.closing_agent_id.as_deref(), Some("c"));
        assert_eq!(facts.closing_segment_start, Some(55 * MIN));
        assert_eq!((facts.segments, facts.reopens), (2, 1));
        assert!(assignments.iter().all(|a| !a.reassignment));
    }

    #[test]
    fn a_sender_s_later_wrap_up_leaves_the_conversation_where_it_is() {
        let (facts, _) = fold(&[
            event(1, EventKind::Created, 0),
            assigned(2, 1, "a", ""),
            Event {
                queue_id: "q2".to_owned(),
                ..assigned(3, 5, "b", "a")
            },
            Event {
                agent_id: "a".to_owned(),
                wrap_up_reason_ids: vec!["r".to_owned()],
                ..event(4, EventKind::WrapUpSubmitted, 7)
            },
        ]);
        assert_eq!(facts.unwrap().queue_id, "q2");
    }

    #[test]
    fn the_status_label_is_the_last_one_set() {
        let label = |log_sequence: i64, label: &str| Event {
            status_label_id: label.to_owned(),
            ..event(log_sequence, EventKind::StatusChanged, log_sequence)
        };
        let (facts, _) = fold(&[event(1, EventKind::Created, 0), label(2, "refund")]);
        assert_eq!(facts.unwrap().status_label_id, "refund");
        let (facts, _) = fold(&[
            event(1, EventKind::Created, 0),
            label(2, "refund"),
            label(3, ""),
            event(4, EventKind::Closed, 5),
            event(5, EventKind::Reopened, 6),
        ]);
        assert_eq!(facts.unwrap().status_label_id, "");
    }

    #[test]
    fn close_without_owner_has_no_closing_agent() {
        let (facts, _) = fold(&[
            event(1, EventKind::Created, 0),
            assigned(2, 1, "a", ""),
            event(3, EventKind::Unassigned, 2),
            event(4, EventKind::Closed, 30),
        ]);
        let facts = facts.unwrap();
        assert_eq!(facts.closed_at, Some(30 * MIN));
        assert_eq!(facts.closing_agent_id, None);
        assert_eq!(facts.closing_segment_start, None);
    }

    #[test]
    fn unchanged_facts_are_not_rewritten() {
        let created = event(1, EventKind::Created, 0);
        let facts = apply(None, &created).conversation.unwrap();
        let change = apply(Some(&facts), &event(2, EventKind::Other, 3));
        assert_eq!(change, Change::default());
    }

    #[test]
    fn first_seen_late_uses_the_conversation_creation_time() {
        let late = Event {
            conversation_created_at: Some(7 * MIN),
            ..assigned(9, 8, "a", "")
        };
        let facts = apply(None, &late).conversation.unwrap();
        assert_eq!(facts.created_at, 7 * MIN);
        assert_eq!(facts.segments, 1);
    }
}
