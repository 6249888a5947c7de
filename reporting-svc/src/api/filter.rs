//! Who may read reports, and turning a `ReportFilter` into a checked report scope.

use chrono_tz::Tz;
use switchboard_proto::common::v1::Channel;
use switchboard_proto::reporting::v1::{Granularity as ProtoGranularity, ReportFilter};
use switchboard_server_kit::db::timestamp_to_micros;
use switchboard_server_kit::{Identity, Role};

use super::page_token::Fingerprint;
use crate::domain::metrics::MAX_WAIT_BUCKET_SECONDS;
use crate::domain::period::Granularity;
use crate::domain::reports::Frame;
use crate::error::Error;
use crate::store::FactQuery;

/// Roles allowed to read reports.
const REPORT_ROLES: [Role; 3] = [Role::Analyst, Role::Supervisor, Role::Administrator];

/// Longest range of a report by day.
const MAX_DAY_RANGE_DAYS: i64 = 400;

/// The contract's caps on filter lists. Together they stay far below the bind-parameter
/// limits of SQLite (32,766) and PostgreSQL (65,535) in one query.
const MAX_QUEUE_IDS: usize = 1000;
const MAX_AGENT_IDS: usize = 1000;
const MAX_CHANNELS: usize = 10;
const MAX_TEAM_IDS: usize = 100;
const MAX_PROGRAM_IDS: usize = 100;

/// Most agents teams may stand for, and most queues programs may: together with the other
/// lists, a query binds fewer values than SQLite allows even when it names agents twice.
pub const MAX_RESOLVED_IDS: usize = 5000;

/// An id no agent or queue has (the nil UUID): a filter that leaves nothing to match
/// becomes a list of this alone, so every query reads it as "none" rather than as
/// the empty list's "all".
pub const MATCHES_NOTHING: &str = "00000000-0000-0000-0000-000000000000";

/// Report ranges lie between 1970-01-01 (nothing is older) and 9999-12-31T23:59:59Z, the
/// last second `google.protobuf.Timestamp` allows.
const MIN_SECONDS: i64 = 0;
const MAX_SECONDS: i64 = 253_402_300_799;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The service-level threshold when a request names none.
const DEFAULT_SERVICE_LEVEL_SECONDS: i64 = 60;

/// A caller allowed to read reports, with what its identity says about its tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's tenant.
    pub tenant_id: String,
    /// The tenant's default IANA time zone; empty for UTC.
    pub time_zone: String,
}

/// The caller, when allowed to read reports.
pub fn authorize(identity: &Identity) -> Result<Caller, Error> {
    if !identity.has_any_role(&REPORT_ROLES) {
        return Err(Error::RoleRequired(
            "reports need the ANALYST, SUPERVISOR or ADMINISTRATOR role".to_owned(),
        ));
    }
    if identity.tenant_id.is_empty() {
        return Err(Error::RoleRequired(
            "reports need a caller that belongs to a tenant".to_owned(),
        ));
    }
    Ok(Caller {
        tenant_id: identity.tenant_id.clone(),
        time_zone: identity.time_zone.clone(),
    })
}

/// A checked report request: whose facts, which range and zone, which filters.
///
/// Team, program and child-tenant filters need the directory or the store to be applied;
/// until [`Scope::is_resolved`], `agent_ids` and `queue_ids` hold only what the request
/// named.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The tenant reported on: the caller's, or a descendant the request names.
    pub tenant_id: String,
    /// The caller's tenant when `tenant_id` is another, which must be its descendant.
    pub reached_from: Option<String>,
    /// Only agents of these teams (normalized UUIDs); empty for all.
    pub team_ids: Vec<String>,
    /// Only queues of these programs (normalized UUIDs); empty for all.
    pub program_ids: Vec<String>,
    /// Range, zone and grouping.
    pub frame: Frame,
    /// Only these queues (normalized UUIDs); empty for all.
    pub queue_ids: Vec<String>,
    /// Only these channels; empty for all.
    pub channels: Vec<i32>,
    /// Only these agents (normalized UUIDs); empty for all.
    pub agent_ids: Vec<String>,
}

