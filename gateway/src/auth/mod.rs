//! Authentication: turns a call's credentials (`authorization: Bearer <JWT>` or
//! `x-api-key`) into the verified [`Identity`] the gateway signs for the services.
//!
//! Tenant, roles and settings always come from the directory, never from the token, and are
//! read on every call, so that deactivating a user, revoking a key or changing a role takes
//! effect at once.

pub mod jwt;

use http::HeaderMap;
use switchboard_server_kit::{Identity, PrincipalKind};
use uuid::Uuid;

use crate::config::AuthConfig;
use crate::domain::api_key;
use crate::domain::directory::{action_name, kit_role};
use crate::error::GatewayError;
use crate::store::Directory;
use jwt::JwtVerifier;

/// Header carrying an API key secret.
pub const API_KEY_HEADER: &str = "x-api-key";

const MISSING: &str =
    "missing credentials: send `authorization: Bearer <token>` or `x-api-key: <key>`";
const BAD_KEY: &str = "invalid api key";
const INACTIVE: &str = "bearer token subject is not an active user";

/// Verifies credentials against the configured token keys and the directory.
#[derive(Debug)]
pub struct Authenticator {
    jwt: JwtVerifier,
    directory: Directory,
}

impl Authenticator {
    /// An authenticator for `config`; fails when a configured key is unusable.
    pub fn new(config: &AuthConfig, directory: Directory) -> Result<Authenticator, GatewayError> {
        Ok(Authenticator {
            jwt: JwtVerifier::new(config)?,
            directory,
        })
    }

    /// The identity behind the credentials in `headers`; UNAUTHENTICATED when they are
    /// missing or do not verify.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, GatewayError> {
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
            return self.user_identity(token).await;
        }
        if let Some(value) = headers.get(API_KEY_HEADER) {
            let secret = value
                .to_str()
                .map_err(|_| GatewayError::Unauthenticated(BAD_KEY.to_owned()))?;
            return self.api_key_identity(secret.trim()).await;
        }
        Err(GatewayError::Unauthenticated(MISSING.to_owned()))
    }

    async fn user_identity(&self, token: &str) -> Result<Identity, GatewayError> {
        let subject = self.jwt.verify(token)?;
        let inactive = || GatewayError::Unauthenticated(INACTIVE.to_owned());
        let user_id = Uuid::try_parse(&subject).map_err(|_| inactive())?;
        let user = self
            .directory
            .user(&user_id.to_string())
            .await?
            .filter(|user| user.active)
            .ok_or_else(inactive)?;
        self.identity(
            user.tenant_id,
            user.id,
            PrincipalKind::User,
            user.display_name,
            &user.roles,
        )
        .await
    }

    async fn api_key_identity(&self, secret: &str) -> Result<Identity, GatewayError> {
        let bad = || GatewayError::Unauthenticated(BAD_KEY.to_owned());
        let id = api_key::parse_secret(secret).ok_or_else(bad)?;
        let key = self
            .directory
            .api_key(&id.to_string())
            .await?
            .filter(|key| api_key::secret_matches(secret, &key.secret_sha256))
            .ok_or_else(bad)?;
        // Said only to a caller holding the whole secret.
        if key.revoked_at.is_some() {
            return Err(GatewayError::Unauthenticated("api key revoked".to_owned()));
        }
        self.identity(
            key.tenant_id,
            key.id,
            PrincipalKind::ApiKey,
            key.display_name,
            &key.roles,
        )
        .await
    }

    async fn identity(
        &self,
        tenant_id: String,
        principal_id: String,
        principal_kind: PrincipalKind,
        display_name: String,
        roles: &[switchboard_proto::directory::v1::Role],
    ) -> Result<Identity, GatewayError> {
        let tenant_ancestry = self.directory.tenant_ancestry(&tenant_id).await?;
        let settings = self.directory.tenant_settings(&tenant_id).await?;
        Ok(Identity {
            tenant_id,
            tenant_ancestry,
            principal_id,
            principal_kind,
            display_name,
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
