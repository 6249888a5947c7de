//! The reports, computed from counts and facts the store reads.
//!
//! The store counts events per quarter-hour slot (UTC) rather than handing over every
//! timestamp; each slot is then put in its period here. Every IANA zone has had an offset
//! that is a whole number of quarter hours since the 1970s, so a slot never straddles a
//! local midnight and the counts are exact.

use std::collections::BTreeMap;

use chrono_tz::Tz;

use super::activity::{AgentState, Presence, open_pieces, parse_capacity_label};
use super::facts::resolved_first_contact;
use super::metrics::{Count, Metric};
use super::period::{Granularity, Period, local_date, period_of, periods_in, start_of_day};
use super::stats::{Summary, summarize};

/// Most buckets a report's counts are summed into by the store (their starts are held and
/// searched for every row read); a frame with more is read per slot.
pub const MAX_BUCKETS: usize = 2_000;

/// Length of a counting slot, in microseconds (15 minutes).
pub const SLOT_MICROS: i64 = 15 * 60 * 1_000_000;

/// Which instants a report covers and how it groups them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Inclusive start, microseconds since the epoch.
    pub start: i64,
    /// Exclusive end, microseconds since the epoch.
    pub end: i64,
    /// The zone periods are seen from.
    pub zone: Tz,
    /// How rows are grouped.
    pub granularity: Granularity,
}

impl Frame {
    /// The period of the counting slot `slot` (index of [`SLOT_MICROS`] since the epoch).
    pub fn period_of_slot(&self, slot: i64) -> Period {
        period_of(
            slot.saturating_mul(SLOT_MICROS),
            self.zone,
            self.granularity,
        )
    }

    /// The slots, after the range's first, at which a local day (for a day of week) or a
    /// period (for the others) starts, in order: counts summed between two of them fall
    /// in one period, so the store can sum them as it reads them (see
    /// `GroupBy::buckets`). Empty for the total; `None` when there would be more than
    /// [`MAX_BUCKETS`] (a range of centuries by week, say), which is read per slot.
    pub fn bucket_starts(&self) -> Option<Vec<i64>> {
        if self.start >= self.end {
            return Some(Vec::new());
        }
        let starts: Vec<i64> = match self.granularity {
            Granularity::Total => Vec::new(),
            Granularity::DayOfWeek => {
                if (self.end - self.start) / (24 * 60 * 60 * 1_000_000) > MAX_BUCKETS as i64 {
                    return None;
                }
                let (first, last) = (
                    local_date(self.start, self.zone),
                    local_date(self.end - 1, self.zone),
                );
                first
                    .iter_days()
                    .skip(1)
                    .take_while(|day| *day <= last)
                    .map(|day| start_of_day(day, self.zone))
                    .collect()
            }
            _ => {
                let periods = self.periods();
                if periods.len() > MAX_BUCKETS {
                    return None;
                }
                periods
                    .iter()
                    .skip(1)
                    .filter_map(|period| self.period_start(period))
                    .collect()
            }
        };
        let first = self.start.div_euclid(SLOT_MICROS);
        let mut slots: Vec<i64> = starts
            .into_iter()
            .map(|at| at.div_euclid(SLOT_MICROS))
            .filter(|&slot| slot > first)
            .collect();
        slots.dedup();
        Some(slots)
    }

    /// Every period of the frame, in order.
    pub fn periods(&self) -> Vec<Period> {
        periods_in(self.start, self.end, self.zone, self.granularity)
    }

    /// When `period` starts, in microseconds since the epoch: local midnight (in the
    /// frame's zone) of its first day, the range's start for the total, and `None` for a
    /// day of week, which sums days spread over the range.
    pub fn period_start(&self, period: &Period) -> Option<i64> {
        match period {
            Period::Total => Some(self.start),
            _ => period.first_day().map(|day| start_of_day(day, self.zone)),
        }
    }
}

/// Conversations created and closed in one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedClosed {
    /// The period.
    pub period: Period,
    /// Conversations created in it.
    pub created: i64,
    /// Conversations closed in it.
    pub closed: i64,
}

