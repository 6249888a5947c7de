//! `switchboard.conversation.v1.ConversationConfigService`: wrap-up reasons, status labels
//! and canned responses.

use switchboard_proto::conversation::v1 as pb;
use switchboard_proto::conversation::v1::conversation_config_service_server::ConversationConfigService;
use switchboard_server_kit::db::now_micros;
use switchboard_server_kit::{Role, mask_pans};
use tonic::{Request, Response, Status};
use tracing::info;

use super::conversation::{event_by, queue_error};
use super::{
    Begun, Shared, authorized, caller, convert, next_page, optional_uuid, page_size, request_id,
    text_field, token, uuid_field,
};
use crate::domain::keys::{self, MAX_KEYWORD};
use crate::error::{Error, Result};
use crate::store::{CannedResponse, StatusLabel, WrapUpReason};

/// Most queues one wrap-up reason may name; each is checked with routing-svc.
const MAX_REASON_QUEUES: usize = 200;

/// Most status labels a tenant may have: CountConversationsByStatus answers one row per
/// label in one message.
const MAX_STATUS_LABELS: i64 = 1000;

/// Roles that manage canned responses.
const PHRASE_EDITORS: [Role; 2] = [Role::Administrator, Role::Supervisor];

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

fn label_name(value: &str) -> Result<()> {
    text_field("status_label.display_name", value, 1, 100)
}

fn keyword(value: &str) -> Result<()> {
    text_field("canned_response.keyword", value, 1, MAX_KEYWORD)?;
    match keys::keyword_refusal(value) {
        Some(why) => Err(Error::invalid("canned_response.keyword", why)),
        None => Ok(()),
    }
}

fn phrase_text(value: &str) -> Result<()> {
    text_field("canned_response.text", value, 1, 4000)
}

/// The fields an update mask names, each one of `known` (listed in the refusal).
fn mask_paths(mask: Option<prost_types::FieldMask>, known: &[&str]) -> Result<Vec<String>> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid("update_mask", "is required"));
    }
    if let Some(other) = paths.iter().find(|p| !known.contains(&p.as_str())) {
        return Err(Error::invalid(
            "update_mask",
            format!("unknown path {other:?}; expected {}", known.join(" or ")),
        ));
    }
    Ok(paths)
}

fn status_label_not_found(id: &str) -> Error {
    Error::NotFound(format!("status label {id} not found"))
}

