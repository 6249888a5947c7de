//! What the reports count, derived from both services' events.
//!
//! Each event yields zero or more [`Occurrence`]s: one thing a report counts (a
//! conversation created or closed, a reassignment received, an offer accepted...), at one
//! instant, with the dimensions the filters and rows use. The store keeps their sums per
//! quarter-hour slot ([`rollup`]), each with the instants and values it sums (its
//! [`Tally::points`]); a report adds the sums of the slots fully inside its range to the
//! points inside the range of the partial slots at its edges ([`points_within`]), so its
//! numbers are exact for any range and its cost follows the range, not the history.

use std::collections::BTreeMap;

use super::activity::{Presence, PresenceCause};
use super::facts::{ConversationFacts, Event, EventKind, is_reassignment};
use super::reports::SLOT_MICROS;

/// Microseconds in a second.
const MICROS_PER_SECOND: i64 = 1_000_000;

/// Waits are counted per whole second up to this many seconds (a day); longer ones share
/// the last bucket. Service-level thresholds are whole seconds up to this.
pub const MAX_WAIT_BUCKET_SECONDS: i64 = 86_400;

/// A thing a report counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// A conversation was created (in the queue it was created in).
    Created,
    /// A conversation was closed; a reopened conversation counts again when it closes
    /// again. The agent is the closing agent, if it had an owner.
    Closed,
    /// A conversation was closed before any agent took it.
    Abandoned,
    /// The agent became owner after another agent owned it (product rule 15).
    ReassignedTo,
    /// The agent stopped owning a conversation because another agent became owner.
    ReassignedFrom,
    /// A queue offered a waiting conversation to the agent.
    Offered,
    /// The agent accepted a queue offer. The value is the customer's wait (from entering
    /// the queue to the acceptance); the label its whole-second bucket ([`wait_label`]).
    Accepted,
    /// The agent rejected a queue offer.
    Rejected,
    /// A queue offer timed out: the agent went to RONA.
    TimedOut,
    /// A queue offer was withdrawn before an answer.
    Withdrawn,
    /// A conversation overflowed into the queue.
    OverflowedIn,
    /// A conversation overflowed out of the queue.
    OverflowedOut,
    /// A transfer took a conversation into the queue from another queue.
    TransferredIn,
    /// A transfer took a conversation out of the queue into another queue (the agent: the
    /// sender).
    TransferredOut,
    /// The agent's segment was wrapped up with a reason (the label: the reason's id).
    Disposition,
    /// The agent gave a reason for a conversation it transferred (the label: the reason's
    /// id): the disposition of a segment a transfer ended, or was asked to end.
    SentReason,
    /// Time the agent spent signed in, in one presence (the label: `Presence::code`), within
    /// one slot: a duration (see [`Metric::is_duration`]).
    PresenceTime,
    /// Time the agent spent signed in with some capacity units used out of some available
    /// (the label: `activity::capacity_label`), within one slot: a duration.
    CapacityTime,
    /// An offer to the agent timed out and put it in RONA.
    Rona,
    /// A supervisor assigned the agent a conversation beyond its free capacity.
    CapacityOverride,
    /// A supervisor set the agent's presence.
    PresenceOverride,
}

