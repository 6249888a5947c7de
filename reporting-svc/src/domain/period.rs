//! Report periods: which day, ISO week, month or day of week a UTC instant falls in, seen
//! from an IANA time zone, and every period a time range covers.
//!
//! Local dates come from chrono-tz, so days around daylight-saving changes are 23 or 25
//! hours long and an instant always lands on the calendar day a clock in that zone shows.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone as _, Utc, Weekday};
use chrono_tz::Tz;

/// How a report groups rows in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// Calendar day in the zone.
    Day,
    /// ISO week (Monday to Sunday) in the zone.
    Week,
    /// Calendar month in the zone.
    Month,
    /// Day of week in the zone, summed over the range.
    DayOfWeek,
    /// The whole range.
    Total,
}

/// One period of a report. Periods of one granularity sort in time order (days of week
/// from Monday to Sunday).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// A calendar day.
    Day(NaiveDate),
    /// An ISO week: its ISO week-numbering year and week number (1 to 53).
    Week { year: i32, week: u32 },
    /// A calendar month (1 to 12).
    Month { year: i32, month: u32 },
    /// A day of week, 0 for Monday to 6 for Sunday.
    DayOfWeek(u32),
    /// The whole range.
    Total,
}

const WEEKDAY_NAMES: [&str; 7] = [
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
];

impl Period {
    /// The period as the tests name it: `2026-11-21`, `2026-W47`, `2026-11`, `MONDAY` or
    /// `TOTAL`.
    #[cfg(test)]
    pub fn label(&self) -> String {
        match self {
            Period::Day(date) => date.format("%Y-%m-%d").to_string(),
            Period::Week { year, week } => format!("{year:04}-W{week:02}"),
            Period::Month { year, month } => format!("{year:04}-{month:02}"),
            Period::DayOfWeek(day) => WEEKDAY_NAMES[*day as usize].to_owned(),
            Period::Total => "TOTAL".to_owned(),
        }
    }

    /// The calendar day the period starts on: the day, the Monday of the ISO week, the
    /// first of the month; `None` for a day of week or the total, which are no span of
    /// the calendar.
    pub fn first_day(&self) -> Option<NaiveDate> {
        match *self {
            Period::Day(date) => Some(date),
            Period::Week { year, week } => NaiveDate::from_isoywd_opt(year, week, Weekday::Mon),
            Period::Month { year, month } => NaiveDate::from_ymd_opt(year, month, 1),
            Period::DayOfWeek(_) | Period::Total => None,
        }
    }

    /// The weekday of a day-of-week period, 0 for Monday to 6 for Sunday.
    pub fn weekday(&self) -> Option<u32> {
        match *self {
            Period::DayOfWeek(day) => Some(day),
            _ => None,
        }
    }

    /// A number that orders the periods of one granularity as they sort, so that a page
    /// token can say after which period the next page starts.
    pub fn ordinal(&self) -> i64 {
        match *self {
            Period::Day(date) => i64::from(date.num_days_from_ce()),
            Period::Week { year, week } => i64::from(year) * 100 + i64::from(week),
            Period::Month { year, month } => i64::from(year) * 12 + i64::from(month),
            Period::DayOfWeek(day) => i64::from(day),
            Period::Total => 0,
        }
    }

    fn of_date(date: NaiveDate, granularity: Granularity) -> Period {
        match granularity {
            Granularity::Day => Period::Day(date),
            Granularity::Week => {
                let week = date.iso_week();
                Period::Week {
                    year: week.year(),
                    week: week.week(),
                }
            }
            Granularity::Month => Period::Month {
                year: date.year(),
                month: date.month(),
            },
            Granularity::DayOfWeek => Period::DayOfWeek(date.weekday().num_days_from_monday()),
            Granularity::Total => Period::Total,
        }
    }
}

/// The English upper-case name of a weekday (0 for Monday), as the CSV export writes it
/// and as `switchboard.reporting.v1.DayOfWeek` names it after its prefix.
pub fn weekday_name(day: u32) -> &'static str {
    WEEKDAY_NAMES[day as usize % 7]
}

/// The first instant (microseconds since the epoch) of the local calendar day `date` in
/// `zone`: local midnight, or when a daylight-saving change skips midnight (as in Havana
/// or Beirut), the first local time that exists that day.
pub fn start_of_day(date: NaiveDate, zone: Tz) -> i64 {
    let mut local = date.and_time(chrono::NaiveTime::MIN);
    // Gaps are whole quarter hours (see `reports`), so stepping by 15 minutes finds the
    // first existing time; a day a zone skipped entirely ends on the next day's start.
    loop {
        if let Some(instant) = zone.from_local_datetime(&local).earliest() {
            return instant.timestamp_micros();
        }
        local += Duration::minutes(15);
    }
}