impl Scope {
    /// The store query for this scope, once resolved: a scope read before would ignore its
    /// teams, programs or tenant check.
    pub fn query(&self) -> FactQuery<'_> {
        debug_assert!(self.is_resolved(), "a report read an unresolved scope");
        FactQuery {
            tenant_id: &self.tenant_id,
            start: self.frame.start,
            end: self.frame.end,
            queue_ids: &self.queue_ids,
            channels: &self.channels,
            agent_ids: &self.agent_ids,
        }
    }

    /// Whether nothing is left to ask the directory or the store before reading.
    pub fn is_resolved(&self) -> bool {
        self.reached_from.is_none() && self.team_ids.is_empty() && self.program_ids.is_empty()
    }

    /// What identifies the rows of `report` for this scope, so that a page token is only
    /// honoured with the request that issued it. Taken after normalization and before
    /// resolution, so two spellings of one filter (UUID case, the tenant zone named or
    /// implied) agree, and a team's members are looked up again on every page.
    pub fn fingerprint(&self, report: &str) -> u64 {
        let mut fingerprint = Fingerprint::new();
        fingerprint
            .add(report)
            .add(&self.tenant_id)
            .add(&self.frame.start.to_string())
            .add(&self.frame.end.to_string())
            .add(self.frame.zone.name())
            .add(&format!("{:?}", self.frame.granularity));
        for queue_id in &self.queue_ids {
            fingerprint.add(queue_id);
        }
        fingerprint.add("channels");
        for channel in &self.channels {
            fingerprint.add(&channel.to_string());
        }
        fingerprint.add("agents");
        for agent_id in &self.agent_ids {
            fingerprint.add(agent_id);
        }
        fingerprint.add("teams");
        for team_id in &self.team_ids {
            fingerprint.add(team_id);
        }
        fingerprint.add("programs");
        for program_id in &self.program_ids {
            fingerprint.add(program_id);
        }
        fingerprint.finish()
    }
}

/// Whether a report has rows per agent, where `agent_ids` and `team_ids` apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportShape {
    /// Rows per period only (`agent_ids` and `team_ids` are ignored).
    Periods,
    /// Rows per agent.
    Agents,
    /// Rows per agent about the agent alone (presence, capacity), which no queue or
    /// channel divides: `queue_ids` and `channels` are refused.
    AgentsOnly,
}

/// The granularity of a request; UNSPECIFIED means DAY.
pub fn granularity(value: i32, field: &str) -> Result<Granularity, Error> {
    match ProtoGranularity::try_from(value) {
        Ok(ProtoGranularity::Unspecified | ProtoGranularity::Day) => Ok(Granularity::Day),
        Ok(ProtoGranularity::Week) => Ok(Granularity::Week),
        Ok(ProtoGranularity::Month) => Ok(Granularity::Month),
        Ok(ProtoGranularity::DayOfWeek) => Ok(Granularity::DayOfWeek),
        Ok(ProtoGranularity::Total) => Ok(Granularity::Total),
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown granularity {value}"),
        )),
    }
}

fn instant(ts: Option<&prost_types::Timestamp>, field: &str) -> Result<i64, Error> {
    let ts = ts.ok_or_else(|| Error::invalid(field, "is required"))?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(Error::invalid(
            field,
            "must be a valid time between 1970-01-01 and 9999-12-31",
        ));
    }
    Ok(timestamp_to_micros(ts))
}

fn uuids(field: &str, values: &[String]) -> Result<Vec<String>, Error> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            uuid::Uuid::parse_str(value)
                .map(|id| id.to_string())
                .map_err(|_| Error::invalid(format!("{field}[{index}]"), "must be a UUID"))
        })
        .collect()
}