impl Metric {
    /// The metric's name in the store.
    pub const fn code(self) -> &'static str {
        match self {
            Metric::Created => "created",
            Metric::Closed => "closed",
            Metric::Abandoned => "abandoned",
            Metric::ReassignedTo => "reassigned_to",
            Metric::ReassignedFrom => "reassigned_from",
            Metric::Offered => "offered",
            Metric::Accepted => "accepted",
            Metric::Rejected => "rejected",
            Metric::TimedOut => "timed_out",
            Metric::Withdrawn => "withdrawn",
            Metric::OverflowedIn => "overflowed_in",
            Metric::OverflowedOut => "overflowed_out",
            Metric::TransferredIn => "transferred_in",
            Metric::TransferredOut => "transferred_out",
            Metric::Disposition => "disposition",
            Metric::SentReason => "sent_reason",
            Metric::PresenceTime => "presence_time",
            Metric::CapacityTime => "capacity_time",
            Metric::Rona => "rona",
            Metric::CapacityOverride => "capacity_override",
            Metric::PresenceOverride => "presence_override",
        }
    }

    /// Whether an occurrence of the metric is a piece of time (`at` its start, `value` its
    /// length, never crossing a slot boundary) rather than an instant: a range that cuts
    /// the piece counts only the part inside it.
    pub const fn is_duration(self) -> bool {
        matches!(self, Metric::PresenceTime | Metric::CapacityTime)
    }

    /// Every metric.
    pub const ALL: [Metric; 21] = [
        Metric::Created,
        Metric::Closed,
        Metric::Abandoned,
        Metric::ReassignedTo,
        Metric::ReassignedFrom,
        Metric::Offered,
        Metric::Accepted,
        Metric::Rejected,
        Metric::TimedOut,
        Metric::Withdrawn,
        Metric::OverflowedIn,
        Metric::OverflowedOut,
        Metric::TransferredIn,
        Metric::TransferredOut,
        Metric::Disposition,
        Metric::SentReason,
        Metric::PresenceTime,
        Metric::CapacityTime,
        Metric::Rona,
        Metric::CapacityOverride,
        Metric::PresenceOverride,
    ];
}

/// One counted thing, with the dimensions reports filter and group by (empty or 0 when
/// not known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// The tenant.
    pub tenant_id: String,
    /// What is counted.
    pub metric: Metric,
    /// When, in microseconds since the epoch.
    pub at: i64,
    /// The queue.
    pub queue_id: String,
    /// The channel (`switchboard.common.v1.Channel` number).
    pub channel: i32,
    /// The queue's program.
    pub program_id: String,
    /// The agent.
    pub agent_id: String,
    /// A metric-specific subdivision (the wait bucket of an acceptance); empty otherwise.
    pub label: String,
    /// A metric-specific amount summed by reports (the wait of an acceptance, in
    /// microseconds); 0 otherwise.
    pub value: i64,
}

/// The contract's `AnswerOutcome` number of a transfer taken.
const ANSWER_ACCEPTED: i32 = super::ledger::outcome::ACCEPTED;

/// The quarter-hour slot of an instant.
pub fn slot_of(at: i64) -> i64 {
    at.div_euclid(SLOT_MICROS)
}

/// The label of a wait: its length in whole seconds rounded up, zero-padded so that labels
/// sort as numbers, capped at [`MAX_WAIT_BUCKET_SECONDS`] + 1 ("longer than a day"). A wait
/// is within a threshold of `t` whole seconds exactly when its label is at most
/// `wait_label_at_most(t)`.
pub fn wait_label(wait_micros: i64) -> String {
    let wait = wait_micros.max(0);
    let seconds = (wait / MICROS_PER_SECOND + i64::from(wait % MICROS_PER_SECOND != 0))
        .min(MAX_WAIT_BUCKET_SECONDS + 1);
    format!("{seconds:06}")
}

/// The largest label of a wait of at most `seconds` whole seconds.
pub fn wait_label_at_most(seconds: i64) -> String {
    format!("{:06}", seconds.clamp(0, MAX_WAIT_BUCKET_SECONDS))
}

/// Where occurrences are summed: everything but the instant, which becomes its slot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollupKey {
    /// The tenant.
    pub tenant_id: String,
    /// What is counted.
    pub metric: Metric,
    /// The quarter-hour slot.
    pub slot: i64,
    /// The queue.
    pub queue_id: String,
    /// The channel.
    pub channel: i32,
    /// The program.
    pub program_id: String,
    /// The agent.
    pub agent_id: String,
    /// The label.
    pub label: String,
}

/// A count and a sum of values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many occurrences.
    pub n: i64,
    /// The sum of their values.
    pub total: i64,
    /// Each occurrence's instant and value ([`push_point`]), so that a range that cuts the
    /// slot counts only what lies inside it ([`points_within`]).
    pub points: String,
}

