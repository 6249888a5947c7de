//! Reads: a conversation, lists, segments and events.

use super::*;

impl ConversationApi {
    /// A conversation the caller may read, or NOT_FOUND.
    pub(super) async fn visible(
        &self,
        identity: &Caller,
        conversation_id: &str,
    ) -> Result<Conversation> {
        self.ctx
            .store
            .conversation(&identity.tenant_id, conversation_id)
            .await?
            .filter(|c| c.visible_to(viewer(identity)))
            .ok_or_else(|| Error::conversation_not_found(conversation_id))
    }

    pub(super) async fn get(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<pb::GetConversationResponse> {
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &READER_ROLES,
                "reading conversations",
            )?)
            .await?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let view = view_field(req.view, pb::ConversationView::Full)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        let conv = self.readable(&identity, &id).await?;
        Ok(pb::GetConversationResponse {
            conversation: Some(convert::conversation(&conv, view)),
        })
    }

    pub(super) async fn list(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<pb::ListConversationsResponse> {
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &READER_ROLES,
                "listing conversations",
            )?)
            .await?;
        let req = request.get_ref();
        let view = view_field(req.view, pb::ConversationView::Basic)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        if req.states.len() > MAX_STATE_FILTER {
            return Err(Error::invalid(
                "states",
                format!("must have at most {MAX_STATE_FILTER} values"),
            ));
        }
        let mut states = Vec::with_capacity(req.states.len());
        for (i, state) in req.states.iter().enumerate() {
            if State::from_code(i64::from(*state)).is_none() {
                return Err(Error::invalid(
                    format!("states[{i}]"),
                    "is not a conversation state",
                ));
            }
            states.push(*state);
        }
        let limit = page_size(req.page_size)?;
        let query = ConversationQuery {
            tenant_id: identity.tenant_id.clone(),
            viewer_id: identity.principal_id.clone(),
            sees_all: viewer(&identity).sees_all,
            viewer_queues: viewer(&identity).queues.to_vec(),
            states,
            queue_id: optional_uuid("queue_id", &req.queue_id)?,
            owner_agent_id: optional_uuid("owner_agent_id", &req.owner_agent_id)?,
            before: token::decode_time_id(&req.page_token)?,
            limit: limit + 1,
            full: view == pb::ConversationView::Full,
        };
        let mut convs = self.ctx.store.list_conversations(&query).await?;
        let next_page_token = next_page(&mut convs, limit, |last| {
            token::encode(&[&last.create_time.to_string(), &last.id])
        });
        Ok(pb::ListConversationsResponse {
            conversations: convs
                .iter()
                .map(|c| convert::conversation(c, view))
                .collect(),
            next_page_token,
        })
    }

    pub(super) async fn segments_page(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<pb::ListSegmentsResponse> {
        let identity = self
            .ctx
            .caller(authorized(&request, &READER_ROLES, "reading segments")?)
            .await?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        let limit = page_size(req.page_size)?;
        let after = token::decode_int(&req.page_token)?;
        self.visible(&identity, &id).await?;
        let mut segments = self.ctx.store.segments(&id, after, limit + 1).await?;
        let next_page_token =
            next_page(&mut segments, limit, |last| token::encode_int(last.ordinal));
        Ok(pb::ListSegmentsResponse {
            segments: segments.iter().map(convert::segment).collect(),
            next_page_token,
        })
    }

    pub(super) async fn list_events(
        &self,
        request: Request<pb::ListConversationEventsRequest>,
    ) -> Result<pb::ListConversationEventsResponse> {
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &READER_ROLES,
                "reading conversation events",
            )?)
            .await?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        let limit = page_size(req.page_size)?;
        let after = token::decode_int(&req.page_token)?;
        self.visible(&identity, &id).await?;
        let mut events = self
            .ctx
            .store
            .conversation_events(&id, after, limit + 1)
            .await?;
        let next_page_token = next_page(&mut events, limit, |last| {
            token::encode_int(last.conversation_sequence)
        });
        Ok(pb::ListConversationEventsResponse {
            events: events.iter().map(convert::event).collect(),
            next_page_token,
        })
    }
}
