//! Calls to the gateway's internal directory API (`DirectoryInternalService`), signed as
//! routing-svc: users live in the gateway's directory, so routing asks it who a user is
//! before giving that user a routing profile.

use std::collections::BTreeSet;
use std::time::Duration;

use switchboard_proto::directory::internal::v1 as dpb;
use switchboard_proto::directory::internal::v1::directory_internal_service_client::DirectoryInternalServiceClient;
use switchboard_proto::directory::v1::Role;
use switchboard_server_kit::identity::{Identity, IdentityKey, SignedChannel, signed_channel};
use switchboard_server_kit::mask_pans;
use tonic::{Code, Status};
use tracing::warn;

use crate::api::MAX_TEXT;
use crate::domain::profile::DirectoryUser;
use crate::error::{Error, Result};

/// A client of the directory; cheap to clone. The channel connects lazily, so routing-svc
/// starts whether or not the gateway is up.
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

    /// User `user_id` of tenant `tenant_id`, `None` when the directory has no such user in
    /// that tenant. UNAVAILABLE when the directory cannot answer in time.
    pub async fn user(&self, tenant_id: &str, user_id: &str) -> Result<Option<DirectoryUser>> {
        let mut request = tonic::Request::new(dpb::GetUsersRequest {
            tenant_id: tenant_id.to_owned(),
            user_ids: vec![user_id.to_owned()],
        });
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        let response = match tokio::time::timeout(self.timeout, client.get_users(request)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(failure(&status)),
            Err(_) => return Err(failure(&Status::deadline_exceeded("no answer in time"))),
        };
        // Defensive: the directory answers only the asked tenant's users.
        Ok(response
            .users
            .into_iter()
            .find(|user| user.id == user_id && user.tenant_id == tenant_id)
            .map(directory_user))
    }
}

impl Directory {
    /// The user ids of team `team_id` of tenant `tenant_id`, every page of them; `None`
    /// when the tenant has no such team. UNAVAILABLE when the directory cannot answer in
    /// time.
    pub async fn team_members(
        &self,
        tenant_id: &str,
        team_id: &str,
    ) -> Result<Option<BTreeSet<String>>> {
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
            let call = client.list_team_members(request);
            let page = match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok(response)) => response.into_inner(),
                Ok(Err(status)) if status.code() == Code::NotFound => return Ok(None),
                Ok(Err(status)) => return Err(failure(&status)),
                Err(_) => return Err(failure(&Status::deadline_exceeded("no answer in time"))),
            };
            members.extend(page.user_ids);
            if page.next_page_token.is_empty() {
                return Ok(Some(members));
            }
            page_token = page.next_page_token;
        }
    }
}

/// Members asked for per page of a team.
const TEAM_PAGE: i32 = 500;

/// The directory's answer as routing's rules read it; the name is bounded and masked the
/// same way as the name an agent's own calls bring.
fn directory_user(user: dpb::UserInfo) -> DirectoryUser {
    DirectoryUser {
        display_name: mask_pans(user.display_name.trim())
            .chars()
            .take(MAX_TEXT)
            .collect(),
        active: user.active,
        is_agent: user.roles.contains(&(Role::Agent as i32)),
    }
}

/// A failed directory call: UNAVAILABLE when waiting or retrying may help, INTERNAL (logged
/// in full) when the suite is misconfigured, for example a different identity secret.
fn failure(status: &Status) -> Error {
    warn!(code = ?status.code(), message = status.message(), "directory call failed");
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Unknown => Error::Unavailable(
            "the user directory is unavailable; nothing was changed, retry later".to_owned(),
        ),
        _ => Error::Internal(format!("directory call failed: {status}")),
    }
}