/// Ends every point, so that the points of two tallies of one slot join by concatenation.
const POINT_END: char = ';';

/// Separates a point's offset from its value.
const POINT_VALUE: char = ':';

/// Appends the point of an occurrence at `at` with `value` to `points`: its offset into
/// its slot in microseconds, then its value unless 0 (most are), then [`POINT_END`]. About
/// ten bytes an occurrence, kept in the slot's rollup row rather than in a row and an
/// index entry of their own: those cost PostgreSQL a quarter of a catch-up.
pub fn push_point(points: &mut String, at: i64, value: i64) {
    use std::fmt::Write as _;
    let offset = at.rem_euclid(SLOT_MICROS);
    // Writing to a String cannot fail.
    let _ = if value == 0 {
        write!(points, "{offset}{POINT_END}")
    } else {
        write!(points, "{offset}{POINT_VALUE}{value}{POINT_END}")
    };
}

/// Points that do not read as [`push_point`] writes them.
#[derive(Debug, thiserror::Error)]
#[error("a rollup's points do not parse at {0:?}")]
pub struct BadPoints(pub String);

/// The count and total of the points of slot `slot` that lie in `[start, end)`. An
/// instant counts when it lies inside; a piece of time (`duration`: its value is its
/// length, and it never leaves its slot) counts when it overlaps the range, with the
/// length of the overlap.
pub fn points_within(
    points: &str,
    slot: i64,
    start: i64,
    end: i64,
    duration: bool,
) -> Result<(i64, i64), BadPoints> {
    let base = slot.saturating_mul(SLOT_MICROS);
    let (mut n, mut total) = (0, 0);
    for point in points.split_terminator(POINT_END) {
        let (offset, value) = point.split_once(POINT_VALUE).unwrap_or((point, "0"));
        let (Ok(offset), Ok(value)) = (offset.parse::<i64>(), value.parse::<i64>()) else {
            return Err(BadPoints(point.to_owned()));
        };
        let at = base.saturating_add(offset);
        if duration {
            let until = at.saturating_add(value);
            if at < end && until > start {
                n += 1;
                total += until.min(end) - at.max(start);
            }
        } else if (start..end).contains(&at) {
            n += 1;
            total += value;
        }
    }
    Ok((n, total))
}

/// The sums per slot and dimension of `occurrences`, to add to the stored ones.
pub fn rollup<'a>(
    occurrences: impl IntoIterator<Item = &'a Occurrence>,
) -> BTreeMap<RollupKey, Tally> {
    let mut sums: BTreeMap<RollupKey, Tally> = BTreeMap::new();
    for o in occurrences {
        let tally = sums
            .entry(RollupKey {
                tenant_id: o.tenant_id.clone(),
                metric: o.metric,
                slot: slot_of(o.at),
                queue_id: o.queue_id.clone(),
                channel: o.channel,
                program_id: o.program_id.clone(),
                agent_id: o.agent_id.clone(),
                label: o.label.clone(),
            })
            .or_default();
        tally.n += 1;
        tally.total += o.value;
        push_point(&mut tally.points, o.at, o.value);
    }
    sums
}

/// Counts of one metric in one slot, read back for a report: per queue, agent and label
/// when the read kept them apart, empty otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    /// The metric.
    pub metric: Metric,
    /// The quarter-hour slot.
    pub slot: i64,
    /// The queue, when kept apart.
    pub queue_id: String,
    /// The agent, when kept apart.
    pub agent_id: String,
    /// The label, when kept apart.
    pub label: String,
    /// How many occurrences.
    pub n: i64,
    /// The sum of their values.
    pub total: i64,
}

