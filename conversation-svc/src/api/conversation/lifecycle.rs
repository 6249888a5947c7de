//! Creating a conversation and moving it through hold, end and wrap-up.

use super::*;

impl ConversationApi {
    pub(super) async fn create(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Result<pb::CreateConversationResponse> {
        const METHOD: &str = "ConversationService/CreateConversation";
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &[Role::Bot, Role::Administrator],
                "creating a conversation",
            )?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        // A retry is answered before routing-svc is asked about the queue again.
        if let Some(response) = self.ctx.replay(&identity, METHOD, &rid).await? {
            return Ok(response);
        }

        let channel = channel_field(req.channel)?;
        let queue_id = uuid_field("queue_id", &req.queue_id)?;
        let contact = req.contact.unwrap_or_default();
        let contact_id = optional_uuid("contact.id", &contact.id)?;
        if contact
            .display_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(Error::invalid(
                "contact.display_name",
                "must not be blank; leave it unset when the channel gives no name",
            ));
        }
        let display_name = contact.display_name.unwrap_or_default();
        text_field("contact.display_name", &display_name, 0, 200)?;
        text_field("channel_address", &req.channel_address, 1, 500)?;
        if req.pre_chat_data.len() > MAX_PRE_CHAT_FIELDS {
            return Err(Error::invalid(
                "pre_chat_data",
                format!("must have at most {MAX_PRE_CHAT_FIELDS} fields"),
            ));
        }
        for (i, field) in req.pre_chat_data.iter().enumerate() {
            text_field(&format!("pre_chat_data[{i}].name"), &field.name, 1, 100)?;
            text_field(&format!("pre_chat_data[{i}].label"), &field.label, 0, 200)?;
            text_field(&format!("pre_chat_data[{i}].value"), &field.value, 0, 2000)?;
        }
        if req.bot_transcript.len() > MAX_TRANSCRIPT_LINES {
            return Err(Error::invalid(
                "bot_transcript",
                format!("must have at most {MAX_TRANSCRIPT_LINES} lines"),
            ));
        }
        let now = now_micros();
        let mut transcript = Vec::with_capacity(req.bot_transcript.len());
        for (i, line) in req.bot_transcript.iter().enumerate() {
            let sender =
                pb::SenderKind::try_from(line.sender).unwrap_or(pb::SenderKind::Unspecified);
            if !matches!(sender, pb::SenderKind::Customer | pb::SenderKind::Bot) {
                return Err(Error::invalid(
                    format!("bot_transcript[{i}].sender"),
                    "must be CUSTOMER or BOT",
                ));
            }
            text_field(
                &format!("bot_transcript[{i}].text"),
                &line.text,
                1,
                MAX_TEXT,
            )?;
            text_field(
                &format!("bot_transcript[{i}].sender_display_name"),
                &line.sender_display_name,
                0,
                200,
            )?;
            transcript.push(TranscriptLine {
                sender: sender as i32,
                sender_display_name: mask_pans(&line.sender_display_name).into_owned(),
                text: mask_pans(&line.text).into_owned(),
                create_time: match line.create_time.as_ref() {
                    None => now,
                    Some(ts) => fields::timestamp_micros(ts).map_err(|why| {
                        Error::invalid(format!("bot_transcript[{i}].create_time"), why)
                    })?,
                },
            });
        }
        if !req.first_message.is_empty() {
            text_field("first_message", &req.first_message, 1, MAX_TEXT)?;
        }

        // routing-svc first: a missing queue or a refused channel changes nothing here.
        let queue = self
            .ctx
            .routing
            .check_queue(&identity.tenant_id, &queue_id, channel)
            .await
            .map_err(|status| queue_error(&queue_id, status))?;

