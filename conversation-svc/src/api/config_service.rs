//! `switchboard.conversation.v1.ConversationConfigService`: wrap-up reasons (status labels
//! and canned responses are not served yet).

use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::conversation::v1::conversation_config_service_server::ConversationConfigService;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::{Role, mask_pans};
use tonic::{Request, Response, Status};
use tracing::info;

use super::conversation::queue_error;
use super::{
    Begun, Shared, authorized, caller, convert, next_page, not_served, optional_uuid, page_size,
    request_id, text_field, token, uuid_field,
};
use crate::error::{Error, Result};
use crate::store::WrapUpReason;

const SERVICE: &str = "ConversationConfigService";

/// Most queues one wrap-up reason may name; each is checked with routing-svc.
const MAX_REASON_QUEUES: usize = 200;

/// Tenant configuration of conversations.
#[derive(Clone, Debug)]
pub struct ConfigApi {
    ctx: Shared,
}

impl ConfigApi {
    /// The service over `ctx`.
    pub fn new(ctx: Shared) -> ConfigApi {
        ConfigApi { ctx }
    }
}

/// Validated, normalised (sorted, deduplicated) queue ids of a reason.
fn queue_ids(raw: &[String]) -> Result<Vec<String>> {
    if raw.len() > MAX_REASON_QUEUES {
        return Err(Error::invalid(
            "wrap_up_reason.queue_ids",
            format!("must have at most {MAX_REASON_QUEUES} queues"),
        ));
    }
    let mut ids = raw
        .iter()
        .enumerate()
        .map(|(i, id)| uuid_field(&format!("wrap_up_reason.queue_ids[{i}]"), id))
        .collect::<Result<Vec<_>>>()?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn display_name(value: &str) -> Result<()> {
    text_field("wrap_up_reason.display_name", value, 1, 200)
}

/// An optional reason code: empty, or 1 to 50 letters, digits, `_` and `-`.
fn reason_code(value: &str) -> Result<()> {
    if value.chars().count() > 50 {
        return Err(Error::invalid(
            "wrap_up_reason.code",
            "must have at most 50 characters",
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(Error::invalid(
            "wrap_up_reason.code",
            format!("may hold only letters, digits, '_' and '-' (found {c:?})"),
        ));
    }
    Ok(())
}

impl ConfigApi {
    /// NOT_FOUND unless every queue is the tenant's: a reason never points at another
    /// tenant's queues. Asked of routing-svc, which owns queues, before anything is written.
    async fn check_queues(&self, tenant_id: &str, queue_ids: &[String]) -> Result<()> {
        futures::future::try_join_all(queue_ids.iter().map(|queue_id| async move {
            self.ctx
                .routing
                .check_queue(tenant_id, queue_id, 0)
                .await
                .map_err(|status| queue_error(queue_id, status))
        }))
        .await?;
        Ok(())
    }

    async fn create_reason(
        &self,
        request: Request<pb::CreateWrapUpReasonRequest>,
    ) -> Result<pb::CreateWrapUpReasonResponse> {
        const METHOD: &str = "ConversationConfigService/CreateWrapUpReason";
        let identity = authorized(
            &request,
            &[Role::Administrator],
            "creating a wrap-up reason",
        )?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let given = req
            .wrap_up_reason
            .ok_or_else(|| Error::invalid("wrap_up_reason", "is required"))?;
        display_name(&given.display_name)?;
        reason_code(&given.code)?;
        let queues = queue_ids(&given.queue_ids)?;
        self.check_queues(&identity.tenant_id, &queues).await?;
        let reason = WrapUpReason {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: identity.tenant_id.clone(),
            queue_ids: queues,
            display_name: mask_pans(&given.display_name).into_owned(),
            marks_transferred: given.marks_transferred,
            // A new reason is always offered; proto3 cannot tell an omitted `active` from
            // false, and an administrator who creates a reason means to use it.
            active: true,
            code: mask_pans(&given.code).into_owned(),
        };
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        tx.insert_reason(&reason, now_micros()).await?;
        let response = pb::CreateWrapUpReasonResponse {
            wrap_up_reason: Some(convert::reason(&reason)),
        };
        tx.commit(&response).await?;
        info!(wrap_up_reason_id = %reason.id, tenant_id = %reason.tenant_id, "wrap-up reason created");
        Ok(response)
    }

    async fn list_reasons(
        &self,
        request: Request<pb::ListWrapUpReasonsRequest>,
    ) -> Result<pb::ListWrapUpReasonsResponse> {
        let identity = caller(&request)?;
        let req = request.get_ref();
        let queue_id = optional_uuid("queue_id", &req.queue_id)?;
        let limit = page_size(req.page_size)?;
        let after = token::decode_pair(&req.page_token)?;
        let mut reasons = self
            .ctx
            .store
            .list_reasons(
                &identity.tenant_id,
                queue_id.as_deref(),
                req.include_inactive,
                after,
                limit + 1,
            )
            .await?;
        let next_page_token = next_page(&mut reasons, limit, |last| {
            token::encode(&[&last.display_name, &last.id])
        });
        Ok(pb::ListWrapUpReasonsResponse {
            wrap_up_reasons: reasons.iter().map(convert::reason).collect(),
            next_page_token,
        })
    }

    async fn update_reason(
        &self,
        request: Request<pb::UpdateWrapUpReasonRequest>,
    ) -> Result<pb::UpdateWrapUpReasonResponse> {
        const METHOD: &str = "ConversationConfigService/UpdateWrapUpReason";
        let identity = authorized(
            &request,
            &[Role::Administrator],
            "changing a wrap-up reason",
        )?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let given = req
            .wrap_up_reason
            .ok_or_else(|| Error::invalid("wrap_up_reason", "is required"))?;
        let id = uuid_field("wrap_up_reason.id", &given.id)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "is required"));
        }
        for path in &paths {
            match path.as_str() {
                "display_name" => display_name(&given.display_name)?,
                "queue_ids" => {
                    let queues = queue_ids(&given.queue_ids)?;
                    self.check_queues(&identity.tenant_id, &queues).await?;
                }
                "code" => reason_code(&given.code)?,
                "marks_transferred" | "active" => {}
                other => {
                    return Err(Error::invalid(
                        "update_mask",
                        format!(
                            "unknown path {other:?}; expected display_name, queue_ids, \
                             marks_transferred, active or code"
                        ),
                    ));
                }
            }
        }
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut reason = tx
            .reasons_by_ids(&identity.tenant_id, std::slice::from_ref(&id))
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("wrap-up reason {id} not found")))?;
        for path in &paths {
            match path.as_str() {
                "display_name" => {
                    reason.display_name = mask_pans(&given.display_name).into_owned();
                }
                "queue_ids" => reason.queue_ids = queue_ids(&given.queue_ids)?,
                "marks_transferred" => reason.marks_transferred = given.marks_transferred,
                "active" => reason.active = given.active,
                "code" => reason.code = mask_pans(&given.code).into_owned(),
                _ => {}
            }
        }
        tx.update_reason(&reason, now_micros()).await?;
        let response = pb::UpdateWrapUpReasonResponse {
            wrap_up_reason: Some(convert::reason(&reason)),
        };
        tx.commit(&response).await?;
        info!(wrap_up_reason_id = %id, "wrap-up reason changed");
        Ok(response)
    }
}