/// What a conversation event counts, given the conversation's facts after it (as folded
/// by `facts::apply`).
pub fn of_conversation_event(event: &Event, after: &ConversationFacts) -> Vec<Occurrence> {
    let occurrence = |metric: Metric, agent_id: &str| Occurrence {
        tenant_id: after.tenant_id.clone(),
        metric,
        at: event.occurred_at,
        queue_id: after.queue_id.clone(),
        channel: after.channel,
        program_id: after.program_id.clone(),
        agent_id: agent_id.to_owned(),
        label: String::new(),
        value: 0,
    };
    match event.kind {
        EventKind::Created => vec![Occurrence {
            at: after.created_at,
            ..occurrence(Metric::Created, "")
        }],
        EventKind::Closed => {
            let mut counted = vec![occurrence(
                Metric::Closed,
                after.closing_agent_id.as_deref().unwrap_or_default(),
            )];
            if after.segments == 0 {
                counted.push(occurrence(Metric::Abandoned, ""));
            }
            counted
        }
        // One per reason: a segment wrapped up with two reasons counts for each. The
        // event names the segment's agent (the owner when closing).
        EventKind::WrapUpSubmitted => {
            let agent = if event.agent_id.is_empty() {
                after.closing_agent_id.as_deref().unwrap_or_default()
            } else {
                &event.agent_id
            };
            let queue = if event.queue_id.is_empty() {
                &after.queue_id
            } else {
                &event.queue_id
            };
            let mut metrics = vec![Metric::Disposition];
            if event.sender_reasons {
                metrics.push(Metric::SentReason);
            }
            metrics
                .into_iter()
                .flat_map(|metric| {
                    event
                        .wrap_up_reason_ids
                        .iter()
                        .map(move |reason| Occurrence {
                            queue_id: queue.clone(),
                            label: reason.clone(),
                            ..occurrence(metric, agent)
                        })
                })
                .collect()
        }
        // Only a transfer taken moves the conversation; one within a queue moves nothing.
        EventKind::TransferResolved
            if event.answer_outcome == ANSWER_ACCEPTED
                && !event.previous_queue_id.is_empty()
                && !event.transfer_to_queue_id.is_empty()
                && event.previous_queue_id != event.transfer_to_queue_id =>
        {
            vec![
                Occurrence {
                    queue_id: event.previous_queue_id.clone(),
                    ..occurrence(Metric::TransferredOut, &event.previous_agent_id)
                },
                Occurrence {
                    queue_id: event.transfer_to_queue_id.clone(),
                    ..occurrence(Metric::TransferredIn, "")
                },
            ]
        }
        EventKind::Assigned if is_reassignment(&event.agent_id, &event.previous_agent_id) => {
            vec![
                occurrence(Metric::ReassignedTo, &event.agent_id),
                occurrence(Metric::ReassignedFrom, &event.previous_agent_id),
            ]
        }
        _ => Vec::new(),
    }
}

/// What happened in routing, as far as the reports care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RoutingEventKind {
    /// An offer was made.
    OfferCreated,
    /// An offer was accepted.
    OfferAccepted,
    /// An offer was rejected.
    OfferRejected,
    /// An offer timed out.
    OfferTimedOut,
    /// An offer was withdrawn.
    OfferWithdrawn,
    /// A waiting conversation moved to its overflow queue.
    WaitingOverflowed,
    /// An agent's presence changed (or was set again).
    PresenceChanged,
    /// Capacity units were reserved for a conversation of the agent.
    CapacityReserved,
    /// Capacity units of the agent were released.
    CapacityReleased,
    /// The agent's routing profile (and so its capacity) was set.
    AgentProfileSet,
    /// Anything else.
    #[default]
    Other,
}

/// What an offer is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OfferKind {
    /// Not an offer event.
    #[default]
    None,
    /// A conversation waiting in a queue.
    Queue,
    /// A transfer to the agent.
    Transfer,
    /// An invitation to conference.
    Conference,
    /// An invitation to consult.
    Consult,
}

