//! Calls to the gateway's internal directory API (`DirectoryInternalService`), signed as
//! reporting-svc. Teams and the tenant tree live in the gateway's directory, not in any event
//! log reporting follows, so a report filtered by team, or on a child tenant, asks it.

use std::collections::BTreeSet;
use std::time::Duration;

use switchboard_proto::directory::internal::v1 as dpb;
use switchboard_proto::directory::internal::v1::directory_internal_service_client::DirectoryInternalServiceClient;
use switchboard_server_kit::{Identity, IdentityKey, SignedChannel, signed_channel};
use tonic::{Code, Status};
use tracing::warn;

use crate::error::Error;

/// Member ids asked for per page of a team (the directory's largest page).
const TEAM_PAGE: i32 = 500;

/// A client of the directory; cheap to clone. The channel connects lazily, so reporting-svc
/// starts, and reports without team or tenant filters answer, whether or not the gateway
/// is up.
#[derive(Clone, Debug)]
pub struct Directory {
    client: DirectoryInternalServiceClient<SignedChannel>,
    timeout: Duration,
}

impl Directory {
    /// A client of the directory at `url`, signing as `service`, with a deadline of
    /// `timeout` per call.
    pub fn new(
        url: &str,
        key: IdentityKey,
        service: &str,
        timeout: Duration,
    ) -> anyhow::Result<Directory> {
        let channel = signed_channel(url, key, Identity::service(service))?;
        Ok(Directory {
            client: DirectoryInternalServiceClient::new(channel),
            timeout,
        })
    }

    /// The ancestors of tenant `tenant_id`, parent first; empty for a top-level tenant and
    /// for a tenant the directory does not know.
    pub async fn ancestry(&self, tenant_id: &str) -> Result<Vec<String>, Error> {
        let mut request = tonic::Request::new(dpb::GetTenantAncestryRequest {
            tenant_id: tenant_id.to_owned(),
        });
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(self.timeout, client.get_tenant_ancestry(request))
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")))
            .map_err(|status| failure("GetTenantAncestry", &status))?;
        Ok(answer.into_inner().ancestor_tenant_ids)
    }

    /// The user ids of team `team_id` of tenant `tenant_id`, every page of them; `None`
    /// when the tenant has no such team.
    pub async fn team_members(
        &self,
        tenant_id: &str,
        team_id: &str,
    ) -> Result<Option<BTreeSet<String>>, Error> {
        let mut members = BTreeSet::new();
        let mut page_token = String::new();
        loop {
            let mut request = tonic::Request::new(dpb::ListTeamMembersRequest {
                tenant_id: tenant_id.to_owned(),
                team_id: team_id.to_owned(),
                page_size: TEAM_PAGE,
                page_token,
            });
            request.set_timeout(self.timeout);
            let mut client = self.client.clone();
            let page = match tokio::time::timeout(self.timeout, client.list_team_members(request))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")))
            {
                Ok(page) => page.into_inner(),
                Err(status) if status.code() == Code::NotFound => return Ok(None),
                Err(status) => return Err(failure("ListTeamMembers", &status)),
            };
            members.extend(page.user_ids);
            if page.next_page_token.is_empty() {
                return Ok(Some(members));
            }
            page_token = page.next_page_token;
        }
    }
}

/// A failed directory call: UNAVAILABLE when waiting or retrying may help, INTERNAL (logged
/// in full) when the suite is misconfigured, for example with another identity secret.
fn failure(method: &str, status: &Status) -> Error {
    warn!(method, code = ?status.code(), message = status.message(), "directory call failed");
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Unknown => Error::Unavailable(
            "the directory (teams, tenants) is unavailable: retry later, or report without \
             team and tenant filters"
                .to_owned(),
        ),
        _ => Error::Internal(format!("directory {method} failed: {status}")),
    }
}
