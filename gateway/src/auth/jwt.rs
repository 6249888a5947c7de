//! Bearer tokens: JWTs signed with HS256 (a shared secret, for development), RS256 or EdDSA
//! (an identity provider's public keys).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, KeyAlgorithm, PublicKey};
use crate::error::GatewayError;

/// A verification key and when to use it.
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies bearer tokens against the configured keys, issuer and audience.
pub struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    issuer: String,
    audience: String,
    leeway_seconds: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The `sub` claim.
    pub subject: String,
    /// The `exp` claim: seconds since the epoch.
    pub expires_at: u64,
}

/// Why a token was refused, for the server log (clients get one message for every
/// refusal); none reveals key material.
fn refusal(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "bearer token expired",
        ErrorKind::ImmatureSignature => "bearer token not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "bearer token issuer not accepted",
        ErrorKind::InvalidAudience => "bearer token audience not accepted",
        ErrorKind::InvalidSignature => "bearer token signature does not verify",
        ErrorKind::MissingRequiredClaim(_) => {
            "bearer token lacks a required claim (exp, sub, iss, aud)"
        }
        ErrorKind::InvalidAlgorithm => "bearer token algorithm not accepted",
        _ => "malformed bearer token",
    }
}

fn unauthenticated(message: &str) -> GatewayError {
    GatewayError::Unauthenticated(message.to_owned())
}