/// Product rule 16: one row per period of the frame, in order, zeros included.
/// `created` and `closed` are `(slot, count)` pairs.
pub fn created_closed(
    frame: &Frame,
    created: &[(i64, i64)],
    closed: &[(i64, i64)],
) -> Vec<CreatedClosed> {
    let mut rows: BTreeMap<Period, (i64, i64)> =
        frame.periods().into_iter().map(|p| (p, (0, 0))).collect();
    for &(slot, count) in created {
        rows.entry(frame.period_of_slot(slot)).or_default().0 += count;
    }
    for &(slot, count) in closed {
        rows.entry(frame.period_of_slot(slot)).or_default().1 += count;
    }
    rows.into_iter()
        .map(|(period, (created, closed))| CreatedClosed {
            period,
            created,
            closed,
        })
        .collect()
}

/// Reassignments one agent received and sent in one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassignments {
    /// The period.
    pub period: Period,
    /// The agent.
    pub agent_id: String,
    /// Conversations that became the agent's after another agent owned them.
    pub received: i64,
    /// Conversations the agent owned that became another agent's.
    pub sent: i64,
    /// Reasons the agent gave for conversations it transferred: how often each, by id.
    pub sent_reasons: BTreeMap<String, i64>,
}

/// The metrics the reassignments report reads.
pub const REASSIGNMENT_METRICS: [Metric; 3] = [
    Metric::ReassignedTo,
    Metric::ReassignedFrom,
    Metric::SentReason,
];

/// Product rule 15 and its mirror: one row per period and agent with at least one
/// reassignment received or sent, or a reason given for one, by period then agent.
/// `counts` are the agent's [`REASSIGNMENT_METRICS`] per slot, by label.
pub fn reassignments(frame: &Frame, counts: &[Count]) -> Vec<Reassignments> {
    // Hashed, then sorted once: a month by day for 500 agents is some 20,000 counts into
    // 13,000 rows, where a sorted map compared ids on every count.
    let mut periods = PeriodOfSlot::new(frame);
    let mut rows: foldhash::HashMap<(Period, &str), Reassignments> = foldhash::HashMap::default();
    for count in counts {
        let period = periods.get(count.slot);
        let row = rows
            .entry((period, count.agent_id.as_str()))
            .or_insert_with(|| Reassignments {
                period,
                agent_id: count.agent_id.clone(),
                received: 0,
                sent: 0,
                sent_reasons: BTreeMap::new(),
            });
        match count.metric {
            Metric::ReassignedTo => row.received += count.n,
            Metric::ReassignedFrom => row.sent += count.n,
            Metric::SentReason => {
                *row.sent_reasons.entry(count.label.clone()).or_default() += count.n;
            }
            _ => {}
        }
    }
    let mut rows: Vec<Reassignments> = rows
        .into_values()
        .filter(|row| row.received > 0 || row.sent > 0 || !row.sent_reasons.is_empty())
        .collect();
    rows.sort_unstable_by(|a, b| (a.period, &a.agent_id).cmp(&(b.period, &b.agent_id)));
    rows
}

/// [`Frame::period_of_slot`] remembered per slot: a report's counts name the few slots
/// that key its buckets thousands of times, and each answer is a time zone lookup.
struct PeriodOfSlot<'f> {
    frame: &'f Frame,
    known: foldhash::HashMap<i64, Period>,
}

impl<'f> PeriodOfSlot<'f> {
    fn new(frame: &'f Frame) -> PeriodOfSlot<'f> {
        PeriodOfSlot {
            frame,
            known: foldhash::HashMap::default(),
        }
    }

    fn get(&mut self, slot: i64) -> Period {
        *self
            .known
            .entry(slot)
            .or_insert_with(|| self.frame.period_of_slot(slot))
    }
}

/// A closed conversation as the agent reports see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosedConversation {
    /// The agent who owned it at close.
    pub agent_id: String,
    /// When it was created.
    pub created_at: i64,
    /// When it was closed.
    pub closed_at: i64,
    /// When the closing agent's segment started, if known.
    pub segment_start: Option<i64>,
    /// Segments in its life.
    pub segments: i64,
    /// Times it was reopened.
    pub reopens: i64,
}

/// Close-time statistics of one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseTime {
    /// The closing agent.
    pub agent_id: String,
    /// Time from creation to close.
    pub from_create: Summary,
    /// Time from the agent's assignment to close; `None` when no assignment time is
    /// known for any of them.
    pub from_assign: Option<Summary>,
}