/// One routing event, in the units the store keeps (microseconds since the epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingEvent {
    /// Position in routing-svc's log, the consumer's cursor.
    pub log_sequence: i64,
    /// The tenant.
    pub tenant_id: String,
    /// What happened.
    pub kind: RoutingEventKind,
    /// When.
    pub occurred_at: i64,
    /// The agent concerned; empty when none.
    pub agent_id: String,
    /// The conversation concerned; empty when none.
    pub conversation_id: String,
    /// The queue concerned; empty when none.
    pub queue_id: String,
    /// The queue left, for an overflow.
    pub from_queue_id: String,
    /// The conversation's channel; 0 when not given.
    pub channel: i32,
    /// When the customer started waiting, for offer and waiting events.
    pub wait_started_at: Option<i64>,
    /// What the offer is for, for offer events.
    pub offer_kind: OfferKind,
    /// The offer, for offer events.
    pub offer_id: String,
    /// When the offer was made, for offer events.
    pub offer_created_at: Option<i64>,
    /// The presence shown after a presence change; `None` otherwise or when not known.
    pub presence: Option<Presence>,
    /// What changed the presence, for a presence change.
    pub presence_cause: PresenceCause,
    /// Capacity units the agent holds after a presence, capacity or profile event.
    pub capacity_used: i32,
    /// Capacity units the agent's profile gives, after such an event.
    pub capacity_total: i32,
    /// Units reserved beyond the agent's capacity by a supervisor's override.
    pub units_over_capacity: i32,
}

impl RoutingEvent {
    /// Whether this is an event of a queue offer (not a transfer or an invitation).
    pub fn is_queue_offer(&self) -> bool {
        self.offer_kind == OfferKind::Queue
    }
}