/// Refuses over-long filter lists before anything else is looked at, so that an oversized
/// request costs nothing.
fn check_list_lengths(filter: &ReportFilter) -> Result<(), Error> {
    for (field, len, max) in [
        ("filter.queue_ids", filter.queue_ids.len(), MAX_QUEUE_IDS),
        ("filter.agent_ids", filter.agent_ids.len(), MAX_AGENT_IDS),
        ("filter.channels", filter.channels.len(), MAX_CHANNELS),
        ("filter.team_ids", filter.team_ids.len(), MAX_TEAM_IDS),
        (
            "filter.program_ids",
            filter.program_ids.len(),
            MAX_PROGRAM_IDS,
        ),
    ] {
        if len > max {
            return Err(Error::invalid(
                field,
                format!("at most {max} values, got {len}"),
            ));
        }
    }
    Ok(())
}

/// The tenant a filter names when it is not the caller's own (normalized): reached only if
/// it is a descendant, which the directory tells.
fn other_tenant(caller: &Caller, tenant_id: &str) -> Result<Option<String>, Error> {
    if tenant_id.is_empty() {
        return Ok(None);
    }
    let asked = uuid::Uuid::parse_str(tenant_id)
        .map_err(|_| Error::invalid("filter.tenant_id", "must be a UUID"))?;
    let own = uuid::Uuid::parse_str(&caller.tenant_id).ok();
    if own == Some(asked) || tenant_id == caller.tenant_id {
        Ok(None)
    } else {
        Ok(Some(asked.to_string()))
    }
}

/// What is left of `named` (empty for "any") once only the ids of `allowed` may match:
/// `allowed` itself when nothing was named, else the ids in both, and
/// [`MATCHES_NOTHING`] alone when no id is left.
pub fn narrow(named: &[String], allowed: &std::collections::BTreeSet<String>) -> Vec<String> {
    let kept: Vec<String> = if named.is_empty() {
        allowed.iter().cloned().collect()
    } else {
        named
            .iter()
            .filter(|id| allowed.contains(*id))
            .cloned()
            .collect()
    };
    if kept.is_empty() {
        vec![MATCHES_NOTHING.to_owned()]
    } else {
        kept
    }
}

/// `filter` with the whole history as its range when it names none: for reports on what is
/// open now, where a range only narrows.
pub fn whole_history_unless_named(filter: Option<&ReportFilter>) -> Option<ReportFilter> {
    let mut filter = filter?.clone();
    if filter.time_range.is_none() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        filter.time_range = Some(switchboard_proto::common::v1::TimeRange {
            start_time: Some(at(MIN_SECONDS)),
            end_time: Some(at(MAX_SECONDS)),
        });
    }
    Some(filter)
}

/// The zone periods are seen from: the filter's, else the tenant's default, else UTC.
fn zone(filter: &ReportFilter, caller: &Caller) -> Result<Tz, Error> {
    if !filter.time_zone.is_empty() {
        return filter.time_zone.parse::<Tz>().map_err(|_| {
            Error::invalid(
                "filter.time_zone",
                format!("unknown IANA time zone \"{}\"", filter.time_zone),
            )
        });
    }
    if caller.time_zone.is_empty() {
        return Ok(Tz::UTC);
    }
    caller.time_zone.parse::<Tz>().map_err(|_| {
        Error::invalid(
            "filter.time_zone",
            format!(
                "is empty and the tenant's time zone \"{}\" is not a known IANA zone: name \
                 one here",
                caller.time_zone
            ),
        )
    })
}

/// The service-level threshold of a queue-metrics request, in whole seconds: 60 when
/// unset; whole seconds from 0 to a day, so that the count within it is exact.
pub fn service_level_threshold(
    value: Option<&prost_types::Duration>,
    field: &str,
) -> Result<i64, Error> {
    let Some(duration) = value else {
        return Ok(DEFAULT_SERVICE_LEVEL_SECONDS);
    };
    if duration.nanos != 0 || !(0..=MAX_WAIT_BUCKET_SECONDS).contains(&duration.seconds) {
        return Err(Error::invalid(
            field,
            format!("must be whole seconds from 0 to {MAX_WAIT_BUCKET_SECONDS}"),
        ));
    }
    Ok(duration.seconds)
}

