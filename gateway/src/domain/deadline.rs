//! The `grpc-timeout` header: `1 to 8 digits` then a unit (`H`, `M`, `S`, `m`, `u`, `n`), as
//! in the gRPC over HTTP/2 protocol.

use std::time::Duration;

const MAX_DIGITS: usize = 8;
const MAX_VALUE: u64 = 99_999_999;

/// Parses a `grpc-timeout` value; `None` when malformed.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > MAX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats `timeout` as a `grpc-timeout` value in the finest unit that fits in 8 digits,
/// rounding down so that a service never gets more time than the caller gave.
pub fn format_grpc_timeout(timeout: Duration) -> String {
    let nanos = timeout.as_nanos();
    let units: [(u128, &str); 6] = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ];
    for (size, unit) in units {
        let amount = nanos / size;
        if amount <= u128::from(MAX_VALUE) {
            return format!("{amount}{unit}");
        }
    }
    format!("{MAX_VALUE}H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
    }

    #[test]
    fn refuses_malformed_values() {
        for value in ["", "m", "10", "10x", "-1m", "123456789m", "1.5S", " 1S"] {
            assert_eq!(parse_grpc_timeout(value), None, "{value:?}");
        }
    }

    #[test]
    fn formats_in_the_finest_unit_that_fits_and_round_trips() {
        assert_eq!(format_grpc_timeout(Duration::from_nanos(5)), "5n");
        assert_eq!(format_grpc_timeout(Duration::from_millis(200)), "200000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(30)), "30000000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(
            format_grpc_timeout(Duration::from_secs(10 * 365 * 86_400)),
            "5256000M"
        );
        for timeout in [
            Duration::from_millis(1),
            Duration::from_millis(29_999),
            Duration::from_secs(3600),
        ] {
            let text = format_grpc_timeout(timeout);
            let back = parse_grpc_timeout(&text).unwrap();
            assert!(
                back <= timeout && timeout - back < Duration::from_millis(1),
                "{text}"
            );
        }
    }
}
