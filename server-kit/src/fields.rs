//! Checks of request fields that every service shares: times and durations must be what
//! the protobuf spec allows and what the field can mean, so that a year-294247 timestamp or
//! a one-trillion-second timeout is refused with INVALID_ARGUMENT instead of saturating or
//! overflowing somewhere deeper.

use std::time::Duration;

/// 0001-01-01T00:00:00Z, the earliest time a `google.protobuf.Timestamp` may hold.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the latest.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// A request timestamp in microseconds since the epoch, or why it is refused.
pub fn timestamp_micros(ts: &prost_types::Timestamp) -> Result<i64, &'static str> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err("nanos must be between 0 and 999,999,999");
    }
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds) {
        return Err("must be between 0001-01-01 and 9999-12-31");
    }
    Ok(ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000)
}

/// Whether `text` is plain text as the product means it: no control characters other than
/// newline and tab. Returns why not, naming the first offending character.
pub fn plain_text(text: &str) -> Result<(), String> {
    match text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        None => Ok(()),
        Some(c) => Err(format!(
            "must not contain control characters (found U+{:04X}); only newline and tab are allowed",
            u32::from(c)
        )),
    }
}

/// A request duration in microseconds, between zero and `max`, or why it is refused.
pub fn duration_micros(d: &prost_types::Duration, max: Duration) -> Result<i64, String> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err("must not be negative".to_owned());
    }
    if d.nanos >= 1_000_000_000 {
        return Err("nanos must be below 1,000,000,000".to_owned());
    }
    let max_secs = max.as_secs() as i64;
    if d.seconds > max_secs || (d.seconds == max_secs && d.nanos as u32 > max.subsec_nanos()) {
        return Err(format!("must be at most {}", human(max)));
    }
    Ok(d.seconds * 1_000_000 + i64::from(d.nanos) / 1_000)
}

/// A field mask path as the field's proto name: `lowerCamelCase`, as JSON clients may send
/// it (`displayName`), becomes `lower_camel_case`; a snake_case path is left as it is.
pub fn snake_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    fn dur(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn timestamps_within_the_spec_are_read() {
        assert_eq!(timestamp_micros(&ts(1, 500_000_000)), Ok(1_500_000));
        assert_eq!(timestamp_micros(&ts(-1, 0)), Ok(-1_000_000));
        assert!(timestamp_micros(&ts(MAX_TIMESTAMP_SECONDS, 999_999_999)).is_ok());
        assert!(timestamp_micros(&ts(MIN_TIMESTAMP_SECONDS, 0)).is_ok());
    }

    #[test]
    fn timestamps_outside_the_spec_are_refused() {
        // Year 294247, negative nanos, a second's worth of nanos.
        assert!(timestamp_micros(&ts(9_223_372_036_854, 0)).is_err());
        assert!(timestamp_micros(&ts(MAX_TIMESTAMP_SECONDS + 1, 0)).is_err());
        assert!(timestamp_micros(&ts(MIN_TIMESTAMP_SECONDS - 1, 0)).is_err());
        assert!(timestamp_micros(&ts(0, -1)).is_err());
        assert!(timestamp_micros(&ts(0, 1_000_000_000)).is_err());
        assert!(timestamp_micros(&ts(i64::MIN, 0)).is_err());
    }

    #[test]
    fn plain_text_allows_newline_and_tab_only() {
        assert!(plain_text("two\nlines\tand a tab").is_ok());
        assert_eq!(
            plain_text("bell\u{7}"),
            Err(
                "must not contain control characters (found U+0007); only newline and tab are allowed"
                    .to_owned()
            )
        );
        assert!(plain_text("cr\r").is_err());
        assert!(plain_text("nul\0").is_err());
        assert!(plain_text("del\u{7f}").is_err());
    }

    #[test]
    fn mask_paths_in_lower_camel_case_become_snake_case() {
        assert_eq!(snake_case_path("displayName"), "display_name");
        assert_eq!(snake_case_path("teamIds"), "team_ids");
        assert_eq!(snake_case_path("display_name"), "display_name");
        assert_eq!(snake_case_path("active"), "active");
    }

    #[test]
    fn durations_are_bounded_by_what_the_field_means() {
        let day = Duration::from_secs(86_400);
        assert_eq!(duration_micros(&dur(30, 0), day), Ok(30_000_000));
        assert_eq!(duration_micros(&dur(86_400, 0), day), Ok(86_400_000_000));
        assert_eq!(
            duration_micros(&dur(1_000_000_000_000, 0), day),
            Err("must be at most 1 day".to_owned())
        );
        assert!(duration_micros(&dur(86_400, 1), day).is_err());
        assert!(duration_micros(&dur(-1, 0), day).is_err());
        assert!(duration_micros(&dur(0, -5), day).is_err());
        assert!(duration_micros(&dur(1, 1_000_000_000), day).is_err());
        assert!(duration_micros(&dur(i64::MAX, 0), day).is_err());
    }
}
