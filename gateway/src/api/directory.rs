//! `switchboard.directory.v1.DirectoryService`, served by the gateway from its own database
//! (the team RPCs are in `team.rs`).
//!
//! The caller's identity was verified by the gateway's request path and is read from the
//! request extensions; the tenant always comes from it. Objects of other tenants answer
//! NOT_FOUND. Every mutation is idempotent by request_id and writes an audit row in the
//! same transaction.

use switchboard_proto::directory::v1 as pb;
use switchboard_proto::directory::v1::directory_service_server::DirectoryService;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::idempotency::Fingerprint;
use switchboard_server_kit::{Identity, identity_of, parse_uuid, require_request_id};
use tonic::{Request, Response, Status};
use tracing::info;
use uuid::Uuid;

use super::{convert, team};
use crate::domain::directory::{self as rules, FieldError, directory_role};
use crate::domain::page::page_request;
use crate::domain::{api_key, authz, team as team_rules};
use crate::error::GatewayError;
use crate::store::{ApiKeyRecord, Directory, Mutation, TenantRecord, Tx, UserRecord};

const GET_CURRENT_IDENTITY: &str = "/switchboard.directory.v1.DirectoryService/GetCurrentIdentity";
const CREATE_TENANT: &str = "/switchboard.directory.v1.DirectoryService/CreateTenant";
const GET_TENANT: &str = "/switchboard.directory.v1.DirectoryService/GetTenant";
const LIST_TENANTS: &str = "/switchboard.directory.v1.DirectoryService/ListTenants";
const GET_TENANT_SETTINGS: &str = "/switchboard.directory.v1.DirectoryService/GetTenantSettings";
const UPDATE_TENANT_SETTINGS: &str =
    "/switchboard.directory.v1.DirectoryService/UpdateTenantSettings";
const CREATE_USER: &str = "/switchboard.directory.v1.DirectoryService/CreateUser";
const GET_USER: &str = "/switchboard.directory.v1.DirectoryService/GetUser";
const LIST_USERS: &str = "/switchboard.directory.v1.DirectoryService/ListUsers";
const UPDATE_USER: &str = "/switchboard.directory.v1.DirectoryService/UpdateUser";
const CREATE_API_KEY: &str = "/switchboard.directory.v1.DirectoryService/CreateApiKey";
const LIST_API_KEYS: &str = "/switchboard.directory.v1.DirectoryService/ListApiKeys";
const REVOKE_API_KEY: &str = "/switchboard.directory.v1.DirectoryService/RevokeApiKey";
const LIST_AUDIT_LOG_ENTRIES: &str =
    "/switchboard.directory.v1.DirectoryService/ListAuditLogEntries";

/// The DirectoryService implementation.
#[derive(Clone, Debug)]
pub struct DirectoryApi {
    directory: Directory,
}

impl DirectoryApi {
    /// Serves `directory`.
    pub fn new(directory: Directory) -> DirectoryApi {
        DirectoryApi { directory }
    }
}

/// The verified caller, checked again against the authorization table: the directory
/// trusts no one path to have done it.
pub(super) fn caller<T>(request: &Request<T>, method: &str) -> Result<Identity, Status> {
    let identity = identity_of(request)?;
    authz::authorize(method, &identity).map_err(GatewayError::Denied)?;
    Ok(identity)
}

pub(super) fn mutation(
    caller: &Identity,
    method: &'static str,
    request_id: Uuid,
    fingerprint: Fingerprint,
) -> Mutation {
    Mutation {
        tenant_id: caller.tenant_id.clone(),
        actor_id: caller.principal_id.clone(),
        method,
        request_id,
        fingerprint,
    }
}

pub(super) fn required<T>(field: &str, value: Option<T>) -> Result<T, GatewayError> {
    value.ok_or_else(|| FieldError::new(field, "is required").into())
}

pub(super) fn not_found(kind: &'static str, id: impl Into<String>) -> GatewayError {
    GatewayError::NotFound {
        kind,
        id: id.into(),
    }
}

/// Checks that `team_ids` are all teams of `tenant_id` (INVALID_ARGUMENT on `user.team_ids`
/// naming the first that is not) and holds the tenant's teams against deletion until
/// commit, so the memberships written next stay valid.
async fn check_teams(tx: &mut Tx, tenant_id: &str, team_ids: &[String]) -> Result<(), Status> {
    tx.hold_teams(tenant_id).await?;
    let found = tx.teams_among(tenant_id, team_ids).await?;
    team_rules::all_found("user.team_ids", team_ids, &found)?;
    Ok(())
}