fn by_agent(closed: &[ClosedConversation]) -> BTreeMap<&str, Vec<&ClosedConversation>> {
    let mut agents: BTreeMap<&str, Vec<&ClosedConversation>> = BTreeMap::new();
    for conversation in closed {
        agents
            .entry(conversation.agent_id.as_str())
            .or_default()
            .push(conversation);
    }
    agents
}

/// Product rule 17: per closing agent (by agent id), average, median and p90 of the time
/// from creation and from the agent's assignment to close.
pub fn close_time(closed: &[ClosedConversation]) -> Vec<CloseTime> {
    by_agent(closed)
        .into_iter()
        .filter_map(|(agent_id, conversations)| {
            let mut from_create: Vec<i64> = conversations
                .iter()
                .map(|c| c.closed_at - c.created_at)
                .collect();
            let mut from_assign: Vec<i64> = conversations
                .iter()
                .filter_map(|c| c.segment_start.map(|start| c.closed_at - start))
                .collect();
            Some(CloseTime {
                agent_id: agent_id.to_owned(),
                from_create: summarize(&mut from_create)?,
                from_assign: summarize(&mut from_assign),
            })
        })
        .collect()
}

/// First contact resolution of one agent.
#[derive(Clone, Debug, PartialEq)]
pub struct FirstContactResolution {
    /// The closing agent.
    pub agent_id: String,
    /// Conversations closed.
    pub closed: i64,
    /// Of those, resolved at first contact.
    pub resolved: i64,
    /// `resolved / closed`; 0 when nothing was closed.
    pub rate: f64,
}

/// Product rule 18: per closing agent (by agent id), the share of conversations closed in
/// one segment with no transfer and no reopen.
pub fn first_contact_resolution(closed: &[ClosedConversation]) -> Vec<FirstContactResolution> {
    by_agent(closed)
        .into_iter()
        .map(|(agent_id, conversations)| {
            let total = conversations.len() as i64;
            let resolved = conversations
                .iter()
                .filter(|c| resolved_first_contact(c.segments, c.reopens))
                .count() as i64;
            FirstContactResolution {
                agent_id: agent_id.to_owned(),
                closed: total,
                resolved,
                rate: if total == 0 {
                    0.0
                } else {
                    resolved as f64 / total as f64
                },
            }
        })
        .collect()
}

/// Routing numbers of one queue in one period (product rule 19).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueMetrics {
    /// The queue.
    pub queue_id: String,
    /// Queue offers made.
    pub offered: i64,
    /// Queue offers accepted.
    pub accepted: i64,
    /// Queue offers rejected.
    pub rejected: i64,
    /// Queue offers timed out (RONA).
    pub timed_out: i64,
    /// Queue offers withdrawn.
    pub withdrawn: i64,
    /// Conversations closed, last in the queue, before any agent took them.
    pub abandoned: i64,
    /// Conversations that overflowed into the queue.
    pub overflowed_in: i64,
    /// Conversations that overflowed out of it.
    pub overflowed_out: i64,
    /// Transfers taken that brought a conversation in from another queue.
    pub transferred_in: i64,
    /// Transfers taken that took a conversation out to another queue.
    pub transferred_out: i64,
    /// Sum of the waits of the accepted offers, in microseconds.
    pub wait_total: i64,
    /// Accepted offers whose wait was within the threshold.
    pub answered_within: i64,
}

impl QueueMetrics {
    /// Average wait of the accepted offers, in microseconds; 0 when none.
    pub fn average_speed_of_answer(&self) -> i64 {
        if self.accepted == 0 {
            0
        } else {
            self.wait_total / self.accepted
        }
    }

    /// Answered within the threshold over answered and abandoned; 0 when neither.
    pub fn service_level(&self) -> f64 {
        let base = self.accepted + self.abandoned;
        if base == 0 {
            0.0
        } else {
            self.answered_within as f64 / base as f64
        }
    }
}