/// The local calendar date of `micros` (microseconds since the epoch) in `zone`.
///
/// Instants outside chrono's range (about ±262,000 years) clamp to its ends; report
/// ranges are validated long before that.
pub fn local_date(micros: i64, zone: Tz) -> NaiveDate {
    let utc = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(if micros < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    utc.with_timezone(&zone).date_naive()
}

/// The period that the instant `micros` falls in, seen from `zone`.
pub fn period_of(micros: i64, zone: Tz, granularity: Granularity) -> Period {
    if granularity == Granularity::Total {
        return Period::Total;
    }
    Period::of_date(local_date(micros, zone), granularity)
}

/// Every period of the half-open range `[start, end)` in order, so that reports can show
/// empty periods as zeros. Days of week are those that occur in the range, Monday first.
/// An empty range has no periods.
pub fn periods_in(start: i64, end: i64, zone: Tz, granularity: Granularity) -> Vec<Period> {
    if start >= end {
        return Vec::new();
    }
    if granularity == Granularity::Total {
        return vec![Period::Total];
    }
    let first = local_date(start, zone);
    let last = local_date(end - 1, zone);
    let mut periods = Vec::new();
    match granularity {
        Granularity::Day => {
            let mut date = first;
            while date <= last {
                periods.push(Period::Day(date));
                date += Duration::days(1);
            }
        }
        Granularity::Week => {
            let days_since_monday = i64::from(first.weekday().num_days_from_monday());
            let mut monday = first - Duration::days(days_since_monday);
            while monday <= last {
                periods.push(Period::of_date(monday, granularity));
                monday += Duration::days(7);
            }
        }
        Granularity::Month => {
            let (mut year, mut month) = (first.year(), first.month());
            while (year, month) <= (last.year(), last.month()) {
                periods.push(Period::Month { year, month });
                (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
            }
        }
        Granularity::DayOfWeek => {
            let span_days = (last - first).num_days();
            let mut days: Vec<u32> = if span_days >= 6 {
                (0..7).collect()
            } else {
                (0..=span_days)
                    .map(|offset| {
                        (first + Duration::days(offset))
                            .weekday()
                            .num_days_from_monday()
                    })
                    .collect()
            };
            days.sort_unstable();
            periods.extend(days.into_iter().map(Period::DayOfWeek));
        }
        Granularity::Total => unreachable!("handled above"),
    }
    periods
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_micros()
    }

    fn paris() -> Tz {
        "Europe/Paris".parse().unwrap()
    }

    fn label(at: &str, zone: Tz, granularity: Granularity) -> String {
        period_of(micros(at), zone, granularity).label()
    }

    fn labels(start: &str, end: &str, zone: Tz, granularity: Granularity) -> Vec<String> {
        periods_in(micros(start), micros(end), zone, granularity)
            .iter()
            .map(Period::label)
            .collect()
    }

    fn at(micros_since_epoch: i64) -> String {
        DateTime::<Utc>::from_timestamp_micros(micros_since_epoch)
            .unwrap()
            .to_rfc3339()
    }

    fn start(at_instant: &str, zone: Tz, granularity: Granularity) -> String {
        let period = period_of(micros(at_instant), zone, granularity);
        at(start_of_day(period.first_day().unwrap(), zone))
    }

    #[test]
    fn periods_start_at_local_midnight_of_their_first_day() {
        let at_instant = "2026-11-21T12:00:00Z";
        let zone = paris();
        assert_eq!(
            start(at_instant, zone, Granularity::Day),
            "2026-11-20T23:00:00+00:00"
        );
        // Week 47 of 2026 starts on Monday 16 November.
        assert_eq!(
            start(at_instant, zone, Granularity::Week),
            "2026-11-15T23:00:00+00:00"
        );
        assert_eq!(
            start(at_instant, zone, Granularity::Month),
            "2026-10-31T23:00:00+00:00"
        );
        // ISO week 1 of 2027 starts on 2027-01-04; week 53 of 2026 on 2026-12-28.
        assert_eq!(
            start("2027-01-03T12:00:00Z", Tz::UTC, Granularity::Week),
            "2026-12-28T00:00:00+00:00"
        );
        // A summer day in Paris starts at 22:00 UTC the day before.
        assert_eq!(
            start("2026-07-14T12:00:00Z", zone, Granularity::Day),
            "2026-07-13T22:00:00+00:00"
        );
        assert_eq!(Period::DayOfWeek(2).first_day(), None);
        assert_eq!(Period::Total.first_day(), None);
        assert_eq!(Period::DayOfWeek(2).weekday(), Some(2));
        assert_eq!(Period::Total.weekday(), None);
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_at_its_first_existing_time() {
        // Havana springs forward from 00:00 to 01:00 on 2026-03-08 (UTC-5 to UTC-4).
        let havana: Tz = "America/Havana".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(at(start_of_day(day, havana)), "2026-03-08T05:00:00+00:00");
        assert_eq!(local_date(start_of_day(day, havana), havana), day);
        assert_eq!(
            local_date(start_of_day(day, havana) - 1, havana),
            day.pred_opt().unwrap()
        );
    }

    #[test]
    fn ordinals_sort_like_periods() {
        for granularity in [
            Granularity::Day,
            Granularity::Week,
            Granularity::Month,
            Granularity::DayOfWeek,
        ] {
            let periods = periods_in(
                micros("2026-12-01T00:00:00Z"),
                micros("2027-03-01T00:00:00Z"),
                Tz::UTC,
                granularity,
            );
            assert!(periods.len() > 1);
            for pair in periods.windows(2) {
                assert!(pair[0] < pair[1]);
                assert!(pair[0].ordinal() < pair[1].ordinal(), "{pair:?}");
            }
        }
        assert_eq!(weekday_name(0), "MONDAY");
        assert_eq!(weekday_name(6), "SUNDAY");
    }

    #[test]
    fn labels_have_the_documented_shapes() {
        let at = "2026-11-21T12:00:00Z";
        assert_eq!(label(at, Tz::UTC, Granularity::Day), "2026-11-21");
        assert_eq!(label(at, Tz::UTC, Granularity::Week), "2026-W47");
        assert_eq!(label(at, Tz::UTC, Granularity::Month), "2026-11");
        assert_eq!(label(at, Tz::UTC, Granularity::DayOfWeek), "SATURDAY");
        assert_eq!(label(at, Tz::UTC, Granularity::Total), "TOTAL");
        assert_eq!(
            label("2026-03-02T00:00:00Z", Tz::UTC, Granularity::Week),
            "2026-W10"
        );
    }

    #[test]
    fn the_zone_decides_the_day() {
        // 23:30 UTC is already the next day in Paris (UTC+1 in winter) ...
        let at = "2026-03-03T23:30:00Z";
        assert_eq!(label(at, Tz::UTC, Granularity::Day), "2026-03-03");
        assert_eq!(label(at, paris(), Granularity::Day), "2026-03-04");
        assert_eq!(label(at, paris(), Granularity::DayOfWeek), "WEDNESDAY");
        // ... and still the previous day in New York.
        let new_york: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            label("2026-03-04T03:00:00Z", new_york, Granularity::Day),
            "2026-03-03"
        );
        // Half-hour and quarter-hour offsets.
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            label("2026-03-03T18:29:59Z", kolkata, Granularity::Day),
            "2026-03-03"
        );
        assert_eq!(
            label("2026-03-03T18:30:00Z", kolkata, Granularity::Day),
            "2026-03-04"
        );
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(
            label("2026-03-03T18:15:00Z", kathmandu, Granularity::Day),
            "2026-03-04"
        );
    }

    #[test]
    fn spring_forward_day_is_23_hours_long() {
        // Paris moves from UTC+1 to UTC+2 at 01:00 UTC on 2026-03-29.
        let zone = paris();
        assert_eq!(
            label("2026-03-28T22:59:59Z", zone, Granularity::Day),
            "2026-03-28"
        );
        assert_eq!(
            label("2026-03-28T23:00:00Z", zone, Granularity::Day),
            "2026-03-29"
        );
        // 2026-03-29 local ends at 22:00 UTC, 23 hours after it began.
        assert_eq!(
            label("2026-03-29T21:59:59Z", zone, Granularity::Day),
            "2026-03-29"
        );
        assert_eq!(
            label("2026-03-29T22:00:00Z", zone, Granularity::Day),
            "2026-03-30"
        );
        assert_eq!(
            labels(
                "2026-03-28T23:00:00Z",
                "2026-03-29T22:00:00Z",
                zone,
                Granularity::Day
            ),
            vec!["2026-03-29"]
        );
    }

    #[test]
    fn fall_back_day_is_25_hours_long() {
        // Paris moves from UTC+2 to UTC+1 at 01:00 UTC on 2026-10-25.
        let zone = paris();
        assert_eq!(
            label("2026-10-24T21:59:59Z", zone, Granularity::Day),
            "2026-10-24"
        );
        assert_eq!(
            label("2026-10-24T22:00:00Z", zone, Granularity::Day),
            "2026-10-25"
        );
        // Both 02:30 local times of the repeated hour belong to the same day.
        assert_eq!(
            label("2026-10-25T00:30:00Z", zone, Granularity::Day),
            "2026-10-25"
        );
        assert_eq!(
            label("2026-10-25T01:30:00Z", zone, Granularity::Day),
            "2026-10-25"
        );
        // The day ends 25 hours after it began.
        assert_eq!(
            label("2026-10-25T22:59:59Z", zone, Granularity::Day),
            "2026-10-25"
        );
        assert_eq!(
            label("2026-10-25T23:00:00Z", zone, Granularity::Day),
            "2026-10-26"
        );
        assert_eq!(
            labels(
                "2026-10-24T22:00:00Z",
                "2026-10-25T23:00:00Z",
                zone,
                Granularity::Day
            ),
            vec!["2026-10-25"]
        );
    }

    #[test]
    fn iso_weeks_cross_year_ends() {
        let utc = Tz::UTC;
        // 2026-12-31 is a Thursday: ISO week 53 of 2026, and so is 2027-01-03 (Sunday).
        assert_eq!(
            label("2026-12-31T12:00:00Z", utc, Granularity::Week),
            "2026-W53"
        );
        assert_eq!(
            label("2027-01-03T12:00:00Z", utc, Granularity::Week),
            "2026-W53"
        );
        assert_eq!(
            label("2027-01-04T00:00:00Z", utc, Granularity::Week),
            "2027-W01"
        );
        // 2024-12-30 (Monday) already belongs to week 1 of 2025.
        assert_eq!(
            label("2024-12-30T00:00:00Z", utc, Granularity::Week),
            "2025-W01"
        );
        assert_eq!(
            label("2024-12-29T23:59:59Z", utc, Granularity::Week),
            "2024-W52"
        );
        // The zone moves an instant across the week boundary.
        assert_eq!(
            label("2027-01-03T23:30:00Z", paris(), Granularity::Week),
            "2027-W01"
        );
        assert_eq!(
            labels(
                "2026-12-28T00:00:00Z",
                "2027-01-12T00:00:00Z",
                utc,
                Granularity::Week
            ),
            vec!["2026-W53", "2027-W01", "2027-W02"]
        );
    }

    #[test]
    fn months_and_years_roll_over() {
        let zone = paris();
        assert_eq!(
            label("2026-12-31T23:00:00Z", zone, Granularity::Month),
            "2027-01"
        );
        assert_eq!(
            label("2026-12-31T22:59:59Z", zone, Granularity::Month),
            "2026-12"
        );
        assert_eq!(
            labels(
                "2026-11-15T00:00:00Z",
                "2027-02-01T00:00:00Z",
                Tz::UTC,
                Granularity::Month
            ),
            vec!["2026-11", "2026-12", "2027-01"]
        );
    }

    #[test]
    fn periods_cover_the_range_with_an_exclusive_end() {
        let utc = Tz::UTC;
        assert_eq!(
            labels(
                "2026-03-02T00:00:00Z",
                "2026-03-05T00:00:00Z",
                utc,
                Granularity::Day
            ),
            vec!["2026-03-02", "2026-03-03", "2026-03-04"]
        );
        assert_eq!(
            labels(
                "2026-03-02T10:00:00Z",
                "2026-03-05T00:00:01Z",
                utc,
                Granularity::Day
            ),
            vec!["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
        );
        assert!(periods_in(5, 5, utc, Granularity::Day).is_empty());
        assert_eq!(
            labels(
                "2026-03-02T00:00:00Z",
                "2026-03-02T00:00:01Z",
                utc,
                Granularity::Total
            ),
            vec!["TOTAL"]
        );
    }

    #[test]
    fn days_of_week_are_those_in_the_range_monday_first() {
        let utc = Tz::UTC;
        // Saturday to Monday.
        assert_eq!(
            labels(
                "2026-03-07T00:00:00Z",
                "2026-03-10T00:00:00Z",
                utc,
                Granularity::DayOfWeek
            ),
            vec!["MONDAY", "SATURDAY", "SUNDAY"]
        );
        assert_eq!(
            periods_in(
                micros("2026-01-01T00:00:00Z"),
                micros("2027-01-01T00:00:00Z"),
                utc,
                Granularity::DayOfWeek
            )
            .len(),
            7
        );
        assert!(Period::DayOfWeek(0) < Period::DayOfWeek(6));
    }
}
