//! Agent activity: where each agent's signed-in time went and how much of its capacity it
//! used, from routing-svc's presence and capacity events.
//!
//! Routing logs an agent's state after every change: the presence shown, the capacity
//! units its conversations hold and the units its profile gives. The time between two
//! changes is one interval in one state. An interval is cut at quarter-hour slot boundaries
//! into duration occurrences (`at` where the piece starts, `value` its length), so the
//! rollups sum them per slot like any count and a range that cuts a slot takes exactly its
//! share of the piece (`Store::metric_counts`). The interval still open is the agent's
//! stored state, added at report time up to now ([`open_pieces`]).

use super::metrics::{Metric, Occurrence, RoutingEvent, RoutingEventKind};
use super::period::{Granularity, Period, local_date, period_of, start_of_day};
use super::reports::SLOT_MICROS;

/// An agent's presence as the reports see it (`switchboard.routing.v1.Presence`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Presence {
    /// Signed out: its time is not counted.
    #[default]
    Offline,
    /// Receiving offers.
    Available,
    /// Busy by hand, or Available with its capacity full.
    Busy,
    /// Away.
    Away,
    /// Do not disturb.
    DoNotDisturb,
    /// Redirected on no answer.
    Rona,
}

impl Presence {
    /// Every presence counted while signed in, in report column order.
    pub const SIGNED_IN: [Presence; 5] = [
        Presence::Available,
        Presence::Busy,
        Presence::Away,
        Presence::DoNotDisturb,
        Presence::Rona,
    ];

    /// The presence's label in the store.
    pub const fn code(self) -> &'static str {
        match self {
            Presence::Offline => "offline",
            Presence::Available => "available",
            Presence::Busy => "busy",
            Presence::Away => "away",
            Presence::DoNotDisturb => "do_not_disturb",
            Presence::Rona => "rona",
        }
    }

    /// The presence labelled `code` in the store.
    pub fn from_code(code: &str) -> Option<Presence> {
        std::iter::once(Presence::Offline)
            .chain(Presence::SIGNED_IN)
            .find(|p| p.code() == code)
    }

    /// The presence numbered `number` in `switchboard.routing.v1.Presence`; `None` for
    /// UNSPECIFIED and numbers this version does not know.
    pub fn from_proto(number: i32) -> Option<Presence> {
        match number {
            1 => Some(Presence::Offline),
            2 => Some(Presence::Available),
            3 => Some(Presence::Busy),
            4 => Some(Presence::Away),
            5 => Some(Presence::DoNotDisturb),
            6 => Some(Presence::Rona),
            _ => None,
        }
    }

    /// The presence's `switchboard.routing.v1.Presence` number.
    pub const fn to_proto(self) -> i32 {
        match self {
            Presence::Offline => 1,
            Presence::Available => 2,
            Presence::Busy => 3,
            Presence::Away => 4,
            Presence::DoNotDisturb => 5,
            Presence::Rona => 6,
        }
    }

    /// Whether time in it counts as signed in.
    pub fn signed_in(self) -> bool {
        self != Presence::Offline
    }
}

/// What changed an agent's presence (`switchboard.routing.internal.v1.PresenceCause`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PresenceCause {
    /// The agent.
    Agent,
    /// A supervisor.
    Supervisor,
    /// An offer timed out: the agent went to RONA.
    OfferTimedOut,
    /// The agent's capacity filled or freed (Available shown as Busy and back).
    Capacity,
    /// Not given, or not known to this version.
    #[default]
    Unknown,
}

/// An agent's state since its last change: the interval still open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentState {
    /// The tenant.
    pub tenant_id: String,
    /// The agent.
    pub agent_id: String,
    /// The presence shown.
    pub presence: Presence,
    /// When the state began, microseconds since the epoch.
    pub since: i64,
    /// Capacity units its conversations hold.
    pub used: i32,
    /// Capacity units its profile gives.
    pub total: i32,
}

/// The label of a capacity piece: units used and units available, so that reports can
/// weigh the piece's length by either.
pub fn capacity_label(used: i32, total: i32) -> String {
    format!("{used}/{total}")
}

