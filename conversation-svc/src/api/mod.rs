//! The gRPC services: validate the request, convert it, apply domain rules and store
//! changes, convert the answer. One file per service.

mod config_service;
mod conversation;
mod convert;
mod expiry;
mod internal;
mod ongoing;
mod stream;
mod supervision;
mod supervisor;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use switchboard_proto::conversation::v1::ConversationView;
use switchboard_server_kit::idempotency::{self, Fingerprint, RequestKey};
use switchboard_server_kit::{Identity, PrincipalKind, Role, fields, identity_of, page};
use tokio_util::sync::CancellationToken;

pub use config_service::ConfigApi;
pub use conversation::ConversationApi;
pub use expiry::{Swept, close_due_wrap_ups};
pub use internal::InternalApi;
pub use supervisor::SupervisorApi;

use crate::agent_queues::AgentQueues;
use crate::directory::Directory;
use crate::domain::access::Viewer;
use crate::domain::tenancy::{self, ReachRefusal, Scope};
use crate::error::{Error, Result};
use crate::outbox::Dispatcher;
use crate::routing::Routing;
use crate::store::{Committed, Mutation, Store};
use crate::wrap_up::Sweeper;

/// What every service implementation shares.
#[derive(Debug)]
pub struct Context {
    /// The database.
    pub store: Store,
    /// routing-svc.
    pub routing: Routing,
    /// The gateway's directory: which tenants descend from which.
    pub directory: Directory,
    /// The outbox dispatcher, woken after commits that add commands.
    pub outbox: Dispatcher,
    /// The wrap-up time limit sweeper, woken when a conversation gets a deadline.
    pub wrap_up: Sweeper,
    /// Cancelled at shutdown; ends server streams.
    pub stop: CancellationToken,
    /// How long a stream may stay silent before it sends a heartbeat.
    pub heartbeat: Duration,
    /// The queues each agent serves, from routing-svc.
    pub agent_queues: AgentQueues,
}

impl Context {
    /// The caller with what deciding visibility needs: for an agent who does not see the
    /// whole tenant, the queues it serves (none while routing-svc cannot tell).
    async fn caller(&self, identity: Identity) -> Result<Caller> {
        if sees_all(&identity) {
            return Ok(Caller::seeing_all(identity));
        }
        let queues = self
            .agent_queues
            .of(&identity.tenant_id, &identity.principal_id)
            .await;
        Ok(Caller { identity, queues })
    }

    /// Wakes the outbox when a commit added commands.
    fn dispatch(&self, committed: &Committed) {
        if !committed.commands.is_empty() {
            self.outbox.wake();
        }
    }

    /// The answer recorded for this request of the caller, outside any transaction: lets a
    /// retry be answered before other services are called again. The same `request_id`
    /// with another request is INVALID_ARGUMENT.
    async fn replay<R: prost::Message + Default>(
        &self,
        identity: &Identity,
        method: &str,
        rid: &RequestId,
    ) -> Result<Option<R>> {
        let caller = idempotency::caller_of(identity);
        self.store.replay(rid.key(identity, &caller, method)).await
    }