fn respond<T>(result: Result<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl ConversationConfigService for ConfigApi {
    async fn create_wrap_up_reason(
        &self,
        request: Request<pb::CreateWrapUpReasonRequest>,
    ) -> Result<Response<pb::CreateWrapUpReasonResponse>, Status> {
        respond(self.create_reason(request).await)
    }

    async fn list_wrap_up_reasons(
        &self,
        request: Request<pb::ListWrapUpReasonsRequest>,
    ) -> Result<Response<pb::ListWrapUpReasonsResponse>, Status> {
        respond(self.list_reasons(request).await)
    }

    async fn update_wrap_up_reason(
        &self,
        request: Request<pb::UpdateWrapUpReasonRequest>,
    ) -> Result<Response<pb::UpdateWrapUpReasonResponse>, Status> {
        respond(self.update_reason(request).await)
    }

    async fn create_status_label(
        &self,
        _: Request<pb::CreateStatusLabelRequest>,
    ) -> Result<Response<pb::CreateStatusLabelResponse>, Status> {
        not_served(SERVICE, "CreateStatusLabel")
    }

    async fn list_status_labels(
        &self,
        _: Request<pb::ListStatusLabelsRequest>,
    ) -> Result<Response<pb::ListStatusLabelsResponse>, Status> {
        not_served(SERVICE, "ListStatusLabels")
    }

    async fn update_status_label(
        &self,
        _: Request<pb::UpdateStatusLabelRequest>,
    ) -> Result<Response<pb::UpdateStatusLabelResponse>, Status> {
        not_served(SERVICE, "UpdateStatusLabel")
    }

    async fn update_canned_response(
        &self,
        _: Request<pb::UpdateCannedResponseRequest>,
    ) -> Result<Response<pb::UpdateCannedResponseResponse>, Status> {
        not_served(SERVICE, "UpdateCannedResponse")
    }

    async fn delete_status_label(
        &self,
        _: Request<pb::DeleteStatusLabelRequest>,
    ) -> Result<Response<pb::DeleteStatusLabelResponse>, Status> {
        not_served(SERVICE, "DeleteStatusLabel")
    }

    async fn create_canned_response(
        &self,
        _: Request<pb::CreateCannedResponseRequest>,
    ) -> Result<Response<pb::CreateCannedResponseResponse>, Status> {
        not_served(SERVICE, "CreateCannedResponse")
    }

    async fn delete_canned_response(
        &self,
        _: Request<pb::DeleteCannedResponseRequest>,
    ) -> Result<Response<pb::DeleteCannedResponseResponse>, Status> {
        not_served(SERVICE, "DeleteCannedResponse")
    }
}