/// One row per period and queue with anything counted, by period then queue. `counts`
/// are the queue metrics per slot, queue and label; an acceptance is within the threshold
/// when its wait label is at most `within_label` (see `metrics::wait_label_at_most`).
pub fn queue_metrics(
    frame: &Frame,
    counts: &[Count],
    within_label: &str,
) -> Vec<(Period, QueueMetrics)> {
    let mut rows: BTreeMap<(Period, &str), QueueMetrics> = BTreeMap::new();
    for count in counts {
        let row = rows
            .entry((frame.period_of_slot(count.slot), count.queue_id.as_str()))
            .or_default();
        match count.metric {
            Metric::Offered => row.offered += count.n,
            Metric::Accepted => {
                row.accepted += count.n;
                row.wait_total += count.total;
                if count.label.as_str() <= within_label {
                    row.answered_within += count.n;
                }
            }
            Metric::Rejected => row.rejected += count.n,
            Metric::TimedOut => row.timed_out += count.n,
            Metric::Withdrawn => row.withdrawn += count.n,
            Metric::Abandoned => row.abandoned += count.n,
            Metric::OverflowedIn => row.overflowed_in += count.n,
            Metric::OverflowedOut => row.overflowed_out += count.n,
            Metric::TransferredIn => row.transferred_in += count.n,
            Metric::TransferredOut => row.transferred_out += count.n,
            Metric::Created
            | Metric::Closed
            | Metric::ReassignedTo
            | Metric::ReassignedFrom
            | Metric::Disposition
            | Metric::SentReason
            | Metric::PresenceTime
            | Metric::CapacityTime
            | Metric::Rona
            | Metric::CapacityOverride
            | Metric::PresenceOverride => {}
        }
    }
    rows.into_iter()
        // A conversation closed without ever entering a queue is nobody's abandonment.
        .filter(|((_, queue_id), row)| !queue_id.is_empty() && *row != QueueMetrics::default())
        .map(|((period, queue_id), row)| {
            (
                period,
                QueueMetrics {
                    queue_id: queue_id.to_owned(),
                    ..row
                },
            )
        })
        .collect()
}

/// Segments wrapped up with one reason, for one queue and agent in one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispositions {
    /// The period.
    pub period: Period,
    /// The queue.
    pub queue_id: String,
    /// The agent.
    pub agent_id: String,
    /// The wrap-up reason.
    pub reason_id: String,
    /// How many segments.
    pub segments: i64,
}

impl Dispositions {
    /// The row's place after its period: queue, agent and reason (UUIDs, never with a
    /// `/`), so that rows sort and page by one text.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.queue_id, self.agent_id, self.reason_id)
    }
}

/// Conversations open now in one queue with one status label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenConversations {
    /// The queue they are in.
    pub queue_id: String,
    /// Their status label; empty for none.
    pub status_label_id: String,
    /// How many.
    pub open: i64,
}

impl OpenConversations {
    /// The row's place: queue then label (UUIDs, never with a `/`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.queue_id, self.status_label_id)
    }
}

/// One row per period, queue, agent and reason with at least one segment, in that order.
/// `counts` are disposition counts per slot, queue, agent and label (the reason).
pub fn dispositions(frame: &Frame, counts: &[Count]) -> Vec<Dispositions> {
    let mut rows: BTreeMap<(Period, &str, &str, &str), i64> = BTreeMap::new();
    for count in counts.iter().filter(|c| c.metric == Metric::Disposition) {
        *rows
            .entry((
                frame.period_of_slot(count.slot),
                count.queue_id.as_str(),
                count.agent_id.as_str(),
                count.label.as_str(),
            ))
            .or_default() += count.n;
    }
    rows.into_iter()
        .map(
            |((period, queue_id, agent_id, reason_id), segments)| Dispositions {
                period,
                queue_id: queue_id.to_owned(),
                agent_id: agent_id.to_owned(),
                reason_id: reason_id.to_owned(),
                segments,
            },
        )
        .collect()
}

/// Where one agent's time went in one period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentActivity {
    /// The agent.
    pub agent_id: String,
    /// Microseconds in each signed-in presence, in `Presence::SIGNED_IN` order.
    pub presence_time: [i64; 5],
    /// Capacity units used, integrated over time signed in (unit-microseconds).
    pub units_used_time: i64,
    /// Capacity units available, integrated over time signed in (unit-microseconds).
    pub units_available_time: i64,
    /// Offers that timed out and put the agent in RONA.
    pub rona: i64,
    /// Conversations a supervisor assigned beyond the agent's free capacity.
    pub capacity_overrides: i64,
    /// Presences a supervisor set for the agent.
    pub presence_overrides: i64,
}

