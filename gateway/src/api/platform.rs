//! `switchboard.directory.v1.PlatformService`, served by the gateway to platform operators:
//! top-level tenants and their first administrators, so that a new customer needs no hand
//! written rows.
//!
//! The operator was verified by the gateway's request path and is read from the request
//! extensions. Operators belong to no tenant: their request ids are scoped to the platform,
//! and each change is written to the audit log of the tenant it concerns as well, with the
//! actor `operator:<name>`.

use switchboard_proto::directory::v1 as pb;
use switchboard_proto::directory::v1::platform_service_server::PlatformService;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::idempotency::Fingerprint;
use switchboard_server_kit::{parse_uuid, require_request_id};
use tonic::{Request, Response, Status};
use tracing::info;
use uuid::Uuid;

use super::convert;
use crate::auth::Operator;
use crate::domain::directory::{self as rules, FieldError};
use crate::domain::page::page_request;
use crate::domain::{api_key, authz};
use crate::error::GatewayError;
use crate::store::{ApiKeyRecord, Directory, Mutation, TenantRecord, UserRecord};

const CREATE_TOP_LEVEL_TENANT: &str =
    "/switchboard.directory.v1.PlatformService/CreateTopLevelTenant";
const LIST_TOP_LEVEL_TENANTS: &str =
    "/switchboard.directory.v1.PlatformService/ListTopLevelTenants";
const CREATE_TENANT_ADMINISTRATOR: &str =
    "/switchboard.directory.v1.PlatformService/CreateTenantAdministrator";

/// Where operators' request ids (and a copy of their audit entries) live: no tenant has
/// this id, since tenant ids are UUIDs.
pub const PLATFORM_SCOPE: &str = "platform";

/// Name of the API key handed to a tenant's first administrator.
const FIRST_KEY_NAME: &str = "First administrator key";

/// The PlatformService implementation.
#[derive(Clone, Debug)]
pub struct PlatformApi {
    directory: Directory,
}

impl PlatformApi {
    /// Serves `directory`.
    pub fn new(directory: Directory) -> PlatformApi {
        PlatformApi { directory }
    }
}

/// The verified operator, checked again against the authorization table.
fn operator<T>(request: &Request<T>, method: &str) -> Result<Operator, GatewayError> {
    let operator = request
        .extensions()
        .get::<Operator>()
        .cloned()
        .ok_or_else(|| GatewayError::Unauthenticated("no verified operator".to_owned()))?;
    authz::authorize_operator(method).map_err(GatewayError::Denied)?;
    Ok(operator)
}