impl JwtVerifier {
    /// Builds the verifier; fails on a key that cannot be read or parsed.
    pub fn new(config: &AuthConfig) -> Result<JwtVerifier, GatewayError> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.hs256_secret {
            if secret.len() < 16 {
                return Err(GatewayError::Config(
                    "auth.hs256_secret must be at least 16 bytes".to_owned(),
                ));
            }
            keys.push(VerifyingKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        for (index, public) in config.public_keys.iter().enumerate() {
            keys.push(load_public_key(index, public)?);
        }
        Ok(JwtVerifier {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_seconds: config.leeway_seconds,
        })
    }

    /// Verifies `token` and returns its subject.
    pub fn verify(&self, token: &str) -> Result<String, GatewayError> {
        self.verify_claims(token).map(|verified| verified.subject)
    }

    /// Verifies `token` and returns its subject and expiry.
    pub fn verify_claims(&self, token: &str) -> Result<Verified, GatewayError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| unauthenticated(refusal(err.kind())))?;
        let same_algorithm = || self.keys.iter().filter(|k| k.algorithm == header.alg);
        // A token naming a key id is checked with that key; keys without an id are the
        // fallback for tokens whose id no key claims.
        let mut candidates: Vec<&VerifyingKey> = match &header.kid {
            Some(kid) => same_algorithm()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => Vec::new(),
        };
        if candidates.is_empty() {
            candidates = same_algorithm().filter(|k| k.kid.is_none()).collect();
        }
        if candidates.is_empty() {
            return Err(unauthenticated(
                "bearer token algorithm or key id not accepted",
            ));
        }

        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);

        let mut last = ErrorKind::InvalidSignature;
        for candidate in candidates {
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => {
                    return Ok(Verified {
                        subject: data.claims.sub,
                        expires_at: data.claims.exp,
                    });
                }
                Err(err) => {
                    last = err.into_kind();
                    // Only a signature mismatch is worth trying the next key for.
                    if !matches!(last, ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(unauthenticated(refusal(&last)))
    }
}

fn load_public_key(index: usize, public: &PublicKey) -> Result<VerifyingKey, GatewayError> {
    let name = public
        .kid
        .clone()
        .unwrap_or_else(|| format!("auth.public_keys[{index}]"));
    let pem = crate::config::read_pem(&format!("public key {name}"), &public.pem)?;
    let (algorithm, key) = match public.algorithm {
        KeyAlgorithm::RS256 => (Algorithm::RS256, DecodingKey::from_rsa_pem(pem.as_bytes())),
        KeyAlgorithm::EdDSA => (Algorithm::EdDSA, DecodingKey::from_ed_pem(pem.as_bytes())),
    };
    let key = key.map_err(|err| {
        GatewayError::Config(format!("public key {name} is not a valid PEM key: {err}"))
    })?;
    Ok(VerifyingKey {
        kid: public.kid.clone(),
        algorithm,
        key,
    })
}

#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// Signs an HS256 token for `user_id` valid for `ttl`, as a development identity provider
/// would; the gateway accepts it when configured with the same `auth.hs256_secret`,
/// `issuer` and `audience`.
pub fn mint_hs256_token(
    secret: &str,
    issuer: &str,
    audience: &str,
    user_id: &str,
    ttl: Duration,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let claims = MintClaims {
        sub: user_id,
        iss: issuer,
        aud: audience,
        iat: now,
        exp: now.saturating_add(ttl.as_secs().max(1)),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing with an in-memory secret does not fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "dev-secret-of-enough-length";
    const RSA_PRIVATE: &str = include_str!("../../tests/data/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../../tests/data/rsa_public.pem");
    const ED_PRIVATE: &str = include_str!("../../tests/data/ed25519_private.pem");
    const ED_PUBLIC: &str = include_str!("../../tests/data/ed25519_public.pem");
    const OTHER_ED_PRIVATE: &str = include_str!("../../tests/data/ed25519_other_private.pem");

    fn config() -> AuthConfig {
        AuthConfig {
            hs256_secret: Some(SECRET.to_owned()),
            public_keys: vec![
                PublicKey {
                    kid: Some("rsa-1".to_owned()),
                    algorithm: KeyAlgorithm::RS256,
                    pem: RSA_PUBLIC.to_owned(),
                },
                PublicKey {
                    kid: None,
                    algorithm: KeyAlgorithm::EdDSA,
                    pem: ED_PUBLIC.to_owned(),
                },
            ],
            ..AuthConfig::default()
        }
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn claims(offset_exp: i64) -> serde_json::Value {
        serde_json::json!({
            "sub": "user-1",
            "iss": "switchboard",
            "aud": "switchboard",
            "iat": now(),
            "exp": now() + offset_exp,
        })
    }

    fn sign(
        alg: Algorithm,
        kid: Option<&str>,
        key: &EncodingKey,
        claims: &serde_json::Value,
    ) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs(claims: &serde_json::Value) -> String {
        sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            claims,
        )
    }

    fn refused(token: &str) -> String {
        match JwtVerifier::new(&config()).unwrap().verify(token) {
            Err(GatewayError::Unauthenticated(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn good_tokens_of_every_algorithm_are_accepted() {
        let verifier = JwtVerifier::new(&config()).unwrap();
        assert_eq!(verifier.verify(&hs(&claims(60))).unwrap(), "user-1");
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        assert_eq!(
            verifier
                .verify(&sign(Algorithm::RS256, Some("rsa-1"), &rsa, &claims(60)))
                .unwrap(),
            "user-1"
        );
        let ed = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        assert_eq!(
            verifier
                .verify(&sign(Algorithm::EdDSA, None, &ed, &claims(60)))
                .unwrap(),
            "user-1"
        );
        // An unknown kid falls back to keys configured without one.
        assert_eq!(
            verifier
                .verify(&sign(Algorithm::EdDSA, Some("rotated"), &ed, &claims(60)))
                .unwrap(),
            "user-1"
        );
    }

    #[test]
    fn minted_tokens_verify() {
        let token = mint_hs256_token(
            SECRET,
            "switchboard",
            "switchboard",
            "u-9",
            Duration::from_secs(60),
        );
        assert_eq!(
            JwtVerifier::new(&config()).unwrap().verify(&token).unwrap(),
            "u-9"
        );
    }

    #[test]
    fn expired_tokens_are_refused_beyond_the_leeway() {
        assert_eq!(refused(&hs(&claims(-120))), "bearer token expired");
        // Within the 30 s leeway.
        assert!(
            JwtVerifier::new(&config())
                .unwrap()
                .verify(&hs(&claims(-10)))
                .is_ok()
        );
    }

    #[test]
    fn future_tokens_are_refused() {
        let mut c = claims(600);
        c["nbf"] = serde_json::json!(now() + 300);
        assert_eq!(refused(&hs(&c)), "bearer token not valid yet (nbf)");
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let mut c = claims(60);
        c["iss"] = serde_json::json!("someone-else");
        assert_eq!(refused(&hs(&c)), "bearer token issuer not accepted");
        let mut c = claims(60);
        c["aud"] = serde_json::json!("another-api");
        assert_eq!(refused(&hs(&c)), "bearer token audience not accepted");
        let mut c = claims(60);
        c.as_object_mut().unwrap().remove("aud");
        assert!(refused(&hs(&c)).contains("required claim"));
    }

    #[test]
    fn bad_signatures_are_refused() {
        let wrong = sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(b"another-secret-of-enough-length"),
            &claims(60),
        );
        assert_eq!(refused(&wrong), "bearer token signature does not verify");
        let other = EncodingKey::from_ed_pem(OTHER_ED_PRIVATE.as_bytes()).unwrap();
        assert_eq!(
            refused(&sign(Algorithm::EdDSA, None, &other, &claims(60))),
            "bearer token signature does not verify"
        );
        // A tampered payload.
        let token = hs(&claims(60));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = hs(
            &serde_json::json!({"sub": "admin", "iss": "switchboard", "aud": "switchboard", "exp": now() + 60}),
        );
        parts[1] = forged.split('.').nth(1).unwrap();
        assert_eq!(
            refused(&parts.join(".")),
            "bearer token signature does not verify"
        );
    }

    #[test]
    fn algorithms_without_a_key_are_refused() {
        let verifier = JwtVerifier::new(&AuthConfig::default()).unwrap();
        assert!(matches!(
            verifier.verify(&hs(&claims(60))),
            Err(GatewayError::Unauthenticated(_))
        ));
        // An RS256 token with a kid that no key has, and no kid-less RS256 key.
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        assert_eq!(
            refused(&sign(Algorithm::RS256, Some("rsa-2"), &rsa, &claims(60))),
            "bearer token algorithm or key id not accepted"
        );
        assert_eq!(refused("not-a-jwt"), "malformed bearer token");
    }

    #[test]
    fn bad_configuration_is_refused() {
        let mut short = config();
        short.hs256_secret = Some("short".to_owned());
        assert!(JwtVerifier::new(&short).is_err());
        let mut garbage = config();
        garbage.public_keys[0].pem = "not a pem".to_owned();
        assert!(JwtVerifier::new(&garbage).is_err());
        let mut missing = config();
        missing.public_keys[0].pem = "file:/nonexistent/key.pem".to_owned();
        assert!(JwtVerifier::new(&missing).is_err());
    }

    #[test]
    fn keys_load_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsa.pem");
        std::fs::write(&path, RSA_PUBLIC).unwrap();
        let mut from_file = config();
        from_file.public_keys[0].pem = format!("file:{}", path.display());
        let verifier = JwtVerifier::new(&from_file).unwrap();
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        assert!(
            verifier
                .verify(&sign(Algorithm::RS256, Some("rsa-1"), &rsa, &claims(60)))
                .is_ok()
        );
    }
}
