//! Messages: sending (plain text only), listing and the conversation stream.

use super::*;
use crate::store::Topic;

impl ConversationApi {
    pub(super) async fn send(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<pb::SendMessageResponse> {
        const METHOD: &str = "ConversationService/SendMessage";
        let identity = self.ctx.caller(caller(&request)?).await?;
        let req = request.into_inner();
        let sender = pb::SenderKind::try_from(req.sender).unwrap_or(pb::SenderKind::Unspecified);
        let as_customer_side = identity.has_role(Role::Bot)
            && matches!(sender, pb::SenderKind::Customer | pb::SenderKind::Bot);
        if !as_customer_side {
            if !identity.has_any_role(&USER_ROLES) {
                if identity.has_role(Role::Bot) {
                    return Err(Error::invalid("sender", "must be CUSTOMER or BOT"));
                }
                require_any(
                    &identity,
                    &[Role::Agent, Role::Supervisor, Role::Bot],
                    "sending a message",
                )?;
            }
        } else if req.agents_only {
            return Err(Error::invalid(
                "agents_only",
                "only agents and supervisors write agents-only messages",
            ));
        }
        let rid = request_id(&req.request_id, &req)?;
        let conversation_id = uuid_field("conversation_id", &req.conversation_id)?;
        plain_text_only(&req)?;
        text_field("text", &req.text, 1, MAX_TEXT)?;

        let mut tx = match self.ctx.begin_mutation(&identity, METHOD, &rid).await? {
            Begun::Replayed(response) => return Ok(response),
            Begun::Fresh(tx) => tx,
        };
        // A message answers with itself: the conversation's children are not needed.
        let mut conv = load_visible_basic(&mut tx, &identity, &conversation_id).await?;
        if as_customer_side && sender == pb::SenderKind::Customer && conv.state == State::Closed {
            drop(tx);
            return self
                .customer_writes_after_close(&identity, METHOD, &rid, &conversation_id, &req.text)
                .await;
        }
        let now = now_micros();
        let new = if as_customer_side {
            check_customer_message(conv.state).map_err(|e| Error::refused(&conversation_id, e))?;
            let name = if sender == pb::SenderKind::Customer {
                conv.contact.display_name.clone()
            } else if identity.display_name.is_empty() {
                "Bot".to_owned()
            } else {
                mask_pans(&identity.display_name).into_owned()
            };
            NewMessage {
                sender: sender as i32,
                sender_id: String::new(),
                sender_display_name: name,
                text: mask_pans(&req.text).into_owned(),
                internal: false,
            }
        } else {
            let role = conv.role_of(&identity.principal_id);
            check_user_message(conv.state, role, req.agents_only)
                .map_err(|e| Error::refused(&conversation_id, e))?;
            let kind = if role == Some(ParticipantRole::Supervisor) {
                pb::SenderKind::Supervisor
            } else {
                pb::SenderKind::Agent
            };
            NewMessage {
                sender: kind as i32,
                sender_id: identity.principal_id.clone(),
                sender_display_name: mask_pans(&identity.display_name).into_owned(),
                text: mask_pans(&req.text).into_owned(),
                internal: req.agents_only,
            }
        };
        let message = post_message(&mut tx, &mut conv, new, actor(&identity), now).await?;
        let response = pb::SendMessageResponse {
            message: Some(convert::message(&message)),
        };
        tx.commit(&response).await?;
        Ok(response)
    }

    /// Whether the caller sees internal messages: agents and supervisors do, the customer's
    /// side (bots, connectors) does not.
    pub(super) fn sees_internal(identity: &Identity) -> bool {
        identity.has_any_role(&USER_ROLES)
    }

    pub(super) async fn messages_page(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<pb::ListMessagesResponse> {
        let identity = self
            .ctx
            .caller(authorized(&request, &READER_ROLES, "reading messages")?)
            .await?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        let limit = page_size(req.page_size)?;
        let after = token::decode_int(&req.page_token)?;
        self.readable(&identity, &id).await?;
        let mut messages = self
            .ctx
            .store
            .messages(&id, after, limit + 1, Self::sees_internal(&identity))
            .await?;
        let next_page_token =
            next_page(&mut messages, limit, |last| token::encode_int(last.ordinal));
        Ok(pb::ListMessagesResponse {
            messages: messages.iter().map(convert::message).collect(),
            next_page_token,
        })
    }

    pub(super) async fn stream(
        &self,
        request: Request<pb::StreamConversationRequest>,
    ) -> Result<ConversationStream> {
        use pb::stream_conversation_request::Start;
        use pb::stream_conversation_response::Update;

        let identity = self
            .ctx
            .caller(authorized(
                &request,
                &READER_ROLES,
                "streaming a conversation",
            )?)
            .await?;
        let req = request.get_ref();
        let id = uuid_field("conversation_id", &req.conversation_id)?;
        let identity = self.ctx.acting_in(identity, &req.tenant_id).await?;
        let conv = self.visible(&identity, &id).await?;
        let mut cursor = match req.start {
            None => conv.last_event_sequence,
            Some(Start::FromBeginning(_)) => 0,
            Some(Start::AfterSequence(n)) if n < 0 => {
                return Err(Error::invalid("after_sequence", "must not be negative"));
            }
            Some(Start::AfterSequence(n)) if n > conv.last_event_sequence => {
                return Err(Error::invalid(
                    "after_sequence",
                    format!(
                        "{n} is beyond the conversation's last event {}",
                        conv.last_event_sequence
                    ),
                ));
            }
            Some(Start::AfterSequence(n)) => n,
        };
        // The replay ends at the conversation's last event as the stream starts.
        let snapshot_end = conv.last_event_sequence;
        let first = convert::conversation(&conv, pb::ConversationView::Basic);
        let store = self.ctx.store.clone();
        let sees_internal = Self::sees_internal(&identity);
        let heartbeat = self.ctx.heartbeat;
        let watch = store.changes().watch([Topic::Conversation(id.to_string())]);
        let mut waiter = Waiter::new(watch, self.ctx.stop.clone());
        let stream = async_stream::try_stream! {
            yield pb::StreamConversationResponse {
                update: Some(Update::Conversation(first)),
                message: None,
            };
            let mut replaying = true;
            let mut last_sent = tokio::time::Instant::now();
            loop {
                let events = store
                    .conversation_events(&id, cursor, STREAM_BATCH)
                    .await
                    .map_err(Status::from)?;
                let full = events.len() as i64 == STREAM_BATCH;
                for event in events {
                    if replaying && event.conversation_sequence > snapshot_end {
                        replaying = false;
                        yield snapshot_end_message();
                    }
                    cursor = event.conversation_sequence;
                    let mut message = None;
                    if event.kind == event_kind(pb::EventType::MessageAdded) {
                        let stored = store.message(&event.message_id).await.map_err(Status::from)?;
                        match stored {
                            Some(stored) if stored.internal && !sees_internal => continue,
                            Some(stored) => message = Some(convert::message(&stored)),
                            None => {}
                        }
                    }
                    last_sent = tokio::time::Instant::now();
                    yield pb::StreamConversationResponse {
                        update: Some(Update::Event(convert::event(&event))),
                        message,
                    };
                }
                if replaying && !full {
                    replaying = false;
                    last_sent = tokio::time::Instant::now();
                    yield snapshot_end_message();
                }
                if waiter.stopping() {
                    break;
                }
                if full {
                    continue;
                }
                match waiter.wait_until(last_sent + heartbeat).await {
                    Wake::Changed => {}
                    Wake::Quiet => {
                        last_sent = tokio::time::Instant::now();
                        yield pb::StreamConversationResponse {
                            update: Some(Update::Heartbeat(heartbeat_now())),
                            message: None,
                        };
                    }
                    Wake::Stopping => break,
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

/// Refuses content beyond plain text: another format or an attachment is not silently
/// dropped or shown as plain text.
fn plain_text_only(req: &pb::SendMessageRequest) -> Result<()> {
    match pb::MessageFormat::try_from(req.format) {
        Ok(pb::MessageFormat::Unspecified | pb::MessageFormat::PlainText) => {}
        Ok(other) => {
            return Err(Error::invalid(
                "format",
                format!(
                    "{} is not supported: messages are plain text",
                    other.as_str_name()
                ),
            ));
        }
        Err(_) => return Err(Error::invalid("format", "is not a known format")),
    }
    if !req.attachments.is_empty() {
        return Err(Error::invalid(
            "attachments",
            "attachments are not supported: messages are plain text",
        ));
    }
    Ok(())
}

fn snapshot_end_message() -> pb::StreamConversationResponse {
    pb::StreamConversationResponse {
        update: Some(pb::stream_conversation_response::Update::SnapshotEnd(
            SnapshotEnd {},
        )),
        message: None,
    }
}

pub(super) type ConversationStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamConversationResponse, Status>> + Send>>;