/// The units used and available a capacity label records.
pub fn parse_capacity_label(label: &str) -> Option<(i64, i64)> {
    let (used, total) = label.split_once('/')?;
    Some((used.parse().ok()?, total.parse().ok()?))
}

/// The pieces of `[start, end)` cut at quarter-hour slot boundaries, as `(start, length)`.
fn slot_pieces(start: i64, end: i64) -> impl Iterator<Item = (i64, i64)> {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let slot_end = (at.div_euclid(SLOT_MICROS) + 1).saturating_mul(SLOT_MICROS);
        let piece_end = slot_end.min(end);
        let piece = (at, piece_end - at);
        at = piece_end;
        Some(piece)
    })
}

/// The duration occurrences of `state` held until `end`: per slot piece, its presence's
/// time and, while capacity was known, its capacity time. Nothing for time offline.
pub fn interval_occurrences(state: &AgentState, end: i64) -> Vec<Occurrence> {
    if !state.presence.signed_in() {
        return Vec::new();
    }
    let occurrence = |metric: Metric, at: i64, value: i64, label: String| Occurrence {
        tenant_id: state.tenant_id.clone(),
        metric,
        at,
        queue_id: String::new(),
        channel: 0,
        program_id: String::new(),
        agent_id: state.agent_id.clone(),
        label,
        value,
    };
    let with_capacity = state.used != 0 || state.total != 0;
    let mut occurrences = Vec::new();
    for (at, length) in slot_pieces(state.since, end) {
        occurrences.push(occurrence(
            Metric::PresenceTime,
            at,
            length,
            state.presence.code().to_owned(),
        ));
        if with_capacity {
            occurrences.push(occurrence(
                Metric::CapacityTime,
                at,
                length,
                capacity_label(state.used, state.total),
            ));
        }
    }
    occurrences
}

/// What a routing event does to its agent's activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityChange {
    /// The agent's state after the event.
    pub state: AgentState,
    /// The closed interval's pieces and the event's own counts.
    pub occurrences: Vec<Occurrence>,
}

/// Whether `event` is a presence, capacity or profile event of an agent.
pub fn changes_agent_state(event: &RoutingEvent) -> bool {
    !event.agent_id.is_empty()
        && matches!(
            event.kind,
            RoutingEventKind::PresenceChanged
                | RoutingEventKind::CapacityReserved
                | RoutingEventKind::CapacityReleased
                | RoutingEventKind::AgentProfileSet
        )
}

/// Folds a presence, capacity or profile event into its agent's state (`current`, `None`
/// before the agent's first such event: offline, nothing held). Other events, and events
/// without an agent, change nothing (`None`). An event older than the state (clocks of two
/// routing replicas disagreeing) closes an empty interval rather than a negative one.
pub fn of_routing_event(
    current: Option<&AgentState>,
    event: &RoutingEvent,
) -> Option<ActivityChange> {
    if !changes_agent_state(event) {
        return None;
    }
    let kind = event.kind;
    let before = current.cloned().unwrap_or_else(|| AgentState {
        tenant_id: event.tenant_id.clone(),
        agent_id: event.agent_id.clone(),
        presence: Presence::Offline,
        since: event.occurred_at,
        used: 0,
        total: 0,
    });
    let mut occurrences = interval_occurrences(&before, event.occurred_at);
    let mut after = AgentState {
        since: before.since.max(event.occurred_at),
        used: event.capacity_used,
        total: event.capacity_total,
        ..before
    };
    let count = |metric: Metric| Occurrence {
        tenant_id: event.tenant_id.clone(),
        metric,
        at: event.occurred_at,
        queue_id: String::new(),
        channel: 0,
        program_id: String::new(),
        agent_id: event.agent_id.clone(),
        label: String::new(),
        value: 0,
    };
    match kind {
        RoutingEventKind::PresenceChanged => {
            if let Some(presence) = event.presence {
                after.presence = presence;
            }
            match event.presence_cause {
                PresenceCause::OfferTimedOut if event.presence == Some(Presence::Rona) => {
                    occurrences.push(count(Metric::Rona));
                }
                PresenceCause::Supervisor => occurrences.push(count(Metric::PresenceOverride)),
                _ => {}
            }
        }
        RoutingEventKind::CapacityReserved if event.units_over_capacity > 0 => {
            occurrences.push(count(Metric::CapacityOverride));
        }
        _ => {}
    }
    Some(ActivityChange {
        state: after,
        occurrences,
    })
}

