//! Authentication: turns a call's credentials (`authorization: Bearer <JWT>` or
//! `x-api-key`) into the verified [`Identity`] the gateway signs for the services.
//!
//! Tenant, roles and settings always come from the directory, never from the token. They
//! are kept for `auth.cache_ttl_ms` (a few seconds) so that a call with a recent credential
//! reads no database; this gateway's own directory writes drop what they change at once, so
//! deactivating a user, revoking a key or changing a role takes effect on its next call
//! (other replicas: within the TTL).
//!
//! Platform operators (`x-api-key: sbo_…`, configured as hashes) are a second kind of
//! caller: they belong to no tenant, so they get no [`Identity`] and nothing signed for the
//! services. A refusal tells the client nothing about which part failed; the precise cause
//! goes to the server log.

pub mod jwt;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use switchboard_server_kit::{Identity, PrincipalKind};
use tracing::info;
use uuid::Uuid;

use crate::config::{AuthConfig, OperatorKey};
use crate::domain::directory::{action_name, kit_role};
use crate::domain::operator;
use crate::error::GatewayError;
use crate::store::Directory;
use crate::store::cache::bounded;
use jwt::JwtVerifier;

/// Header carrying an API key secret.
pub const API_KEY_HEADER: &str = "x-api-key";

const MISSING: &str =
    "missing credentials: send `authorization: Bearer <token>` or `x-api-key: <key>`";
const BAD_KEY: &str = "invalid api key";
const INACTIVE: &str = "bearer token subject is not an active user";
const BAD_OPERATOR_KEY: &str = "invalid operator key";

/// Who a verified call comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A user or API key of a tenant.
    Tenant(Identity),
    /// A platform operator.
    Operator(Operator),
}

impl Caller {
    /// The tenant identity, unless the caller is an operator.
    pub fn into_tenant(self) -> Option<Identity> {
        match self {
            Caller::Tenant(identity) => Some(identity),
            Caller::Operator(_) => None,
        }
    }
}

/// A platform operator, named in the gateway's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// The configured name.
    pub name: String,
}

impl Operator {
    /// How the operator appears as the actor of audit log entries.
    pub fn actor_id(&self) -> String {
        format!("operator:{}", self.name)
    }
}

/// Verifies credentials against the configured token keys, operator keys and the directory.
pub struct Authenticator {
    jwt: JwtVerifier,
    /// Verified bearer tokens by their SHA-256: the subject and `exp`, so that a repeated
    /// token skips the signature check. Kept until `exp` and at most `auth.cache_ttl_ms`;
    /// nothing to invalidate, as a token's claims never change (whether its user may still
    /// sign in is the directory's cached user, which writes invalidate).
    tokens: Option<Cache<[u8; 32], VerifiedToken>>,
    operators: Vec<OperatorKey>,
    directory: Directory,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the cached tokens.
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt)
            .field("operators", &self.operators)
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// A bearer token that verified: its subject and `exp` (seconds since the epoch).
#[derive(Clone, Copy, Debug)]
struct VerifiedToken {
    user_id: Uuid,
    expires_at: u64,
}

impl Authenticator {
    /// An authenticator for `config`; fails when a configured key is unusable.
    pub fn new(config: &AuthConfig, directory: Directory) -> Result<Authenticator, GatewayError> {
        Ok(Authenticator {
            jwt: JwtVerifier::new(config)?,
            tokens: bounded(config.cache_ttl(), config.cache_capacity),
            operators: operator_keys(&config.operators)?,
            directory,
        })
    }

