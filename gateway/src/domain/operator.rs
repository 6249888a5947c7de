//! Platform operator keys: `sbo_<32 to 128 letters and digits>`, configured as SHA-256 hashes.
//! The prefix differs from tenant API keys (`sbk_`) so that the gateway knows which kind of
//! credential it holds before any lookup, and so that a leaked key is recognisable as one
//! that reaches no tenant's data.

use rand::Rng as _;
use rand::distr::Alphanumeric;

use super::api_key::{MAX_RANDOM_LEN, MIN_RANDOM_LEN, hash_secret, secret_matches};

/// Every operator key starts with it.
pub const OPERATOR_PREFIX: &str = "sbo_";
const GENERATED_RANDOM_LEN: usize = 48;

/// Whether `secret` is meant as an operator key (it may still be malformed or unknown).
pub fn is_operator_secret(secret: &str) -> bool {
    secret.starts_with(OPERATOR_PREFIX)
}

/// A fresh operator key.
pub fn generate() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(GENERATED_RANDOM_LEN)
        .map(char::from)
        .collect();
    format!("{OPERATOR_PREFIX}{random}")
}

/// The hash to configure for `secret`.
pub fn hash(secret: &str) -> String {
    hash_secret(secret)
}

/// Whether `secret` is well formed.
pub fn well_formed(secret: &str) -> bool {
    secret.strip_prefix(OPERATOR_PREFIX).is_some_and(|random| {
        (MIN_RANDOM_LEN..=MAX_RANDOM_LEN).contains(&random.len())
            && random.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Whether `sha256` can be a configured hash: 64 lowercase hex digits.
pub fn valid_hash(sha256: &str) -> bool {
    sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The name of the operator whose hash `secret` matches, among `(name, sha256)` pairs. Every
/// hash is compared (in constant time), so the time taken does not tell which one matched.
pub fn find<'a>(
    secret: &str,
    operators: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<&'a str> {
    if !well_formed(secret) {
        return None;
    }
    operators.into_iter().fold(None, |found, (name, sha256)| {
        if secret_matches(secret, sha256) {
            found.or(Some(name))
        } else {
            found
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(configured: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
        configured.iter().map(|(n, h)| (n.as_str(), h.as_str()))
    }

    #[test]
    fn generated_keys_are_well_formed_and_match_only_their_hash() {
        let key = generate();
        assert!(is_operator_secret(&key) && well_formed(&key));
        let other = generate();
        let configured = vec![
            ("ops".to_owned(), hash(&key)),
            ("other".to_owned(), hash(&other)),
        ];
        assert_eq!(find(&key, pairs(&configured)), Some("ops"));
        assert_eq!(find(&other, pairs(&configured)), Some("other"));
        assert_eq!(find(&format!("{key}x"), pairs(&configured)), None);
        assert!(valid_hash(&hash(&key)));
        assert!(!valid_hash(&hash(&key).to_uppercase()));
        assert!(!valid_hash("abc"));
    }

    #[test]
    fn malformed_keys_match_nothing() {
        let short = format!("{OPERATOR_PREFIX}{}", "a".repeat(31));
        let odd = format!("{OPERATOR_PREFIX}{}-", "a".repeat(40));
        for bad in ["", "sbo_", short.as_str(), odd.as_str(), "sbk_x"] {
            assert!(!well_formed(bad), "{bad}");
            let configured = vec![("ops".to_owned(), hash(bad))];
            assert_eq!(find(bad, pairs(&configured)), None, "{bad}");
        }
    }
}