/// The open interval of `state` inside `[start, end)` (a report's range cut at now), in
/// pieces that each lie in one period of `granularity` in `zone`: `(period, length)`.
pub fn open_pieces(
    state: &AgentState,
    start: i64,
    end: i64,
    zone: chrono_tz::Tz,
    granularity: Granularity,
) -> Vec<(Period, i64)> {
    let from = state.since.max(start);
    if !state.presence.signed_in() || from >= end {
        return Vec::new();
    }
    if granularity == Granularity::Total {
        return vec![(Period::Total, end - from)];
    }
    // Every period is a whole number of local days: cut at each local midnight.
    let mut pieces = Vec::new();
    let mut at = from;
    while at < end {
        let next_day = local_date(at, zone)
            .succ_opt()
            .map_or(end, |day| start_of_day(day, zone));
        let piece_end = next_day.clamp(at + 1, end);
        pieces.push((period_of(at, zone, granularity), piece_end - at));
        at = piece_end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;
    /// 2026-03-02T09:00:00Z.
    const NINE: i64 = 1_772_442_000_000_000;

    fn event(kind: RoutingEventKind, at: i64) -> RoutingEvent {
        RoutingEvent {
            tenant_id: "t".into(),
            agent_id: "a".into(),
            kind,
            occurred_at: at,
            ..RoutingEvent::default()
        }
    }

    fn presence(at: i64, presence: Presence, cause: PresenceCause) -> RoutingEvent {
        RoutingEvent {
            presence: Some(presence),
            presence_cause: cause,
            capacity_total: 4,
            ..event(RoutingEventKind::PresenceChanged, at)
        }
    }

    #[test]
    fn an_interval_is_cut_at_quarter_hours_and_offline_time_is_not_counted() {
        let signed_in = of_routing_event(
            None,
            &presence(NINE + 10 * MIN, Presence::Available, PresenceCause::Agent),
        )
        .unwrap();
        assert!(signed_in.occurrences.is_empty(), "offline before");
        assert_eq!(signed_in.state.presence, Presence::Available);
        let reserved = of_routing_event(
            Some(&signed_in.state),
            &RoutingEvent {
                capacity_used: 2,
                capacity_total: 4,
                ..event(RoutingEventKind::CapacityReserved, NINE + 40 * MIN)
            },
        )
        .unwrap();
        let pieces: Vec<(Metric, i64, i64, &str)> = reserved
            .occurrences
            .iter()
            .map(|o| (o.metric, o.at - NINE, o.value / MIN, o.label.as_str()))
            .collect();
        assert_eq!(
            pieces,
            vec![
                (Metric::PresenceTime, 10 * MIN, 5, "available"),
                (Metric::CapacityTime, 10 * MIN, 5, "0/4"),
                (Metric::PresenceTime, 15 * MIN, 15, "available"),
                (Metric::CapacityTime, 15 * MIN, 15, "0/4"),
                (Metric::PresenceTime, 30 * MIN, 10, "available"),
                (Metric::CapacityTime, 30 * MIN, 10, "0/4"),
            ]
        );
        assert_eq!((reserved.state.used, reserved.state.total), (2, 4));
        let offline = of_routing_event(
            Some(&reserved.state),
            &presence(NINE + 50 * MIN, Presence::Offline, PresenceCause::Agent),
        )
        .unwrap();
        // 40 to 45 and 45 to 50 minutes past nine, now with 2 of 4 units used.
        assert_eq!(offline.occurrences.len(), 4);
        assert_eq!(offline.occurrences[3].label, "2/4");
        assert_eq!(offline.occurrences[3].value, 5 * MIN);
        let back = of_routing_event(
            Some(&offline.state),
            &presence(NINE + 300 * MIN, Presence::Away, PresenceCause::Agent),
        )
        .unwrap();
        assert!(back.occurrences.is_empty(), "offline time is not counted");
    }

    #[test]
    fn rona_and_supervisors_overrides_are_counted() {
        let start = of_routing_event(
            None,
            &presence(NINE, Presence::Available, PresenceCause::Agent),
        )
        .unwrap();
        let metrics = |change: &ActivityChange| -> Vec<Metric> {
            change
                .occurrences
                .iter()
                .map(|o| o.metric)
                .filter(|m| !m.is_duration())
                .collect()
        };
        let rona = of_routing_event(
            Some(&start.state),
            &presence(NINE + MIN, Presence::Rona, PresenceCause::OfferTimedOut),
        )
        .unwrap();
        assert_eq!(metrics(&rona), vec![Metric::Rona]);
        let set = of_routing_event(
            Some(&rona.state),
            &presence(NINE + 2 * MIN, Presence::Away, PresenceCause::Supervisor),
        )
        .unwrap();
        assert_eq!(metrics(&set), vec![Metric::PresenceOverride]);
        let over = of_routing_event(
            Some(&set.state),
            &RoutingEvent {
                units_over_capacity: 1,
                capacity_used: 5,
                capacity_total: 4,
                ..event(RoutingEventKind::CapacityReserved, NINE + 3 * MIN)
            },
        )
        .unwrap();
        assert_eq!(metrics(&over), vec![Metric::CapacityOverride]);
        assert_eq!(
            over.state.presence,
            Presence::Away,
            "capacity keeps presence"
        );
        let busy = of_routing_event(
            Some(&over.state),
            &presence(NINE + 4 * MIN, Presence::Busy, PresenceCause::Capacity),
        )
        .unwrap();
        assert!(metrics(&busy).is_empty());
        assert!(of_routing_event(None, &event(RoutingEventKind::OfferCreated, NINE)).is_none());
    }

    #[test]
    fn an_event_older_than_the_state_closes_nothing() {
        let start = of_routing_event(
            None,
            &presence(NINE, Presence::Available, PresenceCause::Agent),
        )
        .unwrap();
        let late = of_routing_event(
            Some(&start.state),
            &presence(NINE - MIN, Presence::Away, PresenceCause::Agent),
        )
        .unwrap();
        assert!(late.occurrences.is_empty());
        assert_eq!(late.state.since, NINE);
    }

    #[test]
    fn the_open_interval_is_cut_at_local_midnights() {
        let zone: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let state = AgentState {
            tenant_id: "t".into(),
            agent_id: "a".into(),
            presence: Presence::Away,
            since: NINE + 12 * 60 * MIN, // 22:00 Paris on 2 March
            used: 0,
            total: 0,
        };
        let end = NINE + 40 * 60 * MIN; // 02:00 Paris on 4 March
        let pieces = open_pieces(&state, NINE, end, zone, Granularity::Day);
        let lengths: Vec<i64> = pieces.iter().map(|(_, len)| len / MIN).collect();
        assert_eq!(lengths, vec![2 * 60, 24 * 60, 2 * 60]);
        assert_eq!(
            open_pieces(&state, NINE, end, zone, Granularity::Total),
            vec![(Period::Total, 28 * 60 * MIN)]
        );
        let offline = AgentState {
            presence: Presence::Offline,
            ..state
        };
        assert!(open_pieces(&offline, NINE, end, zone, Granularity::Day).is_empty());
    }

    #[test]
    fn labels_round_trip() {
        assert_eq!(parse_capacity_label(&capacity_label(3, 10)), Some((3, 10)));
        assert_eq!(parse_capacity_label("x"), None);
        for presence in Presence::SIGNED_IN {
            assert_eq!(Presence::from_code(presence.code()), Some(presence));
            assert_eq!(Presence::from_proto(presence.to_proto()), Some(presence));
        }
    }
}