fn canned_response_not_found(id: &str) -> Error {
    Error::NotFound(format!("canned response {id} not found"))
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

impl ConfigApi {
    async fn create_label(
        &self,
        request: Request<pb::CreateStatusLabelRequest>,
    ) -> Result<pb::CreateStatusLabelResponse> {
        const METHOD: &str = "ConversationConfigService/CreateStatusLabel";
        let identity = authorized(&request, &[Role::Administrator], "creating a status label")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let given = req
            .status_label
            .ok_or_else(|| Error::invalid("status_label", "is required"))?;
        label_name(&given.display_name)?;
        let label = StatusLabel {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: identity.tenant_id.clone(),
            display_name: mask_pans(given.display_name.trim()).into_owned(),
        };
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        if tx.count_status_labels(&identity.tenant_id).await? >= MAX_STATUS_LABELS {
            return Err(Error::WrongState(format!(
                "the tenant has {MAX_STATUS_LABELS} status labels, the most it may have; \
                 delete one first"
            )));
        }
        tx.insert_status_label(&label, now_micros()).await?;
        let response = pb::CreateStatusLabelResponse {
            status_label: Some(convert::status_label(&label)),
        };
        tx.commit(&response).await?;
        info!(status_label_id = %label.id, tenant_id = %label.tenant_id, "status label created");
        Ok(response)
    }

    async fn list_labels(
        &self,
        request: Request<pb::ListStatusLabelsRequest>,
    ) -> Result<pb::ListStatusLabelsResponse> {
        let identity = caller(&request)?;
        let req = request.get_ref();
        let limit = page_size(req.page_size)?;
        let after = token::decode(&req.page_token, 1)?.map(|mut parts| parts.remove(0));
        let mut labels = self
            .ctx
            .store
            .list_status_labels(&identity.tenant_id, after.as_deref(), limit + 1)
            .await?;
        let next_page_token = next_page(&mut labels, limit, |last| {
            token::encode(&[&keys::label_key(&last.display_name)])
        });
        Ok(pb::ListStatusLabelsResponse {
            status_labels: labels.iter().map(convert::status_label).collect(),
            next_page_token,
        })
    }

    async fn update_label(
        &self,
        request: Request<pb::UpdateStatusLabelRequest>,
    ) -> Result<pb::UpdateStatusLabelResponse> {
        const METHOD: &str = "ConversationConfigService/UpdateStatusLabel";
        let identity = authorized(&request, &[Role::Administrator], "renaming a status label")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let given = req
            .status_label
            .ok_or_else(|| Error::invalid("status_label", "is required"))?;
        let id = uuid_field("status_label.id", &given.id)?;
        mask_paths(req.update_mask, &["display_name"])?;
        label_name(&given.display_name)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut label = tx
            .status_label_for_update(&identity.tenant_id, &id)
            .await?
            .ok_or_else(|| status_label_not_found(&id))?;
        label.display_name = mask_pans(given.display_name.trim()).into_owned();
        tx.update_status_label(&label, now_micros()).await?;
        let response = pb::UpdateStatusLabelResponse {
            status_label: Some(convert::status_label(&label)),
        };
        tx.commit(&response).await?;
        info!(status_label_id = %id, "status label renamed");
        Ok(response)
    }

    /// Deletes a label and clears it from every conversation carrying it, each with a
    /// STATUS_CHANGED event, in one transaction.
    async fn delete_label(
        &self,
        request: Request<pb::DeleteStatusLabelRequest>,
    ) -> Result<pb::DeleteStatusLabelResponse> {
        const METHOD: &str = "ConversationConfigService/DeleteStatusLabel";
        let identity = authorized(&request, &[Role::Administrator], "deleting a status label")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("status_label_id", &req.status_label_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        // The label row first, as SetConversationStatus locks it before the conversation:
        // once it is gone no conversation can take it, and the order never deadlocks.
        if !tx.delete_status_label(&identity.tenant_id, &id).await? {
            return Err(status_label_not_found(&id));
        }
        let now = now_micros();
        let mut cleared = 0;
        for conversation_id in tx
            .conversations_with_label(&identity.tenant_id, &id)
            .await?
        {
            let Some(mut conv) = tx
                .conversation_basic_for_update(&identity.tenant_id, &conversation_id)
                .await?
                .filter(|c| c.status_label_id == id)
            else {
                continue;
            };
            conv.status_label_id.clear();
            conv.update_time = now;
            tx.save_conversation(&conv).await?;
            tx.event(event_by(
                &conv,
                pb::EventType::StatusChanged,
                &identity,
                now,
            ));
            cleared += 1;
        }
        let response = pb::DeleteStatusLabelResponse {};
        tx.commit(&response).await?;
        info!(status_label_id = %id, conversations_cleared = cleared, "status label deleted");
        Ok(response)
    }

    async fn create_phrase(
        &self,
        request: Request<pb::CreateCannedResponseRequest>,
    ) -> Result<pb::CreateCannedResponseResponse> {
        const METHOD: &str = "ConversationConfigService/CreateCannedResponse";
        let identity = authorized(&request, &PHRASE_EDITORS, "creating a canned response")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let given = req
            .canned_response
            .ok_or_else(|| Error::invalid("canned_response", "is required"))?;
        keyword(&given.keyword)?;
        phrase_text(&given.text)?;
        let phrase = CannedResponse {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: identity.tenant_id.clone(),
            keyword: mask_pans(&given.keyword).into_owned(),
            text: mask_pans(&given.text).into_owned(),
            update_time: now_micros(),
        };
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        tx.insert_canned_response(&phrase).await?;
        let response = pb::CreateCannedResponseResponse {
            canned_response: Some(convert::canned_response(&phrase)),
        };
        tx.commit(&response).await?;
        info!(canned_response_id = %phrase.id, tenant_id = %phrase.tenant_id, "canned response created");
        Ok(response)
    }

    async fn update_phrase(
        &self,
        request: Request<pb::UpdateCannedResponseRequest>,
    ) -> Result<pb::UpdateCannedResponseResponse> {
        const METHOD: &str = "ConversationConfigService/UpdateCannedResponse";
        let identity = authorized(&request, &PHRASE_EDITORS, "changing a canned response")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let given = req
            .canned_response
            .ok_or_else(|| Error::invalid("canned_response", "is required"))?;
        let id = uuid_field("canned_response.id", &given.id)?;
        let paths = mask_paths(req.update_mask, &["keyword", "text"])?;
        for path in &paths {
            match path.as_str() {
                "keyword" => keyword(&given.keyword)?,
                _ => phrase_text(&given.text)?,
            }
        }
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut phrase = tx
            .canned_response_for_update(&identity.tenant_id, &id)
            .await?
            .ok_or_else(|| canned_response_not_found(&id))?;
        for path in &paths {
            match path.as_str() {
                "keyword" => phrase.keyword = mask_pans(&given.keyword).into_owned(),
                _ => phrase.text = mask_pans(&given.text).into_owned(),
            }
        }
        phrase.update_time = now_micros();
        tx.update_canned_response(&phrase).await?;
        let response = pb::UpdateCannedResponseResponse {
            canned_response: Some(convert::canned_response(&phrase)),
        };
        tx.commit(&response).await?;
        info!(canned_response_id = %id, "canned response changed");
        Ok(response)
    }

    async fn delete_phrase(
        &self,
        request: Request<pb::DeleteCannedResponseRequest>,
    ) -> Result<pb::DeleteCannedResponseResponse> {
        const METHOD: &str = "ConversationConfigService/DeleteCannedResponse";
        let identity = authorized(&request, &PHRASE_EDITORS, "deleting a canned response")?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("canned_response_id", &req.canned_response_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        if !tx.delete_canned_response(&identity.tenant_id, &id).await? {
            return Err(canned_response_not_found(&id));
        }
        let response = pb::DeleteCannedResponseResponse {};
        tx.commit(&response).await?;
        info!(canned_response_id = %id, "canned response deleted");
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
        request: Request<pb::CreateStatusLabelRequest>,
    ) -> Result<Response<pb::CreateStatusLabelResponse>, Status> {
        respond(self.create_label(request).await)
    }

    async fn list_status_labels(
        &self,
        request: Request<pb::ListStatusLabelsRequest>,
    ) -> Result<Response<pb::ListStatusLabelsResponse>, Status> {
        respond(self.list_labels(request).await)
    }

    async fn update_status_label(
        &self,
        request: Request<pb::UpdateStatusLabelRequest>,
    ) -> Result<Response<pb::UpdateStatusLabelResponse>, Status> {
        respond(self.update_label(request).await)
    }

    async fn update_canned_response(
        &self,
        request: Request<pb::UpdateCannedResponseRequest>,
    ) -> Result<Response<pb::UpdateCannedResponseResponse>, Status> {
        respond(self.update_phrase(request).await)
    }

    async fn delete_status_label(
        &self,
        request: Request<pb::DeleteStatusLabelRequest>,
    ) -> Result<Response<pb::DeleteStatusLabelResponse>, Status> {
        respond(self.delete_label(request).await)
    }

    async fn create_canned_response(
        &self,
        request: Request<pb::CreateCannedResponseRequest>,
    ) -> Result<Response<pb::CreateCannedResponseResponse>, Status> {
        respond(self.create_phrase(request).await)
    }

    async fn delete_canned_response(
        &self,
        request: Request<pb::DeleteCannedResponseRequest>,
    ) -> Result<Response<pb::DeleteCannedResponseResponse>, Status> {
        respond(self.delete_phrase(request).await)
    }
}