/// Whether a tenant with `ancestry` (parent first) is `tenant_id` itself or one of
/// `caller_tenant`'s descendants.
fn within(caller_tenant: &str, tenant_id: &str, ancestry: &[String]) -> bool {
    tenant_id == caller_tenant || ancestry.iter().any(|a| a == caller_tenant)
}

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    async fn get_current_identity(
        &self,
        request: Request<pb::GetCurrentIdentityRequest>,
    ) -> Result<Response<pb::GetCurrentIdentityResponse>, Status> {
        let caller = caller(&request, GET_CURRENT_IDENTITY)?;
        Ok(Response::new(pb::GetCurrentIdentityResponse {
            roles: caller
                .roles
                .iter()
                .copied()
                .filter_map(directory_role)
                .map(i32::from)
                .collect(),
            tenant_id: caller.tenant_id,
            tenant_ancestry: caller.tenant_ancestry,
            principal_id: caller.principal_id,
            display_name: caller.display_name,
        }))
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let caller = caller(&request, CREATE_TENANT)?;
        let req = request.into_inner();
        let request_id = require_request_id(&req.request_id)?;
        let fingerprint = Fingerprint::of(&req);
        let tenant = required("tenant", req.tenant)?;
        let display_name = rules::display_name("tenant.display_name", &tenant.display_name)?;
        let parent = if tenant.parent_tenant_id.is_empty() {
            caller.tenant_id.clone()
        } else {
            parse_uuid("tenant.parent_tenant_id", &tenant.parent_tenant_id)?.to_string()
        };

        let mut tx = self
            .directory
            .begin(mutation(&caller, CREATE_TENANT, request_id, fingerprint))
            .await?;
        if let Some(done) = tx.replay().await? {
            tx.abandon().await?;
            return Ok(Response::new(done));
        }
        let ancestry = tx.tenant_ancestry(&parent).await?;
        if tx.tenant(&parent).await?.is_none() || !within(&caller.tenant_id, &parent, &ancestry) {
            return Err(not_found("tenant", parent).into());
        }
        let record = TenantRecord {
            id: Uuid::new_v4().to_string(),
            parent_tenant_id: Some(parent),
            display_name,
            created_at: now_micros(),
        };
        tx.insert_tenant(&record).await?;
        let id = record.id.clone();
        let response = pb::CreateTenantResponse {
            tenant: Some(convert::tenant(record)),
        };
        tx.finish(&id, &response).await?;
        info!(tenant_id = %id, actor_id = %caller.principal_id, "tenant created");
        Ok(Response::new(response))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::GetTenantResponse>, Status> {
        let caller = caller(&request, GET_TENANT)?;
        let req = request.into_inner();
        let id = if req.tenant_id.is_empty() {
            caller.tenant_id.clone()
        } else {
            parse_uuid("tenant_id", &req.tenant_id)?.to_string()
        };
        let ancestry = self.directory.tenant_ancestry(&id).await?;
        let tenant = self
            .directory
            .tenant(&id)
            .await?
            .filter(|_| within(&caller.tenant_id, &id, &ancestry))
            .ok_or_else(|| not_found("tenant", &id))?;
        Ok(Response::new(pb::GetTenantResponse {
            tenant: Some(convert::tenant(tenant)),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let caller = caller(&request, LIST_TENANTS)?;
        let req = request.into_inner();
        let page = page_request(req.page_size, &req.page_token).map_err(GatewayError::from)?;
        let (tenants, next_page_token) = self
            .directory
            .child_tenants(&caller.tenant_id, &page)
            .await?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(convert::tenant).collect(),
            next_page_token,
        }))
    }

    async fn get_tenant_settings(
        &self,
        request: Request<pb::GetTenantSettingsRequest>,
    ) -> Result<Response<pb::GetTenantSettingsResponse>, Status> {
        let caller = caller(&request, GET_TENANT_SETTINGS)?;
        let settings = self.directory.tenant_settings(&caller.tenant_id).await?;
        Ok(Response::new(pb::GetTenantSettingsResponse {
            settings: Some(convert::settings(settings)),
        }))
    }

    async fn update_tenant_settings(
        &self,
        request: Request<pb::UpdateTenantSettingsRequest>,
    ) -> Result<Response<pb::UpdateTenantSettingsResponse>, Status> {
        let caller = caller(&request, UPDATE_TENANT_SETTINGS)?;
        let req = request.into_inner();
        let request_id = require_request_id(&req.request_id)?;
        let fingerprint = Fingerprint::of(&req);
        let new = required("settings", req.settings)?;
        if !new.tenant_id.is_empty() && new.tenant_id != caller.tenant_id {
            return Err(not_found("tenant", new.tenant_id).into());
        }
        let paths = rules::update_mask(
            req.update_mask.as_ref(),
            &["enabled_supervisor_actions", "reopen_window", "time_zone"],
        )?;
        let actions = paths
            .contains(&"enabled_supervisor_actions")
            .then(|| {
                rules::supervisor_actions(
                    "settings.enabled_supervisor_actions",
                    &new.enabled_supervisor_actions,
                )
            })
            .transpose()?;
        let reopen_window = paths
            .contains(&"reopen_window")
            .then(|| rules::reopen_window("settings.reopen_window", new.reopen_window.as_ref()))
            .transpose()?;
        let time_zone = paths
            .contains(&"time_zone")
            .then(|| rules::time_zone("settings.time_zone", &new.time_zone))
            .transpose()?;

        let mut tx = self
            .directory
            .begin(mutation(
                &caller,
                UPDATE_TENANT_SETTINGS,
                request_id,
                fingerprint,
            ))
            .await?;
        if let Some(done) = tx.replay().await? {
            tx.abandon().await?;
            return Ok(Response::new(done));
        }
        let mut settings = tx.tenant_settings(&caller.tenant_id).await?;
        if let Some(actions) = actions {
            settings.enabled_supervisor_actions = actions;
        }
        if let Some(window) = reopen_window {
            settings.reopen_window = window;
        }
        if let Some(zone) = time_zone {
            settings.time_zone = zone;
        }
        tx.put_settings(&settings).await?;
        let response = pb::UpdateTenantSettingsResponse {
            settings: Some(convert::settings(settings)),
        };
        tx.finish(&caller.tenant_id, &response).await?;
        info!(tenant_id = %caller.tenant_id, actor_id = %caller.principal_id, ?paths, "tenant settings changed");
        Ok(Response::new(response))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = caller(&request, CREATE_USER)?;
        let req = request.into_inner();
        let request_id = require_request_id(&req.request_id)?;
        let fingerprint = Fingerprint::of(&req);
        let user = required("user", req.user)?;
        let team_ids = team_rules::team_ids("user.team_ids", &user.team_ids)?;
        // A parent's administrator may create users of its descendants (for example a child
        // tenant's first administrator); other tenants are NOT_FOUND, checked below.
        let tenant_id = if user.tenant_id.is_empty() {
            caller.tenant_id.clone()
        } else {
            parse_uuid("user.tenant_id", &user.tenant_id)?.to_string()
        };
        let record = UserRecord {
            id: Uuid::new_v4().to_string(),
            tenant_id: tenant_id.clone(),
            display_name: rules::display_name("user.display_name", &user.display_name)?,
            email: rules::email("user.email", &user.email)?,
            roles: rules::roles("user.roles", &user.roles)?,
            // New users can sign in; UpdateUser deactivates them.
            active: true,
            created_at: now_micros(),
        };

        let mut tx = self
            .directory
            .begin(mutation(&caller, CREATE_USER, request_id, fingerprint))
            .await?;
        if let Some(done) = tx.replay().await? {
            tx.abandon().await?;
            return Ok(Response::new(done));
        }
        let descendant = tenant_id != caller.tenant_id;
        if descendant {
            let ancestry = tx.tenant_ancestry(&tenant_id).await?;
            if tx.tenant(&tenant_id).await?.is_none()
                || !within(&caller.tenant_id, &tenant_id, &ancestry)
            {
                return Err(not_found("tenant", tenant_id).into());
            }
        }
        if !team_ids.is_empty() {
            check_teams(&mut tx, &tenant_id, &team_ids).await?;
        }
        tx.insert_user(&record).await?;
        if !team_ids.is_empty() {
            tx.set_user_teams(&record.id, &team_ids).await?;
        }
        let id = record.id.clone();
        let response = pb::CreateUserResponse {
            user: Some(convert::user(record, team_ids)),
        };
        if descendant {
            tx.audit_in(&tenant_id, &id).await?;
        }
        tx.finish(&id, &response).await?;
        info!(user_id = %id, tenant_id = %tenant_id, actor_id = %caller.principal_id, "user created");
        Ok(Response::new(response))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = caller(&request, GET_USER)?;
        let id = parse_uuid("user_id", &request.get_ref().user_id)?.to_string();
        let user = self
            .directory
            .user(&id)
            .await?
            .filter(|u| u.tenant_id == caller.tenant_id)
            .ok_or_else(|| not_found("user", &id))?;
        let user = self.directory.with_team_ids(vec![user]).await?.pop();
        Ok(Response::new(pb::GetUserResponse {
            user: user.map(|(user, team_ids)| convert::user(user, team_ids)),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = caller(&request, LIST_USERS)?;
        let req = request.into_inner();
        let role = match pb::Role::try_from(req.role) {
            Ok(pb::Role::Unspecified) => None,
            Ok(role) => Some(role),
            Err(_) => {
                return Err(GatewayError::from(FieldError::new(
                    "role",
                    format!("{} is not a role", req.role),
                ))
                .into());
            }
        };
        let team_id = if req.team_id.is_empty() {
            None
        } else {
            let id = parse_uuid("team_id", &req.team_id)?.to_string();
            self.directory
                .team(&caller.tenant_id, &id)
                .await?
                .ok_or_else(|| not_found("team", &id))?;
            Some(id)
        };
        let page = page_request(req.page_size, &req.page_token).map_err(GatewayError::from)?;
        let (users, next_page_token) = self
            .directory
            .users(&caller.tenant_id, role, team_id.as_deref(), &page)
            .await?;
        let users = self.directory.with_team_ids(users).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users
                .into_iter()
                .map(|(user, team_ids)| convert::user(user, team_ids))
                .collect(),
            next_page_token,
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let caller = caller(&request, UPDATE_USER)?;
        let req = request.into_inner();
        let request_id = require_request_id(&req.request_id)?;
        let fingerprint = Fingerprint::of(&req);
        let new = required("user", req.user)?;
        let id = parse_uuid("user.id", &new.id)?.to_string();
        let paths = rules::update_mask(
            req.update_mask.as_ref(),
            &["display_name", "roles", "active", "team_ids"],
        )?;
        let display_name = paths
            .contains(&"display_name")
            .then(|| rules::display_name("user.display_name", &new.display_name))
            .transpose()?;
        let roles = paths
            .contains(&"roles")
            .then(|| rules::roles("user.roles", &new.roles))
            .transpose()?;
        let active = paths.contains(&"active").then_some(new.active);
        let team_ids = paths
            .contains(&"team_ids")
            .then(|| team_rules::team_ids("user.team_ids", &new.team_ids))
            .transpose()?;

        let mut tx = self
            .directory
            .begin(mutation(&caller, UPDATE_USER, request_id, fingerprint))
            .await?;
        if let Some(done) = tx.replay().await? {
            tx.abandon().await?;
            return Ok(Response::new(done));
        }
        let mut user = tx
            .user(&id)
            .await?
            .filter(|u| u.tenant_id == caller.tenant_id)
            .ok_or_else(|| not_found("user", &id))?;
        if let Some(name) = display_name {
            user.display_name = name;
        }
        if let Some(roles) = roles {
            user.roles = roles;
        }
        if let Some(active) = active {
            user.active = active;
        }
        let team_ids = match team_ids {
            Some(team_ids) => {
                check_teams(&mut tx, &caller.tenant_id, &team_ids).await?;
                tx.set_user_teams(&id, &team_ids).await?;
                team_ids
            }
            None => tx.user_team_ids(&id).await?,
        };
        tx.update_user(&user).await?;
        let response = pb::UpdateUserResponse {
            user: Some(convert::user(user, team_ids)),
        };
        tx.finish(&id, &response).await?;
        info!(user_id = %id, actor_id = %caller.principal_id, ?paths, "user changed");
        Ok(Response::new(response))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let caller = caller(&request, CREATE_API_KEY)?;
        let req = request.into_inner();
        let request_id = require_request_id(&req.request_id)?;
        let fingerprint = Fingerprint::of(&req);
        let key = required("api_key", req.api_key)?;
        let display_name = rules::display_name("api_key.display_name", &key.display_name)?;
        let roles = rules::roles("api_key.roles", &key.roles)?;

        let mut tx = self
            .directory
            .begin(mutation(&caller, CREATE_API_KEY, request_id, fingerprint))
            .await?;
        if let Some(done) = tx.replay().await? {
            tx.abandon().await?;
            return Ok(Response::new(done));
        }
        let id = Uuid::new_v4();
        let secret = api_key::generate_secret(id);
        let record = ApiKeyRecord {
            id: id.to_string(),
            tenant_id: caller.tenant_id.clone(),
            display_name,
            roles,
            prefix: api_key::display_prefix(&secret),
            secret_sha256: api_key::hash_secret(&secret),
            created_at: now_micros(),
            revoked_at: None,
        };
        tx.insert_api_key(&record).await?;
        // The secret is never stored, not even in the request log: a retry gets the key
        // without it.
        let recorded = pb::CreateApiKeyResponse {
            api_key: Some(convert::api_key(record)),
            secret: String::new(),
        };
        tx.finish(&id.to_string(), &recorded).await?;
        info!(api_key_id = %id, tenant_id = %caller.tenant_id, actor_id = %caller.principal_id, "api key created");
        Ok(Response::new(pb::CreateApiKeyResponse {
            secret,
            ..recorded
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let caller = caller(&request, LIST_API_KEYS)?;
        let req = request.into_inner();
        let page = page_request(req.page_size, &req.page_token).map_err(GatewayError::from)?;
        let (keys, next_page_token) = self.directory.api_keys(&caller.tenant_id, &page).await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: keys.into_iter().map(convert::api_key).collect(),
            next_page_token,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let caller = caller(&request, REVOKE_API_KEY)?;
        let req = request.into_inner();
        let request_id = require_request_id(&req.request_id)?;
        let fingerprint = Fingerprint::of(&req);
        let id = parse_uuid("api_key_id", &req.api_key_id)?.to_string();

        let mut tx = self
            .directory
            .begin(mutation(&caller, REVOKE_API_KEY, request_id, fingerprint))
            .await?;
        if let Some(done) = tx.replay().await? {
            tx.abandon().await?;
            return Ok(Response::new(done));
        }
        let mut key = tx
            .api_key(&id)
            .await?
            .filter(|k| k.tenant_id == caller.tenant_id)
            .ok_or_else(|| not_found("api key", &id))?;
        if key.revoked_at.is_none() {
            let at = now_micros();
            tx.revoke_api_key(&id, at).await?;
            key.revoked_at = Some(at);
        }
        let response = pb::RevokeApiKeyResponse {
            api_key: Some(convert::api_key(key)),
        };
        tx.finish(&id, &response).await?;
        info!(api_key_id = %id, actor_id = %caller.principal_id, "api key revoked");
        Ok(Response::new(response))
    }

    async fn list_audit_log_entries(
        &self,
        request: Request<pb::ListAuditLogEntriesRequest>,
    ) -> Result<Response<pb::ListAuditLogEntriesResponse>, Status> {
        let caller = caller(&request, LIST_AUDIT_LOG_ENTRIES)?;
        let req = request.into_inner();
        let page = page_request(req.page_size, &req.page_token).map_err(GatewayError::from)?;
        let (entries, next_page_token) = self
            .directory
            .audit_entries(&caller.tenant_id, &page)
            .await?;
        Ok(Response::new(pb::ListAuditLogEntriesResponse {
            entries: entries.into_iter().map(convert::audit_entry).collect(),
            next_page_token,
        }))
    }

    async fn create_team(
        &self,
        request: Request<pb::CreateTeamRequest>,
    ) -> Result<Response<pb::CreateTeamResponse>, Status> {
        team::create(&self.directory, request).await
    }

    async fn list_teams(
        &self,
        request: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        team::list(&self.directory, request).await
    }

    async fn update_team(
        &self,
        request: Request<pb::UpdateTeamRequest>,
    ) -> Result<Response<pb::UpdateTeamResponse>, Status> {
        team::update(&self.directory, request).await
    }

    async fn delete_team(
        &self,
        request: Request<pb::DeleteTeamRequest>,
    ) -> Result<Response<pb::DeleteTeamResponse>, Status> {
        team::delete(&self.directory, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_within_reach_are_the_own_and_descendants() {
        let ancestry = vec!["parent".to_owned(), "root".to_owned()];
        assert!(within("root", "child", &ancestry));
        assert!(within("parent", "child", &ancestry));
        assert!(within("child", "child", &ancestry));
        assert!(!within("sibling", "child", &ancestry));
    }
}