/// What a routing event counts.
pub fn of_routing_event(event: &RoutingEvent) -> Vec<Occurrence> {
    let occurrence = |metric: Metric, queue_id: &str| Occurrence {
        tenant_id: event.tenant_id.clone(),
        metric,
        at: event.occurred_at,
        queue_id: queue_id.to_owned(),
        channel: event.channel,
        program_id: String::new(),
        agent_id: event.agent_id.clone(),
        label: String::new(),
        value: 0,
    };
    let offer = |metric: Metric| {
        if event.is_queue_offer() {
            vec![occurrence(metric, &event.queue_id)]
        } else {
            Vec::new()
        }
    };
    match event.kind {
        RoutingEventKind::OfferCreated => offer(Metric::Offered),
        RoutingEventKind::OfferAccepted if event.is_queue_offer() => {
            let wait = event
                .wait_started_at
                .map_or(0, |start| (event.occurred_at - start).max(0));
            vec![Occurrence {
                label: wait_label(wait),
                value: wait,
                ..occurrence(Metric::Accepted, &event.queue_id)
            }]
        }
        RoutingEventKind::OfferRejected => offer(Metric::Rejected),
        RoutingEventKind::OfferTimedOut => offer(Metric::TimedOut),
        RoutingEventKind::OfferWithdrawn => offer(Metric::Withdrawn),
        RoutingEventKind::WaitingOverflowed => vec![
            Occurrence {
                agent_id: String::new(),
                ..occurrence(Metric::OverflowedOut, &event.from_queue_id)
            },
            Occurrence {
                agent_id: String::new(),
                ..occurrence(Metric::OverflowedIn, &event.queue_id)
            },
        ],
        // Agent activity needs the agent's state before the event: `activity`.
        RoutingEventKind::OfferAccepted
        | RoutingEventKind::PresenceChanged
        | RoutingEventKind::CapacityReserved
        | RoutingEventKind::CapacityReleased
        | RoutingEventKind::AgentProfileSet
        | RoutingEventKind::Other => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::facts::apply;

    const MIN: i64 = 60_000_000;

    #[test]
    fn wait_labels_sort_as_seconds_rounded_up() {
        assert_eq!(wait_label(0), "000000");
        assert_eq!(wait_label(1), "000001");
        assert_eq!(wait_label(1_000_000), "000001");
        assert_eq!(wait_label(1_000_001), "000002");
        assert_eq!(wait_label(-5), "000000");
        assert_eq!(wait_label(i64::MAX), "086401");
        // Within 20 s exactly when the label is at most 20's.
        for wait in [19_999_999, 20_000_000, 20_000_001] {
            assert_eq!(
                wait_label(wait) <= wait_label_at_most(20),
                wait <= 20_000_000,
                "{wait}"
            );
        }
        assert!(wait_label(i64::MAX) > wait_label_at_most(i64::MAX));
    }

    #[test]
    fn metric_codes_are_distinct() {
        // The store names each metric by its code: two metrics sharing one would be counted
        // as one.
        let codes: std::collections::BTreeSet<&str> =
            Metric::ALL.iter().map(|metric| metric.code()).collect();
        assert_eq!(codes.len(), Metric::ALL.len());
    }

    fn event(kind: EventKind, at: i64, agent: &str, previous: &str) -> Event {
        Event {
            log_sequence: 1,
            tenant_id: "t".to_owned(),
            conversation_id: "c".to_owned(),
            kind,
            occurred_at: at,
            agent_id: agent.to_owned(),
            previous_agent_id: previous.to_owned(),
            queue_id: "q".to_owned(),
            program_id: "p".to_owned(),
            channel: 1,
            conversation_created_at: Some(0),
            ..Event::default()
        }
    }

    fn count(events: &[Event]) -> Vec<(Metric, i64, String)> {
        let mut facts: Option<ConversationFacts> = None;
        let mut counted = Vec::new();
        for e in events {
            if let Some(next) = apply(facts.as_ref(), e).conversation {
                facts = Some(next);
            }
            counted.extend(
                of_conversation_event(e, facts.as_ref().unwrap())
                    .into_iter()
                    .map(|o| (o.metric, o.at, o.agent_id)),
            );
        }
        counted
    }

    #[test]
    fn every_close_counts_and_an_unowned_one_is_abandoned() {
        let counted = count(&[
            event(EventKind::Created, 0, "", ""),
            event(EventKind::Closed, MIN, "", ""),
            event(EventKind::Reopened, 2 * MIN, "", ""),
            event(EventKind::Assigned, 3 * MIN, "a", ""),
            event(EventKind::Assigned, 4 * MIN, "b", "a"),
            event(EventKind::Closed, 5 * MIN, "b", ""),
        ]);
        assert_eq!(
            counted,
            vec![
                (Metric::Created, 0, String::new()),
                (Metric::Closed, MIN, String::new()),
                (Metric::Abandoned, MIN, String::new()),
                (Metric::ReassignedTo, 4 * MIN, "b".to_owned()),
                (Metric::ReassignedFrom, 4 * MIN, "a".to_owned()),
                (Metric::Closed, 5 * MIN, "b".to_owned()),
            ]
        );
    }

    fn routing(kind: RoutingEventKind, queue_offer: bool) -> RoutingEvent {
        RoutingEvent {
            log_sequence: 1,
            tenant_id: "t".to_owned(),
            kind,
            occurred_at: 10 * MIN,
            agent_id: "a".to_owned(),
            conversation_id: "c".to_owned(),
            queue_id: "q2".to_owned(),
            from_queue_id: "q1".to_owned(),
            channel: 1,
            wait_started_at: Some(8 * MIN),
            offer_kind: if queue_offer {
                OfferKind::Queue
            } else {
                OfferKind::Transfer
            },
            ..RoutingEvent::default()
        }
    }

    #[test]
    fn queue_offers_count_and_other_offers_do_not() {
        let accepted = of_routing_event(&routing(RoutingEventKind::OfferAccepted, true));
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].metric, Metric::Accepted);
        assert_eq!(accepted[0].value, 2 * MIN);
        assert_eq!(accepted[0].label, "000120");
        for kind in [
            RoutingEventKind::OfferCreated,
            RoutingEventKind::OfferAccepted,
            RoutingEventKind::OfferRejected,
            RoutingEventKind::OfferTimedOut,
            RoutingEventKind::OfferWithdrawn,
        ] {
            assert_eq!(
                of_routing_event(&routing(kind, false)),
                Vec::new(),
                "{kind:?}"
            );
            assert_eq!(of_routing_event(&routing(kind, true)).len(), 1, "{kind:?}");
        }
        let overflow = of_routing_event(&routing(RoutingEventKind::WaitingOverflowed, false));
        assert_eq!(
            overflow
                .iter()
                .map(|o| (o.metric, o.queue_id.as_str(), o.agent_id.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (Metric::OverflowedOut, "q1", ""),
                (Metric::OverflowedIn, "q2", "")
            ]
        );
    }

    #[test]
    fn rollups_sum_per_slot_and_dimension() {
        let base = routing(RoutingEventKind::OfferAccepted, true);
        let mut occurrences = of_routing_event(&base);
        occurrences.extend(of_routing_event(&RoutingEvent {
            occurred_at: base.occurred_at + MIN,
            ..base.clone()
        }));
        occurrences.extend(of_routing_event(&RoutingEvent {
            occurred_at: base.occurred_at + 20 * MIN,
            ..base.clone()
        }));
        let sums = rollup(&occurrences);
        let tallies: Vec<(i64, Tally)> = sums.iter().map(|(k, t)| (k.slot, t.clone())).collect();
        assert_eq!(
            tallies.len(),
            3,
            "two labels in the first slot, one in the next"
        );
        assert_eq!(tallies.iter().map(|(_, t)| t.n).sum::<i64>(), 3);
        assert_eq!(
            tallies.iter().map(|(_, t)| t.total).sum::<i64>(),
            2 * MIN + 3 * MIN + 22 * MIN
        );
    }

    #[test]
    fn points_count_what_lies_inside_the_range() {
        let slot = 1_000;
        let base = slot * SLOT_MICROS;
        let mut points = String::new();
        push_point(&mut points, base, 0);
        push_point(&mut points, base + 5 * MIN, 7);
        push_point(&mut points, base + 14 * MIN, -3);
        assert_eq!(points, format!("0;{}:7;{}:-3;", 5 * MIN, 14 * MIN));
        let whole = points_within(&points, slot, base, base + SLOT_MICROS, false).unwrap();
        assert_eq!(whole, (3, 4));
        // The range's start is in, its end out.
        assert_eq!(
            points_within(&points, slot, base, base + 5 * MIN, false).unwrap(),
            (1, 0)
        );
        assert_eq!(
            points_within(&points, slot, base + 5 * MIN, base + 20 * MIN, false).unwrap(),
            (2, 4)
        );
        // Joined by concatenation, as the store adds a run's points to a row's.
        let mut more = String::new();
        push_point(&mut more, base + MIN, 1);
        let joined = format!("{points}{more}");
        assert_eq!(
            points_within(&joined, slot, base, base + 2 * MIN, false).unwrap(),
            (2, 1)
        );
        assert!(points_within("12;x;", slot, base, base + 1, false).is_err());
        assert!(points_within("12", slot, base, base + 1, false).is_ok());
    }

    #[test]
    fn pieces_of_time_count_their_overlap_with_the_range() {
        let slot = 7;
        let base = slot * SLOT_MICROS;
        let mut points = String::new();
        // 2 to 6 minutes into the slot, and 10 to 15.
        push_point(&mut points, base + 2 * MIN, 4 * MIN);
        push_point(&mut points, base + 10 * MIN, 5 * MIN);
        assert_eq!(
            points_within(&points, slot, base, base + SLOT_MICROS, true).unwrap(),
            (2, 9 * MIN)
        );
        assert_eq!(
            points_within(&points, slot, base + 4 * MIN, base + 11 * MIN, true).unwrap(),
            (2, 3 * MIN)
        );
        // Touching the range is not overlapping it.
        assert_eq!(
            points_within(&points, slot, base + 6 * MIN, base + 10 * MIN, true).unwrap(),
            (0, 0)
        );
        // A slot before the epoch: offsets count from the slot's start.
        let mut early = String::new();
        push_point(&mut early, -SLOT_MICROS + MIN, MIN);
        assert_eq!(
            points_within(&early, -1, -SLOT_MICROS, 0, true).unwrap(),
            (1, MIN)
        );
    }
}