    /// Starts the mutation `method` of the caller for `request_id` (AIP-155): the answer
    /// recorded when the same request was already applied, a fresh transaction otherwise,
    /// INVALID_ARGUMENT when the `request_id` was used for another request.
    async fn begin_mutation<'a, R: prost::Message + Default>(
        &'a self,
        identity: &'a Identity,
        method: &'a str,
        rid: &'a RequestId,
    ) -> Result<Begun<'a, R>> {
        let caller = idempotency::caller_of(identity);
        let mut m = self.store.begin().await?;
        if let Some(response) = m.replay(rid.key(identity, &caller, method)).await? {
            return Ok(Begun::Replayed(response));
        }
        Ok(Begun::Fresh(Box::new(Tx {
            m,
            identity,
            caller,
            method,
            rid,
            ctx: self,
        })))
    }

    /// The identity a call acts with when its request names `tenant_id` (ConversationService
    /// reads and UnassignConversation): the caller's own when it names nothing or the
    /// caller's tenant; for a supervisor or administrator naming a descendant of its tenant,
    /// the caller acting in that tenant, where its roles let it see every conversation.
    /// PERMISSION_DENIED for other callers naming another tenant, whatever tenant it is;
    /// NOT_FOUND for a tenant out of reach, known or not; UNAVAILABLE when the directory
    /// cannot tell.
    async fn acting_in(&self, caller: Caller, tenant_id: &str) -> Result<Caller> {
        let named = optional_uuid("tenant_id", tenant_id)?.unwrap_or_default();
        let oversees = conversation::moves::oversees(&caller);
        let child = match tenancy::scope(&caller.tenant_id, &named, oversees) {
            Ok(Scope::Own) => return Ok(caller),
            Ok(Scope::Other(child)) => child,
            Err(refusal) => return Err(reach_error(refusal, &named)),
        };
        let ancestors = self.directory.ancestry(child).await?;
        tenancy::check_descendant(&caller.tenant_id, &ancestors)
            .map_err(|refusal| reach_error(refusal, child))?;
        // Nothing of the caller's own tenant's settings carries over to the child.
        Ok(Caller::seeing_all(Identity {
            tenant_id: child.to_owned(),
            tenant_ancestry: ancestors.to_vec(),
            enabled_supervisor_actions: Vec::new(),
            time_zone: String::new(),
            reopen_window_secs: 0,
            ..caller.identity
        }))
    }
}

/// A mutation's validated `request_id` with the fingerprint of the request carrying it.
struct RequestId {
    id: String,
    fingerprint: Fingerprint,
}

impl RequestId {
    /// The request log key of this request by `identity` (whose [`idempotency::caller_of`]
    /// is `caller`) to `method`.
    fn key<'a>(
        &'a self,
        identity: &'a Identity,
        caller: &'a str,
        method: &'a str,
    ) -> RequestKey<'a> {
        RequestKey {
            tenant_id: &identity.tenant_id,
            caller,
            method,
            request_id: &self.id,
            fingerprint: self.fingerprint,
        }
    }
}

/// How a mutation starts, from [`Context::begin_mutation`].
enum Begun<'a, R> {
    /// The request was applied before; this is the answer recorded then.
    Replayed(R),
    /// The request is new; apply it in this transaction (boxed: a transaction with its
    /// pending events is much larger than a recorded answer).
    Fresh(Box<Tx<'a>>),
}

/// The write transaction of one mutation request. Committing records the answer under the
/// request's key, so a retry gets the same answer, and wakes the outbox for new commands.
struct Tx<'a> {
    m: Mutation,
    identity: &'a Identity,
    caller: String,
    method: &'a str,
    rid: &'a RequestId,
    ctx: &'a Context,
}

impl Tx<'_> {
    /// Commits the change with `response` as the request's answer.
    async fn commit<R: prost::Message>(self, response: &R) -> Result<()> {
        let key = self.rid.key(self.identity, &self.caller, self.method);
        let committed = self.m.commit(Some(key), response).await?;
        self.ctx.dispatch(&committed);
        Ok(())
    }
}

impl Deref for Tx<'_> {
    type Target = Mutation;

    fn deref(&self) -> &Mutation {
        &self.m
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Mutation {
        &mut self.m
    }
}

/// Shared service state.
pub type Shared = Arc<Context>;

/// The verified caller of a public RPC, which must belong to a tenant.
fn caller<T>(request: &tonic::Request<T>) -> Result<Identity> {
    let identity = identity_of(request)
        .map_err(|status| Error::Unauthenticated(status.message().to_owned()))?;
    if identity.tenant_id.is_empty() {
        return Err(Error::Unauthenticated(
            "the caller identity names no tenant".to_owned(),
        ));
    }
    Ok(identity)
}

/// The verified caller of a public RPC, who must hold one of `roles` for `action`.
fn authorized<T>(request: &tonic::Request<T>, roles: &[Role], action: &str) -> Result<Identity> {
    let identity = caller(request)?;
    require_any(&identity, roles, action)?;
    Ok(identity)
}

/// The verified caller of an internal RPC, which must be a Switchboard service.
fn service_caller<T>(request: &tonic::Request<T>) -> Result<Identity> {
    let identity = identity_of(request)
        .map_err(|status| Error::Unauthenticated(status.message().to_owned()))?;
    if identity.principal_kind != PrincipalKind::Service || !identity.has_role(Role::Service) {
        return Err(Error::RoleRequired(
            "internal calls are for Switchboard services only".to_owned(),
        ));
    }
    Ok(identity)
}