fn mutation(
    operator: &Operator,
    method: &'static str,
    request_id: Uuid,
    fingerprint: Fingerprint,
) -> Mutation {
    Mutation {
        tenant_id: PLATFORM_SCOPE.to_owned(),
        actor_id: operator.actor_id(),
        method,
        request_id,
        fingerprint,
    }
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, GatewayError> {
    value.ok_or_else(|| FieldError::new(field, "is required").into())
}

#[tonic::async_trait]
impl PlatformService for PlatformApi {
    async fn create_top_level_tenant(
        &self,
        request: Request<pb::CreateTopLevelTenantRequest>,
    ) -> Result<Response<pb::CreateTopLevelTenantResponse>, Status> {
        let operator = operator(&request, CREATE_TOP_LEVEL_TENANT)?;
        let req = request.into_inner();
        let request_id = require_request_id(&req.request_id)?;
        let fingerprint = Fingerprint::of(&req);
        let tenant = required("tenant", req.tenant)?;
        let display_name = rules::display_name("tenant.display_name", &tenant.display_name)?;
        if !tenant.parent_tenant_id.is_empty() {
            return Err(GatewayError::from(FieldError::new(
                "tenant.parent_tenant_id",
                "must be empty: child tenants are created by the parent's administrator (DirectoryService.CreateTenant)",
            ))
            .into());
        }

        let mut tx = self
            .directory
            .begin(mutation(
                &operator,
                CREATE_TOP_LEVEL_TENANT,
                request_id,
                fingerprint,
            ))
            .await?;
        if let Some(done) = tx.replay().await? {
            tx.abandon().await?;
            return Ok(Response::new(done));
        }
        let record = TenantRecord {
            id: Uuid::new_v4().to_string(),
            parent_tenant_id: None,
            display_name,
            created_at: now_micros(),
        };
        tx.insert_tenant(&record).await?;
        let id = record.id.clone();
        let response = pb::CreateTopLevelTenantResponse {
            tenant: Some(convert::tenant(record)),
        };
        tx.audit_in(&id, &id).await?;
        tx.finish(&id, &response).await?;
        info!(tenant_id = %id, operator = %operator.name, "top-level tenant created");
        Ok(Response::new(response))
    }

    async fn list_top_level_tenants(
        &self,
        request: Request<pb::ListTopLevelTenantsRequest>,
    ) -> Result<Response<pb::ListTopLevelTenantsResponse>, Status> {
        operator(&request, LIST_TOP_LEVEL_TENANTS)?;
        let req = request.into_inner();
        let page = page_request(req.page_size, &req.page_token).map_err(GatewayError::from)?;
        let (tenants, next_page_token) = self.directory.top_level_tenants(&page).await?;
        Ok(Response::new(pb::ListTopLevelTenantsResponse {
            tenants: tenants.into_iter().map(convert::tenant).collect(),
            next_page_token,
        }))
    }

    async fn create_tenant_administrator(
        &self,
        request: Request<pb::CreateTenantAdministratorRequest>,
    ) -> Result<Response<pb::CreateTenantAdministratorResponse>, Status> {
        let operator = operator(&request, CREATE_TENANT_ADMINISTRATOR)?;
        let req = request.into_inner();
        let request_id = require_request_id(&req.request_id)?;
        let fingerprint = Fingerprint::of(&req);
        let tenant_id = parse_uuid("tenant_id", &req.tenant_id)?.to_string();
        let user = required("user", req.user)?;
        let display_name = rules::display_name("user.display_name", &user.display_name)?;
        let email = rules::email("user.email", &user.email)?;

        let mut tx = self
            .directory
            .begin(mutation(
                &operator,
                CREATE_TENANT_ADMINISTRATOR,
                request_id,
                fingerprint,
            ))
            .await?;
        if let Some(done) = tx.replay().await? {
            tx.abandon().await?;
            return Ok(Response::new(done));
        }
        // Operators reach top-level tenants only; a child's administrators come from its
        // parent's.
        let top_level = tx
            .tenant(&tenant_id)
            .await?
            .is_some_and(|t| t.parent_tenant_id.is_none());
        if !top_level {
            return Err(GatewayError::NotFound {
                kind: "tenant",
                id: tenant_id,
            }
            .into());
        }
        // Two operators (or two retries with different request_ids) must not both find no
        // administrator and both create one.
        tx.serialize_on(&format!("first administrator\n{tenant_id}"))
            .await?;
        if tx
            .has_active_user_with_role(&tenant_id, pb::Role::Administrator)
            .await?
        {
            return Err(GatewayError::WrongState(format!(
                "tenant {tenant_id} already has an administrator, who creates its users"
            ))
            .into());
        }
        let now = now_micros();
        let user = UserRecord {
            id: Uuid::new_v4().to_string(),
            tenant_id: tenant_id.clone(),
            display_name,
            email,
            roles: vec![pb::Role::Administrator],
            active: true,
            created_at: now,
        };
        tx.insert_user(&user).await?;
        let key_id = Uuid::new_v4();
        let secret = api_key::generate_secret(key_id);
        let key = ApiKeyRecord {
            id: key_id.to_string(),
            tenant_id: tenant_id.clone(),
            display_name: FIRST_KEY_NAME.to_owned(),
            roles: vec![pb::Role::Administrator],
            prefix: api_key::display_prefix(&secret),
            secret_sha256: api_key::hash_secret(&secret),
            created_at: now,
            revoked_at: None,
        };
        tx.insert_api_key(&key).await?;
        let user_id = user.id.clone();
        // As with CreateApiKey, the secret is never stored, not even in the request log.
        let recorded = pb::CreateTenantAdministratorResponse {
            // A new tenant has no teams yet.
            user: Some(convert::user(user, Vec::new())),
            api_key: Some(convert::api_key(key)),
            api_key_secret: String::new(),
        };
        tx.audit_in(&tenant_id, &user_id).await?;
        tx.finish(&user_id, &recorded).await?;
        info!(
            tenant_id = %tenant_id,
            user_id = %user_id,
            api_key_id = %key_id,
            operator = %operator.name,
            "first tenant administrator created"
        );
        Ok(Response::new(pb::CreateTenantAdministratorResponse {
            api_key_secret: secret,
            ..recorded
        }))
    }
}