impl AgentActivity {
    /// Microseconds signed in.
    pub fn signed_in(&self) -> i64 {
        self.presence_time.iter().sum()
    }

    /// Units used over units available while signed in; 0 when none were available.
    pub fn occupancy(&self) -> f64 {
        if self.units_available_time == 0 {
            0.0
        } else {
            self.units_used_time as f64 / self.units_available_time as f64
        }
    }

    fn add_presence(&mut self, presence: Presence, micros: i64) {
        if let Some(index) = Presence::SIGNED_IN.iter().position(|p| *p == presence) {
            self.presence_time[index] += micros;
        }
    }

    fn add_capacity(&mut self, used: i64, available: i64, micros: i64) {
        self.units_used_time = self
            .units_used_time
            .saturating_add(used.saturating_mul(micros));
        self.units_available_time = self
            .units_available_time
            .saturating_add(available.saturating_mul(micros));
    }
}

/// One row per period and agent with time signed in or anything counted, by period then
/// agent. `counts` are the agent-activity metrics per slot, agent and label (clipped to the
/// range, see `Store::metric_counts`); `open` are the agents' states still held, counted up
/// to `now` (capped at the range's end).
pub fn agent_activity(
    frame: &Frame,
    counts: &[Count],
    open: &[AgentState],
    now: i64,
) -> Vec<(Period, AgentActivity)> {
    let mut rows: BTreeMap<(Period, &str), AgentActivity> = BTreeMap::new();
    for count in counts {
        let row = rows
            .entry((frame.period_of_slot(count.slot), count.agent_id.as_str()))
            .or_default();
        match count.metric {
            Metric::PresenceTime => {
                if let Some(presence) = Presence::from_code(&count.label) {
                    row.add_presence(presence, count.total);
                }
            }
            Metric::CapacityTime => {
                if let Some((used, available)) = parse_capacity_label(&count.label) {
                    row.add_capacity(used, available, count.total);
                }
            }
            Metric::Rona => row.rona += count.n,
            Metric::CapacityOverride => row.capacity_overrides += count.n,
            Metric::PresenceOverride => row.presence_overrides += count.n,
            _ => {}
        }
    }
    let end = frame.end.min(now);
    for state in open {
        for (period, micros) in open_pieces(state, frame.start, end, frame.zone, frame.granularity)
        {
            let row = rows.entry((period, state.agent_id.as_str())).or_default();
            row.add_presence(state.presence, micros);
            row.add_capacity(i64::from(state.used), i64::from(state.total), micros);
        }
    }
    rows.into_iter()
        .filter(|(_, row)| *row != AgentActivity::default())
        .map(|((period, agent_id), row)| {
            (
                period,
                AgentActivity {
                    agent_id: agent_id.to_owned(),
                    ..row
                },
            )
        })
        .collect()
}

/// The metrics an agent-activity report reads.
pub const AGENT_ACTIVITY_METRICS: [Metric; 5] = [
    Metric::PresenceTime,
    Metric::CapacityTime,
    Metric::Rona,
    Metric::CapacityOverride,
    Metric::PresenceOverride,
];