fn role_names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| match r {
            Role::Agent => "AGENT",
            Role::Supervisor => "SUPERVISOR",
            Role::Administrator => "ADMINISTRATOR",
            Role::Analyst => "ANALYST",
            Role::Bot => "BOT",
            Role::Service => "SERVICE",
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// PERMISSION_DENIED unless the caller holds one of `roles`.
fn require_any(identity: &Identity, roles: &[Role], action: &str) -> Result<()> {
    if identity.has_any_role(roles) {
        Ok(())
    } else {
        Err(Error::RoleRequired(format!(
            "{action} needs the role {}",
            role_names(roles)
        )))
    }
}

/// Roles that may read conversations at all.
const READER_ROLES: [Role; 4] = [
    Role::Agent,
    Role::Supervisor,
    Role::Administrator,
    Role::Bot,
];

/// Whether `identity` sees every conversation of its tenant: supervisors, administrators
/// and bots do; agents only some.
fn sees_all(identity: &Identity) -> bool {
    identity.has_any_role(&[Role::Supervisor, Role::Administrator, Role::Bot])
}

/// The caller of a public RPC with what visibility depends on besides its identity; reads
/// as the [`Identity`] it wraps.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    identity: Identity,
    /// The queues an agent serves; empty (and unused) for a caller who sees all.
    queues: Arc<[String]>,
}

impl Caller {
    /// A caller who sees the whole tenant (a supervisor, administrator or bot), whose
    /// queues do not matter.
    fn seeing_all(identity: Identity) -> Caller {
        debug_assert!(sees_all(&identity));
        Caller {
            identity,
            queues: Arc::from([]),
        }
    }
}

impl Deref for Caller {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.identity
    }
}

/// How the caller sees conversations: supervisors, administrators and bots see all of
/// their tenant, agents what they take part in and the OPEN ones of their queues.
fn viewer(caller: &Caller) -> Viewer<'_> {
    Viewer {
        user_id: &caller.principal_id,
        sees_all: sees_all(&caller.identity),
        queues: &caller.queues,
    }
}

/// The error of a named tenant the caller does not reach.
fn reach_error(refusal: ReachRefusal, tenant_id: &str) -> Error {
    match refusal {
        ReachRefusal::RoleRequired => Error::RoleRequired(refusal.to_string()),
        ReachRefusal::NotFound => Error::NotFound(format!("tenant {tenant_id} not found")),
    }
}

/// The view a read asks for; UNSPECIFIED means `default`.
fn view_field(value: i32, default: ConversationView) -> Result<ConversationView> {
    match ConversationView::try_from(value) {
        Ok(ConversationView::Unspecified) => Ok(default),
        Ok(view) => Ok(view),
        Err(_) => Err(Error::invalid("view", "is not a known view")),
    }
}

