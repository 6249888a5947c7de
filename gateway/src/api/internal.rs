//! `switchboard.directory.internal.v1.DirectoryInternalService`: what other services ask of
//! the directory, served on the gateway's internal listener only.
//!
//! The listener's identity layer has already verified a signed identity; each call then
//! checks that it is a service's. The tenant comes in the request body, and users of any
//! other tenant are left out of the answer, never reported as such; likewise a tenant the
//! directory does not know has no ancestors, exactly like a top-level tenant, and another
//! tenant's team is NOT_FOUND exactly like a team that does not exist.

use std::collections::BTreeSet;

use switchboard_proto::directory::internal::v1 as ipb;
use switchboard_proto::directory::internal::v1::directory_internal_service_server::DirectoryInternalService;
use switchboard_server_kit::{identity_of, parse_uuid};
use tonic::{Request, Response, Status};
use tracing::debug;

use super::convert;
use crate::domain::authz;
use crate::domain::directory::FieldError;
use crate::domain::page::page_request;
use crate::error::GatewayError;
use crate::store::Directory;

const GET_USERS: &str = "/switchboard.directory.internal.v1.DirectoryInternalService/GetUsers";
const GET_TENANT_ANCESTRY: &str =
    "/switchboard.directory.internal.v1.DirectoryInternalService/GetTenantAncestry";
const LIST_TEAM_MEMBERS: &str =
    "/switchboard.directory.internal.v1.DirectoryInternalService/ListTeamMembers";

/// Most user ids one GetUsers call may ask for, as the contract states.
pub const MAX_USER_IDS: usize = 500;

/// The DirectoryInternalService implementation.
#[derive(Clone, Debug)]
pub struct DirectoryInternalApi {
    directory: Directory,
}

impl DirectoryInternalApi {
    /// Serves `directory`.
    pub fn new(directory: Directory) -> DirectoryInternalApi {
        DirectoryInternalApi { directory }
    }
}

#[tonic::async_trait]
impl DirectoryInternalService for DirectoryInternalApi {
    async fn get_users(
        &self,
        request: Request<ipb::GetUsersRequest>,
    ) -> Result<Response<ipb::GetUsersResponse>, Status> {
        let identity = identity_of(&request)?;
        authz::authorize_service(GET_USERS, &identity).map_err(GatewayError::Denied)?;
        let req = request.into_inner();
        let tenant_id = parse_uuid("tenant_id", &req.tenant_id)?.to_string();
        if req.user_ids.len() > MAX_USER_IDS {
            return Err(FieldError::new(
                "user_ids",
                format!("may list at most {MAX_USER_IDS} ids"),
            )
            .into());
        }
        // Canonical and deduplicated, so that each id is one placeholder and one answer.
        let ids: BTreeSet<String> = req
            .user_ids
            .iter()
            .map(|id| parse_uuid("user_ids", id).map(|id| id.to_string()))
            .collect::<Result<_, _>>()?;
        let ids: Vec<String> = ids.into_iter().collect();
        let users = self.directory.users_in_tenant(&tenant_id, &ids).await?;
        let users = self.directory.with_team_ids(users).await?;
        debug!(
            caller = %identity.principal_id,
            tenant_id = %tenant_id,
            asked = ids.len(),
            found = users.len(),
            "directory users looked up"
        );
        Ok(Response::new(ipb::GetUsersResponse {
            users: users
                .into_iter()
                .map(|(user, team_ids)| convert::user_info(user, team_ids))
                .collect(),
        }))
    }

    async fn get_tenant_ancestry(
        &self,
        request: Request<ipb::GetTenantAncestryRequest>,
    ) -> Result<Response<ipb::GetTenantAncestryResponse>, Status> {
        let identity = identity_of(&request)?;
        authz::authorize_service(GET_TENANT_ANCESTRY, &identity).map_err(GatewayError::Denied)?;
        let tenant_id = parse_uuid("tenant_id", &request.get_ref().tenant_id)?.to_string();
        // Read afresh: callers keep answers for as long as they see fit.
        let ancestors = self.directory.tenant_ancestry(&tenant_id).await?;
        debug!(
            caller = %identity.principal_id,
            tenant_id = %tenant_id,
            depth = ancestors.len(),
            "tenant ancestry looked up"
        );
        Ok(Response::new(ipb::GetTenantAncestryResponse {
            ancestor_tenant_ids: ancestors,
        }))
    }

    async fn list_team_members(
        &self,
        request: Request<ipb::ListTeamMembersRequest>,
    ) -> Result<Response<ipb::ListTeamMembersResponse>, Status> {
        let identity = identity_of(&request)?;
        authz::authorize_service(LIST_TEAM_MEMBERS, &identity).map_err(GatewayError::Denied)?;
        let req = request.into_inner();
        let tenant_id = parse_uuid("tenant_id", &req.tenant_id)?.to_string();
        let team_id = parse_uuid("team_id", &req.team_id)?.to_string();
        let page = page_request(req.page_size, &req.page_token).map_err(GatewayError::from)?;
        let (user_ids, next_page_token) = self
            .directory
            .team_members(&tenant_id, &team_id, &page)
            .await?
            .ok_or_else(|| GatewayError::NotFound {
                kind: "team",
                id: team_id.clone(),
            })?;
        debug!(
            caller = %identity.principal_id,
            tenant_id = %tenant_id,
            team_id = %team_id,
            members = user_ids.len(),
            "team members listed"
        );
        Ok(Response::new(ipb::ListTeamMembersResponse {
            user_ids,
            next_page_token,
        }))
    }
}
