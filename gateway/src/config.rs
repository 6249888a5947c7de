//! The gateway's configuration: defaults, then a TOML file, then `SWITCHBOARD_GATEWAY_*`
//! environment variables, then command-line flags.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use switchboard_server_kit::LogConfig;
use switchboard_server_kit::idempotency::RequestLogConfig;

/// Prefix of the environment variables that configure the gateway, e.g.
/// `SWITCHBOARD_GATEWAY_UPSTREAMS__ROUTING_URL`.
pub const ENV_PREFIX: &str = "SWITCHBOARD_GATEWAY_";

/// Everything the gateway needs to run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Address clients connect to.
    pub listen: SocketAddr,
    /// Address of the internal listener, which serves only
    /// `switchboard.directory.internal.v1` to other services (signed service identities);
    /// never expose it to clients.
    pub internal_listen: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint; none to serve no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// The directory database: `sqlite://PATH`, `sqlite::memory:` or `postgres://…`.
    pub database_url: String,
    /// Secret shared with the services to sign caller identities; at least 16 bytes.
    pub identity_secret: String,
    /// Where the services that own the public API packages listen.
    pub upstreams: Upstreams,
    /// How callers prove who they are.
    pub auth: AuthConfig,
    /// Deadline, in milliseconds, for a unary call whose client sets none. Streaming calls
    /// are exempt: they are meant to stay open.
    pub default_deadline_ms: u64,
    /// Logging.
    pub log: LogConfig,
    /// The gateway's certificate; when set, clients connect over TLS. Leave it unset when
    /// a load balancer in front terminates TLS.
    pub tls: Option<TlsConfig>,
    /// How long answers to `request_id`s are kept and how often older ones are deleted
    /// (`[request_log]`).
    pub request_log: RequestLogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            internal_listen: SocketAddr::from(([127, 0, 0, 1], 50055)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9051))),
            database_url: "sqlite://switchboard-data/gateway.db".to_owned(),
            identity_secret: String::new(),
            upstreams: Upstreams::default(),
            auth: AuthConfig::default(),
            default_deadline_ms: 30_000,
            log: LogConfig::default(),
            tls: None,
            request_log: RequestLogConfig::default(),
        }
    }
}

/// Base URLs of the services behind the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct Upstreams {
    /// routing-svc, owner of `switchboard.routing.v1`.
    pub routing_url: String,
    /// conversation-svc, owner of `switchboard.conversation.v1`.
    pub conversation_url: String,
    /// reporting-svc, owner of `switchboard.reporting.v1`.
    pub reporting_url: String,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams {
            routing_url: "http://127.0.0.1:50061".to_owned(),
            conversation_url: "http://127.0.0.1:50062".to_owned(),
            reporting_url: "http://127.0.0.1:50063".to_owned(),
        }
    }
}

/// Verification of bearer tokens (JWT). API keys need no configuration: they live in the
/// directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens, for development; none to refuse HS256.
    pub hs256_secret: Option<String>,
    /// Public keys for RS256 and EdDSA tokens, chosen by the token's `kid` when present.
    pub public_keys: Vec<PublicKey>,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Platform operators, who may call only `PlatformService`. Each key is kept as a hash
    /// here, so that the configuration is no secret.
    pub operators: Vec<OperatorKey>,
    /// How long, in milliseconds, verified credentials and the directory facts of a call
    /// (user, API key, tenant ancestry and settings) are kept in memory; 0 reads the
    /// directory on every call. This gateway's own directory writes apply at once; writes
    /// through another replica apply here within this time.
    pub cache_ttl_ms: u64,
    /// Entries each of those caches holds at most.
    pub cache_capacity: u64,
}

impl AuthConfig {
    /// `cache_ttl_ms` as a duration.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            hs256_secret: None,
            public_keys: Vec::new(),
            issuer: "switchboard".to_owned(),
            audience: "switchboard".to_owned(),
            leeway_seconds: 30,
            operators: Vec::new(),
            cache_ttl_ms: crate::store::DEFAULT_CACHE_TTL.as_millis() as u64,
            cache_capacity: crate::store::DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// A platform operator's key, sent as `x-api-key: sbo_…`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OperatorKey {
    /// Who holds the key, for logs and the audit log (`operator:<name>`).
    pub name: String,
    /// Lowercase hex SHA-256 of the whole key (`switchboard admin operator-key` prints it).
    pub sha256: String,
}

/// The certificate the gateway presents to clients.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain in PEM, or `file:/path/to/tls.crt`.
    pub cert: String,
    /// Private key in PEM, or `file:/path/to/tls.key`.
    pub key: String,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never in logs.
        f.debug_struct("TlsConfig")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Reads a PEM value given inline or as `file:/path`; `what` names it in errors.
pub(crate) fn read_pem(what: &str, value: &str) -> Result<String, GatewayError> {
    match value.strip_prefix("file:") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| GatewayError::Config(format!("cannot read {what} from {path}: {err}"))),
        None => Ok(value.to_owned()),
    }
}

/// A public key that verifies bearer tokens of an identity provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The key id tokens name in their `kid` header; none to try the key on tokens
    /// without a matching `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The signature algorithm.
    pub algorithm: KeyAlgorithm,
    /// The key in PEM, or `file:/path/to/key.pem`.
    pub pem: String,
}

/// Signature algorithms accepted with public keys.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// Ed25519.
    EdDSA,
}