/// A required UUID field, normalised to its lowercase hyphenated form.
fn uuid_field(field: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    uuid::Uuid::parse_str(value)
        .map(|id| id.to_string())
        .map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// An optional UUID field: `None` when empty.
fn optional_uuid(field: &str, value: &str) -> Result<Option<String>> {
    if value.is_empty() {
        Ok(None)
    } else {
        uuid_field(field, value).map(Some)
    }
}

/// The mandatory `request_id` of the mutation `request`, with the request's fingerprint.
fn request_id<M: prost::Message>(value: &str, request: &M) -> Result<RequestId> {
    Ok(RequestId {
        id: uuid_field("request_id", value)?,
        fingerprint: Fingerprint::of(request),
    })
}

/// A text field of `min..=max` characters (not bytes); `min` 1 means required and not
/// blank. Text is plain: control characters other than newline and tab are refused.
fn text_field(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    fields::plain_text(value).map_err(|why| Error::invalid(field, why))?;
    let len = value.chars().count();
    if min > 0 && value.trim().is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if len < min {
        return Err(Error::invalid(
            field,
            format!("must have at least {min} characters"),
        ));
    }
    if len > max {
        return Err(Error::invalid(
            field,
            format!("must have at most {max} characters"),
        ));
    }
    Ok(())
}

/// The page size of a list request: 0 means the default, larger than the maximum is clamped.
fn page_size(value: i32) -> Result<i64> {
    page::LIST
        .size(value)
        .map_err(|description| Error::invalid("page_size", description))
}

/// Cuts `rows`, read with one row more than `limit`, to `limit` and returns the token of
/// the next page, made from the last row kept; empty on the last page.
fn next_page<T>(rows: &mut Vec<T>, limit: i64, token_of: impl FnOnce(&T) -> String) -> String {
    if rows.len() as i64 <= limit {
        return String::new();
    }
    rows.truncate(limit as usize);
    rows.last().map(token_of).unwrap_or_default()
}

/// Page tokens: opaque to clients, the position after which the next page starts.
mod token {
    use super::*;

    const BAD: &str = "is not a token returned by a previous call";

    pub(super) fn encode(parts: &[&str]) -> String {
        URL_SAFE_NO_PAD.encode(parts.join("\n"))
    }

    pub(super) fn decode(value: &str, parts: usize) -> Result<Option<Vec<String>>> {
        if value.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| Error::invalid("page_token", BAD))?;
        let text = String::from_utf8(bytes).map_err(|_| Error::invalid("page_token", BAD))?;
        let split: Vec<String> = text.split('\n').map(str::to_owned).collect();
        if split.len() != parts {
            return Err(Error::invalid("page_token", BAD));
        }
        Ok(Some(split))
    }

    /// A token holding one number (an ordinal or a sequence).
    pub(super) fn encode_int(value: i64) -> String {
        encode(&[&value.to_string()])
    }

    pub(super) fn decode_int(value: &str) -> Result<i64> {
        match decode(value, 1)? {
            None => Ok(0),
            Some(parts) => parts[0]
                .parse()
                .ok()
                .filter(|n: &i64| *n >= 0)
                .ok_or_else(|| Error::invalid("page_token", BAD)),
        }
    }

    pub(super) fn decode_time_id(value: &str) -> Result<Option<(i64, String)>> {
        match decode(value, 2)? {
            None => Ok(None),
            Some(parts) => {
                let time = parts[0]
                    .parse()
                    .map_err(|_| Error::invalid("page_token", BAD))?;
                Ok(Some((time, parts[1].clone())))
            }
        }
    }

    pub(super) fn decode_pair(value: &str) -> Result<Option<(String, String)>> {
        Ok(decode(value, 2)?.map(|mut parts| {
            let second = parts.pop().unwrap_or_default();
            let first = parts.pop().unwrap_or_default();
            (first, second)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(1).unwrap(), 1);
        assert_eq!(page_size(500).unwrap(), 500);
        assert_eq!(page_size(501).unwrap(), 500);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn next_page_cuts_the_extra_row() {
        let mut last_page = vec![1, 2];
        assert_eq!(next_page(&mut last_page, 2, |n| n.to_string()), "");
        assert_eq!(last_page, [1, 2]);
        let mut more = vec![1, 2, 3];
        assert_eq!(next_page(&mut more, 2, |n| n.to_string()), "2");
        assert_eq!(more, [1, 2]);
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        assert_eq!(token::decode_int(&token::encode_int(42)).unwrap(), 42);
        assert_eq!(token::decode_int("").unwrap(), 0);
        assert!(token::decode_int("!!").is_err());
        assert!(token::decode_int(&token::encode(&["a", "b"])).is_err());
        let t = token::encode(&["17", "id-1"]);
        assert_eq!(
            token::decode_time_id(&t).unwrap(),
            Some((17, "id-1".to_owned()))
        );
        assert_eq!(
            token::decode_pair(&token::encode(&["Name", "id"])).unwrap(),
            Some(("Name".to_owned(), "id".to_owned()))
        );
    }

    #[test]
    fn uuids_are_normalised() {
        let upper = "6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B";
        assert_eq!(
            uuid_field("x", upper).unwrap(),
            "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
        );
        assert!(uuid_field("x", "").is_err());
        assert!(uuid_field("x", "42").is_err());
        assert_eq!(optional_uuid("x", "").unwrap(), None);
    }

    #[test]
    fn text_lengths_count_characters() {
        assert!(text_field("t", "ééé", 1, 3).is_ok());
        assert!(text_field("t", "éééé", 1, 3).is_err());
        assert!(text_field("t", "   ", 1, 3).is_err());
        assert!(text_field("t", "", 0, 3).is_ok());
    }
}