        let new = NewConversation {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: identity.tenant_id.clone(),
            channel,
            queue_id: queue_id.clone(),
            program_id: queue.program_id,
            contact_id,
            contact_display_name: mask_pans(&display_name).into_owned(),
            channel_address: mask_pans(&req.channel_address).into_owned(),
            pre_chat: req
                .pre_chat_data
                .iter()
                .map(|f| PreChatField {
                    name: mask_pans(&f.name).into_owned(),
                    label: mask_pans(&f.label).into_owned(),
                    value: mask_pans(&f.value).into_owned(),
                })
                .collect(),
            transcript,
            now,
        };

        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = tx.create_conversation(&new).await?;
        tx.event(event_by(&conv, pb::EventType::Created, &identity, now));
        tx.event(event_by(&conv, pb::EventType::Queued, &identity, now));
        if !req.first_message.is_empty() {
            let first = NewMessage {
                sender: pb::SenderKind::Customer as i32,
                sender_id: String::new(),
                sender_display_name: conv.contact.display_name.clone(),
                text: mask_pans(&req.first_message).into_owned(),
                internal: false,
            };
            post_message(&mut tx, &mut conv, first, "", now).await?;
        }
        super::moves::requeue(&mut tx, &conv, conv.create_time, now).await?;
        let response = pb::CreateConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(
            conversation_id = %conv.id,
            tenant_id = %conv.tenant_id,
            queue_id = %conv.queue_id,
            "conversation created"
        );
        Ok(response)
    }

    pub(super) async fn hold(
        &self,
        request: Request<pb::SetWaitingRequest>,
    ) -> Result<pb::SetWaitingResponse> {
        const METHOD: &str = "ConversationService/SetWaiting";
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &USER_ROLES,
                "putting a conversation on hold",
            )?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        text_field("reason", &req.reason, 0, 200)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let conv = owner_transition(
            &mut tx,
            &identity,
            &id,
            Action::SetWaiting,
            pb::EventType::Waiting,
            mask_pans(&req.reason).into_owned(),
        )
        .await?;
        let response = pb::SetWaitingResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, "conversation waiting");
        Ok(response)
    }

    pub(super) async fn resume(
        &self,
        request: Request<pb::ResumeConversationRequest>,
    ) -> Result<pb::ResumeConversationResponse> {
        const METHOD: &str = "ConversationService/ResumeConversation";
        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &USER_ROLES,
                "resuming a conversation",
            )?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let conv = owner_transition(
            &mut tx,
            &identity,
            &id,
            Action::Resume,
            pb::EventType::Resumed,
            String::new(),
        )
        .await?;
        let response = pb::ResumeConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, "conversation resumed");
        Ok(response)
    }

    pub(super) async fn end(
        &self,
        request: Request<pb::EndConversationRequest>,
    ) -> Result<pb::EndConversationResponse> {
        const METHOD: &str = "ConversationService/EndConversation";
        let identity = self
            .ctx
            .caller(authorized(&request, &USER_ROLES, "ending a conversation")?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        let mut conv = owner_transition(
            &mut tx,
            &identity,
            &id,
            Action::End,
            pb::EventType::Ended,
            String::new(),
        )
        .await?;
        let now = conv.update_time;
        // A transfer still waiting for its agent's answer ends with the chat.
        super::transfers::withdraw_pending(&mut tx, &conv, &identity.principal_id, now).await?;
        // The chat is over for the agents the owner brought in too.
        super::conference::dismiss_helpers(&mut tx, &mut conv, &identity.principal_id, now).await?;
        // The CLOSED event of a close by the wrap-up time limit records this reopen window.
        let deadline = tx
            .start_wrap_up_clock(&id, now, identity.reopen_window_secs)
            .await?;
        let name = if conv.owner_display_name.is_empty() {
            mask_pans(&identity.display_name).into_owned()
        } else {
            conv.owner_display_name.clone()
        };
        let notice = system_message(format!("{name} left the conversation"));
        post_message(&mut tx, &mut conv, notice, "", now).await?;
        let response = pb::EndConversationResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        if deadline.is_some() {
            self.ctx.wrap_up.wake();
        }
        info!(conversation_id = %id, agent_id = %identity.principal_id, "conversation ended");
        Ok(response)
    }

    pub(super) async fn wrap_up(
        &self,
        request: Request<pb::SubmitWrapUpRequest>,
    ) -> Result<pb::SubmitWrapUpResponse> {
        const METHOD: &str = "ConversationService/SubmitWrapUp";
        let identity = self
            .ctx
            .caller(authorized(&request, &USER_ROLES, "submitting wrap-up")?)
            .await?;
        let req = request.into_inner();
        let rid = request_id(&req.request_id, &req)?;
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let reason_ids = reason_ids("wrap_up_reason_ids", &req.wrap_up_reason_ids, true)?;
        text_field("note", &req.note, 0, 2000)?;
        let segment_id = optional_uuid("segment_id", &req.segment_id)?;

        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        if let Some(segment_id) = segment_id {
            let current = tx
                .conversation_for_update(&identity.tenant_id, &id)
                .await?
                .ok_or_else(|| Error::conversation_not_found(&id))?;
            if segment_id != current.current_segment_id || current.owner().is_none() {
                // The sender of a transfer wraps up the segment it handled before it (the
                // conversation's last one while it waits for its next owner).
                let conv = wrap_up_earlier(
                    &mut tx,
                    &identity,
                    current,
                    &segment_id,
                    &reason_ids,
                    &req.note,
                )
                .await?;
                // The conversation is shown only to a caller who may still see it.
                let response = pb::SubmitWrapUpResponse {
                    conversation: conv
                        .visible_to(viewer(&identity))
                        .then(|| convert::conversation(&conv, pb::ConversationView::Full)),
                };
                tx.commit(&response).await?;
                info!(conversation_id = %id, segment_id = %segment_id, "earlier segment wrapped up");
                return Ok(response);
            }
        }
        let (mut conv, next) =
            load_for_owner(&mut tx, &identity, &id, Action::SubmitWrapUp).await?;
        check_reasons(
            &mut tx,
            &identity.tenant_id,
            "wrap_up_reason_ids",
            &reason_ids,
            &conv.queue_id,
        )
        .await?;
        let now = now_micros();
        let agent_id = conv.owner_agent_id.clone();
        conv.close_time = Some(now);
        conv.close_reason = pb::CloseReason::WrapUpSubmitted as i32;
        conv.wrap_up_reason_ids = reason_ids.clone();
        tx.end_segment(
            &conv.current_segment_id,
            "closed",
            &reason_ids,
            &mask_pans(&req.note),
            now,
        )
        .await?;
        // Closed: nobody takes part any more (the owner stays named as the last owner).
        tx.release_participants(&mut conv, now).await?;
        save_state(&mut tx, &mut conv, next, now).await?;
        let mut submitted = event_by(&conv, pb::EventType::WrapUpSubmitted, &identity, now);
        submitted.wrap_up_reason_ids = reason_ids.clone();
        tx.event(submitted);
        let mut closed = event_by(&conv, pb::EventType::Closed, &identity, now);
        closed.wrap_up_reason_ids = reason_ids;
        closed.detail = convert::close_code(pb::CloseReason::WrapUpSubmitted).to_owned();
        closed.reopen_window_secs = identity.reopen_window_secs;
        tx.event(closed);
        let release = rpb::ReleaseCapacityRequest {
            tenant_id: conv.tenant_id.clone(),
            conversation_id: conv.id.clone(),
            agent_id: agent_id.clone(),
        };
        tx.add_command(
            CommandKind::ReleaseCapacity,
            &conv.tenant_id,
            &conv.id,
            release.encode_to_vec(),
            now,
        )
        .await?;
        let response = pb::SubmitWrapUpResponse {
            conversation: Some(convert::conversation(&conv, pb::ConversationView::Full)),
        };
        tx.commit(&response).await?;
        info!(conversation_id = %id, agent_id = %agent_id, "conversation closed after wrap-up");
        Ok(response)
    }
}