/// Checks `filter` for a report of `shape` grouped by `granularity`, for `caller`.
pub fn scope(
    caller: &Caller,
    filter: Option<&ReportFilter>,
    granularity: Granularity,
    shape: ReportShape,
) -> Result<Scope, Error> {
    let filter = filter.ok_or_else(|| Error::invalid("filter", "is required"))?;
    check_list_lengths(filter)?;
    let other = other_tenant(caller, &filter.tenant_id)?;
    let range = filter
        .time_range
        .as_ref()
        .ok_or_else(|| Error::invalid("filter.time_range", "is required"))?;
    let start = instant(range.start_time.as_ref(), "filter.time_range.start_time")?;
    let end = instant(range.end_time.as_ref(), "filter.time_range.end_time")?;
    if start >= end {
        return Err(Error::invalid(
            "filter.time_range",
            "end_time must be after start_time",
        ));
    }
    if granularity == Granularity::Day && end - start > MAX_DAY_RANGE_DAYS * MICROS_PER_DAY {
        return Err(Error::invalid(
            "filter.time_range",
            format!(
                "at most {MAX_DAY_RANGE_DAYS} days with DAY granularity: narrow it or use WEEK \
                 or MONTH"
            ),
        ));
    }
    let zone = zone(filter, caller)?;
    let queue_ids = uuids("filter.queue_ids", &filter.queue_ids)?;
    let channels = filter
        .channels
        .iter()
        .enumerate()
        .map(|(index, &value)| match Channel::try_from(value) {
            Ok(Channel::Unspecified) | Err(_) => Err(Error::invalid(
                format!("filter.channels[{index}]"),
                format!("unknown channel {value}"),
            )),
            Ok(_) => Ok(value),
        })
        .collect::<Result<Vec<i32>, Error>>()?;
    let program_ids = uuids("filter.program_ids", &filter.program_ids)?;
    if shape == ReportShape::AgentsOnly {
        for (field, given) in [
            ("filter.queue_ids", !queue_ids.is_empty()),
            ("filter.channels", !channels.is_empty()),
            ("filter.program_ids", !program_ids.is_empty()),
        ] {
            if given {
                return Err(Error::invalid(
                    field,
                    "does not apply to agent activity, which is per agent: filter by agent_ids",
                ));
            }
        }
    }
    let (agent_ids, team_ids) = match shape {
        ReportShape::Periods => (Vec::new(), Vec::new()),
        ReportShape::Agents | ReportShape::AgentsOnly => (
            uuids("filter.agent_ids", &filter.agent_ids)?,
            uuids("filter.team_ids", &filter.team_ids)?,
        ),
    };
    Ok(Scope {
        tenant_id: other.clone().unwrap_or_else(|| caller.tenant_id.clone()),
        reached_from: other.map(|_| caller.tenant_id.clone()),
        team_ids,
        program_ids,
        frame: Frame {
            start,
            end,
            zone,
            granularity,
        },
        queue_ids,
        channels,
        agent_ids,
    })
}

#[cfg(test)]
mod tests {
    use switchboard_proto::common::v1::TimeRange;
    use switchboard_server_kit::PrincipalKind;

    use super::*;

    const DAY: i64 = 86_400;
    const TENANT: &str = "0b6f2a4e-1d3c-4e5f-8a9b-0c1d2e3f4a5b";
    const UUID: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    fn filter(start: i64, end: i64, zone: &str) -> ReportFilter {
        ReportFilter {
            time_range: Some(TimeRange {
                start_time: Some(prost_types::Timestamp {
                    seconds: start,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: end,
                    nanos: 0,
                }),
            }),
            time_zone: zone.to_owned(),
            ..ReportFilter::default()
        }
    }