    /// Who sent the credentials in `headers`; UNAUTHENTICATED when they are missing or do
    /// not verify, with the cause logged here and never told to the client.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        let result = self.verify(headers).await;
        if let Err(GatewayError::Unauthenticated(cause)) = &result {
            info!(
                credential = credential_kind(headers),
                cause = %cause,
                "credentials refused"
            );
        }
        result
    }

    async fn verify(&self, headers: &HeaderMap) -> Result<Caller, GatewayError> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    GatewayError::Unauthenticated(
                        "the authorization header must read `Bearer <token>`".to_owned(),
                    )
                })?;
            return self.user_identity(token).await.map(Caller::Tenant);
        }
        if let Some(value) = headers.get(API_KEY_HEADER) {
            let secret = value
                .to_str()
                .map_err(|_| GatewayError::Unauthenticated(BAD_KEY.to_owned()))?
                .trim();
            if operator::is_operator_secret(secret) {
                return self.operator(secret).map(Caller::Operator);
            }
            return self.api_key_identity(secret).await.map(Caller::Tenant);
        }
        Err(GatewayError::Unauthenticated(MISSING.to_owned()))
    }

    fn operator(&self, secret: &str) -> Result<Operator, GatewayError> {
        let configured = self
            .operators
            .iter()
            .map(|o| (o.name.as_str(), o.sha256.as_str()));
        operator::find(secret, configured)
            .map(|name| Operator {
                name: name.to_owned(),
            })
            .ok_or_else(|| GatewayError::Unauthenticated(BAD_OPERATOR_KEY.to_owned()))
    }

    async fn user_identity(&self, token: &str) -> Result<Identity, GatewayError> {
        let user_id = self.token_subject(token)?;
        let user = self
            .directory
            .cached_user(&user_id.to_string())
            .await?
            .filter(|user| user.active)
            .ok_or_else(|| GatewayError::Unauthenticated(INACTIVE.to_owned()))?;
        self.identity(
            &user.tenant_id,
            &user.id,
            PrincipalKind::User,
            &user.display_name,
            &user.roles,
        )
        .await
    }

    /// The user a bearer token names, verified now or within the token cache's freshness.
    fn token_subject(&self, token: &str) -> Result<Uuid, GatewayError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.tokens.as_ref().and_then(|tokens| tokens.get(&hash))
            && now < hit.expires_at
        {
            return Ok(hit.user_id);
        }
        let verified = self.jwt.verify_claims(token)?;
        let user_id = Uuid::try_parse(&verified.subject)
            .map_err(|_| GatewayError::Unauthenticated(INACTIVE.to_owned()))?;
        if let Some(tokens) = &self.tokens
            && now < verified.expires_at
        {
            let expires_at = verified.expires_at;
            tokens.insert(
                hash,
                VerifiedToken {
                    user_id,
                    expires_at,
                },
            );
        }
        Ok(user_id)
    }

    async fn api_key_identity(&self, secret: &str) -> Result<Identity, GatewayError> {
        let key = self
            .directory
            .cached_api_key(secret)
            .await?
            .ok_or_else(|| GatewayError::Unauthenticated(BAD_KEY.to_owned()))?;
        if key.revoked_at.is_some() {
            return Err(GatewayError::Unauthenticated("api key revoked".to_owned()));
        }
        self.identity(
            &key.tenant_id,
            &key.id,
            PrincipalKind::ApiKey,
            &key.display_name,
            &key.roles,
        )
        .await
    }

    async fn identity(
        &self,
        tenant_id: &str,
        principal_id: &str,
        principal_kind: PrincipalKind,
        display_name: &str,
        roles: &[switchboard_proto::directory::v1::Role],
    ) -> Result<Identity, GatewayError> {
        let tenant = self.directory.cached_tenant(tenant_id).await?;
        let settings = &tenant.settings;
        Ok(Identity {
            tenant_id: tenant_id.to_owned(),
            tenant_ancestry: tenant.ancestry.clone(),
            principal_id: principal_id.to_owned(),
            principal_kind,
            display_name: display_name.to_owned(),
            roles: roles.iter().copied().filter_map(kit_role).collect(),
            enabled_supervisor_actions: settings
                .enabled_supervisor_actions
                .iter()
                .copied()
                .filter_map(action_name)
                .map(str::to_owned)
                .collect(),
            time_zone: settings.time_zone.clone(),
            reopen_window_secs: settings.reopen_window.as_secs() as i64,
        })
    }
}

/// Which kind of credential a call carried, for the log of a refusal.
fn credential_kind(headers: &HeaderMap) -> &'static str {
    if headers.contains_key(http::header::AUTHORIZATION) {
        "bearer"
    } else if let Some(value) = headers.get(API_KEY_HEADER) {
        let operator = value
            .to_str()
            .is_ok_and(|v| operator::is_operator_secret(v.trim()));
        if operator { "operator_key" } else { "api_key" }
    } else {
        "none"
    }
}

/// The configured operator keys, checked: a mistyped hash would lock every operator out
/// without a word, so it stops the gateway instead.
fn operator_keys(configured: &[OperatorKey]) -> Result<Vec<OperatorKey>, GatewayError> {
    let mut keys: Vec<OperatorKey> = Vec::with_capacity(configured.len());
    for (index, key) in configured.iter().enumerate() {
        let name = key.name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(GatewayError::Config(format!(
                "auth.operators[{index}].name must be a non-empty name"
            )));
        }
        let sha256 = key.sha256.trim().to_ascii_lowercase();
        if !operator::valid_hash(&sha256) {
            return Err(GatewayError::Config(format!(
                "auth.operators[{index}].sha256 must be 64 hex digits (the SHA-256 of the key)"
            )));
        }
        if keys.iter().any(|k| k.name == name) {
            return Err(GatewayError::Config(format!(
                "auth.operators names `{name}` twice"
            )));
        }
        keys.push(OperatorKey {
            name: name.to_owned(),
            sha256,
        });
    }
    Ok(keys)
}
