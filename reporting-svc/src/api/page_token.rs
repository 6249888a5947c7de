//! Page sizes and opaque page tokens of the reports (AIP-158).
//!
//! A token carries the key of the last row served and a fingerprint of the request that
//! issued it, so that a token replayed with another filter, granularity or report is
//! refused instead of silently paging through different rows. It is not secret: the
//! tenant comes from the caller's identity, never from the token.

use switchboard_server_kit::page::REPORT;

use crate::domain::page::RowKey;
use crate::error::Error;

/// Tokens of another layout are refused as malformed.
const VERSION: &str = "r1";

/// The page size to serve: 0 means 100, more than 1000 means 1000, negative is refused.
pub fn page_size(requested: i32) -> Result<usize, Error> {
    let size = REPORT
        .size(requested)
        .map_err(|description| Error::invalid("page_size", description))?;
    Ok(usize::try_from(size).unwrap_or(usize::MAX))
}

/// A stable 64-bit FNV-1a hash of a request's parts. Stable across processes and builds
/// (unlike `std`'s hasher), so a token issued by one replica is honoured by another.
#[derive(Clone, Copy, Debug)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// An empty fingerprint.
    pub fn new() -> Fingerprint {
        Fingerprint::default()
    }

    /// Adds one part; its length goes in first, so parts never run into each other.
    pub fn add(&mut self, part: &str) -> &mut Fingerprint {
        let length = (part.len() as u64).to_le_bytes();
        for byte in length.iter().chain(part.as_bytes()) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    /// The hash of the parts added so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The token of the page that follows the row keyed `after`, for the request whose
/// fingerprint is `fingerprint`.
pub fn encode(fingerprint: u64, after: &RowKey) -> String {
    let text = format!(
        "{VERSION}:{fingerprint:016x}:{}:{}",
        after.period, after.agent_id
    );
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// The key after which the requested page starts: `None` for an empty token (the first
/// page). A token that is not one of ours, or that another request issued, is refused
/// with INVALID_ARGUMENT naming `page_token`.
pub fn decode(token: &str, fingerprint: u64) -> Result<Option<RowKey>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || {
        Error::invalid(
            "page_token",
            "is not a page token of this report: pass the previous response's \
             next_page_token unchanged, or leave it empty for the first page",
        )
    };
    let text = unhex(token).ok_or_else(malformed)?;
    let mut parts = text.splitn(4, ':');
    let (Some(VERSION), Some(issued_for), Some(period), Some(agent_id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let issued_for = u64::from_str_radix(issued_for, 16).map_err(|_| malformed())?;
    let period = period.parse::<i64>().map_err(|_| malformed())?;
    if issued_for != fingerprint {
        return Err(Error::invalid(
            "page_token",
            "was issued for a request with another filter or granularity: repeat the first \
             page's filter and granularity, or leave page_token empty to start over",
        ));
    }
    Ok(Some(RowKey {
        period,
        agent_id: agent_id.to_owned(),
    }))
}

fn unhex(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&token[at..at + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_and_description(result: Result<Option<RowKey>, Error>) -> (String, String) {
        match result {
            Err(Error::InvalidArgument { field, description }) => (field, description),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn tokens_round_trip_for_the_request_that_issued_them() {
        let key = RowKey {
            period: 739_000,
            agent_id: "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa".to_owned(),
        };
        let token = encode(42, &key);
        assert_eq!(decode(&token, 42).unwrap(), Some(key));
        let no_agent = RowKey {
            period: -3,
            agent_id: String::new(),
        };
        assert_eq!(decode(&encode(7, &no_agent), 7).unwrap(), Some(no_agent));
        assert_eq!(decode("", 42).unwrap(), None);
    }

    #[test]
    fn foreign_and_malformed_tokens_are_refused() {
        let token = encode(42, &RowKey::default());
        let (field, description) = field_and_description(decode(&token, 43));
        assert_eq!(field, "page_token");
        assert!(description.contains("another filter"), "{description}");
        for bad in ["zz", "abc", "not a token", "ü", &token[..token.len() - 2]] {
            let (field, description) = field_and_description(decode(bad, 42));
            assert_eq!(field, "page_token");
            assert!(
                description.contains("not a page token"),
                "{bad}: {description}"
            );
        }
        let other_version: String = "r0:000000000000002a:0:"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(decode(&other_version, 42).is_err());
    }

    #[test]
    fn page_sizes_follow_the_contract() {
        assert_eq!(page_size(0).unwrap(), 100);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(5_000).unwrap(), 1000);
        assert!(matches!(
            page_size(-1),
            Err(Error::InvalidArgument { field, .. }) if field == "page_size"
        ));
    }

    #[test]
    fn fingerprints_are_stable_and_separate_parts() {
        let of = |parts: &[&str]| {
            let mut fingerprint = Fingerprint::new();
            for part in parts {
                fingerprint.add(part);
            }
            fingerprint.finish()
        };
        assert_eq!(of(&["a", "b"]), of(&["a", "b"]));
        assert_ne!(of(&["ab", ""]), of(&["a", "b"]));
        // FNV-1a of the empty input is its offset basis; pinned so tokens survive releases.
        assert_eq!(Fingerprint::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(of(&["a"]), of(&["a"]));
    }
}