/// The metrics a queue-metrics report reads.
pub const QUEUE_METRICS: [Metric; 10] = [
    Metric::Offered,
    Metric::Accepted,
    Metric::Rejected,
    Metric::TimedOut,
    Metric::Withdrawn,
    Metric::Abandoned,
    Metric::OverflowedIn,
    Metric::OverflowedOut,
    Metric::TransferredIn,
    Metric::TransferredOut,
];

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    const MIN: i64 = 60_000_000;

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_micros()
    }

    fn slot(rfc3339: &str) -> i64 {
        micros(rfc3339).div_euclid(SLOT_MICROS)
    }

    fn frame(start: &str, end: &str, zone: &str, granularity: Granularity) -> Frame {
        Frame {
            start: micros(start),
            end: micros(end),
            zone: zone.parse().unwrap(),
            granularity,
        }
    }

    #[test]
    fn a_frame_of_too_many_periods_is_read_per_slot() {
        for granularity in [Granularity::Week, Granularity::DayOfWeek] {
            let frame = frame(
                "1970-01-01T00:00:00Z",
                "9999-12-31T00:00:00Z",
                "UTC",
                granularity,
            );
            assert_eq!(frame.bucket_starts(), None, "{granularity:?}");
        }
        let total = frame(
            "1970-01-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "UTC",
            Granularity::Total,
        );
        assert_eq!(total.bucket_starts(), Some(Vec::new()));
    }

    #[test]
    fn buckets_never_mix_two_periods() {
        let cases = [
            (
                "2026-03-25T23:00:00Z",
                "2026-04-01T22:00:00Z",
                "Europe/Paris",
            ),
            (
                "2026-03-28T10:07:00Z",
                "2026-05-02T03:00:01Z",
                "Asia/Kathmandu",
            ),
            (
                "2026-10-20T00:00:00Z",
                "2026-11-10T00:00:00Z",
                "America/St_Johns",
            ),
            (
                "2026-03-29T00:30:00Z",
                "2026-03-29T02:00:00Z",
                "Europe/Paris",
            ),
        ];
        for (start, end, zone) in cases {
            for granularity in [
                Granularity::Day,
                Granularity::Week,
                Granularity::Month,
                Granularity::DayOfWeek,
                Granularity::Total,
            ] {
                let frame = frame(start, end, zone, granularity);
                let starts = frame.bucket_starts().unwrap();
                assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
                let first = frame.start.div_euclid(SLOT_MICROS);
                let last = (frame.end - 1).div_euclid(SLOT_MICROS);
                // The key the store gives each slot's bucket (`Sql::bucket`).
                let bucket_of = |slot: i64| match starts.iter().position(|&b| slot < b) {
                    Some(0) => starts[0] - 1,
                    Some(k) => starts[k - 1],
                    None => starts.last().copied().unwrap_or(first),
                };
                let mut periods_seen = std::collections::BTreeSet::new();
                for slot in first..=last {
                    let period = frame.period_of_slot(slot);
                    assert_eq!(
                        frame.period_of_slot(bucket_of(slot)),
                        period,
                        "{zone} {granularity:?} slot {slot}"
                    );
                    periods_seen.insert(period);
                }
                // A bucket per period at most (one per day for a day of week).
                let buckets: std::collections::BTreeSet<i64> =
                    (first..=last).map(bucket_of).collect();
                if granularity != Granularity::DayOfWeek {
                    assert_eq!(buckets.len(), periods_seen.len(), "{zone} {granularity:?}");
                }
            }
        }
    }

    #[test]
    fn every_zone_offset_is_whole_quarter_hours_since_1980() {
        use chrono::{Offset, TimeZone};
        let step = 7 * 24 * 3600;
        let (from, to) = (
            micros("1980-01-01T00:00:00Z"),
            micros("2040-01-01T00:00:00Z"),
        );
        for zone in chrono_tz::TZ_VARIANTS {
            let mut seconds = from / 1_000_000;
            while seconds < to / 1_000_000 {
                let at = DateTime::from_timestamp(seconds, 0).unwrap().naive_utc();
                let offset = zone.offset_from_utc_datetime(&at).fix().local_minus_utc();
                assert_eq!(offset % 900, 0, "{zone} at {at}: offset {offset} s");
                seconds += step;
            }
        }
    }

    #[test]
    fn created_closed_fills_empty_days_and_uses_the_zone() {
        let frame = frame(
            "2026-03-01T23:00:00Z",
            "2026-03-04T23:00:00Z",
            "Europe/Paris",
            Granularity::Day,
        );
        let rows = created_closed(
            &frame,
            &[
                (slot("2026-03-02T09:00:00Z"), 2),
                // 00:30 on 03-04 in Paris.
                (slot("2026-03-03T23:30:00Z"), 1),
            ],
            &[(slot("2026-03-02T10:00:00Z"), 1)],
        );
        let shown: Vec<(String, i64, i64)> = rows
            .iter()
            .map(|r| (r.period.label(), r.created, r.closed))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("2026-03-02".to_owned(), 2, 1),
                ("2026-03-03".to_owned(), 0, 0),
                ("2026-03-04".to_owned(), 1, 0),
            ]
        );
    }

    #[test]
    fn period_starts_are_in_the_frame_zone_and_the_total_starts_with_the_range() {
        let by_week = frame(
            "2026-03-04T10:00:00Z",
            "2026-03-20T00:00:00Z",
            "Europe/Paris",
            Granularity::Week,
        );
        let starts: Vec<Option<i64>> = by_week
            .periods()
            .iter()
            .map(|p| by_week.period_start(p))
            .collect();
        assert_eq!(
            starts,
            vec![
                Some(micros("2026-03-01T23:00:00Z")),
                Some(micros("2026-03-08T23:00:00Z")),
                Some(micros("2026-03-15T23:00:00Z")),
            ]
        );
        let total = Frame {
            granularity: Granularity::Total,
            ..by_week
        };
        assert_eq!(
            total.period_start(&Period::Total),
            Some(micros("2026-03-04T10:00:00Z"))
        );
        assert_eq!(total.period_start(&Period::DayOfWeek(0)), None);
    }

    #[test]
    fn created_closed_total_sums_everything() {
        let frame = frame(
            "2026-03-01T00:00:00Z",
            "2026-04-01T00:00:00Z",
            "UTC",
            Granularity::Total,
        );
        let rows = created_closed(&frame, &[(1, 3), (2, 4)], &[(3, 5)]);
        assert_eq!(
            rows,
            vec![CreatedClosed {
                period: Period::Total,
                created: 7,
                closed: 5
            }]
        );
    }

    #[test]
    fn reassignments_sort_by_period_then_agent() {
        let frame = frame(
            "2026-03-02T00:00:00Z",
            "2026-03-16T00:00:00Z",
            "UTC",
            Granularity::Week,
        );
        let count = |agent: &str, at: &str, n: i64| Count {
            metric: Metric::ReassignedTo,
            slot: slot(at),
            queue_id: String::new(),
            agent_id: agent.to_owned(),
            label: String::new(),
            n,
            total: 0,
        };
        let rows = reassignments(
            &frame,
            &[
                count("b", "2026-03-10T10:00:00Z", 1),
                count("b", "2026-03-02T10:00:00Z", 1),
                count("a", "2026-03-03T10:00:00Z", 2),
                count("b", "2026-03-05T10:00:00Z", 1),
            ],
        );
        let shown: Vec<(String, &str, i64)> = rows
            .iter()
            .map(|r| (r.period.label(), r.agent_id.as_str(), r.received))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("2026-W10".to_owned(), "a", 2),
                ("2026-W10".to_owned(), "b", 2),
                ("2026-W11".to_owned(), "b", 1),
            ]
        );
    }

    fn closed(agent: &str, created: i64, assigned: Option<i64>, closed: i64) -> ClosedConversation {
        ClosedConversation {
            agent_id: agent.to_owned(),
            created_at: created * MIN,
            closed_at: closed * MIN,
            segment_start: assigned.map(|m| m * MIN),
            segments: 1,
            reopens: 0,
        }
    }

    #[test]
    fn close_time_per_agent() {
        let rows = close_time(&[
            closed("a", 0, Some(1), 11),
            closed("b", 0, None, 30),
            closed("a", 100, Some(100), 120),
            closed("a", 200, Some(230), 290),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].agent_id, "a");
        assert_eq!(
            rows[0].from_create,
            Summary {
                count: 3,
                average: 40 * MIN + 20_000_000,
                median: 20 * MIN,
                p90: 90 * MIN
            }
        );
        assert_eq!(
            rows[0].from_assign,
            Some(Summary {
                count: 3,
                average: 30 * MIN,
                median: 20 * MIN,
                p90: 60 * MIN
            })
        );
        assert_eq!(rows[1].agent_id, "b");
        assert_eq!(rows[1].from_create.count, 1);
        assert_eq!(rows[1].from_assign, None);
    }

    #[test]
    fn first_contact_resolution_per_agent() {
        // A transfer taken makes a second segment; a reopen disqualifies too.
        let mut transferred = closed("a", 0, Some(0), 5);
        transferred.segments = 2;
        let mut reopened = closed("c", 0, Some(0), 5);
        reopened.reopens = 1;
        let rows = first_contact_resolution(&[
            closed("a", 0, Some(0), 5),
            transferred,
            closed("a", 0, Some(0), 5),
            reopened,
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].closed, rows[0].resolved), (3, 2));
        assert!((rows[0].rate - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((rows[1].agent_id.as_str(), rows[1].resolved), ("c", 0));
        assert_eq!(rows[1].rate, 0.0);
    }
}