/// Validated, deduplicated wrap-up reason ids of list `field`; at least one when `required`.
pub(super) fn reason_ids(field: &str, raw: &[String], required: bool) -> Result<Vec<String>> {
    if required && raw.is_empty() {
        return Err(Error::invalid(field, "at least one reason is required"));
    }
    if raw.len() > MAX_WRAP_UP_REASONS {
        return Err(Error::invalid(
            field,
            format!("must have at most {MAX_WRAP_UP_REASONS} reasons"),
        ));
    }
    let mut ids: Vec<String> = Vec::new();
    for (i, value) in raw.iter().enumerate() {
        let reason_id = uuid_field(&format!("{field}[{i}]"), value)?;
        if !ids.contains(&reason_id) {
            ids.push(reason_id);
        }
    }
    Ok(ids)
}

/// INVALID_ARGUMENT unless every reason of `ids` is the tenant's, active and offered in
/// `queue_id`.
pub(super) async fn check_reasons(
    m: &mut Mutation,
    tenant_id: &str,
    field: &str,
    ids: &[String],
    queue_id: &str,
) -> Result<()> {
    let reasons = m.reasons_by_ids(tenant_id, ids).await?;
    for (i, reason_id) in ids.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let Some(reason) = reasons.iter().find(|r| &r.id == reason_id) else {
            return Err(Error::invalid(
                field,
                format!("unknown wrap-up reason {reason_id}"),
            ));
        };
        if !reason.active {
            return Err(Error::invalid(
                field,
                format!("wrap-up reason {reason_id} is inactive"),
            ));
        }
        if !reason.offered_in(queue_id) {
            return Err(Error::invalid(
                field,
                format!("wrap-up reason {reason_id} is not offered in queue {queue_id}"),
            ));
        }
    }
    Ok(())
}

