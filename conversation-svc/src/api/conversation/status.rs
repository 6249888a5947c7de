//! Setting or clearing a conversation's status label.

use super::*;

impl ConversationApi {
    pub(super) async fn set_status(
        &self,
        request: Request<pb::SetConversationStatusRequest>,
    ) -> Result<pb::SetConversationStatusResponse> {
        const METHOD: &str = "ConversationService/SetConversationStatus";
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &USER_ROLES,
                "setting a conversation's status",
            )?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let label_id = optional_uuid("status_label_id", &req.status_label_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        // The label before the conversation, as DeleteStatusLabel takes them: locked, it
        // cannot be deleted until this commits.
        if let Some(label_id) = &label_id {
            tx.status_label_for_update(&identity.tenant_id, label_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("status label {label_id} not found")))?;
        }
        let mut conv = load_visible(&mut tx, &identity, &id).await?;
        if conv.state == State::Closed {
            return Err(Error::wrong_state(
                &id,
                "a CLOSED conversation keeps the status it closed with",
            ));
        }
        let label_id = label_id.unwrap_or_default();
        if conv.status_label_id != label_id {
            let now = now_micros();
            conv.status_label_id = label_id.clone();
            conv.update_time = now;
            tx.save_conversation(&conv).await?;
            let mut changed = event_by(&conv, pb::EventType::StatusChanged, &identity, now);
            changed.detail = label_id.clone();
            tx.event(changed);
        }
        let response = pb::SetConversationStatusResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, status_label_id = %label_id, "conversation status set");
        Ok(response)
    }
}
