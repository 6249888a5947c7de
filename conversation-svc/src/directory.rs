//! Calls to the gateway's internal directory API (`DirectoryInternalService`), signed as
//! conversation-svc: tenants and their parents live in the gateway's directory, and a caller's
//! identity names its tenant's ancestors but not its descendants, so conversation-svc asks the
//! directory for the ancestry of a tenant that a user of a parent tenant names.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use switchboard_proto::directory::internal::v1 as dpb;
use switchboard_proto::directory::internal::v1::directory_internal_service_client::DirectoryInternalServiceClient;
use switchboard_server_kit::{Identity, IdentityKey, SignedChannel, signed_channel};
use tonic::{Code, Status};
use tracing::warn;

use crate::error::{Error, Result};
use crate::routing::{SERVICE_NAME, is_permanent};

/// Most tenants whose ancestry is kept at once.
const CACHED_TENANTS: u64 = 10_000;

/// A client of the directory with a short-lived copy of its answers; cheap to clone. The
/// channel connects lazily, so conversation-svc starts whether or not the gateway is up.
#[derive(Clone, Debug)]
pub struct Directory {
    client: DirectoryInternalServiceClient<SignedChannel>,
    timeout: Duration,
    /// Ancestries by tenant id, kept for the configured freshness; none when it is zero.
    ancestries: Option<Cache<String, Arc<[String]>>>,
}

impl Directory {
    /// A client of the directory at `url`, with a deadline of `timeout` per call, keeping each
    /// ancestry it is told for `freshness`.
    pub fn new(
        url: &str,
        key: IdentityKey,
        timeout: Duration,
        freshness: Duration,
    ) -> anyhow::Result<Directory> {
        let channel = signed_channel(url, key, Identity::service(SERVICE_NAME))?;
        Ok(Directory {
            client: DirectoryInternalServiceClient::new(channel),
            timeout,
            ancestries: (!freshness.is_zero()).then(|| {
                Cache::builder()
                    .max_capacity(CACHED_TENANTS)
                    .time_to_live(freshness)
                    .build()
            }),
        })
    }

    /// The ancestors of tenant `tenant_id`, parent first; empty for a top-level tenant and for
    /// a tenant the directory does not know. UNAVAILABLE when the directory cannot answer in
    /// time: a caller is then refused, never let through.
    ///
    /// Only a tenant with ancestors is kept: a tenant created a moment ago is found at once,
    /// and names that reach nothing fill no memory.
    pub async fn ancestry(&self, tenant_id: &str) -> Result<Arc<[String]>> {
        if let Some(known) = self.ancestries.as_ref().and_then(|c| c.get(tenant_id)) {
            return Ok(known);
        }
        let mut request = tonic::Request::new(dpb::GetTenantAncestryRequest {
            tenant_id: tenant_id.to_owned(),
        });
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(self.timeout, client.get_tenant_ancestry(request))
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")))
            .map_err(|status| failure(tenant_id, &status))?;
        let ancestors: Arc<[String]> = answer.into_inner().ancestor_tenant_ids.into();
        if let Some(cache) = &self.ancestries
            && !ancestors.is_empty()
        {
            cache.insert(tenant_id.to_owned(), ancestors.clone());
        }
        Ok(ancestors)
    }
}

/// A failed directory call: UNAVAILABLE when waiting or retrying may help, INTERNAL (logged
/// in full) when the suite is misconfigured, for example with another identity secret.
fn failure(tenant_id: &str, status: &Status) -> Error {
    warn!(
        tenant_id,
        code = ?status.code(),
        message = status.message(),
        "directory GetTenantAncestry failed"
    );
    if is_permanent(status) || status.code() == Code::Unauthenticated {
        Error::Internal(format!("directory GetTenantAncestry failed: {status}"))
    } else {
        Error::Unavailable(format!(
            "the tenant directory is unavailable: cannot tell whether tenant {tenant_id} is \
             within reach; retry later"
        ))
    }
}
