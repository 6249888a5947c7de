//! API key secrets: `sbk_<key id, 32 hex digits>_<random part>`.
//!
//! The key id inside the secret lets the gateway find the key with one indexed lookup; only
//! the SHA-256 of the whole secret is stored, so a leaked database reveals no usable key.

use rand::Rng as _;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Every secret starts with this, so that leaked keys are easy to scan for.
pub const SECRET_PREFIX: &str = "sbk_";
/// Shortest accepted random part.
pub const MIN_RANDOM_LEN: usize = 32;
/// Longest accepted random part.
pub const MAX_RANDOM_LEN: usize = 128;
/// Length of the random part of generated secrets.
const GENERATED_RANDOM_LEN: usize = 40;
/// How many leading characters of a secret are kept to recognise the key.
const DISPLAY_PREFIX_LEN: usize = 12;

/// Builds the secret of key `id` around `random`; see [`parse_secret`] for what is valid.
pub fn format_secret(id: Uuid, random: &str) -> String {
    format!("{SECRET_PREFIX}{}_{random}", id.simple())
}

/// A fresh secret for key `id`.
pub fn generate_secret(id: Uuid) -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(GENERATED_RANDOM_LEN)
        .map(char::from)
        .collect();
    format_secret(id, &random)
}

/// The key id of a well-formed secret; `None` when the secret does not have the form
/// `sbk_<32 hex digits>_<32 to 128 letters and digits>`.
pub fn parse_secret(secret: &str) -> Option<Uuid> {
    let rest = secret.strip_prefix(SECRET_PREFIX)?;
    let (id, random) = rest.split_once('_')?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if !(MIN_RANDOM_LEN..=MAX_RANDOM_LEN).contains(&random.len())
        || !random.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Uuid::try_parse(id).ok()
}

/// The stored form of a secret: lowercase hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    use std::fmt::Write as _;
    // Every API key call hashes its secret (the cache key), so no string per byte.
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(secret.as_bytes()) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Whether `secret` hashes to `stored_hash`, compared in constant time.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let computed = hash_secret(secret);
    computed.len() == stored_hash.len()
        && computed
            .bytes()
            .zip(stored_hash.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The first characters of a secret, shown in listings so that a person can tell keys apart.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(DISPLAY_PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back_to_their_id() {
        let id = Uuid::new_v4();
        let secret = generate_secret(id);
        assert_eq!(parse_secret(&secret), Some(id));
        assert_ne!(generate_secret(id), secret);
        assert!(secret.starts_with("sbk_"));
        assert_eq!(display_prefix(&secret).len(), 12);
    }

    #[test]
    fn malformed_secrets_are_refused() {
        let id = Uuid::new_v4();
        let random = "a".repeat(32);
        assert_eq!(parse_secret(&format_secret(id, &random)), Some(id));
        for bad in [
            String::new(),
            format!("sbk_{}", id.simple()),
            format!("sbk_{}_{}", id.simple(), "a".repeat(31)),
            format!("sbk_{}_{}", id.simple(), "a".repeat(129)),
            format!("sbk_{}_{}-{}", id.simple(), "a".repeat(32), "b"),
            format!("sbk_{}_{random}", id.hyphenated()),
            format!("sbx_{}_{random}", id.simple()),
            format!("sbk_{}_{random}", &id.simple().to_string()[..31]),
            format!("sbk_{}g_{random}", &id.simple().to_string()[..31]),
        ] {
            assert_eq!(parse_secret(&bad), None, "{bad}");
        }
    }

    #[test]
    fn only_the_same_secret_matches_its_hash() {
        let secret = generate_secret(Uuid::new_v4());
        let stored = hash_secret(&secret);
        assert_eq!(stored.len(), 64);
        assert!(secret_matches(&secret, &stored));
        assert!(!secret_matches(&format!("{secret}x"), &stored));
        assert!(!secret_matches(&secret, &stored[..63]));
    }
}
