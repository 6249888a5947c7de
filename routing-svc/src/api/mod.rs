//! The gRPC services: validate → convert → call the store → convert.

pub mod agent;
pub mod internal;
pub mod queue;

use prost::Message;
use switchboard_server_kit::idempotency::{self, Fingerprint};
use switchboard_server_kit::identity::{Identity, PrincipalKind, Role, identity_of};
use switchboard_server_kit::{fields, mask_pans};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::{Store, Tx};

/// Longest display name or free-text reason accepted.
pub(crate) const MAX_TEXT: usize = 200;

/// The verified caller of a request.
pub(crate) fn caller<T>(request: &tonic::Request<T>) -> Result<Identity> {
    identity_of(request).map_err(|status| Error::Unauthenticated(status.message().to_owned()))
}

/// The caller's tenant, for public RPCs: users and API keys act in their own tenant.
pub(crate) fn caller_tenant(identity: &Identity) -> Result<String> {
    if identity.principal_kind == PrincipalKind::Service {
        return Err(Error::RoleRequired(
            "services call the internal API, not the public one".to_owned(),
        ));
    }
    Uuid::parse_str(&identity.tenant_id)
        .map(|id| id.to_string())
        .map_err(|_| Error::Unauthenticated("the caller identity names no valid tenant".to_owned()))
}

/// The role names as clients see them.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Agent => "AGENT",
        Role::Supervisor => "SUPERVISOR",
        Role::Administrator => "ADMINISTRATOR",
        Role::Analyst => "ANALYST",
        Role::Bot => "BOT",
        Role::Service => "SERVICE",
    }
}

/// PERMISSION_DENIED unless the caller holds one of `roles`.
pub(crate) fn require_any(identity: &Identity, roles: &[Role], rpc: &str) -> Result<()> {
    if identity.has_any_role(roles) {
        return Ok(());
    }
    let names: Vec<&str> = roles.iter().map(|r| role_name(*r)).collect();
    Err(Error::RoleRequired(format!(
        "{rpc} needs the {} role",
        names.join(" or ")
    )))
}

/// The caller of a public RPC and its tenant, after checking it holds one of `roles`.
pub(crate) fn checked_caller<T>(
    request: &tonic::Request<T>,
    roles: &[Role],
    rpc: &str,
) -> Result<(Identity, String)> {
    let identity = caller(request)?;
    require_any(&identity, roles, rpc)?;
    let tenant_id = caller_tenant(&identity)?;
    Ok((identity, tenant_id))
}

/// A required message field.
pub(crate) fn required<T>(field: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::invalid(field, "is required"))
}

/// What makes a mutation idempotent (AIP-155): its tenant, its caller, its RPC and the
/// caller's `request_id`, with a fingerprint of the request. A repeat of the same request
/// replays the first response; the same key with another body is refused.
pub(crate) struct RequestKey {
    tenant_id: String,
    caller: String,
    method: &'static str,
    request_id: String,
    fingerprint: Fingerprint,
}

impl RequestKey {
    /// The key of `request` to `method` by `identity` in the tenant; `request_id` must be
    /// a UUID.
    pub(crate) fn parse<M: Message>(
        identity: &Identity,
        tenant_id: &str,
        method: &'static str,
        request_id: &str,
        request: &M,
    ) -> Result<Self> {
        Ok(RequestKey {
            tenant_id: tenant_id.to_owned(),
            caller: idempotency::caller_of(identity),
            method,
            request_id: parse_id("request_id", request_id)?,
            fingerprint: Fingerprint::of(request),
        })
    }

    /// The key as the request log reads it.
    pub(crate) fn as_log_key(&self) -> idempotency::RequestKey<'_> {
        idempotency::RequestKey {
            tenant_id: &self.tenant_id,
            caller: &self.caller,
            method: self.method,
            request_id: &self.request_id,
            fingerprint: self.fingerprint,
        }
    }
}

/// How a mutation starts: with a fresh transaction, or with the response recorded when
/// the same request was applied before.
pub(crate) enum Begun<M> {
    /// The request was applied before; answer this again and change nothing.
    Replayed(M),
    /// A new request: apply it in this transaction, then [`commit_mutation`].
    Fresh(Tx),
}

/// Begins a mutation under `key`: a write transaction, or the recorded response. The same
/// key with a different request is INVALID_ARGUMENT on `request_id`.
pub(crate) async fn begin_mutation<M: Message + Default>(
    store: &Store,
    key: &RequestKey,
) -> Result<Begun<M>> {
    let mut tx = store.begin().await?;
    match tx.replay(&key.as_log_key()).await? {
        Some(response) => Ok(Begun::Replayed(response)),
        None => Ok(Begun::Fresh(tx)),
    }
}

/// Records `response` under `key` with the change, for later replays, and commits.
pub(crate) async fn commit_mutation<M: Message>(
    mut tx: Tx,
    key: &RequestKey,
    response: &M,
) -> Result<()> {
    tx.remember(&key.as_log_key(), response).await?;
    tx.commit().await
}

/// A required UUID field, in canonical form.
pub(crate) fn parse_id(field: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    Uuid::parse_str(value)
        .map(|id| id.to_string())
        .map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// An optional UUID field: `None` when empty.
pub(crate) fn optional_id(field: &str, value: &str) -> Result<Option<String>> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_id(field, value).map(Some)
    }
}

/// A required name of 1 to `MAX_TEXT` characters, trimmed, card numbers masked.
pub(crate) fn display_name(field: &str, value: &str) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if trimmed.chars().count() > MAX_TEXT {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_TEXT} characters"),
        ));
    }
    fields::plain_text(trimmed).map_err(|why| Error::invalid(field, why))?;
    Ok(mask_pans(trimmed).into_owned())
}

/// An optional free text of at most `MAX_TEXT` characters, card numbers masked (it is
/// stored, logged and shown to others).
pub(crate) fn short_text(field: &str, value: &str) -> Result<String> {
    if value.chars().count() > MAX_TEXT {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_TEXT} characters"),
        ));
    }
    fields::plain_text(value).map_err(|why| Error::invalid(field, why))?;
    Ok(mask_pans(value.trim()).into_owned())
}

/// The caller's user id as an agent id.
pub(crate) fn caller_agent_id(identity: &Identity) -> Result<String> {
    Uuid::parse_str(&identity.principal_id)
        .map(|id| id.to_string())
        .map_err(|_| {
            Error::RoleRequired("the caller is not a user with an agent profile".to_owned())
        })
}

/// The agent a request is about: the caller when `agent_id` is empty; another agent
/// only for a SUPERVISOR.
pub(crate) fn target_agent(identity: &Identity, agent_id: &str, rpc: &str) -> Result<String> {
    let requested = optional_id("agent_id", agent_id)?;
    let own = caller_agent_id(identity).ok();
    match requested {
        None => caller_agent_id(identity),
        Some(id) if Some(&id) == own.as_ref() => Ok(id),
        Some(id) => {
            if identity.has_role(Role::Supervisor) {
                Ok(id)
            } else {
                Err(Error::RoleRequired(format!(
                    "{rpc} for another agent needs the SUPERVISOR role"
                )))
            }
        }
    }
}

/// Runs an RPC body and turns its error into a status, in one place.
pub(crate) fn respond<T>(
    result: Result<T>,
) -> std::result::Result<tonic::Response<T>, tonic::Status> {
    result
        .map(tonic::Response::new)
        .map_err(|err| err.to_status())
}