/// Wraps up `segment_id`, an earlier segment of `conv` that the caller owned and that a
/// transfer ended: once, whatever the conversation does now, with a WRAP_UP_SUBMITTED event.
async fn wrap_up_earlier(
    m: &mut Mutation,
    identity: &Identity,
    mut conv: Conversation,
    segment_id: &str,
    reason_ids: &[String],
    note: &str,
) -> Result<Conversation> {
    let not_found = || Error::NotFound(format!("segment {segment_id} not found"));
    let segment = m
        .segment(&conv.id, segment_id)
        .await?
        .filter(|s| s.agent_id == identity.principal_id)
        .ok_or_else(not_found)?;
    if segment.end_reason != "transferred" {
        return Err(Error::wrong_state(
            &conv.id,
            format!("segment {segment_id} did not end with a transfer; wrap up the current one"),
        ));
    }
    check_reasons(
        m,
        &identity.tenant_id,
        "wrap_up_reason_ids",
        reason_ids,
        &segment.queue_id,
    )
    .await?;
    if !m
        .wrap_up_segment(segment_id, reason_ids, &mask_pans(note))
        .await?
    {
        return Err(Error::wrong_state(
            &conv.id,
            format!("segment {segment_id} is already wrapped up"),
        ));
    }
    let now = now_micros();
    let mut submitted = event_by(&conv, pb::EventType::WrapUpSubmitted, identity, now);
    submitted.segment_id = segment_id.to_owned();
    submitted.agent_id = identity.principal_id.clone();
    submitted.wrap_up_reason_ids = reason_ids.to_vec();
    // Counted in the queue the segment was in, wherever the transfer took the conversation.
    submitted.queue_id.clone_from(&segment.queue_id);
    // How the segment ended tells reports these are a sender's reasons.
    "transferred".clone_into(&mut submitted.segment_end);
    m.event(submitted);
    conv.update_time = now;
    let state = conv.state;
    save_state(m, &mut conv, state, now).await?;
    Ok(conv)
}