    fn field_of(result: Result<Scope, Error>) -> String {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn caller(time_zone: &str) -> Caller {
        Caller {
            tenant_id: TENANT.to_owned(),
            time_zone: time_zone.to_owned(),
        }
    }

    fn check(filter: &ReportFilter, granularity: Granularity) -> Result<Scope, Error> {
        scope(&caller(""), Some(filter), granularity, ReportShape::Agents)
    }

    #[test]
    fn good_filter_becomes_a_scope() {
        let mut good = filter(1_000 * DAY, 1_001 * DAY, "Europe/Paris");
        good.queue_ids = vec!["6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B".to_owned()];
        good.channels = vec![Channel::Sms as i32];
        let scope = check(&good, Granularity::Day).unwrap();
        assert_eq!(scope.frame.start, 1_000 * DAY * 1_000_000);
        assert_eq!(scope.frame.zone, chrono_tz::Europe::Paris);
        assert_eq!(
            scope.queue_ids,
            vec!["6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"]
        );
        assert_eq!(scope.channels, vec![2]);
        assert_eq!(
            check(&filter(0, 1, ""), Granularity::Day)
                .unwrap()
                .frame
                .zone,
            Tz::UTC
        );
    }

    #[test]
    fn bad_filters_name_the_field() {
        assert_eq!(
            field_of(scope(
                &caller(""),
                None,
                Granularity::Day,
                ReportShape::Periods
            )),
            "filter"
        );
        assert_eq!(
            field_of(check(&ReportFilter::default(), Granularity::Day)),
            "filter.time_range"
        );
        let mut no_start = filter(0, DAY, "");
        no_start.time_range.as_mut().unwrap().start_time = None;
        assert_eq!(
            field_of(check(&no_start, Granularity::Day)),
            "filter.time_range.start_time"
        );
        assert_eq!(
            field_of(check(&filter(DAY, DAY, ""), Granularity::Day)),
            "filter.time_range"
        );
        assert_eq!(
            field_of(check(&filter(2 * DAY, DAY, ""), Granularity::Day)),
            "filter.time_range"
        );
        assert_eq!(
            field_of(check(&filter(-1, DAY, ""), Granularity::Day)),
            "filter.time_range.start_time"
        );
        assert_eq!(
            field_of(check(
                &filter(0, DAY, "Mars/Olympus_Mons"),
                Granularity::Day
            )),
            "filter.time_zone"
        );
        let mut bad_queue = filter(0, DAY, "");
        bad_queue.queue_ids = vec!["not-a-uuid".to_owned()];
        assert_eq!(
            field_of(check(&bad_queue, Granularity::Day)),
            "filter.queue_ids[0]"
        );
        let mut bad_channel = filter(0, DAY, "");
        bad_channel.channels = vec![1, 0];
        assert_eq!(
            field_of(check(&bad_channel, Granularity::Day)),
            "filter.channels[1]"
        );
        let mut teams = filter(0, DAY, "");
        teams.team_ids = vec![UUID.to_owned(), "tier-1".to_owned()];
        assert_eq!(
            field_of(check(&teams, Granularity::Day)),
            "filter.team_ids[1]"
        );
        let mut programs = filter(0, DAY, "");
        programs.program_ids = vec!["sales".to_owned()];
        assert_eq!(
            field_of(check(&programs, Granularity::Day)),
            "filter.program_ids[0]"
        );
        // Period reports have no agents: teams do not apply there (and are not read).
        let periods = scope(
            &caller(""),
            Some(&teams),
            Granularity::Day,
            ReportShape::Periods,
        )
        .unwrap();
        assert!(periods.team_ids.is_empty() && periods.is_resolved());
        // Agent activity is per agent alone: programs, like queues, do not divide it.
        programs.program_ids = vec![UUID.to_owned()];
        assert_eq!(
            field_of(scope(
                &caller(""),
                Some(&programs),
                Granularity::Day,
                ReportShape::AgentsOnly
            )),
            "filter.program_ids"
        );
    }

    #[test]
    fn teams_and_programs_are_resolved_later_and_normalized() {
        let mut named = filter(0, DAY, "");
        named.team_ids = vec![UUID.to_uppercase()];
        named.program_ids = vec![UUID.to_uppercase()];
        let scope = check(&named, Granularity::Day).unwrap();
        assert_eq!(scope.team_ids, vec![UUID]);
        assert_eq!(scope.program_ids, vec![UUID]);
        assert!(!scope.is_resolved());
        let mut other = named.clone();
        other.program_ids.clear();
        assert_ne!(
            check(&other, Granularity::Day)
                .unwrap()
                .fingerprint("reassignments"),
            scope.fingerprint("reassignments")
        );
    }

    #[test]
    fn narrowing_keeps_what_both_allow_and_never_becomes_all() {
        let allowed: std::collections::BTreeSet<String> =
            ["a", "b"].iter().map(|s| (*s).to_owned()).collect();
        let named = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(narrow(&[], &allowed), named(&["a", "b"]));
        assert_eq!(narrow(&named(&["b", "c"]), &allowed), named(&["b"]));
        assert_eq!(narrow(&named(&["c"]), &allowed), named(&[MATCHES_NOTHING]));
        assert_eq!(
            narrow(&[], &std::collections::BTreeSet::new()),
            named(&[MATCHES_NOTHING])
        );
    }

    #[test]
    fn the_zone_is_the_filter_s_else_the_tenant_s_else_utc() {
        let new_york = caller("America/New_York");
        let zone_of = |caller: &Caller, zone: &str| {
            scope(
                caller,
                Some(&filter(0, DAY, zone)),
                Granularity::Day,
                ReportShape::Periods,
            )
            .map(|scope| scope.frame.zone)
        };
        assert_eq!(
            zone_of(&new_york, "").unwrap(),
            chrono_tz::America::New_York
        );
        assert_eq!(
            zone_of(&new_york, "Asia/Tokyo").unwrap(),
            chrono_tz::Asia::Tokyo
        );
        assert_eq!(zone_of(&caller(""), "").unwrap(), Tz::UTC);
        assert_eq!(
            field_of(zone_of(&caller("Atlantis/Capital"), "").map(|_| unreachable!())),
            "filter.time_zone"
        );
    }

    #[test]
    fn long_lists_are_refused_before_anything_else() {
        // No time range at all: the length check must come first to name the list.
        let lists = |queues: usize, agents: usize, channels: usize, teams: usize| ReportFilter {
            queue_ids: vec!["not-a-uuid".to_owned(); queues],
            agent_ids: vec!["not-a-uuid".to_owned(); agents],
            channels: vec![99; channels],
            team_ids: vec!["not-a-uuid".to_owned(); teams],
            ..ReportFilter::default()
        };
        assert_eq!(
            field_of(check(
                &ReportFilter {
                    program_ids: vec!["not-a-uuid".to_owned(); 100_000],
                    ..ReportFilter::default()
                },
                Granularity::Day
            )),
            "filter.program_ids"
        );
        assert_eq!(
            field_of(check(&lists(1001, 0, 0, 0), Granularity::Day)),
            "filter.queue_ids"
        );
        assert_eq!(
            field_of(check(&lists(0, 1001, 0, 0), Granularity::Day)),
            "filter.agent_ids"
        );
        assert_eq!(
            field_of(check(&lists(0, 0, 11, 0), Granularity::Day)),
            "filter.channels"
        );
        assert_eq!(
            field_of(check(&lists(0, 0, 0, 101), Granularity::Day)),
            "filter.team_ids"
        );
        // At the caps, the lists are read (and the first bad value named).
        let mut full = filter(0, DAY, "");
        full.queue_ids = vec![UUID.to_owned(); 1000];
        full.agent_ids = vec![UUID.to_owned(); 1000];
        full.channels = vec![Channel::Sms as i32; 10];
        let scope = check(&full, Granularity::Day).unwrap();
        assert_eq!((scope.queue_ids.len(), scope.agent_ids.len()), (1000, 1000));
        assert_eq!(scope.channels.len(), 10);
    }

    #[test]
    fn another_tenant_is_reported_on_only_once_reached() {
        let mut own = filter(0, DAY, "");
        own.tenant_id = TENANT.to_uppercase();
        let scope = check(&own, Granularity::Day).unwrap();
        assert_eq!(
            (scope.tenant_id.as_str(), scope.reached_from),
            (TENANT, None)
        );
        let mut child = filter(0, DAY, "");
        child.tenant_id = UUID.to_uppercase();
        let scope = check(&child, Granularity::Day).unwrap();
        assert_eq!(scope.tenant_id, UUID);
        assert_eq!(scope.reached_from.as_deref(), Some(TENANT));
        assert!(!scope.is_resolved());
        child.tenant_id = "acme".to_owned();
        assert_eq!(
            field_of(check(&child, Granularity::Day)),
            "filter.tenant_id"
        );
    }

    #[test]
    fn fingerprints_tell_filters_apart_but_not_spellings() {
        let fingerprint = |filter: &ReportFilter, granularity: Granularity| {
            check(filter, granularity)
                .unwrap()
                .fingerprint("created_closed")
        };
        let base = filter(0, DAY, "Europe/Paris");
        let mut upper = base.clone();
        upper.queue_ids = vec![UUID.to_uppercase()];
        let mut lower = base.clone();
        lower.queue_ids = vec![UUID.to_owned()];
        assert_eq!(
            fingerprint(&upper, Granularity::Day),
            fingerprint(&lower, Granularity::Day)
        );
        assert_ne!(
            fingerprint(&base, Granularity::Day),
            fingerprint(&lower, Granularity::Day)
        );
        assert_ne!(
            fingerprint(&base, Granularity::Day),
            fingerprint(&base, Granularity::Week)
        );
        assert_ne!(
            fingerprint(&base, Granularity::Day),
            fingerprint(&filter(0, DAY, "UTC"), Granularity::Day)
        );
        let scope = check(&base, Granularity::Day).unwrap();
        assert_ne!(
            scope.fingerprint("created_closed"),
            scope.fingerprint("reassignments")
        );
    }

    #[test]
    fn day_reports_span_at_most_400_days() {
        assert!(check(&filter(0, 400 * DAY, ""), Granularity::Day).is_ok());
        assert_eq!(
            field_of(check(&filter(0, 400 * DAY + 1, ""), Granularity::Day)),
            "filter.time_range"
        );
        assert!(check(&filter(0, 4_000 * DAY, ""), Granularity::Month).is_ok());
    }

    #[test]
    fn granularity_defaults_to_day() {
        assert_eq!(granularity(0, "granularity").unwrap(), Granularity::Day);
        assert_eq!(
            granularity(4, "granularity").unwrap(),
            Granularity::DayOfWeek
        );
        assert!(granularity(99, "granularity").is_err());
    }

    #[test]
    fn only_report_roles_of_a_tenant_pass() {
        let mut identity = Identity {
            tenant_id: "t".to_owned(),
            tenant_ancestry: Vec::new(),
            principal_id: "u".to_owned(),
            principal_kind: PrincipalKind::User,
            display_name: "U".to_owned(),
            roles: vec![Role::Agent],
            enabled_supervisor_actions: Vec::new(),
            time_zone: String::new(),
            reopen_window_secs: 0,
        };
        assert!(matches!(authorize(&identity), Err(Error::RoleRequired(_))));
        for role in REPORT_ROLES {
            identity.roles = vec![Role::Agent, role];
            assert_eq!(authorize(&identity).unwrap().tenant_id, "t");
        }
        identity.tenant_id.clear();
        assert!(matches!(authorize(&identity), Err(Error::RoleRequired(_))));
    }
}
